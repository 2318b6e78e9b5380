#!/usr/bin/env bash
# h2 from crates.io, whose own code opens `tracing` spans, labelled by contprof's layer
# (tests/measure/real/h2_spans: one process serves HTTP/2 on loopback and sends itself 20,000
# requests of 16 KiB over one connection). Run by hand, never in CI (about 5 minutes):
#
#   cargo build --release -p cargo-contprof
#   tests/measure/h2_spans.sh target/release/cargo-contprof [ROUNDS]
#
# 1. What the layer costs span-heavy code: the requests' wall time with the registry alone
#    (H2_LAYER=0) and with the layer, each without an agent and under `cargo contprof run` (the
#    agent's own cost, and the layer's beside it), the order turning from round to round; medians.
# 2. What the breakdown shows: the CPU profile of one run under the agent, by h2's `peer` field
#    and by the innermost span's name (`go tool pprof -tags`), and the report page broken down by
#    `peer` (`cargo contprof report --by peer`).
set -euo pipefail

TOOL=$(realpath "$1")
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MANIFEST=$ROOT/tests/measure/real/h2_spans/Cargo.toml
WORK=${WORK:-/tmp/h2-spans}
mkdir -p "$WORK"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building (release, line tables)"
cargo build --quiet --release --manifest-path "$MANIFEST" --target-dir "$WORK/target"
BIN=$WORK/target/release/h2_spans
seconds() { sed -n 's/^h2_spans: .* in \([0-9.]*\) s .*/\1/p'; }

# Each configuration's seconds, by name; the order turns from round to round.
declare -A T
run_config() {
  case $1 in
    none) H2_LAYER=0 "$BIN" ;;
    layer) H2_LAYER=1 "$BIN" ;;
    agent_none | agent_layer)
      local layer=1
      [ "$1" = agent_none ] && layer=0
      H2_LAYER=$layer "$TOOL" contprof run --quiet --manifest-path "$MANIFEST" --bin h2_spans --top 0 --no-store \
        -o "$WORK/run-$1-$r" ;;
  esac | seconds
}
CONFIGS=(none layer agent_none agent_layer)
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2 3; do
    c=${CONFIGS[$(( (i + r) % 4 ))]}
    T[$c]="${T[$c]:-} $(run_config "$c")"
  done
  log "round $r: ${T[none]##* } / ${T[layer]##* } / ${T[agent_none]##* } / ${T[agent_layer]##* } s (registry alone / layer / agent, registry alone / agent, layer)"
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
none=$(median "${T[none]}"); layer=$(median "${T[layer]}")
agent_none=$(median "${T[agent_none]}"); agent_layer=$(median "${T[agent_layer]}")
echo
echo "## The layer's cost on h2 ($ROUNDS rounds, the order turning; medians of the requests' wall time)"
echo
echo "| configuration | seconds | vs the registry alone | the layer's part |"
echo "|---|---|---|---|"
awk -v n="$none" -v l="$layer" -v an="$agent_none" -v al="$agent_layer" 'BEGIN {
  printf "| registry alone (H2_LAYER=0) | %s | 1.000x | |\n", n
  printf "| layer, no agent | %s | %.3fx | %.3fx |\n", l, l / n, l / n
  printf "| registry alone, agent (cargo contprof run) | %s | %.3fx | |\n", an, an / n
  printf "| layer, agent | %s | %.3fx | %.3fx (vs the registry alone under the agent) |\n", al, al / n, al / an }'

log "one more run, stored, for the report page"
rm -rf "$WORK/store"
"$TOOL" contprof run --quiet --manifest-path "$MANIFEST" --bin h2_spans --top 0 --store "$WORK/store" \
  -o "$WORK/stored" >/dev/null
PROFILE=$WORK/stored/profile.pb.gz
echo
echo "## CPU by h2's \`peer\` field and by span name (one run under the agent)"
echo
echo '```text'
go tool pprof -tags -sample_index=cpu "$PROFILE" 2>/dev/null \
  | awk '/^ *(peer|span_name):/ {show=1; n=0} /^ *[a-z_]+:/ && !/^ *(peer|span_name):/ {show=0} show && n++ < 14'
echo '```'
"$TOOL" contprof report --manifest-path "$MANIFEST" --store "$WORK/store" --quiet --html "$WORK/by-peer.html" --by peer \
  "$(ls -1 "$WORK/store/runs" | tail -1)"
log "profiles in $WORK/run-* and $WORK/stored, the page broken down by peer in $WORK/by-peer.html"
