//! Reading a selection of production windows for one service and profile type: from the
//! rollups compaction wrote (`prod::compact`), and from the windows themselves where there is
//! none yet (the current hour, a store never compacted) or where a rollup cannot be read.
//!
//! - Observations (one per window: labels, totals and, when asked, per-function costs) are
//!   exact: every selected window once, by its start time and labels.
//! - Stacks (the merged flame graph) come from whole rollups: a span that starts or ends inside
//!   an hour gets that whole hour's stacks. Days entirely inside the span are read from the day's
//!   rollup; the others from their hours'.
//! - A rollup that cannot be read (corrupt, foreign, another format, its costs gone) is
//!   reported in [`Loaded::warnings`] and its span read from the windows instead.
//! - A day that has a day rollup is not listed again: windows uploaded after its compaction are
//!   seen once a compaction adds them (it rescans recent days).
//! - The work is bounded whatever the store holds: a comparison reads the costs of at most
//!   [`MAX_COMPARED`] windows a side, a flame graph the stacks of at most [`MAX_VIEWED`]
//!   windows that no rollup covers (a store that could not be compacted), both evenly spread
//!   over the span and said in [`Loaded::warnings`]. Windows are read 64 at a time,
//!   and a caller that gave up (the viewer's answer timed out) stops the reading through
//!   [`Want::cancel`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use super::rollup::{self, Observation, Rollup};
use super::select::Selection;
use crate::profile::{self, Profile};
use crate::store::{RollupKey, RollupObject, Store, StoreError, WindowKey, day_of};

/// Most windows whose per-function costs one side of a comparison reads: beyond a thousand
/// observations the intervals are as narrow as sampling noise allows, and a month of windows
/// with their costs would not fit in memory.
pub const MAX_COMPARED: usize = 1_000;

/// Most windows that no rollup covers whose stacks a flame graph reads: a month of windows
/// decoded one by one would take minutes and gigabytes; a thousand, spread over the span, draw
/// the same picture.
pub const MAX_VIEWED: usize = 1_000;

/// Window profiles read from the store at once: what is held in memory before decoding.
const READ_CHUNK: usize = 64;

/// Window profiles whose stacks are kept apart before they are merged into one.
const MERGE_EVERY: usize = 64;

/// What to read besides the windows' labels and totals.
#[derive(Debug, Clone, Default)]
pub struct Want {
    /// The merged stacks of the selection.
    pub stacks: bool,
    /// Per-window, per-function costs (for the statistics).
    pub costs: bool,
    /// Fold library frames into their callers in the costs.
    pub fold_library: bool,
    /// Read the costs of every selected window, not at most [`MAX_COMPARED`] (`prod top`: an
    /// hour's replicas and cost need all of its windows).
    pub every_window: bool,
    /// Per-window totals per value of this sample label ([`crate::compare::RunCosts::by_label`],
    /// for a comparison's breakdown); the windows must be read for it
    /// ([`Selection::keep_sample_labels`]).
    pub by_label: Option<String>,
    /// Set by the caller when it no longer wants the answer: the reading stops at the next
    /// object with [`StoreError::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Want {
    /// `Err(Interrupted)` once the caller gave up.
    pub(crate) fn check(&self, store: &Store) -> Result<(), StoreError> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => {
                Err(StoreError::Interrupted { store: store.url().to_owned() })
            }
            _ => Ok(()),
        }
    }
}

/// A selection, read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The selected windows, oldest first.
    pub observations: Vec<Observation>,
    /// Their stacks, when asked for: one profile per rollup and per window read, each filtered
    /// to the selection's labels (a flame graph adds them up; merging them first would only cost).
    pub stacks: Vec<Profile>,
    /// What was skipped, and why.
    pub warnings: Vec<String>,
    /// Rollup objects read.
    pub rollups_read: usize,
    /// Window profiles read.
    pub windows_read: usize,
}

/// How one day is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayPlan {
    /// From its day rollup.
    Day,
    /// From its hours' rollups, and its windows where no hour rollup covers them.
    Hours,
}

/// Reads `selection`'s windows of `service`'s `profile_type`. `now` ends a selection without
/// `until`.
pub fn load(
    store: &Store,
    service: &str,
    profile_type: &str,
    selection: &Selection,
    want: &Want,
    now: DateTime<Utc>,
) -> Result<Loaded, StoreError> {
    want.check(store)?;
    let mut out = Loaded::default();
    let since = selection.since.map_or(i64::MIN, |t| t.timestamp());
    let until = selection.until.unwrap_or(now).timestamp();
    let (objects, foreign) = store.list_rollups(service, profile_type)?;
    if foreign > 0 {
        out.warnings.push(format!("{service} {profile_type}: skipped {foreign} object(s) among the rollups that compaction did not write"));
    }
    let mut rollups: BTreeSet<RollupKey> = BTreeSet::new();
    for (o, _) in objects {
        if let RollupObject::Rollup(k) = o {
            rollups.insert(k);
        }
    }
    // Days that overlap the span and have windows or rollups.
    let mut days: BTreeMap<i64, DayPlan> = BTreeMap::new();
    let window_days = store.window_days(service, profile_type)?;
    let day_starts = window_days
        .iter()
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .filter_map(|d| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()))
        .chain(rollups.iter().filter(|k| k.day).map(|k| k.start));
    for start in day_starts {
        let key = RollupKey::at(service, profile_type, start, true);
        if key.end() <= since || key.start > until {
            continue;
        }
        let inside = key.start >= since && key.end() - 1 <= until;
        let whole_day = !want.costs && inside && rollups.contains(&key) && !selection.reads_sample_labels();
        let plan = if whole_day { DayPlan::Day } else { DayPlan::Hours };
        days.insert(key.start, plan);
    }

    // Day rollups.
    let day_keys: Vec<RollupKey> = days
        .iter()
        .filter(|(_, p)| **p == DayPlan::Day)
        .map(|(&s, _)| RollupKey::at(service, profile_type, s, true))
        .collect();
    let mut used: Vec<ReadRollup> = Vec::new();
    for (key, read) in day_keys.iter().zip(read_rollups(store, &day_keys, want, &mut out)?) {
        match read {
            Some(r) => used.push(r),
            None => {
                days.insert(key.start, DayPlan::Hours);
            }
        }
    }

    // Hour rollups of the other days, and the days to list.
    let mut list: BTreeSet<i64> = BTreeSet::new();
    let mut hour_keys = Vec::new();
    for (&start, _) in days.iter().filter(|(_, p)| **p == DayPlan::Hours) {
        let day = RollupKey::at(service, profile_type, start, true);
        if !rollups.contains(&day) {
            list.insert(start);
        }
        hour_keys.extend(
            rollups
                .iter()
                .filter(|k| !k.day && k.start >= day.start && k.start < day.end())
                .filter(|k| k.end() > since && k.start <= until)
                .cloned(),
        );
    }
    let mut hours: Vec<(ReadRollup, Vec<Observation>)> = Vec::new();
    for (key, read) in hour_keys.iter().zip(read_rollups(store, &hour_keys, want, &mut out)?) {
        let Some((r, merged)) = read else {
            list.insert(RollupKey::at(service, profile_type, key.start, true).start);
            continue;
        };
        // Per-window costs hold no sample labels, and are built with one folding: for a filter on
        // sample labels, or the other folding, the day's windows are read instead.
        if selection.reads_sample_labels() || (want.costs && r.fold_library != want.fold_library) {
            list.insert(RollupKey::at(service, profile_type, key.start, true).start);
            continue;
        }
        let obs = r.observations();
        hours.push(((r, merged), obs));
    }
    // Windows no rollup covers.
    let mut covered: BTreeSet<WindowKey> = BTreeSet::new();
    for (r, _) in used.iter().chain(hours.iter().map(|(r, _)| r)) {
        covered.extend(r.windows.iter().map(|w| r.window_key(w)));
    }
    let mut raw: Vec<WindowKey> = Vec::new();
    for &start in &list {
        let (keys, foreign) = store.list_windows_on(service, profile_type, &day_of(start))?;
        if foreign > 0 {
            out.warnings.push(format!(
                "{service} {profile_type} {}: skipped {foreign} object(s) among the windows that the agent did not write",
                day_of(start)
            ));
        }
        raw.extend(keys.into_iter().filter(|k| selection.matches(k) && !covered.contains(k)));
    }

    // Per-function costs: of at most MAX_COMPARED windows, evenly spread over the span.
    let mut keep: Option<BTreeSet<WindowKey>> = None;
    if want.costs {
        let mut candidates: Vec<&WindowKey> = hours
            .iter()
            .flat_map(|(_, obs)| obs.iter().map(|o| &o.key))
            .filter(|k| selection.matches(k))
            .chain(&raw)
            .collect();
        if candidates.len() > MAX_COMPARED && !want.every_window {
            candidates.sort_by_key(|k| (k.start, *k));
            let n = candidates.len();
            out.warnings.push(format!(
                "compared {MAX_COMPARED} of the {n} selected windows, evenly spread over the span \
                 (more add nothing a comparison can use)"
            ));
            keep = Some((0..MAX_COMPARED).map(|i| candidates[i * n / MAX_COMPARED].clone()).collect());
        }
        let paths: Vec<String> = hours
            .iter()
            .map(|((r, _), _)| RollupKey::at(service, profile_type, r.start, false).costs_path(&r.costs))
            .collect();
        want.check(store)?;
        let read = store.get_production_objects(&paths)?;
        let mut kept = Vec::new();
        for ((mut h, path), bytes) in hours.into_iter().zip(&paths).zip(read) {
            let added = match bytes {
                Some(b) => h.0.0.add_costs(&b, &mut h.1).map_err(|e| e.to_string()),
                None => Err("it is missing".to_owned()),
            };
            match added {
                Ok(()) => {
                    if let Some(keep) = &keep {
                        h.1.retain(|o| keep.contains(&o.key));
                    }
                    kept.push(h);
                }
                Err(why) => {
                    out.warnings
                        .push(format!("skipped rollup costs {path}: {why}; reading its windows instead"));
                    raw.extend(h.1.iter().map(|o| o.key.clone()).filter(|k| selection.matches(k)));
                }
            }
        }
        hours = kept;
        if let Some(keep) = &keep {
            raw.retain(|k| keep.contains(k));
        }
    }

    // Observations and stacks of the rollups used.
    let mut stacks = std::mem::take(&mut out.stacks);
    for (r, _) in &used {
        out.observations.extend(r.observations());
    }
    for (_, obs) in &mut hours {
        out.observations.append(obs);
    }
    for (_, merged) in used.into_iter().chain(hours.into_iter().map(|(r, _)| r)) {
        if let Some(mut p) = merged {
            filter_samples(&mut p, selection);
            stacks.push(p);
        }
    }
    out.observations.retain(|o| selection.matches(&o.key) && selection.custom_labels_match(&o.labels));

    // Stacks of at most MAX_VIEWED windows, evenly spread over the span (the costs were
    // thinned above).
    if want.stacks && !want.costs && raw.len() > MAX_VIEWED {
        raw.sort_by_key(|k| (k.start, k.clone()));
        let n = raw.len();
        out.warnings.push(format!(
            "read {MAX_VIEWED} of the {n} windows that no rollup covers, evenly spread over the span: \
             the breakdown, timeline and flame graph leave the others out (`cargo contprof prod compact` \
             rolls them up)"
        ));
        raw = (0..MAX_VIEWED).map(|i| raw[i * n / MAX_VIEWED].clone()).collect();
    }
    let need_profiles =
        want.stacks || want.costs || selection.has_custom_labels() || selection.reads_sample_labels();
    if need_profiles {
        let mut renamer = super::symbols::Renamer::new(store);
        let mut unmerged: Vec<Profile> = Vec::new();
        for chunk in raw.chunks(READ_CHUNK) {
            want.check(store)?;
            let paths: Vec<String> = chunk.iter().map(WindowKey::path).collect();
            let read = store.get_production_objects(&paths)?;
            for ((key, path), bytes) in chunk.iter().zip(&paths).zip(read) {
                want.check(store)?;
                let Some(bytes) = bytes else { continue }; // deleted since it was listed
                let mut p = match profile::decode(&bytes) {
                    Ok(p) => p,
                    Err(e) => {
                        out.warnings.push(format!("skipped window {path}: corrupt profile: {e}"));
                        continue;
                    }
                };
                out.windows_read += 1;
                renamer.rename(&mut p);
                if !keep_labelled_samples(&mut p, selection) {
                    continue;
                }
                let mut o = rollup::observe(key, &p, want.fold_library);
                if !selection.custom_labels_match(&o.labels) {
                    continue;
                }
                if let Some(label) = &want.by_label {
                    let input = rollup::input_options(&key.profile_type, want.fold_library);
                    o.costs.by_label = crate::compare::label_totals(&p, &input, label);
                }
                if !want.costs {
                    o.costs.functions.clear();
                }
                out.observations.push(o);
                if want.stacks {
                    let mut p = rollup::for_merge(p);
                    filter_samples(&mut p, selection);
                    unmerged.push(p);
                    if unmerged.len() == MERGE_EVERY {
                        merge_into(&mut stacks, std::mem::take(&mut unmerged));
                    }
                }
            }
        }
        merge_into(&mut stacks, unmerged);
    } else {
        out.observations.extend(raw.iter().map(|k| Observation {
            key: k.clone(),
            labels: Vec::new(),
            costs: Default::default(),
            seconds: 0.0,
        }));
    }
    out.observations.sort_by(|a, b| a.key.start.cmp(&b.key.start).then_with(|| a.key.cmp(&b.key)));
    out.stacks = stacks;
    Ok(out)
}

/// Adds `profiles` to `stacks` as one merged profile (as they are, if they do not merge), so that
/// the windows read one by one hold the memory of a few merged profiles, not of each window.
fn merge_into(stacks: &mut Vec<Profile>, profiles: Vec<Profile>) {
    match profile::merge(&profiles) {
        Ok(p) if profiles.len() > 1 => stacks.push(p),
        _ => stacks.extend(profiles),
    }
}

/// A rollup read, with its stacks decoded when they were asked for.
pub(crate) type ReadRollup = (Rollup, Option<Profile>);

/// Reads and decodes rollups (and, with `stacks`, their merged stacks), on every core;
/// `None` (with a warning) for one that cannot be read.
pub(crate) fn read_rollups(
    store: &Store,
    keys: &[RollupKey],
    want: &Want,
    out: &mut Loaded,
) -> Result<Vec<Option<ReadRollup>>, StoreError> {
    let stacks = want.stacks;
    let paths: Vec<String> = keys.iter().map(RollupKey::path).collect();
    want.check(store)?;
    let read = store.get_production_objects(&paths)?;
    want.check(store)?;
    out.rollups_read += read.iter().filter(|b| b.is_some()).count();
    let jobs: Vec<(&RollupKey, Option<Vec<u8>>)> = keys.iter().zip(read).collect();
    let decoded = par_map(jobs, |(key, bytes)| -> Result<ReadRollup, String> {
        let bytes = bytes.ok_or("it is gone (deleted since it was listed)")?;
        let mut r = Rollup::decode_for(&bytes, key).map_err(|e| e.to_string())?;
        let merged = if stacks { r.merged().map_err(|e| format!("its stacks: {e}"))? } else { None };
        r.profile = Vec::new();
        Ok((r, merged))
    });
    Ok(decoded
        .into_iter()
        .zip(&paths)
        .map(|(d, path)| {
            d.map_err(|why| {
                out.warnings.push(format!("skipped rollup {path}: {why}; reading its windows instead (`prod compact --full` writes it again)"))
            })
            .ok()
        })
        .collect())
}

/// `f` over `items` on as many threads as there are cores, results in order.
pub(crate) fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(chunk).collect());
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> =
            chunks.into_iter().map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Keeps the samples whose labels pass the selection's label filters.
fn filter_samples(p: &mut Profile, selection: &Selection) {
    if !selection.labels.is_empty() {
        p.retain_labelled(&selection.labels);
    }
}

/// Keeps the samples of a window that pass the selection's sample-label filters; false when none
/// is left (or it had none), and the window is then left out.
pub fn keep_labelled_samples(p: &mut Profile, selection: &Selection) -> bool {
    selection.sample_labels.is_empty() || p.retain_labelled(&selection.sample_labels)
}

/// The observations of `windows`, each read, named ([`super::symbols::Renamer`]) and costed
/// with `want`'s folding ([`Want::costs`] keeps the per-function costs); a window deleted since it
/// was listed is left out, a corrupt one too with a warning.
pub fn observe_windows(
    store: &Store,
    windows: &[WindowKey],
    want: &Want,
    warnings: &mut Vec<String>,
) -> Result<Vec<Observation>, StoreError> {
    let mut renamer = super::symbols::Renamer::new(store);
    let mut out = Vec::new();
    for chunk in windows.chunks(READ_CHUNK) {
        want.check(store)?;
        let paths: Vec<String> = chunk.iter().map(WindowKey::path).collect();
        for ((key, path), bytes) in chunk.iter().zip(&paths).zip(store.get_production_objects(&paths)?) {
            let Some(bytes) = bytes else { continue };
            match profile::decode(&bytes) {
                Ok(mut p) => {
                    renamer.rename(&mut p);
                    let mut o = rollup::observe(key, &p, want.fold_library);
                    if !want.costs {
                        o.costs.functions.clear();
                    }
                    out.push(o);
                }
                Err(e) => warnings.push(format!("skipped window {path}: corrupt profile: {e}")),
            }
        }
    }
    Ok(out)
}

/// Every selected window of every service and type `selection` names (all of them when it names
/// none), with the warnings of reading them.
pub fn load_all(
    store: &Store,
    selection: &Selection,
    want: &Want,
    now: DateTime<Utc>,
) -> Result<(Vec<Observation>, Vec<String>), StoreError> {
    let services = match &selection.service {
        Some(s) => vec![s.clone()],
        None => store.production_services()?,
    };
    let (mut observations, mut warnings) = (Vec::new(), Vec::new());
    for service in &services {
        let types = if selection.types.is_empty() {
            store.production_types(service)?
        } else {
            selection.types.clone()
        };
        for ty in &types {
            let loaded = load(store, service, ty, selection, want, now)?;
            warnings.extend(loaded.warnings);
            observations.extend(loaded.observations);
        }
    }
    Ok((observations, warnings))
}

/// What the store has, said for a selection that matched nothing: the deployments in its time
/// span, else the days each service and type has windows on.
pub fn nothing_matched(store: &Store, selection: &Selection, now: DateTime<Utc>) -> String {
    let wider = Selection { labels: Vec::new(), ..selection.clone() };
    let keys: Vec<WindowKey> = load_all(store, &wider, &Want::default(), now)
        .map(|(o, _)| o.into_iter().map(|o| o.key).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        let list: Vec<String> = super::select::summarize(&keys)
            .iter()
            .map(|d| {
                let n: usize = d.windows.values().sum();
                format!("{} {} in {} ({n} windows, {} to {})", d.service, d.version, d.zone, d.first, d.last)
            })
            .collect();
        return format!(
            "no production window matches the selection; in that time span the store has: {}",
            list.join("; ")
        );
    }
    let mut spans = Vec::new();
    for service in store.production_services().unwrap_or_default() {
        for ty in store.production_types(&service).unwrap_or_default() {
            let days = store.window_days(&service, &ty).unwrap_or_default();
            if let (Some(first), Some(last)) = (days.first(), days.last()) {
                spans.push(format!("{service} {ty} from {first} to {last}"));
            }
        }
    }
    if spans.is_empty() {
        format!("the store {} holds no production window", store.url())
    } else {
        format!("no production window in that time span; the store has: {}", spans.join("; "))
    }
}

/// The two sides of a production comparison, read.
#[derive(Debug)]
pub struct Sides {
    /// The base side's windows (with costs and stacks).
    pub base: Loaded,
    /// The head side's.
    pub head: Loaded,
}

/// Reads both sides of a comparison of `service`'s `profile_type`: `selection` narrowed by the
/// `key=value[,key=value]` specs `base` and `head`. A spec that does not parse is an
/// invalid-argument error naming `flags` (`--base`/`--head`, or `base`/`head` for the viewer); a
/// side that matches nothing says what the store has.
pub fn load_sides(
    store: &Store,
    (service, profile_type): (&str, &str),
    selection: &Selection,
    (base, head): (&str, &str),
    flags: [&'static str; 2],
    want: &Want,
    now: DateTime<Utc>,
) -> crate::errors::Result<Sides> {
    let side = |flag: &'static str, spec: &str| -> crate::errors::Result<Loaded> {
        let mut s = selection.clone();
        s.labels.extend(
            super::select::parse_labels(spec)
                .map_err(|message| crate::errors::Error::InvalidArgument { flag, message })?,
        );
        let loaded = load(store, service, profile_type, &s, want, now)?;
        if loaded.observations.is_empty() {
            return Err(crate::errors::Error::NothingMatched { what: nothing_matched(store, &s, now) });
        }
        Ok(loaded)
    };
    Ok(Sides { base: side(flags[0], base)?, head: side(flags[1], head)? })
}

impl Loaded {
    /// The side as a comparison's revision: its name, with its windows and replicas counted.
    pub fn revision(&self, label: &str) -> crate::compare::RevisionInfo {
        let instances: BTreeSet<&str> = self.observations.iter().map(|o| o.key.instance.as_str()).collect();
        let mut extra = BTreeMap::new();
        extra.insert("windows".to_owned(), self.observations.len().to_string());
        extra.insert("instances".to_owned(), instances.len().to_string());
        crate::compare::RevisionInfo { commit: String::new(), label: label.to_owned(), extra }
    }
}
