//! The stack of another thread of the process that is blocked in a system call, taken without
//! signalling it.
//!
//! A signal to a thread blocked in `nanosleep`, `epoll_wait`, `poll`, `sem_wait` and the other
//! calls that never restart after a handler makes the call fail with `EINTR`: the program would
//! see the agent. The wall sampler and the thread snapshot need the stacks of exactly such
//! threads, and those threads sit still. So, from the sampler's or the snapshot's own thread:
//! - `/proc/self/task/<tid>/syscall` says whether the thread is blocked in a system call and
//!   where (its stack pointer and instruction pointer; the kernel answers only for a thread that
//!   is not running);
//! - its stack is read with `process_vm_readv` on the process itself (a read of memory that is
//!   gone fails with `EFAULT` instead of a fault), a few pages at a time into a buffer of the
//!   caller's, and walked with the unwind tables as the signal handler would;
//! - the pages nearest the call are copied at once, and the file and the thread's CPU clock read
//!   again right after: if the thread ran meanwhile (even to block again at the same place) the
//!   copy may be torn, and the thread is signalled instead. Frames further up, read later if the walk gets there, change
//!   only when the thread returns that far.
//!
//! A thread that runs, or is stopped outside a system call, is signalled as before: it is not in
//! a call that a handler could cut short.

use crate::format::MAX_FRAMES;
use crate::sys;
use crate::unwind::{Bounds, Start};

/// Where a thread blocked in a system call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked {
    nr: i64,
    pub(crate) sp: usize,
    pub(crate) pc: usize,
}

/// Where thread `tid` is blocked, from `/proc/self/task/<tid>/syscall`; `None` when it runs, is
/// not in a system call, or the file cannot be read. Raw system calls and stack buffers only.
pub(crate) fn blocked_at(tid: u32) -> Option<Blocked> {
    let mut buf = [0u8; 256];
    let n = sys::read_task_file(tid, b"syscall", &mut buf)?;
    parse(&buf[..n])
}

/// Thread `tid`'s name (`/proc/self/task/<tid>/comm`) into `out`; its length.
pub(crate) fn name(tid: u32, out: &mut [u8; 16]) -> Option<usize> {
    let mut buf = [0u8; 32];
    let n = sys::read_task_file(tid, b"comm", &mut buf)?;
    let text = &buf[..n];
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let n = text.len().min(16);
    out[..n].copy_from_slice(&text[..n]);
    Some(n)
}

/// Parses the `syscall` file: `nr arg1 .. arg6 sp pc` (numbers in hex after the first).
fn parse(text: &[u8]) -> Option<Blocked> {
    let mut fields = text.split(|c| c.is_ascii_whitespace()).filter(|f| !f.is_empty());
    let nr = core::str::from_utf8(fields.next()?).ok()?.parse::<i64>().ok()?;
    if nr < 0 {
        return None;
    }
    let hex =
        |f: &[u8]| usize::from_str_radix(core::str::from_utf8(f).ok()?.trim_start_matches("0x"), 16).ok();
    let rest: [&[u8]; 8] = core::array::from_fn(|_| fields.next().unwrap_or(b""));
    Some(Blocked { nr, sp: hex(rest[6])?, pc: hex(rest[7])? })
}

/// Pages of another thread's stack, read on demand (see the module docs).
pub(crate) struct StackCopy {
    pages: [[u8; PAGE]; PAGES],
    at: [usize; PAGES],
    next: usize,
}

const PAGE: usize = 4096;
const PAGES: usize = 12;
/// Pages copied at once, right after the thread was seen blocked.
const PREFETCH: usize = 4;

impl StackCopy {
    /// An empty copy (48 KiB: keep it off small stacks, e.g. in a `static` or a thread's frame
    /// of a thread started with room for it).
    pub(crate) const fn new() -> Self {
        StackCopy { pages: [[0; PAGE]; PAGES], at: [usize::MAX; PAGES], next: 0 }
    }

    fn forget(&mut self) {
        self.at = [usize::MAX; PAGES];
        self.next = 0;
    }

    /// Copies the first [`PREFETCH`] pages of the stack from `sp` up, in one system call: the
    /// frames nearest the blocked call, which change first when the thread wakes up. False if
    /// they could not be read.
    fn prefetch(&mut self, sp: usize, bounds: Bounds) -> bool {
        self.forget();
        let first = sp & !(PAGE - 1);
        let pages = ((bounds.hi - first) / PAGE).clamp(1, PREFETCH);
        let mut local = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; PREFETCH];
        for (i, l) in local.iter_mut().enumerate().take(pages) {
            *l = libc::iovec { iov_base: self.pages[i].as_mut_ptr().cast(), iov_len: PAGE };
        }
        let remote = libc::iovec { iov_base: first as *mut libc::c_void, iov_len: pages * PAGE };
        // SAFETY: copies `pages` pages of this process's memory into our buffers; memory that is
        // not mapped makes the call fail (or stop short), it is never touched directly.
        let n =
            unsafe { libc::process_vm_readv(libc::getpid(), local.as_ptr(), pages as u64, &remote, 1, 0) };
        if n < PAGE as isize {
            return false;
        }
        for i in 0..(n as usize / PAGE) {
            self.at[i] = first + i * PAGE;
        }
        self.next = n as usize / PAGE;
        true
    }

    /// The word at `addr` (8-aligned, inside `bounds`), copied from the process's memory.
    fn read(&mut self, addr: usize, bounds: Bounds) -> Option<u64> {
        if !addr.is_multiple_of(8) || addr < bounds.lo || addr.checked_add(8)? > bounds.hi {
            return None;
        }
        let page = addr & !(PAGE - 1);
        let i = match self.at.iter().position(|&a| a == page) {
            Some(i) => i,
            None => {
                let i = self.next % PAGES;
                self.next += 1;
                let local = libc::iovec { iov_base: self.pages[i].as_mut_ptr().cast(), iov_len: PAGE };
                let remote = libc::iovec { iov_base: page as *mut libc::c_void, iov_len: PAGE };
                // SAFETY: copies one page of this process's memory into our buffer; memory that
                // is not mapped makes the call fail, it is never touched directly.
                let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
                if n != PAGE as isize {
                    self.at[i] = usize::MAX;
                    return None;
                }
                self.at[i] = page;
                i
            }
        };
        let off = addr - page;
        Some(u64::from_ne_bytes(self.pages[i][off..off + 8].try_into().ok()?))
    }
}

/// The stack of thread `tid`, blocked at `at` (its CPU clock read `cpu_before` before `at` was
/// read), into `out`: the instruction pointer first, then
/// return addresses, as a signal handler's record would hold them (a truncated walk ends with
/// [`crate::format::TRUNCATED_FRAME`]). `None` when it cannot be taken (no unwind tables, the
/// stack cannot be read, or the thread moved during the walk): signal it instead.
///
/// The kernel gives the stack and instruction pointers of a blocked thread, not its frame
/// pointer. The system call's wrapper (glibc's, the agent's) does not use it, so its caller's
/// frame pointer is still in the register, and a caller whose unwind rule is based on it (code
/// built with frame pointers, the Rust standard library among it) cannot be unwound without it.
/// When the walk stops there, the frame pointer is looked for in the words above the stack
/// pointer: a word that points higher up the stack, followed by a return address into code, is a
/// saved frame pointer and its return address; the candidate whose walk goes furthest is kept.
///
/// `known`: the thread's stack bounds if the caller has them (the mapping that holds the stack
/// pointer is looked up in `/proc/self/maps` otherwise, and returned for next time).
pub(crate) fn stack(
    tid: u32,
    at: Blocked,
    cpu_before: u64,
    known: Option<Bounds>,
    copy: &mut StackCopy,
    out: &mut [u64; MAX_FRAMES],
) -> Option<(usize, Bounds)> {
    let bounds = match known.filter(|b| b.contains(at.sp)) {
        Some(b) => b,
        None => {
            let (lo, hi) = sys::mapping_containing(at.sp)?;
            Bounds { lo, hi }
        }
    };
    // The pages nearest the call, copied at once, then the thread checked to be still blocked
    // there: what the walk reads first is the stack it was blocked on.
    if !copy.prefetch(at.sp, bounds)
        || blocked_at(tid) != Some(at)
        || sys::thread_cpu_ns(tid) != Some(cpu_before)
    {
        return None;
    }
    let walk = |fp: usize, out: &mut [u64; MAX_FRAMES], copy: &mut StackCopy| {
        let start = Start { pc: at.pc, sp: at.sp, fp, bounds, skip_below: 0, at_return: false };
        crate::cfi::walk_reading(start, &mut out[1..MAX_FRAMES - 1], |a| {
            usize::try_from(a).ok().and_then(|a| copy.read(a, bounds)).ok_or(())
        })
    };
    let mut best = walk(0, out, copy)?;
    // A walk stopped by the unknown frame pointer ends as if at the root (a frame pointer of 0
    // marks the outermost frame): short or truncated, look for it.
    if best.truncated || best.frames < 4 {
        let mut other = [0u64; MAX_FRAMES];
        let mut tries = 0;
        let mut a = at.sp;
        while tries < 24 && a < at.sp.saturating_add(SCAN) {
            let (Some(saved), Some(ret)) = (copy.read(a, bounds), copy.read(a + 8, bounds)) else { break };
            let chained = saved == 0 || (saved as usize > a && (saved as usize) < bounds.hi);
            if chained && crate::code::is_code(ret as usize) {
                tries += 1;
                if let Some(w) = walk(a, &mut other, copy)
                    && w.frames > best.frames
                {
                    best = w;
                    out[1..1 + w.frames].copy_from_slice(&other[1..1 + w.frames]);
                    if !w.truncated {
                        break;
                    }
                }
            }
            a += 8;
        }
    }
    out[0] = at.pc as u64;
    let mut n = 1 + best.frames;
    if best.truncated {
        out[n] = crate::format::TRUNCATED_FRAME;
        n += 1;
    }
    Some((n, bounds))
}

/// How far above the stack pointer a saved frame pointer is looked for.
const SCAN: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syscall_file_says_where_a_blocked_thread_is() {
        let blocked = b"230 0x1 0x0 0x7ffc1 0x0 0x0 0x0 0x7f00aa10 0x7f0012345\n";
        assert_eq!(parse(blocked), Some(Blocked { nr: 230, sp: 0x7f00aa10, pc: 0x7f0012345 }));
        assert_eq!(parse(b"running\n"), None);
        assert_eq!(parse(b"-1 0x7f00aa10 0x7f0012345\n"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn a_sleeping_threads_stack_is_taken_without_a_signal() {
        crate::cfi::load();
        crate::code::load();
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(sys::gettid()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(400));
        });
        let tid = rx.recv().unwrap();
        let (cpu, at) = (0..200)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                let cpu = sys::thread_cpu_ns(tid)?;
                Some((cpu, blocked_at(tid)?))
            })
            .expect("the sleeping thread is seen blocked");
        let mut copy = Box::new(StackCopy::new());
        let mut out = [0u64; MAX_FRAMES];
        let (n, _) = stack(tid, at, cpu, None, &mut copy, &mut out).expect("its stack");
        sleeper.join().unwrap();
        // The sleep's frames and the test's above them: every one a return address into code.
        assert!(n >= 5, "{:x?}", &out[..n]);
        assert!(
            out[1..n]
                .iter()
                .filter(|&&a| a != crate::format::TRUNCATED_FRAME)
                .all(|&a| crate::code::is_code(a as usize))
        );
    }
}
