//! The agent's messages to the service's standard error: the only way the agent writes there.
//!
//! A guest must not change how its host fails. `eprintln!` panics when standard error cannot be
//! written (a full disk, `2>/dev/full`, a closed pipe), and the preload library aborts on panic;
//! a write to a pipe without a reader raises `SIGPIPE`, which kills a C service that kept the
//! default disposition. So here:
//! - a message is written with [`sys::write_quietly`]: errors ignored, `SIGPIPE` blocked in the
//!   writing thread meanwhile (the signal that write raised is taken back, unless one was already
//!   pending before, which is the service's);
//! - the first write that fails turns the messages off for good: standard error is gone;
//! - at most [`BURST`] messages per [`WINDOW_NS`], then one line saying how many were held back.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// Messages written per window of time at most.
const BURST: u32 = 10;
/// The window of the rate limit: 10 minutes.
const WINDOW_NS: u64 = 600 * 1_000_000_000;

/// Set once a write to standard error failed.
static GONE: AtomicBool = AtomicBool::new(false);
/// Start of the current window of the rate limit (monotonic ns, 0: none yet).
static WINDOW_START: AtomicU64 = AtomicU64::new(0);
/// Messages in the current window, written or held back.
static IN_WINDOW: AtomicU32 = AtomicU32::new(0);

/// Writes `contprof: <message>` and a newline to standard error, unless the rate limit holds it
/// back or standard error is gone. Never panics, never raises a signal.
pub(crate) fn say(message: &str) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
    let start = WINDOW_START.load(Ordering::Relaxed);
    let mut held = 0;
    if (start == 0 || now.saturating_sub(start) >= WINDOW_NS)
        && WINDOW_START.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        held = IN_WINDOW.swap(0, Ordering::Relaxed).saturating_sub(BURST);
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) >= BURST {
        return;
    }
    let mut line = format!("contprof: {message}");
    if held > 0 {
        line.push_str(&format!(" ({held} earlier message(s) held back)"));
    }
    line.push('\n');
    if !sys::write_quietly(libc::STDERR_FILENO, line.as_bytes()) {
        GONE.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_to_a_pipe_without_reader_fails_without_a_signal() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: closing the read end we just made.
        unsafe { libc::close(fds[0]) };
        // SAFETY: the default disposition, as a C program has it: a SIGPIPE would end the test.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert!(!sys::write_quietly(fds[1], b"hello\n"));
        // SAFETY: the set is initialised before use.
        let pending = unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigpending(&mut set);
            libc::sigismember(&set, libc::SIGPIPE)
        };
        // SAFETY: restoring the disposition found; closing our write end.
        unsafe {
            libc::signal(libc::SIGPIPE, old);
            libc::close(fds[1]);
        }
        assert_eq!(pending, 0, "the SIGPIPE the write raised was taken back");
    }
}
