//! The lines the uploader and the agent exchange over the pipe between them, one message per
//! line: the uploader asks ([`ToAgent`]), the agent answers each window ([`FromAgent`]).
//!
//! A line that does not parse is skipped by its reader (a newer peer's message), never an error:
//! the two processes come from the same build, but the channel must not break a service.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What the uploader asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    /// Create the next window's file ahead of the window in this (the uploader's spool)
    /// directory, so that a window can be recorded when the service has used up its descriptors.
    Spool(PathBuf),
    /// Stop profiling between windows until [`ToAgent::Resume`] (the store said so).
    Pause,
    /// Profile again.
    Resume,
    /// Record a window of `length` into the raw file `path` (in the spool directory).
    Window {
        /// How long.
        length: Duration,
        /// The raw file.
        path: PathBuf,
    },
}

impl ToAgent {
    /// The message, parsed; `None` for a line that is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "spool" if !rest.is_empty() => Some(ToAgent::Spool(rest.into())),
            "pause" if rest.is_empty() => Some(ToAgent::Pause),
            "resume" if rest.is_empty() => Some(ToAgent::Resume),
            "window" => {
                let (ms, path) = rest.split_once(' ')?;
                let ms: u64 = ms.parse().ok()?;
                (!path.is_empty())
                    .then(|| ToAgent::Window { length: Duration::from_millis(ms), path: path.into() })
            }
            _ => None,
        }
    }
}

/// The line, newline included: the window's length in whole milliseconds, a path as it is
/// (paths with a newline cannot be sent; the uploader's own spool paths have none).
impl fmt::Display for ToAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToAgent::Spool(dir) => writeln!(f, "spool {}", dir.display()),
            ToAgent::Pause => writeln!(f, "pause"),
            ToAgent::Resume => writeln!(f, "resume"),
            ToAgent::Window { length, path } => {
                writeln!(f, "window {} {}", length.as_millis(), path.display())
            }
        }
    }
}

/// What the agent answers a [`ToAgent::Window`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromAgent {
    /// The window is in its file, complete.
    Done(PathBuf),
    /// The window could not be recorded, and why (one line).
    Failed {
        /// The window's file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl FromAgent {
    /// The message, parsed; `None` for a line that is not one. A path holds no space (the
    /// uploader names its windows).
    pub fn parse(line: &str) -> Option<Self> {
        if let Some(path) = line.strip_prefix("done ") {
            return Some(FromAgent::Done(path.into()));
        }
        let rest = line.strip_prefix("failed ")?;
        let (path, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(FromAgent::Failed { path: path.into(), reason: reason.to_owned() })
    }
}

/// The line, newline included; a reason's own line breaks become spaces.
impl fmt::Display for FromAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromAgent::Done(path) => writeln!(f, "done {}", path.display()),
            FromAgent::Failed { path, reason } => {
                writeln!(f, "failed {} {}", path.display(), reason.replace('\n', " "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_itself() {
        for r in [
            ToAgent::Spool("/tmp/contprof-spool-1-0a0b0c0d".into()),
            ToAgent::Pause,
            ToAgent::Resume,
            ToAgent::Window { length: Duration::from_millis(10_000), path: "/tmp/s/w 1.raw".into() },
        ] {
            let line = r.to_string();
            assert_eq!(ToAgent::parse(line.strip_suffix('\n').unwrap()), Some(r));
        }
        for r in [
            FromAgent::Done("/tmp/s/w-1.raw".into()),
            FromAgent::Failed {
                path: "/tmp/s/w-1.raw".into(),
                reason: "cannot create the sample file: EMFILE".into(),
            },
        ] {
            let line = r.to_string();
            assert_eq!(FromAgent::parse(line.strip_suffix('\n').unwrap()), Some(r));
        }
    }

    #[test]
    fn other_lines_are_not_messages() {
        for line in ["", "window", "window 10", "window ten /x", "pause now", "spool", "hello"] {
            assert_eq!(ToAgent::parse(line), None, "{line:?}");
        }
        assert_eq!(FromAgent::parse("finished /x"), None);
    }

    #[test]
    fn a_reason_stays_on_its_line() {
        let r = FromAgent::Failed { path: "/x".into(), reason: "two\nlines".into() };
        assert_eq!(r.to_string(), "failed /x two lines\n");
    }
}
