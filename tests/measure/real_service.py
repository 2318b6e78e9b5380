#!/usr/bin/env python3
"""The production agent on a published HTTP server from crates.io (miniserve) under wrk load.

Run by hand, never in CI. Installing miniserve takes 5-15 minutes once; the checks take about
4 minutes, the timed rounds about 12 minutes on a quiet machine (plus any time spent waiting for
one):

    cargo build --release -p cargo-contprof
    cargo install --locked miniserve --root /work/measure/miniserve
    tests/measure/real_service.py --tool target/release/cargo-contprof \\
        --server /work/measure/miniserve/bin/miniserve

The server serves a directory of files (0 B to 32 MiB, random bytes, written by this script)
with `miniserve -i 127.0.0.1 -p PORT DIR`, as published: its release build, no frame pointers,
no change.

1. Checks that apply to a real server, each run without the agent and with it (in production
   mode, every profile type, period 1 s, window 0.95 s, so that a window is always open):
   - it keeps serving correctly: every file fetched (GET and HEAD, a Range request) while wrk
     loads the server is byte-identical to the file on disk, and the directory listing is the
     same as without the agent;
   - SIGTERM (while wrk loads it) and SIGINT (idle) stop it as without the agent: same exit
     status, time to exit;
   - its standard output and error are the same as without the agent (port numbers replaced);
   - it survives a closed standard error (`2>&-`) and a full one (`2>/dev/full`): it keeps
     serving, and windows are still recorded.
2. Overhead, as `tests/measure/prod_agent.py` does for the fixture: requests/s and p50/p99
   latency from `wrk -t2 -c16 --latency`, and the server's CPU time per request, without the
   agent, with it always in a window (period 1 s, window 0.95 s) and at the default duty of one
   replica (10 s per 60 s, simulated as 1 s per 6 s), default profile types, alternating round
   by round, on two workloads: the directory listing (`/`: readdir, stat, an HTML page rendered
   per request) and a 16 KiB file (actix-files; its latency is bimodal, a response often waits
   for the client's delayed ACK, 40 ms, with or without the agent); the service's RSS and peak
   RSS, the uploader's peak RSS and CPU per window.

Timing needs a quiet machine: before the timed part the script waits until the 1-minute load
average is below `--max-load` (1.5); during each round it measures the CPU time the rest of the
machine used (all CPU time in /proc/stat minus that of the server, its uploader and wrk) and
repeats a round in which others used more than `--max-others` cores (0.1), after waiting for the
load to fall again. The load average before each round and the others' CPU are printed with the
figures.
"""

import argparse
import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prod_agent import free_port, listening

FILES = {"empty.txt": 0, "one.txt": 1, "small.html": 4 << 10, "asset.css": 16 << 10, "image.png": 1 << 20,
         "big.bin": 32 << 20}
LOAD_FILE = "asset.css"


def status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except OSError:
        return 0


def machine_ticks():
    """User and system jiffies of the whole machine (all CPUs), from /proc/stat: what processes
    ran (interrupt time, which loopback traffic causes, and steal are left out)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2]


def load1():
    return float(open("/proc/loadavg").read().split()[0])


def uploader_of(pid):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            if ppid == pid and b"agent" in cmd and b"upload" in cmd:
                return int(d)
        except (OSError, ValueError, IndexError):
            continue
    return None


def fetch(port, path, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class Env:
    def __init__(self, tool, server):
        self.tool, self.server = tool, server
        self.tmp = Path(tempfile.mkdtemp(prefix="real-service-"))
        self.files = self.tmp / "www"
        self.files.mkdir()
        rng = random.Random(25)
        for name, size in FILES.items():
            (self.files / name).write_bytes(rng.randbytes(size))
        (self.files / "sub").mkdir()
        (self.files / "sub" / "nested.txt").write_text("nested\n")
        # A fixed modification time: the listing says how long ago ("6 years ago"), the same in
        # every run.
        for f in [*self.files.rglob("*"), self.files]:
            os.utime(f, (1577836800, 1577836800))
        self.lib = subprocess.run([tool, "agent", "path", "--dir", str(self.tmp / "agent")], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.n = 0

    def agent_env(self, store, **extra):
        env = {"LD_PRELOAD": self.lib, "CONTPROF_SERVICE": "miniserve", "CONTPROF_VERSION": "real",
               "CONTPROF_STORE": str(store), "CONTPROF_HELPER": self.tool}
        env.update(extra)
        return env

    def start(self, agent_env=None, stdout=None, stderr=None, close_stderr=False, port=None):
        """Starts the server; returns (process, port, stdout path, stderr path)."""
        self.n += 1
        port = port or free_port()
        env = dict(os.environ)
        if agent_env is not None:
            env.update(agent_env)
        out = stdout or self.tmp / f"{self.n}.out"
        err = stderr or self.tmp / f"{self.n}.err"
        fo = open(out, "wb") if isinstance(out, Path) else out
        fe = subprocess.DEVNULL if close_stderr else (open(err, "wb") if isinstance(err, Path) else err)

        def pre():
            if close_stderr:
                os.close(2)

        p = subprocess.Popen([self.server, "-i", "127.0.0.1", "-p", str(port), str(self.files)], env=env,
                             stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, preexec_fn=pre)
        if not listening(port, 30):
            p.kill()
            raise SystemExit(f"the server did not listen (see {out}, {err})")
        return p, port, out, err


def windows(store):
    root = Path(store) / "prod/windows"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pb.gz")) if root.exists() else []


def stop(p, sig=signal.SIGTERM, timeout=60):
    t = time.time()
    p.send_signal(sig)
    try:
        code = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = f"killed after {timeout} s"
    return code, time.time() - t


def wrk(port, secs, path=f"/{LOAD_FILE}", background=False):
    cmd = ["wrk", "-t2", "-c16", f"-d{secs}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(q):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return rps, ms(50), ms(99), int(errors.group(1)) if errors else 0, sock.group(1) if sock else ""


# ---------------------------------------------------------------------------------------------
# 1. Checks


def check_responses(e, port, rounds):
    """Every file (GET, HEAD, a Range) byte-identical to the disk; the listing's bytes."""
    bad = []
    n = 0
    for _ in range(rounds):
        for name, size in FILES.items():
            want = (e.files / name).read_bytes()
            st, h, body = fetch(port, f"/{name}")
            n += 1
            if st != 200 or body != want:
                bad.append(f"GET /{name}: {st}, {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:12]}")
            st, h, body = fetch(port, f"/{name}", "HEAD")
            n += 1
            if st != 200 or body or int(h.get("content-length", -1)) != size:
                bad.append(f"HEAD /{name}: {st}, content-length {h.get('content-length')}")
            if size > 100:
                st, h, body = fetch(port, f"/{name}", headers={"Range": "bytes=10-99"})
                n += 1
                if st != 206 or body != want[10:100]:
                    bad.append(f"Range /{name}: {st}, {len(body)} bytes")
        st, h, body = fetch(port, "/sub/nested.txt")
        n += 1
        if st != 200 or body != b"nested\n":
            bad.append(f"GET /sub/nested.txt: {st}")
    return n, bad


def listing(port):
    """The directory listing, its port replaced (the page's title is the address)."""
    st, h, body = fetch(port, "/")
    return st, normalize(body.decode("utf-8", "replace"), [port])


def normalize(text, ports):
    for p in ports:
        text = text.replace(str(p), "<port>")
    return text


def run_checks(e, env, store):
    """One pass of the checks with `env` (None: without the agent)."""
    o = {}
    # Serving under load: files fetched while wrk runs; the listing; then SIGTERM.
    p, port, out, err = e.start(env)
    w = wrk(port, 12, background=True)
    time.sleep(1)
    o["fetches"] = check_responses(e, port, 5)
    wout, _ = w.communicate()
    o["wrk"] = parse_wrk(wout)
    o["listing"] = listing(port)
    # SIGTERM while wrk is loading it (a rolling restart).
    w = wrk(port, 10, background=True)
    time.sleep(2)
    o["term"] = stop(p, signal.SIGTERM)
    w.communicate()
    o["out"] = normalize(out.read_text(errors="replace"), [port])
    o["err"] = normalize(err.read_text(errors="replace"), [port])
    # SIGINT, idle.
    p, port, out, err = e.start(env)
    fetch(port, f"/{LOAD_FILE}")
    time.sleep(2.5)
    o["int"] = stop(p, signal.SIGINT)
    o["out"] += normalize(out.read_text(errors="replace"), [port])
    o["err"] += normalize(err.read_text(errors="replace"), [port])
    # A closed stderr, then a full one: it keeps serving.
    for mode in ("closed", "full"):
        before = len(windows(store))
        if mode == "closed":
            p, port, _, _ = e.start(env, close_stderr=True)
        else:
            p, port, _, _ = e.start(env, stderr=open("/dev/full", "wb"))
        time.sleep(1)
        w = wrk(port, 4, background=True)
        fetched = check_responses(e, port, 2)
        wout, _ = w.communicate()
        time.sleep(2)
        alive = p.poll() is None
        code, _ = stop(p, signal.SIGTERM)
        time.sleep(2)
        o[mode] = {"alive": alive, "fetches": fetched, "wrk": parse_wrk(wout), "exit": code,
                   "windows": len(windows(store)) - before}
    return o


def agent_lines(text):
    return [line for line in text.splitlines() if line.startswith("contprof agent:")]


def without_agent_lines(text):
    return [line for line in text.splitlines() if not line.startswith("contprof agent:")]


def checks(e):
    print("\n## Checks (without the agent, then with it: all types, period 1 s, window 0.95 s)\n")
    store = e.tmp / "check-store"
    window_env = e.agent_env(store, CONTPROF_PERIOD="1", CONTPROF_WINDOW="0.95",
                             CONTPROF_TYPES="cpu,alloc,heap,threads,contention,wall")
    log = e.tmp / "uploader.log"
    runs = {"without": run_checks(e, None, store), "with": run_checks(e, window_env, store),
            "log": run_checks(e, {**window_env, "CONTPROF_LOG": str(log)}, store)}
    time.sleep(3)

    def ok_fetches(o):
        n, bad = o["fetches"]
        return f"{n - len(bad)}/{n}"

    rows = [
        ("files byte-identical to the disk (GET, HEAD, Range) under wrk load", ok_fetches,
         lambda o: not o["fetches"][1]),
        ("wrk: non-2xx answers, socket errors", lambda o: f"{o['wrk'][3]}, {o['wrk'][4] or 'none'}",
         lambda o: (o["wrk"][3], o["wrk"][4])),
        ("directory listing: status, bytes", lambda o: f"{o['listing'][0]}, {len(o['listing'][1])} B",
         lambda o: o["listing"]),
        ("SIGTERM while wrk loads it: exit status, time to exit", lambda o: f"{o['term'][0]}, {o['term'][1]:.2f} s",
         lambda o: o["term"][0]),
        ("SIGINT, idle: exit status, time to exit", lambda o: f"{o['int'][0]}, {o['int'][1]:.2f} s",
         lambda o: o["int"][0]),
        ("stdout (ports replaced)", lambda o: f"{len(o['out'])} B", lambda o: o["out"]),
        ("stderr (ports replaced)", lambda o: f"{len(o['err'])} B, {len(agent_lines(o['err']))} agent lines",
         lambda o: o["err"]),
        ("stderr without the lines `contprof agent: ...`", lambda o: f"{len(without_agent_lines(o['err']))} lines",
         lambda o: without_agent_lines(o["err"])),
    ]
    for mode in ("closed", "full"):
        rows.append((f"stderr {mode}: alive under load, files identical, exit status; windows recorded",
                     lambda o, m=mode: f"{o[m]['alive']}, {ok_fetches(o[m])}, {o[m]['exit']}; {o[m]['windows']}",
                     lambda o, m=mode: (o[m]["alive"], not o[m]["fetches"][1], o[m]["exit"])))
    print("| check | without the agent | with the agent | with `CONTPROF_LOG=file` | same as without |")
    print("|---|---|---|---|---|")
    results = []
    for name, show, key in rows:
        same = [key(runs[x]) == key(runs["without"]) for x in ("with", "log")]
        verdict = "yes" if all(same) else "with `CONTPROF_LOG` only" if same[1] else "NO"
        results.append(verdict != "NO")
        print(f"| {name} | {show(runs['without'])} | {show(runs['with'])} | {show(runs['log'])} | {verdict} |")
    lines = sorted(set(agent_lines(runs["with"]["err"])))
    if lines:
        print("\nThe agent's lines on the service's standard error:\n```")
        print("\n".join(lines))
        print("```")
    print(f"\nThe uploader's log with `CONTPROF_LOG`: {log.read_text(errors='replace').strip() if log.exists() else '(none)'}")
    for label, o in runs.items():
        for b in (o["fetches"][1] + o["closed"]["fetches"][1] + o["full"]["fetches"][1])[:10]:
            print(f"- {label}: {b}")
    names = windows(store)
    print(f"\nWindows recorded by the runs with the agent: {len(names)} "
          f"({', '.join(sorted({w.split('/')[1] for w in names}))}).")
    return all(results)


# ---------------------------------------------------------------------------------------------
# 2. Overhead


def wait_quiet(max_load, max_wait):
    t = time.time()
    while load1() >= max_load:
        if time.time() - t > max_wait:
            raise SystemExit(f"the machine stayed busy (load {load1():.2f}) for {max_wait} s: try later")
        print(f"  load {load1():.2f}: waiting for a quiet machine", file=sys.stderr)
        time.sleep(30)
    return time.time() - t


WORKLOADS = {
    "listing": "/",  # the directory listing: readdir, stat, an HTML page rendered per request
    "file": f"/{LOAD_FILE}",  # a 16 KiB file (actix-files)
}


def overhead(e, rounds, secs, max_load, max_others, max_wait):
    configs = {
        "no agent": None,
        "in a window all the time (1 s per 1 s)": {"CONTPROF_PERIOD": "1", "CONTPROF_WINDOW": "0.95"},
        "default duty of one replica (1 s per 6 s)": {"CONTPROF_PERIOD": "6", "CONTPROF_WINDOW": "1"},
    }
    results = {(w, k): [] for w in WORKLOADS for k in configs}
    memory = {(w, k): [] for w in WORKLOADS for k in configs}
    notes = []
    waited = wait_quiet(max_load, max_wait)
    start_load = load1()
    t_start = time.time()
    print(f"(load average {start_load:.2f} at the start of the timed part, after waiting {waited:.0f} s)",
          file=sys.stderr)
    hz = os.sysconf("SC_CLK_TCK")
    for r in range(rounds):
        for wname, path in WORKLOADS.items():
            for c, (name, cfg) in enumerate(configs.items()):
                for attempt in range(10):
                    env = None
                    store = e.tmp / f"store-{r}-{wname}-{c}-{attempt}"
                    if cfg is not None:
                        env = e.agent_env(store, **cfg)
                    la = load1()
                    p, port, _, _ = e.start(env)
                    wrk(port, 2, path)  # warm up
                    up = uploader_of(p.pid)
                    WRK_TICKS.take()
                    m0 = machine_ticks()
                    svc0, up0 = cpu_ticks(p.pid), cpu_ticks(up) if up else 0
                    w = wrk(port, secs, path, background=True)
                    wout, _ = w.communicate()
                    wrk_ticks = WRK_TICKS.take()  # wrk's CPU: it is a finished child of this process now
                    m1 = machine_ticks()
                    up = up or uploader_of(p.pid)
                    svc1, up1 = cpu_ticks(p.pid), cpu_ticks(up) if up else 0
                    res = parse_wrk(wout)
                    n = len(windows(store))
                    cpu_per_request = (svc1 - svc0) / hz / max(1.0, res[0] * secs) * 1e6
                    mem = (status(p.pid, "VmRSS"), status(p.pid, "VmHWM"), status(up, "VmHWM") if up else 0,
                           (cpu_ticks(up) / hz) / max(n, 1) * 1000 if up else 0.0, n)
                    stop(p)
                    others = (m1 - m0 - (svc1 - svc0) - (up1 - up0) - wrk_ticks) / hz / secs
                    if others <= max_others:
                        break
                    notes.append(f"round {r + 1} {wname} {name}: others used {others:.2f} cores (load {la:.2f}); "
                                 "repeated")
                    print(f"  {notes[-1]}", file=sys.stderr)
                    wait_quiet(max_load, max_wait)
                results[wname, name].append((*res, la, others, cpu_per_request))
                memory[wname, name].append(mem)
                print(f"  round {r + 1} {wname} {name}: {res[0]:.0f}/s p50 {res[1]:.3f} ms p99 {res[2]:.3f} ms, "
                      f"{cpu_per_request:.1f} us CPU/request, load {la:.2f}, others {others:.2f} cores",
                      file=sys.stderr)
    minutes = (time.time() - t_start) / 60
    for wname, path in WORKLOADS.items():
        base = [statistics.median(x[i] for x in results[wname, "no agent"]) for i in (0, 1, 2, 7)]
        print(f"\n## Overhead on `{path}` ({wname}): {rounds} alternating rounds of {secs} s, wrk -t2 -c16, medians\n")
        print("| configuration | requests/s | vs no agent | p50 | p99 | service CPU per request | "
              "load avg at round start | others' CPU |")
        print("|---|---|---|---|---|---|---|---|")
        for name in configs:
            xs = results[wname, name]
            rps, p50, p99, cpu = (statistics.median(x[i] for x in xs) for i in (0, 1, 2, 7))
            print(f"| {name} | {rps:.0f} | {rps / base[0]:.3f}x | {p50:.3f} ms ({p50 / base[1]:.2f}x) | "
                  f"{p99:.2f} ms ({p99 / base[2]:.2f}x) | {cpu:.1f} us ({cpu / base[3]:.2f}x) | "
                  f"{min(x[5] for x in xs):.2f}-{max(x[5] for x in xs):.2f} | {max(x[6] for x in xs):.2f} cores max |")
        print("\nPer round (requests/s): " + "; ".join(
            f"{name}: " + ", ".join(f"{x[0]:.0f}" for x in results[wname, name]) for name in configs))
    print("\n| workload, configuration | service RSS at the end | service peak RSS | uploader peak RSS | "
          "uploader CPU per window | windows per run |")
    print("|---|---|---|---|---|---|")
    for (wname, name), xs in memory.items():
        print(f"| {wname}, {name} | {statistics.median(x[0] for x in xs) / 1024:.1f} MiB | "
              f"{statistics.median(x[1] for x in xs) / 1024:.1f} MiB | {statistics.median(x[2] for x in xs) / 1024:.1f} MiB | "
              f"{statistics.median(x[3] for x in xs):.0f} ms | {statistics.median(x[4] for x in xs):.0f} |")
    print(f"\nTimed part: {minutes:.1f} min, load average {start_load:.2f} at its start and {load1():.2f} at its end "
          f"(ours included); {len(notes)} rounds repeated because others used more than {max_others} cores.")
    for n in notes:
        print(f"- {n}")


class _WrkTicks:
    """CPU ticks of this process's finished children since the last `take` (wrk's, in a round)."""

    def __init__(self):
        self.last = self._now()

    @staticmethod
    def _now():
        t = os.times()
        return round((t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))

    def take(self):
        now = self._now()
        d, self.last = now - self.last, now
        return d


WRK_TICKS = _WrkTicks()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="a release build of cargo-contprof")
    ap.add_argument("--server", required=True, help="the miniserve binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--max-others", type=float, default=0.1, help="cores others may use during a round")
    ap.add_argument("--max-wait", type=int, default=3600, help="seconds to wait for a quiet machine")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    a = ap.parse_args()
    e = Env(os.path.abspath(a.tool), os.path.abspath(a.server))
    version = subprocess.run([e.server, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {version} under the production agent\n")
    ok = True
    if not a.skip_checks:
        ok = checks(e)
    if not a.skip_overhead:
        overhead(e, a.rounds, a.seconds, a.max_load, a.max_others, a.max_wait)
    shutil.rmtree(e.tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
