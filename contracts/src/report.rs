//! The versioned JSON report of `compare`, `check` and `prod compare` (`--format json`): the
//! contract CI and other tools read, as [`Report`], which reads it back with `serde_json`.
//!
//! ```json
//! {"version": 2, "base": {...}, "head": {...}, "settings": {...},
//!  "regressions": [...], "improvements": [...], "shifted": [...], "moved": [...], "possible": [...],
//!  "new": [...], "vanished": [...], "inherited": [...], "warnings": [...], "groups": [...], "summary": {...},
//!  "timings": {...}}
//! ```
//! Each entry of the lists is a [`Finding`]: `group`, `function`, `metric`, `kind`, `base`, `head`,
//! `base_share`, `head_share`, `change`, `ci_low`, `ci_high`, `p`, `q`, `runs_base`, `runs_head`,
//! `method`, `verdict`, `inherited`, `explained`, and `cause` and `cause_role` (below). Unchanged
//! findings are not listed (they are counted). Version 2: `regressions` and `improvements` hold
//! only changes the diff explains (code on the function's call paths changed); the others are in
//! `shifted`. `groups` holds, per group and sampled metric, the spread used and the minimum
//! detectable effect ([`Power`]). `moved` holds the changes whose cost moved
//! between functions while a function on every call path to them did not change as much (see the
//! engine's `compare::moved`; each names that function in `moved_within`): reported, not gated. `timings` (only from `check`) says where the
//! job's time went ([`Timings`]).
//!
//! `causes` lists the changes once per cause (the engine's `compare::causes`): `id` (stable:
//! `<metric>:<verdict>:<function>`), `function`, `metric`, `verdict`, the `groups` where its own
//! change was found, `change_min`/`change_max` over them, `findings` (how many findings it groups)
//! and `roles` (how many of them per role). Every listed finding names its cause's `id` in
//! `cause`, and its `cause_role`: `cause` (the function's own change in one group), `total` (its
//! total cost), `caller_total` (a caller's total cost that its change accounts for) or `inlined`
//! (a function inlined into it). The gate is unchanged: it fails iff `regressions` is non-empty.
//! `breakdowns` (only with `--by KEY`) holds per group and metric each value of a sample label
//! with its median part of a run in base and head and whether it changed ([`Breakdown`]).
//! Adding fields is not a version change; renaming, removing or changing a meaning is.
//!
//! ```
//! # fn main() -> Result<(), serde_json::Error> {
//! # let json = r#"{"version": 2, "base": {"commit": "a"}, "head": {"commit": "b"},
//! #   "settings": {"alpha": 0.05, "confidence": 0.95, "min_effect": {"cpu": 0.05}, "floor_share": 0.005,
//! #     "min_samples": 1.0, "ignore": [], "normalized": ["cpu"], "single_run_jitter": 0.05,
//! #     "moderate_variance": true, "strict": false, "between_batch_sd": 0.0, "wait_between_batch_sd": 0.0,
//! #     "interleaved": false},
//! #   "regressions": [], "improvements": [], "shifted": [], "moved": [], "possible": [], "new": [],
//! #   "vanished": [], "inherited": [], "warnings": [], "groups": [],
//! #   "summary": {"verdict": "unchanged", "groups_compared": 1, "tests": 0, "gating_tests": 0,
//! #     "findings": 0, "regressions": 0, "improvements": 0, "possible_regressions": 0,
//! #     "possible_improvements": 0, "new": 0, "vanished": 0, "inherited": 0, "inconclusive": 0,
//! #     "shifted": 0, "moved": 0, "below_floor": 0, "causes": 0, "ignored": 0},
//! #   "causes": []}"#;
//! use contprof_contracts::report::{Outcome, Report};
//!
//! let report: Report = serde_json::from_str(json)?;
//! if report.summary.verdict == Outcome::Regression {
//!     for f in &report.regressions {
//!         println!("{} {} {:+.1}%", f.group, f.function, f.change.unwrap_or(0.0) * 100.0);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the JSON report layout.
pub const REPORT_VERSION: u32 = 2;

/// The JSON report, as written by `--format json` and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`] of the writer.
    pub version: u32,
    /// The base revision.
    pub base: RevisionInfo,
    /// The head revision.
    pub head: RevisionInfo,
    /// The settings of the comparison.
    pub settings: ReportSettings,
    /// Regressions the diff explains (the gate fails iff this is not empty).
    pub regressions: Vec<Finding>,
    /// Improvements the diff explains.
    pub improvements: Vec<Finding>,
    /// Changes in code the diff did not change (not gated unless `--strict`).
    pub shifted: Vec<Finding>,
    /// Cost that moved between functions (not gated unless `--strict`).
    pub moved: Vec<Finding>,
    /// Possible regressions and improvements (a side with a single run).
    pub possible: Vec<Finding>,
    /// Functions absent from every base run.
    pub new: Vec<Finding>,
    /// Functions absent from every head run.
    pub vanished: Vec<Finding>,
    /// Total-cost changes accounted for by self-cost changes.
    pub inherited: Vec<Finding>,
    /// Warnings, each with its message.
    pub warnings: Vec<WarningEntry>,
    /// Per group and sampled metric: the spread used and the minimum detectable effect.
    pub groups: Vec<Power>,
    /// Counts and the outcome.
    pub summary: Summary,
    /// The changes once per cause.
    pub causes: Vec<Cause>,
    /// Where the time of a `check` went (only from `check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Per group and metric, the breakdown by a sample label (only with `--by KEY`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdowns: Vec<Breakdown>,
}

/// A warning of the report: its fields, tagged by `kind`, and its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningEntry {
    /// The warning.
    #[serde(flatten)]
    pub warning: Warning,
    /// What it says, as the text report prints it.
    pub message: String,
}

/// A side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The base revision (the one compared against).
    Base,
    /// The head revision (the one judged).
    Head,
}

impl Side {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Base => "base",
            Side::Head => "head",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a comparison in one word (`summary.verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one regression: the gate fails.
    Regression,
    /// No regression, at least one possible regression.
    PossibleRegression,
    /// No regression, at least one improvement.
    Improvement,
    /// Only cost that moved between functions.
    Moved,
    /// Only changes the diff does not explain.
    Shifted,
    /// Nothing changed beyond noise.
    Unchanged,
    /// No group has runs on both sides.
    #[default]
    NothingCompared,
}

impl Outcome {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Regression => "regression",
            Outcome::PossibleRegression => "possible_regression",
            Outcome::Improvement => "improvement",
            Outcome::Moved => "moved",
            Outcome::Shifted => "shifted",
            Outcome::Unchanged => "unchanged",
            Outcome::NothingCompared => "nothing_compared",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// CPU time in nanoseconds (usually estimated from samples: samples × period).
    Cpu,
    /// Instructions executed, counted by callgrind (the instructions engine): exact.
    Instructions,
    /// Bytes allocated during the run.
    AllocBytes,
    /// Number of allocations during the run.
    AllocCount,
    /// Bytes still allocated when the run ended.
    InuseBytes,
    /// Nanoseconds threads spent waiting for locks, condition variables and futexes
    /// (`--contention`; sample type `delay`), duration-sampled.
    Delay,
    /// Number of such waits (`--contention`; sample type `contentions`), duration-sampled.
    Contentions,
    /// Nanoseconds of every thread's wall time, on CPU or off (`--wall`; sample type `wall`),
    /// sampled at a fixed wall-clock rate.
    Wall,
}

impl Metric {
    /// Every metric, in report order. New metrics are appended: rollups store a metric as its
    /// position here (`prod::rollup`).
    pub const ALL: [Metric; 8] = [
        Metric::Cpu,
        Metric::Instructions,
        Metric::AllocBytes,
        Metric::AllocCount,
        Metric::InuseBytes,
        Metric::Delay,
        Metric::Contentions,
        Metric::Wall,
    ];

    /// Whether the metric measures waiting, which the scheduler's interleaving of threads moves
    /// from batch to batch (the comparison gives it a larger between-batch spread).
    pub fn is_waiting(self) -> bool {
        matches!(self, Metric::Delay | Metric::Contentions | Metric::Wall)
    }

    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Instructions => "instructions",
            Metric::AllocBytes => "alloc_bytes",
            Metric::AllocCount => "alloc_count",
            Metric::InuseBytes => "inuse_bytes",
            Metric::Delay => "delay",
            Metric::Contentions => "contentions",
            Metric::Wall => "wall",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Self or total (inclusive) cost of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Cost of samples whose innermost frame is the function.
    #[serde(rename = "self")]
    SelfCost,
    /// Cost of samples with the function anywhere on the stack.
    Total,
}

impl Kind {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SelfCost => "self",
            Kind::Total => "total",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revision as the caller describes it; opaque to the comparison, shown in reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    /// Commit id.
    pub commit: String,
    /// What the user named it (`main`, `HEAD`, `v1.2`), if anything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// More facts to show (dirty tree, host, toolchain...), in key order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The settings as recorded in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSettings {
    /// False discovery rate.
    pub alpha: f64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Minimum relative effect per metric.
    pub min_effect: BTreeMap<Metric, f64>,
    /// Minimum share of the group's total.
    pub floor_share: f64,
    /// Minimum samples per run for sampled metrics.
    pub min_samples: f64,
    /// Ignore patterns.
    pub ignore: Vec<String>,
    /// Metrics tested relative to the run's stable cost.
    pub normalized: Vec<Metric>,
    /// Assumed spread for single-run comparisons.
    pub single_run_jitter: f64,
    /// Whether variances were moderated toward a fitted prior.
    pub moderate_variance: bool,
    /// Whether unexplained regressions gate (`--strict`).
    pub strict: bool,
    /// The default between-batch spread.
    pub between_batch_sd: f64,
    /// The default between-batch spread of the metrics of waiting.
    pub wait_between_batch_sd: f64,
    /// Whether base and head were recorded alternately (the empirical null is capped by the
    /// sides' own A/A).
    pub interleaved: bool,
}

/// What a finding concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant (q ≤ alpha) and larger than the minimum effect, or beyond the threshold for an
    /// exact metric: the function costs more.
    Regression,
    /// As `Regression`, the other way.
    Improvement,
    /// One side has a single run: the change looks real but the run-to-run spread of that side
    /// is unknown, so it is not a certainty.
    PossibleRegression,
    /// As `PossibleRegression`, the other way.
    PossibleImprovement,
    /// No change beyond noise and the minimum effect.
    Unchanged,
    /// Absent from every base run, above the floor in head.
    New,
    /// Absent from every head run, above the floor in base.
    Vanished,
    /// Not enough evidence either way (e.g. a single run and no clear change).
    Inconclusive,
    /// Changed beyond noise, but nothing on the function's call paths changed its machine code
    /// between base and head: code layout, the machine or the input moved it. Reported, not
    /// gated on (unless `--strict`, which keeps unexplained regressions as regressions).
    Shifted,
    /// Changed beyond noise, with code the diff changed, but a function on every call path to it
    /// (itself included) did not change by as much, and code under that function changed the
    /// other way: the cost moved between functions (inlining, code generation) while the work
    /// around them stayed the same (see `compare::moved`). Reported, not gated (unless
    /// `--strict`).
    Moved,
}

impl Verdict {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::PossibleRegression => "possible_regression",
            Verdict::PossibleImprovement => "possible_improvement",
            Verdict::Unchanged => "unchanged",
            Verdict::New => "new",
            Verdict::Vanished => "vanished",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Shifted => "shifted",
            Verdict::Moved => "moved",
        }
    }

    /// A change beyond noise, whichever way and however sure: regression, improvement, their
    /// possible forms, or a shift.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Verdict::Regression
                | Verdict::Improvement
                | Verdict::PossibleRegression
                | Verdict::PossibleImprovement
                | Verdict::Shifted
                | Verdict::Moved
        )
    }
}

/// How the evidence of a finding was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Welch's t-test on ln(cost + one sample) − ln(run total), shifted by the precision-weighted
    /// median change of all functions: cancels the machine's speed per run and the dilution of
    /// every share when one function grows.
    WelchLogShare,
    /// Welch's t-test on ln(cost + one sample) per run.
    WelchLog,
    /// Yuen's trimmed t-test on ln(cost + one sample) per run, a fifth of the runs cut at each end
    /// of every side with 8 runs or more: the metrics of waiting, whose runs have heavy tails.
    YuenLog,
    /// One side has a single run: its variance is borrowed from the other side (or assumed when
    /// both have one run); the result is only indicative.
    SingleRunLogShare,
    /// As `SingleRunLogShare`, on absolute cost.
    SingleRunLog,
    /// Exact metric: change of the means beyond the minimum effect and outside the range of runs.
    ExactThreshold,
    /// Present on one side only; reported by its cost.
    Presence,
}

impl Method {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::WelchLogShare => "welch-log-share",
            Method::WelchLog => "welch-log",
            Method::YuenLog => "yuen-log",
            Method::SingleRunLogShare => "single-run-log-share",
            Method::SingleRunLog => "single-run-log",
            Method::ExactThreshold => "exact-threshold",
            Method::Presence => "presence",
        }
    }
}

/// A production comparison's windows have comparable load when the cost outside the functions
/// above half of the metric moved by at most this, in thousandths (see [`Warning::Denominator`]).
pub const COMPARABLE_LOAD_PERMILLE: i64 = 100;

/// The comparison of one function, metric and kind in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Target, test or benchmark key.
    pub group: String,
    /// Function name (demangled, no hash).
    pub function: String,
    /// Metric.
    pub metric: Metric,
    /// Self or total cost.
    pub kind: Kind,
    /// Mean cost per base run, in the metric's unit.
    pub base: f64,
    /// Mean cost per head run.
    pub head: f64,
    /// Mean share of the group's total in base runs.
    pub base_share: f64,
    /// Mean share of the group's total in head runs.
    pub head_share: f64,
    /// Estimated relative change (0.25 = +25%): for tested metrics the ratio of geometric means
    /// of the tested quantity minus one (adjusted for the machine's speed when normalized);
    /// absent for new functions.
    pub change: Option<f64>,
    /// Lower bound of the confidence interval of `change`.
    pub ci_low: Option<f64>,
    /// Upper bound of the confidence interval of `change`.
    pub ci_high: Option<f64>,
    /// Two-sided p value of the test, when there is one.
    pub p: Option<f64>,
    /// Benjamini–Hochberg q value over every test of the comparison.
    pub q: Option<f64>,
    /// Runs used on the base side.
    pub runs_base: usize,
    /// Runs used on the head side.
    pub runs_head: usize,
    /// How the evidence was obtained.
    pub method: Method,
    /// The conclusion.
    pub verdict: Verdict,
    /// For a total-cost finding: the change is accounted for by self-cost changes found in the
    /// same group and metric (e.g. a caller of a regressed leaf), so it is not reported as a
    /// regression or improvement of its own.
    pub inherited: bool,
    /// Whether code on the function's call paths changed between base and head (see
    /// `compare::explain`); `None` when the runs carry no code fingerprints to tell.
    pub explained: Option<bool>,
    /// For a moved finding: the function on every call path to it whose total did not change as
    /// much, within which the cost moved (see `compare::moved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_within: Option<String>,
    /// How often the function was called, for instruction counts (callgrind counts calls):
    /// tells more work per call from more calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<Calls>,
    /// The id of the cause this finding is listed under (see `compare::causes` and
    /// [`Report::causes`]); `None` for unchanged and inconclusive findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// How the finding relates to its cause: its own change, its total, a caller's total or an
    /// inlined callee's self cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause_role: Option<CauseRole>,
}

/// Mean calls of a function per run, on each side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calls {
    /// Mean per base run.
    pub base: f64,
    /// Mean per head run.
    pub head: f64,
}

impl Finding {
    /// A regression or improvement to report at top level (not inherited).
    pub fn is_primary(&self) -> bool {
        !self.inherited
    }
}

/// Something the caller should know: a comparison that is weaker than asked or skipped data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Warning {
    /// A side has a single run of the group: verdicts for it are at most "possible".
    SingleRun {
        /// Group key.
        group: String,
        /// The side.
        side: Side,
    },
    /// The group has runs on one side only.
    GroupOnOneSide {
        /// Group key.
        group: String,
        /// The side that has runs.
        side: Side,
    },
    /// A metric was recorded on one side only.
    MetricOnOneSide {
        /// Group key.
        group: String,
        /// Metric.
        metric: Metric,
        /// The side that has it.
        side: Side,
    },
    /// One side measured a metric exactly and the other by sampling: compared statistically.
    MixedExactness {
        /// Group key.
        group: String,
        /// Metric.
        metric: Metric,
    },
    /// A run was left out of a metric's comparison.
    SkippedRun {
        /// Group key.
        group: String,
        /// Metric.
        metric: Metric,
        /// The side.
        side: Side,
        /// Position of the run in its side's list.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The runs of one side have few CPU samples: only large changes can be resolved.
    FewSamples {
        /// Group key.
        group: String,
        /// The side.
        side: Side,
        /// Mean CPU samples per run.
        samples_per_run: u64,
        /// Smallest change the group could resolve in a function holding 5% of CPU, in percent.
        min_detectable_percent: Option<u64>,
    },
    /// What a production comparison divided the metric by (`prod::denominator`): the rate per
    /// window, or the share of the window when a function above half of the metric cannot be
    /// judged by it.
    Denominator {
        /// Group key.
        group: String,
        /// Metric.
        metric: Metric,
        /// Compared by the metric per window (per instance) rather than by its share.
        rate: bool,
        /// The functions above half of the metric, with their share in thousandths.
        dominant: Vec<(String, u32)>,
        /// Relative change of the median window's metric outside them (the load), in thousandths.
        load_change_permille: Option<i64>,
        /// Compared by the metric per unit of work the program counted in each window
        /// (`contprof::labels::count_work`: requests served): the median window's units, base
        /// and head. `rate` is false then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        work_per_window: Option<(u64, u64)>,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::SingleRun { group, side } if is_production(group) => write!(
                f,
                "{group}: a single {side} window; verdicts are at most \"possible\" (select a longer span)"
            ),
            Warning::SingleRun { group, side } => write!(
                f,
                "{group}: a single {side} run; verdicts are at most \"possible\" (record more runs with --runs)"
            ),
            Warning::GroupOnOneSide { group, side } => {
                write!(f, "{group}: runs on the {side} side only, not compared")
            }
            Warning::MetricOnOneSide { group, metric, side } => {
                write!(f, "{group}: {metric} recorded on the {side} side only, not compared")
            }
            Warning::MixedExactness { group, metric } => {
                write!(
                    f,
                    "{group}: {metric} is exact on one side and sampled on the other; compared statistically"
                )
            }
            Warning::SkippedRun { group, metric, side, index, reason } => {
                write!(f, "{group}: {side} run #{index} left out of {metric}: {reason}")
            }
            Warning::Denominator { group, metric, rate, dominant, load_change_permille, work_per_window } => {
                let names: Vec<String> = dominant
                    .iter()
                    .map(|(n, s)| format!("`{n}` holds {:.0}% of {metric}", f64::from(*s) / 10.0))
                    .collect();
                let load = load_change_permille.map(|c| {
                    format!("the {metric} outside it moved by {:+.1}% (median window)", c as f64 / 10.0)
                });
                let load = load.unwrap_or_else(|| format!("no {metric} outside it to tell the load by"));
                let unit = if *metric == Metric::Cpu { "CPU".to_owned() } else { metric.to_string() };
                if let Some((base, head)) = work_per_window {
                    write!(
                        f,
                        "{group}: compared by {unit} per unit of work the program counted (median window: \
                         {base} units in base, {head} in head), not by its share of the window"
                    )?;
                    if !names.is_empty() {
                        write!(f, ": {}", names.join(", "))?;
                    }
                    Ok(())
                } else if *rate {
                    write!(
                        f,
                        "{group}: compared by {unit} per window (per instance), not by its share of the window"
                    )?;
                    let comparable =
                        load_change_permille.is_some_and(|c| c.abs() <= COMPARABLE_LOAD_PERMILLE);
                    if names.is_empty() {
                        write!(f, " (--denominator rate)")
                    } else if comparable {
                        write!(f, ": {}, and the windows' load is comparable: {load}", names.join(", "))
                    } else {
                        write!(
                            f,
                            " (--denominator rate): {}, though the windows' load is not comparable: {load} \
                             (a change in the load moves the rate too)",
                            names.join(", ")
                        )
                    }
                } else {
                    write!(
                        f,
                        "{group}: {}: its share of the window cannot judge it (1.5x slower at 87% moves it to \
                         91%); it is compared by share because the windows' load is not comparable: {load} \
                         (count the work done with `contprof::labels::count_work`, select windows of \
                         comparable load, or --denominator rate)",
                        names.join(", ")
                    )
                }
            }
            Warning::FewSamples { group, side, samples_per_run, min_detectable_percent } => {
                let runs = if is_production(group) { "windows" } else { "runs" };
                write!(f, "{group}: {side} {runs} have ~{samples_per_run} CPU samples each")?;
                match min_detectable_percent {
                    Some(p) => write!(
                        f,
                        ": only changes of {p}% or more can be told from noise in a function holding 5% of CPU"
                    )?,
                    None => write!(f, ", too few to tell changes of a few percent from sampling noise")?,
                }
                if is_production(group) {
                    write!(
                        f,
                        "; select a longer span, or give the agent longer windows (CONTPROF_WINDOW) or a higher CONTPROF_FREQUENCY"
                    )
                } else {
                    write!(f, "; record longer runs, more --runs, or a higher --frequency")
                }
            }
        }
    }
}

/// Whether a group holds production windows (`prod compare` names them `prod/<service>/<type>`),
/// whose advice is about spans and the agent, not `--runs`.
fn is_production(group: &str) -> bool {
    group.starts_with("prod/")
}

/// Where a group's between-batch spread came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftSource {
    /// The empirical null: the spread of every function's change in this comparison.
    Comparison,
    /// Earlier batches of the same target and settings in the store (A/A pairs of history).
    History,
    /// The mean of the comparison's and the history's estimates.
    Pooled,
    /// The conservative default (`Options::between_batch_sd`): neither of the others said more.
    Default,
    /// Not applied: exact metric, or nothing to estimate it from and no default.
    None,
}

/// The smallest change a group's comparison could have seen in a function of a given share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detectable {
    /// Share of the metric held by the function (0.05 = 5%).
    pub share: f64,
    /// Smallest relative change (0.12 = +12%) found with 80% probability at the comparison's
    /// false discovery rate (as the first discovery among the tests that can gate), and at least
    /// the minimum effect.
    pub change: f64,
}

/// The power of one group's comparison of one sampled metric: what a "no regression" is worth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Power {
    /// Group key.
    pub group: String,
    /// Metric.
    pub metric: Metric,
    /// Runs on the base side.
    pub runs_base: usize,
    /// Runs on the head side.
    pub runs_head: usize,
    /// Mean samples per run over both sides.
    pub samples_per_run: f64,
    /// Run-to-run variance of functions relative to pure sampling noise (median over functions,
    /// at least 1).
    pub overdispersion: f64,
    /// Standard deviation, on the log scale, added to every function's change for the spread
    /// between batches that within-batch variances do not show.
    pub between_batch_sd: f64,
    /// Where `between_batch_sd` came from.
    pub drift_source: DriftSource,
    /// This comparison's own estimate of that spread (its empirical null), when it had enough
    /// functions to make one.
    pub comparison_sd: Option<f64>,
    /// With base and head interleaved: the same estimate between the halves of each side's runs
    /// (an A/A of the same workload), the most of `comparison_sd` that is used; what the
    /// comparison shows beyond it is real shifts (layout) of functions the diff did not change.
    pub sides_sd: Option<f64>,
    /// The minimum detectable effect at a few shares.
    pub min_detectable: Vec<Detectable>,
}

impl Power {
    /// Shares at which the minimum detectable effect is reported.
    pub const SHARES: [f64; 3] = [0.01, 0.05, 0.20];

    /// The minimum detectable change at `share`, or `None` if not computed there.
    pub fn at(&self, share: f64) -> Option<f64> {
        self.min_detectable.iter().find(|d| (d.share - share).abs() < 1e-12).map(|d| d.change)
    }
}

/// A group's metric broken down by the values of one sample label (`compare --by KEY`, `prod
/// compare --by KEY`): each value's part of every run (window) on both sides, and whether it
/// changed beyond the runs' spread. Informative: a breakdown never gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Group key.
    pub group: String,
    /// Metric.
    pub metric: Metric,
    /// The sample label's key.
    pub key: String,
    /// What each value's change is tested on: its share of each run's metric (the metrics
    /// compared as shares, CPU by default) or its amount per run.
    pub tested: BreakdownFigure,
    /// The values, by their larger median share, largest first (at most [`Breakdown::ROWS`]).
    pub rows: Vec<BreakdownRow>,
    /// Values past the rows, not listed.
    pub other_values: usize,
}

impl Breakdown {
    /// Most values listed.
    pub const ROWS: usize = 20;
}

/// What a breakdown's values are tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownFigure {
    /// The value's share of each run's metric.
    Share,
    /// The value's amount of the metric in each run.
    Amount,
}

/// One value of a [`Breakdown`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownRow {
    /// The label's value; `null` for the samples without the label.
    pub value: Option<String>,
    /// Median over the base runs of the value's amount of the metric in a run (its unit).
    pub base: f64,
    /// Same for the head runs.
    pub head: f64,
    /// Median over the base runs of the value's share of the run's metric (0.25 = 25%).
    pub base_share: f64,
    /// Same for the head runs.
    pub head_share: f64,
    /// Relative change of the tested figure's median, head against base (`null` when the base's is 0).
    pub change: Option<f64>,
    /// Two-sided p value of Yuen's trimmed test of the runs' tested figures (`null` with fewer
    /// than two runs a side).
    pub p: Option<f64>,
    /// Whether the value changed: `p` below the comparison's `alpha` over the number of rows
    /// (Bonferroni) and `change` at least the metric's minimum effect.
    pub changed: bool,
}

/// Counts over a comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The outcome in one word.
    pub verdict: Outcome,
    /// Groups with runs on both sides.
    pub groups_compared: usize,
    /// Statistical tests.
    pub tests: usize,
    /// Of those, the tests of functions the diff can explain: the false discovery rate family
    /// that can gate (the others form their own family, for `shifted`).
    pub gating_tests: usize,
    /// Findings (above the floor, not ignored).
    pub findings: usize,
    /// Primary regressions.
    pub regressions: usize,
    /// Primary improvements.
    pub improvements: usize,
    /// Possible regressions (single run).
    pub possible_regressions: usize,
    /// Possible improvements (single run).
    pub possible_improvements: usize,
    /// New functions.
    pub new: usize,
    /// Vanished functions.
    pub vanished: usize,
    /// Regressions and improvements of total cost accounted for by self-cost changes.
    pub inherited: usize,
    /// Inconclusive findings.
    pub inconclusive: usize,
    /// Changes beyond noise that the diff's code changes do not explain.
    pub shifted: usize,
    /// Changes of cost that moved between functions within one whose total did not change.
    pub moved: usize,
    /// (function, metric, kind) series below the floor, not tested.
    pub below_floor: usize,
    /// Causes the changes group into (`causes` of the report): one per function whose change the
    /// others are evidence of.
    pub causes: usize,
    /// Functions left out by the ignore list.
    pub ignored: usize,
}

/// How a finding relates to the cause it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseRole {
    /// The cause's own change (its self cost, or its presence) in one group.
    Cause,
    /// The cause's total cost.
    Total,
    /// The total cost of a caller, accounted for by the cause's change.
    CallerTotal,
    /// The self cost of a function inlined into the cause.
    Inlined,
}

impl CauseRole {
    /// The name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseRole::Cause => "cause",
            CauseRole::Total => "total",
            CauseRole::CallerTotal => "caller_total",
            CauseRole::Inlined => "inlined",
        }
    }
}

/// One cause: a function whose cost changed, once, with the findings that are its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// Stable identifier, `<metric>:<verdict>:<function>`: the same cause has the same id in
    /// every comparison (findings name it in `cause`).
    pub id: String,
    /// The function.
    pub function: String,
    /// The metric.
    pub metric: Metric,
    /// The verdict of its own findings (the strongest of them: a regression before a possible one).
    pub verdict: Verdict,
    /// The groups (tests, benchmarks, targets) where its own change was found, in order.
    pub groups: Vec<String>,
    /// Smallest and largest change of its own findings (`None` for new functions).
    pub change_min: Option<f64>,
    /// See `change_min`.
    pub change_max: Option<f64>,
    /// Every finding grouped under it, its own included.
    pub findings: usize,
    /// Of those, how many per role.
    pub roles: BTreeMap<CauseRole, usize>,
    /// Indices (into the engine's list of every finding of the comparison) of its findings, its
    /// representative first: the own finding with the largest change. Not in the JSON (the
    /// findings name their cause): empty in a report read back.
    #[serde(skip)]
    pub members: Vec<usize>,
}

/// A phase of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `cargo build` of the workload (a fresh build's check included).
    Build,
    /// Running the workload under the agent (and listing tests or benchmarks).
    Runs,
    /// Symbolizing the samples, writing the profiles and flame graphs, storing the run.
    Profiles,
    /// Finding the baseline, reading the stored runs, the comparison, the "why" section and the
    /// differential flame graphs.
    Analysis,
}

impl Phase {
    /// Every phase, in the order of a `check`.
    pub const ALL: [Phase; 4] = [Phase::Build, Phase::Runs, Phase::Profiles, Phase::Analysis];

    /// The name used in the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Runs => "runs",
            Phase::Profiles => "profiles",
            Phase::Analysis => "analysis",
        }
    }
}

/// One phase's time, for one side of the comparison where it has sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// The phase.
    pub phase: Phase,
    /// `base` or `head` for work done per side (the rebuilt base of an interleaved check has its
    /// own builds, runs and profiles); absent for the analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// Where the time of a `check` went: the `timings` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Wall time from the start of `check` to its reports, in seconds (the phases, plus reading
    /// the workspace's metadata and checking out the base).
    pub total_seconds: f64,
    /// Phases with time spent, in order: builds, runs, profiles (head, then base), analysis.
    pub phases: Vec<PhaseTime>,
    /// Runs recorded a side against the most allowed, when the sides were recorded in pairs and
    /// looked at as they went (`compare::sequential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunsUsed>,
}

/// How many of its runs a `check` recorded in pairs used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsUsed {
    /// Runs recorded a side.
    pub used: u32,
    /// The most it would have recorded (`--runs`).
    pub max: u32,
}

impl Timings {
    /// One line: `68.2 s: build 15.5 s (head) + 15.5 s (base), runs 9.1 s (head) + ...`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for phase in Phase::ALL {
            let of_phase: Vec<String> = self
                .phases
                .iter()
                .filter(|p| p.phase == phase)
                .map(|p| match &p.side {
                    Some(side) => format!("{:.1} s ({side})", p.seconds),
                    None => format!("{:.1} s", p.seconds),
                })
                .collect();
            if !of_phase.is_empty() {
                parts.push(format!("{} {}", phase.as_str(), of_phase.join(" + ")));
            }
        }
        let runs = match self.runs {
            Some(r) if r.used < r.max => {
                format!(
                    "; {} of at most {} runs a side (stopped when every function was clearly unchanged)",
                    r.used, r.max
                )
            }
            Some(r) => format!("; {} runs a side", r.used),
            None => String::new(),
        };
        format!("{:.1} s: {}{runs}", self.total_seconds, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON name of a unit variant, checked to read back as itself.
    fn name<T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(v: T) -> String {
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(serde_json::from_value::<T>(json.clone()).unwrap(), v);
        json.as_str().unwrap().to_owned()
    }

    #[test]
    fn the_names_in_json_are_the_names_in_reports() {
        use Verdict as V;
        let verdicts = [
            V::Regression,
            V::Improvement,
            V::PossibleRegression,
            V::PossibleImprovement,
            V::Unchanged,
            V::New,
            V::Vanished,
            V::Inconclusive,
            V::Shifted,
            V::Moved,
        ];
        for v in verdicts {
            assert_eq!(name(v), v.as_str());
        }
        for m in Metric::ALL {
            assert_eq!(name(m), m.as_str());
        }
        for k in [Kind::SelfCost, Kind::Total] {
            assert_eq!(name(k), k.as_str());
        }
        use Outcome as O;
        for o in [
            O::Regression,
            O::PossibleRegression,
            O::Improvement,
            O::Moved,
            O::Shifted,
            O::Unchanged,
            O::NothingCompared,
        ] {
            assert_eq!(name(o), o.as_str());
        }
        use Method as M;
        for m in [
            M::WelchLogShare,
            M::WelchLog,
            M::YuenLog,
            M::SingleRunLogShare,
            M::SingleRunLog,
            M::ExactThreshold,
            M::Presence,
        ] {
            assert_eq!(name(m), m.as_str());
        }
        for r in [CauseRole::Cause, CauseRole::Total, CauseRole::CallerTotal, CauseRole::Inlined] {
            assert_eq!(name(r), r.as_str());
        }
        for s in [Side::Base, Side::Head] {
            assert_eq!(name(s), s.as_str());
        }
        for p in Phase::ALL {
            assert_eq!(name(p), p.as_str());
        }
    }

    #[test]
    fn warnings_read_back_with_their_kind_and_message() {
        let warnings = [
            Warning::SkippedRun {
                group: "bin/app".into(),
                metric: Metric::AllocBytes,
                side: Side::Head,
                index: 2,
                reason: "no sample".into(),
            },
            Warning::Denominator {
                group: "prod/api/cpu".into(),
                metric: Metric::Cpu,
                rate: true,
                dominant: vec![("work".into(), 870)],
                load_change_permille: Some(-12),
                work_per_window: None,
            },
            Warning::Denominator {
                group: "prod/api/cpu".into(),
                metric: Metric::Cpu,
                rate: false,
                dominant: vec![("work".into(), 870)],
                load_change_permille: Some(400),
                work_per_window: Some((1200, 1710)),
            },
        ];
        for warning in warnings {
            let entry = WarningEntry { message: warning.to_string(), warning };
            let json = serde_json::to_value(&entry).unwrap();
            assert!(json["kind"].is_string() && json["message"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<WarningEntry>(json).unwrap(), entry);
        }
    }
}
