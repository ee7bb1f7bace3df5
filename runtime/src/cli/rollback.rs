//! `kiln rollback`: back to a deployment group's previous successful revision.

use std::path::PathBuf;

use clap::Args;

use super::deploy::deploy;
use super::options::{AccessArgs, DeployArgs, GlobalArgs, StrategyArg};

/// `kiln rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    /// The deployment group.
    #[arg(long)]
    group: String,
    /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The store options `kiln deploy` takes.
    #[command(flatten)]
    access: AccessArgs,
}

/// Rolls the group back, prints the result, and gives the exit code.
pub async fn run(global: &GlobalArgs, args: &RollbackArgs) -> u8 {
    let limits = kiln::revision::extract::Limits::default();
    let deploy_args = DeployArgs {
        group: args.group.clone(),
        application: None,
        root: args.root.clone(),
        file_exists_behavior: kiln::spec::appspec::FileExists::Disallow,
        ignore_application_stop_failures: false,
        no_rollback: true,
        max_revisions: 5,
        confine_hooks: false,
        strategy: StrategyArg::InPlace,
        max_entries: limits.max_entries,
        max_size: limits.max_size as usize,
        json: args.json,
        access: args.access.clone(),
        rollback_only: true,
    };
    deploy(global, "", &deploy_args).await
}
