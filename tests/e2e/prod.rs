//! The production agent on a real HTTP service (`fixtures/service`: axum on tokio) under load from
//! a real load generator (wrk), as separate replica processes sharing one store: on disk, and on
//! S3 (moto).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use contprof_engine::profile::{self, Profile};
use contprof_engine::store::{Store, StoreLocation, StoreOptions, WindowKey};

use crate::util::{contprof, fixtures_manifest, repo_root, tools_required};

mod guest;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The service fixture, built once (release, as a service would ship).
fn service_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "service", "--manifest-path"])
            .arg(fixtures_manifest())
            .status()
            .expect("cargo starts");
        assert!(status.success(), "the service fixture builds");
        repo_root().join("fixtures/target/release/service")
    })
}

/// The preload library, as `cargo contprof agent path` installs it.
fn agent_library(dir: &Path) -> PathBuf {
    let out = contprof().args(["agent", "path", "--dir"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// wrk, or `None` (after saying so) when it is missing and not required.
fn wrk() -> Option<&'static str> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Some("wrk"),
        Err(e) if !tools_required() => {
            eprintln!(
                "\n*** SKIPPING PRODUCTION TEST: cannot run `wrk` ({e}); install it (apt install wrk) ***\n"
            );
            None
        }
        Err(e) => panic!("CONTPROF_REQUIRE_TOOLS is set but wrk cannot run: {e}"),
    }
}

struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts one replica of the service with the agent preloaded (or started from code with
    /// `in_code`), its stderr in `dir/<instance>.log`.
    fn start(dir: &Path, instance: &str, env: &[(&str, String)], in_code: bool) -> Replica {
        Replica::start_with(dir, instance, env, in_code, &[])
    }

    /// [`Replica::start`] with extra arguments for the service (`--slow-render`).
    fn start_with(
        dir: &Path,
        instance: &str,
        env: &[(&str, String)],
        in_code: bool,
        args: &[&str],
    ) -> Replica {
        let port = free_port();
        let log = dir.join(format!("{instance}.log"));
        let mut cmd = Command::new(service_binary());
        cmd.arg(port.to_string()).args(args);
        if in_code {
            cmd.arg("--in-code");
        } else {
            cmd.env("LD_PRELOAD", agent_library(dir));
        }
        cmd.env("CONTPROF_SERVICE", "web")
            .env("CONTPROF_VERSION", "1.4.0")
            .env("CONTPROF_ZONE", "eu-west")
            .env("CONTPROF_INSTANCE", instance)
            .env("CONTPROF_LABELS", "team=search,canary=no")
            .env("CONTPROF_HELPER", env!("CARGO_BIN_EXE_cargo-contprof"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the service starts");
        let replica = Replica { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the service did not listen: {}", replica.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Stops it with SIGTERM (the service shuts down gracefully) and waits for it, then for its
    /// uploader to have uploaded what it held and exited.
    fn stop(mut self) -> String {
        let pid = self.child.id();
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        eventually("the uploader to finish", 60, || uploader_of(pid).is_none());
        let log = self.log();
        assert!(status.success(), "the service stopped cleanly on SIGTERM ({status}):\n{log}");
        log
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Load on every replica for `secs` seconds, with wrk (4 connections each).
fn load(replicas: &[&Replica], secs: u32) {
    load_each(&replicas.iter().map(|&r| (r, 4)).collect::<Vec<_>>(), secs);
}

/// Load on every replica for `secs` seconds, with wrk, over as many connections as each is paired
/// with.
fn load_each(replicas: &[(&Replica, u32)], secs: u32) {
    let runs: Vec<Child> = replicas
        .iter()
        .map(|&(r, connections)| {
            Command::new("wrk")
                .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
                .arg(format!("http://127.0.0.1:{}/work?n=300", r.port))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("wrk starts")
        })
        .collect();
    for mut r in runs {
        assert!(r.wait().unwrap().success(), "wrk ran");
    }
}

fn windows(store: &Store) -> Vec<WindowKey> {
    let mut w = store.list_windows(Some("web")).unwrap();
    w.sort_by(|a, b| (a.start, &a.profile_type).cmp(&(b.start, &b.profile_type)));
    w
}

/// Waits until `f` holds (the uploader works in the background).
fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(store: &Store, key: &WindowKey) -> Profile {
    profile::decode(&store.get_window(key).unwrap().expect("the window exists")).unwrap()
}

fn label<'a>(p: &'a Profile, s: &profile::Sample, key: &str) -> Option<&'a str> {
    s.label.iter().find(|l| p.str(l.key) == key).map(|l| p.str(l.str))
}

/// Value of the samples whose leaf location is code of function `name` (its own or inlined into
/// it: the service has line tables, so a location has its inlined frames) in sample type `ty`,
/// over the total.
fn leaf_share(p: &Profile, ty: &str, name: &str) -> f64 {
    let i = p.sample_type_index(ty).unwrap();
    let total = p.total(i).max(1) as f64;
    let in_leaf = |s: &profile::Sample| {
        let Some(loc) = p.location.iter().find(|l| l.id == s.location_id[0]) else { return false };
        loc.line.iter().any(|l| {
            p.function.iter().find(|f| f.id == l.function_id).is_some_and(|f| p.str(f.name).contains(name))
        })
    };
    p.sample.iter().filter(|s| in_leaf(s)).map(|s| s.value[i]).sum::<i64>() as f64 / total
}

/// The source lines of function `id` in `p`'s locations.
fn lines_of(p: &Profile, id: u64) -> Vec<i64> {
    p.location.iter().flat_map(|l| &l.line).filter(|l| l.function_id == id).map(|l| l.line).collect()
}

fn functions(p: &Profile) -> Vec<&str> {
    p.function.iter().map(|f| p.str(f.name)).collect()
}

const FAST: [(&str, &str); 2] = [("CONTPROF_PERIOD", "1"), ("CONTPROF_WINDOW", "0.4")];

fn env_with(store: &str, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![("CONTPROF_STORE", store.to_owned())];
    for (k, v) in FAST.iter().chain(extra) {
        env.push((leak(k), (*v).to_owned()));
    }
    env
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

#[test]
fn replicas_share_one_window_per_period_and_upload_every_profile_type() {
    let Some(_) = wrk() else { return };
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let env = env_with(store_dir.to_str().unwrap(), &[]);
    let replicas: Vec<Replica> =
        ["r1", "r2", "r3"].iter().map(|i| Replica::start(dir.path(), i, &env, false)).collect();
    let started = Instant::now();
    load(&replicas.iter().collect::<Vec<_>>(), 9);
    let periods = started.elapsed().as_secs_f64();
    // Each uploader's peak memory, while its service still runs: every replica won some windows.
    let peaks: Vec<(u64, u64)> = replicas
        .iter()
        .filter_map(|r| uploader_of(r.child.id()))
        .filter_map(|u| Some((status_kib(u, "VmHWM")?, status_kib(u, "RssAnon")?)))
        .collect();
    for r in replicas {
        r.stop();
    }
    assert_eq!(peaks.len(), 3, "every replica's uploader ran: {peaks:?}");
    for &(peak, anon) in &peaks {
        assert!(
            peak < UPLOADER_PEAK_MAX_KIB && anon < UPLOADER_ANON_MAX_KIB,
            "an uploader peaked at {} MiB ({} MiB private memory left after its windows): the bounds are \
             {} and {} MiB",
            peak >> 10,
            anon >> 10,
            UPLOADER_PEAK_MAX_KIB >> 10,
            UPLOADER_ANON_MAX_KIB >> 10
        );
    }
    let store = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    let all = windows(&store);
    let mut starts: Vec<i64> = all.iter().map(|k| k.start).collect();
    starts.dedup();
    // One window per period in all, not one per replica.
    assert!(
        (starts.len() as f64) >= periods * 0.6 && (starts.len() as f64) <= periods + 2.0,
        "{} windows in {periods:.1} periods: {all:?}",
        starts.len()
    );
    for s in &starts {
        let of: Vec<&WindowKey> = all.iter().filter(|k| k.start == *s).collect();
        let instances: std::collections::BTreeSet<&str> = of.iter().map(|k| k.instance.as_str()).collect();
        assert_eq!(instances.len(), 1, "window {s} was recorded by one replica: {of:?}");
        let types: Vec<&str> = of.iter().map(|k| k.profile_type.as_str()).collect();
        assert_eq!(types, ["alloc", "cpu", "heap", "threads"], "window {s} has every profile type");
    }
    let turns: std::collections::BTreeSet<&str> = all.iter().map(|k| k.instance.as_str()).collect();
    assert!(turns.len() >= 2, "the replicas take turns: {turns:?}");

    // The windows under load: the handler's CPU is in `checksum`, its allocations in `render_rows`.
    let loaded: Vec<&WindowKey> = all.iter().filter(|k| k.profile_type == "cpu").skip(1).collect();
    let cpu: Vec<Profile> = loaded.iter().map(|k| read(&store, k)).collect();
    let merged = profile::merge(&cpu).unwrap();
    let checksum = leaf_share(&merged, "cpu", "service::checksum");
    assert!(checksum > 0.5, "checksum has {:.0}% of the CPU: {:?}", checksum * 100.0, functions(&merged));
    // The service's own code with its files and lines (it ships line tables), glibc's named from
    // its symbol table alone, even where its separate debug file is installed.
    let f = merged.function.iter().find(|f| merged.str(f.name) == "service::checksum").unwrap();
    assert!(merged.str(f.filename).ends_with("service/src/main.rs"), "{}", merged.str(f.filename));
    let lines = lines_of(&merged, f.id);
    // Line 0 is DWARF's "no source line" for an instruction the compiler made up; it may be hit.
    let known = lines.iter().filter(|&&l| l > 0).count();
    assert!(!lines.is_empty() && known * 4 >= lines.len() * 3, "checksum's lines: {lines:?}");
    let file_of = |name: &str| merged.mapping.iter().find(|m| merged.str(m.filename).contains(name));
    assert!(file_of("/service").expect("the service's mapping").has_filenames);
    let libc = file_of("/libc.so").expect("glibc on some CPU stack (memcpy, malloc)");
    assert!(!libc.has_filenames && !libc.has_line_numbers, "{libc:?}");
    let p = &cpu[0];
    let s = &p.sample[0];
    assert_eq!(label(p, s, "service"), Some("web"));
    assert_eq!(label(p, s, "version"), Some("1.4.0"));
    assert_eq!(label(p, s, "zone"), Some("eu-west"));
    assert_eq!(label(p, s, "instance"), Some(loaded[0].instance.as_str()));
    assert_eq!(label(p, s, "team"), Some("search"));
    assert_eq!(label(p, s, "type"), Some("cpu"));
    let comments = p.comments().join("\n");
    for key in ["window_start", "window_end", "build_id"] {
        assert!(comments.contains(&format!("contprof.{key}=")), "{key} in the comments:\n{comments}");
    }
    assert!(
        p.duration_nanos > 300_000_000 && p.duration_nanos < 600_000_000,
        "a 0.4 s window: {}",
        p.duration_nanos
    );

    let alloc = read(&store, all.iter().filter(|k| k.profile_type == "alloc").nth(2).unwrap());
    assert_eq!(alloc.str(alloc.default_sample_type), "alloc_space");
    assert!(functions(&alloc).iter().any(|f| f.contains("render_rows")), "{:?}", functions(&alloc));
    // The heap in use at a window's end counts what was allocated long before it: the 64 MiB
    // cache filled at start (sampled every 512 KiB on average: ±30% is four standard errors).
    let heap = read(&store, all.iter().filter(|k| k.profile_type == "heap").nth(3).unwrap());
    assert_eq!(heap.str(heap.sample_type[1].r#type), "inuse_space");
    let cache = leaf_share(&heap, "inuse_space", "warm_cache") * heap.total(1) as f64 / f64::from(1 << 20);
    assert!(
        (cache - 64.0).abs() < 64.0 * 0.3,
        "warm_cache holds {cache:.1} MiB, not 64: {:?}",
        functions(&heap)
    );

    // Every thread at the window's end: main, tokio's workers (one per core), each named.
    let threads = read(&store, all.iter().filter(|k| k.profile_type == "threads").nth(2).unwrap());
    let names: Vec<&str> = threads.sample.iter().filter_map(|s| label(&threads, s, "thread")).collect();
    assert!(names.len() >= 3, "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with("tokio-r")).count() >= 2, "{names:?}");
    assert!(!names.contains(&"contprof-agent"), "the agent's own thread is left out: {names:?}");
}

/// Whether `s`'s stack holds a function whose name contains `name`.
fn holds(p: &Profile, s: &profile::Sample, name: &str) -> bool {
    s.location_id.iter().any(|id| {
        p.location.iter().find(|l| l.id == *id).is_some_and(|l| {
            l.line.iter().any(|line| {
                p.function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .is_some_and(|f| p.str(f.name).contains(name))
            })
        })
    })
}

/// `ty`'s total over the samples whose stack holds `name` (see [`holds`]).
fn under(p: &Profile, ty: &str, name: &str) -> i64 {
    let i = p.sample_type_index(ty).unwrap();
    p.sample.iter().filter(|s| holds(p, s, name)).map(|s| s.value[i]).sum()
}

/// Wall time of `p`'s samples labelled with thread `name`, and of those of them whose stack holds
/// `under`.
fn thread_wall(p: &Profile, name: &str, under: &str) -> (i64, i64) {
    let i = p.sample_type_index("wall").unwrap();
    let of: Vec<&profile::Sample> = p.sample.iter().filter(|s| label(p, s, "thread") == Some(name)).collect();
    (of.iter().map(|s| s.value[i]).sum(), of.iter().filter(|s| holds(p, s, under)).map(|s| s.value[i]).sum())
}

#[test]
fn windows_record_lock_waits_and_wall_time_when_asked() {
    let Some(_) = wrk() else { return };
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let env = env_with(store_dir.to_str().unwrap(), &[("CONTPROF_TYPES", "cpu,contention,wall")]);
    let r = Replica::start_with(dir.path(), "solo", &env, false, &["--flush-stats"]);
    load(&[&r], 5);
    r.stop();
    let store = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    let all = windows(&store);
    let mut starts: Vec<i64> = all.iter().map(|k| k.start).collect();
    starts.dedup();
    assert!(starts.len() >= 3, "{all:?}");
    for s in &starts {
        let types: Vec<&str> =
            all.iter().filter(|k| k.start == *s).map(|k| k.profile_type.as_str()).collect();
        assert_eq!(types, ["contention", "cpu", "wall"], "window {s} has the types asked for");
    }
    let of = |ty: &str| -> Vec<Profile> {
        all.iter().filter(|k| k.profile_type == ty).skip(1).map(|k| read(&store, k)).collect()
    };

    // The handlers that came while `stats-flush` held the lock (2 ms of every 20) waited in
    // `record_stats`; its waits are about a millisecond each, all above the 10 µs rate.
    let contention = profile::merge(&of("contention")).unwrap();
    assert_eq!(contention.str(contention.default_sample_type), "delay");
    let delay = under(&contention, "delay", "record_stats");
    let waits = under(&contention, "contentions", "record_stats");
    assert!(delay > 1_000_000 && waits >= 5, "under record_stats: {waits} waits, {delay} ns");

    // `stats-flush` was there for the whole of every window, asleep (off CPU) nearly all of it
    // (tolerances: 100 Hz over 0.4 s is 40 ticks a window; a stack taken in the microseconds it
    // runs carries the sleep that follows, which under a loaded machine (the suite runs tests in
    // parallel) moved a quarter of a window to the lock calls beside the sleeps); the agent's own
    // thread is left out.
    // Full windows only: the one that the service's stop cut short (tens of milliseconds, a tick
    // or none at 100 Hz) says nothing of the threads' share of it.
    let full: Vec<Profile> = of("wall").into_iter().filter(|p| p.duration_nanos >= 300_000_000).collect();
    assert!(!full.is_empty(), "no full wall window");
    for p in full {
        let window = p.duration_nanos as f64;
        let (wall, asleep) = thread_wall(&p, "stats-flush", "sleep");
        assert!(
            (wall as f64 - window).abs() < window * 0.25 && asleep as f64 > wall as f64 * 0.6,
            "stats-flush: {wall} ns of wall time ({asleep} in a sleep) in a {window} ns window"
        );
        assert_eq!(thread_wall(&p, "contprof-agent", "").0, 0, "the agent's thread is not sampled");
        let (workers, _) = thread_wall(&p, "tokio-rt-worker", "");
        assert!(workers as f64 > window * 0.75, "tokio's workers: {workers} ns in a {window} ns window");
    }

    // The viewer's and the CLI's profile-type lists know the types.
    let store = store_dir.to_str().unwrap();
    for ty in ["contention", "wall"] {
        let list = crate::util::output(
            contprof().args(["prod", "list", "--type", ty, "--format", "json", "--store", store]),
        );
        assert_eq!(list.code, 0, "{list:?}");
        let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
        assert!(listed["windows"].as_array().is_some_and(|w| w.len() >= 3), "{ty}: {listed}");
    }
}

#[test]
fn sigterm_mid_window_uploads_the_window_cut_short() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    // No CONTPROF_HELPER and no cargo-contprof on PATH: the uploader is the one that `agent path`
    // recorded beside the library.
    let env = env_with(
        store_dir.to_str().unwrap(),
        &[
            ("CONTPROF_PERIOD", "3"),
            ("CONTPROF_WINDOW", "2.5"),
            ("CONTPROF_HELPER", ""),
            ("PATH", "/usr/bin:/bin"),
        ],
    );
    let r = Replica::start(dir.path(), "solo", &env, false);
    let leases = store_dir.join("prod/leases");
    eventually("a window to start", 10, || walk(&leases).next().is_some());
    std::thread::sleep(Duration::from_millis(500));
    let log = r.stop();
    let store = Store::open(&StoreLocation::Dir(store_dir)).unwrap();
    eventually("the last window's upload", 15, || windows(&store).len() == 4);
    let cpu = read(&store, &windows(&store)[1]);
    assert!(
        cpu.duration_nanos > 100_000_000 && cpu.duration_nanos < 2_000_000_000,
        "the window ended with the service, before its 2.5 s: {} ns\n{log}",
        cpu.duration_nanos
    );
}

#[test]
fn a_replica_killed_mid_window_loses_that_window_only_and_leaves_nothing_partial() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let env = env_with(store_dir.to_str().unwrap(), &[("CONTPROF_PERIOD", "2"), ("CONTPROF_WINDOW", "1.5")]);
    let r = Replica::start(dir.path(), "doomed", &env, false);
    let store = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    // One whole window, then a kill -9 in the middle of the next.
    eventually("a first window", 15, || !windows(&store).is_empty());
    let first = windows(&store)[0].start;
    let leases = store_dir.join("prod/leases");
    let leased = walk(&leases).count();
    eventually("a new window to start", 10, || walk(&leases).count() > leased);
    std::thread::sleep(Duration::from_millis(400));
    r.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    // Every window that completed is stored (the first, perhaps the one after it), the window the
    // kill cut short is not.
    let left = windows(&store);
    let killed: i64 = walk(&leases).filter_map(|p| p.file_name()?.to_str()?.parse().ok()).max().unwrap();
    assert!(left.iter().all(|k| k.start != killed), "the window cut short is not stored: {left:?}");
    assert!(left.iter().any(|k| k.start == first), "{left:?}");
    assert_eq!(left.len() % 4, 0, "whole windows only: {left:?}");
    // No temporary or partial object anywhere in the store, and the uploader removed its spool.
    let stray: Vec<PathBuf> = walk(&store_dir)
        .filter(|p| {
            let s = p.strip_prefix(&store_dir).unwrap().to_string_lossy().into_owned();
            !(s == "store.json" || s.starts_with("prod/leases/") || WindowKey::parse(&s).is_some())
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let pid = r.child.id();
    eventually("the spool to be removed", 10, || {
        !std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&format!("contprof-spool-{pid}-")))
    });
}

fn walk(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.into_iter()
}

pub(crate) struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto's S3 server on `port` with bucket `bucket`, or `None` when it is not installed and not
/// required.
pub(crate) fn moto(port: u16, bucket: &str) -> Option<Moto> {
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var_os("CONTPROF_REQUIRE_S3").is_none() => {
            eprintln!("\n*** SKIPPING S3 TEST: cannot start moto_server ({e}) ***\n");
            return None;
        }
        Err(e) => panic!("CONTPROF_REQUIRE_S3 is set but moto_server cannot start: {e}"),
    };
    let moto = Moto(child);
    eventually("moto to listen", 30, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // A bare HTTP request (moto checks no signatures), retried while the server warms up.
    eventually("the bucket", 10, || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut reply = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut reply).is_ok()
            && reply.starts_with("HTTP/1.1 200")
    });
    Some(moto)
}

pub(crate) fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

pub(crate) fn s3_store(port: u16, url: &str) -> Store {
    let config = [
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
        ("aws_region", "us-east-1".into()),
    ];
    let options =
        StoreOptions { config: config.map(|(k, v)| (k.to_owned(), v)).to_vec(), ..StoreOptions::default() };
    Store::open_with(&StoreLocation::parse(url).unwrap(), options).unwrap()
}

#[test]
fn started_from_code_on_s3_with_the_store_down_at_first() {
    let Some(_) = wrk() else { return };
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = env_with("s3://prod/profiles", &[]);
    env.extend(s3_env(port));
    // The store is not there yet: the service runs, nothing is recorded, nothing breaks.
    let r = Replica::start(dir.path(), "coded", &env, true);
    load(&[&r], 3);
    let Some(_moto) = moto(port, "prod") else { return };
    let store = s3_store(port, "s3://prod/profiles");
    assert!(windows(&store).is_empty(), "no window while the store was down");
    load(&[&r], 4);
    eventually("windows on S3 once the store is up", 20, || windows(&store).len() >= 8);
    let log = r.stop();
    assert!(log.contains("the store is unreachable"), "the outage was reported:\n{log}");
    assert_eq!(log.matches("the store is unreachable").count(), 1, "once, not per period:\n{log}");
    let cpu = windows(&store).into_iter().filter(|k| k.profile_type == "cpu").nth(1).unwrap();
    let p = read(&store, &cpu);
    assert!(leaf_share(&p, "cpu", "service::checksum") > 0.3, "{:?}", functions(&p));
}

/// The environments of replicas of versions 1.3 and 1.4 of service `web` recording into
/// `store` (`CONTPROF_VERSION` comes after the defaults, so it wins), in windows of 1.2 s every
/// 2 s at 1000 Hz: several hundred samples each even when the machine is busy (at 250 Hz, ~90
/// under load: `render_rows`, 4% of 1.3's CPU, then has 3 samples a window and its change was
/// missed about once in six loaded runs), and time to close each window (thread snapshot,
/// allocation stacks) before the next period begins.
fn two_versions(store: &str) -> [Vec<(&'static str, String)>; 2] {
    let fast = [("CONTPROF_PERIOD", "2"), ("CONTPROF_WINDOW", "1.2"), ("CONTPROF_FREQUENCY", "1000")];
    ["1.3", "1.4"].map(|version| {
        let mut env = env_with(store, &fast);
        env.push(("CONTPROF_VERSION", version.into()));
        env
    })
}

/// Loads the replicas (each with its wrk connections) in turns of 4 s until versions 1.3 and 1.4
/// both have ten CPU windows in `listing` (on two shared cores the schedule may skip periods),
/// for at most 90 s: ten windows a side keep the verdicts clear of sampling noise on a loaded
/// machine.
fn load_until_windows(listing: &Store, replicas: &[(&Replica, u32)]) {
    let started = Instant::now();
    loop {
        load_each(replicas, 4);
        let cpu = windows(listing).into_iter().filter(|k| k.profile_type == "cpu").collect::<Vec<_>>();
        let of = |v: &str| cpu.iter().filter(|k| k.deployment.version == v).count();
        if (of("1.3") >= 10 && of("1.4") >= 10) || started.elapsed() > Duration::from_secs(90) {
            return;
        }
    }
}

#[test]
fn prod_compare_names_the_function_the_new_version_made_slower() {
    let Some(_) = wrk() else { return };
    // Verdicts need samples: nothing else of these tests competes for the two cores meanwhile.
    let _alone = crate::util::alone();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = store_dir.to_str().unwrap().to_owned();
    // Two deployments of one service: 1.3, and 1.4 whose `render_rows` formats every row five
    // times.
    let [old, new] = two_versions(&store);
    let listing = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    let a = Replica::start_with(dir.path(), "old", &old, false, &[]);
    // 1.4 rolls out after 1.3 has windows (`prod watch` orders versions by their first window).
    eventually("a first window of 1.3", 30, || !windows(&listing).is_empty());
    let b = Replica::start_with(dir.path(), "new", &new, false, &["--slow-render"]);
    load_until_windows(&listing, &[(&a, 4), (&b, 4)]);
    a.stop();
    b.stop();

    // Not `util::finish`, which would wait for the lock this test holds.
    let run = crate::util::output;
    let list = run(contprof().args(["prod", "list", "--format", "json", "--store", &store]));
    assert_eq!(list.code, 0, "{list:?}");
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let versions: Vec<&str> =
        listed["deployments"].as_array().unwrap().iter().map(|d| d["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.3", "1.4"], "{}", list.stdout);

    let compare = |base: &str| {
        run(contprof().args([
            "prod",
            "compare",
            "--service",
            "web",
            "--base",
            base,
            "--head",
            "version=1.4",
            "--format",
            "json",
            "--store",
            &store,
        ]))
    };
    let out = compare("version=1.3");
    assert_eq!(out.code, 1, "a regression exits 1: {out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let regressions: Vec<&str> =
        report["regressions"].as_array().unwrap().iter().map(|f| f["function"].as_str().unwrap()).collect();
    assert!(regressions.iter().any(|f| f.ends_with("render_rows")), "{regressions:?}\n{}", out.stdout);
    assert!(
        regressions.iter().all(|f| f.ends_with("render_rows")),
        "nothing else is blamed: {regressions:?}"
    );

    // `prod watch` judges the rollout 1.3 -> 1.4 without being told the versions, once.
    let watch = |format: &str| {
        run(contprof().args(["prod", "watch", "--format", format, "--min-windows", "5", "--store", &store]))
    };
    let early = run(contprof().args([
        "prod",
        "watch",
        "--format",
        "json",
        "--min-windows",
        "1000",
        "--store",
        &store,
    ]));
    assert_eq!(early.code, 0, "{early:?}");
    assert!(early.stdout.contains(r#""status": "waiting""#), "too few windows: {early:?}");
    let first = watch("json");
    assert_eq!(first.code, 1, "a rollout that regressed exits 1: {first:?}");
    let judged: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let rollout = &judged["rollouts"][0];
    assert_eq!((rollout["base"].as_str(), rollout["head"].as_str()), (Some("1.3"), Some("1.4")), "{judged}");
    assert_eq!(
        (rollout["status"].as_str(), rollout["new"].as_bool()),
        (Some("regressed"), Some(true)),
        "{judged}"
    );
    let blamed: Vec<&str> =
        rollout["regressions"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(!blamed.is_empty() && blamed.iter().all(|f| f.ends_with("render_rows")), "{judged}");
    let second = watch("markdown");
    assert_eq!(second.code, 0, "judged once: {second:?}");
    assert!(
        second.stdout.contains("REGRESSED (judged earlier): ") && second.stdout.contains("render_rows"),
        "{second:?}"
    );

    // `serve` compacts in the background; a `prod compact` after it finds nothing left to do.
    let mut serve = contprof()
        .args(["serve", "--bind", "127.0.0.1:0", "--store", &store])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(serve.stderr.take().unwrap()));
    while !said.contains("Compacted") {
        let Some(Ok(line)) = lines.next() else { break };
        said.push_str(&line);
        said.push('\n');
    }
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGTERM) };
    let status = serve.wait().unwrap();
    assert!(said.contains("Compacted") && said.contains("hour and"), "{said}");
    assert!(status.success(), "serve stops cleanly on SIGTERM: {status:?}");
    let compact = run(contprof().args(["prod", "compact", "--store", &store]));
    assert_eq!(compact.code, 0, "{compact:?}");
    assert!(compact.stderr.contains("0 hour and 0 day rollup(s) written"), "{compact:?}");
    let rolled = compare("version=1.3");
    assert_eq!(rolled.code, 1, "{rolled:?}");
    assert!(!rolled.stderr.contains(" 0 rollup(s)"), "rollups are read: {rolled:?}");
    let again: serde_json::Value = serde_json::from_str(&rolled.stdout).unwrap();
    assert_eq!(again["regressions"], report["regressions"], "{}", rolled.stdout);

    // A side that matches nothing says what the store has.
    let none = compare("version=9.9");
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("web 1.3 in eu-west"), "{none:?}");

    // Exported windows are plain gzipped pprof.
    let export = dir.path().join("export");
    let out = run(contprof()
        .args(["prod", "export", "--service", "web", "--version", "1.4", "--type", "heap", "--store", &store])
        .arg(&export));
    assert_eq!(out.code, 0, "{out:?}");
    let files: Vec<PathBuf> = std::fs::read_dir(&export).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!files.is_empty());
    for f in &files {
        let p = profile::decode(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(p.str(p.default_sample_type), "inuse_space", "{}", f.display());
    }

    // The viewer's production section in a real browser, over the same store.
    let Some(chromium) = crate::viewer::browser_tools() else { return };
    let report = dir.path().join("release.html");
    let out = run(contprof()
        .args(["prod", "report", "--service", "web", "--base", "version=1.3", "--head", "version=1.4"])
        .args(["--store", &store, "--html"])
        .arg(&report));
    assert_eq!(out.code, 0, "{out:?}");
    let mut opts = contprof_viewer::ServeOptions::new(StoreLocation::Dir(store_dir));
    opts.bind = "127.0.0.1:0".parse().unwrap();
    let server = contprof_viewer::Server::bind(opts).unwrap();
    let url = server.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let serving = std::thread::spawn(move || server.run_until(&stop2));
    let artifacts = repo_root().join("target/contprof-test-artifacts/prod");
    std::fs::create_dir_all(&artifacts).unwrap();
    let config = serde_json::json!({
        "chromium": chromium,
        "server": url,
        "service": "web",
        "base": "1.3",
        "head": "1.4",
        "report": report,
        "artifacts": artifacts,
    });
    let browser = Command::new("node")
        .arg(repo_root().join("tests/js/prod.mjs"))
        .arg(config.to_string())
        .current_dir(repo_root().join("tests/js"))
        .output()
        .expect("run node");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    serving.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&browser.stderr);
    eprintln!("{stderr}");
    assert!(
        browser.status.success(),
        "browser checks failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&browser.stdout)
    );
}

/// Issue 27 item 4: `checksum` holds most of the service's CPU (about 85%); version 1.4 makes it
/// 1.5x slower, and its replica serves a quarter of the connections 1.3's does. Its share of a
/// window barely moves (a function above half of the CPU cannot move it much) and the load is
/// not comparable, so neither the share nor the CPU per window can judge it. The service counts
/// its requests (`--traced`: the layer's `request` spans count one unit of work each, through the
/// preloaded agent's entry point), and `prod compare` judges the CPU per request: `checksum`
/// about +50%, and says so.
#[test]
fn prod_compare_judges_a_function_that_holds_most_of_the_cpu_by_its_cost_per_request() {
    let Some(_) = wrk() else { return };
    let _alone = crate::util::alone();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = store_dir.to_str().unwrap().to_owned();
    let [old, new] = two_versions(&store);
    let listing = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    let a = Replica::start_with(dir.path(), "old", &old, false, &["--traced"]);
    let b = Replica::start_with(dir.path(), "new", &new, false, &["--traced", "--slow-checksum"]);
    load_until_windows(&listing, &[(&a, 4), (&b, 1)]);
    a.stop();
    b.stop();

    // Each window holds the requests served while it was open, under the span's labels.
    let cpu: Vec<WindowKey> = windows(&listing).into_iter().filter(|k| k.profile_type == "cpu").collect();
    let counted: Vec<u64> = cpu
        .iter()
        .filter_map(|k| {
            read(&listing, k).comments().iter().find_map(|c| {
                let rest = c.strip_prefix("work counted: ")?;
                let (units, set) = rest.split_once(' ')?;
                assert_eq!(set, r#"{"endpoint":"/work","span_name":"request"}"#, "{c}");
                units.parse().ok()
            })
        })
        .collect();
    assert!(
        counted.len() * 2 > cpu.len() && counted.iter().all(|&u| u > 0),
        "{counted:?} of {} windows",
        cpu.len()
    );

    let out = crate::util::output(contprof().args([
        "prod",
        "compare",
        "--service",
        "web",
        "--base",
        "version=1.3",
        "--head",
        "version=1.4",
        "--format",
        "json",
        "--store",
        &store,
    ]));
    assert_eq!(out.code, 1, "a regression exits 1: {out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let regressions: Vec<(&str, f64)> = report["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap(), f["change"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    let checksum = regressions.iter().find(|(f, _)| f.ends_with("checksum"));
    assert!(
        checksum.is_some_and(|&(_, change)| (0.3..0.75).contains(&change)),
        "checksum about +50% per request: {regressions:?}\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("per unit of work the program counted"),
        "the report says how: {}",
        out.stdout
    );
}

/// The uploader's peak RSS (`VmHWM`) stays under this. Measured beside this service (built with
/// `debug = "limited"`) at 49-51 MiB for the tests' unoptimized build, about 24 MiB of it the
/// build's own code pages; reading glibc's separate debug file, as the uploader did before it
/// named library code from symbol tables only, made it 89-90 MiB.
const UPLOADER_PEAK_MAX_KIB: u64 = 64 << 10;

/// The uploader's private memory (`RssAnon`) after its windows stays under this: measured at
/// 12-14 MiB, most of it the service's parsed DWARF (48-49 MiB with glibc's debug file).
const UPLOADER_ANON_MAX_KIB: u64 = 24 << 10;

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `RssAnon`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The uploader the agent started for service `pid`.
fn uploader_of(pid: u32) -> Option<u32> {
    crate::util::uploaders_with(&format!("--pid={pid}")).into_iter().next()
}

#[test]
fn a_killed_uploader_is_started_again() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let env = env_with(store_dir.to_str().unwrap(), &[("CONTPROF_WINDOW", "0.3")]);
    let r = Replica::start(dir.path(), "phoenix", &env, false);
    let store = Store::open(&StoreLocation::Dir(store_dir)).unwrap();
    eventually("a first window", 15, || !windows(&store).is_empty());
    let first = uploader_of(r.child.id()).expect("the uploader runs");
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(first as libc::pid_t, libc::SIGKILL) };
    let before = windows(&store).len();
    eventually("windows after the uploader was killed", 20, || windows(&store).len() > before + 4);
    let second = uploader_of(r.child.id()).expect("an uploader runs again");
    assert_ne!(first, second);
    let log = r.stop();
    assert!(log.contains("the uploader exited"), "{log}");
}

/// CPU time (user and system) of process `pid` so far, in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces), 1-based from field 3.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Issue 30: `prod top` turns windows into cores. Two replicas under load take the windows in
/// turn; over the span of the load, the service's cores are the CPU both replicas used (read
/// from `/proc`, the known answer) within the stated tolerance, its replicas are counted from
/// the instances that recorded windows, and the handler's function leads the functions, named
/// with its crate.
#[test]
fn prod_top_gives_the_cores_a_service_used_and_its_replicas() {
    let Some(_) = wrk() else { return };
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let env = env_with(store_dir.to_str().unwrap(), &[]);
    let replicas: Vec<Replica> =
        ["r1", "r2"].iter().map(|i| Replica::start(dir.path(), i, &env, false)).collect();
    // Steady state first: each replica's uploader has recorded and symbolized a window (the
    // first one reads the binary's debug information, which under full CPU takes long enough to
    // skip periods).
    let store = Store::open(&StoreLocation::Dir(store_dir.clone())).unwrap();
    eventually("both replicas to upload a window", 60, || {
        let recorded: std::collections::BTreeSet<String> =
            windows(&store).into_iter().filter(|k| k.profile_type == "cpu").map(|k| k.instance).collect();
        recorded.len() == 2
    });
    std::thread::sleep(Duration::from_millis(1200));
    let pids: Vec<u32> = replicas.iter().map(|r| r.child.id()).collect();
    let (cpu_before, from) = (pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>(), chrono::Utc::now());
    // Until both replicas won windows under load (each period's lease goes to one of them; a
    // replica whose uploader the machine starves at each period's start can lose many in a row
    // when other tests keep both cores busy): 12 s, up to three times.
    for _ in 0..3 {
        load(&replicas.iter().collect::<Vec<_>>(), 12);
        let loaded = from.timestamp() + 1;
        let won: std::collections::BTreeSet<String> = windows(&store)
            .into_iter()
            .filter(|k| k.profile_type == "cpu" && k.start >= loaded)
            .map(|k| k.instance)
            .collect();
        if won.len() == 2 {
            break;
        }
    }
    let (cpu_after, to) = (pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>(), chrono::Utc::now());
    for r in replicas {
        r.stop();
    }
    let used = (cpu_after - cpu_before) / (to - from).as_seconds_f64();
    // The windows that started under load, from a second in (wrk's start) to a second before its end.
    let since = (from + chrono::Duration::seconds(1)).to_rfc3339();
    let until = (to - chrono::Duration::seconds(1)).to_rfc3339();
    let out = contprof()
        .args(["prod", "top", "--format", "json", "--store"])
        .arg(&store_dir)
        .args(["--since", &since, "--until", &until])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = &report["fleet"]["services"][0];
    assert_eq!(web["service"], "web", "{report:#}");
    assert_eq!(web["instances"], 2.0, "both replicas took windows: {report:#}");
    assert_eq!(report["fleet"]["unit"], "core-seconds a day");
    let cores = web["level"].as_f64().unwrap();
    assert!(
        (cores - used).abs() <= 0.3 * used,
        "prod top says {cores:.2} cores, the replicas used {used:.2} (from /proc): {report:#}"
    );
    let first = &report["fleet"]["functions"][0];
    assert_eq!(first["name"], "service::checksum", "{report:#}");
    assert_eq!(first["crate"], "service");
    assert!(first["share"].as_f64().unwrap() > 0.4, "{first}");

    // The heap: each replica holds the 64 MiB cache it filled at start, so two hold twice that.
    let out = contprof()
        .args(["prod", "top", "--type", "heap", "--format", "json", "--store"])
        .arg(&store_dir)
        .args(["--since", &since, "--until", &until])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let heap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = &heap["fleet"]["services"][0];
    assert_eq!((web["service"].as_str(), web["instances"].as_f64()), (Some("web"), Some(2.0)), "{heap:#}");
    let cache = heap["fleet"]["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "service::warm_cache")
        .unwrap_or_else(|| panic!("warm_cache holds memory: {heap:#}"));
    // Its part of the level (bytes while covered): 2 x 64 MiB, sampled every 512 KiB (±30%).
    let held = cache["share"].as_f64().unwrap() * web["level"].as_f64().unwrap() / f64::from(1 << 20);
    assert!(
        (held - 128.0).abs() <= 128.0 * 0.3,
        "warm_cache holds {held:.0} MiB over two replicas: {heap:#}"
    );

    // The text and Markdown reports say the same.
    for format in ["text", "markdown"] {
        let out = contprof()
            .args(["prod", "top", "--format", format, "--limit", "3", "--store"])
            .arg(&store_dir)
            .args(["--since", &since, "--until", &until])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success() && text.contains("service::checksum") && text.contains("web"), "{text}");
    }
}
