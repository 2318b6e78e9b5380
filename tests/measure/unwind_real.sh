#!/usr/bin/env bash
# Stacks through C code without frame pointers on a real crate, and what walking the unwind
# tables costs. By hand only.
#
#   CONTPROF_BIN=target/release/cargo-contprof tests/measure/unwind_real.sh
#
# Two crates from crates.io, each with its own example as the workload:
# - flate2 with its `zlib` backend, which links the system's libz.so (C built without frame
#   pointers): `compress_file` gzips 32 MB of C sources;
# - zstd, whose C library the `cc` crate compiles into the binary (cc passes
#   -Cforce-frame-pointers on to the C code, so frame pointers reach it there too): `benchmark`
#   compresses and decompresses the same data at levels 1-6.
# For each `--unwind` mode, the share of the CPU whose stack reaches the example's `main` (and, for
# zstd, the shares under `encode_all` and `decode_all`, the Rust callers of the C code) and the
# share of truncated stacks. Then tests/measure/unwind_cost.py on zstd's example built with and
# without frame pointers.
# Environment: WORK (default /work/measure), ROUNDS (default 5).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/work/measure}/unwind
: "${CONTPROF_BIN:?set CONTPROF_BIN to a release build of cargo-contprof}"
ROUNDS=${ROUNDS:-5}
mkdir -p "$WORK"
crate=$WORK/zstd
[ -d "$crate" ] || "$HERE/../../../shared/tools/real-crate" zstd@0.13.3 "$crate" >/dev/null
# The data: the C sources of zstd itself (from the registry, once the crate is built), cut and
# repeated into eight files of 4 MB.
(cd "$crate" && cargo build -q --release --example benchmark)
data=$WORK/data
if [ ! -f "$data/part-8" ]; then
  mkdir -p "$data"
  find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*zstd-sys-*/zstd/lib/*' -name '*.c' -print0 | sort -z |
    python3 -c '
import sys
blob = b"".join(open(p, "rb").read() for p in sys.stdin.buffer.read().split(b"\0") if p)
step = len(blob) // 8
for i in range(8):
    part = blob[i * step:] + blob[:i * step]
    open(f"'"$data"'/part-{i + 1}", "wb").write((part * (4_000_000 // len(part) + 1))[:4_000_000])
'
fi
cat "$data"/part-* >"$WORK/data.all"
args=(-- "$data" -b 1 -e 7)

# flate2 with the system's zlib.
flate=$WORK/flate2
[ -d "$flate" ] || "$HERE/../../../shared/tools/real-crate" flate2@1.1.2 "$flate" >/dev/null
echo "| flate2 (system zlib), --unwind | CPU under compress_file::main | [truncated stack] |"
echo "|---|---|---|"
for walk in tables frame-pointers; do
  out=$WORK/flate2-$walk
  rm -rf "$out"
  (cd "$flate" && CARGO_TARGET_DIR=$WORK/flate2-target-$walk "$CONTPROF_BIN" contprof run --example compress_file \
    --no-default-features --features zlib --unwind "$walk" --frequency 999 --no-store -o "$out" --top 0 \
    -- "$WORK/data.all" "$WORK/out.gz" >/dev/null 2>"$out.stderr") || { cat "$out.stderr" >&2; exit 1; }
  go tool pprof -top -nodecount=100000 -nodefraction=0 "$out/profile.pb.gz" 2>/dev/null |
    awk -v walk="$walk" '$NF == "compress_file::main" { main = $5 } $NF == "stack]" { cut = $5 }
      END { printf "| %s | %s | %s |\n", walk, main ? main : "0%", cut ? cut : "0%" }'
done
echo
echo "| zstd, --unwind | CPU under benchmark::main | under encode_all | under decode_all | [truncated stack] |"
echo "|---|---|---|---|---|"
for walk in tables frame-pointers; do
  out=$WORK/run-$walk
  rm -rf "$out"
  (cd "$crate" && CARGO_TARGET_DIR=$WORK/target-$walk "$CONTPROF_BIN" contprof run --example benchmark \
    --unwind "$walk" --frequency 999 --no-store -o "$out" --top 0 "${args[@]}" >/dev/null 2>"$out.stderr") ||
    { cat "$out.stderr" >&2; exit 1; }
  go tool pprof -top -nodecount=100000 -nodefraction=0 "$out/profile.pb.gz" 2>/dev/null >"$out.top"
  python3 - "$walk" "$out.top" <<'PY'
import sys
walk, top = sys.argv[1:]
cum, total = {}, None
for line in open(top):
    c = line.split()
    if "total" in line and "Showing nodes" in line:
        continue
    if len(c) >= 6 and c[1].endswith("%") and c[4].endswith("%"):
        cum[" ".join(c[5:]).removesuffix(" (inline)")] = float(c[4][:-1])
def share(name):
    return max((v for k, v in cum.items() if k == name or k.startswith(name + "<")), default=0.0)
print(f"| {walk} | {share('benchmark::main'):.1f}% | {share('zstd::stream::functions::encode_all'):.1f}% | "
      f"{share('zstd::stream::functions::decode_all'):.1f}% | {cum.get('[truncated stack]', 0.0):.1f}% |")
PY
done

# The cost: the example built with and without frame pointers, run with and without the agent.
for fp in yes no; do
  (cd "$crate" && RUSTFLAGS="-Cforce-frame-pointers=$fp" CARGO_TARGET_DIR=$WORK/plain-$fp \
    cargo build -q --release --example benchmark)
done
agent=$(ls "$WORK"/target-tables/contprof/agent/libcontprof_preload*.so | head -1)
python3 "$HERE/unwind_cost.py" "$agent" "$WORK/plain-yes/release/examples/benchmark" \
  "$WORK/plain-no/release/examples/benchmark" "$ROUNDS" "${args[@]}"
