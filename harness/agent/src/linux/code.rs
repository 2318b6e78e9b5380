//! The process's executable mappings, read once at start, so the signal handler can tell code
//! built with frame pointers (the main executable: Rust code and the standard library) from code
//! without them (glibc), and a plausible return address from data.
//!
//! A leaf in glibc such as `memcpy` runs without a frame of its own: the frame-pointer walk from
//! the interrupted `rbp` starts at its caller's caller, and the caller, often the function that
//! matters, would be lost. Such functions have not pushed anything when they do their work, so
//! the word at the stack pointer is the return address into the caller; the handler takes it
//! when it points into executable code.

use core::sync::atomic::{AtomicUsize, Ordering};

const MAX_RANGES: usize = 256;

static RANGES: [[AtomicUsize; 2]; MAX_RANGES] =
    [const { [AtomicUsize::new(0), AtomicUsize::new(0)] }; MAX_RANGES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The first executable range of the main executable (start, end); 0 when unknown.
static MAIN: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Reads `/proc/self/maps` (not async-signal-safe: call at start).
pub(crate) fn load() {
    // Read with the agent's own descriptor discipline (never 0, 1 or 2), not `std::fs`.
    let Some(mut buf) = crate::sys::Mapping::new(1 << 20) else { return };
    let Some(len) = crate::sys::read_maps(&mut buf, 0) else { return };
    let maps = String::from_utf8_lossy(&buf.bytes_mut()[..len]).into_owned();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let mut n = 0;
    for line in maps.lines() {
        let Some(entry) = crate::maps::parse_line(line).filter(|e| e.executable()) else { continue };
        let (lo, hi) = (entry.start as usize, entry.limit as usize);
        let path = Some(entry.path).filter(|p| !p.is_empty());
        if n < MAX_RANGES {
            RANGES[n][0].store(lo, Ordering::Relaxed);
            RANGES[n][1].store(hi, Ordering::Relaxed);
            n += 1;
        }
        if let (Some(exe), Some(path)) = (&exe, path)
            && exe.as_os_str() == path
            && MAIN[1].load(Ordering::Relaxed) == 0
        {
            MAIN[0].store(lo, Ordering::Relaxed);
            MAIN[1].store(hi, Ordering::Relaxed);
        }
    }
    COUNT.store(n, Ordering::Release);
}

/// Whether `addr` lies in executable code mapped at start. Async-signal-safe.
pub(crate) fn is_code(addr: usize) -> bool {
    let n = COUNT.load(Ordering::Acquire).min(MAX_RANGES);
    RANGES[..n].iter().any(|r| addr >= r[0].load(Ordering::Relaxed) && addr < r[1].load(Ordering::Relaxed))
}

/// Whether `addr` lies in the main executable's code (built with frame pointers by
/// `cargo contprof`). Async-signal-safe.
pub(crate) fn in_main_executable(addr: usize) -> bool {
    addr >= MAIN[0].load(Ordering::Relaxed) && addr < MAIN[1].load(Ordering::Relaxed)
}
