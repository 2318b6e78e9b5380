//! Post-processing cost: raw samples -> symbolized pprof profile -> gzip bytes.
//!
//! The raw file is synthesized from this benchmark binary itself: ~300,000 CPU samples over
//! a few thousand distinct stacks made of real functions of this binary (from its symbol
//! table, at their runtime addresses) and the real `/proc/self/maps`, so that symbolization
//! walks real DWARF with inlined frames. Stacks draw from a pool of 20,000 call sites.

use std::hint::black_box;

use contprof_engine::profile::{BuildOptions, RawWriter, build_profile, encode};
use contprof_engine::symbolize::{Symbolizer, demangle};
use contprof_protocol::format::{ClockKind, EndRecord, Header, RawFile};
use criterion::{Criterion, criterion_group, criterion_main};
use object::{Object, ObjectSymbol, SymbolKind};

const SAMPLES: usize = 300_000;
const STACKS: usize = 4_000;
const THREADS: u32 = 8;
const CALL_SITES: usize = 20_000;

#[inline(never)]
fn bench_anchor(x: u64) -> u64 {
    black_box(x).wrapping_mul(7)
}

/// `(runtime address, size)` of the functions of this binary.
fn functions() -> Vec<(u64, u64)> {
    let exe = std::env::current_exe().expect("current exe");
    let data = std::fs::read(exe).expect("read own binary");
    let obj = object::File::parse(&*data).expect("parse own binary");
    let text: Vec<_> = obj.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() >= 16).collect();
    let anchor = text
        .iter()
        .find(|s| s.name().is_ok_and(|n| demangle(n).ends_with("bench_anchor")))
        .expect("anchor symbol");
    let bias = (bench_anchor as fn(u64) -> u64 as usize as u64).wrapping_sub(anchor.address());
    text.iter().map(|s| (s.address().wrapping_add(bias), s.size())).collect()
}

/// The raw file bytes: a call tree of shared prefixes, a skewed choice of stacks per sample.
fn raw_file() -> Vec<u8> {
    let funcs = functions();
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    // A pool of call sites: real code returns to the same call sites over and over.
    let pool: Vec<u64> = (0..CALL_SITES)
        .map(|_| {
            let (addr, size) = funcs[rng.usize(..funcs.len())];
            addr + 1 + rng.u64(..) % (size - 1)
        })
        .collect();
    let call_site = |rng: &mut fastrand::Rng| pool[rng.usize(..pool.len())];
    let roots: Vec<Vec<u64>> = (0..64).map(|_| (0..8).map(|_| call_site(&mut rng)).collect()).collect();
    let stacks: Vec<Vec<u64>> = (0..STACKS)
        .map(|_| {
            let mut s: Vec<u64> = (0..4 + rng.usize(..28)).map(|_| call_site(&mut rng)).collect();
            s.extend(&roots[rng.usize(..roots.len())]);
            s
        })
        .collect();
    let header = Header {
        magic: [0; 8],
        version: 0,
        header_len: 0,
        pid: std::process::id(),
        frequency_hz: 999,
        clock: ClockKind::PerfCpuClock as u32,
        alloc_mode: 0,
        alloc_interval: 0,
        start_unix_ns: 1,
        contention_rate_ns: 0,
        wall_period_ns: 0,
    };
    let mut w = RawWriter::new(header);
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    w.maps(&maps);
    for t in 0..THREADS {
        w.thread_name(1000 + t, &format!("worker-{t}"));
    }
    let mut frames = Vec::with_capacity(64);
    for _ in 0..SAMPLES {
        // Skewed towards the first stacks, as real profiles are.
        let u = (rng.u64(..) >> 11) as f64 / (1u64 << 53) as f64;
        let stack = &stacks[((u * u * u) * STACKS as f64) as usize];
        frames.clear();
        frames.extend_from_slice(stack);
        frames[0] = frames[0].wrapping_add(rng.u64(..) % 4); // leaf: any instruction nearby
        w.cpu_sample(1000 + (rng.u64(..) % u64::from(THREADS)) as u32, &frames);
    }
    w.end(EndRecord {
        cpu_time_ns: SAMPLES as u64 * 1_001_001,
        wall_ns: 40_000_000_000,
        ..Default::default()
    });
    w.maps(&maps);
    w.bytes().to_vec()
}

fn pipeline(c: &mut Criterion) {
    let bytes = raw_file();
    let raw = RawFile::parse(&bytes).expect("raw file");
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.bench_function("parse_raw_300k", |b| b.iter(|| RawFile::parse(black_box(&bytes))));
    group.bench_function("symbolize_build_gzip_300k_cold", |b| {
        b.iter(|| {
            let built = build_profile(&raw, &mut Symbolizer::new(), &BuildOptions::default());
            let mut out = Vec::new();
            encode(&built.profile, &mut out).expect("encode");
            out
        })
    });
    let mut warm = Symbolizer::new();
    build_profile(&raw, &mut warm, &BuildOptions::default());
    group.bench_function("build_gzip_300k_warm_binary_cache", |b| {
        b.iter(|| {
            let built = build_profile(&raw, &mut warm, &BuildOptions::default());
            let mut out = Vec::new();
            encode(&built.profile, &mut out).expect("encode");
            out
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
