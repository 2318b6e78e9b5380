//! Where a `check` spends its time, so that a team sees what the gate costs them: a [`Clock`]
//! that the recording path adds its builds, runs and profile writing to (one per side of a
//! comparison), and the [`Timings`] that the reports carry.
//!
//! Wall time, not CPU time: what a CI job waits for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A phase of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `cargo build` of the workload (a fresh build's check included).
    Build,
    /// Running the workload under the agent (and listing tests or benchmarks).
    Runs,
    /// Symbolizing the samples, writing the profiles and flame graphs, storing the run.
    Profiles,
    /// Finding the baseline, reading the stored runs, the comparison, the "why" section and the
    /// differential flame graphs.
    Analysis,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Build, Phase::Runs, Phase::Profiles, Phase::Analysis];

    /// The name used in the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Runs => "runs",
            Phase::Profiles => "profiles",
            Phase::Analysis => "analysis",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Time spent per phase, added to from wherever the work happens (shared by reference).
#[derive(Debug, Default)]
pub struct Clock {
    nanos: [AtomicU64; 4],
}

impl Clock {
    /// Adds `elapsed` to `phase`.
    pub fn add(&self, phase: Phase, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[phase.index()].fetch_add(nanos, Ordering::Relaxed);
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
        Duration::from_nanos(self.nanos[phase.index()].load(Ordering::Relaxed))
    }
}

/// One phase's time, for one side of the comparison where it has sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// The phase.
    pub phase: Phase,
    /// `base` or `head` for work done per side (the rebuilt base of an interleaved check has its
    /// own builds, runs and profiles); absent for the analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// Where the time of a `check` went: the `timings` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Wall time from the start of `check` to its reports, in seconds (the phases, plus reading
    /// the workspace's metadata and checking out the base).
    pub total_seconds: f64,
    /// Phases with time spent, in order: builds, runs, profiles (head, then base), analysis.
    pub phases: Vec<PhaseTime>,
    /// Runs recorded a side against the most allowed, when the sides were recorded in pairs and
    /// looked at as they went (`compare::sequential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunsUsed>,
}

/// How many of its runs a `check` recorded in pairs used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsUsed {
    /// Runs recorded a side.
    pub used: u32,
    /// The most it would have recorded (`--runs`).
    pub max: u32,
}

impl Timings {
    /// The timings of the sides' clocks (`(side, clock)`, sides that did no work left out), the
    /// analysis and the total.
    pub fn new(sides: &[(&str, &Clock)], analysis: Duration, total: Duration) -> Timings {
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

    /// One line: `68.2 s: build 15.5 s (head) + 15.5 s (base), runs 9.1 s (head) + ...`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for phase in Phase::ALL {
            let of_phase: Vec<String> = self
                .phases
                .iter()
                .filter(|p| p.phase == phase)
                .map(|p| match &p.side {
                    Some(side) => format!("{:.1} s ({side})", p.seconds),
                    None => format!("{:.1} s", p.seconds),
                })
                .collect();
            if !of_phase.is_empty() {
                parts.push(format!("{} {}", phase.as_str(), of_phase.join(" + ")));
            }
        }
        let runs = match self.runs {
            Some(r) if r.used < r.max => {
                format!(
                    "; {} of at most {} runs a side (stopped when every function was clearly unchanged)",
                    r.used, r.max
                )
            }
            Some(r) => format!("; {} runs a side", r.used),
            None => String::new(),
        };
        format!("{:.1} s: {}{runs}", self.total_seconds, parts.join(", "))
    }
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
        let t =
            Timings::new(&[("head", &head), ("base", &base)], Duration::from_secs(1), Duration::from_secs(9));
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
