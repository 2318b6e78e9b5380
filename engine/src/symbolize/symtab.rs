//! A binary's symbol table held compactly, for binaries read without DWARF: the names of code
//! only, in one string, 16 bytes per symbol besides its name.

use std::ops::Range;

use object::Object;

/// Code symbols by address, one name per address, chosen as `addr2line`'s loader chooses
/// (`object`'s symbol map: the static table, else the dynamic one; sized, global names first).
#[derive(Default)]
pub(super) struct SymbolTable {
    /// `(address, size, start of the name in names)`, sorted by address. A size the table does
    /// not give is up to the next symbol (`object`'s guess).
    entries: Vec<(u64, u32, u32)>,
    /// Every name, one after the other: entry `i`'s ends where entry `i + 1`'s starts.
    names: String,
}

impl SymbolTable {
    /// The symbols of `obj` whose address is in one of the `code` ranges (its executable
    /// segments): data symbols never name an address a profile has.
    pub(super) fn of<'data>(obj: &impl Object<'data>, code: &[Range<u64>]) -> Self {
        let mut table = Self::default();
        for s in obj.symbol_map().symbols() {
            let Ok(start) = u32::try_from(table.names.len()) else { break };
            if code.iter().any(|r| r.contains(&s.address())) {
                table.entries.push((s.address(), u32::try_from(s.size()).unwrap_or(u32::MAX), start));
                table.names.push_str(s.name());
            }
        }
        table.entries.shrink_to_fit();
        table.names.shrink_to_fit();
        table
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The symbol whose range holds `vaddr`.
    pub(super) fn containing(&self, vaddr: u64) -> Option<&str> {
        let i = self.index_at_or_before(vaddr)?;
        let (address, size, _) = self.entries[i];
        (size == 0 || vaddr - address < u64::from(size)).then(|| self.name(i))
    }

    /// The nearest symbol at or before `vaddr`: its address and name.
    pub(super) fn at_or_before(&self, vaddr: u64) -> Option<(u64, &str)> {
        let i = self.index_at_or_before(vaddr)?;
        Some((self.entries[i].0, self.name(i)))
    }

    fn index_at_or_before(&self, vaddr: u64) -> Option<usize> {
        self.entries.partition_point(|e| e.0 <= vaddr).checked_sub(1)
    }

    fn name(&self, i: usize) -> &str {
        let start = self.entries[i].2 as usize;
        let end = self.entries.get(i + 1).map_or(self.names.len(), |e| e.2 as usize);
        &self.names[start..end]
    }
}
