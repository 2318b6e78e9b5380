//! Allocation sampling, shared by the preload library's `malloc` family and by
//! [`Allocator`], the `#[global_allocator]` wrapper.
//!
//! Owns the sampling decision (a per-thread byte countdown drawn from an exponential
//! distribution, so each allocation of `size` bytes is sampled with probability
//! `1 - exp(-size/mean)` and weighted by the inverse), the stack capture of an allocation
//! (frame-pointer walk from the hooked function's own frame) and the re-entrancy guard: while a
//! thread is inside a hook, allocations it makes (from `pthread_getattr_np`, `format!`...) go
//! straight through. It never calls the system allocator itself.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

pub use crate::format::AllocMode;
use crate::format::MAX_FRAMES;
use crate::table::STORE;
use crate::thread::{self, BoundsSource, ThreadState};
use crate::unwind;

/// The active mode ([`AllocMode`] as `u8`; `Off` when the agent is not running).
static MODE: AtomicU8 = AtomicU8::new(AllocMode::Off as u8);
/// Mean bytes between samples.
static MEAN: AtomicU64 = AtomicU64::new(512 * 1024);
/// Allocation calls seen.
pub(crate) static CALLS: AtomicU64 = AtomicU64::new(0);
/// Bytes those calls requested.
pub(crate) static BYTES: AtomicU64 = AtomicU64::new(0);

/// Calls a thread counts locally before adding them to [`CALLS`]/[`BYTES`] in sampled mode.
const PENDING_BATCH: u64 = 256;

/// Incremented at every agent start; see `ThreadState::pending_generation`.
pub(crate) static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Adds a thread's batched allocation counts to the process totals (thread exit, agent stop).
pub(crate) fn flush_pending(t: &ThreadState) {
    let (calls, bytes) = (t.pending_calls.replace(0), t.pending_bytes.replace(0));
    if calls > 0 && t.pending_generation.get() == GENERATION.load(Ordering::Relaxed) {
        CALLS.fetch_add(calls, Ordering::Relaxed);
        BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}
/// Whether CPU samples walk frame pointers, so that a sample inside glibc's allocator needs the
/// interposed function's frame ([`Hook::enter`]); with unwind tables it does not, and `free`
/// skips the thread lookup altogether for pointers that are not tracked.
static HOOK_FP: AtomicU8 = AtomicU8::new(0);

/// Sets [`HOOK_FP`] (at start).
pub(crate) fn set_hook_fp(on: bool) {
    HOOK_FP.store(on as u8, Ordering::Relaxed);
}

/// Whether the interposed functions must mark their frame with [`Hook::enter`].
#[inline]
pub fn wants_hook_fp() -> bool {
    HOOK_FP.load(Ordering::Relaxed) != 0
}

/// Whether `ptr` may be a tracked live allocation, answered without the thread's state: false for
/// almost every `free` (see the counting filter in `table.rs`).
#[inline]
pub fn may_be_tracked(ptr: *mut u8) -> bool {
    STORE.may_track(ptr as usize)
}

/// Whether threads first seen in a hook get a CPU timer (link-in mode).
static REGISTER_LAZILY: AtomicU8 = AtomicU8::new(0);

/// Switches recording on or off.
pub(crate) fn set_mode(mode: AllocMode, mean: u64, register_lazily: bool) {
    MEAN.store(mean.max(1), Ordering::Relaxed);
    REGISTER_LAZILY.store(register_lazily as u8, Ordering::Relaxed);
    MODE.store(mode as u8, Ordering::SeqCst);
}

fn mode() -> AllocMode {
    AllocMode::from_u32(MODE.load(Ordering::Relaxed) as u32)
}

/// A thread inside an allocation hook; while it lives, nested allocations are not recorded.
pub struct Hook<'a> {
    thread: &'a ThreadState,
}

impl Drop for Hook<'_> {
    fn drop(&mut self) {
        self.thread.in_hook.set(false);
    }
}

/// Runs `f` with a [`Hook`] if allocations are being recorded and the thread is not already
/// inside a hook; otherwise with `None` (just forward to the real allocator).
#[inline]
pub fn with_hook<R>(f: impl FnOnce(Option<&Hook<'_>>) -> R) -> R {
    if MODE.load(Ordering::Relaxed) == AllocMode::Off as u8 {
        return f(None);
    }
    thread::with(|t| {
        if t.in_hook.replace(true) {
            return f(None);
        }
        let hook = Hook { thread: t };
        f(Some(&hook))
    })
}

/// Whether allocations are being recorded at all (else the hooks only forward).
#[inline]
pub fn recording() -> bool {
    MODE.load(Ordering::Relaxed) != AllocMode::Off as u8
}

/// Whether a free must go through [`Hook::on_free`] (some pointers are tracked).
#[inline]
pub fn free_needs_hook() -> bool {
    MODE.load(Ordering::Relaxed) != AllocMode::Off as u8
}

impl Hook<'_> {
    /// Marks the thread as inside the interposed function `caller`, until [`Hook::leave`]: CPU
    /// samples taken meanwhile walk frame pointers from there when there are no unwind tables.
    #[inline]
    pub fn enter(&self, caller: unwind::Caller) {
        if wants_hook_fp() {
            self.thread.hook_fp.store(caller.fp, Ordering::Relaxed);
        }
    }

    /// Ends [`Hook::enter`].
    #[inline]
    pub fn leave(&self) {
        if wants_hook_fp() {
            self.thread.hook_fp.store(0, Ordering::Relaxed);
        }
    }

    /// Records an allocation of `size` bytes at `ptr`. `caller` is the hooked function (from
    /// [`unwind::caller`] in its body), so the first frame is the return address into its caller:
    /// the walk uses the unwind tables from here and drops the frames below `caller` (the agent's
    /// own), or without tables walks frame pointers from `caller`.
    ///
    /// The common case of the sampled mode, an allocation that is not sampled by a thread that is
    /// registered, is decided here, inline: a countdown and two counters, no call.
    #[inline(always)]
    pub fn on_alloc(&self, ptr: *mut u8, size: usize, caller: unwind::Caller) {
        let t = self.thread;
        let left = t.countdown.get();
        let calls = t.pending_calls.get() + 1;
        if MODE.load(Ordering::Relaxed) == AllocMode::Sampled as u8
            && left != i64::MIN
            && left > size as i64
            && calls < PENDING_BATCH
            && t.pending_generation.get() == GENERATION.load(Ordering::Relaxed)
            && !(REGISTER_LAZILY.load(Ordering::Relaxed) != 0 && t.registrable())
        {
            t.countdown.set(left - size as i64);
            t.pending_calls.set(calls);
            t.pending_bytes.set(t.pending_bytes.get() + size as u64);
            return;
        }
        self.record_alloc(ptr, size, caller);
    }

    /// Everything else of [`Hook::on_alloc`]: exact mode, sampled allocations and their stacks,
    /// batches of counts, lazy registration.
    ///
    /// Never inlined: the instructions engine names it to callgrind (`--toggle-collect`, see
    /// [`crate::env::CALLGRIND_UNCOUNTED`]) so that the agent's bookkeeping is not counted as the
    /// workload's instructions (it records every allocation, so it always comes here).
    #[inline(never)]
    fn record_alloc(&self, ptr: *mut u8, size: usize, caller: unwind::Caller) {
        let t = self.thread;
        if mode() == AllocMode::Exact {
            // Every call at once: exact totals must match the stacks.
            CALLS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size as u64, Ordering::Relaxed);
        } else {
            // Sampled: batched per thread, flushed every `PENDING_BATCH` calls, at thread exit
            // and at the end.
            let generation = GENERATION.load(Ordering::Relaxed);
            if t.pending_generation.replace(generation) != generation {
                t.pending_calls.set(0);
                t.pending_bytes.set(0);
            }
            let calls = t.pending_calls.get() + 1;
            let total = t.pending_bytes.get() + size as u64;
            if calls >= PENDING_BATCH {
                CALLS.fetch_add(calls, Ordering::Relaxed);
                BYTES.fetch_add(total, Ordering::Relaxed);
                t.pending_calls.set(0);
                t.pending_bytes.set(0);
            } else {
                t.pending_calls.set(calls);
                t.pending_bytes.set(total);
            }
        }
        if REGISTER_LAZILY.load(Ordering::Relaxed) != 0 && t.registrable() {
            if crate::timer::is_armed(t.tid()) {
                t.mark_registered();
            } else if let Some(w) = thread::register_current(BoundsSource::Maps) {
                crate::writer::write_message(1, &w);
            }
        }
        let (count, bytes) = match mode() {
            AllocMode::Off => return,
            AllocMode::Exact => (1.0, size as f64),
            AllocMode::Sampled => match sample(t, size) {
                Some(w) => w,
                None => return,
            },
        };
        let mut frames = [0u64; MAX_FRAMES];
        let n = hook_stack(t, caller, &mut frames);
        STORE.record(&frames[..n], count, bytes, ptr as usize);
    }

    /// Forgets `ptr` (about to be freed or reallocated).
    #[inline]
    pub fn on_free(&self, ptr: *mut u8) {
        untrack(ptr as usize);
    }
}

/// The stack of the caller of an interposed function (an allocation or wait hook) that read
/// `caller` in its body: the unwind tables from here, dropping the frames below `caller` (the
/// agent's own), or without tables (or when they fail) frame pointers from `caller`. Returns the
/// number of return addresses written, innermost first; 0 when the thread's stack is unknown.
pub(crate) fn hook_stack(t: &ThreadState, caller: unwind::Caller, frames: &mut [u64; MAX_FRAMES]) -> usize {
    let (pc, sp, fp) = unwind::registers();
    match t.bounds(sp) {
        Some(bounds) => {
            let start = unwind::Start { pc, sp, fp, bounds, skip_below: caller.sp };
            match unwind::walk_tables(start, frames) {
                Some(n) => n,
                None => unwind::walk(caller.fp, sp, bounds, frames),
            }
        }
        None => 0,
    }
}

/// Forgets `ptr` (frees are not recorded, only untracked), inside the hooks' re-entrancy guard.
///
/// A free from a signal handler that interrupted this thread inside a hook or inside another
/// free's untracking (either may hold the allocation table's lock) leaves `ptr` tracked rather
/// than waiting for a lock that its own thread holds: the in-use figures keep a few bytes too
/// many, the process does not hang.
#[inline]
pub fn forget(ptr: *mut u8) {
    with_hook(|hook| {
        if let Some(h) = hook {
            h.on_free(ptr);
        }
    });
}

/// Drops `ptr` from the live-allocation table. Never inlined, for the same reason as
/// `Hook::record_alloc`.
#[inline(never)]
fn untrack(ptr: usize) {
    STORE.forget(ptr);
}

/// Decides whether this allocation is sampled; returns its (count, bytes) weights if so.
fn sample(t: &ThreadState, size: usize) -> Option<(f64, f64)> {
    let mean = MEAN.load(Ordering::Relaxed) as f64;
    let mut left = t.countdown.get();
    if left == i64::MIN {
        left = draw(t, mean);
    }
    left -= size as i64;
    if left > 0 {
        t.countdown.set(left);
        return None;
    }
    t.countdown.set(draw(t, mean));
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
        with_hook(|hook| {
            // SAFETY: forwarded with the caller's layout (the caller upholds `alloc`'s contract).
            let p = unsafe { self.inner.alloc(layout) };
            if let (Some(h), false) = (hook, p.is_null()) {
                h.on_alloc(p, layout.size(), fp);
            }
            p
        })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let fp = unwind::caller();
        with_hook(|hook| {
            // SAFETY: as in `alloc`.
            let p = unsafe { self.inner.alloc_zeroed(layout) };
            if let (Some(h), false) = (hook, p.is_null()) {
                h.on_alloc(p, layout.size(), fp);
            }
            p
        })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if free_needs_hook() {
            forget(ptr);
        }
        // SAFETY: `ptr` was allocated by `inner` with `layout` (caller's contract).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let fp = unwind::caller();
        with_hook(|hook| {
            if hook.is_some() {
                // Before the call: once freed, `ptr` may be handed to another thread. (Inside the
                // hook, so not through `forget`, which a hook in progress turns off.)
                untrack(ptr as usize);
            }
            // SAFETY: forwarded with the caller's arguments.
            let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
            if let (Some(h), false) = (hook, p.is_null()) {
                h.on_alloc(p, new_size, fp);
            }
            p
        })
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
