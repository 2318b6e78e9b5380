//! `cargo contprof prod list|export|compare`: the production windows the continuous agent
//! uploaded, selected from one listing of the store (`prod::select`), compared through the one
//! comparison pipeline (`pipeline::prepare_windows`) and rendered as `compare` renders.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::Utc;

use super::args::{ListFormat, ProdCompareArgs, ProdExportArgs, ProdListArgs, ProdSelectArgs};
use super::compare::{comparison_options, render, verdict, write_stdout};
use super::settings;
use super::store_cmds::project_root;
use crate::compare::{self, RevisionInfo};
use crate::errors::{Error, Result};
use crate::prod::select::{self, Selection};
use crate::shell::Shell;
use crate::store::{Store, WindowKey, parse_time};

/// The store and the selection of `a` (plus `types`).
fn open(a: &ProdSelectArgs, types: &[String]) -> Result<(Store, Selection, crate::config::Config)> {
    let root = project_root(a.scope.manifest_path.as_deref());
    let store = settings::open_store(&a.scope.store, &root)?;
    let now = Utc::now();
    let time = |flag: &'static str, s: &str, end: bool| {
        parse_time(s, now, end).ok_or_else(|| Error::InvalidArgument {
            flag,
            message: format!("`{s}` is not an age (30m, 24h, 7d), a date (2026-11-30) or an RFC 3339 time"),
        })
    };
    for t in types {
        if crate::prod::window::sample_types(t).is_none() {
            return Err(Error::InvalidArgument {
                flag: "--type",
                message: format!("`{t}` is not a profile type: cpu, alloc, heap or threads"),
            });
        }
    }
    let mut labels = Vec::new();
    for (key, values) in [("version", &a.versions), ("zone", &a.zones), ("instance", &a.instances)] {
        labels.extend(values.iter().map(|v| (key.to_owned(), v.clone())));
    }
    for l in &a.labels {
        labels.extend(
            select::parse_labels(l).map_err(|message| Error::InvalidArgument { flag: "--label", message })?,
        );
    }
    let selection = Selection {
        service: a.service.clone(),
        types: types.to_vec(),
        since: Some(time("--since", &a.since, false)?),
        until: a.until.as_deref().map(|u| time("--until", u, true)).transpose()?,
        labels,
    };
    let config = match crate::config::load_at(&root, false) {
        Ok(loaded) => loaded.config,
        Err(_) => crate::config::Config::default(),
    };
    Ok((store, selection, config))
}

/// The windows `selection` picks from `all`, or an error that says what exists.
fn selected(all: &[WindowKey], selection: &Selection, store: &Store) -> Result<Vec<WindowKey>> {
    let picked = selection.apply(all);
    if !picked.is_empty() {
        return Ok(picked);
    }
    let exists = select::summarize(all);
    let what = if exists.is_empty() {
        format!("the store {} holds no production window", store.url())
    } else {
        let list: Vec<String> = exists
            .iter()
            .map(|d| {
                let n: usize = d.windows.values().sum();
                format!("{} {} in {} ({n} windows, {} to {})", d.service, d.version, d.zone, d.first, d.last)
            })
            .collect();
        format!("no production window matches the selection; the store has: {}", list.join("; "))
    };
    Err(Error::NothingMatched { what })
}

/// `prod list`.
pub fn list(a: ProdListArgs) -> Result<()> {
    let (store, selection, _) = open(&a.select, &a.types)?;
    let all = store.list_windows(selection.service.as_deref())?;
    let windows = selected(&all, &selection, &store)?;
    let deployments = select::summarize(&windows);
    let mut out = Vec::new();
    match a.format {
        ListFormat::Json => {
            let windows: Vec<_> = windows
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "service": w.deployment.service,
                        "version": w.deployment.version,
                        "zone": w.deployment.zone,
                        "instance": w.instance,
                        "type": w.profile_type,
                        "start": chrono::DateTime::<Utc>::from_timestamp(w.start, 0).unwrap_or_default().to_rfc3339(),
                        "path": w.path(),
                    })
                })
                .collect();
            let doc = serde_json::json!({ "deployments": deployments, "windows": windows });
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| Error::msg(e.to_string()))?;
            out.push(b'\n');
        }
        ListFormat::Text => {
            let mut by_service: BTreeMap<&str, Vec<&select::DeploymentSummary>> = BTreeMap::new();
            for d in &deployments {
                by_service.entry(&d.service).or_default().push(d);
            }
            for (service, ds) in by_service {
                let _ = writeln!(out, "{service}");
                for d in ds {
                    let types: Vec<String> = d.windows.iter().map(|(t, n)| format!("{t} {n}")).collect();
                    let _ = writeln!(
                        out,
                        "  version {}  zone {}  windows: {}  instances: {}  {} .. {}",
                        d.version,
                        d.zone,
                        types.join(", "),
                        d.instances.len(),
                        d.first,
                        d.last
                    );
                }
            }
            if a.windows {
                for w in &windows {
                    let start =
                        chrono::DateTime::<Utc>::from_timestamp(w.start, 0).unwrap_or_default().to_rfc3339();
                    let d = &w.deployment;
                    let _ = writeln!(
                        out,
                        "{start}  {} {} {} {} {}",
                        d.service, w.profile_type, d.version, d.zone, w.instance
                    );
                }
            }
        }
    }
    write_stdout(&out)
}

/// `prod export`.
pub fn export(a: ProdExportArgs, shell: &Shell) -> Result<()> {
    let (store, selection, _) = open(&a.select, &a.types)?;
    let all = store.list_windows(selection.service.as_deref())?;
    let windows = selected(&all, &selection, &store)?;
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io("could not create", &a.dir, e))?;
    let mut written = 0;
    for w in &windows {
        let Some(bytes) = store.get_window(w)? else {
            shell.warn(format_args!("{} is gone (deleted since it was listed)", w.path()));
            continue;
        };
        // The key's escaped parts make a safe file name: letters, digits, `.`, `-`, `+`, `_`.
        let name = w.path().trim_start_matches("prod/windows/").replace('/', "_");
        crate::record::write_atomic(&a.dir.join(name), &bytes)?;
        written += 1;
    }
    shell.status("Exported", format_args!("{written} window profile(s) to {}", a.dir.display()));
    Ok(())
}

/// `prod compare`.
pub fn compare(a: ProdCompareArgs, shell: &Shell) -> Result<()> {
    if a.select.service.is_none() {
        return Err(Error::InvalidArgument {
            flag: "--service",
            message: "`prod compare` compares windows of one service: name it".into(),
        });
    }
    if !matches!(a.profile_type.as_str(), "cpu" | "alloc" | "heap") {
        return Err(Error::InvalidArgument {
            flag: "--type",
            message: format!("`{}`: compare cpu, alloc or heap", a.profile_type),
        });
    }
    let (store, selection, config) = open(&a.select, std::slice::from_ref(&a.profile_type))?;
    let options = comparison_options(&config, &a.stats)?;
    let all = store.list_windows(selection.service.as_deref())?;
    let side = |flag: &'static str, spec: &str| -> Result<Vec<WindowKey>> {
        let mut s = selection.clone();
        s.labels
            .extend(select::parse_labels(spec).map_err(|message| Error::InvalidArgument { flag, message })?);
        selected(&all, &s, &store)
    };
    let (base, head) = (side("--base", &a.base)?, side("--head", &a.head)?);
    shell.status(
        "Comparing",
        format_args!("{} windows of {} with {} of {}", head.len(), a.head, base.len(), a.base),
    );
    let prepared = crate::pipeline::prepare_windows(
        &store,
        (&a.base, &base),
        (&a.head, &head),
        config.fold_library.unwrap_or(true),
    )?;
    for w in prepared.warnings.iter().chain(&prepared.notes) {
        shell.warn(w);
    }
    let info = |label: &str, windows: &[WindowKey]| {
        let mut extra = BTreeMap::new();
        extra.insert("windows".to_owned(), windows.len().to_string());
        let instances: std::collections::BTreeSet<&str> =
            windows.iter().map(|w| w.instance.as_str()).collect();
        extra.insert("instances".to_owned(), instances.len().to_string());
        RevisionInfo { commit: String::new(), label: label.to_owned(), extra }
    };
    let cmp = compare::compare(&prepared.groups, info(&a.base, &base), info(&a.head, &head), &options)?;
    for w in &cmp.warnings {
        shell.warn(w);
    }
    let mut out = Vec::new();
    render(&cmp, a.format, &mut out).map_err(|e| Error::io("could not render", "stdout", e))?;
    write_stdout(&out)?;
    verdict(&cmp)
}
