//! The agent's descriptors: the socket pair to the uploader, and what a `fork` does to them.
//!
//! The channel is a Unix socket pair, the uploader's end being its standard input and output.
//! The agent writes its end with `send(MSG_NOSIGNAL)`: an uploader that died is an error to
//! handle, never a `SIGPIPE` in the service (a pipe would raise one, and a C service keeps the
//! default disposition, which kills it).
//!
//! No descriptor of the agent may outlive the process it belongs to in a child: a daemon's
//! child holding the uploader's channel would keep the parent's uploader waiting for an end that
//! never comes. Every descriptor is `O_CLOEXEC` (a child that `exec`s drops it), and every one
//! is created and closed inside a [`section`], with its number in [`FDS`] meanwhile. A `fork`
//! waits until no section is running (the `pthread_atfork` prepare handler), so at any fork
//! [`FDS`] names exactly the agent's open descriptors, and the child handler ([`close_in_child`])
//! closes them with a raw `close`: it never touches the parent's Rust objects, whose locks may
//! belong to threads that do not exist in the child.
//!
//! The program may close the agent's end too (a daemon closing every descriptor at start) and
//! reuse its number: every descriptor lives above the program's (`sys::keep_high`), and the
//! channel checks before each use that its number still names its socket (device and inode); if
//! not, the channel counts as closed (the uploader is started again with a new one) and the
//! number, now the program's, is left alone.
//!
//! A service can also run out of descriptors (a leak, a limit too low for its load), and every
//! `open` then fails, the agent's included. So the agent keeps, from the uploader's start, what a
//! window needs: the file the next window is recorded into ([`Spare`], created in the uploader's
//! spool directory and renamed to the window's name when it starts), and descriptors of
//! `/proc/self/maps` and `/proc/self/task` ([`keep_proc_files`], `sys::Kept`). A window that
//! starts while the service is at its limit is then recorded like any other.
//!
//! A section may itself fork: `std::process::Command` forks where it cannot use `posix_spawn`.
//! That fork is the agent's own (the uploader about to `exec`): its child leaves everything as
//! it is ([`own_fork`]).

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use crate::sys;

/// The agent's end of the channel, the uploader's end (twice: its standard input and output)
/// while an uploader is being started, and the next window's file; -1 where none.
static FDS: [AtomicI32; 4] = [AtomicI32::new(-1), AtomicI32::new(-1), AtomicI32::new(-1), AtomicI32::new(-1)];
/// The thread running a section (0: none).
static SECTION: AtomicI32 = AtomicI32::new(0);
/// Forks in progress (between the prepare and the parent handler).
static FORKING: AtomicU32 = AtomicU32::new(0);
/// Set by the prepare handler when the thread that forks is inside a section.
static OWN_FORK: AtomicBool = AtomicBool::new(false);
static HANDLERS: Once = Once::new();

const AGENT: usize = 0;
const UPLOADER_IN: usize = 1;
const UPLOADER_OUT: usize = 2;
const SPARE: usize = 3;
/// The name of the next window's file in the uploader's spool directory (windows are named by
/// their start, `<unix seconds>.raw`).
const SPARE_NAME: &str = "next-window.raw";

/// Runs `f` with forks held off: descriptors are created or closed only in here.
fn section<R>(f: impl FnOnce() -> R) -> R {
    install_fork_handlers();
    let me = sys::gettid() as i32;
    if SECTION.load(Ordering::SeqCst) == me {
        return f();
    }
    loop {
        if SECTION.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            if FORKING.load(Ordering::SeqCst) == 0 {
                break;
            }
            SECTION.store(0, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = f();
    SECTION.store(0, Ordering::SeqCst);
    r
}

fn install_fork_handlers() {
    HANDLERS.call_once(|| {
        // SAFETY: registering handlers with the C ABI; they live for the whole process. The
        // child handler is `agent::in_forked_child`, installed with the process hooks.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_in_parent), None) };
    });
}

/// Waits until no section runs (unless this thread runs it: the agent's own fork), then counts
/// the fork in. Async-signal-safe, as `fork` may be called from a signal handler.
extern "C" fn before_fork() {
    let me = sys::gettid() as i32;
    loop {
        FORKING.fetch_add(1, Ordering::SeqCst);
        let holder = SECTION.load(Ordering::SeqCst);
        if holder == 0 || holder == me {
            OWN_FORK.store(holder == me, Ordering::SeqCst);
            return;
        }
        FORKING.fetch_sub(1, Ordering::SeqCst);
        while SECTION.load(Ordering::SeqCst) != 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

extern "C" fn after_fork_in_parent() {
    OWN_FORK.store(false, Ordering::SeqCst);
    FORKING.fetch_sub(1, Ordering::SeqCst);
}

/// Whether the fork whose child this is was made by the agent inside a section (the uploader
/// being started, which `exec`s next). Meaningful in the child handler only.
pub(super) fn own_fork() -> bool {
    OWN_FORK.load(Ordering::SeqCst)
}

/// In a forked child (async-signal-safe): closes the descriptors the agent had open at the
/// fork and forgets the sections and forks of the parent, whose threads are gone.
pub(super) fn close_in_child() {
    for fd in &FDS {
        let v = fd.swap(-1, Ordering::SeqCst);
        if v >= 0 {
            // At the fork this was one of the agent's descriptors (see the module docs); the
            // child's copy is closed, the parent's is untouched.
            sys::close(v);
        }
    }
    sys::forget_kept_in_child();
    SECTION.store(0, Ordering::SeqCst);
    FORKING.store(0, Ordering::SeqCst);
    OWN_FORK.store(false, Ordering::SeqCst);
}

/// Keeps descriptors of `/proc/self/maps` and `/proc/self/task` open (see the module docs),
/// unless this process keeps them already.
pub(super) fn keep_proc_files() {
    section(|| {
        sys::MAPS.keep();
        sys::TASK.keep();
    });
}

/// The file the next window is recorded into, created ahead of it (see the module docs).
pub(super) struct Spare {
    /// -1 once handed over or closed.
    fd: i32,
    identity: (u64, u64),
    path: CString,
    /// Renamed to a window's name: no longer the spare's file.
    renamed: bool,
}

impl Spare {
    /// Creates the next window's file in the uploader's spool directory `dir`; `None` if it
    /// cannot be (the window then creates its own file, as the only way left).
    pub(super) fn create(dir: &Path) -> Option<Spare> {
        let path = CString::new(dir.join(SPARE_NAME).into_os_string().into_vec()).ok()?;
        section(|| {
            // Readable by its owner only, as every raw file.
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND;
            let (fd, identity) = sys::open_identified(&path, flags, 0o600)?;
            FDS[SPARE].store(fd, Ordering::SeqCst);
            Some(Spare { fd, identity, path, renamed: false })
        })
    }

    /// Renames the file to `path` and hands its descriptor over (the caller owns it from now
    /// on); `None` if that cannot be: the program took its number, or the spool directory is
    /// not the uploader's any more (the uploader was started again).
    pub(super) fn into_output(mut self, path: &CStr) -> Option<i32> {
        section(|| {
            FDS[SPARE].store(-1, Ordering::SeqCst);
            let fd = core::mem::replace(&mut self.fd, -1);
            if sys::identity(fd) != Some(self.identity) {
                // The program's number now.
                return None;
            }
            // SAFETY: both paths are NUL-terminated.
            if unsafe { libc::rename(self.path.as_ptr(), path.as_ptr()) } == 0 {
                self.renamed = true;
                return Some(fd);
            }
            sys::close(fd);
            None
        })
    }
}

impl Drop for Spare {
    /// Closes the file if its descriptor is still the agent's, and removes it.
    fn drop(&mut self) {
        section(|| {
            if self.fd >= 0 {
                FDS[SPARE].store(-1, Ordering::SeqCst);
                if sys::identity(self.fd) == Some(self.identity) {
                    sys::close(self.fd);
                }
            }
            if !self.renamed {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::unlink(self.path.as_ptr()) };
            }
        });
    }
}

/// The agent's end of the channel.
pub(super) struct Channel {
    stream: Option<UnixStream>,
    /// The socket's device and inode, to tell it from a descriptor the program reused.
    identity: Option<(u64, u64)>,
}

/// `stream`'s descriptor moved above the program's (see the module docs).
fn kept_high(stream: UnixStream) -> io::Result<UnixStream> {
    let fd = sys::keep_high(stream.into_raw_fd());
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    // SAFETY: `keep_high` returned a descriptor we own, duplicated from the stream's.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// Makes a channel and runs `spawn` with it (in one section: the uploader's ends are closed
/// when `spawn` returns, having dropped the command that held them).
pub(super) fn spawn_with<T>(spawn: impl FnOnce(Stdio, Stdio) -> io::Result<T>) -> io::Result<(Channel, T)> {
    section(|| {
        let (ours, theirs) = UnixStream::pair()?;
        let (ours, theirs) = (kept_high(ours)?, kept_high(theirs)?);
        FDS[AGENT].store(ours.as_raw_fd(), Ordering::SeqCst);
        let identity = sys::identity(ours.as_raw_fd());
        let channel = Channel { stream: Some(ours), identity };
        let theirs_out = match theirs.try_clone().and_then(kept_high) {
            Ok(t) => t,
            Err(e) => {
                channel.close_in_section();
                return Err(e);
            }
        };
        FDS[UPLOADER_IN].store(theirs.as_raw_fd(), Ordering::SeqCst);
        FDS[UPLOADER_OUT].store(theirs_out.as_raw_fd(), Ordering::SeqCst);
        let spawned = spawn(Stdio::from(OwnedFd::from(theirs)), Stdio::from(OwnedFd::from(theirs_out)));
        // `spawn` consumed both ends and dropped them with its command.
        FDS[UPLOADER_IN].store(-1, Ordering::SeqCst);
        FDS[UPLOADER_OUT].store(-1, Ordering::SeqCst);
        match spawned {
            Ok(t) => Ok((channel, t)),
            Err(e) => {
                channel.close_in_section();
                Err(e)
            }
        }
    })
}

impl Channel {
    /// The socket, if its descriptor is still it (the program did not close it).
    fn socket(&self) -> Option<&UnixStream> {
        self.stream
            .as_ref()
            .filter(|s| self.identity.is_some() && sys::identity(s.as_raw_fd()) == self.identity)
    }

    /// Sends `line` whole; false if the uploader is gone (or the channel closed).
    pub(super) fn send(&self, line: &str) -> bool {
        let Some(s) = self.socket() else { return false };
        let mut bytes = line.as_bytes();
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a valid readable buffer; MSG_NOSIGNAL: a closed peer is EPIPE,
            // not a signal.
            let n =
                unsafe { libc::send(s.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if n > 0 {
                bytes = &bytes[n as usize..];
            } else if n < 0 && sys::errno() == libc::EINTR {
                continue;
            } else {
                return false;
            }
        }
        true
    }

    /// Tells the uploader that no more messages come (it finishes and exits); reading goes on.
    pub(super) fn shut_down(&self) {
        if let Some(s) = self.socket() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }

    /// A reader of the uploader's messages.
    pub(super) fn reader(&self) -> impl Read + '_ {
        Reader(self)
    }

    fn close_in_section(mut self) {
        FDS[AGENT].store(-1, Ordering::SeqCst);
        self.release();
    }

    /// Closes the socket if its descriptor is still it; otherwise the number is the program's.
    fn release(&mut self) {
        if let Some(s) = self.stream.take() {
            let ours = self.identity.is_some() && sys::identity(s.as_raw_fd()) == self.identity;
            let fd = s.into_raw_fd();
            if ours {
                sys::close(fd);
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.stream.is_some() {
            section(|| {
                FDS[AGENT].store(-1, Ordering::SeqCst);
                self.release();
            });
        }
    }
}

/// Reads the uploader's messages; the end of them when the socket is gone.
struct Reader<'a>(&'a Channel);

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.socket() {
            Some(mut s) => s.read(buf),
            None => Ok(0),
        }
    }
}
