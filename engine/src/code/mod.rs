//! Machine-code fingerprints of the functions a run sampled, and which functions' code differs
//! between two builds.
//!
//! A verdict is only worth gating on when the pull request could have caused it: the function's
//! own machine code changed, or code on its call paths did (see `compare::explain`). Source diffs
//! cannot say that: inlining, generic instantiation, a new dependency version or another rustc
//! change machine code that `git diff` does not show, and a comment changes no code at all. So
//! every stored run carries, for each function name its profiles hold, a fingerprint of the
//! function's instructions in the binary that ran.
//!
//! The fingerprint must not move when only the *layout* moves (a function added earlier in the
//! binary shifts every later one by some bytes): on x86-64 the instructions are decoded and hashed
//! with branch targets outside the function replaced by the callee's name, branch targets inside it
//! by their offset from the function's start, and RIP-relative displacements by the name of the
//! data symbol they point into (or nothing, for anonymous constants). Other architectures hash the
//! raw bytes, so layout shifts there count as code changes (the conservative side: more changes
//! are explained, none is hidden).
//!
//! Owns reading the binaries' code and symbol tables for this purpose; knows nothing of profiles'
//! costs, the store or the comparison's statistics.

mod fingerprint;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::{Deserialize, Serialize};

pub use fingerprint::{Fingerprinter, fingerprint_profiles};

/// Version of the [`CodeMap`] JSON layout and of the fingerprint algorithm: maps of different
/// versions are not compared (every change then counts as explained).
pub const CODE_MAP_VERSION: u32 = 1;

/// File name of a run's code map in the store.
pub const CODE_MAP_FILE: &str = "code.json.gz";

/// Largest decompressed code map read from a store (a shared bucket may hold anything).
const MAX_CODE_MAP_BYTES: u64 = 64 << 20;

/// Fingerprints of functions, by normalized name (as the comparison names them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeMap {
    /// [`CODE_MAP_VERSION`] of the writer.
    pub version: u32,
    /// How the fingerprints were made: `x86_64-normalized` or `raw-bytes`.
    pub method: String,
    /// Function name → fingerprint (16 hex digits). Several symbols with one name (generic
    /// instances under legacy mangling, copies in several binaries) share one fingerprint that
    /// covers them all.
    pub functions: BTreeMap<String, String>,
}

/// Why a stored code map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodeMapError {
    /// Not gzip, not JSON, or too large.
    #[error("corrupt code map: {0}")]
    Corrupt(String),
}

impl CodeMap {
    /// Gzipped JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&json);
        gz.finish().unwrap_or_default()
    }

    /// Reads a stored map, bounded in size.
    pub fn decode(bytes: &[u8]) -> Result<CodeMap, CodeMapError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CODE_MAP_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| CodeMapError::Corrupt(e.to_string()))?;
        if json.len() as u64 > MAX_CODE_MAP_BYTES {
            return Err(CodeMapError::Corrupt(format!("larger than {MAX_CODE_MAP_BYTES} bytes")));
        }
        serde_json::from_slice(&json).map_err(|e| CodeMapError::Corrupt(e.to_string()))
    }

    /// Adds the fingerprints of `other` (another run of the same side). A name fingerprinted
    /// differently in the two keeps both, joined: a side that mixes builds differs from any other.
    pub fn merge(&mut self, other: &CodeMap) {
        if self.functions.is_empty() {
            self.version = other.version;
            self.method = other.method.clone();
        }
        for (name, fp) in &other.functions {
            match self.functions.get_mut(name) {
                Some(mine) if mine != fp && !mine.split('+').any(|p| p == fp) => {
                    let mut parts: BTreeSet<&str> = mine.split('+').collect();
                    parts.insert(fp);
                    *mine = parts.into_iter().collect::<Vec<_>>().join("+");
                }
                Some(_) => {}
                None => {
                    self.functions.insert(name.clone(), fp.clone());
                }
            }
        }
    }
}

/// What two sides' code maps say about each function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeDiff {
    /// Functions fingerprinted on both sides with different code.
    pub changed: BTreeSet<String>,
    /// Functions fingerprinted on both sides.
    pub compared: usize,
}

/// The functions whose code differs between `base` and `head`; `None` when the maps cannot be
/// compared (different versions or methods), in which case every change must count as explained.
pub fn diff(base: &CodeMap, head: &CodeMap) -> Option<CodeDiff> {
    if base.version != head.version || base.method != head.method || base.version != CODE_MAP_VERSION {
        return None;
    }
    let mut out = CodeDiff::default();
    for (name, b) in &base.functions {
        // A name on one side only was not sampled on the other: nothing is known of its code
        // there. New code shows anyway in its callers, whose calls now name it.
        if let Some(h) = head.functions.get(name) {
            out.compared += 1;
            if b != h {
                out.changed.insert(name.clone());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> CodeMap {
        CodeMap {
            version: CODE_MAP_VERSION,
            method: "x86_64-normalized".into(),
            functions: entries.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn diff_names_changed_functions_only_where_both_sides_know_them() {
        let base = map(&[("a", "1"), ("b", "2"), ("gone", "3")]);
        let head = map(&[("a", "1"), ("b", "9"), ("new", "4")]);
        let d = diff(&base, &head).unwrap();
        assert_eq!(d.changed, BTreeSet::from(["b".to_string()]));
        assert_eq!(d.compared, 2);
        let mut other = head.clone();
        other.method = "raw-bytes".into();
        assert_eq!(diff(&base, &other), None);
    }

    #[test]
    fn merged_sides_that_mix_builds_differ_from_either_build() {
        let mut side = map(&[("a", "1")]);
        side.merge(&map(&[("a", "2"), ("b", "3")]));
        assert_eq!(side.functions["a"], "1+2");
        side.merge(&map(&[("a", "1")]));
        assert_eq!(side.functions["a"], "1+2");
        assert!(diff(&side, &map(&[("a", "1")])).unwrap().changed.contains("a"));
    }

    #[test]
    fn round_trip_and_corrupt_input() {
        let m = map(&[("<a as b>::c", "00ff")]);
        assert_eq!(CodeMap::decode(&m.encode()).unwrap(), m);
        assert!(CodeMap::decode(b"not gzip").is_err());
    }
}
