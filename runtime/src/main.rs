//! The `kiln` command line: parse arguments, call the library, print. Nothing else lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kiln::build::{self, BuildOptions, log::Console, result::Status};
use kiln::spec::{buildspec, diagnostic};

/// `println!` for what kiln prints on stdout, without the panic when the reader has gone (`kiln
/// cache ls | head`): the rest of the output is dropped, and the exit code stays kiln's.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Exit codes scripts can rely on.
mod exit {
    /// The build (or command) succeeded.
    pub const OK: u8 = 0;
    /// The build ran and failed.
    pub const FAILED: u8 = 1;
    /// Bad input or usage: a spec with errors, a missing file, a bad flag.
    pub const BAD_INPUT: u8 = 2;
    /// kiln itself could not do its work (engine, sandbox, disk).
    pub const INTERNAL: u8 = 3;
    /// A revision or store that does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// A store refused the credentials (401/403).
    pub const DENIED: u8 = 5;
    /// A store could not be reached, or kept failing (connection refused, timeouts, 5xx).
    pub const UNREACHABLE: u8 = 6;
    /// A revision that fails verification, or a bundle refused by safe extraction.
    pub const INTEGRITY: u8 = 7;
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: u8 = 130;
}

/// Run AWS CodeBuild buildspecs locally, every step a WebAssembly plugin in a sandbox.
///
/// Exit codes: 0 success, 1 the build failed, 2 bad input or usage, 3 kiln could not work, 4 not
/// found, 5 access denied by a store, 6 a store unreachable, 7 a revision failed verification or was
/// refused, 130 interrupted.
#[derive(Parser)]
#[command(name = "kiln", version, propagate_version = true)]
struct Cli {
    /// Where compiled plugins (and other caches) live [default: $XDG_CACHE_HOME/kiln]
    #[arg(long, env = "KILN_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where build numbers, records and logs live [default: $XDG_STATE_HOME/kiln]
    #[arg(long, env = "KILN_STATE_DIR", global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a project's buildspec.yml phase by phase, as CodeBuild does.
    Build(BuildArgs),
    /// Check a buildspec and report every error and warning with its line and column.
    Validate(ValidateArgs),
    /// Work with step plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Look after the build cache (the content-addressed store).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Package a folder (or a build's primary artifact) as a deterministic revision: a zip or tar.gz
    /// with appspec.yml at its root, and its manifest beside it.
    Package(PackageArgs),
    /// Push a revision file (and its manifest) to a store: file:///path/app.zip,
    /// s3://bucket/key/app.zip or oci://host[:port]/repository:tag.
    Push {
        /// The revision file.
        revision: PathBuf,
        /// Where to.
        reference: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Pull a revision, verify its digests, and extract it safely into a new folder.
    Pull {
        /// Where from: file:///path/app.zip, s3://bucket/key, oci://host/repo:tag or @sha256:….
        reference: String,
        /// The folder to extract into (it must not exist).
        #[arg(
            long,
            short = 'o',
            required_unless_present = "archive",
            conflicts_with = "archive"
        )]
        output: Option<PathBuf>,
        /// Keep the verified revision file here instead of extracting it.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Refuse bundles that expand past this size, e.g. 10G.
        #[arg(long, default_value = "10G", value_parser = parse_size)]
        max_size: usize,
        /// Refuse bundles that make more than this many files, folders and links (inode bombs).
        #[arg(long, default_value_t = 1_000_000, value_name = "N")]
        max_entries: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// List the revisions under a prefix: file:///folder, s3://bucket/prefix/, oci://host/repo.
    Ls {
        prefix: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Deploy a revision on this host as the CodeDeploy agent does: the appspec.yml lifecycle, with
    /// automatic rollback to the last successful revision.
    Deploy {
        /// The revision: a store reference (file:///…, s3://…, oci://…) or a revision file.
        revision: String,
        #[command(flatten)]
        args: DeployArgs,
    },
    /// Watch a store for new revisions and deploy each new digest once, as the CodeDeploy agent
    /// polls its service. Survives restarts: a deployment a crash interrupted is rolled back.
    Agent {
        /// The reference to watch: oci://host/repo:tag, s3://bucket/key, file:///path.
        #[arg(long, value_name = "REF")]
        watch: String,
        /// How often to look.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Look once, deploy if there is something new, and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Go back to a group's previous successful revision: at once for blue-green (the symlinks are
    /// switched back), by deploying it again in place.
    Rollback {
        /// The deployment group.
        #[arg(long)]
        group: String,
        /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say what this host supports for sandboxing builds (user namespaces, overlay in a user
    /// namespace, idmapped mounts, cgroup delegation, Landlock, seccomp, pasta) and which sandbox a
    /// build gets here. Exits 0 when builds get the namespace sandbox, 1 otherwise.
    Doctor {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the deployments made on this host, with status, revision digest and duration.
    Deployments {
        /// Only this deployment group's.
        #[arg(long)]
        group: Option<String>,
        /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print one digest of the files matching the patterns, for cache keys (also reachable inside
    /// builds as `codebuild-hash-files`).
    HashFiles {
        /// Globs relative to the current directory, e.g. package-lock.json or '**/*.lock'.
        #[arg(required = true)]
        patterns: Vec<String>,
    },
}

#[derive(Args)]
struct DeployArgs {
    /// The deployment group.
    #[arg(long)]
    group: String,
    /// The application's name (APPLICATION_NAME for the hooks) [default: the group's name]
    #[arg(long)]
    application: Option<String>,
    /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// What Install does with files already at their destination when the AppSpec does not say:
    /// DISALLOW (fail), OVERWRITE or RETAIN.
    #[arg(long, default_value = "DISALLOW", value_parser = parse_file_exists)]
    file_exists_behavior: kiln::spec::appspec::FileExists,
    /// Go on when the previous revision's ApplicationStop (or BlockTraffic) scripts fail.
    #[arg(long)]
    ignore_application_stop_failures: bool,
    /// Keep a failed deployment as it is instead of redeploying the last successful revision.
    #[arg(long)]
    no_rollback: bool,
    /// How many deployment folders of the group to keep.
    #[arg(long, default_value_t = 5)]
    max_revisions: usize,
    /// Confine hook scripts (Landlock): they may write only the destinations, the deployment's
    /// folder and the temp dir. By default they run unconfined, as the agent runs them.
    #[arg(long)]
    confine_hooks: bool,
    /// in-place (as the CodeDeploy agent) or blue-green: each revision in a release folder of its
    /// own, every destination a symlink switched to it atomically once ValidateService passed.
    #[arg(long, value_enum, default_value = "in-place")]
    strategy: StrategyArg,
    /// Refuse revisions that make more than this many files, folders and links (inode bombs).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    max_entries: u64,
    /// Refuse revisions that expand past this size, e.g. 10G (zip bombs).
    #[arg(long, default_value = "10G", value_parser = parse_size, value_name = "SIZE")]
    max_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
    #[arg(skip)]
    rollback_only: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    InPlace,
    BlueGreen,
}

impl From<StrategyArg> for kiln::deploy::Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::InPlace => kiln::deploy::Strategy::InPlace,
            StrategyArg::BlueGreen => kiln::deploy::Strategy::BlueGreen,
        }
    }
}

fn parse_file_exists(s: &str) -> Result<kiln::spec::appspec::FileExists, String> {
    kiln::spec::appspec::FileExists::parse(s)
        .ok_or_else(|| format!("`{s}` is not DISALLOW, OVERWRITE or RETAIN"))
}

/// How to reach a store.
#[derive(Args, Clone)]
struct AccessArgs {
    /// Registry user name; the password is read from standard input (--password-stdin).
    /// Without it, credentials come from the Docker config file ($DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Allow plain HTTP to a registry that is not on this machine (localhost always may).
    #[arg(long)]
    insecure: bool,
    /// Allow plain HTTP to the S3 endpoint set by AWS_ENDPOINT_URL.
    #[arg(long)]
    allow_http: bool,
}

impl AccessArgs {
    /// The access the flags ask for; `None` (after saying why) when the password cannot be read.
    fn access(&self) -> Option<kiln::store::Access> {
        let password = if self.password_stdin {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("error: cannot read the password from standard input: {e}");
                return None;
            }
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        } else {
            None
        };
        Some(kiln::store::Access {
            username: self.username.clone(),
            password,
            insecure: self.insecure,
            allow_http: self.allow_http,
        })
    }
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Blobs, bytes, action cache entries, and the hit rate of recent builds.
    Stats {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used blobs until the store is at most this size (e.g. 10G).
    Prune {
        #[arg(long, value_parser = parse_size, value_name = "SIZE")]
        max_size: usize,
    },
    /// Re-hash every blob; remove corrupt ones and the entries that name them. Exit 1 if any was found.
    Verify,
    /// Store a directory as a tree; print its digest.
    Add { dir: PathBuf },
    /// Write a stored tree out into a new or empty directory.
    Restore { digest: String, dir: PathBuf },
}

#[derive(Args)]
struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,

    /// The buildspec, relative to the project [default: buildspec.yml]
    #[arg(long, short = 'b', value_name = "FILE")]
    buildspec: Option<PathBuf>,

    /// Build in the project directory itself instead of a fresh copy.
    #[arg(long)]
    in_place: bool,

    /// Set a variable, over the buildspec's own (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,

    /// Pass a variable of kiln's environment through to the build (repeatable).
    #[arg(long, value_name = "NAME")]
    pass_env: Vec<String>,

    /// A dotenv file of parameter-store names and secrets-manager references with their values.
    #[arg(long, value_name = "FILE")]
    secrets: Option<PathBuf>,

    /// Where artifacts go, one folder each [default: <dir>/.kiln/out]
    #[arg(long, short = 'o', value_name = "DIR")]
    output: Option<PathBuf>,

    /// Also write each artifact as <name>.zip.
    #[arg(long)]
    zip: bool,

    /// After a successful build, package the primary artifact as a revision: <output>/<name>.zip
    /// with its manifest (the artifact must have appspec.yml at its root).
    #[arg(long)]
    package: bool,

    /// What the build's network reaches: `internet` (outbound only, through pasta: the host's own
    /// services stay out of reach), `none` (loopback only) or `host` (the host's network).
    /// `--network` alone means internet.
    #[arg(long, value_name = "MODE", default_value = "internet", num_args = 0..=1,
          default_missing_value = "internet", value_parser = parse_network)]
    network: kiln::sandbox::os::Network,

    /// Fail rather than fall back when the kernel refuses the build's namespaces (the sandbox then
    /// is Landlock alone), or has no Landlock either.
    #[arg(long)]
    require_sandbox: bool,

    /// Run build commands on the host, with no sandbox at all.
    #[arg(long, conflicts_with = "require_sandbox")]
    no_confine: bool,

    /// Let build commands write below this directory of the host too (repeatable).
    #[arg(long, value_name = "DIR")]
    writable: Vec<PathBuf>,

    /// Show this directory of the host to the build, read-only, at its own path (repeatable).
    #[arg(long, value_name = "DIR")]
    expose: Vec<PathBuf>,

    /// Memory limit of every program the build runs, e.g. 2G [default: none]
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    memory: Option<usize>,

    /// How many processes the build may have at once.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pids_limit: u64,

    /// Stop the build when its workspace, /tmp, HOME and private layer grow past this, e.g. 10G.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    disk_limit: Option<usize>,

    /// The build's time limit, e.g. 60m.
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// One command's (step's) time limit, e.g. 10m [default: the build's]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    step_timeout: Option<Duration>,

    /// Memory limit of one plugin instance, e.g. 512M or 2G.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_limit: usize,

    /// Register a plugin: commands whose first word is NAME run it (repeatable).
    #[arg(long, value_name = "NAME=PATH.wasm", value_parser = parse_plugin)]
    plugin: Vec<(String, PathBuf)>,

    /// The project name [default: the directory's name]: letters, digits, `.`, `-` and `_`
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// Build even when the cache holds this build's result (the new result is saved).
    #[arg(long)]
    no_cache: bool,

    /// Say why the cache missed or hit: which inputs changed since the project's last build.
    #[arg(long)]
    explain_cache: bool,

    /// Whose `cache:` entries (the buildspec's cache section) the build restores and saves: the
    /// project's own (by --project, or the source folder's path and the buildspec's), or entries
    /// shared by every project built with `shared`. Share only between projects that trust each
    /// other: a shared entry's files are restored into the build.
    #[arg(long, value_enum, default_value = "project", value_name = "SCOPE")]
    cache_scope: CacheScope,

    /// Deprecated: builds with network are cached like any other (their key is their inputs).
    #[arg(long, hide = true)]
    cache_network: bool,

    /// A shared cache behind the local one: s3://bucket/prefix. Builds look there when the local
    /// store misses and send it what they store (only the blobs it lacks).
    #[arg(long = "cache", env = "KILN_CACHE", value_name = "URL")]
    remote_cache: Option<String>,

    /// Read the shared cache but never write it: for builds of changes not trusted to write it
    /// (a shared cache takes entries only from trusted writers, such as CI on the main branch).
    #[arg(long, env = "KILN_CACHE_READ_ONLY")]
    cache_read_only: bool,

    /// Allow plain HTTP to the remote cache's endpoint (AWS_ENDPOINT_URL).
    #[arg(long)]
    allow_http: bool,

    /// Print the result as JSON on stdout (the log goes to stderr).
    #[arg(long)]
    json: bool,

    /// Print no log on the console (it is still written to the log file).
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Show plugins' debug lines.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[derive(Args)]
struct PackageArgs {
    /// The folder to package.
    #[arg(conflicts_with = "from_build")]
    dir: Option<PathBuf>,

    /// Package the primary artifact of this build number of the project instead.
    #[arg(long, value_name = "NUMBER")]
    from_build: Option<u64>,

    /// The project of --from-build [default: the current directory's name]
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// The revision file to write [default: revision.zip or revision.tar.gz]
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,

    /// zip (CodeDeploy's default) or tgz.
    #[arg(long, default_value = "zip", value_parser = ["zip", "tgz"])]
    format: String,

    /// Package a folder without an appspec.yml.
    #[arg(long)]
    no_appspec: bool,

    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// The buildspec or AppSpec to check [default: ./buildspec.yml]; a file named appspec.yml (or
    /// .yaml) is checked as an AppSpec.
    file: Option<PathBuf>,

    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the plugins built into kiln.
    List,
    /// Run a plugin once, as a build step would, in the current directory: a test harness for plugin
    /// authors.
    Run(PluginRunArgs),
}

#[derive(Args)]
struct PluginRunArgs {
    /// The plugin: a component file (.wasm) or the name of a built-in plugin.
    plugin: String,

    /// The step's arguments.
    #[arg(last = true)]
    args: Vec<String>,

    /// The directory preopened read-write (the step's source directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,

    /// Let the plugin run host programs.
    #[arg(long)]
    allow_exec: bool,

    /// Let the plugin use the network.
    #[arg(long)]
    network: bool,

    /// The step's time limit.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Memory limit of the instance.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_limit: usize,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, found `{s}`"))
}

fn parse_plugin(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) =
        parse_key_value(s).map_err(|_| format!("expected NAME=PATH.wasm, found `{s}`"))?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let path = path.canonicalize().map_err(|e| e.to_string())?;
    Ok((name, path))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("expected a size like 512M, found `{s}`"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("unknown size unit `{unit}`: use K, M or G")),
    };
    n.checked_shl(shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// A project name: it names a folder of kiln's state, so it is one plain path component.
fn parse_project(s: &str) -> Result<String, String> {
    let plain = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a project name: use letters, digits, `.`, `-` and `_` (not first), up to 128"
        ))
    }
}

/// Whose `cache:` entries a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CacheScope {
    /// The building project's own.
    Project,
    /// Shared by every project built with `--cache-scope shared`.
    Shared,
}

fn parse_network(s: &str) -> Result<kiln::sandbox::os::Network, String> {
    s.parse()
}

fn main() -> ExitCode {
    // The in-sandbox launcher is this same program, started by a build: it must not parse
    // arguments, start a runtime or spawn a thread.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__launcher")
    {
        kiln::sandbox::os::launcher::main();
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KILN_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start kiln's runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            code = run(cli) => code,
            _ = tokio::signal::ctrl_c() => {
                kiln::revision::extract::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
                eprintln!("kiln: interrupted; stopping the build's processes");
                exit::INTERRUPTED
            }
        }
    });
    // Dropping the runtime drops the build, whose guards kill what it started.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache_dir
        .clone()
        .or_else(|| dirs::cache_dir().map(|d| d.join("kiln")))
}

fn state_dir(cli: &Cli) -> PathBuf {
    cli.state_dir
        .clone()
        .or_else(|| dirs::state_dir().map(|d| d.join("kiln")))
        .or_else(|| dirs::home_dir().map(|d| d.join(".local/state/kiln")))
        .unwrap_or_else(|| std::env::temp_dir().join("kiln-state"))
}

async fn run(cli: Cli) -> u8 {
    match &cli.command {
        Command::Build(args) => build_command(&cli, args).await,
        Command::Validate(args) => validate_command(args),
        Command::Plugin(PluginCommand::List) => plugin_list(&cli),
        Command::Plugin(PluginCommand::Run(args)) => plugin_run(&cli, args).await,
        Command::Cache(command) => cache_command(&cli, command),
        Command::Package(args) => package_command(&cli, args),
        Command::Push {
            revision,
            reference,
            json,
            access,
        } => {
            let Some(access) = access.access() else {
                return exit::BAD_INPUT;
            };
            match kiln::store::push(revision, reference, &access).await {
                Ok(pushed) => {
                    if *json {
                        print_json(&pushed);
                    } else if pushed.uploaded == 0 {
                        out!("{}: unchanged (blake3:{})", pushed.reference, pushed.blake3);
                    } else {
                        out!(
                            "{}: {} bytes pushed (blake3:{})",
                            pushed.reference,
                            pushed.uploaded,
                            pushed.blake3
                        );
                    }
                    if !*json && let Some(digest) = &pushed.manifest_digest {
                        out!("manifest: {digest}");
                    }
                    exit::OK
                }
                Err(e) => store_error(e),
            }
        }
        Command::Pull {
            reference,
            output,
            archive,
            max_size,
            max_entries,
            json,
            access,
        } => {
            let Some(access) = access.access() else {
                return exit::BAD_INPUT;
            };
            let limits = kiln::revision::extract::Limits {
                max_size: *max_size as u64,
                max_entries: *max_entries,
                ..Default::default()
            };
            let into = match (output, archive) {
                (Some(dir), _) => kiln::store::PullInto::Folder(dir.clone(), limits),
                (None, Some(file)) => kiln::store::PullInto::Archive(file.clone()),
                (None, None) => return exit::BAD_INPUT,
            };
            match kiln::store::pull(reference, &into, &access).await {
                Ok(pulled) => {
                    if *json {
                        print_json(&pulled);
                    } else if let kiln::store::PullInto::Archive(file) = &into {
                        out!(
                            "{reference}: {} bytes in {} (blake3:{} verified)",
                            pulled.size,
                            file.display(),
                            pulled.blake3
                        );
                    } else {
                        out!(
                            "{reference}: {} files in {} (blake3:{} verified)",
                            pulled.files,
                            pulled.output.display(),
                            pulled.blake3
                        );
                    }
                    exit::OK
                }
                Err(e) => store_error(e),
            }
        }
        Command::Ls {
            prefix,
            json,
            access,
        } => {
            let Some(access) = access.access() else {
                return exit::BAD_INPUT;
            };
            match kiln::store::list(prefix, &access).await {
                Ok(revisions) => {
                    if *json {
                        print_json(&revisions);
                    } else {
                        for r in &revisions {
                            out!(
                                "{}\t{}\tblake3:{}",
                                r.reference,
                                r.size.map_or_else(|| "-".to_string(), |s| s.to_string()),
                                r.blake3.as_deref().unwrap_or("-")
                            );
                        }
                    }
                    exit::OK
                }
                Err(e) => store_error(e),
            }
        }
        Command::Deploy { revision, args } => deploy_command(&cli, revision, args).await,
        Command::Agent {
            watch,
            interval,
            once,
            deploy,
        } => {
            let Some(options) = deploy_options(&cli, watch, deploy) else {
                return exit::BAD_INPUT;
            };
            match kiln::deploy::agent::watch(&options, *interval, *once).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::INTERNAL
                }
            }
        }
        Command::Rollback { group, root, json } => {
            let args = DeployArgs {
                group: group.clone(),
                application: None,
                root: root.clone(),
                file_exists_behavior: kiln::spec::appspec::FileExists::Disallow,
                ignore_application_stop_failures: false,
                no_rollback: true,
                max_revisions: 5,
                confine_hooks: false,
                strategy: StrategyArg::InPlace,
                max_entries: kiln::revision::extract::Limits::default().max_entries,
                max_size: kiln::revision::extract::Limits::default().max_size as usize,
                json: *json,
                access: AccessArgs {
                    username: None,
                    password_stdin: false,
                    insecure: false,
                    allow_http: false,
                },
                rollback_only: true,
            };
            deploy_command(&cli, "", &args).await
        }
        Command::Doctor { json } => {
            let report = kiln::sandbox::os::probe::report();
            if *json {
                print_json(&report);
            } else {
                out!(
                    "{}",
                    kiln::sandbox::os::probe::render(&report).trim_end_matches('\n')
                );
            }
            if report.sandbox.starts_with("namespaces") {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Command::Deployments { group, root, json } => {
            let root = root.clone().unwrap_or_else(|| deploy_root(&cli));
            let list = kiln::deploy::list(&root, group.as_deref());
            if *json {
                print_json(&list);
            } else {
                for d in &list {
                    out!(
                        "{}\t{}\t{:?}\t{}\t{} ms\t{}{}",
                        d.id,
                        d.group,
                        d.status,
                        d.digest
                            .as_deref()
                            .map(|h| format!("blake3:{}", &h[..h.len().min(16)]))
                            .unwrap_or_else(|| "-".into()),
                        d.duration_ms,
                        d.revision,
                        d.rollback_of
                            .as_deref()
                            .map(|r| format!(" (rollback of {r})"))
                            .unwrap_or_default()
                    );
                }
            }
            exit::OK
        }
        Command::HashFiles { patterns } => {
            let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match build::paths::hash_files(&dir, patterns) {
                Ok(digest) => {
                    out!("{digest}");
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::BAD_INPUT
                }
            }
        }
    }
}

fn package_command(cli: &Cli, args: &PackageArgs) -> u8 {
    use kiln::revision::{Format, PackageOptions};
    let (dir, origin) = match (args.from_build, &args.dir) {
        (Some(number), _) => {
            let project = args.project.clone().unwrap_or_else(|| {
                build::project_of(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
            });
            match build::recorded_artifact(&state_dir(cli), &project, number) {
                Ok((dir, origin)) => (dir, Some(origin)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::BAD_INPUT;
                }
            }
        }
        (None, dir) => (dir.clone().unwrap_or_else(|| PathBuf::from(".")), None),
    };
    let format = if args.format == "tgz" {
        Format::Tgz
    } else {
        Format::Zip
    };
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(match format {
            Format::Zip => "revision.zip",
            Format::Tgz => "revision.tar.gz",
        })
    });
    let options = PackageOptions {
        format,
        require_appspec: !args.no_appspec,
        timestamp: None,
    };
    match kiln::revision::package(&dir, &output, &options, origin) {
        Ok(manifest) => {
            if args.json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&manifest).unwrap_or_default()
                );
            } else {
                out!(
                    "{}: {} files, {} bytes, blake3:{} {}",
                    output.display(),
                    manifest.files,
                    manifest.size,
                    manifest.blake3,
                    manifest.sha256
                );
            }
            exit::OK
        }
        Err(e @ kiln::revision::RevisionError::Io { .. }) => {
            eprintln!("error: {e}");
            exit::INTERNAL
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

fn deploy_root(cli: &Cli) -> PathBuf {
    state_dir(cli).join("deployment-root")
}

fn deploy_options(
    cli: &Cli,
    revision: &str,
    args: &DeployArgs,
) -> Option<kiln::deploy::DeployOptions> {
    let access = args.access.access()?;
    Some(kiln::deploy::DeployOptions {
        revision: revision.to_string(),
        group: args.group.clone(),
        application: args
            .application
            .clone()
            .unwrap_or_else(|| args.group.clone()),
        root: args.root.clone().unwrap_or_else(|| deploy_root(cli)),
        ignore_application_stop_failures: args.ignore_application_stop_failures,
        rollback: !args.no_rollback,
        max_revisions: args.max_revisions,
        confine_hooks: args.confine_hooks,
        file_exists_behavior: args.file_exists_behavior,
        access,
        cache_dir: cache_dir(cli).map(|d| d.join("components")),
        echo: !args.json,
        strategy: args.strategy.into(),
        limits: kiln::revision::extract::Limits {
            max_entries: args.max_entries,
            max_size: args.max_size as u64,
            ..Default::default()
        },
    })
}

async fn deploy_command(cli: &Cli, revision: &str, args: &DeployArgs) -> u8 {
    let Some(options) = deploy_options(cli, revision, args) else {
        return exit::BAD_INPUT;
    };
    let result = if args.rollback_only {
        kiln::deploy::rollback(&options).await
    } else {
        kiln::deploy::deploy(&options).await
    };
    match result {
        Ok((deployment, rollback)) => {
            if args.json {
                print_json(&serde_json::json!({ "deployment": deployment, "rollback": rollback }));
            } else {
                out!(
                    "{} {:?}: {} to {} in {} ms",
                    deployment.id,
                    deployment.status,
                    deployment.revision,
                    deployment.group,
                    deployment.duration_ms
                );
                if let Some(e) = &deployment.error {
                    eprintln!("error: {e}");
                    eprintln!(
                        "see the deployment log at {}",
                        deployment.dir.join("logs/scripts.log").display()
                    );
                }
                if let Some(r) = &rollback {
                    out!("{} {:?}: rolled back to {}", r.id, r.status, r.revision);
                }
            }
            if deployment.status == kiln::deploy::Status::Succeeded {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INTERNAL
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn store_error(e: kiln::store::StoreError) -> u8 {
    use kiln::store::StoreError;
    eprintln!("error: {e}");
    match e {
        StoreError::BadRef(_) | StoreError::Usage(_) => exit::BAD_INPUT,
        StoreError::NotFound(_) => exit::NOT_FOUND,
        StoreError::Denied { .. } => exit::DENIED,
        StoreError::Unreachable { .. } => exit::UNREACHABLE,
        StoreError::Remote { .. } => exit::INTERNAL,
        StoreError::Extract(kiln::revision::extract::ExtractError::Io { .. }) => exit::INTERNAL,
        StoreError::Extract(kiln::revision::extract::ExtractError::Interrupted) => {
            exit::INTERRUPTED
        }
        StoreError::Mismatch { .. } | StoreError::Extract(_) => exit::INTEGRITY,
        StoreError::Io { .. } => exit::INTERNAL,
    }
}

/// What a build must never see: kiln's own folders, the secrets file, and the credentials kiln's
/// environment points at (a sandboxed build hides each of them).
fn secret_paths(cli: &Cli, secrets: Option<&std::path::Path>) -> Vec<PathBuf> {
    let mut paths = vec![state_dir(cli)];
    paths.extend(cache_dir(cli));
    paths.extend(dirs::config_dir().map(|d| d.join("kiln")));
    paths.extend(secrets.map(|s| std::path::absolute(s).unwrap_or_else(|_| s.to_path_buf())));
    for var in [
        "DOCKER_CONFIG",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "KILN_SECRETS",
    ] {
        if let Some(value) = std::env::var_os(var) {
            paths.push(PathBuf::from(value));
        }
    }
    // kiln's own HOME, wherever it is (/root and /home are the build's own already): hidden whole,
    // unless it holds the project (a CI whose HOME is its workspace), then its credentials one by one.
    if let Some(home) = dirs::home_dir().filter(|h| h.parent().is_some()) {
        let project = std::env::current_dir().unwrap_or_default();
        if project.starts_with(&home) {
            paths.extend(
                [
                    ".aws",
                    ".docker",
                    ".ssh",
                    ".gnupg",
                    ".kube",
                    ".netrc",
                    ".git-credentials",
                    ".npmrc",
                    ".pypirc",
                    ".config/gh",
                    ".config/gcloud",
                    ".azure",
                    ".cargo/credentials",
                    ".cargo/credentials.toml",
                    ".m2/settings.xml",
                    ".gradle/gradle.properties",
                    ".terraform.d",
                ]
                .iter()
                .map(|p| home.join(p)),
            );
        } else {
            paths.push(home);
        }
    }
    paths.retain(|p| p.is_absolute());
    // A path that goes through a link is hidden where it leads too (the sandbox masks paths of the
    // build's view, where the link may lead elsewhere or nowhere).
    let real: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    paths.extend(real);
    paths.sort();
    paths.dedup();
    paths
}

fn cas_dir(cli: &Cli) -> Option<PathBuf> {
    cache_dir(cli).map(|d| d.join("cas"))
}

fn cache_command(cli: &Cli, command: &CacheCommand) -> u8 {
    let Some(dir) = cas_dir(cli) else {
        eprintln!("error: no cache directory: set --cache-dir or KILN_CACHE_DIR");
        return exit::BAD_INPUT;
    };
    let store = match kiln::cas::LocalStore::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    match command {
        CacheCommand::Stats { json } => {
            let stats = store.stats();
            let (hits, builds) = build::cache::hit_rate(&state_dir(cli), 100);
            if *json {
                let out = serde_json::json!({
                    "path": dir, "blobs": stats.blobs, "bytes": stats.bytes,
                    "entries": stats.entries, "recent_builds": builds, "recent_hits": hits,
                });
                out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                out!("cache:   {}", dir.display());
                out!(
                    "blobs:   {} ({:.1} MiB)",
                    stats.blobs,
                    stats.bytes as f64 / 1048576.0
                );
                out!("entries: {}", stats.entries);
                if builds > 0 {
                    out!(
                        "hits:    {hits} of the last {builds} builds ({:.0}%)",
                        100.0 * hits as f64 / builds as f64
                    );
                }
            }
            exit::OK
        }
        CacheCommand::Prune { max_size } => {
            let report = store.prune(*max_size as u64);
            out!(
                "removed {} blobs ({:.1} MiB) and {} entries",
                report.removed_blobs,
                report.freed_bytes as f64 / 1048576.0,
                report.removed_entries
            );
            exit::OK
        }
        CacheCommand::Add { dir } => match kiln::cas::tree::Tree::store_dir(&store, dir) {
            Ok((digest, tree)) => {
                out!("{digest}");
                eprintln!("{} entries stored", tree.entries.len());
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::BAD_INPUT
            }
        },
        CacheCommand::Restore { digest, dir } => {
            let Some(digest) = kiln::cas::Digest::parse(digest) else {
                eprintln!("error: `{digest}` is not a BLAKE3 digest (64 hex digits)");
                return exit::BAD_INPUT;
            };
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                eprintln!("error: {} is not empty", dir.display());
                return exit::BAD_INPUT;
            }
            let restored = kiln::cas::tree::Tree::load(&store, &digest).and_then(|tree| {
                std::fs::create_dir_all(dir).map_err(kiln::cas::io_err(dir))?;
                tree.restore(&store, dir).map(|()| tree.entries.len())
            });
            match restored {
                Ok(n) => {
                    eprintln!("{n} entries restored into {}", dir.display());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::FAILED
                }
            }
        }
        CacheCommand::Verify => {
            let report = store.verify();
            for digest in &report.corrupt {
                out!("corrupt blob {digest} removed");
            }
            out!(
                "{} corrupt blobs, {} broken entries removed",
                report.corrupt.len(),
                report.removed_entries
            );
            // A malformed entry, or one whose blobs are gone, is damage as much as a bad blob.
            if report.corrupt.is_empty() && report.removed_entries == 0 {
                exit::OK
            } else {
                exit::FAILED
            }
        }
    }
}

async fn build_command(cli: &Cli, args: &BuildArgs) -> u8 {
    let console = match (args.quiet, args.json) {
        (true, _) => Console::Quiet,
        (false, true) => Console::Stderr,
        (false, false) => Console::Stdout,
    };
    let remote_cache = match args.remote_cache.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let access = kiln::store::Access {
                allow_http: args.allow_http,
                ..Default::default()
            };
            match kiln::cas::remote::RemoteCache::open(url, &access) {
                Ok(mut remote) => {
                    remote.read_only = args.cache_read_only;
                    Some(remote)
                }
                Err(e) => {
                    eprintln!("error: --cache: {e}");
                    return exit::BAD_INPUT;
                }
            }
        }
        None => None,
    };
    let options = BuildOptions {
        source: args.dir.clone(),
        buildspec: args.buildspec.clone(),
        in_place: args.in_place,
        env: args.env.clone(),
        pass_env: args.pass_env.clone(),
        secrets: args.secrets.clone(),
        output: args.output.clone(),
        zip: args.zip,
        network: args.network,
        require_sandbox: args.require_sandbox,
        confine: !args.no_confine,
        writable: args.writable.clone(),
        expose: args.expose.clone(),
        memory: args.memory.map(|m| m as u64),
        pids_limit: args.pids_limit,
        disk_limit: args.disk_limit.map(|d| d as u64),
        secrets_hidden: secret_paths(cli, args.secrets.as_deref()),
        timeout: args.timeout,
        step_timeout: args.step_timeout,
        memory_limit: args.memory_limit,
        plugins: args.plugin.clone(),
        project: args.project.clone(),
        state_dir: state_dir(cli),
        cache_dir: cache_dir(cli).map(|d| d.join("components")),
        console,
        progress: true,
        verbose: args.verbose,
        initiator: format!(
            "kiln/{}",
            std::env::var("USER").unwrap_or_else(|_| "local".into())
        ),
        cas_dir: cas_dir(cli),
        no_cache: args.no_cache,
        explain_cache: args.explain_cache,
        shared_cache_scope: args.cache_scope == CacheScope::Shared,
        remote_cache,
    };
    let _ = args.cache_network;
    match build::run(&options).await {
        Ok(result) => {
            let mut revision = None;
            if args.package && result.status == Status::Succeeded {
                let primary = result
                    .artifacts
                    .iter()
                    .find(|a| a.identifier == "primary")
                    .or_else(|| result.artifacts.first());
                let Some(primary) = primary else {
                    eprintln!("error: --package: the build has no artifact to package");
                    return exit::FAILED;
                };
                let out = primary
                    .path
                    .with_file_name(format!("{}.zip", primary.name.replace('/', "-")));
                let origin = kiln::revision::Origin {
                    build_id: result.build_id.clone(),
                    build_number: result.build_number,
                    source_version: result.source_version.clone(),
                    exported_variables: result.exported_variables.clone(),
                };
                let options = kiln::revision::PackageOptions {
                    format: kiln::revision::Format::Zip,
                    require_appspec: true,
                    timestamp: None,
                };
                match kiln::revision::package(&primary.path, &out, &options, Some(origin)) {
                    Ok(manifest) => revision = Some((out, manifest)),
                    Err(e) => {
                        eprintln!("error: --package: {e}");
                        return exit::FAILED;
                    }
                }
            }
            if args.json {
                let mut value = serde_json::to_value(&result).unwrap_or_default();
                if let Some((path, manifest)) = &revision {
                    value["revision"] = serde_json::json!({ "path": path, "manifest": manifest });
                }
                match serde_json::to_string_pretty(&value) {
                    Ok(json) => out!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot print the result: {e}");
                        return exit::INTERNAL;
                    }
                }
            } else if !args.quiet {
                if let Some((path, manifest)) = &revision {
                    out!("revision: {} (blake3:{})", path.display(), manifest.blake3);
                }
                for a in &result.artifacts {
                    out!("artifact {}: {}", a.name, a.path.display());
                    if let Some(zip) = &a.zip {
                        out!("artifact {}: {}", a.name, zip.display());
                    }
                }
                out!(
                    "build {} {} in {:.1}s (log: {})",
                    result.build_number,
                    result.status.as_str(),
                    result.duration_ms as f64 / 1000.0,
                    result
                        .log_file
                        .as_ref()
                        .map_or_else(String::new, |p| p.display().to_string())
                );
            }
            if result.status == Status::Succeeded {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                build::BuildError::Sandbox(_) | build::BuildError::Io { .. } => exit::INTERNAL,
                _ => exit::BAD_INPUT,
            }
        }
    }
}

/// Prints a spec's errors (rendered, or as JSON findings) and gives the bad-input exit code.
fn report_invalid(
    path: &std::path::Path,
    e: &kiln::spec::SpecError,
    json: bool,
    color: bool,
) -> u8 {
    if json {
        print_findings(path, &e.diagnostics, false);
    } else {
        eprintln!("{}", e.render(color));
        let n = e.errors().count();
        eprintln!(
            "\n{}: {n} error{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
    }
    exit::BAD_INPUT
}

fn validate_appspec(path: &std::path::Path, json: bool, color: bool) -> u8 {
    use kiln::spec::appspec;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
    };
    match appspec::parse(path, &text) {
        Ok((spec, warnings)) => {
            if json {
                print_findings(path, &warnings, true);
            } else {
                if !warnings.is_empty() {
                    eprintln!(
                        "{}\n",
                        kiln::spec::diagnostic::render_all(path, &text, &warnings, color)
                    );
                }
                let scripts: usize = spec.hooks.values().map(Vec::len).sum();
                out!(
                    "{}: valid AppSpec 0.0 ({} files entries, {} permissions, {} hook scripts, {} warnings)",
                    path.display(),
                    spec.files.len(),
                    spec.permissions.len(),
                    scripts,
                    warnings.len()
                );
            }
            exit::OK
        }
        Err(e) => report_invalid(path, &e, json, color),
    }
}

fn validate_command(args: &ValidateArgs) -> u8 {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from("buildspec.yml"));
    let color = !args.json && std::io::stderr().is_terminal();
    let is_appspec = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("appspec."));
    if is_appspec {
        return validate_appspec(&path, args.json, color);
    }
    match buildspec::load(&path) {
        Ok(parsed) => {
            if args.json {
                print_findings(&path, &parsed.warnings, true);
            } else {
                if let Some(w) = parsed.render_warnings(&path, color) {
                    eprintln!("{w}\n");
                }
                let commands: usize = parsed
                    .buildspec
                    .phases
                    .iter()
                    .map(|p| p.commands.len() + p.finally.len())
                    .sum();
                out!(
                    "{}: valid buildspec {} ({} phases, {} commands, {} warnings)",
                    path.display(),
                    serde_json::to_value(parsed.buildspec.version)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    parsed.buildspec.phases.len(),
                    commands,
                    parsed.warnings.len()
                );
            }
            exit::OK
        }
        Err(buildspec::LoadError::Invalid(e)) => report_invalid(&path, &e, args.json, color),
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

fn print_findings(path: &std::path::Path, findings: &[diagnostic::Diagnostic], valid: bool) {
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|d| {
            serde_json::json!({
                "severity": match d.severity {
                    diagnostic::Severity::Error => "error",
                    diagnostic::Severity::Warning => "warning",
                },
                "file": path,
                "line": d.span.line,
                "column": d.span.column,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let out = serde_json::json!({ "file": path, "valid": valid, "diagnostics": list });
    out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

fn plugin_list(cli: &Cli) -> u8 {
    match kiln::sandbox::Sandbox::new(cache_dir(cli).map(|d| d.join("components"))) {
        Ok(sandbox) => {
            for name in sandbox.names() {
                let digest = sandbox
                    .digest(name)
                    .map(|d| d.to_hex().to_string())
                    .unwrap_or_default();
                out!("{name}\tblake3:{digest}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INTERNAL
        }
    }
}

async fn plugin_run(cli: &Cli, args: &PluginRunArgs) -> u8 {
    use kiln::sandbox::{
        Confinement, ExecEnv, LogSink, Policy, Preopen, Reaper, Sandbox, StepContext,
    };
    use std::sync::Arc;
    let mut sandbox = match Sandbox::new(cache_dir(cli).map(|d| d.join("components"))) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::INTERNAL;
        }
    };
    let name = if args.plugin.ends_with(".wasm") || std::path::Path::new(&args.plugin).is_file() {
        sandbox.register_file("plugin", std::path::Path::new(&args.plugin));
        "plugin".to_string()
    } else {
        args.plugin.clone()
    };
    let dir = match args.dir.canonicalize() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: {e}", args.dir.display());
            return exit::BAD_INPUT;
        }
    };
    let temp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot make a temp dir: {e}");
            return exit::INTERNAL;
        }
    };
    let temp_dir = temp
        .path()
        .canonicalize()
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let log = match build::log::BuildLog::create(None, Console::Stdout, false) {
        Ok(l) => Arc::new(l.verbose(true)),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let confinement = Confinement {
        writable: vec![dir.clone(), temp_dir.clone()],
        readable: vec![PathBuf::from("/")],
        network: args.network,
        required: false,
        enabled: true,
    };
    let prepared = match confinement.prepare() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let context = StepContext {
        build_id: "plugin-run".into(),
        phase: "BUILD".into(),
        source_dir: dir.clone(),
        cwd: dir.clone(),
        env: std::env::vars().collect(),
        temp_dir: temp_dir.clone(),
    };
    let policy = Policy {
        preopens: vec![
            Preopen {
                path: dir,
                writable: true,
            },
            Preopen {
                path: temp_dir,
                writable: true,
            },
        ],
        allow_exec: args.allow_exec,
        network: args.network,
        local_network: args.network,
        timeout: Some(args.timeout),
        memory_limit: args.memory_limit,
    };
    let exec = args.allow_exec.then(|| ExecEnv {
        prepared: Arc::new(prepared),
        reaper: Reaper::default(),
        run_as: None,
        os: None,
    });
    let sink: Arc<dyn LogSink> = log;
    match sandbox
        .run(&name, &args.args, &context, &policy, exec, sink)
        .await
    {
        Ok(outcome) => {
            if outcome.status == 0 {
                eprintln!("plugin succeeded");
                exit::OK
            } else {
                eprintln!(
                    "plugin failed with status {}: {}",
                    outcome.status,
                    outcome.message.unwrap_or_default()
                );
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                kiln::sandbox::StepError::UnknownPlugin(_)
                | kiln::sandbox::StepError::Load { .. } => exit::BAD_INPUT,
                _ => exit::FAILED,
            }
        }
    }
}
