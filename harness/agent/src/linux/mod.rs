//! The agent proper, for Linux on x86-64 and aarch64 (see the crate docs for the module map).

pub(crate) mod agent;
pub(crate) mod alloc;
#[cfg(target_arch = "x86_64")]
pub(crate) mod cfi;
#[cfg(not(target_arch = "x86_64"))]
#[path = "cfi_none.rs"]
pub(crate) mod cfi;
pub(crate) mod code;
pub(crate) mod contention;
pub(crate) mod continuous;
pub mod env;
pub(crate) mod remote;
pub(crate) mod sampler;
pub(crate) mod signals;
pub(crate) mod sys;
pub(crate) mod table;
pub(crate) mod thread;
pub(crate) mod timer;
pub(crate) mod tls;
pub mod unwind;
pub(crate) mod wall;
pub(crate) mod writer;
