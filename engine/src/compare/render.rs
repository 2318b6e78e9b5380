//! Human-readable reports: a plain terminal table and Markdown for a pull-request comment.
//!
//! Both are stable: no timestamps, deterministic order and rounding, so that an updated PR
//! comment diffs cleanly against the previous one.

use std::io::{self, Write};

use super::finding::{
    Breakdown, BreakdownFigure, BreakdownRow, Cause, CauseRole, Comparison, Finding, Outcome, Verdict,
};
use super::model::{Metric, RevisionInfo};

/// A value in the metric's unit, rounded for reading (reports and the "why" section), in the
/// units every table of the tool uses ([`crate::report::units`]).
pub fn amount(metric: Metric, v: f64) -> String {
    use crate::report::units::{format_bytes, format_count, format_duration};
    // `as` saturates: an f64 beyond i64 prints as the largest value.
    let v = v.round() as i64;
    match metric {
        Metric::Cpu | Metric::Delay | Metric::Wall => format_duration(v),
        Metric::AllocBytes | Metric::InuseBytes => format_bytes(v),
        Metric::AllocCount | Metric::Instructions | Metric::Contentions => format_count(v),
    }
}

/// A p value as the reports write it outside the tables of findings: `< 0.001` or `= 0.123`.
pub fn p_value(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_owned() } else { format!("= {p:.3}") }
}

fn percent(v: f64) -> String {
    format!("{:+.1}%", v * 100.0)
}

/// Change with its interval: `+25.3% [+18.1%, +33.0%]`.
fn change(f: &Finding) -> String {
    match (f.change, f.ci_low, f.ci_high) {
        (Some(c), Some(lo), Some(hi)) => format!("{} [{}, {}]", percent(c), percent(lo), percent(hi)),
        (Some(c), _, _) => percent(c),
        (None, _, _) => "new".to_owned(),
    }
}

/// The evidence column: the q value or the method, then the calls where they were counted
/// (`exact-threshold, calls 200 → 200`: the same calls each doing more).
fn evidence(f: &Finding, q: impl Fn(f64) -> String) -> String {
    let mut e = f.q.map_or_else(|| f.method.as_str().to_owned(), q);
    if let Some(c) = f.calls {
        let n = |v: f64| amount(Metric::AllocCount, v);
        e.push_str(&format!(", calls {} → {}", n(c.base), n(c.head)));
    }
    e
}

/// How many causes of `verdict` there are, and how many findings they group: what a headline
/// counts (one regression, one count, however many findings are its evidence).
fn counted(cmp: &Comparison, verdict: Verdict) -> (usize, usize) {
    let causes: Vec<&Cause> = cmp.causes.iter().filter(|c| c.verdict == verdict).collect();
    (causes.len(), causes.iter().map(|c| c.findings).sum())
}

/// `1 regression`, counted by cause.
fn count(cmp: &Comparison, verdict: Verdict, noun: &str) -> String {
    let (causes, _) = counted(cmp, verdict);
    format!("{causes} {noun}{}", plural(causes))
}

/// `; 22 findings` when the causes of `verdict` group more findings than there are causes.
fn findings_note(cmp: &Comparison, verdict: Verdict) -> String {
    let (causes, findings) = counted(cmp, verdict);
    if findings > causes { format!("{findings} findings; ") } else { String::new() }
}

fn headline(cmp: &Comparison) -> String {
    let s = &cmp.summary;
    match s.verdict {
        Outcome::Regression => format!(
            "{} found ({}{}) in {} compared target{}",
            count(cmp, Verdict::Regression, "regression"),
            findings_note(cmp, Verdict::Regression),
            count(cmp, Verdict::Improvement, "improvement"),
            s.groups_compared,
            plural(s.groups_compared)
        ),
        Outcome::PossibleRegression => format!(
            "{} (single runs: not conclusive), no confirmed regression",
            count(cmp, Verdict::PossibleRegression, "possible regression")
        ),
        Outcome::Improvement => {
            format!("No regression; {} found", count(cmp, Verdict::Improvement, "improvement"))
        }
        Outcome::Shifted => format!(
            "No regression; {} in code the diff did not change (not gated)",
            count(cmp, Verdict::Shifted, "shift")
        ),
        Outcome::Moved => format!(
            "No regression; {} whose cost moved within a caller that did not change as much (not gated)",
            count(cmp, Verdict::Moved, "function")
        ),
        Outcome::NothingCompared => "Nothing compared: no target has runs on both sides".to_owned(),
        Outcome::Unchanged => {
            let mut h = format!(
                "No regression beyond noise in {} target{}",
                s.groups_compared,
                plural(s.groups_compared)
            );
            if let Some(mde) = power_statement(cmp) {
                h.push_str(&format!(" ({mde})"));
            }
            h
        }
    }
}

/// What "no regression" is worth: the largest minimum detectable CPU change over the compared
/// groups at a 5% share, e.g. `no change >= 12% in functions >= 5% of CPU`. Instruction counts
/// are exact: their threshold is what could have been seen.
fn power_statement(cmp: &Comparison) -> Option<String> {
    let worst =
        cmp.power.iter().filter(|p| p.metric == Metric::Cpu).filter_map(|p| p.at(0.05)).reduce(f64::max);
    if let Some(worst) = worst {
        return Some(format!("could have seen changes >= {:.0}% in functions >= 5% of CPU", worst * 100.0));
    }
    let counted = cmp.findings.iter().any(|f| f.metric == Metric::Instructions);
    counted.then(|| {
        let threshold = cmp.settings.min_effect.get(&Metric::Instructions).copied().unwrap_or_default();
        format!("exact instruction counts: no function changed by >= {:.1}%", threshold * 100.0)
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn revision(r: &RevisionInfo) -> String {
    let short: String = r.commit.chars().take(12).collect();
    if r.label.is_empty() { short } else { format!("{short} ({})", r.label) }
}

/// The causes shown in the main tables, in order: regressions, improvements, possible ones.
fn listed(cmp: &Comparison) -> Vec<&Cause> {
    let mut rows = cmp.causes_of(Verdict::Regression);
    rows.extend(cmp.causes_of(Verdict::Improvement));
    rows.extend(cmp.causes_of(Verdict::PossibleRegression));
    rows.extend(cmp.causes_of(Verdict::PossibleImprovement));
    rows
}

/// A cause's row: its representative finding, with the other groups it was found in.
struct CauseRow<'a> {
    cause: &'a Cause,
    head: &'a Finding,
    members: Vec<&'a Finding>,
}

impl<'a> CauseRow<'a> {
    fn of(cmp: &'a Comparison, cause: &'a Cause) -> Option<CauseRow<'a>> {
        let members = cmp.members(cause);
        Some(CauseRow { cause, head: members.first().copied()?, members })
    }

    /// The group, or the first group and how many more the cause was found in.
    fn group(&self) -> String {
        match self.cause.groups.len() {
            0 | 1 => self.head.group.clone(),
            n => format!("{} (+{} more)", self.head.group, n - 1),
        }
    }

    /// The change, or its range when the cause was found in several groups.
    fn change(&self) -> String {
        match (self.cause.groups.len(), self.cause.change_min, self.cause.change_max) {
            (n, Some(lo), Some(hi)) if n > 1 && hi - lo > 5e-4 => {
                format!("{} to {}", percent(lo), percent(hi))
            }
            _ => change(self.head),
        }
    }

    /// Where a moved cause's cost moved, and what the other findings grouped under the cause are,
    /// in one line (`None` for neither).
    fn evidence(&self) -> Option<String> {
        let within = self.head.moved_within.as_ref().map(|w| format!("moved within {w}"));
        let grouped = self.grouped();
        match (within, grouped) {
            (Some(w), Some(g)) => Some(format!("{w}; {g}")),
            (w, g) => w.or(g),
        }
    }

    /// What the other findings grouped under the cause are (`None` for none).
    fn grouped(&self) -> Option<String> {
        if self.members.len() < 2 {
            return None;
        }
        let mut parts = Vec::new();
        let own = self.members.iter().filter(|f| f.cause_role == Some(CauseRole::Cause)).count();
        if own > 1 {
            parts.push(format!("its own change in {own} groups"));
        }
        for (role, what) in [
            (CauseRole::Total, "its total cost"),
            (CauseRole::CallerTotal, "callers' total cost"),
            (CauseRole::Inlined, "functions inlined into it"),
        ] {
            let of: Vec<&&Finding> = self.members.iter().filter(|f| f.cause_role == Some(role)).collect();
            if of.is_empty() {
                continue;
            }
            let mut names: Vec<&str> = of.iter().map(|f| f.function.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let shown: Vec<&str> = names.iter().take(3).copied().collect();
            let more = if names.len() > 3 { format!(", +{} more", names.len() - 3) } else { String::new() };
            let list = if role == CauseRole::Total {
                String::new()
            } else {
                format!(": {}{more}", shown.join(", "))
            };
            parts.push(format!("{} × {what}{list}", of.len()));
        }
        Some(format!("{} findings: {}", self.members.len(), parts.join("; ")))
    }
}

/// The verdict as a table shows it: an unexplained regression kept by `--strict` says so.
fn verdict_label(f: &Finding) -> String {
    let v = f.verdict.as_str().replace('_', " ");
    if f.explained == Some(false) && f.verdict != Verdict::Shifted { format!("{v} (unexplained)") } else { v }
}

/// What the moved section says about its rows.
const MOVED_NOTE: &str = "moved: their code changed, but a function on every call path to them did not change by as \
     much and code under it changed the other way: cost moved between functions (inlining, code generation), \
     the work around them stayed the same; not gated unless --strict";

/// What the shifted section says about its rows.
const SHIFTED_NOTE: &str = "shifted: beyond noise, but no code on these functions' call paths changed \
     (code layout, the machine or the input moved them); not gated unless --strict";

fn row(f: &Finding) -> [String; 8] {
    [
        verdict_label(f),
        f.function.clone(),
        f.group.clone(),
        format!("{} ({})", f.metric, f.kind),
        amount(f.metric, f.base),
        amount(f.metric, f.head),
        change(f),
        evidence(f, |q| format!("q={q:.2e}")),
    ]
}

const HEADER: [&str; 8] =
    ["verdict", "function", "group", "metric", "base", "head", "change [95% CI]", "evidence"];

/// One cause as a row of the text table.
fn cause_row(r: &CauseRow<'_>) -> [String; 8] {
    let mut cells = row(r.head);
    cells[2] = r.group();
    cells[6] = r.change();
    cells
}

/// Writes a plain-text table for a terminal: one row per cause, with a line under it saying what
/// the findings grouped under it are.
pub fn write_text(cmp: &Comparison, mut out: impl Write) -> io::Result<()> {
    writeln!(out, "{}", headline(cmp))?;
    writeln!(out, "base {}  head {}", revision(&cmp.base), revision(&cmp.head))?;
    let mut causes = listed(cmp);
    causes.extend(cmp.causes_of(Verdict::New));
    causes.extend(cmp.causes_of(Verdict::Vanished));
    let moved = cmp.causes_of(Verdict::Moved);
    causes.extend(moved.iter().copied());
    let shifted = cmp.causes_of(Verdict::Shifted);
    causes.extend(shifted.iter().copied());
    let causes: Vec<CauseRow<'_>> = causes.into_iter().filter_map(|c| CauseRow::of(cmp, c)).collect();
    let rows: Vec<[String; 8]> = causes.iter().map(cause_row).collect();
    if !rows.is_empty() {
        let header = HEADER.map(str::to_owned);
        let widths = column_widths(&header, &rows);
        writeln!(out)?;
        let line = |r: &[String; 8]| aligned(r, &widths);
        writeln!(out, "{}", line(&header))?;
        for (r, cause) in rows.iter().zip(&causes) {
            writeln!(out, "{}", line(r))?;
            if let Some(e) = cause.evidence() {
                writeln!(out, "{:w$}  ↳ {e}", "", w = widths[0])?;
            }
        }
    }
    if !moved.is_empty() {
        writeln!(out, "({MOVED_NOTE})")?;
    }
    if !shifted.is_empty() {
        writeln!(out, "({SHIFTED_NOTE})")?;
    }
    for b in &cmp.breakdowns {
        write_breakdown_text(&mut out, b)?;
    }
    for w in &cmp.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(t) = &cmp.timings {
        writeln!(out, "time: {}", t.describe())?;
    }
    Ok(())
}

/// Each column's width over `header` and `rows`, in characters.
fn column_widths<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> [usize; N] {
    let mut widths = [0usize; N];
    for r in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// A row of a plain-text table: its cells padded to `widths`, two spaces apart.
fn aligned<const N: usize>(row: &[String; N], widths: &[usize; N]) -> String {
    let cells: Vec<String> = row.iter().zip(widths).map(|(c, &w)| format!("{c:<w$}")).collect();
    cells.join("  ").trim_end().to_owned()
}

/// How the reports (and the viewer) name the samples without a breakdown's label.
pub const NO_SUCH_LABEL: &str = "(no such label)";

/// What a breakdown tests, as the reports (and the viewer) say it.
pub fn breakdown_tested(figure: BreakdownFigure) -> &'static str {
    match figure {
        BreakdownFigure::Share => "each value's share of each run tested",
        BreakdownFigure::Amount => "each value's amount per run tested",
    }
}

/// A breakdown row's change and test, as the reports (and the viewer) say them: `+25.0%` (`–`
/// without a base), and `p < 0.001, changed`, `p = 0.200, noise` or `too few runs`.
pub fn breakdown_verdict(r: &BreakdownRow) -> [String; 2] {
    let test = match (r.p, r.changed) {
        (Some(p), true) => format!("p {}, changed", p_value(p)),
        (Some(p), false) => format!("p {}, noise", p_value(p)),
        (None, _) => "too few runs".to_owned(),
    };
    [r.change.map_or_else(|| "–".to_owned(), percent), test]
}

/// A breakdown's title: `By sample label endpoint in bin:server (cpu; the share of each run
/// tested)`, with `key` and `group` as the caller quotes them.
fn breakdown_title(b: &Breakdown, key: &str, group: &str) -> String {
    format!("By sample label {key} in {group} ({}; {}; not gated)", b.metric, breakdown_tested(b.tested))
}

/// A breakdown row's cells after the value: base and head (median share and amount per run),
/// the change of the tested figure, and its p value with the verdict.
fn breakdown_cells(b: &Breakdown, r: &BreakdownRow) -> [String; 4] {
    let side = |share: f64, v: f64| format!("{:.1}% {}", share * 100.0, amount(b.metric, v));
    let [change, test] = breakdown_verdict(r);
    [side(r.base_share, r.base), side(r.head_share, r.head), change, test]
}

/// How a breakdown names a value: itself, or the samples without the label.
fn breakdown_value(r: &BreakdownRow) -> &str {
    r.value.as_deref().unwrap_or(NO_SUCH_LABEL)
}

/// A breakdown as a plain-text table.
fn write_breakdown_text(out: &mut impl Write, b: &Breakdown) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{}:", breakdown_title(b, &b.key, &b.group))?;
    let header = [b.key.clone(), "base".into(), "head".into(), "change".into(), String::new()];
    let rows: Vec<[String; 5]> = b
        .rows
        .iter()
        .map(|r| {
            let [base, head, change, p] = breakdown_cells(b, r);
            [breakdown_value(r).to_owned(), base, head, change, p]
        })
        .collect();
    let widths = column_widths(&header, &rows);
    for r in std::iter::once(&header).chain(&rows) {
        writeln!(out, "  {}", aligned(r, &widths))?;
    }
    if b.other_values > 0 {
        writeln!(out, "  ({} other value{} not listed)", b.other_values, plural(b.other_values))?;
    }
    Ok(())
}

/// A breakdown as a Markdown table.
fn write_breakdown_markdown(out: &mut impl Write, b: &Breakdown) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{}:", breakdown_title(b, &code_cell(&b.key), &code_cell(&b.group)))?;
    writeln!(out)?;
    writeln!(out, "| {} | base | head | change | test |", code_cell(&b.key))?;
    writeln!(out, "|---|---|---|---|---|")?;
    for r in &b.rows {
        let value = r.value.as_deref().map_or_else(|| NO_SUCH_LABEL.to_owned(), code_cell);
        let [base, head, change, p] = breakdown_cells(b, r);
        let change = if r.changed { format!("**{change}**") } else { change };
        writeln!(out, "| {value} | {base} | {head} | {change} | {p} |")?;
    }
    if b.other_values > 0 {
        writeln!(out)?;
        writeln!(out, "{} other value{} not listed.", b.other_values, plural(b.other_values))?;
    }
    Ok(())
}

use super::markdown::{code_cell, text as cell};

/// A cause's cells of a Markdown table, from the function to the evidence, with the closing `|`:
/// its representative finding's, with the groups and changes of all its own findings.
fn cause_cells(r: &CauseRow<'_>) -> String {
    let f = r.head;
    format!(
        "{} | {} | {} ({}) | {} | {} | {} | {} |",
        code_cell(&f.function),
        cell(&r.group()),
        f.metric,
        f.kind,
        amount(f.metric, f.base),
        amount(f.metric, f.head),
        r.change(),
        cell(&evidence(f, |q| format!("{q:.1e}")))
    )
}

/// Under a table of causes, the findings each groups (when any groups more than one), folded.
fn write_evidence(out: &mut impl Write, rows: &[CauseRow<'_>]) -> io::Result<()> {
    let grouped: Vec<&CauseRow<'_>> =
        rows.iter().filter(|r| r.members.len() > 1 || r.head.moved_within.is_some()).collect();
    if grouped.is_empty() {
        return Ok(());
    }
    let findings: usize = grouped.iter().map(|r| r.members.len()).sum();
    writeln!(out)?;
    writeln!(
        out,
        "<details><summary>Evidence: {findings} findings under {} of these causes</summary>",
        grouped.len()
    )?;
    writeln!(out)?;
    for r in grouped {
        writeln!(
            out,
            "- {} ({}): {}",
            code_cell(&r.cause.function),
            r.cause.metric,
            cell(&r.evidence().unwrap_or_default())
        )?;
        for f in &r.members {
            let role = f.cause_role.map_or("", CauseRole::as_str).replace('_', " ");
            writeln!(
                out,
                "  - {role}: {} in {} ({} {}): {} → {}, {}",
                code_cell(&f.function),
                cell(&f.group),
                f.metric,
                f.kind,
                amount(f.metric, f.base),
                amount(f.metric, f.head),
                change(f)
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "</details>")
}

/// Writes Markdown for a pull-request comment.
pub fn write_markdown(cmp: &Comparison, mut out: impl Write) -> io::Result<()> {
    let s = &cmp.summary;
    let icon = match s.verdict {
        Outcome::Regression => "🔴",
        Outcome::PossibleRegression => "🟠",
        Outcome::Improvement => "🟢",
        Outcome::Moved | Outcome::Shifted | Outcome::Unchanged | Outcome::NothingCompared => "⚪",
    };
    writeln!(out, "### {icon} cargo contprof: {}", headline(cmp))?;
    writeln!(out)?;
    writeln!(
        out,
        "Compared {} (base) with {} (head).",
        code_cell(&revision(&cmp.base)),
        code_cell(&revision(&cmp.head))
    )?;
    let rows: Vec<CauseRow<'_>> = listed(cmp).into_iter().filter_map(|c| CauseRow::of(cmp, c)).collect();
    if !rows.is_empty() {
        writeln!(out)?;
        writeln!(out, "| | function | group | metric | base | head | change [95% CI] | q |")?;
        writeln!(out, "|---|---|---|---|---|---|---|---|")?;
        for r in &rows {
            let f = r.head;
            let mark = match (f.verdict, f.explained == Some(false)) {
                (Verdict::Regression, false) => "🔴 regression",
                (Verdict::Regression, true) => "🔴 regression (unexplained)",
                (Verdict::Improvement, _) => "🟢 improvement",
                (Verdict::PossibleRegression, _) => "🟠 possible regression",
                _ => "🔵 possible improvement",
            };
            writeln!(out, "| {mark} | {}", cause_cells(r))?;
        }
        write_evidence(&mut out, &rows)?;
    }
    for b in &cmp.breakdowns {
        write_breakdown_markdown(&mut out, b)?;
    }
    for (verdict, note) in [(Verdict::Moved, MOVED_NOTE), (Verdict::Shifted, SHIFTED_NOTE)] {
        let rows: Vec<CauseRow<'_>> =
            cmp.causes_of(verdict).into_iter().filter_map(|c| CauseRow::of(cmp, c)).collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(out)?;
        writeln!(out, "<details><summary>{} {} (not gated)</summary>", rows.len(), verdict.as_str())?;
        writeln!(out)?;
        writeln!(out, "{}.", cell(note))?;
        writeln!(out)?;
        writeln!(out, "| function | group | metric | base | head | change [95% CI] | q |")?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
        for r in &rows {
            writeln!(out, "| {}", cause_cells(r))?;
        }
        write_evidence(&mut out, &rows)?;
        writeln!(out)?;
        writeln!(out, "</details>")?;
    }
    let presence: Vec<&Finding> = cmp
        .causes_of(Verdict::New)
        .into_iter()
        .chain(cmp.causes_of(Verdict::Vanished))
        .filter_map(|c| cmp.members(c).first().copied())
        .collect();
    let inherited = cmp.inherited();
    writeln!(out)?;
    writeln!(out, "<details><summary>Details</summary>")?;
    writeln!(out)?;
    if !presence.is_empty() {
        writeln!(out, "New and vanished functions (by cost):")?;
        writeln!(out)?;
        writeln!(out, "| | function | group | metric | base | head | share |")?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
        for f in presence {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1}% → {:.1}% |",
                f.verdict.as_str(),
                code_cell(&f.function),
                cell(&f.group),
                f.metric,
                amount(f.metric, f.base),
                amount(f.metric, f.head),
                f.base_share * 100.0,
                f.head_share * 100.0
            )?;
        }
        writeln!(out)?;
    }
    if !inherited.is_empty() {
        writeln!(out, "Total-cost changes accounted for by the self-cost changes above:")?;
        writeln!(out)?;
        for f in inherited {
            writeln!(
                out,
                "- {} in {} ({}): {}",
                code_cell(&f.function),
                cell(&f.group),
                f.metric,
                change(f)
            )?;
        }
        writeln!(out)?;
    }
    if !cmp.warnings.is_empty() {
        writeln!(out, "Warnings:")?;
        writeln!(out)?;
        for w in &cmp.warnings {
            writeln!(out, "- {}", cell(&w.to_string()))?;
        }
        writeln!(out)?;
    }
    let set = &cmp.settings;
    writeln!(
        out,
        "{} targets compared, {} tests, {} findings below the floor not tested. \
         Significant: Benjamini–Hochberg q ≤ {} and change ≥ the minimum effect ({}); \
         floor {:.1}% of the target and {} samples per run; confidence {:.0}%.",
        s.groups_compared,
        s.tests,
        s.below_floor,
        set.alpha,
        // 5% and 0.5% alike: to a tenth of a percent, without trailing zeros.
        set.min_effect
            .iter()
            .map(|(m, e)| format!("{m} {}%", (e * 1000.0).round() / 10.0))
            .collect::<Vec<_>>()
            .join(", "),
        set.floor_share * 100.0,
        set.min_samples,
        set.confidence * 100.0
    )?;
    if !set.ignore.is_empty() {
        writeln!(out)?;
        let patterns: Vec<String> = set.ignore.iter().map(|p| code_cell(p)).collect();
        writeln!(out, "Ignored functions: {}.", patterns.join(", "))?;
    }
    writeln!(out)?;
    for (name, r) in [("base", &cmp.base), ("head", &cmp.head)] {
        let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{}: {}", cell(k), cell(v))).collect();
        let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
        writeln!(out, "- {name}: {}{extra}", code_cell(&revision(r)))?;
    }
    writeln!(out)?;
    writeln!(out, "</details>")?;
    if let Some(t) = &cmp.timings {
        writeln!(out)?;
        writeln!(out, "Time: {}.", cell(&t.describe()))?;
    }
    Ok(())
}
