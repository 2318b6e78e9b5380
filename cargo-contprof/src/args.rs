// Doc comments here are the `--help` text: placeholders like <DIR> are meant literally.
#![allow(rustdoc::invalid_html_tags)]

//! Command-line flags as clap parses them: plain data, validated into library settings by the
//! command modules (`recording.rs`, ...).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `cargo` as clap sees it: `cargo contprof ...` arrives as `cargo-contprof contprof ...`.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::styling::Styles::styled())]
pub enum CargoCli {
    /// Continuous profiling for Rust: profile targets, store runs per commit, flag function-level regressions.
    #[command(name = "contprof", version, author)]
    Contprof(ContprofCli),
}

/// Top level of `cargo contprof`.
#[derive(Debug, Args)]
#[command(
    about = "Continuous profiling for Rust: profile targets, store runs per commit, flag function-level regressions",
    after_help = "Exit codes: 0 success, 1 regression found, 2 error, 3 build failed, 4 workload failed, 5 no baseline (check --no-baseline=fail).\n\nSee `cargo contprof <command> --help` for each command."
)]
pub struct ContprofCli {
    /// Print more (commands run, agent notes).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only errors and the requested output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a target and profile it: CPU time and allocations per call stack, no code change.
    ///
    /// The target (bin, example, bench or test) is built with a profiling profile (release with
    /// line-table debug info; your Cargo.toml is not edited), then run under the sampling agent. Prints the top functions and writes a pprof profile and flame graphs.
    #[command(
        after_help = "Examples:\n  cargo contprof run --bin server -- --port 8080\n  cargo contprof run --bench parse --runs 5\n  cargo contprof run --example demo --alloc exact"
    )]
    Run(RunArgs),
    /// Profile a test suite, each test in its own process, one profile per test.
    ///
    /// Builds the test targets like `cargo test --no-run`, lists the tests of each binary and runs
    /// every test alone under the agent, in parallel up to --jobs. Profiles are labelled with the
    /// test's full name (`<binary>/<test path>`). Doc tests are not profiled.
    #[command(
        after_help = "Examples:\n  cargo contprof test\n  cargo contprof test parse -- --nocapture\n  cargo contprof test --test integration --runs 3"
    )]
    Test(SuiteArgs),
    /// Profile benchmarks: one profile per criterion or divan benchmark, with costs per iteration.
    ///
    /// Criterion and divan benchmarks are listed and each one runs in its own process; the
    /// profile gains a `cpu_per_iter` sample type (nanoseconds per iteration, from the harness's
    /// own estimate), so costs compare across runs even though the harnesses vary iteration
    /// counts. Benchmarks with a custom `main` are profiled as one process.
    #[command(
        after_help = "Examples:\n  cargo contprof bench\n  cargo contprof bench parse --bench parser -- --measurement-time 2"
    )]
    Bench(SuiteArgs),
    /// Compare the stored runs of two revisions, function by function, with statistical evidence.
    ///
    /// BASE and HEAD are git revisions (all runs of that commit with the same settings are used)
    /// or run ids (comma-separated for several). Exits 1 when a regression is found.
    #[command(
        after_help = "Examples:\n  cargo contprof compare\n  cargo contprof compare main HEAD --format markdown --output report.md\n  cargo contprof compare v1.2 v1.3 --group bench/parse --min-effect 0.1"
    )]
    Compare(CompareArgs),
    /// The CI gate: record HEAD, compare with the baseline, write the reports, exit 0/1 (regression).
    ///
    /// Targets as for `run` (`--bin`, `--example`, `--bench`, `--test`) or the suites (`--tests`,
    /// `--benches`, with an optional FILTER), else `[check] targets` of the configuration. The
    /// baseline is `--base REV`, else the runs of the merge-base with the default branch or of its
    /// nearest first-parent ancestor with runs of the same targets and settings. The reports end
    /// with the time each phase took (builds, runs, profiles per side; the analysis), also in
    /// report.json's `timings`.
    #[command(
        after_help = "Examples:\n  cargo contprof check --bin server --runs 5\n  cargo contprof check --benches parse --base origin/main\n  cargo contprof check --tests --no-baseline=fail"
    )]
    Check(CheckArgs),
    /// List stored runs, newest first.
    #[command(
        after_help = "Examples:\n  cargo contprof log\n  cargo contprof log --branch main --since 7d\n  cargo contprof log --tag service=api --format json"
    )]
    Log(LogArgs),
    /// Show one stored run (a run id, or a git revision for its newest run).
    Show(ShowArgs),
    /// Write the pprof files of a stored run to a directory.
    Export(ExportArgs),
    /// Store pprof files produced by another tool (or raw sample files of the agent) as a run.
    Import(ImportArgs),
    /// Delete old runs: keep the last N days, and the newest run of each commit of the default branch.
    Gc(GcArgs),
    /// Browse the store in a local web viewer (flame graphs, top functions, comparisons).
    #[command(
        after_help = "Examples:\n  cargo contprof serve\n  cargo contprof serve --bind 127.0.0.1:9000 --store s3://bucket/profiles"
    )]
    Serve(ServeArgs),
    /// Write a stored run as one self-contained HTML page (flame graph and top functions).
    #[command(
        after_help = "Examples:\n  cargo contprof report --html profile.html\n  cargo contprof report main --group bench/parse --html parse.html"
    )]
    Report(ReportArgs),
    /// The profiling agent itself, for programs this tool does not start.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Production profiles, uploaded by the continuous agent: list, export, compare and report
    /// windows selected by service, version, zone, instance, any label, profile type and time
    /// span, and compact them into rollups (`serve` browses them under /prod).
    #[command(subcommand)]
    Prod(ProdCommand),
}

/// `cargo contprof agent ...`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Write the agent's preload library (embedded in this binary) if it is not there yet, and
    /// print its path.
    ///
    /// `LD_PRELOAD=$(cargo contprof agent path) CONTPROF_OUTPUT=run.raw ./program` then profiles
    /// any dynamically linked program with no code change; `cargo contprof import run.raw` stores
    /// the result. With `CONTPROF_SERVICE` and `CONTPROF_STORE` instead, it profiles a
    /// long-running service continuously (a window per period per deployment, uploaded to the
    /// store; see the book's production chapter, docs/src/production/index.md). The file name carries a hash of the library,
    /// so versions never mix.
    #[command(after_help = "Examples:
  LD_PRELOAD=$(cargo contprof agent path) CONTPROF_OUTPUT=run.raw ./target/release/server
  LD_PRELOAD=$(cargo contprof agent path) CONTPROF_SERVICE=api CONTPROF_VERSION=1.4 \\
    CONTPROF_STORE=s3://profiles/prod ./target/release/server
  cargo contprof agent path --dir /opt/contprof --link libcontprof.so")]
    Path {
        /// Where to write it [default: $XDG_CACHE_HOME/cargo-contprof, else ~/.cache/cargo-contprof].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Also make NAME in the directory a symbolic link to it, a stable name for a container
        /// image (`ENV LD_PRELOAD=/opt/contprof/libcontprof.so`); the link is printed instead.
        #[arg(long, value_name = "NAME")]
        link: Option<String>,
        /// The lean build, without the allocation hooks: for a service whose `CONTPROF_TYPES`
        /// has neither `alloc` nor `heap` (its `malloc` and `free` then run exactly as without the
        /// agent). It records no allocations, and says so if asked to.
        #[arg(long)]
        no_alloc: bool,
    },
    /// The continuous mode's uploader, which the agent starts beside a profiled service (not
    /// run by hand): it schedules the deployment's windows through leases in the store,
    /// symbolizes each window the agent recorded and uploads one gzipped pprof profile per type.
    #[command(hide = true)]
    Upload(UploadArgs),
}

/// `cargo contprof serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub bind: String,
    /// Allow an address reachable from other machines (the viewer has no authentication).
    #[arg(long)]
    pub allow_remote: bool,
    /// Do not compact production windows into rollups in the background (every minute; see
    /// `prod compact`), e.g. with read-only store credentials.
    #[arg(long)]
    pub no_compact: bool,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run id or a git revision (its newest run).
    #[arg(value_name = "RUN|REV", default_value = "HEAD")]
    pub run: String,
    /// Only profiles whose group (target, test, benchmark) contains this text.
    #[arg(long, value_name = "TEXT")]
    pub group: Option<String>,
    /// Where to write the page.
    #[arg(long, value_name = "FILE", required = true)]
    pub html: PathBuf,
    /// Break the profile down by the values of this sample label (`--by endpoint`): each value's
    /// part of the CPU (the profile's default measure), in a table above the flame graph.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// For machines.
    Json,
}

/// `cargo contprof log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only runs of these revisions (repeatable; branch names, `HEAD~3`, short ids).
    #[arg(long = "commit", value_name = "REV")]
    pub commits: Vec<String>,
    /// Only runs recorded on this branch.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Only runs with this tag (repeatable, all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Only runs with a target/test/benchmark containing this text.
    #[arg(long, value_name = "TEXT")]
    pub target: Option<String>,
    /// Only runs at or after: a date (2026-11-01), an RFC 3339 time, or an age (7d, 12h).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only runs at or before (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// At most N runs.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A run id or a git revision.
    #[arg(value_name = "RUN|REV", default_value = "HEAD")]
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run id or a git revision.
    #[arg(value_name = "RUN|REV", default_value = "HEAD")]
    pub run: String,
    /// Directory to write to [default: ./contprof-<run id>].
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Gzipped pprof files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Group to file them under [default: import/<file stem>].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Key the run under this revision [default: the current commit].
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
    /// Tag the run (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep runs younger than this many days, and production windows recorded since then.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub keep_days: u32,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Which store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// Target selection for `run`, as in `cargo run`.
#[derive(Debug, Args, Clone, Default)]
#[group(id = "target", multiple = false)]
pub struct TargetArgs {
    /// Profile the binary NAME.
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub bin: Option<String>,
    /// Profile the example NAME.
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub example: Option<String>,
    /// Profile the benchmark NAME (run as `cargo bench` would, with `--bench`).
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub bench: Option<String>,
    /// Profile the integration test NAME (all its tests in one process).
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub test: Option<String>,
}

/// Cargo's package and feature flags.
#[derive(Debug, Args, Clone, Default)]
pub struct CargoFlags {
    /// Package to profile.
    #[arg(short, long, value_name = "SPEC", help_heading = "Package Selection")]
    pub package: Option<String>,
    /// Space or comma separated list of features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES", help_heading = "Feature Selection")]
    pub features: Vec<String>,
    /// Activate all available features.
    #[arg(long, help_heading = "Feature Selection")]
    pub all_features: bool,
    /// Do not activate the `default` feature.
    #[arg(long, help_heading = "Feature Selection")]
    pub no_default_features: bool,
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<PathBuf>,
    /// Directory for all generated artifacts.
    #[arg(long, value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub target_dir: Option<PathBuf>,
    /// Assert that `Cargo.lock` will remain unchanged.
    #[arg(long, help_heading = "Manifest Options")]
    pub locked: bool,
    /// Run without accessing the network.
    #[arg(long, help_heading = "Manifest Options")]
    pub offline: bool,
    /// Equivalent to specifying both --locked and --offline.
    #[arg(long, help_heading = "Manifest Options")]
    pub frozen: bool,
}

/// Allocation recording mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AllocArg {
    /// Sample allocations every ~`--alloc-interval` bytes, weighted to unbiased estimates (low overhead).
    #[default]
    Sampled,
    /// Record every allocation exactly (deterministic counts for comparisons; slower).
    Exact,
    /// Do not record allocations.
    Off,
}

/// How the workload is sampled.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// What measures the workload: `agent` samples CPU time and allocations; `instructions` runs it
    /// under valgrind's callgrind and counts every instruction per function (exact and repeatable,
    /// 67-98x slower on real crates; every allocation recorded, `--frequency` and `--alloc` do not apply)
    /// [default: config `engine`, else agent].
    #[arg(long, value_enum, value_name = "ENGINE", help_heading = "Profiling")]
    pub engine: Option<contprof_engine::runner::Engine>,
    /// CPU sampling rate in Hz (per thread of CPU time); 0 turns CPU sampling off.
    #[arg(long, value_name = "HZ", default_value_t = contprof_engine::runner::DEFAULT_FREQUENCY, help_heading = "Profiling")]
    pub frequency: u32,
    /// Allocation profiling.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = AllocArg::Sampled, help_heading = "Profiling")]
    pub alloc: AllocArg,
    /// Mean bytes between allocation samples (`--alloc sampled`); suffixes K, M, G allowed.
    #[arg(long, value_name = "BYTES", default_value = "512K", help_heading = "Profiling")]
    pub alloc_interval: String,
    /// Run the workload N times (a comparison needs repeated runs).
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Profiling")]
    pub runs: u32,
    /// Record where threads wait (contention): blocking futex calls (Rust's std `Mutex`,
    /// `RwLock`, `Condvar`, `thread::park`, parking_lot) and contended `pthread_mutex_lock`,
    /// `pthread_rwlock_*lock` and `pthread_cond_*wait`, as sample types `contentions` and
    /// `delay` (nanoseconds), duration-sampled like Go's block profile.
    #[arg(long, help_heading = "Profiling")]
    pub contention: bool,
    /// Sampling rate of `--contention` (implies it): waits at least this long are always
    /// recorded, shorter ones with probability wait/rate and weighted to stay unbiased; units
    /// ns, us, ms, s [default: 10us].
    #[arg(long, value_name = "DURATION", help_heading = "Profiling")]
    pub contention_rate: Option<String>,
    /// Sample every thread on wall time, on CPU and off, as sample type `wall` (nanoseconds): a
    /// thread blocked in a system call, a lock, a channel or a sleep is charged at the frame where
    /// it blocked. Answers where the wall time (the latency) goes. A blocked thread is interrupted
    /// once per blocking episode; `sleep`, `epoll_wait` and timed waits then return `EINTR`, which
    /// std and tokio retry.
    #[arg(long, help_heading = "Profiling")]
    pub wall: bool,
    /// Wall-clock samples per second of every thread (implies `--wall`; at most 1000) [default: 100].
    #[arg(long, value_name = "HZ", help_heading = "Profiling")]
    pub wall_frequency: Option<u32>,
    /// How stacks are walked: `tables` reads each object's unwind tables, so stacks go through C
    /// libraries and code without frame pointers and the workload keeps cargo's release flags;
    /// `frame-pointers` builds with `-C force-frame-pointers=yes` and walks those only (callers
    /// of C code are lost; cheaper per stack with `--alloc exact`).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = contprof_engine::runner::Unwind::Tables, help_heading = "Profiling")]
    pub unwind: contprof_engine::runner::Unwind,
}

/// Where results go.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Directory for this run's profiles and flame graphs [default: <target-dir>/contprof/latest/<target>].
    #[arg(long, short = 'o', value_name = "DIR", help_heading = "Output")]
    pub output_dir: Option<PathBuf>,
    /// How many functions the terminal table lists.
    #[arg(long, value_name = "N", default_value_t = 20, help_heading = "Output")]
    pub top: usize,
    /// Tag the stored run, e.g. `--tag service=api --tag version=1.2` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", help_heading = "Output")]
    pub tags: Vec<String>,
    /// In the table, show the self time of std/core/alloc/libc frames as their own instead of
    /// counting it in the nearest caller in your code.
    #[arg(long, help_heading = "Output")]
    pub raw_frames: bool,
    /// Do not record the run in the store (profiles are still written to the output directory).
    #[arg(long, help_heading = "Output")]
    pub no_store: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The store of a project: `--store`, or the default one of the workspace at `--manifest-path`.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreScope {
    /// Path to Cargo.toml (locates the default store).
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Which store to use.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Profile store: a directory, `file:///path`, `s3://bucket/prefix`, `gs://...` or `az://...`
    /// [default: $CONTPROF_STORE, else <workspace>/.contprof/store]
    #[arg(long = "store", value_name = "URL", global = true, help_heading = "Store")]
    pub url: Option<String>,
}

/// `cargo contprof run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target selection.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Cargo flags.
    #[command(flatten)]
    pub cargo: CargoFlags,
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Arguments for the workload (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// `cargo contprof test` and `cargo contprof bench`.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Only tests/benchmarks whose name contains FILTER (with --exact: equal to it). Targets with
    /// `harness = false` run only when FILTER matches their target name.
    #[arg(value_name = "FILTER")]
    pub filter: Option<String>,
    /// Match FILTER exactly.
    #[arg(long)]
    pub exact: bool,
    /// Only the library's unit tests.
    #[arg(long, help_heading = "Target Selection")]
    pub lib: bool,
    /// Only the tests of binary NAME (repeatable).
    #[arg(long = "bin", value_name = "NAME", help_heading = "Target Selection")]
    pub bins: Vec<String>,
    /// Only the integration test NAME (repeatable).
    #[arg(long = "test", value_name = "NAME", help_heading = "Target Selection")]
    pub tests: Vec<String>,
    /// Only the benchmark target NAME (repeatable).
    #[arg(long = "bench", value_name = "NAME", help_heading = "Target Selection")]
    pub benches: Vec<String>,
    /// Run only the ignored tests.
    #[arg(long, conflicts_with = "include_ignored")]
    pub ignored: bool,
    /// Run ignored tests too.
    #[arg(long)]
    pub include_ignored: bool,
    /// How many tests run at once [default: number of CPUs for tests, 1 for benchmarks].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Kill a test or benchmark that runs longer than this (seconds); it is reported as timed out
    /// and its samples are kept.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub timeout: f64,
    /// Cargo flags.
    #[command(flatten)]
    pub cargo: CargoFlags,
    /// Sampling flags.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Arguments passed to every test or benchmark process (after `--`), e.g. `--nocapture`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// Report format of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    /// Terminal table.
    #[default]
    Text,
    /// The versioned JSON report.
    Json,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// Statistics flags shared by `compare` and `check`; unset ones come from the configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct StatsArgs {
    /// False discovery rate (Benjamini–Hochberg) [default: config, else 0.05].
    #[arg(long, value_name = "Q", help_heading = "Statistics")]
    pub alpha: Option<f64>,
    /// Minimum relative change to report, every metric (0.05 = 5%) [default: config, else 0.05].
    #[arg(long, value_name = "FRACTION", help_heading = "Statistics")]
    pub min_effect: Option<f64>,
    /// Leave functions matching this regular expression out of the tests (repeatable).
    #[arg(long = "ignore", value_name = "REGEX", help_heading = "Statistics")]
    pub ignore: Vec<String>,
    /// Compare even when the profiling settings of the two sides differ (warn instead of refusing).
    #[arg(long, help_heading = "Statistics")]
    pub allow_mismatch: bool,
    /// Gate on every regression beyond noise, also those the diff does not explain (no code on
    /// the function's call paths changed: layout, machine or input) and those whose cost moved
    /// from other functions while a caller's total stayed the same (inlining); by default they are
    /// reported as `shifted` and `moved` and do not fail the gate.
    #[arg(long, help_heading = "Statistics")]
    pub strict: bool,
}

impl StatsArgs {
    /// What these flags change in the configuration's comparison options.
    pub fn overrides(&self) -> contprof_engine::config::Overrides {
        contprof_engine::config::Overrides {
            alpha: self.alpha,
            min_effect: self.min_effect,
            ignore: self.ignore.clone(),
            strict: self.strict,
        }
    }
}

/// `cargo contprof compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Base: a git revision or run id(s) [default: the baseline of HEAD, as `check` finds it].
    #[arg(value_name = "BASE")]
    pub base: Option<String>,
    /// Head: a git revision or run id(s) [default: the runs of the current commit, dirty included].
    #[arg(value_name = "HEAD")]
    pub head: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only targets/tests/benchmarks whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub group: Option<String>,
    /// Sample-label filters `key=value[,key=value]` (repeatable): compare only the samples that
    /// carry these labels (`contprof::labels`, or a `tracing` span's fields through
    /// `contprof-tracing`: `endpoint=/search`). Values of one key are alternatives; keys combine.
    /// A run with no such sample is left out, with a warning.
    #[arg(long = "sample-label", value_name = "K=V")]
    pub sample_labels: Vec<String>,
    /// Break each target's CPU, allocations and waits down by the values of this sample label
    /// (`--by endpoint`): each value's median share and amount per run in base and head, and
    /// whether it changed beyond the runs' spread. Reported in every format, never gated.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// Directory for differential flame graphs [default: <target-dir>/contprof/compare].
    #[arg(long, value_name = "DIR")]
    pub flamegraph_dir: Option<PathBuf>,
    /// Do not draw differential flame graphs.
    #[arg(long)]
    pub no_flamegraphs: bool,
    /// Statistics.
    #[command(flatten)]
    pub stats: StatsArgs,
    /// Path to Cargo.toml (locates the store and the configuration).
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `cargo contprof check`.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// With --tests/--benches: only tests/benchmarks whose name contains FILTER.
    #[arg(value_name = "FILTER")]
    pub filter: Option<String>,
    /// Record the test suite (one process per test).
    #[arg(long, help_heading = "Target Selection", conflicts_with = "benches")]
    pub tests: bool,
    /// Record the benchmarks (one profile per benchmark).
    #[arg(long, help_heading = "Target Selection")]
    pub benches: bool,
    /// Target selection (with --tests/--benches: which test/bench targets).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Runs per target [default: config `check.runs`, else 10; with `--engine instructions`, 1].
    /// With an interleaved base, the most: the sides are recorded in pairs, and from the third
    /// pair on `check` stops as soon as every function is clearly unchanged, at a stated power of
    /// `--stop-power` or with half of N recorded (a regression, or a hint of one, keeps it
    /// recording to N); the report says how many runs were used. With the instructions engine and
    /// no N given, the tests (or benchmarks, or targets) whose counts changed run once more a
    /// side, to tell a change of the code (it repeats) from threads racing (it does not).
    #[arg(long, value_name = "N", help_heading = "Profiling")]
    pub runs: Option<u32>,
    /// Record all N runs of `--runs` even when the answer is clear earlier [config
    /// `check.all_runs`].
    #[arg(long, help_heading = "Profiling")]
    pub all_runs: bool,
    /// The stated power an early stop needs: the smallest change it could see in a function of
    /// 5% of the measure, at most this [default: config `check.stop_power`, else 0.10].
    #[arg(long, value_name = "FRACTION", help_heading = "Profiling", value_parser = positive_fraction)]
    pub stop_power: Option<f64>,
    /// What measures the workload: `agent` (sampling) or `instructions` (callgrind: exact
    /// per-function instruction counts, one run a side is enough) [default: config `engine`, else
    /// agent].
    #[arg(long, value_enum, value_name = "ENGINE", help_heading = "Profiling")]
    pub engine: Option<contprof_engine::runner::Engine>,
    /// CPU sampling rate in Hz. Far higher than `run`'s default: a comparison needs samples more
    /// than it minds the overhead (about 40% of CPU at 9999 Hz on a VM, paid by base and head alike).
    #[arg(long, value_name = "HZ", default_value_t = contprof_engine::runner::CHECK_FREQUENCY, help_heading = "Profiling")]
    pub frequency: u32,
    /// Allocation profiling.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = AllocArg::Sampled, help_heading = "Profiling")]
    pub alloc: AllocArg,
    /// Mean bytes between allocation samples (`--alloc sampled`).
    #[arg(long, value_name = "BYTES", default_value = "512K", help_heading = "Profiling")]
    pub alloc_interval: String,
    /// Record where threads wait, on both sides, so that `delay` and `contentions` are compared
    /// (see `run --help`).
    #[arg(long, help_heading = "Profiling")]
    pub contention: bool,
    /// Sampling rate of `--contention` (implies it; see `run --help`) [default: 10us].
    #[arg(long, value_name = "DURATION", help_heading = "Profiling")]
    pub contention_rate: Option<String>,
    /// Sample wall time on both sides, so that `wall` is compared (see `run --help`).
    #[arg(long, help_heading = "Profiling")]
    pub wall: bool,
    /// Wall-clock samples per second (implies `--wall`) [default: 100].
    #[arg(long, value_name = "HZ", help_heading = "Profiling")]
    pub wall_frequency: Option<u32>,
    /// How stacks are walked (see `run --help`).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = contprof_engine::runner::Unwind::Tables, help_heading = "Profiling")]
    pub unwind: contprof_engine::runner::Unwind,
    /// With --tests/--benches: how many run at once [default: number of CPUs for tests, 1 for
    /// benchmarks].
    #[arg(short, long, value_name = "N", help_heading = "Profiling")]
    pub jobs: Option<usize>,
    /// With --tests/--benches: kill a test or benchmark that runs longer than this (seconds); it
    /// is reported as timed out and its samples are kept.
    #[arg(long, value_name = "SECS", default_value_t = 300.0, help_heading = "Profiling")]
    pub timeout: f64,
    /// Baseline revision [default: merge-base with the default branch, or nearest ancestor with runs].
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// When no baseline exists: record HEAD and pass (exit 0) or fail (exit 5) [default: config, else pass].
    #[arg(long, value_enum, value_name = "WHAT")]
    pub no_baseline: Option<contprof_engine::config::NoBaseline>,
    /// Where the base's runs come from: `interleaved` builds the base revision in a git worktree and
    /// records base and head alternately (A B A B ...) in this job, which cancels the drift between
    /// batches recorded at different times (twice the recording time, plus the base's build);
    /// `stored` compares with runs recorded earlier; `auto` interleaves when HEAD is off the default
    /// branch and the base commit is in the clone, else uses the store
    /// [default: config `check.baseline`, else auto].
    #[arg(long, value_enum, value_name = "MODE")]
    pub baseline: Option<contprof_engine::config::BaselineMode>,
    /// Same as `--baseline interleaved`.
    #[arg(long, conflicts_with = "baseline")]
    pub rebuild_base: bool,
    /// GitHub Actions output: annotations on regressed functions, the job summary, the comment marker
    /// [default: on when GITHUB_ACTIONS=true].
    #[arg(long)]
    pub github: bool,
    /// Directory for report.md, report.json, report.txt and flame graphs [default: <target-dir>/contprof/check].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Break each target's CPU, allocations and waits down by the values of this sample label in
    /// the reports and the PR comment (`--by endpoint`), as `compare --by` does. Never gates.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// Statistics.
    #[command(flatten)]
    pub stats: StatsArgs,
    /// Cargo flags.
    #[command(flatten)]
    pub cargo: CargoFlags,
    /// Tag the stored run (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Arguments for the workload (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// `cargo contprof agent upload ARGS...`: the arguments the agent writes for its uploader
/// (`--pid=`, `--service=`, ... see `contprof_protocol::service::UploaderArgs`, which writes and
/// parses them), taken as they are.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// `--pid=PID --service=NAME --version=VERSION --zone=ZONE --instance=NAME --store=STORE
    /// --period=SECONDS --window=SECONDS --types=LIST [--replicas=N] [--label=K=V]... [--log=FILE]`
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// `cargo contprof prod ...`.
#[derive(Debug, Subcommand)]
pub enum ProdCommand {
    /// Services, deployments (service, version, zone) and their windows per profile type.
    #[command(after_help = "Examples:
  cargo contprof prod list --store s3://profiles/prod
  cargo contprof prod list --service indexing --since 7d --format json")]
    List(ProdListArgs),
    /// Write the selected windows as pprof files (`go tool pprof` reads them).
    #[command(after_help = "Examples:
  cargo contprof prod export --service indexing --version 1.4 --type heap --since 2h heap/")]
    Export(ProdExportArgs),
    /// Compare two selections, each window one observation: function-level verdicts with the same
    /// rules and the same JSON contract as `compare`. Exits 1 when the head regressed.
    #[command(after_help = "Examples:
  cargo contprof prod compare --service indexing --base version=1.3 --head version=1.4 --since 7d
  cargo contprof prod compare --service indexing --base zone=eu,version=1.4 --head zone=us,version=1.4 --format markdown")]
    Compare(ProdCompareArgs),
    /// The fleet's CPU in cores (or heap in bytes, --type heap): services, then the functions and
    /// crates that cost the most core-seconds a day (hold the most memory) across every service
    /// in the store, who pays for each, its trend over the span, and what a speed-up of each would
    /// save. Replicas are counted per hour from the instances that recorded windows (see the
    /// production chapter for the method and its error).
    #[command(after_help = "Examples:
  cargo contprof prod top --store s3://profiles/prod --since 7d
  cargo contprof prod top --since 7d --limit 50 --speedup 0.05 --format markdown > fleet-week.md
  cargo contprof prod top --type heap --since 24h
  cargo contprof prod top --service indexing --format json")]
    Top(ProdTopArgs),
    /// Write the hourly and daily rollups that let `prod` queries and `serve` read a day or a
    /// month of windows as tens of objects: merged stacks plus per-window costs, and the fleet
    /// summaries `prod top` reads. A pass reads only the hours with new windows. Safe to run at
    /// any time, and by several processes at once; `serve` runs it in the background.
    #[command(after_help = "Examples:
  cargo contprof prod compact --store s3://profiles/prod
  cargo contprof prod compact --service indexing --full")]
    Compact(ProdCompactArgs),
    /// Write the viewer's page of a selection (breakdown, timeline, merged flame graph) or, with
    /// --base and --head, of a comparison (differential flame graph and verdicts), as one
    /// self-contained HTML file: what `serve` shows under /prod.
    #[command(after_help = "Examples:
  cargo contprof prod report --service indexing --since 7d --html week.html
  cargo contprof prod report --service indexing --base version=1.3 --head version=1.4 --html release.html")]
    Report(ProdReportArgs),
    /// Pause production profiling of a service (or, without --service, of every service) with
    /// no redeploy: one object in the store, which every uploader reads once per period. While
    /// paused no window is recorded and the agents sample nothing. `prod list` shows it.
    #[command(after_help = "Examples:
  cargo contprof prod pause --store s3://profiles/prod --service indexing --reason 'incident 4211'
  cargo contprof prod resume --store s3://profiles/prod --service indexing")]
    Pause(ProdPauseArgs),
    /// Resume production profiling paused by `prod pause` (of one service, or without --service
    /// the pause of every service): the uploaders take windows again from their next period.
    Resume(ProdResumeArgs),
    /// Debug information for binaries that services run stripped: `add` puts a binary's (an
    /// unstripped copy, or `objcopy --only-keep-debug` output) in the store under its build id,
    /// and the uploaders of services running that build name its frames with it, with files,
    /// lines and inlined frames, from their next window on.
    #[command(subcommand)]
    Symbols(ProdSymbolsCommand),
    /// Judge every rollout without being asked: for each service, each version is compared with
    /// the version it replaced (the one whose windows began last before its own), as `prod
    /// compare` would, once both have enough windows; the verdict is stored, so each rollout is
    /// judged once. For a cron job or a CI schedule: exits 1 when a rollout judged by this run
    /// regressed; Markdown for a chat hook.
    Watch(ProdWatchArgs),
}

/// `cargo contprof prod watch`.
#[derive(Debug, Args)]
pub struct ProdWatchArgs {
    /// Which windows (`--since` bounds how far back rollouts are looked for).
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// The profile type judged: cpu, alloc, heap, contention or wall.
    #[arg(long = "type", value_name = "TYPE", default_value = "cpu")]
    pub profile_type: String,
    /// Windows each version needs before its rollout is judged (fewer: it waits for the next run).
    #[arg(long, value_name = "N", default_value_t = contprof_engine::prod::rollouts::DEFAULT_MIN_WINDOWS)]
    pub min_windows: usize,
    /// Report format: a line per rollout (text), a Markdown list, or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// How the versions are compared.
    #[command(flatten)]
    pub judging: JudgingArgs,
}

/// `cargo contprof prod symbols ...`.
#[derive(Debug, Subcommand)]
pub enum ProdSymbolsCommand {
    /// Put the debug information of each FILE in the store, under its GNU build id (stored
    /// gzip-compressed; a build id the store has already is left as it is).
    Add(ProdSymbolsAddArgs),
    /// The build ids the store has debug information for.
    List(ProdSymbolsListArgs),
}

/// `cargo contprof prod symbols add`.
#[derive(Debug, Args)]
pub struct ProdSymbolsAddArgs {
    /// ELF files with debug information or a symbol table: the unstripped binary, or the
    /// `.debug` file a release step split off it.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof prod symbols list`.
#[derive(Debug, Args)]
pub struct ProdSymbolsListArgs {
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof prod pause`.
#[derive(Debug, Args)]
pub struct ProdPauseArgs {
    /// Only this service (by default, every service of the store).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Why, shown by `prod list` and in the uploaders' messages.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof prod resume`.
#[derive(Debug, Args)]
pub struct ProdResumeArgs {
    /// Only this service (by default, the pause of every service).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof prod report`.
#[derive(Debug, Args)]
pub struct ProdReportArgs {
    /// Which windows.
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// The profile type: cpu, alloc, heap, threads, contention or wall.
    #[arg(long = "type", value_name = "TYPE", default_value = "cpu")]
    pub profile_type: String,
    /// Compare: the base side, `key=value[,key=value]` (with --head).
    #[arg(long, value_name = "LABELS", requires = "head")]
    pub base: Option<String>,
    /// Compare: the head side (with --base).
    #[arg(long, value_name = "LABELS", requires = "base")]
    pub head: Option<String>,
    /// Colour the timeline by version, zone or instance.
    #[arg(long, value_name = "KEY", default_value = "version")]
    pub color: String,
    /// On a selection's page (not a comparison's), also chart this function's share of each
    /// window over time, and its median share per version: a change inside a version told apart
    /// from one at a version boundary.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Break the windows down by the values of this sample label (`--by endpoint`): each value's
    /// part of the measure; on a comparison (`--base`, `--head`) each value tested window against
    /// window. Reads the windows themselves, not the rollups.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// Where to write the page.
    #[arg(long, value_name = "FILE", required = true)]
    pub html: PathBuf,
}

/// `cargo contprof prod compact`.
#[derive(Debug, Args)]
pub struct ProdCompactArgs {
    /// Only this service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Days already rolled up are listed again for late windows when they ended less than this
    /// many days ago.
    #[arg(long, value_name = "DAYS", default_value_t = 2)]
    pub rescan_days: u32,
    /// List and read every day and hour again (after a long outage of the uploaders, or once
    /// after an upgrade, to write the fleet summaries of older days).
    #[arg(long)]
    pub full: bool,
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// Which production windows.
#[derive(Debug, Args, Clone)]
pub struct ProdSelectArgs {
    /// The service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Windows that started since then: an age (`30m`, `24h`, `7d`), a date or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "24h")]
    pub since: String,
    /// Windows that started until then (same forms; a date covers its whole day).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this version (repeatable).
    #[arg(long = "version", value_name = "V")]
    pub versions: Vec<String>,
    /// Only this zone (repeatable).
    #[arg(long = "zone", value_name = "Z")]
    pub zones: Vec<String>,
    /// Only this replica (repeatable).
    #[arg(long = "instance", value_name = "I")]
    pub instances: Vec<String>,
    /// Label filters `key=value[,key=value]` (repeatable): version, zone, instance or a custom
    /// label of the agent's `CONTPROF_LABELS`. Values of one key are alternatives; keys combine.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Sample-label filters `key=value[,key=value]` (repeatable): only the samples that carry
    /// these labels count (`contprof::labels`, or a `tracing` span's fields through
    /// `contprof-tracing`: `endpoint=/search`), and windows with none are left out. Values of one
    /// key are alternatives; keys combine. Reads the windows themselves (rollups hold no
    /// per-label costs).
    #[arg(long = "sample-label", value_name = "K=V")]
    pub sample_labels: Vec<String>,
    /// Store.
    #[command(flatten)]
    pub scope: StoreScope,
}

/// `cargo contprof prod list`.
#[derive(Debug, Args)]
pub struct ProdListArgs {
    /// Which windows.
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// Only these profile types (repeatable): cpu, alloc, heap, threads, contention, wall.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// List every window, not only the deployments (text; JSON always has them).
    #[arg(long)]
    pub windows: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// Output of `prod list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table.
    Text,
    /// JSON for machines.
    Json,
}

/// `cargo contprof prod top`.
#[derive(Debug, Args)]
pub struct ProdTopArgs {
    /// Which windows (every service's without --service).
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// What to rank: CPU (`cpu` windows; core-seconds a day) or the heap in use (`heap` windows;
    /// mean bytes in use over the span).
    #[arg(long = "type", value_enum, default_value_t = TopType::Cpu)]
    pub measure: TopType,
    /// Functions and crates listed.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// The relative speed-up whose savings are listed (0.1: each function 10% faster, or holding
    /// 10% less memory).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1)]
    pub speedup: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TopFormat::Text)]
    pub format: TopFormat,
}

/// What `prod top` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopType {
    /// CPU, in core-seconds a day.
    Cpu,
    /// The heap in use, in bytes.
    Heap,
}

/// Output of `prod top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopFormat {
    /// Tables for a terminal.
    Text,
    /// Markdown tables (a weekly report, a chat hook).
    Markdown,
    /// JSON for machines.
    Json,
}

/// `cargo contprof prod export`.
#[derive(Debug, Args)]
pub struct ProdExportArgs {
    /// Which windows.
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// Only these profile types (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Directory to write the files to (created if needed).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `cargo contprof prod compare`.
#[derive(Debug, Args)]
pub struct ProdCompareArgs {
    /// Which windows, for both sides.
    #[command(flatten)]
    pub select: ProdSelectArgs,
    /// The base side: `key=value[,key=value]` on version, zone, instance or a custom label.
    #[arg(long, value_name = "LABELS")]
    pub base: String,
    /// The head side, as `--base`.
    #[arg(long, value_name = "LABELS")]
    pub head: String,
    /// The profile type compared: cpu, alloc, heap, contention or wall.
    #[arg(long = "type", value_name = "TYPE", default_value = "cpu")]
    pub profile_type: String,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Break the comparison down by the values of this sample label (`--by endpoint`): each
    /// value's median share and amount per window in base and head, and whether it changed
    /// beyond the windows' spread (which endpoint's part of the CPU grew). Reads the windows
    /// themselves (at most 1,000 a side), not the rollups. Reported, never gated.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// How the sides are compared.
    #[command(flatten)]
    pub judging: JudgingArgs,
}

/// How `prod compare` and `prod watch` compare windows.
#[derive(Debug, Args)]
pub struct JudgingArgs {
    /// What a window's cost is divided by: `share` (of the window's total: cancels the load, but a
    /// function above half of the metric cannot move its share), `rate` (the cost per window, per
    /// instance: for windows of comparable load), `work` (the cost per unit of work the service
    /// counted in the window, `contprof::labels::count_work`: the cost per request, under any
    /// load) or `auto` (the work if the windows counted it; else, when a function holds more
    /// than half of the metric, the rate if the load, the cost outside that function, moved by at
    /// most 10%; the share otherwise). The report says which was used, and when a function's share
    /// cannot judge it.
    #[arg(long, value_enum, default_value_t = contprof_engine::prod::denominator::Denominator::Auto)]
    pub denominator: contprof_engine::prod::denominator::Denominator,
    /// Statistics.
    #[command(flatten)]
    pub stats: StatsArgs,
}

/// A number above 0, as a relative change (0.10 = 10%).
fn positive_fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("`{s}` is not a relative change above 0 (0.10 = 10%)"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use clap::Parser as _;
    use contprof::service::Config;
    use contprof_protocol::service::UploaderArgs;

    use super::{AgentCommand, CargoCli, Command};

    /// What the agent writes for `config` reaches the uploader through the real command line
    /// (clap, then the protocol's parser) as the settings the agent has: the arguments' own
    /// encoding is tested in `contprof_protocol::service`.
    #[test]
    fn the_agents_settings_reach_the_uploader_through_the_cli() {
        let config = Config::new("-rc1 svc")
            .version("--version")
            .zone("a=b")
            .instance("ünïcödé ✓")
            .store("/tmp/x")
            .label("k", "--label=x")
            .period(Duration::from_secs_f64(1.5))
            .window(Duration::from_secs_f64(0.3))
            .log("-");
        config.validate().unwrap();
        let mut argv: Vec<std::ffi::OsString> = vec!["cargo".into(), "contprof".into()];
        argv.extend(config.uploader_args(4242));
        let CargoCli::Contprof(cli) = CargoCli::try_parse_from(argv).unwrap();
        let Command::Agent(AgentCommand::Upload(raw)) = cli.command else { panic!("not the uploader") };
        let a = UploaderArgs::parse(raw.args).unwrap();
        assert_eq!((a.pid, a.service.as_str(), a.version.as_str()), (4242, "-rc1 svc", "--version"));
        assert_eq!((a.zone.as_str(), a.instance.as_str(), a.store.as_str()), ("a=b", "ünïcödé ✓", "/tmp/x"));
        assert_eq!(a.labels, vec![("k".to_owned(), "--label=x".to_owned())]);
        assert_eq!(a.log.as_deref(), Some(Path::new("-")));
        assert_eq!(
            (a.schedule.period(), a.schedule.window()),
            (Duration::from_millis(1500), Duration::from_millis(300))
        );
    }
}
