//! `contprof::criterion::Profiler` writes one raw sample file per benchmark it is asked to profile.
#![cfg(feature = "criterion")]

use std::hint::black_box;

use contprof::format::{RawFile, Record};
use criterion::profiler::Profiler as _;

#[test]
fn the_criterion_profiler_records_each_benchmark_into_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bench_dir = dir.path().join("parse/large/profile");
    let mut profiler = contprof::criterion::Profiler::new().frequency(250);
    profiler.start_profiling("parse/large", &bench_dir);
    // 300 ms of this thread's CPU time (not wall time: the machine may be busy).
    let cpu_ms = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
    };
    let (start, mut x) = (cpu_ms(), 1u64);
    while cpu_ms() - start < 300 {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    profiler.stop_profiling("parse/large", &bench_dir);
    let bytes = std::fs::read(bench_dir.join(contprof::criterion::RAW_FILE)).unwrap();
    let raw = RawFile::parse(&bytes).unwrap();
    let samples = raw.records.iter().filter(|r| matches!(r, Record::CpuSample { .. })).count();
    assert!(samples > 20, "{samples} samples in 300 ms of CPU at 250 Hz");
    assert!(raw.records.iter().any(|r| matches!(r, Record::End(_))));
}
