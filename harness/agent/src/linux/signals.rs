//! `SIGPROF`, shared with the program: which deliveries are the agent's, the program's own
//! action for the signal, and the threads that block it.
//!
//! The agent's handler owns `SIGPROF` once installed, but the program keeps its own:
//! - **its action**: the preload library interposes `sigaction` and `signal`; while the agent's
//!   handler is installed, a program that sets `SIGPROF` has its action recorded here (and reads
//!   it back, not the agent's), and every `SIGPROF` that is not the agent's is handed to it
//!   ([`forward`]): its handler (with its mask, `SA_SIGINFO` or not, `SA_RESETHAND`), ignored,
//!   or, for the default action, the process ends by the signal as it would have. An action the
//!   program had before the agent started is kept the same way. A program that links the agent
//!   in and sets `SIGPROF` itself replaces the agent's handler (nothing interposes `sigaction`
//!   there): the agent's samples stop, the program's profiler works.
//! - **the agent's deliveries** are told apart by their `siginfo` ([`is_ours`]): the POSIX CPU
//!   timers carry [`TIMER_VALUE`], the perf timers arrive as `POLL_*` signals (`F_SETSIG`), the
//!   signals the agent sends to threads (wall sampling, thread snapshots) are queued with a value
//!   of [`QUEUED_MAGIC`] and the process's own pid. Anything else (the program's `setitimer`,
//!   `kill`, `raise`) is the program's.
//! - **threads that block it**: a thread that blocks `SIGPROF` (a `sigwait` signal thread, or
//!   every thread of a program that blocks all signals) must never find one pending: it would
//!   collect it with `sigwait` or `signalfd` as its own. The preload library reports every mask
//!   change ([`mask_changed`]): the thread's CPU timer is paused while `SIGPROF` is blocked, and
//!   the thread is in [`BLOCKING`], which the wall sampler and the thread snapshot consult before
//!   signalling a thread (the snapshot also reads the mask from `/proc`). The `sigwait` family is
//!   interposed too, and drops the agent's deliveries that got through anyway.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

/// The value of the agent's POSIX CPU timers' signals (`sigev_value`).
pub(crate) const TIMER_VALUE: usize = 0xC0F7_71AE_0000_0001;
/// The high half of the value of every signal the agent queues to a thread; the low half says
/// what for ([`crate::wall`] slots, [`SNAPSHOT`]).
pub(crate) const QUEUED_MAGIC: u64 = 0xC0F7_A11C << 32;
/// The low half of a thread snapshot's signal (above any wall slot).
pub(crate) const SNAPSHOT: u64 = 0xFFFF_FFFF;

/// `sigaction(2)` as the C library has it.
type SigactionFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sigaction, *mut libc::sigaction) -> libc::c_int;
/// `pthread_sigmask(3)` as the C library has it.
type SigmaskFn = unsafe extern "C" fn(libc::c_int, *const libc::sigset_t, *mut libc::sigset_t) -> libc::c_int;

/// The C library's `sigaction` and `pthread_sigmask` when the preload library interposes them
/// (0: call `libc`'s, which is then the C library's).
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGMASK: AtomicUsize = AtomicUsize::new(0);

/// Tells the agent where the C library's `sigaction` and `pthread_sigmask` are (the preload
/// library interposes them; the agent's own calls must reach the C library).
pub fn set_real_functions(sigaction: usize, sigmask: usize) {
    REAL_SIGACTION.store(sigaction, Ordering::Release);
    REAL_SIGMASK.store(sigmask, Ordering::Release);
}

/// The C library's `sigaction`.
pub(crate) fn real_sigaction(
    sig: libc::c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> libc::c_int {
    let f = REAL_SIGACTION.load(Ordering::Acquire);
    // SAFETY: the caller passes valid (or null) pointers; `f` is the C library's `sigaction`.
    unsafe {
        if f == 0 {
            libc::sigaction(sig, act, old)
        } else {
            core::mem::transmute::<usize, SigactionFn>(f)(sig, act, old)
        }
    }
}

/// The C library's `pthread_sigmask`.
pub(crate) fn real_sigmask(
    how: libc::c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> libc::c_int {
    let f = REAL_SIGMASK.load(Ordering::Acquire);
    // SAFETY: as above, for `pthread_sigmask`.
    unsafe {
        if f == 0 {
            libc::pthread_sigmask(how, set, old)
        } else {
            core::mem::transmute::<usize, SigmaskFn>(f)(how, set, old)
        }
    }
}

/// Whether the calling thread blocks `SIGPROF` now.
pub(crate) fn sigprof_blocked() -> bool {
    // SAFETY: `sigset_t` is plain data; a null set only reads the mask.
    unsafe {
        let mut cur: libc::sigset_t = core::mem::zeroed();
        real_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut cur) == 0
            && libc::sigismember(&cur, libc::SIGPROF) == 1
    }
}

/// Whether a delivery of `SIGPROF` is the agent's (see the module docs).
pub fn is_ours(info: &libc::siginfo_t) -> bool {
    match info.si_code {
        // SAFETY: a timer's siginfo carries `si_value`.
        libc::SI_TIMER => (unsafe { info.si_value() }.sival_ptr as usize) == TIMER_VALUE,
        libc::SI_QUEUE => {
            // SAFETY: a queued signal's siginfo carries `si_value` and `si_pid`.
            let (value, pid) = unsafe { (info.si_value().sival_ptr as u64, info.si_pid()) };
            value & !0xFFFF_FFFF == QUEUED_MAGIC && pid as u32 == std::process::id()
        }
        // `POLL_IN`..`POLL_HUP`: a perf event's overflow through `F_SETSIG`.
        1..=6 => true,
        // The process-wide `setitimer` fallback: the program cannot use `ITIMER_PROF` at the
        // same time anyway (one timer per process).
        libc::SI_KERNEL => crate::timer::clock() == crate::format::ClockKind::Itimer,
        // No sender: the kernel lost the signal's information (the process is at its
        // `RLIMIT_SIGPENDING`), which only the agent's timers can cause here; a `kill` from a
        // process carries its pid.
        libc::SI_USER => {
            // SAFETY: a user signal's siginfo carries `si_pid`.
            let pid = unsafe { info.si_pid() };
            pid == 0 && crate::timer::clock() != crate::format::ClockKind::Off
        }
        _ => false,
    }
}

/// The program's `SIGPROF` action while the agent's handler is installed: written by
/// [`program_sigaction`] (the program's threads), read by [`forward`] (any signal handler),
/// under a sequence counter (odd while written).
struct ProgramAction {
    seq: AtomicU64,
    action: UnsafeCell<libc::sigaction>,
}

// SAFETY: `action` is written only between two increments of `seq` by a writer holding
// `WRITING`, and read by copying it and checking `seq` did not move.
unsafe impl Sync for ProgramAction {}

static PROGRAM: ProgramAction = ProgramAction {
    seq: AtomicU64::new(0),
    // SAFETY: an all-zero `sigaction` is `SIG_DFL` with an empty mask and no flags.
    action: UnsafeCell::new(unsafe { core::mem::zeroed() }),
};
/// One writer of [`PROGRAM`] at a time.
static WRITING: AtomicBool = AtomicBool::new(false);
/// The agent's handler is installed: the program's `SIGPROF` action lives in [`PROGRAM`].
static OWNED: AtomicBool = AtomicBool::new(false);

fn store_program_action(action: &libc::sigaction) {
    while WRITING.swap(true, Ordering::Acquire) {
        core::hint::spin_loop();
    }
    PROGRAM.seq.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `WRITING` is held and `seq` is odd: readers retry.
    unsafe { *PROGRAM.action.get() = *action };
    PROGRAM.seq.fetch_add(1, Ordering::Release);
    WRITING.store(false, Ordering::Release);
}

fn load_program_action() -> libc::sigaction {
    loop {
        let before = PROGRAM.seq.load(Ordering::Acquire);
        if before.is_multiple_of(2) {
            // SAFETY: a plain copy; kept only if no write overlapped it.
            let copy = unsafe { core::ptr::read_volatile(PROGRAM.action.get()) };
            if PROGRAM.seq.load(Ordering::Acquire) == before {
                return copy;
            }
        }
        core::hint::spin_loop();
    }
}

/// Installs `handler` (an `SA_SIGINFO` handler) for `SIGPROF`, keeping the action found there as
/// the program's. Idempotent.
pub(crate) fn install(handler: usize) -> std::io::Result<()> {
    if OWNED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: `sigaction` is plain data; the handler has the `SA_SIGINFO` signature.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if real_sigaction(libc::SIGPROF, &sa, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if old.sa_sigaction != handler {
            store_program_action(&old);
        }
    }
    OWNED.store(true, Ordering::Release);
    Ok(())
}

/// The program sets (`act`) or reads (`old`) its `SIGPROF` action while the agent's handler is
/// installed: recorded and answered here, the agent's handler stays. `None` when the agent's
/// handler is not installed (the call goes to the C library as it is).
pub fn program_sigaction(
    act: Option<&libc::sigaction>,
    old: Option<&mut libc::sigaction>,
) -> Option<libc::c_int> {
    if !OWNED.load(Ordering::Acquire) {
        return None;
    }
    if let Some(old) = old {
        *old = load_program_action();
    }
    if let Some(act) = act {
        store_program_action(act);
    }
    Some(0)
}

/// Hands a `SIGPROF` that is not the agent's to the program's action (from the agent's handler,
/// which has restored `errno`; the program's handler sees what the interrupted code left).
///
/// # Safety
/// Called from the `SIGPROF` handler with the arguments it received.
pub(crate) unsafe fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut core::ffi::c_void) {
    let action = load_program_action();
    match action.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
            // SIGPROF's default action ends the process: let it, as it would without the agent.
            // SAFETY: `sigaction` is plain data; once this handler returns, the re-raised signal
            // (blocked meanwhile) is delivered with the default action.
            unsafe {
                let mut dfl: libc::sigaction = core::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                OWNED.store(false, Ordering::Release);
                real_sigaction(libc::SIGPROF, &dfl, core::ptr::null_mut());
                libc::raise(libc::SIGPROF);
            }
        }
        handler => {
            if action.sa_flags & libc::SA_RESETHAND != 0 {
                // SAFETY: all-zero is `SIG_DFL`.
                store_program_action(&unsafe { core::mem::zeroed() });
            }
            // SAFETY: `sigset_t` is plain data; the program's mask applies while its handler runs,
            // as the kernel would apply it, and the thread's mask is restored after.
            unsafe {
                let mut saved: libc::sigset_t = core::mem::zeroed();
                let masked = real_sigmask(libc::SIG_BLOCK, &action.sa_mask, &mut saved) == 0;
                if action.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut core::ffi::c_void) =
                        core::mem::transmute(handler);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = core::mem::transmute(handler);
                    f(sig);
                }
                if masked {
                    real_sigmask(libc::SIG_SETMASK, &saved, core::ptr::null_mut());
                }
            }
        }
    }
}

/// Threads that may be signalled: tids of threads that block `SIGPROF`, open addressing; 0 is
/// free, [`GONE`] a removed entry that lookups probe past.
const SLOTS: usize = 16384;
const GONE: u32 = u32::MAX;
static BLOCKING: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
/// Some thread that blocks `SIGPROF` found no slot: [`blocks`] cannot be trusted to say no.
static OVERFLOW: AtomicBool = AtomicBool::new(false);

fn home(tid: u32) -> usize {
    (tid as usize).wrapping_mul(0x9E37_79B9) % SLOTS
}

/// Whether thread `tid` blocks `SIGPROF`, as far as the agent saw its mask change; `None` when the
/// table overflowed and does not know (read `/proc/self/task/<tid>/status` then, see
/// [`blocks_per_proc`]). Lock-free.
pub(crate) fn blocks(tid: u32) -> Option<bool> {
    let start = home(tid);
    for i in 0..SLOTS {
        match BLOCKING[(start + i) % SLOTS].load(Ordering::Acquire) {
            t if t == tid => return Some(true),
            0 => break,
            _ => {}
        }
    }
    if OVERFLOW.load(Ordering::Relaxed) { None } else { Some(false) }
}

/// Records whether thread `tid` blocks `SIGPROF`.
pub(crate) fn set_blocks(tid: u32, blocked: bool) {
    let start = home(tid);
    if !blocked {
        for i in 0..SLOTS {
            let slot = &BLOCKING[(start + i) % SLOTS];
            match slot.load(Ordering::Acquire) {
                0 => return,
                t if t == tid => slot.store(GONE, Ordering::Release),
                _ => {}
            }
        }
        return;
    }
    if blocks(tid) == Some(true) {
        return;
    }
    for i in 0..SLOTS {
        let slot = &BLOCKING[(start + i) % SLOTS];
        let seen = slot.load(Ordering::Acquire);
        if (seen == 0 || seen == GONE)
            && slot.compare_exchange(seen, tid, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            return;
        }
    }
    OVERFLOW.store(true, Ordering::Relaxed);
}

/// In a forked child: the parent's threads are not here; only the calling thread, which the
/// child's mask was copied from, is.
pub(crate) fn forget_in_child() {
    for slot in &BLOCKING {
        slot.store(0, Ordering::Relaxed);
    }
    OVERFLOW.store(false, Ordering::Relaxed);
    if sigprof_blocked() {
        set_blocks(sys::gettid(), true);
    }
}

/// Whether thread `tid` blocks `SIGPROF`, from its `SigBlk` line in `/proc/self/task/<tid>/status`
/// (`None` when it cannot be read: it exited). Raw system calls and a stack buffer only.
pub(crate) fn blocks_per_proc(tid: u32) -> Option<bool> {
    let mut buf = [0u8; 4096];
    let len = sys::read_task_file(tid, b"status", &mut buf)?;
    let text = &buf[..len];
    let line = text.split(|&c| c == b'\n').find(|l| l.starts_with(b"SigBlk:"))?;
    let hex = line[b"SigBlk:".len()..].iter().filter(|c| c.is_ascii_hexdigit());
    let mask = hex.fold(0u64, |m, &c| (m << 4) | u64::from((c as char).to_digit(16).unwrap_or(0)));
    Some(mask & (1 << (libc::SIGPROF - 1)) != 0)
}

/// The calling thread's mask may have changed (the preload library's `pthread_sigmask`,
/// `sigprocmask`): its CPU timer is paused while it blocks `SIGPROF`, resumed when it does not,
/// and the table of threads that block it follows.
pub fn mask_changed() {
    let blocked = sigprof_blocked();
    let t = crate::thread::current();
    let tid = t.tid();
    if blocks(tid) == Some(blocked) {
        return;
    }
    set_blocks(tid, blocked);
    crate::thread::timer_follows_mask(t, blocked);
}
