//! The fleet page (`/prod/top`): what `cargo contprof prod top` prints, over every service in the
//! store: the services, the functions and the crates that cost the most core-seconds a day, who
//! pays for each, their trend over the span and what a speed-up would save. The figures are the
//! engine's (`prod::top`); this module only reads the store and writes the tables.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use super::page::{CSS, hidden_input, html_escape as esc};
use super::prod::query_string;
use super::prod::spanned;
use super::query::{ProdQuery, TopQuery, url_escape};
use contprof_engine::errors::{Error, Result};
use contprof_engine::prod::top::{self, Cost, Fleet, Measure, Words};
use contprof_engine::store::Store;

/// The page (or, with `q.json`, the figures' JSON) of the fleet's CPU over `q`'s span. `cancel`,
/// set when the client stopped waiting, ends the reading early.
pub fn fleet_page(
    store: &Store,
    q: &TopQuery,
    cancel: Option<Arc<AtomicBool>>,
    now: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let measure = if q.heap { Measure::Heap } else { Measure::Cpu };
    let selection = spanned(&q.since, q.until.as_deref(), &q.labels, now)?;
    let (fleet, warnings, _) = contprof_engine::prod::fleet::read(store, &selection, measure, cancel, now)?;
    if q.json {
        let mut out = Vec::new();
        top::write_json(&fleet, q.limit, q.speedup, &mut out).map_err(|e| Error::msg(e.to_string()))?;
        return Ok(out);
    }
    Ok(page(store, q, &fleet.limited(q.limit), &warnings).into_bytes())
}

/// `+12.3%`, or a dash.
fn trend(t: Option<f64>) -> String {
    t.map_or_else(|| "–".to_owned(), |t| format!("{:+.1}%", 100.0 * t))
}

/// The cost table of `costs` (`id`: `fleet-functions` or `fleet-crates`), headed and scaled by
/// `w`; `link` gives a row's link (a function's timeline in the service that pays most for it).
fn cost_table(
    id: &str,
    title: &str,
    costs: &[Cost],
    speedup: f64,
    w: Words,
    link: &dyn Fn(&Cost) -> Option<String>,
) -> String {
    let mut rows = String::new();
    for (i, c) in costs.iter().enumerate() {
        let paid_by: Vec<String> = c
            .services
            .iter()
            .map(|p| {
                let part = if c.value > 0.0 { p.value / c.value } else { 0.0 };
                format!("{} {:.0}%", esc(&p.service), 100.0 * part)
            })
            .collect();
        let krate = c
            .krate
            .as_deref()
            .map(|k| format!(r#" <span class="muted">{}</span>"#, esc(k)))
            .unwrap_or_default();
        let name = match link(c) {
            Some(href) => format!(r#"<a href="{}"><code>{}</code></a>"#, esc(&href), esc(&c.name)),
            None => format!("<code>{}</code>", esc(&c.name)),
        };
        let _ = write!(
            rows,
            r#"<tr data-name="{n}"><td class="num">{rank}</td><td>{name}{krate}</td><td class="num">{cost:.1}</td><td class="num">{share:.1}%</td><td class="num">{trend}</td><td class="num">{saves:.1}</td><td>{paid}</td></tr>"#,
            n = esc(&c.name),
            rank = i + 1,
            cost = c.value * w.scale,
            share = 100.0 * c.share,
            trend = trend(c.trend),
            saves = speedup * c.value * w.scale,
            paid = paid_by.join(", "),
        );
    }
    format!(
        r#"<h2>{title}</h2><table id="{id}"><thead><tr><th class="num">#</th><th>{title_one}</th><th class="num">{value}</th><th class="num">share</th><th class="num">trend</th><th class="num">{pct:.0}% {better} saves ({value})</th><th>paid by</th></tr></thead><tbody>{rows}</tbody></table>"#,
        value = w.value,
        better = w.better,
        title_one = if id == "fleet-crates" { "crate" } else { "function" },
        pct = 100.0 * speedup,
    )
}

fn page(store: &Store, q: &TopQuery, fleet: &Fleet, warnings: &[String]) -> String {
    let w = Words::of(fleet.measure);
    let at = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
    };
    let mut body = format!(
        r#"<form class="controls" method="get" action="/prod/top" id="fleet-form"><label>since <input name="since" size="10" value="{since}"></label> <label>until <input name="until" size="10" value="{until}"></label> <label>rows <input name="limit" size="4" value="{limit}"></label> <label>speed-up <input name="speedup" size="4" value="{speedup}"></label> <label>measure <select name="type"><option value="cpu"{cpu}>CPU</option><option value="heap"{heap}>heap in use</option></select></label>{labels} <button type="submit">Show</button></form><p id="fleet-span">{from} to {to} UTC ({days:.1} days): {services} services, {windows} windows. A service's figure is each hour's windows' mean times the replicas that recorded windows that hour (see the production chapter for the method and its error).</p>"#,
        since = esc(&q.since),
        until = esc(q.until.as_deref().unwrap_or("")),
        limit = q.limit,
        speedup = q.speedup,
        cpu = if q.heap { "" } else { " selected" },
        heap = if q.heap { " selected" } else { "" },
        labels = q.labels.iter().map(|(k, v)| hidden_input("label", &format!("{k}={v}"))).collect::<String>(),
        from = at(fleet.since),
        to = at(fleet.until),
        days = fleet.days,
        services = fleet.services.len(),
        windows = fleet.windows,
    );
    for w in warnings {
        let _ = write!(body, r#"<p class="warning">{}</p>"#, esc(w));
    }
    if fleet.without_length > 0 {
        let _ = write!(
            body,
            r#"<p class="warning">{} windows of unknown length left out (rollups written by an older cargo contprof; <code>prod compact --full</code> writes them again)</p>"#,
            fleet.without_length
        );
    }
    if fleet.services.is_empty() {
        let _ =
            write!(body, r#"<p id="empty">No CPU window in the span in the store {}.</p>"#, esc(store.url()));
    } else {
        let mut rows = String::new();
        for s in &fleet.services {
            let view = ProdQuery {
                service: s.service.clone(),
                profile_type: fleet.measure.profile_type().into(),
                since: q.since.clone(),
                until: q.until.clone(),
                labels: q.labels.clone(),
                color: "version".into(),
                ..ProdQuery::default()
            };
            let _ = write!(
                rows,
                r#"<tr data-service="{s}"><td><a href="/prod/view?{link}">{s}</a></td><td class="num">{cost:.1}</td><td class="num">{cores:.2}</td><td class="num">{replicas:.1}</td><td class="num">{windows}</td><td class="num">{trend}</td></tr>"#,
                s = esc(&s.service),
                link = esc(&query_string(&view)),
                cost = s.value * w.scale,
                cores = s.level * w.scale,
                replicas = s.instances,
                windows = s.windows,
                trend = trend(s.trend),
            );
        }
        let _ = write!(
            body,
            r#"<h2>Services</h2><table id="fleet-services"><thead><tr><th>service</th><th class="num">{value}</th><th class="num">{level}</th><th class="num">replicas</th><th class="num">windows</th><th class="num">trend</th></tr></thead><tbody>{rows}</tbody></table>"#,
            value = w.value,
            level = w.level,
        );
        let timeline = |c: &Cost| -> Option<String> {
            let payer = c.services.first()?;
            let view = ProdQuery {
                service: payer.service.clone(),
                profile_type: fleet.measure.profile_type().into(),
                since: q.since.clone(),
                until: q.until.clone(),
                labels: q.labels.clone(),
                color: "version".into(),
                function: Some(c.name.clone()),
                ..ProdQuery::default()
            };
            Some(format!("/prod/view?{}#prod-function-timeline", query_string(&view)))
        };
        body.push_str(&cost_table("fleet-functions", "Functions", &fleet.functions, q.speedup, w, &timeline));
        body.push_str(&cost_table("fleet-crates", "Crates", &fleet.crates, q.speedup, w, &|_| None));
    }
    let mut parts = vec![("since", q.since.clone())];
    parts.extend(q.until.iter().map(|u| ("until", u.clone())));
    parts.extend(q.labels.iter().map(|(k, v)| ("label", format!("{k}={v}"))));
    parts.extend([
        ("limit", q.limit.to_string()),
        ("speedup", q.speedup.to_string()),
        ("format", "json".into()),
    ]);
    let json_link = format!(
        "/prod/top?{}",
        parts.iter().map(|(k, v)| format!("{k}={}", url_escape(v))).collect::<Vec<_>>().join("&")
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · cargo contprof</title>\
         <style>{CSS}</style></head><body><header><nav><a href=\"/prod\">← production</a> · <a href=\"{json}\">JSON</a></nav>\
         <h1>{title} in store <code id=\"store\">{store}</code></h1></header><main>{body}</main></body></html>\n",
        json = esc(&json_link),
        store = esc(store.url()),
        title = w.title,
    )
}

#[cfg(test)]
mod tests {
    use contprof_engine::store::StoreLocation;

    use crate::server::State;

    /// Two replicas of `api` using half a core each (10 s windows of 5 s of CPU, in turn, for
    /// the last 20 minutes), 80% of it in `api::handle`: the fleet page and its JSON say 1 core and
    /// 2 replicas, and list the function with its crate.
    #[test]
    fn the_fleet_page_lists_services_functions_and_crates_in_cores() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            contprof_engine::store::Store::open(&StoreLocation::Dir(dir.path().to_path_buf())).unwrap();
        let mut window = contprof_engine::profile::test_support::synth(&[
            (&["main", "api::handle"], 4_000_000_000, 0),
            (&["main", "serde_json::to_vec"], 1_000_000_000, 0),
        ])
        .project(&["samples", "cpu"], "cpu");
        window.duration_nanos = 10_000_000_000;
        let now = chrono::Utc::now().timestamp();
        // Within one hour, so that both replicas are counted in each hour that has windows.
        let first = now - now.rem_euclid(3600) - 3600;
        for minute in 0..20 {
            crate::tests::put_api_window(
                &store,
                "1",
                ["a", "b"][minute as usize % 2],
                first + 60 * minute,
                &window,
            );
        }
        let state = State::new(StoreLocation::Dir(dir.path().to_path_buf()), false);
        let get = |uri: &str| crate::tests::get(&state, uri);
        let (status, json) = get("/prod/top?since=3h&format=json");
        assert_eq!(status, 200, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let api = &v["fleet"]["services"][0];
        assert_eq!((api["service"].as_str(), api["instances"].as_f64()), (Some("api"), Some(2.0)), "{v:#}");
        assert!((api["level"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{v:#}");
        assert_eq!(v["fleet"]["functions"][0]["name"], "api::handle");
        assert_eq!(v["fleet"]["crates"][1]["name"], "serde_json");

        let (status, page) = get("/prod/top?since=3h&limit=5&speedup=0.2");
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains(r#"<table id="fleet-services">"#) && page.contains(r#"<tr data-service="api">"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<tr data-name="api::handle">"#) && page.contains("20% faster saves"),
            "{page}"
        );
        assert!(page.contains(r#"href="/prod/view?service=api&amp;type=cpu&amp;since=3h"#), "{page}");
        let timeline = r#"href="/prod/view?service=api&amp;type=cpu&amp;since=3h&amp;function=api%3A%3Ahandle#prod-function-timeline""#;
        assert!(page.contains(timeline), "each function links to its timeline: {page}");
        let (_, services) = get("/prod");
        assert!(services.contains(r#"id="fleet-link""#), "the production page links to the fleet");
        assert_eq!(get("/prod/top?limit=0").0, 400);
        assert_eq!(get("/prod/top?speedup=2").0, 400);
        assert_eq!(get("/prod/top?service=x").0, 400);
    }
}
