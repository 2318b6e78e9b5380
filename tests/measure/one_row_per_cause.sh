#!/usr/bin/env bash
# Issue 27, items 2 and 3: how many rows a real regression takes in `check`'s report, and whether
# an A/A under the instructions engine is exact. Deterministic (the instructions engine), so it
# can run on a loaded machine; every number it prints is a count.
#
# Workloads (neither is in tests/measure's other harnesses):
#   words   a small binary of ours (rayon 1 workers building word tables in a std HashMap, over a
#           generated text): branch `slower` gives the tokenizer +25% work (every 4th word counted
#           twice, made by changing a constant in the tokenizer).
#   semver  semver 1.0.23 as published, its test suite: branch `extra-pass` makes
#           `numeric_identifier` walk its input once more; branch `comment` changes a comment only
#           (identical machine code: an A/A), for `check --tests` and for `check --benches` when
#           the crate has benchmarks that build on this toolchain.
# For each tool in TOOLS (`name=path` pairs; default: before=$WORK/bin/before, a build of main
# before this branch, and after=this worktree's release build) it runs `cargo contprof check
# --engine instructions --baseline interleaved` on each branch against `main` and prints, per
# scenario, the report's rows (one per finding before; one per cause after), the regression rows,
# the findings behind them, the shifted/new/vanished findings, and whether the named function is
# among the regressions. Reports are kept under $WORK/reports/<tool>/<scenario>/.
#
#   tests/measure/one_row_per_cause.sh
#   TOOLS="after=target/release/cargo-contprof" SCENARIOS="semver_aa" tests/measure/one_row_per_cause.sh
#
#   crate_aa  any published crate's suite, AA_CRATE=name@version (default indexmap@2.6.0, whose
#           tests hash with std's random keys and draw quickcheck's random cases): a comment-only
#           commit, `check --tests`.
# Environment: WORK (default /work/measure/verdict-rows), TOOLS, SCENARIOS (default "words_reg
# semver_reg semver_aa semver_aa_bench"), AA_CRATE. Needs git, cargo, python3, valgrind and
# crates.io.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REAL_CRATE=${REAL_CRATE:-/work/shared/tools/real-crate}
WORK=${WORK:-/work/measure/verdict-rows}
TOOLS=${TOOLS:-"before=$WORK/bin/before after=$ROOT/target/release/cargo-contprof"}
SCENARIOS=${SCENARIOS:-"words_reg semver_reg semver_aa semver_aa_bench"}
AA_CRATE=${AA_CRATE:-indexmap@2.6.0}
mkdir -p "$WORK"
export CARGO_TERM_COLOR=never

git_commit() { git -c user.email=dev@localhost -c user.name=dev commit -qam "$1"; }

setup_words() {
  local dir=$WORK/words
  [ -d "$dir" ] && return
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<'EOF'
[package]
name = "words"
version = "0.1.0"
edition = "2021"

[dependencies]
rayon = "1"

[workspace]
EOF
  cat >"$dir/src/main.rs" <<'EOF'
//! Word tables built by rayon workers: each worker tokenizes its chunk of a generated text and
//! counts the words in a std HashMap; the tables are merged at the end.
use rayon::prelude::*;
use std::collections::HashMap;
use std::hint::black_box;

/// Every this many words, the tokenizer counts the word once more (0: never).
const RECOUNT_EVERY: usize = 0;

/// Splits `text` into lowercase words and counts them in `table` (std's HashMap, whose probing
/// is inlined here).
fn tokenize(text: &str, table: &mut HashMap<String, usize>) {
    let words = text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty());
    for (i, raw) in words.enumerate() {
        let word = black_box(raw.to_ascii_lowercase());
        let times = if RECOUNT_EVERY > 0 && i % RECOUNT_EVERY == 0 { 2 } else { 1 };
        for _ in 0..times {
            *table.entry(word.clone()).or_insert(0) += 1;
        }
    }
}

fn count(chunk: &str) -> HashMap<String, usize> {
    let mut table = HashMap::new();
    tokenize(chunk, &mut table);
    table
}

fn text(words: usize) -> String {
    let mut s = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 3 + (x % 7) as usize;
        for j in 0..len {
            s.push((b'a' + ((x >> (j * 5)) % 26) as u8) as char);
        }
        s.push(if i % 11 == 0 { '.' } else { ' ' });
    }
    s
}

fn main() {
    let words: usize = std::env::var("WORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60_000);
    let text = text(words);
    let chunks: Vec<&str> = text.as_bytes().chunks(4096).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    let tables: Vec<HashMap<String, usize>> = chunks.par_iter().map(|c| count(c)).collect();
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in tables {
        for (w, n) in t {
            *total.entry(w).or_insert(0) += n;
        }
    }
    println!("{} distinct words", total.len());
}
EOF
  printf 'target/\n.contprof/\n' >"$dir/.gitignore"
  (cd "$dir" && cargo generate-lockfile -q && git init -q -b main && git add -A && git_commit "words")
  # +25% in the tokenizer: every 4th word counted twice (a constant changed in the tokenizer).
  (cd "$dir" && git checkout -q -b slower && sed -i 's/^const RECOUNT_EVERY: usize = 0;/const RECOUNT_EVERY: usize = 4;/' src/main.rs \
    && git_commit "tokenizer: one more pass" && git checkout -q main)
}

setup_semver() {
  local dir=$WORK/semver
  [ -d "$dir" ] && return
  "$REAL_CRATE" semver@1.0.23 "$dir" >/dev/null
  (
    cd "$dir"
    cargo generate-lockfile -q
    git add -A && git_commit "lockfile" || true
    # One more pass over the input in numeric_identifier: count its digits again.
    git checkout -q -b extra-pass
    python3 - <<'EOF'
import re
p = "src/parse.rs"
s = open(p).read()
i = s.index("fn numeric_identifier(")
body = s.index("{", i) + 1
extra = "\n    let _extra = core::hint::black_box(input.bytes().take_while(u8::is_ascii_digit).count());"
s = s[:body] + extra + s[body:]
open(p, "w").write(s)
EOF
    git_commit "numeric_identifier: one more pass over the input"
    git checkout -q main
    git checkout -q -b comment
    sed -i '1s|^|// A comment-only change: the machine code is the same.\n|' src/parse.rs
    git_commit "a comment"
    git checkout -q main
  )
}

# check SCENARIO TOOL_NAME TOOL DIR BRANCH ARGS...: runs the check, prints one JSON line of counts.
check() {
  local scenario=$1 name=$2 tool=$3 dir=$4 branch=$5
  shift 5
  local out=$WORK/reports/$name/$scenario
  rm -rf "$out" "$dir/.contprof" && mkdir -p "$out"
  (cd "$dir" && git checkout -q "$branch")
  set +e
  # shellcheck disable=SC2086 # CHECK_ARGS is a list of flags
  (cd "$dir" && "$tool" contprof check --engine instructions --baseline interleaved --base main \
    --report-dir "$out" ${CHECK_ARGS:-} "$@" >"$out/stdout.txt" 2>"$out/stderr.txt")
  local code=$?
  set -e
  (cd "$dir" && git checkout -q main)
  python3 - "$out/report.json" "$scenario" "$name" "$code" <<'EOF'
import json, sys
path, scenario, name, code = sys.argv[1:]
try:
    r = json.load(open(path))
except OSError:
    print(json.dumps({"scenario": scenario, "tool": name, "exit": int(code), "error": "no report"}))
    sys.exit()
lists = ["regressions", "improvements", "possible", "new", "vanished", "shifted"]
findings = sum(len(r.get(k, [])) for k in lists)
causes = r.get("causes")
rows = len(causes) if causes is not None else findings
reg_rows = (len([c for c in causes if c["verdict"] == "regression"]) if causes is not None
            else len(r.get("regressions", [])))
named = sorted({f["function"] for f in r.get("regressions", [])})
print(json.dumps({
    "scenario": scenario, "tool": name, "exit": int(code), "rows": rows,
    "regression_rows": reg_rows, "regression_findings": len(r.get("regressions", [])),
    "shifted": len(r.get("shifted", [])), "new": len(r.get("new", [])), "vanished": len(r.get("vanished", [])),
    "regressed_functions": named[:12],
}))
EOF
}

# setup_crate_aa SPEC: the published crate SPEC (`name@version`) in $WORK/aa-<name>, with a branch
# `comment` that adds a comment to the top of its src/lib.rs (identical machine code: an A/A).
setup_crate_aa() {
  local spec=$1 dir=$WORK/aa-${1%@*}
  [ -d "$dir" ] && return
  "$REAL_CRATE" "$spec" "$dir" >/dev/null
  (
    cd "$dir"
    cargo generate-lockfile -q
    git add -A && git_commit "lockfile" || true
    git checkout -q -b comment
    sed -i '1s|^|// A comment-only change: the machine code is the same.\n|' src/lib.rs
    git_commit "a comment"
    git checkout -q main
  )
}

# Benchmarks that build on a stable toolchain (libtest's `#[bench]` needs `#![feature(test)]`).
has_benches() {
  ls "$WORK/semver/benches/"*.rs >/dev/null 2>&1 && ! grep -q 'feature(test)' "$WORK/semver/benches/"*.rs
}

setup_words
setup_semver
[ -n "${SETUP_ONLY:-}" ] && exit 0
for pair in $TOOLS; do
  name=${pair%%=*}; tool=${pair#*=}
  for s in $SCENARIOS; do
    case $s in
      words_reg) RAYON_NUM_THREADS=2 check "$s" "$name" "$tool" "$WORK/words" slower --bin words ;;
      semver_reg) check "$s" "$name" "$tool" "$WORK/semver" extra-pass --tests ;;
      semver_aa) check "$s" "$name" "$tool" "$WORK/semver" comment --tests ;;
      crate_aa)
        setup_crate_aa "$AA_CRATE"
        check "$s" "$name" "$tool" "$WORK/aa-${AA_CRATE%@*}" comment --tests ;;
      semver_aa_bench)
        if has_benches; then check "$s" "$name" "$tool" "$WORK/semver" comment --benches
        else echo "{\"scenario\": \"$s\", \"tool\": \"$name\", \"skipped\": \"semver's benchmarks need a nightly toolchain (#![feature(test)])\"}"; fi ;;
      *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
  done
done | tee -a "$WORK/results.jsonl"
