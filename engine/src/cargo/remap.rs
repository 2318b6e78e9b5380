//! Source path remapping for the workspace's own crates only.
//!
//! `check` builds a rebuilt base in a worktree and its own target directory, and names both as the
//! head's (`--remap-path-prefix`), so that the two binaries differ in their code only: debug info,
//! panic locations and the files generated into the target directory hold the same paths. Given
//! as `RUSTFLAGS`, the flags would change every dependency's fingerprint, and cargo would compile
//! again every dependency that the base's target directory was seeded with from the head's build.
//! So they reach rustc through cargo's `RUSTC_WORKSPACE_WRAPPER`, which cargo runs for the
//! workspace's members only (as `cargo clippy` does): that wrapper is this very program, which
//! finds the flags in [`FLAGS_ENV`], appends them and `exec`s rustc (or the wrapper the user had,
//! from [`NEXT_ENV`]). Dependencies are not remapped: the seeded ones were built in the head's
//! target directory and already name its paths.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;

/// The flags the wrapper appends, separated by `0x1f` (as `CARGO_ENCODED_RUSTFLAGS` is).
const FLAGS_ENV: &str = "CONTPROF_RUSTC_REMAP_FLAGS";
/// The user's own `RUSTC_WORKSPACE_WRAPPER`, which the wrapper runs in turn.
const NEXT_ENV: &str = "CONTPROF_RUSTC_NEXT_WRAPPER";
const SEPARATOR: u8 = 0x1f;

/// Makes `cmd` (a cargo build) remap `(from, to)` path prefixes in the workspace's crates. False
/// (nothing changed) when this program's own path cannot be found.
pub fn remap_workspace(cmd: &mut Command, remap: &[(PathBuf, PathBuf)]) -> bool {
    if remap.is_empty() {
        return true;
    }
    let Ok(me) = std::env::current_exe() else { return false };
    let mut flags = Vec::new();
    for (i, (from, to)) in remap.iter().enumerate() {
        if i > 0 {
            flags.push(SEPARATOR);
        }
        flags.extend_from_slice(b"--remap-path-prefix=");
        flags.extend_from_slice(from.as_os_str().as_bytes());
        flags.push(b'=');
        flags.extend_from_slice(to.as_os_str().as_bytes());
    }
    if let Some(theirs) = std::env::var_os("RUSTC_WORKSPACE_WRAPPER").filter(|w| !w.is_empty()) {
        cmd.env(NEXT_ENV, theirs);
    }
    cmd.env("RUSTC_WORKSPACE_WRAPPER", me).env(FLAGS_ENV, OsString::from_vec(flags));
    true
}

/// When this process is the workspace wrapper that `remap_workspace` set up (cargo runs it as
/// `<wrapper> <rustc> <args>...`), runs rustc with the flags and returns its exit code (when it
/// cannot be run); `None` otherwise.
pub fn run_as_wrapper(args: &[OsString]) -> Option<i32> {
    let flags = std::env::var_os(FLAGS_ENV)?;
    let rustc = args.get(1).filter(|a| *a != "contprof")?;
    let rest = &args[2..];
    let mut cmd = match std::env::var_os(NEXT_ENV) {
        Some(next) => {
            let mut c = Command::new(next);
            c.arg(rustc);
            c
        }
        None => Command::new(rustc),
    };
    cmd.args(rest);
    // Compilations only: cargo also asks rustc for its version and target information.
    if rest.iter().any(|a| a == "--crate-name") {
        cmd.args(flags.as_bytes().split(|b| *b == SEPARATOR).map(OsStr::from_bytes));
    }
    cmd.env_remove(FLAGS_ENV).env_remove(NEXT_ENV);
    let e = cmd.exec();
    eprintln!("error: cargo-contprof could not run {} for cargo: {e}", rustc.to_string_lossy());
    Some(101)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_name_each_pair_and_keep_the_users_wrapper() {
        let mut cmd = Command::new("cargo");
        assert!(remap_workspace(
            &mut cmd,
            &[("/w/base".into(), "/w/head".into()), ("/t/b".into(), "/t/h".into())]
        ));
        let env: Vec<(OsString, Option<OsString>)> =
            cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned))).collect();
        let flags = env.iter().find(|(k, _)| k == FLAGS_ENV).and_then(|(_, v)| v.clone()).unwrap();
        assert_eq!(
            flags,
            OsString::from("--remap-path-prefix=/w/base=/w/head\u{1f}--remap-path-prefix=/t/b=/t/h")
        );
        let wrapper = env.iter().find(|(k, _)| k == "RUSTC_WORKSPACE_WRAPPER").and_then(|(_, v)| v.clone());
        assert_eq!(wrapper, Some(std::env::current_exe().unwrap().into_os_string()));
        let mut none = Command::new("cargo");
        assert!(remap_workspace(&mut none, &[]));
        assert_eq!(none.get_envs().count(), 0);
    }
}
