//! The action's logic (`.github/contprof/action.mjs`, run by `action.yml`) under a simulated
//! GitHub Actions environment: event payloads, `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` files, a
//! stand-in `cargo` that records the command it was given and answers with a chosen exit code
//! (the real `check` under the same environment is `pull_request_job_annotates_explains_and_the_comment_is_sticky`),
//! and the comment mode against the stand-in GitHub API.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{FakeGitHub, HEAD_SHA, MARKER, PR, REPO, node_available};
use crate::util::{Finished, finish, repo_root};

fn script() -> PathBuf {
    repo_root().join(".github/contprof/action.mjs")
}

/// A job's environment: a temporary directory with the event, the output files and a `cargo`.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        // Records its arguments one per line, writes a report where it is told to, exits as asked.
        let cargo = bin.join("cargo");
        std::fs::write(
            &cargo,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$FAKE_CARGO_ARGS\"\n\
             for last; do :; done\nprintf 'report\\n' > \"$last/report.md\"\nexit \"$FAKE_CARGO_EXIT\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
        Job { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `action.mjs check` on `event_name` with `payload`, `cargo` exiting with `exit`.
    fn check(&self, event_name: &str, payload: Value, inputs: &[(&str, &str)], exit: i32) -> Finished {
        std::fs::write(self.path("event.json"), payload.to_string()).unwrap();
        let _ = std::fs::remove_file(self.path("output"));
        let _ = std::fs::remove_dir_all(self.path("report"));
        let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("node");
        cmd.arg(script())
            .arg("check")
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("FAKE_CARGO_ARGS", self.path("args"))
            .env("FAKE_CARGO_EXIT", exit.to_string())
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", event_name)
            .env("GITHUB_EVENT_PATH", self.path("event.json"))
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary.md"))
            .env("CONTPROF_ACTION_REPORT_DIR", self.path("report"));
        for (k, v) in inputs {
            cmd.env(k, v);
        }
        finish(&mut cmd)
    }

    fn outputs(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.path("output"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    }

    fn cargo_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("args")).unwrap().lines().map(str::to_owned).collect()
    }
}

fn pull_request() -> Value {
    json!({"pull_request": {"number": PR, "head": {"sha": HEAD_SHA}}})
}

#[test]
fn the_action_runs_check_with_the_inputs_and_fails_only_where_the_gate_is() {
    if !node_available() {
        return;
    }
    let job = Job::new();
    let report = job.path("report");

    // A pull request with a regression: the job fails (after the upload, by the action's last
    // step), the outputs say why, and the report carries the PR number for the comment workflow.
    let inputs = [
        ("CONTPROF_ACTION_TARGET", "-p app --bench 'parse large'"),
        ("CONTPROF_ACTION_FLAGS", r#"--runs 5 -- --size "2 MB" it\'s"#),
    ];
    let f = job.check("pull_request", pull_request(), &inputs, 1);
    assert_eq!(f.code, 0, "{f:?}");
    let mut expected: Vec<String> = [
        "contprof",
        "check",
        "-p",
        "app",
        "--bench",
        "parse large",
        "--runs",
        "5",
        "--",
        "--size",
        "2 MB",
        "it's",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.extend(["--report-dir".to_owned(), report.display().to_string()]);
    assert_eq!(job.cargo_args(), expected);
    let out = job.outputs();
    assert_eq!(out["exit-code"], "1", "{out:?}");
    assert_eq!(out["regression"], "true", "{out:?}");
    assert_eq!(out["fail"], "true", "{out:?}");
    assert_eq!(out["report-dir"], report.display().to_string());
    assert_eq!(std::fs::read_to_string(report.join("pr-number")).unwrap(), format!("{PR}\n"));
    assert!(f.stdout.contains("::error title=cargo contprof::cargo contprof found a regression"), "{f:?}");

    // The same on a push to the default branch: the baseline is recorded, the regression reported,
    // the job passes; there is no pull request to number.
    let f = job.check("push", json!({"ref": "refs/heads/main"}), &[], 1);
    assert_eq!(f.code, 0, "{f:?}");
    let out = job.outputs();
    assert_eq!((out["regression"].as_str(), out["fail"].as_str()), ("true", "false"), "{out:?}");
    assert!(f.stdout.contains("::warning title=cargo contprof::"), "{f:?}");
    assert!(!report.join("pr-number").exists());
    assert_eq!(job.cargo_args(), ["contprof", "check", "--report-dir", &report.display().to_string()]);

    // Errors fail everywhere; `fail-on-regression` overrides the default for regressions only.
    let f = job.check("push", json!({}), &[], 3);
    assert_eq!(f.code, 0, "{f:?}");
    assert_eq!((job.outputs()["regression"].as_str(), job.outputs()["fail"].as_str()), ("false", "true"));
    assert!(f.stdout.contains("failed with exit code 3"), "{f:?}");
    job.check("push", json!({}), &[("CONTPROF_ACTION_FAIL_ON_REGRESSION", "true")], 1);
    assert_eq!(job.outputs()["fail"], "true");
    job.check("pull_request", pull_request(), &[("CONTPROF_ACTION_FAIL_ON_REGRESSION", "false")], 1);
    assert_eq!(job.outputs()["fail"], "false");
    job.check("pull_request", pull_request(), &[], 0);
    assert_eq!((job.outputs()["regression"].as_str(), job.outputs()["fail"].as_str()), ("false", "false"));

    // Bad inputs stop the step itself, with an error annotation, before anything runs.
    for (input, value) in
        [("CONTPROF_ACTION_FAIL_ON_REGRESSION", "sometimes"), ("CONTPROF_ACTION_FLAGS", "--runs '5")]
    {
        let f = job.check("pull_request", pull_request(), &[(input, value)], 0);
        assert_eq!(f.code, 1, "{f:?}");
        assert!(f.stdout.contains("::error title=cargo contprof::"), "{f:?}");
    }
}

#[test]
fn the_action_comments_only_on_pull_request_runs_and_through_the_sticky_poster() {
    if !node_available() {
        return;
    }
    let job = Job::new();
    let report = job.path("report");
    std::fs::create_dir_all(&report).unwrap();
    std::fs::write(report.join("report.md"), format!("{MARKER}\n### report")).unwrap();
    std::fs::write(report.join("pr-number"), format!("{PR}\n")).unwrap();
    let api = FakeGitHub::start();
    let comment = |payload: Value, dir: &Path| {
        std::fs::write(job.path("event.json"), payload.to_string()).unwrap();
        finish(
            Command::new("node")
                .arg(script())
                .arg("comment")
                .env("GITHUB_EVENT_PATH", job.path("event.json"))
                .env("GITHUB_TOKEN", "t0ken")
                .env("GITHUB_REPOSITORY", REPO)
                .env("GITHUB_API_URL", format!("http://{}", api.addr))
                .env("CONTPROF_ACTION_REPORT_DIR", dir),
        )
    };
    let run = |event: &str| json!({"workflow_run": {"id": 9, "event": event, "head_sha": HEAD_SHA}});

    let f = comment(run("pull_request"), &report);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("created comment"), "{f:?}");
    assert_eq!(api.state.lock().unwrap().comments.len(), 1);
    assert_eq!(
        api.state.lock().unwrap().comments[0]["body"].as_str(),
        Some(format!("{MARKER}\n### report").as_str())
    );

    // A push's run, or a run that uploaded no report: nothing is asked of the API.
    let before = api.state.lock().unwrap().requests.len();
    let f = comment(run("push"), &report);
    assert_eq!(f.code, 0, "{f:?}");
    let f = comment(run("pull_request"), &job.path("nothing"));
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("::warning") && f.stdout.contains("no report"), "{f:?}");
    assert_eq!(api.state.lock().unwrap().requests.len(), before);
}

#[test]
fn the_tool_is_cached_under_a_key_that_follows_its_sources() {
    if !node_available() {
        return;
    }
    let action = tempfile::tempdir().unwrap();
    std::fs::write(
        action.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"cargo-contprof\", \"engine\"]\n\n[workspace.package]\nversion = \"9.9.9\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(action.path().join("cargo-contprof/src")).unwrap();
    std::fs::create_dir_all(action.path().join("engine/src")).unwrap();
    std::fs::create_dir_all(action.path().join("docs")).unwrap();
    std::fs::create_dir_all(action.path().join("cargo-contprof/target")).unwrap();
    let key = |file: &str, text: &str| {
        std::fs::write(action.path().join(file), text).unwrap();
        let f = finish(
            Command::new("node").arg(script()).arg("install-key").env("GITHUB_ACTION_PATH", action.path()),
        );
        assert_eq!(f.code, 0, "{f:?}");
        f.stdout.trim().to_owned()
    };
    let first = key("cargo-contprof/src/main.rs", "fn main() {}");
    assert!(first.starts_with("cargo-contprof-linux-x64-9.9.9-"), "{first}");
    assert_eq!(key("cargo-contprof/target/built", "ignored"), first);
    let second = key("cargo-contprof/src/main.rs", "fn main() { }");
    assert_ne!(second, first);
    // Every member the workspace lists counts, and nothing else does.
    assert_ne!(key("engine/src/lib.rs", "pub fn f() {}"), second);
    let third = key("engine/src/lib.rs", "pub fn f() {}");
    assert_eq!(key("docs/guide.md", "# not built"), third);
}
