//! One profile cut down to some of its sample types, as the production agent uploads one
//! profile per type (CPU, allocations, heap in use) from one window's profile.

use std::collections::{HashMap, HashSet};

use super::proto::{Label, Profile};

impl Profile {
    /// The profile with only the sample types named in `types` (in that order; unknown names
    /// are skipped), the samples that have a non-zero value in one of them, and the locations
    /// and functions those samples use. `default` becomes the default sample type when present.
    pub fn project(&self, types: &[&str], default: &str) -> Profile {
        let keep: Vec<usize> = types.iter().filter_map(|t| self.sample_type_index(t)).collect();
        let sample: Vec<_> = self
            .sample
            .iter()
            .filter(|s| keep.iter().any(|&i| s.value.get(i).is_some_and(|&v| v != 0)))
            .map(|s| {
                let mut s = s.clone();
                s.value = keep.iter().map(|&i| s.value.get(i).copied().unwrap_or(0)).collect();
                s
            })
            .collect();
        let used: HashSet<u64> = sample.iter().flat_map(|s| s.location_id.iter().copied()).collect();
        let location: Vec<_> = self.location.iter().filter(|l| used.contains(&l.id)).cloned().collect();
        let functions: HashSet<u64> =
            location.iter().flat_map(|l| l.line.iter().map(|line| line.function_id)).collect();
        let mappings: HashSet<u64> = location.iter().map(|l| l.mapping_id).collect();
        let default_sample_type = self
            .sample_type_index(default)
            .filter(|i| keep.contains(i))
            .map_or(0, |i| self.sample_type[i].r#type);
        Profile {
            sample_type: keep.iter().map(|&i| self.sample_type[i]).collect(),
            sample,
            mapping: self.mapping.iter().filter(|m| mappings.contains(&m.id) || m.id == 1).cloned().collect(),
            location,
            function: self.function.iter().filter(|f| functions.contains(&f.id)).cloned().collect(),
            default_sample_type,
            ..self.clone_header()
        }
    }

    /// Adds string labels to every sample; a sample's label of the same key (one the program set
    /// with `contprof::labels`) gives way.
    pub fn label_samples(&mut self, labels: &[(&str, &str)]) {
        let mut ids = HashMap::new();
        let mut intern = |p: &mut Profile, s: &str| -> i64 {
            *ids.entry(s.to_owned()).or_insert_with(|| {
                p.string_table.push(s.to_owned());
                (p.string_table.len() - 1) as i64
            })
        };
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label { key: intern(self, k), str: intern(self, v), num: 0, num_unit: 0 })
            .collect();
        // Keys compare by text: this profile may hold the same key string more than once.
        let replaced: HashSet<i64> = (0..self.string_table.len() as i64)
            .filter(|&i| labels.iter().any(|n| self.str(n.key) == self.str(i)))
            .collect();
        for s in &mut self.sample {
            s.label.retain(|l| !replaced.contains(&l.key));
            s.label.extend_from_slice(&labels);
        }
    }

    /// Adds a comment.
    pub fn add_comment(&mut self, text: &str) {
        self.string_table.push(text.to_owned());
        self.comment.push((self.string_table.len() - 1) as i64);
    }

    /// Everything but the samples, locations, functions and mappings.
    fn clone_header(&self) -> Profile {
        Profile {
            sample_type: Vec::new(),
            sample: Vec::new(),
            mapping: Vec::new(),
            location: Vec::new(),
            function: Vec::new(),
            string_table: self.string_table.clone(),
            drop_frames: self.drop_frames,
            keep_frames: self.keep_frames,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: self.period_type,
            period: self.period,
            comment: self.comment.clone(),
            default_sample_type: self.default_sample_type,
            doc_url: self.doc_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::profile::{SAMPLE_TYPES, decode, encode_to_vec};

    #[test]
    fn projection_keeps_the_types_and_the_samples_that_have_them() {
        let mut w = crate::profile::writer::ProfileWriter::new(SAMPLE_TYPES);
        let lf = w.pseudo_location("cpu_only");
        let lg = w.pseudo_location("alloc_only");
        w.sample(vec![lf], &[1, 100, 0, 0, 0, 0], vec![]);
        w.sample(vec![lg], &[0, 0, 2, 64, 1, 32], vec![]);
        let p = w.finish();
        let heap = p.project(&["inuse_objects", "inuse_space"], "inuse_space");
        let heap = decode(&encode_to_vec(&heap)).unwrap();
        assert_eq!(heap.sample_type.len(), 2);
        assert_eq!(heap.str(heap.sample_type[1].r#type), "inuse_space");
        assert_eq!(heap.str(heap.default_sample_type), "inuse_space");
        assert_eq!(heap.sample.len(), 1);
        assert_eq!(heap.sample[0].value, vec![1, 32]);
        assert_eq!(heap.location.len(), 1);
        assert_eq!(heap.function.len(), 1);
        assert_eq!(heap.str(heap.function[0].name), "alloc_only");
    }
}
