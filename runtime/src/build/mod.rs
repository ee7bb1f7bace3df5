//! The buildspec executor: CodeBuild 0.2 semantics, phase by phase, every step a plugin.
//!
//! A build copies the source into a fresh workspace, assembles the environment, then runs `install`,
//! `pre_build`, `build` and `post_build` in order. Each command line is one step: the `shell` plugin
//! runs it (or the plugin its first word names), and the shell session (working directory and
//! variables) carries over from step to step. Transitions follow CodeBuild: a failing command skips the
//! rest of its phase's `commands`, `finally` always runs, an install or pre_build failure ends the
//! build, a build failure still runs post_build, and artifacts are still collected after build or
//! post_build failures; `on-failure` changes that per phase.

pub mod artifacts;
pub mod cache;
pub mod env;
pub mod git;
pub mod history;
pub mod locate;
pub mod log;
pub mod mask;
pub mod paths;
pub mod plan;
pub mod plugins;
pub mod project;
pub mod result;
pub mod runtimes;
pub mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cas::LocalStore;
use crate::sandbox::os::{self as os_sandbox, Network, OsSandbox};
use crate::sandbox::{self, Confinement, ExecEnv, Policy, Preopen, Reaper, Sandbox, StepContext};
use crate::spec::buildspec::{self, Buildspec, OnFailure, Parsed, Phase, PhaseName, Version};
use crate::spec::{Secrets, SpecError};

use self::cache::CacheInfo;
use self::log::BuildLog;
use self::result::{BuildResult, PhaseResult, Status};

/// Everything `kiln build` needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The project's directory.
    pub source: PathBuf,
    /// The buildspec; `buildspec.yml` in the source directory by default.
    pub buildspec: Option<PathBuf>,
    /// Build in the source directory itself rather than in a copy.
    pub in_place: bool,
    /// Build this branch, tag or commit of the source's repository instead of its working tree
    /// (which is left as it is).
    pub source_version: Option<String>,
    /// `--env K=V`, over the buildspec's variables.
    pub env: Vec<(String, String)>,
    /// Host variables to pass through besides the defaults.
    pub pass_env: Vec<String>,
    /// The local stand-in for Parameter Store and Secrets Manager.
    pub secrets: Option<PathBuf>,
    /// Where artifacts go; `<source>/.kiln/out` by default.
    pub output: Option<PathBuf>,
    /// Also zip each artifact.
    pub zip: bool,
    /// What the build's network reaches.
    pub network: Network,
    /// Refuse to fall back to Landlock alone where the kernel refuses the build's namespaces.
    pub require_sandbox: bool,
    /// Confine commands at all.
    pub confine: bool,
    /// Extra directories of the host commands may write to.
    pub writable: Vec<PathBuf>,
    /// Directories of the host the build sees read-only.
    pub expose: Vec<PathBuf>,
    /// Memory limit of each of the build's programs, in bytes.
    pub memory: Option<u64>,
    /// How many processes the build may have.
    pub pids_limit: u64,
    /// How large the build's workspace, HOME, /tmp and private layer may grow, in bytes.
    pub disk_limit: Option<u64>,
    /// Paths the build must never see (kiln's folders, the secrets file, credentials).
    pub secrets_hidden: Vec<PathBuf>,
    /// The build's time limit (CodeBuild's build timeout).
    pub timeout: Duration,
    /// A single step's time limit.
    pub step_timeout: Option<Duration>,
    /// Memory limit of one plugin instance, in bytes.
    pub memory_limit: usize,
    /// `--plugin NAME=PATH` and kiln.toml's local paths: components whose name, as a command's
    /// first word or a command on the build's PATH, runs them, with a build's full policy.
    pub plugins: Vec<(String, PathBuf)>,
    /// kiln.toml's registry plugins, as `kiln.lock` pins them: confined to what they declare and
    /// the lock grants.
    pub locked_plugins: Vec<crate::plugins::resolve::Resolved>,
    /// The project (`CODEBUILD_BUILD_ID` starts with it); by default its id, from the repository's
    /// root and the buildspec's path in it (see [`project`]).
    pub project: Option<String>,
    /// Where build numbers and logs are kept.
    pub state_dir: PathBuf,
    /// Where compiled plugins are cached.
    pub cache_dir: Option<PathBuf>,
    /// Where the log goes besides its file.
    pub console: log::Console,
    /// Show a status line on terminals.
    pub progress: bool,
    /// Show plugins' debug lines.
    pub verbose: bool,
    /// `CODEBUILD_INITIATOR`.
    pub initiator: String,
    /// The content-addressed store; `None` turns caching off.
    pub cas_dir: Option<PathBuf>,
    /// Build even when the cache has the result (the result is still saved).
    pub no_cache: bool,
    /// Say why the cache missed (or hit).
    pub explain_cache: bool,
    /// `cache:` entries shared by every project that asks so (`--cache-scope shared`), rather than
    /// the project's own.
    pub shared_cache_scope: bool,
    /// A shared store behind the local one (`--cache s3://bucket/prefix`).
    pub remote_cache: Option<crate::cas::remote::RemoteCache>,
    /// The phases to run (`--phases`, `--until`); `None`: all of them. The others are skipped.
    pub phases: Option<Vec<PhaseName>>,
    /// CodeBuild's secondary sources: each folder is copied into the workspace beside the primary
    /// one and named by `CODEBUILD_SRC_DIR_<identifier>`.
    pub secondary_sources: Vec<(String, PathBuf)>,
    /// Variables whose values are secrets resolved by the caller (a pipeline's `PARAMETER_STORE`
    /// and `SECRETS_MANAGER` variables): set over the others and masked in the log.
    pub secret_env: Vec<(String, String)>,
    /// Told the build's id and log file as soon as the build has them, before anything runs (a
    /// pipeline shows a running build's log).
    pub announce: Option<tokio::sync::mpsc::UnboundedSender<(String, PathBuf)>>,
}

impl BuildOptions {
    /// Whether the build runs only part of the buildspec: such a build is not the buildspec's
    /// build, so it is never looked up in the action cache nor saved to it, saves no `cache:`
    /// paths and publishes no artifacts.
    pub fn partial(&self) -> bool {
        self.phases
            .as_ref()
            .is_some_and(|p| !PhaseName::ALL.iter().all(|n| p.contains(n)))
    }

    /// The build's own plugins (not kiln's): name, component file, and the digest a lock pinned.
    fn user_plugins(&self) -> impl Iterator<Item = (&str, &Path, Option<&str>)> {
        self.plugins
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_path(), None))
            .chain(
                self.locked_plugins
                    .iter()
                    .map(|l| (l.name.as_str(), l.path.as_path(), Some(l.sha256.as_str()))),
            )
    }

    /// Every plugin file the build registers, for the cache key.
    fn all_plugin_files(&self) -> Vec<(String, PathBuf)> {
        self.user_plugins()
            .map(|(n, p, _)| (n.to_string(), p.to_path_buf()))
            .collect()
    }

    /// Whether `phase` is to run.
    fn selects(&self, phase: PhaseName) -> bool {
        self.phases.as_ref().is_none_or(|p| p.contains(&phase))
    }

    /// Why the build would be neither looked up in the action cache nor saved to it, if so.
    pub fn uncacheable(&self) -> Option<&'static str> {
        if self.cas_dir.is_none() {
            Some("the cache is off")
        } else if self.in_place {
            Some("a build --in-place changes its own source")
        } else if self.partial() {
            Some("a partial build (--phases, --until) is not the buildspec's whole build")
        } else {
            None
        }
    }
}

/// The project a build is of: `--project`, else the id of the buildspec in the repository (or
/// folder) `root` (see [`project`]).
fn project_name(options: &BuildOptions, root: &Path, spec_path: &Path) -> String {
    match &options.project {
        Some(name) => name.clone(),
        None => project::id(
            root,
            &spec_path
                .canonicalize()
                .unwrap_or_else(|_| spec_path.to_path_buf()),
        ),
    }
}

/// Why a partial build's phase was skipped, in the log and its result.
const NOT_SELECTED: &str = "not selected (--phases, --until)";

/// Why a build could not start (as opposed to a build that ran and failed).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Load(#[from] buildspec::LoadError),
    #[error("{0}")]
    Secrets(#[from] crate::spec::secrets::SecretsError),
    #[error("{0}")]
    MissingSecrets(#[from] env::MissingSecrets),
    #[error("no buildspec found: looked for {}", .0.display())]
    NoBuildspec(PathBuf),
    #[error(
        "no buildspec.yml (or .yaml, .json) in {} or any folder above it up to {}{}",
        start.display(),
        last.display(),
        if last.parent().is_some() { " (the repository's root)" } else { "" }
    )]
    NoBuildspecAbove { start: PathBuf, last: PathBuf },
    #[error(
        "{} belongs to another user (uid {uid}): kiln does not take another user's file found by looking upward",
        path.display()
    )]
    Foreign { path: PathBuf, uid: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Snapshot(#[from] workspace::SnapshotError),
    #[error("{0}")]
    Confine(#[from] sandbox::process::ConfineError),
    #[error("{0} (--require-sandbox refuses to fall back to Landlock alone)")]
    Namespaces(#[from] os_sandbox::SandboxError),
    #[error("run-as `{user}`: {message}")]
    RunAs { user: String, message: String },
    #[error("{0}")]
    Sandbox(String),
    #[error("the cache: {0}")]
    Cache(String),
    /// The buildspec's `env.shell` cannot run on this host: nothing ran.
    #[error("{0}")]
    Shell(String),
    #[error("secondary source `{name}`: {message}")]
    SecondarySource { name: String, message: String },
    #[error("{0}")]
    Output(#[from] artifacts::ArtifactError),
    /// A plugin the build names cannot run: nothing ran.
    #[error("plugin `{name}`: {message}")]
    Plugin { name: String, message: String },
}

impl BuildError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Finds the buildspec of a project: the given path, or `buildspec.yml` (then `.yaml`, `.json`).
pub fn find_buildspec(source: &Path, given: Option<&Path>) -> Result<PathBuf, BuildError> {
    if let Some(path) = given {
        let path = if path.is_absolute() || path.exists() {
            path.to_path_buf()
        } else {
            source.join(path)
        };
        return Ok(path);
    }
    locate::BUILDSPEC_NAMES
        .iter()
        .map(|name| source.join(name))
        .find(|p| p.exists())
        .ok_or_else(|| BuildError::NoBuildspec(source.join("buildspec.yml")))
}

/// The session of the shell: what carries over from one command to the next.
#[derive(Debug, Clone)]
struct Session {
    cwd: PathBuf,
    env: env::Vars,
}

/// How one phase ended.
struct PhaseRun {
    status: Status,
    status_code: &'static str,
    message: String,
}

/// A build in progress.
struct Runner<'a> {
    spec: &'a Buildspec,
    sandbox: &'a Sandbox,
    log: Arc<BuildLog>,
    session: Session,
    source_dir: PathBuf,
    temp_dir: PathBuf,
    session_dir: PathBuf,
    /// The build's tools folder, where the plugins' shims are (`None`: it could not be written).
    tools: Option<PathBuf>,
    build_id: String,
    exec: ExecEnv,
    options: &'a BuildOptions,
    deadline: Instant,
    run_as: Option<(u32, u32)>,
    /// Set when the build went past `--disk-limit` (its processes are killed then).
    disk_exceeded: Arc<std::sync::atomic::AtomicBool>,
    /// The install phase's `runtime-versions`, found or not.
    runtimes: Result<Vec<runtimes::Toolchain>, runtimes::Unmatched>,
}

/// Runs a build to its end. A build that runs and fails is an `Ok` with a failed status; `Err` means it
/// could not start. The build's scratch folder is removed before this returns.
pub async fn run(options: &BuildOptions) -> Result<BuildResult, BuildError> {
    let (result, scratch) = run_leaving_scratch(options).await?;
    scratch.remove();
    Ok(result)
}

/// [`run`], leaving the build's scratch folder (its workspace, HOME, /tmp and private layer) to the
/// caller: removing a large one (a `node_modules` tree) takes seconds, which a CLI spends after it
/// printed the result ([`workspace::Scratch::remove_in_background`]) and a worker after it reported
/// it. Dropped, the folder is removed then.
pub async fn run_leaving_scratch(
    options: &BuildOptions,
) -> Result<(BuildResult, workspace::Scratch), BuildError> {
    let started = Instant::now();
    let start_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let source = options
        .source
        .canonicalize()
        .map_err(BuildError::io(&options.source))?;
    let spec_path = find_buildspec(&source, options.buildspec.as_deref())?;
    check_secondary_sources(options)?;
    // A build of another commit (`--source-version`) runs that commit's buildspec.
    let parsed = match &options.source_version {
        Some(name) => {
            let revision_err =
                |e: String| BuildError::Snapshot(workspace::SnapshotError::Revision(e));
            let revision = git::resolve(&source, name).map_err(revision_err)?;
            let rel = spec_path.strip_prefix(&source).map_err(|_| {
                revision_err(format!(
                    "the buildspec {} is not in the repository",
                    spec_path.display()
                ))
            })?;
            let text = git::file_at(&source, &revision.commit, rel).map_err(revision_err)?;
            buildspec::parse(&PathBuf::from(format!("{name}:{}", rel.display())), &text)?
        }
        None => buildspec::load(&spec_path)?,
    };
    let Parsed {
        buildspec: spec,
        warnings,
        source: spec_text,
        canonical,
    } = parsed;
    let secrets = match &options.secrets {
        Some(path) => Secrets::load(path)?,
        None => Secrets::default(),
    };
    let mut resolved = env::resolve(
        &spec.env,
        &secrets,
        &options.pass_env,
        &options.env,
        options.network != Network::None,
    )?;
    for (name, value) in &options.secret_env {
        resolved.vars.set(name, value.clone());
        resolved.masked.push(value.clone());
    }
    // `runtime-versions`: the toolchains chosen go first on the build's PATH (and so into its
    // cache key); a version the host lacks fails the install phase.
    let runtimes = spec
        .phases
        .iter()
        .find(|p| p.name == PhaseName::Install)
        .map_or(Ok(Vec::new()), |p| {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            runtimes::select(&p.runtime_versions, home.as_deref(), &|name| {
                std::env::var(name).ok()
            })
        });
    if let Ok(chosen) = &runtimes
        && chosen.iter().any(|t| t.bin.is_some())
    {
        let bins: Vec<String> = chosen
            .iter()
            .filter_map(|t| Some(t.bin.as_ref()?.to_string_lossy().into_owned()))
            .collect();
        let path = resolved.vars.get("PATH").unwrap_or("/usr/bin:/bin");
        let path = format!("{}:{path}", bins.join(":"));
        resolved.vars.set("PATH", path);
    }

    refuse_shell(spec.env.shell, resolved.vars.get("PATH").unwrap_or(""))?;

    // One git process says what the source is: the repository's root (for the project's id), HEAD,
    // and whether the workspace can be given its history.
    let work_tree = git::work_tree(&source);
    let project = project_name(
        options,
        work_tree
            .as_ref()
            .and_then(|t| t.root.as_deref())
            .unwrap_or(&source),
        &spec_path,
    );
    let records = options.state_dir.join("builds").join(&project);
    private_dir(&records).map_err(BuildError::io(&records))?;
    let build_number = next_build_number(&records).map_err(BuildError::io(&records))?;
    let build_id = format!("{project}:{}", uuid::Uuid::new_v4());
    let log_file = records.join(format!("{build_number}.log"));
    let log = Arc::new(
        BuildLog::create(Some(&log_file), options.console, options.progress)
            .map_err(BuildError::io(&log_file))?
            .verbose(options.verbose),
    );
    log.mask(resolved.masked.clone());
    if let Some(announce) = &options.announce {
        let _ = announce.send((build_id.clone(), log_file.clone()));
    }
    if !warnings.is_empty() {
        let rendered =
            crate::spec::diagnostic::render_all(&spec_path, &spec_text, &warnings, false);
        for line in rendered.lines() {
            log.output(line);
        }
    }

    // Every plugin is checked now, before any phase: a plugin that cannot run fails the build here,
    // not when its line comes.
    for (name, path, sha256) in options.user_plugins() {
        let refused = |message: String| BuildError::Plugin {
            name: name.to_string(),
            message,
        };
        if let Some(why) = plugins::name_refusal(name) {
            return Err(refused(why));
        }
        plugins::check_file(path, sha256).map_err(refused)?;
    }
    for (name, path) in &options.plugins {
        log.container(&format!(
            "warning: plugin `{name}` is a local file ({}): it runs with a build's full policy (host programs, the build's network, every variable); a plugin named in kiln.toml from a registry runs with only what it declares and kiln.lock grants",
            path.display()
        ));
    }

    // The workspace: a copy of the source (or the source itself), and a private temp dir.
    // Named after this process, so that a later build can tell it is left over from a killed one.
    sweep_dead(
        &std::env::temp_dir(),
        "kiln-build-",
        os_sandbox::remove_scratch,
    );
    let scratch = tempfile::Builder::new()
        .prefix(&format!("kiln-build-{}-", std::process::id()))
        .tempdir()
        .map(workspace::Scratch::new)
        .map_err(|e| BuildError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let scratch_dir = scratch
        .path()
        .canonicalize()
        .map_err(BuildError::io(scratch.path()))?;
    let temp_dir = scratch_dir.join("tmp");
    std::fs::create_dir_all(&temp_dir).map_err(BuildError::io(&temp_dir))?;
    // The shell session's state passes through a file per command: in memory where the system has a
    // tmpfs for it, private to this build either way (it holds the session's variables, secrets too).
    sweep_dead(Path::new("/dev/shm"), "kiln-session-", remove_tree);
    let session = tempfile::Builder::new()
        .prefix(&format!("kiln-session-{}-", std::process::id()))
        .tempdir_in("/dev/shm")
        .or_else(|_| {
            tempfile::Builder::new()
                .prefix("session-")
                .tempdir_in(&scratch_dir)
        })
        .map_err(BuildError::io(&scratch_dir))?;
    // The folder the shell writes is inside that private one and open to every user of the build
    // (a `run-as` phase's shell writes it too): only this build's sandbox can reach it.
    let session_dir = session
        .path()
        .canonicalize()
        .map_err(BuildError::io(session.path()))?
        .join("shell");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(session.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(BuildError::io(session.path()))?;
        std::fs::create_dir(&session_dir).map_err(BuildError::io(&session_dir))?;
        std::fs::set_permissions(&session_dir, std::fs::Permissions::from_mode(0o1777))
            .map_err(BuildError::io(&session_dir))?;
    }
    log.container(&format!(
        "Running on kiln {} (local)",
        env!("CARGO_PKG_VERSION")
    ));
    for entry in &resolved.unmatched {
        log.container(&format!(
            "warning: --pass-env {entry} matches no variable of kiln's environment"
        ));
    }
    // Where artifacts go (see `artifacts::Output` for which links are followed), refused now if
    // it leads through a link; its path, absolute, so that one inside the project can be left out
    // of its source.
    let output = artifacts::Output::locate(&source, options.output.as_deref())?;
    output.check()?;
    let output_path = output.path();
    let download_started = Instant::now();
    log.container("Entering phase DOWNLOAD_SOURCE");
    let mut repositories = Vec::new();
    let (source_dir, git_head) = if options.in_place {
        (source.clone(), work_tree.and_then(|t| t.head))
    } else {
        let dir = scratch_dir.join("src");
        std::fs::create_dir_all(&dir).map_err(BuildError::io(&dir))?;
        // Outputs written inside the project (`-o out`) are not part of its source, nor are the
        // secrets file and the other paths the build must not see.
        let outputs: Vec<PathBuf> = std::iter::once(&output_path)
            .chain(&options.secrets_hidden)
            .filter_map(|p| p.strip_prefix(&source).ok())
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect();
        let snapshot = match &options.source_version {
            Some(name) => workspace::snapshot_at(&source, work_tree, name, &dir)?,
            None => workspace::snapshot(&source, work_tree, &dir, &outputs)?,
        };
        log.container(&format!(
            "Copied {} files of {} into {}",
            snapshot.files,
            source.display(),
            dir.display()
        ));
        for why in &snapshot.without_history {
            log.container(&format!("No .git for {why}"));
        }
        repositories = snapshot.repositories;
        (dir, snapshot.git_head)
    };
    let mut secondary = Vec::new();
    for (name, from) in &options.secondary_sources {
        let dest = scratch_dir.join("src2").join(name);
        std::fs::create_dir_all(&dest).map_err(BuildError::io(&dest))?;
        let from = from.canonicalize().map_err(BuildError::io(from))?;
        let copied = workspace::snapshot(&from, git::work_tree(&from), &dest, &[])?;
        log.container(&format!(
            "Copied {} files of secondary source {name} ({}) into {}",
            copied.files,
            from.display(),
            dest.display()
        ));
        secondary.push((name.clone(), dest));
    }
    log.container("Phase complete: DOWNLOAD_SOURCE State: SUCCEEDED");
    log.container("Phase context status code:  Message: ");
    let mut phases = vec![PhaseResult {
        name: "DOWNLOAD_SOURCE".into(),
        status: Status::Succeeded,
        duration_ms: download_started.elapsed().as_millis() as u64,
        status_code: String::new(),
        message: String::new(),
        attempts: 1,
    }];

    // The OS sandbox: the build's own namespaces, the host's root under a private layer. Where the
    // kernel refuses namespaces, Landlock alone confines commands (or --require-sandbox refuses).
    let tools = scratch_dir.join("bin");
    let (tools_ok, kiln_outside) = match write_tools(&tools) {
        Ok(kiln) => (true, kiln),
        Err(_) => (false, None),
    };
    let mut os = if options.confine {
        let config = os_sandbox::Config {
            scratch: scratch_dir.clone(),
            writable: [source_dir.clone(), session_dir.clone()]
                .into_iter()
                .chain(secondary.iter().map(|(_, dir)| dir.clone()))
                .chain(
                    options
                        .writable
                        .iter()
                        .filter_map(|w| w.canonicalize().ok()),
                )
                .collect(),
            // The project's objects, which the workspace's `.git` borrows, read-only.
            expose: exposed(options, &tools, kiln_outside.as_deref())
                .into_iter()
                .chain(repositories.iter().map(|(_, r)| r.objects.clone()))
                // A runtime found as a program on kiln's PATH (not a manager's folder): that file.
                .chain(
                    runtimes
                        .iter()
                        .flatten()
                        .map(|t| t.root.clone())
                        .filter(|r| !r.is_dir()),
                )
                .collect(),
            // Toolchains in homes and the versions runtime-versions chose: writable for the build
            // (pyenv rehash, pip install into its Python), the host's folder never changed.
            toolchains: {
                let path = std::env::var("PATH").unwrap_or_default();
                let given: Vec<PathBuf> = options
                    .expose
                    .iter()
                    .filter_map(|p| p.canonicalize().ok())
                    .collect();
                let mut list: Vec<PathBuf> =
                    toolchains(&path, Path::new("/root"), Path::new("/home"))
                        .into_iter()
                        .chain(runtimes.iter().flatten().map(|t| t.root.clone()))
                        .filter(|t| t.is_dir() && !given.iter().any(|g| t.starts_with(g)))
                        .collect();
                list.sort();
                list.dedup();
                list
            },
            // An in-place build works in the user's own tree: its `.git` (hooks, config) would run
            // on the host with the user's next git command, so the build sees it read-only.
            protect: options
                .in_place
                .then(|| source_dir.join(".git"))
                .into_iter()
                .collect(),
            hide: options.secrets_hidden.clone(),
            network: options.network,
            memory: options.memory,
            pids: options.pids_limit,
            disk_limit: options.disk_limit,
        };
        match OsSandbox::start(&config) {
            Ok(os) => {
                log.container(&format!(
                    "Sandbox: the build's own namespaces, network {}, its root {}",
                    os.network.as_str(),
                    if os.idmapped {
                        "an unprivileged id outside"
                    } else {
                        "your own user outside"
                    }
                ));
                for warning in &os.warnings {
                    log.container(&format!("warning: {warning}"));
                }
                Some(Arc::new(os))
            }
            Err(e) => {
                // Which kernel setting refuses, where one does (the launcher only saw EPERM).
                let e = match os_sandbox::probe::user_namespaces() {
                    Err(why) => os_sandbox::SandboxError(format!("{e} ({why})")),
                    Ok(()) => e,
                };
                if options.require_sandbox {
                    return Err(e.into());
                }
                log.container(&format!(
                    "warning: {e}; build commands run on the host under Landlock alone (--require-sandbox refuses to)"
                ));
                None
            }
        }
    } else {
        None
    };
    if os.is_none() && (options.memory.is_some() || options.disk_limit.is_some()) {
        log.container(
            "warning: --memory and --disk-limit hold only in the namespace sandbox, which this build does not have",
        );
    }
    let sandbox_kind = match (&os, options.confine) {
        (Some(_), _) => "namespaces",
        (None, true) => "landlock",
        (None, false) => "none",
    };

    // The `cache:` section's folders, as kiln reaches them: in the sandbox, the build's HOME and /tmp
    // are folders of its scratch space, and nothing of the host is ever made writable for a cache.
    let resolved_home = resolved.vars.get("HOME").map(str::to_string);
    let home = if os.is_some() {
        Some("/root")
    } else {
        resolved_home.as_deref()
    };
    let mut cache_paths = spec
        .cache
        .as_ref()
        .map(|c| paths::resolve(c, &source_dir, home))
        .unwrap_or_default();
    // A `..` would lead a cache path out of the folder it names (`src/../../etc` starts with the
    // workspace only as text).
    cache_paths.retain(|p| {
        let climbs = p
            .root
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if climbs {
            log.container(&format!(
                "warning: cache path {} is not cached: it climbs out of its folder with `..`",
                p.pattern
            ));
        }
        !climbs
    });
    if os.is_some() {
        cache_paths.retain_mut(|p| match sandbox_view(&p.root, &scratch_dir, &source_dir) {
            Some(host) => {
                p.root = host;
                true
            }
            None => {
                log.container(&format!(
                    "warning: cache path {} is not cached: in the sandbox only the workspace, HOME (/root) and /tmp are",
                    p.pattern
                ));
                false
            }
        });
    } else {
        // Without the build's own filesystem, a cache path outside the workspace is a folder of the
        // host (`~/.ssh`, `/etc`): kiln would restore into it, and the build would need it writable.
        cache_paths.retain(|p| {
            let inside = p.root.starts_with(&source_dir);
            if !inside {
                log.container(&format!(
                    "warning: cache path {} is not cached: without the namespace sandbox only paths in the workspace are",
                    p.pattern
                ));
            }
            inside
        });
    }
    // Where a cache path's links are looked for, before a restore and a save.
    let cache_bases = CacheBases {
        bases: [
            os.as_ref().map(|_| scratch_dir.clone()),
            Some(source_dir.clone()),
            resolved_home
                .as_deref()
                .filter(|_| os.is_none())
                .map(PathBuf::from),
        ],
    };
    // Cache paths are all in the workspace by now: none widens what the build may write.
    let mut writable = vec![source_dir.clone(), temp_dir.clone(), session_dir.clone()];
    writable.extend(secondary.iter().map(|(_, dir)| dir.clone()));
    writable.extend(options.writable.iter().cloned());
    let confinement = Confinement {
        writable,
        readable: vec![PathBuf::from("/")],
        network: options.network != Network::None,
        required: options.require_sandbox,
        enabled: options.confine && os.is_none(),
    };
    let prepared = confinement.prepare()?;
    let confined = os.is_some() || prepared.is_confined();
    if options.confine && !confined {
        log.container(
            "warning: this kernel has neither namespaces nor Landlock for kiln: build commands run unconfined (--require-sandbox refuses to)",
        );
    }
    let run_as = spec
        .run_as
        .as_deref()
        .map(resolve_user)
        .transpose()?
        .flatten();

    let key_vars = resolved.vars.clone();
    let mut vars = resolved.vars;
    vars.set("CODEBUILD_SRC_DIR", source_dir.to_string_lossy());
    for (name, dir) in &secondary {
        vars.set(&format!("CODEBUILD_SRC_DIR_{name}"), dir.to_string_lossy());
    }
    vars.set("CODEBUILD_BUILD_ID", build_id.clone());
    vars.set(
        "CODEBUILD_BUILD_ARN",
        format!("arn:aws:codebuild:local:000000000000:build/{build_id}"),
    );
    vars.set("CODEBUILD_BUILD_NUMBER", build_number.to_string());
    vars.set("CODEBUILD_START_TIME", start_time.to_string());
    vars.set("CODEBUILD_INITIATOR", options.initiator.clone());
    vars.set(
        "CODEBUILD_RESOLVED_SOURCE_VERSION",
        git_head.clone().unwrap_or_default(),
    );
    vars.set(
        "CODEBUILD_SOURCE_VERSION",
        git_head.clone().unwrap_or_default(),
    );
    vars.set("CODEBUILD_BUILD_SUCCEEDING", "1");
    vars.set("CODEBUILD_CI", "true");
    if os.is_some() {
        // The build's own HOME and /tmp, as on CodeBuild, where builds run as root.
        vars.set("HOME", "/root");
        vars.set("TMPDIR", "/tmp");
        for name in ["USER", "LOGNAME"] {
            if vars.get(name).is_some() {
                vars.set(name, "root");
            }
        }
    } else {
        vars.set("TMPDIR", temp_dir.to_string_lossy());
    }
    // `codebuild-hash-files`, as on CodeBuild's images, for cache keys; and in the namespace sandbox,
    // where the build is root, a `sudo` that runs what it is given (CodeBuild's images have sudo,
    // and buildspecs say `sudo apt-get ...`; the host's, where there is one, cannot work there).
    if tools_ok
        && os.is_some()
        && let Err(e) = write_sudo(&tools)
    {
        log.container(&format!("warning: no sudo in the build: {e}"));
    }
    if tools_ok {
        let path = vars.get("PATH").unwrap_or("/usr/bin:/bin").to_string();
        vars.set("PATH", format!("{}:{path}", tools.display()));
    }

    for note in notices(&spec) {
        log.container(&format!("warning: {note}"));
    }

    let store = options
        .cas_dir
        .as_deref()
        .map(LocalStore::open)
        .transpose()
        .map_err(|e| BuildError::Cache(e.to_string()))?;
    let mut cache_info = CacheInfo::default();
    let uncacheable = if store.is_none() {
        Some("the cache is off")
    } else {
        options.uncacheable()
    };
    let mut to_save = None;
    match (&store, uncacheable) {
        (Some(store), None) => {
            let (mut inputs, tree) = cache::key_inputs(
                &canonical,
                spec_path.strip_prefix(&source).ok(),
                &source_dir,
                &key_vars,
                spec.env.shell.program(),
                &Sandbox::plugin_digests(&options.all_plugin_files())
                    .map_err(|e| BuildError::Sandbox(e.to_string()))?,
            )
            .map_err(|e| BuildError::Cache(e.to_string()))?;
            for (name, dir) in &secondary {
                let tree = crate::cas::tree::Tree::scan(dir)
                    .map_err(|e| BuildError::Cache(e.to_string()))?;
                inputs.secondary.insert(name.clone(), tree.digest());
            }
            let key = inputs.key();
            cache_info.key = Some(key.hex());
            let hit = if options.no_cache {
                None
            } else {
                match store.get_action(&key) {
                    Some(hit) => Some(hit),
                    None => match &options.remote_cache {
                        Some(remote) => fetch_remote(remote, store, &key, &log).await,
                        None => None,
                    },
                }
            };
            if options.explain_cache {
                cache::explain(&records, &inputs, &tree, hit.is_some(), &log);
            }
            cache::remember(&records, &inputs, &tree);
            if let Some((entry, trees)) = hit {
                let restored = cache::restore(store, &entry, &trees, &output, options.zip, &log);
                match restored {
                    Ok(artifacts) => {
                        cache_info.hit = true;
                        cache_info.restored_from =
                            entry.result["build_id"].as_str().map(str::to_string);
                        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
                        let from = match entry.result["build_number"].as_u64() {
                            Some(n) => format!("build {n}"),
                            None => "an earlier build".to_string(),
                        };
                        log.container(&format!(
                            "Cache hit: the artifacts ({}) and exported variables are {from}'s, and so is whatever they took from CODEBUILD_BUILD_NUMBER, CODEBUILD_BUILD_ID or the start time (--no-cache runs the build again)",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") },
                        ));
                        log.container(&format!(
                            "Build {build_id}: SUCCEEDED (restored from the cache)"
                        ));
                        log.finish();
                        let result = BuildResult {
                            build_id,
                            build_number,
                            project,
                            status: Status::Succeeded,
                            source_version: git_head,
                            start_time,
                            duration_ms: started.elapsed().as_millis() as u64,
                            phases: serde_json::from_value(entry.result["phases"].clone())
                                .unwrap_or_default(),
                            exported_variables: serde_json::from_value(
                                entry.result["exported_variables"].clone(),
                            )
                            .unwrap_or_default(),
                            artifacts,
                            log_file: Some(log_file),
                            confined,
                            sandbox: sandbox_kind.to_string(),
                            cache: cache_info,
                        };
                        let result = result.masked(&log.masker());
                        write_record(&records, &result);
                        return Ok((result, scratch));
                    }
                    // A hit that cannot be restored (a blob went bad since the lookup) is a miss.
                    Err(e) => log.container(&format!(
                        "warning: the cached result could not be restored ({e}); building"
                    )),
                }
            }
            to_save = Some((key, inputs));
        }
        (_, reason) => {
            cache_info.uncacheable = reason.map(str::to_string);
            if let Some(reason) = reason {
                log.container(&format!("Not cached: {reason}"));
            }
        }
    }

    // The workspace's `.git`, for a build that runs (it is not part of the source's digest).
    for (rel, repository) in &repositories {
        let at = if rel.as_os_str().is_empty() {
            String::new()
        } else {
            format!(" in {}", rel.display())
        };
        let lending = Instant::now();
        let lent = repository.lend(&source_dir.join(rel));
        tracing::debug!("build: .git{at} made in {:?}", lending.elapsed());
        match lent {
            Ok(tags) => log.container(&format!(
                "Git{at}: {} at {}, {tags} tag(s), objects read from {}",
                repository.branch.as_deref().unwrap_or("detached HEAD"),
                repository.head,
                repository.objects.display()
            )),
            Err(e) => log.container(&format!("warning: no .git{at}: {e}")),
        }
    }

    // The engine starts only for a build that runs (a cache hit returned above).
    let mut sandbox = Sandbox::new(options.cache_dir.clone())
        .map_err(|e| BuildError::Sandbox(format!("cannot start the WebAssembly engine: {e:#}")))?;
    for (name, path) in &options.plugins {
        sandbox.register_file(name, path);
    }
    for locked in &options.locked_plugins {
        sandbox.register(
            &locked.name,
            sandbox::PluginFile {
                path: locked.path.clone(),
                sha256: Some(locked.sha256.clone()),
                grant: sandbox::Grant::Registry {
                    reference: locked.reference.clone(),
                    granted: locked.granted.clone(),
                },
            },
        );
    }
    let shims = if tools_ok {
        let kiln = kiln_outside.clone().unwrap_or_else(|| tools.join("kiln"));
        Some((tools.clone(), kiln))
    } else {
        None
    };
    plugins::load(
        &sandbox,
        options,
        &log,
        shims.as_ref().map(|(t, k)| (t.as_path(), k.as_path())),
        &build_id,
        &source_dir,
        &temp_dir,
    )?;
    let reaper = Reaper::default();
    let disk_watch = DiskWatch::start(&scratch_dir, options.disk_limit, os.as_ref());
    let mut runner = Runner {
        spec: &spec,
        sandbox: &sandbox,
        log: log.clone(),
        session: Session {
            cwd: source_dir.clone(),
            env: vars,
        },
        source_dir: source_dir.clone(),
        temp_dir: temp_dir.clone(),
        session_dir,
        tools: tools_ok.then(|| tools.clone()),
        build_id: build_id.clone(),
        exec: ExecEnv {
            prepared: Arc::new(prepared),
            reaper: reaper.clone(),
            run_as,
            os: os.clone(),
        },
        options,
        deadline: Instant::now() + options.timeout,
        run_as,
        disk_exceeded: disk_watch.exceeded.clone(),
        runtimes,
    };

    // The `cache:` section: restore before install, from the project's own entries.
    let cache_scope = if options.shared_cache_scope {
        paths::Scope::Shared
    } else {
        paths::Scope::Project(project.clone())
    };
    let mut paths_key = None;
    if let (Some(cache), Some(store)) = (&spec.cache, &store) {
        let (restore, save) = paths::actions(cache);
        let key = match &cache.key {
            Some(key) => runner.expand(key).await.map(|k| (k, false)),
            None => Some((format!("project/{project}"), true)),
        };
        match key {
            Some((key, update)) => {
                if restore {
                    // A project may hold links where its cache paths are (`vendor -> /etc`):
                    // nothing is restored through one.
                    let safe = cache_bases.unlinked(&cache_paths, "restored", &log);
                    match paths::find(store, &cache_scope, &key, &cache.fallback_keys) {
                        Some(entry) => match paths::restore(store, &entry, &safe) {
                            Ok(files) => log.container(&format!(
                                "Restored cache {} ({files} files) for key {key}",
                                entry.key
                            )),
                            Err(e) => log.container(&format!(
                                "warning: cache {} could not be restored: {e}",
                                entry.key
                            )),
                        },
                        None => log.container(&format!("No cache found for key {key}")),
                    }
                }
                if save {
                    paths_key = Some((key, update));
                }
            }
            None => {
                log.container("warning: the cache key could not be expanded; cache: is skipped")
            }
        }
    }

    let mut status = Status::Succeeded;
    let mut upload = true;
    for name in PhaseName::ALL {
        if !options.selects(name) {
            log.container(&format!(
                "Skipping phase {}: {NOT_SELECTED}",
                name.log_name()
            ));
            phases.push(PhaseResult::skipped(name.log_name(), NOT_SELECTED));
            continue;
        }
        let phase = spec.phases.iter().find(|p| p.name == name);
        let phase_started = Instant::now();
        let (run, attempts) = runner.phase_with_retries(name, phase).await;
        phases.push(PhaseResult {
            name: name.log_name().into(),
            status: run.status,
            duration_ms: phase_started.elapsed().as_millis() as u64,
            status_code: run.status_code.into(),
            message: run.message.clone(),
            attempts,
        });
        if run.status == Status::Succeeded {
            continue;
        }
        if status == Status::Succeeded {
            status = if run.status == Status::TimedOut {
                Status::TimedOut
            } else {
                Status::Failed
            };
        }
        runner.session.env.set("CODEBUILD_BUILD_SUCCEEDING", "0");
        if run.status == Status::TimedOut && Instant::now() >= runner.deadline
            || runner
                .disk_exceeded
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            upload = false;
            break;
        }
        match phase.and_then(|p| p.on_failure.as_ref()) {
            Some(OnFailure::Abort) => {
                upload = false;
                break;
            }
            Some(OnFailure::Continue) => continue,
            _ => match name {
                PhaseName::Install | PhaseName::PreBuild => {
                    upload = false;
                    break;
                }
                PhaseName::Build | PhaseName::PostBuild => continue,
            },
        }
    }

    let mut artifact_results = Vec::new();
    // A partial build's outputs are not the buildspec's: they would replace a whole build's
    // published artifacts.
    if spec.artifacts.is_some() && upload && options.partial() {
        let why = "a partial build (--phases, --until) publishes no artifacts";
        log.container(&format!("Skipping phase UPLOAD_ARTIFACTS: {why}"));
        phases.push(PhaseResult::skipped("UPLOAD_ARTIFACTS", why));
        upload = false;
    }
    if let Some(definition) = spec.artifacts.as_ref().filter(|_| upload) {
        let phase_started = Instant::now();
        log.container("Entering phase UPLOAD_ARTIFACTS");
        let collected = artifacts::collect(&runner.artifact_env(), definition, &output).await;
        let (phase_status, code, message) = match collected {
            Ok(results) => {
                for a in &results {
                    log.container(&format!(
                        "Artifact {}: {} file(s) in {}",
                        a.name,
                        a.files.len(),
                        a.path.display()
                    ));
                }
                artifact_results = results;
                (Status::Succeeded, "", String::new())
            }
            Err(e) => {
                status = Status::Failed;
                (Status::Failed, e.status_code(), e.to_string())
            }
        };
        log.container(&format!(
            "Phase complete: UPLOAD_ARTIFACTS State: {}",
            phase_status.as_str()
        ));
        log.container(&format!(
            "Phase context status code: {code} Message: {message}"
        ));
        phases.push(PhaseResult {
            name: "UPLOAD_ARTIFACTS".into(),
            status: phase_status,
            duration_ms: phase_started.elapsed().as_millis() as u64,
            status_code: code.into(),
            message,
            attempts: 1,
        });
    }

    let exported_variables: BTreeMap<String, String> = spec
        .env
        .exported_variables
        .iter()
        .map(|name| {
            (
                name.clone(),
                runner.session.env.get(name).unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, value) in &exported_variables {
        log.container(&format!("Exported variable {name}={value}"));
    }
    reaper.kill_all();
    // The build's processes end with its sandbox; its private layer goes with the scratch folder.
    drop(runner);
    drop(disk_watch);
    let sandboxed = os.is_some();
    if let Some(os) = os.take() {
        os.shutdown();
    }
    // The build's root writes the host's folders it was given (an in-place workspace,
    // --writable) as root: a setuid or setgid program it left there would run as root on the host.
    if sandboxed {
        let mut given: Vec<&Path> = options.writable.iter().map(PathBuf::as_path).collect();
        if options.in_place {
            given.push(&source_dir);
        }
        let stripped = strip_setid(
            &given,
            SystemTime::UNIX_EPOCH + Duration::from_millis(start_time),
        );
        if stripped > 0 {
            log.container(&format!(
                "warning: the build left {stripped} setuid or setgid file(s) in folders of the host; their setuid and setgid bits were removed"
            ));
        }
    }
    // The `cache:` paths are saved once nothing of the build runs any more (a daemon could swap a
    // folder for a link while kiln reads it), and never through a link the build made: the build
    // writes its HOME and /tmp, and a link there would make kiln read the host's files.
    if let (Some((key, _)), true) = (&paths_key, options.partial()) {
        log.container(&format!(
            "Cache for key {key} not saved: a partial build (--phases, --until) may leave its paths incomplete"
        ));
        paths_key = None;
    }
    if let (Some(store), Some((key, update)), Status::Succeeded) = (&store, &paths_key, status) {
        let safe = cache_bases.unlinked(&cache_paths, "saved", &log);
        match paths::save(store, &cache_scope, key, &safe, *update) {
            Ok(true) => log.container(&format!("Saved cache for key {key}")),
            Ok(false) => log.container(&format!("Cache for key {key} exists; not updated")),
            Err(e) => log.container(&format!("warning: the cache could not be saved: {e}")),
        }
    }
    log.container(&format!("Build {}: {}", build_id, status.as_str()));
    log.finish();

    let mut result = BuildResult {
        build_id,
        build_number,
        project,
        status,
        source_version: git_head,
        start_time,
        duration_ms: started.elapsed().as_millis() as u64,
        phases,
        exported_variables,
        artifacts: artifact_results,
        log_file: Some(log_file.clone()),
        confined,
        sandbox: sandbox_kind.to_string(),
        cache: cache_info,
    };
    // What kiln keeps and prints of the build (the record, --json, the cache entry, a package's
    // manifest) has its secrets masked as the log has.
    result = result.masked(&log.masker());
    if let (Some(store), Some((key, inputs)), Status::Succeeded) = (&store, &to_save, result.status)
    {
        match cache::save(store, key, inputs, &result, &log_file) {
            Ok(()) => result.cache.saved = true,
            Err(e) => eprintln!("warning: the build could not be saved to the cache: {e}"),
        }
        if let (true, Some(remote)) = (
            result.cache.saved,
            options.remote_cache.as_ref().filter(|r| !r.read_only),
        ) {
            match remote.upload_action(store, key).await {
                Ok(t) => {
                    result.cache.uploaded = Some(t);
                    tracing::info!(
                        "cache: {} of {} blobs ({} bytes) sent to {}",
                        t.moved,
                        t.blobs,
                        t.bytes,
                        remote.url()
                    );
                }
                Err(e) => eprintln!(
                    "warning: the build could not be saved to the remote cache {}: {e}",
                    remote.url()
                ),
            }
        }
    }
    write_record(&records, &result);
    Ok((result, scratch))
}

/// Looks a key up in the remote cache, bringing what it names into the local store; any failure is
/// a miss (the build runs), with a warning.
async fn fetch_remote(
    remote: &crate::cas::remote::RemoteCache,
    store: &LocalStore,
    key: &crate::cas::Digest,
    log: &BuildLog,
) -> Option<(crate::cas::action::ActionEntry, Vec<crate::cas::tree::Tree>)> {
    match remote.fetch_action(store, key).await {
        Ok(Some(t)) => {
            log.container(&format!(
                "Cache: found in {}; fetched {} of {} blobs ({} bytes)",
                remote.url(),
                t.moved,
                t.blobs,
                t.bytes
            ));
            store.get_action(key)
        }
        Ok(None) => None,
        Err(e) => {
            log.container(&format!(
                "warning: the remote cache {} could not be read: {e}",
                remote.url()
            ));
            None
        }
    }
}

/// `--disk-limit`: a thread that adds up the build's private space (workspace, HOME, /tmp, private
/// layer) every half second and kills the build's processes when it grows past the limit.
struct DiskWatch {
    exceeded: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DiskWatch {
    fn start(scratch: &Path, limit: Option<u64>, os: Option<&Arc<OsSandbox>>) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let watch = Self {
            exceeded: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        if let (Some(limit), Some(os)) = (limit, os) {
            // Weak: the sandbox ends with the build, not when this thread next wakes up.
            let os = Arc::downgrade(os);
            let (exceeded, stop) = (watch.exceeded.clone(), watch.stop.clone());
            let scratch = scratch.to_path_buf();
            let _ = std::thread::Builder::new()
                .name("kiln-disk".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let layer = os.upgrade().and_then(|os| os.layer_usage()).unwrap_or(0);
                        let used: u64 = ["src", "tmp", "home", "layers"]
                            .iter()
                            .map(|d| disk_usage(&scratch.join(d)))
                            .sum::<u64>()
                            + layer;
                        if used >= limit {
                            exceeded.store(true, Ordering::Relaxed);
                            if let Some(os) = os.upgrade() {
                                os.kill_all();
                            }
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                });
        }
        watch
    }
}

impl Drop for DiskWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Bytes allocated below `dir`, not crossing into other file systems.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .same_file_system(true)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// The folders a build cannot change, from which a `cache:` path's links are looked for: its
/// scratch folder (in the sandbox), its workspace, HOME (under Landlock).
struct CacheBases {
    bases: [Option<PathBuf>; 3],
}

impl CacheBases {
    /// The nearest base above `path`.
    fn base_of(&self, path: &Path) -> Option<&Path> {
        self.bases
            .iter()
            .flatten()
            .filter(|b| path.starts_with(b))
            .max_by_key(|b| b.as_os_str().len())
            .map(PathBuf::as_path)
    }

    /// Whether `path` is a link, or leads through one below the nearest base (else its parent).
    fn through_link(&self, path: &Path) -> bool {
        let base = self
            .base_of(path)
            .or_else(|| path.parent())
            .unwrap_or(Path::new("/"));
        links_between(base, path)
    }

    /// The paths that lead through no link; each other one is said in the log, not `verb`.
    fn unlinked(
        &self,
        paths: &[paths::CachePath],
        verb: &str,
        log: &BuildLog,
    ) -> Vec<paths::CachePath> {
        let (mut safe, linked): (Vec<_>, Vec<_>) = paths
            .iter()
            .cloned()
            .partition(|p| !self.through_link(&p.root));
        for p in &mut safe {
            p.base = self.base_of(&p.root).map(Path::to_path_buf);
        }
        for p in &linked {
            log.container(&format!(
                "warning: cache path {} is not {verb}: it leads through a link",
                p.pattern
            ));
        }
        safe
    }
}

/// Removes the setuid and setgid bits of the regular files below `dirs` changed since `since`;
/// how many there were.
fn strip_setid(dirs: &[&Path], since: SystemTime) -> usize {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let since = since
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut stripped = 0;
    for dir in dirs {
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && meta.mode() & 0o6000 != 0 && meta.ctime() >= since {
                let mode = meta.mode() & 0o1777;
                if std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))
                    .is_ok()
                {
                    stripped += 1;
                }
            }
        }
    }
    stripped
}

/// Whether `path`, or a folder between `base` and it, is a symbolic link.
fn links_between(base: &Path, path: &Path) -> bool {
    path.ancestors()
        .take_while(|a| *a != base && a.starts_with(base))
        .any(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
}

/// Removes the folders named `<prefix><pid>-…` in `dir` whose build is gone (a build killed with
/// SIGKILL leaves its scratch and session folders behind), when they are kiln's user's own.
fn sweep_dead(dir: &Path, prefix: &str, remove: fn(&Path)) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        // A real folder of this user's, never a link to one.
        if !entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me) {
            continue;
        }
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            remove(&entry.path());
        }
    }
}

fn remove_tree(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// What the sandbox shows read-only besides the host's root: `--expose` folders, kiln's helper
/// programs (and kiln itself, which they run), and the toolchains on kiln's `PATH` that live in a
/// home (whose other contents the build does not see).
fn exposed(options: &BuildOptions, tools: &Path, kiln: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = options
        .expose
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    out.push(tools.to_path_buf());
    out.extend(kiln.map(Path::to_path_buf));
    // A certificate file the build is told to trust (`SSL_CERT_FILE`...) in a home, which the
    // sandbox hides: that one file, read-only, at the path its variable names. Elsewhere (/etc,
    // /usr/local/share) the build's root shows it already, and writable, as a build that runs
    // `update-ca-certificates` needs.
    if options.network != Network::None {
        out.extend(
            env::ca_files()
                .into_iter()
                .filter(|f| f.starts_with("/root") || f.starts_with("/home")),
        );
    }
    out
}

/// Toolchain folders on `path` that live below a home: each folder itself, and the version
/// manager's root it belongs to (rustup's, pyenv's, nvm's...), which its shims need.
fn toolchains(path: &str, root_home: &Path, homes: &Path) -> Vec<PathBuf> {
    const MANAGERS: &[&str] = &[
        ".rustup",
        ".pyenv",
        ".nvm",
        ".sdkman",
        ".asdf",
        ".volta",
        ".bun",
        ".deno",
        ".n",
        ".local/share/mise",
        ".local/share/fnm",
        ".goenv",
        ".rbenv",
        ".jenv",
    ];
    let mut out = Vec::new();
    for dir in path.split(':').map(Path::new).filter(|d| d.is_absolute()) {
        let home = if dir.starts_with(root_home) {
            root_home.to_path_buf()
        } else if let Ok(rest) = dir.strip_prefix(homes) {
            match rest.components().next() {
                Some(user) => homes.join(user),
                None => continue,
            }
        } else {
            continue;
        };
        if !dir.is_dir() || dir == home {
            continue;
        }
        out.push(dir.to_path_buf());
        if dir.ends_with(".cargo/bin") {
            out.push(home.join(".rustup"));
        }
        if let Some(manager) = MANAGERS
            .iter()
            .map(|m| home.join(m))
            .find(|m| dir.starts_with(m))
        {
            out.push(manager);
        }
    }
    out.retain(|p| p.exists());
    out.sort();
    out.dedup();
    out
}

/// Where kiln reaches, from the host, a path of the build's view: the build's HOME and /tmp are
/// folders of its scratch space, the workspace is itself; anything else is the build's private
/// layer, which kiln does not reach.
fn sandbox_view(path: &Path, scratch: &Path, source_dir: &Path) -> Option<PathBuf> {
    if path.starts_with(source_dir) {
        return Some(path.to_path_buf());
    }
    for (inside, host) in [("/root", "home"), ("/tmp", "tmp")] {
        if let Ok(rest) = path.strip_prefix(inside) {
            if rest
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return None;
            }
            return Some(scratch.join(host).join(rest));
        }
    }
    None
}

/// Writes the helper programs builds find on their PATH.
/// The shims run kiln from a link beside them where the file system allows one (so the sandbox shows
/// the build nothing of where kiln is installed); otherwise from kiln's own path, which is returned
/// to be shown to the build.
fn write_tools(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let exe = std::env::current_exe()?;
    let link = dir.join("kiln");
    let (kiln, outside) = match std::fs::hard_link(&exe, &link) {
        Ok(()) => (link, None),
        Err(_) => (exe.clone(), Some(exe)),
    };
    let script = dir.join("codebuild-hash-files");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' hash-files \"$@\"\n",
            kiln.display().to_string().replace('\'', "'\\''")
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(outside)
}

/// kiln's `sudo` for the namespace sandbox: the build's root runs the command as it is (`sudo -E`,
/// `-H`, `-n`, `VAR=value` and `-u root` are understood); another user is refused, as is a step that
/// does not run as root (a `run-as` phase cannot raise itself).
const SUDO: &str = r#"#!/bin/sh
# kiln's sudo: this build is root in its own sandbox, so what sudo is asked to run runs as it is.
shell=
while [ $# -gt 0 ]; do
  case "$1" in
    -E|-H|-n|-S|-k|-b|-P|--preserve-env|--preserve-env=*|--set-home|--non-interactive|--stdin) shift ;;
    -i|-s|--login|--shell) shell=1; shift ;;
    -u|--user)
      case "$2" in root|0|'#0') shift 2 ;; *) echo "sudo: kiln's sandbox runs sudo as root only; for user $2, use run-as in the buildspec" >&2; exit 1 ;; esac ;;
    -u*) u=${1#-u}; case "$u" in root|0|'#0') shift ;; *) echo "sudo: kiln's sandbox runs sudo as root only; for user $u, use run-as in the buildspec" >&2; exit 1 ;; esac ;;
    --) shift; break ;;
    -*) echo "sudo: option $1 is not one kiln's sudo knows (it runs the command as root, as it is)" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "sudo: this step runs as $(id -un 2>/dev/null || id -u) (run-as), which kiln's sandbox does not raise to root" >&2
  exit 1
fi
if [ $# -eq 0 ]; then
  [ -n "$shell" ] && exec "${SHELL:-/bin/sh}"
  echo "usage: sudo [-E] [-u root] command [args...]" >&2
  exit 1
fi
exec env -- "$@"
"#;

fn write_sudo(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("sudo");
    std::fs::write(&path, SUDO)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}

/// The primary artifact folder of a recorded build, and where it came from, for packaging it
/// (`kiln package --from-build N`).
pub fn recorded_artifact(
    state_dir: &Path,
    project: &str,
    number: u64,
) -> Result<(PathBuf, crate::revision::Origin), String> {
    let record = state_dir
        .join("builds")
        .join(project)
        .join(format!("{number}.json"));
    let bytes = std::fs::read(&record).map_err(|e| {
        format!(
            "no record of build {number} of project {project} ({}: {e})",
            record.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", record.display()))?;
    if json["status"] != "SUCCEEDED" {
        return Err(format!(
            "build {number} of project {project} did not succeed"
        ));
    }
    let artifacts = json["artifacts"].as_array().cloned().unwrap_or_default();
    let artifact = artifacts
        .iter()
        .find(|a| a["identifier"] == "primary")
        .or_else(|| artifacts.first())
        .ok_or_else(|| format!("build {number} of project {project} has no artifact"))?;
    let path = PathBuf::from(artifact["path"].as_str().unwrap_or_default());
    if !path.is_dir() {
        return Err(format!(
            "the artifact of build {number} ({}) is gone; build again",
            path.display()
        ));
    }
    let origin = crate::revision::Origin {
        build_id: json["build_id"].as_str().unwrap_or_default().to_string(),
        build_number: number,
        source_version: json["source_version"].as_str().map(str::to_string),
        exported_variables: serde_json::from_value(json["exported_variables"].clone())
            .unwrap_or_default(),
    };
    Ok((path, origin))
}

/// The id of the project `kiln build` run in `dir` would build: the nearest buildspec at or above
/// it ([`locate::upward`]; the default of `--project`, see [`project`]).
pub fn project_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let (source, spec) = match locate::upward(&dir) {
        Ok(found) => {
            let given = found.buildspec.map(|b| found.source.join(b));
            let spec = find_buildspec(&found.source, given.as_deref())
                .unwrap_or_else(|_| found.source.join("buildspec.yml"));
            (found.source, spec)
        }
        Err(_) => (dir.clone(), dir.join("buildspec.yml")),
    };
    let root = git::work_tree(&source)
        .and_then(|t| t.root)
        .unwrap_or_else(|| source.clone());
    project::id(&root, &spec)
}

/// Keeps a build's result beside its log, readable by kiln's user alone.
fn write_record(records: &Path, result: &BuildResult) {
    if let Ok(json) = serde_json::to_vec_pretty(result) {
        let _ = write_private(
            &records.join(format!("{}.json", result.build_number)),
            &json,
        );
    }
}

/// Writes a file of kiln's state that only kiln's user may read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    create_private(path)?.write_all(bytes)
}

/// Creates (or truncates) a file of kiln's state that only kiln's user may read.
pub(crate) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Creates a folder of kiln's state (and its missing parents) readable by kiln's user alone: build
/// records and logs hold what builds printed.
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Refuses, before anything runs or is recorded, secondary sources CodeBuild would refuse: an
/// identifier that cannot be part of a variable's name (letters, digits and `_`, at most 128, as
/// CodeBuild's `sourceIdentifier`), one given twice, a folder that is not one, or any in place.
fn check_secondary_sources(options: &BuildOptions) -> Result<(), BuildError> {
    let mut seen = std::collections::HashSet::new();
    for (name, dir) in &options.secondary_sources {
        let err = |message: &str| BuildError::SecondarySource {
            name: name.clone(),
            message: message.to_string(),
        };
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(err(
                "an identifier is letters, digits and `_` (it names CODEBUILD_SRC_DIR_<identifier>)",
            ));
        }
        if !seen.insert(name) {
            return Err(err("given twice"));
        }
        if !dir.is_dir() {
            return Err(err(&format!("{} is not a folder", dir.display())));
        }
        if options.in_place {
            return Err(err(
                "secondary sources are copied: an in-place build cannot have them",
            ));
        }
    }
    Ok(())
}

/// Refuses, before anything runs or is recorded, a shell this host cannot run: a Windows one, or
/// `pwsh` when the build's `PATH` has no PowerShell.
fn refuse_shell(shell: buildspec::Shell, path: &str) -> Result<(), BuildError> {
    if shell.windows_only() {
        return Err(BuildError::Shell(format!(
            "this buildspec runs its commands with `{}` (env.shell), which exists on Windows only; \
             kiln runs builds on Linux: write `shell: pwsh` (PowerShell 7, on Linux too), `bash` or `sh`",
            shell.program()
        )));
    }
    if shell == buildspec::Shell::Pwsh
        && !path
            .split(':')
            .filter(|d| Path::new(d).is_absolute())
            .any(|d| Path::new(d).join("pwsh").is_file())
    {
        return Err(BuildError::Shell(
            "this buildspec runs its commands with `pwsh` (env.shell), and there is no `pwsh` on \
             PATH: install PowerShell 7 (https://aka.ms/install-powershell), or write `shell: bash`"
                .to_string(),
        ));
    }
    Ok(())
}

/// Things in the buildspec kiln reads but does not act on, said once per build.
fn notices(spec: &Buildspec) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.batch.is_some() {
        notes
            .push("`batch` is read but not run: kiln runs this buildspec as one build".to_string());
    }
    notes
}

impl Runner<'_> {
    async fn phase_with_retries(
        &mut self,
        name: PhaseName,
        phase: Option<&Phase>,
    ) -> (PhaseRun, u32) {
        let mut attempts = 1;
        loop {
            let run = self.phase(name, phase).await;
            let retry = match phase.and_then(|p| p.on_failure.as_ref()) {
                Some(OnFailure::Retry { count, pattern }) if run.status == Status::Failed => {
                    attempts <= *count
                        && pattern.as_ref().is_none_or(|re| re.is_match(&run.message))
                }
                _ => false,
            };
            if !retry {
                return (run, attempts);
            }
            attempts += 1;
            self.log.container(&format!(
                "Phase {} failed; retrying it (attempt {attempts})",
                name.log_name()
            ));
        }
    }

    async fn phase(&mut self, name: PhaseName, phase: Option<&Phase>) -> PhaseRun {
        let log_name = name.log_name();
        self.log.container(&format!("Entering phase {log_name}"));
        // Plugins run through their PATH shims read the phase they run in from here.
        if let Some(tools) = &self.tools {
            let _ = std::fs::write(tools.join("plugins/phase"), log_name.as_bytes());
        }
        let mut run = PhaseRun {
            status: Status::Succeeded,
            status_code: "",
            message: String::new(),
        };
        if name == PhaseName::Install {
            match &self.runtimes {
                Ok(chosen) => {
                    for t in chosen {
                        self.log.container(&format!(
                            "runtime-versions: {} {} \u{2192} {}",
                            t.runtime,
                            t.asked,
                            t.root.display()
                        ));
                    }
                }
                Err(unmatched) => {
                    run = PhaseRun {
                        status: Status::Failed,
                        status_code: "YAML_FILE_ERROR",
                        message: unmatched.to_string(),
                    };
                }
            }
        }
        if let (Some(phase), Status::Succeeded) = (phase, run.status) {
            let run_as = match &phase.run_as {
                Some(user) => match resolve_user(user) {
                    Ok(ids) => ids,
                    Err(e) => {
                        run = PhaseRun {
                            status: Status::Failed,
                            status_code: "CLIENT_ERROR",
                            message: e.to_string(),
                        };
                        None
                    }
                },
                None => self.run_as,
            };
            if run.status == Status::Succeeded {
                self.exec.run_as = run_as;
                for command in &phase.commands {
                    if let Some(failed) = self.command(log_name, &command.text).await {
                        run = failed;
                        break;
                    }
                }
                for command in &phase.finally {
                    if let Some(failed) = self.command(log_name, &command.text).await {
                        if run.status == Status::Succeeded {
                            run = failed;
                        }
                        break;
                    }
                }
                self.exec.run_as = self.run_as;
            }
        }
        self.log.container(&format!(
            "Phase complete: {log_name} State: {}",
            run.status.as_str()
        ));
        self.log.container(&format!(
            "Phase context status code: {} Message: {}",
            run.status_code, run.message
        ));
        run
    }

    /// Runs one command line; `Some` when it failed.
    async fn command(&mut self, phase: &str, text: &str) -> Option<PhaseRun> {
        // Past the disk limit, nothing more runs (the watch killed what was running).
        if self
            .disk_exceeded
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some(PhaseRun {
                status: Status::Failed,
                status_code: "COMMAND_EXECUTION_ERROR",
                message: format!(
                    "Error while executing command: {text}. Reason: {}",
                    self.limit_notes(String::new())
                ),
            });
        }
        self.log.container(&format!("Running command {text}"));
        self.log
            .status(&format!("{phase} · {}", text.lines().next().unwrap_or("")));
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = self
            .options
            .step_timeout
            .map_or(remaining, |t| t.min(remaining));
        let context = self.context(phase);
        // A line that is one simple command starting with one of the build's plugins runs it as a
        // step that may change the session; anything else is the shell's (which finds the plugins
        // on its PATH).
        let plugin = plugins::simple_command(text)
            .filter(|(first, _)| self.options.user_plugins().any(|(n, _, _)| n == *first))
            .map(|(first, rest)| (first.to_string(), rest.to_string()));
        let plugin_args = match &plugin {
            Some((_, rest)) => match self.words(phase, rest).await {
                Ok(args) => Some(args),
                Err(reason) => {
                    self.log.container(&format!(
                        "Command did not exit successfully {text}: {reason}"
                    ));
                    return Some(PhaseRun {
                        status: Status::Failed,
                        status_code: "COMMAND_EXECUTION_ERROR",
                        message: format!("Error while executing command: {text}. Reason: {reason}"),
                    });
                }
            },
            None => None,
        };
        let (name, args, policy) = match (&plugin, plugin_args) {
            (Some((name, _)), Some(args)) => {
                let policy = Policy {
                    preopens: vec![
                        Preopen {
                            path: self.source_dir.clone(),
                            writable: true,
                        },
                        Preopen {
                            path: self.temp_dir.clone(),
                            writable: true,
                        },
                    ],
                    allow_exec: true,
                    network: self.options.network != Network::None,
                    local_network: self.options.network == Network::Host,
                    timeout: Some(timeout),
                    memory_limit: self.options.memory_limit,
                    scripted_exec: None,
                };
                (name.as_str(), args, policy)
            }
            _ => {
                let (args, policy) = self.shell_step(text, timeout);
                ("shell", args, policy)
            }
        };
        let exec = policy.allow_exec.then(|| self.exec.clone());
        let log: Arc<dyn sandbox::LogSink> = self.log.clone();
        let started = Instant::now();
        let result = self
            .sandbox
            .run(name, &args, &context, &policy, exec, log)
            .await;
        let reason = match result {
            Ok(outcome) => {
                if self.spec.version == Version::V02 || plugin.is_some() {
                    // kiln's shell is the session; another plugin cannot move kiln's built-ins.
                    let changes = outcome.env.into_iter().filter(|change| {
                        let (sandbox::EnvChange::Set(var, _) | sandbox::EnvChange::Unset(var)) =
                            change;
                        let refused = plugin.is_some() && plugins::is_builtin_var(var);
                        if refused {
                            self.log.container(&format!(
                                "warning: plugin `{name}` tried to change {var}, one of kiln's built-in variables: left as it was"
                            ));
                        }
                        !refused
                    });
                    self.session.env.apply(changes);
                    if let Some(cwd) = outcome.cwd {
                        self.session.cwd = cwd;
                    }
                }
                if outcome.status == 0
                    && !self
                        .disk_exceeded
                        .load(std::sync::atomic::Ordering::Relaxed)
                {
                    return None;
                }
                self.log.container(&format!(
                    "Command did not exit successfully {text} exit status {}",
                    outcome.status
                ));
                outcome
                    .message
                    .unwrap_or_else(|| format!("exit status {}", outcome.status))
            }
            Err(e) => {
                self.log
                    .container(&format!("Command did not exit successfully {text}: {e}"));
                e.to_string()
            }
        };
        let reason = self.limit_notes(reason);
        // Whatever stopped it (the epoch, the host timer, the killed process group), a step that used
        // up its time limit timed out.
        let timed_out = started.elapsed() >= timeout;
        Some(PhaseRun {
            status: if timed_out {
                Status::TimedOut
            } else {
                Status::Failed
            },
            status_code: "COMMAND_EXECUTION_ERROR",
            message: format!("Error while executing command: {text}. Reason: {reason}"),
        })
    }

    /// A failed command's reason, with the limit it went past when kiln knows it did, or the limits
    /// it may have hit.
    fn limit_notes(&self, reason: String) -> String {
        if self
            .disk_exceeded
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let limit = self.options.disk_limit.unwrap_or_default();
            return format!(
                "the build went past its disk limit of {} (--disk-limit) and was stopped",
                human_size(limit)
            );
        }
        match (self.exec.os.is_some(), self.options.memory) {
            (true, Some(memory)) => format!(
                "{reason} (each program of this build may use at most {} of memory: --memory)",
                human_size(memory)
            ),
            _ => reason,
        }
    }

    /// The context of a step of `phase` in the current session.
    fn context(&self, phase: &str) -> StepContext {
        StepContext {
            build_id: self.build_id.clone(),
            phase: phase.to_string(),
            source_dir: self.source_dir.clone(),
            cwd: self.session.cwd.clone(),
            env: self.session.env.as_slice().to_vec(),
            temp_dir: self.temp_dir.clone(),
        }
    }

    /// The shell plugin's arguments and policy for one script: only the session dir is opened to it,
    /// and host programs are its whole job.
    fn shell_step(&self, script: &str, timeout: Duration) -> (Vec<String>, Policy) {
        let args = vec![
            self.spec.env.shell.program().to_string(),
            script.to_string(),
            self.session_dir.to_string_lossy().into_owned(),
        ];
        let policy = Policy {
            preopens: vec![Preopen {
                path: self.session_dir.clone(),
                writable: true,
            }],
            allow_exec: true,
            network: false,
            local_network: false,
            timeout: Some(timeout),
            memory_limit: self.options.memory_limit,
            scripted_exec: None,
        };
        (args, policy)
    }

    /// A plugin line's arguments, as the shell would pass them to a program: its quoting, variables,
    /// globbing, `~` and `$(…)`, in the session. Plain words are split here without a shell.
    async fn words(&mut self, phase: &str, rest: &str) -> Result<Vec<String>, String> {
        if plugins::plain_words(rest) {
            return Ok(rest.split_whitespace().map(str::to_string).collect());
        }
        let script =
            "set -- {rest}\n{ [ $# -eq 0 ] || printf '%s\\0' \"$@\"; } > \"$__kiln_out\"\n";
        let script = script.replace("{rest}", rest);
        match self.shell_output(phase, &script, "argv").await {
            (Ok(0), Some(text)) => Ok(text.split_terminator('\0').map(str::to_string).collect()),
            (Ok(status), _) => Err(format!(
                "the shell could not expand the plugin's arguments (exit status {status})"
            )),
            (Err(e), _) => Err(format!(
                "the shell could not expand the plugin's arguments: {e}"
            )),
        }
    }

    /// Expands a string with the shell, in the session (for `cache.key`); `None` when the shell fails.
    async fn expand(&mut self, text: &str) -> Option<String> {
        let script = format!(
            "printf '%s' \"{}\" > \"$__kiln_out\"",
            text.replace('\\', "\\\\").replace('"', "\\\"")
        );
        match self
            .shell_output("DOWNLOAD_SOURCE", &script, "expanded")
            .await
        {
            (Ok(0), text) => text,
            _ => None,
        }
    }

    /// Runs a POSIX shell script in the session that writes its result to the file `$__kiln_out`
    /// (in the session folder, as `name`), and returns the shell's status and that file's text.
    async fn shell_output(
        &mut self,
        phase: &str,
        script: &str,
        name: &str,
    ) -> (Result<i32, sandbox::StepError>, Option<String>) {
        let out = self.session_dir.join(name);
        let script = format!(
            "__kiln_out='{}'\n{script}",
            out.display().to_string().replace('\'', "'\\''")
        );
        let context = self.context(phase);
        let (mut args, policy) = self.shell_step(&script, Duration::from_secs(60));
        args[0] = self.spec.env.shell.posix().to_string();
        let log: Arc<dyn sandbox::LogSink> = self.log.clone();
        let status = self
            .sandbox
            .run(
                "shell",
                &args,
                &context,
                &policy,
                Some(self.exec.clone()),
                log,
            )
            .await
            .map(|o| o.status);
        let text = read_session_file(&out);
        let _ = std::fs::remove_file(&out);
        (status, text)
    }

    fn artifact_env(&self) -> artifacts::ArtifactEnv<'_> {
        artifacts::ArtifactEnv {
            sandbox: self.sandbox,
            log: self.log.clone(),
            exec: self.exec.clone(),
            // Artifact paths resolve against the source directory, not the shell's current one.
            context: StepContext {
                cwd: self.source_dir.clone(),
                ..self.context("UPLOAD_ARTIFACTS")
            },
            shell: self.spec.env.shell.posix(),
            zip: self.options.zip,
            memory_limit: self.options.memory_limit,
            timeout: self.deadline.saturating_duration_since(Instant::now()),
        }
    }
}

/// Reads a file the shell wrote in the session folder. The build can write that folder: a link there
/// must not make kiln read a host file.
fn read_session_file(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Expands `$NAME` and `${NAME}` in a word from the session's variables (artifact paths).
fn expand(word: &str, vars: &env::Vars) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((name, tail)) => (name, tail),
                None => ("", after),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(vars.get(name).unwrap_or(""));
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Counts builds of a project on this machine, safely under concurrent builds (an flock on the
/// counter file).
fn next_build_number(records: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = records.join("build-number");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    // SAFETY: flock on a file descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let next = text.trim().parse::<u64>().unwrap_or(0) + 1;
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    write!(file, "{next}")?;
    file.sync_all()?;
    Ok(next)
}

/// The numeric user and group to switch to for a `run-as` user, or `None` when kiln already runs as
/// that user. Switching users needs root.
fn resolve_user(user: &str) -> Result<Option<(u32, u32)>, BuildError> {
    let err = |message: String| BuildError::RunAs {
        user: user.to_string(),
        message,
    };
    let name = std::ffi::CString::new(user).map_err(|_| err("not a user name".into()))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two ids out at once.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(err("no such user on this machine".into()));
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && euid != uid {
        return Err(err(
            "switching users needs kiln to run as root; run kiln as that user, or drop run-as"
                .into(),
        ));
    }
    Ok((euid != uid).then_some((uid, gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_known_and_empties_unknown() {
        let vars = env::Vars::from_pairs(vec![("A".into(), "x".into())]);
        assert_eq!(expand("$A-${A}/$B.$", &vars), "x-x/.$");
    }

    #[test]
    fn build_numbers_count_up() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_build_number(dir.path()).unwrap(), 1);
        assert_eq!(next_build_number(dir.path()).unwrap(), 2);
    }
}
