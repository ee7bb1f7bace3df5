//! kiln's end-to-end tests: each drives the `kiln` binary as a user would, in a temp project.
//! One file per capability.

mod support;

mod artifacts;
mod cache;
mod cli;
mod config;
mod deploy;
mod dry_run;
mod env;
mod examples;
mod git;
mod history;
mod hostile_bundles;
mod hostile_paths;
mod isolation;
mod oci;
mod phases;
mod pipeline;
mod pipeline_validate;
mod plugin_author;
mod plugin_builds;
mod plugin_registry;
mod plugins;
mod projects;
mod queue;
mod real;
mod revision;
mod runtimes;
mod s3;
mod sandbox;
mod secrets_at_rest;
mod serve;
mod session_shell;
mod source;
mod store;
mod validate;
mod windows;
mod worker;
