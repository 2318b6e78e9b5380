//! What `check` adds for CI around its report: the "why did it regress" section ([`contprof_engine::why`]) and,
//! under GitHub Actions, annotations, the job summary and the sticky-comment marker
//! ([`contprof_engine::github`]). Also the shallow-clone hint.

use std::path::{Path, PathBuf};

use super::compare::Context;
use contprof_engine::compare::{Comparison, Finding, Verdict};
use contprof_engine::errors::Result;
use contprof_engine::git::Repo;
use contprof_engine::github::{self, Annotation};
use contprof_engine::pipeline::Prepared;
use contprof_engine::shell::Shell;
use contprof_engine::why::{self, Explanation, Sources};

/// Base at a commit (through git), head in the work tree that was built.
struct GitSources<'a> {
    repo: &'a Repo,
    base: String,
    head_root: PathBuf,
}

impl Sources for GitSources<'_> {
    fn base(&self, path: &str) -> Option<String> {
        let bytes = self.repo.file_at(&self.base, path).ok()??;
        String::from_utf8(bytes).ok()
    }

    fn head(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.head_root.join(path)).ok()
    }
}

/// The CI additions for one comparison.
pub(super) struct Extras {
    github: bool,
    explanations: Vec<Explanation>,
}

impl Extras {
    /// Explains the regressions of `cmp`. Without a repository or the base commit (a shallow
    /// clone) there is no explanation, and a warning says why.
    pub fn build(
        ctx: &Context,
        prepared: &Prepared,
        cmp: &Comparison,
        github: bool,
        shell: &Shell,
    ) -> Extras {
        let regressions = distinct_regressions(cmp);
        let mut explanations = Vec::new();
        if let Some(repo) = &ctx.repo
            && !regressions.is_empty()
        {
            if repo.resolve(&cmp.base.commit).is_ok() {
                let sources =
                    GitSources { repo, base: cmp.base.commit.clone(), head_root: repo.dir().to_owned() };
                let profiles = |group: &str| prepared.profiles_of(&ctx.store, group);
                explanations = why::explain(&regressions, &profiles, repo.dir(), &sources);
            } else {
                shell.warn(format_args!(
                    "the base commit {} is not in this clone, so the report cannot say whether the regressed \
                     functions' source changed; fetch the history (actions/checkout with `fetch-depth: 0`)",
                    cmp.base.commit
                ));
            }
        }
        Extras { github, explanations }
    }

    /// `report.md`: the comment marker first under GitHub, the explanations after the report.
    pub fn markdown(&self, report: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(report.len() + 256);
        if self.github {
            out.extend_from_slice(github::COMMENT_MARKER.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(&report);
        let mut why_md = String::new();
        why::write_markdown(&self.explanations, &mut why_md);
        out.extend_from_slice(why_md.as_bytes());
        out
    }

    /// Under GitHub: prints an annotation per regression and appends `markdown` to the job summary.
    pub fn publish(&self, cmp: &Comparison, markdown: &[u8]) -> Result<()> {
        if !self.github {
            return Ok(());
        }
        let annotations: Vec<Annotation> = distinct_regressions(cmp)
            .into_iter()
            .map(|f| {
                let location = self
                    .explanations
                    .iter()
                    .find(|e| e.function == f.function && e.group == f.group)
                    .and_then(|e| e.location.as_ref());
                let change = match (f.change, f.ci_low, f.ci_high) {
                    (Some(c), Some(lo), Some(hi)) => {
                        format!("{:+.1}% [{:+.1}%, {:+.1}%]", c * 100.0, lo * 100.0, hi * 100.0)
                    }
                    (Some(c), _, _) => format!("{:+.1}%", c * 100.0),
                    _ => "new".to_owned(),
                };
                Annotation {
                    file: location.map(|l| l.file.clone()),
                    line: location.map(|l| l.first),
                    title: format!("cargo contprof: {} regressed", f.function),
                    message: format!(
                        "{} ({}) {change} in {}{}",
                        f.metric,
                        f.kind,
                        f.group,
                        more_groups(cmp, f)
                    ),
                }
            })
            .collect();
        let mut out = std::io::stdout().lock();
        let _ = github::write_annotations(&annotations, &mut out);
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
            github::append_step_summary(Path::new(&path), markdown)?;
        }
        Ok(())
    }
}

/// Regressions, one per cause (`compare::causes`): its representative finding, the own change
/// with the largest change; the other findings are its evidence.
fn distinct_regressions(cmp: &Comparison) -> Vec<&Finding> {
    cmp.causes_of(Verdict::Regression)
        .into_iter()
        .filter_map(|c| cmp.members(c).into_iter().find(|f| f.verdict == Verdict::Regression))
        .collect()
}

/// How many more groups than `f`'s own the cause of `f` was found in, as ` (+N more)`.
fn more_groups(cmp: &Comparison, f: &Finding) -> String {
    let groups = cmp.causes.iter().find(|c| Some(&c.id) == f.cause.as_ref()).map_or(1, |c| c.groups.len());
    if groups > 1 { format!(" (+{} more)", groups - 1) } else { String::new() }
}

/// When no baseline was found in a shallow clone, says how to get the history.
pub(super) fn shallow_hint(ctx: &Context, shell: &Shell) {
    if ctx.repo.as_ref().is_some_and(|r| r.is_shallow().unwrap_or(false)) {
        shell.warn(
            "this is a shallow clone: the merge-base with the default branch and its ancestors may be \
             missing; fetch the history (actions/checkout with `fetch-depth: 0`, or `git fetch --unshallow`)",
        );
    }
}
