//! Turning one raw sample file into a [`Profile`].

use std::collections::HashMap;

use contprof_protocol::format::{ClockKind, EndRecord, RawFile, Record};

use super::fast_hash::FastMap;
use super::proto::{Label, Line, Mapping, Profile};
use super::writer::ProfileWriter;
use super::{
    CALLS_TYPE, CONTENTION_TYPES, INSTRUCTIONS_TYPE, SAMPLE_TYPES, THREADS_TYPE, WALL_TYPE, sample_index,
};
use crate::symbolize::{
    AGENT_FRAME, AddressKind, AgentCode, ProcessMaps, SYSTEM_CALL_INTERPOSERS, Symbolizer,
};

/// Where the CPU time that scales CPU samples came from (see [`BuildOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuTimeSource {
    /// The END record the agent wrote at exit (`CLOCK_PROCESS_CPUTIME_ID`).
    Agent,
    /// The caller's measurement (the runner's `wait4` rusage of the child).
    Caller,
    /// Neither: one period of the requested frequency per sample.
    Frequency,
}

/// Options for [`build_profile`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions<'a> {
    /// CPU time of the process measured from outside (user + system, nanoseconds), used when
    /// the raw file has no END record (the process was killed or exited without `atexit`).
    pub fallback_cpu_time_ns: Option<u64>,
    /// Callgrind's instruction counts of the same execution, one call graph per thread (the
    /// instructions engine); the profile then has the sample types [`INSTRUCTIONS_TYPE`], the
    /// default one, and [`CALLS_TYPE`] after [`SAMPLE_TYPES`].
    pub instructions: Option<&'a [crate::callgrind::Callgrind]>,
    /// `(path the process saw, real path)` of files run through links (the instructions engine's
    /// stage, [`crate::runner::stage`]): the memory map and callgrind's objects name the first,
    /// which may point to another build by the time the profile is built; symbolization and the
    /// profile's mappings use the second.
    pub aliases: &'a [(String, String)],
}

/// A built profile and what went wrong on the way.
#[derive(Debug, Clone)]
pub struct Built {
    /// The profile; warnings are also in its comments.
    pub profile: Profile,
    /// Problems worth showing to the user (missing debug info, truncated file, drops, ...).
    pub warnings: Vec<String>,
    /// Where the CPU time came from.
    pub cpu_time_source: CpuTimeSource,
}

/// The agent's frames are recognised by their mapping; what to do with them depends on the
/// stack's kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StackKind {
    /// Runs of agent frames become one [`AGENT_FRAME`].
    Cpu,
    /// Agent frames (the allocator and wait hooks) are removed.
    Alloc,
}

/// Per-raw-file symbolization state: locations per address, mappings per maps entry.
struct Symbols<'a> {
    symbolizer: &'a mut Symbolizer,
    maps: ProcessMaps,
    mapping_ids: HashMap<usize, u64>,
    /// Per address, kind and whether only the outermost frame is kept (a function entry, for call
    /// counts).
    locations: FastMap<(u64, AddressKind, bool), Loc>,
}

/// What one address of a stack is.
#[derive(Clone, Copy)]
pub(super) enum Loc {
    /// Code outside the agent and the C runtime: the location.
    Code(u64),
    /// The C runtime's code ([`crate::symbolize::MapEntry::is_c_runtime`]), which runs for
    /// whoever calls it, the agent included: the location.
    Runtime(u64),
    /// An interposer of the agent library standing in for the C library's function of its name
    /// ([`AgentCode::Interposer`]): the location, and whether it makes a system call for its
    /// caller in its own frame ([`SYSTEM_CALL_INTERPOSERS`]).
    Interposer(u64, bool),
    /// The agent's own code.
    Agent,
}

impl Loc {
    /// The location of code outside the agent.
    fn code(self) -> Option<u64> {
        match self {
            Loc::Code(l) | Loc::Runtime(l) => Some(l),
            Loc::Interposer(..) | Loc::Agent => None,
        }
    }
}

/// Whether a cost at the addresses `locs` (the leaf, then its callers) is the agent's own: the
/// agent's code is the leaf (its internal code, or an interposer's or a recording twin's own
/// instructions), or the C runtime runs there for the agent (called by its internal code,
/// through the C runtime and interposers only: `dlsym` from the constructor, the agent's own
/// `malloc`). Code reached through an interposer from the program (glibc's allocator under
/// `malloc`) and the program's code under the agent (a thread's start routine, called by the
/// agent's trampoline) are the program's.
pub(super) fn agents_own(locs: impl IntoIterator<Item = Loc>) -> bool {
    let mut locs = locs.into_iter();
    match locs.next() {
        Some(Loc::Agent | Loc::Interposer(..)) => return true,
        Some(Loc::Code(_)) | None => return false,
        Some(Loc::Runtime(_)) => {}
    }
    for loc in locs {
        match loc {
            Loc::Agent => return true,
            Loc::Code(_) => return false,
            Loc::Runtime(_) | Loc::Interposer(..) => {}
        }
    }
    false
}

impl Symbols<'_> {
    fn mapping_id(&mut self, w: &mut ProfileWriter, index: usize) -> u64 {
        if let Some(&id) = self.mapping_ids.get(&index) {
            return id;
        }
        let e = &self.maps.entries[index];
        let info = if e.is_file() { self.symbolizer.binary_info(&self.maps, &e.path).cloned() } else { None };
        let info = info.unwrap_or_default();
        let m = Mapping {
            id: 0,
            memory_start: e.start,
            memory_limit: e.limit,
            file_offset: e.file_offset,
            filename: w.string(&e.path),
            build_id: w.string(info.build_id.as_deref().unwrap_or("")),
            // Every location carries a name, even if only `module+0xoffset`.
            has_functions: true,
            has_filenames: info.has_debug_info,
            has_line_numbers: info.has_debug_info,
            has_inline_frames: info.has_debug_info,
        };
        let id = w.mapping(m);
        self.mapping_ids.insert(index, id);
        id
    }

    /// What `addr` is, with every frame there or with the outermost only.
    fn cached_location(
        &mut self,
        w: &mut ProfileWriter,
        addr: u64,
        kind: AddressKind,
        outermost: bool,
    ) -> Loc {
        if let Some(&l) = self.locations.get(&(addr, kind, outermost)) {
            return l;
        }
        let s = self.symbolizer.resolve(&self.maps, addr, kind);
        let loc = if s.agent == AgentCode::Internal {
            Loc::Agent
        } else {
            let mapping_id = s.mapping.map_or(0, |i| self.mapping_id(w, i));
            let frames =
                if outermost { &s.frames[s.frames.len().saturating_sub(1)..] } else { &s.frames[..] };
            let lines = frames
                .iter()
                .map(|f| Line {
                    function_id: w.function(&f.function, &f.system_name, f.file.as_deref().unwrap_or(""), 0),
                    line: i64::from(f.line),
                    column: i64::from(f.column),
                })
                .collect();
            let l = w.location(mapping_id, s.lookup_address, lines);
            let runtime = s.mapping.is_some_and(|i| self.maps.entries[i].is_c_runtime());
            match s.agent {
                AgentCode::Interposer => Loc::Interposer(
                    l,
                    frames.last().is_some_and(|f| SYSTEM_CALL_INTERPOSERS.contains(&f.system_name.as_str())),
                ),
                _ if runtime => Loc::Runtime(l),
                _ => Loc::Code(l),
            }
        };
        self.locations.insert((addr, kind, outermost), loc);
        loc
    }

    /// Location ids of a stack, leaf first. The agent's frames leave allocation and wait stacks
    /// (they start where the workload called it). In CPU, wall and thread stacks an interposer
    /// is named as the function it stands for where the thread is in it or in the agent's code
    /// it called, and left out where it forwarded to the C library's function, whose frames
    /// stand for it: the stack reads as it would without the agent, except for its cost. A run of
    /// the agent's own frames, its cost, becomes one [`AGENT_FRAME`]; so does an interposer's own
    /// code (the interposer's name then follows it, as its caller), unless it is a system call
    /// made for the caller ([`SYSTEM_CALL_INTERPOSERS`]): the program's.
    fn stack(&mut self, w: &mut ProfileWriter, frames: &[u64], kind: StackKind) -> Vec<u64> {
        let mut out = Vec::with_capacity(frames.len());
        let mut in_agent_run = false;
        // The frame before this one (its callee) is code outside the agent.
        let mut callee_is_code = false;
        for (i, &addr) in frames.iter().enumerate() {
            if addr == contprof_protocol::format::TRUNCATED_FRAME && i > 0 {
                out.push(w.pseudo_location(TRUNCATED_STACK_FRAME));
                continue;
            }
            let ak = if i == 0 && kind == StackKind::Cpu { AddressKind::Exact } else { AddressKind::Return };
            let loc = self.cached_location(w, addr, ak, false);
            match loc {
                Loc::Code(l) | Loc::Runtime(l) => out.push(l),
                Loc::Interposer(l, system_call) if kind == StackKind::Cpu && !callee_is_code => {
                    if i == 0 && !system_call {
                        out.push(w.pseudo_location(AGENT_FRAME));
                    }
                    out.push(l)
                }
                Loc::Interposer(..) => {}
                Loc::Agent if kind == StackKind::Cpu && !in_agent_run => {
                    out.push(w.pseudo_location(AGENT_FRAME))
                }
                Loc::Agent => {}
            }
            in_agent_run = matches!(loc, Loc::Agent);
            callee_is_code = matches!(loc, Loc::Code(_) | Loc::Runtime(_));
        }
        out
    }
}

/// The outermost frame of instruction counts whose call path callgrind's call graph could not
/// give (indirect recursion, paths too thin or too deep to expand; see [`crate::callgrind`]).
pub const DETACHED_FRAME: &str = "[call path not recorded]";

/// The sample label of the instructions engine's samples that holds their thread's number in
/// callgrind's order ("1" is the process's first thread, the one that runs `main`).
pub const INSTRUCTIONS_THREAD_LABEL: &str = "thread";

/// The outermost frame of a stack the agent could not walk to its root (see
/// [`contprof_protocol::format::TRUNCATED_FRAME`]): what is above it is unknown.
pub const TRUNCATED_STACK_FRAME: &str = "[truncated stack]";

/// Sample labels the tool sets itself: a label set from the program with one of these keys keeps
/// the tool's value (`thread` and `tid` here; the run's and the window's labels, which replace a
/// sample's label of the same key, later).
pub const RESERVED_SAMPLE_LABELS: &[&str] = &["thread", "tid"];

/// The sample label of the span a CPU, wall or thread sample was taken in (16 hex digits), as
/// Pyroscope and OpenTelemetry profiles name it.
pub const SPAN_ID_LABEL: &str = "span_id";
/// The sample label of the trace (32 hex digits, W3C trace context).
pub const TRACE_ID_LABEL: &str = "trace_id";

/// The frame under which system time recorded apart from the samples ([`Record::KernelTime`]) is
/// shown, on the stack of the sample taken right after it.
pub const KERNEL_FRAME: &str = "[kernel]";

/// What a sample was tagged with: `(label set, span id, trace id)`, 0 for none.
type Tags = (u32, u64, u128);

/// A thread's stack under its tags: `(tid, tags, frames)`.
type Key<'a> = (u32, Tags, &'a [u64]);

/// Everything the profile needs from the records, in one pass.
#[derive(Default)]
struct Collected<'a> {
    maps: Vec<&'a str>,
    thread_names: HashMap<u32, &'a str>,
    /// The label sets by id ([`Record::LabelSet`]).
    label_sets: HashMap<u32, &'a [(String, String)]>,
    /// Distinct `(tid, labels, stack)` in first-seen order, with counts.
    cpu: Vec<(Key<'a>, u64)>,
    cpu_samples: u64,
    /// System time per `(tid, labels, stack)` of the CPU sample it came with
    /// ([`Record::KernelTime`]).
    kernel: Vec<(Key<'a>, u64)>,
    kernel_ns: u64,
    /// Allocation totals per `(labels, stack)`.
    allocs: Vec<([u64; 4], u32, &'a [u64])>,
    /// Waits and nanoseconds waited per `(labels, stack)` ([`Record::ContentionStack`]).
    waits: Vec<([u64; 2], u32, &'a [u64])>,
    /// A snapshot of every thread's stack ([`Record::ThreadStack`]).
    threads: Vec<Key<'a>>,
    /// Wall time per `(tid, labels, stack)` ([`Record::WallStack`], plus the [`Record::WallTime`]
    /// that follows a thread's stack), in first-seen order.
    wall: Vec<(Key<'a>, u64)>,
    end: Option<EndRecord>,
    messages: Vec<(u32, &'a str)>,
    /// Units of work counted under a label set ([`Record::Work`]), as the records say.
    work: Vec<(u32, u64)>,
}

fn collect(raw: &RawFile) -> Collected<'_> {
    let mut c = Collected::default();
    let mut cpu_index: FastMap<Key, usize> = FastMap::default();
    let mut kernel_index: FastMap<Key, usize> = FastMap::default();
    let mut wall_index: FastMap<Key, usize> = FastMap::default();
    // Each thread's last wall stack: its later wall time without a stack goes there.
    let mut last_wall: FastMap<u32, Key> = FastMap::default();
    // The CPU sample just read, if the record before this one was one.
    let mut previous: Option<Key> = None;
    // The tags of the record after a `Labels` record (0: none).
    let mut labels: Tags = (0, 0, 0);
    for r in &raw.records {
        let mut sample = None;
        let tags = std::mem::take(&mut labels);
        let set = tags.0;
        match r {
            Record::Labels { set, span_id, trace_id } => labels = (*set, *span_id, *trace_id),
            Record::LabelSet { id, pairs } => {
                c.label_sets.insert(*id, pairs);
            }
            Record::CpuSample { tid, frames } => {
                c.cpu_samples += 1;
                let key = (*tid, tags, frames.as_slice());
                add(&mut cpu_index, &mut c.cpu, key, 1);
                sample = Some(key);
            }
            Record::KernelTime { tid, kernel_ns } => {
                // Written in the same write(2) as the CPU sample it follows.
                if let Some(key) = previous.filter(|(t, _, _)| t == tid) {
                    c.kernel_ns = c.kernel_ns.saturating_add(*kernel_ns);
                    add(&mut kernel_index, &mut c.kernel, key, *kernel_ns);
                }
            }
            Record::ThreadName { tid, name } => {
                c.thread_names.insert(*tid, name);
            }
            Record::Maps(text) => c.maps.push(text),
            Record::AllocStack { alloc_count, alloc_bytes, inuse_count, inuse_bytes, frames } => {
                c.allocs.push(([*alloc_count, *alloc_bytes, *inuse_count, *inuse_bytes], set, frames))
            }
            Record::ContentionStack { contentions, delay_ns, frames } => {
                c.waits.push(([*contentions, *delay_ns], set, frames))
            }
            Record::ThreadStack { tid, frames } => c.threads.push((*tid, tags, frames)),
            Record::WallStack { tid, wall_ns, frames } => {
                let key = (*tid, tags, frames.as_slice());
                add(&mut wall_index, &mut c.wall, key, *wall_ns);
                last_wall.insert(*tid, key);
            }
            Record::WallTime { tid, wall_ns } => {
                if let Some(&key) = last_wall.get(tid) {
                    add(&mut wall_index, &mut c.wall, key, *wall_ns);
                }
            }
            Record::End(e) => c.end = Some(*e),
            Record::Message { level, text } => c.messages.push((*level, text)),
            Record::Work { set, units } => c.work.push((*set, *units)),
            Record::Unknown(_) => {}
        }
        previous = sample;
    }
    c
}

/// The pprof labels of the program's label sets (`contprof::labels`), each made once.
struct SetLabels<'a> {
    sets: &'a HashMap<u32, &'a [(String, String)]>,
    cache: HashMap<u32, Vec<Label>>,
    /// Sets named by records but not defined in the file.
    missing: usize,
}

impl SetLabels<'_> {
    /// The labels of set `set` (none for 0); a key the tool sets itself
    /// ([`RESERVED_SAMPLE_LABELS`]) stays the tool's.
    fn get(&mut self, w: &mut ProfileWriter, set: u32) -> Vec<Label> {
        if set == 0 {
            return Vec::new();
        }
        if let Some(l) = self.cache.get(&set) {
            return l.clone();
        }
        let labels: Vec<Label> = match self.sets.get(&set) {
            Some(pairs) => pairs
                .iter()
                .filter(|(k, _)| !RESERVED_SAMPLE_LABELS.contains(&k.as_str()))
                .map(|(k, v)| Label { key: w.string(k), str: w.string(v), num: 0, num_unit: 0 })
                .collect(),
            None => {
                self.missing += 1;
                Vec::new()
            }
        };
        self.cache.insert(set, labels.clone());
        labels
    }
}

/// Adds `n` to the entry of `key` in `out` (first-seen order), found through `index`.
fn add<'a>(index: &mut FastMap<Key<'a>, usize>, out: &mut Vec<(Key<'a>, u64)>, key: Key<'a>, n: u64) {
    match index.get(&key) {
        Some(&i) => out[i].1 = out[i].1.saturating_add(n),
        None => {
            index.insert(key, out.len());
            out.push((key, n));
        }
    }
}

/// The process map: the last copy (written at exit, it has libraries loaded late), plus the
/// entries of earlier copies that it does not overlap (libraries unloaded before exit).
fn merged_maps(texts: &[&str]) -> ProcessMaps {
    let mut iter = texts.iter().rev();
    let mut maps = iter.next().map(|t| ProcessMaps::parse(t)).unwrap_or_default();
    for t in iter {
        for e in ProcessMaps::parse(t).entries {
            if !maps.entries.iter().any(|m| m.start < e.limit && e.start < m.limit) {
                maps.entries.push(e);
            }
        }
    }
    maps.entries.sort_by_key(|e| e.start);
    maps
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds a profile from a raw file, symbolizing its addresses with `symbolizer`.
///
/// Sample types are [`SAMPLE_TYPES`]; CPU samples carry `thread` and `tid` labels. Each CPU
/// sample is worth `period` nanoseconds, where `period` = measured CPU time / CPU samples, so
/// totals match the measured CPU time whatever rate the timer achieved.
pub fn build_profile(raw: &RawFile, symbolizer: &mut Symbolizer, options: &BuildOptions) -> Built {
    let c = collect(raw);
    let mut warnings = Vec::new();
    let mut types = SAMPLE_TYPES.to_vec();
    if options.instructions.is_some() {
        types.extend([INSTRUCTIONS_TYPE, CALLS_TYPE]);
    }
    let i_threads = (!c.threads.is_empty()).then(|| {
        types.push(THREADS_TYPE);
        types.len() - 1
    });
    let contention_rate = raw.header.contention_rate_ns;
    let i_contention = (contention_rate > 0).then(|| {
        types.extend(CONTENTION_TYPES);
        types.len() - 2
    });
    let wall_period = raw.header.wall_period_ns;
    let i_wall = (wall_period > 0).then(|| {
        types.push(WALL_TYPE);
        types.len() - 1
    });
    let mut w = ProfileWriter::new(&types);
    let header = &raw.header;
    let clock = ClockKind::from_u32(header.clock);

    let measured = c.end.map(|e| e.cpu_time_ns).filter(|&t| t > 0);
    let (cpu_time, cpu_time_source) = match (measured, options.fallback_cpu_time_ns) {
        (Some(t), _) => (Some(t), CpuTimeSource::Agent),
        (None, Some(t)) => (Some(t), CpuTimeSource::Caller),
        (None, None) => (None, CpuTimeSource::Frequency),
    };
    if c.end.is_none() {
        warnings.push("the raw file has no END record: the process did not exit normally".to_owned());
    }
    // With a user-time-only clock the samples stand for user time; system time was recorded
    // with the sample after it and is added under a `[kernel]` frame on that sample's stack.
    let kernel_ns = match cpu_time {
        Some(t) => c.kernel_ns.min(t),
        None => 0,
    };
    let period = match cpu_time {
        Some(t) if c.cpu_samples > 0 => to_i64((t - kernel_ns) / c.cpu_samples),
        _ if header.frequency_hz > 0 => {
            if c.cpu_samples > 0 {
                warnings.push(format!(
                    "no measured CPU time: each sample counts as 1/{} s, which under-reports CPU time \
                     when the timer fell behind",
                    header.frequency_hz
                ));
            }
            1_000_000_000 / i64::from(header.frequency_hz)
        }
        _ => 0,
    };
    if raw.truncated_bytes > 0 {
        warnings.push(format!("the raw file ends with {} bytes of a partial record", raw.truncated_bytes));
    }
    if let Some(e) = c.end.filter(|e| e.samples_dropped > 0) {
        warnings.push(format!("the agent dropped {} CPU samples", e.samples_dropped));
    }
    if let Some(e) = c.end.filter(|e| e.alloc_stacks_dropped > 0) {
        warnings.push(format!("{} allocation stacks were merged into one bucket", e.alloc_stacks_dropped));
    }
    let truncated: u64 = c
        .cpu
        .iter()
        .filter(|((_, _, frames), _)| {
            frames.len() > 1 && frames.last() == Some(&contprof_protocol::format::TRUNCATED_FRAME)
        })
        .map(|(_, n)| n)
        .sum();
    // A few stacks through hand-written assembly are expected; more means the walk is failing.
    if truncated * 20 > c.cpu_samples {
        warnings.push(format!(
            "{:.0}% of the CPU samples have stacks the agent could not walk to their root (shown under \
             `{TRUNCATED_STACK_FRAME}`): code without unwind tables, such as assembly or a JIT, was running",
            truncated as f64 * 100.0 / c.cpu_samples as f64
        ));
    }
    if c.maps.is_empty() && (c.cpu_samples > 0 || !c.allocs.is_empty()) {
        warnings.push("the raw file has no memory map: addresses cannot be symbolized".to_owned());
    }

    let mut maps = merged_maps(&c.maps);
    for e in &mut maps.entries {
        if let Some((_, real)) = options.aliases.iter().find(|(seen, _)| *seen == e.path) {
            e.path.clone_from(real);
        }
    }
    let mut sym = Symbols { symbolizer, maps, mapping_ids: HashMap::new(), locations: FastMap::default() };
    // pprof takes the first mapping as the main binary.
    let main = sym.maps.main_executable().map(str::to_owned);
    if let Some(i) = main.and_then(|p| sym.maps.entries.iter().position(|e| e.path == p && e.executable)) {
        sym.mapping_id(&mut w, i);
    }

    let (thread_key, tid_key) = (w.string("thread"), w.string("tid"));
    let (span_key, trace_key) = (w.string(SPAN_ID_LABEL), w.string(TRACE_ID_LABEL));
    let mut sets = SetLabels { sets: &c.label_sets, cache: HashMap::new(), missing: 0 };
    // `thread` (its name, else `tid-N`) and `tid` labels of a CPU sample, then its label set's.
    let thread_labels = |w: &mut ProfileWriter, sets: &mut SetLabels, tid: u32, (set, span, trace): Tags| {
        let name = match c.thread_names.get(&tid) {
            Some(n) => w.string(n),
            None => w.string(&format!("tid-{tid}")),
        };
        let mut labels = vec![
            Label { key: thread_key, str: name, num: 0, num_unit: 0 },
            Label { key: tid_key, str: 0, num: i64::from(tid), num_unit: 0 },
        ];
        labels.extend(sets.get(w, set));
        if span != 0 {
            labels.push(Label { key: span_key, str: w.string(&format!("{span:016x}")), num: 0, num_unit: 0 });
        }
        if trace != 0 {
            labels.push(Label {
                key: trace_key,
                str: w.string(&format!("{trace:032x}")),
                num: 0,
                num_unit: 0,
            });
        }
        labels
    };
    let mut values = vec![0i64; types.len()];
    let (i_samples, i_cpu) = (sample_index::SAMPLES, sample_index::CPU);
    for &((tid, set, frames), count) in &c.cpu {
        let stack = sym.stack(&mut w, frames, StackKind::Cpu);
        let labels = thread_labels(&mut w, &mut sets, tid, set);
        values.fill(0);
        values[i_samples] = to_i64(count);
        values[i_cpu] = to_i64(count).saturating_mul(period);
        w.sample(stack, &values, labels);
    }
    if kernel_ns > 0 {
        let kernel = w.pseudo_location(KERNEL_FRAME);
        // Scaled so that the total stays the measured CPU time.
        let scale = kernel_ns as f64 / c.kernel_ns.max(1) as f64;
        for &((tid, set, frames), ns) in &c.kernel {
            let mut stack = vec![kernel];
            stack.extend(sym.stack(&mut w, frames, StackKind::Cpu));
            let labels = thread_labels(&mut w, &mut sets, tid, set);
            values.fill(0);
            values[i_cpu] = (ns as f64 * scale) as i64;
            w.sample(stack, &values, labels);
        }
    }
    for &(v, set, frames) in &c.allocs {
        let stack = sym.stack(&mut w, frames, StackKind::Alloc);
        values.fill(0);
        values[sample_index::ALLOC_OBJECTS..].iter_mut().zip(v).for_each(|(d, s)| *d = to_i64(s));
        let labels = sets.get(&mut w, set);
        w.sample(stack, &values, labels);
    }

    if let Some(i) = i_contention {
        for &(v, set, frames) in &c.waits {
            let stack = sym.stack(&mut w, frames, StackKind::Alloc);
            values.fill(0);
            values[i] = to_i64(v[0]);
            values[i + 1] = to_i64(v[1]);
            let labels = sets.get(&mut w, set);
            w.sample(stack, &values, labels);
        }
        w.comment(&format!(
            "contention: waits of {contention_rate} ns or more recorded, shorter ones sampled with \
             probability wait/{contention_rate} ns and weighted"
        ));
    }
    if let Some(i) = i_wall {
        for &((tid, set, frames), ns) in &c.wall {
            let stack = sym.stack(&mut w, frames, StackKind::Cpu);
            let labels = thread_labels(&mut w, &mut sets, tid, set);
            values.fill(0);
            values[i] = to_i64(ns);
            w.sample(stack, &values, labels);
        }
        w.comment(&format!(
            "wall: every thread sampled every {wall_period} ns of wall time, on CPU or off; a thread \
             off CPU is charged at the stack where it blocked"
        ));
    }
    if let Some(i) = i_threads {
        for &(tid, set, frames) in &c.threads {
            let stack = sym.stack(&mut w, frames, StackKind::Cpu);
            let labels = thread_labels(&mut w, &mut sets, tid, set);
            values.fill(0);
            values[i] = 1;
            w.sample(stack, &values, labels);
        }
    }
    if sets.missing > 0 {
        warnings.push(format!(
            "{} label sets named by samples are not in the raw file: those samples have no labels",
            sets.missing
        ));
    }
    if let Some(threads) = options.instructions {
        add_instructions(&mut w, &mut sym, threads, options.aliases, &mut values, &mut warnings);
    }

    let symbolizer_warnings = sym.symbolizer.take_warnings();
    warnings.extend(symbolizer_warnings);
    for (level, text) in &c.messages {
        let kind = if *level >= 1 { "agent warning" } else { "agent note" };
        if *level >= 1 {
            warnings.push(format!("{kind}: {text}"));
        } else {
            w.comment(&format!("{kind}: {text}"));
        }
    }
    // Summed by pairs: a set missing from the file counts as no labels.
    let work: Vec<String> = c
        .work
        .iter()
        .map(|&(set, units)| super::work::comment(units, c.label_sets.get(&set).copied().unwrap_or_default()))
        .collect();
    for comment in super::work::sum_comments(work.iter().map(String::as_str)) {
        w.comment(&comment);
    }
    w.comment(&format!("clock: {} at {} Hz requested", clock.name(), header.frequency_hz));
    let source = match cpu_time_source {
        CpuTimeSource::Agent => "measured by the agent",
        CpuTimeSource::Caller => "measured by the runner",
        CpuTimeSource::Frequency => "assumed from the frequency",
    };
    w.comment(&format!("cpu period: {period} ns per sample ({source})"));
    for text in &warnings {
        w.comment(&format!("warning: {text}"));
    }

    let (period_type, period) = match options.instructions {
        Some(_) => (w.value_type(INSTRUCTIONS_TYPE.0, INSTRUCTIONS_TYPE.1), 1),
        None => (w.value_type("cpu", "nanoseconds"), period),
    };
    let default_type = period_type.r#type;
    let p = w.profile_mut();
    p.period_type = Some(period_type);
    p.period = period;
    p.default_sample_type = default_type;
    p.time_nanos = to_i64(header.start_unix_ns);
    p.duration_nanos = c.end.map_or(0, |e| to_i64(e.wall_ns));
    Built { profile: w.finish(), warnings, cpu_time_source }
}

/// Adds callgrind's counts as samples of the last two sample types (instructions, then calls):
/// its ELF virtual addresses moved to where each object was loaded (the raw file's memory map),
/// its call graph turned into stacks
/// ([`crate::callgrind::synthesize`]). Every frame is an instruction address (the counted
/// instruction, then the call instructions of its callers), so each is symbolized as exact,
/// inlined frames included.
///
/// The agent's own instructions are left out, from the stacks and so from the total: those of its
/// library (interposers, recording twins, its internal code) and those the C runtime runs for it
/// (see [`agents_own`]); its bookkeeping is not even counted (`--toggle-collect`, see
/// [`contprof_protocol::CALLGRIND_UNCOUNTED`]). The program's instructions under its interposers
/// (glibc's allocator under `malloc`) stay, charged to the program's caller: the interposer's frame
/// is dropped from the stack. The program's total is then what callgrind counts without the agent
/// but for the allocator's work on the headers of recorded blocks (see `docs/src/guide/instructions.md`).
fn add_instructions(
    w: &mut ProfileWriter,
    sym: &mut Symbols<'_>,
    threads: &[crate::callgrind::Callgrind],
    aliases: &[(String, String)],
    values: &mut [i64],
    warnings: &mut Vec<String>,
) {
    let mut biases: HashMap<String, Option<u64>> = HashMap::new();
    let mut synthesized = Vec::with_capacity(threads.len());
    for callgrind in threads {
        let mut relocated = callgrind.clone();
        for f in &mut relocated.functions {
            if let Some((_, real)) = aliases.iter().find(|(seen, _)| *seen == f.object) {
                f.object.clone_from(real);
            }
            let bias = *biases
                .entry(f.object.clone())
                .or_insert_with(|| sym.symbolizer.load_bias(&sym.maps, &f.object));
            let Some(bias) = bias else { continue };
            f.self_cost.iter_mut().for_each(|(a, _)| *a = a.wrapping_add(bias));
            f.calls.iter_mut().for_each(|c| c.site = c.site.wrapping_add(bias));
            f.entry = f.entry.map(|a| a.wrapping_add(bias));
        }
        // Each thread's stacks from its own call graph (see `runner::callgrind::arguments`).
        synthesized.push(crate::callgrind::synthesize(&relocated, &Default::default()));
    }
    let unmapped: Vec<&str> = biases.iter().filter(|(_, b)| b.is_none()).map(|(o, _)| o.as_str()).collect();
    if !unmapped.is_empty() {
        w.comment(&format!("instructions in objects missing from the memory map: {}", unmapped.join(", ")));
    }
    let (i_instructions, i_calls) = (values.len() - 2, values.len() - 1);
    // Each sample is labelled with its thread's number in callgrind's order (`thread` = "1" for
    // the process's first thread): the comparison tells libtest's main thread, which runs only
    // the harness, by it (see `compare::input`).
    let thread_key = w.string(INSTRUCTIONS_THREAD_LABEL);
    let thread_values: Vec<i64> = (1..=synthesized.len()).map(|n| w.string(&n.to_string())).collect();
    let instructions = synthesized
        .iter()
        .zip(&thread_values)
        .flat_map(|(t, &n)| t.stacks.iter().map(move |s| (s, i_instructions, n)));
    let calls = synthesized
        .iter()
        .zip(&thread_values)
        .flat_map(|(t, &n)| t.calls.iter().map(move |s| (s, i_calls, n)));
    let (mut total, mut detached, mut agent) = (0u64, 0u64, 0u64);
    let mut locs = Vec::new();
    for (s, index, thread) in instructions.chain(calls) {
        locs.clear();
        // A call's leaf is the function called: its entry, outermost frame only.
        let outermost = index == i_calls;
        locs.push(sym.cached_location(w, s.frames[0], AddressKind::Exact, outermost));
        locs.extend(s.frames[1..].iter().map(|&a| sym.cached_location(w, a, AddressKind::Exact, false)));
        if agents_own(locs.iter().copied()) {
            if index == i_instructions {
                agent = agent.saturating_add(s.value);
            }
            continue;
        }
        let mut stack: Vec<u64> = locs.iter().filter_map(|l| l.code()).collect();
        if s.detached {
            stack.push(w.pseudo_location(DETACHED_FRAME));
        }
        if index == i_instructions {
            total = total.saturating_add(s.value);
            if s.detached {
                detached = detached.saturating_add(s.value);
            }
        }
        values.fill(0);
        values[index] = to_i64(s.value);
        w.sample(stack, values, vec![Label { key: thread_key, str: thread, num: 0, num_unit: 0 }]);
    }
    w.comment(&format!(
        "engine: instructions (valgrind callgrind), {total} instructions; the agent's own {agent} left out"
    ));
    if total > 0 && detached * 100 > total {
        warnings.push(format!(
            "{:.1}% of the instructions have no call path above their function (`{DETACHED_FRAME}`): \
             callgrind records a call graph, not stacks; self counts are exact, totals of their callers \
             are lower by that much",
            detached as f64 * 100.0 / total as f64
        ));
    }
}
