//! The recording commands' flags, validated once into the engine's typed request
//! ([`contprof_engine::record::request`]): `run`, `test` and `bench` build theirs here, `check` its own per
//! target set (`check/side.rs`); [`setup`] reads the sampling flags with the project's
//! configuration (read once: `check` passes its own) and opens the store.

use std::sync::Arc;

use super::args::{OutputArgs, RunArgs, SamplingArgs, StoreArgs, SuiteArgs, TargetArgs};
use super::settings;
use contprof_engine::cargo::{CargoArgs, TargetKind, Workspace};
use contprof_engine::errors::Result;
use contprof_engine::record::request::{Mode, Output, Request, Setup, Suite, TargetChoice, What};

/// The output flags, checked, and the store they name (`None`: `--no-store`).
pub(super) fn output(a: OutputArgs) -> Result<(Output, Option<StoreArgs>)> {
    let output =
        Output { dir: a.output_dir, top: a.top, raw_frames: a.raw_frames, tags: settings::tags(&a.tags)? };
    Ok((output, (!a.no_store).then_some(a.store)))
}

/// `--bin`, `--example`, `--bench` or `--test`, or none.
pub(super) fn target_choice(t: TargetArgs) -> TargetChoice {
    let named = [
        (TargetKind::Bin, t.bin),
        (TargetKind::Example, t.example),
        (TargetKind::Bench, t.bench),
        (TargetKind::Test, t.test),
    ];
    named
        .into_iter()
        .find_map(|(kind, name)| name.map(|n| TargetChoice { kind: Some(kind), name: Some(n) }))
        .unwrap_or_default()
}

/// `cargo contprof run`: the request, and the store its flags name.
pub(super) fn run_request(a: RunArgs) -> Result<(Request, Option<StoreArgs>)> {
    let (output, store) = output(a.output)?;
    let request =
        Request::new(CargoArgs::from(&a.cargo), output, a.args, What::Target(target_choice(a.target)));
    Ok((request, store))
}

/// `cargo contprof test` or `bench`: the request, and the store its flags name.
pub(super) fn suite_request(a: SuiteArgs, mode: Mode) -> Result<(Request, Option<StoreArgs>)> {
    let (output, store) = output(a.output)?;
    let suite = Suite {
        mode,
        filter: a.filter,
        exact: a.exact,
        groups: Vec::new(),
        lib: a.lib,
        bins: a.bins,
        tests: a.tests,
        benches: a.benches,
        ignored: a.ignored,
        include_ignored: a.include_ignored,
        jobs: a.jobs,
        timeout: settings::timeout(a.timeout)?,
    };
    let request = Request::new(CargoArgs::from(&a.cargo), output, a.args, What::Suite(suite));
    Ok((request, store))
}

/// What every recording of `request` needs before it builds: the workspace, its configuration
/// (read once: `check` passes its own in the request), the agent's settings (the `sampling` flags
/// read with the configuration), tags and the store named by `store` (`None`: none).
pub(super) fn setup(request: &Request, sampling: &SamplingArgs, store: Option<&StoreArgs>) -> Result<Setup> {
    let cargo_args = request.cargo.clone();
    let workspace = Workspace::load(&cargo_args)?;
    let project = match &request.config {
        Some(config) => settings::Project { root: workspace.root().to_owned(), config: Arc::clone(config) },
        None => settings::Project::of(&workspace)?,
    };
    let (agent_settings, runs) = settings::sampling(sampling, project.config())?;
    let store = match store {
        Some(store) => Some(project.open_store(store)?),
        None => None,
    };
    Ok(Setup {
        cargo_args,
        workspace,
        agent_settings,
        runs,
        tags: request.output.tags.clone(),
        store,
        clock: Arc::clone(&request.clock),
    })
}

/// `cargo contprof run`.
pub fn run(args: RunArgs, shell: &contprof_engine::shell::Shell) -> Result<()> {
    let sampling = args.sampling.clone();
    let (request, store) = run_request(args)?;
    let What::Target(target) = &request.what else { unreachable!("run_request asks for a target") };
    let setup = setup(&request, &sampling, store.as_ref())?;
    contprof_engine::record::target::record_target(&setup, &request, target, shell).map(|_| ())
}

/// `cargo contprof test` and `cargo contprof bench`.
pub fn suite(args: SuiteArgs, mode: Mode, shell: &contprof_engine::shell::Shell) -> Result<()> {
    let sampling = args.sampling.clone();
    let (request, store) = suite_request(args, mode)?;
    let What::Suite(suite) = &request.what else { unreachable!("suite_request asks for a suite") };
    let setup = setup(&request, &sampling, store.as_ref())?;
    contprof_engine::record::suite::record_suite(&setup, &request, suite, shell).map(|_| ())
}
