//! Where a `check` spends its time, so that a team sees what the gate costs them: a [`Clock`]
//! that the recording path adds its builds, runs and profile writing to (one per side of a
//! comparison), and the [`Timings`] that the reports carry.
//!
//! Wall time, not CPU time: what a CI job waits for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use contprof_contracts::report::{Phase, PhaseTime, RunsUsed, Timings};

/// Time spent per phase, added to from wherever the work happens (shared by reference).
#[derive(Debug, Default)]
pub struct Clock {
    nanos: [AtomicU64; 4],
}

impl Clock {
    /// Adds `elapsed` to `phase`.
    pub fn add(&self, phase: Phase, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[phase as usize].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Runs `f`, adding the time it took to `phase`.
    pub fn time<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.add(phase, started.elapsed());
        out
    }

    /// The time added to `phase` so far.
    pub fn get(&self, phase: Phase) -> Duration {
        Duration::from_nanos(self.nanos[phase as usize].load(Ordering::Relaxed))
    }
}

/// The timings of the sides' clocks (`(side, clock)`, sides that did no work left out), the
/// analysis and the total.
pub fn timings(sides: &[(&str, &Clock)], analysis: Duration, total: Duration) -> Timings {
    let mut phases = Vec::new();
    for phase in Phase::ALL {
        if phase == Phase::Analysis {
            phases.push(PhaseTime { phase, side: None, seconds: analysis.as_secs_f64() });
            continue;
        }
        for (side, clock) in sides {
            let spent = clock.get(phase);
            if !spent.is_zero() {
                phases.push(PhaseTime {
                    phase,
                    side: Some((*side).to_owned()),
                    seconds: spent.as_secs_f64(),
                });
            }
        }
    }
    Timings { total_seconds: total.as_secs_f64(), phases, runs: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_per_side_in_order_and_idle_ones_left_out() {
        let (head, base) = (Clock::default(), Clock::default());
        head.add(Phase::Build, Duration::from_millis(1500));
        head.add(Phase::Build, Duration::from_millis(500));
        head.add(Phase::Runs, Duration::from_secs(3));
        base.add(Phase::Build, Duration::from_millis(300));
        base.time(Phase::Runs, || std::thread::sleep(Duration::from_millis(1)));
        let t = timings(&[("head", &head), ("base", &base)], Duration::from_secs(1), Duration::from_secs(9));
        let listed: Vec<(Phase, Option<&str>)> =
            t.phases.iter().map(|p| (p.phase, p.side.as_deref())).collect();
        assert_eq!(
            listed,
            [
                (Phase::Build, Some("head")),
                (Phase::Build, Some("base")),
                (Phase::Runs, Some("head")),
                (Phase::Runs, Some("base")),
                (Phase::Analysis, None)
            ]
        );
        assert_eq!(t.phases[0].seconds, 2.0);
        assert!(
            t.describe().starts_with("9.0 s: build 2.0 s (head) + 0.3 s (base), runs 3.0 s (head) + "),
            "{}",
            t.describe()
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["phases"][4], serde_json::json!({"phase": "analysis", "seconds": 1.0}));
        assert_eq!(json["phases"][0]["side"], "head");
    }
}
