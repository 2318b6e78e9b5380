//! The run list of the server (`GET /`): a filter form (commit, branch, target/test/benchmark group,
//! tags, time span) and the matching runs with boxes to pick runs to merge (`/view`) or to compare
//! (`/compare`, base and head columns). Plain HTML forms; no script needed.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::page::{CSS, html_escape as esc};
use super::query::ListQuery;
use contprof_engine::store::{Log, rfc3339};

/// The whole run list page for `query` over the runs found.
pub fn render(store: &str, query: &ListQuery, log: &Log) -> String {
    let f = &query.filter;
    let value = |v: Option<&String>| v.map_or_else(String::new, |s| esc(s));
    let tags: Vec<String> = f.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let date = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(String::new, rfc3339);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<header><nav><a href="/prod" id="to-prod">production →</a></nav><h1>Runs in store <code id="store">{store}</code></h1>
<form class="controls" method="get" action="/" id="run-filter">
<label>commit <input name="commit" size="12" value="{commit}"></label>
<label>branch <input name="branch" size="12" value="{branch}"></label>
<label>target/test/bench <input name="group" size="18" value="{group}"></label>
<label>tag <input name="tag" size="14" placeholder="key=value" value="{tag0}"></label>
<label>tag <input name="tag" size="14" placeholder="key=value" value="{tag1}"></label>
<label>since <input name="since" size="11" placeholder="2025-01-31" value="{since}"></label>
<label>until <input name="until" size="11" value="{until}"></label>
<button type="submit">Filter</button></form></header>"#,
        store = esc(store),
        commit = value(query.commit.as_ref()),
        branch = value(f.branch.as_ref()),
        group = value(f.target.as_ref()),
        tag0 = esc(tags.first().map_or("", String::as_str)),
        tag1 = esc(tags.get(1).map_or("", String::as_str)),
        since = esc(&date(f.since)),
        until = esc(&date(f.until)),
    );
    for w in &log.warnings {
        let _ = write!(body, r#"<p class="error">{}</p>"#, esc(&w.to_string()));
    }
    let groups: BTreeSet<&str> = log.runs.iter().flat_map(|r| r.groups.iter().map(String::as_str)).collect();
    let _ = write!(
        body,
        r#"<main><form method="get" id="pick" style="width:100%">
<div class="controls"><label>profile group <select name="group"><option value="">all groups</option>{options}</select></label>
<button type="submit" formaction="/view" id="view-selected">View selected runs (merged)</button>
<button type="submit" formaction="/compare" id="compare-selected">Compare base → head</button>
<span>{n} runs</span></div>
<table id="runs"><thead><tr><th>view</th><th>base</th><th>head</th><th>time</th><th>commit</th><th>branch</th>
<th>groups</th><th>tags</th><th>run</th></tr></thead><tbody>"#,
        options = groups.iter().map(|g| format!("<option>{}</option>", esc(g))).collect::<String>(),
        n = log.runs.len(),
    );
    for r in &log.runs {
        let id = esc(&r.run_id);
        let commit = r.commit.as_deref().map_or_else(|| r.key.clone(), |c| c.chars().take(12).collect());
        let dirty = if r.dirty { " (dirty)" } else { "" };
        let mut groups = r.groups.join(", ");
        if r.more_groups {
            groups.push_str(", …");
        }
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            body,
            r#"<tr data-run="{id}"><td><input type="checkbox" name="run" value="{id}"></td>
<td><input type="checkbox" name="base" value="{id}"></td><td><input type="checkbox" name="head" value="{id}"></td>
<td class="num">{time}</td><td><code>{commit}</code>{dirty}</td><td>{branch}</td><td>{groups}</td><td>{tags}</td>
<td><a href="/view?run={id}">{id}</a></td></tr>"#,
            time = esc(&rfc3339(r.time)),
            commit = esc(&commit),
            branch = esc(r.branch.as_deref().unwrap_or("")),
            groups = esc(&groups),
            tags = esc(&tags.join(" ")),
        );
    }
    body.push_str("</tbody></table></form></main>");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Runs · cargo contprof</title>\
         <style>{CSS}</style></head><body>{body}</body></html>\n"
    )
}

/// An error page: status, message, the store it concerns and a link back to the run list.
pub fn error_page(status: u16, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error {status} · cargo contprof</title>\
         <style>{CSS}</style></head><body><header><h1>Error {status}</h1><p class=\"error\" id=\"error\">{}</p>\
         <p><a href=\"/\">← runs</a></p></header></body></html>\n",
        esc(message)
    )
}
