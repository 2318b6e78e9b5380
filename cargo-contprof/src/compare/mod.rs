//! Function-level regression detection between two sets of profiling runs.
pub mod model;
mod stats;
