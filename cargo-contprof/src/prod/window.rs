//! One recorded window → one labelled profile per profile type, ready to upload.

use std::path::Path;

use contprof::service::ProfileType;

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
