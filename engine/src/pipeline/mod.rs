//! The one way stored runs become a comparison's input, shared by `compare`, `check` (stored and
//! interleaved baselines), the history of the base and the viewer's `/compare`: per group, the
//! profiles of each side that agree in settings and tree state, read as their settings say
//! (allocations exact, sampled at their interval, or off; library frames folded or not), the
//! settings of the two sides checked against each other, sampled allocation metrics dropped where
//! a run has no sample of them, and the machine-code diff that tells explained changes from shifts.
//!
//! Production windows take the same way through `prod::rollouts::compare_loaded`, each window one
//! observation (read by `prod::load`), sparse allocations dropped as here.
//!
//! [`compare_stored`] is the whole comparison of stored runs as every front end makes it: this
//! preparation, the between-batch spread learned from the store's history ([`history`]), then
//! [`compare::compare`]; so one set of runs gets one verdict in `compare`, `check` and the viewer.
//!
//! It reads the store and prints nothing: what it has to say comes back in [`Prepared::warnings`]
//! and [`Prepared::notes`], for the caller to show its way.
pub mod history;
mod prepare;

pub(crate) use prepare::drop_sparse_allocations;
pub use prepare::{
    GroupRuns, GroupSel, PrepareOptions, Prepared, SideProfiles, SideRuns, all_groups, input_options,
    prepare, read_profile, select_groups, settings_mismatch,
};

use crate::compare::{self, Comparison, Options, RevisionInfo};
use crate::errors::Result;

/// What [`compare_stored`] gives: the comparison and its input (for flame graphs and pages).
pub struct Compared {
    /// The input, with its warnings and notes (the history's among them).
    pub prepared: Prepared,
    /// The verdicts.
    pub comparison: Comparison,
}

/// Compares the stored runs of two sides (see the module docs): [`prepare`], then, when the runs
/// say they were recorded interleaved, [`compare::compare`] with `options` made
/// [`Options::for_interleaved`]; otherwise the spread learned from the history of `base`
/// ([`history::learn`], its notes added to [`Prepared::notes`]), then [`compare::compare`] with
/// `options`.
pub fn compare_stored(
    source: history::Source<'_>,
    base: (SideRuns<'_>, RevisionInfo),
    head: (SideRuns<'_>, RevisionInfo),
    opts: &PrepareOptions<'_>,
    options: &Options,
) -> Result<Compared> {
    let mut prepared = prepare(source.store, base.0, head.0, opts)?;
    let interleaved;
    let options = if crate::store::interleaved(base.0.runs, head.0.runs) {
        interleaved = options.clone().for_interleaved();
        &interleaved
    } else {
        let notes = history::learn(source, base.0.runs, &mut prepared, options, opts.fold_library);
        prepared.notes.extend(notes);
        options
    };
    let comparison = compare::compare(&prepared.groups, base.1, head.1, options)?;
    Ok(Compared { prepared, comparison })
}
