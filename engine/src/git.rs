//! Git integration: the state of the working tree a run is recorded from, revision resolution, and the
//! commit graph walks the store needs (merge-base with the default branch, first-parent ancestors).
//!
//! This module runs the `git` command (`std::process`) rather than linking libgit2: no C library to
//! build, and every answer matches what the user's own `git` says, with their configuration (safe
//! directories, worktrees, alternates, `core.fsmonitor`, replace refs, shallow grafts) applied for free.
//! It owns no storage and knows nothing about runs: it answers questions about the repository only.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

/// An error talking to git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` executable could not be started.
    #[error("could not run `git` (is it installed and on PATH?)")]
    Missing(#[source] io::Error),
    /// The directory is not inside a git work tree.
    #[error("{} is not inside a git repository", dir.display())]
    NotARepo {
        /// The directory that was asked about.
        dir: PathBuf,
    },
    /// A revision does not name a commit.
    #[error("revision `{rev}` does not exist in {}", dir.display())]
    UnknownRevision {
        /// The revision as the user wrote it.
        rev: String,
        /// The repository it was looked up in.
        dir: PathBuf,
    },
    /// The repository has no commit yet, so the revision cannot be resolved.
    #[error("revision `{rev}` cannot be resolved: the branch in {} has no commit yet", dir.display())]
    Unborn {
        /// The revision as the user wrote it.
        rev: String,
        /// The repository.
        dir: PathBuf,
    },
    /// Any other failure of a git command.
    #[error("`git {args}` failed in {}: {stderr}", dir.display())]
    Command {
        /// The arguments given to git.
        args: String,
        /// Where it ran.
        dir: PathBuf,
        /// What git wrote on stderr, trimmed.
        stderr: String,
    },
}

/// What the working tree looks like when a run is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoState {
    /// A repository with at least one commit.
    Commit {
        /// Full id of `HEAD`.
        commit: String,
        /// Current branch, `None` on a detached `HEAD`.
        branch: Option<String>,
        /// `Some(hash)` when tracked files differ from `HEAD` or untracked files exist: a SHA-256 over
        /// `git diff HEAD` and the untracked file names, so two runs of the same edit share a hash.
        dirty: Option<String>,
        /// Whether the clone is shallow (ancestor walks stop early).
        shallow: bool,
    },
    /// A repository whose current branch has no commit yet.
    Unborn {
        /// The branch `HEAD` points to.
        branch: Option<String>,
    },
    /// Not inside a git work tree, or git is not installed.
    NoGit {
        /// Why: shown to the user so they know how runs are keyed.
        reason: String,
    },
}

impl RepoState {
    /// The commit runs are stored under, if any.
    pub fn commit(&self) -> Option<&str> {
        match self {
            RepoState::Commit { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// A one-line explanation of how runs recorded in this state are keyed.
    pub fn keying_note(&self) -> String {
        match self {
            RepoState::Commit { commit, dirty: None, .. } => format!("runs are keyed by commit {commit}"),
            RepoState::Commit { commit, dirty: Some(h), .. } => {
                format!("runs are keyed by commit {commit} (dirty tree, diff {})", short_commit(h))
            }
            RepoState::Unborn { branch } => format!(
                "branch {} has no commit yet: runs are keyed by time only (key `unborn`) until the first commit",
                branch.as_deref().unwrap_or("(unknown)")
            ),
            RepoState::NoGit { reason } => format!("{reason}: runs are keyed by time only (key `no-git`)"),
        }
    }
}

/// A handle on a git work tree, rooted at `dir`.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// Opens the repository containing `dir`, or fails with [`GitError::NotARepo`] / [`GitError::Missing`].
    pub fn discover(dir: impl AsRef<Path>) -> Result<Repo, GitError> {
        let dir = dir.as_ref().to_path_buf();
        let out = run_git(&dir, ["rev-parse", "--show-toplevel"])?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            // Only git's own "not a git repository" means that; anything else ("detected dubious
            // ownership" in a container, a corrupt .git) is shown as git said it.
            if stderr.contains("not a git repository") || stderr.is_empty() {
                return Err(GitError::NotARepo { dir });
            }
            return Err(GitError::Command { args: "rev-parse --show-toplevel".into(), dir, stderr });
        }
        let top = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Repo { dir: if top.is_empty() { dir } else { PathBuf::from(top) } })
    }

    /// The top-level directory of the work tree.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state to record a run under. Never fails for lack of a repository or of git: those are
    /// [`RepoState::NoGit`].
    pub fn state_of(dir: impl AsRef<Path>) -> Result<RepoState, GitError> {
        let repo = match Repo::discover(&dir) {
            Ok(repo) => repo,
            Err(GitError::NotARepo { dir }) => {
                return Ok(RepoState::NoGit {
                    reason: format!("{} is not in a git repository", dir.display()),
                });
            }
            Err(GitError::Missing(_)) => {
                return Ok(RepoState::NoGit { reason: "git is not installed".to_string() });
            }
            Err(e) => return Err(e),
        };
        repo.state()
    }

    /// The state of this repository's work tree.
    pub fn state(&self) -> Result<RepoState, GitError> {
        let branch = self.current_branch()?;
        let commit = match self.resolve("HEAD") {
            Ok(c) => c,
            Err(GitError::Unborn { .. }) => return Ok(RepoState::Unborn { branch }),
            Err(e) => return Err(e),
        };
        let dirty = self.dirty_hash()?;
        Ok(RepoState::Commit { commit, branch, dirty, shallow: self.is_shallow()? })
    }

    /// The branch `HEAD` points to (also on an unborn branch), `None` when detached.
    pub fn current_branch(&self) -> Result<Option<String>, GitError> {
        let out = run_git(&self.dir, ["symbolic-ref", "--quiet", "--short", "HEAD"])?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((out.status.success() && !name.is_empty()).then_some(name))
    }

    /// Hash of the uncommitted changes, `None` when the tree is clean.
    fn dirty_hash(&self) -> Result<Option<String>, GitError> {
        let diff = self.checked(["diff", "HEAD", "--no-ext-diff", "--binary"])?;
        let untracked = self.checked(["ls-files", "--others", "--exclude-standard", "-z"])?;
        if diff.is_empty() && untracked.is_empty() {
            return Ok(None);
        }
        let mut h = Sha256::new();
        h.update(&diff);
        h.update(b"\0untracked\0");
        h.update(&untracked);
        Ok(Some(hex(&h.finalize())))
    }

    /// Whether this is a shallow clone (history is cut, so ancestor walks may miss baselines).
    pub fn is_shallow(&self) -> Result<bool, GitError> {
        let out = self.checked(["rev-parse", "--is-shallow-repository"])?;
        Ok(String::from_utf8_lossy(&out).trim() == "true")
    }

    /// What to append to an error about a missing revision when this is a shallow clone (""
    /// otherwise): how to fetch the history.
    pub fn shallow_note(&self) -> &'static str {
        if self.is_shallow().unwrap_or(false) {
            "; this is a shallow clone: fetch the history (actions/checkout with `fetch-depth: 0`, or \
             `git fetch --unshallow`)"
        } else {
            ""
        }
    }

    /// Resolves a revision (`HEAD~3`, a branch, a tag, a short id) to a full commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        if rev.starts_with('-') {
            return Err(GitError::UnknownRevision { rev: rev.to_string(), dir: self.dir.clone() });
        }
        let spec = format!("{rev}^{{commit}}");
        let out = run_git(&self.dir, ["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !id.is_empty() {
            return Ok(id);
        }
        // Distinguish "no such revision" from "nothing committed yet" for a clearer message.
        let head = run_git(&self.dir, ["rev-parse", "--verify", "--quiet", "HEAD"])?;
        if !head.status.success() {
            return Err(GitError::Unborn { rev: rev.to_string(), dir: self.dir.clone() });
        }
        Err(GitError::UnknownRevision { rev: rev.to_string(), dir: self.dir.clone() })
    }

    /// The default branch as a revision: `origin/HEAD`'s target, else `main`, else `master`.
    pub fn default_branch(&self) -> Result<Option<String>, GitError> {
        let out = run_git(&self.dir, ["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"])?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !name.is_empty() {
            return Ok(Some(name));
        }
        for candidate in ["main", "master", "origin/main", "origin/master"] {
            if self.resolve(candidate).is_ok() {
                return Ok(Some(candidate.to_string()));
            }
        }
        Ok(None)
    }

    /// The merge-base of `commit` with the default branch, `None` when there is no default branch or
    /// no common history.
    pub fn merge_base_with_default(&self, commit: &str) -> Result<Option<String>, GitError> {
        let Some(default) = self.default_branch()? else { return Ok(None) };
        let out = run_git(&self.dir, ["merge-base", "--end-of-options", commit, &default])?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((out.status.success() && !id.is_empty()).then_some(id))
    }

    /// Up to `n` first-parent ancestors of `rev`, starting with the commit itself.
    pub fn first_parent_ancestors(&self, rev: &str, n: usize) -> Result<Vec<String>, GitError> {
        self.first_parents(rev, Some(n))
    }

    /// Every first-parent commit of `rev` (the history of a branch as merges landed on it).
    pub fn first_parent_history(&self, rev: &str) -> Result<Vec<String>, GitError> {
        self.first_parents(rev, None)
    }

    /// The contents of `path` (relative to the top level) at revision `rev`; `None` when the file does
    /// not exist there.
    pub fn file_at(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let spec = format!("{rev}:{path}");
        let out = run_git(&self.dir, ["cat-file", "blob", "--end-of-options", &spec])?;
        Ok(out.status.success().then_some(out.stdout))
    }

    /// Checks `commit` out, detached, in a new work tree at `path` (`git worktree add`).
    pub fn add_worktree(&self, path: &Path, commit: &str) -> Result<(), GitError> {
        let path = path.to_string_lossy();
        self.checked(["worktree", "add", "--force", "--detach", "--end-of-options", &path, commit]).map(drop)
    }

    /// Removes a work tree made by [`Repo::add_worktree`].
    pub fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        let path = path.to_string_lossy();
        self.checked(["worktree", "remove", "--force", "--end-of-options", &path]).map(drop)
    }

    fn first_parents(&self, rev: &str, n: Option<usize>) -> Result<Vec<String>, GitError> {
        let commit = self.resolve(rev)?;
        let mut args = vec!["rev-list".to_string(), "--first-parent".to_string()];
        args.extend(n.map(|n| format!("--max-count={n}")));
        args.extend(["--end-of-options".to_string(), commit]);
        let out = self.checked(&args)?;
        Ok(String::from_utf8_lossy(&out).lines().map(str::to_string).collect())
    }

    fn checked<I, S>(&self, args: I) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = run_git(&self.dir, args.clone())?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        Err(GitError::Command {
            args: args.join(" "),
            dir: self.dir.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn run_git<I, S>(dir: &Path, args: I) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .output()
        .map_err(GitError::Missing)
}

/// Lowercase hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A commit id shortened for messages: its first 12 characters (character-safe: a stored
/// `meta.json` may hold anything). The one shortening every message uses.
pub fn short_commit(commit: &str) -> &str {
    commit.char_indices().nth(12).map_or(commit, |(i, _)| &commit[..i])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Issue 15.14: a non-ASCII "commit" from a stored `meta.json` is shortened, not sliced
    /// through a character.
    #[test]
    fn short_commit_never_splits_a_character() {
        assert_eq!(short_commit("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_commit("ééééééééééééééé"), "éééééééééééé");
        assert_eq!(short_commit("abc"), "abc");
        assert_eq!(short_commit(""), "");
    }

    /// A throwaway repository with `n` commits on `main`.
    pub(crate) fn temp_repo(n: usize) -> (tempfile::TempDir, Repo, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["init", "-q", "-b", "main"]);
        for i in 0..n {
            std::fs::write(dir.path().join("f.txt"), format!("{i}\n")).expect("write");
            git(&["add", "f.txt"]);
            git(&["commit", "-q", "-m", &format!("c{i}")]);
        }
        let repo = Repo::discover(dir.path()).expect("repo");
        let mut commits =
            if n > 0 { repo.first_parent_ancestors("HEAD", n).expect("rev-list") } else { vec![] };
        commits.reverse();
        (dir, repo, commits)
    }

    #[test]
    fn resolves_revisions_and_names_missing_ones() {
        let (_d, repo, commits) = temp_repo(4);
        assert_eq!(repo.resolve("HEAD").unwrap(), commits[3]);
        assert_eq!(repo.resolve("HEAD~3").unwrap(), commits[0]);
        assert_eq!(repo.resolve("main~1").unwrap(), commits[2]);
        assert_eq!(repo.resolve(&commits[1][..8]).unwrap(), commits[1]);
        let err = repo.resolve("no-such-branch").unwrap_err();
        assert!(matches!(err, GitError::UnknownRevision { .. }));
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        assert!(matches!(repo.resolve("HEAD~10"), Err(GitError::UnknownRevision { .. })));
        assert!(matches!(repo.resolve("--all"), Err(GitError::UnknownRevision { .. })));
    }

    #[test]
    fn state_clean_dirty_and_untracked() {
        let (d, repo, commits) = temp_repo(2);
        let RepoState::Commit { commit, branch, dirty, shallow } = repo.state().unwrap() else {
            panic!("expected a commit state")
        };
        assert_eq!(
            (commit.as_str(), branch.as_deref(), dirty, shallow),
            (commits[1].as_str(), Some("main"), None, false)
        );
        std::fs::write(d.path().join("new.txt"), "x").unwrap();
        let RepoState::Commit { dirty: Some(h1), .. } = repo.state().unwrap() else { panic!("dirty") };
        std::fs::write(d.path().join("f.txt"), "changed").unwrap();
        let RepoState::Commit { dirty: Some(h2), .. } = repo.state().unwrap() else { panic!("dirty") };
        assert_ne!(h1, h2);
        assert_eq!(h2.len(), 64);
    }

    #[test]
    fn unborn_and_not_a_repo() {
        let (d, repo, _) = temp_repo(0);
        assert_eq!(repo.state().unwrap(), RepoState::Unborn { branch: Some("main".into()) });
        assert!(matches!(repo.resolve("HEAD"), Err(GitError::Unborn { .. })));
        drop(d);
        let plain = tempfile::tempdir().unwrap();
        let st = Repo::state_of(plain.path()).unwrap();
        assert!(matches!(st, RepoState::NoGit { .. }), "{st:?}");
        assert!(st.keying_note().contains("no-git"));
    }

    #[test]
    fn ancestors_merge_base_and_default_branch() {
        let (_d, repo, commits) = temp_repo(5);
        let anc = repo.first_parent_ancestors("HEAD", 3).unwrap();
        assert_eq!(anc, vec![commits[4].clone(), commits[3].clone(), commits[2].clone()]);
        assert_eq!(repo.default_branch().unwrap().as_deref(), Some("main"));
        assert_eq!(repo.merge_base_with_default(&commits[2]).unwrap().as_deref(), Some(commits[2].as_str()));
        assert_eq!(repo.first_parent_history("HEAD").unwrap().len(), 5);
    }
}
