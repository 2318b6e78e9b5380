//! The preloadable agent library, embedded in this binary at build time (see `build.rs`) and
//! written to disk on first use so that `cargo install` yields one self-contained executable.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// The bytes of `libcontprof_preload.so` as built for this version.
static AGENT_LIB: &[u8] = include_bytes!(env!("CONTPROF_AGENT_LIB_PATH"));

/// FNV-1a: a stable content hash for the cache file name (not security relevant).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Writes the agent library under `dir` (once per content) and returns its path.
///
/// The file name carries a hash of the content, so a new version never reuses an old file and two
/// processes installing at once both end up with a complete file (temp file, then rename).
pub fn install(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("libcontprof_preload-{:016x}.so", fnv1a(AGENT_LIB)));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == AGENT_LIB.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create directory", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("could not create a file in", dir, e))?;
    tmp.write_all(AGENT_LIB).map_err(|e| Error::io("could not write", tmp.path().to_owned(), e))?;
    tmp.persist(&path).map_err(|e| Error::io("could not write", path.clone(), e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_agent_is_an_elf_shared_object_and_installs_idempotently() {
        assert_eq!(&AGENT_LIB[..4], b"\x7fELF");
        let dir = tempfile::tempdir().unwrap();
        let a = install(dir.path()).unwrap();
        let b = install(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), AGENT_LIB);
    }
}
