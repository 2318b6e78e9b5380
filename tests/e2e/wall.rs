//! `--wall` on the `off_cpu` fixture: every thread's wall time, on CPU and off, against what the
//! fixture measured with its own clock (`expected.toml`), and `compare` on the `wall` metric.

use contprof_engine::profile::{CostView, Profile};

use crate::util::{contprof, describe, expectation, fixtures_manifest, read_profile};

/// Runs `off_cpu <mode>` with `--wall-frequency 1000` and `extra` flags, alone (the sampler's view of a thread
/// depends on when it gets a core: see the module docs of the agent's `wall`); returns the profile
/// and the fixture's stderr. At 1 kHz a run of about a second has some 300 samples of `nap`: the
/// sampling error alone is then about ±5%, and the tolerances in `expected.toml` are 2-3 times that.
fn run_mode(out: &std::path::Path, mode: &str, extra: &[&str]) -> (Profile, String) {
    let mut cmd = contprof();
    cmd.arg("run").arg("--manifest-path").arg(fixtures_manifest()).args(["--bin", "off_cpu", "-o"]);
    cmd.arg(out).args(["--wall-frequency", "1000", "--no-store"]).args(extra).args(["--", mode]);
    let f = crate::util::finish_alone(&mut cmd);
    assert_eq!(f.code, 0, "{f:?}");
    (read_profile(&out.join("profile.pb.gz")), f.stderr)
}

#[test]
fn wall_time_matches_what_the_fixture_measured() {
    let expected = expectation("off_cpu");
    for case in expected["wall"].as_array().unwrap() {
        let (mode, function) = (case["mode"].as_str().unwrap(), case["function"].as_str().unwrap());
        let tolerance = case["tolerance"].as_float().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (profile, stderr) = run_mode(out.path(), mode, &[]);
        let prefix = format!("measured wall: {function}=");
        let measured: f64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: no `{prefix}` line\n{stderr}"));
        let view = CostView::from_profile(&profile);
        let i = view.sample_type_index("wall").expect("wall sample type");
        let wall = view.get(function).map_or(0, |f| f.total_values[i]);
        assert!(
            (wall as f64 / measured - 1.0).abs() <= tolerance,
            "{mode}: the profile has {wall} ns of wall time under {function}, the fixture measured \
             {measured} ns (± {tolerance})\n{}",
            describe(&view, "wall")
        );
    }
}

#[test]
fn every_thread_is_charged_its_whole_wall_time() {
    let out = tempfile::tempdir().unwrap();
    let (profile, _) = run_mode(out.path(), "sleep", &[]);
    let i = profile.sample_type_index("wall").expect("wall sample type");
    let duration = profile.duration_nanos as f64;
    // Two threads (main, joining, and the napper) and nothing else: the sampler leaves itself out.
    // Allocation samples (the fixture allocates a little, and an allocation is sampled now and
    // then) belong to no thread and hold no wall time: only samples with wall time are counted,
    // and every one of those must name its thread.
    let mut per_thread = std::collections::BTreeMap::<String, i64>::new();
    for s in profile.sample.iter().filter(|s| s.value[i] != 0) {
        let thread = s.label.iter().find(|l| profile.str(l.key) == "thread").map(|l| profile.str(l.str));
        *per_thread.entry(thread.unwrap_or("?").to_owned()).or_default() += s.value[i];
    }
    assert_eq!(
        per_thread.keys().map(String::as_str).collect::<Vec<_>>(),
        ["napper", "off_cpu"],
        "{per_thread:?}"
    );
    for (thread, ns) in &per_thread {
        // The napper starts a little after the agent; each thread's time is cut at the last tick.
        assert!(
            (*ns as f64) < duration * 1.02 && (*ns as f64) > duration * 0.9,
            "{thread}: {ns} ns of wall time in a run of {duration} ns"
        );
    }
}

/// `compare` tests wall time like the other metrics: the head's napper sleeps three times as
/// long (`FIXTURE_NAP_US`) and computes as much, so `nap` is a wall regression and `compute`,
/// whose CPU and wall time did not change, is not. Since the environment made the change, it is a
/// shift, gated with `--strict`.
#[test]
fn longer_sleeps_are_a_wall_regression() {
    use crate::compare::{compare, record_bin_alone};
    let (store, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 5 runs at 1 kHz: waiting metrics are tested with a between-batch allowance of 0.15, which 3
    // runs at 100 Hz (some 30 ticks of `nap` a run) left at q 0.02-0.13 for a change of +170%.
    let flags = ["--runs", "5", "--wall-frequency", "1000", "--", "sleep"];
    let scale = ("FIXTURE_SCALE", "0.3");
    let base = record_bin_alone("off_cpu", store.path(), out.path(), &flags, &[scale]);
    let head =
        record_bin_alone("off_cpu", store.path(), out.path(), &flags, &[scale, ("FIXTURE_NAP_US", "9000")]);
    let args = [base.as_str(), head.as_str(), "--format", "json", "--no-flamegraphs", "--strict"];
    let f = compare(store.path(), &args);
    assert_eq!(f.code, 1, "{f:?}");
    let r: serde_json::Value = serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {f:?}"));
    let wall: Vec<&str> = r["regressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["metric"] == "wall" && f["kind"] == "self")
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(wall.contains(&"off_cpu::nap"), "{wall:?}\n{f:?}");
    assert!(!wall.contains(&"off_cpu::compute"), "{wall:?}\n{f:?}");

    // A side recorded without wall time is refused, naming the setting.
    let plain = record_bin_alone("off_cpu", store.path(), out.path(), &["--", "sleep"], &[scale]);
    let f = compare(store.path(), &[&base, &plain]);
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("base sampled wall time at 1000 Hz, head did not sample wall time"), "{f:?}");
}

/// A producer blocked in a full std channel waits in the futex call that the agent's `syscall`
/// interposer makes for std: its wall time ends in `syscall`, as it would without the agent, and
/// none of it is charged to the agent. With contention recorded too, the same waits go through
/// the interposer's timing code and still end there; a thread woken from the wait can sit in that
/// code waiting for a CPU, which on a machine loaded by other processes (load average 9 on two
/// cores) came to 1.2% of its wall time, hence a bound of 2%.
#[test]
fn blocked_threads_wait_in_the_system_call_not_in_the_agent() {
    for extra in [&[][..], &["--contention"][..]] {
        let out = tempfile::tempdir().unwrap();
        let (profile, _) = run_mode(out.path(), "channel", extra);
        let view = CostView::from_profile(&profile);
        let i = view.sample_type_index("wall").expect("wall sample type");
        let total = |name: &str| view.get(name).map_or(0, |f| f.total_values[i]);
        let produce = total("off_cpu::produce");
        let in_syscall = view.get("syscall").map_or(0, |f| f.self_values[i]);
        let agent = total(contprof_engine::symbolize::AGENT_FRAME);
        assert!(
            in_syscall as f64 > 0.5 * produce as f64 && (agent as f64) < 0.02 * produce as f64,
            "{extra:?}: of {produce} ns of wall time under produce, {in_syscall} ns end in `syscall` \
             and {agent} ns in the agent\n{}",
            describe(&view, "wall")
        );
    }
}
