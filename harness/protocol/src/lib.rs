//! The formats and protocols shared by the three parts of contprof that run apart: the agent
//! (linked into a program, or preloaded as `contprof-preload`), the uploader that runs beside a
//! profiled service, and `cargo contprof`, which reads what they write. Each contract is written
//! once, here, with both its encoding and its parsing, so that the two sides cannot drift apart:
//!
//! - [`format`](mod@format): the raw sample file the agent writes and the tool reads (records, header, label
//!   sets, allocation modes);
//! - [`maps`]: lines of `/proc/<pid>/maps`, which the raw file carries;
//! - [`env`](mod@env): the `CONTPROF_*` variables, and the recording settings a preloaded agent reads from
//!   them ([`env::RecordingEnv`]);
//! - [`service`]: the continuous mode's profile types, reserved labels and schedule
//!   ([`service::Schedule`]), and the uploader's command line ([`service::UploaderArgs`]);
//! - [`channel`]: the lines the uploader and the agent exchange over their pipe.
//!
//! Nothing here starts, records or uploads anything: that is the agent's (`contprof`) and the
//! tool's (`cargo-contprof`) work.

pub mod channel;
pub mod env;
pub mod format;
pub mod maps;
pub mod service;

/// Default CPU sampling frequency (Hz) of a recording. Not a multiple of common periodic work.
pub const DEFAULT_FREQUENCY_HZ: u32 = 499;
/// Default mean number of bytes between allocation samples.
pub const DEFAULT_ALLOC_INTERVAL: u64 = 512 * 1024;
/// Default contention sampling rate in nanoseconds.
pub const DEFAULT_CONTENTION_RATE_NS: u64 = 10_000;
/// Default wall-clock sampling frequency (Hz): every thread, 100 times a second of wall time.
pub const DEFAULT_WALL_HZ: u32 = 100;

/// Up to this rate the agent is told to use tick-driven per-thread CPU timers (`timer_create` on
/// `CLOCK_THREAD_CPUTIME_ID`); above it, per-thread `perf_event_open` cpu-clock events, which go
/// past the tick but cost about 40 µs of CPU per sample on the development VM (measured by
/// `cargo-contprof`'s `benches/overhead.rs`).
pub const TICK_TIMER_MAX_HZ: u32 = 250;
/// The highest wall-clock sampling frequency: the sampler thread lists and reads every thread
/// at each tick, which past 1 kHz costs more than it tells.
pub const WALL_MAX_HZ: u32 = 1000;

/// Nanoseconds between wall-clock ticks at `hz` (0 when off): what the raw file's header says
/// and what a reader weighs a tick with.
pub const fn wall_period_ns(hz: u32) -> u64 {
    if hz == 0 { 0 } else { 1_000_000_000 / hz as u64 }
}

/// The agent's functions that do its own bookkeeping (start, recording an allocation, untracking
/// a free, registering a thread, writing the file at exit), as callgrind names them. The
/// instructions engine passes each to `valgrind --tool=callgrind --toggle-collect=...`, so that
/// instructions spent in them (and below them) are not counted as the workload's. None of them
/// calls another, which a toggle would turn back on. Forwarding to the real allocator stays
/// counted: it is the workload's.
pub const CALLGRIND_UNCOUNTED: &[&str] = &[
    "contprof::preload::init_from_env",
    "contprof::linux::alloc::decide",
    "contprof::linux::alloc::record",
    "contprof::linux::alloc::untrack",
    "contprof::linux::agent::on_thread_start",
    "contprof::linux::agent::finish",
];
