//! The contprof sampling agent: CPU and allocation sampling from inside the profiled process.
//!
//! It is used in two ways:
//! - preloaded: the `contprof-preload` library (`LD_PRELOAD`) starts it from the environment
//!   ([`env`](mod@env)) and exports the `malloc` family and `pthread_create`, which call into
//!   `preload`;
//! - linked in: a program calls [`start`] and may wrap its global allocator in [`Allocator`];
//!   criterion benchmarks can use `criterion::Profiler` (feature `criterion`).
//!
//! Both write the raw sample file described in [`format`](mod@format), which `cargo contprof` reads.
//!
//! Map of the modules (each owns one concern):
//! - [`format`](mod@format): the raw file layout and its reader;
//! - `api` / [`env`](mod@env): options, errors, start from code or from the environment;
//! - [`service`]: the continuous mode's settings; `continuous`: its control thread and uploader;
//! - `agent`: lifecycle (start, finish at exit / abort / guard drop, fork);
//! - `timer`: the per-thread CPU timers (perf cpu-clock, POSIX timer, setitimer);
//! - `sampler`: the `SIGPROF` handler;
//! - [`unwind`]: the bounded frame-pointer walk;
//! - `thread`: per-thread state and registration;
//! - `alloc`: allocation sampling and [`Allocator`]; `table`: its off-heap tables (shared with
//!   `contention`: lock and futex waits, timed at the preload library's slow-path hooks);
//! - `writer`: record encoding; `sys`: raw system-call helpers.
//!
//! Platform: Linux on x86-64 and aarch64. Elsewhere [`start`] returns [`Error::Unsupported`]
//! and [`Allocator`] only forwards.
#![warn(missing_docs)]

pub mod format;
pub mod maps;

#[cfg(feature = "criterion")]
pub mod criterion;

pub mod service;

mod api;
pub use api::{
    DEFAULT_ALLOC_INTERVAL, DEFAULT_CONTENTION_RATE_NS, DEFAULT_FREQUENCY_HZ, DEFAULT_WALL_HZ, Error, Guard,
    Options, Service, Start, TICK_TIMER_MAX_HZ, WALL_MAX_HZ, start, wall_period_ns,
};
pub use format::AllocMode;

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod linux;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
use linux::{
    agent, alloc, cfi, code, contention, continuous, sampler, sys, table, thread, timer, wall, writer,
};
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub use linux::{alloc::Allocator, env, unwind};

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod unsupported;
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
pub use unsupported::Allocator;
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
use unsupported::agent;

/// Entry points for the `contprof-preload` library (its `pthread_create` and `malloc`
/// family); not meant for other callers.
#[doc(hidden)]
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub mod preload {
    pub use crate::linux::alloc::{
        Hook, forget, free_needs_hook, may_be_tracked, recording, wants_hook_fp, with_hook,
    };
    pub use crate::linux::contention::{contention_enabled, is_futex_wait, timed_wait};
    pub use crate::linux::sampler::sample_here;
    pub use crate::linux::unwind::{Caller, caller, frame_pointer};

    /// Starts the agent from the `CONTPROF_*` variables and scrubs them (and `own`, the
    /// library's path, from `LD_PRELOAD`). Reports failures on stderr: a constructor has no
    /// caller to return them to.
    ///
    /// # Safety
    /// Must run single-threaded (from a library constructor): it modifies the environment.
    #[inline(never)]
    pub unsafe fn init_from_env(own: Option<&str>) {
        if !crate::env::is_target_process() {
            return;
        }
        let service = crate::service::Config::from_env();
        let opts = crate::Options::from_env();
        // SAFETY: single-threaded by the caller's contract.
        unsafe { crate::env::scrub(own) };
        match service {
            Ok(None) => {}
            Ok(Some(config)) => {
                match crate::Service::start(config, own.map(std::path::Path::new)) {
                    Ok(s) => s.keep_until_exit(),
                    Err(e) => report(&e),
                }
                return;
            }
            Err(e) => return report(&e),
        }
        match opts {
            Ok(None) => {}
            Ok(Some(o)) => match crate::start(o) {
                Ok(guard) => guard.keep_until_exit(),
                Err(e) => report(&e),
            },
            Err(e) => report(&e),
        }
    }

    fn report(e: &crate::Error) {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        // Never `eprintln!`: it panics when standard error is full or closed.
        crate::continuous::say(&msg);
    }

    /// Finishes the file before the process ends through `_exit` (which skips `atexit`).
    pub fn before_exit() {
        crate::agent::finish();
    }

    /// Whether threads must be registered when they start.
    pub fn wants_threads() -> bool {
        crate::agent::running()
    }

    /// Registers the calling (new) thread.
    pub fn on_thread_start() {
        crate::agent::on_thread_start();
    }

    /// After a `dlopen`: adds the unwind tables of newly loaded objects (when the agent walks
    /// tables).
    pub fn after_dlopen() {
        crate::cfi::refresh();
    }
}
