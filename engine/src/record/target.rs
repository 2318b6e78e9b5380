//! Recording one target (`cargo contprof run`, and `check` on one target): build it, run it N
//! times under the agent, then hand the raw samples to [`super::finish`] for profiles, reports and
//! the store. What is shared with the other recordings is in [`super::request`].

use std::path::PathBuf;
use std::time::Instant;

use super::request::{self, Request, Setup, TargetChoice};
use super::{Execution, Recording};
use crate::cargo::{self, BuildOptions, TargetKind, Workspace};
use crate::errors::{Error, Result};
use crate::interrupt;
use crate::runner::{self, RunSpec, Streams};
use crate::shell::Shell;
use crate::timing::Phase;

/// Builds `target`, profiles it, writes and stores (see [`request::single_outcome`] for what
/// is an error).
pub fn record_target(
    setup: &Setup,
    request: &Request,
    target: &TargetChoice,
    shell: &Shell,
) -> Result<super::Recorded> {
    let Setup { cargo_args, workspace, agent_settings, runs, .. } = setup;
    let (agent_settings, runs) = (*agent_settings, *runs);
    let target = workspace.select_runnable(cargo_args, target.kind, target.name.as_deref())?;
    let output_dir = match &request.output.dir {
        Some(d) => d.clone(),
        None => default_output_dir(workspace, &target.group()),
    };
    super::prepare_output_dir(&output_dir)?;

    shell
        .status("Building", format_args!("{} with the `{}` profile", target.describe(), cargo::PROFILE_NAME));
    let targets = [target.clone()];
    let frame_pointers = agent_settings.unwind == runner::Unwind::FramePointers;
    let artifacts = setup.clock.time(Phase::Build, || {
        cargo::build(
            &BuildOptions { cargo: cargo_args, targets: &targets, frame_pointers, remap: &request.remap },
            shell,
        )
    })?;
    let Some(artifact) = artifacts.into_iter().next() else {
        return Err(Error::NoArtifact { target: target.describe() });
    };

    let agent_lib = setup.agent_library()?;
    let raw_dir = super::raw_dir(&output_dir)?;
    // Benches run as `cargo bench` runs them: libtest, criterion and custom mains all get `--bench`.
    let mut workload_args = Vec::new();
    if target.kind == TargetKind::Bench {
        workload_args.push("--bench".into());
    }
    workload_args.extend(request.workload_args.iter().cloned());
    // `cargo run` keeps the current directory; `cargo test`/`cargo bench` run in the package root.
    let cwd = match target.kind {
        TargetKind::Bin | TargetKind::Example => {
            std::env::current_dir().unwrap_or_else(|_| workspace.root().to_owned())
        }
        _ => target.package_root.clone(),
    };

    let stage = request::open_stage(setup, request, &raw_dir, &[&target], shell)?;
    let mut executions = Vec::new();
    let runs_started = Instant::now();
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
            env: request::workload_env(&target, setup.build_dir(), Some(&output_dir.join("criterion"))),
            stage: request::staging(stage.as_ref(), &target),
        };
        let outcome = runner::run(&spec, &agent_lib)?;
        let failed = !outcome.exit.success();
        executions.push(Execution {
            group: target.group(),
            repetition: i,
            raw_path: spec.raw_path,
            outcome,
            per_iteration: None,
            aliases: request::aliases(stage.as_ref()),
        });
        if failed || interrupt::interrupted() {
            if runs > i {
                shell.warn(format_args!("stopping after run {i} of {runs}"));
            }
            break;
        }
    }
    setup.clock.add(Phase::Runs, runs_started.elapsed());

    let recording = Recording {
        workspace,
        settings: agent_settings,
        runs,
        tags: setup.tags.clone(),
        output_dir,
        top: request.output.top,
        raw_frames: request.output.raw_frames,
        list_files: true,
        store: setup.store.as_ref(),
        labels: Default::default(),
    };
    let summary = setup.clock.time(Phase::Profiles, || super::finish(&recording, executions, shell))?;
    request::single_outcome(summary, &target.describe())
}

fn describe_settings(s: &runner::AgentSettings) -> String {
    let cpu = if s.frequency == 0 { "cpu off".to_owned() } else { format!("{} Hz", s.frequency) };
    let alloc = match s.alloc {
        contprof_protocol::format::AllocMode::Off => "allocations off".to_owned(),
        contprof_protocol::format::AllocMode::Exact => "every allocation".to_owned(),
        contprof_protocol::format::AllocMode::Sampled => {
            format!("allocations every ~{} KiB", s.alloc_interval / 1024)
        }
    };
    let walk = match s.unwind {
        runner::Unwind::Tables => "",
        runner::Unwind::FramePointers => ", frame pointers only",
    };
    let contention = match s.contention_rate_ns {
        0 => String::new(),
        ns => format!(
            ", waits sampled at {}",
            crate::report::format_duration(i64::try_from(ns).unwrap_or(i64::MAX))
        ),
    };
    let wall = match s.wall_hz {
        0 => String::new(),
        hz => format!(", wall time at {hz} Hz"),
    };
    format!("{cpu}, {alloc}{contention}{wall}{walk}")
}

/// `<target-dir>/contprof/latest/<group>`, with the group's `/` kept as a directory level.
pub fn default_output_dir(workspace: &Workspace, group: &str) -> PathBuf {
    super::group_path(&workspace.target_dir().join("contprof").join("latest"), group)
}
