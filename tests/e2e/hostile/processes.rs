//! Processes: fork and daemonize, pre-fork workers, `exec` of another program, a statically
//! linked program, 10,000 threads.

use super::programs::c_program;
use super::run::{Case, PROD, PROD_ITIMER, RUN, RUN_ITIMER, RawExpect, run_case};
use crate::util::{contprof, fixtures_manifest, repo_root};

/// Double fork and setsid; the parent exits at once, the daemon works on and writes its result.
/// In production mode every window comes from the daemon (the parent lives a few milliseconds):
/// it must be profiled as an instance of its own, and no uploader may outlive it.
#[test]
fn fork_and_daemonize() {
    let Some(program) = c_program("fork_daemon") else { return };
    let mut case = Case::new("fork and daemonize", program, &[]).windows();
    case.detached = Some(("result", "daemon.pid"));
    run_case(case).assert_unchanged();
}

/// Three pre-forked workers that keep running, then end with distinct codes.
#[test]
fn prefork_workers() {
    let Some(program) = c_program("prefork") else { return };
    run_case(Case::new("pre-fork workers", program, &[]).windows()).assert_unchanged();
}

fn exec(how: &str) {
    let (Some(program), Some(target)) = (c_program("exec"), c_program("exec_target")) else { return };
    let target = target.to_str().unwrap().to_owned();
    run_case(Case::new(&format!("exec ({how})"), program, &[how, &target]).also(&[RUN_ITIMER, PROD_ITIMER]))
        .assert_unchanged();
}

#[test]
fn exec_with_execv() {
    exec("execv");
}

#[test]
fn exec_with_execvp() {
    exec("execvp");
}

/// `execl` of /bin/sh, which execs the target in turn.
#[test]
fn exec_with_execl_through_a_shell() {
    exec("execl");
}

/// Execs after burning CPU on two threads: an interval timer that survives `execve` kills the
/// new program with SIGPROF.
#[test]
fn exec_after_burning_cpu() {
    exec("burn-execv");
}

/// A second thread execs while the main thread computes.
#[test]
fn exec_from_a_second_thread() {
    exec("thread-execv");
}

/// `cc -static`: the dynamic loader is not there to preload anything; the program runs as it
/// does without the agent, and no raw file appears.
#[test]
fn statically_linked_c_program() {
    let Some(program) = c_program("static_prog") else { return };
    let mut case = Case::new("statically linked", program, &[]).only(&[PROD, RUN]);
    case.raw_file = RawExpect::Absent;
    let report = run_case(case);
    report.assert_unchanged();
    let run = report.outcome(RUN.name);
    assert!(!run.notes.iter().any(|n| n.contains("raw file")), "{}", report.summary());
}

/// The tool involved: `cargo contprof run` on a Rust program built with `crt-static` runs it,
/// passes its output and exit status through, and says why there is no profile.
#[test]
fn statically_linked_rust_program_under_cargo_contprof_run() {
    let _shared = crate::util::shared();
    let out = tempfile::tempdir().unwrap();
    let run = crate::util::output(
        contprof()
            .args(["run", "--manifest-path"])
            .arg(fixtures_manifest())
            .args(["-p", "hostile", "--bin", "static_rust", "--no-store", "-o"])
            .arg(out.path())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            // Its own target directory: other flags would rebuild the fixtures' shared one.
            .env("CARGO_TARGET_DIR", repo_root().join("fixtures/target/hostile-static")),
    );
    let exe = repo_root().join("fixtures/target/hostile-static/contprof/static_rust");
    assert!(has_no_interpreter(&exe), "{} is not statically linked: {run:?}", exe.display());
    let native = std::process::Command::new(&exe).output().unwrap();
    assert_eq!(native.status.code(), Some(3));
    assert_eq!(run.stdout, String::from_utf8_lossy(&native.stdout), "{run:?}");
    assert!(run.stderr.contains("static rust: done"), "{run:?}");
    assert!(run.stderr.contains("exit status 3"), "the workload's exit is reported: {run:?}");
    assert!(run.stderr.contains("static"), "the message says why there is no profile: {run:?}");
    assert_ne!(run.code, 0, "{run:?}");
}

/// 10,000 threads created and joined, 100 at a time.
#[test]
fn ten_thousand_threads() {
    let Some(program) = c_program("threads10k") else { return };
    run_case(Case::new("10,000 threads", program, &[])).assert_unchanged();
}

/// Whether the ELF executable at `path` has no `PT_INTERP` program header (no dynamic loader).
fn has_no_interpreter(path: &std::path::Path) -> bool {
    let Ok(elf) = std::fs::read(path) else { return false };
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != libc::PT_INTERP)
    })
}
