//! The continuous mode's lifecycle in the service (see [`crate::service`] for the design): the
//! uploader child process, and the control thread that opens and closes windows when the
//! uploader says so.
//!
//! The two talk over the child's standard input and output, one line per message:
//! - uploader → agent: `window <ms> <path>`: record a window of `<ms>` milliseconds into the raw
//!   file `<path>` (in the uploader's spool directory);
//! - agent → uploader: `done <path>` when the window's file is complete, or `failed <path> <why>`.
//!
//! When the service exits, the `atexit` handler completes the window in progress; the uploader
//! sees its input close and uploads that window if its file has an end record. A service killed
//! by `SIGKILL` leaves a file without one, which the uploader discards.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::agent;
use crate::api::{Error, Options};
use crate::format::AllocMode;
use crate::service::{Config, ProfileType};

/// Set while a service is running in this process (one at a time).
static ACTIVE: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
struct State {
    stop: bool,
    in_window: bool,
    /// The uploader's input; dropping it tells the uploader that the service is done.
    to_uploader: Option<ChildStdin>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the continuous mode. `library` is the preload library's path when started from it
/// (the uploader is looked for beside it).
pub(crate) fn start(config: Config, library: Option<&Path>) -> Result<Arc<Shared>, Error> {
    config.validate()?;
    if library.is_none() && config.types.contains(&ProfileType::Contention) {
        return Err(Error::InvalidConfig {
            field: "types",
            value: ProfileType::Contention.name().into(),
            expected: "types a linked agent records: contention needs the preload library \
                       (LD_PRELOAD=$(cargo contprof agent path)), which interposes the waits",
        });
    }
    let helper = find_helper(&config, library)?;
    if ACTIVE.swap(true, Ordering::AcqRel) || agent::running() {
        return Err(Error::AlreadyRunning);
    }
    match start_inner(config, &helper) {
        Ok(shared) => Ok(shared),
        Err(e) => {
            ACTIVE.store(false, Ordering::Release);
            Err(e)
        }
    }
}

fn start_inner(config: Config, helper: &Path) -> Result<Arc<Shared>, Error> {
    // Only the heap in use needs allocations sampled between windows (its live allocations may be
    // old); without it, allocations cost nothing outside windows.
    let heap = config.types.contains(&ProfileType::Heap);
    agent::begin_continuous(if heap { config.alloc_interval } else { 0 }, config.unwind_tables)?;
    let mut child = match uploader_command(&config, helper).spawn() {
        Ok(c) => c,
        Err(source) => {
            agent::end_continuous();
            return Err(Error::SpawnUploader { path: helper.to_path_buf(), source });
        }
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State { to_uploader: child.stdin.take(), ..State::default() }),
        changed: Condvar::new(),
    });
    let thread_shared = Arc::clone(&shared);
    let uploader = helper.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("contprof-agent".into())
        .spawn(move || control(config, uploader, child, &thread_shared));
    if let Err(source) = spawned {
        agent::end_continuous();
        shared.lock().to_uploader = None;
        return Err(Error::SpawnUploader { path: helper.to_path_buf(), source });
    }
    Ok(shared)
}

/// Stops: the window in progress (if any) is completed and handed to the uploader first, then
/// the uploader's input is closed (it uploads what it holds and exits on its own).
pub(crate) fn stop(shared: &Shared) {
    let mut s = shared.lock();
    s.stop = true;
    shared.changed.notify_all();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.in_window {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s = shared.changed.wait_timeout(s, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
    s.to_uploader = None;
    drop(s);
    agent::end_continuous();
}

fn uploader_command(config: &Config, helper: &Path) -> Command {
    let mut cmd = Command::new(helper);
    let types: Vec<&str> = config.types.iter().map(|t| t.name()).collect();
    cmd.args(["agent", "upload", "--pid"])
        .arg(std::process::id().to_string())
        .arg("--service")
        .arg(&config.service)
        .arg("--version")
        .arg(&config.version)
        .arg("--zone")
        .arg(&config.zone)
        .arg("--instance")
        .arg(config.instance_name())
        .arg("--store")
        .arg(config.store.as_deref().unwrap_or_default())
        .arg("--period")
        .arg(config.period.as_secs_f64().to_string())
        .arg("--window")
        .arg(config.window.as_secs_f64().to_string())
        .arg("--types")
        .arg(types.join(","))
        .arg("--replicas")
        .arg(config.replicas.to_string());
    for (k, v) in &config.labels {
        cmd.arg("--label").arg(format!("{k}={v}"));
    }
    // The uploader is never profiled, whatever the service's environment says.
    cmd.env_remove("LD_PRELOAD").env_remove(crate::service::SERVICE).env_remove(crate::env::OUTPUT);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    cmd
}

/// The uploader: [`Config::helper`] (or `CONTPROF_HELPER`), else `cargo-contprof` beside the
/// preload library, else the one that installed the library
/// ([`crate::service::UPLOADER_RECORD`]), else on `PATH`.
fn find_helper(config: &Config, library: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(h) = &config.helper {
        return Ok(h.clone());
    }
    let dir = library.and_then(Path::parent);
    let beside = dir.map(|d| d.join("cargo-contprof"));
    let recorded = dir
        .and_then(|d| std::fs::read_to_string(d.join(crate::service::UPLOADER_RECORD)).ok())
        .map(|p| PathBuf::from(p.trim_end_matches('\n')));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("cargo-contprof"));
    beside.into_iter().chain(recorded).chain(on_path).find(|p| p.is_file()).ok_or(Error::NoUploader)
}

/// The control thread: serves one uploader after another. An uploader that ends while the
/// service runs (it printed why) is started again, after 1 s doubling to 5 min (back to 1 s
/// after one that lived 10 min); meanwhile no window is recorded.
fn control(config: Config, helper: PathBuf, first: Child, shared: &Shared) {
    let mut child = Some(first);
    let mut delay = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        if let Some(c) = child.as_mut() {
            let stopped = c.stdout.take().is_none_or(|out| serve(&config, out, shared));
            if stopped {
                break;
            }
            shared.lock().to_uploader = None;
            let status = c.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            eprintln!("contprof: the uploader exited ({status}); starting it again in {} s", delay.as_secs());
        }
        if started.elapsed() > Duration::from_secs(600) {
            delay = Duration::from_secs(1);
        }
        if wait_for_stop(shared, delay) {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(300));
        child = match uploader_command(&config, &helper).spawn() {
            Ok(mut c) => {
                shared.lock().to_uploader = c.stdin.take();
                Some(c)
            }
            Err(e) => {
                eprintln!("contprof: cannot start the uploader {} again: {e}", helper.display());
                None
            }
        };
    }
    shared.lock().to_uploader = None;
    // Reaps the uploader once it has uploaded what it holds (it exits when its input closes).
    if let Some(mut c) = child {
        let _ = c.wait();
    }
}

/// Records the windows one uploader asks for, until its output closes (false) or the service
/// stops (true).
fn serve(config: &Config, stdout: std::process::ChildStdout, shared: &Shared) -> bool {
    let cpu = config.types.contains(&ProfileType::Cpu);
    let threads = config.types.contains(&ProfileType::Threads);
    let allocs = config.types.iter().any(|t| matches!(t, ProfileType::Alloc | ProfileType::Heap));
    let contention = config.types.contains(&ProfileType::Contention);
    let wall = config.types.contains(&ProfileType::Wall);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut parts = line.splitn(3, ' ');
        let (Some("window"), Some(ms), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(ms) = ms.parse::<u64>() else { continue };
        {
            let mut s = shared.lock();
            if s.stop {
                return true;
            }
            s.in_window = true;
        }
        let mut opts = Options::new(path)
            .frequency(if cpu { config.frequency_hz } else { 0 })
            .alloc(if allocs { AllocMode::Sampled } else { AllocMode::Off })
            .alloc_interval(config.alloc_interval)
            .allow_perf(config.frequency_hz > crate::TICK_TIMER_MAX_HZ)
            .unwind_tables(config.unwind_tables)
            .contention_rate_ns(if contention { crate::DEFAULT_CONTENTION_RATE_NS } else { 0 })
            .wall_hz(if wall { crate::DEFAULT_WALL_HZ } else { 0 });
        opts.window = true;
        let reply = match agent::start(&opts) {
            Ok(()) => {
                wait_window(shared, Duration::from_millis(ms));
                if threads {
                    crate::sampler::snapshot_threads(Duration::from_millis(200));
                }
                agent::finish();
                format!("done {path}\n")
            }
            Err(e) => format!("failed {path} {}\n", e.to_string().replace('\n', " ")),
        };
        let mut s = shared.lock();
        s.in_window = false;
        if let Some(to) = s.to_uploader.as_mut()
            && to.write_all(reply.as_bytes()).and_then(|()| to.flush()).is_err()
        {
            s.to_uploader = None;
        }
        let stop = s.stop;
        shared.changed.notify_all();
        drop(s);
        if stop {
            return true;
        }
    }
    shared.lock().stop
}

/// Waits `length`, or less when the service stops; true if it did.
fn wait_for_stop(shared: &Shared, length: Duration) -> bool {
    wait_window(shared, length);
    shared.lock().stop
}

/// Sleeps for a window, or less when the service stops.
fn wait_window(shared: &Shared, length: Duration) {
    let end = Instant::now() + length;
    let mut s = shared.lock();
    while !s.stop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s = shared.changed.wait_timeout(s, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
}
