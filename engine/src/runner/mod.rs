//! Runs built artifacts under the agent.
//!
//! The agent is injected with `LD_PRELOAD` into the spawned artifact only: cargo, rustc and shells
//! never see it, and the agent removes itself from the environment at start, so processes the
//! workload spawns are not profiled into its file. Each execution writes one raw sample file; this
//! module owns spawning, waiting (with CPU accounting from `wait4`), timeouts and exit statuses. It
//! does not read the samples (see `profile`).

pub mod agent;
pub mod callgrind;
pub mod list;
pub mod pool;
pub mod stage;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use contprof_protocol::format::AllocMode;

use crate::errors::{Error, Result};
use crate::interrupt;

/// What measures the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The sampling agent: CPU time by sampling, allocations sampled or exact.
    #[default]
    Agent,
    /// Valgrind's callgrind: every instruction counted per function (exact, repeatable), with the
    /// agent inside recording every allocation; 67-98x slower on the real crates of `docs/src/guide/instructions.md`.
    Instructions,
}

impl Engine {
    /// What a run recorded by it says recorded it.
    pub fn recorder(self) -> crate::store::Recorder {
        match self {
            Engine::Agent => crate::store::Recorder::Agent,
            Engine::Instructions => crate::store::Recorder::Instructions,
        }
    }

    /// Its name on the command line and in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Agent => "agent",
            Engine::Instructions => "instructions",
        }
    }
}

/// How stacks are walked, and so how the workload is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Unwind {
    /// The objects' unwind tables (`.eh_frame`): stacks pass through C libraries and code built
    /// without frame pointers, so the workload is built with cargo's release flags.
    #[default]
    Tables,
    /// Frame pointers only: the workload is built with `-C force-frame-pointers=yes`; callers of
    /// C code without frame pointers are lost. Cheaper per stack (see `docs/src/guide/unwind.md`).
    FramePointers,
}

impl Unwind {
    /// The name stored in a run's settings and given to the agent (`CONTPROF_UNWIND`).
    pub fn name(self) -> &'static str {
        self.agent().name()
    }

    /// What the agent is told.
    pub fn agent(self) -> contprof_protocol::env::Unwind {
        match self {
            Unwind::Tables => contprof_protocol::env::Unwind::Tables,
            Unwind::FramePointers => contprof_protocol::env::Unwind::FramePointers,
        }
    }
}

/// Settings handed to the agent through its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// What measures the workload; with [`Engine::Instructions`], `frequency` is 0 and `alloc`
    /// exact.
    pub engine: Engine,
    /// CPU sampling frequency in Hz; 0 turns CPU sampling off.
    pub frequency: u32,
    /// Allocation recording.
    pub alloc: AllocMode,
    /// Mean bytes between allocation samples in sampled mode.
    pub alloc_interval: u64,
    /// How stacks are walked.
    pub unwind: Unwind,
    /// Contention sampling rate in nanoseconds; 0 when waits are not recorded.
    pub contention_rate_ns: u64,
    /// Wall-clock sampling frequency in Hz; 0 when wall time is not sampled.
    pub wall_hz: u32,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            engine: Engine::Agent,
            frequency: DEFAULT_FREQUENCY,
            alloc: AllocMode::Sampled,
            alloc_interval: DEFAULT_ALLOC_INTERVAL,
            unwind: Unwind::Tables,
            contention_rate_ns: 0,
            wall_hz: 0,
        }
    }
}

/// Default CPU sampling rate: the kernel tick of common configurations, the highest rate the
/// tick-driven per-thread CPU timers deliver, at no measurable overhead.
pub const DEFAULT_FREQUENCY: u32 = 250;

/// Default CPU sampling rate of `check`: the per-thread perf clock far past the tick. The power to
/// see a change grows with the samples per run (`benches/detection.rs`, 10 runs of 0.27 s a side:
/// +10% in a function with 10% of CPU found 2/20 at 999 Hz, 0/20 at 4999 Hz, 20/20 at 9999 Hz);
/// the overhead (about 40% of CPU at 9999 Hz on the development VM) is paid by base and head alike.
pub const CHECK_FREQUENCY: u32 = 9999;

pub use contprof_protocol::TICK_TIMER_MAX_HZ;
/// Default mean bytes between allocation samples.
pub const DEFAULT_ALLOC_INTERVAL: u64 = 512 * 1024;
/// Default sampling rate of `--contention`, in nanoseconds.
pub const DEFAULT_CONTENTION_RATE_NS: u64 = contprof_protocol::DEFAULT_CONTENTION_RATE_NS;
/// Default frequency of `--wall`, in Hz.
pub const DEFAULT_WALL_HZ: u32 = contprof_protocol::DEFAULT_WALL_HZ;

/// What to do with the workload's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    /// The workload writes to our terminal (`cargo contprof run`).
    Inherit,
    /// Output is captured (tests; shown only on failure).
    Capture,
}

/// One execution of an artifact.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Where the agent writes its raw samples.
    pub raw_path: PathBuf,
    /// Agent settings.
    pub settings: AgentSettings,
    /// Standard streams.
    pub streams: Streams,
    /// Kill the workload after this long.
    pub timeout: Option<Duration>,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where the instructions engine runs it from, so that base and head see one set of paths
    /// ([`stage`]); without one, and with the sampling engine, the program runs where it is.
    pub stage: Option<stage::Staging>,
}

/// How a workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Killed by us after the timeout.
    TimedOut,
}

impl Exit {
    /// Whether the workload succeeded.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(101) => write!(f, "exit status 101 (panicked)"),
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(
                f,
                "killed by {}{}",
                signal_name(s),
                if s == libc::SIGABRT { " (aborted)" } else { "" }
            ),
            Exit::TimedOut => write!(f, "timed out"),
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// Result of one execution.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Wall-clock time.
    pub wall: Duration,
    /// User + system CPU time of the process as the kernel accounted it (`wait4`).
    pub cpu: Duration,
    /// Captured standard output (with [`Streams::Capture`]).
    pub stdout: Vec<u8>,
    /// Captured standard error (with [`Streams::Capture`]).
    pub stderr: Vec<u8>,
    /// The process id it ran as (valgrind's wrapper execs valgrind, which runs the workload in the
    /// same process: the id of callgrind's counts file).
    pub pid: u32,
}

/// Environment variables that configure the agent (read in its constructor).
/// The environment that starts the agent in a process: `LD_PRELOAD` plus the `CONTPROF_*`
/// settings. At or below [`TICK_TIMER_MAX_HZ`] the agent uses the kernel's tick-driven per-thread
/// CPU timers, above it a per-thread `perf_event_open` clock (see [`TICK_TIMER_MAX_HZ`]).
pub fn agent_env(settings: &AgentSettings, raw_path: &Path, agent_lib: &Path) -> Vec<(OsString, OsString)> {
    let mut preload = agent_lib.as_os_str().to_owned();
    if let Some(user) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(user);
    }
    let recording = contprof_protocol::env::RecordingEnv {
        output: raw_path.to_owned(),
        frequency_hz: settings.frequency,
        alloc: settings.alloc,
        alloc_interval: settings.alloc_interval,
        allow_perf: settings.frequency > TICK_TIMER_MAX_HZ,
        // Left to the user's own environment, as it always was (`CONTPROF_PERF_KERNEL=0` on
        // `cargo contprof` reaches the agent).
        perf_kernel: std::env::var_os(contprof_protocol::env::PERF_KERNEL).is_none_or(|v| v != "0"),
        unwind: settings.unwind.agent(),
        contention_rate_ns: settings.contention_rate_ns,
        wall_hz: settings.wall_hz,
    };
    let mut env = vec![("LD_PRELOAD".into(), preload)];
    env.extend(recording.vars().into_iter().map(|(k, v)| (k.into(), v)));
    env
}

/// Runs `spec` under the agent at `agent_lib` and waits for it.
pub fn run(spec: &RunSpec, agent_lib: &Path) -> Result<Outcome> {
    if let Some(dir) = spec.raw_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create directory", dir, e))?;
    }
    // What the process sees: program, raw file, agent, working directory, environment.
    let mut seen = (
        spec.program.clone(),
        spec.raw_path.clone(),
        agent_lib.to_owned(),
        spec.cwd.clone(),
        spec.env.clone(),
    );
    let mut cmd = match spec.settings.engine {
        Engine::Agent => {
            let mut cmd = Command::new(&spec.program);
            cmd.args(&spec.args);
            cmd
        }
        Engine::Instructions => {
            // Stale files of an earlier run must not pass for this one's counts.
            for old in callgrind::outputs(&spec.raw_path) {
                std::fs::remove_file(&old).map_err(|e| Error::io("could not remove", &old, e))?;
            }
            if let Some(s) = &spec.stage {
                let stage = &s.stage;
                seen = (
                    stage.program(&spec.program, &s.name)?,
                    stage.path(&spec.raw_path),
                    stage.agent(agent_lib)?,
                    stage.path(&spec.cwd),
                    spec.env.iter().map(|(k, v)| (k.clone(), stage.env_value(v))).collect(),
                );
            }
            let mut cmd = Command::new(callgrind::find_valgrind()?);
            cmd.args(callgrind::arguments(&seen.0, &spec.args, &spec.raw_path));
            // The agent starts in the workload only, not in valgrind's wrapper and launcher,
            // which must hand LD_PRELOAD on (see contprof_protocol::env::EXE).
            cmd.env(contprof_protocol::env::EXE, &seen.0);
            cmd
        }
    };
    let (_, raw_path, agent, cwd, env) = &seen;
    cmd.current_dir(cwd);
    for (k, v) in env.iter().cloned().chain(agent_env(&spec.settings, raw_path, agent)) {
        cmd.env(k, v);
    }
    if spec.settings.engine == Engine::Instructions {
        // The working directory as a shell names it, the same on both sides: the inherited `PWD`
        // names wherever the recording started (the head's checkout, the base's worktree), and
        // its length moves every string after it, and the counts of whatever reads it.
        cmd.env("PWD", cwd);
        cmd.env_remove("OLDPWD");
    }
    // A captured workload (a test) runs in a process group of its own, so that a timeout or an
    // interruption stops whatever it started too: a grandchild holding its stdout open would keep
    // the pipe readers waiting forever. A workload on our terminal (`run`) stays in ours, where it
    // can read the terminal and gets the terminal's Ctrl-C.
    let grouped = spec.streams == Streams::Capture;
    if grouped && spec.settings.engine == Engine::Instructions {
        // No terminal, no `TERM`: libtest parses the terminfo database at start into a HashMap
        // with random keys, ~350 k instructions in every test process that vary by hundreds from
        // one run to the next (hash probing and the allocator after it), more than a small test's
        // own change.
        cmd.env_remove("TERM");
    }
    if grouped {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    match spec.streams {
        Streams::Inherit => cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit()),
        Streams::Capture => cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()),
    };
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { program: spec.program.clone(), source })?;
    let pid = child.id() as libc::pid_t;
    // Who signals reach: the whole group when it has one of its own.
    let target = if grouped { -pid } else { pid };

    let readers = [child.stdout.take().map(read_all), child.stderr.take().map(read_all)];
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = spec.timeout.map(|timeout| {
        std::thread::spawn(move || {
            if matches!(done_rx.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Timeout)) {
                // SAFETY: plain syscall on our own child (or its group, whose leader it is), not
                // reaped yet (the main thread is blocked in wait4 for it), so the pid cannot have
                // been reused.
                unsafe {
                    libc::kill(target, libc::SIGTERM);
                }
                if matches!(
                    done_rx.recv_timeout(Duration::from_secs(2)),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(target, libc::SIGKILL);
                    }
                }
                true
            } else {
                false
            }
        })
    });

    let (status, cpu) = wait4_tracked(pid, interrupt::track(target))
        .map_err(|source| Error::Spawn { program: spec.program.clone(), source })?;
    let wall = start.elapsed();
    if grouped {
        // Whatever the workload left behind in its group (a grandchild holding its stdout) goes
        // with it: each test is one process and its children, hermetically.
        // SAFETY: plain syscall; the group outlives its reaped leader only while members remain,
        // so its id cannot have been reused (ESRCH when none remain).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    drop(done_tx);
    let timed_out = watchdog.map(|w| w.join().unwrap_or(false)).unwrap_or(false);
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    let exit = if timed_out {
        Exit::TimedOut
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Outcome { exit, wall, cpu, stdout, stderr, pid: pid as u32 })
}

fn read_all(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `pid` without reaping it (`waitid` with `WNOWAIT`), releases its interrupt slot,
/// then reaps it with [`wait4`]: a signal forwarded meanwhile can never reach a reused pid.
fn wait4_tracked(pid: libc::pid_t, tracked: interrupt::Tracked) -> std::io::Result<(i32, Duration)> {
    loop {
        // SAFETY: `siginfo_t` is plain data; zeroed is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer; `pid` is our own unreaped child.
        let r =
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    drop(tracked);
    wait4(pid)
}

/// Waits for `child` (spawned without our agent, e.g. by a benchmark or a test measuring a
/// workload alone) and returns the user + system CPU time the kernel charged to it.
pub fn wait_cpu(child: std::process::Child) -> std::io::Result<Duration> {
    wait4(child.id() as libc::pid_t).map(|(_, cpu)| cpu)
}

/// Waits for `pid` and returns its raw status and the CPU time the kernel charged to it.
fn wait4(pid: libc::pid_t) -> std::io::Result<(i32, Duration)> {
    let mut status = 0;
    // SAFETY: `rusage` is plain old data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; `pid` is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Ok((status, tv(usage.ru_utime) + tv(usage.ru_stime)))
}
