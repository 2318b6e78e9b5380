//! Wall-clock sampling: every thread of the process, on CPU or off, on wall time.
//!
//! Owns the sampler thread and the per-thread slots it shares with the signal handler. At each
//! tick (`1 / wall_hz` of wall time) the sampler lists `/proc/self/task` and reads each thread's
//! CPU clock (ticks are spaced at random around the period, so that periodic work is not seen
//! at one phase):
//! - a thread whose CPU time moved by more than [`MOVED_NS`] since its last stack (or that has
//!   none yet) is sent `SIGPROF` with `rt_tgsigqueueinfo`, its slot in the signal's value (or, when
//!   the signal merged with a pending CPU timer's, found by [`requested`]); its handler
//!   ([`on_signal`]) records where the thread is now, running or blocked in a system
//!   call, as a [`KIND_WALL_STACK`](crate::format::KIND_WALL_STACK) worth the wall time since the previous tick, and notes the
//!   thread's CPU clock at its end;
//! - a thread that did not move is still where its last stack was taken: the tick's wall time
//!   is added up in its slot and written as [`KIND_WALL_TIME`] (which the reader adds to that
//!   stack) before the thread's next stack, when it exits, and when sampling stops.
//!
//! So a thread blocked for a second costs one signal, not a hundred, and its stack is the frame
//! where it blocked (`futex`, `nanosleep`, `read`...). The handler's own CPU time, and the few
//! microseconds of a system call restarted after it, stay under [`MOVED_NS`], so they do not
//! count as running. A thread that ran less than that since its stack, then blocked elsewhere,
//! is charged at the old stack: the error is bounded by [`MOVED_NS`] of CPU per tick.
//!
//! The sampler allocates nothing once started (stack buffers, raw `getdents64`), takes no lock,
//! and is neither CPU-sampled nor wall-sampled itself. Slots live in a static table of
//! [`SLOTS`] threads; more live threads than that are not wall-sampled (counted in a message).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::format::KIND_WALL_TIME;
use crate::thread::ThreadState;
use crate::unwind::Regs;
use crate::{sys, thread, timer, writer};

/// Threads that can be wall-sampled at once.
const SLOTS: usize = 4096;
/// CPU time a thread must have used since its last stack to count as running (nanoseconds).
pub(crate) const MOVED_NS: u64 = 50_000;
/// The high half of a wall signal's value (the low half is the slot): tells it from any other
/// queued `SIGPROF`.
const MAGIC: u64 = crate::signals::QUEUED_MAGIC;
/// A free slot's tid; a slot freed after use holds [`GONE`] so that lookups probe past it.
const FREE: u32 = 0;
const GONE: u32 = u32::MAX;

/// What the sampler and the handler share about one thread.
struct Slot {
    tid: AtomicU32,
    /// Wall time for the handler to record with the stack it takes (set before the signal).
    pending_ns: AtomicU64,
    /// The thread's CPU clock when its handler last finished.
    cpu_after_ns: AtomicU64,
    /// A signal was sent and its handler has not finished.
    in_flight: AtomicBool,
    /// A stack of this thread was recorded: [`KIND_WALL_TIME`] has something to add to.
    has_stack: AtomicBool,
    /// Wall time of ticks at which the thread did not move, not written yet (sampler only).
    idle_ns: AtomicU64,
    /// The tick at which the sampler last saw the thread (sampler only).
    seen: AtomicU32,
    /// The agent start (`alloc::GENERATION`) into whose file the sampler wrote the thread's name
    /// with a stack it took without a signal (sampler only).
    name_generation: AtomicU32,
    /// The thread's stack bounds, once the sampler looked them up (0, 0: not yet; sampler only).
    stack_lo: AtomicU64,
    stack_hi: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    tid: AtomicU32::new(FREE),
    pending_ns: AtomicU64::new(0),
    cpu_after_ns: AtomicU64::new(0),
    in_flight: AtomicBool::new(false),
    has_stack: AtomicBool::new(false),
    idle_ns: AtomicU64::new(0),
    seen: AtomicU32::new(0),
    name_generation: AtomicU32::new(0),
    stack_lo: AtomicU64::new(0),
    stack_hi: AtomicU64::new(0),
};
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Whether wall stacks are recorded (the handler's switch).
static ON: AtomicBool = AtomicBool::new(false);
/// Asks the sampler to flush and exit.
static STOP: AtomicBool = AtomicBool::new(false);
/// The sampler is running (set by `start`, cleared by the sampler when it has flushed).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Nanoseconds between ticks.
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
/// A thread that is not sampled besides the sampler itself (the continuous mode's control
/// thread, the agent's own); 0 for none.
static SKIP: AtomicU32 = AtomicU32::new(0);
/// Live threads that found no free slot.
static UNTRACKED: AtomicU64 = AtomicU64::new(0);
/// Ticks at which a thread that blocks `SIGPROF` (never signalled) had no stack to charge.
static BLOCKING_TICKS: AtomicU64 = AtomicU64::new(0);

/// Starts sampling every thread but `skip` `hz` times a second of wall time (the handler must be
/// installed). Returns a warning when the sampler thread could not be created.
pub(crate) fn start(hz: u32, skip: u32) -> Result<(), String> {
    if hz == 0 {
        return Ok(());
    }
    SKIP.store(skip, Ordering::Relaxed);
    for s in &TABLE {
        reset(s, FREE);
    }
    UNTRACKED.store(0, Ordering::Relaxed);
    BLOCKING_TICKS.store(0, Ordering::Relaxed);
    PERIOD_NS.store(crate::api::wall_period_ns(hz), Ordering::Relaxed);
    STOP.store(false, Ordering::SeqCst);
    RUNNING.store(true, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    // SAFETY: `attr` is initialised before use and destroyed after; `run` has the C ABI and
    // ignores its argument; the thread is detached, nothing joins it.
    let rc = unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        // Room for the copy of a blocked thread's stack pages (`remote::StackCopy`).
        libc::pthread_attr_setstacksize(&mut attr, 512 * 1024);
        let mut handle: libc::pthread_t = core::mem::zeroed();
        let rc = libc::pthread_create(&mut handle, &attr, run, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        rc
    };
    if rc != 0 {
        ON.store(false, Ordering::SeqCst);
        RUNNING.store(false, Ordering::SeqCst);
        return Err(format!(
            "wall-clock sampling is off: the sampler thread could not be created ({})",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok(())
}

/// Stops the sampler: it writes the wall time it holds and exits. Waits for that (bounded: two
/// seconds), then stops recording wall stacks. Async-signal-safe.
pub(crate) fn stop() {
    if !RUNNING.load(Ordering::SeqCst) {
        ON.store(false, Ordering::SeqCst);
        return;
    }
    STOP.store(true, Ordering::SeqCst);
    for _ in 0..2000 {
        if !RUNNING.load(Ordering::SeqCst) {
            break;
        }
        sleep_ns(1_000_000);
    }
    ON.store(false, Ordering::SeqCst);
    let untracked = UNTRACKED.swap(0, Ordering::Relaxed);
    if untracked > 0 {
        writer::write_message_fmt(
            1,
            format_args!("{untracked} threads were not wall-sampled: more than {SLOTS} threads at once"),
        );
    }
    let blocking = BLOCKING_TICKS.swap(0, Ordering::Relaxed);
    if blocking > 0 {
        writer::write_message_fmt(
            1,
            format_args!(
                "{blocking} thread-ticks of wall time not sampled: threads that block SIGPROF (signal threads) are never signalled"
            ),
        );
    }
}

/// Stops in a forked child, where the sampler thread does not exist.
pub(crate) fn forget_in_child() {
    ON.store(false, Ordering::SeqCst);
    RUNNING.store(false, Ordering::SeqCst);
}

/// Whether `info` is a wall signal; if so, its slot.
pub(crate) fn slot_of(info: &libc::siginfo_t) -> Option<usize> {
    if info.si_code != libc::SI_QUEUE {
        return None;
    }
    // SAFETY: a queued signal's siginfo carries `si_value`.
    let value = unsafe { info.si_value() }.sival_ptr as u64;
    (value & !0xFFFF_FFFF == MAGIC).then_some((value & 0xFFFF_FFFF) as usize).filter(|&s| s < SLOTS)
}

/// The slot of thread `tid` when a wall signal was sent to it and not handled yet. `SIGPROF` is
/// not a real-time signal: one sent while another is pending (a CPU timer's) is merged into it,
/// so every `SIGPROF` handler asks. No allocation, no lock.
pub(crate) fn requested(tid: u32) -> Option<usize> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    let start = home(tid);
    for i in 0..SLOTS {
        let index = (start + i) % SLOTS;
        match TABLE[index].tid.load(Ordering::Acquire) {
            t if t == tid => return TABLE[index].in_flight.load(Ordering::Acquire).then_some(index),
            FREE => return None,
            _ => {}
        }
    }
    None
}

fn home(tid: u32) -> usize {
    (tid as usize).wrapping_mul(0x9E37_79B9) % SLOTS
}

/// The wall signal's handler, on the signalled thread: records its stack with the wall time the
/// sampler left in the slot. No allocation, no lock.
pub(crate) fn on_signal(t: &ThreadState, slot: usize, regs: Regs) {
    let s = &TABLE[slot];
    if s.tid.load(Ordering::Acquire) != t.tid() {
        return;
    }
    if ON.load(Ordering::SeqCst) {
        let wall_ns = s.pending_ns.swap(0, Ordering::AcqRel);
        if wall_ns > 0 && crate::sampler::record_wall_stack(t, regs, wall_ns) {
            s.has_stack.store(true, Ordering::Release);
        }
    }
    s.cpu_after_ns.store(sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID), Ordering::Release);
    s.in_flight.store(false, Ordering::Release);
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    let own = sys::gettid();
    // This thread is the agent's: no CPU timer (the preload library armed one at its start).
    thread::with(ThreadState::mark_registered);
    timer::release_thread(None, own);
    let mut name = *b"contprof-wall\0";
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_mut_ptr()) };
    if let Some(dir) = sys::TASK.open() {
        sample_until_stopped(dir.fd(), own);
    } else {
        writer::write_message(1, "wall-clock sampling is off: /proc/self/task cannot be read");
    }
    flush_all();
    RUNNING.store(false, Ordering::SeqCst);
    core::ptr::null_mut()
}

fn sample_until_stopped(dir: i32, own: u32) {
    let period = PERIOD_NS.load(Ordering::Relaxed).max(1);
    let pid = std::process::id() as libc::pid_t;
    let mut last = sys::clock_ns(libc::CLOCK_MONOTONIC);
    let mut rng = last | 1;
    let mut next = last + period;
    let mut tick: u32 = 0;
    let mut copy = crate::remote::StackCopy::new();
    let mut frames = [0u64; crate::format::MAX_FRAMES];
    loop {
        sleep_until(next);
        if STOP.load(Ordering::SeqCst) {
            return;
        }
        let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
        // Each tick stands for all the time since the previous one, a late wake-up included.
        let elapsed = now.saturating_sub(last);
        last = now;
        // Ticks are spaced at random, uniformly between half and one and a half periods: a
        // workload whose rhythm matches the period (a 10 ms loop at 100 Hz) would otherwise be
        // seen at the same phase every time, and charged to the wrong state.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        next = now + period / 2 + rng % period.max(1);
        tick = tick.wrapping_add(1).max(1);
        let skip = SKIP.load(Ordering::Relaxed);
        sys::for_each_tid(dir, |tid| {
            if tid != own && tid != skip {
                visit(tid, pid, elapsed, tick, &mut copy, &mut frames);
            }
        });
        // Threads not seen at this tick have exited: their idle time goes to their last stack.
        for s in &TABLE {
            let tid = s.tid.load(Ordering::Relaxed);
            if tid != FREE && tid != GONE && s.seen.load(Ordering::Relaxed) != tick {
                flush(s, tid);
                reset(s, GONE);
            }
        }
    }
}

/// Writes thread `tid`'s name (from `/proc`) into this file once, for stacks the sampler took
/// itself (a signal handler writes its own thread's name).
fn write_name(s: &Slot, tid: u32) {
    let generation = crate::alloc::GENERATION.load(Ordering::Relaxed);
    if s.name_generation.swap(generation, Ordering::Relaxed) == generation {
        return;
    }
    let mut name = [0u8; 16];
    if let Some(n) = crate::remote::name(tid, &mut name) {
        writer::write_thread_name(tid, &name[..n]);
    }
}

/// One thread at one tick; `copy` and `frames` are the sampler's buffers for the stacks of
/// blocked threads.
fn visit(
    tid: u32,
    pid: libc::pid_t,
    elapsed: u64,
    tick: u32,
    copy: &mut crate::remote::StackCopy,
    frames: &mut [u64; crate::format::MAX_FRAMES],
) {
    let Some((index, s)) = slot_for(tid) else {
        UNTRACKED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    s.seen.store(tick, Ordering::Relaxed);
    if s.in_flight.load(Ordering::Acquire) {
        // The last signal is not handled yet: the stack it takes stands for this tick too.
        s.pending_ns.fetch_add(elapsed, Ordering::AcqRel);
        return;
    }
    let Some(cpu) = sys::thread_cpu_ns(tid) else { return };
    let has_stack = s.has_stack.load(Ordering::Acquire);
    if has_stack && cpu <= s.cpu_after_ns.load(Ordering::Acquire).saturating_add(MOVED_NS) {
        s.idle_ns.fetch_add(elapsed, Ordering::Relaxed);
        return;
    }
    // A thread that blocks SIGPROF (a `sigwait` signal thread) is never signalled: it would
    // collect the signal as its own. Its time stays with the stack it had, if any.
    let blocked =
        crate::signals::blocks(tid).or_else(|| crate::signals::blocks_per_proc(tid)).unwrap_or(true);
    if blocked {
        if has_stack {
            s.idle_ns.fetch_add(elapsed, Ordering::Relaxed);
        } else {
            BLOCKING_TICKS.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    // Running (or never seen): the time it sat idle before belongs to its previous stack.
    flush(s, tid);
    // Blocked in a system call since: its stack is taken where it sits, without a signal that
    // would cut the call short (`EINTR`). Only a thread that runs now is signalled.
    let known = match (s.stack_lo.load(Ordering::Relaxed), s.stack_hi.load(Ordering::Relaxed)) {
        (_, 0) => None,
        (lo, hi) => Some(crate::unwind::Bounds { lo: lo as usize, hi: hi as usize }),
    };
    if let Some(at) = crate::remote::blocked_at(tid)
        && let Some((n, bounds)) = crate::remote::stack(tid, at, cpu, known, copy, frames)
    {
        s.stack_lo.store(bounds.lo as u64, Ordering::Relaxed);
        s.stack_hi.store(bounds.hi as u64, Ordering::Relaxed);
        write_name(s, tid);
        // Its labels from the table the thread keeps them in (its own state is out of reach).
        let (set, trace) = crate::labels::slots::of(tid);
        if writer::write_stack(crate::format::KIND_WALL_STACK, tid, Some(elapsed), set, trace, &frames[..n]) {
            s.has_stack.store(true, Ordering::Release);
        }
        s.cpu_after_ns.store(cpu, Ordering::Release);
        return;
    }
    s.pending_ns.store(elapsed, Ordering::Release);
    s.in_flight.store(true, Ordering::Release);
    if !signal(pid, tid, index) {
        s.in_flight.store(false, Ordering::Release);
        s.pending_ns.store(0, Ordering::Release);
    }
}

/// Writes the idle time held for thread `tid` (and a signal's time never handled) as one
/// [`KIND_WALL_TIME`], when it has a stack to add to.
fn flush(s: &Slot, tid: u32) {
    let mut ns = s.idle_ns.swap(0, Ordering::Relaxed);
    if !s.in_flight.load(Ordering::Acquire) {
        ns += s.pending_ns.swap(0, Ordering::AcqRel);
    }
    if ns > 0 && s.has_stack.load(Ordering::Acquire) {
        writer::emit(&[writer::pair(KIND_WALL_TIME, 16), writer::pair(tid, 0), ns]);
    }
}

/// At stop: every thread's held time, and that of signals still in flight (whose handler will
/// find nothing left to record).
fn flush_all() {
    for s in &TABLE {
        let tid = s.tid.load(Ordering::Relaxed);
        if tid != FREE && tid != GONE {
            s.in_flight.store(false, Ordering::Release);
            flush(s, tid);
        }
    }
}

fn reset(s: &Slot, tid: u32) {
    s.pending_ns.store(0, Ordering::Relaxed);
    s.cpu_after_ns.store(0, Ordering::Relaxed);
    s.in_flight.store(false, Ordering::Relaxed);
    s.has_stack.store(false, Ordering::Relaxed);
    s.idle_ns.store(0, Ordering::Relaxed);
    s.seen.store(0, Ordering::Relaxed);
    s.name_generation.store(0, Ordering::Relaxed);
    s.stack_lo.store(0, Ordering::Relaxed);
    s.stack_hi.store(0, Ordering::Relaxed);
    s.tid.store(tid, Ordering::Release);
}

/// The slot of `tid`, taken if it has none (open addressing; the sampler is the only writer of
/// `tid`, so no compare-and-swap is needed). `None` when the table is full.
fn slot_for(tid: u32) -> Option<(usize, &'static Slot)> {
    let start = home(tid);
    let mut reuse = None;
    for i in 0..SLOTS {
        let index = (start + i) % SLOTS;
        let s = &TABLE[index];
        match s.tid.load(Ordering::Relaxed) {
            t if t == tid => return Some((index, s)),
            GONE => {
                reuse.get_or_insert(index);
            }
            FREE => {
                let index = reuse.unwrap_or(index);
                reset(&TABLE[index], tid);
                return Some((index, &TABLE[index]));
            }
            _ => {}
        }
    }
    let index = reuse?;
    reset(&TABLE[index], tid);
    Some((index, &TABLE[index]))
}

/// Sends thread `tid` the wall signal for `slot`.
fn signal(pid: libc::pid_t, tid: u32, slot: usize) -> bool {
    crate::sampler::queue(pid, tid, slot as u64)
}

fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; EINTR just ends this sleep early (the loop checks the time).
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, core::ptr::null_mut()) };
}

fn sleep_ns(ns: u64) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: ns as libc::c_long };
    // SAFETY: valid timespec.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_are_tids() {
        assert_eq!(sys::parse_tid(b"1234"), Some(1234));
        assert_eq!(sys::parse_tid(b"."), None);
        assert_eq!(sys::parse_tid(b".."), None);
        assert_eq!(sys::parse_tid(b"99999999999"), None);
    }

    #[test]
    fn lists_this_process_threads_and_reads_their_cpu_clocks() {
        let own = sys::gettid();
        let mut tids = Vec::new();
        assert!(sys::for_each_thread(|t| tids.push(t)));
        assert!(tids.contains(&own), "{tids:?}");
        // Spin for 20 ms of this thread's CPU time (not of wall time: on a loaded machine the
        // thread may get a fraction of a core).
        let until = sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) + 20_000_000;
        while sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) < until {}
        let cpu = sys::thread_cpu_ns(own).unwrap();
        assert!(cpu >= 20_000_000, "{cpu}");
        assert!(cpu.abs_diff(sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)) < 5_000_000);
    }
}
