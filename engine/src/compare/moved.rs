//! Cost that moved between functions while the work around them stayed the same.
//!
//! An edit can change how the compiler splits and inlines code it did not touch: generic code
//! instantiated in the user's crate is partitioned anew, an inlining threshold is crossed. Work
//! then moves from one function's self cost to another's. On serde_json's round trips
//! (`tests/measure/caller_change.sh`), a never-taken branch added to `main` made
//! `Map::insert` +16% to +23% self and `visit_f64` +70% to +140% in every check, while
//! `visit_map`'s self cost fell by half and the function that encloses them all cost what it
//! did. Each function's change is real and its machine code changed, so the call-path rule
//! explains it; but nothing got slower, and a gate that fails there fails on an edit that
//! changed no work.
//!
//! A self-cost regression of a function F has **moved** when at least two thirds of it did, part
//! by part. F's self cost is split by the caller it ran under (each part tested as the engine
//! tests a function, [`EdgeChange`]; a function with one caller is one part). A part that grew
//! (its lower bound above zero) moved within a function D when:
//! - every call path to the part passes D: D is F itself (cost that moved into F from its
//!   callees), the part's caller, or one of the caller's dominators in the group's call graph;
//! - D's total did not grow by as much as the part did: the upper bound of D's total change is
//!   below the part's lower bound, both in units of the group's total (share points, adjusted as
//!   the normalized test adjusts them); what D grew by (its estimate) was added, not moved, and
//!   is taken off the part's;
//! - and a function at or under D whose code the diff explains changed the other way (an
//!   improvement, or a vanished function): the witness that cost moved, rather than D's
//!   measurement being off. Shifts (functions whose code did not change) are no witness, so a
//!   real regression beside a layout shift stays a regression.
//!
//! The scopes are tried nearest first (smallest total first): the first that did not grow as much
//! is where the part moved; one that grew as much and holds other work besides the part (not a
//! thin wrapper around it) ends the search, since the cost was added there. So a regression in a
//! pull request that also made something unrelated cheaper still gates: its caller grew by all of
//! it.
//!
//! The nearest such D of the largest part is named ([`Finding::moved_within`]). An improvement
//! moves the same way, the other way round. The total-cost changes in the same direction of F and
//! of the functions between D and F are moved with it: they are F's change seen from above.
//!
//! A moved finding is reported and does not gate; `--strict` keeps regressions gating. A real
//! regression is found when D grows with it, which is what a regression is: a moved cost needs an
//! equal saving under D, made by code the diff changed.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::finding::{Finding, Verdict};
use super::model::{CallGraph, Group, Kind, Metric};

/// A finding's change in share points: `[low, estimate, high]`. Exact findings have no interval:
/// the three are equal. `None` for findings without a change (new, vanished).
fn points(f: &Finding) -> Option<[f64; 3]> {
    let c = f.change?;
    Some([f.ci_low.unwrap_or(c), c, f.ci_high.unwrap_or(c)].map(|x| x * f.base_share))
}

/// Which way a finding's verdict goes: `Some(true)` for more cost, `Some(false)` for less.
fn direction(v: Verdict) -> Option<bool> {
    match v {
        Verdict::Regression | Verdict::PossibleRegression | Verdict::New => Some(true),
        Verdict::Improvement | Verdict::PossibleImprovement | Verdict::Vanished => Some(false),
        _ => None,
    }
}

/// One group's call graph, read for dominators.
struct Graph<'a> {
    callers: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Graph<'a> {
    fn new(graph: &'a CallGraph) -> Self {
        Graph { callers: graph.callers() }
    }

    /// Every function above `f` on some call path.
    fn ancestors(&self, f: &'a str) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![f];
        while let Some(g) = todo.pop() {
            for &c in self.callers.get(g).into_iter().flatten() {
                if c != f && seen.insert(c) {
                    todo.push(c);
                }
            }
        }
        seen
    }

    /// Whether every call path to `f` passes through `d`: walking up from `f` without entering
    /// `d` reaches no function without callers.
    fn dominates(&self, d: &str, f: &'a str) -> bool {
        let mut seen: HashSet<&str> = HashSet::from([f]);
        let mut todo = vec![f];
        while let Some(g) = todo.pop() {
            let callers = self.callers_of(g);
            if callers.is_empty() {
                return false;
            }
            for c in callers {
                if c != d && seen.insert(c) {
                    todo.push(c);
                }
            }
        }
        true
    }

    /// The direct callers of `f` (itself left out).
    fn callers_of(&self, f: &str) -> Vec<&'a str> {
        self.callers.get(f).into_iter().flatten().copied().filter(|&c| c != f).collect()
    }

    /// Where a cost of `caller`'s calls can have moved within: `caller` and its dominators.
    fn scopes(&self, caller: &'a str) -> Vec<&'a str> {
        std::iter::once(caller)
            .chain(self.ancestors(caller).into_iter().filter(|&d| self.dominates(d, caller)))
            .collect()
    }

    /// Whether `g` is `d` or under it on some call path.
    fn at_or_under(&self, d: &str, g: &str) -> bool {
        g == d || CallGraph::is_above(d, g, &self.callers)
    }
}

/// The change of a function's self cost under one of its callers, tested as the engine tests a
/// function's cost (same normalization, spread and confidence).
#[derive(Debug, Clone)]
pub(super) struct EdgeChange {
    pub group: String,
    pub metric: Metric,
    pub caller: String,
    pub callee: String,
    /// Lower bound, estimate and upper bound of the change, in share points of the group's total.
    pub points: [f64; 3],
    /// Its mean share of the group's total in base runs.
    pub base_share: f64,
}

/// At least this fraction of a function's change must have moved for the function to be moved.
const MOVED_FRACTION: f64 = 2.0 / 3.0;

/// The findings whose change moved, with the function each moved within: `(index into
/// findings, within)`. Total-cost findings moved with a self-cost one name the same function.
/// Reads verdicts, intervals, the changes under each caller and each group's call graph; decides
/// nothing else.
pub(super) fn find(
    findings: &[&Finding],
    edges: &[EdgeChange],
    groups: &[Group],
    strict: bool,
) -> Vec<(usize, String)> {
    let graphs: HashMap<&str, &CallGraph> =
        groups.iter().filter_map(|g| g.calls.as_ref().map(|c| (g.key.as_str(), c))).collect();
    // (group, metric) -> (function -> index of its total finding), and the findings there.
    let mut totals: HashMap<(&str, Metric), HashMap<&str, usize>> = HashMap::new();
    let mut here: HashMap<(&str, Metric), Vec<usize>> = HashMap::new();
    for (i, f) in findings.iter().enumerate() {
        here.entry((f.group.as_str(), f.metric)).or_default().push(i);
        if f.kind == Kind::Total {
            totals.entry((f.group.as_str(), f.metric)).or_default().insert(f.function.as_str(), i);
        }
    }
    let mut under: HashMap<(&str, Metric, &str), Vec<&EdgeChange>> = HashMap::new();
    for e in edges {
        under.entry((e.group.as_str(), e.metric, e.callee.as_str())).or_default().push(e);
    }
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut graph_of: HashMap<&str, Graph<'_>> = HashMap::new();
    for (i, f) in findings.iter().enumerate() {
        let Some(up) = direction(f.verdict) else { continue };
        if f.kind != Kind::SelfCost || matches!(f.verdict, Verdict::New | Verdict::Vanished) || (strict && up)
        {
            continue;
        }
        let Some(call_graph) = graphs.get(f.group.as_str()) else { continue };
        let graph = graph_of.entry(f.group.as_str()).or_insert_with(|| Graph::new(call_graph));
        let Some(whole) = points(f) else { continue };
        // A change as the cost added (regression) or removed (improvement): least and estimate.
        let sized = |[low, mid, high]: [f64; 3]| if up { (low, mid) } else { (-high, -mid) };
        let (_, size) = sized(whole);
        if size <= 0.0 {
            continue;
        }
        let place = (f.group.as_str(), f.metric);
        let (Some(totals), Some(near)) = (totals.get(&place), here.get(&place)) else { continue };
        let function = f.function.as_str();
        // The parts: F's whole self cost within F itself, then its parts under each caller.
        let mut parts: Vec<([f64; 3], f64, Vec<&str>)> = vec![(whole, f.base_share, vec![function])];
        let callers = graph.callers_of(function);
        match under.get(&(f.group.as_str(), f.metric, function)) {
            Some(split) => {
                parts.extend(split.iter().map(|e| (e.points, e.base_share, graph.scopes(&e.caller))))
            }
            None if callers.len() == 1 => parts.push((whole, f.base_share, graph.scopes(callers[0]))),
            None => {}
        }
        let mut moved: Vec<(f64, &str)> = Vec::new();
        for (n, (part, part_share, scopes)) in parts.into_iter().enumerate() {
            let (least, estimate) = sized(part);
            if least <= 0.0 {
                continue;
            }
            let mut scopes: Vec<(f64, &str, usize)> = scopes
                .into_iter()
                .filter_map(|d| totals.get(d).map(|&t| (findings[t].base_share, d, t)))
                .collect();
            scopes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            // Nearest first: the first scope that did not grow as much as the part is where it
            // moved; a scope that grew as much, with room besides the part to have made up for
            // it (not a thin wrapper), says the part's cost was added there: the search ends.
            let mut within = None;
            for (share, d, t) in scopes {
                let Some([d_low, d_mid, d_high]) = points(findings[t]) else { continue };
                let absorbed = if up { d_high >= least } else { -d_low >= least };
                if absorbed {
                    if share - part_share >= estimate {
                        break;
                    }
                    continue;
                }
                let witness = near.iter().any(|&w| {
                    let g = findings[w];
                    g.explained != Some(false)
                        && direction(g.verdict) == Some(!up)
                        && graph.at_or_under(d, g.function.as_str())
                });
                if witness {
                    // What D's total grew by was added, not moved: the part moved less that.
                    // (Exact counts have no interval: a scope that grew 96% as much as the part
                    // passes the test above, and only 4% of the part moved.)
                    let grew = if up { d_mid } else { -d_mid };
                    within = Some((d, (estimate - grew.max(0.0)).max(0.0)));
                }
                break;
            }
            if let Some((d, amount)) = within {
                // F's whole change moved within F: nothing else to add.
                if n == 0 {
                    moved = vec![(amount, d)];
                    break;
                }
                moved.push((amount, d));
            }
        }
        let share: f64 = moved.iter().map(|(e, _)| e).sum();
        let Some(&(_, d)) = moved.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else { continue };
        if share < MOVED_FRACTION * size {
            continue;
        }
        out.push((i, d.to_owned()));
        // F's total and the totals between D and F that changed the same way, seen from above.
        for &t in near {
            let g = findings[t];
            if g.kind != Kind::Total || direction(g.verdict) != Some(up) {
                continue;
            }
            let between = g.function == f.function
                || (g.function != d
                    && graph.at_or_under(d, g.function.as_str())
                    && graph.at_or_under(g.function.as_str(), function));
            if between {
                out.push((t, d.to_owned()));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}
