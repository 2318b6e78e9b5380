//! When a `check` whose sides are recorded in pairs may stop before its maximum of runs: the rule
//! applied to the comparison of the pairs recorded so far (an interim look).
//!
//! Only one early decision is taken, "no regression": every function is clearly unchanged at the
//! comparison's stated power. A regression is never declared at an interim look: the runs go on
//! to the maximum and the final comparison decides, exactly as without early stopping. So the rule
//! can only turn an alarm of the fixed design into "no regression" (a false alarm of an A/A check
//! that would have run to the end is then avoided too), never add one: the false-alarm rate stays
//! at most the fixed design's. What it can cost is power, when a real regression looks like
//! nothing at a look; the rule keeps recording at the first hint of one (below), and the stated
//! power must already be good enough, so that the cost stays small (measured in
//! `docs/src/measurements.md`).
//!
//! At a look the comparison may stop when:
//! - it has at least [`MIN_PAIRS`] runs a side;
//! - nothing is a regression, a possible regression or new (the gate's own verdicts);
//! - no function that could gate shows a hint of a regression: a rise of at least the metric's
//!   minimum effect with a q value (the false discovery rate over every test, as the verdicts use)
//!   under [`HINT_Q`], in any group, metric and kind. Could gate: code on its call paths changed
//!   (a rise elsewhere is reported as shifted and never fails the gate), or `--strict`. A p value
//!   would not do: among hundreds of functions some always have a small one by chance, and an
//!   A/A check then never stops (measured on serde_json: a "hint" at every look);
//! - every group states a power: the smallest change it could see in a function holding 5% of a
//!   sampled metric; and either that is at most the bar asked for ([`DEFAULT_STOP_POWER`] unless
//!   `--stop-power` says otherwise), or half of the most runs are recorded. Past half, the rest
//!   would sharpen the stated power by at most a factor of √2 (it shrinks as 1/√runs where the
//!   sampling sets it, less where the spread between batches does), while a check with nothing
//!   to show pays them in full; the report states the power of the runs it used.

use super::finding::{Comparison, Verdict};
use super::options::Options;

/// The fewest runs a side before a look: fewer give no spread worth stating.
pub const MIN_PAIRS: usize = 3;
/// A rise at least the minimum effect with a q value under this keeps the recording going: ten
/// times the default false discovery rate, so that a change on its way to significance is not
/// cut short (on serde_json an A/A check's smallest q stays near 1, and 0.25 let two borderline
/// regressions stop at 5 runs).
pub const HINT_Q: f64 = 0.5;
/// The stated power an early stop needs unless told otherwise: the smallest change seen in a
/// function of 5% of a sampled metric, at most this.
pub const DEFAULT_STOP_POWER: f64 = 0.10;

/// What an interim look concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Look {
    /// Every function is clearly unchanged at the stated power: stop here.
    Unchanged {
        /// The smallest change seen in a function of 5% of CPU (its weakest group), else of the
        /// best-resolved other measure.
        power: f64,
    },
    /// Keep recording, and why.
    Continue(String),
}

/// The look at `cmp` (the comparison of the runs recorded so far, of at most `max_runs` a side)
/// under `options`, stopping at a stated power of `stop_power` or better (the smallest change
/// seen in a function of 5%), or at any stated power once half of `max_runs` are recorded.
pub fn look(cmp: &Comparison, options: &Options, stop_power: f64, max_runs: usize) -> Look {
    let runs = cmp.power.iter().map(|p| p.runs_base.min(p.runs_head)).min().unwrap_or(0);
    if runs < MIN_PAIRS {
        return Look::Continue(format!("{runs} run(s) a side, fewer than {MIN_PAIRS}"));
    }
    let gating = [Verdict::Regression, Verdict::PossibleRegression, Verdict::New];
    if let Some(f) = cmp.findings.iter().find(|f| gating.contains(&f.verdict)) {
        return Look::Continue(format!("{} is {}", f.function, f.verdict.as_str().replace('_', " ")));
    }
    let hint = cmp.findings.iter().find(|f| {
        let rise = f.change.is_some_and(|c| c >= options.min_effect(f.metric));
        let could_gate = options.strict || f.explained != Some(false);
        rise && could_gate && f.q.is_some_and(|q| q < HINT_Q)
    });
    if let Some(f) = hint {
        return Look::Continue(format!(
            "{} {:+.1}% (q {:.2}) may be a regression",
            f.function,
            100.0 * f.change.unwrap_or(0.0),
            f.q.unwrap_or(1.0)
        ));
    }
    if cmp.power.is_empty() {
        return Look::Continue("no stated power (no sampled metric compared)".into());
    }
    let half = max_runs.div_ceil(2);
    let mut stated: Vec<(super::model::Metric, f64)> = Vec::new();
    for p in &cmp.power {
        match p.at(0.05) {
            Some(mde) if mde <= stop_power || runs >= half => stated.push((p.metric, mde)),
            Some(mde) => {
                return Look::Continue(format!(
                    "{} {} could only see changes of {:.0}% and more in functions of 5% (--stop-power {}), \
                     with fewer than half of the {max_runs} runs",
                    p.group,
                    p.metric.as_str(),
                    100.0 * mde,
                    stop_power
                ));
            }
            None => return Look::Continue(format!("{} {}: no stated power", p.group, p.metric.as_str())),
        }
    }
    // What the report's first line states: CPU's power where it is compared (its weakest group),
    // else the best of the others.
    let cpu =
        stated.iter().filter(|(m, _)| *m == super::model::Metric::Cpu).map(|(_, v)| *v).reduce(f64::max);
    let power = cpu.or_else(|| stated.iter().map(|(_, v)| *v).reduce(f64::min)).unwrap_or(0.0);
    Look::Unchanged { power }
}

/// The groups of an exact comparison (instruction counts) that a second run a side must confirm:
/// those with any finding other than unchanged or inconclusive. Counts repeat exactly where the
/// program does the same work, but not where its threads race: under libtest the test's thread
/// and the harness's main thread share the allocator, and which of them reaches it first
/// (valgrind runs one thread at a time, and switches at system calls) moves a few dozen
/// instructions of the test's own allocations in about one run in eight (semver's suite). With a
/// second run a side, such a run leaves the two sides' ranges overlapping (the comparison of
/// exact counts judges only separated ranges), while a change of the code repeats on every run.
pub fn to_confirm(cmp: &Comparison) -> Vec<String> {
    let quiet = [Verdict::Unchanged, Verdict::Inconclusive];
    let mut groups: Vec<String> =
        cmp.findings.iter().filter(|f| !quiet.contains(&f.verdict)).map(|f| f.group.clone()).collect();
    groups.sort();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::finding::{Detectable, DriftSource, Finding, Method, Power};
    use crate::compare::model::{Kind, Metric};

    fn power(runs: usize, mde: f64) -> Power {
        Power {
            group: "bin/x".into(),
            metric: Metric::Cpu,
            runs_base: runs,
            runs_head: runs,
            samples_per_run: 5000.0,
            overdispersion: 1.0,
            between_batch_sd: 0.0,
            drift_source: DriftSource::None,
            comparison_sd: None,
            sides_sd: None,
            min_detectable: vec![Detectable { share: 0.05, change: mde }],
        }
    }

    fn finding(change: f64, p: f64, verdict: Verdict) -> Finding {
        Finding {
            group: "bin/x".into(),
            function: "x::parse".into(),
            metric: Metric::Cpu,
            kind: Kind::SelfCost,
            base: 1.0,
            head: 1.0 + change,
            base_share: 0.1,
            head_share: 0.1,
            change: Some(change),
            ci_low: None,
            ci_high: None,
            p: Some(p),
            q: Some(p),
            runs_base: 3,
            runs_head: 3,
            method: Method::WelchLogShare,
            verdict,
            inherited: false,
            explained: Some(true),
            calls: None,
            cause: None,
            cause_role: None,
            moved_within: None,
        }
    }

    fn comparison(findings: Vec<Finding>, power: Vec<Power>) -> Comparison {
        Comparison {
            base: Default::default(),
            head: Default::default(),
            settings: Options::default().settings(),
            findings,
            warnings: Vec::new(),
            power,
            summary: Default::default(),
            causes: Vec::new(),
            timings: None,
            breakdowns: Vec::new(),
        }
    }

    #[test]
    fn stops_only_when_nothing_hints_at_a_regression_and_the_power_is_stated_and_good() {
        let o = Options::default();
        let quiet = vec![finding(0.01, 0.6, Verdict::Unchanged), finding(-0.2, 0.01, Verdict::Unchanged)];
        assert_eq!(
            look(&comparison(quiet.clone(), vec![power(3, 0.08)]), &o, DEFAULT_STOP_POWER, 10),
            Look::Unchanged { power: 0.08 }
        );
        for (why, cmp) in [
            ("too few runs", comparison(quiet.clone(), vec![power(2, 0.08)])),
            ("power too low", comparison(quiet.clone(), vec![power(3, 0.15)])),
            ("no power stated", comparison(quiet.clone(), Vec::new())),
            (
                "a regression",
                comparison(vec![finding(0.3, 0.001, Verdict::Regression)], vec![power(3, 0.08)]),
            ),
            (
                "a possible one",
                comparison(vec![finding(0.3, 0.04, Verdict::PossibleRegression)], vec![power(3, 0.08)]),
            ),
            ("a hint", comparison(vec![finding(0.06, 0.15, Verdict::Unchanged)], vec![power(3, 0.08)])),
            ("a new function", comparison(vec![finding(0.0, 1.0, Verdict::New)], vec![power(3, 0.08)])),
        ] {
            assert!(
                matches!(look(&cmp, &o, DEFAULT_STOP_POWER, 10), Look::Continue(_)),
                "{why}: {:?}",
                look(&cmp, &o, 0.1, 10)
            );
        }
        // A rise below the minimum effect, or one with a large p value, is no hint.
        let small = vec![finding(0.03, 0.01, Verdict::Unchanged), finding(0.3, 0.5, Verdict::Unchanged)];
        assert!(matches!(
            look(&comparison(small, vec![power(4, 0.05)]), &o, DEFAULT_STOP_POWER, 10),
            Look::Unchanged { .. }
        ));
        // A looser bar stops at a weaker power.
        assert!(matches!(
            look(&comparison(quiet.clone(), vec![power(3, 0.15)]), &o, 0.2, 10),
            Look::Unchanged { .. }
        ));
        // Half of the most runs stop at any stated power, but not before, and never on a hint.
        assert!(matches!(
            look(&comparison(quiet.clone(), vec![power(5, 0.15)]), &o, 0.1, 10),
            Look::Unchanged { .. }
        ));
        assert!(matches!(look(&comparison(quiet, vec![power(4, 0.15)]), &o, 0.1, 10), Look::Continue(_)));
        let hint = vec![finding(0.08, 0.1, Verdict::Unchanged)];
        assert!(matches!(
            look(&comparison(hint.clone(), vec![power(9, 0.05)]), &o, 0.1, 10),
            Look::Continue(_)
        ));
        // A rise in a function whose call paths the diff did not change cannot gate (it would be
        // shifted): no hint, unless --strict.
        let mut elsewhere = hint;
        elsewhere[0].explained = Some(false);
        let cmp = comparison(elsewhere, vec![power(5, 0.05)]);
        assert!(matches!(look(&cmp, &o, 0.1, 10), Look::Unchanged { .. }));
        let strict = Options { strict: true, ..Options::default() };
        assert!(matches!(look(&cmp, &strict, 0.1, 10), Look::Continue(_)));
    }

    #[test]
    fn an_exact_comparison_confirms_each_group_with_a_finding_once() {
        let in_group = |group: &str, verdict| Finding { group: group.into(), ..finding(0.01, 1.0, verdict) };
        let cmp = comparison(
            vec![
                in_group("test/t/b", Verdict::Shifted),
                in_group("test/t/a", Verdict::Regression),
                in_group("test/t/b", Verdict::Vanished),
                in_group("test/t/c", Verdict::Unchanged),
                in_group("test/t/d", Verdict::Inconclusive),
                in_group("test/t/e", Verdict::Moved),
            ],
            Vec::new(),
        );
        assert_eq!(to_confirm(&cmp), ["test/t/a", "test/t/b", "test/t/e"]);
        assert!(
            to_confirm(&comparison(vec![in_group("test/t/c", Verdict::Unchanged)], Vec::new())).is_empty()
        );
    }
}
