//! `kiln deployments`: the deployments made on this host, in every deployment root kiln knows.

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
    /// Only this deployment root's [default: the default root and every root deployed to with
    /// --root, remembered in the state dir]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the deployments, oldest first, one a line under a header (with a ROOT column when they
/// come from more than one root), and gives the exit code.
pub fn run(global: &GlobalArgs, args: &DeploymentsArgs) -> u8 {
    let roots = match &args.root {
        Some(root) => vec![root.clone()],
        None => {
            let default = global.deploy_root();
            let default_real = default.canonicalize().ok();
            let mut roots = vec![default];
            roots.extend(
                kiln::deploy::roots::known(&global.state_dir())
                    .into_iter()
                    .filter(|r| Some(r) != default_real.as_ref()),
            );
            roots
        }
    };
    let mut list: Vec<(&PathBuf, kiln::deploy::Deployment)> = roots
        .iter()
        .flat_map(|root| {
            kiln::deploy::list(root, args.group.as_deref())
                .into_iter()
                .map(move |d| (root, d))
        })
        .collect();
    list.sort_by(|(_, a), (_, b)| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    let mut used: Vec<&PathBuf> = list.iter().map(|(r, _)| *r).collect();
    used.sort();
    used.dedup();
    if args.json {
        // Each deployment with the root it was found in.
        let json: Vec<serde_json::Value> = list
            .iter()
            .map(|(root, d)| {
                let mut value = serde_json::to_value(d).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert("root".into(), root.to_string_lossy().into());
                }
                value
            })
            .collect();
        print_json(&json);
    } else if list.is_empty() {
        let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        eprintln!("kiln: no deployments in {}", names.join(", "));
    } else if used.len() > 1 {
        let rows: Vec<[String; 8]> = list
            .iter()
            .map(|(root, d)| {
                let [a, b, c, e, f, g, h] = row(d);
                [a, b, c, e, f, g, h, root.display().to_string()]
            })
            .collect();
        print_table(
            [
                "ID", "GROUP", "STATUS", "STARTED", "DURATION", "DIGEST", "REVISION", "ROOT",
            ],
            &rows,
        );
    } else {
        let rows: Vec<[String; 7]> = list.iter().map(|(_, d)| row(d)).collect();
        print_table(
            [
                "ID", "GROUP", "STATUS", "STARTED", "DURATION", "DIGEST", "REVISION",
            ],
            &rows,
        );
    }
    exit::OK
}

/// One deployment's cells, under the header without ROOT.
fn row(d: &kiln::deploy::Deployment) -> [String; 7] {
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
}
