//! The CPU sample path allocates nothing: a counting global allocator sees zero allocations
//! on this thread while samples are taken, both by calling the record path directly and by
//! letting real `SIGPROF` samples fire during a busy loop. (It takes no lock either: there is
//! none on that path by design, see `sampler.rs`.) The thread has a label set while it is
//! sampled (and a span and trace id), so the path that reads them and writes them with each
//! sample is covered, and its samples (every one taken after the context is set) are checked to
//! carry them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use contprof::format::{RawFile, Record};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            SEEN.with(|s| s.set(s.get() + 1));
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[inline(never)]
fn burn(iterations: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Both perf clock modes: counting kernel time, and user time only, where each sample also reads
/// the thread's system time (`getrusage`).
#[test]
fn sampling_allocates_nothing() {
    for perf_kernel in [true, false] {
        sample_without_allocating(perf_kernel);
    }
}

fn sample_without_allocating(perf_kernel: bool) {
    SEEN.with(|s| s.set(0));
    let path =
        std::env::temp_dir().join(format!("contprof-noalloc-{}-{perf_kernel}.raw", std::process::id()));
    let options =
        contprof::Options::new(&path).frequency(999).alloc(contprof::AllocMode::Off).perf_kernel(perf_kernel);
    let guard = contprof::start(options).expect("agent starts");
    let labels = contprof::labels::set(&[("phase", "no-alloc")]);
    assert!(!contprof::labels::LabelSet::current().is_empty(), "the linked agent takes labels");
    let context = contprof::labels::Context {
        labels: contprof::labels::LabelSet::current(),
        span_id: 0x5151,
        trace_id: 0x7e7e << 64 | 0x42,
    };
    let outside = contprof::labels::replace_context(context);

    WATCHING.with(|w| w.set(true));
    for _ in 0..500 {
        contprof::preload::sample_here();
    }
    let direct = SEEN.with(Cell::get);
    let until = thread_cpu_ns() + 300_000_000;
    while thread_cpu_ns() < until {
        black_box(burn(100_000));
    }
    WATCHING.with(|w| w.set(false));
    let total = SEEN.with(Cell::get);
    // Stopped before the context is restored, so that no sample falls between the two.
    guard.stop();
    contprof::labels::replace_context(outside);
    drop(labels);

    let file = RawFile::read_from(std::fs::File::open(&path).expect("file exists")).expect("file parses");
    let _ = std::fs::remove_file(&path);
    // SAFETY: `gettid` has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    let samples =
        file.records.iter().filter(|r| matches!(r, Record::CpuSample { tid: t, .. } if *t == tid)).count();
    // A timer sample may fire between the start and the setting of the context; this thread's
    // records are in the order they were taken, so those are the ones before the first record of
    // the context.
    let first_in_context = file
        .records
        .iter()
        .position(|r| matches!(r, Record::Labels { span_id: 0x5151, .. }))
        .expect("the context is in the file");
    let before_context = file.records[..first_in_context]
        .iter()
        .filter(|r| matches!(r, Record::CpuSample { tid: t, .. } if *t == tid))
        .count();
    assert!(before_context <= 3, "{before_context} samples before the context was set");
    assert_eq!(direct, 0, "direct calls of the sample path allocated (perf_kernel {perf_kernel})");
    assert_eq!(total, 0, "signal-driven samples allocated (perf_kernel {perf_kernel})");
    assert!(samples >= 500 + 100, "expected the direct samples and ~300 timer samples, got {samples}");
    // Every sample of this thread carries the label set, written right before it.
    let set = file
        .records
        .iter()
        .find_map(|r| match r {
            Record::LabelSet { id, pairs } if pairs == &[("phase".to_owned(), "no-alloc".to_owned())] => {
                Some(*id)
            }
            _ => None,
        })
        .expect("the label set is in the file");
    let labelled = file
        .records
        .windows(2)
        .filter(|w| {
            matches!(w, [Record::Labels { set: s, span_id: 0x5151, trace_id }, Record::CpuSample { tid: t, .. }]
                if *s == set && *t == tid && *trace_id == 0x7e7e << 64 | 0x42)
        })
        .count();
    assert_eq!(labelled, samples - before_context, "samples without their label set and trace ids");
    // The walks used the unwind tables and reached the thread's root (`clone3`, whose table says
    // it has no caller): hardly any ends truncated, and each holds the test harness's frames.
    let stacks: Vec<&[u64]> = file
        .records
        .iter()
        .filter_map(|r| match r {
            Record::CpuSample { tid: t, frames } if *t == tid => Some(frames.as_slice()),
            _ => None,
        })
        .collect();
    let truncated = stacks.iter().filter(|f| f.last() == Some(&contprof::format::TRUNCATED_FRAME)).count();
    assert!(truncated * 20 <= stacks.len(), "{truncated} of {} stacks truncated", stacks.len());
    let shallow = stacks.iter().filter(|f| f.len() < 8).count();
    assert!(shallow * 20 <= stacks.len(), "{shallow} of {} stacks under 8 frames", stacks.len());
}
