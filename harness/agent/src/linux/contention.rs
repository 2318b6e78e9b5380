//! Contention: how long threads wait for locks, condition variables and futexes, per stack.
//!
//! Owns the sampling decision and the recording of one wait; the preload library owns the
//! interposed functions (`syscall` for `SYS_futex`, the blocking `pthread_*` calls) and times
//! only their slow path, through [`timed_wait`]. Sampling is by duration, as Go's block profile
//! does: with rate `R`, a wait of `d >= R` ns is recorded with weight 1; a shorter one with
//! probability `d / R` and weight `R / d`, so it adds `R / d` waits and `R` ns. Both estimates
//! (count and delay) are unbiased and the cost is bounded by about one record per `R` of waiting.
//!
//! The stack is the waiting thread's, taken after the wait returns (still inside the hook, so the
//! same frames) with the allocation hooks' walk; waits are aggregated per stack in the shared
//! off-heap stack table. Everything here is async-signal-safe (a handler may wait on a futex):
//! no allocation, and a thread already inside a timed wait or inside an allocation hook (whose
//! table lock it may hold) only forwards.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::format::MAX_FRAMES;
use crate::table::STORE;
use crate::thread::{self, ThreadState};
use crate::unwind::Caller;

/// The sampling rate in nanoseconds; 0 when waits are not recorded.
static RATE: AtomicU64 = AtomicU64::new(0);

/// Switches recording on (`rate_ns > 0`) or off.
pub(crate) fn set_rate(rate_ns: u64) {
    RATE.store(rate_ns, Ordering::SeqCst);
}

/// Whether waits are being recorded (else the hooks only forward).
#[inline]
pub fn contention_enabled() -> bool {
    RATE.load(Ordering::Relaxed) != 0
}

/// Whether `futex(2)`'s `op` argument (as `syscall` received it) blocks the caller: the wait
/// operations and the priority-inheritance lock operations. Wakes, requeues and `TRYLOCK_PI`
/// never wait.
#[inline]
pub fn is_futex_wait(op: libc::c_long) -> bool {
    const FUTEX_LOCK_PI2: libc::c_int = 13;
    let cmd = (op as libc::c_int) & libc::FUTEX_CMD_MASK;
    matches!(
        cmd,
        libc::FUTEX_WAIT
            | libc::FUTEX_WAIT_BITSET
            | libc::FUTEX_LOCK_PI
            | FUTEX_LOCK_PI2
            | libc::FUTEX_WAIT_REQUEUE_PI
    )
}

/// Runs `wait` (the blocking call of an interposed function that read `caller` in its body)
/// and, when waits are recorded, times it with `CLOCK_MONOTONIC` and records it as
/// the module doc says (Go's duration sampling).
///
/// `wait` runs in the interposer's own frame, outside the closures that reach the thread's
/// state: a thread blocked there has the interposer (`syscall`, `pthread_mutex_lock`…) as its
/// leaf in CPU and wall stacks, which name it as the C library's function it stands for, and
/// not a frame of the agent's own code.
#[inline(always)]
pub fn timed_wait<R>(caller: Caller, wait: impl FnOnce() -> R) -> R {
    if !contention_enabled() {
        return wait();
    }
    let timed = thread::with(|t| !t.in_hook.get() && !t.in_wait.swap(true, Ordering::Relaxed));
    if !timed {
        return wait();
    }
    let start = crate::sys::clock_ns(libc::CLOCK_MONOTONIC);
    let result = wait();
    let waited = crate::sys::clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(start);
    // The caller reads errno as the wait left it; the first stack walk of a thread may read
    // /proc.
    let saved = crate::sys::errno();
    thread::with(|t| {
        record_wait(t, waited, caller);
        t.in_wait.store(false, Ordering::Relaxed);
    });
    crate::sys::set_errno(saved);
    result
}

/// Samples and records one wait of `waited` ns. Never inlined: kept off the hooks' own code.
#[inline(never)]
fn record_wait(t: &ThreadState, waited: u64, caller: Caller) {
    let rate = RATE.load(Ordering::Relaxed);
    let Some((waits, ns)) = sample(waited, rate, || next_random(t)) else { return };
    let mut frames = [0u64; MAX_FRAMES];
    let n = crate::alloc::hook_stack(t, caller, &mut frames);
    STORE.record_wait(&frames[..n], t.label_set(), waits, ns);
}

/// Go's block-profile rule: `Some((waits, nanoseconds))` to add for a wait of `waited` ns at
/// rate `rate`, `None` when it is not sampled. `uniform` draws from `[0, 1)`.
pub(crate) fn sample(waited: u64, rate: u64, uniform: impl FnOnce() -> f64) -> Option<(f64, f64)> {
    if rate == 0 || waited == 0 {
        return None;
    }
    if waited >= rate {
        return Some((1.0, waited as f64));
    }
    let (d, r) = (waited as f64, rate as f64);
    (uniform() * r < d).then_some((r / d, r))
}

/// A uniform draw from `[0, 1)` from the thread's own xorshift.
fn next_random(t: &ThreadState) -> f64 {
    let mut x = t.wait_rng.load(Ordering::Relaxed);
    if x == 0 {
        x = (t.tid() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ crate::sys::clock_ns(libc::CLOCK_MONOTONIC)
            ^ (t as *const ThreadState as u64);
        x |= 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t.wait_rng.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_waits_count_once_with_their_duration() {
        assert_eq!(sample(25_000, 10_000, || 0.99), Some((1.0, 25_000.0)));
        assert_eq!(sample(10_000, 10_000, || 0.99), Some((1.0, 10_000.0)));
        assert_eq!(sample(5_000, 0, || 0.0), None);
        assert_eq!(sample(0, 10_000, || 0.0), None);
    }

    #[test]
    fn short_waits_are_sampled_without_bias() {
        // 1 µs and 4 µs waits at a 10 µs rate, 200,000 of each: the estimates of the count and of
        // the time waited must come out within 2% of the truth.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for waited in [1_000u64, 4_000] {
            let (mut waits, mut ns) = (0.0, 0.0);
            let n = 200_000;
            for _ in 0..n {
                if let Some((w, d)) = sample(waited, 10_000, &mut uniform) {
                    waits += w;
                    ns += d;
                }
            }
            assert!((waits / n as f64 - 1.0).abs() < 0.02, "{waited} ns: {waits} waits for {n}");
            let truth = (n * waited) as f64;
            assert!((ns / truth - 1.0).abs() < 0.02, "{waited} ns: {ns} ns for {truth}");
        }
    }

    #[test]
    fn only_blocking_futex_operations_are_waits() {
        let private = libc::FUTEX_PRIVATE_FLAG as libc::c_long;
        assert!(is_futex_wait(libc::FUTEX_WAIT as libc::c_long));
        assert!(is_futex_wait(libc::FUTEX_WAIT_BITSET as libc::c_long | private));
        assert!(is_futex_wait(
            libc::FUTEX_WAIT_BITSET as libc::c_long | private | libc::FUTEX_CLOCK_REALTIME as libc::c_long
        ));
        assert!(is_futex_wait(libc::FUTEX_LOCK_PI as libc::c_long | private));
        assert!(!is_futex_wait(libc::FUTEX_WAKE as libc::c_long | private));
        assert!(!is_futex_wait(libc::FUTEX_WAKE_BITSET as libc::c_long));
        assert!(!is_futex_wait(libc::FUTEX_TRYLOCK_PI as libc::c_long));
        assert!(!is_futex_wait(libc::FUTEX_UNLOCK_PI as libc::c_long));
        assert!(!is_futex_wait(libc::FUTEX_REQUEUE as libc::c_long));
    }
}
