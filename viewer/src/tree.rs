//! The call tree sent to the browser: samples of one or two sets of profiles aggregated by stack
//! into a tree (root = whole program, one node per distinct call path, inlined functions as frames
//! of their own), with a compact JSON form: a function table and, per node, its parent, its
//! function and its self value per sample type and side. Totals are derived in the browser in one
//! pass (a parent always has a smaller index than its children), which halves the payload.

use std::collections::HashMap;

use serde::Serialize;

use super::classify::FrameClass;
use contprof_engine::profile::Profile;
use contprof_engine::profile::fast_hash::FastMap;

/// Name of the root box.
pub const ROOT_NAME: &str = "all";

/// A function as the flame graph shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnInfo {
    /// Demangled name.
    pub name: String,
    /// Source file, `""` when unknown.
    pub file: String,
    /// First line (definition, or first line seen), 0 when unknown.
    pub line: i64,
    /// Colour class.
    pub class: FrameClass,
}

/// Stacks of one side (a profile view) or two sides (base and head of a comparison) aggregated
/// into one tree.
#[derive(Debug, Clone)]
pub struct FlameTree {
    /// `(type, unit)` of each value column, the union over the profiles added, in order of
    /// first appearance.
    pub sample_types: Vec<(String, String)>,
    /// Functions; index 0 is the root.
    pub functions: Vec<FnInfo>,
    /// Parent of each node (`parent[0] == 0`); always smaller than the node's index.
    pub parent: Vec<u32>,
    /// Function of each node.
    pub func: Vec<u32>,
    /// `self_values[side][type][node]`.
    pub self_values: Vec<Vec<Vec<i64>>>,
    /// Profiles added per side, to show per-run averages.
    pub profiles: Vec<usize>,
    children: FastMap<(u32, u32), u32>,
    by_name: HashMap<String, u32>,
}

impl FlameTree {
    /// An empty tree with `sides` value sets (1 for a profile, 2 for base and head).
    pub fn new(sides: usize) -> FlameTree {
        let root =
            FnInfo { name: ROOT_NAME.to_owned(), file: String::new(), line: 0, class: FrameClass::Root };
        FlameTree {
            sample_types: Vec::new(),
            functions: vec![root],
            parent: vec![0],
            func: vec![0],
            self_values: vec![Vec::new(); sides],
            profiles: vec![0; sides],
            children: FastMap::default(),
            by_name: HashMap::new(),
        }
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether the tree has only its root.
    pub fn is_empty(&self) -> bool {
        self.len() == 1
    }

    /// Adds every sample of `profile` to `side`.
    pub fn add(&mut self, side: usize, profile: &Profile) {
        let columns: Vec<usize> = profile
            .sample_type
            .iter()
            .map(|t| self.column(profile.str(t.r#type), profile.str(t.unit)))
            .collect();
        // Function id -> our function index; location id -> its frames, outermost first.
        let mut fns: HashMap<u64, u32> = HashMap::with_capacity(profile.function.len());
        for f in &profile.function {
            let name = profile.str(f.name);
            let i = self.function(name, profile.str(f.filename), f.start_line);
            fns.insert(f.id, i);
        }
        let mut locs: HashMap<u64, Vec<u32>> = HashMap::with_capacity(profile.location.len());
        for l in &profile.location {
            let mut frames: Vec<u32> =
                l.line.iter().filter_map(|line| fns.get(&line.function_id).copied()).collect();
            for line in &l.line {
                if let Some(&f) = fns.get(&line.function_id) {
                    let info = &mut self.functions[f as usize];
                    if info.line == 0 {
                        info.line = line.line;
                    }
                }
            }
            if frames.is_empty() {
                frames.push(self.function(&format!("0x{:x}", l.address), "", 0));
            }
            frames.reverse();
            locs.insert(l.id, frames);
        }
        for s in &profile.sample {
            let mut node = 0u32;
            for id in s.location_id.iter().rev() {
                let Some(frames) = locs.get(id) else { continue };
                for &f in frames {
                    node = self.child(node, f);
                }
            }
            let values = &mut self.self_values[side];
            for (&col, &v) in columns.iter().zip(&s.value) {
                let slot = &mut values[col][node as usize];
                *slot = slot.saturating_add(v);
            }
        }
        self.profiles[side] += 1;
    }

    fn column(&mut self, ty: &str, unit: &str) -> usize {
        if let Some(i) = self.sample_types.iter().position(|(t, _)| t == ty) {
            return i;
        }
        self.sample_types.push((ty.to_owned(), unit.to_owned()));
        let n = self.len();
        for side in &mut self.self_values {
            side.push(vec![0; n]);
        }
        self.sample_types.len() - 1
    }

    fn function(&mut self, name: &str, file: &str, line: i64) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.functions.len() as u32;
        self.functions.push(FnInfo {
            name: name.to_owned(),
            file: file.to_owned(),
            line,
            class: FrameClass::of_function(name, file),
        });
        self.by_name.insert(name.to_owned(), i);
        i
    }

    fn child(&mut self, parent: u32, func: u32) -> u32 {
        if let Some(&c) = self.children.get(&(parent, func)) {
            return c;
        }
        let c = self.parent.len() as u32;
        self.parent.push(parent);
        self.func.push(func);
        for side in &mut self.self_values {
            for col in side.iter_mut() {
                col.push(0);
            }
        }
        self.children.insert((parent, func), c);
        c
    }

    /// Total (inclusive) value of every node for one side and type: its self value plus its
    /// descendants'.
    pub fn totals(&self, side: usize, column: usize) -> Vec<i64> {
        let mut total = self.self_values[side][column].clone();
        for node in (1..self.len()).rev() {
            let p = self.parent[node] as usize;
            total[p] = total[p].saturating_add(total[node]);
        }
        total
    }

    /// The node reached by a path of function names from the root, if any.
    pub fn find_path(&self, path: &[&str]) -> Option<usize> {
        let mut node = 0u32;
        for name in path {
            let f = *self.by_name.get(*name)?;
            node = *self.children.get(&(node, f))?;
        }
        Some(node as usize)
    }

    /// The JSON form (see the module docs). Columns whose values are all zero on every side are
    /// left out.
    pub fn to_json(&self) -> TreeJson<'_> {
        let mut classes: Vec<&FrameClass> = Vec::new();
        let mut class_of = Vec::with_capacity(self.functions.len());
        for f in &self.functions {
            let i = match classes.iter().position(|c| **c == f.class) {
                Some(i) => i,
                None => {
                    classes.push(&f.class);
                    classes.len() - 1
                }
            };
            class_of.push(i as u32);
        }
        let kept: Vec<usize> = (0..self.sample_types.len())
            .filter(|&c| self.self_values.iter().any(|side| side[c].iter().any(|&v| v != 0)))
            .collect();
        TreeJson {
            types: kept
                .iter()
                .map(|&c| {
                    let (name, unit) = &self.sample_types[c];
                    TypeJson { name, unit, label: type_label(name) }
                })
                .collect(),
            fns: FnsJson {
                name: self.functions.iter().map(|f| f.name.as_str()).collect(),
                file: self.functions.iter().map(|f| f.file.as_str()).collect(),
                line: self.functions.iter().map(|f| f.line).collect(),
                class: class_of,
                own: self
                    .functions
                    .iter()
                    .map(|f| u8::from(super::classify::is_own(&f.class, &f.file)))
                    .collect(),
            },
            classes: classes
                .iter()
                .map(|c| ClassJson {
                    name: c.label().to_owned(),
                    color: c.color(),
                    runtime: c.is_runtime(),
                    prologue: c.is_prologue(),
                })
                .collect(),
            parent: &self.parent,
            func: &self.func,
            self_values: self
                .self_values
                .iter()
                .map(|side| kept.iter().map(|&c| &side[c][..]).collect())
                .collect(),
            profiles: &self.profiles,
        }
    }
}

/// The label of a sample type in the profile-type selector.
pub fn type_label(ty: &str) -> String {
    match ty {
        "samples" => "CPU samples",
        "cpu" => "CPU time",
        "cpu_per_iter" => "CPU time per iteration",
        "alloc_space" => "Allocated bytes",
        "alloc_objects" => "Allocation count",
        "inuse_space" => "In-use bytes",
        "inuse_objects" => "In-use count",
        "contentions" => "Lock waits",
        "delay" => "Time waiting for locks",
        "wall" => "Wall time (on and off CPU)",
        other => other,
    }
    .to_owned()
}

/// JSON form of a [`FlameTree`].
#[derive(Debug, Serialize)]
pub struct TreeJson<'a> {
    types: Vec<TypeJson<'a>>,
    fns: FnsJson<'a>,
    classes: Vec<ClassJson>,
    parent: &'a [u32],
    #[serde(rename = "fn")]
    func: &'a [u32],
    #[serde(rename = "self")]
    self_values: Vec<Vec<&'a [i64]>>,
    profiles: &'a [usize],
}

#[derive(Debug, Serialize)]
struct TypeJson<'a> {
    name: &'a str,
    unit: &'a str,
    label: String,
}

#[derive(Debug, Serialize)]
struct FnsJson<'a> {
    name: Vec<&'a str>,
    file: Vec<&'a str>,
    line: Vec<i64>,
    class: Vec<u32>,
    /// 1 for the user's own code ([`super::classify::is_own`]), 0 otherwise.
    own: Vec<u8>,
}

#[derive(Debug, Serialize)]
struct ClassJson {
    name: String,
    color: String,
    /// Standard library, native code or a harness: their self cost counts in the caller.
    runtime: bool,
    /// Runtime, or a thread pool's scheduler: the prologue of a thread is made of these.
    prologue: bool,
}
