//! Building profiles from raw files that point at this test binary's own functions.

use std::hint::black_box;

use contprof_protocol::format::{ClockKind, EndRecord, Header, RawFile};

use super::*;
use crate::symbolize::{AGENT_FRAME, Symbolizer};

#[inline(never)]
fn profile_probe_hot(x: u64) -> u64 {
    black_box(x).wrapping_mul(3).rotate_left(5)
}

#[inline(never)]
fn profile_probe_cold(x: u64) -> u64 {
    black_box(x).wrapping_add(11).rotate_right(3)
}

#[inline(never)]
fn profile_probe_main(x: u64) -> u64 {
    profile_probe_hot(x) ^ profile_probe_cold(x) ^ black_box(x)
}

fn addr_of(f: fn(u64) -> u64) -> u64 {
    f as usize as u64
}

const PREFIX: &str = "contprof_engine::profile::tests::";

fn header(frequency_hz: u32) -> Header {
    Header {
        magic: [0; 8],
        version: 0,
        header_len: 0,
        pid: 1,
        frequency_hz,
        clock: ClockKind::PerfCpuClock as u32,
        alloc_mode: 1,
        alloc_interval: 512 * 1024,
        start_unix_ns: 1_700_000_000_000_000_000,
        contention_rate_ns: 0,
        wall_period_ns: 0,
    }
}

fn self_maps() -> String {
    std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps")
}

/// Stacks (leaf first) of the three probe functions: hot and cold called from main.
fn stacks() -> (Vec<u64>, Vec<u64>) {
    let main = addr_of(profile_probe_main);
    (vec![addr_of(profile_probe_hot) + 4, main + 12], vec![addr_of(profile_probe_cold) + 4, main + 24])
}

/// 2 hot samples on thread 7 ("worker"), 1 cold sample on thread 8 (unnamed), 3 s of CPU.
fn raw_file(end: Option<EndRecord>) -> RawFile {
    let (hot, cold) = stacks();
    let mut w = RawWriter::new(header(1000));
    w.maps(&self_maps())
        .thread_name(7, "worker")
        .cpu_sample(7, &hot)
        .cpu_sample(8, &cold)
        .cpu_sample(7, &hot);
    w.message(1, "timer fell back to setitimer");
    if let Some(end) = end {
        w.end(end);
    }
    RawFile::parse(w.bytes()).expect("valid raw file")
}

fn end(cpu_time_ns: u64) -> EndRecord {
    EndRecord { cpu_time_ns, wall_ns: 4_000_000_000, samples: 3, threads: 2, ..Default::default() }
}

fn build(raw: &RawFile, options: &BuildOptions) -> Built {
    build_profile(raw, &mut Symbolizer::new(), options)
}

fn leaf_name(p: &Profile, s: &Sample) -> String {
    let loc = p.location.iter().find(|l| l.id == s.location_id[0]).expect("leaf location");
    let f = p.function.iter().find(|f| f.id == loc.line[0].function_id).expect("function");
    p.str(f.name).to_owned()
}

#[test]
fn builds_symbolized_profile_with_types_labels_mapping_and_period() {
    let built = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default());
    let p = &built.profile;
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|v| (p.str(v.r#type), p.str(v.unit))).collect();
    assert_eq!(types, SAMPLE_TYPES);
    assert_eq!(p.str(p.default_sample_type), "cpu");
    assert_eq!(p.string_table[0], "");
    assert_eq!(p.period, 1_000_000_000);
    assert_eq!(built.cpu_time_source, CpuTimeSource::Agent);
    assert_eq!(p.total(sample_index::CPU), 3_000_000_000);
    assert_eq!(p.total(sample_index::SAMPLES), 3);
    assert_eq!(p.duration_nanos, 4_000_000_000);
    assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);

    // Identical stacks on the same thread are one sample.
    assert_eq!(p.sample.len(), 2);
    let hot = p.sample.iter().find(|s| leaf_name(p, s).ends_with("profile_probe_hot")).expect("hot");
    assert_eq!(leaf_name(p, hot), format!("{PREFIX}profile_probe_hot"));
    assert_eq!(hot.value[sample_index::SAMPLES], 2);
    assert_eq!(p.label_str(hot, "thread"), Some("worker"));
    let tid = hot.label.iter().find(|l| p.str(l.key) == "tid").expect("tid label");
    assert_eq!(tid.num, 7);
    let cold = p.sample.iter().find(|s| leaf_name(p, s).ends_with("profile_probe_cold")).expect("cold");
    assert_eq!(p.label_str(cold, "thread"), Some("tid-8"));

    // The caller frame is the caller function, with this file and a line.
    let caller = p.location.iter().find(|l| l.id == hot.location_id[1]).expect("caller");
    let f = p.function.iter().find(|f| f.id == caller.line.last().expect("line").function_id).expect("fn");
    assert_eq!(p.str(f.name), format!("{PREFIX}profile_probe_main"));
    assert!(p.str(f.filename).ends_with("profile/tests.rs"), "{}", p.str(f.filename));
    assert!(caller.line.last().is_some_and(|l| (21..=23).contains(&l.line)), "{caller:?}");
    assert_eq!(
        caller.address,
        addr_of(profile_probe_main) + 12 - 1,
        "return addresses are looked up at addr-1"
    );

    // The first mapping is this test binary, with a build id and debug-info flags.
    let m = &p.mapping[0];
    let exe = std::env::current_exe().expect("current exe");
    assert_eq!(std::path::Path::new(p.str(m.filename)), exe);
    assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
    assert!(m.memory_start <= caller.address && caller.address < m.memory_limit);
    assert!(p.location.iter().all(|l| l.mapping_id == m.id));

    let comments = p.comments();
    assert!(comments.iter().any(|c| c.contains("perf cpu-clock")), "{comments:?}");
    assert!(comments.iter().any(|c| c.contains("timer fell back to setitimer")), "{comments:?}");
    assert!(built.warnings.iter().any(|w| w.contains("timer fell back")));
}

/// The program's label sets become string labels of the samples taken under them (CPU, allocation
/// and contention alike); samples outside any set have none; a set may be defined after the
/// records that name it; a key the tool sets (`thread`) stays the tool's; span and trace ids
/// become `span_id` and `trace_id` in hex.
#[test]
fn label_sets_become_sample_labels() {
    let (hot, cold) = stacks();
    let mut w = RawWriter::new(Header { contention_rate_ns: 1000, ..header(1000) });
    w.maps(&self_maps())
        .thread_name(7, "worker")
        .label_set(1, &[("endpoint", "/search"), ("thread", "mine")])
        .labels(1)
        .cpu_sample(7, &hot)
        .labels(2)
        .cpu_sample(7, &hot)
        .cpu_sample(7, &hot)
        .labels_in_trace(0, 0xab, 0x0102_0000_0000_0000_0000_0000_0000_00cd)
        .cpu_sample(7, &hot)
        .labels(1)
        .alloc_stack([1, 100, 0, 0], &cold[1..])
        .labels(2)
        .contention_stack([1, 5000], &cold[1..])
        .label_set(2, &[("endpoint", "/items"), ("tenant", "t1")])
        .end(end(4_000_000_000));
    let built = build(&RawFile::parse(w.bytes()).expect("valid"), &BuildOptions::default());
    let p = &built.profile;
    let labels = |s: &Sample| {
        let mut l: Vec<String> = s
            .label
            .iter()
            .filter(|l| l.str != 0)
            .map(|l| format!("{}={}", p.str(l.key), p.str(l.str)))
            .collect();
        l.sort();
        l.join(",")
    };
    let mut seen: Vec<(String, Vec<i64>)> = p.sample.iter().map(|s| (labels(s), s.value.clone())).collect();
    seen.sort();
    let cpu = |n: i64| {
        let mut v = vec![0; p.sample_type.len()];
        v[sample_index::SAMPLES] = n;
        v[sample_index::CPU] = n * 1_000_000_000;
        v
    };
    let mut alloc = vec![0; p.sample_type.len()];
    alloc[sample_index::ALLOC_OBJECTS] = 1;
    alloc[sample_index::ALLOC_OBJECTS + 1] = 100;
    let mut waits = vec![0; p.sample_type.len()];
    let i = p.sample_type.len() - 2;
    (waits[i], waits[i + 1]) = (1, 5000);
    assert_eq!(
        seen,
        [
            ("endpoint=/items,tenant=t1".into(), waits),
            ("endpoint=/items,tenant=t1,thread=worker".into(), cpu(1)),
            ("endpoint=/search".into(), alloc),
            ("endpoint=/search,thread=worker".into(), cpu(1)),
            (
                "span_id=00000000000000ab,thread=worker,trace_id=010200000000000000000000000000cd".into(),
                cpu(1)
            ),
            ("thread=worker".into(), cpu(1)),
        ]
    );
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
}

#[test]
fn period_falls_back_to_caller_cpu_time_then_frequency() {
    let raw = raw_file(None);
    let built = build(&raw, &BuildOptions { fallback_cpu_time_ns: Some(600_000_000), ..Default::default() });
    assert_eq!(built.cpu_time_source, CpuTimeSource::Caller);
    assert_eq!(built.profile.period, 200_000_000);
    assert_eq!(built.profile.total(sample_index::CPU), 600_000_000);
    assert!(built.warnings.iter().any(|w| w.contains("no END record")));

    let built = build(&raw, &BuildOptions::default());
    assert_eq!(built.cpu_time_source, CpuTimeSource::Frequency);
    assert_eq!(built.profile.period, 1_000_000);
    assert!(built.warnings.iter().any(|w| w.contains("no measured CPU time")), "{:?}", built.warnings);
}

#[test]
fn agent_frames_leave_allocation_stacks_and_collapse_in_cpu_stacks() {
    let maps = format!(
        "{}7ff000000000-7ff000100000 r-xp 00000000 08:01 5 /opt/libcontprof_preload.so\n",
        self_maps()
    );
    let agent = 0x7ff000000100u64;
    let (hot, _) = stacks();
    let mut w = RawWriter::new(header(1000));
    w.maps(&maps);
    w.cpu_sample(3, &[agent, agent + 0x40, hot[0], hot[1]]);
    w.alloc_stack([4, 4096, 1, 1024], &[agent + 0x10, agent + 0x20, hot[0], hot[1]]);
    w.end(end(1_000_000));
    let raw = RawFile::parse(w.bytes()).expect("raw");
    let p = build(&raw, &BuildOptions::default()).profile;
    let cpu = p.sample.iter().find(|s| s.value[sample_index::SAMPLES] > 0).expect("cpu sample");
    assert_eq!(leaf_name(&p, cpu), AGENT_FRAME);
    assert_eq!(cpu.location_id.len(), 3, "one agent frame, then the two workload frames");
    let alloc = p.sample.iter().find(|s| s.value[sample_index::ALLOC_SPACE] > 0).expect("alloc sample");
    assert_eq!(leaf_name(&p, alloc), format!("{PREFIX}profile_probe_hot"));
    assert_eq!(alloc.value[2..], [4, 4096, 1, 1024]);
    assert_eq!(alloc.value[..2], [0, 0]);
    assert!(alloc.label.is_empty());
}

/// The runtime address of symbol `name` in `lib` mapped whole from offset 0 at `start`, and
/// whether the library exports it.
fn symbol_address(lib: &[u8], start: u64, name: impl Fn(&str) -> bool) -> Option<(u64, bool)> {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let obj = object::File::parse(lib).expect("agent library parses");
    let sym = obj
        .symbols()
        .find(|s| s.kind() == object::SymbolKind::Text && s.size() > 16 && s.name().is_ok_and(&name))?;
    let seg = obj.segments().find(|g| (g.address()..g.address() + g.size()).contains(&sym.address()))?;
    Some((start + sym.address() - seg.address() + seg.file_range().0, sym.is_global()))
}

#[test]
fn interposers_stand_for_the_c_functions_and_only_the_agents_own_code_is_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = crate::runner::agent::install(dir.path()).expect("agent library");
    let bytes = std::fs::read(&lib).expect("read agent library");
    let start = 0x7ff000000000u64;
    let maps = format!(
        "{}{start:x}-{:x} r-xp 00000000 08:01 5 {}\n",
        self_maps(),
        start + 0x1000_0000,
        lib.display()
    );
    let (syscall, exported) = symbol_address(&bytes, start, |n| n == "syscall").expect("syscall symbol");
    assert!(exported);
    let (malloc, _) = symbol_address(&bytes, start, |n| n == "malloc").expect("malloc symbol");
    let twin_name = format!("{}malloc", contprof_protocol::format::RECORDING_TWIN_PREFIX);
    let (twin, exported) =
        symbol_address(&bytes, start, |n| n == twin_name).expect("malloc's recording twin");
    assert!(exported);
    let (internal, exported) =
        symbol_address(&bytes, start, |n| n.contains("contprof") && n.contains("5alloc6decide"))
            .expect("an internal function");
    assert!(!exported);
    let (hot, cold) = stacks();
    let mut w = RawWriter::new(header(1000));
    w.maps(&maps);
    // Blocked in the futex wait the interposer makes for its caller.
    w.cpu_sample(3, &[syscall + 8, hot[0], hot[1]]);
    // In the C library's function the interposer forwarded to (`cold` plays it).
    w.cpu_sample(3, &[cold[0], malloc + 8, hot[1]]);
    // In the interposer's own code (the agent's, unlike the system call above), and its twin's.
    w.cpu_sample(3, &[malloc + 4, hot[0], hot[1]]);
    w.cpu_sample(3, &[twin + 4, hot[1]]);
    // The agent's own work, called from an interposer.
    w.cpu_sample(3, &[internal + 4, malloc + 8, hot[1]]);
    // The same through the recording twin, which stands for `malloc` too.
    w.cpu_sample(3, &[internal + 4, twin + 8, hot[0], hot[1]]);
    w.cpu_sample(3, &[cold[0], twin + 8, hot[0], hot[1]]);
    w.end(end(7_000_000));
    let raw = RawFile::parse(w.bytes()).expect("raw");
    let p = build(&raw, &BuildOptions::default()).profile;
    let names = |s: &Sample| -> Vec<String> {
        s.location_id
            .iter()
            .map(|id| {
                let loc = p.location.iter().find(|l| l.id == *id).expect("location");
                let f = p
                    .function
                    .iter()
                    .find(|f| f.id == loc.line.last().expect("line").function_id)
                    .expect("function");
                p.str(f.name).trim_start_matches(PREFIX).to_owned()
            })
            .collect()
    };
    let mut stacks: Vec<Vec<String>> = p.sample.iter().map(names).collect();
    stacks.sort();
    assert_eq!(
        stacks,
        [
            vec![AGENT_FRAME, "malloc", "profile_probe_hot", "profile_probe_main"],
            vec![AGENT_FRAME, "malloc", "profile_probe_hot", "profile_probe_main"],
            vec![AGENT_FRAME, "malloc", "profile_probe_main"],
            vec![AGENT_FRAME, "malloc", "profile_probe_main"],
            vec!["profile_probe_cold", "profile_probe_hot", "profile_probe_main"],
            vec!["profile_probe_cold", "profile_probe_main"],
            vec!["syscall", "profile_probe_hot", "profile_probe_main"],
        ]
    );
}

#[test]
fn gzip_round_trip_and_plain_bytes() {
    let mut p = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default()).profile;
    p.add_labels(&[("test", "parse::tests::big")]);
    p.add_comments(&["run 1 of 3"]);
    let gz = encode_to_vec(&p);
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let back = decode(&gz).expect("decodes");
    assert_eq!(back, p);
    assert!(back.sample.iter().all(|s| back.label_str(s, "test") == Some("parse::tests::big")));
    assert!(back.comments().contains(&"run 1 of 3"));
    use prost::Message;
    assert_eq!(decode(&p.encode_to_vec()).expect("plain"), p);
}

#[test]
fn corrupt_and_truncated_profiles_are_errors() {
    let p = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default()).profile;
    let gz = encode_to_vec(&p);
    assert!(matches!(decode(&gz[..gz.len() / 2]), Err(DecodeError::Gzip(_))));
    assert!(matches!(decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(decode(b"\xff\xff\xff\xff garbage"), Err(DecodeError::Protobuf(_))));
    use prost::Message;
    let plain = p.encode_to_vec();
    assert!(decode(&plain[..plain.len() - 3]).is_err());
    let mut bad = p.clone();
    bad.sample[0].location_id.push(9999);
    let err = decode(&bad.encode_to_vec()).expect_err("dangling location");
    assert!(err.to_string().contains("missing location 9999"), "{err}");
}

/// Issue 15.14: a gzip stream that inflates without bound (a zip bomb in a shared store) is
/// refused at the bound ([`super::codec::MAX_INFLATED`] in use; 1 MiB here), not read into memory.
#[test]
fn a_profile_inflating_beyond_the_bound_is_refused() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&vec![0u8; 2 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(matches!(super::codec::decode_bounded(&bomb, 1 << 20), Err(DecodeError::TooLarge)));
    let p = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default()).profile;
    assert!(super::codec::decode_bounded(&encode_to_vec(&p), 1 << 20).is_ok());
}

#[test]
fn merge_sums_matching_stacks_across_address_spaces() {
    let a = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default()).profile;
    // The same run loaded 0x10000 higher (another ASLR base) with a different period.
    let mut b = build(&raw_file(Some(end(6_000_000_000))), &BuildOptions::default()).profile;
    for m in &mut b.mapping {
        m.memory_start += 0x10000;
        m.memory_limit += 0x10000;
    }
    for l in &mut b.location {
        l.address += 0x10000;
    }
    let m = merge(&[a.clone(), b]).expect("merge");
    assert_eq!(m.total(sample_index::SAMPLES), 6);
    assert_eq!(m.total(sample_index::CPU), 9_000_000_000);
    assert_eq!(m.period, 1_500_000_000);
    assert_eq!(m.sample.len(), a.sample.len(), "same stacks and labels are one sample");
    assert_eq!(m.location.len(), a.location.len());
    assert_eq!(m.mapping.len(), a.mapping.len());
    assert_eq!(m.duration_nanos, 8_000_000_000);
    assert!(decode(&encode_to_vec(&m)).is_ok());

    // Labelled runs stay apart.
    let mut r1 = a.clone();
    r1.add_labels(&[("run", "1")]);
    let mut r2 = a.clone();
    r2.add_labels(&[("run", "2")]);
    assert_eq!(merge(&[r1, r2]).expect("merge").sample.len(), 2 * a.sample.len());

    let mut other = a.clone();
    other.sample_type.pop();
    assert!(matches!(merge(&[a, other]), Err(MergeError::SampleTypes { index: 1, .. })));
    assert!(matches!(merge(&[]), Err(MergeError::Empty)));
}

#[test]
fn cost_view_counts_recursion_once_in_total() {
    let hot = addr_of(profile_probe_hot);
    let main = addr_of(profile_probe_main);
    let mut w = RawWriter::new(header(1000));
    w.maps(&self_maps());
    // hot <- hot <- hot <- main (recursion), twice; main alone once.
    for _ in 0..2 {
        w.cpu_sample(1, &[hot + 4, hot + 9, hot + 9, main + 12]);
    }
    w.cpu_sample(1, &[main + 3]);
    w.end(end(3_000));
    let p = build(&RawFile::parse(w.bytes()).expect("raw"), &BuildOptions::default()).profile;
    let v = CostView::from_profile(&p);
    let cpu = v.sample_type_index("cpu").expect("cpu");
    let h = v.get(&format!("{PREFIX}profile_probe_hot")).expect("hot");
    let m = v.get(&format!("{PREFIX}profile_probe_main")).expect("main");
    assert_eq!((h.self_values[cpu], h.total_values[cpu]), (2_000, 2_000));
    assert_eq!((m.self_values[cpu], m.total_values[cpu]), (1_000, 3_000));
    assert_eq!(v.totals[cpu], 3_000);
    assert_eq!(v.sorted_by_self(cpu)[0].name, h.name);
}

/// Issue 15.14: values whose sum overflows saturate, in totals, the cost view and merges.
#[test]
fn sums_that_overflow_saturate() {
    let mut p = build(&raw_file(Some(end(3_000_000_000))), &BuildOptions::default()).profile;
    let cpu = p.sample_type_index("cpu").unwrap();
    for s in &mut p.sample {
        s.value[cpu] = i64::MAX;
    }
    assert_eq!(p.total(cpu), i64::MAX);
    let view = crate::profile::CostView::from_profile(&p);
    assert_eq!(view.totals[cpu], i64::MAX);
    let merged = crate::profile::merge(&[p.clone(), p]).unwrap();
    assert_eq!(merged.total(cpu), i64::MAX);
}

#[test]
fn stacks_the_agent_could_not_finish_hang_under_a_truncated_frame_and_warn() {
    let (hot, cold) = stacks();
    let mut w = RawWriter::new(header(1000));
    w.maps(&self_maps());
    // One complete stack, two cut short by the walk.
    w.cpu_sample(1, &hot).cpu_sample(1, &[cold[0], contprof_protocol::format::TRUNCATED_FRAME]);
    w.cpu_sample(1, &[cold[0], contprof_protocol::format::TRUNCATED_FRAME]);
    w.end(end(3_000_000));
    let built = build(&RawFile::parse(w.bytes()).expect("raw"), &BuildOptions::default());
    let p = &built.profile;
    let cut = p.sample.iter().find(|s| s.value[sample_index::SAMPLES] == 2).expect("the truncated sample");
    assert_eq!(leaf_name(p, cut), format!("{PREFIX}profile_probe_cold"));
    let root = p.location.iter().find(|l| Some(&l.id) == cut.location_id.last()).expect("root");
    let f = p.function.iter().find(|f| f.id == root.line[0].function_id).expect("function");
    assert_eq!(p.str(f.name), TRUNCATED_STACK_FRAME);
    assert!(built.warnings.iter().any(|w| w.contains("67% of the CPU samples")), "{:?}", built.warnings);
}

#[test]
fn contention_types_come_last_only_when_waits_were_recorded() {
    let (hot, _) = stacks();
    let waits = |rate: u64, stacks: &[([u64; 2], &[u64])]| {
        let mut w = RawWriter::new(Header { contention_rate_ns: rate, ..header(1000) });
        w.maps(&self_maps());
        for (v, frames) in stacks {
            w.contention_stack(*v, frames);
        }
        build(&RawFile::parse(w.end(end(1)).bytes()).expect("valid raw file"), &BuildOptions::default())
            .profile
    };
    let types = |p: &Profile| -> Vec<(String, String)> {
        p.sample_type.iter().map(|v| (p.str(v.r#type).to_owned(), p.str(v.unit).to_owned())).collect()
    };
    let owned = |t: &[(&str, &str)]| -> Vec<(String, String)> {
        t.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    let mut want = SAMPLE_TYPES.to_vec();
    want.extend(CONTENTION_TYPES);

    let p = waits(10_000, &[([3, 4_000_000], &hot[1..])]);
    assert_eq!(types(&p), owned(&want));
    let (contentions, delay) =
        (p.sample_type_index("contentions").unwrap(), p.sample_type_index("delay").unwrap());
    assert_eq!((p.total(contentions), p.total(delay)), (3, 4_000_000));
    let s = p.sample.iter().find(|s| s.value[delay] > 0).expect("the wait's sample");
    assert_eq!(s.value[sample_index::CPU], 0);
    // Recorded but no wait: the same types, so that the runs' profiles merge.
    assert_eq!(types(&waits(10_000, &[])), owned(&want));
    // Not recorded: the profile is what it always was.
    assert_eq!(types(&waits(0, &[])), owned(SAMPLE_TYPES));
}

#[test]
fn instruction_costs_are_the_agents_where_its_code_runs_or_the_c_runtime_runs_for_it() {
    use super::build::{Loc, agents_own};
    let (code, runtime, interposer, agent) =
        (Loc::Code(1), Loc::Runtime(2), Loc::Interposer(3, false), Loc::Agent);
    // The agent's own instructions: its internal code, an interposer's or a twin's own.
    assert!(agents_own([agent, interposer, code]));
    assert!(agents_own([interposer, code]));
    // glibc's allocator under `malloc` (interposer, or a twin) called by the program, or by glibc
    // for the program (`fopen`): the program's.
    assert!(!agents_own([runtime, interposer, code]));
    assert!(!agents_own([runtime, interposer, runtime, code]));
    // The C runtime run for the agent: `dlsym` from its constructor under the loader, the
    // agent's own allocations (through its `malloc` interposer).
    assert!(agents_own([runtime, runtime, agent, runtime]));
    assert!(agents_own([runtime, interposer, agent, interposer, code]));
    // The program's code under the agent (a thread's start routine under the trampoline), and the
    // C runtime it calls.
    assert!(!agents_own([code, agent, runtime]));
    assert!(!agents_own([runtime, code, agent]));
    // Startup in the loader, or a cost without a call path: the program's.
    assert!(!agents_own([runtime, runtime]));
    assert!(!agents_own([runtime]));
    assert!(!agents_own([]));
}
