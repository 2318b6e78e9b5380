//! A comparison's breakdown by a sample label (`compare --by KEY`, `prod compare --by KEY`):
//! which endpoint's (tenant's, span's) part of the CPU, allocations or waits changed between
//! base and head.
//!
//! Each run (production window) is one observation, as in the function tests: a value's part of
//! a run is its amount of the metric there ([`RunCosts::by_label`]) and its share of the run's
//! metric. A metric the comparison reads as a share (CPU by default: the machine's speed moves
//! every run's CPU) is tested on the share, the others on the amount per run, with Yuen's trimmed
//! test of the two sides' runs ([`two_sample_p`]: a run that caught a rare request can be far
//! from the rest). A value changed when its p value is below the comparison's alpha over the
//! number of values listed (Bonferroni: each breakdown tests up to [`Breakdown::ROWS`] values
//! at once) and its median moved by at least the metric's minimum effect.
//!
//! What a share can and cannot say: a value whose every function got slower by the same factor
//! keeps its profile's shape (so `--sample-label` alone shows no function changed) but grows its
//! share of the run; a share also moves when the work mix does (more requests of one endpoint),
//! which a fixed workload (`run`, `test`, `bench`) rules out and production traffic does not.
//! The amount per run is shown beside it.

use std::collections::{BTreeMap, BTreeSet};

use super::finding::{Breakdown, BreakdownFigure, BreakdownRow};
use super::model::{Group, Metric, RunCosts};
use super::options::Options;
use super::stats::{median, two_sample_p};

/// The breakdowns of `group` by its [`Group::by_label`], one per metric its runs measured
/// (none when it asks for none).
pub(super) fn breakdowns(group: &Group, opts: &Options) -> Vec<Breakdown> {
    let Some(key) = &group.by_label else { return Vec::new() };
    let metrics: BTreeSet<Metric> =
        group.base.iter().chain(&group.head).flat_map(|r| r.by_label.keys().copied()).collect();
    metrics.into_iter().filter_map(|metric| breakdown(group, key, metric, opts)).collect()
}

/// One value's amounts and shares per run of one side.
#[derive(Default)]
struct Parts {
    amounts: Vec<f64>,
    shares: Vec<f64>,
}

/// Each value's parts per run of `runs`, every value of `values` in every run (0 where a run has
/// none of it).
fn parts_of(
    runs: &[RunCosts],
    metric: Metric,
    values: &BTreeSet<Option<String>>,
) -> BTreeMap<Option<String>, Parts> {
    let mut out: BTreeMap<Option<String>, Parts> =
        values.iter().map(|v| (v.clone(), Parts::default())).collect();
    for run in runs {
        let Some(per_value) = run.by_label.get(&metric) else { continue };
        let total: f64 = per_value.values().sum();
        for (value, parts) in &mut out {
            let amount = per_value.get(value).copied().unwrap_or(0.0);
            parts.amounts.push(amount);
            parts.shares.push(if total > 0.0 { amount / total } else { 0.0 });
        }
    }
    out
}

fn breakdown(group: &Group, key: &str, metric: Metric, opts: &Options) -> Option<Breakdown> {
    let values: BTreeSet<Option<String>> = group
        .base
        .iter()
        .chain(&group.head)
        .filter_map(|r| r.by_label.get(&metric))
        .flat_map(|per_value| per_value.keys().cloned())
        .collect();
    if values.is_empty() {
        return None;
    }
    let (base, head) = (parts_of(&group.base, metric, &values), parts_of(&group.head, metric, &values));
    let tested =
        if opts.normalize.contains(&metric) { BreakdownFigure::Share } else { BreakdownFigure::Amount };
    let mid = |v: &[f64]| median(&mut v.to_vec()).unwrap_or(0.0);
    let mut rows: Vec<(BreakdownRow, [&Parts; 2])> = values
        .iter()
        .filter_map(|value| {
            let sides = [base.get(value)?, head.get(value)?];
            // A value none of whose samples carries this metric (CPU samples under an
            // allocation's breakdown) is not one of its values.
            if sides.iter().all(|s| s.amounts.iter().all(|&a| a == 0.0)) {
                return None;
            }
            let row = BreakdownRow {
                value: value.clone(),
                base: mid(&sides[0].amounts),
                head: mid(&sides[1].amounts),
                base_share: mid(&sides[0].shares),
                head_share: mid(&sides[1].shares),
                change: None,
                p: None,
                changed: false,
            };
            Some((row, sides))
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| {
        b.base_share
            .max(b.head_share)
            .total_cmp(&a.base_share.max(a.head_share))
            .then_with(|| a.value.cmp(&b.value))
    });
    let other_values = rows.len().saturating_sub(Breakdown::ROWS);
    rows.truncate(Breakdown::ROWS);
    let listed = rows.len() as f64;
    let rows = rows
        .into_iter()
        .map(|(mut row, [b, h])| {
            let (figures, medians) = match tested {
                BreakdownFigure::Share => ([&b.shares, &h.shares], [row.base_share, row.head_share]),
                BreakdownFigure::Amount => ([&b.amounts, &h.amounts], [row.base, row.head]),
            };
            row.change = (medians[0] > 0.0).then(|| medians[1] / medians[0] - 1.0);
            row.p = two_sample_p(figures[0], figures[1]);
            row.changed = row.p.is_some_and(|p| p < opts.alpha / listed)
                && row.change.is_some_and(|c| c.abs() >= opts.min_effect(metric));
            row
        })
        .collect();
    Some(Breakdown { group: group.key.clone(), metric, key: key.to_owned(), tested, rows, other_values })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `total` CPU split as `parts` (value, share).
    fn run(total: f64, parts: &[(Option<&str>, f64)]) -> RunCosts {
        let per_value = parts.iter().map(|(v, s)| (v.map(str::to_owned), total * s)).collect();
        RunCosts { by_label: BTreeMap::from([(Metric::Cpu, per_value)]), ..RunCosts::default() }
    }

    /// `n` runs of a side whose `/search` share is `search` (±`jitter`, alternating), the rest
    /// `/list`, with unlabelled samples at 5%, and totals that move by ±20% (the machine's speed).
    fn side(n: usize, search: f64, jitter: f64) -> Vec<RunCosts> {
        (0..n)
            .map(|i| {
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                let s = search + sign * jitter * (1.0 + (i % 3) as f64) / 2.0;
                let total = 1e9 * (1.0 + 0.2 * sign * (i % 4) as f64 / 3.0);
                run(total, &[(Some("/search"), s), (Some("/list"), 0.95 - s), (None, 0.05)])
            })
            .collect()
    }

    fn group(base: Vec<RunCosts>, head: Vec<RunCosts>) -> Group {
        Group { key: "bin:server".into(), base, head, by_label: Some("endpoint".into()), ..Group::default() }
    }

    #[test]
    fn a_value_whose_share_grew_is_changed_and_the_others_are_told_by_their_test() {
        // /search from 40% to 50% of each run's CPU, the runs' totals moving by ±20% on both
        // sides: the share sees it, the totals' spread does not hide it.
        let b = breakdowns(&group(side(8, 0.40, 0.01), side(8, 0.50, 0.01)), &Options::default());
        assert_eq!(b.len(), 1);
        let b = &b[0];
        assert_eq!((b.key.as_str(), b.metric, b.tested), ("endpoint", Metric::Cpu, BreakdownFigure::Share));
        let values: Vec<Option<&str>> = b.rows.iter().map(|r| r.value.as_deref()).collect();
        assert_eq!(values, [Some("/list"), Some("/search"), None], "by the larger share");
        let search = &b.rows[1];
        assert!((search.base_share - 0.40).abs() < 0.011 && (search.head_share - 0.50).abs() < 0.011);
        assert!((search.change.unwrap() - 0.25).abs() < 0.05, "{:?}", search.change);
        assert!(search.changed && search.p.unwrap() < 1e-4, "{search:?}");
        let list = &b.rows[0];
        assert!(list.changed && list.change.unwrap() < -0.15, "{list:?}");
        let none = &b.rows[2];
        assert!(!none.changed && none.change.unwrap().abs() < 1e-9, "unlabelled samples kept 5%: {none:?}");
    }

    #[test]
    fn noise_is_not_a_change_and_a_small_move_is_below_the_minimum_effect() {
        // The same split on both sides, with run-to-run noise of ±2 points.
        let b = &breakdowns(&group(side(6, 0.40, 0.02), side(6, 0.40, 0.02)), &Options::default())[0];
        assert!(b.rows.iter().all(|r| !r.changed), "{b:?}");
        // A real but tiny move (40% to 40.8%, +2%, no noise): below the 5% minimum effect.
        let b = &breakdowns(&group(side(6, 0.40, 0.0), side(6, 0.408, 0.0)), &Options::default())[0];
        let search = b.rows.iter().find(|r| r.value.as_deref() == Some("/search")).unwrap();
        assert!(!search.changed, "{search:?}");
    }

    #[test]
    fn metrics_not_read_as_shares_are_tested_on_their_amount_and_values_past_the_rows_are_counted() {
        let runs = |bytes: f64| -> Vec<RunCosts> {
            (0..5)
                .map(|i| {
                    let mut per_value: BTreeMap<Option<String>, f64> =
                        (0..25).map(|v| (Some(format!("tenant-{v:02}")), 1000.0 + i as f64)).collect();
                    per_value.insert(Some("big".into()), bytes + i as f64);
                    per_value.insert(Some("cpu-only".into()), 0.0);
                    RunCosts {
                        by_label: BTreeMap::from([(Metric::AllocBytes, per_value)]),
                        ..RunCosts::default()
                    }
                })
                .collect()
        };
        let mut g = group(runs(1e6), runs(2e6));
        g.by_label = Some("tenant".into());
        let b = &breakdowns(&g, &Options::default())[0];
        assert_eq!(b.tested, BreakdownFigure::Amount);
        assert_eq!(
            (b.rows.len(), b.other_values),
            (Breakdown::ROWS, 26 - Breakdown::ROWS),
            "a value with no amount on either side is not listed"
        );
        let big = &b.rows[0];
        assert_eq!(big.value.as_deref(), Some("big"));
        assert!((big.change.unwrap() - 1.0).abs() < 0.01 && big.changed, "{big:?}");
        // Every other tenant allocated the same, and so is not changed although its share fell.
        assert!(b.rows[1..].iter().all(|r| !r.changed && r.head_share < r.base_share), "{b:?}");
    }

    #[test]
    fn every_report_format_shows_the_breakdown() {
        let g = group(side(8, 0.40, 0.01), side(8, 0.50, 0.01));
        let cmp = crate::compare::compare(&[g], Default::default(), Default::default(), &Options::default())
            .unwrap();
        assert_eq!(cmp.breakdowns.len(), 1);
        let mut text = Vec::new();
        crate::compare::write_text(&cmp, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("By sample label endpoint in bin:server (cpu; each value's share of each run tested; not gated):"),
            "{text}"
        );
        let search = text.lines().find(|l| l.trim_start().starts_with("/search")).unwrap();
        assert!(
            search.contains("40.0%") && search.contains("50.0%") && search.contains("p < 0.001, changed"),
            "{text}"
        );
        assert!(text.contains("(no such label)"), "{text}");
        let mut md = Vec::new();
        crate::compare::write_markdown(&cmp, &mut md).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(md.contains("| `endpoint` | base | head | change | test |"), "{md}");
        let search = md.lines().find(|l| l.starts_with("| `/search` | 40.0% ")).unwrap_or_default();
        assert!(
            search.contains("| 50.0% ") && search.ends_with("| **+25.0%** | p < 0.001, changed |"),
            "{md}"
        );
        let mut json = Vec::new();
        crate::compare::write_json(&cmp, &mut json).unwrap();
        let back: contprof_contracts::report::Report = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.breakdowns, cmp.breakdowns, "the JSON report reads back");
        let json = String::from_utf8(json).unwrap();
        assert!(json.contains(r#""tested": "share""#) && json.contains(r#""value": null"#), "{json}");
    }

    #[test]
    fn no_breakdown_without_a_key() {
        let mut g = group(side(4, 0.4, 0.01), side(4, 0.5, 0.01));
        g.by_label = None;
        assert!(breakdowns(&g, &Options::default()).is_empty());
    }
}
