//! From executions to results: reads each raw sample file, symbolizes it into a pprof profile,
//! merges the repetitions of each target/test/benchmark, writes the profiles and flame graphs,
//! prints the top-functions table and (when a store is configured) stores the run.
//!
//! Shared by `run`, `test` and `bench`. It never runs workloads (the runner does) and never
//! decides exit codes (the commands do, from the [`Recorded`]).
//!
//! Before that, the recording itself: what to record and what every recording shares
//! ([`request`]), one target ([`target`]), a suite of tests or benchmarks ([`suite`]), and
//! `check`'s interleaved baseline, base and head recorded alternately ([`interleaved`]).

pub mod interleaved;
pub mod request;
pub mod suite;
pub mod target;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use contprof_protocol::format::RawFile;

use crate::cargo::Workspace;
use crate::errors::{Error, Result};
use crate::profile::{self, BuildOptions, Profile};
use crate::report::{self, FlameGraphOptions, TopOptions};
use crate::runner::{AgentSettings, Engine, Exit, Outcome};
use crate::shell::Shell;
use crate::store::{NewProfile, NewRun, RunMetadata, Settings, Store, Toolchain};
use crate::symbolize::Symbolizer;

/// One execution of one workload, as the runner left it.
#[derive(Debug)]
pub struct Execution {
    /// Group key (`bin/foo`, `test/it/tests::bar`).
    pub group: String,
    /// 1-based repetition.
    pub repetition: u32,
    /// Where the agent wrote its samples.
    pub raw_path: PathBuf,
    /// How it ended.
    pub outcome: Outcome,
    /// What the benchmark harness said of its iterations in this execution (benchmarks only).
    pub per_iteration: Option<crate::criterion::PerIteration>,
    /// Paths the process saw and the files behind them (see [`profile::BuildOptions::aliases`]).
    pub aliases: Vec<(String, String)>,
}

/// What the results belong to.
#[derive(Debug)]
pub struct Recording<'a> {
    /// The workspace.
    pub workspace: &'a Workspace,
    /// Agent settings used.
    pub settings: AgentSettings,
    /// Repetitions asked for.
    pub runs: u32,
    /// User tags.
    pub tags: Vec<(String, String)>,
    /// Where profiles and flame graphs go: directly for one group, one subdirectory per group
    /// otherwise.
    pub output_dir: PathBuf,
    /// Rows of the terminal table (0 prints none).
    pub top: usize,
    /// Show library frames' own self cost in the table instead of counting it in their caller.
    pub raw_frames: bool,
    /// Print the path of every file written (one target); suites print one summary line instead.
    pub list_files: bool,
    /// Extra labels per group (e.g. `test` = full test name), added to every sample.
    pub labels: BTreeMap<String, Vec<(String, String)>>,
    /// Where the run is stored (`None` with `--no-store`).
    pub store: Option<&'a Store>,
}

/// Results of one group.
#[derive(Debug)]
pub struct GroupResult {
    /// Group key.
    pub group: String,
    /// Merged profile of all repetitions that produced samples.
    pub merged: Option<Profile>,
    /// Per repetition: the encoded profile (gzip) and the exit.
    pub runs: Vec<(u32, Vec<u8>, Exit)>,
    /// Directory holding this group's files.
    pub dir: PathBuf,
}

/// Everything `finish` produced.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Per group, in order.
    pub groups: Vec<GroupResult>,
    /// The stored run, when a store was given and something was recorded.
    pub stored: Option<RunMetadata>,
}

impl Recorded {
    /// The first failed exit among all executions.
    pub fn first_failure(&self) -> Option<Exit> {
        self.groups.iter().flat_map(|g| g.runs.iter().map(|r| r.2)).find(|e| !e.success())
    }
}

/// Creates the output directory and checks that it is writable, before any work is done.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create output directory", dir, e))?;
    tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("output directory is not writable:", dir, e))?;
    Ok(())
}

/// This invocation's directory for raw sample files: `<output>/raw/<pid>/`. Two invocations on
/// one output directory (two terminals, two CI steps) must not truncate each other's files, so
/// each has its own; directories of invocations no longer running are removed first, which keeps
/// only the newest finished one's around (for a look after the fact) and bounds the disk used.
pub fn raw_dir(output_dir: &Path) -> Result<PathBuf> {
    let base = output_dir.join("raw");
    let me = std::process::id();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(pid) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<i32>().ok())
            else {
                // Files of the layout before per-invocation directories: `run-N.raw`.
                if path.extension().is_some_and(|x| x == "raw") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            // SAFETY: signal 0 only checks that the process exists.
            let alive = pid as u32 == me || unsafe { libc::kill(pid, 0) } == 0;
            if !alive {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
    let dir = base.join(me.to_string());
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("could not create directory", &dir, e))?;
    Ok(dir)
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create directory", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("could not create a file in", dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io("could not write", path, e))?;
    // Temporary files are private (0600); results are ordinary files for the user's tools.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io("could not write", path, e))?;
    tmp.persist(path).map_err(|e| Error::io("could not write", path, e.error))?;
    Ok(())
}

fn group_dir(rec: &Recording<'_>, group: &str, groups: usize) -> PathBuf {
    if groups <= 1 { rec.output_dir.clone() } else { group_path(&rec.output_dir, group) }
}

/// `base/<group>`, each `/`-separated part of the group key a directory level, made file-name-safe
/// (`bin/foo`, `lib/crate/tests::x` → `lib/crate/tests__x`).
pub fn group_path(base: &Path, group: &str) -> PathBuf {
    let mut dir = base.to_owned();
    for part in group.split('/') {
        dir.push(sanitize(part));
    }
    dir
}

/// A file-name-safe version of a target or test name.
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// Turns executions into profiles, flame graphs and the terminal table.
pub fn finish(rec: &Recording<'_>, executions: Vec<Execution>, shell: &Shell) -> Result<Recorded> {
    let mut by_group: BTreeMap<String, Vec<Execution>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in executions {
        if !by_group.contains_key(&e.group) {
            order.push(e.group.clone());
        }
        by_group.entry(e.group.clone()).or_default().push(e);
    }
    let mut symbolizer = Symbolizer::new();
    let mut seen_warnings = std::collections::HashSet::new();
    let mut summary = Recorded::default();
    let n_groups = order.len();
    for group in order {
        let execs = by_group.remove(&group).unwrap_or_default();
        let dir = group_dir(rec, &group, n_groups);
        let mut profiles = Vec::new();
        let mut runs = Vec::new();
        for e in &execs {
            let built = match read_and_build(e, rec.settings.engine, &mut symbolizer) {
                Ok(b) => b,
                Err(err) => {
                    shell.warn(format_args!("{group} run {}: {err}", e.repetition));
                    continue;
                }
            };
            for w in built.warnings.iter().chain(symbolizer.take_warnings().iter()) {
                if seen_warnings.insert(w.clone()) {
                    shell.warn(w);
                }
            }
            let mut p = built.profile;
            let mut labels: Vec<(&str, &str)> = vec![("target", group.as_str())];
            if let Some(extra) = rec.labels.get(&group) {
                labels.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            p.add_labels(&labels);
            if let Some(per) = e.per_iteration
                && !crate::criterion::add_per_iteration(&mut p, per, 1.0)
            {
                shell.warn(format_args!(
                    "{group}: no samples inside the benchmark harness's measured loop; no per-iteration costs"
                ));
            }
            let bytes = profile::encode_to_vec(&p);
            write_atomic(&dir.join(format!("run-{}.pb.gz", e.repetition)), &bytes)?;
            runs.push((e.repetition, bytes, e.outcome.exit));
            profiles.push(p);
        }
        if runs.len() < execs.len() {
            // Keep the exit of executions that produced no profile, so failures are still seen.
            let missing: Vec<(u32, Vec<u8>, Exit)> = execs
                .iter()
                .filter(|e| !e.outcome.exit.success() && !runs.iter().any(|r| r.0 == e.repetition))
                .map(|e| (e.repetition, Vec::new(), e.outcome.exit))
                .collect();
            runs.extend(missing);
        }
        let merged = match profiles.len() {
            0 => None,
            1 => profiles.pop(),
            n => {
                let mut m = profile::merge(&profiles).map_err(|e| Error::Profile {
                    context: format!("could not merge the runs of {group}"),
                    source: Box::new(e),
                })?;
                // Per-iteration costs are rates: the merged profile holds their mean, not their sum.
                if let Some(i) = m.sample_type_index(crate::criterion::PER_ITER_TYPE) {
                    for s in &mut m.sample {
                        if let Some(v) = s.value.get_mut(i) {
                            *v /= n as i64;
                        }
                    }
                }
                Some(m)
            }
        };
        if let Some(m) = &merged {
            write_outputs(m, &group, &dir, rec, shell)?;
        }
        summary.groups.push(GroupResult { group, merged, runs, dir });
    }
    if let Some(store) = rec.store {
        summary.stored = store_run(rec, store, &summary, shell)?;
    }
    Ok(summary)
}

/// Stores every profile of the summary as one run under the current commit.
fn store_run(
    rec: &Recording<'_>,
    store: &Store,
    summary: &Recorded,
    shell: &Shell,
) -> Result<Option<RunMetadata>> {
    let profiles: Vec<NewProfile> = summary
        .groups
        .iter()
        .flat_map(|g| {
            g.runs.iter().filter(|r| !r.1.is_empty()).map(|(repetition, bytes, exit)| NewProfile {
                group: g.group.clone(),
                repetition: repetition.saturating_sub(1),
                exit_code: match exit {
                    Exit::Code(c) => Some(*c),
                    _ => None,
                },
                stopped: (!matches!(exit, Exit::Code(_))).then(|| exit.to_string()),
                bytes: bytes.clone(),
            })
        })
        .collect();
    if profiles.is_empty() {
        return Ok(None);
    }
    let repo = crate::git::Repo::state_of(rec.workspace.root())
        .unwrap_or_else(|e| crate::git::RepoState::NoGit { reason: e.to_string() });
    let mut new = NewRun::new(repo);
    let toolchain = Toolchain::detect();
    new.target = toolchain.host.clone();
    new.toolchain = toolchain;
    new.command = std::env::args().collect();
    new.settings = Settings {
        engine: rec.settings.engine.recorder(),
        frequency_hz: rec.settings.frequency,
        alloc_mode: Some(rec.settings.alloc),
        alloc_interval: (rec.settings.alloc == contprof_protocol::format::AllocMode::Sampled)
            .then_some(rec.settings.alloc_interval),
        runs: rec.runs,
        unwind: rec.settings.unwind.agent(),
        contention_rate_ns: (rec.settings.contention_rate_ns > 0).then_some(rec.settings.contention_rate_ns),
        wall_hz: (rec.settings.wall_hz > 0).then_some(rec.settings.wall_hz),
    };
    new.tags = rec.tags.iter().cloned().collect();
    let merged: Vec<&Profile> = summary.groups.iter().filter_map(|g| g.merged.as_ref()).collect();
    let code = crate::code::fingerprint_profiles(&mut crate::code::Fingerprinter::new(), &merged);
    let code = (!code.functions.is_empty()).then(|| code.encode());
    let meta = store.write_run_with_code(new, profiles, code)?;
    let under = match &meta.commit {
        Some(c) => {
            format!("commit {}{}", crate::git::short_commit(c), if meta.dirty { " (dirty tree)" } else { "" })
        }
        None => format!("key `{}` ({})", meta.key, meta.key_note),
    };
    shell.status("Stored", format_args!("run {} under {under} in {}", meta.run_id, store.url()));
    Ok(Some(meta))
}

fn read_and_build(e: &Execution, engine: Engine, symbolizer: &mut Symbolizer) -> Result<profile::Built> {
    let bytes = match std::fs::read(&e.raw_path) {
        Ok(b) => b,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSamples {
                target: e.group.clone(),
                reason: format!(
                    "the agent wrote no sample file ({}); the workload may have exited before the agent started, \
                     or been linked statically",
                    e.raw_path.display()
                ),
            });
        }
        Err(err) => return Err(Error::io("could not read", &e.raw_path, err)),
    };
    let instructions = match engine {
        Engine::Agent => None,
        Engine::Instructions => Some(read_instructions(e)?),
    };
    let options = BuildOptions {
        fallback_cpu_time_ns: Some(e.outcome.cpu.as_nanos() as u64),
        instructions: instructions.as_ref().map(|(threads, _)| threads.as_slice()),
        aliases: &e.aliases,
    };
    let mut built = build_from_raw(&bytes, &e.raw_path, &options, symbolizer)?;
    built.warnings.extend(instructions.and_then(|(_, warning)| warning));
    if built.profile.duration_nanos == 0 {
        // No end record (killed): the wall time as the runner measured it.
        built.profile.duration_nanos = e.outcome.wall.as_nanos() as i64;
    }
    Ok(built)
}

/// Symbolizes the raw sample file `bytes` (read from `path`, named in errors) into a profile.
/// `options` say what else goes in (see [`BuildOptions`]).
pub fn build_from_raw(
    bytes: &[u8],
    path: &Path,
    options: &BuildOptions<'_>,
    symbolizer: &mut Symbolizer,
) -> Result<profile::Built> {
    let raw = RawFile::parse(bytes).map_err(|err| Error::Profile {
        context: format!("could not read the sample file {}", path.display()),
        source: Box::new(err),
    })?;
    let mut built = profile::build_profile(&raw, symbolizer, options);
    if let Some(w) = rate_warning(&raw, &built.profile) {
        built.warnings.push(w);
    }
    Ok(built)
}

/// Reads and parses callgrind's counts of execution `e`, one graph per thread, with a warning
/// when a file was cut short.
fn read_instructions(e: &Execution) -> Result<(Vec<crate::callgrind::Callgrind>, Option<String>)> {
    let crate::runner::callgrind::ProcessOutputs { threads: paths, other_processes: children } =
        crate::runner::callgrind::process_outputs(&e.raw_path, e.outcome.pid);
    if paths.is_empty() {
        return Err(Error::NoSamples {
            target: e.group.clone(),
            reason: format!(
                "callgrind wrote no counts ({}): valgrind could not run the workload ({}; its \
                 message is above, or in the test's output)",
                crate::runner::callgrind::output_path(&e.raw_path, e.outcome.pid).display(),
                e.outcome.exit
            ),
        });
    }
    let mut threads = Vec::with_capacity(paths.len());
    let mut truncated = None;
    for path in &paths {
        let bytes = std::fs::read(path).map_err(|err| Error::io("could not read", path, err))?;
        let parsed = crate::callgrind::parse(&bytes).map_err(|err| Error::Profile {
            context: format!("could not read callgrind's output {}", path.display()),
            source: Box::new(err),
        })?;
        if parsed.truncated && truncated.is_none() {
            truncated = Some(path.clone());
        }
        threads.push(parsed);
    }
    let warning = if let Some(path) = truncated {
        Some(format!("callgrind's output {} is incomplete: the run was cut short", path.display()))
    } else {
        (children > 0).then(|| {
            format!(
                "{children} process(es) forked by the workload ran under valgrind too; their instructions \
                 are not counted (files beside {})",
                paths[0].display()
            )
        })
    };
    Ok((threads, warning))
}

/// A warning when the timer delivered far fewer samples than asked (a kernel tick below the
/// requested rate, or perf events refused). The CPU totals stay right either way: only the
/// resolution suffers.
fn rate_warning(raw: &RawFile, p: &Profile) -> Option<String> {
    let requested = f64::from(raw.header.frequency_hz);
    let samples = p.sample_type_index("samples").map(|i| p.total(i))? as f64;
    let cpu_s = p.sample_type_index("cpu").map(|i| p.total(i))? as f64 / 1e9;
    if requested == 0.0 || cpu_s < 0.5 || samples < 1.0 {
        return None;
    }
    let delivered = samples / cpu_s;
    (delivered < 0.7 * requested).then(|| {
        format!(
            "the {} timer delivered {delivered:.0} samples per CPU second of the {requested:.0} Hz asked; \
             CPU times are still right (scaled by measured CPU time), only the resolution is lower",
            contprof_protocol::format::ClockKind::from_u32(raw.header.clock).name()
        )
    })
}

fn write_outputs(
    merged: &Profile,
    group: &str,
    dir: &Path,
    rec: &Recording<'_>,
    shell: &Shell,
) -> Result<()> {
    let profile_path = dir.join("profile.pb.gz");
    write_atomic(&profile_path, &profile::encode_to_vec(merged))?;
    let mut written = vec![profile_path];
    // A profile holds CPU samples or instruction counts, never both: one `flamegraph.svg`.
    for (sample_type, file) in [
        ("cpu", "flamegraph.svg"),
        ("instructions", "flamegraph.svg"),
        ("alloc_space", "alloc-flamegraph.svg"),
        ("delay", "contention-flamegraph.svg"),
        ("wall", "wall-flamegraph.svg"),
    ] {
        let index = merged.sample_type_index(sample_type);
        if index.is_none_or(|i| merged.total(i) == 0) {
            continue;
        }
        let mut svg = Vec::new();
        let options = FlameGraphOptions { sample_type: sample_type.to_owned(), target: group.to_owned() };
        match report::write_flamegraph(&mut svg, merged, &options) {
            Ok(()) => {
                let path = dir.join(file);
                write_atomic(&path, &svg)?;
                written.push(path);
            }
            Err(e) => shell.warn(format_args!("no {sample_type} flame graph for {group}: {e}")),
        }
    }
    if rec.top > 0 {
        // On stderr, as cargo's own messages: the workload's stdout stays the workload's
        // (`cargo contprof run -- in.md > out.html`).
        let mut out = anstream::stderr().lock();
        let options = TopOptions { limit: rec.top, target: group.to_owned(), fold_library: !rec.raw_frames };
        report::write_top(&mut out, merged, &options)
            .map_err(|e| Error::io("could not write to", "stderr", e))?;
    }
    if rec.list_files {
        for path in written {
            shell.status("Wrote", path.display());
        }
    }
    Ok(())
}
