//! The JSON report (`--format json`): a comparison written as the contract's
//! [`Report`](contprof_contracts::report::Report), whose module documents every field.

use std::io::{self, Write};

use contprof_contracts::report::{REPORT_VERSION, Report, WarningEntry};

use super::finding::{Comparison, Finding, Verdict};

/// Writes the JSON report of `cmp` (pretty-printed, deterministic, newline-terminated).
pub fn write_json(cmp: &Comparison, mut out: impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, &to_report(cmp))?;
    out.write_all(b"\n")
}

/// The report of `cmp`: its listed findings in the order of the text report.
pub fn to_report(cmp: &Comparison) -> Report {
    let owned = |found: Vec<&Finding>| -> Vec<Finding> { found.into_iter().cloned().collect() };
    let mut possible = owned(cmp.with_verdict(Verdict::PossibleRegression));
    possible.extend(owned(cmp.with_verdict(Verdict::PossibleImprovement)));
    Report {
        version: REPORT_VERSION,
        base: cmp.base.clone(),
        head: cmp.head.clone(),
        settings: cmp.settings.clone(),
        regressions: owned(cmp.with_verdict(Verdict::Regression)),
        improvements: owned(cmp.with_verdict(Verdict::Improvement)),
        shifted: owned(cmp.with_verdict(Verdict::Shifted)),
        moved: owned(cmp.with_verdict(Verdict::Moved)),
        possible,
        new: owned(cmp.with_verdict(Verdict::New)),
        vanished: owned(cmp.with_verdict(Verdict::Vanished)),
        inherited: owned(cmp.inherited()),
        warnings: cmp
            .warnings
            .iter()
            .map(|w| WarningEntry { warning: w.clone(), message: w.to_string() })
            .collect(),
        groups: cmp.power.clone(),
        summary: cmp.summary.clone(),
        causes: cmp.causes.clone(),
        timings: cmp.timings.clone(),
        breakdowns: cmp.breakdowns.clone(),
    }
}
