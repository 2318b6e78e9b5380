//! `cargo contprof compare`: picks the stored runs of two revisions (or run ids), turns their
//! profiles into per-run function costs, runs [`crate::compare::compare`] and renders the result.
//!
//! The gathering and rendering here are shared with `check` (`check.rs`), which records HEAD first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::args::{CompareArgs, ReportFormat, StatsArgs, StoreArgs};
use super::settings;
use crate::cargo::{CargoArgs, Workspace};
use crate::code::CodeMap;
use crate::compare::{
    self, AllocRecording, Comparison, Explained, Group, InputOptions, Metric, Options, RevisionInfo,
    RunCosts, Sampling, run_costs,
};
use crate::config::{self, Loaded};
use crate::errors::{Error, Result};
use crate::git::{Repo, short_commit};
use crate::profile::{self, Profile};
use crate::record::{sanitize, write_atomic};
use crate::report::{DiffOptions, write_diff_flamegraph};
use crate::shell::Shell;
use crate::store::{RunMetadata, Settings, Store, looks_like_run_id, nearest_ancestor_with_runs};

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
            let head_groups = select_groups(&head.runs, None);
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
    let options = ctx.options(&args.stats)?;
    let mut prepared = prepare(&ctx, &base, &head, args.group.as_deref(), &args.stats, shell)?;
    super::history::learn(&ctx, &base, &mut prepared, &options, shell);
    let cmp = compare::compare(&prepared.groups, base.info(), head.info(), &options)?;
    for w in &cmp.warnings {
        shell.warn(w);
    }
    if !args.no_flamegraphs {
        let dir = args
            .flamegraph_dir
            .clone()
            .unwrap_or_else(|| ctx.workspace.target_dir().join("contprof/compare"));
        write_flamegraphs(&prepared, &cmp, &dir, shell)?;
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

/// Exit status of a comparison: [`Error::RegressionFound`] when it found any.
pub(super) fn verdict(cmp: &Comparison) -> Result<()> {
    if cmp.has_regression() {
        return Err(Error::RegressionFound { count: cmp.summary.regressions });
    }
    Ok(())
}

pub(super) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("could not write", "stdout", e))
        }
        _ => Ok(()),
    }
}

/// Renders `cmp` in `format`.
pub(super) fn render(cmp: &Comparison, format: ReportFormat, out: &mut Vec<u8>) -> std::io::Result<()> {
    match format {
        ReportFormat::Text => compare::write_text(cmp, out),
        ReportFormat::Json => compare::write_json(cmp, out),
        ReportFormat::Markdown => compare::write_markdown(cmp, out),
    }
}

/// The workspace, its store, repository and configuration.
pub(super) struct Context {
    pub workspace: Workspace,
    pub store: Store,
    pub repo: Option<Repo>,
    pub config: Loaded,
}

/// One side of a comparison: the runs chosen and how the user named them.
#[derive(Debug, Clone)]
pub(super) struct Side {
    /// What the user typed (`main`, `HEAD`, a run id).
    pub label: String,
    /// The commit, when known.
    pub commit: Option<String>,
    /// Runs, newest first.
    pub runs: Vec<RunMetadata>,
}

impl Side {
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
    let alloc = match (s.alloc_mode.as_str(), s.alloc_interval) {
        ("sampled", Some(i)) => format!("alloc sampled every {i} B"),
        (m, _) => format!("alloc {m}"),
    };
    if s.engine == crate::runner::Engine::Instructions.name() {
        return format!("instructions (callgrind), {alloc}");
    }
    format!("{} at {} Hz, {alloc}", s.engine, s.frequency_hz)
}

impl Context {
    pub fn load(cargo_args: &CargoArgs, store: &StoreArgs) -> Result<Context> {
        let workspace = Workspace::load(cargo_args)?;
        let config = config::load(workspace.root(), workspace.metadata())
            .map_err(|e| Error::Other { context: e.to_string(), source: None })?;
        let store = settings::open_store(store, workspace.root())?;
        // Outside a repository (or without git), revisions are unavailable; a git that fails
        // otherwise ("dubious ownership" in a container) is an error, with git's message: runs
        // keyed without a commit would never find a baseline.
        let repo = match Repo::discover(workspace.root()) {
            Ok(r) => Some(r),
            Err(crate::git::GitError::NotARepo { .. } | crate::git::GitError::Missing(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Context { workspace, store, repo, config })
    }

    /// Comparison options: configuration, then flags.
    pub fn options(&self, stats: &StatsArgs) -> Result<Options> {
        let c = &self.config.config;
        let mut o = c.options();
        if let Some(a) = stats.alpha {
            o.alpha = a;
        }
        if let Some(m) = stats.min_effect {
            o.default_min_effect = m;
            o.min_effect.clear();
        }
        o.strict |= stats.strict;
        let mut patterns = c.ignore_patterns();
        patterns.extend(stats.ignore.iter().cloned());
        o.ignore = Options::ignore_patterns(&patterns)?;
        o.validate()?;
        Ok(o)
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
    pub fn side(&self, spec: &str, prefer_clean: bool) -> Result<Side> {
        let ids: Vec<&str> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if !ids.is_empty() && ids.iter().all(|s| looks_like_run_id(s)) {
            let runs = ids.iter().map(|id| self.store.show(id)).collect::<Result<Vec<_>, _>>()?;
            let commit = runs.first().and_then(|r| r.commit.clone());
            return Ok(Side { label: spec.to_owned(), commit, runs });
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
        Ok(Side { label: spec.to_owned(), commit: Some(commit), runs })
    }

    fn runs_of(&self, commit: &str, prefer_clean: bool) -> Result<Vec<RunMetadata>> {
        let mut summaries = self.store.runs_for_commit(commit)?;
        if prefer_clean && summaries.iter().any(|r| !r.dirty) {
            summaries.retain(|r| !r.dirty);
        }
        Ok(summaries.iter().map(|s| self.store.show(&s.run_id)).collect::<Result<Vec<_>, _>>()?)
    }

    /// The baseline of `head`: the first commit from the merge-base with the default branch (or
    /// head's parent) back along first parents whose runs cover some of `head`'s groups with the
    /// same settings.
    pub fn find_baseline(&self, head: &Side, head_groups: &GroupRuns) -> Result<Option<Side>> {
        let Some(repo) = &self.repo else { return Ok(None) };
        let Some(head_commit) = &head.commit else { return Ok(None) };
        let mut found = crate::store::baseline_for(&self.store, repo, head_commit, BASELINE_DEPTH)?;
        let mut depth_left = BASELINE_DEPTH;
        while let Some(b) = found {
            let runs = self.runs_of(&b.commit, true)?;
            let base_groups = select_groups(&runs, None);
            let matches = head_groups.iter().any(|(g, h)| {
                base_groups.get(g).is_some_and(|b| settings_mismatch(&b.settings, &h.settings).is_none())
            });
            if matches {
                return Ok(Some(Side {
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

/// The profiles chosen for one group on one side.
#[derive(Debug, Clone)]
pub(super) struct GroupSel {
    pub settings: Settings,
    /// `(run id, file)` of each profile (one repetition each).
    pub profiles: Vec<(String, String)>,
    /// Repetitions left out because their workload failed.
    pub failed: usize,
}

pub(super) type GroupRuns = BTreeMap<String, GroupSel>;

/// Per group, the profiles of every run that matches the newest run of that group in settings and
/// tree state (the same dirty diff), so that one side never mixes settings or code.
pub(super) fn select_groups(runs: &[RunMetadata], filter: Option<&str>) -> GroupRuns {
    let mut out: GroupRuns = BTreeMap::new();
    let mut defining: BTreeMap<String, (&Settings, &Option<String>)> = BTreeMap::new();
    for run in runs {
        for p in &run.profiles {
            if filter.is_some_and(|f| !p.group.contains(f)) {
                continue;
            }
            let (s, diff) = *defining.entry(p.group.clone()).or_insert((&run.settings, &run.diff_hash));
            if s != &run.settings || diff != &run.diff_hash {
                continue;
            }
            let sel = out.entry(p.group.clone()).or_insert_with(|| GroupSel {
                settings: run.settings.clone(),
                profiles: Vec::new(),
                failed: 0,
            });
            // Failed, killed and timed-out repetitions stay in the store, out of comparisons.
            if p.exit_code.is_some_and(|c| c != 0) || p.stopped.is_some() {
                sel.failed += 1;
                continue;
            }
            sel.profiles.push((run.run_id.clone(), p.file.clone()));
        }
    }
    out
}

/// The first setting that differs between base and head, described for the user.
fn settings_mismatch(base: &Settings, head: &Settings) -> Option<String> {
    if base.engine != head.engine {
        return Some(format!("base was recorded by `{}`, head by `{}`", base.engine, head.engine));
    }
    if base.frequency_hz != head.frequency_hz {
        return Some(format!("base sampled at {} Hz, head at {} Hz", base.frequency_hz, head.frequency_hz));
    }
    if base.alloc_mode != head.alloc_mode {
        return Some(format!("base recorded allocations `{}`, head `{}`", base.alloc_mode, head.alloc_mode));
    }
    if base.unwind != head.unwind {
        return Some(format!(
            "base walked stacks with `{}`, head with `{}` (--unwind; frame pointers change the code)",
            base.unwind, head.unwind
        ));
    }
    if base.alloc_mode == "sampled" && base.alloc_interval != head.alloc_interval {
        let show = |i: Option<u64>| i.map_or("?".to_owned(), |i| i.to_string());
        return Some(format!(
            "base sampled allocations every {} bytes, head every {} bytes",
            show(base.alloc_interval),
            show(head.alloc_interval)
        ));
    }
    None
}

/// Everything a comparison and its flame graphs need.
pub(super) struct Prepared {
    pub groups: Vec<Group>,
    /// Per group: decoded base and head profiles.
    pub profiles: BTreeMap<String, (Vec<Profile>, Vec<Profile>)>,
    pub base_label: String,
    pub head_label: String,
}

/// Reads and converts the profiles of both sides. Corrupt profiles are skipped with a warning.
pub(super) fn prepare(
    ctx: &Context,
    base: &Side,
    head: &Side,
    filter: Option<&str>,
    stats: &StatsArgs,
    shell: &Shell,
) -> Result<Prepared> {
    let b = select_groups(&base.runs, filter);
    let h = select_groups(&head.runs, filter);
    if b.is_empty() || h.is_empty() {
        let (side, sel) = if b.is_empty() { (base, &b) } else { (head, &h) };
        let _ = sel;
        return Err(Error::NothingMatched {
            what: match filter {
                Some(f) => {
                    format!("no profiles of a group containing `{f}` in the runs of {}", side.describe())
                }
                None => format!("no profiles in the runs of {}", side.describe()),
            },
        });
    }
    if !b.keys().any(|k| h.contains_key(k)) {
        return Err(Error::NothingMatched {
            what: format!(
                "{} and {} have no target/test/benchmark in common (base: {}; head: {})",
                base.describe(),
                head.describe(),
                b.keys().cloned().collect::<Vec<_>>().join(", "),
                h.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let fold_library = ctx.config.config.fold_library.unwrap_or(true);
    let mut prepared = Prepared {
        groups: Vec::new(),
        profiles: BTreeMap::new(),
        base_label: base.label.clone(),
        head_label: head.label.clone(),
    };
    let keys: Vec<&String> =
        b.keys().chain(h.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for key in keys {
        let (bs, hs) = (b.get(key), h.get(key));
        if let (Some(bs), Some(hs)) = (bs, hs)
            && let Some(diff) = settings_mismatch(&bs.settings, &hs.settings)
        {
            if !stats.allow_mismatch {
                return Err(Error::msg(format!(
                    "{key}: the profiling settings differ ({diff}); record both sides with the same \
                     settings, or pass --allow-mismatch to compare anyway"
                )));
            }
            shell.warn(format_args!("{key}: the profiling settings differ ({diff}); compared anyway"));
        }
        let mut group = Group { key: key.clone(), ..Group::default() };
        let mut profiles = (Vec::new(), Vec::new());
        for (sel, runs, decoded, side) in
            [(bs, &mut group.base, &mut profiles.0, "base"), (hs, &mut group.head, &mut profiles.1, "head")]
        {
            let Some(sel) = sel else { continue };
            if sel.failed > 0 {
                shell.warn(format_args!(
                    "{key}: {} {side} repetition(s) left out: the workload failed",
                    sel.failed
                ));
            }
            let opts = input_options(&sel.settings, fold_library);
            for (run_id, file) in &sel.profiles {
                match read(&ctx.store, run_id, file) {
                    Ok(p) => {
                        runs.push(run_costs(&p, &opts));
                        decoded.push(p);
                    }
                    Err(why) => {
                        shell.warn(format_args!("{key}: skipped {side} profile {run_id}/{file}: {why}"))
                    }
                }
            }
        }
        let sparse = drop_sparse_allocations(&mut group);
        if !sparse.is_empty() {
            shell.note(format_args!(
                "{key}: {} not compared: some runs have no allocation sample (lower --alloc-interval or use --alloc exact)",
                sparse.join(", ")
            ));
        }
        prepared.profiles.insert(key.clone(), profiles);
        prepared.groups.push(group);
    }
    let used = |sel: &GroupRuns| -> BTreeSet<String> {
        sel.values().flat_map(|g| g.profiles.iter().map(|(id, _)| id.clone())).collect()
    };
    let code = [(base, used(&b), "base"), (head, used(&h), "head")]
        .map(|(side, ids, name)| side_code_map(ctx, side, &ids, name, shell));
    if let [Some(base_code), Some(head_code)] = &code {
        match crate::code::diff(base_code, head_code) {
            Some(diff) => {
                for group in &mut prepared.groups {
                    let (b, h) = &prepared.profiles[&group.key];
                    group.explained =
                        Some(Explained::from_stacks(b.iter().chain(h), &diff.changed, fold_library));
                }
            }
            None => shell.warn(
                "the two sides' machine-code fingerprints were made by different versions of cargo contprof; \
                 every change counts as explained by the diff",
            ),
        }
    }
    Ok(prepared)
}

/// The merged code map of the runs `ids` of one side; `None` (with a warning) when one of them
/// has none or it cannot be read: then no change can be told apart from a shift.
fn side_code_map(
    ctx: &Context,
    side: &Side,
    ids: &BTreeSet<String>,
    name: &str,
    shell: &Shell,
) -> Option<CodeMap> {
    let mut merged = CodeMap::default();
    for run in side.runs.iter().filter(|r| ids.contains(&r.run_id)) {
        let why = match ctx.store.read_code_map(run) {
            Ok(Some(bytes)) => match CodeMap::decode(&bytes) {
                Ok(map) => {
                    merged.merge(&map);
                    continue;
                }
                Err(e) => e.to_string(),
            },
            Ok(None) => {
                "it has no machine-code fingerprints (recorded by an older cargo contprof, or imported)"
                    .to_owned()
            }
            Err(e) => e.to_string(),
        };
        shell.warn(format_args!(
            "{name} run {}: {why}; every change counts as explained by the diff (none is reported as shifted)",
            run.run_id
        ));
        return None;
    }
    Some(merged)
}

/// Drops sampled allocation metrics from a group when a run has no sample of them: a handful of
/// samples says nothing statistically, and the gaps would only produce a warning per run.
fn drop_sparse_allocations(group: &mut Group) -> Vec<&'static str> {
    let mut dropped = Vec::new();
    for metric in [Metric::AllocBytes, Metric::AllocCount, Metric::InuseBytes] {
        let empty = |r: &RunCosts| {
            r.totals.get(&metric).is_some_and(|t| t.sampling == Sampling::Sampled { samples: 0 })
        };
        if !group.base.iter().chain(&group.head).any(empty) {
            continue;
        }
        for r in group.base.iter_mut().chain(group.head.iter_mut()) {
            r.totals.remove(&metric);
            for costs in r.functions.values_mut() {
                costs.remove(&metric);
            }
        }
        dropped.push(metric.as_str());
    }
    dropped
}

pub(super) fn read(store: &Store, run_id: &str, file: &str) -> std::result::Result<Profile, String> {
    let bytes = store.read_profile(run_id, file).map_err(|e| e.to_string())?;
    profile::decode(&bytes).map_err(|e| format!("corrupt profile: {e}"))
}

pub(super) fn input_options(s: &Settings, fold_library: bool) -> InputOptions {
    let alloc = match s.alloc_mode.as_str() {
        "exact" => AllocRecording::Exact,
        "sampled" => AllocRecording::Sampled { interval: s.alloc_interval.unwrap_or(512 * 1024) },
        _ => AllocRecording::Off,
    };
    InputOptions { cpu: s.frequency_hz > 0, alloc, fold_library }
}

/// Draws a differential flame graph per group compared (CPU, and allocated bytes when recorded)
/// and writes the interactive compare view of the group as one self-contained HTML page
/// (`<group>-compare.html`, fit to upload as a CI artifact) into `dir`; returns the files written.
pub(super) fn write_flamegraphs(
    prepared: &Prepared,
    cmp: &Comparison,
    dir: &Path,
    shell: &Shell,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (key, (base, head)) in &prepared.profiles {
        if base.is_empty() || head.is_empty() {
            continue;
        }
        let title = format!("{key}: {} → {}", prepared.base_label, prepared.head_label);
        let page =
            crate::viewer::ReportInput::compare(title, base, head, Some(cmp)).with_details(vec![format!(
                "{} base and {} head runs; the regression table covers every compared target",
                base.len(),
                head.len()
            )]);
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
                Err(crate::report::ReportError::NoSamples { .. }) => continue,
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
