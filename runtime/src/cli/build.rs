//! `kiln build`: run a project's buildspec, phase by phase, in the build sandbox (or, with
//! `--remote`, on a worker: see [`remote`]).

mod remote;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kiln::build::{
    self, BuildOptions,
    log::Console,
    result::{BuildResult, Status},
};

use super::exit;
use super::options::{
    GlobalArgs, existing, existing_file, parse_key_value, parse_phase, parse_project, parse_size,
};
use super::print_invalid;
use super::settings::{self, CacheScope, SettingsArgs};

/// `kiln build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The project directory [default: the nearest folder at or above the current one holding a
    /// buildspec.yml, or its git repository's root]. A buildspec file here means `-b FILE`, its
    /// project being its folder (or its repository's root).
    #[arg(value_parser = existing)]
    dir: Option<PathBuf>,

    /// The buildspec, relative to the project [default: buildspec.yml]
    #[arg(long, short = 'b', value_name = "FILE")]
    buildspec: Option<PathBuf>,

    /// Build in the project directory itself instead of a fresh copy.
    #[arg(long)]
    in_place: bool,

    /// Build this branch, tag or commit of the project's repository (its buildspec too) instead of
    /// the working tree, which is not touched; the build's .git is at that commit.
    #[arg(long, value_name = "REF", conflicts_with = "in_place")]
    source_version: Option<String>,

    /// Set a variable, over the buildspec's own (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,

    /// Set the variables of a dotenv file (`NAME=value` lines), over the buildspec's own; --env
    /// overrides them, a later file an earlier one (repeatable). Not secrets: use --secrets.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    env_file: Vec<PathBuf>,

    /// Also write each artifact as <name>.zip.
    #[arg(long)]
    zip: bool,

    /// After a successful build, package the primary artifact as a revision: <output>/<name>.zip
    /// with its manifest (the artifact must have appspec.yml at its root).
    #[arg(long)]
    package: bool,

    /// Fail rather than fall back when the kernel refuses the build's namespaces (the sandbox then
    /// is Landlock alone), or has no Landlock either.
    #[arg(long)]
    require_sandbox: bool,

    /// Run build commands on the host, with no sandbox at all.
    #[arg(long, conflicts_with = "require_sandbox")]
    no_confine: bool,

    /// Show this directory of the host to the build, read-only, at its own path (repeatable).
    #[arg(long, value_name = "DIR", value_parser = existing)]
    expose: Vec<PathBuf>,

    /// How many processes the build may have at once.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pids_limit: u64,

    /// The build's time limit, e.g. 60m.
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Memory limit of one plugin instance, e.g. 512M or 2G.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_limit: usize,

    /// The project name [default: the folder's name and a hash of its repository's path and the
    /// buildspec's, e.g. app-3f9c2a1b]: letters, digits, `.`, `-` and `_`
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// Build even when the cache holds this build's result (the new result is saved).
    #[arg(long)]
    no_cache: bool,

    /// Say why the cache missed or hit: which inputs changed since the project's last build.
    #[arg(long)]
    explain_cache: bool,

    /// Deprecated: builds with network are cached like any other (their key is their inputs).
    #[arg(long, hide = true)]
    cache_network: bool,

    /// Read the shared cache but never write it: for builds of changes not trusted to write it
    /// (a shared cache takes entries only from trusted writers, such as CI on the main branch).
    #[arg(long, env = "KILN_CACHE_READ_ONLY")]
    cache_read_only: bool,

    /// Plain HTTP to the remote cache's endpoint (AWS_ENDPOINT_URL) is meant: no warning (as
    /// AWS_ALLOW_HTTP=true).
    #[arg(long)]
    allow_http: bool,

    #[command(flatten)]
    settings: SettingsArgs,
    /// Run only these phases of the buildspec, e.g. install,build; the others are skipped. A
    /// partial build is neither looked up in the build cache nor saved to it, and publishes no
    /// artifacts.
    #[arg(long, value_name = "PHASE,...", value_delimiter = ',', value_parser = parse_phase)]
    phases: Vec<kiln::spec::PhaseName>,

    /// Run the buildspec's phases up to this one, e.g. build (install, pre_build, build).
    #[arg(long, value_name = "PHASE", value_parser = parse_phase, conflicts_with = "phases")]
    until: Option<kiln::spec::PhaseName>,

    /// Print the plan and run nothing: the phases and their commands, the variables (secrets as
    /// ***), the artifacts and the cache paths. No build number is taken, nothing is recorded.
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON on stdout (the log goes to stderr).
    #[arg(long)]
    json: bool,

    /// Print no log on the console (it is still written to the log file).
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Run the build on a worker of this queue (postgres://user:password@host:port/database),
    /// with the shared store of --cache: the log is printed as it is written, the artifacts are
    /// fetched into the output folder, Ctrl-C cancels the job.
    #[arg(long, env = "KILN_REMOTE", value_name = "URL", hide_env_values = true,
          conflicts_with_all = ["in_place", "source_version", "dry_run", "phases", "until", "package", "zip"])]
    remote: Option<String>,

    /// With --remote: the job's priority (higher runs first).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "remote",
        allow_negative_numbers = true
    )]
    priority: i32,

    /// With --remote: key=value labels a worker must all have to take the job.
    #[arg(
        long,
        value_name = "K=V,...",
        value_delimiter = ',',
        requires = "remote"
    )]
    labels: Vec<String>,

    /// With --remote: a variable whose value is a secret of the workers, by its reference
    /// (`prod/db:password`, `/ci/token`): the job carries the reference, the worker resolves it from
    /// its own secrets (repeatable).
    #[arg(long, value_name = "NAME=REFERENCE", value_parser = parse_key_value, requires = "remote")]
    secret_ref: Vec<(String, String)>,
}

impl BuildArgs {
    /// Whether the build runs on a worker (`--remote`).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }
}

/// Runs the build, prints its result, and gives its exit code.
pub async fn run(global: &GlobalArgs, args: &BuildArgs) -> u8 {
    if let Some(url) = &args.remote {
        return remote::run(global, args, url).await;
    }
    let console = match (args.quiet, args.json) {
        (true, _) => Console::Quiet,
        (false, true) => Console::Stderr,
        (false, false) => Console::Stdout,
    };
    let (source, buildspec) = match project(args.dir.as_ref(), args.buildspec.as_ref()) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let settings = match settings::resolve(&args.settings, &source) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let remote_cache = match settings.remote_cache.as_deref() {
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
    let mut env = Vec::new();
    for file in &args.env_file {
        match env_file(file) {
            Ok(vars) => env.extend(vars),
            Err(code) => return code,
        }
    }
    env.extend(args.env.iter().cloned());
    let locked_plugins = match super::settings::locked_plugins(global, &settings).await {
        Ok(locked) => locked,
        Err(code) => return code,
    };
    let options = BuildOptions {
        source,
        buildspec,
        in_place: args.in_place,
        source_version: args.source_version.clone(),
        env,
        pass_env: settings.pass_env.clone(),
        secrets: settings.secrets.clone(),
        output: settings.output.clone(),
        zip: args.zip,
        network: settings.network,
        require_sandbox: args.require_sandbox,
        confine: !args.no_confine,
        writable: settings.writable.clone(),
        expose: args.expose.clone(),
        memory: settings.memory.map(|m| m as u64),
        pids_limit: args.pids_limit,
        disk_limit: settings.disk_limit.map(|d| d as u64),
        secrets_hidden: secret_paths(global, settings.secrets.as_deref()),
        timeout: args.timeout,
        step_timeout: settings.step_timeout,
        memory_limit: args.memory_limit,
        plugins: settings.plugins.clone(),
        locked_plugins,
        project: args.project.clone(),
        state_dir: global.state_dir(),
        cache_dir: global.components_dir(),
        console,
        progress: true,
        verbose: global.verbose > 0,
        initiator: format!(
            "kiln/{}",
            std::env::var("USER").unwrap_or_else(|_| "local".into())
        ),
        cas_dir: global.cas_dir(),
        no_cache: args.no_cache,
        explain_cache: args.explain_cache,
        shared_cache_scope: settings.cache_scope == CacheScope::Shared,
        remote_cache,
        phases: selected_phases(args),
        secondary_sources: Vec::new(),
        secret_env: Vec::new(),
        announce: None,
    };
    let _ = args.cache_network;
    if args.dry_run {
        return match build::plan::plan(&options) {
            Ok(plan) => super::plan::print(&plan, args.json),
            Err(e) => not_started(&e),
        };
    }
    match build::run_leaving_scratch(&options).await {
        // The workspace goes once the result is out: a large one takes seconds to delete.
        Ok((result, scratch)) => {
            let code = report(args, result);
            scratch.remove_in_background();
            code
        }
        Err(e) => not_started(&e),
    }
}

/// Says why a build could not start; its exit code.
fn not_started(e: &build::BuildError) -> u8 {
    use kiln::spec::{buildspec::LoadError, secrets::SecretsError};
    match e {
        build::BuildError::Spec(spec)
        | build::BuildError::Load(LoadError::Invalid(spec))
        | build::BuildError::Secrets(SecretsError::Invalid(spec)) => {
            print_invalid(spec);
        }
        _ => eprintln!("error: {e}"),
    }
    exit::of_build(e)
}

/// The phases `--phases` or `--until` select; `None`: all of them.
fn selected_phases(args: &BuildArgs) -> Option<Vec<kiln::spec::PhaseName>> {
    use kiln::spec::PhaseName;
    match args.until {
        Some(last) => Some(
            PhaseName::ALL
                .into_iter()
                .take_while(|p| *p != last)
                .chain([last])
                .collect(),
        ),
        None => (!args.phases.is_empty()).then(|| args.phases.clone()),
    }
}

/// The project's folder and buildspec: as given, or found from a buildspec file given as DIR, or
/// found upward from the current folder; the exit code when there is none.
pub(super) fn project(
    dir: Option<&PathBuf>,
    buildspec: Option<&PathBuf>,
) -> Result<(PathBuf, Option<PathBuf>), u8> {
    use kiln::build::locate;
    let located = match (dir, buildspec) {
        (Some(dir), given) if !dir.is_dir() => {
            if given.is_some() {
                eprintln!(
                    "error: {} is a buildspec file, and -b names another: give a folder, or only the file",
                    dir.display()
                );
                return Err(exit::BAD_INPUT);
            }
            locate::from_file(dir)
        }
        (Some(dir), given) => return Ok((dir.clone(), given.cloned())),
        (None, Some(given)) => return Ok((PathBuf::from("."), Some(given.clone()))),
        (None, None) => locate::upward(Path::new(".")),
    };
    match located {
        // Absolute, so that no file of the current folder is taken for it.
        Ok(found) => Ok((
            found.source.clone(),
            found.buildspec.map(|b| found.source.join(b)),
        )),
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::of_build(&e))
        }
    }
}

/// The variables of an `--env-file`; the exit code (after saying why) when it cannot be read or
/// has a bad line.
fn env_file(path: &Path) -> Result<Vec<(String, String)>, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read the env file {}: {e}", path.display());
        exit::BAD_INPUT
    })?;
    kiln::spec::dotenv::variables(path, &text).map_err(|e| print_invalid(&e))
}

/// Packages (with --package) and prints a finished build's result; its exit code.
fn report(args: &BuildArgs, result: BuildResult) -> u8 {
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

/// What a build must never see: kiln's own folders, the secrets file, and the credentials kiln's
/// environment points at (a sandboxed build hides each of them).
pub(super) fn secret_paths(global: &GlobalArgs, secrets: Option<&std::path::Path>) -> Vec<PathBuf> {
    let mut paths = vec![global.state_dir()];
    paths.extend(global.cache_dir());
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
