//! `cargo contprof`: the command line is the `cargo_contprof` library, over the engine.

fn main() {
    std::process::exit(cargo_contprof::main_impl(std::env::args_os()));
}
