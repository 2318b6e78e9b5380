//! What the profile charges the agent (issue 26): `[contprof agent]` holds the agent's own
//! instructions, never the program's (glibc's allocator, called for the program, is charged to
//! the program's caller), and no more than the agent can cost. How that compares with the
//! overhead measured from outside is the benchmarks' business (`benches/alloc_pairs.rs`,
//! `tests/measure/alloc_overhead.py`), not a timed test's.

use contprof_engine::profile::Profile;
use contprof_engine::symbolize::AGENT_FRAME;

use crate::util::{read_profile, run_fixture};

/// glibc's allocator: what ran below the agent's frame before the hooks forwarded as tail calls.
const ALLOCATOR: &[&str] = &[
    "_int_malloc",
    "_int_free",
    "_int_realloc",
    "malloc_consolidate",
    "__libc_malloc",
    "__GI___libc_malloc",
    "__libc_free",
    "__GI___libc_free",
    "__libc_realloc",
    "__GI___libc_realloc",
    "tcache_get",
    "tcache_put",
];

/// Function names of a sample's stack, leaf first (inlined frames innermost first).
fn names(profile: &Profile, sample: &contprof_engine::profile::Sample) -> Vec<String> {
    let mut out = Vec::new();
    for id in &sample.location_id {
        let Some(loc) = profile.location.iter().find(|l| l.id == *id) else { continue };
        for line in &loc.line {
            if let Some(f) = profile.function.iter().find(|f| f.id == line.function_id) {
                out.push(profile.str(f.name).to_owned());
            }
        }
    }
    out
}

/// CPU per stack of a run of `alloc_churn` at the defaults: about 3 s of CPU, ~50 million
/// allocation calls a second, ~800 samples at the default 250 Hz.
fn churn_profile() -> Profile {
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("alloc_churn", out.path(), &["--runs", "3"], &[("FIXTURE_SCALE", "2")]);
    assert_eq!(f.code, 0, "{f:?}");
    read_profile(&out.path().join("profile.pb.gz"))
}

/// CPU of the samples with `[contprof agent]` on their stack, and in all.
fn agent_cpu(profile: &Profile) -> (i64, i64) {
    let cpu = profile.sample_type_index("cpu").expect("cpu");
    profile.sample.iter().fold((0, 0), |(agent, total), s| {
        let ours = names(profile, s).iter().any(|n| n == AGENT_FRAME);
        (agent + if ours { s.value[cpu] } else { 0 }, total + s.value[cpu])
    })
}

#[test]
fn on_allocation_heavy_code_the_allocators_work_is_the_programs_and_the_hooks_own_the_agents() {
    let profile = churn_profile();
    let cpu = profile.sample_type_index("cpu").expect("cpu");
    let agent_mappings: Vec<u64> = profile
        .mapping
        .iter()
        .filter(|m| profile.str(m.filename).contains("libcontprof_preload"))
        .map(|m| m.id)
        .collect();
    let (mut total, mut allocator) = (0i64, 0i64);
    for s in &profile.sample {
        let stack = names(&profile, s);
        total += s.value[cpu];
        if stack.first().is_some_and(|n| ALLOCATOR.contains(&n.as_str())) {
            allocator += s.value[cpu];
        }
        // The agent's frame has nothing of glibc's allocator under it: the hooks forward to it as
        // tail calls, or call it from a frame that stands for the C function.
        if let Some(at) = stack.iter().position(|n| n == AGENT_FRAME) {
            let under: Vec<&String> =
                stack[..at].iter().filter(|n| ALLOCATOR.contains(&n.as_str())).collect();
            assert!(under.is_empty(), "glibc's allocator under the agent's frame: {stack:?}");
        }
        // The hooks' own instructions are the agent's: no stack ends in the agent's library under
        // the name of the C function it stands for (which the program's caller would be charged).
        let leaf = s.location_id.first().and_then(|id| profile.location.iter().find(|l| l.id == *id));
        assert!(
            leaf.is_none_or(|l| !agent_mappings.contains(&l.mapping_id)),
            "a stack ends in the agent's code under a C function's name: {stack:?}"
        );
    }
    // The allocator's own work is there, as the program's.
    let share = allocator as f64 / total as f64;
    assert!(share > 0.1, "glibc's allocator holds {:.2}% of CPU", share * 100.0);
}

/// What the profile charges the agent on allocation-heavy code at the defaults. `alloc_churn` makes
/// about 50 million allocation calls per CPU second, more than any real workload measured here
/// (serde_json round trips: 22 million): each interposed call costs its caller about 0.5-1 ns (the
/// call through the interposer, a load of its flags byte, a countdown in the thread's state, a
/// jump to glibc's function). With the naked entry points (`harness/preload/src/hooks/fast.rs`)
/// that came to 3.1-3.6% of this fixture's CPU on a quiet machine (2026-12-05, three runs), and
/// 6.3% once in a full suite on the 2 busy cores, where the hooks' few cache lines are evicted
/// more often. The bound, 8%, keeps that margin and no more: before the hooks forwarded as tail
/// calls glibc's allocator ran under the agent's frame and the profile charged the agent 31% of
/// this fixture. How the share compares with the overhead measured from outside is the
/// benchmarks' business (`benches/overhead.rs`, `tests/measure/alloc_overhead.py`).
#[test]
fn on_allocation_heavy_code_the_agent_holds_only_its_hooks_own_cost() {
    let (agent, total) = agent_cpu(&churn_profile());
    let share = agent as f64 / total as f64;
    assert!(share <= 0.08, "[contprof agent] holds {:.2}% of CPU", share * 100.0);
}
