//! `cargo contprof run`: build one target, run it N times under the agent, then hand the raw
//! samples to [`crate::record`] for profiles, reports and the store.

use std::path::PathBuf;

use super::args::RunArgs;
use super::settings;
use crate::cargo::{self, BuildOptions, CargoArgs, TargetKind, Workspace};
use crate::errors::{Error, Result};
use crate::record::{self, Execution, Recording};
use crate::runner::{self, RunSpec, Streams, interrupt};
use crate::shell::Shell;

/// Runs the command.
pub fn run(args: RunArgs, shell: &Shell) -> Result<()> {
    record(&args, shell).map(|_| ())
}

/// Builds, profiles, writes and stores; what `check` reuses. A failed workload is an error (after
/// its samples were written and stored).
pub fn record(args: &RunArgs, shell: &Shell) -> Result<record::Summary> {
    let cargo_args = CargoArgs::from(&args.cargo);
    let tags = settings::tags(&args.output.tags)?;
    let workspace = Workspace::load(&cargo_args)?;
    let (agent_settings, runs) = settings::sampling(&args.sampling, &workspace)?;
    let store = if args.output.no_store {
        None
    } else {
        Some(settings::open_store(&args.output.store, workspace.root())?)
    };
    let (kind, name) = match &args.target {
        t if t.bin.is_some() => (Some(TargetKind::Bin), t.bin.as_deref()),
        t if t.example.is_some() => (Some(TargetKind::Example), t.example.as_deref()),
        t if t.bench.is_some() => (Some(TargetKind::Bench), t.bench.as_deref()),
        t if t.test.is_some() => (Some(TargetKind::Test), t.test.as_deref()),
        _ => (None, None),
    };
    let target = workspace.select_runnable(&cargo_args, kind, name)?;
    let output_dir = match &args.output.output_dir {
        Some(d) => d.clone(),
        None => default_output_dir(&workspace, &target.group()),
    };
    record::prepare_output_dir(&output_dir)?;

    shell
        .status("Building", format_args!("{} with the `{}` profile", target.describe(), cargo::PROFILE_NAME));
    let targets = [target.clone()];
    let frame_pointers = agent_settings.unwind == runner::Unwind::FramePointers;
    let artifacts =
        cargo::build(&BuildOptions { cargo: &cargo_args, targets: &targets, frame_pointers }, shell)?;
    let Some(artifact) = artifacts.into_iter().next() else {
        return Err(Error::NoArtifact { target: target.describe() });
    };

    let agent_lib = runner::agent::install(&workspace.target_dir().join("contprof").join("agent"))?;
    let raw_dir = record::raw_dir(&output_dir)?;
    // Benches run as `cargo bench` runs them: libtest, criterion and custom mains all get `--bench`.
    let mut workload_args = Vec::new();
    if target.kind == TargetKind::Bench {
        workload_args.push("--bench".into());
    }
    workload_args.extend(args.args.iter().cloned());
    // `cargo run` keeps the current directory; `cargo test`/`cargo bench` run in the package root.
    let cwd = match target.kind {
        TargetKind::Bin | TargetKind::Example => {
            std::env::current_dir().unwrap_or_else(|_| workspace.root().to_owned())
        }
        _ => target.package_root.clone(),
    };

    let mut executions = Vec::new();
    for i in 1..=runs {
        shell.status(
            "Profiling",
            format_args!(
                "{} ({}{})",
                artifact.executable.display(),
                if runs > 1 { format!("run {i}/{runs}, ") } else { String::new() },
                describe_settings(&agent_settings)
            ),
        );
        let spec = RunSpec {
            program: artifact.executable.clone(),
            args: workload_args.clone(),
            cwd: cwd.clone(),
            raw_path: raw_dir.join(format!("run-{i}.raw")),
            settings: agent_settings,
            streams: Streams::Inherit,
            timeout: None,
            // Criterion writes its baselines under CRITERION_HOME: keep the profiled (slower)
            // timings out of the user's own.
            // What `cargo run`/`cargo bench` give the process.
            env: {
                let mut env = target.run_env(workspace.target_dir());
                if target.kind == TargetKind::Bench {
                    env.push(("CRITERION_HOME".into(), output_dir.join("criterion").into_os_string()));
                }
                env
            },
        };
        let outcome = runner::run(&spec, &agent_lib)?;
        let failed = !outcome.exit.success();
        executions.push(Execution {
            group: target.group(),
            repetition: i,
            raw_path: spec.raw_path,
            outcome,
            per_iteration_ns: None,
        });
        if failed || interrupt::interrupted() {
            if runs > i {
                shell.warn(format_args!("stopping after run {i} of {runs}"));
            }
            break;
        }
    }

    let recording = Recording {
        workspace: &workspace,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        settings: agent_settings,
        runs,
        tags,
        output_dir,
        top: args.output.top,
        raw_frames: args.output.raw_frames,
        list_files: true,
        store: store.as_ref(),
        labels: Default::default(),
    };
    let summary = record::finish(&recording, executions, shell)?;
    if summary.groups.iter().all(|g| g.merged.is_none()) {
        let status =
            summary.first_failure().map(|f| format!(" (the workload failed: {f})")).unwrap_or_default();
        return Err(Error::NoSamples {
            target: target.describe(),
            reason: format!("no run produced a profile{status}; see the warnings above"),
        });
    }
    if let Some(failure) = summary.first_failure() {
        return Err(Error::WorkloadFailed { target: target.describe(), status: failure.to_string() });
    }
    if interrupt::interrupted() {
        return Err(Error::msg("interrupted; the samples recorded so far were written"));
    }
    Ok(summary)
}

fn describe_settings(s: &runner::AgentSettings) -> String {
    let cpu = if s.frequency == 0 { "cpu off".to_owned() } else { format!("{} Hz", s.frequency) };
    let alloc = match s.alloc {
        contprof::format::AllocMode::Off => "allocations off".to_owned(),
        contprof::format::AllocMode::Exact => "every allocation".to_owned(),
        contprof::format::AllocMode::Sampled => format!("allocations every ~{} KiB", s.alloc_interval / 1024),
    };
    let walk = match s.unwind {
        runner::Unwind::Tables => "",
        runner::Unwind::FramePointers => ", frame pointers only",
    };
    format!("{cpu}, {alloc}{walk}")
}

/// `<target-dir>/contprof/latest/<group>`, with the group's `/` kept as a directory level.
pub fn default_output_dir(workspace: &Workspace, group: &str) -> PathBuf {
    record::group_path(&workspace.target_dir().join("contprof").join("latest"), group)
}
