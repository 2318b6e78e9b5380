//! contprof workload for miniz_oxide: compress generated text (deflate, level 6), then decompress
//! it `INFLATE_PASSES` times and check the round trip; print a checksum. Deterministic input
//! (xorshift PRNG); about 1 s of CPU on the development VM. `INFLATE_PASSES` is the constant a
//! caller-side change of tests/measure/caller_change.sh edits (4 -> 5: +25% of the work of
//! everything under `decompress_to_vec`, a fifth of the CPU).
use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec;

const INFLATE_PASSES: usize = 4;
const ROUNDS: usize = 6;

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "the", "of", "and", "a", "to", "in",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// About 1 MiB of words, numbers and punctuation: compresses about 3:1.
fn corpus(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < 1 << 20 {
        let r = rng.next();
        out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
        match (r >> 8) % 16 {
            0 => out.extend_from_slice(format!(" {} ", (r >> 16) % 100_000).as_bytes()),
            1 => out.extend_from_slice(b".\n"),
            2 => out.extend_from_slice(b", "),
            _ => out.push(b' '),
        }
    }
    out
}

fn inflate_all(packed: &[u8], expected: usize, round: usize) -> u64 {
    let mut sum = 0u64;
    for _ in 0..INFLATE_PASSES {
        let out = decompress_to_vec(packed).expect("round trip");
        assert_eq!(out.len(), expected);
        sum = sum.wrapping_add(u64::from(out[round * 7919 % out.len()]));
    }
    sum
}

fn main() {
    let data = corpus(0x9E37_79B9_7F4A_7C15);
    let mut sum = 0u64;
    for round in 0..ROUNDS {
        let packed = compress_to_vec(&data, 6);
        sum = sum.wrapping_add(packed.len() as u64);
        sum = sum.wrapping_add(inflate_all(&packed, data.len(), round));
    }
    println!("checksum {sum}");
}
