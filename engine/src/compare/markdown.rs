//! The one escaping rule of the reports' Markdown (the PR comment, the job summary, the "why"
//! section): names go in code spans, which need no entities (GitHub shows `&lt;` in a code span
//! literally) but must survive backticks and, inside a table, pipes; plain text in a table cell
//! escapes what Markdown or HTML would take; HTML contexts (`<summary>`) take entities.

/// A code span holding `s` exactly: fenced with more backticks than `s` runs together, padded
/// with spaces when `s` starts or ends with a backtick.
pub fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || longest > 0 { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// [`code`] for a table cell: a pipe would end the cell even inside a code span.
pub fn code_cell(s: &str) -> String {
    code(&s.replace('|', "\\|"))
}

/// Plain text for a table cell or a list item: pipes, backticks, emphasis and HTML are escaped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '`' | '*' | '_' | '\\' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Text inside an HTML element (`<summary>`): entities, no Markdown.
pub fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "<serde_json::read::SliceRead as serde_json::read::Read>::peek";

    #[test]
    fn names_in_code_spans_are_not_entity_escaped() {
        assert_eq!(code(NAME), format!("`{NAME}`"));
        assert_eq!(code_cell("<a as b|c>::f"), "`<a as b\\|c>::f`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("user@host"), "`user@host`");
    }

    #[test]
    fn html_and_text_contexts_escape_what_they_must() {
        assert_eq!(html(NAME), "&lt;serde_json::read::SliceRead as serde_json::read::Read&gt;::peek");
        assert_eq!(text("a|b <c> `d`"), "a\\|b &lt;c&gt; \\`d\\`");
    }
}
