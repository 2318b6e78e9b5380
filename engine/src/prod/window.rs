//! One recorded window → one labelled profile per profile type, ready to upload.
//!
//! The program's own labels (`contprof::labels`, `tracing` spans) stay sample labels of each
//! profile; they never name a stored object. The window's labels (deployment, instance, type)
//! replace a program label of the same key.

use std::path::Path;

use contprof_protocol::service::ProfileType;

use crate::errors::Result;
use crate::profile::{self, BuildOptions, Profile};
use crate::store::{Deployment, WindowKey};
use crate::symbolize::Symbolizer;

/// Who recorded a window, for its labels.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Service, version and zone.
    pub deployment: Deployment,
    /// The replica.
    pub instance: String,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
}

/// The sample types of each profile type (the agent's [`ProfileType`] names them), and the
/// default one.
pub fn sample_types(profile_type: &str) -> Option<(&'static [&'static str], &'static str)> {
    Some(match ProfileType::from_name(profile_type)? {
        ProfileType::Cpu => (&["samples", "cpu"], "cpu"),
        ProfileType::Alloc => (&["alloc_objects", "alloc_space"], "alloc_space"),
        ProfileType::Heap => (&["inuse_objects", "inuse_space"], "inuse_space"),
        ProfileType::Threads => (&[profile::THREADS_TYPE.0], profile::THREADS_TYPE.0),
        ProfileType::Contention => (
            &[profile::CONTENTION_TYPES[0].0, profile::CONTENTION_TYPES[1].0],
            profile::CONTENTION_TYPES[1].0,
        ),
        ProfileType::Wall => (&[profile::WALL_TYPE.0], profile::WALL_TYPE.0),
        _ => return None,
    })
}

/// The error for a profile type that is none of [`ProfileType::ALL`].
pub fn unknown_type(flag: &'static str, name: &str) -> crate::errors::Error {
    crate::errors::Error::InvalidArgument {
        flag,
        message: format!("`{name}` is not a profile type: {}", ProfileType::NAMES),
    }
}

/// A window's profiles, one per requested type, gzipped, with their keys.
pub struct Window {
    /// `(key, gzipped pprof)` per profile type.
    pub profiles: Vec<(WindowKey, Vec<u8>)>,
    /// Problems worth a line on the service's stderr.
    pub warnings: Vec<String>,
}

/// Builds the profiles of the raw window file `path` (symbolized with `symbolizer`, kept across
/// windows so that each binary is read once). `start` is the window's scheduled start (seconds
/// since the epoch), which names it in the store.
pub fn build(
    path: &Path,
    start: i64,
    types: &[String],
    origin: &Origin,
    symbolizer: &mut Symbolizer,
) -> Result<Window> {
    let bytes = std::fs::read(path).map_err(|e| crate::errors::Error::io("could not read", path, e))?;
    let built = crate::record::build_from_raw(&bytes, path, &BuildOptions::default(), symbolizer)?;
    let full = built.profile;
    let build_id =
        full.mapping.iter().map(|m| full.str(m.build_id)).find(|b| !b.is_empty()).unwrap_or("").to_owned();
    let end_ns = full.time_nanos.saturating_add(full.duration_nanos);
    let d = &origin.deployment;
    let mut profiles = Vec::new();
    for ty in types {
        let Some((sample_types, default)) = sample_types(ty) else { continue };
        let mut p: Profile = full.project(sample_types, default);
        let mut labels: Vec<(&str, &str)> = vec![
            ("service", &d.service),
            ("version", &d.version),
            ("zone", &d.zone),
            ("instance", &origin.instance),
            ("type", ty),
        ];
        labels.extend(origin.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        p.label_samples(&labels);
        let window_start = full.time_nanos.to_string();
        let window_end = end_ns.to_string();
        for (k, v) in labels.iter().copied().chain([
            ("window_start", window_start.as_str()),
            ("window_end", window_end.as_str()),
            ("build_id", build_id.as_str()),
        ]) {
            p.add_comment(&format!("contprof.{k}={v}"));
        }
        let key = WindowKey {
            deployment: d.clone(),
            profile_type: ty.clone(),
            start,
            instance: origin.instance.clone(),
        };
        profiles.push((key, profile::encode_to_vec(&p)));
    }
    Ok(Window { profiles, warnings: built.warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::RawWriter;
    use contprof_protocol::format::{ClockKind, EndRecord, Header};

    #[inline(never)]
    fn window_probe(x: u64) -> u64 {
        std::hint::black_box(x.wrapping_mul(3))
    }

    /// Regression guard for labels in production: a window's CPU profile keeps the program's
    /// label sets as sample labels next to the window's own, and a program label named like a
    /// window label gives way to it.
    #[test]
    fn program_labels_stay_sample_labels_of_each_window_profile() {
        let header = Header {
            magic: [0; 8],
            version: 0,
            header_len: 0,
            pid: 1,
            frequency_hz: 100,
            clock: ClockKind::ThreadCpuTimer as u32,
            alloc_mode: 0,
            alloc_interval: 0,
            start_unix_ns: 1_700_000_000_000_000_000,
            contention_rate_ns: 0,
            wall_period_ns: 0,
        };
        let pc = window_probe as *const () as u64 + 4;
        let mut w = RawWriter::new(header);
        w.maps(&std::fs::read_to_string("/proc/self/maps").unwrap())
            .label_set(1, &[("endpoint", "/search"), ("version", "forged")])
            .labels(1)
            .cpu_sample(5, &[pc])
            .cpu_sample(5, &[pc])
            .work(1, 5)
            .work(1, 2)
            .work(0, 3)
            .end(EndRecord { cpu_time_ns: 20_000_000, samples: 2, ..Default::default() });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("window.raw");
        std::fs::write(&path, w.bytes()).unwrap();
        let origin = Origin {
            deployment: Deployment { service: "api".into(), version: "1.2".into(), zone: "eu".into() },
            instance: "i-1".into(),
            labels: Vec::new(),
        };
        let window = build(&path, 1_700_000_000, &["cpu".into()], &origin, &mut Symbolizer::new()).unwrap();
        let (key, bytes) = &window.profiles[0];
        assert!(!key.path().contains("search"), "{}", key.path());
        let p = crate::profile::decode(bytes).unwrap();
        let labelled: Vec<_> =
            p.sample.iter().filter(|s| p.label_str(s, "endpoint") == Some("/search")).collect();
        assert_eq!(labelled.len(), 1, "{:?}", p.sample);
        assert_eq!(p.label_str(labelled[0], "version"), Some("1.2"));
        assert_eq!(labelled[0].label.iter().filter(|l| p.str(l.key) == "version").count(), 1);
        assert_eq!(p.label_str(labelled[0], "service"), Some("api"));
        // The work counted, summed per label set, with the set's pairs as the program made them.
        let work: Vec<&str> = p.comments().into_iter().filter(|c| c.starts_with("work counted: ")).collect();
        assert_eq!(
            work,
            [r#"work counted: 3 {}"#, r#"work counted: 7 {"endpoint":"/search","version":"forged"}"#]
        );
    }
}
