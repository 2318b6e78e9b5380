//! Unwind-table unwinding is implemented for x86-64 only: elsewhere every walk uses frame
//! pointers (see `cfi.rs` for the interface).

use crate::unwind::Bounds;

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Return addresses stored.
    pub frames: usize,
    /// The walk did not reach the stack's root.
    pub truncated: bool,
}

/// Nothing to load.
pub(crate) fn load() {}

/// Nothing to refresh.
pub(crate) fn refresh() {}

/// Nothing to turn off.
pub(crate) fn disable() {}

/// Never ready.
#[cfg(test)]
pub(crate) fn ready() -> bool {
    false
}

/// Where a walk starts (see `cfi.rs`).
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) struct Start {
    pub pc: usize,
    pub sp: usize,
    pub fp: usize,
    pub bounds: Bounds,
    pub skip_below: usize,
}

/// Always `None`: the caller walks frame pointers.
pub(crate) fn walk(_: Start, _: &mut [u64]) -> Option<Walked> {
    None
}
