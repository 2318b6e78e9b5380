//! `cargo contprof serve`: a local web server that browses a store. Routes:
//!
//! - `GET /`: the run list with filters (see `runs_page`).
//! - `GET /view?run=ID&run=ID[&group=G][&format=json]`: the selected runs merged, as the same page
//!   (or JSON) that [`write_report`](super::write_report) writes.
//! - `GET /compare?base=ID&head=ID[&group=G][&format=json]`: base against head, with the
//!   statistics of [`contprof_engine::compare`].
//! - `GET /prod`, `GET /prod/view?service=S[&type=..&since=..&version=..&label=k=v..]`,
//!   `GET /prod/compare?...&base=k=v&head=k=v`: production windows (see `prod`).
//!
//! [`State::route`] is the route table, with the checks every request passes first (loopback
//! `Host`, `GET` or `HEAD`, no body); [`super::http`] serves it over hyper with the limits on
//! time, size and answers in progress. The store is opened on first use and again after a
//! failure, so a store that cannot be read yields an error page naming it rather than a dead
//! server.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ViewerError;
use super::http::{self, Limits, Request, Response};
use super::page::{ReportInput, hidden_input, write_json, write_report};
use super::query::{ListQuery, ProdQuery, TopQuery, ViewQuery};
use super::runs_page;
use contprof_engine::compare::{self, RevisionInfo};
use contprof_engine::pipeline;
use contprof_engine::profile::Profile;
use contprof_engine::store::{RunMetadata, Store, StoreError, StoreLocation, rfc3339};

/// Address `serve` listens on unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:7878";

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The store to browse.
    pub store: StoreLocation,
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Allow a non-loopback address. The viewer has no authentication: anyone who can reach the
    /// port can read every profile of the store.
    pub allow_remote: bool,
    /// How `/compare` compares: the project's configuration, as `cargo contprof compare` reads it.
    pub comparing: Comparing,
    /// How long a client may take to send a request head; also how long an idle connection is
    /// kept open.
    pub head_timeout: Duration,
    /// How long an answer may take; past it the client gets a 503 saying so.
    pub answer_timeout: Duration,
}

/// The comparison settings `/compare` uses, the same as the CLI's without its flags.
#[derive(Debug, Clone)]
pub struct Comparing {
    /// Thresholds, ignore list and the rest (configuration `[thresholds]`, `ignore`...).
    pub options: compare::Options,
    /// Fold library frames into their callers (configuration `fold_library`).
    pub fold_library: bool,
    /// The project's repository, where the history of a base is looked up among its ancestors
    /// (as `compare` does; none: only older runs of the base's own commit).
    pub repo: Option<contprof_engine::git::Repo>,
}

impl Default for Comparing {
    fn default() -> Self {
        Comparing { options: compare::Options::default(), fold_library: true, repo: None }
    }
}

impl ServeOptions {
    /// Serving `store` on [`DEFAULT_BIND`], with the default timeouts.
    pub fn new(store: StoreLocation) -> ServeOptions {
        ServeOptions {
            store,
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            allow_remote: false,
            comparing: Comparing::default(),
            head_timeout: http::HEAD_TIMEOUT,
            answer_timeout: http::ANSWER_TIMEOUT,
        }
    }
}

/// A bound server, not yet answering.
#[derive(Debug)]
pub struct Server {
    /// One thread drives the connections; answers run on its blocking pool.
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    limits: Limits,
    state: Arc<State>,
}

#[derive(Debug)]
pub(crate) struct State {
    location: StoreLocation,
    store: Mutex<Option<Arc<Store>>>,
    allow_remote: bool,
    comparing: Comparing,
}

/// Binds and serves until the process ends.
pub fn serve(opts: ServeOptions) -> Result<(), ViewerError> {
    Server::bind(opts)?.run()
}

impl Server {
    /// Opens the listening socket (listening when this returns). Refuses a non-loopback address
    /// unless `allow_remote`.
    pub fn bind(opts: ServeOptions) -> Result<Server, ViewerError> {
        if !opts.bind.ip().is_loopback() && !opts.allow_remote {
            return Err(ViewerError::NotLoopback { addr: opts.bind.to_string() });
        }
        let bind_err = |source| ViewerError::Bind { addr: opts.bind.to_string(), source };
        let listener = std::net::TcpListener::bind(opts.bind).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("contprof-serve")
            .build()
            .map_err(ViewerError::Runtime)?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind_err)?
        };
        let limits = Limits {
            head_timeout: opts.head_timeout,
            answer_timeout: opts.answer_timeout,
            max_in_flight: http::MAX_IN_FLIGHT,
        };
        let state = State {
            location: opts.store,
            store: Mutex::new(None),
            allow_remote: opts.allow_remote,
            comparing: opts.comparing,
        };
        Ok(Server { runtime, listener, addr, limits, state: Arc::new(state) })
    }

    /// The bound address (with the port chosen when binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of the run list, to print for the user.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Answers requests until the process ends.
    pub fn run(self) -> Result<(), ViewerError> {
        self.run_until(&AtomicBool::new(false))
    }

    /// Answers requests until `stop` is set (checked every 50 ms), then lets the requests in
    /// progress finish and returns.
    pub fn run_until(self, stop: &AtomicBool) -> Result<(), ViewerError> {
        let state = Arc::clone(&self.state);
        self.answer_until(stop, Arc::new(move |r: &Request| state.answer(r)))
    }

    /// [`Server::run_until`] with another answer function, for tests of the limits.
    #[cfg(test)]
    pub(crate) fn run_answering(self, stop: &AtomicBool, answer: http::Answer) -> Result<(), ViewerError> {
        self.answer_until(stop, answer)
    }

    fn answer_until(self, stop: &AtomicBool, answer: http::Answer) -> Result<(), ViewerError> {
        let Server { runtime, listener, addr, limits, .. } = self;
        let served = runtime.block_on(http::serve_until(listener, limits, answer, stop));
        // Answers still running went past their timeout and were given up; do not wait for them.
        runtime.shutdown_background();
        served.map_err(|source| ViewerError::Accept { addr: addr.to_string(), source })
    }
}

/// A failed request: status and the message shown.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: u16,
    pub message: String,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    /// The failure of a command-layer error: what the request got wrong is a 4xx.
    fn of(e: &contprof_engine::errors::Error) -> Failure {
        use contprof_engine::errors::Error;
        match e {
            Error::NothingMatched { what } => Failure::new(404, what.clone()),
            Error::InvalidArgument { flag, message } => Failure::new(400, format!("`{flag}`: {message}")),
            Error::Store(s) => Failure::store(s),
            e => Failure::new(500, error_chain(e)),
        }
    }

    fn store(e: &StoreError) -> Failure {
        let status = match e {
            StoreError::NotFound { .. } => 404,
            StoreError::InvalidInput(_) => 400,
            _ => 503,
        };
        Failure::new(status, error_chain(e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

impl State {
    /// A state serving `location`, for tests of [`State::route`].
    #[cfg(test)]
    pub(crate) fn new(location: StoreLocation, allow_remote: bool) -> State {
        State { location, store: Mutex::new(None), allow_remote, comparing: Comparing::default() }
    }

    /// Answers one request: its page, or the error page of why not.
    fn answer(&self, request: &Request) -> Response {
        self.route(request).unwrap_or_else(|f| Response {
            status: f.status,
            content_type: "text/html; charset=utf-8",
            body: runs_page::error_page(f.status, &f.message).into_bytes(),
        })
    }

    /// The route table: the page a request asks for, after the checks every request passes.
    pub(crate) fn route(&self, r: &Request) -> Result<Response, Failure> {
        if !self.allow_remote && !r.host.as_deref().is_some_and(is_loopback_host) {
            // A page on another site cannot reach us through DNS rebinding: it would send its own host.
            return Err(Failure::new(
                403,
                "requests must name a loopback host (127.0.0.1, localhost or [::1])",
            ));
        }
        if r.method != "GET" && r.method != "HEAD" {
            return Err(Failure::new(
                405,
                format!("method {} is not allowed: the viewer only reads", r.method),
            ));
        }
        if r.has_body {
            return Err(Failure::new(413, "the viewer takes no request body"));
        }
        match r.path.as_str() {
            "/" => {
                let q = ListQuery::parse(&r.query).map_err(|e| Failure::new(400, e.0))?;
                let store = self.store()?;
                let mut log = store.log(&q.filter).map_err(|e| Failure::store(&e))?;
                if let Some(prefix) = &q.commit {
                    log.runs
                        .retain(|run| run.commit.as_deref().is_some_and(|c| c.starts_with(prefix.as_str())));
                }
                Ok(html(runs_page::render(store.url(), &q, &log)))
            }
            "/view" | "/compare" => {
                let q = ViewQuery::parse(&r.query).map_err(|e| Failure::new(400, e.0))?;
                self.view(r.path == "/compare", &q)
            }
            "/prod" => {
                let store = self.store()?;
                super::prod::services_page(&store).map(html).map_err(|e| Failure::of(&e))
            }
            "/prod/top" => {
                let q = TopQuery::parse(&r.query).map_err(|e| Failure::new(400, e.0))?;
                let store = self.store()?;
                let body = super::fleet::fleet_page(&store, &q, Some(r.cancel.flag()), chrono::Utc::now())
                    .map_err(|e| Failure::of(&e))?;
                let content_type = if q.json { "application/json" } else { "text/html; charset=utf-8" };
                Ok(Response { status: 200, content_type, body })
            }
            "/prod/view" | "/prod/compare" => {
                let q = ProdQuery::parse(&r.query).map_err(|e| Failure::new(400, e.0))?;
                if r.path == "/prod/compare" && (q.base.is_none() || q.head.is_none()) {
                    return Err(Failure::new(
                        400,
                        "a comparison needs `base` and `head` (key=value[,key=value])",
                    ));
                }
                let store = self.store()?;
                let mut body = Vec::new();
                let cancel = Some(r.cancel.flag());
                super::prod::write_page(
                    &mut body,
                    &store,
                    &q,
                    &self.comparing,
                    (true, cancel),
                    chrono::Utc::now(),
                )
                .map_err(|e| Failure::of(&e))?;
                let content_type = if q.json { "application/json" } else { "text/html; charset=utf-8" };
                Ok(Response { status: 200, content_type, body })
            }
            _ => Err(Failure::new(404, format!("no page at {}", r.path))),
        }
    }

    fn store(&self) -> Result<Arc<Store>, Failure> {
        let mut slot = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = &*slot {
            return Ok(Arc::clone(s));
        }
        // Opening a local store creates its directory: check first, the viewer writes nothing.
        let dir = match &self.location {
            StoreLocation::Default { workspace_root } => Some(workspace_root.join(".contprof").join("store")),
            StoreLocation::Dir(d) => Some(d.clone()),
            StoreLocation::Url(_) => None,
        };
        if let Some(d) = dir
            && !d.is_dir()
        {
            return Err(Failure::new(
                503,
                format!(
                    "cannot read store {}: no such directory (record a run first)",
                    self.location.display()
                ),
            ));
        }
        let store = Store::open(&self.location).map_err(|e| {
            Failure::new(503, format!("cannot read store {}: {}", self.location.display(), error_chain(&e)))
        })?;
        let store = Arc::new(store);
        *slot = Some(Arc::clone(&store));
        Ok(store)
    }

    fn view(&self, compare: bool, q: &ViewQuery) -> Result<Response, Failure> {
        let store = self.store()?;
        let group = q.group.as_deref().map_or_else(|| "all groups".to_owned(), |g| format!("group {g}"));
        let body = if compare {
            if q.base.is_empty() || q.head.is_empty() {
                return Err(Failure::new(400, "a comparison needs at least one `base` and one `head` run"));
            }
            let base = self.metadata(&store, &q.base)?;
            let head = self.metadata(&store, &q.head)?;
            let (base_label, head_label) = (short(&base), short(&head));
            let (base_describe, head_describe) = (format!("base {base_label}"), format!("head {head_label}"));
            // The engine's comparison of stored runs, as `cargo contprof compare` makes it (history
            // and interleaving included); differing settings are shown, not refused: the runs
            // were picked by hand.
            let keep = |g: &str| q.selects(g);
            let options = pipeline::PrepareOptions {
                keep: &keep,
                filter_name: q.group.as_deref(),
                allow_mismatch: true,
                fold_library: self.comparing.fold_library,
                sample_labels: &q.sample_labels,
                by_label: q.by.as_deref(),
            };
            let pipeline::Compared { prepared, comparison: cmp } = pipeline::compare_stored(
                pipeline::history::Source { store: &store, repo: self.comparing.repo.as_ref() },
                (
                    pipeline::SideRuns { label: &base_label, describe: &base_describe, runs: &base },
                    revision(&base),
                ),
                (
                    pipeline::SideRuns { label: &head_label, describe: &head_describe, runs: &head },
                    revision(&head),
                ),
                &options,
                &self.comparing.options,
            )
            .map_err(|e| match e {
                contprof_engine::errors::Error::NothingMatched { what } => Failure::new(404, what),
                e => Failure::new(500, error_chain(&e)),
            })?;
            let title = format!("{base_label} → {head_label} ({group})");
            let mut details = describe("base", &base);
            details.extend(describe("head", &head));
            details.push(format!(
                "{} regressions, {} improvements",
                cmp.summary.regressions, cmp.summary.improvements
            ));
            details.extend(prepared.warnings.iter().chain(&prepared.notes).cloned());
            details.extend(cmp.warnings.iter().map(|w| w.to_string()));
            let (base_profiles, head_profiles): (Vec<Profile>, Vec<Profile>) = prepared
                .keys()
                .into_iter()
                .map(|key| prepared.profiles_of(&store, key))
                .fold((Vec::new(), Vec::new()), |(mut b, mut h), (pb, ph)| {
                    b.extend(pb);
                    h.extend(ph);
                    (b, h)
                });
            let mut input =
                ReportInput::compare(title, &base_profiles, &head_profiles, Some(&cmp)).with_details(details);
            input.prelude = run_labels(q, "/compare", &base_profiles, Some(&cmp));
            render(&input, q.json)?
        } else {
            if q.runs.is_empty() {
                return Err(Failure::new(400, "pick at least one run (`run=ID`)"));
            }
            let sel = self.load(&store, &q.runs, q)?;
            let title = format!("{} ({group})", short(&sel.runs));
            let mut input =
                ReportInput::profile(title, &sel.profiles).with_details(describe("runs", &sel.runs));
            input.prelude = run_labels(q, "/view", &sel.profiles, None);
            render(&input, q.json)?
        };
        Ok(body)
    }

    /// The metadata of the runs `ids`.
    fn metadata(&self, store: &Store, ids: &[String]) -> Result<Vec<RunMetadata>, Failure> {
        ids.iter().map(|id| store.show(id).map_err(|e| Failure::store(&e))).collect()
    }

    /// The runs' metadata and their profiles of the selected group, decoded.
    fn load(&self, store: &Store, ids: &[String], q: &ViewQuery) -> Result<Selection, Failure> {
        let mut sel = Selection { runs: self.metadata(store, ids)?, profiles: Vec::new() };
        for meta in &sel.runs {
            for entry in meta.profiles.iter().filter(|p| q.selects(&p.group)) {
                let p = pipeline::read_profile(store, &meta.run_id, &entry.file).map_err(|why| {
                    Failure::new(
                        500,
                        format!(
                            "profile {} of run {} in store {}: {why}",
                            entry.file,
                            meta.run_id,
                            store.url()
                        ),
                    )
                })?;
                sel.profiles.push(p);
            }
        }
        if sel.profiles.is_empty() {
            let what = q.group.as_deref().map_or_else(String::new, |g| format!(" in group `{g}`"));
            return Err(Failure::new(404, format!("the selected runs have no profiles{what}")));
        }
        if !q.sample_labels.is_empty() {
            sel.profiles.retain_mut(|p| p.retain_labelled(&q.sample_labels));
            if sel.profiles.is_empty() {
                let labels: Vec<String> = q.sample_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(Failure::new(
                    404,
                    format!("no sample of the selected runs carries {}", labels.join(", ")),
                ));
            }
        }
        Ok(sel)
    }
}

/// The label section of a run page (`path`: `/view` or `/compare`): the sample-label filters in
/// force, the form that asks for a breakdown by a sample label, and the breakdown by `q.by` of
/// `profiles` (on a comparison, the comparison's own breakdowns, each value tested run against
/// run), each value linking to the page of its samples alone.
fn run_labels(
    q: &ViewQuery,
    path: &str,
    profiles: &[Profile],
    comparison: Option<&contprof_engine::compare::Comparison>,
) -> String {
    use std::fmt::Write as _;

    use super::page::html_escape as esc;

    let mut t = String::from(r#"<section id="run-labels">"#);
    if !q.sample_labels.is_empty() {
        let labels: Vec<String> =
            q.sample_labels.iter().map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v))).collect();
        let all = ViewQuery { sample_labels: Vec::new(), ..q.clone() };
        let _ = write!(
            t,
            r#"<p id="run-sample-labels">Only the samples labelled {}. <a href="{path}?{}">All samples</a></p>"#,
            labels.join(", "),
            esc(&all.to_query())
        );
    }
    let hidden: String =
        (ViewQuery { by: None, ..q.clone() }).pairs().into_iter().map(|(k, v)| hidden_input(k, &v)).collect();
    let _ = write!(
        t,
        r#"<form class="controls" method="get" action="{path}" id="run-by-form">{hidden}<label>break down by sample label <input name="by" id="run-by" size="14" placeholder="endpoint" value="{by}"></label> <button type="submit">Break down</button></form>"#,
        by = esc(q.by.as_deref().unwrap_or("")),
    );
    if let Some(key) = q.by.as_deref() {
        let link = |value: &str| -> Option<String> {
            let mut narrowed = q.clone();
            narrowed.sample_labels.push((key.to_owned(), value.to_owned()));
            narrowed.by = None;
            Some(format!(r#"<a href="{path}?{}">only this</a>"#, esc(&narrowed.to_query())))
        };
        match comparison {
            None => {
                let (measure, parts) = super::labels::parts(profiles, key);
                t.push_str(&super::labels::table(key, &measure, &parts, &link));
            }
            Some(cmp) => {
                for b in &cmp.breakdowns {
                    t.push_str(&super::labels::breakdown_table(b, &link));
                }
            }
        }
    }
    t.push_str("</section>");
    t
}

#[derive(Debug, Default)]
struct Selection {
    runs: Vec<RunMetadata>,
    profiles: Vec<Profile>,
}

fn revision(runs: &[RunMetadata]) -> RevisionInfo {
    let commits: Vec<&str> = runs.iter().map(|r| r.commit.as_deref().unwrap_or(r.key.as_str())).collect();
    let mut info = RevisionInfo {
        commit: commits.first().copied().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if commits.iter().any(|c| *c != commits[0]) {
        info.label = format!("{} commits", commits.len());
    }
    info
}

fn short(runs: &[RunMetadata]) -> String {
    let mut commits: Vec<String> = runs
        .iter()
        .map(|r| contprof_engine::git::short_commit(r.commit.as_deref().unwrap_or(r.key.as_str())).to_owned())
        .collect();
    commits.dedup();
    match commits.as_slice() {
        [one] => one.clone(),
        many => format!("{} commits", many.len()),
    }
}

fn describe(side: &str, runs: &[RunMetadata]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            let branch = r.branch.as_deref().map_or_else(String::new, |b| format!(" on {b}"));
            format!(
                "{side}: run {} at {}{branch}, {}",
                r.run_id,
                r.commit.as_deref().unwrap_or(&r.key),
                rfc3339(r.time)
            )
        })
        .collect()
}

fn render(input: &ReportInput<'_>, json: bool) -> Result<Response, Failure> {
    let input = ReportInput { home: Some("/".to_owned()), ..input.clone() };
    let input = &input;
    let mut body = Vec::new();
    let written = if json { write_json(&mut body, input) } else { write_report(&mut body, input) };
    written.map_err(|e| Failure::new(500, error_chain(&e)))?;
    Ok(Response {
        status: 200,
        content_type: if json { "application/json" } else { "text/html; charset=utf-8" },
        body,
    })
}

fn html(body: String) -> Response {
    Response { status: 200, content_type: "text/html; charset=utf-8", body: body.into_bytes() }
}

/// Whether a `Host` header names this machine's loopback interface.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
