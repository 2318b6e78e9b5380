//! Store queries at scale: 10,000 runs in a temporary local store, over a chain of 2,100 commits of
//! which the newest 100 have no runs. Times `log` (all runs, and filtered by tag) and the
//! nearest-ancestor-with-runs lookup from `HEAD` (a `git rev-list` plus the index), and prints the
//! bytes a run takes on disk.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use contprof_engine::git::{Repo, RepoState};
use contprof_engine::store::{
    LogFilter, NewProfile, NewRun, Store, StoreLocation, StoreOptions, nearest_ancestor_with_runs,
};
use criterion::{Criterion, criterion_group, criterion_main};

const RUNS: usize = 10_000;
const COMMITS_WITH_RUNS: usize = 2_000;
const COMMITS_WITHOUT: usize = 100;

/// A linear history of `n` empty commits on `main`, made with `git fast-import` in one go.
fn commit_chain(dir: &Path, n: usize) -> Vec<String> {
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(dir).args(args).output().expect("git runs");
    git(&["init", "-q", "-b", "main"]);
    let mut stream = String::new();
    for i in 1..=n {
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{i}\ncommitter b <b@example.com> {} +0000\ndata 3\nc{}\n",
            1_700_000_000 + i,
            i % 10
        ));
        if i > 1 {
            stream.push_str(&format!("from :{}\n", i - 1));
        }
        stream.push('\n');
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    child.stdin.take().expect("stdin").write_all(stream.as_bytes()).expect("feed fast-import");
    assert!(child.wait().expect("fast-import").success());
    git(&["reset", "-q", "--hard", "main"]);
    let out = git(&["rev-list", "--reverse", "main"]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// A stand-in for a small gzipped profile: a few KB of protobuf-like bytes.
fn small_profile(i: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for f in 0..200 {
        raw.extend_from_slice(format!("\x32\x20mycrate::module::function_{f}_{}", i % 7).as_bytes());
        raw.extend_from_slice(&(f as u64 * 7919 + i as u64).to_le_bytes());
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&raw).expect("gzip");
    e.finish().expect("gzip")
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let commits = commit_chain(repo_dir.path(), COMMITS_WITH_RUNS + COMMITS_WITHOUT);
    let repo = Repo::discover(repo_dir.path()).expect("repo");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let location = StoreLocation::Dir(store_dir.path().to_path_buf());
    // Setup without fsync (same layout, same index; only durability differs) to keep it short.
    let store =
        Store::open_with(&location, StoreOptions { fsync: false, ..StoreOptions::default() }).expect("store");
    let started = std::time::Instant::now();
    for i in 0..RUNS {
        let commit = &commits[i % COMMITS_WITH_RUNS];
        let mut new = NewRun::new(RepoState::Commit {
            commit: commit.clone(),
            branch: Some("main".into()),
            dirty: None,
            shallow: false,
        });
        new.target = "x86_64-unknown-linux-gnu".into();
        new.tags.insert("service".into(), format!("svc{}", i % 10));
        let profile = NewProfile {
            group: "bench/parse/large".into(),
            repetition: 0,
            exit_code: Some(0),
            stopped: None,
            bytes: small_profile(i),
        };
        store.write_run(new, vec![profile]).expect("record");
    }
    eprintln!("setup: {RUNS} runs written in {:.1?} (no fsync)", started.elapsed());
    let one = store.log(&LogFilter { limit: Some(1), ..LogFilter::default() }).expect("log");
    let run_dir = store_dir.path().join("runs").join(&one.runs[0].run_id);
    let profile_bytes = one.runs[0].bytes;
    let run_bytes = dir_size(&run_dir);
    let index_bytes = dir_size(&store_dir.path().join("index"));
    eprintln!(
        "bytes per run: {run_bytes} in runs/<id>/ ({profile_bytes} profile + {} metadata) + {} index \
         (index total {index_bytes} B for {RUNS} runs)",
        run_bytes - profile_bytes,
        index_bytes / RUNS as u64
    );

    let store = Store::open(&location).expect("store");
    let mut g = c.benchmark_group("store_10k_runs");
    g.sample_size(20);
    g.bench_function("log_all", |b| b.iter(|| store.log(&LogFilter::default()).expect("log").runs.len()));
    g.bench_function("log_tag_filter_limit_20", |b| {
        let f = LogFilter {
            tags: vec![("service".into(), "svc3".into())],
            limit: Some(20),
            ..LogFilter::default()
        };
        b.iter(|| store.log(&f).expect("log").runs.len())
    });
    g.bench_function("nearest_ancestor_with_runs_depth_100", |b| {
        b.iter(|| {
            let base =
                nearest_ancestor_with_runs(&store, &repo, "HEAD", 1000).expect("lookup").expect("found");
            assert_eq!(base.distance, COMMITS_WITHOUT);
            base.runs.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
