//! Cost of contention recording (`--contention`): the wall time of the `lock_wait` fixture
//! profiled with the default settings plus `--contention`, as a ratio to the same profiled
//! without it (and to no agent), on uncontended locking (50M `std::sync::Mutex` and 20M
//! `pthread_mutex_lock` pairs on one thread: the hooks' fast path) and on contended locking (two
//! threads taking turns on one `Mutex` 10M times each: many short futex waits, the sampler's
//! worst case).
//!
//! `cargo bench -p cargo-contprof --bench contention`
//!
//! Wall time, not CPU time: a wait is not CPU, and what contention recording could cost a
//! contended program is throughput. Each iteration spawns the fixture (criterion's `iter_custom`,
//! one run per sample).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contprof_engine::cargo::{self, BuildOptions, CargoArgs, TargetKind, Workspace};
use contprof_engine::runner::{self, AgentSettings};
use contprof_engine::shell::{Shell, Verbosity};
use criterion::{Criterion, SamplingMode};

mod common;
use common::mean_ns;

const MODES: &[(&str, &str)] = &[("uncontended", "1"), ("contended", "5")];

/// `None`: no agent; else the contention rate (0 = off) on top of the default settings.
const CONFIGS: &[(&str, Option<u64>)] = &[
    ("unprofiled", None),
    ("default settings", Some(0)),
    ("default settings + contention 10us", Some(runner::DEFAULT_CONTENTION_RATE_NS)),
];

fn build() -> (PathBuf, PathBuf, tempfile::TempDir) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/Cargo.toml");
    let args = CargoArgs { manifest_path: Some(manifest), ..CargoArgs::default() };
    let ws = Workspace::load(&args).expect("fixture workspace");
    let target = ws.select_runnable(&args, Some(TargetKind::Bin), Some("lock_wait")).expect("fixture target");
    let shell = Shell::new(Verbosity::Quiet);
    let built = cargo::build(
        &BuildOptions { cargo: &args, targets: &[target], frame_pointers: false, remap: &[] },
        &shell,
    )
    .expect("fixture builds");
    let agent = runner::agent::install(&ws.target_dir().join("contprof/agent")).expect("agent");
    (built[0].executable.clone(), agent, tempfile::tempdir().expect("tempdir"))
}

fn wall(program: &Path, mode: &str, scale: &str, env: &[(OsString, OsString)]) -> Duration {
    let mut cmd = Command::new(program);
    cmd.arg(mode)
        .env("FIXTURE_SCALE", scale)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .envs(env.iter().cloned());
    let start = Instant::now();
    let status = cmd.status().expect("spawn fixture");
    assert!(status.success(), "lock_wait {mode} failed: {status}");
    start.elapsed()
}

fn main() {
    let (program, agent, out) = build();
    let mut c = Criterion::default().configure_from_args();
    for (mode, scale) in MODES {
        let mut group = c.benchmark_group(format!("contention/{mode}"));
        group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(1));
        for (name, cfg) in CONFIGS {
            let env = match cfg {
                None => Vec::new(),
                Some(rate) => {
                    let settings = AgentSettings { contention_rate_ns: *rate, ..AgentSettings::default() };
                    runner::agent_env(&settings, &out.path().join("bench.raw"), &agent)
                }
            };
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| wall(&program, mode, scale, &env)).sum());
            });
        }
        group.finish();
    }
    c.final_summary();
    println!("\nWall time of lock_wait, as ratios:");
    for (mode, _) in MODES {
        let group = format!("contention/{mode}");
        let (Some(none), Some(off), Some(on)) =
            (mean_ns(&group, CONFIGS[0].0), mean_ns(&group, CONFIGS[1].0), mean_ns(&group, CONFIGS[2].0))
        else {
            continue;
        };
        println!(
            "  {mode:<12} with contention vs without: {:.3}x   with contention vs no agent: {:.3}x   \
             without vs no agent: {:.3}x",
            on / off,
            on / none,
            off / none
        );
    }
}
