//! Labels from code: key-value pairs that every sample taken on a thread carries while they are
//! set (Go's `pprof.Do`), to split a profile by endpoint, tenant or request kind.
//!
//! ```
//! contprof::labels::with(&[("endpoint", "/search")], || {
//!     // CPU, allocation, wait and wall samples of this thread carry `endpoint=/search` here.
//! });
//! let set = contprof::labels::LabelSet::new(&[("endpoint", "/items")]);
//! let _guard = set.enter(); // until the guard is dropped
//! ```
//!
//! Labels nest: a set made inside another adds its pairs to the current ones (a key set again
//! takes the new value; an empty value removes the key). They become string labels of the pprof
//! samples (`go tool pprof -tags`, `-tagfocus endpoint=/search`).
//!
//! [`count_work`] counts the work the program does (a request served, a message handled) under
//! the current labels: each profile (each production window) then holds how much was done while
//! it was recorded, and `prod compare` can judge costs per unit of work (CPU per request), which
//! a share of the window cannot do for a function that holds most of it:
//!
//! ```
//! contprof::labels::with(&[("endpoint", "/search")], || {
//!     // ... serve the request ...
//!     contprof::labels::count_work(1); // one request of endpoint=/search
//! });
//! ```
//!
//! Which agent they reach:
//! - the preloaded one (`cargo contprof run`, `LD_PRELOAD`): the program needs no other change;
//!   this crate finds the library's exported entry points (`contprof_labels_*_v1`) once, with
//!   `dlsym`;
//! - the linked one, once [`crate::start`] (or `Service::start`) has run in this
//!   process;
//! - none: every call returns at once after one load of a cached flag, and sets nothing.
//!
//! A set is interned once (an immutable, append-only table of at most [`MAX_SETS`] sets: make
//! sets of bounded cardinality, such as routes, not request ids); the thread holds its id, which
//! the signal handler reads with one load. When the table is full new sets carry no labels and the
//! raw file says how many were dropped. Keys are cut at [`MAX_KEY`] bytes, values at
//! [`MAX_VALUE`], sets at [`MAX_PAIRS`] pairs.

mod intern;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) mod slots;
pub(crate) mod work;

pub use intern::{MAX_KEY, MAX_PAIRS, MAX_SETS, MAX_VALUE};

#[doc(hidden)]
pub use intern::{dropped, dropped_pairs, encoded, published};

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// An interned set of labels, cheap to copy and to enter. [`LabelSet::EMPTY`] is no labels.
///
/// Its id is only meaningful in this process, for the agent that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LabelSet(u32);

impl LabelSet {
    /// No labels.
    pub const EMPTY: LabelSet = LabelSet(0);

    /// The set of `pairs` (no agent running: [`LabelSet::EMPTY`]).
    pub fn new(pairs: &[(&str, &str)]) -> LabelSet {
        Self::EMPTY.and(pairs)
    }

    /// This set with `pairs` added (a key already present takes the new value; an empty value
    /// removes the key).
    pub fn and(self, pairs: &[(&str, &str)]) -> LabelSet {
        match backend() {
            None => LabelSet::EMPTY,
            Some(b) => LabelSet(b.intern(self.0, pairs)),
        }
    }

    /// The calling thread's current set.
    pub fn current() -> LabelSet {
        match backend() {
            None => LabelSet::EMPTY,
            Some(b) => LabelSet(b.swap(KEEP)),
        }
    }

    /// Makes this the calling thread's set until the guard is dropped (which restores the set
    /// before).
    pub fn enter(self) -> Guard {
        Guard { previous: replace(self), _thread: PhantomData }
    }

    /// The pairs of this set, in key order, when it was made by the linked agent (the preloaded
    /// agent's sets are not readable from here: empty).
    pub fn pairs(self) -> impl Iterator<Item = (&'static str, &'static str)> {
        let local = matches!(backend(), Some(Backend::Local));
        crate::format::label_pairs(if local { intern::encoded(self.0) } else { &[] })
    }

    /// Counts `units` of work done under this set, whichever set the calling thread is in (see
    /// [`count_work`]).
    pub fn count_work(self, units: u64) {
        if let Some(b) = backend() {
            b.count_work(self.0, units);
        }
    }

    /// The id in the agent's table (0: no labels).
    pub fn id(self) -> u32 {
        self.0
    }

    /// No labels.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Restores the calling thread's previous label set when dropped. Not `Send`: it belongs to the
/// thread that entered the set.
#[must_use = "the labels are removed when the guard is dropped"]
#[derive(Debug)]
pub struct Guard {
    previous: LabelSet,
    _thread: PhantomData<*const ()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        replace(self.previous);
    }
}

/// Counts `units` of work (requests served, messages handled, bytes processed: one unit per
/// program) done under the calling thread's current labels. Each profile, and each window of a
/// service, holds the units counted while it was recorded, per label set (`work counted:`
/// comments); `prod compare` divides a window's costs by them (`--denominator work`, and `auto`
/// when the windows counted it), so that a function is judged by its cost per unit of work
/// whatever the load. One relaxed atomic add (nothing when no agent runs); count where the work
/// ends, once per unit.
pub fn count_work(units: u64) {
    if let Some(b) = backend() {
        b.count_work(KEEP, units);
    }
}

/// Runs `f` with `pairs` added to the calling thread's labels.
pub fn with<R>(pairs: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    if backend().is_none() {
        return f();
    }
    let _guard = set(pairs);
    f()
}

/// Adds `pairs` to the calling thread's labels until the guard is dropped.
pub fn set(pairs: &[(&str, &str)]) -> Guard {
    LabelSet::current().and(pairs).enter()
}

/// Makes `set` the calling thread's label set and returns the one before, for integrations that
/// switch sets in separate enter and exit callbacks and cannot hold a [`Guard`] (the `tracing`
/// layer); every other caller wants [`LabelSet::enter`].
pub fn replace(set: LabelSet) -> LabelSet {
    match backend() {
        None => LabelSet::EMPTY,
        Some(b) => LabelSet(b.swap(set.0)),
    }
}

/// What a thread's samples are tagged with: its label set and the span and trace it is in.
///
/// The ids are not interned: every value costs the same, so they may be unique per request. They
/// go with CPU, wall and thread samples (as the `span_id` and `trace_id` labels, 16 and 32 hex
/// digits as W3C trace context writes them); allocation and wait totals, which are aggregated per
/// stack, carry the label set only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Context {
    /// The label set.
    pub labels: LabelSet,
    /// The span (0: none).
    pub span_id: u64,
    /// The trace (0: none).
    pub trace_id: u128,
}

/// Makes `context` the calling thread's and returns the one before (see [`replace`]). With a
/// preloaded agent older than this call, only the label set changes.
pub fn replace_context(context: Context) -> Context {
    match backend() {
        None => Context::default(),
        Some(b) => b.swap_context(context),
    }
}

/// Whether an agent receives labels (one load once resolved). Never turns false again once true:
/// the preloaded agent is found once, a linked one counts from its first start on.
pub fn active() -> bool {
    backend().is_some()
}

/// One pair as the preloaded library's entry points take it.
#[doc(hidden)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawPair {
    /// UTF-8 bytes of the key.
    pub key: *const u8,
    /// Length of the key.
    pub key_len: usize,
    /// UTF-8 bytes of the value.
    pub value: *const u8,
    /// Length of the value.
    pub value_len: usize,
}

/// `contprof_labels_intern_v1(parent, pairs, n) -> id`.
type InternFn = unsafe extern "C" fn(u32, *const RawPair, usize) -> u32;
/// `contprof_labels_swap_v1(id) -> previous id`; [`KEEP`] reads the current id without changing it.
type SwapFn = extern "C" fn(u32) -> u32;
/// `contprof_labels_swap_context_v1(new, old)`.
type SwapContextFn = unsafe extern "C" fn(*const RawContext, *mut RawContext);
/// `contprof_labels_count_work_v1(set, units)`; [`KEEP`] counts under the calling thread's set.
type CountWorkFn = extern "C" fn(u32, u64);

/// A [`Context`] as the preloaded library's entry point takes it.
#[doc(hidden)]
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RawContext {
    /// The label set's id.
    pub set: u32,
    /// Zero.
    pub pad: u32,
    /// The span id.
    pub span_id: u64,
    /// The trace id's high and low words.
    pub trace_id: [u64; 2],
}

impl From<Context> for RawContext {
    fn from(c: Context) -> Self {
        Self {
            set: c.labels.0,
            pad: 0,
            span_id: c.span_id,
            trace_id: [(c.trace_id >> 64) as u64, c.trace_id as u64],
        }
    }
}

impl From<RawContext> for Context {
    fn from(r: RawContext) -> Self {
        Self {
            labels: LabelSet(r.set),
            span_id: r.span_id,
            trace_id: (u128::from(r.trace_id[0]) << 64) | u128::from(r.trace_id[1]),
        }
    }
}

/// The exported names of the preloaded library's entry points (the `_v1` suffix is their
/// contract's version: a change of meaning gets a new name).
#[doc(hidden)]
pub const INTERN_SYMBOL: &core::ffi::CStr = c"contprof_labels_intern_v1";
#[doc(hidden)]
pub const SWAP_SYMBOL: &core::ffi::CStr = c"contprof_labels_swap_v1";
#[doc(hidden)]
pub const SWAP_CONTEXT_SYMBOL: &core::ffi::CStr = c"contprof_labels_swap_context_v1";
#[doc(hidden)]
pub const COUNT_WORK_SYMBOL: &core::ffi::CStr = c"contprof_labels_count_work_v1";

/// The id that [`exported::swap`] takes to mean "leave the set as it is" (no set has it: ids are
/// below [`MAX_SETS`]).
#[doc(hidden)]
pub const KEEP: u32 = u32::MAX;

const UNRESOLVED: u8 = 0;
const LOCAL: u8 = 1;
const PRELOADED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
static INTERN: AtomicUsize = AtomicUsize::new(0);
static SWAP: AtomicUsize = AtomicUsize::new(0);
static SWAP_CONTEXT: AtomicUsize = AtomicUsize::new(0);
static COUNT_WORK: AtomicUsize = AtomicUsize::new(0);
/// The agent of this copy of the crate has been started in this process (labels set before
/// that are not kept; labels outlive a stop, for the next window).
static LOCAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Called when this copy's agent starts.
#[cfg_attr(
    not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))),
    allow(dead_code)
)]
pub(crate) fn local_agent_started() {
    LOCAL_STARTED.store(true, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
enum Backend {
    Local,
    Preloaded,
}

#[inline]
fn backend() -> Option<Backend> {
    match STATE.load(Ordering::Acquire) {
        LOCAL => LOCAL_STARTED.load(Ordering::Relaxed).then_some(Backend::Local),
        PRELOADED => Some(Backend::Preloaded),
        _ => resolve(),
    }
}

#[cold]
fn resolve() -> Option<Backend> {
    let [intern, swap, context, count_work] = lookup();
    if intern != 0 && swap != 0 {
        SWAP_CONTEXT.store(context, Ordering::Relaxed);
        COUNT_WORK.store(count_work, Ordering::Relaxed);
        INTERN.store(intern, Ordering::Relaxed);
        SWAP.store(swap, Ordering::Relaxed);
        STATE.store(PRELOADED, Ordering::Release);
    } else {
        STATE.store(LOCAL, Ordering::Release);
    }
    match STATE.load(Ordering::Acquire) {
        PRELOADED => Some(Backend::Preloaded),
        _ => LOCAL_STARTED.load(Ordering::Relaxed).then_some(Backend::Local),
    }
}

/// The preloaded library's entry points, if the process has them (never this copy's own: the
/// preload library's copy of the crate calls its agent directly).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
fn lookup() -> [usize; 4] {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` and NUL-terminated names; the results are only used as
    // functions of the documented signatures, which the preload library exports under these
    // versioned names.
    [INTERN_SYMBOL, SWAP_SYMBOL, SWAP_CONTEXT_SYMBOL, COUNT_WORK_SYMBOL]
        .map(|name| unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize })
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn lookup() -> [usize; 4] {
    [0; 4]
}

impl Backend {
    fn intern(self, parent: u32, pairs: &[(&str, &str)]) -> u32 {
        match self {
            Backend::Local => intern::intern(parent, pairs.iter().copied()),
            Backend::Preloaded => {
                // SAFETY: stored only by `resolve`, from `dlsym` of `INTERN_SYMBOL`.
                let f: InternFn =
                    unsafe { core::mem::transmute::<usize, InternFn>(INTERN.load(Ordering::Relaxed)) };
                let mut id = parent;
                for chunk in pairs.chunks(MAX_PAIRS) {
                    let mut raw = [RawPair {
                        key: core::ptr::null(),
                        key_len: 0,
                        value: core::ptr::null(),
                        value_len: 0,
                    }; MAX_PAIRS];
                    for (r, (k, v)) in raw.iter_mut().zip(chunk) {
                        *r = RawPair {
                            key: k.as_ptr(),
                            key_len: k.len(),
                            value: v.as_ptr(),
                            value_len: v.len(),
                        };
                    }
                    // SAFETY: `raw[..chunk.len()]` are valid UTF-8 slices that outlive the call.
                    id = unsafe { f(id, raw.as_ptr(), chunk.len()) };
                }
                id
            }
        }
    }

    fn swap_context(self, context: Context) -> Context {
        match self {
            Backend::Local => local_swap_context(context.into()).into(),
            Backend::Preloaded => match SWAP_CONTEXT.load(Ordering::Relaxed) {
                0 => Context { labels: LabelSet(self.swap(context.labels.0)), ..Context::default() },
                f => {
                    // SAFETY: stored only by `resolve`, from `dlsym` of `SWAP_CONTEXT_SYMBOL`.
                    let f = unsafe { core::mem::transmute::<usize, SwapContextFn>(f) };
                    let new = RawContext::from(context);
                    let mut old = RawContext::default();
                    // SAFETY: two valid pointers for the duration of the call.
                    unsafe { f(&new, &mut old) };
                    old.into()
                }
            },
        }
    }

    /// Counts `units` under set `set` ([`KEEP`]: the calling thread's). A preloaded library older
    /// than this entry point counts nothing.
    fn count_work(self, set: u32, units: u64) {
        match self {
            Backend::Local => local_count_work(set, units),
            Backend::Preloaded => {
                if let f @ 1.. = COUNT_WORK.load(Ordering::Relaxed) {
                    // SAFETY: stored only by `resolve`, from `dlsym` of `COUNT_WORK_SYMBOL`.
                    let f = unsafe { core::mem::transmute::<usize, CountWorkFn>(f) };
                    f(set, units);
                }
            }
        }
    }

    #[inline]
    fn swap(self, id: u32) -> u32 {
        match self {
            Backend::Local => local_swap(id),
            Backend::Preloaded => {
                // SAFETY: stored only by `resolve`, from `dlsym` of `SWAP_SYMBOL`.
                let f: SwapFn =
                    unsafe { core::mem::transmute::<usize, SwapFn>(SWAP.load(Ordering::Relaxed)) };
                f(id)
            }
        }
    }
}

/// Counts `units` of work under set `set` ([`KEEP`]: the calling thread's) in this copy's agent.
fn local_count_work(set: u32, units: u64) {
    work::count(if set == KEEP { local_swap(KEEP) } else { set }, units);
}

/// Sets the calling thread's label set in this copy's thread state; returns the one before.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline]
fn local_swap(id: u32) -> u32 {
    let t = crate::thread::current();
    // Only this thread writes it; its signal handler reads it: plain load and store.
    let previous = t.labels.load(Ordering::Relaxed);
    if id != KEEP {
        t.labels.store(id, Ordering::Relaxed);
        publish(t, id);
    }
    previous
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn local_swap(_: u32) -> u32 {
    0
}

/// Sets the calling thread's label set and trace ids; returns the ones before. The signal handler
/// of this thread, which may run between any two of the stores, sees the set as
/// [`KEEP`] while the ids change, and then takes neither (see `ThreadState::label_context`).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
fn local_swap_context(new: RawContext) -> RawContext {
    use core::sync::atomic::compiler_fence;
    let t = crate::thread::current();
    let set = t.labels.load(Ordering::Relaxed);
    let old = [0, 1, 2].map(|i| t.trace[i].load(Ordering::Relaxed));
    t.labels.store(KEEP, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    for (slot, v) in t.trace.iter().zip([new.span_id, new.trace_id[0], new.trace_id[1]]) {
        slot.store(v, Ordering::Relaxed);
    }
    compiler_fence(Ordering::SeqCst);
    t.labels.store(new.set, Ordering::Relaxed);
    publish(t, new.set);
    RawContext { set, pad: 0, span_id: old[0], trace_id: [old[1], old[2]] }
}

/// Copies the calling thread's set and ids to its slot again (after its slot was forgotten).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn republish(t: &crate::thread::ThreadState) {
    publish(t, t.label_set());
}

/// Copies the thread's set and ids to its slot for the samplers that read blocked threads from
/// outside ([`slots`]), taking one on the first labels.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline]
fn publish(t: &crate::thread::ThreadState, set: u32) {
    let mut slot = t.label_slot.load(Ordering::Relaxed);
    if slot == 0 {
        if set == 0 {
            return;
        }
        slot = slots::claim(t.tid()).unwrap_or(u32::MAX);
        t.label_slot.store(slot, Ordering::Relaxed);
    }
    if slot != u32::MAX {
        slots::publish(slot, set, [0, 1, 2].map(|i| t.trace[i].load(Ordering::Relaxed)));
    }
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn local_swap_context(_: RawContext) -> RawContext {
    RawContext::default()
}

/// The preload library's side: its exported entry points call these, in its own copy of the
/// crate, whose agent is the one running.
#[doc(hidden)]
pub mod exported {
    use super::{RawPair, intern};

    /// Interns `parent` plus the `n` pairs at `pairs`; pairs that are not UTF-8 are skipped.
    ///
    /// # Safety
    /// `pairs` points to `n` pairs whose pointers and lengths describe readable memory.
    pub unsafe fn intern(parent: u32, pairs: *const RawPair, n: usize) -> u32 {
        if pairs.is_null() || n == 0 {
            return parent;
        }
        // SAFETY: the caller's contract.
        let raw = unsafe { core::slice::from_raw_parts(pairs, n) };
        let text = |p: *const u8, len: usize| -> Option<&str> {
            if p.is_null() {
                return (len == 0).then_some("");
            }
            // SAFETY: the caller's contract.
            core::str::from_utf8(unsafe { core::slice::from_raw_parts(p, len) }).ok()
        };
        intern::intern(
            parent,
            raw.iter().filter_map(|r| Some((text(r.key, r.key_len)?, text(r.value, r.value_len)?))),
        )
    }

    /// Sets the calling thread's label set and trace ids from `new`; the ones before go to `old`.
    ///
    /// # Safety
    /// `new` and `old` are valid for reads and writes of a `RawContext`.
    pub unsafe fn swap_context(new: *const super::RawContext, old: *mut super::RawContext) {
        if new.is_null() || old.is_null() {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { *old = super::local_swap_context(*new) };
    }

    /// Sets the calling thread's label set ([`super::KEEP`]: leaves it); returns the one before.
    #[inline]
    pub fn swap(id: u32) -> u32 {
        super::local_swap(id)
    }

    /// Counts `units` of work under set `set` ([`super::KEEP`]: the calling thread's).
    pub fn count_work(set: u32, units: u64) {
        super::local_count_work(set, units);
    }
}
