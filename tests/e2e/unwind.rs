//! Stacks through code without frame pointers: a C library (the system's zlib) and a user crate
//! built with cargo's default release flags, walked with the objects' unwind tables.

use contprof_engine::profile::{CostView, Profile};

use crate::run::check_fixture;
use crate::util::{describe, run_fixture, share};

/// The frames of a sample, innermost first (inlined frames included), by name.
fn names(profile: &Profile, sample: &contprof_engine::profile::Sample) -> Vec<String> {
    let function =
        |id: u64| profile.function.iter().find(|f| f.id == id).map(|f| profile.str(f.name).to_owned());
    sample
        .location_id
        .iter()
        .filter_map(|id| profile.location.iter().find(|l| l.id == *id))
        .flat_map(|l| l.line.iter().filter_map(|line| function(line.function_id)))
        .collect()
}

/// Sum of sample type `ty` over samples whose stack holds all of `on`.
fn through(profile: &Profile, ty: &str, on: &[&str]) -> i64 {
    let i = profile.sample_type_index(ty).expect("sample type");
    profile
        .sample
        .iter()
        .filter(|s| {
            let n = names(profile, s);
            on.iter().all(|f| n.iter().any(|x| x == f))
        })
        .map(|s| s.value[i])
        .sum()
}

#[test]
fn cpu_and_allocations_inside_a_c_library_keep_their_rust_callers() {
    // Shares within a few points (expected.toml), at 1,000 Hz for enough samples.
    let (profile, f) = check_fixture("c_split", &["--frequency", "999", "--alloc", "exact"], &[]);
    assert!(f.stderr.contains("libz.so"), "the fixture runs in the system's zlib: {f:?}");

    // zlib allocates its state itself (deflateInit2_ -> malloc): 7 calls for every 3, exactly.
    let seventy = through(&profile, "alloc_objects", &["deflateInit2_", "c_split::compress_seventy"]);
    let thirty = through(&profile, "alloc_objects", &["deflateInit2_", "c_split::compress_thirty"]);
    let all = through(&profile, "alloc_objects", &["deflateInit2_"]);
    assert!(
        thirty > 0 && seventy * 3 == thirty * 7 && seventy + thirty == all,
        "{seventy} / {thirty} of {all}"
    );

    // The stripped library's code is named by function (nearest symbol and offset), not per address.
    let libz: Vec<&contprof_engine::profile::Location> = profile
        .location
        .iter()
        .filter(|l| {
            profile
                .mapping
                .iter()
                .any(|m| m.id == l.mapping_id && profile.str(m.filename).contains("libz.so"))
        })
        .collect();
    let mut functions: Vec<u64> = libz.iter().flat_map(|l| l.line.iter().map(|x| x.function_id)).collect();
    functions.sort_unstable();
    functions.dedup();
    assert!(
        libz.len() >= 3 * functions.len(),
        "{} addresses in {} zlib functions",
        libz.len(),
        functions.len()
    );
}

#[test]
fn without_unwind_tables_the_callers_are_lost() {
    // The control: walking frame pointers only, the same run loses the Rust callers, which is
    // what the test above would catch if the tables were not used.
    // Its own target directory: frame pointers change the build flags.
    let (out, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("CARGO_TARGET_DIR", target.path().to_str().unwrap())];
    let f = run_fixture("c_split", out.path(), &["--frequency", "999", "--unwind", "frame-pointers"], &env);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("frame pointers only"), "{f:?}");
    let view = CostView::from_profile(&crate::util::read_profile(&out.path().join("profile.pb.gz")));
    let seventy = share(&view, "cpu", "c_split::compress_seventy", true);
    assert!(seventy < 0.35, "compress_seventy {seventy:.2}\n{}", describe(&view, "cpu"));
}

#[test]
fn a_user_crate_built_without_frame_pointers_keeps_its_callers() {
    // cargo's default release flags, which `--unwind tables` (the default) keeps: no frame
    // pointers in the user's code (std keeps its own). Said explicitly, in case a default changes.
    let target = tempfile::tempdir().unwrap();
    let env =
        [("RUSTFLAGS", "-Cforce-frame-pointers=no"), ("CARGO_TARGET_DIR", target.path().to_str().unwrap())];
    let (profile, f) = check_fixture("cpu_split", &["--frequency", "999"], &env);
    assert!(f.stderr.contains("Profiling"), "{f:?}");
    // Nothing lost on the way to main.
    let truncated = through(&profile, "cpu", &["[truncated stack]"]);
    let cpu = profile.total(profile.sample_type_index("cpu").unwrap());
    assert!(truncated * 50 <= cpu, "{truncated} of {cpu} ns truncated");
}

#[test]
fn a_library_loaded_with_dlopen_keeps_its_callers() {
    // A copy of zlib under another name, so that `dlopen` maps it anew while the workload runs:
    // the agent learns its unwind tables then (the preload library's `dlopen`).
    let zlib =
        ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.is_file())
            .expect("the system's zlib (zlib1g)");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libz-loaded-later.so");
    std::fs::copy(zlib, &copy).unwrap();
    let (profile, f) =
        check_fixture("c_split", &["--frequency", "999"], &[("FIXTURE_DLOPEN", copy.to_str().unwrap())]);
    assert!(f.stderr.contains("libz-loaded-later.so"), "the copy ran: {f:?}");
    assert!(through(&profile, "cpu", &["c_split::compress_seventy"]) > 0);
}

#[test]
fn code_generated_at_run_time_neither_breaks_the_walk_nor_loses_its_caller() {
    // No table describes the generated loop: the walk takes the return address at the stack
    // pointer of that frameless leaf and goes on from its caller by the caller's tables.
    let (profile, _) = check_fixture("jit", &["--frequency", "999"], &[]);
    let generated = through(&profile, "cpu", &["[generated code]", "jit::run_generated", "jit::main"]);
    let cpu = profile.total(profile.sample_type_index("cpu").unwrap());
    // The two loops' speeds differ by machine: a third to a half of the CPU is the generated one.
    assert!(
        generated * 5 > cpu && generated * 3 < cpu * 2,
        "{generated} of {cpu} ns in generated code under its caller"
    );
}
