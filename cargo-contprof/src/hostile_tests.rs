//! Hostile bytes for every parser of outside input: the agent's raw sample files, pprof profiles
//! (gzipped and plain), a stored run's `meta.json`, the store's index entries, the configuration
//! file, and what the viewer reads of a request (target, Host header, query string). Each input
//! is random bytes or a mutation of a valid one (bit flips, overwritten, inserted, deleted and
//! duplicated ranges, truncation, two inputs spliced); each parser must answer with a value or an error, never a
//! panic, and in bounded time (every input is at most a few KiB, and each parser's allocations
//! are bounded by its input or by its own limits).
//!
//! [`CASES`] cases per parser in every `cargo test` run (`CONTPROF_HOSTILE_CASES` raises it), from
//! fixed seeds so that CI runs the same inputs; a failing case prints the parser, the case, its
//! seed and the input in hex, and `CONTPROF_HOSTILE_SEED=<seed>` replays that one case.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Cases per parser in an ordinary test run.
const CASES: u64 = 600;

fn cases() -> u64 {
    std::env::var("CONTPROF_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES)
}

/// One mutation of `base` (or of a splice of it with `other`), or random bytes.
fn mutate(rng: &mut fastrand::Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    if base.is_empty() || rng.u8(..) < 24 {
        let len = rng.usize(..4096);
        return (0..len).map(|_| rng.u8(..)).collect();
    }
    let mut v = base.to_vec();
    for _ in 0..rng.usize(1..6) {
        let len = v.len().max(1);
        let at = rng.usize(..len);
        match rng.u8(..8) {
            0 => {
                if let Some(b) = v.get_mut(at) {
                    *b ^= 1 << rng.u8(..8);
                }
            }
            1 => {
                for b in v.iter_mut().skip(at).take(rng.usize(1..16)) {
                    *b = rng.u8(..);
                }
            }
            2 => {
                let n = rng.usize(1..32);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        let any = rng.u8(..);
                        rng.choice([0u8, 0xff, 0x7f, 0x80, any]).unwrap_or(0)
                    })
                    .collect();
                v.splice(at.min(v.len())..at.min(v.len()), bytes);
            }
            3 => {
                let end = (at + rng.usize(1..64)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 => v.truncate(at),
            5 => {
                let end = (at + rng.usize(1..64)).min(v.len());
                let copy = v[at.min(end)..end].to_vec();
                let to = rng.usize(..=v.len());
                v.splice(to..to, copy);
            }
            6 if !other.is_empty() => {
                let cut = rng.usize(..=other.len());
                v.truncate(at.min(v.len()));
                v.extend_from_slice(&other[cut..]);
            }
            _ => {
                // Lengths and counts are where parsers trust input: set a little-endian u32 to an extreme.
                if at + 4 <= v.len() {
                    let x = rng.choice([0u32, 1, u32::MAX, 0x7fff_ffff, 0x0010_0000]).unwrap_or(0);
                    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    v
}

/// Feeds `cases()` hostile inputs derived from `valid` to `parse`, which must not panic.
fn hostile(name: &str, valid: &[Vec<u8>], parse: impl Fn(&[u8])) {
    let seeds: Vec<u64> = match std::env::var("CONTPROF_HOSTILE_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..cases()).map(|i| 0x5eed_0000_0000 ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect(),
    };
    let empty = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(seed);
        let base = if valid.is_empty() { &empty } else { &valid[rng.usize(..valid.len())] };
        let other = if valid.is_empty() { &empty } else { &valid[rng.usize(..valid.len())] };
        let input = mutate(&mut rng, base, other);
        if catch_unwind(AssertUnwindSafe(|| parse(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "{name}: case {i} (CONTPROF_HOSTILE_SEED={seed}) panicked on {} bytes: {hex}",
                input.len()
            );
        }
    }
}

/// A small symbolized profile (from a raw file of this test binary's own addresses).
fn sample_profile() -> crate::profile::Profile {
    let raw = contprof_protocol::format::RawFile::parse(&valid_raw()).unwrap();
    crate::profile::build_profile(&raw, &mut crate::symbolize::Symbolizer::new(), &Default::default()).profile
}

fn valid_raw() -> Vec<u8> {
    let here = valid_raw as *const () as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut w = crate::profile::RawWriter::new(contprof_protocol::format::Header {
        magic: contprof_protocol::format::MAGIC,
        version: contprof_protocol::format::VERSION,
        header_len: contprof_protocol::format::HEADER_LEN as u32,
        pid: 7,
        frequency_hz: 999,
        clock: 1,
        alloc_mode: 1,
        alloc_interval: 4096,
        start_unix_ns: 1,
        contention_rate_ns: 0,
        wall_period_ns: 0,
    });
    w.maps(&maps)
        .thread_name(3, "worker")
        .cpu_sample(3, &[here + 4, here + 40, contprof_protocol::format::TRUNCATED_FRAME])
        .cpu_sample(4, &[here + 8])
        .alloc_stack([1, 64, 1, 64], &[here + 12, here + 40]);
    w.message(1, "a warning");
    w.end(contprof_protocol::format::EndRecord {
        cpu_time_ns: 1,
        wall_ns: 2,
        samples: 2,
        threads: 2,
        ..Default::default()
    });
    w.bytes().to_vec()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn raw_sample_files() {
    let valid = vec![valid_raw()];
    assert!(contprof_protocol::format::RawFile::parse(&valid[0]).is_ok());
    // One symbolizer for every case: it caches the binaries it opened.
    let symbolizer = std::cell::RefCell::new(crate::symbolize::Symbolizer::new());
    hostile("raw sample file", &valid, |b| {
        if let Ok(raw) = contprof_protocol::format::RawFile::parse(b) {
            // What parses is also built into a profile without panicking.
            let _ = crate::profile::build_profile(&raw, &mut symbolizer.borrow_mut(), &Default::default());
        }
    });
}

#[test]
fn pprof_profiles_gzipped_and_plain() {
    let mut p = sample_profile();
    p.add_comments(&["a comment"]);
    let gz = crate::profile::encode_to_vec(&p);
    let plain = prost::Message::encode_to_vec(&p);
    hostile("pprof profile", &[gz, plain], |b| {
        if let Ok(p) = crate::profile::decode(b) {
            // A decoded profile is read by the comparison and the viewer without panicking.
            let _ = crate::compare::run_costs(&p, &Default::default());
            let _ = crate::profile::CostView::from_profile(&p);
            let mut tree = crate::viewer::FlameTree::new(1);
            tree.add(0, &p);
        }
    });
}

#[test]
fn stored_run_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        crate::store::Store::open(&crate::store::StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let repo = crate::git::RepoState::Commit {
        commit: "ab".repeat(20),
        branch: Some("main".into()),
        dirty: None,
        shallow: false,
    };
    let profile = crate::store::NewProfile {
        group: "bin/app".into(),
        repetition: 0,
        exit_code: Some(0),
        stopped: None,
        bytes: crate::profile::encode_to_vec(&sample_profile()),
    };
    let run = store.write_run(crate::store::NewRun::new(repo), vec![profile]).unwrap();
    let meta_path = tmp.path().join(format!("runs/{}/meta.json", run.run_id));
    let valid = vec![std::fs::read(&meta_path).unwrap()];
    hostile("meta.json", &valid, |b| {
        std::fs::write(&meta_path, b).unwrap();
        if let Ok(meta) = store.show(&run.run_id) {
            for p in &meta.profiles {
                let _ = store.read_profile(&meta.run_id, &p.file);
            }
            let _ = store.read_code_map(&meta);
        }
    });
}

#[test]
fn store_index_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        crate::store::Store::open(&crate::store::StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let repo = crate::git::RepoState::NoGit { reason: "test".into() };
    store.write_run(crate::store::NewRun::new(repo), Vec::new()).unwrap();
    let valid: Vec<Vec<u8>> =
        walk(&tmp.path().join("index")).into_iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!valid.is_empty(), "the store wrote an index entry");
    hostile("index entry", &valid, |b| {
        let _ = crate::store::index::parse_segment(b);
    });
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn configuration_files() {
    let valid = vec![
        br#"alpha = 0.01
min_effect = 0.1
ignore = ["^x::", "(?i)y"]
engine = "instructions"
fold_library = false
[thresholds]
cpu = 0.2
instructions = 0.005
[check]
runs = 7
no_baseline = "fail"
baseline = "stored"
targets = ["bin:a", "tests", "benches:parse"]
"#
        .to_vec(),
    ];
    hostile("contprof.toml", &valid, |b| {
        if let Ok(loaded) = crate::config::parse(&text(b), "contprof.toml") {
            let c = &loaded.config;
            let _ = c.options();
            let _ = crate::compare::Options::ignore_patterns(c.ignore_patterns());
            let _ = c.check_targets();
        }
    });
}

#[test]
fn http_request_targets_hosts_and_queries() {
    // hyper parses the head; what the viewer reads of it is the target, the Host header and the query.
    let valid = vec![
        b"/compare?base=20250101T120000.123456Z-0123456789&head=x&group=bin%2Fapp&format=json\nlocalhost:7878".to_vec(),
        b"/?commit=ab&tag=service%3Dapi&limit=50\n[::1]:7878".to_vec(),
    ];
    hostile("HTTP request target and Host", &valid, |b| {
        let (target, host) = b.split_at(b.iter().position(|&c| c == b'\n').unwrap_or(b.len()));
        let request = hyper::Request::builder()
            .uri(target)
            .header(hyper::header::HOST, host.get(1..).unwrap_or_default())
            .body(());
        if let Ok(request) = request
            && let Ok(r) = crate::viewer::http::Request::new(&request.into_parts().0, false)
        {
            let _ = crate::viewer::server::is_loopback_host(r.host.as_deref().unwrap_or(""));
            let _ = crate::viewer::query::decode(&r.query);
        }
    });
}
