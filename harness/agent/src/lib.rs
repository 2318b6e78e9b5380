//! The contprof sampling agent.
//!
//! [`format`] is the raw sample file that the agent writes and `cargo contprof` reads.
#![warn(missing_docs)]

pub mod format;
