#!/usr/bin/env python3
"""The production agent on a real HTTP service (fixtures/service: axum on tokio) under wrk load.

Run by hand, not in CI (about 12 minutes on the 2-core VM):

    CARGO_TARGET_DIR=/work/measure/tool-target cargo build --release --locked -p cargo-contprof
    tests/measure/prod_agent.py --tool /work/measure/tool-target/release/cargo-contprof

Measures, in one run:
1. overhead: the service without the agent, with it always in a window (period 1 s, window
   0.95 s), and at the default duty of one replica (10 s per 60 s, simulated as 1 s per 6 s),
   in a shuffled order in every round: requests/s and p50/p99 latency from wrk, and the CPU
   time the service and its uploader used per request served;
2. sharing: N = 1, 3, 10 idle replicas on one store (period 1 s, window 0.2 s): windows per
   period and the spread of turns;
3. failures: the store unreachable (an S3 URL nobody listens on), and moto killed mid-run:
   throughput against the no-agent rounds, and what was lost.

With `--traced` it measures instead what `contprof_tracing`'s layer costs the same service
(`service --traced`: each request in a `tracing` span the layer labels with its endpoint): no
layer and no agent, the layer without an agent, and the layer with the agent always in a window
and at the default duty, as in 1.
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port, secs=20):
    """Whether something accepts connections on `port` within `secs` (the harnesses' one check)."""
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_listening(port, secs=20):
    if not listening(port, secs):
        raise SystemExit(f"nothing listens on {port}")


class Env:
    def __init__(self, tool):
        self.tool = tool
        self.tmp = Path(tempfile.mkdtemp(prefix="prod-agent-"))
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "service", "--manifest-path",
                        str(ROOT / "fixtures/Cargo.toml")], check=True)
        self.service = ROOT / "fixtures/target/release/service"
        self.lib = subprocess.run([tool, "agent", "path", "--dir", str(self.tmp)], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def start(self, name, agent_env=None, flags=()):
        port = free_port()
        env = dict(os.environ)
        if agent_env is not None:
            env.update({"LD_PRELOAD": self.lib, "CONTPROF_SERVICE": "web", "CONTPROF_VERSION": "1.0",
                        "CONTPROF_INSTANCE": name, "CONTPROF_HELPER": self.tool})
            env.update(agent_env)
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen([str(self.service), str(port), *flags], env=env, stdout=subprocess.DEVNULL,
                             stderr=log)
        wait_listening(port)
        return p, port

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def wrk(port, secs):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{secs}s", "--latency", f"http://127.0.0.1:{port}/work?n=300"],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(q):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return rps, ms(50), ms(99), requests


def status(pid, field):
    """A `/proc/PID/status` field in KiB (VmRSS, VmHWM), 0 when the process is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def uploader_of(pid):
    """The uploader the agent started for service `pid`, if any (its arguments carry their values
    attached: `--pid=PID`, see `contprof::service::Config::uploader_args`)."""
    out = subprocess.run(["pgrep", "-f", f"agent upload --pid={pid} "], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def cpu_seconds(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def windows(store):
    root = Path(store) / "prod/windows/web/cpu"
    return [p.name for p in root.rglob("*.pb.gz")] if root.exists() else []


def overhead(e, rounds, secs, traced=False):
    configs = {
        "no agent": None,
        "agent, in a window all the time (1 s per 1 s)": {"CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.95"},
        "agent, default duty of one replica (1 s per 6 s)": {"CONTPROF_PERIOD": "6", "CONTPROF_WINDOW": "1"},
        "agent, default duty, CONTPROF_TYPES=cpu,alloc,threads (no heap)": {
            "CONTPROF_PERIOD": "6", "CONTPROF_WINDOW": "1", "CONTPROF_TYPES": "cpu,alloc,threads"},
        "agent, default duty, CONTPROF_TYPES=cpu,threads": {"CONTPROF_PERIOD": "6", "CONTPROF_WINDOW": "1",
                                                           "CONTPROF_TYPES": "cpu,threads"},
        "agent, store unreachable": {"CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.95",
                                     "CONTPROF_STORE": f"s3://nowhere/x", "AWS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                     "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                     "AWS_REGION": "us-east-1"},
    }
    # Per configuration: the service's flags and the agent's settings (None: no agent).
    configs = {name: ((), cfg) for name, cfg in configs.items()}
    if traced:
        layer = ("--traced",)
        configs = {
            "no layer, no agent": ((), None),
            "layer, no agent": (layer, None),
            "layer, agent in a window all the time (1 s per 1 s)": (
                layer, {"CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.95"}),
            "layer, agent at the default duty of one replica (1 s per 6 s)": (
                layer, {"CONTPROF_PERIOD": "6", "CONTPROF_WINDOW": "1"}),
        }
    results = {k: [] for k in configs}
    memory = {k: [] for k in configs}
    # CPU per request: the service's and its uploader's CPU time during the measured load over
    # the requests served. Throughput on 2 cores shared with wrk swings by a few percent from
    # round to round; the CPU the service pays per request is what the agent adds to.
    per_request = {k: [] for k in configs}
    # Shuffled order in every round (seeded), as in alloc_overhead.py: drift within a round
    # (the host's frequency, a neighbour) must not fall on one configuration every time.
    rng = random.Random(7)
    for r in range(rounds):
        order = list(enumerate(configs.items()))
        rng.shuffle(order)
        for c, (name, (flags, cfg)) in order:
            env = None
            store = e.tmp / f"store-{r}-{c}"
            if cfg is not None:
                env = {"CONTPROF_STORE": str(store), **cfg}
            p, port = e.start(f"o{r}", env, flags)
            wrk(port, 2)  # warm up
            # And past the first window, where the uploader starts and loads the service's
            # symbols: a cost paid once per process, which a 10 s measurement at a 6 s period
            # would otherwise hold and one at a 1 s period would not.
            deadline = time.time() + 20
            while cfg is not None and "CONTPROF_STORE" not in cfg and not windows(store) and time.time() < deadline:
                wrk(port, 1)
            up = uploader_of(p.pid)
            cpu0 = cpu_seconds(p.pid) + (cpu_seconds(up) if up else 0.0)
            results[name].append(wrk(port, secs))
            up = up or uploader_of(p.pid)
            cpu1 = cpu_seconds(p.pid) + (cpu_seconds(up) if up else 0.0)
            per_request[name].append((cpu1 - cpu0) / max(results[name][-1][3], 1) * 1e6)
            n = len(windows(store))
            memory[name].append((status(p.pid, "VmRSS"), status(up, "VmHWM") if up else 0,
                                 cpu_seconds(up) / max(n, 1) * 1000 if up else 0.0, n))
            e.stop(p)
            print(f"  round {r + 1} {name}: {results[name][-1]}, {per_request[name][-1]:.1f} us CPU per request",
                  file=sys.stderr)
    baseline = next(iter(configs))
    base = statistics.median(x[0] for x in results[baseline])
    base50 = statistics.median(x[1] for x in results[baseline])
    base99 = statistics.median(x[2] for x in results[baseline])
    print(f"\n## Overhead ({rounds} alternating rounds of {secs} s, wrk -t2 -c16, medians)\n")
    base_cpu = statistics.median(per_request[baseline])
    print(f"| configuration | requests/s | vs {baseline} | CPU per request (service + uploader) | p50 | p99 |")
    print("|---|---|---|---|---|---|")
    for name, xs in results.items():
        rps = statistics.median(x[0] for x in xs)
        p50 = statistics.median(x[1] for x in xs)
        p99 = statistics.median(x[2] for x in xs)
        cpu = statistics.median(per_request[name])
        print(f"| {name} | {rps:.0f} | {rps / base:.3f}x | {cpu:.1f} us ({cpu / base_cpu:.3f}x) | "
              f"{p50:.2f} ms ({p50 / base50:.2f}x) | {p99:.2f} ms ({p99 / base99:.2f}x) |")
    print("\n| configuration | service RSS | uploader peak RSS | uploader CPU per window | windows per run |")
    print("|---|---|---|---|---|")
    for name, xs in memory.items():
        rss = statistics.median(x[0] for x in xs) / 1024
        up = statistics.median(x[1] for x in xs) / 1024
        cpu = statistics.median(x[2] for x in xs)
        n = statistics.median(x[3] for x in xs)
        print(f"| {name} | {rss:.1f} MiB | {up:.1f} MiB | {cpu:.0f} ms | {n:.0f} |")


def sharing(e, secs):
    print(f"\n## Sharing one store ({secs} s, period 1 s, window 0.2 s, idle replicas)\n")
    print("| replicas | periods | windows | windows per period | turns per replica (min-max) |")
    print("|---|---|---|---|---|")
    for n in (1, 3, 10):
        store = e.tmp / f"share-{n}"
        env = {"CONTPROF_STORE": str(store), "CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.2",
               "CONTPROF_TYPES": "cpu"}
        procs = [e.start(f"s{n}-{i}", env)[0] for i in range(n)]
        t0 = time.time()
        time.sleep(secs)
        periods = time.time() - t0
        for p in procs:
            e.stop(p)
        time.sleep(1)
        names = windows(store)
        turns = {}
        for w in names:
            inst = w.split("_")[3].removesuffix(".pb.gz")
            turns[inst] = turns.get(inst, 0) + 1
        counts = [turns.get(f"s{n}-{i}", 0) for i in range(n)]
        print(f"| {n} | {periods:.0f} | {len(names)} | {len(names) / periods:.2f} | {min(counts)}-{max(counts)} |")


def moto_killed(e, secs):
    if shutil.which("moto_server") is None:
        print("\n(moto_server not installed: the store-killed measurement is skipped)")
        return
    port = free_port()
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port)
    subprocess.run(["python3", "-c", f"import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:{port}/prod', method='PUT'))"],
                   check=True)
    env = {"CONTPROF_STORE": "s3://prod/p", "CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.5",
           "AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"}
    p, sport = e.start("killed-store", env)
    before = wrk(sport, secs)
    moto.kill()
    moto.wait()
    after = wrk(sport, secs)
    e.stop(p)
    log = (e.tmp / "killed-store.log").read_text()
    print(f"\n## The store (moto) killed mid-run ({secs} s of load before, {secs} s after)\n")
    print(f"requests/s before {before[0]:.0f}, after {after[0]:.0f} ({after[0] / before[0]:.3f}x); "
          f"p99 {before[2]:.2f} ms -> {after[2]:.2f} ms")
    print("uploader's messages:")
    for line in log.splitlines():
        if line.startswith("contprof agent:"):
            print(f"    {line[:200]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="a release build of cargo-contprof")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--traced", action="store_true", help="measure the tracing layer's cost instead (see above)")
    a = ap.parse_args()
    e = Env(os.path.abspath(a.tool))
    overhead(e, a.rounds, a.seconds, a.traced)
    if not a.traced:
        sharing(e, 30)
        moto_killed(e, a.seconds)
    shutil.rmtree(e.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
