//! Symbolization: runtime addresses of a profiled process to mappings and source frames.
//!
//! Owns reading binaries (ELF segments, build ids, DWARF through `addr2line`, symbol tables)
//! and normalizing function names. It never fails on a bad binary: a missing, unreadable or
//! stripped file degrades to symbol-table names, then to `module+0xoffset`, with one warning
//! per binary collected in [`Symbolizer::take_warnings`]. How much of a shared library it reads
//! is an option ([`SymbolizerOptions`]): the continuous agent's uploader names library code from
//! symbol tables alone, to stay small beside a service. It knows nothing about pprof.

mod binary;
mod demangle;
mod maps;
mod symtab;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use binary::Binary;
pub use binary::{BinaryInfo, DebugFileSource, Detail, SymbolizeError};

/// The functions a shared object exports (its dynamic symbol table's defined code symbols);
/// `None` when it cannot be read.
pub fn exported_functions(path: &Path) -> Option<HashSet<String>> {
    binary::exported_functions(path)
}
/// What a binary file has to name code with: its build id, DWARF, symbols (its own, or a separate
/// debug file's found the usual ways).
pub fn file_info(path: &Path) -> Result<BinaryInfo, SymbolizeError> {
    Binary::open(path, Detail::Debug, None).map(|b| b.info)
}
pub use demangle::demangle;
pub use maps::{MapEntry, ProcessMaps};

/// Name given to the frames of the profiling agent itself when they end a CPU stack.
pub const AGENT_FRAME: &str = "[contprof agent]";

/// The interposers that make a system call for their caller in their own frame (`syscall`
/// executes the instruction itself): CPU time there is the system call's, the caller's. CPU time
/// in the own code of any other interposer (or recording twin) is the agent's: it runs a few
/// instructions and hands the call on to the C library.
pub const SYSTEM_CALL_INTERPOSERS: &[&str] = &["syscall"];

/// Name of code in anonymous memory, generated at run time.
pub const GENERATED_CODE: &str = "[generated code]";

/// File name fragment of the preloaded agent library.
const AGENT_LIBRARY: &str = "libcontprof_preload";

/// How an address was obtained, which decides the address looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// The interrupted instruction (leaf of a CPU sample): looked up as is.
    Exact,
    /// A return address: `addr - 1` is looked up so that the call instruction, not the one
    /// after it, gives the line (and the right function when the call is the last instruction).
    Return,
}

/// Where a frame's name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameSource {
    /// DWARF: function, file and line.
    Debug,
    /// The symbol table: function only.
    Symbol,
    /// Nothing: the name is `module+0xoffset`.
    Raw,
}

/// One source-level frame. Several frames share an address when functions were inlined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Demangled name without hash (see [`demangle`]).
    pub function: String,
    /// The name as the binary has it (mangled), or the same as `function`.
    pub system_name: String,
    /// Source file as written in the debug info.
    pub file: Option<String>,
    /// Line, 0 when unknown.
    pub line: u32,
    /// Column, 0 when unknown.
    pub column: u32,
    /// Where the name comes from.
    pub source: FrameSource,
}

/// An address resolved to its mapping and frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbolized {
    /// Index of the mapping in [`ProcessMaps::entries`], if the address is mapped.
    pub mapping: Option<usize>,
    /// The runtime address that was looked up (`addr - 1` for return addresses).
    pub lookup_address: u64,
    /// Innermost (inlined) first; the last one is the function the code was compiled in.
    /// Never empty.
    pub frames: Vec<Frame>,
    /// Whether the address is inside the profiling agent's library, and as what.
    pub agent: AgentCode,
}

/// What an address in the preloaded agent library is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentCode {
    /// Not the agent's: the workload's code, its libraries.
    No,
    /// One of the functions the agent interposes (`syscall`, `malloc`, `pthread_mutex_lock`…,
    /// the library's exports), standing in for the C library's: its one frame is named as that
    /// function. A thread blocked in a system call the agent makes on its caller's behalf (a futex
    /// wait of a std lock) is there.
    Interposer,
    /// The agent's own code (recording a sample, timing a wait).
    Internal,
}

/// Options of a [`Symbolizer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SymbolizerOptions {
    /// What is read of shared libraries and every other object but the main executable, which is
    /// always read with [`Detail::Debug`] (the code the profile is for).
    pub libraries: Detail,
}

/// A binary as opened (`None`: it could not be read), and whether a lookup needed it since the
/// last [`Symbolizer::forget_unused`].
struct Cached {
    binary: Option<Binary>,
    used: bool,
}

/// Resolves addresses, caching each binary it opened.
#[derive(Default)]
pub struct Symbolizer {
    options: SymbolizerOptions,
    binaries: HashMap<(String, Detail), Cached>,
    /// Per agent library, the functions it interposes.
    interposers: HashMap<String, HashSet<String>>,
    warnings: Vec<String>,
    debug_source: Option<DebugFileSource>,
}

impl Symbolizer {
    /// A symbolizer with an empty cache that reads every binary's debug info.
    pub fn new() -> Self {
        Self::default()
    }

    /// A symbolizer with an empty cache and `options`.
    pub fn with_options(options: SymbolizerOptions) -> Self {
        Self { options, ..Self::default() }
    }

    /// Where debug files the system lacks are found from now on (binaries already opened keep
    /// what they had: see [`Symbolizer::forget_without_debug_info`]).
    pub fn set_debug_source(&mut self, source: DebugFileSource) {
        self.debug_source = Some(source);
    }

    /// Drops the binaries opened without debug information, so that the next lookup opens them
    /// again and looks for their debug file again (one added to the store since, say).
    pub fn forget_without_debug_info(&mut self) {
        self.binaries.retain(|_, c| c.binary.as_ref().is_some_and(|b| b.info.has_debug_info));
    }

    /// Resolves one address of the process whose memory map is `maps`.
    pub fn resolve(&mut self, maps: &ProcessMaps, addr: u64, kind: AddressKind) -> Symbolized {
        let lookup = match kind {
            AddressKind::Exact => addr,
            AddressKind::Return => addr.saturating_sub(1),
        };
        let Some((index, entry)) = maps.find(lookup) else {
            return Symbolized {
                mapping: None,
                lookup_address: lookup,
                frames: vec![raw_frame(&format!("[unknown]+{lookup:#x}"))],
                agent: AgentCode::No,
            };
        };
        let file_offset = lookup - entry.start + entry.file_offset;
        let mut agent = AgentCode::No;
        let frames = if entry.is_file() {
            let mut frames = self.resolve_in_file(maps, entry, file_offset);
            if entry.path.contains(AGENT_LIBRARY) {
                agent = AgentCode::Internal;
                if let Some(outer) = frames.pop_if(|f| self.interposers(&entry.path).contains(&f.system_name))
                {
                    // The C library's function it stands for: no agent source lines under it. A
                    // recording twin stands for the function it records.
                    frames = match outer
                        .system_name
                        .strip_prefix(contprof_protocol::format::RECORDING_TWIN_PREFIX)
                    {
                        Some(c_name) => vec![symbol_frame(c_name.to_owned(), c_name.to_owned())],
                        None => vec![symbol_frame(outer.function, outer.system_name)],
                    };
                    agent = AgentCode::Interposer;
                }
            }
            frames
        } else if entry.path.is_empty() {
            // Anonymous memory: code generated at run time (a JIT, trampolines). Its addresses
            // mean nothing from one run to the next, so it is one frame per process.
            vec![raw_frame(GENERATED_CODE)]
        } else {
            vec![raw_frame(&format!("{}+{file_offset:#x}", entry.short_name()))]
        };
        Symbolized { mapping: Some(index), lookup_address: lookup, frames, agent }
    }

    /// The functions the agent library at `path` interposes: its exports (the preload library
    /// exports nothing else), read once.
    fn interposers(&mut self, path: &str) -> &HashSet<String> {
        if !self.interposers.contains_key(path) {
            let exported = binary::exported_functions(Path::new(path)).unwrap_or_default();
            self.interposers.insert(path.to_owned(), exported);
        }
        &self.interposers[path]
    }

    /// How far the object file at `path` was moved when it was loaded (runtime address = ELF
    /// virtual address + bias; the dynamic loader moves all segments of an object alike), from its
    /// executable mapping in `maps`. `None` when the object is not mapped or cannot be read.
    /// Callgrind writes ELF virtual addresses; this turns them into the runtime addresses
    /// [`Symbolizer::resolve`] takes.
    pub fn load_bias(&mut self, maps: &ProcessMaps, path: &str) -> Option<u64> {
        let entry = maps.entries.iter().find(|e| e.path == path && e.executable)?;
        let end = entry.file_offset + (entry.limit - entry.start);
        let (offset, vaddr) =
            self.binary(maps, path, entry.deleted)?.loaded_offset_in(entry.file_offset, end)?;
        Some((entry.start + (offset - entry.file_offset)).wrapping_sub(vaddr))
    }

    /// What is known about a binary mapped in `maps` (opening it if needed); `None` when it
    /// cannot be read.
    pub fn binary_info(&mut self, maps: &ProcessMaps, path: &str) -> Option<&BinaryInfo> {
        self.binary(maps, path, false).map(|b| &b.info)
    }

    /// Warnings gathered so far (one per problematic binary), emptied by the call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Drops the binaries that no lookup needed since the last call, so that a long-lived
    /// symbolizer holds what its latest work used, not every library a process ever loaded.
    pub fn forget_unused(&mut self) {
        self.binaries.retain(|_, c| std::mem::take(&mut c.used));
    }

    /// The binary at `path` as the process of `maps` mapped it, read as the options say.
    fn binary(&mut self, maps: &ProcessMaps, path: &str, deleted: bool) -> Option<&Binary> {
        let detail =
            if maps.main_executable() == Some(path) { Detail::Debug } else { self.options.libraries };
        let slot = match self.binaries.entry((path.to_owned(), detail)) {
            Entry::Occupied(o) => {
                let cached = o.into_mut();
                cached.used = true;
                return cached.binary.as_ref();
            }
            Entry::Vacant(v) => v,
        };
        let opened = match Binary::open(Path::new(path), detail, self.debug_source.as_mut()) {
            Ok(b) => {
                // The agent's frames are dropped or named by the agent; valgrind's preload is
                // valgrind's: neither is the user's to fix.
                let ours = path.contains(AGENT_LIBRARY) || path.contains("/valgrind/vgpreload");
                if deleted {
                    self.warnings.push(format!(
                        "{path} was deleted or replaced while the workload ran; its names may be wrong"
                    ));
                }
                if ours {
                } else if !b.info.has_debug_info && b.info.has_symbols && detail == Detail::Debug {
                    self.warnings.push(format!(
                        "{path} has no debug info: functions from its symbol table, without files, \
                         lines or inlined frames"
                    ));
                } else if !b.info.has_symbols {
                    self.warnings.push(format!(
                        "{path} has no debug info and no symbols: frames show as module+offset"
                    ));
                }
                Some(b)
            }
            Err(e) => {
                self.warnings.push(format!("cannot symbolize {e}; frames show as module+offset"));
                None
            }
        };
        slot.insert(Cached { binary: opened, used: true }).binary.as_ref()
    }

    fn resolve_in_file(&mut self, maps: &ProcessMaps, entry: &MapEntry, file_offset: u64) -> Vec<Frame> {
        let Some(binary) = self.binary(maps, &entry.path, entry.deleted) else {
            return vec![raw_frame(&format!("{}+{file_offset:#x}", entry.short_name()))];
        };
        let vaddr = binary.file_offset_to_vaddr(file_offset);
        let mut frames = named_frames(binary.loader.as_ref(), binary.symbol(vaddr), vaddr);
        if frames.is_empty()
            && let Some(name) = binary.enclosing_function(vaddr, entry.short_name())
        {
            frames.push(symbol_frame(name.clone(), name));
        }
        let name = format!("{}+{vaddr:#x}", entry.short_name());
        for f in frames.iter_mut().filter(|f| f.function.is_empty()) {
            f.function = name.clone();
            f.system_name = name.clone();
        }
        if frames.is_empty() { vec![raw_frame(&name)] } else { frames }
    }
}

/// A debug file (or an unstripped binary) opened on its own, to name the ELF virtual addresses of
/// the binary it was split off: the `module+0x…` frames of profiles recorded without it.
pub struct DebugInfo {
    loader: addr2line::Loader,
}

impl DebugInfo {
    /// Opens the file at `path`; `None` when it cannot be read as an object file.
    pub fn open(path: &Path) -> Option<DebugInfo> {
        addr2line::Loader::new(path).ok().map(|loader| DebugInfo { loader })
    }

    /// The frames of `vaddr`, innermost first, as [`Symbolizer::resolve`] gives them (DWARF, the
    /// symbol table's name for code without); empty when nothing covers the address.
    pub fn frames(&self, vaddr: u64) -> Vec<Frame> {
        let frames = named_frames(Some(&self.loader), self.loader.find_symbol(vaddr), vaddr);
        if frames.iter().any(|f| f.function.is_empty()) { Vec::new() } else { frames }
    }
}

/// The frames of an ELF virtual address, innermost first: its DWARF frames (with `loader`), the
/// outermost of which takes the name of `symbol` (the symbol covering the address) when the DWARF
/// has none: line-table-only frames (no function DIE) and code without DWARF (assembly in the
/// same binary). Empty when neither knows the address.
fn named_frames(loader: Option<&addr2line::Loader>, symbol: Option<&str>, vaddr: u64) -> Vec<Frame> {
    let mut frames = loader.map(|l| debug_frames(l, vaddr)).unwrap_or_default();
    match (frames.last_mut(), symbol) {
        (Some(outer), Some(sym)) if outer.function.is_empty() => {
            outer.function = demangle(sym);
            outer.system_name = sym.to_owned();
        }
        (Some(outer), Some(sym)) => {
            if let Some(full) = with_path(&outer.function, &demangle(sym)) {
                outer.function = full;
                outer.system_name = sym.to_owned();
            }
        }
        (None, Some(sym)) => frames.push(symbol_frame(demangle(sym), sym.to_owned())),
        _ => {}
    }
    frames
}

/// The symbol's name for a function the debug info names without its path: a build with
/// `debug = "line-tables-only"` (a common release setting) keeps only the function's own name
/// (`compress`, `{closure#0}`), which reads as a C symbol and collides across crates, while the
/// symbol covering the address has the whole path (`sha2::sha256::x86_sha::compress`). `None`
/// when the debug name has a path already, or the symbol's last segment is another function.
fn with_path(debug_name: &str, symbol: &str) -> Option<String> {
    fn normalize(name: &str) -> &str {
        if name.starts_with("{closure") || name.starts_with("{{closure") { "{closure}" } else { name }
    }
    if debug_name.is_empty() || debug_name.contains("::") || !symbol.contains("::") {
        return None;
    }
    let last = symbol.rsplit("::").next()?;
    // Closures are `{closure#0}` in the debug info and `{{closure}}` in a legacy symbol.
    let same = last == debug_name || normalize(last) == normalize(debug_name);
    same.then(|| symbol.to_owned())
}

/// The DWARF frames of an ELF virtual address, innermost first.
fn debug_frames(loader: &addr2line::Loader, vaddr: u64) -> Vec<Frame> {
    let mut frames = Vec::new();
    let Ok(mut iter) = loader.find_frames(vaddr) else {
        return frames;
    };
    while let Ok(Some(f)) = iter.next() {
        let system_name = f.function.as_ref().and_then(|n| n.raw_name().ok()).map(|n| n.into_owned());
        let (file, line, column) = match f.location {
            Some(l) => (l.file.map(str::to_owned), l.line.unwrap_or(0), l.column.unwrap_or(0)),
            None => (None, 0, 0),
        };
        frames.push(Frame {
            function: system_name.as_deref().map(demangle).unwrap_or_default(),
            system_name: system_name.unwrap_or_default(),
            file,
            line,
            column,
            source: FrameSource::Debug,
        });
    }
    frames
}

/// A frame named by the symbol table: function only.
fn symbol_frame(function: String, system_name: String) -> Frame {
    Frame { function, system_name, file: None, line: 0, column: 0, source: FrameSource::Symbol }
}

fn raw_frame(name: &str) -> Frame {
    Frame {
        function: name.to_owned(),
        system_name: name.to_owned(),
        file: None,
        line: 0,
        column: 0,
        source: FrameSource::Raw,
    }
}

#[cfg(test)]
mod tests;
