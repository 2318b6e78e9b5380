//! Encoding (gzip, as pprof tools expect) and checked decoding.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

use super::proto::Profile;

/// Errors decoding a profile. The caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input is empty.
    #[error("empty profile")]
    Empty,
    /// The gzip stream is corrupt or truncated.
    #[error("corrupt gzip stream")]
    Gzip(#[source] io::Error),
    /// The bytes are not a protobuf `Profile`.
    #[error("not a pprof profile")]
    Protobuf(#[source] prost::DecodeError),
    /// The gzip stream inflates beyond [`MAX_INFLATED`] (a zip bomb in a shared store, say).
    #[error("the profile inflates beyond {} MiB", MAX_INFLATED >> 20)]
    TooLarge,
    /// The profile decodes but its references are inconsistent.
    #[error("inconsistent pprof profile: {what}")]
    Invalid {
        /// What is inconsistent.
        what: String,
    },
}

/// The largest decompressed profile read: far above real ones (an instructions profile of a
/// large program is ~20 MiB), far below what would exhaust memory.
pub const MAX_INFLATED: u64 = 1 << 30;

/// Writes the profile gzip-compressed (fastest level, as Go's `runtime/pprof` does).
pub fn encode(profile: &Profile, writer: impl Write) -> io::Result<()> {
    let mut gz = GzEncoder::new(writer, Compression::fast());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()?.flush()
}

/// The profile gzip-compressed.
pub fn encode_to_vec(profile: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = encode(profile, &mut out);
    out
}

/// Inflates a gzip stream, refusing one that inflates beyond `max` bytes.
pub fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).take(max + 1).read_to_end(&mut out).map_err(DecodeError::Gzip)?;
    if out.len() as u64 > max {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// Compresses bytes as [`encode`] does.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
}

/// Decodes a profile from gzip-compressed or plain protobuf bytes and checks that its
/// indices and ids refer to existing entries.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    decode_bounded(bytes, MAX_INFLATED)
}

/// [`decode`], refusing a gzip stream that inflates beyond `max` bytes.
pub(super) fn decode_bounded(bytes: &[u8], max: u64) -> Result<Profile, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let plain;
    let data = if bytes.starts_with(&[0x1f, 0x8b]) {
        plain = gunzip(bytes, max)?;
        &plain[..]
    } else {
        bytes
    };
    let p = Profile::decode(data).map_err(DecodeError::Protobuf)?;
    validate(&p).map_err(|what| DecodeError::Invalid { what })?;
    Ok(p)
}

fn validate(p: &Profile) -> Result<(), String> {
    if p.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err("string_table[0] is not empty".into());
    }
    let nstr = p.string_table.len() as i64;
    let check_str = |i: i64, what: &str| {
        if i < 0 || (i >= nstr && i != 0) {
            Err(format!("{what} refers to string {i}, the table has {nstr}"))
        } else {
            Ok(())
        }
    };
    for v in p.sample_type.iter().chain(&p.period_type) {
        check_str(v.r#type, "a value type")?;
        check_str(v.unit, "a value type")?;
    }
    for &c in &p.comment {
        check_str(c, "a comment")?;
    }
    check_str(p.default_sample_type, "default_sample_type")?;
    for m in &p.mapping {
        check_str(m.filename, "a mapping")?;
        check_str(m.build_id, "a mapping")?;
    }
    let functions: std::collections::HashSet<u64> = p.function.iter().map(|f| f.id).collect();
    for f in &p.function {
        check_str(f.name, "a function")?;
        check_str(f.system_name, "a function")?;
        check_str(f.filename, "a function")?;
    }
    let mappings: std::collections::HashSet<u64> = p.mapping.iter().map(|m| m.id).collect();
    for l in &p.location {
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return Err(format!("location {} refers to missing mapping {}", l.id, l.mapping_id));
        }
        if let Some(line) = l.line.iter().find(|line| !functions.contains(&line.function_id)) {
            return Err(format!("location {} refers to missing function {}", l.id, line.function_id));
        }
    }
    let locations: std::collections::HashSet<u64> = p.location.iter().map(|l| l.id).collect();
    for s in &p.sample {
        if s.value.len() != p.sample_type.len() {
            return Err(format!(
                "a sample has {} values for {} sample types",
                s.value.len(),
                p.sample_type.len()
            ));
        }
        if let Some(id) = s.location_id.iter().find(|id| !locations.contains(id)) {
            return Err(format!("a sample refers to missing location {id}"));
        }
        for l in &s.label {
            check_str(l.key, "a label")?;
            check_str(l.str, "a label")?;
            check_str(l.num_unit, "a label")?;
        }
    }
    Ok(())
}
