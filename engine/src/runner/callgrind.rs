//! The instructions engine's runner: the workload runs under valgrind's callgrind, which counts
//! every instruction it executes, per instruction address and per call edge. The agent still
//! runs inside it (with CPU sampling off and every allocation recorded), so allocation profiles
//! and the memory map for symbolization come from the same raw file as with the sampling engine.
//!
//! Callgrind's own costs stay low: no cache or branch simulation (`--cache-sim=no`,
//! `--branch-sim=no`), no jump recording. The agent's bookkeeping is left out of the counts with
//! `--toggle-collect` on its entry points ([`contprof_protocol::CALLGRIND_UNCOUNTED`]).
//!
//! Base and head must start from the same process image, or counts move without a code change:
//! the kernel (here valgrind) packs the program's arguments and environment strings one after
//! the other, so a longer path to the base's binary shifts the address of every string after it,
//! and glibc's vectorized `getenv`/`strcmp` run a different number of instructions on strings of
//! another alignment (measured: `std::env::var` in a 1% function moved it by 0.55%, above the
//! 0.5% threshold, when the base was rebuilt in a worktree). The workload runs from the stage
//! ([`super::stage`]), where both sides see the same paths.

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
/// at exit must not overwrite the workload's. With `--separate-threads=yes` this file stays
/// empty and each thread's counts are in `<this>-<thread number>` ([`process_outputs`]).
pub fn output_path(raw_path: &Path, pid: u32) -> PathBuf {
    raw_path.with_extension(format!("callgrind.{pid}"))
}

/// What callgrind wrote for process `pid` of the run of `raw_path`, from one listing of its
/// directory.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcessOutputs {
    /// The process's counts files, one per thread in the order of the threads' numbers
    /// (`<output_path>-01`, `-02`, ...); the one file of [`output_path`] when there are none (a
    /// callgrind that did not separate them). Empty when callgrind wrote nothing.
    pub threads: Vec<PathBuf>,
    /// The other processes that wrote counts for the run (children forked by the workload that
    /// stayed under valgrind).
    pub other_processes: usize,
}

/// The counts files of process `pid` and how many other processes wrote some (see
/// [`ProcessOutputs`]).
pub fn process_outputs(raw_path: &Path, pid: u32) -> ProcessOutputs {
    let mut threads: Vec<(u32, PathBuf)> = Vec::new();
    let mut others = std::collections::BTreeSet::new();
    for (p, thread, path) in named_outputs(raw_path) {
        match (p == pid, thread) {
            (true, Some(t)) => threads.push((t, path)),
            (true, None) => {}
            (false, _) => {
                others.insert(p);
            }
        }
    }
    let threads = if threads.is_empty() {
        let path = output_path(raw_path, pid);
        if path.exists() { vec![path] } else { Vec::new() }
    } else {
        threads.sort();
        threads.into_iter().map(|(_, p)| p).collect()
    };
    ProcessOutputs { threads, other_processes: others.len() }
}

/// The counts files of the run of `raw_path` with the process and, when callgrind separated
/// them, the thread each names (`<prefix><pid>[-<thread>]`); other names are skipped.
fn named_outputs(raw_path: &Path) -> impl Iterator<Item = (u32, Option<u32>, PathBuf)> {
    let prefix = prefix(raw_path);
    outputs(raw_path).into_iter().filter_map(move |path| {
        let rest = path.file_name()?.to_str()?.strip_prefix(&prefix)?;
        let (pid, thread) = match rest.split_once('-') {
            Some((pid, thread)) => (pid.parse().ok()?, Some(thread.parse().ok()?)),
            None => (rest.parse().ok()?, None),
        };
        Some((pid, thread, path))
    })
}

/// The counts files of every process of the run whose raw sample file is `raw_path`.
pub fn outputs(raw_path: &Path) -> Vec<PathBuf> {
    let prefix = prefix(raw_path);
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

/// The start of the name of every counts file of the run of `raw_path` (`run-1.callgrind.`).
fn prefix(raw_path: &Path) -> String {
    format!("{}.", raw_path.with_extension("callgrind").file_name().unwrap_or_default().to_string_lossy())
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
        // A call graph per thread: stacks are synthesized from each thread's graph alone, so
        // that one thread's work never shifts how another's is split among its callers (libtest's
        // main thread formats the elapsed time, a different number of instructions at each run,
        // through the same `fmt` and `memcpy` as the test's thread).
        "--separate-threads=yes".into(),
    ];
    v.extend(
        contprof_protocol::CALLGRIND_UNCOUNTED
            .iter()
            .map(|f| OsString::from(format!("--toggle-collect={f}"))),
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
        for f in contprof_protocol::CALLGRIND_UNCOUNTED {
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
        assert!(strs.contains(&"--separate-threads=yes".to_owned()));
    }

    #[test]
    fn a_process_counts_are_its_threads_files_in_thread_order() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("run-1.raw");
        let threads = |pid| process_outputs(&raw, pid).threads;
        let others = |pid| process_outputs(&raw, pid).other_processes;
        assert!(threads(7).is_empty());
        // Without separated threads: the one file.
        std::fs::write(output_path(&raw, 7), "x").unwrap();
        assert_eq!(threads(7), [output_path(&raw, 7)]);
        // Separated: callgrind leaves the process's file empty beside its threads'.
        for name in
            ["run-1.callgrind.7-10", "run-1.callgrind.7-02", "run-1.callgrind.77-01", "run-1.callgrind.7-01"]
        {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<String> =
            threads(7).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["run-1.callgrind.7-01", "run-1.callgrind.7-02", "run-1.callgrind.7-10"]);
        assert_eq!(others(7), 1);
        assert_eq!(others(77), 1);
        assert_eq!(others(8), 2);
    }
}
