//! Fleet summaries: what `prod top` and the fleet page rank, written by compaction beside each
//! rollup of a `cpu` or `heap` type, so that a month of a fleet is read from a few small objects
//! a service and day instead of every window's costs.
//!
//! A summary (`<hh>.fleet.pb.gz` beside an hour's rollup, `day.fleet.pb.gz` beside a day's)
//! holds, per hour and deployment, the [`HourPart`] that [`top::rank_parts`] reads: each window's
//! start, replica, length and total, and the hour's self cost per function with library frames
//! folded as the measure says ([`Measure::fold_library`]: not for CPU, so std's own functions
//! are std's; for the heap, so bytes belong to the code that allocated them). The function
//! costs come from the rollup's merged stacks, split by deployment, so they are the same
//! whichever folding the rollup's own per-window costs were built with, and they sum what the
//! windows read one by one give.
//!
//! Reading ([`read`]), per service: the days wholly inside the span that have a day summary from
//! it; the other days' hours from their hour summaries, or, where an hour has a rollup but no
//! summary (written before summaries existed, or unreadable), from the rollup's stacks; windows
//! no rollup covers yet (the minutes since the last compaction) one by one. A selection by
//! version or zone is a filter on the parts. A selection by replica or by custom or sample
//! labels, which summaries do not split by, reads every selected window's costs instead: exact,
//! and as slow as the number of windows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use prost::Message;

use super::load::{self, Want};
use super::rollup::{self, Rollup, RollupError};
use super::select::{LABEL_KEYS, Selection};
use super::top::{self, Fleet, HourPart, Measure, Name, WindowPart};
use crate::compare::{Kind, run_costs};
use crate::profile::{self, DecodeError, Profile};
use crate::store::{RollupKey, RollupObject, Store, StoreError, WindowKey, day_of};

/// The version of the summaries' format; another is not read (its hours are read from their
/// rollups, and compaction rewrites it).
pub const FORMAT: u32 = 1;

/// Spans up to this many days are read day by day by name, without listing the store.
const MAX_NAMED_DAYS: i64 = 92;

/// Services read at once.
const SERVICES_AT_ONCE: usize = 8;

/// The largest inflated summary read.
const MAX_INFLATED: u64 = 1 << 28;

/// A fleet summary as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    /// [`FORMAT`].
    #[prost(uint32, tag = "1")]
    format: u32,
    /// The service.
    #[prost(string, tag = "2")]
    service: String,
    /// The profile type.
    #[prost(string, tag = "3")]
    profile_type: String,
    /// The rollup's start.
    #[prost(int64, tag = "4")]
    start: i64,
    /// Whether it summarizes a day (else an hour).
    #[prost(bool, tag = "5")]
    day: bool,
    /// Function names, indexed by [`Part::function`].
    #[prost(string, repeated, tag = "6")]
    functions: Vec<String>,
    /// One per hour and deployment.
    #[prost(message, repeated, tag = "7")]
    parts: Vec<Part>,
}

/// One [`HourPart`] as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct Part {
    #[prost(int64, tag = "1")]
    hour: i64,
    #[prost(string, tag = "2")]
    version: String,
    #[prost(string, tag = "3")]
    zone: String,
    #[prost(message, repeated, tag = "4")]
    windows: Vec<Window>,
    #[prost(double, tag = "5")]
    total: f64,
    /// Index into [`Summary::functions`], parallel to `self_cost`.
    #[prost(uint32, repeated, tag = "6")]
    function: Vec<u32>,
    #[prost(double, repeated, tag = "7")]
    self_cost: Vec<f64>,
}

/// One [`WindowPart`] as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct Window {
    #[prost(int64, tag = "1")]
    start: i64,
    #[prost(string, tag = "2")]
    instance: String,
    #[prost(double, tag = "3")]
    seconds: f64,
    #[prost(double, tag = "4")]
    total: f64,
}

/// The measure ranked from windows of `profile_type`, if any.
pub fn measure_of(profile_type: &str) -> Option<Measure> {
    [Measure::Cpu, Measure::Heap].into_iter().find(|m| m.profile_type() == profile_type)
}

/// The hour parts of an hour's rollup `r` (of a `cpu` or `heap` type) with its `merged` stacks:
/// its windows by deployment, and per deployment the self cost of each function in its samples.
pub fn parts_of_rollup(r: &Rollup, merged: Option<&Profile>, measure: Measure) -> Vec<HourPart> {
    let metric = measure.metric();
    let mut parts: BTreeMap<(String, String), HourPart> = BTreeMap::new();
    for o in r.observations() {
        let d = &o.key.deployment;
        let part = parts.entry((d.version.clone(), d.zone.clone())).or_insert_with(|| HourPart {
            service: r.service.clone(),
            hour: o.key.start.div_euclid(3_600) * 3_600,
            version: d.version.clone(),
            zone: d.zone.clone(),
            ..HourPart::default()
        });
        let total = o.costs.totals.get(&metric).map_or(0.0, |t| t.value);
        part.windows.push(WindowPart {
            start: o.key.start,
            instance: o.key.instance,
            seconds: o.seconds,
            total,
        });
    }
    let options = rollup::input_options(&r.profile_type, measure.fold_library());
    let split = parts.len() > 1;
    for ((version, zone), part) in &mut parts {
        let Some(merged) = merged else { break };
        let costs = if split {
            let mut p = merged.clone();
            p.retain_labelled(&[("version".to_owned(), version.clone()), ("zone".to_owned(), zone.clone())]);
            run_costs(&p, &options)
        } else {
            run_costs(merged, &options)
        };
        part.total = costs.totals.get(&metric).map_or(0.0, |t| t.value);
        part.functions = costs
            .functions
            .iter()
            .filter_map(|(f, c)| Some((f, c.get(&metric)?.get(Kind::SelfCost))))
            .filter(|(_, c)| *c != 0.0)
            .map(|(f, c)| (Name::from(f.as_str()), c))
            .collect();
    }
    parts.into_values().collect()
}

/// The gzipped summary of `key` (an hour or a day) made of `parts`.
pub fn encode(key: &RollupKey, parts: &[HourPart]) -> Vec<u8> {
    let names: BTreeSet<&str> = parts.iter().flat_map(|p| p.functions.iter().map(|(f, _)| &**f)).collect();
    let index: BTreeMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (*n, i as u32)).collect();
    let summary = Summary {
        format: FORMAT,
        service: key.service.clone(),
        profile_type: key.profile_type.clone(),
        start: key.start,
        day: key.day,
        functions: names.iter().map(|n| (*n).to_owned()).collect(),
        parts: parts
            .iter()
            .map(|p| Part {
                hour: p.hour,
                version: p.version.clone(),
                zone: p.zone.clone(),
                windows: p
                    .windows
                    .iter()
                    .map(|w| Window {
                        start: w.start,
                        instance: w.instance.clone(),
                        seconds: w.seconds,
                        total: w.total,
                    })
                    .collect(),
                total: p.total,
                function: p.functions.iter().map(|(f, _)| index[&**f]).collect(),
                self_cost: p.functions.iter().map(|(_, c)| *c).collect(),
            })
            .collect(),
    };
    profile::gzip(&summary.encode_to_vec())
}

/// The parts of the summary read from the object of `key`, checked to be that one.
pub fn decode_for(bytes: &[u8], key: &RollupKey) -> Result<Vec<HourPart>, RollupError> {
    let plain = profile::gunzip(bytes, MAX_INFLATED)?;
    let s = Summary::decode(&plain[..]).map_err(DecodeError::Protobuf)?;
    if s.format != FORMAT {
        return Err(RollupError::Format { found: s.format });
    }
    rollup::check_key(&s.service, &s.profile_type, s.start, s.day, key)?;
    // One name shared by every part that names it.
    let names: Vec<Name> = s.functions.iter().map(|n| Name::from(n.as_str())).collect();
    let mut parts = Vec::with_capacity(s.parts.len());
    for p in s.parts {
        if p.function.len() != p.self_cost.len() {
            return Err(RollupError::Mismatch("its function columns differ in length".into()));
        }
        let mut functions = Vec::with_capacity(p.function.len());
        for (&f, &c) in p.function.iter().zip(&p.self_cost) {
            let name = names
                .get(f as usize)
                .ok_or_else(|| RollupError::Mismatch(format!("function {f} of {} it names", names.len())))?;
            functions.push((name.clone(), c));
        }
        parts.push(HourPart {
            service: s.service.clone(),
            hour: p.hour,
            version: p.version,
            zone: p.zone,
            windows: p
                .windows
                .into_iter()
                .map(|w| WindowPart {
                    start: w.start,
                    instance: w.instance,
                    seconds: w.seconds,
                    total: w.total,
                })
                .collect(),
            total: p.total,
            functions,
        });
    }
    Ok(parts)
}

/// Whether `selection` is answered from the summaries: it selects by time, version and zone only.
fn summaries_answer(selection: &Selection) -> bool {
    !selection.reads_sample_labels()
        && selection.labels.iter().all(|(k, _)| k == LABEL_KEYS[0] || k == LABEL_KEYS[1])
}

/// What reading the summaries took: objects of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// Summaries read.
    pub summaries: usize,
    /// Rollups read for their stacks (hours without a summary).
    pub rollups: usize,
    /// Windows read one by one (no rollup covers them yet).
    pub windows: usize,
}

/// The fleet's `measure` over `selection` (its `types` are set to the measure's), ranked over
/// the selection's span (`now` ends one without `until`), with what the reading skipped and what
/// it read. `cancel`, when set, stops the reading.
pub fn read(
    store: &Store,
    selection: &Selection,
    measure: Measure,
    cancel: Option<Arc<AtomicBool>>,
    now: DateTime<Utc>,
) -> Result<(Fleet, Vec<String>, Reads), StoreError> {
    let selection = Selection { types: vec![measure.profile_type().to_owned()], ..selection.clone() };
    let since = selection.since.unwrap_or(now).timestamp();
    let until = selection.until.unwrap_or(now).timestamp();
    let want = Want {
        costs: true,
        fold_library: measure.fold_library(),
        every_window: true,
        cancel,
        ..Want::default()
    };
    let mut reads = Reads::default();
    if !summaries_answer(&selection) {
        let (observations, warnings) = load::load_all(store, &selection, &want, now)?;
        reads.windows = observations.len();
        let refs: Vec<_> = observations.iter().collect();
        return Ok((top::rank(&refs, measure, since, until), warnings, reads));
    }
    let services = match &selection.service {
        Some(s) => vec![s.clone()],
        None => store.production_services()?,
    };
    let wanted = |k: &str| -> Vec<&str> {
        selection.labels.iter().filter(|(lk, _)| lk == k).map(|(_, v)| v.as_str()).collect()
    };
    let (versions, zones) = (wanted("version"), wanted("zone"));
    // Services are read a few at a time (each is a handful of requests that wait on the store),
    // and each is ranked as soon as it is read: one service's hours are in memory at once.
    let read_one = |service: &String| -> Result<(top::ServiceRank, Vec<String>, Reads), StoreError> {
        let (mut warnings, mut reads) = (Vec::new(), Reads::default());
        if !store.production_types(service)?.iter().any(|t| t == measure.profile_type()) {
            return Ok((top::ServiceRank::default(), warnings, reads));
        }
        let mut parts =
            read_service(store, service, &selection, measure, &want, now, &mut warnings, &mut reads)?;
        parts.retain(|p| {
            (versions.is_empty() || versions.contains(&p.version.as_str()))
                && (zones.is_empty() || zones.contains(&p.zone.as_str()))
        });
        Ok((top::rank_service(service, &parts, measure, since, until), warnings, reads))
    };
    let mut results = Vec::new();
    for chunk in services.chunks(SERVICES_AT_ONCE) {
        results.extend(std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|service| s.spawn(|| read_one(service))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect::<Vec<_>>()
        }));
    }
    let (mut ranks, mut warnings) = (Vec::new(), Vec::new());
    for r in results {
        let (rank, w, r) = r?;
        ranks.push(rank);
        warnings.extend(w);
        reads.summaries += r.summaries;
        reads.rollups += r.rollups;
        reads.windows += r.windows;
    }
    Ok((top::assemble(ranks, measure, since, until), warnings, reads))
}

/// One service's hour parts over the selection's span, read by known names: a request per closed
/// day (its summary); for the other days (today, a day without a summary) a listing of its
/// rollups, a request per hour summary listed (or per rollup without one, written before
/// summaries existed) and a listing of the windows from the last one a summary covers (those
/// since the last compaction).
#[allow(clippy::too_many_arguments)]
fn read_service(
    store: &Store,
    service: &str,
    selection: &Selection,
    measure: Measure,
    want: &Want,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
    reads: &mut Reads,
) -> Result<Vec<HourPart>, StoreError> {
    let ty = measure.profile_type();
    let since = selection.since.map_or(i64::MIN, |t| t.timestamp());
    let until = selection.until.unwrap_or(now).timestamp();
    let overlaps = |k: &RollupKey| k.end() > since && k.start <= until;
    // The span's days: each one by name when the span is given and not long (no listing), else
    // the days that have windows or rollups.
    let last = until.min(now.timestamp());
    let mut days: Vec<i64> = if since != i64::MIN && last - since <= MAX_NAMED_DAYS * 86_400 {
        let first = RollupKey::at(service, ty, since, true).start;
        (0..).map(|d| first + d * 86_400).take_while(|&d| d <= last).collect()
    } else {
        store
            .window_days(service, ty)?
            .into_iter()
            .chain(store.rollup_days(service, ty)?)
            .filter_map(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
            .filter_map(|d| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()))
            .filter(|&s| overlaps(&RollupKey::at(service, ty, s, true)))
            .collect()
    };
    days.sort_unstable();
    days.dedup();
    let mut parts = Vec::new();
    // Closed days: their summaries.
    let closed: Vec<RollupKey> = days
        .iter()
        .map(|&d| RollupKey::at(service, ty, d, true))
        .filter(|k| k.end() + rollup::DAY_GRACE <= now.timestamp())
        .collect();
    let mut by_hours: Vec<i64> = Vec::new();
    for (key, read) in closed.iter().zip(get_summaries(store, &closed, want)?) {
        match read {
            Ok(p) => {
                reads.summaries += 1;
                parts.extend(p);
            }
            Err(None) => by_hours.push(key.start),
            Err(Some(why)) => {
                warnings.push(format!(
                    "skipped fleet summary {}: {why}; reading its hours instead",
                    key.fleet_path()
                ));
                by_hours.push(key.start);
            }
        }
    }
    by_hours.extend(days.iter().copied().filter(|d| !closed.iter().any(|k| k.start == *d)));
    // The other days: what their listing has, the hours' summaries or, for an hour rolled up
    // before summaries existed, its rollup.
    let (mut hours, mut from_rollups) = (Vec::new(), Vec::new());
    for &day in &by_hours {
        let listed = store.list_rollups_on(service, ty, &day_of(day))?;
        for o in &listed {
            if let RollupObject::Rollup(k) = o
                && !k.day
                && overlaps(k)
            {
                if listed.contains(&RollupObject::Fleet(k.clone())) {
                    hours.push(k.clone());
                } else {
                    from_rollups.push(k.clone());
                }
            }
        }
    }
    for (key, read) in hours.iter().zip(get_summaries(store, &hours, want)?) {
        match read {
            Ok(p) => {
                reads.summaries += 1;
                parts.extend(p);
            }
            Err(why) => {
                let why = why.unwrap_or_else(|| "it is gone (deleted since it was listed)".to_owned());
                warnings.push(format!(
                    "skipped fleet summary {}: {why}; reading its rollup instead",
                    key.fleet_path()
                ));
                from_rollups.push(key.clone());
            }
        }
    }
    let mut read = load::Loaded::default();
    let rollups =
        load::read_rollups(store, &from_rollups, &Want { stacks: true, ..want.clone() }, &mut read)?;
    warnings.append(&mut read.warnings);
    // Days whose windows are listed from the start (an hour could not be read), the others from
    // the last window a summary or rollup covers.
    let mut whole_days: BTreeSet<i64> = BTreeSet::new();
    let mut stacks = Vec::new();
    for (key, r) in from_rollups.iter().zip(rollups) {
        match r {
            Some(r) => stacks.push(r),
            None => {
                whole_days.insert(RollupKey::at(service, ty, key.start, true).start);
            }
        }
    }
    reads.rollups += stacks.len();
    parts.extend(
        load::par_map(stacks, |(r, merged)| parts_of_rollup(&r, merged.as_ref(), measure))
            .into_iter()
            .flatten(),
    );
    // Windows no summary or rollup covers: on the days read by hours.
    let covered: BTreeSet<(i64, &str, &str, &str)> = parts
        .iter()
        .flat_map(|p| {
            p.windows.iter().map(move |w| (w.start, p.version.as_str(), p.zone.as_str(), w.instance.as_str()))
        })
        .collect();
    let mut raw: Vec<WindowKey> = Vec::new();
    for &day in &by_hours {
        let end = day + 86_400;
        let last = covered.iter().map(|c| c.0).filter(|&s| s >= day && s < end).max();
        let from = match last {
            Some(last) if !whole_days.contains(&day) => last,
            _ => day,
        };
        let (keys, _) = store.list_windows_since(service, ty, &day_of(day), from)?;
        raw.extend(keys.into_iter().filter(|k| {
            selection.matches(k)
                && !covered.contains(&(
                    k.start,
                    k.deployment.version.as_str(),
                    k.deployment.zone.as_str(),
                    k.instance.as_str(),
                ))
        }));
    }
    drop(covered);
    let observations = load::observe_windows(store, &raw, want, warnings)?;
    reads.windows += observations.len();
    let refs: Vec<_> = observations.iter().collect();
    parts.extend(top::parts_of(&refs, measure));
    Ok(parts)
}

/// A summary read: its parts, or `None` for one that is not there, `Some(why)` for one that
/// cannot be read.
type SummaryRead = Result<Vec<HourPart>, Option<String>>;

/// The summaries of `keys`, each read and decoded: `Err(None)` for one that is not there,
/// `Err(Some(why))` for one that cannot be read.
fn get_summaries(store: &Store, keys: &[RollupKey], want: &Want) -> Result<Vec<SummaryRead>, StoreError> {
    want.check(store)?;
    let paths: Vec<String> = keys.iter().map(RollupKey::fleet_path).collect();
    let read = store.get_production_objects(&paths)?;
    let jobs: Vec<(&RollupKey, Option<Vec<u8>>)> = keys.iter().zip(read).collect();
    Ok(load::par_map(jobs, |(key, bytes)| match bytes {
        None => Err(None),
        Some(b) => decode_for(&b, key).map_err(|e| Some(e.to_string())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prod::compact::{CompactOptions, compact};
    use crate::prod::select::parse_labels;
    use crate::profile::test_support::synth;
    use crate::store::{Deployment, StoreLocation};

    const DAY: i64 = 1_764_547_200; // 2025-12-01T00:00:00Z

    /// A 10 s window of `instance` (version 1.`minor`) using `cores`, 60% of it in `app::parse`
    /// and 10% in std's `from_utf8` under it.
    fn put(store: &Store, service: &str, minor: u32, instance: &str, start: i64, cores: f64) {
        let ns = (cores * 10e9) as i64;
        let mut p = synth(&[
            (&["main", "app::parse"], ns * 6 / 10, 0),
            (&["main", "app::parse", "core::str::from_utf8"], ns / 10, 0),
            (&["main", "app::render"], ns * 3 / 10, 0),
        ])
        .project(&["samples", "cpu"], "cpu");
        p.duration_nanos = 10_000_000_000;
        let k = WindowKey {
            deployment: Deployment {
                service: service.into(),
                version: format!("1.{minor}"),
                zone: "eu".into(),
            },
            profile_type: "cpu".into(),
            start,
            instance: instance.into(),
        };
        p.label_samples(&[
            ("service", service),
            ("version", &k.deployment.version),
            ("zone", "eu"),
            ("instance", instance),
            ("type", "cpu"),
        ]);
        store.put_window(&k, profile::encode_to_vec(&p)).unwrap();
    }

    /// Two days of `api` (three replicas of 0.5 core, version 1.1 from the second day) and
    /// `batch` (one replica of 2 cores), a window a minute each, taken in turn.
    fn fill(store: &Store) {
        fill_minutes(store, 0..2 * 1_440);
    }

    fn fill_minutes(store: &Store, minutes: std::ops::Range<i64>) {
        for minute in minutes {
            let start = DAY + minute * 60;
            let minor = u32::from(minute >= 1_440);
            put(store, "api", minor, ["a", "b", "c"][minute as usize % 3], start, 0.5);
            put(store, "batch", 0, "x", start, 2.0);
        }
    }

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    fn span(since: i64, until: i64) -> Selection {
        Selection { since: Some(at(since)), until: Some(at(until)), ..Selection::default() }
    }

    /// The fleet as the windows read one by one give it.
    fn from_windows(store: &Store, selection: &Selection, now: i64) -> Fleet {
        let want = Want { costs: true, every_window: true, ..Want::default() };
        let sel = Selection { types: vec!["cpu".into()], ..selection.clone() };
        let (obs, _) = load::load_all(store, &sel, &want, at(now)).unwrap();
        let refs: Vec<_> = obs.iter().collect();
        top::rank(
            &refs,
            Measure::Cpu,
            sel.since.unwrap().timestamp(),
            sel.until.unwrap_or(at(now)).timestamp(),
        )
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    fn same(a: &Fleet, b: &Fleet) {
        assert_eq!(a.windows, b.windows);
        for (x, y) in a.services.iter().zip(&b.services) {
            assert_eq!((&x.service, x.windows), (&y.service, y.windows));
            assert!(near(x.value, y.value) && near(x.instances, y.instances), "{x:?} {y:?}");
        }
        let names = |f: &Fleet| f.functions.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
        for (x, y) in a.functions.iter().zip(&b.functions) {
            assert!(near(x.value, y.value), "{x:?} {y:?}");
        }
    }

    #[test]
    fn summaries_give_what_every_window_gives_and_take_the_place_of_the_windows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        fill(&store);
        let now = DAY + 2 * 86_400 + 600;
        let whole = span(DAY, DAY + 2 * 86_400 - 1);
        let truth = from_windows(&store, &whole, now);
        // Known answers: api 1.5 cores, batch 2 (covered 3,550 s of each hour).
        let api = truth.services.iter().find(|s| s.service == "api").unwrap();
        assert!((api.level - 1.5).abs() < 1e-6 && api.instances == 3.0, "{api:?}");
        assert_eq!(truth.functions[0].name, "app::parse");

        // Before compaction, the windows are read.
        let (before, _, reads) = read(&store, &whole, Measure::Cpu, None, at(now)).unwrap();
        assert_eq!(reads, Reads { windows: 4 * 1_440, ..Reads::default() });
        same(&before, &truth);

        // After it (which folds library frames in the rollups' own costs), two day summaries a
        // service and no window; std's `from_utf8` is still its own function for CPU.
        let opts =
            CompactOptions { service: None, rescan_days: 2, full: false, fold_library: true, now: at(now) };
        compact(&store, &opts, &mut |_| {}).unwrap();
        let (after, warnings, reads) = read(&store, &whole, Measure::Cpu, None, at(now)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(reads, Reads { summaries: 4, ..Reads::default() });
        same(&after, &truth);
        assert!(after.functions.iter().any(|f| f.name == "core::str::from_utf8"));

        // A span that starts and ends inside hours: exact in its windows and replicas, the edge
        // hours' functions in the whole hour's mix (the same here).
        let odd = span(DAY + 5_430, DAY + 86_400 + 40_000);
        let (fleet, _, reads) = read(&store, &odd, Measure::Cpu, None, at(now)).unwrap();
        assert!(reads.summaries >= 2 && reads.windows == 0, "{reads:?}");
        same(&fleet, &from_windows(&store, &odd, now));

        // By version: a filter on the parts.
        let v11 = Selection { labels: parse_labels("version=1.1").unwrap(), ..whole.clone() };
        let (fleet, _, reads) = read(&store, &v11, Measure::Cpu, None, at(now)).unwrap();
        assert_eq!(reads.windows, 0);
        same(&fleet, &from_windows(&store, &v11, now));
        assert_eq!(fleet.services.iter().find(|s| s.service == "api").unwrap().windows, 1_440);

        // By replica: every selected window is read, as summaries do not split by replica.
        let b = Selection { labels: parse_labels("instance=b").unwrap(), ..whole.clone() };
        let (fleet, _, reads) = read(&store, &b, Measure::Cpu, None, at(now)).unwrap();
        assert_eq!((reads.summaries, reads.windows), (0, 960));
        same(&fleet, &from_windows(&store, &b, now));
    }

    #[test]
    fn hours_without_a_summary_are_read_from_their_rollups_and_new_windows_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
        // Compacted during the second day: its hours have hour summaries, no day one yet.
        fill_minutes(&store, 0..1_440 + 121);
        let now = DAY + 86_400 + 7_200 + 30;
        let opts =
            CompactOptions { service: None, rescan_days: 2, full: false, fold_library: false, now: at(now) };
        compact(&store, &opts, &mut |_| {}).unwrap();
        fill_minutes(&store, 1_440 + 121..2 * 1_440);
        let whole = span(DAY, DAY + 2 * 86_400 - 1);
        let later = DAY + 2 * 86_400 + 600;
        let truth = from_windows(&store, &whole, later);
        let (fleet, _, reads) = read(&store, &whole, Measure::Cpu, None, at(later)).unwrap();
        // Day one's summary, the second day's first three hours (the third cut short), and
        // the windows since.
        assert_eq!(reads.summaries, 2 * (1 + 3), "{reads:?}");
        assert_eq!(reads.windows, 2 * (1_440 - 121), "{reads:?}");
        same(&fleet, &truth);

        // A store rolled up before summaries existed: the hours' rollups are read.
        let dir2 = tempfile::tempdir().unwrap();
        let old = Store::open(&StoreLocation::Dir(dir2.path().into())).unwrap();
        fill(&old);
        let opts = CompactOptions { now: at(later), ..opts };
        compact(&old, &opts, &mut |_| {}).unwrap();
        let summaries: Vec<String> = ["api", "batch"]
            .iter()
            .flat_map(|s| old.list_rollups(s, "cpu").unwrap().0)
            .filter_map(|(o, _)| match o {
                RollupObject::Fleet(k) => Some(k.fleet_path()),
                _ => None,
            })
            .collect();
        assert_eq!(summaries.len(), 2 * (48 + 2));
        old.delete_rollup_objects(&summaries).unwrap();
        let (fleet, _, reads) = read(&old, &whole, Measure::Cpu, None, at(later)).unwrap();
        assert_eq!(reads, Reads { rollups: 2 * 48, ..Reads::default() });
        same(&fleet, &truth);
        // A compaction writes them again (`--full` for days older than its rescan).
        let full = CompactOptions { full: true, ..opts };
        compact(&old, &full, &mut |_| {}).unwrap();
        let (_, _, reads) = read(&old, &whole, Measure::Cpu, None, at(later)).unwrap();
        assert_eq!(reads, Reads { summaries: 4, ..Reads::default() });

        // A corrupt day summary: its hours' summaries are read instead, with a warning.
        let day = RollupKey::at("api", "cpu", DAY, true);
        old.put_rollup_object(&day.fleet_path(), b"not a summary".to_vec()).unwrap();
        let (fleet, warnings, reads) = read(&old, &whole, Measure::Cpu, None, at(later)).unwrap();
        assert!(warnings.iter().any(|w| w.contains("day.fleet.pb.gz")), "{warnings:?}");
        assert_eq!(reads, Reads { summaries: 3 + 24, ..Reads::default() });
        same(&fleet, &truth);
    }
}
