//! Rollups: the production windows of one service and profile type in one hour or one day,
//! pre-merged so that a query over a day or a month reads tens of objects instead of thousands.
//!
//! A rollup ([`Rollup`], gzipped protobuf) holds:
//! - the windows it covers, each with its labels and per-metric totals (the timeline, and what a
//!   reader subtracts from a raw listing to find windows that arrived later);
//! - the merged stacks of those windows as one pprof profile, whose samples keep the windows'
//!   labels (`version`, `zone`, `instance` and custom ones), so that a selection by label is a
//!   filter on samples. Thread ids are dropped; thread names are kept.
//! - for an hour, the name of its costs object ([`Costs`]): per window, per function, the
//!   costs the statistics compare, exactly what [`run_costs`] gives for the window. A flame graph
//!   never reads them; a comparison reads nothing else.
//!
//! A day's rollup is the merge of its hours' rollups, without costs. The format is written here
//! and parsed here only; [`FORMAT`] is checked on read, and anything else is refused.

use std::collections::BTreeMap;

use contprof_protocol::service::ProfileType;
use prost::Message;
use sha2::Digest;

use crate::compare::{
    AllocRecording, Cost, InputOptions, Metric, MetricTotal, RunCosts, Sampling, run_costs,
};
use crate::profile::{self, DecodeError, Profile};
use crate::store::{Deployment, RollupKey, WindowKey};

/// The version of the format; a rollup of another version is not read (compaction rewrites it).
pub const FORMAT: u32 = 1;

/// A day's rollup is written this long after the day ended, to let its last windows arrive.
pub const DAY_GRACE: i64 = 5 * 60;

/// The largest inflated rollup or costs object read.
const MAX_INFLATED: u64 = 1 << 30;

/// One window as the statistics and the timeline see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The window.
    pub key: WindowKey,
    /// Its custom labels (`k=v` of the agent's `CONTPROF_LABELS`), sorted.
    pub labels: Vec<(String, String)>,
    /// Its costs: totals always; per function only where they were asked for.
    pub costs: RunCosts,
    /// Its length in seconds (the profile's duration); 0 when not known (rollups written before
    /// they kept it, windows read without their profile).
    pub seconds: f64,
}

/// How the costs of a window of `profile_type` are read (the same for raw windows and rollups):
/// at the rates the agent records windows at.
pub fn input_options(profile_type: &str, fold_library: bool) -> InputOptions {
    let ty = ProfileType::from_name(profile_type);
    InputOptions {
        cpu: ty == Some(ProfileType::Cpu),
        alloc: match ty {
            Some(ProfileType::Alloc | ProfileType::Heap) => {
                AllocRecording::Sampled { interval: crate::runner::DEFAULT_ALLOC_INTERVAL }
            }
            _ => AllocRecording::Off,
        },
        contention_rate_ns: (ty == Some(ProfileType::Contention))
            .then_some(contprof_protocol::DEFAULT_CONTENTION_RATE_NS),
        wall_period_ns: (ty == Some(ProfileType::Wall))
            .then_some(contprof_protocol::wall_period_ns(contprof_protocol::DEFAULT_WALL_HZ)),
        fold_library,
    }
}

/// The metric a profile type's timeline, breakdown and comparison show; `None` for `threads`
/// (one instant, not a cost).
pub fn metric_of(profile_type: &str) -> Option<Metric> {
    match ProfileType::from_name(profile_type)? {
        ProfileType::Cpu => Some(Metric::Cpu),
        ProfileType::Alloc => Some(Metric::AllocBytes),
        ProfileType::Heap => Some(Metric::InuseBytes),
        ProfileType::Contention => Some(Metric::Delay),
        ProfileType::Wall => Some(Metric::Wall),
        _ => None,
    }
}

/// The observation of one decoded window profile.
pub fn observe(key: &WindowKey, profile: &Profile, fold_library: bool) -> Observation {
    let mut labels: Vec<(String, String)> = profile
        .comments()
        .iter()
        .filter_map(|c| c.strip_prefix("contprof.")?.split_once('='))
        .filter(|(k, _)| !contprof_protocol::service::RESERVED_LABELS.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    labels.sort();
    Observation {
        key: key.clone(),
        labels,
        costs: run_costs(profile, &input_options(&key.profile_type, fold_library)),
        seconds: profile.duration_nanos.max(0) as f64 / 1e9,
    }
}

/// Sample labels a rollup's stacks do without: thread ids and names (every window has its own
/// ids, so they would keep every window's samples apart, and no view selects by thread), the
/// service and type, which the rollup itself names, and the span and trace ids of the program's
/// requests (one value per request: a rollup would grow with the traffic; a trace is read from
/// its windows). The program's other labels (`contprof::labels`, spans' fields) stay.
pub const NOT_IN_ROLLUPS: [&str; 6] = ["tid", "thread", "service", "type", "span_id", "trace_id"];

/// A window's profile made ready for merging into a rollup: without the labels of
/// `NOT_IN_ROLLUPS` (thread ids and names, service, type) and the window's own comments.
pub fn for_merge(mut p: Profile) -> Profile {
    let drop: Vec<i64> = p
        .string_table
        .iter()
        .enumerate()
        .filter(|(_, s)| NOT_IN_ROLLUPS.contains(&s.as_str()))
        .map(|(i, _)| i as i64)
        .collect();
    if !drop.is_empty() {
        for s in &mut p.sample {
            s.label.retain(|l| !drop.contains(&l.key));
        }
    }
    p.comment.retain(|&c| !p.string_table.get(c as usize).is_some_and(|s| s.starts_with("contprof.")));
    p
}

/// A decoded rollup.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rollup {
    /// [`FORMAT`].
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// The service.
    #[prost(string, tag = "2")]
    pub service: String,
    /// The profile type.
    #[prost(string, tag = "3")]
    pub profile_type: String,
    /// Start of the span, seconds since the epoch.
    #[prost(int64, tag = "4")]
    pub start: i64,
    /// Whether the span is a day (else an hour).
    #[prost(bool, tag = "5")]
    pub day: bool,
    /// Whether library frames were folded into their callers in the costs.
    #[prost(bool, tag = "6")]
    pub fold_library: bool,
    /// The windows covered, oldest first.
    #[prost(message, repeated, tag = "7")]
    pub windows: Vec<WindowSummary>,
    /// The merged stacks: a pprof profile, not compressed (the rollup is); empty when the
    /// windows had no sample.
    #[prost(bytes = "vec", tag = "8")]
    pub profile: Vec<u8>,
    /// The digest naming the costs object (hours); empty for none (days).
    #[prost(string, tag = "9")]
    pub costs: String,
}

/// One covered window.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WindowSummary {
    /// Its version.
    #[prost(string, tag = "1")]
    pub version: String,
    /// Its zone.
    #[prost(string, tag = "2")]
    pub zone: String,
    /// The replica.
    #[prost(string, tag = "3")]
    pub instance: String,
    /// Its start, seconds since the epoch.
    #[prost(int64, tag = "4")]
    pub start: i64,
    /// Custom labels, `k=v`.
    #[prost(string, repeated, tag = "5")]
    pub labels: Vec<String>,
    /// Per-metric totals.
    #[prost(message, repeated, tag = "6")]
    pub totals: Vec<Total>,
    /// Its length in seconds; 0 in rollups written before it was kept.
    #[prost(double, tag = "7")]
    pub seconds: f64,
    /// The units of work the program counted in it (`contprof::labels::count_work`): a
    /// comparison's denominator; absent when it counted none (and in rollups written before it was
    /// kept).
    #[prost(double, optional, tag = "8")]
    pub work: Option<f64>,
}

/// A metric's total over a window.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Total {
    /// The metric, as its position in [`Metric::ALL`].
    #[prost(uint32, tag = "1")]
    pub metric: u32,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Samples behind it; ignored when `exact`.
    #[prost(uint64, tag = "3")]
    pub samples: u64,
    /// Counted exactly rather than sampled.
    #[prost(bool, tag = "4")]
    pub exact: bool,
}

/// The per-window, per-function costs of an hour's rollup.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Costs {
    /// [`FORMAT`].
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// Function names, indexed by [`WindowCosts::function`].
    #[prost(string, repeated, tag = "2")]
    pub functions: Vec<String>,
    /// One entry per window of the rollup, in its order.
    #[prost(message, repeated, tag = "3")]
    pub windows: Vec<WindowCosts>,
}

/// One window's costs, as parallel columns (one entry per function and metric).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WindowCosts {
    /// Index into [`Costs::functions`].
    #[prost(uint32, repeated, tag = "1")]
    pub function: Vec<u32>,
    /// Position in [`Metric::ALL`].
    #[prost(uint32, repeated, tag = "2")]
    pub metric: Vec<u32>,
    /// Self cost.
    #[prost(double, repeated, tag = "3")]
    pub self_cost: Vec<f64>,
    /// Total cost.
    #[prost(double, repeated, tag = "4")]
    pub total_cost: Vec<f64>,
}

/// Why a rollup or costs object cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// Not gzip, too large, or not the protobuf message.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Written by another version of the format.
    #[error("format {found}, this cargo contprof reads format {FORMAT}")]
    Format {
        /// The format found.
        found: u32,
    },
    /// The object does not match its key or its rollup.
    #[error("{0}")]
    Mismatch(String),
}

fn metric_index(m: Metric) -> u32 {
    Metric::ALL.iter().position(|&x| x == m).unwrap_or(0) as u32
}

fn metric_at(i: u32) -> Option<Metric> {
    Metric::ALL.get(i as usize).copied()
}

fn summary(o: &Observation) -> WindowSummary {
    let d = &o.key.deployment;
    WindowSummary {
        version: d.version.clone(),
        zone: d.zone.clone(),
        instance: o.key.instance.clone(),
        start: o.key.start,
        labels: o.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        totals: o
            .costs
            .totals
            .iter()
            .map(|(&m, t)| {
                let (samples, exact) = match t.sampling {
                    Sampling::Exact => (0, true),
                    Sampling::Sampled { samples } => (samples, false),
                };
                Total { metric: metric_index(m), value: t.value, samples, exact }
            })
            .collect(),
        seconds: o.seconds,
        work: o.costs.work,
    }
}

/// A rollup made of `observations` (sorted here) and `merged` stacks, ready to write: the
/// rollup's bytes and, for an hour, its costs object's digest and bytes.
pub struct Encoded {
    /// The gzipped rollup.
    pub rollup: Vec<u8>,
    /// `(digest, gzipped costs)` of an hour.
    pub costs: Option<(String, Vec<u8>)>,
}

/// Encodes the rollup of `key`. `observations` must carry their per-function costs for an hour.
pub fn encode(
    key: &RollupKey,
    fold_library: bool,
    mut observations: Vec<Observation>,
    merged: Option<&Profile>,
) -> Encoded {
    observations.sort_by(|a, b| window_order(&a.key).cmp(&window_order(&b.key)));
    let costs = (!key.day).then(|| {
        let mut names: BTreeMap<&str, u32> = BTreeMap::new();
        for o in &observations {
            for f in o.costs.functions.keys() {
                names.entry(f).or_default();
            }
        }
        for (i, v) in names.values_mut().enumerate() {
            *v = i as u32;
        }
        let windows = observations
            .iter()
            .map(|o| {
                let mut w = WindowCosts::default();
                for (f, metrics) in &o.costs.functions {
                    for (&m, c) in metrics {
                        w.function.push(names[f.as_str()]);
                        w.metric.push(metric_index(m));
                        w.self_cost.push(c.self_);
                        w.total_cost.push(c.total);
                    }
                }
                w
            })
            .collect();
        let costs =
            Costs { format: FORMAT, functions: names.keys().map(|s| (*s).to_owned()).collect(), windows };
        let plain = costs.encode_to_vec();
        let hex = costs_digest(fold_library, observations.iter().map(|o| &o.key));
        (hex, profile::gzip(&plain))
    });
    let rollup = Rollup {
        format: FORMAT,
        service: key.service.clone(),
        profile_type: key.profile_type.clone(),
        start: key.start,
        day: key.day,
        fold_library,
        windows: observations.iter().map(summary).collect(),
        profile: merged.map(|p| p.encode_to_vec()).unwrap_or_default(),
        costs: costs.as_ref().map(|(d, _)| d.clone()).unwrap_or_default(),
    };
    Encoded { rollup: profile::gzip(&rollup.encode_to_vec()), costs }
}

/// The digest that names an hour's costs object: of the windows it covers (their paths, sorted)
/// and the folding its costs were read with, so that compaction knows an hour is up to date from
/// the listing alone (the digest of the windows listed now is the one listed). The same windows
/// read the same way give the same costs, so two compactions that write one name write the same.
pub fn costs_digest<'a>(fold_library: bool, windows: impl Iterator<Item = &'a WindowKey>) -> String {
    let mut paths: Vec<String> = windows.map(WindowKey::path).collect();
    paths.sort_unstable();
    let mut h = sha2::Sha256::new();
    h.update([FORMAT as u8, u8::from(fold_library)]);
    for p in &paths {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `Ok` when an object read from `key`'s name holds what the name says (`service`, `profile_type`,
/// `start`, `day`): a rollup, or a fleet summary.
pub(crate) fn check_key(
    service: &str,
    profile_type: &str,
    start: i64,
    day: bool,
    key: &RollupKey,
) -> Result<(), RollupError> {
    if service != key.service || profile_type != key.profile_type || start != key.start || day != key.day {
        return Err(RollupError::Mismatch(format!(
            "it holds {service} {profile_type} from {start} (day: {day}), not what its name says"
        )));
    }
    Ok(())
}

/// The order of windows in a rollup.
fn window_order(k: &WindowKey) -> (i64, &str, &str, &str) {
    (k.start, &k.deployment.version, &k.deployment.zone, &k.instance)
}

impl Rollup {
    /// Decodes a rollup read from the object of `key`, checking that it is the one.
    pub fn decode_for(bytes: &[u8], key: &RollupKey) -> Result<Rollup, RollupError> {
        let plain = profile::gunzip(bytes, MAX_INFLATED)?;
        let r = <Rollup as Message>::decode(&plain[..]).map_err(DecodeError::Protobuf)?;
        if r.format != FORMAT {
            return Err(RollupError::Format { found: r.format });
        }
        check_key(&r.service, &r.profile_type, r.start, r.day, key)?;
        Ok(r)
    }

    /// The key of the window `w` of this rollup.
    pub fn window_key(&self, w: &WindowSummary) -> WindowKey {
        WindowKey {
            deployment: Deployment {
                service: self.service.clone(),
                version: w.version.clone(),
                zone: w.zone.clone(),
            },
            profile_type: self.profile_type.clone(),
            start: w.start,
            instance: w.instance.clone(),
        }
    }

    /// The covered windows as observations with totals only.
    pub fn observations(&self) -> Vec<Observation> {
        self.windows
            .iter()
            .map(|w| Observation {
                key: self.window_key(w),
                labels: w
                    .labels
                    .iter()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                costs: RunCosts {
                    totals: w
                        .totals
                        .iter()
                        .filter_map(|t| {
                            let m = metric_at(t.metric)?;
                            let total = if t.exact {
                                MetricTotal::exact(t.value)
                            } else {
                                MetricTotal::sampled(t.value, t.samples)
                            };
                            Some((m, total))
                        })
                        .collect(),
                    work: w.work,
                    ..RunCosts::default()
                },
                seconds: w.seconds,
            })
            .collect()
    }

    /// The merged stacks, `None` when there are none.
    pub fn merged(&self) -> Result<Option<Profile>, RollupError> {
        if self.profile.is_empty() {
            return Ok(None);
        }
        Ok(Some(profile::decode(&self.profile)?))
    }

    /// Fills the per-function costs of `observations` (from [`Rollup::observations`], same order)
    /// from this hour's costs object.
    pub fn add_costs(&self, bytes: &[u8], observations: &mut [Observation]) -> Result<(), RollupError> {
        let plain = profile::gunzip(bytes, MAX_INFLATED)?;
        let costs = <Costs as Message>::decode(&plain[..]).map_err(DecodeError::Protobuf)?;
        if costs.format != FORMAT {
            return Err(RollupError::Format { found: costs.format });
        }
        if costs.windows.len() != observations.len() {
            return Err(RollupError::Mismatch(format!(
                "its costs cover {} windows, the rollup {}",
                costs.windows.len(),
                observations.len()
            )));
        }
        for (w, o) in costs.windows.iter().zip(observations) {
            let n = w.function.len();
            if w.metric.len() != n || w.self_cost.len() != n || w.total_cost.len() != n {
                return Err(RollupError::Mismatch("its cost columns differ in length".into()));
            }
            for i in 0..n {
                let (Some(name), Some(m)) =
                    (costs.functions.get(w.function[i] as usize), metric_at(w.metric[i]))
                else {
                    return Err(RollupError::Mismatch("a cost names no function or metric".into()));
                };
                o.costs
                    .functions
                    .entry(name.clone())
                    .or_default()
                    .insert(m, Cost { self_: w.self_cost[i], total: w.total_cost[i] });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window profile as the uploader writes it: two stacks, labels and comments.
    fn window(instance: &str, main_ms: i64, parse_ms: i64) -> Profile {
        let ms = 1_000_000;
        let mut w = crate::profile::test_support::synth(&[
            (&["main", "work", "parse"], parse_ms * ms, 0),
            (&["main", "work"], main_ms * ms, 0),
        ]);
        w.label_samples(&[("service", "api"), ("version", "1.4"), ("zone", "eu"), ("instance", instance)]);
        w.add_comment("contprof.team=search");
        w.add_comment("contprof.window_start=1");
        // The requests it served (`count_work`), which a comparison divides by.
        w.add_comment(&crate::profile::work::comment(main_ms as u64 * 3, &[]));
        w
    }

    fn key(instance: &str, start: i64) -> WindowKey {
        WindowKey {
            deployment: Deployment { service: "api".into(), version: "1.4".into(), zone: "eu".into() },
            profile_type: "cpu".into(),
            start,
            instance: instance.into(),
        }
    }

    /// Regression guard: per-request ids would make a rollup grow with the traffic.
    #[test]
    fn rollups_keep_program_labels_and_leave_request_ids_out() {
        let mut w = window("a", 10, 5);
        w.label_samples(&[("endpoint", "/search"), ("span_id", "00000000000000ab"), ("trace_id", "01")]);
        let merged = for_merge(w);
        for s in &merged.sample {
            let keys: Vec<&str> = s.label.iter().map(|l| merged.str(l.key)).collect();
            assert!(
                keys.contains(&"endpoint") && !keys.contains(&"span_id") && !keys.contains(&"trace_id"),
                "{keys:?}"
            );
        }
    }

    #[test]
    fn an_hour_round_trips_costs_totals_labels_and_stacks() {
        let hour = RollupKey::at("api", "cpu", 7_200 + 60, false);
        let windows = [(key("a", 7_260), window("a", 30, 70)), (key("b", 7_200), window("b", 50, 50))];
        let obs: Vec<Observation> = windows.iter().map(|(k, p)| observe(k, p, true)).collect();
        assert_eq!(obs[0].labels, vec![("team".to_owned(), "search".to_owned())]);
        let profiles: Vec<Profile> = windows.iter().map(|(_, p)| for_merge(p.clone())).collect();
        let merged = profile::merge(&profiles).unwrap();
        let enc = encode(&hour, true, obs.clone(), Some(&merged));
        let (digest, costs) = enc.costs.expect("an hour has costs");

        let r = Rollup::decode_for(&enc.rollup, &hour).unwrap();
        assert_eq!(r.costs, digest);
        let mut back = r.observations();
        assert_eq!(back[0].key, obs[1].key, "oldest first");
        assert_eq!(back[0].costs.totals, obs[1].costs.totals);
        assert_eq!((back[0].costs.work, obs[1].costs.work), (Some(150.0), Some(150.0)), "the work counted");
        assert!(back[0].costs.functions.is_empty(), "totals only until costs are added");
        r.add_costs(&costs, &mut back).unwrap();
        assert_eq!(back[0], obs[1], "exactly what run_costs gives for the window");
        assert_eq!(back[1], obs[0]);

        let stacks = r.merged().unwrap().unwrap();
        assert_eq!(stacks.total(1), merged.total(1));
        assert!(stacks.comments().iter().all(|c| !c.starts_with("contprof.window")));
        let instances: std::collections::BTreeSet<&str> =
            stacks.sample.iter().filter_map(|s| stacks.label_str(s, "instance")).collect();
        assert_eq!(instances.len(), 2, "samples keep their window's labels");

        let other = RollupKey::at("api", "cpu", 0, false);
        assert!(matches!(Rollup::decode_for(&enc.rollup, &other), Err(RollupError::Mismatch(_))));
        assert!(Rollup::decode_for(b"not gzip", &hour).is_err());
        let mut short = r.observations();
        short.pop();
        assert!(r.add_costs(&costs, &mut short).is_err());
    }
}
