//! What the tool calls a frame's function, and whether it is the library's: one normalization of
//! names (hashes and closure indices dropped, so that identity survives rebuilds and edits
//! elsewhere) and one test of library frames (the standard library, the crates the toolchain
//! vendors, C symbols, the agent) for the comparison, the call-path rule, the code fingerprints,
//! the terminal table, the suite summary, the "why" section and the viewer.
//!
//! Reads names and source paths only; knows nothing of costs.

/// The normalized name of a function: no `::h<hash>`, closure indices erased.
pub fn normalize_name(name: &str) -> String {
    let mut s = name.trim();
    if let Some(i) = s.rfind("::h") {
        let hash = &s[i + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            s = &s[..i];
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{closure}}") {
            out.push_str("{closure}");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{closure#") {
            match t.find('}') {
                Some(end) if t[..end].bytes().all(|b| b.is_ascii_digit()) => {
                    out.push_str("{closure}");
                    rest = &t[end + 1..];
                }
                _ => {
                    out.push('{');
                    rest = &tail[1..];
                }
            }
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `__rustc` holds std's allocator shims and panic entry points (`__rustc::__rdl_alloc`).
const LIBRARY_CRATES: &[&str] =
    &["std", "core", "alloc", "compiler_builtins", "test", "panic_unwind", "std_detect", "__rustc"];
/// Primitive types, whose inherent methods (`<u64>::wrapping_add`) live in `core`.
pub const PRIMITIVES: &[&str] = &[
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
    "bool", "char", "str",
];

/// Whether a (normalized) function name is a library frame: standard library, primitive methods,
/// C symbols (no `::` path) and the agent.
pub fn is_library_frame(name: &str) -> bool {
    if !name.contains("::") {
        return true;
    }
    // `<T as Trait>::f` and `<T>::f` belong to T's crate; strip references, `dyn`, `impl`, slices.
    let mut s = name;
    loop {
        let t = s.trim_start_matches(['<', '&', '*', '(', '[', ' ']);
        let t = t.strip_prefix("mut ").or_else(|| t.strip_prefix("const ")).unwrap_or(t);
        let t = t.strip_prefix("dyn ").or_else(|| t.strip_prefix("impl ")).unwrap_or(t);
        if t == s {
            break;
        }
        s = t;
    }
    let first = s.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
    LIBRARY_CRATES.contains(&first) || PRIMITIVES.contains(&first)
}

/// [`is_library_frame`] of a function name as a profile holds it (normalized first), for a frame
/// whose source file is unknown; see [`is_library_function`].
pub fn is_library_symbol(name: &str) -> bool {
    is_library_frame(&normalize_name(name))
}

/// Whether a source path (as the debug info names it) is the toolchain's own source: the standard
/// library and the crates it vendors, which are built from the toolchain's `library/` tree and its
/// dependencies, never from the user's registry. The release toolchains remap those paths to
/// `/rustc/<commit>/library/...` (std, core, alloc, libtest, `std_detect`...) and `/rust/deps/<crate>-<version>/...`
/// (std's `hashbrown`, `gimli`, `addr2line`, `miniz_oxide`, `rustc_demangle`, libtest's `getopts`...);
/// a toolchain whose sources are installed (`rust-src`) or built locally names them under
/// `<sysroot>/lib/rustlib/src/rust/` (`library/` and `vendor/`). A crate from the user's registry
/// (`~/.cargo/registry/src/...`), even one std also uses, is not the toolchain's.
pub fn is_toolchain_source(file: &str) -> bool {
    if let Some(rest) = file.strip_prefix("/rustc/") {
        // `/rustc/<40 hex digits>/...`
        let hash = rest.split('/').next().unwrap_or("");
        return hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    }
    file.starts_with("/rust/deps/") || file.contains("/lib/rustlib/src/rust/")
}

/// Whether a function is a library frame (see the module docs): by its name ([`is_library_symbol`]:
/// std, core, alloc, primitive types, C symbols, the agent) or by its source file
/// ([`is_toolchain_source`]: std's vendored dependencies, whose names say nothing). `file` is the
/// path the profile holds (its `Function.filename`), `""` when unknown. The one test shared by the
/// comparison, the call-path rule, the terminal table, the suite summary and the viewer.
pub fn is_library_function(name: &str, file: &str) -> bool {
    is_toolchain_source(file) || is_library_symbol(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_hashes_and_closure_indices() {
        assert_eq!(normalize_name("foo::bar::h0123456789abcdef"), "foo::bar");
        assert_eq!(normalize_name("foo::bar::{closure#3}"), "foo::bar::{closure}");
        assert_eq!(normalize_name("foo::bar::{{closure}}"), "foo::bar::{closure}");
        assert_eq!(normalize_name("foo::hello"), "foo::hello");
        assert_eq!(normalize_name("foo::{shim:vtable#0}"), "foo::{shim:vtable#0}");
    }

    #[test]
    fn library_frames_are_recognized() {
        for lib in [
            "<u64>::wrapping_add",
            "core::hint::black_box",
            "alloc::alloc::alloc",
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<&dyn core::ops::function::Fn<()> as core::ops::function::FnOnce<()>>::call_once",
            "std::rt::lang_start::{closure}",
            "__memset_avx512_unaligned_erms",
            "[contprof agent]",
            "main",
            "__rustc::__rdl_alloc",
            "__rustc::rust_begin_unwind",
        ] {
            assert!(is_library_frame(lib), "{lib}");
        }
        for user in ["workloads::burn_a", "<mycrate::Foo as core::fmt::Display>::fmt", "regress::main"] {
            assert!(!is_library_frame(user), "{user}");
        }
    }

    /// Issue 27: std's `HashMap` internals (its vendored hashbrown), inlined into the user's
    /// function, were listed as seven regressions of their own.
    #[test]
    fn std_vendored_crates_are_library_frames_by_their_source_path_and_the_users_own_are_not() {
        let std_hashbrown = "/rust/deps/hashbrown-0.16.1/src/raw/mod.rs";
        let rustc = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/collections/hash/map.rs";
        let sysroot = "/home/u/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/core/src/hash/mod.rs";
        let vendored = "/opt/rust/lib/rustlib/src/rust/vendor/gimli-0.32.3/src/read/unit.rs";
        for file in [std_hashbrown, rustc, sysroot, vendored] {
            assert!(is_toolchain_source(file), "{file}");
            assert!(is_library_function("hashbrown::raw::RawTableInner::find_inner", file), "{file}");
        }
        let registry =
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hashbrown-0.15.2/src/raw/mod.rs";
        for file in [registry, "/work/app/src/main.rs", "src/main.rs", "/rustc/notahash/library/x.rs", ""] {
            assert!(!is_toolchain_source(file), "{file}");
            assert!(!is_library_function("hashbrown::raw::RawTableInner::find_inner", file), "{file}");
        }
        // The name still decides where the path does not: std by name, C symbols.
        assert!(is_library_function("core::hint::black_box", ""));
        assert!(is_library_function("memcpy", "/build/glibc/string/memcpy.S"));
    }
}
