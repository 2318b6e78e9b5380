//! The files of each crate of the tool (the engine, the viewer, the command line) read each other
//! in one direction only: no file reads another that reads it back, through any chain
//! (ARCHITECTURE.md's map depends on it). Between crates Cargo holds the direction: the engine
//! cannot name the viewer or the command line, which depend on it. A file reads another when its
//! code names a path into it (`crate::a::b`, `super::b`, or a child module by its name); a
//! module's `pub use` re-exports, comments and its unit tests do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The workspace's crates whose files are checked, as their directories beside the engine's.
const CRATES: [&str; 3] = ["engine", "viewer", "cargo-contprof"];

/// Module path (`check::side`, `crate` for lib.rs) -> its source, without comments and tests, of
/// the crate in the workspace directory `krate`.
fn sources(krate: &str) -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let mut out = BTreeMap::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("the crate's sources can be listed") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).expect("under src").with_extension("");
            let rel = rel.to_string_lossy().replace('/', "::");
            let module = rel.strip_suffix("::mod").unwrap_or(&rel).to_owned();
            let stem = module.rsplit("::").next().unwrap_or_default();
            // Test modules and test helpers read what they test.
            if stem == "tests" || stem.ends_with("_tests") || stem == "test_support" || module == "main" {
                continue;
            }
            let module = if module == "lib" { "crate".to_owned() } else { module };
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            out.insert(module, code_of(&text));
        }
    }
    out
}

/// The code of a file: comments, `pub use` re-exports and a trailing `#[cfg(test)] mod tests`
/// left out.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut code = String::new();
    let mut in_reexport = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub use ") || trimmed.starts_with("pub(crate) use ") {
            in_reexport = !trimmed.contains(';');
            continue;
        }
        if in_reexport {
            in_reexport = !trimmed.contains(';');
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The paths a piece of code names after `prefix` (`crate::`, `super::`, a child's `name::`):
/// each as its segments, a `{a, b::c}` group giving one path per item.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        // A whole word: `xcrate::` or `a::super::` are not this prefix.
        if code[..start].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &code[at..];
        let mut segments: Vec<String> = Vec::new();
        let mut i = 0;
        loop {
            let word: String = rest[i..].chars().take_while(|&c| is_ident(c)).collect();
            if word.is_empty() {
                break;
            }
            i += word.len();
            segments.push(word);
            if rest[i..].starts_with("::") {
                i += 2;
            } else {
                break;
            }
        }
        if rest[i..].starts_with('{') {
            let end = rest[i..].find('}').map_or(rest.len(), |e| i + e);
            for item in rest[i + 1..end].split(',') {
                let item: Vec<String> =
                    item.trim().split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                out.push(segments.iter().cloned().chain(item).collect());
            }
        } else {
            out.push(segments);
        }
    }
    out
}

/// Who reads whom, between the files of the crate in directory `krate`.
fn reads(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources(krate);
    let modules: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    let resolve = |full: Vec<String>| -> Option<String> {
        (1..=full.len()).rev().map(|k| full[..k].join("::")).find(|m| modules.contains(m.as_str()))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &sources {
        let parent: Vec<String> = match module.as_str() {
            "crate" => Vec::new(),
            m => m.split("::").map(str::to_owned).collect::<Vec<_>>()[..m.split("::").count() - 1].to_vec(),
        };
        let own: Vec<String> = match module.as_str() {
            "crate" => Vec::new(),
            m => m.split("::").map(str::to_owned).collect(),
        };
        let mut named = Vec::new();
        for p in paths_after(code, "crate::") {
            named.push(p);
        }
        for p in paths_after(code, "super::") {
            // `super::super::x`
            let mut base = parent.clone();
            let mut p = p.as_slice();
            while p.first().is_some_and(|s| s == "super") {
                base.pop();
                p = &p[1..];
            }
            named.push(base.into_iter().chain(p.iter().cloned()).collect());
        }
        // Children named directly (`side::record_side`, `use side::X`).
        let prefix = if own.is_empty() { String::new() } else { format!("{module}::") };
        for child in
            modules.iter().filter_map(|m| m.strip_prefix(prefix.as_str())).filter(|c| !c.contains("::"))
        {
            if child.is_empty() || *module == "crate" && child == "crate" {
                continue;
            }
            for p in paths_after(code, &format!("{child}::")) {
                named.push(own.iter().cloned().chain(std::iter::once(child.to_owned())).chain(p).collect());
            }
        }
        for full in named {
            if let Some(target) = resolve(full)
                && target != *module
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// The circles of `edges`: its strongly connected components of more than one module (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_file_reads_a_file_that_reads_it_back() {
    // The reading is real: in the engine the pipeline reads the comparison, and in the command
    // line `check` reads the side it records.
    assert!(reads("engine")["pipeline"].contains("compare"));
    assert!(reads("cargo-contprof")["check"].contains("check::side"));
    for krate in CRATES {
        let found = circles(&reads(krate));
        assert!(found.is_empty(), "{krate}: files that read each other (through a chain): {found:#?}");
    }
}

#[test]
fn no_top_level_module_reads_one_that_reads_it_back() {
    for krate in CRATES {
        let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in reads(krate) {
            let head = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
            for t in to {
                if head(&from) != head(&t) && from != "crate" {
                    top.entry(head(&from)).or_default().insert(head(&t));
                }
            }
        }
        let found = circles(&top);
        assert!(found.is_empty(), "{krate}: modules that read each other (through a chain): {found:#?}");
    }
}

#[test]
fn a_circle_is_found() {
    let edges: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .fold(BTreeMap::new(), |mut m, (f, t)| {
            m.entry(f.to_owned()).or_insert_with(BTreeSet::new).insert(t.to_owned());
            m
        });
    assert_eq!(circles(&edges), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
    let paths = paths_after("use crate::cli::{run, settings::x};\nlet y = super::super::z::f();", "crate::");
    assert_eq!(paths, vec![vec!["cli", "run"], vec!["cli", "settings", "x"]]);
}
