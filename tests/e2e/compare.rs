//! `compare` and `check` end to end: real recordings of the `regress` fixture in a temporary store
//! (and a temporary git repository for the baseline lookup), asserting on large effects only.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::redact::Redactions;
use crate::util::{Finished, contprof, finish, fixtures_manifest};

/// Small and quick: ~0.15 s of CPU per run, sampled at 4999 Hz for clear verdicts on +50%.
const SCALE: &str = "0.4";

pub(crate) fn record(store: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    record_bin("regress", store, out, extra, env)
}

/// [`record`] of the fixture binary `bin` (`env` may override `FIXTURE_SCALE`); returns the run id.
pub(crate) fn record_bin(
    bin: &str,
    store: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    stored_run(finish(&mut record_command(bin, store, out, extra, env)))
}

/// [`record_bin`] with no other command of the tests running meanwhile (for timing-sensitive
/// recordings such as wall time, which a loaded machine biases).
pub(crate) fn record_bin_alone(
    bin: &str,
    store: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    stored_run(crate::util::finish_alone(&mut record_command(bin, store, out, extra, env)))
}

fn record_command(bin: &str, store: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = contprof();
    cmd.args(["run", "--bin", bin, "--top", "0", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("-o")
        .arg(out)
        .arg("--store")
        .arg(store)
        .args(extra)
        .env("FIXTURE_SCALE", SCALE);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The id of the run that `f` (a `run --store`) stored.
fn stored_run(f: Finished) -> String {
    assert_eq!(f.code, 0, "{f:?}");
    let stored = f.stderr.lines().find_map(|l| l.trim().strip_prefix("Stored run ")).map(|l| l.to_owned());
    stored.and_then(|l| l.split_whitespace().next().map(str::to_owned)).unwrap_or_else(|| panic!("{f:?}"))
}

pub(crate) fn compare(store: &Path, args: &[&str]) -> Finished {
    finish(
        contprof()
            .arg("compare")
            .args(args)
            .arg("--manifest-path")
            .arg(fixtures_manifest())
            .arg("--store")
            .arg(store),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn names(report: &Value, list: &str) -> Vec<(String, String)> {
    report[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["function"].as_str().unwrap_or("").to_owned(),
                        f["metric"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn aa_compare_exits_0_and_different_settings_are_refused() {
    let (store, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--runs", "4", "--frequency", "4999"];
    let base = record(store.path(), out.path(), &flags, &[]);
    let head = record(store.path(), out.path(), &flags, &[]);
    let f = compare(store.path(), &[&base, &head, "--format", "json", "--no-flamegraphs"]);
    assert_eq!(f.code, 0, "{f:?}");
    let report = json(&f.stdout);
    assert_eq!(report["version"], 2);
    assert!(names(&report, "regressions").is_empty(), "{f:?}");

    let other = record(store.path(), out.path(), &["--runs", "1", "--frequency", "499"], &[]);
    let f = compare(store.path(), &[&base, &other]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("base sampled at 4999 Hz, head at 499 Hz"), "{f:?}");
    insta::assert_snapshot!("settings-differ", Redactions::new().apply(&f.stderr));
}

#[test]
fn exact_extra_allocation_is_flagged() {
    let (store, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--runs", "2", "--alloc", "exact", "--frequency", "0"];
    let base = record(store.path(), out.path(), &flags, &[]);
    let head = record(store.path(), out.path(), &flags, &[("FIXTURE_EXTRA_ALLOC", "1")]);
    // The extra allocation is switched on by the environment: the machine code is the same, so
    // the change is an input's, reported as shifted and not gated...
    let f = compare(store.path(), &[&base, &head, "--format", "json", "--no-flamegraphs"]);
    assert_eq!(f.code, 0, "{f:?}");
    let report = json(&f.stdout);
    assert!(names(&report, "regressions").is_empty(), "{f:?}");
    let shifted = names(&report, "shifted");
    assert!(shifted.contains(&("regress::alloc_loop".into(), "alloc_count".into())), "{shifted:?}");
    // ... unless asked to gate on every change (`--strict`).
    let f = compare(store.path(), &[&base, &head, "--format", "json", "--no-flamegraphs", "--strict"]);
    assert_eq!(f.code, 1, "{f:?}");
    let found = names(&json(&f.stdout), "regressions");
    assert!(found.contains(&("regress::alloc_loop".into(), "alloc_count".into())), "{found:?}");
}

#[test]
fn unknown_revision_and_missing_runs_are_named() {
    let store = tempfile::tempdir().unwrap();
    let redactions = Redactions::new().path(store.path(), "[STORE]");
    let f = compare(store.path(), &["no-such-rev-xyz", "HEAD"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("no-such-rev-xyz"), "{f:?}");
    insta::assert_snapshot!("unknown-revision", redactions.apply(&f.stderr));
    let f = compare(store.path(), &["HEAD~1", "HEAD"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("no runs of revision") && f.stderr.contains("cargo contprof run"), "{f:?}");
    insta::assert_snapshot!("no-runs-of-revision", redactions.apply(&f.stderr));
}

#[test]
fn bad_config_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"p\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(dir.path().join("contprof.toml"), "alpha = 0.05\nthreshold = 0.1\n").unwrap();
    let store = dir.path().join("store");
    let run = |args: &[&str]| {
        finish(
            contprof()
                .args(args)
                .arg("--manifest-path")
                .arg(dir.path().join("Cargo.toml"))
                .arg("--store")
                .arg(&store),
        )
    };
    let redactions = Redactions::new().path(dir.path(), "[DIR]");
    let f = run(&["compare", "HEAD"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("threshold") && f.stderr.contains("contprof.toml"), "{f:?}");
    insta::assert_snapshot!("unknown-config-key", redactions.apply(&f.stderr));

    // The same in the manifest's metadata, with a bad value.
    std::fs::remove_file(dir.path().join("contprof.toml")).unwrap();
    let mut manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
    manifest.push_str("\n[package.metadata.contprof.thresholds]\ncpu = -1\n");
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    let f = run(&["check"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("thresholds.cpu") && f.stderr.contains("Cargo.toml"), "{f:?}");
    insta::assert_snapshot!("bad-config-value", redactions.apply(&f.stderr));
}

/// A git repository holding the fixture's `workloads` package, on branch `main`.
struct Repo {
    project: crate::util::GitProject,
    store: PathBuf,
}

impl std::ops::Deref for Repo {
    type Target = crate::util::GitProject;
    fn deref(&self) -> &Self::Target {
        &self.project
    }
}

impl Repo {
    fn new() -> Repo {
        let project = crate::util::GitProject::new();
        let store = project.dir.path().join("store");
        Repo { project, store }
    }

    fn check(&self, extra: &[&str], env: &[(&str, &str)]) -> Finished {
        self.check_in(&self.store, extra, env)
    }

    fn check_in(&self, store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Finished {
        let mut cmd = contprof();
        // Stored baselines: the slowdowns below are switched by the environment, which an
        // interleaved base would see too.
        cmd.args(["check", "--baseline", "stored", "--bin", "regress", "--runs", "5", "--frequency", "4999"])
            .arg("--store")
            .arg(store)
            .args(extra)
            .current_dir(&self.root)
            .env("FIXTURE_SCALE", SCALE);
        for (k, v) in env {
            cmd.env(k, v);
        }
        finish(&mut cmd)
    }
}

#[test]
fn check_without_baseline_then_flags_a_slowdown() {
    let repo = Repo::new();
    // No baseline: HEAD is recorded; --no-baseline=fail exits 5, the default passes.
    let f = repo.check(&["--no-baseline=fail"], &[]);
    assert_eq!(f.code, 5, "{f:?}");
    assert!(f.stderr.contains("no baseline"), "{f:?}");

    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feature");
    let reports = repo.root.join("reports");
    // The slowdown is the fixture's switch, not a code change: `--strict` gates on it.
    let f = repo.check(
        &["--report-dir", reports.to_str().unwrap(), "--strict"],
        &[("FIXTURE_SLOWDOWN_THIRTY", "1.5")],
    );
    assert_eq!(f.code, 1, "{f:?}");
    let report = json(&std::fs::read_to_string(reports.join("report.json")).unwrap());
    let found = names(&report, "regressions");
    assert!(found.contains(&("regress::thirty".into(), "cpu".into())), "{found:?}\n{f:?}");
    let md = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(md.contains("regress::thirty"), "{md}");
    assert!(
        std::fs::read_dir(&reports).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "svg"))
    );
    assert!(f.stdout.contains("regress::thirty"), "{f:?}");

    // A fresh store: no baseline, and the default is to pass after recording HEAD.
    let f = repo.check_in(&repo.root.join("other-store"), &[], &[]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("no baseline") && f.stderr.contains("HEAD was recorded"), "{f:?}");
}

/// Issue 15.16: a run the index lists whose metadata is gone (a deletion that raced the index) is
/// skipped with a warning; the commit's other runs are still its baseline.
#[test]
fn a_baseline_run_without_metadata_is_skipped_not_fatal() {
    let repo = Repo::new();
    for _ in 0..2 {
        let f = repo.check(&[], &[]);
        assert_eq!(f.code, 0, "{f:?}");
    }
    let runs: Vec<PathBuf> =
        std::fs::read_dir(repo.store.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    std::fs::remove_file(runs[0].join("meta.json")).unwrap();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feature");
    let f = repo.check(&[], &[]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("has no metadata") && f.stderr.contains("skipped"), "{f:?}");
    assert!(f.stderr.contains("Comparing"), "{f:?}");
}
