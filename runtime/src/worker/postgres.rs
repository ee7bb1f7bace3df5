//! The queue on PostgreSQL (15 and later): [`PgQueue`], through `tokio-postgres`.
//!
//! The schema lives in `schema/v*.sql`, one file per version, applied in order by [`PgQueue::migrate`]
//! in one transaction under an advisory lock, and recorded in `kiln.schema_version`. Every write is
//! a `SECURITY DEFINER` function (see `schema/v1.sql`), so the two roles `migrate` creates need no
//! write on a table: `kiln_submitter` may submit, cancel, retry and read; `kiln_worker` may claim,
//! heartbeat, append logs, complete, release, reap and read.
//!
//! No TLS: the connection is plain TCP (or a unix socket). A database on another machine is reached
//! through a tunnel or a TLS-terminating proxy (README).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row};
use uuid::Uuid;

use super::queue::{
    Appended, Cancelled, ClaimRequest, Job, JobFilter, JobState, Lease, LogRead, MAX_CHUNK,
    MAX_INFRA_RETRIES, Queue, QueueError, Reaped, Submission, redact,
};

/// The schema's versions, in order: version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[include_str!("schema/v1.sql")];

/// The schema version this kiln reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The channel submissions and requeues notify, with the queue's name as payload.
const CHANNEL: &str = "kiln_jobs";

/// A job's columns as [`job_of`] reads them (times in ms since the epoch).
const JOB_COLUMNS: &str = "id, queue, labels, priority, state, phase, attempt, infra_retries, \
    (extract(epoch FROM lease_until) * 1000)::bigint, worker, submitted_by, \
    (extract(epoch FROM submitted_at) * 1000)::bigint, (extract(epoch FROM started_at) * 1000)::bigint, \
    (extract(epoch FROM ended_at) * 1000)::bigint, description, result, cancel_requested, retry_of, \
    log_bytes, log_truncated";

/// At most this many chunks per `read_log`.
const READ_CHUNKS: i64 = 64;

/// What `migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// The version found (0: no schema).
    pub from: i32,
    /// The version now.
    pub to: i32,
}

/// A connection to a kiln queue in PostgreSQL. One connection, used by concurrent calls (they are
/// pipelined); once it is lost, every call fails with [`QueueError::Unreachable`] and the caller
/// connects again.
pub struct PgQueue {
    client: Client,
    /// The URL without its password, for messages.
    url: String,
    /// Notification payloads (queue names) the connection received.
    notifications: Mutex<mpsc::UnboundedReceiver<String>>,
    listening: AtomicBool,
}

impl PgQueue {
    /// Connects to the queue at `url` and checks that its schema is the one this kiln knows.
    pub async fn connect(url: &str) -> Result<PgQueue, QueueError> {
        let queue = PgQueue::connect_unchecked(url).await?;
        queue.check_schema().await?;
        Ok(queue)
    }

    /// Connects without looking at the schema (for `migrate`).
    pub async fn connect_unchecked(url: &str) -> Result<PgQueue, QueueError> {
        let shown = redact(url);
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|_| QueueError::BadUrl(shown.clone()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("kiln");
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(&shown, &e))?;
        let (sender, notifications) = mpsc::unbounded_channel();
        // The connection is driven here: it carries the queries' answers and the notifications.
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = sender.send(n.payload().to_string());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("the queue's connection ended: {e}");
                        break;
                    }
                }
            }
        });
        Ok(PgQueue {
            client,
            url: shown,
            notifications: Mutex::new(notifications),
            listening: AtomicBool::new(false),
        })
    }

    /// The schema version of the database: `None` when it has no kiln schema.
    pub async fn schema_version(&self) -> Result<Option<i32>, QueueError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('kiln.schema_version') IS NOT NULL", &[])
            .await
            .map_err(|e| db(&self.url, e))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM kiln.schema_version",
                &[],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        Ok(Some(row.get(0)))
    }

    /// Refuses a schema that is missing, older or newer than [`SCHEMA_VERSION`].
    pub async fn check_schema(&self) -> Result<(), QueueError> {
        match self.schema_version().await? {
            None => Err(QueueError::NoSchema {
                url: self.url.clone(),
            }),
            Some(v) if v < SCHEMA_VERSION => Err(QueueError::SchemaTooOld {
                found: v,
                known: SCHEMA_VERSION,
            }),
            Some(v) if v > SCHEMA_VERSION => Err(QueueError::SchemaTooNew {
                found: v,
                known: SCHEMA_VERSION,
            }),
            Some(_) => Ok(()),
        }
    }

    /// Creates the schema and the roles, or upgrades them to [`SCHEMA_VERSION`]; nothing when they
    /// are current. Needs the database's owner with CREATEROLE (or a superuser). Concurrent
    /// migrations wait for each other.
    pub async fn migrate(&mut self) -> Result<Migrated, QueueError> {
        let url = self.url.clone();
        let fail = |e| db(&url, e);
        let tx = self.client.transaction().await.map_err(fail)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('kiln queue migrate'))",
            &[],
        )
        .await
        .map_err(fail)?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('kiln.schema_version') IS NOT NULL", &[])
            .await
            .map_err(fail)?
            .get(0);
        let from = if exists {
            tx.query_one(
                "SELECT coalesce(max(version), 0) FROM kiln.schema_version",
                &[],
            )
            .await
            .map_err(fail)?
            .get::<_, i32>(0)
        } else {
            0
        };
        if from > SCHEMA_VERSION {
            return Err(QueueError::SchemaTooNew {
                found: from,
                known: SCHEMA_VERSION,
            });
        }
        for sql in &MIGRATIONS[from as usize..] {
            tx.batch_execute(sql).await.map_err(fail)?;
        }
        if from < SCHEMA_VERSION {
            tx.execute("DELETE FROM kiln.schema_version", &[])
                .await
                .map_err(fail)?;
            tx.execute(
                "INSERT INTO kiln.schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(Migrated {
            from,
            to: SCHEMA_VERSION,
        })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Queue for PgQueue {
    async fn submit(&self, job: &Submission) -> Result<Uuid, QueueError> {
        let id = Uuid::new_v4();
        let description = serde_json::to_value(&job.description)
            .map_err(|e| QueueError::Database(format!("cannot encode the job: {e}")))?;
        self.client
            .execute(
                "SELECT kiln.submit($1, $2, $3, $4, $5, make_interval(secs => $6), $7)",
                &[
                    &id,
                    &job.queue,
                    &job.labels,
                    &job.priority,
                    &description,
                    &job.queued_timeout.as_secs_f64(),
                    &(job.log_cap.min(i64::MAX as u64) as i64),
                ],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        Ok(id)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Job>, QueueError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM kiln.claim($1, $2, $3, $4)"),
                &[
                    &request.queue,
                    &request.labels,
                    &request.worker,
                    &request.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        row.map(|r| job_of(&r)).transpose()
    }

    async fn heartbeat(
        &self,
        lease: Lease,
        renew: Duration,
        phase: Option<&str>,
    ) -> Result<bool, QueueError> {
        let cancel: Option<bool> = self
            .client
            .query_one(
                "SELECT kiln.heartbeat($1, $2, $3, $4)",
                &[
                    &lease.job,
                    &(lease.attempt as i32),
                    &renew.as_secs_f64(),
                    &phase,
                ],
            )
            .await
            .map_err(|e| db(&self.url, e))?
            .get(0);
        cancel.ok_or(QueueError::LeaseLost(lease))
    }

    async fn append_log(
        &self,
        lease: Lease,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Appended, QueueError> {
        if bytes.len() > MAX_CHUNK {
            return Err(QueueError::ChunkTooLarge(bytes.len()));
        }
        let row = self
            .client
            .query_one(
                "SELECT status, log_end FROM kiln.append_log($1, $2, $3, $4)",
                &[
                    &lease.job,
                    &(lease.attempt as i32),
                    &(offset as i64),
                    &bytes,
                ],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        let status: String = row.get(0);
        let end = row.get::<_, i64>(1) as u64;
        match status.as_str() {
            "appended" => Ok(Appended::Stored { end }),
            "duplicate" => Ok(Appended::Duplicate { end }),
            "truncated" => Ok(Appended::Truncated { end }),
            "gap" => Err(QueueError::LogGap {
                job: lease.job,
                offset,
                end,
            }),
            _ => Err(QueueError::LeaseLost(lease)),
        }
    }

    async fn complete(
        &self,
        lease: Lease,
        state: JobState,
        result: &serde_json::Value,
    ) -> Result<(), QueueError> {
        if !state.is_final() {
            return Err(QueueError::Database(format!(
                "a job cannot complete as {state}"
            )));
        }
        let done: bool = self
            .client
            .query_one(
                "SELECT kiln.complete($1, $2, $3, $4)",
                &[&lease.job, &(lease.attempt as i32), &state.as_str(), result],
            )
            .await
            .map_err(|e| db(&self.url, e))?
            .get(0);
        fenced(done, lease)
    }

    async fn release(&self, lease: Lease) -> Result<(), QueueError> {
        let done: bool = self
            .client
            .query_one(
                "SELECT kiln.release($1, $2)",
                &[&lease.job, &(lease.attempt as i32)],
            )
            .await
            .map_err(|e| db(&self.url, e))?
            .get(0);
        fenced(done, lease)
    }

    async fn reap(&self) -> Result<Vec<Reaped>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT r_job, r_state FROM kiln.reap($1)",
                &[&(MAX_INFRA_RETRIES as i32)],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        rows.iter()
            .map(|r| {
                Ok(Reaped {
                    job: r.get(0),
                    state: state_of(r.get(1))?,
                })
            })
            .collect()
    }

    async fn cancel(&self, job: Uuid) -> Result<Cancelled, QueueError> {
        let row = self
            .client
            .query_opt("SELECT r_was, r_now FROM kiln.cancel($1)", &[&job])
            .await
            .map_err(|e| db(&self.url, e))?
            .ok_or(QueueError::NotFound(job))?;
        let (was, now) = (state_of(row.get(0))?, state_of(row.get(1))?);
        Ok(match (was, now) {
            (JobState::Queued, _) => Cancelled::Stopped,
            (JobState::InProgress, _) => Cancelled::Requested,
            (_, ended) => Cancelled::AlreadyEnded(ended),
        })
    }

    async fn retry(&self, job: Uuid) -> Result<Uuid, QueueError> {
        let id = Uuid::new_v4();
        let row = self
            .client
            .query_opt(
                "SELECT retried, old_state FROM kiln.retry($1, $2)",
                &[&job, &id],
            )
            .await
            .map_err(|e| db(&self.url, e))?
            .ok_or(QueueError::NotFound(job))?;
        if row.get::<_, bool>(0) {
            Ok(id)
        } else {
            Err(QueueError::NotRetryable {
                job,
                state: state_of(row.get(1))?,
            })
        }
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        let state = filter.state.map(JobState::as_str);
        let limit = filter.limit.map(i64::from);
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM kiln.jobs
                     WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
                     ORDER BY submitted_at DESC, seq DESC LIMIT $3"
                ),
                &[&state, &filter.queue, &limit],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        rows.iter().map(job_of).collect()
    }

    async fn counts(&self) -> Result<std::collections::BTreeMap<String, i64>, QueueError> {
        let rows = self
            .client
            .query("SELECT state, count(*) FROM kiln.jobs GROUP BY state", &[])
            .await
            .map_err(|e| db(&self.url, e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn get(&self, job: Uuid) -> Result<Job, QueueError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM kiln.jobs WHERE id = $1"),
                &[&job],
            )
            .await
            .map_err(|e| db(&self.url, e))?
            .ok_or(QueueError::NotFound(job))?;
        job_of(&row)
    }

    async fn read_log(&self, job: Uuid, attempt: u32, offset: u64) -> Result<LogRead, QueueError> {
        let rows = self
            .client
            .query(
                r#"SELECT "offset", bytes FROM kiln.job_logs
                   WHERE job = $1 AND attempt = $2 AND "offset" + length(bytes) > $3
                   ORDER BY "offset" LIMIT $4"#,
                &[&job, &(attempt as i32), &(offset as i64), &READ_CHUNKS],
            )
            .await
            .map_err(|e| db(&self.url, e))?;
        let mut read = LogRead {
            bytes: Vec::new(),
            next: offset,
        };
        for row in rows {
            let at = row.get::<_, i64>(0) as u64;
            let bytes: &[u8] = row.get(1);
            // Chunks are contiguous; one that starts past where we are means a gap: stop there.
            if at > read.next {
                break;
            }
            let skip = (read.next - at) as usize;
            read.bytes
                .extend_from_slice(&bytes[skip.min(bytes.len())..]);
            read.next = at + bytes.len() as u64;
        }
        Ok(read)
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) -> Result<bool, QueueError> {
        if !self.listening.swap(true, Ordering::SeqCst) {
            if let Err(e) = self
                .client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
            {
                self.listening.store(false, Ordering::SeqCst);
                return Err(db(&self.url, e));
            }
            return Ok(true);
        }
        let mut notifications = self.notifications.lock().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, notifications.recv()).await {
                Ok(Some(payload)) if payload == queue => return Ok(true),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(QueueError::Unreachable {
                        url: self.url.clone(),
                        reason: "the connection was closed".into(),
                    });
                }
                Err(_) => return Ok(false),
            }
        }
    }
}

/// A state as the database spells it.
fn state_of(text: &str) -> Result<JobState, QueueError> {
    JobState::parse(text).ok_or_else(|| QueueError::Database(format!("unknown job state `{text}`")))
}

/// A job from a row of [`JOB_COLUMNS`].
fn job_of(row: &Row) -> Result<Job, QueueError> {
    Ok(Job {
        id: row.get(0),
        queue: row.get(1),
        labels: row.get(2),
        priority: row.get(3),
        state: state_of(row.get(4))?,
        phase: row.get(5),
        attempt: row.get::<_, i32>(6) as u32,
        infra_retries: row.get::<_, i32>(7) as u32,
        lease_until: row.get(8),
        worker: row.get(9),
        submitted_by: row.get(10),
        submitted_at: row.get(11),
        started_at: row.get(12),
        ended_at: row.get(13),
        description: row.get(14),
        result: row.get(15),
        cancel_requested: row.get(16),
        retry_of: row.get(17),
        log_bytes: row.get::<_, i64>(18) as u64,
        log_truncated: row.get(19),
    })
}

/// A database error as the queue reports it: a refused privilege is [`QueueError::Denied`], a lost
/// connection [`QueueError::Unreachable`], a missing schema [`QueueError::NoSchema`].
fn db(url: &str, e: tokio_postgres::Error) -> QueueError {
    if let Some(d) = e.as_db_error() {
        return match *d.code() {
            SqlState::INSUFFICIENT_PRIVILEGE => QueueError::Denied(d.message().to_string()),
            _ => QueueError::Database(d.message().to_string()),
        };
    }
    if e.is_closed() {
        return QueueError::Unreachable {
            url: url.to_string(),
            reason: "the connection was closed".into(),
        };
    }
    QueueError::Database(e.to_string())
}

/// A failed connection: refused credentials (SQLSTATE class 28) are [`QueueError::Denied`], the rest
/// [`QueueError::Unreachable`].
fn connect_error(url: &str, e: &tokio_postgres::Error) -> QueueError {
    match e.as_db_error() {
        Some(d) if d.code().code().starts_with("28") => {
            QueueError::Denied(format!("{url}: {}", d.message()))
        }
        _ => QueueError::Unreachable {
            url: url.to_string(),
            reason: connect_reason(e),
        },
    }
}

/// Why a connection failed, in words: the server's message (a bad password, an unknown database)
/// or the socket's error (connection refused).
fn connect_reason(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.message().to_string();
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// A fenced write's answer: it was made, or the lease it carried is lost.
fn fenced(done: bool, lease: Lease) -> Result<(), QueueError> {
    if done {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(lease))
    }
}
