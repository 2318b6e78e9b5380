//! The GitHub workflows simulated end to end: the baseline job records `main`, the pull-request job
//! runs `check` on a branch with a regression (environment as Actions sets it), and the comment
//! workflow's poster (`.github/contprof/sticky-comment.mjs`) posts the report twice against a
//! stand-in of the GitHub REST API on loopback: the second push updates the one sticky comment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::util::{Finished, contprof, finish, repo_root, tools_required};

mod action;

const MARKER: &str = "<!-- cargo-contprof -->";
const REPO: &str = "octo/widgets";
const PR: u64 = 7;
const HEAD_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A git repository with the fixture's `workloads` package, on branch `main`.
struct Project(crate::util::GitProject);

impl std::ops::Deref for Project {
    type Target = crate::util::GitProject;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Project {
    fn new() -> Project {
        Project(crate::util::GitProject::new())
    }

    fn edit(&self, from: &str, to: &str) {
        let path = self.root.join("workloads/src/bin/regress.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// `check` as the workflows run it, with the variables GitHub Actions sets.
    fn check(&self, reports: &Path, env: &[(&str, &str)]) -> Finished {
        let event = self.dir.path().join("event.json");
        std::fs::write(&event, json!({"pull_request": {"number": PR}}).to_string()).unwrap();
        let mut cmd = contprof();
        // The baseline workflow's stored baseline (an interleaved base would see the environment's
        // slowdown switch too).
        cmd.args(["check", "--baseline", "stored", "--bin", "regress", "--runs", "4", "--frequency", "4999"])
            .arg("--report-dir")
            .arg(reports)
            .arg("--store")
            .arg(self.dir.path().join("store"))
            .current_dir(&self.root)
            .env("FIXTURE_SCALE", "0.4")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", self.dir.path().join("summary.md"))
            .env("GITHUB_REPOSITORY", REPO)
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_EVENT_PATH", &event)
            .env("GITHUB_REF", format!("refs/pull/{PR}/merge"))
            .env("GITHUB_WORKSPACE", &self.root);
        for (k, v) in env {
            cmd.env(k, v);
        }
        finish(&mut cmd)
    }
}

/// The phases of the JSON report's `timings`, as `"<phase> <side>"`, after checking that each took
/// some time and that they add up to no more than the total.
fn phases(report: &Value) -> Vec<String> {
    let typed: contprof_contracts::report::Report =
        serde_json::from_value(report.clone()).expect("the report reads into the contract's types");
    assert!(typed.timings.is_some(), "{report}");
    let timings = &report["timings"];
    let total = timings["total_seconds"].as_f64().unwrap_or_else(|| panic!("{report}"));
    let phases = timings["phases"].as_array().unwrap_or_else(|| panic!("{report}"));
    let sum: f64 = phases.iter().map(|p| p["seconds"].as_f64().unwrap()).sum();
    assert!(phases.iter().all(|p| p["seconds"].as_f64().unwrap() > 0.0), "{timings}");
    assert!(sum <= total, "{timings}");
    phases
        .iter()
        .map(|p| {
            let side = p["side"].as_str().map(|s| format!(" {s}")).unwrap_or_default();
            format!("{}{side}", p["phase"].as_str().unwrap())
        })
        .collect()
}

/// 1-based line of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle}"))
}

#[test]
fn pull_request_job_annotates_explains_and_the_comment_is_sticky() {
    let project = Project::new();
    // The baseline job on a push to main: no baseline yet, HEAD is recorded, the job passes.
    let reports = project.dir.path().join("reports-main");
    let f = project.check(&reports, &[]);
    assert_eq!(f.code, 0, "{f:?}");

    // The pull request: `host` gets 30x its own work by a source edit, `thirty` 2x by the fixture's
    // switch (no source change).
    project.git(&["checkout", "-q", "-b", "feature"]);
    project.edit("for i in 0..n_own {", "for i in 0..n_own * 30 {");
    project.commit("slower host");
    let reports = project.dir.path().join("reports-pr");
    let f = project.check(&reports, &[("FIXTURE_SLOWDOWN_THIRTY", "2")]);
    assert_eq!(f.code, 1, "{f:?}");

    let md = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(md.starts_with(MARKER), "{md}");
    // host's machine code changed: a regression. thirty's did not (its slowdown is an input's):
    // shifted, listed apart and not gated.
    let row = "| 🔴 regression | `regress::host` | bin/regress | cpu (self) |";
    assert!(md.contains(row), "{row}\n{md}");
    assert!(!md.contains("| 🔴 regression | `regress::thirty`"), "{md}");
    let shifted = md.split_once("shifted (not gated)</summary>").unwrap_or_else(|| panic!("{md}")).1;
    assert!(shifted.contains("| `regress::thirty` | bin/regress | cpu (self) |"), "{md}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    let listed = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["function"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(listed("regressions").iter().all(|f| f != "regress::thirty"), "{report}");
    assert!(listed("shifted").iter().any(|f| f == "regress::thirty"), "{report}");
    // Why: host's own lines changed (shown).
    let why = md.split_once("#### Why did it regress?").unwrap_or_else(|| panic!("{md}")).1;
    let host = why.lines().find(|l| l.starts_with("- `regress::host`")).unwrap_or_else(|| panic!("{md}"));
    assert!(host.contains("**its own source changed**"), "{md}");
    assert!(md.contains("-    for i in 0..n_own {") && md.contains("+    for i in 0..n_own * 30 {"), "{md}");

    // Annotations: one per regressed function, on its `fn` line, file relative to the repository.
    let source = project.root.join("workloads/src/bin/regress.rs");
    let annotations: Vec<&str> = f.stdout.lines().filter(|l| l.starts_with("::warning ")).collect();
    let host_line = line_of(&source, "fn host(");
    let expected = format!(
        "::warning file=workloads/src/bin/regress.rs,line={host_line},title=cargo contprof%3A regress%3A%3Ahost regressed::cpu (self) +"
    );
    assert!(annotations.iter().any(|a| a.starts_with(&expected)), "{expected}\n{annotations:#?}");
    // Only the regression is annotated; the shift is not.
    assert_eq!(annotations.len(), 1, "{annotations:#?}");

    // The job summary holds the same report, with the time the gate took.
    let summary = std::fs::read_to_string(project.dir.path().join("summary.md")).unwrap();
    assert!(summary.contains(MARKER) && summary.contains("`regress::host`"), "{summary}");
    assert!(summary.contains("Time: ") && summary.contains("build "), "{summary}");
    // A stored baseline: only HEAD was built and run here.
    assert_eq!(phases(&report), ["build head", "runs head", "profiles head", "analysis"], "{report}");
    assert!(f.stdout.contains("time: ") && f.stdout.contains("analysis "), "{f:?}");

    if !node_available() {
        return;
    }
    // The comment workflow: a comment by someone else is there first and stays untouched.
    let api = FakeGitHub::start();
    api.state.lock().unwrap().comments.push(json!({"id": 1, "body": "LGTM", "user": {"login": "human"}}));
    // Issue 15.11: someone else's comment carrying the marker is not ours to update.
    api.state
        .lock()
        .unwrap()
        .comments
        .push(json!({"id": 2, "body": format!("{MARKER}\nfake report"), "user": {"login": "mallory"}}));
    let post = |report: &Path, token: Option<&str>| {
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join(".github/contprof/sticky-comment.mjs"))
            .arg("--report")
            .arg(report)
            .args(["--pr", &PR.to_string(), "--head-sha", HEAD_SHA])
            .env("GITHUB_API_URL", format!("http://{}", api.addr))
            .env("GITHUB_REPOSITORY", REPO)
            .env_remove("GITHUB_TOKEN");
        if let Some(t) = token {
            cmd.env("GITHUB_TOKEN", t);
        }
        finish(&mut cmd)
    };
    let f = post(&reports.join("report.md"), Some("t0ken"));
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("created comment"), "{f:?}");

    // A second push: `thirty` back to normal, the report changes, the same comment is updated.
    project.edit("for i in 0..n_own * 30 {", "for i in 0..n_own * 31 {");
    project.commit("still slower host");
    let f = project.check(&reports, &[]);
    assert_eq!(f.code, 1, "{f:?}");
    let second = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(!second.contains("| 🔴 regression | `regress::thirty`"), "{second}");
    let f = post(&reports.join("report.md"), Some("t0ken"));
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("updated comment"), "{f:?}");
    {
        let state = api.state.lock().unwrap();
        let ours: Vec<&Value> =
            state.comments.iter().filter(|c| c["body"].as_str().unwrap_or("").contains(MARKER)).collect();
        let ours: Vec<&&Value> =
            ours.iter().filter(|c| c["user"]["login"] == "github-actions[bot]").collect();
        assert_eq!(ours.len(), 1, "{:#?}", state.comments);
        assert_eq!(ours[0]["body"].as_str(), Some(second.as_str()));
        assert_eq!(state.comments.len(), 3, "{:#?}", state.comments);
        assert_eq!(state.comments[0]["body"], "LGTM");
        assert_eq!(state.comments[1]["body"].as_str(), Some(format!("{MARKER}\nfake report").as_str()));
        assert!(state.requests.iter().all(|r| r.authorized), "{:?}", state.requests);
        let methods: Vec<&str> = state.requests.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods.iter().filter(|m| **m == "POST").count(), 1, "{methods:?}");
        assert_eq!(methods.iter().filter(|m| **m == "PATCH").count(), 1, "{methods:?}");
    }

    // No token: a warning, exit 0, no request.
    let before = api.state.lock().unwrap().requests.len();
    let f = post(&reports.join("report.md"), None);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("::warning") && f.stdout.contains("GITHUB_TOKEN"), "{f:?}");
    assert_eq!(api.state.lock().unwrap().requests.len(), before);
}

#[test]
fn sticky_comment_refuses_a_pull_request_at_another_commit() {
    if !node_available() {
        return;
    }
    let api = FakeGitHub::start();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.md");
    std::fs::write(&report, "report").unwrap();
    let f = finish(
        Command::new("node")
            .arg(repo_root().join(".github/contprof/sticky-comment.mjs"))
            .arg("--report")
            .arg(&report)
            .args(["--pr", &PR.to_string(), "--head-sha", "ffffffffffffffffffffffffffffffffffffffff"])
            .env("GITHUB_API_URL", format!("http://{}", api.addr))
            .env("GITHUB_REPOSITORY", REPO)
            .env("GITHUB_TOKEN", "t0ken"),
    );
    assert_eq!(f.code, 1, "{f:?}");
    assert!(f.stdout.contains("not commenting"), "{f:?}");
    assert!(api.state.lock().unwrap().comments.is_empty());

    // Issue 15.11: text from the artifact (its PR number file) cannot start a workflow command of
    // its own on a new line.
    let pr_file = dir.path().join("pr-number");
    std::fs::write(&pr_file, "7\n::warning::pwned").unwrap();
    let f = finish(
        Command::new("node")
            .arg(repo_root().join(".github/contprof/sticky-comment.mjs"))
            .arg("--report")
            .arg(&report)
            .arg("--pr-file")
            .arg(&pr_file)
            .env("GITHUB_API_URL", format!("http://{}", api.addr))
            .env("GITHUB_REPOSITORY", REPO)
            .env("GITHUB_TOKEN", "t0ken"),
    );
    assert_eq!(f.code, 1, "{f:?}");
    assert!(f.stdout.contains("%0A::warning::pwned"), "{f:?}");
    assert!(!f.stdout.lines().any(|l| l.starts_with("::warning::pwned")), "{f:?}");
}

fn node_available() -> bool {
    let ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok || !tools_required(), "node is required (CONTPROF_REQUIRE_TOOLS)");
    ok
}

/// One request the stand-in served.
#[derive(Debug)]
struct Request {
    method: String,
    authorized: bool,
}

#[derive(Default)]
struct State {
    comments: Vec<Value>,
    requests: Vec<Request>,
    next_id: u64,
}

/// The part of the GitHub REST API the poster uses: the pull request, and listing, creating and
/// updating issue comments of `REPO`'s pull request `PR`. One connection per request.
struct FakeGitHub {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { next_id: 100, ..State::default() }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        FakeGitHub { addr, state }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let (mut length, mut authorized) = (0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or(("", ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => authorized = value.trim() == "Bearer t0ken",
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = target.split('?').next().unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut s = state.lock().unwrap();
    s.requests.push(Request { method: method.clone(), authorized });
    let comments = format!("/repos/{REPO}/issues/{PR}/comments");
    let (status, reply) = match (method.as_str(), path) {
        ("GET", p) if p == format!("/repos/{REPO}/pulls/{PR}") => {
            (200, json!({"number": PR, "head": {"sha": HEAD_SHA}}))
        }
        ("GET", p) if p == comments => {
            let page: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let list: Vec<Value> = s.comments.iter().skip((page - 1) * 100).take(100).cloned().collect();
            (200, Value::Array(list))
        }
        ("POST", p) if p == comments => {
            s.next_id += 1;
            let c = json!({"id": s.next_id, "body": body["body"], "user": {"login": "github-actions[bot]"}});
            s.comments.push(c.clone());
            (201, c)
        }
        ("PATCH", p) if p.starts_with(&format!("/repos/{REPO}/issues/comments/")) => {
            let id: u64 = p.rsplit('/').next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match s.comments.iter_mut().find(|c| c["id"] == id) {
                Some(c) => {
                    c["body"] = body["body"].clone();
                    (200, c.clone())
                }
                None => (404, json!({"message": "Not Found"})),
            }
        }
        _ => (404, json!({"message": "Not Found"})),
    };
    drop(s);
    let reply = reply.to_string();
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

#[test]
fn off_the_default_branch_check_interleaves_a_rebuilt_base_by_default() {
    let project = Project::new();
    project.git(&["checkout", "-q", "-b", "feature"]);
    project.edit("for i in 0..n_own {", "for i in 0..n_own * 30 {");
    project.commit("slower host");
    let reports = project.dir.path().join("reports");
    let mut cmd = contprof();
    cmd.args(["check", "--bin", "regress", "--runs", "3", "--frequency", "4999", "--report-dir"])
        .arg(&reports)
        .arg("--store")
        .arg(project.dir.path().join("store"))
        .current_dir(&project.root)
        .env("FIXTURE_SCALE", "0.4");
    let f = finish(&mut cmd);
    assert_eq!(f.code, 1, "{f:?}");
    // H B H B H B (the head first: its dependencies seed the base's build), then the comparison of
    // the runs just made.
    let order: Vec<&str> = f.stderr.lines().filter_map(|l| l.trim().strip_prefix("Recording ")).collect();
    assert_eq!(order.len(), 6, "{f:?}");
    assert!(order.iter().step_by(2).all(|l| l.starts_with("head")), "{order:?}");
    assert!(order.iter().skip(1).step_by(2).all(|l| l.starts_with("base")), "{order:?}");
    let md = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(md.contains("| 🔴 regression | `regress::host` |") && md.contains("(rebuilt)"), "{md}");
    // The worktree is gone, its target directory kept.
    let contprof_dir = project.root.join("target/contprof");
    assert!(!contprof_dir.join("base-worktree").exists());
    assert!(contprof_dir.join("base-target").is_dir());
    // Dependencies are compiled once for both sides (the head first; the base's target directory is
    // seeded with them): only the workspace's own crate, whose sources differ, is compiled for each.
    // The regression above shows that each side ran its own binary.
    let compiled = |krate: &str| {
        f.stderr.lines().filter(|l| l.trim().starts_with(&format!("Compiling {krate} v"))).count()
    };
    assert_eq!(compiled("cc"), 1, "{f:?}");
    assert_eq!(compiled("workloads"), 2, "{f:?}");
    // Both sides' builds, runs and profiles are timed.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        phases(&report),
        ["build head", "build base", "runs head", "runs base", "profiles head", "profiles base", "analysis"],
        "{report}"
    );
}

/// Sequential stopping: a comment-only change stops once every function is clearly unchanged,
/// before `--runs`, and says how many runs it used; a real regression records every run and is
/// found as with all of them (`compare::sequential`).
#[test]
fn an_interleaved_check_stops_early_on_unchanged_code_and_not_on_a_regression() {
    let project = Project::new();
    project.git(&["checkout", "-q", "-b", "feature"]);
    project.edit("for i in 0..n_own {", "for i in 0..n_own { // the same code");
    project.commit("comment only");
    let check = |name: &str, extra: &[&str]| {
        let reports = project.dir.path().join(name);
        let mut cmd = contprof();
        // The fixture's short runs state a power of about 20% at 8 runs: the bar is set for them.
        cmd.args(["check", "--bin", "regress", "--runs", "8", "--frequency", "4999", "--stop-power", "0.4"])
            .arg("--report-dir")
            .arg(&reports)
            .args(extra)
            .arg("--store")
            .arg(project.dir.path().join("store"))
            .current_dir(&project.root)
            .env("FIXTURE_SCALE", "0.4");
        let f = finish(&mut cmd);
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
        (f, report)
    };
    let (f, report) = check("aa", &[]);
    assert_eq!(f.code, 0, "{f:?}");
    let used = report["timings"]["runs"]["used"].as_u64().unwrap_or_else(|| panic!("{report}"));
    assert!((3..8).contains(&used), "stopped after {used} of 8 runs: {f:?}");
    assert_eq!(report["timings"]["runs"]["max"], 8, "{report}");
    assert!(f.stderr.contains("Stopping") && f.stderr.contains("of at most 8 runs a side"), "{f:?}");
    let recorded = f.stderr.lines().filter(|l| l.trim().starts_with("Recording ")).count() as u64;
    assert_eq!(recorded, 2 * used, "{f:?}");
    // --all-runs records all of them.
    let (f, report) = check("all", &["--all-runs"]);
    assert_eq!(f.code, 0, "{f:?}");
    assert_eq!(report["timings"]["runs"]["used"], 8, "{report}");

    project.edit("for i in 0..n_own { // the same code", "for i in 0..n_own * 30 {");
    project.commit("slower host");
    let (f, report) = check("regression", &[]);
    assert_eq!(f.code, 1, "{f:?}");
    assert_eq!(report["timings"]["runs"]["used"], 8, "a regression records every run: {report}");
    assert!(!f.stderr.contains("Stopping"), "{f:?}");
}

#[test]
fn shallow_clone_without_the_base_says_fetch_depth_0() {
    let project = Project::new();
    project.git(&["checkout", "-q", "-b", "feature"]);
    project.commit("feature");
    let clone = project.dir.path().join("clone");
    let url = format!("file://{}", project.root.display());
    let st = Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "feature", &url])
        .arg(&clone)
        .status()
        .unwrap();
    assert!(st.success());
    let f = finish(
        contprof()
            .args(["check", "--bin", "regress", "--runs", "1", "--rebuild-base", "--base", "main"])
            .arg("--store")
            .arg(project.dir.path().join("store"))
            .current_dir(&clone),
    );
    assert_eq!(f.code, 2, "{f:?}");
    assert!(f.stderr.contains("shallow clone") && f.stderr.contains("fetch-depth: 0"), "{f:?}");

    // At the default (`--baseline auto`) the missing base is no error: the store is used, and the
    // status says how to get the history. (actions/checkout fetches one commit and no default
    // branch; this clone's origin/HEAD would name the feature branch as the default.)
    let st = Command::new("git")
        .args(["remote", "set-head", "origin", "-d"])
        .current_dir(&clone)
        .status()
        .unwrap();
    assert!(st.success());
    let f = finish(
        contprof()
            .args(["check", "--bin", "regress", "--runs", "1", "--frequency", "99"])
            .arg("--store")
            .arg(project.dir.path().join("store"))
            .current_dir(&clone)
            .env("FIXTURE_SCALE", "0.05"),
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(
        f.stderr.contains("Baseline stored runs: no merge-base") && f.stderr.contains("fetch-depth: 0"),
        "{f:?}"
    );
    assert!(f.stderr.contains("no baseline"), "{f:?}");
}
