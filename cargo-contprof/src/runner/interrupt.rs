//! Ctrl-C while a workload runs: the terminal delivers SIGINT to the workload (same process
//! group) and to us. We note it instead of dying, so the samples recorded so far are still turned
//! into a profile, and no further runs are started.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT handler. A handler (unlike `SIG_IGN`) is reset to the default in exec'd
/// children, so workloads still stop on Ctrl-C.
pub fn install() {
    // SAFETY: `sigaction` with a zeroed struct plus a handler that only stores to an atomic, which
    // is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Whether Ctrl-C was pressed since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
