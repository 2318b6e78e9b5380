//! GitHub Actions output of `cargo contprof check`: workflow-command annotations that put a warning on
//! the source line of each regressed function, and the job summary.
//!
//! Owns the formats GitHub reads (`::warning file=...::` lines, `$GITHUB_STEP_SUMMARY`) and how the
//! environment says we run under Actions. It decides nothing about regressions (that is
//! `compare`), reads no profiles (the caller passes locations found by [`crate::why`]) and never
//! talks to the GitHub API: the pull-request comment is posted by a separate, privileged workflow
//! (`.github/contprof/sticky-comment.mjs`) from the uploaded report, so that the job running
//! untrusted pull-request code needs no token.

mod annotation;
mod summary;

pub use annotation::{Annotation, write_annotations};
pub use summary::append_step_summary;

/// The hidden marker that identifies the sticky pull-request comment; the poster finds the comment
/// to update by it. Written at the top of `report.md` when `check` runs for GitHub.
pub const COMMENT_MARKER: &str = "<!-- cargo-contprof -->";

/// Whether `check` should write GitHub output: `--github`, or `GITHUB_ACTIONS=true` as Actions sets it.
pub fn enabled(flag: bool) -> bool {
    flag || std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true")
}
