//! An interning writer for [`Profile`]: strings, functions, locations and samples are
//! deduplicated as they are added, and samples with the same stack and labels are summed.
//! Building from a raw file and merging profiles both go through it.

use super::fast_hash::FastMap;
use super::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

#[derive(PartialEq, Eq, Hash)]
struct LocationKey {
    mapping_id: u64,
    address: u64,
    lines: Vec<Line>,
}

pub(super) struct ProfileWriter {
    profile: Profile,
    strings: FastMap<String, i64>,
    functions: FastMap<Function, u64>,
    locations: FastMap<LocationKey, u64>,
    samples: FastMap<(Vec<u64>, Vec<Label>), usize>,
}

impl ProfileWriter {
    /// A writer for samples of these `(type, unit)` value types.
    pub(super) fn new<S: AsRef<str>>(sample_types: &[(S, S)]) -> Self {
        let mut w = Self {
            profile: Profile { string_table: vec![String::new()], ..Profile::default() },
            strings: FastMap::from_iter([(String::new(), 0)]),
            functions: FastMap::default(),
            locations: FastMap::default(),
            samples: FastMap::default(),
        };
        w.profile.sample_type =
            sample_types.iter().map(|(t, u)| w.value_type(t.as_ref(), u.as_ref())).collect();
        w
    }

    pub(super) fn profile_mut(&mut self) -> &mut Profile {
        &mut self.profile
    }

    pub(super) fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    pub(super) fn value_type(&mut self, ty: &str, unit: &str) -> ValueType {
        ValueType { r#type: self.string(ty), unit: self.string(unit) }
    }

    pub(super) fn comment(&mut self, text: &str) {
        let i = self.string(text);
        if !self.profile.comment.contains(&i) {
            self.profile.comment.push(i);
        }
    }

    /// Adds a mapping (its `id` is assigned) and returns its id.
    pub(super) fn mapping(&mut self, mapping: Mapping) -> u64 {
        let id = self.profile.mapping.len() as u64 + 1;
        self.profile.mapping.push(Mapping { id, ..mapping });
        id
    }

    pub(super) fn function(&mut self, name: &str, system_name: &str, filename: &str, start_line: i64) -> u64 {
        let key = Function {
            id: 0,
            name: self.string(name),
            system_name: self.string(system_name),
            filename: self.string(filename),
            start_line,
        };
        let next = self.profile.function.len() as u64 + 1;
        let id = *self.functions.entry(key).or_insert(next);
        if id == next {
            self.profile.function.push(Function { id, ..key });
        }
        id
    }

    /// The location of a frame that stands for something other than code (`[kernel]`, the agent,
    /// a truncated stack): no mapping, no address, one function of that name. The same id for the
    /// same name (functions and locations are deduplicated).
    pub(super) fn pseudo_location(&mut self, name: &str) -> u64 {
        let function_id = self.function(name, name, "", 0);
        self.location(0, 0, vec![Line { function_id, line: 0, column: 0 }])
    }

    pub(super) fn location(&mut self, mapping_id: u64, address: u64, lines: Vec<Line>) -> u64 {
        let key = LocationKey { mapping_id, address, lines };
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id,
            address,
            line: key.lines.clone(),
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    /// Adds values to the sample with this stack (leaf first) and labels.
    pub(super) fn sample(&mut self, location_id: Vec<u64>, value: &[i64], label: Vec<Label>) {
        let key = (location_id, label);
        if let Some(&i) = self.samples.get(&key) {
            for (sum, v) in self.profile.sample[i].value.iter_mut().zip(value) {
                *sum = sum.saturating_add(*v);
            }
            return;
        }
        let (location_id, label) = key.clone();
        self.samples.insert(key, self.profile.sample.len());
        self.profile.sample.push(Sample { location_id, value: value.to_vec(), label });
    }

    pub(super) fn finish(self) -> Profile {
        self.profile
    }
}
