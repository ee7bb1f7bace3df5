//! A build's plan (`kiln build --dry-run`): what the build would run and with what, worked out
//! from the buildspec, the secrets file and the options, without running anything, recording
//! anything (no build number is taken) or copying the workspace.
//!
//! Everything in a plan is masked as the build's log would be, and the values of
//! `parameter-store` and `secrets-manager` variables are never in it at all, only `***`: a plan
//! is meant to be pasted into an issue.

use std::path::PathBuf;

use serde::Serialize;

use super::{BuildError, BuildOptions, NOT_SELECTED, env, find_buildspec, git, mask::Masker};
use crate::sandbox::os::Network;
use crate::spec::Secrets;
use crate::spec::buildspec::{self, Artifacts, CacheAction, OnFailure, Parsed, PhaseName};

/// What a build would do.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub project: String,
    pub buildspec: PathBuf,
    /// `sh` or `bash`.
    pub shell: &'static str,
    /// Why the build cache would not be used; `None` when the build would be looked up in it.
    pub uncacheable: Option<&'static str>,
    /// The four phases, in order.
    pub phases: Vec<PhasePlan>,
    /// The variables the build starts with, in order, before the `CODEBUILD_*` built-ins (set
    /// when it starts).
    pub variables: Vec<VariablePlan>,
    /// Where the artifacts would go.
    pub output: PathBuf,
    /// The primary artifact, then the secondary ones.
    pub artifacts: Vec<ArtifactPlan>,
    pub cache: Option<CachePlan>,
}

/// One phase of the plan.
#[derive(Debug, Serialize)]
pub struct PhasePlan {
    /// `INSTALL`, `PRE_BUILD`, `BUILD`, `POST_BUILD`.
    pub name: &'static str,
    /// `false` when `--phases` or `--until` leave it out.
    pub selected: bool,
    pub commands: Vec<String>,
    pub finally: Vec<String>,
    pub run_as: Option<String>,
    /// `ABORT`, `CONTINUE` or `RETRY…`, as written.
    pub on_failure: Option<String>,
}

/// One variable of the plan.
#[derive(Debug, Serialize)]
pub struct VariablePlan {
    pub name: String,
    /// `***` for a secret.
    pub value: String,
}

/// One artifact of the plan.
#[derive(Debug, Serialize)]
pub struct ArtifactPlan {
    pub identifier: String,
    /// As written: the shell expands it when the build runs.
    pub name: Option<String>,
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    pub exclude_paths: Vec<String>,
}

/// The buildspec `cache:` section of the plan.
#[derive(Debug, Serialize)]
pub struct CachePlan {
    pub paths: Vec<String>,
    pub key: Option<String>,
    pub fallback_keys: Vec<String>,
    /// `restore`, `save`, or both when the buildspec does not say.
    pub action: &'static str,
}

/// Works out the plan of the build `options` describe. Errors are those the build would stop
/// at before running anything (a bad buildspec, a bad secrets file, missing secrets).
pub fn plan(options: &BuildOptions) -> Result<Plan, BuildError> {
    let source = options
        .source
        .canonicalize()
        .map_err(BuildError::io(&options.source))?;
    let spec_path = find_buildspec(&source, options.buildspec.as_deref())?;
    let Parsed {
        buildspec: spec, ..
    } = buildspec::load(&spec_path)?;
    let secrets = match &options.secrets {
        Some(path) => Secrets::load(path)?,
        None => Secrets::default(),
    };
    let resolved = env::resolve(
        &spec.env,
        &secrets,
        &options.pass_env,
        &options.env,
        options.network != Network::None,
    )?;
    let masker = Masker::new(resolved.masked.clone());
    let mask = |s: &str| masker.mask(s).into_owned();
    let root = git::work_tree(&source).and_then(|t| t.root);
    let project = super::project_name(options, root.as_deref().unwrap_or(&source), &spec_path);

    let secret_names: Vec<&str> = spec
        .env
        .parameter_store
        .iter()
        .chain(&spec.env.secrets_manager)
        .map(|(name, _)| name.as_str())
        .collect();
    let variables = resolved
        .vars
        .as_slice()
        .iter()
        .map(|(name, value)| VariablePlan {
            name: mask(name),
            value: if secret_names.contains(&name.as_str()) {
                super::log::MASK.to_string()
            } else {
                mask(value)
            },
        })
        .collect();

    let phases = PhaseName::ALL
        .into_iter()
        .map(|name| {
            let phase = spec.phases.iter().find(|p| p.name == name);
            let lines = |of: fn(&buildspec::Phase) -> &Vec<buildspec::Command>| {
                phase
                    .map(|p| of(p).iter().map(|c| mask(&c.text)).collect())
                    .unwrap_or_default()
            };
            PhasePlan {
                name: name.log_name(),
                selected: options.selects(name),
                commands: lines(|p| &p.commands),
                finally: lines(|p| &p.finally),
                run_as: phase.and_then(|p| p.run_as.clone()),
                on_failure: phase.and_then(|p| p.on_failure.as_ref()).map(on_failure),
            }
        })
        .collect();

    let artifacts = spec
        .artifacts
        .iter()
        .flat_map(|a| std::iter::once(a).chain(&a.secondary))
        .map(|a: &Artifacts| ArtifactPlan {
            identifier: mask(&a.identifier),
            name: a.name.as_deref().map(mask),
            files: a.files.iter().map(|f| mask(f)).collect(),
            base_directory: a.base_directory.as_deref().map(mask),
            discard_paths: a.discard_paths,
            exclude_paths: a.exclude_paths.iter().map(|f| mask(f)).collect(),
        })
        .collect();
    let cache = spec.cache.as_ref().map(|c| CachePlan {
        paths: c.paths.iter().map(|p| mask(p)).collect(),
        key: c.key.as_deref().map(mask),
        fallback_keys: c.fallback_keys.iter().map(|k| mask(k)).collect(),
        action: match c.action {
            Some(CacheAction::Restore) => "restore",
            Some(CacheAction::Save) => "save",
            None => "restore and save",
        },
    });
    let output = super::artifacts::Output::locate(&source, options.output.as_deref())?.path();
    Ok(Plan {
        project,
        buildspec: spec_path,
        shell: spec.env.shell.program(),
        uncacheable: options.uncacheable(),
        phases,
        variables,
        output,
        artifacts,
        cache,
    })
}

/// `on-failure` as the buildspec spells it.
fn on_failure(f: &OnFailure) -> String {
    match f {
        OnFailure::Abort => "ABORT".into(),
        OnFailure::Continue => "CONTINUE".into(),
        OnFailure::Retry { count, pattern } => {
            let mut text = format!("RETRY-{count}");
            if let Some(re) = pattern {
                text.push('-');
                text.push_str(re.as_str());
            }
            text
        }
    }
}

impl PhasePlan {
    /// Why the phase would not run, when it would not.
    pub fn skipped(&self) -> Option<&'static str> {
        (!self.selected).then_some(NOT_SELECTED)
    }
}
