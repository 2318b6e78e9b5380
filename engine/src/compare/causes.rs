//! One regression, one row: findings that share one cause are grouped under it.
//!
//! A change in one function shows up as many findings: its own self cost in every test or
//! benchmark that runs it, its total cost, the total cost of each caller above it, and the self
//! cost of the callees inlined into it (whose instructions are its instructions). Each is right on
//! its own, but a reviewer needs the cause once and the rest as its evidence. Grouping, per metric
//! and per kind of verdict (regressions with regressions, shifts with shifts: grouping never moves
//! a finding between what gates and what does not):
//! - the **cause** is a function whose self cost changed (or that is new or vanished); findings of
//!   one function in several groups are one cause;
//! - the self-cost change of a function **inlined into** a cause in the same group is evidence of
//!   it, unless the inlined function's own machine code changed (then it is a cause of its own);
//! - the total-cost change of the cause itself, and of a **caller** of causes in the same group,
//!   is evidence of the largest of them when they account for at least two thirds of it (the rule
//!   of inherited totals), or, without a call graph, when it is marked inherited;
//! - anything else is a cause of its own.
//!
//! The grouping only reads the findings' verdicts and the call graph ([`CallGraph`], built from
//! the stacks by the pipeline): it changes no verdict, and the regressions, improvements and
//! shifts lists keep every finding, each naming its cause (`cause`, `cause_role`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::finding::{Cause, CauseRole, Finding, Verdict};
use super::input::FrameNames;
use super::model::{CallGraph, Group, Kind, Metric};
use crate::profile::Profile;

/// Group, metric and kind of verdict: where findings can share a cause.
type Place<'a> = (&'a str, Metric, Verdict);

/// A total-cost change is evidence of the self-cost changes below it when they account for at
/// least this fraction of it (as for inherited totals).
const ACCOUNTED: f64 = 1.0 / 1.5;

impl CallGraph {
    /// The call graph of the stacks of `profiles` (both sides' runs of one group).
    pub fn from_stacks<'a>(profiles: impl IntoIterator<Item = &'a Profile>, fold_library: bool) -> CallGraph {
        let mut out = CallGraph::default();
        for profile in profiles {
            let names = FrameNames::new(profile, fold_library);
            let mut located = Vec::new();
            let mut seen_stacks: BTreeSet<&[u64]> = BTreeSet::new();
            for s in &profile.sample {
                if !seen_stacks.insert(s.location_id.as_slice()) {
                    continue;
                }
                names.located(s, &mut located);
                // Innermost first; library frames are not named by the comparison.
                let own: Vec<(usize, &str)> = located
                    .iter()
                    .filter(|(_, (_, library))| !library)
                    .map(|(depth, (name, _))| (*depth, name.as_str()))
                    .collect();
                for pair in own.windows(2) {
                    let [(d_in, inner), (d_out, outer)] = [pair[0], pair[1]];
                    if inner == outer {
                        continue;
                    }
                    if d_in == d_out && !out.inlined.contains(&(inner.to_owned(), outer.to_owned())) {
                        out.inlined.insert((inner.to_owned(), outer.to_owned()));
                    }
                    if !out.calls.contains(&(outer.to_owned(), inner.to_owned())) {
                        out.calls.insert((outer.to_owned(), inner.to_owned()));
                    }
                }
            }
        }
        out
    }

    /// Whether `caller` is on a call path above `callee`, by the callers of each function
    /// ([`CallGraph::callers`]); calls of different stacks may chain, so this may say yes for a
    /// path no stack took.
    pub(super) fn is_above(caller: &str, callee: &str, callers: &HashMap<&str, Vec<&str>>) -> bool {
        let mut todo = vec![callee];
        let mut seen: BTreeSet<&str> = BTreeSet::from([callee]);
        while let Some(f) = todo.pop() {
            for &c in callers.get(f).into_iter().flatten() {
                if c == caller {
                    return true;
                }
                if seen.insert(c) {
                    todo.push(c);
                }
            }
        }
        false
    }

    /// Where each function was inlined into, outermost last along the first such chain.
    fn inlined_chain<'a>(&'a self, function: &'a str) -> Vec<&'a str> {
        let mut chain = Vec::new();
        let mut at = function;
        while chain.len() < 16 {
            let next = self
                .inlined
                .range((at.to_owned(), String::new())..)
                .take_while(|(inner, _)| inner == at)
                .map(|(_, outer)| outer.as_str())
                .find(|outer| *outer != function && !chain.contains(outer));
            match next {
                Some(o) => {
                    chain.push(o);
                    at = o;
                }
                None => break,
            }
        }
        chain
    }

    pub(super) fn callers(&self) -> HashMap<&str, Vec<&str>> {
        let mut m: HashMap<&str, Vec<&str>> = HashMap::new();
        for (caller, callee) in &self.calls {
            m.entry(callee.as_str()).or_default().push(caller.as_str());
        }
        m
    }
}

/// The kind of verdict a cause is of: a possible regression groups with regressions.
fn class(v: Verdict) -> Option<Verdict> {
    match v {
        Verdict::Regression | Verdict::PossibleRegression => Some(Verdict::Regression),
        Verdict::Improvement | Verdict::PossibleImprovement => Some(Verdict::Improvement),
        Verdict::Shifted => Some(Verdict::Shifted),
        Verdict::Moved => Some(Verdict::Moved),
        Verdict::New => Some(Verdict::New),
        Verdict::Vanished => Some(Verdict::Vanished),
        Verdict::Unchanged | Verdict::Inconclusive => None,
    }
}

/// A finding's change in units of its group's total (share points), signed.
fn delta(f: &Finding) -> f64 {
    match f.change {
        Some(c) if f.verdict != Verdict::Vanished => c * f.base_share,
        _ => f.head_share - f.base_share,
    }
}

/// Groups `findings` by cause (see the module docs), setting each grouped finding's `cause` and
/// `cause_role`, and returns the causes in the order of their verdicts ([`Verdict`]'s: regressions
/// first), the largest change first within each.
pub fn assign(findings: &mut [Finding], groups: &[Group]) -> Vec<Cause> {
    let graphs: HashMap<&str, &CallGraph> =
        groups.iter().filter_map(|g| g.calls.as_ref().map(|c| (g.key.as_str(), c))).collect();
    let changed: HashMap<&str, &BTreeSet<String>> =
        groups.iter().filter_map(|g| g.explained.as_ref().map(|e| (g.key.as_str(), &e.changed))).collect();
    let callers: HashMap<&str, HashMap<&str, Vec<&str>>> =
        graphs.iter().map(|(k, g)| (*k, g.callers())).collect();
    // (group, metric, class) -> own findings there: (function, index).
    let mut own: HashMap<Place<'_>, Vec<(&str, usize)>> = HashMap::new();
    let mut role: Vec<Option<(usize, CauseRole)>> = vec![None; findings.len()];
    for (i, f) in findings.iter().enumerate() {
        let Some(c) = class(f.verdict) else { continue };
        if f.kind == Kind::SelfCost || matches!(f.verdict, Verdict::New | Verdict::Vanished) {
            own.entry((f.group.as_str(), f.metric, c)).or_default().push((f.function.as_str(), i));
        }
    }
    // Self changes of functions inlined into another one that changed: evidence of the outermost.
    for ((group, _, _), list) in &own {
        let Some(graph) = graphs.get(group) else { continue };
        let by_name: HashMap<&str, usize> = list.iter().map(|&(n, i)| (n, i)).collect();
        let code_changed = |f: &str| changed.get(group).is_some_and(|c| c.contains(f));
        for &(name, i) in list {
            if code_changed(name) || findings[i].kind != Kind::SelfCost {
                continue;
            }
            // Follow "inlined into" outward to the outermost function that changed too.
            let target = graph.inlined_chain(name).into_iter().rev().find_map(|o| by_name.get(o).copied());
            if let Some(t) = target {
                role[i] = Some((t, CauseRole::Inlined));
            }
        }
    }
    // The remaining own findings are causes, one per (metric, class, function) over all groups.
    let mut heads: BTreeMap<(Metric, Verdict, &str), Vec<usize>> = BTreeMap::new();
    for list in own.values() {
        for &(name, i) in list {
            if role[i].is_none() {
                heads
                    .entry((
                        findings[i].metric,
                        class(findings[i].verdict).unwrap_or(Verdict::Unchanged),
                        name,
                    ))
                    .or_default()
                    .push(i);
            }
        }
    }
    // Totals: of a cause itself, of callers of causes, or causes of their own.
    let mut unresolved: Vec<(usize, Verdict)> = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        let Some(c) = class(f.verdict) else { continue };
        if f.kind != Kind::Total || matches!(f.verdict, Verdict::New | Verdict::Vanished) {
            continue;
        }
        // The total of a function inlined into a cause follows its self cost.
        let inlined = own.get(&(f.group.as_str(), f.metric, c)).into_iter().flatten().find_map(|&(n, j)| {
            (n == f.function).then_some(role[j]).flatten().filter(|(_, r)| *r == CauseRole::Inlined)
        });
        if let Some(r) = inlined {
            role[i] = Some(r);
            continue;
        }
        let here: Vec<usize> = own
            .get(&(f.group.as_str(), f.metric, c))
            .into_iter()
            .flatten()
            .map(|&(_, j)| j)
            .filter(|&j| role[j].is_none() && delta(&findings[j]).signum() == delta(f).signum())
            .collect();
        if let Some(&j) = here.iter().find(|&&j| findings[j].function == f.function) {
            role[i] = Some((j, CauseRole::Total));
            continue;
        }
        let below: Vec<usize> = match (graphs.get(f.group.as_str()), callers.get(f.group.as_str())) {
            (Some(_), Some(up)) => here
                .into_iter()
                .filter(|&j| CallGraph::is_above(&f.function, &findings[j].function, up))
                .collect(),
            // Without a call graph, only what the engine found accounted for.
            _ if f.inherited => here,
            _ => Vec::new(),
        };
        let accounted: f64 = below.iter().map(|&j| delta(&findings[j]).abs()).sum();
        let largest = below
            .iter()
            .copied()
            .max_by(|&a, &b| delta(&findings[a]).abs().total_cmp(&delta(&findings[b]).abs()).then(b.cmp(&a)));
        if let Some(j) = largest
            && (f.inherited || accounted >= ACCOUNTED * delta(f).abs())
        {
            role[i] = Some((j, CauseRole::CallerTotal));
            continue;
        }
        // Nothing in its own group accounts for it (a callee's self change there may be under the
        // floor): decided once every self cause is known.
        if below.is_empty() {
            unresolved.push((i, c));
        } else if !f.inherited {
            // An inherited total is accounted for by self changes: never a cause of its own.
            heads.entry((f.metric, c, f.function.as_str())).or_default().push(i);
        }
    }
    // A total that nothing in its group accounts for is evidence of a cause found elsewhere whose
    // machine code the diff changed and that it calls (the change of the callee's self cost in
    // this group was too small a share to be tested, its callers' totals not): the largest.
    let self_causes: Vec<((Metric, Verdict, &str), usize)> =
        heads.iter().map(|(k, members)| (*k, members[0])).collect();
    for (i, c) in unresolved {
        let f = &findings[i];
        let code_changed = |name: &str| changed.get(f.group.as_str()).is_none_or(|set| set.contains(name));
        let target = callers.get(f.group.as_str()).and_then(|up| {
            self_causes
                .iter()
                .filter(|((m, k, name), _)| *m == f.metric && *k == c && code_changed(name))
                .filter(|((_, _, name), _)| CallGraph::is_above(&f.function, name, up))
                .max_by(|a, b| delta(&findings[a.1]).abs().total_cmp(&delta(&findings[b.1]).abs()))
                .map(|(_, j)| *j)
        });
        match target {
            Some(j) => role[i] = Some((j, CauseRole::CallerTotal)),
            None if !f.inherited => heads.entry((f.metric, c, f.function.as_str())).or_default().push(i),
            None => {}
        }
    }
    // Causes from heads; evidence follows its head's cause.
    let mut causes: Vec<Cause> = Vec::new();
    let mut cause_of_head: HashMap<usize, usize> = HashMap::new();
    for ((metric, verdict_class, function), mut members) in heads {
        let magnitude = |i: usize| findings[i].change.map_or(findings[i].head_share, f64::abs);
        let verdict = members.iter().map(|&i| findings[i].verdict).min().unwrap_or(verdict_class);
        // Own self findings of the cause's verdict first, then the largest change.
        members.sort_by(|&a, &b| {
            let key = |i: usize| (findings[i].kind != Kind::SelfCost, findings[i].verdict != verdict);
            key(a).cmp(&key(b)).then(magnitude(b).total_cmp(&magnitude(a))).then(a.cmp(&b))
        });
        let index = causes.len();
        for &i in &members {
            cause_of_head.insert(i, index);
        }
        let mut groups: Vec<String> = members.iter().map(|&i| findings[i].group.clone()).collect();
        groups.sort();
        groups.dedup();
        let changes: Vec<f64> = members.iter().filter_map(|&i| findings[i].change).collect();
        causes.push(Cause {
            id: format!("{}:{}:{}", metric.as_str(), verdict_class.as_str(), function),
            function: function.to_owned(),
            metric,
            verdict,
            groups,
            change_min: changes.iter().copied().reduce(f64::min),
            change_max: changes.iter().copied().reduce(f64::max),
            findings: 0,
            roles: BTreeMap::new(),
            members,
        });
    }
    // Resolve evidence to its head's cause (an inlined function's target may itself be a total's
    // target, never evidence: targets are own findings left without a role).
    for i in 0..findings.len() {
        let (index, r) = match (cause_of_head.get(&i), role[i]) {
            (Some(&c), _) => (c, CauseRole::Cause),
            (None, Some((head, r))) => match cause_of_head.get(&head) {
                Some(&c) => (c, r),
                None => continue,
            },
            (None, None) => continue,
        };
        let r = if r == CauseRole::Cause
            && findings[i].kind == Kind::Total
            && !matches!(findings[i].verdict, Verdict::New | Verdict::Vanished)
            && causes[index].members.first().is_some_and(|&m| findings[m].kind == Kind::SelfCost)
        {
            CauseRole::Total
        } else {
            r
        };
        if !causes[index].members.contains(&i) {
            causes[index].members.push(i);
        }
        *causes[index].roles.entry(r).or_default() += 1;
        findings[i].cause = Some(causes[index].id.clone());
        findings[i].cause_role = Some(r);
    }
    for c in &mut causes {
        c.findings = c.members.len();
    }
    let weight = |c: &Cause| c.members.first().map_or(0.0, |&i| delta(&findings[i]).abs());
    causes.sort_by(|a, b| {
        a.verdict.cmp(&b.verdict).then(weight(b).total_cmp(&weight(a))).then(a.id.cmp(&b.id))
    });
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Method;

    fn finding(
        group: &str,
        function: &str,
        kind: Kind,
        verdict: Verdict,
        change: f64,
        base_share: f64,
    ) -> Finding {
        Finding {
            group: group.into(),
            function: function.into(),
            metric: Metric::Instructions,
            kind,
            base: 100.0,
            head: 100.0 * (1.0 + change),
            base_share,
            head_share: base_share * (1.0 + change),
            change: Some(change),
            ci_low: None,
            ci_high: None,
            p: None,
            q: None,
            runs_base: 1,
            runs_head: 1,
            method: Method::ExactThreshold,
            verdict,
            inherited: false,
            explained: Some(true),
            calls: None,
            cause: None,
            cause_role: None,
            moved_within: None,
        }
    }

    fn graph(calls: &[(&str, &str)], inlined: &[(&str, &str)]) -> CallGraph {
        CallGraph {
            calls: calls.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
            inlined: inlined.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
        }
    }

    /// Issue 27: one extra pass in `numeric_identifier` was 22 rows (its self cost in six tests,
    /// its callers' totals in each); it is one cause with those as its evidence.
    #[test]
    fn one_function_in_many_tests_with_its_callers_totals_is_one_cause() {
        let r = Verdict::Regression;
        let mut findings = Vec::new();
        let mut groups = Vec::new();
        for t in ["test/a", "test/b", "test/c"] {
            findings.push(finding(t, "semver::parse::numeric_identifier", Kind::SelfCost, r, 2.0, 0.1));
            findings.push(finding(t, "semver::parse::version", Kind::Total, r, 0.4, 0.5));
            findings.push(finding(t, "test::case", Kind::Total, r, 0.2, 1.0));
            groups.push(Group {
                key: t.into(),
                calls: Some(graph(
                    &[
                        ("test::case", "semver::parse::version"),
                        ("semver::parse::version", "semver::parse::numeric_identifier"),
                    ],
                    &[],
                )),
                ..Group::default()
            });
        }
        // In a fourth test the function's own change is below the floor (not a finding): its
        // callers' totals are still its evidence, the diff having changed its code.
        findings.push(finding("test/d", "semver::parse::version", Kind::Total, r, 0.01, 0.5));
        groups.push(Group {
            key: "test/d".into(),
            calls: Some(graph(&[("semver::parse::version", "semver::parse::numeric_identifier")], &[])),
            explained: Some(crate::compare::Explained {
                changed: ["semver::parse::numeric_identifier".to_owned()].into(),
                ..Default::default()
            }),
            ..Group::default()
        });
        // An unrelated total that the cause does not account for stays a cause of its own.
        findings.push(finding("test/c", "test::other", Kind::Total, r, 0.5, 0.4));
        let causes = assign(&mut findings, &groups);
        assert_eq!(causes.len(), 2, "{causes:#?}");
        let c = &causes[0];
        assert_eq!(c.function, "semver::parse::numeric_identifier");
        assert_eq!(c.id, "instructions:regression:semver::parse::numeric_identifier");
        assert_eq!(c.groups, ["test/a", "test/b", "test/c"]);
        assert_eq!(c.findings, 10);
        assert_eq!(c.roles[&CauseRole::Cause], 3);
        assert_eq!(c.roles[&CauseRole::CallerTotal], 7);
        assert!(findings.iter().all(|f| f.cause.is_some()));
        assert_eq!(causes[1].function, "test::other");
        assert_eq!(findings.last().unwrap().cause_role, Some(CauseRole::Cause));
    }

    #[test]
    fn inlined_callees_are_evidence_unless_their_own_code_changed() {
        let r = Verdict::Regression;
        let mut findings = vec![
            finding("bin/w", "w::tokenize", Kind::SelfCost, r, 0.25, 0.3),
            finding("bin/w", "hashbrown::raw::RawTable::find", Kind::SelfCost, r, 0.25, 0.1),
            finding("bin/w", "hashbrown::map::make_hash", Kind::SelfCost, r, 0.25, 0.05),
            finding("bin/w", "w::changed_helper", Kind::SelfCost, r, 0.3, 0.05),
            // A shift is never evidence of a regression.
            finding("bin/w", "w::layout", Kind::SelfCost, Verdict::Shifted, 0.3, 0.05),
        ];
        let mut explained = crate::compare::Explained::default();
        explained.changed.insert("w::changed_helper".into());
        let groups = [Group {
            key: "bin/w".into(),
            calls: Some(graph(
                &[],
                &[
                    ("hashbrown::raw::RawTable::find", "w::tokenize"),
                    ("hashbrown::map::make_hash", "hashbrown::raw::RawTable::find"),
                    ("w::changed_helper", "w::tokenize"),
                    ("w::layout", "w::tokenize"),
                ],
            )),
            explained: Some(explained),
            ..Group::default()
        }];
        let causes = assign(&mut findings, &groups);
        let names: Vec<&str> = causes.iter().map(|c| c.function.as_str()).collect();
        // By verdict, then by the change in share points (tokenize's 0.25 of 0.3 first).
        assert_eq!(names, ["w::tokenize", "w::changed_helper", "w::layout"], "{causes:#?}");
        let tokenize = &causes[0];
        assert_eq!(tokenize.roles.get(&CauseRole::Inlined), Some(&2));
        assert_eq!(findings[2].cause.as_deref(), Some("instructions:regression:w::tokenize"));
    }

    #[test]
    fn without_a_call_graph_inherited_totals_follow_the_largest_cause() {
        let r = Verdict::Regression;
        let mut findings = vec![
            finding("g", "a::leaf", Kind::SelfCost, r, 0.5, 0.2),
            finding("g", "a::leaf", Kind::Total, r, 0.5, 0.25),
            finding("g", "a::main", Kind::Total, r, 0.1, 1.0),
            finding("g", "a::other", Kind::Total, r, 0.2, 0.3),
        ];
        findings[2].inherited = true;
        let causes = assign(&mut findings, &[Group { key: "g".into(), ..Group::default() }]);
        assert_eq!(causes.len(), 2, "{causes:#?}");
        assert_eq!(causes[0].roles[&CauseRole::Total], 1);
        assert_eq!(causes[0].roles[&CauseRole::CallerTotal], 1);
        assert_eq!(causes[1].function, "a::other");
    }

    #[test]
    fn the_call_graph_is_read_from_stacks_with_library_frames_left_out() {
        let p = crate::profile::test_support::synth(&[
            (&["main", "app::run", "core::iter::Iterator::fold", "app::tokenize+hb::find"], 1_000_000, 0),
            (&["main", "app::run", "app::other"], 1_000_000, 0),
        ]);
        let g = CallGraph::from_stacks([&p], true);
        assert!(g.calls.contains(&("app::run".into(), "app::tokenize".into())));
        assert!(g.calls.contains(&("app::tokenize".into(), "hb::find".into())));
        assert!(g.inlined.contains(&("hb::find".into(), "app::tokenize".into())));
        assert!(!g.inlined.contains(&("app::tokenize".into(), "app::run".into())));
        let up = g.callers();
        assert!(CallGraph::is_above("app::run", "hb::find", &up));
        assert!(!CallGraph::is_above("app::other", "hb::find", &up));
        assert_eq!(g.inlined_chain("hb::find"), ["app::tokenize"]);
    }
}
