//! Prints a summary of a raw sample file: `cargo run -p contprof --example dump -- FILE [--leaves N]`.
//!
//! With `--leaves N` it also prints the N most frequent leaf addresses relative to the load
//! base of their file (for a PIE or a shared library that is the ELF virtual address, ready for
//! `addr2line -f -e FILE ADDR`).

use std::collections::BTreeMap;

use contprof::format::{ClockKind, RawFile, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump FILE [--leaves N] [--stacks N]")?;
    let (mut leaves, mut show_stacks) = (0usize, 0usize);
    while let (Some(flag), Some(n)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--leaves" => leaves = n.parse()?,
            "--stacks" => show_stacks = n.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let f = RawFile::read_from(std::fs::File::open(&path)?)?;
    let h = f.header;
    println!(
        "pid {} freq {} Hz clock {} alloc_mode {} interval {} contention rate {} ns wall period {} ns",
        h.pid,
        h.frequency_hz,
        ClockKind::from_u32(h.clock).name(),
        h.alloc_mode,
        h.alloc_interval,
        h.contention_rate_ns,
        h.wall_period_ns
    );
    let mut wall: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
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
            Record::KernelTime { tid, kernel_ns } => println!("kernel time: tid {tid} {kernel_ns} ns"),
            Record::ThreadStack { tid, frames } => {
                println!("thread snapshot: tid {tid}, {} frames", frames.len())
            }
            Record::ContentionStack { contentions, delay_ns, frames } => {
                println!("contention: {contentions} waits, {delay_ns} ns, {} frames", frames.len())
            }
            Record::WallStack { tid, wall_ns, .. } => {
                let e = wall.entry(*tid).or_default();
                e.0 += 1;
                e.1 += wall_ns;
            }
            Record::WallTime { tid, wall_ns } => wall.entry(*tid).or_default().1 += wall_ns,
            Record::LabelSet { id, pairs } => println!("label set {id}: {pairs:?}"),
            Record::Labels { .. } => {}
            Record::Work { set, units } => println!("work: {units} units under label set {set}"),
            Record::Unknown(k) => println!("unknown record kind {k}"),
        }
    }
    for (tid, (n, frames)) in &per_tid {
        let name = names.get(tid).map(String::as_str).unwrap_or("?");
        println!("tid {tid} {name:<16} samples {n:>6} mean depth {:.1}", *frames as f64 / *n as f64);
    }
    for (tid, (stacks, ns)) in &wall {
        let name = names.get(tid).map(String::as_str).unwrap_or("?");
        println!("tid {tid} {name:<16} wall stacks {stacks:>6} wall {:.3} s", *ns as f64 / 1e9);
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
    let maps0 = maps.first().map(String::as_str).unwrap_or("");
    let stacks = f.records.iter().filter_map(|r| match r {
        Record::CpuSample { tid, frames } => Some(("cpu", *tid as u64, frames)),
        Record::AllocStack { alloc_count, frames, .. } => Some(("alloc", *alloc_count, frames)),
        _ => None,
    });
    for (kind, n, frames) in stacks.take(show_stacks) {
        println!("{kind} stack ({n}):");
        for a in frames {
            let (file, off) = locate(maps0, *a);
            println!("  {a:#x} {file} {off:#x}");
        }
    }
    Ok(())
}

/// Maps an address to (file, address relative to the file's load base) with the maps text.
fn locate(maps: &str, addr: u64) -> (String, u64) {
    let parse = |line: &str| -> Option<(u64, u64, u64, String)> {
        let mut it = line.split_whitespace();
        let (lo, hi) = it.next()?.split_once('-')?;
        let off = u64::from_str_radix(it.nth(1)?, 16).ok()?;
        let file = it.nth(2).unwrap_or("[anon]").to_string();
        Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?, off, file))
    };
    let entries: Vec<_> = maps.lines().filter_map(parse).collect();
    for (lo, hi, _, file) in &entries {
        if *lo <= addr && addr < *hi {
            let base = entries.iter().filter(|e| &e.3 == file && e.2 == 0).map(|e| e.0).min().unwrap_or(*lo);
            return (file.clone(), addr - base);
        }
    }
    ("?".into(), addr)
}
