//! Why did it regress: for each regressed function, whether its own source changed between base and
//! head, and if not, which changed callees carry the increase.
//!
//! A function's place in the source comes from the debug info in the head profiles: the file of its
//! pprof `Function` and the lines its samples hit. The range is widened to the whole function by
//! walking back to its `fn` line and matching braces, then held against a line diff (`similar`) of
//! the file at the base and head revisions. Callees are the functions below it on the sampled
//! stacks; their share of the increase is the change of the cost they take under it.
//!
//! Owns source locations and the explanation, rendered as Markdown for the report. It reads files
//! only through [`Sources`] (the caller's git and work tree), and decides no verdicts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use similar::{ChangeTag, DiffTag, TextDiff};

use crate::compare::markdown::{code, html, text};
use crate::compare::render_amount as amount;
use crate::compare::{Finding, Metric};
use crate::profile::Profile;
use crate::profile::names::{is_library_frame, normalize_name};

/// Changed lines shown per function, at most.
const MAX_SHOWN_LINES: usize = 40;
/// Changed callees named per regression, at most.
const MAX_CALLEES: usize = 3;
/// How far back from its first sampled line a function's `fn` line is looked for.
const MAX_HEADER_DISTANCE: usize = 300;

/// The source of both revisions, as files relative to the repository root.
pub trait Sources {
    /// The file at the base revision; `None` when it does not exist there.
    fn base(&self, path: &str) -> Option<String>;
    /// The file at the head (what was built and profiled).
    fn head(&self, path: &str) -> Option<String>;
}

/// Where a function is defined, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `/`-separated path relative to the repository root.
    pub file: String,
    /// First line of the function (its `fn` line when found), 1-based.
    pub first: u32,
    /// Last line of the function, 1-based, inclusive.
    pub last: u32,
}

/// A function whose source changed: where, and the changed lines (`+`/`-` prefixed).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceChange {
    /// The function.
    pub function: String,
    /// Its location in the head.
    pub location: Location,
    /// Changed lines inside the function, as a diff (`-old`, `+new`).
    pub lines: Vec<String>,
    /// The increase of cost it carries under the regressed function (metric units, per run).
    pub increase: f64,
}

/// The explanation of one regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Group of the finding.
    pub group: String,
    /// The regressed function.
    pub function: String,
    /// Its metric.
    pub metric: Metric,
    /// Where it is defined, when the debug info says and the file is in the repository.
    pub location: Option<Location>,
    /// Its own source change, if any.
    pub own: Option<SourceChange>,
    /// Changed callees carrying an increase, largest first (only when its own source did not change).
    pub callees: Vec<SourceChange>,
    /// The callee carrying the largest increase when none of them changed.
    pub top_unchanged_callee: Option<(String, f64)>,
}

/// A function's location and its changed lines (empty when unchanged).
type Located = (Location, Vec<String>);

/// Explains each finding from the base and head profiles of its group (`profiles[group]`).
pub fn explain(
    findings: &[&Finding],
    profiles_of: &dyn Fn(&str) -> crate::pipeline::SideProfiles,
    repo_root: &Path,
    sources: &dyn Sources,
) -> Vec<Explanation> {
    // The profiles of the groups with a regression, read once each.
    let mut profiles: BTreeMap<String, crate::pipeline::SideProfiles> = BTreeMap::new();
    for f in findings {
        if !profiles.contains_key(&f.group) {
            profiles.insert(f.group.clone(), profiles_of(&f.group));
        }
    }
    let mut cache: HashMap<(String, String), Option<Located>> = HashMap::new();
    let mut change_of = |group: &str, function: &str, head: &[Profile]| {
        cache
            .entry((group.to_owned(), function.to_owned()))
            .or_insert_with(|| {
                let loc = locate(head, function, repo_root, sources)?;
                let lines = changed_lines(&loc, sources);
                Some((loc, lines))
            })
            .clone()
    };
    let mut out = Vec::new();
    for f in findings {
        let empty = (Vec::new(), Vec::new());
        let (base, head) = profiles.get(&f.group).unwrap_or(&empty);
        let own = change_of(&f.group, &f.function, head);
        let mut e = Explanation {
            group: f.group.clone(),
            function: f.function.clone(),
            metric: f.metric,
            location: own.as_ref().map(|(l, _)| l.clone()),
            own: None,
            callees: Vec::new(),
            top_unchanged_callee: None,
        };
        if let Some((location, lines)) = own.filter(|(_, lines)| !lines.is_empty()) {
            e.own = Some(SourceChange {
                function: f.function.clone(),
                location,
                lines,
                increase: f.head - f.base,
            });
            out.push(e);
            continue;
        }
        let sample_type = crate::profile::sample_type(f.metric);
        let mut increases: Vec<(String, f64)> = callee_costs(head, &f.function, sample_type)
            .into_iter()
            .map(|(name, h)| {
                let b = callee_costs(base, &f.function, sample_type).get(&name).copied().unwrap_or(0.0);
                (name, h - b)
            })
            .filter(|(_, d)| *d > 0.0)
            .collect();
        increases.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (name, increase) in &increases {
            if e.callees.len() == MAX_CALLEES {
                break;
            }
            if let Some((location, lines)) = change_of(&f.group, name, head).filter(|(_, l)| !l.is_empty()) {
                e.callees.push(SourceChange { function: name.clone(), location, lines, increase: *increase });
            }
        }
        if e.callees.is_empty() {
            e.top_unchanged_callee = increases.into_iter().next();
        }
        out.push(e);
    }
    out
}

/// Per callee of `function` (a function below it on a stack), the mean per profile of the cost whose
/// innermost non-library frame it is, on stacks through `function`.
fn callee_costs(profiles: &[Profile], function: &str, sample_type: &str) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for p in profiles {
        let Some(ty) = p.sample_type_index(sample_type) else { continue };
        let names: HashMap<u64, String> =
            p.function.iter().map(|f| (f.id, normalize_name(p.str(f.name)))).collect();
        // Per location, its non-library frames (innermost first), decided once per location: an
        // instructions profile has hundreds of thousands of samples over a few ten thousand
        // locations.
        let locations: HashMap<u64, Vec<&str>> = p
            .location
            .iter()
            .map(|l| {
                let frames = l
                    .line
                    .iter()
                    .filter_map(|x| names.get(&x.function_id).map(String::as_str))
                    .filter(|n| !is_library_frame(n))
                    .collect();
                (l.id, frames)
            })
            .collect();
        for s in &p.sample {
            let v = s.value.get(ty).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let mut frames = s.location_id.iter().filter_map(|id| locations.get(id)).flatten();
            // The innermost frame in user code carries the cost, when `function` is above it.
            let Some(&leaf) = frames.next() else { continue };
            if leaf != function && frames.any(|n| *n == function) {
                *sums.entry(leaf.to_owned()).or_default() += v as f64;
            }
        }
    }
    let n = profiles.len().max(1) as f64;
    sums.values_mut().for_each(|v| *v /= n);
    sums
}

/// Where `function` is defined in the head: the file its samples most often name, if inside the
/// repository, and its whole body there.
pub fn locate(head: &[Profile], function: &str, repo_root: &Path, sources: &dyn Sources) -> Option<Location> {
    let mut lines_by_file: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for p in head {
        let ids: HashMap<u64, &str> = p
            .function
            .iter()
            .filter(|f| normalize_name(p.str(f.name)) == function)
            .map(|f| (f.id, p.str(f.filename)))
            .collect();
        if ids.is_empty() {
            continue;
        }
        for l in p.location.iter().flat_map(|l| &l.line) {
            if let Some(file) = ids.get(&l.function_id)
                && !file.is_empty()
                && let Ok(line) = u32::try_from(l.line)
                && line > 0
            {
                lines_by_file.entry((*file).to_owned()).or_default().push(line);
            }
        }
    }
    let (file, lines) = lines_by_file.into_iter().max_by_key(|(_, lines)| lines.len())?;
    let rel = relative(Path::new(&file), repo_root)?;
    let (min, max) = (*lines.iter().min()?, *lines.iter().max()?);
    let text = sources.head(&rel);
    let (first, last) = text.as_deref().and_then(|t| body_span(t, min)).unwrap_or((min, max.max(min)));
    Some(Location { file: rel, first, last: last.max(max) })
}

/// `path` relative to `root`, `/`-separated, when it lies inside it.
fn relative(path: &Path, root: &Path) -> Option<String> {
    let rel = if path.is_absolute() {
        path.strip_prefix(root).ok()?.to_owned()
    } else if root.join(path).is_file() {
        path.to_owned()
    } else {
        return None;
    };
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Some(parts.join("/"))
}

/// The function around line `inside` (1-based): back to the nearest line declaring a `fn`, then to
/// the brace closing its body. Strings and comments are not parsed: a brace in one may end the
/// range early, which only shortens what is compared.
fn body_span(text: &str, inside: u32) -> Option<(u32, u32)> {
    let lines: Vec<&str> = text.lines().collect();
    let at = usize::try_from(inside).ok()?.checked_sub(1)?;
    if at >= lines.len() {
        return None;
    }
    let declares_fn = |l: &str| {
        let t = l.trim_start();
        !t.starts_with("//") && (t.starts_with("fn ") || t.contains(" fn ") || t.starts_with("fn<"))
    };
    let start = (at.saturating_sub(MAX_HEADER_DISTANCE)..=at).rev().find(|&i| declares_fn(lines[i]))?;
    let mut depth = 0i64;
    let mut opened = false;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let code = line.split("//").next().unwrap_or("");
        for c in code.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return Some((start as u32 + 1, i as u32 + 1));
        }
    }
    None
}

/// The lines of `loc` that differ between base and head, as diff lines; empty when unchanged. A file
/// new in head counts as changed throughout.
fn changed_lines(loc: &Location, sources: &dyn Sources) -> Vec<String> {
    let Some(head) = sources.head(&loc.file) else { return Vec::new() };
    let base = sources.base(&loc.file).unwrap_or_default();
    let diff = TextDiff::from_lines(base.as_str(), head.as_str());
    let (first, last) = (loc.first as usize - 1, loc.last as usize);
    let mut out = Vec::new();
    for op in diff.ops() {
        let new = op.new_range();
        let touches = match op.tag() {
            DiffTag::Equal => false,
            // A deletion sits between two head lines: inside when strictly within the body.
            DiffTag::Delete => new.start > first && new.start < last,
            DiffTag::Insert | DiffTag::Replace => new.start < last && new.end > first,
        };
        if !touches {
            continue;
        }
        for change in diff.iter_changes(op) {
            let sign = match change.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => ' ',
            };
            out.push(format!("{sign}{}", change.value().trim_end_matches(['\n', '\r'])));
        }
    }
    out
}

/// Writes the "Why did it regress?" section for a pull-request comment.
pub fn write_markdown(explanations: &[Explanation], out: &mut String) {
    if explanations.is_empty() {
        return;
    }
    out.push_str("\n#### Why did it regress?\n\n");
    for e in explanations {
        let at = e
            .location
            .as_ref()
            .map(|l| format!(" ({})", code(&format!("{}:{}-{}", l.file, l.first, l.last))))
            .unwrap_or_default();
        let _ = write!(out, "- {}{at} in {}, {}: ", code(&e.function), text(&e.group), e.metric);
        if let Some(own) = &e.own {
            out.push_str("**its own source changed** between base and head.\n");
            details(out, &own.location.file, &own.lines);
        } else if !e.callees.is_empty() {
            out.push_str("its own source did not change; changed callees carry the increase:\n");
            for c in &e.callees {
                let _ = writeln!(
                    out,
                    "  - {} ({}), +{} per run under it",
                    code(&c.function),
                    code(&format!("{}:{}-{}", c.location.file, c.location.first, c.location.last)),
                    amount(e.metric, c.increase)
                );
                details(out, &c.function, &c.lines);
            }
        } else {
            out.push_str("neither its own source nor its callees' changed between base and head");
            if e.location.is_none() {
                out.push_str(" (as far as the debug info places them in this repository)");
            }
            match &e.top_unchanged_callee {
                Some((name, inc)) => {
                    let _ = write!(
                        out,
                        "; the callee carrying most of the increase is {} (+{})",
                        code(name),
                        amount(e.metric, *inc)
                    );
                }
                None => out.push_str("; the increase is in its own code"),
            }
            out.push_str(": look at its inputs, dependencies, build settings or inlining.\n");
        }
    }
}

/// A collapsed diff of the changed lines in `name` (a file or a function), named in HTML.
fn details(out: &mut String, name: &str, lines: &[String]) {
    let _ = writeln!(
        out,
        "\n  <details><summary>changed lines in <code>{}</code></summary>\n\n  ```diff",
        html(name)
    );
    for l in lines.iter().take(MAX_SHOWN_LINES) {
        let _ = writeln!(out, "  {}", l.replace("```", "`\u{200b}``"));
    }
    if lines.len() > MAX_SHOWN_LINES {
        let _ = writeln!(out, "  … {} more lines", lines.len() - MAX_SHOWN_LINES);
    }
    out.push_str("  ```\n\n  </details>\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        base: BTreeMap<&'static str, &'static str>,
        head: BTreeMap<&'static str, &'static str>,
    }

    impl Sources for Files {
        fn base(&self, path: &str) -> Option<String> {
            self.base.get(path).map(|s| (*s).to_owned())
        }
        fn head(&self, path: &str) -> Option<String> {
            self.head.get(path).map(|s| (*s).to_owned())
        }
    }

    const BASE: &str =
        "fn a() {\n    x();\n}\n\nfn b(n: u64) {\n    for i in 0..n {\n        y(i);\n    }\n}\n";
    const HEAD: &str =
        "fn a() {\n    x();\n}\n\nfn b(n: u64) {\n    for i in 0..n * 2 {\n        y(i);\n    }\n}\n";

    #[test]
    fn body_span_walks_back_to_fn_and_matches_braces() {
        assert_eq!(body_span(HEAD, 7), Some((5, 9)));
        assert_eq!(body_span(HEAD, 2), Some((1, 3)));
        assert_eq!(body_span("no function here\n", 1), None);
    }

    #[test]
    fn changed_lines_inside_the_function_only() {
        let files = Files { base: [("src/lib.rs", BASE)].into(), head: [("src/lib.rs", HEAD)].into() };
        let b = Location { file: "src/lib.rs".into(), first: 5, last: 9 };
        assert_eq!(changed_lines(&b, &files), ["-    for i in 0..n {", "+    for i in 0..n * 2 {"]);
        let a = Location { file: "src/lib.rs".into(), first: 1, last: 3 };
        assert!(changed_lines(&a, &files).is_empty());
    }

    #[test]
    fn paths_outside_the_repository_have_no_location() {
        assert_eq!(relative(Path::new("/repo/src/a.rs"), Path::new("/repo")).as_deref(), Some("src/a.rs"));
        assert_eq!(relative(Path::new("/rustc/abc/library/core/src/a.rs"), Path::new("/repo")), None);
    }
}
