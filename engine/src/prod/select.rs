//! Selections of production windows: by service, profile type, time span, the labels that the
//! store's keys carry (version, zone, instance) and the custom labels inside the profiles. The
//! first four are answered from a listing, without reading a profile; custom labels from the
//! rollups or the windows' profiles (see `prod::load`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{Deployment, WindowKey};

/// Which windows.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The service (every service when `None`).
    pub service: Option<String>,
    /// Profile types (every type when empty).
    pub types: Vec<String>,
    /// Windows that started at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Windows that started at or before this.
    pub until: Option<DateTime<Utc>>,
    /// `key = value` filters on `version`, `zone`, `instance` and custom labels; several values
    /// of one key are alternatives, different keys must all match.
    pub labels: Vec<(String, String)>,
    /// `key = value` filters on the labels of samples (`contprof::labels`, `tracing` spans): only
    /// the samples that carry them count, and windows with none are left out. Several values of
    /// one key are alternatives, different keys must all match. Rollups hold no per-label costs,
    /// so a selection with these reads its windows.
    pub sample_labels: Vec<(String, String)>,
    /// The stacks must keep their samples' labels (a breakdown by a sample label): the windows
    /// are read, not the rollups, as with [`Selection::sample_labels`].
    pub keep_sample_labels: bool,
}

/// The label keys the store's keys carry.
pub const LABEL_KEYS: [&str; 3] = ["version", "zone", "instance"];

/// Label keys that are not a window's labels, and cannot be selected on.
const NOT_LABELS: [&str; 2] = ["service", "type"];

/// Parses `k=v` (or `k=v,k=v`) label filters.
pub fn parse_labels(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let k = k.trim();
        if k.is_empty() || NOT_LABELS.contains(&k) {
            return Err(format!(
                "`{k}` is not a label to select by (services and types have their own flags)"
            ));
        }
        out.push((k.to_owned(), v.trim().to_owned()));
    }
    if out.is_empty() {
        return Err(format!("`{spec}` selects nothing: give key=value"));
    }
    Ok(out)
}

impl Selection {
    /// Whether `key` is selected.
    pub fn matches(&self, key: &WindowKey) -> bool {
        let d = &key.deployment;
        let value = |k: &str| match k {
            "version" => d.version.as_str(),
            "zone" => d.zone.as_str(),
            _ => key.instance.as_str(),
        };
        let labels_match = LABEL_KEYS.iter().all(|k| {
            let wanted: Vec<&str> =
                self.labels.iter().filter(|(lk, _)| lk == k).map(|(_, v)| v.as_str()).collect();
            wanted.is_empty() || wanted.contains(&value(k))
        });
        self.service.as_ref().is_none_or(|s| *s == d.service)
            && (self.types.is_empty() || self.types.contains(&key.profile_type))
            && self.since.is_none_or(|t| key.start >= t.timestamp())
            && self.until.is_none_or(|t| key.start <= t.timestamp())
            && labels_match
    }

    /// Whether the selection filters on custom labels, which only the profiles know.
    pub fn has_custom_labels(&self) -> bool {
        self.labels.iter().any(|(k, _)| !LABEL_KEYS.contains(&k.as_str()))
    }

    /// Whether a label set passes the selection's filters on the keys it has an opinion about:
    /// `value(k)` gives the set's value of `k`.
    pub fn labels_match<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        crate::profile::labels_match(&self.labels, value)
    }

    /// Whether the windows must be read for their samples' labels (a filter on them, or the
    /// stacks keep them), rather than the rollups, which hold none.
    pub fn reads_sample_labels(&self) -> bool {
        self.keep_sample_labels || !self.sample_labels.is_empty()
    }

    /// Whether a sample passes the sample-label filters: `value(k)` gives the sample's value of `k`.
    pub fn sample_labels_match<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        crate::profile::labels_match(&self.sample_labels, value)
    }

    /// Whether a window with custom `labels` passes the custom-label filters.
    pub fn custom_labels_match(&self, labels: &[(String, String)]) -> bool {
        self.labels.iter().filter(|(k, _)| !LABEL_KEYS.contains(&k.as_str())).all(|(k, _)| {
            let have = labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.as_str());
            self.labels.iter().any(|(lk, v)| lk == k && have == Some(v.as_str()))
        })
    }

    /// The selected windows of `all`, oldest first.
    pub fn apply(&self, all: &[WindowKey]) -> Vec<WindowKey> {
        let mut out: Vec<WindowKey> = all.iter().filter(|k| self.matches(k)).cloned().collect();
        out.sort_by(|a, b| {
            (a.start, &a.profile_type, &a.instance).cmp(&(b.start, &b.profile_type, &b.instance))
        });
        out
    }
}

/// One deployment's windows in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentSummary {
    /// Service, version, zone.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Its zone.
    pub zone: String,
    /// Windows per profile type.
    pub windows: BTreeMap<String, usize>,
    /// Replicas that recorded at least one of them.
    pub instances: Vec<String>,
    /// The first window's start (RFC 3339).
    pub first: String,
    /// The last window's start.
    pub last: String,
}

/// Groups windows by deployment, in order of service, version, zone.
pub fn summarize(windows: &[WindowKey]) -> Vec<DeploymentSummary> {
    let mut by: BTreeMap<&Deployment, Vec<&WindowKey>> = BTreeMap::new();
    for w in windows {
        by.entry(&w.deployment).or_default().push(w);
    }
    let time = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default().to_rfc3339();
    by.into_iter()
        .map(|(d, ws)| {
            let mut types = BTreeMap::new();
            let mut instances: Vec<String> = Vec::new();
            for w in &ws {
                *types.entry(w.profile_type.clone()).or_insert(0) += 1;
                if !instances.contains(&w.instance) {
                    instances.push(w.instance.clone());
                }
            }
            instances.sort();
            let first = ws.iter().map(|w| w.start).min().unwrap_or_default();
            let last = ws.iter().map(|w| w.start).max().unwrap_or_default();
            DeploymentSummary {
                service: d.service.clone(),
                version: d.version.clone(),
                zone: d.zone.clone(),
                windows: types,
                instances,
                first: time(first),
                last: time(last),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: &str, zone: &str, ty: &str, start: i64) -> WindowKey {
        WindowKey {
            deployment: Deployment { service: "api".into(), version: version.into(), zone: zone.into() },
            profile_type: ty.into(),
            start,
            instance: format!("{zone}-1"),
        }
    }

    #[test]
    fn selections_combine_labels_types_and_time() {
        let all = [key("1.3", "eu", "cpu", 100), key("1.4", "eu", "cpu", 200), key("1.4", "us", "heap", 300)];
        let sel = Selection { labels: parse_labels("version=1.4").unwrap(), ..Selection::default() };
        assert_eq!(sel.apply(&all).len(), 2);
        let sel = Selection {
            labels: parse_labels("version=1.4,zone=eu").unwrap(),
            types: vec!["cpu".into()],
            ..Selection::default()
        };
        assert_eq!(sel.apply(&all), vec![all[1].clone()]);
        let sel = Selection { since: DateTime::from_timestamp(150, 0), ..Selection::default() };
        assert_eq!(sel.apply(&all).len(), 2);
        assert!(parse_labels("type=cpu").is_err());
        assert!(parse_labels("version").is_err());
        let sel = Selection { labels: parse_labels("team=search,zone=eu").unwrap(), ..Selection::default() };
        assert!(sel.has_custom_labels());
        assert_eq!(sel.apply(&all).len(), 2, "custom labels are not in the keys");
        assert!(sel.custom_labels_match(&[("team".into(), "search".into())]));
        assert!(!sel.custom_labels_match(&[("team".into(), "ads".into())]));
        assert!(!sel.custom_labels_match(&[]));
        let listed = summarize(&all);
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[1].windows.get("cpu"), Some(&1));
    }

    #[test]
    fn sample_labels_are_alternatives_per_key_and_all_keys_must_match() {
        let sel = Selection {
            sample_labels: parse_labels("endpoint=/a,endpoint=/b,tenant=t1").unwrap(),
            ..Selection::default()
        };
        let sample = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v)
        };
        assert!(sel.sample_labels_match(sample(&[("endpoint", "/b"), ("tenant", "t1")])));
        assert!(!sel.sample_labels_match(sample(&[("endpoint", "/c"), ("tenant", "t1")])));
        assert!(!sel.sample_labels_match(sample(&[("endpoint", "/a")])), "a key the sample lacks");
        assert!(Selection::default().sample_labels_match(sample(&[])), "no filter keeps every sample");
    }
}
