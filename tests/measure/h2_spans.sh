#!/usr/bin/env bash
# h2 from crates.io, whose own code opens `tracing` spans, labelled by contprof's layer
# (tests/measure/real/h2_spans: one process serves HTTP/2 on loopback and sends itself 20,000
# requests of 16 KiB over one connection). Run by hand, never in CI (about 5 minutes):
#
#   cargo build --release -p cargo-contprof
#   tests/measure/h2_spans.sh target/release/cargo-contprof [ROUNDS]
#
# 1. What the layer costs span-heavy code: the requests' wall time with the registry alone
#    (H2_LAYER=0), with the layer and no agent, and with the layer under `cargo contprof run`
#    (the agent receiving the labels), in alternating rounds; medians.
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

declare -a NONE LAYER AGENT
for r in $(seq 1 "$ROUNDS"); do
  NONE+=("$(H2_LAYER=0 "$BIN" | seconds)")
  LAYER+=("$(H2_LAYER=1 "$BIN" | seconds)")
  AGENT+=("$("$TOOL" contprof run --quiet --manifest-path "$MANIFEST" --bin h2_spans --top 0 --no-store \
    -o "$WORK/run-$r" | seconds)")
  log "round $r: registry alone ${NONE[-1]} s, layer ${LAYER[-1]} s, layer and agent ${AGENT[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
none=$(median "${NONE[@]}"); layer=$(median "${LAYER[@]}"); agent=$(median "${AGENT[@]}")
echo
echo "## The layer's cost on h2 ($ROUNDS alternating rounds, medians of the requests' wall time)"
echo
echo "| configuration | seconds | vs the registry alone |"
echo "|---|---|---|"
echo "| registry alone (H2_LAYER=0) | $none | 1.000x |"
awk -v n="$none" -v l="$layer" -v a="$agent" 'BEGIN {
  printf "| layer, no agent | %s | %.3fx |\n", l, l / n
  printf "| layer, agent (cargo contprof run) | %s | %.3fx |\n", a, a / n }'

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
