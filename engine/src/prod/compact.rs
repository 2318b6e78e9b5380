//! Compaction: `cargo contprof prod compact` (also run by `serve` in the background) writes the
//! rollups of [`super::rollup`] from the windows in the store.
//!
//! - An hour's rollup is written as soon as the hour has a window, and brought up to date when
//!   more arrive: the new windows are merged into the existing rollup, not the hour read again.
//! - A day's rollup is written once the day is over, from its hours' rollups, and again when a
//!   late window changes one of its hours.
//! - Days that were rolled up and ended more than `rescan_days` ago are not listed again, and
//!   their rollups are not listed one by one; an hour whose one costs object is named by the
//!   digest of the windows listed in it now ([`rollup::costs_digest`]) is up to date and not read.
//!   So a pass costs a few requests per service, type and recent day, and reads the hours that
//!   changed; `full` lists and reads everything (after an outage longer than `rescan_days`, or to
//!   rebuild a rollup that cannot be read).
//!
//! - An hour's costs are read with library frames folded or not, as the compaction that wrote
//!   the hour first was configured (`fold_library`); later passes keep that, whatever their own
//!   configuration says, so that two configurations that disagree do not rewrite every hour on
//!   every pass. A comparison asking for the other folding reads that hour's windows instead.
//!
//! Every object is written whole by one put, costs before the rollup that names them, so a
//! reader sees the old rollup or the new one, never a mixture. Two compactions at once write
//! the same bytes for the same windows; if they saw different windows, the last write wins and
//! is still correct for the windows it lists (the next pass adds the others). Costs objects that
//! no rollup names any more are deleted once they are [`ORPHAN_AGE`] old, so that a concurrent
//! compaction's fresh costs are not deleted under it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::fleet;
use super::rollup::{self, Observation, Rollup};
use crate::profile::{self, Profile};
use crate::store::{RollupKey, RollupObject, Store, StoreError, WindowKey};

/// Costs objects no rollup names are deleted after this long.
pub const ORPHAN_AGE: chrono::Duration = chrono::Duration::minutes(10);

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// One service, or every service.
    pub service: Option<String>,
    /// Days already rolled up are listed again for late windows when they ended less than this
    /// many days ago.
    pub rescan_days: i64,
    /// List every day again.
    pub full: bool,
    /// Fold library frames into their callers in the costs of hours not rolled up yet (the
    /// configuration's `fold_library`; an existing hour keeps its own).
    pub fold_library: bool,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Hour rollups written.
    pub hours: usize,
    /// Day rollups written.
    pub days: usize,
    /// Window profiles read.
    pub windows: usize,
    /// Hours left unread: no window newer than their rollup.
    pub unchanged: usize,
    /// Costs objects deleted (no rollup names them).
    pub deleted: usize,
    /// Windows and rollups that could not be read (skipped), and foreign objects.
    pub warnings: Vec<String>,
}

/// Compacts the store's production windows.
pub fn compact(
    store: &Store,
    opts: &CompactOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Compacted, StoreError> {
    let mut done = Compacted::default();
    let services = match &opts.service {
        Some(s) => vec![s.clone()],
        None => store.production_services()?,
    };
    for service in &services {
        for ty in store.production_types(service)? {
            compact_type(store, service, &ty, opts, &mut done, progress)?;
        }
    }
    Ok(done)
}

/// The rollup objects of one service and type, by span.
#[derive(Default)]
struct Existing {
    /// Rollups, with when each was written.
    rollups: BTreeMap<RollupKey, DateTime<Utc>>,
    /// Per hour, its costs objects: (digest, written).
    costs: BTreeMap<RollupKey, Vec<(String, DateTime<Utc>)>>,
    /// Rollups with a fleet summary.
    summaries: BTreeSet<RollupKey>,
}

/// The rollup objects of the days from `from` on (every day with `None`).
fn existing(
    store: &Store,
    service: &str,
    ty: &str,
    from: Option<i64>,
    warnings: &mut Vec<String>,
) -> Result<Existing, StoreError> {
    let (objects, foreign) = match from {
        Some(day) => store.list_rollups_from(service, ty, &crate::store::day_of(day))?,
        None => store.list_rollups(service, ty)?,
    };
    if foreign > 0 {
        warnings.push(format!(
            "{service} {ty}: {foreign} object(s) among the rollups that compaction did not write (left alone)"
        ));
    }
    let mut e = Existing::default();
    for (o, modified) in objects {
        match o {
            RollupObject::Rollup(k) => {
                e.rollups.insert(k, modified);
            }
            RollupObject::Costs(k, digest) => e.costs.entry(k).or_default().push((digest, modified)),
            RollupObject::Fleet(k) => {
                e.summaries.insert(k);
            }
        }
    }
    Ok(e)
}

fn compact_type(
    store: &Store,
    service: &str,
    ty: &str,
    opts: &CompactOptions,
    done: &mut Compacted,
    progress: &mut dyn FnMut(&str),
) -> Result<(), StoreError> {
    let now = opts.now.timestamp();
    let rescan_from = RollupKey::at(service, ty, now, true).start - opts.rescan_days * 86_400;
    // The days before the rescan are only told apart by whether they were rolled up: their
    // rollups are not listed one by one.
    let (from, rolled_up): (Option<i64>, BTreeSet<String>) = if opts.full {
        (None, BTreeSet::new())
    } else {
        (Some(rescan_from - 86_400), store.rollup_days(service, ty)?.into_iter().collect())
    };
    let existing = existing(store, service, ty, from, &mut done.warnings)?;
    for day in store.window_days(service, ty)? {
        let Some(day_start) = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
        else {
            continue;
        };
        let day_key = RollupKey::at(service, ty, day_start, true);
        if !opts.full && day_key.end() <= rescan_from && rolled_up.contains(&day) {
            continue;
        }
        let (windows, foreign) = store.list_windows_on(service, ty, &day)?;
        if foreign > 0 {
            done.warnings.push(format!("{service} {ty} {day}: {foreign} object(s) among the windows that the agent did not write (skipped)"));
        }
        let mut by_hour: BTreeMap<i64, Vec<WindowKey>> = BTreeMap::new();
        for w in windows {
            by_hour.entry(RollupKey::at(service, ty, w.start, false).start).or_default().push(w);
        }
        let mut hours: Vec<Rollup> = Vec::new();
        let mut unread: Vec<RollupKey> = Vec::new();
        let mut changed = false;
        for (hour, windows) in by_hour {
            let key = RollupKey::at(service, ty, hour, false);
            if !opts.full && unchanged(&key, &windows, &existing) {
                done.unchanged += 1;
                unread.push(key);
                continue;
            }
            let (rollup, wrote) = compact_hour(store, &key, windows, &existing, opts, done)?;
            changed |= wrote;
            hours.extend(rollup);
        }
        let closed = day_key.end() + rollup::DAY_GRACE <= now;
        let write = closed && (changed || !existing.rollups.contains_key(&day_key));
        let unsummarized = fleet::measure_of(ty).is_some() && !existing.summaries.contains(&day_key);
        if (write || (closed && unsummarized)) && !unread.is_empty() {
            // The day is written again: the hours left unread are read now.
            for key in unread {
                match read_hour(store, &key, &existing) {
                    Ok(Some((r, _))) => hours.push(r),
                    Ok(None) => {}
                    Err(why) => {
                        done.warnings.push(format!("{}: {why}; the day's rollup goes without it", key.path()))
                    }
                }
            }
            hours.sort_by_key(|r| r.start);
        }
        if (write || (closed && unsummarized)) && !hours.is_empty() {
            progress(&format!("{service} {ty} {day}: day rollup of {} hour(s)", hours.len()));
            write_day(store, &day_key, &hours, opts.fold_library, &mut done.warnings)?;
            done.days += 1;
        }
    }
    Ok(())
}

/// Whether the hour `key` needs no work: it has a rollup (and a fleet summary, for the types that
/// have one) and exactly one costs object, named by the digest of the `windows` listed now
/// ([`rollup::costs_digest`]), so its rollup covers them all. Its objects are then not read, which
/// keeps a pass over the recent days to a few requests per hour that changed. (Two costs objects
/// mean two compactions raced, or one stopped between its costs and its rollup: the hour is read.)
fn unchanged(key: &RollupKey, windows: &[WindowKey], existing: &Existing) -> bool {
    let summarized = fleet::measure_of(&key.profile_type).is_none() || existing.summaries.contains(key);
    let [(digest, _)] = existing.costs.get(key).map_or(&[][..], Vec::as_slice) else { return false };
    existing.rollups.contains_key(key)
        && summarized
        && [true, false].iter().any(|&fold| *digest == rollup::costs_digest(fold, windows.iter()))
}

/// Brings one hour's rollup up to date with `windows` (the hour's listing). Returns the rollup
/// as it now is (`None` if no window could be read) and whether it was written.
fn compact_hour(
    store: &Store,
    key: &RollupKey,
    windows: Vec<WindowKey>,
    existing: &Existing,
    opts: &CompactOptions,
    done: &mut Compacted,
) -> Result<(Option<Rollup>, bool), StoreError> {
    let mut base: Option<(Rollup, Vec<Observation>)> = None;
    if existing.rollups.contains_key(key) {
        match read_hour(store, key, existing) {
            Ok(Some(r)) => base = Some(r),
            Ok(None) => {}
            Err(why) => done.warnings.push(format!("{}: {why}; rebuilding it from its windows", key.path())),
        }
    }
    let covered: BTreeSet<WindowKey> =
        base.as_ref().map(|(r, _)| r.windows.iter().map(|w| r.window_key(w)).collect()).unwrap_or_default();
    let new: Vec<WindowKey> = windows.into_iter().filter(|w| !covered.contains(w)).collect();
    if new.is_empty() {
        // An hour rolled up before fleet summaries existed gets its summary.
        if let Some((r, _)) = &base
            && !existing.summaries.contains(key)
            && let Ok(merged) = r.merged()
        {
            write_summary(store, key, r, merged.as_ref())?;
        }
        return Ok((base.map(|(r, _)| r), false));
    }
    // New windows are read as the hour's rollup was.
    let fold_library = base.as_ref().map_or(opts.fold_library, |(r, _)| r.fold_library);
    let paths: Vec<String> = new.iter().map(WindowKey::path).collect();
    let bytes = store.get_production_objects(&paths)?;
    let mut observations = Vec::new();
    let mut profiles: Vec<Profile> = Vec::new();
    if let Some((r, obs)) = &base {
        observations.extend(obs.iter().cloned());
        match r.merged() {
            Ok(Some(p)) => profiles.push(p),
            Ok(None) => {}
            Err(e) => {
                // Unreachable in practice (read_hour decoded it); rebuild rather than lose stacks.
                done.warnings.push(format!("{}: {e}", key.path()));
            }
        }
    }
    let mut renamer = super::symbols::Renamer::new(store);
    for ((w, path), b) in new.iter().zip(&paths).zip(bytes) {
        let Some(b) = b else { continue }; // deleted since it was listed
        match profile::decode(&b) {
            Ok(mut p) => {
                renamer.rename(&mut p);
                observations.push(rollup::observe(w, &p, fold_library));
                profiles.push(rollup::for_merge(p));
                done.windows += 1;
            }
            Err(e) => done.warnings.push(format!("skipped {path}: corrupt profile: {e}")),
        }
    }
    if observations.len() == covered.len() {
        return Ok((base.map(|(r, _)| r), false));
    }
    let merged = merge_stacks(&profiles, key, &mut done.warnings);
    let encoded = rollup::encode(key, fold_library, observations, merged.as_ref());
    let digest = encoded.costs.as_ref().map(|(d, _)| d.clone()).unwrap_or_default();
    if let Some((d, costs)) = encoded.costs {
        store.put_rollup_object(&key.costs_path(&d), costs)?;
    }
    let rollup = Rollup::decode_for(&encoded.rollup, key).ok();
    if let Some(r) = &rollup {
        write_summary(store, key, r, merged.as_ref())?;
    }
    store.put_rollup_object(&key.path(), encoded.rollup)?;
    done.hours += 1;
    // Costs objects of this hour that no rollup names any more, old enough not to be a
    // concurrent compaction's.
    let cutoff = opts.now - ORPHAN_AGE;
    let orphans: Vec<String> = existing
        .costs
        .get(key)
        .into_iter()
        .flatten()
        .filter(|(d, written)| *d != digest && *written < cutoff)
        .map(|(d, _)| key.costs_path(d))
        .collect();
    if !orphans.is_empty() {
        store.delete_rollup_objects(&orphans)?;
        done.deleted += orphans.len();
    }
    Ok((rollup, true))
}

/// The hour's rollup with its observations and their costs; `Ok(None)` when it is gone; `Err`
/// when it or its costs cannot be read.
fn read_hour(
    store: &Store,
    key: &RollupKey,
    existing: &Existing,
) -> Result<Option<(Rollup, Vec<Observation>)>, String> {
    let [rollup] = &store.get_production_objects(&[key.path()]).map_err(|e| e.to_string())?[..] else {
        return Err("unreadable".into());
    };
    let Some(rollup) = rollup else { return Ok(None) };
    let r = Rollup::decode_for(rollup, key).map_err(|e| e.to_string())?;
    r.merged().map_err(|e| e.to_string())?;
    let named = existing.costs.get(key).is_some_and(|c| c.iter().any(|(d, _)| *d == r.costs));
    let costs = if named {
        store.get_production_objects(&[key.costs_path(&r.costs)]).map_err(|e| e.to_string())?
    } else {
        vec![None]
    };
    let Some(Some(costs)) = costs.into_iter().next() else {
        return Err(format!("its costs object {} is missing", key.costs_path(&r.costs)));
    };
    let mut obs = r.observations();
    r.add_costs(&costs, &mut obs).map_err(|e| e.to_string())?;
    Ok(Some((r, obs)))
}

/// The merge of `profiles`, `None` when there is nothing to merge or they do not merge.
pub(crate) fn merge_stacks(
    profiles: &[Profile],
    key: &RollupKey,
    warnings: &mut Vec<String>,
) -> Option<Profile> {
    if profiles.is_empty() {
        return None;
    }
    match profile::merge(profiles) {
        Ok(mut p) => {
            p.add_comment(&format!("contprof.service={}", key.service));
            p.add_comment(&format!("contprof.type={}", key.profile_type));
            Some(p)
        }
        Err(e) => {
            warnings
                .push(format!("{}: the windows' stacks do not merge ({e}); the rollup has none", key.path()));
            None
        }
    }
}

fn write_day(
    store: &Store,
    key: &RollupKey,
    hours: &[Rollup],
    fold_library: bool,
    warnings: &mut Vec<String>,
) -> Result<(), StoreError> {
    let mut observations = Vec::new();
    let mut profiles = Vec::new();
    for h in hours {
        observations.extend(h.observations());
        if let Ok(Some(p)) = h.merged() {
            profiles.push(rollup::for_merge(p));
        }
    }
    let merged = merge_stacks(&profiles, key, warnings);
    if let Some(measure) = fleet::measure_of(&key.profile_type) {
        let parts: Vec<_> = hours
            .iter()
            .flat_map(|h| fleet::parts_of_rollup(h, h.merged().ok().flatten().as_ref(), measure))
            .collect();
        store.put_rollup_object(&key.fleet_path(), fleet::encode(key, &parts))?;
    }
    let encoded = rollup::encode(key, fold_library, observations, merged.as_ref());
    store.put_rollup_object(&key.path(), encoded.rollup)
}

/// Writes the fleet summary of the hour rollup `r` of `key` with its `merged` stacks, for the
/// types `prod top` ranks (before the rollup, as its costs: a reader that sees the rollup sees a
/// summary at least as new).
fn write_summary(
    store: &Store,
    key: &RollupKey,
    r: &Rollup,
    merged: Option<&Profile>,
) -> Result<(), StoreError> {
    match fleet::measure_of(&key.profile_type) {
        Some(measure) => {
            let parts = fleet::parts_of_rollup(r, merged, measure);
            store.put_rollup_object(&key.fleet_path(), fleet::encode(key, &parts))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prod::load::{Want, load};
    use crate::prod::select::{Selection, parse_labels};
    use crate::profile::test_support::synth;
    use crate::store::{Deployment, StoreLocation};

    const DAY: i64 = 1_764_547_200; // 2025-12-01T00:00:00Z

    fn key(version: &str, instance: &str, start: i64) -> WindowKey {
        WindowKey {
            deployment: Deployment { service: "api".into(), version: version.into(), zone: "eu".into() },
            profile_type: "cpu".into(),
            start,
            instance: instance.into(),
        }
    }

    /// A window as the uploader writes it, `parse_ms` of 100 ms in `parse`.
    fn put(store: &Store, k: &WindowKey, parse_ms: i64) {
        let ms = 1_000_000;
        let mut p =
            synth(&[(&["main", "parse"], parse_ms * ms, 0), (&["main", "render"], (100 - parse_ms) * ms, 0)])
                .project(&["samples", "cpu"], "cpu");
        let d = &k.deployment;
        p.label_samples(&[
            ("service", &d.service),
            ("version", &d.version),
            ("zone", &d.zone),
            ("instance", &k.instance),
            ("type", "cpu"),
        ]);
        p.add_comment(&format!("contprof.window_start={}", k.start));
        p.add_comment("contprof.team=search");
        store.put_window(k, profile::encode_to_vec(&p)).unwrap();
    }

    fn opts(now: i64) -> CompactOptions {
        CompactOptions {
            service: None,
            rescan_days: 2,
            full: false,
            fold_library: true,
            now: DateTime::from_timestamp(now, 0).unwrap(),
        }
    }

    fn all(now: i64) -> Selection {
        Selection {
            since: DateTime::from_timestamp(DAY - 86_400, 0),
            until: DateTime::from_timestamp(now, 0),
            ..Selection::default()
        }
    }

    fn costs(store: &Store, sel: &Selection, now: i64) -> crate::prod::load::Loaded {
        let want = Want { stacks: true, costs: true, fold_library: true, ..Want::default() };
        load(store, "api", "cpu", sel, &want, DateTime::from_timestamp(now, 0).unwrap()).unwrap()
    }

    #[test]
    fn rollups_give_what_the_windows_give_and_take_late_windows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        // Two days of one window every 10 minutes, two versions on two replicas.
        for i in 0..(2 * 144) {
            let (version, instance) = if i % 2 == 0 { ("1.3", "a") } else { ("1.4", "b") };
            put(&store, &key(version, instance, DAY + i * 600), if version == "1.3" { 30 } else { 40 });
        }
        let now = DAY + 2 * 86_400 + 3_600;
        let raw = costs(&store, &all(now), now);
        assert_eq!((raw.observations.len(), raw.rollups_read, raw.windows_read), (288, 0, 288));

        let done = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!((done.hours, done.days, done.windows), (48, 2, 288), "{:?}", done.warnings);
        let rolled = costs(&store, &all(now), now);
        assert_eq!(rolled.windows_read, 0, "{:?}", rolled.warnings);
        assert_eq!(rolled.observations, raw.observations, "the same observations, costs included");
        let cpu = |v: &[Profile]| v.iter().map(|p| p.total(1)).sum::<i64>();
        assert_eq!(cpu(&raw.stacks), cpu(&rolled.stacks));
        assert_eq!(raw.stacks.len(), 288_usize.div_ceil(64), "windows read one by one, merged 64 at a time");
        assert_eq!(rolled.stacks.len(), 48, "one per hour rollup");
        assert!(
            rolled.stacks.iter().all(|p| p.sample.len() <= 2 * 2),
            "stacks merged across windows of two label sets"
        );

        // A view without costs reads the two day rollups only.
        let view =
            load(&store, "api", "cpu", &all(now), &Want { stacks: true, ..Want::default() }, opts(now).now)
                .unwrap();
        assert_eq!((view.rollups_read, view.windows_read, view.observations.len()), (2, 0, 288));
        assert!(view.observations.iter().all(|o| o.labels == vec![("team".to_owned(), "search".to_owned())]));

        // Selections by label filter observations and stacks.
        let sel = Selection { labels: parse_labels("version=1.4").unwrap(), ..all(now) };
        let v14 = load(&store, "api", "cpu", &sel, &Want { stacks: true, ..Want::default() }, opts(now).now)
            .unwrap();
        assert_eq!(v14.observations.len(), 144);
        assert_eq!(cpu(&v14.stacks), 144 * 100_000_000);
        let sel = Selection { labels: parse_labels("team=ads").unwrap(), ..all(now) };
        assert!(
            load(&store, "api", "cpu", &sel, &Want::default(), opts(now).now)
                .unwrap()
                .observations
                .is_empty()
        );

        // A late window in a compacted hour: read raw until the next pass adds it.
        put(&store, &key("1.4", "c", DAY + 86_400 + 60), 90);
        let again = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!(
            (again.hours, again.days, again.windows),
            (1, 1, 1),
            "only the changed hour and day: {again:?}"
        );
        let after = costs(&store, &all(now), now);
        assert_eq!(after.observations.len(), 289);
        assert_eq!(after.windows_read, 0);
        // Nothing new: nothing read or written.
        let again = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!(again, Compacted { unchanged: again.unchanged, ..Compacted::default() });
        assert!(again.unchanged > 0);
    }

    #[test]
    fn configurations_that_disagree_on_folding_do_not_rewrite_each_others_hours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        for i in 0..12 {
            put(&store, &key("1.3", "a", DAY + i * 600), 30);
        }
        let now = DAY + 86_400 + 3_600;
        let folded = opts(now);
        let unfolded = CompactOptions { fold_library: false, ..opts(now) };
        assert_eq!(compact(&store, &folded, &mut |_| {}).unwrap().hours, 2);
        for o in [&unfolded, &folded, &unfolded] {
            assert_eq!(
                compact(&store, o, &mut |_| {}).unwrap(),
                Compacted { unchanged: 2, ..Compacted::default() },
                "nothing new: nothing read or written"
            );
        }
        // A late window is added with the hour's own folding, and a comparison that wants the
        // other folding reads the windows.
        put(&store, &key("1.3", "a", DAY + 61), 30);
        assert_eq!(compact(&store, &unfolded, &mut |_| {}).unwrap().hours, 1);
        let hour = RollupKey::at("api", "cpu", DAY, false);
        let bytes = store.get_production_objects(&[hour.path()]).unwrap().remove(0).unwrap();
        assert!(Rollup::decode_for(&bytes, &hour).unwrap().fold_library);
        let want = Want { stacks: false, costs: true, fold_library: false, ..Want::default() };
        let other = load(&store, "api", "cpu", &all(now), &want, opts(now).now).unwrap();
        assert_eq!((other.observations.len(), other.windows_read), (13, 13));
    }

    #[test]
    fn a_broken_rollup_is_reported_and_its_windows_read_instead() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        for i in 0..12 {
            put(&store, &key("1.3", "a", DAY + i * 600), 30);
        }
        let now = DAY + 3 * 3_600;
        compact(&store, &opts(now), &mut |_| {}).unwrap();
        let hour = RollupKey::at("api", "cpu", DAY, false);
        store.put_rollup_object(&hour.path(), b"\x1f\x8b garbage".to_vec()).unwrap();
        store.put_rollup_object("prod/rollups/api/cpu/2025-12-01/notes.txt", b"hi".to_vec()).unwrap();
        let got = costs(&store, &all(now), now);
        assert_eq!(got.observations.len(), 12);
        assert_eq!(got.windows_read, 6, "the broken hour's windows, raw");
        assert!(
            got.warnings.iter().any(|w| w.contains("skipped rollup") && w.contains("00.pb.gz")),
            "{:?}",
            got.warnings
        );
        assert!(got.warnings.iter().any(|w| w.contains("did not write")), "{:?}", got.warnings);
        // A pass does not read it (its listing says it is up to date); `--full` rebuilds it.
        let done = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!(done.hours, 0, "{done:?}");
        let done = compact(&store, &CompactOptions { full: true, ..opts(now) }, &mut |_| {}).unwrap();
        assert_eq!(done.hours, 1, "{done:?}");
        assert_eq!(costs(&store, &all(now), now).windows_read, 0);
    }

    #[test]
    fn a_comparison_reads_the_costs_of_at_most_a_thousand_windows_spread_over_the_span() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        let n = crate::prod::load::MAX_COMPARED as i64 + 200;
        for i in 0..n {
            put(&store, &key("1.3", "a", DAY + i * 60), 30);
        }
        let now = DAY + 86_400 + 7_200;
        compact(&store, &opts(now), &mut |_| {}).unwrap();
        // Windows of the next day, not compacted yet: the thinning covers them too.
        for j in 0..30 {
            put(&store, &key("1.3", "a", DAY + 86_400 + j * 60), 30);
        }
        let got = costs(&store, &all(now), now);
        assert_eq!(got.observations.len(), crate::prod::load::MAX_COMPARED);
        assert!(got.warnings.iter().any(|w| w.contains("evenly spread")), "{:?}", got.warnings);
        assert!(got.observations.iter().all(|o| !o.costs.functions.is_empty()));
        let (first, last) = (got.observations[0].key.start, got.observations.last().unwrap().key.start);
        assert!(first < DAY + 120 && last > DAY + 86_400 + 25 * 60, "spread over the span: {first}..{last}");
        assert!(
            got.windows_read > 0 && got.windows_read < 30,
            "raw windows thinned too: {}",
            got.windows_read
        );
        // A view without costs keeps every window.
        let view = load(&store, "api", "cpu", &all(now), &Want::default(), opts(now).now).unwrap();
        assert_eq!(view.observations.len() as i64, n + 30);
    }

    #[test]
    fn a_view_reads_the_stacks_of_at_most_a_thousand_uncompacted_windows_and_stops_when_told() {
        use crate::prod::load::MAX_VIEWED;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        let n = MAX_VIEWED as i64 + 300;
        for i in 0..n {
            put(&store, &key("1.3", "a", DAY + i * 60), 30);
        }
        let now = DAY + 86_400 + 3_600;
        let want = Want { stacks: true, ..Want::default() };
        let view = load(&store, "api", "cpu", &all(now), &want, opts(now).now).unwrap();
        assert_eq!((view.windows_read, view.observations.len()), (MAX_VIEWED, MAX_VIEWED));
        let said = format!("read {MAX_VIEWED} of the {n} windows that no rollup covers");
        assert!(view.warnings.iter().any(|w| w.contains(&said)), "{:?}", view.warnings);
        let (first, last) = (view.observations[0].key.start, view.observations.last().unwrap().key.start);
        assert!(first < DAY + 120 && last > DAY + (n - 3) * 60, "spread over the span: {first}..{last}");
        assert!(view.stacks.len() <= MAX_VIEWED.div_ceil(64), "merged as read: {}", view.stacks.len());
        let cpu: i64 = view.stacks.iter().map(|p| p.total(1)).sum();
        assert_eq!(cpu, MAX_VIEWED as i64 * 100_000_000);

        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let told = Want { stacks: true, cancel: Some(cancel), ..Want::default() };
        let stopped = load(&store, "api", "cpu", &all(now), &told, opts(now).now);
        assert!(matches!(stopped, Err(StoreError::Interrupted { .. })), "{stopped:?}");
    }

    #[test]
    fn two_compactions_at_once_leave_one_correct_rollup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        for i in 0..36 {
            put(&store, &key("1.3", "a", DAY + i * 200), 30);
        }
        let now = DAY + 86_400 + 3_600;
        let expected = costs(&store, &all(now), now).observations;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
                    compact(&store, &opts(now), &mut |_| {}).unwrap();
                });
            }
        });
        let got = costs(&store, &all(now), now);
        assert_eq!((got.windows_read, got.warnings.len()), (0, 0), "{:?}", got.warnings);
        assert_eq!(got.observations, expected);
        let (objects, _) = store.list_rollups("api", "cpu").unwrap();
        assert_eq!(
            objects.len(),
            2 * 3 + 2,
            "two hours with one costs object and one fleet summary each, and the day with its summary: {objects:?}"
        );
    }

    /// A pass reads no hour whose rollup covers every window listed in it; a late window in one
    /// hour is rolled up, and the day written again with every hour; an hour whose costs object
    /// is not the one its listing names (two compactions raced) is read.
    #[test]
    fn a_pass_leaves_hours_without_new_windows_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        for i in 0..24 {
            put(&store, &key("1.3", "a", DAY + i * 3_600), 30);
        }
        let now = DAY + 86_400 + 3_600;
        let first = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!((first.hours, first.days, first.unchanged), (24, 1, 0));
        let again = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!((again.hours, again.days, again.windows, again.unchanged), (0, 0, 0, 24));
        // A late window in hour 5, written now.
        let late = key("1.3", "b", DAY + 5 * 3_600 + 60);
        put(&store, &late, 30);
        let third = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!((third.hours, third.days, third.windows, third.unchanged), (1, 1, 1, 23));
        let view =
            load(&store, "api", "cpu", &all(now), &Want { stacks: true, ..Want::default() }, opts(now).now)
                .unwrap();
        assert_eq!((view.rollups_read, view.windows_read, view.observations.len()), (1, 0, 25));
        // A second costs object in hour 7, as a compaction that stopped after writing it leaves.
        let seven = RollupKey::at("api", "cpu", DAY + 7 * 3_600, false);
        store.put_rollup_object(&seven.costs_path("00000000000000ff"), b"stale".to_vec()).unwrap();
        let fourth = compact(&store, &opts(now), &mut |_| {}).unwrap();
        assert_eq!(
            (fourth.hours, fourth.unchanged),
            (0, 22),
            "hour 7 is read, and hour 5, whose costs object of before the late window is deleted once \
             it is {ORPHAN_AGE} old"
        );
        // `--full` reads every hour.
        let full = compact(&store, &CompactOptions { full: true, ..opts(now) }, &mut |_| {}).unwrap();
        assert_eq!(full.unchanged, 0);
    }
}
