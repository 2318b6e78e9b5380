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
//!   ([`COUNTDOWN_AT`] in the state at `thread_state_symbol!()`, initial-exec TLS), forward
//!   unless it ran out; every other case jumps to the recording twin, which decides.
//! - `free`: the flags byte; until a recorded pointer exists, forward; then the word in front of
//!   the pointer (`tagged!`): a recorded pointer's tag goes to the recording twin, anything else
//!   forwards; any pointer goes to the twin while the exact mode tracks pointers or frames are
//!   marked.
//! - `realloc`: the test of `free`, then the decision of `malloc` on the new size.
//!
//! Each first tests the flags byte in memory for the state that needs nothing more of it:
//! `malloc` and `realloc` compare it with [`SAMPLED`] (the defaults once a recorded pointer
//! exists: sampled, and no other bit), `free` tests that none of
//! [`FREE_BITS`](crate::flags::FREE_BITS) is set (a recorded pointer exists; no tracked pointers,
//! no marked frames), in any mode. `malloc` is then 6 instructions before glibc (10 when it tested
//! the bits one by one), `free` 8 (11). Any other state takes the general path behind, which
//! reads the byte and tests its bits one by one (allocations off before any recorded pointer: 6
//! instructions for each).
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

use contprof::preload::alloc::{COUNTDOWN_AT, SAMPLED};

use super::{__libc_free, __libc_malloc, __libc_realloc, recording};
use crate::flags::{FLAGS, FREE_BITS, HOOKS_MASK, NONE_RECORDED, TWIN_BITS};

/// The sampled mode's fast path, for the size in `$size`: moves the thread's countdown by it
/// (one subtraction in memory, its flags the test: the countdown was at most the size) and falls
/// through, or, when the countdown runs out, jumps to `5:` with the countdown's address in
/// `%rax` (where [`countdown_back!`] puts it back as it was: the twin's `decide` moves it). The
/// caller binds `countdown`.
macro_rules! countdown {
    ($size:literal) => {
        concat!(
            "movq ",
            contprof::thread_state_symbol!(),
            "@GOTTPOFF(%rip), %rax\n",
            "subq ",
            $size,
            ", %fs:{countdown}(%rax)\n",
            "jle 5f",
        )
    };
}

/// `5:`, where [`countdown!`] jumps when the countdown runs out: undoes its subtraction and falls
/// through (to the twin).
macro_rules! countdown_back {
    ($size:literal) => {
        concat!("5:\n", "addq ", $size, ", %fs:{countdown}(%rax)")
    };
}

/// The test of a pointer (`%rdi`) once a recorded pointer exists: a recorded pointer, told by its
/// tag (`header.rs`: the word in front of it plus the pointer is zero), jumps to `$twin`; null
/// jumps to `$next`, and anything else falls through (to `$next`, or the caller jumps there).
/// For any other pointer that word is glibc's chunk size, which glibc's `free` and `realloc` read
/// next, so the load costs no miss, and the test fails for every one of glibc's pointers alike, a
/// branch the processor predicts. Uses `%rcx`.
macro_rules! tagged {
    ($twin:literal, $next:literal) => {
        concat!(
            "testq %rdi, %rdi\n",
            "jz ",
            $next,
            "\n",
            "movq -8(%rdi), %rcx\n",
            "addq %rdi, %rcx\n",
            "jz ",
            $twin,
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
        "cmpb ${sampled}, {flags}(%rip)",
        "jne 4f",
        "1:",
        countdown!("%rdi"),
        "2:",
        "jmp *{real}@GOTPCREL(%rip)",
        countdown_back!("%rdi"),
        "3:",
        "jmp *{twin}@GOTPCREL(%rip)",
        // The general path: off, forward; sampled (before a recorded pointer exists, or with
        // flags `malloc` does not read), the countdown; anything else, the twin.
        "4:",
        "movzbl {flags}(%rip), %eax",
        "andl ${mask}, %eax",
        "jz 2b",
        "cmpl ${sampled}, %eax",
        "je 1b",
        "jmp 3b",
        ".cfi_endproc",
        flags = sym FLAGS,
        mask = const HOOKS_MASK,
        sampled = const SAMPLED,
        countdown = const COUNTDOWN_AT,
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
        "testb ${free_bits}, {flags}(%rip)",
        "jnz 4f",
        tagged!("3f", "2f"),
        "2:",
        "jmp *{real}@GOTPCREL(%rip)",
        "3:",
        "jmp *{twin}@GOTPCREL(%rip)",
        // The general path: tracked pointers or marked frames, the twin; else no recorded
        // pointer exists, forward.
        "4:",
        "testb ${twin_bits}, {flags}(%rip)",
        "jnz 3b",
        "jmp 2b",
        ".cfi_endproc",
        flags = sym FLAGS,
        free_bits = const FREE_BITS,
        twin_bits = const TWIN_BITS,
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
        "cmpb ${sampled}, {flags}(%rip)",
        "jne 4f",
        tagged!("3f", "1f"),
        "1:",
        countdown!("%rsi"),
        "2:",
        "jmp *{real}@GOTPCREL(%rip)",
        countdown_back!("%rsi"),
        "3:",
        "jmp *{twin}@GOTPCREL(%rip)",
        // The general path: the test of `free` (tracked pointers or marked frames, the twin; a
        // recorded pointer's tag, once one exists, the twin), then the decision of `malloc`.
        "4:",
        "movzbl {flags}(%rip), %eax",
        "testb ${twin_bits}, %al",
        "jnz 3b",
        "testb ${none_recorded}, %al",
        "jnz 6f",
        tagged!("3b", "6f"),
        "6:",
        "andl ${mask}, %eax",
        "jz 2b",
        "cmpl ${sampled}, %eax",
        "je 1b",
        "jmp 3b",
        ".cfi_endproc",
        flags = sym FLAGS,
        twin_bits = const TWIN_BITS,
        none_recorded = const NONE_RECORDED,
        mask = const HOOKS_MASK,
        sampled = const SAMPLED,
        countdown = const COUNTDOWN_AT,
        real = sym __libc_realloc,
        twin = sym recording::realloc,
        options(att_syntax)
    )
}
