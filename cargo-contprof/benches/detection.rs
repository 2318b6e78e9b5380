//! Detection quality of `cargo contprof compare` on real profiles of the `regress` fixture.
//!
//! For each scenario and repetition it records an independent base batch and an independent head
//! batch (`cargo contprof run --bin regress --runs N`, the head with a regression switched on by
//! environment), compares them by run id (`compare BASE HEAD --format json --strict`: the switch
//! changes the input, not the machine code, so without `--strict` the regression would be reported
//! as shifted, not gated) and counts:
//! - found: the injected regression is reported, naming the right function and metric;
//! - other: a regression or improvement of any other function was reported (a false alarm);
//! - for A/A (no change): the share of comparisons that flag anything at all.
//!
//! ```text
//! cargo bench -p cargo-contprof --bench detection
//! DETECTION_REPS=20 DETECTION_RUNS=10 DETECTION_SCALE=0.6 DETECTION_FREQUENCY=9999 \
//!   DETECTION_SCENARIOS=aa,cpu25 cargo bench -p cargo-contprof --bench detection
//! ```
//! Prints a Markdown table. Uses a temporary store; builds the fixture once (first recording).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

struct Scenario {
    name: &'static str,
    about: &'static str,
    /// Environment of the head batch.
    head_env: &'static [(&'static str, &'static str)],
    /// Extra flags of both batches.
    flags: &'static [&'static str],
    /// The function and metrics that must be reported; `None` for A/A.
    expect: Option<(&'static str, &'static [&'static str])>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario { name: "aa", about: "A/A, CPU sampled", head_env: &[], flags: &[], expect: None },
    Scenario {
        name: "cpu25",
        about: "+25% in `thirty` (30% of CPU)",
        head_env: &[("FIXTURE_SLOWDOWN_THIRTY", "1.25")],
        flags: &[],
        expect: Some(("regress::thirty", &["cpu"])),
    },
    Scenario {
        name: "cpu10",
        about: "+10% in `ten` (10% of CPU)",
        head_env: &[("FIXTURE_SLOWDOWN_TEN", "1.10")],
        flags: &[],
        expect: Some(("regress::ten", &["cpu"])),
    },
    Scenario {
        name: "inlined25",
        about: "+25% in inlined `inlined_hot` (20% of CPU)",
        head_env: &[("FIXTURE_SLOWDOWN_INLINED_HOT", "1.25")],
        flags: &[],
        expect: Some(("regress::inlined_hot", &["cpu"])),
    },
    Scenario {
        name: "alloc",
        about: "extra allocation in a loop, `--alloc exact`",
        head_env: &[("FIXTURE_EXTRA_ALLOC", "1")],
        flags: &["--alloc", "exact", "--frequency", "0"],
        expect: Some(("regress::alloc_loop", &["alloc_count", "alloc_bytes"])),
    },
    Scenario {
        name: "aa-exact",
        about: "A/A, `--alloc exact`",
        head_env: &[],
        flags: &["--alloc", "exact", "--frequency", "0"],
        expect: None,
    },
];

struct Setup {
    bin: PathBuf,
    fixtures: PathBuf,
    store: PathBuf,
    runs: u32,
    scale: String,
    frequency: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Records one batch and returns its run id.
fn record(s: &Setup, sc: &Scenario, head: bool) -> Result<String, String> {
    let mut cmd = Command::new(&s.bin);
    cmd.current_dir(&s.fixtures)
        .args(["contprof", "run", "--bin", "regress", "--top", "0", "-q", "--runs"])
        .arg(s.runs.to_string())
        .arg("--store")
        .arg(&s.store)
        .env("FIXTURE_SCALE", &s.scale);
    if !sc.flags.contains(&"--frequency") {
        cmd.args(["--frequency", &s.frequency]);
    }
    cmd.args(sc.flags);
    if head {
        cmd.envs(sc.head_env.iter().copied());
    }
    let out = cmd.output().map_err(|e| format!("could not run {}: {e}", s.bin.display()))?;
    if !out.status.success() {
        return Err(format!("run failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let log = Command::new(&s.bin)
        .current_dir(&s.fixtures)
        .args(["contprof", "log", "-n", "1", "--format", "json", "--store"])
        .arg(&s.store)
        .output()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&log.stdout).map_err(|e| format!("log: {e}"))?;
    let runs = v.get("runs").unwrap_or(&v);
    runs.get(0)
        .and_then(|r| r.get("run_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no run id in {v}"))
}

struct Outcome {
    found: bool,
    other: bool,
}

fn compare(s: &Setup, sc: &Scenario, base: &str, head: &str) -> Result<Outcome, String> {
    let out = Command::new(&s.bin)
        .current_dir(&s.fixtures)
        .args([
            "contprof",
            "compare",
            base,
            head,
            "--format",
            "json",
            "--no-flamegraphs",
            "--strict",
            "-q",
            "--store",
        ])
        .arg(&s.store)
        .output()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("compare: {e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    let list = |k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let name = |f: &Value| f.get("function").and_then(Value::as_str).unwrap_or("").to_owned();
    let metric = |f: &Value| f.get("metric").and_then(Value::as_str).unwrap_or("").to_owned();
    let regressions = list("regressions");
    let found = sc.expect.is_some_and(|(function, metrics)| {
        regressions.iter().any(|f| name(f) == function && metrics.contains(&metric(f).as_str()))
    });
    let flagged: Vec<Value> =
        regressions.iter().chain(list("improvements").iter()).chain(list("new").iter()).cloned().collect();
    let other = flagged.iter().any(|f| sc.expect.is_none_or(|(function, _)| name(f) != function));
    Ok(Outcome { found, other })
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let store = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            std::process::exit(2);
        }
    };
    let setup = Setup {
        // DETECTION_BIN: a copy of the binary, so that rebuilding during a long run changes nothing.
        bin: std::env::var_os("DETECTION_BIN")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cargo-contprof")), PathBuf::from),
        fixtures: root.join("fixtures"),
        store: store.path().to_owned(),
        runs: env_or("DETECTION_RUNS", 10),
        scale: env_or("DETECTION_SCALE", "0.6".to_owned()),
        frequency: env_or("DETECTION_FREQUENCY", "9999".to_owned()),
    };
    let reps: usize = env_or("DETECTION_REPS", 20);
    let only: Option<String> = std::env::var("DETECTION_SCENARIOS").ok();
    println!(
        "runs per side {}, FIXTURE_SCALE {}, {} Hz, {} comparisons per scenario (independent base and head batches)\n",
        setup.runs, setup.scale, setup.frequency, reps
    );
    println!("| scenario | found (right function) | other function flagged | A/A: flagged anything | time |");
    println!("|---|---|---|---|---|");
    for sc in SCENARIOS {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|n| n == sc.name)) {
            continue;
        }
        let start = Instant::now();
        let (mut found, mut other, mut done) = (0, 0, 0);
        for rep in 0..reps {
            let result = record(&setup, sc, false)
                .and_then(|b| record(&setup, sc, true).map(|h| (b, h)))
                .and_then(|(b, h)| compare(&setup, sc, &b, &h));
            match result {
                Ok(o) => {
                    done += 1;
                    found += usize::from(o.found);
                    other += usize::from(o.other);
                }
                Err(e) => eprintln!("{} #{rep}: {e}", sc.name),
            }
        }
        let pct = |n: usize| format!("{n}/{done} ({:.0}%)", 100.0 * n as f64 / done.max(1) as f64);
        let (found, aa) = match sc.expect {
            Some(_) => (pct(found), "-".to_owned()),
            None => ("-".to_owned(), pct(other)),
        };
        let other = if sc.expect.is_some() { pct(other) } else { "-".to_owned() };
        println!("| {} | {found} | {other} | {aa} | {:.0} s |", sc.about, start.elapsed().as_secs_f64());
    }
}
