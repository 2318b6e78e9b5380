//! One parser of `/proc/<pid>/maps` lines, for the agent (which executable ranges are code, which
//! one is the main executable) and for `cargo contprof`'s symbolizer.

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLine<'a> {
    /// First address of the mapping.
    pub start: u64,
    /// One past its last address.
    pub limit: u64,
    /// `r-xp` and the like.
    pub perms: &'a str,
    /// Offset of the mapping in the file.
    pub file_offset: u64,
    /// The file (or `[heap]`, `[vdso]`, empty for anonymous memory), spaces included, without
    /// the ` (deleted)` the kernel appends to files removed since they were mapped.
    pub path: &'a str,
    /// The file was deleted (or replaced) after it was mapped.
    pub deleted: bool,
}

impl MapLine<'_> {
    /// Whether the mapping is executable.
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// Parses `55d0c0a00000-55d0c0a21000 r-xp 00021000 08:01 1234   /path/with spaces (deleted)`.
/// The path is everything after the inode and the padding that follows it: the kernel neither
/// quotes nor escapes spaces.
pub fn parse_line(line: &str) -> Option<MapLine<'_>> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start();
    let (start, limit) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let limit = u64::from_str_radix(limit, 16).ok()?;
    let file_offset = u64::from_str_radix(offset, 16).ok()?;
    if limit <= start {
        return None;
    }
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(MapLine { start, limit, perms, file_offset, path, deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15.18: a path with spaces is one path.
    #[test]
    fn a_path_with_spaces_is_kept_whole() {
        let l =
            parse_line("55d0c0a21000-55d0c0a30000 r-xp 00021000 08:01 1234     /opt/my app/bin (deleted)")
                .unwrap();
        assert_eq!((l.start, l.limit, l.file_offset), (0x55d0c0a21000, 0x55d0c0a30000, 0x21000));
        assert!(l.executable() && l.deleted);
        assert_eq!(l.path, "/opt/my app/bin");
        assert_eq!(parse_line("7ffd000-7ffe000 rw-p 00000000 00:00 0").unwrap().path, "");
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("2000-1000 r-xp 0 0:0 0 /x").is_none());
    }
}
