#!/usr/bin/env python3
"""Names for a published HTTP server shipped stripped (miniserve), before and after its debug
file is put in the store with `cargo contprof prod symbols add`.

Run by hand, never in CI. It needs miniserve built with debug information, e.g.

    CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=none \\
        cargo install --locked miniserve --root /work/measure/miniserve-debug
    tests/measure/stripped_service.py --tool target/release/cargo-contprof \\
        --server /work/measure/miniserve-debug/bin/miniserve

plus wrk and `go tool pprof`. The binary is split as a release step would split it
(`objcopy --only-keep-debug`, then `objcopy --strip-all`); the stripped copy serves a directory
listing under wrk with the production agent preloaded. Printed: the share of CPU samples whose
leaf frame has no name (`miniserve+0x...`):
  1. the windows as uploaded, before the debug file is in the store;
  2. the same windows read after `prod symbols add` (named when read);
  3. the windows of a second run, uploaded after it (named by the uploader).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def unnamed_share(tool, store, out_dir, since=None):
    """Share of CPU whose leaf is an unnamed `miniserve+0x...` frame, over the exported windows."""
    args = [tool, "prod", "export", "--service", "miniserve", "--type", "cpu", "--store", store]
    if since:
        args += ["--since", since]
    run(args + [out_dir])
    files = [os.path.join(out_dir, f) for f in os.listdir(out_dir)]
    top = run(["go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0"] + files).stdout
    total = unnamed = 0.0
    for line in top.splitlines():
        m = re.match(r"\s*([\d.]+)(\w*)\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+[\d.]+%\s+(.*)$", line)
        if not m:
            continue
        share = float(m.group(3))
        total += share
        if m.group(4).startswith("miniserve+0x"):
            unnamed += share
    return unnamed, total, len(files)


def serve_once(args, lib, stripped, store, root, seconds):
    port = 18000 + os.getpid() % 1000
    env = dict(os.environ, LD_PRELOAD=lib, CONTPROF_SERVICE="miniserve", CONTPROF_STORE=store,
               CONTPROF_PERIOD="2", CONTPROF_WINDOW="1", CONTPROF_HELPER=args.tool)
    server = subprocess.Popen([stripped, "-i", "127.0.0.1", "-p", str(port), root], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    run(["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"])
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=60)
    # The uploader uploads the last window after the server ends.
    deadline = time.time() + 60
    while time.time() < deadline:
        ps = run(["ps", "-eo", "args"]).stdout
        if f"--pid={server.pid}" not in ps:
            break
        time.sleep(0.2)
    return err


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="cargo-contprof (a release build)")
    ap.add_argument("--server", required=True, help="miniserve built with debug information")
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    args.tool = os.path.realpath(args.tool)
    work = tempfile.mkdtemp(prefix="contprof-stripped-")
    stripped, debug = os.path.join(work, "miniserve"), os.path.join(work, "miniserve.debug")
    run(["objcopy", "--only-keep-debug", args.server, debug])
    run(["objcopy", "--strip-all", args.server, stripped])
    root = os.path.join(work, "served")
    os.makedirs(root)
    for i in range(200):
        with open(os.path.join(root, f"file-{i:03}.txt"), "w") as f:
            f.write("x" * (1000 + 37 * i))
    store = os.path.join(work, "store")
    lib = run([args.tool, "agent", "path", "--dir", os.path.join(work, "agent")]).stdout.strip()
    sizes = {p: os.path.getsize(p) for p in (args.server, stripped, debug)}
    print(f"binary {sizes[args.server] >> 20} MiB, stripped {sizes[stripped] >> 20} MiB, "
          f"debug file {sizes[debug] >> 20} MiB")

    err = serve_once(args, lib, stripped, store, root, args.seconds)
    said = [l for l in err.splitlines() if "debug info" in l]
    print("uploader said:", said[0] if said else "(nothing about debug info)")
    before = unnamed_share(args.tool, store, os.path.join(work, "export-1"))
    added = subprocess.run([args.tool, "prod", "symbols", "add", "--store", store, debug],
                           capture_output=True, text=True)
    print(added.stderr.strip())
    reread = unnamed_share(args.tool, store, os.path.join(work, "export-2"))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1)
    serve_once(args, lib, stripped, store, root, args.seconds)
    after = unnamed_share(args.tool, store, os.path.join(work, "export-3"), since=since)
    print("| windows | files | CPU with an unnamed leaf |")
    print("|---|---|---|")
    for name, (unnamed, total, n) in [("uploaded stripped, no debug file", before),
                                      ("same windows, read after `prod symbols add`", reread),
                                      ("next run, uploaded with the debug file", after)]:
        print(f"| {name} | {n} | {unnamed:.1f}% of {total:.0f}% |")
    print("work dir:", work)


if __name__ == "__main__":
    sys.exit(main())
