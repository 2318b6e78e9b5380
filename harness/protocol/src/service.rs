//! The continuous mode's contracts between the agent in a service and its uploader: what a window
//! records ([`ProfileType`]), the labels the agent sets itself ([`RESERVED_LABELS`]), the
//! schedule of windows ([`Schedule`], with its one rule), and the uploader's command line
//! ([`UploaderArgs`]: written by the agent, parsed by `cargo-contprof agent upload`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// CPU samples per second per thread during a window: the tick-driven timer's range, the
/// cheapest per sample (Go's default rate too).
pub const DEFAULT_SERVICE_FREQUENCY_HZ: u32 = 100;
/// Default time between two windows of a deployment.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
/// Default length of a window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// The file beside the preload library in which `cargo contprof agent path` writes the path of the
/// `cargo-contprof` that wrote it: the uploader when no other is given or found beside it.
pub const UPLOADER_RECORD: &str = "contprof-uploader.path";

/// Label keys the agent sets itself.
pub const RESERVED_LABELS: &[&str] =
    &["service", "version", "zone", "instance", "type", "window_start", "window_end", "build_id"];

/// [`ProfileType::NAMES`] as a literal, for messages built with `concat!`.
#[macro_export]
#[doc(hidden)]
macro_rules! type_names {
    () => {
        "cpu, alloc, heap, threads, contention, wall"
    };
}

/// What a window records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProfileType {
    /// CPU time per stack during the window (sample types `samples`, `cpu`).
    Cpu,
    /// Allocations made during the window, sampled (`alloc_objects`, `alloc_space`).
    Alloc,
    /// Sampled allocations still live at the window's end, made at any time since start
    /// (`inuse_objects`, `inuse_space`).
    Heap,
    /// Every thread's stack and name at the window's end (`threads`).
    Threads,
    /// Lock, condition variable and futex waits during the window, sampled by duration at
    /// [`DEFAULT_CONTENTION_RATE_NS`](crate::DEFAULT_CONTENTION_RATE_NS) (`contentions`,
    /// `delay`). Recorded by the preload library only, which interposes the waits.
    Contention,
    /// Every thread's wall time during the window, on CPU and off, sampled at
    /// [`DEFAULT_WALL_HZ`](crate::DEFAULT_WALL_HZ) (`wall`).
    Wall,
}

impl ProfileType {
    /// Every type, in their canonical order.
    pub const ALL: [ProfileType; 6] =
        [Self::Cpu, Self::Alloc, Self::Heap, Self::Threads, Self::Contention, Self::Wall];

    /// What a window records unless told otherwise. Contention and wall time are recorded only
    /// when asked for: contention times every blocking wait, and wall sampling signals threads
    /// that may be in system calls that return `EINTR` after a signal handler.
    pub const DEFAULT: [ProfileType; 4] = [Self::Cpu, Self::Alloc, Self::Heap, Self::Threads];

    /// The name used in configuration, labels and store keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Alloc => "alloc",
            Self::Heap => "heap",
            Self::Threads => "threads",
            Self::Contention => "contention",
            Self::Wall => "wall",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Every type's name in [`ProfileType::ALL`]'s order, for messages.
    pub const NAMES: &'static str = type_names!();

    /// The types of a comma-separated list (blanks around names allowed, repeats dropped); the
    /// first unknown name as the error.
    pub fn parse_list(list: &str) -> Result<Vec<ProfileType>, String> {
        let mut types = Vec::new();
        for name in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let t = ProfileType::from_name(name).ok_or_else(|| name.to_owned())?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        Ok(types)
    }
}

/// When a deployment's windows are recorded: one window of `window` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    period: Duration,
    window: Duration,
}

/// What a [`Schedule`] may be: a period from [`Schedule::SHORTEST_PERIOD`] to
/// [`Schedule::LONGEST`], a window from [`Schedule::SHORTEST_WINDOW`] to the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The period is out of range.
    Period(Duration),
    /// The window is out of range.
    Window(Duration),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Period(p) => write!(
                f,
                "the period ({}) must be at least {} and at most {}",
                seconds(*p),
                seconds(Schedule::SHORTEST_PERIOD),
                seconds(Schedule::LONGEST)
            ),
            ScheduleError::Window(w) => write!(
                f,
                "the window ({}) must be at least {} and at most the period",
                seconds(*w),
                seconds(Schedule::SHORTEST_WINDOW)
            ),
        }
    }
}

impl std::error::Error for ScheduleError {}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

impl Schedule {
    /// The shortest period.
    pub const SHORTEST_PERIOD: Duration = Duration::from_secs(1);
    /// The shortest window: shorter ones hold too few samples to say anything.
    pub const SHORTEST_WINDOW: Duration = Duration::from_millis(100);
    /// The longest period (about 31 years: past it, window arithmetic in nanoseconds overflows).
    pub const LONGEST: Duration = Duration::from_secs(1_000_000_000);

    /// A window of `window` every `period`, checked.
    pub fn new(period: Duration, window: Duration) -> Result<Self, ScheduleError> {
        if !(Self::SHORTEST_PERIOD..=Self::LONGEST).contains(&period) {
            return Err(ScheduleError::Period(period));
        }
        if window < Self::SHORTEST_WINDOW || window > period {
            return Err(ScheduleError::Window(window));
        }
        Ok(Schedule { period, window })
    }

    /// Time between two windows of a deployment.
    pub fn period(self) -> Duration {
        self.period
    }

    /// Length of a window.
    pub fn window(self) -> Duration {
        self.window
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { period: DEFAULT_PERIOD, window: DEFAULT_WINDOW }
    }
}

/// A number of seconds as the uploader's command line and the `CONTPROF_PERIOD` and
/// `CONTPROF_WINDOW` variables write it (`1.5`, `60`, `1e3`): finite, above 0, at most
/// [`Schedule::LONGEST`].
pub fn parse_seconds(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= Schedule::LONGEST.as_secs_f64())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// `d` as [`parse_seconds`] reads it back exactly (nanoseconds kept).
pub fn format_seconds(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        ns => format!("{}.{:09}", d.as_secs(), ns).trim_end_matches('0').to_owned(),
    }
}

/// The arguments of the uploader (`cargo-contprof agent upload ...`), which the agent starts
/// beside a service: written by [`UploaderArgs::to_args`], read by [`UploaderArgs::parse`]. Every
/// value is attached to its flag (`--version=-rc1`), so that a value that starts with `-` is
/// never read as a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploaderArgs {
    /// The profiled service's process.
    pub pid: u32,
    /// The service's name.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Its zone.
    pub zone: String,
    /// This replica.
    pub instance: String,
    /// Where profiles go.
    pub store: String,
    /// When windows are recorded.
    pub schedule: Schedule,
    /// What each window records.
    pub types: Vec<ProfileType>,
    /// Replicas expected where the store cannot arbitrate leases (at least 1).
    pub replicas: u32,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Where the uploader appends its messages instead of standard error.
    pub log: Option<PathBuf>,
}

/// An argument of the uploader's command line that [`UploaderArgs::parse`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadArg {
    /// The flag (`--period`), or the argument itself when it is not a flag of the uploader.
    pub flag: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for BadArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for BadArg {}

impl UploaderArgs {
    /// The flags the uploader takes, for its `--help`.
    pub const FLAGS: &'static [(&'static str, &'static str)] = &[
        ("--pid=PID", "The profiled service's process"),
        ("--service=NAME", "The service's name"),
        ("--version=VERSION", "Its version"),
        ("--zone=ZONE", "Its zone"),
        ("--instance=NAME", "This replica"),
        ("--store=STORE", "Where profiles go"),
        ("--period=SECONDS", "Time between two windows of the deployment"),
        ("--window=SECONDS", "Length of one window (at most the period)"),
        ("--types=LIST", "Profile types, comma-separated"),
        ("--replicas=N", "Replicas expected where the store cannot arbitrate leases [default: 1]"),
        ("--label=K=V", "An extra label (repeated)"),
        ("--log=FILE", "Append messages to this file instead of writing them to standard error"),
    ];

    /// The command line, after the executable: `agent upload --pid=... ...`.
    pub fn to_args(&self) -> Vec<OsString> {
        let arg = |name: &str, value: &OsStr| {
            let mut a = OsString::from(format!("--{name}="));
            a.push(value);
            a
        };
        let types: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
        let mut args: Vec<OsString> = vec!["agent".into(), "upload".into()];
        for (name, value) in [
            ("pid", self.pid.to_string()),
            ("service", self.service.clone()),
            ("version", self.version.clone()),
            ("zone", self.zone.clone()),
            ("instance", self.instance.clone()),
            ("store", self.store.clone()),
            ("period", format_seconds(self.schedule.period())),
            ("window", format_seconds(self.schedule.window())),
            ("types", types.join(",")),
            ("replicas", self.replicas.to_string()),
        ] {
            args.push(arg(name, OsStr::new(&value)));
        }
        for (k, v) in &self.labels {
            args.push(arg("label", OsStr::new(&format!("{k}={v}"))));
        }
        if let Some(log) = &self.log {
            args.push(arg("log", log.as_os_str()));
        }
        args
    }

    /// The arguments that follow `agent upload` (`--flag=value` or `--flag value`), checked:
    /// every required flag present, the schedule within [`Schedule::new`]'s rule, known types,
    /// labels as `k=v`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, BadArg> {
        let bad = |flag: &str, message: String| BadArg { flag: flag.to_owned(), message };
        let mut given: Vec<(String, OsString)> = Vec::new();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            let text = a.to_string_lossy().into_owned();
            let Some(flag) = text.strip_prefix("--").filter(|f| !f.is_empty()) else {
                return Err(bad(&text, "not an argument of the uploader".into()));
            };
            let name = flag.split_once('=').map_or(flag, |(n, _)| n).to_owned();
            if !Self::FLAGS
                .iter()
                .any(|(f, _)| f.strip_prefix("--").and_then(|f| f.split('=').next()) == Some(&name))
            {
                return Err(bad(&format!("--{name}"), "not an argument of the uploader".into()));
            }
            let value = match flag.split_once('=') {
                // The value's own bytes, after the first `=` of the argument.
                Some(_) => split_value(&a),
                None => args.next().ok_or_else(|| bad(&format!("--{name}"), "needs a value".into()))?,
            };
            given.push((name, value));
        }
        let one = |name: &str| -> Result<Option<String>, BadArg> {
            let mut values = given.iter().filter(|(n, _)| n == name);
            let first = values.next().map(|(_, v)| v.to_string_lossy().into_owned());
            if values.next().is_some() {
                return Err(bad(&format!("--{name}"), "given more than once".into()));
            }
            Ok(first)
        };
        let required = |name: &str| one(name)?.ok_or_else(|| bad(&format!("--{name}"), "is required".into()));
        let duration = |name: &str| -> Result<Duration, BadArg> {
            let v = required(name)?;
            parse_seconds(&v).ok_or_else(|| {
                bad(
                    &format!("--{name}"),
                    format!(
                        "`{v}` is not a number of seconds above 0 and at most {}",
                        Schedule::LONGEST.as_secs()
                    ),
                )
            })
        };
        let pid = required("pid")?;
        let pid = pid.parse().map_err(|_| bad("--pid", format!("`{pid}` is not a process id")))?;
        let (period, window) = (duration("period")?, duration("window")?);
        let schedule = Schedule::new(period, window).map_err(|e| match e {
            ScheduleError::Period(_) => bad("--period", e.to_string()),
            ScheduleError::Window(_) => bad("--window", e.to_string()),
        })?;
        let types = required("types")?;
        let types = ProfileType::parse_list(&types).map_err(|unknown| {
            bad("--types", format!("`{unknown}` is not a profile type ({})", ProfileType::NAMES))
        })?;
        let replicas = match one("replicas")? {
            None => 1,
            Some(n) => n
                .parse()
                .ok()
                .filter(|&n: &u32| n > 0)
                .ok_or_else(|| bad("--replicas", format!("`{n}` is not a number of replicas")))?,
        };
        let mut labels = Vec::new();
        for (_, l) in given.iter().filter(|(n, _)| n == "label") {
            let l = l.to_string_lossy();
            let (k, v) = l.split_once('=').ok_or_else(|| bad("--label", format!("`{l}` is not k=v")))?;
            labels.push((k.to_owned(), v.to_owned()));
        }
        let log = given.iter().rev().find(|(n, _)| n == "log").map(|(_, v)| PathBuf::from(v));
        Ok(UploaderArgs {
            pid,
            service: required("service")?,
            version: required("version")?,
            zone: required("zone")?,
            instance: required("instance")?,
            store: required("store")?,
            schedule,
            types,
            replicas,
            labels,
            log,
        })
    }
}

/// The bytes of `--flag=value` after its first `=` (a path need not be UTF-8).
fn split_value(arg: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    let bytes = arg.as_bytes();
    let at = bytes.iter().position(|&b| b == b'=').map_or(bytes.len(), |i| i + 1);
    OsString::from_vec(bytes[at..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_in_messages_are_every_type_in_order() {
        assert_eq!(ProfileType::NAMES, ProfileType::ALL.map(ProfileType::name).join(", "));
    }

    fn args(value: &str) -> UploaderArgs {
        UploaderArgs {
            pid: 4242,
            service: value.into(),
            version: value.into(),
            zone: value.into(),
            instance: value.into(),
            store: value.into(),
            schedule: Schedule::new(Duration::from_secs_f64(1.5), Duration::from_secs_f64(0.3)).unwrap(),
            types: ProfileType::DEFAULT.to_vec(),
            replicas: 1,
            labels: vec![("k".into(), value.into()), ("other.key".into(), "v".into())],
            log: Some(value.into()),
        }
    }

    #[test]
    fn every_value_written_is_read_back_unchanged() {
        let long = "x".repeat(128);
        let long_unicode = "é".repeat(64);
        for value in [
            "-rc1",
            "--version",
            "-",
            "--",
            "a=b",
            "=",
            "with space",
            " lead",
            "ünïcödé ✓",
            "-é=x y",
            &long,
            &long_unicode,
            "--label=x",
            "'quoted'",
            "a,b",
            "1.4.0+build_7",
        ] {
            let a = args(value);
            let written = a.to_args();
            assert_eq!(&written[..2], ["agent", "upload"]);
            assert_eq!(UploaderArgs::parse(written[2..].iter().cloned()), Ok(a), "{value:?}");
        }
    }

    #[test]
    fn durations_are_written_exactly() {
        for d in [Duration::from_secs(60), Duration::from_millis(1500), Duration::from_nanos(100_000_001)] {
            assert_eq!(parse_seconds(&format_seconds(d)), Some(d), "{}", format_seconds(d));
        }
        assert_eq!(format_seconds(Duration::from_millis(300)), "0.3");
    }

    #[test]
    fn a_schedule_out_of_range_is_refused_with_its_flag() {
        let base = args("s").to_args();
        for (period, window, flag) in [
            ("1e20", "1", "--period"),
            ("inf", "1", "--period"),
            ("NaN", "1", "--period"),
            ("60", "0", "--window"),
            ("60", "-1", "--window"),
            ("1", "2", "--window"),
            ("2e9", "1", "--period"),
            ("0.5", "0.2", "--period"),
            ("60", "0.05", "--window"),
        ] {
            let argv = base[2..].iter().map(|a| {
                let a = a.to_string_lossy();
                if a.starts_with("--period=") {
                    format!("--period={period}").into()
                } else if a.starts_with("--window=") {
                    format!("--window={window}").into()
                } else {
                    OsString::from(a.into_owned())
                }
            });
            let err = UploaderArgs::parse(argv).unwrap_err();
            assert_eq!(err.flag, flag, "{period} {window}: {err}");
        }
    }

    #[test]
    fn missing_unknown_and_repeated_flags_are_errors() {
        let err = UploaderArgs::parse(["--pid=1".into()]).unwrap_err();
        assert!(err.message.contains("required"), "{err}");
        let mut argv = args("s").to_args()[2..].to_vec();
        argv.push("--colour=red".into());
        assert_eq!(UploaderArgs::parse(argv).unwrap_err().flag, "--colour");
        let mut argv = args("s").to_args()[2..].to_vec();
        argv.push("--zone=again".into());
        assert!(UploaderArgs::parse(argv).unwrap_err().message.contains("more than once"));
        let mut argv = args("s").to_args()[2..].to_vec();
        argv.push("--types=cpu,disk".into());
        assert!(UploaderArgs::parse(argv).is_err(), "types given twice, and one unknown");
    }
}
