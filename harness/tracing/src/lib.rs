//! Labels contprof's samples with the current `tracing` span: a [`tracing_subscriber::Layer`] that
//! makes the span a thread is in its label set (`contprof::labels`), so the CPU, allocations,
//! waits and wall time of a request are split by its endpoint, tenant or span name, also for a
//! tokio task that moves between worker threads across `.await` points (an instrumented future
//! enters its span on each poll, on whichever thread polls it).
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry().with(contprof_tracing::ContprofLayer::new()).init();
//! let span = tracing::info_span!("request", endpoint = "/search", tenant = "t1");
//! let _entered = span.enter(); // samples here carry endpoint=/search, tenant=t1, span_name=request
//! ```
//!
//! A span's labels are worked out once, when it is created (and again when one of the chosen
//! fields is recorded later, as `http.route` often is): its parent's labels, plus the chosen
//! fields it has (by default `endpoint`, `http.route` and `tenant`), plus `span_name` (the
//! span's name: the innermost span's name wins). Entering and leaving a span then costs a lookup
//! of the span and one store of the thread's label set id each way.
//!
//! With [`ContprofLayer::count_spans`], the spans of one request count the work done (one unit
//! each when they close, under their labels): `prod compare` then judges a window's CPU per
//! request, which stays right when one function holds most of the CPU and the load moves.
//!
//! With [`ContprofLayer::span_ids`] and [`ContprofLayer::trace_ids`], CPU, wall and thread
//! samples also carry the `span_id` and `trace_id` labels (16 and 32 hex digits, the names
//! Pyroscope and OpenTelemetry profiles use), which are not interned and may be unique per
//! request: a span's id is its `span_id` field if it has one (hex text or an integer), else a
//! random one; a trace id is the `trace_id` field of the span or of its nearest ancestor that has
//! one (record the W3C trace id of the incoming `traceparent` there to open the profile of a trace
//! from Jaeger, Tempo or Grafana), else a random id given to the root span and inherited by its
//! descendants.
//!
//! With the `opentelemetry` feature, a span that `tracing-opentelemetry`'s layer also follows
//! takes its ids from OpenTelemetry instead (unless its fields name them): the trace id and span
//! id of its OpenTelemetry span context, read once, when the span is first entered (when
//! OpenTelemetry starts it anyway), so that a trace in Jaeger, Tempo or Grafana opens the samples
//! of its spans with no field to record by hand. Without OpenTelemetry's layer, or for a span it
//! does not follow, the ids are made as above.
//!
//! Cardinality is bounded: each label key keeps at most [`ContprofLayer::max_values`] distinct
//! values (64 by default); a value beyond that is left out of the span's labels and counted
//! ([`Stats::dropped_values`]). Label values are meant to be routes and tenants, not request ids.
//!
//! It works with the preloaded agent (`cargo contprof run`, `LD_PRELOAD`) and with one started
//! by `contprof::start`; without an agent the layer does nothing but one check per span.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use contprof::labels::{self, Context, LabelSet};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::{self, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The label key of a span's name (the name Pyroscope and OpenTelemetry profiles use).
pub const SPAN_NAME: &str = "span_name";

/// The span fields that become labels unless [`ContprofLayer::fields`] says otherwise.
pub const DEFAULT_FIELDS: &[&str] = &["endpoint", "http.route", "tenant"];

/// What the layer left out, readable while it runs.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    dropped_values: AtomicU64,
}

impl Stats {
    /// Label values left out because their key had [`ContprofLayer::max_values`] values already.
    pub fn dropped_values(&self) -> u64 {
        self.inner.dropped_values.load(Ordering::Relaxed)
    }
}

/// The layer (see the crate docs). Configure it before adding it to the subscriber.
#[derive(Debug, Clone)]
pub struct ContprofLayer {
    fields: Vec<String>,
    span_names: bool,
    span_ids: bool,
    trace_ids: bool,
    only_spans: Option<Vec<String>>,
    work_spans: Vec<String>,
    max_values: usize,
    seen: Arc<RwLock<HashMap<String, HashSet<String>>>>,
    stats: Stats,
    /// This configuration's id (a builder method makes a new one), for [`NAMED`].
    id: u32,
}

impl Default for ContprofLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// What a span tags samples with (in its extensions).
#[derive(Clone, Copy)]
struct SpanLabels {
    context: Context,
    /// Its ids may still come from OpenTelemetry (read when first entered): neither was named by
    /// a field. `None` once read.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    otel: Option<Named>,
}

/// Which ids a span's fields named (those are not taken from OpenTelemetry).
#[derive(Clone, Copy, Default)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
struct Named {
    span_id: bool,
    trace_id: bool,
}

thread_local! {
    /// What to restore as the spans this thread entered are left, innermost last.
    static PREVIOUS: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
    /// Recent label sets of spans none of whose fields is a label: `(layer, parent set, callsite)`
    /// to the parent's set with the span's name added (see [`ContprofLayer::named`]).
    static NAMED: RefCell<[NamedEntry; NAMED_SLOTS]> = const { RefCell::new([NamedEntry::EMPTY; NAMED_SLOTS]) };
}

/// Entries of [`NAMED`] (direct-mapped).
const NAMED_SLOTS: usize = 256;

/// One entry of [`NAMED`].
#[derive(Clone, Copy)]
struct NamedEntry {
    layer: u32,
    parent: u32,
    callsite: usize,
    set: LabelSet,
}

impl NamedEntry {
    const EMPTY: NamedEntry = NamedEntry { layer: 0, parent: 0, callsite: 0, set: LabelSet::EMPTY };
}

/// A configuration's id (0 is never one): the entries of [`NAMED`] belong to one configuration.
fn next_layer_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The span and trace ids a span declares in its fields.
#[derive(Default)]
struct Ids {
    span_id: Option<u64>,
    trace_id: Option<u128>,
}

/// Hex text (up to 32 digits, as W3C trace context writes ids) or a decimal integer.
fn parse_id(text: &str) -> Option<u128> {
    let t = text.trim().trim_start_matches("0x");
    let hex = t.len() <= 32 && !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    if hex { u128::from_str_radix(t, 16).ok() } else { t.parse().ok() }.filter(|&v| v != 0)
}

/// A random nonzero id (splitmix64 over a counter seeded from the clock and the process).
fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let seed = now ^ (u64::from(std::process::id()) << 32) | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

impl ContprofLayer {
    /// The fields of [`DEFAULT_FIELDS`] and the span name become labels, of every span; at most
    /// 64 values per key.
    pub fn new() -> Self {
        Self {
            fields: DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
            span_names: true,
            span_ids: false,
            trace_ids: false,
            only_spans: None,
            work_spans: Vec::new(),
            max_values: 64,
            seen: Arc::default(),
            stats: Stats::default(),
            id: next_layer_id(),
        }
    }

    /// The span fields whose values become labels (the label key is the field's name).
    pub fn fields<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.fields = names.into_iter().map(Into::into).collect();
        self.id = next_layer_id();
        self
    }

    /// Whether the span's name becomes the `span_name` label (on by default).
    pub fn span_names(mut self, on: bool) -> Self {
        self.span_names = on;
        self.id = next_layer_id();
        self
    }

    /// Whether CPU, wall and thread samples carry the `span_id` label of their span (off by
    /// default).
    pub fn span_ids(mut self, on: bool) -> Self {
        self.span_ids = on;
        self.id = next_layer_id();
        self
    }

    /// Whether CPU, wall and thread samples carry the `trace_id` label of their trace (off by
    /// default).
    pub fn trace_ids(mut self, on: bool) -> Self {
        self.trace_ids = on;
        self.id = next_layer_id();
        self
    }

    /// Only spans with these names give labels (their children inherit them); by default every
    /// span does.
    pub fn only_spans<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.only_spans = Some(names.into_iter().map(Into::into).collect());
        self.id = next_layer_id();
        self
    }

    /// Spans with these names count one unit of work each when they close (under their labels,
    /// `contprof::labels::LabelSet::count_work`): name the span of one request
    /// (`count_spans(["request"])`), and `prod compare` can judge a window's CPU per request
    /// (`--denominator work`). None by default.
    pub fn count_spans<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.work_spans = names.into_iter().map(Into::into).collect();
        self
    }

    /// At most `n` distinct values per label key; further values are left out and counted.
    pub fn max_values(mut self, n: usize) -> Self {
        self.max_values = n;
        self.id = next_layer_id();
        self
    }

    /// What the layer left out (a handle that stays valid once the layer is in the subscriber).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    fn labels_span(&self, meta: &Metadata<'_>) -> bool {
        self.only_spans.as_ref().is_none_or(|names| names.iter().any(|n| n == meta.name()))
    }

    /// Whether the pair stays within the key's bound of distinct values (counted when not).
    fn admit(&self, key: &str, value: &str) -> bool {
        let known =
            |seen: &HashMap<String, HashSet<String>>| seen.get(key).is_some_and(|v| v.contains(value));
        if self.seen.read().is_ok_and(|seen| known(&seen)) {
            return true;
        }
        let Ok(mut seen) = self.seen.write() else { return false };
        let values = seen.entry(key.to_owned()).or_default();
        if values.contains(value) {
            return true;
        }
        if values.len() < self.max_values {
            values.insert(value.to_owned());
            return true;
        }
        self.stats.inner.dropped_values.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Makes `context` the thread's; returns the one before (only the label set is switched when
    /// no ids are recorded: one store).
    fn switch(&self, context: Context) -> Context {
        if self.span_ids || self.trace_ids {
            labels::replace_context(context)
        } else {
            Context { labels: labels::replace(context.labels), ..Context::default() }
        }
    }

    /// `parent` with the span name of `meta` added, for a span none of whose fields is a label:
    /// the same for every span of a callsite under the same parent set, so remembered per thread
    /// once the name was admitted. A span made in a hot loop (h2 opens several per frame) then
    /// costs a lookup here instead of an admission and an interning (on h2 under the agent, with
    /// its trace-level spans on, the requests took 1.78x the time they take without the layer
    /// before, 1.24x after: `tests/measure/h2_spans.sh`).
    fn named(&self, parent: LabelSet, meta: &'static Metadata<'static>) -> LabelSet {
        let callsite = meta as *const Metadata<'static> as usize;
        let slot =
            ((callsite >> 4) ^ (parent.id() as usize * 0x9e37) ^ (self.id as usize * 0x85eb)) % NAMED_SLOTS;
        let hit = NAMED.try_with(|n| {
            n.try_borrow().ok().and_then(|n| {
                let e = n[slot];
                (e.layer == self.id && e.parent == parent.id() && e.callsite == callsite).then_some(e.set)
            })
        });
        if let Ok(Some(set)) = hit {
            return set;
        }
        if !self.admit(SPAN_NAME, meta.name()) {
            return parent;
        }
        let set = parent.and(&[(SPAN_NAME, meta.name())]);
        let entry = NamedEntry { layer: self.id, parent: parent.id(), callsite, set };
        let _ = NAMED.try_with(|n| n.try_borrow_mut().map(|mut n| n[slot] = entry));
        set
    }

    /// `base` plus the admitted pairs.
    fn extend(&self, base: LabelSet, pairs: &[(&str, &str)]) -> LabelSet {
        let admitted: Vec<(&str, &str)> = pairs.iter().copied().filter(|(k, v)| self.admit(k, v)).collect();
        if admitted.is_empty() { base } else { base.and(&admitted) }
    }
}

/// Collects the chosen fields' values, and the ids.
struct Fields<'a> {
    wanted: &'a [String],
    found: Vec<(&'static str, String)>,
    ids: Ids,
}

impl Fields<'_> {
    fn new(wanted: &[String]) -> Fields<'_> {
        Fields { wanted, found: Vec::new(), ids: Ids::default() }
    }

    /// Whether `field`'s value is read: a chosen field or an id (formatting the others, such as
    /// h2's `frame = ?item`, would cost more than the rest of the span's labels).
    fn wants(&self, field: &Field) -> bool {
        matches!(field.name(), "span_id" | "trace_id") || self.wanted.iter().any(|w| w == field.name())
    }

    fn text(&mut self, field: &Field, value: &str) {
        match field.name() {
            "span_id" => self.ids.span_id = parse_id(value).map(|v| v as u64).or(self.ids.span_id),
            "trace_id" => self.ids.trace_id = parse_id(value).or(self.ids.trace_id),
            _ => {}
        }
        if self.wanted.iter().any(|w| w == field.name()) {
            self.found.push((field.name(), value.to_owned()));
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.wants(field) {
            self.text(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here wrapped so that `Debug` prints their `Display`.
        if self.wants(field) {
            self.text(field, &format!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.wants(field) {
            self.text(field, &value.to_string());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.wants(field) {
            self.text(field, &value.to_string());
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.wants(field) {
            self.text(field, &value.to_string());
        }
    }
}

impl<S> Layer<S> for ContprofLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: layer::Context<'_, S>) {
        if !labels::active() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<SpanLabels>().map(|l| l.context));
        let mut fields = Fields::new(&self.fields);
        attrs.record(&mut fields);
        let mut context =
            Context { labels: parent.map_or(LabelSet::EMPTY, |p| p.labels), ..Context::default() };
        if self.labels_span(attrs.metadata()) {
            if fields.found.is_empty() {
                if self.span_names {
                    context.labels = self.named(context.labels, attrs.metadata());
                }
            } else {
                let mut pairs: Vec<(&str, &str)> =
                    fields.found.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if self.span_names {
                    pairs.push((SPAN_NAME, attrs.metadata().name()));
                }
                context.labels = self.extend(context.labels, &pairs);
            }
        }
        if self.span_ids {
            context.span_id = fields.ids.span_id.unwrap_or_else(random_u64);
        }
        if self.trace_ids {
            let inherited = parent.map(|p| p.trace_id).filter(|&t| t != 0);
            context.trace_id = fields
                .ids
                .trace_id
                .or(inherited)
                .unwrap_or_else(|| (u128::from(random_u64()) << 64) | u128::from(random_u64()));
        }
        let named = Named { span_id: fields.ids.span_id.is_some(), trace_id: fields.ids.trace_id.is_some() };
        let otel = (self.span_ids && !named.span_id || self.trace_ids && !named.trace_id).then_some(named);
        span.extensions_mut().insert(SpanLabels { context, otel });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if !self.labels_span(span.metadata()) {
            return;
        }
        let Some(mut labelled) = span.extensions().get::<SpanLabels>().copied() else { return };
        let context = &mut labelled.context;
        let mut fields = Fields::new(&self.fields);
        values.record(&mut fields);
        let pairs: Vec<(&str, &str)> = fields.found.iter().map(|(k, v)| (*k, v.as_str())).collect();
        context.labels = self.extend(context.labels, &pairs);
        if self.span_ids
            && let Some(id) = fields.ids.span_id
        {
            context.span_id = id;
            if let Some(named) = &mut labelled.otel {
                named.span_id = true;
            }
        }
        if self.trace_ids
            && let Some(id) = fields.ids.trace_id
        {
            context.trace_id = id;
            if let Some(named) = &mut labelled.otel {
                named.trace_id = true;
            }
        }
        if let Some(l) = span.extensions_mut().get_mut::<SpanLabels>() {
            *l = labelled;
        }
    }

    fn on_enter(&self, id: &Id, ctx: layer::Context<'_, S>) {
        // Without an agent no span has labels (see `on_new_span`): skip the span's lookup. An
        // agent that starts later is seen from then on (`labels::active` never turns false), and
        // the spans it sees entered were created after it started, so enter and exit still pair.
        if !labels::active() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let Some(labelled) = span.extensions().get::<SpanLabels>().copied() else { return };
        let context = match labelled.otel {
            #[cfg(feature = "opentelemetry")]
            Some(named) => {
                let context = otel::ids(id, named, labelled.context);
                if let Some(l) = span.extensions_mut().get_mut::<SpanLabels>() {
                    *l = SpanLabels { context, otel: None };
                }
                context
            }
            _ => labelled.context,
        };
        let previous = self.switch(context);
        // Never panics, not even in a thread's last moments (thread-local storage torn down):
        // then the set is left as it is.
        let _ = PREVIOUS.try_with(|p| p.try_borrow_mut().map(|mut p| p.push(previous)));
    }

    fn on_close(&self, id: Id, ctx: layer::Context<'_, S>) {
        if self.work_spans.is_empty() || !labels::active() {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        if self.work_spans.iter().any(|n| n == span.metadata().name()) {
            let set = span.extensions().get::<SpanLabels>().map_or(LabelSet::EMPTY, |l| l.context.labels);
            set.count_work(1);
        }
    }

    fn on_exit(&self, id: &Id, ctx: layer::Context<'_, S>) {
        if !labels::active() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<SpanLabels>().is_none() {
            return;
        }
        let previous = PREVIOUS.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()));
        self.switch(previous.ok().flatten().unwrap_or_default());
    }
}

/// The ids OpenTelemetry gives a span (`tracing-opentelemetry`'s span context).
#[cfg(feature = "opentelemetry")]
mod otel {
    use contprof::labels::Context;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_core::span::Id;

    use super::Named;

    /// `context` with the ids of span `id`'s OpenTelemetry span context, where `named` says its
    /// fields did not name them and the context is valid. Reads through the current dispatch
    /// (never while the span's extensions are held: `get_otel_context` takes them); for a span
    /// OpenTelemetry does not follow, `context` as it is.
    pub(super) fn ids(id: &Id, named: Named, mut context: Context) -> Context {
        let otel = tracing_core::dispatcher::get_default(|dispatch| {
            tracing_opentelemetry::get_otel_context(id, dispatch)
        });
        let Some(otel) = otel else { return context };
        let span = otel.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return context;
        }
        if context.span_id != 0 && !named.span_id {
            context.span_id = u64::from_be_bytes(ids.span_id().to_bytes());
        }
        if context.trace_id != 0 && !named.trace_id {
            context.trace_id = u128::from_be_bytes(ids.trace_id().to_bytes());
        }
        context
    }
}
