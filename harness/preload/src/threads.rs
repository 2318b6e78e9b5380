//! The exported `pthread_create`: a trampoline registers every new thread with the agent
//! (stack bounds, CPU timer) before the thread's own start routine runs.

use core::ffi::c_void;

use crate::next::Next;

type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type PthreadCreate = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> libc::c_int;

/// glibc's `pthread_create`.
pub(crate) static REAL: Next = Next::new(c"pthread_create");

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
}

struct Start {
    routine: StartRoutine,
    arg: *mut c_void,
}

extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Start` written by `pthread_create` below, owned by this thread now.
    let Start { routine, arg } = unsafe { p.cast::<Start>().read() };
    // SAFETY: allocated with `__libc_malloc` below.
    unsafe { __libc_free(p) };
    contprof::preload::on_thread_start();
    routine(arg)
}

/// Interposes `pthread_create`.
///
/// # Safety
/// The contract of `pthread_create(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: StartRoutine,
    arg: *mut c_void,
) -> libc::c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { REAL.function::<PthreadCreate>() }) else { return libc::EAGAIN };
    if !contprof::preload::wants_threads() {
        // SAFETY: the caller's arguments, forwarded.
        return unsafe { real(thread, attr, routine, arg) };
    }
    // SAFETY: plain allocation; checked for null below.
    let start = unsafe { __libc_malloc(core::mem::size_of::<Start>()) }.cast::<Start>();
    if start.is_null() {
        // SAFETY: the caller's arguments, forwarded.
        return unsafe { real(thread, attr, routine, arg) };
    }
    // SAFETY: `start` points to enough fresh memory for a `Start`.
    unsafe { start.write(Start { routine, arg }) };
    // SAFETY: the caller's arguments with our trampoline, which calls `routine(arg)`.
    let rc = unsafe { real(thread, attr, trampoline, start.cast()) };
    if rc != 0 {
        // SAFETY: the thread was not created, so `start` is still ours.
        unsafe { __libc_free(start.cast()) };
    }
    rc
}
