//! The entry points through which the program's own copy of the `contprof` crate reaches this
//! library's agent for labels (`contprof::labels`, which finds them with `dlsym` once). Their
//! names carry the version of their contract: a change of signature or meaning is a new name.

use contprof::labels::RawPair;

/// Interns the label set made of set `parent` plus the `n` pairs at `pairs`; returns its id (0:
/// no labels).
///
/// # Safety
/// `pairs` points to `n` pairs whose pointers and lengths describe readable memory.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn contprof_labels_intern_v1(parent: u32, pairs: *const RawPair, n: usize) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { contprof::preload::labels::intern(parent, pairs, n) }
}

/// Makes `id` the calling thread's label set (`u32::MAX`: leaves it); returns the set before.
#[unsafe(no_mangle)]
pub extern "C" fn contprof_labels_swap_v1(id: u32) -> u32 {
    contprof::preload::labels::swap(id)
}

/// Makes `*new` the calling thread's label set and trace ids; the ones before go to `*old`.
///
/// # Safety
/// `new` and `old` point to valid `RawContext`s (or are null: nothing is done).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn contprof_labels_swap_context_v1(
    new: *const contprof::labels::RawContext,
    old: *mut contprof::labels::RawContext,
) {
    // SAFETY: the caller's contract.
    unsafe { contprof::preload::labels::swap_context(new, old) }
}

/// Counts `units` of work under label set `set` (`u32::MAX`: the calling thread's set).
#[unsafe(no_mangle)]
pub extern "C" fn contprof_labels_count_work_v1(set: u32, units: u64) {
    contprof::preload::labels::count_work(set, units)
}
