//! Errors of the whole tool and the exit codes they map to.
//!
//! Every failure a user can cause or meet (bad input, build failures, workload failures, a corrupt
//! file) is a variant here with the context needed to act on it. Messages are lowercase fragments
//! that do not repeat their source; the binary prints the whole chain once (see [`report`]).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use contprof_contracts::exit_codes;

/// Any error of the tool.
#[derive(Debug, Error)]
pub enum Error {
    /// `cargo metadata` failed (not a Cargo project, broken manifest, ...).
    #[error("could not read the cargo workspace{}", manifest_hint(.manifest_path))]
    Metadata {
        /// `--manifest-path` if one was given.
        manifest_path: Option<PathBuf>,
        /// What cargo said.
        #[source]
        source: cargo_metadata::Error,
    },
    /// No package by that name in the workspace.
    #[error("package `{name}` is not a member of the workspace (members: {available})")]
    UnknownPackage {
        /// The name asked for.
        name: String,
        /// Comma-separated member names.
        available: String,
    },
    /// No target of that kind and name.
    #[error("no {kind} target named `{name}`{}", available_list(.available))]
    UnknownTarget {
        /// `bin`, `example`, `bench` or `test`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Targets of that kind that exist.
        available: Vec<String>,
    },
    /// The selection is ambiguous or empty and needs a flag.
    #[error("{message}")]
    TargetSelection {
        /// What to pass.
        message: String,
    },
    /// `cargo build` could not be started.
    #[error("could not run `cargo build`")]
    CargoSpawn(#[source] io::Error),
    /// `cargo build` failed; its diagnostics were already printed.
    #[error("build failed ({status}); cargo's errors are shown above")]
    BuildFailed {
        /// Exit status of cargo.
        status: String,
    },
    /// The build succeeded but produced no executable for the target.
    #[error("cargo built no executable for {target}")]
    NoArtifact {
        /// The target described as `kind name`.
        target: String,
    },
    /// The workload could not be started.
    #[error("could not start {}", .program.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The workload failed (exit code, panic or signal); what was recorded is kept.
    #[error("{target} failed: {status}")]
    WorkloadFailed {
        /// Which workload.
        target: String,
        /// Human description of the status (`exit status 101`, `killed by SIGSEGV`).
        status: String,
    },
    /// Several tests failed (`cargo contprof test`).
    #[error("{failed} of {total} tests failed")]
    TestsFailed {
        /// Failed count (including timed out).
        failed: usize,
        /// Total run.
        total: usize,
    },
    /// A filter matched nothing.
    #[error("{what}")]
    NothingMatched {
        /// Description including the filter.
        what: String,
    },
    /// The raw sample file of a run is missing or unreadable.
    #[error("no samples from {target}: {reason}")]
    NoSamples {
        /// Which workload.
        target: String,
        /// Why (the agent did not start, file unreadable, ...).
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}", .path.display())]
    Io {
        /// What was being done (`could not create directory`, `could not write`).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A value given on the command line is invalid.
    #[error("invalid value for {flag}: {message}")]
    InvalidArgument {
        /// The flag, e.g. `--tag`.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Building or reading a profile failed.
    #[error("{context}")]
    Profile {
        /// What was being done, naming the file.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `compare`/`check` found regressions (not a failure of the tool; mapped to its own code).
    #[error("{count} regression(s) found")]
    RegressionFound {
        /// How many regressions, one per cause (the findings that are its evidence not counted).
        count: usize,
    },
    /// `check` found no baseline and `--no-baseline=fail` was given.
    #[error("no baseline: {message}")]
    NoBaseline {
        /// What was looked for.
        message: String,
    },
    /// The profile store failed (unreachable, corrupt, newer version, not found).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A git query failed (unknown revision, not a repository).
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The comparison could not be made (bad options or input).
    #[error(transparent)]
    Compare(#[from] crate::compare::CompareError),
    /// Any other error with its context.
    #[error("{context}")]
    Other {
        /// What failed.
        context: String,
        /// The cause, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

fn manifest_hint(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" at {}", p.display()),
        None => String::new(),
    }
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        " (the package has none of that kind)".to_owned()
    } else {
        format!("; available: {}", available.join(", "))
    }
}

impl Error {
    /// The exit code documented for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BuildFailed { .. } | Error::NoArtifact { .. } => exit_codes::BUILD_FAILED,
            Error::WorkloadFailed { .. } | Error::TestsFailed { .. } => exit_codes::WORKLOAD_FAILED,
            Error::RegressionFound { .. } => exit_codes::REGRESSION,
            Error::NoBaseline { .. } => exit_codes::NO_BASELINE,
            _ => exit_codes::ERROR,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// Shorthand for [`Error::Other`] without a source.
    pub fn msg(context: impl Into<String>) -> Self {
        Error::Other { context: context.into(), source: None }
    }
}

/// Result with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `error: <message>` and each cause on its own line, the way cargo does.
pub fn report(err: &(dyn std::error::Error + 'static), out: &mut dyn io::Write) -> io::Result<()> {
    writeln!(out, "error: {err}")?;
    let mut source = err.source();
    while let Some(cause) = source {
        writeln!(out, "  caused by: {cause}")?;
        source = cause.source();
    }
    Ok(())
}
