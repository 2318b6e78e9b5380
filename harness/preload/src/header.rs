//! The header in front of every allocation the hooks record, which lets `free` tell a recorded
//! pointer from any other with one load of a word it is about to touch anyway.
//!
//! A recorded allocation (a sampled one) is made [`OFFSET`] bytes larger (or, for the aligned
//! functions, aligned at `a` >= [`OFFSET`] and `a` bytes larger), and the pointer handed to the
//! program is `base + offset`, preceded by two words: the offset, then a tag, the pointer negated
//! (`0 - pointer`). In front of every pointer glibc returns lies its chunk's size field, a size
//! below 2^63 with flag bits; the tag of a pointer that is not null has its top bit set (the
//! pointer's own is clear on every 64-bit Linux), so a glibc pointer can never pass for a recorded
//! one, and the check needs no table: the word plus the pointer is zero. That is what keeps
//! `free` cheap in a service with a large heap profiled for hours, where a table of tracked
//! pointers would have to be probed on every `free`.
//!
//! Once a recorded pointer exists ([`NONE_RECORDED`] cleared), `free` reads that word for every
//! pointer: glibc's `free` reads the same word next (the chunk's size), so the load costs no
//! cache miss, and the test fails for all of glibc's pointers alike, a branch the processor
//! predicts. The pointer's place in its block is free: a recorded block grows with glibc's
//! `realloc` (in place when glibc can), its program part where it was. Until 2026-12-06 recorded pointers sat at a fixed place
//! modulo 256, so that `free` could skip the load for 15 in 16 of glibc's pointers; every
//! `realloc` of a recorded block then moved its contents to the new block's place (serde_json's
//! growing buffers, sampled at almost every growth: 37 million instructions of copying in a run
//! of 14 billion, about a point of its CPU; see `docs/src/measurements.md`).
//!
//! Every function that takes a pointer from the program must know the header: `free`, `realloc`
//! (which keeps it: the block is reallocated with its header), `malloc_usable_size`; the
//! preload library interposes them all. glibc calls `malloc`, `free`, `realloc` and `calloc`
//! through its own relocations (it supports replacing them), so pointers it allocates for the
//! program and frees itself (`getline`, `fclose`) pass through these functions too.

use core::ffi::c_void;

use crate::flags::{self, NONE_RECORDED};

/// Bytes in front of a plain recorded pointer: the two header words, and glibc's alignment.
pub(crate) const OFFSET: usize = 16;

/// The tag of `p` (not null): `p` negated, whose top bit is set (see the module docs).
#[inline(always)]
fn tag(p: *mut c_void) -> usize {
    (p as usize).wrapping_neg()
}

/// Whether `p` was allocated with a header. Reads the word before `p` (glibc's chunk size of any
/// other pointer, which its allocator reads too) once a recorded pointer was made.
#[inline(always)]
pub(crate) fn is_recorded(p: *mut c_void) -> bool {
    is_recorded_with(p, flags::load())
}

/// [`is_recorded`] with the flags already read.
#[inline(always)]
pub(crate) fn is_recorded_with(p: *mut c_void, flags: u8) -> bool {
    // SAFETY: `p` is not null (checked first) and was returned by this allocator (the caller's
    // contract with `free` & co.): glibc's chunk header, or our header, lies in the 16 bytes
    // before it.
    flags & NONE_RECORDED == 0 && !p.is_null() && unsafe { p.cast::<usize>().sub(1).read() } == tag(p)
}

/// Writes the header of a recorded block allocated at `base` with `offset` bytes in front of the
/// program's part, and returns the program's pointer.
///
/// # Safety
/// `base` is a block of at least `offset` bytes plus the program's size; `offset` is at least
/// [`OFFSET`] and a multiple of 16.
#[inline(always)]
pub(crate) unsafe fn install(base: *mut c_void, offset: usize) -> *mut c_void {
    flags::clear(NONE_RECORDED);
    // SAFETY: inside the block (the caller's contract); the two words lie in its first `offset`
    // bytes, 8-aligned since `base` is.
    unsafe {
        let p = base.cast::<u8>().add(offset).cast::<c_void>();
        let words = p.cast::<usize>();
        words.sub(2).write(offset);
        words.sub(1).write(tag(p));
        p
    }
}

/// The block of a recorded pointer, and the bytes in front of the program's part.
///
/// # Safety
/// [`is_recorded`] said so.
#[inline(always)]
pub(crate) unsafe fn block(p: *mut c_void) -> (*mut c_void, usize) {
    // SAFETY: the header's first word (the caller's contract).
    let offset = unsafe { p.cast::<usize>().sub(2).read() };
    // SAFETY: the block starts `offset` bytes before `p`.
    (unsafe { p.cast::<u8>().sub(offset).cast() }, offset)
}

/// Unmarks a recorded pointer whose block is being freed, so that a stale copy of the header in
/// memory glibc hands out again never reads as a tag (glibc overwrites the first words of a freed
/// block, but not necessarily these).
///
/// # Safety
/// [`is_recorded`] said so, and the block is about to be freed.
#[inline(always)]
pub(crate) unsafe fn clear(p: *mut c_void) {
    // SAFETY: the header's tag word (the caller's contract).
    unsafe { p.cast::<usize>().sub(1).write(0) };
}

/// The block size for `size` program bytes behind `offset` header bytes; `None` on overflow.
#[inline(always)]
pub(crate) fn with_header(size: usize, offset: usize) -> Option<usize> {
    size.checked_add(offset).filter(|&n| n <= isize::MAX as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glibc_pointer_never_reads_as_recorded_and_a_recorded_one_always_does() {
        let mut memory = vec![0u128; 64];
        let base = memory.as_mut_ptr().cast::<c_void>();
        let offset = OFFSET;
        // SAFETY: 1 KiB, 16-aligned.
        let p = unsafe { install(base, offset) };
        assert!(is_recorded(p));
        // SAFETY: `p` is recorded.
        assert_eq!(unsafe { block(p) }, (base, offset));
        // A chunk size in front of a pointer (any value below 2^63) is never a tag, wherever the
        // pointer sits.
        let words = memory.as_mut_ptr().cast::<usize>();
        for size in [0usize, 0x21, 0x411, (1 << 47) | 3, (1 << 62) + 5] {
            for at in (2..128).step_by(2) {
                // SAFETY: inside `memory` (128 words).
                let q = unsafe {
                    words.add(at - 1).write(size);
                    words.add(at).cast::<c_void>()
                };
                assert!(!is_recorded(q), "{size:#x} at {q:?}");
            }
        }
        // SAFETY: `p`'s header was overwritten above: install it again.
        let p = unsafe { install(base, offset) };
        // SAFETY: recorded.
        unsafe { clear(p) };
        assert!(!is_recorded(p));
        assert!(!is_recorded(core::ptr::null_mut()));
    }
}
