//! The exported `dlopen`: a library loaded while the workload runs gets its unwind tables added
//! to the agent's unwinder, so stacks through its code keep their callers.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

type Dlopen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;

/// The next `dlopen` (glibc's; 0 = not resolved yet).
static REAL: AtomicUsize = AtomicUsize::new(0);

fn real() -> Option<Dlopen> {
    let mut f = REAL.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: the symbol name is NUL-terminated; RTLD_NEXT searches the objects after this one.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"dlopen".as_ptr()) } as usize;
        REAL.store(f, Ordering::Release);
    }
    // SAFETY: `f` is the address of the next `dlopen`, which has this signature.
    (f != 0).then(|| unsafe { core::mem::transmute::<usize, Dlopen>(f) })
}

/// Interposes `dlopen`.
///
/// # Safety
/// The contract of `dlopen(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void {
    let Some(real) = real() else { return core::ptr::null_mut() };
    // SAFETY: the caller's arguments, forwarded.
    let handle = unsafe { real(filename, flags) };
    if !handle.is_null() {
        contprof::preload::after_dlopen();
    }
    handle
}
