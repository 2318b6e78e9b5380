//! Runs are stored under their commit and read back by `log`, `show`, `export`, `import` and
//! `report --html`, against a store in a temporary directory.

use crate::redact::Redactions;
use crate::util::{contprof, finish, fixtures_manifest, run_fixture};

#[test]
fn a_run_is_stored_and_can_be_listed_shown_exported_and_reported() {
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let f = run_fixture(
        "cpu_split",
        out.path(),
        &["--store", store_arg, "--runs", "2", "--tag", "service=e2e"],
        &[("FIXTURE_SCALE", "0.2")],
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("Stored run"), "{f:?}");
    let run_id = f.stderr.split("Stored run ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    let log =
        finish(contprof().args(["log", "--format", "json", "--tag", "service=e2e", "--store", store_arg]));
    assert_eq!(log.code, 0, "{log:?}");
    let v: serde_json::Value = serde_json::from_str(&log.stdout).unwrap();
    let text = v.to_string();
    assert!(text.contains(&run_id), "{text}");
    let none =
        finish(contprof().args(["log", "--tag", "service=other", "--format", "json", "--store", store_arg]));
    assert!(!none.stdout.contains(&run_id), "{none:?}");

    let show = finish(contprof().args(["show", &run_id, "--store", store_arg]));
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("bin/cpu_split") && show.stdout.contains("service=e2e"), "{show:?}");

    let dir = tempfile::tempdir().unwrap();
    let export = finish(contprof().args(["export", &run_id]).arg(dir.path()).args(["--store", store_arg]));
    assert_eq!(export.code, 0, "{export:?}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(files.len(), 2, "one pprof file per repetition: {files:?}");
    for f in &files {
        crate::util::read_profile(f);
    }

    // The exported files import back as a new run.
    let import =
        finish(contprof().arg("import").args(&files).args(["--tag", "origin=import", "--store", store_arg]));
    assert_eq!(import.code, 0, "{import:?}");
    let log = finish(contprof().args(["log", "--tag", "origin=import", "--store", store_arg]));
    assert!(log.stdout.lines().count() >= 2, "{log:?}");

    // A raw sample file of the agent imports too: symbolized into pprof on the way in.
    let raw = crate::util::raw_file(out.path(), 1);
    let import =
        finish(contprof().arg("import").arg(&raw).args(["--group", "bin/from-raw", "--store", store_arg]));
    assert_eq!(import.code, 0, "{import:?}");
    let log =
        finish(contprof().args(["log", "--target", "from-raw", "--format", "json", "--store", store_arg]));
    assert!(log.stdout.contains("bin/from-raw"), "{log:?}");

    let html = out.path().join("report.html");
    let report = finish(contprof().args(["report", &run_id, "--store", store_arg]).arg("--html").arg(&html));
    assert_eq!(report.code, 0, "{report:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("workloads::burn_a") && !page.contains("src=\"http"),
        "self-contained page with the profile"
    );
}

#[test]
fn store_errors_are_clear() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let f = finish(
        contprof()
            .args(["show", "no-such-revision", "--store", store_arg])
            .arg("--manifest-path")
            .arg(fixtures_manifest()),
    );
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("no-such-revision"), "{f:?}");
    let redactions = Redactions::new().path(store.path(), "[STORE]");
    insta::assert_snapshot!("show-unknown-revision", redactions.apply(&f.stderr));
    // A store written by a newer version is refused and left alone.
    std::fs::write(store.path().join("store.json"), r#"{"format":"cargo-contprof-store","version":99}"#)
        .unwrap();
    let f = finish(contprof().args(["log", "--store", store_arg]));
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("version 99"), "{f:?}");
    insta::assert_snapshot!("newer-store-version", redactions.apply(&f.stderr));
    let bad = finish(
        contprof()
            .args(["import", "/nonexistent/file.pb.gz", "--store"])
            .arg(tempfile::tempdir().unwrap().path()),
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("/nonexistent/file.pb.gz"), "{bad:?}");
    insta::assert_snapshot!("import-missing-file", Redactions::new().apply(&bad.stderr));
}

/// Issue 15.1: `serve` stops promptly on SIGTERM and on SIGINT.
#[test]
fn serve_stops_on_sigterm_and_sigint() {
    use std::io::{BufRead, BufReader};
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let store = tempfile::tempdir().unwrap();
        let mut child = crate::util::contprof()
            .args(["serve", "--bind", "127.0.0.1:0", "--store"])
            .arg(store.path())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("Serving") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "serve ended before serving");
        }
        // SAFETY: plain syscall on our own, not yet reaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "serve ignored signal {sig}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.success(), "signal {sig}: {status:?}");
    }
}

/// Issue 15.1: `log` against a store that never answers stops promptly on SIGINT and SIGTERM,
/// with a message naming the store, instead of waiting out the network timeouts.
#[test]
fn commands_waiting_on_a_silent_store_stop_on_sigint_and_sigterm() {
    use std::io::Read;
    // An "S3 endpoint" that accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = crate::util::contprof()
            .args(["log", "--store", "s3://silent-bucket/runs"])
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "log did not wait for the silent store");
        // SAFETY: plain syscall on our own, not yet reaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "log ignored signal {sig}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "signal {sig}: {stderr}");
        assert!(stderr.contains("interrupted") && stderr.contains("silent-bucket"), "signal {sig}: {stderr}");
    }
}

/// `agent path` installs the embedded agent once and prints it; preloading it profiles a program
/// this tool did not start (here a shell loop), and `import` stores the raw file it wrote.
#[test]
fn agent_path_profiles_any_program_and_import_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = |d: &std::path::Path| {
        let f = finish(crate::util::contprof().args(["agent", "path", "--dir"]).arg(d));
        assert_eq!(f.code, 0, "{f:?}");
        f.stdout.trim().to_owned()
    };
    let lib = path(dir.path());
    assert!(lib.ends_with(".so") && std::path::Path::new(&lib).is_file(), "{lib}");
    assert_eq!(path(dir.path()), lib, "installed once");
    // A stable name for images: a link to the versioned file, replaced atomically.
    for _ in 0..2 {
        let f = finish(
            crate::util::contprof()
                .args(["agent", "path", "--link", "libcontprof.so", "--dir"])
                .arg(dir.path()),
        );
        assert_eq!(f.code, 0, "{f:?}");
        let linked = std::path::PathBuf::from(f.stdout.trim());
        assert_eq!(linked, dir.path().join("libcontprof.so"));
        assert_eq!(std::fs::canonicalize(&linked).unwrap(), std::fs::canonicalize(&lib).unwrap());
    }
    let bad =
        finish(crate::util::contprof().args(["agent", "path", "--link", "../x", "--dir"]).arg(dir.path()));
    assert_eq!(bad.code, 2, "{bad:?}");
    let raw = dir.path().join("run.raw");
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
        .env("LD_PRELOAD", &lib)
        .env("CONTPROF_OUTPUT", &raw)
        .env("CONTPROF_FREQUENCY", "999")
        .status()
        .unwrap();
    assert!(status.success());
    let file = contprof_protocol::format::RawFile::read_from(std::fs::File::open(&raw).unwrap()).unwrap();
    let samples = file
        .records
        .iter()
        .filter(|r| matches!(r, contprof_protocol::format::Record::CpuSample { .. }))
        .count();
    assert!(samples > 10, "{samples} CPU samples");
    let store = dir.path().join("store");
    let f = finish(crate::util::contprof().arg("import").arg(&raw).arg("--store").arg(&store));
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("Imported 1 profile"), "{f:?}");
}
