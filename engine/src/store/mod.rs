//! The per-commit profile store: every recorded run (metadata + gzipped pprof profiles) kept under its
//! git commit, in a local directory (default `<workspace>/.contprof/store`) or in object storage
//! (`s3://`, `gs://`, `az://`, `file://`) through the `object_store` crate, with one layout:
//!
//! ```text
//! store.json                        format version of the store
//! runs/<run-id>/meta.json           the run's metadata (RunMetadata)
//! runs/<run-id>/p/<file>.pb.gz      its profiles
//! index/loose/<run-id>.json         index entry of one run: written last, it makes the run visible
//! index/segments/<id>.json          compacted index entries of many runs
//! index/deleted/<run-id>            tombstone written by gc before it deletes a run
//! prod/...                         production windows and their leases (see `prod.rs`)
//! ```
//!
//! Integrity rests on three rules. Every object is written whole (local: temp file, fsync, rename;
//! object storage: a PUT is atomic). A run's objects are written profiles first, metadata next and its
//! index entry last, and readers only see runs through the index, so a writer killed midway leaves
//! nothing visible (gc deletes such orphans after a day). No object is ever modified in place: run ids
//! are unique and index compaction writes a new segment before deleting what it merged, so concurrent
//! writers need no lock and readers retry when compaction races them.
//!
//! The store owns storage and queries over it. It does not resolve revisions itself (that is
//! [`crate::git`]), does not look inside profiles (opaque bytes here), and prints nothing: renderers
//! write to a caller's `impl Write`.

mod backend;
mod error;
pub(crate) mod index;
mod meta;
mod prod;
mod query;
mod render;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_azure;
#[cfg(test)]
mod tests_gcs;
#[cfg(test)]
mod tests_remote;
#[cfg(test)]
mod tests_s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use backend::NetworkOptions;
pub use error::{StoreError, StoreWarning};
pub use meta::{
    INTERLEAVED_TAG, KEY_NO_GIT, KEY_UNBORN, METADATA_VERSION, NewRun, ProfileEntry, Recorder, RunMetadata,
    RunSummary, Settings, Toolchain, host_name, interleaved, looks_like_run_id, new_run_id, parse_tag,
    rfc3339,
};
pub use prod::{Deployment, Lease, Pause, ProductionGc, RollupKey, RollupObject, WindowKey, day_of};
pub use query::{
    Baseline, GcPolicy, GcReport, ImportFile, Log, LogFilter, baseline_for, gc_protected_commits,
    nearest_ancestor_with_runs, parse_time, resolve_run,
};
pub use render::{render_gc, render_log, render_log_json, render_show};

use backend::Backend;

/// Format version of the store layout written in `store.json`.
pub const STORE_VERSION: u32 = 1;
/// Environment variable selecting the store when `--store` is not given (the production
/// agent's store is the same variable).
pub use contprof_protocol::env::STORE as STORE_ENV;

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<workspace root>/.contprof/store`, with a `.gitignore` of `*` in `.contprof/`.
    Default {
        /// The cargo workspace root.
        workspace_root: PathBuf,
    },
    /// A local directory (`file://` URL or a plain path).
    Dir(PathBuf),
    /// An object store URL: `s3://bucket/prefix`, `gs://…`, `az://…`.
    Url(String),
}

impl StoreLocation {
    /// The store to use: `--store` if given, else the `CONTPROF_STORE` environment variable, else
    /// what `configured` reads (a config file; asked only when needed, so a broken config never
    /// stands in the way of an explicit store), else the default under the workspace root.
    pub fn select<E: From<StoreError>>(
        cli: Option<&str>,
        configured: impl FnOnce() -> Result<Option<String>, E>,
        workspace_root: &Path,
    ) -> Result<StoreLocation, E> {
        if let Some(s) = cli {
            return Ok(StoreLocation::parse(s)?);
        }
        if let Ok(s) = std::env::var(STORE_ENV)
            && !s.trim().is_empty()
        {
            return Ok(StoreLocation::parse(s.trim())?);
        }
        match configured()? {
            Some(s) => Ok(StoreLocation::parse(&s)?),
            None => Ok(StoreLocation::Default { workspace_root: workspace_root.to_path_buf() }),
        }
    }

    /// Parses a `--store` value: a URL with a scheme, or a plain directory path.
    pub fn parse(s: &str) -> Result<StoreLocation, StoreError> {
        let invalid =
            |reason: &str| StoreError::InvalidUrl { url: s.to_string(), reason: reason.to_string() };
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("file:// URLs need an absolute path (file:///path/to/store)"));
            }
            return Ok(StoreLocation::Dir(PathBuf::from(path)));
        }
        match s.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss") {
                    return Err(invalid(
                        "unsupported scheme; use s3://, gs://, az://, file:// or a directory",
                    ));
                }
                if rest.split('/').next().unwrap_or("").is_empty() {
                    return Err(invalid("missing bucket or container name"));
                }
                Ok(StoreLocation::Url(s.trim_end_matches('/').to_string()))
            }
            None if s.is_empty() => Err(invalid("empty")),
            None => Ok(StoreLocation::Dir(PathBuf::from(s))),
        }
    }

    /// How the location is shown in messages: a URL or a path.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Default { workspace_root } => {
                workspace_root.join(".contprof").join("store").display().to_string()
            }
            StoreLocation::Dir(p) => p.display().to_string(),
            StoreLocation::Url(u) => u.clone(),
        }
    }
}

/// Tuning of a store; the defaults suit both local and remote stores.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Retries and timeouts for object storage.
    pub network: NetworkOptions,
    /// Extra `object_store` configuration pairs (`aws_endpoint`, `aws_region`, …), applied after the
    /// environment, for callers and tests that do not want to touch the process environment.
    pub config: Vec<(String, String)>,
    /// Loose index entries that trigger a compaction into a segment.
    pub compact_at: usize,
    /// Index segments that trigger merging them into one.
    pub merge_at: usize,
    /// fsync local files and directories on write (always on outside benchmarks of the layout).
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            network: NetworkOptions::default(),
            config: Vec::new(),
            compact_at: 64,
            merge_at: 8,
            fsync: true,
        }
    }
}

/// The `store.json` object.
#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    format: String,
    version: u32,
}

const STORE_FILE: &str = "store.json";
const STORE_FORMAT: &str = "cargo-contprof-store";

/// A profile store. Blocking API; internally it drives `object_store` on a private runtime.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    options: StoreOptions,
    initialized: std::sync::atomic::AtomicBool,
    /// A local store's directory: gc removes the emptied `runs/<id>/` directories itself.
    local_root: Option<PathBuf>,
}

impl Store {
    /// Opens a store with default options. Checks its format version; creates nothing remote. A local
    /// store's directory is created (with the `.gitignore` for the default location).
    pub fn open(location: &StoreLocation) -> Result<Store, StoreError> {
        Store::open_with(location, StoreOptions::default())
    }

    /// Opens a store with explicit options.
    pub fn open_with(location: &StoreLocation, options: StoreOptions) -> Result<Store, StoreError> {
        let url = location.display();
        let inner: (Arc<dyn object_store::ObjectStore>, Option<PathBuf>) = match location {
            StoreLocation::Default { workspace_root } => {
                let dot = workspace_root.join(".contprof");
                let dir = dot.join("store");
                create_dir(&dir)?;
                let ignore = dot.join(".gitignore");
                if !ignore.exists() {
                    std::fs::write(&ignore, "*\n").map_err(|source| StoreError::Io {
                        op: "write",
                        path: ignore.display().to_string(),
                        source,
                    })?;
                }
                (local(&dir, &url, options.fsync)?, Some(dir))
            }
            StoreLocation::Dir(dir) => {
                create_dir(dir)?;
                (local(dir, &url, options.fsync)?, Some(dir.clone()))
            }
            StoreLocation::Url(u) => (remote(u, &options)?, None),
        };
        let (inner, local_root) = inner;
        let store = Store {
            backend: Backend::new(inner, url)?,
            options,
            initialized: std::sync::atomic::AtomicBool::new(false),
            local_root,
        };
        store.check_version()?;
        Ok(store)
    }

    /// The store's URL or path, as shown in messages.
    pub fn url(&self) -> &str {
        &self.backend.url
    }

    /// Reads `store.json`; returns whether it exists. Fails on a newer or unreadable version.
    fn check_version(&self) -> Result<bool, StoreError> {
        let Some(bytes) = self.backend.get(STORE_FILE)? else { return Ok(false) };
        let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: STORE_FILE.to_string(),
            store: self.url().to_string(),
            reason: e.to_string(),
        })?;
        if file.format != STORE_FORMAT {
            return Err(StoreError::Corrupt {
                path: STORE_FILE.to_string(),
                store: self.url().to_string(),
                reason: format!("format `{}` is not `{STORE_FORMAT}`", file.format),
            });
        }
        if file.version > STORE_VERSION {
            return Err(StoreError::NewerVersion {
                store: self.url().to_string(),
                version: file.version,
                supported: STORE_VERSION,
            });
        }
        self.initialized.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Creates `store.json` before the first write, and checks it again (another writer may have
    /// created a newer store in the meantime).
    fn ensure_initialized(&self) -> Result<(), StoreError> {
        if self.initialized.load(std::sync::atomic::Ordering::Relaxed) || self.check_version()? {
            return Ok(());
        }
        let file = StoreFile { format: STORE_FORMAT.to_string(), version: STORE_VERSION };
        let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        self.backend.put_if_absent(STORE_FILE, bytes)?;
        self.check_version().map(drop)
    }

    /// Starts writing a run. Profiles are written as they are added; the run becomes visible only
    /// when [`RunWriter::commit`] succeeds.
    pub fn begin_run(&self, new: NewRun) -> Result<RunWriter<'_>, StoreError> {
        self.ensure_initialized()?;
        let run_id = new_run_id(new.time);
        Ok(RunWriter {
            store: self,
            meta: new.into_metadata(run_id),
            #[cfg(test)]
            pause: None,
        })
    }

    /// Records a whole run at once: [`Store::begin_run`], every profile, [`RunWriter::commit`].
    pub fn write_run(&self, new: NewRun, profiles: Vec<NewProfile>) -> Result<RunMetadata, StoreError> {
        self.write_run_with_code(new, profiles, None)
    }

    /// [`Store::write_run`] with the run's code map ([`crate::code::CodeMap::encode`]), when there is one.
    pub fn write_run_with_code(
        &self,
        new: NewRun,
        profiles: Vec<NewProfile>,
        code_map: Option<Vec<u8>>,
    ) -> Result<RunMetadata, StoreError> {
        let mut w = self.begin_run(new)?;
        for p in profiles {
            w.add_stopped_profile(&p.group, p.repetition, p.exit_code, p.stopped, p.bytes)?;
        }
        if let Some(bytes) = code_map {
            w.add_code_map(bytes)?;
        }
        w.commit()
    }

    /// The code map of a run, `None` when the run has none. Errors when it is named but missing.
    pub fn read_code_map(&self, meta: &RunMetadata) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = &meta.code_map else { return Ok(None) };
        // The name comes from a stored file that anyone with write access to a shared store
        // could have edited: only the name this tool writes is followed.
        if file != crate::code::CODE_MAP_FILE {
            return Err(StoreError::NotFound {
                what: format!("code map `{file}` of run {} (not a name this tool writes)", meta.run_id),
                store: self.url().to_string(),
            });
        }
        self.read_object(&meta.run_id, file).map(Some)
    }

    /// The gzipped pprof bytes of one profile of a run.
    pub fn read_profile(&self, run_id: &str, file: &str) -> Result<Vec<u8>, StoreError> {
        if !meta::is_profile_file_name(file) {
            return Err(StoreError::Corrupt {
                path: format!("runs/{run_id}/meta.json"),
                store: self.url().to_string(),
                reason: format!("profile file name `{}` is not one this tool writes", file.escape_debug()),
            });
        }
        self.read_object(run_id, file)
    }

    /// The bytes of file `file` of run `run_id` (its name checked by the caller).
    fn read_object(&self, run_id: &str, file: &str) -> Result<Vec<u8>, StoreError> {
        let path = profile_path(run_id, file);
        match self.backend.get(&path)? {
            Some(b) => Ok(b.to_vec()),
            None => {
                Err(StoreError::NotFound { what: format!("profile {path}"), store: self.url().to_string() })
            }
        }
    }
}

/// A profile to record.
#[derive(Debug, Clone)]
pub struct NewProfile {
    /// Group key, e.g. `bench/parse/large`.
    pub group: String,
    /// Repetition index.
    pub repetition: u32,
    /// Exit code of the workload.
    pub exit_code: Option<i32>,
    /// How the workload was stopped when it did not exit by itself (see [`ProfileEntry::stopped`]).
    pub stopped: Option<String>,
    /// Gzipped pprof bytes.
    pub bytes: Vec<u8>,
}

/// A run being written. Dropping it without [`RunWriter::commit`] leaves only invisible objects.
pub struct RunWriter<'s> {
    store: &'s Store,
    meta: RunMetadata,
    /// Test hook: called between the profiles and the metadata, to kill a writer or a server there.
    #[cfg(test)]
    pause: Option<Box<dyn Fn()>>,
}

impl std::fmt::Debug for RunWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter").field("run_id", &self.meta.run_id).finish_non_exhaustive()
    }
}

impl RunWriter<'_> {
    /// The id the run will have.
    pub fn run_id(&self) -> &str {
        &self.meta.run_id
    }

    /// Writes one profile of the run.
    pub fn add_profile(
        &mut self,
        group: &str,
        repetition: u32,
        exit_code: Option<i32>,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.add_stopped_profile(group, repetition, exit_code, None, bytes)
    }

    /// [`RunWriter::add_profile`] of a workload that did not exit by itself: `stopped` says how
    /// it ended (`killed by SIGTERM`, `timed out`), which keeps it out of comparisons.
    pub fn add_stopped_profile(
        &mut self,
        group: &str,
        repetition: u32,
        exit_code: Option<i32>,
        stopped: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let file = meta::profile_file_name(self.meta.profiles.len(), group, repetition);
        let size = bytes.len() as u64;
        self.store.backend.put(&profile_path(&self.meta.run_id, &file), bytes)?;
        let group = group.to_string();
        self.meta.profiles.push(ProfileEntry { group, repetition, file, size, exit_code, stopped });
        Ok(())
    }

    /// Writes the machine-code fingerprints of the run's functions ([`crate::code::CodeMap`]).
    pub fn add_code_map(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        let file = crate::code::CODE_MAP_FILE.to_owned();
        self.store.backend.put(&profile_path(&self.meta.run_id, &file), bytes)?;
        self.meta.code_map = Some(file);
        Ok(())
    }

    /// Writes the metadata then the index entry that makes the run visible; returns the metadata.
    pub fn commit(self) -> Result<RunMetadata, StoreError> {
        #[cfg(test)]
        if let Some(pause) = &self.pause {
            pause();
        }
        let backend = &self.store.backend;
        let meta_bytes = serde_json::to_vec_pretty(&self.meta).unwrap_or_default();
        backend.put(&meta_path(&self.meta.run_id), meta_bytes)?;
        index::publish(backend, &self.meta.summary())?;
        // The run is durable and visible now; compaction is housekeeping that the next writer
        // retries if it fails here, so its error must not turn a recorded run into a failure.
        let _ = index::maybe_compact(backend, &self.store.options);
        Ok(self.meta)
    }
}

pub(crate) fn meta_path(run_id: &str) -> String {
    format!("runs/{run_id}/meta.json")
}

pub(crate) fn profile_path(run_id: &str, file: &str) -> String {
    format!("runs/{run_id}/p/{file}")
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        op: "create directory",
        path: dir.display().to_string(),
        source,
    })
}

fn local(dir: &Path, url: &str, fsync: bool) -> Result<Arc<dyn object_store::ObjectStore>, StoreError> {
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| StoreError::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
    // No automatic cleanup of emptied directories: it races with writers putting into the same
    // directory (`index/loose/`: a put's directory sync fails when a compaction's delete removes
    // the directory under it). gc removes the `runs/<id>/` directories it empties itself.
    Ok(Arc::new(fs.with_fsync(fsync)))
}

fn remote(url: &str, options: &StoreOptions) -> Result<Arc<dyn object_store::ObjectStore>, StoreError> {
    use object_store::ClientConfigKey;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as S3Key};
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

    let invalid = |reason: String| StoreError::InvalidUrl { url: url.to_string(), reason };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let base_url = format!("{scheme}://{bucket}");
    // Timeouts go in as configuration keys so that the environment's client settings (such as
    // `AWS_ALLOW_HTTP`) survive; `with_client_options` would replace them all.
    let client = options.network.client_config();
    let store: Arc<dyn object_store::ObjectStore> = match scheme {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(&base_url).with_retry(options.network.retry());
            for (k, v) in client {
                b = b.with_config(S3Key::Client(k), v);
            }
            for (k, v) in &options.config {
                b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
            }
            if is_loopback_http(&b.get_config_value(&S3Key::Endpoint).unwrap_or_default()) {
                b = b.with_allow_http(true);
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
        "gs" => {
            let mut b =
                GoogleCloudStorageBuilder::from_env().with_url(&base_url).with_retry(options.network.retry());
            for (k, v) in client {
                b = b.with_config(GoogleConfigKey::Client(k), v);
            }
            for (k, v) in &options.config {
                b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
            }
            // An emulator on this machine (fake-gcs-server) speaks plain HTTP, as for S3.
            if is_loopback_http(&b.get_config_value(&GoogleConfigKey::BaseUrl).unwrap_or_default()) {
                b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
        _ => {
            let mut b =
                MicrosoftAzureBuilder::from_env().with_url(&base_url).with_retry(options.network.retry());
            for (k, v) in client {
                b = b.with_config(AzureConfigKey::Client(k), v);
            }
            for (k, v) in &options.config {
                b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
    };
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    })
}

/// Plain HTTP is only allowed to a server on this machine (moto, MinIO in CI); anything else must
/// use TLS unless the user sets `AWS_ALLOW_HTTP` themselves.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else { return false };
    let host = rest.split('/').next().unwrap_or("");
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}
