//! `cargo contprof test` and `cargo contprof bench` on the `suite` fixture: one profile per test
//! or benchmark, labelled, with its own hot function; failures and timeouts reported.

use std::path::Path;

use contprof_engine::profile::{CostView, Profile};

use crate::util::{Finished, contprof, finish, finish_alone, fixtures_manifest, read_profile, share};

fn suite(command: &str, out: &Path, extra: &[&str]) -> Finished {
    let mut cmd = contprof();
    cmd.arg(command)
        .args(["-p", "suite", "--no-store", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("-o")
        .arg(out);
    cmd.args(extra).env("FIXTURE_SCALE", "0.5");
    // Criterion times iterations by the wall clock: benchmarks run while nothing else does.
    if command == "bench" { finish_alone(&mut cmd) } else { finish(&mut cmd) }
}

fn group_profile(out: &Path, group: &str) -> Profile {
    read_profile(&contprof_engine::record::group_path(out, group).join("profile.pb.gz"))
}

fn label_values(p: &Profile, key: &str) -> Vec<String> {
    let mut v: Vec<String> = p.sample.iter().filter_map(|s| p.label_str(s, key)).map(str::to_owned).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn each_test_gets_its_own_labelled_profile() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("test", out.path(), &[]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("doc tests are not profiled"), "{f:?}");
    assert!(f.stderr.contains("1 ignored"), "{f:?}");
    let checksum = group_profile(out.path(), "lib/suite/tests::checksum_test");
    let sort = group_profile(out.path(), "lib/suite/tests::sort_test");
    let hashing = group_profile(out.path(), "test/api/hashing_test");
    assert_eq!(label_values(&checksum, "test"), ["suite/tests::checksum_test"]);
    assert_eq!(label_values(&hashing, "test"), ["api/hashing_test"]);
    for (profile, hot, others) in [
        (&checksum, "suite::checksum_heavy", ["suite::sorting_heavy", "suite::hashing_heavy"]),
        (&sort, "suite::sorting_heavy", ["suite::checksum_heavy", "suite::hashing_heavy"]),
        (&hashing, "suite::hashing_heavy", ["suite::checksum_heavy", "suite::sorting_heavy"]),
    ] {
        let view = CostView::from_profile(profile);
        assert!(share(&view, "cpu", hot, true) > 0.7, "{hot}: {}", crate::util::describe(&view, "cpu"));
        for other in others {
            assert!(view.get(other).is_none(), "{other} must not be in the profile of {hot}'s test");
        }
    }
    // `harness = false` targets run as one process.
    let custom = group_profile(out.path(), "test/custom_main");
    assert!(share(&CostView::from_profile(&custom), "cpu", "suite::checksum_heavy", true) > 0.5);
    // The should_panic test passed and has its own profile.
    group_profile(out.path(), "lib/suite/tests::panics_on_purpose");
}

#[test]
fn failures_and_timeouts_are_reported_and_kept() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("test", out.path(), &["--lib", "--features", "failing", "--timeout", "4"]);
    assert_eq!(f.code, 4, "{f:?}");
    assert!(f.stderr.contains("this test fails on purpose"), "failing test output shown: {f:?}");
    assert!(f.stderr.contains("TIMEOUT") && f.stderr.contains("hanging_test"), "{f:?}");
    assert!(f.stderr.contains("2 of 5 tests failed") || f.stderr.contains("tests failed"), "{f:?}");
    // Both failing tests keep their profiles.
    let failing = group_profile(out.path(), "lib/suite/tests::failing_test");
    assert!(share(&CostView::from_profile(&failing), "cpu", "suite::hashing_heavy", true) > 0.5);
    let hanging = group_profile(out.path(), "lib/suite/tests::hanging_test");
    assert!(share(&CostView::from_profile(&hanging), "cpu", "suite::sorting_heavy", true) > 0.8);
}

#[test]
fn a_filter_that_matches_nothing_says_so() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("test", out.path(), &["no_such_test_anywhere"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("no tests matched the filter `no_such_test_anywhere`"), "{f:?}");
}

#[test]
fn criterion_benchmarks_get_per_iteration_costs() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("bench", out.path(), &[]);
    assert_eq!(f.code, 0, "{f:?}");
    let per_iter = |group: &str| {
        let p = group_profile(out.path(), group);
        assert_eq!(label_values(&p, "benchmark"), [group.trim_start_matches("bench/")]);
        let view = CostView::from_profile(&p);
        let i = view.sample_type_index("cpu_per_iter").expect("cpu_per_iter sample type");
        view.get("suite::parse_units").map_or(0, |f| f.total_values[i]) as f64
    };
    let small = per_iter("bench/parsing/parse/small");
    let large = per_iter("bench/parsing/parse/large");
    assert!(small > 0.0, "{f:?}");
    let ratio = large / small;
    assert!(
        (3.0..5.3).contains(&ratio),
        "parse/large costs {ratio:.2}x parse/small per iteration, expected ~4x"
    );
    // A bench with its own main is one process.
    let plain = group_profile(out.path(), "bench/plain_main");
    assert!(share(&CostView::from_profile(&plain), "cpu", "suite::hashing_heavy", true) > 0.8);
}

#[test]
fn divan_benchmarks_are_each_profiled_alone_with_per_iteration_costs() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("bench", out.path(), &["--bench", "divan_parsing"]);
    assert_eq!(f.code, 0, "{f:?}");
    let per_iter = |group: &str| {
        let p = group_profile(out.path(), group);
        assert_eq!(label_values(&p, "benchmark"), [group.trim_start_matches("bench/")]);
        let view = CostView::from_profile(&p);
        let i = view.sample_type_index("cpu_per_iter").expect("cpu_per_iter sample type");
        (
            view.get("suite::parse_units").map_or(0, |f| f.total_values[i]) as f64,
            share(&view, "cpu", "divan_parsing::large", true),
        )
    };
    let (small, large_in_small) = per_iter("bench/divan_parsing/divan_parsing::small");
    let (large, _) = per_iter("bench/divan_parsing/divan_parsing::large");
    assert!(small > 0.0, "{f:?}");
    // One benchmark per process: the other one never ran in it.
    assert_eq!(large_in_small, 0.0, "{f:?}");
    let ratio = large / small;
    // The loop's CPU over divan's iteration count: unlike divan's wall-clock times, it does not
    // move when the machine is busy while one of the two processes runs.
    assert!((3.0..5.3).contains(&ratio), "large costs {ratio:.2}x small per iteration, expected ~4x");
}

#[test]
fn run_bench_profiles_a_criterion_target_in_bench_mode() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = contprof();
    cmd.args(["run", "-p", "suite", "--bench", "parsing", "--no-store", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("-o")
        .arg(out.path())
        .args(["--", "--warm-up-time", "0.1", "--measurement-time", "0.3", "--noplot"]);
    let f = finish(&mut cmd);
    assert_eq!(f.code, 0, "{f:?}");
    // Benchmarked, not run once in criterion's test mode: the measured loop dominates.
    assert!(!f.stdout.contains("Testing parse/small"), "{f:?}");
    let p = read_profile(&out.path().join("profile.pb.gz"));
    assert!(share(&CostView::from_profile(&p), "cpu", "suite::parse_units", true) > 0.5);
    // Criterion's baselines went to our output, not the user's target/criterion.
    assert!(out.path().join("criterion").is_dir());
}

/// Issue 15.8: a test reading `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `CARGO` or the library path at
/// run time passes under `cargo contprof test` as under `cargo test`.
#[test]
fn tests_get_the_environment_cargo_test_gives_them() {
    let out = tempfile::tempdir().unwrap();
    let f = suite("test", out.path(), &["--test", "api", "cargo_test_environment", "--exact"]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("cargo_test_environment") && f.stderr.contains("ok"), "{f:?}");
}

/// Issue 15.10: a test that leaves a grandchild holding its stdout, then hangs, is stopped by
/// `--timeout` with everything it started: `test` does not wait for the grandchild.
#[test]
fn a_grandchild_holding_stdout_does_not_outlive_the_timeout() {
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let f = suite(
        "test",
        out.path(),
        &["--lib", "--features", "grandchild", "--timeout", "3", "grandchild_test"],
    );
    assert_eq!(f.code, 4, "{f:?}");
    assert!(f.stderr.contains("TIMEOUT") && f.stderr.contains("grandchild_test"), "{f:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn criterion_0_4_benchmarks_without_exact_are_each_profiled_alone() {
    // Criterion 0.4 has no `--exact` (it refuses the argument) and reads its filter as a regex:
    // `sum (x2)` must select that benchmark only, not `sum (x2) squares`.
    let out = tempfile::tempdir().unwrap();
    let mut cmd = contprof();
    cmd.args(["bench", "-p", "bench04", "--no-store", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("-o")
        .arg(out.path());
    let f = finish_alone(&mut cmd);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("2 passed"), "{f:?}");
    for (group, own, other) in [
        ("bench/old_criterion/sum (x2)", "old_criterion::sum_work", "old_criterion::square_work"),
        ("bench/old_criterion/sum (x2) squares", "old_criterion::square_work", "old_criterion::sum_work"),
    ] {
        let view = CostView::from_profile(&group_profile(out.path(), group));
        let has = |f: &str| view.functions.iter().any(|x| x.name.starts_with(f));
        assert!(has(own) && !has(other), "{group}: {own} alone\n{f:?}");
    }
}

/// Issue 15.10: a `harness = false` bench that is not criterion ignores `--list` and would run in
/// full to answer it; it is run once, to be profiled.
#[test]
fn a_custom_bench_main_runs_once_not_also_to_answer_a_listing() {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("runs.log");
    let mut cmd = contprof();
    cmd.args(["bench", "-p", "suite", "--bench", "plain_main", "--no-store", "--manifest-path"])
        .arg(fixtures_manifest())
        .arg("-o")
        .arg(out.path().join("out"))
        .env("FIXTURE_SCALE", "0.1")
        .env("FIXTURE_RUN_LOG", &log);
    let f = finish(&mut cmd);
    assert_eq!(f.code, 0, "{f:?}");
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().collect::<Vec<_>>(), ["--bench"], "{f:?}");
}
