//! The data of a run: its metadata (JSON, versioned) and the slim summary kept in the index.

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use contprof_protocol::env::Unwind;
use contprof_protocol::format::AllocMode;

use crate::git::RepoState;

/// Version of [`RunMetadata`]'s JSON. Bumped on incompatible changes; readers refuse newer ones.
pub const METADATA_VERSION: u32 = 1;

/// Key of runs recorded outside a git repository.
pub const KEY_NO_GIT: &str = "no-git";
/// Key of runs recorded on a branch without commits.
pub const KEY_UNBORN: &str = "unborn";

/// Everything recorded about one invocation of `cargo contprof run/test/bench/check/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMetadata {
    /// [`METADATA_VERSION`] of the writer.
    pub version: u32,
    /// Unique, sortable by time: `20250102T030405.678901Z-1a2b3c4d5e`.
    pub run_id: String,
    /// What the run is keyed by: the full commit id, or [`KEY_UNBORN`] / [`KEY_NO_GIT`].
    pub key: String,
    /// A sentence saying how the run is keyed, for the user.
    pub key_note: String,
    /// Full commit id of `HEAD`, `None` outside git or on an unborn branch.
    pub commit: Option<String>,
    /// Whether the working tree differed from `commit`.
    pub dirty: bool,
    /// SHA-256 of `git diff HEAD` and untracked file names when dirty.
    pub diff_hash: Option<String>,
    /// Branch checked out, `None` when detached or outside git.
    pub branch: Option<String>,
    /// When the run started.
    pub time: DateTime<Utc>,
    /// Host name of the machine.
    pub host: String,
    /// `rustc -vV`: release and host triple.
    pub toolchain: Toolchain,
    /// Target triple the workload was built for.
    pub target: String,
    /// The command line as typed.
    pub command: Vec<String>,
    /// Profiling settings.
    pub settings: Settings,
    /// `--tag KEY=VALUE` pairs.
    pub tags: BTreeMap<String, String>,
    /// The profiles of the run, in recording order.
    pub profiles: Vec<ProfileEntry>,
    /// File name (inside the run) of the machine-code fingerprints of the functions its profiles
    /// hold (`code.json.gz`); absent in runs recorded before they existed, and in imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_map: Option<String>,
}

/// The compiler that built the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// `release:` line of `rustc -vV`, e.g. `1.88.0`.
    pub release: String,
    /// `host:` line of `rustc -vV`.
    pub host: String,
}

impl Toolchain {
    /// Asks `rustc -vV` (the `RUSTC` environment variable wins, as in cargo). Empty fields when it
    /// cannot be run: the toolchain is descriptive, never a reason to fail recording.
    pub fn detect() -> Toolchain {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let Ok(out) = Command::new(rustc).arg("-vV").output() else { return Toolchain::default() };
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        Toolchain { release: field("release:"), host: field("host:") }
    }
}

/// How the profiles were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// What recorded the profiles.
    pub engine: Recorder,
    /// CPU sampling frequency in Hz (0 when not sampled).
    pub frequency_hz: u32,
    /// How allocations were recorded; `None` when that is not known (imported profiles), stored
    /// as an empty string.
    #[serde(with = "alloc_mode_name")]
    pub alloc_mode: Option<AllocMode>,
    /// Mean bytes between allocation samples, when sampled.
    pub alloc_interval: Option<u64>,
    /// Repetitions of each workload.
    pub runs: u32,
    /// How stacks were walked (tables, or frame pointers forced in the build, which changes the
    /// code). Runs stored before the tables existed used frame pointers.
    #[serde(with = "unwind_name", default = "frame_pointers")]
    pub unwind: Unwind,
    /// Contention sampling rate in nanoseconds, when waits were recorded (`--contention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contention_rate_ns: Option<u64>,
    /// Wall-clock sampling frequency in Hz, when wall time was sampled (`--wall`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_hz: Option<u32>,
}

/// What recorded a run's profiles (`settings.engine` in its metadata).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recorder {
    /// The sampling agent (`run`, `test`, `bench`, `check`).
    #[default]
    Agent,
    /// The instructions engine: callgrind, with the agent recording every allocation.
    Instructions,
    /// `import`: profiles made elsewhere, whose recording is not known.
    Import,
    /// A name this version does not know (a newer version stored the run).
    #[serde(other)]
    Unknown,
}

impl Recorder {
    /// The name in the metadata and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Recorder::Agent => "agent",
            Recorder::Instructions => "instructions",
            Recorder::Import => "import",
            Recorder::Unknown => "unknown",
        }
    }
}

fn frame_pointers() -> Unwind {
    Unwind::FramePointers
}

/// [`Settings::alloc_mode`] as the name the agent's variable takes (`off`, `sampled`, `exact`), or
/// an empty string when not known; a name this version does not know reads as not known.
mod alloc_mode_name {
    use contprof_protocol::env::{alloc_mode, alloc_name};
    use contprof_protocol::format::AllocMode;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &Option<AllocMode>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.map_or("", alloc_name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AllocMode>, D::Error> {
        Ok(alloc_mode(&String::deserialize(d)?))
    }
}

/// [`Settings::unwind`] as its name (`tables`, `frame-pointers`).
mod unwind_name {
    use contprof_protocol::env::Unwind;
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(unwind: &Unwind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(unwind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Unwind, D::Error> {
        let name = String::deserialize(d)?;
        Unwind::from_name(&name).ok_or_else(|| D::Error::custom(format!("unknown stack walk `{name}`")))
    }
}

/// One stored profile (gzipped pprof) of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// What was profiled: `bin/parse`, `test/mycrate::tests::foo`, `bench/parse/large`.
    pub group: String,
    /// Repetition index within the group, from 0.
    pub repetition: u32,
    /// File name inside the run (also the name `export` writes).
    pub file: String,
    /// Size in bytes of the gzipped profile.
    pub size: u64,
    /// Exit code of the workload, `None` when it was killed by a signal or not known.
    pub exit_code: Option<i32>,
    /// How the workload was stopped when it did not exit by itself (`killed by SIGTERM`, `timed
    /// out`): kept in the store, left out of comparisons and baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// The slim copy of a run's metadata kept in the index: what `log`, filters and baseline lookups need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Key (commit id, `unborn`, `no-git`).
    pub key: String,
    /// Full commit id.
    pub commit: Option<String>,
    /// Dirty tree.
    pub dirty: bool,
    /// Branch.
    pub branch: Option<String>,
    /// Start time.
    pub time: DateTime<Utc>,
    /// Target triple.
    pub target: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Distinct profile groups, at most `SUMMARY_GROUPS` (16); see `more_groups`.
    pub groups: Vec<String>,
    /// True when the run has more distinct groups than the summary keeps (filters then read the
    /// run's metadata).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_groups: bool,
    /// Number of profiles.
    pub profiles: usize,
    /// Total bytes of the profiles.
    pub bytes: u64,
}

/// Most distinct groups a [`RunSummary`] lists, so index entries stay small for large test suites.
pub const SUMMARY_GROUPS: usize = 16;

impl RunMetadata {
    /// The summary the index keeps for this run.
    pub fn summary(&self) -> RunSummary {
        let mut groups: Vec<String> = Vec::new();
        for p in &self.profiles {
            if !groups.contains(&p.group) {
                groups.push(p.group.clone());
            }
        }
        let more_groups = groups.len() > SUMMARY_GROUPS;
        groups.truncate(SUMMARY_GROUPS);
        RunSummary {
            run_id: self.run_id.clone(),
            key: self.key.clone(),
            commit: self.commit.clone(),
            dirty: self.dirty,
            branch: self.branch.clone(),
            time: self.time,
            target: self.target.clone(),
            tags: self.tags.clone(),
            groups,
            more_groups,
            profiles: self.profiles.len(),
            bytes: self.profiles.iter().map(|p| p.size).sum(),
        }
    }
}

/// What the caller knows about a run before its profiles are written.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// State of the repository (commit, branch, dirty).
    pub repo: RepoState,
    /// Start time; [`Utc::now`] in [`NewRun::new`].
    pub time: DateTime<Utc>,
    /// Host name.
    pub host: String,
    /// Toolchain.
    pub toolchain: Toolchain,
    /// Target triple.
    pub target: String,
    /// Command line.
    pub command: Vec<String>,
    /// Settings.
    pub settings: Settings,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl NewRun {
    /// A run starting now on this host, with everything else empty.
    pub fn new(repo: RepoState) -> NewRun {
        NewRun {
            repo,
            time: Utc::now(),
            host: host_name(),
            toolchain: Toolchain::default(),
            target: String::new(),
            command: Vec::new(),
            settings: Settings::default(),
            tags: BTreeMap::new(),
        }
    }

    pub(crate) fn into_metadata(self, run_id: String) -> RunMetadata {
        let key_note = self.repo.keying_note();
        let (key, commit, dirty, diff_hash, branch) = match self.repo {
            RepoState::Commit { commit, branch, dirty, .. } => {
                (commit.clone(), Some(commit), dirty.is_some(), dirty, branch)
            }
            RepoState::Unborn { branch } => (KEY_UNBORN.to_string(), None, false, None, branch),
            RepoState::NoGit { .. } => (KEY_NO_GIT.to_string(), None, false, None, None),
        };
        RunMetadata {
            version: METADATA_VERSION,
            run_id,
            key,
            key_note,
            commit,
            dirty,
            diff_hash,
            branch,
            time: self.time,
            host: self.host,
            toolchain: self.toolchain,
            target: self.target,
            command: self.command,
            settings: self.settings,
            tags: self.tags,
            profiles: Vec::new(),
            code_map: None,
        }
    }
}

/// The tag `check` puts on both sides' runs when it records them interleaved (base and head
/// alternately, run by run, in one job): the same value, unique to that job, on every run of the
/// pair. Comparisons read it ([`interleaved`]) to use the method for interleaved sides wherever
/// the runs are compared again (`compare` by run ids, the viewer).
pub const INTERLEAVED_TAG: &str = "interleaved";

/// Whether `base` and `head` were recorded interleaved: a run of each carries the same
/// [`INTERLEAVED_TAG`].
pub fn interleaved(base: &[RunMetadata], head: &[RunMetadata]) -> bool {
    base.iter()
        .filter_map(|b| b.tags.get(INTERLEAVED_TAG))
        .any(|v| head.iter().any(|h| h.tags.get(INTERLEAVED_TAG) == Some(v)))
}

/// Parses `KEY=VALUE` (the `--tag` syntax). The key is non-empty and has no `=`.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("invalid tag `{s}`: expected KEY=VALUE")),
    }
}

/// The machine's host name, from the kernel (empty when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A new run id: UTC time to the microsecond, then 10 random hex digits, so ids sort by time and two
/// writers never collide.
pub fn new_run_id(time: DateTime<Utc>) -> String {
    format!("{}-{:010x}", time.format("%Y%m%dT%H%M%S%.6fZ"), fastrand::u64(..) & 0xff_ffff_ffff)
}

/// `time` as RFC 3339 with seconds, as shown to users.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Whether `s` has the shape of a run id (as opposed to a git revision).
pub fn looks_like_run_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 16 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'T'
}

/// Whether `name` has the shape [`profile_file_name`] gives (and imports keep): one plain file
/// name of ASCII letters, digits, `-`, `_` and `.`, ending `.pb.gz`, never `..` or a path. A
/// stored `meta.json` may come from anyone who can write to a shared bucket: a name like
/// `../../.bashrc` must not become a path outside the export directory.
pub(crate) fn is_profile_file_name(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".pb.gz")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A file name for a profile: position first (unique within the run), then a readable group.
pub(crate) fn profile_file_name(index: usize, group: &str, repetition: u32) -> String {
    let mut g: String = group
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    g.truncate(80);
    format!("{index:04}-{g}-r{repetition}.pb.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings keep the JSON they always had: names as strings, an import's unknown
    /// allocation mode as an empty string, no `unwind` in runs older than the unwind tables.
    #[test]
    fn stored_settings_read_and_write_the_names_they_always_had() {
        let agent = r#"{"engine":"agent","frequency_hz":250,"alloc_mode":"sampled","alloc_interval":524288,"runs":3,"unwind":"tables"}"#;
        let s: Settings = serde_json::from_str(agent).unwrap();
        assert_eq!(
            (s.engine, s.alloc_mode, s.unwind),
            (Recorder::Agent, Some(AllocMode::Sampled), Unwind::Tables)
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), agent);

        let import = r#"{"engine":"import","frequency_hz":0,"alloc_mode":"","alloc_interval":null,"runs":1}"#;
        let s: Settings = serde_json::from_str(import).unwrap();
        assert_eq!((s.engine, s.alloc_mode, s.unwind), (Recorder::Import, None, Unwind::FramePointers));

        let newer = r#"{"engine":"ebpf","frequency_hz":99,"alloc_mode":"guarded","alloc_interval":null,"runs":1,"unwind":"frame-pointers"}"#;
        let s: Settings = serde_json::from_str(newer).unwrap();
        assert_eq!(
            (s.engine, s.alloc_mode),
            (Recorder::Unknown, None),
            "a newer writer's names read as unknown"
        );
    }
}
