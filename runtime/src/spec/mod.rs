//! What to do: the files users write (buildspec, and later appspec and pipeline files), their types,
//! parsing and validation, with errors that point at the line and column.

pub mod appspec;
pub mod buildspec;
pub mod config;
pub mod diagnostic;
pub mod dotenv;
pub mod pipeline;
pub mod read;
pub mod secrets;
pub mod yaml;

#[cfg(test)]
mod fuzz;

pub use buildspec::{Buildspec, PhaseName};
pub use diagnostic::{Diagnostic, Span, SpecError};
pub use secrets::Secrets;
