//! The exported `malloc` family. Each function reads its own frame pointer (the stack walk
//! starts at its caller), forwards to glibc's `__libc_*` implementation, and reports the result
//! to the agent's sampler. Before the agent runs, and for allocations the agent itself makes
//! while inside a hook, they only forward.

use core::ffi::c_void;

use contprof::preload::{
    Caller, caller, forget, free_needs_hook, may_be_tracked, recording, wants_hook_fp, with_hook,
};

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

/// Runs `alloc` and records its result as an allocation of `size` bytes made by the caller of
/// the hook `fp` (see [`caller`]).
#[inline(always)]
fn recorded(fp: Caller, size: usize, alloc: impl FnOnce() -> *mut c_void) -> *mut c_void {
    with_hook(|hook| {
        if let Some(h) = hook {
            h.enter(fp);
        }
        let p = alloc();
        if let Some(h) = hook {
            h.leave();
            if !p.is_null() {
                h.on_alloc(p.cast(), size, fp);
            }
        }
        p
    })
}

/// Untracks `ptr`, which is about to be freed (before the free: afterwards another thread may
/// be handed the same address).
#[inline(always)]
fn release(ptr: *mut c_void) {
    if !ptr.is_null() && free_needs_hook() && may_be_tracked(ptr.cast()) {
        forget(ptr.cast());
    }
}

/// Interposes `malloc`.
///
/// # Safety
/// The contract of `malloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if !recording() {
        // SAFETY: forwarded.
        return unsafe { __libc_malloc(size) };
    }
    let fp = caller();
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_malloc(size) })
}

/// Interposes `calloc`.
///
/// # Safety
/// The contract of `calloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let fp = caller();
    // SAFETY: forwarded (glibc checks the multiplication for overflow).
    recorded(fp, n.saturating_mul(size), || unsafe { __libc_calloc(n, size) })
}

/// Interposes `realloc`.
///
/// # Safety
/// The contract of `realloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let fp = caller();
    release(ptr);
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_realloc(ptr, size) })
}

/// Interposes `reallocarray`.
///
/// # Safety
/// The contract of `reallocarray(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let fp = caller();
    let Some(total) = n.checked_mul(size) else {
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
        return core::ptr::null_mut();
    };
    release(ptr);
    // SAFETY: forwarded.
    recorded(fp, total, || unsafe { __libc_realloc(ptr, total) })
}

/// Interposes `free`.
///
/// # Safety
/// The contract of `free(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    release(ptr);
    if !wants_hook_fp() {
        // SAFETY: forwarded.
        return unsafe { __libc_free(ptr) };
    }
    let fp = caller();
    with_hook(|hook| {
        if let Some(h) = hook {
            h.enter(fp);
        }
        // SAFETY: forwarded.
        unsafe { __libc_free(ptr) };
        if let Some(h) = hook {
            h.leave();
        }
    })
}

/// Interposes `posix_memalign`.
///
/// # Safety
/// The contract of `posix_memalign(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> libc::c_int {
    let fp = caller();
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    // SAFETY: forwarded.
    let p = recorded(fp, size, || unsafe { __libc_memalign(align, size) });
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: `out` is a valid pointer (the caller's contract).
    unsafe { *out = p };
    0
}

/// Interposes `aligned_alloc`.
///
/// # Safety
/// The contract of `aligned_alloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let fp = caller();
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_memalign(align, size) })
}

/// Interposes `memalign`.
///
/// # Safety
/// The contract of `memalign(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let fp = caller();
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_memalign(align, size) })
}

/// Interposes `valloc`.
///
/// # Safety
/// The contract of `valloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    let fp = caller();
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_valloc(size) })
}

/// Interposes `pvalloc`.
///
/// # Safety
/// The contract of `pvalloc(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let fp = caller();
    // SAFETY: forwarded.
    recorded(fp, size, || unsafe { __libc_pvalloc(size) })
}
