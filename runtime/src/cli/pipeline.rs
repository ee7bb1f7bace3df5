//! `kiln pipeline …`: run a CodePipeline declaration (get-pipeline JSON or a CloudFormation
//! template), answer its approvals, retry or stop its executions, show them, and start them on
//! commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use kiln::pipeline::record::{Decision, Execution, Records, Status, StopRequest, Trigger, now_ms};
use kiln::pipeline::run::{self as driver, Start};
use kiln::pipeline::{Context, GroupTarget, Mapping};
use kiln::spec::pipeline::{LoadError, LoadOptions, Pipeline};

mod watch;

use super::exit;
use super::options::{AccessArgs, GlobalArgs, existing_file, parse_key_value};
use super::print_invalid;
use super::settings::{self, CacheScope, SettingsArgs};

/// `kiln pipeline`.
#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Start an execution of a pipeline and drive it to its end: each source at its branch's
    /// head, builds, approvals (waited for), deployments. Exits 0 when the execution succeeded.
    Run(RunArgs),
    /// Answer a manual approval an execution waits at (the latest execution waiting there).
    Approve(ApproveArgs),
    /// Run the failed actions of a failed (or stopped) execution's stage again, with the same
    /// artifacts and variables, and drive the execution on.
    Retry(RetryArgs),
    /// Stop an execution: its in-progress actions finish first, or with --abandon end now.
    Stop(StopArgs),
    /// A pipeline's latest execution (or one), stage by stage, as the console's pipeline view.
    Status(StatusArgs),
    /// Executions, newest first: id, pipeline, status, trigger, source revision, start, duration.
    Executions(ExecutionsArgs),
    /// Start executions on commits: poll each source's repository (or, with --install-hook, have
    /// a local repository's commits start them at once); V2 trigger filters decide which
    /// commits do.
    Watch(WatchArgs),
}

/// Where the pipeline comes from, and what its builds and deployments may use.
#[derive(Args)]
pub struct FileArgs {
    /// The pipeline file: get-pipeline / create-pipeline JSON, or a CloudFormation template (JSON
    /// or YAML) with AWS::CodePipeline::Pipeline resources.
    #[arg(value_parser = existing_file)]
    file: PathBuf,
    /// Which pipeline of a template holding several.
    #[arg(long, value_name = "NAME")]
    pipeline: Option<String>,
    /// A template parameter's value, over its Default (repeatable).
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    parameters: Vec<(String, String)>,
    /// How long a manual approval waits before it fails.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration, value_name = "DURATION")]
    approval_timeout: Duration,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// Run CodeBuild actions on the workers of this build queue
    /// (postgres://user:password@host:port/database), with the shared store of --cache, as
    /// `kiln build --remote` does.
    #[arg(long, env = "KILN_REMOTE", value_name = "URL", hide_env_values = true)]
    remote: Option<String>,
    /// Print no progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    file: FileArgs,
    /// A pipeline variable's value, over its default (repeatable).
    #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    variables: Vec<(String, String)>,
    /// Print the execution's record as JSON when it ends.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ApproveArgs {
    pipeline: String,
    stage: String,
    action: String,
    /// Reject: the action fails, and with it the execution.
    #[arg(long)]
    reject: bool,
    /// Why.
    #[arg(long, default_value = "")]
    comment: String,
    /// The execution [default: the latest one waiting at this approval].
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
}

#[derive(Args)]
pub struct RetryArgs {
    pipeline: String,
    stage: String,
    /// The execution [default: the latest one].
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StopArgs {
    pipeline: String,
    /// The execution [default: the latest one in progress].
    execution: Option<String>,
    /// End in-progress actions now (their builds and deployments are stopped) instead of letting
    /// them finish.
    #[arg(long)]
    abandon: bool,
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Args)]
pub struct StatusArgs {
    pipeline: String,
    /// The execution [default: the latest one].
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExecutionsArgs {
    /// Only this pipeline's.
    pipeline: Option<String>,
    /// How many to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    file: FileArgs,
    /// How often to look at the repositories.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Look once, start (and drive) what the commits since the last look call for, and exit.
    #[arg(long)]
    once: bool,
    /// Install git hooks in the pipeline's local repositories so that each commit runs
    /// `kiln pipeline watch --once` at once (in the background), then exit.
    #[arg(long, conflicts_with = "uninstall_hook")]
    install_hook: bool,
    /// Remove the hooks --install-hook installed.
    #[arg(long)]
    uninstall_hook: bool,
}

/// Runs a `kiln pipeline` command; its exit code.
pub async fn run(global: &GlobalArgs, command: &PipelineCommand) -> u8 {
    match command {
        PipelineCommand::Run(args) => run_pipeline(global, args).await,
        PipelineCommand::Approve(args) => approve(global, args).await,
        PipelineCommand::Retry(args) => retry(global, args).await,
        PipelineCommand::Stop(args) => stop(global, args),
        PipelineCommand::Status(args) => status(global, args),
        PipelineCommand::Executions(args) => executions(global, args),
        PipelineCommand::Watch(args) => watch::run(global, args).await,
    }
}

/// Reads the pipeline file and picks its pipeline; the exit code after saying why not.
pub(super) fn load(args: &FileArgs) -> Result<Pipeline, u8> {
    let options = LoadOptions {
        parameters: args.parameters.clone(),
        claimed: Vec::new(),
    };
    let loaded = match kiln::spec::pipeline::load(&args.file, &options) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(e)) => return Err(print_invalid(&e)),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(exit::BAD_INPUT);
        }
    };
    if !loaded.warnings.is_empty() {
        let rendered = kiln::spec::diagnostic::render_all(
            &loaded.path,
            &loaded.source,
            &loaded.warnings,
            false,
        );
        eprintln!("{rendered}");
    }
    match kiln::spec::pipeline::select(&loaded, args.pipeline.as_deref()) {
        Ok(p) => Ok(p.clone()),
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            Err(exit::BAD_INPUT)
        }
    }
}

/// The context executions of the pipeline in `file` run in: kiln.toml's settings and mapping
/// (found from the file's folder), and how builds and deployments are made.
pub(super) async fn context(global: &GlobalArgs, args: &FileArgs) -> Result<Context, u8> {
    let file = std::path::absolute(&args.file).map_err(|e| {
        eprintln!("error: {}: {e}", args.file.display());
        exit::BAD_INPUT
    })?;
    let folder = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let settings = settings::resolve(&args.settings, &folder)?;
    let (mapping, project_dir) = match &settings.file {
        Some(path) => (
            mapping(path, settings.pipeline.clone())?,
            path.parent().unwrap_or(&folder).to_path_buf(),
        ),
        None => (Mapping::default(), folder.clone()),
    };
    let secrets = match &settings.secrets {
        Some(path) => match kiln::spec::Secrets::load(path) {
            Ok(s) => s,
            Err(kiln::spec::secrets::SecretsError::Invalid(e)) => return Err(print_invalid(&e)),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(exit::BAD_INPUT);
            }
        },
        None => kiln::spec::Secrets::default(),
    };
    let state_dir = global.state_dir();
    let artifacts_dir = Context::artifacts_dir(&state_dir);
    let artifacts = kiln::cas::LocalStore::open(&artifacts_dir).map_err(|e| {
        eprintln!(
            "error: the pipeline artifact store {}: {e}",
            artifacts_dir.display()
        );
        exit::INTERNAL
    })?;
    let access = args.access.access().ok_or(exit::BAD_INPUT)?;
    let remote = match &args.remote {
        Some(url) => Some(remote_builds(global, url, &settings, &access).await?),
        None => None,
    };
    let hidden = super::build::secret_paths(global, settings.secrets.as_deref());
    let locked_plugins = super::settings::locked_plugins(global, &settings).await?;
    let build_settings = settings;
    let build_state = state_dir.clone();
    let components = global.components_dir();
    let cas_dir = global.cas_dir();
    let verbose = global.verbose > 0;
    let build = move |r: kiln::pipeline::BuildRequest| kiln::build::BuildOptions {
        buildspec: r.buildspec.map(|b| r.source.join(b)),
        source: r.source,
        in_place: false,
        source_version: None,
        env: r.env,
        pass_env: build_settings.pass_env.clone(),
        secrets: build_settings.secrets.clone(),
        output: Some(r.output),
        zip: false,
        network: build_settings.network,
        require_sandbox: false,
        confine: true,
        writable: build_settings.writable.clone(),
        expose: Vec::new(),
        memory: build_settings.memory.map(|m| m as u64),
        pids_limit: 4096,
        disk_limit: build_settings.disk_limit.map(|d| d as u64),
        secrets_hidden: hidden.clone(),
        timeout: Duration::from_secs(3600),
        step_timeout: build_settings.step_timeout,
        memory_limit: 512 << 20,
        plugins: build_settings.plugins.clone(),
        locked_plugins: locked_plugins.clone(),
        project: Some(r.project),
        state_dir: build_state.clone(),
        cache_dir: components.clone(),
        console: kiln::build::log::Console::Quiet,
        progress: false,
        verbose,
        initiator: r.initiator,
        cas_dir: cas_dir.clone(),
        no_cache: false,
        explain_cache: false,
        shared_cache_scope: build_settings.cache_scope == CacheScope::Shared,
        remote_cache: build_settings.remote_cache.as_deref().and_then(|url| {
            kiln::cas::remote::RemoteCache::open(url, &kiln::store::Access::default()).ok()
        }),
        phases: None,
        secondary_sources: r.secondary_sources,
        secret_env: r.secret_env,
        announce: None,
    };
    let deploy_root = global.deploy_root();
    let deploy_state = state_dir.clone();
    let deploy_access = access.clone();
    let deploy_components = global.components_dir();
    let deploy = move |r: kiln::pipeline::DeployRequest| kiln::deploy::DeployOptions {
        revision: r.revision,
        group: r.group,
        application: r.application,
        remember_root_in: r.root.as_ref().map(|_| deploy_state.clone()),
        root: r.root.unwrap_or_else(|| deploy_root.clone()),
        ignore_application_stop_failures: false,
        rollback: true,
        max_revisions: 5,
        confine_hooks: false,
        file_exists_behavior: kiln::spec::appspec::FileExists::Disallow,
        access: deploy_access.clone(),
        cache_dir: deploy_components.clone(),
        echo: false,
        strategy: kiln::deploy::Strategy::InPlace,
        limits: Default::default(),
    };
    let quiet = args.quiet;
    Ok(Context {
        records: Records::new(&state_dir),
        state_dir,
        artifacts,
        file,
        project_dir,
        mapping,
        access,
        secrets,
        approval_timeout: args.approval_timeout,
        build: Box::new(build),
        deploy: Box::new(deploy),
        say: Box::new(move |line| {
            if !quiet {
                eprintln!("{line}");
            }
        }),
        providers: Vec::new(),
        remote,
    })
}

/// The build queue and shared store CodeBuild actions run with under `--remote`.
async fn remote_builds(
    global: &GlobalArgs,
    url: &str,
    settings: &settings::Settings,
    access: &kiln::store::Access,
) -> Result<kiln::pipeline::RemoteBuilds, u8> {
    let Some(cache_url) = settings.remote_cache.as_deref() else {
        eprintln!("error: --remote needs the shared store too: --cache s3://bucket/prefix");
        return Err(exit::BAD_INPUT);
    };
    let store = kiln::cas::remote::RemoteCache::open(cache_url, access).map_err(|e| {
        eprintln!("error: --cache: {e}");
        exit::BAD_INPUT
    })?;
    let Some(cas_dir) = global.cas_dir() else {
        eprintln!("error: no cache folder: give --cache-dir");
        return Err(exit::BAD_INPUT);
    };
    let local = kiln::cas::LocalStore::open(&cas_dir).map_err(|e| {
        eprintln!("error: {e}");
        exit::INTERNAL
    })?;
    let queue = super::connect_queue(url).await?;
    let mut options = serde_json::Map::new();
    options.insert("network".into(), settings.network.as_str().into());
    Ok(kiln::pipeline::RemoteBuilds {
        queue: Arc::new(queue),
        store,
        local,
        options,
    })
}

/// kiln.toml's `[pipeline]` tables (of the kiln.toml at `path`, read with the settings) as the
/// executor's mapping.
fn mapping(
    path: &Path,
    pipeline: Option<kiln::spec::config::Setting<kiln::spec::config::PipelineConfig>>,
) -> Result<Mapping, u8> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(p) = pipeline else {
        return Ok(Mapping::default());
    };
    let p = p.value;
    // Where builds run, and with them the values of their variables, is the user's choice, never
    // the project's: as `kiln build --remote`, the queue comes from --remote or KILN_REMOTE.
    if let Some(queue) = &p.queue {
        eprintln!(
            "error: {}:{}:{}: a kiln.toml cannot choose the build queue (it would send the builds' variables to a database the project names): give --remote URL or KILN_REMOTE",
            path.display(),
            queue.span.line,
            queue.span.column
        );
        return Err(exit::BAD_INPUT);
    }
    let pairs = |list: Vec<(String, kiln::spec::config::Setting<String>)>| {
        list.into_iter().map(|(k, v)| (k, v.value)).collect()
    };
    Ok(Mapping {
        sources: pairs(p.sources),
        projects: pairs(p.projects),
        artifact_stores: pairs(p.artifact_stores),
        deployment_groups: p
            .deployment_groups
            .into_iter()
            .map(|(k, v)| {
                let g = v.value;
                (
                    k,
                    GroupTarget {
                        root: g.root.map(|r| dir.join(r)),
                        reference: g.reference,
                        application: g.application,
                    },
                )
            })
            .collect(),
    })
}

/// Who the user is, for records.
pub(super) fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "local".into())
}

/// The pipeline of the file and the context its executions run in; the exit code after saying
/// why not.
pub(super) async fn prepare(
    global: &GlobalArgs,
    args: &FileArgs,
) -> Result<(Pipeline, Arc<Context>), u8> {
    let pipeline = load(args)?;
    Ok((pipeline, Arc::new(context(global, args).await?)))
}

async fn run_pipeline(global: &GlobalArgs, args: &RunArgs) -> u8 {
    let (pipeline, ctx) = match prepare(global, &args.file).await {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let start = Start {
        trigger: Trigger {
            trigger_type: "StartPipelineExecution".into(),
            trigger_detail: format!("kiln/{}", user()),
        },
        variables: args.variables.iter().cloned().collect(),
        revisions: Default::default(),
    };
    let (execution, lock) = match driver::create(&ctx, &pipeline, start) {
        Ok(created) => created,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    ctx.say(&format!(
        "{}: execution {} started ({} mode)",
        pipeline.name,
        execution.id,
        pipeline.execution_mode.as_str()
    ));
    drive_here(ctx, execution, lock, args.json).await
}

/// Drives an execution in this process to its end, prints it and gives the exit code. Ctrl-C (or
/// SIGTERM, SIGHUP) stops the execution, its in-progress actions abandoned (their builds and
/// deployments stopped), and is exit 130; a second one leaves at once, the execution's record
/// then saying that no process drives it (`stop` and `retry` take it over).
async fn drive_here(ctx: Arc<Context>, e: Execution, lock: driver::Driving, json: bool) -> u8 {
    let signals = super::worker::take_signals().await;
    let before = signals.terminations();
    let records = ctx.records.clone();
    let (pipeline, id) = (e.pipeline.clone(), e.id.clone());
    let drive = driver::drive(ctx, e, lock);
    tokio::pin!(drive);
    let mut interrupted = false;
    loop {
        tokio::select! {
            done = &mut drive => {
                let code = finish(&done, json);
                return if interrupted { exit::INTERRUPTED } else { code };
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let signals = signals.terminations() - before;
                if signals >= 2 {
                    eprintln!("kiln: interrupted again; leaving execution {id} as it is");
                    return exit::INTERRUPTED;
                }
                if signals == 1 && !interrupted {
                    interrupted = true;
                    eprintln!("kiln: interrupted; stopping execution {id} (its actions are abandoned)");
                    let stop = StopRequest {
                        abandon: true,
                        reason: "interrupted".into(),
                        by: user(),
                    };
                    if let Err(e) = records.request_stop(&pipeline, &id, &stop) {
                        eprintln!("error: {e}");
                        return exit::INTERRUPTED;
                    }
                }
            }
        }
    }
}

/// Prints an ended execution; its exit code: 0 when it succeeded.
fn finish(e: &Execution, json: bool) -> u8 {
    if json {
        super::print_json(e);
    } else {
        out!(
            "{} execution {} {}{}",
            e.pipeline,
            e.id,
            e.status.as_str(),
            e.status_summary
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
    }
    if e.status == Status::Succeeded {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// The context to drive a recorded execution in: its pipeline file's, as when it started.
async fn context_of(global: &GlobalArgs, e: &Execution) -> Result<Context, u8> {
    let args = FileArgs {
        file: e.file.clone(),
        pipeline: None,
        parameters: Vec::new(),
        approval_timeout: kiln::pipeline::APPROVAL_TIMEOUT,
        settings: SettingsArgs::default(),
        access: AccessArgs::default(),
        remote: std::env::var("KILN_REMOTE").ok().filter(|v| !v.is_empty()),
        quiet: false,
    };
    if !e.file.is_file() {
        eprintln!(
            "error: the execution's pipeline file {} is gone: kiln needs its folder's kiln.toml to go on",
            e.file.display()
        );
        return Err(exit::NOT_FOUND);
    }
    context(global, &args).await
}

/// Finds the position of a stage and an action in an execution.
fn position(e: &Execution, stage: &str, action: &str) -> Option<(usize, usize)> {
    let si = e.stages.iter().position(|s| s.name == stage)?;
    let ai = e.stages[si].actions.iter().position(|a| a.name == action)?;
    Some((si, ai))
}

async fn approve(global: &GlobalArgs, args: &ApproveArgs) -> u8 {
    let records = Records::new(&global.state_dir());
    let waiting = |e: &Execution| {
        position(e, &args.stage, &args.action).is_some_and(|(si, ai)| {
            let a = &e.stages[si].actions[ai];
            a.status == Status::InProgress
                && a.approval.as_ref().is_some_and(|ap| ap.decision.is_none())
        })
    };
    let execution = match &args.execution {
        Some(id) => records.load(&args.pipeline, id).map_err(|e| e.to_string()),
        None => records
            .executions(&args.pipeline)
            .into_iter()
            .find(|e| e.status == Status::InProgress && waiting(e))
            .ok_or_else(|| {
                format!(
                    "no execution of {} waits at {}/{}",
                    args.pipeline, args.stage, args.action
                )
            }),
    };
    let execution = match execution {
        Ok(e) => e,
        Err(why) => {
            eprintln!("error: {why}");
            return exit::NOT_FOUND;
        }
    };
    let Some((si, ai)) = position(&execution, &args.stage, &args.action) else {
        eprintln!(
            "error: execution {} has no action {}/{}",
            execution.id, args.stage, args.action
        );
        return exit::NOT_FOUND;
    };
    if !waiting(&execution) {
        eprintln!(
            "error: {}/{} of execution {} does not wait for an answer (it is {})",
            args.stage,
            args.action,
            execution.id,
            execution.stages[si].actions[ai].status.as_str()
        );
        return exit::BAD_INPUT;
    }
    let decision = Decision {
        approved: !args.reject,
        by: user(),
        comment: args.comment.clone(),
        at_ms: now_ms(),
    };
    if let Err(e) = records.request_approval(&args.pipeline, &execution.id, si, ai, &decision) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let verb = if args.reject { "rejected" } else { "approved" };
    if records.is_driven(&args.pipeline, &execution.id) {
        out!(
            "{verb} {}/{} of execution {}: its kiln process goes on",
            args.stage,
            args.action,
            execution.id
        );
        return exit::OK;
    }
    // No process drives the execution (the one that started it has gone): this one does.
    out!(
        "{verb} {}/{} of execution {}; no kiln process drives it any more, so this one does",
        args.stage,
        args.action,
        execution.id
    );
    resume(global, &execution, false).await
}

/// Drives a recorded execution no process drives, to its end.
async fn resume(global: &GlobalArgs, e: &Execution, json: bool) -> u8 {
    let ctx = match context_of(global, e).await {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    match driver::take_over(&ctx, &e.pipeline, &e.id) {
        Ok((execution, lock)) => drive_here(ctx, execution, lock, json).await,
        Err(err) => {
            eprintln!("error: {err}");
            exit::BAD_INPUT
        }
    }
}

async fn retry(global: &GlobalArgs, args: &RetryArgs) -> u8 {
    let records = Records::new(&global.state_dir());
    let execution = match &args.execution {
        Some(id) => records.load(&args.pipeline, id),
        None => records
            .executions(&args.pipeline)
            .into_iter()
            .next()
            .ok_or_else(|| {
                kiln::pipeline::record::RecordError::NotFound(format!(
                    "any execution of {}",
                    args.pipeline
                ))
            }),
    };
    let execution = match execution {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::NOT_FOUND;
        }
    };
    let ctx = match context_of(global, &execution).await {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    match driver::prepare_retry(&ctx, &args.pipeline, &execution.id, &args.stage) {
        Ok((e, lock)) => {
            ctx.say(&format!(
                "{}: retrying stage {} of execution {}",
                e.pipeline, args.stage, e.id
            ));
            drive_here(ctx, e, lock, args.json).await
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

fn stop(global: &GlobalArgs, args: &StopArgs) -> u8 {
    let records = Records::new(&global.state_dir());
    let execution = match &args.execution {
        Some(id) => records.load(&args.pipeline, id).map_err(|e| e.to_string()),
        None => records
            .executions(&args.pipeline)
            .into_iter()
            .find(|e| !e.status.is_final())
            .ok_or_else(|| format!("no execution of {} is in progress", args.pipeline)),
    };
    let execution = match execution {
        Ok(e) => e,
        Err(why) => {
            eprintln!("error: {why}");
            return exit::NOT_FOUND;
        }
    };
    if execution.status.is_final() {
        eprintln!(
            "error: execution {} has ended already ({})",
            execution.id,
            execution.status.as_str()
        );
        return exit::BAD_INPUT;
    }
    let request = StopRequest {
        abandon: args.abandon,
        reason: args.reason.clone(),
        by: user(),
    };
    // The request first: a driver that ends between the two steps leaves nothing to stop.
    if let Err(e) = records.request_stop(&args.pipeline, &execution.id, &request) {
        eprintln!("error: {e}");
        return exit::INTERNAL;
    }
    match driver::stop_undriven(&records, &args.pipeline, &execution.id, &request) {
        Ok(Some(e)) => {
            records.clear_stop(&args.pipeline, &e.id);
            out!(
                "execution {} Stopped (no kiln process was driving it)",
                e.id
            );
            exit::OK
        }
        Ok(None) => {
            out!(
                "execution {} Stopping: {}",
                execution.id,
                if args.abandon {
                    "its in-progress actions are abandoned now"
                } else {
                    "its in-progress actions finish first"
                }
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

fn status(global: &GlobalArgs, args: &StatusArgs) -> u8 {
    let records = Records::new(&global.state_dir());
    let execution = match &args.execution {
        Some(id) => records.load(&args.pipeline, id).ok(),
        None => records.executions(&args.pipeline).into_iter().next(),
    };
    let Some(e) = execution else {
        eprintln!("error: no execution of {} is recorded", args.pipeline);
        return exit::NOT_FOUND;
    };
    if args.json {
        super::print_json(&e);
        return exit::OK;
    }
    let driven = records.is_driven(&e.pipeline, &e.id);
    out!(
        "{} execution {} {} ({} ago, {}: {}){}",
        e.pipeline,
        e.id,
        e.status.as_str(),
        ago(e.started_ms),
        e.trigger.trigger_type,
        e.trigger.trigger_detail,
        if !e.status.is_final() && !driven {
            " — no kiln process drives it: `kiln pipeline stop` or `retry`"
        } else {
            ""
        }
    );
    if let Some(summary) = &e.status_summary {
        out!("  {summary}");
    }
    for r in &e.source_revisions {
        out!(
            "  source {}: {} {}",
            r.action_name,
            &r.revision_id[..r.revision_id.len().min(12)],
            r.revision_summary
        );
    }
    out!(
        "{:<16} {:<11} {:<24} {:<22} {:>8}  {}",
        "STAGE",
        "STATUS",
        "ACTION",
        "PROVIDER",
        "TIME",
        "DETAIL"
    );
    for (stage, def) in e.stages.iter().zip(&e.definition.stages) {
        for (i, (a, adef)) in stage.actions.iter().zip(&def.actions).enumerate() {
            let (sname, sstatus) = if i == 0 {
                (stage.name.as_str(), stage.status.as_str())
            } else {
                ("", "")
            };
            out!(
                "{:<16} {:<11} {:<24} {:<22} {:>8}  {}",
                sname,
                sstatus,
                format!("{} {}", a.name, a.status.as_str()),
                adef.action_type_id.provider,
                duration(a.started_ms, a.ended_ms),
                detail(a)
            );
        }
    }
    if let Some(stage) = &e.waiting_for {
        out!("waiting to enter stage {stage}: another execution is in it");
    }
    exit::OK
}

/// What the status table says of an action beyond its status: the live log line of a running
/// one, the approval it waits for, why it failed.
fn detail(a: &kiln::pipeline::record::ActionRecord) -> String {
    if let Some(error) = &a.error {
        return error.clone();
    }
    if let Some(approval) = &a.approval {
        match &approval.decision {
            Some(d) => {
                return format!(
                    "{} by {}{}",
                    if d.approved { "approved" } else { "rejected" },
                    d.by,
                    if d.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", d.comment)
                    }
                );
            }
            None if a.status == Status::InProgress => {
                return format!(
                    "waiting for approval{}",
                    approval
                        .custom_data
                        .as_deref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                );
            }
            None => {}
        }
    }
    if a.status == Status::InProgress
        && let Some(line) = a.log.as_deref().and_then(last_line)
    {
        return line;
    }
    a.build_id
        .clone()
        .or_else(|| a.deployment_id.clone())
        .unwrap_or_default()
}

/// The last non-empty line of a log file (read from its end).
fn last_line(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(100).collect())
}

fn duration(start: Option<u64>, end: Option<u64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => format!("{:.1}s", e.saturating_sub(s) as f64 / 1000.0),
        (Some(s), None) => format!("{:.0}s…", now_ms().saturating_sub(s) as f64 / 1000.0),
        _ => "-".into(),
    }
}

fn ago(ms: u64) -> String {
    let secs = now_ms().saturating_sub(ms) / 1000;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn executions(global: &GlobalArgs, args: &ExecutionsArgs) -> u8 {
    let records = Records::new(&global.state_dir());
    let names = match &args.pipeline {
        Some(name) => vec![name.clone()],
        None => records.pipelines(),
    };
    let mut all: Vec<Execution> = names.iter().flat_map(|n| records.executions(n)).collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.started_ms));
    all.truncate(args.limit);
    if args.json {
        super::print_json(&all);
        return exit::OK;
    }
    if all.is_empty() {
        eprintln!(
            "no pipeline executions recorded in {}",
            global.state_dir().display()
        );
        return exit::OK;
    }
    out!(
        "{:<36} {:<20} {:<11} {:<24} {:<14} {:>9}",
        "EXECUTION",
        "PIPELINE",
        "STATUS",
        "TRIGGER",
        "SOURCE",
        "DURATION"
    );
    for e in &all {
        out!(
            "{:<36} {:<20} {:<11} {:<24} {:<14} {:>9}",
            e.id,
            e.pipeline,
            e.status.as_str(),
            e.trigger.trigger_type,
            e.source_revisions
                .first()
                .map(|r| r.revision_id.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "-".into()),
            duration(Some(e.started_ms), e.ended_ms.or(Some(now_ms())))
        );
    }
    exit::OK
}
