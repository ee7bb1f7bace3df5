//! CodePipeline declarations executed: stages in order, actions by run order, artifacts between
//! them, approvals, and what started each execution.

pub mod record;
pub mod source;
pub mod trigger;
