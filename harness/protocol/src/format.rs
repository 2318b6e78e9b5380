//! The raw sample file: the contract between the agent (which writes it from inside the
//! workload) and `cargo contprof` (which reads, symbolizes and turns it into pprof).
//!
//! The agent appends records with single `write(2)` calls to a file opened with `O_APPEND`, so
//! records of different threads never interleave and everything written before a crash (even
//! `SIGKILL`) is on disk. The file is native-endian: it is written and read on the same machine.
//!
//! Layout: a [`Header`], then records. Every record starts with a [`RecordHeader`] (`kind`,
//! `len` = payload bytes) followed by `len` payload bytes, all fields 8-byte aligned.
//!
//! | kind | payload |
//! |---|---|
//! | [`KIND_CPU_SAMPLE`] | `tid: u32, nframes: u32, frames: [u64; nframes]`; `frames[0]` is the interrupted instruction, the rest are return addresses |
//! | [`KIND_THREAD_NAME`] | `tid: u32, len: u32, name: [u8; len]` padded to 8 |
//! | [`KIND_MAPS`] | the text of `/proc/self/maps`, padded to 8 (written at start and again at exit) |
//! | [`KIND_ALLOC_STACK`] | `alloc_count, alloc_bytes, inuse_count, inuse_bytes: u64, nframes: u32, pad: u32, frames: [u64; nframes]`; all frames are return addresses |
//! | [`KIND_END`] | [`EndRecord`] |
//! | [`KIND_MESSAGE`] | `level: u32, len: u32, text: [u8; len]` padded to 8: a warning from the agent (timer fallback, drops) |
//! | [`KIND_THREAD_STACK`] | as [`KIND_CPU_SAMPLE`]: one thread's stack in a snapshot of every thread (a window of the continuous mode), with a [`KIND_THREAD_NAME`] record right before it |
//! | [`KIND_KERNEL_TIME`] | `tid: u32, pad: u32, kernel_ns: u64`: system time the thread spent since its previous CPU sample, written with (right after) the CPU sample it belongs to; only with [`ClockKind::PerfCpuClock`], which counts user time alone |
//! | [`KIND_CONTENTION_STACK`] | `contentions, delay_ns: u64, nframes: u32, pad: u32, frames: [u64; nframes]`: the waits of one call stack (estimated, see [`Header::contention_rate_ns`]), written at exit; all frames are return addresses |
//! | [`KIND_WALL_STACK`] | `tid: u32, nframes: u32, wall_ns: u64, frames: [u64; nframes]` (frames as in [`KIND_CPU_SAMPLE`]): a thread's stack on wall time, on CPU or blocked, worth `wall_ns` of its wall time (see [`Header::wall_period_ns`]) |
//! | [`KIND_WALL_TIME`] | `tid: u32, pad: u32, wall_ns: u64`: more wall time of a thread that did not run since its last [`KIND_WALL_STACK`], which it belongs to (the thread is still where that stack was taken) |
//! | [`KIND_LABEL_SET`] | `id: u32, len: u32, set: [u8; len]` padded to 8: an interned label set (see [`label_pairs`]), written once per file before or after the records that name it |
//! | [`KIND_LABELS`] | `set: u32, pad: u32`, optionally followed by `span_id: u64, trace_id_high: u64, trace_id_low: u64`: the label set (0: none) and trace ids (0: none) of the record that follows it, written in the same `write(2)` (a stack record: CPU, thread or wall with both, allocation or contention with the set only); a record without one has no labels |
//! | [`KIND_WORK`] | `set: u32, pad: u32, units: u64`: units of work the program counted under label set `set` (0: none) while the file was open (`contprof::labels::count_work`: requests served, messages handled), written at exit, one record per set that counted any |
//!
//! The reader tolerates a truncated last record (a process killed mid-write) and reports it.

use std::io::{self, Read};

/// First eight bytes of every raw file.
pub const MAGIC: [u8; 8] = *b"CPROFRAW";
/// Version of this layout; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// A CPU sample (one timer expiry on one thread).
pub const KIND_CPU_SAMPLE: u32 = 1;
/// The current name of a thread (written on the first sample and when it changes).
pub const KIND_THREAD_NAME: u32 = 2;
/// A copy of `/proc/self/maps`.
pub const KIND_MAPS: u32 = 3;
/// Aggregated allocations of one call stack (written at exit).
pub const KIND_ALLOC_STACK: u32 = 4;
/// Totals written by the exit handler.
pub const KIND_END: u32 = 5;
/// A warning or note from the agent.
pub const KIND_MESSAGE: u32 = 6;
/// System time of a thread between two of its CPU samples.
pub const KIND_KERNEL_TIME: u32 = 7;
/// One thread's stack in a snapshot of every thread.
pub const KIND_THREAD_STACK: u32 = 8;
/// Aggregated lock and futex waits of one call stack (written at exit).
pub const KIND_CONTENTION_STACK: u32 = 9;
/// A thread's stack on wall time, with the wall time it stands for.
pub const KIND_WALL_STACK: u32 = 10;
/// Wall time of a thread that stayed off CPU, added to its last wall stack.
pub const KIND_WALL_TIME: u32 = 11;

/// A label set's definition: its id and its pairs.
pub const KIND_LABEL_SET: u32 = 12;
/// The label set of the next record. Readers that do not know it skip it and read the record
/// without labels.
pub const KIND_LABELS: u32 = 13;
/// Units of work counted under one label set (the denominator of a cost per request).
pub const KIND_WORK: u32 = 14;

/// Most frames recorded per stack; deeper stacks are cut at the root end.
pub const MAX_FRAMES: usize = 128;

/// The last frame of a stack that the agent could not walk to its root (an unreadable frame, code
/// without unwind information, more than [`MAX_FRAMES`] frames): no return address is 1.
pub const TRUNCATED_FRAME: u64 = 1;

/// The prefix of the preload library's exported "recording twins": `__contprof_recording_malloc`
/// is the part of the interposed `malloc` that records (it allocates in its own frame, so that
/// glibc's allocator runs under it), tail-called by `malloc` when an allocation must be recorded.
/// Symbolizers name a twin as the C function after the prefix, as they name the interposers.
pub const RECORDING_TWIN_PREFIX: &str = "__contprof_recording_";

/// How the CPU timer was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ClockKind {
    /// No CPU sampling.
    Off = 0,
    /// Per-thread `perf_event_open` software `cpu-clock` event (high resolution, not tick-driven)
    /// counting user time only (`exclude_kernel`, what `perf_event_paranoid` 2 allows): system time
    /// comes in [`KIND_KERNEL_TIME`] records.
    PerfCpuClock = 1,
    /// Per-thread POSIX timer on `CLOCK_THREAD_CPUTIME_ID` (tick-driven: at most `CONFIG_HZ`).
    ThreadCpuTimer = 2,
    /// Process-wide `setitimer(ITIMER_PROF)` (tick-driven).
    Itimer = 3,
    /// As [`ClockKind::PerfCpuClock`], counting kernel time too (allowed at
    /// `perf_event_paranoid` ≤ 1 or with `CAP_PERFMON`): a sample that falls in a system call is
    /// delivered when it returns, on the user frame that made it.
    PerfCpuClockKernel = 4,
}

impl ClockKind {
    /// Decodes the header field; unknown values read as `Off`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::PerfCpuClock,
            2 => Self::ThreadCpuTimer,
            3 => Self::Itimer,
            4 => Self::PerfCpuClockKernel,
            _ => Self::Off,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::PerfCpuClock => "perf cpu-clock (user time)",
            Self::PerfCpuClockKernel => "perf cpu-clock",
            Self::ThreadCpuTimer => "thread cpu timer",
            Self::Itimer => "setitimer",
        }
    }
}

/// How allocations were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AllocMode {
    /// Not recorded.
    Off = 0,
    /// Sampled on a geometric byte interval, weighted to unbiased estimates.
    Sampled = 1,
    /// Every allocation recorded.
    Exact = 2,
}

impl AllocMode {
    /// Decodes the header field; unknown values read as `Off`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Sampled,
            2 => Self::Exact,
            _ => Self::Off,
        }
    }
}

/// Fixed header at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// Size of this header in bytes.
    pub header_len: u32,
    /// Process id of the profiled process.
    pub pid: u32,
    /// Requested sampling frequency in Hz (0 when CPU sampling is off).
    pub frequency_hz: u32,
    /// [`ClockKind`] actually used.
    pub clock: u32,
    /// [`AllocMode`].
    pub alloc_mode: u32,
    /// Mean bytes between allocation samples (sampled mode).
    pub alloc_interval: u64,
    /// `CLOCK_REALTIME` at start, nanoseconds since the epoch.
    pub start_unix_ns: u64,
    /// Waits were recorded ([`KIND_CONTENTION_STACK`]) with this sampling rate in nanoseconds: a
    /// wait of at least this long always, a shorter one of `d` ns with probability `d / rate` and
    /// weight `rate / d` (Go's block profile). 0: not recorded (also in files written before the
    /// field existed, whose `header_len` is 48).
    pub contention_rate_ns: u64,
    /// Every thread was sampled on wall time ([`KIND_WALL_STACK`], [`KIND_WALL_TIME`]) once per
    /// this many nanoseconds. 0: not sampled (also in files written before the field existed,
    /// whose `header_len` is 56 or 48).
    pub wall_period_ns: u64,
}

/// Payload of [`KIND_END`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct EndRecord {
    /// `CLOCK_PROCESS_CPUTIME_ID` at exit: CPU time of all threads of the process.
    pub cpu_time_ns: u64,
    /// Wall time since the agent started.
    pub wall_ns: u64,
    /// CPU samples the agent wrote.
    pub samples: u64,
    /// CPU samples lost (write failures, re-entrancy).
    pub samples_dropped: u64,
    /// Allocation calls the exact mode recorded; 0 in the sampled mode, whose hooks count bytes
    /// only (its stacks carry the estimated counts).
    pub alloc_calls: u64,
    /// Bytes requested by the allocation calls seen (all modes but off).
    pub alloc_bytes: u64,
    /// Allocation stacks that did not fit the agent's table and were merged into one bucket.
    pub alloc_stacks_dropped: u64,
    /// Threads the agent registered.
    pub threads: u64,
}

/// Header of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct RecordHeader {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    /// Payload length in bytes (a multiple of 8).
    pub len: u32,
}

/// Rounds up to the record alignment.
pub const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// See [`KIND_CPU_SAMPLE`].
    CpuSample {
        /// Kernel thread id.
        tid: u32,
        /// Leaf first.
        frames: Vec<u64>,
    },
    /// See [`KIND_THREAD_STACK`].
    ThreadStack {
        /// Kernel thread id.
        tid: u32,
        /// Leaf first, as in [`Record::CpuSample`].
        frames: Vec<u64>,
    },
    /// See [`KIND_WALL_STACK`].
    WallStack {
        /// Kernel thread id.
        tid: u32,
        /// Wall time the stack stands for, in nanoseconds.
        wall_ns: u64,
        /// Leaf first, as in [`Record::CpuSample`].
        frames: Vec<u64>,
    },
    /// See [`KIND_WALL_TIME`].
    WallTime {
        /// Kernel thread id.
        tid: u32,
        /// Wall time to add to the thread's last [`Record::WallStack`], in nanoseconds.
        wall_ns: u64,
    },
    /// See [`KIND_KERNEL_TIME`].
    KernelTime {
        /// Kernel thread id.
        tid: u32,
        /// System time since the thread's previous CPU sample, in nanoseconds.
        kernel_ns: u64,
    },
    /// See [`KIND_THREAD_NAME`].
    ThreadName {
        /// Kernel thread id.
        tid: u32,
        /// The name as the kernel holds it (at most 15 bytes).
        name: String,
    },
    /// See [`KIND_MAPS`].
    Maps(String),
    /// See [`KIND_ALLOC_STACK`].
    AllocStack {
        /// Estimated (sampled) or exact number of allocations.
        alloc_count: u64,
        /// Estimated or exact bytes allocated.
        alloc_bytes: u64,
        /// Allocations from this stack still live at exit.
        inuse_count: u64,
        /// Bytes from this stack still live at exit.
        inuse_bytes: u64,
        /// Return addresses, innermost first.
        frames: Vec<u64>,
    },
    /// See [`KIND_CONTENTION_STACK`].
    ContentionStack {
        /// Estimated number of waits.
        contentions: u64,
        /// Estimated nanoseconds waited.
        delay_ns: u64,
        /// Return addresses, innermost first.
        frames: Vec<u64>,
    },
    /// See [`KIND_END`].
    End(EndRecord),
    /// See [`KIND_MESSAGE`].
    Message {
        /// 0 note, 1 warning.
        level: u32,
        /// Text.
        text: String,
    },
    /// See [`KIND_LABEL_SET`].
    LabelSet {
        /// The id that [`Record::Labels`] records name (never 0).
        id: u32,
        /// Its pairs, in key order.
        pairs: Vec<(String, String)>,
    },
    /// See [`KIND_LABELS`]: the labels of the record right after it.
    Labels {
        /// The id of a [`Record::LabelSet`] of the same file (0: none).
        set: u32,
        /// The span the thread was in (0: none).
        span_id: u64,
        /// The trace the thread was in (0: none).
        trace_id: u128,
    },
    /// See [`KIND_WORK`].
    Work {
        /// The id of a [`Record::LabelSet`] of the same file (0: no labels).
        set: u32,
        /// Units of work counted under it.
        units: u64,
    },
    /// A kind this reader does not know (skipped).
    Unknown(u32),
}

/// Errors reading a raw file.
#[derive(Debug)]
pub enum ReadError {
    /// I/O failure.
    Io(io::Error),
    /// Not a raw file or an unknown version.
    BadHeader(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::BadHeader(why) => write!(f, "not a contprof raw sample file: {why}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Everything in one raw file.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// The header.
    pub header: Header,
    /// Records in file order.
    pub records: Vec<Record>,
    /// Bytes at the end that did not form a whole record (process killed mid-write).
    pub truncated_bytes: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

fn frames_at(b: &[u8], at: usize, n: usize) -> Option<Vec<u64>> {
    if at + n * 8 > b.len() {
        return None;
    }
    Some((0..n).map(|i| u64_at(b, at + i * 8)).collect())
}

/// Size of the encoded [`Header`].
pub const HEADER_LEN: usize = std::mem::size_of::<Header>();
/// Size of the header before [`Header::contention_rate_ns`] was added (still read).
const HEADER_LEN_V1: usize = 48;
/// Size of the header before [`Header::wall_period_ns`] was added (still read).
const HEADER_LEN_V2: usize = 56;

impl Header {
    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.magic);
        out[8..12].copy_from_slice(&self.version.to_ne_bytes());
        out[12..16].copy_from_slice(&self.header_len.to_ne_bytes());
        out[16..20].copy_from_slice(&self.pid.to_ne_bytes());
        out[20..24].copy_from_slice(&self.frequency_hz.to_ne_bytes());
        out[24..28].copy_from_slice(&self.clock.to_ne_bytes());
        out[28..32].copy_from_slice(&self.alloc_mode.to_ne_bytes());
        out[32..40].copy_from_slice(&self.alloc_interval.to_ne_bytes());
        out[40..48].copy_from_slice(&self.start_unix_ns.to_ne_bytes());
        out[48..56].copy_from_slice(&self.contention_rate_ns.to_ne_bytes());
        out[56..64].copy_from_slice(&self.wall_period_ns.to_ne_bytes());
        out
    }

    fn parse(b: &[u8]) -> Result<Self, ReadError> {
        if b.len() < HEADER_LEN_V1 {
            return Err(ReadError::BadHeader(format!("file is {} bytes, shorter than the header", b.len())));
        }
        if b[0..8] != MAGIC {
            return Err(ReadError::BadHeader("wrong magic".into()));
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(ReadError::BadHeader(format!(
                "format version {version}, this build reads version {VERSION}"
            )));
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        // A field the writer's header has (by its length) and the file holds.
        let field = |at: usize| {
            let len = u32_at(b, 12) as usize;
            if len >= at + 8 && b.len() >= at + 8 { u64_at(b, at) } else { 0 }
        };
        Ok(Self {
            magic,
            version,
            header_len: u32_at(b, 12),
            pid: u32_at(b, 16),
            frequency_hz: u32_at(b, 20),
            clock: u32_at(b, 24),
            alloc_mode: u32_at(b, 28),
            alloc_interval: u64_at(b, 32),
            start_unix_ns: u64_at(b, 40),
            contention_rate_ns: field(HEADER_LEN_V1),
            wall_period_ns: field(HEADER_LEN_V2),
        })
    }
}

impl EndRecord {
    /// Number of `u64` fields.
    pub const FIELDS: usize = 8;

    /// Encodes as native-endian words.
    pub fn to_words(&self) -> [u64; Self::FIELDS] {
        [
            self.cpu_time_ns,
            self.wall_ns,
            self.samples,
            self.samples_dropped,
            self.alloc_calls,
            self.alloc_bytes,
            self.alloc_stacks_dropped,
            self.threads,
        ]
    }

    fn parse(b: &[u8]) -> Self {
        let w = |i: usize| if b.len() >= (i + 1) * 8 { u64_at(b, i * 8) } else { 0 };
        Self {
            cpu_time_ns: w(0),
            wall_ns: w(1),
            samples: w(2),
            samples_dropped: w(3),
            alloc_calls: w(4),
            alloc_bytes: w(5),
            alloc_stacks_dropped: w(6),
            threads: w(7),
        }
    }
}

fn parse_record(kind: u32, p: &[u8]) -> Option<Record> {
    let text = |at: usize, len: usize| -> Option<String> {
        p.get(at..at + len).map(|s| String::from_utf8_lossy(s).into_owned())
    };
    Some(match kind {
        KIND_CPU_SAMPLE | KIND_THREAD_STACK => {
            if p.len() < 8 {
                return None;
            }
            let (tid, frames) = (u32_at(p, 0), frames_at(p, 8, u32_at(p, 4) as usize)?);
            if kind == KIND_CPU_SAMPLE {
                Record::CpuSample { tid, frames }
            } else {
                Record::ThreadStack { tid, frames }
            }
        }
        KIND_WALL_STACK => {
            if p.len() < 16 {
                return None;
            }
            let frames = frames_at(p, 16, u32_at(p, 4) as usize)?;
            Record::WallStack { tid: u32_at(p, 0), wall_ns: u64_at(p, 8), frames }
        }
        KIND_WALL_TIME => {
            if p.len() < 16 {
                return None;
            }
            Record::WallTime { tid: u32_at(p, 0), wall_ns: u64_at(p, 8) }
        }
        KIND_THREAD_NAME => {
            if p.len() < 8 {
                return None;
            }
            let len = u32_at(p, 4) as usize;
            Record::ThreadName { tid: u32_at(p, 0), name: text(8, len)? }
        }
        KIND_KERNEL_TIME => {
            if p.len() < 16 {
                return None;
            }
            Record::KernelTime { tid: u32_at(p, 0), kernel_ns: u64_at(p, 8) }
        }
        KIND_MAPS => Record::Maps(String::from_utf8_lossy(p).trim_end_matches('\0').to_owned()),
        KIND_ALLOC_STACK => {
            if p.len() < 40 {
                return None;
            }
            let n = u32_at(p, 32) as usize;
            Record::AllocStack {
                alloc_count: u64_at(p, 0),
                alloc_bytes: u64_at(p, 8),
                inuse_count: u64_at(p, 16),
                inuse_bytes: u64_at(p, 24),
                frames: frames_at(p, 40, n)?,
            }
        }
        KIND_CONTENTION_STACK => {
            if p.len() < 24 {
                return None;
            }
            let n = u32_at(p, 16) as usize;
            Record::ContentionStack {
                contentions: u64_at(p, 0),
                delay_ns: u64_at(p, 8),
                frames: frames_at(p, 24, n)?,
            }
        }
        KIND_END => Record::End(EndRecord::parse(p)),
        KIND_LABEL_SET => {
            if p.len() < 8 {
                return None;
            }
            let len = u32_at(p, 4) as usize;
            let set = p.get(8..8 + len)?;
            let pairs = label_pairs(set).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            Record::LabelSet { id: u32_at(p, 0), pairs }
        }
        KIND_LABELS => {
            if p.len() < 8 {
                return None;
            }
            let (span_id, trace_id) = if p.len() >= 32 {
                (u64_at(p, 8), (u128::from(u64_at(p, 16)) << 64) | u128::from(u64_at(p, 24)))
            } else {
                (0, 0)
            };
            Record::Labels { set: u32_at(p, 0), span_id, trace_id }
        }
        KIND_WORK => {
            if p.len() < 16 {
                return None;
            }
            Record::Work { set: u32_at(p, 0), units: u64_at(p, 8) }
        }
        KIND_MESSAGE => {
            if p.len() < 8 {
                return None;
            }
            let len = u32_at(p, 4) as usize;
            Record::Message { level: u32_at(p, 0), text: text(8, len)? }
        }
        other => Record::Unknown(other),
    })
}

/// The pairs of an encoded label set, as [`KIND_LABEL_SET`] holds it: per pair `key_len: u16,
/// value_len: u16, key, value` (UTF-8, native-endian lengths), keys in order and unique.
pub fn label_pairs(mut set: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    core::iter::from_fn(move || {
        if set.len() < 4 {
            return None;
        }
        let klen = u16::from_ne_bytes([set[0], set[1]]) as usize;
        let vlen = u16::from_ne_bytes([set[2], set[3]]) as usize;
        let (k, rest) = set[4..].split_at_checked(klen)?;
        let (v, rest) = rest.split_at_checked(vlen)?;
        set = rest;
        Some((core::str::from_utf8(k).unwrap_or(""), core::str::from_utf8(v).unwrap_or("")))
    })
}

impl RawFile {
    /// Parses a whole raw file from bytes.
    pub fn parse(b: &[u8]) -> Result<Self, ReadError> {
        let header = Header::parse(b)?;
        let mut at = (header.header_len as usize).max(HEADER_LEN_V1);
        let mut records = Vec::new();
        let mut truncated_bytes = 0;
        while at < b.len() {
            if at + 8 > b.len() {
                truncated_bytes = b.len() - at;
                break;
            }
            let kind = u32_at(b, at);
            let len = u32_at(b, at + 4) as usize;
            let start = at + 8;
            if start + len > b.len() {
                truncated_bytes = b.len() - at;
                break;
            }
            match parse_record(kind, &b[start..start + len]) {
                Some(r) => records.push(r),
                None => {
                    truncated_bytes = b.len() - at;
                    break;
                }
            }
            at = start + len;
        }
        Ok(Self { header, records, truncated_bytes })
    }

    /// Reads and parses a raw file from a reader.
    pub fn read_from(mut r: impl Read) -> Result<Self, ReadError> {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        Self::parse(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn header() -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            header_len: HEADER_LEN as u32,
            pid: 42,
            frequency_hz: 499,
            clock: ClockKind::PerfCpuClock as u32,
            alloc_mode: AllocMode::Sampled as u32,
            alloc_interval: 512 * 1024,
            start_unix_ns: 7,
            contention_rate_ns: 10_000,
            wall_period_ns: 10_000_000,
        }
    }

    #[test]
    fn round_trips_records_and_reports_truncation() {
        let mut b = header().to_bytes().to_vec();
        let mut p = Vec::new();
        p.extend_from_slice(&9u32.to_ne_bytes());
        p.extend_from_slice(&2u32.to_ne_bytes());
        p.extend_from_slice(&0x1000u64.to_ne_bytes());
        p.extend_from_slice(&0x2000u64.to_ne_bytes());
        b.extend(record(KIND_CPU_SAMPLE, &p));
        let end = EndRecord { cpu_time_ns: 5, samples: 1, ..Default::default() };
        let words: Vec<u8> = end.to_words().iter().flat_map(|w| w.to_ne_bytes()).collect();
        b.extend(record(KIND_END, &words));
        b.extend_from_slice(&[1, 0, 0]);
        let f = RawFile::parse(&b).unwrap();
        assert_eq!(f.header, header());
        assert_eq!(f.records[0], Record::CpuSample { tid: 9, frames: vec![0x1000, 0x2000] });
        assert_eq!(f.records[1], Record::End(end));
        assert_eq!(f.truncated_bytes, 3);
    }

    #[test]
    fn reads_contention_stacks_and_headers_without_the_rate() {
        let mut b = header().to_bytes().to_vec();
        let mut p = Vec::new();
        for w in [3u64, 4_000_000, 2] {
            p.extend_from_slice(&w.to_ne_bytes());
        }
        p.extend_from_slice(&0x1000u64.to_ne_bytes());
        p.extend_from_slice(&0x2000u64.to_ne_bytes());
        b.extend(record(KIND_CONTENTION_STACK, &p));
        let f = RawFile::parse(&b).unwrap();
        assert_eq!(f.header.contention_rate_ns, 10_000);
        assert_eq!(
            f.records,
            [Record::ContentionStack { contentions: 3, delay_ns: 4_000_000, frames: vec![0x1000, 0x2000] }]
        );
        // A header of the first layout (48 bytes) reads as "contention not recorded".
        let mut old = header().to_bytes()[..HEADER_LEN_V1].to_vec();
        old[12..16].copy_from_slice(&(HEADER_LEN_V1 as u32).to_ne_bytes());
        old.extend(record(KIND_CONTENTION_STACK, &p));
        let f = RawFile::parse(&old).unwrap();
        assert_eq!(f.header.contention_rate_ns, 0);
        assert_eq!(f.records.len(), 1);
    }

    #[test]
    fn reads_wall_records_and_headers_without_the_wall_period() {
        let mut b = header().to_bytes().to_vec();
        let mut p = Vec::new();
        p.extend_from_slice(&7u32.to_ne_bytes());
        p.extend_from_slice(&1u32.to_ne_bytes());
        p.extend_from_slice(&10_000_000u64.to_ne_bytes());
        p.extend_from_slice(&0x1000u64.to_ne_bytes());
        b.extend(record(KIND_WALL_STACK, &p));
        b.extend(record(KIND_WALL_TIME, &p[..16]));
        let f = RawFile::parse(&b).unwrap();
        assert_eq!(f.header.wall_period_ns, 10_000_000);
        assert_eq!(
            f.records,
            [
                Record::WallStack { tid: 7, wall_ns: 10_000_000, frames: vec![0x1000] },
                Record::WallTime { tid: 7, wall_ns: 10_000_000 }
            ]
        );
        // A header of the second layout (56 bytes) reads as "wall time not sampled" and keeps
        // its contention rate.
        let mut old = header().to_bytes()[..HEADER_LEN_V2].to_vec();
        old[12..16].copy_from_slice(&(HEADER_LEN_V2 as u32).to_ne_bytes());
        old.extend(record(KIND_WALL_TIME, &p[..16]));
        let f = RawFile::parse(&old).unwrap();
        assert_eq!((f.header.wall_period_ns, f.header.contention_rate_ns), (0, 10_000));
        assert_eq!(f.records.len(), 1);
    }

    #[test]
    fn reads_label_sets_and_the_labels_of_a_record() {
        let mut b = header().to_bytes().to_vec();
        let mut set = Vec::new();
        for (k, v) in [("endpoint", "/search"), ("tenant", "t1")] {
            set.extend_from_slice(&(k.len() as u16).to_ne_bytes());
            set.extend_from_slice(&(v.len() as u16).to_ne_bytes());
            set.extend_from_slice(k.as_bytes());
            set.extend_from_slice(v.as_bytes());
        }
        let mut p = Vec::new();
        p.extend_from_slice(&3u32.to_ne_bytes());
        p.extend_from_slice(&(set.len() as u32).to_ne_bytes());
        p.extend_from_slice(&set);
        p.resize(pad8(p.len()), 0);
        b.extend(record(KIND_LABEL_SET, &p));
        let mut l = 3u32.to_ne_bytes().to_vec();
        l.extend_from_slice(&[0; 4]);
        b.extend(record(KIND_LABELS, &l));
        for w in [9u64, 1, 2] {
            l.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend(record(KIND_LABELS, &l));
        let f = RawFile::parse(&b).unwrap();
        assert_eq!(
            f.records,
            [
                Record::LabelSet {
                    id: 3,
                    pairs: vec![("endpoint".into(), "/search".into()), ("tenant".into(), "t1".into())]
                },
                Record::Labels { set: 3, span_id: 0, trace_id: 0 },
                Record::Labels { set: 3, span_id: 9, trace_id: (1 << 64) | 2 }
            ]
        );
        assert_eq!(f.truncated_bytes, 0);
    }

    #[test]
    fn rejects_other_files() {
        assert!(matches!(
            RawFile::parse(b"not a profile at all, really not one"),
            Err(ReadError::BadHeader(_))
        ));
        let mut h = header();
        h.version = 99;
        assert!(matches!(RawFile::parse(&h.to_bytes()), Err(ReadError::BadHeader(m)) if m.contains("99")));
    }
}
