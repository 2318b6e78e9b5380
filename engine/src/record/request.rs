//! What to record and what every recording shares, for `run`, `test`, `bench` and `check` (its
//! HEAD and its rebuilt base):
//! - what to record: a [`Request`], typed (the command line validates its flags into it once:
//!   `cli::recording`): cargo's selection as the cargo module takes it, one target as a kind and
//!   a name ([`TargetChoice`]) or a suite ([`Suite`]), where the results go ([`Output`]);
//! - the preparation every recording shares ([`Setup`]): the workspace, the agent's settings,
//!   tags, the store, the agent library;
//! - the workload's environment ([`workload_env`]): what cargo gives the process, plus a
//!   `CRITERION_HOME` of ours for benchmarks;
//! - the rules of the outcome ([`single_outcome`], [`suite_outcome`]): a failed workload or test,
//!   and an interruption, are errors after the profiles of what ran were written and stored.
//!
//! Recording one target is [`super::target`]; planning and running a suite of tests or
//! benchmarks, one process each, is [`super::suite`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Recorded;
use crate::cargo::{CargoArgs, Selected, TargetKind, Workspace};
use crate::errors::{Error, Result};
use crate::interrupt;
use crate::runner;
use crate::shell::Shell;
use crate::store::Store;
use crate::timing::Clock;

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo contprof test`.
    Test,
    /// `cargo contprof bench`.
    Bench,
}

/// What to record, and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// Cargo's package, feature and manifest selection.
    pub cargo: CargoArgs,
    /// Where the results go.
    pub output: Output,
    /// Arguments for the workload (after `--`).
    pub workload_args: Vec<OsString>,
    /// One target or a suite.
    pub what: What,
    /// The instructions engine's stage ([`runner::stage`]); `None`: the workspace's own,
    /// `<target-dir>/contprof/stage`. `check` gives its base the head's, so both run from one place.
    pub stage_dir: Option<PathBuf>,
    /// Source path prefixes the build rewrites (`--remap-path-prefix`, see
    /// [`crate::cargo::BuildOptions::remap`]): `check`'s rebuilt base names its worktree and
    /// target directory as the head's.
    pub remap: Vec<(PathBuf, PathBuf)>,
    /// Where the time of builds, runs and profile writing is added (`check` reads it).
    pub clock: Arc<Clock>,
    /// The configuration the command already read (`check`, once for all its recordings, both
    /// sides); `None`: read from the workspace.
    pub config: Option<Arc<crate::config::Loaded>>,
}

/// Where a recording's results go.
#[derive(Debug, Clone)]
pub struct Output {
    /// The directory of the profiles and reports (`-o`); `None`: under the target directory.
    pub dir: Option<PathBuf>,
    /// Functions in the printed table.
    pub top: usize,
    /// Keep every frame in the printed table (no library folding).
    pub raw_frames: bool,
    /// Tags to store the run with.
    pub tags: Vec<(String, String)>,
}

/// One target: its kind and name, or (neither) the package's one runnable target, as `cargo run`
/// selects it.
#[derive(Debug, Clone, Default)]
pub struct TargetChoice {
    /// Binary, example, benchmark or integration test.
    pub kind: Option<TargetKind>,
    /// Its name.
    pub name: Option<String>,
}

/// One target or a suite.
#[derive(Debug, Clone)]
pub enum What {
    /// One target (`run`).
    Target(TargetChoice),
    /// Every test or benchmark in its own process (`test`, `bench`).
    Suite(Suite),
}

/// Which tests or benchmarks, as `cargo test`/`cargo bench` select them.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Tests or benchmarks.
    pub mode: Mode,
    /// Only cases whose name contains this (or equals it, with `exact`).
    pub filter: Option<String>,
    /// The filter matches whole names.
    pub exact: bool,
    /// Only the cases of these groups (`test/<binary>/<test>`, as a run's profiles name them);
    /// empty: every case the other fields select. `check` runs the groups whose exact counts it
    /// must confirm again this way.
    pub groups: Vec<String>,
    /// The library's unit tests.
    pub lib: bool,
    /// These binaries' tests.
    pub bins: Vec<String>,
    /// These integration tests.
    pub tests: Vec<String>,
    /// These benchmark targets.
    pub benches: Vec<String>,
    /// Only ignored tests.
    pub ignored: bool,
    /// Ignored tests too.
    pub include_ignored: bool,
    /// Processes at once [default: cores for tests, 1 for benchmarks].
    pub jobs: Option<usize>,
    /// How long one process may run before it is killed.
    pub timeout: Duration,
}

impl Request {
    /// A request of `what` in the workspace `cargo` selects, its results to `output`, the
    /// workload given `workload_args`; from the workspace's own stage, with no path remapping, its
    /// own clock, the configuration read from the workspace.
    pub fn new(cargo: CargoArgs, output: Output, workload_args: Vec<OsString>, what: What) -> Request {
        Request {
            cargo,
            output,
            workload_args,
            what,
            stage_dir: None,
            remap: Vec::new(),
            clock: Arc::default(),
            config: None,
        }
    }
}

/// What every recording has before it builds.
pub struct Setup {
    /// The cargo flags as `cargo` takes them.
    pub cargo_args: CargoArgs,
    /// The workspace.
    pub workspace: Workspace,
    /// How the agent samples.
    pub agent_settings: runner::AgentSettings,
    /// Repetitions of each workload.
    pub runs: u32,
    /// `--tag` pairs.
    pub tags: Vec<(String, String)>,
    /// Where runs are stored (`None` with `--no-store`).
    pub store: Option<Store>,
    /// Where the time of each phase is added.
    pub clock: Arc<Clock>,
}

impl Setup {
    /// The directory cargo builds into: `--target-dir` when given (`check`'s rebuilt base), else
    /// the workspace's target directory. `cargo metadata` does not know the flag.
    pub fn build_dir(&self) -> &Path {
        self.cargo_args.target_dir.as_deref().unwrap_or(self.workspace.target_dir())
    }

    /// The agent library, written under the target directory: the lean build when allocations
    /// are not recorded (they then cost the workload nothing).
    pub fn agent_library(&self) -> Result<PathBuf> {
        let build = runner::agent::Build::for_alloc(self.agent_settings.alloc);
        runner::agent::install_build(&self.workspace.target_dir().join("contprof").join("agent"), build)
    }
}

/// The instructions engine's stage for a recording whose raw files go under `raw_dir`, with the
/// packages of `targets` on it; `None` for the sampling engine (which runs programs where they are).
pub fn open_stage(
    setup: &Setup,
    request: &Request,
    raw_dir: &Path,
    targets: &[&Selected],
    shell: &Shell,
) -> Result<Option<std::sync::Arc<runner::stage::Stage>>> {
    if setup.agent_settings.engine != runner::Engine::Instructions {
        return Ok(None);
    }
    let dir = request
        .stage_dir
        .clone()
        .unwrap_or_else(|| setup.workspace.target_dir().join("contprof").join("stage"));
    let on_wait =
        || shell.status("Waiting", format_args!("for another recording to leave {}", dir.display()));
    let mut stage = runner::stage::Stage::open(&dir, setup.build_dir(), raw_dir, &on_wait)?;
    for t in targets {
        stage.add_package(&t.package, &t.package_root)?;
    }
    Ok(Some(std::sync::Arc::new(stage)))
}

/// A run's place on `stage` (see [`open_stage`]): its program named after the target.
pub fn staging(
    stage: Option<&std::sync::Arc<runner::stage::Stage>>,
    target: &Selected,
) -> Option<runner::stage::Staging> {
    stage.map(|s| runner::stage::Staging {
        stage: s.clone(),
        name: format!("{}.{}.{}", target.package, target.kind.as_str(), target.name),
    })
}

/// Paths the runs of `stage` saw and the files behind them, for building their profiles.
pub fn aliases(stage: Option<&std::sync::Arc<runner::stage::Stage>>) -> Vec<(String, String)> {
    stage.map(|s| s.aliases()).unwrap_or_default()
}

/// The environment of one workload process: what `cargo run`/`cargo test`/`cargo bench` give it
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, the library path...), and for a benchmark a
/// `CRITERION_HOME` of ours (`criterion_home`), so that criterion's baselines of the profiled,
/// slower runs stay out of the user's own. `build_dir` is where the target was built
/// ([`Setup::build_dir`]): its library path.
pub fn workload_env(
    target: &Selected,
    build_dir: &Path,
    criterion_home: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    let mut env = target.run_env(build_dir);
    if let Some(home) = criterion_home.filter(|_| target.kind == TargetKind::Bench) {
        env.push(("CRITERION_HOME".into(), home.as_os_str().to_owned()));
    }
    env
}

/// The outcome of recording one target: an error when no run produced a profile, when the
/// workload failed, or when it was interrupted (each after what ran was written and stored).
pub fn single_outcome(summary: Recorded, target: &str) -> Result<Recorded> {
    if summary.groups.iter().all(|g| g.merged.is_none()) {
        let status =
            summary.first_failure().map(|f| format!(" (the workload failed: {f})")).unwrap_or_default();
        return Err(Error::NoSamples {
            target: target.to_owned(),
            reason: format!("no run produced a profile{status}; see the warnings above"),
        });
    }
    if let Some(failure) = summary.first_failure() {
        return Err(Error::WorkloadFailed { target: target.to_owned(), status: failure.to_string() });
    }
    if interrupt::interrupted() {
        return Err(Error::msg("interrupted; the samples recorded so far were written"));
    }
    Ok(summary)
}

/// The outcome of a suite: an error when tests failed (or timed out), or when it was
/// interrupted (after the profiles of what ran were written and stored).
pub fn suite_outcome(summary: Recorded, failed: usize, total: usize) -> Result<Recorded> {
    if failed > 0 {
        return Err(Error::TestsFailed { failed, total });
    }
    if interrupt::interrupted() {
        return Err(Error::msg("interrupted; the tests that ran were recorded"));
    }
    Ok(summary)
}
