//! One ELF file opened for symbolization: its load segments, build id, and its debug info or its
//! symbol table.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use addr2line::gimli::{self, UnwindSection};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use super::demangle::demangle;
use super::symtab::SymbolTable;

/// Errors opening a binary. They are reported as warnings, never returned to the caller of
/// [`super::Symbolizer::resolve`].
#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    /// The binary cannot be opened or parsed.
    #[error("{}: {what}", path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
}

/// How much of a binary the symbolizer reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Detail {
    /// Its DWARF, or that of its separate debug file (`/usr/lib/debug`, by build id or
    /// `.gnu_debuglink`): functions, inlined frames, files and lines.
    #[default]
    Debug,
    /// Its symbol tables only (`.symtab`, else `.dynsym`; for a stripped binary, the separate
    /// debug file's `.symtab`, without its DWARF): function names without files, lines or
    /// inlined frames. Parsed DWARF costs memory in proportion to the binary (glibc's debug file
    /// alone takes about 40 MiB once parsed), which the uploader beside a service must not spend.
    Symbols,
}

/// Where the symbolizer finds the separate debug file of a build id that the system has none
/// for (under `/usr/lib/debug`, or by `.gnu_debuglink`): the production uploader fetches it from
/// the store (`prod symbols add`). Returns the file's path, `None` when there is none.
pub type DebugFileSource = Box<dyn FnMut(&str) -> Option<PathBuf> + Send>;

/// A `PT_LOAD` segment: where file bytes land in the ELF's virtual address space.
#[derive(Debug, Clone, Copy)]
struct Segment {
    file_offset: u64,
    file_size: u64,
    vaddr: u64,
    executable: bool,
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
    /// DWARF and symbol lookups (from the separate debug file when the binary has none); `None`
    /// without debug info, or when it is not read ([`Detail::Symbols`]).
    pub(super) loader: Option<addr2line::Loader>,
    /// Without a loader: where the code of each function starts and ends, from the unwind
    /// tables (`.eh_frame`), sorted.
    functions: Vec<(u64, u64)>,
    /// Without a loader: the code symbols.
    symbols: SymbolTable,
}

type ElfFile<'a> = object::File<'a, &'a [u8]>;

/// The file at `path`, mapped to be parsed in place: no copy of what is read, and the kernel's
/// page cache rather than the heap holds it.
fn map(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = File::open(path)?;
    // SAFETY: the map is read only while a binary is opened, and dropped before `Binary::open`
    // returns. A file rewritten meanwhile gives wrong names, or SIGBUS if it is truncated: the
    // same exposure as `addr2line`'s own map of the files it reads DWARF from.
    unsafe { memmap2::Mmap::map(&file) }
}

fn has_dwarf(obj: &ElfFile<'_>) -> bool {
    obj.section_by_name(".debug_info").is_some_and(|s| s.size() > 0)
        || obj.section_by_name(".zdebug_info").is_some_and(|s| s.size() > 0)
}

/// Function bounds `[start, end)` from the FDEs of `.eh_frame`, sorted by start.
fn functions(obj: &ElfFile<'_>) -> Vec<(u64, u64)> {
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

/// The code symbols of the ELF file at `path` (a separate debug file), when it can be read.
fn symbols_of_file(path: &Path, code: &[Range<u64>]) -> Option<SymbolTable> {
    let map = map(path).ok()?;
    let obj = object::File::parse(&*map).ok()?;
    Some(SymbolTable::of(&obj, code))
}

/// The functions the ELF file at `path` exports (defined global code symbols of its dynamic
/// table); `None` when it cannot be read.
pub(super) fn exported_functions(path: &Path) -> Option<std::collections::HashSet<String>> {
    let map = map(path).ok()?;
    let obj = object::File::parse(&*map).ok()?;
    let exported = obj
        .dynamic_symbols()
        .filter(|s| s.is_definition() && s.is_global() && s.kind() == object::SymbolKind::Text)
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    Some(exported)
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
fn debuglink_file(obj: &ElfFile<'_>, binary: &Path) -> Option<PathBuf> {
    let (name, crc) = obj.gnu_debuglink().ok().flatten()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let dir = std::fs::canonicalize(binary).ok()?.parent()?.to_owned();
    let global = Path::new("/usr/lib/debug").join(dir.strip_prefix("/").unwrap_or(&dir));
    [dir.join(name), dir.join(".debug").join(name), global.join(name)]
        .into_iter()
        .find(|p| p.is_file() && crc32_of(p) == Some(crc))
}

/// The CRC-32 of a file, read in pieces: a debug file can be larger than what the symbolizer
/// should hold at once.
fn crc32_of(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Finds a separate debug file by build id where the system has none (see
/// [`DebugFileSource`]).
pub(super) type Source<'a> = Option<&'a mut DebugFileSource>;

/// The separate debug file of a binary: by build id, else by `.gnu_debuglink`, else from `source`.
fn debug_file(
    build_id: Option<&str>,
    obj: &ElfFile<'_>,
    binary: &Path,
    source: &mut Source<'_>,
) -> Option<PathBuf> {
    build_id
        .and_then(debug_file_for)
        .or_else(|| debuglink_file(obj, binary))
        .or_else(|| build_id.and_then(|id| source.as_mut().and_then(|s| s(id))))
}

impl Binary {
    /// Opens `path`, reading its DWARF or only its symbol table as `detail` says. Errors name
    /// the file; the caller turns them into one warning.
    pub(super) fn open(path: &Path, detail: Detail, mut source: Source<'_>) -> Result<Self, SymbolizeError> {
        let err = |what: String| SymbolizeError::Binary { path: path.to_owned(), what };
        let map = map(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let obj = object::File::parse(&*map).map_err(|e| err(format!("not a readable object file: {e}")))?;
        let segments: Vec<Segment> = obj
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                let executable = matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
                Segment { file_offset, file_size, vaddr: s.address(), executable }
            })
            .collect();
        let build_id = obj.build_id().ok().flatten().map(crate::git::hex);
        let own_symbols = obj.symbols().next().is_some() || obj.dynamic_symbols().next().is_some();
        let dwarf = match detail {
            Detail::Debug if has_dwarf(&obj) => Some(path.to_owned()),
            Detail::Debug => debug_file(build_id.as_deref(), &obj, path, &mut source),
            Detail::Symbols => None,
        };
        // A loader that fails (DWARF that cannot be parsed) leaves the symbol table.
        let loader = dwarf.as_deref().and_then(|p| addr2line::Loader::new(p).ok());
        let (functions, symbols) = if loader.is_some() {
            Default::default()
        } else {
            // A stripped library keeps only its dynamic symbols; its separate debug file has the
            // whole symbol table (internal functions such as glibc's `_int_malloc`), which is
            // read without its DWARF.
            let code: Vec<Range<u64>> =
                segments.iter().filter(|s| s.executable).map(|s| s.vaddr..s.vaddr + s.file_size).collect();
            let separate = (detail == Detail::Symbols && obj.symbol_table().is_none())
                .then(|| {
                    debug_file(build_id.as_deref(), &obj, path, &mut source)
                        .and_then(|p| symbols_of_file(&p, &code))
                })
                .flatten()
                .filter(|s| !s.is_empty());
            (functions(&obj), separate.unwrap_or_else(|| SymbolTable::of(&obj, &code)))
        };
        let has_symbols = if loader.is_some() {
            own_symbols || dwarf.as_deref() != Some(path)
        } else {
            !symbols.is_empty()
        };
        Ok(Self {
            info: BinaryInfo { build_id, has_debug_info: loader.is_some(), has_symbols },
            segments,
            loader,
            functions,
            symbols,
        })
    }

    /// The name of the symbol `vaddr` is in, if one covers it.
    pub(super) fn symbol(&self, vaddr: u64) -> Option<&str> {
        if let Some(loader) = &self.loader {
            return loader.find_symbol(vaddr);
        }
        self.symbols.containing(vaddr)
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
        match (self.symbols.at_or_before(anchor), start) {
            (Some((a, name)), Some(start)) if start == a => Some(demangle(name)),
            (Some((a, name)), Some(start)) => Some(format!("{}+{:#x}", demangle(name), start - a)),
            // No function bounds: everything after the symbol is grouped under it.
            (Some((_, name)), None) => Some(format!("{}+?", demangle(name))),
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
