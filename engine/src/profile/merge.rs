//! Merging profiles of repeated runs (`--runs N`) into one.
//!
//! Samples are summed when their stacks (compared by mapping file, file-relative address and
//! source lines, so that address-space randomization between runs does not matter) and their
//! labels are equal. No `run` label is added: a caller that wants runs kept apart labels each
//! profile with [`Profile::add_labels`] before merging. Mappings of the same file and build id
//! are shared, with the addresses of later runs rebased onto the first run's mapping.

use std::collections::HashMap;

use super::proto::{Label, Line, Mapping, Profile};
use super::writer::ProfileWriter;

/// Errors merging profiles.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// There is nothing to merge.
    #[error("no profiles to merge")]
    Empty,
    /// The profiles do not have the same sample types.
    #[error("profile {index} has sample types {found}, the first has {expected}")]
    SampleTypes {
        /// Position of the offending profile.
        index: usize,
        /// Its sample types.
        found: String,
        /// The first profile's sample types.
        expected: String,
    },
}

fn sample_types(p: &Profile) -> String {
    let t: Vec<String> =
        p.sample_type.iter().map(|v| format!("{}/{}", p.str(v.r#type), p.str(v.unit))).collect();
    t.join(",")
}

/// Merges profiles with identical sample types: values summed, durations summed, the
/// earliest start time kept, comments kept once each (the work counted, [`super::work`], summed).
pub fn merge(profiles: &[Profile]) -> Result<Profile, MergeError> {
    let first = profiles.first().ok_or(MergeError::Empty)?;
    let expected = sample_types(first);
    let types: Vec<(&str, &str)> =
        first.sample_type.iter().map(|v| (first.str(v.r#type), first.str(v.unit))).collect();
    let mut w = ProfileWriter::new(&types);
    // (file, build id, file offset) -> (merged mapping id, its memory_start)
    let mut mappings: HashMap<(String, String, u64), (u64, u64)> = HashMap::new();
    let mut time_nanos = 0i64;
    let mut duration = 0i64;
    for (index, p) in profiles.iter().enumerate() {
        let found = sample_types(p);
        if found != expected {
            return Err(MergeError::SampleTypes { index, found, expected });
        }
        if p.time_nanos > 0 && (time_nanos == 0 || p.time_nanos < time_nanos) {
            time_nanos = p.time_nanos;
        }
        duration = duration.saturating_add(p.duration_nanos);
        // Old mapping id -> (new id, address shift).
        let mut mapping_map: HashMap<u64, (u64, u64)> = HashMap::new();
        for m in &p.mapping {
            let key = (p.str(m.filename).to_owned(), p.str(m.build_id).to_owned(), m.file_offset);
            let (id, start) = match mappings.get(&key) {
                Some(&v) => v,
                None => {
                    let new = Mapping {
                        filename: w.string(p.str(m.filename)),
                        build_id: w.string(p.str(m.build_id)),
                        ..m.clone()
                    };
                    let v = (w.mapping(new), m.memory_start);
                    mappings.insert(key, v);
                    v
                }
            };
            mapping_map.insert(m.id, (id, start.wrapping_sub(m.memory_start)));
        }
        let functions: HashMap<u64, u64> = p
            .function
            .iter()
            .map(|f| (f.id, w.function(p.str(f.name), p.str(f.system_name), p.str(f.filename), f.start_line)))
            .collect();
        let mut locations: HashMap<u64, u64> = HashMap::new();
        for l in &p.location {
            let (mapping_id, shift) = mapping_map.get(&l.mapping_id).copied().unwrap_or((0, 0));
            let lines = l
                .line
                .iter()
                .map(|line| Line {
                    function_id: functions.get(&line.function_id).copied().unwrap_or(0),
                    ..*line
                })
                .collect();
            let address = if mapping_id == 0 { l.address } else { l.address.wrapping_add(shift) };
            locations.insert(l.id, w.location(mapping_id, address, lines));
        }
        // Labels repeat on every sample: each of this profile's strings is interned once.
        let mut strings: Vec<Option<i64>> = vec![None; p.string_table.len()];
        let mut string = |w: &mut ProfileWriter, i: i64| -> i64 {
            match usize::try_from(i).ok().and_then(|i| strings.get_mut(i)) {
                Some(Some(new)) => *new,
                Some(slot) => *slot.insert(w.string(p.str(i))),
                None => w.string(""),
            }
        };
        for s in &p.sample {
            let stack = s.location_id.iter().filter_map(|id| locations.get(id).copied()).collect();
            let labels = s
                .label
                .iter()
                .map(|l| Label {
                    key: string(&mut w, l.key),
                    str: string(&mut w, l.str),
                    num: l.num,
                    num_unit: string(&mut w, l.num_unit),
                })
                .collect();
            w.sample(stack, &s.value, labels);
        }
    }
    let period_type = first.period_type.map(|v| w.value_type(first.str(v.r#type), first.str(v.unit)));
    let default_type = w.string(first.str(first.default_sample_type));
    for c in super::work::sum_comments(profiles.iter().flat_map(|p| p.comment.iter().map(|&c| p.str(c)))) {
        w.comment(&c);
    }
    let mut merged = w.finish();
    merged.period_type = period_type;
    merged.default_sample_type = default_type;
    merged.time_nanos = time_nanos;
    merged.duration_nanos = duration;
    // Each run has its own period (its CPU time over its samples): the merged period is the
    // average, so that samples x period still gives the total CPU time.
    merged.period = match (merged.sample_type_index("samples"), merged.sample_type_index("cpu")) {
        (Some(n), Some(c)) if merged.total(n) > 0 => merged.total(c) / merged.total(n),
        _ => first.period,
    };
    Ok(merged)
}
