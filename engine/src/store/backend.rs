//! The blocking face of `object_store`: one small current-thread tokio runtime per store, so callers
//! never see async. Local directories and object storage go through the same code; only the
//! construction differs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::error::StoreError;

/// How many requests to have in flight when reading many small objects from object storage.
const CONCURRENT_GETS: usize = 32;

/// An object listed in the store.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub path: String,
    pub modified: DateTime<Utc>,
}

/// What [`Backend::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// The object is ours.
    Made,
    /// Someone else's object was there first.
    Exists,
    /// The store cannot create conditionally (nothing was written).
    Unsupported,
}

/// Network behaviour of remote stores.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Retries of a failed request (with backoff) before giving up.
    pub max_retries: usize,
    /// Give up retrying after this long.
    pub retry_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl NetworkOptions {
    pub(crate) fn retry(&self) -> RetryConfig {
        RetryConfig { max_retries: self.max_retries, retry_timeout: self.retry_timeout, ..Default::default() }
    }

    pub(crate) fn client_config(&self) -> [(ClientConfigKey, String); 2] {
        [
            (ClientConfigKey::Timeout, format!("{}ms", self.request_timeout.as_millis())),
            (ClientConfigKey::ConnectTimeout, format!("{}ms", self.connect_timeout.as_millis())),
        ]
    }
}

pub(crate) struct Backend {
    inner: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// The store URL, for error messages.
    pub url: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Backend {
    pub fn new(inner: Arc<dyn ObjectStore>, url: String) -> Result<Backend, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
            StoreError::Io { op: "start the I/O runtime for", path: url.clone(), source }
        })?;
        Ok(Backend { inner, rt, url })
    }

    /// Drives `fut` to completion, unless SIGINT or SIGTERM arrives meanwhile: then it is dropped
    /// (object_store writes each object to a temporary name and renames it, or uploads it in one
    /// request, so nothing half-written becomes visible) and the call returns
    /// [`StoreError::Interrupted`]. An interruption from before the call (the Ctrl-C that
    /// stopped a workload whose samples are now stored) does not count.
    fn block<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
        let at_start = crate::interrupt::count();
        let interrupted = async move {
            while crate::interrupt::count() == at_start {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let raced = self.rt.block_on(async {
            futures::pin_mut!(fut);
            futures::pin_mut!(interrupted);
            match futures::future::select(fut, interrupted).await {
                futures::future::Either::Left((out, _)) => Some(out),
                futures::future::Either::Right(_) => None,
            }
        });
        raced.ok_or_else(|| StoreError::Interrupted { store: self.url.clone() })
    }

    fn unreachable(&self, op: &'static str, path: &str, source: object_store::Error) -> StoreError {
        StoreError::Unreachable {
            store: self.url.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Writes an object, replacing any previous one. Atomic: readers see the old or the new bytes.
    pub fn put(&self, path: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        let payload = PutPayload::from(bytes.into());
        self.block(self.inner.put(&Path::from(path), payload))?
            .map(drop)
            .map_err(|e| self.unreachable("put", path, e))
    }

    /// Writes an object unless it exists. Returns false when it already existed. Stores without
    /// conditional puts fall back to a plain put (callers only use this for identical contents).
    pub fn put_if_absent(&self, path: &str, bytes: impl Into<Bytes>) -> Result<bool, StoreError> {
        let bytes = bytes.into();
        match self.create(path, bytes.clone())? {
            Create::Made => Ok(true),
            Create::Exists => Ok(false),
            Create::Unsupported => self.put(path, bytes).map(|()| true),
        }
    }

    /// Creates an object only if it does not exist yet: one of several writers racing for the
    /// same path wins (on every backend that supports conditional puts).
    pub fn create(&self, path: &str, bytes: impl Into<Bytes>) -> Result<Create, StoreError> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.block(self.inner.put_opts(&Path::from(path), PutPayload::from(bytes.into()), opts))? {
            Ok(_) => Ok(Create::Made),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Create::Exists)
            }
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                Ok(Create::Unsupported)
            }
            Err(e) => Err(self.unreachable("put", path, e)),
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let p = Path::from(path);
        let res = self.block(async {
            match self.inner.get(&p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        res.map_err(|e| self.unreachable("get", path, e))
    }

    /// Reads many objects concurrently; each result is `None` when that object does not exist.
    pub fn get_many(&self, paths: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let inner = &self.inner;
        let res: Result<Vec<Option<Bytes>>, (String, object_store::Error)> = self.block(
            futures::stream::iter(paths.iter().map(|path| async move {
                let p = Path::from(path.as_str());
                let r = match inner.get(&p).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                };
                r.map_err(|e| (path.clone(), e))
            }))
            .buffered(CONCURRENT_GETS)
            .try_collect(),
        )?;
        res.map_err(|(path, e)| self.unreachable("get", &path, e))
    }

    /// Every object under `prefix` (a directory-like path without trailing slash), recursively.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let p = Path::from(prefix);
        let res = self.block(self.inner.list(Some(&p)).try_collect())?;
        self.listed(prefix, res)
    }

    /// The objects under `prefix` whose paths sort after `offset` (a path under `prefix`): what
    /// arrived since a known object, when names sort by time, without listing the rest.
    pub fn list_after(&self, prefix: &str, offset: &str) -> Result<Vec<Listed>, StoreError> {
        let p = Path::from(prefix);
        let res = self.block(self.inner.list_with_offset(Some(&p), &Path::from(offset)).try_collect())?;
        self.listed(prefix, res)
    }

    /// A listing's objects; nothing for a prefix that does not exist.
    fn listed(
        &self,
        prefix: &str,
        res: Result<Vec<object_store::ObjectMeta>, object_store::Error>,
    ) -> Result<Vec<Listed>, StoreError> {
        match res {
            Ok(metas) => Ok(metas
                .into_iter()
                .map(|m| Listed { path: m.location.to_string(), modified: m.last_modified })
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.unreachable("list", prefix, e)),
        }
    }

    /// The names of the "directories" directly under `prefix` (common prefixes up to the next
    /// `/`), sorted: a listing that costs one request per thousand names, not one per object.
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let p = Path::from(prefix);
        match self.block(self.inner.list_with_delimiter(Some(&p)))? {
            Ok(listed) => {
                let mut names: Vec<String> =
                    listed.common_prefixes.iter().filter_map(|d| d.filename().map(str::to_owned)).collect();
                names.sort();
                Ok(names)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.unreachable("list", prefix, e)),
        }
    }

    /// Deletes objects; missing ones are not an error.
    pub fn delete_many(&self, paths: &[String]) -> Result<(), StoreError> {
        let inner = &self.inner;
        let res: Result<Vec<()>, (String, object_store::Error)> = self.block(
            futures::stream::iter(paths.iter().map(|path| async move {
                match inner.delete(&Path::from(path.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err((path.clone(), e)),
                }
            }))
            .buffered(CONCURRENT_GETS)
            .try_collect(),
        )?;
        res.map(drop).map_err(|(path, e)| self.unreachable("delete", &path, e))
    }
}
