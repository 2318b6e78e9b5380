//! Units of work counted per label set ([`super::count_work`]): requests served, messages
//! handled. A counter per interned set (`.bss`, its pages touched only as sets are made), added
//! to with one relaxed atomic add, taken (swapped to zero) when a raw file ends and written there
//! as `KIND_WORK` records; a file that opens starts them at zero, so each file (each window of
//! the continuous mode) holds the work done while it was open.

use core::sync::atomic::{AtomicU64, Ordering};

use super::intern::{MAX_SETS, published};

#[allow(clippy::declare_interior_mutable_const, reason = "array initialiser")]
const ZERO: AtomicU64 = AtomicU64::new(0);

/// Per set id (0: no labels), the units counted since the file opened.
static UNITS: [AtomicU64; MAX_SETS] = [ZERO; MAX_SETS];

/// Adds `units` to set `set` (an id the table never handed out counts as no labels).
#[inline]
pub(crate) fn count(set: u32, units: u64) {
    let counter = UNITS.get(set as usize).unwrap_or(&UNITS[0]);
    counter.fetch_add(units, Ordering::Relaxed);
}

/// Calls `f(set, units)` for every set that counted work, and starts each at zero again.
#[cfg_attr(
    not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))),
    allow(dead_code)
)]
pub(crate) fn take(mut f: impl FnMut(u32, u64)) {
    for (set, counter) in UNITS.iter().enumerate().take(published() as usize) {
        if counter.load(Ordering::Relaxed) > 0 {
            let units = counter.swap(0, Ordering::Relaxed);
            if units > 0 {
                f(set as u32, units);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_counted_per_set_and_taken_once() {
        let set = super::super::intern::intern(0, [("work-test", "a")]);
        count(set, 3);
        count(set, 4);
        count(u32::MAX - 1, 2);
        let mut seen = Vec::new();
        take(|s, u| seen.push((s, u)));
        assert!(seen.contains(&(set, 7)), "{seen:?}");
        assert!(seen.iter().any(|&(s, u)| s == 0 && u >= 2), "an unknown id counts as no labels: {seen:?}");
        let mut again = Vec::new();
        take(|s, u| again.push((s, u)));
        assert!(!again.iter().any(|&(s, _)| s == set), "taken once: {again:?}");
    }
}
