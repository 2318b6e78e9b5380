//! Function name normalization: one readable, hash-free name per function.

/// Demangles a Rust (legacy or v0) or C++ symbol name. Rust names use the alternate form,
/// which drops the `::h<hash>` suffix (legacy) and crate disambiguators (v0), so that names
/// are stable across builds; closures (`{{closure}}`, `{closure#0}`) and generic arguments are
/// kept. Names that are not mangled are returned unchanged.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if let Some(d) = addr2line::demangle(name, addr2line::gimli::DW_LANG_C_plus_plus) {
        return d;
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn removes_rust_hashes_and_keeps_closures() {
        assert_eq!(demangle("_ZN4core3fmt5write17h0123456789abcdefE"), "core::fmt::write");
        assert_eq!(
            demangle("_ZN3foo3bar28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"),
            "foo::bar::{{closure}}"
        );
        assert_eq!(demangle("_RNCNvCs1234_5hello4main0B3_"), "hello::main::{closure#0}");
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("memcpy"), "memcpy");
    }
}
