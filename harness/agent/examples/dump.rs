//! Prints a summary of a raw sample file: `cargo run -p contprof --example dump -- FILE [--leaves N]`.
//!
//! With `--leaves N` it also prints the N most frequent leaf addresses as offsets into their
//! mapped file (ready for `addr2line -f -e FILE OFFSET`).

use std::collections::BTreeMap;

use contprof::format::{ClockKind, RawFile, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump FILE [--leaves N]")?;
    let leaves: usize = match (args.next().as_deref(), args.next()) {
        (Some("--leaves"), Some(n)) => n.parse()?,
        _ => 0,
    };
    let f = RawFile::read_from(std::fs::File::open(&path)?)?;
    let h = f.header;
    println!(
        "pid {} freq {} Hz clock {} alloc_mode {} interval {}",
        h.pid,
        h.frequency_hz,
        ClockKind::from_u32(h.clock).name(),
        h.alloc_mode,
        h.alloc_interval
    );
    let mut per_tid: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut leaf_counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut maps = Vec::new();
    let (mut stacks, mut ac, mut ab, mut ic, mut ib) = (0, 0, 0, 0, 0);
    for r in &f.records {
        match r {
            Record::CpuSample { tid, frames } => {
                let e = per_tid.entry(*tid).or_default();
                e.0 += 1;
                e.1 += frames.len() as u64;
                *leaf_counts.entry(frames[0]).or_default() += 1;
            }
            Record::ThreadName { tid, name } => {
                names.insert(*tid, name.clone());
            }
            Record::Maps(m) => maps.push(m.clone()),
            Record::AllocStack { alloc_count, alloc_bytes, inuse_count, inuse_bytes, .. } => {
                stacks += 1;
                ac += alloc_count;
                ab += alloc_bytes;
                ic += inuse_count;
                ib += inuse_bytes;
            }
            Record::End(e) => println!("end: {e:?}"),
            Record::Message { level, text } => println!("message[{level}]: {text}"),
            Record::Unknown(k) => println!("unknown record kind {k}"),
        }
    }
    for (tid, (n, frames)) in &per_tid {
        let name = names.get(tid).map(String::as_str).unwrap_or("?");
        println!("tid {tid} {name:<16} samples {n:>6} mean depth {:.1}", *frames as f64 / *n as f64);
    }
    println!("maps records {}", maps.len());
    println!("alloc stacks {stacks}: count {ac} bytes {ab} in-use count {ic} bytes {ib}");
    if f.truncated_bytes > 0 {
        println!("truncated tail: {} bytes", f.truncated_bytes);
    }
    let mut top: Vec<_> = leaf_counts.into_iter().collect();
    top.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    for (addr, n) in top.into_iter().take(leaves) {
        let (file, off) = locate(maps.first().map(String::as_str).unwrap_or(""), addr);
        println!("leaf {addr:#x} x{n}: {file} {off:#x}");
    }
    Ok(())
}

/// Maps an address to (file, file offset) with the maps text.
fn locate(maps: &str, addr: u64) -> (String, u64) {
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(_perms), Some(off)) = (it.next(), it.next(), it.next()) else { continue };
        let Some((lo, hi)) = range.split_once('-') else { continue };
        let (Ok(lo), Ok(hi), Ok(off)) =
            (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        if lo <= addr && addr < hi {
            let file = it.nth(2).unwrap_or("[anon]").to_string();
            return (file, addr - lo + off);
        }
    }
    ("?".into(), addr)
}
