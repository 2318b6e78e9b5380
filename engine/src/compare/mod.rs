//! Function-level regression detection between two sets of profiling runs.
//!
//! Owns the statistics of `cargo contprof compare`/`check`: given per-run costs of functions for a
//! base and a head revision, grouped by target/test/benchmark, it decides per function, metric and
//! kind (self, total) whether the cost changed beyond noise, and renders the result as JSON, a
//! terminal table and Markdown. It does no I/O beyond the writers it is given, and knows nothing
//! of the store, git or the command line.
//!
//! # Method (chosen by simulation, see `sim` tests and `ARCHITECTURE.md`)
//! - Each run gives one value per function: `ln(cost + one sample)`. The pseudocount of one
//!   sample keeps functions absent from a run finite and damps tiny counts.
//! - CPU time moves with the machine's speed (±15% between identical runs, drifting between
//!   batches), so it is tested as a share: the log of the cost minus the log of the run's *stable*
//!   cost, the run's total less the self cost of functions found to change. Those are found by
//!   iterating (test, leave the changed ones out of the normalizer, test again), so a function
//!   that grows does not make every other function look faster. Allocation metrics do not depend
//!   on the machine's speed and are tested on absolute cost (configurable).
//! - Welch's t-test (t distribution, Welch–Satterthwaite degrees of freedom) with each side's
//!   variance raised to at least the Poisson sampling variance known from its sample count, so a
//!   few runs that agree by chance cannot make a small function look certain.
//! - A between-batch variance is added to every sampled test: batches recorded at different
//!   times drift apart function by function, which within-batch variances cannot show. It is the
//!   largest of the comparison's empirical null (`stats::excess_variance` over functions with
//!   enough samples), the store's history ([`Group::history`]) and a default. With base and
//!   head interleaved run by run (`Options::interleaved`) there is no drift between them, and
//!   the comparison's null is capped at what each side's runs split in two show: beyond that,
//!   the spread is the layout's real shifts of unchanged functions, which would hide the change.
//! - Benjamini–Hochberg over every test of the comparison; a change is reported when q ≤ alpha
//!   and the estimated change is at least the minimum effect; functions below a share and sample
//!   floor are not tested.
//! - Exact metrics use plain thresholds; single runs get "possible" verdicts at most; functions
//!   present on one side only are reported as new or vanished by their cost.
//! - Self and total: a leaf's total equals its self cost and is not tested twice; a total-cost
//!   change that flagged self-cost changes account for is marked *inherited* and kept out of the
//!   regressions list, so a slow leaf is reported once, not once per caller.
//! - A change beyond noise that the diff's machine-code changes do not explain (the call-path
//!   rule of `compare::explain`, from [`Group::explained`]) is [`Verdict::Shifted`], not a regression,
//!   unless [`Options::strict`].
//! - A self-cost change whose cost moved between functions while a function on every call path
//!   to it did not change as much (the compiler inlined or split code anew: `compare::moved`,
//!   from each function's cost under each caller and [`Group::calls`]) is [`Verdict::Moved`],
//!   not a regression, unless [`Options::strict`].
//! - A group with [`Group::by_label`] gets a breakdown by that sample label (`compare::breakdown`):
//!   each value's part of each run, tested run against run; reported, never gated.

mod breakdown;
pub mod causes;
mod engine;
mod explain;
mod finding;
pub(crate) mod input;
mod json;
pub mod markdown;
pub mod model;
mod moved;
mod options;
mod render;
pub mod sequential;
mod series;
#[cfg(test)]
mod sim;
mod stats;
#[cfg(test)]
mod tests;

pub use contprof_contracts::report::REPORT_VERSION;
pub use engine::compare;
pub use finding::{
    Breakdown, BreakdownFigure, BreakdownRow, Calls, Cause, CauseRole, Comparison, Detectable, DriftSource,
    Finding, Method, Power, Summary, Verdict, Warning,
};
pub use input::{AllocRecording, InputOptions, contention_samples, label_totals, run_costs, wall_samples};
pub use json::{to_report, write_json};
pub use model::{
    CallGraph, Cost, Explained, Group, Kind, Metric, MetricTotal, RevisionInfo, RunCosts, Sampling,
};
pub use options::{DEFAULT_INSTRUCTIONS_EFFECT, Options, ReportSettings};
pub use render::{
    NO_SUCH_LABEL, amount as render_amount, breakdown_tested, breakdown_verdict, p_value, write_markdown,
    write_text,
};
pub use stats::{median, two_sample_p};

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// An ignore pattern is not a valid regular expression.
    #[error("invalid ignore pattern `{pattern}`")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// The parser's complaint.
        #[source]
        source: regex::Error,
    },
    /// An option is out of range.
    #[error("option `{name}` is {value}, expected {expected}")]
    Option {
        /// Option name.
        name: &'static str,
        /// Value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
    /// Two groups have the same key.
    #[error("group `{key}` appears twice")]
    DuplicateGroup {
        /// The key.
        key: String,
    },
    /// A comparison per unit of work was asked, and some windows counted none.
    #[error(
        "`--denominator work`: {missing} of the {windows} {side} windows of `{group}` counted no work \
         (a service counts it with `contprof::labels::count_work`, or `contprof_tracing`'s layer with \
         `count_spans`; select windows of a version that counts it, or choose another denominator)"
    )]
    NoWork {
        /// Group key.
        group: String,
        /// `base` or `head`.
        side: &'static str,
        /// Windows without work.
        missing: usize,
        /// Windows of that side.
        windows: usize,
    },
}
