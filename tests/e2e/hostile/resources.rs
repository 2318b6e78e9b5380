//! Resources: standard streams that cannot be written, file descriptors exhausted or closed
//! from under the agent, libraries loaded and unloaded thousands of times (by the program and by
//! glibc), a million distinct allocation stacks.

use super::programs::{c_program, churn_libraries, rust_program};
use super::run::{Case, RawExpect, Stream, run_case};

fn stdio(name: &str, sigpipe: &str, stdout: Stream, stderr: Stream) {
    let Some(program) = c_program("stdio") else { return };
    let mut case = Case::new(name, program, &[sigpipe]);
    case.stdout = stdout;
    case.stderr = stderr;
    run_case(case).assert_unchanged();
}

/// stderr not open: nothing may be written into whatever gets descriptor 2.
#[test]
fn stderr_closed() {
    stdio("stderr closed", "default", Stream::Captured, Stream::Closed);
}

/// stderr on /dev/full: every write fails with ENOSPC, for the agent and the uploader too.
#[test]
fn stderr_on_dev_full() {
    stdio("stderr /dev/full", "default", Stream::Captured, Stream::DevFull);
}

/// stderr a pipe nobody reads, SIGPIPE at its default: the program dies of SIGPIPE at its own
/// write to stderr, after its report, never earlier.
#[test]
fn stderr_broken_pipe_with_sigpipe_default() {
    stdio("stderr broken pipe, SIGPIPE default", "default", Stream::Captured, Stream::BrokenPipe);
}

/// stderr a pipe nobody reads, SIGPIPE ignored (as Rust programs have it): EPIPE, exit 0.
#[test]
fn stderr_broken_pipe_with_sigpipe_ignored() {
    stdio("stderr broken pipe, SIGPIPE ignored", "ignore", Stream::Captured, Stream::BrokenPipe);
}

/// stdout not open: the program's writes to it fail with EBADF, as without the agent.
#[test]
fn stdout_closed() {
    stdio("stdout closed", "default", Stream::Closed, Stream::Captured);
}

/// RLIMIT_NOFILE lowered to 64 and exhausted. Compared: the program's view (EMFILE reached,
/// its descriptors intact, 8 reopened after closing 8, recovery); observed: how many it could
/// open (fewer with the agent's descriptors in the process).
#[test]
fn file_descriptors_exhausted() {
    let Some(program) = c_program("nofile") else { return };
    run_case(Case::new("RLIMIT_NOFILE exhausted", program, &[]).windows()).assert_unchanged();
}

/// The program closes the agent's descriptors (its raw file, its pipes to the uploader) and
/// reuses their numbers: nothing of the agent's may land in the program's files. Whether the
/// agent still completes its raw file then is reported, not required.
fn closefds(how: &str) {
    let Some(program) = c_program("closefds") else { return };
    let mut case = Case::new(&format!("closes every descriptor ({how})"), program, &[how]);
    case.raw_file = RawExpect::Reported;
    run_case(case).assert_unchanged();
}

/// `close_range(3, ~0U, 0)` at start, then files of its own at descriptors 3 and up.
#[test]
fn closes_all_descriptors_with_close_range() {
    closefds("close_range");
}

/// `close(fd)` for every descriptor up to the limit, as older daemons do.
#[test]
fn closes_all_descriptors_in_a_loop() {
    closefds("loop");
}

/// 3,000+ dlopen/dlclose of two small libraries, computing (and allocating) inside them.
#[test]
fn dlopen_dlclose_churn() {
    let (Some(program), Some([a, b])) = (c_program("dlopen_churn"), churn_libraries()) else { return };
    let (a, b) = (a.to_str().unwrap().to_owned(), b.to_str().unwrap().to_owned());
    run_case(Case::new("dlopen/dlclose churn", program, &[&a, &b]).windows()).assert_unchanged();
}

/// NSS and gconv modules that glibc loads and unloads itself.
#[test]
fn libraries_glibc_loads_itself() {
    let Some(program) = c_program("glibc_loads") else { return };
    run_case(Case::new("NSS and iconv modules", program, &[]).windows()).assert_unchanged();
}

/// 2^20 distinct allocation stacks.
#[test]
fn a_million_distinct_allocation_stacks() {
    let Some(program) = c_program("alloc_stacks") else { return };
    run_case(Case::new("a million allocation stacks", program, &[]).windows()).assert_unchanged();
}

/// jemalloc as the global allocator (Rust, `tikv-jemallocator`).
#[test]
fn jemalloc_global_allocator() {
    run_case(Case::new("jemalloc", rust_program("jemalloc"), &[]).windows()).assert_unchanged();
}
