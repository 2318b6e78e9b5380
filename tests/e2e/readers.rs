//! Profiles are read by tools nobody here wrote: `go tool pprof` and npm `pprof-format`.

use std::process::Command;

use crate::util::{repo_root, run_fixture, tools_required};

/// Whether `program args` runs; when it does not, the test skips (or fails when the tools are
/// required).
pub(crate) fn available(program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!tools_required(), "{program} is required (CONTPROF_REQUIRE_TOOLS is set) but not usable");
        eprintln!("skipping: {program} not installed (.ci/run installs it)");
    }
    ok
}

#[test]
fn go_tool_pprof_reads_the_profile_and_finds_the_binary() {
    if !available("go", &["version"]) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("cpu_split", out.path(), &[], &[("FIXTURE_SCALE", "0.3")]);
    assert_eq!(f.code, 0, "{f:?}");
    let o = Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=cpu"])
        .arg(out.path().join("profile.pb.gz"))
        .env("PPROF_TMPDIR", out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("workloads::burn_a"), "{stdout}");
    assert!(!stderr.contains("Main binary filename not available"), "{stderr}");
    let alloc = Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=alloc_space"])
        .arg(out.path().join("profile.pb.gz"))
        .output()
        .unwrap();
    assert!(alloc.status.success(), "{}", String::from_utf8_lossy(&alloc.stderr));
}

/// The contention types (Go's own names) read as Go reads its block profiles.
#[test]
fn go_tool_pprof_reads_the_contention_types() {
    if !available("go", &["version"]) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture(
        "lock_wait",
        out.path(),
        &["--contention", "--no-store", "--", "std"],
        &[("FIXTURE_SCALE", "0.2")],
    );
    assert_eq!(f.code, 0, "{f:?}");
    for index in ["delay", "contentions"] {
        let o = Command::new("go")
            .args(["tool", "pprof", "-top", "-cum", &format!("-sample_index={index}")])
            .arg(out.path().join("profile.pb.gz"))
            .env("PPROF_TMPDIR", out.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains(&format!("Type: {index}")), "{stdout}");
        assert!(stdout.contains("lock_wait::std_contender"), "{stdout}");
    }
}

/// Whether node and npm `pprof-format` (`tests/js/node_modules`) are there; when they are not,
/// the test skips (or fails when the tools are required).
pub(crate) fn pprof_format_available() -> bool {
    if !repo_root().join("tests/js/node_modules/pprof-format").exists() {
        assert!(!tools_required(), "tests/js/node_modules missing: run `npm ci` in tests/js");
        eprintln!("skipping: npm pprof-format not installed (.ci/run installs it)");
        return false;
    }
    available("node", &["--version"])
}

/// What npm `pprof-format` reads in the profile at `path` (`tests/js/decode.mjs`'s summary).
pub(crate) fn pprof_format_summary(path: &std::path::Path) -> serde_json::Value {
    let o = Command::new("node").arg(repo_root().join("tests/js/decode.mjs")).arg(path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn npm_pprof_format_decodes_the_profile() {
    if !pprof_format_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("cpu_split", out.path(), &[], &[("FIXTURE_SCALE", "0.3")]);
    assert_eq!(f.code, 0, "{f:?}");
    let summary = pprof_format_summary(&out.path().join("profile.pb.gz"));
    let types: Vec<&str> =
        summary["sampleTypes"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(types.contains(&"cpu/nanoseconds") && types.contains(&"alloc_space/bytes"), "{summary}");
    assert!(summary["samples"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["mappings"][0].as_str().unwrap().ends_with("cpu_split"), "{summary}");
}
