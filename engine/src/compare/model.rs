//! The input of a comparison: per-run costs of functions, grouped by target/test/benchmark.
//!
//! These types are plain data filled in by the profile module (or by tests). They carry no
//! addresses: a function is identified by its demangled name without the `::h<hash>` suffix, so
//! that identity survives rebuilds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use contprof_contracts::report::{Kind, Metric, RevisionInfo};

/// How a metric was measured in one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Sampling {
    /// Every event counted (exact allocation mode, deterministic engines): repeated runs of the
    /// same code give the same numbers, so comparisons use plain thresholds.
    Exact,
    /// Estimated from `samples` samples; the value of one sample is `total / samples`, which sets
    /// the Poisson noise floor and the pseudocount used for functions absent from a run.
    Sampled {
        /// Number of samples behind the run's total.
        samples: u64,
    },
}

/// The whole-run value of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricTotal {
    /// Total of the metric over the run (nanoseconds, bytes or a count).
    pub value: f64,
    /// Whether the value is exact or sampled.
    pub sampling: Sampling,
}

impl MetricTotal {
    /// A sampled total.
    pub fn sampled(value: f64, samples: u64) -> Self {
        MetricTotal { value, sampling: Sampling::Sampled { samples } }
    }

    /// An exact total.
    pub fn exact(value: f64) -> Self {
        MetricTotal { value, sampling: Sampling::Exact }
    }

    /// The value of one sample, if sampled and non-empty.
    pub fn sample_value(&self) -> Option<f64> {
        match self.sampling {
            Sampling::Sampled { samples } if samples > 0 && self.value > 0.0 => {
                Some(self.value / samples as f64)
            }
            _ => None,
        }
    }
}

/// Self and total cost of one function for one metric in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Self cost.
    #[serde(rename = "self")]
    pub self_: f64,
    /// Total (inclusive) cost.
    pub total: f64,
}

impl Cost {
    /// The cost of one kind.
    pub fn get(&self, kind: Kind) -> f64 {
        match kind {
            Kind::SelfCost => self.self_,
            Kind::Total => self.total,
        }
    }
}

/// Costs of one run (one process execution of one target, test or benchmark).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCosts {
    /// Whole-run totals per metric. A metric absent here was not recorded in this run.
    pub totals: BTreeMap<Metric, MetricTotal>,
    /// Per function (demangled, no hash), per metric, its cost. Absent means zero.
    pub functions: BTreeMap<String, BTreeMap<Metric, Cost>>,
    /// Per function, how many times it was called, where the engine counts calls (instructions);
    /// empty otherwise. Evidence for instruction findings, not compared on its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, f64>,
    /// Per function, its self cost split by the function that called it (the next frame outward
    /// that the comparison names, library frames folded), per metric: where a function's cost
    /// came from when it has several callers (`compare::moved`). Empty where the stacks were not
    /// read (production rollups).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub self_by_caller: BTreeMap<String, BTreeMap<String, BTreeMap<Metric, f64>>>,
    /// Per metric, the run's total per value of the sample label its group is broken down by
    /// ([`Group::by_label`]; `None`: the samples without the label). Empty when no breakdown was
    /// asked; never stored.
    #[serde(skip)]
    pub by_label: BTreeMap<Metric, BTreeMap<Option<String>, f64>>,
    /// Units of work the program counted during the run (`contprof::labels::count_work`; see
    /// [`crate::profile::work`]); `None` when it counted none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<f64>,
}

impl RunCosts {
    /// The units of work the run counted, when it counted any.
    pub fn counted_work(&self) -> Option<f64> {
        self.work.filter(|&w| w > 0.0)
    }

    /// Every cost divided by `d` (the run's units of work): the sample counts stay, so each
    /// sample's value is divided too and the noise of a sampled cost is unchanged.
    pub fn divided_by(&self, d: f64) -> RunCosts {
        let mut r = self.clone();
        for t in r.totals.values_mut() {
            t.value /= d;
        }
        for c in r.functions.values_mut().flat_map(|m| m.values_mut()) {
            c.self_ /= d;
            c.total /= d;
        }
        for v in r.self_by_caller.values_mut().flat_map(|m| m.values_mut()).flat_map(|m| m.values_mut()) {
            *v /= d;
        }
        for v in r.by_label.values_mut().flat_map(|m| m.values_mut()) {
            *v /= d;
        }
        r
    }
}

/// One target/test/benchmark with its base and head runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The group key, e.g. `bench:parse` or `test:tests::round_trip`.
    pub key: String,
    /// Runs of the base revision.
    pub base: Vec<RunCosts>,
    /// Runs of the head revision.
    pub head: Vec<RunCosts>,
    /// Which changes the diff's code changes explain (the call-path rule); `None` when unknown
    /// (a side without code fingerprints), and then every change counts as explained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained: Option<Explained>,
    /// Variance (log scale) of a function's change between two batches of unchanged code, per
    /// metric, learned from earlier batches in the store; `None` when there is no such history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<BTreeMap<Metric, f64>>,
    /// Who calls whom and what was inlined where in the group's stacks, for grouping findings by
    /// cause (`compare::causes`); `None` when the stacks were not read (then only inherited totals
    /// and one function's findings across groups are grouped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallGraph>,
    /// The sample label whose values the comparison breaks the group's metrics down by
    /// (`compare --by KEY`; the runs' [`RunCosts::by_label`]), reported, never gated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_label: Option<String>,
}

/// The functions (as the comparison names them) whose changes the diff explains, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    /// Functions whose code changed between base and head.
    pub changed: BTreeSet<String>,
    /// Functions whose self-cost change is explained.
    pub self_cost: BTreeSet<String>,
    /// Functions whose total-cost change is explained.
    pub total: BTreeSet<String>,
    /// Functions called by changed code: on some stack, a changed function sits between them
    /// and their direct caller, the caller included (a caller that calls them more often or
    /// with more work). Their callees' self costs may then grow without their code changing.
    #[serde(default)]
    pub called_by_changed: BTreeSet<String>,
}

/// Who calls whom in one group's stacks, by the names the comparison uses (library frames folded
/// as the costs fold them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallGraph {
    /// `(caller, callee)`: the callee's frame is directly under the caller's on some stack (the
    /// library frames between them left out).
    pub calls: BTreeSet<(String, String)>,
    /// `(inlined, into)`: the function's code was inlined into the other at some address (the
    /// next frame outward at the same address that is not a library frame).
    pub inlined: BTreeSet<(String, String)>,
}
