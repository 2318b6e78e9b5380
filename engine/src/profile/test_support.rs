//! Profiles made up for unit tests, shared by the modules that test on profiles.

use std::collections::BTreeMap;

use super::{Function, Line, Location, Profile, SAMPLE_TYPES, Sample, ValueType};

/// A profile from `(stack root first, cpu nanoseconds, allocated bytes)`; every function has one
/// location, except `inl` frames written `outer+inner` (one location, `inner` inlined in `outer`).
pub fn synth(stacks: &[(&[&str], i64, i64)]) -> Profile {
    let mut p = Profile::default();
    for (t, u) in SAMPLE_TYPES {
        let vt = ValueType { r#type: p.intern(t), unit: p.intern(u) };
        p.sample_type.push(vt);
    }
    let mut locs: BTreeMap<String, u64> = BTreeMap::new();
    for (stack, cpu, bytes) in stacks {
        let mut ids = Vec::new();
        for frame in stack.iter().rev() {
            let next = locs.len() as u64 + 1;
            let id = *locs.entry((*frame).to_owned()).or_insert(next);
            if id == next {
                let mut lines = Vec::new();
                for name in frame.split('+').rev() {
                    let fid = p.function.len() as u64 + 1;
                    let f = Function {
                        id: fid,
                        name: p.intern(name),
                        system_name: 0,
                        filename: p.intern("src/lib.rs"),
                        start_line: 10,
                    };
                    p.function.push(f);
                    lines.push(Line { function_id: fid, line: 12, column: 0 });
                }
                p.location.push(Location {
                    id,
                    mapping_id: 0,
                    address: 0x1000 + id,
                    line: lines,
                    is_folded: false,
                });
            }
            ids.push(id);
        }
        let samples = cpu / 1_000_000;
        let allocs = i64::from(*bytes > 0);
        p.sample.push(Sample {
            location_id: ids,
            value: vec![samples, *cpu, allocs, *bytes, 0, 0],
            label: vec![],
        });
    }
    p
}
