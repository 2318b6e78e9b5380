//! The `cargo contprof` command line: parsing (clap, [`args`]), then one module per command that
//! validates its flags and the configuration, read once, into the engine's typed requests and
//! settings (`contprof_engine`), calls the engine, and prints. It holds no work another front end
//! would need: the viewer (`contprof_viewer`) calls the same engine entry points.

pub mod args;
mod check;
mod ci;
mod compare;
mod output;
mod prod;
mod recording;
mod settings;
mod store_cmds;
mod view;

use std::ffi::OsString;

use clap::Parser;

use args::{CargoCli, Command};
use contprof_contracts::exit_codes;
use contprof_engine::errors;
use contprof_engine::record::request::Mode;
use contprof_engine::shell::{Shell, Verbosity};

/// Entry point of the binary: parses `args` (including the program name), runs the command and
/// returns the process exit code. Errors are printed here, once, with their causes.
pub fn main_impl(args: impl IntoIterator<Item = OsString>) -> i32 {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // Run by cargo as the workspace's rustc wrapper while `check` builds a rebuilt base.
    if let Some(code) = contprof_engine::cargo::run_as_wrapper(&args) {
        return code;
    }
    // Invoked directly as `cargo-contprof run ...` rather than through cargo: insert the subcommand.
    if args.get(1).is_none_or(|a| a != "contprof") {
        args.insert(1, "contprof".into());
    }
    let CargoCli::Contprof(cli) = match CargoCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit_codes::ERROR } else { exit_codes::OK };
        }
    };
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let shell = Shell::new(verbosity);
    contprof_engine::interrupt::install();
    let result = match cli.command {
        Command::Run(a) => recording::run(a, &shell),
        Command::Test(a) => recording::suite(a, Mode::Test, &shell),
        Command::Bench(a) => recording::suite(a, Mode::Bench, &shell),
        Command::Compare(a) => compare::run(a, &shell),
        Command::Check(a) => check::run(a, &shell),
        Command::Log(a) => store_cmds::log(a, &shell),
        Command::Show(a) => store_cmds::show(a),
        Command::Export(a) => store_cmds::export(a, &shell),
        Command::Import(a) => store_cmds::import(a, &shell),
        Command::Gc(a) => store_cmds::gc(a, &shell),
        Command::Serve(a) => view::serve(a, &shell),
        Command::Report(a) => view::report(a, &shell),
        Command::Agent(args::AgentCommand::Path { dir, link, no_alloc }) => agent_path(dir, link, no_alloc),
        Command::Agent(args::AgentCommand::Upload(a)) => {
            contprof_protocol::service::UploaderArgs::parse(a.args)
                .map_err(|e| errors::Error::InvalidArgument {
                    flag: "the uploader's arguments",
                    message: e.to_string(),
                })
                .and_then(contprof_engine::prod::uploader::run)
        }
        Command::Prod(args::ProdCommand::List(a)) => prod::list(a, &shell),
        Command::Prod(args::ProdCommand::Export(a)) => prod::export(a, &shell),
        Command::Prod(args::ProdCommand::Compare(a)) => prod::compare(a, &shell),
        Command::Prod(args::ProdCommand::Compact(a)) => prod::compact(a, &shell),
        Command::Prod(args::ProdCommand::Top(a)) => prod::top(a, &shell),
        Command::Prod(args::ProdCommand::Report(a)) => prod::report(a, &shell),
        Command::Prod(args::ProdCommand::Pause(a)) => prod::pause(a, &shell),
        Command::Prod(args::ProdCommand::Resume(a)) => prod::resume(a, &shell),
        Command::Prod(args::ProdCommand::Symbols(args::ProdSymbolsCommand::Add(a))) => {
            prod::symbols_add(a, &shell)
        }
        Command::Prod(args::ProdCommand::Symbols(args::ProdSymbolsCommand::List(a))) => {
            prod::symbols_list(a, &shell)
        }
        Command::Prod(args::ProdCommand::Watch(a)) => prod::watch(a, &shell),
    };
    match result {
        Ok(()) => exit_codes::OK,
        // The report already says so: a regression is not a tool error.
        Err(e @ errors::Error::RegressionFound { .. }) => e.exit_code(),
        // `cargo contprof log | head`: the reader went away; nothing more to say.
        Err(e) if is_broken_pipe(&e) => exit_codes::OK,
        Err(e) => {
            let _ = errors::report(&e, &mut anstream::stderr().lock());
            e.exit_code()
        }
    }
}

/// Whether `e` (or one of its causes) is a write to a closed pipe.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Writes beside the library the path of this executable, the uploader of the continuous mode
/// when none is beside the library or given (`contprof_protocol::service::UPLOADER_RECORD`), so that
/// `LD_PRELOAD=$(cargo contprof agent path)` needs nothing on `PATH`.
fn record_uploader(dir: &std::path::Path) -> errors::Result<()> {
    let Ok(exe) = std::env::current_exe() else { return Ok(()) };
    let file = dir.join(contprof_protocol::service::UPLOADER_RECORD);
    let line = format!("{}\n", exe.display());
    if std::fs::read_to_string(&file).is_ok_and(|old| old == line) {
        return Ok(());
    }
    contprof_engine::record::write_atomic(&file, line.as_bytes())
}

/// `cargo contprof agent path`: installs the embedded agent library and prints its path.
fn agent_path(dir: Option<std::path::PathBuf>, link: Option<String>, no_alloc: bool) -> errors::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| std::path::Path::new(&h).join(".cache"))
                })
                .ok_or_else(|| errors::Error::InvalidArgument {
                    flag: "--dir",
                    message: "neither XDG_CACHE_HOME nor HOME is set: name the directory".into(),
                })?;
            cache.join("cargo-contprof")
        }
    };
    let build = if no_alloc {
        contprof_engine::runner::agent::Build::Lean
    } else {
        contprof_engine::runner::agent::Build::Full
    };
    let mut path = contprof_engine::runner::agent::install_build(&dir, build)?;
    record_uploader(&dir)?;
    if let Some(name) = link {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(errors::Error::InvalidArgument {
                flag: "--link",
                message: format!("`{name}` is not a file name"),
            });
        }
        // A new link under a temporary name, renamed over the old one: never a moment without it.
        let target = path.file_name().map(std::path::PathBuf::from).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(|e| errors::Error::io("could not create", &tmp, e))?;
        let linked = dir.join(&name);
        std::fs::rename(&tmp, &linked).map_err(|e| errors::Error::io("could not create", &linked, e))?;
        path = linked;
    }
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, format!("{}\n", path.display()).as_bytes())
        .map_err(|e| errors::Error::io("could not write", "stdout", e))
}
