#!/usr/bin/env bash
# The cost of wall-clock sampling in a process with many threads: a C program whose main thread
# computes (~2 s) while N other threads sit blocked in pthread_cond_wait, run with no agent, with
# the preload agent at its defaults, and with wall sampling at 100 Hz and 1 kHz. Prints, per
# thread count, the median over REPS runs of user and system CPU time and their ratio to the run
# without the agent. Each wall tick reads every thread's CPU clock (one system call per thread),
# so the system time grows with threads x frequency. Run by hand, never in CI.
#
#   tests/measure/wall_threads.sh [CARGO_CONTPROF] [THREADS...]   # default: cargo-contprof on PATH, 10 500
# Environment: REPS (default 3). Needs cc and python3.
set -euo pipefail
BIN=${1:-cargo-contprof}
shift || true
THREADS=("${@:-10 500}")
REPS=${REPS:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/idle.c" <<'C'
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int done = 0;
static void *idle(void *arg) {
    pthread_mutex_lock(&m);
    while (!done) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    return arg;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    pthread_t *t = malloc(sizeof(pthread_t) * (size_t)n);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, idle, NULL);
    volatile uint64_t x = 1;
    for (uint64_t i = 0; i < 1500000000ull; i++) x = x * 6364136223846793005ull + 1;
    pthread_mutex_lock(&m);
    done = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("%llu\n", (unsigned long long)x);
    return 0;
}
C
cc -O2 -o "$WORK/idle" "$WORK/idle.c" -lpthread
AGENT=$("$BIN" contprof agent path)
python3 - "$WORK" "$AGENT" "$REPS" ${THREADS[*]} <<'PY'
import os, resource, statistics, subprocess, sys
work, agent, reps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(t) for t in sys.argv[4:]]
configs = [("no agent", {}), ("agent, defaults", {"LD_PRELOAD": agent}),
           ("+ wall 100 Hz", {"LD_PRELOAD": agent, "CONTPROF_WALL_FREQUENCY": "100"}),
           ("+ wall 1000 Hz", {"LD_PRELOAD": agent, "CONTPROF_WALL_FREQUENCY": "1000"})]
def one(n, env):
    e = dict(os.environ, CONTPROF_OUTPUT=f"{work}/out.raw", **env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([f"{work}/idle", str(n)], env=e, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
print("| threads | configuration | user s | system s | CPU vs no agent |")
print("|---|---|---|---|---|")
for n in threads:
    # Interleaved: one run of each configuration per round, so that drift hits all alike.
    got = {name: [] for name, _ in configs}
    for _ in range(reps):
        for name, env in configs:
            got[name].append(one(n, env))
    base = statistics.median(u + s for u, s in got["no agent"])
    for name, _ in configs:
        u = statistics.median(x[0] for x in got[name]); s = statistics.median(x[1] for x in got[name])
        cpu = statistics.median(a + b for a, b in got[name])
        print(f"| {n} | {name} | {u:.2f} | {s:.2f} | {cpu / base:.3f}x |")
PY
