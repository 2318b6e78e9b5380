//! Per-run function costs of a profile as [`crate::compare`] takes them, for the compare view.

use crate::compare::{Cost, Metric, MetricTotal, RunCosts};
use crate::profile::{CostView, Profile};

/// The profile sample type a comparison metric is measured from.
pub fn metric_sample_type(metric: Metric) -> &'static str {
    match metric {
        Metric::Cpu => "cpu",
        Metric::AllocBytes => "alloc_space",
        Metric::AllocCount => "alloc_objects",
        Metric::InuseBytes => "inuse_space",
    }
}

/// The costs of one profile (one process execution). CPU is sampled (its sample count is the
/// `samples` total); allocation metrics are exact when `exact_alloc` (the run's allocation mode
/// counted every allocation), else sampled with the allocation count as the number of samples.
/// Metrics whose total is zero are left out, as not recorded.
pub fn run_costs(profile: &Profile, exact_alloc: bool) -> RunCosts {
    let view = CostView::from_profile(profile);
    let total_of = |ty: &str| view.sample_type_index(ty).map_or(0, |i| view.totals[i]);
    let cpu_samples = u64::try_from(total_of("samples")).unwrap_or(0);
    let alloc_samples = u64::try_from(total_of("alloc_objects")).unwrap_or(0);
    let mut costs = RunCosts::default();
    for metric in Metric::ALL {
        let Some(i) = view.sample_type_index(metric_sample_type(metric)) else { continue };
        let total = view.totals[i];
        if total <= 0 {
            continue;
        }
        let value = total as f64;
        let t = match metric {
            Metric::Cpu => MetricTotal::sampled(value, cpu_samples),
            _ if exact_alloc => MetricTotal::exact(value),
            _ => MetricTotal::sampled(value, alloc_samples),
        };
        costs.totals.insert(metric, t);
        for f in &view.functions {
            let (s, t) = (f.self_values[i], f.total_values[i]);
            if s != 0 || t != 0 {
                costs
                    .functions
                    .entry(f.name.clone())
                    .or_default()
                    .insert(metric, Cost { self_: s as f64, total: t as f64 });
            }
        }
    }
    costs
}
