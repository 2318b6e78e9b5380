//! Queries over the store: `log`, `show`, baseline lookups, `export`, `import` and `gc`. They return
//! data; `render` turns it into text.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use super::error::{StoreError, StoreWarning};
use super::meta::{METADATA_VERSION, NewRun, RunMetadata, RunSummary, looks_like_run_id};
use super::{Store, index, meta_path};
use crate::git::Repo;

/// Which runs `log` lists. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Keep runs whose key is one of these (full commit ids, or `no-git`/`unborn`): resolve
    /// revisions with [`crate::git::Repo::resolve`] first.
    pub commits: Vec<String>,
    /// Keep runs recorded on this branch.
    pub branch: Option<String>,
    /// Keep runs carrying every one of these tags.
    pub tags: Vec<(String, String)>,
    /// Keep runs with a profile group or target triple containing this substring.
    pub target: Option<String>,
    /// Keep runs at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Keep runs at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many runs (the newest).
    pub limit: Option<usize>,
}

/// The answer of `log`.
#[derive(Debug, Default)]
pub struct Log {
    /// Matching runs, newest first.
    pub runs: Vec<RunSummary>,
    /// Index objects that could not be read and were skipped.
    pub warnings: Vec<StoreWarning>,
}

impl Store {
    /// Runs matching `filter`, newest first, from the index alone (metadata is read only for runs with
    /// more profile groups than their summary lists, when filtering by target).
    pub fn log(&self, filter: &LogFilter) -> Result<Log, StoreError> {
        let snap = index::load(&self.backend)?;
        let mut warnings = snap.warnings;
        let mut runs = Vec::new();
        for run in snap.runs {
            if filter.limit.is_some_and(|n| runs.len() >= n) {
                break;
            }
            if !matches_cheap(&run, filter) {
                continue;
            }
            if let Some(needle) = &filter.target {
                let quick =
                    run.target.contains(needle.as_str()) || run.groups.iter().any(|g| g.contains(needle));
                if !quick {
                    if !run.more_groups {
                        continue;
                    }
                    match self.show(&run.run_id) {
                        Ok(m) if m.profiles.iter().any(|p| p.group.contains(needle.as_str())) => {}
                        Ok(_) => continue,
                        Err(StoreError::Corrupt { path, reason, .. }) => {
                            warnings.push(StoreWarning { path, reason });
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            runs.push(run);
        }
        Ok(Log { runs, warnings })
    }

    /// The metadata of a run. A run the index does not list (orphan, deleted) is not found.
    pub fn show(&self, run_id: &str) -> Result<RunMetadata, StoreError> {
        let path = meta_path(run_id);
        let not_found =
            || StoreError::NotFound { what: format!("run {run_id}"), store: self.url().to_string() };
        let bytes = self.backend.get(&path)?.ok_or_else(not_found)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            store: self.url().to_string(),
            reason,
        };
        let meta: RunMetadata = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => {
                let version = v.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
                if version > u64::from(METADATA_VERSION) {
                    return Err(corrupt(format!(
                        "metadata version {version} is newer than {METADATA_VERSION}: upgrade cargo contprof"
                    )));
                }
                serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        if meta.run_id != run_id {
            return Err(corrupt(format!("holds run {} instead", meta.run_id)));
        }
        Ok(meta)
    }

    /// Visible runs keyed by `key` (a full commit id), newest first.
    pub fn runs_for_commit(&self, key: &str) -> Result<Vec<RunSummary>, StoreError> {
        Ok(index::load(&self.backend)?.runs.into_iter().filter(|r| r.key == key).collect())
    }

    /// The first commit of `ancestors` (nearest first, as `git rev-list` gives them) that has runs.
    /// Clean runs are preferred: a commit with only dirty runs counts when nothing cleaner exists.
    pub fn nearest_with_runs(&self, ancestors: &[String]) -> Result<Option<Baseline>, StoreError> {
        let snap = index::load(&self.backend)?;
        let mut by_key: HashMap<&str, Vec<&RunSummary>> = HashMap::new();
        for r in &snap.runs {
            by_key.entry(r.key.as_str()).or_default().push(r);
        }
        for (distance, commit) in ancestors.iter().enumerate() {
            if let Some(runs) = by_key.get(commit.as_str()) {
                let clean: Vec<RunSummary> = runs.iter().filter(|r| !r.dirty).map(|r| (*r).clone()).collect();
                let runs = if clean.is_empty() { runs.iter().map(|r| (*r).clone()).collect() } else { clean };
                return Ok(Some(Baseline { commit: commit.clone(), distance, runs }));
            }
        }
        Ok(None)
    }

    /// Writes every profile of a run into `dir` (created), under the file names of its metadata.
    /// Returns the paths written.
    pub fn export(&self, run_id: &str, dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        let meta = self.show(run_id)?;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create directory",
            path: dir.display().to_string(),
            source,
        })?;
        let mut written = Vec::new();
        for p in &meta.profiles {
            let bytes = self.read_profile(run_id, &p.file)?;
            let out = dir.join(&p.file);
            std::fs::write(&out, bytes).map_err(|source| StoreError::Io {
                op: "write",
                path: out.display().to_string(),
                source,
            })?;
            written.push(out);
        }
        Ok(written)
    }

    /// Stores pprof files made by another tool as one run. Every file is checked first (it must
    /// gunzip to a non-empty payload), so a bad file writes nothing.
    pub fn import(&self, new: NewRun, files: &[ImportFile]) -> Result<RunMetadata, StoreError> {
        let mut loaded = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f.path).map_err(|source| StoreError::Io {
                op: "read",
                path: f.path.display().to_string(),
                source,
            })?;
            check_gzipped_profile(&bytes)
                .map_err(|why| StoreError::InvalidInput(format!("{}: {why}", f.path.display())))?;
            let group = f.group.clone().unwrap_or_else(|| {
                let stem = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("import/{}", stem.trim_end_matches(".gz").trim_end_matches(".pb"))
            });
            loaded.push((group, bytes));
        }
        if loaded.is_empty() {
            return Err(StoreError::InvalidInput("no profile files to import".to_string()));
        }
        let mut w = self.begin_run(new)?;
        let mut reps: HashMap<String, u32> = HashMap::new();
        for (group, bytes) in loaded {
            let rep = reps.entry(group.clone()).or_default();
            w.add_profile(&group, *rep, None, bytes)?;
            *rep += 1;
        }
        w.commit()
    }

    /// Applies the retention policy: deletes runs older than `policy.keep` except the newest run of
    /// each protected commit, and orphaned objects of runs never committed (older than a day). With
    /// `dry_run`, only reports.
    pub fn gc(&self, policy: &GcPolicy, dry_run: bool) -> Result<GcReport, StoreError> {
        let snap = index::load(&self.backend)?;
        // A retention beyond the calendar's range keeps everything (no panic on overflow).
        let cutoff = policy.now.checked_sub_signed(policy.keep).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut newest_protected: HashSet<&str> = HashSet::new();
        let mut doomed = Vec::new();
        let mut kept = 0;
        // Newest first: the first run seen of a protected commit is its newest.
        for r in &snap.runs {
            let protect = r.commit.as_deref().is_some_and(|c| policy.protected_commits.contains(c))
                && newest_protected.insert(r.key.as_str());
            if r.time < cutoff && !protect {
                doomed.push(r.clone());
            } else {
                kept += 1;
            }
        }
        let known = index::known_ids(&self.backend)?;
        let orphan_cutoff = policy.now - Duration::days(1);
        let mut orphans: HashMap<String, (Vec<String>, DateTime<Utc>)> = HashMap::new();
        for obj in self.backend.list("runs")? {
            let Some(id) = obj.path.strip_prefix("runs/").and_then(|p| p.split('/').next()) else { continue };
            if known.contains(id) {
                continue;
            }
            let e = orphans.entry(id.to_string()).or_insert_with(|| (Vec::new(), obj.modified));
            e.0.push(obj.path.clone());
            e.1 = e.1.max(obj.modified);
        }
        let mut orphan_ids: Vec<String> = Vec::new();
        let mut orphan_objects = Vec::new();
        for (id, (paths, newest)) in orphans {
            if newest < orphan_cutoff {
                orphan_ids.push(id);
                orphan_objects.extend(paths);
            }
        }
        orphan_ids.sort();
        let report = GcReport { deleted: doomed, kept, orphans: orphan_ids, warnings: snap.warnings };
        if dry_run {
            return Ok(report);
        }
        let ids: Vec<String> = report.deleted.iter().map(|r| r.run_id.clone()).collect();
        index::hide(&self.backend, &ids)?;
        let mut objects = Vec::new();
        for id in &ids {
            objects.extend(self.backend.list(&format!("runs/{id}"))?.into_iter().map(|o| o.path));
            objects.push(index::loose_path(id));
        }
        objects.extend(orphan_objects);
        self.backend.delete_many(&objects)?;
        // A local store's emptied run directories (object stores have no directories).
        if let Some(root) = &self.local_root {
            for id in ids.iter().chain(&report.orphans) {
                remove_empty_dirs(&root.join("runs").join(id));
            }
        }
        index::forget(&self.backend)?;
        Ok(report)
    }
}

/// Parses a time of a `--since`/`--until` filter (the CLI's and the viewer's alike): an RFC 3339
/// time, a date (`2026-11-01`: its first second, or its last with `end_of_day`), or an age
/// such as `7d`, `12h`, `30m`, `2w` (that long before `now`). `None` when it is none of them.
pub fn parse_time(s: &str, now: DateTime<Utc>, end_of_day: bool) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = if end_of_day { d.and_hms_opt(23, 59, 59) } else { d.and_hms_opt(0, 0, 0) };
        return t.map(|t| t.and_utc());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let span = match unit {
        "d" | "days" | "day" => chrono::Duration::try_days(n)?,
        "h" | "hours" | "hour" => chrono::Duration::try_hours(n)?,
        "m" | "min" | "minutes" => chrono::Duration::try_minutes(n)?,
        "w" | "weeks" | "week" => chrono::Duration::try_weeks(n)?,
        _ => return None,
    };
    now.checked_sub_signed(span)
}

/// Removes the directories below `dir` (not `dir` itself) that are empty once their empty
/// subdirectories are gone; never a file.
pub(super) fn remove_empty_dirs_below(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
}

/// Removes `dir` and the directories below it that are empty once their empty subdirectories are
/// gone; never a file (a writer's file in it keeps it).
fn remove_empty_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn matches_cheap(run: &RunSummary, f: &LogFilter) -> bool {
    (f.commits.is_empty() || f.commits.contains(&run.key))
        && f.branch.as_ref().is_none_or(|b| run.branch.as_ref() == Some(b))
        && f.tags.iter().all(|(k, v)| run.tags.get(k) == Some(v))
        && f.since.is_none_or(|t| run.time >= t)
        && f.until.is_none_or(|t| run.time <= t)
}

/// Minimal validation of an imported profile: gzip that inflates to something non-empty.
fn check_gzipped_profile(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return Err("not a gzipped pprof profile (no gzip header)".to_string());
    }
    let mut first = [0u8; 1];
    let mut gz = flate2::read::GzDecoder::new(bytes);
    match gz.read(&mut first) {
        Ok(0) => Err("gzip payload is empty".to_string()),
        Ok(_) => std::io::copy(&mut gz, &mut std::io::sink())
            .map(drop)
            .map_err(|e| format!("corrupt gzip data: {e}")),
        Err(e) => Err(format!("corrupt gzip data: {e}")),
    }
}

/// A file to import.
#[derive(Debug, Clone)]
pub struct ImportFile {
    /// Path of the gzipped pprof file.
    pub path: PathBuf,
    /// Group to file it under; default `import/<file stem>`.
    pub group: Option<String>,
}

/// The stored runs a comparison should use as its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// The commit the runs were recorded at.
    pub commit: String,
    /// First-parent steps from the commit asked about (0: that commit itself).
    pub distance: usize,
    /// Its runs, newest first (clean runs only, when there are any).
    pub runs: Vec<RunSummary>,
}

/// What `gc` keeps.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// Keep runs younger than this. Default 30 days.
    pub keep: Duration,
    /// Commits whose newest run is always kept (those of the default branch).
    pub protected_commits: HashSet<String>,
    /// The time to measure age from.
    pub now: DateTime<Utc>,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy { keep: Duration::days(30), protected_commits: HashSet::new(), now: Utc::now() }
    }
}

/// What `gc` deleted (or would delete, on a dry run).
#[derive(Debug, Default)]
pub struct GcReport {
    /// Runs deleted, newest first.
    pub deleted: Vec<RunSummary>,
    /// Runs kept.
    pub kept: usize,
    /// Ids of orphaned, never-committed runs deleted.
    pub orphans: Vec<String>,
    /// Index objects skipped.
    pub warnings: Vec<StoreWarning>,
}

/// Commits of the default branch (every commit reachable from it), whose newest run gc keeps.
/// Empty when there is no default branch.
pub fn gc_protected_commits(repo: &Repo) -> Result<HashSet<String>, StoreError> {
    let Some(default) = repo.default_branch()? else { return Ok(HashSet::new()) };
    Ok(repo.first_parent_history(&default)?.into_iter().collect::<BTreeSet<_>>().into_iter().collect())
}

/// `show RUN|REV`: a run id, or a revision whose newest run is meant.
pub fn resolve_run(store: &Store, repo: Option<&Repo>, arg: &str) -> Result<RunMetadata, StoreError> {
    if looks_like_run_id(arg) {
        return store.show(arg);
    }
    let Some(repo) = repo else {
        return Err(StoreError::InvalidInput(format!(
            "`{arg}` is not a run id, and revisions need a git repository"
        )));
    };
    let commit = repo.resolve(arg)?;
    let runs = store.runs_for_commit(&commit)?;
    let Some(newest) = runs.first() else {
        return Err(StoreError::NotFound {
            what: format!("runs for revision `{arg}` (commit {commit})"),
            store: store.url().to_string(),
        });
    };
    store.show(&newest.run_id)
}

/// The nearest first-parent ancestor of `rev` (itself included) with stored runs, looking back at most
/// `max_depth` commits.
pub fn nearest_ancestor_with_runs(
    store: &Store,
    repo: &Repo,
    rev: &str,
    max_depth: usize,
) -> Result<Option<Baseline>, StoreError> {
    let ancestors = repo.first_parent_ancestors(rev, max_depth)?;
    store.nearest_with_runs(&ancestors)
}

/// The baseline of `head` for `check`: the merge-base with the default branch, or its nearest
/// first-parent ancestor with runs (within `max_depth`). `head` itself is skipped.
pub fn baseline_for(
    store: &Store,
    repo: &Repo,
    head: &str,
    max_depth: usize,
) -> Result<Option<Baseline>, StoreError> {
    let head_commit = repo.resolve(head)?;
    let start = match repo.merge_base_with_default(&head_commit)? {
        Some(base) if base != head_commit => base,
        _ => format!("{head_commit}~1"),
    };
    if repo.resolve(&start).is_err() {
        return Ok(None);
    }
    nearest_ancestor_with_runs(store, repo, &start, max_depth)
}
