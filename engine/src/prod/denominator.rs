//! What a production comparison divides a window's cost by.
//!
//! By default a window's CPU is compared as a share of the window's CPU: the load of a service
//! moves from window to window, and shares cancel it. A function that holds most of the CPU
//! cannot move its share, though: a handler at 87% of the CPU made 1.5x slower goes to
//! 1.305 / 1.435 = 91%, a change below every threshold, while each request costs 45% more. Such a
//! function is judged by the CPU it takes per window (per instance: each window is one instance's),
//! the absolute rate, when the windows' load is comparable; that is told by the CPU outside the
//! functions above half of the metric, which a change in them does not move. When the load is not
//! comparable either, the report says that the function's share cannot judge it.
//!
//! The choice is stated in the report (a warning of the comparison, in every format).

use crate::compare::{CompareError, Comparison, Group, Metric, Options, RevisionInfo, Warning};

/// A function holding more than this share of the metric cannot be judged by its share.
pub const DOMINANT_SHARE: f64 = 0.5;

/// The windows' load is comparable when the CPU outside the dominant functions moved by at most
/// this (relative change of the median window).
pub const COMPARABLE_LOAD: f64 = 0.10;

/// What to divide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Denominator {
    /// The rate when a function holds more than half of the metric and the load is comparable,
    /// the share otherwise.
    #[default]
    Auto,
    /// The window's share of the metric.
    Share,
    /// The metric per window (per instance): the absolute rate.
    Rate,
}

/// Compares production windows (`groups`, from `rollouts::compare_loaded`: one group) of
/// `metric` with the denominator `asked` chooses ([`choose`]), stated in the comparison's
/// warnings: the one way of `prod compare` and the viewer's production comparison.
pub fn compare(
    groups: &[Group],
    metric: Metric,
    asked: Denominator,
    options: &Options,
    base: RevisionInfo,
    head: RevisionInfo,
) -> Result<Comparison, CompareError> {
    let mut options = options.clone();
    let choice = groups.first().map(|g| choose(g, metric, asked, &options));
    if let Some(c) = &choice {
        c.apply(metric, &mut options);
    }
    let mut cmp = crate::compare::compare(groups, base, head, &options)?;
    if let (Some(c), Some(g)) = (&choice, groups.first()) {
        c.state(&g.key, metric, &mut cmp);
    }
    Ok(cmp)
}

/// The decision for one group and metric, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Share or rate (never `Auto`).
    pub denominator: Denominator,
    /// The functions above [`DOMINANT_SHARE`] of the metric (mean self share over the windows of
    /// either side), with that share.
    pub dominant: Vec<(String, f64)>,
    /// Relative change of the median window's metric outside those functions, head against base
    /// (`None` when no window has any).
    pub load_change: Option<f64>,
    /// What was asked for.
    pub asked: Denominator,
    /// Whether the comparison's options compare the metric as a share (CPU by default;
    /// allocations are compared by their amount per window already).
    pub normalized: bool,
}

/// Chooses the denominator of `metric` in `group` as `asked` says (see the module docs);
/// `normalized`: whether `options` compare the metric as a share.
pub fn choose(group: &Group, metric: Metric, asked: Denominator, options: &Options) -> Choice {
    let normalized = options.normalize.contains(&metric);
    let mut dominant: Vec<(String, f64)> = Vec::new();
    for side in [&group.base, &group.head] {
        let mut shares: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
        let windows = side.iter().filter(|r| r.totals.get(&metric).is_some_and(|t| t.value > 0.0)).count();
        for r in side {
            let Some(total) = r.totals.get(&metric).map(|t| t.value).filter(|&t| t > 0.0) else { continue };
            for (name, costs) in &r.functions {
                if let Some(c) = costs.get(&metric) {
                    *shares.entry(name).or_default() += c.self_ / total / windows as f64;
                }
            }
        }
        for (name, share) in shares {
            if share > DOMINANT_SHARE {
                match dominant.iter_mut().find(|(n, _)| n == name) {
                    Some((_, s)) => *s = s.max(share),
                    None => dominant.push((name.to_owned(), share)),
                }
            }
        }
    }
    // The metric outside the dominant functions, per window: the load, which their change does
    // not move.
    let outside = |side: &[crate::compare::RunCosts]| -> Option<f64> {
        let mut v: Vec<f64> = side
            .iter()
            .filter_map(|r| {
                let total = r.totals.get(&metric)?.value;
                let inside: f64 = dominant
                    .iter()
                    .filter_map(|(n, _)| r.functions.get(n).and_then(|c| c.get(&metric)).map(|c| c.self_))
                    .sum();
                Some(total - inside)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().filter(|&m| m > 0.0)
    };
    let load_change = match (outside(&group.base), outside(&group.head)) {
        (Some(b), Some(h)) => Some(h / b - 1.0),
        _ => None,
    };
    let denominator = match asked {
        Denominator::Auto if !normalized => Denominator::Rate,
        Denominator::Auto
            if !dominant.is_empty() && load_change.is_some_and(|c| c.abs() <= COMPARABLE_LOAD) =>
        {
            Denominator::Rate
        }
        Denominator::Auto => Denominator::Share,
        d => d,
    };
    if !normalized && asked != Denominator::Share {
        // Compared by amount already: no share to be misled by.
        dominant.clear();
    }
    Choice { denominator, dominant, load_change, asked, normalized }
}

impl Choice {
    /// The comparison's options for this choice: the rate is the metric not normalized, an asked
    /// share the metric normalized.
    pub fn apply(&self, metric: Metric, options: &mut Options) {
        match (self.denominator, self.asked) {
            (Denominator::Rate, _) => {
                options.normalize.remove(&metric);
            }
            (Denominator::Share, Denominator::Share) => {
                options.normalize.insert(metric);
            }
            _ => {}
        }
    }

    /// States the choice in `cmp`'s warnings (every format shows them): a rate chosen for a
    /// dominant function or asked for, a share that cannot judge a dominant function.
    pub fn state(&self, group: &str, metric: Metric, cmp: &mut Comparison) {
        let rate = self.denominator == Denominator::Rate;
        let asked_rate = rate && self.asked == Denominator::Rate && self.normalized;
        if self.dominant.is_empty() && !asked_rate {
            return;
        }
        cmp.warnings.push(Warning::Denominator {
            group: group.to_owned(),
            metric,
            rate,
            dominant: self.dominant.iter().map(|(n, s)| (n.clone(), (s * 1000.0).round() as u32)).collect(),
            load_change_permille: self.load_change.map(|c| (c * 1000.0).round() as i64),
        });
        cmp.warnings.sort();
        cmp.warnings.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Cost, MetricTotal, RunCosts, Verdict};

    /// One window: `handler` self CPU and `other` self CPU (nanoseconds) spread over 30 small
    /// functions, each under the comparison's 0.5% floor, as a service's runtime is; sampled at
    /// 1 ms.
    fn window(handler: f64, other: f64) -> RunCosts {
        let mut r = RunCosts::default();
        let total = handler + other;
        r.totals.insert(Metric::Cpu, MetricTotal::sampled(total, (total / 1e6) as u64));
        let small = (0..30).map(|i| (format!("svc::small{i}"), other / 30.0));
        for (name, v) in std::iter::once(("svc::handler".to_owned(), handler)).chain(small) {
            r.functions.insert(name, [(Metric::Cpu, Cost { self_: v, total: v })].into());
        }
        r.functions.insert("svc::main".into(), [(Metric::Cpu, Cost { self_: 0.0, total })].into());
        r
    }

    /// Windows of 10 s at one core's worth of load: a handler at 87% of CPU, with the noise of
    /// real windows (a few percent from window to window).
    fn side(slowdown: f64, load: f64) -> Vec<RunCosts> {
        (0..12)
            .map(|i| {
                let wobble = 1.0 + 0.03 * ((i * 7 % 5) as f64 - 2.0) / 2.0;
                window(8.7e9 * slowdown * load * wobble, 1.3e9 * load * wobble)
            })
            .collect()
    }

    fn compare(group: &Group, options: &Options) -> Comparison {
        crate::compare::compare(
            std::slice::from_ref(group),
            RevisionInfo::default(),
            RevisionInfo::default(),
            options,
        )
        .unwrap()
    }

    /// Issue 27: a handler at 87% of the CPU made 1.5x slower, same load: nothing was reported.
    #[test]
    fn a_dominant_function_made_slower_is_found_by_its_rate_when_the_load_is_comparable() {
        let group = Group {
            key: "prod/svc/cpu".into(),
            base: side(1.0, 1.0),
            head: side(1.5, 1.0),
            ..Group::default()
        };
        // By share alone it is not found.
        let by_share = compare(&group, &Options::default());
        assert!(!by_share.has_regression(), "{:#?}", by_share.findings);

        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Rate);
        assert_eq!(choice.dominant.len(), 1);
        assert_eq!(choice.dominant[0].0, "svc::handler");
        assert!(choice.load_change.is_some_and(|c| c.abs() < 0.01), "{choice:?}");
        let mut options = Options::default();
        choice.apply(Metric::Cpu, &mut options);
        let mut cmp = compare(&group, &options);
        choice.state(&group.key, Metric::Cpu, &mut cmp);
        let found: Vec<&str> =
            cmp.with_verdict(Verdict::Regression).iter().map(|f| f.function.as_str()).collect();
        assert!(found.contains(&"svc::handler"), "{:#?}", cmp.findings);
        assert_eq!(found, ["svc::handler"]);
        let said: Vec<String> = cmp.warnings.iter().map(|w| w.to_string()).collect();
        assert!(said.iter().any(|w| w.contains("CPU per window") && w.contains("svc::handler")), "{said:?}");
    }

    #[test]
    fn under_another_load_the_share_is_kept_and_the_report_says_it_cannot_judge() {
        let group = Group {
            key: "prod/svc/cpu".into(),
            base: side(1.0, 1.0),
            head: side(1.5, 1.4),
            ..Group::default()
        };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Share);
        assert!(choice.load_change.is_some_and(|c| c > 0.3), "{choice:?}");
        let mut options = Options::default();
        choice.apply(Metric::Cpu, &mut options);
        let mut cmp = compare(&group, &options);
        choice.state(&group.key, Metric::Cpu, &mut cmp);
        let said: Vec<String> = cmp.warnings.iter().map(|w| w.to_string()).collect();
        assert!(said.iter().any(|w| w.contains("cannot judge") && w.contains("svc::handler")), "{said:?}");
        // No dominant function: nothing to say, the share as before.
        let even = Group {
            key: "prod/svc/cpu".into(),
            base: (0..6).map(|_| window(4e9, 6e9)).collect(),
            head: (0..6).map(|_| window(4.4e9, 6e9)).collect(),
            ..Group::default()
        };
        let choice = choose(&even, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!((choice.denominator, choice.dominant.len()), (Denominator::Share, 0));
    }
}
