//! Running one hostile program in every mode and comparing: without the agent (the reference),
//! under the preload agent in production mode, and in run mode with the variants that matter.
//!
//! What is compared with the reference: the exit status (or terminating signal), stdout, the
//! program's own stderr lines, and the files it wrote in `HOSTILE_DIR`. Not compared: stderr
//! lines that start with `contprof` (the agent's and the uploader's documented diagnostics,
//! reported as notes) or `observe: ` (facts the program reports that may legitimately differ).
//! What the agent must have produced is checked too: a complete raw file in run mode (it parses,
//! ends with exactly one end record), windows in the store in production mode where the program
//! ran long enough, and no uploader left running once the program is gone.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use contprof_engine::store::{Store, StoreLocation};
use contprof_protocol::format::{RawFile, Record};

use super::programs;

/// Who the program runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agent {
    /// No agent: the reference.
    None,
    /// The preload agent in production mode (`CONTPROF_SERVICE`, a store, short windows).
    Prod,
    /// The preload agent in run mode (`CONTPROF_OUTPUT`).
    Run,
}

/// One way of running a program.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub name: &'static str,
    pub agent: Agent,
    /// Extra `CONTPROF_*` settings.
    pub env: &'static [(&'static str, &'static str)],
    /// Run with `RLIMIT_SIGPENDING` at 0, where `timer_create` fails: the agent falls back to the
    /// process-wide `setitimer(ITIMER_PROF)` (with `CONTPROF_PERF=0` in `env`).
    pub itimer: bool,
}

const fn mode(name: &'static str, agent: Agent, env: &'static [(&'static str, &'static str)]) -> Mode {
    Mode { name, agent, env, itimer: false }
}

pub const PLAIN: Mode = mode("without the agent", Agent::None, &[]);
pub const PROD: Mode = mode("production", Agent::Prod, &[]);
pub const PROD_ALL_TYPES: Mode = mode(
    "production, every profile type",
    Agent::Prod,
    &[("CONTPROF_TYPES", "cpu,alloc,heap,threads,contention,wall")],
);
pub const PROD_ITIMER: Mode =
    Mode { itimer: true, ..mode("production, setitimer fallback", Agent::Prod, &[]) };
pub const RUN: Mode = mode("run", Agent::Run, &[]);
pub const RUN_999: Mode = mode("run, CONTPROF_FREQUENCY=999", Agent::Run, &[("CONTPROF_FREQUENCY", "999")]);
pub const RUN_WALL: Mode =
    mode("run, CONTPROF_WALL_FREQUENCY=100", Agent::Run, &[("CONTPROF_WALL_FREQUENCY", "100")]);
pub const RUN_CONTENTION: Mode =
    mode("run, CONTPROF_CONTENTION_RATE=10000", Agent::Run, &[("CONTPROF_CONTENTION_RATE", "10000")]);
pub const RUN_EXACT: Mode = mode("run, CONTPROF_ALLOC=exact", Agent::Run, &[("CONTPROF_ALLOC", "exact")]);
pub const RUN_ITIMER: Mode =
    Mode { itimer: true, ..mode("run, setitimer fallback", Agent::Run, &[("CONTPROF_PERF", "0")]) };

/// The modes every case runs in (besides the reference).
pub const DEFAULT_MODES: [Mode; 7] =
    [PROD, PROD_ALL_TYPES, RUN, RUN_999, RUN_WALL, RUN_CONTENTION, RUN_EXACT];

/// A standard stream of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// A pipe the test reads.
    Captured,
    /// Not open at all.
    Closed,
    /// `/dev/full` (every write fails with `ENOSPC`).
    DevFull,
    /// A pipe whose read end is closed (a write raises `SIGPIPE`, or fails with `EPIPE`).
    BrokenPipe,
}

/// A signal the test sends once the program printed `ready`, after a delay.
#[derive(Clone, Copy, Debug)]
pub struct SignalAfterReady {
    pub signal: libc::c_int,
    pub after: Duration,
}

/// One program and how to run it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Environment for every mode (besides a minimal `PATH`, `HOSTILE_DIR`, `HOSTILE_SECONDS`).
    pub env: Vec<(String, String)>,
    /// Another preloaded library, before the agent (and alone in the reference run).
    pub preload_first: Option<PathBuf>,
    pub stdout: Stream,
    pub stderr: Stream,
    pub modes: Vec<Mode>,
    pub signal: Option<SignalAfterReady>,
    /// Production mode must have stored windows (the program ran for a few periods).
    pub windows: bool,
    /// What run mode must have written.
    pub raw_file: RawExpect,
    /// A detached process (a daemon) that outlives the program: the file in `HOSTILE_DIR` it
    /// writes last, and the file there that holds its pid (`("result", "daemon.pid")`). It works
    /// until `HOSTILE_DIR/stop` exists, which the test creates once the daemon's first window is
    /// stored (production mode with [`Case::windows`]), at once otherwise.
    pub detached: Option<(&'static str, &'static str)>,
    /// `CONTPROF_STORE` for production mode (default: a fresh directory of the run), and extra
    /// environment there (credentials).
    pub store: Option<String>,
    pub store_env: Vec<(String, String)>,
    /// Killed (and reported) after this long.
    pub timeout: Duration,
}

impl Case {
    /// `program ARGS` in every default mode, streams captured.
    pub fn new(name: &str, program: PathBuf, args: &[&str]) -> Case {
        Case {
            name: name.to_owned(),
            program,
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            preload_first: None,
            stdout: Stream::Captured,
            stderr: Stream::Captured,
            modes: DEFAULT_MODES.to_vec(),
            signal: None,
            windows: false,
            raw_file: RawExpect::Complete,
            detached: None,
            store: None,
            store_env: Vec::new(),
            timeout: Duration::from_secs(90),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Adds modes to the default ones.
    pub fn also(mut self, modes: &[Mode]) -> Case {
        self.modes.extend_from_slice(modes);
        self
    }

    /// Runs only in these modes (besides the reference).
    pub fn only(mut self, modes: &[Mode]) -> Case {
        self.modes = modes.to_vec();
        self
    }

    /// Production mode must have stored windows.
    pub fn windows(mut self) -> Case {
        self.windows = true;
        self
    }
}

/// What run mode's raw file must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawExpect {
    /// Complete: it parses and ends with one end record (unless a signal killed the process).
    Complete,
    /// Checked and reported as notes, not required (the program took the agent's descriptor).
    Reported,
    /// None is possible (the agent cannot load).
    Absent,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(String),
    /// Still running at the case's timeout (then killed).
    TimedOut,
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub mode: Mode,
    pub status: Status,
    pub stdout: String,
    /// The program's own stderr lines.
    pub stderr: String,
    /// Lines of the agent and the uploader on stderr.
    pub agent_lines: Vec<String>,
    /// `observe: ` lines.
    pub observations: Vec<String>,
    /// Files in `HOSTILE_DIR` (not `scratch/`, `*.pid`, `*.tmp`), by relative path.
    pub files: BTreeMap<String, String>,
    /// What the agent did wrong besides the program's behaviour (incomplete raw file, no
    /// windows, a lingering uploader).
    pub problems: Vec<String>,
    /// Facts worth reporting (windows stored, the raw file's messages).
    pub notes: Vec<String>,
    pub seconds: f64,
    /// Keeps the run's directory (store, raw file) until the outcome is dropped.
    pub _dir: tempfile::TempDir,
}

/// Everything one case did in all its modes.
pub struct Report {
    pub case: Case,
    pub reference: Outcome,
    pub outcomes: Vec<Outcome>,
}

/// The service name of a case's production run (unique per case and mode, so that the
/// uploaders of one run are found by it).
fn service_name(case: &Case, mode: &Mode) -> String {
    let slug =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    format!("hostile-{}-{}-{}", slug(&case.name), slug(mode.name), std::process::id())
}

/// Pids of the uploaders (`cargo-contprof agent upload`) started for `service`.
pub fn uploaders_of(service: &str) -> Vec<u32> {
    crate::util::uploaders_with(&format!("--service={service}"))
}

/// Adds the uploaders of `service` running now to `seen`.
fn see_uploaders(service: &str, seen: &mut Vec<u32>) {
    for u in uploaders_of(service) {
        if !seen.contains(&u) {
            seen.push(u);
        }
    }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until `f` holds or `secs` pass; whether it held.
pub fn wait_until(secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long an uploader may take after its service ended: it drains its queue for at most 30 s.
const UPLOADER_GRACE_SECS: f64 = 45.0;

/// Reads a pipe to its end on a thread.
fn reader(pipe: Option<impl Read + Send + 'static>) -> Option<mpsc::Receiver<Vec<u8>>> {
    let mut pipe = pipe?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    Some(rx)
}

/// Reads stdout line by line on a thread, telling `ready` when the line `ready` arrives.
fn stdout_reader(
    pipe: Option<std::process::ChildStdout>,
    ready: mpsc::Sender<()>,
) -> Option<mpsc::Receiver<Vec<u8>>> {
    let pipe = pipe?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut lines = std::io::BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match std::io::BufRead::read_until(&mut lines, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line == b"ready\n" {
                        let _ = ready.send(());
                    }
                    all.extend_from_slice(&line);
                }
            }
        }
        let _ = tx.send(all);
    });
    Some(rx)
}

fn describe_status(status: std::process::ExitStatus) -> Status {
    match (status.code(), status.signal()) {
        (Some(c), _) => Status::Exited(c),
        (None, Some(s)) => Status::Signaled(signal_name(s)),
        (None, None) => Status::Exited(-1),
    }
}

/// `SIGPROF` for 27.
pub fn signal_name(sig: libc::c_int) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "scratch" || rel.ends_with(".pid") || rel.ends_with(".tmp") {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_files(root, &path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            out.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

/// Checks the raw file of a run-mode run: it parses and, when the process was not killed by a
/// signal (there is no end record after a crash), ends with one end record and nothing after.
fn check_raw_file(path: &Path, killed: bool, problems: &mut Vec<String>, notes: &mut Vec<String>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return problems.push(format!("no raw file ({}): {e}", path.display())),
    };
    let raw = match RawFile::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return problems.push(format!("the raw file does not parse: {e}")),
    };
    let ends = raw.records.iter().filter(|r| matches!(r, Record::End(_))).count();
    let last_is_end = matches!(raw.records.last(), Some(Record::End(_)));
    if killed && ends == 0 {
        notes.push("no end record: the process was killed by a signal".into());
    } else if ends != 1 || !last_is_end || raw.truncated_bytes != 0 {
        problems.push(format!(
            "the raw file is not complete: {ends} end record(s), last record {}, {} truncated byte(s)",
            if last_is_end { "the end" } else { "not the end" },
            raw.truncated_bytes
        ));
    }
    let samples = raw.records.iter().filter(|r| matches!(r, Record::CpuSample { .. })).count();
    notes.push(format!("raw file: {} bytes, {samples} CPU samples", bytes.len()));
    for r in &raw.records {
        if let Record::Message { text, .. } = r {
            notes.push(format!("raw file message: {text}"));
        }
    }
}

/// Runs `case` in `mode`.
fn run_one(case: &Case, mode: Mode) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let files_dir = dir.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let store_dir = dir.path().join("store");
    let raw = dir.path().join("run.raw");
    let service = service_name(case, &mode);
    // Runs as another user (read-only store) need to reach the run's files.
    let _ = std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let _ = std::fs::set_permissions(&files_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777));

    let mut cmd = Command::new(&case.program);
    cmd.args(&case.args).env_clear().env("PATH", format!("{}:/usr/bin:/bin", programs::out_dir().display()));
    cmd.env("HOSTILE_DIR", &files_dir).env("HOSTILE_SECONDS", "3");
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let mut preload: Vec<PathBuf> = case.preload_first.iter().cloned().collect();
    match mode.agent {
        Agent::None => {}
        Agent::Run => {
            preload.push(programs::agent_library().to_owned());
            cmd.env("CONTPROF_OUTPUT", &raw);
        }
        Agent::Prod => {
            preload.push(programs::agent_library().to_owned());
            let store = case.store.clone().unwrap_or_else(|| store_dir.to_string_lossy().into_owned());
            cmd.env("CONTPROF_SERVICE", &service)
                .env("CONTPROF_STORE", store)
                .env("CONTPROF_PERIOD", "1")
                .env("CONTPROF_WINDOW", "0.5")
                .env("CONTPROF_HELPER", env!("CARGO_BIN_EXE_cargo-contprof"));
            for (k, v) in &case.store_env {
                cmd.env(k, v);
            }
        }
    }
    for (k, v) in mode.env {
        cmd.env(k, v);
    }
    if !preload.is_empty() {
        let joined: Vec<String> = preload.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        cmd.env("LD_PRELOAD", joined.join(":"));
    }
    cmd.stdin(Stdio::null()).process_group(0);
    let stream = |s: Stream| -> (Stdio, bool) {
        match s {
            Stream::Captured => (Stdio::piped(), false),
            Stream::Closed => (Stdio::null(), true),
            Stream::DevFull => {
                (Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()), false)
            }
            Stream::BrokenPipe => {
                let (read, write) = std::io::pipe().unwrap();
                drop(read);
                (Stdio::from(write), false)
            }
        }
    };
    let (out, close_out) = stream(case.stdout);
    let (err, close_err) = stream(case.stderr);
    cmd.stdout(out).stderr(err);
    let itimer = mode.itimer;
    // SAFETY: only async-signal-safe calls (close, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if close_out {
                libc::close(1);
            }
            if close_err {
                libc::close(2);
            }
            if itimer {
                let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::setrlimit(libc::RLIMIT_SIGPENDING, &zero);
            }
            Ok(())
        });
    }

    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{} starts: {e}", case.program.display()));
    let pid = child.id();
    let (ready_tx, ready_rx) = mpsc::channel();
    let stdout_rx = stdout_reader(child.stdout.take(), ready_tx);
    let stderr_rx = reader(child.stderr.take());
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut uploaders: Vec<u32> = Vec::new();
    let deadline = started + case.timeout;
    let mut signal_at = None;
    let mut signalled = false;
    let mut polls = 0u32;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break describe_status(st);
        }
        polls += 1;
        if mode.agent == Agent::Prod && polls.is_multiple_of(16) {
            see_uploaders(&service, &mut uploaders);
        }
        if let Some(s) = case.signal {
            if signal_at.is_none() && ready_rx.try_recv().is_ok() {
                signal_at = Some(Instant::now() + s.after);
            }
            if !signalled && signal_at.is_some_and(|t| Instant::now() >= t) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as libc::pid_t, s.signal) };
                signalled = true;
            }
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child's process group.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            break Status::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();

    // A detached process (a daemon) still works: let it stop once it has a window, wait for its
    // last file, then for it to end.
    if let Some((last, pid_file)) = case.detached {
        if mode.agent == Agent::Prod && case.windows && case.store.is_none() {
            // Not a failure here: the count below says whether a window was stored.
            wait_until(case.timeout.as_secs_f64(), || {
                see_uploaders(&service, &mut uploaders);
                !windows(&store_dir, Some(&service)).is_empty()
            });
        }
        let _ = std::fs::write(files_dir.join("stop"), "");
        if !wait_until(case.timeout.as_secs_f64(), || files_dir.join(last).exists()) {
            problems.push(format!("the detached process never wrote {last}"));
        }
        let daemon: Option<u32> =
            std::fs::read_to_string(files_dir.join(pid_file)).ok().and_then(|s| s.trim().parse().ok());
        if let Some(d) = daemon
            && !wait_until(30.0, || gone(d))
        {
            problems.push(format!("the detached process {d} did not end"));
            // SAFETY: a process this run started.
            unsafe { libc::kill(d as libc::pid_t, libc::SIGKILL) };
        }
    }
    if mode.agent == Agent::Prod {
        notes.push(format!("uploader(s) seen while it ran: {}", uploaders.len()));
        if case.windows && uploaders.is_empty() {
            // Without one, the wait below for the last windows' uploads would not wait.
            problems.push("no uploader was seen while the program ran".into());
        }
        let waited = Instant::now();
        if !wait_until(UPLOADER_GRACE_SECS, || uploaders_of(&service).is_empty()) {
            let left = uploaders_of(&service);
            problems.push(format!(
                "uploader(s) {left:?} still running {UPLOADER_GRACE_SECS} s after the program ended"
            ));
            for u in left {
                // SAFETY: an uploader this run started.
                unsafe { libc::kill(u as libc::pid_t, libc::SIGKILL) };
            }
        } else if waited.elapsed().as_secs_f64() > 10.0 {
            notes.push(format!(
                "the uploader took {:.0} s to finish after the program ended",
                waited.elapsed().as_secs_f64()
            ));
        }
    }
    let take = |rx: Option<mpsc::Receiver<Vec<u8>>>, what: &str, problems: &mut Vec<String>| -> String {
        let Some(rx) = rx else { return String::new() };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => {
                problems.push(format!("its {what} was still held open by another process"));
                String::new()
            }
        }
    };
    let stdout = take(stdout_rx, "stdout", &mut problems);
    let stderr_all = take(stderr_rx, "stderr", &mut problems);
    let mut stderr = String::new();
    let mut agent_lines = Vec::new();
    let mut observations = Vec::new();
    for line in stderr_all.split_inclusive('\n') {
        if let Some(o) = line.strip_prefix("observe: ") {
            observations.push(o.trim_end().to_owned());
        } else if line.starts_with("contprof") {
            agent_lines.push(line.trim_end().to_owned());
        } else {
            stderr.push_str(line);
        }
    }
    let mut files = BTreeMap::new();
    collect_files(&files_dir, &files_dir, &mut files);

    match mode.agent {
        Agent::Run if case.raw_file == RawExpect::Complete => {
            let killed = matches!(status, Status::Signaled(_) | Status::TimedOut);
            check_raw_file(&raw, killed, &mut problems, &mut notes)
        }
        Agent::Run if case.raw_file == RawExpect::Reported => {
            let mut issues = Vec::new();
            check_raw_file(&raw, false, &mut issues, &mut notes);
            notes.extend(issues.into_iter().map(|i| format!("not required here: {i}")));
        }
        Agent::Run if raw.exists() => notes.push("a raw file was written".into()),
        Agent::Prod if case.store.is_none() => {
            let n = windows(&store_dir, Some(&service)).len();
            notes.push(format!("{n} window object(s) stored"));
            if case.windows && n == 0 {
                problems.push("no window was stored".into());
            }
            // The uploader reports a window the agent could not record (it had no descriptor
            // for its file, say): every window the uploader asked for must be recorded.
            if case.windows {
                for line in agent_lines.iter().filter(|l| l.contains("could not record a window")) {
                    problems.push(format!("a window was lost: {line}"));
                }
            }
        }
        _ => {}
    }
    Outcome {
        mode,
        status,
        stdout,
        stderr,
        agent_lines,
        observations,
        files,
        problems,
        notes,
        seconds,
        _dir: dir,
    }
}

/// The window objects (of `service`, or all) in the store directory `dir` (none when it is not
/// a store).
pub fn windows(dir: &Path, service: Option<&str>) -> Vec<contprof_engine::store::WindowKey> {
    if !dir.join("store.json").exists() {
        return Vec::new();
    }
    Store::open(&StoreLocation::Dir(dir.to_owned())).and_then(|s| s.list_windows(service)).unwrap_or_default()
}

/// Runs `case` without the agent and in each of its modes, all at once.
pub fn run_case(case: Case) -> Report {
    let _shared = crate::util::shared();
    let (reference, outcomes) = std::thread::scope(|s| {
        let reference = s.spawn(|| run_one(&case, PLAIN));
        let others: Vec<_> = case.modes.iter().map(|m| s.spawn(|| run_one(&case, *m))).collect();
        (
            reference.join().expect("the reference run"),
            others.into_iter().map(|h| h.join().expect("a run")).collect::<Vec<_>>(),
        )
    });
    Report { case, reference, outcomes }
}

/// A line-by-line difference of two texts, for messages: a line repeated is shown once with its
/// count, control characters escaped, long lines and long differences cut.
fn diff(want: &str, got: &str) -> String {
    const MAX_LINES: usize = 12;
    let mut lines: Vec<(String, usize)> = Vec::new();
    for c in similar::TextDiff::from_lines(want, got).iter_all_changes() {
        let sign = match c.tag() {
            similar::ChangeTag::Equal => continue,
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        let text: String = c.value().trim_end().escape_debug().take(160).collect();
        let line = format!("      {sign}{text}");
        match lines.last_mut() {
            Some((last, n)) if *last == line => *n += 1,
            _ => lines.push((line, 1)),
        }
    }
    let more = lines.len().saturating_sub(MAX_LINES);
    let mut out: Vec<String> = lines
        .into_iter()
        .take(MAX_LINES)
        .map(|(l, n)| if n > 1 { format!("{l}    (x{n})") } else { l })
        .collect();
    if more > 0 {
        out.push(format!("      ... and {more} more changed line(s)"));
    }
    out.join("\n")
}

impl Report {
    /// The behaviour changes and agent problems of one outcome against the reference.
    pub fn failures(&self, o: &Outcome) -> Vec<String> {
        let r = &self.reference;
        let mut f = Vec::new();
        if o.status != r.status {
            f.push(format!("status: {:?} instead of {:?}", o.status, r.status));
        }
        if o.stdout != r.stdout {
            f.push(format!("stdout differs:\n{}", diff(&r.stdout, &o.stdout)));
        }
        if o.stderr != r.stderr {
            f.push(format!("stderr differs:\n{}", diff(&r.stderr, &o.stderr)));
        }
        for (name, text) in &r.files {
            match o.files.get(name) {
                None => f.push(format!("file {name} missing")),
                Some(t) if t.contains('\0') && !text.contains('\0') => f.push(format!(
                    "file {name} holds {} bytes of binary data the program never wrote (NUL bytes: \
                     sample records?); its own text is {}",
                    t.len().saturating_sub(text.len()),
                    if t.contains(text.as_str()) { "there, with the data in between" } else { "not intact" }
                )),
                Some(t) if t != text => f.push(format!("file {name} differs:\n{}", diff(text, t))),
                Some(_) => {}
            }
        }
        for name in o.files.keys().filter(|n| !r.files.contains_key(*n)) {
            f.push(format!("file {name} written only here"));
        }
        f.extend(o.problems.iter().cloned());
        f
    }

    /// Everything seen, for the test's output and for failure messages.
    pub fn summary(&self) -> String {
        let mut s = format!("hostile case `{}` ({})\n", self.case.name, self.case.program.display());
        let mut line = |o: &Outcome, failures: &[String]| {
            s.push_str(&format!(
                "  [{}] {:?} in {:.1} s: {}\n",
                o.mode.name,
                o.status,
                o.seconds,
                if failures.is_empty() {
                    "unchanged".to_owned()
                } else {
                    format!("{} failure(s)", failures.len())
                }
            ));
            for x in failures {
                s.push_str(&format!("    FAIL {x}\n"));
            }
            for n in &o.notes {
                s.push_str(&format!("    note: {n}\n"));
            }
            for a in &o.agent_lines {
                s.push_str(&format!("    agent said: {a}\n"));
            }
            for ob in &o.observations {
                s.push_str(&format!("    observed: {ob}\n"));
            }
        };
        line(&self.reference, &self.reference.problems);
        for o in &self.outcomes {
            line(o, &self.failures(o));
        }
        s
    }

    /// The modes whose runs changed the program's behaviour or where the agent failed.
    pub fn failing_modes(&self) -> Vec<&'static str> {
        self.outcomes.iter().filter(|o| !self.failures(o).is_empty()).map(|o| o.mode.name).collect()
    }

    /// Fails the test, with the whole summary, when any mode changed anything.
    pub fn assert_unchanged(&self) {
        let summary = self.summary();
        assert!(self.reference.problems.is_empty(), "the reference run failed:\n{summary}");
        assert!(
            self.failing_modes().is_empty(),
            "the agent changed the program's behaviour in {:?}:\n{summary}",
            self.failing_modes()
        );
        eprintln!("{summary}");
    }

    /// The outcome of `mode`.
    pub fn outcome(&self, mode: &str) -> &Outcome {
        self.outcomes.iter().find(|o| o.mode.name == mode).unwrap_or_else(|| panic!("no run in mode {mode}"))
    }
}
