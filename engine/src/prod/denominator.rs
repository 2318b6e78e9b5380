//! What a production comparison divides a window's cost by.
//!
//! By default a window's CPU is compared as a share of the window's CPU: the load of a service
//! moves from window to window, and shares cancel it. A function that holds most of the CPU
//! cannot move its share, though: a handler at 87% of the CPU made 1.5x slower goes to
//! 1.305 / 1.435 = 91%, a change below every threshold, while each request costs 45% more; and
//! the same holds for a path that takes most of the CPU in several functions (a hash's rounds and
//! its message schedule), which no rule on single functions sees. So a program that counts its
//! work (`contprof::labels::count_work`, [`crate::profile::work`]: requests served) has every
//! window's costs judged per unit of work, whatever the load, the windows that counted none left
//! out. Without it, a function above half of the metric is judged by the CPU it takes per window
//! (per instance: each window is one instance's), the absolute rate, when the windows' load is
//! comparable, which is told by the CPU outside those functions (a change in them does not move
//! it, though the per-request overhead around them may); when it is not, the report says that the
//! function's share cannot judge it.
//!
//! The choice is stated in the report (a warning of the comparison, in every format).

use contprof_contracts::report::Side;

use crate::compare::{CompareError, Comparison, Group, Metric, Options, RevisionInfo, RunCosts, Warning};

/// A function holding more than this share of the metric cannot be judged by its share.
pub const DOMINANT_SHARE: f64 = 0.5;

/// The windows' load is comparable when the CPU outside the dominant functions moved by at most
/// this (relative change of the median window).
pub const COMPARABLE_LOAD: f64 = contprof_contracts::report::COMPARABLE_LOAD_PERMILLE as f64 / 1000.0;

/// What to divide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Denominator {
    /// The work counted, if the windows counted it (two a side at least, a quarter without at
    /// most); else, when a function holds more than half of the metric, the rate if the load is
    /// comparable, the share (with a warning) if not; the share when no function does.
    #[default]
    Auto,
    /// The window's share of the metric.
    Share,
    /// The metric per window (per instance): the absolute rate.
    Rate,
    /// The metric per unit of work the program counted in the window
    /// (`contprof::labels::count_work`: CPU per request).
    Work,
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
    let (divided, kept): (Vec<Group>, Vec<[Kept; 2]>) = match &choice {
        Some(c) if c.denominator == Denominator::Work => {
            groups.iter().map(per_unit_of_work).collect::<Result<Vec<_>, _>>()?.into_iter().unzip()
        }
        _ => (Vec::new(), Vec::new()),
    };
    let groups = if divided.is_empty() { groups } else { &divided };
    let mut cmp = crate::compare::compare(groups, base, head, &options)?;
    for (g, kept) in groups.iter().zip(&kept) {
        restate(&g.key, metric, kept, &mut cmp.warnings);
    }
    if let (Some(c), Some(g)) = (&choice, groups.first()) {
        c.state(&g.key, metric, &mut cmp);
    }
    Ok(cmp)
}

/// Which windows of one side a comparison per unit of work kept and which it left out because
/// they counted no work, by their positions in the side as loaded.
#[derive(Debug, Default)]
struct Kept {
    kept: Vec<usize>,
    left_out: Vec<usize>,
}

/// The comparison's warnings about runs of `group` by position, put back to the windows'
/// positions as loaded, and a warning for each window left out for want of work; `kept` is per
/// side, base then head.
fn restate(group: &str, metric: Metric, kept: &[Kept; 2], warnings: &mut Vec<Warning>) {
    let of = |side: Side| &kept[usize::from(side == Side::Head)];
    for w in warnings.iter_mut() {
        if let Warning::SkippedRun { group: g, side, index, .. } = w
            && g == group
            && let Some(&original) = of(*side).kept.get(*index)
        {
            *index = original;
        }
    }
    for side in [Side::Base, Side::Head] {
        for &index in &of(side).left_out {
            warnings.push(Warning::SkippedRun {
                group: group.to_owned(),
                metric,
                side,
                index,
                reason: "it counted no work: compared per unit of work".to_owned(),
            });
        }
    }
    warnings.sort();
    warnings.dedup();
}

/// `group` with every window's costs divided by the work it counted, the windows that counted
/// none left out ([`Kept`], base then head); an error when a side has no window that counted any.
fn per_unit_of_work(group: &Group) -> Result<(Group, [Kept; 2]), CompareError> {
    let divide = |side: &[RunCosts], name: &'static str| -> Result<(Vec<RunCosts>, Kept), CompareError> {
        let (mut out, mut kept) = (Vec::new(), Kept::default());
        for (i, r) in side.iter().enumerate() {
            match r.counted_work() {
                Some(w) => {
                    kept.kept.push(i);
                    out.push(r.divided_by(w));
                }
                None => kept.left_out.push(i),
            }
        }
        if out.is_empty() {
            return Err(CompareError::NoWork {
                group: group.key.clone(),
                side: name,
                missing: side.len(),
                windows: side.len(),
            });
        }
        Ok((out, kept))
    };
    let (base, base_kept) = divide(&group.base, "base")?;
    let (head, head_kept) = divide(&group.head, "head")?;
    Ok((Group { base, head, ..group.clone() }, [base_kept, head_kept]))
}

/// Most of a side's windows that may count no work for `auto` to compare per unit of work: a
/// window without requests (a quiet minute, the one a replica completes as it exits) is left out;
/// a side where many are without is not a service that counts its work.
pub const MAX_WITHOUT_WORK: f64 = 0.25;

/// Whether a side counted its work for `auto` to compare per unit of work: two windows at least
/// that counted some, and at most [`MAX_WITHOUT_WORK`] of them without.
fn counts_work(side: &[RunCosts]) -> bool {
    let counted = side.iter().filter(|r| r.counted_work().is_some()).count();
    counted >= 2 && (side.len() - counted) as f64 <= MAX_WITHOUT_WORK * side.len() as f64
}

/// The median window's units of work, among the windows that counted some (`None`: none did).
fn median_work(side: &[RunCosts]) -> Option<f64> {
    let mut v: Vec<f64> = side.iter().filter_map(RunCosts::counted_work).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The decision for one group and metric, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Share, rate or work (never `Auto`).
    pub denominator: Denominator,
    /// The functions above [`DOMINANT_SHARE`] of the metric (mean self share over the windows of
    /// either side), with that share.
    pub dominant: Vec<(String, f64)>,
    /// Relative change of the median window's metric outside those functions, head against base
    /// (`None` when no window has any).
    pub load_change: Option<f64>,
    /// The median window's units of work, base and head, among the windows that counted some
    /// (`None` when a side has none).
    pub work: Option<(f64, f64)>,
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
    let outside = |side: &[RunCosts]| -> Option<f64> {
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
    let work = median_work(&group.base).zip(median_work(&group.head));
    let denominator = match asked {
        Denominator::Auto if counts_work(&group.base) && counts_work(&group.head) => Denominator::Work,
        Denominator::Auto if !normalized => Denominator::Rate,
        Denominator::Auto
            if !dominant.is_empty() && load_change.is_some_and(|c| c.abs() <= COMPARABLE_LOAD) =>
        {
            Denominator::Rate
        }
        Denominator::Auto => Denominator::Share,
        d => d,
    };
    if !normalized && !matches!(denominator, Denominator::Share | Denominator::Work) {
        // Compared by amount already: no share to be misled by.
        dominant.clear();
    }
    Choice { denominator, dominant, load_change, work, asked, normalized }
}

impl Choice {
    /// The comparison's options for this choice: the rate and the work are the metric not
    /// normalized (the work divides each window's costs, [`compare`]), an asked share the metric
    /// normalized.
    pub fn apply(&self, metric: Metric, options: &mut Options) {
        match (self.denominator, self.asked) {
            (Denominator::Rate | Denominator::Work, _) => {
                options.normalize.remove(&metric);
            }
            (Denominator::Share, Denominator::Share) => {
                options.normalize.insert(metric);
            }
            _ => {}
        }
    }

    /// States the choice in `cmp`'s warnings (every format shows them): a rate or a work chosen
    /// for a dominant function or asked for, a share that cannot judge a dominant function.
    pub fn state(&self, group: &str, metric: Metric, cmp: &mut Comparison) {
        let by_work = self.denominator == Denominator::Work;
        let rate = self.denominator == Denominator::Rate;
        let asked = (rate && self.asked == Denominator::Rate && self.normalized) || by_work;
        if self.dominant.is_empty() && !asked {
            return;
        }
        cmp.warnings.push(Warning::Denominator {
            group: group.to_owned(),
            metric,
            rate,
            dominant: self.dominant.iter().map(|(n, s)| (n.clone(), (s * 1000.0).round() as u32)).collect(),
            load_change_permille: self.load_change.map(|c| (c * 1000.0).round() as i64),
            work_per_window: self.work.filter(|_| by_work).map(|(b, h)| (b.round() as u64, h.round() as u64)),
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

    /// Window `i`'s load relative to the side's: a few percent from window to window, as real
    /// windows have.
    fn wobble(i: usize) -> f64 {
        1.0 + 0.03 * ((i * 7 % 5) as f64 - 2.0) / 2.0
    }

    /// Windows of 10 s at one core's worth of load: a handler at 87% of CPU, with the noise of
    /// real windows (a few percent from window to window).
    fn side(slowdown: f64, load: f64) -> Vec<RunCosts> {
        (0..12).map(|i| window(8.7e9 * slowdown * load * wobble(i), 1.3e9 * load * wobble(i))).collect()
    }

    /// `group` compared as `prod compare` does, with the denominator `asked`.
    fn judged(group: &Group, asked: Denominator) -> Result<Comparison, CompareError> {
        super::compare(
            std::slice::from_ref(group),
            Metric::Cpu,
            asked,
            &Options::default(),
            RevisionInfo::default(),
            RevisionInfo::default(),
        )
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

    /// `side`'s windows with the requests they served counted: 1,000 per window at load 1.
    fn counted(slowdown: f64, load: f64) -> Vec<RunCosts> {
        side(slowdown, load)
            .into_iter()
            .enumerate()
            .map(|(i, w)| RunCosts { work: Some((1000.0 * load * wobble(i)).round()), ..w })
            .collect()
    }

    /// Issue 27 item 4: with the work counted, the dominant handler made 1.5x slower is found
    /// under 40% more load too (where neither its share nor its rate can judge it), by its CPU per
    /// request, and nothing else is.
    #[test]
    fn with_the_work_counted_a_dominant_function_is_judged_per_unit_of_work_under_any_load() {
        let group = Group {
            key: "prod/svc/cpu".into(),
            base: counted(1.0, 1.0),
            head: counted(1.5, 1.4),
            ..Group::default()
        };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Work, "{choice:?}");
        assert_eq!(choice.work, Some((1000.0, 1400.0)));
        let cmp = judged(&group, Denominator::Auto).unwrap();
        let found: Vec<&str> =
            cmp.with_verdict(Verdict::Regression).iter().map(|f| f.function.as_str()).collect();
        assert_eq!(found, ["svc::handler"], "{:#?}", cmp.findings);
        let handler = cmp.findings.iter().find(|f| f.function == "svc::handler").unwrap();
        assert!(handler.change.is_some_and(|c| (c - 0.5).abs() < 0.05), "{handler:#?}");
        let said: Vec<String> = cmp.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            said.iter()
                .any(|w| w.contains("per unit of work") && w.contains("1000 units in base, 1400 in head")),
            "{said:?}"
        );
        // The same load, the same cost per request: nothing changed.
        let same = Group { head: counted(1.0, 1.4), ..group.clone() };
        let cmp = judged(&same, Denominator::Auto).unwrap();
        assert!(!cmp.has_regression(), "{:#?}", cmp.findings);
        // Counted work is the denominator with no function above half of the CPU too: a path
        // that holds most of it in several functions cannot move their shares much either.
        let split = |slowdown: f64, load: f64| -> Vec<RunCosts> {
            (0..12)
                .map(|i| {
                    let mut w = window(8.7e9 * slowdown * load * wobble(i), 1.3e9 * load * wobble(i));
                    let handler = w.functions.remove("svc::handler").unwrap();
                    for part in ["svc::rounds", "svc::schedule"] {
                        let half = handler[&Metric::Cpu].self_ / 2.0;
                        w.functions
                            .insert(part.into(), [(Metric::Cpu, Cost { self_: half, total: half })].into());
                    }
                    RunCosts { work: Some((1000.0 * load * wobble(i)).round()), ..w }
                })
                .collect()
        };
        let group = Group { base: split(1.0, 1.0), head: split(1.5, 1.4), ..group };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!((choice.denominator, choice.dominant.len()), (Denominator::Work, 0), "{choice:?}");
        let cmp = judged(&group, Denominator::Auto).unwrap();
        let mut found: Vec<&str> =
            cmp.with_verdict(Verdict::Regression).iter().map(|f| f.function.as_str()).collect();
        found.sort();
        assert_eq!(found, ["svc::rounds", "svc::schedule"], "{:#?}", cmp.findings);
        // By share, neither half is found.
        let by_share = judged(&group, Denominator::Share).unwrap();
        assert!(!by_share.has_regression(), "{:#?}", by_share.findings);
    }

    /// A window that counted no work (a quiet minute, the one a replica completes as it exits) is
    /// left out, by its position as loaded; too many such windows and `auto` does not divide by
    /// work at all.
    #[test]
    fn windows_without_work_are_left_out_and_said_so() {
        let mut head = counted(1.5, 1.4);
        head[3].work = None;
        head[7].work = Some(0.0);
        let group = Group { key: "prod/svc/cpu".into(), base: counted(1.0, 1.0), head, ..Group::default() };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Work, "2 of 12 without work: {choice:?}");
        let cmp = judged(&group, Denominator::Auto).unwrap();
        let found: Vec<&str> =
            cmp.with_verdict(Verdict::Regression).iter().map(|f| f.function.as_str()).collect();
        assert_eq!(found, ["svc::handler"], "{:#?}", cmp.findings);
        let left_out: Vec<(Side, usize)> = cmp
            .warnings
            .iter()
            .filter_map(|w| match w {
                Warning::SkippedRun { side, index, reason, .. } if reason.contains("no work") => {
                    Some((*side, *index))
                }
                _ => None,
            })
            .collect();
        assert_eq!(left_out, [(Side::Head, 3), (Side::Head, 7)], "{:#?}", cmp.warnings);
        let mut sparse = counted(1.0, 1.0);
        for w in &mut sparse[..4] {
            w.work = None;
        }
        let group = Group { base: sparse, ..group };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Share, "4 of 12 without work: not per unit of work");
        // Asked for by hand it still is, and the report says so (it said "compared by share").
        let cmp = judged(&group, Denominator::Work).unwrap();
        let said: Vec<String> = cmp.warnings.iter().map(|w| w.to_string()).collect();
        assert!(said.iter().any(|w| w.contains("per unit of work")), "{said:?}");
        assert!(!said.iter().any(|w| w.contains("compared by share")), "{said:?}");
    }

    #[test]
    fn work_asked_of_windows_that_counted_none_is_a_clear_error() {
        let group = Group {
            key: "prod/svc/cpu".into(),
            base: counted(1.0, 1.0),
            head: side(1.0, 1.0),
            ..Group::default()
        };
        let choice = choose(&group, Metric::Cpu, Denominator::Auto, &Options::default());
        assert_eq!(choice.denominator, Denominator::Rate, "one side counts no work: as before");
        let err = judged(&group, Denominator::Work).unwrap_err().to_string();
        assert!(err.contains("12 of the 12 head windows") && err.contains("count_work"), "{err}");
    }
}
