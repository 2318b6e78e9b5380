//! Labels from code (`contprof::labels`) on the `label_split` fixture, preloaded with no other
//! change to the program: CPU per label value against the split the fixture was written with,
//! each function's samples carrying exactly its labels (CPU, allocations, bytes in use), and
//! `go tool pprof` reading them (`-tags`, `-tagfocus`). The same from `tracing` spans on the
//! `traced_service` fixture (axum, tokio, `contprof_tracing`'s layer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use contprof_engine::profile::{Profile, Sample};

use crate::util::{expectation, read_profile, run_fixture};

/// Labels the tool puts on samples itself (the thread, the run's target).
const TOOL_LABELS: &[&str] = &["thread", "tid", "target"];

/// The program's labels of a sample, as sorted `key=value` strings.
fn program_labels(p: &Profile, s: &Sample) -> Vec<String> {
    let mut l: Vec<String> = s
        .label
        .iter()
        .filter(|l| l.str != 0 && !TOOL_LABELS.contains(&p.str(l.key)))
        .map(|l| format!("{}={}", p.str(l.key), p.str(l.str)))
        .collect();
    l.sort();
    l
}

/// The function names on a sample's stack.
fn functions_of<'p>(p: &'p Profile, s: &Sample) -> Vec<&'p str> {
    let names: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, p.str(f.name))).collect();
    let locations: HashMap<u64, &contprof_engine::profile::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    s.location_id
        .iter()
        .filter_map(|id| locations.get(id))
        .flat_map(|l| l.line.iter().filter_map(|line| names.get(&line.function_id).copied()))
        .collect()
}

fn run_label_split(out: &std::path::Path, extra: &[&str]) -> Profile {
    // Enough samples for the shares' tolerances: at 250 Hz the 0.7 s run has about 175 CPU
    // samples (a share of 0.2 then varies by 0.03, half the tolerance), and at the default
    // 512 KiB interval the 50 kept blocks of 256 KiB about 20 allocation samples (the bytes'
    // estimate then varies by a fifth, against a tolerance of a half). At 999 Hz the shares vary
    // half as much; at 64 KiB nearly every block is sampled.
    let mut args = vec!["--no-store", "--frequency", "999", "--alloc-interval", "64K"];
    args.extend_from_slice(extra);
    let f = run_fixture("label_split", out, &args, &[("FIXTURE_SCALE", "0.7")]);
    assert_eq!(f.code, 0, "{f:?}");
    read_profile(&out.join("profile.pb.gz"))
}

/// Checks `expected`'s `labels_of`: every sample with the function on its stack carries exactly
/// the labels listed (beyond the tool's own); returns, per function, its CPU, allocated and
/// in-use bytes.
fn check_labels_of(p: &Profile, expected: &toml::Table) -> BTreeMap<String, [i64; 3]> {
    let cpu = p.sample_type_index("cpu").expect("cpu");
    let alloc = p.sample_type_index("alloc_space").expect("alloc_space");
    let inuse = p.sample_type_index("inuse_space").expect("inuse_space");
    let mut totals = BTreeMap::new();
    for case in expected["labels_of"].as_array().unwrap() {
        let function = case["function"].as_str().unwrap();
        let want: Vec<&str> =
            case["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        // Per label set: CPU, allocated and in-use bytes of the samples with the function.
        let mut seen = BTreeMap::<Vec<String>, [i64; 3]>::new();
        for s in p.sample.iter().filter(|s| functions_of(p, s).contains(&function)) {
            let e = seen.entry(program_labels(p, s)).or_default();
            for (v, i) in e.iter_mut().zip([cpu, alloc, inuse]) {
                *v += s.value[i];
            }
        }
        let sets: Vec<Vec<String>> = seen.keys().cloned().collect();
        assert_eq!(sets, [want.iter().map(|s| s.to_string()).collect::<Vec<_>>()], "{function}: {seen:?}");
        let values = *seen.values().next().unwrap();
        assert!(values[0] > 0, "{function} has CPU samples");
        totals.insert(function.to_owned(), values);
    }
    totals
}

#[test]
fn cpu_splits_by_label_as_the_fixture_set_it_and_samples_carry_exactly_their_labels() {
    let out = tempfile::tempdir().unwrap();
    let p = run_label_split(out.path(), &[]);
    let expected = expectation("label_split");
    let cpu = p.sample_type_index("cpu").expect("cpu");
    let total = p.total(cpu) as f64;
    for case in expected["label_cpu_share"].as_array().unwrap() {
        let (label, value) = (case["label"].as_str().unwrap(), case["value"].as_str().unwrap());
        let (share, tolerance) = (case["share"].as_float().unwrap(), case["tolerance"].as_float().unwrap());
        let part: i64 = p
            .sample
            .iter()
            .filter(|s| p.label_str(s, label).unwrap_or("") == value)
            .map(|s| s.value[cpu])
            .sum();
        let got = part as f64 / total;
        assert!(
            (got - share).abs() <= tolerance,
            "CPU under {label}={value:?}: {got:.3}, expected {share} ± {tolerance}"
        );
    }
    let totals = check_labels_of(&p, &expected);
    // 256 KiB kept in 50 of the slices: the sampled estimates of bytes allocated and in use at exit.
    let [_, allocated, in_use] = totals["label_split::items"];
    let kept = 50.0 * 256.0 * 1024.0;
    assert!((allocated as f64 / kept - 1.0).abs() < 0.5, "items: {allocated} bytes allocated");
    assert!((in_use as f64 / kept - 1.0).abs() < 0.5, "items: {in_use} bytes in use");
    // The work each slice counted, exactly, under the labels it was counted under (through the
    // preloaded library's entry point).
    let comments = p.comments();
    for line in [
        r#"work counted: 1000 {"endpoint":"/search"}"#,
        r#"work counted: 2000 {"endpoint":"/items","tenant":"t1"}"#,
    ] {
        assert!(comments.contains(&line), "{line} in {comments:#?}");
    }
    assert_eq!(p.work(), Some(3000.0));
}

/// A request's CPU follows its span across `.await` points and worker threads.
#[test]
fn tracing_spans_split_a_services_cpu_by_endpoint() {
    let out = tempfile::tempdir().unwrap();
    // At 1000 Hz, ~670 samples under the label: the share's sampling spread is 0.018. At the
    // default rate (~160) it was 0.037, and the ±0.07 tolerance failed about once in twenty runs
    // (0.738 in a full suite).
    let f = run_fixture("traced_service", out.path(), &["--no-store", "--frequency", "1000"], &[]);
    assert_eq!(f.code, 0, "{f:?}");
    let p = read_profile(&out.path().join("profile.pb.gz"));
    let expected = expectation("traced_service");
    let cpu = p.sample_type_index("cpu").expect("cpu");
    let labelled: i64 =
        p.sample.iter().filter(|s| p.label_str(s, "endpoint").is_some()).map(|s| s.value[cpu]).sum();
    for case in expected["label_cpu_share_of_labelled"].as_array().unwrap() {
        let (label, value) = (case["label"].as_str().unwrap(), case["value"].as_str().unwrap());
        let (share, tolerance) = (case["share"].as_float().unwrap(), case["tolerance"].as_float().unwrap());
        let part: i64 =
            p.sample.iter().filter(|s| p.label_str(s, label) == Some(value)).map(|s| s.value[cpu]).sum();
        let got = part as f64 / labelled as f64;
        assert!(
            (got - share).abs() <= tolerance,
            "share of labelled CPU under {label}={value}: {got:.3}, expected {share} ± {tolerance}"
        );
    }
    check_labels_of(&p, &expected);
}

/// With span and trace ids on, each request's samples carry the trace id its client sent in
/// `traceparent` (which says its endpoint, see the fixture) and a span id; samples outside any span
/// carry neither.
#[test]
fn a_requests_samples_carry_its_trace_id() {
    let out = tempfile::tempdir().unwrap();
    let f = run_fixture("traced_service", out.path(), &["--no-store"], &[("FIXTURE_TRACE_IDS", "1")]);
    assert_eq!(f.code, 0, "{f:?}");
    let p = read_profile(&out.path().join("profile.pb.gz"));
    let cpu = p.sample_type_index("cpu").expect("cpu");
    let mut traces = std::collections::BTreeSet::new();
    for s in p.sample.iter().filter(|s| s.value[cpu] > 0) {
        let (trace, span, endpoint) =
            (p.label_str(s, "trace_id"), p.label_str(s, "span_id"), p.label_str(s, "endpoint"));
        let Some(trace) = trace else {
            assert!(span.is_none() && endpoint.is_none(), "{:?}", program_labels(&p, s));
            continue;
        };
        assert_eq!(trace.len(), 32, "{trace}");
        assert!(span.is_some_and(|s| s.len() == 16), "{:?}", program_labels(&p, s));
        let want = match &trace[..6] {
            "5ea4c4" => "/search",
            "017e55" => "/items",
            other => panic!("a trace id no request had: {trace} ({other})"),
        };
        assert_eq!(endpoint, Some(want), "{trace}");
        traces.insert(trace.to_owned());
    }
    // 200 requests of 2-4 ms at 250 Hz: most of them have samples.
    assert!(traces.len() >= 50, "{} traces sampled", traces.len());
}

/// npm `pprof-format` reads the labels: CPU per endpoint, as the profile has it.
#[test]
fn npm_pprof_format_reads_the_labels() {
    if !crate::readers::pprof_format_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let p = run_label_split(out.path(), &[]);
    let summary = crate::readers::pprof_format_summary(&out.path().join("profile.pb.gz"));
    let cpu = p.sample_type_index("cpu").expect("cpu");
    for value in ["/search", "/items"] {
        let ours: i64 =
            p.sample.iter().filter(|s| p.label_str(s, "endpoint") == Some(value)).map(|s| s.value[cpu]).sum();
        let theirs = summary["labelSums"][format!("endpoint={value}")][cpu].as_f64().unwrap_or(0.0);
        assert!(
            ours > 0 && (theirs - ours as f64).abs() < 1e-6 * ours as f64,
            "{value}: {theirs} against {ours}"
        );
    }
}

#[test]
fn go_tool_pprof_lists_and_focuses_on_the_labels() {
    if !crate::readers::available("go", &["version"]) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    run_label_split(out.path(), &[]);
    let pprof = |args: &[&str]| {
        let o = Command::new("go")
            .args(["tool", "pprof"])
            .args(args)
            .arg(out.path().join("profile.pb.gz"))
            .env("PPROF_TMPDIR", out.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
        stdout
    };
    let tags = pprof(&["-tags", "-sample_index=cpu"]);
    for needle in ["endpoint:", "/search", "/items", "tenant:", "t1"] {
        assert!(tags.contains(needle), "`-tags` lacks {needle}:\n{tags}");
    }
    let focused = pprof(&["-top", "-sample_index=cpu", "-tagfocus=endpoint=/search"]);
    assert!(focused.contains("label_split::search"), "{focused}");
    assert!(
        !focused.contains("label_split::items") && !focused.contains("label_split::unlabelled"),
        "{focused}"
    );
}

/// In production (preloaded, windows uploaded to a store), every CPU window of the traced service
/// keeps the spans' labels as sample labels beside the window's own, and no store key names a
/// label value.
/// `traced_service` built and run as a production service (`traced` 1.0.0 in `eu`, windows of
/// 0.8 s every second, the profile types `types`) with the extra environment `env`, storing into
/// `dir/store`; returns the store's directory once the service has exited (its uploader may still
/// be uploading).
fn traced_service_in_production(
    dir: &std::path::Path,
    types: &str,
    env: &[(&str, &str)],
) -> std::path::PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "labelled",
            "--bin",
            "traced_service",
            "--manifest-path",
        ])
        .arg(crate::util::fixtures_manifest())
        .status()
        .expect("cargo starts");
    assert!(status.success(), "the fixture builds");
    let lib = crate::util::contprof().args(["agent", "path", "--dir"]).arg(dir).output().unwrap();
    assert!(lib.status.success(), "{}", String::from_utf8_lossy(&lib.stderr));
    let lib = String::from_utf8(lib.stdout).unwrap().trim().to_owned();
    let store_dir = dir.join("store");
    let out = Command::new(crate::util::repo_root().join("fixtures/target/release/traced_service"))
        .arg("600")
        .env("LD_PRELOAD", &lib)
        .env("CONTPROF_SERVICE", "traced")
        .env("CONTPROF_VERSION", "1.0.0")
        .env("CONTPROF_ZONE", "eu")
        .env("CONTPROF_INSTANCE", "i-1")
        .env("CONTPROF_STORE", &store_dir)
        .env("CONTPROF_PERIOD", "1")
        .env("CONTPROF_WINDOW", "0.8")
        .env("CONTPROF_TYPES", types)
        .env("CONTPROF_HELPER", env!("CARGO_BIN_EXE_cargo-contprof"))
        .envs(env.iter().copied())
        .output()
        .expect("the service runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    store_dir
}

#[test]
fn production_windows_keep_span_labels_as_sample_labels() {
    use contprof_engine::store::{Store, StoreLocation};
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = traced_service_in_production(dir.path(), "cpu,alloc,heap,threads", &[]);
    let store = Store::open(&StoreLocation::Dir(store_dir)).unwrap();
    // The uploader finishes in the background after the service exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut labelled = BTreeMap::<String, i64>::new();
    while labelled.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no CPU windows with both endpoints: {labelled:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let keys = store.list_windows(Some("traced")).unwrap();
        labelled.clear();
        for key in keys.iter().filter(|k| k.profile_type == "cpu") {
            assert!(!key.path().contains("search") && !key.path().contains("items"), "{}", key.path());
            let Ok(Some(bytes)) = store.get_window(key) else { continue };
            let p = contprof_engine::profile::decode(&bytes).unwrap();
            let cpu = p.sample_type_index("cpu").expect("cpu");
            for s in &p.sample {
                if let Some(endpoint) = p.label_str(s, "endpoint") {
                    assert_eq!(p.label_str(s, "span_name"), Some("request"));
                    assert_eq!(p.label_str(s, "service"), Some("traced"));
                    *labelled.entry(endpoint.to_owned()).or_default() += s.value[cpu];
                }
            }
        }
    }
    assert_eq!(labelled.keys().collect::<Vec<_>>(), ["/items", "/search"]);
    // The windows cover 0.8 s of each second: the split of the requests they saw, loosely.
    let search = labelled["/search"] as f64 / (labelled["/search"] + labelled["/items"]) as f64;
    assert!((0.5..0.8).contains(&search), "share of /search in the windows: {search:.2}");

    // One endpoint's samples only, by the sample label: exported, and compared.
    let store_arg = dir.path().join("store");
    let exported = dir.path().join("search");
    let f = crate::util::finish(
        crate::util::contprof()
            .args([
                "prod",
                "export",
                "--service",
                "traced",
                "--type",
                "cpu",
                "--sample-label",
                "endpoint=/search",
            ])
            .arg("--store")
            .arg(&store_arg)
            .arg(&exported),
    );
    assert_eq!(f.code, 0, "{f:?}");
    let mut cpu_search = 0;
    for file in std::fs::read_dir(&exported).unwrap() {
        let p = contprof_engine::profile::decode(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
        let cpu = p.sample_type_index("cpu").expect("cpu");
        for s in &p.sample {
            assert_eq!(p.label_str(s, "endpoint"), Some("/search"), "an exported sample of another endpoint");
            cpu_search += s.value[cpu];
        }
    }
    assert!(cpu_search > 0, "no /search samples exported: {f:?}");
    // The JSON report of `prod compare` of the version with itself, with `extra` flags.
    let compared = |extra: &[&str]| -> serde_json::Value {
        let f = crate::util::finish(
            crate::util::contprof()
                .args(["prod", "compare", "--service", "traced", "--type", "cpu", "--base", "version=1.0.0"])
                .args(["--head", "version=1.0.0", "--format", "json"])
                .args(extra)
                .arg("--store")
                .arg(&store_arg),
        );
        assert!(f.code == 0 || f.code == 1, "{f:?}");
        serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {f:?}"))
    };
    let report = compared(&["--sample-label", "endpoint=/items"]);
    assert!(report["base"]["extra"]["windows"].as_str().is_some_and(|w| w != "0"), "{report:#}");
    // Broken down by endpoint: both endpoints, each window's split read from the windows (the
    // same windows on both sides: nothing changed).
    let report = compared(&["--by", "endpoint"]);
    let rows = report["breakdowns"][0]["rows"].as_array().cloned().unwrap_or_default();
    let values: BTreeSet<&str> = rows.iter().filter_map(|r| r["value"].as_str()).collect();
    assert!(values.contains("/search") && values.contains("/items"), "{report:#}");
    assert!(rows.iter().all(|r| r["changed"] == false), "the same windows on both sides: {report:#}");
    let f = crate::util::finish(
        crate::util::contprof()
            .args(["prod", "export", "--service", "traced", "--sample-label", "endpoint=/nowhere"])
            .arg("--store")
            .arg(&store_arg)
            .arg(dir.path().join("nowhere")),
    );
    assert_eq!(f.code, 2, "a label no sample carries selects nothing: {f:?}");
}

/// `compare --sample-label`: only the samples that carry the label count, in the verdicts and in
/// the compare page's flame graph; a label no sample carries leaves every run out, and says so.
#[test]
fn compare_reads_only_the_samples_of_one_label() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let env = [("FIXTURE_SCALE", "0.5")];
    let base =
        crate::compare::record_bin("label_split", &store, &dir.path().join("a"), &["--runs", "2"], &env);
    let head =
        crate::compare::record_bin("label_split", &store, &dir.path().join("b"), &["--runs", "2"], &env);
    let pages = dir.path().join("pages");
    let f = crate::compare::compare(
        &store,
        &[&base, &head, "--sample-label", "endpoint=/items", "--flamegraph-dir", pages.to_str().unwrap()],
    );
    assert_eq!(f.code, 0, "{f:?}");
    // The differential flame graph draws the labelled function, not the other label's (a test
    // that holds without the filter: both are drawn then).
    let graph = |dir: &std::path::Path| {
        let svg = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-cpu-diff.svg"))
            .expect("a CPU differential flame graph");
        std::fs::read_to_string(svg).unwrap()
    };
    let svg = graph(&pages);
    assert!(svg.contains("label_split::items"), "the labelled function is in the graph");
    assert!(!svg.contains("label_split::search"), "a function of another label is not");
    let all = dir.path().join("all");
    let f = crate::compare::compare(&store, &[&base, &head, "--flamegraph-dir", all.to_str().unwrap()]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(graph(&all).contains("label_split::search"), "without the filter both are drawn");
    let f = crate::compare::compare(&store, &[&base, &head, "--sample-label", "endpoint=/nowhere"]);
    assert_ne!(f.code, 0, "{f:?}");
    assert!(f.stderr.contains("none of its samples carries endpoint=/nowhere"), "{f:?}");
}

/// `compare --by endpoint`: each endpoint's share of the CPU in base and head, tested run against
/// run. The head's `/search` does three times the work (`FIXTURE_SLOWDOWN_SEARCH=3`): its share
/// `s` of the CPU (50% by design; 43% to 49% measured: `/items` costs more than its rounds say)
/// becomes `3s / (1 + 2s)`, and the other values' shares fall by `1 / (1 + 2s)`. The fixture's
/// runs differ a lot (`/items` took 153 to 232 ms in six runs of one batch, more under load),
/// hence eight runs a side and a large change: at twice the work, one of about a dozen runs of
/// the labels tests together judged a share's change noise. The sides are recorded in turns of
/// two runs, as `check` interleaves them: recorded one after the other, the head's eight runs
/// met a busier machine than the base's in one full-suite run (the other tests' load slows
/// `items` and `search` unequally: `/items` +41% in amount, `/search`'s share 0.63 for 0.75).
#[test]
fn compare_breaks_the_cpu_down_by_endpoint_and_finds_the_endpoint_that_grew() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let runs = ["--runs", "2"];
    let slower = [("FIXTURE_SLOWDOWN_SEARCH", "3")];
    let (mut base, mut head) = (Vec::new(), Vec::new());
    for turn in 0..4 {
        let out = |side: &str| dir.path().join(format!("{side}{turn}"));
        base.push(crate::compare::record_bin("label_split", &store, &out("a"), &runs, &[]));
        head.push(crate::compare::record_bin("label_split", &store, &out("b"), &runs, &slower));
    }
    let (base, head) = (base.join(","), head.join(","));
    let f = crate::compare::compare(
        &store,
        &[&base, &head, "--by", "endpoint", "--no-flamegraphs", "--format", "json"],
    );
    assert!(f.code == 0 || f.code == 1, "{f:?}");
    let report: serde_json::Value = serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {f:?}"));
    let cpu = report["breakdowns"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["metric"] == "cpu"))
        .unwrap_or_else(|| panic!("no CPU breakdown: {report:#}"));
    assert_eq!((&cpu["key"], &cpu["tested"]), (&"endpoint".into(), &"share".into()), "{cpu:#}");
    let row = |value: serde_json::Value| {
        cpu["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["value"] == value)
            .cloned()
            .unwrap_or_else(|| panic!("{cpu:#}"))
    };
    let search = row("/search".into());
    let s = search["base_share"].as_f64().unwrap();
    assert!((0.38..0.58).contains(&s), "{cpu:#}");
    let expected = [("/search", 3.0 / (1.0 + 2.0 * s) - 1.0), ("/items", 1.0 / (1.0 + 2.0 * s) - 1.0)];
    for (value, change) in expected {
        let r = row(value.into());
        let got = r["change"].as_f64().unwrap();
        assert!((got - change).abs() < 0.2, "{value}: {got:+.3}, expected {change:+.3}: {cpu:#}");
        assert_eq!(r["changed"], true, "{value}: {cpu:#}");
    }
    let unlabelled = row(serde_json::Value::Null);
    assert!(unlabelled["change"].as_f64().is_some_and(|c| c < -0.1), "{cpu:#}");
    // The text report says it too, and so does the comparison's page.
    let pages = dir.path().join("pages");
    let f = crate::compare::compare(
        &store,
        &[&base, &head, "--by", "endpoint", "--flamegraph-dir", pages.to_str().unwrap()],
    );
    assert!(f.stdout.contains("By sample label endpoint in "), "{f:?}");
    let search = f.stdout.lines().find(|l| l.trim_start().starts_with("/search")).unwrap_or_default();
    assert!(search.ends_with("changed"), "{f:?}");
    let page = std::fs::read_to_string(pages.join("bin_label_split-compare.html")).unwrap();
    let row = page.find(r#"<tr data-value="/search">"#).map(|at| &page[at..]).unwrap_or_default();
    assert!(row.split("</tr>").next().unwrap_or_default().contains(r#"data-changed="yes""#), "{row:.600}");
}

/// The trace view: one slow request of a service (its handler blocks its worker in
/// `std::thread::sleep` inside its span), opened in the viewer by its trace id as a tracing UI
/// links it, shows its wall time in the sleep under the handler; a fast request's trace its CPU
/// in its own endpoint's function; and the breakdown by `endpoint` lists the endpoints.
#[test]
fn a_slow_requests_trace_id_opens_its_wall_time_in_the_viewer() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let _shared = crate::util::shared();
    let dir = tempfile::tempdir().unwrap();
    // Long enough that a window falls on it even when the uploader starts slowly under load.
    let env = [("FIXTURE_TRACE_IDS", "1"), ("FIXTURE_SLOW_MS", "4000")];
    let store = traced_service_in_production(dir.path(), "cpu,wall", &env);
    let slow_trace = "51075107000000000000000000000001";
    let mut serve = crate::util::contprof()
        .args(["serve", "--bind", "127.0.0.1:0", "--no-compact", "--store"])
        .arg(&store)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")).map(str::to_owned))
        .expect("serve says where it listens");
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
    };
    // The uploader finishes in the background after the service exits: wait for the window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let view = format!("/prod/view?service=traced&type=wall&since=1h&trace={slow_trace}&format=json");
    let body = loop {
        let (status, body) = get(&view);
        if status.contains(" 200 ") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "no wall window holds the slow trace: {status} {body}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    // The flame graph's tree: each node's function, parent and own wall time.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tree = &v["tree"];
    let names: Vec<&str> =
        tree["fns"]["name"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let fun: Vec<usize> =
        tree["fn"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
    let parent: Vec<usize> =
        tree["parent"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
    let wall =
        tree["types"].as_array().unwrap().iter().position(|t| t["name"] == "wall").expect("a wall column");
    let own: Vec<i64> =
        tree["self"][0][wall].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    let total: i64 = own.iter().sum();
    let (top, &most) = own.iter().enumerate().max_by_key(|(_, v)| **v).unwrap();
    let mut path = vec![names[fun[top]]];
    let mut node = top;
    while node != 0 {
        node = parent[node];
        path.push(names[fun[node]]);
    }
    assert!(total >= 200_000_000, "the slow request's wall time in the windows: {total} ns");
    assert!(most * 10 >= total * 9, "its wall time is in one place: {most} of {total} ns at {path:?}");
    assert!(path[0].contains("nanosleep"), "it sits in the sleep: {path:?}");
    assert!(
        path.iter().any(|f| f.starts_with("traced_service::slow")),
        "under the handler that blocks: {path:?}"
    );

    // The breakdown by endpoint lists the endpoints.
    let (status, body) = get("/prod/view?service=traced&type=cpu&since=1h&by=endpoint");
    assert!(status.contains(" 200 "), "{status} {body}");
    for endpoint in ["/search", "/items"] {
        assert!(
            body.contains(&format!(r#"<tr data-value="{endpoint}">"#)),
            "{endpoint} in the breakdown: {body}"
        );
    }
    // A fast request's trace, on CPU (one of the /search requests the windows saw, read from the
    // stored windows): its own endpoint's function, not the other's. Trace ids are one value per
    // request: the page says nothing breaks down by them.
    let (status, body) = get("/prod/view?service=traced&type=cpu&since=1h&by=trace_id");
    assert!(status.contains(" 200 ") && body.contains("label-breakdown-none"), "{status} {body}");
    let store =
        contprof_engine::store::Store::open(&contprof_engine::store::StoreLocation::Dir(store)).unwrap();
    let search_trace = store
        .list_windows(Some("traced"))
        .unwrap()
        .iter()
        .filter(|k| k.profile_type == "cpu")
        .filter_map(|k| store.get_window(k).ok().flatten())
        .find_map(|bytes| {
            let p = contprof_engine::profile::decode(&bytes).unwrap();
            p.sample.iter().find_map(|s| {
                p.label_str(s, "trace_id").filter(|t| t.starts_with("5ea4c4")).map(str::to_owned)
            })
        })
        .expect("a /search request in the CPU windows");
    let (status, body) =
        get(&format!("/prod/view?service=traced&type=cpu&since=1h&trace={search_trace}&format=json"));
    assert!(status.contains(" 200 "), "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names = v["tree"]["fns"]["name"].as_array().unwrap();
    let drawn: Vec<&str> = v["tree"]["fn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| names[i.as_u64().unwrap() as usize].as_str().unwrap())
        .collect();
    assert!(drawn.iter().any(|f| f.ends_with("search_cpu")), "{drawn:?}");
    assert!(!drawn.iter().any(|f| f.ends_with("items_cpu")), "{drawn:?}");
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGTERM) };
    assert!(serve.wait().unwrap().success(), "serve stops cleanly");
}
