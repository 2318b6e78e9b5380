//! Breakdowns by a sample label (`by=KEY`), for the run pages (`/view`, `/compare`) and the
//! production pages alike: each value's part of a profile's measure, summed from the samples'
//! labels, as a table whose values link to their samples alone. One implementation, so a run's
//! breakdown and a service's read the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use contprof_engine::profile::Profile;

use super::page::html_escape as esc;

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

/// The parts of `profiles`' default measure (the last sample type when a profile names none) per
/// value of the sample label `key`, largest first, and the measure's name.
pub(crate) fn parts(profiles: &[Profile], key: &str) -> (String, Vec<Part>) {
    let mut per_value: BTreeMap<Option<&str>, (f64, usize)> = BTreeMap::new();
    let mut measure = String::new();
    for p in profiles {
        let Some(at) =
            p.sample_type_index(p.str(p.default_sample_type)).or(p.sample_type.len().checked_sub(1))
        else {
            continue;
        };
        if measure.is_empty() {
            measure = p.str(p.sample_type[at].r#type).to_owned();
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
        None => r#"<span class="muted">(no such label)</span>"#.to_owned(),
    }
}

/// The table of one profile's breakdown by `key` (`id="label-breakdown"`): each value's sum of
/// `measure`, its share and its stacks, the first [`ROWS`] values and the rest in one row;
/// `link` gives a value's link to its samples alone (`None`: no link, as in a report file).
pub(crate) fn table(
    key: &str,
    measure: &str,
    parts: &[Part],
    link: &dyn Fn(&str) -> Option<String>,
) -> String {
    let all: f64 = parts.iter().map(|p| p.sum).sum();
    let mut t = format!(
        r#"<h2>By sample label <code>{k}</code></h2><table id="label-breakdown"><thead><tr><th>{k}</th><th class="num">{m}</th><th class="num">share</th><th class="num">stacks</th><th></th></tr></thead><tbody>"#,
        k = esc(key),
        m = esc(measure),
    );
    for p in parts.iter().take(ROWS) {
        let only = p.value.as_deref().and_then(link).unwrap_or_default();
        let _ = write!(
            t,
            r#"<tr data-value="{d}"><td>{shown}</td><td class="num">{v}</td><td class="num">{share}</td><td class="num">{n}</td><td>{only}</td></tr>"#,
            d = esc(p.value.as_deref().unwrap_or("")),
            shown = shown(p.value.as_deref()),
            v = p.sum,
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
            rest.0,
            share(rest.0, all),
            rest.1
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// The table of a comparison's breakdown by `key` (`id="label-breakdown"`): each value's share of
/// `measure` in the base and the head profiles and the change in points, values ordered by their
/// larger share; `link` as in [`table`].
pub(crate) fn compare_table(
    key: &str,
    measure: &str,
    base: &[Part],
    head: &[Part],
    link: &dyn Fn(&str) -> Option<String>,
) -> String {
    let totals = [base, head].map(|side| side.iter().map(|p| p.sum).sum::<f64>());
    let mut rows: BTreeMap<Option<&str>, [f64; 2]> = BTreeMap::new();
    for (i, side) in [base, head].into_iter().enumerate() {
        for p in side {
            let fraction = if totals[i] > 0.0 { p.sum / totals[i] } else { 0.0 };
            rows.entry(p.value.as_deref()).or_default()[i] = fraction;
        }
    }
    let mut rows: Vec<(Option<&str>, [f64; 2])> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1[0].max(b.1[1]).total_cmp(&a.1[0].max(a.1[1])).then_with(|| a.0.cmp(&b.0)));
    let mut t = format!(
        r#"<h2>By sample label <code>{k}</code>: share of {m}</h2><table id="label-breakdown"><thead><tr><th>{k}</th><th class="num">base</th><th class="num">head</th><th class="num">change</th><th></th></tr></thead><tbody>"#,
        k = esc(key),
        m = esc(measure),
    );
    for (value, [b, h]) in rows.iter().take(ROWS) {
        let only = value.and_then(link).unwrap_or_default();
        let _ = write!(
            t,
            r#"<tr data-value="{d}"><td>{shown}</td><td class="num">{b:.1}%</td><td class="num">{h:.1}%</td><td class="num">{c:+.1} pts</td><td>{only}</td></tr>"#,
            d = esc(value.unwrap_or("")),
            shown = shown(*value),
            b = 100.0 * b,
            h = 100.0 * h,
            c = 100.0 * (h - b),
        );
    }
    if rows.len() > ROWS {
        let _ = write!(
            t,
            r#"<tr><td class="muted">{} other values</td><td></td><td></td><td></td><td></td></tr>"#,
            rows.len() - ROWS
        );
    }
    t.push_str("</tbody></table>");
    t
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
        assert_eq!(measure, "cpu");
        let got: Vec<(Option<&str>, f64)> = parts.iter().map(|p| (p.value.as_deref(), p.sum)).collect();
        assert_eq!(got, [(Some("/search"), 5e6), (Some("/items"), 3e6), (None, 2e6)]);
        let html = table("endpoint", &measure, &parts, &|v| Some(format!("<a>{v}</a>")));
        assert!(html.contains(r#"<tr data-value="/search"><td>/search</td><td class="num">5000000</td><td class="num">50.0%</td>"#), "{html}");
        assert!(html.contains("(no such label)") && html.contains("<a>/items</a>"), "{html}");
        assert!(!html.contains("<a></a>"), "the unlabelled row has no link: {html}");
    }

    #[test]
    fn a_comparison_shows_each_values_share_on_both_sides() {
        let base = labelled(
            &[(&["main", "search"], 5_000_000, 0), (&["main", "items"], 5_000_000, 0)],
            "endpoint",
            &[Some("/search"), Some("/items")],
        );
        let head = labelled(
            &[
                (&["main", "search"], 6_000_000, 0),
                (&["main", "items"], 2_000_000, 0),
                (&["main", "new"], 2_000_000, 0),
            ],
            "endpoint",
            &[Some("/search"), Some("/items"), Some("/new")],
        );
        let (m, b) = parts(&[base], "endpoint");
        let (_, h) = parts(&[head], "endpoint");
        let html = compare_table("endpoint", &m, &b, &h, &|_| None);
        let search = r#"<tr data-value="/search"><td>/search</td><td class="num">50.0%</td><td class="num">60.0%</td><td class="num">+10.0 pts</td>"#;
        assert!(html.contains(search), "{html}");
        assert!(
            html.contains(
                r#"<td class="num">0.0%</td><td class="num">20.0%</td><td class="num">+20.0 pts</td>"#
            ),
            "{html}"
        );
        let order: Vec<usize> = ["/search", "/items", "/new"]
            .iter()
            .map(|v| html.find(&format!("data-value=\"{v}\"")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "largest share first: {html}");
    }
}
