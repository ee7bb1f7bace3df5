//! `kiln pull`: fetch a revision, verify its digests, and extract it safely (or keep the file).

use std::path::PathBuf;

use clap::Args;

use super::options::{AccessArgs, parse_size};
use super::{exit, print_json, store_error};

/// `kiln pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Where from: file:///path/app.zip, s3://bucket/key, oci://host/repo:tag or @sha256:….
    reference: String,
    /// The folder to extract into (it must not exist).
    #[arg(
        long,
        short = 'o',
        required_unless_present = "archive",
        conflicts_with = "archive"
    )]
    output: Option<PathBuf>,
    /// Keep the verified revision file here instead of extracting it.
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Refuse bundles that expand past this size, e.g. 10G.
    #[arg(long, default_value = "10G", value_parser = parse_size)]
    max_size: usize,
    /// Refuse bundles that make more than this many files, folders and links (inode bombs).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    max_entries: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// Pulls the revision, prints what was verified and where it is, and gives the exit code.
pub async fn run(args: &PullArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    let limits = kiln::revision::extract::Limits {
        max_size: args.max_size as u64,
        max_entries: args.max_entries,
        ..Default::default()
    };
    let into = match (&args.output, &args.archive) {
        (Some(dir), _) => kiln::store::PullInto::Folder(dir.clone(), limits),
        (None, Some(file)) => kiln::store::PullInto::Archive(file.clone()),
        (None, None) => return exit::BAD_INPUT,
    };
    let reference = &args.reference;
    match kiln::store::pull(reference, &into, &access).await {
        Ok(pulled) => {
            if args.json {
                print_json(&pulled);
            } else if let kiln::store::PullInto::Archive(file) = &into {
                out!(
                    "{reference}: {} bytes in {} (blake3:{} verified)",
                    pulled.size,
                    file.display(),
                    pulled.blake3
                );
            } else {
                out!(
                    "{reference}: {} files in {} (blake3:{} verified)",
                    pulled.files,
                    pulled.output.display(),
                    pulled.blake3
                );
            }
            exit::OK
        }
        Err(e) => store_error(e),
    }
}
