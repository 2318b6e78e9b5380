//! From a pprof profile to the per-run costs the comparison reads ([`RunCosts`]).
//!
//! Function identity must survive rebuilds and edits elsewhere in the code, and a verdict must name
//! the user's function rather than the standard library code the compiler inlined into it:
//! - names are normalized: a trailing `::h<16 hex>` hash is dropped and closure indices are erased
//!   (`{closure#2}` and `{{closure}}` become `{closure}`), since adding a closure renumbers the rest;
//! - *library frames* (the standard library: `std`, `core`, `alloc`, methods of primitive types,
//!   libtest; the crates std itself depends on, such as its `hashbrown`, `gimli` or
//!   `rustc_demangle`, told by their source path in the toolchain ([`is_toolchain_source`]); C
//!   symbols such as `memcpy` or `malloc`; the profiling agent) are folded into the innermost
//!   caller that is not one when [`InputOptions::fold_library`] is on: the cost of an inlined
//!   `<u64>::wrapping_add`, of `alloc::alloc::alloc` or of std's `HashMap` probing belongs to the
//!   function that called it. A stack made only of library frames keeps its innermost frame,
//!   except the program's start and its harness: a stack of library frames only that holds the
//!   process's entry or the dynamic loader's (`_start`, `__libc_start_main`, `_dl_start`...) or
//!   libtest's own code (option parsing, the test runner) is counted in one [`PROGRAM_START`]
//!   function, as the viewer folds the prologue: what the runtime does before and around the
//!   user's code moves with paths, arguments and environment, not with the code under review.
//!   Library frames under the instructions engine's `[call path not recorded]` (callers it could
//!   not rebuild) are counted in that frame, not as std's own functions.
//!   One test decides what a library frame is everywhere: [`is_library_function`](crate::profile::names::is_library_function), from the name
//!   and the DWARF source path (in [`crate::profile::names`], with the normalization of names).
//!
//! Reads no files; the caller passes decoded profiles and says how each metric was measured.

use std::collections::BTreeMap;
use std::collections::HashMap;

use super::model::{Cost, Metric, MetricTotal, RunCosts};
use crate::criterion::PER_ITER_TYPE;
use crate::profile::Profile;
use crate::profile::names::{is_library_frame, is_toolchain_source, normalize_name};

/// How allocations were recorded in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocRecording {
    /// Not recorded: allocation metrics are left out.
    Off,
    /// Every allocation counted: exact metrics.
    Exact,
    /// One sample about every `interval` bytes: sampled metrics.
    Sampled {
        /// Mean bytes between samples.
        interval: u64,
    },
}

/// How a profile was recorded and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputOptions {
    /// Whether CPU was sampled (frequency above 0).
    pub cpu: bool,
    /// Allocation recording.
    pub alloc: AllocRecording,
    /// The duration-sampling rate of waits (`--contention`), when known: it tells how many
    /// records the `contentions` and `delay` values stand for (see [`contention_samples`]).
    /// Waits are read whenever the profile has their sample types, whatever this says.
    pub contention_rate_ns: Option<u64>,
    /// The wall-clock sampling period (`--wall`), when known: each period of each thread's wall
    /// time is one sample of `wall`. Wall time is read whenever the profile has its sample type.
    pub wall_period_ns: Option<u64>,
    /// Fold library frames into their callers (see the module docs).
    pub fold_library: bool,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            cpu: true,
            alloc: AllocRecording::Sampled { interval: 512 * 1024 },
            contention_rate_ns: None,
            wall_period_ns: None,
            fold_library: true,
        }
    }
}

/// The function the costs of the program's start and of its test harness are counted in (see the
/// module docs).
pub const PROGRAM_START: &str = "[program start]";

/// Frames that start the process, or belong to the test harness: a stack of library frames that
/// holds one of them is the program's start ([`PROGRAM_START`]).
fn is_start_frame(name: &str) -> bool {
    const ENTRIES: &[&str] = &[
        "_start",
        "__libc_start_main",
        "__libc_start_call_main",
        "_dl_start",
        "_dl_start_user",
        "_dl_init",
        "_dl_fini",
        "_dl_relocate_object",
        "std::rt::lang_start_internal",
    ];
    ENTRIES.contains(&name)
        || ["test::", "getopts::", "<test::", "<getopts::"].iter().any(|p| name.starts_with(p))
}

/// The runtime's one-time initializations that whichever thread gets there first runs: std's
/// key for thread-local destructors (`pthread_key_create`, made the first time a thread registers
/// one). Under libtest either the main thread or the test's thread makes it, as their timing goes,
/// which moved the test function's total by 39 instructions in identical runs. Their cost is the
/// program's start wherever it lands.
fn is_raced_init_frame(name: &str) -> bool {
    name == "std::sys::thread_local::guard::key::enable"
}

/// Whether `frames` hang under the instructions engine's `[call path not recorded]`.
fn is_detached(frames: &[&(String, bool)]) -> bool {
    frames.iter().any(|f| f.0 == crate::profile::DETACHED_FRAME)
}

/// The metrics `profile` measures as `opts` reads them, each with the index of its sample type.
fn measured(profile: &Profile, opts: &InputOptions) -> Vec<(Metric, usize)> {
    let index = |ty: &str| profile.sample_type_index(ty);
    let cpu_index = index(PER_ITER_TYPE).filter(|&i| profile.total(i) > 0).or_else(|| index("cpu"));
    let mut metrics: Vec<(Metric, usize)> = Vec::new();
    if opts.cpu {
        metrics.extend(cpu_index.map(|i| (Metric::Cpu, i)));
    }
    // Instruction counts, where the instructions engine recorded them.
    metrics.extend(
        index(crate::profile::sample_type(Metric::Instructions))
            .filter(|&i| profile.total(i) > 0)
            .map(|i| (Metric::Instructions, i)),
    );
    if opts.alloc != AllocRecording::Off {
        for m in [Metric::AllocBytes, Metric::AllocCount, Metric::InuseBytes] {
            metrics.extend(index(crate::profile::sample_type(m)).map(|i| (m, i)));
        }
    }
    // Waits, where the run recorded them (`--contention`, or an imported Go block profile): the
    // types are there even when no thread waited, and then every run has a zero total.
    let waits = index(crate::profile::sample_type(Metric::Contentions))
        .zip(index(crate::profile::sample_type(Metric::Delay)));
    if let Some((c, d)) = waits {
        metrics.extend([(Metric::Delay, d), (Metric::Contentions, c)]);
    }
    let wall = index(crate::profile::sample_type(Metric::Wall));
    metrics.extend(wall.map(|i| (Metric::Wall, i)));
    metrics
}

/// Per metric `profile` measures (as [`run_costs`] reads them), its total per value of the
/// sample label `key` (`None`: the samples without it): what a comparison's breakdown by that
/// label reads ([`RunCosts::by_label`]).
pub fn label_totals(
    profile: &Profile,
    opts: &InputOptions,
    key: &str,
) -> BTreeMap<Metric, BTreeMap<Option<String>, f64>> {
    let metrics = measured(profile, opts);
    let mut per_value: HashMap<Option<&str>, Vec<f64>> = HashMap::new();
    for s in &profile.sample {
        let sums = per_value.entry(profile.label_str(s, key)).or_insert_with(|| vec![0.0; metrics.len()]);
        for (sum, &(_, i)) in sums.iter_mut().zip(&metrics) {
            *sum += s.value.get(i).copied().unwrap_or(0).max(0) as f64;
        }
    }
    let mut out: BTreeMap<Metric, BTreeMap<Option<String>, f64>> = BTreeMap::new();
    for (value, sums) in per_value {
        for (&(metric, _), sum) in metrics.iter().zip(sums) {
            out.entry(metric).or_default().insert(value.map(str::to_owned), sum);
        }
    }
    out
}

/// Converts one profile (one run of one group) to its costs.
pub fn run_costs(profile: &Profile, opts: &InputOptions) -> RunCosts {
    let index = |ty: &str| profile.sample_type_index(ty);
    let metrics = measured(profile, opts);
    let waits = index(crate::profile::sample_type(Metric::Contentions))
        .zip(index(crate::profile::sample_type(Metric::Delay)));
    let wall = index(crate::profile::sample_type(Metric::Wall));

    let mut out = RunCosts::default();
    let cpu_samples = index("samples").map_or(0, |i| profile.total(i).max(0) as u64);
    let alloc_bytes = index("alloc_space").map_or(0, |i| profile.total(i).max(0) as u64);
    let wait_samples = waits.map_or(0, |(c, d)| contention_samples(profile, c, d, opts.contention_rate_ns));
    let wall_samples = wall.map_or(0, |i| wall_samples(profile, i, opts.wall_period_ns));
    for &(metric, i) in &metrics {
        let value = profile.total(i).max(0) as f64;
        let total = match (metric, opts.alloc) {
            (Metric::Cpu, _) => MetricTotal::sampled(value, cpu_samples),
            (Metric::Instructions, _) => MetricTotal::exact(value),
            (Metric::Delay | Metric::Contentions, _) => MetricTotal::sampled(value, wait_samples),
            (Metric::Wall, _) => MetricTotal::sampled(value, wall_samples),
            (_, AllocRecording::Exact) => MetricTotal::exact(value),
            (Metric::InuseBytes, AllocRecording::Sampled { interval }) => {
                MetricTotal::sampled(value, (value / interval.max(1) as f64).round() as u64)
            }
            // One sample per ~interval allocated bytes, whichever of bytes or count is read.
            (_, AllocRecording::Sampled { interval }) => {
                MetricTotal::sampled(value, alloc_bytes / interval.max(1))
            }
            (_, AllocRecording::Off) => continue,
        };
        out.totals.insert(metric, total);
    }

    let names = FrameNames::new(profile, opts.fold_library);
    let mut frames: Vec<&(String, bool)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in &profile.sample {
        let Some(leaf) = names.stack(s, &mut frames, &mut seen) else { continue };
        // The leaf's caller: the next frame outward that is not a library frame, past the leaf's
        // own frames (inlined into themselves by recursion).
        let caller = frames
            .iter()
            .skip_while(|f| f.1 || f.0 != leaf)
            .find(|f| !f.1 && f.0 != leaf)
            .map(|f| f.0.as_str());
        for &(metric, i) in &metrics {
            let v = s.value.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let v = v as f64;
            for &name in &seen {
                let cost: &mut Cost =
                    out.functions.entry(name.to_owned()).or_default().entry(metric).or_default();
                cost.total += v;
                if name == leaf {
                    cost.self_ += v;
                }
            }
            if let Some(caller) = caller {
                *entry(entry(&mut out.self_by_caller, leaf), caller).entry(metric).or_default() += v;
            }
        }
    }
    out.work = profile.work();
    // Functions with no cost in any metric are dropped by construction; keep maps tidy.
    out.functions.retain(|_, m: &mut BTreeMap<Metric, Cost>| !m.is_empty());
    // Calls into each function (the instructions engine), by the called function itself: a
    // library function's calls are its own, not its caller's.
    if let Some(i) = index(crate::profile::CALLS_TYPE.0) {
        for s in &profile.sample {
            let v = s.value.get(i).copied().unwrap_or(0);
            let called = s.location_id.first().and_then(|id| names.locations.get(id)).and_then(|l| l.last());
            if let (true, Some(&f)) = (v > 0, called) {
                *out.calls.entry(names.names[f].0.clone()).or_default() += v as f64;
            }
        }
    }
    out
}

/// The value of `key` in `map`, inserted empty if absent (without allocating the key when it is
/// there: the loop over samples asks for the same few names many times).
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// How many recorded waits the `contentions` (index `c`) and `delay` (index `d`) values of a
/// profile stand for: the sample count of both metrics, which sets their noise floor.
///
/// The agent samples waits by duration (Go's block profile): at rate `R`, a wait of `d >= R` ns is
/// one record adding 1 wait and `d` ns; a shorter one is recorded with probability `d / R` and
/// adds `R / d` waits and exactly `R` ns. Records are aggregated per stack, so their number is not
/// stored, but each record adds at least 1 wait and at least `R` ns: per stack, the records are
/// at most `min(contentions, delay / R)`, and exactly that when all of the stack's waits were
/// long (`contentions`) or all short (`delay / R`), the usual case, since one stack waits on one
/// lock. The sum over stacks is the count; it errs, if at all, toward more records (a smaller
/// noise floor) only for a stack that mixes long and short waits. Without the rate (an imported
/// profile), `contentions`: exact when every wait was recorded with weight 1, as Go's default
/// rate of 1 (every wait) does.
pub fn contention_samples(profile: &Profile, c: usize, d: usize, rate_ns: Option<u64>) -> u64 {
    let count = |s: &crate::profile::Sample, i: usize| s.value.get(i).copied().unwrap_or(0).max(0) as f64;
    let records: f64 = profile
        .sample
        .iter()
        .map(|s| match rate_ns.filter(|&r| r > 0) {
            Some(r) => count(s, c).min(count(s, d) / r as f64),
            None => count(s, c),
        })
        .sum();
    records.round() as u64
}

/// How many wall-clock samples the `wall` values (index `i`) of a profile stand for: one per
/// period of each thread's wall time (a thread that stayed blocked is not signalled again, but
/// each of its periods is one observation of where it was). Without the period (an imported
/// profile), the number of samples with wall time.
pub fn wall_samples(profile: &Profile, i: usize, period_ns: Option<u64>) -> u64 {
    match period_ns.filter(|&p| p > 0) {
        Some(p) => (profile.total(i).max(0) as f64 / p as f64).round() as u64,
        None => profile.sample.iter().filter(|s| s.value.get(i).is_some_and(|&v| v > 0)).count() as u64,
    }
}

/// The normalized names of a profile's frames, each marked as a library frame when folding.
pub(crate) struct FrameNames {
    /// (normalized name, library frame to fold), by position.
    names: Vec<(String, bool)>,
    /// Location id → positions in `names`, innermost (inlined) first.
    locations: HashMap<u64, Vec<usize>>,
    /// Whether library frames are folded (and the program's start with them).
    fold_library: bool,
    /// The instructions engine's thread labels ([`crate::profile::INSTRUCTIONS_THREAD_LABEL`]; key
    /// and value as string indices) of the threads that run only the program's start and its
    /// harness (libtest's main thread): see [`FrameNames::harness_threads`].
    harness_threads: Vec<(i64, i64)>,
    /// The `main` functions rustc generated for test binaries (see [`FrameNames::is_harness`]),
    /// found where they call libtest; set with [`FrameNames::harness_threads`].
    test_mains: Vec<String>,
}

impl FrameNames {
    pub(crate) fn new(profile: &Profile, fold_library: bool) -> FrameNames {
        let mut names = Vec::with_capacity(profile.function.len());
        let mut by_id: HashMap<u64, usize> = HashMap::with_capacity(profile.function.len());
        for f in &profile.function {
            let name = normalize_name(profile.str(f.name));
            let library =
                fold_library && (is_library_frame(&name) || is_toolchain_source(profile.str(f.filename)));
            by_id.insert(f.id, names.len());
            names.push((name, library));
        }
        let locations = profile
            .location
            .iter()
            .map(|l| (l.id, l.line.iter().filter_map(|line| by_id.get(&line.function_id).copied()).collect()))
            .collect();
        let mut names = FrameNames {
            names,
            locations,
            fold_library,
            harness_threads: Vec::new(),
            test_mains: Vec::new(),
        };
        // Only the instructions engine labels threads and detaches stacks.
        if fold_library && profile.string_table.iter().any(|s| s == crate::profile::DETACHED_FRAME) {
            names.test_mains = names.test_mains(profile);
            names.harness_threads = names.harness_threads(profile);
        }
        names
    }

    /// The threads whose every stack with a known call path is the program's start or its
    /// harness: libtest's main thread, which parses options, spawns the test and waits for it.
    /// Its instructions whose call path callgrind could not give (`[call path not recorded]`:
    /// runtime initializers, libtest formatting the elapsed time, the allocator under them) are
    /// the harness's too, and move between identical runs with the moment the test thread ends.
    fn harness_threads(&self, profile: &Profile) -> Vec<(i64, i64)> {
        let key = profile.string_table.iter().position(|s| s == crate::profile::INSTRUCTIONS_THREAD_LABEL);
        let Some(key) = key.map(|k| k as i64) else { return Vec::new() };
        let mut frames = Vec::new();
        // Per thread: whether every stack with a known path is the harness's.
        let mut threads: BTreeMap<i64, bool> = BTreeMap::new();
        for s in &profile.sample {
            let Some(thread) = s.label.iter().find(|l| l.key == key).map(|l| l.str) else { continue };
            self.frames(s, &mut frames);
            if !is_detached(&frames) {
                *threads.entry(thread).or_insert(true) &= self.is_harness(&frames);
            }
        }
        threads.into_iter().filter(|&(_, harness)| harness).map(|(thread, _)| (key, thread)).collect()
    }

    /// The `main` functions rustc generated for test binaries, wherever they call libtest: their
    /// own instructions are a stack of their own, with no libtest frame under them.
    fn test_mains(&self, profile: &Profile) -> Vec<String> {
        let mut frames = Vec::new();
        let mut mains: Vec<String> = Vec::new();
        for s in &profile.sample {
            self.frames(s, &mut frames);
            for pair in frames.windows(2) {
                if pair[1].0.ends_with("::main")
                    && pair[0].0.starts_with("test::test_main")
                    && !mains.contains(&pair[1].0)
                {
                    mains.push(pair[1].0.clone());
                }
            }
        }
        mains
    }

    /// The frames of `sample`, innermost first, inlined ones included.
    fn frames<'s>(&'s self, sample: &crate::profile::Sample, frames: &mut Vec<&'s (String, bool)>) {
        frames.clear();
        frames.extend(
            sample
                .location_id
                .iter()
                .filter_map(|id| self.locations.get(id))
                .flatten()
                .map(|&i| &self.names[i]),
        );
    }

    /// Whether `frames` (innermost first) are the program's start or its test harness: library
    /// frames only (the `main` rustc generates for a test binary counts as one), one of them a
    /// start frame.
    fn is_harness(&self, frames: &[&(String, bool)]) -> bool {
        // The `main` rustc generates for a test binary (`<crate>::main`, calling libtest's
        // `test_main_static`) is the harness's, not the user's.
        let harness_main = |k: usize| {
            (frames[k].0.ends_with("::main") && k > 0 && frames[k - 1].0.starts_with("test::test_main"))
                || self.test_mains.contains(&frames[k].0)
        };
        self.fold_library
            && (0..frames.len()).all(|k| frames[k].1 || harness_main(k))
            && frames.iter().any(|f| is_start_frame(&f.0))
    }

    /// The frames of `sample`, innermost first, each with the position of its location on the
    /// stack (frames inlined at one address share it; the last of them is the compiled function).
    pub(crate) fn located<'s>(
        &'s self,
        sample: &crate::profile::Sample,
        out: &mut Vec<(usize, &'s (String, bool))>,
    ) {
        out.clear();
        for (depth, id) in sample.location_id.iter().enumerate() {
            if let Some(lines) = self.locations.get(id) {
                out.extend(lines.iter().map(|&i| (depth, &self.names[i])));
            }
        }
    }

    /// The frames of `sample` into `frames` (innermost first, inlined ones included) and the
    /// functions the comparison names on it into `seen` (sorted, once each); returns the one its
    /// self cost is counted in: the innermost frame that is not a library frame, else the innermost.
    pub(crate) fn stack<'s>(
        &'s self,
        sample: &crate::profile::Sample,
        frames: &mut Vec<&'s (String, bool)>,
        seen: &mut Vec<&'s str>,
    ) -> Option<&'s str> {
        self.frames(sample, frames);
        let (innermost, _) = frames.first().copied()?;
        let own = frames.iter().find(|f| !f.1);
        seen.clear();
        if self.is_harness(frames)
            || (self.fold_library && frames.iter().any(|f| f.1 && is_raced_init_frame(&f.0)))
        {
            seen.push(PROGRAM_START);
            return Some(PROGRAM_START);
        }
        // Library code whose callers callgrind's call graph could not tell (recursion through a
        // thread pool's scheduler): counted where the path ends, not as std's functions; on a
        // thread that runs only the harness, the harness's.
        if own.is_none() && self.fold_library && is_detached(frames) {
            let harness_thread = sample.label.iter().any(|l| self.harness_threads.contains(&(l.key, l.str)));
            let counted_in = if harness_thread { PROGRAM_START } else { crate::profile::DETACHED_FRAME };
            seen.push(counted_in);
            return Some(counted_in);
        }
        let leaf = own.map_or(innermost.as_str(), |f| f.0.as_str());
        seen.push(leaf);
        seen.extend(frames.iter().filter(|f| !f.1 && f.0 != leaf).map(|f| f.0.as_str()));
        seen.sort_unstable();
        seen.dedup();
        Some(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile of a `--contention` run: `app::waiter` waited under std's lock twice as long
    /// as `app::other`, through one stack of long waits (3 waits, 6 ms at a 10 µs rate) and one
    /// of short ones (each record adds the rate: 5 records, 50 µs, weighted to 20 waits).
    fn waits_profile() -> Profile {
        let mut p = crate::profile::test_support::synth(&[
            (&["main", "app::waiter", "std::sync::Mutex::lock"], 0, 0),
            (&["main", "app::other", "std::sync::Mutex::lock"], 0, 0),
            (&["main", "app::busy"], 5_000_000, 0),
        ]);
        for (t, u) in crate::profile::CONTENTION_TYPES {
            let vt = crate::profile::ValueType { r#type: p.intern(t), unit: p.intern(u) };
            p.sample_type.push(vt);
        }
        for (s, waits) in p.sample.iter_mut().zip([[3, 6_000_000], [20, 50_000], [0, 0]]) {
            s.value.extend(waits);
        }
        p
    }

    #[test]
    fn contention_metrics_are_read_when_the_profile_has_them() {
        let opts = InputOptions { contention_rate_ns: Some(10_000), ..InputOptions::default() };
        let r = run_costs(&waits_profile(), &opts);
        // 3 long waits (one record each) + 50 µs / 10 µs short records.
        assert_eq!(r.totals[&Metric::Delay], MetricTotal::sampled(6_050_000.0, 8));
        assert_eq!(r.totals[&Metric::Contentions], MetricTotal::sampled(23.0, 8));
        // The lock's own frames are std's: the wait counts toward the caller.
        let waiter = &r.functions["app::waiter"];
        assert_eq!(waiter[&Metric::Delay], Cost { self_: 6_000_000.0, total: 6_000_000.0 });
        assert_eq!(waiter[&Metric::Contentions], Cost { self_: 3.0, total: 3.0 });
        assert!(!r.functions["app::busy"].contains_key(&Metric::Delay));
        // Without the rate (an imported profile), every wait counts as a record.
        let r = run_costs(&waits_profile(), &InputOptions::default());
        assert_eq!(r.totals[&Metric::Delay], MetricTotal::sampled(6_050_000.0, 23));
        // A profile without the types has no contention metrics.
        let plain = crate::profile::test_support::synth(&[(&["main", "app::busy"], 5_000_000, 0)]);
        let r = run_costs(&plain, &opts);
        assert!(!r.totals.contains_key(&Metric::Delay) && !r.totals.contains_key(&Metric::Contentions));
    }

    /// Issue 27: libtest's option parsing and the startup's `strtoul`/`vfscanf` were 263 shifted
    /// rows of an A/A under the instructions engine.
    #[test]
    fn the_programs_start_and_the_test_harness_are_one_function() {
        let mut p = crate::profile::test_support::synth(&[
            (
                &[
                    "_start",
                    "__libc_start_main",
                    "main",
                    "std::rt::lang_start_internal",
                    "test::test_main",
                    "getopts::Options::optflag",
                ],
                3_000_000,
                0,
            ),
            (
                &[
                    "_start",
                    "__libc_start_main",
                    "main",
                    "std::rt::lang_start_internal",
                    "test::test_main",
                    "app::tests::case",
                    "app::parse",
                ],
                5_000_000,
                0,
            ),
            (&["_dl_start", "_dl_relocate_object", "strcmp"], 1_000_000, 0),
            // Library code whose callers the instructions engine could not rebuild.
            (&["[call path not recorded]", "core::hash::sip::Hasher::write"], 7_000_000, 0),
            (&["[call path not recorded]", "_int_free"], 1_000_000, 0),
            // A test binary's own `main` (rustc's, not the user's) parsing its options.
            (
                &[
                    "_start",
                    "__libc_start_main",
                    "main",
                    "std::rt::lang_start_internal",
                    "app_tests::main",
                    "test::test_main_static",
                    "test::parse_opts",
                ],
                2_000_000,
                0,
            ),
            (
                &["clone3", "start_thread", "std::sys::thread::Thread::new::thread_start", "std::io::copy"],
                2_000_000,
                0,
            ),
        ]);
        // libtest's getopts is std's vendored copy.
        let getopts = p.intern("/rust/deps/getopts-0.2.21/src/lib.rs");
        for f in &mut p.function {
            if p.string_table[f.name as usize].starts_with("getopts::") {
                f.filename = getopts;
            }
        }
        let r = run_costs(&p, &InputOptions::default());
        assert_eq!(r.functions[PROGRAM_START][&Metric::Cpu].self_, 6_000_000.0);
        assert!(
            !r.functions.contains_key("getopts::Options::optflag") && !r.functions.contains_key("strcmp")
        );
        assert!(!r.functions.contains_key("app_tests::main"));
        assert_eq!(r.functions[crate::profile::DETACHED_FRAME][&Metric::Cpu].self_, 8_000_000.0);
        assert!(!r.functions.contains_key("_int_free"));
        assert_eq!(r.functions["app::parse"][&Metric::Cpu].self_, 5_000_000.0);
        // A thread of library frames that is not the harness keeps its innermost frame.
        assert_eq!(r.functions["std::io::copy"][&Metric::Cpu].self_, 2_000_000.0);
        // Unfolded, frames are themselves.
        let r = run_costs(&p, &InputOptions { fold_library: false, ..InputOptions::default() });
        assert!(
            r.functions.contains_key("getopts::Options::optflag") && !r.functions.contains_key(PROGRAM_START)
        );
    }

    /// Issue 27: under the instructions engine, libtest's main thread runs only the harness, and
    /// its instructions with no recorded call path (runtime initializers, the elapsed time's
    /// formatting, the allocator under them) moved between identical runs as
    /// `[call path not recorded]` rows. They are the program's start; the same on the test's own
    /// thread, or on a main thread that runs the user's code, stay where they were.
    #[test]
    fn detached_instructions_of_a_thread_that_runs_only_the_harness_are_the_programs_start() {
        let harness = ["_start", "__libc_start_main", "main", "app_tests::main", "test::test_main_static"];
        let stacks: [(&[&str], i64, i64); 6] = [
            (&harness, 4_000, 0),
            // The generated `main`'s own instructions: a stack with no libtest frame.
            (&harness[..4], 50, 0),
            (&["[call path not recorded]", "_int_malloc"], 300, 0),
            (&["clone3", "start_thread", "app::tests::case", "app::parse"], 5_000, 0),
            (&["[call path not recorded]", "memcpy"], 200, 0),
            (&["[call path not recorded]", "_int_free"], 100, 0),
        ];
        // Thread labels as the instructions engine writes them: the harness's stacks and the
        // first detached one on thread 1; the test's and the second on thread 2; the third
        // unlabelled. The generated `main` is the harness's even where it is the leaf.
        let labelled = |threads: [Option<&str>; 6]| {
            let mut p = crate::profile::test_support::synth(&stacks);
            let key = p.intern(crate::profile::INSTRUCTIONS_THREAD_LABEL);
            for (i, thread) in threads.iter().enumerate() {
                if let Some(t) = thread {
                    let value = p.intern(t);
                    p.sample[i].label.push(crate::profile::Label { key, str: value, num: 0, num_unit: 0 });
                }
            }
            run_costs(&p, &InputOptions::default())
        };
        let self_of = |r: &RunCosts, f: &str| r.functions.get(f).map_or(0.0, |m| m[&Metric::Cpu].self_);
        let r = labelled([Some("1"), Some("1"), Some("1"), Some("2"), Some("2"), None]);
        assert_eq!(self_of(&r, PROGRAM_START), 4_350.0);
        assert_eq!(self_of(&r, crate::profile::DETACHED_FRAME), 300.0);
        assert_eq!(self_of(&r, "app::parse"), 5_000.0);
        // A main thread that runs the user's code: its detached instructions may be the user's.
        let r = labelled([Some("1"), Some("1"), Some("1"), Some("1"), Some("2"), None]);
        assert_eq!(self_of(&r, PROGRAM_START), 4_050.0);
        assert_eq!(self_of(&r, crate::profile::DETACHED_FRAME), 600.0);
        // Without thread labels (profiles recorded before them), as before.
        let r = labelled([None; 6]);
        assert_eq!(self_of(&r, crate::profile::DETACHED_FRAME), 600.0);
    }

    /// Issue 27: std makes its key for thread-local destructors once, in whichever thread
    /// registers one first; under libtest that is the main thread or the test's, as their timing
    /// goes, and the test function's total moved by 39 instructions in identical runs.
    #[test]
    fn a_one_time_initialization_that_threads_race_for_is_the_programs_start() {
        let p = crate::profile::test_support::synth(&[
            (&["clone3", "start_thread", "app::tests::case", "app::parse"], 5_000, 0),
            (
                &[
                    "clone3",
                    "start_thread",
                    "app::tests::case",
                    "std::thread::current::init_current",
                    "std::sys::thread_local::guard::key::enable",
                    "pthread_key_create",
                ],
                39,
                0,
            ),
        ]);
        let r = run_costs(&p, &InputOptions::default());
        assert_eq!(r.functions[PROGRAM_START][&Metric::Cpu].self_, 39.0);
        assert_eq!(r.functions["app::tests::case"][&Metric::Cpu].total, 5_000.0);
    }

    #[test]
    fn a_toolchain_crate_inlined_into_user_code_is_counted_in_it() {
        let mut p = crate::profile::test_support::synth(&[
            (&["main", "app::tokenize", "hashbrown::raw::RawTable::find"], 3_000_000, 0),
            (&["main", "app::tokenize"], 1_000_000, 0),
            (&["main", "app::own_table", "hashbrown::raw::RawTable::insert"], 2_000_000, 0),
        ]);
        let std_file = p.intern("/rust/deps/hashbrown-0.16.1/src/raw/mod.rs");
        let registry =
            p.intern("/home/u/.cargo/registry/src/index.crates.io-x/hashbrown-0.15.2/src/raw/mod.rs");
        for f in &mut p.function {
            match p.string_table[f.name as usize].as_str() {
                "hashbrown::raw::RawTable::find" => f.filename = std_file,
                "hashbrown::raw::RawTable::insert" => f.filename = registry,
                _ => {}
            }
        }
        let r = run_costs(&p, &InputOptions::default());
        assert!(!r.functions.contains_key("hashbrown::raw::RawTable::find"));
        assert_eq!(r.functions["app::tokenize"][&Metric::Cpu].self_, 4_000_000.0);
        // The user's own hashbrown stays a function of its own.
        assert_eq!(r.functions["hashbrown::raw::RawTable::insert"][&Metric::Cpu].self_, 2_000_000.0);
        assert_eq!(r.functions["app::own_table"][&Metric::Cpu].self_, 0.0);
    }
}
