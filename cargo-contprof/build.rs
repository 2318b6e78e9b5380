//! Builds the preloadable agent (`harness/preload`, a cdylib) twice, with and without its
//! allocation hooks (the lean build is preloaded when allocations are not recorded, so that they
//! cost nothing), and hands their paths to the crate, which embeds the bytes with
//! `include_bytes!`. The installed `cargo-contprof` binary is then self-contained: it writes the
//! library next to the workload's build output at run time.
//!
//! The agent is built by a nested `cargo build` in its own target directory (so it never waits
//! on the outer build's lock), in release mode with frame pointers, from a clean environment: the
//! outer build's `RUSTFLAGS`, profile and target settings must not leak into it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let preload_manifest = manifest_dir.join("../harness/preload/Cargo.toml");
    for dir in ["../harness/preload", "../harness/agent"] {
        println!("cargo::rerun-if-changed={}", manifest_dir.join(dir).display());
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

    let target_dir = out_dir.join("agent-target");
    // Both builds share the target directory (the agent crate is compiled once) and write the same
    // file name, so each is copied out as soon as it is built.
    for (features, file, var) in [
        (None, "libcontprof_preload.so", "CONTPROF_AGENT_LIB_PATH"),
        (Some("--no-default-features"), "libcontprof_preload_lean.so", "CONTPROF_AGENT_LIB_LEAN_PATH"),
    ] {
        let built = build_agent(&preload_manifest, &target_dir, features);
        let kept = out_dir.join(file);
        std::fs::copy(&built, &kept)
            .unwrap_or_else(|e| panic!("could not copy {} to {}: {e}", built.display(), kept.display()));
        println!("cargo::rustc-env={var}={}", kept.display());
    }
}

/// Builds the preload library with `features` (an extra flag) and returns where it is.
fn build_agent(
    preload_manifest: &std::path::Path,
    target_dir: &std::path::Path,
    features: Option<&str>,
) -> PathBuf {
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
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Cforce-frame-pointers=yes");
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
