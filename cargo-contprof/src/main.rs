//! `cargo contprof`: see the library crate for everything.

fn main() {
    std::process::exit(cargo_contprof::cli::main_impl(std::env::args_os()));
}
