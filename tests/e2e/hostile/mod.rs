//! The hostile-program suite (issue 25): small programs that each do one thing real services do
//! (`fixtures/hostile`), run without the agent, under the preload agent in production mode and
//! in run mode with the variants that matter, asserting that the program's output, stderr, files
//! and exit status (or terminating signal) are exactly what they are without the agent, and that
//! the agent still produced what it should (a complete raw file, windows in the store) without
//! hanging. One test per case, so that a failure names it; each case's runs go in parallel.
//!
//! `cargo test --test e2e hostile::` runs the suite alone.

mod processes;
mod programs;
mod resources;
mod run;
mod signals;
mod store;
