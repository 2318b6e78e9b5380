//! The versioned JSON report (`--format json`), the contract CI and other tools read.
//!
//! ```json
//! {"version": 2, "base": {...}, "head": {...}, "settings": {...},
//!  "regressions": [...], "improvements": [...], "shifted": [...], "moved": [...], "possible": [...],
//!  "new": [...], "vanished": [...], "inherited": [...], "warnings": [...], "groups": [...], "summary": {...},
//!  "timings": {...}}
//! ```
//! Each entry of the lists is a [`Finding`]: `group`, `function`, `metric`, `kind`, `base`, `head`,
//! `base_share`, `head_share`, `change`, `ci_low`, `ci_high`, `p`, `q`, `runs_base`, `runs_head`,
//! `method`, `verdict`, `inherited`, `explained`, and `cause` and `cause_role` (below). Unchanged
//! findings are not listed (they are counted). Version 2: `regressions` and `improvements` hold
//! only changes the diff explains (code on the function's call paths changed); the others are in
//! `shifted`. `groups` holds, per group and sampled metric, the spread used and the minimum
//! detectable effect ([`super::finding::Power`]). `moved` holds the changes whose cost moved
//! between functions while a function on every call path to them did not change as much (see
//! [`super::moved`]; each names that function in `moved_within`): reported, not gated. `timings` (only from `check`) says where the
//! job's time went ([`crate::timing::Timings`]).
//!
//! `causes` lists the changes once per cause ([`super::causes`]): `id` (stable:
//! `<metric>:<verdict>:<function>`), `function`, `metric`, `verdict`, the `groups` where its own
//! change was found, `change_min`/`change_max` over them, `findings` (how many findings it groups)
//! and `roles` (how many of them per role). Every listed finding names its cause's `id` in
//! `cause`, and its `cause_role`: `cause` (the function's own change in one group), `total` (its
//! total cost), `caller_total` (a caller's total cost that its change accounts for) or `inlined`
//! (a function inlined into it). The gate is unchanged: it fails iff `regressions` is non-empty.
//! Adding fields is not a version change; renaming, removing or changing a meaning is.

use std::io::{self, Write};

use serde::Serialize;

use super::finding::{Comparison, Finding, Verdict, Warning};
use super::model::RevisionInfo;
use super::options::ReportSettings;

/// Version of the JSON report layout.
pub const REPORT_VERSION: u32 = 2;

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    base: &'a RevisionInfo,
    head: &'a RevisionInfo,
    settings: &'a ReportSettings,
    regressions: Vec<&'a Finding>,
    improvements: Vec<&'a Finding>,
    shifted: Vec<&'a Finding>,
    moved: Vec<&'a Finding>,
    possible: Vec<&'a Finding>,
    new: Vec<&'a Finding>,
    vanished: Vec<&'a Finding>,
    inherited: Vec<&'a Finding>,
    warnings: Vec<WarningEntry<'a>>,
    groups: &'a [super::finding::Power],
    summary: &'a super::finding::Summary,
    causes: &'a [super::finding::Cause],
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<&'a crate::timing::Timings>,
}

#[derive(Serialize)]
struct WarningEntry<'a> {
    #[serde(flatten)]
    warning: &'a Warning,
    message: String,
}

/// Writes the JSON report of `cmp` (pretty-printed, deterministic, newline-terminated).
pub fn write_json(cmp: &Comparison, mut out: impl Write) -> io::Result<()> {
    let mut possible = cmp.with_verdict(Verdict::PossibleRegression);
    possible.extend(cmp.with_verdict(Verdict::PossibleImprovement));
    let report = Report {
        version: REPORT_VERSION,
        base: &cmp.base,
        head: &cmp.head,
        settings: &cmp.settings,
        regressions: cmp.with_verdict(Verdict::Regression),
        improvements: cmp.with_verdict(Verdict::Improvement),
        shifted: cmp.with_verdict(Verdict::Shifted),
        moved: cmp.with_verdict(Verdict::Moved),
        possible,
        new: cmp.with_verdict(Verdict::New),
        vanished: cmp.with_verdict(Verdict::Vanished),
        inherited: cmp.inherited(),
        warnings: cmp.warnings.iter().map(|w| WarningEntry { warning: w, message: w.to_string() }).collect(),
        groups: &cmp.power,
        summary: &cmp.summary,
        causes: &cmp.causes,
        timings: cmp.timings.as_ref(),
    };
    serde_json::to_writer_pretty(&mut out, &report)?;
    out.write_all(b"\n")
}
