//! `kiln retry`: run an ended job again, as CodeBuild's "retry build" does: a new job with the same
//! description, which names the job it retries.

use clap::Args;
use kiln::worker::queue::Queue;
use uuid::Uuid;

use super::options::QueueArgs;
use super::{exit, print_json};

/// `kiln retry`.
#[derive(Args)]
pub struct RetryArgs {
    /// The job to retry: FAILED, FAULT, STOPPED or TIMED_OUT.
    #[arg(value_name = "JOB")]
    job: Uuid,

    #[command(flatten)]
    queue: QueueArgs,

    /// Print the new job's id as JSON: {"id": NEW, "retry_of": JOB}.
    #[arg(long)]
    json: bool,
}

/// Queues the new job and prints its id; the exit code.
pub async fn run(args: &RetryArgs) -> u8 {
    let queue = match super::connect_queue(&args.queue.url).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    match queue.retry(args.job).await {
        Ok(id) if args.json => {
            print_json(&serde_json::json!({ "id": id, "retry_of": args.job }));
            exit::OK
        }
        Ok(id) => {
            out!("{id}");
            exit::OK
        }
        Err(e) => super::queue_error(e),
    }
}
