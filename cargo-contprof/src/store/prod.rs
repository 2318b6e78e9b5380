//! Production profiles in the store: the windows that the continuous agent uploads, and the
//! leases through which the replicas of a deployment share one window per period.
//!
//! ```text
//! prod/leases/<service>/<version>/<zone>/<start>                        lease of one window (body: the instance)
//! prod/windows/<service>/<type>/<yyyy-mm-dd>/<start>_<version>_<zone>_<instance>.pb.gz
//! ```
//!
//! `<start>` is the window's start in seconds since the epoch (UTC), `<yyyy-mm-dd>` its day, so
//! that a time span is listed by day without reading objects. Every name is escaped to
//! letters, digits, `.` and `-`, other bytes as `+XX` (hex), so that `_` and `/` in a version or
//! an instance cannot break the layout. A window object is written whole by one PUT (or a
//! rename on disk): a half-written one is never visible.

use chrono::{DateTime, Utc};

use super::Store;
use super::backend::Create;
use super::error::StoreError;

const LEASES: &str = "prod/leases";
const WINDOWS: &str = "prod/windows";

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn unescape(s: &str) -> Option<String> {
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
        let day = DateTime::<Utc>::from_timestamp(self.start, 0).unwrap_or_default().format("%Y-%m-%d");
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

/// What [`Store::gc_production`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductionGc {
    /// Window objects deleted.
    pub windows: usize,
    /// Leases deleted.
    pub leases: usize,
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
        if !dry_run {
            self.backend.delete_many(&old)?;
            self.backend.delete_many(&leases)?;
        }
        Ok(ProductionGc { windows: old.len(), leases: leases.len() })
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
