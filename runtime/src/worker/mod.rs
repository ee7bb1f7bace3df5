//! The remote build worker's side of kiln: the queue jobs wait in, and the worker that claims and
//! runs them.
//!
//! [`queue`] is the protocol as a small trait ([`queue::Queue`]): submit, claim with a lease, renew
//! it, append log chunks, complete, release, reap expired leases, cancel, retry, read. Every write
//! a worker makes is fenced by its [`queue::Lease`] (job and attempt), so a worker that lost its
//! lease cannot change a job another worker now runs. [`postgres`] implements it on PostgreSQL:
//! `FOR UPDATE SKIP LOCKED` to claim, `LISTEN/NOTIFY` to wake idle workers, the jobs and their logs
//! in the same database, two roles with the least each side needs.
//!
//! [`run`] is a worker's loop (claim per free slot, reap, drain), [`job`] one job from claim to
//! fenced completion, [`source`] a job's source and outputs in the shared store, [`remote`] the
//! submitter's side of `kiln build --remote`, [`metrics`] what a worker counts.

pub mod job;
pub mod metrics;
pub mod postgres;
pub mod queue;
pub mod remote;
pub mod run;
pub mod source;

use std::path::{Path, PathBuf};

/// A line of the worker's own log on stderr (its events: claims, ends, lost leases, failures),
/// shown whatever `KILN_LOG` says: it is what an operator reads in `journalctl`.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("kiln worker: {}", format!($($arg)*))
    };
}
pub(crate) use say;

/// What went wrong running a job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Queue(#[from] queue::QueueError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Cas(#[from] crate::cas::CasError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Job(String),
}

impl WorkerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> WorkerError {
        WorkerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
