//! The preparation of stored runs for a comparison (see the module docs of [`super`]): the runs
//! of each group chosen on each side, their profiles read as their settings say, the settings
//! checked against each other, sparse allocation metrics dropped, and the machine-code diff.

use std::collections::{BTreeMap, BTreeSet};

use crate::code::CodeMap;
use crate::compare::{
    AllocRecording, CallGraph, Explained, Group, InputOptions, Metric, RunCosts, Sampling, run_costs,
};
use crate::errors::{Error, Result};
use crate::profile::{self, Profile};
use crate::store::{Recorder, RunMetadata, Settings, Store};
use contprof_protocol::env::alloc_name;
use contprof_protocol::format::AllocMode;

/// The profiles chosen for one group on one side.
#[derive(Debug, Clone)]
pub struct GroupSel {
    /// The settings every chosen run of the group shares.
    pub settings: Settings,
    /// `(run id, file)` of each profile (one repetition each).
    pub profiles: Vec<(String, String)>,
    /// Repetitions left out because their workload failed or was stopped.
    pub failed: usize,
}

/// The chosen profiles of one side, per group.
pub type GroupRuns = BTreeMap<String, GroupSel>;

/// Per group, the profiles of every run that matches the newest run of that group in settings and
/// tree state (the same dirty diff), so that one side never mixes settings or code. Groups for
/// which `keep` is false are left out.
pub fn select_groups(runs: &[RunMetadata], keep: &dyn Fn(&str) -> bool) -> GroupRuns {
    let mut out: GroupRuns = BTreeMap::new();
    let mut defining: BTreeMap<String, (&Settings, &Option<String>)> = BTreeMap::new();
    for run in runs {
        for p in &run.profiles {
            if !keep(&p.group) {
                continue;
            }
            let (s, diff) = *defining.entry(p.group.clone()).or_insert((&run.settings, &run.diff_hash));
            if s != &run.settings || diff != &run.diff_hash {
                continue;
            }
            let sel = out.entry(p.group.clone()).or_insert_with(|| GroupSel {
                settings: run.settings.clone(),
                profiles: Vec::new(),
                failed: 0,
            });
            // Failed, killed and timed-out repetitions stay in the store, out of comparisons.
            if p.exit_code.is_some_and(|c| c != 0) || p.stopped.is_some() {
                sel.failed += 1;
                continue;
            }
            sel.profiles.push((run.run_id.clone(), p.file.clone()));
        }
    }
    out
}

/// Every group.
pub fn all_groups(_: &str) -> bool {
    true
}

/// The first setting that differs between base and head, described for the user.
pub fn settings_mismatch(base: &Settings, head: &Settings) -> Option<String> {
    if base.engine != head.engine {
        return Some(format!(
            "base was recorded by `{}`, head by `{}`",
            base.engine.name(),
            head.engine.name()
        ));
    }
    if base.frequency_hz != head.frequency_hz {
        return Some(format!("base sampled at {} Hz, head at {} Hz", base.frequency_hz, head.frequency_hz));
    }
    if base.alloc_mode != head.alloc_mode {
        let show = |m: Option<AllocMode>| m.map_or("unknown", alloc_name);
        return Some(format!(
            "base recorded allocations `{}`, head `{}`",
            show(base.alloc_mode),
            show(head.alloc_mode)
        ));
    }
    if base.unwind != head.unwind {
        return Some(format!(
            "base walked stacks with `{}`, head with `{}` (--unwind; frame pointers change the code)",
            base.unwind.name(),
            head.unwind.name()
        ));
    }
    if base.contention_rate_ns != head.contention_rate_ns {
        let show = |r: Option<u64>| {
            r.map_or("did not record waits".to_owned(), |r| {
                format!(
                    "sampled waits at {}",
                    crate::report::format_duration(i64::try_from(r).unwrap_or(i64::MAX))
                )
            })
        };
        return Some(format!(
            "base {}, head {} (--contention, --contention-rate)",
            show(base.contention_rate_ns),
            show(head.contention_rate_ns)
        ));
    }
    if base.wall_hz != head.wall_hz {
        let show = |hz: Option<u32>| {
            hz.map_or("did not sample wall time".to_owned(), |hz| format!("sampled wall time at {hz} Hz"))
        };
        return Some(format!(
            "base {}, head {} (--wall, --wall-frequency)",
            show(base.wall_hz),
            show(head.wall_hz)
        ));
    }
    if base.alloc_mode == Some(AllocMode::Sampled) && base.alloc_interval != head.alloc_interval {
        let show = |i: Option<u64>| i.map_or("?".to_owned(), |i| i.to_string());
        return Some(format!(
            "base sampled allocations every {} bytes, head every {} bytes",
            show(base.alloc_interval),
            show(head.alloc_interval)
        ));
    }
    None
}

/// How the profiles of runs recorded with `s` are read. Imported profiles (`import`) say nothing
/// of how they were recorded: their CPU is read, and their allocations as the agent samples them
/// by default.
pub fn input_options(s: &Settings, fold_library: bool) -> InputOptions {
    let default_interval = crate::runner::DEFAULT_ALLOC_INTERVAL;
    let alloc = match s.alloc_mode {
        Some(AllocMode::Exact) => AllocRecording::Exact,
        Some(AllocMode::Sampled) => {
            AllocRecording::Sampled { interval: s.alloc_interval.unwrap_or(default_interval) }
        }
        _ if s.engine == Recorder::Import => AllocRecording::Sampled { interval: default_interval },
        _ => AllocRecording::Off,
    };
    InputOptions {
        cpu: s.frequency_hz > 0 || s.engine == Recorder::Import,
        alloc,
        contention_rate_ns: s.contention_rate_ns,
        wall_period_ns: s.wall_hz.filter(|&hz| hz > 0).map(contprof_protocol::wall_period_ns),
        fold_library,
    }
}

/// Reads and decodes one stored profile; the error says why, for a warning.
pub fn read_profile(store: &Store, run_id: &str, file: &str) -> std::result::Result<Profile, String> {
    let bytes = store.read_profile(run_id, file).map_err(|e| e.to_string())?;
    profile::decode(&bytes).map_err(|e| format!("corrupt profile: {e}"))
}

/// A stored profile keeping only the samples that carry `labels` (all of them when there are
/// none); `Ok(None)` when no sample carries them. For [`prepare`] and for
/// [`Prepared::profiles_of`], which must read a run's profile the same way.
fn read_labelled(
    store: &Store,
    run_id: &str,
    file: &str,
    labels: &[(String, String)],
) -> std::result::Result<Option<Profile>, String> {
    let mut p = read_profile(store, run_id, file)?;
    Ok((labels.is_empty() || p.retain_labelled(labels)).then_some(p))
}

/// `k=v, k=w` for a message.
fn describe_labels(labels: &[(String, String)]) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// One side as the pipeline needs it.
#[derive(Debug, Clone, Copy)]
pub struct SideRuns<'a> {
    /// How the side is named in flame-graph titles (`main`, `HEAD`, a commit).
    pub label: &'a str,
    /// How the side is described in messages (`` `main` (commit 0123abcd) ``).
    pub describe: &'a str,
    /// Its runs, newest first.
    pub runs: &'a [RunMetadata],
}

/// What [`prepare`] takes besides the two sides.
pub struct PrepareOptions<'a> {
    /// Which groups to compare.
    pub keep: &'a dyn Fn(&str) -> bool,
    /// How the user asked for the groups (`--group`), for the message when none is left.
    pub filter_name: Option<&'a str>,
    /// Compare groups whose settings differ (with a warning) instead of failing.
    pub allow_mismatch: bool,
    /// Fold library frames into their callers (configuration `fold_library`).
    pub fold_library: bool,
    /// `key = value` filters on the samples' labels (`compare --sample-label`): only the samples
    /// that carry them count; a run with none is left out, with a warning.
    pub sample_labels: &'a [(String, String)],
    /// Break each group's metrics down by this sample label (`compare --by KEY`): each run's
    /// totals per value are read ([`crate::compare::RunCosts::by_label`]) and the
    /// comparison reports them.
    pub by_label: Option<&'a str>,
}

/// A group's base and head profiles.
pub type SideProfiles = (Vec<Profile>, Vec<Profile>);

/// Everything a comparison and its flame graphs need.
///
/// The profiles of stored runs are not held: a decoded profile of the instructions engine takes
/// tens of megabytes (a callgrind call graph rebuilt into stacks), and holding every group's at
/// once took 3.2 GB to compare semver's 34 tests. [`prepare`] reads each group's, keeps what the
/// comparison needs (costs, call graph, what the diff explains) and lets them go;
/// [`Prepared::profiles_of`] reads one group's again for its flame graphs and explanations.
pub struct Prepared {
    /// The comparison's input.
    pub groups: Vec<Group>,
    /// Per group: decoded base and head profiles given in memory (production windows).
    pub profiles: BTreeMap<String, SideProfiles>,
    /// Per group: the stored base and head profiles `prepare` read, as (run id, file).
    pub stored: BTreeMap<String, [Vec<(String, String)>; 2]>,
    /// The sample-label filters the stored profiles are read with.
    pub sample_labels: Vec<(String, String)>,
    /// The sides' labels, for titles.
    pub base_label: String,
    /// See `base_label`.
    pub head_label: String,
    /// Problems met (skipped profiles, settings compared anyway, missing fingerprints).
    pub warnings: Vec<String>,
    /// Facts worth a line (metrics left out for too few samples).
    pub notes: Vec<String>,
}

impl Prepared {
    /// The groups that have profiles, in key order.
    pub fn keys(&self) -> Vec<&str> {
        let keys: BTreeSet<&str> =
            self.profiles.keys().chain(self.stored.keys()).map(String::as_str).collect();
        keys.into_iter().collect()
    }

    /// One group's base and head profiles: those held, or the stored ones read again from
    /// `store` as [`prepare`] read them (a profile that cannot be read now was warned about then,
    /// or is left out).
    pub fn profiles_of(&self, store: &Store, key: &str) -> SideProfiles {
        if let Some(held) = self.profiles.get(key) {
            return held.clone();
        }
        let Some([base, head]) = self.stored.get(key) else { return (Vec::new(), Vec::new()) };
        let read = |files: &[(String, String)]| -> Vec<Profile> {
            files
                .iter()
                .filter_map(|(run_id, file)| read_labelled(store, run_id, file, &self.sample_labels).ok())
                .flatten()
                .collect()
        };
        (read(base), read(head))
    }
}

/// Reads and converts the profiles of both sides (see the module docs). Corrupt profiles are
/// skipped with a warning; sides with nothing in common, or settings that differ without
/// `allow_mismatch`, are errors.
pub fn prepare(
    store: &Store,
    base: SideRuns<'_>,
    head: SideRuns<'_>,
    opts: &PrepareOptions<'_>,
) -> Result<Prepared> {
    let b = select_groups(base.runs, opts.keep);
    let h = select_groups(head.runs, opts.keep);
    if b.is_empty() || h.is_empty() {
        let side = if b.is_empty() { base } else { head };
        return Err(Error::NothingMatched {
            what: match opts.filter_name {
                Some(f) => format!("no profiles of a group matching `{f}` in the runs of {}", side.describe),
                None => format!("no profiles in the runs of {}", side.describe),
            },
        });
    }
    if !b.keys().any(|k| h.contains_key(k)) {
        return Err(Error::NothingMatched {
            what: format!(
                "{} and {} have no target/test/benchmark in common (base: {}; head: {})",
                base.describe,
                head.describe,
                b.keys().cloned().collect::<Vec<_>>().join(", "),
                h.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut prepared = Prepared {
        groups: Vec::new(),
        profiles: BTreeMap::new(),
        stored: BTreeMap::new(),
        sample_labels: opts.sample_labels.to_vec(),
        base_label: base.label.to_owned(),
        head_label: head.label.to_owned(),
        warnings: Vec::new(),
        notes: Vec::new(),
    };
    // The machine-code diff first, so that each group's profiles can go once it is read (its
    // warnings are said after the groups', as they were).
    let used = |sel: &GroupRuns| -> BTreeSet<String> {
        sel.values().flat_map(|g| g.profiles.iter().map(|(id, _)| id.clone())).collect()
    };
    let mut code_warnings = Vec::new();
    let code = [(base, used(&b), "base"), (head, used(&h), "head")]
        .map(|(side, ids, name)| side_code_map(store, side.runs, &ids, name, &mut code_warnings));
    let diff = match &code {
        [Some(base_code), Some(head_code)] => {
            let diff = crate::code::diff(base_code, head_code);
            if diff.is_none() {
                code_warnings.push(
                    "the two sides' machine-code fingerprints were made by different versions of cargo \
                     contprof; every change counts as explained by the diff"
                        .to_owned(),
                );
            }
            diff
        }
        _ => None,
    };
    let keys: BTreeSet<&String> = b.keys().chain(h.keys()).collect();
    for key in keys {
        let (bs, hs) = (b.get(key), h.get(key));
        if let (Some(bs), Some(hs)) = (bs, hs)
            && let Some(diff) = settings_mismatch(&bs.settings, &hs.settings)
        {
            if !opts.allow_mismatch {
                return Err(Error::msg(format!(
                    "{key}: the profiling settings differ ({diff}); record both sides with the same \
                     settings, or pass --allow-mismatch to compare anyway"
                )));
            }
            prepared.warnings.push(format!("{key}: the profiling settings differ ({diff}); compared anyway"));
        }
        let mut group =
            Group { key: key.clone(), by_label: opts.by_label.map(str::to_owned), ..Group::default() };
        let mut profiles = (Vec::new(), Vec::new());
        let mut stored: [Vec<(String, String)>; 2] = Default::default();
        for ((sel, runs, decoded, side), files) in
            [(bs, &mut group.base, &mut profiles.0, "base"), (hs, &mut group.head, &mut profiles.1, "head")]
                .into_iter()
                .zip(&mut stored)
        {
            let Some(sel) = sel else { continue };
            if sel.failed > 0 {
                prepared.warnings.push(format!(
                    "{key}: {} {side} repetition(s) left out: the workload failed or was stopped",
                    sel.failed
                ));
            }
            let input = input_options(&sel.settings, opts.fold_library);
            for (run_id, file) in &sel.profiles {
                match read_labelled(store, run_id, file, opts.sample_labels) {
                    Ok(None) => prepared.warnings.push(format!(
                        "{key}: {side} profile {run_id}/{file} left out: none of its samples carries {}",
                        describe_labels(opts.sample_labels)
                    )),
                    Ok(Some(p)) => {
                        let mut costs = run_costs(&p, &input);
                        if let Some(label) = opts.by_label {
                            costs.by_label = crate::compare::label_totals(&p, &input, label);
                        }
                        runs.push(costs);
                        decoded.push(p);
                        files.push((run_id.clone(), file.clone()));
                    }
                    Err(why) => prepared
                        .warnings
                        .push(format!("{key}: skipped {side} profile {run_id}/{file}: {why}")),
                }
            }
        }
        let sparse = drop_sparse_allocations(&mut group);
        if !sparse.is_empty() {
            prepared.notes.push(format!(
                "{key}: {} not compared: some runs have no allocation sample (lower --alloc-interval or use --alloc exact)",
                sparse.join(", ")
            ));
        }
        let stacks = || profiles.0.iter().chain(&profiles.1);
        group.calls = Some(CallGraph::from_stacks(stacks(), opts.fold_library));
        if let Some(diff) = &diff {
            group.explained = Some(Explained::from_stacks(stacks(), &diff.changed, opts.fold_library));
        }
        prepared.stored.insert(key.clone(), stored);
        prepared.groups.push(group);
    }
    prepared.warnings.extend(code_warnings);
    if !opts.sample_labels.is_empty()
        && prepared.groups.iter().all(|g| g.base.is_empty() || g.head.is_empty())
    {
        return Err(Error::NothingMatched {
            what: format!(
                "no target has samples labelled {} on both sides (--sample-label): {}",
                describe_labels(opts.sample_labels),
                prepared.warnings.join("; ")
            ),
        });
    }
    Ok(prepared)
}

/// The merged code map of the runs `ids` of one side; `None` (with a warning) when one of them
/// has none or it cannot be read: then no change can be told apart from a shift.
fn side_code_map(
    store: &Store,
    runs: &[RunMetadata],
    ids: &BTreeSet<String>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<CodeMap> {
    let mut merged = CodeMap::default();
    for run in runs.iter().filter(|r| ids.contains(&r.run_id)) {
        let why = match store.read_code_map(run) {
            Ok(Some(bytes)) => match CodeMap::decode(&bytes) {
                Ok(map) => {
                    merged.merge(&map);
                    continue;
                }
                Err(e) => e.to_string(),
            },
            Ok(None) => {
                "it has no machine-code fingerprints (recorded by an older cargo contprof, or imported)"
                    .to_owned()
            }
            Err(e) => e.to_string(),
        };
        warnings.push(format!(
            "{name} run {}: {why}; every change counts as explained by the diff (none is reported as shifted)",
            run.run_id
        ));
        return None;
    }
    Some(merged)
}

/// Drops sampled allocation metrics from a group when a run has no sample of them: a handful of
/// samples says nothing statistically, and the gaps would only produce a warning per run.
pub(crate) fn drop_sparse_allocations(group: &mut Group) -> Vec<&'static str> {
    let mut dropped = Vec::new();
    for metric in [Metric::AllocBytes, Metric::AllocCount, Metric::InuseBytes] {
        let empty = |r: &RunCosts| {
            r.totals.get(&metric).is_some_and(|t| t.sampling == Sampling::Sampled { samples: 0 })
        };
        if !group.base.iter().chain(&group.head).any(empty) {
            continue;
        }
        for r in group.base.iter_mut().chain(group.head.iter_mut()) {
            r.totals.remove(&metric);
            for costs in r.functions.values_mut() {
                costs.remove(&metric);
            }
        }
        dropped.push(metric.as_str());
    }
    dropped
}
