//! The `SIGPROF` handler: one CPU sample per timer expiry, one stack per thread in a snapshot
//! of every thread (signals sent by [`snapshot_threads`] with `tgkill`), and one wall-clock
//! stack per signal queued by the wall sampler ([`crate::wall`]).
//!
//! Owns the handler, its on/off switch and the sample counters. The handler path (the
//! [`on_sigprof`] entry and [`record_sample`]) allocates nothing and takes no lock: there is no
//! lock anywhere on it by design. It reads the interrupted registers, walks frame pointers
//! inside the thread's stack, and appends one record with one `write(2)` from a stack buffer;
//! every 64th sample it also re-reads the thread name. `errno` is saved and restored. The
//! tests in `tests/no_alloc_in_handler.rs` prove the no-allocation part with a counting global
//! allocator.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::format::{
    ClockKind, KIND_CPU_SAMPLE, KIND_KERNEL_TIME, KIND_THREAD_STACK, KIND_WALL_STACK, MAX_FRAMES,
};
use crate::thread::{self, ThreadState};
use crate::unwind::{self, Regs};
use crate::{sys, writer};

/// Whether samples are recorded (false before start, after stop, and in forked children).
static CPU_ON: AtomicBool = AtomicBool::new(false);
/// Handlers currently running (stop waits for zero before writing the end record).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Samples written.
pub(crate) static SAMPLES: AtomicU64 = AtomicU64::new(0);
/// Samples lost (failed writes).
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How often (in samples of one thread) the thread name is re-read.
const NAME_EVERY: u32 = 64;

/// Installs the handler (idempotent), keeping the program's own `SIGPROF` action, to which the
/// handler hands every `SIGPROF` that is not the agent's (see [`crate::signals`]).
pub(crate) fn install() -> std::io::Result<()> {
    crate::signals::install(on_sigprof as *const () as usize)
}

/// Starts recording samples.
pub(crate) fn enable() {
    CPU_ON.store(true, Ordering::SeqCst);
}

/// Stops recording samples and waits (bounded) until no handler is running.
/// Async-signal-safe.
pub(crate) fn disable_and_wait() {
    CPU_ON.store(false, Ordering::SeqCst);
    sys::wait_until_idle(&IN_FLIGHT);
}

/// Stops recording without waiting (a forked child).
pub(crate) fn disable() {
    CPU_ON.store(false, Ordering::SeqCst);
}

/// In a forked child: handlers that were running on the parent's other threads at the fork do
/// not exist here; their count must not hold up the child's stops.
pub(crate) fn forget_in_child() {
    IN_FLIGHT.store(0, Ordering::SeqCst);
    SNAPSHOT.store(false, Ordering::SeqCst);
}

extern "C" fn on_sigprof(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let saved = sys::errno();
    // Counted before the switch is read, so a stop that saw zero in flight is never raced.
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let info_ref = unsafe { info.as_ref() };
    let ours = info_ref.is_some_and(crate::signals::is_ours);
    if !ctx.is_null() {
        // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
        let regs = unsafe { Regs::from_ucontext(ctx) };
        let t = thread::current();
        match info_ref.filter(|_| ours) {
            Some(i) if let Some(slot) = crate::wall::slot_of(i) => crate::wall::on_signal(t, slot, regs),
            Some(i) if is_snapshot(i) && SNAPSHOT.load(Ordering::SeqCst) => {
                write_name(t, t.tid(), true);
                record_stack(t, regs, KIND_THREAD_STACK);
                SNAPSHOT_TAKEN.fetch_add(1, Ordering::SeqCst);
            }
            Some(i) if is_snapshot(i) => {}
            Some(_) if CPU_ON.load(Ordering::SeqCst) => record_sample(t, regs),
            _ => {}
        }
        // A wall signal sent while another SIGPROF was pending was merged into it.
        if let Some(slot) = crate::wall::requested(t.tid()) {
            crate::wall::on_signal(t, slot, regs);
        }
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    sys::set_errno(saved);
    if !ours {
        // SAFETY: the handler's own arguments.
        unsafe { crate::signals::forward(sig, info, ctx) };
    }
}

/// Whether `info` is a thread snapshot's signal ([`snapshot_threads`]).
fn is_snapshot(info: &libc::siginfo_t) -> bool {
    // SAFETY: a queued signal's siginfo carries `si_value`.
    info.si_code == libc::SI_QUEUE
        && unsafe { info.si_value() }.sival_ptr as u64
            == crate::signals::QUEUED_MAGIC | crate::signals::SNAPSHOT
}

/// Whether a snapshot of every thread is being taken ([`snapshot_threads`]).
static SNAPSHOT: AtomicBool = AtomicBool::new(false);
/// Threads that recorded their stack for the current snapshot.
static SNAPSHOT_TAKEN: AtomicUsize = AtomicUsize::new(0);
/// Threads the last snapshot left out because they block `SIGPROF`.
pub(crate) static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// The kernel's `siginfo` for a queued signal (the `_rt` member of its union).
#[repr(C)]
struct QueuedInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    pid: i32,
    uid: u32,
    value: u64,
    _rest: [u64; 12],
}

/// Sends thread `tid` of process `pid` the agent's `SIGPROF` with value `QUEUED_MAGIC | what`
/// (see [`crate::signals::is_ours`]); false if it could not (the thread exited).
pub(crate) fn queue(pid: libc::pid_t, tid: u32, what: u64) -> bool {
    let info = QueuedInfo {
        signo: libc::SIGPROF,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        // SAFETY: no preconditions.
        uid: unsafe { libc::getuid() },
        value: crate::signals::QUEUED_MAGIC | what,
        _rest: [0; 12],
    };
    // SAFETY: `info` is a valid siginfo of 128 bytes; the handler is installed.
    unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid as libc::pid_t,
            libc::SIGPROF,
            &info as *const QueuedInfo,
        ) == 0
    }
}

/// Records every other thread's stack and name at one instant (into the open raw file): a thread
/// blocked in a system call is read where it sits (see [`crate::remote`]: no signal, so no call
/// is cut short), any other is sent `SIGPROF` and its handler records where it is. Threads that
/// block `SIGPROF` are left out (counted in a message). Waits until the signalled ones have
/// answered or `timeout` passed; returns `(signalled, answered)`.
pub(crate) fn snapshot_threads(timeout: std::time::Duration) -> (usize, usize) {
    if install().is_err() {
        return (0, 0);
    }
    SNAPSHOT_TAKEN.store(0, Ordering::SeqCst);
    SNAPSHOT.store(true, Ordering::SeqCst);
    let own = sys::gettid();
    let pid = std::process::id() as libc::pid_t;
    let mut signalled = 0;
    let mut blocking = 0;
    let mut unknown = 0;
    let mut copy = Box::new(crate::remote::StackCopy::new());
    let mut frames = [0u64; MAX_FRAMES];
    let listed = sys::for_each_thread(|tid| {
        if tid == own {
            return;
        }
        // A thread that blocks SIGPROF (a `sigwait` signal thread) would collect the signal as its
        // own: it is left out, as the agent's own threads are (they block every signal).
        // A thread whose mask cannot be read (gone, or no descriptor free to read it) is left
        // out too, and counted apart.
        match (crate::signals::blocks(tid), crate::signals::blocks_per_proc(tid)) {
            (Some(false), Some(false)) => {}
            (Some(true), _) | (_, Some(true)) => {
                blocking += 1;
                return;
            }
            _ => {
                unknown += 1;
                return;
            }
        }
        // A thread blocked in a system call is read where it sits, without a signal that would
        // cut the call short (`EINTR`); only a running thread is signalled.
        if let Some(cpu) = sys::thread_cpu_ns(tid)
            && let Some(at) = crate::remote::blocked_at(tid)
            && let Some((n, _)) = crate::remote::stack(tid, at, cpu, None, &mut copy, &mut frames)
        {
            let mut name = [0u8; 16];
            if let Some(len) = crate::remote::name(tid, &mut name) {
                writer::write_thread_name(tid, &name[..len]);
            }
            let (set, trace) = crate::labels::slots::of(tid);
            writer::write_stack(KIND_THREAD_STACK, tid, None, set, trace, &frames[..n]);
            return;
        }
        if queue(pid, tid, crate::signals::SNAPSHOT) {
            signalled += 1;
        }
    });
    if !listed {
        writer::write_message(1, "the thread snapshot is empty: /proc/self/task cannot be listed");
    }
    SKIPPED.store(blocking, Ordering::Relaxed);
    for (n, why) in
        [(blocking, "they block SIGPROF (signal threads)"), (unknown, "their signal mask could not be read")]
    {
        if n > 0 {
            writer::write_message_fmt(1, format_args!("{n} thread(s) left out of the snapshot: {why}"));
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    while SNAPSHOT_TAKEN.load(Ordering::SeqCst) < signalled && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    SNAPSHOT.store(false, Ordering::SeqCst);
    (signalled, SNAPSHOT_TAKEN.load(Ordering::SeqCst))
}

/// Builds and writes one CPU sample for the interrupted context `regs` of the calling thread.
/// No allocation, no lock: callable from the signal handler.
pub(crate) fn record_sample(t: &ThreadState, regs: Regs) {
    maybe_write_name(t);
    record_stack(t, regs, KIND_CPU_SAMPLE);
}

/// Writes the thread's name with its first stack in this file and then every [`NAME_EVERY`]
/// stacks (a thread may rename itself).
fn maybe_write_name(t: &ThreadState) {
    let n = t.samples.fetch_add(1, Ordering::Relaxed);
    let stale = t.name_generation.load(Ordering::Relaxed) != crate::alloc::GENERATION.load(Ordering::Relaxed);
    if stale || n.is_multiple_of(NAME_EVERY) {
        write_name(t, t.tid(), false);
    }
}

/// Writes one wall-clock stack of the calling thread worth `wall_ns` (see [`crate::wall`]);
/// true if it was written. No allocation, no lock.
pub(crate) fn record_wall_stack(t: &ThreadState, regs: Regs, wall_ns: u64) -> bool {
    maybe_write_name(t);
    write_stack(t, regs, KIND_WALL_STACK, Some(wall_ns))
}

/// Walks and writes the stack of the interrupted context `regs` as a record of `kind`
/// ([`KIND_CPU_SAMPLE`] or [`KIND_THREAD_STACK`]).
fn record_stack(t: &ThreadState, regs: Regs, kind: u32) {
    write_stack(t, regs, kind, None);
}

/// Walks and writes the stack of `regs` as a record of `kind`, with `weight` as a word between
/// the `(tid, nframes)` pair and the frames when given ([`KIND_WALL_STACK`]); true if written.
fn write_stack(t: &ThreadState, regs: Regs, kind: u32, weight: Option<u64>) -> bool {
    let tid = t.tid();
    let mut whole = [0u64; writer::LABELS_WORDS + 3 + MAX_FRAMES + 3];
    let (set, trace) = t.label_context();
    let from = writer::labels_prefix(&mut whole, set, trace);
    let buf = &mut whole[writer::LABELS_WORDS..];
    let at = 2 + usize::from(weight.is_some());
    if let Some(w) = weight {
        buf[2] = w;
    }
    buf[at] = regs.pc as u64;
    let out = &mut buf[at + 1..at + MAX_FRAMES];
    let walked = match t.bounds(regs.sp) {
        Some(bounds) => {
            let start = unwind::Start {
                pc: regs.pc,
                sp: regs.sp,
                fp: regs.fp,
                bounds,
                skip_below: 0,
                at_return: false,
            };
            match unwind::walk_tables(start, out) {
                Some(n) => n,
                None => walk_frame_pointers(t, regs, bounds, out),
            }
        }
        None => 0,
    };
    let frames = 1 + walked;
    buf[0] = writer::pair(kind, ((at - 1) * 8 + frames * 8) as u32);
    buf[1] = writer::pair(tid, frames as u32);
    let mut len = at + frames;
    // User-time-only perf clock: the system time since this thread's previous sample goes with
    // this sample, in the same write, so that it lands right after the system call that spent it.
    if kind == KIND_CPU_SAMPLE
        && crate::timer::clock() == ClockKind::PerfCpuClock
        && let Some(kernel_ns) = system_time_since_last(t)
    {
        buf[len] = writer::pair(KIND_KERNEL_TIME, 16);
        buf[len + 1] = writer::pair(tid, 0);
        buf[len + 2] = kernel_ns;
        len += 3;
    }
    let written = writer::emit(&whole[from..writer::LABELS_WORDS + len]);
    if kind == KIND_CPU_SAMPLE {
        let counter = if written { &SAMPLES } else { &DROPPED };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    written
}

/// Walks frame pointers from `regs` into `out` (without unwind tables); returns the frames stored.
fn walk_frame_pointers(t: &ThreadState, regs: Regs, b: unwind::Bounds, out: &mut [u64]) -> usize {
    // Inside glibc's allocator (no frame pointers, `rbp` used as a register) the walk resumes at
    // the interposed function's frame: its return address is the allocating caller.
    let hook_fp = t.hook_fp.load(Ordering::Relaxed);
    let fp = if hook_fp != 0 { hook_fp } else { regs.fp };
    let walked = unwind::walk(fp, regs.sp, b, out);
    // A leaf outside the main executable (glibc's `memcpy`, `memset`...) has no frame pointer:
    // the walk began at its caller's caller. The caller's return address is the word at the stack
    // pointer when it points into code (see `code`).
    if hook_fp == 0
        && !crate::code::in_main_executable(regs.pc)
        && b.contains(regs.sp)
        && regs.sp.checked_add(8).is_some_and(|end| end <= b.hi)
        && !out.is_empty()
    {
        // SAFETY: `[sp, sp + 8)` lies inside this thread's live stack (checked above).
        let ret = unsafe { core::ptr::read_volatile(regs.sp as *const usize) };
        if crate::code::is_code(ret) && (walked == 0 || out[0] != ret as u64) {
            let keep = walked.min(out.len() - 1);
            out.copy_within(0..keep, 1);
            out[0] = ret as u64;
            return 1 + keep;
        }
    }
    walked
}

/// The calling thread's system time since its previous sample (`None` on the first, or when it
/// did not grow). `getrusage(RUSAGE_THREAD)` is one system call, no allocation, no lock.
fn system_time_since_last(t: &ThreadState) -> Option<u64> {
    // SAFETY: `rusage` is plain data; the kernel fills it.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return None;
    }
    let now = ru.ru_stime.tv_sec as u64 * 1_000_000_000 + ru.ru_stime.tv_usec as u64 * 1_000 + 1;
    let before = t.stime_ns.swap(now, Ordering::Relaxed);
    (before != 0 && now > before).then(|| now - before)
}

/// Writes the thread's name when it changed since it was last written (or always, `force`).
fn write_name(t: &ThreadState, tid: u32, force: bool) {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into `name`.
    if unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) } != 0 {
        return;
    }
    let mut words = [0u64; 2];
    for (w, chunk) in words.iter_mut().zip(name.chunks(8)) {
        *w = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    let generation = crate::alloc::GENERATION.load(Ordering::Relaxed);
    if !force
        && words[0] == t.name[0].load(Ordering::Relaxed)
        && words[1] == t.name[1].load(Ordering::Relaxed)
        && generation == t.name_generation.load(Ordering::Relaxed)
    {
        return;
    }
    let len = name.iter().position(|&c| c == 0).unwrap_or(16);
    if writer::write_thread_name(tid, &name[..len]) {
        t.name[0].store(words[0], Ordering::Relaxed);
        t.name[1].store(words[1], Ordering::Relaxed);
        t.name_generation.store(generation, Ordering::Relaxed);
    }
}

/// Test support: takes one sample of the calling thread as the handler would, from the
/// caller's own registers.
#[doc(hidden)]
#[inline(never)]
pub fn sample_here() {
    // Read together, at one instruction whose unwind row describes this frame as it is.
    let (pc, sp, fp) = unwind::registers();
    record_sample(thread::current(), Regs { pc, fp, sp });
}
