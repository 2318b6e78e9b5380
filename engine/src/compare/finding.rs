//! The output of a comparison: one [`Finding`] per tested (group, function, metric, kind), the
//! warnings met on the way, and a summary. The types a report shows are the JSON report's
//! (`contprof_contracts::report`); [`Comparison`] holds them with the engine's own bookkeeping.

pub use contprof_contracts::report::{
    Breakdown, BreakdownFigure, BreakdownRow, Calls, Cause, CauseRole, Detectable, DriftSource, Finding,
    Method, Outcome, Power, Side, Summary, Verdict, Warning,
};

use super::model::RevisionInfo;
use super::options::ReportSettings;

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
    /// Per group and metric, the breakdown by a sample label ([`super::Group::by_label`]).
    pub breakdowns: Vec<Breakdown>,
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
