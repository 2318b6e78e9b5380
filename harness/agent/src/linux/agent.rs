//! The agent's lifecycle: start, finish, and the process-wide hooks around them.
//!
//! Owns the running state and the order of operations: at start the output file, the header,
//! the first maps, the timers; at finish (from [`crate::Guard`], `atexit`, or the `SIGABRT`
//! handler) the timers off, in-flight handlers drained, the allocation stacks, the maps again
//! and the end record. [`finish`] is async-signal-safe (it runs in the abort handler). In a
//! forked child the agent is switched off (no samples, no writes, descriptors closed) for good,
//! unless the continuous mode takes it up again there as a new instance.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Once;

use crate::api::{Error, Options};
use crate::format::{self, AllocMode, ClockKind, EndRecord, Header};
use crate::table::STORE;
use crate::{alloc, contention, sampler, sys, thread, timer, wall, writer};

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const STOPPING: u8 = 3;
/// A forked child: the agent never runs again in this process.
const CHILD: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(IDLE);
static START_NS: AtomicU64 = AtomicU64::new(0);
/// `CLOCK_PROCESS_CPUTIME_ID` at start: the END record counts the CPU time since then.
static START_CPU_NS: AtomicU64 = AtomicU64::new(0);
/// Whether the current recording is a window of the continuous mode ([`Options::window`]).
static WINDOW: AtomicBool = AtomicBool::new(false);
/// The mean allocation interval that stays on between windows of the continuous mode (0: off).
static BETWEEN_WINDOWS: AtomicU64 = AtomicU64::new(0);
/// The process that started the agent (a `vfork` child shares our memory but not our pid).
static PID: AtomicU32 = AtomicU32::new(0);
static PROCESS_HOOKS: Once = Once::new();

/// One line on the program's standard error (see `continuous::say`: never fails, never raises a
/// signal, rate-limited).
#[cfg_attr(not(feature = "criterion"), allow(dead_code))]
pub(crate) fn say(line: &str) {
    crate::continuous::say(line);
}

/// Whether the agent is recording.
pub(crate) fn running() -> bool {
    STATE.load(Ordering::Acquire) == RUNNING
}

/// Starts recording into `opts.output`.
pub(crate) fn start(opts: &Options) -> Result<(), Error> {
    start_with(opts, None)
}

/// Starts recording into `opts.output`, through `output` if given: a descriptor the agent keeps,
/// open on that file (created empty, append mode), which the agent owns from now on.
pub(crate) fn start_with(opts: &Options, output: Option<i32>) -> Result<(), Error> {
    if let Err(state) = STATE.compare_exchange(IDLE, STARTING, Ordering::AcqRel, Ordering::Acquire) {
        if let Some(fd) = output {
            sys::close(fd);
        }
        return Err(if state == CHILD { Error::ForkedChild } else { Error::AlreadyRunning });
    }
    let result = start_inner(opts, false, output);
    if result.is_ok() && !opts.window {
        *EXEC_RESUME.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(opts.clone());
    }
    STATE.store(if result.is_ok() { RUNNING } else { IDLE }, Ordering::Release);
    result
}

/// The options of the recording in progress (not a window), for resuming it after an `exec` that
/// failed ([`before_exec`]).
static EXEC_RESUME: std::sync::Mutex<Option<Options>> = std::sync::Mutex::new(None);
/// The output file's length when [`finish`] had stopped the samplers, before it wrote the
/// allocation stacks, the maps and the end record: where a recording that resumes cuts it (the
/// tables are written again at its end).
static END_AT: AtomicU64 = AtomicU64::new(0);

/// Before the process replaces its program (`execve` and friends, interposed by the preload
/// library): the recording is finished as at exit, since no `atexit` handler runs in the new
/// program, and every timer is disarmed (a process-wide `setitimer` would survive the exec and
/// kill the new program). Returns true if [`after_failed_exec`] must resume it. Nothing is done
/// in a `vfork` child, which shares the recording process's memory.
pub(crate) fn before_exec() -> bool {
    // SAFETY: `getpid` has no preconditions.
    if !running() || unsafe { libc::getpid() } as u32 != PID.load(Ordering::Relaxed) {
        return false;
    }
    let resumable = !WINDOW.load(Ordering::Relaxed);
    finish();
    if !resumable {
        END_AT.store(0, Ordering::Relaxed);
    }
    resumable
}

/// The `exec` failed (the program goes on): the recording [`before_exec`] finished resumes, with
/// its end record removed, into the same file.
pub(crate) fn after_failed_exec() {
    let Some(opts) = EXEC_RESUME.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() else {
        return;
    };
    let end_at = END_AT.swap(0, Ordering::Relaxed);
    let Ok(path) = CString::new(opts.output.as_os_str().as_bytes()) else { return };
    if end_at == 0 || !writer::truncate_file(&path, end_at) {
        return;
    }
    if STATE.compare_exchange(IDLE, STARTING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let result = start_inner(&opts, true, None);
    STATE.store(if result.is_ok() { RUNNING } else { IDLE }, Ordering::Release);
}

/// Starts recording; `resume`: into the file of the recording that [`before_exec`] finished,
/// appending to it, as one run (same start, same counters, same tables). `output`: as in
/// [`start_with`], closed on failure.
fn start_inner(opts: &Options, resume: bool, output: Option<i32>) -> Result<(), Error> {
    let refuse = |e: Error| {
        if let Some(fd) = output {
            sys::close(fd);
        }
        Err(e)
    };
    if opts.wall_hz > crate::api::WALL_MAX_HZ {
        return refuse(Error::InvalidConfig {
            field: "wall_hz",
            value: opts.wall_hz.to_string(),
            expected: "a wall-clock sampling frequency of at most 1000 Hz",
        });
    }
    let Ok(path) = CString::new(opts.output.as_os_str().as_bytes()) else {
        return refuse(Error::CreateOutput {
            path: opts.output.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        });
    };
    // A window keeps the tables (and the live allocations tracked between windows) when the heap
    // in use is profiled; otherwise each window starts from empty tables.
    let keep = opts.window && BETWEEN_WINDOWS.load(Ordering::Relaxed) != 0 && STORE.is_ready();
    let live_cap =
        if opts.alloc == AllocMode::Exact { crate::table::LIVE_EXACT } else { crate::table::LIVE_SAMPLED };
    let tables = || if keep { STORE.mark_window() } else { STORE.init(live_cap) };
    if !resume && (opts.alloc != AllocMode::Off || opts.contention_rate_ns > 0) && !tables() {
        return refuse(Error::MapTables { source: std::io::Error::last_os_error() });
    }
    // Readable by its owner only: it holds the program's address layout, stacks and thread names.
    let truncate = if resume { 0 } else { libc::O_TRUNC };
    let fd = output.unwrap_or_else(|| {
        sys::open_kept(&path, libc::O_WRONLY | libc::O_CREAT | truncate | libc::O_APPEND, 0o600)
    });
    if fd < 0 {
        return Err(Error::CreateOutput {
            path: opts.output.clone(),
            source: std::io::Error::last_os_error(),
        });
    }
    install_process_hooks();
    thread::init_exit_key();
    thread::reset_current();
    if !resume {
        for counter in [&sampler::SAMPLES, &sampler::DROPPED, &alloc::CALLS, &alloc::BYTES, &thread::THREADS]
        {
            counter.store(0, Ordering::Relaxed);
        }
        alloc::GENERATION.fetch_add(1, Ordering::Relaxed);
        STORE.stacks_dropped.store(0, Ordering::Relaxed);
        STORE.live_dropped.store(0, Ordering::Relaxed);
    }

    let tid = sys::gettid();
    let mut warnings = Vec::new();
    let mut alloc = opts.alloc;
    if alloc != AllocMode::Off
        && let Some(why) = crate::api::alloc_unseen()
    {
        warnings.push(format!("allocations are not recorded: {why}"));
        alloc = AllocMode::Off;
    }
    let mut slot = None;
    if (opts.frequency_hz > 0 || opts.wall_hz > 0)
        && let Err(source) = sampler::install()
    {
        sys::close(fd);
        return Err(Error::InstallHandler { signal: "SIGPROF", source });
    }
    if opts.frequency_hz > 0 {
        let period_ns = (1_000_000_000 / u64::from(opts.frequency_hz)).max(1);
        slot = timer::arm_first(tid, period_ns, opts.allow_perf, opts.perf_kernel, &mut warnings);
    }
    thread::adopt_first(slot);
    let clock = if opts.frequency_hz > 0 { timer::clock() } else { ClockKind::Off };

    writer::set_output(fd, &path);
    let header = Header {
        magic: format::MAGIC,
        version: format::VERSION,
        header_len: format::HEADER_LEN as u32,
        pid: std::process::id(),
        frequency_hz: opts.frequency_hz,
        clock: clock as u32,
        alloc_mode: alloc as u32,
        alloc_interval: opts.alloc_interval,
        start_unix_ns: sys::clock_ns(libc::CLOCK_REALTIME),
        contention_rate_ns: opts.contention_rate_ns,
        wall_period_ns: crate::api::wall_period_ns(opts.wall_hz),
    };
    if !resume && !writer::emit_bytes(&header.to_bytes()) {
        let source = std::io::Error::last_os_error();
        timer::disarm_all();
        writer::close_output();
        return Err(Error::WriteHeader { path: opts.output.clone(), source });
    }
    writer::write_maps();
    crate::labels::local_agent_started();
    writer::write_label_sets();
    if !resume {
        // The work counted before this file opened (between windows) is not this file's.
        crate::labels::work::take(|_, _| {});
    }
    crate::code::load();
    // A window reuses the unwind tables of the previous one (a rebuild would leak the old
    // ones, which a signal handler may still hold); `dlopen` keeps them current.
    if !opts.unwind_tables {
        crate::cfi::disable();
    } else if !(opts.window && crate::cfi::ready()) {
        crate::cfi::load();
    }
    WINDOW.store(opts.window, Ordering::Relaxed);
    if !resume {
        START_NS.store(sys::clock_ns(libc::CLOCK_MONOTONIC), Ordering::Relaxed);
        START_CPU_NS.store(sys::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID), Ordering::Relaxed);
    }
    PID.store(std::process::id(), Ordering::Relaxed);
    if clock != ClockKind::Off {
        sampler::enable();
        warnings.extend(thread::register_existing(tid));
    }
    for w in &warnings {
        writer::write_message(1, w);
    }
    let per_thread =
        matches!(clock, ClockKind::PerfCpuClock | ClockKind::PerfCpuClockKernel | ClockKind::ThreadCpuTimer);
    alloc::set_mode(alloc, opts.alloc_interval, per_thread, clock != ClockKind::Off && !opts.unwind_tables);
    contention::set_rate(opts.contention_rate_ns);
    // A window is opened by the continuous mode's control thread, which is the agent's own.
    if let Err(w) = wall::start(opts.wall_hz, if opts.window { tid } else { 0 }) {
        writer::write_message(1, &w);
    }
    Ok(())
}

/// Called by the preload library at the start of every thread it created. Never inlined: see
/// [`crate::env::CALLGRIND_UNCOUNTED`].
#[inline(never)]
pub(crate) fn on_thread_start() {
    if running()
        && sampler_clock_is_per_thread()
        && let Some(w) = thread::register_current(thread::BoundsSource::Pthread)
    {
        writer::write_message(1, &w);
    }
}

fn sampler_clock_is_per_thread() -> bool {
    matches!(
        timer::clock(),
        ClockKind::PerfCpuClock | ClockKind::PerfCpuClockKernel | ClockKind::ThreadCpuTimer
    )
}

/// Stops recording and writes the trailer. Idempotent and async-signal-safe. Never inlined: see
/// [`crate::env::CALLGRIND_UNCOUNTED`].
#[inline(never)]
pub(crate) fn finish() {
    // SAFETY: `getpid` has no preconditions.
    if unsafe { libc::getpid() } as u32 != PID.load(Ordering::Relaxed) {
        // A `vfork` child (no atfork handler ran) sharing the parent's memory: hands off.
        return;
    }
    if STATE.compare_exchange(RUNNING, STOPPING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let cpu_time_ns =
        sys::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID).saturating_sub(START_CPU_NS.load(Ordering::Relaxed));
    let wall_ns = sys::clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(START_NS.load(Ordering::Relaxed));
    // The wall sampler writes the time it holds before the handlers are drained.
    wall::stop();
    timer::disarm_all();
    sampler::disable_and_wait();
    // Before `END_AT`: a recording that resumes after a failed `exec` keeps these counts (it
    // counts on from zero, and the reader adds up a set's records).
    writer::write_work();
    END_AT.store(writer::length().unwrap_or(0), Ordering::Relaxed);
    // Between windows of the continuous mode allocations stay sampled (live ones must stay
    // tracked for the heap in use), without registering threads for CPU timers.
    let between = if WINDOW.load(Ordering::Relaxed) { BETWEEN_WINDOWS.load(Ordering::Relaxed) } else { 0 };
    match between {
        0 => alloc::set_mode(AllocMode::Off, 1, false, false),
        mean => alloc::set_mode(AllocMode::Sampled, mean, false, false),
    }
    alloc::quiesce();

    contention::set_rate(0);
    let complete = STORE.for_each_stack(|s| {
        if s.counts.iter().any(|&v| v > 0) {
            writer::write_alloc_stack(s.counts, s.labels, s.frames);
        }
        if s.waits.iter().any(|&v| v > 0) {
            writer::write_contention_stack(s.waits, s.labels, s.frames);
        }
    });
    if !complete {
        writer::write_message(
            1,
            "allocation and contention stacks lost: the stack table stayed locked at exit",
        );
    }
    let (sets, pairs) = (crate::labels::dropped(), crate::labels::dropped_pairs());
    if sets > 0 || pairs > 0 {
        writer::write_message_fmt(
            1,
            format_args!(
                "{sets} label sets carry no labels (the table of {} sets is full) and {pairs} labels were left out of sets of {} already",
                crate::labels::MAX_SETS,
                crate::labels::MAX_PAIRS
            ),
        );
    }
    let untracked = STORE.live_dropped.load(Ordering::Relaxed);
    if untracked > 0 {
        writer::write_message_fmt(
            1,
            format_args!(
                "{untracked} sampled allocations were not tracked as live (table full): in-use bytes are under-reported"
            ),
        );
    }
    writer::write_maps();
    // The exiting thread's bytes since its last draw; other live threads' (less than a sampling
    // interval each) are not in the totals, which only describe the run (the stacks carry the
    // estimates).
    thread::with(alloc::flush_pending);
    writer::write_end(&EndRecord {
        cpu_time_ns,
        wall_ns,
        samples: sampler::SAMPLES.load(Ordering::Relaxed),
        samples_dropped: sampler::DROPPED.load(Ordering::Relaxed),
        alloc_calls: alloc::CALLS.load(Ordering::Relaxed),
        alloc_bytes: alloc::BYTES.load(Ordering::Relaxed),
        alloc_stacks_dropped: STORE.stacks_dropped.load(Ordering::Relaxed),
        threads: thread::THREADS.load(Ordering::Relaxed),
    });
    writer::close_output();
    STATE.store(IDLE, Ordering::Release);
}

/// Begins the continuous mode's allocation sampling, which runs from now on, windows or not, so
/// that the heap in use at a window's end counts every live sampled allocation (Go's heap
/// profile does the same). Also installs the process hooks and loads the unwind tables once.
/// Called again after a pause ([`end_continuous`]) and in a forked child: the tables start
/// empty then, and the heap in use counts the allocations sampled since.
pub(crate) fn begin_continuous(alloc_interval: u64, unwind_tables: bool) -> Result<(), Error> {
    if STATE.load(Ordering::Acquire) == CHILD {
        return Err(Error::ForkedChild);
    }
    install_process_hooks();
    thread::init_exit_key();
    crate::code::load();
    // Loaded once per process: a forked child has its parent's, and profiling resumed after a
    // pause keeps them (a rebuild would leak the old ones, which a handler may still hold).
    if unwind_tables && !crate::cfi::ready() {
        crate::cfi::load();
    }
    if alloc_interval > 0 {
        if !STORE.init(crate::table::LIVE_SAMPLED) {
            return Err(Error::MapTables { source: std::io::Error::last_os_error() });
        }
        BETWEEN_WINDOWS.store(alloc_interval, Ordering::Relaxed);
        alloc::set_mode(AllocMode::Sampled, alloc_interval, false, false);
    }
    Ok(())
}

/// Ends the continuous mode: allocations are no longer sampled (after the last window).
pub(crate) fn end_continuous() {
    BETWEEN_WINDOWS.store(0, Ordering::Relaxed);
    if STATE.load(Ordering::Acquire) == IDLE {
        alloc::set_mode(AllocMode::Off, 1, false, false);
    }
}

/// `atexit`, `pthread_atfork` and `SIGABRT`, installed once per process.
fn install_process_hooks() {
    PROCESS_HOOKS.call_once(|| {
        // SAFETY: registering handlers with the C ABI; they live for the whole process.
        unsafe {
            libc::atexit(at_exit);
            libc::pthread_atfork(None, None, Some(in_forked_child));
        }
        install_abort_handler();
    });
}

extern "C" fn at_exit() {
    finish();
}

/// In a forked child: the agent stops here, its descriptors closed. The run mode never records
/// a child. The continuous mode profiles a child that goes on running as an instance of its
/// own: [`crate::continuous::in_forked_child`] starts the thread that takes the agent up again
/// ([`adopt_forked_child`]).
extern "C" fn in_forked_child() {
    STATE.store(CHILD, Ordering::SeqCst);
    sampler::disable();
    alloc::set_mode(AllocMode::Off, 1, false, false);
    contention::set_rate(0);
    wall::forget_in_child();
    sampler::forget_in_child();
    crate::signals::forget_in_child();
    timer::forget_all_in_child();
    writer::close_output();
    thread::reset_current();
    // The table's lock, if a thread of the parent held it at the fork, belongs to no thread here.
    STORE.unlock_in_child();
    crate::continuous::in_forked_child();
}

/// Takes the agent up again in a forked child, for the continuous mode's new control thread:
/// false if this process is not a forked child (or another thread took it up).
pub(crate) fn adopt_forked_child() -> bool {
    STATE.compare_exchange(CHILD, IDLE, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// The `SIGABRT` disposition found at install time, restored before re-raising.
struct SavedAction(UnsafeCell<Option<libc::sigaction>>);
// SAFETY: written once in `install_abort_handler` before the handler can run, read-only after.
unsafe impl Sync for SavedAction {}
static OLD_ABORT: SavedAction = SavedAction(UnsafeCell::new(None));

fn install_abort_handler() {
    // SAFETY: `sigaction` is plain data; `OLD_ABORT` is written before our handler is
    // installed, so the handler never sees it change.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(libc::SIGABRT, core::ptr::null(), &mut old) != 0 {
            return;
        }
        *OLD_ABORT.0.get() = Some(old);
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_abort as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGABRT, &sa, core::ptr::null_mut());
    }
}

extern "C" fn on_abort(_sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut core::ffi::c_void) {
    let saved = sys::errno();
    finish();
    // SAFETY: `OLD_ABORT` is read-only once the handler is installed; restoring it and raising
    // again delivers the signal to the previous disposition as soon as this handler returns
    // (SIGABRT is blocked while it runs).
    unsafe {
        if let Some(old) = &*OLD_ABORT.0.get() {
            libc::sigaction(libc::SIGABRT, old, core::ptr::null_mut());
        } else {
            libc::signal(libc::SIGABRT, libc::SIG_DFL);
        }
        libc::raise(libc::SIGABRT);
    }
    sys::set_errno(saved);
}
