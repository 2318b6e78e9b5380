//! The `CONTPROF_*` environment variables: every name, and the settings of one recording as a
//! preloaded agent reads them ([`RecordingEnv`]: written by `cargo contprof`'s runner with
//! [`RecordingEnv::vars`], read by the agent's constructor with [`RecordingEnv::from_vars`]).
//!
//! The continuous mode's variables (service, store, schedule) are read by the agent alone
//! (`contprof::service::Config::from_env`); their names are here so that every `CONTPROF_*`
//! name is in one list.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::format::AllocMode;

/// The output file; the agent does nothing when it is unset.
pub const OUTPUT: &str = "CONTPROF_OUTPUT";
/// Sampling frequency in Hz (0 = CPU sampling off).
pub const FREQUENCY: &str = "CONTPROF_FREQUENCY";
/// `sampled`, `exact` or `off`.
pub const ALLOC: &str = "CONTPROF_ALLOC";
/// Mean bytes between allocation samples.
pub const ALLOC_INTERVAL: &str = "CONTPROF_ALLOC_INTERVAL";
/// Contention sampling rate in nanoseconds (unset or 0: waits are not recorded).
pub const CONTENTION_RATE: &str = "CONTPROF_CONTENTION_RATE";
/// Wall-clock sampling frequency in Hz (unset or 0: off).
pub const WALL_FREQUENCY: &str = "CONTPROF_WALL_FREQUENCY";
/// `0` forbids `perf_event_open` (forces the fallback timers).
pub const PERF: &str = "CONTPROF_PERF";
/// When set: the agent starts (and scrubs the environment) only in a process running this
/// executable, and stays dormant in the processes that start it, such as valgrind's wrapper
/// script and launcher, which must hand `LD_PRELOAD` on to the workload.
pub const EXE: &str = "CONTPROF_EXE";
/// How stacks are walked: `tables` (the default: the objects' `.eh_frame` unwind tables, through
/// code without frame pointers) or `frame-pointers`.
pub const UNWIND: &str = "CONTPROF_UNWIND";
/// `0`: the perf timer counts user time only, even where kernel time could be counted (system
/// time then comes from `getrusage` per sample).
pub const PERF_KERNEL: &str = "CONTPROF_PERF_KERNEL";

/// The continuous mode: the service's name (its presence turns the mode on).
pub const SERVICE: &str = "CONTPROF_SERVICE";
/// The service's version (default `unknown`).
pub const VERSION: &str = "CONTPROF_VERSION";
/// The zone it runs in (default `default`).
pub const ZONE: &str = "CONTPROF_ZONE";
/// This replica's name (default `<host name>-<pid>`).
pub const INSTANCE: &str = "CONTPROF_INSTANCE";
/// Where profiles go: a directory, or a `file://`, `s3://`, `gs://` or `az://` URL. Also the
/// store of every `cargo contprof` command that takes `--store`.
pub const STORE: &str = "CONTPROF_STORE";
/// Seconds between two windows of a deployment.
pub const PERIOD: &str = "CONTPROF_PERIOD";
/// Seconds of one window.
pub const WINDOW: &str = "CONTPROF_WINDOW";
/// Extra labels on every profile, `k=v,k=v`.
pub const LABELS: &str = "CONTPROF_LABELS";
/// What each window records: a comma-separated list of profile types.
pub const TYPES: &str = "CONTPROF_TYPES";
/// The uploader executable (default: the one recorded next to the preload library).
pub const HELPER: &str = "CONTPROF_HELPER";
/// Replicas expected where the store cannot arbitrate leases.
pub const REPLICAS: &str = "CONTPROF_REPLICAS";
/// Where the uploader writes its messages (appended), instead of the service's standard error.
pub const LOG: &str = "CONTPROF_LOG";

/// How the agent walks stacks ([`UNWIND`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unwind {
    /// The objects' unwind tables (`.eh_frame`): stacks pass through C libraries and code built
    /// without frame pointers.
    #[default]
    Tables,
    /// Frame pointers only: callers of code without frame pointers are lost. Cheaper per stack.
    FramePointers,
}

impl Unwind {
    /// The name in [`UNWIND`] and in a run's stored settings.
    pub fn name(self) -> &'static str {
        match self {
            Unwind::Tables => "tables",
            Unwind::FramePointers => "frame-pointers",
        }
    }

    /// The method named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Unwind::Tables, Unwind::FramePointers].into_iter().find(|u| u.name() == name)
    }
}

/// The name of `mode` in [`ALLOC`].
pub fn alloc_name(mode: AllocMode) -> &'static str {
    match mode {
        AllocMode::Off => "off",
        AllocMode::Sampled => "sampled",
        AllocMode::Exact => "exact",
    }
}

/// The mode named `name` in [`ALLOC`].
pub fn alloc_mode(name: &str) -> Option<AllocMode> {
    [AllocMode::Sampled, AllocMode::Exact, AllocMode::Off].into_iter().find(|m| alloc_name(*m) == name)
}

/// A variable whose value is not one its reader accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidVar {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
}

impl fmt::Display for InvalidVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?} is invalid: expected {}", self.var, self.value, self.expected)
    }
}

impl std::error::Error for InvalidVar {}

/// What one recording of a preloaded agent records and where: the recording variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingEnv {
    /// The raw sample file ([`OUTPUT`]).
    pub output: PathBuf,
    /// CPU samples per second per thread; 0 turns CPU sampling off ([`FREQUENCY`]).
    pub frequency_hz: u32,
    /// Allocation recording ([`ALLOC`]).
    pub alloc: AllocMode,
    /// Mean bytes between allocation samples ([`ALLOC_INTERVAL`]).
    pub alloc_interval: u64,
    /// Whether the perf timer may be used ([`PERF`]).
    pub allow_perf: bool,
    /// Whether the perf timer counts kernel time where it can ([`PERF_KERNEL`]).
    pub perf_kernel: bool,
    /// How stacks are walked ([`UNWIND`]).
    pub unwind: Unwind,
    /// Contention sampling rate in nanoseconds, 0: off ([`CONTENTION_RATE`]).
    pub contention_rate_ns: u64,
    /// Wall-clock sampling frequency in Hz, 0: off ([`WALL_FREQUENCY`]).
    pub wall_hz: u32,
}

impl RecordingEnv {
    /// The defaults, recording into `output`.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        RecordingEnv {
            output: output.into(),
            frequency_hz: crate::DEFAULT_FREQUENCY_HZ,
            alloc: AllocMode::Sampled,
            alloc_interval: crate::DEFAULT_ALLOC_INTERVAL,
            allow_perf: true,
            perf_kernel: true,
            unwind: Unwind::Tables,
            contention_rate_ns: 0,
            wall_hz: 0,
        }
    }

    /// The variables that give a preloaded agent these settings (every one is set).
    pub fn vars(&self) -> Vec<(&'static str, OsString)> {
        let flag = |b: bool| OsString::from(if b { "1" } else { "0" });
        vec![
            (OUTPUT, self.output.as_os_str().to_owned()),
            (FREQUENCY, self.frequency_hz.to_string().into()),
            (ALLOC, alloc_name(self.alloc).into()),
            (ALLOC_INTERVAL, self.alloc_interval.to_string().into()),
            (PERF, flag(self.allow_perf)),
            (PERF_KERNEL, flag(self.perf_kernel)),
            (UNWIND, self.unwind.name().into()),
            (CONTENTION_RATE, self.contention_rate_ns.to_string().into()),
            (WALL_FREQUENCY, self.wall_hz.to_string().into()),
        ]
    }

    /// The settings in the variables `get` reads (unset ones take their defaults); `Ok(None)`
    /// when [`OUTPUT`] is unset or empty.
    pub fn from_vars(get: impl Fn(&'static str) -> Option<OsString>) -> Result<Option<Self>, InvalidVar> {
        let Some(output) = get(OUTPUT).filter(|o| !o.is_empty()) else { return Ok(None) };
        let text = |name: &'static str| get(name).map(|v| v.to_string_lossy().trim().to_owned());
        let number = |name: &'static str, expected: &'static str| -> Result<Option<u64>, InvalidVar> {
            match text(name) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| InvalidVar { var: name, value: v, expected }),
            }
        };
        let hz = |name: &'static str, expected: &'static str| -> Result<Option<u32>, InvalidVar> {
            match number(name, expected)? {
                None => Ok(None),
                Some(n) => u32::try_from(n).map(Some).map_err(|_| InvalidVar {
                    var: name,
                    value: n.to_string(),
                    expected,
                }),
            }
        };
        let switch = |name: &'static str| -> Result<Option<bool>, InvalidVar> {
            match text(name).as_deref() {
                None => Ok(None),
                Some("0") => Ok(Some(false)),
                Some("1") => Ok(Some(true)),
                Some(other) => Err(InvalidVar { var: name, value: other.into(), expected: "0 or 1" }),
            }
        };
        let mut r = RecordingEnv::new(output);
        if let Some(v) = text(ALLOC) {
            r.alloc = alloc_mode(&v).ok_or(InvalidVar {
                var: ALLOC,
                value: v,
                expected: "sampled, exact or off",
            })?;
        }
        r.frequency_hz = hz(FREQUENCY, "a frequency in Hz")?.unwrap_or(r.frequency_hz);
        r.alloc_interval = number(ALLOC_INTERVAL, "a number of bytes")?.unwrap_or(r.alloc_interval);
        r.allow_perf = switch(PERF)?.unwrap_or(r.allow_perf);
        r.perf_kernel = switch(PERF_KERNEL)?.unwrap_or(r.perf_kernel);
        r.unwind = unwind(text(UNWIND).as_deref())?;
        r.contention_rate_ns = number(CONTENTION_RATE, "a rate in nanoseconds (0 = off)")?.unwrap_or(0);
        r.wall_hz = hz(WALL_FREQUENCY, "a frequency in Hz (0 = off)")?.unwrap_or(0);
        Ok(Some(r))
    }
}

/// The value of [`UNWIND`] (unset: tables).
pub fn unwind(value: Option<&str>) -> Result<Unwind, InvalidVar> {
    match value {
        None => Ok(Unwind::Tables),
        Some(v) => Unwind::from_name(v).ok_or(InvalidVar {
            var: UNWIND,
            value: v.into(),
            expected: "tables or frame-pointers",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&'static str, OsString)]) -> Result<Option<RecordingEnv>, InvalidVar> {
        let map: HashMap<&str, OsString> = vars.iter().cloned().collect();
        RecordingEnv::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn the_variables_written_read_back_as_the_same_settings() {
        let mut r = RecordingEnv::new("/tmp/run 1/x.raw");
        for (alloc, unwind) in [
            (AllocMode::Off, Unwind::FramePointers),
            (AllocMode::Exact, Unwind::Tables),
            (AllocMode::Sampled, Unwind::Tables),
        ] {
            (r.alloc, r.unwind) = (alloc, unwind);
            (r.frequency_hz, r.alloc_interval, r.contention_rate_ns, r.wall_hz) = (9999, 1, 10_000, 1000);
            (r.allow_perf, r.perf_kernel) = (alloc == AllocMode::Off, alloc == AllocMode::Exact);
            assert_eq!(read(&r.vars()).unwrap(), Some(r.clone()));
        }
    }

    #[test]
    fn unset_variables_take_the_defaults_and_no_output_means_no_recording() {
        assert_eq!(read(&[(OUTPUT, "o.raw".into())]).unwrap(), Some(RecordingEnv::new("o.raw")));
        assert_eq!(read(&[(FREQUENCY, "99".into())]).unwrap(), None);
        assert_eq!(read(&[(OUTPUT, "".into())]).unwrap(), None);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            (ALLOC, "sometimes"),
            (FREQUENCY, "fast"),
            (FREQUENCY, "4294967296"),
            (PERF, "yes"),
            (UNWIND, "dwarf"),
            (WALL_FREQUENCY, "-1"),
        ] {
            let err = read(&[(OUTPUT, "o.raw".into()), (var, value.into())]).unwrap_err();
            assert_eq!((err.var, err.value.as_str()), (var, value));
        }
    }
}
