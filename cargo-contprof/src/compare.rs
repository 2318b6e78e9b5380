//! `cargo contprof compare`: picks the stored runs of two revisions (or run ids), turns their
//! profiles into per-run function costs, runs [`contprof_engine::compare::compare`] and renders the result.
//!
//! The gathering and rendering here are shared with `check` (`check/`), which records HEAD first; `output.rs`
//! writes the result and its exit status for both, and for `prod compare`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::args::{CompareArgs, StatsArgs, StoreArgs};
use super::output::{render, verdict, write_stdout};
use super::settings;
use contprof_engine::cargo::{CargoArgs, Workspace};
use contprof_engine::compare::{Comparison, Options, RevisionInfo};
use contprof_engine::config::Loaded;
use contprof_engine::errors::{Error, Result};
use contprof_engine::git::{Repo, short_commit};
use contprof_engine::pipeline::{self, GroupRuns, Prepared, all_groups, select_groups, settings_mismatch};
use contprof_engine::profile::Profile;
use contprof_engine::record::{sanitize, write_atomic};
use contprof_engine::report::{DiffOptions, write_diff_flamegraph};
use contprof_engine::shell::Shell;
use contprof_engine::store::{RunMetadata, Settings, Store, looks_like_run_id, nearest_ancestor_with_runs};

/// How far back the baseline lookup walks the first-parent history.
const BASELINE_DEPTH: usize = 200;

/// Runs the command.
pub fn run(args: CompareArgs, shell: &Shell) -> Result<()> {
    let cargo_args = CargoArgs { manifest_path: args.manifest_path.clone(), ..CargoArgs::default() };
    let ctx = Context::load(&cargo_args, &args.store)?;
    // An unknown revision is named before anything else is looked up.
    for spec in [&args.base, &args.head].into_iter().flatten() {
        ctx.resolve(spec)?;
    }
    let head = match &args.head {
        Some(spec) => ctx.side(spec, false)?,
        None => ctx.side("HEAD", false)?,
    };
    let base = match &args.base {
        Some(spec) => ctx.side(spec, true)?,
        None => {
            let head_groups = select_groups(&head.runs, &all_groups);
            match ctx.find_baseline(&head, &head_groups)? {
                Some(b) => b,
                None => {
                    return Err(Error::NothingMatched {
                        what: format!(
                            "no baseline for {}: no ancestor of it (from the merge-base with the default branch) \
                             has runs of the same targets and settings; record one with `git checkout <base> && \
                             cargo contprof run --runs 5 ...`, or name one: `cargo contprof compare BASE HEAD`",
                            head.describe()
                        ),
                    });
                }
            }
        }
    };
    ctx.warn_skipped(shell);
    let options = ctx.options(&args.stats)?;
    let sample_labels = settings::label_flags("--sample-label", &args.sample_labels)?;
    let labels = Labels { filters: &sample_labels, by: args.by.as_deref() };
    let compared = compare_sides(&ctx, &base, &head, args.group.as_deref(), &labels, &args.stats, &options)?;
    say_warnings(&compared, shell);
    let pipeline::Compared { prepared, comparison: cmp } = compared;
    if !args.no_flamegraphs {
        let dir = args
            .flamegraph_dir
            .clone()
            .unwrap_or_else(|| ctx.workspace.target_dir().join("contprof/compare"));
        write_flamegraphs(&prepared, &ctx.store, &cmp, &dir, shell)?;
    }
    let mut bytes = Vec::new();
    render(&cmp, args.format, &mut bytes).map_err(|e| Error::io("could not render", "the report", e))?;
    match &args.output {
        Some(path) => {
            write_atomic(path, &bytes)?;
            shell.status("Wrote", path.display());
        }
        None => write_stdout(&bytes)?,
    }
    verdict(&cmp)
}

/// The workspace, its store, repository and configuration.
pub(super) struct Context {
    pub workspace: Workspace,
    pub store: Store,
    pub repo: Option<Repo>,
    pub config: std::sync::Arc<Loaded>,
    /// Runs the index lists whose metadata is gone (a deletion that raced the index), skipped;
    /// said by [`Context::warn_skipped`].
    skipped: std::cell::RefCell<Vec<String>>,
}

/// One side of a comparison: the runs chosen and how the user named them.
#[derive(Debug, Clone)]
pub(super) struct ChosenSide {
    /// What the user typed (`main`, `HEAD`, a run id).
    pub label: String,
    /// The commit, when known.
    pub commit: Option<String>,
    /// Runs, newest first.
    pub runs: Vec<RunMetadata>,
}

impl ChosenSide {
    pub fn describe(&self) -> String {
        match &self.commit {
            Some(c) if self.label != *c => format!("`{}` (commit {})", self.label, short_commit(c)),
            Some(c) => format!("commit {}", short_commit(c)),
            None => format!("`{}`", self.label),
        }
    }

    pub fn info(&self) -> RevisionInfo {
        let mut extra = BTreeMap::new();
        let ids: Vec<&str> = self.runs.iter().map(|r| r.run_id.as_str()).collect();
        extra.insert("runs".to_owned(), ids.join(", "));
        if self.runs.iter().any(|r| r.dirty) {
            extra.insert("dirty".to_owned(), "true".to_owned());
        }
        if let Some(r) = self.runs.first() {
            extra.insert("settings".to_owned(), describe_settings(&r.settings));
            extra.insert("toolchain".to_owned(), r.toolchain.release.clone());
            extra.insert("host".to_owned(), r.host.clone());
        }
        RevisionInfo { commit: self.commit.clone().unwrap_or_default(), label: self.label.clone(), extra }
    }
}

fn describe_settings(s: &Settings) -> String {
    let alloc = match (s.alloc_mode, s.alloc_interval) {
        (Some(contprof_protocol::format::AllocMode::Sampled), Some(i)) => {
            format!("alloc sampled every {i} B")
        }
        (m, _) => format!("alloc {}", m.map_or("unknown", contprof_protocol::env::alloc_name)),
    };
    if s.engine == contprof_engine::store::Recorder::Instructions {
        return format!("instructions (callgrind), {alloc}");
    }
    format!("{} at {} Hz, {alloc}", s.engine.name(), s.frequency_hz)
}

impl Context {
    pub fn load(cargo_args: &CargoArgs, store: &StoreArgs) -> Result<Context> {
        let workspace = Workspace::load(cargo_args)?;
        let project = settings::Project::of(&workspace)?;
        let store = project.open_store(store)?;
        let config = project.config;
        // Outside a repository (or without git), revisions are unavailable; a git that fails
        // otherwise ("dubious ownership" in a container) is an error, with git's message: runs
        // keyed without a commit would never find a baseline.
        let repo = match Repo::discover(workspace.root()) {
            Ok(r) => Some(r),
            Err(
                contprof_engine::git::GitError::NotARepo { .. } | contprof_engine::git::GitError::Missing(_),
            ) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Context { workspace, store, repo, config, skipped: Default::default() })
    }

    /// Comparison options: configuration, then flags.
    pub fn options(&self, stats: &StatsArgs) -> Result<Options> {
        self.config.config.comparison_options(&stats.overrides())
    }

    fn repo(&self, what: &str) -> Result<&Repo> {
        self.repo.as_ref().ok_or_else(|| {
            Error::msg(format!(
                "`{what}` is not a run id, and revisions need a git repository ({} is not in one)",
                self.workspace.root().display()
            ))
        })
    }

    /// Checks that `spec` names run ids or a revision that exists.
    pub fn resolve(&self, spec: &str) -> Result<()> {
        let ids: Vec<&str> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if !ids.is_empty() && ids.iter().all(|s| looks_like_run_id(s)) {
            return Ok(());
        }
        self.repo(spec)?.resolve(spec)?;
        Ok(())
    }

    /// The runs named by `spec`: run ids (comma-separated) or a revision. `prefer_clean`: for a
    /// revision, use its clean runs when it has any.
    pub fn side(&self, spec: &str, prefer_clean: bool) -> Result<ChosenSide> {
        let ids: Vec<&str> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if !ids.is_empty() && ids.iter().all(|s| looks_like_run_id(s)) {
            let runs = ids.iter().map(|id| self.store.show(id)).collect::<Result<Vec<_>, _>>()?;
            let commit = runs.first().and_then(|r| r.commit.clone());
            return Ok(ChosenSide { label: spec.to_owned(), commit, runs });
        }
        let repo = self.repo(spec)?;
        let commit = repo.resolve(spec)?;
        let runs = self.runs_of(&commit, prefer_clean)?;
        if runs.is_empty() {
            return Err(Error::NothingMatched {
                what: format!(
                    "no runs of revision `{spec}` (commit {}) in the store {}; record them with \
                     `git checkout {spec} && cargo contprof run --runs 5 ...` (or `test`/`bench`), \
                     or let `cargo contprof check` record HEAD",
                    short_commit(&commit),
                    self.store.url()
                ),
            });
        }
        Ok(ChosenSide { label: spec.to_owned(), commit: Some(commit), runs })
    }

    fn runs_of(&self, commit: &str, prefer_clean: bool) -> Result<Vec<RunMetadata>> {
        let mut summaries = self.store.runs_for_commit(commit)?;
        if prefer_clean && summaries.iter().any(|r| !r.dirty) {
            summaries.retain(|r| !r.dirty);
        }
        let mut runs = Vec::with_capacity(summaries.len());
        for s in &summaries {
            match self.store.show(&s.run_id) {
                Ok(meta) => runs.push(meta),
                // Listed but gone: skipped, so that one deleted run does not block the commit.
                Err(contprof_engine::store::StoreError::NotFound { .. }) => {
                    self.skipped.borrow_mut().push(format!(
                        "run {} of commit {} is in the index but has no metadata (deleted); skipped",
                        s.run_id,
                        short_commit(commit)
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(runs)
    }

    /// Prints (once) the runs skipped because their metadata is gone.
    pub fn warn_skipped(&self, shell: &Shell) {
        for w in self.skipped.borrow_mut().drain(..) {
            shell.warn(w);
        }
    }

    /// The baseline of `head`: the first commit from the merge-base with the default branch (or
    /// head's parent) back along first parents whose runs cover some of `head`'s groups with the
    /// same settings.
    pub fn find_baseline(&self, head: &ChosenSide, head_groups: &GroupRuns) -> Result<Option<ChosenSide>> {
        let Some(repo) = &self.repo else { return Ok(None) };
        let Some(head_commit) = &head.commit else { return Ok(None) };
        let mut found = contprof_engine::store::baseline_for(&self.store, repo, head_commit, BASELINE_DEPTH)?;
        let mut depth_left = BASELINE_DEPTH;
        while let Some(b) = found {
            let runs = self.runs_of(&b.commit, true)?;
            let base_groups = select_groups(&runs, &all_groups);
            let matches = head_groups.iter().any(|(g, h)| {
                base_groups.get(g).is_some_and(|b| settings_mismatch(&b.settings, &h.settings).is_none())
            });
            if matches {
                return Ok(Some(ChosenSide {
                    label: short_commit(&b.commit).to_owned(),
                    commit: Some(b.commit),
                    runs,
                }));
            }
            depth_left = depth_left.saturating_sub(b.distance + 1);
            if depth_left == 0 {
                break;
            }
            let parent = format!("{}~1", b.commit);
            if repo.resolve(&parent).is_err() {
                break;
            }
            found = nearest_ancestor_with_runs(&self.store, repo, &parent, depth_left)?;
        }
        Ok(None)
    }
}

/// Says the warnings and notes of a comparison of stored sides.
pub(super) fn say_warnings(compared: &pipeline::Compared, shell: &Shell) {
    for w in &compared.prepared.warnings {
        shell.warn(w);
    }
    for n in &compared.prepared.notes {
        shell.note(n);
    }
    for w in &compared.comparison.warnings {
        shell.warn(w);
    }
}

/// What a comparison does with the samples' labels.
#[derive(Default)]
pub(super) struct Labels<'a> {
    /// Only the samples that carry these (`--sample-label`).
    pub filters: &'a [(String, String)],
    /// Break the comparison down by this label's values (`--by`).
    pub by: Option<&'a str>,
}

/// Compares two sides through the engine ([`pipeline::compare_stored`]: the same verdict as the
/// viewer's on the same runs), with the configuration's `fold_library`, `--allow-mismatch` and a
/// `--group` substring filter and the samples' `labels`. Its warnings and notes are the caller's to say ([`say_warnings`]):
/// `check`'s interim looks keep them to themselves.
#[allow(clippy::too_many_arguments, reason = "the sides, the selection and the options, each once")]
pub(super) fn compare_sides(
    ctx: &Context,
    base: &ChosenSide,
    head: &ChosenSide,
    filter: Option<&str>,
    labels: &Labels<'_>,
    stats: &StatsArgs,
    options: &Options,
) -> Result<pipeline::Compared> {
    let (base_describe, head_describe) = (base.describe(), head.describe());
    let keep = |group: &str| filter.is_none_or(|f| group.contains(f));
    let prepare = pipeline::PrepareOptions {
        keep: &keep,
        filter_name: filter,
        allow_mismatch: stats.allow_mismatch,
        fold_library: ctx.config.config.fold_library.unwrap_or(true),
        sample_labels: labels.filters,
        by_label: labels.by,
    };
    let compared = pipeline::compare_stored(
        pipeline::history::Source { store: &ctx.store, repo: ctx.repo.as_ref() },
        (pipeline::SideRuns { label: &base.label, describe: &base_describe, runs: &base.runs }, base.info()),
        (pipeline::SideRuns { label: &head.label, describe: &head_describe, runs: &head.runs }, head.info()),
        &prepare,
        options,
    )?;
    Ok(compared)
}

/// Draws a differential flame graph per group compared (CPU, and allocated bytes when recorded)
/// and writes the interactive compare view of the group as one self-contained HTML page
/// (`<group>-compare.html`, fit to upload as a CI artifact) into `dir`; returns the files written.
/// Each group's profiles are read from `store` when its turn comes, and let go after.
pub(super) fn write_flamegraphs(
    prepared: &Prepared,
    store: &Store,
    cmp: &Comparison,
    dir: &Path,
    shell: &Shell,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for key in prepared.keys() {
        let (base, head) = &prepared.profiles_of(store, key);
        if base.is_empty() || head.is_empty() {
            continue;
        }
        let title = format!("{key}: {} → {}", prepared.base_label, prepared.head_label);
        let mut page =
            contprof_viewer::ReportInput::compare(title, base, head, Some(cmp)).with_details(vec![format!(
                "{} base and {} head runs; the regression table covers every compared target",
                base.len(),
                head.len()
            )]);
        if let Some(by) = cmp.breakdowns.iter().find(|b| b.group == key).map(|b| b.key.clone()) {
            page = page.with_label_breakdown(&by, Some(key));
        }
        let path = dir.join(format!("{}-compare.html", sanitize(key)));
        super::view::write_html(&path, &page)?;
        written.push(path);
        let base: Vec<&Profile> = base.iter().collect();
        let head: Vec<&Profile> = head.iter().collect();
        for (ty, suffix) in [("cpu", "cpu"), ("alloc_space", "alloc")] {
            let options = DiffOptions {
                sample_type: ty.to_owned(),
                title: format!("{key}: {} → {} ({ty})", prepared.base_label, prepared.head_label),
            };
            let mut svg = Vec::new();
            match write_diff_flamegraph(&mut svg, &base, &head, &options) {
                Ok(()) => {}
                Err(contprof_engine::report::ReportError::NoSamples { .. }) => continue,
                Err(e) => {
                    shell.warn(format_args!("{key}: no differential flame graph: {e}"));
                    continue;
                }
            }
            let path = dir.join(format!("{}-{suffix}-diff.svg", sanitize(key)));
            write_atomic(&path, &svg)?;
            written.push(path);
        }
    }
    if !written.is_empty() {
        shell.status(
            "Wrote",
            format_args!(
                "{} differential flame graph(s) and compare page(s) in {}",
                written.len(),
                dir.display()
            ),
        );
    }
    Ok(written)
}
