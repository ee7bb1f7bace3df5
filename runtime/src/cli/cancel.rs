//! `kiln cancel`: stop a job of the queue. A queued job ends STOPPED at once; a running job's
//! worker learns it at its next heartbeat and stops the build.

use clap::Args;
use kiln::worker::queue::{Cancelled, Queue};
use uuid::Uuid;

use super::options::QueueArgs;
use super::{exit, print_json};

/// `kiln cancel`.
#[derive(Args)]
pub struct CancelArgs {
    /// The job's id.
    #[arg(value_name = "JOB")]
    job: Uuid,

    #[command(flatten)]
    queue: QueueArgs,

    /// Print what happened as JSON.
    #[arg(long)]
    json: bool,
}

/// Cancels the job; the exit code. Cancelling a job that has ended is not an error: it says so.
pub async fn run(args: &CancelArgs) -> u8 {
    let queue = match super::connect_queue(&args.queue.url).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    let cancelled = match queue.cancel(args.job).await {
        Ok(c) => c,
        Err(e) => return super::queue_error(e),
    };
    if args.json {
        let (outcome, state) = match cancelled {
            Cancelled::Stopped => ("stopped", "STOPPED".to_string()),
            Cancelled::Requested => ("requested", "IN_PROGRESS".to_string()),
            Cancelled::AlreadyEnded(s) => ("already_ended", s.to_string()),
        };
        print_json(&serde_json::json!({
            "id": args.job,
            "cancel": outcome,
            "state": state,
        }));
        return exit::OK;
    }
    match cancelled {
        Cancelled::Stopped => out!("job {}: STOPPED", args.job),
        Cancelled::Requested => out!(
            "job {}: cancellation requested; its worker stops the build at its next heartbeat",
            args.job
        ),
        Cancelled::AlreadyEnded(state) => out!("job {} had already ended: {state}", args.job),
    }
    exit::OK
}
