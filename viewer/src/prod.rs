//! The production section of the viewer: the services page (`/prod`), a selection of windows
//! (`/prod/view`) and a comparison of two selections (`/prod/compare`), served by `serve` and
//! written as one file by `cargo contprof prod report`.
//!
//! A selection's page is the view page of the per-commit runs (the same flame graph, filters and
//! top table, over the selection's merged stacks) with a prelude: the filter form (service,
//! profile type, time span, version, zone, instance, any label), a breakdown by deployment and
//! a timeline of each window's total, coloured by version, zone or instance. A comparison's
//! page is the differential flame graph of per-window averages with the verdict table of
//! [`contprof_engine::compare`], computed from per-window costs as `prod compare` computes them.
//!
//! Everything is read through [`contprof_engine::prod::load`]: rollups where compaction wrote them,
//! windows elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use super::Comparing;
use super::labels;
use super::page::{CSS, ReportInput, hidden_input, html_escape as esc, write_json, write_report};
use super::query::{ProdQuery, url_escape};
use contprof_engine::compare::{Metric, render_amount};
use contprof_engine::errors::{Error, Result};
use contprof_engine::prod::denominator::Denominator;
use contprof_engine::prod::load::{self, Want};
use contprof_engine::prod::rollouts::{Asked, Judging, compare_loaded};
use contprof_engine::prod::rollup::Observation;
use contprof_engine::prod::select::{self, Selection};
use contprof_engine::store::{Store, parse_time, rfc3339};

/// Time spans offered by the span picker.
const SPANS: [(&str, &str); 4] =
    [("1h", "last hour"), ("24h", "last day"), ("7d", "last week"), ("30d", "30 days")];

/// Most points of the timeline: windows are averaged into this many buckets at most.
const TIMELINE_BUCKETS: usize = 240;

/// Series colours of the timeline, in order.
const PALETTE: [&str; 8] =
    ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00"];

/// The selection a query asks for.
pub fn selection(q: &ProdQuery, now: DateTime<Utc>) -> Result<Selection> {
    if contprof_engine::prod::window::sample_types(&q.profile_type).is_none() {
        return Err(contprof_engine::prod::window::unknown_type("type", &q.profile_type));
    }
    Ok(Selection {
        service: Some(q.service.clone()),
        types: vec![q.profile_type.clone()],
        sample_labels: q.sample_labels.clone(),
        keep_sample_labels: q.by.is_some(),
        ..spanned(&q.since, q.until.as_deref(), &q.labels, now)?
    })
}

/// A selection of every service's windows of every type over the span `since` to `until` (an
/// age, a date or an RFC 3339 time, read at `now`) with the window-label filters `labels`: the
/// one reading of those parameters for the production pages and the fleet page.
pub(crate) fn spanned(
    since: &str,
    until: Option<&str>,
    labels: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Selection> {
    let time = |flag: &'static str, s: &str, end: bool| {
        parse_time(s, now, end).ok_or_else(|| Error::InvalidArgument {
            flag,
            message: format!("`{s}` is not an age (30m, 24h, 7d), a date (2026-11-30) or an RFC 3339 time"),
        })
    };
    let mut parsed = Vec::new();
    for (k, v) in labels {
        parsed.extend(
            select::parse_labels(&format!("{k}={v}"))
                .map_err(|message| Error::InvalidArgument { flag: "label", message })?,
        );
    }
    Ok(Selection {
        since: Some(time("since", since, false)?),
        until: until.map(|u| time("until", u, true)).transpose()?,
        labels: parsed,
        ..Selection::default()
    })
}

/// The services page: every service with its profile types and the days they have windows on.
pub fn services_page(store: &Store) -> Result<String> {
    let mut rows = String::new();
    for service in store.production_services()? {
        let mut types = String::new();
        for ty in store.production_types(&service)? {
            let days = store.window_days(&service, &ty)?;
            let span = match (days.first(), days.last()) {
                (Some(a), Some(b)) if a != b => format!("{a} to {b}"),
                (Some(a), _) => a.clone(),
                _ => continue,
            };
            let q = ProdQuery {
                service: service.clone(),
                profile_type: ty.clone(),
                since: "24h".into(),
                color: "version".into(),
                ..ProdQuery::default()
            };
            let _ = write!(
                types,
                r#"<li><a class="prod-type" href="/prod/view?{}">{}</a> <span class="muted">{}</span></li>"#,
                esc(&query_string(&q)),
                esc(&ty),
                esc(&span)
            );
        }
        let _ = write!(
            rows,
            r#"<tr data-service="{s}"><td>{s}</td><td><ul class="plain">{types}</ul></td></tr>"#,
            s = esc(&service)
        );
    }
    let rollouts = rollouts_table(store)?;
    let body = if rows.is_empty() {
        format!(
            r#"<p id="empty">The store {} has no production windows. Start the agent in a service (see the production chapter of the book, docs/src/production/index.md).</p>"#,
            esc(store.url())
        )
    } else {
        format!(
            r#"<table id="services"><thead><tr><th>service</th><th>profile types (days with windows)</th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    } + &rollouts;
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Production · cargo contprof</title>\
         <style>{CSS}</style></head><body><header><nav><a href=\"/\">← runs</a> · <a id=\"fleet-link\" href=\"/prod/top?since=7d\">fleet CPU</a></nav><h1>Production profiles in store \
         <code id=\"store\">{}</code></h1></header><main>{body}</main></body></html>\n",
        esc(store.url())
    ))
}

/// The rollouts judged so far (`prod watch`, or `serve` in the background), newest first, each
/// with its verdict and a link to its comparison; empty when none was.
fn rollouts_table(store: &Store) -> Result<String> {
    let verdicts = contprof_engine::prod::rollouts::stored_verdicts(store)?;
    if verdicts.is_empty() {
        return Ok(String::new());
    }
    let mut rows = String::new();
    for r in &verdicts {
        let q = ProdQuery {
            service: r.service.clone(),
            profile_type: r.profile_type.clone(),
            since: "30d".into(),
            color: "version".into(),
            ..ProdQuery::default()
        };
        let link = format!(
            "{}&base={}&head={}",
            query_string(&q),
            url_escape(&format!("version={}", r.base)),
            url_escape(&format!("version={}", r.head))
        );
        let blamed: Vec<String> = r.blamed().iter().map(|b| esc(b)).collect();
        let _ = write!(
            rows,
            r#"<tr class="rollout {status}"><td>{service}</td><td>{base} → {head}</td><td>{ty}</td><td><a href="/prod/compare?{link}">{status}</a></td><td>{blamed}</td><td class="muted">{when}</td></tr>"#,
            status = r.status.name(),
            service = esc(&r.service),
            base = esc(&r.base),
            head = esc(&r.head),
            ty = esc(&r.profile_type),
            link = esc(&link),
            blamed = blamed.join(", "),
            when = esc(r.judged_at.as_deref().unwrap_or("")),
        );
    }
    Ok(format!(
        r#"<h2>Rollouts</h2><table id="rollouts"><thead><tr><th>service</th><th>versions</th><th>type</th><th>verdict</th><th>regressed functions</th><th>judged</th></tr></thead><tbody>{rows}</tbody></table>"#
    ))
}

/// Writes the page (or, with `q.json`, the view's JSON) of a selection, or of a comparison when
/// `q` has both sides. `served` adds the forms and links that need the server; `cancel`, set by
/// the server when the client stopped waiting, ends the reading early (with an error).
pub fn write_page(
    out: &mut Vec<u8>,
    store: &Store,
    q: &ProdQuery,
    comparing: &Comparing,
    (served, cancel): (bool, Option<Arc<AtomicBool>>),
    now: DateTime<Utc>,
) -> Result<()> {
    let sel = selection(q, now)?;
    let until = sel.until.unwrap_or(now);
    let since = sel.since.unwrap_or(now);
    let metric = contprof_engine::prod::rollup::metric_of(&q.profile_type);
    let mut details = vec![format!(
        "{} {} windows from {} to {}",
        q.service,
        q.profile_type,
        rfc3339(since),
        rfc3339(until)
    )];
    let written = match (&q.base, &q.head) {
        (Some(base), Some(head)) => {
            let want = Want {
                stacks: true,
                costs: true,
                fold_library: comparing.fold_library,
                by_label: q.by.clone(),
                cancel,
                ..Want::default()
            };
            let sides = load::load_sides(
                store,
                (&q.service, &q.profile_type),
                &sel,
                (base, head),
                ["base", "head"],
                &want,
                now,
            )?;
            let mut prelude = filter_form(q, served);
            let series: Vec<(String, &Observation)> = [("base", &sides.base), ("head", &sides.head)]
                .iter()
                .flat_map(|(side, l)| l.observations.iter().map(move |o| ((*side).to_owned(), o)))
                .collect();
            prelude.push_str(&breakdown(q, series.iter().map(|(_, o)| *o), metric, served));
            prelude.push_str(&timeline(&series, metric, (since, until), "side"));
            let counts = [sides.base.observations.len(), sides.head.observations.len()];
            for (name, l) in [(base, &sides.base), (head, &sides.head)] {
                details.push(format!(
                    "{name}: {} windows ({} read from {} rollup(s), {} from window profiles)",
                    l.observations.len(),
                    l.observations.len().saturating_sub(l.windows_read),
                    l.rollups_read,
                    l.windows_read
                ));
            }
            let judging = Judging {
                denominator: Denominator::Auto,
                options: &comparing.options,
                fold_library: comparing.fold_library,
            };
            let asked = Asked {
                service: &q.service,
                profile_type: &q.profile_type,
                judging: &judging,
                by_label: q.by.as_deref(),
            };
            let (mut prepared, cmp) = compare_loaded(&asked, (base, sides.base), (head, sides.head))?;
            prelude.push_str(&compared_labels(q, &cmp, served));
            details.push(format!(
                "{} regressions, {} improvements",
                cmp.summary.regressions, cmp.summary.improvements
            ));
            details.extend(prepared.warnings.iter().chain(&prepared.notes).cloned());
            details.extend(cmp.warnings.iter().map(|w| w.to_string()));
            // One group: the service's windows of the profile type.
            let (b, h) = prepared.profiles.pop_first().map(|(_, sides)| sides).unwrap_or_default();
            let title = format!("{} {}: {base} → {head}", q.service, q.profile_type);
            let mut input = ReportInput::compare(title, &b, &h, Some(&cmp)).with_details(details);
            input.prelude = prelude;
            input.averaged_over = Some(("window", counts));
            emit(out, input, q.json, served)
        }
        (None, None) => {
            // Per-function costs only for a function's timeline: they are what a rollup holds most of.
            let want = Want {
                stacks: true,
                costs: q.function.is_some(),
                fold_library: comparing.fold_library,
                by_label: q.by.clone(),
                cancel,
                ..Want::default()
            };
            let loaded = load::load(store, &q.service, &q.profile_type, &sel, &want, now)?;
            if loaded.observations.is_empty() {
                return Err(Error::NothingMatched { what: load::nothing_matched(store, &sel, now) });
            }
            let instances: BTreeSet<&str> =
                loaded.observations.iter().map(|o| o.key.instance.as_str()).collect();
            details.push(format!(
                "{} windows from {} replica(s); read {} rollup(s) and {} window profile(s)",
                loaded.observations.len(),
                instances.len(),
                loaded.rollups_read,
                loaded.windows_read
            ));
            details.extend(loaded.warnings.iter().cloned());
            let series: Vec<(String, &Observation)> =
                loaded.observations.iter().map(|o| (color_key(o, &q.color), o)).collect();
            let mut prelude = filter_form(q, served);
            prelude.push_str(&breakdown(q, loaded.observations.iter(), metric, served));
            prelude.push_str(&label_breakdown(q, &loaded.stacks, served));
            prelude.push_str(&timeline(&series, metric, (since, until), &q.color));
            if let Some(key) = &q.by {
                prelude.push_str(&label_timeline(key, &loaded.observations, metric, (since, until)));
            }
            if let Some(function) = &q.function {
                prelude.push_str(&function_timeline(function, &series, metric, (since, until), &q.color));
            }
            prelude.push_str(&compare_form(q, served));
            let stacks = loaded.stacks;
            let title = format!("{} {}", q.service, q.profile_type);
            let mut input = ReportInput::profile(title, &stacks).with_details(details);
            input.prelude = prelude;
            emit(out, input, q.json, served)
        }
        _ => {
            return Err(Error::InvalidArgument {
                flag: if q.base.is_none() { "base" } else { "head" },
                message: "a comparison needs both `base` and `head` (key=value[,key=value])".into(),
            });
        }
    };
    written
        .map_err(|e| Error::Other { context: "could not write the page".into(), source: Some(Box::new(e)) })
}

fn emit(
    out: &mut Vec<u8>,
    mut input: ReportInput<'_>,
    json: bool,
    served: bool,
) -> std::result::Result<(), super::ViewerError> {
    if served {
        input.home = Some("/prod".to_owned());
        input.home_label = Some("production".to_owned());
    }
    if json { write_json(out, &input) } else { write_report(out, &input) }
}

/// The value of the timeline's colour key for a window.
fn color_key(o: &Observation, color: &str) -> String {
    match color {
        "zone" => o.key.deployment.zone.clone(),
        "instance" => o.key.instance.clone(),
        _ => o.key.deployment.version.clone(),
    }
}

/// The query string of `q` (for links).
pub(crate) fn query_string(q: &ProdQuery) -> String {
    let mut parts =
        vec![("service", q.service.clone()), ("type", q.profile_type.clone()), ("since", q.since.clone())];
    if let Some(u) = &q.until {
        parts.push(("until", u.clone()));
    }
    for (k, v) in &q.labels {
        parts.push(("label", format!("{k}={v}")));
    }
    for (k, v) in &q.sample_labels {
        parts.push(("sample_label", format!("{k}={v}")));
    }
    if let Some(by) = &q.by {
        parts.push(("by", by.clone()));
    }
    if q.color != "version" {
        parts.push(("color", q.color.clone()));
    }
    if let Some(f) = &q.function {
        parts.push(("function", f.clone()));
    }
    parts.iter().map(|(k, v)| format!("{k}={}", url_escape(v))).collect::<Vec<_>>().join("&")
}

/// The filter form: profile type, span picker, label filters, colour key.
fn filter_form(q: &ProdQuery, served: bool) -> String {
    if !served {
        return String::new();
    }
    let mut f = String::new();
    let _ = write!(
        f,
        r#"<section id="prod-filters"><form class="controls" method="get" action="/prod/view" id="prod-filter">
<input type="hidden" name="service" value="{service}"><label>type <select name="type" id="prod-type">"#,
        service = esc(&q.service)
    );
    for ty in contprof_protocol::service::ProfileType::ALL.map(|t| t.name()) {
        let sel = if ty == q.profile_type { " selected" } else { "" };
        let _ = write!(f, "<option{sel}>{ty}</option>");
    }
    f.push_str(r#"</select></label><span class="spans" role="group" aria-label="time span">"#);
    for (span, label) in SPANS {
        let mut linked = q.clone();
        linked.since = span.to_owned();
        linked.until = None;
        let current = if q.since == span && q.until.is_none() { r#" aria-current="true""# } else { "" };
        let _ = write!(
            f,
            r#"<a class="span" data-span="{span}" href="/prod/view?{}"{current}>{label}</a> "#,
            esc(&query_string(&linked))
        );
    }
    let label_values = |key: &str| {
        q.labels.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(",")
    };
    let custom: Vec<String> = q
        .labels
        .iter()
        .filter(|(k, _)| !select::LABEL_KEYS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = write!(
        f,
        r#"</span><label>since <input name="since" size="10" value="{since}"></label>
<label>until <input name="until" size="10" placeholder="now" value="{until}"></label>
<label>version <input name="version" size="8" placeholder="any" value="{version}"></label>
<label>zone <input name="zone" size="8" placeholder="any" value="{zone}"></label>
<label>instance <input name="instance" size="10" placeholder="any" value="{instance}"></label>
<label>label <input name="label" size="14" placeholder="key=value" value="{custom}"></label>
<label>colour by <select name="color">{colors}</select></label>{kept}
<button type="submit" id="prod-apply">Show</button></form>"#,
        since = esc(&q.since),
        until = esc(q.until.as_deref().unwrap_or("")),
        version = esc(&label_values("version")),
        zone = esc(&label_values("zone")),
        instance = esc(&label_values("instance")),
        custom = esc(&custom.join(",")),
        colors = ["version", "zone", "instance"]
            .iter()
            .map(|c| format!("<option{}>{c}</option>", if *c == q.color { " selected" } else { "" }))
            .collect::<String>(),
        kept = q
            .sample_labels
            .iter()
            .map(|(k, v)| hidden_input("sample_label", &format!("{k}={v}")))
            .chain(q.by.iter().map(|by| hidden_input("by", by)))
            .collect::<String>(),
    );
    f.push_str("</section>");
    f
}

/// The compare form: two label specs over the current selection.
fn compare_form(q: &ProdQuery, served: bool) -> String {
    if !served {
        return String::new();
    }
    let hidden = hidden_inputs(q, true);
    format!(
        r#"<section id="prod-compare"><form class="controls" method="get" action="/prod/compare" id="prod-compare-form">{hidden}
<label>base <input name="base" id="prod-base" size="18" placeholder="version=1.3"></label>
<label>head <input name="head" id="prod-head" size="18" placeholder="version=1.4"></label>
<button type="submit" id="prod-compare-go">Compare</button>
<span class="muted">each window one observation; verdicts as in <code>cargo contprof prod compare</code></span></form></section>"#
    )
}

/// The breakdown table: per deployment (version, zone), windows, replicas, mean total per window
/// and share of the total.
fn breakdown<'a>(
    q: &ProdQuery,
    observations: impl Iterator<Item = &'a Observation>,
    metric: Option<Metric>,
    served: bool,
) -> String {
    #[derive(Default)]
    struct Row<'b> {
        windows: usize,
        instances: BTreeSet<&'b str>,
        total: f64,
    }
    let mut rows: BTreeMap<(&str, &str), Row<'_>> = BTreeMap::new();
    let mut all = 0.0;
    for o in observations {
        let r = rows.entry((&o.key.deployment.version, &o.key.deployment.zone)).or_default();
        r.windows += 1;
        r.instances.insert(&o.key.instance);
        let v = metric.and_then(|m| o.costs.totals.get(&m)).map_or(0.0, |t| t.value);
        r.total += v;
        all += v;
    }
    let name = metric.map_or("", Metric::as_str);
    let mut t = format!(
        r#"<section id="prod-breakdown"><h2>Breakdown</h2><table id="breakdown"><thead><tr><th>version</th><th>zone</th>
<th class="num">windows</th><th class="num">replicas</th><th class="num">{name} per window</th><th class="num">share</th><th></th></tr></thead><tbody>"#
    );
    for ((version, zone), r) in &rows {
        let (mean, share) = match metric {
            Some(m) => (
                render_amount(m, r.total / r.windows.max(1) as f64),
                if all > 0.0 { format!("{:.1}%", 100.0 * r.total / all) } else { "–".into() },
            ),
            None => ("–".into(), "–".into()),
        };
        let only = if served {
            let mut narrowed = q.clone();
            narrowed.labels.retain(|(k, _)| k != "version" && k != "zone");
            narrowed.labels.push(("version".into(), (*version).to_owned()));
            narrowed.labels.push(("zone".into(), (*zone).to_owned()));
            format!(r#"<a href="/prod/view?{}">only this</a>"#, esc(&query_string(&narrowed)))
        } else {
            String::new()
        };
        let _ = write!(
            t,
            r#"<tr data-version="{v}" data-zone="{z}"><td>{v}</td><td>{z}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{only}</td></tr>"#,
            r.windows,
            r.instances.len(),
            esc(&mean),
            esc(&share),
            v = esc(version),
            z = esc(zone),
        );
    }
    t.push_str("</tbody></table></section>");
    t
}

/// Served, the forms that ask for a breakdown by a sample label and open one trace's samples.
fn label_breakdown_form(q: &ProdQuery, served: bool) -> String {
    if !served {
        return String::new();
    }
    format!(
        r#"<form class="controls" method="get" action="/prod/view" id="prod-by-form">{hidden}<label>break down by sample label <input name="by" id="prod-by" size="14" placeholder="endpoint" value="{by}"></label> <button type="submit">Break down</button></form>
<form class="controls" method="get" action="/prod/view" id="prod-trace-form">{trace_hidden}<label>trace id <input name="trace" id="prod-trace" size="34" placeholder="4bf92f3577b34da6a3ce929d0e0e4736"></label> <button type="submit">Open its samples</button> <span class="muted">CPU, waits or wall time of one trace's spans (the <code>trace_id</code> sample label)</span></form>"#,
        hidden = hidden_inputs(q, true),
        trace_hidden = hidden_inputs(q, false),
        by = esc(q.by.as_deref().unwrap_or("")),
    )
}

/// A comparison's label section: the forms, and the comparison's breakdowns by `q.by` (each
/// value tested window against window), each value linking to its samples alone.
fn compared_labels(q: &ProdQuery, cmp: &contprof_engine::compare::Comparison, served: bool) -> String {
    let mut t = String::from(r#"<section id="prod-labels">"#);
    t.push_str(&label_breakdown_form(q, served));
    if let Some(key) = q.by.as_deref() {
        let link = |value: &str| only_value_link(q, key, value, served);
        for b in &cmp.breakdowns {
            t.push_str(&labels::breakdown_table(b, &link));
        }
    }
    t.push_str("</section>");
    t
}

/// The link to the samples of `key=value` alone, on a served page.
fn only_value_link(q: &ProdQuery, key: &str, value: &str, served: bool) -> Option<String> {
    let mut narrowed = q.clone();
    narrowed.sample_labels.push((key.to_owned(), value.to_owned()));
    narrowed.by = None;
    served.then(|| format!(r#"<a href="/prod/view?{}">only this</a>"#, esc(&query_string(&narrowed))))
}

/// The breakdown by a sample label (`by`): the share of the profile's default measure per value
/// of that label, from the stacks of the selected windows (read for their labels, not from the
/// rollups), each value a link that keeps only its samples; and the forms above.
fn label_breakdown(q: &ProdQuery, stacks: &[contprof_engine::profile::Profile], served: bool) -> String {
    let mut t = String::from(r#"<section id="prod-labels">"#);
    t.push_str(&label_breakdown_form(q, served));
    let Some(key) = q.by.as_deref() else {
        t.push_str("</section>");
        return t;
    };
    if contprof_engine::prod::rollup::NOT_IN_ROLLUPS.contains(&key) {
        let _ = write!(
            t,
            r#"<p id="label-breakdown-none">Nothing breaks down by <code>{}</code>: the views do not keep it (one value per request or thread, or the same in every sample); a trace opens with its id (<code>trace=ID</code>).</p></section>"#,
            esc(key)
        );
        return t;
    }
    let (measure, parts) = labels::parts(stacks, key);
    let link = |value: &str| only_value_link(q, key, value, served);
    t.push_str(&labels::table(key, &measure, &parts, &link));
    t.push_str("</section>");
    t
}

/// The current selection as hidden inputs of a form that adds to it: everything but the
/// breakdown key (`with_samples`: and with the sample-label filters).
fn hidden_inputs(q: &ProdQuery, with_samples: bool) -> String {
    let mut h = String::new();
    let mut put = |k: &str, v: &str| h.push_str(&hidden_input(k, v));
    put("service", &q.service);
    put("type", &q.profile_type);
    put("since", &q.since);
    if let Some(u) = &q.until {
        put("until", u);
    }
    for (k, v) in &q.labels {
        put("label", &format!("{k}={v}"));
    }
    if with_samples {
        for (k, v) in &q.sample_labels {
            put("sample_label", &format!("{k}={v}"));
        }
    }
    if let Some(f) = &q.function {
        put("function", f);
    }
    h
}

/// The timeline: each series' mean total per window over time, as an inline SVG (no script),
/// with a tooltip per point.
fn timeline(
    series: &[(String, &Observation)],
    metric: Option<Metric>,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    by: &str,
) -> String {
    let Some(metric) = metric else { return String::new() };
    let points: Vec<(&str, i64, f64)> = series
        .iter()
        .map(|(name, o)| (name.as_str(), o.key.start, o.costs.totals.get(&metric).map_or(0.0, |t| t.value)))
        .collect();
    let title = format!("Timeline: {} per window, by {}", esc(metric.as_str()), esc(by));
    let fmt = |v: f64| render_amount(metric, v);
    chart(
        &points,
        (since, until),
        ["prod-timeline", "timeline", "timeline-legend"],
        &title,
        (&fmt, " per window"),
    )
}

/// Values of a sample label drawn over time at most; the others are summed as one.
const LABEL_SERIES: usize = 8;

/// Each value of the sample label `key` over time (`by=KEY`): its share of each window's measure,
/// one series per value (the [`LABEL_SERIES`] largest; the rest as "other values"; samples
/// without the label as "(no such label)"), from the windows' totals per value
/// ([`Want::by_label`]).
fn label_timeline(
    key: &str,
    observations: &[Observation],
    metric: Option<Metric>,
    span: (DateTime<Utc>, DateTime<Utc>),
) -> String {
    let Some(metric) = metric else { return String::new() };
    let mut totals: BTreeMap<Option<&str>, f64> = BTreeMap::new();
    for per_value in observations.iter().filter_map(|o| o.costs.by_label.get(&metric)) {
        for (value, v) in per_value {
            *totals.entry(value.as_deref()).or_default() += v;
        }
    }
    if totals.values().all(|&v| v <= 0.0) {
        return String::new();
    }
    let mut order: Vec<(Option<&str>, f64)> = totals.into_iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let drawn: BTreeSet<Option<&str>> = order.iter().take(LABEL_SERIES).map(|(v, _)| *v).collect();
    let name = |value: Option<&str>| -> String {
        match value {
            _ if !drawn.contains(&value) => "other values".to_owned(),
            Some(v) => v.to_owned(),
            None => contprof_engine::compare::NO_SUCH_LABEL.to_owned(),
        }
    };
    let mut points: Vec<(String, i64, f64)> = Vec::new();
    for o in observations {
        let Some(per_value) = o.costs.by_label.get(&metric) else { continue };
        let total: f64 = per_value.values().sum();
        if total <= 0.0 {
            continue;
        }
        let mut shares: BTreeMap<String, f64> = BTreeMap::new();
        for (value, v) in per_value {
            *shares.entry(name(value.as_deref())).or_default() += v / total;
        }
        points.extend(shares.into_iter().map(|(n, share)| (n, o.key.start, share)));
    }
    let points: Vec<(&str, i64, f64)> = points.iter().map(|(n, at, v)| (n.as_str(), *at, *v)).collect();
    let title = format!(
        "By sample label <code>{}</code>: each value's share of {} per window",
        esc(key),
        esc(metric.as_str())
    );
    chart(
        &points,
        span,
        ["prod-label-timeline", "label-timeline", "label-timeline-legend"],
        &title,
        (&|v| format!("{:.1}% of {}", 100.0 * v, metric.as_str()), ""),
    )
}

/// A change of a function's share whose test gives a p value below this is shown as a change.
const CHANGED_P: f64 = 0.01;

/// `< 0.001`, or `= 0.042`.
fn p_text(p: f64) -> String {
    esc(&contprof_engine::compare::p_value(p))
}

/// One function's part of each window's measure over time, coloured by `by` (`function=NAME`):
/// its self cost over the window's total, then, version by version in time order, the median
/// share in the first and the second half of the version's windows (a change inside a version)
/// and against the version before (a change at a version boundary), each tested ([`CHANGED_P`]).
fn function_timeline(
    function: &str,
    series: &[(String, &Observation)],
    metric: Option<Metric>,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    by: &str,
) -> String {
    let Some(metric) = metric else { return String::new() };
    let share = |o: &Observation| -> Option<f64> {
        let total = o.costs.totals.get(&metric)?.value;
        let own = o.costs.functions.get(function).and_then(|m| m.get(&metric)).map_or(0.0, |c| c.self_);
        (total > 0.0).then(|| own / total)
    };
    let points: Vec<(&str, i64, f64)> =
        series.iter().filter_map(|(name, o)| Some((name.as_str(), o.key.start, share(o)?))).collect();
    let title = format!(
        "<code>{}</code>: its share of {} per window, by {}",
        esc(function),
        esc(metric.as_str()),
        esc(by)
    );
    let mut t = chart(
        &points,
        (since, until),
        ["prod-function-timeline", "function-timeline", "function-timeline-legend"],
        &title,
        (&|v| format!("{:.1}% of {}", 100.0 * v, metric.as_str()), ""),
    );
    // Versions in the order their first window came.
    let mut versions: Vec<(&str, Vec<(i64, f64)>)> = Vec::new();
    for (_, o) in series {
        let Some(v) = share(o) else { continue };
        let version = o.key.deployment.version.as_str();
        match versions.iter_mut().find(|(name, _)| *name == version) {
            Some((_, points)) => points.push((o.key.start, v)),
            None => versions.push((version, vec![(o.key.start, v)])),
        }
    }
    versions.sort_by_key(|(_, points)| points.iter().map(|p| p.0).min());
    let median = |mut v: Vec<f64>| contprof_engine::compare::median(&mut v);
    // A change with its test: Yuen's trimmed test of the two groups of windows' shares, so that a
    // change at the boundary is told from a version's own drift, and both from sampling noise.
    let change = |from: &[f64], to: &[f64]| -> String {
        let (Some(a), Some(b)) = (median(from.to_vec()), median(to.to_vec())) else {
            return "–".to_owned();
        };
        if a <= 0.0 {
            return "–".to_owned();
        }
        let text = format!("{:+.1}%", 100.0 * (b / a - 1.0));
        match contprof_engine::compare::two_sample_p(from, to) {
            Some(p) if p < CHANGED_P => format!(r#"<b data-changed="yes">{text}</b> (p {})"#, p_text(p)),
            Some(p) => format!(r#"<span data-changed="no">{text}</span> (p {}, noise)"#, p_text(p)),
            None => text,
        }
    };
    // Within a version: its first half of windows against its second. At the boundary: the
    // version before's second half against this one's first, the windows either side of the
    // rollout, so that a version's own drift does not read as a change at its boundary.
    let mut rows = String::new();
    let mut before: Vec<f64> = Vec::new();
    for (version, mut points) in versions {
        points.sort_by_key(|p| p.0);
        let half = points.len() / 2;
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let all = median(values.clone());
        let _ = write!(
            rows,
            r#"<tr data-version="{v}"><td>{v}</td><td class="num">{n}</td><td class="num">{m}</td><td class="num">{within}</td><td class="num">{boundary}</td></tr>"#,
            v = esc(version),
            n = points.len(),
            m = all.map_or_else(|| "–".to_owned(), |m| format!("{:.2}%", 100.0 * m)),
            within = change(&values[..half], &values[half..]),
            boundary = change(&before, &values[..half]),
        );
        before = values[half..].to_vec();
    }
    let _ = write!(
        t,
        r#"<table id="function-versions"><thead><tr><th>version</th><th class="num">windows</th><th class="num">median share</th><th class="num">within the version (first half → second)</th><th class="num">from the version before</th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    t
}

/// A chart of `points` (series, window start, value) over the span: each series' mean value per
/// time bucket, as an inline SVG (no script) with a tooltip per point (`fmt` writes a value, the
/// tooltips add `suffix`). `ids`: the section's, the SVG's and the legend's element ids; `title`
/// is markup.
fn chart(
    points: &[(&str, i64, f64)],
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    ids: [&str; 3],
    title: &str,
    (fmt, suffix): (&dyn Fn(f64) -> String, &str),
) -> String {
    let (start, end) = (since.timestamp(), until.timestamp().max(since.timestamp() + 1));
    let first = points.iter().map(|p| p.1).min().unwrap_or(start).max(start);
    let span = (end - first).max(1);
    let buckets = TIMELINE_BUCKETS.min(points.len().max(1));
    let width = 900.0;
    let height = 160.0;
    // series name -> bucket -> (sum, windows)
    let mut sums: BTreeMap<&str, BTreeMap<usize, (f64, usize)>> = BTreeMap::new();
    let mut max: f64 = 0.0;
    for &(name, at, v) in points {
        let b = (((at - first).max(0) as f64 / span as f64) * buckets as f64) as usize;
        let e = sums.entry(name).or_default().entry(b.min(buckets - 1)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    for series in sums.values() {
        for (sum, n) in series.values() {
            max = max.max(sum / *n as f64);
        }
    }
    let max = if max > 0.0 { max } else { 1.0 };
    let x = |b: usize| 40.0 + (b as f64 + 0.5) / buckets as f64 * (width - 50.0);
    let y = |v: f64| 10.0 + (1.0 - v / max) * (height - 30.0);
    let [section, svg_id, legend_id] = ids;
    let mut svg = format!(
        r#"<section id="{section}"><h2>{title}</h2><svg id="{svg_id}" viewBox="0 0 {width} {height}" width="100%" height="{height}" role="img" aria-label="value per window over time">"#,
    );
    let _ = write!(
        svg,
        r##"<line x1="40" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="2" y="16" font-size="10">{top}</text><text x="2" y="{b}" font-size="10">0</text><text x="40" y="{h}" font-size="10">{from}</text><text x="{r}" y="{h}" font-size="10" text-anchor="end">{to}</text>"##,
        b = height - 20.0,
        r = width - 10.0,
        h = height - 6.0,
        top = esc(&fmt(max)),
        from = esc(&rfc3339(DateTime::from_timestamp(first, 0).unwrap_or(since))),
        to = esc(&rfc3339(until)),
    );
    let mut legend = String::new();
    for (i, (name, series)) in sums.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let coords: Vec<String> =
            series.iter().map(|(&b, (sum, n))| format!("{:.1},{:.1}", x(b), y(sum / *n as f64))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{n}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            coords.join(" "),
            n = esc(name)
        );
        for (&b, (sum, count)) in series {
            let t = first + (b as i64 * span) / buckets as i64;
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{color}"><title>{}: {}{suffix}, {} window(s) from {}</title></circle>"#,
                x(b),
                y(sum / *count as f64),
                esc(name),
                esc(&fmt(sum / *count as f64)),
                count,
                esc(&rfc3339(DateTime::from_timestamp(t, 0).unwrap_or(since)))
            );
        }
        let _ = write!(
            legend,
            r#"<span class="legend-item"><span class="swatch" style="background:{color}"></span>{}</span> "#,
            esc(name)
        );
    }
    let _ = write!(svg, r#"</svg><div id="{legend_id}">{legend}</div></section>"#);
    svg
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::super::http::{Answer, MAX_IN_FLIGHT, Request, Response};
    use super::super::server::State;
    use super::super::{ServeOptions, Server};
    use contprof_engine::store::{Store, StoreLocation};

    const GET_PROD: &[u8] = b"GET /prod HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn an_answer_that_timed_out_is_told_to_stop_and_frees_its_slot() {
        let store = tempfile::tempdir().unwrap();
        let mut opts = ServeOptions::new(StoreLocation::Dir(store.path().to_path_buf()));
        opts.bind = "127.0.0.1:0".parse().unwrap();
        opts.answer_timeout = Duration::from_millis(200);
        let server = Server::bind(opts).unwrap();
        let addr = server.addr();
        // Work that goes on until it is told to stop (at most 10 s, so that a server that never
        // tells it fails this test instead of hanging it).
        let answer: Answer = std::sync::Arc::new(|r: &Request| {
            let flag = r.cancel.flag();
            let end = Instant::now() + Duration::from_secs(10);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            Response::text(200, "done\n")
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let serving = std::thread::spawn(move || server.run_answering(&flag, answer));
        let slow: Vec<_> =
            (0..MAX_IN_FLIGHT).map(|_| std::thread::spawn(move || ask(addr, GET_PROD))).collect();
        for s in slow {
            let got = s.join().unwrap();
            assert!(got.starts_with("HTTP/1.1 503") && got.contains("no answer within"), "{got}");
        }
        // Every slot was taken by an answer given up on; they are free again at once.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let got = ask(addr, GET_PROD);
            if !got.contains("too many requests") {
                break;
            }
            assert!(Instant::now() < deadline, "the slots of the answers given up on are still taken: {got}");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        serving.join().unwrap().unwrap();
    }

    #[test]
    fn a_view_whose_client_stopped_waiting_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        let now = chrono::Utc::now().timestamp();
        let p = contprof_engine::profile::test_support::synth(&[(&["main", "work"], 1_000_000, 0)])
            .project(&["samples", "cpu"], "cpu");
        for i in 0..10 {
            crate::tests::put_api_window(&store, "1", "a", now - 60 * i, &p);
        }
        let state = State::new(StoreLocation::Dir(dir.path().to_path_buf()), false);
        let request = |cancelled: bool| {
            let (parts, ()) = hyper::Request::builder()
                .uri("/prod/view?service=api&type=cpu&since=1h")
                .header("host", "localhost")
                .body(())
                .unwrap()
                .into_parts();
            let r = Request::new(&parts, false).unwrap();
            r.cancel.flag().store(cancelled, Ordering::Relaxed);
            r
        };
        assert_eq!(state.route(&request(false)).map(|r| r.status).map_err(|f| f.message), Ok(200));
        let stopped = state.route(&request(true)).expect_err("no page for a client that left");
        assert_eq!(stopped.status, 503, "{}", stopped.message);
    }

    /// The breakdown row of `value` in `page`, up to its end.
    fn value_row(page: &str, value: &str) -> String {
        let at =
            page.find(&format!(r#"<tr data-value="{value}">"#)).unwrap_or_else(|| panic!("{value}: {page}"));
        page[at..].split("</tr>").next().unwrap().to_owned()
    }

    /// A CPU profile of one stack with `cpu` nanoseconds, its sample labelled `labels`.
    fn labelled(frames: &[&str], cpu: i64, labels: &[(&str, &str)]) -> contprof_engine::profile::Profile {
        let mut p = contprof_engine::profile::test_support::synth(&[(frames, cpu, 0)])
            .project(&["samples", "cpu"], "cpu");
        p.label_samples(labels);
        p
    }

    /// Windows whose samples carry `endpoint` and `trace_id` labels (from `tracing` spans):
    /// broken down by `endpoint` in the view, and one trace's samples alone by `trace`.
    #[test]
    fn a_view_breaks_down_by_a_sample_label_and_opens_one_traces_samples() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        let now = chrono::Utc::now().timestamp();
        let search_trace = "5ea4c4000000000000000000000000a1";
        let window = contprof_engine::profile::merge(&[
            labelled(
                &["main", "search_cpu"],
                2_000_000,
                &[("endpoint", "/search"), ("trace_id", search_trace)],
            ),
            labelled(
                &["main", "items_cpu"],
                1_000_000,
                &[("endpoint", "/items"), ("trace_id", "00000000000000000000000000017e55")],
            ),
            labelled(&["main", "client_work"], 1_000_000, &[]),
        ])
        .unwrap();
        for i in 0..3 {
            crate::tests::put_api_window(&store, "1", "a", now - 60 * i, &window);
        }
        let state = State::new(StoreLocation::Dir(dir.path().to_path_buf()), false);
        let get = |uri: &str| crate::tests::get(&state, uri);
        let (status, page) = get("/prod/view?service=api&type=cpu&since=1h&by=endpoint");
        assert_eq!(status, 200, "{page}");
        let row = |value: &str| value_row(&page, value);
        assert!(row("/search").contains("50.0%"), "{}", row("/search"));
        assert!(row("/items").contains("25.0%"), "{}", row("/items"));
        assert!(row("").contains("(no such label)") && row("").contains("25.0%"), "{}", row(""));
        assert!(
            row("/search").contains("sample_label=endpoint%3D%2Fsearch"),
            "a link keeps only its samples"
        );
        // The same split over time: one series per value, each at its share of every window.
        let legend = page.split(r#"id="label-timeline-legend""#).nth(1).unwrap_or_default();
        for value in ["/search", "/items", "(no such label)"] {
            assert!(legend.contains(&super::esc(value)), "{value} in the legend: {legend:.400}");
        }
        for (value, share) in [("/search", "50.0%"), ("/items", "25.0%"), ("(no such label)", "25.0%")] {
            let point = format!("<title>{}: {share} of cpu, ", super::esc(value));
            assert!(page.contains(&point), "{point}: {page}");
        }

        // The functions the flame graph draws (its nodes), from the view's JSON.
        let drawn = |query: &str| {
            let (status, body) =
                get(&format!("/prod/view?service=api&type=cpu&since=1h&{query}&format=json"));
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let names = v["tree"]["fns"]["name"].as_array().unwrap().clone();
            let nodes = v["tree"]["fn"].as_array().unwrap();
            nodes
                .iter()
                .map(|i| names[i.as_u64().unwrap() as usize].as_str().unwrap().to_owned())
                .collect::<std::collections::BTreeSet<String>>()
        };
        // One trace, as a tracing UI would link it (upper case and a short id are accepted).
        let search = drawn(&format!("trace={}", search_trace.to_uppercase()));
        assert!(
            search.contains("search_cpu") && !search.contains("items_cpu") && !search.contains("client_work"),
            "{search:?}"
        );
        let items = drawn("trace=17e55");
        assert!(items.contains("items_cpu") && !items.contains("search_cpu"), "{items:?}");
        let (status, page) = get(&format!("/prod/view?service=api&type=cpu&since=1h&trace={search_trace}"));
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(r#"name="sample_label" value="trace_id="#), "the filter stays in the forms");
        let (status, _) = get("/prod/view?service=api&type=cpu&since=1h&trace=not-hex");
        assert_eq!(status, 400);
        let (status, page) = get("/prod/view?service=api&type=cpu&since=1h&trace=ffff");
        assert_ne!(status, 200, "a trace no sample carries selects nothing: {page}");
    }

    /// A comparison of two versions broken down by `endpoint`: `/search` does twice the work in
    /// version 2 (2 of 7 ms of each window, then 4 of 9 ms), with some noise between windows:
    /// its share moves from 28.6% to 44.4%, tested window against window; `/items` did not do
    /// more but its share fell, which the amount beside it shows.
    #[test]
    fn a_comparison_of_versions_breaks_down_by_a_sample_label_with_each_value_tested() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        let now = chrono::Utc::now().timestamp();
        let window = |search: i64, noise: i64| {
            contprof_engine::profile::merge(&[
                labelled(&["main", "search_cpu"], search + noise, &[("endpoint", "/search")]),
                labelled(&["main", "items_cpu"], 1_000_000 - noise, &[("endpoint", "/items")]),
                labelled(&["main", "client_work"], 4_000_000, &[]),
            ])
            .unwrap()
        };
        let noise = [0, 40_000, -40_000, 20_000, -20_000];
        for (i, n) in noise.iter().enumerate() {
            let at = now - 600 + 60 * i as i64;
            crate::tests::put_api_window(&store, "1", "a", at - 600, &window(2_000_000, *n));
            crate::tests::put_api_window(&store, "2", "a", at, &window(4_000_000, *n));
        }
        let state = State::new(StoreLocation::Dir(dir.path().to_path_buf()), false);
        let (status, page) = crate::tests::get(
            &state,
            "/prod/view?service=api&type=cpu&since=1h&base=version%3D1&head=version%3D2&by=endpoint",
        );
        assert_eq!(status, 200, "{page}");
        let row = |value: &str| value_row(&page, value);
        let search = row("/search");
        assert!(search.contains("28.6%") && search.contains("44.4%"), "{search}");
        assert!(search.contains(r#"<b data-changed="yes">+55.6%</b>"#), "{search}");
        assert!(
            search.contains("sample_label=endpoint%3D%2Fsearch"),
            "a link keeps only its samples: {search}"
        );
        let items = row("/items");
        assert!(items.contains("14.3%") && items.contains("11.1%") && items.contains("1.0 ms"), "{items}");
        assert!(page.contains("each value's share of each run tested"), "{page}");
    }

    #[test]
    fn the_services_page_lists_the_rollouts_judged_with_links_to_their_comparison() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        assert!(!super::services_page(&store).unwrap().contains("id=\"rollouts\""), "no verdict, no table");
        let verdict = serde_json::json!({
            "service": "web", "type": "cpu", "base": "1.3", "head": "1.4", "status": "regressed",
            "base_windows": 12, "head_windows": 11, "regressions": [["service::render_rows", 2.76]],
            "judged_at": "2026-12-06T01:00:00Z"
        });
        let bytes = serde_json::to_vec(&verdict).unwrap();
        assert!(store.put_rollout_verdict(("web", "cpu"), ("1.3", "1.4"), bytes.clone()).unwrap());
        assert!(!store.put_rollout_verdict(("web", "cpu"), ("1.3", "1.4"), bytes).unwrap(), "judged once");
        let page = super::services_page(&store).unwrap();
        assert!(page.contains(r#"<tr class="rollout regressed"><td>web</td><td>1.3 → 1.4</td>"#), "{page}");
        assert!(page.contains("service::render_rows +276.0%"), "{page}");
        assert!(
            page.contains("/prod/compare?service=web&amp;type=cpu&amp;since=30d")
                && page.contains("base=version%3D1.3")
                && page.contains("head=version%3D1.4"),
            "{page}"
        );
    }

    /// Issue 30: one function's share of each window over time, by version, each change tested:
    /// `app::parse` holds 20% of the CPU in 1.0 and 30% in 1.1, each steady but for sampling
    /// noise (a step at the 1.1 boundary); 1.2 starts at 30% and moves to 40% halfway (an input
    /// change inside the version, none at its boundary).
    #[test]
    fn a_functions_share_over_time_tells_a_version_boundary_from_a_change_inside_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        let now = chrono::Utc::now().timestamp();
        let noise = [0, 500_000, -500_000, 1_000_000, -1_000_000, 250_000, -250_000, 0];
        for (i, version) in ["1.0", "1.1", "1.2"].iter().flat_map(|v| [*v; 8]).enumerate() {
            let share = match (version, i % 8) {
                ("1.0", _) => 20_000_000,
                ("1.2", 4..) => 40_000_000,
                _ => 30_000_000,
            };
            let parse = share + noise[i % 8];
            let window = contprof_engine::profile::test_support::synth(&[
                (&["main", "app::parse"], parse, 0),
                (&["main", "app::rest"], 100_000_000 - parse, 0),
            ])
            .project(&["samples", "cpu"], "cpu");
            crate::tests::put_api_window(&store, version, "a", now - 1_800 + 60 * i as i64, &window);
        }
        let state = State::new(StoreLocation::Dir(dir.path().to_path_buf()), false);
        let (status, page) =
            crate::tests::get(&state, "/prod/view?service=api&type=cpu&since=1h&function=app%3A%3Aparse");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(r#"<svg id="function-timeline""#) && page.contains("20.0% of cpu"), "{page}");
        let row = |v: &str| {
            let at =
                page.find(&format!(r#"<tr data-version="{v}">"#)).unwrap_or_else(|| panic!("{v}: {page}"));
            page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
        };
        let cells = |v: &str| -> Vec<String> {
            row(v).split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..].replace("</td>", "")).collect()
        };
        let (v10, v11, v12) = (cells("1.0"), cells("1.1"), cells("1.2"));
        assert_eq!(v10[..3], ["1.0", "8", "20.00%"], "{v10:?}");
        assert!(v10[3].contains(r#"data-changed="no""#) && v10[4] == "–", "{v10:?}");
        // 1.1: a step at its boundary, none inside.
        assert!(v11[3].contains(r#"data-changed="no""#), "{v11:?}");
        assert!(v11[4].contains(r#"data-changed="yes">+5"#) && v11[4].contains("p &lt; 0.001"), "{v11:?}");
        // 1.2: a change inside, none at its boundary.
        assert!(v12[3].contains(r#"data-changed="yes">+3"#), "{v12:?}");
        assert!(v12[4].contains(r#"data-changed="no""#) && v12[4].contains("noise"), "{v12:?}");
        // The filter form keeps the function.
        assert!(page.contains(r#"<input type="hidden" name="function" value="app::parse">"#), "{page}");
        // Without `function`, no such chart.
        let (_, page) = crate::tests::get(&state, "/prod/view?service=api&type=cpu&since=1h");
        assert!(!page.contains("function-timeline"));
    }
}
