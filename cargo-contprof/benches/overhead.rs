//! Agent overhead: the CPU time a fixture workload burns under the agent, as a ratio to the same
//! binary without it, measured side by side in one run.
//!
//! `cargo bench -p cargo-contprof --bench overhead`
//!
//! Each iteration spawns the fixture binary and measures the child's user + system CPU time with
//! `wait4` (criterion's `iter_custom`), so the figure is the cost the workload pays, independent
//! of what else the machine runs. The fixtures are built with the profiling profile through the
//! library's own cargo integration. After criterion's report, a table of ratios to the
//! unprofiled baseline is printed from criterion's estimates, and next to each ratio the share of
//! CPU that the profiles of those same runs give `[contprof agent]` (the samples with the agent's
//! frame on their stack, over all runs of the configuration): what the profile shows the agent to
//! cost against what it costs. The profile cannot see the CPU timer's own cost (the signal and the
//! handler), so its share stays below the ratio's excess by about that much.

use std::path::{Path, PathBuf};

use std::time::Duration;

use std::collections::HashMap;

use contprof_engine::cargo::{self, BuildOptions, CargoArgs, TargetKind, Workspace};
use contprof_engine::record::build_from_raw;
use contprof_engine::runner::{self, AgentSettings, Unwind};
use contprof_engine::shell::{Shell, Verbosity};
use contprof_engine::symbolize::{AGENT_FRAME, Symbolizer};
use contprof_protocol::format::AllocMode;
use criterion::Criterion;
use std::ffi::OsString;

mod common;
use common::mean_ns;

struct Setup {
    /// Where the agent's builds are installed.
    agent_dir: PathBuf,
    bins: Vec<(String, PathBuf)>,
    out: tempfile::TempDir,
}

fn setup() -> Setup {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/Cargo.toml");
    let args = CargoArgs { manifest_path: Some(manifest), ..CargoArgs::default() };
    let ws = Workspace::load(&args).expect("fixture workspace");
    let shell = Shell::new(Verbosity::Quiet);
    let targets: Vec<_> = ["cpu_split", "alloc_split", "c_split", "alloc_churn"]
        .iter()
        .map(|b| ws.select_runnable(&args, Some(TargetKind::Bin), Some(b)).expect("fixture target"))
        .collect();
    let built = cargo::build(
        &BuildOptions { cargo: &args, targets: &targets, frame_pointers: true, remap: &[] },
        &shell,
    )
    .expect("fixtures build");
    Setup {
        agent_dir: ws.target_dir().join("contprof/agent"),
        bins: built.into_iter().map(|a| (a.target.name.clone(), a.executable)).collect(),
        out: tempfile::tempdir().expect("tempdir"),
    }
}

/// How stacks are walked: the unwind tables (the default) or frame pointers only, to price the
/// tables. The fixtures are built with frame pointers for both (`tests/measure/unwind_cost.py`
/// also measures a real crate built without them).
#[derive(Clone, Copy)]
enum Walk {
    Tables,
    FramePointers,
}

/// Frequency, allocation mode, walk and wall-clock frequency (0: off) of a profiled configuration.
type Profiled = (u32, AllocMode, Walk, u32);

const CONFIGS: &[(&str, Option<Profiled>)] = &[
    ("unprofiled", None),
    ("cpu 250 Hz (default, tick timer)", Some((250, AllocMode::Off, Walk::Tables, 0))),
    ("cpu 999 Hz (perf timer)", Some((999, AllocMode::Off, Walk::Tables, 0))),
    ("cpu 999 Hz, frame pointers only", Some((999, AllocMode::Off, Walk::FramePointers, 0))),
    ("cpu 9999 Hz (perf timer)", Some((9999, AllocMode::Off, Walk::Tables, 0))),
    ("cpu 250 Hz + sampled alloc (default)", Some((250, AllocMode::Sampled, Walk::Tables, 0))),
    ("cpu 250 Hz + exact alloc", Some((250, AllocMode::Exact, Walk::Tables, 0))),
    ("cpu 250 Hz + exact alloc, frame pointers only", Some((250, AllocMode::Exact, Walk::FramePointers, 0))),
    ("cpu 250 Hz + sampled alloc + wall 100 Hz", Some((250, AllocMode::Sampled, Walk::Tables, 100))),
    ("cpu 250 Hz + sampled alloc + wall 1000 Hz", Some((250, AllocMode::Sampled, Walk::Tables, 1000))),
];

/// The same environment the runner gives a workload, with the build it preloads (the lean one when
/// allocations are off).
fn env_for(setup: &Setup, cfg: Option<Profiled>) -> Vec<(OsString, OsString)> {
    match cfg {
        None => Vec::new(),
        Some((frequency, alloc, walk, wall_hz)) => {
            let unwind = match walk {
                Walk::Tables => Unwind::Tables,
                Walk::FramePointers => Unwind::FramePointers,
            };
            let settings = AgentSettings { frequency, alloc, unwind, wall_hz, ..AgentSettings::default() };
            let agent =
                runner::agent::install_build(&setup.agent_dir, runner::agent::Build::for_alloc(alloc))
                    .expect("agent library");
            runner::agent_env(&settings, &setup.out.path().join("bench.raw"), &agent)
        }
    }
}

/// CPU nanoseconds with the agent's frame on the stack, and in all, over a configuration's runs.
type AgentShares = HashMap<(String, &'static str), (i64, i64)>;

/// Adds the CPU samples of the run that wrote `raw` to `share` (nothing when the run sampled no CPU).
fn add_agent_share(raw: &Path, symbolizer: &mut Symbolizer, share: &mut (i64, i64)) {
    let Ok(bytes) = std::fs::read(raw) else { return };
    let Ok(built) = build_from_raw(&bytes, raw, &Default::default(), symbolizer) else { return };
    let p = &built.profile;
    let Some(cpu) = p.sample_type_index("cpu") else { return };
    let agent: std::collections::HashSet<u64> = p
        .location
        .iter()
        .filter(|l| {
            l.line.iter().any(|line| {
                p.function.iter().any(|f| f.id == line.function_id && p.str(f.name) == AGENT_FRAME)
            })
        })
        .map(|l| l.id)
        .collect();
    for s in &p.sample {
        share.1 += s.value[cpu];
        if s.location_id.iter().any(|id| agent.contains(id)) {
            share.0 += s.value[cpu];
        }
    }
}

fn bench(c: &mut Criterion, setup: &Setup, shares: &mut AgentShares) {
    let raw = setup.out.path().join("bench.raw");
    let mut symbolizer = Symbolizer::new();
    for (bin, path) in &setup.bins {
        let mut group = c.benchmark_group(format!("overhead/{bin}"));
        group.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
        for (name, cfg) in CONFIGS {
            let env = env_for(setup, *cfg);
            let share = shares.entry((bin.clone(), *name)).or_default();
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let _ = std::fs::remove_file(&raw);
                            let cpu = common::child_cpu(path, "0.4", &env);
                            if cfg.is_some() {
                                add_agent_share(&raw, &mut symbolizer, share);
                            }
                            cpu
                        })
                        .sum()
                });
            });
        }
        group.finish();
    }
}

fn main() {
    let setup = setup();
    let mut c = Criterion::default().configure_from_args();
    let mut shares = AgentShares::new();
    bench(&mut c, &setup, &mut shares);
    c.final_summary();
    println!(
        "\nCPU time of the workload under the agent, as a ratio to the unprofiled run, and the share of \
         CPU its profiles give [contprof agent]:"
    );
    for (bin, _) in &setup.bins {
        let group = format!("overhead/{bin}");
        let Some(base) = mean_ns(&group, "unprofiled") else { continue };
        for (name, _) in CONFIGS.iter().skip(1) {
            if let Some(m) = mean_ns(&group, name) {
                let share = match shares.get(&(bin.clone(), *name)) {
                    Some(&(agent, total)) if total > 0 => {
                        format!("{:.2}%", agent as f64 * 100.0 / total as f64)
                    }
                    _ => "-".to_owned(),
                };
                println!("  {bin:<12} {name:<46} {:.3}x   agent in profile {share:>6}", m / base);
            }
        }
    }
}
