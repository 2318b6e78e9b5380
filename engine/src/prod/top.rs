//! The fleet's CPU in cores and its heap in bytes: which services, functions and crates cost the
//! most core-seconds a day (or hold the most memory) across every service in the store, who pays
//! for each, how it moved over the span, and what a speed-up (or a smaller footprint) of each
//! would save (`cargo contprof prod top`).
//!
//! How a window's samples become cores:
//! - a `cpu` window holds the CPU time of every thread of one replica during the window, so its
//!   total over its length is the cores that replica used then;
//! - within an hour, the replicas of a service take the windows in turn (the lease race, see the
//!   production chapter), so the mean of its windows' cores (weighted by their lengths) is a
//!   replica's mean, and the number
//!   of replicas is the number of distinct instances (version, zone, instance) that recorded a
//!   window in that hour;
//! - the service's core-seconds in that hour are the mean times the replicas times the time its
//!   windows cover (from the first window's start to the last one's end, within the hour and the
//!   span), and each function's part is its share of the self CPU of the hour's windows.
//!
//! The heap is read the same way from `heap` windows: a window holds the bytes one replica had in
//! use at its end, so the hour's mean times its replicas is the service's heap in that hour, and
//! the figure over the span is its mean (an hour without windows counts as none in use).
//!
//! The replica count is exact while every replica wins a window each hour: with the default
//! period of a minute, up to a few dozen replicas a service (a replica that won none in an hour is
//! not counted for it). A replica that lived part of an hour counts for the whole of it, and the
//! time after the last window's end up to the next period is not covered. For CPU, library frames
//! are not folded: std's own functions are std's (`crate` `std`), the C allocator's
//! `[allocator]`. For the heap they are (the caller reads them so): bytes in use belong to the
//! function of your code (or of a dependency) that allocated them, not to std's allocation path.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::rollup::Observation;
use crate::compare::{Kind, Metric};

/// What is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// CPU (`cpu` windows): `value` is core-seconds a day, `level` cores.
    #[default]
    Cpu,
    /// Heap in use (`heap` windows): `value` is the mean bytes in use over the span, `level` the
    /// mean while the windows cover.
    Heap,
}

impl Measure {
    /// Whether library frames are folded into their callers when the windows are read: for the
    /// heap, so that bytes belong to the code that allocated them, not to std's `alloc` path.
    pub fn fold_library(self) -> bool {
        self == Measure::Heap
    }

    /// The profile type read.
    pub fn profile_type(self) -> &'static str {
        match self {
            Measure::Cpu => "cpu",
            Measure::Heap => "heap",
        }
    }

    pub(crate) fn metric(self) -> Metric {
        match self {
            Measure::Cpu => Metric::Cpu,
            Measure::Heap => Metric::InuseBytes,
        }
    }

    /// What one window's total is as a level: cores over its length, or bytes as they are.
    fn level(self, total: f64, seconds: f64) -> f64 {
        match self {
            Measure::Cpu => total / (seconds * 1e9),
            Measure::Heap => total,
        }
    }

    /// What `value` sums are divided by: the span in days (core-seconds a day), or in seconds
    /// (mean bytes).
    fn per(self, span_seconds: f64) -> f64 {
        match self {
            Measure::Cpu => span_seconds / 86_400.0,
            Measure::Heap => span_seconds,
        }
    }

    /// The unit of `value`.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Cpu => "core-seconds a day",
            Measure::Heap => "bytes in use",
        }
    }
}

/// The fleet's CPU or heap over a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fleet {
    /// What is ranked.
    pub measure: Measure,
    /// The unit of every `value`.
    pub unit: &'static str,
    /// The span's start, seconds since the epoch.
    pub since: i64,
    /// The span's end.
    pub until: i64,
    /// Its length in days.
    pub days: f64,
    /// Windows read.
    pub windows: usize,
    /// Of those, windows left out: their length is not known (rollups written before they kept
    /// it, in a service with no window of known length).
    pub without_length: usize,
    /// Services, most expensive first.
    pub services: Vec<ServiceCost>,
    /// Functions, most expensive first.
    pub functions: Vec<Cost>,
    /// Crates, most expensive first.
    pub crates: Vec<Cost>,
}

impl Fleet {
    /// The fleet with its first `limit` functions and crates only.
    pub fn limited(&self, limit: usize) -> Fleet {
        let mut listed = self.clone();
        listed.functions.truncate(limit);
        listed.crates.truncate(limit);
        listed
    }
}

/// One service's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCost {
    /// The service.
    pub service: String,
    /// Its value over the span (core-seconds a day, or mean bytes in use).
    pub value: f64,
    /// Cores used (or bytes in use) in all, on average over the time its windows cover.
    pub level: f64,
    /// Replicas on average over the hours with windows.
    pub instances: f64,
    /// Its windows read.
    pub windows: usize,
    /// Relative change of its value from the span's first half to its second; `None` when a
    /// half has no window.
    pub trend: Option<f64>,
}

/// A function's or a crate's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// The function (demangled, no hash) or the crate.
    pub name: String,
    /// For a function, its crate (`std` for the standard library, `[allocator]` for the C
    /// allocator, `[native]` for other code without a Rust path).
    #[serde(rename = "crate", skip_serializing_if = "Option::is_none")]
    pub krate: Option<String>,
    /// Its own (self) value over every service.
    pub value: f64,
    /// Its part of the fleet's value.
    pub share: f64,
    /// The services that pay for it, most first.
    pub services: Vec<Payer>,
    /// Relative change from the span's first half to its second (see [`ServiceCost::trend`]).
    pub trend: Option<f64>,
}

/// A service's part of a function's or crate's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payer {
    /// The service.
    pub service: String,
    /// Its part.
    pub value: f64,
}

/// The crate a function belongs to, by its path's first segment: `std` for std, core, alloc
/// and their kin, `[allocator]` for the C allocator's entry points, `[native]` for other names
/// without a path, the bracketed frames (`[kernel]`) as they are.
pub fn crate_of(function: &str) -> String {
    if function.starts_with('[') {
        return function.to_owned();
    }
    let strip = |n: &'_ str| -> String {
        let n = n.trim_start_matches(['<', '&', '*', ' ']);
        ["mut ", "const ", "dyn "].iter().fold(n, |n, p| n.strip_prefix(p).unwrap_or(n)).to_owned()
    };
    let mut name = strip(function);
    // `<T as path::Trait>::f` where `T` has no path (a generic parameter, a primitive): the
    // trait's crate.
    if let Some(at) = name.find(" as ")
        && name.find("::").is_none_or(|colons| at < colons)
    {
        name = strip(&name[at + 4..]);
    }
    let name = name.as_str();
    match name.split_once("::") {
        Some(("std" | "core" | "alloc" | "proc_macro" | "test", _)) => "std".to_owned(),
        Some((first, _)) => first.to_owned(),
        None if is_allocator(name) => "[allocator]".to_owned(),
        None => "[native]".to_owned(),
    }
}

/// The C allocator's entry points and the Rust runtime's shims into it.
fn is_allocator(name: &str) -> bool {
    const NAMES: [&str; 12] = [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "malloc_usable_size",
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
    ];
    NAMES.contains(&name)
        || ["_int_malloc", "_int_free", "__libc_", "je_", "_rjem_", "mi_", "tc_"]
            .iter()
            .any(|p| name.starts_with(p))
}

const HOUR: i64 = 3600;

/// One deployment's windows of a service in one hour, as [`rank_parts`] reads them: each
/// window's start, replica, length and total of the measure's metric, and the hour's self cost per
/// function (library frames folded as [`Measure::fold_library`] says) out of `total`. Built from
/// windows read one by one ([`parts_of`]) or from the fleet summaries compaction writes beside
/// the rollups (`prod::fleet`), which hold exactly these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourPart {
    /// The service.
    pub service: String,
    /// The hour's start, seconds since the epoch.
    pub hour: i64,
    /// The deployment's version.
    pub version: String,
    /// Its zone.
    pub zone: String,
    /// Its windows in the hour.
    pub windows: Vec<WindowPart>,
    /// The metric's total over those windows' stacks, of which `functions` are parts.
    pub total: f64,
    /// Self cost per function, summed over the windows, each function once.
    pub functions: Vec<(Name, f64)>,
}

/// A function's name, shared by the parts that name it (a month of a service names the same few
/// thousand functions in every hour).
pub type Name = std::sync::Arc<str>;

/// One window of an [`HourPart`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowPart {
    /// Its start, seconds since the epoch.
    pub start: i64,
    /// The replica.
    pub instance: String,
    /// Its length in seconds; 0 when not known.
    pub seconds: f64,
    /// Its total of the measure's metric.
    pub total: f64,
}

/// The hour parts of `observations` of `measure`'s profile type (others are ignored), by
/// service, hour and deployment.
pub fn parts_of(observations: &[&Observation], measure: Measure) -> Vec<HourPart> {
    let metric = measure.metric();
    type Key<'a> = (&'a str, i64, &'a str, &'a str);
    let mut parts: BTreeMap<Key<'_>, (HourPart, BTreeMap<&str, f64>)> = BTreeMap::new();
    let mut names: BTreeMap<&str, Name> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.key.profile_type == measure.profile_type()) {
        let d = &o.key.deployment;
        let hour = o.key.start.div_euclid(HOUR) * HOUR;
        let (part, own) = parts.entry((&d.service, hour, &d.version, &d.zone)).or_insert_with(|| {
            let part = HourPart {
                service: d.service.clone(),
                hour,
                version: d.version.clone(),
                zone: d.zone.clone(),
                ..HourPart::default()
            };
            (part, BTreeMap::new())
        });
        let total = o.costs.totals.get(&metric).map_or(0.0, |t| t.value);
        part.windows.push(WindowPart {
            start: o.key.start,
            instance: o.key.instance.clone(),
            seconds: o.seconds,
            total,
        });
        part.total += total;
        for (function, costs) in &o.costs.functions {
            if let Some(c) = costs.get(&metric) {
                *own.entry(function.as_str()).or_default() += c.get(Kind::SelfCost);
            }
        }
    }
    parts
        .into_values()
        .map(|(mut part, own)| {
            part.functions = own
                .into_iter()
                .map(|(f, c)| (names.entry(f).or_insert_with(|| Name::from(f)).clone(), c))
                .collect();
            part
        })
        .collect()
}

/// One service's part of the fleet over a span, from its hour parts ([`rank_service`]): what
/// [`assemble`] adds up. A fleet is ranked a service at a time, so that only one service's hours
/// are in memory at once.
#[derive(Debug, Clone, Default)]
pub struct ServiceRank {
    /// The service's figures; `None` when it had no window in the span.
    cost: Option<ServiceCost>,
    /// Each function's value in each half of the span.
    functions: BTreeMap<Name, [f64; 2]>,
    /// Which halves of the span had windows.
    halves: [bool; 2],
    /// Windows in the span, and of those, windows of unknown length left out.
    windows: usize,
    without_length: usize,
}

/// One window of a service's hour, with its length and deployment.
struct Counted<'a> {
    window: &'a WindowPart,
    length: f64,
    version: &'a str,
    zone: &'a str,
}

/// A service's hour: its windows in the span, and its parts with the share of each part's
/// function costs that lies in the span.
#[derive(Default)]
struct Hour<'a> {
    windows: Vec<Counted<'a>>,
    parts: Vec<(&'a HourPart, f64)>,
}

/// `service`'s part of the fleet's `measure` over `[since, until]` from its hour parts (those of
/// other services are ignored): windows that start in the span count; an hour part with windows
/// on both sides of an end of the span counts its function costs in proportion to its windows
/// inside (the hour's mix of functions, which is what a summary of the whole hour knows).
pub fn rank_service(
    service: &str,
    parts: &[HourPart],
    measure: Measure,
    since: i64,
    until: i64,
) -> ServiceRank {
    let middle = since + (until - since) / 2;
    let per = measure.per((until - since).max(1) as f64);
    let inside = |w: &&WindowPart| w.start >= since && w.start <= until;
    let parts: Vec<&HourPart> = parts.iter().filter(|p| p.service == service).collect();
    let mut out = ServiceRank::default();
    // A window of unknown length takes the service's typical length.
    let mut lengths: Vec<f64> = parts
        .iter()
        .flat_map(|p| p.windows.iter().filter(inside).map(|w| w.seconds))
        .filter(|&l| l > 0.0)
        .collect();
    lengths.sort_by(f64::total_cmp);
    let typical = lengths.get(lengths.len() / 2).copied();
    let mut hours: BTreeMap<i64, Hour<'_>> = BTreeMap::new();
    for p in parts {
        let kept: Vec<&WindowPart> = p.windows.iter().filter(inside).collect();
        if kept.is_empty() {
            continue;
        }
        let all: f64 = p.windows.iter().map(|w| w.total).sum();
        let scale = if kept.len() == p.windows.len() || all <= 0.0 {
            1.0
        } else {
            kept.iter().map(|w| w.total).sum::<f64>() / all
        };
        let hour = hours.entry(p.hour.div_euclid(HOUR)).or_default();
        out.windows += kept.len();
        for w in kept {
            match if w.seconds > 0.0 { Some(w.seconds) } else { typical } {
                Some(length) => {
                    hour.windows.push(Counted { window: w, length, version: &p.version, zone: &p.zone })
                }
                None => out.without_length += 1,
            }
        }
        hour.parts.push((p, scale));
    }
    hours.retain(|_, h| !h.windows.is_empty());
    let mut spent = [0.0, 0.0];
    let (mut covered_all, mut replicas) = (0.0, 0.0);
    for (&hour, in_hour) in &hours {
        let start = (hour * HOUR).max(since) as f64;
        let end = ((hour + 1) * HOUR).min(until) as f64;
        let first = in_hour.windows.iter().map(|c| c.window.start as f64).fold(f64::INFINITY, f64::min);
        let last = in_hour.windows.iter().map(|c| c.window.start as f64 + c.length).fold(0.0, f64::max);
        let covered = (last.min(end) - first.max(start)).max(0.0);
        let instances: BTreeSet<(&str, &str, &str)> =
            in_hour.windows.iter().map(|c| (c.version, c.zone, c.window.instance.as_str())).collect();
        // The windows' mean, weighted by their lengths (a window cut short, as at a replica's
        // end, weighs what it covered).
        let length: f64 = in_hour.windows.iter().map(|c| c.length).sum();
        let level =
            in_hour.windows.iter().map(|c| measure.level(c.window.total, c.length) * c.length).sum::<f64>()
                / length;
        // The level times the time covered: core-seconds, or byte-seconds.
        let core_seconds = level * instances.len() as f64 * covered;
        let half = usize::from(hour * HOUR + HOUR / 2 >= middle);
        out.halves[half] = true;
        spent[half] += core_seconds;
        covered_all += covered;
        replicas += instances.len() as f64;
        // Each function's part: its share of the hour's self cost.
        let total: f64 = in_hour.parts.iter().map(|(p, scale)| p.total * scale).sum();
        if total <= 0.0 {
            continue;
        }
        for (p, scale) in &in_hour.parts {
            for (function, cost) in &p.functions {
                out.functions.entry(function.clone()).or_default()[half] +=
                    core_seconds * cost * scale / total;
            }
        }
    }
    if !hours.is_empty() {
        out.cost = Some(ServiceCost {
            service: service.to_owned(),
            value: (spent[0] + spent[1]) / per,
            level: if covered_all > 0.0 { (spent[0] + spent[1]) / covered_all } else { 0.0 },
            instances: replicas / hours.len() as f64,
            windows: hours.values().map(|h| h.windows.len()).sum(),
            trend: trend(spent, out.halves),
        });
    }
    out
}

/// The fleet's `measure` over `[since, until]` from its services' [`ServiceRank`]s.
pub fn assemble(ranks: Vec<ServiceRank>, measure: Measure, since: i64, until: i64) -> Fleet {
    let span = (until - since).max(1) as f64;
    let (days, per) = (span / 86_400.0, measure.per(span));
    let mut fleet = Fleet { measure, unit: measure.unit(), since, until, days, ..Fleet::default() };
    let mut functions = Tally::default();
    let mut crates = Tally::default();
    let mut crate_names: BTreeMap<Name, String> = BTreeMap::new();
    let mut halves = [false, false];
    let mut total = 0.0;
    for r in ranks {
        fleet.windows += r.windows;
        fleet.without_length += r.without_length;
        let Some(cost) = r.cost else { continue };
        halves = [halves[0] || r.halves[0], halves[1] || r.halves[1]];
        total += cost.value * per;
        for (function, h) in r.functions {
            let krate = crate_names.entry(function.clone()).or_insert_with(|| crate_of(&function));
            crates.add(krate, &cost.service, h);
            functions.add(&function, &cost.service, h);
        }
        fleet.services.push(cost);
    }
    fleet.services.sort_by(|a, b| b.value.total_cmp(&a.value));
    fleet.functions = functions.costs(per, total, halves, true);
    fleet.crates = crates.costs(per, total, halves, false);
    fleet
}

/// Sums per name, and per name per service, of core-seconds in each half of the span.
#[derive(Default)]
struct Tally {
    /// name -> service -> [first half, second half] core-seconds.
    by: BTreeMap<String, BTreeMap<String, [f64; 2]>>,
}

impl Tally {
    fn add(&mut self, name: &str, service: &str, core_seconds: [f64; 2]) {
        let by_service = match self.by.get_mut(name) {
            Some(m) => m,
            None => self.by.entry(name.to_owned()).or_default(),
        };
        let entry = by_service.entry(service.to_owned()).or_default();
        entry[0] += core_seconds[0];
        entry[1] += core_seconds[1];
    }

    /// Costs, most expensive first, each sum divided by `per`; a function's crate named.
    fn costs(self, per: f64, fleet: f64, halves: [bool; 2], functions: bool) -> Vec<Cost> {
        let mut out: Vec<Cost> = self
            .by
            .into_iter()
            .map(|(name, services)| {
                let halves_sum = services.values().fold([0.0, 0.0], |a, h| [a[0] + h[0], a[1] + h[1]]);
                let total = halves_sum[0] + halves_sum[1];
                let mut payers: Vec<Payer> = services
                    .into_iter()
                    .map(|(service, h)| Payer { service, value: (h[0] + h[1]) / per })
                    .collect();
                payers.sort_by(|a, b| b.value.total_cmp(&a.value));
                Cost {
                    krate: functions.then(|| crate_of(&name)),
                    name,
                    value: total / per,
                    share: if fleet > 0.0 { total / fleet } else { 0.0 },
                    services: payers,
                    trend: trend(halves_sum, halves),
                }
            })
            .collect();
        out.retain(|c| c.value > 0.0);
        out.sort_by(|a, b| b.value.total_cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
        out
    }
}

/// `second / first - 1` of two halves' sums, when both halves had windows and the first a cost.
fn trend(sums: [f64; 2], halves: [bool; 2]) -> Option<f64> {
    (halves[0] && halves[1] && sums[0] > 0.0).then(|| sums[1] / sums[0] - 1.0)
}

/// The fleet's `measure` over `[since, until]` (seconds since the epoch) from the windows of its
/// profile type with per-function costs (read without folding library frames); other
/// observations are ignored.
pub fn rank(observations: &[&Observation], measure: Measure, since: i64, until: i64) -> Fleet {
    rank_parts(&parts_of(observations, measure), measure, since, until)
}

/// The fleet's `measure` over `[since, until]` from hour parts, a service at a time
/// ([`rank_service`], [`assemble`]).
pub fn rank_parts(parts: &[HourPart], measure: Measure, since: i64, until: i64) -> Fleet {
    let services: BTreeSet<&str> = parts.iter().map(|p| p.service.as_str()).collect();
    let ranks = services.into_iter().map(|s| rank_service(s, parts, measure, since, until)).collect();
    assemble(ranks, measure, since, until)
}

/// The JSON of `fleet` with its first `limit` functions and crates, and the `speedup` the savings
/// are read at: `{"fleet": {...}, "speedup": ...}`, pretty-printed, newline-terminated.
pub fn write_json(
    fleet: &Fleet,
    limit: usize,
    speedup: f64,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Listed<'a> {
        fleet: &'a Fleet,
        speedup: f64,
    }
    serde_json::to_writer_pretty(&mut out, &Listed { fleet: &fleet.limited(limit), speedup })?;
    out.write_all(b"\n")
}

/// `1,234.5`: a figure with thousands separated.
fn figure(v: f64) -> String {
    let s = format!("{v:.1}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, "0"));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{frac}")
}

/// `+12.3%`, or `–` without a trend.
fn trend_text(t: Option<f64>) -> String {
    t.map_or_else(|| "–".to_owned(), |t| format!("{:+.1}%", 100.0 * t))
}

/// `web 80%, api 20%`: the services that pay, at most three, with their part.
fn payers(cost: &Cost) -> String {
    let mut out: Vec<String> = cost
        .services
        .iter()
        .take(3)
        .map(|p| {
            let part = if cost.value > 0.0 { p.value / cost.value } else { 0.0 };
            format!("{} {:.0}%", p.service, 100.0 * part)
        })
        .collect();
    if cost.services.len() > 3 {
        out.push(format!("+{} more", cost.services.len() - 3));
    }
    out.join(", ")
}

/// The span in words: `2026-12-05 16:00 to 2026-12-06 16:00 UTC (1.0 days)`.
fn span(fleet: &Fleet) -> String {
    let at = |t: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
    };
    format!("{} to {} UTC ({:.1} days)", at(fleet.since), at(fleet.until), fleet.days)
}

/// How a measure's figures are headed and scaled in the reports and the fleet page.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    /// The report's title.
    pub title: &'static str,
    /// The heading of `value`.
    pub value: &'static str,
    /// The heading of `level`.
    pub level: &'static str,
    /// What the speed-up does.
    pub better: &'static str,
    /// What a figure is multiplied by to be shown (bytes are shown in MiB).
    pub scale: f64,
}

impl Words {
    /// The words of `measure`.
    pub fn of(measure: Measure) -> Words {
        match measure {
            Measure::Cpu => Words {
                title: "Fleet CPU",
                value: "core-s/day",
                level: "cores",
                better: "faster",
                scale: 1.0,
            },
            Measure::Heap => Words {
                title: "Fleet heap in use",
                value: "MiB in use",
                level: "MiB covered",
                better: "smaller",
                scale: 1.0 / f64::from(1 << 20),
            },
        }
    }
}

/// The text report: services, then the top `limit` functions and crates, each with what a
/// `speedup` (0.1 = 10% faster, or 10% less memory) would save.
pub fn write_text(
    fleet: &Fleet,
    limit: usize,
    speedup: f64,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    let w = Words::of(fleet.measure);
    writeln!(
        out,
        "{}, {}: {} services, {} windows",
        w.title,
        span(fleet),
        fleet.services.len(),
        fleet.windows
    )?;
    if fleet.without_length > 0 {
        writeln!(out, "({} windows of unknown length left out)", fleet.without_length)?;
    }
    writeln!(out)?;
    writeln!(out, "{:<32} {:>14} {:>12} {:>10} {:>8}", "service", w.value, w.level, "replicas", "trend")?;
    for s in &fleet.services {
        writeln!(
            out,
            "{:<32} {:>14} {:>12.2} {:>10.1} {:>8}",
            s.service,
            figure(s.value * w.scale),
            s.level * w.scale,
            s.instances,
            trend_text(s.trend)
        )?;
    }
    let saves = format!("{:.0}% {} saves", 100.0 * speedup, w.better);
    for (title, costs) in [("function", &fleet.functions), ("crate", &fleet.crates)] {
        writeln!(out)?;
        writeln!(
            out,
            "{:<4} {:<56} {:>14} {:>7} {:>8} {:>20}  paid by",
            "#", title, w.value, "share", "trend", saves
        )?;
        for (i, c) in costs.iter().take(limit).enumerate() {
            let name = match &c.krate {
                Some(k) => format!("{} ({k})", c.name),
                None => c.name.clone(),
            };
            writeln!(
                out,
                "{:<4} {:<56} {:>14} {:>6.1}% {:>8} {:>20}  {}",
                i + 1,
                name,
                figure(c.value * w.scale),
                100.0 * c.share,
                trend_text(c.trend),
                format!("{} {}", figure(speedup * c.value * w.scale), w.value),
                payers(c)
            )?;
        }
    }
    Ok(())
}

/// The Markdown report (a weekly report, a chat hook): the same tables as [`write_text`].
pub fn write_markdown(
    fleet: &Fleet,
    limit: usize,
    speedup: f64,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    use crate::compare::markdown::{code_cell, text as cell};
    let w = Words::of(fleet.measure);
    writeln!(out, "### {}, {}", w.title, span(fleet))?;
    writeln!(out)?;
    writeln!(out, "{} services, {} windows.", fleet.services.len(), fleet.windows)?;
    writeln!(out)?;
    writeln!(out, "| service | {} | {} | replicas | trend |", w.value, w.level)?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for s in &fleet.services {
        writeln!(
            out,
            "| {} | {} | {:.2} | {:.1} | {} |",
            cell(&s.service),
            figure(s.value * w.scale),
            s.level * w.scale,
            s.instances,
            trend_text(s.trend)
        )?;
    }
    for (title, costs) in [("function", &fleet.functions), ("crate", &fleet.crates)] {
        writeln!(out)?;
        writeln!(
            out,
            "| # | {title} | {} | share | trend | {:.0}% {} saves | paid by |",
            w.value,
            100.0 * speedup,
            w.better
        )?;
        writeln!(out, "|---:|---|---:|---:|---:|---:|---|")?;
        for (i, c) in costs.iter().take(limit).enumerate() {
            let name = match &c.krate {
                Some(k) => format!("{} ({})", code_cell(&c.name), cell(k)),
                None => code_cell(&c.name),
            };
            writeln!(
                out,
                "| {} | {name} | {} | {:.1}% | {} | {} | {} |",
                i + 1,
                figure(c.value * w.scale),
                100.0 * c.share,
                trend_text(c.trend),
                figure(speedup * c.value * w.scale),
                cell(&payers(c))
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Cost as FnCost, MetricTotal, RunCosts};
    use crate::store::{Deployment, WindowKey};

    /// A `cpu` window of `service`'s `instance` starting at `start`, `seconds` long, whose
    /// functions spent these nanoseconds of CPU (self).
    fn window(
        service: &str,
        instance: &str,
        start: i64,
        seconds: f64,
        functions: &[(&str, f64)],
    ) -> Observation {
        let total: f64 = functions.iter().map(|(_, c)| c).sum();
        let mut costs = RunCosts::default();
        costs.totals.insert(Metric::Cpu, MetricTotal::sampled(total, 1000));
        for (f, c) in functions {
            let cost = FnCost { self_: *c, total: *c };
            costs.functions.entry((*f).to_owned()).or_default().insert(Metric::Cpu, cost);
        }
        Observation {
            key: WindowKey {
                deployment: Deployment { service: service.into(), version: "1.0".into(), zone: "z".into() },
                profile_type: "cpu".into(),
                start,
                instance: instance.into(),
            },
            labels: Vec::new(),
            costs,
            seconds,
        }
    }

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(figure(1_234_567.89), "1,234,567.9");
        assert_eq!(figure(999.0), "999.0");
        assert_eq!(figure(-1_000.0), "-1,000.0");
    }

    #[test]
    fn crates_are_named_by_the_first_path_segment_std_and_the_allocator_as_such() {
        assert_eq!(crate_of("serde_json::de::Deserializer<R>::parse_str"), "serde_json");
        assert_eq!(crate_of("<serde_json::Value as core::fmt::Display>::fmt"), "serde_json");
        assert_eq!(crate_of("core::ptr::drop_in_place<alloc::vec::Vec<u8>>"), "std");
        assert_eq!(crate_of("alloc::raw_vec::finish_grow"), "std");
        assert_eq!(crate_of("malloc"), "[allocator]");
        assert_eq!(crate_of("_int_free"), "[allocator]");
        assert_eq!(crate_of("memcpy"), "[native]");
        assert_eq!(crate_of("[kernel]"), "[kernel]");
        assert_eq!(crate_of("<F as axum::handler::Handler<(M, T), S>>::call"), "axum");
        assert_eq!(crate_of("<u64 as core::fmt::Display>::fmt"), "std");
        assert_eq!(crate_of("<&mut serde_json::Serializer<W> as serde::Serializer>::f"), "serde_json");
    }

    /// Two services over two days: `web` has 3 replicas using 0.5 core each all the time (10 s
    /// windows every minute, taken in turn), 60% of it in `app::render`; `batch` 1 replica using
    /// 2 cores in the second day only. Known answers: web 1.5 cores = 129,600 core-s/day; batch 2
    /// cores for a day over a 2-day span = 86,400 core-s/day.
    #[test]
    fn cores_come_from_windows_and_the_replicas_seen_each_hour() {
        let since = 1_800_000_000 - 1_800_000_000 % 86_400;
        let until = since + 2 * 86_400;
        let mut all = Vec::new();
        for minute in 0..(2 * 24 * 60) {
            let start = since + minute * 60;
            let replica = ["r1", "r2", "r3"][minute as usize % 3];
            // 0.5 core over 10 s: 5e9 ns.
            all.push(window(
                "web",
                replica,
                start,
                10.0,
                &[("app::render", 3e9), ("core::str::from_utf8", 1e9), ("malloc", 1e9)],
            ));
            if minute >= 24 * 60 {
                all.push(window("batch", "b1", start, 10.0, &[("batch::crunch", 2e10)]));
            }
        }
        let refs: Vec<&Observation> = all.iter().collect();
        let fleet = rank(&refs, Measure::Cpu, since, until);
        let near = |a: f64, b: f64| (a - b).abs() <= 0.02 * b;
        let web = fleet.services.iter().find(|s| s.service == "web").unwrap();
        // The last window of each hour ends 50 s before the hour does: covered 3,550 s of 3,600.
        let covered = 3550.0 / 3600.0;
        assert!(near(web.value, 1.5 * 86_400.0 * covered), "{web:?}");
        assert!(near(web.level, 1.5) && web.instances == 3.0, "{web:?}");
        assert_eq!(web.trend.map(|t| (t * 1e6).round()), Some(0.0));
        let batch = fleet.services.iter().find(|s| s.service == "batch").unwrap();
        assert!(near(batch.value, 86_400.0 * covered), "{batch:?}");
        assert_eq!(batch.trend, None, "no window in the first half");
        let render = fleet.functions.iter().find(|f| f.name == "app::render").unwrap();
        assert!(near(render.value, 0.6 * web.value), "{render:?}");
        assert_eq!(render.krate.as_deref(), Some("app"));
        assert_eq!(render.services.len(), 1);
        let top: Vec<&str> = fleet.functions.iter().map(|f| f.name.as_str()).collect();
        // batch::crunch: 2 cores for half the span (86,400 core-s/day), above render's 0.9 core.
        assert_eq!(top[..2], ["batch::crunch", "app::render"]);
        let crates: Vec<&str> = fleet.crates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(crates, ["batch", "app", "[allocator]", "std"]);
        let shares: f64 = fleet.functions.iter().map(|f| f.share).sum();
        assert!(near(shares, 1.0), "{shares}");
    }

    /// Two replicas holding 100 MiB each (80 in `cache::fill`), windows in turn through one
    /// hour: the service holds 200 MiB while covered; over a two-hour span, 100 MiB on average.
    #[test]
    fn the_heap_is_the_bytes_in_use_times_the_replicas() {
        let mib = f64::from(1 << 20);
        let mut all = Vec::new();
        for minute in 0..60 {
            let mut w = window("api", ["a", "b"][minute % 2], minute as i64 * 60, 10.0, &[]);
            w.key.profile_type = "heap".into();
            w.costs.totals.insert(Metric::InuseBytes, MetricTotal::sampled(100.0 * mib, 200));
            for (f, bytes) in [("cache::fill", 80.0 * mib), ("alloc::vec::Vec<T>::push", 20.0 * mib)] {
                let cost = FnCost { self_: bytes, total: bytes };
                w.costs.functions.entry(f.to_owned()).or_default().insert(Metric::InuseBytes, cost);
            }
            all.push(w);
        }
        let refs: Vec<&Observation> = all.iter().collect();
        let fleet = rank(&refs, Measure::Heap, 0, 7200);
        let api = &fleet.services[0];
        let covered = 3550.0 / 7200.0;
        assert!((api.level - 200.0 * mib).abs() < 1.0, "{api:?}");
        assert!((api.value - 200.0 * mib * covered).abs() < 1.0, "{api:?}");
        assert_eq!(
            (fleet.functions[0].name.as_str(), fleet.crates[0].name.as_str()),
            ("cache::fill", "cache")
        );
        assert!((fleet.functions[0].share - 0.8).abs() < 1e-9);
        assert_eq!(rank(&refs, Measure::Cpu, 0, 7200).windows, 0, "a heap window is not CPU");
        let mut text = Vec::new();
        write_text(&fleet, 5, 0.1, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("Fleet heap in use") && text.contains("MiB in use"), "{text}");
    }

    #[test]
    fn windows_of_unknown_length_take_their_services_typical_one_or_are_left_out() {
        let a = window("web", "r1", 3600, 10.0, &[("app::f", 5e9)]);
        let b = window("web", "r1", 3660, 0.0, &[("app::f", 5e9)]);
        let c = window("old", "r1", 3600, 0.0, &[("old::f", 5e9)]);
        let fleet = rank(&[&a, &b, &c], Measure::Cpu, 0, 86_400);
        assert_eq!((fleet.windows, fleet.without_length), (3, 1));
        let web = &fleet.services[0];
        assert!((web.level - 0.5).abs() < 1e-9, "{web:?}");
    }
}
