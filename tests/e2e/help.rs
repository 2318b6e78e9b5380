//! `--help` of every command, snapshotted, and the book's CLI reference generated from the same
//! text. The commands are found by walking clap's command tree, so a new command or subcommand is
//! covered (and must be blessed) without touching this file.
//!
//! The help is rendered in-process at a fixed width: what a terminal of 100 columns or more shows
//! (clap wraps at 100 at most), whatever the width of the terminal the tests run in.

use std::path::PathBuf;

use cargo_contprof::args::CargoCli;
use clap::CommandFactory;

/// Columns the help is wrapped at.
const WIDTH: usize = 100;

/// The book's page that lists every command's help.
const REFERENCE: &str = "docs/src/reference/cli.md";

/// One command's help.
struct Page {
    /// `["contprof", "prod", "list"]`.
    path: Vec<String>,
    /// Hidden from its parent's `--help` (internal commands).
    hidden: bool,
    /// `--help` as printed.
    text: String,
}

impl Page {
    /// `cargo contprof prod list`.
    fn command(&self) -> String {
        format!("cargo {}", self.path.join(" "))
    }

    /// The snapshot's name: `help-contprof-prod-list`.
    fn snapshot(&self) -> String {
        format!("help-{}", self.path.join("-"))
    }

    /// What the snapshot's header says it is.
    fn description(&self) -> String {
        let hidden = if self.hidden { " (hidden: not listed by the parent's --help)" } else { "" };
        format!("{} --help{hidden}", self.command())
    }
}

/// Every command under `cargo contprof`, parents before children, in clap's order.
fn pages() -> Vec<Page> {
    let mut root = CargoCli::command().term_width(WIDTH);
    root.build();
    let contprof = root.find_subcommand_mut("contprof").expect("a `contprof` subcommand");
    let mut pages = Vec::new();
    walk(contprof, vec!["contprof".to_owned()], false, &mut pages);
    pages
}

fn walk(cmd: &mut clap::Command, path: Vec<String>, hidden: bool, pages: &mut Vec<Page>) {
    let text = cmd.render_long_help().to_string();
    pages.push(Page { path: path.clone(), hidden, text });
    for sub in cmd.get_subcommands_mut().filter(|s| s.get_name() != "help") {
        let mut sub_path = path.clone();
        sub_path.push(sub.get_name().to_owned());
        let sub_hidden = hidden || sub.is_hide_set();
        walk(sub, sub_path, sub_hidden, pages);
    }
}

#[test]
fn help_of_every_command() {
    let pages = pages();
    assert!(pages.len() > 20, "the walk found {} commands", pages.len());
    for page in &pages {
        assert!(page.text.contains(&format!("Usage: {}", page.command())), "{}", page.text);
        insta::assert_snapshot!(page.snapshot(), page.text, &page.description());
    }
    // A removed command's snapshot goes with it.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/snapshots");
    let known: Vec<String> = pages.iter().map(|p| format!("e2e__help__{}.snap", p.snapshot())).collect();
    for entry in std::fs::read_dir(&dir).expect("tests/e2e/snapshots") {
        let name = entry.expect("a directory entry").file_name().to_string_lossy().into_owned();
        if name.starts_with("e2e__help__") && name.ends_with(".snap") {
            assert!(known.contains(&name), "{name} is the help of no command: delete it");
        }
    }
}

/// What the binary prints is what the snapshots hold (the in-process rendering is not a copy).
#[test]
fn the_binary_prints_the_same_help() {
    let page = pages().into_iter().find(|p| p.path == ["contprof", "compare"]).expect("compare");
    let f = crate::util::finish(crate::util::contprof().args(["compare", "--help"]).env("COLUMNS", "100"));
    assert_eq!(f.code, 0, "{f:?}");
    assert_eq!(f.stdout, page.text);
}

/// The book's reference page: every visible command's `--help`.
fn reference() -> String {
    let mut out = String::from(
        "# Command-line reference\n\n\
         <!-- Generated from the command-line parser by `tests/e2e/help.rs`, which fails when this \
         page is stale; regenerate it with\n     \
         INSTA_UPDATE=always cargo test -p cargo-contprof --test e2e help::\n-->\n\n\
         Every command's `--help`, as `cargo contprof <command> --help` prints it.\n",
    );
    for page in pages().iter().filter(|p| !p.hidden) {
        out.push_str(&format!("\n## `{}`\n\n```text\n{}```\n", page.command(), page.text));
    }
    out
}

#[test]
fn the_books_cli_reference_is_current() {
    let path = crate::util::repo_root().join(REFERENCE);
    let expected = reference();
    if std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always") {
        std::fs::write(&path, &expected).expect("write the reference");
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == expected,
        "{REFERENCE} is not the help of the commands as built; regenerate it with \
         `INSTA_UPDATE=always cargo test -p cargo-contprof --test e2e help::`"
    );
}
