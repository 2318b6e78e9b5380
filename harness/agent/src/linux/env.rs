//! Configuration from the environment, for the preload library: reading the `CONTPROF_*`
//! variables and scrubbing them (and the library's own `LD_PRELOAD` entry) so that processes
//! the workload spawns are never profiled into its file.

use std::ffi::OsString;

use crate::api::{DEFAULT_ALLOC_INTERVAL, DEFAULT_FREQUENCY_HZ, Error, Options};
use crate::format::AllocMode;

/// The output file; the agent does nothing when it is unset.
pub const OUTPUT: &str = "CONTPROF_OUTPUT";
/// Sampling frequency in Hz (0 = CPU sampling off).
pub const FREQUENCY: &str = "CONTPROF_FREQUENCY";
/// `sampled`, `exact` or `off`.
pub const ALLOC: &str = "CONTPROF_ALLOC";
/// Mean bytes between allocation samples.
pub const ALLOC_INTERVAL: &str = "CONTPROF_ALLOC_INTERVAL";
/// Contention sampling rate in nanoseconds (unset or 0: waits are not recorded); see
/// [`Options::contention_rate_ns`].
pub const CONTENTION_RATE: &str = "CONTPROF_CONTENTION_RATE";
/// Wall-clock sampling frequency in Hz (unset or 0: off); see [`Options::wall_hz`].
pub const WALL_FREQUENCY: &str = "CONTPROF_WALL_FREQUENCY";
/// `0` forbids `perf_event_open` (forces the fallback timers).
pub const PERF: &str = "CONTPROF_PERF";
/// When set: the agent starts (and scrubs the environment) only in a process running this
/// executable, and stays dormant in the processes that start it, such as valgrind's wrapper
/// script and launcher, which must hand `LD_PRELOAD` on to the workload.
pub const EXE: &str = "CONTPROF_EXE";
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
/// How stacks are walked: `tables` (the default: the objects' `.eh_frame` unwind tables, through
/// code without frame pointers) or `frame-pointers`.
pub const UNWIND: &str = "CONTPROF_UNWIND";
/// `0`: the perf timer counts user time only, even where kernel time could be counted (system
/// time then comes from `getrusage` per sample).
pub const PERF_KERNEL: &str = "CONTPROF_PERF_KERNEL";

fn var(name: &'static str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The value of [`UNWIND`] (unset: tables) as [`Options::unwind_tables`].
pub(crate) fn unwind_tables(value: Option<&str>) -> Result<bool, Error> {
    match value {
        None | Some("tables") => Ok(true),
        Some("frame-pointers") => Ok(false),
        Some(other) => {
            Err(Error::InvalidEnv { var: UNWIND, value: other.into(), expected: "tables or frame-pointers" })
        }
    }
}

fn number<T: std::str::FromStr>(name: &'static str, default: T, expected: &'static str) -> Result<T, Error> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| Error::InvalidEnv { var: name, value: v, expected }),
    }
}

impl Options {
    /// Reads the `CONTPROF_*` variables; `Ok(None)` when `CONTPROF_OUTPUT` is unset.
    pub fn from_env() -> Result<Option<Self>, Error> {
        let Some(output) = std::env::var_os(OUTPUT).filter(|o| !o.is_empty()) else { return Ok(None) };
        let alloc = match var(ALLOC).as_deref().map(str::trim) {
            None | Some("sampled") => AllocMode::Sampled,
            Some("exact") => AllocMode::Exact,
            Some("off") => AllocMode::Off,
            Some(other) => {
                return Err(Error::InvalidEnv {
                    var: ALLOC,
                    value: other.into(),
                    expected: "sampled, exact or off",
                });
            }
        };
        let mut o = Options::new(output)
            .frequency(number(FREQUENCY, DEFAULT_FREQUENCY_HZ, "a frequency in Hz")?)
            .alloc(alloc)
            .alloc_interval(number(ALLOC_INTERVAL, DEFAULT_ALLOC_INTERVAL, "a number of bytes")?);
        o.allow_perf = number(PERF, 1u8, "0 or 1")? != 0;
        o.perf_kernel = number(PERF_KERNEL, 1u8, "0 or 1")? != 0;
        o.unwind_tables = unwind_tables(var(UNWIND).as_deref().map(str::trim))?;
        o.contention_rate_ns = number(CONTENTION_RATE, 0u64, "a rate in nanoseconds (0 = off)")?;
        o.wall_hz = number(WALL_FREQUENCY, 0u32, "a frequency in Hz (0 = off)")?;
        Ok(Some(o))
    }
}

/// Whether this process is the one the agent is meant for: always, unless [`EXE`] names another
/// executable (paths compared after resolving links; under valgrind, `/proc/self/exe` names the
/// program valgrind runs).
pub fn is_target_process() -> bool {
    let Some(want) = std::env::var_os(EXE).filter(|v| !v.is_empty()) else { return true };
    let resolve = |p: std::path::PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    std::env::current_exe().is_ok_and(|exe| resolve(exe) == resolve(want.into()))
}

/// `LD_PRELOAD` without the entries naming the agent's library (`own` is its path as the
/// dynamic loader reports it); `None` when nothing is left.
pub fn preload_without(value: &str, own: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = value
        .split([':', ' '])
        .filter(|e| !e.is_empty())
        .filter(|e| {
            Some(*e) != own && !e.rsplit('/').next().is_some_and(|f| f.starts_with("libcontprof_preload"))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(":"))
}

/// Removes every `CONTPROF_*` variable and the agent's entry in `LD_PRELOAD`.
///
/// # Safety
/// Modifies the environment: no other thread may read or write it concurrently (true in a
/// library constructor, before `main`).
pub unsafe fn scrub(own: Option<&str>) {
    let ours: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().starts_with("CONTPROF_"))
        .collect();
    for k in ours {
        // SAFETY: single-threaded by the caller's contract.
        unsafe { std::env::remove_var(k) };
    }
    if let Some(p) = var("LD_PRELOAD") {
        match preload_without(&p, own) {
            // SAFETY: single-threaded by the caller's contract.
            Some(rest) => unsafe { std::env::set_var("LD_PRELOAD", rest) },
            // SAFETY: single-threaded by the caller's contract.
            None => unsafe { std::env::remove_var("LD_PRELOAD") },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_the_agent_from_ld_preload() {
        let own = "/t/release/libcontprof_preload.so";
        assert_eq!(preload_without(own, Some(own)), None);
        assert_eq!(
            preload_without(&format!("/a/liba.so:{own} /b/libb.so"), Some(own)).as_deref(),
            Some("/a/liba.so:/b/libb.so")
        );
        assert_eq!(preload_without("libcontprof_preload.so", None), None);
    }
}
