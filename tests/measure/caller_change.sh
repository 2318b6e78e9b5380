#!/usr/bin/env bash
# `cargo contprof check` at its defaults (interleaved base: the merge-base rebuilt in a worktree,
# base and head run alternately, 10 runs a side at 9999 Hz) on changes made the way real commits
# make them, in the caller. CRATE picks the crate and its workload:
#   miniz_oxide  0.8.9 (the default; none of the other harnesses use it): deflate level 6, then
#                inflate INFLATE_PASSES times (tests/measure/real/miniz_oxide.rs)
#   serde_json   1.0.154: the round trips of tests/measure/real/serde_json.rs, whose parse from a
#                `&str` runs PARSE_PASSES times (4) in this harness's copy: the case issue 27 was
#                filed on (a constant in the caller, +25% of a fifth of the CPU, missed in 2 of 3
#                checks)
# Scenarios, each a branch off `main`:
#   aa          a comment-only change (same machine code)
#   layout      an extra call in the caller (the workload's main), under a condition never true:
#               main's code and the binary's layout change, the work does not
#   reg_caller  a constant in the caller: INFLATE_PASSES (PARSE_PASSES) 4 -> 5, +25% of the work of
#               everything under `decompress_to_vec` (`from_str`); main's code and the layout
#               change too
# Per tool binary and scenario: how often anything gated (aa, layout) or the regressed side was
# named and anything off its call paths gated (reg_caller), the comparison's empirical null and
# the least detectable change it stated at 5% of the CPU (its spread over the repeats). Give two
# builds (before/after a change of the method) to compare them on the same checks, alternated.
# Raw results: $WORK/results.jsonl. By hand only, never in CI (~40 s a check on the 2-core VM).
#
#   BINS="new=target/release/cargo-contprof" tests/measure/caller_change.sh
#   BINS="old=/tmp/old/cargo-contprof new=target/release/cargo-contprof" N=10 tests/measure/caller_change.sh
#   CRATE=serde_json BINS="new=target/release/cargo-contprof" N=20 tests/measure/caller_change.sh
#
# Environment: CRATE (default miniz_oxide), WORK (default /work/measure/caller-change, with
# -serde_json appended for serde_json), BINS (name=path ...), N (checks per binary and scenario,
# default 10), SCENARIOS (default "aa layout reg_caller"), KEEP=1 (append to the results),
# SUMMARY_ONLY=1 (print the table of the results there).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
REAL_CRATE=${REAL_CRATE:-/work/shared/tools/real-crate}
CRATE=${CRATE:-miniz_oxide}
BINS=${BINS:?set BINS to name=path pairs of cargo-contprof builds}
N=${N:-10}
SCENARIOS=${SCENARIOS:-"aa layout reg_caller"}
# Per crate: the version, the functions that name the regression (NAMED), and the regressed
# side's call paths (PATHS: those functions, the workload's caller of them, the allocations they
# make and the library frames they run).
case $CRATE in
  miniz_oxide)
    WORK=${WORK:-/work/measure/caller-change}
    VERSION=0.8.9
    NAMED='miniz_oxide::inflate|decompress_to_vec|inflate_all'
    PATHS='miniz_oxide::inflate|decompress_to_vec|inflate_all|contprof_workload::main|alloc::|core::|std::|malloc|free|realloc|memcpy|memmove|memset|\[program start\]' ;;
  serde_json)
    WORK=${WORK:-/work/measure/caller-change-serde_json}
    VERSION=1.0.154
    NAMED='serde_json::de|serde_json::read|serde_json::value::de|from_str'
    PATHS='serde_json::de|serde_json::read|serde_json::value::de|serde_json::value::Value|serde_json::map|serde_json::error|from_str|contprof_workload::main|alloc::|core::|std::|malloc|free|realloc|memcpy|memmove|memset|memcmp|\[program start\]' ;;
  *) echo "CRATE must be miniz_oxide or serde_json" >&2; exit 2 ;;
esac
RESULTS=$WORK/results.jsonl

# shellcheck source=real/common.sh
source "$HERE/real/common.sh"

summary() {
  python3 - "$RESULTS" "$NAMED" "$PATHS" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
named_re, paths_re = sys.argv[2], sys.argv[3]
print("| tool | scenario | checks | gated / CPU regression named | off the call paths | comparison's null (sd) | sides' own A/A (sd) | least detectable at 5% (min-median-max) | measured change of the named functions' totals |")
print("|---|---|---|---|---|---|---|---|---|")
keys = []
for r in rows:
    if (r["bin"], r["scenario"]) not in keys:
        keys.append((r["bin"], r["scenario"]))
for b, s in sorted(keys, key=lambda k: (k[1], k[0])):
    rs = [r for r in rows if r["bin"] == b and r["scenario"] == s and "error" not in r]
    failed = sum(1 for r in rows if r["bin"] == b and r["scenario"] == s and "error" in r)
    if s == "reg_caller":
        # Named in the CPU (the allocations of the extra passes are found by both tools).
        named = sum(bool(r["injected_change"]) for r in rs)
        off = sum(any(not re.search(paths_re, f) for f in r["regressions"]) for r in rs)
        verdict, off = f"named {named}/{len(rs)}", f"{off}/{len(rs)}"
    else:
        verdict, off = f"gated {sum(r['gated'] for r in rs)}/{len(rs)}", "-"
    if failed:
        verdict += f", {failed} failed"
    null = sorted(r["comparison_sd"] or 0.0 for r in rs)
    sides = sorted(r["sides_sd"] for r in rs if r.get("sides_sd") is not None)
    mde = sorted(m for r in rs for m in r["min_detectable_5pct"])
    span = lambda v, f: f"{f(v[0])}-{f(statistics.median(v))}-{f(v[-1])}" if v else "-"
    totals = sorted(float(c.split()[-1].rstrip("%")) for r in rs for c in r["injected_change"] if " total " in c)
    change = [f"total {totals[0]:+.0f}% to {totals[-1]:+.0f}%"] if totals else []
    print(f"| {b} | {s} | {len(rs)} | {verdict} | {off} | {span(null, lambda x: f'{x:.2f}')} | {span(sides, lambda x: f'{x:.2f}')} | {span(mde, lambda x: f'{x:.0%}')} | {', '.join(change[:4])} |")
PY
}
if [ "${SUMMARY_ONLY:-0}" = 1 ]; then summary; exit; fi

setup() {
  local repo=$WORK/repo
  local source=$HERE/real/$CRATE.rs
  [ -f "$WORK/setup.ok" ] && [ "$(cat "$WORK/setup.ok")" = "$(sha256sum "$source" "$SELF" | sha256sum | cut -c1-16)" ] && return
  rm -rf "$WORK" && mkdir -p "$WORK"
  "$REAL_CRATE" "$CRATE@$VERSION" "$repo" >/dev/null
  cd "$repo"
  mkdir -p contprof-workload/examples contprof-workload/src
  echo "//! The contprof workload: see examples/contprof_workload.rs." >contprof-workload/src/lib.rs
  local w=contprof-workload/examples/contprof_workload.rs s
  cp "$source" "$w"
  if [ "$CRATE" = serde_json ]; then
    # The parse from a `&str` runs PARSE_PASSES times: the constant reg_caller changes.
    replace "$w" $'use serde_json::{json, Map, Value};\n' \
      $'use serde_json::{json, Map, Value};\n\nconst PARSE_PASSES: usize = 4;\n'
    replace "$w" $'        let back: Value = serde_json::from_str(&compact).unwrap();\n' \
      $'        let mut back = Value::Null;\n        for _ in 0..PARSE_PASSES {\n            back = serde_json::from_str(&compact).unwrap();\n        }\n'
  fi
  printf '[package]\nname = "contprof-workload"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\n%s = { path = ".." }\n' \
    "$CRATE" >contprof-workload/Cargo.toml
  if grep -q $'^\[workspace\]' Cargo.toml; then
    replace Cargo.toml $'\n[workspace]\n' $'\n[workspace]\nmembers = ["contprof-workload"]\n'
  else
    printf '\n[workspace]\nmembers = ["contprof-workload"]\n' >>Cargo.toml
  fi
  cargo metadata -q --format-version 1 >/dev/null
  git add -A && git commit -qm "contprof workload (examples/contprof_workload.rs in contprof-workload/)"
  for s in aa layout reg_caller; do
    git checkout -q -b "$s" main
    case $CRATE/$s in
      */aa) printf '\n// contprof A/A scenario: a comment-only change.\n' >>"$w" ;;
      miniz_oxide/layout) replace "$w" $'    let data = corpus(0x9E37_79B9_7F4A_7C15);\n' \
        $'    let data = corpus(0x9E37_79B9_7F4A_7C15);\n    if std::env::var_os("CONTPROF_LAYOUT_NEVER_SET").is_some() {\n        std::hint::black_box(compress_to_vec(&data[..4096], 1));\n    }\n' ;;
      miniz_oxide/reg_caller) replace "$w" $'const INFLATE_PASSES: usize = 4;\n' $'const INFLATE_PASSES: usize = 5;\n' ;;
      # A call that instantiates nothing of serde_json's: its generic code is compiled in the
      # workload's crate, where a new use (a `json!` map, say) changes what gets inlined into what,
      # a real change of its machine code, not a layout-only one.
      serde_json/layout) replace "$w" $'    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);\n' \
        $'    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);\n    if std::env::var_os("CONTPROF_LAYOUT_NEVER_SET").is_some() {\n        std::hint::black_box(std::fs::read("/contprof/never").map(|b| b.len()).unwrap_or(0));\n    }\n' ;;
      serde_json/reg_caller) replace "$w" $'const PARSE_PASSES: usize = 4;\n' $'const PARSE_PASSES: usize = 5;\n' ;;
    esac
    git commit -qam "contprof scenario $s"
    git checkout -q main
    git worktree add -q "$WORK/wt/$s" "$s"
  done
  sha256sum "$source" "$SELF" | sha256sum | cut -c1-16 >"$WORK/setup.ok"
}

setup
mkdir -p "$WORK/out"
[ "${KEEP:-0}" = 1 ] || : >"$RESULTS"
for i in $(seq "$N"); do
  for s in $SCENARIOS; do
    for pair in $BINS; do
      b=${pair%%=*} bin=$(realpath "${pair#*=}")
      dir=$WORK/out/$b-$s-$i
      rm -rf "$dir" && mkdir -p "$dir"
      t0=$SECONDS code=0
      (cd "$WORK/wt/$s" && CARGO_TARGET_DIR=$WORK/target/$s "$bin" contprof check --example contprof_workload \
        --manifest-path contprof-workload/Cargo.toml --store "$WORK/store-$b" --report-dir "$dir" \
        >"$dir/stdout" 2>"$dir/stderr") || code=$?
      python3 - "$dir" "$b" "$s" "$i" "$code" "$((SECONDS - t0))" "$NAMED" >>"$RESULTS" <<'PY'
import json, re, sys
d, b, s, i, code, secs, named = sys.argv[1:]
try:
    r = json.load(open(f"{d}/report.json"))
except (OSError, ValueError):
    print(json.dumps({"bin": b, "scenario": s, "i": int(i), "exit": int(code), "error": open(f"{d}/stderr").read()[-2000:]}))
    sys.exit()
cpu = [g for g in r["groups"] if g["metric"] == "cpu"][0]
regs = [e for e in r["regressions"] if e["metric"] == "cpu"]
print(json.dumps({"bin": b, "scenario": s, "i": int(i), "exit": int(code), "seconds": int(secs),
    "gated": bool(r["regressions"]), "regressions": sorted({e["function"] for e in r["regressions"]}),
    "shifted": len(r["shifted"]),
    "injected_change": [f'{e["function"].split("::")[-1]} {e["kind"]} {e["change"]:+.0%}' for e in regs if re.search(named, e["function"])],
    "comparison_sd": cpu["comparison_sd"], "sides_sd": cpu.get("sides_sd"), "between_batch_sd": cpu["between_batch_sd"], "drift_source": cpu["drift_source"],
    "min_detectable_5pct": [m["change"] for m in cpu["min_detectable"] if m["share"] == 0.05]}))
PY
      log "$b/$s #$i: exit $code, $((SECONDS - t0)) s: $(tail -n1 "$RESULTS" | cut -c1-200)"
    done
  done
done
summary
