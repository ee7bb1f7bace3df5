//! The `kiln` command line: one file per command (its clap arguments and its `run`), the option
//! groups several commands share in [`options`], the exit codes in [`exit`]. Commands parse, call the
//! library and print; the library knows nothing of clap.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

/// `println!` for what kiln prints on stdout, without the panic when the reader has gone (`kiln
/// cache ls | head`): the rest of the output is dropped, and the exit code stays kiln's.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod agent;
pub mod build;
pub mod builds;
pub mod cache;
pub mod cancel;
pub mod completions;
pub mod config;
pub mod deploy;
pub mod deployments;
pub mod doctor;
pub mod exit;
pub mod hash_files;
pub mod init;
pub mod jobs;
pub mod logs;
pub mod ls;
pub mod man;
pub mod options;
pub mod package;
pub mod pipeline;
pub mod plan;
pub mod plugin;
pub mod pull;
pub mod push;
pub mod queue;
pub mod retry;
pub mod rollback;
pub mod serve;
pub mod settings;
pub mod validate;
pub mod worker;

/// Run AWS CodeBuild buildspecs locally, every step a WebAssembly plugin in a sandbox.
///
/// Exit codes: 0 success, 1 the build failed, 2 bad input or usage, 3 kiln could not work, 4 not
/// found, 5 access denied by a store or the queue, 6 a store or the queue unreachable, 7 a revision failed verification or was
/// refused, 129 SIGHUP, 130 interrupted (Ctrl-C), 143 SIGTERM.
#[derive(Parser)]
#[command(name = "kiln", version = version(), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: options::GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// kiln's commands, in the order `kiln --help` lists them.
// Parsed once per run: the size of the largest variant (build's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run a project's buildspec.yml phase by phase, as CodeBuild does.
    Build(build::BuildArgs),
    /// Write a starter buildspec.yml for the project here (Cargo, npm, Python, Go, Maven, Gradle),
    /// and appspec.yml with --deploy.
    Init(init::InitArgs),
    /// A project's build history, newest first: number, status, start time, duration, cache hit
    /// and source version.
    Builds(builds::BuildsArgs),
    /// Print a build's log (the latest by default), or follow a running build's until it ends.
    Logs(logs::LogsArgs),
    /// Check a buildspec, an AppSpec or a pipeline declaration and report every error and warning
    /// with its line and column.
    Validate(validate::ValidateArgs),
    /// Print the settings a build here would use (the project's kiln.toml under the flags given)
    /// and where each came from.
    Config(config::ConfigArgs),
    /// Work with step plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Look after the build cache (the content-addressed store).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Package a folder (or a build's primary artifact) as a deterministic revision: a zip or tar.gz
    /// with appspec.yml at its root, and its manifest beside it.
    Package(package::PackageArgs),
    /// Push a revision file (and its manifest) to a store: file:///path/app.zip,
    /// s3://bucket/key/app.zip or oci://host[:port]/repository:tag.
    Push(push::PushArgs),
    /// Pull a revision, verify its digests, and extract it safely into a new folder.
    Pull(pull::PullArgs),
    /// List the revisions under a prefix: file:///folder, s3://bucket/prefix/, oci://host/repo.
    Ls(ls::LsArgs),
    /// `kiln queue …` (the queue's database) and `kiln worker`.
    #[command(flatten)]
    Queue(queue::QueueCommand),
    /// The jobs of a remote build queue, newest first: id, state, phase, priority, attempt.
    Jobs(jobs::JobsArgs),
    /// Stop a job of the remote build queue: a queued one at once, a running one at its worker's
    /// next heartbeat.
    Cancel(cancel::CancelArgs),
    /// Queue an ended job (FAILED, FAULT, STOPPED, TIMED_OUT) again, as a new job that names it.
    Retry(retry::RetryArgs),
    /// Run a CodePipeline declaration (get-pipeline JSON or a CloudFormation template) as it is:
    /// sources, builds, approvals, deployments; answer approvals, retry, stop, watch commits.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Deploy a revision on this host as the CodeDeploy agent does: the appspec.yml lifecycle, with
    /// automatic rollback to the last successful revision.
    Deploy(deploy::DeployCommandArgs),
    /// Watch a store for new revisions and deploy each new digest once, as the CodeDeploy agent
    /// polls its service. Survives restarts: a deployment a crash interrupted is rolled back.
    Agent(agent::AgentArgs),
    /// Go back to a group's previous successful revision: at once for blue-green (the symlinks are
    /// switched back), by deploying it again in place.
    Rollback(rollback::RollbackArgs),
    /// Say what this host supports for sandboxing builds (user namespaces, overlay in a user
    /// namespace, idmapped mounts, cgroup delegation, Landlock, seccomp, pasta) and which sandbox a
    /// build gets here. Exits 0 when builds get the namespace sandbox, 1 otherwise.
    Doctor(doctor::DoctorArgs),
    /// List the deployments made on this host, with status, revision digest and duration.
    Deployments(deployments::DeploymentsArgs),
    /// Serve a web page over pipelines, builds and deployments, as the CodePipeline console shows
    /// them, with Approve/Reject for a waiting approval.
    Serve(serve::ServeArgs),
    /// Print one digest of the files matching the patterns, for cache keys (also reachable inside
    /// builds as `codebuild-hash-files`).
    HashFiles(hash_files::HashFilesArgs),
    /// Print a completion script for a shell: `kiln completions bash >
    /// ~/.local/share/bash-completion/completions/kiln`; zsh: `_kiln` in a folder of $fpath; fish:
    /// ~/.config/fish/completions/kiln.fish.
    Completions(completions::CompletionsArgs),
    /// Print kiln's manual page (roff), or one command's: `kiln man | man -l -`, `kiln man build`.
    Man(man::ManArgs),
}

impl Command {
    /// What stopping kiln (Ctrl-C, SIGTERM, SIGHUP) stops, said after why it stopped: only the
    /// commands that start processes have something to stop (`kiln logs -f` only reads a log; the
    /// build it follows goes on).
    /// Whether the command takes SIGTERM, SIGINT, SIGHUP and SIGQUIT itself (a worker drains on
    /// the first; a remote build cancels its job), instead of kiln ending at the first.
    pub fn handles_signals(&self) -> bool {
        match self {
            Command::Queue(queue::QueueCommand::Worker(_)) => true,
            Command::Build(args) => args.is_remote(),
            // An execution driven here is stopped on Ctrl-C and recorded so (see
            // `pipeline::drive_here`).
            Command::Pipeline(
                pipeline::PipelineCommand::Run(_)
                | pipeline::PipelineCommand::Approve(_)
                | pipeline::PipelineCommand::Retry(_),
            ) => true,
            _ => false,
        }
    }

    pub fn stopping(&self) -> Option<&'static str> {
        match self {
            Command::Build(_) => Some("stopping the build's processes"),
            Command::Plugin(plugin::PluginCommand::Run(_)) => Some("stopping the step's processes"),
            Command::Deploy(_) | Command::Rollback(_) | Command::Agent(_) => {
                Some("stopping the deployment's hook scripts")
            }
            _ => None,
        }
    }
}

/// kiln's version and the commit it was built from (see build.rs): `0.1.0 (1a2b3c4)`, `0.1.0
/// (1a2b3c4-dirty)` when the tree had changes, just `0.1.0` when it was not built from a git checkout.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match env!("KILN_COMMIT") {
        "" => env!("CARGO_PKG_VERSION").to_string(),
        commit => format!("{} ({commit})", env!("CARGO_PKG_VERSION")),
    })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows under a header, each column as wide as its widest cell, two spaces apart.
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// A time (ms since the epoch) in the local time zone, to the second: `2026-11-27 20:41:07`.
pub fn local_time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => "-".into(),
    }
}

/// Writes `bytes` on stdout, dropping them when the reader has gone (see `out!`).
pub fn print_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Prints a spec's diagnostics as a compiler does, each with its own `error:` (or `warning:`) and
/// its place, then how many errors there were; the bad-input exit code. `kiln validate`, `kiln
/// build` and `kiln package` all show an invalid spec this way.
pub fn print_invalid(e: &kiln::spec::SpecError) -> u8 {
    eprintln!("{}", e.render(std::io::stderr().is_terminal()));
    let n = e.errors().count();
    eprintln!(
        "\n{}: {n} error{}",
        e.path.display(),
        if n == 1 { "" } else { "s" }
    );
    exit::BAD_INPUT
}

/// Connects to the queue at `url` (and checks its schema); on failure, says why and gives the exit
/// code.
pub async fn connect_queue(url: &str) -> Result<kiln::worker::postgres::PgQueue, u8> {
    kiln::worker::postgres::PgQueue::connect(url)
        .await
        .map_err(queue_error)
}

/// Says why a queue operation failed and gives its exit code.
pub fn queue_error(e: kiln::worker::queue::QueueError) -> u8 {
    eprintln!("error: {e}");
    exit::of_queue(&e)
}

/// Says why a store operation failed and gives its exit code.
pub fn store_error(e: kiln::store::StoreError) -> u8 {
    eprintln!("error: {e}");
    exit::of_store(&e)
}
