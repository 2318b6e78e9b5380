//! The next definition of a function this library interposes (the C library's), looked up once
//! with `dlsym(RTLD_NEXT)` (or `dlvsym` at a given version) and kept.
//!
//! Every interposer reaches the function it stands for through a [`Next`], resolved from the
//! library's constructor ([`resolve_all`]) or on first use if another library's constructor calls
//! it before ours runs. `dlsym` takes only the loader's own locks and may allocate, which the
//! allocation hooks forward untouched at that point; none of the functions resolved here may be
//! called from a signal handler before it is resolved.

use core::ffi::{CStr, c_char};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The next definition of an interposed function.
pub(crate) struct Next {
    name: &'static CStr,
    /// Looked up with `dlvsym` at this version first.
    version: Option<&'static CStr>,
    /// The address; 0 = not resolved yet.
    addr: AtomicUsize,
}

impl Next {
    pub(crate) const fn new(name: &'static CStr) -> Self {
        Self { name, version: None, addr: AtomicUsize::new(0) }
    }

    pub(crate) const fn versioned(name: &'static CStr, version: Option<&'static CStr>) -> Self {
        Self { name, version, addr: AtomicUsize::new(0) }
    }

    /// The function as a pointer of type `F`, `None` if there is none.
    ///
    /// # Safety
    /// `F` is the type of the function named `name`: an `unsafe extern "C" fn` pointer.
    #[inline(always)]
    pub(crate) unsafe fn function<F: Copy>(&self) -> Option<F> {
        const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
        let f = self.get();
        // SAFETY: a non-null address of the function of type `F` (the caller's contract).
        (f != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&f) })
    }

    /// The address, 0 if there is none.
    pub(crate) fn get(&self) -> usize {
        let f = self.addr.load(Ordering::Acquire);
        if f != 0 {
            return f;
        }
        let name: *const c_char = self.name.as_ptr();
        let mut f = match self.version {
            // SAFETY: NUL-terminated strings; RTLD_NEXT searches the objects after this one.
            Some(v) => (unsafe { libc::dlvsym(libc::RTLD_NEXT, name, v.as_ptr()) }) as usize,
            None => 0,
        };
        if f == 0 {
            // SAFETY: as above.
            f = unsafe { libc::dlsym(libc::RTLD_NEXT, name) } as usize;
        }
        self.addr.store(f, Ordering::Release);
        f
    }
}

/// Resolves every function in `all` (from the constructor).
pub(crate) fn resolve_all(all: &[&Next]) {
    for next in all {
        next.get();
    }
}
