//! Parsing of `/proc/<pid>/maps` text as the agent recorded it.

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub limit: u64,
    /// Offset in the file of the first mapped byte.
    pub file_offset: u64,
    /// Whether the mapping is executable (`x` permission).
    pub executable: bool,
    /// The file path, a pseudo name such as `[vdso]`, or empty for anonymous memory. A
    /// ` (deleted)` suffix is removed and recorded in [`MapEntry::deleted`].
    pub path: String,
    /// The file was deleted or replaced after it was mapped.
    pub deleted: bool,
}

impl MapEntry {
    /// Whether the mapping comes from a file on disk (rather than anonymous memory or a
    /// kernel pseudo mapping such as `[vdso]`).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }

    /// The last path component, for short names such as `libc.so.6+0x1234`.
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Whether the mapping is the C runtime: the C library (with the parts older glibc ships as
    /// libraries of their own), the dynamic loader, the kernel's vDSO. The agent's own work calls
    /// into these and nothing else (`dlsym`, `write`, `mmap`, `clock_gettime`), so code there runs
    /// for whoever called it; any other object's code is the program's.
    pub fn is_c_runtime(&self) -> bool {
        const RUNTIME: &[&str] = &[
            "libc.so",
            "libc-",
            "ld-linux",
            "ld64.so",
            "libpthread",
            "libdl.so",
            "libdl-",
            "librt.so",
            "librt-",
        ];
        let name = self.short_name();
        self.path == "[vdso]" || RUNTIME.iter().any(|r| name.starts_with(r))
    }
}

/// The memory map of the profiled process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessMaps {
    /// Entries sorted by start address.
    pub entries: Vec<MapEntry>,
}

impl ProcessMaps {
    /// Parses the text of `/proc/<pid>/maps`. Lines that do not parse are skipped: the text
    /// comes from another process and a torn last line must not stop symbolization.
    pub fn parse(text: &str) -> Self {
        let mut entries: Vec<MapEntry> = text.lines().filter_map(parse_line).collect();
        entries.sort_by_key(|e| e.start);
        Self { entries }
    }

    /// The entry containing `addr`, with its index in [`ProcessMaps::entries`].
    pub fn find(&self, addr: u64) -> Option<(usize, &MapEntry)> {
        let i = self.entries.partition_point(|e| e.start <= addr).checked_sub(1)?;
        let e = &self.entries[i];
        (addr < e.limit).then_some((i, e))
    }

    /// The path of the main executable: the first file mapped in the text (the kernel maps
    /// the executable before the dynamic loader and libraries, at the lowest address for
    /// both PIE and non-PIE binaries).
    pub fn main_executable(&self) -> Option<&str> {
        self.entries.iter().find(|e| e.is_file()).map(|e| e.path.as_str())
    }
}

/// One entry, through the agent's parser (the one parser of maps lines).
fn parse_line(line: &str) -> Option<MapEntry> {
    let l = contprof_protocol::maps::parse_line(line)?;
    Some(MapEntry {
        start: l.start,
        limit: l.limit,
        file_offset: l.file_offset,
        executable: l.executable(),
        path: l.path.to_owned(),
        deleted: l.deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234                       /usr/bin/my prog
55d0c0a21000-55d0c0b00000 r-xp 00021000 08:01 1234                       /usr/bin/my prog
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000001000 r-xp 00002000 08:01 99                         /lib/libgone.so (deleted)
7fff00000000-7fff00002000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";

    #[test]
    fn parses_paths_with_spaces_deleted_and_pseudo_mappings() {
        let m = ProcessMaps::parse(MAPS);
        assert_eq!(m.entries.len(), 5);
        assert_eq!(m.main_executable(), Some("/usr/bin/my prog"));
        let (i, e) = m.find(0x55d0c0a21010).unwrap();
        assert_eq!((i, e.file_offset, e.executable), (1, 0x21000, true));
        let (_, gone) = m.find(0x7f0000000010).unwrap();
        assert!(gone.deleted && gone.path == "/lib/libgone.so" && gone.short_name() == "libgone.so");
        assert!(!m.find(0x7fff00000000).unwrap().1.is_file());
        assert!(m.find(0x55d0c0b00000).is_none());
        assert!(m.find(0x10).is_none());
    }

    #[test]
    fn the_c_runtime_is_libc_the_loader_and_the_vdso() {
        let entry = |path: &str| MapEntry {
            start: 0,
            limit: 1,
            file_offset: 0,
            executable: true,
            path: path.to_owned(),
            deleted: false,
        };
        for runtime in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libc-2.31.so",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libpthread.so.0",
            "[vdso]",
        ] {
            assert!(entry(runtime).is_c_runtime(), "{runtime}");
        }
        for program in
            ["/usr/bin/my prog", "/usr/lib/libcrypto.so.3", "/opt/libcontprof_preload-1.so", "[heap]", ""]
        {
            assert!(!entry(program).is_c_runtime(), "{program}");
        }
    }
}
