//! Production browsing at scale: 30 days of one service at one CPU window a minute (43,200
//! profiles) in S3 (moto, started here on loopback), compacted by `prod compact`, then the
//! viewer's page of the last 24 hours and of the 30 days timed as `serve` renders them
//! (`viewer::prod::write_page`: load from rollups and windows, merge, flame tree, HTML).
//!
//! The windows are generated but shaped like real ones: ~1,500 distinct stacks of depth 8-40
//! each (of 4,000 per version, drawn with a skew), ~900 function names of crates a service
//! links, labels and comments as the uploader writes them, three versions over the month in
//! two zones on five replicas each.
//!
//! Filling moto and compacting take minutes, so they are done once per moto: set
//! `CONTPROF_SCALE_MOTO_PORT` to the port of a running `moto_server` (bucket `scale` is made
//! here) to reuse its data across runs; without it a fresh moto is started and filled.
//! `CONTPROF_SCALE_DAYS` shortens the month (for a quick look).
//!
//! Run: `cargo bench -p cargo-contprof --bench prod_scale`

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::DateTime;
use contprof_engine::prod::compact::{CompactOptions, compact};
use contprof_engine::profile;
use contprof_engine::store::{Deployment, WindowKey};
use contprof_viewer::{Comparing, ProdQuery, prod::write_page};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/prod.rs"]
mod common;

/// The end of the generated month: the benchmark's "now", mid-hour as a real one is.
const NOW: i64 = 1_793_536_200; // 2026-11-01T12:30:00Z
const STACKS_PER_VERSION: usize = 4_000;
const SAMPLES_PER_WINDOW: usize = 3_000;
const MARKER: &str = "scale-bench-filled";

/// The deployment and replica of the window at minute `m` of `days`.
fn who(m: i64, days: i64) -> (String, String, String) {
    let day = m / 1_440;
    let zone = if m % 2 == 0 { "eu-west" } else { "us-east" };
    let version = match day * 30 / days.max(1) {
        0..=11 => "1.0.0",
        12..=23 => "1.1.0",
        _ => "1.2.0",
    };
    (version.to_owned(), zone.to_owned(), format!("{zone}-{}", (m / 2) % 5))
}

/// Writes the month's windows with a few threads, then compacts; prints what it took.
fn fill(port: u16, days: i64) {
    let minutes = days * 1_440;
    let names = common::names("indexing");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let by_version: BTreeMap<&str, Vec<Vec<u32>>> = ["1.0.0", "1.1.0", "1.2.0"]
        .into_iter()
        .map(|v| (v, common::stacks(&mut rng, names.len(), STACKS_PER_VERSION)))
        .collect();
    let started = Instant::now();
    let threads = 4;
    let bytes = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (names, by_version, bytes) = (&names, &by_version, &bytes);
            s.spawn(move || {
                let store = common::open(port, "scale");
                let mut rng = fastrand::Rng::with_seed(0xabc + t as u64);
                for m in (t as i64..minutes).step_by(threads) {
                    let (version, zone, instance) = who(m, days);
                    let key = WindowKey {
                        deployment: Deployment { service: "indexing".into(), version: version.clone(), zone },
                        profile_type: "cpu".into(),
                        start: NOW - (minutes - m) * 60,
                        instance,
                    };
                    let p = common::window(
                        &mut rng,
                        names,
                        &by_version[version.as_str()],
                        &key,
                        SAMPLES_PER_WINDOW,
                    );
                    let gz = profile::encode_to_vec(&p);
                    bytes.fetch_add(gz.len(), std::sync::atomic::Ordering::Relaxed);
                    store.put_window(&key, gz).unwrap();
                }
            });
        }
    });
    let total = bytes.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "filled {minutes} windows ({} MiB, {} KiB each) in {:.0} s",
        total >> 20,
        total / minutes as usize / 1024,
        started.elapsed().as_secs_f64()
    );
    let store = common::open(port, "scale");
    let started = Instant::now();
    let opts = CompactOptions {
        service: None,
        rescan_days: 2,
        full: false,
        fold_library: true,
        now: DateTime::from_timestamp(NOW, 0).unwrap(),
    };
    let done = compact(&store, &opts, &mut |_| {}).unwrap();
    eprintln!(
        "compacted: {} hour and {} day rollups from {} windows in {:.0} s ({:.0} windows/s), {} warnings",
        done.hours,
        done.days,
        done.windows,
        started.elapsed().as_secs_f64(),
        done.windows as f64 / started.elapsed().as_secs_f64(),
        done.warnings.len()
    );
    store.put_rollup_object(MARKER, b"1".to_vec()).unwrap();
}

fn bench(c: &mut Criterion) {
    let days: i64 = std::env::var("CONTPROF_SCALE_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(30);
    let (port, _moto) = common::moto_from_env("CONTPROF_SCALE_MOTO_PORT");
    common::make_bucket(port, "scale");
    let store = common::open(port, "scale");
    if store.get_production_objects(&[MARKER.to_owned()]).unwrap()[0].is_none() {
        fill(port, days);
    }
    let now = DateTime::from_timestamp(NOW, 0).unwrap();
    let page = |since: &str| {
        let q = ProdQuery {
            service: "indexing".into(),
            profile_type: "cpu".into(),
            since: since.into(),
            color: "version".into(),
            ..ProdQuery::default()
        };
        let mut out = Vec::new();
        write_page(&mut out, &store, &q, &Comparing::default(), (true, None), now).unwrap();
        out
    };
    for span in ["24h", "30d"] {
        // Where the time goes: reading and decoding, then the page (flame tree and HTML).
        let t = Instant::now();
        let sel = contprof_engine::prod::select::Selection {
            since: contprof_engine::store::parse_time(span, now, false),
            ..Default::default()
        };
        let want = contprof_engine::prod::load::Want { stacks: true, ..Default::default() };
        let loaded = contprof_engine::prod::load::load(&store, "indexing", "cpu", &sel, &want, now).unwrap();
        let read = t.elapsed().as_secs_f64();
        let samples: usize = loaded.stacks.iter().map(|p| p.sample.len()).sum();
        let t = Instant::now();
        let out = page(span);
        eprintln!(
            "{span}: {} windows from {} rollups and {} window profiles, {samples} stack samples; \
             load {read:.2} s; whole page ({} KiB) {:.2} s",
            loaded.observations.len(),
            loaded.rollups_read,
            loaded.windows_read,
            out.len() / 1024,
            t.elapsed().as_secs_f64()
        );
    }
    let mut g = c.benchmark_group("prod_view");
    g.sample_size(10);
    g.bench_function("24h", |b| b.iter(|| page("24h")));
    g.bench_function("30d", |b| b.iter(|| page("30d")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
