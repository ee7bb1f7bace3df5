//! `kiln jobs`: the jobs of a queue, newest first.

use clap::Args;
use kiln::worker::queue::{Job, JobFilter, JobState, Queue};

use super::options::{QueueArgs, parse_job_state};
use super::{exit, local_time, print_json};

/// `kiln jobs`.
#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    queue: QueueArgs,

    /// Only the jobs in this state: queued, running (in-progress), succeeded, failed, fault,
    /// stopped, timed-out.
    #[arg(long, value_parser = parse_job_state, value_name = "STATE")]
    state: Option<JobState>,

    /// Only the jobs of this queue name.
    #[arg(long, value_name = "NAME")]
    queue_name: Option<String>,

    /// Show at most this many jobs.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 50)]
    limit: u32,

    /// Print an array of jobs as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the jobs; the exit code.
pub async fn run(args: &JobsArgs) -> u8 {
    let queue = match super::connect_queue(&args.queue.url).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    let filter = JobFilter {
        state: args.state,
        queue: args.queue_name.clone(),
        limit: Some(args.limit),
    };
    let jobs = match queue.list(&filter).await {
        Ok(jobs) => jobs,
        Err(e) => return super::queue_error(e),
    };
    if args.json {
        print_json(&jobs);
    } else if jobs.is_empty() {
        eprintln!("kiln: no jobs");
    } else {
        print_table(&jobs);
    }
    exit::OK
}

fn print_table(jobs: &[Job]) {
    let rows: Vec<[String; 8]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.to_string(),
                j.state.to_string(),
                j.phase.clone().unwrap_or_else(|| "-".into()),
                j.priority.to_string(),
                j.attempt.to_string(),
                j.queue.clone(),
                local_time(j.submitted_at),
                j.worker.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    super::print_table(
        [
            "JOB",
            "STATE",
            "PHASE",
            "PRIORITY",
            "ATTEMPT",
            "QUEUE",
            "SUBMITTED",
            "WORKER",
        ],
        &rows,
    );
}
