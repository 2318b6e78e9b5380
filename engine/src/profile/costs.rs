//! The per-function cost view: for every sample type, what each function costs by itself
//! (self: it is the innermost frame) and with its callees (total: it is anywhere on the
//! stack, counted once per sample even when it recurses).
//!
//! Functions are identified by name, so inlined copies and generic instances with the same
//! demangled name are one function, and the same function lines up across profiles.

use std::collections::HashMap;

use super::proto::Profile;

/// Whether a function is a library frame, by its name and source file
/// ([`super::names::is_library_function`]).
pub type IsLibrary = dyn Fn(&str, &str) -> bool;

/// Cost of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCost {
    /// Demangled name.
    pub name: String,
    /// Source file of its first occurrence, `""` when unknown.
    pub file: String,
    /// Value per sample type where the function is the innermost frame.
    pub self_values: Vec<i64>,
    /// Value per sample type where the function is on the stack.
    pub total_values: Vec<i64>,
}

/// The cost of every function of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostView {
    /// `(type, unit)` of each value.
    pub sample_types: Vec<(String, String)>,
    /// Sum over all samples, per sample type.
    pub totals: Vec<i64>,
    /// Functions in order of first appearance.
    pub functions: Vec<FunctionCost>,
    index: HashMap<String, usize>,
}

impl CostView {
    /// Computes the view of a profile: self cost goes to the innermost frame (pprof's view).
    pub fn from_profile(p: &Profile) -> Self {
        Self::compute(p, None)
    }

    /// Like [`CostView::from_profile`], but a sample's self cost goes to its innermost frame for
    /// which `is_library(name, file)` is false (the nearest caller in the user's code), when there
    /// is one. Totals are unchanged. Each of a profile's functions is judged with its own source
    /// file, so two functions of one name (std's vendored `hashbrown` and the user's own) can
    /// differ.
    pub fn from_profile_folded(p: &Profile, is_library: &IsLibrary) -> Self {
        Self::compute(p, Some(is_library))
    }

    fn compute(p: &Profile, is_library: Option<&IsLibrary>) -> Self {
        let n = p.sample_type.len();
        let mut view = CostView {
            sample_types: p
                .sample_type
                .iter()
                .map(|v| (p.str(v.r#type).to_owned(), p.str(v.unit).to_owned()))
                .collect(),
            totals: (0..n).map(|i| p.total(i)).collect(),
            ..Self::default()
        };
        // function id -> (cost index, library frame); location id -> those of its lines
        // (innermost first).
        let mut by_function: HashMap<u64, (usize, bool)> = HashMap::new();
        for f in &p.function {
            let name = p.str(f.name);
            let next = view.functions.len();
            let i = *view.index.entry(name.to_owned()).or_insert(next);
            if i == next {
                view.functions.push(FunctionCost {
                    name: name.to_owned(),
                    file: p.str(f.filename).to_owned(),
                    self_values: vec![0; n],
                    total_values: vec![0; n],
                });
            }
            let library = is_library.is_some_and(|lib| lib(name, p.str(f.filename)));
            by_function.insert(f.id, (i, library));
        }
        let by_location: HashMap<u64, Vec<(usize, bool)>> = p
            .location
            .iter()
            .map(|l| {
                (l.id, l.line.iter().filter_map(|line| by_function.get(&line.function_id).copied()).collect())
            })
            .collect();
        // The last sample each function was counted in, for "once per sample".
        let mut seen = vec![usize::MAX; view.functions.len()];
        for (si, s) in p.sample.iter().enumerate() {
            let mut frames = s.location_id.iter().filter_map(|id| by_location.get(id)).flatten();
            let leaf = frames.clone().find(|f| !f.1).or_else(|| frames.clone().next());
            if let Some(&(leaf, _)) = leaf {
                add(&mut view.functions[leaf].self_values, &s.value);
            }
            for &(f, _) in frames.by_ref() {
                if seen[f] != si {
                    seen[f] = si;
                    add(&mut view.functions[f].total_values, &s.value);
                }
            }
        }
        view
    }

    /// Index of the sample type named `ty` (e.g. `"cpu"`).
    pub fn sample_type_index(&self, ty: &str) -> Option<usize> {
        self.sample_types.iter().position(|(t, _)| t == ty)
    }

    /// The cost of a function by name.
    pub fn get(&self, name: &str) -> Option<&FunctionCost> {
        self.index.get(name).map(|&i| &self.functions[i])
    }

    /// Functions sorted by decreasing self value of sample type `index`, then by total, then
    /// by name.
    pub fn sorted_by_self(&self, index: usize) -> Vec<&FunctionCost> {
        let mut v: Vec<&FunctionCost> = self.functions.iter().collect();
        let key = |f: &FunctionCost| {
            (f.self_values.get(index).copied().unwrap_or(0), f.total_values.get(index).copied().unwrap_or(0))
        };
        v.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

fn add(sum: &mut [i64], values: &[i64]) {
    for (s, v) in sum.iter_mut().zip(values) {
        *s = s.saturating_add(*v);
    }
}
