//! `cargo contprof serve` and `cargo contprof report --html`: the viewer, live over a store or as
//! one self-contained HTML file. Both render through `viewer`, so the views are the same.

use std::path::Path;

use super::args::{ReportArgs, ServeArgs};
use super::settings;
use contprof_engine::errors::{Error, Result};
use contprof_engine::git::Repo;
use contprof_engine::profile::{self, Profile};
use contprof_engine::record::write_atomic;
use contprof_engine::shell::Shell;
use contprof_engine::store::{self, Store};
use contprof_viewer::{self as viewer, Comparing, ReportInput, ServeOptions};

fn viewer_err(context: &str, e: viewer::ViewerError) -> Error {
    Error::Other { context: context.to_owned(), source: Some(Box::new(e)) }
}

/// `cargo contprof serve`.
pub fn serve(args: ServeArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let location = project.store_location(&args.scope.store)?;
    let bind = args.bind.parse().map_err(|_| Error::InvalidArgument {
        flag: "--bind",
        message: format!("`{}` is not an address like 127.0.0.1:7878", args.bind),
    })?;
    let shown = location.display();
    let comparing = comparing(&project, shell);
    let compact_location = location.clone();
    let opts = ServeOptions {
        bind,
        allow_remote: args.allow_remote,
        comparing: comparing.clone(),
        ..ServeOptions::new(location)
    };
    let server = viewer::Server::bind(opts).map_err(|e| viewer_err("could not start the viewer", e))?;
    shell.status("Serving", format_args!("{shown} at {} (Ctrl-C to stop)", server.url()));
    std::thread::scope(|s| {
        if !args.no_compact {
            s.spawn(|| background_compaction(&compact_location, &comparing, shell));
        }
        // SIGINT/SIGTERM set the interrupt flag; the server polls it, then lets answers in
        // progress finish.
        server.run_until(contprof_engine::interrupt::flag()).map_err(|e| viewer_err("the viewer stopped", e))
    })?;
    shell.status("Stopped", "serving (interrupted)");
    Ok(())
}

/// How often `serve` compacts production windows.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How far back `serve` looks for rollouts to judge.
const ROLLOUTS_SINCE: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// `prod compact`, then `prod watch` on CPU at its defaults, every [`COMPACT_EVERY`] until
/// SIGINT/SIGTERM, so that the production pages read rollups and every rollout gets a verdict
/// without anyone asking. Stores without production windows are left alone; a failure is
/// reported once per distinct message and retried at the next round.
fn background_compaction(location: &store::StoreLocation, comparing: &Comparing, shell: &Shell) {
    let fold_library = comparing.fold_library;
    let interrupted = contprof_engine::interrupt::interrupted;
    let mut last_error = String::new();
    while !interrupted() {
        let round = || -> Result<Option<contprof_engine::prod::compact::Compacted>> {
            let store = Store::open(location)?;
            if store.production_services()?.is_empty() {
                return Ok(None);
            }
            let opts = contprof_engine::prod::compact::CompactOptions {
                service: None,
                rescan_days: 2,
                full: false,
                fold_library,
                now: chrono::Utc::now(),
            };
            let compacted = contprof_engine::prod::compact::compact(&store, &opts, &mut |_| {})?;
            let selection = contprof_engine::prod::select::Selection {
                service: None,
                types: vec!["cpu".into()],
                since: Some(opts.now - ROLLOUTS_SINCE),
                until: None,
                labels: Vec::new(),
                sample_labels: Vec::new(),
                keep_sample_labels: false,
            };
            let watch = contprof_engine::prod::rollouts::Watch {
                profile_type: "cpu",
                min_windows: contprof_engine::prod::rollouts::DEFAULT_MIN_WINDOWS,
                judging: contprof_engine::prod::rollouts::Judging {
                    denominator: contprof_engine::prod::denominator::Denominator::Auto,
                    options: &comparing.options,
                    fold_library,
                },
            };
            let rollouts =
                contprof_engine::prod::rollouts::judge_rollouts(&store, &selection, &watch, &mut |_| {})?;
            for r in rollouts.iter().filter(|r| r.new) {
                shell.status(
                    "Judged",
                    format_args!("rollout {} {} -> {}: {}", r.service, r.base, r.head, r.status.name()),
                );
            }
            Ok(Some(compacted))
        };
        // A local store that does not exist yet is not created by the viewer.
        let exists = match location {
            store::StoreLocation::Dir(d) => d.is_dir(),
            store::StoreLocation::Default { workspace_root } => {
                workspace_root.join(".contprof/store").is_dir()
            }
            store::StoreLocation::Url(_) => true,
        };
        match exists.then(round) {
            Some(Ok(Some(done))) if done.hours + done.days > 0 => {
                shell
                    .status("Compacted", format_args!("{} hour and {} day rollup(s)", done.hours, done.days));
                for w in &done.warnings {
                    shell.warn(w);
                }
            }
            Some(Err(e)) if e.to_string() != last_error => {
                last_error = e.to_string();
                shell.warn(format_args!(
                    "background compaction or rollout judging failed: {e} (retried every minute)"
                ));
            }
            _ => {}
        }
        let until = std::time::Instant::now() + COMPACT_EVERY;
        while std::time::Instant::now() < until && !interrupted() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// What `/compare` compares with: the project's configuration (thresholds, ignore list,
/// `fold_library`) as `cargo contprof compare` reads it, without its flags, and the project's
/// repository for the history of a base.
fn comparing(project: &settings::Project, shell: &Shell) -> Comparing {
    let c = project.config();
    match c.comparison_options(&Default::default()) {
        Ok(options) => Comparing {
            options,
            fold_library: c.fold_library.unwrap_or(true),
            repo: contprof_engine::git::Repo::discover(&project.root).ok(),
        },
        Err(e) => {
            shell.warn(format_args!("{e}; /compare uses the default thresholds"));
            Comparing::default()
        }
    }
}

/// The decoded profiles of one stored run (optionally only groups containing `group`).
pub fn run_profiles(store: &Store, run_id: &str, group: Option<&str>, shell: &Shell) -> Result<Vec<Profile>> {
    let meta = store.show(run_id)?;
    let mut out = Vec::new();
    for p in meta.profiles.iter().filter(|p| group.is_none_or(|g| p.group.contains(g))) {
        let bytes = store.read_profile(run_id, &p.file)?;
        match profile::decode(&bytes) {
            Ok(profile) => out.push(profile),
            Err(e) => shell.warn(format_args!("skipping corrupt profile {} of run {run_id}: {e}", p.file)),
        }
    }
    Ok(out)
}

/// `cargo contprof report --html OUT [RUN|REV]`.
pub fn report(args: ReportArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let repo = Repo::discover(&project.root).ok();
    let meta = store::resolve_run(&store, repo.as_ref(), &args.run)?;
    let profiles = run_profiles(&store, &meta.run_id, args.group.as_deref(), shell)?;
    if profiles.is_empty() {
        return Err(Error::NothingMatched {
            what: format!(
                "run {} has no profile{}",
                meta.run_id,
                args.group.as_deref().map(|g| format!(" in a group containing `{g}`")).unwrap_or_default()
            ),
        });
    }
    let commit = meta.commit.as_deref().map(contprof_engine::git::short_commit).unwrap_or(meta.key.as_str());
    let title = match &args.group {
        Some(g) => format!("{g} at {commit}"),
        None => format!("run {} at {commit}", meta.run_id),
    };
    let details = vec![
        format!("run {} ({} profiles)", meta.run_id, profiles.len()),
        format!(
            "commit {}{}",
            meta.commit.as_deref().unwrap_or(&meta.key),
            if meta.dirty { " (dirty)" } else { "" }
        ),
        format!(
            "branch {}, host {}, {}",
            meta.branch.as_deref().unwrap_or("-"),
            meta.host,
            store::rfc3339(meta.time)
        ),
    ];
    let mut input = ReportInput::profile(title, &profiles).with_details(details);
    if let Some(key) = &args.by {
        input = input.with_label_breakdown(key, None);
    }
    write_html(&args.html, &input)?;
    shell.status("Wrote", args.html.display());
    Ok(())
}

/// Writes a report page atomically.
pub fn write_html(path: &Path, input: &ReportInput<'_>) -> Result<()> {
    let mut page = Vec::new();
    viewer::write_report(&mut page, input).map_err(|e| viewer_err("could not render the report", e))?;
    write_atomic(path, &page)
}
