//! The one byte the allocation hooks read first: the agent's mode (its low bits, a copy the agent
//! keeps up to date, see `contprof::preload::alloc::mirror_hooks`) and this library's own flags
//! (whether a recorded pointer exists). A static of this library is addressed directly, where
//! one of the agent's crate costs a load through the global offset table first: the common `malloc`
//! and `free` read this byte and nothing else before they forward.

use core::sync::atomic::{AtomicU8, Ordering};

pub(crate) use contprof::preload::alloc::{EXACT, HOOK_FP, HOOKS_MASK};

/// See the module docs.
pub(crate) static FLAGS: AtomicU8 = AtomicU8::new(0);

/// A recorded pointer (one with a header, see `header.rs`) was made: `free` and `realloc` then
/// read the word in front of every pointer.
pub(crate) const USED: u8 = 1 << 4;
/// The exact mode recorded a pointer without a header (see `hooks::tracked_plain`).
pub(crate) const PLAIN_TRACKED: u8 = 1 << 6;

const _: () = assert!(HOOKS_MASK & (USED | PLAIN_TRACKED) == 0);

/// The flags now.
#[inline(always)]
pub(crate) fn load() -> u8 {
    FLAGS.load(Ordering::Relaxed)
}

/// Sets `bit` (sticky: the kinds of pointer it records stay in the program until freed).
#[inline(always)]
pub(crate) fn set(bit: u8) {
    if load() & bit == 0 {
        FLAGS.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Has the agent keep its mode in [`FLAGS`] (from the constructor, before the agent starts).
pub(crate) fn mirror() {
    contprof::preload::alloc::mirror_hooks(&FLAGS);
}
