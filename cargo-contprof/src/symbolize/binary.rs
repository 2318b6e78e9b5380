//! One ELF file opened for symbolization: its load segments, build id and debug info.

use std::fs::File;
use std::path::{Path, PathBuf};

use addr2line::gimli::{self, UnwindSection};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use super::SymbolizeError;

/// A `PT_LOAD` segment: where file bytes land in the ELF's virtual address space.
#[derive(Debug, Clone, Copy)]
struct Segment {
    file_offset: u64,
    file_size: u64,
    vaddr: u64,
}

/// What the symbolizer knows about one binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryInfo {
    /// The GNU build id as lowercase hex, when the ELF has the note.
    pub build_id: Option<String>,
    /// The binary (or its separate debug file) has DWARF line tables.
    pub has_debug_info: bool,
    /// The binary has a symbol table (static or, failing that, dynamic).
    pub has_symbols: bool,
}

/// An opened binary.
pub(super) struct Binary {
    pub(super) info: BinaryInfo,
    segments: Vec<Segment>,
    /// DWARF and symbol lookups (from the separate debug file when the binary has none).
    pub(super) loader: Option<addr2line::Loader>,
    /// Without debug info: where the code of each function starts and ends, from the unwind
    /// tables (`.eh_frame`), sorted; empty with debug info.
    functions: Vec<(u64, u64)>,
    /// Without debug info: the code symbols (`.symtab` and `.dynsym`) by address, sorted.
    symbols: Vec<(u64, String)>,
}

fn has_dwarf<'a>(obj: &object::File<'a, &'a object::ReadCache<File>>) -> bool {
    obj.section_by_name(".debug_info").is_some_and(|s| s.size() > 0)
        || obj.section_by_name(".zdebug_info").is_some_and(|s| s.size() > 0)
}

/// Function bounds `[start, end)` from the FDEs of `.eh_frame`, sorted by start.
fn functions<'a>(obj: &object::File<'a, &'a object::ReadCache<File>>) -> Vec<(u64, u64)> {
    let Some(section) = obj.section_by_name(".eh_frame") else { return Vec::new() };
    let Ok(data) = section.data() else { return Vec::new() };
    let endian =
        if obj.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
    let eh_frame = gimli::EhFrame::new(data, endian);
    let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = obj.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    let mut out = Vec::new();
    let mut entries = eh_frame.entries(&bases);
    // A corrupt entry ends the list: what was read stays usable.
    while let Ok(Some(entry)) = entries.next() {
        if let gimli::CieOrFde::Fde(partial) = entry
            && let Ok(fde) = partial.parse(gimli::EhFrame::cie_from_offset)
            && fde.len() > 0
        {
            out.push((fde.initial_address(), fde.initial_address().saturating_add(fde.len())));
        }
    }
    out.sort_unstable();
    out
}

/// Code symbols with an address, from the static and the dynamic symbol table, sorted.
fn symbols<'a>(obj: &object::File<'a, &'a object::ReadCache<File>>) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = obj
        .symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.name().ok()?.to_owned())))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    out.sort_unstable();
    out.dedup_by_key(|(a, _)| *a);
    out
}

/// The conventional place of a separate debug file for a build id.
fn debug_file_for(build_id: &str) -> Option<PathBuf> {
    if build_id.len() < 3 {
        return None;
    }
    let p = PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &build_id[..2], &build_id[2..]));
    p.is_file().then_some(p)
}

/// The separate debug file named by `.gnu_debuglink`, where GDB looks for it: next to the binary,
/// in its `.debug/` directory, and under `/usr/lib/debug/` followed by the binary's directory.
/// Only a file whose CRC-32 matches the link's is taken.
fn debuglink_file<'a>(obj: &object::File<'a, &'a object::ReadCache<File>>, binary: &Path) -> Option<PathBuf> {
    let (name, crc) = obj.gnu_debuglink().ok().flatten()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let dir = std::fs::canonicalize(binary).ok()?.parent()?.to_owned();
    let global = Path::new("/usr/lib/debug").join(dir.strip_prefix("/").unwrap_or(&dir));
    [dir.join(name), dir.join(".debug").join(name), global.join(name)]
        .into_iter()
        .find(|p| p.is_file() && std::fs::read(p).is_ok_and(|bytes| crc32fast::hash(&bytes) == crc))
}

impl Binary {
    /// Opens `path`. Errors name the file; the caller turns them into one warning.
    pub(super) fn open(path: &Path) -> Result<Self, SymbolizeError> {
        let err = |what: String| SymbolizeError::Binary { path: path.to_owned(), what };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let cache = object::ReadCache::new(file);
        let obj = object::File::parse(&cache).map_err(|e| err(format!("not a readable object file: {e}")))?;
        let segments = obj
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment { file_offset, file_size, vaddr: s.address() }
            })
            .collect();
        let build_id = obj.build_id().ok().flatten().map(crate::git::hex);
        let mut has_debug_info = has_dwarf(&obj);
        let mut has_symbols = obj.symbols().next().is_some() || obj.dynamic_symbols().next().is_some();
        let mut loader_path = path.to_owned();
        let debug_file =
            || build_id.as_deref().and_then(debug_file_for).or_else(|| debuglink_file(&obj, path));
        if !has_debug_info && let Some(debug) = debug_file() {
            has_debug_info = true;
            has_symbols = true;
            loader_path = debug;
        }
        let (functions, symbols) =
            if has_debug_info { Default::default() } else { (functions(&obj), symbols(&obj)) };
        drop(obj);
        // A binary whose DWARF cannot be parsed still has its symbol table through the
        // loader; a loader failure leaves `module+offset` names only.
        let loader = addr2line::Loader::new(&loader_path).ok();
        if loader.is_none() {
            has_debug_info = false;
            has_symbols = false;
        }
        Ok(Self {
            info: BinaryInfo { build_id, has_debug_info, has_symbols },
            segments,
            loader,
            functions,
            symbols,
        })
    }

    /// The function bounds read from the unwind tables (without debug info), sorted.
    #[cfg(test)]
    pub(super) fn function_bounds(&self) -> &[(u64, u64)] {
        &self.functions
    }

    /// For code outside every symbol of a binary without debug info (a stripped library's
    /// internal functions): a name for the whole function `vaddr` is in, the nearest code
    /// symbol before it plus the function's offset from that symbol (`deflateSetDictionary+0x1a0`:
    /// one row per function, not per address), else `module+0x<function start>` when no symbol
    /// precedes it, or `None` when the unwind tables do not know the function either.
    pub(super) fn enclosing_function(&self, vaddr: u64, module: &str) -> Option<String> {
        let i = self.functions.partition_point(|&(start, _)| start <= vaddr);
        let start =
            i.checked_sub(1).map(|i| self.functions[i]).filter(|&(_, end)| vaddr < end).map(|(s, _)| s);
        let anchor = start.unwrap_or(vaddr);
        let j = self.symbols.partition_point(|(a, _)| *a <= anchor);
        let symbol = j.checked_sub(1).map(|j| &self.symbols[j]);
        match (symbol, start) {
            (Some((a, name)), Some(start)) if start == *a => Some(super::demangle(name)),
            (Some((a, name)), Some(start)) => Some(format!("{}+{:#x}", super::demangle(name), start - a)),
            // No function bounds: everything after the symbol is grouped under it.
            (Some((_, name)), None) => Some(format!("{}+?", super::demangle(name))),
            (None, Some(start)) => Some(format!("{module}+{start:#x}")),
            (None, None) => None,
        }
    }

    /// For the file range `[start, end)` of one mapping: a file offset in it, with its virtual
    /// address in the `PT_LOAD` segment that covers most of the range (a page at either end may
    /// hold the tail of a neighbouring segment, mapped elsewhere).
    pub(super) fn loaded_offset_in(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        self.segments
            .iter()
            .map(|s| (s, start.max(s.file_offset), end.min(s.file_offset + s.file_size)))
            .filter(|(_, lo, hi)| lo < hi)
            .max_by_key(|(_, lo, hi)| hi - lo)
            .map(|(s, lo, _)| (lo, s.vaddr + (lo - s.file_offset)))
    }

    /// Converts a file offset (runtime address - mapping start + mapping offset) to the ELF
    /// virtual address that DWARF and the symbol table use.
    pub(super) fn file_offset_to_vaddr(&self, file_offset: u64) -> u64 {
        self.segments
            .iter()
            .find(|s| s.file_offset <= file_offset && file_offset < s.file_offset + s.file_size)
            .map(|s| file_offset - s.file_offset + s.vaddr)
            .unwrap_or(file_offset)
    }
}
