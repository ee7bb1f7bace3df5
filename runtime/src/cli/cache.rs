//! `kiln cache`: statistics, pruning and verification of the build cache, and storing or restoring
//! a tree by hand.

use std::path::PathBuf;

use clap::Subcommand;
use kiln::build;

use super::exit;
use super::options::{GlobalArgs, existing_dir, parse_size};

/// `kiln cache stats|prune|verify|add|restore`.
#[derive(Subcommand)]
pub enum CacheCommand {
    /// Blobs, bytes, action cache entries, and the hit rate of recent builds.
    Stats {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used blobs until the store is at most this size (e.g. 10G), and
    /// the compiled plugins this kiln cannot load (another version compiled them) or that no build
    /// loaded for --unused-days.
    Prune {
        #[arg(long, value_parser = parse_size, value_name = "SIZE")]
        max_size: usize,
        /// Compiled plugins no build loaded for this many days are removed.
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        unused_days: u64,
    },
    /// Re-hash every blob; remove corrupt ones and the entries that name them. Exit 1 if any was found.
    Verify,
    /// Store a directory as a tree; print its digest.
    Add {
        #[arg(value_parser = existing_dir)]
        dir: PathBuf,
    },
    /// Write a stored tree out into a new or empty directory.
    Restore { digest: String, dir: PathBuf },
}

/// Runs a `kiln cache` command.
pub fn run(global: &GlobalArgs, command: &CacheCommand) -> u8 {
    let Some(dir) = global.cas_dir() else {
        eprintln!("error: no cache directory: set --cache-dir or KILN_CACHE_DIR");
        return exit::BAD_INPUT;
    };
    let store = match kiln::cas::LocalStore::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    match command {
        CacheCommand::Stats { json } => {
            let stats = store.stats();
            let (hits, builds) = build::cache::hit_rate(&global.state_dir(), 100);
            if *json {
                let out = serde_json::json!({
                    "path": dir, "blobs": stats.blobs, "bytes": stats.bytes,
                    "entries": stats.entries, "recent_builds": builds, "recent_hits": hits,
                });
                out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                out!("cache:   {}", dir.display());
                out!(
                    "blobs:   {} ({:.1} MiB)",
                    stats.blobs,
                    stats.bytes as f64 / 1048576.0
                );
                out!("entries: {}", stats.entries);
                if builds > 0 {
                    out!(
                        "hits:    {hits} of the last {builds} builds ({:.0}%)",
                        100.0 * hits as f64 / builds as f64
                    );
                }
            }
            exit::OK
        }
        CacheCommand::Prune {
            max_size,
            unused_days,
        } => {
            let report = store.prune(*max_size as u64);
            out!(
                "removed {} blobs ({:.1} MiB) and {} entries",
                report.removed_blobs,
                report.freed_bytes as f64 / 1048576.0,
                report.removed_entries
            );
            if let Some(dir) = global.components_dir() {
                let unused = std::time::Duration::from_secs(unused_days.saturating_mul(86_400));
                match kiln::sandbox::prune_compiled(&dir, unused) {
                    Ok(pruned) => out!(
                        "removed {} compiled plugins ({:.1} MiB)",
                        pruned.files,
                        pruned.bytes as f64 / 1048576.0
                    ),
                    Err(e) => {
                        eprintln!("error: cannot prune the compiled plugins: {e}");
                        return exit::INTERNAL;
                    }
                }
            }
            exit::OK
        }
        CacheCommand::Add { dir } => match kiln::cas::tree::Tree::store_dir(&store, dir) {
            Ok((digest, tree)) => {
                out!("{digest}");
                eprintln!("{} entries stored", tree.entries.len());
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::BAD_INPUT
            }
        },
        CacheCommand::Restore { digest, dir } => {
            let Some(digest) = kiln::cas::Digest::parse(digest) else {
                eprintln!("error: `{digest}` is not a BLAKE3 digest (64 hex digits)");
                return exit::BAD_INPUT;
            };
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                eprintln!("error: {} is not empty", dir.display());
                return exit::BAD_INPUT;
            }
            let restored = kiln::cas::tree::Tree::load(&store, &digest).and_then(|tree| {
                std::fs::create_dir_all(dir).map_err(kiln::cas::io_err(dir))?;
                tree.restore(&store, dir).map(|()| tree.entries.len())
            });
            match restored {
                Ok(n) => {
                    eprintln!("{n} entries restored into {}", dir.display());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::FAILED
                }
            }
        }
        CacheCommand::Verify => {
            let report = store.verify();
            for digest in &report.corrupt {
                out!("corrupt blob {digest} removed");
            }
            out!(
                "{} corrupt blobs, {} broken entries removed",
                report.corrupt.len(),
                report.removed_entries
            );
            // A malformed entry, or one whose blobs are gone, is damage as much as a bad blob.
            if report.corrupt.is_empty() && report.removed_entries == 0 {
                exit::OK
            } else {
                exit::FAILED
            }
        }
    }
}
