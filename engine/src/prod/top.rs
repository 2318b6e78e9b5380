//! The fleet's CPU in cores: which services, functions and crates cost the most core-seconds a
//! day across every service in the store, who pays for each, how it moved over the span, and
//! what a speed-up of each would save (`cargo contprof prod top`).
//!
//! How a window's samples become cores:
//! - a `cpu` window holds the CPU time of every thread of one replica during the window, so its
//!   total over its length is the cores that replica used then;
//! - within an hour, the replicas of a service take the windows in turn (the lease race, see the
//!   production chapter), so the mean of its windows' cores is a replica's mean, and the number
//!   of replicas is the number of distinct instances (version, zone, instance) that recorded a
//!   window in that hour;
//! - the service's core-seconds in that hour are the mean times the replicas times the time its
//!   windows cover (from the first window's start to the last one's end, within the hour and the
//!   span), and each function's part is its share of the self CPU of the hour's windows.
//!
//! The replica count is exact while every replica wins a window each hour: with the default
//! period of a minute, up to a few dozen replicas a service (a replica that won none in an hour is
//! not counted for it). A replica that lived part of an hour counts for the whole of it, and the
//! time after the last window's end up to the next period is not covered. Library frames are
//! not folded: std's own functions are std's (`crate` `std`), the C allocator's `[allocator]`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::rollup::Observation;
use crate::compare::{Kind, Metric};

/// The fleet's CPU over a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fleet {
    /// The span's start, seconds since the epoch.
    pub since: i64,
    /// The span's end.
    pub until: i64,
    /// Its length in days: the per-day figures divide by it.
    pub days: f64,
    /// `cpu` windows read.
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

/// One service's CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCost {
    /// The service.
    pub service: String,
    /// Core-seconds a day (the span's total over its days).
    pub core_seconds_per_day: f64,
    /// Cores used in all, on average over the time its windows cover.
    pub cores: f64,
    /// Replicas on average over the hours with windows.
    pub instances: f64,
    /// Its windows read.
    pub windows: usize,
    /// Relative change of its core-seconds a day from the span's first half to its second; `None`
    /// when a half has no window.
    pub trend: Option<f64>,
}

/// A function's or a crate's CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// The function (demangled, no hash) or the crate.
    pub name: String,
    /// For a function, its crate (`std` for the standard library, `[allocator]` for the C
    /// allocator, `[native]` for other code without a Rust path).
    #[serde(rename = "crate", skip_serializing_if = "Option::is_none")]
    pub krate: Option<String>,
    /// Core-seconds a day of its own CPU (self), over every service.
    pub core_seconds_per_day: f64,
    /// Its part of the fleet's CPU.
    pub share: f64,
    /// The services that pay for it, most first.
    pub services: Vec<Payer>,
    /// Relative change from the span's first half to its second (see [`ServiceCost::trend`]).
    pub trend: Option<f64>,
}

/// A service's part of a function's or crate's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payer {
    /// The service.
    pub service: String,
    /// Its core-seconds a day of it.
    pub core_seconds_per_day: f64,
}

/// The crate a function belongs to, by its path's first segment: `std` for std, core, alloc
/// and their kin, `[allocator]` for the C allocator's entry points, `[native]` for other names
/// without a path, the bracketed frames (`[kernel]`) as they are.
pub fn crate_of(function: &str) -> String {
    if function.starts_with('[') {
        return function.to_owned();
    }
    let name = function.trim_start_matches(['<', '&', '*']);
    let name = ["mut ", "const ", "dyn "].iter().fold(name, |n, p| n.strip_prefix(p).unwrap_or(n));
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

/// A service's windows (with their lengths in seconds) by hour since the epoch.
type Hours<'a> = BTreeMap<i64, Vec<(&'a Observation, f64)>>;

/// Sums per name, and per name per service, of core-seconds in each half of the span.
#[derive(Default)]
struct Tally {
    /// name -> service -> [first half, second half] core-seconds.
    by: BTreeMap<String, BTreeMap<String, [f64; 2]>>,
}

impl Tally {
    fn add(&mut self, name: &str, service: &str, half: usize, core_seconds: f64) {
        let entry = self.by.entry(name.to_owned()).or_default().entry(service.to_owned()).or_default();
        entry[half] += core_seconds;
    }

    /// Costs, most expensive first; `crate_of` names a function's crate.
    fn costs(self, days: f64, fleet: f64, halves: [bool; 2], functions: bool) -> Vec<Cost> {
        let mut out: Vec<Cost> = self
            .by
            .into_iter()
            .map(|(name, services)| {
                let halves_sum = services.values().fold([0.0, 0.0], |a, h| [a[0] + h[0], a[1] + h[1]]);
                let total = halves_sum[0] + halves_sum[1];
                let mut payers: Vec<Payer> = services
                    .into_iter()
                    .map(|(service, h)| Payer { service, core_seconds_per_day: (h[0] + h[1]) / days })
                    .collect();
                payers.sort_by(|a, b| b.core_seconds_per_day.total_cmp(&a.core_seconds_per_day));
                Cost {
                    krate: functions.then(|| crate_of(&name)),
                    name,
                    core_seconds_per_day: total / days,
                    share: if fleet > 0.0 { total / fleet } else { 0.0 },
                    services: payers,
                    trend: trend(halves_sum, halves),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.core_seconds_per_day.total_cmp(&a.core_seconds_per_day).then_with(|| a.name.cmp(&b.name))
        });
        out
    }
}

/// `second / first - 1` of two halves' sums, when both halves had windows and the first a cost.
fn trend(sums: [f64; 2], halves: [bool; 2]) -> Option<f64> {
    (halves[0] && halves[1] && sums[0] > 0.0).then(|| sums[1] / sums[0] - 1.0)
}

/// The fleet's CPU over `[since, until]` (seconds since the epoch) from `cpu` windows with
/// per-function costs (read without folding library frames); other observations are ignored.
pub fn rank(observations: &[&Observation], since: i64, until: i64) -> Fleet {
    let cpu: Vec<&Observation> = observations
        .iter()
        .copied()
        .filter(|o| o.key.profile_type == "cpu" && o.key.start >= since && o.key.start <= until)
        .collect();
    let days = ((until - since).max(1)) as f64 / 86_400.0;
    let middle = since + (until - since) / 2;
    let mut fleet = Fleet { since, until, days, windows: cpu.len(), ..Fleet::default() };
    // A window of unknown length takes its service's typical length.
    let mut lengths: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for o in &cpu {
        if o.seconds > 0.0 {
            lengths.entry(o.key.deployment.service.as_str()).or_default().push(o.seconds);
        }
    }
    let typical: BTreeMap<&str, f64> = lengths
        .into_iter()
        .map(|(s, mut l)| {
            l.sort_by(f64::total_cmp);
            (s, l[l.len() / 2])
        })
        .collect();
    let mut hours: BTreeMap<&str, Hours<'_>> = BTreeMap::new();
    for o in &cpu {
        let service = o.key.deployment.service.as_str();
        let length = if o.seconds > 0.0 { Some(o.seconds) } else { typical.get(service).copied() };
        match length {
            Some(l) => hours
                .entry(service)
                .or_default()
                .entry(o.key.start.div_euclid(HOUR))
                .or_default()
                .push((o, l)),
            None => fleet.without_length += 1,
        }
    }
    let mut functions = Tally::default();
    let mut crates = Tally::default();
    let mut halves = [false, false];
    let mut total = 0.0;
    for (service, by_hour) in &hours {
        let mut spent = [0.0, 0.0];
        let (mut covered_all, mut replicas, mut windows) = (0.0, 0.0, 0);
        for (&hour, in_hour) in by_hour {
            let start = (hour * HOUR).max(since) as f64;
            let end = ((hour + 1) * HOUR).min(until) as f64;
            let first = in_hour.iter().map(|(o, _)| o.key.start as f64).fold(f64::INFINITY, f64::min);
            let last = in_hour.iter().map(|(o, l)| o.key.start as f64 + l).fold(0.0, f64::max);
            let covered = (last.min(end) - first.max(start)).max(0.0);
            let instances: BTreeSet<(&str, &str, &str)> = in_hour
                .iter()
                .map(|(o, _)| {
                    (
                        o.key.deployment.version.as_str(),
                        o.key.deployment.zone.as_str(),
                        o.key.instance.as_str(),
                    )
                })
                .collect();
            let cpu_of = |o: &Observation| o.costs.totals.get(&Metric::Cpu).map_or(0.0, |t| t.value);
            let cores =
                in_hour.iter().map(|(o, l)| cpu_of(o) / (l * 1e9)).sum::<f64>() / in_hour.len() as f64;
            let core_seconds = cores * instances.len() as f64 * covered;
            let half = usize::from(hour * HOUR + HOUR / 2 >= middle);
            halves[half] = true;
            spent[half] += core_seconds;
            total += core_seconds;
            covered_all += covered;
            replicas += instances.len() as f64;
            windows += in_hour.len();
            // Each function's part: its share of the hour's self CPU.
            let hour_cpu: f64 = in_hour.iter().map(|(o, _)| cpu_of(o)).sum();
            if hour_cpu <= 0.0 {
                continue;
            }
            let mut own: BTreeMap<&str, f64> = BTreeMap::new();
            for (o, _) in in_hour {
                for (function, costs) in &o.costs.functions {
                    if let Some(c) = costs.get(&Metric::Cpu) {
                        *own.entry(function.as_str()).or_default() += c.get(Kind::SelfCost);
                    }
                }
            }
            for (function, cpu) in own {
                let part = core_seconds * cpu / hour_cpu;
                functions.add(function, service, half, part);
                crates.add(&crate_of(function), service, half, part);
            }
        }
        let hours_with_windows = by_hour.len() as f64;
        fleet.services.push(ServiceCost {
            service: (*service).to_owned(),
            core_seconds_per_day: (spent[0] + spent[1]) / days,
            cores: if covered_all > 0.0 { (spent[0] + spent[1]) / covered_all } else { 0.0 },
            instances: replicas / hours_with_windows,
            windows,
            trend: trend(spent, halves_of(by_hour, middle)),
        });
    }
    fleet.services.sort_by(|a, b| b.core_seconds_per_day.total_cmp(&a.core_seconds_per_day));
    fleet.functions = functions.costs(days, total, halves, true);
    fleet.crates = crates.costs(days, total, halves, false);
    fleet
}

/// Which halves of the span (split at `middle`) a service's hours fall in.
fn halves_of<T>(by_hour: &BTreeMap<i64, T>, middle: i64) -> [bool; 2] {
    let mut halves = [false, false];
    for &hour in by_hour.keys() {
        halves[usize::from(hour * HOUR + HOUR / 2 >= middle)] = true;
    }
    halves
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
            let part = if cost.core_seconds_per_day > 0.0 {
                p.core_seconds_per_day / cost.core_seconds_per_day
            } else {
                0.0
            };
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

/// The text report: services, then the top `limit` functions and crates, each with the cores a
/// `speedup` (0.1 = 10% faster) would save.
pub fn write_text(
    fleet: &Fleet,
    limit: usize,
    speedup: f64,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Fleet CPU, {}: {} services, {} windows",
        span(fleet),
        fleet.services.len(),
        fleet.windows
    )?;
    if fleet.without_length > 0 {
        writeln!(out, "({} windows of unknown length left out)", fleet.without_length)?;
    }
    writeln!(out)?;
    writeln!(out, "{:<32} {:>14} {:>8} {:>10} {:>8}", "service", "core-s/day", "cores", "replicas", "trend")?;
    for s in &fleet.services {
        writeln!(
            out,
            "{:<32} {:>14} {:>8.2} {:>10.1} {:>8}",
            s.service,
            figure(s.core_seconds_per_day),
            s.cores,
            s.instances,
            trend_text(s.trend)
        )?;
    }
    let saves = format!("{:.0}% faster saves", 100.0 * speedup);
    for (title, costs) in [("function", &fleet.functions), ("crate", &fleet.crates)] {
        writeln!(out)?;
        writeln!(
            out,
            "{:<4} {:<56} {:>14} {:>7} {:>8} {:>20}  paid by",
            "#", title, "core-s/day", "share", "trend", saves
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
                figure(c.core_seconds_per_day),
                100.0 * c.share,
                trend_text(c.trend),
                format!("{} core-s/day", figure(speedup * c.core_seconds_per_day)),
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
    writeln!(out, "### Fleet CPU, {}", span(fleet))?;
    writeln!(out)?;
    writeln!(out, "{} services, {} windows.", fleet.services.len(), fleet.windows)?;
    writeln!(out)?;
    writeln!(out, "| service | core-s/day | cores | replicas | trend |")?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for s in &fleet.services {
        writeln!(
            out,
            "| {} | {} | {:.2} | {:.1} | {} |",
            cell(&s.service),
            figure(s.core_seconds_per_day),
            s.cores,
            s.instances,
            trend_text(s.trend)
        )?;
    }
    for (title, costs) in [("function", &fleet.functions), ("crate", &fleet.crates)] {
        writeln!(out)?;
        writeln!(
            out,
            "| # | {title} | core-s/day | share | trend | {:.0}% faster saves | paid by |",
            100.0 * speedup
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
                figure(c.core_seconds_per_day),
                100.0 * c.share,
                trend_text(c.trend),
                figure(speedup * c.core_seconds_per_day),
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
        let fleet = rank(&refs, since, until);
        let near = |a: f64, b: f64| (a - b).abs() <= 0.02 * b;
        let web = fleet.services.iter().find(|s| s.service == "web").unwrap();
        // The last window of each hour ends 50 s before the hour does: covered 3,550 s of 3,600.
        let covered = 3550.0 / 3600.0;
        assert!(near(web.core_seconds_per_day, 1.5 * 86_400.0 * covered), "{web:?}");
        assert!(near(web.cores, 1.5) && web.instances == 3.0, "{web:?}");
        assert_eq!(web.trend.map(|t| (t * 1e6).round()), Some(0.0));
        let batch = fleet.services.iter().find(|s| s.service == "batch").unwrap();
        assert!(near(batch.core_seconds_per_day, 86_400.0 * covered), "{batch:?}");
        assert_eq!(batch.trend, None, "no window in the first half");
        let render = fleet.functions.iter().find(|f| f.name == "app::render").unwrap();
        assert!(near(render.core_seconds_per_day, 0.6 * web.core_seconds_per_day), "{render:?}");
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

    #[test]
    fn windows_of_unknown_length_take_their_services_typical_one_or_are_left_out() {
        let a = window("web", "r1", 3600, 10.0, &[("app::f", 5e9)]);
        let b = window("web", "r1", 3660, 0.0, &[("app::f", 5e9)]);
        let c = window("old", "r1", 3600, 0.0, &[("old::f", 5e9)]);
        let fleet = rank(&[&a, &b, &c], 0, 86_400);
        assert_eq!((fleet.windows, fleet.without_length), (3, 1));
        let web = &fleet.services[0];
        assert!((web.cores - 0.5).abs() < 1e-9, "{web:?}");
    }
}
