//! The continuous mode's lifecycle in the service (see [`crate::service`] for the design): the
//! uploader child process, the control thread that opens and closes windows when the uploader
//! says so, and what becomes of both in a forked child.
//!
//! The two talk over a socket pair (`channel.rs`; the uploader's standard input and output), one
//! line per message, as `contprof_protocol::channel` writes and parses them:
//! - uploader → agent ([`ToAgent`]): first the spool directory, where the agent creates the next
//!   window's file ahead of the window (`channel::Spare`); then windows to record, each into its
//!   raw file in the spool directory; and `pause` when an operator paused profiling (an object in
//!   the store), so allocations are no longer sampled between windows, `resume` when they are
//!   again, from empty tables (the heap in use then counts the allocations sampled since the
//!   resume);
//! - agent → uploader ([`FromAgent`]): the window's file is complete, or it failed and why.
//!
//! When the service exits, the `atexit` handler completes the window in progress; the uploader
//! sees its input close and uploads that window if its file has an end record. A service killed
//! by `SIGKILL` leaves a file without one, which the uploader discards.
//!
//! The agent is a guest: nothing here may change how the service behaves or fails.
//! - Its messages go through `say.rs`: never a panic, never a `SIGPIPE`, rate-limited, dropped
//!   once standard error fails. The channel is written with `MSG_NOSIGNAL`.
//! - The control thread is born with every signal blocked, so that signals sent to the process
//!   (`SIGTERM` to a server that collects them with `sigwait`, `SIGINT`, `SIGPIPE`) always go to
//!   the service's own threads.
//! - Fork: no descriptor of the agent survives in a child (`channel.rs`). A child that goes on
//!   running (a daemon, a pre-fork worker) is profiled as an instance of its own
//!   (`<instance>-<pid>`, or the default `<host>-<pid>`), with its own uploader, by a new control
//!   thread that the `fork` child handler creates with fresh state. That thread waits a period
//!   (at most [`FORK_SETTLE`]) first, so that a child that `exec`s or exits soon costs one
//!   thread creation and nothing else.

mod channel;
mod say;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use contprof_protocol::channel::{FromAgent, ToAgent};

use crate::agent;
use crate::api::{Error, Options};
use crate::format::AllocMode;
use crate::service::{Config, ProfileType};
use channel::{Channel, Spare};
pub(crate) use say::say;

/// Set while a service is running in this process (one at a time).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The settings of the service running in this process (uploader resolved), leaked: what a
/// forked child starts its own profiling with. Null when none runs.
static CONFIG: AtomicPtr<Config> = AtomicPtr::new(core::ptr::null_mut());
/// The running service of this process (one strong reference, leaked), for a handle that a
/// forked child inherited from its parent. Null when none runs.
static CURRENT: AtomicPtr<Shared> = AtomicPtr::new(core::ptr::null_mut());
/// How long a forked child waits before it starts profiling itself, at most: a child that lives
/// less than a period would not get a window anyway, and one that `exec`s or exits meanwhile
/// costs one thread creation and nothing more.
const FORK_SETTLE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    stop: bool,
    in_window: bool,
    /// The channel to the uploader in service; shutting it down tells the uploader that the
    /// service is done.
    channel: Option<Arc<Channel>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The process whose service this is: a forked child has a copy it must not touch.
    pid: u32,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the continuous mode. `library` is the preload library's path when started from it
/// (the uploader is looked for beside it).
pub(crate) fn start(mut config: Config, library: Option<&Path>) -> Result<Arc<Shared>, Error> {
    config.validate()?;
    if library.is_none() && config.types.contains(&ProfileType::Contention) {
        return Err(Error::InvalidConfig {
            field: "types",
            value: ProfileType::Contention.name().into(),
            expected: "types a linked agent records: contention needs the preload library \
                       (LD_PRELOAD=$(cargo contprof agent path)), which interposes the waits",
        });
    }
    config.helper = Some(find_helper(&config, library)?);
    if ACTIVE.swap(true, Ordering::AcqRel) || agent::running() {
        return Err(Error::AlreadyRunning);
    }
    let started = prepare(&config, &config).and_then(|(shared, child)| {
        let thread_shared = Arc::clone(&shared);
        let thread_config = config.clone();
        // Born with every signal blocked (it inherits the creator's mask), so that no signal
        // meant for the service is ever delivered to it.
        let spawned = with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("contprof-agent".into())
                .spawn(move || control(thread_config, child, &thread_shared))
        });
        match spawned {
            Ok(_) => Ok(shared),
            Err(source) => {
                unpublish();
                agent::end_continuous();
                Err(Error::SpawnUploader { path: helper_of(&config).to_path_buf(), source })
            }
        }
    });
    if started.is_err() {
        ACTIVE.store(false, Ordering::Release);
    }
    started
}

/// Begins sampling, starts the uploader and publishes the service, with the settings a forked
/// child starts from (`base`: the instance name as configured, not as this process extended it).
fn prepare(config: &Config, base: &Config) -> Result<(Arc<Shared>, Child), Error> {
    begin(config)?;
    let (channel, child) = match spawn_uploader(config) {
        Ok(c) => c,
        Err(source) => {
            agent::end_continuous();
            return Err(Error::SpawnUploader { path: helper_of(config).to_path_buf(), source });
        }
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State { channel: Some(Arc::new(channel)), ..State::default() }),
        changed: Condvar::new(),
        pid: std::process::id(),
    });
    publish(base, &shared);
    Ok((shared, child))
}

/// The allocation sampling between windows: only the heap in use needs it (its live allocations
/// may be old); without it, allocations cost nothing outside windows.
fn begin(config: &Config) -> Result<(), Error> {
    let heap = config.types.contains(&ProfileType::Heap);
    agent::begin_continuous(if heap { config.alloc_interval } else { 0 }, config.unwind_tables)
}

fn publish(config: &Config, shared: &Arc<Shared>) {
    // Leaked on purpose: a forked child reads them without any lock, whatever the parent's
    // threads were doing at the fork.
    let old = CONFIG.swap(Box::into_raw(Box::new(config.clone())), Ordering::AcqRel);
    let _ = old; // an earlier service's settings stay leaked: a child may still be reading them
    CURRENT.store(Arc::into_raw(Arc::clone(shared)).cast_mut(), Ordering::Release);
}

fn unpublish() {
    CONFIG.store(core::ptr::null_mut(), Ordering::Release);
    CURRENT.store(core::ptr::null_mut(), Ordering::Release);
}

/// The running service of this process, if any.
fn current() -> Option<Arc<Shared>> {
    let p = CURRENT.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` in `publish`, and that reference is never released,
    // so the allocation lives; this takes one more reference for the caller.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Runs `f` with every signal blocked in this thread; a thread created meanwhile inherits that
/// mask for its life.
fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: the sets are plain data filled by `sigfillset` before use; the mask is restored.
    let old = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let r = f();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    r
}

/// Stops: the window in progress (if any) is completed and handed to the uploader first, then
/// the uploader's input is closed (it uploads what it holds and exits on its own).
pub(crate) fn stop(shared: &Shared) {
    if shared.pid != std::process::id() {
        // A handle a forked child inherited: what runs here is the child's own service, and the
        // parent's state may be locked by threads that do not exist in this process.
        match current().filter(|c| c.pid == std::process::id()) {
            Some(own) => stop(&own),
            // Not started yet (the child waits a period first): it will not start.
            None => unpublish(),
        }
        return;
    }
    unpublish();
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
    if let Some(c) = s.channel.take() {
        c.shut_down();
    }
    drop(s);
    agent::end_continuous();
}

/// In a forked child, from the agent's child handler: closes the agent's descriptors and, when
/// the parent ran a service, creates the thread that profiles this child as an instance of its
/// own. Async-signal-safe but for the thread's creation (glibc's `fork` leaves its allocator and
/// thread library usable in the child handler). True when that thread was created.
pub(crate) fn in_forked_child() -> bool {
    if channel::own_fork() {
        // The uploader being started by this very fork: it `exec`s next.
        return false;
    }
    channel::close_in_child();
    CURRENT.store(core::ptr::null_mut(), Ordering::Release);
    if !ACTIVE.load(Ordering::Acquire) || CONFIG.load(Ordering::Acquire).is_null() {
        return false;
    }
    with_signals_blocked(|| {
        // SAFETY: `attr` is initialised before use and destroyed after; `in_child` has the C ABI
        // and ignores its argument; the thread is detached, nothing joins it.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
            let mut handle: libc::pthread_t = core::mem::zeroed();
            let rc = libc::pthread_create(&mut handle, &attr, in_child, core::ptr::null_mut());
            libc::pthread_attr_destroy(&mut attr);
            rc == 0
        }
    })
}

/// The forked child's control thread: after a period (at most [`FORK_SETTLE`]), the parent's
/// settings under this child's instance name, a new uploader, then the windows as in the parent.
extern "C" fn in_child(_: *mut libc::c_void) -> *mut libc::c_void {
    let p = CONFIG.load(Ordering::Acquire);
    if p.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `p` came from `Box::into_raw` in `publish` and is never freed; nothing writes
    // through it.
    std::thread::sleep(unsafe { (*p).period }.min(FORK_SETTLE));
    let p = CONFIG.load(Ordering::Acquire);
    if p.is_null() || !agent::adopt_forked_child() {
        return core::ptr::null_mut();
    }
    // SAFETY: `p` came from `Box::into_raw` in `publish` and is never freed; nothing writes
    // through it.
    let base = unsafe { (*p).clone() };
    let mut config = base.clone();
    config.instance = config.instance.as_deref().map(child_instance);
    match prepare(&config, &base) {
        Ok((shared, child)) => control(config, child, &shared),
        Err(e) => say(&format!("profiling of forked process {} is off: {e}", std::process::id())),
    }
    core::ptr::null_mut()
}

/// A forked child's instance name: the parent's configured one and the child's pid (at most 128
/// characters, as [`Config::validate`] wants).
fn child_instance(parent: &str) -> String {
    let suffix = format!("-{}", std::process::id());
    let mut cut = 128usize.saturating_sub(suffix.len()).min(parent.len());
    while !parent.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &parent[..cut])
}

fn helper_of(config: &Config) -> &Path {
    config.helper.as_deref().unwrap_or(Path::new("cargo-contprof"))
}

/// Starts the uploader on a new channel.
fn spawn_uploader(config: &Config) -> std::io::Result<(Channel, Child)> {
    channel::spawn_with(|stdin, stdout| uploader_command(config, stdin, stdout).spawn())
}

fn uploader_command(config: &Config, stdin: Stdio, stdout: Stdio) -> Command {
    let mut cmd = Command::new(helper_of(config));
    cmd.args(config.uploader_args(std::process::id()));
    // The uploader is never profiled, whatever the service's environment says.
    cmd.env_remove("LD_PRELOAD").env_remove(crate::service::SERVICE).env_remove(crate::env::OUTPUT);
    cmd.stdin(stdin).stdout(stdout).stderr(Stdio::inherit());
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
fn control(config: Config, first: Child, shared: &Shared) {
    let mut child = Some(first);
    let mut delay = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        if let Some(mut c) = child.take() {
            let channel = shared.lock().channel.clone();
            let stopped = channel.is_none_or(|ch| serve(&config, &ch, shared));
            if stopped {
                child = Some(c);
                break;
            }
            shared.lock().channel = None;
            let status = c.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            say(&format!("the uploader exited ({status}); starting it again in {} s", delay.as_secs()));
        }
        if started.elapsed() > Duration::from_secs(600) {
            delay = Duration::from_secs(1);
        }
        if wait_for_stop(shared, delay) {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(300));
        match spawn_uploader(&config) {
            Ok((channel, c)) => {
                shared.lock().channel = Some(Arc::new(channel));
                child = Some(c);
            }
            Err(e) => say(&format!("cannot start the uploader {} again: {e}", helper_of(&config).display())),
        }
    }
    if let Some(c) = shared.lock().channel.take() {
        c.shut_down();
    }
    // Reaps the uploader once it has uploaded what it holds (it exits when its input closes).
    if let Some(mut c) = child {
        let _ = c.wait();
    }
}

/// Records the windows one uploader asks for, until its output closes (false) or the service
/// stops (true).
fn serve(config: &Config, channel: &Channel, shared: &Shared) -> bool {
    let cpu = config.types.contains(&ProfileType::Cpu);
    let threads = config.types.contains(&ProfileType::Threads);
    let allocs = config.types.iter().any(|t| matches!(t, ProfileType::Alloc | ProfileType::Heap));
    let contention = config.types.contains(&ProfileType::Contention);
    let wall = config.types.contains(&ProfileType::Wall);
    let mut paused = false;
    let mut stopped = false;
    channel::keep_proc_files();
    // The uploader's spool directory, and the next window's file in it.
    let mut spool: Option<PathBuf> = None;
    let mut spare: Option<Spare> = None;
    for line in BufReader::new(channel.reader()).lines() {
        let Ok(line) = line else { break };
        let (length, path) = match ToAgent::parse(&line) {
            Some(ToAgent::Spool(dir)) => {
                drop(spare.take());
                spare = Spare::create(&dir);
                spool = Some(dir);
                continue;
            }
            Some(ToAgent::Pause) => {
                if !paused {
                    paused = true;
                    agent::end_continuous();
                }
                continue;
            }
            Some(ToAgent::Resume) => {
                if paused {
                    paused = false;
                    if let Err(e) = begin(config) {
                        say(&format!("profiling cannot resume: {e}"));
                    }
                }
                continue;
            }
            Some(ToAgent::Window { length, path }) => (length, path),
            None => continue,
        };
        {
            let mut s = shared.lock();
            if s.stop {
                stopped = true;
                break;
            }
            s.in_window = true;
        }
        let mut opts = Options::new(&path)
            .frequency(if cpu { config.frequency_hz } else { 0 })
            .alloc(if allocs { AllocMode::Sampled } else { AllocMode::Off })
            .alloc_interval(config.alloc_interval)
            .allow_perf(config.frequency_hz > crate::TICK_TIMER_MAX_HZ)
            .unwind_tables(config.unwind_tables)
            .contention_rate_ns(if contention { crate::DEFAULT_CONTENTION_RATE_NS } else { 0 })
            .wall_hz(if wall { crate::DEFAULT_WALL_HZ } else { 0 });
        opts.window = true;
        let output = spare
            .take()
            .and_then(|s| s.into_output(&std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?));
        let reply = match agent::start_with(&opts, output) {
            Ok(()) => {
                wait_window(shared, length);
                if threads {
                    crate::sampler::snapshot_threads(Duration::from_millis(200));
                }
                agent::finish();
                FromAgent::Done(path)
            }
            Err(e) => FromAgent::Failed { path, reason: e.to_string() },
        };
        // An uploader gone meanwhile is seen when its output closes.
        let _ = channel.send(&reply.to_string());
        if let Some(dir) = spool.as_deref().filter(|_| spare.is_none()) {
            spare = Spare::create(dir);
        }
        let mut s = shared.lock();
        s.in_window = false;
        stopped = s.stop;
        shared.changed.notify_all();
        drop(s);
        if stopped {
            break;
        }
    }
    if paused && !stopped {
        // The next uploader says whether profiling is paused; until then it is not.
        if let Err(e) = begin(config) {
            say(&format!("profiling cannot resume: {e}"));
        }
    }
    stopped || shared.lock().stop
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

#[cfg(test)]
mod tests {
    use super::child_instance;

    #[test]
    fn a_forked_child_is_an_instance_of_its_own_within_the_length_limit() {
        let pid = std::process::id();
        assert_eq!(child_instance("web-1"), format!("web-1-{pid}"));
        let long = "é".repeat(100);
        let named = child_instance(&long);
        assert!(named.len() <= 128 && named.ends_with(&format!("-{pid}")), "{named}");
    }
}
