//! Human units for durations and byte counts.

/// `1.23 s`, `45.6 ms`, `789 µs`, `12 ns`.
pub fn format_duration(ns: i64) -> String {
    let v = ns as f64;
    match ns.unsigned_abs() {
        n if n >= 1_000_000_000 => format!("{:.2} s", v / 1e9),
        n if n >= 1_000_000 => format!("{:.1} ms", v / 1e6),
        n if n >= 1_000 => format!("{:.0} µs", v / 1e3),
        _ => format!("{ns} ns"),
    }
}

/// `950`, `12.3 k`, `4.56 M`, `7.89 G`: instruction and other counts.
pub fn format_count(n: i64) -> String {
    let v = n as f64;
    match n.unsigned_abs() {
        a if a >= 1_000_000_000 => format!("{:.2} G", v / 1e9),
        a if a >= 1_000_000 => format!("{:.2} M", v / 1e6),
        a if a >= 1_000 => format!("{:.1} k", v / 1e3),
        _ => format!("{n}"),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn format_bytes(bytes: i64) -> String {
    let v = bytes as f64;
    match bytes.unsigned_abs() {
        n if n >= 1 << 30 => format!("{:.1} GiB", v / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", v / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", v / 1024.0),
        _ => format!("{bytes} B"),
    }
}

/// `v` in a pprof sample type's `unit`: a duration for `nanoseconds`, bytes for `bytes`, a count
/// otherwise.
pub fn format_in_unit(v: i64, unit: &str) -> String {
    match unit {
        "nanoseconds" => format_duration(v),
        "bytes" => format_bytes(v),
        _ => format_count(v),
    }
}
