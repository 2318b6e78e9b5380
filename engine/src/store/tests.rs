//! Tests of the local store: integrity, concurrency, corruption, versions, retention, queries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::git::RepoState;
use crate::git::tests::temp_repo;

/// A server a test runs against (moto, Azurite), on a free loopback port; killed when dropped.
pub(super) struct Server {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `program` with `args`, to listen on loopback `port`, and waits until it does. Returns
/// `None` (after saying so, with `install`, the way to get it) when it cannot be started and the
/// environment variable `required` is unset; panics when it is set (CI).
pub(super) fn start_server(
    program: &std::path::Path,
    port: u16,
    args: &[String],
    required: &str,
    install: &str,
) -> Option<Server> {
    let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let spawned = Command::new(program)
        .args(args)
        // Debug logs and lock files some servers write go to the temporary directory.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) if std::env::var_os(required).is_none() => {
            eprintln!(
                "\n*** SKIPPING TEST: cannot start `{name}` ({e}); {install} (set {required}=1 to make \
                 this a failure) ***\n"
            );
            return None;
        }
        Err(e) => panic!("{required} is set but `{name}` cannot be started: {e}"),
    };
    let server = Server { child, port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "`{name}` did not listen on port {port} within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(server)
}

/// Store options for a server on loopback: fail fast, compact early.
pub(super) fn local_server_options(config: Vec<(String, String)>) -> StoreOptions {
    StoreOptions {
        config,
        network: NetworkOptions {
            max_retries: 1,
            retry_timeout: std::time::Duration::from_secs(2),
            request_timeout: std::time::Duration::from_secs(10),
            connect_timeout: std::time::Duration::from_secs(1),
        },
        compact_at: 4,
        merge_at: 3,
        ..StoreOptions::default()
    }
}

pub(super) fn gz(payload: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(payload).unwrap();
    e.finish().unwrap()
}

pub(super) fn commit_state(commit: &str, branch: &str) -> RepoState {
    RepoState::Commit {
        commit: commit.to_string(),
        branch: Some(branch.to_string()),
        dirty: None,
        shallow: false,
    }
}

pub(super) fn new_run(repo: RepoState, tags: &[(&str, &str)]) -> NewRun {
    let mut n = NewRun::new(repo);
    n.target = "x86_64-unknown-linux-gnu".into();
    n.command = vec!["cargo".into(), "contprof".into(), "bench".into()];
    n.settings = Settings {
        engine: crate::store::Recorder::Agent,
        frequency_hz: 99,
        alloc_mode: Some(contprof_protocol::format::AllocMode::Off),
        alloc_interval: None,
        runs: 1,
        unwind: contprof_protocol::env::Unwind::Tables,
        contention_rate_ns: None,
        wall_hz: None,
    };
    n.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    n
}

pub(super) fn profile(group: &str) -> NewProfile {
    NewProfile {
        group: group.into(),
        repetition: 0,
        exit_code: Some(0),
        stopped: None,
        bytes: gz(b"profile bytes"),
    }
}

fn dir_store(dir: &Path) -> Store {
    Store::open(&StoreLocation::Dir(dir.to_path_buf())).unwrap()
}

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

#[test]
fn records_lists_shows_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreLocation::Default { workspace_root: tmp.path().to_path_buf() }).unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join(".contprof/.gitignore")).unwrap(), "*\n");
    let meta = store
        .write_run(
            new_run(commit_state(C1, "main"), &[("service", "api")]),
            vec![profile("bench/parse/large"), profile("bin/x")],
        )
        .unwrap();
    assert!(tmp.path().join(".contprof/store/store.json").exists());
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.len(), 1);
    assert_eq!(log.runs[0].groups, vec!["bench/parse/large", "bin/x"]);
    assert_eq!(store.show(&meta.run_id).unwrap(), meta);
    let out = tempfile::tempdir().unwrap();
    let files = store.export(&meta.run_id, out.path()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(std::fs::read(&files[0]).unwrap(), gz(b"profile bytes"));
    let mut text = Vec::new();
    render_log(&log, &mut text).unwrap();
    render_show(&meta, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("service=api") && text.contains("bench/parse/large"), "{text}");
}

/// Issue 15.13: a stored `meta.json` naming a profile file outside the run (written by anyone
/// who can write to a shared bucket) is corrupt: `export` writes nothing outside its directory.
#[test]
fn export_refuses_profile_file_names_that_are_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let run = store.write_run(new_run(commit_state(C1, "main"), &[]), vec![profile("bin/x")]).unwrap();
    let meta_path = tmp.path().join(format!("runs/{}/meta.json", run.run_id));
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let stored = &run.profiles[0].file;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("export");
    for evil in ["../escaped.pb.gz", "/tmp/absolute.pb.gz", "..", "sub/dir.pb.gz"] {
        std::fs::write(&meta_path, text.replace(stored.as_str(), evil)).unwrap();
        let err = store.export(&run.run_id, &target).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{evil}: {err}");
        assert!(err.to_string().contains("not one this tool writes"), "{err}");
    }
    assert!(!out.path().join("escaped.pb.gz").exists());
    assert!(std::fs::read_dir(&target).map_or(0, |d| d.count()) == 0);
}

/// Runs as a child process of `killed_writer_leaves_nothing_visible`: writes a profile, says so on
/// stdout, then waits before the metadata until it is killed.
#[test]
#[ignore = "helper run as a child process by killed_writer_leaves_nothing_visible"]
fn child_writer_paused_before_metadata() {
    let Some(dir) = std::env::var_os("CONTPROF_TEST_CHILD_STORE") else { return };
    let store = dir_store(Path::new(&dir));
    let mut w = store.begin_run(new_run(commit_state(C1, "main"), &[])).unwrap();
    w.add_profile("bin/x", 0, Some(0), gz(b"partial")).unwrap();
    w.pause = Some(Box::new(|| {
        println!("READY");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(120));
    }));
    w.commit().unwrap();
}

#[test]
fn killed_writer_leaves_nothing_visible() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store::tests::child_writer_paused_before_metadata", "--ignored", "--nocapture"])
        .env("CONTPROF_TEST_CHILD_STORE", tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("READY"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child writer never reached the pause");
    let store = dir_store(tmp.path());
    assert!(store.log(&LogFilter::default()).unwrap().runs.is_empty());
    let runs_dir = std::fs::read_dir(tmp.path().join("runs")).unwrap().count();
    assert_eq!(runs_dir, 1, "the profile was written before the kill");
    // Orphans younger than a day stay (a writer may still be at work); older ones go.
    let report = store.gc(&GcPolicy::default(), false).unwrap();
    assert!(report.orphans.is_empty());
    let later = GcPolicy { now: Utc::now() + Duration::days(2), ..GcPolicy::default() };
    let report = store.gc(&later, false).unwrap();
    assert_eq!(report.orphans.len(), 1);
    let left: Vec<_> = walk_all(&tmp.path().join("runs"));
    assert_eq!(std::fs::read_dir(tmp.path().join("runs")).map(|d| d.count()).unwrap_or(0), 0, "{left:?}");
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk_all(&e.path()));
        }
    }
    out
}

#[test]
fn concurrent_writers_lose_nothing_through_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions { compact_at: 3, merge_at: 3, ..StoreOptions::default() };
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let dir = tmp.path().to_path_buf();
            let opts = opts.clone();
            std::thread::spawn(move || {
                let store = Store::open_with(&StoreLocation::Dir(dir), opts).unwrap();
                let mut ids = Vec::new();
                for i in 0..20 {
                    let tag = format!("{t}-{i}");
                    ids.push(
                        store
                            .write_run(
                                new_run(commit_state(C1, "main"), &[("w", &tag)]),
                                vec![profile("bin/x")],
                            )
                            .unwrap()
                            .run_id,
                    );
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    ids.sort();
    let store = dir_store(tmp.path());
    let log = store.log(&LogFilter::default()).unwrap();
    let mut seen: Vec<String> = log.runs.iter().map(|r| r.run_id.clone()).collect();
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!(seen.len(), 40);
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let loose = std::fs::read_dir(tmp.path().join("index/loose")).map(|d| d.count()).unwrap_or(0);
    assert!(loose < 40, "compaction never ran: {loose} loose entries");
}

#[test]
fn corrupt_index_entry_and_metadata_are_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let good = store.write_run(new_run(commit_state(C1, "main"), &[]), vec![profile("bin/x")]).unwrap();
    let bad = store.write_run(new_run(commit_state(C2, "main"), &[]), vec![profile("bin/x")]).unwrap();
    std::fs::write(tmp.path().join("index/loose/20990101T000000.000000Z-0000000000.json"), b"{\"vers")
        .unwrap();
    let meta = tmp.path().join(format!("runs/{}/meta.json", bad.run_id));
    let text = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 2]).unwrap();

    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.len(), 2);
    assert_eq!(log.warnings.len(), 1);
    assert!(log.warnings[0].path.contains("20990101T000000"), "{}", log.warnings[0]);
    let err = store.show(&bad.run_id).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    assert!(err.to_string().contains(&format!("runs/{}/meta.json", bad.run_id)), "{err}");
    assert!(store.show(&good.run_id).is_ok());
    // A target filter that must open the metadata skips the corrupt run with a warning.
    let many: Vec<NewProfile> =
        (0..SUMMARY_GROUPS_FOR_TEST + 2).map(|i| profile(&format!("test/t{i}"))).collect();
    store.write_run(new_run(commit_state(C2, "main"), &[]), many).unwrap();
    let hit = store.log(&LogFilter { target: Some("test/t17".into()), ..LogFilter::default() }).unwrap();
    assert_eq!(hit.runs.len(), 1);
}

const SUMMARY_GROUPS_FOR_TEST: usize = 16;

#[test]
fn newer_store_version_is_refused_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("store.json"), br#"{"format":"cargo-contprof-store","version":99}"#)
        .unwrap();
    let err = Store::open(&StoreLocation::Dir(tmp.path().to_path_buf())).unwrap_err();
    assert!(matches!(err, StoreError::NewerVersion { version: 99, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("99") && msg.contains(&tmp.path().display().to_string()), "{msg}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn gc_keeps_recent_runs_and_newest_of_default_branch_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let now = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let at = |commit: &str, days: i64| {
        let mut n = new_run(commit_state(commit, "main"), &[]);
        n.time = now - Duration::days(days);
        store.write_run(n, vec![profile("bin/x")]).unwrap().run_id
    };
    let c1_old = at(C1, 50);
    let c1_newer = at(C1, 40);
    let c2_old = at(C2, 45);
    let c2_recent = at(C2, 2);
    let policy = GcPolicy { keep: Duration::days(30), protected_commits: [C1.to_string()].into(), now };
    let dry = store.gc(&policy, true).unwrap();
    let mut gone: Vec<&str> = dry.deleted.iter().map(|r| r.run_id.as_str()).collect();
    gone.sort();
    let mut want = vec![c1_old.as_str(), c2_old.as_str()];
    want.sort();
    assert_eq!(gone, want);
    assert_eq!(store.log(&LogFilter::default()).unwrap().runs.len(), 4, "dry run deletes nothing");
    let mut text = Vec::new();
    render_gc(&dry, true, &mut text).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("would delete 2 runs"));

    store.gc(&policy, false).unwrap();
    let left: Vec<String> =
        store.log(&LogFilter::default()).unwrap().runs.into_iter().map(|r| r.run_id).collect();
    assert_eq!(left, vec![c2_recent, c1_newer]);
    assert!(matches!(store.show(&c1_old), Err(StoreError::NotFound { .. })));
    // The tombstones outlive the index entries by the grace period, then a later gc removes them.
    let tombstones = || std::fs::read_dir(tmp.path().join("index/deleted")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(tombstones(), 2);
    age_tombstones(tmp.path());
    store.gc(&policy, false).unwrap();
    assert_eq!(tombstones(), 0);
    assert_eq!(store.log(&LogFilter::default()).unwrap().runs.len(), 2);
}

/// Makes every tombstone older than the grace period.
fn age_tombstones(root: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for e in std::fs::read_dir(root.join("index/deleted")).into_iter().flatten().flatten() {
        std::fs::File::options().write(true).open(e.path()).unwrap().set_modified(old).unwrap();
    }
}

/// Issue 15.16: a compaction that read the index before gc deleted a run, and writes its segment
/// after gc's cleanup, does not bring the run back: its tombstone is still there, and the next gc
/// drops the entry for good.
#[test]
fn a_compaction_racing_gc_does_not_resurrect_a_deleted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let now = chrono::Utc::now();
    let at = |commit: &str, days: i64| {
        let mut n = new_run(
            RepoState::Commit { commit: commit.into(), branch: None, dirty: None, shallow: false },
            &[],
        );
        n.time = now - Duration::days(days);
        store.write_run(n, vec![profile("bin/x")]).unwrap().run_id
    };
    let doomed = at(C1, 50);
    let kept = at(C2, 1);
    // A compaction reads the loose entries (both runs)...
    let loose: Vec<String> = store.backend.list(index::LOOSE).unwrap().into_iter().map(|l| l.path).collect();
    assert_eq!(loose.len(), 2);
    let merge = index::read_for_merge(&store.backend, &loose).unwrap();
    // ...gc deletes the old run meanwhile...
    let policy = GcPolicy { keep: Duration::days(30), protected_commits: Default::default(), now };
    assert_eq!(store.gc(&policy, false).unwrap().deleted.len(), 1);
    // ...and the compaction writes its segment, with the deleted run's entry in it.
    index::write_merged(&store.backend, merge).unwrap();
    let visible = || -> Vec<String> {
        store.log(&LogFilter::default()).unwrap().runs.into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(visible(), vec![kept.clone()], "the deleted run stays hidden");
    assert!(matches!(store.show(&doomed), Err(StoreError::NotFound { .. })));
    // Past the grace period, gc drops the entry, then the tombstone.
    age_tombstones(tmp.path());
    store.gc(&policy, false).unwrap();
    age_tombstones(tmp.path());
    store.gc(&policy, false).unwrap();
    assert!(!index::known_ids(&store.backend).unwrap().contains(&doomed));
    assert_eq!(visible(), vec![kept]);
}

#[test]
fn log_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    for (i, (commit, branch, tag, group)) in [
        (C1, "main", "a", "bench/parse/large"),
        (C1, "feature", "b", "bin/tool"),
        (C2, "main", "a", "test/mycrate::tests::foo"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut n = new_run(commit_state(commit, branch), &[("svc", tag)]);
        n.time = base + Duration::days(i as i64);
        store.write_run(n, vec![profile(group)]).unwrap();
    }
    let count = |f: LogFilter| store.log(&f).unwrap().runs.len();
    assert_eq!(count(LogFilter::default()), 3);
    assert_eq!(count(LogFilter { commits: vec![C1.into()], ..Default::default() }), 2);
    assert_eq!(count(LogFilter { branch: Some("main".into()), ..Default::default() }), 2);
    assert_eq!(count(LogFilter { tags: vec![("svc".into(), "a".into())], ..Default::default() }), 2);
    assert_eq!(count(LogFilter { target: Some("parse".into()), ..Default::default() }), 1);
    assert_eq!(count(LogFilter { target: Some("tests::foo".into()), ..Default::default() }), 1);
    assert_eq!(count(LogFilter { since: Some(base + Duration::hours(12)), ..Default::default() }), 2);
    assert_eq!(count(LogFilter { until: Some(base + Duration::hours(12)), ..Default::default() }), 1);
    let newest = store.log(&LogFilter { limit: Some(1), ..Default::default() }).unwrap();
    assert_eq!(newest.runs[0].key, C2, "newest first");
}

#[test]
fn revisions_resolve_to_runs_and_nearest_ancestor() {
    let (_d, repo, commits) = temp_repo(6);
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let r1 =
        store.write_run(new_run(commit_state(&commits[1], "main"), &[]), vec![profile("bin/x")]).unwrap();
    let r3 =
        store.write_run(new_run(commit_state(&commits[3], "main"), &[]), vec![profile("bin/x")]).unwrap();
    let near = nearest_ancestor_with_runs(&store, &repo, "HEAD", 100).unwrap().unwrap();
    assert_eq!((near.commit.as_str(), near.distance), (commits[3].as_str(), 2));
    assert_eq!(near.runs[0].run_id, r3.run_id);
    let near = nearest_ancestor_with_runs(&store, &repo, "HEAD~3", 100).unwrap().unwrap();
    assert_eq!(near.runs[0].run_id, r1.run_id);
    assert!(nearest_ancestor_with_runs(&store, &repo, "HEAD~5", 100).unwrap().is_none());
    assert!(nearest_ancestor_with_runs(&store, &repo, "HEAD", 2).unwrap().is_none(), "depth limit");
    assert_eq!(resolve_run(&store, Some(&repo), "HEAD~2").unwrap().run_id, r3.run_id);
    assert_eq!(resolve_run(&store, Some(&repo), &commits[1][..7]).unwrap().run_id, r1.run_id);
    assert_eq!(resolve_run(&store, None, &r1.run_id).unwrap().run_id, r1.run_id);
    let err = resolve_run(&store, Some(&repo), "HEAD").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }) && err.to_string().contains("`HEAD`"), "{err}");
    let err = resolve_run(&store, Some(&repo), "nope").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    // On main, the baseline of HEAD is its nearest ancestor with runs.
    assert_eq!(baseline_for(&store, &repo, "HEAD", 100).unwrap().unwrap().commit, commits[3]);
    assert!(gc_protected_commits(&repo).unwrap().contains(&commits[0]));
}

#[test]
fn import_validates_every_file_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = dir_store(tmp.path());
    let files = tempfile::tempdir().unwrap();
    let good = files.path().join("cpu.pb.gz");
    std::fs::write(&good, gz(b"\x0a\x04some")).unwrap();
    let empty = files.path().join("empty.pb.gz");
    std::fs::write(&empty, gz(b"")).unwrap();
    let plain = files.path().join("plain.pb");
    std::fs::write(&plain, b"\x0a\x04some").unwrap();
    for bad in [&empty, &plain] {
        let list =
            [ImportFile { path: good.clone(), group: None }, ImportFile { path: bad.clone(), group: None }];
        let err = store.import(new_run(RepoState::NoGit { reason: "test".into() }, &[]), &list).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput(_))
                && err.to_string().contains(&bad.display().to_string())
        );
    }
    assert!(!tmp.path().join("runs").exists(), "nothing written");
    let meta = store
        .import(
            new_run(RepoState::NoGit { reason: "test".into() }, &[("from", "go")]),
            &[ImportFile { path: good, group: None }],
        )
        .unwrap();
    assert_eq!(meta.key, KEY_NO_GIT);
    assert_eq!(meta.profiles[0].group, "import/cpu");
    assert_eq!(
        store.log(&LogFilter { commits: vec![KEY_NO_GIT.into()], ..Default::default() }).unwrap().runs.len(),
        1
    );
}

#[test]
fn store_urls_parse() {
    assert_eq!(StoreLocation::parse("file:///tmp/s").unwrap(), StoreLocation::Dir("/tmp/s".into()));
    assert_eq!(StoreLocation::parse("s3://b/p/").unwrap(), StoreLocation::Url("s3://b/p".into()));
    assert!(StoreLocation::parse("ftp://x").is_err());
    assert!(StoreLocation::parse("s3://").is_err());
    assert!(StoreLocation::parse("file://rel").is_err());
    assert!(is_loopback_http("http://127.0.0.1:5000"));
    assert!(is_loopback_http("http://localhost:9000/"));
    assert!(!is_loopback_http("http://example.com:9000"));
    assert!(!is_loopback_http("https://127.0.0.1"));
}
