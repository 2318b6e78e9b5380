//! One ELF file opened for symbolization: its load segments, build id and debug info.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment};

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
}

fn has_dwarf<'a>(obj: &object::File<'a, &'a object::ReadCache<File>>) -> bool {
    obj.section_by_name(".debug_info").is_some_and(|s| s.size() > 0)
        || obj.section_by_name(".zdebug_info").is_some_and(|s| s.size() > 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The conventional place of a separate debug file for a build id.
fn debug_file_for(build_id: &str) -> Option<PathBuf> {
    if build_id.len() < 3 {
        return None;
    }
    let p = PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &build_id[..2], &build_id[2..]));
    p.is_file().then_some(p)
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
        let build_id = obj.build_id().ok().flatten().map(hex);
        let mut has_debug_info = has_dwarf(&obj);
        let mut has_symbols = obj.symbols().next().is_some() || obj.dynamic_symbols().next().is_some();
        let mut loader_path = path.to_owned();
        if !has_debug_info && let Some(debug) = build_id.as_deref().and_then(debug_file_for) {
            has_debug_info = true;
            has_symbols = true;
            loader_path = debug;
        }
        drop(obj);
        // A binary whose DWARF cannot be parsed still has its symbol table through the
        // loader; a loader failure leaves `module+offset` names only.
        let loader = addr2line::Loader::new(&loader_path).ok();
        if loader.is_none() {
            has_debug_info = false;
            has_symbols = false;
        }
        Ok(Self { info: BinaryInfo { build_id, has_debug_info, has_symbols }, segments, loader })
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
