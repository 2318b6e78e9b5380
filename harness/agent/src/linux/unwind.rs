//! The frame-pointer unwinder shared by the CPU signal handler and the allocation hooks.
//!
//! Owns the rules that make a walk safe on code without frame pointers (glibc): a frame
//! pointer is followed only if it is 8-aligned, strictly above the previous one and inside the
//! thread's stack `[max(lo, sp), hi)`, so a garbage register is never dereferenced outside
//! memory known to be mapped. It reads registers, never allocates and never locks.

use core::ffi::c_void;

/// The part of a thread's stack that may be read: `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Lowest address of the stack.
    pub lo: usize,
    /// One past the highest address of the stack.
    pub hi: usize,
}

impl Bounds {
    /// Whether `addr` lies in the stack.
    pub fn contains(&self, addr: usize) -> bool {
        self.lo <= addr && addr < self.hi
    }
}

/// Registers of an interrupted context.
#[derive(Debug, Clone, Copy)]
pub struct Regs {
    /// Instruction pointer.
    pub pc: usize,
    /// Frame pointer (`rbp` / `x29`).
    pub fp: usize,
    /// Stack pointer.
    pub sp: usize,
}

impl Regs {
    /// Reads the registers saved in a signal handler's `ucontext_t`.
    ///
    /// # Safety
    /// `ctx` must be the third argument of an `SA_SIGINFO` handler.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn from_ucontext(ctx: *mut c_void) -> Self {
        // SAFETY: the kernel passes a valid `ucontext_t` (caller's contract).
        let g = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        Self {
            pc: g[libc::REG_RIP as usize] as usize,
            fp: g[libc::REG_RBP as usize] as usize,
            sp: g[libc::REG_RSP as usize] as usize,
        }
    }

    /// Reads the registers saved in a signal handler's `ucontext_t`.
    ///
    /// # Safety
    /// `ctx` must be the third argument of an `SA_SIGINFO` handler.
    #[cfg(target_arch = "aarch64")]
    pub unsafe fn from_ucontext(ctx: *mut c_void) -> Self {
        // SAFETY: the kernel passes a valid `ucontext_t` (caller's contract).
        let m = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext };
        Self { pc: m.pc as usize, fp: m.regs[29] as usize, sp: m.sp as usize }
    }
}

/// The caller's frame pointer. Inlined into the function that calls it, so with frame
/// pointers on it is that function's own frame: `*(fp + 8)` is its return address.
#[inline(always)]
pub fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register, touches no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: reads a register, touches no memory.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}

/// Where an interposed function (an allocation hook) stands: its frame and stack pointers, read
/// in its body by [`caller`]. Stack walks from inside the hook keep what is above it: its caller
/// and the caller's callers.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The hook's frame pointer (with frame pointers, `*(fp + 8)` is its return address).
    pub fp: usize,
    /// The hook's stack pointer: frames of its callees lie at or below it.
    pub sp: usize,
}

/// The [`Caller`] of the function this is inlined into.
#[inline(always)]
pub fn caller() -> Caller {
    Caller { fp: frame_pointer(), sp: stack_pointer() }
}

/// The instruction pointer, stack pointer and frame pointer at the point where this is inlined,
/// read together, so that they describe one context to unwind from.
#[inline(always)]
pub fn registers() -> (usize, usize, usize) {
    let (pc, sp, fp): (usize, usize, usize);
    // SAFETY: reads registers, touches no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        )
    };
    // SAFETY: reads registers, touches no memory.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "adr {pc}, .", "mov {sp}, sp", "mov {fp}, x29",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        )
    };
    (pc, sp, fp)
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register, touches no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: reads a register, touches no memory.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// Where a walk starts: a context of the calling thread and what to leave out.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Instruction pointer (not stored: the caller records it as the leaf), or a return address
    /// (see `at_return`).
    pub pc: usize,
    /// Stack pointer.
    pub sp: usize,
    /// Frame pointer.
    pub fp: usize,
    /// The thread's stack.
    pub bounds: Bounds,
    /// Frames whose canonical frame address is at or below this are not stored: an allocation
    /// hook passes the stack pointer of the interposed function, so that only its caller and what
    /// is above remain (0: keep every frame).
    pub skip_below: usize,
    /// `pc` is a return address, `sp` and `fp` those of the frame it returns to: the walk starts
    /// in a function that made a call (its rule looked up at `pc - 1`, as a call's), never in a
    /// leaf interrupted before its frame was made.
    pub at_return: bool,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Return addresses stored.
    pub frames: usize,
    /// The walk did not reach the stack's root (an unreadable frame, no unwind rule, the
    /// output's capacity).
    pub truncated: bool,
}

/// Walks the unwind tables from `start` into `out` (see `cfi`), keeping the last slot for
/// [`crate::format::TRUNCATED_FRAME`], which ends a stack the walk could not finish; returns the
/// frames stored. `None` when the tables are not loaded or no cache is free: the caller walks frame
/// pointers instead. Allocation-free and lock-free.
pub(crate) fn walk_tables(start: Start, out: &mut [u64]) -> Option<usize> {
    let room = out.len().checked_sub(1)?;
    let w = crate::cfi::walk(start, &mut out[..room])?;
    if w.truncated {
        out[w.frames] = crate::format::TRUNCATED_FRAME;
        return Some(w.frames + 1);
    }
    Some(w.frames)
}

/// Walks the frame-pointer chain starting at `fp` and stores return addresses into `out`;
/// returns how many were stored.
///
/// `sp` is the stack pointer of the walked context: frames live above it, so the walk reads
/// only `[max(bounds.lo, sp), bounds.hi)`, memory that is mapped while the thread runs. When
/// `sp` is outside `bounds` (an alternate signal stack, a coroutine stack) nothing is read.
pub fn walk(fp: usize, sp: usize, bounds: Bounds, out: &mut [u64]) -> usize {
    if !bounds.contains(sp) {
        return 0;
    }
    let lo = bounds.lo.max(sp);
    let mut fp = fp;
    let mut prev = 0usize;
    let mut n = 0;
    while n < out.len() {
        if !fp.is_multiple_of(8)
            || fp < lo
            || fp <= prev
            || fp.checked_add(16).is_none_or(|end| end > bounds.hi)
        {
            break;
        }
        // SAFETY: `[fp, fp + 16)` lies inside the live part of this thread's stack (checked
        // above), which is mapped and readable; volatile because a signal may have
        // interrupted the code that writes these slots.
        let (next, ret) = unsafe {
            (core::ptr::read_volatile(fp as *const usize), core::ptr::read_volatile((fp + 8) as *const usize))
        };
        if ret == 0 {
            break;
        }
        out[n] = ret as u64;
        n += 1;
        prev = fp;
        fp = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a fake stack of frame records `[next_fp, ret]` and returns (stack, bounds).
    fn fake_stack(links: &[(usize, u64)]) -> (Vec<usize>, usize) {
        let mut s = vec![0usize; links.len() * 2];
        let base = s.as_ptr() as usize;
        for (i, &(next, ret)) in links.iter().enumerate() {
            s[i * 2] = if next == usize::MAX { 0 } else { base + next * 16 };
            s[i * 2 + 1] = ret as usize;
        }
        (s, base)
    }

    #[test]
    fn walks_a_chain_and_stops_at_a_zero_return() {
        let (s, base) = fake_stack(&[(1, 0x10), (2, 0x20), (usize::MAX, 0)]);
        let b = Bounds { lo: base, hi: base + s.len() * 8 };
        let mut out = [0u64; 8];
        assert_eq!(walk(base, base, b, &mut out), 2);
        assert_eq!(&out[..2], &[0x10, 0x20]);
    }

    #[test]
    fn refuses_loops_misalignment_and_out_of_bounds() {
        // Frame 1 points back to frame 0: the walk must stop instead of looping.
        let (s, base) = fake_stack(&[(1, 0x10), (0, 0x20)]);
        let b = Bounds { lo: base, hi: base + s.len() * 8 };
        let mut out = [0u64; 8];
        assert_eq!(walk(base, base, b, &mut out), 2);
        assert_eq!(walk(base + 4, base, b, &mut out), 0);
        assert_eq!(walk(base + 4096, base, b, &mut out), 0);
        // A stack pointer outside the bounds reads nothing.
        assert_eq!(walk(base, base + 4096, b, &mut out), 0);
        // Frames below the stack pointer are dead.
        assert_eq!(walk(base, base + 16, b, &mut out), 0);
    }

    #[test]
    fn stops_at_the_output_capacity() {
        let (s, base) = fake_stack(&[(1, 1), (2, 2), (3, 3), (usize::MAX, 4)]);
        let b = Bounds { lo: base, hi: base + s.len() * 8 };
        let mut out = [0u64; 2];
        assert_eq!(walk(base, base, b, &mut out), 2);
    }
}
