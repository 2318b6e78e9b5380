//! Query strings of the server: decoding (`application/x-www-form-urlencoded`) and validation into
//! plain requests. Everything a client sends is checked here, before any store access: run ids must
//! have the shape of run ids, free text is bounded and free of control characters, and unknown or
//! repeated parameters are rejected, so a malformed query is a 400 with a message saying why.

use chrono::{DateTime, Utc};

use contprof_engine::store::{LogFilter, looks_like_run_id, parse_tag};

/// Most runs one view may merge or compare.
pub const MAX_RUNS: usize = 200;
/// Default and largest number of runs listed.
const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 10_000;
const MAX_TEXT: usize = 256;

/// A rejected query: the message is shown to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError(msg.into())
}

/// Decodes a query string into `(name, value)` pairs, in order.
pub fn decode(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(pairs)
}

fn percent_decode(s: &str) -> Result<String, QueryError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(byte.ok_or_else(|| bad(format!("malformed percent escape in `{s}`")))?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad(format!("`{s}` is not UTF-8 once decoded")))
}

fn text(name: &str, value: &str) -> Result<String, QueryError> {
    if value.len() > MAX_TEXT {
        return Err(bad(format!("`{name}` is longer than {MAX_TEXT} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("`{name}` contains control characters")));
    }
    Ok(value.trim().to_owned())
}

/// Percent-encodes a query value.
pub(crate) fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `key=value` pairs of a `sample_label` parameter (comma-separated ones too) added to `out`,
/// at most [`MAX_LABELS`] in all.
fn sample_label_pairs(name: &str, value: &str, out: &mut Vec<(String, String)>) -> Result<(), QueryError> {
    let v = text(name, value)?;
    for one in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (lk, lv) =
            one.split_once('=').ok_or_else(|| bad(format!("`{name}`: `{one}` is not key=value")))?;
        out.push((lk.trim().to_owned(), lv.trim().to_owned()));
    }
    if out.len() > MAX_LABELS {
        return Err(bad(format!("at most {MAX_LABELS} label filters")));
    }
    Ok(())
}

fn set_once(slot: &mut Option<String>, name: &str, value: &str) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(bad(format!("`{name}` is given twice")));
    }
    let v = text(name, value)?;
    *slot = (!v.is_empty()).then_some(v);
    Ok(())
}

fn time(name: &str, value: &str, end_of_day: bool) -> Result<DateTime<Utc>, QueryError> {
    contprof_engine::store::parse_time(value, Utc::now(), end_of_day).ok_or_else(|| {
        bad(format!(
            "`{name}` must be a date (2025-01-31), an RFC 3339 time or an age (7d, 12h), not `{value}`"
        ))
    })
}

/// `GET /`: which runs to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Store filter (branch, tags, group, time span, limit).
    pub filter: LogFilter,
    /// Keep runs whose commit starts with this (lowercase hex).
    pub commit: Option<String>,
}

impl ListQuery {
    /// Validates the parameters of the run list.
    pub fn parse(query: &str) -> Result<ListQuery, QueryError> {
        let mut q = ListQuery::default();
        let (mut branch, mut group, mut since, mut until, mut limit) = (None, None, None, None, None);
        for (k, v) in decode(query)? {
            match k.as_str() {
                "commit" => set_once(&mut q.commit, "commit", &v)?,
                "branch" => set_once(&mut branch, "branch", &v)?,
                "group" => set_once(&mut group, "group", &v)?,
                "since" => set_once(&mut since, "since", &v)?,
                "until" => set_once(&mut until, "until", &v)?,
                "limit" => set_once(&mut limit, "limit", &v)?,
                "tag" => {
                    let v = text("tag", &v)?;
                    if !v.is_empty() {
                        let tag = parse_tag(&v).map_err(|e| bad(format!("`tag`: {e}")))?;
                        q.filter.tags.push(tag);
                    }
                }
                other => return Err(bad(format!("unknown parameter `{other}` for the run list"))),
            }
        }
        if let Some(c) = &q.commit {
            let c = c.to_ascii_lowercase();
            if c.len() < 4 || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("`commit` must be 4 to 64 hex digits of a commit id, not `{c}`")));
            }
            q.commit = Some(c);
        }
        q.filter.branch = branch;
        q.filter.target = group;
        q.filter.since = since.map(|s| time("since", &s, false)).transpose()?;
        q.filter.until = until.map(|s| time("until", &s, true)).transpose()?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(bad(format!("`limit` must be a number from 1 to {MAX_LIMIT}, not `{l}`"))),
            },
        };
        // The commit prefix is applied after the store's filter, so the store's limit is kept off.
        q.filter.limit = if q.commit.is_some() { None } else { Some(limit) };
        Ok(q)
    }
}

/// `GET /view` and `GET /compare`: which runs and which profile group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewQuery {
    /// Runs to merge (`/view`).
    pub runs: Vec<String>,
    /// Base runs (`/compare`).
    pub base: Vec<String>,
    /// Head runs (`/compare`).
    pub head: Vec<String>,
    /// Keep profiles whose group is this or below it (`test/api` keeps `test/api/x`).
    pub group: Option<String>,
    /// `sample_label=K=V`: only the samples that carry these labels (values of one key are
    /// alternatives, keys combine), as `compare --sample-label` reads them.
    pub sample_labels: Vec<(String, String)>,
    /// `by=KEY`: the breakdown of the view by a sample label.
    pub by: Option<String>,
    /// Answer with the view's JSON instead of the page.
    pub json: bool,
}

impl ViewQuery {
    /// Validates the parameters of a view. The run list form posts to both views, so each accepts
    /// the other's run parameters.
    pub fn parse(query: &str) -> Result<ViewQuery, QueryError> {
        let mut q = ViewQuery::default();
        let mut format = None;
        for (k, v) in decode(query)? {
            let list = match k.as_str() {
                "run" => &mut q.runs,
                "base" => &mut q.base,
                "head" => &mut q.head,
                "group" => {
                    set_once(&mut q.group, "group", &v)?;
                    continue;
                }
                "sample_label" => {
                    sample_label_pairs(&k, &v, &mut q.sample_labels)?;
                    continue;
                }
                "by" => {
                    set_once(&mut q.by, "by", &v)?;
                    continue;
                }
                "format" => {
                    set_once(&mut format, "format", &v)?;
                    continue;
                }
                other => return Err(bad(format!("unknown parameter `{other}` for a view"))),
            };
            // A comma-separated list is accepted too, for hand-written URLs.
            for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !is_run_id(id) {
                    return Err(bad(format!("`{k}`: `{}` is not a run id", id.escape_debug())));
                }
                if !list.iter().any(|r| r == id) {
                    list.push(id.to_owned());
                }
            }
            if list.len() > MAX_RUNS {
                return Err(bad(format!("`{k}`: at most {MAX_RUNS} runs per view")));
            }
        }
        q.json = match format.as_deref() {
            None | Some("html") => false,
            Some("json") => true,
            Some(f) => return Err(bad(format!("`format` must be `html` or `json`, not `{f}`"))),
        };
        Ok(q)
    }

    /// The view's parameters as `(name, value)` pairs, as [`ViewQuery::parse`] reads them back
    /// (the HTML page: `format` is left out).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut parts: Vec<(&'static str, String)> = Vec::new();
        for (k, runs) in [("run", &self.runs), ("base", &self.base), ("head", &self.head)] {
            parts.extend(runs.iter().map(|r| (k, r.clone())));
        }
        if let Some(g) = &self.group {
            parts.push(("group", g.clone()));
        }
        parts.extend(self.sample_labels.iter().map(|(k, v)| ("sample_label", format!("{k}={v}"))));
        if let Some(by) = &self.by {
            parts.push(("by", by.clone()));
        }
        parts
    }

    /// The query string of [`ViewQuery::pairs`].
    pub fn to_query(&self) -> String {
        self.pairs().iter().map(|(k, v)| format!("{k}={}", url_escape(v))).collect::<Vec<_>>().join("&")
    }

    /// Whether a profile group is selected by `group`.
    pub fn selects(&self, group: &str) -> bool {
        match &self.group {
            None => true,
            Some(g) => group == g || (group.starts_with(g.as_str()) && group[g.len()..].starts_with('/')),
        }
    }
}

/// A run id as the store makes them (`20250101T120000.123456Z-0123456789`): the store's shape
/// check plus a strict alphabet, so that nothing else reaches a store path.
pub fn is_run_id(s: &str) -> bool {
    looks_like_run_id(s)
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `GET /prod/view` and `GET /prod/compare`: a selection of production windows, and for a
/// comparison its two sides. Label values are checked as text; what they mean is the selection's
/// (`prod::select`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProdQuery {
    /// The service.
    pub service: String,
    /// The profile type (`cpu` when not given).
    pub profile_type: String,
    /// Start of the span: an age, a date or an RFC 3339 time (`24h` when not given).
    pub since: String,
    /// End of the span, if any.
    pub until: Option<String>,
    /// `key=value` filters, in order: `version`, `zone`, `instance` parameters and `label`s.
    pub labels: Vec<(String, String)>,
    /// `key=value` filters on the samples' own labels (`sample_label`, and `trace` as
    /// `trace_id=<id>`): only the samples that carry them count.
    pub sample_labels: Vec<(String, String)>,
    /// Break the selection down by this sample label (`by`): its share per value.
    pub by: Option<String>,
    /// Colour the timeline by `version` or `zone`.
    pub color: String,
    /// A function whose share of each window is charted over time (`function`).
    pub function: Option<String>,
    /// A comparison's base side, `key=value[,key=value]`.
    pub base: Option<String>,
    /// Its head side.
    pub head: Option<String>,
    /// Answer with the view's JSON instead of the page.
    pub json: bool,
}

/// Most label filters one production query may carry.
const MAX_LABELS: usize = 32;

impl ProdQuery {
    /// Validates the parameters of a production view.
    pub fn parse(query: &str) -> Result<ProdQuery, QueryError> {
        let mut q = ProdQuery::default();
        let (mut service, mut ty, mut since, mut color, mut format) = (None, None, None, None, None);
        for (k, v) in decode(query)? {
            match k.as_str() {
                "service" => set_once(&mut service, "service", &v)?,
                "type" => set_once(&mut ty, "type", &v)?,
                "since" => set_once(&mut since, "since", &v)?,
                "until" => set_once(&mut q.until, "until", &v)?,
                "color" => set_once(&mut color, "color", &v)?,
                "function" => set_once(&mut q.function, "function", &v)?,
                "base" => set_once(&mut q.base, "base", &v)?,
                "head" => set_once(&mut q.head, "head", &v)?,
                "format" => set_once(&mut format, "format", &v)?,
                "version" | "zone" | "instance" | "label" => {
                    let v = text(&k, &v)?;
                    for one in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let pair = if k == "label" {
                            let (lk, lv) = one
                                .split_once('=')
                                .ok_or_else(|| bad(format!("`label`: `{one}` is not key=value")))?;
                            (lk.trim().to_owned(), lv.trim().to_owned())
                        } else {
                            (k.clone(), one.to_owned())
                        };
                        q.labels.push(pair);
                    }
                    if q.labels.len() + q.sample_labels.len() > MAX_LABELS {
                        return Err(bad(format!("at most {MAX_LABELS} label filters")));
                    }
                }
                "sample_label" => {
                    sample_label_pairs(&k, &v, &mut q.sample_labels)?;
                    if q.labels.len() + q.sample_labels.len() > MAX_LABELS {
                        return Err(bad(format!("at most {MAX_LABELS} label filters")));
                    }
                }
                "trace" => {
                    // As the agent writes a trace id: 32 lowercase hex digits (W3C trace context);
                    // shorter ones are zero-padded, as a 64-bit id is.
                    let id = text(&k, &v)?.trim().to_ascii_lowercase().replace('-', "");
                    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(format!("`trace`: `{id}` is not a trace id (up to 32 hex digits)")));
                    }
                    q.sample_labels.push(("trace_id".to_owned(), format!("{id:0>32}")));
                }
                "by" => set_once(&mut q.by, "by", &v)?,
                other => return Err(bad(format!("unknown parameter `{other}` for a production view"))),
            }
        }
        q.service = service.ok_or_else(|| bad("`service` is required: pick one on /prod"))?;
        q.profile_type = ty.unwrap_or_else(|| "cpu".to_owned());
        q.since = since.unwrap_or_else(|| "24h".to_owned());
        q.color = color.unwrap_or_else(|| "version".to_owned());
        if !matches!(q.color.as_str(), "version" | "zone" | "instance") {
            return Err(bad(format!("`color` must be version, zone or instance, not `{}`", q.color)));
        }
        q.json = match format.as_deref() {
            None | Some("html") => false,
            Some("json") => true,
            Some(f) => return Err(bad(format!("`format` must be `html` or `json`, not `{f}`"))),
        };
        Ok(q)
    }
}

/// `GET /prod/top`: the fleet's CPU over a span (`prod top`).
#[derive(Debug, Clone, PartialEq)]
pub struct TopQuery {
    /// `since` (default `24h`).
    pub since: String,
    /// `until`.
    pub until: Option<String>,
    /// `label=k=v` filters on the windows' labels (version, zone, instance, custom).
    pub labels: Vec<(String, String)>,
    /// Functions and crates listed (default 20).
    pub limit: usize,
    /// The speed-up whose savings are listed (default 0.1).
    pub speedup: f64,
    /// `type`: `cpu` (default) or `heap`.
    pub heap: bool,
    /// Answer with the figures' JSON.
    pub json: bool,
}

impl TopQuery {
    /// Most functions and crates listed on the page.
    pub const MAX_LIMIT: usize = 500;

    /// Validates the parameters of the fleet page.
    pub fn parse(query: &str) -> Result<TopQuery, QueryError> {
        let (mut since, mut until, mut limit, mut speedup, mut format, mut ty) =
            (None, None, None, None, None, None);
        let mut labels = Vec::new();
        for (k, v) in decode(query)? {
            match k.as_str() {
                "since" => set_once(&mut since, "since", &v)?,
                "until" => set_once(&mut until, "until", &v)?,
                "limit" => set_once(&mut limit, "limit", &v)?,
                "speedup" => set_once(&mut speedup, "speedup", &v)?,
                "format" => set_once(&mut format, "format", &v)?,
                "type" => set_once(&mut ty, "type", &v)?,
                "label" => sample_label_pairs("label", &v, &mut labels)?,
                other => return Err(bad(format!("unknown parameter `{other}` for the fleet page"))),
            }
        }
        let limit = match limit {
            None => 20,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "`limit` must be a number from 1 to {}, not `{l}`",
                        Self::MAX_LIMIT
                    )));
                }
            },
        };
        let speedup = match speedup {
            None => 0.1,
            Some(s) => match s.parse::<f64>() {
                Ok(f) if f > 0.0 && f < 1.0 => f,
                _ => return Err(bad(format!("`speedup` must be a fraction between 0 and 1, not `{s}`"))),
            },
        };
        let json = match format.as_deref() {
            None | Some("html") => false,
            Some("json") => true,
            Some(f) => return Err(bad(format!("`format` must be `html` or `json`, not `{f}`"))),
        };
        let heap = match ty.as_deref() {
            None | Some("cpu") => false,
            Some("heap") => true,
            Some(t) => return Err(bad(format!("`type` must be `cpu` or `heap`, not `{t}`"))),
        };
        Ok(TopQuery {
            since: since.unwrap_or_else(|| "24h".into()),
            until,
            labels,
            limit,
            speedup,
            heap,
            json,
        })
    }
}
