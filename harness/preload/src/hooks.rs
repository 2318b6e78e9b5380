//! The exported `malloc` family, each in two parts:
//! - the interposer (`malloc`): reads the mode and, for an allocation that is not recorded
//!   (allocations off, or the sampled mode's countdown not reached: decided before the allocation,
//!   since it does not depend on the address), forwards to glibc's `__libc_*` function as a tail
//!   call. glibc's allocator then runs in place of the hook, with the program's function as its
//!   caller, as without the agent; the hook costs a test of the mode and a subtraction.
//! - its recording twin (`__contprof_recording_malloc`, see
//!   [`contprof::format::RECORDING_TWIN_PREFIX`]), tail-called otherwise: it decides, allocates
//!   in its own frame (which symbolizers name as the C function it stands for, like the
//!   interposer), with a header when the allocation is recorded (`header.rs`), and reports it to
//!   the agent with that frame, so the stack walk starts at the program's caller. Only the
//!   agent's own work (a recorded allocation's stack, the exact mode) runs the agent's code, which
//!   is the agent's cost.
//!
//! `free`, `realloc` and `malloc_usable_size` of a pointer without a header (all of them until
//! an allocation is recorded, then all but the recorded ones) forward after one load of the word
//! in front of the pointer. The exact mode, which records every allocation, puts no header (it
//! would move every pointer and change glibc's paths): its pointers are tracked in the agent's
//! table, which `free` then consults (behind a counting filter).

use core::ffi::c_void;

use contprof::preload::alloc::{decide, enter, forget, hooks, leave, may_be_tracked, record, skip_sampled};
use contprof::preload::caller;

use crate::flags::{self, EXACT, HOOKS_MASK, PLAIN_TRACKED};
use crate::header::{self, OFFSET};
use crate::next::Next;

#[cfg(target_arch = "x86_64")]
mod fast;
#[cfg(target_arch = "x86_64")]
pub(crate) use fast::{malloc, realloc};

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

type UsableSize = unsafe extern "C" fn(*mut c_void) -> usize;

/// glibc's `malloc_usable_size`.
pub(crate) static USABLE_SIZE: Next = Next::new(c"malloc_usable_size");

/// Whether `ptr`, which has no header, may be a pointer the exact mode recorded. The exact mode
/// records every allocation, so it leaves them as glibc made them (a header would move every
/// pointer off its alignment and change glibc's paths and the counts the instructions engine
/// reads) and tracks them in the agent's table, behind its counting filter. False at once in a
/// process that never recorded in the exact mode.
#[inline(always)]
fn tracked_plain(ptr: *mut c_void) -> bool {
    tracked_plain_with(ptr, flags::load())
}

/// [`tracked_plain`] with the flags already read.
#[inline(always)]
fn tracked_plain_with(ptr: *mut c_void, flags: u8) -> bool {
    flags & PLAIN_TRACKED != 0 && may_be_tracked(ptr.cast())
}

/// glibc's usable size of a block it allocated (0 when unknown).
fn usable_size(block: *mut c_void) -> usize {
    // SAFETY: glibc's function of this name has this type; `block` is one of glibc's (the
    // caller's contract with `malloc_usable_size`).
    unsafe { USABLE_SIZE.function::<UsableSize>().map_or(0, |f| f(block)) }
}

fn set_enomem() {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = libc::ENOMEM };
}

/// Defines an allocation function: the interposer forwards what is not recorded, its twin (in
/// [`recording`]) records the rest. `$size` is the size recorded.
macro_rules! allocation {
    ($(#[$doc:meta])* fn $name:ident ($($arg:ident: $ty:ty),*) size $size:expr, real $real:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        #[doc = concat!("The contract of `", stringify!($name), "(3)`.")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            let h = flags::load() & HOOKS_MASK;
            if h == 0 || skip_sampled(h, $size) {
                // SAFETY: forwarded.
                return unsafe { $real };
            }
            // SAFETY: the same arguments, forwarded to the twin, which forwards them.
            unsafe { recording::$name($($arg),*) }
        }
    };
}

allocation! {
    /// Interposes `malloc` (on x86-64, `fast::malloc`).
    #[cfg(not(target_arch = "x86_64"))]
    fn malloc(size: usize) size size, real __libc_malloc(size)
}
allocation! {
    /// Interposes `calloc`.
    fn calloc(n: usize, size: usize) size n.saturating_mul(size), real __libc_calloc(n, size)
}
allocation! {
    /// Interposes `memalign`.
    fn memalign(align: usize, size: usize) size size, real __libc_memalign(align, size)
}
allocation! {
    /// Interposes `aligned_alloc`.
    fn aligned_alloc(align: usize, size: usize) size size, real __libc_memalign(align, size)
}
allocation! {
    /// Interposes `valloc`.
    fn valloc(size: usize) size size, real __libc_valloc(size)
}
allocation! {
    /// Interposes `pvalloc`.
    fn pvalloc(size: usize) size size, real __libc_pvalloc(size)
}

/// Interposes `realloc` (on x86-64, `fast::realloc`): a recorded block is reallocated by the
/// twin, with its header.
///
/// # Safety
/// The contract of `realloc(3)`.
#[cfg(not(target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let f = flags::load();
    let h = f & HOOKS_MASK;
    if !header::is_recorded_with(ptr, f) && !tracked_plain_with(ptr, f) && (h == 0 || skip_sampled(h, size)) {
        // SAFETY: forwarded.
        return unsafe { __libc_realloc(ptr, size) };
    }
    // SAFETY: the same arguments, forwarded to the twin.
    unsafe { recording::realloc(ptr, size) }
}

/// Interposes `reallocarray`.
///
/// # Safety
/// The contract of `reallocarray(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_enomem();
        return core::ptr::null_mut();
    };
    // SAFETY: `realloc` of the product, as glibc's `reallocarray` does.
    unsafe { realloc(ptr, total) }
}

/// Interposes `posix_memalign`.
///
/// # Safety
/// The contract of `posix_memalign(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> libc::c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    // SAFETY: `memalign` with an alignment checked as `posix_memalign` requires (errno is left
    // as glibc's `posix_memalign` leaves it: ENOMEM on failure).
    let p = unsafe { memalign(align, size) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: `out` is a valid pointer (the caller's contract).
    unsafe { *out = p };
    0
}

/// Interposes `free` (on x86-64, `fast::free`).
///
/// # Safety
/// The contract of `free(3)`.
#[cfg(not(target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    let f = flags::load();
    if !header::is_recorded_with(ptr, f) && !tracked_plain_with(ptr, f) && f & flags::HOOK_FP == 0 {
        // SAFETY: forwarded.
        return unsafe { __libc_free(ptr) };
    }
    // SAFETY: forwarded to the twin.
    unsafe { recording::free(ptr) }
}

/// Interposes `malloc_usable_size`: a recorded block's usable size is what follows its header.
///
/// # Safety
/// The contract of `malloc_usable_size(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if !header::is_recorded(ptr) {
        return usable_size(ptr);
    }
    // SAFETY: recorded.
    let (block, offset) = unsafe { header::block(ptr) };
    usable_size(block).saturating_sub(offset)
}

/// The recording twins (see the module docs): exported, so that symbolizers name them as the C
/// functions they stand for, and never inlined into the interposers, so that those stay small.
mod recording {
    use super::*;

    /// Where a recorded block puts the program's part (see `header.rs`).
    #[derive(Clone, Copy)]
    enum Place {
        /// [`OFFSET`] bytes more, the pointer at [`OFFSET`].
        Plain,
        /// Allocated at an alignment `a` (a power of two, at least [`OFFSET`]) with `a` bytes
        /// more, the pointer at `a`.
        Aligned(usize),
    }

    impl Place {
        /// An alignment of `align` (rounded up to a power of two, as glibc does).
        fn aligned(align: usize) -> Place {
            Place::Aligned(align.checked_next_power_of_two().unwrap_or(usize::MAX).max(OFFSET))
        }

        /// The bytes in front of the program's part, which the block has more.
        fn offset(self) -> usize {
            match self {
                Place::Plain => OFFSET,
                Place::Aligned(a) => a,
            }
        }
    }

    /// Allocates a block of `size` program bytes with `real(total)`, placed as `place` says
    /// behind a header when it is recorded, in the frame of the twin that read `fp`, and records
    /// it; `real` is told the placement when there is one (the aligned functions then align the
    /// block as it says). The exact mode, which records every allocation, places nothing (see
    /// `tracked_plain`).
    #[inline(always)]
    fn allocate(
        h: u8,
        fp: contprof::preload::Caller,
        size: usize,
        place: Place,
        real: impl FnOnce(usize, Option<Place>) -> *mut c_void,
    ) -> *mut c_void {
        let Some(recorded) = decide(h, size) else {
            enter(h, fp);
            let p = real(size, None);
            leave(h);
            return p;
        };
        if h & EXACT != 0 {
            enter(h, fp);
            let p = real(size, None);
            leave(h);
            if !p.is_null() {
                flags::set(PLAIN_TRACKED);
                record(recorded, p.cast(), fp);
            }
            return p;
        }
        let Some(total) = header::with_header(size, place.offset()) else {
            set_enomem();
            return core::ptr::null_mut();
        };
        enter(h, fp);
        let block = real(total, Some(place));
        leave(h);
        if block.is_null() {
            return block;
        }
        // SAFETY: `block` holds `place.offset()` bytes more than the program's.
        let p = unsafe { header::install(block, place.offset()) };
        record(recorded, p.cast(), fp);
        p
    }

    /// Defines the twin of an allocation function.
    macro_rules! twin {
        ($export:literal fn $name:ident ($($arg:ident: $ty:ty),*) size $size:expr, place $place:expr, real |$total:ident, $placed:ident| $real:expr) => {
            /// The recording twin of the interposer of the same name.
            ///
            /// # Safety
            /// The contract of the C function it stands for.
            #[unsafe(export_name = $export)]
            #[inline(never)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
                let (h, fp) = (hooks(), caller());
                // SAFETY: forwarded, with the program's size or the block's.
                allocate(h, fp, $size, $place, |$total, $placed| unsafe { $real })
            }
        };
    }

    twin!("__contprof_recording_malloc" fn malloc(size: usize) size size, place Place::Plain, real |n, _p| __libc_malloc(n));
    twin!("__contprof_recording_calloc" fn calloc(n: usize, size: usize) size n.saturating_mul(size),
        place Place::Plain, real |t, placed| if placed.is_none() { __libc_calloc(n, size) } else { __libc_calloc(1, t) });
    twin!("__contprof_recording_memalign" fn memalign(align: usize, size: usize) size size,
        place Place::aligned(align), real |n, placed| __libc_memalign(placed.map_or(align, Place::offset), n));
    twin!("__contprof_recording_aligned_alloc" fn aligned_alloc(align: usize, size: usize) size size,
        place Place::aligned(align), real |n, placed| __libc_memalign(placed.map_or(align, Place::offset), n));
    twin!("__contprof_recording_valloc" fn valloc(size: usize) size size,
        place Place::aligned(page_size()), real |n, _p| __libc_valloc(n));
    twin!("__contprof_recording_pvalloc" fn pvalloc(size: usize) size size,
        place Place::aligned(page_size()), real |n, _p| __libc_pvalloc(n));

    fn page_size() -> usize {
        // SAFETY: no preconditions.
        (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(OFFSET as libc::c_long) as usize
    }

    /// The twin of `realloc`: a recorded block is reallocated with its header (so it may grow in
    /// place, as without the agent); a plain block that becomes recorded is reallocated with room
    /// for a header, its contents moved behind it.
    ///
    /// # Safety
    /// The contract of `realloc(3)`.
    #[unsafe(export_name = "__contprof_recording_realloc")]
    #[inline(never)]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        let (h, fp) = (hooks(), caller());
        if ptr.is_null() {
            // SAFETY: forwarded to the twin of `malloc`, as glibc's `realloc(NULL, n)` does.
            return unsafe { malloc(size) };
        }
        if header::is_recorded(ptr) {
            if size == 0 {
                // glibc frees the block and returns NULL.
                // SAFETY: the program's pointer, freed by the twin of `free`.
                unsafe { free(ptr) };
                return core::ptr::null_mut();
            }
            // SAFETY: recorded.
            let (block, offset) = unsafe { header::block(ptr) };
            let Some(total) = header::with_header(size, OFFSET) else {
                set_enomem();
                return core::ptr::null_mut();
            };
            let recorded = decide(h, size);
            forget(ptr.cast());
            let p = if offset == OFFSET {
                // A plain block: reallocated with its header, which glibc's `realloc` keeps in
                // front of the program's part, as it keeps the rest.
                enter(h, fp);
                // SAFETY: glibc's block, reallocated with room for the header.
                let moved = unsafe { __libc_realloc(block, total) };
                leave(h);
                if moved.is_null() {
                    // The block is intact and still the program's; it is no longer tracked.
                    return moved;
                }
                // SAFETY: `moved` holds `OFFSET` bytes in front of `size` program bytes; the old
                // pointer's tag, if the block moved, went with the old block.
                unsafe { header::install(moved, OFFSET) }
            } else {
                // An aligned block: `realloc` keeps no alignment beyond `malloc`'s, so it moves to a
                // plain recorded block.
                let keep = usable_size(block).saturating_sub(offset).min(size);
                enter(h, fp);
                // SAFETY: forwarded.
                let fresh = unsafe { __libc_malloc(total) };
                leave(h);
                if fresh.is_null() {
                    return fresh;
                }
                // SAFETY: `fresh` holds `OFFSET` bytes more than `size`; `keep` bytes are readable
                // at `ptr` and writable at the new pointer; then the old block, which `realloc`
                // frees, is freed.
                unsafe {
                    let p = header::install(fresh, OFFSET);
                    core::ptr::copy_nonoverlapping(ptr.cast::<u8>(), p.cast::<u8>(), keep);
                    header::clear(ptr);
                    __libc_free(block);
                    p
                }
            };
            if let Some(r) = recorded {
                record(r, p.cast(), fp);
            }
            return p;
        }
        if tracked_plain(ptr) {
            // Before the call: once freed, the address may be handed to another thread.
            forget(ptr.cast());
        }
        let recorded = (size > 0).then(|| decide(h, size)).flatten();
        if recorded.is_none() || h & EXACT != 0 {
            enter(h, fp);
            // SAFETY: forwarded.
            let p = unsafe { __libc_realloc(ptr, size) };
            leave(h);
            if let (Some(r), false) = (recorded, p.is_null()) {
                flags::set(PLAIN_TRACKED);
                record(r, p.cast(), fp);
            }
            return p;
        }
        let Some(recorded) = recorded else { return core::ptr::null_mut() };
        // A plain block whose new size is recorded: reallocated with room for a header (in place
        // when glibc can), then its contents moved behind it.
        let Some(total) = header::with_header(size, OFFSET) else {
            set_enomem();
            return core::ptr::null_mut();
        };
        let keep = usable_size(ptr).min(size);
        enter(h, fp);
        // SAFETY: forwarded: the program's block, with `OFFSET` bytes more.
        let block = unsafe { __libc_realloc(ptr, total) };
        leave(h);
        if block.is_null() {
            // The program's block is intact and still plain.
            return block;
        }
        // SAFETY: `block` holds `keep` bytes of the program's at its start and `OFFSET` bytes
        // more than `size`; `copy` handles the overlap; the header then goes in front.
        let p = unsafe {
            core::ptr::copy(block.cast::<u8>(), block.cast::<u8>().add(OFFSET), keep);
            header::install(block, OFFSET)
        };
        record(recorded, p.cast(), fp);
        p
    }

    /// The twin of `free`: a recorded block is untracked and freed whole; frames are marked for
    /// frame-pointer walks.
    ///
    /// # Safety
    /// The contract of `free(3)`.
    #[unsafe(export_name = "__contprof_recording_free")]
    #[inline(never)]
    pub unsafe extern "C" fn free(ptr: *mut c_void) {
        let (h, fp) = (hooks(), caller());
        let mut block = ptr;
        if header::is_recorded(ptr) {
            forget(ptr.cast());
            // SAFETY: recorded, and freed below.
            unsafe {
                block = header::block(ptr).0;
                header::clear(ptr);
            }
        } else if tracked_plain(ptr) {
            forget(ptr.cast());
        }
        enter(h, fp);
        // SAFETY: forwarded: the program's block, or the whole of a recorded one.
        unsafe { __libc_free(block) };
        leave(h);
    }
}
