//! Criterion and divan on the no-code-change path: each benchmark runs in its own process (for
//! criterion with `CRITERION_HOME` pointing into our output, so the user's own criterion baselines
//! are never touched), and the profile is paired with what the harness says of its iterations:
//! criterion's estimate of the time per iteration (`estimates.json`), divan's iteration count.
//!
//! Both vary iteration counts between runs, so raw CPU per function is not comparable. The
//! time per iteration is: the profile's samples under the harness's `Bencher` (the measured loop)
//! give each function's share of one iteration, and the harness's mean time per iteration (or
//! the loop's CPU divided by its iteration count) gives the scale. The result is a `cpu_per_iter` sample type: "ns per iteration of benchmark X" per
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

/// What a benchmark harness says of its iterations, to scale the measured loop's CPU by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PerIteration {
    /// The harness's estimate of the time of one iteration, in ns (criterion's `estimates.json`).
    MeanNs(f64),
    /// How many iterations the measured loop ran (divan's `iters`): one iteration costs the
    /// loop's CPU divided by it. Divan's times are wall-clock times, which grow when the machine
    /// is busy (at a load of 9 on 2 cores, two benchmarks of a 4x ratio measured 0.4x to 11x);
    /// the CPU the loop took does not.
    Count(u64),
}

/// Divan's iteration count of one benchmark from its output: the `iters` column of the first row
/// with times (`name  fastest │ slowest │ median │ mean │ samples │ iters`; the rows under it
/// with throughputs have no count).
pub fn divan_iterations(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let columns: Vec<&str> = line.split('│').collect();
        if columns.len() != 6 || !has_time(columns[3]) {
            return None;
        }
        columns[5].trim().parse::<u64>().ok().filter(|n| *n > 0)
    })
}

/// Whether a divan cell holds a time (`1.254 ms`), not a throughput or a header.
fn has_time(cell: &str) -> bool {
    cell.trim().split_once(' ').is_some_and(|(n, unit)| {
        n.parse::<f64>().is_ok() && ["ps", "ns", "µs", "ms", "s", "m", "h", "d"].contains(&unit.trim())
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

/// Adds the `cpu_per_iter` sample type to `profile`: each sample inside the harness's measured
/// loop gets its CPU value scaled so that the loop's total is the time of one iteration (`per`),
/// weighted by `weight` (1.0 for one run). Returns false when no sample is inside the loop.
pub fn add_per_iteration(profile: &mut Profile, per: PerIteration, weight: f64) -> bool {
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
    let k = match per {
        PerIteration::MeanNs(ns) => ns * weight / loop_cpu as f64,
        PerIteration::Count(n) => weight / n as f64,
    };
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
    fn divan_iterations_are_read_from_the_benchmark_row_not_the_header_or_throughput() {
        let out = "Timer precision: 20 ns\n\
divan_parsing  fastest       │ slowest       │ median        │ mean          │ samples │ iters\n\
╰─ large       1.183 ms      │ 1.52 ms       │ 1.2 ms        │ 1.254 ms      │ 20      │ 100\n\
               845.3 Mitem/s │ 657.8 Mitem/s │ 833.3 Mitem/s │ 797.4 Mitem/s │         │\n";
        assert_eq!(divan_iterations(out), Some(100));
        assert_eq!(
            divan_iterations("small  12.5 ns │ 14 ns │ 13 ns │ 13.25 ns │ 100 │ 102400\n"),
            Some(102_400)
        );
        assert_eq!(divan_iterations("x  1 µs │ 1 µs │ 1 µs │ 2.5 µs │ 1 │ 0\n"), None);
        assert_eq!(divan_iterations("no table here\n"), None);
    }
}
