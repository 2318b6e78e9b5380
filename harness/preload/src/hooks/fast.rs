//! The x86-64 entry points of `malloc`, `realloc` and `free`: the three functions an
//! allocation-heavy Rust program calls millions of times a second (serde_json's round trips: about
//! 9 million `malloc`/`free` pairs per second), each a few instructions before it jumps to glibc.
//!
//! They decide what the Rust interposers decide (`allocation!`, and the Rust `realloc` and
//! `free` that other architectures use), written as naked functions because what the compiler
//! adds around the same decision is most of its cost: a frame (`push %rbp`, `mov`,
//! `pop`) that a function which only ever jumps away does not need, and the thread pointer read
//! separately from the thread state's offset. Here:
//! - `malloc`: the flags byte; off, forward; sampled, move the thread's countdown
//!   ([`COUNTDOWN_AT`] in the state at `thread_state_symbol!()`, initial-exec TLS) and count the
//!   call, forward unless it ran out; every other case jumps to the recording twin, which decides.
//! - `free`: one load from [`SUSPECT_AT`] by the pointer's low byte, tested against the
//!   flags; only a suspect pointer (one that may carry a header, or any pointer while the exact
//!   mode tracks pointers or frames are marked) goes to the recording twin, which tells.
//! - `realloc`: the test of `free`, then the decision of `malloc` on the new size.
//!
//! Everything but the forwarded call goes to a recording twin, never to another function of this
//! library: the instructions engine charges glibc's allocator to the program only under an
//! interposer or a twin (a function it cannot name as one, such as a Rust helper, makes glibc's
//! work the agent's, and took 27% off the program's total when `free` jumped to one).
//!
//! No frame means that a CPU sample taken on one of these instructions finds the return address
//! at the stack pointer, not behind a frame pointer: the directives below give the unwind tables'
//! rule (the caller's frame is unchanged), which the agent's table walk reads; a frame-pointer
//! walk misses the direct caller of such a sample (a few instructions per call). `__libc_*` are
//! reached through the global offset table, as are the twins (exported, so that symbolizers name
//! them).

use core::arch::naked_asm;
use core::ffi::c_void;

use contprof::preload::alloc::{CALLS_AT, COUNTDOWN_AT, SAMPLED};

use super::{__libc_free, __libc_malloc, __libc_realloc, recording};
use crate::flags::{FLAGS, HOOKS_MASK};
use crate::header::SUSPECT_AT;

/// The sampled mode's fast path, for the size in `$size`: moves the thread's countdown by it and
/// counts the call, or jumps to `3:` (the twin) when the countdown runs out, leaving it as it
/// was (the twin's `decide` moves it). Uses `%rax` and `%rcx`; the caller binds `countdown` and
/// `calls`.
macro_rules! countdown {
    ($size:literal) => {
        concat!(
            "movq ",
            contprof::thread_state_symbol!(),
            "@GOTTPOFF(%rip), %rax\n",
            "movq %fs:{countdown}(%rax), %rcx\n",
            "subq ",
            $size,
            ", %rcx\n",
            "testq %rcx, %rcx\n",
            "jle 3f\n",
            "movq %rcx, %fs:{countdown}(%rax)\n",
            "incq %fs:{calls}(%rax)",
        )
    };
}

/// Interposes `malloc`.
///
/// # Safety
/// The contract of `malloc(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    naked_asm!(
        ".cfi_startproc",
        "movzbl {flags}(%rip), %eax",
        "andl ${mask}, %eax",
        "jz 2f",
        "cmpl ${sampled}, %eax",
        "jne 3f",
        countdown!("%rdi"),
        "2:",
        "jmp *{real}@GOTPCREL(%rip)",
        "3:",
        "jmp *{twin}@GOTPCREL(%rip)",
        ".cfi_endproc",
        flags = sym FLAGS,
        mask = const HOOKS_MASK,
        sampled = const SAMPLED,
        countdown = const COUNTDOWN_AT,
        calls = const CALLS_AT,
        real = sym __libc_malloc,
        twin = sym recording::malloc,
        options(att_syntax)
    )
}

/// Interposes `free`.
///
/// # Safety
/// The contract of `free(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    naked_asm!(
        ".cfi_startproc",
        "movzbl %dil, %eax",
        "leaq {suspect}(%rip), %rcx",
        "movzbl (%rcx,%rax), %eax",
        "testb %al, {flags}(%rip)",
        "jnz 2f",
        "jmp *{real}@GOTPCREL(%rip)",
        "2:",
        "jmp *{twin}@GOTPCREL(%rip)",
        ".cfi_endproc",
        suspect = sym SUSPECT_AT,
        flags = sym FLAGS,
        real = sym __libc_free,
        twin = sym recording::free,
        options(att_syntax)
    )
}

/// Interposes `realloc`.
///
/// # Safety
/// The contract of `realloc(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    naked_asm!(
        ".cfi_startproc",
        "movzbl %dil, %eax",
        "leaq {suspect}(%rip), %rcx",
        "movzbl (%rcx,%rax), %ecx",
        "movzbl {flags}(%rip), %eax",
        "testb %cl, %al",
        "jnz 3f",
        "andl ${mask}, %eax",
        "jz 2f",
        "cmpl ${sampled}, %eax",
        "jne 3f",
        countdown!("%rsi"),
        "2:",
        "jmp *{real}@GOTPCREL(%rip)",
        "3:",
        "jmp *{twin}@GOTPCREL(%rip)",
        ".cfi_endproc",
        suspect = sym SUSPECT_AT,
        flags = sym FLAGS,
        mask = const HOOKS_MASK,
        sampled = const SAMPLED,
        countdown = const COUNTDOWN_AT,
        calls = const CALLS_AT,
        real = sym __libc_realloc,
        twin = sym recording::realloc,
        options(att_syntax)
    )
}
