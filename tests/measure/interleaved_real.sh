#!/usr/bin/env bash
# `cargo contprof check` at its defaults (`--baseline auto`: off the default branch it rebuilds the
# merge-base in a git worktree and records base and head alternately, A B A B; 10 runs a side at
# 9999 Hz) on the real-crate scenario branches that tests/measure/real_crates.sh sets up (run that
# first, e.g. with SETUP_ONLY=1). Per crate and scenario, how often anything was gated (aa,
# layout), how often the injected function was named and anything off its call paths gated
# (reg_own, reg_dep), and the comparison's own estimate of the between-batch spread and power.
# Every NEIGHBOUR_EVERY-th aa check has a memory-bandwidth-heavy neighbour process started
# NEIGHBOUR_DELAY seconds into it (so the base and head repetitions after that run next to it).
# Raw results: $WORK/results/interleaved.jsonl. By hand only, never in CI.
#
#   CONTPROF_BIN=target/release/cargo-contprof tests/measure/interleaved_real.sh
#   N_AA=2 N_LAYOUT=1 N_REG=2 CRATES=sha2 CONTPROF_BIN=... tests/measure/interleaved_real.sh
#
# Environment: WORK (default /work/measure), CRATES (default "serde_json pulldown-cmark sha2"),
# SCENARIOS (default "aa layout reg_own reg_dep"), N_AA (default 17), N_LAYOUT (default 4), N_REG
# (default 8), NEIGHBOUR_EVERY (default 2), NEIGHBOUR_DELAY (default 12 s), RESULTS (default
# $WORK/results/interleaved.jsonl), KEEP=1 (append to the
# results instead of starting them afresh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/work/measure}
: "${CONTPROF_BIN:?set CONTPROF_BIN to a release build of cargo-contprof}"
CRATES=${CRATES:-"serde_json pulldown-cmark sha2"}
SCENARIOS=${SCENARIOS:-"aa layout reg_own reg_dep"}
N_AA=${N_AA:-17}
N_LAYOUT=${N_LAYOUT:-4}
N_REG=${N_REG:-8}
NEIGHBOUR_EVERY=${NEIGHBOUR_EVERY:-2}
NEIGHBOUR_DELAY=${NEIGHBOUR_DELAY:-12}
RESULTS=${RESULTS:-$WORK/results/interleaved.jsonl}
# shellcheck source=real/scenarios.sh
source "$HERE/real/scenarios.sh"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$WORK/results" "$WORK/interleaved" "$WORK/bin"
[ "${KEEP:-0}" = 1 ] || : >"$RESULTS"

NEIGHBOUR_PID=
neighbour_start_later() {
  [ -x "$WORK/bin/neighbour" ] || {
    # Streams over two 256 MiB buffers forever: memory bandwidth and last-level cache pressure.
    printf '%s\n' '#include <stdlib.h>' '#include <string.h>' \
      'int main(void) { size_t n = (size_t)256 << 20; char *a = malloc(n), *b = malloc(n);' \
      '  memset(a, 1, n); memset(b, 2, n); for (;;) { memcpy(b, a, n); memcpy(a, b, n); } }' >"$WORK/bin/neighbour.c"
    cc -O2 -o "$WORK/bin/neighbour" "$WORK/bin/neighbour.c"
  }
  (sleep "$NEIGHBOUR_DELAY" && exec "$WORK/bin/neighbour") &
  NEIGHBOUR_PID=$!
}
neighbour_stop() {
  if [ -n "$NEIGHBOUR_PID" ]; then
    pkill -P "$NEIGHBOUR_PID" 2>/dev/null || true
    kill "$NEIGHBOUR_PID" 2>/dev/null || true
    wait "$NEIGHBOUR_PID" 2>/dev/null || true
    NEIGHBOUR_PID=
  fi
  pkill -x neighbour 2>/dev/null || true
}
trap neighbour_stop EXIT

for c in $CRATES; do
  [ -f "$WORK/crates/$c/setup.ok" ] || { log "$c is not set up: run tests/measure/real_crates.sh with SETUP_ONLY=1"; exit 2; }
  for s in $SCENARIOS; do
    case $s in aa) n=$N_AA ;; layout) n=$N_LAYOUT ;; *) n=$N_REG ;; esac
    for i in $(seq "$n"); do
      dir=$WORK/interleaved/$c-$s-$i
      rm -rf "$dir" && mkdir -p "$dir"
      nb=0
      if [ "$s" = aa ] && [ $((i % NEIGHBOUR_EVERY)) -eq 0 ]; then nb=1 && neighbour_start_later; fi
      t0=$SECONDS
      code=0
      (cd "$WORK/crates/$c/wt/$s" && CARGO_TARGET_DIR=$WORK/crates/$c/target/$s "$CONTPROF_BIN" contprof check \
        --example contprof_workload --manifest-path contprof-workload/Cargo.toml \
        --store "$WORK/interleaved/store-$c" --report-dir "$dir" >"$dir/stdout" 2>"$dir/stderr") || code=$?
      neighbour_stop
      python3 - "$dir" "$c" "$s" "$i" "$nb" "$code" "$((SECONDS - t0))" "${INJECTED[$c/$s]:-}" "${PATHS[$c/$s]:-}" >>"$RESULTS" <<'PY'
import json, re, sys
d, crate, scen, i, nb, code, secs, injected, paths = sys.argv[1:]
stderr = open(f"{d}/stderr").read()
mode = next((l.split("Baseline", 1)[1].strip() for l in stderr.splitlines() if l.strip().startswith("Baseline ")), "?")
try:
    r = json.load(open(f"{d}/report.json"))
except (OSError, ValueError):
    print(json.dumps({"crate": crate, "scenario": scen, "i": int(i), "exit": int(code), "error": stderr[-2000:]}))
    sys.exit()
cpu = [g for g in r["groups"] if g["metric"] == "cpu"][0]
regs = r["regressions"]
fn = lambda e: e["function"]
named = bool(injected) and any(re.search(injected, fn(e)) and e["metric"] == "cpu" for e in regs)
off = [fn(e) for e in regs if paths and not re.search(paths, fn(e))] if injected else []
measured = [f'{e["kind"]} {e["change"]:+.0%}' for e in regs + r["shifted"] if injected and re.search(injected, fn(e)) and e["metric"] == "cpu"]
print(json.dumps({"crate": crate, "scenario": scen, "i": int(i), "neighbour": nb == "1", "exit": int(code),
                  "seconds": int(secs), "baseline": mode, "gated": bool(regs), "named": named, "off_path": off,
                  "regressions": sorted({fn(e) for e in regs}), "shifted": len(r["shifted"]),
                  "injected_change": measured, "comparison_sd": cpu["comparison_sd"],
                  "between_batch_sd": cpu["between_batch_sd"], "drift_source": cpu["drift_source"],
                  "min_detectable_5pct": [m["change"] for m in cpu["min_detectable"] if m["share"] == 0.05],
                  "runs_used": (r.get("timings") or {}).get("runs", {}).get("used", cpu["runs_head"])}))
PY
      log "$c/$s #$i$([ "$nb" = 1 ] && echo ' [neighbour]'): exit $code, $((SECONDS - t0)) s: $(tail -n1 "$RESULTS" | cut -c1-220)"
    done
  done
done

# The summary scores "off the changed call paths" against the current real/scenarios.sh, so that a
# call path added there after a run (a caller the hand-written list missed) re-scores old results.
paths_json=$(for k in "${!PATHS[@]}"; do printf '%s\t%s\n' "$k" "${PATHS[$k]}"; done)
python3 - "$RESULTS" "$paths_json" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
paths = dict(l.split("\t", 1) for l in sys.argv[2].splitlines() if "\t" in l)
for r in rows:
    p = paths.get(f'{r["crate"]}/{r["scenario"]}')
    if p and "regressions" in r:
        r["off_path"] = [f for f in r["regressions"] if not re.search(p, f)]
print("| crate | scenario | checks | gated anything / injected function named | off the changed call paths in `regressions` | between-batch spread | minimum detectable at 5% | runs a side used (median, range) |")
print("|---|---|---|---|---|---|---|---|")
seen = []
for r in rows:
    if (r["crate"], r["scenario"]) not in seen:
        seen.append((r["crate"], r["scenario"]))
for crate, scen in seen:
    rs = [r for r in rows if r["crate"] == crate and r["scenario"] == scen]
    ok = [r for r in rs if "error" not in r]
    err = len(rs) - len(ok)
    if scen in ("aa", "layout"):
        verdict = f'{sum(r["gated"] for r in ok)}/{len(ok)}'
        nb = [r for r in ok if r.get("neighbour")]
        if nb:
            verdict += f' ({sum(r["gated"] for r in nb)}/{len(nb)} with the neighbour)'
        off = "-"
    else:
        verdict = f'named {sum(r["named"] for r in ok)}/{len(ok)}'
        off = f'{sum(bool(r["off_path"]) for r in ok)}/{len(ok)}'
    if err:
        verdict += f", {err} failed"
    sd = sorted(r["between_batch_sd"] for r in ok)
    mde = sorted(m for r in ok for m in r["min_detectable_5pct"])
    span = lambda v, f: f"{f(v[0])}–{f(v[-1])}" if v else "-"
    used = sorted(r.get("runs_used") or 0 for r in ok)
    runs = f"{used[len(used) // 2]} ({used[0]}–{used[-1]})" if used else "-"
    print(f"| {crate} | {scen} | {len(rs)} | {verdict} | {off} | {span(sd, lambda x: f'{x:.2f}')} | {span(mde, lambda x: f'{x:.0%}')} | {runs} |")
PY
