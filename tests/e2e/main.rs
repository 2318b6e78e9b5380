//! End-to-end tests: the real `cargo-contprof` binary against the fixture workspace
//! (`fixtures/`), checked against what `fixtures/expected.toml` declares.
//!
//! One test binary (`cargo test --test e2e`); helpers in `util`.

mod agent_cost;
mod compare;
mod contention;
mod docs;
mod errors;
mod github;
mod help;
mod hostile;
mod instructions;
mod labels;
mod packaging;
mod prod;
mod readers;
mod redact;
mod reports;
mod run;
mod store;
mod suite;
mod unwind;
mod util;
mod viewer;
mod wall;
