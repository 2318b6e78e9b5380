//! The exported exec family: before the process replaces its program, the agent finishes its
//! recording (no `atexit` handler runs in the new program: the run's file gets its end record,
//! a production window is completed for the uploader) and disarms its timers (a process-wide
//! `setitimer` would survive the exec and kill the new program with `SIGPROF`). If the exec
//! fails, the recording resumes into the same file, as one run.
//!
//! `execve`, `execv`, `execvp`, `execvpe`, `fexecve` and `execveat` are defined here; the
//! variadic `execl`, `execlp` and `execle` in C (`c/exec.c`, which Rust cannot define), reached
//! through naked exported functions that jump there with the caller's registers and stack as
//! they are, and which call the vector forms here. `posix_spawn`, `system` and `popen` exec in a
//! child process, which the agent does not record.

use core::ffi::{c_char, c_int};

use crate::next::Next;

type Execve = unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type Execv = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
type Fexecve = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
type Execveat =
    unsafe extern "C" fn(c_int, *const c_char, *const *const c_char, *const *const c_char, c_int) -> c_int;

static EXECVE: Next = Next::new(c"execve");
static EXECV: Next = Next::new(c"execv");
static EXECVP: Next = Next::new(c"execvp");
static EXECVPE: Next = Next::new(c"execvpe");
static FEXECVE: Next = Next::new(c"fexecve");
static EXECVEAT: Next = Next::new(c"execveat");

/// Resolves the C library's exec functions (from the constructor).
pub(crate) fn resolve_real() {
    crate::next::resolve_all(&[&EXECVE, &EXECV, &EXECVP, &EXECVPE, &FEXECVE, &EXECVEAT]);
}

/// Runs the C library's `exec` (which returns only on failure) around the agent's work.
fn around(exec: impl FnOnce() -> Option<c_int>) -> c_int {
    let resume = contprof::preload::before_exec();
    let rc = exec();
    // SAFETY: `__errno_location` returns this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    if resume {
        contprof::preload::after_failed_exec();
    }
    match rc {
        Some(rc) => {
            // SAFETY: as above: the caller reads why the exec failed.
            unsafe { *libc::__errno_location() = errno };
            rc
        }
        None => {
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = libc::ENOSYS };
            -1
        }
    }
}

/// Interposes `execve`.
///
/// # Safety
/// The contract of `execve(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: glibc's function of this name has this type; the caller's arguments, forwarded.
    around(|| unsafe { EXECVE.function::<Execve>().map(|f| f(path, argv, envp)) })
}

/// Interposes `execv`.
///
/// # Safety
/// The contract of `execv(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: as in `execve`.
    around(|| unsafe { EXECV.function::<Execv>().map(|f| f(path, argv)) })
}

/// Interposes `execvp`.
///
/// # Safety
/// The contract of `execvp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: as in `execve`.
    around(|| unsafe { EXECVP.function::<Execv>().map(|f| f(file, argv)) })
}

/// Interposes `execvpe`.
///
/// # Safety
/// The contract of `execvpe(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: as in `execve`.
    around(|| unsafe { EXECVPE.function::<Execve>().map(|f| f(file, argv, envp)) })
}

/// Interposes `fexecve`.
///
/// # Safety
/// The contract of `fexecve(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    // SAFETY: as in `execve`.
    around(|| unsafe { FEXECVE.function::<Fexecve>().map(|f| f(fd, argv, envp)) })
}

/// Interposes `execveat`.
///
/// # Safety
/// The contract of `execveat(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: c_int,
) -> c_int {
    // SAFETY: as in `execve`.
    around(|| unsafe { EXECVEAT.function::<Execveat>().map(|f| f(dirfd, path, argv, envp, flags)) })
}

unsafe extern "C" {
    fn contprof_execl();
    fn contprof_execlp();
    fn contprof_execle();
}

/// Interposes `execl`: a jump to its C implementation, which collects the arguments.
///
/// # Safety
/// The contract of `execl(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execl() {
    #[cfg(target_arch = "x86_64")]
    core::arch::naked_asm!("jmp {}", sym contprof_execl);
    #[cfg(target_arch = "aarch64")]
    core::arch::naked_asm!("b {}", sym contprof_execl);
}

/// Interposes `execlp`, as `execl`.
///
/// # Safety
/// The contract of `execlp(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execlp() {
    #[cfg(target_arch = "x86_64")]
    core::arch::naked_asm!("jmp {}", sym contprof_execlp);
    #[cfg(target_arch = "aarch64")]
    core::arch::naked_asm!("b {}", sym contprof_execlp);
}

/// Interposes `execle`, as `execl`.
///
/// # Safety
/// The contract of `execle(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execle() {
    #[cfg(target_arch = "x86_64")]
    core::arch::naked_asm!("jmp {}", sym contprof_execle);
    #[cfg(target_arch = "aarch64")]
    core::arch::naked_asm!("b {}", sym contprof_execle);
}
