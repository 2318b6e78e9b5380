//! The preloadable agent library, embedded in this binary at build time (see `build.rs`) and
//! written to disk on first use so that `cargo install` yields one self-contained executable.
//!
//! Two builds are embedded: the full one, and a lean one without the allocation hooks, preloaded
//! when allocations are not recorded, so that a program's `malloc` and `free` then run exactly
//! as without the agent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// The bytes of `libcontprof_preload.so` as built for this version.
static AGENT_LIB: &[u8] = include_bytes!(env!("CONTPROF_AGENT_LIB_PATH"));
/// The same without the allocation hooks.
static AGENT_LIB_LEAN: &[u8] = include_bytes!(env!("CONTPROF_AGENT_LIB_LEAN_PATH"));

/// Which build of the agent library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Everything: CPU, allocations, waits, wall time.
    Full,
    /// No allocation hooks: for programs whose allocations are not recorded.
    Lean,
}

impl Build {
    /// The build that records `alloc`.
    pub fn for_alloc(alloc: contprof_protocol::format::AllocMode) -> Build {
        if alloc == contprof_protocol::format::AllocMode::Off { Build::Lean } else { Build::Full }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            Build::Full => AGENT_LIB,
            Build::Lean => AGENT_LIB_LEAN,
        }
    }

    /// The file name's stem (the symbolizer and the agent's `LD_PRELOAD` scrubbing recognise the
    /// library by its `libcontprof_preload` prefix).
    fn stem(self) -> &'static str {
        match self {
            Build::Full => "libcontprof_preload",
            Build::Lean => "libcontprof_preload-lean",
        }
    }
}

/// FNV-1a: a stable content hash for the cache file name (not security relevant).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Writes the full agent library under `dir` (once per content) and returns its path.
pub fn install(dir: &Path) -> Result<PathBuf> {
    install_build(dir, Build::Full)
}

/// Writes `build` of the agent library under `dir` (once per content) and returns its path.
///
/// The file name carries a hash of the content, so a new version never reuses an old file and two
/// processes installing at once both end up with a complete file (temp file, then rename).
pub fn install_build(dir: &Path, build: Build) -> Result<PathBuf> {
    let bytes = build.bytes();
    let path = dir.join(format!("{}-{:016x}.so", build.stem(), fnv1a(bytes)));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create directory", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("could not create a file in", dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io("could not write", tmp.path().to_owned(), e))?;
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

    #[test]
    fn the_lean_build_interposes_no_allocation_function() {
        let dir = tempfile::tempdir().unwrap();
        let exports = |build| {
            let path = install_build(dir.path(), build).unwrap();
            assert!(path.file_name().unwrap().to_string_lossy().starts_with("libcontprof_preload"));
            crate::symbolize::exported_functions(&path).unwrap()
        };
        let (full, lean) = (exports(Build::Full), exports(Build::Lean));
        for f in ["malloc", "free", "calloc", "realloc", "posix_memalign", "malloc_usable_size"] {
            assert!(full.contains(f) && !lean.contains(f), "{f}");
        }
        for f in ["pthread_create", "dlopen", "syscall", "pthread_mutex_lock"] {
            assert!(full.contains(f) && lean.contains(f), "{f}");
        }
    }
}
