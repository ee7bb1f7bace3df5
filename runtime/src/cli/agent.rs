//! `kiln agent`: watch a store and deploy each new revision once, as the CodeDeploy agent polls.

use std::time::Duration;

use clap::Args;

use super::exit;
use super::options::{DeployArgs, GlobalArgs};

/// `kiln agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// The reference to watch: oci://host/repo:tag, s3://bucket/key, file:///path.
    #[arg(long, value_name = "REF")]
    watch: String,
    /// How often to look.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Look once, deploy if there is something new, and exit.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    deploy: DeployArgs,
}

/// Watches until stopped (or looks once), and gives the exit code.
pub async fn run(global: &GlobalArgs, args: &AgentArgs) -> u8 {
    let Some(options) = args.deploy.options(global, &args.watch) else {
        return exit::BAD_INPUT;
    };
    match kiln::deploy::agent::watch(&options, args.interval, args.once).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::of_deploy(&e)
        }
    }
}
