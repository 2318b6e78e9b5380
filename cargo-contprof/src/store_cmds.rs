//! Store management: `log`, `show`, `export`, `import`, `gc`. Thin: flags become store queries,
//! answers are rendered by `store::render`.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::args::{ExportArgs, GcArgs, ImportArgs, LogArgs, OutputFormat, ShowArgs};
use super::settings;
use contprof_engine::errors::{Error, Result};
use contprof_engine::git::{Repo, RepoState};
use contprof_engine::shell::Shell;
use contprof_engine::store::{self, GcPolicy, ImportFile, LogFilter, NewRun, parse_time};

fn repo(root: &Path) -> Option<Repo> {
    Repo::discover(root).ok()
}

fn stdout() -> impl Write {
    anstream::stdout().lock()
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("could not write to", "stdout", e)
}

fn time_arg(flag: &'static str, s: &Option<String>) -> Result<Option<DateTime<Utc>>> {
    match s {
        None => Ok(None),
        Some(s) => {
            parse_time(s, Utc::now(), flag == "--until").map(Some).ok_or_else(|| Error::InvalidArgument {
                flag,
                message: format!(
                    "`{s}` is not a date (2026-11-01), an RFC 3339 time or an age (7d, 12h, 30m)"
                ),
            })
        }
    }
}

/// `cargo contprof log`.
pub fn log(args: LogArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let root = project.root;
    let mut commits = Vec::new();
    if !args.commits.is_empty() {
        let repo = Repo::discover(&root)?;
        for rev in &args.commits {
            commits.push(repo.resolve(rev)?);
        }
    }
    let filter = LogFilter {
        commits,
        branch: args.branch.clone(),
        tags: settings::tags(&args.tags)?,
        target: args.target.clone(),
        since: time_arg("--since", &args.since)?,
        until: time_arg("--until", &args.until)?,
        limit: args.limit,
    };
    let log = store.log(&filter)?;
    for w in &log.warnings {
        shell.warn(w);
    }
    let mut out = stdout();
    match args.format {
        OutputFormat::Json => store::render_log_json(&log, &mut out).map_err(io_err)?,
        _ => {
            if log.runs.is_empty() {
                shell.status("Empty", format_args!("no runs match in {}", store.url()));
            }
            store::render_log(&log, &mut out).map_err(io_err)?
        }
    }
    Ok(())
}

/// `cargo contprof show RUN|REV`.
pub fn show(args: ShowArgs) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let root = project.root;
    let meta = store::resolve_run(&store, repo(&root).as_ref(), &args.run)?;
    let mut out = stdout();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &meta).map_err(|e| io_err(e.into()))?;
            writeln!(out).map_err(io_err)?;
        }
        _ => store::render_show(&meta, &mut out).map_err(io_err)?,
    }
    Ok(())
}

/// `cargo contprof export RUN|REV [DIR]`.
pub fn export(args: ExportArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let root = project.root;
    let meta = store::resolve_run(&store, repo(&root).as_ref(), &args.run)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(format!("contprof-{}", meta.run_id)));
    let written = store.export(&meta.run_id, &dir)?;
    shell.status(
        "Exported",
        format_args!("{} profile(s) of run {} to {}", written.len(), meta.run_id, dir.display()),
    );
    let mut out = stdout();
    for p in written {
        writeln!(out, "{}", p.display()).map_err(io_err)?;
    }
    Ok(())
}

/// `cargo contprof import FILE...`.
pub fn import(args: ImportArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let root = project.root;
    let repo_state = match &args.commit {
        Some(rev) => RepoState::Commit {
            commit: Repo::discover(&root)?.resolve(rev)?,
            branch: None,
            dirty: None,
            shallow: false,
        },
        None => Repo::state_of(&root).unwrap_or_else(|e| RepoState::NoGit { reason: e.to_string() }),
    };
    let mut new = NewRun::new(repo_state);
    new.command = std::env::args().collect();
    new.settings.engine = contprof_engine::store::Recorder::Import;
    new.settings.runs = 1;
    new.tags = settings::tags(&args.tags)?.into_iter().collect();
    // Raw sample files of the agent (e.g. from `contprof::criterion::Profiler`) are symbolized into
    // pprof first, in a temporary directory; pprof files are stored as they are.
    let converted =
        tempfile::tempdir().map_err(|e| Error::io("could not create a temporary directory", "/tmp", e))?;
    let mut symbolizer = contprof_engine::symbolize::Symbolizer::new();
    let mut files = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| Error::io("could not read", path, e))?;
        if !bytes.starts_with(&contprof_protocol::format::MAGIC) {
            files.push(ImportFile { path: path.clone(), group: args.group.clone() });
            continue;
        }
        let built =
            contprof_engine::record::build_from_raw(&bytes, path, &Default::default(), &mut symbolizer)?;
        for w in built.warnings.iter().chain(symbolizer.take_warnings().iter()) {
            shell.warn(format_args!("{}: {w}", path.display()));
        }
        let out = converted.path().join(format!("{i}.pb.gz"));
        contprof_engine::record::write_atomic(
            &out,
            &contprof_engine::profile::encode_to_vec(&built.profile),
        )?;
        let group = args.group.clone().or_else(|| criterion_group(path));
        files.push(ImportFile { path: out, group });
    }
    let meta = store.import(new, &files)?;
    shell.status(
        "Imported",
        format_args!("{} profile(s) as run {} (key {})", files.len(), meta.run_id, meta.key),
    );
    Ok(())
}

/// `bench/<id>` for criterion's `<dir>/criterion/<id>/profile/contprof.raw`.
fn criterion_group(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let (_, rest) = text.rsplit_once("/criterion/")?;
    let id = rest.strip_suffix(&format!("/profile/{}", "contprof.raw"))?;
    Some(format!("bench/{id}"))
}

/// `cargo contprof gc`.
pub fn gc(args: GcArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(args.scope.manifest_path.as_deref())?;
    let store = project.open_store(&args.scope.store)?;
    let root = project.root;
    let protected = match repo(&root) {
        Some(r) => store::gc_protected_commits(&r)?,
        None => Default::default(),
    };
    let keep = chrono::Duration::try_days(i64::from(args.keep_days))
        .ok_or_else(|| Error::InvalidArgument { flag: "--keep-days", message: "too large".into() })?;
    let policy = GcPolicy { keep, protected_commits: protected, now: Utc::now() };
    let report = store.gc(&policy, args.dry_run)?;
    store::render_gc(&report, args.dry_run, &mut stdout()).map_err(io_err)?;
    // Production windows by the time they were recorded (no commit protects them).
    let cutoff = policy.now.checked_sub_signed(keep).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let prod = store.gc_production(cutoff, policy.now, args.dry_run)?;
    if prod.windows > 0 || prod.leases > 0 || prod.rollups > 0 {
        let verb = if args.dry_run { "would delete" } else { "deleted" };
        writeln!(
            stdout(),
            "production: {verb} {} window profile(s) and {} rollup object(s) older than {} days, and {} lease(s)",
            prod.windows,
            prod.rollups,
            args.keep_days,
            prod.leases
        )
        .map_err(io_err)?;
    }
    if args.dry_run {
        shell.status("Dry run", "nothing was deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_profile_paths_name_their_benchmark() {
        let p = Path::new("/w/target/criterion/parse/large/profile/contprof.raw");
        assert_eq!(criterion_group(p).as_deref(), Some("bench/parse/large"));
        assert_eq!(criterion_group(Path::new("/tmp/x.raw")), None);
    }

    #[test]
    fn parses_times_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("7d", now, false).unwrap().to_rfc3339(), "2026-11-18T12:00:00+00:00");
        assert_eq!(parse_time("2h", now, false).unwrap().to_rfc3339(), "2026-11-25T10:00:00+00:00");
        assert_eq!(parse_time("2026-11-01", now, false).unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert!(parse_time("2026-11-01T10:00:00+02:00", now, false).is_some());
        assert!(parse_time("yesterday", now, false).is_none());
        assert!(parse_time("5y", now, false).is_none());
        // An `--until` date covers the whole day, as in the viewer.
        assert_eq!(parse_time("2026-11-01", now, true).unwrap().to_rfc3339(), "2026-11-01T23:59:59+00:00");
    }
}
