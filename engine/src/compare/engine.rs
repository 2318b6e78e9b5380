//! The decision procedure: floors, tests per function, normalization, false discovery control,
//! verdicts and the self/total bookkeeping. See the module docs of [`super`] for the method.

use std::collections::{BTreeMap, BTreeSet};

use super::CompareError;
use super::finding::{
    Calls, Comparison, Detectable, DriftSource, Finding, Method, Outcome, Power, Summary, Verdict, Warning,
};
use super::model::{Group, Kind, Metric, RevisionInfo, RunCosts, Sampling};
use super::moved::EdgeChange;
use super::options::Options;
use super::series::{MetricData, Run, SIDES, Series, prepare};
use super::stats::{
    SideStats, TestResult, benjamini_hochberg, excess_variance, fit_prior, normal_quantile_upper, single_run,
    trimmed_per_end, weighted_median, welch,
};

/// Below this many CPU samples per run a warning says the runs are too short to resolve changes
/// of a few percent in functions of a few percent (a 10% function holds ~100 samples).
const FEW_SAMPLES: u64 = 1000;
/// Rounds of "estimate the shift, leave out the functions found changed".
const SHIFT_ROUNDS: usize = 4;
/// A total-cost change is inherited when self-cost changes in the same direction account for at
/// least this fraction of it.
const INHERITED_FRACTION: f64 = 1.0 / 1.5;

/// What a finding's verdict is decided from, once q values are known.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Test { single: bool },
    Exact { separated: bool },
    Fixed(Verdict),
}

#[derive(Debug)]
struct Pending {
    finding: Finding,
    decision: Decision,
    /// Change in units of the run (share points), for the self/total bookkeeping.
    delta: f64,
    /// The function is called by changed code ([`Explained::called_by_changed`]).
    ///
    /// [`Explained::called_by_changed`]: super::model::Explained::called_by_changed
    called_by_changed: bool,
}

/// Compares base and head runs of every group.
///
/// Groups are matched by key; a key must appear once. Findings come out in a deterministic
/// order (group, metric, kind, function) whatever the order of the input.
pub fn compare(
    groups: &[Group],
    base: RevisionInfo,
    head: RevisionInfo,
    opts: &Options,
) -> Result<Comparison, CompareError> {
    opts.validate()?;
    let mut by_key: BTreeMap<&str, &Group> = BTreeMap::new();
    for g in groups {
        if by_key.insert(g.key.as_str(), g).is_some() {
            return Err(CompareError::DuplicateGroup { key: g.key.clone() });
        }
    }
    let mut warnings = Vec::new();
    let mut pending = Vec::new();
    let mut edges = Vec::new();
    let mut power = Vec::new();
    let mut few_samples = Vec::new();
    let mut summary = Summary::default();
    for group in by_key.values() {
        match (group.base.is_empty(), group.head.is_empty()) {
            (true, true) => continue,
            (false, true) | (true, false) => {
                let side = if group.base.is_empty() { SIDES[1] } else { SIDES[0] };
                warnings.push(Warning::GroupOnOneSide { group: group.key.clone(), side });
                continue;
            }
            (false, false) => summary.groups_compared += 1,
        }
        let mut single = BTreeSet::new();
        for metric in Metric::ALL {
            let Some(data) = prepare(group, metric, opts, &mut warnings) else { continue };
            summary.ignored += data.ignored;
            let mut ctx = Ctx {
                group: &group.key,
                sides: [&group.base, &group.head],
                explained: group.explained.as_ref(),
                history: group.history.as_ref(),
                metric,
                data: &data,
                opts,
                out: &mut pending,
                power: &mut power,
                edges: &mut edges,
                below_floor: 0,
            };
            if data.exact() {
                ctx.exact();
            } else {
                if !data.consistent() {
                    warnings.push(Warning::MixedExactness { group: group.key.clone(), metric });
                }
                for (runs, side) in data.runs.iter().zip(SIDES) {
                    if runs.len() == 1 {
                        single.insert(side);
                    }
                }
                ctx.sampled();
            }
            summary.below_floor += ctx.below_floor;
        }
        for side in single {
            warnings.push(Warning::SingleRun { group: group.key.clone(), side });
        }
        for (runs, side) in [&group.base, &group.head].into_iter().zip(SIDES) {
            let samples: Vec<u64> = runs
                .iter()
                .filter_map(|r| match r.totals.get(&Metric::Cpu)?.sampling {
                    Sampling::Sampled { samples } => Some(samples),
                    Sampling::Exact => None,
                })
                .collect();
            let mean = samples.iter().sum::<u64>() / (samples.len().max(1) as u64);
            if !samples.is_empty() && mean < FEW_SAMPLES {
                few_samples.push((group.key.clone(), side, mean));
            }
        }
    }

    // False discovery rate families, fixed before any p value is seen: the tests of functions
    // whose call paths the diff changed (the ones that can gate), and the others (that can only be
    // shifted). Each family's rate is controlled on its own, so a thousand untouched functions do
    // not dilute the power to see the few the diff touched. Without code fingerprints, one family.
    let tested: Vec<usize> = (0..pending.len()).filter(|&i| pending[i].finding.p.is_some()).collect();
    let mut gating = 0;
    for unexplained in [false, true] {
        let family: Vec<usize> = tested
            .iter()
            .copied()
            .filter(|&i| (pending[i].finding.explained == Some(false)) == unexplained)
            .collect();
        let ps: Vec<f64> = family.iter().filter_map(|&i| pending[i].finding.p).collect();
        for (&i, q) in family.iter().zip(benjamini_hochberg(&ps)) {
            pending[i].finding.q = Some(q);
        }
        if !unexplained {
            gating = family.len();
        }
    }
    summary.tests = tested.len();
    summary.gating_tests = gating;
    for p in &mut power {
        p.min_detectable = min_detectable(p, gating.max(1), opts);
    }
    for (group, side, samples_per_run) in few_samples {
        let min_detectable_percent = power
            .iter()
            .find(|p| p.group == group && p.metric == Metric::Cpu)
            .and_then(|p| p.at(0.05))
            .map(|c| (c * 100.0).round() as u64);
        warnings.push(Warning::FewSamples { group, side, samples_per_run, min_detectable_percent });
    }
    for p in &mut pending {
        p.finding.verdict = unexplained_is_shift(decide(&p.finding, p.decision, opts), &p.finding, opts);
    }
    let moved = {
        let findings: Vec<&Finding> = pending.iter().map(|p| &p.finding).collect();
        super::moved::find(&findings, &edges, groups, opts.strict)
    };
    for (i, within) in moved {
        pending[i].finding.verdict = Verdict::Moved;
        pending[i].finding.moved_within = Some(within);
    }
    mark_inherited(&mut pending);

    let mut findings: Vec<Finding> = pending.into_iter().map(|p| p.finding).collect();
    findings.sort_by(|a, b| {
        (&a.group, a.metric, a.kind, &a.function).cmp(&(&b.group, b.metric, b.kind, &b.function))
    });
    warnings.sort();
    warnings.dedup();
    summarize(&mut summary, &findings);
    let causes = super::causes::assign(&mut findings, groups);
    summary.causes = causes.len();
    Ok(Comparison {
        base,
        head,
        settings: opts.settings(),
        findings,
        warnings,
        power,
        summary,
        causes,
        timings: None,
        breakdowns: by_key.values().flat_map(|g| super::breakdown::breakdowns(g, opts)).collect(),
    })
}

/// The share of runs cut at each end of a side for the metrics of waiting (Yuen's test,
/// [`SideStats::trimmed`]): their runs have heavy tails. On crossbeam-channel's rendezvous channel
/// (tests/measure/real_crates.sh), 6 of 70 runs of identical code waited 5-15 times less than
/// the others in one lock (57 ms against 450-930 ms): one such run moves the mean of ten logs by
/// about 0.25, a change of 28% made by a single run.
const WAIT_TRIM: f64 = 0.2;

/// The empirical null is estimated from functions whose sampling-noise floor (about one over the
/// samples per run) is at most this: about 20 samples per run.
const NULL_MAX_FLOOR: f64 = 1.0 / 21.0;

/// The between-batch variance used: this comparison's estimate and the history's are two
/// estimates of one quantity, so both are averaged when there are both (one pair of batches each:
/// either alone is noisy); the default is the floor.
fn spread(null: Option<f64>, history: Option<f64>, floor: f64) -> (DriftSource, f64) {
    let (source, estimate) = match (null, history) {
        (Some(n), Some(h)) => (DriftSource::Pooled, 0.5 * (n + h)),
        (Some(n), None) => (DriftSource::Comparison, n),
        (None, Some(h)) => (DriftSource::History, h),
        (None, None) => (DriftSource::None, 0.0),
    };
    if estimate > floor {
        (source, estimate)
    } else if floor > 0.0 {
        (DriftSource::Default, floor)
    } else {
        (DriftSource::None, 0.0)
    }
}

/// Probability of finding a change of the minimum detectable size.
const POWER: f64 = 0.8;

/// The smallest change found with probability [`POWER`] in a function holding each of
/// [`Power::SHARES`], as the first discovery of a Benjamini–Hochberg family of `tests` tests
/// (two-sided p ≤ alpha / tests), given the group's samples, runs, overdispersion and spread.
fn min_detectable(p: &Power, tests: usize, opts: &Options) -> Vec<Detectable> {
    let z =
        normal_quantile_upper(opts.alpha / (2.0 * tests.max(1) as f64)) + normal_quantile_upper(1.0 - POWER);
    let normalized = opts.normalize.contains(&p.metric);
    let (nb, nh) = (p.runs_base.max(1) as f64, p.runs_head.max(1) as f64);
    Power::SHARES
        .iter()
        .map(|&share| {
            let lambda = (share * p.samples_per_run).max(1e-9);
            let per_run = p.overdispersion * if normalized { 1.0 - share } else { 1.0 } / lambda;
            let se = (per_run / nb + per_run / nh + p.between_batch_sd.powi(2)).sqrt();
            Detectable { share, change: (z * se).exp_m1().max(opts.min_effect(p.metric)) }
        })
        .collect()
}

fn decide(f: &Finding, decision: Decision, opts: &Options) -> Verdict {
    let min_effect = opts.min_effect(f.metric);
    let change = f.change.unwrap_or(0.0);
    let large = change.abs() >= min_effect && change != 0.0;
    let up = change > 0.0;
    match decision {
        Decision::Fixed(v) => v,
        Decision::Exact { separated } => match (large && separated, up) {
            (true, true) => Verdict::Regression,
            (true, false) => Verdict::Improvement,
            (false, _) => Verdict::Unchanged,
        },
        Decision::Test { single } => {
            let significant = large && f.q.is_some_and(|q| q <= opts.alpha);
            match (significant, single, up) {
                (true, false, true) => Verdict::Regression,
                (true, false, false) => Verdict::Improvement,
                (true, true, true) => Verdict::PossibleRegression,
                (true, true, false) => Verdict::PossibleImprovement,
                (false, false, _) => Verdict::Unchanged,
                (false, true, _) => Verdict::Inconclusive,
            }
        }
    }
}

/// A change beyond noise that nothing on the function's call paths explains is a shift, not a
/// regression or improvement: the pull request did not change the code that could cost more.
/// `--strict` keeps unexplained regressions gating (marked `explained: false`).
fn unexplained_is_shift(verdict: Verdict, f: &Finding, opts: &Options) -> Verdict {
    if !verdict.is_change() || f.explained != Some(false) {
        return verdict;
    }
    match verdict {
        Verdict::Regression | Verdict::PossibleRegression if opts.strict => verdict,
        _ => Verdict::Shifted,
    }
}

/// Marks total-cost findings whose change the self-cost findings of the same group and metric
/// account for: without a call graph, "account for" means the flagged self changes (and new or
/// vanished functions) in the same direction add up to at least 2/3 of the total-cost change. A
/// regressed leaf then shows once, as self cost, instead of once per caller up to `main`.
///
/// The total of a function called by changed code (a loop bound, an extra call in its caller)
/// is accounted for only by self changes that are not shifts: the changed caller does more work
/// below it, its callees' self costs grow without their code changing (shifts, which do not
/// gate), and that total is then the row that names the regression.
fn mark_inherited(pending: &mut [Pending]) {
    // Per group, metric and direction: the flagged self changes, and those that are not shifts.
    let mut accounted: BTreeMap<(String, Metric, bool), [f64; 2]> = BTreeMap::new();
    for p in pending.iter() {
        let f = &p.finding;
        let counts = match f.verdict {
            Verdict::New | Verdict::Vanished => true,
            v => v.is_change() && f.kind == Kind::SelfCost,
        };
        if counts {
            let sums = accounted.entry((f.group.clone(), f.metric, p.delta > 0.0)).or_default();
            sums[0] += p.delta.abs();
            if f.verdict != Verdict::Shifted {
                sums[1] += p.delta.abs();
            }
        }
    }
    for p in pending.iter_mut() {
        let f = &p.finding;
        if f.kind == Kind::Total && f.verdict.is_change() {
            let sums =
                accounted.get(&(f.group.clone(), f.metric, p.delta > 0.0)).copied().unwrap_or_default();
            let sum = if p.called_by_changed && f.verdict != Verdict::Shifted { sums[1] } else { sums[0] };
            p.finding.inherited = sum >= INHERITED_FRACTION * p.delta.abs();
        }
    }
}

fn summarize(s: &mut Summary, findings: &[Finding]) {
    s.findings = findings.len();
    for f in findings {
        if f.inherited {
            s.inherited += 1;
            continue;
        }
        match f.verdict {
            Verdict::Regression => s.regressions += 1,
            Verdict::Improvement => s.improvements += 1,
            Verdict::PossibleRegression => s.possible_regressions += 1,
            Verdict::PossibleImprovement => s.possible_improvements += 1,
            Verdict::New => s.new += 1,
            Verdict::Vanished => s.vanished += 1,
            Verdict::Inconclusive => s.inconclusive += 1,
            Verdict::Shifted => s.shifted += 1,
            Verdict::Moved => s.moved += 1,
            Verdict::Unchanged => {}
        }
    }
    s.verdict = if s.regressions > 0 {
        Outcome::Regression
    } else if s.possible_regressions > 0 {
        Outcome::PossibleRegression
    } else if s.improvements > 0 {
        Outcome::Improvement
    } else if s.moved > 0 {
        Outcome::Moved
    } else if s.shifted > 0 {
        Outcome::Shifted
    } else if s.groups_compared == 0 {
        Outcome::NothingCompared
    } else {
        Outcome::Unchanged
    };
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = xs.into_iter().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Comparison of one metric in one group.
struct Ctx<'a> {
    group: &'a str,
    /// The group's `[base, head]` runs, for the call counts they carry.
    sides: [&'a [RunCosts]; 2],
    explained: Option<&'a super::model::Explained>,
    /// Between-batch variance per metric learned from the store's history, if any.
    history: Option<&'a BTreeMap<Metric, f64>>,
    metric: Metric,
    data: &'a MetricData,
    opts: &'a Options,
    out: &'a mut Vec<Pending>,
    power: &'a mut Vec<Power>,
    /// The changes of functions' self costs under each of their callers (`compare::moved`).
    edges: &'a mut Vec<EdgeChange>,
    below_floor: usize,
}

impl Ctx<'_> {
    fn values(series: &Series, kind: Kind) -> &[Vec<f64>; 2] {
        match kind {
            Kind::SelfCost => &series.self_,
            Kind::Total => &series.total,
        }
    }

    /// Mean share of the run total, per side.
    fn shares(&self, xs: &[Vec<f64>; 2]) -> [f64; 2] {
        [0, 1].map(|s| {
            mean(
                xs[s]
                    .iter()
                    .zip(&self.data.runs[s])
                    .map(|(x, r)| if r.total > 0.0 { x / r.total } else { 0.0 }),
            )
        })
    }

    /// Mean samples per run, per side (infinite for exact runs: they pass any sample floor).
    fn samples(&self, xs: &[Vec<f64>; 2]) -> [f64; 2] {
        [0, 1].map(|s| {
            mean(
                xs[s]
                    .iter()
                    .zip(&self.data.runs[s])
                    .map(|(x, r)| if r.exact { f64::INFINITY } else { x / r.unit }),
            )
        })
    }

    fn above_floor(&self, xs: &[Vec<f64>; 2]) -> [bool; 2] {
        let (shares, samples) = (self.shares(xs), self.samples(xs));
        [0, 1].map(|s| shares[s] >= self.opts.floor_share && samples[s] >= self.opts.min_samples)
    }

    /// Whether a total-cost series adds nothing to the self-cost one (a leaf), or cannot change
    /// once normalized (the root, holding the whole run).
    fn redundant_total(&self, series: &Series, normalized: bool) -> bool {
        let leaf = (0..2)
            .all(|s| series.total[s].iter().zip(&series.self_[s]).all(|(t, x)| t - x <= 1e-9 * t.abs()));
        let root = normalized
            && (0..2).all(|s| {
                series.total[s].iter().zip(&self.data.runs[s]).all(|(t, r)| *t >= r.total * (1.0 - 1e-9))
            });
        leaf || root
    }

    fn called_by_changed(&self, series: &Series) -> bool {
        self.explained.is_some_and(|e| e.called_by_changed.contains(&series.name))
    }

    /// The finding of a series tested by `t` (a difference of logs): its change, interval and p.
    fn tested(&self, series: &Series, kind: Kind, method: Method, t: &TestResult) -> Finding {
        let mut finding = self.finding(series, kind, method);
        let (lo, hi) = t.interval(self.opts.confidence);
        finding.change = Some(t.diff.exp() - 1.0);
        finding.ci_low = Some(lo.exp() - 1.0);
        finding.ci_high = Some(hi.exp() - 1.0);
        finding.p = Some(t.p);
        finding
    }

    fn finding(&self, series: &Series, kind: Kind, method: Method) -> Finding {
        let xs = Self::values(series, kind);
        let shares = self.shares(xs);
        Finding {
            group: self.group.to_owned(),
            function: series.name.clone(),
            metric: self.metric,
            kind,
            base: mean(xs[0].iter().copied()),
            head: mean(xs[1].iter().copied()),
            base_share: shares[0],
            head_share: shares[1],
            change: None,
            ci_low: None,
            ci_high: None,
            p: None,
            q: None,
            runs_base: self.data.runs[0].len(),
            runs_head: self.data.runs[1].len(),
            method,
            verdict: Verdict::Inconclusive,
            inherited: false,
            explained: self.explained.map(|e| e.explains(&series.name, kind)),
            calls: if self.metric == Metric::Instructions { self.calls(&series.name) } else { None },
            cause: None,
            cause_role: None,
            moved_within: None,
        }
    }

    /// Mean calls of `function` per run on each side, when both sides counted calls and it was
    /// called on one of them.
    fn calls(&self, function: &str) -> Option<Calls> {
        let per_side = self.sides.map(|runs| {
            let counted: Vec<&RunCosts> = runs.iter().filter(|r| !r.calls.is_empty()).collect();
            (!counted.is_empty())
                .then(|| mean(counted.iter().map(|r| r.calls.get(function).copied().unwrap_or(0.0))))
        });
        match per_side {
            [Some(base), Some(head)] if base > 0.0 || head > 0.0 => Some(Calls { base, head }),
            _ => None,
        }
    }

    /// New or vanished: absent (total cost zero) from every run of one side, above the floor on
    /// the other. Reported once, as total cost.
    fn presence(&mut self, series: &Series) -> bool {
        let absent = [0, 1].map(|s| series.total[s].iter().all(|x| *x == 0.0));
        let floor = self.above_floor(&series.total);
        let verdict = match (absent, floor) {
            ([true, false], [_, true]) => Verdict::New,
            ([false, true], [true, _]) => Verdict::Vanished,
            _ if absent[0] || absent[1] => {
                self.below_floor += 1;
                return true;
            }
            _ => return false,
        };
        let mut finding = self.finding(series, Kind::Total, Method::Presence);
        finding.change = (verdict == Verdict::Vanished).then_some(-1.0);
        let delta = finding.head_share - finding.base_share;
        self.out.push(Pending {
            finding,
            decision: Decision::Fixed(verdict),
            delta,
            called_by_changed: self.called_by_changed(series),
        });
        true
    }

    /// Exact metrics: plain thresholds on the means, and the two sides' ranges must not overlap
    /// (a nondeterministic workload cannot turn run-to-run wobble into a verdict). A function
    /// whose count differs between runs of one side is not exact there, whatever the engine:
    /// random inputs (property tests), hash seeds and threads move it from run to run. It is
    /// tested against that spread instead (Welch's test on the logs, in the false discovery rate
    /// of the comparison): with ranges alone, two runs a side of a random quantity are apart one
    /// time in three, and on indexmap's quickcheck tests that made 535 shifted findings.
    fn exact(&mut self) {
        let base_total = mean(self.data.runs[0].iter().map(|r| r.total));
        for series in &self.data.functions {
            if self.presence(series) {
                continue;
            }
            for kind in [Kind::SelfCost, Kind::Total] {
                if kind == Kind::Total && self.redundant_total(series, false) {
                    continue;
                }
                let xs = Self::values(series, kind);
                if !self.above_floor(xs).contains(&true) {
                    self.below_floor += 1;
                    continue;
                }
                let delta = |f: &Finding| if base_total > 0.0 { (f.head - f.base) / base_total } else { 0.0 };
                let varies = xs.iter().any(|side| side.iter().any(|x| *x != side[0]));
                if varies {
                    let t = self.test(self.side_stats_of(xs, false));
                    let finding = self.tested(series, kind, Method::WelchLog, &t);
                    self.out.push(Pending {
                        delta: delta(&finding),
                        finding,
                        decision: Decision::Test { single: xs.iter().any(|side| side.len() < 2) },
                        called_by_changed: self.called_by_changed(series),
                    });
                    continue;
                }
                let mut finding = self.finding(series, kind, Method::ExactThreshold);
                let range = |s: usize| {
                    xs[s]
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(*x), hi.max(*x)))
                };
                let ((lo_b, hi_b), (lo_h, hi_h)) = (range(0), range(1));
                let separated = hi_b < lo_h || hi_h < lo_b;
                finding.change = (finding.base > 0.0).then(|| finding.head / finding.base - 1.0);
                self.out.push(Pending {
                    delta: delta(&finding),
                    finding,
                    decision: Decision::Exact { separated },
                    called_by_changed: self.called_by_changed(series),
                });
            }
        }
        // Functions' self costs under each caller (`compare::moved`): exact, a change is its size.
        if base_total > 0.0 {
            for edge in &self.data.edges {
                let [base, head] = [0, 1].map(|s| mean(edge.self_[s].iter().copied()));
                self.edges.push(EdgeChange {
                    group: self.group.to_owned(),
                    metric: self.metric,
                    caller: edge.caller.clone(),
                    callee: edge.callee.clone(),
                    points: [(head - base) / base_total; 3],
                    base_share: base / base_total,
                });
            }
        }
    }

    /// Sampled metrics: a t-test per function on logs, with the machine's speed normalized out
    /// for metrics listed in `Options::normalize`.
    fn sampled(&mut self) {
        let normalized = self.opts.normalize.contains(&self.metric);
        let mut candidates: Vec<(usize, Kind)> = Vec::new();
        for (i, series) in self.data.functions.iter().enumerate() {
            if self.presence(series) {
                continue;
            }
            for kind in [Kind::SelfCost, Kind::Total] {
                if kind == Kind::Total && self.redundant_total(series, normalized) {
                    continue;
                }
                if self.above_floor(Self::values(series, kind)).contains(&true) {
                    candidates.push((i, kind));
                } else {
                    self.below_floor += 1;
                }
            }
        }

        // Per candidate, per side: mean and variance of the logs.
        let stats: Vec<[SideStats; 2]> =
            candidates.iter().map(|&(i, kind)| self.side_stats(i, kind, normalized)).collect();
        // Empirical-Bayes prior of the per-run variance, from the self-cost series (opt-in: more
        // power at 5 runs, but too many false positives when functions differ in spread).
        let items: Vec<(f64, f64, f64)> = candidates
            .iter()
            .zip(&stats)
            .filter(|((_, kind), _)| *kind == Kind::SelfCost)
            .flat_map(|(_, st)| st.iter().map(|s| (s.raw_var, s.floor, s.df)))
            .collect();
        let prior = if self.opts.moderate_variance { fit_prior(&items) } else { None };
        let tests: Vec<TestResult> =
            stats.iter().map(|st| self.test(st.map(|s| prior.map_or(s, |p| s.moderated(p))))).collect();

        // Side-level normalization: per run, costs are shares of the run's total (cancelling the
        // machine's speed); between sides, the composition shifts when a function grows (every
        // other share shrinks). The shift is the precision-weighted median of the self-cost log
        // changes, recomputed without the functions it finds changed (a large changed function
        // would otherwise pull the median of the unchanged ones off centre). Robust as long as
        // the changed functions hold less than half the weight.
        //
        // Between-batch spread: in the same rounds, the spread of all functions' changes beyond
        // what their within-batch variances show (the empirical null, see `excess_variance`) is
        // added to every test, so that drift between batches recorded at different times does not
        // look certain; the configured default and the store's history set its floor.
        let single = self.data.runs.iter().any(|r| r.len() < 2);
        let selfs: Vec<usize> =
            (0..candidates.len()).filter(|&c| candidates[c].1 == Kind::SelfCost).collect();
        let floor = self.drift_floor(normalized);
        let min_effect = self.opts.min_effect(self.metric);
        let mut shift = (0.0, 0.0);
        let mut null = None;
        let mut changed = vec![false; candidates.len()];
        // The functions the empirical null is estimated from: enough samples (below ~20 per run
        // the log of (samples + 1) is biased toward zero change, and a run that grew would make
        // every small function look shifted), and not explained by the diff (their code, or their
        // caller's, changed: their change is not spread, and a change inlined into many callers
        // would otherwise pass for drift and hide itself).
        let null_items: Vec<usize> = selfs
            .iter()
            .copied()
            .filter(|&c| stats[c].iter().all(|s| s.floor <= NULL_MAX_FLOOR))
            .filter(|&c| {
                let name = &self.data.functions[candidates[c].0].name;
                !self.explained.is_some_and(|e| e.explains(name, Kind::SelfCost))
            })
            .collect();
        // Interleaved sides have no drift between them: what the comparison's null shows beyond
        // the sides' own A/A is the layout's real shifts of unchanged functions, not spread (if
        // the halves cannot say, nothing is added).
        let halves = (self.opts.interleaved && !single)
            .then(|| self.halves_null(&candidates, &null_items, &stats, normalized).unwrap_or(0.0));
        let history = self.history.and_then(|h| h.get(&self.metric).copied());
        // The comparison's null as used: capped at the sides' own A/A when interleaved.
        let spread = |null: Option<f64>| {
            let used = match (null, halves) {
                (Some(n), Some(cap)) => Some(n.min(cap)),
                _ => null,
            };
            spread(used, history, floor)
        };
        for _ in 0..SHIFT_ROUNDS {
            let var = spread(null).1;
            if normalized {
                let mut items: Vec<(f64, f64)> = selfs
                    .iter()
                    .filter(|&&c| !changed[c] && tests[c].se > 0.0)
                    .map(|&c| (tests[c].diff, 1.0 / (tests[c].se * tests[c].se + var)))
                    .collect();
                let Some(m) = weighted_median(&mut items) else { break };
                shift = m;
            }
            let items: Vec<(f64, f64)> = null_items
                .iter()
                .map(|&c| {
                    let t = tests[c].shifted(shift.0, shift.1);
                    (t.diff, t.se * t.se)
                })
                .collect();
            null = if single { None } else { excess_variance(&items) };
            let var = spread(null).1;
            let shifted: Vec<TestResult> =
                selfs.iter().map(|&c| tests[c].shifted(shift.0, shift.1 + var)).collect();
            let qs = benjamini_hochberg(&shifted.iter().map(|t| t.p).collect::<Vec<_>>());
            let mut next = vec![false; candidates.len()];
            for ((&c, t), q) in selfs.iter().zip(&shifted).zip(qs) {
                next[c] = q <= self.opts.alpha && (t.diff.exp() - 1.0).abs() >= min_effect;
            }
            if next == changed {
                break;
            }
            changed = next;
        }
        let (source, drift) = spread(null);
        self.record_power(&selfs, &stats, source, drift, null, halves);
        let shift = (shift.0, shift.1 + drift);
        let method = match (normalized, single) {
            (true, false) => Method::WelchLogShare,
            (false, false)
                if self.metric.is_waiting()
                    && self.data.runs.iter().any(|r| trimmed_per_end(r.len(), WAIT_TRIM) > 0) =>
            {
                Method::YuenLog
            }
            (false, false) => Method::WelchLog,
            (true, true) => Method::SingleRunLogShare,
            (false, true) => Method::SingleRunLog,
        };
        for (&(i, kind), t) in candidates.iter().zip(tests) {
            let series = &self.data.functions[i];
            let t = t.shifted(if normalized { shift.0 } else { 0.0 }, shift.1);
            let finding = self.tested(series, kind, method, &t);
            let delta = self.level_delta(series, kind, shift.0, normalized);
            self.out.push(Pending {
                finding,
                decision: Decision::Test { single },
                delta,
                called_by_changed: self.called_by_changed(series),
            });
        }
        // Functions' self costs under each caller, tested the same way (`compare::moved`).
        for edge in &self.data.edges {
            if !self.above_floor(&edge.self_).contains(&true) {
                continue;
            }
            let t = self
                .test(self.side_stats_of(&edge.self_, normalized))
                .shifted(if normalized { shift.0 } else { 0.0 }, shift.1);
            let (lo, hi) = t.interval(self.opts.confidence);
            let share = self.shares(&edge.self_)[0];
            self.edges.push(EdgeChange {
                group: self.group.to_owned(),
                metric: self.metric,
                caller: edge.caller.clone(),
                callee: edge.callee.clone(),
                points: [lo, t.diff, hi].map(|x| x.exp_m1() * share),
                base_share: share,
            });
        }
    }

    /// The least between-batch variance of this group and metric: the configured defaults (CPU
    /// and the metrics of waiting: allocations do not drift with the machine).
    fn drift_floor(&self, normalized: bool) -> f64 {
        if normalized {
            self.opts.between_batch_sd.powi(2)
        } else if self.metric.is_waiting() {
            self.opts.wait_between_batch_sd.powi(2)
        } else {
            0.0
        }
    }

    /// Records the group's [`Power`]: what its comparison could have seen.
    fn record_power(
        &mut self,
        selfs: &[usize],
        stats: &[[SideStats; 2]],
        source: DriftSource,
        var: f64,
        null: Option<f64>,
        halves: Option<f64>,
    ) {
        // How much more than sampling noise functions vary between runs of one batch.
        let mut ratios: Vec<f64> = selfs
            .iter()
            .flat_map(|&c| stats[c].iter())
            .filter(|s| s.n > 1 && s.floor > 0.0)
            .map(|s| s.raw_var / s.floor)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let overdispersion = ratios.get(ratios.len() / 2).copied().unwrap_or(1.0).max(1.0);
        let runs = |s: usize| self.data.runs[s].len();
        let samples =
            mean(self.data.runs.iter().flatten().map(|r| if r.exact { 0.0 } else { r.total / r.unit }));
        self.power.push(Power {
            group: self.group.to_owned(),
            metric: self.metric,
            runs_base: runs(0),
            runs_head: runs(1),
            samples_per_run: samples,
            overdispersion,
            between_batch_sd: var.sqrt(),
            drift_source: source,
            comparison_sd: null.map(f64::sqrt),
            sides_sd: halves.map(f64::sqrt),
            min_detectable: Vec::new(),
        });
    }

    /// ln(cost + one sample), minus ln(run total) when normalized.
    fn logs(&self, xs: &[f64], s: usize, normalized: bool) -> Vec<f64> {
        let runs: &[Run] = &self.data.runs[s];
        xs.iter()
            .zip(runs)
            .map(|(x, run)| (x + run.unit).ln() - if normalized { run.total.max(run.unit).ln() } else { 0.0 })
            .collect()
    }

    /// The test of one series' change: Welch's, or with a single run on a side, the single-run
    /// estimate (its variance borrowed or assumed).
    fn test(&self, [b, h]: [SideStats; 2]) -> TestResult {
        if b.n > 1 && h.n > 1 { welch(b, h) } else { single_run(b, h, self.opts.single_run_jitter.powi(2)) }
    }

    /// Per side: mean and variance of the logs of one series, with the sampling-noise floor.
    fn side_stats(&self, i: usize, kind: Kind, normalized: bool) -> [SideStats; 2] {
        self.side_stats_of(Self::values(&self.data.functions[i], kind), normalized)
    }

    /// Mean and variance of the logs of `xs` (costs per run), per side, with their sampling floor.
    fn side_stats_of(&self, xs: &[Vec<f64>; 2], normalized: bool) -> [SideStats; 2] {
        [0, 1].map(|s| {
            let ys = self.logs(&xs[s], s, normalized);
            // Sampling noise alone gives var(ln X) ≈ 1/λ for λ samples (Poisson); for a share of
            // the run, (1 - share)/λ (binomial).
            let lambda = mean(xs[s].iter().zip(&self.data.runs[s]).map(|(x, r)| x / r.unit));
            let share = if normalized { self.shares(xs)[s].min(0.95) } else { 0.0 };
            let exact = self.data.runs[s].iter().all(|r| r.exact);
            let floor = if exact { 0.0 } else { (1.0 - share) / (lambda + 1.0) };
            self.stats_of(&ys, floor)
        })
    }

    /// Mean and variance of logs: trimmed for the metrics of waiting (heavy tails).
    fn stats_of(&self, ys: &[f64], floor: f64) -> SideStats {
        if self.metric.is_waiting() {
            SideStats::trimmed(ys, floor, WAIT_TRIM)
        } else {
            SideStats::new(ys, floor)
        }
    }

    /// The between-batch variance of an A/A of the same workload: each side's runs split in two
    /// (alternate runs, so that both halves span the same time) and compared, for the functions
    /// the empirical null is estimated from (`null_items`, candidates' indices). With base and
    /// head interleaved, nothing but the code differs between the sides; what spread the sides'
    /// halves show is the most that drift can add.
    fn halves_null(
        &self,
        candidates: &[(usize, Kind)],
        null_items: &[usize],
        stats: &[[SideStats; 2]],
        normalized: bool,
    ) -> Option<f64> {
        let mut items = Vec::new();
        for &c in null_items {
            let xs = Self::values(&self.data.functions[candidates[c].0], candidates[c].1);
            for s in 0..2 {
                let ys = self.logs(&xs[s], s, normalized);
                if ys.len() < 4 {
                    continue;
                }
                let half =
                    |parity: usize| -> Vec<f64> { ys.iter().skip(parity).step_by(2).copied().collect() };
                let t = welch(
                    self.stats_of(&half(0), stats[c][s].floor),
                    self.stats_of(&half(1), stats[c][s].floor),
                );
                items.push((t.diff, t.se * t.se));
            }
        }
        excess_variance(&items)
    }

    /// Change of the mean level in units of the run: share points (head shares rescaled by the
    /// side-level shift) when normalized, fractions of the base side's mean total otherwise.
    fn level_delta(&self, series: &Series, kind: Kind, shift: f64, normalized: bool) -> f64 {
        let xs = Self::values(series, kind);
        if normalized {
            let shares = self.shares(xs);
            shares[1] * (-shift).exp() - shares[0]
        } else {
            let total = mean(self.data.runs[0].iter().map(|r| r.total));
            if total > 0.0 {
                (mean(xs[1].iter().copied()) - mean(xs[0].iter().copied())) / total
            } else {
                0.0
            }
        }
    }
}
