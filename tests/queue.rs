//! The remote build queue on a real PostgreSQL 15 (started per test by tests/services/postgres.sh):
//! claim order, SKIP LOCKED under two claimers, fencing, the reaper, cancel, retry, logs by offset
//! and their cap, the schema's version, the two roles' privileges, and no secret in a dump.
//! Driven through the library (`kiln::worker`) and the `kiln` binary.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::worker::postgres::PgQueue;
use kiln::worker::queue::{
    Appended, Cancelled, ClaimRequest, Job, JobDescription, JobState, Lease, Queue, QueueError,
    SecretRef, Submission,
};
use uuid::Uuid;

use crate::support::kiln;
use crate::support::services::{POSTGRES_BIN, Service};

/// A PostgreSQL with the queue's schema, and how to reach it.
struct Pg {
    service: Service,
}

impl Pg {
    /// A server of the test's own, migrated with `kiln queue migrate`; `None` when PostgreSQL is not
    /// installed (outside CI).
    fn start() -> Option<Pg> {
        let pg = Pg {
            service: Service::postgres()?,
        };
        let (code, out, err) = pg.kiln(&["queue", "migrate"]);
        assert_eq!(code, Some(0), "{out}{err}");
        Some(pg)
    }

    /// The superuser's URL.
    fn url(&self) -> &str {
        &self.service.address
    }

    /// Runs `kiln ARGS --queue URL`: exit code, stdout, stderr.
    fn kiln(&self, args: &[&str]) -> (Option<i32>, String, String) {
        self.kiln_as(self.url(), args)
    }

    fn kiln_as(&self, url: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = kiln()
            .args(args)
            .env("KILN_QUEUE", url)
            .output()
            .expect("run kiln");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs SQL as the superuser; what psql printed (unaligned, tuples only).
    fn sql(&self, sql: &str) -> String {
        let out = Command::new(format!("{POSTGRES_BIN}/psql"))
            .args([self.url(), "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A login role in `group` (kiln_submitter, kiln_worker, or none): its URL.
    fn login(&self, name: &str, group: Option<&str>) -> String {
        let password = format!("{name}-password");
        let member = group.map(|g| format!(" IN ROLE {g}")).unwrap_or_default();
        self.sql(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{password}'{member}"
        ));
        let (_, host) = self.url().split_once('@').unwrap();
        format!("postgres://{name}:{password}@{host}")
    }

    async fn queue(&self) -> PgQueue {
        PgQueue::connect(self.url()).await.expect("connect")
    }
}

fn job(source: &str) -> Submission {
    Submission::new(JobDescription {
        source: source.to_string(),
        buildspec: "buildspec.yml".into(),
        ..Default::default()
    })
}

fn claimer(worker: &str, labels: &[&str], lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queue: "default".into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        worker: worker.into(),
        lease,
    }
}

const LEASE: Duration = Duration::from_secs(30);

/// The source digests of the jobs a claimer gets until there is none.
async fn drain(queue: &PgQueue, request: &ClaimRequest) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(j) = queue.claim(request).await.unwrap() {
        got.push(source_of(&j));
        queue
            .complete(j.lease(), JobState::Succeeded, &serde_json::json!({}))
            .await
            .unwrap();
    }
    got
}

fn source_of(job: &Job) -> String {
    job.description["source"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn queue_claims_by_priority_then_submission_time_and_only_with_the_labels() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    for (source, priority, labels) in [
        ("low-1", 0, vec![]),
        ("high-1", 10, vec![]),
        ("low-2", 0, vec![]),
        ("gpu", 50, vec!["gpu=true"]),
        ("high-2", 10, vec![]),
        ("arm-gpu", 60, vec!["gpu=true", "arch=arm64"]),
    ] {
        let mut s = job(source);
        s.priority = priority;
        s.labels = labels.into_iter().map(String::from).collect();
        q.submit(&s).await.unwrap();
    }
    // A worker without labels gets only the jobs that require none, best first.
    let plain = drain(&q, &claimer("w1", &[], LEASE)).await;
    assert_eq!(plain, ["high-1", "high-2", "low-1", "low-2"]);
    // A worker with more labels than a job needs takes it; one missing a label does not.
    let gpu = drain(&q, &claimer("w2", &["gpu=true", "os=linux"], LEASE)).await;
    assert_eq!(gpu, ["gpu"]);
    let arm = drain(&q, &claimer("w3", &["arch=arm64", "gpu=true"], LEASE)).await;
    assert_eq!(arm, ["arm-gpu"]);

    let claimed = q.list(&Default::default()).await.unwrap();
    assert!(
        claimed
            .iter()
            .all(|j| j.state == JobState::Succeeded && j.attempt == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_two_concurrent_claimers_get_each_job_exactly_once() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    for i in 0..40 {
        q.submit(&job(&format!("job-{i}"))).await.unwrap();
    }
    let claim_loop = |name: &'static str| {
        let url = pg.url().to_string();
        tokio::spawn(async move {
            let q = PgQueue::connect(&url).await.unwrap();
            drain(&q, &claimer(name, &[], LEASE)).await
        })
    };
    let (a, b) = (claim_loop("a"), claim_loop("b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("job-{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "a got {a:?}, b got {b:?}");
    let jobs = q.list(&Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 40);
    assert!(
        jobs.iter()
            .all(|j| j.state == JobState::Succeeded && j.attempt == 1)
    );
}

#[tokio::test]
async fn queue_writes_after_the_lease_expired_are_fenced() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let id = q.submit(&job("fenced")).await.unwrap();
    let first = q
        .claim(&claimer("w1", &[], Duration::from_millis(300)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.attempt), (id, 1));
    // The heartbeat renews the lease while it is held, and records the phase.
    let cancel = q
        .heartbeat(first.lease(), Duration::from_millis(300), Some("BUILD"))
        .await
        .unwrap();
    assert!(!cancel);
    assert_eq!(q.get(id).await.unwrap().phase.as_deref(), Some("BUILD"));

    tokio::time::sleep(Duration::from_millis(500)).await;
    // Expired, not yet reaped: every write is refused already.
    let lost =
        |r: Result<_, QueueError>| matches!(r, Err(QueueError::LeaseLost(l)) if l == first.lease());
    assert!(lost(
        q.heartbeat(first.lease(), LEASE, None).await.map(|_| ())
    ));
    assert!(lost(
        q.append_log(first.lease(), 0, b"late").await.map(|_| ())
    ));
    assert!(lost(
        q.complete(first.lease(), JobState::Succeeded, &serde_json::json!({}))
            .await
    ));

    let reaped = q.reap().await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].state, JobState::Queued);
    let second = q.claim(&claimer("w2", &[], LEASE)).await.unwrap().unwrap();
    assert_eq!((second.id, second.attempt), (id, 2));
    // The first worker, back from a pause, is still refused: attempt 2 holds the job.
    assert!(lost(
        q.complete(first.lease(), JobState::Failed, &serde_json::json!({}))
            .await
    ));
    q.complete(
        second.lease(),
        JobState::Succeeded,
        &serde_json::json!({"exit_code": 0}),
    )
    .await
    .unwrap();
    let done = q.get(id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.worker.as_deref(), Some("w2"));
    assert_eq!(done.infra_retries, 1);
    assert_eq!(done.result.unwrap()["exit_code"], 0);
}

#[tokio::test]
async fn queue_reaper_requeues_lost_leases_then_faults_and_never_retries_a_failed_build() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    // Two reapers at once, as every worker reaps with no leader: each lost lease is charged once.
    let other = pg.queue().await;
    let id = q.submit(&job("flaky-infra")).await.unwrap();
    let short = claimer("w", &[], Duration::from_millis(100));
    for attempt in 1..=4 {
        let j = q.claim(&short).await.unwrap().expect("requeued");
        assert_eq!((j.id, j.attempt), (id, attempt));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (a, b) = tokio::join!(q.reap(), other.reap());
        let reaped: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        let expected = if attempt < 4 {
            JobState::Queued
        } else {
            JobState::Fault
        };
        assert_eq!(reaped.len(), 1);
        assert_eq!((reaped[0].job, reaped[0].state), (id, expected));
    }
    let faulted = q.get(id).await.unwrap();
    assert_eq!(faulted.state, JobState::Fault);
    assert_eq!((faulted.attempt, faulted.infra_retries), (4, 3));
    assert!(faulted.ended_at.is_some());
    assert!(q.claim(&short).await.unwrap().is_none());

    // A build that fails stays FAILED: the reaper leaves it, nobody claims it.
    let failed = q.submit(&job("red")).await.unwrap();
    let j = q.claim(&claimer("w", &[], LEASE)).await.unwrap().unwrap();
    q.complete(
        j.lease(),
        JobState::Failed,
        &serde_json::json!({"exit_code": 1}),
    )
    .await
    .unwrap();
    assert!(q.reap().await.unwrap().is_empty());
    assert!(q.claim(&claimer("w", &[], LEASE)).await.unwrap().is_none());
    assert_eq!(q.get(failed).await.unwrap().state, JobState::Failed);

    // A job queued past its queued timeout is never claimed and ends TIMED_OUT.
    let mut stale = job("stale");
    stale.queued_timeout = Duration::from_millis(100);
    let stale = q.submit(&stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(q.claim(&claimer("w", &[], LEASE)).await.unwrap().is_none());
    let reaped = q.reap().await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (reaped[0].job, reaped[0].state),
        (stale, JobState::TimedOut)
    );
}

#[tokio::test]
async fn queue_release_requeues_without_charging_a_retry() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let id = q.submit(&job("drained")).await.unwrap();
    let first = q.claim(&claimer("w1", &[], LEASE)).await.unwrap().unwrap();
    q.release(first.lease()).await.unwrap();
    let queued = q.get(id).await.unwrap();
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!((queued.attempt, queued.infra_retries), (1, 0));
    // The attempt is the fencing token: the next claim gets a new one, the old lease stays dead.
    let second = q.claim(&claimer("w2", &[], LEASE)).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        q.heartbeat(first.lease(), LEASE, None).await,
        Err(QueueError::LeaseLost(_))
    ));
}

#[tokio::test]
async fn queue_cancel_stops_a_queued_job_at_once_and_flags_a_running_one() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let running = q.submit(&job("running")).await.unwrap();
    let j = q.claim(&claimer("w", &[], LEASE)).await.unwrap().unwrap();
    let queued = q.submit(&job("queued")).await.unwrap();

    let (code, out, err) = pg.kiln(&["cancel", &queued.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("STOPPED"), "{out}");
    let stopped = q.get(queued).await.unwrap();
    assert_eq!(stopped.state, JobState::Stopped);
    assert!(stopped.ended_at.is_some());

    let (code, out, err) = pg.kiln(&["cancel", &running.to_string(), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let said: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(said["cancel"], "requested");
    assert_eq!(q.get(running).await.unwrap().state, JobState::InProgress);
    // The worker learns it from its heartbeat, stops the build and reports STOPPED.
    assert!(q.heartbeat(j.lease(), LEASE, Some("BUILD")).await.unwrap());
    q.complete(j.lease(), JobState::Stopped, &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        q.cancel(running).await.unwrap(),
        Cancelled::AlreadyEnded(JobState::Stopped)
    );

    let (code, _, err) = pg.kiln(&["cancel", &Uuid::new_v4().to_string()]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("no job"), "{err}");

    // A cancelled job whose worker is lost is not run again: the reaper ends it STOPPED.
    let orphan = q.submit(&job("orphan")).await.unwrap();
    q.claim(&claimer("w", &[], Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.cancel(orphan).await.unwrap(), Cancelled::Requested);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reaped = q.reap().await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (reaped[0].job, reaped[0].state),
        (orphan, JobState::Stopped)
    );
}

#[tokio::test]
async fn queue_log_chunks_are_idempotent_and_tailed_by_offset() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let id = q.submit(&job("logged")).await.unwrap();
    let j = q.claim(&claimer("w", &[], LEASE)).await.unwrap().unwrap();
    let lease = j.lease();
    assert_eq!(
        q.append_log(lease, 0, b"[Container] phase INSTALL\n")
            .await
            .unwrap(),
        Appended::Stored { end: 26 }
    );
    // The same chunk again (a retried request): one chunk.
    assert_eq!(
        q.append_log(lease, 0, b"[Container] phase INSTALL\n")
            .await
            .unwrap(),
        Appended::Duplicate { end: 26 }
    );
    // A chunk past the end is a caller's bug, refused.
    assert!(matches!(
        q.append_log(lease, 100, b"x").await,
        Err(QueueError::LogGap { end: 26, .. })
    ));
    // Read from an offset inside a chunk.
    let read = q.read_log(id, 1, 12).await.unwrap();
    assert_eq!(read.bytes, b"phase INSTALL\n");
    assert_eq!(read.next, 26);

    // `kiln logs JOB -f` follows the log until the job ends.
    let follow = kiln()
        .args(["logs", &id.to_string(), "-f"])
        .env("KILN_QUEUE", pg.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut offset = 26;
    for i in 0..5 {
        let line = format!("line {i}\n");
        q.append_log(lease, offset, line.as_bytes()).await.unwrap();
        offset += line.len() as u64;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    q.complete(lease, JobState::Succeeded, &serde_json::json!({}))
        .await
        .unwrap();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let expected = "[Container] phase INSTALL\nline 0\nline 1\nline 2\nline 3\nline 4\n";
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM kiln.job_logs WHERE job = '{id}'"
        )),
        "6"
    );

    // Without -f, the log as it is; the local form of `kiln logs` is untouched by the queue.
    let (code, out, err) = pg.kiln(&["logs", &id.to_string()]);
    assert_eq!((code, out.as_str()), (Some(0), expected), "{err}");
    let (code, _, err) = pg.kiln(&["logs", "not-a-build"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = pg.kiln(&["logs", &Uuid::new_v4().to_string()]);
    assert_eq!(code, Some(4), "{err}");
}

#[tokio::test]
async fn queue_log_cap_cuts_the_log_with_a_marker() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let mut capped = job("chatty");
    capped.log_cap = 64;
    let id = q.submit(&capped).await.unwrap();
    let lease = q
        .claim(&claimer("w", &[], LEASE))
        .await
        .unwrap()
        .unwrap()
        .lease();
    let chunk = [b'a'; 40];
    assert_eq!(
        q.append_log(lease, 0, &chunk).await.unwrap(),
        Appended::Stored { end: 40 }
    );
    let Appended::Truncated { end } = q.append_log(lease, 40, &chunk).await.unwrap() else {
        panic!("the cap was not applied");
    };
    // Past the cap, chunks are dropped and the marker is not written again.
    assert_eq!(
        q.append_log(lease, 80, &chunk).await.unwrap(),
        Appended::Truncated { end }
    );
    let log = q.read_log(id, 1, 0).await.unwrap();
    assert_eq!(log.next, end);
    let text = String::from_utf8(log.bytes).unwrap();
    assert_eq!(&text[..64], "a".repeat(64));
    assert_eq!(
        text[64..]
            .matches("the log reached its cap of 64 bytes")
            .count(),
        1,
        "{text}"
    );
    assert!(q.get(id).await.unwrap().log_truncated);
}

#[tokio::test]
async fn queue_migrate_is_idempotent_and_a_schema_of_another_version_is_refused() {
    let Some(pg) = Pg::start() else { return };
    let (code, out, err) = pg.kiln(&["queue", "migrate", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let migrated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (migrated["from"].as_i64(), migrated["to"].as_i64()),
        (Some(1), Some(1))
    );
    let (code, out, err) = pg.kiln(&["jobs", "--json"]);
    assert_eq!((code, out.trim()), (Some(0), "[]"), "{err}");

    // A newer schema (a newer kiln migrated it): refused, naming both versions.
    pg.sql("UPDATE kiln.schema_version SET version = 99");
    let (code, _, err) = pg.kiln(&["jobs"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("version 99") && err.contains("version 1"),
        "{err}"
    );
    let (code, _, err) = pg.kiln(&["queue", "migrate"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("upgrade kiln"), "{err}");
    let refused = PgQueue::connect(pg.url()).await.err().unwrap();
    assert!(matches!(
        refused,
        QueueError::SchemaTooNew {
            found: 99,
            known: 1
        }
    ));

    // An older one: the error says what to run.
    pg.sql("UPDATE kiln.schema_version SET version = 0");
    let (code, _, err) = pg.kiln(&["jobs"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("run `kiln queue migrate`"), "{err}");

    // Two migrations of a new database at once (the roles exist already: they are the
    // cluster's): one creates the schema, the other waits for it and finds nothing to do.
    pg.sql("CREATE DATABASE fresh");
    let fresh = format!("{}/fresh", pg.url().rsplit_once('/').unwrap().0);
    let migrations: Vec<_> = (0..2)
        .map(|_| {
            kiln()
                .args(["queue", "migrate", "--json"])
                .env("KILN_QUEUE", &fresh)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut froms = Vec::new();
    for m in migrations {
        let out = m.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        froms.push(said["from"].as_i64().unwrap());
    }
    froms.sort();
    assert_eq!(froms, [0, 1]);
    let (code, out, err) = pg.kiln_as(&fresh, &["jobs", "--json"]);
    assert_eq!((code, out.trim()), (Some(0), "[]"), "{err}");

    // A database without the queue at all.
    pg.sql("CREATE DATABASE empty");
    let empty = format!("{}/empty", pg.url().rsplit_once('/').unwrap().0);
    let (code, _, err) = pg.kiln_as(&empty, &["jobs"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no kiln queue yet"), "{err}");
    assert!(!err.contains(&password_of(pg.url())), "{err}");
}

fn password_of(url: &str) -> String {
    let userinfo = &url[url.find("://").unwrap() + 3..url.find('@').unwrap()];
    userinfo.split_once(':').unwrap().1.to_string()
}

#[tokio::test]
async fn queue_submitter_cannot_claim_or_complete_and_worker_cannot_submit() {
    let Some(pg) = Pg::start() else { return };
    let submitter_url = pg.login("alice", Some("kiln_submitter"));
    let worker_url = pg.login("builder1", Some("kiln_worker"));
    let nobody_url = pg.login("mallory", None);

    let submitter = PgQueue::connect(&submitter_url).await.unwrap();
    let worker = PgQueue::connect(&worker_url).await.unwrap();
    let denied = |r: Result<(), QueueError>| matches!(r, Err(QueueError::Denied(m)) if m.contains("permission denied"));

    let id = submitter.submit(&job("mine")).await.unwrap();
    assert_eq!(submitter.get(id).await.unwrap().submitted_by, "alice");
    assert!(denied(
        submitter
            .claim(&claimer("rogue", &[], LEASE))
            .await
            .map(|_| ())
    ));
    assert!(denied(
        submitter
            .complete(
                Lease {
                    job: id,
                    attempt: 1
                },
                JobState::Succeeded,
                &serde_json::json!({})
            )
            .await
    ));
    assert!(denied(submitter.reap().await.map(|_| ())));
    assert!(denied(
        submitter
            .append_log(
                Lease {
                    job: id,
                    attempt: 1
                },
                0,
                b"forged"
            )
            .await
            .map(|_| ())
    ));

    assert!(denied(worker.submit(&job("sneaky")).await.map(|_| ())));
    assert!(denied(worker.cancel(id).await.map(|_| ())));
    let claimed = worker
        .claim(&claimer("builder1", &[], LEASE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    worker
        .complete(claimed.lease(), JobState::Succeeded, &serde_json::json!({}))
        .await
        .unwrap();

    // Through the CLI: the submitter lists and cancels, a role of neither is refused (exit 5).
    let (code, out, err) = pg.kiln_as(&submitter_url, &["jobs", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["state"],
        "SUCCEEDED"
    );
    let (code, _, err) = pg.kiln_as(&nobody_url, &["jobs"]);
    assert_eq!(code, Some(5), "{err}");
    // So is a wrong password, without printing it.
    let wrong = submitter_url.replace("alice-password", "guessed-password");
    let (code, _, err) = pg.kiln_as(&wrong, &["jobs"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("alice:***@") && !err.contains("guessed"),
        "{err}"
    );
    // A direct write to the table is refused too: the functions are the only way in.
    let out = Command::new(format!("{POSTGRES_BIN}/psql"))
        .args([
            submitter_url.as_str(),
            "-tAc",
            "UPDATE kiln.jobs SET state = 'SUCCEEDED'",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

#[tokio::test]
async fn queue_a_secret_never_enters_the_database() {
    let Some(pg) = Pg::start() else { return };
    const VALUE: &str = "hunter2-db-password-5f1c9a";
    let q = pg.queue().await;
    // The submitter has the secret's value (its environment, its secrets file); the job carries
    // only the reference, and the worker resolves it from its own secrets.
    let mut secrets = std::collections::BTreeMap::new();
    secrets.insert(
        "DB_PASSWORD".to_string(),
        SecretRef("secrets-manager:prod/db:password".into()),
    );
    let mut s = Submission::new(JobDescription {
        source: "blake3:00ff".into(),
        buildspec: "buildspec.yml".into(),
        env: BTreeMap::from([("STAGE".to_string(), "prod".to_string())]),
        secrets,
        ..Default::default()
    });
    s.labels = vec!["os=linux".into()];
    let id = q.submit(&s).await.unwrap();
    let j = q
        .claim(&claimer("w", &["os=linux"], LEASE))
        .await
        .unwrap()
        .unwrap();
    // A worker masks secrets before a chunk leaves it.
    q.append_log(j.lease(), 0, b"connecting with DB_PASSWORD=***\n")
        .await
        .unwrap();
    q.complete(
        j.lease(),
        JobState::Failed,
        &serde_json::json!({"exit_code": 1}),
    )
    .await
    .unwrap();
    // Retried by a submitter whose environment holds the value.
    let out = kiln()
        .args(["retry", &id.to_string()])
        .env("KILN_QUEUE", pg.url())
        .env("DB_PASSWORD", VALUE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dump = Command::new(format!("{POSTGRES_BIN}/pg_dump"))
        .arg(pg.url())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("secrets-manager:prod/db:password"));
    assert!(!dump.contains(VALUE));
}

#[tokio::test]
async fn queue_cli_lists_retries_and_never_prints_a_password() {
    let Some(pg) = Pg::start() else { return };
    let q = pg.queue().await;
    let failed = q.submit(&job("red")).await.unwrap();
    let j = q.claim(&claimer("w", &[], LEASE)).await.unwrap().unwrap();
    q.complete(
        j.lease(),
        JobState::Failed,
        &serde_json::json!({"exit_code": 2}),
    )
    .await
    .unwrap();
    let queued = q.submit(&job("waiting")).await.unwrap();

    let (code, out, err) = pg.kiln(&["retry", &failed.to_string(), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let retried: serde_json::Value = serde_json::from_str(&out).unwrap();
    let new = Uuid::parse_str(retried["id"].as_str().unwrap()).unwrap();
    let copy = q.get(new).await.unwrap();
    assert_eq!(copy.retry_of, Some(failed));
    assert_eq!(copy.state, JobState::Queued);
    assert_eq!(copy.description, q.get(failed).await.unwrap().description);

    let (code, _, err) = pg.kiln(&["retry", &queued.to_string()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QUEUED"), "{err}");
    let (code, _, err) = pg.kiln(&["retry", &Uuid::new_v4().to_string()]);
    assert_eq!(code, Some(4), "{err}");

    let (code, out, err) = pg.kiln(&["jobs", "--state", "queued", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [new.to_string(), queued.to_string()]);
    let (code, out, err) = pg.kiln(&["jobs", "--state", "failed"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("JOB") && out.contains(&failed.to_string()),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, _, err) = pg.kiln(&["jobs", "--state", "done"]);
    assert_eq!(code, Some(2), "{err}");

    // A server that is not there: named, without its password.
    let password = password_of(pg.url());
    let gone = format!("postgres://kiln:{password}@127.0.0.1:1/kiln");
    let (code, _, err) = pg.kiln_as(&gone, &["jobs"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("127.0.0.1:1/kiln") && err.contains("kiln:***@"),
        "{err}"
    );
    assert!(!err.contains(&password), "{err}");
    // Nor does --help show the URL from the environment.
    let (_, out, _) = pg.kiln(&["jobs", "--help"]);
    assert!(!out.contains(&password), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_an_idle_worker_is_woken_by_a_submission() {
    let Some(pg) = Pg::start() else { return };
    let worker = pg.queue().await;
    // The first wait starts listening and returns at once: the caller claims again.
    assert!(
        worker
            .wait_for_work("default", Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        !worker
            .wait_for_work("default", Duration::from_millis(200))
            .await
            .unwrap()
    );
    let url = pg.url().to_string();
    let submit = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let q = PgQueue::connect(&url).await.unwrap();
        let mut other = job("elsewhere");
        other.queue = "other".into();
        q.submit(&other).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.submit(&job("here")).await.unwrap();
    });
    let started = Instant::now();
    assert!(
        worker
            .wait_for_work("default", Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    submit.await.unwrap();
    let j = worker
        .claim(&claimer("w", &[], LEASE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(source_of(&j), "here");
}
