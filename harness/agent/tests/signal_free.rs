//! Issue 15.15: a workload whose own signal handler frees memory while its thread is inside the
//! agent's allocation hook (which may hold the allocation table's lock) must not hang. The
//! scenario runs in a child process under a deadline, so that a hang fails the test instead of
//! stalling the suite.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: contprof::Allocator<System> = contprof::Allocator::new(System);

const SLOTS: usize = 1024;
/// Blocks allocated by the main loop for the signal handler to free.
static SPARE: [AtomicPtr<u8>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
const BLOCK: Layout = match Layout::from_size_align(64, 8) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};
static STOP: AtomicBool = AtomicBool::new(false);
const CHILD: &str = "CONTPROF_SIGNAL_FREE_CHILD";

extern "C" fn free_one(_: libc::c_int) {
    for slot in &SPARE {
        let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: allocated below with `BLOCK` by the same allocator, and taken out of its slot.
            unsafe { ALLOC.dealloc(p, BLOCK) };
            return;
        }
    }
}

fn scenario() {
    let path = std::env::temp_dir().join(format!("contprof-signal-free-{}.raw", std::process::id()));
    let guard = contprof::start(contprof::Options::new(&path).frequency(0).alloc(contprof::AllocMode::Exact))
        .expect("agent starts");
    // SAFETY: a handler that only frees through the global allocator, as a workload's might.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = free_one as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: no preconditions.
    let main = unsafe { libc::pthread_self() };
    let sender = std::thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            // SAFETY: the main thread lives until this thread is joined.
            unsafe { libc::pthread_kill(main, libc::SIGUSR1) };
            // Tens of thousands of signals a second: plenty land inside the hooks, and the main
            // thread still runs (a signal storm without a pause left it 10-60 s for its 1.5 s).
            std::thread::sleep(Duration::from_micros(10));
        }
    });
    let until = Instant::now() + Duration::from_millis(1500);
    let mut kept: Vec<Box<[u8; 48]>> = Vec::new();
    while Instant::now() < until {
        for slot in &SPARE {
            if slot.load(Ordering::Relaxed).is_null() {
                // SAFETY: a non-zero-size layout.
                let p = unsafe { ALLOC.alloc(BLOCK) };
                if !p.is_null()
                    && slot
                        .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    // SAFETY: just allocated with `BLOCK`, never shared.
                    unsafe { ALLOC.dealloc(p, BLOCK) };
                }
            }
        }
        // Plenty of time inside the hooks for the signals to land in.
        kept.push(Box::new([0u8; 48]));
        if kept.len() > 4096 {
            kept.clear();
        }
    }
    STOP.store(true, Ordering::Relaxed);
    sender.join().expect("sender thread");
    guard.stop();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_signal_handler_that_frees_during_an_allocation_does_not_hang() {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_signal_handler_that_frees_during_an_allocation_does_not_hang", "--nocapture"])
        .env(CHILD, "1")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the workload hung: its signal handler's free waited for the allocation table");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
