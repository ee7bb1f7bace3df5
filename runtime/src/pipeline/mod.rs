//! CodePipeline declarations executed: stages, actions, artifacts between them, approvals, and
//! what started each execution.
//!
//! AWS names in a pipeline (repositories, CodeBuild projects, deployment groups, the artifact
//! store's bucket) are mapped to things on this machine by kiln.toml's `[pipeline]` tables
//! ([`Mapping`]); with no mapping, a one-repository pipeline runs as it is: every source is the git
//! repository the pipeline file sits in, every project builds `buildspec.yml`, every deployment
//! group deploys on this host, and artifacts go to a `file://` store in the state dir.
//!
//! Artifacts live in a content-addressed store of their own (`<state>/pipeline-artifacts`), so an
//! execution's artifacts outlive `kiln cache prune` and a retry runs with exactly the same ones.

mod actions;
pub mod record;
pub mod run;
pub mod source;
pub mod trigger;
pub mod vars;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::build::BuildOptions;
use crate::cas::LocalStore;
use crate::deploy::DeployOptions;
use crate::spec::Secrets;
use crate::spec::pipeline::ActionTypeId;

/// Where an AWS name of the pipeline leads on this machine (kiln.toml's `[pipeline]`).
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// A repository name (`RepositoryName`, `FullRepositoryId`, `Repo`), an S3 bucket or an ECR
    /// repository -> a local repository's folder, a git URL, or a store location.
    pub sources: BTreeMap<String, String>,
    /// A CodeBuild project -> its buildspec, relative to the primary source.
    pub projects: BTreeMap<String, String>,
    /// A deployment group -> where it deploys.
    pub deployment_groups: BTreeMap<String, GroupTarget>,
    /// An artifact store location (the bucket) -> a kiln store (`file://`, `s3://`, `oci://`).
    pub artifact_stores: BTreeMap<String, String>,
}

/// Where a deployment group's revisions go.
#[derive(Debug, Clone, Default)]
pub struct GroupTarget {
    /// Deploy on this host, into this deployment root (`None`: kiln's default root).
    pub root: Option<PathBuf>,
    /// Push each revision to this store reference too, for hosts whose `kiln agent --watch`
    /// follows it.
    pub reference: Option<String>,
    /// The CodeDeploy application name kiln records (`None`: the action's `ApplicationName`).
    pub application: Option<String>,
}

/// A CodeBuild action's build, as the pipeline asks for it; the caller turns it into a whole
/// [`BuildOptions`] (its sandbox, cache and network settings).
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub source: PathBuf,
    pub buildspec: Option<PathBuf>,
    pub secondary_sources: Vec<(String, PathBuf)>,
    pub env: Vec<(String, String)>,
    pub secret_env: Vec<(String, String)>,
    /// The CodeBuild project's name.
    pub project: String,
    /// Where the artifacts go.
    pub output: PathBuf,
    /// `CODEBUILD_INITIATOR`: `codepipeline/<pipeline>`, as on AWS.
    pub initiator: String,
}

/// A CodeDeploy action's deployment.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The revision's store reference.
    pub revision: String,
    pub group: String,
    pub application: String,
    /// `None`: kiln's default deployment root.
    pub root: Option<PathBuf>,
}

/// Output of an action run by a [`Provider`].
#[derive(Debug, Default)]
pub struct ProviderOutput {
    /// Folders to record as the action's output artifacts, in order.
    pub artifacts: Vec<PathBuf>,
    pub variables: BTreeMap<String, String>,
}

/// An action provider kiln does not run itself, claimed by a plugin: the seam where one plugs in.
/// kiln ships none yet; `validate` and `run` refuse what no provider claims.
pub trait Provider: Send + Sync {
    fn claims(&self, id: &ActionTypeId) -> bool;
    /// Runs the action with its resolved configuration and its input artifacts' folders.
    fn run<'a>(
        &'a self,
        configuration: &'a BTreeMap<String, String>,
        inputs: &'a [(String, PathBuf)],
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<ProviderOutput, String>>;
}

/// Where CodeBuild actions run when they do not run here: a build queue's workers, which share
/// sources and artifacts through the store behind the build cache (`kiln build --remote`'s).
pub struct RemoteBuilds {
    pub queue: std::sync::Arc<crate::worker::postgres::PgQueue>,
    pub store: crate::cas::remote::RemoteCache,
    /// The local store blobs go through.
    pub local: LocalStore,
    /// The job options every build takes (`network`, `timeout`).
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// What drives executions: where records and artifacts go, the mapping, and how builds and
/// deployments are made.
pub struct Context {
    pub records: record::Records,
    pub state_dir: PathBuf,
    pub artifacts: LocalStore,
    /// The pipeline file, absolute.
    pub file: PathBuf,
    /// The folder mapping paths are relative to (kiln.toml's); the default source repository is
    /// the one holding the pipeline file.
    pub project_dir: PathBuf,
    pub mapping: Mapping,
    pub access: crate::store::Access,
    /// The local stand-in for Parameter Store and Secrets Manager.
    pub secrets: Secrets,
    /// How long a manual approval waits (CodePipeline: 7 days).
    pub approval_timeout: Duration,
    pub build: Box<dyn Fn(BuildRequest) -> BuildOptions + Send + Sync>,
    pub deploy: Box<dyn Fn(DeployRequest) -> DeployOptions + Send + Sync>,
    /// Progress lines for the console.
    pub say: Box<dyn Fn(&str) + Send + Sync>,
    pub providers: Vec<Box<dyn Provider>>,
    /// The build queue CodeBuild actions run on, when not on this machine.
    pub remote: Option<RemoteBuilds>,
}

impl Context {
    pub fn say(&self, line: &str) {
        (self.say)(line)
    }

    /// The artifact store of a state dir.
    pub fn artifacts_dir(state_dir: &Path) -> PathBuf {
        state_dir.join("pipeline-artifacts")
    }
}

/// The local repository a source action's repository name stands for (kiln.toml's mapping, else
/// the repository holding the pipeline file); a URL is mirrored into the state dir first.
pub fn source_repository(ctx: &Context, name: &str) -> Result<PathBuf, String> {
    actions::repository(ctx, name)
}

/// CodePipeline's default approval timeout.
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
