//! The between-batch spread learned from the store's history: the batch of the same targets and
//! settings recorded just before the base batch (an older run of the base commit, else the runs
//! of its nearest ancestor) is compared with the base batch, as an A/A pair of mostly unchanged
//! code; the spread of that comparison's functions beyond their within-batch variances (its
//! empirical null) is what two batches recorded at different times differ by on this machine.
//! It becomes the floor of the same spread in the real comparison ([`Group::history`]).
//!
//! Not read for sides recorded interleaved (`check`'s interleaved baseline, marked by
//! [`crate::store::INTERLEAVED_TAG`]): their runs do not come in batches, and
//! [`super::compare_stored`] uses the interleaved method instead.

use std::collections::BTreeMap;

use super::prepare::{Prepared, all_groups, input_options, read_profile, select_groups};
use crate::compare::{self, Group, Metric, Options, RevisionInfo, run_costs};
use crate::errors::Result;
use crate::git::{Repo, short_commit};
use crate::store::{RunMetadata, Store, nearest_ancestor_with_runs};

/// How far back the search for an earlier batch walks the first-parent history.
const HISTORY_DEPTH: usize = 50;

/// Where the history is read: the store, and the repository that gives the base's ancestors
/// (none: only older runs of the base's own commit count).
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// The store of both sides.
    pub store: &'a Store,
    /// The repository of the runs' commits.
    pub repo: Option<&'a Repo>,
}

/// Sets [`Group::history`] of every group of `prepared` for which the store holds an earlier
/// batch than `base`'s; returns what is worth a note. Failures to read history are notes, never
/// errors: the comparison stands without it.
pub fn learn(
    source: Source<'_>,
    base: &[RunMetadata],
    prepared: &mut Prepared,
    options: &Options,
    fold_library: bool,
) -> Vec<String> {
    match earlier_batch(source, base) {
        Ok(Some(earlier)) => {
            apply(source.store, &earlier, prepared, options, fold_library).into_iter().collect()
        }
        Ok(None) => Vec::new(),
        Err(e) => vec![format!("no history of the base: {e}")],
    }
}

/// The newest clean run older than every run of `base`, of its commit or else of its nearest
/// ancestor with runs.
fn earlier_batch(source: Source<'_>, base: &[RunMetadata]) -> Result<Option<RunMetadata>> {
    let Some(commit) = base.first().and_then(|r| r.commit.as_deref()) else { return Ok(None) };
    let Some(oldest) = base.iter().map(|r| r.time).min() else { return Ok(None) };
    let newest_older = |runs: Vec<crate::store::RunSummary>| {
        runs.into_iter()
            .filter(|r| !r.dirty && r.time < oldest && !base.iter().any(|b| b.run_id == r.run_id))
            .max_by_key(|r| r.time)
    };
    let store = source.store;
    let mut found = newest_older(store.runs_for_commit(commit)?);
    if found.is_none()
        && let Some(repo) = source.repo
        && repo.resolve(&format!("{commit}~1")).is_ok()
        && let Some(b) = nearest_ancestor_with_runs(store, repo, &format!("{commit}~1"), HISTORY_DEPTH)?
    {
        found = newest_older(store.runs_for_commit(&b.commit)?);
    }
    match found {
        Some(summary) => Ok(Some(store.show(&summary.run_id)?)),
        None => Ok(None),
    }
}

/// Learns the spread from `earlier` against the base; the note that says so, if any was learned.
fn apply(
    store: &Store,
    earlier: &RunMetadata,
    prepared: &mut Prepared,
    options: &Options,
    fold_library: bool,
) -> Option<String> {
    let selected = select_groups(std::slice::from_ref(earlier), &all_groups);
    let mut pairs = Vec::new();
    for group in &prepared.groups {
        let Some(sel) = selected.get(&group.key) else { continue };
        let opts = input_options(&sel.settings, fold_library);
        let runs: Vec<_> = sel
            .profiles
            .iter()
            .filter_map(|(run_id, file)| read_profile(store, run_id, file).ok())
            .map(|p| run_costs(&p, &opts))
            .collect();
        if runs.len() < 2 || group.base.len() < 2 {
            continue;
        }
        pairs.push(Group {
            key: group.key.clone(),
            base: runs,
            head: group.base.clone(),
            ..Group::default()
        });
    }
    if pairs.is_empty() {
        return None;
    }
    // The history's own spread only: no default floor, so that a quiet machine can say so.
    let opts =
        Options { between_batch_sd: 0.0, wait_between_batch_sd: 0.0, strict: false, ..options.clone() };
    let Ok(cmp) = compare::compare(&pairs, RevisionInfo::default(), RevisionInfo::default(), &opts) else {
        return None;
    };
    let mut learned: BTreeMap<&str, BTreeMap<Metric, f64>> = BTreeMap::new();
    for p in &cmp.power {
        if let Some(sd) = p.comparison_sd {
            learned.entry(p.group.as_str()).or_default().insert(p.metric, sd * sd);
        }
    }
    let mut used = 0;
    for group in &mut prepared.groups {
        if let Some(h) = learned.get(group.key.as_str()) {
            group.history = Some(h.clone());
            used += 1;
        }
    }
    (used > 0).then(|| {
        format!(
            "between-batch spread of {used} target(s) learned from the earlier batch {} (commit {})",
            earlier.run_id,
            earlier.commit.as_deref().map(short_commit).unwrap_or("?")
        )
    })
}
