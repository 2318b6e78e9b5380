//! The public API for programs that link the agent in: [`Options`], [`start`], [`Guard`] and
//! the structured [`Error`].
//!
//! Owns nothing but the translation between the caller's request and [`crate::agent`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::agent;
pub use crate::format::AllocMode;

pub use contprof_protocol::{
    DEFAULT_ALLOC_INTERVAL, DEFAULT_CONTENTION_RATE_NS, DEFAULT_FREQUENCY_HZ, DEFAULT_WALL_HZ,
    TICK_TIMER_MAX_HZ, WALL_MAX_HZ, wall_period_ns,
};

/// What to record and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The raw sample file to create (truncated if it exists).
    pub output: PathBuf,
    /// CPU samples per second of CPU time per thread; 0 turns CPU sampling off.
    pub frequency_hz: u32,
    /// How allocations are recorded.
    pub alloc: AllocMode,
    /// Mean bytes between allocation samples ([`AllocMode::Sampled`]).
    pub alloc_interval: u64,
    /// Whether the `perf_event_open` timer may be used; false forces the tick-driven
    /// fallbacks (for tests of the fallback path).
    pub allow_perf: bool,
    /// Whether the `perf_event_open` timer may try to count kernel time too (when the system
    /// allows it); false counts user time alone and adds each thread's system time, from
    /// `getrusage`, to its next sample.
    pub perf_kernel: bool,
    /// Whether stacks are walked with the objects' unwind tables (`.eh_frame`), which also
    /// passes through code without frame pointers; false walks frame pointers only.
    pub unwind_tables: bool,
    /// Lock and futex waits are recorded when this is above 0 (nanoseconds; 0, the default: not
    /// recorded): a wait of at least this long always, with weight 1; a shorter wait of `d` ns
    /// with probability `d / rate` and weight `rate / d`, so that both the number of waits and
    /// the time waited are estimated without bias (Go's block profile). Waits are seen only
    /// where the preload library interposes the slow paths (`syscall(SYS_futex, FUTEX_WAIT...)`,
    /// `pthread_mutex_lock` and friends): a program that links the agent in records none.
    pub contention_rate_ns: u64,
    /// Every thread is sampled on wall time this many times a second (0, the default: off),
    /// running or not, by a sampler thread of the agent: a thread whose CPU time moved since its
    /// last stack gets a signal and records where it is (`SIGPROF`, as CPU samples); a thread
    /// that stayed off CPU is still where it blocked, and its wall time goes to the stack it
    /// recorded then. A blocked thread is thus interrupted once per blocking episode: system
    /// calls that do not restart after a handler (`nanosleep`, `epoll_wait`, timed futex waits)
    /// return `EINTR` then, as they would for any signal. At most [`WALL_MAX_HZ`].
    pub wall_hz: u32,
    /// A window of the continuous mode ([`crate::service`]): the allocation tables and the unwind
    /// tables outlive it, allocations stay sampled after it (for the heap in use), and what it
    /// records of allocations is what happened during it.
    pub(crate) window: bool,
}

/// Why the allocation functions this process calls are not the agent's (set once by the preload
/// library's constructor; `None`: they are, or the agent is linked in and uses [`crate::Allocator`]).
static ALLOC_UNSEEN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Records why allocations cannot be seen in this process (see [`ALLOC_UNSEEN`]).
pub(crate) fn set_alloc_unseen(why: &'static str) {
    let _ = ALLOC_UNSEEN.set(why);
}

/// Why allocations cannot be seen in this process, if they cannot.
pub(crate) fn alloc_unseen() -> Option<&'static str> {
    ALLOC_UNSEEN.get().copied()
}

impl Options {
    /// Defaults: 499 Hz, sampled allocations every 512 KiB on average.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        Self {
            output: output.into(),
            frequency_hz: DEFAULT_FREQUENCY_HZ,
            alloc: AllocMode::Sampled,
            alloc_interval: DEFAULT_ALLOC_INTERVAL,
            allow_perf: true,
            perf_kernel: true,
            unwind_tables: true,
            contention_rate_ns: 0,
            wall_hz: 0,
            window: false,
        }
    }

    /// Sets the CPU sampling frequency (0 = off).
    pub fn frequency(mut self, hz: u32) -> Self {
        self.frequency_hz = hz;
        self
    }

    /// Sets the allocation mode.
    pub fn alloc(mut self, mode: AllocMode) -> Self {
        self.alloc = mode;
        self
    }

    /// Sets the mean bytes between allocation samples.
    pub fn alloc_interval(mut self, bytes: u64) -> Self {
        self.alloc_interval = bytes.max(1);
        self
    }

    /// Records lock and futex waits at this sampling rate in nanoseconds (0 = off; see
    /// [`Options::contention_rate_ns`]).
    pub fn contention_rate_ns(mut self, rate_ns: u64) -> Self {
        self.contention_rate_ns = rate_ns;
        self
    }

    /// Samples every thread on wall time at this frequency (0 = off; see [`Options::wall_hz`]).
    pub fn wall_hz(mut self, hz: u32) -> Self {
        self.wall_hz = hz;
        self
    }

    /// Allows or forbids the `perf_event_open` timer.
    pub fn allow_perf(mut self, allow: bool) -> Self {
        self.allow_perf = allow;
        self
    }

    /// Walks stacks with the unwind tables (the default) or with frame pointers only (see
    /// [`Options::unwind_tables`]).
    pub fn unwind_tables(mut self, on: bool) -> Self {
        self.unwind_tables = on;
        self
    }

    /// Allows or forbids the `perf_event_open` timer to count kernel time (see
    /// [`Options::perf_kernel`]).
    pub fn perf_kernel(mut self, allow: bool) -> Self {
        self.perf_kernel = allow;
        self
    }
}

/// Why the agent could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `start` was called while the agent was already recording.
    AlreadyRunning,
    /// `start` was called in a forked child of a profiled process.
    ForkedChild,
    /// The output file could not be created.
    CreateOutput {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file header could not be written.
    WriteHeader {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The allocation tables could not be mapped.
    MapTables {
        /// The OS error.
        source: io::Error,
    },
    /// A signal handler could not be installed.
    InstallHandler {
        /// The signal.
        signal: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A `CONTPROF_*` environment variable holds a value the agent does not understand.
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A setting of the continuous mode ([`crate::service::Config`]) is invalid.
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The continuous mode's uploader (`cargo-contprof`) was not found.
    NoUploader,
    /// The uploader could not be started.
    SpawnUploader {
        /// The executable.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The platform is not supported (the agent needs Linux on x86-64 or aarch64).
    Unsupported,
}

impl From<contprof_protocol::env::InvalidVar> for Error {
    fn from(e: contprof_protocol::env::InvalidVar) -> Self {
        Error::InvalidEnv { var: e.var, value: e.value, expected: e.expected }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRunning => f.write_str("the contprof agent is already running in this process"),
            Self::ForkedChild => {
                f.write_str("the contprof agent cannot start in a forked child of a profiled process")
            }
            Self::CreateOutput { path, .. } => write!(f, "cannot create the sample file {}", path.display()),
            Self::WriteHeader { path, .. } => {
                write!(f, "cannot write the header of the sample file {}", path.display())
            }
            Self::MapTables { .. } => f.write_str("cannot map memory for the allocation tables"),
            Self::InstallHandler { signal, .. } => write!(f, "cannot install the {signal} handler"),
            Self::InvalidEnv { var, value, expected } => {
                write!(f, "{var}={value:?} is invalid: expected {expected}")
            }
            Self::InvalidConfig { field, value, expected } => {
                write!(f, "the setting `{field}` = {value:?} is invalid: expected {expected}")
            }
            Self::NoUploader => f.write_str(
                "cannot find the uploader `cargo-contprof` (beside the preload library or on PATH): \
                 install it, or set CONTPROF_HELPER to its path",
            ),
            Self::SpawnUploader { path, .. } => write!(f, "cannot start the uploader {}", path.display()),
            Self::Unsupported => f.write_str("the contprof agent supports Linux on x86-64 and aarch64 only"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::CreateOutput { source, .. }
            | Self::WriteHeader { source, .. }
            | Self::MapTables { source }
            | Self::InstallHandler { source, .. }
            | Self::SpawnUploader { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Starts the agent, in one of two modes:
/// - with [`Options`], it records the whole run into one raw file: CPU sampling on every thread
///   and allocation sampling through [`crate::Allocator`] (or the preload library's `malloc`).
///   The returned [`Guard`] writes the end record when stopped or dropped; an `atexit` handler
///   and a `SIGABRT` handler write it too if the process ends first. Threads that exist when
///   `start` runs get a timer at once; threads created later get one when the preload library's
///   `pthread_create` starts them, or, when the agent is linked in, at their first allocation
///   through [`crate::Allocator`].
/// - with a [`crate::service::Config`], it profiles a long-running service continuously: one
///   window per period, shared by the replicas of a deployment, uploaded to a store (see
///   [`crate::service`]). The returned [`Service`] ends it when stopped or dropped.
///
/// ```no_run
/// use contprof::service::Config;
/// let _profiling = contprof::start(Config::new("indexing-service").version("1.0.3").store("s3://profiles/prod"))?;
/// # Ok::<(), contprof::Error>(())
/// ```
pub fn start<S: Start>(what: S) -> Result<S::Running, Error> {
    what.start()
}

/// What [`start`] can start: [`Options`] (one run) or [`crate::service::Config`] (a service).
pub trait Start: sealed::Sealed {
    /// The handle of what runs.
    type Running;
    /// Starts it.
    fn start(self) -> Result<Self::Running, Error>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Options {}
    impl Sealed for crate::service::Config {}
}

impl Start for Options {
    type Running = Guard;
    fn start(self) -> Result<Guard, Error> {
        agent::start(&self)?;
        Ok(Guard { _private: () })
    }
}

impl Start for crate::service::Config {
    type Running = Service;
    fn start(self) -> Result<Service, Error> {
        Service::start(self, None)
    }
}

/// A service profiled continuously; [`Service::stop`] (or drop) completes the window in progress
/// and lets the uploader finish. [`Service::keep_until_exit`] profiles until the process ends.
#[must_use = "dropping the handle stops profiling"]
pub struct Service {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    shared: std::sync::Arc<crate::continuous::Shared>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the continuous mode; `library` is the preload library when it starts it.
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(crate) fn start(
        config: crate::service::Config,
        library: Option<&std::path::Path>,
    ) -> Result<Self, Error> {
        Ok(Service { shared: crate::continuous::start(config, library)? })
    }

    #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    pub(crate) fn start(_: crate::service::Config, _: Option<&std::path::Path>) -> Result<Self, Error> {
        Err(Error::Unsupported)
    }

    /// Completes the window in progress, hands it to the uploader and stops.
    pub fn stop(self) {
        drop(self);
    }

    /// Profiles until the process exits (the `atexit` handler completes the last window).
    pub fn keep_until_exit(self) {
        std::mem::forget(self);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        crate::continuous::stop(&self.shared);
    }
}

/// A running agent; [`Guard::stop`] (or drop) finishes the file.
#[derive(Debug)]
#[must_use = "dropping the guard stops the profiler"]
pub struct Guard {
    _private: (),
}

impl Guard {
    /// Stops sampling and writes the allocation stacks, the maps and the end record.
    pub fn stop(self) {
        drop(self);
    }

    /// Leaves the agent running until the process exits (the `atexit` handler finishes it).
    pub fn keep_until_exit(self) {
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        agent::finish();
    }
}
