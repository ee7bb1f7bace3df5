//! A worker's main loop: claim a job for every free slot (never more: no prefetch), sleep on the
//! queue's notifications when there is none, reap expired leases now and then, and shut down as
//! asked.
//!
//! Shutting down has two levels ([`Shutdown`]): `Drain` stops claiming and lets the running jobs
//! finish (still heartbeating), `Stop` stops them and gives them back to the queue without charging
//! them. `--max-jobs` and `--idle-timeout` drain by themselves.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::job::{self, Context, Ended};
use super::queue::{ClaimRequest, JobState, Queue, QueueError};
use super::say;

/// How far a worker is in shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shutdown {
    /// Claim and run jobs.
    Run,
    /// Claim no more; finish the running jobs.
    Drain,
    /// Stop the running jobs and give them back to the queue.
    Stop,
}

/// What a worker did, for its last words.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed (in any final state).
    pub completed: u64,
    /// Jobs given back (`Stop`).
    pub released: u64,
    /// Jobs whose lease was lost while this worker ran them.
    pub lost: u64,
}

/// Runs the worker until it drained or was stopped (`shutdown`), `--max-jobs` were run, or it was
/// idle for `--idle-timeout`.
pub async fn run<Q: Queue + 'static>(
    ctx: Arc<Context<Q>>,
    mut shutdown: watch::Receiver<Shutdown>,
) -> Result<Summary, QueueError> {
    let config = &ctx.config;
    ctx.metrics
        .slots
        .store(config.concurrency as u64, Ordering::Relaxed);
    let request = ClaimRequest {
        queue: config.queue_name.clone(),
        labels: config.labels.clone(),
        worker: config.name.clone(),
        lease: config.lease,
    };
    let (stop_jobs, stopping) = watch::channel(false);
    let mut running: JoinSet<(super::queue::Lease, Ended, f64)> = JoinSet::new();
    let mut summary = Summary::default();
    let mut idle_since = Instant::now();
    let mut next_reap = Instant::now();
    loop {
        let level = *shutdown.borrow();
        if level == Shutdown::Stop {
            let _ = stop_jobs.send(true);
        }
        let exhausted = config.max_jobs.is_some_and(|max| summary.claimed >= max);
        let idle = running.is_empty()
            && config
                .idle_timeout
                .is_some_and(|t| idle_since.elapsed() >= t);
        let claiming = level == Shutdown::Run && !exhausted && !idle;
        if !claiming && running.is_empty() {
            break;
        }
        if Instant::now() >= next_reap {
            next_reap = Instant::now() + config.reap_every;
            reap(&ctx).await;
        }
        // One claim per free slot.
        let mut claimed_one = false;
        if claiming && running.len() < config.concurrency {
            let q = ctx.queue.get().await;
            match q.claim(&request).await {
                Ok(Some(job)) => {
                    summary.claimed += 1;
                    claimed_one = true;
                    idle_since = Instant::now();
                    let queued = job
                        .started_at
                        .map_or(0.0, |s| (s - job.submitted_at) as f64 / 1000.0);
                    ctx.metrics.job_claimed(queued);
                    ctx.metrics.busy.fetch_add(1, Ordering::Relaxed);
                    say!(
                        "job {} attempt {}: claimed after {queued:.3}s in the queue",
                        job.id,
                        job.attempt
                    );
                    let (ctx, stopping) = (ctx.clone(), stopping.clone());
                    running.spawn(async move {
                        let started = Instant::now();
                        let lease = job.lease();
                        let ended = job::run(ctx, job, stopping).await;
                        (lease, ended, started.elapsed().as_secs_f64())
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    say!("claim: {e}");
                    ctx.queue.recover(&q, &e).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if claimed_one {
            // Another free slot may take another job at once.
            continue;
        }
        // Wait for work, a job's end, a signal or the next reap.
        let q = ctx.queue.get().await;
        let wait = config.reap_every.min(Duration::from_secs(5));
        tokio::select! {
            woken = q.wait_for_work(&config.queue_name, wait), if claiming && running.len() < config.concurrency => {
                if let Err(e) = woken {
                    say!("the queue: {e}");
                    ctx.queue.recover(&q, &e).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                ctx.metrics.busy.fetch_sub(1, Ordering::Relaxed);
                idle_since = Instant::now();
                if let Ok((lease, ended, seconds)) = done {
                    say!(
                        "job {} attempt {}: {} after {seconds:.1}s",
                        lease.job,
                        lease.attempt,
                        ended.label()
                    );
                    ctx.metrics.job_ended(ended.label(), seconds);
                    match ended {
                        Ended::Completed(_) => summary.completed += 1,
                        Ended::Released => summary.released += 1,
                        Ended::LeaseLost => summary.lost += 1,
                        Ended::Abandoned => {}
                    }
                }
            }
            _ = shutdown.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    Ok(summary)
}

/// Requeues expired leases (any worker may), and counts the queue's jobs for the metrics.
async fn reap<Q: Queue>(ctx: &Context<Q>) {
    let q = ctx.queue.get().await;
    match q.reap().await {
        Ok(reaped) => {
            let expired = reaped
                .iter()
                .filter(|r| r.state != JobState::TimedOut)
                .count();
            if expired > 0 {
                ctx.metrics
                    .leases_expired
                    .fetch_add(expired as u64, Ordering::Relaxed);
                say!("reaper: {expired} expired lease(s)");
            }
        }
        Err(e) => {
            say!("reap: {e}");
            ctx.queue.recover(&q, &e).await;
            return;
        }
    }
    if let Ok(counts) = q.counts().await {
        ctx.metrics.set_queue(counts);
    }
}
