//! The documentation's own checks: every relative link of the README, `ARCHITECTURE.md` and the
//! book (`docs/`) leads to a file that exists and, with a `#fragment`, to a heading of it (as
//! mdBook makes heading ids, includes expanded); every page of the book is in its `SUMMARY.md`;
//! the README stays short. (`mdbook build docs` in `.ci/run` builds the book itself.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::util::repo_root;

/// The README is the front door: what it is, the two commands, the tour; the rest is in the book.
const README_MAX_BYTES: usize = 11 * 1024;

/// Markdown files under `dir`, recursively (not in the built book, `docs/book`).
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir()
            && path.file_name().is_some_and(|n| n == "book")
            && path.parent() == Some(&repo_root().join("docs"))
        {
            continue;
        }
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The files checked: the book's pages (and the files they include), the README and the
/// architecture map.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    markdown_files(&root.join("docs"), &mut files);
    files
}

/// The text of the page at `path` as mdBook renders it: `{{#include FILE}}` lines replaced by the
/// file they name (relative to the page).
fn rendered(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let include = Regex::new(r"(?m)^\{\{#include ([^}\s]+)\}\}\s*$").expect("a valid pattern");
    let mut out = text.clone();
    for c in include.captures_iter(&text) {
        let included = std::fs::read_to_string(path.parent()?.join(&c[1])).ok()?;
        out = out.replace(&c[0], &included);
    }
    Some(out)
}

/// `text` without fenced code blocks and inline code spans (links there are examples).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    let code = Regex::new(r"`[^`\n]*`").expect("a valid pattern");
    code.replace_all(&out, "").into_owned()
}

/// The heading ids of a Markdown page, as mdBook makes them: the heading's text, lowercased,
/// letters, digits, `-` and `_` kept, whitespace turned into `-`, the rest dropped; a repeated
/// id gets `-1`, `-2`... Explicit `id="..."` attributes count too.
fn anchors(text: &str) -> BTreeSet<String> {
    let link = Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("a valid pattern");
    let mut ids = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim();
        let heading = link.replace_all(heading, "$1");
        let id: String = heading
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 0;
        while ids.contains(&unique) {
            n += 1;
            unique = format!("{id}-{n}");
        }
        ids.insert(unique);
    }
    let explicit = Regex::new(r#"\bid="([^"]+)""#).expect("a valid pattern");
    ids.extend(explicit.captures_iter(text).map(|c| c[1].to_owned()));
    ids
}

/// The link targets of a page: inline links and reference definitions.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let inline = Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("a valid pattern");
    let reference = Regex::new(r"(?m)^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$").expect("a valid pattern");
    inline.captures_iter(&prose).chain(reference.captures_iter(&prose)).map(|c| c[1].to_owned()).collect()
}

/// What is wrong with the link `target` of the page `from`, if anything.
fn broken(from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, fragment) = target.split_once('#').map_or((target, None), |(f, a)| (f, Some(a)));
    let path = if file.is_empty() { from.to_owned() } else { from.parent()?.join(file) };
    if !path.exists() {
        return Some(format!("no file {}", path.display()));
    }
    let fragment = fragment.filter(|f| !f.is_empty())?;
    if path.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let Some(text) = rendered(&path) else { return Some(format!("cannot read {}", path.display())) };
    if anchors(&text).contains(fragment) {
        None
    } else {
        Some(format!("no heading `#{fragment}` in {}", path.display()))
    }
}

#[test]
fn every_relative_link_and_anchor_exists() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("a readable page");
        for target in links(&text) {
            checked += 1;
            if let Some(why) = broken(&doc, &target) {
                problems.push(format!("{}: ({target}): {why}", doc.display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} links found: is the parser right?");
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_summary() {
    let src = repo_root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).expect("docs/src/SUMMARY.md");
    let listed: BTreeSet<PathBuf> = links(&summary).iter().map(|l| src.join(l)).collect();
    let mut pages = Vec::new();
    markdown_files(&src, &mut pages);
    for page in pages.iter().filter(|p| !p.ends_with("SUMMARY.md")) {
        assert!(listed.contains(page), "{} is not in SUMMARY.md", page.display());
    }
    for page in &listed {
        assert!(page.is_file(), "SUMMARY.md lists {}, which does not exist", page.display());
    }
}

#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    assert!(
        readme.len() <= README_MAX_BYTES,
        "README.md is {} bytes: keep it to what it is, the two commands, the tour, CI, exit codes and \
         platforms, and move the rest into the book (docs/src)",
        readme.len()
    );
}

#[test]
fn the_link_checker_finds_broken_links() {
    let page = "# A page\n\n## Exit codes (`check`)\n\nSee [codes](#exit-codes-check), [gone](#nowhere), \
                [file](missing.md) and `[code](not-a-link.md)`.\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.md");
    std::fs::write(&path, page).unwrap();
    let found: Vec<Option<String>> = links(page).iter().map(|l| broken(&path, l)).collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].is_none(), "{found:?}");
    assert!(found[1].as_deref().is_some_and(|w| w.contains("#nowhere")), "{found:?}");
    assert!(found[2].as_deref().is_some_and(|w| w.contains("missing.md")), "{found:?}");
}
