//! The store in trouble, in production mode: read-only, full, slow to answer; and the wall
//! clock stepped back and forward while the service runs. The service's behaviour must not
//! change, its exit must not wait for the store, and no uploader may be left behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contprof_engine::store::{Deployment, Store, StoreLocation};

use super::programs::{c_program, libfaketime, out_dir};
use super::run::{Case, PROD, run_case, windows};
use crate::util::tools_required;

/// A mount of this test, undone when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Result<Mount, String> {
    let out = Command::new("mount").args(args).arg(at).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(Mount(at.to_owned()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A store directory in use before the trouble: its `store.json` and another service's lease.
fn initialized_store(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let store = Store::open(&StoreLocation::Dir(dir.to_owned())).unwrap();
    let other = Deployment { service: "other".into(), version: "1".into(), zone: "z".into() };
    store.lease_window(&other, 60, "elsewhere").unwrap();
    assert!(dir.join("store.json").exists());
    dir.to_owned()
}

fn skip(what: &str, why: &str) {
    assert!(!tools_required(), "CONTPROF_REQUIRE_TOOLS is set but {what} is not possible: {why}");
    eprintln!("\n*** SKIPPING HOSTILE-PROGRAM TEST: {what} is not possible here ({why}) ***\n");
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The store directory cannot be written: a read-only bind mount (as root; `chmod` does not stop
/// root), else the directory made read-only.
#[test]
fn read_only_store() {
    let Some(program) = c_program("busy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = initialized_store(&dir.path().join("store"));
    let _mount = if nix_root() {
        let bound = match mount(&["--bind", store.to_str().unwrap()], &store) {
            Ok(m) => m,
            Err(e) => return skip("a read-only bind mount", &e),
        };
        // The same mount point, made read-only: `bound` undoes both.
        match mount(&["-o", "remount,bind,ro"], &store) {
            Ok(again) => std::mem::forget(again),
            Err(e) => return skip("a read-only bind mount", &e),
        }
        Some(bound)
    } else {
        let ro = std::os::unix::fs::PermissionsExt::from_mode(0o555);
        std::fs::set_permissions(&store, ro).unwrap();
        None
    };
    let before = files_under(&store);
    let mut case = Case::new("read-only store", program, &[]).only(&[PROD]);
    case.store = Some(store.to_string_lossy().into_owned());
    let report = run_case(case);
    report.assert_unchanged();
    assert_eq!(files_under(&store), before, "nothing was written to a read-only store");
}

fn nix_root() -> bool {
    // SAFETY: `geteuid` has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The store's file system is full (a 256 KiB tmpfs, filled up after `store.json`): every write
/// of a lease or a window fails with ENOSPC.
#[test]
fn full_store() {
    let Some(program) = c_program("busy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("fs");
    std::fs::create_dir_all(&at).unwrap();
    let _mount = match mount(&["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &at) {
        Ok(m) => m,
        Err(e) => return skip("mounting a small tmpfs (needs root)", &e),
    };
    let store = initialized_store(&at.join("store"));
    let mut filler = std::fs::File::create(at.join("filler")).unwrap();
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    drop(filler);
    let before = files_under(&store);
    let mut case = Case::new("full store", program, &[]).only(&[PROD]);
    case.store = Some(store.to_string_lossy().into_owned());
    let report = run_case(case);
    report.assert_unchanged();
    let objects: Vec<PathBuf> = files_under(&store)
        .into_iter()
        .filter(|p| !before.contains(p) && std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    eprintln!("non-empty objects written to the full store: {objects:?}");
}

/// A TCP proxy in front of a server that holds each answer back by `delay` (once per burst of
/// answer bytes): a store that answers slowly. It stops accepting when dropped; connections end
/// when either side closes or stays silent for 60 s.
struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn slow_proxy(upstream: u16, delay: Duration) -> SlowProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let _ = client.set_nonblocking(false);
            for s in [&client, &server] {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            }
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut last = Instant::now() - Duration::from_secs(10);
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if last.elapsed() > Duration::from_millis(100) {
                        std::thread::sleep(delay);
                    }
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    last = Instant::now();
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    SlowProxy { port, stop }
}

/// An S3 store (moto) behind a proxy that holds every answer back 1.5 s: leases and uploads take
/// longer than a period. The service must exit as promptly as without the agent, and the
/// uploader must finish within its drain time.
#[test]
fn slow_store() {
    let Some(program) = c_program("busy") else { return };
    let moto_port = crate::prod::free_port();
    let Some(_moto) = crate::prod::moto(moto_port, "slow") else { return };
    let proxy = slow_proxy(moto_port, Duration::from_millis(1500));
    let mut case = Case::new("slow store", program, &[]).only(&[PROD]);
    case.store = Some("s3://slow/profiles".into());
    case.store_env = crate::prod::s3_env(proxy.port).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let report = run_case(case);
    report.assert_unchanged();
    let prod = report.outcome(PROD.name);
    assert!(
        prod.seconds < report.reference.seconds + 5.0,
        "the service's exit waited for the store: {:.1} s against {:.1} s\n{}",
        prod.seconds,
        report.reference.seconds,
        report.summary()
    );
    let store = crate::prod::s3_store(moto_port, "s3://slow/profiles");
    let stored = store.list_windows(None).map(|w| w.len()).unwrap_or(0);
    eprintln!("{stored} window object(s) reached the slow store");
}

/// The wall clock stepped back an hour, then forward an hour (libfaketime, another LD_PRELOAD,
/// before the agent; the uploader runs under it too, through a `CONTPROF_HELPER` wrapper,
/// since the agent starts it without `LD_PRELOAD`): the service is unchanged and windows go on
/// being recorded after each step, keyed by the clock as it then reads.
#[test]
fn wall_clock_stepped_back_and_forward() {
    let (Some(program), Some(faketime)) = (c_program("busy"), libfaketime()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let stamp = dir.path().join("faketime");
    std::fs::write(&stamp, "+0\n").unwrap();
    let helper = out_dir().join(format!("uploader-under-faketime-{}", std::process::id()));
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nLD_PRELOAD={} exec {} \"$@\"\n",
            faketime.display(),
            env!("CARGO_BIN_EXE_cargo-contprof")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let store_dir = dir.path().join("store");
    let mut case = Case::new("wall clock stepped", program, &[])
        .only(&[PROD])
        .env("HOSTILE_SECONDS", "7.5")
        .env("FAKETIME_TIMESTAMP_FILE", stamp.to_str().unwrap())
        .env("FAKETIME_CACHE_DURATION", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    case.preload_first = Some(faketime);
    case.store_env = vec![("CONTPROF_HELPER".into(), helper.to_string_lossy().into_owned())];
    case.store = Some(store_dir.to_string_lossy().into_owned());
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let stepper = {
        let stamp = stamp.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2500));
            std::fs::write(&stamp, "-1h\n").unwrap();
            std::thread::sleep(Duration::from_millis(2500));
            std::fs::write(&stamp, "+1h\n").unwrap();
        })
    };
    let report = run_case(case);
    stepper.join().unwrap();
    let _ = std::fs::remove_file(&helper);
    report.assert_unchanged();
    assert!(
        report.reference.stdout.contains("stepped back: yes, forward: yes"),
        "the clock was stepped: {}",
        report.summary()
    );
    let starts: Vec<i64> = windows(&store_dir, None).iter().map(|k| k.start - started).collect();
    eprintln!("window starts relative to the real start (s): {starts:?}");
    assert!(
        starts.iter().any(|s| (-600..600).contains(s)),
        "windows before the steps: {starts:?}\n{}",
        report.summary()
    );
    assert!(
        starts.iter().any(|s| *s < -1800),
        "windows after the clock went back: {starts:?}\n{}",
        report.summary()
    );
    assert!(
        starts.iter().any(|s| *s > 1800),
        "windows after the clock went forward: {starts:?}\n{}",
        report.summary()
    );
}
