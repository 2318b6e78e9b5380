//! The exported slow paths of locking, timed for the contention profile: `syscall` (Rust's std
//! `Mutex`, `RwLock`, `Condvar`, `thread::park` and parking_lot call
//! `syscall(SYS_futex, FUTEX_WAIT...)` when they must block), and for C code
//! `pthread_mutex_lock`/`timedlock`/`clocklock`, `pthread_rwlock_rdlock`/`wrlock` and their
//! timed and clock variants, `pthread_cond_wait`/`timedwait`/`clockwait`, and
//! `sem_wait`/`timedwait`/`clockwait`.
//!
//! Only a wait is timed (`contprof::preload::timed_wait`): a futex call that blocks (an
//! uncontended std lock never makes one), a pthread lock whose `trylock` failed, a semaphore
//! whose `sem_trywait` failed, a condition wait. With contention recording off each function
//! forwards at the cost of one atomic load.
//!
//! How calls are forwarded, chosen to be safe before anything is initialised and in signal
//! handlers:
//! - `syscall` executes the system call itself, as glibc's wrapper does (six argument registers
//!   read as `c_long`s, the `syscall` / `svc` instruction, `-4095..-1` turned into `errno`).
//!   glibc exports no internal alias for it, and resolving it with `dlsym` is neither
//!   async-signal-safe nor possible before this library's constructor, while the agent's own
//!   signal handler (and other libraries' constructors) call `syscall`.
//! - the `trylock` calls are glibc's own (not interposed, so linked as usual).
//! - the blocking `pthread_*` functions are resolved with `dlsym(RTLD_NEXT)` (the condition
//!   functions with `dlvsym` at their current version, `GLIBC_2.3.2` on x86-64, never the
//!   pre-2003 compatibility one) in the constructor, or on first use if a library's constructor
//!   locks before ours runs; none of them may be called from a signal handler, and `dlsym` takes
//!   only the loader's internal locks, never these functions. glibc's `__pthread_mutex_lock` &
//!   co. are no alternative: since glibc 2.34 they are compatibility symbols that neither the
//!   linker nor the dynamic loader binds new references to.

use core::ffi::{CStr, c_int, c_long};

use contprof::preload::{caller, contention_enabled, is_futex_wait, timed_wait};

use crate::next::Next;

unsafe extern "C" {
    /// glibc's (the `libc` crate does not declare it on Linux).
    fn pthread_testcancel();
}

/// The current version of the `pthread_cond_*` symbols.
#[cfg(target_arch = "x86_64")]
const COND_VERSION: Option<&CStr> = Some(c"GLIBC_2.3.2");
#[cfg(target_arch = "aarch64")]
const COND_VERSION: Option<&CStr> = Some(c"GLIBC_2.17");

static MUTEX_LOCK: Next = Next::new(c"pthread_mutex_lock");
static MUTEX_TIMEDLOCK: Next = Next::new(c"pthread_mutex_timedlock");
static MUTEX_CLOCKLOCK: Next = Next::new(c"pthread_mutex_clocklock");
static RWLOCK_RDLOCK: Next = Next::new(c"pthread_rwlock_rdlock");
static RWLOCK_WRLOCK: Next = Next::new(c"pthread_rwlock_wrlock");
static RWLOCK_TIMEDRDLOCK: Next = Next::new(c"pthread_rwlock_timedrdlock");
static RWLOCK_TIMEDWRLOCK: Next = Next::new(c"pthread_rwlock_timedwrlock");
static RWLOCK_CLOCKRDLOCK: Next = Next::new(c"pthread_rwlock_clockrdlock");
static RWLOCK_CLOCKWRLOCK: Next = Next::new(c"pthread_rwlock_clockwrlock");
static COND_WAIT: Next = Next::versioned(c"pthread_cond_wait", COND_VERSION);
static COND_TIMEDWAIT: Next = Next::versioned(c"pthread_cond_timedwait", COND_VERSION);
static COND_CLOCKWAIT: Next = Next::new(c"pthread_cond_clockwait");
static SEM_WAIT: Next = Next::new(c"sem_wait");
static SEM_TIMEDWAIT: Next = Next::new(c"sem_timedwait");
static SEM_CLOCKWAIT: Next = Next::new(c"sem_clockwait");

/// Resolves the interposed `pthread_*` and `sem_*` functions (from the constructor).
pub(crate) fn resolve_real_pthread() {
    crate::next::resolve_all(&[
        &MUTEX_LOCK,
        &MUTEX_TIMEDLOCK,
        &MUTEX_CLOCKLOCK,
        &RWLOCK_RDLOCK,
        &RWLOCK_WRLOCK,
        &RWLOCK_TIMEDRDLOCK,
        &RWLOCK_TIMEDWRLOCK,
        &RWLOCK_CLOCKRDLOCK,
        &RWLOCK_CLOCKWRLOCK,
        &COND_WAIT,
        &COND_TIMEDWAIT,
        &COND_CLOCKWAIT,
        &SEM_WAIT,
        &SEM_TIMEDWAIT,
        &SEM_CLOCKWAIT,
    ]);
}

type Lock<T> = unsafe extern "C" fn(*mut T) -> c_int;
type TimedLock<T> = unsafe extern "C" fn(*mut T, *const libc::timespec) -> c_int;
type ClockLock<T> = unsafe extern "C" fn(*mut T, libc::clockid_t, *const libc::timespec) -> c_int;
type CondWait = unsafe extern "C" fn(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t) -> c_int;
type CondTimedWait = unsafe extern "C" fn(
    *mut libc::pthread_cond_t,
    *mut libc::pthread_mutex_t,
    *const libc::timespec,
) -> c_int;
type CondClockWait = unsafe extern "C" fn(
    *mut libc::pthread_cond_t,
    *mut libc::pthread_mutex_t,
    libc::clockid_t,
    *const libc::timespec,
) -> c_int;

/// Locks `lock` with `real` (glibc's blocking lock call, forwarded): at once when waits are not
/// recorded, else after `try_lock` failed with `EBUSY`, timed. Every other result of
/// `try_lock` is what the blocking call would have returned too (0, `EOWNERDEAD` of a robust
/// mutex, `EAGAIN` of a full recursive count, `EINVAL`), so it is returned as it is.
///
/// # Safety
/// `lock` as the lock function's contract requires; `try_lock` is its non-blocking twin.
#[inline(always)]
unsafe fn lock_slow_path<T>(
    lock: *mut T,
    try_lock: Lock<T>,
    caller: contprof::preload::Caller,
    real: impl FnOnce() -> c_int,
) -> c_int {
    if !contention_enabled() {
        return real();
    }
    // SAFETY: forwarded.
    let rc = unsafe { try_lock(lock) };
    if rc != libc::EBUSY {
        return rc;
    }
    timed_wait(caller, real)
}

/// Whether glibc waits on `clock` in its `*_clock*` functions (it returns `EINVAL` for any other,
/// before trying the lock: such a call is forwarded as it is, so that it fails as it would).
fn timed_clock(clock: libc::clockid_t) -> bool {
    clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_MONOTONIC
}

/// Waits for the semaphore `sem` with `real` (glibc's blocking call, forwarded): at once when
/// waits are not recorded, else after `sem_trywait` failed with `EAGAIN`, timed. `sem_trywait`
/// failing otherwise (`EINVAL`) is what the blocking call would have said; a try that failed with
/// `EAGAIN` leaves `errno` as it found it.
///
/// `cancel_point`: the function acts on a pending cancellation even when the semaphore is free
/// (glibc's `sem_wait` and `sem_timedwait` test for it first, as POSIX requires of them;
/// `sem_clockwait` does not in glibc 2.36), so the try is preceded by the same test.
///
/// # Safety
/// `sem` as `sem_wait(3)` requires.
#[inline(always)]
unsafe fn sem_slow_path(
    sem: *mut libc::sem_t,
    caller: contprof::preload::Caller,
    cancel_point: bool,
    real: impl FnOnce() -> c_int,
) -> c_int {
    if !contention_enabled() {
        return real();
    }
    if cancel_point {
        // SAFETY: acts on a pending cancellation as glibc's function would, at the same point.
        unsafe { pthread_testcancel() };
    }
    // SAFETY: `__errno_location` returns this thread's errno.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    // SAFETY: the caller's semaphore.
    if unsafe { libc::sem_trywait(sem) } == 0 {
        return 0;
    }
    // SAFETY: as above.
    if unsafe { *errno } != libc::EAGAIN {
        return -1;
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
    timed_wait(caller, real)
}

/// The system call `n` with six arguments, as glibc's `syscall()` makes it.
///
/// # Safety
/// The contract of the system call.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn raw_syscall(n: c_long, a: [c_long; 6]) -> c_long {
    let ret: c_long;
    // SAFETY: the kernel's system-call convention; `syscall` clobbers rcx and r11. Memory may be
    // read and written (no `nomem`), as the call's arguments say.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        )
    };
    errno_result(ret)
}

/// The system call `n` with six arguments, as glibc's `syscall()` makes it.
///
/// # Safety
/// The contract of the system call.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn raw_syscall(n: c_long, a: [c_long; 6]) -> c_long {
    let ret: c_long;
    // SAFETY: the kernel's system-call convention (number in x8, result in x0).
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack)
        )
    };
    errno_result(ret)
}

/// glibc's convention: a kernel result in `-4095..=-1` is `-errno`, returned as -1.
#[inline(always)]
fn errno_result(ret: c_long) -> c_long {
    if (ret as u64) >= (-4095i64) as u64 {
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = -ret as c_int };
        -1
    } else {
        ret
    }
}

/// Interposes `syscall`. C declares it variadic; on the supported ABIs a variadic callee reads
/// its integer arguments from the same registers (x86-64: the seventh, `a6`, from the stack slot
/// above the return address, as glibc does), so six `c_long`s receive whatever the caller passed.
///
/// # Safety
/// The contract of `syscall(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let args = [a1, a2, a3, a4, a5, a6];
    if n == libc::SYS_futex && is_futex_wait(a2) && contention_enabled() {
        let fp = caller();
        // SAFETY: the caller's system call, forwarded unchanged.
        return timed_wait(fp, || unsafe { raw_syscall(n, args) });
    }
    // SAFETY: the caller's system call, forwarded unchanged.
    unsafe { raw_syscall(n, args) }
}

/// Interposes `pthread_mutex_lock`: an uncontended lock costs one `trylock`.
///
/// # Safety
/// The contract of `pthread_mutex_lock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { MUTEX_LOCK.function::<Lock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's mutex, forwarded.
    unsafe { lock_slow_path(m, libc::pthread_mutex_trylock, fp, || real(m)) }
}

/// Interposes `pthread_mutex_timedlock`.
///
/// # Safety
/// The contract of `pthread_mutex_timedlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_timedlock(
    m: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { MUTEX_TIMEDLOCK.function::<TimedLock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's mutex, forwarded.
    unsafe { lock_slow_path(m, libc::pthread_mutex_trylock, fp, || real(m, abstime)) }
}

/// Interposes `pthread_mutex_clocklock` (glibc 2.30).
///
/// # Safety
/// The contract of `pthread_mutex_clocklock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
    m: *mut libc::pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { MUTEX_CLOCKLOCK.function::<ClockLock<_>>() }) else { return libc::EINVAL };
    if !timed_clock(clock) {
        // SAFETY: forwarded: glibc refuses the clock before it would try the lock.
        return unsafe { real(m, clock, abstime) };
    }
    // SAFETY: the caller's mutex, forwarded.
    unsafe { lock_slow_path(m, libc::pthread_mutex_trylock, fp, || real(m, clock, abstime)) }
}

/// Interposes `pthread_rwlock_rdlock`.
///
/// # Safety
/// The contract of `pthread_rwlock_rdlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_rdlock(l: *mut libc::pthread_rwlock_t) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_RDLOCK.function::<Lock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_tryrdlock, fp, || real(l)) }
}

/// Interposes `pthread_rwlock_wrlock`.
///
/// # Safety
/// The contract of `pthread_rwlock_wrlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_wrlock(l: *mut libc::pthread_rwlock_t) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_WRLOCK.function::<Lock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_trywrlock, fp, || real(l)) }
}

/// Interposes `pthread_rwlock_timedrdlock`.
///
/// # Safety
/// The contract of `pthread_rwlock_timedrdlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_timedrdlock(
    l: *mut libc::pthread_rwlock_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_TIMEDRDLOCK.function::<TimedLock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_tryrdlock, fp, || real(l, abstime)) }
}

/// Interposes `pthread_rwlock_timedwrlock`.
///
/// # Safety
/// The contract of `pthread_rwlock_timedwrlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_timedwrlock(
    l: *mut libc::pthread_rwlock_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_TIMEDWRLOCK.function::<TimedLock<_>>() }) else { return libc::EINVAL };
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_trywrlock, fp, || real(l, abstime)) }
}

/// Interposes `pthread_rwlock_clockrdlock` (glibc 2.30).
///
/// # Safety
/// The contract of `pthread_rwlock_clockrdlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_clockrdlock(
    l: *mut libc::pthread_rwlock_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_CLOCKRDLOCK.function::<ClockLock<_>>() }) else { return libc::EINVAL };
    if !timed_clock(clock) {
        // SAFETY: forwarded: glibc refuses the clock before it would try the lock.
        return unsafe { real(l, clock, abstime) };
    }
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_tryrdlock, fp, || real(l, clock, abstime)) }
}

/// Interposes `pthread_rwlock_clockwrlock` (glibc 2.30).
///
/// # Safety
/// The contract of `pthread_rwlock_clockwrlock(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_clockwrlock(
    l: *mut libc::pthread_rwlock_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { RWLOCK_CLOCKWRLOCK.function::<ClockLock<_>>() }) else { return libc::EINVAL };
    if !timed_clock(clock) {
        // SAFETY: forwarded: glibc refuses the clock before it would try the lock.
        return unsafe { real(l, clock, abstime) };
    }
    // SAFETY: the caller's lock, forwarded.
    unsafe { lock_slow_path(l, libc::pthread_rwlock_trywrlock, fp, || real(l, clock, abstime)) }
}

/// Interposes `pthread_cond_wait`: the whole call is the wait.
///
/// # Safety
/// The contract of `pthread_cond_wait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_wait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { COND_WAIT.function::<CondWait>() }) else { return libc::EINVAL };
    // SAFETY: forwarded.
    timed_wait(fp, || unsafe { real(c, m) })
}

/// Interposes `pthread_cond_timedwait`.
///
/// # Safety
/// The contract of `pthread_cond_timedwait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_timedwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { COND_TIMEDWAIT.function::<CondTimedWait>() }) else { return libc::EINVAL };
    // SAFETY: forwarded.
    timed_wait(fp, || unsafe { real(c, m, abstime) })
}

/// Interposes `pthread_cond_clockwait` (glibc 2.30).
///
/// # Safety
/// The contract of `pthread_cond_clockwait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_clockwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { COND_CLOCKWAIT.function::<CondClockWait>() }) else { return libc::EINVAL };
    // SAFETY: forwarded.
    timed_wait(fp, || unsafe { real(c, m, clock, abstime) })
}

/// Interposes `sem_wait`: a semaphore that `sem_trywait` could not take is waited for, timed.
///
/// # Safety
/// The contract of `sem_wait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_wait(sem: *mut libc::sem_t) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SEM_WAIT.function::<Lock<_>>() }) else { return einval() };
    // SAFETY: the caller's semaphore, forwarded.
    unsafe { sem_slow_path(sem, fp, true, || real(sem)) }
}

/// Interposes `sem_timedwait`.
///
/// # Safety
/// The contract of `sem_timedwait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_timedwait(sem: *mut libc::sem_t, abstime: *const libc::timespec) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SEM_TIMEDWAIT.function::<TimedLock<_>>() }) else { return einval() };
    // SAFETY: the caller's semaphore, forwarded.
    unsafe { sem_slow_path(sem, fp, true, || real(sem, abstime)) }
}

/// Interposes `sem_clockwait` (glibc 2.30).
///
/// # Safety
/// The contract of `sem_clockwait(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_clockwait(
    sem: *mut libc::sem_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    let fp = caller();
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { SEM_CLOCKWAIT.function::<ClockLock<_>>() }) else { return einval() };
    if !timed_clock(clock) {
        // SAFETY: forwarded: glibc refuses the clock before it would try the lock.
        return unsafe { real(sem, clock, abstime) };
    }
    // SAFETY: the caller's semaphore, forwarded.
    unsafe { sem_slow_path(sem, fp, false, || real(sem, clock, abstime)) }
}

/// The `sem_*` convention for an error: -1 with `errno` set, here to `EINVAL` (glibc's function
/// could not be found).
fn einval() -> c_int {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = libc::EINVAL };
    -1
}
