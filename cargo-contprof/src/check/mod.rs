//! `cargo contprof check`, the CI gate: records HEAD through the one recording path, finds
//! the baseline, compares, writes `report.{md,json,txt}` and differential flame graphs, prints the
//! text report and exits with the gate's code.

mod confirm;
mod side;

use std::time::Instant;

use super::args::{CheckArgs, ReportFormat};
use super::compare::{ChosenSide, Context, Labels, compare_sides, say_warnings, write_flamegraphs};
use super::output::{render, verdict, write_stdout};
use contprof_engine::cargo::CargoArgs;
use contprof_engine::config::{BaselineMode, CheckTarget, NoBaseline};
use contprof_engine::errors::{Error, Result};
use contprof_engine::git::short_commit;
use contprof_engine::record::interleaved::{self, BaseCheckout};
use contprof_engine::record::write_atomic;
use contprof_engine::shell::Shell;
use contprof_engine::store::RunMetadata;
use contprof_engine::timing;
use side::{Clocks, Part, record_side};

/// Runs used when neither `--runs` nor `check.runs` says, with the sampling engine: the detection
/// figures in the book (`docs/src/measurements.md`) were measured with 10 runs a side (the instructions engine: 1).
pub const DEFAULT_RUNS: u32 = 10;

/// Runs the command.
pub fn run(args: CheckArgs, shell: &Shell) -> Result<()> {
    let started = Instant::now();
    let cargo_args = CargoArgs::from(&args.cargo);
    let ctx = Context::load(&cargo_args, &args.store)?;
    let config = &ctx.config.config;
    // Instruction counts repeat where the program does the same work: one run a side (and with an
    // interleaved base, one more of the groups whose counts changed: `confirm`).
    let engine = args.engine.or(config.engine).unwrap_or_default();
    let exact = engine == contprof_engine::runner::Engine::Instructions;
    let asked_runs = args.runs.or(config.check.runs);
    let runs = asked_runs.unwrap_or(if exact { 1 } else { DEFAULT_RUNS });
    let no_baseline = args.no_baseline.or(config.check.no_baseline).unwrap_or(NoBaseline::Pass);
    // Options and an explicit base are checked before the (long) recording.
    let options = ctx.options(&args.stats)?;
    if let Some(rev) = &args.base
        && !contprof_engine::store::looks_like_run_id(rev)
    {
        match &ctx.repo {
            Some(repo) => {
                repo.resolve(rev).map_err(|e| Error::msg(format!("--base: {e}{}", repo.shallow_note())))?;
            }
            None => return Err(Error::msg(format!("--base {rev}: revisions need a git repository"))),
        }
    }
    let targets = targets(&args, config.check_targets());
    let mode = if args.rebuild_base {
        BaselineMode::Interleaved
    } else {
        args.baseline.or(config.check.baseline).unwrap_or(BaselineMode::Auto)
    };
    let to_rebuild = interleaved::base_to_rebuild(mode, args.base.as_deref(), ctx.repo.as_ref(), shell)?;
    let interleaved = to_rebuild.is_some();
    let mut args = args;
    if interleaved {
        // Both sides' runs carry one value of this tag, unique to this job: the comparison below,
        // and any later one of the same runs (`compare` by run ids, the viewer), then uses the
        // method for interleaved sides (`Options::for_interleaved`) and no history.
        let job = contprof_engine::store::new_run_id(chrono::Utc::now());
        args.tags.push(format!("{}={job}", contprof_engine::store::INTERLEAVED_TAG));
    }

    let mut recorded = Vec::new();
    let mut rebuilt = None;
    let clocks = Clocks::default();
    let mut used = None;
    if let Some(base) = to_rebuild {
        let sequential = !args.all_runs && !config.check.all_runs.unwrap_or(false);
        // Exact counts: a second pair of the groups the first found anything in (`confirming`).
        let confirming = exact && asked_runs.is_none() && sequential;
        let confirmation = confirm::Confirmation::default();
        let max_runs = if confirming { 2 } else { runs };
        let stop_power = args
            .stop_power
            .or(config.check.stop_power)
            .unwrap_or(contprof_engine::compare::sequential::DEFAULT_STOP_POWER);
        let look = |base: &ChosenSide, head: &ChosenSide| -> Result<bool> {
            let n = base.runs.len().min(head.runs.len()) / targets.len().max(1);
            if !sequential || n < contprof_engine::compare::sequential::MIN_PAIRS {
                return Ok(false);
            }
            let compared = compare_sides(&ctx, base, head, None, &Labels::default(), &args.stats, &options)?;
            match contprof_engine::compare::sequential::look(
                &compared.comparison,
                &options,
                stop_power,
                runs as usize,
            ) {
                contprof_engine::compare::sequential::Look::Unchanged { power } => {
                    shell.status(
                        "Stopping",
                        format_args!(
                            "after {n} of at most {runs} runs a side: every function is clearly unchanged \
                             (changes of {:.0}% in functions of 5% would have been seen)",
                            100.0 * power
                        ),
                    );
                    Ok(true)
                }
                contprof_engine::compare::sequential::Look::Continue(why) => {
                    shell.note(format_args!("after {n} runs a side, recording on: {why}"));
                    Ok(false)
                }
            }
        };
        let repo = ctx.repo.as_ref().ok_or_else(|| {
            Error::msg("--baseline interleaved needs a git repository to check the base out")
        })?;
        let manifest =
            args.cargo.manifest_path.clone().unwrap_or_else(|| ctx.workspace.root().join("Cargo.toml"));
        let mut record = |target: &CheckTarget,
                          checkout: Option<&BaseCheckout>,
                          announce: &dyn Fn()|
         -> Result<Option<RunMetadata>> {
            let Some(only) = confirmation.only(target) else { return Ok(None) };
            announce();
            let clock = if checkout.is_some() { &clocks.base } else { &clocks.head };
            let part = Part { target, runs: 1, only: &only };
            let summary = record_side(&args, part, &ctx, checkout, clock, shell)?;
            let stored =
                summary.stored.ok_or_else(|| Error::msg("the run was not stored; `check` needs a store"))?;
            if checkout.is_none() {
                confirmation.recorded(target, &stored);
            }
            Ok(Some(stored))
        };
        let mut look_at_runs = |b: &[RunMetadata], h: &[RunMetadata]| {
            let (b, h) = sides(&base, b, h);
            if !confirming {
                return look(&b, &h);
            }
            let compared = compare_sides(&ctx, &b, &h, None, &Labels::default(), &args.stats, &options)?;
            Ok(confirmation.look(&compared.comparison, shell))
        };
        let (base_runs, head_runs) = interleaved::record_interleaved(
            repo,
            ctx.workspace.target_dir(),
            &manifest,
            &base,
            &targets,
            max_runs,
            &mut record,
            &mut look_at_runs,
            shell,
        )?;
        let (base, head) = sides(&base, &base_runs, &head_runs);
        let head = head.runs;
        let per_side = (head.len() / targets.len().max(1)) as u32;
        used = (runs as usize > contprof_engine::compare::sequential::MIN_PAIRS)
            .then_some(contprof_engine::timing::RunsUsed { used: per_side, max: runs });
        (rebuilt, recorded) = (Some(base), head);
    }
    for target in targets.iter().filter(|_| !interleaved) {
        let summary = record_side(&args, Part { target, runs, only: &[] }, &ctx, None, &clocks.head, shell)?;
        match summary.stored {
            Some(meta) => recorded.push(meta),
            None => return Err(Error::msg("the run was not stored; `check` needs a store")),
        }
    }
    let head = ChosenSide {
        label: "HEAD".to_owned(),
        commit: recorded.first().and_then(|r| r.commit.clone()),
        runs: recorded,
    };
    let analysis_started = Instant::now();
    let head_groups =
        contprof_engine::pipeline::select_groups(&head.runs, &contprof_engine::pipeline::all_groups);
    let base = match &args.base {
        _ if rebuilt.is_some() => rebuilt,
        Some(rev) => match ctx.side(rev, true) {
            // `--base HEAD` (or the commit HEAD is on): the runs just recorded are not their own base.
            Ok(mut side) => {
                side.runs.retain(|r| !head.runs.iter().any(|h| h.run_id == r.run_id));
                (!side.runs.is_empty()).then_some(side)
            }
            Err(Error::NothingMatched { what }) => {
                shell.warn(what);
                None
            }
            Err(e) => return Err(e),
        },
        None => ctx.find_baseline(&head, &head_groups)?,
    };
    let Some(base) = base else {
        super::ci::shallow_hint(&ctx, shell);
        let ids: Vec<&str> = head.runs.iter().map(|r| r.run_id.as_str()).collect();
        let message = format!(
            "no baseline for {}: no stored runs of the same targets and settings on the merge-base with \
             the default branch or its ancestors{}; HEAD was recorded (run {}) and will be the baseline \
             of later commits",
            head.describe(),
            args.base.as_deref().map(|b| format!(" (--base {b})")).unwrap_or_default(),
            ids.join(", ")
        );
        return match no_baseline {
            NoBaseline::Pass => {
                shell.warn(&message);
                Ok(())
            }
            NoBaseline::Fail => Err(Error::NoBaseline { message }),
        };
    };
    ctx.warn_skipped(shell);
    shell.status("Comparing", format_args!("{} with {}", head.describe(), base.describe()));

    let labels = Labels { by: args.by.as_deref(), ..Labels::default() };
    let compared = compare_sides(&ctx, &base, &head, None, &labels, &args.stats, &options)?;
    say_warnings(&compared, shell);
    let contprof_engine::pipeline::Compared { prepared, comparison: mut cmp } = compared;
    let extras =
        super::ci::Extras::build(&ctx, &prepared, &cmp, contprof_engine::github::enabled(args.github), shell);
    let dir = args.report_dir.clone().unwrap_or_else(|| ctx.workspace.target_dir().join("contprof/check"));
    write_flamegraphs(&prepared, &ctx.store, &cmp, &dir, shell)?;
    let mut timings = timing::timings(
        &[("head", &*clocks.head), ("base", &*clocks.base)],
        analysis_started.elapsed(),
        started.elapsed(),
    );
    timings.runs = used;
    cmp.timings = Some(timings);
    let (mut text, mut markdown) = (Vec::new(), Vec::new());
    for (format, name) in [
        (ReportFormat::Markdown, "report.md"),
        (ReportFormat::Json, "report.json"),
        (ReportFormat::Text, "report.txt"),
    ] {
        let mut bytes = Vec::new();
        render(&cmp, format, &mut bytes).map_err(|e| Error::io("could not render", name, e))?;
        if format == ReportFormat::Markdown {
            bytes = extras.markdown(bytes);
            markdown.clone_from(&bytes);
        }
        write_atomic(&dir.join(name), &bytes)?;
        if format == ReportFormat::Text {
            text = bytes;
        }
    }
    shell.status("Wrote", format_args!("report.md, report.json, report.txt in {}", dir.display()));
    write_stdout(&text)?;
    extras.publish(&cmp, &markdown)?;
    verdict(&cmp)
}

/// What to record: the flags, else `[check] targets`, else the default target of `run`.
fn targets(args: &CheckArgs, configured: Vec<CheckTarget>) -> Vec<CheckTarget> {
    let t = &args.target;
    let single = [("bin", &t.bin), ("example", &t.example), ("bench", &t.bench), ("test", &t.test)]
        .into_iter()
        .find_map(|(kind, name)| {
            name.as_ref().map(|n| CheckTarget::Single { kind: kind.to_owned(), name: n.clone() })
        });
    if args.tests {
        vec![CheckTarget::Tests(args.filter.clone())]
    } else if args.benches {
        vec![CheckTarget::Benches(args.filter.clone())]
    } else if let Some(s) = single {
        vec![s]
    } else if !configured.is_empty() {
        configured
    } else {
        vec![CheckTarget::Single { kind: String::new(), name: String::new() }]
    }
}

/// The rebuilt base `base` and the head as sides of a comparison, from their runs so far.
fn sides(base: &str, base_runs: &[RunMetadata], head_runs: &[RunMetadata]) -> (ChosenSide, ChosenSide) {
    let newest_first = |runs: &[RunMetadata]| runs.iter().rev().cloned().collect::<Vec<_>>();
    let head = newest_first(head_runs);
    (
        ChosenSide {
            label: format!("{} (rebuilt)", short_commit(base)),
            commit: Some(base.to_owned()),
            runs: newest_first(base_runs),
        },
        ChosenSide {
            label: "HEAD".to_owned(),
            commit: head.first().and_then(|r| r.commit.clone()),
            runs: head,
        },
    )
}
