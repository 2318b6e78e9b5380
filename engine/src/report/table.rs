//! The terminal table of the most expensive functions.

use std::collections::BTreeSet;
use std::io::{self, Write};

use super::units::{format_bytes, format_count, format_duration};
use crate::profile::{CostView, Profile};

/// Options for [`write_top`].
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// Rows to show.
    pub limit: usize,
    /// What was profiled, for the header line (e.g. `bench parse`).
    pub target: String,
    /// Count the self cost of library frames (std, core, alloc, libc, the agent) in their nearest
    /// caller in the user's code, as `compare` does; `false` shows pprof's innermost frames.
    pub fold_library: bool,
}

impl Default for TopOptions {
    fn default() -> Self {
        Self { limit: 20, target: String::new(), fold_library: false }
    }
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 { "-".to_owned() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

/// Writes a header line (total CPU time, samples, wall time, threads) and the top functions
/// by self CPU time: self %, total % of CPU, self CPU time and bytes allocated with the
/// function as innermost frame. Profiles of the instructions engine are shown by instructions
/// instead of CPU time; profiles with neither are sorted by allocated bytes.
pub fn write_top(mut w: impl Write, profile: &Profile, options: &TopOptions) -> io::Result<()> {
    let view = if options.fold_library {
        CostView::from_profile_folded(profile, &crate::profile::names::is_library_function)
    } else {
        CostView::from_profile(profile)
    };
    let value = |i: Option<usize>, v: &[i64]| i.and_then(|i| v.get(i).copied()).unwrap_or(0);
    let (cpu, samples, alloc) = (
        view.sample_type_index("cpu"),
        view.sample_type_index("samples"),
        view.sample_type_index("alloc_space"),
    );
    let instructions = view.sample_type_index("instructions").filter(|&i| view.totals[i] > 0);
    // The main cost: instructions where counted, else CPU time.
    let (cost, format_cost, cost_header): (_, fn(i64) -> String, _) = match instructions {
        Some(i) => (Some(i), format_count, "self instr"),
        None => (cpu, format_duration, "self CPU"),
    };
    let total_cost = value(cost, &view.totals);
    let total_alloc = value(alloc, &view.totals);
    let target = if options.target.is_empty() { String::new() } else { format!("{}: ", options.target) };
    let mut allocated =
        if total_alloc > 0 { format!(", {} allocated", format_bytes(total_alloc)) } else { String::new() };
    if let (Some(c), Some(d)) = (view.sample_type_index("contentions"), view.sample_type_index("delay")) {
        let (waits, delay) = (view.totals[c], view.totals[d]);
        allocated.push_str(&format!(
            ", {waits} wait{} for {}",
            if waits == 1 { "" } else { "s" },
            format_duration(delay)
        ));
    }
    if let Some(i) = view.sample_type_index("wall") {
        allocated.push_str(&format!(", {} of thread wall time", format_duration(view.totals[i])));
    }
    if instructions.is_some() {
        writeln!(
            w,
            "{target}{} instructions (callgrind, exact), {} wall under valgrind{allocated}",
            format_count(total_cost),
            format_duration(profile.duration_nanos),
        )?;
    } else {
        let threads = sampled_threads(profile, cost);
        writeln!(
            w,
            "{target}{} CPU in {} samples, {} wall, {} thread{} sampled{allocated}",
            format_duration(total_cost),
            value(samples, &view.totals),
            format_duration(profile.duration_nanos),
            threads,
            if threads == 1 { "" } else { "s" },
        )?;
    }
    let sort_by = if total_cost > 0 { cost } else { alloc };
    let rows = match sort_by {
        Some(i) => view.sorted_by_self(i),
        None => view.functions.iter().collect(),
    };
    if options.fold_library {
        writeln!(
            w,
            "  (self costs of std, core, alloc and libc frames are counted in their caller in your code)"
        )?;
    }
    writeln!(w, "{:>7} {:>7} {:>10} {:>11}  function", "self%", "total%", cost_header, "self alloc")?;
    // Folded, library frames keep self cost only where no user code called them: listing the others
    // by total would only repeat the runtime's entry points (`main`'s callers) at 100%.
    let has_self = |f: &crate::profile::FunctionCost| {
        value(cost, &f.self_values) > 0 || value(alloc, &f.self_values) > 0
    };
    let rows = rows.into_iter().filter(|f| {
        !options.fold_library || has_self(f) || !crate::profile::names::is_library_function(&f.name, &f.file)
    });
    for f in rows.take(options.limit) {
        let (self_cost, total) = (value(cost, &f.self_values), value(cost, &f.total_values));
        let self_alloc = value(alloc, &f.self_values);
        if self_cost == 0 && total == 0 && self_alloc == 0 {
            break;
        }
        writeln!(
            w,
            "{:>7} {:>7} {:>10} {:>11}  {}",
            percent(self_cost, total_cost),
            percent(total, total_cost),
            format_cost(self_cost),
            if self_alloc > 0 { format_bytes(self_alloc) } else { "-".to_owned() },
            f.name
        )?;
    }
    Ok(())
}

/// Threads with samples of sample type `index`, by id: two threads of one name (a runtime's
/// workers) are two. Profiles from other tools may have names only.
fn sampled_threads(profile: &Profile, index: Option<usize>) -> usize {
    let sampled =
        || profile.sample.iter().filter(move |s| index.and_then(|i| s.value.get(i)).is_some_and(|&v| v > 0));
    let tid_key = profile.string_table.iter().position(|t| t == "tid").map(|i| i as i64);
    let by_id: BTreeSet<i64> =
        sampled().flat_map(|s| s.label.iter().filter(|l| Some(l.key) == tid_key).map(|l| l.num)).collect();
    if !by_id.is_empty() {
        return by_id.len();
    }
    sampled().filter_map(|s| profile.label_str(s, "thread")).collect::<BTreeSet<&str>>().len()
}
