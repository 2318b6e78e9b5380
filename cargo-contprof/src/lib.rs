//! `cargo contprof`: continuous profiling for Rust projects and their CI.
//!
//! The binary is a thin shell over this library so that tests and other front ends drive the
//! same code. See `ARCHITECTURE.md` at the repository root for the map.

pub mod callgrind;
pub mod cargo;
pub mod cli;
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
pub mod viewer;
pub mod why;

#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod hostile_tests;
