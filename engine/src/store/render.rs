//! Text and JSON renderings of store queries, over any `impl Write`.

use std::io::{self, Write};

use super::meta::{RunMetadata, RunSummary, rfc3339};
use super::query::{GcReport, Log};

fn short(key: &str) -> &str {
    if key.len() == 40 && key.bytes().all(|b| b.is_ascii_hexdigit()) { &key[..12] } else { key }
}

fn tags(run: &RunSummary) -> String {
    run.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `log` as a table: one line per run, newest first.
pub fn render_log(log: &Log, out: &mut impl Write) -> io::Result<()> {
    if log.runs.is_empty() {
        writeln!(out, "no runs")?;
    } else {
        writeln!(
            out,
            "{:<35} {:<20} {:<13} {:<16} {:>5} {:>9}  TAGS",
            "RUN", "TIME", "COMMIT", "BRANCH", "PROF", "BYTES"
        )?;
    }
    for r in &log.runs {
        let commit = format!("{}{}", short(&r.key), if r.dirty { "+" } else { "" });
        writeln!(
            out,
            "{:<35} {:<20} {:<13} {:<16} {:>5} {:>9}  {}",
            r.run_id,
            rfc3339(r.time),
            commit,
            r.branch.as_deref().unwrap_or("-"),
            r.profiles,
            r.bytes,
            tags(r)
        )?;
    }
    Ok(())
}

/// `log` as a JSON array of run summaries.
pub fn render_log_json(log: &Log, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &log.runs)?;
    writeln!(out)
}

/// `show`: the metadata, then the profiles.
pub fn render_show(meta: &RunMetadata, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "run       {}", meta.run_id)?;
    match &meta.commit {
        Some(c) => writeln!(out, "commit    {c}{}", if meta.dirty { " (dirty)" } else { "" })?,
        None => writeln!(out, "key       {} ({})", meta.key, meta.key_note)?,
    }
    if let Some(h) = &meta.diff_hash {
        writeln!(out, "diff      {h}")?;
    }
    writeln!(out, "branch    {}", meta.branch.as_deref().unwrap_or("-"))?;
    writeln!(out, "time      {}", rfc3339(meta.time))?;
    writeln!(out, "host      {}", meta.host)?;
    writeln!(out, "toolchain {} ({})", meta.toolchain.release, meta.toolchain.host)?;
    writeln!(out, "target    {}", meta.target)?;
    writeln!(out, "command   {}", meta.command.join(" "))?;
    let s = &meta.settings;
    let interval = s.alloc_interval.map(|i| format!(" every {i} B")).unwrap_or_default();
    writeln!(
        out,
        "settings  engine={} frequency={} Hz alloc={}{} runs={} unwind={}",
        s.engine.name(),
        s.frequency_hz,
        s.alloc_mode.map_or("", contprof_protocol::env::alloc_name),
        interval,
        s.runs,
        s.unwind.name()
    )?;
    for (k, v) in &meta.tags {
        writeln!(out, "tag       {k}={v}")?;
    }
    writeln!(out, "profiles  {}", meta.profiles.len())?;
    for p in &meta.profiles {
        let exit = p.exit_code.map_or_else(|| "-".to_string(), |c| c.to_string());
        let stopped = p.stopped.as_deref().map(|s| format!("  ({s}: not compared)")).unwrap_or_default();
        writeln!(
            out,
            "  {:<40} #{:<3} exit {:<4} {:>9} B  {}{stopped}",
            p.group, p.repetition, exit, p.size, p.file
        )?;
    }
    Ok(())
}

/// `gc`: what went (or would go, on a dry run).
pub fn render_gc(report: &GcReport, dry_run: bool, out: &mut impl Write) -> io::Result<()> {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for r in &report.deleted {
        writeln!(out, "{verb} {} ({} {})", r.run_id, short(&r.key), rfc3339(r.time))?;
    }
    for id in &report.orphans {
        writeln!(out, "{verb} orphaned objects of unfinished run {id}")?;
    }
    writeln!(
        out,
        "{verb} {} runs and {} orphans; kept {} runs",
        report.deleted.len(),
        report.orphans.len(),
        report.kept
    )
}
