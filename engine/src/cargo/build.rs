//! Building targets with the profiling profile.
//!
//! The profile is defined on the command line (`--config profile.contprof.*`), inheriting from
//! `release` and adding line-table debug info, so the user's `Cargo.toml` is never touched and the
//! output lands in its own directory (`target/contprof/`) without disturbing release builds. With
//! `--unwind frame-pointers`, frame pointers are forced with `-C force-frame-pointers=yes`,
//! appended to the user's own flags; by default the agent walks unwind tables and the release
//! flags are kept.

use std::ffi::OsString;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cargo_metadata::Message;

use super::select::{CargoArgs, Selected, TargetKind};
use crate::errors::{Error, Result};
use crate::shell::{Shell, Verbosity};

/// Name of the cargo profile used for profiling builds.
pub const PROFILE_NAME: &str = "contprof";

const FRAME_POINTERS: &str = "-Cforce-frame-pointers=yes";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions<'a> {
    /// Cargo flags given by the user.
    pub cargo: &'a CargoArgs,
    /// Targets to build (all of one kind family).
    pub targets: &'a [Selected],
    /// Force frame pointers (`--unwind frame-pointers`).
    pub frame_pointers: bool,
    /// `(from, to)` source path prefixes rewritten in the debug info and panic locations of the
    /// workspace's own crates (`--remap-path-prefix`, see `cargo/remap.rs`): `check` builds its
    /// base in a worktree and its own target directory, and names them as the head's, so that the
    /// two binaries differ in their code only.
    pub remap: &'a [(PathBuf, PathBuf)],
}

/// A built executable for one selected target.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The target.
    pub target: Selected,
    /// Path of the executable.
    pub executable: PathBuf,
}

fn cargo_command(opts: &BuildOptions<'_>, shell: &Shell) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    // `cargo test --no-run`/`cargo bench --no-run` build test-harness binaries; `cargo build`
    // builds plain executables (bins, examples).
    let harness_kind =
        opts.targets.iter().any(|t| matches!(t.kind, TargetKind::Test | TargetKind::Lib | TargetKind::Bench));
    if harness_kind {
        let bench_only = opts.targets.iter().all(|t| t.kind == TargetKind::Bench);
        cmd.arg(if bench_only { "bench" } else { "test" }).arg("--no-run");
    } else {
        cmd.arg("build");
    }
    cmd.arg("--profile").arg(PROFILE_NAME).arg("--message-format=json-render-diagnostics");
    for (key, value) in [
        ("inherits", "\"release\""),
        ("debug", "\"limited\""),
        ("strip", "\"none\""),
        ("incremental", "false"),
    ] {
        cmd.arg("--config").arg(format!("profile.{PROFILE_NAME}.{key}={value}"));
    }
    let c = opts.cargo;
    if let Some(p) = &c.manifest_path {
        cmd.arg("--manifest-path").arg(p);
    }
    if let Some(d) = &c.target_dir {
        cmd.arg("--target-dir").arg(d);
    }
    for f in &c.features {
        cmd.arg("--features").arg(f);
    }
    if c.all_features {
        cmd.arg("--all-features");
    }
    if c.no_default_features {
        cmd.arg("--no-default-features");
    }
    for (flag, on) in [("--locked", c.locked), ("--offline", c.offline), ("--frozen", c.frozen)] {
        if on {
            cmd.arg(flag);
        }
    }
    if shell.verbosity() == Verbosity::Quiet {
        cmd.arg("--quiet");
    }
    let mut packages: Vec<&str> = opts.targets.iter().map(|t| t.package_spec.as_str()).collect();
    packages.sort();
    packages.dedup();
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    for t in opts.targets {
        match t.kind {
            TargetKind::Lib => cmd.arg("--lib"),
            kind => cmd.arg(format!("--{}", kind.as_str())).arg(&t.name),
        };
    }
    if opts.frame_pointers {
        add_frame_pointer_flag(&mut cmd);
    }
    if !super::remap::remap_workspace(&mut cmd, opts.remap) {
        shell.warn(format_args!(
            "cannot find this program's own path to remap the build's source paths; the base's debug info names its worktree"
        ));
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
    cmd
}

/// Appends the frame-pointer flag to whatever flags the user set, wherever they set them.
fn add_frame_pointer_flag(cmd: &mut Command) {
    let encoded = std::env::var("CARGO_ENCODED_RUSTFLAGS").ok().filter(|s| !s.is_empty());
    let plain = std::env::var("RUSTFLAGS").ok().filter(|s| !s.trim().is_empty());
    let flags: Option<Vec<String>> = match (encoded, plain) {
        (Some(e), _) => Some(e.split('\u{1f}').map(str::to_owned).collect()),
        (None, Some(p)) => Some(p.split_whitespace().map(str::to_owned).collect()),
        (None, None) => None,
    };
    match flags {
        Some(mut flags) => {
            // Environment flags replace config-file flags in cargo, so extend them in place.
            if !flags.iter().any(|f| f.contains("force-frame-pointers")) {
                flags.push(FRAME_POINTERS.to_owned());
            }
            cmd.env_remove("RUSTFLAGS").env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"));
        }
        // `build.rustflags` given with --config is merged with the user's config files.
        None => {
            cmd.arg("--config").arg(format!("build.rustflags=[\"{FRAME_POINTERS}\"]"));
        }
    }
}

/// Builds the targets and returns one executable per target, in the order given.
pub fn build(opts: &BuildOptions<'_>, shell: &Shell) -> Result<Vec<Artifact>> {
    let mut cmd = cargo_command(opts, shell);
    shell.note(format_args!("running {cmd:?}"));
    let mut child = cmd.spawn().map_err(Error::CargoSpawn)?;
    let mut artifacts: Vec<Artifact> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for message in Message::parse_stream(BufReader::new(stdout)) {
            let Ok(Message::CompilerArtifact(art)) = message else { continue };
            let Some(exe) = art.executable else { continue };
            let Some(target) = opts.targets.iter().find(|t| {
                t.name == art.target.name
                    && art.package_id.repr == t.package_id
                    && art.target.kind.iter().any(|k| kind_matches(t.kind, &k.to_string()))
            }) else {
                continue;
            };
            if !artifacts.iter().any(|a| a.target == *target) {
                artifacts.push(Artifact { target: target.clone(), executable: exe.into_std_path_buf() });
            }
        }
    }
    let status = child.wait().map_err(Error::CargoSpawn)?;
    if !status.success() {
        return Err(Error::BuildFailed { status: status.to_string() });
    }
    let mut ordered = Vec::with_capacity(opts.targets.len());
    for t in opts.targets {
        match artifacts.iter().find(|a| a.target == *t) {
            Some(a) => ordered.push(a.clone()),
            None if !t.required_features.is_empty() => {
                shell.warn(format_args!(
                    "skipping {}: it requires the features {} (enable them with --features)",
                    t.describe(),
                    t.required_features.join(", ")
                ));
            }
            None => return Err(Error::NoArtifact { target: t.describe() }),
        }
    }
    Ok(ordered)
}

fn kind_matches(kind: TargetKind, cargo_kind: &str) -> bool {
    match kind {
        TargetKind::Lib => {
            matches!(cargo_kind, "lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro")
        }
        other => other.as_str() == cargo_kind,
    }
}
