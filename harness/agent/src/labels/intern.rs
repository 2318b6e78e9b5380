//! The interned label sets: an append-only, bounded table in static memory.
//!
//! A label set is stored once, in a canonical encoding (pairs sorted by key, one value per key),
//! and named by a small id (`u32`, 0 = the empty set); the thread state holds the id, so the
//! signal handler reads a thread's labels with one load and the raw file carries them as a
//! number. Sets are never removed or changed: an id stays valid for the life of the process,
//! across the windows of the continuous mode, and the bytes of a published set can be read
//! without a lock.
//!
//! Lookups take no lock (a set in use is found by hashing its encoding and probing an index of
//! ids); only a new set takes the insertion lock. Nothing allocates: the encoding is built in a
//! stack buffer, the table lives in `.bss` (its pages are only touched as it fills). When the
//! table or its byte arena is full a new set is not stored: its id is 0 (no labels) and
//! [`dropped`] counts it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Most label sets the table holds (ids `1..MAX_SETS`).
pub const MAX_SETS: usize = 1 << 14;
/// Bytes of encoded sets the table holds.
const ARENA: usize = 1 << 20;
/// Slots of the lookup index (twice the sets: probes stay short).
const INDEX: usize = MAX_SETS * 2;
/// Longest key kept, in bytes; a longer one is cut (at a character boundary).
pub const MAX_KEY: usize = 64;
/// Longest value kept, in bytes; a longer one is cut (at a character boundary).
pub const MAX_VALUE: usize = 256;
/// Most pairs in one set; further keys are left out (and counted in [`dropped_pairs`]).
pub const MAX_PAIRS: usize = 16;
/// Largest encoding of a set.
pub const MAX_ENCODED: usize = MAX_PAIRS * (4 + MAX_KEY + MAX_VALUE);

/// Pairs left out of a set that had [`MAX_PAIRS`] already.
static DROPPED_PAIRS: AtomicU64 = AtomicU64::new(0);

/// Pairs left out of a set that had [`MAX_PAIRS`] already.
pub fn dropped_pairs() -> u64 {
    DROPPED_PAIRS.load(Ordering::Relaxed)
}

/// The table, sized by its parameters (the process has one, [`TABLE`]; the tests make small
/// ones).
struct Table<const SETS: usize, const SLOTS: usize, const BYTES: usize> {
    /// Per id: `offset << 32 | len` of its encoding in `arena`; 0 until published.
    sets: [AtomicU64; SETS],
    /// Ids by hash (open addressing, linear probing); 0 = empty.
    index: [AtomicU32; SLOTS],
    /// Written only under `lock`, at offsets past every published set; a published range is never
    /// written again.
    arena: UnsafeCell<[u8; BYTES]>,
    /// Next id to hand out (starts at 1).
    next: AtomicU32,
    /// Bytes of `arena` in use.
    used: AtomicU32,
    lock: AtomicBool,
    /// Sets that were not stored because the table was full.
    dropped: AtomicU64,
}

// SAFETY: `arena` is written only with `lock` held, in bytes that no published set covers, and
// read only in published ranges (published with release stores after the bytes were written).
unsafe impl<const SETS: usize, const SLOTS: usize, const BYTES: usize> Sync for Table<SETS, SLOTS, BYTES> {}

static TABLE: Table<MAX_SETS, INDEX, ARENA> = Table::new();

impl<const SETS: usize, const SLOTS: usize, const BYTES: usize> Table<SETS, SLOTS, BYTES> {
    #[allow(clippy::declare_interior_mutable_const, reason = "array initialisers")]
    const ZERO64: AtomicU64 = AtomicU64::new(0);
    #[allow(clippy::declare_interior_mutable_const, reason = "array initialisers")]
    const ZERO32: AtomicU32 = AtomicU32::new(0);

    const fn new() -> Self {
        Self {
            sets: [Self::ZERO64; SETS],
            index: [Self::ZERO32; SLOTS],
            arena: UnsafeCell::new([0; BYTES]),
            next: AtomicU32::new(1),
            used: AtomicU32::new(0),
            lock: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    fn encoded(&self, id: u32) -> &[u8] {
        let Some(slot) = self.sets.get(id as usize) else { return &[] };
        let v = slot.load(Ordering::Acquire);
        if v == 0 {
            return &[];
        }
        let (offset, len) = ((v >> 32) as usize, (v & 0xffff_ffff) as usize);
        // SAFETY: a published range of the arena, never written again (see `Table`).
        unsafe { core::slice::from_raw_parts((*self.arena.get()).as_ptr().add(offset), len) }
    }

    /// The id of the set whose encoding is `b`, looked up without a lock; `Err(slot)` with the
    /// index slot where the probe ended when it is not there.
    fn find(&self, b: &[u8], h: u64) -> Result<u32, usize> {
        let mut i = h as usize % SLOTS;
        loop {
            match self.index[i].load(Ordering::Acquire) {
                0 => return Err(i),
                id if self.encoded(id) == b => return Ok(id),
                _ => i = (i + 1) % SLOTS,
            }
        }
    }

    /// The id of the encoded set `b` (nonempty), stored if new; `(id, new)`; id 0 when full.
    fn intern(&self, b: &[u8]) -> (u32, bool) {
        let h = hash(b);
        if let Ok(id) = self.find(b, h) {
            return (id, false);
        }
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        let r = self.insert_locked(b, h);
        self.lock.store(false, Ordering::Release);
        r
    }

    fn insert_locked(&self, b: &[u8], h: u64) -> (u32, bool) {
        let slot = match self.find(b, h) {
            Ok(id) => return (id, false),
            Err(slot) => slot,
        };
        let id = self.next.load(Ordering::Relaxed);
        let used = self.used.load(Ordering::Relaxed) as usize;
        // Room for the set, and the index stays at most half full (so `find` always ends).
        if id as usize >= SETS || (id as usize) * 2 > SLOTS || used + b.len() > BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return (0, false);
        }
        // SAFETY: the lock is held and `used..used + len` is past every published set.
        unsafe {
            let arena = &mut *self.arena.get();
            arena[used..used + b.len()].copy_from_slice(b);
        }
        self.used.store((used + b.len()) as u32, Ordering::Relaxed);
        self.sets[id as usize].store((used as u64) << 32 | b.len() as u64, Ordering::Release);
        self.index[slot].store(id, Ordering::Release);
        self.next.store(id + 1, Ordering::Release);
        (id, true)
    }
}

/// The encoding of set `id` (empty for 0 and for ids not published).
pub fn encoded(id: u32) -> &'static [u8] {
    TABLE.encoded(id)
}

/// Ids handed out so far are `1..published()`.
pub fn published() -> u32 {
    TABLE.next.load(Ordering::Acquire)
}

/// Sets that were not stored because the table was full (their samples carry no labels).
pub fn dropped() -> u64 {
    TABLE.dropped.load(Ordering::Relaxed)
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Interns the set made of `parent`'s pairs with `pairs` added (a key of `pairs` replaces the
/// parent's value; among `pairs`, the last value of a key wins; an empty value removes the
/// key). Returns its id: 0 for the empty set, and for a set the full table could not store.
pub fn intern<'a>(parent: u32, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u32 {
    let mut merged: [(&str, &str); MAX_PAIRS * 2] = [("", ""); MAX_PAIRS * 2];
    let mut n = 0;
    let mut added = 0;
    for (k, v) in pairs {
        let k = cut(k, MAX_KEY);
        if k.is_empty() {
            continue;
        }
        let v = cut(v, MAX_VALUE);
        match merged[..n].iter_mut().find(|(mk, _)| *mk == k) {
            Some(p) => p.1 = v,
            None if added < MAX_PAIRS => {
                merged[n] = (k, v);
                n += 1;
                added += 1;
            }
            None => {
                DROPPED_PAIRS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for (k, v) in crate::format::label_pairs(encoded(parent)) {
        if !merged[..n].iter().any(|(mk, _)| *mk == k) && n < merged.len() {
            merged[n] = (k, v);
            n += 1;
        }
    }
    let merged = &mut merged[..n];
    merged.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut buf = [0u8; MAX_ENCODED];
    let mut len = 0;
    let kept = merged.iter().filter(|(_, v)| !v.is_empty()).count();
    if kept > MAX_PAIRS {
        DROPPED_PAIRS.fetch_add((kept - MAX_PAIRS) as u64, Ordering::Relaxed);
    }
    for &(k, v) in merged.iter().filter(|(_, v)| !v.is_empty()).take(MAX_PAIRS) {
        buf[len..len + 2].copy_from_slice(&(k.len() as u16).to_ne_bytes());
        buf[len + 2..len + 4].copy_from_slice(&(v.len() as u16).to_ne_bytes());
        buf[len + 4..len + 4 + k.len()].copy_from_slice(k.as_bytes());
        buf[len + 4 + k.len()..len + 4 + k.len() + v.len()].copy_from_slice(v.as_bytes());
        len += 4 + k.len() + v.len();
    }
    intern_encoded(&buf[..len])
}

/// FNV-1a: short keys, no allocation, no per-process seed needed (the table is not exposed to
/// untrusted input beyond what the program labels itself with).
fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3))
}

/// Interns an encoded set in the process's table and, when it is new, writes it to the raw file
/// being recorded (each file gets every set when it opens, and the sets made while it is open).
fn intern_encoded(b: &[u8]) -> u32 {
    if b.is_empty() {
        return 0;
    }
    let (id, new) = TABLE.intern(b);
    if new {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        crate::writer::write_label_set(id, b);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(id: u32) -> Vec<(String, String)> {
        crate::format::label_pairs(encoded(id)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn equal_sets_share_an_id_whatever_the_order() {
        let a = intern(0, [("endpoint", "/search"), ("tenant", "t1")]);
        let b = intern(0, [("tenant", "t1"), ("endpoint", "/search")]);
        assert_ne!(a, 0);
        assert_eq!(a, b);
        assert_eq!(of(a), [("endpoint".into(), "/search".into()), ("tenant".into(), "t1".into())]);
        assert_ne!(intern(0, [("endpoint", "/other")]), a);
        assert_eq!(intern(0, []), 0);
    }

    #[test]
    fn children_add_to_and_override_their_parent() {
        let parent = intern(0, [("endpoint", "/a"), ("tenant", "t2")]);
        let child = intern(parent, [("tenant", "t3"), ("phase", "parse")]);
        assert_eq!(
            of(child),
            [
                ("endpoint".into(), "/a".into()),
                ("phase".into(), "parse".into()),
                ("tenant".into(), "t3".into())
            ]
        );
        // An empty value removes the key; removing every key is the empty set.
        assert_eq!(of(intern(child, [("phase", "")])), of(intern(0, [("endpoint", "/a"), ("tenant", "t3")])));
        assert_eq!(intern(intern(0, [("k", "v")]), [("k", "")]), 0);
    }

    #[test]
    fn long_keys_and_values_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_VALUE);
        let id = intern(0, [("long", long.as_str())]);
        let (_, v) = of(id).pop().expect("one pair");
        assert!(v.len() <= MAX_VALUE && v.len() >= MAX_VALUE - 1 && v.chars().all(|c| c == 'é'));
        let keys: Vec<String> = (0..MAX_PAIRS + 3).map(|i| format!("k{i:02}")).collect();
        let before = DROPPED_PAIRS.load(Ordering::Relaxed);
        let id = intern(0, keys.iter().map(|k| (k.as_str(), "v")));
        assert_eq!(of(id).len(), MAX_PAIRS);
        assert!(DROPPED_PAIRS.load(Ordering::Relaxed) >= before + 3);
        // A child that adds keys to a full parent: the keys past the bound are counted too.
        let before = DROPPED_PAIRS.load(Ordering::Relaxed);
        assert_eq!(of(intern(id, [("zz", "v")])).len(), MAX_PAIRS);
        assert!(DROPPED_PAIRS.load(Ordering::Relaxed) > before);
    }

    #[test]
    fn a_full_table_hands_out_no_id_and_counts_the_set() {
        static SMALL: Table<4, 8, 64> = Table::new();
        let ids: Vec<(u32, bool)> =
            [b"one".as_slice(), b"two", b"three"].iter().map(|b| SMALL.intern(b)).collect();
        assert_eq!(ids, [(1, true), (2, true), (3, true)]);
        assert_eq!(SMALL.intern(b"four"), (0, false));
        assert_eq!(SMALL.dropped.load(Ordering::Relaxed), 1);
        // Sets stored before are still found, and the arena's bound holds too.
        assert_eq!(SMALL.intern(b"two"), (2, false));
        static TINY: Table<8, 16, 8> = Table::new();
        assert_eq!(TINY.intern(b"12345"), (1, true));
        assert_eq!(TINY.intern(b"6789"), (0, false));
        assert_eq!(TINY.encoded(1), b"12345");
    }
}
