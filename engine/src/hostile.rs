//! Hostile bytes for the parsers of outside input: mutations of valid inputs (bit flips,
//! overwritten, inserted, deleted and duplicated ranges, truncation, two inputs spliced) or random
//! bytes, fed to a parser that must answer with a value or an error, never a panic. The engine's
//! parsers are tried in its `hostile_tests`, the viewer's in its own; this module is built for
//! tests only (and for the tests of the crates above through the `test-support` feature).
//!
//! 600 cases per parser in every `cargo test` run (`CONTPROF_HOSTILE_CASES` raises it), from
//! fixed seeds so that CI runs the same inputs; a failing case prints the parser, the case, its
//! seed and the input in hex, and `CONTPROF_HOSTILE_SEED=<seed>` replays that one case.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Cases per parser in an ordinary test run.
const CASES: u64 = 600;

/// Cases per parser in this run.
fn cases() -> u64 {
    std::env::var("CONTPROF_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES)
}

/// One mutation of `base` (or of a splice of it with `other`), or random bytes.
fn mutate(rng: &mut fastrand::Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    if base.is_empty() || rng.u8(..) < 24 {
        let len = rng.usize(..4096);
        return (0..len).map(|_| rng.u8(..)).collect();
    }
    let mut v = base.to_vec();
    for _ in 0..rng.usize(1..6) {
        let len = v.len().max(1);
        let at = rng.usize(..len);
        match rng.u8(..8) {
            0 => {
                if let Some(b) = v.get_mut(at) {
                    *b ^= 1 << rng.u8(..8);
                }
            }
            1 => {
                for b in v.iter_mut().skip(at).take(rng.usize(1..16)) {
                    *b = rng.u8(..);
                }
            }
            2 => {
                let n = rng.usize(1..32);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        let any = rng.u8(..);
                        rng.choice([0u8, 0xff, 0x7f, 0x80, any]).unwrap_or(0)
                    })
                    .collect();
                v.splice(at.min(v.len())..at.min(v.len()), bytes);
            }
            3 => {
                let end = (at + rng.usize(1..64)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 => v.truncate(at),
            5 => {
                let end = (at + rng.usize(1..64)).min(v.len());
                let copy = v[at.min(end)..end].to_vec();
                let to = rng.usize(..=v.len());
                v.splice(to..to, copy);
            }
            6 if !other.is_empty() => {
                let cut = rng.usize(..=other.len());
                v.truncate(at.min(v.len()));
                v.extend_from_slice(&other[cut..]);
            }
            _ => {
                // Lengths and counts are where parsers trust input: set a little-endian u32 to an extreme.
                if at + 4 <= v.len() {
                    let x = rng.choice([0u32, 1, u32::MAX, 0x7fff_ffff, 0x0010_0000]).unwrap_or(0);
                    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    v
}

/// Feeds `cases()` hostile inputs derived from `valid` to `parse`, which must not panic.
pub fn hostile(name: &str, valid: &[Vec<u8>], parse: impl Fn(&[u8])) {
    let seeds: Vec<u64> = match std::env::var("CONTPROF_HOSTILE_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..cases()).map(|i| 0x5eed_0000_0000 ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect(),
    };
    let empty = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(seed);
        let base = if valid.is_empty() { &empty } else { &valid[rng.usize(..valid.len())] };
        let other = if valid.is_empty() { &empty } else { &valid[rng.usize(..valid.len())] };
        let input = mutate(&mut rng, base, other);
        if catch_unwind(AssertUnwindSafe(|| parse(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "{name}: case {i} (CONTPROF_HOSTILE_SEED={seed}) panicked on {} bytes: {hex}",
                input.len()
            );
        }
    }
}

/// A small symbolized profile (from a raw file of this test binary's own addresses).
pub fn sample_profile() -> crate::profile::Profile {
    let raw = contprof_protocol::format::RawFile::parse(&valid_raw()).unwrap();
    crate::profile::build_profile(&raw, &mut crate::symbolize::Symbolizer::new(), &Default::default()).profile
}

/// A valid raw sample file whose stacks are addresses of this test binary.
pub fn valid_raw() -> Vec<u8> {
    let here = valid_raw as *const () as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut w = crate::profile::RawWriter::new(contprof_protocol::format::Header {
        magic: contprof_protocol::format::MAGIC,
        version: contprof_protocol::format::VERSION,
        header_len: contprof_protocol::format::HEADER_LEN as u32,
        pid: 7,
        frequency_hz: 999,
        clock: 1,
        alloc_mode: 1,
        alloc_interval: 4096,
        start_unix_ns: 1,
        contention_rate_ns: 0,
        wall_period_ns: 0,
    });
    w.maps(&maps)
        .thread_name(3, "worker")
        .cpu_sample(3, &[here + 4, here + 40, contprof_protocol::format::TRUNCATED_FRAME])
        .cpu_sample(4, &[here + 8])
        .alloc_stack([1, 64, 1, 64], &[here + 12, here + 40]);
    w.message(1, "a warning");
    w.end(contprof_protocol::format::EndRecord {
        cpu_time_ns: 1,
        wall_ns: 2,
        samples: 2,
        threads: 2,
        ..Default::default()
    });
    w.bytes().to_vec()
}
