//! The hostile programs, built once per test run: the C programs of `fixtures/hostile/c` with
//! `cc` (into `target/contprof-test-artifacts/hostile/`), the Rust ones of the `hostile` fixture
//! crate with cargo, and the agent library as `cargo contprof agent path --dir` installs it.
//!
//! A tool the machine must provide (`cc`, libfaketime) is a skip with a loud message, unless
//! `CONTPROF_REQUIRE_TOOLS` is set (CI sets it): then its absence fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::util::{contprof, fixtures_manifest, repo_root, tools_required};

/// `fixtures/hostile/c`.
fn sources() -> PathBuf {
    repo_root().join("fixtures/hostile/c")
}

/// Where the C programs and libraries are built.
pub fn out_dir() -> PathBuf {
    repo_root().join("target/contprof-test-artifacts/hostile")
}

/// Says that a test is skipped because `what` is missing, or fails it when tools are required.
fn missing(what: &str, why: &str) -> Option<PathBuf> {
    assert!(!tools_required(), "CONTPROF_REQUIRE_TOOLS is set but {what} is missing: {why}");
    eprintln!("\n*** SKIPPING HOSTILE-PROGRAM TEST: {what} is missing ({why}) ***\n");
    None
}

/// A C compiler that works, or `None` (after saying so) when tools are not required.
fn cc_works() -> bool {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    let ok = OK.get_or_init(|| match Command::new("cc").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`cc --version` exited with {}", o.status)),
        Err(e) => Err(e.to_string()),
    });
    match ok {
        Ok(()) => true,
        Err(e) => missing("a C compiler (cc)", e).is_some(),
    }
}

/// One `cc` invocation: builds `out` (in [`out_dir`]) from `args`, once per test run.
fn cc(out: &str, args: &[&str]) -> Option<PathBuf> {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    if !cc_works() {
        return None;
    }
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let result = built.entry(out.to_owned()).or_insert_with(|| {
        let dir = out_dir();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(out);
        // Built beside, then renamed: another test binary may run the same program meanwhile.
        let tmp = dir.join(format!(".{out}.{}", std::process::id()));
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
            .arg(sources())
            .arg("-o")
            .arg(&tmp)
            .args(args)
            .current_dir(sources())
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("cc {args:?}: {}", String::from_utf8_lossy(&o.stderr)));
        }
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        Ok(path)
    });
    match result {
        Ok(p) => Some(p.clone()),
        Err(e) => panic!("building a hostile program failed: {e}"),
    }
}

/// A C program `fixtures/hostile/c/<name>.c`, with the libraries it needs beside it.
pub fn c_program(name: &str) -> Option<PathBuf> {
    let src = format!("{name}.c");
    match name {
        "own_sigprof" => {
            let lib = cc("libownprof.so", &["-shared", "-fPIC", "ownprof.c"])?;
            let dir = lib.parent().unwrap().to_str().unwrap().to_owned();
            cc(name, &[&src, "-L", &dir, "-lownprof", &format!("-Wl,-rpath,{dir}")])
        }
        // The library calls back into the program.
        "dlopen_churn" => cc(name, &[&src, "-rdynamic", "-ldl"]),
        // Every level of the call chain keeps its own frame.
        "alloc_stacks" => cc(name, &[&src, "-fno-inline", "-fno-optimize-sibling-calls"]),
        "static_prog" => {
            let libc_a = Command::new("cc").arg("-print-file-name=libc.a").output().ok()?;
            let libc_a = String::from_utf8_lossy(&libc_a.stdout).trim().to_owned();
            if !Path::new(&libc_a).is_absolute() {
                missing("the static C library (libc.a, Debian package libc6-dev)", "cc cannot find libc.a")?;
            }
            cc(name, &[&src, "-static"])
        }
        "exec_target" => {
            let path = cc(name, &[&src])?;
            // `execvp` and the shell find it on PATH by this name.
            let named = path.with_file_name("hostile-exec-target");
            if !named.exists() {
                let _ = std::os::unix::fs::symlink(&path, &named);
            }
            Some(path)
        }
        _ => cc(name, &[&src]),
    }
}

/// The two variants of the library `dlopen_churn` loads (the second with a larger text section).
pub fn churn_libraries() -> Option<[PathBuf; 2]> {
    Some([
        cc("libchurn1.so", &["-shared", "-fPIC", "-DCHURN_VARIANT=1", "churn_lib.c"])?,
        cc("libchurn2.so", &["-shared", "-fPIC", "-DCHURN_VARIANT=2", "churn_lib.c"])?,
    ])
}

/// A binary of the `hostile` fixture crate (release, all features), built once.
pub fn rust_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "hostile", "--all-features", "--manifest-path"])
            .arg(fixtures_manifest())
            .status()
            .expect("cargo starts");
        assert!(status.success(), "the hostile fixture crate builds");
    });
    repo_root().join("fixtures/target/release").join(name)
}

/// The preload library, written once by `cargo contprof agent path --dir` into a directory that
/// every user can read (a test runs a program as another user).
pub fn agent_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = out_dir().join("agent");
        std::fs::create_dir_all(&dir).unwrap();
        let out = contprof().args(["agent", "path", "--dir"]).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// libfaketime (Debian package `faketime`), or `None` (after saying so) when it is missing and
/// tools are not required.
pub fn libfaketime() -> Option<PathBuf> {
    let candidates =
        ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"];
    match candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        Some(p) => Some(p),
        None => missing("libfaketime (apt install faketime)", "no libfaketime.so.1"),
    }
}
