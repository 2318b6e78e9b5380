//! The instructions engine's stage: one fixed place that every side of a comparison runs from, so
//! that base and head see the same argv, environment and paths.
//!
//! Exact counts move with what a process sees, not only with its code: the kernel packs the
//! arguments and environment strings one after the other (a longer path shifts every string after
//! it, and glibc's vectorized string functions count differently at another alignment), the
//! startup reads `/proc/self/maps` with `sscanf` (whose count follows the length of every mapped
//! path), the dynamic loader searches `LD_LIBRARY_PATH`, libtest parses `argv`. A base rebuilt in
//! a worktree and its own target directory differs in all of these. On the stage
//! (`<target-dir>/contprof/stage/`, that of the workspace `check` runs in, for both sides) each
//! run sees:
//! - the program as `bin/<package>.<kind>.<target>`: a hard link to the side's build (a copy
//!   across file systems), so `argv[0]`, `/proc/self/exe` and the memory map name one path;
//! - the agent library as `agent/<its file name>`, linked the same way;
//! - its package as `pkg/<package>` (a symbolic link to the side's package root): its working
//!   directory, `CARGO_MANIFEST_DIR` and `CARGO_MANIFEST_PATH`;
//! - the side's target directory as `target` and the invocation's raw files as `raw` (symbolic
//!   links): `LD_LIBRARY_PATH`, the agent's output, criterion's home.
//!
//! Every path in the environment that starts with one of those real directories is rewritten to
//! its place on the stage. The stage is held with an exclusive lock for one recording (all runs
//! of one side); another recording in the same target directory waits for it. The profile is
//! built with the stage's paths mapped back to the real files ([`Stage::aliases`]), since the
//! links point to the other side's files once it runs.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::errors::{Error, Result};

/// A run's place on a stage: the stage, and the name its program has there
/// (`<package>.<kind>.<target>`).
#[derive(Debug, Clone)]
pub struct Staging {
    /// The stage.
    pub stage: std::sync::Arc<Stage>,
    /// The program's name on it.
    pub name: String,
}

/// A stage held for one recording (see the module docs). Dropping it releases the lock; the
/// links stay for the next recording to replace.
#[derive(Debug)]
pub struct Stage {
    dir: PathBuf,
    /// Held with `flock(LOCK_EX)` for the life of the stage.
    _lock: File,
    /// `(real directory, path on the stage)`, longest real path first.
    dirs: Vec<(PathBuf, PathBuf)>,
    /// `(path on the stage, real file)` of the programs and the agent.
    files: Mutex<Vec<(PathBuf, PathBuf)>>,
}

impl Stage {
    /// Takes the stage in `dir` (created if missing) for a recording whose target directory is
    /// `target_dir` and whose raw files go under `raw_dir`, waiting while another recording holds
    /// it (`on_wait` is called once before waiting).
    pub fn open(dir: &Path, target_dir: &Path, raw_dir: &Path, on_wait: &dyn Fn()) -> Result<Stage> {
        for sub in ["bin", "agent", "pkg"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("could not create directory", &d, e))?;
        }
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io("could not create", &lock_path, e))?;
        lock_file(&lock, &lock_path, on_wait)?;
        let mut stage =
            Stage { dir: dir.to_owned(), _lock: lock, dirs: Vec::new(), files: Mutex::new(Vec::new()) };
        stage.link_dir(target_dir, "target")?;
        stage.link_dir(raw_dir, "raw")?;
        Ok(stage)
    }

    /// Puts the package `name` (whose root is `root`) on the stage.
    pub fn add_package(&mut self, name: &str, root: &Path) -> Result<()> {
        self.link_dir(root, &format!("pkg/{}", sanitize(name)))
    }

    /// Points `at` (relative to the stage) to the real directory `real`.
    fn link_dir(&mut self, real: &Path, at: &str) -> Result<()> {
        let given = std::path::absolute(real).map_err(|e| Error::io("could not resolve", real, e))?;
        let real = std::fs::canonicalize(real).map_err(|e| Error::io("could not resolve", real, e))?;
        let on_stage = self.dir.join(at);
        if std::fs::read_link(&on_stage).ok().as_deref() != Some(real.as_path()) {
            let tmp = on_stage.with_extension(format!("tmp-{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&real, &tmp)
                .map_err(|e| Error::io("could not create link", &tmp, e))?;
            // A directory left by an older layout is not replaced by a rename: remove it first.
            if std::fs::symlink_metadata(&on_stage).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(&on_stage);
            }
            std::fs::rename(&tmp, &on_stage).map_err(|e| Error::io("could not create link", &on_stage, e))?;
        }
        // Paths name the directory as given and as resolved.
        if given != real {
            self.dirs.push((given, on_stage.clone()));
        }
        self.dirs.push((real, on_stage));
        self.dirs.sort_by_key(|(real, _)| std::cmp::Reverse(real.as_os_str().len()));
        Ok(())
    }

    /// The program `real` as the stage runs it, `bin/<name>` (linked on first use).
    pub fn program(&self, real: &Path, name: &str) -> Result<PathBuf> {
        self.file(real, &self.dir.join("bin").join(sanitize(name)))
    }

    /// The agent library `real` as the stage preloads it.
    pub fn agent(&self, real: &Path) -> Result<PathBuf> {
        let name = real.file_name().unwrap_or(OsStr::new("agent.so"));
        self.file(real, &self.dir.join("agent").join(name))
    }

    fn file(&self, real: &Path, at: &Path) -> Result<PathBuf> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.iter().any(|(s, r)| s == at && r == real) {
            return Ok(at.to_owned());
        }
        if files.iter().any(|(s, _)| s == at) {
            return Err(Error::msg(format!(
                "{} is on the stage for another file than {} (two targets with one name)",
                at.display(),
                real.display()
            )));
        }
        place_file(real, at)?;
        files.push((at.to_owned(), real.to_owned()));
        Ok(at.to_owned())
    }

    /// `path` as seen from the stage: the longest real directory it lies in replaced by its link
    /// (unchanged when it is in none).
    pub fn path(&self, path: &Path) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.rewrite(path.as_os_str().as_bytes())))
    }

    /// An environment value with every real directory of the stage in it replaced by its link, in
    /// one pass (a link's path may contain a real directory's).
    pub fn env_value(&self, value: &OsStr) -> OsString {
        OsString::from_vec(self.rewrite(value.as_bytes()))
    }

    fn rewrite(&self, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len());
        let mut i = 0;
        while i < value.len() {
            let rest = &value[i..];
            let hit = self.dirs.iter().find(|(real, _)| {
                let r = real.as_os_str().as_bytes();
                // A whole directory: followed by the end, `/` or a list separator.
                rest.starts_with(r) && matches!(rest.get(r.len()), None | Some(b'/' | b':'))
            });
            match hit {
                Some((real, link)) => {
                    out.extend_from_slice(link.as_os_str().as_bytes());
                    i += real.as_os_str().len();
                }
                None => {
                    out.push(value[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// `(path on the stage, real path)` of every file run from the stage, as the profile needs
    /// them ([`crate::profile::BuildOptions::aliases`]).
    pub fn aliases(&self) -> Vec<(String, String)> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.iter().map(|(s, r)| (s.display().to_string(), r.display().to_string())).collect()
    }
}

/// Takes an exclusive `flock` on `file`, calling `on_wait` first when another process holds it.
fn lock_file(file: &File, path: &Path, on_wait: &dyn Fn()) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: plain system call on a descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(Error::io("could not lock", path, err));
    }
    on_wait();
    loop {
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("could not lock", path, err));
        }
    }
}

/// Makes `at` the file `real`: a hard link when both are on one file system, else a copy (with
/// its permissions), replacing whatever was at `at` in one rename. Nothing is done when `at` is
/// already `real` (same device and inode).
fn place_file(real: &Path, at: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(real).map_err(|e| Error::io("could not read", real, e))?;
    if std::fs::metadata(at).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino()) {
        return Ok(());
    }
    let tmp = at.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(real, &tmp).is_err() {
        std::fs::copy(real, &tmp).map_err(|e| Error::io("could not copy", real, e))?;
    }
    std::fs::rename(&tmp, at).map_err(|e| Error::io("could not place", at, e))
}

/// A name safe as one path segment: letters, digits, `.`, `-` and `_`; the rest become `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sides built in different places see one set of paths.
    #[test]
    fn both_sides_see_the_same_paths_and_the_real_files_behind_them() {
        let tmp = tempfile::tempdir().unwrap();
        let stage_dir = tmp.path().join("head/target/contprof/stage");
        let mut seen = Vec::new();
        for side in ["head", "head/target/contprof/base-worktree-with-a-longer-name"] {
            let root = tmp.path().join(side);
            let target = root.join("target");
            let raw = target.join(format!("contprof/latest/raw/{}", side.len()));
            let exe = target.join("contprof/deps/app-0123456789abcdef");
            std::fs::create_dir_all(&raw).unwrap();
            std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
            std::fs::write(&exe, side).unwrap();
            let mut stage = Stage::open(&stage_dir, &target, &raw, &|| {}).unwrap();
            stage.add_package("app", &root).unwrap();
            let program = stage.program(&exe, "app.lib.app").unwrap();
            assert_eq!(std::fs::read_to_string(&program).unwrap(), side);
            let root = std::fs::canonicalize(&root).unwrap();
            let target = std::fs::canonicalize(&target).unwrap();
            let raw = std::fs::canonicalize(&raw).unwrap();
            let env = format!(
                "{}:{}:/usr/lib",
                target.join("contprof/deps").display(),
                target.join("contprof").display()
            );
            let seen_by_process = (
                program.clone(),
                stage.path(&raw.join("test__t/run-1.raw")),
                stage.path(&root),
                stage.env_value(OsStr::new(&env)),
                stage.env_value(root.join("Cargo.toml").as_os_str()),
            );
            assert!(stage.aliases().contains(&(program.display().to_string(), exe.display().to_string())));
            // The raw file is reachable through its stage path.
            std::fs::create_dir_all(raw.join("test__t")).unwrap();
            std::fs::write(&seen_by_process.1, "x").unwrap();
            assert_eq!(std::fs::read(raw.join("test__t/run-1.raw")).unwrap(), b"x");
            seen.push(seen_by_process);
        }
        assert_eq!(seen[0], seen[1]);
        let deps = format!(
            "{}/target/contprof/deps:{}/target/contprof:/usr/lib",
            stage_dir.display(),
            stage_dir.display()
        );
        assert_eq!(seen[0].3, OsString::from(deps));
        assert_eq!(seen[0].2, stage_dir.join("pkg/app"));
    }

    #[test]
    fn a_second_recording_waits_for_the_stage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let first = Stage::open(&dir, tmp.path(), tmp.path(), &|| {}).unwrap();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, d) = (waited.clone(), dir.clone());
        let t = std::thread::spawn(move || {
            let tmp = d.parent().unwrap().to_owned();
            Stage::open(&d, &tmp, &tmp, &|| w.store(true, std::sync::atomic::Ordering::SeqCst)).map(|_| ())
        });
        while !waited.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        drop(first);
        assert!(t.join().unwrap().is_ok());
    }
}
