//! `cargo contprof prod list|export|compare|compact|report|pause|resume`: the production windows
//! the continuous agent uploaded, selected from one listing of the store (`prod::select`),
//! compared through the one comparison pipeline (`prod::rollouts::compare_loaded`) and rendered as
//! `compare` renders; and the off switch (`pause`, `resume`: the store's pause objects, which
//! every uploader reads once per period).

use std::collections::BTreeMap;
use std::io::Write;

use chrono::Utc;

use super::args::{
    ListFormat, ProdCompactArgs, ProdCompareArgs, ProdExportArgs, ProdListArgs, ProdPauseArgs,
    ProdReportArgs, ProdResumeArgs, ProdSelectArgs, ProdSymbolsAddArgs, ProdSymbolsListArgs, ProdTopArgs,
    ProdWatchArgs, ReportFormat, TopFormat, TopType,
};
use super::output::{render, verdict, write_stdout};
use super::settings;
use contprof_engine::errors::{Error, Result};
use contprof_engine::prod::compact::{self, CompactOptions};
use contprof_engine::prod::load::{self, Want};
use contprof_engine::prod::rollouts::{self, Asked, Judging, Rollout, Said, Status, Watch};
use contprof_engine::prod::rollup::Observation;
use contprof_engine::prod::select::{self, Selection};
use contprof_engine::shell::Shell;
use contprof_engine::store::{Pause, Store, WindowKey, parse_time, rfc3339};

/// The label filters of `a`: `--version`, `--zone`, `--instance` and `--label`.
fn labels_of(a: &ProdSelectArgs) -> Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    for (key, values) in [("version", &a.versions), ("zone", &a.zones), ("instance", &a.instances)] {
        labels.extend(values.iter().map(|v| (key.to_owned(), v.clone())));
    }
    labels.extend(settings::label_flags("--label", &a.labels)?);
    Ok(labels)
}

/// The store and the selection of `a` (plus `types`).
fn open(a: &ProdSelectArgs, types: &[String]) -> Result<(Store, Selection, contprof_engine::config::Config)> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    let store = project.open_store(&a.scope.store)?;
    let now = Utc::now();
    let time = |flag: &'static str, s: &str, end: bool| {
        parse_time(s, now, end).ok_or_else(|| Error::InvalidArgument {
            flag,
            message: format!("`{s}` is not an age (30m, 24h, 7d), a date (2026-11-30) or an RFC 3339 time"),
        })
    };
    for t in types {
        if contprof_engine::prod::window::sample_types(t).is_none() {
            return Err(contprof_engine::prod::window::unknown_type("--type", t));
        }
    }
    let labels = labels_of(a)?;
    let sample_labels = settings::label_flags("--sample-label", &a.sample_labels)?;
    let selection = Selection {
        service: a.service.clone(),
        types: types.to_vec(),
        since: Some(time("--since", &a.since, false)?),
        until: a.until.as_deref().map(|u| time("--until", u, true)).transpose()?,
        labels,
        sample_labels,
        keep_sample_labels: false,
    };
    Ok((store, selection, project.config().clone()))
}

/// The selected windows of every service and type the selection names; warnings go to the shell.
fn load_selected(
    store: &Store,
    selection: &Selection,
    want: &Want,
    shell: &Shell,
) -> Result<Vec<Observation>> {
    let (observations, warnings) = load::load_all(store, selection, want, Utc::now())?;
    for w in &warnings {
        shell.warn(w);
    }
    Ok(observations)
}

/// The error for a selection that matched nothing, saying what the store has.
fn nothing_matched(store: &Store, selection: &Selection) -> Error {
    Error::NothingMatched { what: load::nothing_matched(store, selection, Utc::now()) }
}

/// `prod top`.
pub fn top(a: ProdTopArgs, shell: &Shell) -> Result<()> {
    if !(a.speedup > 0.0 && a.speedup < 1.0) {
        return Err(Error::InvalidArgument {
            flag: "--speedup",
            message: format!("`{}` is not a fraction between 0 and 1 (0.1: 10% faster)", a.speedup),
        });
    }
    let measure = match a.measure {
        TopType::Cpu => contprof_engine::prod::top::Measure::Cpu,
        TopType::Heap => contprof_engine::prod::top::Measure::Heap,
    };
    let (store, selection, _) = open(&a.select, &[measure.profile_type().to_owned()])?;
    let (fleet, warnings, _) =
        contprof_engine::prod::fleet::read(&store, &selection, measure, None, Utc::now())?;
    for w in &warnings {
        shell.warn(w);
    }
    if fleet.windows == 0 {
        return Err(nothing_matched(&store, &selection));
    }
    if fleet.without_length > 0 {
        shell.warn(format_args!(
            "{} window(s) left out: their length is not known (rollups written by an older cargo contprof, in a \
             service with no window of known length); `prod compact --full` writes them again",
            fleet.without_length
        ));
    }
    let limit = a.limit as usize;
    let mut out = Vec::new();
    let written = match a.format {
        TopFormat::Text => contprof_engine::prod::top::write_text(&fleet, limit, a.speedup, &mut out),
        TopFormat::Markdown => contprof_engine::prod::top::write_markdown(&fleet, limit, a.speedup, &mut out),
        TopFormat::Json => contprof_engine::prod::top::write_json(&fleet, limit, a.speedup, &mut out),
    };
    written.map_err(|e| Error::io("could not render", "the report", e))?;
    write_stdout(&out)
}

/// `prod list`.
pub fn list(a: ProdListArgs, shell: &Shell) -> Result<()> {
    let (store, selection, _) = open(&a.select, &a.types)?;
    let pauses: Vec<Pause> = store
        .production_pauses()?
        .into_iter()
        .filter(|p| p.service.is_none() || selection.service.is_none() || p.service == selection.service)
        .collect();
    let observations = load_selected(&store, &selection, &Want::default(), shell)?;
    if observations.is_empty() {
        for p in &pauses {
            shell.warn(format_args!("profiling is paused: {}", p.describe()));
        }
        return Err(nothing_matched(&store, &selection));
    }
    let windows: Vec<WindowKey> = observations.into_iter().map(|o| o.key).collect();
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
            let paused: Vec<_> = pauses
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "service": p.service,
                        "reason": p.reason,
                        "since": rfc3339(p.since),
                        "by": p.by,
                    })
                })
                .collect();
            let doc = serde_json::json!({ "deployments": deployments, "windows": windows, "paused": paused });
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| Error::msg(e.to_string()))?;
            out.push(b'\n');
        }
        ListFormat::Text => {
            for p in &pauses {
                let _ = writeln!(out, "paused: {}", p.describe());
            }
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
    let windows: Vec<WindowKey> =
        load_selected(&store, &selection, &Want::default(), shell)?.into_iter().map(|o| o.key).collect();
    if windows.is_empty() {
        return Err(nothing_matched(&store, &selection));
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io("could not create", &a.dir, e))?;
    let mut written = 0;
    let mut renamer = contprof_engine::prod::symbols::Renamer::new(&store);
    for w in &windows {
        let Some(bytes) = store.get_window(w)? else {
            shell.warn(format_args!("{} is gone (deleted since it was listed)", w.path()));
            continue;
        };
        // The key's escaped parts make a safe file name: letters, digits, `.`, `-`, `+`, `_`.
        let name = w.path().trim_start_matches("prod/windows/").replace('/', "_");
        let mut p = contprof_engine::profile::decode(&bytes)
            .map_err(|e| Error::msg(format!("{}: corrupt profile: {e}", w.path())))?;
        // Frames recorded before their binary's debug file was in the store get its names.
        let renamed = renamer.rename(&mut p) > 0;
        let bytes = if selection.sample_labels.is_empty() && !renamed {
            bytes
        } else {
            // Only the samples that carry the labels asked for (windows with none were left out).
            if !load::keep_labelled_samples(&mut p, &selection) {
                continue;
            }
            contprof_engine::profile::encode_to_vec(&p)
        };
        contprof_engine::record::write_atomic(&a.dir.join(name), &bytes)?;
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
    if contprof_engine::prod::rollup::metric_of(&a.profile_type).is_none() {
        return Err(Error::InvalidArgument {
            flag: "--type",
            message: format!(
                "`{}`: compare cpu, alloc, heap, contention or wall (a threads profile is one instant, not a cost)",
                a.profile_type
            ),
        });
    }
    let (store, selection, config) = open(&a.select, std::slice::from_ref(&a.profile_type))?;
    let service = a.select.service.clone().unwrap_or_default();
    let options = config.comparison_options(&a.judging.stats.overrides())?;
    let judging = Judging {
        denominator: a.judging.denominator,
        options: &options,
        fold_library: config.fold_library.unwrap_or(true),
    };
    let asked = Asked {
        service: &service,
        profile_type: &a.profile_type,
        judging: &judging,
        by_label: a.by.as_deref(),
    };
    let cmp =
        rollouts::compare_sides(&store, &selection, &asked, (&a.base, &a.head), &mut |m| say(shell, m))?;
    let mut out = Vec::new();
    render(&cmp, a.format, &mut out).map_err(|e| Error::io("could not render", "stdout", e))?;
    write_stdout(&out)?;
    verdict(&cmp)
}

/// `prod compact`.
pub fn compact(a: ProdCompactArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    let store = project.open_store(&a.scope.store)?;
    let fold_library = project.config().fold_library.unwrap_or(true);
    let opts = CompactOptions {
        service: a.service,
        rescan_days: i64::from(a.rescan_days),
        full: a.full,
        fold_library,
        now: Utc::now(),
    };
    let done = compact::compact(&store, &opts, &mut |what| shell.status("Compacting", what))?;
    for w in &done.warnings {
        shell.warn(w);
    }
    shell.status(
        "Compacted",
        format_args!(
            "{} hour and {} day rollup(s) written from {} window profile(s){}{}",
            done.hours,
            done.days,
            done.windows,
            if done.unchanged > 0 {
                format!("; {} hour(s) without new windows left unread", done.unchanged)
            } else {
                String::new()
            },
            if done.deleted > 0 {
                format!("; {} stale costs object(s) deleted", done.deleted)
            } else {
                String::new()
            }
        ),
    );
    Ok(())
}

/// `prod report`.
pub fn report(a: ProdReportArgs, shell: &Shell) -> Result<()> {
    let Some(service) = a.select.service.clone() else {
        return Err(Error::InvalidArgument {
            flag: "--service",
            message: "a production report shows one service: name it".into(),
        });
    };
    if !matches!(a.color.as_str(), "version" | "zone" | "instance") {
        return Err(Error::InvalidArgument {
            flag: "--color",
            message: format!("`{}`: colour by version, zone or instance", a.color),
        });
    }
    let (store, _, config) = open(&a.select, std::slice::from_ref(&a.profile_type))?;
    let labels = labels_of(&a.select)?;
    let query = contprof_viewer::ProdQuery {
        service,
        profile_type: a.profile_type.clone(),
        since: a.select.since.clone(),
        until: a.select.until.clone(),
        labels,
        sample_labels: settings::label_flags("--sample-label", &a.select.sample_labels)?,
        by: a.by.clone(),
        color: a.color.clone(),
        function: a.function.clone(),
        base: a.base.clone(),
        head: a.head.clone(),
        json: false,
    };
    let comparing = contprof_viewer::Comparing {
        options: config.comparison_options(&Default::default())?,
        fold_library: config.fold_library.unwrap_or(true),
        repo: None,
    };
    let mut page = Vec::new();
    contprof_viewer::prod::write_page(&mut page, &store, &query, &comparing, (false, None), Utc::now())?;
    contprof_engine::record::write_atomic(&a.html, &page)?;
    shell.status("Wrote", format_args!("{} ({} KiB)", a.html.display(), page.len() / 1024));
    Ok(())
}

/// `prod pause`.
pub fn pause(a: ProdPauseArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    let store = project.open_store(&a.scope.store)?;
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let host = contprof_engine::store::host_name();
    let pause = Pause {
        service: a.service,
        reason: a.reason,
        since: Utc::now(),
        by: if user.is_empty() { host } else { format!("{user}@{host}") },
    };
    store.pause_production(&pause)?;
    shell.status(
        "Paused",
        format_args!(
            "{}; the uploaders stop at their next period (`cargo contprof prod resume` ends it)",
            pause.describe()
        ),
    );
    Ok(())
}

/// `prod resume`.
pub fn resume(a: ProdResumeArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    let store = project.open_store(&a.scope.store)?;
    match store.resume_production(a.service.as_deref())? {
        Some(p) => shell.status("Resumed", format_args!("{} is over", p.describe())),
        None => shell.warn(format_args!(
            "{} was not paused",
            a.service.as_deref().map_or("the store".to_owned(), |s| format!("service {s}"))
        )),
    }
    // A pause of every service still holds this one.
    if a.service.is_some()
        && let Some(all) = store.production_pauses()?.into_iter().find(|p| p.service.is_none())
    {
        shell.warn(format_args!("profiling stays paused: {}", all.describe()));
    }
    Ok(())
}

/// `prod symbols add`.
pub fn symbols_add(a: ProdSymbolsAddArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    // Every file is checked before anything is stored.
    let mut checked = Vec::new();
    for path in &a.files {
        let info = contprof_engine::symbolize::file_info(path)
            .map_err(|e| Error::InvalidArgument { flag: "FILE", message: e.to_string() })?;
        let bad = |why: &str| Error::InvalidArgument {
            flag: "FILE",
            message: format!("{}: {why}", path.display()),
        };
        let Some(build_id) = info.build_id.clone() else {
            return Err(bad(
                "has no GNU build id, which is how services' windows name their binary (rustc and \
                 most distributions' gcc link with `--build-id`; add `-C link-arg=-Wl,--build-id`)",
            ));
        };
        if !info.has_debug_info && !info.has_symbols {
            return Err(bad(
                "has neither debug information nor a symbol table: nothing to name code with (give \
                 the unstripped binary, or the output of `objcopy --only-keep-debug` on it)",
            ));
        }
        checked.push((path, build_id, info));
    }
    let store = project.open_store(&a.scope.store)?;
    for (path, build_id, info) in checked {
        let bytes = std::fs::read(path).map_err(|e| Error::io("could not read", path, e))?;
        let gzipped = contprof_engine::profile::gzip(&bytes);
        let size = gzipped.len() as f64 / (1 << 20) as f64;
        if store.put_debug_file(&build_id, gzipped)? {
            shell.status(
                "Added",
                format_args!(
                    "{} as build {build_id} ({size:.1} MiB compressed){}",
                    path.display(),
                    if info.has_debug_info {
                        ""
                    } else {
                        ": functions only, no files, lines or inlined frames"
                    }
                ),
            );
        } else {
            shell.status(
                "Present",
                format_args!("build {build_id} ({}) was in the store already", path.display()),
            );
        }
    }
    Ok(())
}

/// `prod symbols list`.
pub fn symbols_list(a: ProdSymbolsListArgs, shell: &Shell) -> Result<()> {
    let project = settings::Project::find(a.scope.manifest_path.as_deref())?;
    let store = project.open_store(&a.scope.store)?;
    let ids = store.list_debug_files()?;
    if ids.is_empty() {
        shell.warn(format_args!(
            "store {} has no debug information yet (`cargo contprof prod symbols add FILE`)",
            store.url()
        ));
    }
    let mut out = std::io::stdout().lock();
    for (id, added) in ids {
        let _ = writeln!(out, "{id}  {}", rfc3339(added));
    }
    Ok(())
}

/// `prod watch`.
pub fn watch(a: ProdWatchArgs, shell: &Shell) -> Result<()> {
    if contprof_engine::prod::rollup::metric_of(&a.profile_type).is_none() {
        return Err(Error::InvalidArgument {
            flag: "--type",
            message: format!("`{}`: judge cpu, alloc, heap, contention or wall", a.profile_type),
        });
    }
    let (store, selection, config) = open(&a.select, std::slice::from_ref(&a.profile_type))?;
    let options = config.comparison_options(&a.judging.stats.overrides())?;
    let watch = Watch {
        profile_type: &a.profile_type,
        min_windows: a.min_windows,
        judging: Judging {
            denominator: a.judging.denominator,
            options: &options,
            fold_library: config.fold_library.unwrap_or(true),
        },
    };
    let rollouts = rollouts::judge_rollouts(&store, &selection, &watch, &mut |m| say(shell, m))?;
    let mut out = Vec::new();
    render_rollouts(&rollouts, a.format, a.min_windows, &mut out)
        .map_err(|e| Error::io("could not render", "stdout", e))?;
    write_stdout(&out)?;
    let regressed = rollouts.iter().filter(|r| r.new && r.status == Status::Regressed).count();
    if regressed > 0 {
        return Err(Error::RegressionFound { count: regressed });
    }
    Ok(())
}

/// What a comparison said, on the shell.
fn say(shell: &Shell, m: Said) {
    match m {
        Said::Status(verb, what) => shell.status(verb, what),
        Said::Warning(w) => shell.warn(w),
    }
}

/// The rollouts as a line each (text, Markdown) or as JSON.
fn render_rollouts(
    rollouts: &[Rollout],
    format: ReportFormat,
    min_windows: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if format == ReportFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "rollouts": rollouts }))?;
        return writeln!(out);
    }
    let markdown = format == ReportFormat::Markdown;
    if rollouts.is_empty() {
        writeln!(out, "No rollout in the selected windows (one version per service).")?;
    }
    for r in rollouts {
        let earlier = if r.new { "" } else { " (judged earlier)" };
        let what = match r.status {
            Status::Waiting => format!("waiting until each has {min_windows} windows"),
            Status::Regressed => format!("REGRESSED{earlier}: {}", r.blamed().join(", ")),
            Status::Clean => format!("no regression{earlier}"),
        };
        let (open, close) = if markdown { ("- **", "**") } else { ("", "") };
        writeln!(
            out,
            "{open}{} {} -> {}{close} ({}, {} and {} windows): {what}",
            r.service, r.base, r.head, r.profile_type, r.base_windows, r.head_windows
        )?;
    }
    Ok(())
}
