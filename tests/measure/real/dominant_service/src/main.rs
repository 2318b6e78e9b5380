//! `dominant_service PORT ROUNDS`: an HTTP/1 service (hyper 1 and hyper-util on tokio's
//! multi-threaded runtime, from crates.io) on 127.0.0.1:PORT whose one endpoint, `GET /etag`,
//! hashes a deterministic 64 KiB buffer with sha2's SHA-256 `ROUNDS` times (each round hashes the
//! previous digest followed by the buffer) and answers the hex digest. The hashing holds most of
//! the service's CPU; raising `ROUNDS` from 2 to 3 is the regression `tests/measure/dominant_work.py`
//! looks for (+50% hashing per request).
//!
//! Each request runs in a `tracing` span (`request`, `endpoint = "/etag"`) which contprof's layer
//! labels and counts as one unit of work when it closes (`count_spans(["request"])`): under the
//! preloaded agent, each window carries the requests it served.
//!
//! On SIGTERM or SIGINT it stops accepting, lets open connections finish (up to 5 s) and returns
//! from `main`, so that the agent completes its window at exit. It then prints its own truth to
//! stderr: `dominant_service: requests=N hash_ns_per_request=M` (the thread CPU time spent in the
//! hashing loop, `CLOCK_THREAD_CPUTIME_ID`, over the requests served).

use std::convert::Infallible;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

/// Bytes hashed per round.
const BUFFER: usize = 64 * 1024;

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static HASH_NS: AtomicU64 = AtomicU64::new(0);

/// The buffer every request hashes: the same bytes in every process (a fixed xorshift sequence).
fn buffer() -> &'static [u8] {
    static BUF: OnceLock<Vec<u8>> = OnceLock::new();
    BUF.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..BUFFER)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// This thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The entity tag of the buffer: SHA-256 chained `rounds` times over it.
#[inline(never)]
fn etag(rounds: u32) -> String {
    let buf = buffer();
    let started = thread_cpu_ns();
    let mut digest = [0u8; 32];
    for _ in 0..rounds {
        let mut h = Sha256::new();
        h.update(digest);
        h.update(buf);
        digest.copy_from_slice(&h.finalize());
    }
    HASH_NS.fetch_add(thread_cpu_ns() - started, Ordering::Relaxed);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(req: Request<Incoming>, rounds: u32) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/etag" {
        let mut not_found = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return Ok(not_found);
    }
    let tag = etag(rounds);
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::from(tag + "\n"))))
}

async fn shutdown() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(rounds)) =
        (args.first().and_then(|p| p.parse::<u16>().ok()), args.get(1).and_then(|r| r.parse::<u32>().ok()))
    else {
        eprintln!("usage: dominant_service PORT ROUNDS");
        std::process::exit(2);
    };
    tracing_subscriber::registry()
        .with(contprof_tracing::ContprofLayer::new().count_spans(["request"]))
        .init();
    buffer();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let http = hyper::server::conn::http1::Builder::new();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = hyper::service::service_fn(move |req| {
                    handle(req, rounds).instrument(tracing::info_span!("request", endpoint = "/etag"))
                });
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        eprintln!("dominant_service: connections still open after 5 s");
    }
    let requests = REQUESTS.load(Ordering::Relaxed);
    let hash_ns = HASH_NS.load(Ordering::Relaxed);
    eprintln!(
        "dominant_service: requests={requests} hash_ns_per_request={:.0} rounds={rounds}",
        hash_ns as f64 / requests.max(1) as f64
    );
}
