//! `kiln logs`: print a build's log, or follow it while the build runs. Logs are written masked
//! (see `kiln::build::log`), so what is printed here is what the build's console showed.
//!
//! A job id of the remote build queue (a bare UUID, with `--queue` or KILN_QUEUE) prints that
//! job's log from the queue instead; `-f` follows it by byte offset until the job ends.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use kiln::build::history::{self, Which};
use kiln::worker::queue::{Queue, QueueError};
use uuid::Uuid;

use super::options::{GlobalArgs, parse_project};
use super::{exit, print_bytes};

/// How often `--follow` looks at the log.
const POLL: Duration = Duration::from_millis(200);

/// `kiln logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The build: its number in the project, or its id (project:uuid) [default: the latest]; or
    /// a job of the remote build queue, by its id (with --queue).
    #[arg(value_name = "BUILD")]
    build: Option<String>,

    /// Follow the log of a running build until the build ends.
    #[arg(long, short = 'f')]
    follow: bool,

    /// The project of a build number [default: the current folder's project]
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// The remote build queue a job id is read from: postgres://user:password@host:port/database.
    #[arg(
        long = "queue",
        env = "KILN_QUEUE",
        value_name = "URL",
        hide_env_values = true
    )]
    queue: Option<String>,
}

/// Prints the log and gives the exit code.
pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> u8 {
    if let Some(job) = args.build.as_deref().and_then(|b| Uuid::parse_str(b).ok()) {
        let Some(url) = &args.queue else {
            eprintln!(
                "error: {job} is a job id of the build queue: give --queue URL (or KILN_QUEUE)"
            );
            return exit::BAD_INPUT;
        };
        return job_log(url, job, args.follow).await;
    }
    let which = match args.build.as_deref().map(Which::parse).transpose() {
        Ok(which) => which.unwrap_or(Which::Latest),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let project = args
        .project
        .clone()
        .unwrap_or_else(super::builds::current_project);
    let (records, number) = match history::find(&global.state_dir(), &project, &which) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let log = records.join(format!("{number}.log"));
    match print_log(&log, &records, number, args.follow).await {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "error: build {number} has no log any more ({}: no such file)",
                log.display()
            );
            exit::BAD_INPUT
        }
        Err(e) => {
            eprintln!("error: {}: {e}", log.display());
            exit::INTERNAL
        }
    }
}

/// Prints the log; with `follow`, goes on printing what is added until the build's record is
/// written or its final `Build …: STATUS` line appears.
async fn print_log(log: &Path, records: &Path, number: u64, follow: bool) -> std::io::Result<()> {
    let mut file = std::fs::File::open(log)?;
    let mut offset = 0u64;
    // The unfinished last line, kept to recognise the final line when its end arrives.
    let mut partial = Vec::new();
    loop {
        // Looked at before reading: whatever the build wrote before its record is then read below.
        let done = !follow || history::finished(records, number);
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        offset += bytes.len() as u64;
        print_bytes(&bytes);
        partial.extend_from_slice(&bytes);
        let mut ended = false;
        if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
            ended = partial[..end]
                .split(|b| *b == b'\n')
                .any(|line| history::is_final_line(&String::from_utf8_lossy(line), None));
            partial.drain(..=end);
        }
        if done || ended {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints a queued job's log (its current attempt's); with `follow`, goes on until the job ends,
/// starting over when another worker claims it again.
async fn job_log(url: &str, id: Uuid, follow: bool) -> u8 {
    let queue = match super::connect_queue(url).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    match print_job_log(&queue, id, follow).await {
        Ok(()) => exit::OK,
        Err(e) => super::queue_error(e),
    }
}

async fn print_job_log(queue: &impl Queue, id: Uuid, follow: bool) -> Result<(), QueueError> {
    let mut job = queue.get(id).await?;
    if !follow && job.attempt == 0 {
        eprintln!("kiln: job {id} is {}: no worker has run it yet", job.state);
        return Ok(());
    }
    let mut attempt = job.attempt;
    let mut offset = 0;
    loop {
        // Looked at before reading: what the worker wrote before it completed is then read below.
        let done = !follow || job.state.is_final();
        if attempt > 0 {
            loop {
                let read = queue.read_log(id, attempt, offset).await?;
                if read.bytes.is_empty() {
                    break;
                }
                print_bytes(&read.bytes);
                offset = read.next;
            }
        }
        if done {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
        job = queue.get(id).await?;
        if job.attempt != attempt {
            if attempt > 0 {
                eprintln!(
                    "kiln: job {id} was claimed again (attempt {}): its log starts over",
                    job.attempt
                );
            }
            attempt = job.attempt;
            offset = 0;
        }
    }
}
