//! The documented exit codes of `cargo contprof` (the book: `docs/src/reference/exit-codes.md`),
//! for scripts and CI steps that branch on them.

/// Success: the command did what was asked and no regression was found.
pub const OK: i32 = 0;
/// `compare`/`check` found at least one regression.
pub const REGRESSION: i32 = 1;
/// Bad input or an error of the tool or its environment (usage, unknown target, I/O, store).
pub const ERROR: i32 = 2;
/// The workload could not be built (cargo's own error is shown above).
pub const BUILD_FAILED: i32 = 3;
/// The workload ran but failed: non-zero exit, panic, signal, failing or timed-out tests.
/// Its samples were still written.
pub const WORKLOAD_FAILED: i32 = 4;
/// `check` found no baseline and was told to fail in that case (`--no-baseline=fail`).
pub const NO_BASELINE: i32 = 5;
