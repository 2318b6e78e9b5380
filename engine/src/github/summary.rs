//! The job summary: Markdown appended to the file `$GITHUB_STEP_SUMMARY` names.

use std::io::Write;
use std::path::Path;

use crate::errors::{Error, Result};

/// Appends `markdown` to the step summary file `path` (GitHub creates it; several steps append).
pub fn append_step_summary(path: &Path, markdown: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("could not open the job summary", path, e))?;
    file.write_all(markdown)
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| Error::io("could not write the job summary", path, e))
}
