#!/usr/bin/env bash
# The instructions engine (`--engine instructions`) on the real-crate workloads that
# tests/measure/real_crates.sh sets up (run that first, e.g. with SETUP_ONLY=1). By hand only.
#
#   CONTPROF_BIN=target/release/cargo-contprof tests/measure/instructions_real.sh
#
# Per crate:
#   jitter    `run --engine instructions --runs $RUNS` on main: per function (self, >= 0.1% of the
#             instructions), the largest relative spread (max/min - 1) between the runs;
#   slowdown  wall time of one instructions-engine run against the plain binary's (median of 3);
#   aa        `check --engine instructions` (its defaults: the merge-base rebuilt and interleaved,
#             one run a side) on the comment-only branch, N_AA times: anything flagged?
#   ir_own    the crate's reg_own injection made 25x rarer: +1% of the function's work (redone on
#             1 call in 101 instead of 1 in 5; pulldown-cmark's create_node loop likewise);
#   ir_dep    the same for reg_dep's dependency function (sha2's digest_blocks: 1 call in 100);
#             N_IR checks each: the injected function named, anything else listed?
# Environment: WORK (default /work/measure), CRATES (default "serde_json pulldown-cmark sha2"),
# RUNS (default 5), N_AA (default 3), N_IR (default 3), KEEP=1 (append to the results instead of
# starting them afresh). Raw results: $WORK/results/instructions.jsonl.
# Needs valgrind and go (`go tool pprof` reads the per-run profiles).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/work/measure}
: "${CONTPROF_BIN:?set CONTPROF_BIN to a release build of cargo-contprof}"
CRATES=${CRATES:-"serde_json pulldown-cmark sha2"}
RUNS=${RUNS:-5}
N_AA=${N_AA:-3}
N_IR=${N_IR:-3}
RESULTS=$WORK/results/instructions.jsonl
# shellcheck source=real/scenarios.sh
source "$HERE/real/scenarios.sh"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
git() { command git -c user.name=contprof-measure -c user.email=measure@localhost -c commit.gpgsign=false "$@"; }
mkdir -p "$WORK/results" "$WORK/instructions"
[ "${KEEP:-0}" = 1 ] || : >"$RESULTS"

# ir_own/ir_dep: the reg_* commit with its every-5th-count switch made every 101st (100 calls and
# one redo), sha2's input-length switch 3 mod 4 made 3 mod 100.
make_ir() {
  local c=$1 s=$2 repo=$WORK/crates/$1/repo from=reg_${2#ir_}
  [ -d "$WORK/crates/$c/wt/$s" ] && return
  git -C "$repo" branch -f "$s" "$from" >/dev/null
  git -C "$repo" worktree add -q "$WORK/crates/$c/wt/$s" "$s"
  (cd "$WORK/crates/$c/wt/$s" &&
    grep -rl 'contprof_calls % 5 == 4\|input.len() % 4 == 3' --include=*.rs . | while read -r f; do
      sed -i 's/contprof_calls % 5 == 4/contprof_calls % 101 == 100/; s/input.len() % 4 == 3/input.len() % 100 == 3/' "$f"
    done &&
    git add -A && git commit -qm "contprof scenario $s (+1%: the $from injection 25x rarer)")
}

check_ir() {  # crate scenario i
  local c=$1 s=$2 i=$3 dir=$WORK/instructions/$1-$2-$3 code=0
  rm -rf "$dir" && mkdir -p "$dir"
  local t0=$SECONDS
  (cd "$WORK/crates/$c/wt/$s" && CARGO_TARGET_DIR=$WORK/crates/$c/target/$s "$CONTPROF_BIN" contprof check \
    --engine instructions --example contprof_workload --manifest-path contprof-workload/Cargo.toml \
    --store "$WORK/instructions/store-$c" --report-dir "$dir" >"$dir/stdout" 2>"$dir/stderr") || code=$?
  local injected=${INJECTED[$c/reg_${s#ir_}]:-} paths=${PATHS[$c/reg_${s#ir_}]:-}
  [ "$s" = aa ] && injected='' && paths=''
  python3 - "$dir" "$c" "$s" "$i" "$code" "$((SECONDS - t0))" "$injected" "$paths" >>"$RESULTS" <<'PY'
import json, re, sys
d, crate, scen, i, code, secs, injected, paths = sys.argv[1:]
try:
    r = json.load(open(f"{d}/report.json"))
except (OSError, ValueError):
    print(json.dumps({"kind": "check", "crate": crate, "scenario": scen, "i": int(i), "exit": int(code),
                      "error": open(f"{d}/stderr").read()[-2000:]}))
    sys.exit()
regs = [e for e in r["regressions"] if e["metric"] == "instructions"]
fn = lambda e: e["function"]
print(json.dumps({
    "kind": "check", "crate": crate, "scenario": scen, "i": int(i), "exit": int(code), "seconds": int(secs),
    "flagged": sorted({f"{fn(e)} {e['kind']} {e['change']:+.2%}" for e in r["regressions"] + r["improvements"] + r["shifted"]}),
    "named": bool(injected) and any(re.search(injected, fn(e)) for e in regs),
    "off_path": [fn(e) for e in r["regressions"] if paths and not re.search(paths, fn(e))],
    "injected": [f"{e['kind']} {e['change']:+.2%} (base share {e['base_share']:.2%})" for e in regs if injected and re.search(injected, fn(e))],
}))
PY
  log "$c/$s #$i: exit $code, $((SECONDS - t0)) s: $(tail -n1 "$RESULTS" | cut -c1-240)"
}

for c in $CRATES; do
  [ -f "$WORK/crates/$c/setup.ok" ] || { log "$c is not set up: run tests/measure/real_crates.sh with SETUP_ONLY=1"; exit 2; }
  main=$WORK/crates/$c/repo
  out=$WORK/instructions/$c-runs
  rm -rf "$out"
  # Jitter: RUNS runs of main, per-function self counts compared.
  t0=$SECONDS
  (cd "$main" && CARGO_TARGET_DIR=$WORK/crates/$c/target/base "$CONTPROF_BIN" contprof run --engine instructions \
    --runs "$RUNS" --example contprof_workload --manifest-path contprof-workload/Cargo.toml --no-store -o "$out" \
    >"$out.stdout" 2>"$out.stderr")
  engine_wall=$(( (SECONDS - t0) ))
  for r in $(seq "$RUNS"); do
    go tool pprof -top -sample_index=instructions -nodecount=100000 "$out/run-$r.pb.gz" 2>/dev/null >"$out/run-$r.top"
  done
  # Slowdown: the plain binary (the contprof profile's build) against one instructions run.
  bin=$WORK/crates/$c/target/base/contprof/examples/contprof_workload
  python3 - "$c" "$out" "$RUNS" "$bin" "$CONTPROF_BIN" "$main" "$WORK/crates/$c/target/base" >>"$RESULTS" <<'PY'
import json, os, re, statistics, subprocess, sys, time
crate, out, runs, binary, tool, main, target = sys.argv[1:]
runs = int(runs)
tops = []
for r in range(1, runs + 1):
    flat = {}
    for line in open(f"{out}/run-{r}.top"):
        c = line.split()
        if len(c) >= 6 and c[1].endswith("%") and c[4].endswith("%"):
            try:
                flat[" ".join(c[5:])] = float(c[0])
            except ValueError:
                pass
    tops.append(flat)
total = max(sum(t.values()) for t in tops)
spread = []
for name in set().union(*tops):
    vals = [t.get(name, 0.0) for t in tops]
    if max(vals) >= total * 0.001:
        spread.append((max(vals) / max(min(vals), 1.0) - 1.0, name, max(vals) / total))
spread.sort(reverse=True)
totals = [sum(t.values()) for t in tops]
def median_wall(cmd, env=None, cwd=None):
    walls = []
    for _ in range(3):
        t = time.monotonic()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=cwd)
        walls.append(time.monotonic() - t)
    return statistics.median(walls)
plain = median_wall([binary], cwd=main)
env = dict(os.environ, CARGO_TARGET_DIR=target)
engine = median_wall([tool, "contprof", "run", "--engine", "instructions", "--example", "contprof_workload",
                      "--manifest-path", "contprof-workload/Cargo.toml", "--no-store", "-o", f"{out}/timing", "--top", "0"],
                     env=env, cwd=main)
print(json.dumps({"kind": "runs", "crate": crate, "runs": runs, "total_instructions": totals,
                  "total_spread": max(totals) / min(totals) - 1.0,
                  "max_function_spread": spread[:5], "functions_over_0.1pct": len(spread),
                  "plain_wall_s": plain, "engine_wall_s": engine, "slowdown": engine / plain}))
PY
  log "$c runs: $(tail -n1 "$RESULTS" | cut -c1-400)"
  for i in $(seq "$N_AA"); do check_ir "$c" aa "$i"; done
  for s in ir_own ir_dep; do
    [ "$c/$s" = sha2/ir_own ] && continue  # sha2's reg_own adds work on every call: no switch to make rarer
    make_ir "$c" "$s"
    for i in $(seq "$N_IR"); do check_ir "$c" "$s" "$i"; done
  done
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| crate | run-to-run spread of the total / of the most jittery function (>= 0.1%) | slowdown (wall, instructions engine / plain) | A/A checks flagging anything | +1% named / anything off its paths |")
print("|---|---|---|---|---|")
for crate in dict.fromkeys(r["crate"] for r in rows):
    runs = next(r for r in rows if r["crate"] == crate and r["kind"] == "runs")
    checks = [r for r in rows if r["crate"] == crate and r["kind"] == "check"]
    aa = [r for r in checks if r["scenario"] == "aa"]
    ir = [r for r in checks if r["scenario"].startswith("ir_")]
    top = runs["max_function_spread"][0] if runs["max_function_spread"] else [0, "-", 0]
    print(f"| {crate} | {runs['total_spread']:.4%} / {top[0]:.3%} (`{top[1]}`, {top[2]:.1%}) | "
          f"{runs['slowdown']:.0f}x ({runs['engine_wall_s']:.1f} s / {runs['plain_wall_s']:.2f} s) | "
          f"{sum(bool(r.get('flagged')) or 'error' in r for r in aa)}/{len(aa)} | "
          f"{sum(r.get('named', False) for r in ir)}/{len(ir)} / {sum(bool(r.get('off_path')) for r in ir)}/{len(ir)} |")
PY
