//! Names, when windows are read, the frames that were recorded without them: a window uploaded
//! before its binary's debug file was in the store (`prod symbols add`) names that binary's code
//! `module+0x…`, where the hex number is the ELF virtual address the uploader looked up. Reads of
//! windows (the views, and compaction into rollups) pass each window through a [`Renamer`], which
//! fetches the debug file of the mapping's build id once per command and gives those locations
//! the functions, files, lines and inlined frames an uploader with the debug file would have.
//!
//! Rollups compacted before the debug file was added keep the names they were built with.

use std::collections::HashMap;
use std::io::Write;

use crate::profile::{Function, Line, Profile};
use crate::store::Store;
use crate::symbolize::{DebugInfo, Frame};

/// Renames windows' unnamed frames with the store's debug files (see the module docs).
pub struct Renamer<'a> {
    store: &'a Store,
    /// Per build id, its debug file opened; `None` when the store has none (or it is unusable).
    files: HashMap<String, Option<DebugInfo>>,
}

impl<'a> Renamer<'a> {
    /// A renamer reading debug files from `store`.
    pub fn new(store: &'a Store) -> Self {
        Renamer { store, files: HashMap::new() }
    }

    /// Gives the unnamed frames of `p` the names of their binary's debug file, where the store
    /// has one. Returns how many locations were renamed.
    pub fn rename(&mut self, p: &mut Profile) -> usize {
        // The mappings whose code has unnamed frames, with what such a frame's name starts with.
        let mut raw_prefix: HashMap<u64, (String, String)> = HashMap::new();
        for m in &p.mapping {
            let build_id = p.str(m.build_id);
            let file = p.str(m.filename).rsplit('/').next().unwrap_or_default();
            if !build_id.is_empty() && !file.is_empty() {
                raw_prefix.insert(m.id, (build_id.to_owned(), format!("{file}+0x")));
            }
        }
        let functions: HashMap<u64, usize> = p.function.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
        // Location index, build id, ELF virtual address.
        let mut unnamed: Vec<(usize, String, u64)> = Vec::new();
        for (i, loc) in p.location.iter().enumerate() {
            let (Some((build_id, prefix)), [line]) = (raw_prefix.get(&loc.mapping_id), loc.line.as_slice())
            else {
                continue;
            };
            let Some(f) = functions.get(&line.function_id).map(|&i| &p.function[i]) else { continue };
            let vaddr =
                p.str(f.name).strip_prefix(prefix.as_str()).and_then(|h| u64::from_str_radix(h, 16).ok());
            if let Some(vaddr) = vaddr {
                unnamed.push((i, build_id.clone(), vaddr));
            }
        }
        if unnamed.is_empty() {
            return 0;
        }
        let mut strings: HashMap<String, i64> =
            p.string_table.iter().enumerate().map(|(i, s)| (s.clone(), i as i64)).collect();
        let mut named: HashMap<(String, String, String), u64> = HashMap::new();
        let mut next_id = p.function.iter().map(|f| f.id).max().unwrap_or(0) + 1;
        let mut renamed = 0;
        let mut mappings_named = Vec::new();
        for (i, build_id, vaddr) in unnamed {
            let Some(info) = self.debug_info(&build_id) else { continue };
            let frames = info.frames(vaddr);
            if frames.is_empty() {
                continue;
            }
            let mut intern = |s: &str| -> i64 {
                if let Some(&i) = strings.get(s) {
                    return i;
                }
                p.string_table.push(s.to_owned());
                let i = p.string_table.len() as i64 - 1;
                strings.insert(s.to_owned(), i);
                i
            };
            let mut lines = Vec::with_capacity(frames.len());
            for Frame { function, system_name, file, line, column, .. } in frames {
                let file = file.unwrap_or_default();
                let key = (function, system_name, file);
                let id = match named.get(&key) {
                    Some(&id) => id,
                    None => {
                        let f = Function {
                            id: next_id,
                            name: intern(&key.0),
                            system_name: intern(&key.1),
                            filename: intern(&key.2),
                            start_line: 0,
                        };
                        next_id += 1;
                        p.function.push(f);
                        named.insert(key, next_id - 1);
                        next_id - 1
                    }
                };
                lines.push(Line { function_id: id, line: i64::from(line), column: i64::from(column) });
            }
            p.location[i].line = lines;
            mappings_named.push(p.location[i].mapping_id);
            renamed += 1;
        }
        for m in p.mapping.iter_mut().filter(|m| mappings_named.contains(&m.id)) {
            m.has_functions = true;
            m.has_filenames = true;
            m.has_line_numbers = true;
            m.has_inline_frames = true;
        }
        // The `module+0x…` functions no location names any more.
        let used: std::collections::HashSet<u64> =
            p.location.iter().flat_map(|l| l.line.iter().map(|l| l.function_id)).collect();
        p.function.retain(|f| used.contains(&f.id));
        renamed
    }

    /// The debug file of `build_id` from the store, fetched once.
    fn debug_info(&mut self, build_id: &str) -> Option<&DebugInfo> {
        if !self.files.contains_key(build_id) {
            let opened = self.fetch(build_id);
            self.files.insert(build_id.to_owned(), opened);
        }
        self.files.get(build_id).and_then(Option::as_ref)
    }

    fn fetch(&self, build_id: &str) -> Option<DebugInfo> {
        let gzipped = self.store.get_debug_file(build_id).ok().flatten()?;
        // Inflated into a file that is gone once mapped (the loader maps what it reads).
        let mut file = tempfile::NamedTempFile::new().ok()?;
        std::io::copy(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut file).ok()?;
        file.flush().ok()?;
        DebugInfo::open(file.path())
    }
}
