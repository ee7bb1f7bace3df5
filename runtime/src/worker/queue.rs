//! The queue's protocol, independent of the engine behind it: the [`Queue`] trait, the [`Job`] it
//! hands out, the [`Lease`] that fences a worker's writes, and [`QueueError`].
//!
//! The rules every engine keeps:
//!
//! - a claim takes the best queued job (priority, then submission order) whose labels the worker
//!   has, increments its `attempt` and gives a lease that only a heartbeat renews;
//! - a worker's writes (heartbeat, log chunk, completion, release) name its lease, and fail with
//!   [`QueueError::LeaseLost`] once the lease expired or the job was claimed again;
//! - any caller may reap: an expired lease puts the job back in the queue, charged as an
//!   infrastructure retry; after [`MAX_INFRA_RETRIES`] the job ends `FAULT`. A build that fails is
//!   `FAILED` and never retried by itself;
//! - a job's log is append-only chunks at byte offsets, idempotent when a chunk is sent again, capped
//!   per job with a line that says so;
//! - secrets never enter the queue: a job carries references ([`JobDescription::secrets`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lost leases a job is charged before it ends `FAULT`: it runs at most `1 + MAX_INFRA_RETRIES`
/// times.
pub const MAX_INFRA_RETRIES: u32 = 3;

/// How long a job may wait in the queue before the reaper ends it `TIMED_OUT` (CodeBuild's default
/// queued timeout).
pub const DEFAULT_QUEUED_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// The most log a job keeps; past it, a line says the log was cut.
pub const DEFAULT_LOG_CAP: u64 = 100 << 20;

/// The largest log chunk a worker sends.
pub const MAX_CHUNK: usize = 1 << 20;

/// The queue's name when none is given.
pub const DEFAULT_QUEUE_NAME: &str = "default";

/// A job's state, as CodeBuild names a build's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Fault,
    Stopped,
    TimedOut,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::InProgress,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Fault,
        JobState::Stopped,
        JobState::TimedOut,
    ];

    /// CodeBuild's spelling: `IN_PROGRESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::InProgress => "IN_PROGRESS",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Fault => "FAULT",
            JobState::Stopped => "STOPPED",
            JobState::TimedOut => "TIMED_OUT",
        }
    }

    /// A state by its CodeBuild name, in any case, `-` for `_`; `running` for `IN_PROGRESS`.
    pub fn parse(text: &str) -> Option<JobState> {
        let name = text.trim().to_ascii_uppercase().replace('-', "_");
        if name == "RUNNING" {
            return Some(JobState::InProgress);
        }
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the job has ended: it changes no more.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::InProgress)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job builds: everything a worker needs, and no secret's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDescription {
    /// The source tree's digest in the shared content-addressed store.
    pub source: String,
    /// The buildspec's path in the source tree.
    pub buildspec: String,
    /// The build's options (as `kiln build` takes them).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Plain environment variables the build sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose value is a secret, each by reference only (`secrets-manager:prod/db:password`,
    /// `parameter-store:/ci/token`): the worker resolves them from its own secrets.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
}

/// The name of a secret, never its value: there is no way to put a value in one but to misname it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(pub String);

/// A job to queue.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The queue it goes to.
    pub queue: String,
    /// `key=value` labels a worker must all have to claim it.
    pub labels: Vec<String>,
    /// Higher runs first.
    pub priority: i32,
    /// What to build.
    pub description: JobDescription,
    /// How long it may wait before it ends `TIMED_OUT`.
    pub queued_timeout: Duration,
    /// The most log it keeps.
    pub log_cap: u64,
}

impl Submission {
    /// A job for the default queue, no labels, priority 0, the default timeout and log cap.
    pub fn new(description: JobDescription) -> Submission {
        Submission {
            queue: DEFAULT_QUEUE_NAME.to_string(),
            labels: Vec::new(),
            priority: 0,
            description,
            queued_timeout: DEFAULT_QUEUED_TIMEOUT,
            log_cap: DEFAULT_LOG_CAP,
        }
    }
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The queue it serves.
    pub queue: String,
    /// Its `key=value` labels: it gets only jobs whose labels are all among them.
    pub labels: Vec<String>,
    /// Its name, recorded on the job.
    pub worker: String,
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
}

/// A claim's fencing token: every write a worker makes about a job names the attempt it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The job.
    pub job: Uuid,
    /// The claim that holds it: the job's `attempt` when it was claimed.
    pub attempt: u32,
}

/// A job's record.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    /// The queue it waits in.
    pub queue: String,
    /// `key=value` labels a worker needs to claim it.
    pub labels: Vec<String>,
    /// Higher runs first.
    pub priority: i32,
    pub state: JobState,
    /// The phase an `IN_PROGRESS` job is in, `COMPLETED` once it ended.
    pub phase: Option<String>,
    /// Claims so far: the attempt the current (or last) worker holds.
    pub attempt: u32,
    /// Lost leases charged to the job.
    pub infra_retries: u32,
    /// Until when the current attempt's lease holds (times are in milliseconds since the epoch).
    pub lease_until: Option<i64>,
    /// The worker of the current (or last) attempt.
    pub worker: Option<String>,
    /// The database role that submitted it.
    pub submitted_by: String,
    pub submitted_at: i64,
    /// When the current (or last) attempt was claimed.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// What to build: a [`JobDescription`] as JSON.
    pub description: serde_json::Value,
    /// What the build gave (artifact digests, exit code), or why the job ended.
    pub result: Option<serde_json::Value>,
    /// Whether someone asked to stop it.
    pub cancel_requested: bool,
    /// The job this one retries.
    pub retry_of: Option<Uuid>,
    /// Bytes of the current attempt's log, and whether it reached its cap.
    pub log_bytes: u64,
    pub log_truncated: bool,
}

impl Job {
    /// The lease this job's current attempt holds.
    pub fn lease(&self) -> Lease {
        Lease {
            job: self.id,
            attempt: self.attempt,
        }
    }
}

/// What became of a log chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the log now ends at this offset.
    Stored { end: u64 },
    /// A chunk at that offset is stored already (the same chunk sent again): nothing changed.
    Duplicate { end: u64 },
    /// The log reached its cap: the chunk was cut or dropped, a line says so once.
    Truncated { end: u64 },
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// The job was queued: it ended `STOPPED`.
    Stopped,
    /// The job is running: its worker learns it at its next heartbeat.
    Requested,
    /// The job had already ended, in this state.
    AlreadyEnded(JobState),
}

/// A job the reaper changed, and its new state (`QUEUED`, `FAULT`, `STOPPED`, `TIMED_OUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// The job.
    pub job: Uuid,
    /// Its state now.
    pub state: JobState,
}

/// Bytes of a log from an offset.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// The bytes from the offset asked for.
    pub bytes: Vec<u8>,
    /// Where to read next.
    pub next: u64,
}

/// Which jobs `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// What went wrong with the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("`{0}` is not a queue URL (postgres://user:password@host:port/database)")]
    BadUrl(String),
    #[error("cannot reach the queue at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the database at {url} has no kiln queue yet: run `kiln queue migrate --queue URL`")]
    NoSchema { url: String },
    #[error(
        "the queue's schema is version {found}, this kiln needs version {known}: run `kiln queue migrate`"
    )]
    SchemaTooOld { found: i32, known: i32 },
    #[error(
        "the queue's schema is version {found}, newer than the version {known} this kiln knows: upgrade kiln"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "job {} attempt {}: the lease is lost (it expired, or the job was claimed again)",
        .0.job,
        .0.attempt
    )]
    LeaseLost(Lease),
    #[error("no job {0}")]
    NotFound(Uuid),
    #[error("job {job} is {state}: only a FAILED, FAULT, STOPPED or TIMED_OUT job can be retried")]
    NotRetryable { job: Uuid, state: JobState },
    #[error("job {job}: a log chunk at offset {offset}, but the log ends at {end}")]
    LogGap { job: Uuid, offset: u64, end: u64 },
    #[error("a log chunk is at most {MAX_CHUNK} bytes, this one is {0}")]
    ChunkTooLarge(usize),
    #[error("the queue refused: {0}")]
    Denied(String),
    #[error("the queue's database: {0}")]
    Database(String),
}

/// A queue of build jobs. An engine implements it; the worker and the CLI use only this.
pub trait Queue: Send + Sync {
    /// Queues a job and wakes the workers of its queue; its id.
    fn submit(&self, job: &Submission) -> impl Future<Output = Result<Uuid, QueueError>> + Send;

    /// Takes the best job this worker may run, with a lease; `None` when there is none.
    fn claim(
        &self,
        request: &ClaimRequest,
    ) -> impl Future<Output = Result<Option<Job>, QueueError>> + Send;

    /// Renews the lease for `lease` more time and records the phase: whether cancellation was
    /// requested.
    fn heartbeat(
        &self,
        lease: Lease,
        renew: Duration,
        phase: Option<&str>,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Appends a chunk of the attempt's log at `offset`.
    fn append_log(
        &self,
        lease: Lease,
        offset: u64,
        bytes: &[u8],
    ) -> impl Future<Output = Result<Appended, QueueError>> + Send;

    /// Ends the attempt in a final state with its result.
    fn complete(
        &self,
        lease: Lease,
        state: JobState,
        result: &serde_json::Value,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Gives the job back to the queue without charging it an infrastructure retry.
    fn release(&self, lease: Lease) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Requeues (or ends `FAULT`) the jobs whose lease expired, ends `TIMED_OUT` those queued too
    /// long: what it changed.
    fn reap(&self) -> impl Future<Output = Result<Vec<Reaped>, QueueError>> + Send;

    /// Stops a queued job, or asks a running job's worker to stop it.
    fn cancel(&self, job: Uuid) -> impl Future<Output = Result<Cancelled, QueueError>> + Send;

    /// Queues a new job with an ended job's description, referring to it: its id.
    fn retry(&self, job: Uuid) -> impl Future<Output = Result<Uuid, QueueError>> + Send;

    /// Jobs, newest first.
    fn list(&self, filter: &JobFilter)
    -> impl Future<Output = Result<Vec<Job>, QueueError>> + Send;

    /// One job.
    fn get(&self, job: Uuid) -> impl Future<Output = Result<Job, QueueError>> + Send;

    /// An attempt's log from `offset` on, as much as is stored now.
    fn read_log(
        &self,
        job: Uuid,
        attempt: u32,
        offset: u64,
    ) -> impl Future<Output = Result<LogRead, QueueError>> + Send;

    /// How many jobs are in each state (for a worker's metrics).
    fn counts(&self) -> impl Future<Output = Result<BTreeMap<String, i64>, QueueError>> + Send;

    /// Waits until a job may be waiting in `queue` (one was submitted or requeued) or `timeout`
    /// passed: whether it was woken. The first call starts listening and returns at once, so a
    /// job submitted between the caller's last claim and the listening is not missed.
    fn wait_for_work(
        &self,
        queue: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;
}

/// A queue URL fit to print: its password replaced by `***`, in both the URL form
/// (`postgres://user:secret@host/db`) and the key-value form (`password=secret`).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let tail = redact_query(tail);
        return format!("{scheme}://{authority}{tail}");
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `?password=…` in a URL's query.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_url_password_is_redacted_in_every_form() {
        assert_eq!(
            redact("postgres://kiln:s3cret@127.0.0.1:5432/kiln"),
            "postgres://kiln:***@127.0.0.1:5432/kiln"
        );
        assert_eq!(
            redact("postgresql://a:p%40ss:w@db.example/q?sslmode=disable&password=x"),
            "postgresql://a:***@db.example/q?sslmode=disable&password=***"
        );
        assert_eq!(
            redact("postgres://kiln@localhost/kiln"),
            "postgres://kiln@localhost/kiln"
        );
        assert_eq!(
            redact("host=db user=kiln password=s3cret dbname=kiln"),
            "host=db user=kiln password=*** dbname=kiln"
        );
    }

    #[test]
    fn queue_states_parse_as_codebuild_names_them() {
        assert_eq!(JobState::parse("queued"), Some(JobState::Queued));
        assert_eq!(JobState::parse("running"), Some(JobState::InProgress));
        assert_eq!(JobState::parse("in-progress"), Some(JobState::InProgress));
        assert_eq!(JobState::parse("TIMED_OUT"), Some(JobState::TimedOut));
        assert_eq!(JobState::parse("done"), None);
        assert!(JobState::Fault.is_final() && !JobState::Queued.is_final());
    }
}
