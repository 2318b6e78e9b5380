//! Unrelated programs under the preload library: they must run unharmed, and the variables
//! that configure the agent must not reach their children.
//!
//! Uses the library that `cargo build -p contprof-preload` left next to this test binary; the
//! tests say so and pass vacuously when it has not been built.

use std::path::PathBuf;
use std::process::Command;

fn preload_lib() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lib = exe.parent()?.parent()?.join("libcontprof_preload.so");
    if lib.exists() {
        Some(lib)
    } else {
        eprintln!("skipped: {} is not built", lib.display());
        None
    }
}

fn run(lib: &PathBuf, output: Option<&PathBuf>, program: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LD_PRELOAD", lib).env("CONTPROF_ALLOC", "exact");
    if let Some(o) = output {
        cmd.env("CONTPROF_OUTPUT", o);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

#[test]
fn unrelated_programs_run_unharmed() {
    let Some(lib) = preload_lib() else { return };
    let out = std::env::temp_dir().join(format!("contprof-preload-{}.raw", std::process::id()));
    for output in [None, Some(&out)] {
        for (program, args) in
            [("sh", &["-c", "true"][..]), ("ls", &["/"][..]), ("bash", &["-c", "echo $((6*7))"][..])]
        {
            let o = run(&lib, output, program, args);
            assert!(o.status.success(), "{program} {args:?} failed under the preload: {o:?}");
        }
    }
    let _ = std::fs::remove_file(&out);
}

#[test]
fn children_inherit_neither_the_agent_nor_its_settings() {
    let Some(lib) = preload_lib() else { return };
    let out = std::env::temp_dir().join(format!("contprof-preload-env-{}.raw", std::process::id()));
    let o = run(&lib, Some(&out), "sh", &["-c", "env; true"]);
    assert!(o.status.success());
    let env = String::from_utf8_lossy(&o.stdout);
    assert!(!env.contains("CONTPROF_"), "{env}");
    assert!(!env.contains("libcontprof_preload"), "{env}");
    let raw =
        contprof::format::RawFile::read_from(std::fs::File::open(&out).expect("the shell wrote its file"))
            .expect("parses");
    assert!(raw.records.iter().any(|r| matches!(r, contprof::format::Record::End(_))));
    let _ = std::fs::remove_file(&out);
}
