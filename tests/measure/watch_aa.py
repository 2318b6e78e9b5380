#!/usr/bin/env python3
"""`prod watch` on rollouts that change nothing (A/A), with real windows recorded by the agent.

Run by hand, not in CI (about 12 minutes on the 2-core VM):

    cargo build --release -p cargo-contprof
    tests/measure/watch_aa.py --tool target/release/cargo-contprof [--versions 20]

The fixture service (`fixtures/service`, release) runs as version aa-01, then aa-02, ... one
after the other, the same binary each time, each for `--seconds` under `wrk -t1 -c4` on
`/work?n=300`, with the production agent (period 2 s, window 1.2 s, 250 Hz, as the e2e test of
`prod compare`). Each version replaces the one before, so `prod watch` sees `--versions - 1`
rollouts, none of which changes any code. Printed: how many it judged, how many it called
regressed (each a false alarm) and the functions it named; a second `prod watch` must judge
nothing again.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prod_agent import free_port, listening

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="cargo-contprof (a release build)")
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=26)
    args = ap.parse_args()
    tool = os.path.realpath(args.tool)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "service", "--manifest-path",
                    str(ROOT / "fixtures/Cargo.toml")], check=True)
    service = ROOT / "fixtures/target/release/service"
    work = Path(tempfile.mkdtemp(prefix="contprof-watch-aa-"))
    store = work / "store"
    lib = subprocess.run([tool, "agent", "path", "--dir", str(work / "agent")], check=True,
                         capture_output=True, text=True).stdout.strip()
    for i in range(1, args.versions + 1):
        port = free_port()
        env = dict(os.environ, LD_PRELOAD=lib, CONTPROF_SERVICE="web", CONTPROF_VERSION=f"aa-{i:02}",
                   CONTPROF_STORE=str(store), CONTPROF_PERIOD="2", CONTPROF_WINDOW="1.2",
                   CONTPROF_FREQUENCY="250", CONTPROF_HELPER=tool)
        server = subprocess.Popen([str(service), str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert listening(port), "the service listens"
        subprocess.run(["wrk", "-t1", "-c4", f"-d{args.seconds}s", f"http://127.0.0.1:{port}/work?n=300"],
                       check=True, capture_output=True)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        # Its uploader uploads the last window after it ends.
        deadline = time.time() + 60
        while time.time() < deadline and f"--pid={server.pid}" in subprocess.run(
                ["ps", "-eo", "args"], capture_output=True, text=True).stdout:
            time.sleep(0.2)
        print(f"version aa-{i:02} recorded", flush=True)

    def watch():
        out = subprocess.run([tool, "prod", "watch", "--since", "1d", "--min-windows", "8", "--format", "json",
                              "--store", str(store)], capture_output=True, text=True)
        return out.returncode, json.loads(out.stdout or '{"rollouts": []}'), out.stderr

    code, first, err = watch()
    rollouts = first["rollouts"]
    judged = [r for r in rollouts if r["new"]]
    regressed = [r for r in judged if r["status"] == "regressed"]
    waiting = [r for r in rollouts if r["status"] == "waiting"]
    print(f"rollouts: {len(rollouts)}; judged: {len(judged)}; regressed (false alarms): {len(regressed)}; "
          f"waiting: {len(waiting)}; exit {code}")
    for r in regressed:
        print(f"  false alarm {r['base']} -> {r['head']}: {r['regressions']}")
    for r in rollouts:
        print(f"  {r['base']} -> {r['head']}: {r['status']} ({r['base_windows']} and {r['head_windows']} windows)")
    code2, second, _ = watch()
    again = [r for r in second["rollouts"] if r["new"]]
    print(f"second run: {len(again)} judged again, exit {code2}")
    if code not in (0, 1):
        print(err, file=sys.stderr)
    print("work dir:", work)


if __name__ == "__main__":
    sys.exit(main())
