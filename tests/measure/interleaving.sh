#!/usr/bin/env bash
# How much `check --rebuild-base` (base and head interleaved in one job) narrows the confidence
# intervals compared with a baseline stored earlier. On a temporary git repository with the fixture
# workspace: `main` records a baseline (store A); a branch makes `regress::thirty` do 1.5x the work
# (a source edit in its caller); then, REPS times, `check` against the stored baseline (store A) and
# `check --rebuild-base` (store B) alternate. Prints the width of the 95% CI of thirty's CPU self
# change in each, and the medians.
#
#   tests/measure/interleaving.sh [REPS] [RUNS]   (FREQ=4999 Hz; LOAD=1: a CPU hog runs after the baseline)
set -euo pipefail
REPS=${1:-3}
RUNS=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CONTPROF_BIN:-$ROOT/target/debug/cargo-contprof}
WORK=$(mktemp -d)
trap 'kill ${HOG:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
export FIXTURE_SCALE=${FIXTURE_SCALE:-1}
mkdir -p "$WORK/repo" && cp -r "$ROOT/fixtures/workloads" "$WORK/repo/"
cd "$WORK/repo"
printf '[workspace]\nresolver = "3"\nmembers = ["workloads"]\n[workspace.package]\nedition = "2024"\npublish = false\n' >Cargo.toml
printf 'target/\nCargo.lock\n' >.gitignore
git() { command git -c user.name=m -c user.email=m@m -c commit.gpgsign=false "$@"; }
git init -q -b main && git add -A && git commit -qm base
check() { "$BIN" contprof check --bin regress --runs "$RUNS" --frequency "${FREQ:-4999}" --quiet "$@" >/dev/null 2>&1 || true; }
check --store "$WORK/a" --report-dir "$WORK/r"
git checkout -qb feature
sed -i 's/part(30, "thirty")/part(45, "thirty")/' workloads/src/bin/regress.rs
git commit -qam "thirty 1.5x"
if [ "${LOAD:-0}" = 1 ]; then (while :; do :; done) & HOG=$!; fi
width() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
f = [x for x in r["regressions"] + r["possible"] if x["function"] == "regress::thirty" and x["metric"] == "cpu" and x["kind"] == "self"]
print("%.1f" % ((f[0]["ci_high"] - f[0]["ci_low"]) * 100) if f and f[0].get("ci_low") is not None else "nan")' "$1"
}
stored=(); inter=()
for i in $(seq "$REPS"); do
  check --store "$WORK/a" --report-dir "$WORK/s$i"; stored+=("$(width "$WORK/s$i/report.json")")
  check --store "$WORK/b" --report-dir "$WORK/i$i" --rebuild-base; inter+=("$(width "$WORK/i$i/report.json")")
  echo "rep $i: CI width (percentage points) stored baseline ${stored[-1]}, interleaved ${inter[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median CI width: stored baseline $(median "${stored[@]}") pp, interleaved $(median "${inter[@]}") pp"
