//! `kiln deploy`: what the CodeDeploy agent does on an EC2 or on-premises host, from a revision in a
//! file, S3 or OCI store.
//!
//! The deployment root is laid out as the agent lays it out:
//!
//! ```text
//! <root>/<group-id>/<deployment-id>/bundle.tar            the revision as pulled (zip or tar.gz)
//! <root>/<group-id>/<deployment-id>/deployment-archive/   the revision, extracted
//! <root>/<group-id>/<deployment-id>/logs/scripts.log      what the hook scripts wrote
//! <root>/deployment-instructions/<group-id>_last_successful_install   the last deployment that installed
//! <root>/deployment-instructions/<group-id>_most_recent_install
//! <root>/deployment-instructions/<group-id>-cleanup       what that deployment installed
//! <root>/deployment-instructions/<group-id>-install.json
//! <root>/deployment-logs/codedeploy-agent-deployments.log
//! <root>/deployment-records/<group-id>/<deployment-id>.json   kiln's record of each deployment
//! ```

pub mod agent;
pub mod hooks;
pub mod install;
pub mod roots;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::sandbox::process::{Confinement, Reaper};
use crate::sandbox::{LogSink, Sandbox};
use crate::spec::appspec::{self, AppSpec, FileExists};
use crate::store::{Access, PullInto};

use self::hooks::{HookEnv, ScriptLog};

/// Why a deployment failed, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{event}: {message}{}", if tail.is_empty() { String::new() } else { format!("\n--- the end of its output ---\n{tail}") })]
    Hook {
        event: String,
        script: String,
        message: String,
        tail: String,
    },
    #[error("Install: {0}")]
    Install(String),
    #[error("DownloadBundle: {0}")]
    Download(String),
    /// The revision's AppSpec is missing or invalid: found before any event runs, and then the
    /// deployment is not recorded.
    #[error("{0}")]
    AppSpec(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The revision is neither a store reference nor a file of this machine: nothing was recorded.
    #[error(
        "{}: no such file (a revision is a file or a store reference: file:///…, s3://…, oci://…)",
        .0.display()
    )]
    NoRevision(PathBuf),
    /// The plugin engine, or the hooks' confinement, could not be set up on this host.
    #[error("{0}")]
    Engine(String),
    #[error("{0}")]
    Usage(String),
    /// The revision is for another kind of host (an `os: windows` AppSpec): found before any
    /// event runs, and then the deployment is not recorded.
    #[error("{0}")]
    Unsupported(String),
}

impl DeployError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DeployError {
        DeployError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// A store reference (file://, s3://, oci://) or a revision file on this machine.
    pub revision: String,
    pub group: String,
    pub application: String,
    pub root: PathBuf,
    pub ignore_application_stop_failures: bool,
    /// Redeploy the last successful revision when this deployment fails.
    pub rollback: bool,
    pub max_revisions: usize,
    /// Confine hook scripts to the destinations and the deployment's folder.
    pub confine_hooks: bool,
    /// The deployment's file_exists_behavior, when the AppSpec gives none.
    pub file_exists_behavior: FileExists,
    pub access: Access,
    /// Where compiled plugins are cached.
    pub cache_dir: Option<PathBuf>,
    /// Echo hook output on stderr.
    pub echo: bool,
    pub strategy: Strategy,
    /// What the revision may expand to when DownloadBundle extracts it.
    pub limits: crate::revision::extract::Limits,
    /// kiln's state dir, where `root` is remembered (see [`roots`]) when a deployment is recorded
    /// there; `None` when the root is found without it (the default root).
    pub remember_root_in: Option<PathBuf>,
}

/// How a revision replaces the one before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// As the CodeDeploy agent: the previous revision's files are removed, the new ones copied.
    #[default]
    InPlace,
    /// Each revision in a release folder of its own; every `files` destination is a symlink to
    /// the current release, switched atomically once ValidateService passed.
    BlueGreen,
}

/// A destination and the release folder behind it (blue-green).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub destination: PathBuf,
    pub release: PathBuf,
}

/// A deployment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Status {
    InProgress,
    Succeeded,
    Failed,
}

/// One lifecycle event as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub name: String,
    pub status: Status,
    pub scripts: usize,
    pub duration_ms: u64,
}

/// What kiln remembers of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub group: String,
    pub group_id: String,
    pub application: String,
    pub revision: String,
    /// BLAKE3 of the revision's bytes.
    pub digest: Option<String>,
    pub status: Status,
    pub rollback_of: Option<String>,
    pub rolled_back_by: Option<String>,
    pub started: String,
    pub duration_ms: u64,
    pub events: Vec<EventRecord>,
    pub error: Option<String>,
    pub dir: PathBuf,
    #[serde(default)]
    pub strategy: Strategy,
    /// Blue-green: where each destination's release is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Release>,
}

/// The paths of one deployment group under the root.
struct Layout {
    root: PathBuf,
    group_id: String,
}

impl Layout {
    fn group_dir(&self) -> PathBuf {
        self.root.join(&self.group_id)
    }
    fn instructions(&self) -> PathBuf {
        self.root.join("deployment-instructions")
    }
    fn last_installed(&self) -> PathBuf {
        self.instructions()
            .join(format!("{}_last_successful_install", self.group_id))
    }
    fn most_recent(&self) -> PathBuf {
        self.instructions()
            .join(format!("{}_most_recent_install", self.group_id))
    }
    fn cleanup(&self) -> PathBuf {
        self.instructions()
            .join(format!("{}-cleanup", self.group_id))
    }
    fn install_json(&self) -> PathBuf {
        self.instructions()
            .join(format!("{}-install.json", self.group_id))
    }
    fn records(&self) -> PathBuf {
        self.root.join("deployment-records").join(&self.group_id)
    }
    fn agent_log(&self) -> PathBuf {
        self.root
            .join("deployment-logs/codedeploy-agent-deployments.log")
    }
}

/// A deployment group's id: stable for its name, shaped like CodeDeploy's (a UUID).
pub fn group_id(group: &str) -> String {
    let h = blake3::hash(format!("kiln deployment group {group}").as_bytes());
    let b = h.as_bytes();
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A deployment id in CodeDeploy's shape: `d-` and nine letters and digits.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let tail: String = bytes[..9]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("d-{tail}")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| DeployError::io(parent, e))?;
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| DeployError::io(parent, e))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| DeployError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| DeployError::io(path, e.error))?;
    Ok(())
}

fn save(layout: &Layout, d: &Deployment) -> Result<(), DeployError> {
    let path = layout.records().join(format!("{}.json", d.id));
    write_atomic(&path, &serde_json::to_vec_pretty(d).unwrap_or_default())
}

fn agent_log(layout: &Layout, id: &str, message: &str) {
    let path = layout.agent_log();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        use std::io::Write;
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
        let _ = writeln!(f, "[{now}] [{id}]{message}");
    }
}

/// Every recorded deployment of a group (all groups when `group` is None), oldest first.
pub fn list(root: &Path, group: Option<&str>) -> Vec<Deployment> {
    let records = root.join("deployment-records");
    let dirs: Vec<PathBuf> = match group {
        Some(g) => vec![records.join(group_id(g))],
        None => std::fs::read_dir(&records)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default(),
    };
    let mut out: Vec<Deployment> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    out
}

/// Deploys `options.revision` to the group; on failure, unless told not to, redeploys the last
/// successful revision (a new deployment, recorded as a rollback). Returns the deployment and, when
/// there was one, its rollback.
pub async fn deploy(
    options: &DeployOptions,
) -> Result<(Deployment, Option<Deployment>), DeployError> {
    // A file that is not there is a mistake in the command, not a deployment that failed: nothing
    // is recorded for it (a store reference is fetched in DownloadBundle, and recorded).
    if crate::store::Ref::parse(&options.revision).is_err() {
        let path = Path::new(&options.revision);
        if !path.exists() {
            return Err(DeployError::NoRevision(path.to_path_buf()));
        }
        if !path.is_file() {
            return Err(DeployError::Usage(format!(
                "{} is not a revision file (a zip or tar.gz) nor a store reference \
                 (file:///…, s3://…, oci://…)",
                path.display()
            )));
        }
    }
    let layout = Layout {
        root: options.root.clone(),
        group_id: group_id(&options.group),
    };
    let sandbox = Sandbox::new(options.cache_dir.clone())
        .map_err(|e| DeployError::Engine(format!("cannot start the plugin engine: {e}")))?;
    let good = list(&options.root, Some(&options.group))
        .into_iter()
        .rev()
        .find(|d| d.status == Status::Succeeded);
    let mut first = run(options, &layout, &sandbox, &options.revision, None).await?;
    if first.status != Status::Failed || !options.rollback {
        return Ok((first, None));
    }
    let Some(good) = good else {
        agent_log(
            &layout,
            &first.id,
            "no earlier successful deployment: no rollback",
        );
        return Ok((first, None));
    };
    let bundle = good.dir.join("bundle.tar");
    let rollback = run(
        options,
        &layout,
        &sandbox,
        &bundle.to_string_lossy(),
        Some((&first.id, &good)),
    )
    .await?;
    first.rolled_back_by = Some(rollback.id.clone());
    save(&layout, &first)?;
    Ok((first, Some(rollback)))
}

/// Runs one deployment through the lifecycle. A failure in the lifecycle is a failed deployment
/// (recorded); an error here means it could not be recorded at all.
async fn run(
    options: &DeployOptions,
    layout: &Layout,
    sandbox: &Sandbox,
    revision: &str,
    rollback_of: Option<(&str, &Deployment)>,
) -> Result<Deployment, DeployError> {
    let id = new_id();
    let dir = layout.group_dir().join(&id);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| DeployError::io(&dir, e))?;
    let started = Instant::now();
    let mut d = Deployment {
        id: id.clone(),
        group: options.group.clone(),
        group_id: layout.group_id.clone(),
        application: options.application.clone(),
        revision: rollback_of
            .map(|(_, good)| good.revision.clone())
            .unwrap_or_else(|| revision.to_string()),
        digest: None,
        status: Status::InProgress,
        rollback_of: rollback_of.map(|(id, _)| id.to_string()),
        rolled_back_by: None,
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms: 0,
        events: Vec::new(),
        error: None,
        dir: dir.clone(),
        strategy: options.strategy,
        releases: Vec::new(),
    };
    save(layout, &d)?;
    if let Some(state_dir) = &options.remember_root_in
        && let Err(e) = roots::remember(state_dir, &options.root)
    {
        tracing::warn!("kiln deployments will not find this deployment root by itself: {e}");
    }
    agent_log(
        layout,
        &id,
        &format!(
            "{} {} to {}",
            if rollback_of.is_some() {
                "rolling back with"
            } else {
                "deploying"
            },
            d.revision,
            options.group
        ),
    );
    let log = ScriptLog::open(&dir.join("logs/scripts.log"), options.echo)
        .map_err(|e| DeployError::io(&dir, e))?;
    let result = lifecycle(options, layout, sandbox, revision, &mut d, &log).await;
    d.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e @ (DeployError::Unsupported(_) | DeployError::AppSpec(_))) = result {
        // Nothing was installed and nothing ran: no deployment to record.
        agent_log(layout, &id, &format!("refused: {e}"));
        let _ = std::fs::remove_file(layout.records().join(format!("{id}.json")));
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    match result {
        Ok(()) => {
            d.status = Status::Succeeded;
            agent_log(layout, &id, "succeeded");
        }
        Err(e) => {
            d.status = Status::Failed;
            d.error = Some(e.to_string());
            agent_log(layout, &id, &format!("failed: {e}"));
        }
    }
    save(layout, &d)?;
    prune(layout, &d, options.max_revisions);
    Ok(d)
}

async fn lifecycle(
    options: &DeployOptions,
    layout: &Layout,
    sandbox: &Sandbox,
    revision: &str,
    d: &mut Deployment,
    log: &Arc<ScriptLog>,
) -> Result<(), DeployError> {
    let archive = d.dir.join("deployment-archive");
    let previous = std::fs::read_to_string(layout.last_installed())
        .ok()
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.join("deployment-archive").is_dir());
    let previous_spec = previous
        .as_ref()
        .and_then(|p| appspec::load(&p.join("deployment-archive")).ok())
        .map(|(spec, _, _)| spec);
    let mut destinations: Vec<PathBuf> = Vec::new();
    let mut spec: Option<AppSpec> = None;
    let confinement = Confinement {
        writable: Vec::new(),
        readable: vec![PathBuf::from("/")],
        network: true,
        required: false,
        enabled: false,
    };
    let reaper = Reaper::default();
    let mut env = HookEnv {
        sandbox,
        deployment_id: d.id.clone(),
        vars: hook_vars(options, d),
        prepared: Arc::new(
            confinement
                .prepare()
                .map_err(|e| DeployError::Engine(e.to_string()))?,
        ),
        reaper: reaper.clone(),
    };
    // The bundle is fetched and its AppSpec read before any event: a revision kiln refuses (an
    // invalid AppSpec, `os: windows`) runs nothing, not even the previous revision's
    // ApplicationStop. A failed download is the DownloadBundle event's failure, in its place.
    let fetching = Instant::now();
    let mut fetched = Some(match download(revision, &d.dir, &archive, options).await {
        Ok(digest) => Ok((digest, read_appspec(&archive)?)),
        Err(e) => Err(e),
    });
    let fetch_ms = fetching.elapsed().as_millis() as u64;
    for (event, _) in appspec::EVENTS {
        let started = Instant::now();
        let outcome: Result<usize, DeployError> = match *event {
            "BeforeBlockTraffic" | "AfterBlockTraffic" | "ApplicationStop" => {
                match (&previous, &previous_spec) {
                    (Some(prev), Some(prev_spec)) => {
                        let r = hooks::run_event(
                            event,
                            prev_spec,
                            &prev.join("deployment-archive"),
                            &env,
                            log,
                        )
                        .await;
                        match r {
                            Err(e) if options.ignore_application_stop_failures => {
                                log.line(&format!(
                                    "{event} failed and is ignored \
                                     (--ignore-application-stop-failures): {e}"
                                ));
                                Ok(0)
                            }
                            other => other,
                        }
                    }
                    _ => Ok(0),
                }
            }
            "DownloadBundle" => fetched
                .take()
                .unwrap_or_else(|| Err(DeployError::Download("fetched twice".into())))
                .and_then(|(digest, (s, warnings, path))| {
                    d.digest = Some(digest);
                    write_atomic(
                        layout.most_recent().as_path(),
                        d.dir.to_string_lossy().as_bytes(),
                    )?;
                    if !warnings.is_empty()
                        && let Ok(text) = std::fs::read_to_string(&path)
                    {
                        eprint!(
                            "{}",
                            crate::spec::diagnostic::render_all(&path, &text, &warnings, false)
                        );
                    }
                    destinations = s
                        .files
                        .iter()
                        .map(|f| PathBuf::from(&f.destination))
                        .collect();
                    if options.confine_hooks {
                        let mut writable = destinations.clone();
                        // Blue-green releases live beside their destinations.
                        writable.extend(
                            destinations
                                .iter()
                                .filter_map(|d| d.parent().map(|p| p.join(".kiln-releases"))),
                        );
                        // The deployment folder, with the hooks' own temp dir (TMPDIR) in it.
                        writable.push(d.dir.clone());
                        let tmp = d.dir.join("tmp");
                        std::fs::create_dir_all(&tmp).map_err(|e| DeployError::io(&tmp, e))?;
                        env.vars.retain(|(k, _)| k != "TMPDIR");
                        env.vars
                            .push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
                        let confined = Confinement {
                            writable,
                            enabled: true,
                            ..confinement.clone()
                        };
                        env.prepared = Arc::new(
                            confined
                                .prepare()
                                .map_err(|e| DeployError::Engine(e.to_string()))?,
                        );
                    }
                    if options.strategy == Strategy::BlueGreen {
                        d.releases = releases(&s, &d.id)?;
                        if let Some(r) = d.releases.first() {
                            env.vars.push((
                                "KILN_RELEASE_DIR".into(),
                                r.release.to_string_lossy().into_owned(),
                            ));
                        }
                    }
                    spec = Some(s);
                    Ok(0)
                }),
            "Install" => {
                let step = install::InstallStep {
                    sandbox,
                    deployment_dir: &d.dir,
                    archive: &archive,
                    cleanup: &layout.cleanup(),
                    install_json: &layout.install_json(),
                    behavior: options.file_exists_behavior,
                    log: log.clone() as Arc<dyn LogSink>,
                };
                let s = spec
                    .as_ref()
                    .ok_or_else(|| DeployError::Install("no AppSpec".into()))?;
                let step = install::InstallStep {
                    behavior: s
                        .file_exists_behavior
                        .unwrap_or(options.file_exists_behavior),
                    ..step
                };
                // Blue-green installs into fresh release folders: nothing of the previous
                // revision is removed (it is still being served).
                let release_cleanup = d.dir.join("release.cleanup");
                let (s, step) = match options.strategy {
                    Strategy::InPlace => (s.clone(), step),
                    Strategy::BlueGreen => (
                        in_releases(s, &d.releases),
                        install::InstallStep {
                            cleanup: &release_cleanup,
                            ..step
                        },
                    ),
                };
                let installed = install::install(&s, &step).await;
                match installed {
                    Ok(i) => {
                        log.line(&format!(
                            "Install: {} files, {} folders, {} permissions ({} entries of the \
                             previous deployment removed)",
                            i.files, i.folders, i.permissions, i.removed
                        ));
                        // As the agent: the last deployment that installed is where the next
                        // ApplicationStop comes from.
                        write_atomic(&layout.last_installed(), d.dir.to_string_lossy().as_bytes())?;
                        Ok(i.files)
                    }
                    Err(e) => Err(e),
                }
            }
            other => match &spec {
                Some(s) => hooks::run_event(other, s, &archive, &env, log).await,
                None => Ok(0),
            },
        };
        let status = if outcome.is_ok() {
            Status::Succeeded
        } else {
            Status::Failed
        };
        d.events.push(EventRecord {
            name: event.to_string(),
            status,
            scripts: *outcome.as_ref().unwrap_or(&0),
            duration_ms: started.elapsed().as_millis() as u64
                + if *event == "DownloadBundle" {
                    fetch_ms
                } else {
                    0
                },
        });
        // The record follows the deployment: after a crash it says how far it got (and which
        // digest it was deploying), for `kiln deployments` and for the agent's recovery.
        save(layout, d)?;
        outcome?;
    }
    reaper.kill_all();
    if options.strategy == Strategy::BlueGreen {
        switch(&d.releases)?;
        log.line(&format!("switched to release {}", d.id));
    }
    Ok(())
}

/// The AppSpec of a fetched bundle, refused when it is invalid or for Windows hosts.
fn read_appspec(
    archive: &Path,
) -> Result<(AppSpec, Vec<crate::spec::diagnostic::Diagnostic>, PathBuf), DeployError> {
    let (spec, warnings, path) =
        appspec::load(archive).map_err(|e| DeployError::AppSpec(e.to_string()))?;
    if spec.os == "windows" {
        return Err(DeployError::Unsupported(
            "this revision's AppSpec is for Windows hosts (`os: windows`); \
             kiln deploys on Linux, and an `os: linux` AppSpec"
                .to_string(),
        ));
    }
    Ok((spec, warnings, path))
}

/// The release folder of each `files` destination for deployment `id`: beside the destination,
/// in `.kiln-releases/<name>/<id>`. A destination must be a symlink (a previous release), absent,
/// or an empty folder.
fn releases(spec: &AppSpec, id: &str) -> Result<Vec<Release>, DeployError> {
    let mut out: Vec<Release> = Vec::new();
    for f in &spec.files {
        let destination = PathBuf::from(&f.destination);
        if out.iter().any(|r| r.destination == destination) {
            continue;
        }
        let (Some(parent), Some(name)) = (destination.parent(), destination.file_name()) else {
            return Err(DeployError::Install(format!(
                "blue-green: {} cannot be a release symlink",
                destination.display()
            )));
        };
        if let Ok(meta) = std::fs::symlink_metadata(&destination)
            && !meta.file_type().is_symlink()
            && std::fs::read_dir(&destination).map_or(true, |mut d| d.next().is_some())
        {
            return Err(DeployError::Install(format!(
                "blue-green: {} is a real folder with files in it; the strategy makes it a \
                 symlink to the current release: move its files away, or deploy in place",
                destination.display()
            )));
        }
        // Hooks may write below `.kiln-releases`: a link there would lead the release (and its
        // removal by `prune`) elsewhere.
        let releases = parent.join(".kiln-releases");
        for dir in [releases.clone(), releases.join(name)] {
            if let Ok(target) = std::fs::read_link(&dir) {
                return Err(DeployError::Install(format!(
                    "blue-green: {} is a symlink (to {}); kiln keeps releases only in real \
                     folders: remove the link",
                    dir.display(),
                    target.display()
                )));
            }
        }
        out.push(Release {
            release: releases.join(name).join(id),
            destination,
        });
    }
    Ok(out)
}

/// The AppSpec with its destinations (and the permissions below them) moved into the releases.
fn in_releases(spec: &AppSpec, releases: &[Release]) -> AppSpec {
    let moved = |path: &str| -> String {
        let p = Path::new(path);
        releases
            .iter()
            .find_map(|r| {
                p.strip_prefix(&r.destination)
                    .ok()
                    .map(|rest| r.release.join(rest).to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| path.to_string())
    };
    let mut out = spec.clone();
    for f in &mut out.files {
        f.destination = moved(&f.destination);
    }
    for p in &mut out.permissions {
        p.object = moved(&p.object);
    }
    out
}

/// Points every destination at its release: a new symlink renamed over the old one, so each
/// switch is atomic. An empty folder in the way (the first release) is removed first.
pub fn switch(releases: &[Release]) -> Result<(), DeployError> {
    for r in releases {
        let dest = &r.destination;
        if let Ok(meta) = std::fs::symlink_metadata(dest)
            && meta.is_dir()
        {
            std::fs::remove_dir(dest).map_err(|e| DeployError::io(dest, e))?;
        }
        let tmp = dest.with_file_name(format!(
            ".{}.kiln-switch",
            dest.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&r.release, &tmp).map_err(|e| DeployError::io(&tmp, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| DeployError::io(dest, e))?;
    }
    Ok(())
}

/// `kiln rollback`: back to the group's previous successful revision. Blue-green: the
/// destinations are switched back to its releases at once (recorded as a deployment); in place:
/// its revision is deployed again.
pub async fn rollback(
    options: &DeployOptions,
) -> Result<(Deployment, Option<Deployment>), DeployError> {
    let layout = Layout {
        root: options.root.clone(),
        group_id: group_id(&options.group),
    };
    let good: Vec<Deployment> = list(&options.root, Some(&options.group))
        .into_iter()
        .filter(|d| d.status == Status::Succeeded)
        .collect();
    let [.., previous, current] = good.as_slice() else {
        return Err(DeployError::Usage(format!(
            "group {} has no earlier successful deployment to roll back to",
            options.group
        )));
    };
    let instant = current.strategy == Strategy::BlueGreen
        && !previous.releases.is_empty()
        && previous.releases.iter().all(|r| r.release.is_dir());
    if !instant {
        let bundle = previous.dir.join("bundle.tar");
        if !bundle.is_file() {
            return Err(DeployError::Usage(format!(
                "the revision of {} is no longer kept ({} is gone)",
                previous.id,
                bundle.display()
            )));
        }
        let sandbox = Sandbox::new(options.cache_dir.clone())
            .map_err(|e| DeployError::Engine(format!("cannot start the plugin engine: {e}")))?;
        let options = DeployOptions {
            strategy: current.strategy,
            ..options.clone()
        };
        let d = run(
            &options,
            &layout,
            &sandbox,
            &bundle.to_string_lossy(),
            Some((&current.id, previous)),
        )
        .await?;
        return Ok((d, None));
    }
    let started = Instant::now();
    switch(&previous.releases)?;
    let d = Deployment {
        id: new_id(),
        group: options.group.clone(),
        group_id: layout.group_id.clone(),
        application: options.application.clone(),
        revision: previous.revision.clone(),
        digest: previous.digest.clone(),
        status: Status::Succeeded,
        rollback_of: Some(current.id.clone()),
        rolled_back_by: None,
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms: started.elapsed().as_millis() as u64,
        events: vec![EventRecord {
            name: "SwitchRelease".into(),
            status: Status::Succeeded,
            scripts: 0,
            duration_ms: started.elapsed().as_millis() as u64,
        }],
        error: None,
        dir: previous.dir.clone(),
        strategy: Strategy::BlueGreen,
        releases: previous.releases.clone(),
    };
    save(&layout, &d)?;
    agent_log(
        &layout,
        &d.id,
        &format!("switched back to the releases of {}", previous.id),
    );
    Ok((d, None))
}

/// The variables every hook script sees: kiln's environment and CodeDeploy's.
fn hook_vars(options: &DeployOptions, d: &Deployment) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("AWS_SECRET") && k != "KILN_CACHE")
        .collect();
    vars.extend([
        ("DEPLOYMENT_ID".to_string(), d.id.clone()),
        ("APPLICATION_NAME".to_string(), options.application.clone()),
        ("DEPLOYMENT_GROUP_NAME".to_string(), options.group.clone()),
        ("DEPLOYMENT_GROUP_ID".to_string(), d.group_id.clone()),
    ]);
    if let Ok(crate::store::Ref::S3 { bucket, key }) = crate::store::Ref::parse(&d.revision) {
        vars.push(("BUNDLE_BUCKET".into(), bucket));
        vars.push(("BUNDLE_KEY".into(), key));
    }
    vars
}

/// DownloadBundle: the revision into `<dir>/bundle.tar` (verified), then extracted into the
/// archive folder. Returns its BLAKE3.
async fn download(
    revision: &str,
    dir: &Path,
    archive: &Path,
    options: &DeployOptions,
) -> Result<String, DeployError> {
    let access = &options.access;
    let bundle = dir.join("bundle.tar");
    let digest = if crate::store::Ref::parse(revision).is_ok() {
        crate::store::pull(revision, &PullInto::Archive(bundle.clone()), access)
            .await
            .map_err(|e| DeployError::Download(e.to_string()))?
            .blake3
    } else {
        let source = Path::new(revision);
        if !source.is_file() {
            return Err(DeployError::Download(format!(
                "{revision} is neither a revision file nor a store reference \
                 (file:///…, s3://…, oci://…)"
            )));
        }
        // A hard link where it can (no second copy of the bytes to write), else a copy.
        if std::fs::hard_link(source, &bundle).is_err() {
            std::fs::copy(source, &bundle).map_err(|e| DeployError::io(source, e))?;
        }
        blake3::Hasher::new()
            .update_mmap(&bundle)
            .map_err(|e| DeployError::io(&bundle, e))?
            .finalize()
            .to_hex()
            .to_string()
    };
    let bundle2 = bundle.clone();
    let archive2 = archive.to_path_buf();
    let limits = options.limits;
    tokio::task::spawn_blocking(move || {
        crate::revision::extract::extract(&bundle2, &archive2, limits)
    })
    .await
    .map_err(|e| DeployError::Download(e.to_string()))?
    .map_err(|e| DeployError::Download(e.to_string()))?;
    Ok(digest)
}

/// Removes a release folder: below the destination's folder, `.kiln-releases/<name>/<id>` is
/// reached without following links (hooks may write there).
fn remove_release(r: &Release) {
    let (Some(parent), Some(name), Some(id)) = (
        r.destination.parent(),
        r.destination.file_name(),
        r.release.file_name(),
    ) else {
        return;
    };
    let rel = Path::new(".kiln-releases").join(name).join(id);
    if r.release != parent.join(&rel) {
        return;
    }
    let removed = crate::beneath::Dir::open(parent).and_then(|dir| dir.remove_tree(&rel));
    if let Err(e) = removed {
        eprintln!(
            "warning: the release {} is not removed: {e}",
            r.release.display()
        );
    }
}

/// Keeps at most `max` deployment folders of the group (the current one included), never the last
/// one that installed nor the last that succeeded; the oldest go first.
fn prune(layout: &Layout, current: &Deployment, max: usize) {
    let records: Vec<Deployment> = list(&layout.root, None)
        .into_iter()
        .filter(|d| d.group_id == layout.group_id)
        .collect();
    let keep: Vec<PathBuf> = std::fs::read_to_string(layout.last_installed())
        .ok()
        .map(|p| PathBuf::from(p.trim()))
        .into_iter()
        .chain(
            records
                .iter()
                .rfind(|d| d.status == Status::Succeeded)
                .map(|d| d.dir.clone()),
        )
        .collect();
    let Ok(entries) = std::fs::read_dir(layout.group_dir()) else {
        return;
    };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && *p != current.dir)
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    let extra = (others.len() + 1).saturating_sub(max.max(1));
    if extra == 0 {
        return;
    }
    others.retain(|(_, p)| !keep.contains(p));
    others.sort();
    for (_, p) in others.into_iter().take(extra) {
        let _ = std::fs::remove_dir_all(&p);
        // Its releases go too, unless a destination points at one of them.
        for d in records.iter().filter(|d| d.dir == p) {
            for r in &d.releases {
                let current = std::fs::read_link(&r.destination).ok();
                if current.as_ref() != Some(&r.release) {
                    remove_release(r);
                }
            }
        }
    }
}
