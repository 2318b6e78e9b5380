//! Encodes records of the raw file ([`crate::format`]) and appends them to the output file.
//!
//! Owns the output file descriptor. Every function here builds its record in a stack buffer
//! (or an anonymous mapping for the maps text) and appends it with one `write(2)`, so all of
//! them may run in a signal handler; none allocates or locks.

use core::sync::atomic::{AtomicI32, Ordering};

use crate::format::{
    self, EndRecord, KIND_ALLOC_STACK, KIND_CONTENTION_STACK, KIND_END, KIND_MAPS, KIND_MESSAGE,
    KIND_THREAD_NAME, MAX_FRAMES,
};
use crate::sys;

/// The raw file, or -1 when the agent is not running.
static FD: AtomicI32 = AtomicI32::new(-1);

/// Installs the output descriptor (the agent owns it from now on).
pub(crate) fn set_fd(fd: i32) {
    FD.store(fd, Ordering::SeqCst);
}

/// Takes the output descriptor back (nothing is written after this).
pub(crate) fn take_fd() -> i32 {
    FD.swap(-1, Ordering::SeqCst)
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
    let fd = FD.load(Ordering::Acquire);
    if fd < 0 {
        return false;
    }
    // SAFETY: any initialised `[u64]` may be viewed as bytes.
    let bytes = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    sys::write_once(fd, bytes)
}

/// Appends raw bytes (the header, the maps text).
pub(crate) fn emit_bytes(bytes: &[u8]) -> bool {
    let fd = FD.load(Ordering::Acquire);
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

/// Writes a [`KIND_END`] record.
pub(crate) fn write_end(end: &EndRecord) -> bool {
    let mut buf = [0u64; 1 + EndRecord::FIELDS];
    buf[0] = pair(KIND_END, (EndRecord::FIELDS * 8) as u32);
    buf[1..].copy_from_slice(&end.to_words());
    emit(&buf)
}

/// Writes a [`KIND_ALLOC_STACK`] record; `counts` = alloc count, alloc bytes, in-use count,
/// in-use bytes.
pub(crate) fn write_alloc_stack(counts: [u64; 4], frames: &[u64]) -> bool {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let mut buf = [0u64; 6 + MAX_FRAMES];
    buf[0] = pair(KIND_ALLOC_STACK, (40 + frames.len() * 8) as u32);
    buf[1..5].copy_from_slice(&counts);
    buf[5] = pair(frames.len() as u32, 0);
    buf[6..6 + frames.len()].copy_from_slice(frames);
    emit(&buf[..6 + frames.len()])
}

/// Writes a [`KIND_CONTENTION_STACK`] record; `waits` = estimated waits, nanoseconds waited.
pub(crate) fn write_contention_stack(waits: [u64; 2], frames: &[u64]) -> bool {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let mut buf = [0u64; 4 + MAX_FRAMES];
    buf[0] = pair(KIND_CONTENTION_STACK, (24 + frames.len() * 8) as u32);
    buf[1..3].copy_from_slice(&waits);
    buf[3] = pair(frames.len() as u32, 0);
    buf[4..4 + frames.len()].copy_from_slice(frames);
    emit(&buf[..4 + frames.len()])
}

/// Writes a [`KIND_MAPS`] record with the current `/proc/self/maps`.
pub(crate) fn write_maps() -> bool {
    let Some(mut buf) = sys::Mapping::new(1 << 20) else { return false };
    let Some(len) = sys::read_proc_file(c"/proc/self/maps", &mut buf, 8) else { return false };
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
