//! Per-thread state and thread registration.
//!
//! Owns the thread-local [`ThreadState`] (constant-initialised and without destructor, so it
//! compiles to a plain `#[thread_local]` slot: in the preload library that is static TLS, and
//! reading it from a signal handler or a malloc hook never allocates) and the registration of
//! a thread: stack bounds, its CPU timer, and a pthread key whose destructor disarms the timer
//! when the thread exits.

use core::cell::Cell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

use crate::sys;
use crate::timer;
use crate::unwind::Bounds;

/// Not seen yet.
const UNKNOWN: u8 = 0;
/// Registered: precise bounds, timer armed (or process-wide timer).
const REGISTERED: u8 = 1;
/// The thread is exiting: never register it again.
const EXITED: u8 = 3;

/// What the agent keeps per thread (see [`crate::tls`] for where it lives). Fields read by the
/// signal handler are atomics (the handler interrupts the same thread); the allocation sampler's
/// fields are cells (never touched by the handler). Every field's initial value is zero
/// ([`ThreadState::ZERO`]): the thread-local storage it lives in is zero-filled.
#[repr(C, align(64))]
pub(crate) struct ThreadState {
    // The allocation hooks' fast path reads and writes this one only; it comes first, in the
    // cache line the hooks touch.
    /// Bytes left before the next allocation sample. An allocation that does not bring it to 0 or
    /// below is not sampled and costs a subtraction; 0 (never drawn) sends the next allocation to
    /// the slow path, which draws it.
    pub(crate) countdown: Cell<i64>,
    /// The countdown as last drawn: `drawn - countdown` bytes were allocated since.
    pub(crate) drawn: Cell<i64>,
    /// The agent start (`alloc::GENERATION`) the counts above belong to: counts left over from an
    /// earlier start in the same process are dropped, not added to a new run.
    pub(crate) generation: Cell<u32>,
    /// Inside an allocation hook's slow path (re-entrancy guard).
    pub(crate) in_hook: Cell<bool>,
    /// xorshift state (0 = not seeded).
    pub(crate) rng: Cell<u64>,
    status: AtomicU8,
    /// Bounds were set or looked up already (set or not, do not look again).
    bounds_tried: AtomicBool,
    tid: AtomicU32,
    lo: AtomicUsize,
    hi: AtomicUsize,
    /// Timer slot + 1 (0 = none).
    slot: AtomicU32,
    /// Samples taken on this thread (decides when to re-read the name).
    pub(crate) samples: AtomicU32,
    /// Last name written, NUL-padded.
    pub(crate) name: [AtomicU64; 2],
    /// The agent start (`alloc::GENERATION`, never 0 once started) into whose file
    /// [`ThreadState::name`] was written: each window of the continuous mode is a new file, which
    /// needs the name again.
    pub(crate) name_generation: AtomicU32,
    /// Frame pointer of the interposed allocator function this thread is inside (0: none).
    /// glibc's allocator has no frame pointers and uses `rbp` as a register, so a CPU sample
    /// taken inside it resumes the stack walk here instead of losing everything but the leaf.
    pub(crate) hook_fp: AtomicUsize,
    /// The thread's system time at its previous CPU sample, in nanoseconds plus one (0: none yet),
    /// for [`crate::format::KIND_KERNEL_TIME`].
    pub(crate) stime_ns: AtomicU64,
    /// Inside a timed wait or its recording (`contention`'s re-entrancy guard). Atomic, as are
    /// the next field: a signal handler may wait on a futex too.
    pub(crate) in_wait: AtomicBool,
    /// xorshift state of the contention sampler (0 = not seeded).
    pub(crate) wait_rng: AtomicU64,
    /// The thread's current label set ([`crate::labels`]; 0: none, [`crate::labels::KEEP`]: being
    /// changed), written by the thread itself and read by its signal handler and allocation hooks
    /// with one load.
    pub(crate) labels: AtomicU32,
    /// The thread's span id and trace id (high, low word) for the samples it is in (0: none);
    /// changed by the thread itself while `labels` reads [`crate::labels::KEEP`].
    pub(crate) trace: [AtomicU64; 3],
    /// The thread's slot in `labels::slots` plus one (0: none yet; `u32::MAX`: none free).
    pub(crate) label_slot: AtomicU32,
}

impl ThreadState {
    /// A thread the agent has not seen: all zeros, as thread-local storage starts.
    #[cfg_attr(
        all(target_arch = "x86_64", feature = "initial-exec-tls", not(test)),
        allow(dead_code, reason = "the `.tbss` bytes stand for it; the tests check they are the same")
    )]
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "a template: each thread's state starts as a copy"
    )]
    pub(crate) const ZERO: ThreadState = ThreadState {
        countdown: Cell::new(0),
        drawn: Cell::new(0),
        generation: Cell::new(0),
        in_hook: Cell::new(false),
        rng: Cell::new(0),
        status: AtomicU8::new(UNKNOWN),
        bounds_tried: AtomicBool::new(false),
        tid: AtomicU32::new(0),
        lo: AtomicUsize::new(0),
        hi: AtomicUsize::new(0),
        slot: AtomicU32::new(0),
        samples: AtomicU32::new(0),
        name: [AtomicU64::new(0), AtomicU64::new(0)],
        name_generation: AtomicU32::new(0),
        hook_fp: AtomicUsize::new(0),
        stime_ns: AtomicU64::new(0),
        in_wait: AtomicBool::new(false),
        wait_rng: AtomicU64::new(0),
        labels: AtomicU32::new(0),
        trace: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        label_slot: AtomicU32::new(0),
    };

    /// The thread's label set (0 while it is being changed: see [`ThreadState::trace`]).
    #[inline(always)]
    pub(crate) fn label_set(&self) -> u32 {
        match self.labels.load(Ordering::Relaxed) {
            crate::labels::KEEP => 0,
            set => set,
        }
    }

    /// The thread's label set and trace ids, as its signal handler reads them: consistent, since
    /// the thread changes them only while `labels` reads [`crate::labels::KEEP`] (then none).
    #[inline(always)]
    pub(crate) fn label_context(&self) -> (u32, [u64; 3]) {
        let set = self.labels.load(Ordering::Relaxed);
        if set == crate::labels::KEEP {
            return (0, [0; 3]);
        }
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        (set, [0, 1, 2].map(|i| self.trace[i].load(Ordering::Relaxed)))
    }

    /// Kernel thread id (cached).
    pub(crate) fn tid(&self) -> u32 {
        match self.tid.load(Ordering::Relaxed) {
            0 => {
                let t = sys::gettid();
                self.tid.store(t, Ordering::Relaxed);
                t
            }
            t => t,
        }
    }

    /// Stack bounds for a walk whose stack pointer is `sp`. Threads the agent did not
    /// register get theirs once from the `/proc/self/maps` entry containing `sp` (raw system
    /// calls only, so this is safe in the signal handler); `None` means leaf only.
    pub(crate) fn bounds(&self, sp: usize) -> Option<Bounds> {
        let hi = self.hi.load(Ordering::Relaxed);
        if hi != 0 {
            return Some(Bounds { lo: self.lo.load(Ordering::Relaxed), hi });
        }
        if self.bounds_tried.swap(true, Ordering::Relaxed) {
            return None;
        }
        let (lo, hi) = sys::mapping_containing(sp)?;
        self.set_bounds(lo, hi);
        Some(Bounds { lo, hi })
    }

    fn set_bounds(&self, lo: usize, hi: usize) {
        self.bounds_tried.store(true, Ordering::Relaxed);
        self.lo.store(lo, Ordering::Relaxed);
        self.hi.store(hi, Ordering::Relaxed);
    }

    /// Whether this thread may still be registered (not registered yet, not exiting).
    pub(crate) fn registrable(&self) -> bool {
        self.status.load(Ordering::Relaxed) == UNKNOWN
    }

    /// Marks a thread whose timer was armed from outside (it existed before `start()`) as
    /// registered, so hooks stop considering it.
    pub(crate) fn mark_registered(&self) {
        self.status.store(REGISTERED, Ordering::Relaxed);
    }
}

/// The calling thread's state (see [`crate::tls`]).
#[inline(always)]
pub(crate) fn current() -> &'static ThreadState {
    crate::tls::current()
}

/// Runs `f` with the calling thread's state.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    f(current())
}

/// Threads registered since the agent started.
pub(crate) static THREADS: AtomicU64 = AtomicU64::new(0);

static KEY_ONCE: Once = Once::new();
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

extern "C" fn on_thread_exit(_: *mut c_void) {
    with(|t| {
        crate::alloc::flush_pending(t);
        t.status.store(EXITED, Ordering::Relaxed);
        match t.label_slot.swap(u32::MAX, Ordering::Relaxed) {
            0 | u32::MAX => {}
            slot => crate::labels::slots::release(slot),
        }
        let slot = t.slot.swap(0, Ordering::Relaxed);
        let tid = t.tid.load(Ordering::Relaxed);
        if tid != 0 {
            timer::release_thread(slot.checked_sub(1), tid);
        }
    });
}

/// Creates the pthread key whose destructor disarms an exiting thread's timer.
pub(crate) fn init_exit_key() {
    KEY_ONCE.call_once(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: valid out-pointer and a destructor with the C ABI.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
            KEY.store(key as usize, Ordering::Relaxed);
        }
    });
}

/// Makes `on_thread_exit` run when the calling thread exits.
fn arm_exit_destructor() {
    let key = KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        // SAFETY: `key` was created by `init_exit_key`; any non-null value makes the
        // destructor run at thread exit (the value itself is never dereferenced).
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, core::ptr::dangling::<c_void>()) };
    }
}

/// Where to take the stack bounds of the calling thread from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundsSource {
    /// `pthread_getattr_np`: exact, but it allocates and takes the thread's lock, so only at
    /// thread start or from `start()`.
    Pthread,
    /// `/proc/self/maps` with raw system calls: for registration from inside a malloc hook.
    Maps,
}

fn pthread_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before use and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut c_void = core::ptr::null_mut();
        let mut size = 0usize;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0 && !addr.is_null()).then(|| (addr as usize, addr as usize + size))
    }
}

/// Registers the calling thread: stack bounds, CPU timer, exit destructor. Returns a warning
/// when the timer could not be armed. Does nothing for a thread already registered.
pub(crate) fn register_current(source: BoundsSource) -> Option<String> {
    with(|t| {
        if !t.registrable() {
            return None;
        }
        t.status.store(REGISTERED, Ordering::Relaxed);
        let sp = crate::unwind::stack_pointer();
        let bounds = match source {
            BoundsSource::Pthread => pthread_bounds(),
            BoundsSource::Maps => sys::mapping_containing(sp),
        };
        if let Some((lo, hi)) = bounds.filter(|&(lo, hi)| lo <= sp && sp < hi) {
            t.set_bounds(lo, hi);
        }
        THREADS.fetch_add(1, Ordering::Relaxed);
        let tid = t.tid();
        let warning = match timer::arm(tid, true) {
            Ok(Some(slot)) => {
                t.slot.store(slot + 1, Ordering::Relaxed);
                None
            }
            Ok(None) => None,
            Err(e) => Some(format!("thread {tid} is not sampled: {e}")),
        };
        // A thread born with SIGPROF blocked (a signal thread's children inherit its mask).
        let blocked = crate::signals::sigprof_blocked();
        crate::signals::set_blocks(tid, blocked);
        if blocked {
            timer_follows_mask(t, true);
        }
        arm_exit_destructor();
        warning
    })
}

/// Pauses the CPU timer of the calling thread `t` while it blocks `SIGPROF`, resumes it after.
pub(crate) fn timer_follows_mask(t: &ThreadState, blocked: bool) {
    timer::set_thread_paused(t.slot.load(Ordering::Relaxed).checked_sub(1), t.tid(), blocked);
}

/// Records an already-armed timer slot for the calling thread (the first thread, whose
/// timer chose the clock).
pub(crate) fn adopt_first(slot: Option<u32>) {
    with(|t| {
        t.status.store(REGISTERED, Ordering::Relaxed);
        if let Some((lo, hi)) = pthread_bounds() {
            t.set_bounds(lo, hi);
        }
        if let Some(s) = slot {
            t.slot.store(s + 1, Ordering::Relaxed);
        }
        THREADS.fetch_add(1, Ordering::Relaxed);
        arm_exit_destructor();
    });
}

/// Arms timers for the process's other threads (those running before `start()`; their
/// stack bounds are looked up lazily by the signal handler). Returns warnings.
pub(crate) fn register_existing(own_tid: u32) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut tids = Vec::new();
    if !sys::for_each_thread(|tid| tids.push(tid)) {
        warnings.push("cannot list /proc/self/task: threads started before the agent are not sampled".into());
        return warnings;
    }
    for tid in tids {
        if tid == own_tid {
            continue;
        }
        THREADS.fetch_add(1, Ordering::Relaxed);
        match timer::arm(tid, false) {
            Err(e) => warnings.push(format!("thread {tid} is not sampled: {e}")),
            // A thread that blocks SIGPROF (a signal thread) must not find one pending.
            Ok(slot) => {
                let blocked = crate::signals::blocks_per_proc(tid).unwrap_or(false);
                crate::signals::set_blocks(tid, blocked);
                if let (true, Some(slot)) = (blocked, slot) {
                    timer::set_paused(slot, true);
                }
            }
        }
    }
    warnings
}

/// Forgets the calling thread's registration (a forked child, or a restart of the agent).
pub(crate) fn reset_current() {
    with(|t| {
        t.status.store(UNKNOWN, Ordering::Relaxed);
        t.slot.store(0, Ordering::Relaxed);
        t.tid.store(0, Ordering::Relaxed);
        t.bounds_tried.store(false, Ordering::Relaxed);
        t.lo.store(0, Ordering::Relaxed);
        t.hi.store(0, Ordering::Relaxed);
        t.samples.store(0, Ordering::Relaxed);
        t.name[0].store(0, Ordering::Relaxed);
        t.name[1].store(0, Ordering::Relaxed);
        // Its thread id may have changed (a forked child): its labels' slot is found again by it.
        t.label_slot.store(0, Ordering::Relaxed);
        crate::labels::republish(t);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_of_an_unseen_thread_is_all_zeros() {
        // Thread-local storage starts zero-filled (`crate::tls`): zeroed memory must read as
        // `ZERO`, field by field.
        // SAFETY: every field is a cell or an atomic of an integer or `bool`, for which zero is valid.
        let zeroed: ThreadState = unsafe { core::mem::zeroed() };
        let fields = |t: &ThreadState| {
            [
                t.countdown.get() as u64,
                t.drawn.get() as u64,
                u64::from(t.generation.get()),
                u64::from(t.in_hook.get()),
                t.rng.get(),
                u64::from(t.status.load(Ordering::Relaxed)),
                u64::from(t.bounds_tried.load(Ordering::Relaxed)),
                u64::from(t.tid.load(Ordering::Relaxed)),
                t.lo.load(Ordering::Relaxed) as u64,
                t.hi.load(Ordering::Relaxed) as u64,
                u64::from(t.slot.load(Ordering::Relaxed)),
                u64::from(t.samples.load(Ordering::Relaxed)),
                t.name[0].load(Ordering::Relaxed),
                t.name[1].load(Ordering::Relaxed),
                u64::from(t.name_generation.load(Ordering::Relaxed)),
                t.hook_fp.load(Ordering::Relaxed) as u64,
                t.stime_ns.load(Ordering::Relaxed),
                u64::from(t.in_wait.load(Ordering::Relaxed)),
                t.wait_rng.load(Ordering::Relaxed),
                u64::from(t.labels.load(Ordering::Relaxed)),
                t.trace[0].load(Ordering::Relaxed),
                t.trace[1].load(Ordering::Relaxed),
                t.trace[2].load(Ordering::Relaxed),
                u64::from(t.label_slot.load(Ordering::Relaxed)),
            ]
        };
        let template = ThreadState::ZERO;
        assert_eq!(fields(&template), fields(&zeroed));
        assert!(fields(&zeroed).iter().all(|&v| v == 0));
        assert_eq!(core::mem::align_of::<ThreadState>(), 64);
    }
}
