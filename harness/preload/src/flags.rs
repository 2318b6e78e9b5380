//! The one byte the allocation hooks read first: the agent's mode (its low bits, a copy the agent
//! keeps up to date, see `contprof::preload::alloc::mirror_hooks`) and this library's own flags
//! (whether a recorded pointer exists, whether the exact mode tracks pointers). A static of this
//! library is addressed directly, where one of the agent's crate costs a load through the global
//! offset table first: the common `malloc` and `free` read this byte and nothing else before
//! they forward.

use core::sync::atomic::{AtomicU8, Ordering};

pub(crate) use contprof::preload::alloc::{EXACT, HOOK_FP, HOOKS_MASK};

/// See the module docs; alone in its cache line, which every allocation call reads, so that no
/// write to a neighbour ever evicts it.
pub(crate) static FLAGS: Line = Line(AtomicU8::new(NONE_RECORDED));

/// A byte in a cache line of its own (the assembly entry points address [`FLAGS`] as the byte).
#[repr(C, align(64))]
pub(crate) struct Line(AtomicU8);

/// No recorded pointer (one with a header, see `header.rs`) was made yet: `free` and `realloc`
/// need not read the word in front of a pointer. Cleared by the first one, for good. Set while
/// none exists, rather than set once one does, so that the state in which `free` reads the word
/// and does nothing else is every bit of [`FREE_BITS`] clear, whatever the mode: one `testb`.
pub(crate) const NONE_RECORDED: u8 = 1 << 4;
/// The exact mode recorded a pointer without a header (see `hooks::tracked_plain`).
pub(crate) const PLAIN_TRACKED: u8 = 1 << 6;
/// The bits that send every `free` to the recording twin: pointers tracked in the agent's table,
/// or frames marked for frame-pointer walks.
pub(crate) const TWIN_BITS: u8 = PLAIN_TRACKED | HOOK_FP;
/// The bits `free` tests: any of them set takes its general path.
pub(crate) const FREE_BITS: u8 = NONE_RECORDED | TWIN_BITS;

const _: () = assert!(HOOKS_MASK & (NONE_RECORDED | PLAIN_TRACKED) == 0);

/// The flags now.
#[inline(always)]
pub(crate) fn load() -> u8 {
    FLAGS.0.load(Ordering::Relaxed)
}

/// Sets `bit` (sticky: the kinds of pointer it records stay in the program until freed).
#[inline(always)]
pub(crate) fn set(bit: u8) {
    if load() & bit == 0 {
        FLAGS.0.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Clears `bit` (for good: see [`NONE_RECORDED`]).
#[inline(always)]
pub(crate) fn clear(bit: u8) {
    if load() & bit != 0 {
        FLAGS.0.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Has the agent keep its mode in [`FLAGS`] (from the constructor, before the agent starts).
pub(crate) fn mirror() {
    contprof::preload::alloc::mirror_hooks(&FLAGS.0);
}
