//! The fleet at scale: 20 services of 10 replicas each over 30 days in S3 (moto, started here on
//! loopback), and `prod top` and the fleet page (`/prod/top`) over the last 24 hours, 7 days and
//! 30 days timed as they answer: listing, reading the fleet summaries, ranking, HTML.
//!
//! What the store holds, per service: a window a minute (10 s, the replicas taking turns), ~1,500
//! distinct stacks of depth 8-40 each (of 4,000 per version, drawn with a skew), ~900 function
//! names (its own crate's, tokio's, hyper's, serde_json's, std's), three versions over the month,
//! two zones; each service uses a different number of cores (1 to 4.8 a replica).
//! - Today's windows (00:00 to 12:25, 15,000 in all) are uploaded and compacted for real by
//!   `prod compact`, which is timed: that is the compaction's cost per window at fleet scale.
//!   The five minutes since then are windows no rollup covers yet, as between two compactions.
//! - The 30 days before are what compaction leaves: per hour the rollup, its costs and its fleet
//!   summary, per day the rollup and its summary. They are made from real compactions of one
//!   hour of each service and version (60 windows), copied to every hour with their times moved:
//!   864,000 windows of generated profiles would not fit in moto's memory, and the readers
//!   timed here never open a window that a rollup covers. (The windows themselves are left out of
//!   the past days for the same reason; a store keeps them until `gc`.)
//!
//! The known answer is printed beside the figures: each service's cores (replicas x cores a
//! replica).
//!
//! Filling takes about ten minutes, so it is done once per moto: set `CONTPROF_FLEET_MOTO_PORT`
//! to the port of a running `moto_server` (bucket `fleet` is made here) to reuse its data. With
//! `CONTPROF_FLEET_PASS=1` (last, at least ten minutes after the filling: it rolls up the newest
//! windows) it times the compaction passes `serve` makes every minute instead, over the fleet.
//!
//! Run: `cargo bench -p cargo-contprof --bench prod_fleet`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use contprof_engine::prod::compact::{CompactOptions, compact};
use contprof_engine::prod::fleet::{self, Reads};
use contprof_engine::prod::rollup::Rollup;
use contprof_engine::prod::select::Selection;
use contprof_engine::prod::top::Measure;
use contprof_engine::profile;
use contprof_engine::store::{Deployment, RollupKey, Store, StoreLocation, WindowKey, parse_time};
use contprof_viewer::{TopQuery, fleet_page};
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;

#[path = "common/prod.rs"]
mod common;

/// The benchmark's "now": 2026-11-01T12:30:00Z, mid-day and mid-hour as a real one is.
const NOW: i64 = 1_793_536_200;
const SERVICES: usize = 20;
const REPLICAS: usize = 10;
const DAYS: i64 = 30;
const STACKS_PER_VERSION: usize = 4_000;
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];
/// The last compaction before `NOW`.
const COMPACTED_AT: i64 = NOW - 5 * 60;
const MARKER: &str = "fleet-bench-filled";
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn service(i: usize) -> String {
    format!("svc{i:02}")
}

/// Samples (of 10 ms) in one 10 s window of service `i`: 1 to 4.8 cores.
fn samples(i: usize) -> usize {
    1_000 + 200 * i
}

/// The version of the day that starts at `day`.
fn version(day: i64) -> &'static str {
    let first = NOW.div_euclid(DAY) * DAY - DAYS * DAY;
    VERSIONS[(((day - first) / DAY) * 3 / (DAYS + 1)).clamp(0, 2) as usize]
}

fn key(i: usize, version: &str, start: i64) -> WindowKey {
    let minute = start.div_euclid(60);
    let replica = minute.rem_euclid(REPLICAS as i64) as usize;
    let zone = if replica.is_multiple_of(2) { "eu-west" } else { "us-east" };
    WindowKey {
        deployment: Deployment { service: service(i), version: version.into(), zone: zone.into() },
        profile_type: "cpu".into(),
        start,
        instance: format!("{zone}-{replica}"),
    }
}

/// One service's generator: its names and each version's stacks.
struct Shape {
    names: Vec<String>,
    stacks: BTreeMap<&'static str, Vec<Vec<u32>>>,
}

fn shapes() -> Vec<Shape> {
    (0..SERVICES)
        .map(|i| {
            let names = common::names(&service(i));
            let mut rng = fastrand::Rng::with_seed(0x5eed + i as u64);
            let stacks = VERSIONS
                .iter()
                .map(|&v| (v, common::stacks(&mut rng, names.len(), STACKS_PER_VERSION)))
                .collect();
            Shape { names, stacks }
        })
        .collect()
}

/// The windows of service `i` from `from` to `to` (a minute apart), uploaded by a few threads.
fn upload_windows(store: &Store, shapes: &[Shape], from: i64, to: i64) -> usize {
    let bytes = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let bytes = &bytes;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0xabc + t as u64);
                for (i, shape) in shapes.iter().enumerate() {
                    for start in (from..to).step_by(60).skip(t).step_by(4) {
                        let v = version(start.div_euclid(DAY) * DAY);
                        let k = key(i, v, start);
                        let p = common::window(&mut rng, &shape.names, &shape.stacks[v], &k, samples(i));
                        let gz = profile::encode_to_vec(&p);
                        bytes.fetch_add(gz.len(), Ordering::Relaxed);
                        store.put_window(&k, gz).unwrap();
                    }
                }
            });
        }
    });
    bytes.load(Ordering::Relaxed)
}

/// What compaction wrote for one hour of one service and version, to be copied.
struct Template {
    rollup: Rollup,
    costs: Vec<u8>,
    parts: Vec<contprof_engine::prod::top::HourPart>,
}

/// Real compactions of one hour of each service and version, in a local store.
fn templates(shapes: &[Shape]) -> BTreeMap<(usize, &'static str), Template> {
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(&StoreLocation::Dir(dir.path().into())).unwrap();
    // Hour `v` of the template day holds version `v`'s windows.
    let day = NOW.div_euclid(DAY) * DAY - 40 * DAY;
    let mut rng = fastrand::Rng::with_seed(7);
    for (i, shape) in shapes.iter().enumerate() {
        for (h, v) in VERSIONS.iter().enumerate() {
            for m in 0..60 {
                let k = key(i, v, day + h as i64 * HOUR + m * 60);
                let p = common::window(&mut rng, &shape.names, &shape.stacks[v], &k, samples(i));
                local.put_window(&k, profile::encode_to_vec(&p)).unwrap();
            }
        }
    }
    let opts = CompactOptions {
        service: None,
        rescan_days: 2,
        full: false,
        fold_library: true,
        now: DateTime::from_timestamp(day + 2 * DAY, 0).unwrap(),
    };
    compact(&local, &opts, &mut |_| {}).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..SERVICES {
        for (h, &v) in VERSIONS.iter().enumerate() {
            let k = RollupKey::at(&service(i), "cpu", day + h as i64 * HOUR, false);
            let got = local.get_production_objects(&[k.path(), k.fleet_path()]).unwrap();
            let rollup = Rollup::decode_for(got[0].as_ref().unwrap(), &k).unwrap();
            let costs = local.get_production_objects(&[k.costs_path(&rollup.costs)]).unwrap();
            let parts = fleet::decode_for(got[1].as_ref().unwrap(), &k).unwrap();
            out.insert((i, v), Template { rollup, costs: costs[0].clone().unwrap(), parts });
        }
    }
    out
}

/// The objects of `t` moved to the hour `hour` of service `i`.
fn moved(t: &Template, hour: i64) -> (Rollup, Vec<contprof_engine::prod::top::HourPart>) {
    let shift = hour - t.rollup.start;
    let mut r = t.rollup.clone();
    r.start = hour;
    for w in &mut r.windows {
        w.start += shift;
    }
    let mut parts = t.parts.clone();
    for p in &mut parts {
        p.hour += shift;
        for w in &mut p.windows {
            w.start += shift;
        }
    }
    (r, parts)
}

/// The 30 days before today, as compaction leaves them, from the templates.
fn copy_month(store: &Store, templates: &BTreeMap<(usize, &'static str), Template>) -> usize {
    let today = NOW.div_euclid(DAY) * DAY;
    let written = AtomicUsize::new(0);
    let days: Vec<(usize, i64)> =
        (0..SERVICES).flat_map(|i| (1..=DAYS).map(move |d| (i, today - d * DAY))).collect();
    std::thread::scope(|s| {
        for chunk in days.chunks(days.len().div_ceil(8)) {
            let written = &written;
            s.spawn(move || {
                for &(i, day) in chunk {
                    let t = &templates[&(i, version(day))];
                    let mut windows = Vec::new();
                    let mut parts = Vec::new();
                    for h in 0..24 {
                        let hour = day + h * HOUR;
                        let k = RollupKey::at(&service(i), "cpu", hour, false);
                        let (r, p) = moved(t, hour);
                        store.put_rollup_object(&k.costs_path(&r.costs), t.costs.clone()).unwrap();
                        store.put_rollup_object(&k.fleet_path(), fleet::encode(&k, &p)).unwrap();
                        windows.extend(r.windows.iter().cloned());
                        parts.extend(p);
                        store.put_rollup_object(&k.path(), profile::gzip(&r.encode_to_vec())).unwrap();
                    }
                    // The day: the hours' windows, and their stacks merged (24 times the hour's).
                    let k = RollupKey::at(&service(i), "cpu", day, true);
                    let mut merged = t.rollup.merged().unwrap().unwrap();
                    for s in &mut merged.sample {
                        for v in &mut s.value {
                            *v *= 24;
                        }
                    }
                    let r = Rollup {
                        start: day,
                        day: true,
                        windows,
                        profile: merged.encode_to_vec(),
                        costs: String::new(),
                        ..t.rollup.clone()
                    };
                    store.put_rollup_object(&k.fleet_path(), fleet::encode(&k, &parts)).unwrap();
                    store.put_rollup_object(&k.path(), profile::gzip(&r.encode_to_vec())).unwrap();
                    written.fetch_add(24 * 3 + 2, Ordering::Relaxed);
                }
            });
        }
    });
    written.load(Ordering::Relaxed)
}

fn fill(store: &Store) {
    let shapes = shapes();
    let started = Instant::now();
    let templates = templates(&shapes);
    eprintln!(
        "templates: {} hours compacted in {:.0} s; an hour's rollup {} KiB, costs {} KiB",
        templates.len(),
        started.elapsed().as_secs_f64(),
        profile::gzip(&templates[&(0, VERSIONS[0])].rollup.encode_to_vec()).len() / 1024,
        templates[&(0, VERSIONS[0])].costs.len() / 1024,
    );
    let started = Instant::now();
    let objects = copy_month(store, &templates);
    eprintln!(
        "the month before today: {objects} rollup objects written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let today = NOW.div_euclid(DAY) * DAY;
    let started = Instant::now();
    let bytes = upload_windows(store, &shapes, today, COMPACTED_AT);
    let windows = SERVICES * ((COMPACTED_AT - today) / 60) as usize;
    eprintln!(
        "today: {windows} windows ({} MiB) uploaded in {:.0} s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let opts = CompactOptions {
        service: None,
        rescan_days: 2,
        full: false,
        fold_library: true,
        now: DateTime::from_timestamp(COMPACTED_AT + 30, 0).unwrap(),
    };
    let started = Instant::now();
    let done = compact(store, &opts, &mut |_| {}).unwrap();
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "prod compact: {} windows into {} hour rollups in {took:.0} s ({:.0} windows/s), {} warnings",
        done.windows,
        done.hours,
        done.windows as f64 / took,
        done.warnings.len()
    );
    upload_windows(store, &shapes, COMPACTED_AT, NOW + 1);
    store.put_rollup_object(MARKER, b"1".to_vec()).unwrap();
}

/// Service `i`'s cores while its windows cover, known from how the windows were made.
fn known_cores(i: usize) -> f64 {
    REPLICAS as f64 * samples(i) as f64 * 0.01 / 10.0
}

fn bench(c: &mut Criterion) {
    let (port, _moto) = common::moto_from_env("CONTPROF_FLEET_MOTO_PORT");
    common::make_bucket(port, "fleet");
    let store = common::open(port, "fleet");
    if store.get_production_objects(&[MARKER.to_owned()]).unwrap()[0].is_none() {
        fill(&store);
    }
    let now: DateTime<Utc> = DateTime::from_timestamp(NOW, 0).unwrap();
    if std::env::var_os("CONTPROF_FLEET_PASS").is_some() {
        // The compaction passes `serve` makes every minute: the first rolls up the five
        // minutes of windows since the last one, the second finds nothing new.
        let opts = CompactOptions { service: None, rescan_days: 2, full: false, fold_library: true, now };
        for what in ["the minutes since the last pass", "nothing new"] {
            let started = Instant::now();
            let done = compact(&store, &opts, &mut |_| {}).unwrap();
            eprintln!(
                "prod compact, {what}: {} windows read, {} hour rollups written, {} hours left unread, in {:.2} s",
                done.windows,
                done.hours,
                done.unchanged,
                started.elapsed().as_secs_f64()
            );
        }
        return;
    }
    for span in ["24h", "7d", "30d"] {
        let selection = Selection { since: parse_time(span, now, false), ..Selection::default() };
        let t = Instant::now();
        let (fleet, warnings, Reads { summaries, rollups, windows }) =
            fleet::read(&store, &selection, Measure::Cpu, None, now).unwrap();
        let took = t.elapsed().as_secs_f64();
        let worst = fleet
            .services
            .iter()
            .map(|s| {
                let i: usize = s.service[3..].parse().unwrap();
                (s.level / known_cores(i) - 1.0).abs()
            })
            .fold(0.0, f64::max);
        eprintln!(
            "prod top {span}: {} services, {} windows, from {summaries} summaries, {rollups} rollups and \
             {windows} windows in {took:.2} s; cores within {:.2}% of the known answer; {} warnings",
            fleet.services.len(),
            fleet.windows,
            100.0 * worst,
            warnings.len()
        );
        assert_eq!(fleet.services.len(), SERVICES);
    }
    let page = |since: &str| {
        let q = TopQuery::parse(&format!("since={since}")).unwrap();
        fleet_page(&store, &q, None, now).unwrap()
    };
    eprintln!("the fleet page of 30 days: {} KiB", page("30d").len() / 1024);
    let mut g = c.benchmark_group("prod_fleet");
    g.sample_size(10);
    for span in ["24h", "30d"] {
        g.bench_function(format!("fleet page {span}"), |b| b.iter(|| page(span)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
