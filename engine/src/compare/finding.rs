//! The output of a comparison: one [`Finding`] per tested (group, function, metric, kind), the
//! warnings met on the way, and a summary.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::model::{Kind, Metric, RevisionInfo};
use super::options::ReportSettings;

/// What a finding concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

/// The comparison of one function, metric and kind in one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// [`Comparison::causes`]); `None` for unchanged and inconclusive findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// How the finding relates to its cause: its own change, its total, a caller's total or an
    /// inlined callee's self cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause_role: Option<CauseRole>,
}

/// Mean calls of a function per run, on each side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Warning {
    /// A side has a single run of the group: verdicts for it are at most "possible".
    SingleRun {
        /// Group key.
        group: String,
        /// `base` or `head`.
        side: &'static str,
    },
    /// The group has runs on one side only.
    GroupOnOneSide {
        /// Group key.
        group: String,
        /// The side that has runs.
        side: &'static str,
    },
    /// A metric was recorded on one side only.
    MetricOnOneSide {
        /// Group key.
        group: String,
        /// Metric.
        metric: Metric,
        /// The side that has it.
        side: &'static str,
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
        /// `base` or `head`.
        side: &'static str,
        /// Position of the run in its side's list.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// The runs of one side have few CPU samples: only large changes can be resolved.
    FewSamples {
        /// Group key.
        group: String,
        /// `base` or `head`.
        side: &'static str,
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
            Warning::Denominator { group, metric, rate, dominant, load_change_permille } => {
                let names: Vec<String> = dominant
                    .iter()
                    .map(|(n, s)| format!("`{n}` holds {:.0}% of {metric}", f64::from(*s) / 10.0))
                    .collect();
                let load = load_change_permille.map(|c| {
                    format!("the {metric} outside it moved by {:+.1}% (median window)", c as f64 / 10.0)
                });
                let load = load.unwrap_or_else(|| format!("no {metric} outside it to tell the load by"));
                if *rate {
                    let unit = if *metric == Metric::Cpu { "CPU".to_owned() } else { metric.to_string() };
                    write!(
                        f,
                        "{group}: compared by {unit} per window (per instance), not by its share of the window"
                    )?;
                    if names.is_empty() {
                        write!(f, " (--denominator rate)")
                    } else {
                        write!(f, ": {}, and the windows' load is comparable: {load}", names.join(", "))
                    }
                } else {
                    write!(
                        f,
                        "{group}: {}: its share of the window cannot judge it (1.5x slower at 87% moves it to                          91%); it is compared by share because the windows' load is not comparable: {load}                          (select windows of comparable load, or --denominator rate)",
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

/// Whether a group holds production windows (`prod::rollouts::compare_loaded` names them
/// `prod/<service>/<type>`), whose advice is about spans and the agent, not `--runs`.
fn is_production(group: &str) -> bool {
    group.starts_with("prod/")
}

/// Where a group's between-batch spread came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detectable {
    /// Share of the metric held by the function (0.05 = 5%).
    pub share: f64,
    /// Smallest relative change (0.12 = +12%) found with 80% probability at the comparison's
    /// false discovery rate (as the first discovery among the tests that can gate), and at least
    /// the minimum effect.
    pub change: f64,
}

/// The power of one group's comparison of one sampled metric: what a "no regression" is worth.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Counts over a comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// One-word outcome: `regression`, `possible_regression`, `improvement`, `moved` (only cost
    /// that moved between functions), `shifted` (only unexplained changes), `unchanged`, or
    /// `nothing_compared`.
    pub verdict: &'static str,
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

/// The result of comparing base and head runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The base revision.
    pub base: RevisionInfo,
    /// The head revision.
    pub head: RevisionInfo,
    /// The settings used.
    pub settings: ReportSettings,
    /// Every finding, ordered by group, metric, kind, function.
    pub findings: Vec<Finding>,
    /// Warnings, ordered.
    pub warnings: Vec<Warning>,
    /// Per group and sampled metric: the spread used and the smallest detectable changes.
    pub power: Vec<Power>,
    /// Counts.
    pub summary: Summary,
    /// The changes grouped by cause, in the order of their verdicts (see `compare::causes`).
    pub causes: Vec<Cause>,
    /// Where the time went, when `check` made the comparison (the reports show it).
    pub timings: Option<crate::timing::Timings>,
}

impl Comparison {
    /// Whether a regression was found with certainty (the CI gate fails on this).
    pub fn has_regression(&self) -> bool {
        self.summary.regressions > 0
    }

    /// Primary findings with `verdict`, most changed first.
    pub fn with_verdict(&self, verdict: Verdict) -> Vec<&Finding> {
        let mut out: Vec<&Finding> =
            self.findings.iter().filter(|f| f.verdict == verdict && !f.inherited).collect();
        out.sort_by(|a, b| {
            let key = |f: &Finding| f.change.map(f64::abs).unwrap_or(f.head_share.max(f.base_share));
            a.group
                .cmp(&b.group)
                .then(a.metric.cmp(&b.metric))
                .then(key(b).total_cmp(&key(a)))
                .then(a.function.cmp(&b.function))
                .then(a.kind.cmp(&b.kind))
        });
        out
    }

    /// The causes of `verdict`'s kind ([`Verdict::PossibleRegression`] goes with
    /// [`Verdict::Regression`], [`Verdict::PossibleImprovement`] with [`Verdict::Improvement`]).
    pub fn causes_of(&self, verdict: Verdict) -> Vec<&Cause> {
        self.causes.iter().filter(|c| c.verdict == verdict).collect()
    }

    /// The findings of a cause, its representative first.
    pub fn members(&self, cause: &Cause) -> Vec<&Finding> {
        cause.members.iter().filter_map(|&i| self.findings.get(i)).collect()
    }

    /// Total-cost findings marked inherited, ordered like [`Comparison::with_verdict`].
    pub fn inherited(&self) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self.findings.iter().filter(|f| f.inherited).collect();
        out.sort_by(|a, b| (&a.group, a.metric, &a.function).cmp(&(&b.group, b.metric, &b.function)));
        out
    }
}

/// How a finding relates to the cause it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Indices (into `Comparison::findings`) of its findings, its representative first: the own
    /// finding with the largest change.
    #[serde(skip)]
    pub members: Vec<usize>,
}
