#!/usr/bin/env bash
# The instructions engine against a change of known size: one `core::hint::black_box(0u8)` (one or
# two instructions) added at the top of a function that holds about 1% of a real crate's
# instructions and runs 150-360 instructions per call, so about +1% of that function and nothing
# else. Run after tests/measure/real_crates.sh has set the crates up (SETUP_ONLY=1). By hand only.
#
#   CONTPROF_BIN=target/release/cargo-contprof tests/measure/instructions_one_percent.sh
#
# Per crate: a branch `ir1` with the line added, then N checks (`check --engine instructions` at
# its defaults: the merge-base rebuilt, one run a side): the injected function's change and share,
# and every other function reported. The functions were picked from a base profile by share and
# instructions per call (`go tool pprof -sample_index=calls` against `-sample_index=instructions`).
# Environment: WORK (default /work/measure), N (default 2), RESULTS (default
# $WORK/results/instructions_one_percent.jsonl).
set -euo pipefail
WORK=${WORK:-/work/measure}
: "${CONTPROF_BIN:?set CONTPROF_BIN to a release build of cargo-contprof}"
N=${N:-2}
RESULTS=${RESULTS:-$WORK/results/instructions_one_percent.jsonl}
git() { command git -c user.name=contprof-measure -c user.email=measure@localhost -c commit.gpgsign=false "$@"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$(dirname "$RESULTS")" "$WORK/instructions"
: >"$RESULTS"

# crate | file | function (as the source names it) | function (as the report names it, a regex)
TARGETS=(
  'serde_json|src/de.rs|parse_decimal|serde_json::de::Deserializer<R>::parse_decimal$'
  'pulldown-cmark|src/scanners.rs|scan_link_dest|pulldown_cmark::scanners::scan_link_dest$'
  'sha2|src/sha512/x86_avx2.rs|compress|sha2::sha512::x86_avx2::compress$'
)

for t in "${TARGETS[@]}"; do
  IFS='|' read -r c file fn name <<<"$t"
  [ -f "$WORK/crates/$c/setup.ok" ] || { log "$c is not set up: run tests/measure/real_crates.sh with SETUP_ONLY=1"; exit 2; }
  repo=$WORK/crates/$c/repo wt=$WORK/crates/$c/wt/ir1
  if [ ! -d "$wt" ]; then
    git -C "$repo" branch -f ir1 main >/dev/null
    git -C "$repo" worktree add -q "$wt" ir1
    # After the line that opens the function's body.
    python3 - "$wt/$file" "$fn" <<'PY'
import re, sys
path, fn = sys.argv[1:]
lines = open(path).read().split("\n")
start = next(i for i, l in enumerate(lines) if re.search(rf"\bfn {fn}\s*[<(]", l))
body = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("{"))
lines.insert(body + 1, "    core::hint::black_box(0u8); // contprof scenario ir1: about +1% of this function")
open(path, "w").write("\n".join(lines))
PY
    (cd "$wt" && git add -A && git commit -qm "contprof scenario ir1: one black_box at the top of $fn")
  fi
  for i in $(seq "$N"); do
    dir=$WORK/instructions/$c-ir1-$i code=0
    rm -rf "$dir" && mkdir -p "$dir"
    t0=$SECONDS
    (cd "$wt" && CARGO_TARGET_DIR=$WORK/crates/$c/target/ir1 "$CONTPROF_BIN" contprof check --engine instructions \
      --example contprof_workload --manifest-path contprof-workload/Cargo.toml \
      --store "$WORK/instructions/store-ir1-$c" --report-dir "$dir" >"$dir/stdout" 2>"$dir/stderr") || code=$?
    python3 - "$dir" "$c" "$i" "$code" "$((SECONDS - t0))" "$name" >>"$RESULTS" <<'PY'
import json, re, sys
d, crate, i, code, secs, name = sys.argv[1:]
r = json.load(open(f"{d}/report.json"))
listed = r["regressions"] + r["improvements"] + r["shifted"]
mine = [e for e in listed if re.search(name, e["function"])]
print(json.dumps({
    "crate": crate, "i": int(i), "exit": int(code), "seconds": int(secs),
    "injected": [f"{e['verdict']} {e['kind']} {e['change']:+.2%} (base share {e['base_share']:.2%}, calls {e.get('calls')})" for e in mine],
    "others": sorted(f"{e['verdict']} {e['function']} {e['kind']} {e['change']:+.2%}" for e in listed if e not in mine),
}))
PY
    log "$c #$i: exit $code: $(tail -n1 "$RESULTS" | cut -c1-400)"
  done
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| crate | function | checks naming it | its change | anything else reported |")
print("|---|---|---|---|---|")
for crate in dict.fromkeys(r["crate"] for r in rows):
    rs = [r for r in rows if r["crate"] == crate]
    named = sum(1 for r in rs if any(x.startswith("regression") for x in r["injected"]))
    change = "; ".join(sorted(set(x for r in rs for x in r["injected"])))
    others = sorted(set(o for r in rs for o in r["others"]))
    print(f"| {crate} | | {named}/{len(rs)} | {change} | {len(others)}: {', '.join(others[:6])} |")
PY
