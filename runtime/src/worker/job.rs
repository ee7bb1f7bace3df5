//! One job on a worker, from its claim to its fenced completion.
//!
//! The build itself is `kiln build` in a child process of its own (its own process group), run with
//! `--require-sandbox`, the job's network mode and `--cache-read-only`: exactly what a user's
//! `kiln build` does, and nothing the worker holds (its queue connection, its tasks) shares an address
//! space with other people's builds. Beside it:
//!
//! - a heartbeat task renews the lease every `heartbeat` and hears about cancellation; a lost lease
//!   kills the build at once and nothing more is written for the attempt;
//! - a log pump masks the build's log (the worker's own secrets) line by line and sends it to the
//!   queue in chunks of at most [`MAX_CHUNK`], at least every second, fenced;
//! - at the end, the log as one blob and the artifacts as trees go to the shared store (blobs only:
//!   content-addressed, harmless if the completion is then refused), the result is completed under
//!   the lease, and only once that succeeded is the action cache entry published (first writer
//!   wins). A cancelled, stopped or fenced-out build publishes none.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::build::mask::Masker;
use crate::cas::remote::RemoteCache;
use crate::cas::tree::Tree;
use crate::cas::{Digest, LocalStore};

use super::queue::{Appended, Job, JobDescription, JobState, Lease, MAX_CHUNK, Queue, QueueError};
use super::{WorkerError, say, source};

/// How a worker is set up; the same for every job it runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded on the jobs it claims.
    pub name: String,
    /// The queue's URL (with its password: never printed, see [`super::queue::redact`]).
    pub queue_url: String,
    /// The queue it serves.
    pub queue_name: String,
    /// Its `key=value` labels.
    pub labels: Vec<String>,
    /// Jobs at once.
    pub concurrency: usize,
    /// Claim no more than this many jobs, then exit once they ended.
    pub max_jobs: Option<u64>,
    /// Exit after this long with nothing to run.
    pub idle_timeout: Option<Duration>,
    /// A lease's length.
    pub lease: Duration,
    /// How often a running job's lease is renewed (shorter than `lease`).
    pub heartbeat: Duration,
    /// How often the reaper runs.
    pub reap_every: Duration,
    /// Between SIGTERM and SIGKILL when a build is stopped.
    pub cancel_grace: Duration,
    /// The `kiln` program builds run with.
    pub kiln: PathBuf,
    /// The builds' `--cache-dir` (compiled plugins, the local store).
    pub cache_dir: PathBuf,
    /// The local store (below `cache_dir`).
    pub cas_dir: PathBuf,
    /// A folder of the worker's own: one folder per job attempt below it.
    pub work_dir: PathBuf,
    /// The worker's secrets file: what the jobs' references resolve to.
    pub secrets: Option<PathBuf>,
    /// The shared store, `s3://bucket/prefix`.
    pub cache_url: String,
    /// Plain HTTP to the store's endpoint is meant.
    pub allow_http: bool,
}

/// How a [`Conn`] opens a connection to the queue (at first, and again once it is lost).
pub type Connector<Q> =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Q, QueueError>> + Send + Sync>;

/// A queue connection that connects again once it is lost. The worker knows the queue only through
/// [`Queue`]: another engine needs only a [`Connector`].
pub struct Conn<Q> {
    connect: Connector<Q>,
    current: tokio::sync::RwLock<Arc<Q>>,
}

impl<Q: Queue> Conn<Q> {
    /// Connects for the first time.
    pub async fn open(connect: Connector<Q>) -> Result<Conn<Q>, QueueError> {
        let first = connect().await?;
        Ok(Conn {
            connect,
            current: tokio::sync::RwLock::new(Arc::new(first)),
        })
    }

    /// The connection now.
    pub async fn get(&self) -> Arc<Q> {
        self.current.read().await.clone()
    }

    /// After `error` on `used`: connects again when the connection was lost (unless another caller
    /// did already).
    pub async fn recover(&self, used: &Arc<Q>, error: &QueueError) {
        if !matches!(error, QueueError::Unreachable { .. }) {
            return;
        }
        let mut current = self.current.write().await;
        if Arc::ptr_eq(&current, used) {
            match (self.connect)().await {
                Ok(q) => *current = Arc::new(q),
                Err(e) => say!("the queue: {e}"),
            }
        }
    }
}

/// What a worker shares between its jobs.
pub struct Context<Q> {
    /// How the worker is set up.
    pub config: WorkerConfig,
    /// Claims, logs, completions, the reaper.
    pub queue: Conn<Q>,
    /// Heartbeats only: a slow log chunk never holds one up.
    pub beats: Conn<Q>,
    /// The worker's own store: sources and outputs pass through it.
    pub local: LocalStore,
    /// The shared store.
    pub remote: RemoteCache,
    /// Every secret value the worker knows (its secrets file, its `KILN_SECRET_*` variables).
    pub secrets: Vec<String>,
    /// What the worker counts.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// Why a build is being stopped, in rising order: a later reason overrides an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    None,
    /// The worker is shutting down: the job goes back to the queue.
    Release,
    /// Someone cancelled the job.
    Cancel,
    /// The lease is gone: another attempt may be running.
    LeaseLost,
}

/// How a job ended on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Completed under the lease, in this state.
    Completed(JobState),
    /// The lease was lost: nothing was written.
    LeaseLost,
    /// Given back to the queue (the worker was stopping).
    Released,
    /// The worker could not run it (the store or the queue unreachable): left for the reaper,
    /// which charges an infrastructure retry.
    Abandoned,
}

impl Ended {
    /// The `result` label of `kiln_jobs_total`.
    pub fn label(self) -> &'static str {
        match self {
            Ended::Completed(state) => state.as_str(),
            Ended::LeaseLost => "lease_lost",
            Ended::Released => "released",
            Ended::Abandoned => "abandoned",
        }
    }
}

/// Runs a claimed job to its end. `stopping` turns true when the worker must stop its jobs and
/// give them back.
pub async fn run<Q: Queue + 'static>(
    ctx: Arc<Context<Q>>,
    job: Job,
    stopping: watch::Receiver<bool>,
) -> Ended {
    let lease = job.lease();
    let dir = ctx
        .config
        .work_dir
        .join(format!("{}-{}", job.id, job.attempt));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        say!("job {}: {}: {e}", job.id, dir.display());
        return Ended::Abandoned;
    }
    let (stop_tx, stop_rx) = watch::channel(Stop::None);
    let stop_tx = Arc::new(stop_tx);
    let phase = Arc::new(std::sync::Mutex::new(None::<String>));
    let beat = tokio::spawn(heartbeat(
        ctx.clone(),
        lease,
        phase.clone(),
        stop_tx.clone(),
    ));
    let ended = attempt(&ctx, &job, &dir, &stop_tx, stop_rx, stopping, phase).await;
    beat.abort();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    ended
}

/// The job folders below a worker's folder (`<job id>-<attempt>`): at its start, what a killed
/// worker of the same name left.
pub fn leftover_jobs(work_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.rsplit_once('-'))
                    .is_some_and(|(id, attempt)| {
                        uuid::Uuid::parse_str(id).is_ok() && attempt.parse::<u32>().is_ok()
                    })
        })
        .collect()
}

/// Raises the reason to stop to `why`, unless a stronger one is there already.
fn raise(stop: &watch::Sender<Stop>, why: Stop) {
    stop.send_if_modified(|now| {
        if why > *now {
            *now = why;
            true
        } else {
            false
        }
    });
}

/// Renews the lease until aborted; says when the job was cancelled or the lease lost.
async fn heartbeat<Q: Queue + 'static>(
    ctx: Arc<Context<Q>>,
    lease: Lease,
    phase: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<watch::Sender<Stop>>,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(ctx.config.heartbeat).await;
        let current = phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let q = ctx.beats.get().await;
        // A database that stops answering (a partition drops no connection) must not hold the
        // heartbeat past the lease.
        let answer = tokio::time::timeout(
            ctx.config.lease / 2,
            q.heartbeat(lease, ctx.config.lease, current.as_deref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(QueueError::Unreachable {
                url: super::queue::redact(&ctx.config.queue_url),
                reason: "the heartbeat had no answer".into(),
            })
        });
        match answer {
            Ok(cancel) => {
                renewed = Instant::now();
                if cancel {
                    raise(&stop, Stop::Cancel);
                }
            }
            Err(QueueError::LeaseLost(_)) => {
                ctx.metrics
                    .heartbeat_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                say!(
                    "job {} attempt {}: the lease is lost: the build is killed, its results discarded",
                    lease.job,
                    lease.attempt
                );
                raise(&stop, Stop::LeaseLost);
                return;
            }
            Err(e) => {
                ctx.metrics
                    .heartbeat_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                say!("job {}: heartbeat: {e}", lease.job);
                ctx.beats.recover(&q, &e).await;
                // Past its lease, the job may be another worker's already: stop as if told so.
                if renewed.elapsed() >= ctx.config.lease {
                    raise(&stop, Stop::LeaseLost);
                    return;
                }
            }
        }
    }
}

/// A job's build: its description checked, its source fetched, `kiln build` run and reported.
async fn attempt<Q: Queue + 'static>(
    ctx: &Arc<Context<Q>>,
    job: &Job,
    dir: &Path,
    stop_tx: &Arc<watch::Sender<Stop>>,
    mut stop_rx: watch::Receiver<Stop>,
    mut stopping: watch::Receiver<bool>,
    phase: Arc<std::sync::Mutex<Option<String>>>,
) -> Ended {
    let lease = job.lease();
    let started = Instant::now();
    let description: JobDescription = match serde_json::from_value(job.description.clone()) {
        Ok(d) => d,
        Err(e) => return refuse(ctx, lease, &format!("the job's description: {e}")).await,
    };
    let plan = match BuildPlan::of(&ctx.config, &description) {
        Ok(p) => p,
        Err(why) => return refuse(ctx, lease, &why).await,
    };
    // The job's secret variables, resolved here: their values never were in the queue.
    let secrets = match ctx.config.secrets.as_deref() {
        Some(path) => crate::spec::Secrets::load(path),
        None => Ok(crate::spec::Secrets::default()),
    };
    let secrets = match secrets {
        Ok(s) => s,
        Err(e) => {
            say!("job {}: the worker's secrets: {e}", job.id);
            return Ended::Abandoned;
        }
    };
    let mut secret_env = Vec::new();
    for (name, reference) in &description.secrets {
        match secrets.get(&reference.0) {
            Some(value) => secret_env.push((name.clone(), value)),
            None => {
                return refuse(
                    ctx,
                    lease,
                    &format!(
                        "the secret {} (for {name}) is not in this worker's secrets",
                        reference.0
                    ),
                )
                .await;
            }
        }
    }
    let masker = Arc::new(Masker::new(
        ctx.secrets
            .iter()
            .cloned()
            .chain(secret_env.iter().map(|(_, v)| v.clone())),
    ));

    let Some(source) = Digest::parse(&description.source) else {
        return refuse(ctx, lease, "the job's source is not a digest").await;
    };
    let src = dir.join("src");
    if let Err(e) = source::download_dir(&ctx.local, &ctx.remote, &source, &src).await {
        say!("job {}: its source: {e}", job.id);
        return Ended::Abandoned;
    }

    // The buildspec is read by kiln outside the sandbox: a link in the source would have it read
    // (and quote, in an error) a file of the worker's.
    if let Some(why) = linked(&src, Path::new(&plan.buildspec)) {
        return refuse(ctx, lease, &why).await;
    }
    if *stopping.borrow() {
        let q = ctx.queue.get().await;
        return match q.release(lease).await {
            Ok(()) => Ended::Released,
            Err(_) => Ended::Abandoned,
        };
    }
    let mut cmd = plan.command(&ctx.config, dir, &src);
    if !secret_env.is_empty() {
        // In the worker's folder, which the build's sandbox hides.
        let file = dir.join("secret.env");
        let text: String = secret_env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", dotenv_quote(v)))
            .collect();
        if let Err(e) = write_private(&file, &text) {
            say!("job {}: {e}", job.id);
            return Ended::Abandoned;
        }
        cmd.arg("--env-file").arg(&file);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            say!(
                "job {}: cannot run {}: {e}",
                job.id,
                ctx.config.kiln.display()
            );
            return Ended::Abandoned;
        }
    };
    let pid = child.id().map(|p| p as i32);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut out) = stdout {
            let _ = out.read_to_end(&mut bytes).await;
        }
        bytes
    });
    let log_path = dir.join("log");
    let pump = tokio::spawn(pump_log(
        ctx.clone(),
        lease,
        stderr,
        log_path.clone(),
        masker.clone(),
        phase,
        stop_tx.clone(),
    ));

    // Wait for the build, stopping it when told to.
    let mut signalled = false;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut worker_gone = false;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            Ok(()) = stop_rx.changed() => {
                let why = *stop_rx.borrow();
                match why {
                    Stop::LeaseLost => {
                        signal(pid, libc::SIGKILL);
                        signalled = true;
                    }
                    Stop::Cancel | Stop::Release if !signalled => {
                        signal(pid, libc::SIGTERM);
                        signalled = true;
                        kill_at = Some(tokio::time::Instant::now() + ctx.config.cancel_grace);
                    }
                    _ => {}
                }
            }
            changed = stopping.changed(), if !worker_gone => {
                match changed {
                    Ok(()) if *stopping.borrow() => raise(stop_tx, Stop::Release),
                    Ok(()) => {}
                    // The worker's loop is gone: stop too.
                    Err(_) => {
                        worker_gone = true;
                        raise(stop_tx, Stop::Release);
                    }
                }
            }
            () = sleep_until(kill_at) => {
                signal(pid, libc::SIGKILL);
                kill_at = None;
            }
        }
    };
    // Whatever the build left running in its group goes with it.
    signal(pid, libc::SIGKILL);
    let log_bytes = match tokio::time::timeout(Duration::from_secs(10), pump).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };
    let stdout = output.await.unwrap_or_default();
    forget_record(&stdout);
    let why = *stop_rx.borrow();
    match why {
        Stop::LeaseLost => return Ended::LeaseLost,
        Stop::Release => {
            let q = ctx.queue.get().await;
            return match q.release(lease).await {
                Ok(()) => Ended::Released,
                Err(QueueError::LeaseLost(_)) => Ended::LeaseLost,
                Err(e) => {
                    say!("job {}: release: {e}", job.id);
                    Ended::Abandoned
                }
            };
        }
        _ => {}
    }
    let code = exit.and_then(|s| s.code());

    // The log, whole, as one blob.
    let log = match store_log(ctx, &log_path).await {
        Ok(d) => d,
        Err(e) => {
            say!("job {}: its log: {e}", job.id);
            return Ended::Abandoned;
        }
    };
    let (state, mut result) = if signalled && why == Stop::Cancel {
        (
            JobState::Stopped,
            serde_json::json!({ "reason": "cancelled" }),
        )
    } else {
        match serde_json::from_slice::<serde_json::Value>(&stdout) {
            Ok(build) => {
                let state = build["status"]
                    .as_str()
                    .and_then(JobState::parse)
                    .filter(|s| s.is_final())
                    .unwrap_or(JobState::Failed);
                let artifacts = match upload_artifacts(ctx, &build).await {
                    Ok(a) => a,
                    Err(e) => {
                        say!("job {}: its artifacts: {e}", job.id);
                        return Ended::Abandoned;
                    }
                };
                if build["cache"]["key"].is_string() {
                    ctx.metrics
                        .cache_lookup(build["cache"]["hit"].as_bool() == Some(true));
                }
                let cache_key = build["cache"]["key"].clone();
                let cache_saved = build["cache"]["saved"].as_bool().unwrap_or(false);
                (
                    state,
                    serde_json::json!({
                        "artifacts": artifacts,
                        "build": without_host_paths(build),
                        "cache_key": cache_key,
                        "cache_saved": cache_saved,
                    }),
                )
            }
            // No result: the build did not start. Bad input (exit 2) is the job's fault; anything
            // else is the worker's.
            Err(_) => (
                if code == Some(2) {
                    JobState::Failed
                } else {
                    JobState::Fault
                },
                serde_json::json!({ "reason": last_line(&log_path, &masker) }),
            ),
        }
    };
    result["exit_code"] = code.map_or(serde_json::Value::Null, Into::into);
    result["log"] = log.hex().into();
    result["log_bytes"] = log_bytes.into();
    result["worker"] = ctx.config.name.clone().into();
    result["seconds"] = started.elapsed().as_secs_f64().into();
    let result = mask_json(&masker, result);

    match complete(ctx, lease, state, &result).await {
        Ok(()) => {}
        Err(ended) => return ended,
    }
    // Published only now, under a completed lease, and never for a job whose secret variables the
    // build's own masking did not know.
    if state == JobState::Succeeded
        && secret_env.is_empty()
        && result["cache_saved"].as_bool() == Some(true)
        && let Some(key) = result["cache_key"].as_str().and_then(Digest::parse)
    {
        publish(ctx, &key).await;
    }
    Ended::Completed(state)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why `rel` below `root` cannot be the buildspec: a link on its way, or not a file.
fn linked(root: &Path, rel: &Path) -> Option<String> {
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Some(format!(
                    "the buildspec `{}` is reached through a link: a worker reads only a file of the source",
                    rel.display()
                ));
            }
            Ok(_) => {}
            Err(_) => return Some(format!("no buildspec `{}` in the source", rel.display())),
        }
    }
    if path.is_file() {
        None
    } else {
        Some(format!("the buildspec `{}` is not a file", rel.display()))
    }
}

/// Sends `sig` to the build's process group.
fn signal(pid: Option<i32>, sig: i32) {
    if let Some(pid) = pid.filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals the group the child leads; no memory is
        // involved.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Ends a job that cannot be built as described: `FAILED`, with why.
async fn refuse<Q: Queue>(ctx: &Context<Q>, lease: Lease, why: &str) -> Ended {
    say!("job {}: {why}", lease.job);
    let result = serde_json::json!({ "reason": why, "worker": ctx.config.name });
    match complete(ctx, lease, JobState::Failed, &result).await {
        Ok(()) => Ended::Completed(JobState::Failed),
        Err(ended) => ended,
    }
}

/// The fenced completion, tried again while the database is unreachable (within the lease).
async fn complete<Q: Queue>(
    ctx: &Context<Q>,
    lease: Lease,
    state: JobState,
    result: &serde_json::Value,
) -> Result<(), Ended> {
    let deadline = Instant::now() + ctx.config.lease;
    loop {
        let q = ctx.queue.get().await;
        match q.complete(lease, state, result).await {
            Ok(()) => return Ok(()),
            Err(QueueError::LeaseLost(_)) => {
                say!(
                    "job {} attempt {}: the completion was refused: the lease is lost",
                    lease.job,
                    lease.attempt
                );
                return Err(Ended::LeaseLost);
            }
            Err(e) => {
                say!("job {}: complete: {e}", lease.job);
                ctx.queue.recover(&q, &e).await;
                if Instant::now() >= deadline {
                    return Err(Ended::Abandoned);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Publishes the local action cache entry for `key` to the shared store, unless it has one already
/// (the first writer wins: an entry is never replaced).
async fn publish<Q: Queue>(ctx: &Context<Q>, key: &Digest) {
    match ctx.remote.has_action(key).await {
        Ok(true) => {}
        Ok(false) => {
            if let Err(e) = ctx.remote.upload_action(&ctx.local, key).await {
                say!("the cache entry {key}: {e}");
            }
        }
        Err(e) => say!("the cache entry {key}: {e}"),
    }
}

/// Removes the record and the log the build left in the worker's folder (the job's log is the
/// queue's and the store's): a long-lived worker keeps none.
fn forget_record(stdout: &[u8]) {
    let Ok(build) = serde_json::from_slice::<serde_json::Value>(stdout) else {
        return;
    };
    if let Some(log) = build["log_file"].as_str().map(Path::new) {
        let _ = std::fs::remove_file(log);
        let _ = std::fs::remove_file(log.with_extension("json"));
    }
}

/// Stores the log file and sends it to the shared store: its digest.
async fn store_log<Q: Queue>(ctx: &Context<Q>, path: &Path) -> Result<Digest, WorkerError> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let digest = ctx.local.put_bytes(&bytes)?;
    ctx.remote.upload_blobs(&ctx.local, &[digest]).await?;
    Ok(digest)
}

/// Stores each artifact folder the build reported as a tree and sends what the shared store lacks:
/// `[{identifier, name, tree, files}]`.
async fn upload_artifacts<Q: Queue>(
    ctx: &Context<Q>,
    build: &serde_json::Value,
) -> Result<Vec<serde_json::Value>, WorkerError> {
    let mut out = Vec::new();
    for artifact in build["artifacts"].as_array().into_iter().flatten() {
        let Some(path) = artifact["path"].as_str() else {
            continue;
        };
        let (local, path) = (ctx.local.clone(), PathBuf::from(path));
        let (digest, tree) = tokio::task::spawn_blocking(move || Tree::store_dir(&local, &path))
            .await
            .map_err(|e| WorkerError::Job(e.to_string()))??;
        source::upload_tree(&ctx.local, &ctx.remote, &digest, &tree).await?;
        out.push(serde_json::json!({
            "identifier": artifact["identifier"],
            "name": artifact["name"],
            "tree": digest.hex(),
            "files": artifact["files"],
        }));
    }
    Ok(out)
}

/// The build's result without the worker's own paths (its log file, its output folders).
fn without_host_paths(mut build: serde_json::Value) -> serde_json::Value {
    if let Some(map) = build.as_object_mut() {
        map.remove("log_file");
    }
    for artifact in build["artifacts"].as_array_mut().into_iter().flatten() {
        if let Some(map) = artifact.as_object_mut() {
            map.remove("path");
            map.remove("zip");
        }
    }
    build
}

/// `value` with every secret in its text masked.
fn mask_json(masker: &Masker, value: serde_json::Value) -> serde_json::Value {
    let text = value.to_string();
    if !masker.finds(&text) {
        return value;
    }
    serde_json::from_str(&masker.mask(&text)).unwrap_or_else(
        |_| serde_json::json!({ "reason": "the result held a secret and could not be masked" }),
    )
}

/// The last non-empty line of the log: why a build that did not start did not.
fn last_line(log: &Path, masker: &Masker) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the build did not start");
    masker.mask(line).into_owned()
}

/// Reads the build's log, masks it a line at a time, keeps it in `path` and sends it to the queue
/// in chunks: at most [`MAX_CHUNK`] bytes, at least every second. Notes the phase each `Entering
/// phase` line starts, for the heartbeat. The bytes the log holds.
async fn pump_log<Q: Queue + 'static>(
    ctx: Arc<Context<Q>>,
    lease: Lease,
    stderr: Option<impl AsyncRead + Unpin>,
    path: PathBuf,
    masker: Arc<Masker>,
    phase: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<watch::Sender<Stop>>,
) -> u64 {
    use std::io::Write as _;
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            say!("{}: {e}", path.display());
            return 0;
        }
    };
    let Some(mut stderr) = stderr else {
        return 0;
    };
    let mut sender = LogSender {
        ctx,
        lease,
        offset: 0,
        pending: Vec::new(),
        lost: false,
        stop,
    };
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut written = 0u64;
    // Lines are masked whole: a secret split across two reads is still found.
    let mut take_lines = |partial: &mut Vec<u8>, all: bool, sender: &mut LogSender<Q>| {
        let end = if all {
            partial.len()
        } else {
            match partial.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                // A line longer than this goes out in pieces.
                None if partial.len() >= 64 << 10 => partial.len(),
                None => return,
            }
        };
        let lines: Vec<u8> = partial.drain(..end).collect();
        let text = String::from_utf8_lossy(&lines);
        for line in text.split_inclusive('\n') {
            if let Some(name) = line.trim().strip_prefix("[Container] ").and_then(|l| {
                l.split_once("Entering phase ")
                    .map(|(_, p)| p.trim().to_string())
            }) {
                *phase.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
            } else if let Some((_, p)) = line.split_once("Entering phase ") {
                *phase.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.trim().to_string());
            }
        }
        let masked = masker.mask(&text);
        let _ = file.write_all(masked.as_bytes());
        written += masked.len() as u64;
        sender.pending.extend_from_slice(masked.as_bytes());
    };
    loop {
        tokio::select! {
            read = stderr.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    partial.extend_from_slice(&buf[..n]);
                    take_lines(&mut partial, false, &mut sender);
                    if sender.pending.len() >= MAX_CHUNK {
                        sender.send().await;
                    }
                }
            },
            _ = tick.tick() => sender.send().await,
        }
    }
    take_lines(&mut partial, true, &mut sender);
    sender.send().await;
    written
}

/// Log chunks on their way to the queue.
struct LogSender<Q> {
    ctx: Arc<Context<Q>>,
    lease: Lease,
    /// Where the next chunk goes in the attempt's log.
    offset: u64,
    pending: Vec<u8>,
    /// The lease is lost: nothing more is sent.
    lost: bool,
    stop: Arc<watch::Sender<Stop>>,
}

impl<Q: Queue> LogSender<Q> {
    /// Sends what is pending, a chunk at a time; keeps it when the database is unreachable (a chunk
    /// sent again is stored once).
    async fn send(&mut self) {
        while !self.pending.is_empty() && !self.lost {
            let n = self.pending.len().min(MAX_CHUNK);
            let q = self.ctx.queue.get().await;
            match q
                .append_log(self.lease, self.offset, &self.pending[..n])
                .await
            {
                Ok(Appended::Stored { .. }) | Ok(Appended::Duplicate { .. }) => {
                    self.offset += n as u64;
                    self.pending.drain(..n);
                }
                // Past the cap nothing more is kept.
                Ok(Appended::Truncated { end }) => {
                    self.offset = end;
                    self.pending.clear();
                }
                Err(QueueError::LeaseLost(_)) => {
                    say!(
                        "job {} attempt {}: a log chunk was refused: the lease is lost; the build is killed, its results discarded",
                        self.lease.job,
                        self.lease.attempt
                    );
                    self.lost = true;
                    self.pending.clear();
                    raise(&self.stop, Stop::LeaseLost);
                }
                Err(QueueError::LogGap { end, .. }) => self.offset = end,
                Err(e) => {
                    say!("job {}: log: {e}", self.lease.job);
                    self.ctx.queue.recover(&q, &e).await;
                    return;
                }
            }
        }
    }
}

/// What `kiln build` is run with for a job.
struct BuildPlan {
    buildspec: String,
    network: &'static str,
    timeout: Option<String>,
    project: String,
    no_cache: bool,
    env: Vec<(String, String)>,
}

impl BuildPlan {
    /// The plan for a description; why it cannot be built as described.
    fn of(_config: &WorkerConfig, d: &JobDescription) -> Result<BuildPlan, String> {
        let spec = Path::new(&d.buildspec);
        if d.buildspec.is_empty()
            || spec.is_absolute()
            || spec
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "the buildspec `{}` is not a path inside the source",
                d.buildspec
            ));
        }
        let option = |name: &str| d.options.get(name).and_then(|v| v.as_str());
        // A worker runs other people's builds: never on its own network.
        let network = match option("network").unwrap_or("internet") {
            "internet" => "internet",
            "none" => "none",
            other => {
                return Err(format!(
                    "network `{other}`: a worker runs builds with network none or internet only"
                ));
            }
        };
        let timeout = option("timeout").map(str::to_string);
        if let Some(t) = &timeout
            && humantime::parse_duration(t).is_err()
        {
            return Err(format!("the timeout `{t}` is not a duration"));
        }
        let project = option("project").unwrap_or("remote").to_string();
        if project.is_empty()
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!("the project name `{project}` is not valid"));
        }
        Ok(BuildPlan {
            buildspec: d.buildspec.clone(),
            network,
            timeout,
            project,
            no_cache: d
                .options
                .get("no_cache")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            env: d.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// `kiln build` for the source in `src`, in a clean environment, in a process group of its own.
    fn command(&self, config: &WorkerConfig, dir: &Path, src: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&config.kiln);
        cmd.arg("--cache-dir")
            .arg(&config.cache_dir)
            // The worker's whole folder is the builds' state folder, which a build's sandbox
            // hides: no build sees another job's source, log or secrets.
            .arg("--state-dir")
            .arg(&config.work_dir)
            .arg("build")
            .arg(src)
            .arg("--buildspec")
            .arg(src.join(&self.buildspec))
            .args(["--json", "--require-sandbox", "--cache-read-only"])
            // The job's own values go in `--flag=value` form: one that starts with `-` is still a
            // value.
            .arg(format!("--network={}", self.network))
            .arg(format!("--project={}", self.project))
            .arg("--output")
            .arg(dir.join("out"))
            .arg("--cache")
            .arg(&config.cache_url);
        if config.allow_http {
            cmd.arg("--allow-http");
        }
        if let Some(t) = &self.timeout {
            cmd.arg(format!("--timeout={t}"));
        }
        if self.no_cache {
            cmd.arg("--no-cache");
        }
        if let Some(secrets) = &config.secrets {
            cmd.arg("--secrets").arg(secrets);
        }
        for (k, v) in &self.env {
            cmd.arg(format!("--env={k}={v}"));
        }
        // Only what a build needs of the worker's environment: the store's credentials (the build
        // hides them from its commands), the secrets' variables, the basics.
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let name = k.to_string_lossy();
            let keep = matches!(
                name.as_ref(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "LANG" | "LC_ALL" | "TMPDIR" | "TZ"
            ) || name.starts_with("AWS_")
                || name.starts_with("KILN_SECRET_")
                || name == "KILN_LOG";
            if keep {
                cmd.env(k, v);
            }
        }
        // SAFETY: prctl(2) is async-signal-safe; between fork and exec it only asks the kernel to
        // kill the build when the worker dies (a worker killed with -9 leaves no build running).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // Not below the worker's HOME: a build started there would hide only HOME's credentials
        // from itself, not all of HOME.
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// A value as a dotenv file holds it: in double quotes, with `\\`, `\"`, `\n` and `\t` escapes.
fn dotenv_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_refuses_a_buildspec_reached_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("ci")).unwrap();
        std::fs::write(root.join("ci/buildspec.yml"), "version: 0.2\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("buildspec.yml")).unwrap();
        std::os::unix::fs::symlink("ci", root.join("linked")).unwrap();
        assert_eq!(linked(root, Path::new("ci/buildspec.yml")), None);
        let why = |rel: &str| linked(root, Path::new(rel)).unwrap();
        assert!(why("buildspec.yml").contains("through a link"));
        assert!(why("linked/buildspec.yml").contains("through a link"));
        assert!(why("ci").contains("not a file"));
        assert!(why("none.yml").contains("no buildspec"));
    }

    #[test]
    fn worker_finds_only_job_folders_left_over() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join(format!("{}-2", uuid::Uuid::new_v4()));
        std::fs::create_dir(&job).unwrap();
        std::fs::create_dir(dir.path().join("builds")).unwrap();
        std::fs::create_dir(dir.path().join("not-a-job-1")).unwrap();
        assert_eq!(leftover_jobs(dir.path()), [job]);
        assert!(leftover_jobs(&dir.path().join("none")).is_empty());
    }

    #[test]
    fn worker_secret_values_survive_a_dotenv_file() {
        let value = "a \"quoted\" \\ value\nwith 'two' lines\t$HOME";
        let text = format!("X={}\n", dotenv_quote(value));
        let parsed = crate::spec::dotenv::parse(Path::new("x.env"), &text).unwrap();
        assert_eq!(parsed, [("X".to_string(), value.to_string())]);
    }
}
