//! Settings of a comparison: significance level, practical thresholds, floors and ignore lists.

use std::collections::{BTreeMap, BTreeSet};

pub use contprof_contracts::report::ReportSettings;
use regex::Regex;

use super::CompareError;
use super::model::Metric;

/// The smallest relative change of a function's instruction count reported when
/// `[thresholds] instructions` does not say: counts repeat exactly for deterministic code, and
/// this stays above the jitter of hash seeds, thread interleaving and time measured on real crates
/// (`docs/src/guide/instructions.md`).
pub const DEFAULT_INSTRUCTIONS_EFFECT: f64 = 0.005;

/// How a comparison decides. Build with [`Options::default`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// False discovery rate: a change is significant when its Benjamini–Hochberg q value, taken
    /// over every test of the comparison, is at most this.
    pub alpha: f64,
    /// Level of the reported confidence intervals of the change (not adjusted for multiplicity).
    pub confidence: f64,
    /// Minimum relative change worth reporting, per metric (0.05 = 5%). Metrics not listed use
    /// [`Options::default_min_effect`], except instructions, which use
    /// [`DEFAULT_INSTRUCTIONS_EFFECT`].
    pub min_effect: BTreeMap<Metric, f64>,
    /// Minimum relative change for metrics not in `min_effect`.
    pub default_min_effect: f64,
    /// A function is tested only if it holds at least this share of its group's total of the metric
    /// (its self share for self cost, its total share for total cost) on at least one side.
    pub floor_share: f64,
    /// For sampled metrics, a function is tested only if it has at least this many samples per run
    /// on average on at least one side.
    pub min_samples: f64,
    /// Functions whose name matches any of these are not tested (their cost still counts in the
    /// run's total).
    pub ignore: Vec<Regex>,
    /// Metrics tested as a share of the run's stable cost rather than as absolute cost: CPU time
    /// moves with the machine's speed (±15% between identical runs), allocations do not.
    pub normalize: BTreeSet<Metric>,
    /// Assumed per-run spread (standard deviation of the log) when both sides have a single run
    /// and nothing can be measured.
    pub single_run_jitter: f64,
    /// Moderate each function's variance toward a prior fitted over the group's functions
    /// (empirical Bayes, as limma): more power with few runs, but in simulation it raised the A/A
    /// false positive rate to ~5-7% when functions differ in run-to-run spread. Off by default.
    pub moderate_variance: bool,
    /// Keep regressions that the diff's code changes do not explain as regressions (they gate),
    /// instead of reporting them as shifted.
    pub strict: bool,
    /// The smallest spread assumed between two batches recorded at different times, as the
    /// standard deviation of a function's log change, for metrics in `normalize` (CPU): used when
    /// neither the comparison itself nor the store's history shows more.
    pub between_batch_sd: f64,
    /// The same floor for the metrics of waiting ([`Metric::is_waiting`]: lock delay and count,
    /// wall time). How long threads wait depends on how the scheduler interleaves them, which
    /// moves between batches more than CPU shares do, and these metrics have too few functions
    /// for the comparison to measure the spread itself. Measured on crossbeam-channel's
    /// rendezvous channel (tests/measure/real_crates.sh): the total delay of its main wait site
    /// varies by 11% (SD of the log) between batches of identical code, 0.16 for the difference of
    /// two.
    pub wait_between_batch_sd: f64,
    /// Base and head were recorded alternately, run by run (`check`'s interleaved base): no
    /// drift between the sides, so the spread the comparison's empirical null may add is capped
    /// at what each side's own runs, split in two, show (an A/A of the same workload). Beyond it,
    /// the spread is real: a change moves the binary's layout, and unchanged functions shift.
    pub interleaved: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: 0.05,
            confidence: 0.95,
            min_effect: BTreeMap::new(),
            default_min_effect: 0.05,
            floor_share: 0.005,
            min_samples: 5.0,
            ignore: Vec::new(),
            normalize: BTreeSet::from([Metric::Cpu]),
            single_run_jitter: 0.10,
            moderate_variance: false,
            strict: false,
            between_batch_sd: 0.03,
            wait_between_batch_sd: 0.15,
            interleaved: false,
        }
    }
}

impl Options {
    /// These options for base and head recorded alternately, run by run (see
    /// [`Options::interleaved`]): no drift between batches to allow for by default, and no more
    /// spread from the comparison's empirical null than the sides' own A/A shows. Measured on
    /// serde_json: that null came out 0.00-0.02 interleaved on unchanged code, 0.03-0.18 between
    /// stored batches, and 0.10-0.14 on a change that moved the layout, which then hid the change.
    pub fn for_interleaved(mut self) -> Options {
        self.between_batch_sd = 0.0;
        self.wait_between_batch_sd = 0.0;
        self.interleaved = true;
        self
    }

    /// Compiles ignore patterns (regular expressions matched anywhere in the function name).
    pub fn ignore_patterns<I, S>(patterns: I) -> Result<Vec<Regex>, CompareError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        patterns
            .into_iter()
            .map(|p| {
                Regex::new(p.as_ref())
                    .map_err(|source| CompareError::Pattern { pattern: p.as_ref().to_owned(), source })
            })
            .collect()
    }

    /// The minimum relative effect for `metric`.
    pub fn min_effect(&self, metric: Metric) -> f64 {
        match (self.min_effect.get(&metric), metric) {
            (Some(&m), _) => m,
            (None, Metric::Instructions) => DEFAULT_INSTRUCTIONS_EFFECT,
            (None, _) => self.default_min_effect,
        }
    }

    pub(crate) fn is_ignored(&self, function: &str) -> bool {
        self.ignore.iter().any(|r| r.is_match(function))
    }

    /// Checks that every number is in range.
    pub fn validate(&self) -> Result<(), CompareError> {
        let open_unit = |name: &'static str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(CompareError::Option { name, value: v, expected: "in (0, 1)" })
            }
        };
        let non_negative = |name: &'static str, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(CompareError::Option { name, value: v, expected: "a finite number >= 0" })
            }
        };
        open_unit("alpha", self.alpha)?;
        open_unit("confidence", self.confidence)?;
        non_negative("min_effect", self.default_min_effect)?;
        for v in self.min_effect.values() {
            non_negative("min_effect", *v)?;
        }
        if !(0.0..1.0).contains(&self.floor_share) {
            return Err(CompareError::Option {
                name: "floor_share",
                value: self.floor_share,
                expected: "in [0, 1)",
            });
        }
        non_negative("min_samples", self.min_samples)?;
        non_negative("between_batch_sd", self.between_batch_sd)?;
        non_negative("wait_between_batch_sd", self.wait_between_batch_sd)?;
        non_negative("single_run_jitter", self.single_run_jitter)
    }

    pub(crate) fn settings(&self) -> ReportSettings {
        ReportSettings {
            alpha: self.alpha,
            confidence: self.confidence,
            min_effect: Metric::ALL.iter().map(|m| (*m, self.min_effect(*m))).collect(),
            floor_share: self.floor_share,
            min_samples: self.min_samples,
            ignore: self.ignore.iter().map(|r| r.as_str().to_owned()).collect(),
            normalized: self.normalize.iter().copied().collect(),
            single_run_jitter: self.single_run_jitter,
            moderate_variance: self.moderate_variance,
            strict: self.strict,
            between_batch_sd: self.between_batch_sd,
            wait_between_batch_sd: self.wait_between_batch_sd,
            interleaved: self.interleaved,
        }
    }
}
