//! Configuration from the environment, for the preload library: reading the `CONTPROF_*`
//! variables and scrubbing them (and the library's own `LD_PRELOAD` entry) so that processes
//! the workload spawns are never profiled into its file.

use std::ffi::OsString;

use contprof_protocol::env::{RecordingEnv, Unwind};

use crate::api::{Error, Options};

pub use contprof_protocol::CALLGRIND_UNCOUNTED;
pub use contprof_protocol::env::{
    ALLOC, ALLOC_INTERVAL, CONTENTION_RATE, EXE, FREQUENCY, OUTPUT, PERF, PERF_KERNEL, UNWIND, WALL_FREQUENCY,
};

fn var(name: &'static str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

impl Options {
    /// Reads the `CONTPROF_*` variables; `Ok(None)` when `CONTPROF_OUTPUT` is unset.
    pub fn from_env() -> Result<Option<Self>, Error> {
        let Some(r) = RecordingEnv::from_vars(std::env::var_os)? else { return Ok(None) };
        let mut o =
            Options::new(r.output).frequency(r.frequency_hz).alloc(r.alloc).alloc_interval(r.alloc_interval);
        o.allow_perf = r.allow_perf;
        o.perf_kernel = r.perf_kernel;
        o.unwind_tables = r.unwind == Unwind::Tables;
        o.contention_rate_ns = r.contention_rate_ns;
        o.wall_hz = r.wall_hz;
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
