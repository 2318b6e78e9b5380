//! The continuous mode, for long-running services: one window of profiling (default 10 s) per
//! period (default 60 s) per deployment, uploaded to a store.
//!
//! Owns the configuration ([`Config`], from code or from the `CONTPROF_*` variables) and its
//! validation; the lifecycle is in the platform code (`linux/continuous.rs`).
//!
//! The work is split between two processes:
//! - in the service, the agent: a control thread that opens a window when told to (CPU timers
//!   armed, allocations counted into a fresh raw file) and closes it at its end; between
//!   windows the timers are disarmed, and when the heap is profiled allocations stay sampled
//!   (one stack per 512 KiB on average) so that the heap in use is known at every window's end;
//! - beside it, the uploader: a child process running `cargo-contprof agent upload`, which
//!   decides the schedule (a create-if-absent lease object per deployment and window in the
//!   store, so that replicas share one window per period), symbolizes each finished window,
//!   writes one gzipped pprof profile per profile type and uploads them, with retries and a
//!   bounded queue. Symbolization, compression and the network never run in the service.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::{DEFAULT_ALLOC_INTERVAL, Error};

pub use contprof_protocol::env::{
    HELPER, INSTANCE, LABELS, LOG, PERIOD, REPLICAS, SERVICE, STORE, TYPES, VERSION, WINDOW, ZONE,
};
pub use contprof_protocol::service::{
    DEFAULT_PERIOD, DEFAULT_SERVICE_FREQUENCY_HZ, DEFAULT_WINDOW, ProfileType, RESERVED_LABELS, Schedule,
    UPLOADER_RECORD,
};
use contprof_protocol::service::{UploaderArgs, parse_seconds};
use contprof_protocol::type_names;

/// The continuous mode's settings. [`Config::new`] takes the service's name; everything else
/// has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The service's name.
    pub service: String,
    /// Its version (default `unknown`).
    pub version: String,
    /// The zone it runs in (default `default`).
    pub zone: String,
    /// This replica (default `<host name>-<pid>`); a label, not part of the deployment.
    pub instance: Option<String>,
    /// Extra labels on every profile.
    pub labels: Vec<(String, String)>,
    /// Where profiles go (required).
    pub store: Option<String>,
    /// Time between two windows of the deployment.
    pub period: Duration,
    /// Length of a window.
    pub window: Duration,
    /// What each window records.
    pub types: Vec<ProfileType>,
    /// CPU samples per second per thread during a window.
    pub frequency_hz: u32,
    /// Mean bytes between allocation samples.
    pub alloc_interval: u64,
    /// The uploader executable; see [`HELPER`].
    pub helper: Option<PathBuf>,
    /// Replicas expected where the store cannot arbitrate leases: each then takes a window with
    /// probability 1/replicas.
    pub replicas: u32,
    /// Whether stacks are walked with the unwind tables (else frame pointers).
    pub unwind_tables: bool,
    /// Where the uploader writes its messages ([`LOG`]); the service's standard error when
    /// `None`.
    pub log: Option<PathBuf>,
}

impl Config {
    /// Settings for the service named `service`, with the defaults.
    pub fn new(service: impl Into<String>) -> Self {
        Config {
            service: service.into(),
            version: "unknown".into(),
            zone: "default".into(),
            instance: None,
            labels: Vec::new(),
            store: None,
            period: DEFAULT_PERIOD,
            window: DEFAULT_WINDOW,
            types: ProfileType::DEFAULT.to_vec(),
            frequency_hz: DEFAULT_SERVICE_FREQUENCY_HZ,
            alloc_interval: DEFAULT_ALLOC_INTERVAL,
            helper: None,
            replicas: 1,
            unwind_tables: true,
            log: None,
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the zone.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = zone.into();
        self
    }

    /// Names this replica.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Sets the store: a directory, or a `file://`, `s3://`, `gs://` or `az://` URL.
    pub fn store(mut self, store: impl Into<String>) -> Self {
        self.store = Some(store.into());
        self
    }

    /// Sets the time between windows.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets the length of a window.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets what each window records.
    pub fn types(mut self, types: &[ProfileType]) -> Self {
        self.types = types.to_vec();
        self
    }

    /// Sets the CPU sampling frequency during windows.
    pub fn frequency(mut self, hz: u32) -> Self {
        self.frequency_hz = hz;
        self
    }

    /// Sets the uploader executable.
    pub fn helper(mut self, path: impl Into<PathBuf>) -> Self {
        self.helper = Some(path.into());
        self
    }

    /// Sets the replicas expected where the store cannot arbitrate leases.
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }

    /// Sends the uploader's messages to a file (appended to) instead of standard error.
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// The settings from the `CONTPROF_*` variables; `Ok(None)` when [`SERVICE`] is unset.
    pub fn from_env() -> Result<Option<Config>, Error> {
        let var = |name: &'static str| {
            std::env::var_os(name).map(|v| v.to_string_lossy().trim().to_owned()).filter(|v| !v.is_empty())
        };
        let Some(service) = var(SERVICE) else { return Ok(None) };
        let invalid = |var: &'static str, value: String, expected: &'static str| Error::InvalidEnv {
            var,
            value,
            expected,
        };
        let seconds = |name: &'static str, default: Duration| match var(name) {
            None => Ok(default),
            Some(v) => parse_seconds(&v).ok_or_else(|| invalid(name, v, "a number of seconds")),
        };
        let mut c = Config::new(service);
        if let Some(v) = var(VERSION) {
            c.version = v;
        }
        if let Some(z) = var(ZONE) {
            c.zone = z;
        }
        c.instance = var(INSTANCE);
        c.store = var(STORE);
        c.period = seconds(PERIOD, DEFAULT_PERIOD)?;
        c.window = seconds(WINDOW, DEFAULT_WINDOW)?;
        if let Some(labels) = var(LABELS) {
            for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) =
                    pair.split_once('=').ok_or_else(|| invalid(LABELS, labels.clone(), "k=v,k=v"))?;
                c.labels.push((k.trim().into(), v.trim().into()));
            }
        }
        if let Some(types) = var(TYPES) {
            c.types = ProfileType::parse_list(&types)
                .map_err(|_| invalid(TYPES, types.clone(), concat!("a list of ", type_names!())))?;
        }
        if let Some(v) = var(crate::env::FREQUENCY) {
            c.frequency_hz =
                v.parse().map_err(|_| invalid(crate::env::FREQUENCY, v.clone(), "a frequency in Hz"))?;
        }
        if let Some(v) = var(crate::env::ALLOC_INTERVAL) {
            c.alloc_interval = v
                .parse::<u64>()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| invalid(crate::env::ALLOC_INTERVAL, v, "a number of bytes"))?;
        }
        if let Some(v) = var(REPLICAS) {
            c.replicas = v
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid(REPLICAS, v, "a number of replicas"))?;
        }
        c.helper = var(HELPER).map(PathBuf::from);
        c.log = var(LOG).map(PathBuf::from);
        c.unwind_tables = contprof_protocol::env::unwind(var(crate::env::UNWIND).as_deref())?
            == contprof_protocol::env::Unwind::Tables;
        Ok(Some(c))
    }

    /// Checks the settings; the first problem found is the error.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, value: String, expected: &'static str| {
            Err(Error::InvalidConfig { field, value, expected })
        };
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
        for (field, value) in [("service", &self.service), ("version", &self.version), ("zone", &self.zone)] {
            if !name_ok(value) {
                return bad(field, value.clone(), "1 to 128 characters, none of them control characters");
            }
        }
        if let Some(i) = self.instance.as_ref().filter(|i| !name_ok(i)) {
            return bad("instance", i.clone(), "1 to 128 characters, none of them control characters");
        }
        for (k, v) in &self.labels {
            let key_ok = !k.is_empty()
                && k.len() <= 64
                && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !key_ok {
                return bad("labels", k.clone(), "label keys of letters, digits, `_`, `-` and `.`");
            }
            if RESERVED_LABELS.contains(&k.as_str()) {
                return bad("labels", k.clone(), "a key the agent does not set itself");
            }
            if v.len() > 256 || v.chars().any(char::is_control) {
                return bad("labels", v.clone(), "values of at most 256 characters, no control characters");
            }
        }
        match &self.store {
            None => {
                return bad("store", String::new(), "a directory or a file://, s3://, gs:// or az:// URL");
            }
            Some(s) if s.trim().is_empty() => {
                return bad("store", s.clone(), "a directory or a file://, s3://, gs:// or az:// URL");
            }
            Some(_) => {}
        }
        match Schedule::new(self.period, self.window) {
            Err(contprof_protocol::service::ScheduleError::Period(p)) => {
                return bad("period", format!("{p:?}"), "at least 1 s and at most 10^9 s");
            }
            Err(contprof_protocol::service::ScheduleError::Window(w)) => {
                return bad("window", format!("{w:?}"), "at least 100 ms and at most the period");
            }
            Ok(_) => {}
        }
        if self.types.is_empty() {
            return bad("types", String::new(), "at least one profile type");
        }
        if self.frequency_hz == 0 && self.types.contains(&ProfileType::Cpu) {
            return bad("frequency", "0".into(), "a frequency above 0 Hz when CPU is profiled");
        }
        if self.frequency_hz > 1000 {
            return bad("frequency", self.frequency_hz.to_string(), "at most 1000 Hz");
        }
        Ok(())
    }

    /// This replica's name: the configured one, else `<host name>-<pid>`.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()))
    }

    /// The arguments of `cargo-contprof agent upload` for these settings, for the service whose
    /// process is `pid` (see [`UploaderArgs`]). The settings must be valid ([`Config::validate`]).
    pub fn uploader_args(&self, pid: u32) -> Vec<OsString> {
        UploaderArgs {
            pid,
            service: self.service.clone(),
            version: self.version.clone(),
            zone: self.zone.clone(),
            instance: self.instance_name(),
            store: self.store.clone().unwrap_or_default(),
            schedule: Schedule::new(self.period, self.window).unwrap_or_default(),
            types: self.types.clone(),
            replicas: self.replicas,
            labels: self.labels.clone(),
            log: self.log.clone(),
        }
        .to_args()
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}
