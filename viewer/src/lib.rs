//! The interactive profile viewer: `cargo contprof serve` (a local web server browsing a store)
//! and `cargo contprof report --html` (one self-contained HTML file per view).
//!
//! One implementation of the views serves both: [`write_report`] writes the page of a view (the
//! call tree aggregated here, see [`FlameTree`], embedded as JSON next to the inlined script and
//! styles of `assets/`), and the server answers `/view` and `/compare` with exactly that page.
//! The page draws a flame graph on a canvas (zoom, tooltips, show/hide/highlight filters, profile
//! type selector), a sortable top-functions table and, for comparisons, the regression table of
//! [`contprof_engine::compare`] with links that focus the flame graph.
//!
//! The production section (`prod`: `/prod`, `/prod/view`, `/prod/compare`, and `cargo contprof
//! prod report`) puts a selection of production windows through the same page, with its filters,
//! breakdown and timeline above the flame graph.
//!
//! This module owns the views and the HTTP surface: the route table is ours (`server`), hyper
//! speaks HTTP/1.1 under the limits of `http`. It only reads the store (through
//! [`Store::log`](contprof_engine::store::Store::log), [`show`](contprof_engine::store::Store::show) and
//! [`read_profile`](contprof_engine::store::Store::read_profile)); it never writes to it, and no part of a
//! request names a file: runs are looked up by validated run id and profiles by the file names in
//! the store's own metadata. It prints nothing; the CLI reports the bound address.

mod classify;
mod fleet;
pub(crate) mod http;
mod labels;
mod page;
pub mod prod;
pub(crate) mod query;
mod runs_page;
pub(crate) mod server;
mod tree;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod serve_tests;
#[cfg(test)]
mod tests;

pub use classify::FrameClass;
pub use fleet::fleet_page;
pub use page::{ReportInput, ReportView, html_escape, write_json, write_report};
pub use query::{ProdQuery, TopQuery};
pub use server::{Comparing, DEFAULT_BIND, ServeOptions, Server, serve};
pub use tree::{FlameTree, FnInfo, ROOT_NAME, type_label};

/// Errors of the viewer.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// Writing a page failed.
    #[error("cannot write the page")]
    Io(#[from] std::io::Error),
    /// Serializing a view's data failed.
    #[error("cannot serialize the view")]
    Json(#[source] serde_json::Error),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server's runtime could not be started.
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
    /// A non-loopback address was asked for without `allow_remote`.
    #[error(
        "refusing to listen on {addr}: it is reachable from other machines and the viewer has no \
         authentication; bind to 127.0.0.1 or allow remote access explicitly"
    )]
    NotLoopback {
        /// The address asked for.
        addr: String,
    },
    /// Accepting connections failed.
    #[error("the server stopped accepting connections on {addr}")]
    Accept {
        /// The bound address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
