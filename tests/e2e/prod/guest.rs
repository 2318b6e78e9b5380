//! The production agent as a guest: small C programs that each do one thing services do (a
//! standard error nobody can write to, a `sigwait` signal thread, daemonizing, pre-fork workers),
//! run under the preload library in the continuous mode, must behave as they do without it and
//! still be profiled. Also the operator's off switch (`prod pause`) on a running program, and the
//! uploader's command line for values that look like flags.
//!
//! The programs are compiled here with the system's C compiler (the one Rust links with) and
//! without debug info, so that the uploader warns on its first window, as it would for any
//! stripped service.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contprof_engine::store::{Store, StoreLocation, WindowKey};

use super::{agent_library, eventually, functions, label, lines_of, read, uploader_of};
use crate::util::contprof;

/// Allocates and computes for `argv[1]` seconds (default 5), then exits 0; never writes anything.
/// With `argv[2]`, first allocates that many MiB and keeps them live.
const BUSY: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile unsigned long sink;
static void work(void) {
    for (int i = 0; i < 20000; i++) {
        char *p = malloc(64 + i % 512);
        memset(p, i, 64);
        sink += p[3];
        free(p);
    }
}
int main(int argc, char **argv) {
    time_t end = time(0) + (argc > 1 ? atoi(argv[1]) : 5);
    if (argc > 2) {
        size_t len = (size_t)atoi(argv[2]) << 20;
        char *kept = malloc(len);
        memset(kept, 1, len);
        sink += kept[len - 1];
    }
    while (time(0) < end) { work(); usleep(500); }
    return 0;
}
"#;

/// A server in the style of many C daemons: every signal blocked in every thread, a dedicated
/// thread collecting SIGTERM and SIGINT with `sigwait`, printing which; `main` exits 0 once it did.
/// (Were `main` the one in `sigwait`, the kernel would pick it first whatever other threads do.)
const SIGWAIT: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static volatile unsigned long sink;
static void *work(void *arg) {
    (void)arg;
    for (;;) { char *p = malloc(100); memset(p, 1, 100); sink += p[5]; free(p); usleep(100); }
    return 0;
}
static void *signals(void *arg) {
    (void)arg;
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    int sig = 0;
    sigwait(&wanted, &sig);
    printf("stopped by signal %d\n", sig);
    return 0;
}
int main(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, 0);
    pthread_t t, s;
    pthread_create(&t, 0, work, 0);
    pthread_create(&s, 0, signals, 0);
    pthread_join(s, 0);
    return 0;
}
"#;

/// Daemonizes (fork, setsid, fork again, both parents exit at once), writes the daemon's pid to
/// `argv[1]`, lets a child `exec` `ls -l /proc/self/fd` into `argv[3]`, then works for
/// `argv[2]` seconds.
const DAEMON: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile unsigned long sink;
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    pid_t p = fork();
    if (p < 0) return 1;
    if (p > 0) return 0;
    setsid();
    p = fork();
    if (p < 0) _exit(1);
    if (p > 0) _exit(0);
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    pid_t c = fork();
    if (c == 0) {
        execl("/bin/sh", "sh", "-c", "exec ls -l /proc/self/fd > \"$0\"", argv[3], (char *)0);
        _exit(127);
    }
    waitpid(c, 0, 0);
    time_t end = time(0) + atoi(argv[2]);
    while (time(0) < end) {
        for (int i = 0; i < 20000; i++) { char *q = malloc(64 + i % 512); memset(q, i, 64); sink += q[3]; free(q); }
        usleep(500);
    }
    return 0;
}
"#;

/// A pre-fork server: forks two workers that work for `argv[2]` seconds, writes their pids to
/// `argv[1]`, waits for both and exits 0 when both did.
const PREFORK: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile unsigned long sink;
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pid_t w[2];
    for (int k = 0; k < 2; k++) {
        w[k] = fork();
        if (w[k] < 0) return 1;
        if (w[k] == 0) {
            time_t end = time(0) + atoi(argv[2]);
            while (time(0) < end) {
                for (int i = 0; i < 20000; i++) { char *q = malloc(64 + i % 512); memset(q, i, 64); sink += q[3]; free(q); }
                usleep(500);
            }
            _exit(0);
        }
    }
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%d\n%d\n", (int)w[0], (int)w[1]);
    fclose(f);
    int ok = 0;
    for (int k = 0; k < 2; k++) {
        int status = 0;
        waitpid(w[k], &status, 0);
        ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    return ok == 2 ? 0 : 1;
}
"#;

/// Compiles `source` into `dir/name` (no debug info, as a stripped service ships).
fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let status =
        Command::new("cc").args(["-O1", "-pthread", "-o"]).arg(&out).arg(&src).status().expect("cc runs");
    assert!(status.success(), "{name}.c compiles");
    out
}

/// `program` under the preload library in the continuous mode (service `web`, a window of
/// 0.3 s every second), into `store`.
fn profiled(dir: &Path, program: &Path, store: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LD_PRELOAD", agent_library(dir))
        .env("CONTPROF_SERVICE", "web")
        .env("CONTPROF_STORE", store)
        .env("CONTPROF_PERIOD", "1")
        .env("CONTPROF_WINDOW", "0.3")
        .env("CONTPROF_TYPES", "cpu,heap")
        .env("CONTPROF_HELPER", env!("CARGO_BIN_EXE_cargo-contprof"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn open(store: &Path) -> Store {
    Store::open(&StoreLocation::Dir(store.to_path_buf())).unwrap()
}

/// The windows of service `web` of `profile_type`.
fn windows_of(store: &Path, profile_type: &str) -> Vec<WindowKey> {
    let mut w: Vec<WindowKey> = open(store)
        .list_windows(Some("web"))
        .unwrap()
        .into_iter()
        .filter(|k| k.profile_type == profile_type)
        .collect();
    w.sort_by_key(|k| (k.start, k.instance.clone()));
    w
}

/// Waits for `child`, at most `secs`.
fn wait(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the program did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn a_standard_error_that_cannot_be_written_stops_neither_the_service_nor_its_windows() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let busy = compile(dir.path(), "busy", BUSY);
    // The trigger: the uploader warns about the binary on its first window.
    let store = dir.path().join("store-seen");
    let log = dir.path().join("stderr.log");
    let mut seen = profiled(dir.path(), &busy, &store, &[]);
    let status = wait(&mut seen.arg("3").stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap(), 30);
    assert!(status.success());
    eventually("the uploader's warning", 20, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("has no debug info")
    });

    // Standard error on a full device, and a pipe whose reader is gone.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for (name, stderr) in [("full", Stdio::from(full)), ("closed-pipe", Stdio::from(writer))] {
        let store = dir.path().join(format!("store-{name}"));
        let mut child = profiled(dir.path(), &busy, &store, &[]).arg("5").stderr(stderr).spawn().unwrap();
        let status = wait(&mut child, 30);
        assert!(status.success(), "stderr {name}: the program ended as it does alone, not {status:?}");
        eventually("the windows", 30, || uploader_of(child.id()).is_none());
        let cpu = windows_of(&store, "cpu");
        assert!(cpu.len() >= 2, "stderr {name}: windows still recorded: {cpu:?}");
    }
}

#[test]
fn process_signals_reach_the_services_sigwait_thread_not_the_agents() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = compile(dir.path(), "sigwait", SIGWAIT);
    let store = dir.path().join("store");
    let mut child = profiled(dir.path(), &server, &store, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("a first window", 20, || !windows_of(&store, "cpu").is_empty());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait(&mut child, 20);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "the server stopped itself, not killed: {status:?}");
    assert_eq!(out, "stopped by signal 15\n");
}

#[test]
fn values_that_look_like_flags_reach_the_windows_and_the_spool_is_private() {
    use std::os::unix::fs::MetadataExt as _;
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let busy = compile(dir.path(), "busy", BUSY);
    let store = dir.path().join("store");
    let env = [
        ("CONTPROF_VERSION", "-rc1"),
        ("CONTPROF_ZONE", "--zone"),
        ("CONTPROF_INSTANCE", "-i=1 x"),
        ("CONTPROF_LABELS", "team=-search"),
    ];
    let mut child = profiled(dir.path(), &busy, &store, &env).arg("4").stderr(Stdio::null()).spawn().unwrap();
    let spool_prefix = format!("contprof-spool-{}-", child.id());
    let mut spools = Vec::new();
    eventually("the spool", 20, || {
        spools = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&spool_prefix))
            .map(|e| e.path())
            .collect();
        !spools.is_empty()
    });
    let meta = std::fs::symlink_metadata(&spools[0]).unwrap();
    // SAFETY: no preconditions.
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, unsafe { libc::geteuid() }), "{spools:?}");
    assert!(wait(&mut child, 30).success());
    eventually("the uploader to finish", 30, || uploader_of(child.id()).is_none());
    let cpu = windows_of(&store, "cpu");
    assert!(cpu.len() >= 2, "{cpu:?}");
    for k in &cpu {
        assert_eq!(
            (k.deployment.version.as_str(), k.deployment.zone.as_str(), k.instance.as_str()),
            ("-rc1", "--zone", "-i=1 x")
        );
    }
    let p = read(&open(&store), &cpu[0]);
    let s = &p.sample[0];
    assert_eq!((label(&p, s, "version"), label(&p, s, "team")), (Some("-rc1"), Some("-search")));
    let list = crate::util::output(
        contprof().args(["prod", "list", "--version=-rc1", "--format", "json", "--store"]).arg(&store),
    );
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.contains("\"version\": \"-rc1\""), "{list:?}");
}

#[test]
fn a_daemon_is_profiled_as_its_own_instance_and_its_parents_uploader_ends() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let daemon = compile(dir.path(), "daemon", DAEMON);
    let store = dir.path().join("store");
    let (pid_file, fds) = (dir.path().join("daemon.pid"), dir.path().join("fds.txt"));
    let mut parent = profiled(dir.path(), &daemon, &store, &[("CONTPROF_INSTANCE", "d")])
        .arg(&pid_file)
        .arg("12")
        .arg(&fds)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait(&mut parent, 20).success());
    // The parent is gone: its uploader ends at once (the daemon, which runs on for 12 s, holds
    // none of its channel).
    eventually("the parent's uploader to end", 6, || uploader_of(parent.id()).is_none());
    eventually("the daemon's pid", 10, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let instance = format!("d-{pid}");
    eventually("the daemon's windows", 30, || {
        windows_of(&store, "cpu").iter().any(|k| k.instance == instance)
    });
    eventually("the daemon to end", 30, || !alive(pid));
    eventually("the daemon's uploader to end", 30, || uploader_of(pid).is_none());
    let instances: std::collections::BTreeSet<String> =
        windows_of(&store, "cpu").into_iter().map(|k| k.instance).collect();
    assert!(
        instances.iter().all(|i| *i == instance || i == "d"),
        "one instance per process that ran: {instances:?}"
    );
    // The program it `exec`ed holds the descriptors it holds without the agent, none of the
    // agent's.
    let (plain_pid, plain_fds) = (dir.path().join("plain.pid"), dir.path().join("plain-fds.txt"));
    let mut plain = Command::new(&daemon);
    plain
        .arg(&plain_pid)
        .arg("0")
        .arg(&plain_fds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(wait(&mut plain.spawn().unwrap(), 20).success());
    eventually("the plain daemon's listing", 10, || {
        std::fs::read_to_string(&plain_fds).is_ok_and(|s| s.contains("->"))
    });
    let listing = std::fs::read_to_string(&fds).unwrap();
    assert_eq!(
        descriptors(&listing),
        descriptors(&std::fs::read_to_string(&plain_fds).unwrap()),
        "{listing}"
    );
}

/// The descriptors of an `ls -l /proc/self/fd` listing: number and kind of target (inode
/// numbers, pids and temporary names left out).
fn descriptors(listing: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.rsplit(' ').next()?.to_owned();
            let kind = if target.starts_with('/') && !target.starts_with("/dev/") {
                "file".to_owned()
            } else {
                target.chars().filter(|c| !c.is_ascii_digit()).collect()
            };
            Some((fd, kind))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pre_fork_workers_are_profiled_each_as_an_instance() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let server = compile(dir.path(), "prefork", PREFORK);
    let store = dir.path().join("store");
    let pid_file = dir.path().join("workers.pid");
    let mut parent = profiled(dir.path(), &server, &store, &[("CONTPROF_INSTANCE", "pf")])
        .arg(&pid_file)
        .arg("10")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait(&mut parent, 40).success(), "both workers ended well");
    eventually("the uploaders to end", 30, || uploader_of(parent.id()).is_none());
    let workers: Vec<String> =
        std::fs::read_to_string(&pid_file).unwrap().lines().map(|p| format!("pf-{p}")).collect();
    for w in &workers {
        eventually("the worker's uploader to end", 30, || {
            uploader_of(w.trim_start_matches("pf-").parse().unwrap()).is_none()
        });
    }
    let cpu = windows_of(&store, "cpu");
    let instances: std::collections::BTreeSet<&str> = cpu.iter().map(|k| k.instance.as_str()).collect();
    for w in &workers {
        assert!(instances.contains(w.as_str()), "worker {w} has windows: {instances:?}");
    }
    assert!(instances.iter().all(|i| *i == "pf" || workers.iter().any(|w| w == i)), "{instances:?}");
}

#[test]
fn a_pause_in_the_store_stops_the_windows_until_it_is_removed() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let busy = compile(dir.path(), "busy", BUSY);
    let store = dir.path().join("store");
    let log = dir.path().join("uploader.log");
    let log_env = log.to_str().unwrap().to_owned();
    let mut child = profiled(dir.path(), &busy, &store, &[("CONTPROF_LOG", &log_env)])
        .args(["16", "64"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("a first window", 20, || !windows_of(&store, "cpu").is_empty());
    let run = |args: &[&str]| {
        let out = crate::util::output(contprof().args(["prod"]).args(args).arg("--store").arg(&store));
        assert_eq!(out.code, 0, "{out:?}");
        out
    };
    run(&["pause", "--service", "web", "--reason", "incident 7"]);
    let paused_at = chrono::Utc::now().timestamp();
    let listed = run(&["list"]);
    assert!(
        listed.stdout.contains("paused: service web since") && listed.stdout.contains("incident 7"),
        "{listed:?}"
    );
    // Within a period every uploader knows; a window that had already started may still end.
    std::thread::sleep(Duration::from_secs(4));
    let during: Vec<WindowKey> =
        windows_of(&store, "cpu").into_iter().filter(|k| k.start > paused_at + 1).collect();
    assert!(during.is_empty(), "no window while paused: {during:?}");
    run(&["resume", "--service", "web"]);
    let resumed_at = chrono::Utc::now().timestamp();
    eventually("windows again", 10, || windows_of(&store, "cpu").iter().any(|k| k.start >= resumed_at));
    let _ = child.kill();
    let _ = child.wait();
    // The agent was told: it stopped sampling allocations, and sampling resumed from empty
    // tables, so the 64 MiB allocated at start are in the heap before the pause, not after.
    let in_use = |k: &WindowKey| read(&open(&store), k).total(1) as f64 / f64::from(1 << 20);
    let heap = windows_of(&store, "heap");
    let before = heap.iter().filter(|k| k.start <= paused_at).map(in_use).fold(0.0, f64::max);
    let after: Vec<f64> = heap.iter().filter(|k| k.start >= resumed_at).map(in_use).collect();
    assert!(before > 64.0 * 0.7, "the block allocated at start is in use before the pause: {before:.1} MiB");
    assert!(!after.is_empty() && after.iter().all(|&a| a < 8.0), "after the resume: {after:?} MiB");
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("profiling paused: service web") && said.contains("profiling resumed"), "{said}");
}

#[test]
fn the_uploader_refuses_an_impossible_period_before_creating_anything() {
    let before = spools_of(777_777);
    let out = crate::util::output(contprof().args([
        "agent",
        "upload",
        "--pid=777777",
        "--service=s",
        "--version=1",
        "--zone=z",
        "--instance=i",
        "--store=/nonexistent/store",
        "--period=1e20",
        "--window=1",
        "--types=cpu",
    ]));
    assert_eq!(out.code, 2, "an error, not a panic: {out:?}");
    assert!(out.stderr.contains("--period"), "{out:?}");
    assert_eq!(spools_of(777_777), before, "no spool directory left behind");
}

fn spools_of(pid: u32) -> usize {
    let prefix = format!("contprof-spool-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

/// Computes for `argv[1]` seconds in one function of its own, built to be shipped stripped.
const SPIN: &str = r#"
#include <stdlib.h>
#include <time.h>
static volatile double sink;
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
__attribute__((noinline)) void spin_in_stripped_code(double secs) {
    double end = now() + secs;
    while (now() < end) {
        for (int i = 0; i < 100000; i++) sink = sink * 1.0000001 + 1;
    }
}
int main(int argc, char **argv) {
    spin_in_stripped_code(argc > 1 ? atof(argv[1]) : 3);
    return 0;
}
"#;

/// A service shipped stripped has frames without names until its debug file is in the store
/// (`prod symbols add`, as a release step would run it); from then on its uploaders name them,
/// with files and lines, without anything changed where it runs.
#[test]
fn a_stripped_service_is_named_once_its_debug_file_is_in_the_store() {
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let (src, full) = (dir.path().join("spin.c"), dir.path().join("spin.full"));
    let (debug, stripped) = (dir.path().join("spin.debug"), dir.path().join("spin"));
    std::fs::write(&src, SPIN).unwrap();
    let run = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
    assert!(run(Command::new("cc").args(["-g", "-O1", "-Wl,--build-id", "-o"]).arg(&full).arg(&src)));
    if !run(Command::new("objcopy").arg("--only-keep-debug").arg(&full).arg(&debug)) {
        assert!(!crate::util::tools_required(), "objcopy (binutils) is required");
        eprintln!("skipping: objcopy (binutils) is not usable");
        return;
    }
    assert!(run(Command::new("objcopy").arg("--strip-all").arg(&full).arg(&stripped)));
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap().to_owned();
    let spin_windows = |after: i64| -> Vec<WindowKey> {
        windows_of(&store, "cpu").into_iter().filter(|k| k.start > after).collect()
    };
    let profile_once = || {
        let mut child =
            profiled(dir.path(), &stripped, &store, &[]).arg("3").stderr(Stdio::null()).spawn().unwrap();
        assert!(wait(&mut child, 60).success());
        eventually("the uploader to finish", 30, || uploader_of(child.id()).is_none());
    };

    profile_once();
    let before = spin_windows(0);
    assert!(!before.is_empty(), "no window was stored");
    let st = open(&store);
    for key in &before {
        let p = read(&st, key);
        let names = functions(&p);
        assert!(
            !names.iter().any(|f| f.contains("spin_in_stripped_code")),
            "named without its debug file: {names:?}"
        );
        assert!(names.iter().any(|f| f.starts_with("spin+0x")), "{names:?}");
    }

    // The stripped binary itself has nothing to add; its debug file does.
    let refused =
        contprof().args(["prod", "symbols", "add", "--store", &store_arg]).arg(&stripped).output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("neither debug information nor a symbol table"), "{said}");
    let added =
        contprof().args(["prod", "symbols", "add", "--store", &store_arg]).arg(&debug).output().unwrap();
    let said = String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success() && said.contains("Added"), "{said}");
    let again =
        contprof().args(["prod", "symbols", "add", "--store", &store_arg]).arg(&debug).output().unwrap();
    assert!(
        again.status.success() && String::from_utf8_lossy(&again.stderr).contains("in the store already")
    );
    let list = contprof().args(["prod", "symbols", "list", "--store", &store_arg]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    let build_id = contprof_engine::symbolize::file_info(&stripped).unwrap().build_id.unwrap();
    assert!(list.status.success() && listed.starts_with(&build_id), "{listed}");

    // The windows recorded before get the names when they are read.
    let exported = dir.path().join("exported");
    let export = contprof()
        .args(["prod", "export", "--service", "web", "--type", "cpu", "--store", &store_arg])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    for file in std::fs::read_dir(&exported).unwrap().flatten() {
        let p = contprof_engine::profile::decode(&std::fs::read(file.path()).unwrap()).unwrap();
        let names = functions(&p);
        assert!(names.contains(&"spin_in_stripped_code"), "exported unnamed: {names:?}");
        assert!(!names.iter().any(|f| f.starts_with("spin+0x")), "{names:?}");
    }

    let last_before = before.iter().map(|k| k.start).max().unwrap();
    profile_once();
    let after = spin_windows(last_before);
    assert!(!after.is_empty(), "no window was stored the second time");
    for key in &after {
        let p = read(&st, key);
        let named = p.function.iter().find(|f| p.str(f.name) == "spin_in_stripped_code");
        let f = named.unwrap_or_else(|| panic!("not named with the store's debug file: {:?}", functions(&p)));
        assert!(p.str(f.filename).ends_with("spin.c"), "{}", p.str(f.filename));
        let lines = lines_of(&p, f.id);
        assert!(lines.iter().any(|&l| l > 0), "{lines:?}");
    }
}
