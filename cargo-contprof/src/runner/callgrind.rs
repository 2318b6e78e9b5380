//! The instructions engine's runner: the workload runs under valgrind's callgrind, which counts
//! every instruction it executes, per instruction address and per call edge. The agent still
//! runs inside it (with CPU sampling off and every allocation recorded), so allocation profiles
//! and the memory map for symbolization come from the same raw file as with the sampling engine.
//!
//! Callgrind's own costs stay low: no cache or branch simulation (`--cache-sim=no`,
//! `--branch-sim=no`), no jump recording. The agent's bookkeeping is left out of the counts with
//! `--toggle-collect` on its entry points ([`contprof::env::CALLGRIND_UNCOUNTED`]).
//!
//! Base and head must start from the same process image, or counts move without a code change:
//! the kernel (here valgrind) packs the program's arguments and environment strings one after
//! the other, so a longer path to the base's binary shifts the address of every string after it,
//! and glibc's vectorized `getenv`/`strcmp` run a different number of instructions on strings of
//! another alignment (measured: `std::env::var` in a 1% function moved it by 0.55%, above the
//! 0.5% threshold, when the base was rebuilt in a worktree). [`StablePaths`] gives the workload
//! a program path and an output path whose lengths do not depend on where either side was built.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// Overrides the `valgrind` found on `PATH`.
pub const VALGRIND_ENV: &str = "CONTPROF_VALGRIND";

/// The valgrind executable: `CONTPROF_VALGRIND`, else `valgrind` on `PATH`. Missing valgrind is
/// an error (exit 2) that says how to install it.
pub fn find_valgrind() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(VALGRIND_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::msg(format!("{VALGRIND_ENV}={} is not an executable file", p.display())))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("valgrind"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Error::msg(
                "--engine instructions runs the workload under valgrind, which is not installed (no \
                 `valgrind` on PATH); install it with `sudo apt-get install valgrind` (Debian, Ubuntu), \
                 `sudo dnf install valgrind` (Fedora) or `sudo pacman -S valgrind` (Arch), or point \
                 CONTPROF_VALGRIND at it",
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where callgrind writes the counts of process `pid` of the run whose raw sample file is
/// `raw_path`. Each process has its own file (`%p` in the name): a workload that forks without
/// exec (a `harness = false` bench, say) has children that stay under valgrind, and their counts
/// at exit must not overwrite the workload's.
pub fn output_path(raw_path: &Path, pid: u32) -> PathBuf {
    raw_path.with_extension(format!("callgrind.{pid}"))
}

/// The counts files of every process of the run whose raw sample file is `raw_path`.
pub fn outputs(raw_path: &Path) -> Vec<PathBuf> {
    let prefix = format!(
        "{}.",
        raw_path.with_extension("callgrind").file_name().unwrap_or_default().to_string_lossy()
    );
    let Some(dir) = raw_path.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect();
    out.sort();
    out
}

/// Links of a fixed length to a workload's executable and to its raw file's directory, in a
/// private directory of this user's (`$TMPDIR/cargo-contprof-<uid>/<16 hex digits>/`): what the
/// workload sees as its `argv[0]` and as the agent's settings then has the same length for any
/// two builds of one target (see the module's documentation). Removed when dropped.
///
/// Callgrind names objects by their resolved paths, so symbolization and the profile's mappings
/// still name the real files.
pub struct StablePaths {
    dir: PathBuf,
    /// The executable, through its link.
    pub program: PathBuf,
    /// The raw sample file, through the link to its directory.
    pub raw_path: PathBuf,
}

impl StablePaths {
    /// Links for running `program` with its raw sample file at `raw_path` (whose directory
    /// exists).
    pub fn new(program: &Path, raw_path: &Path) -> Result<Self> {
        use sha2::Digest as _;
        let program =
            std::fs::canonicalize(program).map_err(|e| Error::io("could not resolve", program, e))?;
        let raw_dir = raw_path.parent().unwrap_or(Path::new("."));
        let raw_dir =
            std::fs::canonicalize(raw_dir).map_err(|e| Error::io("could not resolve", raw_dir, e))?;
        let mut hash = sha2::Sha256::new();
        hash.update(program.as_os_str().as_encoded_bytes());
        hash.update([0]);
        hash.update(raw_dir.as_os_str().as_encoded_bytes());
        let digest: String = hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let dir = private_dir()?.join(digest);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("could not create directory", &dir, e))?;
        let name = program.file_name().unwrap_or_default();
        let linked_program = link(&program, &dir.join(name))?;
        let linked_raw = link(&raw_dir, &dir.join("raw"))?;
        Ok(Self {
            program: linked_program,
            raw_path: linked_raw.join(raw_path.file_name().unwrap_or_default()),
            dir,
        })
    }
}

impl Drop for StablePaths {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$TMPDIR/cargo-contprof-<uid>`, created if missing, refused unless it is a real directory of
/// this user's that nobody else can write to (another user could otherwise plant links in it).
fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("cargo-contprof-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("could not create directory", &dir, e)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::io("could not read", &dir, e))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(Error::msg(format!(
            "{} is not a private directory of this user's (owner {}, mode {:o}): remove it, or set \
             TMPDIR to another directory",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

/// Points the link `at` to `target`, replacing whatever link was there in one rename.
fn link(target: &Path, at: &Path) -> Result<PathBuf> {
    let tmp = at.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io("could not create link", &tmp, e))?;
    std::fs::rename(&tmp, at).map_err(|e| Error::io("could not create link", at, e))?;
    Ok(at.to_path_buf())
}

/// The arguments of `valgrind` that run `program args` under callgrind, writing the counts of
/// the run whose raw sample file is `raw_path` (see [`output_path`]).
pub fn arguments(program: &Path, args: &[OsString], raw_path: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--tool=callgrind".into(),
        "--quiet".into(),
        {
            let mut o = OsString::from("--callgrind-out-file=");
            o.push(raw_path.with_extension("callgrind.%p"));
            o
        },
        // Per-instruction costs, so that addresses go through the project's own symbolizer
        // (inlined frames included).
        "--dump-instr=yes".into(),
        "--cache-sim=no".into(),
        "--branch-sim=no".into(),
        "--collect-jumps=no".into(),
        // Children the workload spawns run natively and unprofiled, as with the agent.
        "--trace-children=no".into(),
    ];
    v.extend(
        contprof::env::CALLGRIND_UNCOUNTED.iter().map(|f| OsString::from(format!("--toggle-collect={f}"))),
    );
    // After the toggles: any --toggle-collect makes callgrind start with collection off.
    v.push("--collect-atstart=yes".into());
    v.push(program.as_os_str().to_owned());
    v.extend(args.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_builds_of_one_target_get_links_of_one_length_that_resolve_to_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for (side, raw) in
            [("t/debug", "o/raw/1"), ("t/contprof/base-target/debug", "t/contprof/base-target/o/raw/1")]
        {
            let program = tmp.path().join(side).join("w");
            std::fs::create_dir_all(program.parent().unwrap()).unwrap();
            std::fs::write(&program, "").unwrap();
            let raw = tmp.path().join(raw).join("run-0.raw");
            std::fs::create_dir_all(raw.parent().unwrap()).unwrap();
            let links = StablePaths::new(&program, &raw).unwrap();
            assert_eq!(
                std::fs::canonicalize(&links.program).unwrap(),
                std::fs::canonicalize(&program).unwrap()
            );
            std::fs::write(&links.raw_path, "x").unwrap();
            assert_eq!(std::fs::read(&raw).unwrap(), b"x");
            seen.push((links.program.as_os_str().len(), links.raw_path.as_os_str().len(), links.dir.clone()));
        }
        assert_eq!((seen[0].0, seen[0].1), (seen[1].0, seen[1].1), "{seen:?}");
        assert_ne!(seen[0].2, seen[1].2);
        // Dropped: the links are gone, the files stay.
        assert!(!seen[0].2.exists() && !seen[1].2.exists());
    }

    /// `--toggle-collect` matches callgrind's names: a function renamed or inlined away in the
    /// agent would silently be counted as the program's again.
    #[test]
    fn every_uncounted_function_is_a_function_of_the_agent_library() {
        use object::{Object, ObjectSymbol};
        let dir = tempfile::tempdir().unwrap();
        let lib = crate::runner::agent::install(dir.path()).unwrap();
        let bytes = std::fs::read(&lib).unwrap();
        let obj = object::File::parse(&*bytes).unwrap();
        let functions: std::collections::HashSet<String> = obj
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
            .filter_map(|s| s.name().ok().map(crate::symbolize::demangle))
            .collect();
        for f in contprof::env::CALLGRIND_UNCOUNTED {
            assert!(functions.contains(*f), "{f} is not a function of {}", lib.display());
        }
    }

    #[test]
    fn collection_starts_on_after_the_toggles_and_the_program_comes_last() {
        let a = arguments(Path::new("/bin/w"), &["x".into()], Path::new("/o/run-1.raw"));
        let strs: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let last_toggle = strs.iter().rposition(|s| s.starts_with("--toggle-collect=")).unwrap();
        let atstart = strs.iter().position(|s| s == "--collect-atstart=yes").unwrap();
        assert!(atstart > last_toggle, "{strs:?}");
        assert_eq!(&strs[strs.len() - 2..], ["/bin/w", "x"]);
        assert!(strs.contains(&"--callgrind-out-file=/o/run-1.callgrind.%p".to_owned()));
        assert_eq!(output_path(Path::new("/o/run-1.raw"), 42), Path::new("/o/run-1.callgrind.42"));
    }
}
