#!/usr/bin/env python3
"""Judge again, with another build of the tool, the checks a caller_change.sh run recorded.

Every check of `tests/measure/caller_change.sh` stores its runs and keeps its report (the run ids
of both sides are in `report.json`). A change of the statistical method needs no new recording:
this script runs `cargo contprof compare <base runs> <head runs>` on the same stored runs with
BIN and tells, per scenario, what the old report said and what BIN says now: how many checks
gated, how many named the regressed functions (NAMED, a regular expression), and how many
functions were reported as moved. Deterministic for a given store (no new runs), ~0.5 s a check.

    tests/measure/rejudge.py --work /work/measure/caller-change-serde_json \\
        --named 'serde_json::de|serde_json::read|serde_json::value::de|from_str' \\
        --bin target/release/cargo-contprof

By hand only, never in CI.
"""
import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def judge(bin_path, work, scenario, report):
    runs = [report[side]["extra"]["runs"].replace(" ", "") for side in ("base", "head")]
    out = subprocess.run(
        [bin_path, "contprof", "compare", runs[0], runs[1], "--format", "json", "--no-flamegraphs",
         "--store", str(work / f"store-{report['_bin']}"),
         "--manifest-path", "contprof-workload/Cargo.toml"],
        cwd=work / "wt" / scenario, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"compare failed in {scenario}: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def summary(report, named):
    regressions = [e for e in report["regressions"] if e["metric"] == "cpu"]
    return {
        "gated": bool(report["regressions"]),
        "named": any(re.search(named, e["function"]) for e in regressions),
        "moved": len([e for e in report.get("moved", []) if e["kind"] == "self"]),
        "regressed": sorted({e["function"].split("::")[-1] for e in report["regressions"]}),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="caller_change.sh's WORK directory")
    ap.add_argument("--named", required=True, help="regular expression of the regressed functions")
    ap.add_argument("--bin", required=True, help="the cargo-contprof build to judge with")
    ap.add_argument("--verbose", action="store_true", help="print each check")
    a = ap.parse_args()
    bin_path = str(Path(a.bin).resolve())
    table = defaultdict(lambda: defaultdict(int))
    for d in sorted((a.work / "out").iterdir()):
        m = re.fullmatch(r"(.+)-(aa|layout|reg_caller)-(\d+)", d.name)
        if not m or not (d / "report.json").exists():
            continue
        old = json.loads((d / "report.json").read_text())
        old["_bin"] = m.group(1)
        new = judge(bin_path, a.work, m.group(2), old)
        before, after = summary(old, a.named), summary(new, a.named)
        row = table[m.group(2)]
        row["checks"] += 1
        for k in ("gated", "named"):
            row[f"{k} before"] += before[k]
            row[f"{k} now"] += after[k]
        row["moved now"] += after["moved"]
        if a.verbose:
            print(d.name, "before", before, "now", after)
    print("| scenario | checks | gated before | gated now | regression named before | named now | moved functions now |")
    print("|---|---|---|---|---|---|---|")
    for s, r in table.items():
        print(f"| {s} | {r['checks']} | {r['gated before']} | {r['gated now']} | {r['named before']} | {r['named now']} | {r['moved now']} |")


if __name__ == "__main__":
    main()
