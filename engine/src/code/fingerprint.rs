//! Fingerprinting the code of named functions in ELF binaries (see the module docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use sha2::{Digest, Sha256};

use super::{CODE_MAP_VERSION, CodeMap};
use crate::profile::Profile;
use crate::profile::names::normalize_name;
use crate::symbolize::demangle;

/// Method names recorded in [`CodeMap::method`].
const NORMALIZED: &str = "x86_64-normalized";
const RAW: &str = "raw-bytes";

/// Fragment of the agent library's file name: its code is ours, not the user's, and it differs
/// between versions of this tool, so it is never fingerprinted.
const AGENT_LIBRARY: &str = "libcontprof_preload";

/// One symbol of a binary: where it is and its normalized name.
#[derive(Debug, Clone)]
struct Sym {
    address: u64,
    size: u64,
    name: String,
    text: bool,
}

/// A symbol's name as the same code has it in every build: demangled and normalized as the
/// comparison names functions, without the `.llvm.<n>` suffix that ThinLTO gives promoted local
/// symbols (a number that changes with the build), and with the compiler's anonymous constants
/// (`anon.<hash>.<n>`) all called `anon`.
fn stable_name(raw: &str) -> String {
    let raw = match raw.find(".llvm.") {
        Some(i) if raw[i + 6..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
        _ => raw,
    };
    if raw.starts_with("anon.") || raw.starts_with(".L") {
        return "anon".to_owned();
    }
    normalize_name(&demangle(raw))
}

/// A binary's symbols, sorted by address, and its code.
struct Code {
    symbols: Vec<Sym>,
    /// Index into `symbols` by name, text symbols only.
    by_name: HashMap<String, Vec<usize>>,
    x86_64: bool,
    /// `(address, bytes)` of each executable section.
    sections: Vec<(u64, Vec<u8>)>,
}

impl Code {
    fn open(path: &Path) -> Option<Code> {
        let file = File::open(path).ok()?;
        let cache = object::ReadCache::new(file);
        let obj = object::File::parse(&cache).ok()?;
        let x86_64 = obj.architecture() == object::Architecture::X86_64;
        let mut symbols: Vec<Sym> = Vec::new();
        let table: Vec<object::Symbol<'_, '_, _>> = if obj.symbols().next().is_some() {
            obj.symbols().collect()
        } else {
            obj.dynamic_symbols().collect()
        };
        for s in table {
            if !s.is_definition() || s.address() == 0 {
                continue;
            }
            let text = s.kind() == SymbolKind::Text;
            if !text && s.kind() != SymbolKind::Data {
                continue;
            }
            let Ok(raw) = s.name() else { continue };
            if raw.is_empty() {
                continue;
            }
            symbols.push(Sym { address: s.address(), size: s.size(), name: stable_name(raw), text });
        }
        // Several symbols can share an address (identical code folding, aliases) and the symbol
        // table's order of them differs between builds of the same code (it follows the names,
        // whose hashes depend on the build path): the name breaks ties, so the symbol found at
        // an address, and with it every fingerprint naming it, is the same in both builds.
        symbols.sort_by(|a, b| a.address.cmp(&b.address).then(b.size.cmp(&a.size)).then(a.name.cmp(&b.name)));
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            if s.text && s.size > 0 {
                by_name.entry(s.name.clone()).or_default().push(i);
            }
        }
        let sections = obj
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
            .collect();
        Some(Code { symbols, by_name, x86_64, sections })
    }

    fn bytes(&self, address: u64, size: u64) -> Option<&[u8]> {
        self.sections.iter().find_map(|(start, data)| {
            let off = address.checked_sub(*start)? as usize;
            data.get(off..off.checked_add(size as usize)?)
        })
    }

    /// The symbol containing `address` (a zero-sized one only at its exact address), and the
    /// offset into it.
    fn symbol_at(&self, address: u64) -> Option<(&Sym, u64)> {
        let i = self.symbols.partition_point(|s| s.address <= address);
        self.symbols[..i]
            .iter()
            .rev()
            .take(8)
            .find(|s| address < s.address + s.size.max(1))
            .map(|s| (s, address - s.address))
    }

    /// The fingerprint of one function symbol.
    fn fingerprint(&self, sym: &Sym) -> Option<[u8; 8]> {
        let bytes = self.bytes(sym.address, sym.size)?;
        let mut h = Sha256::new();
        if self.x86_64 {
            self.hash_x86_64(sym, bytes, &mut h);
        } else {
            h.update(bytes);
        }
        let digest = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        Some(out)
    }

    /// Hashes the decoded instructions with every address-dependent field replaced by what it
    /// designates (see the module docs of [`super`]).
    fn hash_x86_64(&self, sym: &Sym, bytes: &[u8], h: &mut Sha256) {
        let (start, end) = (sym.address, sym.address + sym.size);
        let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
        let mut instr = Instruction::default();
        let target = |h: &mut Sha256, address: u64| {
            if (start..end).contains(&address) {
                h.update(b"in");
                h.update((address - start).to_le_bytes());
            } else if let Some((s, off)) = self.symbol_at(address) {
                h.update(b"sym");
                h.update(s.name.as_bytes());
                h.update(off.to_le_bytes());
            } else {
                // Anonymous: a PLT slot, a constant in .rodata. Its address says nothing.
                h.update(b"anon");
            }
        };
        while decoder.can_decode() {
            decoder.decode_out(&mut instr);
            h.update((instr.code() as u16).to_le_bytes());
            if instr.is_invalid() {
                // Data in the text section (jump tables, padding): its bytes.
                h.update([bytes[(instr.ip() - start) as usize]]);
                continue;
            }
            let flags = [
                instr.has_lock_prefix(),
                instr.has_rep_prefix(),
                instr.has_repne_prefix(),
                instr.zeroing_masking(),
            ];
            h.update(flags.map(u8::from));
            h.update((instr.segment_prefix() as u16).to_le_bytes());
            h.update((instr.op_mask() as u16).to_le_bytes());
            for op in 0..instr.op_count() {
                let kind = instr.op_kind(op);
                h.update((kind as u16).to_le_bytes());
                match kind {
                    OpKind::Register => h.update((instr.op_register(op) as u16).to_le_bytes()),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        target(h, instr.near_branch_target())
                    }
                    OpKind::Memory => {
                        h.update((instr.memory_base() as u16).to_le_bytes());
                        h.update((instr.memory_index() as u16).to_le_bytes());
                        h.update(instr.memory_index_scale().to_le_bytes());
                        h.update((instr.memory_size() as u16).to_le_bytes());
                        if instr.is_ip_rel_memory_operand() || instr.memory_base() == Register::RIP {
                            target(h, instr.ip_rel_memory_address());
                        } else {
                            h.update(instr.memory_displacement64().to_le_bytes());
                        }
                    }
                    _ => {
                        if let Ok(imm) = instr.try_immediate(op) {
                            h.update(imm.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
}

/// Fingerprints functions by name across the binaries of a run, caching each binary it opened.
#[derive(Default)]
pub struct Fingerprinter {
    binaries: BTreeMap<String, Option<Code>>,
}

impl Fingerprinter {
    /// A fingerprinter with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The code map of `names` in the binaries at `paths`: each name's fingerprint covers every
    /// function symbol of that name in any of them. Names without a symbol (inlined functions,
    /// frames without symbols) are left out; unreadable binaries are skipped.
    pub fn code_map<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a str>,
        names: &BTreeSet<String>,
    ) -> CodeMap {
        let mut parts: BTreeMap<&str, Vec<[u8; 8]>> = BTreeMap::new();
        let mut x86_64 = true;
        let paths: BTreeSet<&str> = paths.into_iter().collect();
        for path in &paths {
            if path.contains(AGENT_LIBRARY) || !path.starts_with('/') {
                continue;
            }
            if !self.binaries.contains_key(*path) {
                self.binaries.insert((*path).to_owned(), Code::open(Path::new(path)));
            }
        }
        for path in paths {
            let Some(Some(code)) = self.binaries.get(path) else { continue };
            x86_64 &= code.x86_64;
            for name in names {
                for &i in code.by_name.get(name).into_iter().flatten() {
                    if let Some(fp) = code.fingerprint(&code.symbols[i]) {
                        parts.entry(name.as_str()).or_default().push(fp);
                    }
                }
            }
        }
        let functions = parts
            .into_iter()
            .map(|(name, mut fps)| {
                fps.sort_unstable();
                fps.dedup();
                let fp = if fps.len() == 1 {
                    fps[0]
                } else {
                    let digest = Sha256::digest(fps.concat());
                    let mut out = [0u8; 8];
                    out.copy_from_slice(&digest[..8]);
                    out
                };
                (name.to_owned(), fp.iter().map(|b| format!("{b:02x}")).collect())
            })
            .collect();
        CodeMap {
            version: CODE_MAP_VERSION,
            method: if x86_64 { NORMALIZED } else { RAW }.to_owned(),
            functions,
        }
    }
}

/// The code map of the functions named in `profiles`, from the binaries their mappings name.
pub fn fingerprint_profiles(fingerprinter: &mut Fingerprinter, profiles: &[&Profile]) -> CodeMap {
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for p in profiles {
        names.extend(p.function.iter().map(|f| normalize_name(p.str(f.name))));
        paths.extend(p.mapping.iter().map(|m| p.str(m.filename).to_owned()));
    }
    fingerprinter.code_map(paths.iter().map(String::as_str), &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself: a real x86-64 ELF with a symbol table.
    fn this_binary() -> String {
        std::env::current_exe().unwrap().display().to_string()
    }

    #[inline(never)]
    fn probe_a(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(31).rotate_left(7)
    }

    #[inline(never)]
    fn probe_b(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(37).rotate_left(9)
    }

    #[test]
    fn functions_of_a_real_binary_get_stable_distinct_fingerprints() {
        assert_ne!(probe_a(1), probe_b(1));
        let path = this_binary();
        let code = Code::open(Path::new(&path)).expect("the test binary is an ELF");
        let find = |suffix: &str| {
            code.by_name.keys().find(|n| n.ends_with(suffix)).cloned().unwrap_or_else(|| panic!("{suffix}"))
        };
        let (a, b) = (find("fingerprint::tests::probe_a"), find("fingerprint::tests::probe_b"));
        let names = BTreeSet::from([a.clone(), b.clone(), "no::such::function".to_owned()]);
        let map = Fingerprinter::new().code_map([path.as_str()], &names);
        let again = Fingerprinter::new().code_map([path.as_str()], &names);
        assert_eq!(map, again);
        assert_eq!(map.functions.len(), 2, "{map:?}");
        assert_ne!(map.functions[&a], map.functions[&b]);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(map.method, NORMALIZED);
        }
    }

    #[test]
    fn build_specific_suffixes_do_not_reach_names() {
        assert_eq!(stable_name("anon.543c1f316a986ef651a6f3ccbcf806a7.1.llvm.967284759788050981"), "anon");
        assert_eq!(stable_name("anon.543c1f316a986ef651a6f3ccbcf806a7.1.llvm.724909351805341841"), "anon");
        assert_eq!(
            stable_name("_ZN10serde_json4read5error17h0123456789abcdefE.llvm.42"),
            "serde_json::read::error"
        );
    }

    #[test]
    fn a_call_moved_elsewhere_keeps_its_fingerprint_but_a_new_callee_does_not() {
        // Two copies of `call f; ret` at different addresses (the layout moved) hash alike; a
        // call to another function does not.
        let symbols = vec![
            Sym { address: 0x1000, size: 6, name: "caller".into(), text: true },
            Sym { address: 0x2000, size: 6, name: "caller".into(), text: true },
            Sym { address: 0x3000, size: 6, name: "other".into(), text: true },
            Sym { address: 0x5000, size: 1, name: "f".into(), text: true },
            Sym { address: 0x6000, size: 1, name: "g".into(), text: true },
        ];
        let call = |from: u64, to: u64| {
            let rel = (to as i64 - (from as i64 + 5)) as i32;
            let mut v = vec![0xe8];
            v.extend(rel.to_le_bytes());
            v.push(0xc3);
            v
        };
        let mut text = vec![0xccu8; 0x6000];
        for (at, to) in [(0x1000u64, 0x5000u64), (0x2000, 0x5000), (0x3000, 0x6000)] {
            let bytes = call(at, to);
            text[at as usize - 0x1000..at as usize - 0x1000 + bytes.len()].copy_from_slice(&bytes);
        }
        let code = Code {
            symbols: symbols.clone(),
            by_name: HashMap::new(),
            x86_64: true,
            sections: vec![(0x1000, text)],
        };
        let fp = |i: usize| code.fingerprint(&symbols[i]).unwrap();
        assert_eq!(fp(0), fp(1));
        assert_ne!(fp(0), fp(2));
    }
}
