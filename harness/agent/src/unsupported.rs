//! Stand-ins for platforms the agent does not support: [`crate::start`] fails with
//! [`crate::Error::Unsupported`] and [`Allocator`] only forwards.

use core::alloc::{GlobalAlloc, Layout};

pub(crate) mod agent {
    use crate::api::{Error, Options};

    pub(crate) fn start(_: &Options) -> Result<(), Error> {
        Err(Error::Unsupported)
    }

    pub(crate) fn finish() {}

    /// One line on standard error, dropped if it cannot be written.
    #[cfg_attr(not(feature = "criterion"), allow(dead_code))]
    pub(crate) fn say(line: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "contprof: {line}");
    }
}

/// A `#[global_allocator]` wrapper; on this platform it only forwards to `A`.
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

// SAFETY: every method forwards to `inner` unchanged.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Allocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's arguments.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's arguments.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}
