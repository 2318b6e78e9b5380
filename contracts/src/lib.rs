//! The contracts of `cargo contprof` with its users and their tools: what a program reading its
//! output can rely on, with the types to read it.
//!
//! - [`report`]: the versioned JSON report of `compare`, `check` and `prod compare`
//!   (`--format json`), with `Serialize` and `Deserialize`: the tool writes these types, and a
//!   script or a test reads the report back into them.
//! - [`exit_codes`]: what the process's exit status means.
//!
//! The contracts between the tool's own processes (the agent's raw sample file, the `CONTPROF_*`
//! variables, the uploader's protocol) are the `contprof-protocol` crate's.

pub mod exit_codes;
pub mod report;
