//! Comparisons of production windows, and rollouts judged without being asked.
//!
//! [`compare_sides`] is the one comparison of two selections of one service's windows: `prod
//! compare` prints it, [`judge_rollouts`] stores it. A rollout is a version of a service and the
//! version it replaced: the one whose first window began last before its own. Once both have
//! enough windows it is compared and the verdict is stored (`Store::put_rollout_verdict`, a
//! conditional create), so that `prod watch`, `serve`'s background work and any number of them
//! at once judge each rollout once.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::denominator::Denominator;
use super::load::{self, Loaded, Want};
use super::select::Selection;
use crate::compare::{self, CallGraph, Comparison, Group, Options};
use crate::errors::Result;
use crate::pipeline::Prepared;
use crate::store::{Store, rfc3339};

/// What the comparisons say as they go.
pub enum Said {
    /// `(verb, what)`, as a status line.
    Status(&'static str, String),
    /// A warning.
    Warning(String),
}

/// How windows are compared: what a window's cost is divided by, the statistics, and whether
/// library frames fold into their callers.
pub struct Judging<'a> {
    /// What a window's cost is divided by.
    pub denominator: Denominator,
    /// The statistics.
    pub options: &'a Options,
    /// Whether library frames fold into their callers.
    pub fold_library: bool,
}

/// What [`compare_sides`] is asked to compare: one service's windows of one profile type.
pub struct Asked<'a> {
    /// The service.
    pub service: &'a str,
    /// The profile type.
    pub profile_type: &'a str,
    /// How.
    pub judging: &'a Judging<'a>,
    /// The sample label to break the comparison down by (`prod compare --by KEY`): the windows
    /// are read for it, not the rollups, which keep no per-label costs.
    pub by_label: Option<&'a str>,
}

/// Compares two sides (`key=value` label specs) of `asked`'s windows in `selection`, as `prod
/// compare` does.
pub fn compare_sides(
    store: &Store,
    selection: &Selection,
    asked: &Asked<'_>,
    (base, head): (&str, &str),
    say: &mut dyn FnMut(Said),
) -> Result<Comparison> {
    let want = Want {
        costs: true,
        fold_library: asked.judging.fold_library,
        by_label: asked.by_label.map(str::to_owned),
        ..Want::default()
    };
    let mut selection = selection.clone();
    selection.keep_sample_labels |= asked.by_label.is_some();
    let sides = load::load_sides(
        store,
        (asked.service, asked.profile_type),
        &selection,
        (base, head),
        ["--base", "--head"],
        &want,
        Utc::now(),
    )?;
    let (b, h) = (&sides.base, &sides.head);
    say(Said::Status(
        "Comparing",
        format!(
            "{} windows of {head} with {} of {base} ({} rollup(s) and {} window profile(s) read)",
            h.observations.len(),
            b.observations.len(),
            b.rollups_read + h.rollups_read,
            b.windows_read + h.windows_read
        ),
    ));
    let (prepared, cmp) = compare_loaded(asked, (base, sides.base), (head, sides.head))?;
    for w in prepared.warnings.iter().chain(&prepared.notes) {
        say(Said::Warning(w.clone()));
    }
    for w in &cmp.warnings {
        say(Said::Warning(w.to_string()));
    }
    Ok(cmp)
}

/// The one comparison of two loaded selections of `asked`'s windows, for `prod compare`, `prod
/// watch` and the viewer alike: as a comparison's input (each window one observation, the merged
/// stacks of each side as its profiles when they were loaded), judged with `asked`'s denominator
/// and statistics. The warnings and notes are in the returned [`Prepared`] and [`Comparison`].
pub fn compare_loaded(
    asked: &Asked<'_>,
    (base, base_loaded): (&str, Loaded),
    (head, head_loaded): (&str, Loaded),
) -> Result<(Prepared, Comparison)> {
    let (base_info, head_info) = (base_loaded.revision(base), head_loaded.revision(head));
    let group = format!("prod/{}/{}", asked.service, asked.profile_type);
    let mut prepared = prepare_windows(&group, (base, base_loaded), (head, head_loaded));
    for g in &mut prepared.groups {
        g.by_label = asked.by_label.map(str::to_owned);
    }
    let metric = super::rollup::metric_of(asked.profile_type).unwrap_or(compare::Metric::Cpu);
    let cmp = super::denominator::compare(
        &prepared.groups,
        metric,
        asked.judging.denominator,
        asked.judging.options,
        base_info,
        head_info,
    )?;
    Ok((prepared, cmp))
}

/// The production windows of two selections of one service and profile type (`prod compare`,
/// the viewer's production comparison) as a comparison's input: one group, each window one
/// observation, its costs read as the agent records windows (CPU samples; allocations sampled
/// every 512 KiB on average; see [`super::rollup::input_options`]). The sides' merged stacks stand
/// for their profiles. There are no machine-code fingerprints: no change is told apart as a shift.
fn prepare_windows(group: &str, base: (&str, Loaded), head: (&str, Loaded)) -> Prepared {
    let mut prepared = Prepared {
        groups: Vec::new(),
        profiles: BTreeMap::new(),
        stored: BTreeMap::new(),
        sample_labels: Vec::new(),
        base_label: base.0.to_owned(),
        head_label: head.0.to_owned(),
        warnings: Vec::new(),
        notes: Vec::new(),
    };
    let mut g = Group { key: group.to_owned(), ..Group::default() };
    let mut stacks = (Vec::new(), Vec::new());
    for ((name, loaded), runs, merged) in
        [(base, &mut g.base, &mut stacks.0), (head, &mut g.head, &mut stacks.1)]
    {
        prepared.warnings.extend(loaded.warnings.into_iter().map(|w| format!("{name}: {w}")));
        runs.extend(loaded.observations.into_iter().map(|o| o.costs));
        merged.extend(loaded.stacks);
    }
    let sparse = crate::pipeline::drop_sparse_allocations(&mut g);
    if !sparse.is_empty() {
        prepared.notes.push(format!(
            "{group}: {} not compared: some windows have no allocation sample",
            sparse.join(", ")
        ));
    }
    if !stacks.0.is_empty() || !stacks.1.is_empty() {
        g.calls = Some(CallGraph::from_stacks(stacks.0.iter().chain(&stacks.1), true));
    }
    prepared.profiles.insert(group.to_owned(), stacks);
    prepared.groups.push(g);
    prepared
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A version has fewer windows than a verdict needs.
    Waiting,
    /// Judged: no regression.
    Clean,
    /// Judged: regressed.
    Regressed,
}

/// One rollout, as judged (and stored) or waiting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    /// The service.
    pub service: String,
    /// The profile type judged.
    #[serde(rename = "type")]
    pub profile_type: String,
    /// The version replaced.
    pub base: String,
    /// The new version.
    pub head: String,
    /// Where it stands.
    pub status: Status,
    /// Judged by this call (false: stored earlier, or waiting).
    #[serde(default)]
    pub new: bool,
    /// The base version's windows.
    pub base_windows: usize,
    /// The new version's windows.
    pub head_windows: usize,
    /// The regressed functions (one per cause), with their largest change.
    #[serde(default)]
    pub regressions: Vec<(String, Option<f64>)>,
    /// When it was judged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_at: Option<String>,
}

impl Status {
    /// Its name, as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Clean => "clean",
            Status::Regressed => "regressed",
        }
    }
}

impl Rollout {
    /// The regressed functions as text: `name +12.3%` (the name alone for a new function).
    pub fn blamed(&self) -> Vec<String> {
        self.regressions
            .iter()
            .map(|(f, c)| match c {
                Some(c) => format!("{f} {:+.1}%", c * 100.0),
                None => f.clone(),
            })
            .collect()
    }
}

/// A verdict as stored: the rollout, and the comparison's JSON report.
#[derive(Serialize)]
struct Stored<'a> {
    #[serde(flatten)]
    rollout: &'a Rollout,
    report: Option<serde_json::Value>,
}

/// Windows each version needs before its rollout is judged, unless told otherwise.
pub const DEFAULT_MIN_WINDOWS: usize = 10;

/// How [`judge_rollouts`] judges.
pub struct Watch<'a> {
    /// The profile type judged.
    pub profile_type: &'a str,
    /// Windows each version needs first.
    pub min_windows: usize,
    /// How each rollout's versions are compared.
    pub judging: Judging<'a>,
}

/// Every rollout of the windows in `selection` (each service's versions in the order their
/// windows began), judged when both versions have enough windows and no verdict is stored yet.
pub fn judge_rollouts(
    store: &Store,
    selection: &Selection,
    watch: &Watch<'_>,
    say: &mut dyn FnMut(Said),
) -> Result<Vec<Rollout>> {
    let (observations, warnings) = load::load_all(store, selection, &Want::default(), Utc::now())?;
    for w in warnings {
        say(Said::Warning(w));
    }
    if observations.is_empty() {
        // Not an error for a schedule on a quiet store, but a misspelt service should show.
        say(Said::Warning(load::nothing_matched(store, selection, Utc::now())));
    }
    // Per service, per version: when its first window began, and how many it has.
    let mut versions: BTreeMap<String, BTreeMap<String, (i64, usize)>> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.key.profile_type == watch.profile_type) {
        let d = &o.key.deployment;
        let v = versions
            .entry(d.service.clone())
            .or_default()
            .entry(d.version.clone())
            .or_insert((o.key.start, 0));
        v.0 = v.0.min(o.key.start);
        v.1 += 1;
    }
    let mut rollouts = Vec::new();
    for (service, by_version) in versions {
        let mut order: Vec<(String, (i64, usize))> = by_version.into_iter().collect();
        order.sort_by(|x, y| (x.1.0, &x.0).cmp(&(y.1.0, &y.0)));
        for pair in order.windows(2) {
            let [(base, (_, base_windows)), (head, (_, head_windows))] = pair else { continue };
            let mut r = Rollout {
                service: service.clone(),
                profile_type: watch.profile_type.to_owned(),
                base: base.clone(),
                head: head.clone(),
                status: Status::Waiting,
                new: false,
                base_windows: *base_windows,
                head_windows: *head_windows,
                regressions: Vec::new(),
                judged_at: None,
            };
            let versions = (base.as_str(), head.as_str());
            if let Some(bytes) = store.get_rollout_verdict((&service, watch.profile_type), versions)? {
                if let Ok(stored) = serde_json::from_slice::<Rollout>(&bytes) {
                    r = Rollout { new: false, ..stored };
                }
                rollouts.push(r);
                continue;
            }
            if *base_windows < watch.min_windows || *head_windows < watch.min_windows {
                rollouts.push(r);
                continue;
            }
            if [base, head].iter().any(|v| v.contains(',') || v.contains('=')) {
                say(Said::Warning(format!(
                    "{service} {base} -> {head}: a version with `,` or `=` cannot be selected"
                )));
                continue;
            }
            let mut one = selection.clone();
            one.service = Some(service.clone());
            let asked = Asked {
                service: &service,
                profile_type: watch.profile_type,
                judging: &watch.judging,
                by_label: None,
            };
            let sides = (&format!("version={base}")[..], &format!("version={head}")[..]);
            let cmp = compare_sides(store, &one, &asked, sides, say)?;
            let mut json = Vec::new();
            compare::write_json(&cmp, &mut json)
                .map_err(|e| crate::errors::Error::io("could not render", "a report", e))?;
            if cmp.has_regression() {
                r.regressions = cmp
                    .causes_of(compare::Verdict::Regression)
                    .iter()
                    .filter(|c| c.verdict == compare::Verdict::Regression)
                    .map(|c| (c.function.clone(), c.change_max))
                    .collect();
            }
            r.status = if cmp.has_regression() { Status::Regressed } else { Status::Clean };
            r.judged_at = Some(rfc3339(Utc::now()));
            let stored = Stored { rollout: &r, report: serde_json::from_slice(&json).ok() };
            let bytes = serde_json::to_vec_pretty(&stored).unwrap_or_default();
            // Another watcher may have judged it meanwhile: its verdict stands.
            r.new = store.put_rollout_verdict((&service, watch.profile_type), versions, bytes)?;
            rollouts.push(r);
        }
    }
    Ok(rollouts)
}

/// The verdicts stored in `store`, newest judged first.
pub fn stored_verdicts(store: &Store) -> Result<Vec<Rollout>> {
    let mut out: Vec<Rollout> = store
        .rollout_verdicts()?
        .into_iter()
        .filter_map(|bytes| serde_json::from_slice::<Rollout>(&bytes).ok())
        .collect();
    out.sort_by(|a, b| b.judged_at.cmp(&a.judged_at));
    Ok(out)
}
