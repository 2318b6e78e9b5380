//! One side of `check`: a target set recorded through the one recording path, for HEAD and for
//! the rebuilt base alike, and the clocks their phases are timed on.

use std::sync::Arc;

use crate::args::{CheckArgs, SamplingArgs};
use crate::compare::Context;
use crate::{recording, settings};
use contprof_engine::cargo::{CargoArgs, TargetKind};
use contprof_engine::config::CheckTarget;
use contprof_engine::errors::Result;
use contprof_engine::record::interleaved::BaseCheckout;
use contprof_engine::record::request::{Mode, Output, Request, Suite, TargetChoice, What};
use contprof_engine::record::{suite, target};
use contprof_engine::shell::Shell;
use contprof_engine::timing::Clock;

/// The instructions engine's stage of `check`: the workspace's, for HEAD and for a rebuilt base
/// alike (and for the stored baselines `check` recorded here before), so that both sides run
/// from one place ([`contprof_engine::runner::stage`]).
pub(super) fn stage_dir(ctx: &Context) -> std::path::PathBuf {
    ctx.workspace.target_dir().join("contprof").join("stage")
}

/// The time each side's recording took, phase by phase.
#[derive(Default)]
pub(super) struct Clocks {
    /// HEAD's builds, runs and profiles.
    pub head: Arc<Clock>,
    /// The rebuilt base's (interleaved only).
    pub base: Arc<Clock>,
}

/// What one recording of a side runs: `runs` repetitions of `target`, of a suite only the cases
/// of the groups `only` names (empty: all; a single target runs whole).
pub(super) struct Part<'a> {
    pub target: &'a CheckTarget,
    pub runs: u32,
    pub only: &'a [String],
}

/// Records a [`Part`] through the engine's recording paths (`record::target`, `record::suite`),
/// with the configuration `ctx` read once, running the instructions engine's workloads from the
/// head's stage, adding the time of each phase to `clock`: the head's, or with `checkout` the
/// rebuilt base's (built from its worktree into its own target directory, its paths named as the
/// head's, stored in the head's store).
pub(super) fn record_side(
    args: &CheckArgs,
    part: Part<'_>,
    ctx: &Context,
    checkout: Option<&BaseCheckout>,
    clock: &Arc<Clock>,
    shell: &Shell,
) -> Result<contprof_engine::record::Recorded> {
    let Part { target, runs, only } = part;
    let sampling = SamplingArgs {
        engine: args.engine,
        frequency: args.frequency,
        alloc: args.alloc,
        alloc_interval: args.alloc_interval.clone(),
        runs,
        unwind: args.unwind,
        contention: args.contention,
        contention_rate: args.contention_rate.clone(),
        wall: args.wall,
        wall_frequency: args.wall_frequency,
    };
    let output = Output { dir: None, top: 0, raw_frames: false, tags: settings::tags(&args.tags)? };
    let what = match target {
        CheckTarget::Single { kind, name } => {
            let kind = match kind.as_str() {
                "bin" => Some(TargetKind::Bin),
                "example" => Some(TargetKind::Example),
                "bench" => Some(TargetKind::Bench),
                "test" => Some(TargetKind::Test),
                _ => None,
            };
            // A kind without a name selects as no flag does: the package's one runnable target.
            What::Target(match (kind, name.is_empty()) {
                (Some(kind), false) => TargetChoice { kind: Some(kind), name: Some(name.clone()) },
                _ => TargetChoice::default(),
            })
        }
        CheckTarget::Tests(filter) | CheckTarget::Benches(filter) => {
            let mode = if matches!(target, CheckTarget::Tests(_)) { Mode::Test } else { Mode::Bench };
            // With a suite, --test/--bench name the targets to run.
            What::Suite(Suite {
                mode,
                filter: filter.clone(),
                exact: false,
                groups: only.to_vec(),
                lib: false,
                bins: args.target.bin.iter().cloned().collect(),
                tests: args.target.test.iter().cloned().collect(),
                benches: args.target.bench.iter().cloned().collect(),
                ignored: false,
                include_ignored: false,
                jobs: args.jobs,
                timeout: settings::timeout(args.timeout)?,
            })
        }
    };
    let mut cargo = CargoArgs::from(&args.cargo);
    let mut store = args.store.clone();
    if let Some(checkout) = checkout {
        cargo.manifest_path = Some(checkout.manifest_path.clone());
        cargo.target_dir = Some(checkout.target_dir.clone());
        // The head's store, whatever a relative path would mean from the worktree.
        store.url = Some(ctx.store.url().to_owned());
    }
    let request = Request {
        cargo,
        output,
        workload_args: args.args.clone(),
        what,
        stage_dir: Some(stage_dir(ctx)),
        remap: checkout.map(|c| c.remap.clone()).unwrap_or_default(),
        clock: Arc::clone(clock),
        config: Some(Arc::clone(&ctx.config)),
    };
    let setup = recording::setup(&request, &sampling, Some(&store))?;
    match &request.what {
        What::Target(choice) => target::record_target(&setup, &request, choice, shell),
        What::Suite(suite) => suite::record_suite(&setup, &request, suite, shell),
    }
}
