//! `kiln deployments`: the deployments made on this host.

use std::path::PathBuf;

use clap::Args;

use super::options::GlobalArgs;
use super::{exit, print_json};

/// `kiln deployments`.
#[derive(Args)]
pub struct DeploymentsArgs {
    /// Only this deployment group's.
    #[arg(long)]
    group: Option<String>,
    /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the deployments, one a line, and gives the exit code.
pub fn run(global: &GlobalArgs, args: &DeploymentsArgs) -> u8 {
    let root = args.root.clone().unwrap_or_else(|| global.deploy_root());
    let list = kiln::deploy::list(&root, args.group.as_deref());
    if args.json {
        print_json(&list);
    } else {
        for d in &list {
            out!(
                "{}\t{}\t{:?}\t{}\t{} ms\t{}{}",
                d.id,
                d.group,
                d.status,
                d.digest
                    .as_deref()
                    .map(|h| format!("blake3:{}", &h[..h.len().min(16)]))
                    .unwrap_or_else(|| "-".into()),
                d.duration_ms,
                d.revision,
                d.rollback_of
                    .as_deref()
                    .map(|r| format!(" (rollback of {r})"))
                    .unwrap_or_default()
            );
        }
    }
    exit::OK
}
