//! `cargo contprof run` on each fixture, checked against `fixtures/expected.toml`.

use contprof_engine::profile::{CostView, Profile};

use crate::util::{describe, expectation, leaf_share, read_profile, run_fixture, share};

/// Runs a fixture and checks every share its expectation declares; returns the merged profile.
pub(crate) fn check_fixture(
    bin: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Profile, crate::util::Finished) {
    let out = tempfile::tempdir().unwrap();
    let finished = run_fixture(bin, out.path(), extra, env);
    let expected = expectation(bin);
    let code = expected.get("exit_code").and_then(|c| c.as_integer()).unwrap_or(0) as i32;
    assert_eq!(finished.code, code, "{finished:?}");
    let profile = read_profile(&out.path().join("profile.pb.gz"));
    let view = CostView::from_profile(&profile);
    for key in ["cpu_self_share", "cpu_leaf_share", "cpu_total_share"] {
        for e in expected.get(key).and_then(|v| v.as_array()).into_iter().flatten() {
            let function = e["function"].as_str().unwrap();
            let want = e["share"].as_float().unwrap();
            let tolerance = e["tolerance"].as_float().unwrap();
            let got = match key {
                "cpu_leaf_share" => leaf_share(&profile, function),
                k => share(&view, "cpu", function, k == "cpu_total_share"),
            };
            assert!(
                (got - want).abs() <= tolerance,
                "{bin}: {key} of {function} is {got:.3}, expected {want} ± {tolerance}\n{}\n{finished:?}",
                describe(&view, "cpu")
            );
        }
    }
    for f in expected.get("absent").and_then(|v| v.as_array()).into_iter().flatten() {
        let f = f.as_str().unwrap();
        assert!(view.get(f).is_none(), "{bin}: {f} must not appear\n{}", describe(&view, "cpu"));
    }
    (profile, finished)
}

/// The CPU time in the profile matches the CPU the same binary burns without the agent (the
/// period is derived from measured CPU time, not from the requested rate, which the kernel tick
/// can cap 4x below the truth).
fn assert_cpu_time_matches_native(profile: &Profile, bin: &str) {
    let cpu = profile.sample_type_index("cpu").unwrap();
    let profiled = profile.total(cpu) as f64 / 1e9;
    let native =
        crate::util::native_cpu_seconds(&crate::util::repo_root().join("fixtures/target/contprof").join(bin));
    assert!(
        (profiled / native - 1.0).abs() < 0.25,
        "profile says {profiled:.3} s of CPU, the binary alone burns {native:.3} s"
    );
}

#[test]
fn cpu_split_shares_leaf_functions_and_cpu_time() {
    let (profile, _) = check_fixture("cpu_split", &[], &[]);
    assert_cpu_time_matches_native(&profile, "cpu_split");
    assert!(!profile.mapping.is_empty(), "profile has mappings");
    assert!(profile.mapping[0].has_functions, "main mapping is symbolized");
}

#[test]
fn cpu_time_is_right_at_a_rate_above_the_kernel_tick() {
    let (profile, _) = check_fixture("cpu_split", &["--frequency", "999"], &[]);
    assert_cpu_time_matches_native(&profile, "cpu_split");
    let samples = profile.total(profile.sample_type_index("samples").unwrap()) as f64;
    let seconds = profile.total(profile.sample_type_index("cpu").unwrap()) as f64 / 1e9;
    // Above the 250 Hz tick: the per-thread perf timer delivers far more than setitimer could.
    assert!(samples / seconds > 400.0, "{samples} samples in {seconds:.2} s of CPU");
}

#[test]
fn threads_are_sampled_and_labelled() {
    let (profile, _) = check_fixture("threads", &[], &[]);
    let expected = expectation("threads");
    let threads = expected["threads"].as_table().unwrap();
    for (thread, function) in threads {
        let function = function.as_str().unwrap();
        let count = profile.sample_type_index("samples").unwrap();
        let mut on_thread = 0;
        let mut with_function = 0;
        for s in profile.sample.iter().filter(|s| profile.label_str(s, "thread") == Some(thread.as_str())) {
            on_thread += s.value[count];
            let names = stack_names(&profile, s);
            if names.iter().any(|n| n == function) {
                with_function += s.value[count];
            }
        }
        assert!(on_thread > 50, "thread {thread}: {on_thread} samples");
        assert!(
            with_function * 10 >= on_thread * 9,
            "thread {thread}: {with_function}/{on_thread} samples in {function}"
        );
    }
}

#[test]
fn inlined_function_is_named() {
    check_fixture("inlined", &[], &[]);
}

#[test]
fn child_processes_stay_out_of_the_profile() {
    check_fixture("spawns", &[], &[]);
}

#[test]
fn failing_workload_keeps_its_samples_and_exits_4() {
    let (_, finished) = check_fixture("panics", &[], &[]);
    assert!(finished.stderr.contains("panicked"), "{finished:?}");
    for (mode, needle) in [("abort", "SIGABRT"), ("segv", "SIGSEGV"), ("exit3", "exit status 3")] {
        let out = tempfile::tempdir().unwrap();
        let f = crate::util::run_fixture(
            "panics",
            out.path(),
            &[],
            &[("FIXTURE_FAIL", mode), ("FIXTURE_SCALE", "0.5")],
        );
        assert_eq!(f.code, 4, "{mode}: {f:?}");
        assert!(f.stderr.contains(needle), "{mode}: {f:?}");
        let profile = read_profile(&out.path().join("profile.pb.gz"));
        let view = CostView::from_profile(&profile);
        assert!(
            share(&view, "cpu", "panics::before_panic", true) > 0.8,
            "{mode}\n{}",
            describe(&view, "cpu")
        );
    }
}

#[test]
fn allocations_split_three_to_one() {
    let (profile, _) = check_fixture("alloc_split", &[], &[]);
    let view = CostView::from_profile(&profile);
    let expected = expectation("alloc_split");
    let r = expected["alloc_bytes_ratio"].as_table().unwrap();
    let num = share(&view, "alloc_space", r["numerator"].as_str().unwrap(), true);
    let den = share(&view, "alloc_space", r["denominator"].as_str().unwrap(), true);
    let (want, tol) = (r["ratio"].as_float().unwrap(), r["tolerance"].as_float().unwrap());
    assert!(
        den > 0.0 && (num / den - want).abs() <= tol,
        "ratio {num}/{den}\n{}",
        describe(&view, "alloc_space")
    );
    for f in expected["inuse_functions"].as_array().unwrap() {
        assert!(
            share(&view, "inuse_space", f.as_str().unwrap(), true) > 0.5,
            "{}",
            describe(&view, "inuse_space")
        );
    }
}

#[test]
fn exact_allocation_counts() {
    let (profile, _) = check_fixture("alloc_split", &["--alloc", "exact"], &[]);
    let view = CostView::from_profile(&profile);
    let i = view.sample_type_index("alloc_objects").unwrap();
    for e in expectation("alloc_split")["exact_alloc_count"].as_array().unwrap() {
        let f = e["function"].as_str().unwrap();
        let got = view.get(f).map_or(0, |c| c.total_values[i]);
        assert_eq!(got, e["count"].as_integer().unwrap(), "{f}\n{}", describe(&view, "alloc_objects"));
    }
}

#[test]
fn repeated_runs_write_each_run_and_a_merged_profile() {
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("cpu_split", out.path(), &["--runs", "2"], &[("FIXTURE_SCALE", "0.3")]);
    assert_eq!(f.code, 0, "{f:?}");
    let one = read_profile(&out.path().join("run-1.pb.gz"));
    let two = read_profile(&out.path().join("run-2.pb.gz"));
    let merged = read_profile(&out.path().join("profile.pb.gz"));
    let cpu = merged.sample_type_index("cpu").unwrap();
    assert_eq!(merged.total(cpu), one.total(cpu) + two.total(cpu));
    assert!(out.path().join("flamegraph.svg").exists());
    assert!(f.stderr.contains("workloads::burn_a"), "top table lists the hot leaf: {f:?}");
}

fn stack_names(profile: &Profile, sample: &contprof_engine::profile::Sample) -> Vec<String> {
    let mut names = Vec::new();
    for id in &sample.location_id {
        if let Some(loc) = profile.location.iter().find(|l| l.id == *id) {
            for line in &loc.line {
                if let Some(f) = profile.function.iter().find(|f| f.id == line.function_id) {
                    names.push(profile.str(f.name).to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn a_frameless_libc_leaf_keeps_its_caller() {
    check_fixture("memcopy", &[], &[]);
}

#[test]
fn an_example_target_is_profiled() {
    check_fixture("demo", &[], &[]);
}

/// System time lands on the function that made the system calls, whichever way the perf clock
/// runs: counting kernel time (the sample is delivered when the call returns) or user time only
/// (the agent adds each thread's system time, from `getrusage`, under a `[kernel]` frame on its
/// next sample). Checked against the split the fixture measured from its own thread times.
#[test]
fn kernel_time_lands_on_the_function_that_made_the_system_calls() {
    let expected = expectation("syscall_split");
    let want = &expected["measured_share"];
    let (function, tolerance) = (want["function"].as_str().unwrap(), want["tolerance"].as_float().unwrap());
    for kernel in ["1", "0"] {
        let out = tempfile::tempdir().unwrap();
        // Alone: with other tests' workloads on the two cores, the scheduler's accounting of short
        // system calls moves the split the fixture measures from its own thread times.
        let f = crate::util::finish_alone(
            crate::util::contprof()
                .args(["run", "--manifest-path"])
                .arg(crate::util::fixtures_manifest())
                .args(["--bin", "syscall_split", "-o"])
                .arg(out.path())
                .args(["--frequency", "999", "--no-store"])
                .env("CONTPROF_PERF_KERNEL", kernel),
        );
        assert_eq!(f.code, 0, "{f:?}");
        let measured: f64 = f
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("measured split: syscall_heavy="))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no measured split\n{f:?}"));
        let profile = read_profile(&out.path().join("profile.pb.gz"));
        let view = CostView::from_profile(&profile);
        let got = share(&view, "cpu", function, true);
        // Counting user time only, the agent adds each thread's system time from `getrusage`,
        // whose split between user and system time is the kernel's estimate from where its ticks
        // landed (exact in total, not per stretch of a few ms): the share then strays further
        // from the fixture's own account (seen in full-suite runs: +0.075 and -0.094).
        let tolerance = if kernel == "0" { tolerance.max(0.12) } else { tolerance };
        assert!(
            (got - measured).abs() <= tolerance,
            "CONTPROF_PERF_KERNEL={kernel}: {function} holds {got:.3} of CPU, the fixture measured \
             {measured:.3}\n{}\n{f:?}",
            describe(&view, "cpu")
        );
        let clock = profile.comment.iter().map(|&i| profile.str(i)).find(|c| c.starts_with("clock:"));
        if kernel == "0" {
            assert!(clock.is_some_and(|c| c.contains("user time")), "{clock:?}");
            assert!(view.get("[kernel]").is_some(), "no [kernel] frame\n{}", describe(&view, "cpu"));
            // Whatever its amount, the system time lands under the function that made the system
            // calls (`compute` makes none).
            let kernel_time = share(&view, "cpu", "[kernel]", true);
            assert!(
                got >= 0.9 * kernel_time,
                "{function} ({got:.3}) holds less than the [kernel] time ({kernel_time:.3})\n{}",
                describe(&view, "cpu")
            );
        }
    }
}

/// Issue 15.5: the agent's own library has no debug info, and its frames are folded anyway.
#[test]
fn runs_do_not_warn_about_the_agents_own_library() {
    let out = tempfile::tempdir().unwrap();
    let f = crate::util::run_fixture(
        "alloc_split",
        out.path(),
        &["--alloc", "exact"],
        &[("FIXTURE_SCALE", "0.2")],
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(!f.stderr.contains("libcontprof_preload"), "{f:?}");
}

/// Issue 15.7: threads are counted by id, not by name (a runtime's workers share one name).
#[test]
fn the_summary_counts_threads_by_id() {
    let out = tempfile::tempdir().unwrap();
    let f = crate::util::run_fixture(
        "threads",
        out.path(),
        &[],
        &[("FIXTURE_SAME_NAME", "1"), ("FIXTURE_SCALE", "0.2")],
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("3 threads sampled"), "{f:?}");
}

/// Issue 15.6: the table goes to stderr with the tool's other messages; the workload's stdout stays
/// the workload's (`cargo contprof run -- in.md > out.html`).
#[test]
fn the_workloads_stdout_stays_its_own() {
    let out = tempfile::tempdir().unwrap();
    let f = crate::util::run_fixture("cpu_split", out.path(), &[], &[("FIXTURE_SCALE", "0.1")]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(!f.stdout.contains("self%") && !f.stdout.contains("Wrote"), "{f:?}");
    assert!(f.stderr.contains("self%"), "{f:?}");
}

/// Issue 15.2: a package whose dependency graph holds another version of itself (itertools 0.14's
/// criterion pulls in itertools 0.10) is still selected unambiguously, also as `-p name@version`.
#[test]
fn a_package_depending_on_another_version_of_itself_runs() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    for (path, version, main) in [(&old, "0.1.0", false), (&new, "0.2.0", true)] {
        std::fs::create_dir_all(path.join("src")).unwrap();
        let deps = if main {
            "\n[dev-dependencies]\nold = { package = \"selfdep\", path = \"../old\" }\n"
        } else {
            ""
        };
        std::fs::write(
            path.join("Cargo.toml"),
            format!("[package]\nname = \"selfdep\"\nversion = \"{version}\"\nedition = \"2021\"\n{deps}"),
        )
        .unwrap();
        std::fs::write(
            path.join("src/lib.rs"),
            "pub fn v() -> u32 { 1 }\n#[test]\nfn one() { assert_eq!(v(), 1); }\n",
        )
        .unwrap();
        if main {
            std::fs::write(
                path.join("src/main.rs"),
                "fn main() { let mut x = 0u64; for i in 0..20_000_000u64 { x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i)); } std::hint::black_box(x); }\n",
            )
            .unwrap();
        }
    }
    // `test` builds the dev-dependencies too: that is where the two versions meet.
    for extra in [&["--lib"][..], &["--lib", "-p", "selfdep@0.2.0"][..]] {
        let out = tempfile::tempdir().unwrap();
        let f = crate::util::finish(
            crate::util::contprof()
                .args(["test", "--no-store", "--manifest-path"])
                .arg(new.join("Cargo.toml"))
                .args(extra)
                .arg("-o")
                .arg(out.path()),
        );
        assert_eq!(f.code, 0, "{extra:?}: {f:?}");
        assert!(!f.stderr.contains("ambiguous"), "{f:?}");
    }
}

/// Issue 15.17: two invocations on one output directory keep their own raw files: neither
/// truncates the other's, and both profiles hold their samples.
#[test]
fn two_invocations_on_one_output_directory_keep_their_own_raw_files() {
    let out = tempfile::tempdir().unwrap();
    let _shared = crate::util::shared();
    let spawn = || {
        crate::util::contprof()
            .args(["run", "--no-store", "--bin", "cpu_split", "--manifest-path"])
            .arg(crate::util::fixtures_manifest())
            .arg("-o")
            .arg(out.path())
            .env("FIXTURE_SCALE", "0.3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        // A truncated or interleaved file would say so.
        assert!(!stderr.contains("partial record") && !stderr.contains("no END record"), "{stderr}");
    }
    // Each invocation wrote into a directory of its own (a finished one's is removed by the next).
    let dirs: Vec<_> =
        std::fs::read_dir(out.path().join("raw")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    for d in dirs {
        let bytes = std::fs::read(d.join("run-1.raw")).unwrap();
        let file = contprof_protocol::format::RawFile::parse(&bytes).unwrap();
        assert!(
            file.records.iter().any(|r| matches!(r, contprof_protocol::format::Record::End(_))),
            "{}",
            d.display()
        );
    }
}
