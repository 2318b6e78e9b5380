//! contprof workload for crossbeam-channel (tests/measure/real_crates.sh): where threads wait.
//!
//! 1. Rendezvous: two senders and two receivers on one zero-capacity channel. Every operation
//!    locks the channel's `std::sync::Mutex` (crossbeam's `flavors::zero`), which the four
//!    threads contend for on two cores; a sender blocks until a receiver takes its message.
//! 2. Pipeline: a producer feeds a bounded channel of 16 faster than its consumer drains it, so
//!    the producer spends most of its time blocked in `send`.
//!
//! The work per message (`digest`) is the workload's own; the waiting is crossbeam's. Prints how
//! many messages went through and a checksum on stderr.

use std::hint::black_box;
use std::thread;

use crossbeam_channel::bounded;

/// Some work on a message: `rounds` of a multiply-rotate mix.
#[inline(never)]
fn digest(x: u64, rounds: u32) -> u64 {
    let mut h = x ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        h = h.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5851_F42D_4C95_7F2D;
    }
    black_box(h)
}

/// Part 1: `n` messages through a zero-capacity channel, two senders and two receivers.
#[inline(never)]
fn rendezvous(n: u64) -> u64 {
    let (tx, rx) = bounded::<u64>(0);
    thread::scope(|s| {
        for id in 0..2u64 {
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("sender-{id}"))
                .spawn_scoped(s, move || {
                    for i in (id..n).step_by(2) {
                        tx.send(digest(i, 20)).expect("receivers alive");
                    }
                })
                .expect("spawn sender");
        }
        drop(tx);
        let receivers: Vec<_> = (0..2)
            .map(|id| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("receiver-{id}"))
                    .spawn_scoped(s, move || rx.iter().fold(0u64, |acc, v| acc ^ digest(v, 20)))
                    .expect("spawn receiver")
            })
            .collect();
        receivers.into_iter().map(|r| r.join().expect("receiver")).fold(0, |a, b| a ^ b)
    })
}

/// Part 2: `n` messages from a producer to a slower consumer through a bounded channel of 16.
#[inline(never)]
fn pipeline(n: u64) -> u64 {
    let (tx, rx) = bounded::<u64>(16);
    thread::scope(|s| {
        thread::Builder::new()
            .name("producer".into())
            .spawn_scoped(s, move || {
                for i in 0..n {
                    tx.send(digest(i, 200)).expect("consumer alive");
                }
            })
            .expect("spawn producer");
        let consumer = thread::Builder::new()
            .name("consumer".into())
            .spawn_scoped(s, move || rx.iter().fold(0u64, |acc, v| acc ^ digest(v, 1000)))
            .expect("spawn consumer");
        consumer.join().expect("consumer")
    })
}

fn main() {
    let scale: f64 = std::env::var("CONTPROF_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let (n1, n2) = ((60_000.0 * scale) as u64, (150_000.0 * scale) as u64);
    let sum = rendezvous(n1) ^ pipeline(n2);
    eprintln!("{n1} rendezvous and {n2} pipeline messages, checksum {sum:x}");
}
