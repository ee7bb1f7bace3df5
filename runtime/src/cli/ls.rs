//! `kiln ls`: the revisions a store holds under a prefix.

use clap::Args;

use super::options::AccessArgs;
use super::{exit, print_json, store_error};

/// `kiln ls`.
#[derive(Args)]
pub struct LsArgs {
    prefix: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// Lists the revisions, one a line (reference, size, digest), and gives the exit code.
pub async fn run(args: &LsArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    match kiln::store::list(&args.prefix, &access).await {
        Ok(revisions) => {
            if args.json {
                print_json(&revisions);
            } else {
                for r in &revisions {
                    out!(
                        "{}\t{}\tblake3:{}",
                        r.reference,
                        r.size.map_or_else(|| "-".to_string(), |s| s.to_string()),
                        r.blake3.as_deref().unwrap_or("-")
                    );
                }
            }
            exit::OK
        }
        Err(e) => store_error(e),
    }
}
