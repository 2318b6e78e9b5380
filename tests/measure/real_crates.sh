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
#   tests/measure/real_crates.sh                      # the full measurement: 159 batches, ~8 s each
#                                                     # with its comparisons, ~21 min + ~5 min setup
#                                                     # and builds on the 2-core VM
#   PAIRS=2 tests/measure/real_crates.sh              # a quick check (2 comparisons per scenario)
#   CRATES="sha2" CONTPROF_BIN=path/to/cargo-contprof tests/measure/real_crates.sh
#
# LAYOUT_CALLER=cold: serde_json's layout filler is called from a cold function (Error::syntax)
# instead of the workload's main (see edit_layout).
# Environment: WORK (default /work/measure: crates, worktrees, target dirs, stores, results),
# CONTPROF_BIN (default: built once with `cargo build --release` into $WORK/tool-target),
# CRATES (default "serde_json pulldown-cmark sha2"; also crossbeam-channel, whose batches record
# lock waits and wall time too: EXTRA_FLAGS), PAIRS (comparisons per scenario; default 12
# for aa and layout, 8 for reg_own and reg_dep), NEIGHBOUR_EVERY (default 2: the aa batch of every
# 2nd round runs next to the neighbour process), CREATE_NODE_SPIN (default 8: the size of the
# pulldown-cmark reg_own loop), SETUP_ONLY=1 (set up, build, print the base
# profiles' shares of the injected functions, stop). Needs git, cargo, python3 (3.11+, tomllib), cc,
# objcopy (binutils: the A/A binaries are checked to be identical), and crates.io.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REAL_CRATE=${REAL_CRATE:-/work/shared/tools/real-crate}
WORK=${WORK:-/work/measure}
CRATES=${CRATES:-"serde_json pulldown-cmark sha2"}
PAIRS_AA=${PAIRS_AA:-${PAIRS:-12}}
PAIRS_LAYOUT=${PAIRS_LAYOUT:-${PAIRS:-12}}
PAIRS_REG=${PAIRS_REG:-${PAIRS:-8}}
NEIGHBOUR_EVERY=${NEIGHBOUR_EVERY:-2}
# 6 was calibrated once from a base/reg_own profile pair, but at check's defaults create_node's
# measured self change came out at +12..21%; 8 measured +27..38%, 10 +39..44%.
CREATE_NODE_SPIN=${CREATE_NODE_SPIN:-8}
# The size of crossbeam-channel's reg_own: one send in this many sleeps 20 µs holding the
# rendezvous channel's lock.
HOLD_SLEEP_EVERY=${HOLD_SLEEP_EVERY:-16}
SCENARIOS=(aa layout reg_own reg_dep)
# Exactly what `check` records at its defaults (cargo-contprof/src/check/mod.rs DEFAULT_RUNS,
# args.rs CheckArgs: runner::CHECK_FREQUENCY, AllocArg::Sampled, 512K).
RECORD_FLAGS=(--runs 10 --frequency 9999 --alloc sampled --alloc-interval 512K)

declare -A VERSION=([serde_json]=1.0.154 [pulldown-cmark]=0.13.6 [sha2]=0.11.1 [crossbeam-channel]=0.5.15)
# The dependency vendored into vendor/NAME for reg_dep (its version is the one Cargo.lock resolves).
declare -A VENDORED=([serde_json]=zmij [pulldown-cmark]=pulldown-cmark-escape [sha2]=block-buffer
  [crossbeam-channel]=crossbeam-utils)
# Recorded on top of RECORD_FLAGS: crossbeam-channel's workload is about waiting, so its batches
# also record lock waits and wall time, and its comparisons test those metrics too.
declare -A EXTRA_FLAGS=([crossbeam-channel]="--contention --wall")

# shellcheck source=real/common.sh
source "$HERE/real/common.sh"

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

# ---------------------------------------------------------------------------------------------
# Step 2: a crate as a git repo, its workload, the vendored dependency (the base commit, `main`).
# The workload is a sibling workspace crate, contprof-workload/ with examples/contprof_workload.rs
# (so the crate's own dev-dependencies are never built); the profiled code is the crate's code
# built from the repo through a path dependency.
setup_base() {
  local c=$1 dir=$2 dep=${VENDORED[$1]}
  "$REAL_CRATE" "$c@${VERSION[$c]}" "$dir/repo" >/dev/null
  cd "$dir/repo"
  mkdir -p contprof-workload/examples contprof-workload/src
  echo "//! The contprof workload: see examples/contprof_workload.rs." >contprof-workload/src/lib.rs
  cp "$HERE/real/$c.rs" contprof-workload/examples/contprof_workload.rs
  cat >contprof-workload/Cargo.toml <<TOML
[package]
name = "contprof-workload"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$c = { path = ".." }
TOML
  replace Cargo.toml $'\n[workspace]\n' $'\n[workspace]\nmembers = ["contprof-workload"]\nexclude = ["vendor"]\n'
  cargo metadata -q --format-version 1 >/dev/null   # writes or extends Cargo.lock (committed: one resolution for all)
  git add -A && git commit -qm "contprof workload (examples/contprof_workload.rs in contprof-workload/)"

  # Vendor the dependency at the version the lock file resolves, hooked in with [patch.crates-io].
  local ver
  ver=$(python3 -c 'import sys, tomllib; print(next(p["version"] for p in tomllib.load(open("Cargo.lock", "rb"))["package"] if p["name"] == sys.argv[1]))' "$dep")
  cargo fetch -q
  local src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$dep-$ver" | head -1)
  [ -d "$src" ] || die "$dep-$ver not in the cargo registry cache"
  mkdir -p vendor && cp -r "$src" "vendor/$dep" && rm -f "vendor/$dep/.cargo-checksum.json" "vendor/$dep/.cargo_vcs_info.json" "vendor/$dep/.cargo-ok"
  printf '\n[patch.crates-io]\n%s = { path = "vendor/%s" }\n' "$dep" "$dep" >>Cargo.toml
  cargo metadata -q --format-version 1 >/dev/null   # rewrites the lock entry: no registry source
  python3 -c 'import sys, tomllib; sys.exit(any(p["name"] == sys.argv[1] and "source" not in p for p in tomllib.load(open("Cargo.lock", "rb"))["package"]) is False)' "$dep" \
    || die "the [patch.crates-io] of $dep is not used (Cargo.lock)"
  git add -A && git commit -qm "vendor $dep $ver (for patching)"
}

# ---------------------------------------------------------------------------------------------
# Step 3: the scenarios, one branch each off `main`. Each edit_<scenario> CRATE runs in the repo.
# The injected functions, their call paths and the designed sizes: real/scenarios.sh.
# shellcheck source=real/scenarios.sh
source "$HERE/real/scenarios.sh"
declare -A AA_IDENTICAL RUN_LOAD

# The unrelated function of `layout` (Rust, no_std-safe).
LAYOUT_FN='
/// contprof layout scenario: an unrelated function, linked in but never called.
#[inline(never)]
#[doc(hidden)]
pub fn contprof_layout_filler(n: u64) -> u64 {
    let mut x = n ^ 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < n {
        x = x.rotate_left(13).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i;
        i += 1;
    }
    x
}
'
# Prepended to an injected function body: true on every 4th call of it. The recursive redo itself
# takes one count, hence % 5: 4 real calls and one redo per 5 counts. A plain load and store, not a
# locked read-modify-write (~20 cycles, which would be a regression of its own in a short function);
# used only in single-threaded workloads.
EVERY_4TH='static CONTPROF_CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let contprof_calls = CONTPROF_CALLS.load(core::sync::atomic::Ordering::Relaxed);
    CONTPROF_CALLS.store(contprof_calls + 1, core::sync::atomic::Ordering::Relaxed);
    let contprof_redo = contprof_calls % 5 == 4;'

edit_aa() {  # a comment at the end of the file with the hot code: no line moves, same machine code
  local f
  case $1 in
    serde_json) f=src/ser.rs ;;
    pulldown-cmark) f=src/firstpass.rs ;;
    sha2) f=src/sha512/x86_avx2.rs ;;
    crossbeam-channel) f=src/flavors/zero.rs ;;
  esac
  printf '\n// contprof A/A scenario: a comment-only change.\n' >>"$f"
}

edit_layout() {
  # The filler goes early in the crate's code; it is called only from the workload's `main`,
  # under a condition that is never true, so that no hot function's code changes (a call from
  # inside the crate, say from `from_str`, changes inlining in its callers: not layout-only).
  local path
  case $1 in
    serde_json)  # early in de.rs (before the whole deserializer)
      replace src/de.rs $'\nuse crate::lexical;\n' $'\nuse crate::lexical;\n'"$LAYOUT_FN"
      if [ "${LAYOUT_CALLER:-main}" = cold ]; then
        # Called from a cold function instead (Error::syntax, reached only on malformed input):
        # the workload's main calls Map::insert directly, so a branch added to main makes main a
        # changed direct caller of it.
        replace src/error.rs $'    pub(crate) fn syntax(code: ErrorCode, line: usize, column: usize) -> Self {\n' \
          $'    pub(crate) fn syntax(code: ErrorCode, line: usize, column: usize) -> Self {\n        #[cfg(feature = "std")]\n        if std::env::var_os("CONTPROF_LAYOUT_NEVER_SET").is_some() {\n            core::hint::black_box(crate::de::contprof_layout_filler(1 << 20));\n        }\n'
        return
      fi
      path=serde_json::de::contprof_layout_filler ;;
    pulldown-cmark)  # early in firstpass.rs
      replace src/firstpass.rs $'\nuse std::ops::Range;\n' $'\nuse std::ops::Range;\n'"$LAYOUT_FN"
      replace src/lib.rs $'\nmod firstpass;\n' $'\nmod firstpass;\n#[doc(hidden)]\npub use firstpass::contprof_layout_filler;\n'
      path=pulldown_cmark::contprof_layout_filler ;;
    sha2)  # early in block_api.rs
      replace src/block_api.rs $'\npub use crate::{sha256::compress256, sha512::compress512};\n' \
        $'\npub use crate::{sha256::compress256, sha512::compress512};\n'"$LAYOUT_FN"
      path=sha2::block_api::contprof_layout_filler ;;
    crossbeam-channel)  # early in flavors/zero.rs (the rendezvous channel the workload uses)
      replace src/flavors/zero.rs $'\nuse crossbeam_utils::Backoff;\n' $'\nuse crossbeam_utils::Backoff;\n'"$LAYOUT_FN"
      replace src/lib.rs $'#[cfg(feature = "std")]\nmod flavors;\n' $'#[cfg(feature = "std")]\nmod flavors;\n#[cfg(feature = "std")]\n#[doc(hidden)]\npub use flavors::zero::contprof_layout_filler;\n'
      path=crossbeam_channel::contprof_layout_filler ;;
  esac
  replace contprof-workload/examples/contprof_workload.rs $'\nfn main() {\n' \
    $'\nfn main() {\n    if std::env::var_os("CONTPROF_LAYOUT_NEVER_SET").is_some() {\n        std::hint::black_box('"$path"$'(1 << 20));\n    }\n'
}

edit_reg_own() {
  case $1 in
    serde_json)  # redo the escaping into io::sink() on every 4th call
      replace src/ser.rs $'    F: ?Sized + Formatter,\n{\n    let mut bytes = value.as_bytes();\n' \
        $'    F: ?Sized + Formatter,\n{\n    '"$EVERY_4TH"$'\n    if contprof_redo {\n        let _ = core::hint::black_box(format_escaped_str_contents(&mut std::io::sink(), formatter, core::hint::black_box(value)));\n    }\n    let mut bytes = value.as_bytes();\n' ;;
    pulldown-cmark)  # an arithmetic loop on every 4th call (the body mutates the tree: cannot be redone)
      replace src/tree.rs $'    pub(crate) fn create_node(&mut self, item: T) -> TreeIndex {\n' \
        $'    pub(crate) fn create_node(&mut self, item: T) -> TreeIndex {\n    '"$EVERY_4TH"$'\n        if contprof_redo {\n            let mut x = core::hint::black_box(self.nodes.len() as u64);\n            for _ in 0..'"$CREATE_NODE_SPIN"$' {\n                x = core::hint::black_box(x.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(1));\n            }\n        }\n' ;;
    crossbeam-channel)  # the rendezvous channel's send holds its mutex through a short sleep (as if
      # it did I/O under the lock) on every HOLD_SLEEP_EVERY-th call
      replace src/flavors/zero.rs $'    ) -> Result<(), SendTimeoutError<T>> {\n        let token = &mut Token::default();\n        let mut inner = self.inner.lock().unwrap();\n' \
        $'    ) -> Result<(), SendTimeoutError<T>> {\n        let token = &mut Token::default();\n        let mut inner = self.inner.lock().unwrap();\n        static CONTPROF_SENDS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);\n        if CONTPROF_SENDS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) % '"$HOLD_SLEEP_EVERY"$' == 0 {\n            std::thread::sleep(std::time::Duration::from_micros(20));\n        }\n' ;;
    sha2)  # two thirds of an extra big-Sigma1 of the state, kept alive with black_box (about a
      # quarter of a round's work; a per-call counter would cost more than the round itself)
      replace src/sha512/x86_avx2.rs $'    rotate_state!(s);\n}\n' $'    rotate_state!(s);\n    core::hint::black_box(s[0].rotate_right(14) ^ s[0].rotate_right(18));\n}\n' ;;
  esac
}

edit_reg_dep() {
  local d=vendor/${VENDORED[$1]}
  case $1 in
    serde_json)  # zmij::write: redo into a scratch buffer on every 4th call
      replace "$d/src/lib.rs" $'    Float: FloatTraits,\n{\n    let bits = value.to_bits();\n' \
        $'    Float: FloatTraits,\n{\n    '"$EVERY_4TH"$'\n    if contprof_redo {\n        let mut scratch = [0u8; 64];\n        core::hint::black_box(unsafe { write(core::hint::black_box(value), scratch.as_mut_ptr()) });\n    }\n    let bits = value.to_bits();\n' ;;
    pulldown-cmark)  # escape_html_scalar: redo into a writer that discards, on every 4th call
      replace "$d/src/lib.rs" $'    table: &\'static [u8; 256],\n) -> Result<(), W::Error> {\n    let bytes = s.as_bytes();\n' \
        $'    table: &\'static [u8; 256],\n) -> Result<(), W::Error> {\n    '"$EVERY_4TH"$'\n    if contprof_redo {\n        let _ = core::hint::black_box(escape_html_scalar(ContprofDiscard, core::hint::black_box(s), table));\n    }\n    let bytes = s.as_bytes();\n'
      cat >>"$d/src/lib.rs" <<'RS'

/// contprof reg_dep scenario: a writer that keeps nothing (for redoing the escaping).
struct ContprofDiscard;
impl StrWrite for ContprofDiscard {
    type Error = core::convert::Infallible;
    fn write_str(&mut self, s: &str) -> Result<(), Self::Error> {
        core::hint::black_box(s.len());
        Ok(())
    }
    fn write_fmt(&mut self, _: core::fmt::Arguments) -> Result<(), Self::Error> {
        Ok(())
    }
}
RS
      ;;
    sha2)  # BlockBuffer::digest_blocks: on calls whose input length is 3 mod 4, redo on a clone with a no-op compression
      replace "$d/src/lib.rs" $'    pub fn digest_blocks(&mut self, mut input: &[u8], mut compress: impl FnMut(&[Array<u8, BS>])) {\n' \
        $'    pub fn digest_blocks(&mut self, mut input: &[u8], mut compress: impl FnMut(&[Array<u8, BS>])) {\n        if core::mem::size_of_val(&compress) != 0 && input.len() % 4 == 3 {\n            let mut twin = self.clone();\n            twin.digest_blocks(core::hint::black_box(input), contprof_no_compress::<BS>());\n            core::hint::black_box(&twin);\n        }\n'
      cat >>"$d/src/lib.rs" <<'RS'

/// contprof reg_dep scenario: a compression that does nothing (a zero-sized closure, which also
/// stops the redo from redoing itself).
fn contprof_no_compress<BS: ArraySize>() -> impl FnMut(&[Array<u8, BS>]) {
    |blocks| {
        core::hint::black_box(blocks.len());
    }
}
RS
      ;;
    crossbeam-channel)  # Backoff::snooze also spins before it yields: 2^step spin-loop hints
      # ahead of each sched_yield of its yielding steps (crossbeam-channel snoozes while it waits
      # for a packet or before it parks)
      replace "$d/src/backoff.rs" $'            #[cfg(feature = "std")]\n            ::std::thread::yield_now();\n' \
        $'            #[cfg(feature = "std")]\n            for _ in 0..1 << self.step.get() {\n                hint::spin_loop();\n            }\n            #[cfg(feature = "std")]\n            ::std::thread::yield_now();\n' ;;
  esac
}

# The scenario branches and one worktree + target dir per scenario (switching never rebuilds).
# Reused when present and made by this same script and workload; else made anew.
setup_crate() {
  local c=$1 dir=$WORK/crates/$1 stamp
  # What the crate's repo is made of: its version, workload and the edits (not the rest of this script).
  stamp=$( (echo "${VERSION[$c]} ${VENDORED[$c]} $CREATE_NODE_SPIN $HOLD_SLEEP_EVERY ${LAYOUT_CALLER:-main}$LAYOUT_FN$EVERY_4TH"; cat "$HERE/real/$c.rs"
    declare -f setup_base edit_aa edit_layout edit_reg_own edit_reg_dep) | sha256sum | cut -c1-16)
  if [ "$(cat "$dir/setup.ok" 2>/dev/null)" = "$stamp" ]; then
    log "$c: reusing $dir"
    return
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  log "$c: setting up $c@${VERSION[$c]} in $dir/repo"
  (setup_base "$c" "$dir")
  local s
  for s in "${SCENARIOS[@]}"; do
    (
      cd "$dir/repo"
      git checkout -q -b "$s" main
      "edit_$s" "$c"
      git commit -qam "contprof scenario $s"
      git checkout -q main
    )
    git -C "$dir/repo" worktree add -q "$dir/wt/$s" "$s"
  done
  echo "$stamp" >"$dir/setup.ok"
}

worktree() { if [ "$2" = base ]; then echo "$WORK/crates/$1/repo"; else echo "$WORK/crates/$1/wt/$2"; fi; }

# contprof CRATE SIDE ARGS...: the tool on a side's worktree, with that side's target dir.
contprof() {
  local c=$1 side=$2 subcommand=$3
  shift 3
  CARGO_TARGET_DIR=$WORK/crates/$c/target/$side "$CONTPROF_BIN" contprof "$subcommand" --example contprof_workload \
    --manifest-path "$(worktree "$c" "$side")/contprof-workload/Cargo.toml" "$@"
}

# Build every side once (and check that it runs); print the base profile's shares of the injected
# functions (3 runs at 999 Hz, as used to choose them).
build_crate() {
  local c=$1 s logs=$WORK/logs/$1
  mkdir -p "$logs"
  for s in base "${SCENARIOS[@]}"; do
    local t0=$SECONDS
    contprof "$c" "$s" run --runs 1 --no-store --quiet >"$logs/build-$s.out" 2>"$logs/build-$s.err" \
      || { cat "$logs/build-$s.err" >&2; die "$c/$s does not build or run (see $logs/build-$s.err)"; }
    log "$c: built and ran $s ($((SECONDS - t0)) s)"
  done
  # The A/A premise: base and aa build to the same machine code (and the same read-only data).
  local sec same=yes exe=contprof/examples/contprof_workload
  for sec in .text .rodata; do
    cmp -s <(objcopy -O binary --only-section=$sec "$WORK/crates/$c/target/base/$exe" /dev/stdout) \
      <(objcopy -O binary --only-section=$sec "$WORK/crates/$c/target/aa/$exe" /dev/stdout) || same=no
  done
  AA_IDENTICAL[$c]=$same
  log "$c: base and aa binaries have identical .text and .rodata: $same"
  contprof "$c" base run --runs 3 --frequency 999 --no-store --top 400 >"$logs/base-profile.txt" 2>"$logs/base-profile.err" \
    || die "$c: base profile failed (see $logs/base-profile.err)"
  log "$c: base profile (3 runs, 999 Hz): $(grep -hm1 'CPU in' "$logs/base-profile.txt" "$logs/base-profile.err")"
  for s in reg_own reg_dep; do
    log "$c/$s injects into ${INJECTED[$c/$s]}: ${EXPECTED[$c/$s]}"
    log "  base share (self%, total%): $(grep -hE "  (${INJECTED[$c/$s]})" "$logs/base-profile.txt" "$logs/base-profile.err" | awk '{printf "%s %s; ", $1, $2}')"
  done
}

# ---------------------------------------------------------------------------------------------
# Step 4: record one batch (what `check` records at its defaults) and print its run id.
NEIGHBOUR_PID=
neighbour_start() {
  [ -x "$WORK/bin/neighbour" ] || {
    mkdir -p "$WORK/bin"
    # Streams over two 256 MiB buffers forever: memory bandwidth and last-level cache pressure.
    printf '%s\n' '#include <stdlib.h>' '#include <string.h>' \
      'int main(void) { size_t n = (size_t)256 << 20; char *a = malloc(n), *b = malloc(n);' \
      '  memset(a, 1, n); memset(b, 2, n); for (;;) { memcpy(b, a, n); memcpy(a, b, n); } }' >"$WORK/bin/neighbour.c"
    cc -O2 -o "$WORK/bin/neighbour" "$WORK/bin/neighbour.c"
  }
  "$WORK/bin/neighbour" &
  NEIGHBOUR_PID=$!
  sleep 1
}
neighbour_stop() {
  if [ -n "$NEIGHBOUR_PID" ]; then
    kill "$NEIGHBOUR_PID" 2>/dev/null || true
    wait "$NEIGHBOUR_PID" 2>/dev/null || true
    NEIGHBOUR_PID=
  fi
}
trap neighbour_stop EXIT

BATCHES=0
# record CRATE SIDE LABEL: sets RUN_ID. `run` prints "Stored run <ID> under commit ... in ..." on
# stderr (a cargo-style status line, Shell::status; --quiet would suppress it; the top table goes
# to stdout); both are searched.
record() {
  local c=$1 side=$2 label=$3 logs=$WORK/logs/$1 t0=$SECONDS id
  # shellcheck disable=SC2086 # EXTRA_FLAGS holds several flags
  contprof "$c" "$side" run "${RECORD_FLAGS[@]}" ${EXTRA_FLAGS[$c]:-} --store "$WORK/crates/$c/store" \
    --tag measure=real_crates --tag "scenario=$side" >"$logs/$label.out" 2>"$logs/$label.err" \
    || { cat "$logs/$label.err" >&2; die "$c: recording $label failed"; }
  id=$(grep -hoE 'Stored run [^ ]+ under commit' "$logs/$label.err" "$logs/$label.out" | awk '{print $3}' | tail -1)
  [ -n "$id" ] || die "$c: no 'Stored run' line for $label (see $logs/$label.err)"
  BATCHES=$((BATCHES + 1))
  RUN_LOAD[$id]=$(cut -d' ' -f1 /proc/loadavg)
  log "$c: batch $label ($side${NEIGHBOUR_PID:+, neighbour running}): run $id, $((SECONDS - t0)) s, load ${RUN_LOAD[$id]}"
  RUN_ID=$id
}

# ---------------------------------------------------------------------------------------------
# Step 5: compare two batches and append one JSON line to $RESULTS.
# compare_pair CRATE SCENARIO ROUND BASE_ID HEAD_ID NEIGHBOUR(0|1) GAP_BATCHES
compare_pair() {
  local c=$1 s=$2 round=$3 base=$4 head=$5 nb=$6 gap=$7 rc=0
  local out=$WORK/reports/$c/$s-$round.json err=$WORK/reports/$c/$s-$round.err
  mkdir -p "$WORK/reports/$c"
  [ "$base" != "$head" ] || die "refusing to compare batch $base with itself"
  "$CONTPROF_BIN" contprof compare "$base" "$head" --format json --output "$out" \
    --manifest-path "$WORK/crates/$c/repo/contprof-workload/Cargo.toml" --store "$WORK/crates/$c/store" \
    >/dev/null 2>"$err" || rc=$?
  if [ "$rc" -ge 2 ]; then
    cat "$err" >&2
    die "$c/$s round $round: compare exited $rc"
  fi
  python3 - "$out" "$c" "$s" "$round" "$base" "$head" "$nb" "$gap" "$rc" \
    "${INJECTED[$c/$s]:-}" "${PATHS[$c/$s]:-}" "${RUN_LOAD[$base]:-}" "${RUN_LOAD[$head]:-}" \
    "${METRICS[$c/$s]:-^cpu\$}" >>"$RESULTS" <<'PY'
import json, re, sys
out, crate, scen, rnd, base, head, nb, gap, rc, injected, paths, load_base, load_head, metrics = sys.argv[1:]
# The metrics in which the injected change is expected (a regex; CPU unless scenarios.sh says).
metric_ok = lambda m: re.search(metrics, m) is not None
r = json.load(open(out))
regs = r.get("regressions", [])
shifted = r.get("shifted")
on_path = re.compile(paths) if paths else None
row = {
    "crate": crate, "scenario": scen, "round": int(rnd), "base_run": base, "head_run": head,
    "neighbour": nb == "1", "gap_batches": int(gap), "load_base": load_base, "load_head": load_head,
    "exit": int(rc), "json_version": r.get("version"), "verdict": r.get("summary", {}).get("verdict"),
    "regressions": [{k: e.get(k) for k in ("group", "function", "metric", "kind", "change", "q", "explained")} for e in regs],
    "shifted": [{k: e.get(k) for k in ("function", "metric", "kind", "change", "q")} for e in (shifted or [])],
    "shifted_len": None if shifted is None else len(shifted),
    "warnings": [w.get("kind") for w in r.get("warnings", [])],
}
# The tool's own noise figures for CPU (newer tools): between-batch drift, min detectable change.
for g in r.get("groups") or []:
    if g.get("metric") == "cpu":
        row["cpu_noise"] = {k: g.get(k) for k in ("samples_per_run", "overdispersion", "between_batch_sd", "drift_source", "min_detectable")}
if injected:
    import re
    hits = [e for e in regs if re.search(injected, e["function"]) and metric_ok(e["metric"])]
    row["injected_named"] = bool(hits)
    row["injected_change"] = {f'{e["metric"]}/{e["kind"]}': e["change"] for e in hits}
    row["injected_in_shifted"] = any(re.search(injected, e["function"]) and metric_ok(e["metric"]) for e in shifted or [])
    # Whatever the verdict, the injected function's measured change (cpu self, total) in any list.
    for lst in ("regressions", "shifted", "possible", "improvements", "inherited"):
        for e in r.get(lst) or []:
            if re.search(injected, e["function"]) and metric_ok(e["metric"]):
                row.setdefault(f'injected_{e["kind"]}_change', e["change"])
    row["others"] = sorted({e["function"] for e in regs if not on_path.search(e["function"])})
print(json.dumps(row))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
names = ", ".join(f'{e["function"]} {e["metric"]}/{e["kind"]} {e["change"]:+.1%}' for e in r["regressions"][:4])
more = f' (+{len(r["regressions"]) - 4} more)' if len(r["regressions"]) > 4 else ""
print(f'    compare {r["crate"]}/{r["scenario"]} #{r["round"]}{" [neighbour]" if r["neighbour"] else ""}: exit {r["exit"]}, '
      f'{len(r["regressions"])} regressions{": " + names + more if names else ""}'
      + ("" if r["shifted_len"] is None else f', shifted {r["shifted_len"]}'))
PY
}

# ---------------------------------------------------------------------------------------------
# Step 6: the table.
tally() {
  python3 - "$RESULTS" "$PAIRS_AA" "$PAIRS_LAYOUT" "$PAIRS_REG" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| crate | scenario | comparisons | flagged anything / injected named | other functions in regressions | shifted (mean count) |")
print("|---|---|---|---|---|---|")
order = {"aa": 0, "layout": 1, "reg_own": 2, "reg_dep": 3}
for key in sorted({(r["crate"], r["scenario"]) for r in rows}, key=lambda k: (k[0], order[k[1]])):
    rs = [r for r in rows if (r["crate"], r["scenario"]) == key]
    n = len(rs)
    sh = [r["shifted_len"] for r in rs if r["shifted_len"] is not None]
    shifted = f"{sum(sh) / len(sh):.1f}" if sh else "n/a (no `shifted` in this tool)"
    if key[1] in ("aa", "layout"):
        flagged = sum(bool(r["regressions"]) for r in rs)
        label = f"flagged {flagged}/{n} ({flagged / n:.0%})"
        if key[1] == "aa":
            nb = [r for r in rs if r["neighbour"]]
            label += f"; with neighbour {sum(bool(r['regressions']) for r in nb)}/{len(nb)}"
        other = "-"
    else:
        named = sum(r["injected_named"] for r in rs)
        label = f"named {named}/{n} ({named / n:.0%})"
        sh_named = sum(r.get("injected_in_shifted", False) for r in rs)
        if sh_named:
            label += f"; in shifted {sh_named}/{n}"
        for kind in ("self", "total"):
            ch = [r[f"injected_{kind}_change"] for r in rs if f"injected_{kind}_change" in r]
            if ch:
                label += f"; measured {kind} {sum(ch) / len(ch):+.0%} ({len(ch)})"
        o = sum(bool(r["others"]) for r in rs)
        other = f"{o}/{n} ({o / n:.0%})"
    print(f"| {key[0]} | {key[1]} | {n} | {label} | {other} | {shifted} |")
noise = [(k, [r["cpu_noise"] for r in rows if (r["crate"], r["scenario"]) == k and "cpu_noise" in r])
         for k in sorted({(r["crate"], r["scenario"]) for r in rows}, key=lambda k: (k[0], order[k[1]]))]
if any(v for _, v in noise):
    med = lambda xs: sorted(xs)[len(xs) // 2] if xs else float("nan")
    print("\nThe tool's CPU noise figures (median over comparisons): between-batch SD (log scale), and the")
    print("smallest change it could detect in a function holding 5% / 20% of CPU:")
    for (c, s), v in noise:
        if v:
            md = lambda share: med([m["change"] for n in v for m in n.get("min_detectable") or [] if m.get("share") == share])
            print(f"  {c}/{s}: between_batch_sd {med([n['between_batch_sd'] or 0 for n in v]):.3f}, "
                  f"min detectable {md(0.05):+.0%} / {md(0.2):+.0%}, samples per run {med([n['samples_per_run'] or 0 for n in v]):.0f}")
others = sorted({(r["crate"], r["scenario"], f) for r in rows for f in r.get("others", [])})
if others:
    print("\nFunctions off the injected call paths that were listed as regressions:")
    for c, s, f in others:
        print(f"  {c}/{s}: {f}")
flagged = [(r["crate"], r["scenario"], r["round"], e["function"], e["metric"], e["kind"], e["change"])
           for r in rows if r["scenario"] in ("aa", "layout") for e in r["regressions"]]
if flagged:
    print("\nRegressions listed in A/A and layout comparisons:")
    for c, s, n, f, m, k, ch in flagged:
        print(f"  {c}/{s} #{n}: {f} {m}/{k} {ch:+.1%}")
PY
}

# ---------------------------------------------------------------------------------------------
# Step 7: per crate, rounds of: base batch, then one batch of each scenario still short of its
# comparisons, then the next base batch. Each scenario batch is compared with the base batch
# farther from it in time (the first half of a round with the base batch after it, the second
# half with the one before it), so base and head are 2-4 batches (about 1-2 minutes) apart. A base
# batch serves up to four comparisons, of different scenarios; no batch is compared with itself.
# aa batches of every NEIGHBOUR_EVERY-th round are recorded with the neighbour process running
# (base batches never are).
pairs_of() { case $1 in aa) echo "$PAIRS_AA" ;; layout) echo "$PAIRS_LAYOUT" ;; *) echo "$PAIRS_REG" ;; esac; }

measure_crate() {
  local c=$1 rounds=0 s i k t0=$SECONDS
  for s in "${SCENARIOS[@]}"; do [ "$(pairs_of "$s")" -gt "$rounds" ] && rounds=$(pairs_of "$s"); done
  declare -A head nb
  local prev_base
  record "$c" base base-1 && prev_base=$RUN_ID
  for ((i = 1; i <= rounds; i++)); do
    local active=()
    for s in "${SCENARIOS[@]}"; do [ "$i" -le "$(pairs_of "$s")" ] && active+=("$s"); done
    for s in "${active[@]}"; do
      nb[$s]=0
      if [ "$s" = aa ] && [ $((i % NEIGHBOUR_EVERY)) -eq 0 ]; then nb[$s]=1 && neighbour_start; fi
      record "$c" "$s" "$s-$i" && head[$s]=$RUN_ID
      neighbour_stop
    done
    local next_base
    record "$c" base "base-$((i + 1))" && next_base=$RUN_ID
    local m=${#active[@]}
    for ((k = 0; k < m; k++)); do
      s=${active[$k]}
      if [ $((2 * k)) -lt "$m" ]; then
        compare_pair "$c" "$s" "$i" "$next_base" "${head[$s]}" "${nb[$s]}" $((m - k))
      else
        compare_pair "$c" "$s" "$i" "$prev_base" "${head[$s]}" "${nb[$s]}" $((k + 1))
      fi
    done
    prev_base=$next_base
    log "$c: round $i/$rounds done, $((SECONDS - t0)) s so far"
  done
}

main() {
  mkdir -p "$WORK/results" "$WORK/logs"
  RESULTS=$WORK/results/real_crates-$(date +%Y%m%dT%H%M%S).jsonl
  : >"$RESULTS"
  local c start=$SECONDS
  tool
  for c in $CRATES; do
    [ -n "${VERSION[$c]:-}" ] || die "unknown crate $c (known: ${!VERSION[*]})"
    setup_crate "$c"
    build_crate "$c"
  done
  [ -z "${SETUP_ONLY:-}" ] || { log "SETUP_ONLY: set up and built; not measuring"; return; }
  local measured=$SECONDS
  for c in $CRATES; do
    measure_crate "$c"
  done
  log "recorded $BATCHES batches in $((SECONDS - measured)) s ($(((SECONDS - measured) / (BATCHES > 0 ? BATCHES : 1))) s per batch with its comparisons); setup and builds $((measured - start)) s"
  log "results: $RESULTS"
  local per=$(((SECONDS - measured) / (BATCHES > 0 ? BATCHES : 1))) default=$(((1 + 12 + 12 + 12 + 8 + 8) * $(wc -w <<<"$CRATES")))
  log "a default run (PAIRS unset) records $default batches: about $((default * per / 60)) min at this pace, plus setup and builds"
  for c in $CRATES; do
    echo "$c@${VERSION[$c]}: base and aa binaries identical (.text, .rodata): ${AA_IDENTICAL[$c]:-not checked}"
    echo "$c@${VERSION[$c]}: reg_own injects into ${INJECTED[$c/reg_own]} (${EXPECTED[$c/reg_own]})"
    echo "  call paths: ${PATHS[$c/reg_own]}"
    echo "$c@${VERSION[$c]}: reg_dep injects into ${INJECTED[$c/reg_dep]} of vendored ${VENDORED[$c]} (${EXPECTED[$c/reg_dep]})"
    echo "  call paths: ${PATHS[$c/reg_dep]}"
  done
  tally
}

main "$@"; exit  # one line: a script edited while it runs is not read on
