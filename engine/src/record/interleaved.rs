//! The interleaved baseline of `check` (`--baseline interleaved`, and `auto` off the default
//! branch): builds the base revision in a separate git worktree and records base and head
//! interleaved (A B A B ...) in the same job, so
//! that drift of a shared runner's speed hits both sides alike, instead of comparing with a
//! baseline recorded on another machine at another time.
//!
//! The base worktree is `<target-dir>/contprof/base-worktree` (removed afterwards) and builds into
//! its own target directory, `<target-dir>/contprof/base-target`, kept between jobs. It cannot
//! share the head's: cargo gives a workspace's crates the same artifact names at any checkout path
//! (hashed relative to the workspace root) and judges them fresh by modification times, so the
//! side built second would find the other side's binary up to date and run it. What the base
//! does share is the dependencies: the head records first, and before the base is checked out its
//! target directory is seeded with copies of the head's build outputs (`deps`, `build`,
//! `.fingerprint`, modification times kept; files it already has are left alone). A dependency
//! that both sides resolve alike (same version, features, flags) is then fresh for the base, while
//! the base's own crates, checked out after the copies were made, are newer than any of them and
//! are compiled. Both sides are stored in the head's store under their own commits.

use std::path::{Path, PathBuf};

use crate::cargo::PROFILE_NAME;
use crate::config::BaselineMode;
use crate::errors::{Error, Result};
use crate::git::{Repo, short_commit};
use crate::shell::Shell;
use crate::store::RunMetadata;

/// Removes the worktree when dropped, whatever happened.
struct Worktree<'a> {
    repo: &'a Repo,
    path: PathBuf,
}

impl Drop for Worktree<'_> {
    fn drop(&mut self) {
        let _ = self.repo.remove_worktree(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The base commit to rebuild and interleave with, or `None` to compare with the store, by the
/// baseline `mode` (`check`'s `--baseline`, `--rebuild-base` or `check.baseline`), the base the
/// user named (`--base`: a revision or stored run ids) and the repository the check runs in.
///
/// `auto` interleaves whenever it can, because that is what measured better on real crates (the book,
/// `docs/src/measurements.md#detection`): between batches recorded minutes apart, functions of identical binaries drift
/// apart by 3-18% on the log scale, which hides a +25% change in a 5% function; interleaved, that
/// spread is 0-2%. It falls back to the store on the default branch itself (where `check` records
/// the baseline of later commits) and where the base is not in the clone (a shallow checkout), and
/// says why.
pub fn base_to_rebuild(
    mode: BaselineMode,
    named: Option<&str>,
    repo: Option<&Repo>,
    shell: &Shell,
) -> Result<Option<String>> {
    let explicit_run_ids = named.is_some_and(crate::store::looks_like_run_id);
    let chosen = match (mode, repo) {
        (BaselineMode::Stored, _) => Err(String::new()),
        (BaselineMode::Interleaved, _) if explicit_run_ids => {
            return Err(Error::msg(
                "--baseline interleaved rebuilds a revision; --base names stored runs (use --baseline stored)",
            ));
        }
        (BaselineMode::Interleaved, None) => {
            return Err(Error::msg("--baseline interleaved needs a git repository to check the base out"));
        }
        (BaselineMode::Interleaved, Some(repo)) => Ok(base_commit(named, repo, shell)?),
        (BaselineMode::Auto, _) if explicit_run_ids => Err("--base names stored runs".to_owned()),
        (BaselineMode::Auto, None) => Err("not in a git repository".to_owned()),
        (BaselineMode::Auto, Some(repo)) => match named {
            Some(rev) => Ok(repo.resolve(rev)?),
            None => {
                let head = repo.resolve("HEAD")?;
                match repo.merge_base_with_default(&head)? {
                    Some(merge_base) if merge_base != head => Ok(merge_base),
                    Some(_) => {
                        Err("HEAD is on the default branch, and is recorded as the baseline of later \
                                    commits (--baseline interleaved rebuilds its parent)"
                            .to_owned())
                    }
                    None => Err(format!(
                        "no merge-base with the default branch to rebuild{}",
                        repo.shallow_note()
                    )),
                }
            }
        },
    };
    match chosen {
        Ok(base) => {
            shell.status(
                "Baseline",
                format_args!(
                    "interleaved: base {} rebuilt, base and head run alternately",
                    short_commit(&base)
                ),
            );
            Ok(Some(base))
        }
        Err(why) if why.is_empty() => {
            shell.status("Baseline", "stored runs");
            Ok(None)
        }
        Err(why) => {
            shell.status("Baseline", format_args!("stored runs: {why}"));
            Ok(None)
        }
    }
}

/// The base commit of `--baseline interleaved`: the one `named` (`--base`), else the merge-base with the default
/// branch (its first parent when that is HEAD itself, as on the default branch).
fn base_commit(named: Option<&str>, repo: &Repo, shell: &Shell) -> Result<String> {
    let fetch_hint = repo.shallow_note();
    let head = repo.resolve("HEAD")?;
    if let Some(rev) = named {
        return repo.resolve(rev).map_err(|e| Error::msg(format!("--baseline interleaved: {e}{fetch_hint}")));
    }
    let merge_base = repo.merge_base_with_default(&head)?.ok_or_else(|| {
        Error::msg(format!(
            "--baseline interleaved: no merge-base of HEAD with the default branch; name the base with \
             --base{fetch_hint}"
        ))
    })?;
    if merge_base != head {
        return Ok(merge_base);
    }
    let parent = repo.resolve("HEAD~1").map_err(|e| {
        Error::msg(format!(
            "--baseline interleaved: HEAD is on the default branch and has no parent: {e}{fetch_hint}"
        ))
    })?;
    shell.note("HEAD is on the default branch: the base is its first parent");
    Ok(parent)
}

/// Where the base side is built and how its paths read: its checkout's manifest, its own target
/// directory, and the rewriting of its paths into the head's (`--remap-path-prefix`).
#[derive(Debug, Clone)]
pub struct BaseCheckout {
    /// The manifest in the base's worktree that matches the head's.
    pub manifest_path: PathBuf,
    /// The base's target directory, `<target-dir>/contprof/base-target`.
    pub target_dir: PathBuf,
    /// The base's worktree and target directory, each named as the head's.
    pub remap: Vec<(PathBuf, PathBuf)>,
}

/// Whether to stop recording, given the base's runs and the head's so far.
pub type Look<'a> = dyn FnMut(&[RunMetadata], &[RunMetadata]) -> Result<bool> + 'a;

/// Records one repetition of a target, for the head (`None`) or the base's checkout, calling
/// its third argument (which says "Recording head, repetition 2 of 3") once it records; `None`,
/// without calling it, when that repetition of the target is left out.
pub type Record<'a, T> = dyn FnMut(&T, Option<&BaseCheckout>, &dyn Fn()) -> Result<Option<RunMetadata>> + 'a;

/// Records at most `runs` repetitions of each target on head and base, alternating, one
/// repetition at a time: `record` records one repetition of a target for the head (`None`) or
/// for the base's checkout, and returns its stored run, or `None` when it leaves that
/// repetition of the target out (the head's answer decides for the pair: the base's repetition
/// is then not asked for). After each pair but the last, `look`
/// sees the two sides' runs so far (base, head) and says whether to stop there (see
/// `compare::sequential`). `repo` is the repository, `target_dir` the head's target directory
/// and `manifest` the head's manifest. Returns the base's runs and the head's, in the order
/// they were recorded.
#[allow(clippy::too_many_arguments)]
pub fn record_interleaved<T>(
    repo: &Repo,
    target_dir: &Path,
    manifest: &Path,
    base: &str,
    targets: &[T],
    runs: u32,
    record: &mut Record<'_, T>,
    look: &mut Look<'_>,
    shell: &Shell,
) -> Result<(Vec<RunMetadata>, Vec<RunMetadata>)> {
    let contprof_dir = target_dir.join("contprof");
    let path = contprof_dir.join("base-worktree");
    if path.exists() {
        let _ = repo.remove_worktree(&path);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("could not remove", &path, e))?;
    }
    std::fs::create_dir_all(&contprof_dir)
        .map_err(|e| Error::io("could not create directory", &contprof_dir, e))?;

    let root = repo.dir();
    let manifest = std::path::absolute(manifest).map_err(|e| Error::io("could not resolve", manifest, e))?;
    let base_target = contprof_dir.join("base-target");
    // The base's own crates name their sources and build outputs as the head's: their debug info,
    // panic locations and the files generated into the target directory then differ from the
    // head's only where the code does (the instructions engine counts the work of reading them).
    // Dependencies are not rebuilt for it (see `cargo::BuildOptions::remap`): the seeded ones
    // already name the head's paths.
    let checkout = BaseCheckout {
        manifest_path: in_worktree(&manifest, root, &path)?,
        target_dir: base_target.clone(),
        remap: vec![(path.clone(), root.to_owned()), (base_target.clone(), target_dir.to_owned())],
    };

    let (mut base_runs, mut head_runs) = (Vec::new(), Vec::new());
    let mut worktree = None;
    for i in 0..runs {
        for target in targets {
            let announce = |side: &str| {
                shell.status("Recording", format_args!("{side}, repetition {} of {runs}", i + 1))
            };
            let Some(head) = record(target, None, &|| announce("head"))? else { continue };
            head_runs.push(head);
            if worktree.is_none() {
                // After the head's first build, before the checkout: see the module doc.
                let seeded = seed_target(&contprof_dir, &base_target.join(PROFILE_NAME))?;
                if seeded > 0 {
                    shell.note(format_args!(
                        "seeded the base's target directory with {seeded} files of the head's build"
                    ));
                }
                repo.add_worktree(&path, base)?;
                shell
                    .status("Checked out", format_args!("base {} in {}", short_commit(base), path.display()));
                worktree = Some(Worktree { repo, path: path.clone() });
            }
            if let Some(base) = record(target, Some(&checkout), &|| announce("base"))? {
                base_runs.push(base);
            }
        }
        if i + 1 < runs && look(&base_runs, &head_runs)? {
            break;
        }
    }
    drop(worktree);
    Ok((base_runs, head_runs))
}

/// Where `path` (inside the repository at `repo_root`) lies in the worktree at `worktree`.
fn in_worktree(path: &Path, repo_root: &Path, worktree: &Path) -> Result<PathBuf> {
    let rel = path.strip_prefix(repo_root).map_err(|_| {
        Error::msg(format!(
            "--baseline interleaved: {} is outside the git repository {}",
            path.display(),
            repo_root.display()
        ))
    })?;
    Ok(worktree.join(rel))
}

/// Copies cargo's build outputs of the profile directory `from` (`deps`, `build`, `.fingerprint`)
/// into `to`, keeping modification times (cargo compares them) and leaving the files `to` has
/// alone. Returns how many files were copied.
fn seed_target(from: &Path, to: &Path) -> Result<usize> {
    fn copy_tree(from: &Path, to: &Path, copied: &mut usize) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
        std::fs::create_dir_all(to).map_err(|e| Error::io("could not create directory", to, e))?;
        for entry in entries.flatten() {
            let (src, dest) = (entry.path(), to.join(entry.file_name()));
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                copy_tree(&src, &dest, copied)?;
            } else if kind.is_file() && !dest.exists() {
                std::fs::copy(&src, &dest).map_err(|e| Error::io("could not copy", &src, e))?;
                let modified = entry.metadata().and_then(|m| m.modified());
                let kept =
                    modified.and_then(|t| std::fs::File::options().write(true).open(&dest)?.set_modified(t));
                kept.map_err(|e| Error::io("could not set the modification time of", &dest, e))?;
                *copied += 1;
            }
        }
        Ok(())
    }
    let mut copied = 0;
    for dir in ["deps", "build", ".fingerprint"] {
        copy_tree(&from.join(dir), &to.join(dir), &mut copied)?;
    }
    Ok(copied)
}
