//! Allocation and contention tables that live outside the heap they observe.
//!
//! Owns two open-addressing hash tables in anonymous mappings (pages appear on first touch):
//! the stack table (one entry per distinct call stack, frames kept in a separate arena, with
//! allocated and in-use totals, and the waits recorded at that stack by `contention`) and the live table (sampled pointers still allocated, with the
//! stack and weights they were recorded with). Both are guarded by one spinlock: this is
//! malloc context, never signal context (the CPU handler never comes here). A full table
//! degrades instead of failing: stacks merge into one "dropped" bucket, pointers go untracked.
//!
//! `free` of an untracked pointer must stay cheap, so the live table can be probed without the
//! lock: entries are only moved (backward-shift deletion) under a sequence counter, and a probe
//! that overlaps a move retries under the lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::format::MAX_FRAMES;
use crate::sys::Mapping;

const STACKS: usize = 1 << 16;
const ARENA_FRAMES: usize = 1 << 22;
/// Live pointers the table can hold: mapped in full once, used up to [`Store::init`]'s capacity.
const LIVE: usize = 1 << 20;
/// The live table's capacity in the exact mode, which tracks every live allocation.
pub(crate) const LIVE_EXACT: usize = LIVE;
/// The capacity in the sampled modes, which track about one live pointer per sampling interval of
/// heap (48 Ki pointers at 3/4: 24 GiB of heap at the default 512 KiB): a small table keeps the
/// probes of `record` and `forget` in the caches.
pub(crate) const LIVE_SAMPLED: usize = 1 << 16;
/// Index of the bucket that collects stacks that did not fit.
pub(crate) const DROPPED_STACK: u32 = u32::MAX;

#[repr(C)]
struct StackEntry {
    /// 0 = empty.
    hash: u64,
    offset: u32,
    nframes: u32,
    /// The label set the stack's allocations and waits were recorded under (part of the key).
    labels: u32,
    _pad: u32,
    count: f64,
    bytes: f64,
    inuse_count: f64,
    inuse_bytes: f64,
    /// `count` and `bytes` when the current window began ([`Store::mark_window`]).
    base_count: f64,
    base_bytes: f64,
    /// Estimated waits and nanoseconds waited at this stack (`contention`).
    waits: f64,
    wait_ns: f64,
}

#[repr(C)]
struct LiveEntry {
    /// 0 = empty.
    ptr: AtomicUsize,
    stack: u32,
    _pad: u32,
    count: f64,
    bytes: f64,
}

/// Totals of one stack, for the writer.
pub(crate) struct StackTotals<'a> {
    pub(crate) frames: &'a [u64],
    /// The label set (0: none).
    pub(crate) labels: u32,
    pub(crate) counts: [u64; 4],
    /// Waits and nanoseconds waited.
    pub(crate) waits: [u64; 2],
}

struct Tables {
    stacks: *mut StackEntry,
    arena: *mut u64,
    arena_used: usize,
    stacks_used: usize,
    dropped: [f64; 4],
    /// The dropped bucket's allocated count and bytes when the current window began.
    dropped_base: [f64; 2],
    /// The dropped bucket's waits and nanoseconds waited.
    dropped_waits: [f64; 2],
    live: *mut LiveEntry,
    live_used: usize,
}

/// The tables and their lock.
pub(crate) struct Store {
    lock: AtomicBool,
    ready: AtomicBool,
    /// Odd while live entries move; see the module doc.
    seq: AtomicU64,
    /// Live pointers tracked (frees skip the probe when 0).
    tracked: AtomicUsize,
    /// The live table's capacity in use (a power of two, at most [`LIVE`]).
    live_cap: AtomicUsize,
    live: AtomicUsize,
    /// Stacks merged into the dropped bucket.
    pub(crate) stacks_dropped: AtomicU64,
    /// Pointers not tracked because the live table was full.
    pub(crate) live_dropped: AtomicU64,
    inner: UnsafeCell<Tables>,
}

// SAFETY: `inner` is only accessed with `lock` held (see `Guard`); the fields read without the
// lock (`live` entries' `ptr`) are atomics.
unsafe impl Sync for Store {}

/// The process-wide store.
pub(crate) static STORE: Store = Store::new();

impl Store {
    const fn new() -> Store {
        Store {
            lock: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            tracked: AtomicUsize::new(0),
            live_cap: AtomicUsize::new(LIVE_SAMPLED),
            live: AtomicUsize::new(0),
            stacks_dropped: AtomicU64::new(0),
            live_dropped: AtomicU64::new(0),
            inner: UnsafeCell::new(Tables {
                stacks: core::ptr::null_mut(),
                arena: core::ptr::null_mut(),
                arena_used: 0,
                stacks_used: 0,
                dropped: [0.0; 4],
                dropped_base: [0.0; 2],
                dropped_waits: [0.0; 2],
                live: core::ptr::null_mut(),
                live_used: 0,
            }),
        }
    }
}

fn hash_frames(frames: &[u64], labels: u32) -> u64 {
    let mut h = (0xcbf2_9ce4_8422_2325u64 ^ frames.len() as u64).wrapping_add(u64::from(labels) << 32);
    for &f in frames {
        h = (h ^ f).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h | 1
}

fn hash_ptr(p: usize) -> usize {
    ((p as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize
}

/// Slots of the counting filter in front of the live table.
const FILTER_SLOTS: usize = 1 << 14;

/// A counting filter over tracked pointers (16 KiB, stays in the L1 cache): `free` of an untracked
/// pointer, the common case, is answered here without touching the large live table, whose
/// random probes would cost a cache miss on every free. Counts saturate at 255 and then stay
/// (conservatively "maybe tracked").
static PTR_FILTER: [AtomicU8; FILTER_SLOTS] = [const { AtomicU8::new(0) }; FILTER_SLOTS];

fn filter_slot(p: usize) -> &'static AtomicU8 {
    &PTR_FILTER[((p as u64 >> 4).wrapping_mul(0xd6e8_feb8_6659_fd93) >> 50) as usize]
}

/// Counts `p` in (under the table lock, so plain load/store suffice).
fn filter_add(p: usize) {
    let slot = filter_slot(p);
    let v = slot.load(Ordering::Relaxed);
    if v < u8::MAX {
        slot.store(v + 1, Ordering::Release);
    }
}

/// Counts `p` out (under the table lock); a saturated slot is never decremented.
fn filter_remove(p: usize) {
    let slot = filter_slot(p);
    let v = slot.load(Ordering::Relaxed);
    if v > 0 && v < u8::MAX {
        slot.store(v - 1, Ordering::Release);
    }
}

/// The lock, held: gives access to the tables.
pub(crate) struct Guard<'a>(&'a Store);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

impl Store {
    /// Maps the tables (once; later calls clear them) and sets the live table's capacity
    /// ([`LIVE_EXACT`] or [`LIVE_SAMPLED`]). Not for concurrent use with recording.
    pub(crate) fn init(&self, live_cap: usize) -> bool {
        self.live_cap.store(live_cap.next_power_of_two().clamp(1024, LIVE), Ordering::Release);
        if !self.ready.load(Ordering::Acquire) {
            let (Some(s), Some(a), Some(l)) = (
                Mapping::new(STACKS * core::mem::size_of::<StackEntry>()),
                Mapping::new(ARENA_FRAMES * 8),
                Mapping::new(LIVE * core::mem::size_of::<LiveEntry>()),
            ) else {
                return false;
            };
            let Some(g) = self.lock(u32::MAX) else { return false };
            // SAFETY: lock held; the mappings are leaked, so they live for the process.
            let t = unsafe { &mut *g.0.inner.get() };
            t.stacks = s.leak().cast();
            t.arena = a.leak().cast();
            t.live = l.leak().cast();
            self.live.store(t.live as usize, Ordering::Release);
            self.ready.store(true, Ordering::Release);
        } else if let Some(g) = self.lock(u32::MAX) {
            // SAFETY: lock held; the tables are mapped (`ready`).
            let t = unsafe { &mut *g.0.inner.get() };
            // Dropping the pages (instead of writing zeros over them) both clears the tables,
            // since a private anonymous page reads as zeros when next touched, and gives their
            // memory back: a restarted agent does not keep the previous run's 35 MiB resident.
            for (ptr, len) in [
                (t.stacks.cast::<u8>(), STACKS * core::mem::size_of::<StackEntry>()),
                (t.arena.cast::<u8>(), ARENA_FRAMES * 8),
                (t.live.cast::<u8>(), LIVE * core::mem::size_of::<LiveEntry>()),
            ] {
                // SAFETY: each region is one whole private anonymous mapping of `len` bytes made
                // in the first `init`; zero is the empty state of every entry.
                if unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) } != 0 {
                    // SAFETY: as above; the fallback writes the zeros itself.
                    unsafe { core::ptr::write_bytes(ptr, 0, len) };
                }
            }
            (t.arena_used, t.stacks_used, t.live_used, t.dropped, t.dropped_base, t.dropped_waits) =
                (0, 0, 0, [0.0; 4], [0.0; 2], [0.0; 2]);
            for slot in &PTR_FILTER {
                slot.store(0, Ordering::Relaxed);
            }
            self.tracked.store(0, Ordering::Release);
        }
        true
    }

    /// In a forked child: releases the lock, which only a thread of the parent can hold (the
    /// thread that forked was not inside the agent). Async-signal-safe.
    pub(crate) fn unlock_in_child(&self) {
        self.lock.store(false, Ordering::Release);
    }

    /// Takes the lock, spinning at most `max_spins` rounds (`None` if it stayed taken).
    pub(crate) fn lock(&self, max_spins: u32) -> Option<Guard<'_>> {
        let mut spins = 0u32;
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins >= max_spins {
                return None;
            }
            if spins.is_multiple_of(64) {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            } else {
                core::hint::spin_loop();
            }
        }
        Some(Guard(self))
    }

    /// Adds one recorded allocation of `frames` with the given weights and, if `ptr` is not
    /// null, tracks it as live.
    pub(crate) fn record(&self, frames: &[u64], labels: u32, count: f64, bytes: f64, ptr: usize) {
        if !self.ready.load(Ordering::Acquire) {
            return;
        }
        let Some(g) = self.lock(u32::MAX) else { return };
        // SAFETY: lock held.
        let t = unsafe { &mut *g.0.inner.get() };
        let stack = self.find_or_insert(t, frames, labels);
        match stack_entry(t, stack) {
            Some(e) => {
                e.count += count;
                e.bytes += bytes;
            }
            None => {
                t.dropped[0] += count;
                t.dropped[1] += bytes;
            }
        }
        if ptr == 0 {
            return;
        }
        let cap = self.live_cap.load(Ordering::Relaxed);
        if t.live_used * 4 >= cap * 3 {
            self.live_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut i = hash_ptr(ptr) & (cap - 1);
        loop {
            // SAFETY: `i < cap <= LIVE`, the live table is mapped.
            let e = unsafe { &mut *t.live.add(i) };
            if e.ptr.load(Ordering::Relaxed) == 0 {
                (e.stack, e.count, e.bytes) = (stack, count, bytes);
                filter_add(ptr);
                e.ptr.store(ptr, Ordering::Release);
                break;
            }
            i = (i + 1) & (cap - 1);
        }
        t.live_used += 1;
        self.tracked.fetch_add(1, Ordering::Release);
        match stack_entry(t, stack) {
            Some(e) => {
                e.inuse_count += count;
                e.inuse_bytes += bytes;
            }
            None => {
                t.dropped[2] += count;
                t.dropped[3] += bytes;
            }
        }
    }

    /// Adds `waits` waits of `ns` nanoseconds in all at `frames` (see `contention`).
    pub(crate) fn record_wait(&self, frames: &[u64], labels: u32, waits: f64, ns: f64) {
        if !self.ready.load(Ordering::Acquire) {
            return;
        }
        let Some(g) = self.lock(u32::MAX) else { return };
        // SAFETY: lock held.
        let t = unsafe { &mut *g.0.inner.get() };
        let stack = self.find_or_insert(t, frames, labels);
        match stack_entry(t, stack) {
            Some(e) => {
                e.waits += waits;
                e.wait_ns += ns;
            }
            None => {
                t.dropped_waits[0] += waits;
                t.dropped_waits[1] += ns;
            }
        }
    }

    fn find_or_insert(&self, t: &mut Tables, frames: &[u64], labels: u32) -> u32 {
        let frames = &frames[..frames.len().min(MAX_FRAMES)];
        let h = hash_frames(frames, labels);
        let mut i = h as usize % STACKS;
        loop {
            // SAFETY: `i < STACKS`, the stack table is mapped.
            let e = unsafe { &*t.stacks.add(i) };
            if e.hash == 0 {
                break;
            }
            if e.hash == h
                && e.labels == labels
                && e.nframes as usize == frames.len()
                && arena(t, e.offset, e.nframes) == frames
            {
                return i as u32;
            }
            i = (i + 1) % STACKS;
        }
        let id = insert_new(t, h, frames, labels);
        if id == DROPPED_STACK {
            self.stacks_dropped.fetch_add(1, Ordering::Relaxed);
        }
        id
    }

    /// Whether `ptr` may be tracked: false when nothing is, or when the counting filter has no
    /// entry for it. No lock, no thread state.
    #[inline(always)]
    pub(crate) fn may_track(&self, ptr: usize) -> bool {
        self.tracked.load(Ordering::Acquire) != 0 && filter_slot(ptr).load(Ordering::Acquire) != 0
    }

    /// Forgets `ptr` if it is tracked (it is being freed). Cheap when it is not.
    #[inline]
    pub(crate) fn forget(&self, ptr: usize) {
        if ptr == 0 || self.tracked.load(Ordering::Acquire) == 0 || !self.maybe_tracked(ptr) {
            return;
        }
        let Some(g) = self.lock(u32::MAX) else { return };
        // SAFETY: lock held.
        let t = unsafe { &mut *g.0.inner.get() };
        let cap = self.live_cap.load(Ordering::Relaxed);
        let mut i = hash_ptr(ptr) & (cap - 1);
        loop {
            // SAFETY: `i < cap <= LIVE`.
            let e = unsafe { &mut *t.live.add(i) };
            match e.ptr.load(Ordering::Relaxed) {
                0 => return,
                p if p == ptr => break,
                _ => i = (i + 1) & (cap - 1),
            }
        }
        // SAFETY: `i < LIVE`.
        let (stack, count, bytes) = unsafe {
            let e = &*t.live.add(i);
            (e.stack, e.count, e.bytes)
        };
        match stack_entry(t, stack) {
            Some(e) => {
                e.inuse_count -= count;
                e.inuse_bytes -= bytes;
            }
            None => {
                t.dropped[2] -= count;
                t.dropped[3] -= bytes;
            }
        }
        self.seq.fetch_add(1, Ordering::AcqRel);
        remove_shift(t, i, cap);
        self.seq.fetch_add(1, Ordering::Release);
        filter_remove(ptr);
        t.live_used -= 1;
        self.tracked.fetch_sub(1, Ordering::Release);
    }

    /// Lock-free probe: false only if `ptr` is certainly not tracked.
    fn maybe_tracked(&self, ptr: usize) -> bool {
        if filter_slot(ptr).load(Ordering::Acquire) == 0 {
            return false;
        }
        let live = self.live.load(Ordering::Acquire) as *const LiveEntry;
        if live.is_null() {
            return false;
        }
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return true;
        }
        let cap = self.live_cap.load(Ordering::Acquire);
        let mut i = hash_ptr(ptr) & (cap - 1);
        let found = loop {
            // SAFETY: `i < cap <= LIVE` and the table stays mapped for the process; `ptr` is atomic.
            let p = unsafe { (*live.add(i)).ptr.load(Ordering::Acquire) };
            if p == ptr {
                break true;
            }
            if p == 0 {
                break false;
            }
            i = (i + 1) & (cap - 1);
        };
        found || self.seq.load(Ordering::Acquire) != before
    }

    /// Whether the tables are mapped (by a first [`Store::init`]).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Begins a window of the continuous mode: allocations and waits counted from now on are the
    /// window's, while live allocations (and their stacks) stay tracked across windows. A no-op when the
    /// tables are not mapped; false if the lock could not be taken.
    ///
    /// A service runs for weeks and keeps reaching new code: once the stack table or its arena is
    /// half full, the stacks that no live allocation holds (they carry nothing into the new window)
    /// are dropped, so that new stacks always find room ([`compact`]).
    pub(crate) fn mark_window(&self) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        let Some(g) = self.lock(1_000_000) else { return false };
        // SAFETY: lock held.
        let t = unsafe { &mut *g.0.inner.get() };
        if t.stacks_used * 2 >= STACKS || t.arena_used * 2 >= ARENA_FRAMES {
            compact(t);
        }
        t.dropped_base = [t.dropped[0], t.dropped[1]];
        t.dropped_waits = [0.0; 2];
        for i in 0..STACKS {
            // SAFETY: `i < STACKS`.
            let e = unsafe { &mut *t.stacks.add(i) };
            if e.hash != 0 {
                (e.base_count, e.base_bytes) = (e.count, e.bytes);
                (e.waits, e.wait_ns) = (0.0, 0.0);
            }
        }
        true
    }

    /// Calls `f` for the dropped bucket and every stack with something to report, with the lock
    /// held (bounded wait: in the abort handler the lock may belong to the interrupted code):
    /// allocations and waits since the last [`Store::mark_window`] (since [`Store::init`] without
    /// one) and what is in use now. False if the lock could not be taken.
    pub(crate) fn for_each_stack(&self, mut f: impl FnMut(StackTotals<'_>)) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        let Some(g) = self.lock(1_000_000) else { return false };
        // SAFETY: lock held.
        let t = unsafe { &*g.0.inner.get() };
        let round = |v: f64| v.max(0.0).round() as u64;
        let d = &t.dropped;
        let dropped = [d[0] - t.dropped_base[0], d[1] - t.dropped_base[1], d[2], d[3]].map(round);
        let waits = t.dropped_waits.map(round);
        if dropped.iter().chain(&waits).any(|&v| v > 0) {
            f(StackTotals { frames: &[], labels: 0, counts: dropped, waits });
        }
        for i in 0..STACKS {
            // SAFETY: `i < STACKS`.
            let e = unsafe { &*t.stacks.add(i) };
            if e.hash != 0 {
                let counts =
                    [e.count - e.base_count, e.bytes - e.base_bytes, e.inuse_count, e.inuse_bytes].map(round);
                let waits = [e.waits, e.wait_ns].map(round);
                if counts.iter().chain(&waits).any(|&v| v > 0) {
                    f(StackTotals { frames: arena(t, e.offset, e.nframes), labels: e.labels, counts, waits });
                }
            }
        }
        true
    }
}

/// Rebuilds the stack table and its arena with only the stacks that live allocations hold (see
/// [`Store::mark_window`]), and points the live entries at their stacks' new places. Lock held.
/// Allocates nothing from the heap: the old tables are copied aside into temporary mappings.
fn compact(t: &mut Tables) {
    let stacks_len = STACKS * core::mem::size_of::<StackEntry>();
    let (Some(old_stacks), Some(old_arena), Some(remap)) = (
        Mapping::new(stacks_len),
        Mapping::new(t.arena_used.max(1) * 8),
        Mapping::new(STACKS * core::mem::size_of::<u32>()),
    ) else {
        return;
    };
    let (old_stacks_ptr, old_arena_ptr, remap_ptr) = (
        old_stacks.ptr_mut().cast::<StackEntry>(),
        old_arena.ptr_mut().cast::<u64>(),
        remap.ptr_mut().cast::<u32>(),
    );
    // SAFETY: both copies have room for what they receive; the tables are mapped and the lock
    // is held, so nothing else reads or writes them meanwhile.
    unsafe {
        core::ptr::copy_nonoverlapping(t.stacks, old_stacks_ptr, STACKS);
        core::ptr::copy_nonoverlapping(t.arena, old_arena_ptr, t.arena_used);
        for (ptr, len) in [(t.stacks.cast::<u8>(), stacks_len), (t.arena.cast::<u8>(), ARENA_FRAMES * 8)] {
            if libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) != 0 {
                core::ptr::write_bytes(ptr, 0, len);
            }
        }
    }
    (t.stacks_used, t.arena_used) = (0, 0);
    for i in 0..STACKS {
        // SAFETY: `i < STACKS`, inside the copy.
        let old = unsafe { &*old_stacks_ptr.add(i) };
        let mut to = DROPPED_STACK;
        if old.hash != 0 && (old.inuse_count > 0.0 || old.inuse_bytes > 0.0) {
            // SAFETY: the frames the old entry pointed to, inside the arena's copy.
            let frames = unsafe {
                core::slice::from_raw_parts(old_arena_ptr.add(old.offset as usize), old.nframes as usize)
            };
            to = insert_new(t, old.hash, frames, old.labels);
            if let Some(e) = stack_entry(t, to) {
                (e.count, e.bytes, e.inuse_count, e.inuse_bytes) =
                    (old.count, old.bytes, old.inuse_count, old.inuse_bytes);
                (e.base_count, e.base_bytes) = (old.count, old.bytes);
            }
        }
        // SAFETY: `i < STACKS`, inside the map.
        unsafe { *remap_ptr.add(i) = to };
    }
    for i in 0..LIVE {
        // SAFETY: `i < LIVE`, the live table is mapped (entries past the capacity in use are empty).
        let e = unsafe { &mut *t.live.add(i) };
        if e.ptr.load(Ordering::Relaxed) != 0 && e.stack != DROPPED_STACK {
            // SAFETY: live entries hold stack ids below `STACKS` (or the dropped bucket).
            e.stack = unsafe { *remap_ptr.add(e.stack as usize) };
        }
    }
}

/// Inserts a stack known not to be in the (freshly cleared) table; its id, or
/// [`DROPPED_STACK`] if there is no room.
fn insert_new(t: &mut Tables, hash: u64, frames: &[u64], labels: u32) -> u32 {
    if t.stacks_used * 4 >= STACKS * 3 || t.arena_used + frames.len() > ARENA_FRAMES {
        return DROPPED_STACK;
    }
    let mut i = hash as usize % STACKS;
    // SAFETY: `i < STACKS`; the table is not full (checked above), so an empty entry exists.
    while unsafe { (*t.stacks.add(i)).hash } != 0 {
        i = (i + 1) % STACKS;
    }
    // SAFETY: the arena has room for `frames` (checked above).
    unsafe { core::ptr::copy_nonoverlapping(frames.as_ptr(), t.arena.add(t.arena_used), frames.len()) };
    // SAFETY: `i < STACKS`.
    let e = unsafe { &mut *t.stacks.add(i) };
    (e.hash, e.offset, e.nframes, e.labels) = (hash, t.arena_used as u32, frames.len() as u32, labels);
    t.arena_used += frames.len();
    t.stacks_used += 1;
    i as u32
}

fn stack_entry(t: &mut Tables, stack: u32) -> Option<&mut StackEntry> {
    // SAFETY: stack ids other than `DROPPED_STACK` are indices below `STACKS`.
    (stack != DROPPED_STACK).then(|| unsafe { &mut *t.stacks.add(stack as usize) })
}

fn arena(t: &Tables, offset: u32, n: u32) -> &[u64] {
    // SAFETY: `offset..offset+n` was written by `find_or_insert` and is never rewritten while
    // the entry exists.
    unsafe { core::slice::from_raw_parts(t.arena.add(offset as usize), n as usize) }
}

/// Backward-shift deletion for linear probing (in a table of `cap` entries): keeps every chain
/// unbroken without tombstones.
fn remove_shift(t: &mut Tables, mut hole: usize, cap: usize) {
    let mut j = hole;
    loop {
        j = (j + 1) & (cap - 1);
        // SAFETY: `j < cap <= LIVE`.
        let (p, stack, count, bytes) = unsafe {
            let e = &*t.live.add(j);
            (e.ptr.load(Ordering::Relaxed), e.stack, e.count, e.bytes)
        };
        if p == 0 {
            break;
        }
        let home = hash_ptr(p) & (cap - 1);
        // Move `j` into the hole unless its home lies cyclically in (hole, j].
        let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
        if stays {
            continue;
        }
        // SAFETY: `hole < LIVE`.
        let h = unsafe { &mut *t.live.add(hole) };
        (h.stack, h.count, h.bytes) = (stack, count, bytes);
        h.ptr.store(p, Ordering::Release);
        hole = j;
    }
    // SAFETY: `hole < LIVE`.
    unsafe { (*t.live.add(hole)).ptr.store(0, Ordering::Release) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression test: a service that made more distinct stacks over its life than the table
    /// holds, and freed their allocations, then allocated from a new site: that site was merged
    /// into the frameless "dropped" bucket forever. Windows now drop the stacks no live
    /// allocation holds.
    #[test]
    fn stacks_without_live_allocations_make_room_at_a_window() {
        let store = Box::leak(Box::new(Store::new()));
        assert!(store.init(LIVE_SAMPLED));
        let frames = |k: u64| [0x1000 + k, 0x2000, 0x3000];
        // More stacks than the table holds, each with a live pointer; one stays allocated.
        for k in 0..(STACKS as u64 + 1000) {
            store.record(&frames(k), 0, 1.0, 64.0, 0x10_0000 + 16 * k as usize);
        }
        assert!(store.stacks_dropped.load(Ordering::Relaxed) > 0, "the table filled up");
        for k in 1..(STACKS as u64 + 1000) {
            store.forget(0x10_0000 + 16 * k as usize);
        }
        assert!(store.mark_window());
        store.record(&[0xdead, 0xbeef], 0, 1.0, 4096.0, 0x90_0000);
        let mut seen = Vec::new();
        assert!(store.for_each_stack(|s| seen.push((s.frames.to_vec(), s.counts))));
        let new = seen.iter().find(|(f, _)| f == &[0xdead, 0xbeef]).expect("the new stack has its own entry");
        assert_eq!(new.1, [1, 4096, 1, 4096]);
        // The stack still holding a live allocation kept its in-use figures, and the pointer its
        // stack: freeing it empties that stack.
        let kept = seen.iter().find(|(f, _)| f == &frames(0)).expect("the live allocation's stack stays");
        assert_eq!(kept.1[2..], [1, 64]);
        store.forget(0x10_0000);
        let mut after = Vec::new();
        assert!(store.for_each_stack(|s| after.push((s.frames.to_vec(), s.counts))));
        assert!(after.iter().all(|(f, c)| f != &frames(0) || c[2..] == [0, 0]), "{after:?}");
    }

    #[test]
    fn hashes_distinguish_order_and_length() {
        assert_ne!(hash_frames(&[1, 2], 0), hash_frames(&[2, 1], 0));
        assert_ne!(hash_frames(&[1], 0), hash_frames(&[1, 0], 0));
        assert_ne!(hash_frames(&[1], 0), hash_frames(&[1], 1));
        assert_eq!(hash_frames(&[], 0) & 1, 1);
    }

    /// The same stack under two label sets is two entries, each keeping its allocations, waits
    /// and the in-use bytes of its live pointers, across a window's compaction too.
    #[test]
    fn label_sets_keep_their_own_totals() {
        let store = Box::leak(Box::new(Store::new()));
        assert!(store.init(LIVE_SAMPLED));
        let frames = [0x1000, 0x2000];
        store.record(&frames, 0, 1.0, 100.0, 0);
        store.record(&frames, 7, 2.0, 300.0, 0x50_0000);
        store.record_wait(&frames, 7, 1.0, 5000.0);
        assert!(store.mark_window());
        store.record(&frames, 7, 1.0, 10.0, 0);
        let mut seen = Vec::new();
        assert!(store.for_each_stack(|s| seen.push((s.labels, s.counts, s.waits))));
        seen.sort_by_key(|s| s.0);
        assert_eq!(seen, [(7, [1, 10, 2, 300], [0, 0])]);
    }
}
