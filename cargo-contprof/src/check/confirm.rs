//! The instructions engine's confirmation in `check`: exact counts repeat where the program does
//! the same work, but not where its threads race (`compare::sequential::to_confirm`), so with an
//! interleaved base and no `--runs`, the groups whose counts changed in the first pair run once
//! more on each side, alone, and the final comparison judges only separated ranges.

use std::cell::RefCell;

use contprof_engine::compare::Comparison;
use contprof_engine::config::CheckTarget;
use contprof_engine::shell::Shell;
use contprof_engine::store::RunMetadata;

/// What the first pair recorded and what the second must confirm.
#[derive(Default)]
pub(super) struct Confirmation {
    /// The groups each target recorded in the first pair (the head's run).
    first: RefCell<Vec<(CheckTarget, Vec<String>)>>,
    /// The groups to run again, once the first pair's comparison has named them.
    flagged: RefCell<Option<Vec<String>>>,
}

impl Confirmation {
    /// The groups of `target` the next repetition runs: empty for all of them (the first pair),
    /// `None` when it runs none (nothing of it to confirm).
    pub(super) fn only(&self, target: &CheckTarget) -> Option<Vec<String>> {
        let flagged = self.flagged.borrow();
        let Some(flagged) = flagged.as_ref() else { return Some(Vec::new()) };
        let first = self.first.borrow();
        let recorded = first.iter().find(|(t, _)| t == target).map(|(_, g)| g.as_slice()).unwrap_or_default();
        let wanted: Vec<String> = recorded.iter().filter(|g| flagged.contains(g)).cloned().collect();
        (!wanted.is_empty()).then_some(wanted)
    }

    /// Notes the groups of the head's first run of `target`.
    pub(super) fn recorded(&self, target: &CheckTarget, run: &RunMetadata) {
        if self.flagged.borrow().is_none() {
            let groups = run.profiles.iter().map(|p| p.group.clone()).collect();
            self.first.borrow_mut().push((target.clone(), groups));
        }
    }

    /// The look after the first pair: true (stop) when `cmp` found nothing; else notes the
    /// groups to run again and says so.
    pub(super) fn look(&self, cmp: &Comparison, shell: &Shell) -> bool {
        let groups = contprof_engine::compare::sequential::to_confirm(cmp);
        if groups.is_empty() {
            shell.status("Stopping", "after one run a side: no instruction count changed");
            return true;
        }
        let shown: Vec<&str> = groups.iter().take(3).map(String::as_str).collect();
        let more = groups.len() - shown.len();
        shell.status(
            "Confirming",
            format_args!(
                "the counts of {} group{} with one more run a side (a change of the code repeats, \
                 threads racing do not): {}{}",
                groups.len(),
                if groups.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
        );
        *self.flagged.borrow_mut() = Some(groups);
        false
    }
}
