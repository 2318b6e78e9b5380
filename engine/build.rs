//! Builds the preloadable agent (`harness/preload`, a cdylib) twice, with and without its
//! allocation hooks (the lean build is preloaded when allocations are not recorded, so that they
//! cost nothing), and hands their paths to the crate, which embeds the bytes with
//! `include_bytes!`. The installed `cargo-contprof` binary is then self-contained: it writes the
//! library next to the workload's build output at run time.
//!
//! The sources come from this package's own `agent/` directory, so that the crate builds the same
//! from the repository, from `cargo install --git` and from its published package: in the
//! repository `agent/` holds symlinks to the workspace's manifest and lock file and to the
//! protocol's, the agent's and the preload library's manifests and sources (`cargo package` stores what they point
//! to). Manifests are named `manifest.toml` there, since a directory with a `Cargo.toml` would be
//! left out of the package as a package of its own. They are staged in `OUT_DIR/agent-src` as the
//! workspace they come from, with only those three members.
//!
//! The agent is built by a nested `cargo build` in its own target directory (so it never waits
//! on the outer build's lock), in release mode with frame pointers, from a clean environment: the
//! outer build's `RUSTFLAGS`, profile and target settings must not leak into it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The members of the staged workspace.
const MEMBERS: &str = r#"members = ["harness/protocol", "harness/agent", "harness/preload"]"#;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let sources = manifest_dir.join("agent");
    println!("cargo::rerun-if-changed={}", sources.display());
    // In the repository, what the symlinks point to (cargo does not follow them when it scans).
    for path in [
        "../harness/preload",
        "../harness/protocol/src",
        "../harness/protocol/Cargo.toml",
        "../harness/agent/src",
        "../harness/agent/Cargo.toml",
        "../Cargo.toml",
        "../Cargo.lock",
    ] {
        let path = manifest_dir.join(path);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    println!("cargo::rerun-if-env-changed=CONTPROF_AGENT_LIB");
    println!("cargo::rerun-if-env-changed=CONTPROF_AGENT_LIB_LEAN");

    // Escape hatch for packagers who build the agent themselves (both builds).
    if let (Some(full), Some(lean)) =
        (env::var_os("CONTPROF_AGENT_LIB"), env::var_os("CONTPROF_AGENT_LIB_LEAN"))
    {
        println!("cargo::rustc-env=CONTPROF_AGENT_LIB_PATH={}", PathBuf::from(full).display());
        println!("cargo::rustc-env=CONTPROF_AGENT_LIB_LEAN_PATH={}", PathBuf::from(lean).display());
        return;
    }

    let workspace = out_dir.join("agent-src");
    stage(&sources, &workspace);
    let preload_manifest = workspace.join("harness/preload/Cargo.toml");
    let target_dir = out_dir.join("agent-target");
    // Both builds share the target directory (the agent crate is compiled once) and write the same
    // file name, so each is copied out as soon as it is built.
    for (features, file, var) in [
        (None, "libcontprof_preload.so", "CONTPROF_AGENT_LIB_PATH"),
        (Some("--no-default-features"), "libcontprof_preload_lean.so", "CONTPROF_AGENT_LIB_LEAN_PATH"),
    ] {
        let built = build_agent(&preload_manifest, &target_dir, features);
        let kept = out_dir.join(file);
        fs::copy(&built, &kept)
            .unwrap_or_else(|e| panic!("could not copy {} to {}: {e}", built.display(), kept.display()));
        println!("cargo::rustc-env={var}={}", kept.display());
    }
}

/// Copies the tree `from` (following symlinks) to `to`, with `manifest.toml` as `Cargo.toml` and
/// the workspace manifest `workspace.toml` as the root `Cargo.toml` with [`MEMBERS`]. A file whose
/// bytes are already there is left alone, so that the nested build does not see it as changed.
fn stage(from: &Path, to: &Path) {
    let entries = fs::read_dir(from)
        .unwrap_or_else(|e| panic!("the agent's sources are missing from {}: {e}", from.display()));
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("could not create {}: {e}", to.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("could not list {}: {e}", from.display()));
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            stage(&path, &to.join(&name));
            continue;
        }
        let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("could not read {}: {e}", path.display()));
        let name = match name.to_str() {
            Some("manifest.toml") => "Cargo.toml".into(),
            Some("workspace.toml") => {
                bytes = with_members(&String::from_utf8_lossy(&bytes), &path).into_bytes();
                "Cargo.toml".into()
            }
            _ => name,
        };
        let dest = to.join(name);
        if fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            fs::write(&dest, &bytes).unwrap_or_else(|e| panic!("could not write {}: {e}", dest.display()));
        }
    }
}

/// The workspace manifest `text` with its `members` line replaced by [`MEMBERS`].
fn with_members(text: &str, path: &Path) -> String {
    let mut replaced = 0;
    let lines: Vec<&str> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("members") && line.contains('=') {
                assert!(line.contains(']'), "{}: keep `members = [...]` on one line", path.display());
                replaced += 1;
                MEMBERS
            } else {
                line
            }
        })
        .collect();
    assert_eq!(replaced, 1, "{}: expected one `members` line", path.display());
    lines.join("\n") + "\n"
}

/// Builds the preload library with `features` (an extra flag) and returns where it is.
fn build_agent(preload_manifest: &Path, target_dir: &Path, features: Option<&str>) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(preload_manifest)
        .arg("--target-dir")
        .arg(target_dir);
    cmd.args(features);
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    // Start from a clean slate: drop everything the outer cargo exported to build scripts.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key.starts_with("DEP_")
            || matches!(
                key.as_str(),
                "TARGET" | "HOST" | "OUT_DIR" | "OPT_LEVEL" | "PROFILE" | "DEBUG" | "NUM_JOBS"
            )
        {
            cmd.env_remove(&key);
        }
    }
    // Every function of the library makes a frame, which `--cfg contprof_frame_pointers` tells
    // the agent (its allocation and wait hooks then start their stack walks at the hook's return).
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Cforce-frame-pointers=yes\x1f--cfg\x1fcontprof_frame_pointers");
    cmd.env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    let status =
        cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the contprof agent: {e}"));
    if !status.success() {
        panic!("building the contprof agent ({}) failed: {status}", preload_manifest.display());
    }
    let lib = target_dir.join("release/libcontprof_preload.so");
    if !lib.exists() {
        panic!("the agent build succeeded but {} is missing", lib.display());
    }
    lib
}
