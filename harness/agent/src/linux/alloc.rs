//! Allocation sampling, shared by the preload library's `malloc` family and by
//! [`Allocator`], the `#[global_allocator]` wrapper.
//!
//! Owns the sampling decision (a per-thread byte countdown drawn from an exponential
//! distribution, so each allocation of `size` bytes is sampled with probability
//! `1 - exp(-size/mean)` and weighted by the inverse), the stack capture of an allocation
//! (the unwind tables, or frame pointers, from the hooked function's own frame) and the
//! re-entrancy guard: while a thread is inside a hook's slow path, allocations it makes (from
//! `pthread_getattr_np`, `format!`...) go straight through. It never calls the system allocator
//! itself.
//!
//! The hooks' fast path is the point of the design: one load of [`HOOKS`] and, in the sampled
//! mode, one word of the thread's state read through initial-exec TLS (see `tls`): an
//! allocation that is not sampled costs a subtraction whose flags are the test. The sampled mode
//! counts bytes (what the countdown moved by), not calls: its samples carry the estimated counts.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub use crate::format::AllocMode;
use crate::format::MAX_FRAMES;
use crate::table::STORE;
use crate::thread::{self, BoundsSource, ThreadState};
use crate::unwind;

/// What the allocation hooks do, as bits ([`SAMPLED`], [`EXACT`], [`HOOK_FP`]), read with one
/// load at the top of every hook. 0: forward, nothing else.
static HOOKS: AtomicU8 = AtomicU8::new(0);
/// Allocations are sampled (the countdown decides).
pub const SAMPLED: u8 = 1;
/// Every allocation is recorded.
pub const EXACT: u8 = 2;
/// CPU samples walk frame pointers: a hook marks its frame while glibc's allocator, which has
/// none, runs ([`enter`], [`leave`]).
pub const HOOK_FP: u8 = 4;
/// Mean bytes between samples.
static MEAN: AtomicU64 = AtomicU64::new(512 * 1024);
/// Allocation calls the exact mode recorded (the sampled mode does not count calls: its fast
/// path only moves a byte countdown, and its samples carry the estimated counts).
pub(crate) static CALLS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by the allocation calls seen (all modes but off).
pub(crate) static BYTES: AtomicU64 = AtomicU64::new(0);

/// Incremented at every agent start (so never 0 once started); see `ThreadState::generation`.
pub(crate) static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Adds the bytes a thread allocated since its last draw (what its countdown moved by) to the
/// process totals (at each sample, thread exit, agent stop).
pub(crate) fn flush_pending(t: &ThreadState) {
    // Saturating: an absurd request (`realloc(p, isize::MAX)`, which fails) moves the countdown by
    // nearly the whole range of an `i64`.
    let bytes =
        if t.drawn.get() > 0 { t.drawn.get().saturating_sub(t.countdown.get()).max(0) as u64 } else { 0 };
    t.drawn.set(t.countdown.get());
    if bytes > 0 && t.generation.get() == GENERATION.load(Ordering::Relaxed) {
        BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The hooks' bits ([`SAMPLED`], [`EXACT`], [`HOOK_FP`]); 0 when allocations are not recorded.
#[inline(always)]
pub fn hooks() -> u8 {
    HOOKS.load(Ordering::Relaxed)
}

/// A copy of [`HOOKS`] in the low bits ([`HOOKS_MASK`]) of a byte of the preload library's (see
/// [`mirror_hooks`]); null until it registers one.
static MIRROR: AtomicPtr<AtomicU8> = AtomicPtr::new(core::ptr::null_mut());

/// The bits of the hooks' mode ([`hooks`]: [`SAMPLED`], [`EXACT`], [`HOOK_FP`]) in a byte that
/// holds more.
pub const HOOKS_MASK: u8 = SAMPLED | EXACT | HOOK_FP;

/// Where [`skip_sampled`]'s one field lies in the thread state, for the preload library's
/// assembly entry points (which reach the state by [`crate::thread_state_symbol`]): the bytes
/// left before the next sample (`i64`).
pub const COUNTDOWN_AT: usize = core::mem::offset_of!(ThreadState, countdown);

/// Keeps a copy of the hooks' bits in the low bits ([`HOOKS_MASK`]) of `byte`, a static of the
/// preload library, whose hooks then read their mode and their own flags with one load of their
/// own static instead of going through the global offset table to this crate's.
pub fn mirror_hooks(byte: &'static AtomicU8) {
    byte.fetch_and(!HOOKS_MASK, Ordering::SeqCst);
    byte.fetch_or(HOOKS.load(Ordering::SeqCst), Ordering::SeqCst);
    MIRROR.store(byte as *const AtomicU8 as *mut AtomicU8, Ordering::Release);
}

/// Marks the calling thread as inside the interposed function `caller` when `hooks` has
/// [`HOOK_FP`], until [`leave`]: CPU samples taken meanwhile walk frame pointers from there.
#[inline(always)]
pub fn enter(hooks: u8, caller: unwind::Caller) {
    if hooks & HOOK_FP != 0 {
        thread::current().hook_fp.store(caller.fp, Ordering::Relaxed);
    }
}

/// Ends [`enter`].
#[inline(always)]
pub fn leave(hooks: u8) {
    if hooks & HOOK_FP != 0 {
        thread::current().hook_fp.store(0, Ordering::Relaxed);
    }
}

/// Whether `ptr` may be a tracked live allocation, answered without the thread's state: false for
/// almost every `free` (see the counting filter in `table.rs`).
#[inline(always)]
pub fn may_be_tracked(ptr: *mut u8) -> bool {
    STORE.may_track(ptr as usize)
}

/// Whether threads first seen in a hook get a CPU timer (link-in mode).
static REGISTER_LAZILY: AtomicU8 = AtomicU8::new(0);

/// Switches recording on or off; `hook_fp`: CPU samples walk frame pointers (see [`HOOK_FP`]).
pub(crate) fn set_mode(mode: AllocMode, mean: u64, register_lazily: bool, hook_fp: bool) {
    MEAN.store(mean.max(1), Ordering::Relaxed);
    REGISTER_LAZILY.store(register_lazily as u8, Ordering::Relaxed);
    let bits = match mode {
        AllocMode::Off => 0,
        AllocMode::Sampled => SAMPLED,
        AllocMode::Exact => EXACT,
    };
    let fp = if hook_fp && bits != 0 { HOOK_FP } else { 0 };
    HOOKS.store(bits | fp, Ordering::SeqCst);
    // SAFETY: a registered mirror is a `'static` byte (see `mirror_hooks`).
    if let Some(m) = unsafe { MIRROR.load(Ordering::Acquire).as_ref() } {
        m.fetch_and(!HOOKS_MASK, Ordering::SeqCst);
        m.fetch_or(bits | fp, Ordering::SeqCst);
    }
}

/// The fast path of a hook in the sampled mode, before the allocation: true when an allocation
/// of `size` bytes is not sampled, in which case it is already counted and the hook only
/// forwards (as a tail call, so that glibc's allocator runs with the hook's caller as its caller:
/// the stack reads as without the agent). False: the hook must allocate, then call [`on_alloc`].
/// An allocation that then fails was counted all the same: the totals are estimates.
#[inline(always)]
pub fn skip_sampled(hooks: u8, size: usize) -> bool {
    if hooks != SAMPLED {
        return false;
    }
    let t = thread::current();
    let left = t.countdown.get().wrapping_sub(size as i64);
    if left <= 0 {
        return false;
    }
    t.countdown.set(left);
    true
}

/// Records an allocation of `size` bytes at `ptr` (not null) made by the caller of the hook
/// `caller` (from [`unwind::caller`] in its body); `hooks` is what [`hooks`] returned when the
/// hook began (not 0).
///
/// The common case, an allocation that is not sampled, is decided here inline: the countdown
/// moves and the call is counted, one cache line of the thread's state, no call.
#[inline(always)]
pub fn on_alloc(hooks: u8, ptr: *mut u8, size: usize, caller: unwind::Caller) {
    let t = thread::current();
    let left = t.countdown.get().wrapping_sub(size as i64);
    if hooks & SAMPLED != 0 && left > 0 {
        t.countdown.set(left);
        return;
    }
    if let Some(d) = decide(hooks, size) {
        record(d, ptr, caller);
    }
}

/// An allocation that is to be recorded, with the weights it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    count: f64,
    bytes: f64,
    /// Recorded by the exact mode: counted in the totals when its stack is stored.
    exact: bool,
}

/// Whether an allocation of `size` bytes that the fast path ([`skip_sampled`]) did not skip is
/// recorded, decided before it is made (the preload hooks then allocate it with a header, see
/// the preload library's `header.rs`): the exact mode records everything, the sampled mode when
/// the countdown reaches 0 (it also draws the countdown the first time and adds the thread's
/// counts to the totals at each sample). `None` for an allocation the agent makes itself while
/// recording another (registration, a first stack walk).
///
/// Never inlined: the instructions engine names it to callgrind (`--toggle-collect`, see
/// [`crate::env::CALLGRIND_UNCOUNTED`]) so that the agent's bookkeeping is not counted as the
/// workload's instructions (it records every allocation, so it always comes here).
#[inline(never)]
pub fn decide(hooks: u8, size: usize) -> Option<Recorded> {
    let t = thread::current();
    // An allocation the agent makes while in here or in `record` is its own, not the program's.
    if hooks == 0 || t.in_hook.replace(true) {
        return None;
    }
    let generation = GENERATION.load(Ordering::Relaxed);
    if t.generation.replace(generation) != generation {
        // Counts and draws of an earlier run of the agent are not this run's.
        t.countdown.set(0);
        t.drawn.set(0);
    }
    if REGISTER_LAZILY.load(Ordering::Relaxed) != 0 && t.registrable() {
        if crate::timer::is_armed(t.tid()) {
            t.mark_registered();
        } else if let Some(w) = thread::register_current(BoundsSource::Maps) {
            crate::writer::write_message(1, &w);
        }
    }
    let exact = hooks & EXACT != 0;
    let weights = if exact {
        // Counted in the totals by `record`, with its stack: exact totals must match the stacks.
        Some((1.0, size as f64))
    } else if hooks & SAMPLED != 0 {
        sample(t, size)
    } else {
        None
    };
    t.in_hook.set(false);
    weights.map(|(count, bytes)| Recorded { count, bytes, exact })
}

/// Records the allocation [`decide`] chose, made at `ptr` (not null) by the caller of the hook
/// `caller` (from [`unwind::caller`] in its body): its stack, its weights, and `ptr` as live.
/// Never inlined, for the same reason as [`decide`].
#[inline(never)]
pub fn record(recorded: Recorded, ptr: *mut u8, caller: unwind::Caller) {
    let t = thread::current();
    if t.in_hook.replace(true) {
        return;
    }
    RECORDING.fetch_add(1, Ordering::SeqCst);
    // Allocations turned off since `decide` (the agent is stopping): neither stored nor counted,
    // so that the totals the stop writes match its stacks (see `quiesce`).
    if HOOKS.load(Ordering::SeqCst) != 0 {
        let mut frames = [0u64; MAX_FRAMES];
        let n = hook_stack(t, caller, &mut frames);
        STORE.record(&frames[..n], t.label_set(), recorded.count, recorded.bytes, ptr as usize);
        if recorded.exact {
            CALLS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(recorded.bytes as u64, Ordering::Relaxed);
        }
    }
    RECORDING.fetch_sub(1, Ordering::SeqCst);
    t.in_hook.set(false);
}

/// [`record`] calls under way, on any thread.
static RECORDING: AtomicUsize = AtomicUsize::new(0);

/// Waits (bounded, [`crate::sys::wait_until_idle`]) until no [`record`] is under way. Called once
/// allocations are turned off: a `record` that began before stores its stack and counts it before
/// this returns, one that begins after sees allocations off and does neither, so the stacks
/// written next and the exact mode's totals agree (an allocation on another thread while the
/// agent stops). Async-signal-safe.
pub(crate) fn quiesce() {
    crate::sys::wait_until_idle(&RECORDING);
}

/// The stack of the caller of an interposed function (an allocation or wait hook) that read
/// `caller` in its body: the unwind tables from the hook's return (see [`from_hook_frame`]) or
/// from here, dropping the frames below `caller` (the agent's own), or without tables (or when
/// they fail) frame pointers from `caller`. Returns the number of return addresses written,
/// innermost first; 0 when the thread's stack is unknown.
pub(crate) fn hook_stack(t: &ThreadState, caller: unwind::Caller, frames: &mut [u64; MAX_FRAMES]) -> usize {
    let (pc, sp, fp) = unwind::registers();
    let Some(bounds) = t.bounds(sp) else { return 0 };
    if let Some(n) = from_hook_frame(caller, sp, bounds, frames) {
        return n;
    }
    let start = unwind::Start { pc, sp, fp, bounds, skip_below: caller.sp, at_return: false };
    match unwind::walk_tables(start, frames) {
        Some(n) => n,
        None => unwind::walk(caller.fp, sp, bounds, frames),
    }
}

/// In the preload library, which `build.rs` builds with frame pointers in every function (and
/// `--cfg contprof_frame_pointers` to say so), the hook's frame pointer is its own frame: its
/// return address into the program at `fp + 8`, the caller's frame pointer at `fp`, the caller's
/// stack pointer `fp + 16` (x86-64). The table walk then starts in the program, as if the hook
/// had returned: the agent's own frames (the hook's, `record`'s) are neither unwound nor put in
/// the walk's rule cache (2 of the 10 frames of each stack the exact mode walks in
/// `alloc_pairs`). Elsewhere (the linked agent, whose allocator hook is inlined into the
/// program's code; a build without frame pointers) `None`: the walk starts here.
#[inline(always)]
fn from_hook_frame(
    caller: unwind::Caller,
    sp: usize,
    bounds: unwind::Bounds,
    frames: &mut [u64; MAX_FRAMES],
) -> Option<usize> {
    #[cfg(all(contprof_frame_pointers, target_arch = "x86_64"))]
    {
        let fp = caller.fp;
        if fp.is_multiple_of(8) && fp >= sp && fp.checked_add(16).is_some_and(|end| end <= bounds.hi) {
            // SAFETY: `[fp, fp + 16)` lies in the live part of this thread's stack (checked
            // above): the hook's frame record, below this function's caller's frames.
            let (saved, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
            frames[0] = ret as u64;
            let start =
                unwind::Start { pc: ret, sp: fp + 16, fp: saved, bounds, skip_below: 0, at_return: true };
            return unwind::walk_tables(start, &mut frames[1..]).map(|n| n + 1);
        }
        None
    }
    #[cfg(not(all(contprof_frame_pointers, target_arch = "x86_64")))]
    {
        let _ = (caller, sp, bounds, frames);
        None
    }
}

/// Forgets `ptr`, which is about to be freed or reallocated (before the call: afterwards another
/// thread may be handed the same address). Call when [`may_be_tracked`] said it may be.
///
/// A free from a signal handler that interrupted this thread inside a hook or inside another
/// free's untracking (either may hold the allocation table's lock) leaves `ptr` tracked rather
/// than waiting for a lock that its own thread holds: the in-use figures keep a few bytes too
/// many, the process does not hang.
#[inline(never)]
pub fn forget(ptr: *mut u8) {
    let t = thread::current();
    if t.in_hook.replace(true) {
        return;
    }
    untrack(ptr as usize);
    t.in_hook.set(false);
}

/// Drops `ptr` from the live-allocation table. Never inlined, for the same reason as
/// [`decide`] (and [`forget`], whose guard is the workload's: a free of a tracked pointer stays
/// counted, the bookkeeping does not).
#[inline(never)]
fn untrack(ptr: usize) {
    STORE.forget(ptr);
}

/// Decides whether this allocation of `size` bytes is sampled (the countdown reaches 0); returns
/// its (count, bytes) weights if so. A sample also adds the thread's counts to the totals.
fn sample(t: &ThreadState, size: usize) -> Option<(f64, f64)> {
    let mean = MEAN.load(Ordering::Relaxed) as f64;
    if t.drawn.get() <= 0 {
        let d = draw(t, mean);
        t.drawn.set(d);
        t.countdown.set(d);
    }
    let left = t.countdown.get().saturating_sub(size.min(i64::MAX as usize) as i64);
    t.countdown.set(left);
    if left > 0 {
        return None;
    }
    flush_pending(t);
    let d = draw(t, mean);
    t.drawn.set(d);
    t.countdown.set(d);
    Some(weights(size, mean))
}

/// Unbiased weights of one sampled allocation: it stands for `1 / P(sampled)` allocations.
pub(crate) fn weights(size: usize, mean: f64) -> (f64, f64) {
    let p = -(-(size as f64) / mean).exp_m1();
    if p <= 0.0 { (0.0, 0.0) } else { (1.0 / p, size as f64 / p) }
}

/// Draws bytes until the next sample: exponential with mean `mean`.
fn draw(t: &ThreadState, mean: f64) -> i64 {
    let mut x = t.rng.get();
    if x == 0 {
        x = (t.tid() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ crate::sys::clock_ns(libc::CLOCK_MONOTONIC)
            ^ (t as *const ThreadState as u64);
        x |= 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t.rng.set(x);
    let u = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
    ((-u.ln() * mean) as i64).max(1)
}

/// A `#[global_allocator]` wrapper that samples the allocations of `A` with the agent's
/// sampler, for programs that link `contprof` in instead of preloading it (and for programs
/// whose allocator, such as jemalloc or mimalloc, the preload library cannot see).
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: contprof::Allocator<std::alloc::System> = contprof::Allocator::new(std::alloc::System);
/// ```
///
/// Until [`crate::start`] runs (and after the guard stops) it only forwards.
#[derive(Debug, Default)]
pub struct Allocator<A> {
    inner: A,
}

impl<A> Allocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments and returns its result
// unchanged; the recording on the side never touches the returned memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Allocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let fp = unwind::caller();
        // SAFETY: forwarded with the caller's layout (the caller upholds `alloc`'s contract).
        let p = unsafe { self.inner.alloc(layout) };
        let h = hooks();
        if h != 0 && !p.is_null() {
            on_alloc(h, p, layout.size(), fp);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let fp = unwind::caller();
        // SAFETY: as in `alloc`.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        let h = hooks();
        if h != 0 && !p.is_null() {
            on_alloc(h, p, layout.size(), fp);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if may_be_tracked(ptr) {
            forget(ptr);
        }
        // SAFETY: `ptr` was allocated by `inner` with `layout` (caller's contract).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let fp = unwind::caller();
        // Before the call: once freed, `ptr` may be handed to another thread.
        if may_be_tracked(ptr) {
            forget(ptr);
        }
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        let h = hooks();
        if h != 0 && !p.is_null() {
            on_alloc(h, p, new_size, fp);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_undo_the_sampling_probability() {
        let mean = 512.0 * 1024.0;
        let (c, b) = weights(1 << 30, mean);
        assert!((c - 1.0).abs() < 1e-9 && (b - (1u64 << 30) as f64).abs() < 1.0);
        let (c, b) = weights(64, mean);
        assert!((c - mean / 64.0).abs() / c < 1e-3, "{c}");
        assert!((b - mean).abs() / mean < 1e-3, "{b}");
        assert_eq!(weights(0, mean), (0.0, 0.0));
    }
}
