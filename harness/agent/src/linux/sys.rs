//! Thin wrappers over the few Linux system calls the agent needs from contexts where the
//! standard library cannot be used (signal handlers, malloc hooks, the abort handler).
//!
//! Everything here is async-signal-safe: no allocation, no locks, only system calls. The calls
//! that glibc makes cancellation points (`open`, `read`, `write`, `close`) are made as raw system
//! calls: the agent works on the program's threads (in hooks, at thread exit), and a cancellation
//! pending for such a thread must act where the program would act on it, never inside the agent.
//! Descriptors the agent keeps ([`open_kept`]) live above the ones programs use, never at 0, 1 or
//! 2: a program that closed its standard output must get `EBADF` from `write(1)`, as without the
//! agent, not write into the agent's file.

/// Reads the calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Restores the calling thread's `errno` (signal handlers must not change it).
pub(crate) fn set_errno(value: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Waits until `in_flight` (a count of calls under way on other threads) reads 0, yielding
/// between reads, at most about 100,000 times: what a stop does after switching a recorder off, so
/// that the calls that began before have finished. Async-signal-safe.
pub(crate) fn wait_until_idle(in_flight: &core::sync::atomic::AtomicUsize) {
    for _ in 0..100_000 {
        if in_flight.load(core::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// The kernel thread id of the caller.
pub(crate) fn gettid() -> u32 {
    // SAFETY: `gettid` has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Reads a clock in nanoseconds (0 if the clock is unavailable).
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `open(2)` as a raw system call (not a cancellation point); -1 with `errno` on failure.
pub(crate) fn open(path: &core::ffi::CStr, flags: i32, mode: u32) -> i32 {
    // SAFETY: `path` is NUL-terminated; the kernel checks the rest.
    unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, mode) as i32 }
}

/// `read(2)` as a raw system call.
pub(crate) fn read(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is writable for its length.
    unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) as isize }
}

/// `pread64(2)` as a raw system call: reads at `offset`, leaving the file position alone.
pub(crate) fn pread(fd: i32, buf: &mut [u8], offset: usize) -> isize {
    // SAFETY: `buf` is writable for its length.
    unsafe {
        libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), offset as libc::off_t) as isize
    }
}

/// `write(2)` as a raw system call.
pub(crate) fn write(fd: i32, bytes: &[u8]) -> isize {
    // SAFETY: `bytes` is readable for its length.
    unsafe { libc::syscall(libc::SYS_write, fd, bytes.as_ptr(), bytes.len()) as isize }
}

/// `close(2)` as a raw system call (errors ignored: the descriptor is gone either way).
pub(crate) fn close(fd: i32) {
    // SAFETY: closes a descriptor the agent owns (the callers' contract).
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// The lowest descriptor number the agent keeps a descriptor at: half the soft limit, at most
/// 512, at least 3. Programs take the lowest free numbers; one that closes every descriptor at
/// start (as daemons do) and opens its own gets low numbers, far from the agent's.
fn kept_floor() -> i32 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 64 };
    (soft / 2).clamp(3, 512) as i32
}

/// Moves a descriptor the agent keeps above the program's ([`kept_floor`], else anywhere from 3
/// up): never 0, 1 or 2. Returns the new descriptor (close-on-exec), or -1 (and closes `fd`)
/// when no number is free there.
pub(crate) fn keep_high(fd: i32) -> i32 {
    if fd < 0 {
        return fd;
    }
    for floor in [kept_floor(), 3] {
        // SAFETY: duplicates a descriptor the agent owns.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
        if high >= 0 {
            close(fd);
            return high;
        }
    }
    if fd > 2 {
        return fd;
    }
    close(fd);
    -1
}

/// Writes `/proc/self/task/<tid>/<leaf>` and a NUL into `buf`; returns the length with the NUL
/// (`None` if it does not fit).
pub(crate) fn task_path(buf: &mut [u8], tid: u32, leaf: &[u8]) -> Option<usize> {
    let prefix = b"/proc/self/task/";
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = tid;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = prefix.len() + n + 1 + leaf.len() + 1;
    let out = buf.get_mut(..len)?;
    out[..prefix.len()].copy_from_slice(prefix);
    for (o, d) in out[prefix.len()..].iter_mut().zip(digits[..n].iter().rev()) {
        *o = *d;
    }
    let at = prefix.len() + n;
    out[at] = b'/';
    out[at + 1..len - 1].copy_from_slice(leaf);
    out[len - 1] = 0;
    Some(len)
}

/// Reads `/proc/self/task/<tid>/<leaf>` into `buf` (as much as fits); the bytes read, `None` when
/// the file cannot be read (the thread exited). Raw system calls, no allocation.
pub(crate) fn read_task_file(tid: u32, leaf: &[u8], buf: &mut [u8]) -> Option<usize> {
    let mut path = [0u8; 48];
    let len = task_path(&mut path, tid, leaf)?;
    let path = core::ffi::CStr::from_bytes_with_nul(&path[..len]).ok()?;
    let fd = open_brief(path, libc::O_RDONLY);
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let n = read(fd, &mut buf[len..]);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd);
    Some(len)
}

/// [`open`] for a descriptor the agent holds briefly: never 0, 1 or 2 (a program that closed its
/// standard output and writes to it at that moment must get `EBADF`, not write into the agent's
/// file). Close-on-exec.
pub(crate) fn open_brief(path: &core::ffi::CStr, flags: i32) -> i32 {
    let fd = open(path, flags | libc::O_CLOEXEC, 0);
    if !(0..3).contains(&fd) {
        return fd;
    }
    // SAFETY: duplicates a descriptor the agent owns.
    let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    close(fd);
    moved
}

/// Calls `f` with the id of every thread of the process, from `/proc/self/task` read with raw
/// `getdents64` into a stack buffer. Returns false if the directory cannot be read.
pub(crate) fn for_each_thread(f: impl FnMut(u32)) -> bool {
    let Some(dir) = TASK.open() else { return false };
    for_each_tid(dir.fd(), f);
    true
}

/// Calls `f` with every thread id in the directory `dir` (`/proc/self/task`, open), read from its
/// start with raw `getdents64` into a stack buffer.
pub(crate) fn for_each_tid(dir: i32, mut f: impl FnMut(u32)) {
    // SAFETY: `dir` is an open directory descriptor.
    if unsafe { libc::lseek(dir, 0, libc::SEEK_SET) } != 0 {
        return;
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            return;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                return;
            }
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_tid(name) {
                f(tid);
            }
            at += reclen;
        }
    }
}

/// A decimal thread id (a `/proc/self/task` entry), `None` for anything else.
pub(crate) fn parse_tid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// [`open`] for a descriptor the agent keeps (see [`keep_high`]).
pub(crate) fn open_kept(path: &core::ffi::CStr, flags: i32, mode: u32) -> i32 {
    keep_high(open(path, flags | libc::O_CLOEXEC, mode))
}

/// The device and inode `fd` refers to (`None` if it is closed), to check that a descriptor the
/// agent keeps is still its own before writing to it.
pub(crate) fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: `stat` is plain data; the kernel fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid out-pointer; a raw system call (not a cancellation point).
    let rc = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (rc == 0).then_some((st.st_dev, st.st_ino))
}

/// What a descriptor the agent keeps refers to (device and inode), recorded when it is opened, so
/// that every later use can tell it from a number the program reused after closing it (a daemon
/// closing every descriptor at start). Atomics: readable from a signal handler.
pub(crate) struct Identity {
    dev: core::sync::atomic::AtomicU64,
    ino: core::sync::atomic::AtomicU64,
}

impl Identity {
    /// Nothing recorded: no descriptor is this (no file has inode `u64::MAX`).
    pub(crate) const fn unknown() -> Identity {
        Identity {
            dev: core::sync::atomic::AtomicU64::new(0),
            ino: core::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// Whether something was recorded.
    pub(crate) fn is_known(&self) -> bool {
        self.ino.load(core::sync::atomic::Ordering::Relaxed) != u64::MAX
    }

    /// Records what `fd` refers to; when it is not open, nothing ([`Identity::unknown`]).
    pub(crate) fn record(&self, fd: i32) {
        self.set(identity(fd));
    }

    /// Records `id` ([`identity`]'s answer); `None`: nothing.
    pub(crate) fn set(&self, id: Option<(u64, u64)>) {
        let (dev, ino) = id.unwrap_or((0, u64::MAX));
        self.dev.store(dev, core::sync::atomic::Ordering::Relaxed);
        self.ino.store(ino, core::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `fd` refers to the file recorded.
    pub(crate) fn is(&self, fd: i32) -> bool {
        use core::sync::atomic::Ordering;
        self.is_known()
            && identity(fd) == Some((self.dev.load(Ordering::Relaxed), self.ino.load(Ordering::Relaxed)))
    }
}

/// [`open_kept`], with what the descriptor refers to; `None` (nothing left open) when it cannot be
/// opened.
pub(crate) fn open_identified(path: &core::ffi::CStr, flags: i32, mode: u32) -> Option<(i32, (u64, u64))> {
    let fd = open_kept(path, flags, mode);
    match identity(fd) {
        Some(id) => Some((fd, id)),
        None => {
            if fd >= 0 {
                close(fd);
            }
            None
        }
    }
}

/// The CPU clock of thread `tid` of this process (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)` in
/// the kernel's `posix-timers.h`).
pub(crate) fn thread_cpu_clock(tid: u32) -> libc::clockid_t {
    (!(tid as libc::clockid_t) << 3) | 6
}

/// Another thread's CPU time in nanoseconds; `None` when it has exited.
pub(crate) fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    (unsafe { libc::clock_gettime(thread_cpu_clock(tid), &mut ts) } == 0)
        .then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Writes `bytes` with one `write(2)` (retried on `EINTR`); true if all bytes were written.
///
/// The output file is opened with `O_APPEND`, so one call is one atomic append: records of
/// different threads never interleave.
pub(crate) fn write_once(fd: i32, bytes: &[u8]) -> bool {
    loop {
        let n = write(fd, bytes);
        if n >= 0 {
            return n as usize == bytes.len();
        }
        if errno() != libc::EINTR {
            return false;
        }
    }
}

/// Writes all of `bytes` to `fd` (the program's stderr, typically), for the agent's own
/// messages; false on any error. Never raises `SIGPIPE`: a write to a pipe whose reader is gone
/// sends it to the writing thread, which kills a C program that did not ask for it, so the signal
/// is blocked around the write and, if the write raised it, taken back before it is unblocked (a
/// `SIGPIPE` already pending for the thread is the program's and stays). `errno` is kept.
/// Async-signal-safe.
pub(crate) fn write_quietly(fd: i32, mut bytes: &[u8]) -> bool {
    let saved = errno();
    // SAFETY: signal sets are plain data initialised by `sigemptyset`/`sigaddset`; the mask is
    // the calling thread's, restored before returning; `sigtimedwait` with a zero timeout only
    // takes a `SIGPIPE` pending for this thread, which the write just raised.
    let ok = unsafe {
        let mut pipe: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = core::mem::zeroed();
        let blocked = crate::signals::real_sigmask(libc::SIG_BLOCK, &pipe, &mut old) == 0;
        let mut pending: libc::sigset_t = core::mem::zeroed();
        let before = libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let mut ok = true;
        while !bytes.is_empty() {
            let n = write(fd, bytes);
            if n > 0 {
                bytes = &bytes[n as usize..];
            } else if !(n < 0 && errno() == libc::EINTR) {
                ok = false;
                break;
            }
        }
        if !ok && errno() == libc::EPIPE && !before {
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&pipe, core::ptr::null_mut(), &zero);
        }
        if blocked {
            crate::signals::real_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        }
        ok
    };
    set_errno(saved);
    ok
}

/// An anonymous private mapping, used instead of the heap wherever the heap is off limits.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of zeroed memory without reserving swap (pages appear on first touch).
    pub(crate) fn new(len: usize) -> Option<Self> {
        // SAFETY: an anonymous mapping with no address hint has no preconditions.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED { None } else { Some(Self { ptr: ptr.cast(), len }) }
    }

    /// The start of the mapping.
    pub(crate) fn ptr_mut(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole mapping as bytes.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes owned by `self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Keeps the memory mapped for the rest of the process (for tables shared by all threads).
    pub(crate) fn leak(self) -> *mut u8 {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` was mapped by `Mapping::new` and nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Reads the whole of `/proc/self/maps` into `buf` starting at `at`, growing the mapping as
/// needed; returns the number of bytes read. Uses only `open`/`pread`/`close`.
pub(crate) fn read_maps(buf: &mut Mapping, at: usize) -> Option<usize> {
    loop {
        let file = MAPS.open()?;
        let fd = file.fd();
        let mut len = 0;
        let full = loop {
            let room = &mut buf.bytes_mut()[at + len..];
            if room.is_empty() {
                break true;
            }
            let n = pread(fd, room, len);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break false;
            }
            len += n as usize;
        };
        drop(file);
        if !full {
            return Some(len);
        }
        *buf = Mapping::new(buf.len() * 2)?;
    }
}

/// Finds the mapping of `/proc/self/maps` that contains `addr`, reading the file with raw
/// system calls and a stack buffer (safe in a signal handler or a malloc hook).
pub(crate) fn mapping_containing(addr: usize) -> Option<(usize, usize)> {
    let file = MAPS.open()?;
    let fd = file.fd();
    let mut buf = [0u8; 2048];
    // Per line: field 0 = start, 1 = end, 2 = rest of line.
    let (mut field, mut start, mut end) = (0u8, 0usize, 0usize);
    let mut found = None;
    let mut offset = 0;
    'read: loop {
        let n = pread(fd, &mut buf, offset);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        offset += n as usize;
        for &c in &buf[..n as usize] {
            match (field, c) {
                (_, b'\n') => {
                    (field, start, end) = (0, 0, 0);
                }
                (0, b'-') => field = 1,
                (1, b' ') => {
                    field = 2;
                    if start <= addr && addr < end {
                        found = Some((start, end));
                        break 'read;
                    }
                }
                (0 | 1, _) => {
                    let d = match c {
                        b'0'..=b'9' => c - b'0',
                        b'a'..=b'f' => c - b'a' + 10,
                        _ => 0,
                    } as usize;
                    if field == 0 {
                        start = start.wrapping_mul(16) + d;
                    } else {
                        end = end.wrapping_mul(16) + d;
                    }
                }
                _ => {}
            }
        }
    }
    drop(file);
    found
}

/// A directory or file of `/proc/self` that the agent keeps open, so that it can still read it
/// when the program has used up its descriptors.
///
/// A server that leaks descriptors, or runs at its limit under load, gets `EMFILE` from every
/// `open`, and so would the agent: a window starting then could neither list the threads to
/// sample nor read the memory map that names their code. The continuous mode therefore keeps
/// one descriptor of `/proc/self/maps` and one of `/proc/self/task` ([`Kept::keep`], above the
/// program's numbers like every descriptor the agent keeps), and readers borrow it
/// ([`Kept::open`]). A reader that finds it borrowed (by a signal handler under which it runs, by
/// the wall sampler for a whole window) opens a descriptor of its own for the while, as every
/// reader does when none is kept. Two descriptors for the life of the process, whatever it does.
///
/// `/proc/self` named the process that opened it: a forked child closes its copies
/// ([`forget_kept_in_child`], from the continuous mode's child handler), and a reader checks the
/// process anyway. A program that closed the number and reused it (a daemon closing every
/// descriptor at start) is told apart by device and inode, and the number is left to it.
pub(crate) struct Kept {
    path: &'static core::ffi::CStr,
    flags: i32,
    fd: core::sync::atomic::AtomicI32,
    /// The process the descriptor belongs to.
    pid: core::sync::atomic::AtomicU32,
    /// What the descriptor refers to.
    identity: Identity,
    /// A reader holds the descriptor (its file position is the reader's).
    busy: core::sync::atomic::AtomicBool,
}

/// `/proc/self/maps`, kept.
pub(crate) static MAPS: Kept = Kept::new(c"/proc/self/maps", libc::O_RDONLY);
/// `/proc/self/task`, kept.
pub(crate) static TASK: Kept = Kept::new(c"/proc/self/task", libc::O_RDONLY | libc::O_DIRECTORY);

/// A [`Kept`] file open for reading from its start: the kept descriptor, borrowed until this is
/// dropped, or one of its own, closed then.
pub(crate) struct ProcFile {
    fd: i32,
    kept: Option<&'static Kept>,
}

impl ProcFile {
    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for ProcFile {
    fn drop(&mut self) {
        match self.kept {
            Some(k) => k.busy.store(false, core::sync::atomic::Ordering::Release),
            None => close(self.fd),
        }
    }
}

impl Kept {
    const fn new(path: &'static core::ffi::CStr, flags: i32) -> Kept {
        use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32};
        Kept {
            path,
            flags,
            fd: AtomicI32::new(-1),
            pid: AtomicU32::new(0),
            identity: Identity::unknown(),
            busy: AtomicBool::new(false),
        }
    }

    /// Opens the descriptor to keep, unless this process keeps one already (or a reader holds
    /// it). Called where no `fork` can run meanwhile (the continuous mode's descriptor sections).
    pub(crate) fn keep(&self) {
        use core::sync::atomic::Ordering;
        if self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return;
        }
        // None, or a number the program took over: that one is the program's now.
        if !self.valid()
            && let Some((fd, id)) = open_identified(self.path, self.flags, 0)
        {
            self.identity.set(Some(id));
            self.pid.store(std::process::id(), Ordering::Relaxed);
            self.fd.store(fd, Ordering::Relaxed);
        }
        self.busy.store(false, Ordering::Release);
    }

    /// Whether the kept descriptor is this process's and still this file (the caller holds it).
    fn valid(&self) -> bool {
        use core::sync::atomic::Ordering;
        let fd = self.fd.load(Ordering::Relaxed);
        fd >= 0 && self.pid.load(Ordering::Relaxed) == std::process::id() && self.identity.is(fd)
    }

    /// The file: the kept descriptor if it is free, else a new one (`None` if that cannot be
    /// opened). A file is read with `pread` (its position is never moved); a directory is
    /// rewound to its start. Async-signal-safe.
    pub(crate) fn open(&'static self) -> Option<ProcFile> {
        use core::sync::atomic::Ordering;
        if self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            let fd = self.fd.load(Ordering::Relaxed);
            let directory = self.flags & libc::O_DIRECTORY != 0;
            // SAFETY: `fd` is the kept descriptor (checked by `valid`), which this reader holds.
            if self.valid() && (!directory || unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } == 0) {
                return Some(ProcFile { fd, kept: Some(self) });
            }
            self.busy.store(false, Ordering::Release);
        }
        // Above the program's numbers too: the wall sampler holds its directory for a window.
        let fd = open_kept(self.path, self.flags, 0);
        (fd >= 0).then_some(ProcFile { fd, kept: None })
    }
}

/// In a forked child (async-signal-safe, the only thread): closes the copies of the parent's
/// kept descriptors, which name the parent's `/proc` files.
pub(crate) fn forget_kept_in_child() {
    use core::sync::atomic::Ordering;
    for k in [&MAPS, &TASK] {
        let fd = k.fd.swap(-1, Ordering::SeqCst);
        if fd >= 0 && k.identity.is(fd) {
            close(fd);
        }
        k.busy.store(false, Ordering::SeqCst);
    }
}
