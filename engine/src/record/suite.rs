//! Recording a suite (`cargo contprof test` and `cargo contprof bench`, and `check` on them):
//! every test or benchmark in its own process under the agent, so each profile belongs to exactly
//! one of them (libtest's 15-byte thread names cannot tell tests apart inside one process).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::request::{self, Mode, Request, Setup, Suite};
use super::{Execution, Recording, sanitize};
use crate::cargo::{self, Artifact, BuildOptions, CargoArgs, TargetKind, Workspace};
use crate::criterion;
use crate::errors::{Error, Result};
use crate::profile::CostView;
use crate::report;
use crate::runner::list::{self, Case};
use crate::runner::{self, Exit, RunSpec, Streams, pool};
use crate::shell::Shell;
use crate::timing::Phase;

/// One process to run: a case of an artifact (or the whole artifact), one repetition.
#[derive(Debug, Clone)]
struct Job {
    artifact: Artifact,
    /// `None`: the whole binary in one process (`harness = false`, custom bench mains).
    case: Option<Case>,
    group: String,
    label: String,
    repetition: u32,
    /// A benchmark of a harness that measures time per iteration.
    harness: Option<BenchHarness>,
}

/// The benchmark harnesses whose own time per iteration scales a benchmark's profile
/// (`cpu_per_iter`, see [`criterion`]).
#[derive(Debug, Clone, Copy)]
enum BenchHarness {
    /// Criterion, and how its binary selects one benchmark.
    Criterion(list::CriterionSelect),
    /// Divan (`--exact NAME`).
    Divan,
}

/// How one test process ended, in test terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Pass,
    Fail,
    TimedOut,
}

struct Done {
    job: Job,
    verdict: Ending,
    execution: Execution,
    per_iteration: Option<criterion::PerIteration>,
}

/// Builds, lists, profiles each test/benchmark of `args`, writes and stores (see
/// [`request::suite_outcome`] for what is an error).
pub fn record_suite(
    setup: &Setup,
    request: &Request,
    args: &Suite,
    shell: &Shell,
) -> Result<super::Recorded> {
    let Setup { cargo_args, workspace, agent_settings, runs, .. } = setup;
    let (agent_settings, runs, mode) = (*agent_settings, *runs, args.mode);
    let targets = select_targets(workspace, cargo_args, args, mode)?;
    if targets.is_empty() {
        return Err(Error::NothingMatched { what: format!("no {} targets to run", noun(mode)) });
    }
    let output_dir = request.output.dir.clone().unwrap_or_else(|| {
        super::target::default_output_dir(
            workspace,
            match mode {
                Mode::Test => "test",
                Mode::Bench => "bench",
            },
        )
    });
    super::prepare_output_dir(&output_dir)?;
    shell.status(
        "Building",
        format_args!("{} {} target(s) with the `{}` profile", targets.len(), noun(mode), cargo::PROFILE_NAME),
    );
    let frame_pointers = agent_settings.unwind == crate::runner::Unwind::FramePointers;
    let artifacts = setup.clock.time(Phase::Build, || {
        cargo::build(
            &BuildOptions { cargo: cargo_args, targets: &targets, frame_pointers, remap: &request.remap },
            shell,
        )
    })?;
    let agent_lib = setup.agent_library()?;
    // Listing the cases runs the binaries: it counts with the runs.
    let listing_started = Instant::now();

    let filters: Vec<String> = args.filter.iter().cloned().collect();
    let (jobs, ignored) = plan(&artifacts, args, mode, &filters, runs)?;
    if jobs.is_empty() {
        let what = match &args.filter {
            Some(f) => format!(
                "no {} matched the filter `{f}`{}",
                noun(mode),
                if ignored > 0 { format!(" ({ignored} ignored)") } else { String::new() }
            ),
            None => format!("the selected targets contain no {}", noun(mode)),
        };
        return Err(Error::NothingMatched { what });
    }
    if agent_settings.engine == crate::runner::Engine::Instructions
        && jobs.iter().any(|j| j.harness.is_some())
    {
        shell.warn(
            "criterion and divan choose their iteration counts by the clock, so the instruction counts of \
             their benchmarks follow how many iterations fit the time budget under valgrind: they are not \
             repeatable; for exact counts, run the routine a fixed number of times in a test \
             (`cargo contprof test --engine instructions`) or a `harness = false` benchmark",
        );
    }
    let distinct = jobs.iter().filter(|j| j.repetition == 1).count();
    let parallel = args.jobs.unwrap_or(match mode {
        Mode::Test => std::thread::available_parallelism().map_or(2, |n| n.get()),
        Mode::Bench => 1,
    });
    shell.status(
        "Profiling",
        format_args!(
            "{distinct} {} in {} binaries{}, {parallel} at a time",
            noun(mode),
            artifacts.len(),
            if runs > 1 { format!(", {runs} runs each") } else { String::new() }
        ),
    );

    let raw_dir = super::raw_dir(&output_dir)?;
    let packages: Vec<&cargo::Selected> = artifacts.iter().map(|a| &a.target).collect();
    let stage = request::open_stage(setup, request, &raw_dir, &packages, shell)?;
    let started = Instant::now();
    let mut done: Vec<Done> = Vec::new();
    pool::run_parallel(
        parallel,
        jobs,
        |job| {
            let run = Run {
                raw_dir: &raw_dir,
                agent_lib: &agent_lib,
                build_dir: setup.build_dir(),
                stage: stage.as_ref(),
            };
            execute(job, &run, &request.workload_args, agent_settings, args.timeout)
        },
        |d| {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    shell.warn(e);
                    return;
                }
            };
            progress(shell, &d, runs);
            done.push(d);
        },
    );
    let elapsed = started.elapsed();
    setup.clock.add(Phase::Runs, listing_started.elapsed());

    done.sort_by(|a, b| (&a.job.group, a.job.repetition).cmp(&(&b.job.group, b.job.repetition)));
    let mut labels: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for d in &done {
        let key = match mode {
            Mode::Test => "test",
            Mode::Bench => "benchmark",
        };
        labels.insert(d.job.group.clone(), vec![(key.to_owned(), d.job.label.clone())]);
    }
    let verdicts: Vec<(String, Ending, Duration)> =
        done.iter().map(|d| (d.job.group.clone(), d.verdict, d.execution.outcome.cpu)).collect();
    let failures: Vec<&Done> = done.iter().filter(|d| d.verdict != Ending::Pass).collect();
    for f in &failures {
        print_failure(f);
    }
    let failed = failures.len();
    let total = done.len();
    let recording = Recording {
        workspace,
        settings: agent_settings,
        runs,
        tags: setup.tags.clone(),
        output_dir: output_dir.clone(),
        top: 0,
        raw_frames: request.output.raw_frames,
        list_files: false,
        store: setup.store.as_ref(),
        labels,
    };
    let executions = done.into_iter().map(|d| d.execution).collect();
    let summary = setup.clock.time(Phase::Profiles, || super::finish(&recording, executions, shell))?;
    print_summary(&summary, &verdicts, mode);
    let passed = verdicts.iter().filter(|(_, v, _)| *v == Ending::Pass).count();
    let mut line = format!(
        "{passed} passed, {failed} failed, {ignored} ignored; {total} processes in {:.1}s",
        elapsed.as_secs_f64()
    );
    if mode == Mode::Test {
        line.push_str("; doc tests are not profiled");
    }
    shell.status("Summary", line);
    shell.status("Wrote", format_args!("profiles and flame graphs under {}", output_dir.display()));
    request::suite_outcome(summary, failed, total)
}

fn noun(mode: Mode) -> &'static str {
    match mode {
        Mode::Test => "tests",
        Mode::Bench => "benchmarks",
    }
}

fn select_targets(
    ws: &Workspace,
    cargo_args: &CargoArgs,
    a: &Suite,
    mode: Mode,
) -> Result<Vec<cargo::Selected>> {
    let mut out = Vec::new();
    match mode {
        Mode::Bench => {
            if a.lib || !a.bins.is_empty() || !a.tests.is_empty() {
                return Err(Error::InvalidArgument {
                    flag: "--lib/--bin/--test",
                    message: "`cargo contprof bench` selects benchmark targets with --bench NAME".into(),
                });
            }
            out.extend(ws.select_all(cargo_args, TargetKind::Bench, &a.benches)?);
        }
        Mode::Test => {
            let narrowed = a.lib || !a.bins.is_empty() || !a.tests.is_empty() || !a.benches.is_empty();
            if !narrowed || a.lib {
                out.extend(ws.select_all(cargo_args, TargetKind::Lib, &[])?);
            }
            if !narrowed || !a.bins.is_empty() {
                out.extend(ws.select_all(cargo_args, TargetKind::Bin, &a.bins)?);
            }
            if !narrowed || !a.tests.is_empty() {
                out.extend(ws.select_all(cargo_args, TargetKind::Test, &a.tests)?);
            }
            if !a.benches.is_empty() {
                out.extend(ws.select_all(cargo_args, TargetKind::Bench, &a.benches)?);
            }
        }
    }
    Ok(out)
}

/// Lists the cases of every artifact and turns the selected ones into jobs. Returns the jobs and
/// how many matching tests were skipped as ignored.
fn plan(
    artifacts: &[Artifact],
    a: &Suite,
    mode: Mode,
    filters: &[String],
    runs: u32,
) -> Result<(Vec<Job>, usize)> {
    let mut jobs = Vec::new();
    let mut ignored = 0;
    for art in artifacts {
        let t = &art.target;
        let binary = match t.kind {
            TargetKind::Lib => t.package.clone(),
            _ => t.name.clone(),
        };
        let cases: Vec<(Option<Case>, Option<BenchHarness>)> = if t.harness {
            list::libtest_cases(&art.executable, &t.package_root)?
                .into_iter()
                .filter(|c| c.bench == (mode == Mode::Bench))
                .map(|c| (Some(c), None))
                .collect()
        } else if mode == Mode::Bench {
            if let Some(found) = list::criterion_cases(&art.executable, &t.package_root)? {
                let harness = BenchHarness::Criterion(found.select);
                found.cases.into_iter().map(|c| (Some(c), Some(harness))).collect()
            } else if let Some(cases) = list::divan_cases(&art.executable, &t.package_root)? {
                cases.into_iter().map(|c| (Some(c), Some(BenchHarness::Divan))).collect()
            } else {
                vec![(None, None)]
            }
        } else {
            vec![(None, None)]
        };
        for (case, harness) in cases {
            let (group, label) = match &case {
                Some(c) => {
                    (format!("{}/{binary}/{}", t.kind.as_str(), c.name), format!("{binary}/{}", c.name))
                }
                None => (format!("{}/{binary}", t.kind.as_str()), binary.clone()),
            };
            if !a.groups.is_empty() && !a.groups.contains(&group) {
                continue;
            }
            if case.is_none() && !filters.is_empty() && !list::matches(&t.name, filters, a.exact) {
                // A filter cannot select inside a custom `main`; only its target name can match.
                continue;
            }
            if let Some(c) = &case {
                if !list::matches(&c.name, filters, a.exact) {
                    continue;
                }
                let wanted = if a.ignored { c.ignored } else { a.include_ignored || !c.ignored };
                if !wanted {
                    ignored += 1;
                    continue;
                }
            }
            for repetition in 1..=runs {
                jobs.push(Job {
                    artifact: art.clone(),
                    case: case.clone(),
                    group: group.clone(),
                    label: label.clone(),
                    repetition,
                    harness,
                });
            }
        }
    }
    Ok((jobs, ignored))
}

/// Where the processes of a suite run: what every job shares.
struct Run<'a> {
    raw_dir: &'a std::path::Path,
    agent_lib: &'a std::path::Path,
    /// Where cargo built the artifacts ([`Setup::build_dir`]).
    build_dir: &'a std::path::Path,
    /// The instructions engine's stage.
    stage: Option<&'a std::sync::Arc<runner::stage::Stage>>,
}

fn execute(
    job: Job,
    run: &Run<'_>,
    extra: &[OsString],
    settings: runner::AgentSettings,
    timeout: Duration,
) -> Result<Done> {
    let Run { raw_dir, agent_lib, build_dir, stage } = *run;
    let mut args: Vec<OsString> = Vec::new();
    let slot = raw_dir.join(sanitize(&job.group.replace('/', "__")));
    // Each criterion benchmark's estimates in a home of its own, read back below.
    let criterion_home = matches!(job.harness, Some(BenchHarness::Criterion(_)))
        .then(|| slot.join(format!("criterion-{}", job.repetition)));
    let env = request::workload_env(&job.artifact.target, build_dir, criterion_home.as_deref());
    match (&job.case, job.harness) {
        (Some(c), Some(BenchHarness::Criterion(select))) => {
            args.push("--bench".into());
            args.extend(select.args(&c.name));
            args.push("--noplot".into());
        }
        (Some(c), Some(BenchHarness::Divan)) => {
            args.extend(["--bench".into(), "--exact".into(), c.name.clone().into()]);
        }
        (Some(c), None) => {
            args.extend([c.name.clone().into(), "--exact".into(), "--test-threads=1".into()]);
            if c.ignored {
                args.push("--ignored".into());
            }
            if c.bench {
                args.push("--bench".into());
            }
        }
        (None, _) => {
            if job.artifact.target.kind == TargetKind::Bench {
                args.push("--bench".into());
            }
        }
    }
    args.extend(extra.iter().cloned());
    let spec = RunSpec {
        program: job.artifact.executable.clone(),
        args,
        cwd: job.artifact.target.package_root.clone(),
        raw_path: slot.join(format!("run-{}.raw", job.repetition)),
        settings,
        streams: Streams::Capture,
        timeout: Some(timeout),
        env,
        stage: request::staging(stage, &job.artifact.target),
    };
    let outcome = runner::run(&spec, agent_lib)?;
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let verdict = match outcome.exit {
        Exit::TimedOut => Ending::TimedOut,
        // libtest exits 0 when the filter matched nothing: that is not a pass.
        Exit::Code(0) if job.case.as_ref().is_some_and(|c| !c.bench) && !stdout.contains("1 passed") => {
            Ending::Fail
        }
        e if e.success() => Ending::Pass,
        _ => Ending::Fail,
    };
    let per_iteration = match job.harness {
        Some(BenchHarness::Criterion(_)) => criterion_home
            .as_deref()
            .and_then(criterion::mean_ns_per_iteration)
            .map(criterion::PerIteration::MeanNs),
        Some(BenchHarness::Divan) => criterion::divan_iterations(&stdout).map(criterion::PerIteration::Count),
        None => None,
    };
    Ok(Done {
        execution: Execution {
            group: job.group.clone(),
            repetition: job.repetition,
            raw_path: spec.raw_path,
            outcome,
            per_iteration,
            aliases: request::aliases(stage),
        },
        job,
        verdict,
        per_iteration,
    })
}

fn progress(shell: &Shell, d: &Done, runs: u32) {
    let verb = match d.verdict {
        Ending::Pass => "PASS",
        Ending::Fail => "FAIL",
        Ending::TimedOut => "TIMEOUT",
    };
    let rep = if runs > 1 { format!(" (run {}/{runs})", d.job.repetition) } else { String::new() };
    let wall = d.execution.outcome.wall.as_secs_f64();
    let per_iter = match d.per_iteration {
        Some(criterion::PerIteration::MeanNs(ns)) => format!(" {}/iter", report::format_duration(ns as i64)),
        Some(criterion::PerIteration::Count(n)) => format!(" {n} iterations"),
        None => String::new(),
    };
    if d.verdict == Ending::Pass {
        shell.status(verb, format_args!("[{wall:>7.3}s] {}{rep}{per_iter}", d.job.label));
    } else {
        shell.warn(format_args!("{verb} [{wall:>7.3}s] {}{rep}: {}", d.job.label, d.execution.outcome.exit));
    }
}

fn print_failure(d: &Done) {
    use std::io::Write;
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "\n--- {} ({}) ---", d.job.label, d.execution.outcome.exit);
    let _ = err.write_all(&d.execution.outcome.stdout);
    let _ = err.write_all(&d.execution.outcome.stderr);
}

/// One line per test, on stderr with the other messages: status, CPU time (as the kernel
/// measured the process, mean per run; short tests may have no samples), allocated bytes and the
/// function with the most self CPU.
fn print_summary(summary: &super::Recorded, verdicts: &[(String, Ending, Duration)], mode: Mode) {
    use std::io::Write;
    let mut out = anstream::stderr().lock();
    let name_width = summary.groups.iter().map(|g| g.group.len()).max().unwrap_or(4).min(70);
    // The instructions engine's profiles: counts instead of CPU time.
    let counted = summary
        .groups
        .iter()
        .filter_map(|g| g.merged.as_ref())
        .any(|p| p.sample_type_index(crate::profile::INSTRUCTIONS_TYPE.0).is_some());
    let _ = writeln!(
        out,
        "\n{:<name_width$}  {:>7}  {:>10}  {:>10}  top function (self {})",
        match mode {
            Mode::Test => "test",
            Mode::Bench => "benchmark",
        },
        "status",
        if counted {
            "instr"
        } else if mode == Mode::Bench {
            "per iter"
        } else {
            "cpu"
        },
        "allocated",
        if counted { "instructions" } else { "cpu" },
    );
    for g in &summary.groups {
        let status = match verdicts
            .iter()
            .filter(|(k, _, _)| *k == g.group)
            .map(|(_, v, _)| *v)
            .max_by_key(|v| *v as u8)
        {
            Some(Ending::Pass) => "ok",
            Some(Ending::Fail) => "FAILED",
            Some(Ending::TimedOut) => "TIMEOUT",
            None => "-",
        };
        let Some(p) = &g.merged else {
            let _ = writeln!(out, "{:<name_width$}  {status:>7}  (no samples)", g.group);
            continue;
        };
        let view = CostView::from_profile_folded(p, &crate::profile::names::is_library_function);
        let cost_type = if counted {
            crate::profile::INSTRUCTIONS_TYPE.0
        } else if mode == Mode::Bench && view.sample_type_index(criterion::PER_ITER_TYPE).is_some() {
            criterion::PER_ITER_TYPE
        } else {
            "cpu"
        };
        let value = |ty: &str| view.sample_type_index(ty).map_or(0, |i| view.totals[i]);
        let top = view
            .sample_type_index(cost_type)
            .and_then(|i| {
                let whole = view.totals[i].max(1) as f64;
                view.sorted_by_self(i)
                    .first()
                    .filter(|f| f.self_values[i] > 0)
                    .map(|f| format!("{} ({:.0}%)", f.name, f.self_values[i] as f64 * 100.0 / whole))
            })
            .unwrap_or_default();
        let per_run = g.runs.len().max(1) as i64;
        let _ = writeln!(
            out,
            "{:<name_width$}  {status:>7}  {:>10}  {:>10}  {top}",
            g.group,
            if cost_type == "cpu" {
                let runs: Vec<Duration> =
                    verdicts.iter().filter(|(k, _, _)| *k == g.group).map(|(_, _, cpu)| *cpu).collect();
                let mean = runs.iter().sum::<Duration>() / runs.len().max(1) as u32;
                report::format_duration(mean.as_nanos() as i64)
            } else if counted {
                report::format_count(value(cost_type) / per_run)
            } else {
                report::format_duration(value(cost_type))
            },
            report::format_bytes(value("alloc_space") / per_run),
        );
    }
}
