//! Symbolization of this test binary's own functions through the real `/proc/self/maps`.

use std::hint::black_box;
use std::path::PathBuf;

use super::*;

#[inline(never)]
fn symbolize_probe_leaf(x: u64) -> u64 {
    black_box(x).wrapping_mul(31).rotate_left(7)
}

#[inline(always)]
fn symbolize_probe_inlined(x: u64) -> u64 {
    black_box(black_box(x).wrapping_mul(17))
}

#[inline(never)]
fn symbolize_probe_outer(x: u64) -> u64 {
    let a = symbolize_probe_inlined(x);
    black_box(a + 1)
}
// The line of the call of `symbolize_probe_inlined` above (kept right by any edit above it).
const OUTER_CALL_LINE: u32 = line!() - 4;

fn self_maps() -> ProcessMaps {
    ProcessMaps::parse(&std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps"))
}

fn addr_of(f: fn(u64) -> u64) -> u64 {
    f as usize as u64
}

const THIS_FILE: &str = "symbolize/tests.rs";

#[test]
fn resolves_own_function_with_file_line_and_mapping() {
    let maps = self_maps();
    let mut s = Symbolizer::new();
    let addr = addr_of(symbolize_probe_leaf);
    let r = s.resolve(&maps, addr, AddressKind::Exact);
    let f = &r.frames[0];
    assert_eq!(f.function, "contprof_engine::symbolize::tests::symbolize_probe_leaf", "{r:?}");
    assert!(f.system_name.starts_with("_ZN") || f.system_name.starts_with("_R"), "{f:?}");
    assert!(f.file.as_deref().is_some_and(|p| p.ends_with(THIS_FILE)), "{f:?}");
    assert!((8..=10).contains(&f.line), "{f:?}");
    assert_eq!(f.source, FrameSource::Debug);
    let exe = std::env::current_exe().unwrap();
    let m = &maps.entries[r.mapping.expect("mapped")];
    assert_eq!(std::path::Path::new(&m.path), exe);
    assert!(m.executable);
    let info = s.binary_info(&maps, &m.path).expect("readable").clone();
    assert!(info.has_debug_info && info.has_symbols);
    assert!(s.take_warnings().is_empty());
    // A return address just after the entry is looked up one byte earlier, still inside.
    let r2 = s.resolve(&maps, addr + 1, AddressKind::Return);
    assert_eq!(r2.lookup_address, addr);
    assert_eq!(r2.frames[0].function, f.function);
}

#[test]
fn reports_inlined_frames_innermost_first() {
    let maps = self_maps();
    let mut s = Symbolizer::new();
    let start = addr_of(symbolize_probe_outer);
    let found = (0..256)
        .map(|k| s.resolve(&maps, start + k, AddressKind::Exact))
        .find(|r| r.frames.len() >= 2 && r.frames[0].function.ends_with("symbolize_probe_inlined"));
    let r = found.expect("an address of the outer function is inside the inlined helper");
    assert!(r.frames[1].function.ends_with("tests::symbolize_probe_outer"), "{r:?}");
    assert_eq!(r.frames[1].line, OUTER_CALL_LINE, "call site line: {r:?}");
    assert_eq!(r.frames.last().map(|f| f.file.is_some()), Some(true));
}

/// The runtime address of the symbol whose demangled name contains `needle`, found through
/// the symbol table of this binary and the load bias of a known function.
fn runtime_address_of_symbol(needle: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(std::env::current_exe().ok()?).ok()?;
    let obj = object::File::parse(&*data).ok()?;
    let find = |pred: &dyn Fn(&str) -> bool| {
        obj.symbols().find(|s| s.name().is_ok_and(|n| pred(&demangle(n)))).map(|s| s.address())
    };
    let probe = find(&|n| n == "contprof_engine::symbolize::tests::symbolize_probe_leaf")?;
    let bias = addr_of(symbolize_probe_leaf).wrapping_sub(probe);
    find(&|n| n.contains(needle)).map(|a| a.wrapping_add(bias))
}

#[test]
fn closures_keep_their_marker_and_lose_the_hash() {
    let f = |x: u64| black_box(x) + 3;
    black_box(f(1));
    let needle = "closures_keep_their_marker_and_lose_the_hash::{";
    let addr = runtime_address_of_symbol(needle).expect("closure symbol");
    let r = Symbolizer::new().resolve(&self_maps(), addr, AddressKind::Exact);
    let name = &r.frames[0].function;
    assert!(name.ends_with("{{closure}}") || name.ends_with("{closure#0}"), "{name}");
    assert!(name.starts_with("contprof_engine::symbolize::tests::"), "{name}");
    assert!(!name.contains("::h"), "{name}");
}

#[test]
fn unmapped_and_pseudo_mappings_get_raw_names() {
    let maps = ProcessMaps::parse(
        "7fff00000000-7fff00002000 r-xp 00000000 00:00 0   [vdso]\n\
         7fff10000000-7fff10002000 r-xp 00001000 08:01 7   /nonexistent/libgone.so\n",
    );
    let mut s = Symbolizer::new();
    assert_eq!(s.resolve(&maps, 0x10, AddressKind::Exact).frames[0].function, "[unknown]+0x10");
    assert_eq!(s.resolve(&maps, 0x7fff00000010, AddressKind::Exact).frames[0].function, "[vdso]+0x10");
    let r = s.resolve(&maps, 0x7fff10000010, AddressKind::Exact);
    assert_eq!(r.frames[0].function, "libgone.so+0x1010");
    assert_eq!(r.frames[0].source, FrameSource::Raw);
    s.resolve(&maps, 0x7fff10000020, AddressKind::Exact);
    let w = s.take_warnings();
    assert_eq!(w.len(), 1, "one warning per binary: {w:?}");
    assert!(w[0].contains("/nonexistent/libgone.so"), "{w:?}");
}

/// Copies the test binary, strips it with `objcopy`, and points the real maps at the copy.
fn stripped_copy(flag: &str) -> Option<(tempfile::TempDir, ProcessMaps)> {
    let exe = std::env::current_exe().ok()?;
    let dir = tempfile::tempdir().ok()?;
    let copy = dir.path().join("stripped-bin");
    let ok = std::process::Command::new("objcopy").arg(flag).arg(&exe).arg(&copy).status().ok()?.success();
    if !ok {
        return None;
    }
    let text = std::fs::read_to_string("/proc/self/maps").ok()?;
    let text = text.replace(exe.to_str()?, copy.to_str()?);
    Some((dir, ProcessMaps::parse(&text)))
}

#[test]
fn binary_without_debug_info_degrades_to_symbol_names_with_one_warning() {
    let Some((_dir, maps)) = stripped_copy("--strip-debug") else {
        eprintln!("objcopy not available: skipped");
        return;
    };
    let mut s = Symbolizer::new();
    let addr = addr_of(symbolize_probe_leaf);
    let r = s.resolve(&maps, addr + 2, AddressKind::Exact);
    assert_eq!(r.frames.len(), 1);
    assert_eq!(r.frames[0].function, "contprof_engine::symbolize::tests::symbolize_probe_leaf");
    assert_eq!(r.frames[0].source, FrameSource::Symbol);
    assert_eq!(r.frames[0].file, None);
    s.resolve(&maps, addr_of(symbolize_probe_outer), AddressKind::Exact);
    let w = s.take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("stripped-bin") && w[0].contains("no debug info"), "{w:?}");
}

#[test]
fn fully_stripped_binary_degrades_to_module_offset() {
    let Some((_dir, maps)) = stripped_copy("--strip-all") else {
        eprintln!("objcopy not available: skipped");
        return;
    };
    let mut s = Symbolizer::new();
    let r = s.resolve(&maps, addr_of(symbolize_probe_leaf), AddressKind::Exact);
    assert!(r.frames[0].function.starts_with("stripped-bin+0x"), "{r:?}");
    assert!(s.take_warnings().iter().any(|w| w.contains("stripped-bin")));
}

/// The system's zlib: stripped, its internal functions (`deflate_slow`, `longest_match`) in no
/// symbol table. Skipped where it is missing.
const STRIPPED: &str = "/usr/lib/x86_64-linux-gnu/libz.so.1";

#[test]
fn a_stripped_librarys_code_is_named_per_function_from_its_unwind_tables() {
    let Ok(b) = binary::Binary::open(Path::new(STRIPPED), Detail::Debug, None) else {
        eprintln!("skipping: no {STRIPPED}");
        return;
    };
    assert!(!b.info.has_debug_info && b.info.has_symbols, "{:?}", b.info);
    let functions = b.function_bounds();
    assert!(functions.len() > 50, "{} functions in .eh_frame", functions.len());
    let mut unnamed = 0;
    for &(start, end) in functions {
        let name = b.enclosing_function(start, "libz.so.1").expect("a name");
        // One name for the whole function, different from its neighbours'.
        assert_eq!(
            b.enclosing_function(end - 1, "libz.so.1").as_deref(),
            Some(name.as_str()),
            "{start:#x}..{end:#x}"
        );
        unnamed += usize::from(name.contains('+'));
    }
    // Internal functions take the nearest symbol before them plus their offset.
    assert!(unnamed > 0, "every function had a symbol of its own");
    let names: std::collections::HashSet<String> =
        functions.iter().filter_map(|&(s, _)| b.enclosing_function(s, "libz.so.1")).collect();
    assert_eq!(names.len(), functions.len(), "two functions share a name");
}

/// `objcopy ARGS`; whether it succeeded.
fn objcopy(args: &[&std::ffi::OsStr]) -> bool {
    std::process::Command::new("objcopy").args(args).status().is_ok_and(|s| s.success())
}

/// This test binary, and its DWARF and symbols copied to `dir/probe.debug` as a release step
/// would (`objcopy --only-keep-debug`); `None` (after saying so) without a usable objcopy.
fn split_debug_of_this_binary(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().unwrap();
    let debug = dir.join("probe.debug");
    if !objcopy(&["--only-keep-debug".as_ref(), exe.as_os_str(), debug.as_os_str()]) {
        eprintln!("skipping: objcopy (binutils) is not usable");
        return None;
    }
    Some((exe, debug))
}

#[test]
fn a_separate_debug_file_named_by_gnu_debuglink_is_used() {
    // This test binary, its DWARF moved to `<name>.debug` next to a stripped copy that links it.
    let dir = tempfile::tempdir().unwrap();
    let Some((exe, debug)) = split_debug_of_this_binary(dir.path()) else { return };
    let stripped = dir.path().join("probe");
    let link = format!("--add-gnu-debuglink={}", debug.display());
    assert!(objcopy(&["--strip-debug".as_ref(), link.as_ref(), exe.as_os_str(), stripped.as_os_str()]));
    let b = binary::Binary::open(&stripped, Detail::Debug, None).unwrap();
    assert!(b.info.has_debug_info, "{:?}", b.info);
    // A debug file that does not match the link's CRC is not taken.
    std::fs::write(&debug, b"not the debug file").unwrap();
    assert!(!binary::Binary::open(&stripped, Detail::Debug, None).unwrap().info.has_debug_info);
}

#[test]
fn a_debug_file_from_the_source_names_a_stripped_binary_by_its_build_id() {
    // This test binary stripped of everything, its DWARF and symbols kept apart (as a release
    // step would, for `prod symbols add`), found only through the symbolizer's debug source.
    let dir = tempfile::tempdir().unwrap();
    let Some((exe, debug)) = split_debug_of_this_binary(dir.path()) else { return };
    let stripped = dir.path().join("probe");
    assert!(objcopy(&["--strip-all".as_ref(), exe.as_os_str(), stripped.as_os_str()]));
    let bare = binary::Binary::open(&stripped, Detail::Debug, None).unwrap();
    assert!(!bare.info.has_debug_info && !bare.info.has_symbols, "{:?}", bare.info);
    let build_id = bare.info.build_id.clone().expect("rustc links with a build id");
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&asked);
    let mut source: DebugFileSource = Box::new(move |id: &str| {
        seen.lock().unwrap().push(id.to_owned());
        Some(debug.clone())
    });
    let b = binary::Binary::open(&stripped, Detail::Debug, Some(&mut source)).unwrap();
    assert!(b.info.has_debug_info && b.info.has_symbols, "{:?}", b.info);
    assert_eq!(*asked.lock().unwrap(), [build_id]);
    // Through the symbolizer: this very function, by name, file and line, in the stripped copy.
    let maps = ProcessMaps::parse(&std::fs::read_to_string("/proc/self/maps").unwrap());
    let mut sym = Symbolizer::new();
    sym.set_debug_source(source);
    let here = a_debug_file_from_the_source_names_a_stripped_binary_by_its_build_id as *const () as u64;
    let mut stripped_maps = maps;
    for e in stripped_maps.entries.iter_mut().filter(|e| Path::new(&e.path) == exe) {
        e.path = stripped.to_str().unwrap().to_owned();
    }
    let found = sym.resolve(&stripped_maps, here, AddressKind::Exact);
    let outer = found.frames.last().unwrap();
    assert!(
        outer.function.ends_with("a_debug_file_from_the_source_names_a_stripped_binary_by_its_build_id"),
        "{found:?}"
    );
    assert!(outer.file.as_deref().is_some_and(|f| f.ends_with("tests.rs")), "{found:?}");
}

/// The symbolizer of the continuous agent's uploader.
fn library_symbols_only() -> Symbolizer {
    Symbolizer::with_options(SymbolizerOptions { libraries: Detail::Symbols })
}

/// glibc as this test binary mapped it.
fn libc_of(maps: &ProcessMaps) -> Option<String> {
    let libc = maps.entries.iter().find(|e| e.executable && e.short_name().starts_with("libc.so"))?;
    Some(libc.path.clone())
}

#[test]
fn with_library_symbols_only_the_executable_keeps_its_lines_and_libraries_are_named_by_symbol() {
    let maps = self_maps();
    let mut s = library_symbols_only();
    // The main executable: DWARF as ever.
    let r = s.resolve(&maps, addr_of(symbolize_probe_leaf), AddressKind::Exact);
    let f = &r.frames[0];
    assert_eq!(f.function, "contprof_engine::symbolize::tests::symbolize_probe_leaf", "{r:?}");
    assert_eq!(f.source, FrameSource::Debug);
    assert!(f.file.as_deref().is_some_and(|p| p.ends_with(THIS_FILE)) && f.line > 0, "{f:?}");

    // The same binary mapped as a library (another executable mapped first): its DWARF is not
    // read, its symbol table names the function.
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let as_library =
        ProcessMaps::parse(&format!("1000-2000 r-xp 00000000 08:01 1   /nonexistent/service\n{text}"));
    let r = s.resolve(&as_library, addr_of(symbolize_probe_leaf) + 2, AddressKind::Exact);
    assert_eq!(r.frames.len(), 1, "{r:?}");
    assert_eq!(r.frames[0].function, "contprof_engine::symbolize::tests::symbolize_probe_leaf", "{r:?}");
    assert_eq!((r.frames[0].source, r.frames[0].file.as_deref()), (FrameSource::Symbol, None));
    let m = &as_library.entries[r.mapping.expect("mapped")];
    let info = s.binary_info(&as_library, &m.path).expect("readable");
    assert!(!info.has_debug_info && info.has_symbols, "{info:?}");

    // glibc: no debug info, even where its separate debug file is installed.
    if let Some(libc) = libc_of(&maps) {
        let info = s.binary_info(&maps, &libc).expect("readable").clone();
        assert!(!info.has_debug_info && info.has_symbols, "{libc}: {info:?}");
        let getpid = libc::getpid as *const () as u64;
        let r = s.resolve(&maps, getpid, AddressKind::Exact);
        assert!(r.frames[0].function.contains("getpid"), "{r:?}");
        assert_eq!(r.frames[0].source, FrameSource::Symbol);
    }
    // Libraries without DWARF are so by choice here, not worth a warning.
    let w = s.take_warnings();
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn with_library_symbols_only_a_stripped_library_takes_internal_names_from_its_debug_files_symbol_table() {
    use object::{Object, ObjectSymbol};
    let maps = self_maps();
    let Some(libc) = libc_of(&maps) else { return };
    let debug = std::fs::read(&libc)
        .ok()
        .and_then(|b| object::File::parse(&*b).ok()?.build_id().ok().flatten().map(crate::git::hex))
        .map(|id| format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
    let Some(debug) = debug.filter(|d| Path::new(d).is_file()) else {
        eprintln!("skipping: no separate debug file for {libc} (libc6-dbg)");
        return;
    };
    // `_int_malloc` is internal: in the debug file's symbol table, not in the library's.
    let data = std::fs::read(&debug).unwrap();
    let obj = object::File::parse(&*data).unwrap();
    let Some(vaddr) = obj.symbols().find(|s| s.name() == Ok("_int_malloc")).map(|s| s.address()) else {
        eprintln!("skipping: {debug} has no _int_malloc");
        return;
    };
    let mut s = library_symbols_only();
    let bias = s.load_bias(&maps, &libc).expect("glibc's load bias");
    let r = s.resolve(&maps, vaddr.wrapping_add(bias) + 16, AddressKind::Exact);
    assert_eq!(r.frames[0].function, "_int_malloc", "{r:?}");
    assert_eq!((r.frames[0].source, r.frames[0].file.as_deref()), (FrameSource::Symbol, None));
    assert!(!s.binary_info(&maps, &libc).unwrap().has_debug_info);
}

#[test]
fn forget_unused_keeps_what_was_looked_up_since_the_last_call() {
    let maps = self_maps();
    let mut s = library_symbols_only();
    s.resolve(&maps, addr_of(symbolize_probe_leaf), AddressKind::Exact);
    if let Some(libc) = libc_of(&maps) {
        s.binary_info(&maps, &libc);
    }
    let opened = s.binaries.len();
    s.forget_unused();
    assert_eq!(s.binaries.len(), opened, "everything was used since the start");
    // Only this binary is needed again: the others go.
    s.resolve(&maps, addr_of(symbolize_probe_outer), AddressKind::Exact);
    s.forget_unused();
    let exe = std::env::current_exe().unwrap();
    let kept: Vec<&str> = s.binaries.keys().map(|(p, _)| p.as_str()).collect();
    assert_eq!(kept, [exe.to_str().unwrap()]);
    s.forget_unused();
    assert!(s.binaries.is_empty());
}

/// A line-tables-only build names a function without its path; the symbol covering the address
/// gives it back, when its last segment is that function.
#[test]
fn a_function_named_without_its_path_takes_the_symbols_path() {
    use super::with_path;
    assert_eq!(
        with_path("compress", "sha2::sha256::x86_sha::compress").as_deref(),
        Some("sha2::sha256::x86_sha::compress")
    );
    assert_eq!(
        with_path("{closure#0}", "dominant_service::etag::{closure#0}").as_deref(),
        Some("dominant_service::etag::{closure#0}")
    );
    assert_eq!(
        with_path("{closure#0}", "dominant_service::etag::{{closure}}").as_deref(),
        Some("dominant_service::etag::{{closure}}")
    );
    assert_eq!(with_path("compress", "miniz_oxide::deflate::core::compress_inner"), None, "another function");
    assert_eq!(with_path("update_blocks<a::B>", "digest::update_blocks<a::B>"), None, "a path already");
    assert_eq!(with_path("memcpy", "memcpy"), None, "a C symbol stays one");
}
