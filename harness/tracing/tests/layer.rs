//! The layer with the agent linked in (`contprof::start`): the thread's label set follows the
//! spans it enters and leaves, on whichever thread enters them.

use std::sync::Once;

use contprof::labels::LabelSet;
use contprof_tracing::ContprofLayer;
use tracing_subscriber::prelude::*;

fn agent() {
    static START: Once = Once::new();
    START.call_once(|| {
        let path = std::env::temp_dir().join(format!("contprof-tracing-{}.raw", std::process::id()));
        let guard =
            contprof::start(contprof::Options::new(&path).frequency(0).alloc(contprof::AllocMode::Off))
                .expect("agent starts");
        guard.keep_until_exit();
    });
}

/// The current thread's labels as `k=v` strings, in key order.
fn current() -> Vec<String> {
    LabelSet::current().pairs().map(|(k, v)| format!("{k}={v}")).collect()
}

#[test]
fn spans_set_their_labels_while_entered_and_children_inherit_them() {
    agent();
    let subscriber = tracing_subscriber::registry().with(ContprofLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        assert!(current().is_empty());
        let request = tracing::info_span!("request", endpoint = "/search", tenant = "t1", other = 3);
        {
            let _r = request.enter();
            assert_eq!(current(), ["endpoint=/search", "span_name=request", "tenant=t1"]);
            let child = tracing::info_span!("db_query");
            {
                let _c = child.enter();
                assert_eq!(current(), ["endpoint=/search", "span_name=db_query", "tenant=t1"]);
            }
            assert_eq!(current(), ["endpoint=/search", "span_name=request", "tenant=t1"]);
        }
        assert!(current().is_empty(), "leaving the span restores the set before");
        // Labels set from code before the span come back after it.
        let outer = contprof::labels::set(&[("job", "import")]);
        request.in_scope(|| assert!(current().contains(&"endpoint=/search".to_owned())));
        assert_eq!(current(), ["job=import"]);
        drop(outer);
    });
}

/// A span entered on another thread (as a tokio task's span is, polled by another worker)
/// labels that thread while it is entered there.
#[test]
fn a_span_labels_whichever_thread_enters_it() {
    agent();
    let subscriber = tracing_subscriber::registry().with(ContprofLayer::new().span_names(false));
    let dispatch = tracing::Dispatch::new(subscriber);
    let span =
        tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("task", endpoint = "/items"));
    let seen = std::thread::scope(|s| {
        s.spawn(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                let before = current();
                let inside = span.in_scope(current);
                (before, inside, current())
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(seen, (vec![], vec!["endpoint=/items".to_owned()], vec![]));
}

#[test]
fn fields_recorded_later_and_the_choice_of_fields_and_spans() {
    agent();
    let layer = ContprofLayer::new().fields(["http.route"]).only_spans(["http"]);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let http = tracing::info_span!("http", http.route = tracing::field::Empty, endpoint = "/ignored");
        http.record("http.route", "/users/{id}");
        http.in_scope(|| {
            assert_eq!(current(), ["http.route=/users/{id}", "span_name=http"]);
            // Not a chosen span: it inherits without adding its name.
            tracing::info_span!("inner", http.route = "/other").in_scope(|| {
                assert_eq!(current(), ["http.route=/users/{id}", "span_name=http"]);
            });
        });
    });
}

#[test]
fn values_beyond_the_bound_are_left_out_and_counted() {
    agent();
    let layer = ContprofLayer::new().span_names(false).max_values(2);
    let stats = layer.stats();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let mut seen = Vec::new();
        for endpoint in ["/a", "/b", "/c", "/a"] {
            seen.push(tracing::info_span!("request", endpoint).in_scope(current));
        }
        assert_eq!(seen, [vec!["endpoint=/a"], vec!["endpoint=/b"], vec![], vec!["endpoint=/a"]]);
    });
    assert_eq!(stats.dropped_values(), 1);
}

/// Spans none of whose fields is a label (most spans of a library: h2 opens several per frame)
/// take their set from a per-thread memory of (callsite, parent set): made again and again in a
/// loop, under different parents, by two layers of different settings, each still gets its own
/// parent's labels and its own name; a name beyond the bound is counted every time.
#[test]
fn spans_made_in_a_loop_keep_their_parents_labels_and_their_names() {
    agent();
    fn poll() -> Vec<String> {
        tracing::trace_span!("poll", frame = 7).in_scope(current)
    }
    let subscriber = tracing_subscriber::registry().with(ContprofLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        for round in 0..3 {
            for endpoint in ["/a", "/b"] {
                let got = tracing::info_span!("request", endpoint).in_scope(poll);
                assert_eq!(got, [format!("endpoint={endpoint}"), "span_name=poll".into()], "round {round}");
            }
            assert_eq!(poll(), ["span_name=poll"], "no parent");
        }
    });
    // More parents than the memory has entries: entries are shared, and must not be mistaken.
    let subscriber = tracing_subscriber::registry().with(ContprofLayer::new().max_values(1000));
    tracing::subscriber::with_default(subscriber, || {
        for round in 0..2 {
            for i in 0..600 {
                let endpoint = format!("/e{i}");
                let request = tracing::info_span!("request", endpoint);
                let got = request.in_scope(poll);
                assert_eq!(got, [format!("endpoint=/e{i}"), "span_name=poll".into()], "round {round}");
                let got = request.in_scope(|| tracing::trace_span!("flush").in_scope(current));
                assert_eq!(got, [format!("endpoint=/e{i}"), "span_name=flush".into()], "round {round}");
            }
        }
    });
    // Layers of other settings (with and without span names, more of them than the memory has
    // entries): the same callsite under the same parent, each with its layer's labels.
    for i in 0..600 {
        let names = i % 2 == 0;
        let subscriber = tracing_subscriber::registry().with(ContprofLayer::new().span_names(names));
        let got = tracing::subscriber::with_default(subscriber, poll);
        assert_eq!(got.is_empty(), !names, "layer {i}: {got:?}");
    }
    // Span names beyond the bound: left out and counted each time.
    let layer = ContprofLayer::new().max_values(1);
    let stats = layer.stats();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..3 {
            assert_eq!(tracing::info_span!("first").in_scope(current), ["span_name=first"]);
            assert_eq!(poll(), Vec::<String>::new());
        }
    });
    assert_eq!(stats.dropped_values(), 3);
}

/// The calling thread's label set and ids.
fn context() -> contprof::labels::Context {
    let c = contprof::labels::replace_context(contprof::labels::Context::default());
    contprof::labels::replace_context(c);
    c
}

#[test]
fn span_and_trace_ids_come_from_fields_or_are_made_and_children_inherit_the_trace() {
    agent();
    let layer = ContprofLayer::new().span_ids(true).trace_ids(true);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let traced =
            tracing::info_span!("request", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", span_id = 7u64);
        let (outer, inner) = traced.in_scope(|| (context(), tracing::info_span!("db").in_scope(context)));
        assert_eq!(outer.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(outer.span_id, 7);
        assert_eq!(inner.trace_id, outer.trace_id, "a child is in its parent's trace");
        assert!(inner.span_id != 0 && inner.span_id != outer.span_id);
        assert_eq!(context(), contprof::labels::Context::default(), "leaving restores no ids");
        // A root span without a trace id gets one of its own, which its children share.
        let (a, b) = tracing::info_span!("request")
            .in_scope(|| (context(), tracing::info_span!("child").in_scope(context)));
        let other = tracing::info_span!("request").in_scope(context);
        assert!(a.trace_id != 0 && a.trace_id == b.trace_id && other.trace_id != a.trace_id);
    });
}

/// With `tracing-opentelemetry`'s layer (either side of ours), a span's ids are its OpenTelemetry
/// span context's: a request whose incoming context names a trace carries that trace id, as its
/// children do; ids named in fields still win.
#[cfg(feature = "opentelemetry")]
#[test]
fn ids_come_from_opentelemetry_where_it_follows_the_span() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    agent();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let ours = || ContprofLayer::new().span_ids(true).trace_ids(true);
    let check = || {
        // The incoming request's context, as a `traceparent` header gives it.
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let request = tracing::info_span!("request");
        request.set_parent(opentelemetry::Context::new().with_remote_span_context(remote)).unwrap();
        let (outer, inner) = request.in_scope(|| (context(), tracing::info_span!("db").in_scope(context)));
        let theirs = request.context().span().span_context().clone();
        assert_eq!(outer.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, "the incoming trace");
        assert_eq!(outer.span_id, u64::from_be_bytes(theirs.span_id().to_bytes()), "OpenTelemetry's span id");
        assert_eq!(inner.trace_id, outer.trace_id, "a child is in its parent's trace");
        assert!(inner.span_id != 0 && inner.span_id != outer.span_id);
        assert_eq!(request.in_scope(context), outer, "entered again: the same ids");
        // A root span: the trace OpenTelemetry starts.
        let root = tracing::info_span!("job");
        let ids = root.in_scope(context);
        let started = root.context().span().span_context().trace_id();
        assert_eq!(ids.trace_id, u128::from_be_bytes(started.to_bytes()));
        // Ids named in fields win.
        let named =
            tracing::info_span!("request", trace_id = "0af7651916cd43dd8448eb211c80319c", span_id = 9u64);
        let ids = named.in_scope(context);
        assert_eq!((ids.trace_id, ids.span_id), (0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c, 9));
    };
    let otel_first = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(ours());
    tracing::subscriber::with_default(otel_first, check);
    let ours_first = tracing_subscriber::registry()
        .with(ours())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(ours_first, check);
}
