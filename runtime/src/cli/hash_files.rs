//! `kiln hash-files`: one digest of the files matching globs, for cache keys.

use std::path::PathBuf;

use clap::Args;
use kiln::build;

use super::exit;

/// `kiln hash-files`.
#[derive(Args)]
pub struct HashFilesArgs {
    /// Globs relative to the current directory, e.g. package-lock.json or '**/*.lock'.
    #[arg(required = true)]
    patterns: Vec<String>,
}

/// Prints the digest and gives the exit code.
pub fn run(args: &HashFilesArgs) -> u8 {
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match build::paths::hash_files(&dir, &args.patterns) {
        Ok(digest) => {
            out!("{digest}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}
