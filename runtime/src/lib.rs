//! kiln: run AWS-style CI/CD anywhere, every step a WASI plugin on wasmtime.
//!
//! Data flows one way: [`spec`] (what to do) -> [`build`] (in what order) -> [`sandbox`] (run one
//! step). Nothing below imports anything above it.

pub mod build;
pub mod sandbox;
pub mod spec;
