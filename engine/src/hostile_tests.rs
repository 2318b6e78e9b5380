//! Hostile bytes for every parser of outside input: the agent's raw sample files, pprof profiles
//! (gzipped and plain), a stored run's `meta.json`, the store's index entries, the configuration
//! file (what the viewer reads of a request is tried in the viewer's own `hostile_tests`). Each input
//! is random bytes or a mutation of a valid one (bit flips, overwritten, inserted, deleted and
//! duplicated ranges, truncation, two inputs spliced); each parser must answer with a value or an error, never a
//! panic, and in bounded time (every input is at most a few KiB, and each parser's allocations
//! are bounded by its input or by its own limits).
//!
//! [`CASES`] cases per parser in every `cargo test` run (`CONTPROF_HOSTILE_CASES` raises it), from
//! fixed seeds so that CI runs the same inputs; a failing case prints the parser, the case, its
//! seed and the input in hex, and `CONTPROF_HOSTILE_SEED=<seed>` replays that one case.

use crate::hostile::{hostile, sample_profile, valid_raw};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn raw_sample_files() {
    let valid = vec![valid_raw()];
    assert!(contprof_protocol::format::RawFile::parse(&valid[0]).is_ok());
    // One symbolizer for every case: it caches the binaries it opened.
    let symbolizer = std::cell::RefCell::new(crate::symbolize::Symbolizer::new());
    hostile("raw sample file", &valid, |b| {
        if let Ok(raw) = contprof_protocol::format::RawFile::parse(b) {
            // What parses is also built into a profile without panicking.
            let _ = crate::profile::build_profile(&raw, &mut symbolizer.borrow_mut(), &Default::default());
        }
    });
}

#[test]
fn pprof_profiles_gzipped_and_plain() {
    let mut p = sample_profile();
    p.add_comments(&["a comment"]);
    let gz = crate::profile::encode_to_vec(&p);
    let plain = prost::Message::encode_to_vec(&p);
    hostile("pprof profile", &[gz, plain], |b| {
        if let Ok(p) = crate::profile::decode(b) {
            // A decoded profile is read by the comparison and the viewer without panicking.
            let _ = crate::compare::run_costs(&p, &Default::default());
            let _ = crate::profile::CostView::from_profile(&p);
        }
    });
}

#[test]
fn stored_run_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        crate::store::Store::open(&crate::store::StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let repo = crate::git::RepoState::Commit {
        commit: "ab".repeat(20),
        branch: Some("main".into()),
        dirty: None,
        shallow: false,
    };
    let profile = crate::store::NewProfile {
        group: "bin/app".into(),
        repetition: 0,
        exit_code: Some(0),
        stopped: None,
        bytes: crate::profile::encode_to_vec(&sample_profile()),
    };
    let run = store.write_run(crate::store::NewRun::new(repo), vec![profile]).unwrap();
    let meta_path = tmp.path().join(format!("runs/{}/meta.json", run.run_id));
    let valid = vec![std::fs::read(&meta_path).unwrap()];
    hostile("meta.json", &valid, |b| {
        std::fs::write(&meta_path, b).unwrap();
        if let Ok(meta) = store.show(&run.run_id) {
            for p in &meta.profiles {
                let _ = store.read_profile(&meta.run_id, &p.file);
            }
            let _ = store.read_code_map(&meta);
        }
    });
}

#[test]
fn store_index_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        crate::store::Store::open(&crate::store::StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let repo = crate::git::RepoState::NoGit { reason: "test".into() };
    store.write_run(crate::store::NewRun::new(repo), Vec::new()).unwrap();
    let valid: Vec<Vec<u8>> =
        walk(&tmp.path().join("index")).into_iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!valid.is_empty(), "the store wrote an index entry");
    hostile("index entry", &valid, |b| {
        let _ = crate::store::index::parse_segment(b);
    });
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn configuration_files() {
    let valid = vec![
        br#"alpha = 0.01
min_effect = 0.1
ignore = ["^x::", "(?i)y"]
engine = "instructions"
fold_library = false
[thresholds]
cpu = 0.2
instructions = 0.005
[check]
runs = 7
no_baseline = "fail"
baseline = "stored"
targets = ["bin:a", "tests", "benches:parse"]
"#
        .to_vec(),
    ];
    hostile("contprof.toml", &valid, |b| {
        if let Ok(loaded) = crate::config::parse(&text(b), "contprof.toml") {
            let c = &loaded.config;
            let _ = c.options();
            let _ = crate::compare::Options::ignore_patterns(c.ignore_patterns());
            let _ = c.check_targets();
        }
    });
}
