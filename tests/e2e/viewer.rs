//! The viewer in a real browser: headless Chromium (Debian's `chromium`) driven by playwright-core
//! (`tests/js/viewer.mjs`) against `serve` on loopback and against generated HTML reports. The
//! script asserts on the rendered page (DOM text and the canvas state the page exposes as data
//! attributes and `window.contprof`), writes screenshots and measures a 100,000-stack profile.
//! Artifacts go to `target/contprof-test-artifacts/viewer/`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use contprof_engine::compare::{self, Group, RevisionInfo};
use contprof_engine::git::RepoState;
use contprof_engine::profile::{self, Function, Line, Location, Profile, SAMPLE_TYPES, Sample, ValueType};
use contprof_engine::store::{NewProfile, NewRun, Store, StoreLocation};
use contprof_viewer::{self as viewer, ReportInput, ServeOptions, Server};

use crate::util::{repo_root, tools_required};

/// Builds profiles from stacks of function names (root first), one location per function.
struct Synth {
    p: Profile,
    strings: HashMap<String, i64>,
    locations: HashMap<String, u64>,
}

impl Synth {
    fn new() -> Synth {
        let mut s = Synth { p: Profile::default(), strings: HashMap::new(), locations: HashMap::new() };
        s.intern("");
        for (t, u) in SAMPLE_TYPES {
            let vt = ValueType { r#type: s.intern(t), unit: s.intern(u) };
            s.p.sample_type.push(vt);
        }
        s
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        self.p.string_table.push(s.to_owned());
        let i = self.p.string_table.len() as i64 - 1;
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn location(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.locations.get(name) {
            return id;
        }
        let id = self.p.location.len() as u64 + 1;
        let f = Function {
            id,
            name: self.intern(name),
            system_name: 0,
            filename: self.intern(file_of(name)),
            start_line: 40,
        };
        self.p.function.push(f);
        let line = vec![Line { function_id: id, line: 42, column: 0 }];
        self.p.location.push(Location { id, mapping_id: 0, address: 0x1000 * id, line, is_folded: false });
        self.locations.insert(name.to_owned(), id);
        id
    }

    /// One sample: `cpu` milliseconds and `bytes` allocated.
    fn sample(&mut self, stack: &[&str], cpu_ms: i64, bytes: i64) {
        let ids = stack.iter().rev().map(|f| self.location(f)).collect();
        let value = vec![cpu_ms, cpu_ms * 1_000_000, i64::from(bytes > 0), bytes, 0, 0];
        self.p.sample.push(Sample { location_id: ids, value, label: vec![] });
    }
}

/// The source file of a synthetic function, as debug info names it: the toolchain's for std, the
/// registry's for a dependency (rayon), the program's own otherwise.
fn file_of(name: &str) -> &'static str {
    if name.starts_with("rayon") {
        "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rayon-core-1.12.1/src/registry.rs"
    } else if ["std::", "core::", "alloc::", "<"].iter().any(|p| name.starts_with(p)) {
        "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/lib.rs"
    } else {
        "src/synthetic.rs"
    }
}

/// A program whose work runs on rayon workers (issue 27): the main thread's `app::main` calls
/// into rayon's plumbing down to `app::work`, and each worker thread starts in std and rayon's
/// scheduler above its `app::work`; idle workers spin in the scheduler.
fn threads_profile() -> Profile {
    let mut s = Synth::new();
    let main =
        |frames: &[&'static str]| -> Vec<&'static str> { PROLOGUE.iter().chain(frames).copied().collect() };
    s.sample(
        &main(&[
            "app::main",
            "rayon::iter::plumbing::bridge_producer_consumer::helper",
            "rayon_core::join::join_context",
            "core::ops::function::FnOnce::call_once",
            "app::work",
        ]),
        300,
        0,
    );
    s.sample(&main(&["app::main", "std::io::Write::write_all", "write"]), 40, 0);
    let worker = [
        "clone3",
        "start_thread",
        "std::sys::pal::unix::thread::Thread::new::thread_start",
        "rayon_core::registry::ThreadBuilder::run",
        "rayon_core::registry::main_loop",
        "rayon_core::registry::WorkerThread::wait_until_cold",
        "rayon_core::job::StackJob<L,F,R>::execute",
        "rayon_core::join::join_context::{{closure}}",
        "app::work",
    ];
    s.sample(&worker, 600, 0);
    s.sample(&[&worker[..6], &["rayon_core::sleep::Sleep::sleep", "syscall"]].concat(), 60, 0);
    s.p
}

/// The small program profiled in base and head: head's `app::parse` costs three times as much and
/// its `app::render` half as much. `jitter` varies repetitions a little.
fn app_profile(head: bool, jitter: i64) -> Profile {
    let mut s = Synth::new();
    let parse = if head { 300 } else { 100 };
    let render = if head { 100 } else { 200 };
    let under =
        |frames: &[&'static str]| -> Vec<&'static str> { PROLOGUE.iter().chain(frames).copied().collect() };
    s.sample(&under(&["app::main", "app::parse", "core::str::from_utf8"]), parse + jitter, 0);
    s.sample(&under(&["app::main", "app::parse"]), parse / 2 + jitter, 64 * 1024);
    s.sample(&under(&["app::main", "app::render", "std::io::Write::write_all", "write"]), render - jitter, 0);
    s.sample(&under(&["app::main", "app::render", "alloc::vec::Vec<T>::push"]), render / 4, 8 * 1024 * 1024);
    s.sample(&under(&["app::main", "serde_json::to_string"]), 150 + jitter, 1024);
    s.sample(&under(&["app::main", "serde_json::to_string", "core::fmt::write"]), 80 - jitter, 0);
    s.p
}

/// The frames every Rust program runs under, from the process entry to the user's `main`, as a
/// real profile has them: the viewer folds them into one frame.
const PROLOGUE: [&str; 8] = [
    "_start",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "main",
    "std::rt::lang_start_internal",
    "std::panicking::catch_unwind",
    "std::rt::lang_start::{{closure}}",
    "std::sys::backtrace::__rust_begin_short_backtrace",
];

/// A profile with exactly 100,000 distinct stacks: a ten-way tree five levels deep (functions of
/// several crates, one leaf per stack) under a common prefix, each leaf with a tail of zero to four
/// std frames, so about 300,000 tree nodes.
fn large_profile() -> Profile {
    const CRATES: [&str; 6] = ["app", "parser", "serde_json", "regex", "tokio", "hashbrown"];
    const TAIL: [&str; 4] =
        ["alloc::vec::Vec<T>::push", "core::ptr::drop_in_place<T>", "std::io::Write::write_all", "memcpy"];
    let mut s = Synth::new();
    let names: Vec<Vec<String>> = (0..5)
        .map(|level| {
            (0..10).map(|d| format!("{}::module{level}::func{d}", CRATES[(level + d) % 6])).collect()
        })
        .collect();
    let mut rng = 0x2545_f491_u64;
    let mut stack: Vec<&str> = Vec::with_capacity(12);
    for i in 0..100_000usize {
        stack.clear();
        stack.extend(["app::main", "app::run"]);
        let mut rest = i;
        for level in &names {
            stack.push(&level[rest % 10]);
            rest /= 10;
        }
        stack.extend(TAIL.iter().take(i % 5));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        s.sample(&stack, 1 + (rng % 100) as i64, if i % 7 == 0 { (rng % 4096) as i64 } else { 0 });
    }
    s.p
}

fn artifacts() -> PathBuf {
    let dir = repo_root().join("target/contprof-test-artifacts/viewer");
    std::fs::create_dir_all(&dir).expect("create the artifact directory");
    dir
}

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var_os("CHROMIUM").map(PathBuf::from), Some("/usr/bin/chromium".into())];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// The browser tools, or `None` (with a loud message) when they are missing and not required.
pub(crate) fn browser_tools() -> Option<PathBuf> {
    let js = repo_root().join("tests/js/node_modules/playwright-core");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (chromium().is_none(), "chromium (apt-get install chromium)"),
        (!node, "node"),
        (!js.is_dir(), "playwright-core (npm ci in tests/js)"),
    ]
    .into_iter()
    .filter_map(|(m, what)| m.then_some(what))
    .collect();
    if missing.is_empty() {
        return chromium();
    }
    assert!(!tools_required(), "browser tests need {} (CONTPROF_REQUIRE_TOOLS is set)", missing.join(", "));
    eprintln!(
        "\n!!!!! SKIPPING the viewer browser tests: {} not installed (.ci/run installs them) !!!!!\n",
        missing.join(", ")
    );
    None
}

fn write_html(path: &Path, input: &ReportInput<'_>) {
    let file = std::fs::File::create(path).expect("create report");
    viewer::write_report(std::io::BufWriter::new(file), input).expect("write report");
}

fn costs_groups(base: &[Profile], head: &[Profile]) -> Vec<Group> {
    vec![Group {
        key: "bin/app".into(),
        base: base.iter().map(|p| compare::run_costs(p, &compare::InputOptions::default())).collect(),
        head: head.iter().map(|p| compare::run_costs(p, &compare::InputOptions::default())).collect(),
        explained: None,
        history: None,
        calls: None,
        by_label: None,
    }]
}

fn record(store: &Store, commit: &str, branch: &str, profiles: &[Profile]) -> String {
    let repo =
        RepoState::Commit { commit: commit.into(), branch: Some(branch.into()), dirty: None, shallow: false };
    let mut new = NewRun::new(repo);
    new.tags = BTreeMap::from([("service".to_owned(), "api".to_owned())]);
    // As `cargo contprof run --frequency 999` records them: the viewer compares by the settings.
    new.settings.engine = contprof_engine::store::Recorder::Agent;
    new.settings.frequency_hz = 999;
    new.settings.alloc_mode = Some(contprof_protocol::format::AllocMode::Sampled);
    new.settings.alloc_interval = Some(512 * 1024);
    new.settings.runs = profiles.len() as u32;
    new.settings.unwind = contprof_protocol::env::Unwind::Tables;
    let profiles = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| NewProfile {
            group: "bin/app".into(),
            repetition: i as u32,
            exit_code: Some(0),
            stopped: None,
            bytes: profile::encode_to_vec(p),
        })
        .collect();
    store.write_run(new, profiles).expect("record run").run_id
}

#[test]
fn viewer_in_headless_chromium() {
    let Some(chromium) = browser_tools() else { return };
    let out = artifacts();
    let base: Vec<Profile> = (0..3).map(|j| app_profile(false, j * 3)).collect();
    let head: Vec<Profile> = (0..3).map(|j| app_profile(true, j * 3)).collect();

    // Reports: one profile, one comparison, one large profile.
    let report = out.join("report-profile.html");
    write_html(&report, &ReportInput::profile("bin/app at base", &base[..1]));
    let cmp = compare::compare(
        &costs_groups(&base, &head),
        RevisionInfo { commit: "a".repeat(40), ..Default::default() },
        RevisionInfo { commit: "b".repeat(40), ..Default::default() },
        &compare::Options::default(),
    )
    .expect("compare");
    let compare_report = out.join("report-compare.html");
    write_html(&compare_report, &ReportInput::compare("base → head", &base, &head, Some(&cmp)));
    let threads = out.join("report-threads.html");
    write_html(&threads, &ReportInput::profile("rayon workers", &[threads_profile()]));
    let large = out.join("report-large.html");
    let big = large_profile();
    let started = std::time::Instant::now();
    write_html(&large, &ReportInput::profile("100,000 stacks", std::slice::from_ref(&big)));
    let write_ms = started.elapsed().as_secs_f64() * 1000.0;

    // A store with a base and a head run, served on loopback.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    let store = Store::open(&StoreLocation::Dir(store_dir.clone())).expect("open store");
    let base_run = record(&store, &"a".repeat(40), "main", &base);
    let head_run = record(&store, &"b".repeat(40), "feature", &head);
    let mut opts = ServeOptions::new(StoreLocation::Dir(store_dir));
    opts.bind = "127.0.0.1:0".parse().expect("address");
    let server = Server::bind(opts).expect("bind");
    let url = server.url();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let serving = std::thread::spawn(move || server.run_until(&stop2));

    // A real workload as well: the `regress` fixture (its own crate, the `workloads` library, std
    // and libc under the real prologue), `thirty` made 1.5x slower, compared by the CLI.
    let real = tmp.path().join("real");
    let real_store = real.join("store");
    let runs = ["--runs", "5", "--frequency", "4999"];
    let base_id = crate::compare::record(&real_store, &real.join("base"), &runs, &[]);
    let head_id =
        crate::compare::record(&real_store, &real.join("head"), &runs, &[("FIXTURE_SLOWDOWN_THIRTY", "1.5")]);
    let pages = real.join("pages");
    let f = crate::compare::compare(
        &real_store,
        &[&base_id, &head_id, "--flamegraph-dir", pages.to_str().unwrap(), "--format", "json"],
    );
    // An environment switch changes no code: `thirty` is reported as shifted, and not gated.
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("regress::thirty"), "{f:?}");
    let real_compare = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-compare.html"))
        .expect("a compare page");

    let config = serde_json::json!({
        "chromium": chromium,
        "realCompare": real_compare,
        "artifacts": out,
        "server": url,
        "baseRun": base_run,
        "headRun": head_run,
        "report": report,
        "compareReport": compare_report,
        "threadsReport": threads,
        "largeReport": large,
        "largeStacks": big.sample.len(),
    });
    let run = {
        let _shared = crate::util::shared();
        Command::new("node")
            .arg(repo_root().join("tests/js/viewer.mjs"))
            .arg(config.to_string())
            .current_dir(repo_root().join("tests/js"))
            .output()
            .expect("run node")
    };
    stop.store(true, Ordering::Relaxed);
    serving.join().expect("server thread").expect("server ran");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}");
    assert!(run.status.success(), "browser checks failed:\n{stdout}\n{stderr}");
    let mut result: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("result JSON");
    result["large"]["reportWriteMs"] = serde_json::json!(write_ms);
    result["large"]["reportBytes"] = serde_json::json!(std::fs::metadata(&large).map_or(0, |m| m.len()));
    std::fs::write(out.join("timings.json"), serde_json::to_string_pretty(&result).unwrap_or_default())
        .expect("write timings");
    let first = result["large"]["firstViewMs"].as_f64().expect("first view time");
    eprintln!("viewer: {result}");
    // The figure is what the test is for; this bound only catches a view that no longer scales.
    assert!(first < 10_000.0, "first view of 100,000 stacks took {first} ms");
}
