#!/usr/bin/env python3
"""The cost of frame pointers and of walking the unwind tables, on a real workload. By hand only.

    tests/measure/unwind_cost.py AGENT_LIB BINARY_WITH_FP BINARY_WITHOUT_FP [ROUNDS [-- ARGS...]]

BINARY_WITH_FP and BINARY_WITHOUT_FP are the same program built with
RUSTFLAGS=-Cforce-frame-pointers=yes and =no (e.g. a real crate's example, see
tests/measure/real_crates.sh). AGENT_LIB is the preload library (`cargo contprof` installs it
under target/contprof/agent/). Each configuration runs ROUNDS times (default 7), interleaved
round by round; the figure is the median CPU time (user + system, from wait4) as a ratio to the
frame-pointer build run without the agent.
"""
import os, statistics, subprocess, sys, tempfile

argv = sys.argv[1:]
program_args = argv[argv.index("--") + 1:] if "--" in argv else []
argv = argv[:argv.index("--")] if "--" in argv else argv
agent, with_fp, without_fp = argv[:3]
rounds = int(argv[3]) if len(argv) > 3 else 7
raw = os.path.join(tempfile.mkdtemp(), "run.raw")

def agent_env(frequency, alloc, walk):
    env = dict(os.environ, LD_PRELOAD=agent, CONTPROF_OUTPUT=raw, CONTPROF_FREQUENCY=str(frequency),
               CONTPROF_ALLOC=alloc, CONTPROF_PERF="1" if frequency > 250 else "0")
    if walk == "frame-pointers":
        env["CONTPROF_UNWIND"] = "frame-pointers"
    return env

configs = [
    ("frame pointers, unprofiled", with_fp, None),
    ("no frame pointers, unprofiled", without_fp, None),
    ("frame pointers, 250 Hz + sampled alloc (default), tables", with_fp, (250, "sampled", "tables")),
    ("frame pointers, 250 Hz + sampled alloc, frame-pointer walk", with_fp, (250, "sampled", "frame-pointers")),
    ("no frame pointers, 250 Hz + sampled alloc, tables", without_fp, (250, "sampled", "tables")),
    ("frame pointers, 999 Hz, tables", with_fp, (999, "off", "tables")),
    ("no frame pointers, 999 Hz, tables", without_fp, (999, "off", "tables")),
    ("frame pointers, exact alloc, tables", with_fp, (250, "exact", "tables")),
    ("frame pointers, exact alloc, frame-pointer walk", with_fp, (250, "exact", "frame-pointers")),
    ("no frame pointers, exact alloc, tables", without_fp, (250, "exact", "tables")),
]

def cpu(binary, env):
    p = subprocess.Popen([binary, *program_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0, f"{binary} failed: {status}"
    return ru.ru_utime + ru.ru_stime

times = {name: [] for name, _, _ in configs}
for _ in range(rounds):
    for name, binary, cfg in configs:
        times[name].append(cpu(binary, agent_env(*cfg) if cfg else dict(os.environ)))
base = statistics.median(times[configs[0][0]])
print(f"| configuration | CPU time vs the frame-pointer build unprofiled (median of {rounds}) |")
print("|---|---|")
for name, _, _ in configs:
    m = statistics.median(times[name])
    print(f"| {name} | {m / base:.3f}x ({m:.2f} s) |")
