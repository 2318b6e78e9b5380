//! Production: the continuous agent's uploader (`uploader.rs`, its messages in `log.rs`) and the
//! profiles of one window (`window.rs`). The layout in the store is `store/prod.rs`; the agent's side is the
//! `contprof::service` module of the agent crate.

pub mod compact;
pub mod denominator;
pub mod fleet;
pub mod load;
pub mod log;
pub mod rollouts;
pub mod rollup;
pub mod select;
pub mod symbols;
pub mod top;
pub mod uploader;
pub mod window;
