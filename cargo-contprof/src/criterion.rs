//! Criterion and divan on the no-code-change path: each benchmark runs in its own process (for
//! criterion with `CRITERION_HOME` pointing into our output, so the user's own criterion baselines
//! are never touched), and the profile is paired with the harness's own estimate of time per
//! iteration: criterion's `estimates.json`, divan's `mean` column.
//!
//! Both vary iteration counts between runs, so raw CPU per function is not comparable. The
//! time per iteration is: the profile's samples under the harness's `Bencher` (the measured loop)
//! give each function's share of one iteration, and the harness's mean time per iteration gives
//! the scale. The result is a `cpu_per_iter` sample type: "ns per iteration of benchmark X" per
//! function, which compares across runs and commits.

use std::path::Path;

use crate::profile::{Profile, ValueType};

/// Name of the per-iteration sample type (unit nanoseconds).
pub const PER_ITER_TYPE: &str = "cpu_per_iter";

/// Frames of the measurement loops: criterion's (`Bencher::iter`, `iter_batched`, `iter_custom`,
/// ...) and divan's (`Bencher::bench` and the sampling loop of its `benchmark` module).
fn is_measured_frame(name: &str) -> bool {
    name.starts_with("criterion::bencher::Bencher")
        || name.starts_with("criterion::bencher::AsyncBencher")
        || name.starts_with("divan::benchmark::")
}

/// Divan's mean time per iteration (ns) from its output of one benchmark: the `mean` column of
/// the first row with times (`name  fastest │ slowest │ median │ mean │ samples │ iters`; the
/// rows under it with throughputs are not times).
pub fn divan_mean_ns(stdout: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let columns: Vec<&str> = line.split('│').collect();
        if columns.len() != 6 {
            return None;
        }
        let (number, unit) = columns[3].trim().split_once(' ')?;
        let scale = match unit.trim() {
            "ps" => 1e-3,
            "ns" => 1.0,
            "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return None,
        };
        number.parse::<f64>().ok().map(|n| n * scale).filter(|ns| ns.is_finite() && *ns > 0.0)
    })
}

/// Criterion's mean time per iteration (ns) from the `new/estimates.json` written under `home`.
pub fn mean_ns_per_iteration(home: &Path) -> Option<f64> {
    let mut stack = vec![home.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/estimates.json") {
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                let slope = v["slope"]["point_estimate"].as_f64();
                let mean = v["mean"]["point_estimate"].as_f64();
                // Criterion reports the slope (linear regression over iteration counts) where it
                // can, as the better estimate; fall back to the mean.
                return slope.or(mean).filter(|x| x.is_finite() && *x > 0.0);
            }
        }
    }
    None
}

/// Adds the `cpu_per_iter` sample type to `profile`: each sample inside criterion's measured loop
/// gets its CPU value scaled so that the loop's total equals `ns_per_iter` (weighted by `weight`,
/// 1.0 for one run). Returns false when no sample is inside the loop.
pub fn add_per_iteration(profile: &mut Profile, ns_per_iter: f64, weight: f64) -> bool {
    let Some(cpu) = profile.sample_type_index("cpu") else { return false };
    let measured_locations = locations_with(profile, is_measured_frame);
    let measured: Vec<bool> = profile
        .sample
        .iter()
        .map(|s| s.location_id.iter().any(|id| measured_locations.contains(id)))
        .collect();
    let loop_cpu: i64 =
        profile.sample.iter().zip(&measured).filter(|(_, m)| **m).map(|(s, _)| s.value[cpu]).sum();
    if loop_cpu <= 0 {
        return false;
    }
    let k = ns_per_iter * weight / loop_cpu as f64;
    let index = match profile.sample_type_index(PER_ITER_TYPE) {
        Some(i) => i,
        None => {
            let ty = profile.intern(PER_ITER_TYPE);
            let unit = profile.intern("nanoseconds");
            profile.sample_type.push(ValueType { r#type: ty, unit });
            profile.sample_type.len() - 1
        }
    };
    for (s, m) in profile.sample.iter_mut().zip(measured) {
        s.value.resize(index + 1, 0);
        if m {
            s.value[index] = (s.value[cpu] as f64 * k).round() as i64;
        }
    }
    true
}

/// Ids of the locations with a frame (inlined or not) whose function name satisfies `pred`.
fn locations_with(p: &Profile, pred: impl Fn(&str) -> bool) -> std::collections::HashSet<u64> {
    let functions: std::collections::HashSet<u64> =
        p.function.iter().filter(|f| pred(p.str(f.name))).map(|f| f.id).collect();
    p.location
        .iter()
        .filter(|l| l.line.iter().any(|line| functions.contains(&line.function_id)))
        .map(|l| l.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divan_mean_is_read_from_the_benchmark_row_not_the_header_or_throughput() {
        let out = "Timer precision: 20 ns\n\
divan_parsing  fastest       │ slowest       │ median        │ mean          │ samples │ iters\n\
╰─ large       1.183 ms      │ 1.52 ms       │ 1.2 ms        │ 1.254 ms      │ 20      │ 100\n\
               845.3 Mitem/s │ 657.8 Mitem/s │ 833.3 Mitem/s │ 797.4 Mitem/s │         │\n";
        assert!((divan_mean_ns(out).unwrap() - 1_254_000.0).abs() < 1e-3, "{:?}", divan_mean_ns(out));
        assert_eq!(divan_mean_ns("small  12.5 ns │ 14 ns │ 13 ns │ 13.25 ns │ 100 │ 102400\n"), Some(13.25));
        assert_eq!(divan_mean_ns("x  1 µs │ 1 µs │ 1 µs │ 2.5 µs │ 1 │ 1\n"), Some(2500.0));
        assert_eq!(divan_mean_ns("no table here\n"), None);
    }
}
