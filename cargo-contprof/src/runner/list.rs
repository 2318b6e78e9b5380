//! Listing what a test or benchmark binary contains, without the agent: libtest's
//! `--list --format terse` and criterion's `--bench --list`, so that each test or benchmark can
//! run in its own process (as cargo-nextest does).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::errors::{Error, Result};

/// One test or benchmark inside a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Full path inside the binary (`tests::parses_numbers`, `parse/large`).
    pub name: String,
    /// libtest `#[ignore]`.
    pub ignored: bool,
    /// A benchmark (criterion or libtest `#[bench]`) rather than a test.
    pub bench: bool,
}

fn list_output(exe: &Path, cwd: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn { program: exe.to_owned(), source })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Parses `name: test` / `name: bench` lines (libtest terse format, criterion's `--list`).
pub fn parse_listing(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_end();
            if let Some(name) = l.strip_suffix(": test") {
                Some((name.to_owned(), false))
            } else {
                l.strip_suffix(": benchmark")
                    .or_else(|| l.strip_suffix(": bench"))
                    .map(|n| (n.to_owned(), true))
            }
        })
        .collect()
}

/// Lists the tests of a libtest binary, with their `#[ignore]` state.
pub fn libtest_cases(exe: &Path, cwd: &Path) -> Result<Vec<Case>> {
    let (ok, all, err) = list_output(exe, cwd, &["--list", "--format", "terse"])?;
    if !ok {
        return Err(Error::msg(format!("`{} --list` failed: {}", exe.display(), err.trim())));
    }
    let (_, ignored, _) = list_output(exe, cwd, &["--list", "--format", "terse", "--ignored"])?;
    let ignored: Vec<String> = parse_listing(&ignored).into_iter().map(|(n, _)| n).collect();
    Ok(parse_listing(&all)
        .into_iter()
        .map(|(name, bench)| Case { ignored: ignored.contains(&name), name, bench })
        .collect())
}

/// How a criterion binary is told to run one benchmark and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriterionSelect {
    /// Criterion 0.5 and later: `--exact ID`.
    Exact,
    /// Criterion 0.3 and 0.4, which have no `--exact`: the filter is a regular expression, so
    /// the id goes anchored and escaped (`^parse/large$`).
    AnchoredRegex,
}

impl CriterionSelect {
    /// The arguments that select the benchmark `id`.
    pub fn args(self, id: &str) -> Vec<std::ffi::OsString> {
        match self {
            CriterionSelect::Exact => vec!["--exact".into(), id.into()],
            CriterionSelect::AnchoredRegex => vec![format!("^{}$", regex::escape(id)).into()],
        }
    }
}

/// The benchmarks of a criterion binary and how to select one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriterionCases {
    /// The benchmark ids, as `--list` gives them.
    pub cases: Vec<Case>,
    /// How to run one of them alone (from the binary's own `--help`: whether it knows `--exact`).
    pub select: CriterionSelect,
}

/// Lists the benchmarks of a criterion binary (`--bench --list`); `None` when the binary does not
/// answer like criterion (a custom `main`), which is then profiled as one process.
pub fn criterion_cases(exe: &Path, cwd: &Path) -> Result<Option<CriterionCases>> {
    let (ok, out, _) = list_output(exe, cwd, &["--bench", "--list"])?;
    let cases: Vec<Case> = parse_listing(&out)
        .into_iter()
        .filter(|(_, bench)| *bench)
        .map(|(name, _)| Case { name, ignored: false, bench: true })
        .collect();
    if !ok || cases.is_empty() {
        return Ok(None);
    }
    // The binary says what it understands: criterion's clap help lists `--exact` from 0.5 on.
    let (_, help, help_err) = list_output(exe, cwd, &["--bench", "--help"])?;
    let knows_exact = help.contains("--exact") || help_err.contains("--exact");
    let select = if knows_exact { CriterionSelect::Exact } else { CriterionSelect::AnchoredRegex };
    Ok(Some(CriterionCases { cases, select }))
}

/// The libtest filter semantics: substring match, or exact with `--exact`.
pub fn matches(name: &str, filters: &[String], exact: bool) -> bool {
    filters.is_empty() || filters.iter().any(|f| if exact { name == f } else { name.contains(f.as_str()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_and_criterion_listings() {
        let text = "tests::a: test\ntests::b: bench\nparse/large: benchmark\n\n3 tests, 0 benchmarks\n";
        assert_eq!(
            parse_listing(text),
            vec![("tests::a".into(), false), ("tests::b".into(), true), ("parse/large".into(), true)]
        );
    }

    #[test]
    fn criterion_before_0_5_gets_an_anchored_escaped_regex() {
        let args = |s: CriterionSelect| -> Vec<String> {
            s.args("parse/large (x2)").into_iter().map(|a| a.into_string().unwrap()).collect()
        };
        assert_eq!(args(CriterionSelect::Exact), ["--exact", "parse/large (x2)"]);
        assert_eq!(args(CriterionSelect::AnchoredRegex), [r"^parse/large \(x2\)$"]);
        let re = regex::Regex::new(&args(CriterionSelect::AnchoredRegex)[0]).unwrap();
        assert!(re.is_match("parse/large (x2)") && !re.is_match("parse/large (x2)/more"));
    }

    #[test]
    fn filters_like_libtest() {
        assert!(matches("tests::parse_big", &[], false));
        assert!(matches("tests::parse_big", &["parse".into()], false));
        assert!(!matches("tests::parse_big", &["parse".into()], true));
        assert!(matches("tests::parse_big", &["tests::parse_big".into()], true));
    }
}
