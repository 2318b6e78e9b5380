#!/usr/bin/env python3
"""The error of `--wall` against wall time the `off_cpu` fixture measured itself. By hand only.

    tests/measure/wall_accuracy.py CARGO_CONTPROF [ROUNDS] [--load] [--wall-frequency HZ]

Runs `cargo contprof run --bin off_cpu --wall` ROUNDS times (default 5) per mode of the fixture
(`sleep`: 30% of a thread's wall time asleep; `channel`: a producer blocked on a slow consumer) and
prints, per function, the profile's wall time under it (its total, read with `go tool pprof`)
against the fixture's own `measured wall:` line, as the median and the range of the relative
error. `--load` keeps every core busy with a spinning process meanwhile: the sampler thread then
waits for a core, and wakes more often when a thread blocks, which shows as a bias toward off-CPU
stacks. `--wall-frequency` is passed on (default 100 Hz, where a 1 s run has ~30 samples of
`nap`: sampling noise alone is then about ±17%).
"""
import os, re, statistics, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tool = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 5
load = "--load" in sys.argv
frequency = sys.argv[sys.argv.index("--wall-frequency") + 1] if "--wall-frequency" in sys.argv else "100"
cases = {"sleep": ["off_cpu::compute", "off_cpu::nap"], "channel": ["off_cpu::produce"]}

def wall_under(profile, function):
    top = subprocess.run(["go", "tool", "pprof", "-sample_index=wall", "-unit=ms", "-top", "-cum",
                          "-nodecount=1000", profile], capture_output=True, text=True, check=True).stdout
    for line in top.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == function:
            return float(fields[3].rstrip("ms")) * 1e6
    return 0.0

hogs = []
if load:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
try:
    errors = {f: [] for fs in cases.values() for f in fs}
    for _ in range(rounds):
        for mode, functions in cases.items():
            out = tempfile.mkdtemp()
            run = subprocess.run([tool, "contprof", "run", "--manifest-path", f"{root}/fixtures/Cargo.toml",
                                  "--bin", "off_cpu", "--wall-frequency", frequency, "--no-store", "--top", "0", "-o", out,
                                  "--", mode], capture_output=True, text=True, check=True)
            for f in functions:
                measured = float(re.search(rf"measured wall: {re.escape(f)}=(\d+) ns", run.stderr).group(1))
                errors[f].append(wall_under(f"{out}/profile.pb.gz", f) / measured - 1)
finally:
    for h in hogs:
        h.kill()
print(f"{rounds} rounds at {frequency} Hz{', every core busy' if load else ''}:")
for f, e in errors.items():
    print(f"  {f:<20} median {statistics.median(e):+.1%}  range {min(e):+.1%} .. {max(e):+.1%}")
