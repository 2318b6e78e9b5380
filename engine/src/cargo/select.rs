//! Target selection with cargo's conventions (`-p`, `--bin`, `--example`, `--bench`, `--test`,
//! `--lib`), validated against `cargo metadata` so that an unknown name lists what exists.

use std::path::{Path, PathBuf};

use cargo_metadata::{Metadata, MetadataCommand, Package, Target};

use crate::errors::{Error, Result};

/// The cargo flags shared by every command that builds something.
#[derive(Debug, Clone, Default)]
pub struct CargoArgs {
    /// `--manifest-path`.
    pub manifest_path: Option<PathBuf>,
    /// `-p/--package`.
    pub package: Option<String>,
    /// `-F/--features` (each entry may hold several, comma or space separated, as cargo accepts).
    pub features: Vec<String>,
    /// `--all-features`.
    pub all_features: bool,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--target-dir`.
    pub target_dir: Option<PathBuf>,
    /// `--locked`, `--offline`, `--frozen`.
    pub locked: bool,
    /// `--offline`.
    pub offline: bool,
    /// `--frozen`.
    pub frozen: bool,
}

/// Kind of a runnable target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// A binary (`src/main.rs`, `src/bin/*`).
    Bin,
    /// An example.
    Example,
    /// A benchmark.
    Bench,
    /// An integration test.
    Test,
    /// The library's unit tests.
    Lib,
}

impl TargetKind {
    /// The cargo flag name and metadata kind (`bin`, `example`, `bench`, `test`, `lib`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Bin => "bin",
            TargetKind::Example => "example",
            TargetKind::Bench => "bench",
            TargetKind::Test => "test",
            TargetKind::Lib => "lib",
        }
    }

    fn matches(self, target: &Target) -> bool {
        match self {
            TargetKind::Lib => target.is_lib() || target.is_proc_macro(),
            TargetKind::Bin => target.is_bin(),
            TargetKind::Example => target.is_example(),
            TargetKind::Bench => target.is_bench(),
            TargetKind::Test => target.is_test(),
        }
    }
}

/// One selected target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Package name.
    pub package: String,
    /// Package id as cargo prints it (to match build messages).
    pub package_id: String,
    /// `name@version`: the package id spec given to cargo's `-p`, which stays unambiguous when the
    /// dependency graph holds another version of the same package (itertools' dev-dependency
    /// criterion pulls in an older itertools).
    pub package_spec: String,
    /// Directory of the package's manifest (`cargo test` runs tests there).
    pub package_root: PathBuf,
    /// Kind.
    pub kind: TargetKind,
    /// Target name.
    pub name: String,
    /// Whether the target uses the libtest harness.
    pub harness: bool,
    /// Required features that are not enabled (cargo skips such targets).
    pub required_features: Vec<String>,
    /// The variables `cargo run`/`cargo test`/`cargo bench` set for the target's process
    /// (`CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`, `CARGO_PKG_*`), from
    /// the package's metadata; see [`Selected::run_env`] for the full environment.
    pub cargo_env: Vec<(String, String)>,
}

impl Selected {
    /// The environment cargo gives the target's process when it runs it: [`Selected::cargo_env`],
    /// `CARGO` (the cargo that cargo contprof uses), and the build's `deps` directory first on
    /// the dynamic-library search path (`LD_LIBRARY_PATH`), for dylib dependencies.
    pub fn run_env(&self, target_dir: &Path) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            self.cargo_env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        env.push(("CARGO".into(), std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())));
        let profile_dir = target_dir.join(super::PROFILE_NAME);
        let mut paths = vec![profile_dir.join("deps"), profile_dir];
        paths.extend(std::env::var_os("LD_LIBRARY_PATH").iter().flat_map(std::env::split_paths));
        if let Ok(joined) = std::env::join_paths(paths) {
            env.push(("LD_LIBRARY_PATH".into(), joined));
        }
        env
    }

    /// `bin/foo`, the group key under which its profiles are stored.
    pub fn group(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }

    /// `bin `foo` of package `bar``, for messages.
    pub fn describe(&self) -> String {
        format!("{} `{}` (package `{}`)", self.kind.as_str(), self.name, self.package)
    }
}

/// The workspace as `cargo metadata` sees it.
#[derive(Debug)]
pub struct Workspace {
    metadata: Metadata,
    cwd: PathBuf,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` for the manifest in `args` (or the current directory).
    pub fn load(args: &CargoArgs) -> Result<Self> {
        let mut cmd = MetadataCommand::new();
        cmd.no_deps();
        if let Some(path) = &args.manifest_path {
            cmd.manifest_path(path);
        }
        let mut other = Vec::new();
        if args.offline {
            other.push("--offline".to_owned());
        }
        if args.frozen {
            other.push("--frozen".to_owned());
        }
        if args.locked {
            other.push("--locked".to_owned());
        }
        cmd.other_options(other);
        let metadata = cmd
            .exec()
            .map_err(|source| Error::Metadata { manifest_path: args.manifest_path.clone(), source })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| metadata.workspace_root.clone().into());
        Ok(Self { metadata, cwd })
    }

    /// The workspace root directory.
    pub fn root(&self) -> &Path {
        self.metadata.workspace_root.as_std_path()
    }

    /// The target directory (where cargo puts build output).
    pub fn target_dir(&self) -> &Path {
        self.metadata.target_directory.as_std_path()
    }

    /// The raw metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn members(&self) -> Vec<&Package> {
        self.metadata.workspace_packages()
    }

    fn default_members(&self) -> Vec<&Package> {
        let defaults: Vec<&Package> = self.metadata.workspace_default_packages();
        if defaults.is_empty() { self.members() } else { defaults }
    }

    /// The package `-p` names, or the one whose directory holds the current directory.
    fn package_scope(&self, package: Option<&str>) -> Result<Vec<&Package>> {
        let members = self.members();
        if let Some(name) = package {
            return members
                .iter()
                .copied()
                // `-p name` or, as cargo takes it, `-p name@version`.
                .filter(|p| p.name.as_str() == name || format!("{}@{}", p.name, p.version) == name)
                .map(|p| vec![p])
                .next()
                .ok_or_else(|| Error::UnknownPackage {
                    name: name.to_owned(),
                    available: members.iter().map(|p| p.name.to_string()).collect::<Vec<_>>().join(", "),
                });
        }
        // Like cargo: inside a member's directory, that member; else the default members.
        let here = members
            .iter()
            .copied()
            .filter(|p| p.manifest_path.parent().is_some_and(|dir| self.cwd.starts_with(dir.as_std_path())))
            .max_by_key(|p| p.manifest_path.as_str().len());
        Ok(match here {
            Some(p) if self.cwd != self.root() => vec![p],
            _ => self.default_members(),
        })
    }

    fn select_one(&self, pkg: &Package, target: &Target, kind: TargetKind, args: &CargoArgs) -> Selected {
        let enabled = enabled_features(pkg, args);
        Selected {
            package: pkg.name.to_string(),
            package_id: pkg.id.repr.clone(),
            package_spec: format!("{}@{}", pkg.name, pkg.version),
            package_root: pkg.manifest_path.parent().map(|p| p.as_std_path().to_owned()).unwrap_or_default(),
            kind,
            name: target.name.clone(),
            harness: uses_libtest(pkg, target),
            required_features: target
                .required_features
                .iter()
                .filter(|f| !args.all_features && !enabled.contains(f))
                .cloned()
                .collect(),
            cargo_env: cargo_env(pkg),
        }
    }

    /// Selects exactly one runnable target for `cargo contprof run`.
    ///
    /// `kind`/`name` come from `--bin NAME` and friends; with neither, the package's only binary
    /// or its `default-run` is chosen, as `cargo run` does.
    pub fn select_runnable(
        &self,
        args: &CargoArgs,
        kind: Option<TargetKind>,
        name: Option<&str>,
    ) -> Result<Selected> {
        let scope = self.package_scope(args.package.as_deref())?;
        match (kind, name) {
            (Some(kind), Some(name)) => {
                for pkg in &scope {
                    if let Some(t) = pkg.targets.iter().find(|t| kind.matches(t) && t.name == name) {
                        return Ok(self.select_one(pkg, t, kind, args));
                    }
                }
                Err(Error::UnknownTarget {
                    kind: kind.as_str(),
                    name: name.to_owned(),
                    available: names(&scope, kind),
                })
            }
            (Some(kind), None) => {
                let found: Vec<(&Package, &Target)> = scope
                    .iter()
                    .flat_map(|p| p.targets.iter().filter(|t| kind.matches(t)).map(move |t| (*p, t)))
                    .collect();
                match found.as_slice() {
                    [(p, t)] => Ok(self.select_one(p, t, kind, args)),
                    [] => Err(Error::TargetSelection {
                        message: format!("no {} target in {}", kind.as_str(), describe_scope(&scope)),
                    }),
                    _ => Err(Error::TargetSelection {
                        message: format!(
                            "`--{k}` needs a name: the {} has several {k} targets: {}",
                            describe_scope(&scope),
                            names(&scope, kind).join(", "),
                            k = kind.as_str(),
                        ),
                    }),
                }
            }
            (None, _) => {
                let bins: Vec<(&Package, &Target)> = scope
                    .iter()
                    .flat_map(|p| p.targets.iter().filter(|t| t.is_bin()).map(move |t| (*p, t)))
                    .collect();
                if let [(p, t)] = bins.as_slice() {
                    return Ok(self.select_one(p, t, TargetKind::Bin, args));
                }
                if let [pkg] = scope.as_slice()
                    && let Some(default) = &pkg.default_run
                    && let Some(t) = pkg.targets.iter().find(|t| t.is_bin() && &t.name == default)
                {
                    return Ok(self.select_one(pkg, t, TargetKind::Bin, args));
                }
                let listing = runnable_listing(&scope);
                Err(Error::TargetSelection {
                    message: if bins.is_empty() {
                        format!(
                            "the {} has no binary; choose a target with --bin, --example, --bench or --test{listing}",
                            describe_scope(&scope)
                        )
                    } else {
                        format!(
                            "the {} has several binaries; choose one with --bin NAME (or --example, --bench, --test){listing}",
                            describe_scope(&scope)
                        )
                    },
                })
            }
        }
    }

    /// Selects every target of `kind` in scope, optionally only the named ones (for `test`/`bench`).
    pub fn select_all(&self, args: &CargoArgs, kind: TargetKind, only: &[String]) -> Result<Vec<Selected>> {
        let scope = self.package_scope(args.package.as_deref())?;
        let mut out = Vec::new();
        for name in only {
            if !scope.iter().any(|p| p.targets.iter().any(|t| kind.matches(t) && &t.name == name)) {
                return Err(Error::UnknownTarget {
                    kind: kind.as_str(),
                    name: name.clone(),
                    available: names(&scope, kind),
                });
            }
        }
        for pkg in &scope {
            for t in pkg.targets.iter().filter(|t| kind.matches(t)) {
                if kind == TargetKind::Lib && !t.test {
                    continue;
                }
                if only.is_empty() || only.contains(&t.name) {
                    out.push(self.select_one(pkg, t, kind, args));
                }
            }
        }
        Ok(out)
    }
}

fn enabled_features(pkg: &Package, args: &CargoArgs) -> Vec<String> {
    let mut requested: Vec<String> = args
        .features
        .iter()
        .flat_map(|f| f.split([',', ' ']))
        .filter(|f| !f.is_empty())
        .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
        .collect();
    if !args.no_default_features {
        requested.push("default".to_owned());
    }
    // Expand feature-enables-feature once per round until stable.
    let mut enabled: Vec<String> = Vec::new();
    while let Some(f) = requested.pop() {
        if enabled.contains(&f) {
            continue;
        }
        if let Some(deps) = pkg.features.get(&f) {
            requested.extend(deps.iter().filter(|d| !d.contains(':') && !d.contains('/')).cloned());
        }
        enabled.push(f);
    }
    enabled
}

fn names(scope: &[&Package], kind: TargetKind) -> Vec<String> {
    let mut v: Vec<String> = scope
        .iter()
        .flat_map(|p| p.targets.iter().filter(|t| kind.matches(t)).map(|t| t.name.clone()))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn describe_scope(scope: &[&Package]) -> String {
    match scope {
        [p] => format!("package `{}`", p.name),
        _ => format!("workspace ({} packages)", scope.len()),
    }
}

fn runnable_listing(scope: &[&Package]) -> String {
    let mut out = String::new();
    for kind in [TargetKind::Bin, TargetKind::Example, TargetKind::Bench, TargetKind::Test] {
        let n = names(scope, kind);
        if !n.is_empty() {
            out.push_str(&format!("\n  {}: {}", kind.as_str(), n.join(", ")));
        }
    }
    if out.is_empty() { out } else { format!("; available:{out}") }
}

/// Whether a test or bench target uses libtest. `cargo metadata` does not say, so read the
/// `harness` key of its `[[test]]`/`[[bench]]` section in the manifest.
fn uses_libtest(pkg: &Package, target: &Target) -> bool {
    let section = if target.is_bench() {
        "bench"
    } else if target.is_test() {
        "test"
    } else {
        return !target.is_bin() && !target.is_example();
    };
    let Ok(text) = std::fs::read_to_string(pkg.manifest_path.as_std_path()) else { return true };
    let Ok(manifest) = text.parse::<toml::Table>() else { return true };
    manifest
        .get(section)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_table())
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(target.name.as_str()))
        .and_then(|t| t.get("harness"))
        .and_then(|h| h.as_bool())
        .unwrap_or(true)
}

/// What cargo sets at run time for a target of `pkg` (cargo's `Compilation::fill_env`; nextest
/// gives tests the same list): the compile-time-only `CARGO_CRATE_NAME` and `CARGO_BIN_NAME`
/// are not among them.
fn cargo_env(pkg: &Package) -> Vec<(String, String)> {
    let v = &pkg.version;
    let or_empty = |o: &Option<String>| o.clone().unwrap_or_default();
    let manifest = pkg.manifest_path.as_std_path();
    let env = vec![
        ("CARGO_MANIFEST_DIR", manifest.parent().map(|p| p.display().to_string()).unwrap_or_default()),
        ("CARGO_MANIFEST_PATH", manifest.display().to_string()),
        ("CARGO_PKG_NAME", pkg.name.to_string()),
        ("CARGO_PKG_VERSION", v.to_string()),
        ("CARGO_PKG_VERSION_MAJOR", v.major.to_string()),
        ("CARGO_PKG_VERSION_MINOR", v.minor.to_string()),
        ("CARGO_PKG_VERSION_PATCH", v.patch.to_string()),
        ("CARGO_PKG_VERSION_PRE", v.pre.to_string()),
        ("CARGO_PKG_AUTHORS", pkg.authors.join(":")),
        ("CARGO_PKG_DESCRIPTION", or_empty(&pkg.description)),
        ("CARGO_PKG_HOMEPAGE", or_empty(&pkg.homepage)),
        ("CARGO_PKG_REPOSITORY", or_empty(&pkg.repository)),
        ("CARGO_PKG_LICENSE", or_empty(&pkg.license)),
        ("CARGO_PKG_LICENSE_FILE", pkg.license_file.as_ref().map(|p| p.to_string()).unwrap_or_default()),
        ("CARGO_PKG_RUST_VERSION", pkg.rust_version.as_ref().map(|r| r.to_string()).unwrap_or_default()),
        ("CARGO_PKG_README", pkg.readme.as_ref().map(|p| p.to_string()).unwrap_or_default()),
    ];
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
