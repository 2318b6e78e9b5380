//! The exported signal functions through which a program shares `SIGPROF` with the agent (see
//! the agent's `signals.rs` for the rules):
//! - `sigaction` and `signal`: while the agent's handler is installed, the program's `SIGPROF`
//!   action is recorded and read back there instead of replacing the agent's handler; every
//!   other signal, and `SIGPROF` before the agent installs its handler, goes to the C library.
//! - `pthread_sigmask` and `sigprocmask`: forwarded, then a change to whether `SIGPROF` is
//!   blocked pauses or resumes the calling thread's CPU timer.
//! - `sigwait`, `sigwaitinfo` and `sigtimedwait`: forwarded, and a `SIGPROF` that is the agent's
//!   (one that became pending before the thread's timer could be paused) is dropped and the wait
//!   goes on, so that a signal thread only ever collects its own signals.
//!
//! `sigset`, `bsd_signal`, `sysv_signal` and raw `rt_sigaction` / `rt_sigprocmask` system calls
//! are not interposed.

use core::ffi::c_int;

use contprof::preload::signals::{is_ours, mask_changed, program_sigaction, set_real_functions};

use crate::next::Next;

type Sigaction = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type Signal = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
type Sigmask = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;
type Sigwait = unsafe extern "C" fn(*const libc::sigset_t, *mut c_int) -> c_int;
type Sigwaitinfo = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int;
type Sigtimedwait =
    unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t, *const libc::timespec) -> c_int;

static SIGACTION: Next = Next::new(c"sigaction");
static SIGNAL: Next = Next::new(c"signal");
static PTHREAD_SIGMASK: Next = Next::new(c"pthread_sigmask");
static SIGPROCMASK: Next = Next::new(c"sigprocmask");
static SIGWAITINFO: Next = Next::new(c"sigwaitinfo");
static SIGTIMEDWAIT: Next = Next::new(c"sigtimedwait");
static SIGWAIT: Next = Next::new(c"sigwait");

/// Resolves the C library's functions and hands the agent those it calls itself.
pub(crate) fn resolve_real() {
    crate::next::resolve_all(&[
        &SIGACTION,
        &SIGNAL,
        &PTHREAD_SIGMASK,
        &SIGPROCMASK,
        &SIGWAITINFO,
        &SIGTIMEDWAIT,
        &SIGWAIT,
    ]);
    set_real_functions(SIGACTION.get(), PTHREAD_SIGMASK.get());
}

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Interposes `sigaction`.
///
/// # Safety
/// The contract of `sigaction(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if sig == libc::SIGPROF {
        // SAFETY: the caller's pointers, null or valid (its contract).
        if let Some(rc) = program_sigaction(unsafe { act.as_ref() }, unsafe { old.as_mut() }) {
            return rc;
        }
    }
    // SAFETY: glibc's function of this name has this type.
    match unsafe { SIGACTION.function::<Sigaction>() } {
        // SAFETY: forwarded.
        Some(real) => unsafe { real(sig, act, old) },
        None => {
            set_errno(libc::ENOSYS);
            -1
        }
    }
}

/// Interposes `signal` (BSD semantics, as glibc's: `SA_RESTART`, the signal blocked in its
/// handler).
///
/// # Safety
/// The contract of `signal(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if sig == libc::SIGPROF {
        // SAFETY: `sigaction` and `sigset_t` are plain data.
        let (mut act, mut old): (libc::sigaction, libc::sigaction) = unsafe { core::mem::zeroed() };
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: a valid set.
        unsafe {
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaddset(&mut act.sa_mask, sig);
        }
        if program_sigaction(Some(&act), Some(&mut old)).is_some() {
            return old.sa_sigaction;
        }
    }
    // SAFETY: glibc's function of this name has this type.
    match unsafe { SIGNAL.function::<Signal>() } {
        // SAFETY: forwarded.
        Some(real) => unsafe { real(sig, handler) },
        None => libc::SIG_ERR,
    }
}

/// Whether a mask change `how`/`set` may change whether `SIGPROF` is blocked.
///
/// # Safety
/// `set` is null or valid.
unsafe fn touches_sigprof(how: c_int, set: *const libc::sigset_t) -> bool {
    // SAFETY: the caller's contract.
    !set.is_null() && (how == libc::SIG_SETMASK || unsafe { libc::sigismember(set, libc::SIGPROF) } == 1)
}

/// Interposes `pthread_sigmask`.
///
/// # Safety
/// The contract of `pthread_sigmask(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { PTHREAD_SIGMASK.function::<Sigmask>() }) else { return libc::ENOSYS };
    // SAFETY: forwarded.
    let rc = unsafe { real(how, set, old) };
    // SAFETY: `set` is the caller's, null or valid.
    if rc == 0 && unsafe { touches_sigprof(how, set) } {
        mask_changed();
    }
    rc
}

/// Interposes `sigprocmask`.
///
/// # Safety
/// The contract of `sigprocmask(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SIGPROCMASK.function::<Sigmask>() }) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let saved = errno();
    // SAFETY: forwarded.
    let rc = unsafe { real(how, set, old) };
    // SAFETY: `set` is the caller's, null or valid.
    if rc == 0 && unsafe { touches_sigprof(how, set) } {
        mask_changed();
        set_errno(saved);
    }
    rc
}

fn errno() -> c_int {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Waits with `wait` (which fills `info`) until a signal that is not the agent's `SIGPROF`.
fn wait_for_own(info: &mut libc::siginfo_t, mut wait: impl FnMut(&mut libc::siginfo_t) -> c_int) -> c_int {
    loop {
        let sig = wait(info);
        if sig != libc::SIGPROF || !is_ours(info) {
            return sig;
        }
    }
}

/// Interposes `sigwaitinfo`.
///
/// # Safety
/// The contract of `sigwaitinfo(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SIGWAITINFO.function::<Sigwaitinfo>() }) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: plain data.
    let mut local: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: forwarded, with a siginfo of ours to look at.
    let sig = wait_for_own(&mut local, |i| unsafe { real(set, i) });
    if sig > 0 && !info.is_null() {
        // SAFETY: the caller's valid out-pointer.
        unsafe { *info = local };
    }
    sig
}

/// Interposes `sigtimedwait`: the time spent on a dropped `SIGPROF` counts against the timeout.
///
/// # Safety
/// The contract of `sigtimedwait(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SIGTIMEDWAIT.function::<Sigtimedwait>() }) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let now = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    // SAFETY: the caller's timeout, null or valid.
    let deadline =
        unsafe { timeout.as_ref() }.map(|t| now() + t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128);
    // SAFETY: plain data.
    let mut local: libc::siginfo_t = unsafe { core::mem::zeroed() };
    let sig = wait_for_own(&mut local, |i| match deadline {
        // SAFETY: forwarded.
        None => unsafe { real(set, i, core::ptr::null()) },
        Some(d) => {
            let left = (d - now()).max(0);
            let ts = libc::timespec {
                tv_sec: (left / 1_000_000_000) as libc::time_t,
                tv_nsec: (left % 1_000_000_000) as libc::c_long,
            };
            // SAFETY: forwarded, with what is left of the timeout.
            unsafe { real(set, i, &ts) }
        }
    });
    if sig > 0 && !info.is_null() {
        // SAFETY: the caller's valid out-pointer.
        unsafe { *info = local };
    }
    sig
}

/// Interposes `sigwait`.
///
/// # Safety
/// The contract of `sigwait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real_info) = (unsafe { SIGWAITINFO.function::<Sigwaitinfo>() }) else {
        // SAFETY: glibc's function of this name has this type.
        return match unsafe { SIGWAIT.function::<Sigwait>() } {
            // SAFETY: glibc's `sigwait`, forwarded as it is.
            Some(real) => unsafe { real(set, sig) },
            None => libc::ENOSYS,
        };
    };
    let saved = errno();
    // SAFETY: plain data.
    let mut local: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // glibc's `sigwait`: `sigtimedwait` retried on EINTR, the error number returned.
    let got = wait_for_own(&mut local, |i| {
        loop {
            // SAFETY: forwarded.
            let r = unsafe { real_info(set, i) };
            if r >= 0 || errno() != libc::EINTR {
                break r;
            }
        }
    });
    if got < 0 {
        return errno();
    }
    set_errno(saved);
    if !sig.is_null() {
        // SAFETY: the caller's valid out-pointer.
        unsafe { *sig = got };
    }
    0
}
