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

/// Lists the benchmarks of a criterion binary (`--bench --list`); `None` when the binary does not
/// answer like criterion (a custom `main`), which is then profiled as one process.
pub fn criterion_cases(exe: &Path, cwd: &Path) -> Result<Option<Vec<Case>>> {
    let (ok, out, _) = list_output(exe, cwd, &["--bench", "--list"])?;
    let cases: Vec<Case> = parse_listing(&out)
        .into_iter()
        .filter(|(_, bench)| *bench)
        .map(|(name, _)| Case { name, ignored: false, bench: true })
        .collect();
    Ok(if ok && !cases.is_empty() { Some(cases) } else { None })
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
    fn filters_like_libtest() {
        assert!(matches("tests::parse_big", &[], false));
        assert!(matches("tests::parse_big", &["parse".into()], false));
        assert!(!matches("tests::parse_big", &["parse".into()], true));
        assert!(matches("tests::parse_big", &["tests::parse_big".into()], true));
    }
}
