//! Workflow commands (`::warning file=F,line=N,title=T::message`), escaped as the runner expects.

use std::io::{self, Write};

/// One warning annotation. `file` is relative to the repository root (GitHub resolves it there);
/// without a file the warning shows on the job only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Path relative to the repository root, `/`-separated.
    pub file: Option<String>,
    /// 1-based line, with `file`.
    pub line: Option<u32>,
    /// Short title.
    pub title: String,
    /// The message (may hold several lines).
    pub message: String,
}

/// Escapes the message part of a workflow command.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value (`file=`, `title=`): also `:` and `,`, which delimit properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Writes one `::warning ...::...` line per annotation.
pub fn write_annotations(annotations: &[Annotation], mut out: impl Write) -> io::Result<()> {
    for a in annotations {
        let mut props = Vec::new();
        if let Some(file) = &a.file {
            props.push(format!("file={}", escape_property(file)));
            if let Some(line) = a.line {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!("title={}", escape_property(&a.title)));
        writeln!(out, "::warning {}::{}", props.join(","), escape_data(&a.message))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_message_are_escaped() {
        let a = Annotation {
            file: Some("src/a,b.rs".into()),
            line: Some(12),
            title: "cargo contprof: regression".into(),
            message: "cpu +50%\nq=1e-3".into(),
        };
        let mut out = Vec::new();
        write_annotations(&[a], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "::warning file=src/a%2Cb.rs,line=12,title=cargo contprof%3A regression::cpu +50%25%0Aq=1e-3\n"
        );
    }

    #[test]
    fn without_file_only_the_title_is_given() {
        let a = Annotation { file: None, line: Some(3), title: "t".into(), message: "m".into() };
        let mut out = Vec::new();
        write_annotations(&[a], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "::warning title=t::m\n");
    }
}
