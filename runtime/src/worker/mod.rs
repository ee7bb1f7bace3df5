//! The remote build worker's side of kiln: the queue jobs wait in, and (later) the worker that
//! claims and runs them.
//!
//! [`queue`] is the protocol as a small trait ([`queue::Queue`]): submit, claim with a lease, renew
//! it, append log chunks, complete, release, reap expired leases, cancel, retry, read. Every write
//! a worker makes is fenced by its [`queue::Lease`] (job and attempt), so a worker that lost its
//! lease cannot change a job another worker now runs. [`postgres`] implements it on PostgreSQL:
//! `FOR UPDATE SKIP LOCKED` to claim, `LISTEN/NOTIFY` to wake idle workers, the jobs and their logs
//! in the same database, two roles with the least each side needs.

pub mod postgres;
pub mod queue;
