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
//! - **end**: when the agent's pipe closes (the service exited), the window in progress is
//!   uploaded if its file is complete, discarded otherwise (a killed service), the queue gets
//!   30 s more to drain, and the spool directory is removed.
//!
//! It runs in its own session (`setsid`), so that a Ctrl-C or a signal to the service's process
//! group does not end it before the service has flushed its last window.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::args::UploadArgs;
use crate::errors::{Error, Result};
use crate::store::{Deployment, Lease, NetworkOptions, Store, StoreLocation, StoreOptions, WindowKey};
use crate::symbolize::{Detail, Symbolizer, SymbolizerOptions};

use super::window::{self, Origin};

/// Profiles held for upload at most.
const QUEUE_MAX: usize = 16;
/// Bytes held for upload at most.
const QUEUE_MAX_BYTES: usize = 8 << 20;
/// First retry delay; doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long the queue may still drain once the service has exited.
const DRAIN: Duration = Duration::from_secs(30);
/// The same kind of message is printed at most this often.
const QUIET_FOR: Duration = Duration::from_secs(600);

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

/// Prints a kind of message at most once per [`QUIET_FOR`], counting the ones it kept back.
#[derive(Default)]
struct Log {
    last: std::collections::HashMap<&'static str, (Instant, u64)>,
}

impl Log {
    fn say(&mut self, kind: &'static str, message: &str) {
        let now = Instant::now();
        match self.last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < QUIET_FOR => *held += 1,
            Some((at, held)) => {
                let more = if *held > 0 { format!(" ({held} more like it since)") } else { String::new() };
                eprintln!("contprof agent: {message}{more}");
                (*at, *held) = (now, 0);
            }
            None => {
                eprintln!("contprof agent: {message}");
                self.last.insert(kind, (now, 0));
            }
        }
    }
}

struct Uploader {
    args: UploadArgs,
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
}

/// Runs the uploader until the service's pipe closes.
pub fn run(args: UploadArgs) -> Result<()> {
    // SAFETY: `setsid` has no preconditions; failing (already a group leader) is harmless.
    unsafe { libc::setsid() };
    allocator::one_arena();
    let location = StoreLocation::parse(&args.store)?;
    let types: Vec<String> = args.types.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect();
    if let Some(bad) = types.iter().find(|t| window::sample_types(t).is_none()) {
        return Err(window::unknown_type("--types", bad));
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| Error::InvalidArgument {
            flag: "--label",
            message: format!("`{l}` is not k=v"),
        })?;
        labels.push((k.to_owned(), v.to_owned()));
    }
    if !(args.period.is_finite()
        && args.window.is_finite()
        && args.window > 0.0
        && args.period >= args.window)
    {
        return Err(Error::InvalidArgument {
            flag: "--window",
            message: "the window must be positive and at most the period".into(),
        });
    }
    let spool = std::env::temp_dir().join(format!("contprof-spool-{}-{:08x}", args.pid, fastrand::u32(..)));
    std::fs::create_dir_all(&spool).map_err(|e| Error::io("could not create", &spool, e))?;
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
    let builder = spawn_builder(types, origin.clone(), tx.clone());
    let mut u = Uploader {
        period: Duration::from_secs_f64(args.period),
        window: Duration::from_secs_f64(args.window),
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
        log: Log::default(),
        told_unsupported: false,
        won: VecDeque::new(),
    };
    std::thread::spawn(move || read_agent(&tx));
    u.serve(&rx);
    u.finish_building(&rx);
    u.drain();
    let _ = std::fs::remove_dir_all(&u.spool);
    Ok(())
}

/// The thread that turns recorded windows into profiles, with one symbolizer kept across
/// windows (each binary is read once). Library code is named from symbol tables only: the
/// service's own code keeps its files, lines and inlined frames, and glibc's debug file (about
/// 40 MiB once parsed) is never loaded beside the service.
fn spawn_builder(
    types: Vec<String>,
    origin: Origin,
    events: mpsc::Sender<Event>,
) -> mpsc::Sender<(PathBuf, i64)> {
    let (jobs, rx) = mpsc::channel::<(PathBuf, i64)>();
    std::thread::spawn(move || {
        let mut symbolizer = Symbolizer::with_options(SymbolizerOptions { libraries: Detail::Symbols });
        for (path, start) in rx {
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

/// The agent's messages, until its pipe closes.
fn read_agent(tx: &mpsc::Sender<Event>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let event = if let Some(path) = line.strip_prefix("done ") {
            Event::Done(path.into())
        } else if let Some(rest) = line.strip_prefix("failed ") {
            let (path, why) = rest.split_once(' ').unwrap_or((rest, ""));
            Event::Failed(path.into(), why.to_owned())
        } else {
            continue;
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
    /// The schedule, until the agent's pipe closes.
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
            if self.in_flight.is_none() {
                self.maybe_record(boundary.round() as i64);
            }
        }
    }

    fn store(&mut self) -> Option<&Store> {
        if self.store.is_none() {
            let options = StoreOptions {
                network: NetworkOptions {
                    max_retries: 1,
                    retry_timeout: Duration::from_secs(10),
                    request_timeout: Duration::from_secs(20),
                    connect_timeout: Duration::from_secs(3),
                },
                ..StoreOptions::default()
            };
            match Store::open_with(&self.location, options) {
                Ok(s) => self.store = Some(s),
                Err(e) => {
                    self.log.say("store", &format!("the store is unreachable, no profiling meanwhile: {e}"))
                }
            }
        }
        self.store.as_ref()
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
                    eprintln!(
                        "contprof agent: the store cannot create objects conditionally, so replicas cannot \
                         share windows: each takes one with probability 1/{replicas} (CONTPROF_REPLICAS)"
                    );
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
        let line = format!("window {} {}\n", self.window.as_millis(), path.display());
        let mut out = std::io::stdout().lock();
        if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_ok() {
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
            .and_then(|b| contprof::format::RawFile::parse(&b).ok())
            .is_some_and(|raw| raw.records.iter().any(|r| matches!(r, contprof::format::Record::End(_))));
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
            eprintln!(
                "contprof agent: the store stayed unreachable: {n} profiles of the last windows not uploaded"
            );
        }
    }
}
