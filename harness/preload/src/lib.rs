//! `LD_PRELOAD` shell around the contprof agent.
//!
//! This library owns only what must live in the preloaded object, the functions it interposes:
//! the constructor that starts the agent from the `CONTPROF_*` environment; the `malloc` family
//! (`hooks.rs`, forwarding to glibc's `__libc_*` entry points, never to `dlsym`, so it works
//! before anything is initialised); `pthread_create`, whose trampoline registers each new thread;
//! `dlopen` and `dlclose` (the unwinder follows loaded libraries); the signal functions through
//! which the program shares `SIGPROF` (`signals.rs`); the exec family (the recording is finished
//! first); `_exit`; and the slow paths of locking (`syscall` for futex waits, the blocking
//! `pthread_*` lock and condition calls), timed for the contention profile; and the entry points
//! through which a program's own copy of the `contprof` crate sets labels (`labels.rs`).
//! Everything else is in the `contprof` crate.
//!
//! The library is for glibc on Linux (x86-64 and aarch64); elsewhere it is empty.
//!
//! Build it with frame pointers (`-C force-frame-pointers=yes`): the allocation hooks start
//! their stack walk from their own frame.
#![cfg(all(target_os = "linux", target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64")))]

mod dl;
mod exec;
#[cfg(feature = "alloc-hooks")]
mod flags;
#[cfg(feature = "alloc-hooks")]
mod header;
#[cfg(feature = "alloc-hooks")]
mod hooks;
mod labels;
mod next;
mod signals;
mod threads;
mod waits;

/// `_exit` and `_Exit` skip `atexit` handlers (dash ends that way): finish the file first.
mod exit {
    /// Interposes `_exit`.
    ///
    /// # Safety
    /// The contract of `_exit(2)`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn _exit(status: libc::c_int) -> ! {
        contprof::preload::before_exit();
        loop {
            // SAFETY: ends the process; `exit_group` does not return.
            unsafe { libc::syscall(libc::SYS_exit_group, status) };
        }
    }

    /// Interposes `_Exit`.
    ///
    /// # Safety
    /// The contract of `_Exit(3)`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn _Exit(status: libc::c_int) -> ! {
        // SAFETY: same contract.
        unsafe { _exit(status) }
    }
}

mod init {
    use std::ffi::CStr;

    /// Runs when the dynamic loader maps the library, before `main`.
    extern "C" fn contprof_init() {
        crate::next::resolve_all(&[&crate::threads::REAL, &crate::dl::DLOPEN, &crate::dl::DLCLOSE]);
        crate::waits::resolve_real_pthread();
        crate::signals::resolve_real();
        crate::exec::resolve_real();
        #[cfg(feature = "alloc-hooks")]
        crate::flags::mirror();
        #[cfg(feature = "alloc-hooks")]
        crate::next::resolve_all(&[&crate::hooks::USABLE_SIZE]);
        let mut info: libc::Dl_info = Dl_info_zeroed();
        // SAFETY: `dladdr` fills `info` for an address inside this library; the file name it
        // returns lives as long as the library is mapped.
        let own = unsafe {
            (libc::dladdr(contprof_init as *const () as *const libc::c_void, &mut info) != 0
                && !info.dli_fname.is_null())
            .then(|| CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned())
        };
        // SAFETY: library constructors run single-threaded, before `main`.
        unsafe { contprof::preload::init_from_env(own.as_deref(), alloc_unseen()) };
    }

    /// Why the process's `malloc` is not this library's, if it is not.
    fn alloc_unseen() -> Option<&'static str> {
        #[cfg(not(feature = "alloc-hooks"))]
        return Some(
            "this is the lean build of the agent, which has no allocation hooks \
             (`cargo contprof agent path` without `--no-alloc` gives the full one)",
        );
        #[cfg(feature = "alloc-hooks")]
        {
            // SAFETY: the symbol name is NUL-terminated.
            let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
            (found != crate::hooks::malloc as *const () as usize).then_some(
                "the program's malloc is another allocator's, preloaded or linked before the agent \
                 (jemalloc, mimalloc, tcmalloc...): link contprof::Allocator around it instead",
            )
        }
    }

    #[allow(non_snake_case)]
    fn Dl_info_zeroed() -> libc::Dl_info {
        libc::Dl_info {
            dli_fname: core::ptr::null(),
            dli_fbase: core::ptr::null_mut(),
            dli_sname: core::ptr::null(),
            dli_saddr: core::ptr::null_mut(),
        }
    }

    #[used]
    #[unsafe(link_section = ".init_array")]
    static INIT: extern "C" fn() = contprof_init;
}
