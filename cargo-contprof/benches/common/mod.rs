//! What the benchmarks that time a child process share: running it for its CPU time, and reading
//! criterion's estimates back for the tables they print after criterion's own report.
#![allow(dead_code, reason = "each benchmark uses what it needs")]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use contprof_engine::runner;

/// Runs `program` once with `FIXTURE_SCALE=scale` and `env`, and returns the CPU time (user and
/// system, from `wait4`) the kernel charged to it.
pub fn child_cpu(program: &Path, scale: &str, env: &[(OsString, OsString)]) -> Duration {
    let mut cmd = Command::new(program);
    cmd.stdout(Stdio::null()).env("FIXTURE_SCALE", scale).envs(env.iter().cloned());
    runner::wait_cpu(cmd.spawn().expect("spawn fixture")).expect("wait for the fixture")
}

/// Where criterion writes its estimates.
pub fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The mean (ns) criterion estimated for `function` of `group` in this run.
pub fn mean_ns(group: &str, function: &str) -> Option<f64> {
    // Criterion's directory names: these characters become `_`.
    let slug = |s: &str| s.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_");
    let path = criterion_dir().join(slug(group)).join(slug(function)).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}
