//! Signals: a `sigwait` thread, the application's own SIGPROF profiler, a signal storm,
//! `pthread_cancel` at every interposed wait.

use std::time::Duration;

use super::programs::c_program;
use super::run::{Case, PROD_ITIMER, RUN_ITIMER, SignalAfterReady, run_case};

/// Every signal blocked in every thread, one thread in `sigwait`: it must receive the test's
/// SIGTERM and nothing else (no SIGPROF from a CPU timer, the threads snapshot or the wall
/// sampler, no SIGTERM lost to an agent thread that does not block it).
#[test]
fn sigwait_thread_receives_only_its_sigterm() {
    let Some(program) = c_program("sigwait") else { return };
    let mut case = Case::new("sigwait", program, &[]).also(&[RUN_ITIMER, PROD_ITIMER]).windows();
    case.signal = Some(SignalAfterReady { signal: libc::SIGTERM, after: Duration::from_secs(3) });
    run_case(case).assert_unchanged();
}

fn own_sigprof(when: &str) {
    let Some(program) = c_program("own_sigprof") else { return };
    run_case(Case::new(&format!("own SIGPROF profiler ({when})"), program, &[when]).windows())
        .assert_unchanged();
}

/// The application's profiler starts in a library constructor, before the agent's.
#[test]
fn own_sigprof_profiler_started_before_the_agent() {
    own_sigprof("early");
}

/// The application's profiler starts at the top of `main`, after the agent's constructor and
/// before any production window.
#[test]
fn own_sigprof_profiler_started_in_main() {
    own_sigprof("main");
}

/// The application's profiler starts after production windows began.
#[test]
fn own_sigprof_profiler_started_late() {
    own_sigprof("late");
}

/// 5,000 SIGUSR1 from a thread, 3,000 SIGUSR2 from a child, 3,000 queued SIGRTMIN: all counted;
/// errno intact across every handler; a read blocked through the storm restarts.
#[test]
fn signal_storm_counts_every_signal() {
    let Some(program) = c_program("signal_storm") else { return };
    run_case(Case::new("signal storm", program, &[]).windows()).assert_unchanged();
}

/// `pthread_cancel` at every interposed wait, blocked and with the cancellation pending; locks
/// that are not cancellation points; the waits' errno.
#[test]
fn pthread_cancel_at_every_interposed_wait() {
    let Some(program) = c_program("cancel") else { return };
    run_case(Case::new("pthread_cancel", program, &[])).assert_unchanged();
}
