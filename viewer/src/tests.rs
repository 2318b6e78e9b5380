//! Unit tests of the viewer: tree aggregation, colour classes, query validation, routes and their
//! 4xx answers, the page's self-containment.

use std::path::Path;

use super::classify::{FrameClass, is_own};
use super::http::Request;
use super::page::{ReportInput, write_report};
use super::query::{ListQuery, ViewQuery, decode, is_run_id};
use super::server::{State, is_loopback_host};
use super::tree::FlameTree;
use contprof_engine::git::RepoState;
use contprof_engine::profile::{self, Profile};
use contprof_engine::store::{Deployment, NewProfile, NewRun, Store, StoreLocation, WindowKey};

pub(super) use contprof_engine::profile::test_support::synth;

const MAIN: &str = "app::main";

fn sample_profile() -> Profile {
    synth(&[
        (&[MAIN, "app::parse", "core::str::from_utf8"], 30_000_000, 0),
        (&[MAIN, "app::parse"], 10_000_000, 4096),
        (&[MAIN, "app::render+app::render::inner", "std::io::Write::write_all", "write"], 50_000_000, 0),
        (&[MAIN, "app::parse", "core::str::from_utf8"], 10_000_000, 0),
    ])
}

#[test]
fn tree_aggregates_equal_stacks_and_sums_totals() {
    let mut t = FlameTree::new(1);
    t.add(0, &sample_profile());
    // root, main, parse, from_utf8, render, inner, write_all, write
    assert_eq!(t.len(), 8);
    let cpu = t.sample_types.iter().position(|(n, _)| n == "cpu").unwrap();
    let total = t.totals(0, cpu);
    assert_eq!(total[0], 100_000_000);
    let parse = t.find_path(&[MAIN, "app::parse"]).unwrap();
    assert_eq!(total[parse], 50_000_000);
    assert_eq!(t.self_values[0][cpu][parse], 10_000_000);
    let utf8 = t.find_path(&[MAIN, "app::parse", "core::str::from_utf8"]).unwrap();
    assert_eq!(t.self_values[0][cpu][utf8], 40_000_000, "two equal stacks are one node");
    assert!(t.parent.iter().enumerate().skip(1).all(|(i, &p)| (p as usize) < i), "parents come first");
}

#[test]
fn inlined_frames_nest_inside_their_caller() {
    let mut t = FlameTree::new(1);
    t.add(0, &sample_profile());
    assert!(t.find_path(&[MAIN, "app::render", "app::render::inner", "std::io::Write::write_all"]).is_some());
    assert!(t.find_path(&[MAIN, "app::render::inner"]).is_none());
}

#[test]
fn compare_tree_keeps_sides_apart_and_counts_profiles() {
    let mut t = FlameTree::new(2);
    let p = sample_profile();
    t.add(0, &p);
    t.add(1, &p);
    t.add(1, &synth(&[(&[MAIN, "app::new_code"], 20_000_000, 0)]));
    assert_eq!(t.profiles, vec![1, 2]);
    let cpu = t.sample_types.iter().position(|(n, _)| n == "cpu").unwrap();
    let new = t.find_path(&[MAIN, "app::new_code"]).unwrap();
    assert_eq!((t.totals(0, cpu)[new], t.totals(1, cpu)[new]), (0, 20_000_000));
    assert_eq!(t.totals(1, cpu)[0], 120_000_000);
}

#[test]
fn json_drops_sample_types_never_recorded() {
    let mut t = FlameTree::new(1);
    t.add(0, &sample_profile());
    let v = serde_json::to_value(t.to_json()).unwrap();
    let types: Vec<&str> =
        v["types"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(types, ["samples", "cpu", "alloc_objects", "alloc_space"]);
    assert_eq!(v["self"][0].as_array().unwrap().len(), 4);
    assert_eq!(v["parent"].as_array().unwrap().len(), 8);
}

#[test]
fn frame_classes_follow_the_first_path_segment() {
    let crate_of = |s: &str| FrameClass::Crate(s.to_owned());
    for (name, class) in [
        ("std::io::Write::write_all", FrameClass::Std),
        ("core::str::from_utf8", FrameClass::Std),
        ("alloc::raw_vec::RawVec<T,A>::grow_one", FrameClass::Std),
        ("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop", FrameClass::Std),
        ("<[u8] as core::fmt::Debug>::fmt", FrameClass::Std),
        ("<&T as core::fmt::Display>::fmt", FrameClass::Std),
        ("<app::Foo as core::fmt::Display>::fmt", crate_of("app")),
        ("regex_automata::meta::Regex::search", crate_of("regex_automata")),
        ("fixture::main::{{closure}}", crate_of("fixture")),
        ("malloc", FrameClass::Native),
        ("__libc_start_main", FrameClass::Native),
        ("0x7f00deadbeef", FrameClass::Native),
        ("[unknown]", FrameClass::Native),
        // Generic parameters are no crates: the trait's crate, else no crate at all.
        ("<A as core::iter::traits::iterator::Iterator>::next", FrameClass::Std),
        ("<Q as hashbrown::Equivalent<K>>::equivalent", crate_of("hashbrown")),
        ("<W as serde_json::ser::Formatter>::write_f64", crate_of("serde_json")),
        ("<I>::next", FrameClass::Native),
    ] {
        assert_eq!(FrameClass::of(name), class, "{name}");
    }
    // The prologue is made of runtime classes: std, native code and the harnesses.
    assert!(FrameClass::of("std::rt::lang_start_internal").is_runtime());
    assert!(FrameClass::of("__libc_start_call_main").is_runtime());
    assert!(FrameClass::of("criterion::bencher::Bencher<M>::iter").is_runtime());
    assert!(!FrameClass::of("app::main").is_runtime());
}

/// Issue 27: std's vendored hashbrown is std's; a rayon worker's scheduler frames are its
/// prologue; only the workspace's own code is "own".
#[test]
fn source_paths_tell_std_and_dependencies_from_the_users_code() {
    let std_hashbrown = "/rust/deps/hashbrown-0.16.1/src/raw/mod.rs";
    assert_eq!(
        FrameClass::of_function("hashbrown::raw::RawTableInner::find_inner", std_hashbrown),
        FrameClass::Std
    );
    let registry =
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hashbrown-0.15.2/src/raw/mod.rs";
    let users = FrameClass::of_function("hashbrown::raw::RawTableInner::find_inner", registry);
    assert_eq!(users, FrameClass::Crate("hashbrown".into()));
    assert!(!is_own(&users, registry));
    let app = FrameClass::of_function("words::tokenize", "/work/words/src/main.rs");
    assert!(is_own(&app, "/work/words/src/main.rs"));
    assert!(!is_own(&app, ""));
    assert!(!is_own(
        &FrameClass::Std,
        "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/rt.rs"
    ));
    let rayon = FrameClass::of("rayon_core::registry::WorkerThread::wait_until_cold");
    assert!(rayon.is_prologue() && !rayon.is_runtime());
    assert!(FrameClass::Std.is_prologue() && !app.is_prologue());
}

#[test]
fn one_colour_per_class_and_std_apart_from_crates() {
    let app = FrameClass::of("app::main").color();
    assert_eq!(app, FrameClass::of("app::parse::{{closure}}").color());
    assert_ne!(app, FrameClass::Std.color());
    assert_ne!(FrameClass::Std.color(), FrameClass::Native.color());
    // Hashed crate colours never take the standard library's hue.
    for name in ["a", "serde", "tokio", "regex", "app", "hyper", "rand", "x1", "x2", "x3", "x4", "x5"] {
        assert_ne!(FrameClass::Crate(name.into()).color(), FrameClass::Std.color(), "{name}");
    }
}

#[test]
fn query_strings_decode_and_reject_bad_escapes() {
    assert_eq!(
        decode("a=1+2&b=%2Fx%C3%A9&c").unwrap(),
        [("a".into(), "1 2".into()), ("b".into(), "/xé".into()), ("c".into(), String::new())]
    );
    assert!(decode("a=%zz").is_err());
    assert!(decode("a=%4").is_err());
    assert!(decode("a=%ff").is_err(), "not UTF-8");
}

const RUN: &str = "20250101T120000.000001Z-0123456789";

#[test]
fn view_queries_accept_run_ids_only() {
    let q = ViewQuery::parse(&format!("run={RUN}&run={RUN}&group=test%2Fapi&format=json")).unwrap();
    assert_eq!((q.runs.len(), q.group.as_deref(), q.json), (1, Some("test/api"), true));
    assert!(q.selects("test/api/hashing") && q.selects("test/api") && !q.selects("test/apix"));
    for bad in
        ["run=..%2F..%2Fetc%2Fpasswd", "run=20250101Tx%2F..", "nope=1", "format=xml", "group=a&group=b"]
    {
        assert!(ViewQuery::parse(bad).is_err(), "{bad}");
    }
    assert!(is_run_id(RUN) && !is_run_id("20250101T/../../x") && !is_run_id("main"));
}

#[test]
fn list_queries_validate_every_field() {
    let q = ListQuery::parse("commit=ABCD12&branch=main&tag=service%3Dapi&since=2025-01-01&limit=5").unwrap();
    assert_eq!(q.commit.as_deref(), Some("abcd12"));
    assert_eq!(q.filter.tags, [("service".to_owned(), "api".to_owned())]);
    assert_eq!(q.filter.limit, None, "commit prefix filters after the store");
    assert!(q.filter.since.is_some());
    for bad in [
        "commit=xyz",
        "commit=ab",
        "since=yesterday",
        "limit=0",
        "limit=x",
        "tag==v",
        "branch=a%0Ab",
        "what=1",
    ] {
        assert!(ListQuery::parse(bad).is_err(), "{bad}");
    }
}

/// The request hyper would hand over for `method target` with these headers.
fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Request, &'static str> {
    let mut b = hyper::Request::builder().method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    Request::new(&parts, false)
}

#[test]
fn requests_are_paths_with_one_host_and_hosts_are_checked() {
    let r = request("GET", "/view?run=1", &[("host", "127.0.0.1:8080")]).unwrap();
    assert_eq!(
        (r.path.as_str(), r.query.as_str(), r.host.as_deref()),
        ("/view", "run=1", Some("127.0.0.1:8080"))
    );
    assert!(request("GET", "http://evil/", &[("host", "localhost")]).is_err(), "absolute URI");
    assert!(request("GET", "/", &[("host", "localhost"), ("host", "evil.example")]).is_err());
    assert_eq!(request("GET", "/", &[]).unwrap().host, None);
    for ok in ["localhost", "localhost:80", "127.0.0.1:1", "[::1]:8080", "127.1.2.3"] {
        assert!(is_loopback_host(ok), "{ok}");
    }
    for bad in ["evil.example", "evil.example:80", "10.0.0.1:80", "[::2]:1", "localhost.evil.example"] {
        assert!(!is_loopback_host(bad), "{bad}");
    }
}

/// Stores `profile` as a `cpu` window of service `api` (zone `z`), version `version`, replica
/// `instance`, starting at `start`.
pub(crate) fn put_api_window(store: &Store, version: &str, instance: &str, start: i64, profile: &Profile) {
    let key = WindowKey {
        deployment: Deployment { service: "api".into(), version: version.into(), zone: "z".into() },
        profile_type: "cpu".into(),
        start,
        instance: instance.into(),
    };
    store.put_window(&key, profile::encode_to_vec(profile)).unwrap();
}

/// The status and body (or error message) of `GET target` from a loopback host.
pub(crate) fn get(state: &State, target: &str) -> (u16, String) {
    route(state, &request("GET", target, &[("host", "localhost:1")]).unwrap())
}

fn route(state: &State, r: &Request) -> (u16, String) {
    match state.route(r) {
        Ok(resp) => (resp.status, String::from_utf8(resp.body).unwrap()),
        Err(f) => (f.status, f.message),
    }
}

fn store_with_run(dir: &Path) -> String {
    let store = Store::open(&StoreLocation::Dir(dir.to_path_buf())).unwrap();
    let repo = RepoState::Commit {
        commit: "ab".repeat(20),
        branch: Some("main".into()),
        dirty: None,
        shallow: false,
    };
    let bytes = profile::encode_to_vec(&sample_profile());
    let p = NewProfile { group: "bin/app".into(), repetition: 0, exit_code: Some(0), stopped: None, bytes };
    store.write_run(NewRun::new(repo), vec![p]).unwrap().run_id
}

#[test]
fn routes_answer_4xx_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let run = store_with_run(tmp.path());
    let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);
    let (status, body) = get(&state, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&run) && body.contains("bin/app"));
    let (status, body) = get(&state, &format!("/view?run={RUN}"));
    assert_eq!(status, 404);
    assert!(body.contains(RUN) && body.contains(&tmp.path().display().to_string()), "{body}");
    assert_eq!(get(&state, "/view?run=..%2Fmeta").0, 400);
    assert_eq!(get(&state, "/view").0, 400);
    assert_eq!(get(&state, &format!("/compare?base={run}")).0, 400);
    assert_eq!(get(&state, &format!("/view?run={run}&group=bin%2Fother")).0, 404);
    assert_eq!(get(&state, "/etc/passwd").0, 404);
    assert_eq!(get(&state, "/?limit=-1").0, 400);
    let post = request("POST", "/", &[("host", "localhost")]).unwrap();
    assert_eq!(route(&state, &post).0, 405);
    let with_body = Request { has_body: true, ..request("GET", "/", &[("host", "localhost")]).unwrap() };
    assert_eq!(route(&state, &with_body).0, 413);
    let rebinding = request("GET", "/", &[("host", "evil.example")]).unwrap();
    assert_eq!(route(&state, &rebinding).0, 403);
}

#[test]
fn views_render_the_same_page_as_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let run = store_with_run(tmp.path());
    let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);
    let (status, body) = get(&state, &format!("/view?run={run}&group=bin"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("id=\"contprof-data\"") && body.contains("app::parse"));
    let (status, json) = get(&state, &format!("/compare?base={run}&head={run}&format=json"));
    assert_eq!(status, 200, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "compare");
    assert_eq!(v["tree"]["profiles"], serde_json::json!([1, 1]));
}

#[test]
fn unreadable_store_gives_an_error_page_naming_it_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-store");
    let state = State::new(StoreLocation::Dir(missing.clone()), false);
    let (status, body) = get(&state, "/");
    assert_eq!(status, 503);
    assert!(body.contains(&missing.display().to_string()), "{body}");
    assert!(!missing.exists(), "the viewer must not create the store");
    // A store of another format.
    std::fs::write(tmp.path().join("store.json"), "{\"format\":\"other\",\"version\":1}").unwrap();
    let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);
    let (status, body) = get(&state, "/");
    assert_eq!(status, 503);
    assert!(body.contains(&tmp.path().display().to_string()) && body.contains("format"), "{body}");
}

#[test]
fn report_is_self_contained_and_escapes_script_ends() {
    let p = synth(&[(&[MAIN, "app::</script><script>alert(1)</script>"], 1_000_000, 0)]);
    let mut out = Vec::new();
    write_report(&mut out, &ReportInput::profile("t<itle>", std::slice::from_ref(&p))).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert_eq!(html.matches("</script>").count(), 2, "only the page's own two scripts end");
    assert!(html.contains("t&lt;itle&gt;"));
    for needle in ["http://", "https://", "src=\"", "@import"] {
        assert!(!html.contains(needle), "page loads nothing: found {needle}");
    }
}

#[test]
fn serve_refuses_remote_addresses_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = super::ServeOptions::new(StoreLocation::Dir(tmp.path().to_path_buf()));
    opts.bind = "0.0.0.0:0".parse().unwrap();
    let err = super::Server::bind(opts.clone()).unwrap_err();
    assert!(matches!(err, super::ViewerError::NotLoopback { .. }), "{err}");
    opts.bind = "127.0.0.1:0".parse().unwrap();
    let server = super::Server::bind(opts).unwrap();
    assert!(server.addr().ip().is_loopback() && server.addr().port() != 0);
    assert!(server.url().starts_with("http://127.0.0.1:"));
}

#[test]
fn head_and_get_over_a_real_socket() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    store_with_run(tmp.path());
    let mut opts = super::ServeOptions::new(StoreLocation::Dir(tmp.path().to_path_buf()));
    opts.bind = "127.0.0.1:0".parse().unwrap();
    let server = super::Server::bind(opts).unwrap();
    let addr = server.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let t = std::thread::spawn(move || server.run_until(&stop2));
    let ask = |req: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    // Connections are kept alive unless the client says otherwise.
    let head = ask("HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.contains("Content-Security-Policy: default-src 'none'"));
    let bad = ask("GET /view?run=x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 ") && bad.contains("not a run id"), "{bad}");
    let garbage = ask("hello\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap().unwrap();
}

/// Records one run of group `bin/app` with `settings` and these profiles.
fn record_run(
    store: &Store,
    commit: char,
    settings: contprof_engine::store::Settings,
    profiles: &[Profile],
) -> String {
    record_tagged(store, commit, settings, profiles, &[])
}

/// [`record_run`] with these tags.
fn record_tagged(
    store: &Store,
    commit: char,
    settings: contprof_engine::store::Settings,
    profiles: &[Profile],
    tags: &[(&str, &str)],
) -> String {
    let repo = RepoState::Commit {
        commit: commit.to_string().repeat(40),
        branch: Some("main".into()),
        dirty: None,
        shallow: false,
    };
    let mut run = NewRun::new(repo);
    run.settings = settings;
    run.tags = tags.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
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
    store.write_run(run, profiles).unwrap().run_id
}

/// The agent's settings of a run of 3 repetitions at 999 Hz with allocations off.
fn cpu_only_settings() -> contprof_engine::store::Settings {
    contprof_engine::store::Settings {
        engine: contprof_engine::store::Recorder::Agent,
        frequency_hz: 999,
        alloc_mode: Some(contprof_protocol::format::AllocMode::Off),
        alloc_interval: None,
        runs: 3,
        unwind: contprof_protocol::env::Unwind::Tables,
        contention_rate_ns: None,
        wall_hz: None,
    }
}

#[test]
fn compare_reads_the_runs_as_their_settings_say_like_the_cli() {
    // Allocations recorded `off`: whatever allocation values the profiles hold are not compared
    // (the viewer used to read them as sampled at the default interval), while CPU is.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let settings = cpu_only_settings();
    let side = |parse_ms: i64, bytes: i64, jitter: i64| -> Vec<Profile> {
        (0..3)
            .map(|j| {
                // app::parse and five functions that do not change.
                let steady = ["app::render", "app::load", "app::index", "app::store", "app::send"];
                let mut stacks: Vec<(&[&str], i64, i64)> =
                    vec![(&[MAIN, "app::parse"][..], (parse_ms + j * jitter) * 1_000_000, bytes)];
                let frames: Vec<[&str; 2]> = steady.iter().map(|f| [MAIN, *f]).collect();
                for (k, f) in frames.iter().enumerate() {
                    stacks.push((&f[..], 200_000_000 + (j + k as i64) * 1_000_000, 0));
                }
                synth(&stacks)
            })
            .collect()
    };
    let base = record_run(&store, 'a', settings.clone(), &side(500, 1 << 20, 2));
    let head = record_run(&store, 'b', settings, &side(1000, 64 << 20, 3));
    let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);
    let (status, json) = get(&state, &format!("/compare?base={base}&head={head}&format=json"));
    assert_eq!(status, 200, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let parse_cpu = findings.iter().any(|f| f["function"] == "app::parse" && f["metric"] == "cpu");
    assert!(parse_cpu, "the doubled CPU of app::parse: {findings:#?}");
    assert!(findings.iter().all(|f| f["metric"] == "cpu"), "allocations were recorded off: {findings:#?}");

    // The same runs through the CLI's pipeline give the same findings.
    let runs = |id: &str| vec![store.show(id).unwrap()];
    let (b, h) = (runs(&base), runs(&head));
    let keep = |_: &str| true;
    let opts = contprof_engine::pipeline::PrepareOptions {
        keep: &keep,
        filter_name: None,
        allow_mismatch: false,
        fold_library: true,
        sample_labels: &[],
        by_label: None,
    };
    let prepared = contprof_engine::pipeline::prepare(
        &store,
        contprof_engine::pipeline::SideRuns { label: "a", describe: "a", runs: &b },
        contprof_engine::pipeline::SideRuns { label: "b", describe: "b", runs: &h },
        &opts,
    )
    .unwrap();
    // Issue 28: nothing decoded is held once prepared (a suite's instruction profiles took
    // gigabytes); a group's profiles are read again when its flame graph asks for them.
    assert!(prepared.profiles.is_empty());
    let keys = prepared.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (pb, ph) = prepared.profiles_of(&store, keys[0]);
    assert_eq!((pb.len(), ph.len()), (3, 3));
    let cmp = contprof_engine::compare::compare(
        &prepared.groups,
        Default::default(),
        Default::default(),
        &Default::default(),
    )
    .unwrap();
    let cli: Vec<(String, String)> = cmp
        .findings
        .iter()
        .filter(|f| f.verdict != contprof_engine::compare::Verdict::Unchanged && !f.inherited)
        .map(|f| (f.function.clone(), f.metric.to_string()))
        .collect();
    let mut viewer: Vec<(String, String)> = findings
        .iter()
        .map(|f| (f["function"].as_str().unwrap().to_owned(), f["metric"].as_str().unwrap().to_owned()))
        .collect();
    viewer.sort();
    let mut cli = cli;
    cli.sort();
    assert_eq!(viewer, cli);
}

/// Issue 28: `/compare` reaches its verdict through the engine's one entry point, as `compare`
/// and `check` do: the between-batch spread learned from an earlier batch of the base's commit
/// in the store, and the method for interleaved sides when the runs carry `check`'s tag.
#[test]
fn compare_gives_the_verdict_of_the_cli_with_history_and_interleaving() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let settings = cpu_only_settings();
    // Eight functions of about 12% each; `scale` moves each by its own factor (a batch recorded
    // at another time), `parse` is app::parse's CPU in ms.
    let side = |parse: i64, scale: &[f64; 7]| -> Vec<Profile> {
        const STEADY: [&str; 7] = ["app::a", "app::b", "app::c", "app::d", "app::e", "app::f", "app::g"];
        (0..3)
            .map(|j| {
                let frames: Vec<[&str; 2]> = STEADY.iter().map(|f| [MAIN, *f]).collect();
                let mut stacks: Vec<(&[&str], i64, i64)> =
                    vec![(&[MAIN, "app::parse"][..], (parse + j * 3) * 1_000_000, 0)];
                for (k, f) in frames.iter().enumerate() {
                    let ms = (300.0 * scale[k]) as i64 + j * 2 + k as i64;
                    stacks.push((&f[..], ms * 1_000_000, 0));
                }
                synth(&stacks)
            })
            .collect()
    };
    let same = [1.0; 7];
    let moved = [1.4, 0.7, 1.3, 0.75, 1.35, 0.7, 1.0];
    record_run(&store, 'a', settings.clone(), &side(300, &moved));
    let base = record_run(&store, 'a', settings.clone(), &side(300, &same));
    let head = record_run(&store, 'b', settings.clone(), &side(420, &same));

    let engine = |base: &str, head: &str| {
        let runs = |id: &str| vec![store.show(id).unwrap()];
        let (b, h) = (runs(base), runs(head));
        let keep = |_: &str| true;
        let opts = contprof_engine::pipeline::PrepareOptions {
            keep: &keep,
            filter_name: None,
            allow_mismatch: true,
            fold_library: true,
            sample_labels: &[],
            by_label: None,
        };
        let compared = contprof_engine::pipeline::compare_stored(
            contprof_engine::pipeline::history::Source { store: &store, repo: None },
            (contprof_engine::pipeline::SideRuns { label: "a", describe: "a", runs: &b }, Default::default()),
            (contprof_engine::pipeline::SideRuns { label: "b", describe: "b", runs: &h }, Default::default()),
            &opts,
            &Default::default(),
        )
        .unwrap();
        let c = &compared.comparison;
        let findings: Vec<_> = c
            .findings
            .iter()
            .filter(|f| f.verdict != contprof_engine::compare::Verdict::Unchanged && !f.inherited)
            .collect();
        let v = serde_json::json!({"findings": findings, "power": c.power});
        (v, compared.prepared.notes)
    };
    let viewer = |base: &str, head: &str| {
        let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);
        let (status, json) = get(&state, &format!("/compare?base={base}&head={head}&format=json"));
        assert_eq!(status, 200, "{json}");
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    };
    let verdicts = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        let mut out: Vec<_> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["function"].to_string(), f["metric"].to_string(), f["verdict"].to_string()))
            .collect();
        out.sort();
        out
    };
    let cpu_power = |v: &serde_json::Value| -> serde_json::Value {
        v["power"].as_array().unwrap().iter().find(|p| p["metric"] == "cpu").unwrap().clone()
    };

    // Two batches: the spread between the earlier batch and the base (up to 40% per function)
    // is learned and widens the base-head comparison, in the viewer as in the engine.
    let (cli, notes) = engine(&base, &head);
    assert!(notes.iter().any(|n| n.contains("learned from the earlier batch")), "{notes:?}");
    let shown = viewer(&base, &head);
    let source = cpu_power(&cli)["drift_source"].clone();
    assert!(source == "history" || source == "pooled", "{:#}", cpu_power(&cli));
    assert_eq!(cpu_power(&shown), cpu_power(&cli));
    assert_eq!(verdicts(&shown), verdicts(&cli));

    // The same sides recorded interleaved by `check`: no history, the interleaved method (the
    // sides' own A/A is estimated), again the same in both.
    let tag = [(contprof_engine::store::INTERLEAVED_TAG, "job-1")];
    let base = record_tagged(&store, 'a', settings.clone(), &side(300, &same), &tag);
    let head = record_tagged(&store, 'b', settings, &side(420, &same), &tag);
    let (cli, notes) = engine(&base, &head);
    assert!(!notes.iter().any(|n| n.contains("learned from the earlier batch")), "{notes:?}");
    assert!(cpu_power(&cli)["sides_sd"].is_number(), "{:#}", cpu_power(&cli));
    let shown = viewer(&base, &head);
    assert_eq!(cpu_power(&shown), cpu_power(&cli));
    assert_eq!(verdicts(&shown), verdicts(&cli));
}

/// Issue 14: the profile-type switch offers a `--contention` profile's waits, labelled, in the
/// units the page formats them by (`nanoseconds` shows as a time).
#[test]
fn type_switch_offers_lock_waits() {
    let mut p = synth(&[
        (&[MAIN, "app::wait", "std::sync::Mutex::lock"], 0, 0),
        (&[MAIN, "app::busy"], 5_000_000, 0),
    ]);
    for (t, u) in profile::CONTENTION_TYPES {
        let vt = profile::ValueType { r#type: p.intern(t), unit: p.intern(u) };
        p.sample_type.push(vt);
    }
    for (s, waits) in p.sample.iter_mut().zip([[4, 8_000_000], [0, 0]]) {
        s.value.extend(waits);
    }
    let mut t = FlameTree::new(1);
    t.add(0, &p);
    let json = serde_json::to_value(t.to_json()).unwrap_or_default();
    let types: Vec<(&str, &str, &str)> = json["types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or(""),
                t["unit"].as_str().unwrap_or(""),
                t["label"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(types.contains(&("contentions", "count", "Lock waits")), "{types:?}");
    assert!(types.contains(&("delay", "nanoseconds", "Time waiting for locks")), "{types:?}");
}

/// A run of `app::search` (`search` ns of CPU), `app::items` (3 ms) and `app::idle` (2 ms), the
/// first two labelled with their `endpoint`, the last with none.
fn labelled_profile(search: i64) -> Profile {
    let mut p = contprof_engine::profile::test_support::synth(&[
        (&["main", "app::search"], search, 0),
        (&["main", "app::items"], 3_000_000, 0),
        (&["main", "app::idle"], 2_000_000, 0),
    ]);
    p.default_sample_type = p.intern("cpu"); // as `build_profile` sets it
    let key = p.intern("endpoint");
    for (i, value) in ["/search", "/items"].into_iter().enumerate() {
        let str = p.intern(value);
        p.sample[i].label.push(contprof_engine::profile::Label { key, str, ..Default::default() });
    }
    p
}

/// Issue 29: the run pages break runs down by a sample label (`by`), one run's parts or a
/// comparison's shares on both sides, and keep only a label's samples (`sample_label`), in the
/// flame graph and, on a comparison, in the verdicts, as `compare --sample-label` does.
#[test]
fn run_pages_break_down_by_a_sample_label_and_keep_one_labels_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreLocation::Dir(tmp.path().to_path_buf())).unwrap();
    let base = record_run(&store, 'a', cpu_only_settings(), &vec![labelled_profile(5_000_000); 3]);
    let head = record_run(&store, 'b', cpu_only_settings(), &vec![labelled_profile(10_000_000); 3]);
    let state = State::new(StoreLocation::Dir(tmp.path().to_path_buf()), false);

    let (status, body) = get(&state, &format!("/view?run={base}&by=endpoint"));
    assert_eq!(status, 200, "{body}");
    let row =
        r#"<tr data-value="/search"><td>/search</td><td class="num">15.0 ms</td><td class="num">50.0%</td>"#;
    assert!(body.contains(row), "{body}");
    assert!(body.contains("(no such label)") && body.contains(r#"id="run-by-form""#), "{body}");
    let only = format!(r#"href="/view?run={base}&amp;sample_label=endpoint%3D%2Fitems""#);
    assert!(body.contains(&only), "each value links to its samples alone: {body}");

    let (status, body) =
        get(&state, &format!("/view?run={base}&sample_label=endpoint%3D%2Fitems&by=endpoint"));
    assert_eq!(status, 200, "{body}");
    let row =
        r#"<tr data-value="/items"><td>/items</td><td class="num">9.0 ms</td><td class="num">100.0%</td>"#;
    assert!(body.contains(row) && !body.contains(r#"data-value="/search""#), "only /items' samples: {body}");
    assert!(body.contains(r#"id="run-sample-labels""#), "the filter in force is said: {body}");
    let (status, body) = get(&state, &format!("/view?run={base}&sample_label=endpoint%3D%2Fnowhere"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no sample of the selected runs carries endpoint=/nowhere"), "{body}");

    // /search doubled: 50% of the CPU in base, 10 of 15 ms in head; the comparison's own
    // breakdown, tested run against run.
    let (status, body) = get(&state, &format!("/compare?base={base}&head={head}&by=endpoint"));
    assert_eq!(status, 200, "{body}");
    let row = r#"<tr data-value="/search"><td>/search</td><td class="num">50.0%</td><td class="num">66.7%</td><td class="num">5.0 ms</td><td class="num">10.0 ms</td><td class="num"><b data-changed="yes">+33.3%</b></td><td>p &lt; 0.001, changed</td>"#;
    assert!(body.contains(row), "{body}");
    let (status, body) = get(
        &state,
        &format!("/compare?base={base}&head={head}&sample_label=endpoint%3D%2Fitems&by=endpoint"),
    );
    assert_eq!(status, 200, "{body}");
    let row = r#"<tr data-value="/items"><td>/items</td><td class="num">100.0%</td><td class="num">100.0%</td><td class="num">3.0 ms</td><td class="num">3.0 ms</td><td class="num">+0.0%</td>"#;
    assert!(body.contains(row) && !body.contains(r#"data-value="/search""#), "{body}");
}
