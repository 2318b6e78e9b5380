//! Breakdowns by a sample label (`by=KEY`), for the run pages (`/view`, `/compare`) and the
//! production pages alike: each value's part of a profile's measure, summed from the samples'
//! labels, as a table whose values link to their samples alone. One implementation, so a run's
//! breakdown and a service's read the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use contprof_engine::compare::{
    Breakdown, NO_SUCH_LABEL, breakdown_tested, breakdown_verdict, render_amount,
};
use contprof_engine::profile::Profile;
use contprof_engine::report::format_in_unit;

use super::page::{ReportInput, ReportView, html_escape as esc};

/// Values listed before the rest are summed in one row.
pub(crate) const ROWS: usize = 50;

/// One value's part of the measure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// The label's value; `None` for the samples without the label.
    pub value: Option<String>,
    /// The measure summed over its samples.
    pub sum: f64,
    /// How many stacks (samples) carry it.
    pub stacks: usize,
}

/// What a breakdown sums: a sample type of the profiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Measure {
    /// Its name (`cpu`).
    pub name: String,
    /// Its unit (`nanoseconds`).
    pub unit: String,
}

/// The parts of `profiles`' default measure (the last sample type when a profile names none) per
/// value of the sample label `key`, largest first, and the measure.
pub(crate) fn parts(profiles: &[Profile], key: &str) -> (Measure, Vec<Part>) {
    let mut per_value: BTreeMap<Option<&str>, (f64, usize)> = BTreeMap::new();
    let mut measure = Measure::default();
    for p in profiles {
        let Some(at) =
            p.sample_type_index(p.str(p.default_sample_type)).or(p.sample_type.len().checked_sub(1))
        else {
            continue;
        };
        if measure.name.is_empty() {
            let ty = &p.sample_type[at];
            measure = Measure { name: p.str(ty.r#type).to_owned(), unit: p.str(ty.unit).to_owned() };
        }
        for s in &p.sample {
            let e = per_value.entry(p.label_str(s, key)).or_default();
            e.0 += s.value.get(at).copied().unwrap_or(0) as f64;
            e.1 += 1;
        }
    }
    let mut parts: Vec<Part> = per_value
        .into_iter()
        .map(|(value, (sum, stacks))| Part { value: value.map(str::to_owned), sum, stacks })
        .collect();
    parts.sort_by(|a, b| b.sum.total_cmp(&a.sum).then_with(|| a.value.cmp(&b.value)));
    (measure, parts)
}

/// `part` of `all` as a percentage, or a dash when there is nothing.
fn share(part: f64, all: f64) -> String {
    if all > 0.0 { format!("{:.1}%", 100.0 * part / all) } else { "–".into() }
}

/// How a value is shown: escaped, or the row of samples without the label.
fn shown(value: Option<&str>) -> String {
    match value {
        Some(v) => esc(v),
        None => format!(r#"<span class="muted">{}</span>"#, esc(NO_SUCH_LABEL)),
    }
}

/// The table of one profile's breakdown by `key` (`id="label-breakdown"`): each value's sum of
/// `measure`, its share and its stacks, the first [`ROWS`] values and the rest in one row;
/// `link` gives a value's link to its samples alone (`None`: no link, as in a report file).
pub(crate) fn table(
    key: &str,
    measure: &Measure,
    parts: &[Part],
    link: &dyn Fn(&str) -> Option<String>,
) -> String {
    let all: f64 = parts.iter().map(|p| p.sum).sum();
    let mut t = format!(
        r#"<h2>By sample label <code>{k}</code></h2><table id="label-breakdown"><thead><tr><th>{k}</th><th class="num">{m}</th><th class="num">share</th><th class="num">stacks</th><th></th></tr></thead><tbody>"#,
        k = esc(key),
        m = esc(&measure.name),
    );
    let amount = |v: f64| esc(&format_in_unit(v as i64, &measure.unit));
    for p in parts.iter().take(ROWS) {
        let only = p.value.as_deref().and_then(link).unwrap_or_default();
        let _ = write!(
            t,
            r#"<tr data-value="{d}"><td>{shown}</td><td class="num">{v}</td><td class="num">{share}</td><td class="num">{n}</td><td>{only}</td></tr>"#,
            d = esc(p.value.as_deref().unwrap_or("")),
            shown = shown(p.value.as_deref()),
            v = amount(p.sum),
            share = share(p.sum, all),
            n = p.stacks,
        );
    }
    if parts.len() > ROWS {
        let rest = parts[ROWS..].iter().fold((0.0, 0), |a, p| (a.0 + p.sum, a.1 + p.stacks));
        let _ = write!(
            t,
            r#"<tr><td class="muted">{} other values</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td></td></tr>"#,
            parts.len() - ROWS,
            amount(rest.0),
            share(rest.0, all),
            rest.1
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// The table of a comparison's breakdown by a sample label (`id="label-breakdown"`), as the
/// engine made it (`compare --by`): each value's median share and amount per run (window) in
/// base and head, the change of the figure tested and the test's verdict (bold when it
/// changed); `link` as in [`table`].
pub(crate) fn breakdown_table(b: &Breakdown, link: &dyn Fn(&str) -> Option<String>) -> String {
    let tested = breakdown_tested(b.tested);
    let mut t = format!(
        r#"<h2>By sample label <code>{k}</code>: {m} in {g}</h2><p class="muted">Medians over the runs of each side; {tested}, Yuen's trimmed test, not gated.</p><table class="label-breakdown" id="label-breakdown" data-group="{g}" data-metric="{m}"><thead><tr><th>{k}</th><th class="num">base</th><th class="num">head</th><th class="num">base</th><th class="num">head</th><th class="num">change</th><th>test</th><th></th></tr></thead><tbody>"#,
        k = esc(&b.key),
        m = b.metric,
        g = esc(&b.group),
    );
    for r in &b.rows {
        let only = r.value.as_deref().and_then(link).unwrap_or_default();
        let [change, test] = breakdown_verdict(r).map(|text| esc(&text));
        let (change, test) = if r.changed {
            (format!(r#"<b data-changed="yes">{change}</b>"#), test)
        } else {
            (change, format!(r#"<span class="muted">{test}</span>"#))
        };
        let _ = write!(
            t,
            r#"<tr data-value="{d}"><td>{shown}</td><td class="num">{bs:.1}%</td><td class="num">{hs:.1}%</td><td class="num">{ba}</td><td class="num">{ha}</td><td class="num">{change}</td><td>{test}</td><td>{only}</td></tr>"#,
            d = esc(r.value.as_deref().unwrap_or("")),
            shown = shown(r.value.as_deref()),
            bs = 100.0 * r.base_share,
            hs = 100.0 * r.head_share,
            ba = esc(&render_amount(b.metric, r.base)),
            ha = esc(&render_amount(b.metric, r.head)),
        );
    }
    if b.other_values > 0 {
        let _ = write!(
            t,
            r#"<tr><td class="muted" colspan="8">{} other values not listed</td></tr>"#,
            b.other_values
        );
    }
    t.push_str("</tbody></table>");
    t
}

impl ReportInput<'_> {
    /// Adds the breakdown by the sample label `key` above the flame graph (a report file's: no
    /// links): a profile view's parts of its default measure per value; a compare view's
    /// comparison's own breakdowns by `key` (`compare --by`), of `group` only when named.
    pub fn with_label_breakdown(mut self, key: &str, group: Option<&str>) -> Self {
        let none = |_: &str| None;
        match &self.view {
            ReportView::Profile { profiles } => {
                let (measure, parts) = parts(profiles, key);
                self.prelude.push_str(&table(key, &measure, &parts, &none));
            }
            ReportView::Compare { comparison, .. } => {
                let breakdowns = comparison.iter().flat_map(|c| &c.breakdowns);
                for b in breakdowns.filter(|b| b.key == key && group.is_none_or(|g| b.group == g)) {
                    self.prelude.push_str(&breakdown_table(b, &none));
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contprof_engine::profile::Label;
    use contprof_engine::profile::test_support::synth;

    /// `synth`'s profile with each sample `i` labelled `key=values[i]` (none where `None`).
    fn labelled(stacks: &[(&[&str], i64, i64)], key: &str, values: &[Option<&str>]) -> Profile {
        let mut p = synth(stacks);
        p.default_sample_type = p.intern("cpu"); // as `build_profile` sets it
        let k = p.intern(key);
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let s = p.intern(v);
                p.sample[i].label.push(Label { key: k, str: s, ..Label::default() });
            }
        }
        p
    }

    #[test]
    fn parts_sum_the_measure_per_value_and_keep_the_unlabelled_apart() {
        let p = labelled(
            &[
                (&["main", "search"], 5_000_000, 0),
                (&["main", "items"], 3_000_000, 0),
                (&["main", "idle"], 2_000_000, 0),
            ],
            "endpoint",
            &[Some("/search"), Some("/items"), None],
        );
        let (measure, parts) = parts(std::slice::from_ref(&p), "endpoint");
        assert_eq!((measure.name.as_str(), measure.unit.as_str()), ("cpu", "nanoseconds"));
        let got: Vec<(Option<&str>, f64)> = parts.iter().map(|p| (p.value.as_deref(), p.sum)).collect();
        assert_eq!(got, [(Some("/search"), 5e6), (Some("/items"), 3e6), (None, 2e6)]);
        let html = table("endpoint", &measure, &parts, &|v| Some(format!("<a>{v}</a>")));
        assert!(html.contains(r#"<tr data-value="/search"><td>/search</td><td class="num">5.0 ms</td><td class="num">50.0%</td>"#), "{html}");
        assert!(html.contains("(no such label)") && html.contains("<a>/items</a>"), "{html}");
        assert!(!html.contains("<a></a>"), "the unlabelled row has no link: {html}");
    }

    #[test]
    fn a_comparisons_breakdown_shows_both_sides_the_change_and_its_test() {
        use contprof_engine::compare::{BreakdownFigure, BreakdownRow, Metric};
        let row = |value: Option<&str>, shares: [f64; 2], change: f64, p: f64, changed: bool| BreakdownRow {
            value: value.map(str::to_owned),
            base: shares[0] * 1e9,
            head: shares[1] * 1e9,
            base_share: shares[0],
            head_share: shares[1],
            change: Some(change),
            p: Some(p),
            changed,
        };
        let b = Breakdown {
            group: "bin:server".into(),
            metric: Metric::Cpu,
            key: "endpoint".into(),
            tested: BreakdownFigure::Share,
            rows: vec![
                row(Some("/search"), [0.4, 0.5], 0.25, 1e-6, true),
                row(Some("/items"), [0.55, 0.45], -0.18, 0.2, false),
                row(None, [0.05, 0.05], 0.0, 0.9, false),
            ],
            other_values: 3,
        };
        let html = breakdown_table(&b, &|v| Some(format!("<a>{v}</a>")));
        let search = r#"<tr data-value="/search"><td>/search</td><td class="num">40.0%</td><td class="num">50.0%</td><td class="num">400.0 ms</td><td class="num">500.0 ms</td><td class="num"><b data-changed="yes">+25.0%</b></td><td>p &lt; 0.001, changed</td><td><a>/search</a></td></tr>"#;
        assert!(html.contains(search), "{html}");
        assert!(html.contains("-18.0%</td><td><span class=\"muted\">p = 0.200, noise"), "{html}");
        assert!(html.contains("(no such label)") && html.contains("3 other values not listed"), "{html}");
        assert!(!html.contains("<a></a>"), "the unlabelled row has no link: {html}");
    }
}
