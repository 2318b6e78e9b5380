//! Errors of the store. Every variant names the store (URL or path) and, where there is one, the run,
//! the object path or the revision, so the CLI can print the chain once and map the kind to an exit code.

use crate::git::GitError;

/// An error of the profile store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SIGINT or SIGTERM arrived while the store was being read or written; the operation was
    /// abandoned (what it wrote, if anything, is never visible half-done).
    #[error("interrupted while waiting for store {store}")]
    Interrupted {
        /// The store URL.
        store: String,
    },
    /// A run, revision or object that was asked for does not exist in the store.
    #[error("{what} not found in store {store}")]
    NotFound {
        /// What was looked for: `run 2025…`, `runs for commit abc…`, an object path.
        what: String,
        /// The store URL.
        store: String,
    },
    /// A stored object could not be parsed (truncated, corrupt, or not ours).
    #[error("corrupt object {path} in store {store}: {reason}")]
    Corrupt {
        /// Object path inside the store.
        path: String,
        /// The store URL.
        store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store (or a run in it) was written by a newer `cargo contprof` with an unknown format.
    #[error(
        "store {store} has format version {version}, newer than the supported version {supported}: \
         upgrade cargo contprof (nothing was written)"
    )]
    NewerVersion {
        /// The store URL.
        store: String,
        /// The version found.
        version: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The store could not be reached or refused the request (network, credentials, permissions).
    #[error("store {store} is unreachable or refused `{op}` on {path}")]
    Unreachable {
        /// The store URL.
        store: String,
        /// The operation: get, put, list, delete.
        op: &'static str,
        /// The object path or prefix.
        path: String,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The store URL is not one we can open.
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A local file outside the store (an import source, an export destination, the store's
    /// directory) could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was being done: `read`, `write`, `create directory`.
        op: &'static str,
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Input rejected before anything was written (an import file that is not gzip, a bad tag).
    #[error("{0}")]
    InvalidInput(String),
    /// Resolving a revision or reading the repository state failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Something wrong that a query skipped over, reported to the user without failing the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreWarning {
    /// Object path inside the store.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for StoreWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {}: {}", self.path, self.reason)
    }
}
