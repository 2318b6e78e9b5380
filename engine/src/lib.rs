//! The engine of `cargo contprof`: everything the tool does, taking typed requests and settings
//! and never a command line. Recording (`record`, `runner`, `cargo`, `callgrind`, `criterion`),
//! the store (`store`), symbolization (`symbolize`), profiles (`profile`), the comparison and its
//! whole statistical method (`compare`, `pipeline` with the history it learns from, `why`,
//! `code`), reports (`report`) and production (`prod`).
//!
//! Front ends sit above it: the `cargo-contprof` command line and the `contprof-viewer` web
//! views call the same entry points, so one set of runs gets one verdict everywhere. The
//! contracts with the processes it records (the raw sample file, the `CONTPROF_*` variables, the
//! agent's protocol) are `contprof-protocol`'s. See `ARCHITECTURE.md` at the repository root for
//! the map.

pub mod callgrind;
pub mod cargo;
pub mod code;
pub mod compare;
pub mod config;
pub mod criterion;
pub mod errors;
pub mod git;
pub mod github;
pub mod interrupt;
pub mod pipeline;
pub mod prod;
pub mod profile;
pub mod record;
pub mod report;
pub mod runner;
pub mod shell;
pub mod store;
pub mod symbolize;
pub mod timing;
pub mod why;

#[cfg(any(test, feature = "test-support"))]
pub mod hostile;

#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod hostile_tests;
