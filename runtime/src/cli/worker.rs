//! `kiln worker`: claim jobs from the queue and run them, as `kiln build --require-sandbox` would,
//! sharing the build cache through the store.
//!
//! Signals: the first SIGTERM (or SIGINT) drains (claim no more, finish the running jobs, exit 0);
//! a second one, or SIGQUIT, stops the running jobs and gives them back to the queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Args;
use kiln::worker::job::{Conn, Connector, Context, WorkerConfig};
use kiln::worker::metrics::Metrics;
use kiln::worker::postgres::PgQueue;
use kiln::worker::queue::{DEFAULT_QUEUE_NAME, redact};
use kiln::worker::run::Shutdown;

use super::exit;
use super::options::{GlobalArgs, QueueArgs, existing_file};

/// `kiln worker`.
#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    queue: QueueArgs,

    /// The shared store builds take their sources from and leave their outputs, logs and cache
    /// entries in: s3://bucket/prefix (credentials from the AWS_* variables).
    #[arg(long = "cache", env = "KILN_CACHE", value_name = "URL")]
    cache: String,

    /// The queue to serve.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE_NAME)]
    queue_name: String,

    /// This worker's labels, key=value,...: it takes only jobs whose labels are all among them.
    #[arg(long, value_name = "K=V,...", value_delimiter = ',')]
    labels: Vec<String>,

    /// Jobs run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,

    /// Claim at most this many jobs, then exit once they ended (an ephemeral worker).
    #[arg(long, value_name = "N")]
    max_jobs: Option<u64>,

    /// Exit after this long with no job to run, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,

    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,

    /// Between SIGTERM and SIGKILL when a running build is cancelled or stopped.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    cancel_grace: Duration,

    /// The secrets the jobs' references resolve to: a dotenv file of parameter-store names and
    /// secrets-manager references with their values (KILN_SECRET_* variables too).
    #[arg(long, value_name = "FILE", value_parser = existing_file, env = "KILN_SECRETS")]
    secrets: Option<PathBuf>,

    /// This worker's name on the jobs it claims, and its folder's: one worker per name at a time
    /// [default: host name and process id].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Plain HTTP to the store's endpoint (AWS_ENDPOINT_URL) is meant.
    #[arg(long)]
    allow_http: bool,

    /// A lease's length: a job whose worker has not renewed it for this long goes back to the
    /// queue.
    #[arg(long, hide = true, env = "KILN_WORKER_LEASE", default_value = "30s",
          value_parser = humantime::parse_duration)]
    lease: Duration,

    /// How often a running job's lease is renewed.
    #[arg(long, hide = true, env = "KILN_WORKER_HEARTBEAT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    heartbeat: Duration,

    /// How often this worker reaps expired leases.
    #[arg(long, hide = true, env = "KILN_WORKER_REAP", default_value = "15s",
          value_parser = humantime::parse_duration)]
    reap_every: Duration,
}

/// Runs the worker until it drained; its exit code.
pub async fn run(global: &GlobalArgs, args: &WorkerArgs) -> u8 {
    if args.heartbeat >= args.lease {
        eprintln!(
            "error: the heartbeat ({:?}) must be shorter than the lease ({:?})",
            args.heartbeat, args.lease
        );
        return exit::BAD_INPUT;
    }
    for label in &args.labels {
        if !label.contains('=') {
            eprintln!("error: --labels: `{label}` is not key=value");
            return exit::BAD_INPUT;
        }
    }
    let signals = take_signals().await;
    // Every build needs the namespace sandbox (--require-sandbox): a host without it would claim
    // jobs only to fail them all.
    if let Ok(Err(why)) =
        tokio::task::spawn_blocking(kiln::sandbox::os::probe::user_namespaces).await
    {
        eprintln!(
            "error: this host cannot give builds their sandbox ({why}); a worker runs builds only in it (kiln doctor says more)"
        );
        return exit::INTERNAL;
    }
    let Some(cache_dir) = global.cache_dir() else {
        eprintln!("error: no cache folder: give --cache-dir");
        return exit::BAD_INPUT;
    };
    let cas_dir = cache_dir.join("cas");
    let local = match kiln::cas::LocalStore::open(&cas_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let access = kiln::store::Access {
        allow_http: args.allow_http,
        ..Default::default()
    };
    let remote = match kiln::cas::remote::RemoteCache::open(&args.cache, &access) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --cache: {e}");
            return exit::BAD_INPUT;
        }
    };
    let secrets = match &args.secrets {
        Some(path) => match kiln::spec::Secrets::load(path) {
            Ok(s) => s.values().cloned().collect(),
            Err(e) => {
                eprintln!("error: --secrets: {e}");
                return exit::BAD_INPUT;
            }
        },
        None => Vec::new(),
    };
    let secrets: Vec<String> = secrets
        .into_iter()
        .chain(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("KILN_SECRET_"))
                .map(|(_, v)| v),
        )
        .collect();
    let url = args.queue.url.clone();
    let connector: Connector<PgQueue> = Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { PgQueue::connect(&url).await })
    });
    let (queue, beats) = match (
        Conn::open(connector.clone()).await,
        Conn::open(connector).await,
    ) {
        (Ok(q), Ok(b)) => (q, b),
        (Err(e), _) | (_, Err(e)) => return super::queue_error(e),
    };
    let kiln = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find kiln's own program: {e}");
            return exit::INTERNAL;
        }
    };
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let work_dir = global.state_dir().join("worker").join(&name);
    // What a worker of this name left when it was killed: its jobs went back to the queue since.
    let leftovers = kiln::worker::job::leftover_jobs(&work_dir);
    if !leftovers.is_empty() {
        tokio::task::spawn_blocking(move || {
            for dir in leftovers {
                let _ = std::fs::remove_dir_all(dir);
            }
        });
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = args.metrics_addr {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tokio::spawn(kiln::worker::metrics::serve(listener, metrics.clone()));
            }
            Err(e) => {
                eprintln!("error: --metrics-addr {addr}: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    let ctx = Arc::new(Context {
        config: WorkerConfig {
            name: name.clone(),
            queue_url: args.queue.url.clone(),
            queue_name: args.queue_name.clone(),
            labels: args.labels.clone(),
            concurrency: args.concurrency as usize,
            max_jobs: args.max_jobs,
            idle_timeout: args.idle_timeout,
            lease: args.lease,
            heartbeat: args.heartbeat,
            reap_every: args.reap_every,
            cancel_grace: args.cancel_grace,
            kiln,
            cache_dir,
            cas_dir,
            work_dir,
            secrets: args
                .secrets
                .as_ref()
                .map(|s| std::path::absolute(s).unwrap_or_else(|_| s.clone())),
            cache_url: args.cache.clone(),
            allow_http: args.allow_http,
        },
        queue,
        beats,
        local,
        remote,
        secrets,
        metrics,
    });
    eprintln!(
        "kiln worker {name}: queue {} ({}), store {}, {} slot(s)",
        redact(&args.queue.url),
        args.queue_name,
        args.cache,
        args.concurrency
    );
    let (level, shutdown) = tokio::sync::watch::channel(Shutdown::Run);
    // Signals become shutdown levels.
    tokio::spawn(async move {
        let mut said = Shutdown::Run;
        loop {
            let now = signals.level();
            if now > said {
                said = now;
                eprintln!(
                    "kiln worker: {}",
                    match now {
                        Shutdown::Drain =>
                            "draining: no more jobs are claimed; the running ones finish (SIGTERM again stops them)",
                        _ => "stopping the running jobs and giving them back to the queue",
                    }
                );
                let _ = level.send(now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    match kiln::worker::run::run(ctx, shutdown).await {
        Ok(summary) => {
            eprintln!(
                "kiln worker {name}: done: {} claimed, {} completed, {} given back, {} lease(s) lost",
                summary.claimed, summary.completed, summary.released, summary.lost
            );
            exit::OK
        }
        Err(e) => super::queue_error(e),
    }
}

/// SIGTERM, SIGINT and SIGHUP received so far, and SIGQUIT.
static TERMINATE: AtomicU32 = AtomicU32::new(0);
static QUIT: AtomicU32 = AtomicU32::new(0);

/// The signals the worker has received, as a shutdown level.
pub struct Signals;

impl Signals {
    /// Drain after one SIGTERM (SIGINT, SIGHUP), stop after two or a SIGQUIT.
    pub fn level(&self) -> Shutdown {
        match (
            TERMINATE.load(Ordering::SeqCst),
            QUIT.load(Ordering::SeqCst),
        ) {
            (_, q) if q > 0 => Shutdown::Stop,
            (t, _) if t >= 2 => Shutdown::Stop,
            (1, _) => Shutdown::Drain,
            _ => Shutdown::Run,
        }
    }

    /// How many terminating signals (SIGTERM, SIGINT, SIGHUP) came.
    pub fn terminations(&self) -> u32 {
        TERMINATE.load(Ordering::SeqCst)
    }
}

/// Counts SIGTERM, SIGINT, SIGHUP and SIGQUIT for a command that handles them itself (kiln's
/// `main` leaves them to it: see `Command::handles_signals`): a worker drains, a remote build cancels
/// its job.
pub async fn take_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, counter) in [
        (SignalKind::terminate(), &TERMINATE),
        (SignalKind::interrupt(), &TERMINATE),
        (SignalKind::hangup(), &TERMINATE),
        (SignalKind::quit(), &QUIT),
    ] {
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            Err(e) => tracing::warn!("cannot watch a signal: {e}"),
        }
    }
    Signals
}
