//! `run --contention` on the `lock_wait` fixture: the time its threads waited for a lock, as the
//! profile's `delay`, against what the fixture measured with its own clock (`expected.toml`).

use contprof_engine::profile::{CostView, Profile};

use crate::util::{contprof, describe, expectation, fixtures_manifest, read_profile, run_fixture};

/// Runs `lock_wait <mode>` with `--contention`; returns the profile and the fixture's stderr.
fn run_mode(out: &std::path::Path, mode: &str, env: &[(&str, &str)]) -> (Profile, String) {
    let f = run_fixture("lock_wait", out, &["--contention", "--no-store", "--", mode], env);
    assert_eq!(f.code, 0, "{f:?}");
    (read_profile(&out.join("profile.pb.gz")), f.stderr)
}

fn totals(p: &Profile) -> (i64, i64) {
    let c = p.sample_type_index("contentions").expect("contentions sample type");
    let d = p.sample_type_index("delay").expect("delay sample type");
    (p.total(c), p.total(d))
}

#[test]
fn lock_waits_match_what_the_fixture_measured() {
    let expected = expectation("lock_wait");
    for case in expected["contention"].as_array().unwrap() {
        let (mode, function) = (case["mode"].as_str().unwrap(), case["function"].as_str().unwrap());
        let tolerance = case["tolerance"].as_float().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (profile, stderr) = run_mode(out.path(), mode, &[]);
        let prefix = format!("measured wait: {function}=");
        let measured: f64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: no `{prefix}` line\n{stderr}"));
        let (waits, delay) = totals(&profile);
        let view = CostView::from_profile(&profile);
        assert!(
            (delay as f64 / measured - 1.0).abs() <= tolerance,
            "{mode}: the profile has {delay} ns of delay in {waits} waits, the fixture measured {measured} ns \
             (± {tolerance})\n{}",
            describe(&view, "delay")
        );
        // Every wait is on the waiting function's stack (the leaf is libc's or std's).
        let share = crate::util::share(&view, "delay", function, true);
        assert!(
            share > 0.99,
            "{mode}: {function} holds {share:.3} of the delay\n{}",
            describe(&view, "delay")
        );
        // How many waits there are depends on the scheduler: std's `Mutex` is not fair, so one
        // thread may take many turns in a row while the other waits once, long. The time is what
        // the fixture measures; the count only has to be there.
        assert!(waits >= 1, "{mode}: no wait recorded for {delay} ns of delay");
    }
}

#[test]
fn uncontended_locking_records_almost_nothing() {
    let expected = expectation("lock_wait");
    let limits = &expected["uncontended"];
    let out = tempfile::tempdir().unwrap();
    let (profile, _) = run_mode(out.path(), limits["mode"].as_str().unwrap(), &[("FIXTURE_SCALE", "0.02")]);
    let (waits, delay) = totals(&profile);
    assert!(
        waits <= limits["max_contentions"].as_integer().unwrap()
            && delay as f64 <= limits["max_delay_ms"].as_float().unwrap() * 1e6,
        "{waits} waits for {delay} ns recorded on uncontended locks"
    );
}

#[test]
fn profiles_without_contention_keep_their_sample_types() {
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("lock_wait", out.path(), &["--no-store", "--", "std"], &[("FIXTURE_SCALE", "0.1")]);
    assert_eq!(f.code, 0, "{f:?}");
    let p = read_profile(&out.path().join("profile.pb.gz"));
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|v| (p.str(v.r#type), p.str(v.unit))).collect();
    assert_eq!(types, contprof_engine::profile::SAMPLE_TYPES);
}

/// The stored run says how waits were sampled, so that runs with and without them never mix.
#[test]
fn the_stored_run_records_the_contention_rate() {
    let (out, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let f = crate::util::finish(
        contprof()
            .args(["run", "--manifest-path"])
            .arg(fixtures_manifest())
            .args(["--bin", "lock_wait", "--contention-rate", "50us", "--store"])
            .arg(store.path())
            .arg("-o")
            .arg(out.path())
            .args(["--", "std"])
            .env("FIXTURE_SCALE", "0.1"),
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("waits sampled at 50 µs"), "{f:?}");
    let runs: Vec<_> = std::fs::read_dir(store.path().join("runs")).unwrap().flatten().collect();
    assert_eq!(runs.len(), 1, "{f:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["settings"]["contention_rate_ns"], 50_000, "{meta}");
}

/// Issue 14: `compare` tests contention like the other metrics. The head holds the lock 4× as
/// long (`FIXTURE_HOLD_US`), so its threads wait 4× as long; since the environment made the change
/// and not the code, it is a shift, gated with `--strict`. Whatever the scheduler does with the
/// unfair `std::sync::Mutex`, a run waits between half and all of its holds, so the sides are
/// at least 2× apart.
#[test]
fn longer_lock_holds_are_a_delay_regression() {
    use crate::compare::{compare, record_bin};
    let (store, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--runs", "5", "--contention", "--", "std"];
    let scale = ("FIXTURE_SCALE", "0.1");
    let base = record_bin("lock_wait", store.path(), out.path(), &flags, &[scale]);
    let head =
        record_bin("lock_wait", store.path(), out.path(), &flags, &[scale, ("FIXTURE_HOLD_US", "8000")]);
    let args = [base.as_str(), head.as_str(), "--format", "json", "--no-flamegraphs"];
    let report = |f: &crate::util::Finished| -> serde_json::Value {
        serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {f:?}"))
    };
    let delay_findings = |r: &serde_json::Value, list: &str| -> Vec<String> {
        r[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["metric"] == "delay" && f["kind"] == "self")
            .filter_map(|f| f["function"].as_str().map(str::to_owned))
            .collect()
    };
    let f = compare(store.path(), &args);
    assert_eq!(f.code, 0, "{f:?}");
    let shifted = delay_findings(&report(&f), "shifted");
    assert!(shifted.iter().any(|n| n == "lock_wait::std_contender"), "{shifted:?}\n{f:?}");

    let f = compare(store.path(), &[&args[..], &["--strict"]].concat());
    assert_eq!(f.code, 1, "{f:?}");
    let r = report(&f);
    let regressed = delay_findings(&r, "regressions");
    assert!(regressed.iter().any(|n| n == "lock_wait::std_contender"), "{regressed:?}\n{f:?}");
    let found = r["regressions"].as_array().into_iter().flatten().find(|f| f["metric"] == "delay");
    let change = found.and_then(|f| f["change"].as_f64()).unwrap_or(0.0);
    assert!(change > 0.5, "the delay grew by {change}\n{f:?}");

    // A side recorded without waits is refused, naming the setting.
    let plain = record_bin("lock_wait", store.path(), out.path(), &["--", "std"], &[scale]);
    let f = compare(store.path(), &[&base, &plain]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("base sampled waits at 10 µs, head did not record waits"), "{f:?}");
}

/// `check --contention` records waits on both sides: the stored baseline (recorded by `check` on
/// `main`) and the head, so that the head's longer holds are a delay regression (`--strict`: the
/// environment, not the code, made them).
#[test]
fn check_with_contention_flags_longer_lock_holds() {
    let repo = crate::util::GitProject::new();
    let store = repo.dir.path().join("store");
    let check = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = contprof();
        cmd.args(["check", "--baseline", "stored", "--bin", "lock_wait", "--runs", "5", "--contention"])
            .arg("--store")
            .arg(&store)
            .args(extra)
            .args(["--", "std"])
            .current_dir(&repo.root)
            .env("FIXTURE_SCALE", "0.1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        crate::util::finish(&mut cmd)
    };
    let f = check(&[], &[]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("waits sampled at 10 µs"), "{f:?}");

    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feature");
    let reports = repo.dir.path().join("reports");
    let f = check(&["--strict", "--report-dir", reports.to_str().unwrap()], &[("FIXTURE_HOLD_US", "8000")]);
    assert_eq!(f.code, 1, "{f:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    let regressed = report["regressions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["function"] == "lock_wait::std_contender" && r["metric"] == "delay");
    assert!(regressed, "{report}\n{f:?}");
}
