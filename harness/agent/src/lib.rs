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
//! - `writer`: record encoding; `sys`: raw system-call helpers;
//! - [`labels`]: labels from code, interned sets that samples carry.
//!
//! Platform: Linux on x86-64 and aarch64. Elsewhere [`start`] returns [`Error::Unsupported`]
//! and [`Allocator`] only forwards.
#![warn(missing_docs)]

pub use contprof_protocol::{format, maps};
pub mod labels;

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
    agent, alloc, cfi, code, contention, continuous, remote, sampler, signals, sys, table, thread, timer,
    tls, wall, writer,
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
    /// The allocation hooks' side of the agent (see `alloc`'s module docs).
    pub mod alloc {
        pub use crate::linux::alloc::{
            COUNTDOWN_AT, EXACT, HOOK_FP, HOOKS_MASK, Recorded, SAMPLED, decide, enter, forget, hooks, leave,
            may_be_tracked, mirror_hooks, on_alloc, record, skip_sampled,
        };
    }
    pub use crate::labels::exported as labels;
    pub use crate::linux::contention::{contention_enabled, is_futex_wait, timed_wait};
    pub use crate::linux::sampler::sample_here;
    pub use crate::linux::unwind::{Caller, caller, frame_pointer};

    /// Starts the agent from the `CONTPROF_*` variables and scrubs them (and `own`, the
    /// library's path, from `LD_PRELOAD`). `alloc_unseen` says why the process's allocation
    /// functions are not the library's, if they are not (the lean build; another allocator
    /// interposed first): allocations are then not recorded, with a message saying why. Reports
    /// failures on stderr (never raising `SIGPIPE`, never failing): a constructor has no caller to
    /// return them to.
    ///
    /// # Safety
    /// Must run single-threaded (from a library constructor): it modifies the environment.
    #[inline(never)]
    pub unsafe fn init_from_env(own: Option<&str>, alloc_unseen: Option<&'static str>) {
        if !crate::env::is_target_process() {
            return;
        }
        if let Some(why) = alloc_unseen {
            crate::api::set_alloc_unseen(why);
        }
        let service = crate::service::Config::from_env();
        let opts = crate::Options::from_env();
        // SAFETY: single-threaded by the caller's contract.
        unsafe { crate::env::scrub(own) };
        match service {
            Ok(None) => {}
            Ok(Some(mut config)) => {
                if let Some(why) = alloc_unseen {
                    let recorded = config.types.len();
                    config.types.retain(|t| {
                        !matches!(t, crate::service::ProfileType::Alloc | crate::service::ProfileType::Heap)
                    });
                    if config.types.len() < recorded {
                        crate::continuous::say(&format!("allocation and heap profiles are off: {why}"));
                    }
                }
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

    /// After a `dlclose`: the unwinder drops the objects no longer loaded (its copies of their
    /// tables kept them safe to read until then, see `cfi`).
    pub fn after_dlclose() {
        crate::cfi::refresh();
    }

    /// Before the process replaces its program: finishes the recording (see `agent::before_exec`);
    /// true if [`after_failed_exec`] must be called when the `exec` returns.
    pub fn before_exec() -> bool {
        crate::agent::before_exec()
    }

    /// The `exec` failed: the recording goes on.
    pub fn after_failed_exec() {
        crate::agent::after_failed_exec();
    }

    /// `SIGPROF` shared with the program (see the agent's `signals` module).
    pub mod signals {
        pub use crate::linux::signals::{is_ours, mask_changed, program_sigaction, set_real_functions};
    }
}
