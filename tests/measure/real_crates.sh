#!/usr/bin/env bash
# Measures the regression gate's verdicts on code nobody in this project wrote: three published
# crates (serde_json, pulldown-cmark, sha2 on two threads), each with a workload example, and per
# crate four scenario branches:
#   aa       a comment-only change (identical machine code); some of its batches are recorded
#            with a memory-bandwidth-heavy neighbour process running (marked "neighbour": true)
#   layout   an unrelated function added early in the crate's source, linked in but never called
#   reg_own  +25% of the work of one of the crate's own hot functions
#   reg_dep  +25% of the work of a function of one of the crate's dependencies (vendored)
# Batches are recorded as `cargo contprof check` does at its defaults (10 runs, 9999 Hz, sampled
# allocations), base and scenario batches alternating in time, all of a crate into one store, and
# compared with `contprof compare RUNS RUNS --format json`. Prints, per crate and scenario, how
# often anything was flagged (aa, layout), how often the injected function was named and how often
# a function off its call paths was listed (reg_own, reg_dep), and the mean length of `shifted`
# (newer tools). Raw per-comparison results: $WORK/results/*.jsonl. Run by hand, never in CI.
#
#   tests/measure/real_crates.sh                      # the full measurement (about 45 min on 2 cores)
#   PAIRS=2 tests/measure/real_crates.sh              # a quick check (2 comparisons per scenario)
#   CRATES="sha2" CONTPROF_BIN=path/to/cargo-contprof tests/measure/real_crates.sh
#
# Environment: WORK (default /work/measure: crates, worktrees, target dirs, stores, results),
# CONTPROF_BIN (default: built once with `cargo build --release` into $WORK/tool-target),
# CRATES (default "serde_json pulldown-cmark sha2"), PAIRS (comparisons per scenario; default 12
# for aa and layout, 8 for reg_own and reg_dep), NEIGHBOUR_EVERY (default 2: the aa batch of every
# 2nd round runs next to the neighbour process). Needs git, cargo, python3, cc, and crates.io.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REAL_CRATE=${REAL_CRATE:-/work/shared/tools/real-crate}
WORK=${WORK:-/work/measure}
CRATES=${CRATES:-"serde_json pulldown-cmark sha2"}
PAIRS_AA=${PAIRS:-12}
PAIRS_LAYOUT=${PAIRS:-12}
PAIRS_REG=${PAIRS:-8}
NEIGHBOUR_EVERY=${NEIGHBOUR_EVERY:-2}
SCENARIOS=(aa layout reg_own reg_dep)
# Exactly what `check` records at its defaults (cargo-contprof/src/cli/check.rs DEFAULT_RUNS,
# args.rs CheckArgs: runner::CHECK_FREQUENCY, AllocArg::Sampled, 512K).
RECORD_FLAGS=(--runs 10 --frequency 9999 --alloc sampled --alloc-interval 512K)

declare -A VERSION=([serde_json]=1.0.154 [pulldown-cmark]=0.13.6 [sha2]=0.11.1)
# The dependency vendored into vendor/NAME for reg_dep (its version is the one Cargo.lock resolves).
declare -A VENDORED=([serde_json]=itoa [pulldown-cmark]=pulldown-cmark-escape [sha2]=block-buffer)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 2; }
git() { command git -c user.name=contprof-measure -c user.email=measure@localhost -c commit.gpgsign=false "$@"; }

# replace FILE OLD NEW: replace the one occurrence of OLD in FILE by NEW (fails if not exactly one).
replace() {
  python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
n = text.count(old)
if n != 1:
    sys.exit(f"replace: {n} occurrences of {old[:60]!r} in {path}")
open(path, "w").write(text.replace(old, new))
PY
}

# ---------------------------------------------------------------------------------------------
# Step 1: the tool.
tool() {
  if [ -z "${CONTPROF_BIN:-}" ]; then
    log "building the tool (release) into $WORK/tool-target"
    CARGO_TARGET_DIR=$WORK/tool-target cargo build --release -q -p cargo-contprof --manifest-path "$ROOT/Cargo.toml"
    CONTPROF_BIN=$WORK/tool-target/release/cargo-contprof
  fi
  [ -x "$CONTPROF_BIN" ] || die "CONTPROF_BIN=$CONTPROF_BIN is not an executable"
  log "tool: $CONTPROF_BIN"
}
