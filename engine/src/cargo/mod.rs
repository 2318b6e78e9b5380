//! Cargo integration: reading the workspace (`cargo metadata`), selecting targets with cargo's own
//! flags, and building them with the profiling profile.
//!
//! This module owns every invocation of `cargo`. It never runs the built artifacts (that is the
//! runner's job) and never edits the user's manifests: the profiling profile and the frame-pointer
//! flag are passed with `--config` and environment on the command line, a rebuilt base's path
//! remapping through this program as cargo's workspace wrapper (`remap.rs`).

mod build;
mod remap;
mod select;

pub use build::{Artifact, BuildOptions, PROFILE_NAME, build};
pub use remap::run_as_wrapper;
pub use select::{CargoArgs, Selected, TargetKind, Workspace};
