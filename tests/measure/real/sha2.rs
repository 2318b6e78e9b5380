//! contprof workload for sha2: two std threads (std::thread::scope) hash deterministic data, one with
//! SHA-256 and one with SHA-512: large buffers in one call, and many small records fed in odd-sized
//! pieces through the incremental `Digest::update` (what content-addressed stores and manifests
//! do). Prints a checksum of the digests. About 0.4 s of CPU over the two threads on the development VM.
use sha2::digest::block_api::AlgorithmName;
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::marker::PhantomData;

/// The algorithm's name through the crate's `AlgorithmName` (printed once at the end).
struct Name<D>(PhantomData<D>);
impl<D: AlgorithmName> fmt::Display for Name<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        D::write_alg_name(f)
    }
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn work<D: Digest>(seed: u64, big_rounds: usize, records: usize) -> u64 {
    let buf = data(seed, 1 << 20);
    let mut acc = 0u64;
    for r in 0..big_rounds {
        let d = D::digest(&buf[r % 64..]);
        acc = acc.rotate_left(5) ^ u64::from_le_bytes(d[..8].try_into().unwrap());
    }
    let mut off = 0usize;
    for i in 0..records {
        let len = 24 + (i * 37) % 200;
        if off + len > buf.len() {
            off = 0;
        }
        let rec = &buf[off..off + len];
        off += len;
        let mut h = D::new();
        for piece in rec.chunks(1 + i % 13) {
            h.update(piece);
        }
        let d = h.finalize();
        acc = acc.rotate_left(3) ^ u64::from_le_bytes(d[..8].try_into().unwrap());
    }
    acc
}

fn main() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| work::<Sha256>(1, 60, 300_000));
        let b = s.spawn(|| work::<Sha512>(2, 9, 225_000));
        (a.join().unwrap(), b.join().unwrap())
    });
    println!(
        "sha2 workload ({}, {}) checksum {:016x}",
        Name::<Sha256>(PhantomData),
        Name::<Sha512>(PhantomData),
        a ^ b.rotate_left(1)
    );
}
