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
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::DateTime;
use contprof_engine::prod::compact::{CompactOptions, compact};
use contprof_engine::profile::{self, Function, Line, Location, Profile, Sample, ValueType};
use contprof_engine::store::{Deployment, NetworkOptions, Store, StoreLocation, StoreOptions, WindowKey};
use contprof_viewer::{Comparing, ProdQuery, prod::write_page};
use criterion::{Criterion, criterion_group, criterion_main};

/// The end of the generated month: the benchmark's "now", mid-hour as a real one is.
const NOW: i64 = 1_793_536_200; // 2026-11-01T12:30:00Z
const STACKS_PER_VERSION: usize = 4_000;
const SAMPLES_PER_WINDOW: usize = 3_000;
const MARKER: &str = "scale-bench-filled";

/// Function names as a service's profile has them.
fn names() -> Vec<String> {
    let crates = [
        ("indexing", &["query", "index", "segment", "merge", "http", "auth", "cache"][..]),
        ("tokio", &["runtime::task", "runtime::scheduler", "io::driver", "net::tcp"][..]),
        ("hyper", &["proto::h1", "server::conn", "body"][..]),
        ("serde_json", &["de", "ser", "value"][..]),
        ("core", &["fmt", "str", "slice::sort", "iter"][..]),
        ("alloc", &["vec", "string", "collections::btree"][..]),
        ("std", &["io", "sync::mutex", "collections::hash::map"][..]),
    ];
    let verbs = [
        "parse", "read", "write", "poll", "encode", "decode", "lookup", "insert", "flush", "next", "visit",
        "score", "render", "hash", "spawn",
    ];
    let nouns = [
        "term", "doc", "header", "frame", "row", "posting", "block", "token", "request", "entry", "chunk",
        "key",
    ];
    let mut out = Vec::new();
    for (c, mods) in crates {
        for m in mods {
            for (i, v) in verbs.iter().enumerate() {
                for n in nouns.iter().skip(i % 3).step_by(3) {
                    out.push(format!("{c}::{m}::{v}_{n}"));
                }
            }
        }
    }
    out.truncate(900);
    out
}

/// A version's stacks: a call tree of shared prefixes, leaves spread over the functions.
fn stacks(rng: &mut fastrand::Rng, functions: usize) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = vec![vec![0, 1, 2, 3]]; // main, runtime entry frames
    while out.len() < STACKS_PER_VERSION {
        let mut s = out[rng.usize(..out.len())].clone();
        let keep = 4 + rng.usize(..s.len().saturating_sub(3).max(1));
        s.truncate(keep.min(36));
        for _ in 0..1 + rng.usize(..6) {
            s.push(4 + rng.usize(..functions - 4) as u32);
        }
        out.push(s);
    }
    out
}

/// One window's CPU profile, labelled as the uploader labels it.
fn window(rng: &mut fastrand::Rng, names: &[String], stacks: &[Vec<u32>], key: &WindowKey) -> Profile {
    let mut p = Profile::default();
    let mut strings: BTreeMap<String, i64> = BTreeMap::new();
    let mut intern = |p: &mut Profile, s: &str| -> i64 {
        *strings.entry(s.to_owned()).or_insert_with(|| {
            p.string_table.push(s.to_owned());
            (p.string_table.len() - 1) as i64
        })
    };
    intern(&mut p, "");
    for (t, u) in [("samples", "count"), ("cpu", "nanoseconds")] {
        let vt = ValueType { r#type: intern(&mut p, t), unit: intern(&mut p, u) };
        p.sample_type.push(vt);
    }
    let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
    for _ in 0..SAMPLES_PER_WINDOW {
        // Skewed: a few stacks are hot, most are rare.
        let r = rng.usize(..stacks.len());
        let i = (r * rng.usize(..stacks.len()) / stacks.len()).min(stacks.len() - 1);
        *counts.entry(i).or_default() += 1;
    }
    let mut fn_ids: BTreeMap<u32, u64> = BTreeMap::new();
    let file = intern(&mut p, "src/lib.rs");
    let labels: Vec<(i64, i64)> = [
        ("service", key.deployment.service.as_str()),
        ("version", &key.deployment.version),
        ("zone", &key.deployment.zone),
        ("instance", &key.instance),
        ("type", "cpu"),
        ("thread", "tokio-runtime-w"),
    ]
    .iter()
    .map(|(k, v)| (intern(&mut p, k), intern(&mut p, v)))
    .collect();
    for (i, n) in counts {
        let mut ids = Vec::new();
        for &f in stacks[i].iter().rev() {
            let next = fn_ids.len() as u64 + 1;
            let id = *fn_ids.entry(f).or_insert(next);
            if id == next {
                let name = intern(&mut p, &names[f as usize]);
                p.function.push(Function { id, name, system_name: name, filename: file, start_line: 1 });
                p.location.push(Location {
                    id,
                    mapping_id: 0,
                    // The function's own address: the same in every window of a build, as
                    // in real profiles (merging relies on it).
                    address: 0x1000 + u64::from(f) * 16,
                    line: vec![Line { function_id: id, line: 10, column: 0 }],
                    is_folded: false,
                });
            }
            ids.push(id);
        }
        let label =
            labels.iter().map(|&(key, str)| profile::Label { key, str, num: 0, num_unit: 0 }).collect();
        p.sample.push(Sample { location_id: ids, value: vec![n, n * 10_000_000], label });
    }
    p.period = 10_000_000;
    p.duration_nanos = 10_000_000_000;
    p.time_nanos = key.start * 1_000_000_000;
    for c in [
        format!("contprof.service={}", key.deployment.service),
        format!("contprof.window_start={}", key.start),
    ] {
        let i = intern(&mut p, &c);
        p.comment.push(i);
    }
    p
}

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

fn moto(port: u16) -> Child {
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server on PATH (pip install 'moto[server]')");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn make_bucket(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /scale HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
}

fn open(port: u16) -> Store {
    let config = [
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ];
    let options = StoreOptions {
        config: config.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        network: NetworkOptions { request_timeout: Duration::from_secs(120), ..NetworkOptions::default() },
        ..StoreOptions::default()
    };
    Store::open_with(&StoreLocation::parse("s3://scale/store").unwrap(), options).unwrap()
}

/// Writes the month's windows with a few threads, then compacts; prints what it took.
fn fill(port: u16, days: i64) {
    let minutes = days * 1_440;
    let names = names();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let by_version: BTreeMap<&str, Vec<Vec<u32>>> =
        ["1.0.0", "1.1.0", "1.2.0"].into_iter().map(|v| (v, stacks(&mut rng, names.len()))).collect();
    let started = Instant::now();
    let threads = 4;
    let bytes = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (names, by_version, bytes) = (&names, &by_version, &bytes);
            s.spawn(move || {
                let store = open(port);
                let mut rng = fastrand::Rng::with_seed(0xabc + t as u64);
                for m in (t as i64..minutes).step_by(threads) {
                    let (version, zone, instance) = who(m, days);
                    let key = WindowKey {
                        deployment: Deployment { service: "indexing".into(), version: version.clone(), zone },
                        profile_type: "cpu".into(),
                        start: NOW - (minutes - m) * 60,
                        instance,
                    };
                    let p = window(&mut rng, names, &by_version[version.as_str()], &key);
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
    let store = open(port);
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
    let (port, _moto) = match std::env::var("CONTPROF_SCALE_MOTO_PORT").ok().and_then(|p| p.parse().ok()) {
        Some(p) => (p, None),
        None => {
            let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            (p, Some(KillOnDrop(moto(p))))
        }
    };
    make_bucket(port);
    let store = open(port);
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

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
