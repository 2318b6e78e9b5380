//! Extraction of per-run series from a group: which runs have a metric, the value of one sample
//! in each run, and each function's self and total cost per run (zero where it is absent).

use std::collections::BTreeSet;

use super::finding::{Side, Warning};
use super::model::{Group, Metric, RunCosts, Sampling};
use super::options::Options;

/// Base and head, in that order, wherever a pair is kept.
pub(crate) const SIDES: [Side; 2] = [Side::Base, Side::Head];

/// One run's facts for one metric.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// The run's total of the metric.
    pub total: f64,
    /// The value of one sample (1 for exact metrics): the pseudocount for absent functions.
    pub unit: f64,
    /// Whether the metric is exact in this run.
    pub exact: bool,
}

/// One function's costs, per side, per run.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub name: String,
    /// `[base, head]` self costs per run.
    pub self_: [Vec<f64>; 2],
    /// `[base, head]` total costs per run.
    pub total: [Vec<f64>; 2],
}

/// The self cost of a function under one of its callers, per side, per run: kept for functions
/// with several callers (`compare::moved`).
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub caller: String,
    pub callee: String,
    /// `[base, head]` self costs of `callee` called by `caller`, per run.
    pub self_: [Vec<f64>; 2],
}

/// Everything needed to compare one metric of one group.
#[derive(Debug, Clone)]
pub(crate) struct MetricData {
    /// `[base, head]` runs that recorded the metric.
    pub runs: [Vec<Run>; 2],
    /// Functions with a non-zero cost somewhere, by name, ignored ones left out.
    pub functions: Vec<Series>,
    /// Distinct function names left out by the ignore list.
    pub ignored: usize,
    /// The self costs of functions with several callers, by caller.
    pub edges: Vec<Edge>,
}

impl MetricData {
    /// Whether every run on both sides measured the metric exactly.
    pub(crate) fn exact(&self) -> bool {
        self.runs.iter().flatten().all(|r| r.exact)
    }

    /// Whether both sides are sampled, or both exact.
    pub(crate) fn consistent(&self) -> bool {
        let side_exact = |s: &[Run]| s.iter().all(|r| r.exact);
        let side_sampled = |s: &[Run]| s.iter().all(|r| !r.exact);
        (side_exact(&self.runs[0]) && side_exact(&self.runs[1]))
            || (side_sampled(&self.runs[0]) && side_sampled(&self.runs[1]))
    }
}

fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

/// The runs of one side that can be used for `metric`, with their positions.
fn side_runs(
    group: &str,
    runs: &[RunCosts],
    metric: Metric,
    side: Side,
    warnings: &mut Vec<Warning>,
) -> Vec<(usize, Run)> {
    let recorded = runs.iter().filter(|r| r.totals.contains_key(&metric)).count();
    let mut kept = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let Some(t) = run.totals.get(&metric) else {
            if recorded > 0 {
                warnings.push(Warning::SkippedRun {
                    group: group.to_owned(),
                    metric,
                    side,
                    index,
                    reason: "metric not recorded".to_owned(),
                });
            }
            continue;
        };
        let run = if !t.value.is_finite() || t.value < 0.0 {
            Err("invalid total")
        } else {
            match t.sampling {
                Sampling::Exact => Ok(Run { total: t.value, unit: 1.0, exact: true }),
                Sampling::Sampled { .. } => match t.sample_value() {
                    Some(unit) => Ok(Run { total: t.value, unit, exact: false }),
                    None => Err("no samples"),
                },
            }
        };
        match run {
            Ok(run) => kept.push((index, run)),
            Err(reason) => warnings.push(Warning::SkippedRun {
                group: group.to_owned(),
                metric,
                side,
                index,
                reason: reason.to_owned(),
            }),
        }
    }
    leave_out_sparse(group, runs, metric, side, &mut kept, warnings);
    kept
}

/// Leaves out the sampled runs with fewer than a tenth of the side's median run's samples: a
/// production window cut short (the one a replica completes as it exits, a few milliseconds of
/// shutdown) or one that caught a moment without load. Its shares are noise (a function holding
/// 80% of every other window may hold none of its 14 samples), and every window counts the same
/// in the tests, so one of them can move a function's mean by more than the change sought.
fn leave_out_sparse(
    group: &str,
    runs: &[RunCosts],
    metric: Metric,
    side: Side,
    kept: &mut Vec<(usize, Run)>,
    warnings: &mut Vec<Warning>,
) {
    let samples = |index: usize| match runs[index].totals.get(&metric).map(|t| t.sampling) {
        Some(Sampling::Sampled { samples }) => Some(samples),
        _ => None,
    };
    let mut counts: Vec<u64> = kept.iter().filter_map(|&(index, _)| samples(index)).collect();
    counts.sort_unstable();
    let Some(&median) = counts.get(counts.len() / 2) else { return };
    kept.retain(|&(index, _)| match samples(index) {
        Some(n) if n * SPARSE_RUN_RATIO < median => {
            warnings.push(Warning::SkippedRun {
                group: group.to_owned(),
                metric,
                side,
                index,
                reason: format!(
                    "{n} samples, under a tenth of the side's median run ({median}): too few to compare"
                ),
            });
            false
        }
        _ => true,
    });
}

/// A run with fewer than 1/`SPARSE_RUN_RATIO` of its side's median samples is left out.
const SPARSE_RUN_RATIO: u64 = 10;

/// Extracts the series of `metric` in `group`. `None` when the metric cannot be compared (the
/// reason, if worth telling, is pushed to `warnings`).
pub(crate) fn prepare(
    group: &Group,
    metric: Metric,
    opts: &Options,
    warnings: &mut Vec<Warning>,
) -> Option<MetricData> {
    let sides = [&group.base, &group.head];
    let mut side_warnings = Vec::new();
    let kept: [Vec<(usize, Run)>; 2] =
        [0, 1].map(|s| side_runs(&group.key, sides[s], metric, SIDES[s], &mut side_warnings));
    let recorded = |s: usize| sides[s].iter().any(|r| r.totals.contains_key(&metric));
    match (recorded(0), recorded(1)) {
        (false, false) => return None,
        (true, false) | (false, true) => {
            let side = if recorded(0) { SIDES[0] } else { SIDES[1] };
            warnings.push(Warning::MetricOnOneSide { group: group.key.clone(), metric, side });
            return None;
        }
        (true, true) => {}
    }
    // A metric with no events at all on either side (e.g. a run that never allocates) is not
    // worth a warning per run.
    let all_empty = sides.iter().all(|runs| {
        runs.iter().all(|r| {
            r.totals.get(&metric).is_none_or(|t| match t.sampling {
                Sampling::Exact => t.value == 0.0,
                Sampling::Sampled { .. } => t.sample_value().is_none(),
            })
        })
    });
    if all_empty {
        return None;
    }
    warnings.extend(side_warnings);
    if kept[0].is_empty() || kept[1].is_empty() {
        return None;
    }

    let mut names = BTreeSet::new();
    for (s, side) in kept.iter().enumerate() {
        for (index, _) in side {
            for (name, costs) in &sides[s][*index].functions {
                if costs.get(&metric).is_some_and(|c| clean(c.self_) > 0.0 || clean(c.total) > 0.0) {
                    names.insert(name.as_str());
                }
            }
        }
    }
    let mut ignored = 0;
    let mut functions = Vec::new();
    for name in names {
        if opts.is_ignored(name) {
            ignored += 1;
            continue;
        }
        // The program's start and its harness (`compare::input`) are never the code under
        // review: their cost stays in every run's total, but they are not judged. What moves
        // them between identical builds is the moment a test's thread ends (an allocation of the
        // harness still held at exit, or not) and the paths and options the process ran with.
        if name == super::input::PROGRAM_START {
            continue;
        }
        let values = |s: usize, total: bool| -> Vec<f64> {
            kept[s]
                .iter()
                .map(|(index, _)| {
                    let cost = sides[s][*index].functions.get(name).and_then(|m| m.get(&metric));
                    cost.map_or(
                        0.0,
                        |c| if total { clean(c.total).max(clean(c.self_)) } else { clean(c.self_) },
                    )
                })
                .collect()
        };
        functions.push(Series {
            name: name.to_owned(),
            self_: [values(0, false), values(1, false)],
            total: [values(0, true), values(1, true)],
        });
    }
    let edges = edges(sides, &kept, metric, opts);
    let runs = kept.map(|side| side.into_iter().map(|(_, run)| run).collect());
    Some(MetricData { runs, functions, ignored, edges })
}

/// The [`Edge`]s of `metric`: for each function that more than one function calls (in any kept
/// run of either side), its self cost under each caller.
fn edges(
    sides: [&Vec<RunCosts>; 2],
    kept: &[Vec<(usize, Run)>; 2],
    metric: Metric,
    opts: &Options,
) -> Vec<Edge> {
    let mut callers: std::collections::BTreeMap<&str, BTreeSet<&str>> = std::collections::BTreeMap::new();
    for (s, side) in kept.iter().enumerate() {
        for (index, _) in side {
            for (callee, by) in &sides[s][*index].self_by_caller {
                for (caller, costs) in by {
                    if costs.get(&metric).is_some_and(|&v| clean(v) > 0.0) {
                        callers.entry(callee.as_str()).or_default().insert(caller.as_str());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (callee, of) in callers {
        if of.len() < 2 || opts.is_ignored(callee) {
            continue;
        }
        for caller in of {
            let values = |s: usize| -> Vec<f64> {
                kept[s]
                    .iter()
                    .map(|(index, _)| {
                        let by = sides[s][*index].self_by_caller.get(callee).and_then(|b| b.get(caller));
                        by.and_then(|m| m.get(&metric)).map_or(0.0, |&v| clean(v))
                    })
                    .collect()
            };
            out.push(Edge {
                caller: caller.to_owned(),
                callee: callee.to_owned(),
                self_: [values(0), values(1)],
            });
        }
    }
    out
}
