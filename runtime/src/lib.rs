//! kiln: run AWS-style CI/CD anywhere, every step a WASI plugin on wasmtime.
//!
//! Data flows one way: [`pipeline`] and [`worker`] (when and where) -> [`spec`] (what to do) ->
//! [`build`] and [`deploy`] (in what order) -> [`sandbox`] (run one step) -> [`cas`] (what it
//! produced). Nothing below imports anything above it.

pub mod beneath;
pub mod build;
pub mod cas;
pub mod deploy;
pub mod pipeline;
pub mod plugins;
pub mod revision;
pub mod sandbox;
pub mod serve;
pub mod spec;
pub mod store;
pub mod worker;

// The shell plugin's `export -p` reader runs inside WebAssembly; its unit tests run here, on the
// host, so that `cargo test` covers them.
#[cfg(test)]
#[path = "../../plugins/shell/src/export.rs"]
mod shell_export;
