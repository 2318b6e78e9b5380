//! The exported `dlopen` and `dlclose`: the agent's unwinder follows the libraries a program
//! loads and unloads while it runs. After a `dlopen` the new library's unwind tables are added
//! (copied: see the agent's `cfi.rs`, which is what keeps a handler from reading a closed
//! library's memory), so stacks through its code keep their callers; after a `dlclose` a library
//! no longer loaded leaves the unwinder.

use core::ffi::{c_char, c_int, c_void};

use crate::next::Next;

type Dlopen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type Dlclose = unsafe extern "C" fn(*mut c_void) -> c_int;

/// glibc's `dlopen`.
pub(crate) static DLOPEN: Next = Next::new(c"dlopen");
/// glibc's `dlclose`.
pub(crate) static DLCLOSE: Next = Next::new(c"dlclose");

/// Interposes `dlopen`.
///
/// # Safety
/// The contract of `dlopen(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { DLOPEN.function::<Dlopen>() }) else { return core::ptr::null_mut() };
    // SAFETY: the caller's arguments, forwarded.
    let handle = unsafe { real(filename, flags) };
    if !handle.is_null() {
        contprof::preload::after_dlopen();
    }
    handle
}

/// Interposes `dlclose`: the unwinder drops the library if it is no longer loaded.
///
/// # Safety
/// The contract of `dlclose(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    // SAFETY: glibc's function of this name has this type.
    let Some(real) = (unsafe { DLCLOSE.function::<Dlclose>() }) else { return -1 };
    // SAFETY: the caller's handle, forwarded.
    let rc = unsafe { real(handle) };
    contprof::preload::after_dlclose();
    rc
}
