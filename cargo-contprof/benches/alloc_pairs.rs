//! The allocation hooks' cost per call: `malloc`/`free` pairs of mixed sizes (the `alloc_pairs`
//! fixture: 16 to 1039 bytes, each block freed 64 pairs later) in a child process, without the
//! agent and under it in each build and mode, with the CPU timer off so that only the hooks are
//! priced.
//!
//! `cargo bench -p cargo-contprof --bench alloc_pairs`
//!
//! Each iteration spawns the fixture and measures the child's user + system CPU time with `wait4`
//! (criterion's `iter_custom`). After criterion's report, a table gives each configuration's CPU
//! time per pair and its ratio to the run without the agent, and, where valgrind is installed,
//! callgrind's exact instruction count per pair (the difference of two runs of 100,000 and
//! 200,000 pairs, so that start and exit cancel out; `CONTPROF_EXE` names the program under
//! valgrind, which keeps the agent dormant in valgrind's own processes). Timings need a quiet
//! machine; the instruction counts do not.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use contprof_engine::cargo::{self, BuildOptions, CargoArgs, TargetKind, Workspace};
use contprof_engine::runner::agent::{Build, install_build};
use contprof_engine::runner::{self, AgentSettings};
use contprof_engine::shell::{Shell, Verbosity};
use contprof_protocol::format::AllocMode;
use criterion::Criterion;

mod common;
use common::mean_ns;

/// Pairs per timed run (`FIXTURE_SCALE` of the fixture's 20 million).
const SCALE: f64 = 1.0;
const PAIRS: f64 = 20_000_000.0 * SCALE;

/// A configuration: the agent's build, CPU frequency and allocation mode; `None`: no agent.
type Agent = Option<(Build, u32, AllocMode)>;

const CONFIGS: &[(&str, Agent)] = &[
    ("no agent", None),
    ("lean build, allocations off (what run preloads)", Some((Build::Lean, 0, AllocMode::Off))),
    ("full build, allocations off (forwarding only)", Some((Build::Full, 0, AllocMode::Off))),
    ("sampled allocations (512 KiB, the default)", Some((Build::Full, 0, AllocMode::Sampled))),
    ("exact allocations", Some((Build::Full, 0, AllocMode::Exact))),
    ("defaults: 250 Hz + sampled allocations", Some((Build::Full, 250, AllocMode::Sampled))),
];

struct Setup {
    program: PathBuf,
    agent_dir: PathBuf,
    out: tempfile::TempDir,
}

fn setup() -> Setup {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/Cargo.toml");
    let args = CargoArgs { manifest_path: Some(manifest), ..CargoArgs::default() };
    let ws = Workspace::load(&args).expect("fixture workspace");
    let shell = Shell::new(Verbosity::Quiet);
    let target =
        ws.select_runnable(&args, Some(TargetKind::Bin), Some("alloc_pairs")).expect("fixture target");
    let built = cargo::build(
        &BuildOptions { cargo: &args, targets: &[target], frame_pointers: true, remap: &[] },
        &shell,
    )
    .expect("fixture build");
    Setup {
        program: built.into_iter().next().expect("one artifact").executable,
        agent_dir: ws.target_dir().join("contprof/agent"),
        out: tempfile::tempdir().expect("tempdir"),
    }
}

/// The environment the runner gives a workload under `agent` (nothing without an agent).
fn env_for(setup: &Setup, agent: Agent) -> Vec<(OsString, OsString)> {
    let Some((build, frequency, alloc)) = agent else { return Vec::new() };
    let lib = install_build(&setup.agent_dir, build).expect("agent library");
    let settings = AgentSettings { frequency, alloc, ..AgentSettings::default() };
    runner::agent_env(&settings, &setup.out.path().join("pairs.raw"), &lib)
}

/// Callgrind's instructions per pair under `env`, or `None` without valgrind.
fn instructions_per_pair(setup: &Setup, env: &[(OsString, OsString)]) -> Option<f64> {
    let total = |scale: &str| -> Option<f64> {
        let counts = setup.out.path().join(format!("pairs-{scale}.callgrind"));
        let status = Command::new("valgrind")
            .args(["--tool=callgrind", "--quiet", "--cache-sim=no", "--branch-sim=no"])
            .arg(format!("--callgrind-out-file={}", counts.display()))
            .arg(&setup.program)
            .envs(env.iter().cloned())
            .env(contprof_protocol::env::EXE, &setup.program)
            .env("FIXTURE_SCALE", scale)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        let text = std::fs::read_to_string(&counts).ok().filter(|_| status.success())?;
        let line = text.lines().find(|l| l.starts_with("summary:") || l.starts_with("totals:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    // 100,000 and 200,000 pairs.
    Some((total("0.01")? - total("0.005")?) / 100_000.0)
}

fn bench(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("alloc_pairs");
    group.sample_size(10).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    for (name, agent) in CONFIGS {
        let env = env_for(setup, *agent);
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                (0..iters).map(|_| common::child_cpu(&setup.program, &SCALE.to_string(), &env)).sum()
            });
        });
    }
    group.finish();
}

fn main() {
    let setup = setup();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &setup);
    c.final_summary();
    let base = mean_ns("alloc_pairs", "no agent");
    println!(
        "\nmalloc/free pairs of mixed sizes ({PAIRS} per run; CPU time from wait4, instructions from callgrind):"
    );
    println!("  {:<50} {:>9} {:>8} {:>16}", "configuration", "ns/pair", "ratio", "instructions/pair");
    for (name, agent) in CONFIGS {
        let mean = mean_ns("alloc_pairs", name);
        let ns = mean.map_or("-".to_owned(), |m| format!("{:.2}", m / PAIRS));
        let ratio = mean.zip(base).map_or("-".to_owned(), |(m, b)| format!("{:.3}x", m / b));
        let instructions = instructions_per_pair(&setup, &env_for(&setup, *agent))
            .map_or("- (no valgrind)".to_owned(), |i| format!("{i:.1}"));
        println!("  {name:<50} {ns:>9} {ratio:>8} {instructions:>16}");
    }
}
