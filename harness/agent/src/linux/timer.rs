//! CPU timers that deliver `SIGPROF` to the thread that burns the CPU.
//!
//! Owns the choice of clock ([`ClockKind`]) and every armed timer. Preferred: a per-thread
//! `perf_event_open` software `cpu-clock` event whose overflow raises `SIGPROF` through
//! `O_ASYNC` + `F_SETSIG` + `F_SETOWN_EX(F_OWNER_TID)`: it is hrtimer-driven, so rates above the
//! kernel tick are reached. Fallbacks: a per-thread POSIX timer on the thread's CPU clock with
//! `SIGEV_THREAD_ID`, then one process-wide `setitimer(ITIMER_PROF)` (both tick-driven).
//!
//! Armed per-thread timers live in a fixed table of slots so that stopping the agent can disarm
//! the timers of every thread, and a forked child can drop its inherited descriptors, without
//! allocating.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::format::ClockKind;
use crate::sys;

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const F_SETSIG: i32 = 10;
const F_SETOWN_EX: i32 = 15;
const F_OWNER_TID: i32 = 0;
const SIGEV_THREAD_ID: i32 = 4;

const ATTR_DISABLED: u64 = 1 << 0;
const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
const ATTR_EXCLUDE_HV: u64 = 1 << 6;

/// `struct perf_event_attr`, layout `PERF_ATTR_SIZE_VER5` (112 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

#[repr(C)]
struct FOwnerEx {
    kind: i32,
    pid: i32,
}

/// The clock in use ([`ClockKind`] as `u32`).
static CLOCK: AtomicU32 = AtomicU32::new(ClockKind::Off as u32);
/// Sampling period in nanoseconds.
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);

/// Most per-thread timers armed at once; threads beyond that are not sampled.
const SLOTS: usize = 4096;
const SLOT_PERF: u64 = 1 << 62;
const SLOT_TIMER: u64 = 2 << 62;
const SLOT_VALUE: u64 = (1 << 62) - 1;
/// Armed timers: 0 = free, else kind bits | descriptor or timer id.
static ARMED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Thread id each armed slot samples.
static OWNER: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// A failed attempt to arm a timer: what was tried and the OS error.
#[derive(Debug)]
pub(crate) struct ArmError {
    pub(crate) what: &'static str,
    pub(crate) errno: i32,
}

impl core::fmt::Display for ArmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} failed: {}", self.what, std::io::Error::from_raw_os_error(self.errno))
    }
}

fn fail(what: &'static str) -> ArmError {
    ArmError { what, errno: sys::errno() }
}

/// The clock chosen by [`arm_first`].
pub(crate) fn clock() -> ClockKind {
    ClockKind::from_u32(CLOCK.load(Ordering::Relaxed))
}

/// Stores a per-thread timer; `None` when the table is full (the timer is then released).
fn store(value: u64, tid: u32) -> Option<u32> {
    for (i, slot) in ARMED.iter().enumerate() {
        if slot.compare_exchange(0, value, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            OWNER[i].store(tid, Ordering::Release);
            return Some(i as u32);
        }
    }
    destroy(value, true);
    None
}

/// The device and inode of perf event descriptors (one anonymous inode for all of them), seen at
/// the first: a descriptor is closed or disabled only if it still is one (a program that closed
/// every descriptor may have reused the number for a file of its own).
static PERF: sys::Identity = sys::Identity::unknown();

fn is_perf_event(fd: i32) -> bool {
    PERF.is(fd)
}

fn destroy(value: u64, disable: bool) {
    let id = value & SLOT_VALUE;
    match value & !SLOT_VALUE {
        SLOT_PERF if is_perf_event(id as i32) => {
            if disable {
                // SAFETY: `id` is a perf event descriptor the agent opened.
                unsafe { libc::ioctl(id as i32, PERF_EVENT_IOC_DISABLE, 0) };
            }
            sys::close(id as i32);
        }
        SLOT_TIMER if disable => {
            // SAFETY: `id` is a timer the agent created (a kernel timer id, as glibc returns
            // for `SIGEV_THREAD_ID` timers).
            unsafe { libc::timer_delete(id as usize as libc::timer_t) };
        }
        _ => {}
    }
}

/// Opens the per-thread cpu-clock event; `kernel`: count time in the kernel too (refused with
/// `EACCES` at `perf_event_paranoid` 2 without `CAP_PERFMON`).
fn open_perf(tid: u32, period_ns: u64, kernel: bool) -> Result<u64, ArmError> {
    let exclude = if kernel { ATTR_EXCLUDE_HV } else { ATTR_EXCLUDE_KERNEL | ATTR_EXCLUDE_HV };
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: core::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_period: period_ns,
        flags: ATTR_DISABLED | exclude,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid `perf_event_attr` of the size it declares.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as i32,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    } as i32;
    if fd < 0 {
        return Err(fail("perf_event_open(cpu-clock)"));
    }
    let fd = sys::keep_high(fd);
    if fd < 0 {
        return Err(fail("perf_event_open(cpu-clock): no descriptor free"));
    }
    if !PERF.is_known() {
        PERF.record(fd);
    }
    let owner = FOwnerEx { kind: F_OWNER_TID, pid: tid as i32 };
    // SAFETY: `fd` is the event just opened; `owner` is a valid `f_owner_ex`.
    let setup = unsafe {
        if libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC) != 0 {
            Err(fail("fcntl(O_ASYNC) on the perf event"))
        } else if libc::fcntl(fd, F_SETSIG, libc::SIGPROF) != 0 {
            Err(fail("fcntl(F_SETSIG) on the perf event"))
        } else if libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx) != 0 {
            Err(fail("fcntl(F_SETOWN_EX) on the perf event"))
        } else if libc::ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0 {
            Err(fail("enabling the perf event"))
        } else {
            Ok(SLOT_PERF | fd as u64)
        }
    };
    if setup.is_err() {
        sys::close(fd);
    }
    setup
}

fn create_thread_timer(tid: u32, own: bool, period_ns: u64) -> Result<u64, ArmError> {
    let clock = if own { libc::CLOCK_THREAD_CPUTIME_ID } else { sys::thread_cpu_clock(tid) };
    // SAFETY: `sigevent` is plain data; all-zero is a valid starting value.
    let mut ev: libc::sigevent = unsafe { core::mem::zeroed() };
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = libc::SIGPROF;
    // Tells the agent's timer signals from the program's (`signals::is_ours`).
    ev.sigev_value = libc::sigval { sival_ptr: crate::signals::TIMER_VALUE as *mut libc::c_void };
    ev.sigev_notify_thread_id = tid as i32;
    let mut id: libc::timer_t = core::ptr::null_mut();
    // SAFETY: valid sigevent and out-pointer.
    if unsafe { libc::timer_create(clock, &mut ev, &mut id) } != 0 {
        return Err(fail("timer_create(thread cpu clock)"));
    }
    let ts = timespec(period_ns);
    let spec = libc::itimerspec { it_interval: ts, it_value: ts };
    // SAFETY: `id` was just created; `spec` is valid.
    if unsafe { libc::timer_settime(id, 0, &spec, core::ptr::null_mut()) } != 0 {
        let e = fail("timer_settime");
        // SAFETY: `id` was created above and is not stored anywhere.
        unsafe { libc::timer_delete(id) };
        return Err(e);
    }
    Ok(SLOT_TIMER | (id as usize as u64 & SLOT_VALUE))
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ }
}

fn set_itimer(period_ns: u64) -> Result<(), ArmError> {
    let us = (period_ns / 1000).max(1);
    let tv = libc::timeval { tv_sec: (us / 1_000_000) as _, tv_usec: (us % 1_000_000) as _ };
    let it = libc::itimerval { it_interval: tv, it_value: tv };
    // SAFETY: valid itimerval.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &it, core::ptr::null_mut()) } != 0 {
        return Err(fail("setitimer(ITIMER_PROF)"));
    }
    Ok(())
}

/// Chooses the clock by arming the calling thread's timer, falling back as needed. Returns
/// the slot of the armed timer (none for `setitimer`) and a warning for each fallback.
pub(crate) fn arm_first(
    tid: u32,
    period_ns: u64,
    allow_perf: bool,
    perf_kernel: bool,
    warnings: &mut Vec<String>,
) -> Option<u32> {
    PERIOD_NS.store(period_ns, Ordering::Relaxed);
    // Without `allow_perf` the tick-driven timer is a choice (cheaper at rates up to the tick),
    // not a fallback, and nothing is worth a warning.
    if allow_perf {
        // Counting kernel time puts system time on the user frame that made the system call;
        // where that is not allowed, user time alone is counted and the sampler adds each
        // thread's system time to its next sample (`KIND_KERNEL_TIME`). Neither is a fallback
        // worth a warning.
        if perf_kernel && let Ok(v) = open_perf(tid, period_ns, true) {
            CLOCK.store(ClockKind::PerfCpuClockKernel as u32, Ordering::Relaxed);
            return store(v, tid);
        }
        match open_perf(tid, period_ns, false) {
            Ok(v) => {
                CLOCK.store(ClockKind::PerfCpuClock as u32, Ordering::Relaxed);
                return store(v, tid);
            }
            Err(e) => warnings.push(format!("{e}; falling back to a per-thread CPU timer (tick-driven)")),
        }
    }
    match create_thread_timer(tid, true, period_ns) {
        Ok(v) => {
            CLOCK.store(ClockKind::ThreadCpuTimer as u32, Ordering::Relaxed);
            return store(v, tid);
        }
        Err(e) => warnings.push(format!("{e}; falling back to setitimer(ITIMER_PROF) (tick-driven)")),
    }
    match set_itimer(period_ns) {
        Ok(()) => CLOCK.store(ClockKind::Itimer as u32, Ordering::Relaxed),
        Err(e) => {
            warnings.push(format!("{e}; CPU sampling is off"));
            CLOCK.store(ClockKind::Off as u32, Ordering::Relaxed);
        }
    }
    None
}

/// Arms a timer for thread `tid` with the chosen clock (`own` = the calling thread). Returns
/// the slot, or `Ok(None)` when no per-thread timer is needed (`setitimer`, or off).
pub(crate) fn arm(tid: u32, own: bool) -> Result<Option<u32>, ArmError> {
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let value = match clock() {
        ClockKind::PerfCpuClock => {
            open_perf(tid, period, false).or_else(|_| create_thread_timer(tid, own, period))?
        }
        ClockKind::PerfCpuClockKernel => {
            open_perf(tid, period, true).or_else(|_| create_thread_timer(tid, own, period))?
        }
        ClockKind::ThreadCpuTimer => create_thread_timer(tid, own, period)?,
        ClockKind::Itimer | ClockKind::Off => return Ok(None),
    };
    Ok(store(value, tid))
}

/// Pauses the timer in `slot` (its thread blocks `SIGPROF`: no signal may become pending for it)
/// or resumes it. Async-signal-safe.
pub(crate) fn set_paused(slot: u32, paused: bool) {
    let Some(v) = ARMED.get(slot as usize).map(|s| s.load(Ordering::Acquire)).filter(|&v| v != 0) else {
        return;
    };
    let id = v & SLOT_VALUE;
    match v & !SLOT_VALUE {
        SLOT_PERF if is_perf_event(id as i32) => {
            let request = if paused { PERF_EVENT_IOC_DISABLE } else { PERF_EVENT_IOC_ENABLE };
            // SAFETY: `id` is a perf event descriptor the agent opened.
            unsafe { libc::ioctl(id as i32, request, 0) };
        }
        SLOT_TIMER => {
            let ts = if paused { timespec(0) } else { timespec(PERIOD_NS.load(Ordering::Relaxed)) };
            let spec = libc::itimerspec { it_interval: ts, it_value: ts };
            // SAFETY: `id` is a timer the agent created; `spec` is valid.
            unsafe { libc::timer_settime(id as usize as libc::timer_t, 0, &spec, core::ptr::null_mut()) };
        }
        _ => {}
    }
}

/// [`set_paused`] for thread `tid`'s timer, looked for from `hint` (its slot when it armed its
/// own) as [`release_thread`] does.
pub(crate) fn set_thread_paused(hint: Option<u32>, tid: u32, paused: bool) {
    let owned = |i: usize| OWNER[i].load(Ordering::Acquire) == tid;
    match hint.filter(|&s| (s as usize) < SLOTS && owned(s as usize)) {
        Some(s) => set_paused(s, paused),
        None => (0..SLOTS).filter(|&i| owned(i)).for_each(|i| set_paused(i as u32, paused)),
    }
}

/// Whether a timer is armed for thread `tid`.
pub(crate) fn is_armed(tid: u32) -> bool {
    (0..SLOTS).any(|i| OWNER[i].load(Ordering::Acquire) == tid && ARMED[i].load(Ordering::Acquire) != 0)
}

/// Disarms and frees the timer in `slot` (thread exit). Async-signal-safe.
pub(crate) fn release(slot: u32) {
    if let Some(s) = ARMED.get(slot as usize) {
        let v = s.swap(0, Ordering::AcqRel);
        if v != 0 {
            OWNER[slot as usize].store(0, Ordering::Release);
            destroy(v, true);
        }
    }
}

/// Disarms and frees the timers of thread `tid` (its exit), starting at the slot it was given
/// (`hint`): after a restart of the agent that slot may belong to another thread, and the
/// thread's own timer may be in another slot. Async-signal-safe.
pub(crate) fn release_thread(hint: Option<u32>, tid: u32) {
    let owned = |i: usize| OWNER[i].load(Ordering::Acquire) == tid;
    match hint.filter(|&s| (s as usize) < SLOTS && owned(s as usize)) {
        Some(s) => release(s),
        None => (0..SLOTS).filter(|&i| owned(i)).for_each(|i| release(i as u32)),
    }
}

/// Disarms every timer (agent stop). Async-signal-safe.
pub(crate) fn disarm_all() {
    if clock() == ClockKind::Itimer {
        let zero = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
        };
        // SAFETY: valid itimerval.
        unsafe { libc::setitimer(libc::ITIMER_PROF, &zero, core::ptr::null_mut()) };
    }
    for slot in 0..SLOTS as u32 {
        release(slot);
    }
}

/// In a forked child: closes the inherited perf descriptors without disabling them (they
/// share the parent's events). POSIX and interval timers are not inherited by `fork`.
pub(crate) fn forget_all_in_child() {
    for s in &ARMED {
        let v = s.swap(0, Ordering::AcqRel);
        if v != 0 {
            destroy(v, false);
        }
    }
}
