//! Tests against a real S3-compatible server: moto's server mode, started on a free loopback port.
//! Without `moto_server` on PATH they are skipped loudly, unless `CONTPROF_REQUIRE_S3` is set (CI),
//! in which case they fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::tests::{Server, commit_state, free_port, local_server_options, new_run, profile, start_server};
use super::*;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

/// Starts moto on `port`, or returns `None` (after saying so) when it is not installed and not required.
fn start_moto(port: u16) -> Option<Server> {
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
    start_server(
        Path::new("moto_server"),
        port,
        &args,
        "CONTPROF_REQUIRE_S3",
        "install it with `pip install 'moto[server]'`",
    )
}

/// Creates a bucket with a bare HTTP request (moto does not check signatures).
/// Retried: a freshly started server (two cores shared with the other tests) may still reset the
/// first connections.
fn create_bucket(port: u16, bucket: &str) {
    let attempt = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
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
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("bucket creation failed: {last}");
}

fn options(port: u16) -> StoreOptions {
    let config = [
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ];
    local_server_options(config.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn s3_store(port: u16, url: &str) -> Store {
    Store::open_with(&StoreLocation::parse(url).unwrap(), options(port)).unwrap()
}

#[test]
fn s3_write_list_read_back_and_version_check() {
    let Some(moto) = start_moto(free_port()) else { return };
    create_bucket(moto.port, "profiles");
    let store = s3_store(moto.port, "s3://profiles/team/proj");
    let a =
        store.record(new_run(commit_state(C1, "main"), &[("svc", "api")]), vec![profile("bin/x")]).unwrap();
    let b = store
        .record(new_run(commit_state(C2, "main"), &[]), vec![profile("bench/a"), profile("bench/b")])
        .unwrap();
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec![&b.run_id, &a.run_id]);
    assert_eq!(store.show(&b.run_id).unwrap(), b);
    assert_eq!(store.read_profile(&b.run_id, &b.profiles[1].file).unwrap(), tests::gz(b"profile bytes"));
    let out = tempfile::tempdir().unwrap();
    assert_eq!(store.export(&b.run_id, out.path()).unwrap().len(), 2);
    assert_eq!(store.nearest_with_runs(&[C2.to_string(), C1.to_string()]).unwrap().unwrap().commit, C2);

    // Same bucket, another prefix: a store of a newer format is refused before anything is written.
    let other = s3_store(moto.port, "s3://profiles/newer");
    other.backend.put("store.json", &br#"{"format":"cargo-contprof-store","version":7}"#[..]).unwrap();
    let err = Store::open_with(&StoreLocation::parse("s3://profiles/newer").unwrap(), options(moto.port))
        .unwrap_err();
    assert!(matches!(err, StoreError::NewerVersion { version: 7, .. }), "{err:?}");
    assert!(err.to_string().contains("s3://profiles/newer"), "{err}");
}

#[test]
fn s3_two_concurrent_writers() {
    let Some(moto) = start_moto(free_port()) else { return };
    create_bucket(moto.port, "shared");
    let port = moto.port;
    let writers: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let store = s3_store(port, "s3://shared/ci");
                (0..20)
                    .map(|i| {
                        let tag = format!("{t}-{i}");
                        let run = new_run(commit_state(C1, "main"), &[("w", &tag)]);
                        store.record(run, vec![profile("bin/x")]).unwrap().run_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    ids.sort();
    let log = s3_store(port, "s3://shared/ci").log(&LogFilter::default()).unwrap();
    let mut seen: Vec<String> = log.runs.into_iter().map(|r| r.run_id).collect();
    seen.sort();
    assert_eq!(seen.len(), 40);
    assert_eq!(seen, ids);
}

#[test]
fn s3_retention() {
    let Some(moto) = start_moto(free_port()) else { return };
    create_bucket(moto.port, "keep");
    let store = s3_store(moto.port, "s3://keep");
    let now = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let at = |commit: &str, days: i64| {
        let mut n = new_run(commit_state(commit, "main"), &[]);
        n.time = now - chrono::Duration::days(days);
        store.record(n, vec![profile("bin/x")]).unwrap().run_id
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

#[test]
fn s3_server_gone_mid_write() {
    let port = free_port();
    let Some(moto) = start_moto(port) else { return };
    create_bucket(port, "flaky");
    let url = "s3://flaky/p";
    let store = s3_store(port, url);
    store.record(new_run(commit_state(C1, "main"), &[]), vec![profile("bin/x")]).unwrap();

    // The server dies after the profile is uploaded, before the metadata and the index entry.
    let moto = Arc::new(Mutex::new(Some(moto)));
    let mut w = store.begin_run(new_run(commit_state(C2, "main"), &[])).unwrap();
    w.add_profile("bin/x", 0, Some(0), tests::gz(b"partial")).unwrap();
    let killer = Arc::clone(&moto);
    w.pause = Some(Box::new(move || drop(killer.lock().unwrap().take())));
    let started = Instant::now();
    let err = w.commit().unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(url) && msg.contains("meta.json"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(30), "gave up only after {:?}", started.elapsed());

    // moto keeps its state in memory, so replay the dead writer's uploads on a fresh server: a run
    // whose final index entry never arrived stays invisible next to a complete one.
    let Some(_moto) = start_moto(port) else { return };
    create_bucket(port, "flaky");
    let store = s3_store(port, url);
    let mut w = store.begin_run(new_run(commit_state(C2, "main"), &[])).unwrap();
    w.add_profile("bin/x", 0, Some(0), tests::gz(b"partial")).unwrap();
    let partial = w.run_id().to_string();
    let meta = store.record(new_run(commit_state(C2, "main"), &[]), vec![profile("bin/x")]).unwrap();
    drop(w);
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec![meta.run_id.as_str()]);
    assert!(matches!(store.show(&partial), Err(StoreError::NotFound { .. })));
}

#[test]
fn unreachable_store_is_a_clear_error() {
    let port = free_port();
    let err = Store::open_with(&StoreLocation::parse("s3://nobody/x").unwrap(), options(port)).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("s3://nobody/x"), "{err}");
}

#[test]
fn a_window_lease_is_won_once_and_windows_round_trip_on_s3() {
    let Some(moto) = start_moto(free_port()) else { return };
    create_bucket(moto.port, "prod");
    let store = s3_store(moto.port, "s3://prod/profiles");
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
