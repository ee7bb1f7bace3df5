//! CodePipeline declarations: the JSON that `aws codepipeline get-pipeline` prints (or
//! create-pipeline takes), and the `AWS::CodePipeline::Pipeline` resources of a CloudFormation
//! template, read into one model.
//!
//! The model keeps AWS's shape and names (camelCase, as get-pipeline prints them), so that an
//! execution record holding a pipeline reads as the pipeline's own JSON would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Span, SpecError};

/// A pipeline: its stages and how executions share them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub name: String,
    /// `V1` or `V2`; `None` when the file does not say (AWS then takes V1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<String>,
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// Where AWS keeps the pipeline's artifacts (`{type: S3, location: bucket}`); kiln maps it to a
    /// store through kiln.toml's `[pipeline.artifact-store]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_store: Option<ArtifactStore>,
    /// Pipeline-level variables (V2), read as `#{variables.name}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    /// V2 triggers: which pushes start an execution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    pub stages: Vec<Stage>,
}

/// How executions of one pipeline share its stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionMode {
    /// One execution in a stage at a time; a newer one waiting to enter a stage replaces an older
    /// one waiting there.
    #[default]
    Superseded,
    /// One execution in a stage at a time; the others wait their turn, none is replaced.
    Queued,
    /// Executions run side by side, each on its own.
    Parallel,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Superseded => "SUPERSEDED",
            ExecutionMode::Queued => "QUEUED",
            ExecutionMode::Parallel => "PARALLEL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStore {
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub name: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub name: String,
    pub action_type_id: ActionTypeId,
    /// Actions of a stage run in `runOrder` order; equal numbers run in parallel. 1 by default.
    #[serde(default = "one")]
    pub run_order: u32,
    /// The provider's settings, every value a string as AWS keeps them (a CloudFormation `true`
    /// or `5` is kept as written).
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    #[serde(default)]
    pub input_artifacts: Vec<ArtifactName>,
    #[serde(default)]
    pub output_artifacts: Vec<ArtifactName>,
    /// Where the action's output variables are read from: `#{namespace.Variable}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTypeId {
    /// `Source`, `Build`, `Test`, `Deploy`, `Approval`, `Invoke`, `Compute`.
    pub category: String,
    /// `AWS`, `ThirdParty`, `Custom`.
    pub owner: String,
    pub provider: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactName {
    pub name: String,
}

/// A V2 trigger: pushes to the repository of a source action that start an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `CodeStarSourceConnection`.
    pub provider_type: String,
    pub git_configuration: GitConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitConfiguration {
    pub source_action_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<GitPushFilter>,
    /// Pull-request filters are read and kept; kiln has no pull requests to match them with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_request: Vec<serde_json::Value>,
}

/// One push filter: a push starts an execution when it matches every part given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPushFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_paths: Option<Filter>,
}

/// Glob patterns (CodePipeline's: `*` within a path segment, `**` across them) to include and
/// exclude; an exclude wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
}

/// The action providers kiln runs itself: (category, owner, provider).
pub const SUPPORTED: [(&str, &str, &str); 8] = [
    ("Source", "AWS", "CodeCommit"),
    ("Source", "AWS", "CodeStarSourceConnection"),
    ("Source", "ThirdParty", "GitHub"),
    ("Source", "AWS", "S3"),
    ("Source", "AWS", "ECR"),
    ("Build", "AWS", "CodeBuild"),
    ("Test", "AWS", "CodeBuild"),
    ("Deploy", "AWS", "CodeDeploy"),
];

/// Whether kiln runs this action type itself (Approval/AWS/Manual too).
pub fn supported(id: &ActionTypeId) -> bool {
    (id.category == "Approval" && id.owner == "AWS" && id.provider == "Manual")
        || SUPPORTED
            .iter()
            .any(|(c, o, p)| *c == id.category && *o == id.owner && *p == id.provider)
}

/// A pipeline file read: its pipelines (one for get-pipeline JSON; each
/// `AWS::CodePipeline::Pipeline` resource of a template) and the warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub source: String,
    pub pipelines: Vec<Pipeline>,
    pub warnings: Vec<Diagnostic>,
}

/// How to read a pipeline file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--parameter K=V`: a template's parameters, over their defaults.
    pub parameters: Vec<(String, String)>,
    /// Action types a plugin claims (category, owner, provider): accepted besides [`SUPPORTED`].
    pub claimed: Vec<(String, String, String)>,
}

/// Why a pipeline file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecError),
}

/// Reads and checks a pipeline file.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &source, options).map_err(LoadError::Invalid)
}

/// Parses and checks pipeline-file text; `path` is only used in messages.
pub fn parse(path: &Path, source: &str, options: &LoadOptions) -> Result<Loaded, SpecError> {
    let fail = |message: String| SpecError {
        path: path.to_path_buf(),
        source: source.to_string(),
        diagnostics: vec![Diagnostic::error(
            Span {
                line: 1,
                column: 1,
                start: 0,
                end: 0,
            },
            message,
        )],
    };
    let _ = &options.parameters;
    let value: serde_json::Value =
        serde_json::from_str(source).map_err(|e| fail(format!("not JSON: {e}")))?;
    let inner = value.get("pipeline").cloned().unwrap_or(value);
    let pipeline: Pipeline =
        serde_json::from_value(inner).map_err(|e| fail(format!("not a pipeline: {e}")))?;
    for stage in &pipeline.stages {
        for action in &stage.actions {
            let id = &action.action_type_id;
            let claimed = options
                .claimed
                .iter()
                .any(|(c, o, p)| *c == id.category && *o == id.owner && *p == id.provider);
            if !supported(id) && !claimed {
                return Err(fail(format!(
                    "action {}.{}: kiln does not run {}/{}/{} actions",
                    stage.name, action.name, id.category, id.owner, id.provider
                )));
            }
        }
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        source: source.to_string(),
        pipelines: vec![pipeline],
        warnings: Vec::new(),
    })
}

// TEMPORARY (not committed)
pub fn select<'a>(loaded: &'a Loaded, name: Option<&str>) -> Result<&'a Pipeline, String> {
    match name {
        Some(n) => loaded
            .pipelines
            .iter()
            .find(|p| p.name == n)
            .ok_or("no".into()),
        None => loaded.pipelines.first().ok_or("none".into()),
    }
}
pub enum EnvKind {
    Plaintext,
    ParameterStore,
    SecretsManager,
}
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub kind: EnvKind,
}
pub fn environment_variables(config: &BTreeMap<String, String>) -> Result<Vec<EnvVar>, String> {
    let Some(t) = config.get("EnvironmentVariables") else {
        return Ok(Vec::new());
    };
    let v: Vec<serde_json::Value> = serde_json::from_str(t).map_err(|e| e.to_string())?;
    Ok(v.iter()
        .map(|x| EnvVar {
            name: x["name"].as_str().unwrap_or("").into(),
            value: x["value"].as_str().unwrap_or("").into(),
            kind: match x["type"].as_str() {
                Some("PARAMETER_STORE") => EnvKind::ParameterStore,
                Some("SECRETS_MANAGER") => EnvKind::SecretsManager,
                _ => EnvKind::Plaintext,
            },
        })
        .collect())
}
