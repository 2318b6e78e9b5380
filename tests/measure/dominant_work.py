#!/usr/bin/env python3
"""`prod compare`'s denominators on a real service whose hashing holds most of its CPU (issue 27
item 4), on crates from crates.io: tests/measure/real/dominant_service (hyper 1, hyper-util and
tokio; `GET /etag` hashes a 64 KiB buffer with sha2's SHA-256 ROUNDS times). Version 1.3 runs
ROUNDS=2, version 1.4 ROUNDS=3: a constant raised, +50% hashing per request. Each request is a
`request` span that contprof's layer counts as one unit of work (`count_spans(["request"])`).

Run by hand, never in CI (about 5 minutes on the 2-core VM, the service's first build included;
run nothing else heavy meanwhile):

    cargo build --release -p cargo-contprof
    tests/measure/dominant_work.py --tool target/release/cargo-contprof

Options: `--scenarios paced-same,paced-more,saturated` (the default: all three), `--pause-ms`
(the paced load's pause between two requests of one connection, default 2: 8 connections then
serve about 3,500 requests/s, some 300 CPU samples per window; at 10 ms a window has ~70),
`--windows` (cpu windows each version must have recorded before the replicas stop, default 12),
`--head-rounds 2` (the head runs the base's ROUNDS: an A/A under each scenario's two loads, where
nothing should be reported), `--debug limited` (build the service with full function names in its debug info instead of its
Cargo.toml's `line-tables-only`: see below). WORK (default /tmp/dominant-work) holds the service's
build (WORK/target), the agent library and each scenario's store, replica logs and the four JSON
reports (WORK/<scenario>/).

Per scenario, two replicas of service `etag` run at once with the agent preloaded (period 2 s,
window 1.2 s, 1000 Hz), 1.3 and 1.4, each under its own wrk:
- paced-same: both under the same paced load (wrk -t1 -c8, a Lua `delay()` of --pause-ms between
  the requests of a connection), so both serve nearly the same requests per second;
- paced-more: the head under 50% more paced load (-c12 against -c8);
- saturated: both under closed-loop load (wrk -t1 -c4, no pause): the slower head serves fewer
  requests.
The replicas are stopped with SIGTERM while still under load (so that every window, the last one
cut short at exit included, served requests: `--denominator work` refuses windows without work;
the agent completes its window at exit), then the script waits for their uploaders to exit and
runs `prod compare --denominator D` for D in share, rate, work and auto.

Prints which function the reports find above half of the CPU (their denominator warning), if any,
and every sha2 function they list; then one row per scenario and denominator: the sha2 functions'
self-cost findings (regression or not, change and interval), the other regressions (and any
improvements), and the denominator warning; then per scenario the truth the replicas printed at
exit (hashing thread-CPU ns per request, requests served), the windows and those without work,
the median units of work per window (the windows' `work counted:` comments), and the hashing's
share of the CPU in each version: of the windows (samples with sha2 on the stack), in the report
(its sha2 findings' mean shares), and by the truth (hashing time over the process's CPU time).

With the Cargo.toml's `line-tables-only` the debug info names functions without their paths
(`compress`, `rounds4`, `etag`), which the comparison takes for C symbols (library frames): sha2's
self cost folds into the nearest frame whose name holds `::`, digest's generic
`update_blocks<sha2::block_api::Sha256VarCore, ...>`, one function above half of the CPU. With
`--debug limited` the same CPU is split between `sha2::sha256::x86_sha::rounds4`,
`schedule_rounds16` and `compress`, none above half.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from prod_agent import cpu_seconds, free_port, uploader_of, wait_listening
from soak import read_pprof

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "tests/measure/real/dominant_service/Cargo.toml"
SERVICE = "etag"
VERSIONS = {"base": ("1.3", 2), "head": ("1.4", 3)}
DENOMINATORS = ["share", "rate", "work", "auto"]
SCENARIOS = ["paced-same", "paced-more", "saturated"]
HASHING = re.compile(r"sha2|compress")
# Every service and wrk started, killed at exit if still running (an interrupted run).
STARTED = []


@atexit.register
def kill_started():
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- pprof windows (read with soak.py's standard-library reader) ------------------------------

class Window:
    """One cpu window: its version, the CPU (ns) per leaf function and per function on the stack, and
    the work it counted."""

    def __init__(self, path):
        name = path.name.removesuffix(".pb.gz")
        parts = [re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), p) for p in name.split("_")]
        self.start, self.version, self.instance = int(parts[0]), parts[1], parts[3]
        names, samples, comments = read_pprof(path.read_bytes())
        ci = names.index("cpu") if "cpu" in names else len(names) - 1
        self.total = 0
        self.leaf = {}
        self.with_sha2 = 0
        for stack, vals in samples:
            if not stack:
                continue
            value = vals[ci]
            self.total += value
            # The innermost frame (a location's inlined frames come first).
            self.leaf[stack[0]] = self.leaf.get(stack[0], 0) + value
            if any("sha2" in f for f in stack):
                self.with_sha2 += value
        self.work = 0
        self.work_sets = []
        for text in comments:
            m = re.match(r"work counted: (\d+) (.*)", text)
            if m:
                self.work += int(m.group(1))
                self.work_sets.append(m.group(2))

    def hashing(self):
        """The share of the window's CPU in samples with sha2's code on the stack."""
        if not self.total:
            return 0.0
        return self.with_sha2 / self.total


def windows(store):
    root = Path(store) / "prod/windows" / SERVICE / "cpu"
    return sorted(root.rglob("*.pb.gz")) if root.exists() else []


def count_by_version(store):
    counts = {}
    for p in windows(store):
        version = p.name.split("_")[1]
        counts[version] = counts.get(version, 0) + 1
    return counts


# --- one scenario --------------------------------------------------------------------------------

class Replica:
    def __init__(self, a, lib, dirname, side):
        version, rounds = VERSIONS[side]
        if side == "head" and a.head_rounds is not None:
            rounds = a.head_rounds
        self.side, self.port = side, free_port()
        self.log = dirname / f"{side}.log"
        env = dict(os.environ)
        env.update({"LD_PRELOAD": lib, "CONTPROF_SERVICE": SERVICE, "CONTPROF_VERSION": version,
                    "CONTPROF_INSTANCE": f"{dirname.name}-{side}", "CONTPROF_HELPER": a.tool,
                    "CONTPROF_STORE": str(dirname / "store"), "CONTPROF_PERIOD": "2", "CONTPROF_WINDOW": "1.2",
                    "CONTPROF_FREQUENCY": "1000"})
        self.p = subprocess.Popen([str(a.service), str(self.port), str(rounds)], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        STARTED.append(self.p)
        wait_listening(self.port)

    def stop(self):
        """SIGTERM, then its exit and its uploader's; the truth it printed."""
        pid = self.p.pid
        cpu = cpu_seconds(pid)
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=60)
        deadline = time.time() + 90
        while uploader_of(pid) is not None:
            if time.time() > deadline:
                raise SystemExit(f"the uploader of {pid} did not exit")
            time.sleep(0.1)
        text = self.log.read_text()
        m = re.search(r"dominant_service: requests=(\d+) hash_ns_per_request=(\d+)", text)
        if rc != 0 or not m:
            raise SystemExit(f"{self.side} stopped with {rc}:\n{text[-2000:]}")
        return {"requests": int(m.group(1)), "hash_ns": int(m.group(2)), "cpu": cpu,
                "agent": [l for l in text.splitlines() if l.startswith("contprof")]}


def start_wrk(port, connections, pace, secs, out):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{secs}s"]
    if pace:
        args += ["-s", str(pace)]
    p = subprocess.Popen(args + [f"http://127.0.0.1:{port}/etag"], stdout=open(out, "w"), stderr=subprocess.STDOUT)
    STARTED.append(p)
    return p


def run_scenario(a, lib, name):
    d = a.work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    pace = None
    if name.startswith("paced"):
        pace = d / "pace.lua"
        pace.write_text(f"function delay()\n  return {a.pause_ms}\nend\n")
    connections = {"paced-same": (8, 8), "paced-more": (8, 12), "saturated": (4, 4)}[name]
    store = d / "store"
    log(f"{name}: starting 1.3 and 1.4 under wrk (-c{connections[0]} / -c{connections[1]}"
        f"{', paced ' + str(a.pause_ms) + ' ms' if pace else ', closed loop'})")
    reps = [Replica(a, lib, d, side) for side in ("base", "head")]
    loads = [start_wrk(r.port, c, pace, a.max_seconds + 30, d / f"wrk-{r.side}.txt") for r, c in zip(reps, connections)]
    started = time.time()
    while True:
        counts = count_by_version(store)
        if all(counts.get(v, 0) >= a.windows for v, _ in VERSIONS.values()):
            break
        if time.time() - started > a.max_seconds:
            log(f"{name}: only {counts} windows after {a.max_seconds} s")
            break
        time.sleep(0.5)
    # Stopped under load: the window cut short at exit served requests too.
    truth = {r.side: r.stop() for r in reps}
    for w in loads:
        w.send_signal(signal.SIGINT)
        try:
            w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
    log(f"{name}: {count_by_version(store)} windows in {time.time() - started:.0f} s; comparing")
    reports = {}
    for den in DENOMINATORS:
        out = subprocess.run([a.tool, "prod", "compare", "--service", SERVICE, "--base", "version=1.3", "--head",
                              "version=1.4", "--format", "json", "--store", str(store), "--denominator", den],
                             capture_output=True, text=True)
        (d / f"report-{den}.json").write_text(out.stdout)
        (d / f"report-{den}.stderr").write_text(out.stderr)
        try:
            reports[den] = (out.returncode, json.loads(out.stdout), out.stderr.strip())
        except json.JSONDecodeError:
            reports[den] = (out.returncode, None, out.stderr.strip())
    return {"truth": truth, "reports": reports, "windows": [Window(p) for p in windows(store)]}


# --- the table -----------------------------------------------------------------------------------

LISTS = ["regressions", "improvements", "shifted", "moved", "possible", "new", "vanished", "inherited"]


def findings_of(report, function):
    """(list, finding) of `function` in the report, self cost first."""
    found = [(lst, f) for lst in LISTS for f in report.get(lst, []) if f["function"] == function]
    found.sort(key=lambda x: x[1].get("kind") != "self")
    return found


def short(name, keep=48):
    """A function name cut short (sha2's generic instances spell out typenum's types)."""
    return name if len(name) <= keep else name[:keep] + "…"


def pct(x):
    return "-" if x is None else f"{x * 100:+.1f}%"


def truth_share(t):
    """The hashing's part of the replica's CPU time (its agent's included)."""
    return t["hash_ns"] * t["requests"] / 1e9 / t["cpu"] if t["cpu"] else 0.0


def median_work(ws, version):
    units = [w.work for w in ws if w.version == version]
    return statistics.median(units) if units else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="a release build of cargo-contprof")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of " + ", ".join(SCENARIOS))
    ap.add_argument("--pause-ms", type=int, default=2, help="the paced load's pause between requests (wrk delay())")
    ap.add_argument("--windows", type=int, default=12, help="cpu windows of each version before stopping")
    ap.add_argument("--max-seconds", type=int, default=180, help="give up waiting for windows after this")
    ap.add_argument("--head-rounds", type=int, default=None,
                    help="the head's ROUNDS (default 3: +50%%); 2 makes each scenario an A/A of one binary under "
                         "the scenario's loads, where no denominator should report anything")
    ap.add_argument("--debug", default=None, choices=["line-tables-only", "limited", "full"],
                    help="build the service with this debug info instead of its Cargo.toml's (line-tables-only): "
                         "the names of its frames, and so the functions the reports judge, differ")
    a = ap.parse_args()
    # Stopped by a signal: exit through atexit, which stops the services and wrk started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    a.tool = os.path.abspath(a.tool)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}: {', '.join(SCENARIOS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing (apt install wrk)")
    a.work = Path(os.environ.get("WORK", "/tmp/dominant-work")).resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log(f"building the service (release, debug = {a.debug or 'line-tables-only'})")
    env = dict(os.environ)
    if a.debug:
        env["CARGO_PROFILE_RELEASE_DEBUG"] = a.debug
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(MANIFEST), "--target-dir",
                    str(a.work / "target")], check=True, env=env)
    a.service = a.work / "target/release/dominant_service"
    lib = subprocess.run([a.tool, "agent", "path", "--dir", str(a.work / "agent")], check=True, capture_output=True,
                         text=True).stdout.strip()
    results = {s: run_scenario(a, lib, s) for s in a.scenarios}

    # The hashing: the functions whose names say sha2 (or compress). The one the reports name as
    # holding more than half of the CPU (their denominator warning's `dominant`), if any, must be
    # one of them; the windows' most common leaf frames, for comparison.
    dominant = {}
    for r in results.values():
        for _, report, _ in r["reports"].values():
            for w in (report or {}).get("warnings", []):
                if w.get("kind") == "denominator":
                    for name, permille in w.get("dominant", []):
                        dominant[name] = max(dominant.get(name, 0), permille)
    leaves = {}
    for r in results.values():
        for w in r["windows"]:
            for f, v in w.leaf.items():
                leaves[f] = leaves.get(f, 0) + v
    everything = sum(leaves.values()) or 1
    top = sorted(leaves, key=leaves.get, reverse=True)[:5]
    print("\nThe windows' most common leaf frames (innermost, inlined included): "
          + ", ".join(f"`{f}` {leaves[f] / everything * 100:.1f}%" for f in top))
    if dominant:
        for name, permille in sorted(dominant.items(), key=lambda x: -x[1]):
            print(f"The reports find `{name}` above half of the CPU (up to {permille / 10:.1f}%)"
                  + ("" if HASHING.search(name) else " -- NOT the hashing"))
    else:
        print("No report finds a function above half of the CPU: the hashing's CPU is split between functions")
    hashing_names = sorted({f["function"] for r in results.values() for _, report, _ in r["reports"].values()
                            for lst in LISTS for f in (report or {}).get(lst, []) if HASHING.search(f["function"])})
    print("The hashing functions the reports list: " + (", ".join(f"`{short(n, 100)}`" for n in hashing_names)
                                                     or "none"))
    print("\n| scenario | denominator | exit | hashing (sha2) | its change [CI] | other regressions "
          "| denominator warning |")
    print("|---|---|---|---|---|---|---|")
    for s, r in results.items():
        for den in DENOMINATORS:
            rc, report, err = r["reports"][den]
            if report is None:
                print(f"| {s} | {den} | {rc} | no report | - | - | {err.splitlines()[-1] if err else ''} |")
                continue
            verdicts, changes = [], []
            for name in hashing_names:
                # Self costs only: a caller's total follows its callee's (`inherited`).
                found = [(lst, f) for lst, f in findings_of(report, name) if f["kind"] == "self" and lst != "inherited"]
                if not found:
                    continue
                lst, f = found[0]
                label = f"`{short(name)}`: "
                verdicts.append(label + ("REGRESSION" if lst == "regressions" else lst) + f" ({f['kind']})")
                changes.append(label + f"{pct(f.get('change'))} [{pct(f.get('ci_low'))}, {pct(f.get('ci_high'))}]")
            others = [f"`{short(f['function'])}` {pct(f.get('change'))}" for f in report.get("regressions", [])
                      if f["function"] not in hashing_names]
            other = f"{len(others)}" + (f": {'; '.join(others)}" if others else "")
            improved = [f"`{short(f['function'])}` {pct(f.get('change'))}" for f in report.get("improvements", [])]
            if improved:
                other += f" (improvements: {'; '.join(improved)})"
            warning = " / ".join(w["message"] for w in report.get("warnings", []) if w.get("kind") == "denominator")
            for name in hashing_names:
                warning = warning.replace(name, short(name))
            print(f"| {s} | {den} | {rc} | {'; '.join(verdicts) or 'not reported'} | {'; '.join(changes) or '-'} "
                  f"| {other} | {warning or '-'} |")

    print("\n| scenario | truth: hash ns/request 1.3 -> 1.4 | requests 1.3 / 1.4 | windows 1.3 / 1.4 "
          "| windows without work | median work/window 1.3 / 1.4 | windows' CPU with sha2 on the stack 1.3 -> 1.4 "
          "| report's share of the sha2 findings 1.3 -> 1.4 | truth: hashing share of the process CPU 1.3 -> 1.4 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, r in results.items():
        t, ws = r["truth"], r["windows"]
        b, h = t["base"], t["head"]
        of = {v: [w for w in ws if w.version == v] for v, _ in VERSIONS.values()}
        share = {v: statistics.mean(w.hashing() for w in x) if x else 0.0 for v, x in of.items()}
        none = {v: sum(1 for w in x if w.work == 0) for v, x in of.items()}
        sets = sorted({st for w in ws for st in w.work_sets})
        # The hashing findings' mean shares (self), from the first report that lists them.
        reported = "-"
        for den in DENOMINATORS:
            found = [fs[0][1] for n in hashing_names if (fs := findings_of(r["reports"][den][1] or {}, n))
                     and fs[0][1]["kind"] == "self"]
            if found:
                reported = (f"{sum(f['base_share'] for f in found) * 100:.1f}% -> "
                            f"{sum(f['head_share'] for f in found) * 100:.1f}% ({den}, {len(found)} fn)")
                break
        print(f"| {s} | {b['hash_ns']} -> {h['hash_ns']} ({(h['hash_ns'] / b['hash_ns'] - 1) * 100:+.1f}%) "
              f"| {b['requests']} / {h['requests']} | {len(of['1.3'])} / {len(of['1.4'])} "
              f"| {none['1.3']} / {none['1.4']} | {median_work(ws, '1.3'):.0f} / {median_work(ws, '1.4'):.0f} "
              f"| {share['1.3'] * 100:.1f}% -> {share['1.4'] * 100:.1f}% | {reported} "
              f"| {truth_share(b) * 100:.1f}% -> {truth_share(h) * 100:.1f}% |")
        if sets != ['{"endpoint":"/etag","span_name":"request"}']:
            print(f"  (work counted under {sets})")
        for side in ("base", "head"):
            for line in t[side]["agent"]:
                print(f"  {side} agent: {line[:200]}")
    print(f"\n(run time {time.time() - t0:.0f} s; reports and logs in {a.work}/<scenario>/)")


if __name__ == "__main__":
    main()
