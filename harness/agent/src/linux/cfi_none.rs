//! Unwind-table unwinding is implemented for x86-64 only: elsewhere every walk uses frame
//! pointers (see `cfi.rs` for the interface).

use crate::unwind::{Start, Walked};

/// Nothing to load.
pub(crate) fn load() {}

/// Nothing to refresh.
pub(crate) fn refresh() {}

/// Nothing to turn off.
pub(crate) fn disable() {}

/// Never ready.
pub(crate) fn ready() -> bool {
    false
}

/// Always `None`: the caller walks frame pointers.
pub(crate) fn walk(_: Start, _: &mut [u64]) -> Option<Walked> {
    None
}
