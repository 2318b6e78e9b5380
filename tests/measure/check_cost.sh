#!/usr/bin/env bash
# What `cargo contprof check` costs a CI job, cold and warm, against `cargo build --release` plus
# one run of the workload, on a workspace with a real dependency tree (> 100 crates from
# crates.io). By hand, on a quiet machine (it takes timings): about 10 minutes on 2 cores.
#
#   CONTPROF_BIN=target/release/cargo-contprof tests/measure/check_cost.sh [WORK_DIR]
#
# The workspace: one binary using regex, serde_json, rayon, flate2, clap, tokio and axum (their
# dependency tree is the "real" part; the workload, ~1 s, uses the first four), on a git
# repository whose `main` has one commit and whose `feature` branch changes one constant of the
# workload, as a pull request would. Rows printed as the table of docs/ci.md ("What the gate costs"):
#   - plain: `cargo build --release` from an empty target directory, then one run;
#   - check cold: `check` on `feature` from an empty target directory and an empty store
#     (interleaved: the merge-base is rebuilt; dependencies are compiled once for both sides);
#   - check warm: the same again (target directory kept, as a CI cache would keep it).
# Each check row gives the phases of report.json's `timings`, and the number of `Compiling` lines.
set -euo pipefail
BIN=$(realpath "${CONTPROF_BIN:?set CONTPROF_BIN to a release build of cargo-contprof}")
WORK=${1:-$(mktemp -d /tmp/contprof-check-cost.XXXXXX)}
mkdir -p "$WORK" && cd "$WORK"
rm -rf app && mkdir -p app/src && cd app

cat > Cargo.toml <<'EOF'
[package]
name = "app"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
regex = "1"
serde_json = "1"
rayon = "1"
flate2 = "1"
clap = { version = "4", features = ["derive"] }
tokio = { version = "1", features = ["full"] }
axum = "0.8"
EOF
cat > src/main.rs <<'EOF'
use std::io::Write;

use rayon::prelude::*;

const ROUNDS: usize = 24;

fn records(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::json!({"id": i, "name": format!("item-{i}"), "tags": ["a", "b", i.to_string()]})).collect()
}

fn main() {
    // Parse flags (clap) and build a runtime (tokio) so that both are linked in.
    let _ = clap::Command::new("app").get_matches();
    let _rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _ = axum::Router::<()>::new();
    let re = regex::Regex::new(r"item-(\d+)7").unwrap();
    let total: usize = (0..ROUNDS)
        .into_par_iter()
        .map(|_| {
            let text = serde_json::to_string(&records(20_000)).unwrap();
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(text.as_bytes()).unwrap();
            re.find_iter(&text).count() + z.finish().unwrap().len()
        })
        .sum();
    println!("{total}");
}
EOF
printf 'target/\n.contprof/\n' > .gitignore
git init -q -b main
git add -A && git -c user.name=m -c user.email=m@m commit -qm base
cargo generate-lockfile -q
git add Cargo.lock && git -c user.name=m -c user.email=m@m commit -qm lock
git checkout -q -b feature
sed -i 's/const ROUNDS: usize = 24;/const ROUNDS: usize = 25;/' src/main.rs
git -c user.name=m -c user.email=m@m commit -qam "one more round"

crates=$(cargo metadata --format-version 1 --locked | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["packages"]))')
echo "workspace: $crates packages in the dependency graph"

seconds() { python3 -c 'import sys,time; print(f"{time.time()-float(sys.argv[1]):.1f}")' "$1"; }

rm -rf target .contprof
t=$(date +%s.%N); cargo build --release -q; build=$(seconds "$t")
t=$(date +%s.%N); ./target/release/app >/dev/null; run=$(seconds "$t")
echo "| plain: cargo build --release + one run | ${build} s + ${run} s |"

check_row() {
  local label=$1
  local t; t=$(date +%s.%N)
  local code=0
  "$BIN" contprof check --bin app --report-dir "$WORK/report-$label" 2> "$WORK/check-$label.log" >/dev/null || code=$?
  local wall; wall=$(seconds "$t")
  local compiled; compiled=$(grep -c '^ *Compiling ' "$WORK/check-$label.log" || true)
  python3 - "$WORK/report-$label/report.json" "$label" "$wall" "$code" "$compiled" <<'PY'
import json, sys
path, label, wall, code, compiled = sys.argv[1:]
t = json.load(open(path)).get("timings", {})
phases = ", ".join(f"{p['phase']}{' ' + p['side'] if p.get('side') else ''} {p['seconds']:.1f} s" for p in t.get("phases", []))
print(f"| check {label} (exit {code}) | {wall} s wall, {t.get('total_seconds', 0):.1f} s reported: {phases}; {compiled} crates compiled |")
PY
}

rm -rf target .contprof
check_row cold
check_row warm
echo "logs and reports in $WORK"
