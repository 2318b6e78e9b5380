//! The profile model: the pprof `profile.proto` messages, building a profile from a raw sample
//! file, gzip encoding and decoding, merging repeated runs and the per-function cost view.
//!
//! Owns the meaning of sample types and labels. It reads no files and prints nothing: callers
//! pass bytes, readers and writers. Symbolization is delegated to [`crate::symbolize`].
//!
//! Every profile built here has the sample types of [`SAMPLE_TYPES`], in that order, whether
//! or not allocations were recorded, so that profiles of different runs line up; profiles of the
//! instructions engine have [`INSTRUCTIONS_TYPE`] and [`CALLS_TYPE`] after them, and profiles of
//! runs that recorded waits (`--contention`) have [`CONTENTION_TYPES`] next and runs that sampled
//! wall time (`--wall`) end with [`WALL_TYPE`].

mod build;
mod codec;
mod costs;
pub mod fast_hash;
mod merge;
pub mod names;
mod project;
mod proto;
mod raw_writer;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod work;
mod writer;

pub use build::{
    BuildOptions, Built, CpuTimeSource, DETACHED_FRAME, INSTRUCTIONS_THREAD_LABEL, TRUNCATED_STACK_FRAME,
    build_profile,
};
pub use codec::{DecodeError, MAX_INFLATED, decode, encode, encode_to_vec, gunzip, gzip};
pub use costs::{CostView, FunctionCost, IsLibrary};
pub use merge::{MergeError, merge};
pub use proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
pub use raw_writer::RawWriter;

use contprof_contracts::report::Metric;

/// `(type, unit)` of the sample values of every profile built by [`build_profile`].
pub const SAMPLE_TYPES: &[(&str, &str)] = &[
    ("samples", "count"),
    ("cpu", "nanoseconds"),
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// `(type, unit)` of the instruction counts of the instructions engine, after [`SAMPLE_TYPES`].
pub const INSTRUCTIONS_TYPE: (&str, &str) = ("instructions", "count");

/// `(type, unit)` of a production window's thread snapshot: one sample per thread, its stack
/// at the window's end (the analogue of Go's goroutine profile).
pub const THREADS_TYPE: (&str, &str) = ("threads", "count");

/// `(type, unit)` of the waits of a run that recorded them (`--contention`), last: how many
/// waits and how long they took per stack, Go's names for its block and mutex profiles. Present
/// when the agent recorded waits (the raw file's `contention_rate_ns`), even if there were none,
/// so that the profiles of such runs line up; absent otherwise.
pub const CONTENTION_TYPES: [(&str, &str); 2] = [("contentions", "count"), ("delay", "nanoseconds")];

/// `(type, unit)` of a run's wall-clock profile (`--wall`), after [`CONTENTION_TYPES`] when
/// both are there: every thread's wall time per stack, on CPU or off (blocked in a system call,
/// a futex, a sleep: charged at the frame where it blocked). Present when the agent sampled wall
/// time (the raw file's `wall_period_ns`); absent otherwise.
pub const WALL_TYPE: (&str, &str) = ("wall", "nanoseconds");

/// The sample type of a profile that holds `metric` (CPU: without criterion's per-iteration type).
pub fn sample_type(metric: Metric) -> &'static str {
    match metric {
        Metric::Cpu => "cpu",
        Metric::Instructions => INSTRUCTIONS_TYPE.0,
        Metric::AllocBytes => "alloc_space",
        Metric::AllocCount => "alloc_objects",
        Metric::InuseBytes => "inuse_space",
        Metric::Delay => CONTENTION_TYPES[1].0,
        Metric::Contentions => CONTENTION_TYPES[0].0,
        Metric::Wall => WALL_TYPE.0,
    }
}

/// `(type, unit)` of the call counts of the instructions engine, after [`INSTRUCTIONS_TYPE`]: a
/// sample's leaf is the called function's entry, so a function's self value is how many times
/// it was called and its total how many calls were made under it, itself included.
pub const CALLS_TYPE: (&str, &str) = ("calls", "count");

/// Indices into [`SAMPLE_TYPES`] and into each sample's values.
pub mod sample_index {
    /// `samples/count`: CPU samples.
    pub const SAMPLES: usize = 0;
    /// `cpu/nanoseconds`.
    pub const CPU: usize = 1;
    /// `alloc_objects/count`.
    pub const ALLOC_OBJECTS: usize = 2;
    /// `alloc_space/bytes`.
    pub const ALLOC_SPACE: usize = 3;
    /// `inuse_objects/count`.
    pub const INUSE_OBJECTS: usize = 4;
    /// `inuse_space/bytes`.
    pub const INUSE_SPACE: usize = 5;
}

impl Profile {
    /// The string at `index` of the string table, `""` when out of range.
    pub fn str(&self, index: i64) -> &str {
        usize::try_from(index).ok().and_then(|i| self.string_table.get(i)).map_or("", String::as_str)
    }

    /// Index of the sample type named `ty` (e.g. `"cpu"`).
    pub fn sample_type_index(&self, ty: &str) -> Option<usize> {
        self.sample_type.iter().position(|v| self.str(v.r#type) == ty)
    }

    /// The comments as text.
    pub fn comments(&self) -> Vec<&str> {
        self.comment.iter().map(|&i| self.str(i)).collect()
    }

    /// Sum of every sample's value of sample type `index`.
    pub fn total(&self, index: usize) -> i64 {
        // Saturating: a stored profile may hold any values (issue 15.14: no overflow panic).
        self.sample.iter().filter_map(|s| s.value.get(index)).fold(0i64, |a, &v| a.saturating_add(v))
    }

    /// Index of `s` in the string table, appending it if absent.
    pub fn intern(&mut self, s: &str) -> i64 {
        if self.string_table.is_empty() {
            self.string_table.push(String::new());
        }
        match self.string_table.iter().position(|t| t == s) {
            Some(i) => i as i64,
            None => {
                self.string_table.push(s.to_owned());
                self.string_table.len() as i64 - 1
            }
        }
    }

    /// Adds string labels to every sample, e.g. `("test", "parse::tests::big_input")`. A
    /// label with the same key is replaced.
    pub fn add_labels(&mut self, labels: &[(&str, &str)]) {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label { key: self.intern(k), str: self.intern(v), num: 0, num_unit: 0 })
            .collect();
        for s in &mut self.sample {
            s.label.retain(|l| !labels.iter().any(|n| n.key == l.key));
            s.label.extend_from_slice(&labels);
        }
    }

    /// Appends comments (kept once each).
    pub fn add_comments<S: AsRef<str>>(&mut self, comments: &[S]) {
        for c in comments {
            let i = self.intern(c.as_ref());
            if !self.comment.contains(&i) {
                self.comment.push(i);
            }
        }
    }

    /// The string value of label `key` of a sample.
    pub fn label_str<'a>(&'a self, sample: &Sample, key: &str) -> Option<&'a str> {
        sample.label.iter().find(|l| self.str(l.key) == key && l.str != 0).map(|l| self.str(l.str))
    }

    /// Keeps the samples whose string labels pass `filters` (see [`labels_match`]), and the work
    /// counted under such labels ([`work`]); false when no sample is left.
    pub fn retain_labelled(&mut self, filters: &[(String, String)]) -> bool {
        self.retain_work(filters);
        let kept: Vec<bool> =
            self.sample.iter().map(|s| labels_match(filters, |k| self.label_str(s, k))).collect();
        let mut i = 0;
        self.sample.retain(|_| {
            i += 1;
            kept[i - 1]
        });
        !self.sample.is_empty()
    }
}

/// Whether a label set passes `key = value` filters: several values of one key are alternatives,
/// different keys must all match; `value(k)` gives the set's value of `k`. No filter passes all.
pub fn labels_match<'a>(filters: &[(String, String)], value: impl Fn(&str) -> Option<&'a str>) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.iter().all(|k| {
        let have = value(k);
        filters.iter().any(|(fk, v)| fk == k && have == Some(v.as_str()))
    })
}

#[cfg(test)]
mod tests;
