//! The uploader's messages. The uploader shares the service's standard error, which the service
//! may have pointed at a full disk, a closed pipe or nothing at all: a message must never fail
//! the uploader (`eprintln!` panics on a write error), and must never flood the service's log.
//!
//! - Each kind of message is written at most once per [`QUIET_FOR`], with a count of the ones
//!   held back since.
//! - A write that fails turns the messages off for good: the destination is gone.
//! - With `--log FILE` (`CONTPROF_LOG`), messages are appended to that file, each with its time,
//!   instead of standard error.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The same kind of message is written at most this often.
pub const QUIET_FOR: Duration = Duration::from_secs(600);

/// Where messages go, and how often.
pub struct Log {
    last: HashMap<&'static str, (Instant, u64)>,
    /// `None` once a write failed.
    sink: Option<Box<dyn Write + Send>>,
    /// Prefix each line with the time (a log file; standard error has the service's own order).
    timed: bool,
}

impl Log {
    /// Messages to `file` (appended to, created private), or to standard error without one. A
    /// file that cannot be opened is said on standard error, which is used instead.
    pub fn open(file: Option<&Path>) -> Log {
        let Some(path) = file else { return Log::to(Box::new(std::io::stderr()), false) };
        let opened = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
        };
        match opened {
            Ok(f) => Log::to(Box::new(f), true),
            Err(e) => {
                let mut log = Log::to(Box::new(std::io::stderr()), false);
                log.say("log", &format!("cannot open the log file {}: {e}; writing here", path.display()));
                log
            }
        }
    }

    /// Messages to `sink`, with their time when `timed`.
    pub fn to(sink: Box<dyn Write + Send>, timed: bool) -> Log {
        Log { last: HashMap::new(), sink: Some(sink), timed }
    }

    /// Writes `message` unless one of the same `kind` was written less than [`QUIET_FOR`] ago.
    pub fn say(&mut self, kind: &'static str, message: &str) {
        let now = Instant::now();
        let more = match self.last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < QUIET_FOR => {
                *held += 1;
                return;
            }
            Some((at, held)) => {
                let more = *held;
                (*at, *held) = (now, 0);
                more
            }
            None => {
                self.last.insert(kind, (now, 0));
                0
            }
        };
        let mut line = String::new();
        if self.timed {
            line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            line.push(' ');
        }
        line.push_str("contprof agent: ");
        line.push_str(message);
        if more > 0 {
            line.push_str(&format!(" ({more} more like it since)"));
        }
        line.push('\n');
        self.write(&line);
    }

    /// Writes a message every time (events that happen once: the end of the service).
    pub fn always(&mut self, message: &str) {
        self.last.remove("always");
        self.say("always", message);
    }

    fn write(&mut self, line: &str) {
        let Some(sink) = self.sink.as_mut() else { return };
        if sink.write_all(line.as_bytes()).and_then(|()| sink.flush()).is_err() {
            self.sink = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that records what it got, and fails every write once told to.
    #[derive(Clone, Default)]
    struct Sink {
        got: Arc<Mutex<(String, bool, usize)>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut g = self.got.lock().unwrap();
            g.2 += 1;
            if g.1 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            g.0.push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_kind_is_said_once_per_quiet_period_and_a_failed_sink_is_dropped() {
        let sink = Sink::default();
        let mut log = Log::to(Box::new(sink.clone()), false);
        log.say("upload", "upload failed");
        log.say("upload", "upload failed again");
        log.say("store", "the store is unreachable");
        assert_eq!(
            sink.got.lock().unwrap().0,
            "contprof agent: upload failed\ncontprof agent: the store is unreachable\n"
        );
        sink.got.lock().unwrap().1 = true;
        log.always("the service ended");
        log.always("the service ended twice");
        assert_eq!(sink.got.lock().unwrap().2, 3, "no write after the one that failed");
    }

    #[test]
    fn messages_to_a_full_device_or_a_closed_pipe_do_not_panic() {
        let mut full =
            Log::to(Box::new(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()), true);
        full.say("a", "no room");
        full.always("still no room");
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: closing the read end we made; the write end is owned by the `File` below.
        let write_end = unsafe {
            libc::close(fds[0]);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
        };
        let mut closed = Log::to(Box::new(write_end), false);
        closed.say("a", "nobody reads");
        closed.always("still nobody");
    }

    #[test]
    fn a_log_file_gets_timed_lines_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploader.log");
        let mut log = Log::open(Some(&path));
        log.say("a", "hello");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" contprof agent: hello\n") && text.starts_with("20"), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
