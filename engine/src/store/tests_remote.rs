//! The store tests every object-storage backend passes, each against a real server started on a
//! free loopback port (`tests_s3.rs`: moto; `tests_gcs.rs`: fake-gcs-server): the same bodies,
//! so that a backend is tested as much as the others or not at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::tests::{commit_state, new_run, profile};
use super::*;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

/// A running server (its processes are killed when it is dropped).
pub(super) type Running = Box<dyn std::any::Any + Send>;

/// How to run one backend's server and reach it.
pub(super) struct Remote {
    /// The URL scheme of the backend: `s3`, `gs`.
    pub scheme: &'static str,
    /// Starts a fresh, empty server answering on `port`; `None` when it is not installed and not
    /// required (the start says so).
    pub start: fn(port: u16) -> Option<Running>,
    /// Creates a bucket on the server answering on `port`.
    pub make_bucket: fn(port: u16, bucket: &str),
    /// The store options (endpoint, credentials) that reach the server on `port`.
    pub options: fn(port: u16) -> StoreOptions,
}

/// Sends a raw HTTP/1.1 request to the server on `port` until it answers 200 (retried: a freshly
/// started server, on two cores shared with the other tests, may still reset the first connections).
pub(super) fn send_until_ok(port: u16, request: &str) {
    use std::io::{Read, Write};
    let attempt = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.write_all(request.as_bytes())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    };
    let mut last = String::new();
    for _ in 0..50 {
        match attempt() {
            Ok(reply) if reply.starts_with("HTTP/1.1 200") => return,
            Ok(reply) => last = reply,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} failed: {last}", request.lines().next().unwrap_or_default());
}

impl Remote {
    fn url(&self, rest: &str) -> String {
        format!("{}://{rest}", self.scheme)
    }

    fn store(&self, port: u16, rest: &str) -> Store {
        Store::open_with(&StoreLocation::parse(&self.url(rest)).unwrap(), (self.options)(port)).unwrap()
    }
}

pub(super) fn write_list_read_back_and_version_check(remote: &Remote) {
    let port = super::tests::free_port();
    let Some(_server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "profiles");
    let store = remote.store(port, "profiles/team/proj");
    let a = store
        .write_run(new_run(commit_state(C1, "main"), &[("svc", "api")]), vec![profile("bin/x")])
        .unwrap();
    let b = store
        .write_run(new_run(commit_state(C2, "main"), &[]), vec![profile("bench/a"), profile("bench/b")])
        .unwrap();
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec![&b.run_id, &a.run_id]);
    assert_eq!(store.show(&b.run_id).unwrap(), b);
    assert_eq!(store.read_profile(&b.run_id, &b.profiles[1].file).unwrap(), tests::gz(b"profile bytes"));
    let out = tempfile::tempdir().unwrap();
    assert_eq!(store.export(&b.run_id, out.path()).unwrap().len(), 2);
    assert_eq!(store.nearest_with_runs(&[C2.to_string(), C1.to_string()]).unwrap().unwrap().commit, C2);

    // Same bucket, another prefix: a store of a newer format is refused before anything is written.
    let other = remote.store(port, "profiles/newer");
    other.backend.put("store.json", &br#"{"format":"cargo-contprof-store","version":7}"#[..]).unwrap();
    let url = remote.url("profiles/newer");
    let err = Store::open_with(&StoreLocation::parse(&url).unwrap(), (remote.options)(port)).unwrap_err();
    assert!(matches!(err, StoreError::NewerVersion { version: 7, .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

pub(super) fn two_concurrent_writers(remote: &'static Remote) {
    let port = super::tests::free_port();
    let Some(_server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "shared");
    let writers: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let store = remote.store(port, "shared/ci");
                (0..20)
                    .map(|i| {
                        let tag = format!("{t}-{i}");
                        let run = new_run(commit_state(C1, "main"), &[("w", &tag)]);
                        store.write_run(run, vec![profile("bin/x")]).unwrap().run_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    ids.sort();
    let log = remote.store(port, "shared/ci").log(&LogFilter::default()).unwrap();
    let mut seen: Vec<String> = log.runs.into_iter().map(|r| r.run_id).collect();
    seen.sort();
    assert_eq!(seen.len(), 40);
    assert_eq!(seen, ids);
}

pub(super) fn retention(remote: &Remote) {
    let port = super::tests::free_port();
    let Some(_server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "keep");
    let store = remote.store(port, "keep");
    let now = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let at = |commit: &str, days: i64| {
        let mut n = new_run(commit_state(commit, "main"), &[]);
        n.time = now - chrono::Duration::days(days);
        store.write_run(n, vec![profile("bin/x")]).unwrap().run_id
    };
    let _c1_old = at(C1, 60);
    let c1_newest = at(C1, 50);
    let _c2_old = at(C2, 40);
    let c2_recent = at(C2, 1);
    let policy =
        GcPolicy { keep: chrono::Duration::days(30), protected_commits: [C1.to_string()].into(), now };
    assert_eq!(store.gc(&policy, true).unwrap().deleted.len(), 2);
    assert_eq!(store.gc(&policy, false).unwrap().deleted.len(), 2);
    let left: Vec<String> =
        store.log(&LogFilter::default()).unwrap().runs.into_iter().map(|r| r.run_id).collect();
    assert_eq!(left, vec![c2_recent, c1_newest]);
    let objects = store.backend.list("runs").unwrap();
    assert_eq!(objects.len(), 4, "two runs of a profile and a meta.json each: {objects:?}");
}

pub(super) fn server_gone_mid_write(remote: &Remote) {
    let port = super::tests::free_port();
    let Some(server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "flaky");
    let url = remote.url("flaky/p");
    let store = remote.store(port, "flaky/p");
    store.write_run(new_run(commit_state(C1, "main"), &[]), vec![profile("bin/x")]).unwrap();

    // The server dies after the profile is uploaded, before the metadata and the index entry.
    let server = Arc::new(Mutex::new(Some(server)));
    let mut w = store.begin_run(new_run(commit_state(C2, "main"), &[])).unwrap();
    w.add_profile("bin/x", 0, Some(0), tests::gz(b"partial")).unwrap();
    let killer = Arc::clone(&server);
    w.pause = Some(Box::new(move || drop(killer.lock().unwrap().take())));
    let started = Instant::now();
    let err = w.commit().unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("meta.json"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(30), "gave up only after {:?}", started.elapsed());

    // The servers keep their state in memory, so replay the dead writer's uploads on a fresh one:
    // a run whose final index entry never arrived stays invisible next to a complete one.
    let Some(_server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "flaky");
    let store = remote.store(port, "flaky/p");
    let mut w = store.begin_run(new_run(commit_state(C2, "main"), &[])).unwrap();
    w.add_profile("bin/x", 0, Some(0), tests::gz(b"partial")).unwrap();
    let partial = w.run_id().to_string();
    let meta = store.write_run(new_run(commit_state(C2, "main"), &[]), vec![profile("bin/x")]).unwrap();
    drop(w);
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec![meta.run_id.as_str()]);
    assert!(matches!(store.show(&partial), Err(StoreError::NotFound { .. })));
}

pub(super) fn unreachable_store_is_a_clear_error(remote: &Remote) {
    let port = super::tests::free_port();
    let url = remote.url("nobody/x");
    let err = Store::open_with(&StoreLocation::parse(&url).unwrap(), (remote.options)(port)).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

/// Create-if-absent is what shares one window per period among a deployment's replicas.
pub(super) fn a_window_lease_is_won_once_and_windows_round_trip(remote: &Remote) {
    let port = super::tests::free_port();
    let Some(_server) = (remote.start)(port) else { return };
    (remote.make_bucket)(port, "prod");
    let store = remote.store(port, "prod/profiles");
    let d = Deployment { service: "api".into(), version: "1.4".into(), zone: "eu-1".into() };
    assert_eq!(store.lease_window(&d, 1_800_000_000, "a").unwrap(), Lease::Won);
    assert_eq!(store.lease_window(&d, 1_800_000_000, "b").unwrap(), Lease::Taken);
    assert_eq!(store.lease_window(&d, 1_800_000_060, "b").unwrap(), Lease::Won);
    let key =
        WindowKey { deployment: d, profile_type: "cpu".into(), start: 1_800_000_000, instance: "a".into() };
    store.put_window(&key, b"gz".to_vec()).unwrap();
    assert_eq!(store.list_windows(Some("api")).unwrap(), vec![key.clone()]);
    assert_eq!(store.get_window(&key).unwrap().as_deref(), Some(&b"gz"[..]));
}
