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
//! - no function shows a hint of a regression: a rise of at least the metric's minimum effect
//!   with a p value under [`HINT_P`], in any group, metric and kind, explained by the diff or not;
//! - every group's stated power is good enough: the smallest change it could see in a function
//!   holding 5% of a sampled metric is at most the bar asked for ([`DEFAULT_STOP_POWER`] unless
//!   `--stop-power` says otherwise), so the report can say "could have seen changes of 10% and
//!   more in functions of 5%".

use super::finding::{Comparison, Verdict};
use super::options::Options;

/// The fewest runs a side before a look: fewer give no spread worth stating.
pub const MIN_PAIRS: usize = 3;
/// A rise at least the minimum effect with a p value under this keeps the recording going.
pub const HINT_P: f64 = 0.2;
/// The stated power an early stop needs unless told otherwise: the smallest change seen in a
/// function of 5% of a sampled metric, at most this.
pub const DEFAULT_STOP_POWER: f64 = 0.10;

/// What an interim look concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Look {
    /// Every function is clearly unchanged at the stated power: stop here.
    Unchanged {
        /// The largest smallest-detectable change at 5% share over the groups.
        power: f64,
    },
    /// Keep recording, and why.
    Continue(String),
}

/// The look at `cmp` (the comparison of the runs recorded so far) under `options`, stopping only
/// at a stated power of `stop_power` or better (the smallest change seen in a function of 5%).
pub fn look(cmp: &Comparison, options: &Options, stop_power: f64) -> Look {
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
        rise && f.p.is_some_and(|p| p < HINT_P)
    });
    if let Some(f) = hint {
        return Look::Continue(format!(
            "{} {:+.1}% (p {:.2}) may be a regression",
            f.function,
            100.0 * f.change.unwrap_or(0.0),
            f.p.unwrap_or(1.0)
        ));
    }
    if cmp.power.is_empty() {
        return Look::Continue("no stated power (no sampled metric compared)".into());
    }
    let mut worst: f64 = 0.0;
    for p in &cmp.power {
        match p.at(0.05) {
            Some(mde) if mde <= stop_power => worst = worst.max(mde),
            Some(mde) => {
                return Look::Continue(format!(
                    "{} {} could only see changes of {:.0}% and more in functions of 5% (--stop-power {})",
                    p.group,
                    p.metric.as_str(),
                    100.0 * mde,
                    stop_power
                ));
            }
            None => return Look::Continue(format!("{} {}: no stated power", p.group, p.metric.as_str())),
        }
    }
    Look::Unchanged { power: worst }
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
        }
    }

    #[test]
    fn stops_only_when_nothing_hints_at_a_regression_and_the_power_is_stated_and_good() {
        let o = Options::default();
        let quiet = vec![finding(0.01, 0.6, Verdict::Unchanged), finding(-0.2, 0.01, Verdict::Unchanged)];
        assert_eq!(
            look(&comparison(quiet.clone(), vec![power(3, 0.08)]), &o, DEFAULT_STOP_POWER),
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
                matches!(look(&cmp, &o, DEFAULT_STOP_POWER), Look::Continue(_)),
                "{why}: {:?}",
                look(&cmp, &o, 0.1)
            );
        }
        // A rise below the minimum effect, or one with a large p value, is no hint.
        let small = vec![finding(0.03, 0.01, Verdict::Unchanged), finding(0.3, 0.5, Verdict::Unchanged)];
        assert!(matches!(
            look(&comparison(small, vec![power(4, 0.05)]), &o, DEFAULT_STOP_POWER),
            Look::Unchanged { .. }
        ));
        // A looser bar stops at a weaker power.
        assert!(matches!(look(&comparison(quiet, vec![power(3, 0.15)]), &o, 0.2), Look::Unchanged { .. }));
    }
}
