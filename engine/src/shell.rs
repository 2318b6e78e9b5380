//! Status output on stderr, in cargo's style (`   Profiling foo (run 1/3)`), so that progress reads
//! like the rest of a cargo session. Colour follows the terminal and `CARGO_TERM_COLOR`/`NO_COLOR`
//! (anstream). Workload output goes straight to the terminal and is never captured here.

use std::io::Write;

use anstyle::{AnsiColor, Style};

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Status lines and warnings.
    #[default]
    Normal,
    /// Also notes and the commands being run.
    Verbose,
}

/// Where status lines go.
#[derive(Debug, Default)]
pub struct Shell {
    verbosity: Verbosity,
}

const STATUS: Style = AnsiColor::Green.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();
const NOTE: Style = AnsiColor::Cyan.on_default().bold();

impl Shell {
    /// A shell printing at `verbosity`.
    pub fn new(verbosity: Verbosity) -> Self {
        Self { verbosity }
    }

    /// The verbosity.
    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// `   Verb message`, verb right-aligned to 12 columns as cargo does.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if self.verbosity != Verbosity::Quiet {
            let mut err = anstream::stderr().lock();
            let _ = writeln!(err, "{STATUS}{verb:>12}{STATUS:#} {message}");
        }
    }

    /// `warning: message`.
    pub fn warn(&self, message: impl std::fmt::Display) {
        if self.verbosity != Verbosity::Quiet {
            let mut err = anstream::stderr().lock();
            let _ = writeln!(err, "{WARNING}warning{WARNING:#}: {message}");
        }
    }

    /// `note: message`, only when verbose.
    pub fn note(&self, message: impl std::fmt::Display) {
        if self.verbosity == Verbosity::Verbose {
            let mut err = anstream::stderr().lock();
            let _ = writeln!(err, "{NOTE}note{NOTE:#}: {message}");
        }
    }
}
