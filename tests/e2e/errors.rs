//! Bad input: each a clear one-line error with the documented exit code, never a panic.

use crate::util::{contprof, finish, fixtures_manifest};

fn assert_clean_error(f: &crate::util::Finished, code: i32, needles: &[&str]) {
    assert_eq!(f.code, code, "{f:?}");
    assert!(!f.stderr.contains("panicked"), "{f:?}");
    for n in needles {
        assert!(f.stderr.contains(n), "missing `{n}`: {f:?}");
    }
}

#[test]
fn unknown_target_lists_the_existing_ones() {
    let f = finish(contprof().args(["run", "--bin", "nope", "--manifest-path"]).arg(fixtures_manifest()));
    assert_clean_error(&f, 2, &["no bin target named `nope`", "cpu_split", "alloc_split"]);
}

#[test]
fn no_target_given_in_a_multi_binary_package_lists_them() {
    let f = finish(contprof().args(["run", "--manifest-path"]).arg(fixtures_manifest()));
    assert_clean_error(&f, 2, &["--bin NAME", "cpu_split"]);
}

#[test]
fn unknown_package() {
    let f = finish(
        contprof().args(["run", "-p", "ghost", "--bin", "x", "--manifest-path"]).arg(fixtures_manifest()),
    );
    assert_clean_error(&f, 2, &["package `ghost`", "workloads"]);
}

#[test]
fn not_a_cargo_project() {
    let dir = tempfile::tempdir().unwrap();
    let f = finish(contprof().args(["run", "--bin", "x"]).current_dir(dir.path()));
    assert_clean_error(&f, 2, &["could not read the cargo workspace"]);
}

#[test]
fn unknown_flag() {
    let f = finish(contprof().args(["run", "--frobnicate"]));
    assert_clean_error(&f, 2, &["--frobnicate"]);
}

#[test]
fn bad_values() {
    for (args, needle) in [
        (&["--frequency", "50000"][..], "--frequency"),
        (&["--alloc-interval", "lots"][..], "--alloc-interval"),
        (&["--runs", "0"][..], "--runs"),
        (&["--tag", "novalue"][..], "--tag"),
    ] {
        let f = finish(
            contprof()
                .arg("run")
                .args(args)
                .arg("--manifest-path")
                .arg(fixtures_manifest())
                .args(["--bin", "cpu_split"]),
        );
        assert_clean_error(&f, 2, &[needle]);
    }
}

#[test]
fn unwritable_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let f = finish(
        contprof()
            .args(["run", "--bin", "cpu_split", "--manifest-path"])
            .arg(fixtures_manifest())
            .arg("-o")
            .arg(file.join("sub")),
    );
    assert_clean_error(&f, 2, &["output directory"]);
}

#[test]
fn build_failure_shows_cargos_error_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() { let x: u32 = \"not a number\"; }\n").unwrap();
    let f = finish(contprof().args(["run"]).current_dir(dir.path()));
    assert_clean_error(&f, 3, &["mismatched types", "build failed"]);
}
