//! `cargo contprof agent upload`: the process that the continuous agent starts beside a service.
//!
//! It owns the schedule and everything that touches the network, so that none of it runs in
//! the service:
//! - **schedule**: at every period boundary, after a short delay, it asks the store for the
//!   lease of the deployment's window. The replica that creates the lease object first records
//!   the window; the others do nothing until the next period. The delay is random (up to 2% of
//!   the period, at most 0.5 s) plus one such step for each window this replica won in the last
//!   eight periods (at most four), so that replicas that have not had a turn lately win the race:
//!   turns spread over the replicas instead of following who is closest to the store. Where the store cannot create conditionally, each replica
//!   takes the window with probability 1/replicas (`CONTPROF_REPLICAS`). A store that cannot
//!   be reached means no window: nothing is recorded that could not be uploaded.
//! - **windows**: it tells the agent to record one (`window <ms> <path>` on the agent's input),
//!   and when the agent answers `done <path>`, symbolizes the raw file and builds one gzipped
//!   pprof profile per profile type ([`super::window`]).
//! - **upload**: a bounded queue (16 profiles, 8 MiB): when full, the oldest profile is dropped
//!   and counted. Failed uploads are retried with jittered exponential backoff (1 s doubling up
//!   to 5 min), so a store that is down for an hour costs a few requests and the windows that
//!   did not fit.
//! - **pause**: at every period boundary it reads the store's pause objects (`prod pause`, for
//!   its service or for the whole store). While one exists it asks for no window, and tells the
//!   agent (`pause`), which then stops sampling allocations between windows: the service pays
//!   for the agent's disarmed hooks only. When the object is gone, `resume`.
//! - **end**: when the agent's channel closes (the service exited), the window in progress is
//!   uploaded if its file is complete, discarded otherwise (a killed service), the queue gets
//!   30 s more to drain, and the spool directory is removed.
//!
//! - **names for stripped binaries**: a binary the service runs without debug information or
//!   symbols is named with the debug file the store has for its build id (`prod symbols add`),
//!   fetched once into the spool directory; a build id the store had none for is asked again
//!   every 10 minutes, so a debug file added while the service runs names its next windows.
//!
//! The raw files wait in a spool directory of its own, created `0700` and refused unless it is
//! this user's: a window holds the service's address layout, stacks and thread names. Messages
//! go through [`super::log`]: rate-limited, never a panic, to a file with `--log`.
//!
//! It runs in its own session (`setsid`), so that a Ctrl-C or a signal to the service's process
//! group does not end it before the service has flushed its last window.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::errors::{Error, Result};
use crate::store::{Deployment, Lease, NetworkOptions, Store, StoreLocation, StoreOptions, WindowKey};
use crate::symbolize::{DebugFileSource, Detail, Symbolizer, SymbolizerOptions};
use contprof_protocol::channel::{FromAgent, ToAgent};
use contprof_protocol::service::UploaderArgs;

use super::log::Log;
use super::window::{self, Origin};

/// Profiles held for upload at most.
const QUEUE_MAX: usize = 16;
/// Bytes held for upload at most.
const QUEUE_MAX_BYTES: usize = 8 << 20;
/// First retry delay; doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long a build id the store had no debug file for waits before it is asked again.
const DEBUG_RETRY: Duration = Duration::from_secs(600);
/// How long the queue may still drain once the service has exited.
const DRAIN: Duration = Duration::from_secs(30);

enum Event {
    Done(PathBuf),
    Failed(PathBuf, String),
    Closed,
    /// A window's profiles, from the builder thread.
    Built(Result<window::Window>),
}

struct Pending {
    key: WindowKey,
    bytes: Vec<u8>,
    failures: u32,
    next_try: Instant,
}

struct Uploader {
    args: UploaderArgs,
    location: StoreLocation,
    store: Option<Store>,
    origin: Origin,
    period: Duration,
    window: Duration,
    spool: PathBuf,
    queue: VecDeque<Pending>,
    dropped: u64,
    /// The window being recorded: its file and scheduled start.
    in_flight: Option<(PathBuf, i64)>,
    /// The builder thread's jobs: symbolizing a window can take longer than a period, and must not
    /// hold up the schedule.
    builder: mpsc::Sender<(PathBuf, i64)>,
    /// Jobs sent to the builder and not back yet.
    building: usize,
    log: Log,
    /// Said once: the store cannot arbitrate.
    told_unsupported: bool,
    /// Starts of the windows this replica won lately (see the schedule in the module docs).
    won: VecDeque<i64>,
    /// Whether profiling is paused (the agent was told so).
    paused: bool,
}

/// Runs the uploader until the service's channel closes. The arguments were checked when parsed
/// ([`UploaderArgs::parse`]); the store's address is checked before anything is created.
pub fn run(args: UploaderArgs) -> Result<()> {
    let (period, window) = (args.schedule.period(), args.schedule.window());
    let location = StoreLocation::parse(&args.store)?;
    let types: Vec<String> = args.types.iter().map(|t| t.name().to_owned()).collect();
    let labels = args.labels.clone();
    // SAFETY: `setsid` has no preconditions; failing (already a group leader) is harmless.
    unsafe { libc::setsid() };
    allocator::one_arena();
    let log = Log::open(args.log.as_deref());
    let spool = std::env::temp_dir().join(format!("contprof-spool-{}-{:08x}", args.pid, fastrand::u32(..)));
    create_spool(&spool)?;
    let origin = Origin {
        deployment: Deployment {
            service: args.service.clone(),
            version: args.version.clone(),
            zone: args.zone.clone(),
        },
        instance: args.instance.clone(),
        labels,
    };
    let (tx, rx) = mpsc::channel();
    let debug_files = debug_files(location.clone(), spool.join("debug"));
    let builder = spawn_builder(types, origin.clone(), debug_files, tx.clone());
    let mut u = Uploader {
        period,
        window,
        args,
        location,
        store: None,
        origin,
        spool,
        queue: VecDeque::new(),
        dropped: 0,
        in_flight: None,
        builder,
        building: 0,
        log,
        told_unsupported: false,
        won: VecDeque::new(),
        paused: false,
    };
    std::thread::spawn(move || read_agent(&tx));
    // The agent creates each window's file ahead of the window, in the spool directory: a
    // service that has used up its descriptors when a window starts still gets it recorded.
    u.tell_agent(&ToAgent::Spool(u.spool.clone()));
    u.serve(&rx);
    release_service_streams();
    u.finish_building(&rx);
    u.drain();
    let _ = std::fs::remove_dir_all(&u.spool);
    Ok(())
}

/// The service ended: its standard streams, which the uploader shares, are let go before the last
/// window is built and uploaded (up to [`DRAIN`] against a slow store), so that whoever reads the
/// service's output (a pipe, a terminal, a supervisor) sees it end when the service does. Later
/// messages go to the log file if there is one, else nowhere.
fn release_service_streams() {
    // SAFETY: plain system calls on descriptors this process owns; on failure the streams stay.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for fd in 0..=2 {
            if fd != null {
                libc::dup2(null, fd);
            }
        }
        if null > 2 {
            libc::close(null);
        }
    }
}

/// Creates the spool directory `dir`, readable by this user only: a raw window holds the
/// service's address layout (its `/proc/self/maps`), stacks and thread names. A directory that
/// is already there is used only if it is this user's own and private.
fn create_spool(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("could not create the spool directory", dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io("could not read", dir, e))?;
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(Error::msg(format!(
            "the spool directory {} is not a private directory of this user's (owner {}, mode {:o}):              refusing to put the service's windows there",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The thread that turns recorded windows into profiles, with one symbolizer kept across
/// windows (each binary is read once). Library code is named from symbol tables only: the
/// service's own code keeps its files, lines and inlined frames, and glibc's debug file (about
/// 40 MiB once parsed) is never loaded beside the service.
fn spawn_builder(
    types: Vec<String>,
    origin: Origin,
    debug_files: DebugFileSource,
    events: mpsc::Sender<Event>,
) -> mpsc::Sender<(PathBuf, i64)> {
    let (jobs, rx) = mpsc::channel::<(PathBuf, i64)>();
    std::thread::spawn(move || {
        let mut symbolizer = Symbolizer::with_options(SymbolizerOptions { libraries: Detail::Symbols });
        symbolizer.set_debug_source(debug_files);
        let mut retried = Instant::now();
        for (path, start) in rx {
            if retried.elapsed() >= DEBUG_RETRY {
                // Binaries without debug information look for theirs again (see the module docs).
                symbolizer.forget_without_debug_info();
                retried = Instant::now();
            }
            let built = window::build(&path, start, &types, &origin, &mut symbolizer);
            let _ = std::fs::remove_file(&path);
            // What the window needed goes back to the system until the next one: libraries it
            // did not use, the memory its profiles took.
            symbolizer.forget_unused();
            allocator::give_back();
            if events.send(Event::Built(built)).is_err() {
                return;
            }
        }
    });
    jobs
}

/// The store as the uploader opens it: few retries and short timeouts, since a window that
/// cannot be stored soon is retried later anyway.
fn store_options() -> StoreOptions {
    StoreOptions {
        network: NetworkOptions {
            max_retries: 1,
            retry_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
        },
        ..StoreOptions::default()
    }
}

/// The debug files of stripped binaries, from the store at `location`, written into `dir` (in
/// the spool directory) as they are first needed (see the module docs).
fn debug_files(location: StoreLocation, dir: PathBuf) -> DebugFileSource {
    let mut store: Option<Store> = None;
    let mut missing: HashMap<String, Instant> = HashMap::new();
    Box::new(move |build_id: &str| {
        let path = dir.join(format!("{build_id}.debug"));
        if path.is_file() {
            return Some(path);
        }
        if missing.get(build_id).is_some_and(|at| at.elapsed() < DEBUG_RETRY) {
            return None;
        }
        missing.insert(build_id.to_owned(), Instant::now());
        if store.is_none() {
            store = Store::open_with(&location, store_options()).ok();
        }
        let gzipped = store.as_ref()?.get_debug_file(build_id).ok().flatten()?;
        // Inflated straight into the file: a debug file can be hundreds of MiB.
        std::fs::create_dir_all(&dir).ok()?;
        let part = dir.join(format!("{build_id}.part"));
        let written = std::fs::File::create(&part).and_then(|mut f| {
            std::io::copy(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut f)?;
            std::fs::rename(&part, &path)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&part);
            return None;
        }
        missing.remove(build_id);
        Some(path)
    })
}

/// glibc's allocator, told to hold little between windows.
#[cfg(target_env = "gnu")]
mod allocator {
    /// One arena for every thread: glibc gives each thread that allocates an arena of its own,
    /// which keeps what that thread freed; here only the builder allocates much, and the
    /// threads never allocate at the same time for long.
    pub(super) fn one_arena() {
        // SAFETY: `mallopt` takes the allocator's lock and only changes its settings.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }

    /// Returns the free memory of the arenas to the system.
    pub(super) fn give_back() {
        // SAFETY: `malloc_trim` takes the allocator's own locks; any thread may call it.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Other allocators have no such settings.
#[cfg(not(target_env = "gnu"))]
mod allocator {
    pub(super) fn one_arena() {}
    pub(super) fn give_back() {}
}

/// The agent's messages, until its channel closes.
fn read_agent(tx: &mpsc::Sender<Event>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let event = match FromAgent::parse(&line) {
            Some(FromAgent::Done(path)) => Event::Done(path),
            Some(FromAgent::Failed { path, reason }) => Event::Failed(path, reason),
            None => continue,
        };
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Closed);
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl Uploader {
    /// The schedule, until the agent's channel closes.
    fn serve(&mut self, rx: &mpsc::Receiver<Event>) {
        let period = self.period.as_secs_f64();
        loop {
            let now = unix_now();
            let boundary = ((now / period).floor() + 1.0) * period;
            let recent_from = boundary - 8.0 * period;
            while self.won.front().is_some_and(|&s| (s as f64) < recent_from) {
                self.won.pop_front();
            }
            let step = (period * 0.02).min(0.5);
            let delay = (fastrand::f64() + self.won.len().min(4) as f64) * step;
            let at = Instant::now() + Duration::from_secs_f64(boundary + delay - now);
            while Instant::now() < at {
                let next_upload = self.queue.iter().map(|p| p.next_try).min().unwrap_or(at).min(at);
                match rx.recv_timeout(next_upload.saturating_duration_since(Instant::now())) {
                    Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => return self.closed(),
                    Ok(event) => self.handle(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => self.upload_due(),
                }
            }
            if self.in_flight.is_none() && !self.paused_now() {
                self.maybe_record(boundary.round() as i64);
            }
        }
    }

    fn store(&mut self) -> Option<&Store> {
        if self.store.is_none() {
            match Store::open_with(&self.location, store_options()) {
                Ok(s) => self.store = Some(s),
                Err(e) => {
                    self.log.say("store", &format!("the store is unreachable, no profiling meanwhile: {e}"))
                }
            }
        }
        self.store.as_ref()
    }

    /// Whether an operator paused profiling (the store's pause objects), telling the agent when
    /// that changed. A store that cannot be read leaves things as they were.
    fn paused_now(&mut self) -> bool {
        let service = self.origin.deployment.service.clone();
        let Some(store) = self.store() else { return self.paused };
        let pause = match store.production_pause(&service) {
            Ok(p) => p,
            Err(e) => {
                self.log.say("pause", &format!("cannot read the pause objects of the store: {e}"));
                return self.paused;
            }
        };
        if pause.is_some() != self.paused
            && self.tell_agent(&if pause.is_some() { ToAgent::Pause } else { ToAgent::Resume })
        {
            self.paused = pause.is_some();
            match &pause {
                Some(p) => self.log.always(&format!("profiling paused: {}", p.describe())),
                None => self.log.always("profiling resumed"),
            }
        }
        self.paused
    }

    /// Sends the agent one request; false when it is gone.
    fn tell_agent(&mut self, request: &ToAgent) -> bool {
        let mut out = std::io::stdout().lock();
        out.write_all(request.to_string().as_bytes()).and_then(|()| out.flush()).is_ok()
    }

    /// Asks for the lease of the window starting at `start`, and records it if won.
    fn maybe_record(&mut self, start: i64) {
        let (deployment, instance, replicas) =
            (self.origin.deployment.clone(), self.origin.instance.clone(), self.args.replicas.max(1));
        let Some(store) = self.store() else { return };
        let ours = match store.lease_window(&deployment, start, &instance) {
            Ok(Lease::Won) => true,
            Ok(Lease::Taken) => false,
            Ok(Lease::Unsupported) => {
                if !self.told_unsupported {
                    self.told_unsupported = true;
                    self.log.always(&format!(
                        "the store cannot create objects conditionally, so replicas cannot share windows: \
                         each takes one with probability 1/{replicas} (CONTPROF_REPLICAS)"
                    ));
                }
                fastrand::u32(..replicas) == 0
            }
            Err(e) => {
                self.log.say("lease", &format!("no window this period: {e}"));
                return;
            }
        };
        if !ours {
            return;
        }
        let path = self.spool.join(format!("{start}.raw"));
        if self.tell_agent(&ToAgent::Window { length: self.window, path: path.clone() }) {
            self.in_flight = Some((path, start));
            self.won.push_back(start);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Done(path) => self.finished(&path),
            Event::Failed(path, why) => {
                self.log.say("record", &format!("the agent could not record a window: {why}"));
                let _ = std::fs::remove_file(&path);
                self.in_flight = None;
            }
            Event::Closed => {}
            Event::Built(built) => self.built(built),
        }
    }

    /// The agent completed the window in `path`: to the builder.
    fn finished(&mut self, path: &Path) {
        let Some((_, start)) = self.in_flight.take().filter(|(p, _)| p == path) else { return };
        if self.builder.send((path.to_owned(), start)).is_ok() {
            self.building += 1;
        }
    }

    /// A window's profiles are built: to the queue.
    fn built(&mut self, built: Result<window::Window>) {
        self.building = self.building.saturating_sub(1);
        match built {
            Ok(w) => {
                for warning in &w.warnings {
                    self.log.say("profile", warning);
                }
                for (key, bytes) in w.profiles {
                    self.enqueue(key, bytes);
                }
                self.upload_due();
            }
            Err(e) => self.log.say("build", &format!("a window could not be turned into profiles: {e}")),
        }
    }

    fn enqueue(&mut self, key: WindowKey, bytes: Vec<u8>) {
        self.queue.push_back(Pending { key, bytes, failures: 0, next_try: Instant::now() });
        while self.queue.len() > QUEUE_MAX
            || (self.queue.len() > 1
                && self.queue.iter().map(|p| p.bytes.len()).sum::<usize>() > QUEUE_MAX_BYTES)
        {
            self.queue.pop_front();
            self.dropped += 1;
            let dropped = self.dropped;
            self.log.say("dropped", &format!("the upload queue is full: {dropped} profiles dropped so far"));
        }
    }

    /// Uploads every queued profile whose retry time has come.
    fn upload_due(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].next_try > now {
                i += 1;
                continue;
            }
            if self.store().is_none() {
                return self.postpone_all();
            }
            let (Some(store), p) = (self.store.as_ref(), &self.queue[i]) else { return };
            match store.put_window(&p.key, p.bytes.clone()) {
                Ok(()) => {
                    self.queue.remove(i);
                }
                Err(e) => {
                    self.log.say("upload", &format!("upload failed, will retry: {e}"));
                    return self.postpone_all();
                }
            }
        }
    }

    /// After a failure, every pending upload waits: doubling from 1 s to 5 min, jittered ±50%.
    fn postpone_all(&mut self) {
        let now = Instant::now();
        for p in &mut self.queue {
            p.failures += 1;
            let base = RETRY_FIRST.saturating_mul(1 << p.failures.min(9)).min(RETRY_MAX);
            p.next_try = now + base.mul_f64(0.5 + fastrand::f64());
        }
    }

    /// The service exited: its last window if it completed, then the queue.
    fn closed(&mut self) {
        let Some((path, _)) = self.in_flight.clone() else { return };
        let complete = std::fs::read(&path)
            .ok()
            .and_then(|b| contprof_protocol::format::RawFile::parse(&b).ok())
            .is_some_and(|raw| {
                raw.records.iter().any(|r| matches!(r, contprof_protocol::format::Record::End(_)))
            });
        if complete {
            self.finished(&path);
        } else {
            self.log.say(
                "lost",
                "the service ended during a window without completing it (killed?): window discarded",
            );
            let _ = std::fs::remove_file(&path);
            self.in_flight = None;
        }
    }

    /// Waits (at most [`DRAIN`]) for the windows the builder still has.
    fn finish_building(&mut self, rx: &mpsc::Receiver<Event>) {
        let deadline = Instant::now() + DRAIN;
        while self.building > 0 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Built(b)) => self.built(b),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    /// Uploads what is queued, for at most [`DRAIN`].
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN;
        while !self.queue.is_empty() && Instant::now() < deadline {
            for p in &mut self.queue {
                p.next_try = p.next_try.min(deadline);
            }
            let wait = self.queue.iter().map(|p| p.next_try).min().unwrap_or(deadline);
            std::thread::sleep(wait.saturating_duration_since(Instant::now()));
            self.upload_due();
        }
        if !self.queue.is_empty() {
            let n = self.queue.len();
            self.log.always(&format!(
                "the store stayed unreachable: {n} profiles of the last windows not uploaded"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_is_private_and_a_foreign_one_is_refused() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        create_spool(&spool).unwrap();
        assert_eq!(std::fs::metadata(&spool).unwrap().mode() & 0o777, 0o700);
        create_spool(&spool).unwrap();

        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = create_spool(&open).unwrap_err().to_string();
        assert!(e.contains("not a private directory") && e.contains("755"), "{e}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&spool, &link).unwrap();
        assert!(create_spool(&link).is_err(), "a link is not the spool");

        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = create_spool(&theirs).unwrap_err().to_string();
            assert!(e.contains("owner 65534"), "{e}");
        }
    }
}
