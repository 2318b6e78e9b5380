//! Project configuration of `compare` and `check`: `contprof.toml` at the workspace root, else
//! `[workspace.metadata.contprof]` in the root `Cargo.toml`, else `[package.metadata.contprof]` of a
//! single-package project.
//!
//! ```toml
//! alpha = 0.05                 # false discovery rate
//! min_effect = 0.05            # minimum relative change, every metric
//! floor_share = 0.005          # functions below this share of their group are not tested
//! ignore = ["^my_crate::log"]  # function name regexes never tested
//! ignore_crates = ["tokio"]    # crates never tested
//! fold_library = true          # std/core/alloc frames count toward their caller
//! strict = false               # gate also on changes the diff does not explain (`--strict`)
//! engine = "agent"             # or "instructions" (`--engine`)
//! [thresholds]                 # minimum relative change per metric
//! cpu = 0.05
//! alloc_bytes = 0.02
//! contention = 0.1             # time waited for locks and number of waits (`--contention`)
//! wall = 0.05                  # wall time, on CPU and off (`--wall`)
//! [check]
//! runs = 10                    # with an interleaved base, the most (see all_runs)
//! all_runs = false             # true: record every run even when the answer is clear earlier
//! stop_power = 0.10            # an early stop needs to see changes of 10% in functions of 5%
//! no_baseline = "pass"         # or "fail" (exit 5)
//! baseline = "auto"            # or "interleaved" / "stored": where the base's runs come from
//! targets = ["bin:server", "bench:parse", "tests", "benches:parse"]
//! ```
//!
//! Unknown keys and bad values are errors naming the key and the file. Command-line flags override
//! these values; this module only reads and validates them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::compare::{Metric, Options};

/// File name of the configuration at the workspace root.
pub const FILE_NAME: &str = "contprof.toml";

/// The configuration as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// False discovery rate.
    pub alpha: Option<f64>,
    /// Minimum relative effect for every metric without its own threshold.
    pub min_effect: Option<f64>,
    /// Minimum share of a group's total for a function to be tested.
    pub floor_share: Option<f64>,
    /// Function name regular expressions left out of the tests.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Crates whose functions are left out of the tests.
    #[serde(default)]
    pub ignore_crates: Vec<String>,
    /// Fold standard-library frames into their callers.
    pub fold_library: Option<bool>,
    /// Gate also on regressions that the diff's code changes do not explain.
    pub strict: Option<bool>,
    /// Minimum relative effect per metric.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Defaults of `check`.
    #[serde(default)]
    pub check: CheckConfig,
    /// The profile store (a directory or `s3://`, `gs://`, `az://`, `file://` URL); `--store` and
    /// `CONTPROF_STORE` take precedence.
    pub store: Option<String>,
    /// What measures workloads in `run`, `test`, `bench` and `check` (`--engine` takes precedence).
    pub engine: Option<crate::runner::Engine>,
}

/// `[thresholds]`: minimum relative change per metric.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// CPU time.
    pub cpu: Option<f64>,
    /// Allocated bytes.
    pub alloc_bytes: Option<f64>,
    /// Allocation count.
    pub alloc_count: Option<f64>,
    /// Bytes in use at exit.
    pub inuse_bytes: Option<f64>,
    /// Instructions executed (`--engine instructions`).
    pub instructions: Option<f64>,
    /// Waits for locks (`--contention`): the time waited (`delay`) and the number of waits
    /// (`contentions`).
    pub contention: Option<f64>,
    /// Wall time, on CPU and off (`--wall`).
    pub wall: Option<f64>,
}

/// `[check]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Runs per target (with an interleaved base: the most, see `all_runs`).
    pub runs: Option<u32>,
    /// Record every run even when the answer is clear earlier (an interleaved base stops once
    /// every function is clearly unchanged, see `compare::sequential`).
    pub all_runs: Option<bool>,
    /// The stated power an early stop needs: the smallest change seen in a function of 5% of a
    /// sampled measure, at most this (default 0.10).
    pub stop_power: Option<f64>,
    /// What to do without a baseline.
    pub no_baseline: Option<NoBaseline>,
    /// Where the base's runs come from.
    pub baseline: Option<BaselineMode>,
    /// Targets recorded when none is given on the command line.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// `check` without a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NoBaseline {
    /// Record HEAD and exit 0.
    Pass,
    /// Record HEAD and exit 5.
    Fail,
}

/// Where `check` gets the base's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BaselineMode {
    /// Interleaved when HEAD is off the default branch and the base commit is in the clone, else
    /// stored.
    Auto,
    /// Build the base in a git worktree and record base and head alternately (A B A B) in this job.
    Interleaved,
    /// Compare with the base's runs in the store, recorded earlier.
    Stored,
}

/// A target set of `check`, as written in `[check] targets` (`bin:NAME`, `tests:FILTER`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// One binary, example, bench or test target run as a whole (`kind` is `bin`, `example`,
    /// `bench` or `test`).
    Single {
        /// Target kind.
        kind: String,
        /// Target name.
        name: String,
    },
    /// The test suite, optionally filtered.
    Tests(Option<String>),
    /// The benchmarks, optionally filtered.
    Benches(Option<String>),
}

impl CheckTarget {
    /// Parses `bin:NAME`, `example:NAME`, `bench:NAME`, `test:NAME`, `tests[:FILTER]`, `benches[:FILTER]`.
    pub fn parse(s: &str) -> Option<CheckTarget> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r.to_owned()).filter(|r| !r.is_empty())),
            None => (s, None),
        };
        match (kind, rest) {
            ("tests", f) => Some(CheckTarget::Tests(f)),
            ("benches", f) => Some(CheckTarget::Benches(f)),
            (k @ ("bin" | "example" | "bench" | "test"), Some(name)) => {
                Some(CheckTarget::Single { kind: k.to_owned(), name })
            }
            _ => None,
        }
    }
}

impl fmt::Display for CheckTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckTarget::Single { kind, name } => write!(f, "{kind}:{name}"),
            CheckTarget::Tests(None) => f.write_str("tests"),
            CheckTarget::Tests(Some(x)) => write!(f, "tests:{x}"),
            CheckTarget::Benches(None) => f.write_str("benches"),
            CheckTarget::Benches(Some(x)) => write!(f, "benches:{x}"),
        }
    }
}

/// A configuration and where it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The values.
    pub config: Config,
    /// `contprof.toml`, or `Cargo.toml [workspace.metadata.contprof]`; `None` when there is none.
    pub source: Option<String>,
}

/// An invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys and values of the wrong type.
    #[error("invalid configuration in {source_name}: {message}")]
    Parse {
        /// File (and table) read.
        source_name: String,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value of the right type out of range.
    #[error("invalid configuration in {source_name}: `{key}` {message}")]
    Value {
        /// File (and table) read.
        source_name: String,
        /// The key, dotted (`thresholds.cpu`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Finds and reads the configuration of the workspace rooted at `root` whose metadata is given.
pub fn load(root: &Path, metadata: &cargo_metadata::Metadata) -> Result<Loaded, ConfigError> {
    load_at(root, Some(metadata.workspace_members.len() == 1))
}

/// [`load`] without cargo metadata: `single_package` says whether `[package.metadata.contprof]`
/// counts (a one-package project); `None`: the manifest says, a one-package project being one
/// with no `[workspace]` table or one without other members.
pub fn load_at(root: &Path, single_package: Option<bool>) -> Result<Loaded, ConfigError> {
    let file = root.join(FILE_NAME);
    if file.is_file() {
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        return parse(&text, &file.display().to_string());
    }
    let manifest = root.join("Cargo.toml");
    let Ok(text) = std::fs::read_to_string(&manifest) else { return Ok(Loaded::default()) };
    let Ok(table) = text.parse::<toml::Table>() else { return Ok(Loaded::default()) };
    let nested = |top: &str| table.get(top)?.get("metadata")?.get("contprof").cloned();
    let single_package = single_package.unwrap_or_else(|| {
        table.get("workspace").and_then(|w| w.get("members")).and_then(toml::Value::as_array).is_none_or(
            |m| {
                m.iter().all(|member| {
                    member.as_str().is_some_and(|p| p.trim_end_matches('/') == "." || p.is_empty())
                })
            },
        )
    });
    let found = nested("workspace").map(|v| (v, "workspace")).or_else(|| {
        // A single-package project: its package metadata.
        single_package.then(|| nested("package").map(|v| (v, "package"))).flatten()
    });
    let Some((value, top)) = found else { return Ok(Loaded::default()) };
    let name = format!("[{top}.metadata.contprof] of {}", manifest.display());
    let text = match value {
        toml::Value::Table(t) => toml::to_string(&t).unwrap_or_default(),
        _ => {
            return Err(ConfigError::Parse { source_name: name, message: "expected a table".into() });
        }
    };
    parse(&text, &name)
}

/// Parses and validates configuration text; `name` names its source in errors.
pub fn parse(text: &str, name: &str) -> Result<Loaded, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        source_name: name.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    validate(&config, name)?;
    Ok(Loaded { config, source: Some(name.to_owned()) })
}

fn validate(c: &Config, name: &str) -> Result<(), ConfigError> {
    let bad = |key: &str, message: String| ConfigError::Value {
        source_name: name.to_owned(),
        key: key.to_owned(),
        message,
    };
    if let Some(a) = c.alpha
        && !(a > 0.0 && a < 1.0)
    {
        return Err(bad("alpha", format!("is {a}, expected a number in (0, 1)")));
    }
    if let Some(f) = c.floor_share
        && !(0.0..1.0).contains(&f)
    {
        return Err(bad("floor_share", format!("is {f}, expected a number in [0, 1)")));
    }
    let effects = [
        ("min_effect", c.min_effect),
        ("thresholds.cpu", c.thresholds.cpu),
        ("thresholds.alloc_bytes", c.thresholds.alloc_bytes),
        ("thresholds.alloc_count", c.thresholds.alloc_count),
        ("thresholds.inuse_bytes", c.thresholds.inuse_bytes),
        ("thresholds.instructions", c.thresholds.instructions),
        ("thresholds.contention", c.thresholds.contention),
        ("thresholds.wall", c.thresholds.wall),
    ];
    for (key, v) in effects {
        if let Some(v) = v
            && !(v >= 0.0 && v.is_finite())
        {
            return Err(bad(key, format!("is {v}, expected a relative change >= 0 (0.05 = 5%)")));
        }
    }
    for p in &c.ignore {
        if let Err(e) = regex::Regex::new(p) {
            return Err(bad("ignore", format!("has an invalid regular expression `{p}`: {e}")));
        }
    }
    for k in &c.ignore_crates {
        if k.is_empty() || !k.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-') {
            return Err(bad("ignore_crates", format!("has `{k}`, which is not a crate name")));
        }
    }
    if c.check.runs == Some(0) {
        return Err(bad("check.runs", "is 0, expected at least 1".into()));
    }
    for t in &c.check.targets {
        if CheckTarget::parse(t).is_none() {
            return Err(bad(
                "check.targets",
                format!(
                    "has `{t}`; expected `bin:NAME`, `example:NAME`, `bench:NAME`, `test:NAME`, \
                     `tests[:FILTER]` or `benches[:FILTER]`"
                ),
            ));
        }
    }
    Ok(())
}

/// What a command's flags change in the comparison options the configuration gives (`--alpha`,
/// `--min-effect`, `--ignore`, `--strict` of `compare`, `check` and `prod compare`); the viewer
/// has none.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The false-discovery rate.
    pub alpha: Option<f64>,
    /// The smallest relative change reported, for every metric (replaces the per-metric ones).
    pub min_effect: Option<f64>,
    /// More patterns of functions to leave out.
    pub ignore: Vec<String>,
    /// Strict mode (added to the configuration's).
    pub strict: bool,
}

impl Config {
    /// The comparison options of this configuration, then `overrides`, validated: the one way
    /// every front end (`compare`, `check`, `prod compare`, the viewer) gets them.
    pub fn comparison_options(&self, overrides: &Overrides) -> crate::errors::Result<Options> {
        let mut o = self.options();
        if let Some(a) = overrides.alpha {
            o.alpha = a;
        }
        if let Some(m) = overrides.min_effect {
            o.default_min_effect = m;
            o.min_effect.clear();
        }
        o.strict |= overrides.strict;
        let mut patterns = self.ignore_patterns();
        patterns.extend(overrides.ignore.iter().cloned());
        o.ignore = Options::ignore_patterns(&patterns)?;
        o.validate()?;
        Ok(o)
    }

    /// The comparison options of this configuration (defaults where unset).
    pub fn options(&self) -> Options {
        let mut o = Options::default();
        if let Some(a) = self.alpha {
            o.alpha = a;
        }
        if let Some(m) = self.min_effect {
            o.default_min_effect = m;
        }
        if let Some(f) = self.floor_share {
            o.floor_share = f;
        }
        o.strict = self.strict.unwrap_or(false);
        let t = &self.thresholds;
        let per_metric = [
            (Metric::Cpu, t.cpu),
            (Metric::AllocBytes, t.alloc_bytes),
            (Metric::AllocCount, t.alloc_count),
            (Metric::InuseBytes, t.inuse_bytes),
            (Metric::Instructions, t.instructions),
            (Metric::Delay, t.contention),
            (Metric::Contentions, t.contention),
            (Metric::Wall, t.wall),
        ];
        o.min_effect =
            per_metric.into_iter().filter_map(|(m, v)| v.map(|v| (m, v))).collect::<BTreeMap<_, _>>();
        o
    }

    /// Every ignore pattern: `ignore` and one per `ignore_crates` entry.
    pub fn ignore_patterns(&self) -> Vec<String> {
        let mut out = self.ignore.clone();
        out.extend(
            self.ignore_crates.iter().map(|k| format!(r"^<?{}::", regex::escape(&k.replace('-', "_")))),
        );
        out
    }

    /// The `[check] targets` (validated when loaded).
    pub fn check_targets(&self) -> Vec<CheckTarget> {
        self.check.targets.iter().filter_map(|t| CheckTarget::parse(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let text = r#"
alpha = 0.01
min_effect = 0.1
floor_share = 0.01
ignore = ["^x::"]
ignore_crates = ["tokio"]
fold_library = false
[thresholds]
cpu = 0.2
alloc_count = 0
contention = 0.3
wall = 0.15
[check]
runs = 7
no_baseline = "fail"
baseline = "stored"
targets = ["bin:a", "tests", "benches:parse"]
"#;
        let c = parse(text, "contprof.toml").map(|l| l.config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.check.runs, Some(7));
        assert_eq!(c.check.no_baseline, Some(NoBaseline::Fail));
        assert_eq!(c.check.baseline, Some(BaselineMode::Stored));
        let o = c.options();
        assert_eq!(o.alpha, 0.01);
        assert_eq!(o.min_effect(Metric::Cpu), 0.2);
        assert_eq!(o.min_effect(Metric::AllocBytes), 0.1);
        assert_eq!(o.min_effect(Metric::AllocCount), 0.0);
        assert_eq!((o.min_effect(Metric::Delay), o.min_effect(Metric::Contentions)), (0.3, 0.3));
        assert_eq!(o.min_effect(Metric::Wall), 0.15);
        assert_eq!(c.ignore_patterns(), vec!["^x::".to_owned(), "^<?tokio::".to_owned()]);
        assert_eq!(c.check_targets()[2], CheckTarget::Benches(Some("parse".into())));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_file() {
        let e = parse("alpah = 0.1", "/p/contprof.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("alpah") && e.contains("/p/contprof.toml"), "{e}");
        let e = parse("[thresholds]\ncpux = 1", "f").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("cpux"), "{e}");
        let e = parse("alpha = 2.0", "f.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`alpha`") && e.contains("f.toml"), "{e}");
        let e = parse("alpha = \"x\"", "f.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("alpha"), "{e}");
        let e = parse("[check]\ntargets = [\"bogus\"]", "f").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("check.targets") && e.contains("bogus"), "{e}");
        let e = parse("[thresholds]\ncontention = -1", "f").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("thresholds.contention"), "{e}");
    }
}
