//! The viewer's HTTP/1.1 surface, on hyper: each request becomes our [`Request`], an answer
//! function (the route table, `State::answer`) turns it into our [`Response`] on tokio's blocking
//! pool, never on the thread that drives the connections, and the response goes out with the
//! security headers. Connections may be kept alive.
//!
//! Everything a stuck, slow or hostile client could hold is bounded here: the size of a request
//! head ([`MAX_HEAD`]) and the time to send it (`head_timeout`, which is also how long an idle
//! connection stays open), the time to answer (`answer_timeout`), and the answers in progress
//! ([`MAX_IN_FLIGHT`]; more get a 503 at once rather than a place in a queue). No request body is
//! ever read: the route table refuses requests that have one. When told to stop, the server
//! accepts no more connections, lets the requests in progress get their answer, and returns.
//!
//! hyper itself answers a head it cannot parse (400) or one over the size limit (431), with an
//! empty body and without the headers below: no request reached the viewer, and there is no page
//! for them to protect.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Answers in progress at once; more requests get a 503.
pub const MAX_IN_FLIGHT: usize = 16;
/// How long a client may take to send a request head, and how long an idle connection is kept.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take before the client gets a 503 instead.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the accepting loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// The methods the viewer answers, as a 405's `Allow` header names them.
const ALLOWED_METHODS: &str = "GET, HEAD";

/// Sent with every answer. Pages may run inline scripts and styles but load nothing: the
/// Content-Security-Policy forbids every other source.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
         form-action 'self'; frame-ancestors 'none'",
    ),
];

/// Set once the client no longer waits for the answer (its time ran out): an answer that takes
/// long checks it and stops, so that its slot among the answers in progress is freed.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// The flag, for code that checks it.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// Not part of what a request asks for.
impl PartialEq for Cancel {
    fn eq(&self, _: &Cancel) -> bool {
        true
    }
}

impl Eq for Cancel {}

/// What the route table sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (others are rejected by the router).
    pub method: String,
    /// Path without the query, not decoded (routes are plain ASCII).
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// Whether the request carries a body (never read: the viewer takes none).
    pub has_body: bool,
    /// Set when the answer is no longer awaited.
    pub cancel: Cancel,
}

impl Request {
    /// The request with head `parts`, or why it is refused with a 400.
    pub fn new(parts: &Parts, has_body: bool) -> Result<Request, &'static str> {
        // An absolute URI names a host of its own, which the Host check would not see.
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            return Err("request target must be a path");
        }
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        let host = hosts.next().map(|h| h.to_str().map(str::to_owned).map_err(|_| "Host header is not text"));
        if hosts.next().is_some() {
            return Err("more than one Host header");
        }
        Ok(Request {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            host: host.transpose()?,
            has_body,
            cancel: Cancel::default(),
        })
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }

    /// The response as hyper sends it: the security headers, and on a 405 the methods allowed (as
    /// RFC 9110 asks). hyper adds `Content-Length` and leaves the body out for `HEAD`.
    fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let mut r = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() =
            hyper::StatusCode::from_u16(self.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = r.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if self.status == 405 {
            headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        r
    }
}

/// The limits a server applies (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request head; also the most an idle connection is kept.
    pub head_timeout: Duration,
    /// Time to produce an answer.
    pub answer_timeout: Duration,
    /// Answers in progress at once.
    pub max_in_flight: usize,
}

/// The function that answers a request; it may block and take its time.
pub type Answer = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// What every connection shares.
struct Shared {
    answer: Answer,
    limits: Limits,
    in_flight: Arc<Semaphore>,
}

/// Answers connections on `listener` with `answer` until `stop` is set (checked every
/// [`STOP_POLL`]), then waits for the requests in progress, at most as long as one request may
/// take (`head_timeout` plus `answer_timeout`). To be run inside the runtime `listener` belongs to.
pub async fn serve_until(
    listener: TcpListener,
    limits: Limits,
    answer: Answer,
    stop: &AtomicBool,
) -> io::Result<()> {
    let shared =
        Arc::new(Shared { answer, limits, in_flight: Arc::new(Semaphore::new(limits.max_in_flight)) });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(MAX_HEAD)
        // Header names in their usual spelling (`Content-Security-Policy`), as the viewer always
        // sent them.
        .title_case_headers(true);
    let graceful = GracefulShutdown::new();
    let mut poll = tokio::time::interval(STOP_POLL);
    while !stop.load(Ordering::Relaxed) {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ = poll.tick() => continue,
        };
        let shared = Arc::clone(&shared);
        let service = service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(shared.respond(request).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        // A failed connection (reset, timed out, malformed) concerns that client only.
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    // Idle connections close now, the others once their answer is written; any still open after
    // the longest a request may take are dropped with the runtime.
    let longest = limits.head_timeout + limits.answer_timeout;
    let _ = tokio::time::timeout(longest, graceful.shutdown()).await;
    Ok(())
}

/// A connection reset before it was accepted, or file descriptors momentarily exhausted: keep
/// serving.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EMFILE)
}

impl Shared {
    async fn respond(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let request = match Request::new(&parts, !body.is_end_stream()) {
            Ok(r) => r,
            Err(why) => return Response::text(400, format!("{why}\n")).into_hyper(),
        };
        let Ok(slot) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return Response::text(503, "too many requests at once; retry\n").into_hyper();
        };
        let answer = Arc::clone(&self.answer);
        let cancel = request.cancel.clone();
        // The slot goes with the work: an answer that timed out still holds one until it ends,
        // so abandoned answers cannot pile up on the blocking pool; the work is told to stop.
        let work = tokio::task::spawn_blocking(move || {
            let response = answer(&request);
            drop(slot);
            response
        });
        let response = match tokio::time::timeout(self.limits.answer_timeout, work).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => Response::text(500, "the viewer failed to answer (a bug: see its output)\n"),
            Err(_) => {
                cancel.0.store(true, Ordering::Relaxed);
                Response::text(
                    503,
                    format!(
                        "no answer within {:.1} s: the request took too long; retry or ask for less\n",
                        self.limits.answer_timeout.as_secs_f64()
                    ),
                )
            }
        };
        response.into_hyper()
    }
}
