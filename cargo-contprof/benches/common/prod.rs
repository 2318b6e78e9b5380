//! What the production benchmarks share: moto on loopback, the store on it, and generated
//! windows shaped like real ones (a call tree of shared prefixes, a skew of hot stacks, the
//! uploader's labels and comments).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contprof_engine::profile::{self, Function, Line, Location, Profile, Sample, ValueType};
use contprof_engine::store::{NetworkOptions, Store, StoreLocation, StoreOptions, WindowKey};

/// Function names as a service's profile has them, its own code in crate `own`.
pub fn names(own: &str) -> Vec<String> {
    let crates = [
        (own, &["query", "index", "segment", "merge", "http", "auth", "cache"][..]),
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
pub fn stacks(rng: &mut fastrand::Rng, functions: usize, count: usize) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = vec![vec![0, 1, 2, 3]]; // main, runtime entry frames
    while out.len() < count {
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
pub fn window(
    rng: &mut fastrand::Rng,
    names: &[String],
    stacks: &[Vec<u32>],
    key: &WindowKey,
    samples: usize,
) -> Profile {
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
    for _ in 0..samples {
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

/// `moto_server` started on loopback at `port`.
pub fn moto(port: u16) -> Child {
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

/// Makes the bucket `bucket` (nothing when it is there).
pub fn make_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
}

/// The store `s3://{bucket}/store` on the moto at `port`.
pub fn open(port: u16, bucket: &str) -> Store {
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
    Store::open_with(&StoreLocation::parse(&format!("s3://{bucket}/store")).unwrap(), options).unwrap()
}

/// A moto to use: the running one at `$var` (its data kept across runs), or a fresh one (killed
/// when the returned guard is dropped).
pub fn moto_from_env(var: &str) -> (u16, Option<KillOnDrop>) {
    match std::env::var(var).ok().and_then(|p| p.parse().ok()) {
        Some(p) => (p, None),
        None => {
            let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            (p, Some(KillOnDrop(moto(p))))
        }
    }
}

/// A child process killed when dropped.
pub struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
