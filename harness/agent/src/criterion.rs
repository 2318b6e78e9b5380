//! A criterion [`Profiler`](::criterion::profiler::Profiler) for benchmarks that wire the agent in
//! by hand (feature `criterion`); `cargo contprof bench` needs no code change at all.
//!
//! ```ignore
//! criterion_group! {
//!     name = benches;
//!     config = Criterion::default().with_profiler(contprof::criterion::Profiler::new());
//!     targets = parse
//! }
//! ```
//!
//! Then `RUSTFLAGS=-Cforce-frame-pointers=yes cargo bench --bench parse -- --profile-time 5` writes
//! one raw sample file per benchmark, `target/criterion/<benchmark id>/profile/contprof.raw`, and
//! `cargo contprof import target/criterion/*/*/profile/contprof.raw` turns them into stored pprof
//! profiles, one group per benchmark.

use std::path::Path;

use crate::{Guard, Options};

/// Name of the raw file written in each benchmark's profile directory.
pub const RAW_FILE: &str = "contprof.raw";

/// Profiles each benchmark while criterion runs it in `--profile-time` mode.
#[derive(Debug, Default)]
pub struct Profiler {
    frequency: Option<u32>,
    running: Option<Guard>,
}

impl Profiler {
    /// A profiler with the agent's default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples CPU at `hz` instead of the default rate.
    pub fn frequency(mut self, hz: u32) -> Self {
        self.frequency = Some(hz);
        self
    }
}

impl ::criterion::profiler::Profiler for Profiler {
    fn start_profiling(&mut self, benchmark_id: &str, benchmark_dir: &Path) {
        if let Err(e) = std::fs::create_dir_all(benchmark_dir) {
            crate::agent::say(&format!(
                "not profiling {benchmark_id}: cannot create {}: {e}",
                benchmark_dir.display()
            ));
            return;
        }
        let mut options = Options::new(benchmark_dir.join(RAW_FILE));
        if let Some(hz) = self.frequency {
            options = options.frequency(hz);
        }
        match crate::start(options) {
            Ok(guard) => self.running = Some(guard),
            Err(e) => crate::agent::say(&format!("not profiling {benchmark_id}: {e}")),
        }
    }

    fn stop_profiling(&mut self, _benchmark_id: &str, _benchmark_dir: &Path) {
        if let Some(guard) = self.running.take() {
            guard.stop();
        }
    }
}
