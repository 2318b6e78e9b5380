//! The cost of a label change: entering and leaving a `tracing` span without the layer, with the
//! layer and no agent, and with the layer and the agent (linked in, sampling off, so that only
//! the label change is measured); a span made, entered, left and closed inside a labelled one,
//! as a library makes its own spans in a loop (`span_new`, the same three ways, and with the
//! layer counting each such span as a unit of work: `span_new/layer_agent_counted`); and the
//! `contprof::labels` calls themselves (`count_work` too), with and without an agent.
//!
//! `cargo bench -p contprof-tracing --bench span_labels` (the benchmarks without an agent run
//! first: once started, the agent takes labels for the rest of the process).

use std::hint::black_box;

use contprof_tracing::ContprofLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use tracing_subscriber::prelude::*;

fn enter_exit(c: &mut Criterion, name: &str, dispatch: &tracing::Dispatch) {
    let span = tracing::dispatcher::with_default(dispatch, || {
        tracing::info_span!("request", endpoint = "/search", tenant = "t1")
    });
    tracing::dispatcher::with_default(dispatch, || {
        c.bench_function(name, |b| b.iter(|| span.in_scope(|| black_box(1))));
    });
}

/// A span with no label field (`poll`, as h2 opens per frame) made, entered, left and closed
/// inside a request's span.
fn new_span(c: &mut Criterion, name: &str, dispatch: &tracing::Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        let request = tracing::info_span!("request", endpoint = "/search");
        let _entered = request.enter();
        c.bench_function(name, |b| {
            b.iter(|| tracing::trace_span!("poll", frame = 7).in_scope(|| black_box(1)))
        });
    });
}

fn without_agent(c: &mut Criterion) {
    let plain = tracing::Dispatch::new(tracing_subscriber::registry());
    enter_exit(c, "span_enter_exit/no_layer", &plain);
    new_span(c, "span_new/no_layer", &plain);
    let layered = tracing::Dispatch::new(tracing_subscriber::registry().with(ContprofLayer::new()));
    enter_exit(c, "span_enter_exit/layer_no_agent", &layered);
    new_span(c, "span_new/layer_no_agent", &layered);
    c.bench_function("labels_with/no_agent", |b| {
        b.iter(|| contprof::labels::with(&[("endpoint", "/search")], || black_box(1)))
    });
    c.bench_function("count_work/no_agent", |b| b.iter(|| contprof::labels::count_work(black_box(1))));
}

fn with_agent(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("contprof-bench-labels-{}.raw", std::process::id()));
    let guard = contprof::start(contprof::Options::new(&path).frequency(0).alloc(contprof::AllocMode::Off))
        .expect("agent starts");
    let layered = tracing::Dispatch::new(tracing_subscriber::registry().with(ContprofLayer::new()));
    enter_exit(c, "span_enter_exit/layer_agent", &layered);
    new_span(c, "span_new/layer_agent", &layered);
    let counted = tracing::Dispatch::new(
        tracing_subscriber::registry().with(ContprofLayer::new().count_spans(["poll"])),
    );
    new_span(c, "span_new/layer_agent_counted", &counted);
    let set = contprof::labels::LabelSet::new(&[("endpoint", "/search")]);
    c.bench_function("labels_enter/agent", |b| b.iter(|| black_box(set.enter())));
    c.bench_function("labels_with/agent", |b| {
        b.iter(|| contprof::labels::with(&[("endpoint", "/search")], || black_box(1)))
    });
    let _in_set = set.enter();
    c.bench_function("count_work/agent", |b| b.iter(|| contprof::labels::count_work(black_box(1))));
    c.bench_function("count_work_named_set/agent", |b| b.iter(|| set.count_work(black_box(1))));
    guard.stop();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, without_agent, with_agent);
criterion_main!(benches);
