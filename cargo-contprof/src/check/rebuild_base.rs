//! `check --baseline interleaved` (and `auto` off the default branch): builds the base revision in
//! a separate git worktree and records base and head interleaved (A B A B ...) in the same job, so
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
use std::sync::Arc;

use super::side::{Clocks, record_side};
use crate::args::CheckArgs;
use crate::compare::{Context, Side};
use contprof_engine::cargo::PROFILE_NAME;
use contprof_engine::config::{BaselineMode, CheckTarget};
use contprof_engine::errors::{Error, Result};
use contprof_engine::git::{Repo, short_commit};
use contprof_engine::shell::Shell;
use contprof_engine::store::RunMetadata;
use contprof_engine::timing::Clock;

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
/// `--baseline` mode (`--rebuild-base` is `interleaved`), else `check.baseline`, else `auto`.
///
/// `auto` interleaves whenever it can, because that is what measured better on real crates (the book,
/// `docs/src/measurements.md#detection`): between batches recorded minutes apart, functions of identical binaries drift
/// apart by 3-18% on the log scale, which hides a +25% change in a 5% function; interleaved, that
/// spread is 0-2%. It falls back to the store on the default branch itself (where `check` records
/// the baseline of later commits) and where the base is not in the clone (a shallow checkout), and
/// says why.
pub(super) fn base_to_rebuild(args: &CheckArgs, ctx: &Context, shell: &Shell) -> Result<Option<String>> {
    let mode = if args.rebuild_base {
        BaselineMode::Interleaved
    } else {
        args.baseline.or(ctx.config.config.check.baseline).unwrap_or(BaselineMode::Auto)
    };
    let explicit_run_ids = args.base.as_deref().is_some_and(contprof_engine::store::looks_like_run_id);
    let chosen = match (mode, &ctx.repo) {
        (BaselineMode::Stored, _) => Err(String::new()),
        (BaselineMode::Interleaved, _) if explicit_run_ids => {
            return Err(Error::msg(
                "--baseline interleaved rebuilds a revision; --base names stored runs (use --baseline stored)",
            ));
        }
        (BaselineMode::Interleaved, None) => {
            return Err(Error::msg("--baseline interleaved needs a git repository to check the base out"));
        }
        (BaselineMode::Interleaved, Some(repo)) => Ok(base_commit(args, repo, shell)?),
        (BaselineMode::Auto, _) if explicit_run_ids => Err("--base names stored runs".to_owned()),
        (BaselineMode::Auto, None) => Err("not in a git repository".to_owned()),
        (BaselineMode::Auto, Some(repo)) => match &args.base {
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
                        crate::ci::shallow_note(repo)
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

/// The base commit of `--baseline interleaved`: `--base`, else the merge-base with the default
/// branch (its first parent when that is HEAD itself, as on the default branch).
fn base_commit(args: &CheckArgs, repo: &Repo, shell: &Shell) -> Result<String> {
    let fetch_hint = crate::ci::shallow_note(repo);
    let head = repo.resolve("HEAD")?;
    if let Some(rev) = &args.base {
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

/// Records at most `runs` repetitions of each target on head and base, alternating, one
/// repetition at a time; after each pair but the last, `look` sees the two sides so far (base,
/// head) and says whether to stop there (see `compare::sequential`). Returns the base side and
/// head's runs.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_interleaved(
    args: &CheckArgs,
    ctx: &Context,
    base: String,
    targets: &[CheckTarget],
    runs: u32,
    look: &mut dyn FnMut(&Side, &Side) -> Result<bool>,
    clocks: &Clocks,
    shell: &Shell,
) -> Result<(Side, Vec<RunMetadata>)> {
    let repo = ctx
        .repo
        .as_ref()
        .ok_or_else(|| Error::msg("--baseline interleaved needs a git repository to check the base out"))?;
    let contprof_dir = ctx.workspace.target_dir().join("contprof");
    let path = contprof_dir.join("base-worktree");
    if path.exists() {
        let _ = repo.remove_worktree(&path);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("could not remove", &path, e))?;
    }
    std::fs::create_dir_all(&contprof_dir)
        .map_err(|e| Error::io("could not create directory", &contprof_dir, e))?;

    let mut base_args = args.clone();
    let root = repo.dir();
    let manifest =
        args.cargo.manifest_path.clone().unwrap_or_else(|| ctx.workspace.root().join("Cargo.toml"));
    let manifest =
        std::path::absolute(&manifest).map_err(|e| Error::io("could not resolve", &manifest, e))?;
    base_args.cargo.manifest_path = Some(in_worktree(&manifest, root, &path)?);
    let base_target = contprof_dir.join("base-target");
    base_args.cargo.target_dir = Some(base_target.clone());
    // The base's own crates name their sources and build outputs as the head's: their debug info,
    // panic locations and the files generated into the target directory then differ from the
    // head's only where the code does (the instructions engine counts the work of reading them).
    // Dependencies are not rebuilt for it (see `cargo::BuildOptions::remap`): the seeded ones
    // already name the head's paths.
    let base_remap =
        [(path.clone(), root.to_owned()), (base_target.clone(), ctx.workspace.target_dir().to_owned())];
    base_args.store.url = Some(ctx.store.url().to_owned());

    let (mut base_runs, mut head_runs) = (Vec::new(), Vec::new());
    let mut worktree = None;
    for i in 0..runs {
        for target in targets {
            shell.status("Recording", format_args!("head, repetition {} of {runs}", i + 1));
            head_runs.push(record_stored(args, target, ctx, &[], &clocks.head, shell)?);
            if worktree.is_none() {
                // After the head's first build, before the checkout: see the module doc.
                let seeded = seed_target(&contprof_dir, &base_target.join(PROFILE_NAME))?;
                if seeded > 0 {
                    shell.note(format_args!(
                        "seeded the base's target directory with {seeded} files of the head's build"
                    ));
                }
                repo.add_worktree(&path, &base)?;
                shell.status(
                    "Checked out",
                    format_args!("base {} in {}", short_commit(&base), path.display()),
                );
                worktree = Some(Worktree { repo, path: path.clone() });
            }
            shell.status("Recording", format_args!("base, repetition {} of {runs}", i + 1));
            base_runs.push(record_stored(&base_args, target, ctx, &base_remap, &clocks.base, shell)?);
        }
        if i + 1 < runs {
            let (b, h) = sides(&base, &base_runs, &head_runs);
            if look(&b, &h)? {
                break;
            }
        }
    }
    drop(worktree);
    let (side, head) = sides(&base, &base_runs, &head_runs);
    Ok((side, head.runs))
}

/// The rebuilt base `base` and the head as sides of a comparison, from their runs so far.
fn sides(base: &str, base_runs: &[RunMetadata], head_runs: &[RunMetadata]) -> (Side, Side) {
    let newest_first = |runs: &[RunMetadata]| runs.iter().rev().cloned().collect::<Vec<_>>();
    let head = newest_first(head_runs);
    (
        Side {
            label: format!("{} (rebuilt)", short_commit(base)),
            commit: Some(base.to_owned()),
            runs: newest_first(base_runs),
        },
        Side { label: "HEAD".to_owned(), commit: head.first().and_then(|r| r.commit.clone()), runs: head },
    )
}

/// Records one repetition of `target` and returns the stored run (see [`record`]).
fn record_stored(
    args: &CheckArgs,
    target: &CheckTarget,
    ctx: &Context,
    remap: &[(PathBuf, PathBuf)],
    clock: &Arc<Clock>,
    shell: &Shell,
) -> Result<RunMetadata> {
    let summary = record_side(args, target, 1, ctx, remap, clock, shell)?;
    summary.stored.ok_or_else(|| Error::msg("the run was not stored; `check` needs a store"))
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
