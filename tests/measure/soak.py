#!/usr/bin/env python3
"""Soak: the production agent on a service under load for 30 minutes or more at short periods,
with new code paths appearing all the time.

Run by hand, never in CI. It takes the run's length (30 minutes by default) plus about a minute
to build the fixture and 2-5 minutes to export and read the windows. It is not sensitive to CPU
timing (it measures memory, windows and what the profiles contain), so it may run beside builds:

    cargo build --release -p cargo-contprof
    tests/measure/soak.py --tool target/release/cargo-contprof --minutes 30 --out /tmp/soak

The service is `fixtures/service` (axum on tokio, `--flush-stats` so that contention and wall
profiles have waits to show) with the preload agent, `CONTPROF_PERIOD=2`, `CONTPROF_WINDOW=1` and
every profile type (`cpu,alloc,heap,threads,contention,wall`): 30 minutes are 900 windows, the
windows of 15 hours at the default 60 s period. A second instance without the agent (the
control) gets the same requests, so that the service's own memory is told from the agent's, and
every answer of the two is compared.

The load, paced by this script (one keep-alive connection per stream and instance):
- `/work?n=300` at `--work-rate` requests/s (the fixture's ordinary handler);
- churn: `/path?k=K` with a new K every request (K = 4096, 4097, ...) at `--churn-rate`, each
  allocating `--churn-bytes` (sampled with probability 1 - exp(-bytes/512 KiB)) on K's own call
  stack (`fixtures/service/src/paths.rs`: five functions `d0`..`df` spell K in hex), every 16th
  kept live in a ring of 64. At 100/s that is 180,000 distinct allocation stacks in 30 minutes,
  2.7 times the 65,536 the agent's stack table holds: the agent must evict to keep up;
- probes: every `--new-path-every` seconds a new K (1, 2, 3, ...) starts being served, and from
  then on is served `--probe-rate` times a second for the rest of the run, allocating
  `--probe-bytes` each time: new code paths that the windows after their appearance must show.

Sampled at every period: VmRSS and VmHWM, threads and descriptors of the service, of its uploader
(the child process `cargo-contprof agent upload`, found through /proc; a new pid is a restart)
and of the control; the uploader's CPU time; the size of the uploader's spool. Every 5 minutes
and at the end: windows in the store per type (`cargo contprof prod list --format json`).

At the end (the service stopped with SIGTERM): windows collected against periods elapsed per
type, and the periods without a window; then every cpu and alloc window is exported
(`prod export`) and decoded (a small pprof reader below, checked against `go tool pprof -raw`
with `--check-decoder`): for each probe, in how many of the windows that started after its first
request it appears (on an allocation or a CPU stack), against the probability the sampling rate
gives; for churn, the share of the K requested inside a window that the window's allocation
profile shows; samples in the "did not fit" bucket (an allocation sample without a stack).
Writes `samples.csv`, `windows.csv`, `probes.csv` and `summary.json` to `--out` and prints the
figures as Markdown.
"""

import argparse
import bisect
import csv
import gzip
import http.client
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prod_agent import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]
TYPES = "cpu,alloc,heap,threads,contention,wall"
SAMPLE_MEAN = 512 << 10  # the agent's mean bytes between allocation samples
FIRST_PROBE_K = 1
FIRST_CHURN_K = 4096
DIGITS = 5  # fixtures/service/src/paths.rs


# ---------------------------------------------------------------------------------------------
# A minimal pprof (profile.proto) reader: samples as (leaf-first function names, values).


def _varint(buf, i):
    r = s = 0
    while True:
        b = buf[i]
        i += 1
        r |= (b & 0x7F) << s
        if b < 0x80:
            return r, i
        s += 7


def _fields(buf):
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            ln, i = _varint(buf, i)
            v = buf[i:i + ln]
            i += ln
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, v


def _ints(wt, v):
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def read_pprof(data):
    """(sample type names, [(leaf-first function names, values)], comments) of a gzipped pprof
    profile."""
    buf = memoryview(gzip.decompress(data))
    strings, types, raw_samples, locs, funcs, comments = [], [], [], {}, {}, []
    for f, wt, v in _fields(buf):
        if f == 6:
            strings.append(bytes(v).decode("utf-8", "replace"))
        elif f == 1:
            types.append(dict((ff, vv) for ff, _, vv in _fields(v)).get(1, 0))
        elif f == 2:
            ids, vals = [], []
            for ff, w, vv in _fields(v):
                if ff == 1:
                    ids += _ints(w, vv)
                elif ff == 2:
                    vals += _ints(w, vv)
            raw_samples.append((ids, vals))
        elif f == 4:
            lid, fns = 0, []
            for ff, w, vv in _fields(v):
                if ff == 1:
                    lid = vv
                elif ff == 4:
                    fns.append(dict((a, b) for a, _, b in _fields(vv)).get(1, 0))
            locs[lid] = fns
        elif f == 5:
            d = dict((ff, vv) for ff, _, vv in _fields(v))
            funcs[d.get(1, 0)] = d.get(2, 0)
        elif f == 13:
            comments += _ints(wt, v)
    names = {fid: strings[s] for fid, s in funcs.items()}
    samples = []
    for ids, vals in raw_samples:
        stack = [names.get(fid, "?") for lid in ids for fid in locs.get(lid, [])]
        samples.append((stack, vals))
    return [strings[t] for t in types], samples, [strings[c] for c in comments]


def window_span(comments):
    """(start, end) in seconds from a window's `contprof.window_start`/`window_end` comments."""
    d = dict(c.split("=", 1) for c in comments if c.startswith("contprof.window_"))
    return int(d["contprof.window_start"]) / 1e9, int(d["contprof.window_end"]) / 1e9


PATH_FRAME = re.compile(r"paths::d([0-9a-f])$")


def path_of(stack):
    """The K whose code path a leaf-first stack went through, or None."""
    digits = [m.group(1) for m in map(PATH_FRAME.search, reversed(stack)) if m]
    return int("".join(digits), 16) if len(digits) == DIGITS else None


def check_decoder(files):
    """Compares this reader's per-K totals with `go tool pprof -raw` on a few files."""
    for f in files:
        types, samples, _ = read_pprof(f.read_bytes())
        ours = {}
        for stack, vals in samples:
            k = path_of(stack)
            if k is not None:
                ours[k] = ours.get(k, 0) + vals[0]
        raw = subprocess.run(["go", "tool", "pprof", "-raw", str(f)], capture_output=True, text=True,
                             check=True).stdout
        theirs = {}
        body = raw.split("Samples:", 1)[1].split("Locations", 1)[0]
        for block in re.split(r"\n(?=\s+\d+(?:\s+\d+)*:)", body):
            m = re.match(r"\s+(\d+)", block)
            if not m or ":" not in block:
                continue
            ids = [int(x) for x in re.findall(r"\b(\d+)\b", block.split(":", 1)[1].split("\n")[0])]
            theirs.setdefault("_stacks", []).append((int(m.group(1)), ids))
        loc_names = {}
        locs = raw.split("Locations", 1)[1].split("Mappings", 1)[0]
        cur = None
        for line in locs.splitlines():
            m = re.match(r"\s*(\d+):\s+0x[0-9a-f]+\s+M=\d+\s+(.*)$", line)
            if m:
                cur = int(m.group(1))
                loc_names[cur] = [m.group(2).split(" ")[0]]
            elif cur is not None and line.strip() and not line.startswith("Mappings"):
                loc_names[cur].append(line.strip().split(" ")[0])
        totals = {}
        for v, ids in theirs.get("_stacks", []):
            k = path_of([n for i in ids for n in loc_names.get(i, [])])
            if k is not None:
                totals[k] = totals.get(k, 0) + v
        same = ours == totals
        print(f"decoder check {f.name}: {len(ours)} paths, {'same as' if same else 'DIFFERENT from'} "
              f"go tool pprof -raw", file=sys.stderr)
        if not same:
            raise SystemExit(f"decoder disagrees with go tool pprof on {f}: {ours} vs {totals}")


# ---------------------------------------------------------------------------------------------
# Processes


def proc_status(pid):
    """VmRSS, VmHWM, RssAnon (KiB) and Threads of `pid`, None when it is gone."""
    try:
        d = {}
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                d[k] = int(v.split()[0])
        return d
    except OSError:
        return None


# The agent's allocation tables, anonymous mappings of known sizes (harness/agent/src/linux/table.rs):
# the stack table (65,536 entries of 80 bytes) and, 32 MiB each, the frame arena and the live table,
# which the kernel merges into one 64 MiB mapping when they are adjacent.
AGENT_TABLE_KIB = (5120, 32768, 65536)


def agent_tables_kib(pid):
    """Resident KiB of the anonymous mappings whose sizes are the agent's tables' (0 for a process
    without the agent: checked on the control)."""
    total, size, anon = 0, 0, False
    try:
        for line in open(f"/proc/{pid}/smaps"):
            head = line.split()
            if "-" in head[0] and not line.startswith(("Size", "Rss")) and len(head) >= 5 and ":" not in head[0]:
                anon = len(head) == 5  # no path: anonymous
                size = 0
            elif head[0] == "Size:":
                size = int(head[1])
            elif head[0] == "Rss:" and anon and size in AGENT_TABLE_KIB:
                total += int(head[1])
    except (OSError, IndexError, ValueError):
        return -1
    return total


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def uploader_of(pid):
    """The child of `pid` running `agent upload`, or None."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            if b"agent" in cmd and b"upload" in cmd:
                return int(d)
        except (OSError, ValueError, IndexError):
            continue
    return None


def dir_bytes(root):
    total = 0
    for p in Path(root).glob("contprof-spool-*/**/*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


class Client:
    """One keep-alive HTTP/1.1 connection; counts answers and failures."""

    def __init__(self, port):
        self.port, self.conn, self.ok, self.errors = port, None, 0, 0

    def get(self, path):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                if r.status == 200:
                    self.ok += 1
                    return body
                self.errors += 1
                return None
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        self.errors += 1
        return None


class Stream(threading.Thread):
    """Requests from `next_path()` (a path and its K or None) at `rate()` per second to the
    service and the control. `log` holds (sent, answered by the service, K) for every K."""

    def __init__(self, name, ports, rate, next_path, stop):
        super().__init__(name=name, daemon=True)
        self.clients = [Client(p) for p in ports]
        self.rate, self.next_path, self.stop = rate, next_path, stop
        self.sent, self.mismatches, self.late = 0, 0, 0.0
        self.log = []

    def run(self):
        t = time.monotonic()
        while not self.stop.is_set():
            rate = self.rate()
            if rate <= 0:
                time.sleep(0.05)
                t = time.monotonic()
                continue
            path, k = self.next_path()
            sent = time.time()
            bodies = [self.clients[0].get(path)]
            answered = time.time()
            bodies += [c.get(path) for c in self.clients[1:]]
            if k is not None and bodies[0] is not None:
                self.log.append((sent, answered, k))
            self.sent += 1
            if len(bodies) == 2 and None not in bodies and bodies[0] != bodies[1]:
                self.mismatches += 1
            t += 1 / rate
            now = time.monotonic()
            if t > now:
                time.sleep(t - now)
            elif now - t > 1:  # too far behind: do not burst
                self.late += now - t
                t = now


# ---------------------------------------------------------------------------------------------


def prod_list(tool, store):
    out = subprocess.run([tool, "contprof", "prod", "list", "--store", str(store), "--service", "soak",
                          "--since", "7d", "--format", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return json.loads(out.stdout)["windows"]


def window_start(name):
    """Start (epoch seconds) in a window key or exported file name: `..._<start>_<version>_...`."""
    m = re.search(r"(?:^|[_/])(\d{9,})_", name)
    return int(m.group(1)) if m else None


def summarize_series(xs):
    return {"first": xs[0], "last": xs[-1], "max": max(xs), "min": min(xs)}


def slope_per_hour(ts, ys):
    """Least-squares slope of ys over ts (seconds), per hour."""
    if len(ts) < 3:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 3600 if den else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="a release build of cargo-contprof")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--period", type=float, default=2)
    ap.add_argument("--window", type=float, default=1)
    ap.add_argument("--work-rate", type=float, default=50)
    ap.add_argument("--churn-rate", type=float, default=100)
    ap.add_argument("--churn-bytes", type=int, default=2 << 20)
    ap.add_argument("--new-path-every", type=float, default=30)
    ap.add_argument("--probe-rate", type=float, default=3)
    ap.add_argument("--probe-bytes", type=int, default=1 << 20)
    ap.add_argument("--no-control", action="store_true", help="no second instance without the agent")
    ap.add_argument("--check-decoder", type=int, default=3, metavar="N",
                    help="compare the pprof reader with go tool pprof -raw on N windows (0: no)")
    ap.add_argument("--out", help="where to keep the store and the CSV files (default: a temporary dir)")
    a = ap.parse_args()
    tool = os.path.abspath(a.tool)
    out = Path(a.out or tempfile.mkdtemp(prefix="soak-"))
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    store, spool_tmp = out / "store", out / "tmp"
    spool_tmp.mkdir()

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "service", "--manifest-path",
                    str(ROOT / "fixtures/Cargo.toml")], check=True)
    service_bin = ROOT / "fixtures/target/release/service"
    lib = subprocess.run([tool, "contprof", "agent", "path", "--dir", str(out / "agent")], check=True,
                         capture_output=True, text=True).stdout.strip()

    def start(name, agent):
        port = free_port()
        env = dict(os.environ, TMPDIR=str(spool_tmp))
        if agent:
            env.update({"LD_PRELOAD": lib, "CONTPROF_SERVICE": "soak", "CONTPROF_VERSION": "1.0",
                        "CONTPROF_INSTANCE": "soak-1", "CONTPROF_STORE": str(store),
                        "CONTPROF_PERIOD": str(a.period), "CONTPROF_WINDOW": str(a.window),
                        "CONTPROF_TYPES": TYPES, "CONTPROF_HELPER": tool})
        log = open(out / f"{name}.stderr", "w")
        p = subprocess.Popen([str(service_bin), str(port), "--flush-stats"], env=env, stdout=log, stderr=log)
        wait_listening(port, 30)
        return p, port

    svc, port = start("service", True)
    control = None if a.no_control else start("control", False)
    ports = [port] + ([control[1]] if control else [])
    print(f"soak: service pid {svc.pid} on {port}, control {control[0].pid if control else '-'}, "
          f"output in {out}", file=sys.stderr)

    stop = threading.Event()
    t0 = time.time()
    probes_started = set()
    counters = {"churn": 0, "probe": 0}

    def churn_path():
        i = counters["churn"]
        counters["churn"] += 1
        k = FIRST_CHURN_K + i
        return f"/path?k={k}&bytes={a.churn_bytes}&keep={1 if i % 16 == 0 else 0}", k

    def active_probes():
        return int((time.time() - t0) // a.new_path_every)

    def probe_path():
        n = active_probes()
        new = [k for k in range(FIRST_PROBE_K, FIRST_PROBE_K + n) if k not in probes_started]
        if new:
            k = new[0]
            probes_started.add(k)
        else:
            i = counters["probe"]
            counters["probe"] += 1
            k = FIRST_PROBE_K + i % n
        return f"/path?k={k}&bytes={a.probe_bytes}", k

    streams = [
        Stream("work", ports, lambda: a.work_rate, lambda: ("/work?n=300", None), stop),
        Stream("churn", ports, lambda: a.churn_rate, churn_path, stop),
        Stream("probes", ports, lambda: a.probe_rate * active_probes(), probe_path, stop),
    ]
    for s in streams:
        s.start()

    samples = []
    listings = []
    uploader_pids = []
    duration = a.minutes * 60
    next_list = t0 + 300
    next_sample = t0
    while time.time() - t0 < duration:
        now = time.time()
        up = uploader_of(svc.pid)
        if up is not None and (not uploader_pids or uploader_pids[-1] != up):
            uploader_pids.append(up)
        s, u = proc_status(svc.pid), proc_status(up) if up else None
        c = proc_status(control[0].pid) if control else None
        if s is None:
            print("soak: the service is gone", file=sys.stderr)
            break
        samples.append({
            "t": round(now - t0, 1), "svc_rss": s["VmRSS"], "svc_hwm": s["VmHWM"], "svc_anon": s["RssAnon"],
            "svc_tables": agent_tables_kib(svc.pid), "svc_threads": s["Threads"],
            "svc_fds": fd_count(svc.pid), "svc_cpu": cpu_seconds(svc.pid),
            "up_pid": up or 0, "up_rss": u["VmRSS"] if u else 0, "up_hwm": u["VmHWM"] if u else 0,
            "up_anon": u["RssAnon"] if u else 0,
            "up_fds": fd_count(up) if up else 0, "up_cpu": cpu_seconds(up) if up else 0.0,
            "spool": dir_bytes(spool_tmp),
            "ctl_rss": c["VmRSS"] if c else 0, "ctl_hwm": c["VmHWM"] if c else 0, "ctl_anon": c["RssAnon"] if c else 0,
            "ctl_tables": agent_tables_kib(control[0].pid) if control else 0,
            "ctl_cpu": cpu_seconds(control[0].pid) if control else 0.0,
            "churn_sent": counters["churn"], "probes_active": active_probes(),
        })
        if now >= next_list:
            listing = prod_list(tool, store)
            counts = {}
            for w in listing:
                counts[w["type"]] = counts.get(w["type"], 0) + 1
            listings.append({"t": round(now - t0), **counts})
            print(f"soak: {now - t0:.0f} s, service RSS {s['VmRSS'] / 1024:.1f} MiB, uploader "
                  f"{(u or {}).get('VmRSS', 0) / 1024:.1f} MiB, windows {counts}", file=sys.stderr)
            next_list += 300
        next_sample += a.period
        time.sleep(max(0.0, next_sample - time.time()))

    t_load_end = time.time()
    stop.set()
    for s in streams:
        s.join(timeout=60)
    time.sleep(2 * a.period)
    t_stop = time.time()
    svc.send_signal(signal.SIGTERM)
    try:
        svc_status = svc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        svc_status = "did not stop within 60 s"
        svc.kill()
        svc.wait()
    stopped_in = time.time() - t_stop
    uploader_left = [p for p in uploader_pids if proc_status(p) is not None]
    deadline = time.time() + 40
    while uploader_left and time.time() < deadline:
        time.sleep(0.5)
        uploader_left = [p for p in uploader_pids if proc_status(p) is not None]
    if control:
        control[0].send_signal(signal.SIGTERM)
        control[0].wait(timeout=60)

    # Windows in the store.
    listing = prod_list(tool, store)
    per_type = {}
    for w in listing:
        per_type.setdefault(w["type"], set()).add(window_start(w["path"]))
    first = min(min(v) for v in per_type.values()) if per_type else 0
    period = a.period
    expected = [first + i * period for i in range(int((t_stop - first) // period) + 1)] if per_type else []

    # The windows' contents.
    exported = out / "exported"
    for t in ("cpu", "alloc"):
        subprocess.run([tool, "contprof", "prod", "export", "--store", str(store), "--service", "soak",
                        "--since", "7d", "--type", t, str(exported / t)], check=True, capture_output=True)
    files = {t: sorted((exported / t).glob("*.pb.gz"), key=lambda f: window_start(f.name)) for t in ("cpu", "alloc")}
    if a.check_decoder:
        step = max(1, len(files["alloc"]) // a.check_decoder)
        check_decoder(files["alloc"][::step][:a.check_decoder])
    seen = {"cpu": {}, "alloc": {}}  # key start -> set of K
    span = {}  # key start -> (window start, window end) in seconds, from the alloc window
    dropped = {}  # alloc window start -> (samples without a stack, allocation samples)
    for t, fs in files.items():
        for f in fs:
            start = window_start(f.name)
            types, ss, comments = read_pprof(f.read_bytes())
            col = types.index("samples" if t == "cpu" else "alloc_objects")
            ks = set()
            nostack = total = 0
            for stack, vals in ss:
                if vals[col] <= 0:
                    continue
                total += 1
                if not stack:
                    nostack += 1
                k = path_of(stack)
                if k is not None:
                    ks.add(k)
            seen[t][start] = ks
            if t == "alloc":
                dropped[start] = (nostack, total)
                span[start] = window_span(comments)

    # Probes: the windows that opened after the probe's first answer and closed before the load
    # stopped.
    starts = sorted(span)
    probe_log = streams[2].log
    probe_first = {}
    for _, answered, k in probe_log:
        probe_first.setdefault(k, answered)
    probe_rows = []
    for k, t_first in sorted(probe_first.items()):
        after = [s for s in starts if span[s][0] >= t_first and span[s][1] <= t_load_end]
        in_alloc = sum(1 for s in after if k in seen["alloc"].get(s, ()))
        in_cpu = sum(1 for s in after if k in seen["cpu"].get(s, ()))
        in_any = sum(1 for s in after if k in seen["alloc"].get(s, ()) or k in seen["cpu"].get(s, ()))
        first_seen = next((i for i, s in enumerate(after) if k in seen["alloc"].get(s, ())
                           or k in seen["cpu"].get(s, ())), None)
        probe_rows.append({"k": k, "appeared_s": round(t_first - t0, 1), "windows_after": len(after),
                           "in_alloc": in_alloc, "in_cpu": in_cpu, "in_any": in_any,
                           "first_seen_window": first_seen if first_seen is not None else ""})
    # The chance that sampling catches a probe in a window: probe_rate requests a second of
    # probe_bytes each, over the window's own length (a window is not always exactly `window`).
    lam = a.probe_rate * a.probe_bytes / SAMPLE_MEAN
    chances = [1 - math.exp(-lam * (span[s][1] - span[s][0])) for r in probe_rows for s in starts
               if span[s][0] >= probe_first[r["k"]] and span[s][1] <= t_load_end]
    p_probe = statistics.fmean(chances) if chances else 0.0

    # Churn: each K sent and answered inside a window, was it in that window's allocation profile?
    churn_log = sorted(streams[1].log)
    churn_times = [x[0] for x in churn_log]
    churn_in, churn_seen = 0, 0
    churn_by_bucket = {}
    for s in starts:
        ws, we = span[s]
        lo = bisect.bisect_left(churn_times, ws)
        hi = bisect.bisect_left(churn_times, we)
        inside = [k for _, answered, k in churn_log[lo:hi] if answered <= we]
        ks = seen["alloc"][s]
        n_seen = sum(1 for k in inside if k in ks)
        churn_in += len(inside)
        churn_seen += n_seen
        b = int((ws - t0) // 300)
        if inside:
            bi, bs = churn_by_bucket.get(b, (0, 0))
            churn_by_bucket[b] = (bi + len(inside), bs + n_seen)
    p_churn = 1 - math.exp(-a.churn_bytes / SAMPLE_MEAN)
    latencies = sorted(answered - sent for sent, answered, _ in churn_log)
    churn_latency_ms = {q: round(latencies[int(len(latencies) * q / 100) - 1] * 1000, 1) for q in (50, 99)} \
        if latencies else {}
    distinct_churn_seen = len({k for ks in seen["alloc"].values() for k in ks if k >= FIRST_CHURN_K})

    # Files.
    with open(out / "samples.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0]))
        w.writeheader()
        w.writerows(samples)
    with open(out / "probes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(probe_rows[0]) if probe_rows else ["k"])
        w.writeheader()
        w.writerows(probe_rows)
    with open(out / "windows.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", *sorted(per_type), "alloc_samples", "alloc_no_stack", "probes_in_alloc",
                    "churn_in_alloc"])
        for s in expected:
            n, tot = dropped.get(s, (0, 0))
            ks = seen["alloc"].get(s, set())
            w.writerow([s, *(int(s in per_type[t]) for t in sorted(per_type)), tot, n,
                        sum(1 for k in ks if k < FIRST_CHURN_K), sum(1 for k in ks if k >= FIRST_CHURN_K)])

    # Report.
    mib = lambda kib: kib / 1024  # noqa: E731
    ts = [r["t"] for r in samples]
    half = [i for i, r in enumerate(samples) if r["t"] >= ts[-1] / 2]
    summary = {
        "minutes": a.minutes, "period": a.period, "window": a.window, "types": TYPES,
        "requests": {s.name: s.sent for s in streams}, "errors": {s.name: sum(c.errors for c in s.clients)
                                                                   for s in streams},
        "answers_differing_from_control": {s.name: s.mismatches for s in streams},
        "seconds_behind_schedule": {s.name: round(s.late, 1) for s in streams},
        "service_exit": svc_status, "service_stopped_in_s": round(stopped_in, 1),
        "uploader_pids": uploader_pids, "uploaders_alive_40s_after_exit": uploader_left,
        "periods": len(expected), "windows": {t: len(v) for t, v in sorted(per_type.items())},
        "periods_without_window": {t: len([s for s in expected if s not in v]) for t, v in sorted(per_type.items())},
        "probes": len(probe_rows), "probe_p_expected": round(p_probe, 4),
        "probe_window_share": {
            key: round(sum(r[key] for r in probe_rows) / max(1, sum(r["windows_after"] for r in probe_rows)), 4)
            for key in ("in_alloc", "in_cpu", "in_any")},
        "probes_never_seen": [r["k"] for r in probe_rows if r["windows_after"] and r["in_any"] == 0],
        "churn_requested_in_windows": churn_in, "churn_seen": churn_seen,
        "churn_p_expected": round(p_churn, 4), "distinct_churn_stacks_seen": distinct_churn_seen,
        "churn_latency_ms": churn_latency_ms,
        "churn_by_5min": {b * 5: round(s / max(1, i), 4) for b, (i, s) in sorted(churn_by_bucket.items())},
        "alloc_samples_without_stack": sum(n for n, _ in dropped.values()),
        "alloc_samples": sum(t for _, t in dropped.values()),
        "listings": listings,
    }
    for key in ("svc_rss", "svc_hwm", "svc_anon", "svc_tables", "up_rss", "up_hwm", "up_anon", "ctl_rss", "ctl_anon",
                "ctl_tables", "svc_fds", "up_fds", "svc_threads"):
        xs = [r[key] for r in samples]
        summary[key] = summarize_series(xs)
        summary[key + "_slope_second_half_per_hour"] = round(
            slope_per_hour([ts[i] for i in half], [xs[i] for i in half]), 1)
    up_cpu = max(r["up_cpu"] for r in samples)
    summary["uploader_cpu_ms_per_window"] = round(up_cpu / max(1, len(per_type.get("cpu", ()))) * 1000, 1)
    json.dump(summary, open(out / "summary.json", "w"), indent=2)

    print(f"\n## Soak: {a.minutes:g} min, period {a.period:g} s, window {a.window:g} s, "
          f"CONTPROF_TYPES={TYPES}\n")
    print(f"Requests: {summary['requests']} (errors {summary['errors']}, answers differing from the "
          f"control {summary['answers_differing_from_control']}).")
    print(f"The service exited with {svc_status} {stopped_in:.1f} s after SIGTERM; uploader pids over the run: "
          f"{uploader_pids}; alive 40 s after: {uploader_left or 'none'}.\n")
    print("| memory (MiB) | first | last | max | slope over the second half |")
    print("|---|---|---|---|---|")
    for key, name in (("svc_rss", "service VmRSS"), ("svc_anon", "service RssAnon"),
                      ("svc_tables", "the agent's tables in the service (resident)"),
                      ("ctl_rss", "control (no agent) VmRSS"), ("ctl_anon", "control RssAnon"),
                      ("up_rss", "uploader VmRSS"), ("up_anon", "uploader RssAnon"), ("up_hwm", "uploader VmHWM")):
        x = summary[key]
        print(f"| {name} | {mib(x['first']):.1f} | {mib(x['last']):.1f} | {mib(x['max']):.1f} | "
              f"{summary[key + '_slope_second_half_per_hour'] / 1024:+.2f} MiB/h |")
    print(f"\nDescriptors: service {summary['svc_fds']}, uploader {summary['up_fds']}; "
          f"threads {summary['svc_threads']}. Uploader CPU {summary['uploader_cpu_ms_per_window']} ms per window.")
    print(f"\nWindows: {len(expected)} periods; per type " + ", ".join(
        f"{t} {n} ({summary['periods_without_window'][t]} missing)" for t, n in summary["windows"].items()))
    share = summary["probe_window_share"]
    print(f"\nNew code paths: {len(probe_rows)} appeared (one every {a.new_path_every:g} s); "
          f"{len(probe_rows) - len(summary['probes_never_seen'])} seen in the windows after they appeared; "
          f"per window after appearance: alloc {share['in_alloc']:.1%} (sampling gives {p_probe:.1%}), "
          f"cpu {share['in_cpu']:.1%}, either {share['in_any']:.1%}.")
    print(f"Churn: {churn_seen} of {churn_in} one-off paths requested inside a window were in its alloc "
          f"profile ({churn_seen / max(1, churn_in):.1%}; sampling gives {p_churn:.1%}); "
          f"{distinct_churn_seen} distinct churn stacks seen over the run; answer time p50/p99 "
          f"{churn_latency_ms}; by 5-minute span: "
          f"{summary['churn_by_5min']}.")
    print(f"Allocation samples without a stack (the 'did not fit' bucket): "
          f"{summary['alloc_samples_without_stack']} of {summary['alloc_samples']}.")
    print(f"\nFiles: {out}")
    if not a.out:
        shutil.rmtree(out / "exported", ignore_errors=True)


if __name__ == "__main__":
    main()
