//! Compiles `c/exec.c`, the variadic members of the exec family (Rust cannot define a variadic
//! function; see `src/exec.rs`). Only for glibc on Linux, the one platform the library supports.
fn main() {
    println!("cargo::rerun-if-changed=c/exec.c");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        cc::Build::new().file("c/exec.c").warnings(true).extra_warnings(true).compile("contprof_exec");
    }
}
