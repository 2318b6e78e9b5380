//! The crates as a registry gets them: `cargo package` of the publishable crates in order, and the
//! agent library built from nothing but the packaged contprof-engine's own files, by its build
//! script, as `cargo install cargo-contprof` would build it.

use std::path::Path;
use std::process::Command;

use object::{Object, ObjectSymbol};

use crate::util::{finish, repo_root};

/// `cargo package` of `contprof-protocol`, `contprof-contracts`, `contprof`, `contprof-engine`, `contprof-viewer` then
/// `cargo-contprof` into `target_dir` (without the verifying build, which compiles everything
/// again; the build script's part of it is below).
fn package(target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let f = finish(
        Command::new(cargo)
            .args([
                "package",
                "-p",
                "contprof-protocol",
                "-p",
                "contprof-contracts",
                "-p",
                "contprof",
                "-p",
                "contprof-engine",
                "-p",
                "contprof-viewer",
                "-p",
                "cargo-contprof",
                "--no-verify",
                "--allow-dirty",
                "--locked",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(repo_root()),
    );
    assert_eq!(f.code, 0, "{f:?}");
}

#[test]
fn the_packaged_crate_builds_its_agent_from_its_own_sources() {
    let tmp = tempfile::tempdir().unwrap();
    package(&tmp.path().join("target"));
    let version = env!("CARGO_PKG_VERSION");
    let krate = tmp.path().join(format!("target/package/contprof-engine-{version}.crate"));
    for name in ["cargo-contprof", "contprof-viewer", "contprof", "contprof-contracts", "contprof-protocol"] {
        assert!(tmp.path().join(format!("target/package/{name}-{version}.crate")).is_file(), "{name}");
    }
    let extracted = tmp.path().join("x");
    std::fs::create_dir_all(&extracted).unwrap();
    let f = finish(Command::new("tar").arg("xzf").arg(&krate).arg("-C").arg(&extracted));
    assert_eq!(f.code, 0, "{f:?}");
    let root = extracted.join(format!("contprof-engine-{version}"));

    // The agent's sources are in the package as files (the repository's symlinks dereferenced),
    // its manifests under a name that does not make them packages of their own.
    for file in [
        "agent/workspace.toml",
        "agent/Cargo.lock",
        "agent/harness/agent/manifest.toml",
        "agent/harness/agent/src/lib.rs",
        "agent/harness/protocol/manifest.toml",
        "agent/harness/protocol/src/format.rs",
        "agent/harness/preload/manifest.toml",
        "agent/harness/preload/src/lib.rs",
        "agent/harness/preload/c/exec.c",
        "agent/harness/preload/build.rs",
        "README.md",
    ] {
        let meta = std::fs::symlink_metadata(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.is_file(), "{file} is not a plain file in the package");
    }
    assert!(!root.join("agent/harness/preload/Cargo.toml").exists());
    // The command line's package is the one `cargo binstall` reads.
    let cli = tmp.path().join(format!("target/package/cargo-contprof-{version}.crate"));
    let f = finish(Command::new("tar").arg("xzf").arg(&cli).arg("-C").arg(&extracted));
    assert_eq!(f.code, 0, "{f:?}");
    let manifest =
        std::fs::read_to_string(extracted.join(format!("cargo-contprof-{version}/Cargo.toml"))).unwrap();
    assert!(manifest.contains("[package.metadata.binstall]") && manifest.contains("keywords"), "{manifest}");

    // Its build script, compiled alone, builds both agent libraries from those files only.
    let script = tmp.path().join("build-script");
    let f = finish(
        Command::new("rustc").args(["--edition", "2024", "-O", "-o"]).arg(&script).arg(root.join("build.rs")),
    );
    assert_eq!(f.code, 0, "{f:?}");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let f = finish(
        Command::new(&script)
            .env("CARGO_MANIFEST_DIR", &root)
            .env("OUT_DIR", &out_dir)
            .env_remove("CONTPROF_AGENT_LIB")
            .env_remove("CONTPROF_AGENT_LIB_LEAN")
            .env_remove("RUSTFLAGS"),
    );
    assert_eq!(f.code, 0, "{f:?}");
    // Nothing outside the package was read: the staged workspace names only the package's files.
    let staged = std::fs::read_to_string(out_dir.join("agent-src/Cargo.toml")).unwrap();
    assert!(
        staged.contains(r#"members = ["harness/protocol", "harness/agent", "harness/preload"]"#),
        "{staged}"
    );
    for var in ["CONTPROF_AGENT_LIB_PATH", "CONTPROF_AGENT_LIB_LEAN_PATH"] {
        let line = f.stdout.lines().find_map(|l| l.strip_prefix(&format!("cargo::rustc-env={var}=")));
        let lib = line.unwrap_or_else(|| panic!("{var} not set: {f:?}"));
        let bytes = std::fs::read(lib).unwrap();
        let elf = object::File::parse(&*bytes).unwrap_or_else(|e| panic!("{lib}: {e}"));
        let exports_malloc = elf.dynamic_symbols().any(|s| s.name() == Ok("malloc") && s.is_definition());
        assert_eq!(
            exports_malloc,
            var == "CONTPROF_AGENT_LIB_PATH",
            "{lib}: only the full build interposes malloc"
        );
    }
}
