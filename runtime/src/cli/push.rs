//! `kiln push`: a revision file and its manifest to a file, S3 or OCI store.

use std::path::PathBuf;

use clap::Args;

use super::options::{AccessArgs, existing_file};
use super::{exit, print_json, store_error};

/// `kiln push`.
#[derive(Args)]
pub struct PushArgs {
    /// The revision file.
    #[arg(value_parser = existing_file)]
    revision: PathBuf,
    /// Where to.
    reference: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Replace another revision at a file or S3 key (pushed revisions are immutable otherwise).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// Pushes the revision, prints where it went, and gives the exit code.
pub async fn run(args: &PushArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    match kiln::store::push(&args.revision, &args.reference, &access, args.force).await {
        Ok(pushed) => {
            if args.json {
                print_json(&pushed);
            } else if pushed.uploaded == 0 {
                out!("{}: unchanged (blake3:{})", pushed.reference, pushed.blake3);
            } else {
                out!(
                    "{}: {} bytes pushed (blake3:{})",
                    pushed.reference,
                    pushed.uploaded,
                    pushed.blake3
                );
            }
            if !args.json
                && let Some(digest) = &pushed.manifest_digest
            {
                out!("manifest: {digest}");
            }
            exit::OK
        }
        Err(e) => store_error(e),
    }
}
