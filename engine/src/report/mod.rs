//! Human-facing views of one profile: the terminal table of top functions and flame graph
//! SVGs.
//!
//! Functions here take a [`Profile`](crate::profile::Profile) and an `impl Write`; they open
//! no files and pick no paths, so the CLI decides where output goes. Comparisons between
//! profiles are not here (see `compare`).

mod diff;
mod flame;
mod table;
pub mod units;

pub use diff::{DiffOptions, write_diff_flamegraph};
pub use flame::{FlameGraphOptions, folded_stacks, write_flamegraph};
pub use table::{TopOptions, write_top};
pub use units::{format_bytes, format_count, format_duration, format_in_unit};

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The profile has no sample type of that name.
    #[error("the profile has no sample type `{sample_type}` (it has: {available})")]
    UnknownSampleType {
        /// The requested sample type.
        sample_type: String,
        /// The sample types the profile has.
        available: String,
    },
    /// Every sample has value 0 for that sample type: there is nothing to draw.
    #[error("the profile has no `{sample_type}` samples")]
    NoSamples {
        /// The requested sample type.
        sample_type: String,
    },
    /// Writing failed.
    #[error("cannot write the report")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
