//! `kiln plugin exec`: what a plugin's shim on a build's PATH runs (hidden from `--help`).

use std::path::PathBuf;

use clap::Args;

/// `kiln plugin exec SPEC [ARGS]…`.
#[derive(Args)]
pub struct ExecArgs {
    /// The shim's spec, written by the build into its tools folder.
    spec: PathBuf,

    /// The command's arguments, as the shell passed them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the plugin as a command; its exit status is the plugin's.
pub async fn run(args: &ExecArgs) -> u8 {
    let status = kiln::build::plugins::run_shim(&args.spec, &args.args).await;
    u8::try_from(status).unwrap_or(1)
}
