//! Where each thread's [`ThreadState`] lives, and the one way to reach it.
//!
//! The allocation hooks read it on every `malloc` and `free` of the profiled program, so the read
//! must cost a few instructions. In the preload library (a shared object), Rust's `thread_local!`
//! compiles to the general-dynamic TLS model: a call to `__tls_get_addr` on every access, which
//! on an allocation-heavy program was most of the hooks' cost. A library loaded by `LD_PRELOAD`
//! sits in the static TLS block of every thread, so the initial-exec model is legitimate for it:
//! the state is then at a fixed offset from the thread pointer, read with one load from the GOT
//! and one add of `%fs:0`. Stable Rust cannot choose a TLS model, so with the `initial-exec-tls`
//! feature (set by the preload crate) on x86-64 the state is a `.tbss` symbol defined in
//! assembly and addressed in assembly. Elsewhere (a program that links the agent: an executable,
//! where the compiler already picks a static model; other architectures) it is a const
//! `thread_local!`.
//!
//! Both are zero-initialised, never destroyed and never allocate: reading them is
//! async-signal-safe, which the signal handler relies on. [`ThreadState::ZERO`] is the state of a
//! thread the agent has not seen, so every field's "unset" value is zero.

use crate::thread::ThreadState;

/// The name of the thread state's `.tbss` symbol, for assembly: this module's, and the preload
/// library's `malloc`, `realloc` and `free`, which move the allocation countdown
/// ([`crate::preload::alloc::COUNTDOWN_AT`]) themselves.
#[cfg(all(target_arch = "x86_64", feature = "initial-exec-tls"))]
#[doc(hidden)]
#[macro_export]
macro_rules! thread_state_symbol {
    () => {
        "__contprof_thread_state_v1"
    };
}

#[cfg(all(target_arch = "x86_64", feature = "initial-exec-tls"))]
mod imp {
    use super::ThreadState;

    const SIZE: usize = core::mem::size_of::<ThreadState>();
    const ALIGN: usize = core::mem::align_of::<ThreadState>();
    const _: () = assert!(ALIGN == 64);

    // The thread state: `SIZE` zero bytes of `.tbss`, hidden (resolved inside this object, never
    // interposed), 64-byte aligned (its hot fields share one cache line). The name carries the
    // crate version so that two versions linked into one object do not collide.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 6",
        concat!(".globl ", thread_state_symbol!()),
        concat!(".hidden ", thread_state_symbol!()),
        concat!(".type ", thread_state_symbol!(), ",@object"),
        concat!(".size ", thread_state_symbol!(), ", {size}"),
        concat!(thread_state_symbol!(), ":"),
        ".zero {size}",
        ".popsection",
        size = const SIZE,
    );

    /// The calling thread's state: its offset from the thread pointer through the GOT
    /// (initial-exec), plus the thread pointer.
    #[inline(always)]
    pub(super) fn current() -> &'static ThreadState {
        let p: *const ThreadState;
        // SAFETY: reads the GOT entry the linker filled with the symbol's offset in the static TLS
        // block, and the thread pointer (`%fs:0` holds its own address on x86-64 Linux); no other
        // memory is touched and no stack is used.
        unsafe {
            core::arch::asm!(
                concat!("movq ", thread_state_symbol!(), "@GOTTPOFF(%rip), {p}"),
                "addq %fs:0, {p}",
                p = out(reg) p,
                options(att_syntax, pure, readonly, nostack)
            );
        }
        // SAFETY: `p` is this thread's copy of the `.tbss` symbol: `SIZE` bytes, aligned as
        // `ThreadState`, zero-initialised (a valid `ThreadState`, see `ThreadState::ZERO`), alive
        // as long as the thread, and only ever accessed through shared references (its fields are
        // cells and atomics).
        unsafe { &*p }
    }
}

#[cfg(not(all(target_arch = "x86_64", feature = "initial-exec-tls")))]
mod imp {
    use super::ThreadState;

    std::thread_local! {
        static THREAD: ThreadState = const { ThreadState::ZERO };
    }

    /// The calling thread's state.
    #[inline(always)]
    pub(super) fn current() -> &'static ThreadState {
        // SAFETY: the value is constant-initialised and has no destructor, so the slot is a plain
        // thread-local that lives as long as the thread and is never torn down while it runs.
        THREAD.with(|t| unsafe { &*(t as *const ThreadState) })
    }
}

/// The calling thread's state. The reference must not be sent to another thread (it is only
/// valid while this thread lives); `ThreadState` is not `Sync` for that reason.
#[inline(always)]
pub(crate) fn current() -> &'static ThreadState {
    imp::current()
}
