#!/usr/bin/env python3
"""The agent's cost on allocation-heavy Rust code from crates.io, measured as a new user would.

Run by hand, not in CI (a few minutes on the 2-core VM; nothing else should run meanwhile):

    cargo build --release --locked -p cargo-contprof
    tests/measure/alloc_overhead.py --tool target/release/cargo-contprof [--rounds 21]

Builds two workloads from published crates with the profiling profile that `cargo contprof run`
uses (release, `debug = "limited"`): serde_json 1.0.154 round trips (tests/measure/real/serde_json.rs:
order documents built as `Value`, serialized compact and pretty, parsed back; ~18 M malloc/free
calls per second; 60 rounds instead of the 7 of real_crates.sh) and pulldown-cmark 0.13.6 rendering Markdown to HTML
(tests/measure/real/pulldown-cmark.rs, 80 rounds instead of 14). Each is run under the preload library directly, in every
configuration below, the configurations interleaved round by round, in a shuffled order, so that drift falls on all
of them alike. The figure is the CPU time the kernel charged to the process (user + system, from
wait4), as the median over the rounds, and its ratio to the runs without the agent; beside it the
paired ratio (the median of each round's ratio to that round's run without the agent), which
divides out drift slower than a round and is the tighter of the two on a drifting VM. Next to it,
for the configurations that sample CPU: the share of CPU that the profiles of those same runs give
`[contprof agent]` (its total: the agent's own code and what it calls; the raw files are imported
into a temporary store, exported as pprof and read with `go tool pprof -top`, all rounds merged).
The profile can only show what the agent's own instructions cost while the CPU timer runs; the
ratio also holds the cost it cannot see (the timer's signals, the start and the end). Beside each
ratio, a 95% bootstrap interval over the rounds says how much the VM's spread leaves it uncertain.
The load average is printed before and after each workload: timings mean little above ~1.5 on 2
cores.

Configurations (the environment `cargo contprof run` gives a workload, and the production agent's
between-window state):
  none          no agent
  defaults      CONTPROF_FREQUENCY=250, sampled allocations every 512 KiB (run's defaults)
  alloc-off     CONTPROF_FREQUENCY=250, CONTPROF_ALLOC=off, the lean build (no allocation hooks:
                what `run` preloads when allocations are off, `agent path --no-alloc`)
  off-full      the same with the full build (its hooks forward every call: `agent path` with
                CONTPROF_ALLOC=off)
  cpu999-off    CONTPROF_FREQUENCY=999, CONTPROF_ALLOC=off, the lean build
  sampled-only  CONTPROF_FREQUENCY=0, sampled allocations (the hooks' own cost, no CPU timer)
  exact         CONTPROF_FREQUENCY=0, CONTPROF_ALLOC=exact (every allocation recorded)
  lean-2000     the lean build at 2000 Hz (what the timer's rate costs)
  empty-250     no agent: tests/measure/empty_timer.c preloaded, the timer the agent uses at 250 Hz
                (a POSIX timer on the thread's CPU clock, SIGPROF) with an empty handler: the floor
                any in-process sampler pays for its timer on this machine, before it does any work
  empty-2000    the same at 2000 Hz, with the timer the agent uses there (a perf cpu-clock event);
                with lean-2000: the per-signal cost, agent against floor
Every agent configuration gets CONTPROF_PERF as `run` sets it: 1 above 250 Hz (the perf timer), 0
at or below (the tick-driven per-thread timer).
"""

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name: (crate, version, workload source, (round loop as written, as run here: about 1.5 s))
WORKLOADS = {
    "serde_json": ("serde_json", "1.0.154", HERE / "real/serde_json.rs", ("0..7u64", "0..60u64")),
    "pulldown-cmark": ("pulldown-cmark", "0.13.6", HERE / "real/pulldown-cmark.rs", ("0..14 {", "0..80 {")),
}
CONFIGS = {
    "none": None,
    "defaults": {"CONTPROF_FREQUENCY": "250"},
    "alloc-off": {"CONTPROF_FREQUENCY": "250", "CONTPROF_ALLOC": "off"},
    "off-full": {"CONTPROF_FREQUENCY": "250", "CONTPROF_ALLOC": "off"},
    "cpu999-off": {"CONTPROF_FREQUENCY": "999", "CONTPROF_ALLOC": "off"},
    "sampled-only": {"CONTPROF_FREQUENCY": "0"},
    "exact": {"CONTPROF_FREQUENCY": "0", "CONTPROF_ALLOC": "exact"},
    "lean-2000": {"CONTPROF_FREQUENCY": "2000", "CONTPROF_ALLOC": "off"},
    "empty-250": {"EMPTY_TIMER_HZ": "250", "EMPTY_TIMER_CLOCK": "thread"},
    "empty-2000": {"EMPTY_TIMER_HZ": "2000"},
}
# Preloaded with the lean build (the others with the full one).
LEAN = {"alloc-off", "cpu999-off", "lean-2000"}
# Preloaded with the empty-handler timer (tests/measure/empty_timer.c), not the agent.
EMPTY = {"empty-250", "empty-2000"}


def build_empty_timer(work: Path) -> str:
    """tests/measure/empty_timer.c as a preload library."""
    out = work / "empty_timer.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(out), str(HERE / "empty_timer.c")], check=True)
    return str(out)


def build(work: Path) -> dict:
    """A crate with one example per workload, built with the profiling profile."""
    crate = work / "alloc-workloads"
    (crate / "examples").mkdir(parents=True, exist_ok=True)
    (crate / "src").mkdir(exist_ok=True)
    (crate / "src/lib.rs").write_text("//! Allocation-heavy workloads: see examples/.\n")
    deps = "\n".join(f'{name} = "={ver}"' for name, ver, _, _ in WORKLOADS.values())
    (crate / "Cargo.toml").write_text(
        f"""[package]
name = "alloc-workloads"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
{deps}

[profile.release]
debug = "limited"

[workspace]
"""
    )
    bins = {}
    for key, (_, _, src, (rounds, longer)) in WORKLOADS.items():
        text = src.read_text()
        assert rounds in text, f"{src} has no {rounds}"
        text = text.replace(rounds, longer, 1)
        # The pulldown-cmark workload includes the crate's README: give it a Markdown text.
        text = text.replace('include_str!("../../README.md")', 'include_str!("../README.md")')
        name = key.replace("-", "_")
        (crate / "examples" / f"{name}.rs").write_text(text)
        bins[key] = crate / "target/release/examples" / name
    (crate / "README.md").write_text(markdown_input())
    subprocess.run(["cargo", "build", "--release", "--quiet", "--examples"], cwd=crate, check=True)
    return bins


# The Markdown text the pulldown-cmark workload renders: the project's README as it last was before
# it moved into the book (docs/), about 100 KB, the text the figures were measured on give or take
# a few edits; fixed, so that the workload no longer changes with the documentation.
README_COMMIT = "2d6d464eda9f1a91f09870ba8e570b6fc51e2994"


def markdown_input() -> str:
    return subprocess.run(
        ["git", "show", f"{README_COMMIT}:README.md"],
        cwd=HERE.parents[1],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def cpu_of(cmd, env) -> float:
    full = dict(os.environ)
    full.update(env)
    p = subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"{cmd} failed under {env}: status {status}")
    return ru.ru_utime + ru.ru_stime


def agent_share(tool: str, raws: list, work: Path) -> str:
    """The share of CPU the profiles of `raws` give `[contprof agent]` (its total, `cum`)."""
    store, out = work / "store", work / "export"
    imported = subprocess.run([tool, "contprof", "import", "--store", str(store), "--group", "share", *raws],
                              capture_output=True, text=True)
    m = re.search(r"as run (\S+)", imported.stdout + imported.stderr)
    if imported.returncode != 0 or not m:
        return f"import failed: {imported.stderr.strip()[-200:]}"
    subprocess.run([tool, "contprof", "export", m.group(1), str(out), "--store", str(store)],
                   check=True, capture_output=True)
    files = sorted(str(f) for f in out.glob("*.pb.gz"))
    top = subprocess.run(["go", "tool", "pprof", "-top", "-sample_index=cpu", "-nodecount=100000", *files],
                         capture_output=True, text=True)
    if top.returncode != 0:
        return f"go tool pprof failed: {top.stderr.strip()[-200:]}"
    for line in top.stdout.splitlines():
        cols = line.split()
        if line.rstrip().endswith("[contprof agent]") and len(cols) >= 6:
            return cols[4]
    return "0%"


def paired(times, base, resamples=2000) -> str:
    """The median over the rounds of each round's ratio to the run without the agent in the same
    round, with a 95% bootstrap interval over the rounds: drift that lasts longer than a round
    (the host's speed, a neighbour) divides out, which the ratio of medians leaves in."""
    ratios = [t / b for t, b in zip(times, base)]
    rng = random.Random(13)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return (f"{statistics.median(ratios):.3f}x "
            f"({boot[int(0.025 * resamples)]:.3f}-{boot[int(0.975 * resamples) - 1]:.3f})")


def ratio_interval(times, base, resamples=2000) -> str:
    """A 95% bootstrap interval of the ratio of medians: the rounds of each configuration
    resampled with replacement (seeded), the 2.5th and 97.5th percentiles of the ratios. Says how
    far the VM's run-to-run spread leaves the median ratio uncertain."""
    rng = random.Random(11)
    ratios = sorted(
        statistics.median(rng.choices(times, k=len(times))) / statistics.median(rng.choices(base, k=len(base)))
        for _ in range(resamples)
    )
    return f"{ratios[int(0.025 * resamples)]:.3f}-{ratios[int(0.975 * resamples) - 1]:.3f}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="the cargo-contprof binary (its embedded agent is measured)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--work", default="/work/measure/alloc-overhead")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bins = build(work)
    lib = subprocess.run([args.tool, "contprof", "agent", "path", "--dir", str(work / "agent")],
                         check=True, capture_output=True, text=True).stdout.strip()
    lean = subprocess.run([args.tool, "contprof", "agent", "path", "--no-alloc", "--dir", str(work / "agent")],
                          check=True, capture_output=True, text=True).stdout.strip()
    empty = build_empty_timer(work)
    configs = args.configs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.workloads.split(","):
            print(f"{key}: load average before {load()}")
            times = {c: [] for c in configs}
            raws = {c: [] for c in configs}
            # The order of the configurations is shuffled in every round (seeded: the same on every
            # invocation): with a fixed order, whatever drifts within a round (the host's frequency
            # after a second of load, a neighbour's period) falls on the same configuration every
            # time. The medians of 7 rounds in a fixed order put the lean build 3% above no agent.
            rng = random.Random(7)
            for r in range(args.rounds):
                order = list(configs)
                rng.shuffle(order)
                for c in order:
                    env = {}
                    if c in EMPTY:
                        env = {"LD_PRELOAD": empty, **CONFIGS[c]}
                    elif CONFIGS[c] is not None:
                        raw = f"{tmp}/{key}-{c}-{r}.raw"
                        raws[c].append(raw)
                        chosen = lean if c in LEAN else lib
                        env = {"LD_PRELOAD": chosen, "CONTPROF_OUTPUT": raw, **CONFIGS[c]}
                        # As `run` does: the perf timer only above the tick-driven timer's range.
                        hz = int(env.get("CONTPROF_FREQUENCY", "499"))
                        env.setdefault("CONTPROF_PERF", "1" if hz > 250 else "0")
                    times[c].append(cpu_of([str(bins[key])], env))
            base = statistics.median(times["none"]) if "none" in times else None
            print(f"{key}: CPU user+system, median of {args.rounds} interleaved rounds; load average after {load()}")
            print(f"  {'':13} {'CPU':>9}  {'ratio':>7}  {'95% interval':>15}   {'paired, 95% interval':>22}   "
                  f"{'[contprof agent] in the profiles':>32}   range")
            for c in configs:
                med = statistics.median(times[c])
                ratio = f"{med / base:.3f}x" if base else "-"
                interval = ratio_interval(times[c], times["none"]) if base and c != "none" else "-"
                pairs = paired(times[c], times["none"]) if base and c != "none" else "-"
                spread = f"{min(times[c]):.3f}..{max(times[c]):.3f}"
                samples_cpu = c not in EMPTY and CONFIGS[c] is not None and CONFIGS[c].get("CONTPROF_FREQUENCY") != "0"
                share = agent_share(args.tool, raws[c], Path(tmp) / f"{key}-{c}") if samples_cpu else "-"
                print(f"  {c:13} {med:7.3f} s  {ratio:>7}  {interval:>15}   {pairs:>22}   {share:>32}   ({spread})")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
