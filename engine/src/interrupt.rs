//! Interruptions while workloads run. Ctrl-C in a terminal delivers SIGINT to the whole foreground
//! process group: the workload and us. A CI runner that cancels a job, or `kill`, signals only us
//! (SIGINT or SIGTERM), so we pass the signal on to the workloads running. Either way we note it
//! instead of dying: the samples recorded so far are still turned into profiles and stored, and
//! no further runs are started.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Interruptions so far, so that an operation can tell one that arrived while it ran from one
/// that came before (the Ctrl-C that stopped a workload must not abort storing its samples).
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Workloads running now (0 = free slot); `cargo contprof test` runs several at once.
const SLOTS: usize = 256;
static RUNNING: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_process = !info.is_null() && unsafe { (*info).si_code } == libc::SI_USER;
    // A terminal's Ctrl-C already reached the workloads in our process group; a signal sent to
    // us alone is passed on, and so is every signal to a workload in a group of its own (a
    // negative slot: the group of that pid). `kill` is async-signal-safe; the slots are atomics.
    for slot in &RUNNING {
        let pid = slot.load(Ordering::SeqCst);
        if pid < 0 || (pid > 0 && (from_process || sig == libc::SIGTERM)) {
            // SAFETY: plain syscall; the pid is a child (or the group it leads) we have not
            // reaped yet (slots are cleared before `wait4` returns to the caller).
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers. A handler (unlike `SIG_IGN`) is reset to the default
/// in exec'd children, so workloads still stop on these signals.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` with a zeroed struct plus a handler that only touches atomics and
        // calls `kill`, both async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Whether an interruption arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How many interruptions arrived since [`install`]: an operation that notes it at its start stops
/// when it grows.
pub fn count() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// The flag [`interrupted`] reads, for loops that poll a stop flag (the viewer's server).
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Marks `pid` as a running workload until the guard is dropped (before it is reaped); a negative
/// `pid` is the process group of `-pid`, which receives every interruption.
pub fn track(pid: libc::pid_t) -> Tracked {
    let slot =
        RUNNING.iter().position(|s| s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_ok());
    Tracked(slot)
}

/// See [`track`].
#[derive(Debug)]
pub struct Tracked(Option<usize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            RUNNING[i].store(0, Ordering::SeqCst);
        }
    }
}
