//! `run --contention` on the `lock_wait` fixture: the time its threads waited for a lock, as the
//! profile's `delay`, against what the fixture measured with its own clock (`expected.toml`).

use cargo_contprof::profile::{CostView, Profile};

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
    assert_eq!(types, cargo_contprof::profile::SAMPLE_TYPES);
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
