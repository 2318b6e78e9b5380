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

use contprof::labels::{self, LabelSet};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
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
    only_spans: Option<Vec<String>>,
    max_values: usize,
    seen: Arc<RwLock<HashMap<String, HashSet<String>>>>,
    stats: Stats,
}

impl Default for ContprofLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// The label set a span stands for (in its extensions).
struct SpanLabels(LabelSet);

thread_local! {
    /// The label sets to restore as the spans this thread entered are left, innermost last.
    static PREVIOUS: RefCell<Vec<LabelSet>> = const { RefCell::new(Vec::new()) };
}

impl ContprofLayer {
    /// The fields of [`DEFAULT_FIELDS`] and the span name become labels, of every span; at most
    /// 64 values per key.
    pub fn new() -> Self {
        Self {
            fields: DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
            span_names: true,
            only_spans: None,
            max_values: 64,
            seen: Arc::default(),
            stats: Stats::default(),
        }
    }

    /// The span fields whose values become labels (the label key is the field's name).
    pub fn fields<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.fields = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the span's name becomes the `span_name` label (on by default).
    pub fn span_names(mut self, on: bool) -> Self {
        self.span_names = on;
        self
    }

    /// Only spans with these names give labels (their children inherit them); by default every
    /// span does.
    pub fn only_spans<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.only_spans = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// At most `n` distinct values per label key; further values are left out and counted.
    pub fn max_values(mut self, n: usize) -> Self {
        self.max_values = n;
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

    /// `base` plus the admitted pairs.
    fn extend(&self, base: LabelSet, pairs: &[(&str, &str)]) -> LabelSet {
        let admitted: Vec<(&str, &str)> = pairs.iter().copied().filter(|(k, v)| self.admit(k, v)).collect();
        if admitted.is_empty() { base } else { base.and(&admitted) }
    }
}

/// Collects the chosen fields' values.
struct Fields<'a> {
    wanted: &'a [String],
    found: Vec<(&'static str, String)>,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.wanted.iter().any(|w| w == field.name()) {
            self.found.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.wanted.iter().any(|w| w == field.name()) {
            // `%value` fields arrive here wrapped so that `Debug` prints their `Display`.
            self.found.push((field.name(), format!("{value:?}")));
        }
    }
}

impl<S> Layer<S> for ContprofLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !labels::active() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanLabels>().map(|l| l.0))
            .unwrap_or(LabelSet::EMPTY);
        let mut set = parent;
        if self.labels_span(attrs.metadata()) {
            let mut fields = Fields { wanted: &self.fields, found: Vec::new() };
            attrs.record(&mut fields);
            let mut pairs: Vec<(&str, &str)> = fields.found.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if self.span_names {
                pairs.push((SPAN_NAME, attrs.metadata().name()));
            }
            set = self.extend(parent, &pairs);
        }
        span.extensions_mut().insert(SpanLabels(set));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if !self.labels_span(span.metadata()) {
            return;
        }
        let Some(current) = span.extensions().get::<SpanLabels>().map(|l| l.0) else { return };
        let mut fields = Fields { wanted: &self.fields, found: Vec::new() };
        values.record(&mut fields);
        if fields.found.is_empty() {
            return;
        }
        let pairs: Vec<(&str, &str)> = fields.found.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let set = self.extend(current, &pairs);
        if let Some(l) = span.extensions_mut().get_mut::<SpanLabels>() {
            l.0 = set;
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(set) = span.extensions().get::<SpanLabels>().map(|l| l.0) else { return };
        let previous = labels::replace(set);
        // Never panics, not even in a thread's last moments (thread-local storage torn down):
        // then the set is left as it is.
        let _ = PREVIOUS.try_with(|p| p.try_borrow_mut().map(|mut p| p.push(previous)));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<SpanLabels>().is_none() {
            return;
        }
        let previous = PREVIOUS.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()));
        labels::replace(previous.ok().flatten().unwrap_or(LabelSet::EMPTY));
    }
}
