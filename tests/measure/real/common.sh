# Shell helpers of the real-crate harnesses (tests/measure/real_crates.sh, caller_change.sh),
# sourced by them.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 2; }
# Commits in the crates' scratch repositories, whatever the user's git configuration.
git() { command git -c user.name=contprof-measure -c user.email=measure@localhost -c commit.gpgsign=false "$@"; }

# replace FILE OLD NEW: replace the one occurrence of OLD in FILE by NEW (fails if not exactly one).
replace() {
  python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
n = text.count(old)
if n != 1:
    sys.exit(f"replace: {n} occurrences of {old[:60]!r} in {path}")
open(path, "w").write(text.replace(old, new))
PY
}
