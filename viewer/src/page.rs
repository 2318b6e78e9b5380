//! The view page: one HTML document with the stylesheet, the script and the view's data (JSON)
//! inlined, so that a report opens without network access and the server and the report share
//! every byte of the view.

use std::io::Write;

use serde::Serialize;

use super::ViewerError;
use super::tree::{FlameTree, TreeJson};
use contprof_engine::compare::{Comparison, Finding, Power, Verdict};
use contprof_engine::profile::Profile;

const TEMPLATE: &str = include_str!("assets/view.html");
/// The viewer's styles, for every page it writes.
pub(crate) const CSS: &str = include_str!("assets/viewer.css");
const JS: &str = include_str!("assets/viewer.js");

/// What a view shows.
#[derive(Debug, Clone, Copy)]
pub enum ReportView<'a> {
    /// The profiles merged (values summed): flame graph and top-functions table.
    Profile {
        /// The profiles to merge.
        profiles: &'a [Profile],
    },
    /// Base against head: differential flame graph (per-run averages), top table with changes
    /// and, when given, the regression table of a comparison.
    Compare {
        /// Base profiles (merged, averaged per profile).
        base: &'a [Profile],
        /// Head profiles.
        head: &'a [Profile],
        /// The statistical comparison whose findings are listed.
        comparison: Option<&'a Comparison>,
    },
}

/// Input of [`write_report`]: one view and what to call it.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// Page title, e.g. `bin/cpu_split at 1a2b3c4`.
    pub title: String,
    /// Lines shown under the title (runs, commits, branches, hosts).
    pub details: Vec<String>,
    /// The view.
    pub view: ReportView<'a>,
    /// Link back to the run list (set by the server; `None` in a report file).
    pub home: Option<String>,
    /// What the home link is called (`runs` when `None`).
    pub home_label: Option<String>,
    /// Markup shown between the header and the flame graph (the production section's filters,
    /// breakdown and timeline). Built by the viewer, every text in it escaped: never user input.
    pub prelude: String,
    /// What one profile of a side stands for, and how many each side's profiles stand for, when
    /// that is not one run per profile (production windows merged into one profile per side):
    /// the differential flame graph compares per-window averages.
    pub averaged_over: Option<(&'static str, [usize; 2])>,
}

impl<'a> ReportInput<'a> {
    /// A profile view of `profiles` merged.
    pub fn profile(title: impl Into<String>, profiles: &'a [Profile]) -> Self {
        ReportInput {
            title: title.into(),
            details: Vec::new(),
            view: ReportView::Profile { profiles },
            home: None,
            home_label: None,
            prelude: String::new(),
            averaged_over: None,
        }
    }

    /// A compare view of `base` against `head`.
    pub fn compare(
        title: impl Into<String>,
        base: &'a [Profile],
        head: &'a [Profile],
        comparison: Option<&'a Comparison>,
    ) -> Self {
        ReportInput {
            title: title.into(),
            details: Vec::new(),
            view: ReportView::Compare { base, head, comparison },
            home: None,
            home_label: None,
            prelude: String::new(),
            averaged_over: None,
        }
    }

    /// Adds lines shown under the title.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

/// The aggregated tree of `input`, with its per-side counts when they are not per profile.
fn tree_of(input: &ReportInput<'_>) -> FlameTree {
    let mut tree = build_tree(&input.view);
    if let Some((_, counts)) = input.averaged_over {
        for (side, n) in tree.profiles.iter_mut().zip(counts) {
            *side = n;
        }
    }
    tree
}

/// The data of a view as the page's script reads it.
#[derive(Debug, Serialize)]
struct ViewJson<'a> {
    kind: &'static str,
    title: &'a str,
    details: &'a [String],
    home: Option<&'a str>,
    home_label: Option<&'a str>,
    /// What the differential flame graph averages over: `run` or `window`.
    per: &'a str,
    default_type: String,
    tree: TreeJson<'a>,
    /// The comparison's findings to show, `null` when the view has no comparison.
    findings: Option<Vec<&'a Finding>>,
    /// Per group and sampled metric, the spread the comparison used and the smallest change it
    /// could have seen (what "no regression" is worth); `null` without a comparison.
    power: Option<&'a [Power]>,
}

/// The aggregated tree of a view.
pub(crate) fn build_tree(view: &ReportView<'_>) -> FlameTree {
    match view {
        ReportView::Profile { profiles } => {
            let mut t = FlameTree::new(1);
            profiles.iter().for_each(|p| t.add(0, p));
            t
        }
        ReportView::Compare { base, head, .. } => {
            let mut t = FlameTree::new(2);
            base.iter().for_each(|p| t.add(0, p));
            head.iter().for_each(|p| t.add(1, p));
            t
        }
    }
}

/// The sample type a view opens with: CPU time when recorded, else the first recorded.
fn default_type(tree: &FlameTree) -> String {
    let recorded = |ty: &str| {
        tree.sample_types
            .iter()
            .position(|(t, _)| t == ty)
            .is_some_and(|c| tree.self_values.iter().any(|side| side[c].iter().any(|&v| v != 0)))
    };
    ["cpu", "cpu_per_iter", "samples", "alloc_space", "alloc_objects", "inuse_space"]
        .into_iter()
        .find(|t| recorded(t))
        .map_or_else(String::new, str::to_owned)
}

/// Writes the view's data as JSON (what the page embeds and the server's `format=json` returns).
pub fn write_json(mut out: impl Write, input: &ReportInput<'_>) -> Result<(), ViewerError> {
    let tree = tree_of(input);
    write_json_of(&mut out, input, &tree)
}

fn write_json_of(out: &mut impl Write, input: &ReportInput<'_>, tree: &FlameTree) -> Result<(), ViewerError> {
    let findings = match input.view {
        ReportView::Compare { comparison: Some(c), .. } => {
            let mut f: Vec<&Finding> =
                c.findings.iter().filter(|f| f.verdict != Verdict::Unchanged && !f.inherited).collect();
            // What a reviewer acts on first: regressions, then shifts (changes the diff does not
            // explain), then the rest; the largest change first within each.
            let rank = |v: Verdict| match v {
                Verdict::Regression => 0,
                Verdict::PossibleRegression => 1,
                Verdict::Shifted | Verdict::Moved => 2,
                Verdict::New => 3,
                Verdict::Improvement => 4,
                Verdict::PossibleImprovement => 5,
                Verdict::Vanished => 6,
                Verdict::Inconclusive | Verdict::Unchanged => 7,
            };
            f.sort_by(|a, b| {
                let mag = |f: &Finding| f.change.map_or(f64::INFINITY, f64::abs);
                rank(a.verdict).cmp(&rank(b.verdict)).then(mag(b).total_cmp(&mag(a)))
            });
            Some(f)
        }
        _ => None,
    };
    let power = match input.view {
        ReportView::Compare { comparison: Some(c), .. } => Some(&c.power[..]),
        _ => None,
    };
    let data = ViewJson {
        kind: match input.view {
            ReportView::Profile { .. } => "profile",
            ReportView::Compare { .. } => "compare",
        },
        title: &input.title,
        details: &input.details,
        home: input.home.as_deref(),
        home_label: input.home_label.as_deref(),
        per: input.averaged_over.map_or("run", |(noun, _)| noun),
        default_type: default_type(tree),
        tree: tree.to_json(),
        findings,
        power,
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 16, ScriptSafe(out));
    serde_json::to_writer(&mut w, &data).map_err(ViewerError::Json)?;
    w.flush()?;
    Ok(())
}

/// Writes one self-contained HTML page of a view: data embedded as JSON, script and styles
/// inlined, nothing loaded from the network.
pub fn write_report(mut out: impl Write, input: &ReportInput<'_>) -> Result<(), ViewerError> {
    let tree = tree_of(input);
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { break };
        out.write_all(&rest.as_bytes()[..start])?;
        match &rest[start + 2..start + len] {
            "TITLE" => out.write_all(html_escape(&input.title).as_bytes())?,
            "CSS" => out.write_all(CSS.as_bytes())?,
            "JS" => out.write_all(JS.as_bytes())?,
            "DATA" => write_json_of(&mut out, input, &tree)?,
            "PRELUDE" => out.write_all(input.prelude.as_bytes())?,
            other => out.write_all(format!("{{{{{other}}}}}").as_bytes())?,
        }
        rest = &rest[start + len + 2..];
    }
    out.write_all(rest.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A form's hidden `<input>` carrying `name=value` (the value escaped): a selection kept across a
/// form that adds to it.
pub(crate) fn hidden_input(name: &str, value: &str) -> String {
    format!(r#"<input type="hidden" name="{name}" value="{}">"#, html_escape(value))
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A writer that escapes `<` as `\u003c`, so JSON inside `<script>` cannot close the element
/// (in JSON `<` only occurs inside strings, where the escape means the same character).
struct ScriptSafe<W>(W);

impl<W: Write> Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'<') {
            self.0.write_all(&rest[..i])?;
            self.0.write_all(b"\\u003c")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
