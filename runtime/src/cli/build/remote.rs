//! `kiln build --remote postgres://…`: the same build, on a worker. The source is snapshotted as a
//! local build does and sent to the shared store (only the blobs it lacks), the job is submitted, its
//! log is printed as the worker writes it, and its artifacts are fetched into the output folder.
//! The exit code and `--json` are a local build's; Ctrl-C cancels the job (a second one leaves it).

use std::path::PathBuf;
use std::time::Duration;

use kiln::worker::queue::{JobDescription, JobState, Queue, SecretRef, Submission};
use kiln::worker::remote::{Follow, follow};

use super::super::exit;
use super::super::options::GlobalArgs;
use super::super::settings;
use super::BuildArgs;

/// After this long in the queue, a remote build says it is waiting for a worker.
const WAITING_NOTE: Duration = Duration::from_secs(5);

/// Runs the build on a worker; its exit code.
pub async fn run(global: &GlobalArgs, args: &BuildArgs, url: &str) -> u8 {
    let signals = super::super::worker::take_signals().await;
    let (source, buildspec) = match super::project(args.dir.as_ref(), args.buildspec.as_ref()) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let settings = match settings::resolve(&args.settings, &source) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    // A job carries the project and its settings, not the plugin components: said, not dropped.
    if let Some(name) = settings
        .plugins
        .iter()
        .map(|(name, _)| name)
        .chain(settings.plugin_refs.iter().map(|(name, _)| name))
        .next()
    {
        eprintln!(
            "error: plugin `{name}`: builds on the queue's workers do not take plugins yet; build here (without --remote) to use them"
        );
        return exit::BAD_INPUT;
    }
    let Some(cache_url) = settings.remote_cache.as_deref() else {
        eprintln!("error: --remote needs the shared store too: --cache s3://bucket/prefix");
        return exit::BAD_INPUT;
    };
    let access = kiln::store::Access {
        allow_http: args.allow_http,
        ..Default::default()
    };
    let remote = match kiln::cas::remote::RemoteCache::open(cache_url, &access) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --cache: {e}");
            return exit::BAD_INPUT;
        }
    };
    let Some(cas_dir) = global.cas_dir() else {
        eprintln!("error: no cache folder: give --cache-dir");
        return exit::BAD_INPUT;
    };
    let local = match kiln::cas::LocalStore::open(&cas_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let source = match source.canonicalize() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", source.display());
            return exit::BAD_INPUT;
        }
    };
    let spec = match kiln::build::find_buildspec(&source, buildspec.as_deref()) {
        Ok(p) => p,
        Err(e) => return super::not_started(&e),
    };
    let spec = spec.canonicalize().unwrap_or(spec);
    let Ok(spec_rel) = spec.strip_prefix(&source) else {
        eprintln!(
            "error: the buildspec {} is not in the project {}: a remote build sends only the project",
            spec.display(),
            source.display()
        );
        return exit::BAD_INPUT;
    };
    let output = settings
        .output
        .clone()
        .map(|o| std::path::absolute(&o).unwrap_or(o))
        .unwrap_or_else(|| source.join(".kiln/out"));
    let exclude: Vec<PathBuf> = [output.as_path(), &source.join(".kiln")]
        .iter()
        .filter_map(|p| p.strip_prefix(&source).ok())
        .filter(|rel| !rel.as_os_str().is_empty())
        .map(PathBuf::from)
        .collect();
    let (digest, sent) =
        match kiln::worker::remote::upload_source(&local, &remote, &source, &exclude).await {
            Ok(done) => done,
            Err(e) => {
                eprintln!("error: the source: {e}");
                return exit::UNREACHABLE;
            }
        };
    let mut env = Vec::new();
    for file in &args.env_file {
        match super::env_file(file) {
            Ok(vars) => env.extend(vars),
            Err(code) => return code,
        }
    }
    env.extend(args.env.iter().cloned());
    let mut options = serde_json::Map::new();
    options.insert("network".into(), settings.network.as_str().into());
    options.insert(
        "timeout".into(),
        humantime::format_duration(args.timeout).to_string().into(),
    );
    if let Some(project) = &args.project {
        options.insert("project".into(), project.clone().into());
    }
    if args.no_cache {
        options.insert("no_cache".into(), true.into());
    }
    let description = JobDescription {
        source: digest.hex(),
        buildspec: spec_rel.to_string_lossy().into_owned(),
        options,
        env: env.into_iter().collect(),
        secrets: args
            .secret_ref
            .iter()
            .map(|(name, reference)| (name.clone(), SecretRef(reference.clone())))
            .collect(),
    };
    let queue = match super::super::connect_queue(url).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    if let Some(bad) = args.labels.iter().find(|l| !l.contains('=')) {
        eprintln!("error: --labels: `{bad}` is not key=value");
        return exit::BAD_INPUT;
    }
    let mut submission = Submission::new(description);
    submission.priority = args.priority;
    submission.labels = args.labels.clone();
    let job = match queue.submit(&submission).await {
        Ok(id) => id,
        Err(e) => return super::super::queue_error(e),
    };
    if !args.quiet {
        eprintln!(
            "kiln: job {job} queued ({} of {} source blobs sent to {})",
            sent.moved,
            sent.blobs,
            remote.url()
        );
    }
    // The log, as the worker writes it; an attempt that starts again starts its log again.
    let mut attempt = 0;
    let mut cancelled = 0;
    let submitted = std::time::Instant::now();
    let mut said_waiting = false;
    let on_log = |_attempt: u32, bytes: &[u8]| {
        if !args.quiet {
            print_log(bytes, args.json);
        }
    };
    let on_look = |record: &kiln::worker::queue::Job| {
        if record.attempt != attempt && record.attempt > 0 {
            if attempt > 0 {
                eprintln!(
                    "kiln: attempt {attempt} was lost; attempt {} on {}",
                    record.attempt,
                    record.worker.as_deref().unwrap_or("another worker")
                );
            }
            attempt = record.attempt;
        }
        if record.state == JobState::Queued
            && !said_waiting
            && !args.quiet
            && submitted.elapsed() >= WAITING_NOTE
        {
            said_waiting = true;
            eprintln!(
                "kiln: job {job} is still queued: no worker of the queue `{}`{} is free",
                record.queue,
                if record.labels.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", record.labels.join(","))
                }
            );
        }
        let terminations = signals.terminations();
        if terminations > cancelled {
            if cancelled > 0 {
                eprintln!("kiln: interrupted again; job {job} goes on (kiln cancel {job})");
                return Follow::Leave;
            }
            cancelled = terminations;
            eprintln!("kiln: interrupted; cancelling job {job}");
            return Follow::Cancel;
        }
        Follow::Wait
    };
    let finished = match follow(&queue, job, on_log, on_look).await {
        Ok(Some(finished)) => finished,
        Ok(None) => return exit::INTERRUPTED,
        Err(e) => return super::super::queue_error(e),
    };
    let result = finished.result.clone().unwrap_or_default();
    let mut build = result["build"].clone();
    if build.is_null() {
        build = serde_json::json!({
            "status": finished.state.as_str(),
            "reason": result["reason"],
        });
    }
    if finished.state == JobState::Succeeded {
        match kiln::worker::remote::fetch_artifacts(&local, &remote, &result, &output).await {
            Ok(fetched) => build["artifacts"] = serde_json::to_value(&fetched).unwrap_or_default(),
            Err(e) => {
                eprintln!("error: the artifacts of job {job}: {e}");
                return exit::UNREACHABLE;
            }
        }
    }
    // The fields of a local build's result that name files of this machine: the log is the job's
    // (in the queue, and in the store by its digest).
    build["log_file"] = serde_json::Value::Null;
    for a in build["artifacts"].as_array_mut().into_iter().flatten() {
        a["zip"] = serde_json::Value::Null;
    }
    build["job"] = serde_json::json!({
        "id": job,
        "attempt": finished.attempt,
        "worker": finished.worker,
        "state": finished.state,
        "log": result["log"],
    });
    if args.json {
        match serde_json::to_string_pretty(&build) {
            Ok(json) => out!("{json}"),
            Err(e) => {
                eprintln!("error: cannot print the result: {e}");
                return exit::INTERNAL;
            }
        }
    } else if !args.quiet {
        for a in build["artifacts"].as_array().into_iter().flatten() {
            out!(
                "artifact {}: {}",
                a["name"].as_str().unwrap_or("-"),
                a["path"].as_str().unwrap_or("-")
            );
        }
        out!(
            "job {job} {} (attempt {} on {})",
            finished.state,
            finished.attempt,
            finished.worker.as_deref().unwrap_or("-")
        );
    }
    match finished.state {
        JobState::Succeeded => exit::OK,
        JobState::Stopped if cancelled > 0 => exit::INTERRUPTED,
        _ => exit::FAILED,
    }
}

/// Prints log bytes where a local build prints its log: stdout, or stderr under `--json`.
fn print_log(bytes: &[u8], json: bool) {
    use std::io::Write as _;
    if json {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes).and_then(|()| err.flush());
    } else {
        super::super::print_bytes(bytes);
    }
}
