//! Flame graphs: folded stacks of a profile drawn by inferno.

use std::collections::BTreeMap;
use std::io::Write;

use inferno::flamegraph::color::{BasicPalette, MultiPalette, Palette};
use inferno::flamegraph::{self, Options};

use super::ReportError;
use super::units::{format_bytes, format_count, format_duration};
use crate::profile::Profile;

/// Options for [`write_flamegraph`].
#[derive(Debug, Clone)]
pub struct FlameGraphOptions {
    /// The sample type to draw: `cpu` (default), `alloc_space`, `alloc_objects`, ...
    pub sample_type: String,
    /// What was profiled, for the title (e.g. `bench parse`).
    pub target: String,
}

impl Default for FlameGraphOptions {
    fn default() -> Self {
        Self { sample_type: "cpu".to_owned(), target: String::new() }
    }
}

/// Folded stacks (`root;...;leaf value`, sorted) of one sample type, with inlined functions as
/// frames of their own. Nanosecond values are converted to microseconds. `;` inside a name
/// (array types such as `[u8; 4]`) becomes `,` since it separates frames.
pub fn folded_stacks(profile: &Profile, sample_type: &str) -> Result<Vec<String>, ReportError> {
    let index = sample_index(profile, sample_type)?;
    let divisor = if unit(profile, index) == "nanoseconds" { 1000 } else { 1 };
    let functions: std::collections::HashMap<u64, String> =
        profile.function.iter().map(|f| (f.id, profile.str(f.name).replace([';', '\n'], ","))).collect();
    let locations: std::collections::HashMap<u64, Vec<&str>> = profile
        .location
        .iter()
        .map(|l| {
            let names =
                l.line.iter().rev().map(|line| functions.get(&line.function_id).map_or("?", |s| s.as_str()));
            (l.id, names.collect())
        })
        .collect();
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for s in &profile.sample {
        let v = s.value.get(index).copied().unwrap_or(0);
        if v <= 0 {
            continue;
        }
        let frames: Vec<&str> = s
            .location_id
            .iter()
            .rev()
            .flat_map(|id| locations.get(id).into_iter().flatten().copied())
            .collect();
        let key = if frames.is_empty() { "[no stack]".to_owned() } else { frames.join(";") };
        *stacks.entry(key).or_default() += v;
    }
    Ok(stacks
        .into_iter()
        .filter_map(|(k, v)| {
            let v = v / divisor;
            (v > 0).then(|| format!("{k} {v}"))
        })
        .collect())
}

fn sample_index(profile: &Profile, sample_type: &str) -> Result<usize, ReportError> {
    profile.sample_type_index(sample_type).ok_or_else(|| ReportError::UnknownSampleType {
        sample_type: sample_type.to_owned(),
        available: profile.sample_type.iter().map(|v| profile.str(v.r#type)).collect::<Vec<_>>().join(", "),
    })
}

fn unit(profile: &Profile, index: usize) -> &str {
    profile.sample_type.get(index).map_or("", |v| profile.str(v.unit))
}

/// Writes a flame graph SVG of one sample type: stacks root at the bottom, frames sorted by
/// name within their parent (inferno's order), colours by function name so they stay the same
/// between graphs; the widest (most expensive) paths are the visible ones.
pub fn write_flamegraph(
    writer: impl Write,
    profile: &Profile,
    options: &FlameGraphOptions,
) -> Result<(), ReportError> {
    let lines = folded_stacks(profile, &options.sample_type)?;
    if lines.is_empty() {
        return Err(ReportError::NoSamples { sample_type: options.sample_type.clone() });
    }
    let index = sample_index(profile, &options.sample_type)?;
    let (unit, total) = (unit(profile, index), profile.total(index));
    let (count_name, subtitle, colors) = match unit {
        _ if options.sample_type == "instructions" => (
            "instructions",
            format!("{} instructions", format_count(total)),
            Palette::Multi(MultiPalette::Rust),
        ),
        _ if options.sample_type == "delay" => {
            ("ns", format!("{} waited", format_duration(total)), Palette::Basic(BasicPalette::Io))
        }
        _ if options.sample_type == "wall" => (
            "ns",
            format!("{} of thread wall time", format_duration(total)),
            Palette::Multi(MultiPalette::Rust),
        ),
        "nanoseconds" => {
            ("µs", format!("{} CPU", format_duration(total)), Palette::Multi(MultiPalette::Rust))
        }
        "bytes" => ("bytes", format_bytes(total), Palette::Basic(BasicPalette::Mem)),
        other => (other, format!("{total} {other}"), Palette::Basic(BasicPalette::Mem)),
    };
    let what = match options.sample_type.as_str() {
        "cpu" => "CPU time".to_owned(),
        "instructions" => "instructions (callgrind; stacks from its call graph)".to_owned(),
        "alloc_space" => "allocated bytes".to_owned(),
        "delay" => "time waited for locks (contention)".to_owned(),
        "wall" => "wall time of every thread, on CPU and off".to_owned(),
        other => other.replace('_', " "),
    };
    let mut opts = Options::default();
    opts.title = if options.target.is_empty() { what } else { format!("{}: {what}", options.target) };
    opts.subtitle = Some(subtitle);
    opts.count_name = count_name.to_owned();
    opts.colors = colors;
    opts.hash = true;
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), writer)?;
    Ok(())
}
