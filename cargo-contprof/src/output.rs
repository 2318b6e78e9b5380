//! How a command writes a comparison it made: rendered in the format asked, to standard output
//! (a reader that closed the pipe is not an error), and the gate's exit status. Shared by
//! `compare`, `check` and `prod compare`.

use std::io::Write;

use super::args::ReportFormat;
use contprof_engine::compare::{self, Comparison};
use contprof_engine::errors::{Error, Result};

/// Exit status of a comparison: [`Error::RegressionFound`] when it found any.
pub(super) fn verdict(cmp: &Comparison) -> Result<()> {
    if cmp.has_regression() {
        // One per cause: the other findings are its evidence.
        let causes = cmp.causes_of(contprof_engine::compare::Verdict::Regression).len();
        return Err(Error::RegressionFound { count: causes.max(1) });
    }
    Ok(())
}

/// Writes `bytes` to standard output.
pub(super) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("could not write", "stdout", e))
        }
        _ => Ok(()),
    }
}

/// Renders `cmp` in `format`.
pub(super) fn render(cmp: &Comparison, format: ReportFormat, out: &mut Vec<u8>) -> std::io::Result<()> {
    match format {
        ReportFormat::Text => compare::write_text(cmp, out),
        ReportFormat::Json => compare::write_json(cmp, out),
        ReportFormat::Markdown => compare::write_markdown(cmp, out),
    }
}
