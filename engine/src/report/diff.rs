//! Differential flame graphs: the head's stacks, coloured by how each changed against the base
//! (red: grew, blue: shrank), drawn by inferno from the folded stacks of both sides.
//!
//! Each side may have several runs: their folded stacks are averaged per run, so sides with
//! different numbers of runs compare fairly.

use std::collections::BTreeMap;
use std::io::Write;

use inferno::differential;
use inferno::flamegraph::{self, Options};

use super::ReportError;
use super::flame::folded_stacks;
use crate::profile::Profile;

/// What to draw.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Sample type, e.g. `cpu` or `alloc_space`.
    pub sample_type: String,
    /// Title, e.g. the group and revisions compared.
    pub title: String,
}

/// Per-run average of the folded stacks of `profiles` (`stack value` lines).
fn averaged(profiles: &[&Profile], sample_type: &str) -> Result<String, ReportError> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for p in profiles {
        for line in folded_stacks(p, sample_type)? {
            if let Some((stack, v)) = line.rsplit_once(' ')
                && let Ok(v) = v.parse::<i64>()
            {
                *sums.entry(stack.to_owned()).or_default() += v;
            }
        }
    }
    let n = profiles.len().max(1) as i64;
    let mut out = String::new();
    for (stack, v) in sums {
        let v = (v + n / 2) / n;
        if v > 0 {
            out.push_str(&format!("{stack} {v}\n"));
        }
    }
    Ok(out)
}

/// Writes a differential flame graph SVG of `head` against `base` for one sample type.
pub fn write_diff_flamegraph(
    writer: impl Write,
    base: &[&Profile],
    head: &[&Profile],
    options: &DiffOptions,
) -> Result<(), ReportError> {
    let before = averaged(base, &options.sample_type)?;
    let after = averaged(head, &options.sample_type)?;
    if after.is_empty() {
        return Err(ReportError::NoSamples { sample_type: options.sample_type.clone() });
    }
    let mut lines = Vec::new();
    differential::from_readers(
        differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut lines,
    )?;
    let lines = String::from_utf8_lossy(&lines).into_owned();
    let mut opts = Options::default();
    opts.title = options.title.clone();
    opts.subtitle = Some("head against base, averaged per run: red grew, blue shrank".to_owned());
    opts.count_name = if options.sample_type == "cpu" { "µs".to_owned() } else { "bytes".to_owned() };
    flamegraph::from_lines(&mut opts, lines.lines(), writer)?;
    Ok(())
}
