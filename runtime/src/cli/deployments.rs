//! `kiln deployments`: the deployments made on this host.

use std::path::PathBuf;

use clap::Args;

use super::options::GlobalArgs;
use super::{exit, local_time, print_json, print_table};

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

/// Lists the deployments, oldest first, one a line under a header, and gives the exit code.
pub fn run(global: &GlobalArgs, args: &DeploymentsArgs) -> u8 {
    let root = args.root.clone().unwrap_or_else(|| global.deploy_root());
    let list = kiln::deploy::list(&root, args.group.as_deref());
    if args.json {
        print_json(&list);
    } else if list.is_empty() {
        eprintln!("kiln: no deployments in {}", root.display());
    } else {
        let rows: Vec<[String; 7]> = list
            .iter()
            .map(|d| {
                [
                    d.id.clone(),
                    d.group.clone(),
                    format!("{:?}", d.status),
                    chrono::DateTime::parse_from_rfc3339(&d.started)
                        .map_or_else(|_| d.started.clone(), |t| local_time(t.timestamp_millis())),
                    format!("{:.1}s", d.duration_ms as f64 / 1000.0),
                    d.digest
                        .as_deref()
                        .map(|h| format!("blake3:{}", h.get(..16).unwrap_or(h)))
                        .unwrap_or_else(|| "-".into()),
                    format!(
                        "{}{}",
                        d.revision,
                        d.rollback_of
                            .as_deref()
                            .map(|r| format!(" (rollback of {r})"))
                            .unwrap_or_default()
                    ),
                ]
            })
            .collect();
        print_table(
            [
                "ID", "GROUP", "STATUS", "STARTED", "DURATION", "DIGEST", "REVISION",
            ],
            &rows,
        );
    }
    exit::OK
}
