//! Validation of flags shared by several commands: raw strings become typed settings here, with
//! errors that name the flag.

use contprof_protocol::format::AllocMode;

use std::path::{Path, PathBuf};

use super::args::{AllocArg, CargoFlags, SamplingArgs, StoreArgs};
use contprof_engine::cargo::CargoArgs;
use contprof_engine::errors::{Error, Result};
use contprof_engine::runner::{AgentSettings, Engine};

/// Highest sampling rate accepted: beyond it the handler's cost stops being negligible.
pub const MAX_FREQUENCY: u32 = 10_000;

impl From<&CargoFlags> for CargoArgs {
    fn from(f: &CargoFlags) -> Self {
        CargoArgs {
            manifest_path: f.manifest_path.clone(),
            package: f.package.clone(),
            features: f.features.clone(),
            all_features: f.all_features,
            no_default_features: f.no_default_features,
            target_dir: f.target_dir.clone(),
            locked: f.locked,
            offline: f.offline,
            frozen: f.frozen,
        }
    }
}

/// Parses `512K`, `4M`, `1G` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1024),
        (i, 'm' | 'M') => (&s[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses a duration in nanoseconds: `10us` (or `µs`), `500ns`, `2ms`, `1s`, or a plain number
/// of nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = (s[..split].trim(), s[split..].trim());
    let scale = match unit {
        "" | "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let ns = number.parse::<f64>().ok()? * scale;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then_some(ns.round() as u64)
}

/// The contention sampling rate of `--contention`/`--contention-rate` (0: not recorded).
fn contention_rate(a: &SamplingArgs) -> Result<u64> {
    let Some(raw) = a.contention_rate.as_deref() else {
        return Ok(if a.contention { contprof_engine::runner::DEFAULT_CONTENTION_RATE_NS } else { 0 });
    };
    parse_duration_ns(raw).filter(|&ns| ns > 0).ok_or_else(|| Error::InvalidArgument {
        flag: "--contention-rate",
        message: format!("`{raw}` is not a positive duration (examples: 10us, 500ns, 1ms)"),
    })
}

/// The wall-clock sampling frequency of `--wall`/`--wall-frequency` (0: not sampled).
fn wall_hz(a: &SamplingArgs) -> Result<u32> {
    match a.wall_frequency {
        None => Ok(if a.wall { contprof_engine::runner::DEFAULT_WALL_HZ } else { 0 }),
        Some(hz) if (1..=contprof_protocol::WALL_MAX_HZ).contains(&hz) => Ok(hz),
        Some(hz) => Err(Error::InvalidArgument {
            flag: "--wall-frequency",
            message: format!("{hz} Hz is outside 1 to {} Hz", contprof_protocol::WALL_MAX_HZ),
        }),
    }
}

/// Validated sampling settings plus the number of runs. The engine is `--engine`, else the
/// project's configured `engine`, else the agent; the
/// instructions engine records every allocation and no CPU samples, and needs valgrind (checked
/// here, before any build).
pub fn sampling(a: &SamplingArgs, config: &contprof_engine::config::Config) -> Result<(AgentSettings, u32)> {
    let engine = a.engine.unwrap_or_else(|| config.engine.unwrap_or_default());
    if a.frequency > MAX_FREQUENCY {
        return Err(Error::InvalidArgument {
            flag: "--frequency",
            message: format!("{} Hz is above the supported maximum of {MAX_FREQUENCY} Hz", a.frequency),
        });
    }
    let alloc_interval =
        parse_bytes(&a.alloc_interval).filter(|b| *b > 0).ok_or_else(|| Error::InvalidArgument {
            flag: "--alloc-interval",
            message: format!(
                "`{}` is not a positive number of bytes (examples: 65536, 512K, 4M)",
                a.alloc_interval
            ),
        })?;
    if a.runs == 0 {
        return Err(Error::InvalidArgument { flag: "--runs", message: "must be at least 1".into() });
    }
    let alloc = match a.alloc {
        AllocArg::Sampled => AllocMode::Sampled,
        AllocArg::Exact => AllocMode::Exact,
        AllocArg::Off => AllocMode::Off,
    };
    let contention_rate_ns = contention_rate(a)?;
    let wall_hz = wall_hz(a)?;
    if a.frequency == 0 && alloc == AllocMode::Off && contention_rate_ns == 0 && wall_hz == 0 {
        return Err(Error::InvalidArgument {
            flag: "--frequency",
            message: "0 with --alloc off would record nothing".into(),
        });
    }
    if engine == Engine::Instructions {
        if contention_rate_ns > 0 {
            return Err(Error::InvalidArgument {
                flag: "--contention",
                message: "does not apply to --engine instructions (valgrind runs one thread at a time)"
                    .into(),
            });
        }
        if wall_hz > 0 {
            return Err(Error::InvalidArgument {
                flag: "--wall",
                message:
                    "does not apply to --engine instructions (under valgrind, wall time is not the program's)"
                        .into(),
            });
        }
        contprof_engine::runner::callgrind::find_valgrind()?;
        let settings = AgentSettings {
            engine,
            frequency: 0,
            alloc: AllocMode::Exact,
            alloc_interval,
            unwind: a.unwind,
            contention_rate_ns: 0,
            wall_hz: 0,
        };
        return Ok((settings, a.runs));
    }
    let settings = AgentSettings {
        engine,
        frequency: a.frequency,
        alloc,
        alloc_interval,
        unwind: a.unwind,
        contention_rate_ns,
        wall_hz,
    };
    Ok((settings, a.runs))
}

/// Parses `KEY=VALUE` tags.
pub fn tags(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|t| {
            contprof_engine::store::parse_tag(t)
                .map_err(|message| Error::InvalidArgument { flag: "--tag", message })
        })
        .collect()
}

/// A configuration that cannot be read or parsed, said as itself: the file and the key are in
/// its message.
fn config_error(e: contprof_engine::config::ConfigError) -> Error {
    match e {
        contprof_engine::config::ConfigError::Read { path, source } => {
            Error::io("could not read", path, source)
        }
        parse => Error::msg(parse.to_string()),
    }
}

/// Where a command works, found once: the project's root and its configuration
/// (`.contprof.toml`, else `[workspace.metadata.contprof]`, else, in a one-package project,
/// `[package.metadata.contprof]`), read once under that one rule and handed to whatever needs it
/// (the store's location, the engine, the comparison options, the viewer's thresholds).
pub struct Project {
    /// The directory whose `.contprof/store` is the default store: the cargo workspace root, else
    /// the git work tree, else the current directory.
    pub root: PathBuf,
    /// The configuration.
    pub config: std::sync::Arc<contprof_engine::config::Loaded>,
}

impl Project {
    /// The project of a Cargo workspace (`run`, `test`, `bench`, `compare`, `check`).
    pub fn of(workspace: &contprof_engine::cargo::Workspace) -> Result<Project> {
        let config =
            contprof_engine::config::load(workspace.root(), workspace.metadata()).map_err(config_error)?;
        Ok(Project { root: workspace.root().to_owned(), config: config.into() })
    }

    /// The project of a command that reads a store (`serve`, `report`, `prod`, the store
    /// commands): the Cargo workspace when there is one (`--manifest-path`, else the current
    /// directory's), else the git work tree, else the current directory.
    pub fn find(manifest_path: Option<&Path>) -> Result<Project> {
        let args = CargoArgs { manifest_path: manifest_path.map(Path::to_owned), ..CargoArgs::default() };
        if let Ok(workspace) = contprof_engine::cargo::Workspace::load(&args) {
            return Project::of(&workspace);
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let root = contprof_engine::git::Repo::discover(&cwd).map(|r| r.dir().to_owned()).unwrap_or(cwd);
        let config = contprof_engine::config::load_at(&root, None).map_err(config_error)?;
        Ok(Project { root, config: config.into() })
    }

    /// The configuration's settings.
    pub fn config(&self) -> &contprof_engine::config::Config {
        &self.config.config
    }

    /// The store named by `--store`, else `CONTPROF_STORE`, else the configuration's `store`,
    /// else `.contprof/store` under the root.
    pub fn store_location(&self, args: &StoreArgs) -> Result<contprof_engine::store::StoreLocation> {
        contprof_engine::store::StoreLocation::select(
            args.url.as_deref(),
            || Ok::<_, Error>(self.config().store.clone()),
            &self.root,
        )
    }

    /// Opens the store (see [`Project::store_location`]), so that an unreachable or newer store
    /// fails before any work is done.
    pub fn open_store(&self, args: &StoreArgs) -> Result<contprof_engine::store::Store> {
        Ok(contprof_engine::store::Store::open(&self.store_location(args)?)?)
    }
}

/// The `key=value[,key=value]` specs given to `flag` (`--label`, `--sample-label`), parsed.
pub(super) fn label_flags(flag: &'static str, specs: &[String]) -> Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    for spec in specs {
        labels.extend(
            contprof_engine::prod::select::parse_labels(spec)
                .map_err(|message| Error::InvalidArgument { flag, message })?,
        );
    }
    Ok(labels)
}

/// `--timeout`: seconds, as a positive duration.
pub(super) fn timeout(secs: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs).ok().filter(|t| !t.is_zero()).ok_or_else(|| {
        Error::InvalidArgument {
            flag: "--timeout",
            message: format!("{secs:e} s is not a positive number of seconds that fits a duration"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_byte_sizes() {
        assert_eq!(parse_bytes("512K"), Some(512 * 1024));
        assert_eq!(parse_bytes("4m"), Some(4 << 20));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999999999999G"), None);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ns("10us"), Some(10_000));
        assert_eq!(parse_duration_ns("10µs"), Some(10_000));
        assert_eq!(parse_duration_ns("500ns"), Some(500));
        assert_eq!(parse_duration_ns("1.5ms"), Some(1_500_000));
        assert_eq!(parse_duration_ns("2 s"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("250"), Some(250));
        assert_eq!(parse_duration_ns("10 parsecs"), None);
        assert_eq!(parse_duration_ns("us"), None);
        assert_eq!(parse_duration_ns("-3us"), None);
    }

    #[test]
    fn rejects_bad_tags() {
        assert!(tags(&["a=b".into(), "c=".into()]).is_ok());
        assert!(tags(&["novalue".into()]).is_err());
        assert!(tags(&["=x".into()]).is_err());
    }
}
