//! Listing what a test or benchmark binary contains, without the agent: libtest's
//! `--list --format terse`, criterion's `--bench --list` and divan's `--list --format terse`
//! (which divan answers under cargo-nextest's `NEXTEST=1`), so that each test or benchmark can
//! run in its own process (as cargo-nextest does).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::errors::{Error, Result};

/// Longest a binary may take to list its tests or benchmarks: listing runs no test, so a binary
/// still busy after this is running something else (a custom `main` that ignores `--list`).
pub const LIST_DEADLINE: Duration = Duration::from_secs(60);

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

/// Runs `exe args` to list what it holds, in a process group of its own, killed (with whatever it
/// started) past `deadline`.
fn list_output_within(
    exe: &Path,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> Result<(bool, String, String)> {
    let mut child = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn { program: exe.to_owned(), source })?;
    // The pipes are drained on threads, so that a full pipe never stalls the child.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|source| Error::Spawn { program: exe.to_owned(), source })? {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                // SAFETY: plain syscall on the group our unreaped child leads.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return Err(Error::msg(format!(
                    "`{} {}` did not finish listing within {} s; a binary whose `main` ignores the \
                     listing flags runs as one process (`harness = false` without criterion)",
                    exe.display(),
                    args.join(" "),
                    deadline.as_secs()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Ok((status.success(), out.join().unwrap_or_default(), err.join().unwrap_or_default()))
}

fn list_output(exe: &Path, cwd: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    list_output_within(exe, cwd, args, &[], LIST_DEADLINE)
}

/// Whether the binary links criterion (a function of the `criterion` crate): only then is a
/// `harness = false` bench asked to list its benchmarks; anything else would run in full.
pub fn links_criterion(exe: &Path) -> bool {
    links(exe, b"9criterion")
}

/// Whether the binary links divan (a function of the `divan` crate), as [`links_criterion`].
pub fn links_divan(exe: &Path) -> bool {
    links(exe, b"5divan")
}

/// Whether a symbol of `exe` belongs to the crate whose mangled name is `krate` (`<length><name>`).
fn links(exe: &Path, krate: &[u8]) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(file) = std::fs::File::open(exe) else { return false };
    let cache = object::ReadCache::new(file);
    let Ok(obj) = object::File::parse(&cache) else { return false };
    obj.symbols().chain(obj.dynamic_symbols()).any(|s| s.name_bytes().is_ok_and(|n| in_crate(n, krate)))
}

/// Whether the mangled `symbol` names a path that starts at the crate `krate`: the crate is the
/// first component (legacy `_ZN9criterion...`) or a crate root (v0: `C`, an optional
/// disambiguator `s<base62>_`, then the name). A module of another crate with the same name
/// (`contprof_engine::criterion`) does not count.
fn in_crate(symbol: &[u8], krate: &[u8]) -> bool {
    if let Some(path) = symbol.strip_prefix(b"_ZN") {
        return path.starts_with(krate);
    }
    if !symbol.starts_with(b"_R") {
        return false;
    }
    (1..symbol.len().saturating_sub(krate.len())).any(|i| {
        symbol[i..].starts_with(krate)
            && match symbol[i - 1] {
                b'C' => true,
                b'_' => {
                    let before = &symbol[..i - 1];
                    let run = before.iter().rev().take_while(|c| c.is_ascii_alphanumeric()).count();
                    memfind(&before[before.len() - run..], b"Cs")
                }
                _ => false,
            }
    })
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
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
    if !links_criterion(exe) {
        return Ok(None);
    }
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

/// Lists the benchmarks of a divan binary; `None` when it does not link divan or lists nothing.
/// Divan answers `--list --format terse` (`name: benchmark`, with each argument of a benchmark
/// as its own `name::arg`) only under cargo-nextest, which it recognizes by `NEXTEST=1`.
pub fn divan_cases(exe: &Path, cwd: &Path) -> Result<Option<Vec<Case>>> {
    if !links_divan(exe) {
        return Ok(None);
    }
    let (ok, out, _) =
        list_output_within(exe, cwd, &["--list", "--format", "terse"], &[("NEXTEST", "1")], LIST_DEADLINE)?;
    let cases: Vec<Case> = parse_listing(&out)
        .into_iter()
        .filter(|(_, bench)| *bench)
        .map(|(name, _)| Case { name, ignored: false, bench: true })
        .collect();
    Ok((ok && !cases.is_empty()).then_some(cases))
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
    fn a_binary_that_never_finishes_listing_is_stopped_at_the_deadline() {
        let started = Instant::now();
        let e = list_output_within(
            Path::new("/bin/sh"),
            Path::new("/"),
            &["-c", "sleep 30 & sleep 30"],
            &[],
            Duration::from_millis(300),
        );
        assert!(e.is_err_and(|e| e.to_string().contains("did not finish listing")));
        assert!(started.elapsed() < Duration::from_secs(5), "the group was killed, the pipes closed");
    }

    #[test]
    fn only_binaries_linking_criterion_are_asked_to_list_benchmarks() {
        assert!(!links_criterion(Path::new("/bin/sh")));
        assert!(
            !links_criterion(&std::env::current_exe().unwrap()),
            "this test binary does not link criterion"
        );
        assert!(!links_divan(&std::env::current_exe().unwrap()), "nor divan");
    }

    #[test]
    fn a_crate_is_told_from_a_module_of_the_same_name() {
        assert!(in_crate(b"_ZN9criterion7bencher7Bencher4iter17h0123456789abcdefE", b"9criterion"));
        assert!(!in_crate(
            b"_ZN14cargo_contprof9criterion16divan_iterations17h0123456789abcdefE",
            b"9criterion"
        ));
        assert!(in_crate(b"_RNvNtCs4fqI2P2rA04_5divan9benchmark5bench", b"5divan"));
        assert!(in_crate(b"_RNvC5divan4main", b"5divan"));
        assert!(!in_crate(b"_RNvNtCs4fqI2P2rA04_14cargo_contprof5divan4mean", b"5divan"));
    }

    #[test]
    fn filters_like_libtest() {
        assert!(matches("tests::parse_big", &[], false));
        assert!(matches("tests::parse_big", &["parse".into()], false));
        assert!(!matches("tests::parse_big", &["parse".into()], true));
        assert!(matches("tests::parse_big", &["tests::parse_big".into()], true));
    }
}
