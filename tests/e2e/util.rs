//! Helpers: running the real CLI, locating fixtures, reading profiles and expectations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use contprof_engine::profile::{self, CostView, Profile};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crate has a parent").to_owned()
}

/// `fixtures/Cargo.toml`.
pub fn fixtures_manifest() -> PathBuf {
    repo_root().join("fixtures/Cargo.toml")
}

/// A command running the built `cargo-contprof` binary as cargo would (`cargo-contprof contprof ...`).
pub fn contprof() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-contprof"));
    cmd.arg("contprof");
    // Keep the tests' own environment out of the workloads.
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // Under GitHub Actions, `check` would annotate this CI's job with the tests' reports.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("CARGO_TERM_COLOR", "never");
    cmd
}

/// Output of a finished command, with both streams as text for assertions.
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Commands run under a read guard; a timing-sensitive test takes the write guard so that it
/// runs alone (criterion measures wall time, which the other tests' load on two cores distorts).
static QUIET: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test runs something heavy outside [`finish`] (a browser).
pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while a timing-sensitive test runs several things of its own: no other command of these
/// tests runs meanwhile.
pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    QUIET.write().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cmd` to completion.
pub fn finish(cmd: &mut Command) -> Finished {
    let _shared = shared();
    output(cmd)
}

/// Runs `cmd` to completion while no other command of these tests runs.
pub fn finish_alone(cmd: &mut Command) -> Finished {
    let _alone = alone();
    output(cmd)
}

/// Runs `cmd` to completion without taking the tests' lock (for a test that holds [`alone`]).
pub fn output(cmd: &mut Command) -> Finished {
    let Output { status, stdout, stderr } = cmd.output().expect("cargo-contprof starts");
    Finished {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `cargo contprof run --manifest-path fixtures/Cargo.toml --bin NAME -o DIR EXTRA...` (`--example`
/// for the fixtures that are examples).
pub fn run_fixture(bin: &str, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Finished {
    let kind = if expectation_kind(bin) == "example" { "--example" } else { "--bin" };
    let mut cmd = contprof();
    cmd.arg("run").arg("--manifest-path").arg(fixtures_manifest()).args([kind, bin]).arg("-o").arg(out);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    finish(&mut cmd)
}

/// Reads a gzipped pprof file.
pub fn read_profile(path: &Path) -> Profile {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    profile::decode(&bytes).unwrap_or_else(|e| panic!("decode {}: {e}", path.display()))
}

/// Share of `function` in sample type `ty` (self or total).
pub fn share(view: &CostView, ty: &str, function: &str, total: bool) -> f64 {
    let i = view.sample_type_index(ty).unwrap_or_else(|| panic!("no sample type {ty}"));
    let whole = view.totals[i] as f64;
    let part = view.get(function).map_or(0, |f| if total { f.total_values[i] } else { f.self_values[i] });
    if whole == 0.0 { 0.0 } else { part as f64 / whole }
}

/// The top entries of a view by self value, for assertion messages.
pub fn describe(view: &CostView, ty: &str) -> String {
    let i = view.sample_type_index(ty).expect("sample type");
    let whole = view.totals[i].max(1) as f64;
    view.sorted_by_self(i)
        .iter()
        .take(8)
        .map(|f| {
            format!(
                "  {:5.1}% self {:5.1}% total  {}",
                f.self_values[i] as f64 * 100.0 / whole,
                f.total_values[i] as f64 * 100.0 / whole,
                f.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `[[fixture]]` entry of `expected.toml` for `bin`.
pub fn expectation(bin: &str) -> toml::Table {
    let text = std::fs::read_to_string(repo_root().join("fixtures/expected.toml")).expect("expected.toml");
    let doc: toml::Table = text.parse().expect("expected.toml parses");
    doc["fixture"]
        .as_array()
        .expect("[[fixture]] entries")
        .iter()
        .filter_map(|f| f.as_table())
        .find(|f| f.get("bin").or_else(|| f.get("example")).and_then(|b| b.as_str()) == Some(bin))
        .unwrap_or_else(|| panic!("no expectation for {bin}"))
        .clone()
}

/// Whether tools that the environment must provide are required (CI sets this).
pub fn tools_required() -> bool {
    std::env::var_os("CONTPROF_REQUIRE_TOOLS").is_some()
}

/// Share of CPU whose innermost location (with the functions inlined at it) includes `function`.
pub fn leaf_share(profile: &Profile, function: &str) -> f64 {
    let cpu = profile.sample_type_index("cpu").expect("cpu sample type");
    let ids: std::collections::HashSet<u64> =
        profile.function.iter().filter(|f| profile.str(f.name) == function).map(|f| f.id).collect();
    let leaf_locations: std::collections::HashSet<u64> = profile
        .location
        .iter()
        .filter(|l| l.line.iter().any(|line| ids.contains(&line.function_id)))
        .map(|l| l.id)
        .collect();
    let total = profile.total(cpu) as f64;
    let part: i64 = profile
        .sample
        .iter()
        .filter(|s| s.location_id.first().is_some_and(|id| leaf_locations.contains(id)))
        .map(|s| s.value[cpu])
        .sum();
    if total == 0.0 { 0.0 } else { part as f64 / total }
}

/// CPU seconds (user + system) that `program` burns when run alone, without the agent, as the
/// kernel accounts them (`wait4`).
pub fn native_cpu_seconds(program: &Path) -> f64 {
    let child = Command::new(program).stdout(std::process::Stdio::null()).spawn().expect("spawn fixture");
    contprof_engine::runner::wait_cpu(child).expect("wait4").as_secs_f64()
}

/// A temporary git repository (branch `main`, one commit) holding a copy of the fixture
/// workloads as its own workspace, for tests of commits, baselines and diffs.
pub struct GitProject {
    /// Keeps the directory alive; other files of a test may live beside `root`.
    pub dir: tempfile::TempDir,
    /// The repository's root.
    pub root: PathBuf,
}

impl GitProject {
    /// Creates the repository and commits the fixture as `base`.
    pub fn new() -> GitProject {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        copy_dir(&repo_root().join("fixtures/workloads"), &root.join("workloads"));
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"workloads\"]\n\
             [workspace.package]\nedition = \"2024\"\npublish = false\n",
        )
        .unwrap();
        std::fs::write(root.join(".gitignore"), "target/\nCargo.lock\n").unwrap();
        let p = GitProject { dir, root };
        p.git(&["init", "-q", "-b", "main"]);
        p.commit("base");
        p
    }

    /// Runs `git ARGS` in the repository and asserts it succeeded.
    pub fn git(&self, args: &[&str]) {
        let st = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.root)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }

    /// Commits everything.
    pub fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `bin` or `example`: how `expected.toml` declares the fixture named `name` (`bin` when absent).
fn expectation_kind(name: &str) -> &'static str {
    let text = std::fs::read_to_string(repo_root().join("fixtures/expected.toml")).unwrap_or_default();
    let doc: toml::Table = text.parse().unwrap_or_default();
    let is_example = doc
        .get("fixture")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
        .any(|f| f.get("example").and_then(|e| e.as_str()) == Some(name));
    if is_example { "example" } else { "bin" }
}

/// The raw sample file of repetition `n` that the last invocation left under `out`
/// (`raw/<pid>/run-N.raw`).
pub fn raw_file(out: &Path, n: u32) -> PathBuf {
    std::fs::read_dir(out.join("raw"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(format!("run-{n}.raw")))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no raw/*/run-{n}.raw under {}", out.display()))
}

/// Pids of the uploaders (`cargo-contprof agent upload`) running with argument `arg`
/// (`--pid=1234`, `--service=web`: the agent attaches every value to its flag).
pub fn uploaders_with(arg: &str) -> Vec<u32> {
    let wanted = format!("\0{arg}\0");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            (text.contains("\0agent\0upload\0") && text.contains(&wanted)).then_some(pid)
        })
        .collect()
}
