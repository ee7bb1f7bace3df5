//! CodePipeline declarations: the JSON that `aws codepipeline get-pipeline` prints (or
//! create-pipeline takes), and the `AWS::CodePipeline::Pipeline` resources of a CloudFormation
//! template, read into one model.
//!
//! The model keeps AWS's shape and names (camelCase, as get-pipeline prints them), so that an
//! execution record holding a pipeline reads as the pipeline's own JSON would.
//!
//! Reading checks what CodePipeline checks when a pipeline is created (stage layout, names,
//! artifact flow, artifact counts, required configuration, namespaces, execution modes and
//! triggers), so that a pipeline kiln accepts is one AWS would accept, and refuses the providers
//! kiln does not run. A template's intrinsic functions are resolved where kiln reads the value
//! (see `template`); unknown keys are warnings, as AWS adds keys over time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, SpecError};
use super::read::{Reader, read_spec};
use super::yaml::{Node, NodeKind};

mod check;
mod read;
mod template;
mod value;

pub use read::{ActionPlaces, Places, StagePlaces, TriggerPlaces};
use read::{ModelReader, Style};
use template::Template;
use value::{Value, plain};

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

/// The largest pipeline file kiln reads: four times CloudFormation's own 1 MB template limit.
pub const MAX_FILE: u64 = 4 << 20;

/// Reads and checks a pipeline file.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE {
        return Err(read_error(std::io::Error::other(format!(
            "it is {size} bytes; a pipeline declaration is at most {MAX_FILE}"
        ))));
    }
    let source = std::fs::read_to_string(path).map_err(read_error)?;
    parse(path, &source, options).map_err(LoadError::Invalid)
}

/// Parses and checks pipeline-file text; `path` is only used in messages (and its stem is a
/// template's `AWS::StackName`). Every error is reported at once.
pub fn parse(path: &Path, source: &str, options: &LoadOptions) -> Result<Loaded, SpecError> {
    let (pipelines, warnings) = read_pipelines(path, source, options)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        source: source.to_string(),
        pipelines: pipelines.into_iter().map(|(p, _)| p).collect(),
        warnings,
    })
}

/// Where each part of each pipeline of a loaded file was written, in the order of
/// `loaded.pipelines`, for messages that point into the file (an action kiln cannot map, say).
/// `options` are the ones it was loaded with.
pub fn places(loaded: &Loaded, options: &LoadOptions) -> Vec<Places> {
    read_pipelines(&loaded.path, &loaded.source, options)
        .map(|(pipelines, _)| pipelines.into_iter().map(|(_, p)| p).collect())
        .unwrap_or_default()
}

type Warnings = Vec<Diagnostic>;

/// Reads and checks every pipeline of the text, each with its places.
fn read_pipelines(
    path: &Path,
    source: &str,
    options: &LoadOptions,
) -> Result<(Vec<(Pipeline, Places)>, Warnings), SpecError> {
    let stack_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("stack")
        .to_string();
    if let Some(diagnostic) = json_syntax_error(source) {
        return Err(SpecError {
            path: path.to_path_buf(),
            source: source.to_string(),
            diagnostics: vec![diagnostic],
        });
    }
    let (pipelines, _, warnings) = read_spec(path, source, |r, root| {
        let mut out = Vec::new();
        for (value, default_name, style) in pipeline_values(r, root, options, stack_name) {
            let mut reader = ModelReader { r, style };
            let (pipeline, places) = reader.pipeline(&value, default_name.as_deref());
            check::check(r, &pipeline, &places, options);
            out.push((pipeline, places));
        }
        let mut names: Vec<&str> = out.iter().map(|(p, _)| p.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1] && !w[0].is_empty()) {
            r.error(
                root.span,
                format!("the file holds two pipelines named `{}`", twice[0]),
            );
        }
        out
    })?;
    Ok((pipelines, warnings))
}

/// A JSON file's syntax error, in JSON's words and at the place a JSON reader stops (the YAML
/// reader, which reads the rest, stops later and speaks of YAML).
fn json_syntax_error(source: &str) -> Option<Diagnostic> {
    if !source.trim_start().starts_with('{') {
        return None;
    }
    let e = serde_json::from_str::<serde::de::IgnoredAny>(source).err()?;
    if !e.is_syntax() && !e.is_eof() {
        return None;
    }
    let message = e.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    let lines = super::yaml::LineIndex::new(source);
    let line_text = source.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
    let byte = e.column().saturating_sub(1).min(line_text.len());
    let col = line_text
        .char_indices()
        .take_while(|(i, _)| *i < byte)
        .count();
    Some(
        Diagnostic::error(
            lines.span(e.line(), col, 1),
            format!("this is not valid JSON: {message}"),
        )
        .with_help("check the commas, quotes and brackets just before this place (JSON wants a comma between items and none after the last)"),
    )
}

/// The pipelines' values in the file, each with its default name (a resource's logical id) and
/// how its keys are spelled.
fn pipeline_values(
    r: &mut Reader,
    root: &Node,
    options: &LoadOptions,
    stack_name: String,
) -> Vec<(Value, Option<String>, Style)> {
    let NodeKind::Map(_) = &root.kind else {
        r.error_help(
            root.span,
            format!("expected a pipeline, found {}", root.describe()),
            FORMS,
        );
        return Vec::new();
    };
    if template::entry(root, "Resources").is_some()
        || template::entry(root, "AWSTemplateFormatVersion").is_some()
    {
        let mut t = Template::new(r, root, &options.parameters, stack_name);
        return t
            .pipelines(r)
            .into_iter()
            .map(|p| (p.properties, Some(p.logical_id), Style::Template))
            .collect();
    }
    for (name, _) in &options.parameters {
        r.warning(
            root.span,
            format!("`--parameter {name}` is for CloudFormation templates; this file is a pipeline's JSON, so it is not used"),
        );
    }
    if let Some(inner) = template::entry(root, "pipeline") {
        // get-pipeline prints `metadata`; create-pipeline takes `tags`.
        const KEYS: &[&str] = &["pipeline", "metadata", "tags"];
        for (key, span, _) in r.map(root, "the file") {
            if !KEYS.contains(&key) {
                r.ignored_key(key, span, "the file", KEYS);
            }
        }
        return vec![(plain(inner), None, Style::Json)];
    }
    if template::entry(root, "stages").is_some() {
        return vec![(plain(root), None, Style::Json)];
    }
    r.error_help(root.span, "this file holds no pipeline", FORMS);
    Vec::new()
}

const FORMS: &str = "kiln reads the JSON `aws codepipeline get-pipeline` prints ({\"pipeline\": {\"name\": …, \"stages\": […]}}), a bare pipeline object, or a CloudFormation template with an AWS::CodePipeline::Pipeline resource";

/// Whether a file is a pipeline declaration: by its name (`pipeline.json`, `*.pipeline.yml`,
/// `template.yaml`…) or by its content (a `pipeline` key, top-level `stages`, or a template with a
/// pipeline resource).
pub fn is_pipeline_file(path: &Path, source: &str) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let named = ["json", "yml", "yaml"].iter().any(|ext| {
        name == format!("pipeline.{ext}")
            || name.ends_with(&format!(".pipeline.{ext}"))
            || name == format!("template.{ext}")
    });
    if named {
        return true;
    }
    let Ok(root) = super::yaml::parse(source) else {
        return false;
    };
    let NodeKind::Map(_) = &root.kind else {
        return false;
    };
    template::entry(&root, "pipeline").is_some()
        || template::entry(&root, "stages").is_some()
        || template::holds_pipeline(&root)
}

/// The pipeline of a file named `name`, or its only one.
pub fn select<'a>(loaded: &'a Loaded, name: Option<&str>) -> Result<&'a Pipeline, String> {
    let names = || {
        loaded
            .pipelines
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, loaded.pipelines.as_slice()) {
        (_, []) => Err(format!("{} holds no pipeline", loaded.path.display())),
        (None, [only]) => Ok(only),
        (None, _) => Err(format!(
            "{} holds {} pipelines ({}): name the one to use",
            loaded.path.display(),
            loaded.pipelines.len(),
            names()
        )),
        (Some(wanted), all) => all.iter().find(|p| p.name == wanted).ok_or_else(|| {
            format!(
                "{} holds no pipeline named `{wanted}`; it holds {}",
                loaded.path.display(),
                names()
            )
        }),
    }
}

/// One variable of a CodeBuild action's `EnvironmentVariables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub kind: EnvKind,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// The value itself.
    Plaintext,
    /// The value names a Systems Manager parameter (kiln: a secret of that name).
    ParameterStore,
    /// The value names a Secrets Manager secret (kiln: a secret of that name).
    SecretsManager,
}

/// A CodeBuild action's `EnvironmentVariables` (a JSON list of `{name, value, type}` in a string),
/// none when the configuration has none.
pub fn environment_variables(config: &BTreeMap<String, String>) -> Result<Vec<EnvVar>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        name: String,
        value: String,
        #[serde(default, rename = "type")]
        kind: Option<String>,
    }
    let Some(text) = config.get("EnvironmentVariables") else {
        return Ok(Vec::new());
    };
    let raw: Vec<Raw> = serde_json::from_str(text).map_err(|e| {
        format!("EnvironmentVariables is not a JSON list of {{name, value, type}}: {e}")
    })?;
    raw.into_iter()
        .map(|v| {
            let kind = match v.kind.as_deref() {
                None | Some("PLAINTEXT") => EnvKind::Plaintext,
                Some("PARAMETER_STORE") => EnvKind::ParameterStore,
                Some("SECRETS_MANAGER") => EnvKind::SecretsManager,
                Some(other) => {
                    return Err(format!(
                        "the environment variable `{}` has type `{other}`; the types are PLAINTEXT, PARAMETER_STORE and SECRETS_MANAGER",
                        v.name
                    ));
                }
            };
            if v.name.is_empty() {
                return Err("an environment variable in EnvironmentVariables has an empty name".into());
            }
            Ok(EnvVar {
                name: v.name,
                value: v.value,
                kind,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
