//! Redactions for snapshots: what differs from one machine, checkout or moment to the next is
//! replaced by a placeholder, so that a snapshot says only what the tool decided and how it
//! wrote it (in the spirit of nextest's `redact.rs`).
//!
//! Always redacted: run ids (`[RUN]`), commit ids (`[COMMIT]`, short ones `[SHORT]`), the
//! repository's checkout (`[REPO]`) and temporary directories (`[TMP]`). Each snapshot test adds
//! what else varies for it (a path of its own, durations, counts).

use std::path::Path;

use regex::Regex;

/// A list of replacements applied in order.
pub struct Redactions {
    literal: Vec<(String, String)>,
    patterns: Vec<(Regex, With)>,
}

/// What a match of a pattern becomes.
enum With {
    /// This text (`$1` and the like allowed).
    Text(String),
    /// The number matched, rounded (see [`round`]).
    Rounded,
}

impl Redactions {
    /// The redactions every snapshot needs (see the module docs).
    pub fn new() -> Redactions {
        let mut r = Redactions { literal: Vec::new(), patterns: Vec::new() };
        r = r.path(&crate::util::repo_root(), "[REPO]");
        // Temporary directories: `tempfile`'s `.tmpXXXXXX` under the system's temporary directory.
        let tmp = regex::escape(&std::env::temp_dir().display().to_string());
        r = r.pattern(&format!(r"{}/?\.tmp[A-Za-z0-9]{{6}}", tmp.trim_end_matches('/')), "[TMP]");
        r.pattern(r"\b\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{10}\b", "[RUN]")
            .pattern(r"\b[0-9a-f]{40}\b", "[COMMIT]")
            .pattern(r"\b[0-9a-f]{12}\b", "[SHORT]")
    }

    /// Replaces `path` (as displayed, and canonicalized when that differs) by `name`.
    pub fn path(mut self, path: &Path, name: &str) -> Redactions {
        let mut forms = vec![path.display().to_string()];
        if let Ok(canonical) = std::fs::canonicalize(path) {
            forms.push(canonical.display().to_string());
        }
        for form in forms {
            if !self.literal.iter().any(|(f, _)| *f == form) {
                self.literal.push((form, name.to_owned()));
            }
        }
        // Longest first, so that a path inside another is replaced before its parent.
        self.literal.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        self
    }

    /// Replaces every match of the regular expression `re` by `with` (`$1` and the like allowed).
    pub fn pattern(mut self, re: &str, with: &str) -> Redactions {
        let re = Regex::new(re).unwrap_or_else(|e| panic!("redaction {re}: {e}"));
        self.patterns.push((re, With::Text(with.to_owned())));
        self
    }

    /// Numbers with a fraction or an exponent, as JSON writes floating-point values, rounded to
    /// six significant digits: the last bits of a logarithm may differ between C libraries.
    pub fn rounded_floats(mut self) -> Redactions {
        let re = Regex::new(r"-?\d+\.\d+(?:[eE][-+]?\d+)?").expect("a valid pattern");
        self.patterns.push((re, With::Rounded));
        self
    }

    /// `text` with every redaction applied.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (from, to) in &self.literal {
            out = out.replace(from.as_str(), to);
        }
        for (re, with) in &self.patterns {
            out = match with {
                With::Text(with) => re.replace_all(&out, with.as_str()).into_owned(),
                With::Rounded => re.replace_all(&out, |c: &regex::Captures<'_>| round(&c[0])).into_owned(),
            };
        }
        out
    }
}

/// `text` (a decimal number) rounded to six significant digits, as Rust prints it shortest.
fn round(text: &str) -> String {
    let Ok(v) = text.parse::<f64>() else { return text.to_owned() };
    if v == 0.0 || !v.is_finite() {
        return text.to_owned();
    }
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    format!("{rounded:?}")
}

#[test]
fn redactions_replace_what_varies_and_keep_the_rest() {
    let r = Redactions::new().rounded_floats();
    let tmp = std::env::temp_dir().join(".tmpAb12Cd/store");
    let text = format!(
        "run 20261125T012042.113871Z-5be6d0a1c2 of {} ({}) in {} at {}: 0.30000000000000004, 1e-7, 12",
        "9dcc382e9f1a2b3c4d5e6f708192a3b4c5d6e7f8",
        "9dcc382e9f1a",
        tmp.display(),
        crate::util::repo_root().join("fixtures").display()
    );
    assert_eq!(
        r.apply(&text),
        "run [RUN] of [COMMIT] ([SHORT]) in [TMP]/store at [REPO]/fixtures: 0.3, 1e-7, 12"
    );
}
