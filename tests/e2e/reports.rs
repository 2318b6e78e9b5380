//! Snapshots of `compare`'s reports (text, JSON, Markdown) on stored runs made of fixed profiles:
//! no workload runs, so every number is the same on every machine and under any load, and the
//! snapshots pin what users read and machines parse.
//!
//! The two revisions of a small repository hold one run of six repetitions each, with
//! machine-code fingerprints, built so that the comparison has one of everything: a self-cost
//! regression whose total change is inherited by its caller, an improvement, a shift the diff
//! does not explain (allocations of a function whose call paths kept their code), a new and a
//! vanished function, and a library frame folded into its caller.

use std::collections::BTreeMap;
use std::path::Path;

use contprof_contracts::report::{Outcome, Report};
use contprof_engine::code::{CODE_MAP_VERSION, CodeMap};
use contprof_engine::git::RepoState;
use contprof_engine::profile::{self, Function, Line, Location, Profile, SAMPLE_TYPES, Sample, ValueType};
use contprof_engine::store::{NewProfile, NewRun, Settings, Store, StoreLocation, Toolchain};

use crate::redact::Redactions;
use crate::util::{Finished, GitProject, contprof, finish};

/// Nanoseconds of CPU per sample (999 Hz, rounded).
const SAMPLE_NS: i64 = 1_000_000;

/// One stack of a profile: frames root first, CPU nanoseconds, allocated bytes.
type Stack = (&'static [&'static str], i64, i64);

/// A gzipped pprof profile of `stacks`, with the sample types the agent writes.
fn profile(stacks: &[Stack]) -> Vec<u8> {
    let mut p = Profile::default();
    for (ty, unit) in SAMPLE_TYPES {
        let vt = ValueType { r#type: p.intern(ty), unit: p.intern(unit) };
        p.sample_type.push(vt);
    }
    let mut functions: BTreeMap<&str, u64> = BTreeMap::new();
    for (frames, cpu, bytes) in stacks {
        let mut ids = Vec::new();
        for &name in frames.iter().rev() {
            let next = functions.len() as u64 + 1;
            let id = *functions.entry(name).or_insert(next);
            if id == next {
                let function = Function {
                    id,
                    name: p.intern(name),
                    system_name: 0,
                    filename: p.intern("src/main.rs"),
                    start_line: 1,
                };
                p.function.push(function);
                let line = Line { function_id: id, line: 2, column: 0 };
                p.location.push(Location {
                    id,
                    mapping_id: 0,
                    address: 0x1000 * id,
                    line: vec![line],
                    is_folded: false,
                });
            }
            ids.push(id);
        }
        let allocations = bytes / (64 << 10);
        p.sample.push(Sample {
            location_id: ids,
            value: vec![cpu / SAMPLE_NS, *cpu, allocations, *bytes, 0, 0],
            label: vec![],
        });
    }
    profile::encode_to_vec(&p)
}

/// Repetition `i`'s small departure from the nominal cost (a few percent, as real runs have).
fn jitter(i: usize, cost: i64) -> i64 {
    const FACTORS: [f64; 6] = [0.98, 1.01, 1.0, 1.03, 0.99, 1.0];
    (cost as f64 * FACTORS[i % 6]).round() as i64 / SAMPLE_NS * SAMPLE_NS
}

const MS: i64 = 1_000_000;
const MIB: i64 = 1 << 20;

/// The base revision's workload.
fn base_stacks(i: usize) -> Vec<Stack> {
    vec![
        (&["app::main", "app::parse"], jitter(i, 400 * MS), 0),
        (&["app::main", "app::parse", "core::str::from_utf8"], jitter(i + 1, 50 * MS), 0),
        (&["app::main", "app::parse", "app::tokenize"], jitter(i + 2, 200 * MS), 0),
        (&["app::main", "app::checksum"], jitter(i + 3, 300 * MS), 0),
        (&["app::main", "app::render"], jitter(i + 4, 100 * MS), 64 * MIB),
        (&["app::main", "app::legacy_cache"], jitter(i + 5, 60 * MS), 0),
    ]
}

/// The head revision's: `parse` 50% slower, `checksum` twice as fast, `render` allocating twice
/// as much with the same code, `legacy_cache` gone and `fast_path` new.
fn head_stacks(i: usize) -> Vec<Stack> {
    vec![
        (&["app::main", "app::parse"], jitter(i, 600 * MS), 0),
        (&["app::main", "app::parse", "core::str::from_utf8"], jitter(i + 1, 50 * MS), 0),
        (&["app::main", "app::parse", "app::tokenize"], jitter(i + 2, 200 * MS), 0),
        (&["app::main", "app::checksum"], jitter(i + 3, 150 * MS), 0),
        (&["app::main", "app::render"], jitter(i + 4, 100 * MS), 128 * MIB),
        (&["app::main", "app::fast_path"], jitter(i + 5, 60 * MS), 0),
    ]
}

/// Fingerprints: `changed` functions get head's code, the others the same code on both sides
/// (`render`, whose callers and callees keep their code too, allocates more: a shift).
fn code_map(functions: &[&str], changed: &[&str], head: bool) -> Vec<u8> {
    let functions = functions
        .iter()
        .map(|f| {
            let side = if head && changed.contains(f) { 'b' } else { 'a' };
            (f.to_string(), format!("{:015x}{side}", f.len()))
        })
        .collect();
    CodeMap { version: CODE_MAP_VERSION, method: "x86_64-normalized".into(), functions }.encode()
}

/// Stores one run of six repetitions of `stacks` under `commit`.
fn store_run(store: &Store, commit: &str, stacks: fn(usize) -> Vec<Stack>, code: Vec<u8>) {
    let mut new = NewRun::new(RepoState::Commit {
        commit: commit.to_owned(),
        branch: Some("main".into()),
        dirty: None,
        shallow: false,
    });
    new.host = "ci-runner".into();
    new.toolchain = Toolchain { release: "1.88.0".into(), host: "x86_64-unknown-linux-gnu".into() };
    new.target = "x86_64-unknown-linux-gnu".into();
    new.settings = Settings {
        engine: contprof_engine::store::Recorder::Agent,
        frequency_hz: 999,
        alloc_mode: Some(contprof_protocol::format::AllocMode::Sampled),
        alloc_interval: Some(512 * 1024),
        runs: 6,
        unwind: contprof_protocol::env::Unwind::Tables,
        ..Settings::default()
    };
    let profiles = (0..6)
        .map(|i| NewProfile {
            group: "bin/app".into(),
            repetition: i as u32,
            exit_code: Some(0),
            stopped: None,
            bytes: profile(&stacks(i)),
        })
        .collect();
    store.write_run_with_code(new, profiles, Some(code)).expect("store the run");
}

/// A repository with a base commit on `main` and a head commit on `feature`, and a store beside it
/// holding the runs of both.
struct Fixture {
    project: GitProject,
    store: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let project = GitProject::new();
        let base = rev_parse(&project.root, "HEAD");
        project.git(&["checkout", "-q", "-b", "feature"]);
        project.commit("feature");
        let head = rev_parse(&project.root, "HEAD");
        let store = project.dir.path().join("store");
        let opened = Store::open(&StoreLocation::Dir(store.clone())).expect("open the store");
        let functions = [
            "app::main",
            "app::parse",
            "app::tokenize",
            "app::checksum",
            "app::render",
            "app::legacy_cache",
            "app::fast_path",
        ];
        let changed = ["app::parse", "app::checksum"];
        store_run(&opened, &base, base_stacks, code_map(&functions[..6], &changed, false));
        store_run(&opened, &head, head_stacks, code_map(&functions, &changed, true));
        Fixture { project, store }
    }

    fn compare(&self, args: &[&str]) -> Finished {
        finish(
            contprof()
                .args(["compare", "main", "feature", "--no-flamegraphs"])
                .args(args)
                .arg("--store")
                .arg(&self.store)
                .current_dir(&self.project.root),
        )
    }

    fn redactions(&self) -> Redactions {
        Redactions::new().path(self.project.dir.path(), "[PROJECT]")
    }
}

fn rev_parse(dir: &Path, rev: &str) -> String {
    let out = std::process::Command::new("git").args(["rev-parse", rev]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git rev-parse {rev}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn compare_reports_in_every_format() {
    let fixture = Fixture::new();
    let redact = fixture.redactions();
    let text = fixture.compare(&[]);
    assert_eq!(text.code, 1, "{text:?}");
    insta::assert_snapshot!("compare-text", redact.apply(&text.stdout));
    insta::assert_snapshot!("compare-stderr", redact.apply(&text.stderr));

    let markdown = fixture.compare(&["--format", "markdown"]);
    assert_eq!(markdown.code, 1, "{markdown:?}");
    insta::assert_snapshot!("compare-markdown", redact.apply(&markdown.stdout));

    let json = fixture.compare(&["--format", "json"]);
    assert_eq!(json.code, 1, "{json:?}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("the report is JSON");
    assert_eq!(report["version"], 2);
    insta::assert_snapshot!("compare-json", redact.rounded_floats().apply(&json.stdout));
    // The contract's types read the report back, and write the same JSON.
    let typed: Report =
        serde_json::from_str(&json.stdout).expect("the report reads into the contract's types");
    assert_eq!(typed.summary.verdict, Outcome::Regression);
    assert!(!typed.regressions.is_empty() && !typed.causes.is_empty(), "{typed:#?}");
    assert_eq!(serde_json::to_value(&typed).unwrap(), report);

    // `--output` writes the same bytes to a file and says so.
    let file = fixture.project.dir.path().join("report.md");
    let written = fixture.compare(&["--format", "markdown", "--output", file.to_str().unwrap()]);
    assert_eq!(written.code, 1, "{written:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), markdown.stdout);
    assert!(written.stdout.is_empty(), "{written:?}");
}

/// `--strict` gates on the shift too; `--min-effect` above every change leaves nothing to report.
#[test]
fn compare_strict_and_min_effect() {
    let fixture = Fixture::new();
    let redact = fixture.redactions();
    let strict = fixture.compare(&["--strict"]);
    assert_eq!(strict.code, 1, "{strict:?}");
    insta::assert_snapshot!("compare-strict-text", redact.apply(&strict.stdout));
    let lenient = fixture.compare(&["--min-effect", "3"]);
    assert_eq!(lenient.code, 0, "{lenient:?}");
    insta::assert_snapshot!("compare-min-effect-text", redact.apply(&lenient.stdout));
}

/// A stored profile that cannot be decoded is skipped with a warning naming it; the comparison
/// goes on with the other repetitions.
#[test]
fn a_corrupt_stored_profile_is_skipped_with_a_warning() {
    let fixture = Fixture::new();
    let mut runs: Vec<_> =
        std::fs::read_dir(fixture.store.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    runs.sort();
    // The base's run (stored first: run ids begin with the time), its first repetition.
    let mut files: Vec<_> = std::fs::read_dir(runs[0].join("p"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    files.sort();
    std::fs::write(&files[0], b"\x1f\x8b truncated").unwrap();
    let f = fixture.compare(&[]);
    assert_eq!(f.code, 1, "{f:?}");
    assert!(f.stderr.contains("skipped base profile") && f.stderr.contains("corrupt profile"), "{f:?}");
    insta::assert_snapshot!("compare-corrupt-profile-stderr", fixture.redactions().apply(&f.stderr));
}
