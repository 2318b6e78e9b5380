//! Encodes records of the raw file ([`crate::format`]) and appends them to the output file.
//!
//! Owns the output file descriptor. Every function here builds its record in a stack buffer
//! (or an anonymous mapping for the maps text) and appends it with one `write(2)`, so all of
//! them may run in a signal handler; none allocates or locks.
//!
//! The descriptor lives above the program's ([`sys::keep_high`]), but a program may still close
//! it (daemons close every descriptor at start) and then reuse its number for a file or a socket
//! of its own. So every write first checks that the descriptor is still the output file (its
//! device and inode); if it is not, the number is left to the program and the file is opened
//! again by its path (kept at start), in append mode: the record lands where it belongs, never in
//! the program's file. Between the check and the write the program would have to close and reuse
//! that number within microseconds; that race is the one left.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::format::{
    self, EndRecord, KIND_ALLOC_STACK, KIND_CONTENTION_STACK, KIND_END, KIND_LABEL_SET, KIND_LABELS,
    KIND_MAPS, KIND_MESSAGE, KIND_THREAD_NAME, KIND_WORK, MAX_FRAMES,
};
use crate::sys;

/// The raw file, or -1 when the agent is not running.
static FD: AtomicI32 = AtomicI32::new(-1);
/// What the output descriptor refers to.
static OUTPUT: sys::Identity = sys::Identity::unknown();
/// A writer is opening the file again (the others drop their record meanwhile).
static REOPENING: AtomicBool = AtomicBool::new(false);

/// The output file's path, NUL-terminated, for opening it again.
struct Path(UnsafeCell<[u8; PATH_MAX]>);
const PATH_MAX: usize = 4096;
// SAFETY: written by `set_output` before the descriptor is published (`FD`, release), read only
// while a descriptor is published.
unsafe impl Sync for Path {}
static PATH: Path = Path(UnsafeCell::new([0; PATH_MAX]));

/// Installs the output descriptor (the agent owns it from now on) of the file at `path`.
pub(crate) fn set_output(fd: i32, path: &core::ffi::CStr) {
    let bytes = path.to_bytes_with_nul();
    // SAFETY: no descriptor is published (the agent is starting), so nothing reads `PATH`.
    unsafe {
        let buf = &mut *PATH.0.get();
        let n = bytes.len().min(PATH_MAX);
        buf[..n].copy_from_slice(&bytes[..n]);
        buf[PATH_MAX - 1] = 0;
    }
    OUTPUT.record(fd);
    FD.store(fd, Ordering::SeqCst);
}

/// Stops writing and closes the output descriptor, if it is still the output file (a number the
/// program reused after closing ours is the program's). Async-signal-safe.
pub(crate) fn close_output() {
    let fd = FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 && OUTPUT.is(fd) {
        sys::close(fd);
    }
}

/// The output file's length now (`None` when it is not open).
pub(crate) fn length() -> Option<u64> {
    let fd = checked_fd();
    if fd < 0 {
        return None;
    }
    // SAFETY: `stat` is plain data; the kernel fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid out-pointer; a raw system call.
    (unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) } == 0)
        .then_some(st.st_size as u64)
}

/// Cuts the file at `path` to `len` bytes (the end record of a recording that resumes).
pub(crate) fn truncate_file(path: &core::ffi::CStr, len: u64) -> bool {
    // SAFETY: a NUL-terminated path; a raw system call.
    unsafe { libc::syscall(libc::SYS_truncate, path.as_ptr(), len as libc::off_t) == 0 }
}

/// The output descriptor, checked to be the output file still (see the module docs); -1 when
/// there is none or it is being opened again.
fn checked_fd() -> i32 {
    let fd = FD.load(Ordering::Acquire);
    if fd < 0 {
        return -1;
    }
    if OUTPUT.is(fd) {
        return fd;
    }
    // The program closed it: the number is the program's now. Open the file again, once.
    if REOPENING.swap(true, Ordering::AcqRel) {
        return -1;
    }
    // SAFETY: `PATH` was written before `FD` was published.
    let path = unsafe { core::ffi::CStr::from_bytes_until_nul(&*PATH.0.get()) };
    let again = match path {
        Ok(p) => sys::open_kept(p, libc::O_WRONLY | libc::O_APPEND, 0),
        Err(_) => -1,
    };
    let reopened = if again >= 0 && OUTPUT.is(again) {
        again
    } else {
        if again >= 0 {
            sys::close(again);
        }
        -1
    };
    // Only if no one stopped the writer meanwhile.
    if FD.compare_exchange(fd, reopened, Ordering::AcqRel, Ordering::Acquire).is_err() && reopened >= 0 {
        sys::close(reopened);
    }
    REOPENING.store(false, Ordering::Release);
    FD.load(Ordering::Acquire)
}

/// Two `u32` fields packed as one native-endian word, as the format lays them out.
pub(crate) fn pair(a: u32, b: u32) -> u64 {
    let mut w = [0u8; 8];
    w[..4].copy_from_slice(&a.to_ne_bytes());
    w[4..].copy_from_slice(&b.to_ne_bytes());
    u64::from_ne_bytes(w)
}

/// Appends whole words; false if the agent is stopped or the write failed.
pub(crate) fn emit(words: &[u64]) -> bool {
    let fd = checked_fd();
    if fd < 0 {
        return false;
    }
    // SAFETY: any initialised `[u64]` may be viewed as bytes.
    let bytes = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    sys::write_once(fd, bytes)
}

/// Appends raw bytes (the header, the maps text).
pub(crate) fn emit_bytes(bytes: &[u8]) -> bool {
    let fd = checked_fd();
    fd >= 0 && sys::write_once(fd, bytes)
}

/// Copies `text` after two leading words into `buf` and returns the record length in words.
fn text_record(buf: &mut [u64], kind: u32, a: u32, text: &[u8]) -> usize {
    let room = (buf.len() - 2) * 8;
    let text = &text[..text.len().min(room)];
    buf[0] = pair(kind, (8 + format::pad8(text.len())) as u32);
    buf[1] = pair(a, text.len() as u32);
    for (i, chunk) in text.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        buf[2 + i] = u64::from_ne_bytes(w);
    }
    2 + format::pad8(text.len()) / 8
}

/// Writes a [`KIND_THREAD_NAME`] record.
pub(crate) fn write_thread_name(tid: u32, name: &[u8]) -> bool {
    let mut buf = [0u64; 4];
    let n = text_record(&mut buf, KIND_THREAD_NAME, tid, name);
    emit(&buf[..n])
}

/// Writes a [`KIND_MESSAGE`] record (text cut at 1 KiB).
pub(crate) fn write_message(level: u32, text: &str) -> bool {
    let mut buf = [0u64; 130];
    let n = text_record(&mut buf, KIND_MESSAGE, level, text.as_bytes());
    emit(&buf[..n])
}

/// [`write_message`] of a text formatted into a stack buffer ([`FixedText`]: no allocation; cut
/// at its size).
pub(crate) fn write_message_fmt(level: u32, text: core::fmt::Arguments<'_>) -> bool {
    let mut m = FixedText::new();
    let _ = core::fmt::Write::write_fmt(&mut m, text);
    write_message(level, m.as_str())
}

/// Writes a [`KIND_END`] record.
pub(crate) fn write_end(end: &EndRecord) -> bool {
    let mut buf = [0u64; 1 + EndRecord::FIELDS];
    buf[0] = pair(KIND_END, (EndRecord::FIELDS * 8) as u32);
    buf[1..].copy_from_slice(&end.to_words());
    emit(&buf)
}

/// Most words of a [`KIND_LABELS`] record (with trace ids).
pub(crate) const LABELS_WORDS: usize = 5;

/// Puts the [`KIND_LABELS`] record of `set` and `trace` (span id, trace id high and low word) at
/// the end of the first [`LABELS_WORDS`] words of `buf`, right before the record it belongs to;
/// returns where the bytes to write start: [`LABELS_WORDS`] when there is nothing to say.
pub(crate) fn labels_prefix(buf: &mut [u64], set: u32, trace: [u64; 3]) -> usize {
    if trace != [0; 3] {
        buf[0] = pair(KIND_LABELS, 32);
        buf[1] = pair(set, 0);
        buf[2..5].copy_from_slice(&trace);
        return 0;
    }
    if set == 0 {
        return LABELS_WORDS;
    }
    buf[3] = pair(KIND_LABELS, 8);
    buf[4] = pair(set, 0);
    3
}

/// Writes a stack record of `kind` ([`format::KIND_CPU_SAMPLE`], [`format::KIND_THREAD_STACK`],
/// [`format::KIND_WALL_STACK`] with its `weight`) for thread `tid` with label set `labels` and
/// trace ids `trace`:
/// `frames` is the instruction pointer, then return addresses.
pub(crate) fn write_stack(
    kind: u32,
    tid: u32,
    weight: Option<u64>,
    labels: u32,
    trace: [u64; 3],
    frames: &[u64],
) -> bool {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let mut buf = [0u64; LABELS_WORDS + 3 + MAX_FRAMES];
    let from = labels_prefix(&mut buf, labels, trace);
    let b = &mut buf[LABELS_WORDS..];
    let at = 2 + usize::from(weight.is_some());
    if let Some(w) = weight {
        b[2] = w;
    }
    b[at..at + frames.len()].copy_from_slice(frames);
    b[0] = pair(kind, ((at - 1) * 8 + frames.len() * 8) as u32);
    b[1] = pair(tid, frames.len() as u32);
    emit(&buf[from..LABELS_WORDS + at + frames.len()])
}

/// Writes a [`KIND_ALLOC_STACK`] record; `counts` = alloc count, alloc bytes, in-use count,
/// in-use bytes; `labels`: the label set the allocations were made under.
pub(crate) fn write_alloc_stack(counts: [u64; 4], labels: u32, frames: &[u64]) -> bool {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let mut buf = [0u64; LABELS_WORDS + 6 + MAX_FRAMES];
    let from = labels_prefix(&mut buf, labels, [0; 3]);
    let b = &mut buf[LABELS_WORDS..];
    b[0] = pair(KIND_ALLOC_STACK, (40 + frames.len() * 8) as u32);
    b[1..5].copy_from_slice(&counts);
    b[5] = pair(frames.len() as u32, 0);
    b[6..6 + frames.len()].copy_from_slice(frames);
    emit(&buf[from..LABELS_WORDS + 6 + frames.len()])
}

/// Writes a [`KIND_CONTENTION_STACK`] record; `waits` = estimated waits, nanoseconds waited;
/// `labels`: the label set of the waiting threads.
pub(crate) fn write_contention_stack(waits: [u64; 2], labels: u32, frames: &[u64]) -> bool {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let mut buf = [0u64; LABELS_WORDS + 4 + MAX_FRAMES];
    let from = labels_prefix(&mut buf, labels, [0; 3]);
    let b = &mut buf[LABELS_WORDS..];
    b[0] = pair(KIND_CONTENTION_STACK, (24 + frames.len() * 8) as u32);
    b[1..3].copy_from_slice(&waits);
    b[3] = pair(frames.len() as u32, 0);
    b[4..4 + frames.len()].copy_from_slice(frames);
    emit(&buf[from..LABELS_WORDS + 4 + frames.len()])
}

/// Writes the work counted per label set since the file opened ([`KIND_WORK`] records), and
/// starts the counts at zero again.
pub(crate) fn write_work() {
    crate::labels::work::take(|set, units| {
        emit(&[pair(KIND_WORK, 16), pair(set, 0), units]);
    });
}

/// Writes a [`KIND_LABEL_SET`] record for set `id` with encoding `set` (if a file is open).
pub(crate) fn write_label_set(id: u32, set: &[u8]) -> bool {
    let mut buf = [0u64;
        2 + crate::labels::MAX_PAIRS * (4 + crate::labels::MAX_KEY + crate::labels::MAX_VALUE) / 8 + 1];
    let n = text_record(&mut buf, KIND_LABEL_SET, id, set);
    emit(&buf[..n])
}

/// Writes every label set interned so far (at the start of each file: a set is written to the
/// file open when it is made, and to every later file here).
pub(crate) fn write_label_sets() {
    for id in 1..crate::labels::published() {
        write_label_set(id, crate::labels::encoded(id));
    }
}

/// Writes a [`KIND_MAPS`] record with the current `/proc/self/maps`.
pub(crate) fn write_maps() -> bool {
    let Some(mut buf) = sys::Mapping::new(1 << 20) else { return false };
    let Some(len) = sys::read_maps(&mut buf, 8) else { return false };
    let padded = format::pad8(len);
    if 8 + padded > buf.len() || padded > u32::MAX as usize {
        return false;
    }
    let bytes = buf.bytes_mut();
    bytes[..8].copy_from_slice(&pair(KIND_MAPS, padded as u32).to_ne_bytes());
    // The mapping is zeroed, so the padding already reads as NUL bytes.
    emit_bytes(&bytes[..8 + padded])
}

/// A message formatted into a fixed buffer (for contexts where `format!` may not allocate).
pub(crate) struct FixedText {
    buf: [u8; 256],
    len: usize,
}

impl FixedText {
    pub(crate) fn new() -> Self {
        Self { buf: [0; 256], len: 0 }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Write for FixedText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_records_are_padded_and_cut() {
        let mut buf = [0u64; 4];
        let n = text_record(&mut buf, KIND_THREAD_NAME, 7, b"worker-1");
        assert_eq!(n, 3);
        assert_eq!(buf[0], pair(KIND_THREAD_NAME, 16));
        let n = text_record(&mut buf, KIND_THREAD_NAME, 7, b"a name longer than sixteen bytes");
        assert_eq!(n, 4);
        assert_eq!(buf[1], pair(7, 16));
    }
}
