#!/usr/bin/env bash
# `check --rebuild-base` (base and head interleaved, A B A B) on the real-crate scenarios that
# tests/measure/real_crates.sh sets up (run that first, e.g. with SETUP_ONLY=1). Per crate and
# scenario, N checks against `main`: how often anything was gated (aa) or the injected function
# named (reg_own), and the comparison's own estimate of the between-batch spread. By hand only.
#
#   CONTPROF_BIN=target/release/cargo-contprof N=6 tests/measure/interleaved_real.sh
set -euo pipefail
WORK=${WORK:-/work/measure}
N=${N:-6}
CRATES=${CRATES:-"serde_json pulldown-cmark"}
SCENARIOS=${SCENARIOS:-"aa reg_own"}
declare -A INJECTED=([serde_json]=format_escaped_str_contents [pulldown-cmark]='Tree<T>::create_node' [sha2]='sha2::sha512::x86_avx2::(sha_round|rounds_)')
for c in $CRATES; do
  for s in $SCENARIOS; do
    for i in $(seq "$N"); do
      dir=$WORK/interleaved/$c-$s-$i; mkdir -p "$WORK/interleaved"
      rm -rf "$dir"
      (cd "$WORK/crates/$c/wt/$s" && CARGO_TARGET_DIR=$WORK/crates/$c/target/$s "$CONTPROF_BIN" contprof check \
        --example contprof_workload --manifest-path contprof-workload/Cargo.toml --rebuild-base --base main \
        --store "$WORK/interleaved/store-$c" --report-dir "$dir" >/dev/null 2>"$dir.err") || true
      python3 - "$dir/report.json" "$c" "$s" "${INJECTED[$c]}" <<'PY'
import json, re, sys
path, crate, scen, injected = sys.argv[1:]
r = json.load(open(path))
cpu = [g for g in r["groups"] if g["metric"] == "cpu"][0]
regs = r["regressions"]
named = any(re.search(re.escape(injected) if "(" not in injected else injected, e["function"]) and e["metric"] == "cpu" for e in regs)
print(json.dumps({"crate": crate, "scenario": scen, "gated": bool(regs), "named": named,
                  "regressions": [e["function"] for e in regs], "shifted": len(r["shifted"]),
                  "comparison_sd": cpu["comparison_sd"], "between_batch_sd": cpu["between_batch_sd"],
                  "min_detectable_5pct": [d["change"] for d in cpu["min_detectable"] if d["share"] == 0.05]}))
PY
    done
  done
done
