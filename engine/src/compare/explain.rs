//! Which cost changes the diff could have caused: the *call-path rule*.
//!
//! A function's cost change is explained when code that runs on its behalf changed between base
//! and head (the machine code, from [`crate::code`]'s fingerprints):
//! - its **self cost**, when a stack on which it is the function the self cost is counted in
//!   holds a changed function at its own place or below: itself or the function it was inlined
//!   into, a library frame folded into it, or its **direct caller** (which may call it more often
//!   or with more work);
//! - its **total cost**, when a stack through it holds a changed function at its place, below it
//!   (callees: more work) or as its direct caller.
//!
//! Callers further up do not explain: a change in `main` or in a top-level entry point (a new
//! branch in `from_str`, an unrelated function linked in there) would otherwise explain every
//! function under it, layout shifts included. What such a caller changes below it shows in the
//! total cost of its direct callees, which it does explain.
//!
//! Everything else that moved beyond noise is a *shift*: the code did not change, so layout,
//! the machine or the input moved it, and no reviewer of the diff can act on it.
//!
//! Reads decoded profiles; knows nothing of the store or the statistics.

use std::collections::BTreeSet;

use super::input::FrameNames;
use super::model::Explained;
use crate::profile::Profile;

impl Explained {
    /// Applies the call-path rule to every stack of `profiles` (both sides' runs of one group).
    pub fn from_stacks<'a>(
        profiles: impl IntoIterator<Item = &'a Profile>,
        changed: &BTreeSet<String>,
        fold_library: bool,
    ) -> Explained {
        let mut out = Explained { changed: changed.clone(), ..Explained::default() };
        if changed.is_empty() {
            return out;
        }
        for profile in profiles {
            let names = FrameNames::new(profile, fold_library);
            let (mut frames, mut seen, mut located) = (Vec::new(), Vec::new(), Vec::new());
            for s in &profile.sample {
                let Some(leaf) = names.stack(s, &mut frames, &mut seen) else { continue };
                names.located(s, &mut located);
                // The innermost location holding a changed function.
                let Some(changed_at) =
                    located.iter().filter(|(_, (name, _))| changed.contains(name)).map(|(d, _)| *d).min()
                else {
                    continue;
                };
                // A function is explained when that location is at or below its direct caller:
                // the next location outward holding a frame that is not a library frame (the
                // library frames in between, iterator adapters and closure shims, are part of
                // the call).
                // A function's innermost location, and its caller's.
                let place = |name: &str| {
                    let &(d, _) = located.iter().find(|(_, (n, _))| n == name)?;
                    let caller =
                        located.iter().find(|(dc, (_, library))| *dc > d && !library).map(|(dc, _)| *dc);
                    Some((d, caller.unwrap_or(usize::MAX)))
                };
                let explained_at = |caller: usize| changed_at <= caller;
                // A changed function between a function's place and its caller's, the caller's
                // included.
                let called_by_changed = |d: usize, caller: usize| {
                    located.iter().any(|(cd, (n, _))| *cd > d && *cd <= caller && changed.contains(n))
                };
                if !out.self_cost.contains(leaf)
                    && place(leaf).is_some_and(|(_, caller)| explained_at(caller))
                {
                    out.self_cost.insert(leaf.to_owned());
                }
                for &name in &seen {
                    let (total, called) = (out.total.contains(name), out.called_by_changed.contains(name));
                    if total && called {
                        continue;
                    }
                    let Some((d, caller)) = place(name) else { continue };
                    if !total && explained_at(caller) {
                        out.total.insert(name.to_owned());
                    }
                    if !called && called_by_changed(d, caller) {
                        out.called_by_changed.insert(name.to_owned());
                    }
                }
            }
        }
        out
    }

    /// Whether a change of `function`'s cost of `kind` is explained.
    pub fn explains(&self, function: &str, kind: super::Kind) -> bool {
        match kind {
            super::Kind::SelfCost => self.self_cost.contains(function),
            super::Kind::Total => self.total.contains(function),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Function, Line, Location, Sample, ValueType};

    /// A profile with one sample per stack (outermost first in the arguments, as read aloud).
    fn profile(stacks: &[&[&str]]) -> Profile {
        let mut p = Profile { string_table: vec![String::new()], ..Profile::default() };
        let intern = |p: &mut Profile, s: &str| {
            p.string_table.iter().position(|x| x == s).unwrap_or_else(|| {
                p.string_table.push(s.to_owned());
                p.string_table.len() - 1
            }) as i64
        };
        let ty = intern(&mut p, "cpu");
        p.sample_type.push(ValueType { r#type: ty, unit: ty });
        for stack in stacks {
            let mut ids = Vec::new();
            for name in stack.iter().rev() {
                let n = intern(&mut p, name);
                let id = p.function.iter().find(|f| f.name == n).map(|f| f.id).unwrap_or_else(|| {
                    let id = p.function.len() as u64 + 1;
                    p.function.push(Function { id, name: n, system_name: n, ..Function::default() });
                    id
                });
                let loc = p.location.len() as u64 + 1;
                p.location.push(Location {
                    id: loc,
                    line: vec![Line { function_id: id, line: 0, column: 0 }],
                    ..Location::default()
                });
                ids.push(loc);
            }
            p.sample.push(Sample { location_id: ids, value: vec![1], label: vec![] });
        }
        p
    }

    #[test]
    fn a_changed_function_explains_its_callers_totals_and_its_callees_but_not_its_siblings() {
        let p = profile(&[
            &["app::main", "app::encode", "json::serialize_str"],
            &["app::main", "app::checksum", "app::fnv_round"],
            &["app::main", "app::checksum", "app::fnv_round", "memcpy"],
            &["app::main", "app::checksum"],
        ]);
        let changed = BTreeSet::from(["app::checksum".to_owned()]);
        let e = Explained::from_stacks([&p], &changed, true);
        // The changed function itself, and what it calls (more work or more calls from it).
        assert!(e.explains("app::checksum", crate::compare::Kind::SelfCost));
        assert!(e.explains("app::fnv_round", crate::compare::Kind::SelfCost));
        // Its direct caller's total contains it; its own code did not change.
        assert!(e.explains("app::main", crate::compare::Kind::Total));
        assert!(!e.explains("app::main", crate::compare::Kind::SelfCost));
        // A sibling path: nothing on it changed.
        assert!(!e.explains("json::serialize_str", crate::compare::Kind::SelfCost));
        assert!(!e.explains("app::encode", crate::compare::Kind::Total));
    }

    #[test]
    fn a_changed_entry_point_explains_its_direct_callees_only() {
        // `from_str` changed (a new branch); the parser two calls below it did not.
        let p = profile(&[
            &["app::main", "json::from_str", "json::parse_value", "json::parse_str"],
            &["app::main", "json::from_str", "json::parse_value"],
        ]);
        let changed = BTreeSet::from(["json::from_str".to_owned()]);
        let e = Explained::from_stacks([&p], &changed, true);
        assert!(e.explains("json::parse_value", crate::compare::Kind::SelfCost));
        assert!(e.explains("json::parse_value", crate::compare::Kind::Total));
        assert!(!e.explains("json::parse_str", crate::compare::Kind::SelfCost));
        assert!(!e.explains("json::parse_str", crate::compare::Kind::Total));
        assert!(e.explains("app::main", crate::compare::Kind::Total));
        // Called by changed code: the direct callee only; not the changed function, nor its caller.
        assert_eq!(e.called_by_changed, BTreeSet::from(["json::parse_value".to_owned()]));
    }

    #[test]
    fn a_changed_library_frame_explains_the_user_function_it_is_folded_into() {
        let p =
            profile(&[&["app::main", "app::parse", "core::str::from_utf8"], &["app::main", "app::other"]]);
        let changed = BTreeSet::from(["core::str::from_utf8".to_owned()]);
        let e = Explained::from_stacks([&p], &changed, true);
        assert!(e.explains("app::parse", crate::compare::Kind::SelfCost));
        assert!(!e.explains("app::other", crate::compare::Kind::SelfCost));
        assert!(Explained::from_stacks([&p], &BTreeSet::new(), true).total.is_empty());
    }
}
