//! Bad input: each a clear one-line error with the documented exit code, never a panic.
//!
//! Each message is also a snapshot (`snapshots/e2e__errors__*.snap`): what a user reads when they
//! make the mistake, with paths redacted.

use crate::redact::Redactions;
use crate::util::{contprof, finish, fixtures_manifest};

fn assert_clean_error(f: &crate::util::Finished, code: i32, needles: &[&str]) {
    assert_eq!(f.code, code, "{f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
    for n in needles {
        assert!(f.stderr.contains(n), "missing `{n}`: {f:?}");
    }
}

/// [`assert_clean_error`], then the whole of standard error as the snapshot `name`.
fn assert_error_snapshot(f: &crate::util::Finished, code: i32, needles: &[&str], name: &str) {
    assert_error_snapshot_with(f, code, needles, name, &Redactions::new());
}

/// [`assert_error_snapshot`] with redactions of the test's own.
fn assert_error_snapshot_with(
    f: &crate::util::Finished,
    code: i32,
    needles: &[&str],
    name: &str,
    redactions: &Redactions,
) {
    assert_clean_error(f, code, needles);
    insta::assert_snapshot!(name, redactions.apply(&f.stderr));
}

#[test]
fn unknown_target_lists_the_existing_ones() {
    let f = finish(contprof().args(["run", "--bin", "nope", "--manifest-path"]).arg(fixtures_manifest()));
    assert_error_snapshot(
        &f,
        2,
        &["no bin target named `nope`", "cpu_split", "alloc_split"],
        "unknown-target",
    );
}

#[test]
fn no_target_given_in_a_multi_binary_package_lists_them() {
    let f = finish(contprof().args(["run", "--manifest-path"]).arg(fixtures_manifest()));
    assert_error_snapshot(&f, 2, &["--bin NAME", "cpu_split"], "no-target-in-a-multi-binary-package");
}

#[test]
fn unknown_package() {
    let f = finish(
        contprof().args(["run", "-p", "ghost", "--bin", "x", "--manifest-path"]).arg(fixtures_manifest()),
    );
    assert_error_snapshot(&f, 2, &["package `ghost`", "workloads"], "unknown-package");
}

#[test]
fn not_a_cargo_project() {
    let dir = tempfile::tempdir().unwrap();
    let f = finish(contprof().args(["run", "--bin", "x"]).current_dir(dir.path()));
    let redactions = Redactions::new().path(dir.path(), "[DIR]");
    assert_error_snapshot_with(
        &f,
        2,
        &["could not read the cargo workspace"],
        "not-a-cargo-project",
        &redactions,
    );
}

#[test]
fn unknown_flag() {
    let f = finish(contprof().args(["run", "--frobnicate"]));
    assert_error_snapshot(&f, 2, &["--frobnicate"], "unknown-flag");
}

#[test]
fn bad_values() {
    for (args, needle, name) in [
        (&["--frequency", "50000"][..], "--frequency", "bad-frequency"),
        (&["--alloc-interval", "lots"][..], "--alloc-interval", "bad-alloc-interval"),
        (&["--runs", "0"][..], "--runs", "bad-runs"),
        (&["--tag", "novalue"][..], "--tag", "bad-tag"),
    ] {
        let f = finish(
            contprof()
                .arg("run")
                .args(args)
                .arg("--manifest-path")
                .arg(fixtures_manifest())
                .args(["--bin", "cpu_split"]),
        );
        assert_error_snapshot(&f, 2, &[needle], name);
    }
}

#[test]
fn unwritable_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let f = finish(
        contprof()
            .args(["run", "--bin", "cpu_split", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("-o")
            .arg(file.join("sub")),
    );
    let redactions = Redactions::new().path(dir.path(), "[DIR]");
    assert_error_snapshot_with(&f, 2, &["output directory"], "unwritable-output-directory", &redactions);
}

#[test]
fn build_failure_shows_cargos_error_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() { let x: u32 = \"not a number\"; }\n").unwrap();
    let f = finish(contprof().args(["run"]).current_dir(dir.path()));
    assert_clean_error(&f, 3, &["mismatched types", "build failed"]);
}

#[test]
fn a_terminated_run_passes_the_signal_on_and_keeps_its_samples() {
    let out = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut cmd = contprof();
    cmd.args(["run", "--bin", "cpu_split", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("--store")
        .arg(store.path())
        .arg("-o")
        .arg(out.path())
        .env("FIXTURE_SCALE", "30")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let _shared = crate::util::shared();
    let child = cmd.spawn().unwrap();
    // Wait until the workload has written its first CPU sample (the memory map written at start
    // alone is not enough: a stop before the first sample leaves nothing to keep), then stop cargo
    // contprof alone, as a CI runner cancelling a job does.
    // This invocation's own raw directory (`raw/<pid>/`).
    let raw = out.path().join(format!("raw/{}/run-1.raw", child.id()));
    let started = std::time::Instant::now();
    let has_a_sample = || {
        let Ok(bytes) = std::fs::read(&raw) else { return false };
        contprof_protocol::format::RawFile::parse(&bytes).is_ok_and(|f| {
            f.records.iter().any(|r| matches!(r, contprof_protocol::format::Record::CpuSample { .. }))
        })
    };
    while !has_a_sample() {
        assert!(started.elapsed().as_secs() < 60, "the workload never wrote a sample");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: plain syscall on our own, not yet reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let p = crate::util::read_profile(&out.path().join("profile.pb.gz"));
    assert!(p.total(p.sample_type_index("samples").unwrap()) > 0);
    // Issue 15.9: the stopped run is stored, marked, and kept out of comparisons.
    let show = finish(
        contprof()
            .args(["show", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("--store")
            .arg(store.path()),
    );
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("(killed by SIGTERM: not compared)"), "{show:?}");
}

/// Issue 15.14: numbers too large for a duration or the calendar are errors or plain results,
/// never panics.
#[test]
fn huge_timeouts_and_retentions_do_not_panic() {
    let f = finish(
        contprof()
            .args(["test", "-p", "suite", "--timeout", "1e30", "--manifest-path"])
            .arg(fixtures_manifest()),
    );
    assert_error_snapshot(&f, 2, &["--timeout", "1e30"], "huge-timeout");
    let store = tempfile::tempdir().unwrap();
    let f = finish(
        contprof()
            .args(["gc", "--keep-days", "100000000", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("--store")
            .arg(store.path()),
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

/// Issue 15.19: a git that fails for another reason than "not a repository" (here a broken global
/// configuration; in containers, "dubious ownership") is shown as git said it, and `compare`,
/// which needs commits, stops with exit 2.
#[test]
fn a_failing_git_is_shown_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gitconfig");
    std::fs::write(&config, "[core\nthis is not git config\n").unwrap();
    let f = finish(
        contprof()
            .args(["compare", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("--store")
            .arg(dir.path().join("store"))
            .env("GIT_CONFIG_GLOBAL", &config),
    );
    let redactions = Redactions::new().path(dir.path(), "[DIR]");
    assert_error_snapshot_with(&f, 2, &["git rev-parse", "config"], "failing-git", &redactions);
    assert!(!f.stderr.contains("is not inside a git repository"), "{f:?}");
}

/// Without git, revisions cannot be resolved: `compare` says so (run ids still work).
#[test]
fn missing_git() {
    // A PATH with cargo and rustc but no git.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["cargo", "rustc"] {
        let found =
            std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        std::os::unix::fs::symlink(&path, bin.path().join(tool)).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let f = finish(
        contprof()
            .args(["compare", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("--store")
            .arg(store.path())
            .env("PATH", bin.path()),
    );
    assert_error_snapshot(&f, 2, &["`HEAD` is not a run id", "git"], "missing-git");
}

/// A file given to `import` that is not a pprof profile (nor a raw sample file) is refused with
/// its name, and nothing is stored.
#[test]
fn corrupt_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.pb.gz");
    std::fs::write(&file, b"this is not a profile").unwrap();
    let store = dir.path().join("store");
    let f = finish(contprof().arg("import").arg(&file).arg("--store").arg(&store).current_dir(dir.path()));
    let redactions = Redactions::new().path(dir.path(), "[DIR]");
    assert_error_snapshot_with(&f, 2, &["cpu.pb.gz"], "corrupt-profile-file", &redactions);
    let log = finish(contprof().args(["log", "--store"]).arg(&store).current_dir(dir.path()));
    assert_eq!(log.code, 0, "{log:?}");
    assert_eq!(log.stdout, "no runs\n", "{log:?}");
}

/// An object store that refuses connections: the error names the store, after a few quick
/// retries, with exit 2.
#[test]
fn store_unreachable() {
    // A port that was free a moment ago: connections to it are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let f = finish(
        contprof()
            .args(["log", "--store", "s3://nobody/runs"])
            .current_dir(dir.path())
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1"),
    );
    let redactions = Redactions::new()
        .pattern(&format!(r"127\.0\.0\.1:{port}"), "127.0.0.1:[PORT]")
        .pattern(r"\b\d+(\.\d+)?(ns|µs|ms|s)\b", "[DURATION]");
    assert_error_snapshot_with(&f, 2, &["s3://nobody/runs", "unreachable"], "store-unreachable", &redactions);
}

/// Flags whose values are checked by the parser, and values no command accepts.
#[test]
fn bad_flag_values_of_other_commands() {
    let store = tempfile::tempdir().unwrap();
    for (args, needle, name) in [
        (&["compare", "--format", "yaml"][..], "yaml", "compare-bad-format"),
        (&["check", "--alpha", "2"][..], "alpha", "check-bad-alpha"),
        (&["check", "--ignore", "(unclosed"][..], "(unclosed", "check-bad-ignore-pattern"),
        (&["log", "--since", "yesterday"][..], "yesterday", "log-bad-since"),
        (&["check", "--no-baseline", "maybe"][..], "maybe", "check-bad-no-baseline"),
    ] {
        let f = finish(
            contprof()
                .args(args)
                .arg("--manifest-path")
                .arg(fixtures_manifest())
                .arg("--store")
                .arg(store.path()),
        );
        let redactions = Redactions::new().path(store.path(), "[STORE]");
        assert_error_snapshot_with(&f, 2, &[needle], name, &redactions);
    }
}
