//! The index: the summaries of all visible runs, readable without opening any run's metadata.
//!
//! A writer publishes its run with one immutable loose entry. When loose entries pile up, a writer
//! compacts them into a segment (written first) and only then deletes them; when segments pile up,
//! a writer merges them the same way. Readers list loose entries before segments and start over when
//! an object they listed is gone, so an entry is always seen in at least one place. Duplicates from
//! concurrent compactions are merged by run id. gc hides a run with a tombstone before deleting it,
//! and a tombstone outlives every index object that mentions the run by [`TOMBSTONE_GRACE`] at
//! least: a compaction that read the run's entry before gc and writes it back after gc's cleanup
//! only writes it next to a tombstone that still hides it, and a later gc drops it for good.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::StoreOptions;
use super::backend::Backend;
use super::error::{StoreError, StoreWarning};
use super::meta::{RunSummary, new_run_id};

pub(crate) const LOOSE: &str = "index/loose";
pub(crate) const SEGMENTS: &str = "index/segments";
pub(crate) const DELETED: &str = "index/deleted";

/// Version of index objects (loose entries and segments share the format).
const INDEX_VERSION: u32 = 1;

/// How long a tombstone stays after no index object mentions its run any more: longer than any
/// compaction takes between reading entries and writing them back.
pub(crate) const TOMBSTONE_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How often a reader starts over after racing a compaction before giving up.
const READ_ATTEMPTS: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Segment {
    version: u32,
    entries: Vec<RunSummary>,
}

/// The visible runs, newest first, and what was skipped on the way.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub runs: Vec<RunSummary>,
    pub warnings: Vec<StoreWarning>,
}

/// Raw contents of the index: every entry (deduplicated), the objects it came from, the tombstones.
struct Raw {
    entries: BTreeMap<String, RunSummary>,
    /// Per object path, the run ids it holds.
    objects: Vec<(String, Vec<String>)>,
    deleted: HashSet<String>,
    warnings: Vec<StoreWarning>,
}

pub(crate) fn loose_path(run_id: &str) -> String {
    format!("{LOOSE}/{run_id}.json")
}

pub(crate) fn tombstone_path(run_id: &str) -> String {
    format!("{DELETED}/{run_id}")
}

/// Makes a run visible.
pub(crate) fn publish(backend: &Backend, summary: &RunSummary) -> Result<(), StoreError> {
    let seg = Segment { version: INDEX_VERSION, entries: vec![summary.clone()] };
    backend.put(&loose_path(&summary.run_id), serde_json::to_vec(&seg).unwrap_or_default())
}

/// The visible runs, newest first.
pub(crate) fn load(backend: &Backend) -> Result<Snapshot, StoreError> {
    let raw = load_raw(backend)?;
    let mut runs: Vec<RunSummary> =
        raw.entries.into_values().filter(|e| !raw.deleted.contains(&e.run_id)).collect();
    runs.reverse();
    Ok(Snapshot { runs, warnings: raw.warnings })
}

fn load_raw(backend: &Backend) -> Result<Raw, StoreError> {
    let mut last_missing = String::new();
    for _ in 0..READ_ATTEMPTS {
        let deleted: HashSet<String> = backend
            .list(DELETED)?
            .into_iter()
            .filter_map(|l| l.path.rsplit('/').next().map(str::to_string))
            .collect();
        // Loose entries before segments: an entry compacted between the two listings is then in a
        // segment we list, or missing when we read it, and we start over.
        let mut paths: Vec<String> = backend.list(LOOSE)?.into_iter().map(|l| l.path).collect();
        paths.extend(backend.list(SEGMENTS)?.into_iter().map(|l| l.path));
        let bodies = backend.get_many(&paths)?;
        if let Some(i) = bodies.iter().position(Option::is_none) {
            last_missing = paths[i].clone();
            continue;
        }
        let mut raw = Raw { entries: BTreeMap::new(), objects: Vec::new(), deleted, warnings: Vec::new() };
        for (path, body) in paths.into_iter().zip(bodies.into_iter().flatten()) {
            match parse_segment(&body) {
                Ok(seg) => {
                    let ids = seg.entries.iter().map(|e| e.run_id.clone()).collect();
                    for e in seg.entries {
                        raw.entries.insert(e.run_id.clone(), e);
                    }
                    raw.objects.push((path, ids));
                }
                Err(reason) => raw.warnings.push(StoreWarning { path, reason }),
            }
        }
        return Ok(raw);
    }
    Err(StoreError::Corrupt {
        path: last_missing,
        store: backend.url.clone(),
        reason: format!("index kept changing under {READ_ATTEMPTS} consecutive reads"),
    })
}

pub(crate) fn parse_segment(body: &[u8]) -> Result<Segment, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(body).map_err(|e| format!("unreadable index entry: {e}"))?;
    if v.version > INDEX_VERSION {
        return Err(format!("index entry version {} is newer than {INDEX_VERSION}", v.version));
    }
    serde_json::from_slice(body).map_err(|e| format!("unreadable index entry: {e}"))
}

/// Compacts loose entries into a segment, and segments into one, when there are enough of them.
pub(crate) fn maybe_compact(backend: &Backend, options: &StoreOptions) -> Result<(), StoreError> {
    let loose: Vec<String> = backend.list(LOOSE)?.into_iter().map(|l| l.path).collect();
    if loose.len() >= options.compact_at.max(2) {
        merge_objects(backend, &loose)?;
    }
    let segments: Vec<String> = backend.list(SEGMENTS)?.into_iter().map(|l| l.path).collect();
    if segments.len() >= options.merge_at.max(2) {
        merge_objects(backend, &segments)?;
    }
    Ok(())
}

/// Writes one segment holding the entries of `paths` (minus tombstoned runs), then deletes `paths`.
/// Unreadable objects are left in place for a human to look at.
fn merge_objects(backend: &Backend, paths: &[String]) -> Result<(), StoreError> {
    let merge = read_for_merge(backend, paths)?;
    write_merged(backend, merge)
}

/// A merge read and not yet written: the entries to keep, and the objects they came from.
pub(crate) struct Merge {
    entries: BTreeMap<String, RunSummary>,
    merged: Vec<String>,
}

/// The first half of a merge: the tombstones, then the objects' entries.
pub(crate) fn read_for_merge(backend: &Backend, paths: &[String]) -> Result<Merge, StoreError> {
    let deleted: HashSet<String> = backend
        .list(DELETED)?
        .into_iter()
        .filter_map(|l| l.path.rsplit('/').next().map(str::to_string))
        .collect();
    let bodies = backend.get_many(paths)?;
    let mut entries = BTreeMap::new();
    let mut merged = Vec::new();
    for (path, body) in paths.iter().zip(bodies) {
        // Missing: another writer merged it already; its entries are in that writer's segment.
        let Some(body) = body else { continue };
        let Ok(seg) = parse_segment(&body) else { continue };
        for e in seg.entries {
            if !deleted.contains(&e.run_id) {
                entries.insert(e.run_id.clone(), e);
            }
        }
        merged.push(path.clone());
    }
    Ok(Merge { entries, merged })
}

/// The second half of a merge: the segment, then the deletion of what it replaces.
pub(crate) fn write_merged(backend: &Backend, merge: Merge) -> Result<(), StoreError> {
    let Merge { entries, merged } = merge;
    if merged.len() < 2 && !entries.is_empty() {
        return Ok(());
    }
    if !entries.is_empty() {
        write_segment(backend, entries.into_values().collect())?;
    }
    backend.delete_many(&merged)
}

fn write_segment(backend: &Backend, entries: Vec<RunSummary>) -> Result<(), StoreError> {
    let id = new_run_id(chrono::Utc::now());
    let seg = Segment { version: INDEX_VERSION, entries };
    backend.put(&format!("{SEGMENTS}/{id}.json"), serde_json::to_vec(&seg).unwrap_or_default())
}

/// Hides runs (tombstones), then removes their entries from loose objects and segments. The caller
/// deletes the runs' objects in between [`hide`] and [`forget`].
pub(crate) fn hide(backend: &Backend, run_ids: &[String]) -> Result<(), StoreError> {
    for id in run_ids {
        backend.put(&tombstone_path(id), Vec::new())?;
    }
    Ok(())
}

/// Drops entries of tombstoned runs from the index objects, then the tombstones that no object has
/// mentioned for [`TOMBSTONE_GRACE`] (a tombstone's age is the time it was written; a compaction that
/// wrote an entry back after it is caught by the next call).
pub(crate) fn forget(backend: &Backend) -> Result<(), StoreError> {
    let raw = load_raw(backend)?;
    for (path, ids) in &raw.objects {
        if !ids.iter().any(|id| raw.deleted.contains(id)) {
            continue;
        }
        let keep: Vec<RunSummary> = ids
            .iter()
            .filter(|id| !raw.deleted.contains(*id))
            .filter_map(|id| raw.entries.get(id).cloned())
            .collect();
        if !keep.is_empty() {
            write_segment(backend, keep)?;
        }
        backend.delete_many(std::slice::from_ref(path))?;
    }
    let after = load_raw(backend)?;
    let old_enough = chrono::Utc::now() - TOMBSTONE_GRACE;
    let stale: Vec<String> = backend
        .list(DELETED)?
        .into_iter()
        .filter(|l| l.modified <= old_enough)
        .filter(|l| l.path.rsplit('/').next().is_some_and(|id| !after.entries.contains_key(id)))
        .map(|l| l.path)
        .collect();
    backend.delete_many(&stale)
}

/// Run ids the index knows about, visible or tombstoned (gc uses it to tell orphans from runs).
pub(crate) fn known_ids(backend: &Backend) -> Result<HashSet<String>, StoreError> {
    let raw = load_raw(backend)?;
    let mut ids: HashSet<String> = raw.entries.into_keys().collect();
    ids.extend(raw.deleted);
    Ok(ids)
}
