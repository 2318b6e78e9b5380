//! Compiles `c/exec.c`, the variadic members of the exec family (Rust cannot define a variadic
//! function; see `src/exec.rs`).
fn main() {
    println!("cargo::rerun-if-changed=c/exec.c");
    cc::Build::new().file("c/exec.c").warnings(true).extra_warnings(true).compile("contprof_exec");
}
