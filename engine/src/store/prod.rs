//! Production profiles in the store: the windows that the continuous agent uploads, and the
//! leases through which the replicas of a deployment share one window per period.
//!
//! ```text
//! prod/leases/<service>/<version>/<zone>/<start>                        lease of one window (body: the instance)
//! prod/windows/<service>/<type>/<yyyy-mm-dd>/<start>_<version>_<zone>_<instance>.pb.gz
//! prod/rollups/<service>/<type>/<yyyy-mm-dd>/<hh>.pb.gz                  one hour's rollup
//! prod/rollups/<service>/<type>/<yyyy-mm-dd>/<hh>.costs-<digest>.pb.gz   its per-window costs
//! prod/rollups/<service>/<type>/<yyyy-mm-dd>/day.pb.gz                   one day's rollup
//! prod/pause/<service>                                                   profiling of a service paused
//! prod/pause/_store                                                      profiling of every service paused
//! prod/debug/<build-id>.debug.gz                                         a binary's debug information
//! prod/verdicts/<service>/<type>/<base version>_<head version>.json      a rollout judged (`prod watch`)
//! ```
//!
//! Rollups are written by compaction (`prod::compact`, format in `prod::rollup`). A rollup's
//! per-window costs live in an object of their own, named by the digest of its bytes and written
//! before the rollup that names it, so that a reader never pairs a rollup with costs it was not
//! built with, and a flame graph is read without them.
//!
//! `<start>` is the window's start in seconds since the epoch (UTC), `<yyyy-mm-dd>` its day, so
//! that a time span is listed by day without reading objects. Every name is escaped to
//! letters, digits, `.` and `-`, other bytes as `+XX` (hex), so that `_` and `/` in a version or
//! an instance cannot break the layout. There is one spelling of each name: a key spelled any
//! other way (`+73vc` for `svc`, lower-case hex) is not one the agent wrote, and is skipped like
//! any foreign object, so that no window is counted twice. A window object is written whole by
//! one PUT (or a rename on disk): a half-written one is never visible.
//!
//! A debug object (`prod symbols add`) is the debug information of a binary that services run
//! stripped, gzip-compressed, under the binary's GNU build id (lowercase hex): the uploaders name
//! the frames of a stripped binary with it (see `prod::uploader`).
//!
//! A pause object (`prod pause`, JSON: [`Pause`]) stops the uploaders of its service, or of
//! every service, from recording windows until it is deleted (`prod resume`); each uploader
//! reads them once per period.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Store;
use super::backend::Create;
use super::error::StoreError;

const LEASES: &str = "prod/leases";
const WINDOWS: &str = "prod/windows";
const ROLLUPS: &str = "prod/rollups";
const PAUSES: &str = "prod/pause";
const DEBUG_FILES: &str = "prod/debug";
const VERDICTS: &str = "prod/verdicts";
/// The pause object of every service: `_` never appears in an escaped name.
const STORE_PAUSE: &str = "_store";

/// Whether `s` is a build id as the store names them: 2 to 128 lowercase hex digits (GNU build ids
/// are 20 bytes of SHA-1 by default; other linkers write 8 to 32 bytes).
pub fn is_build_id(s: &str) -> bool {
    (2..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `_` never appears in an escaped name: it separates the two versions.
fn verdict_path(service: &str, profile_type: &str, base: &str, head: &str) -> String {
    format!("{VERDICTS}/{}/{}/{}_{}.json", escape(service), escape(profile_type), escape(base), escape(head))
}

fn debug_file_path(build_id: &str) -> Result<String, StoreError> {
    if !is_build_id(build_id) {
        return Err(StoreError::InvalidInput(format!(
            "`{build_id}` is not a build id (2 to 128 lowercase hexadecimal digits)"
        )));
    }
    Ok(format!("{DEBUG_FILES}/{build_id}.debug.gz"))
}

/// The outcome of asking for a window's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This replica records the window.
    Won,
    /// Another replica got it first.
    Taken,
    /// The store cannot arbitrate (no conditional create): the caller decides by itself.
    Unsupported,
}

/// Service, version and zone: the unit that shares one window per period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deployment {
    /// The service.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Its zone.
    pub zone: String,
}

/// One uploaded window of one profile type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    /// Whose window.
    pub deployment: Deployment,
    /// `cpu`, `alloc`, `heap` or `threads`.
    pub profile_type: String,
    /// Start, seconds since the epoch.
    pub start: i64,
    /// The replica that recorded it.
    pub instance: String,
}

/// Escapes a name into one path segment of letters, digits, `.` and `-`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        out = out.bytes().map(|b| format!("+{b:02X}")).collect::<String>() + "+";
    }
    out
}

/// The name `s` spells, if `s` is that name's one spelling ([`escape`]'s).
fn unescape(s: &str) -> Option<String> {
    let name = decode(s)?;
    (escape(&name) == s).then_some(name)
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            if i + 1 == b.len() {
                break; // the marker of an escaped empty or dot name
            }
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Deployment {
    fn lease_path(&self, start: i64) -> String {
        format!("{LEASES}/{}/{}/{}/{start}", escape(&self.service), escape(&self.version), escape(&self.zone))
    }
}

impl WindowKey {
    /// The object's path.
    pub fn path(&self) -> String {
        let day = day_of(self.start);
        let d = &self.deployment;
        format!(
            "{WINDOWS}/{}/{}/{day}/{}_{}_{}_{}.pb.gz",
            escape(&d.service),
            escape(&self.profile_type),
            self.start,
            escape(&d.version),
            escape(&d.zone),
            escape(&self.instance)
        )
    }

    /// The key of an object path; `None` for anything the agent does not write.
    pub fn parse(path: &str) -> Option<WindowKey> {
        let rest = path.strip_prefix(WINDOWS)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [service, ty, _day, file] = parts.as_slice() else { return None };
        let fields: Vec<&str> = file.strip_suffix(".pb.gz")?.split('_').collect();
        let [start, version, zone, instance] = fields.as_slice() else { return None };
        Some(WindowKey {
            deployment: Deployment {
                service: unescape(service)?,
                version: unescape(version)?,
                zone: unescape(zone)?,
            },
            profile_type: unescape(ty)?,
            start: start.parse().ok()?,
            instance: unescape(instance)?,
        })
    }
}

/// The day (UTC) of a time in seconds since the epoch, as the store's keys spell it.
pub fn day_of(start: i64) -> String {
    DateTime::<Utc>::from_timestamp(start, 0).unwrap_or_default().format("%Y-%m-%d").to_string()
}

/// The span one rollup covers: an hour of a day, or the whole day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// The service.
    pub service: String,
    /// The profile type.
    pub profile_type: String,
    /// Start of the span, seconds since the epoch (a whole hour or day, UTC).
    pub start: i64,
    /// Whether the span is a day (else an hour).
    pub day: bool,
}

/// A rollup object and when it was written.
pub type ListedRollup = (RollupObject, DateTime<Utc>);

/// An object under the rollups' prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollupObject {
    /// A rollup.
    Rollup(RollupKey),
    /// The per-window costs of a rollup, with their digest.
    Costs(RollupKey, String),
    /// The fleet summary of a rollup (`prod::fleet`).
    Fleet(RollupKey),
}

impl RollupKey {
    /// The hour (or day, with `day`) of `service`'s `profile_type` that holds time `t`.
    pub fn at(service: &str, profile_type: &str, t: i64, day: bool) -> RollupKey {
        let span = if day { 86_400 } else { 3_600 };
        RollupKey {
            service: service.to_owned(),
            profile_type: profile_type.to_owned(),
            start: t.div_euclid(span) * span,
            day,
        }
    }

    /// The end of the span (exclusive), seconds since the epoch.
    pub fn end(&self) -> i64 {
        self.start + if self.day { 86_400 } else { 3_600 }
    }

    fn dir(&self) -> String {
        format!("{ROLLUPS}/{}/{}/{}", escape(&self.service), escape(&self.profile_type), day_of(self.start))
    }

    fn stem(&self) -> String {
        if self.day { "day".to_owned() } else { format!("{:02}", self.start.rem_euclid(86_400) / 3_600) }
    }

    /// The rollup's path.
    pub fn path(&self) -> String {
        format!("{}/{}.pb.gz", self.dir(), self.stem())
    }

    /// The path of its costs object with `digest`.
    pub fn costs_path(&self, digest: &str) -> String {
        format!("{}/{}.costs-{digest}.pb.gz", self.dir(), self.stem())
    }

    /// The path of its fleet summary.
    pub fn fleet_path(&self) -> String {
        format!("{}/{}.fleet.pb.gz", self.dir(), self.stem())
    }
}

impl RollupObject {
    /// What `path` is; `None` for anything compaction does not write.
    pub fn parse(path: &str) -> Option<RollupObject> {
        let rest = path.strip_prefix(ROLLUPS)?.strip_prefix('/')?;
        let [service, ty, day, file] = rest.split('/').collect::<Vec<_>>()[..] else { return None };
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let day_start = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
        let stem = file.strip_suffix(".pb.gz")?;
        let (stem, fleet) = match stem.strip_suffix(".fleet") {
            Some(span) => (span, true),
            None => (stem, false),
        };
        let (span, digest) = match stem.split_once(".costs-") {
            Some((span, digest)) if digest.bytes().all(|b| b.is_ascii_hexdigit()) && !digest.is_empty() => {
                (span, Some(digest))
            }
            Some(_) => return None,
            None => (stem, None),
        };
        let (start, is_day) = match span {
            "day" => (day_start, true),
            hh if hh.len() == 2 => (day_start + hh.parse::<i64>().ok().filter(|h| *h < 24)? * 3_600, false),
            _ => return None,
        };
        let key = RollupKey { service: unescape(service)?, profile_type: unescape(ty)?, start, day: is_day };
        Some(match (digest, fleet) {
            (Some(d), false) if !is_day => RollupObject::Costs(key, d.to_owned()),
            (Some(_), _) => return None,
            (None, true) => RollupObject::Fleet(key),
            (None, false) => RollupObject::Rollup(key),
        })
    }
}

/// An operator's pause of production profiling: of one service, or of the whole store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The service paused; every service when `None`.
    #[serde(default)]
    pub service: Option<String>,
    /// Why, as the operator said it.
    #[serde(default)]
    pub reason: String,
    /// When it was paused.
    pub since: DateTime<Utc>,
    /// Who paused it (`user@host`).
    #[serde(default)]
    pub by: String,
}

impl Pause {
    fn path_of(service: Option<&str>) -> String {
        format!("{PAUSES}/{}", service.map_or_else(|| STORE_PAUSE.to_owned(), escape))
    }

    /// The pause a pause object's bytes say; an object that does not parse still pauses (an
    /// operator put it there), with a reason saying so.
    fn read(service: Option<&str>, bytes: &[u8]) -> Pause {
        serde_json::from_slice::<Pause>(bytes).unwrap_or_else(|e| Pause {
            service: service.map(str::to_owned),
            reason: format!("(the pause object does not parse: {e})"),
            since: DateTime::<Utc>::UNIX_EPOCH,
            by: String::new(),
        })
    }

    /// `<what> since <time> by <who>: <reason>`, for messages.
    pub fn describe(&self) -> String {
        let what = self.service.as_deref().map_or("every service".to_owned(), |s| format!("service {s}"));
        let mut d = format!("{what} since {}", super::rfc3339(self.since));
        if !self.by.is_empty() {
            d.push_str(&format!(" by {}", self.by));
        }
        if !self.reason.is_empty() {
            d.push_str(&format!(": {}", self.reason));
        }
        d
    }
}

/// What [`Store::gc_production`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductionGc {
    /// Window objects deleted.
    pub windows: usize,
    /// Leases deleted.
    pub leases: usize,
    /// Rollup and costs objects deleted.
    pub rollups: usize,
}

impl Store {
    /// Asks for the lease of `deployment`'s window starting at `start`, for `instance`.
    pub fn lease_window(
        &self,
        deployment: &Deployment,
        start: i64,
        instance: &str,
    ) -> Result<Lease, StoreError> {
        self.ensure_initialized()?;
        Ok(match self.backend.create(&deployment.lease_path(start), instance.as_bytes().to_vec())? {
            Create::Made => Lease::Won,
            Create::Exists => Lease::Taken,
            Create::Unsupported => Lease::Unsupported,
        })
    }

    /// Uploads one window's profile (gzipped pprof).
    pub fn put_window(&self, key: &WindowKey, gzipped: Vec<u8>) -> Result<(), StoreError> {
        self.backend.put(&key.path(), gzipped)
    }

    /// Reads one window's profile; `None` when it is gone.
    pub fn get_window(&self, key: &WindowKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.backend.get(&key.path())?.map(|b| b.to_vec()))
    }

    /// The windows stored for `service` (every service when `None`), in no particular order.
    /// Objects under the windows' prefix that the agent did not write are skipped.
    pub fn list_windows(&self, service: Option<&str>) -> Result<Vec<WindowKey>, StoreError> {
        let prefix = match service {
            Some(s) => format!("{WINDOWS}/{}", escape(s)),
            None => WINDOWS.to_owned(),
        };
        Ok(self.backend.list(&prefix)?.iter().filter_map(|l| WindowKey::parse(&l.path)).collect())
    }

    /// The services that have production windows.
    pub fn production_services(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.backend.list_dirs(WINDOWS)?.iter().filter_map(|s| unescape(s)).collect())
    }

    /// The profile types `service` has windows of.
    pub fn production_types(&self, service: &str) -> Result<Vec<String>, StoreError> {
        let dirs = self.backend.list_dirs(&format!("{WINDOWS}/{}", escape(service)))?;
        Ok(dirs.iter().filter_map(|s| unescape(s)).collect())
    }

    /// The days (`yyyy-mm-dd`) on which `service` has windows of `profile_type`.
    pub fn window_days(&self, service: &str, profile_type: &str) -> Result<Vec<String>, StoreError> {
        self.backend.list_dirs(&format!("{WINDOWS}/{}/{}", escape(service), escape(profile_type)))
    }

    /// The windows of `service`'s `profile_type` on `day` (`yyyy-mm-dd`) that started at or after
    /// `start` (window names sort by their start), with the number of objects listed there that
    /// the agent did not write (skipped).
    pub fn list_windows_since(
        &self,
        service: &str,
        profile_type: &str,
        day: &str,
        start: i64,
    ) -> Result<(Vec<WindowKey>, usize), StoreError> {
        let prefix = format!("{WINDOWS}/{}/{}/{day}", escape(service), escape(profile_type));
        // Just before `start`'s names: `<start>_...` sorts after `<start>`.
        let listed = self.backend.list_after(&prefix, &format!("{prefix}/{start}"))?;
        let keys: Vec<WindowKey> = listed.iter().filter_map(|l| WindowKey::parse(&l.path)).collect();
        let foreign = listed.len() - keys.len();
        Ok((keys.into_iter().filter(|k| k.start >= start).collect(), foreign))
    }

    /// [`Store::list_rollups`] of the days from `day` (`yyyy-mm-dd`) on: what a compaction that
    /// rescans the recent days reads, without listing the month before them.
    pub fn list_rollups_from(
        &self,
        service: &str,
        profile_type: &str,
        day: &str,
    ) -> Result<(Vec<ListedRollup>, usize), StoreError> {
        let prefix = format!("{ROLLUPS}/{}/{}", escape(service), escape(profile_type));
        let listed = self.backend.list_after(&prefix, &format!("{prefix}/{day}"))?;
        let objects: Vec<_> =
            listed.iter().filter_map(|l| RollupObject::parse(&l.path).map(|o| (o, l.modified))).collect();
        let foreign = listed.len() - objects.len();
        Ok((objects, foreign))
    }

    /// The days (`yyyy-mm-dd`) that hold rollups of `service`'s `profile_type`.
    pub fn rollup_days(&self, service: &str, profile_type: &str) -> Result<Vec<String>, StoreError> {
        self.backend.list_dirs(&format!("{ROLLUPS}/{}/{}", escape(service), escape(profile_type)))
    }

    /// The rollup objects of `service`'s `profile_type` on `day` (`yyyy-mm-dd`), as
    /// [`Store::list_rollups`] lists them all.
    pub fn list_rollups_on(
        &self,
        service: &str,
        profile_type: &str,
        day: &str,
    ) -> Result<Vec<RollupObject>, StoreError> {
        let listed =
            self.backend.list(&format!("{ROLLUPS}/{}/{}/{day}", escape(service), escape(profile_type)))?;
        Ok(listed.iter().filter_map(|l| RollupObject::parse(&l.path)).collect())
    }

    /// The windows of `service`'s `profile_type` on `day` (`yyyy-mm-dd`), with the number of
    /// objects there that the agent did not write (skipped).
    pub fn list_windows_on(
        &self,
        service: &str,
        profile_type: &str,
        day: &str,
    ) -> Result<(Vec<WindowKey>, usize), StoreError> {
        let listed =
            self.backend.list(&format!("{WINDOWS}/{}/{}/{day}", escape(service), escape(profile_type)))?;
        let keys: Vec<WindowKey> = listed.iter().filter_map(|l| WindowKey::parse(&l.path)).collect();
        let foreign = listed.len() - keys.len();
        Ok((keys, foreign))
    }

    /// The rollup objects of `service`'s `profile_type`, with when each was written, and the
    /// number of objects there that compaction did not write.
    pub fn list_rollups(
        &self,
        service: &str,
        profile_type: &str,
    ) -> Result<(Vec<ListedRollup>, usize), StoreError> {
        let listed = self.backend.list(&format!("{ROLLUPS}/{}/{}", escape(service), escape(profile_type)))?;
        let objects: Vec<_> =
            listed.iter().filter_map(|l| RollupObject::parse(&l.path).map(|o| (o, l.modified))).collect();
        let foreign = listed.len() - objects.len();
        Ok((objects, foreign))
    }

    /// Writes a rollup or costs object (whole, in one put).
    pub fn put_rollup_object(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.backend.put(path, bytes)
    }

    /// Reads production objects (windows, rollups, costs) concurrently; `None` for one that is gone.
    pub fn get_production_objects(&self, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(self.backend.get_many(paths)?.into_iter().map(|b| b.map(|b| b.to_vec())).collect())
    }

    /// Deletes rollup or costs objects.
    pub fn delete_rollup_objects(&self, paths: &[String]) -> Result<(), StoreError> {
        self.backend.delete_many(paths)
    }

    /// Pauses production profiling (of `pause.service`, or of every service): writes its pause
    /// object, replacing an earlier one.
    pub fn pause_production(&self, pause: &Pause) -> Result<(), StoreError> {
        self.ensure_initialized()?;
        let bytes = serde_json::to_vec_pretty(pause).unwrap_or_default();
        self.backend.put(&Pause::path_of(pause.service.as_deref()), bytes)
    }

    /// Resumes production profiling of `service` (of every service when `None`): deletes its
    /// pause object. Returns the pause that was there.
    pub fn resume_production(&self, service: Option<&str>) -> Result<Option<Pause>, StoreError> {
        let path = Pause::path_of(service);
        let Some(bytes) = self.backend.get(&path)? else { return Ok(None) };
        self.backend.delete_many(std::slice::from_ref(&path))?;
        Ok(Some(Pause::read(service, &bytes)))
    }

    /// The pause that holds `service`: its own, else the whole store's; `None` when it runs.
    pub fn production_pause(&self, service: &str) -> Result<Option<Pause>, StoreError> {
        let paths = [Pause::path_of(Some(service)), Pause::path_of(None)];
        let read = self.backend.get_many(&paths)?;
        let [own, all] = [Some(service), None];
        Ok(read.iter().zip([own, all]).find_map(|(b, s)| b.as_ref().map(|b| Pause::read(s, b))))
    }

    /// Stores the debug information (gzip-compressed ELF) of the binary whose build id is
    /// `build_id`, unless the store has it already. Whether it was written.
    pub fn put_debug_file(&self, build_id: &str, gzipped: Vec<u8>) -> Result<bool, StoreError> {
        self.ensure_initialized()?;
        self.backend.put_if_absent(&debug_file_path(build_id)?, gzipped)
    }

    /// The debug information (gzip-compressed ELF) stored for `build_id`, if any.
    pub fn get_debug_file(&self, build_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.backend.get(&debug_file_path(build_id)?)?.map(|b| b.to_vec()))
    }

    /// The build ids the store has debug information for, sorted, with when each was added.
    pub fn list_debug_files(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut ids: Vec<(String, DateTime<Utc>)> = self
            .backend
            .list(DEBUG_FILES)?
            .into_iter()
            .filter_map(|l| {
                let name = l.path.strip_prefix(DEBUG_FILES)?.strip_prefix('/')?.strip_suffix(".debug.gz")?;
                is_build_id(name).then(|| (name.to_owned(), l.modified))
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Stores the verdict (a JSON report) of the rollout of `service` from version `base` to
    /// `head`, judged on `profile_type`, unless one is stored already (another `prod watch` got
    /// there first). Whether it was written.
    pub fn put_rollout_verdict(
        &self,
        (service, profile_type): (&str, &str),
        (base, head): (&str, &str),
        json: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.ensure_initialized()?;
        self.backend.put_if_absent(&verdict_path(service, profile_type, base, head), json)
    }

    /// The stored verdict of a rollout (see [`Store::put_rollout_verdict`]), if any.
    pub fn get_rollout_verdict(
        &self,
        (service, profile_type): (&str, &str),
        (base, head): (&str, &str),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.backend.get(&verdict_path(service, profile_type, base, head))?.map(|b| b.to_vec()))
    }

    /// Every stored rollout verdict (see [`Store::put_rollout_verdict`]), as stored.
    pub fn rollout_verdicts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let paths: Vec<String> = self
            .backend
            .list(VERDICTS)?
            .into_iter()
            .map(|l| l.path)
            .filter(|p| p.ends_with(".json"))
            .collect();
        Ok(self.backend.get_many(&paths)?.into_iter().flatten().map(|b| b.to_vec()).collect())
    }

    /// Every pause in the store: the whole store's first, then by service.
    pub fn production_pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let mut names: Vec<Option<String>> = Vec::new();
        for l in self.backend.list(PAUSES)? {
            let Some(name) = l.path.strip_prefix(PAUSES).and_then(|p| p.strip_prefix('/')) else { continue };
            match name {
                STORE_PAUSE => names.push(None),
                escaped => names.extend(unescape(escaped).map(Some)),
            }
        }
        names.sort();
        let paths: Vec<String> = names.iter().map(|n| Pause::path_of(n.as_deref())).collect();
        let read = self.backend.get_many(&paths)?;
        Ok(names.iter().zip(read).filter_map(|(n, b)| b.map(|b| Pause::read(n.as_deref(), &b))).collect())
    }

    /// Deletes production windows that started before `cutoff`, and leases older than a day
    /// (they only arbitrate the window they name); with `dry_run`, only counts them.
    pub fn gc_production(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<ProductionGc, StoreError> {
        let old: Vec<String> = self
            .backend
            .list(WINDOWS)?
            .into_iter()
            .filter(|l| WindowKey::parse(&l.path).is_some_and(|k| k.start < cutoff.timestamp()))
            .map(|l| l.path)
            .collect();
        let lease_cutoff = now.checked_sub_signed(chrono::Duration::days(1)).unwrap_or(now);
        let leases: Vec<String> = self
            .backend
            .list(LEASES)?
            .into_iter()
            .filter(|l| l.modified < lease_cutoff)
            .map(|l| l.path)
            .collect();
        // A rollup goes when its whole span is older than the cutoff, with its costs.
        let rollups: Vec<String> = self
            .backend
            .list(ROLLUPS)?
            .into_iter()
            .filter(|l| match RollupObject::parse(&l.path) {
                Some(RollupObject::Rollup(k) | RollupObject::Costs(k, _) | RollupObject::Fleet(k)) => {
                    k.end() <= cutoff.timestamp()
                }
                None => false,
            })
            .map(|l| l.path)
            .collect();
        if !dry_run {
            self.backend.delete_many(&old)?;
            self.backend.delete_many(&leases)?;
            self.backend.delete_many(&rollups)?;
            // A local store's emptied directories (object stores have none): a day directory
            // left empty would still be listed as a day with windows. A writer racing into a
            // directory removed here at that instant fails once (a lease: no window that period).
            if let Some(root) = &self.local_root {
                for dir in [WINDOWS, LEASES, ROLLUPS] {
                    super::query::remove_empty_dirs_below(&root.join(dir));
                }
            }
        }
        Ok(ProductionGc { windows: old.len(), leases: leases.len(), rollups: rollups.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_names_with_separators() {
        let key = WindowKey {
            deployment: Deployment {
                service: "api/gw_1".into(),
                version: "1.4.0+build_7".into(),
                zone: "".into(),
            },
            profile_type: "cpu".into(),
            start: 1_764_652_800,
            instance: "host-1_pid 42".into(),
        };
        let path = key.path();
        assert!(path.starts_with("prod/windows/api+2Fgw+5F1/cpu/2025-12-02/1764652800_"), "{path}");
        assert!(!path.contains(' '), "{path}");
        assert_eq!(WindowKey::parse(&path), Some(key));
        assert_eq!(WindowKey::parse("prod/windows/svc/cpu/2025-12-02/notes.txt"), None);
        assert_eq!(WindowKey::parse("prod/windows/svc/cpu/2025-12-02/x_1_2_3.pb.gz"), None);
        assert_eq!(unescape(&escape("..")).as_deref(), Some(".."));
    }

    #[test]
    fn a_name_has_one_spelling_and_others_are_foreign() {
        for name in ["svc", "", ".", "..", "-rc1", "a b", "ü/_+", "1.4.0+build_7"] {
            assert_eq!(unescape(&escape(name)).as_deref(), Some(name), "{name:?}");
        }
        // Spelled by hand: the same bytes, another spelling.
        for spelling in ["+73vc", "sv+63", "api+2fgw", "+2E", "a+", "+2"] {
            assert_eq!(unescape(spelling), None, "{spelling}");
        }
        let listed = WindowKey::parse("prod/windows/+73vc/cpu/2025-12-02/1764652800_1_z_a.pb.gz");
        assert_eq!(listed, None, "a hand-made spelling of svc is not a window of svc");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::StoreLocation::Dir(dir.path().into())).unwrap();
        let key = WindowKey::parse("prod/windows/svc/cpu/2025-12-02/1764652800_1_z_a.pb.gz").unwrap();
        store.put_window(&key, vec![1]).unwrap();
        store.backend.put("prod/windows/+73vc/cpu/2025-12-02/1764652800_1_z_a.pb.gz", vec![1]).unwrap();
        assert_eq!(store.list_windows(Some("svc")).unwrap(), vec![key.clone()]);
        assert_eq!(store.list_windows(None).unwrap(), vec![key], "counted once");
        assert_eq!(store.production_services().unwrap(), vec!["svc".to_owned()]);
    }

    #[test]
    fn gc_leaves_no_empty_day_to_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::StoreLocation::Dir(dir.path().into())).unwrap();
        let now = Utc::now();
        let at = |service: &str, days: i64| WindowKey {
            deployment: Deployment { service: service.into(), version: "1".into(), zone: "z".into() },
            profile_type: "cpu".into(),
            start: (now - chrono::Duration::days(days)).timestamp(),
            instance: "a".into(),
        };
        store.put_window(&at("old", 40), vec![1]).unwrap();
        store.put_window(&at("api", 40), vec![1]).unwrap();
        store.put_window(&at("api", 1), vec![1]).unwrap();
        store.lease_window(&at("old", 40).deployment, 1, "a").unwrap();
        let cutoff = now - chrono::Duration::days(30);
        assert_eq!(store.gc_production(cutoff, now + chrono::Duration::days(2), false).unwrap().windows, 2);
        assert_eq!(
            store.production_services().unwrap(),
            vec!["api".to_owned()],
            "the emptied service is gone"
        );
        assert_eq!(store.window_days("api", "cpu").unwrap(), vec![day_of(at("api", 1).start)]);
        assert!(!dir.path().join("prod/leases/old").exists(), "emptied lease directories go too");
    }

    #[test]
    fn pauses_are_written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::StoreLocation::Dir(dir.path().into())).unwrap();
        assert_eq!(store.production_pause("api").unwrap(), None);
        let since = DateTime::from_timestamp(1_764_652_800, 0).unwrap();
        let api =
            Pause { service: Some("api/v2".into()), reason: "incident 42".into(), since, by: "ops@h".into() };
        store.pause_production(&api).unwrap();
        assert_eq!(store.production_pause("api/v2").unwrap(), Some(api.clone()));
        assert_eq!(store.production_pause("web").unwrap(), None);
        let all = Pause { service: None, reason: String::new(), since, by: String::new() };
        store.pause_production(&all).unwrap();
        assert_eq!(store.production_pause("web").unwrap(), Some(all.clone()));
        assert_eq!(store.production_pause("api/v2").unwrap(), Some(api.clone()), "its own first");
        assert_eq!(store.production_pauses().unwrap(), vec![all.clone(), api.clone()]);
        assert_eq!(store.resume_production(None).unwrap(), Some(all));
        assert_eq!(store.resume_production(None).unwrap(), None);
        assert_eq!(store.production_pause("web").unwrap(), None);
        store.backend.put(&Pause::path_of(Some("web")), b"not json".to_vec()).unwrap();
        let odd = store.production_pause("web").unwrap().expect("an object that does not parse still pauses");
        assert!(odd.reason.contains("does not parse"), "{odd:?}");
        assert!(api.describe().contains("service api/v2 since 2025-12-02"), "{}", api.describe());
    }

    #[test]
    fn leases_are_won_once_and_old_windows_expire_on_a_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::StoreLocation::Dir(dir.path().into())).unwrap();
        let d = Deployment { service: "api".into(), version: "1".into(), zone: "z".into() };
        assert_eq!(store.lease_window(&d, 100, "a").unwrap(), Lease::Won);
        assert_eq!(store.lease_window(&d, 100, "b").unwrap(), Lease::Taken);
        let now = Utc::now();
        let at = |days: i64| WindowKey {
            deployment: d.clone(),
            profile_type: "heap".into(),
            start: (now - chrono::Duration::days(days)).timestamp(),
            instance: "a".into(),
        };
        for days in [40, 31, 29, 0] {
            store.put_window(&at(days), vec![1]).unwrap();
        }
        let cutoff = now - chrono::Duration::days(30);
        let counted = store.gc_production(cutoff, now, true).unwrap();
        assert_eq!(counted.windows, 2);
        assert_eq!(store.list_windows(None).unwrap().len(), 4, "a dry run deletes nothing");
        assert_eq!(store.gc_production(cutoff, now, false).unwrap().windows, 2);
        let mut left: Vec<i64> = store.list_windows(Some("api")).unwrap().iter().map(|k| k.start).collect();
        left.sort();
        assert_eq!(left, vec![at(29).start, at(0).start]);
    }
}
