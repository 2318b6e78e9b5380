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

/// Compiles `tests/c/<name>.c` with the system's C compiler into `dir`; `None` (after saying so)
/// when there is none and `CONTPROF_REQUIRE_TOOLS` is unset.
fn compile_c(name: &str, dir: &std::path::Path) -> Option<PathBuf> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let exe = dir.join(name);
    match Command::new("cc").args(["-O1", "-Wall", "-Werror", "-pthread", "-o"]).arg(&exe).arg(&src).output()
    {
        Ok(o) if o.status.success() => Some(exe),
        Ok(o) => panic!("{} does not compile: {}", src.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var_os("CONTPROF_REQUIRE_TOOLS").is_none() => {
            eprintln!("\n*** SKIPPED: no C compiler (`cc`: {e}) ***\n");
            None
        }
        Err(e) => panic!("CONTPROF_REQUIRE_TOOLS is set but `cc` cannot run: {e}"),
    }
}

/// Every function of the malloc family keeps its contract when the agent records allocations
/// behind its header: every pointer kind passed to every function, with allocations recorded
/// (all, some, none), and the allocations show up in the profile.
#[test]
fn the_malloc_family_keeps_its_contract_with_recorded_allocations() {
    let Some(lib) = preload_lib() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = compile_c("malloc_family", dir.path()) else { return };
    let out = dir.path().join("run.raw");
    for (mode, interval) in [("exact", "1"), ("sampled", "4096"), ("sampled", "1"), ("off", "1")] {
        let o = Command::new(&exe)
            .env("LD_PRELOAD", &lib)
            .env("CONTPROF_OUTPUT", &out)
            .env("CONTPROF_ALLOC", mode)
            .env("CONTPROF_ALLOC_INTERVAL", interval)
            .env("CONTPROF_FREQUENCY", "0")
            .output()
            .expect("the program runs");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && stdout == "ok\n", "{mode} every {interval} B: {o:?}");
        let raw = contprof::format::RawFile::read_from(std::fs::File::open(&out).expect("raw file"))
            .expect("parses");
        let recorded: u64 = raw
            .records
            .iter()
            .map(|r| match r {
                contprof::format::Record::AllocStack { alloc_count, .. } => *alloc_count,
                _ => 0,
            })
            .sum();
        if mode == "off" {
            assert_eq!(recorded, 0);
        } else {
            // 3,000 rounds of about 14 allocations.
            assert!(recorded > 30_000, "{mode} every {interval} B: {recorded} allocations recorded");
        }
    }
}
