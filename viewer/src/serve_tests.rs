//! Tests of the server's limits over real sockets: the head's time and size, methods and bodies,
//! the answer's time, answers in progress, idle connections and stopping. Answers that must be
//! slow wait on a [`Gate`] the test opens, so nothing here depends on how fast the machine is;
//! the timeouts are shortened through [`ServeOptions`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{Answer, MAX_HEAD, MAX_IN_FLIGHT, Request, Response};
use super::{ServeOptions, Server, ViewerError};
use contprof_engine::store::StoreLocation;

/// Longer than any timeout a test sets: a client still waiting then has not been answered.
const CLIENT_PATIENCE: Duration = Duration::from_secs(10);

/// A server answering on a thread of its own.
struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), ViewerError>>,
    _store: tempfile::TempDir,
}

/// Starts a server over an empty store with `tune` applied to its options, answering with
/// `answer`, or with the viewer's own routes when `None`.
fn start(tune: impl FnOnce(&mut ServeOptions), answer: Option<Answer>) -> Running {
    let store = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(StoreLocation::Dir(store.path().to_path_buf()));
    opts.bind = "127.0.0.1:0".parse().unwrap();
    tune(&mut opts);
    let server = Server::bind(opts).unwrap();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || match answer {
        Some(answer) => server.run_answering(&flag, answer),
        None => server.run_until(&flag),
    });
    Running { addr, stop, thread, _store: store }
}

impl Running {
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(CLIENT_PATIENCE)).unwrap();
        s
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    fn ask(&self, request: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap();
    }
}

/// Answers that wait until the test opens the gate, counting those that came in.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    fn answer(self: &Arc<Self>) -> Option<Answer> {
        let gate = Arc::clone(self);
        Some(Arc::new(move |_: &Request| {
            let mut state = gate.state.lock().unwrap();
            state.0 += 1;
            gate.changed.notify_all();
            while !state.1 {
                state = gate.changed.wait(state).unwrap();
            }
            Response::text(200, "done\n")
        }))
    }

    /// Waits until `n` answers are waiting.
    fn wait_for(&self, n: usize) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self.changed.wait_timeout_while(state, CLIENT_PATIENCE, |s| s.0 < n).unwrap();
        assert!(!timeout.timed_out(), "only {} of {n} answers started", state.0);
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// Whether the server closed the connection (rather than the client giving up waiting).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn a_client_that_stalls_in_its_head_is_cut_off_after_the_head_timeout() {
    let server = start(|o| o.head_timeout = Duration::from_millis(300), None);
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();
    let asked = Instant::now();
    assert!(closed_by_server(&mut s), "still open after {:?}", asked.elapsed());
    server.stop();
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_head_timeout() {
    let answer: Answer = Arc::new(|_: &Request| Response::text(200, "hello\n"));
    let server = start(|o| o.head_timeout = Duration::from_millis(300), Some(answer));
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut first = [0; 4096];
    let n = s.read(&mut first).unwrap();
    let first = String::from_utf8_lossy(&first[..n]);
    assert!(first.starts_with("HTTP/1.1 200 ") && first.ends_with("hello\n"), "{first}");
    assert!(!first.to_ascii_lowercase().contains("connection: close"), "kept alive: {first}");
    assert!(closed_by_server(&mut s), "the idle connection stayed open");
    server.stop();
}

#[test]
fn a_head_up_to_the_limit_is_answered_and_one_at_it_refused() {
    let server = start(|_| {}, None);
    let head = |size: usize| {
        let mut h = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: ".to_vec();
        h.resize(size - 4, b'a');
        h.extend(b"\r\n\r\n");
        h
    };
    let fits = server.ask(&head(MAX_HEAD - 1024));
    assert!(fits.starts_with("HTTP/1.1 200 "), "{}", &fits[..fits.len().min(200)]);
    // Exactly MAX_HEAD bytes and no end of head yet: hyper has read all of it when it refuses, so
    // the answer is not lost to a reset.
    let mut over = head(MAX_HEAD + 4);
    over.truncate(MAX_HEAD);
    let refused = server.ask(&over);
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused}");
    server.stop();
}

#[test]
fn other_methods_get_405_naming_get_and_head_with_the_security_headers() {
    let server = start(|_| {}, None);
    let post =
        server.ask(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
    assert!(post.contains("\r\nContent-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "));
    assert!(post.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{post}");
    let get = server.ask(GET);
    assert!(get.starts_with("HTTP/1.1 200 ") && !get.contains("Allow:"), "{get}");
    server.stop();
}

#[test]
fn a_request_with_a_body_is_refused_unread() {
    let server = start(|_| {}, None);
    let sized = server
        .ask(b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert!(sized.starts_with("HTTP/1.1 413 ") && sized.contains("no request body"), "{sized}");
    let chunked = server.ask(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 413 "), "{chunked}");
    server.stop();
}

#[test]
fn an_answer_past_the_answer_timeout_gets_503_saying_so() {
    let gate = Arc::new(Gate::default());
    let server = start(|o| o.answer_timeout = Duration::from_millis(200), gate.answer());
    let slow = server.ask(GET);
    assert!(slow.starts_with("HTTP/1.1 503 ") && slow.contains("no answer within 0.2 s"), "{slow}");
    assert!(slow.contains("\r\nContent-Security-Policy: "), "{slow}");
    gate.open();
    server.stop();
}

#[test]
fn the_request_beyond_max_in_flight_gets_503_at_once() {
    let gate = Arc::new(Gate::default());
    let server = start(|_| {}, gate.answer());
    let waiting: Vec<TcpStream> = (0..MAX_IN_FLIGHT)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(GET).unwrap();
            s
        })
        .collect();
    gate.wait_for(MAX_IN_FLIGHT);
    let beyond = server.ask(GET);
    assert!(beyond.starts_with("HTTP/1.1 503 ") && beyond.contains("too many requests at once"), "{beyond}");
    gate.open();
    for mut s in waiting {
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    }
    server.stop();
}

#[test]
fn stop_lets_the_request_in_flight_finish_then_run_until_returns() {
    let gate = Arc::new(Gate::default());
    let server = start(|_| {}, gate.answer());
    let mut s = server.connect();
    s.write_all(GET).unwrap();
    gate.wait_for(1);
    server.stop.store(true, Ordering::Relaxed);
    // Once new connections are refused, the server has seen the stop.
    let asked = Instant::now();
    while TcpStream::connect(server.addr).is_ok() {
        assert!(asked.elapsed() < CLIENT_PATIENCE, "still accepting after the stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!server.thread.is_finished(), "run_until returned with a request in flight");
    gate.open();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 ") && out.ends_with("done\n"), "{out}");
    server.thread.join().unwrap().unwrap();
}

#[test]
fn an_answer_that_panics_gets_500_and_the_server_goes_on() {
    let answer: Answer = Arc::new(|r: &Request| {
        assert!(r.path != "/panic", "a bug in a route");
        Response::text(200, "fine\n")
    });
    let server = start(|_| {}, Some(answer));
    let failed = server.ask(b"GET /panic HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(failed.starts_with("HTTP/1.1 500 "), "{failed}");
    let next = server.ask(GET);
    assert!(next.starts_with("HTTP/1.1 200 ") && next.ends_with("fine\n"), "{next}");
    server.stop();
}
