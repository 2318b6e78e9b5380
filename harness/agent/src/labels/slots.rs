//! The label sets and trace ids of threads by thread id, for the samplers that read a blocked
//! thread's stack from outside (`remote`: the wall sampler and the window's thread snapshot), which
//! cannot read another thread's thread-local state.
//!
//! A thread takes a slot the first time it sets labels (found again by its thread id, without a
//! lock: compare-and-swap on the slot's tid) and writes its set and ids there as it changes them:
//! one more store per change. It gives the slot back when it exits (the agent's thread-exit hook)
//! or, if it was never seen exiting, to the next thread the kernel gives its id. A thread that
//! finds no free slot among [`PROBES`] is not in the table: its remotely read stacks carry no
//! labels.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots in the table.
const SLOTS: usize = 4096;
/// Slots tried from a thread id's home slot.
const PROBES: usize = 64;

struct Slot {
    tid: AtomicU32,
    set: AtomicU32,
    trace: [AtomicU64; 3],
}

#[allow(clippy::declare_interior_mutable_const, reason = "array initialiser")]
const EMPTY: Slot = Slot {
    tid: AtomicU32::new(0),
    set: AtomicU32::new(0),
    trace: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

fn home(tid: u32) -> usize {
    (tid as usize).wrapping_mul(0x9e37_79b9) % SLOTS
}

/// The slot of `tid`, taken if it has none (`None` when the probed slots are all taken); its index
/// plus one, for the thread state to keep.
pub(crate) fn claim(tid: u32) -> Option<u32> {
    let h = home(tid);
    for i in (0..PROBES).map(|i| (h + i) % SLOTS) {
        let slot = &TABLE[i];
        match slot.tid.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(i as u32 + 1),
            Err(t) if t == tid => return Some(i as u32 + 1),
            Err(_) => {}
        }
    }
    None
}

/// Writes the set and ids of the thread that holds slot `index` (plus one).
#[inline]
pub(crate) fn publish(index: u32, set: u32, trace: [u64; 3]) {
    let Some(slot) = TABLE.get(index.wrapping_sub(1) as usize) else { return };
    for (s, v) in slot.trace.iter().zip(trace) {
        s.store(v, Ordering::Relaxed);
    }
    slot.set.store(set, Ordering::Release);
}

/// Gives slot `index` (plus one) back.
pub(crate) fn release(index: u32) {
    if let Some(slot) = TABLE.get(index.wrapping_sub(1) as usize) {
        publish(index, 0, [0; 3]);
        slot.tid.store(0, Ordering::Release);
    }
}

/// The label set and ids of thread `tid` (none when it has no slot). Async-signal-safe.
pub(crate) fn of(tid: u32) -> (u32, [u64; 3]) {
    let h = home(tid);
    for i in (0..PROBES).map(|i| (h + i) % SLOTS) {
        let slot = &TABLE[i];
        if slot.tid.load(Ordering::Acquire) == tid {
            let set = slot.set.load(Ordering::Acquire);
            return (set, [0, 1, 2].map(|j| slot.trace[j].load(Ordering::Relaxed)));
        }
    }
    (0, [0; 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_finds_its_slot_again_and_others_read_it_until_it_is_released() {
        let tid = 0x7fff_0001;
        let index = claim(tid).expect("a free slot");
        assert_eq!(claim(tid), Some(index), "the same slot again");
        publish(index, 9, [1, 2, 3]);
        assert_eq!(of(tid), (9, [1, 2, 3]));
        let other = claim(tid + SLOTS as u32).expect("another slot");
        assert_ne!(other, index);
        assert_eq!(of(tid + SLOTS as u32), (0, [0; 3]));
        release(index);
        release(other);
        assert_eq!(of(tid), (0, [0; 3]));
    }
}
