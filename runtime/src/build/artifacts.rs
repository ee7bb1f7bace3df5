//! Collecting artifacts: the `artifacts` plugin copies what the definition selects into a staging
//! folder beside the output (seeing only the workspace, read-only, and that folder), then kiln swaps
//! the staging folder into place, so an output folder is never half-written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::log::BuildLog;
use super::result::ArtifactResult;
use crate::sandbox::{ExecEnv, Policy, Preopen, Sandbox, StepContext};
use crate::spec::buildspec::Artifacts;

/// What collecting artifacts needs from the build.
pub struct ArtifactEnv<'a> {
    pub sandbox: &'a Sandbox,
    pub log: Arc<BuildLog>,
    pub exec: ExecEnv,
    pub context: StepContext,
    pub shell: &'static str,
    pub zip: bool,
    pub memory_limit: usize,
    pub timeout: Duration,
}

/// Why artifacts could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    Plugin(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ArtifactError {
    /// CodeBuild's phase context code for this failure.
    pub fn status_code(&self) -> &'static str {
        match self {
            ArtifactError::Plugin(_) => "CLIENT_ERROR",
            ArtifactError::Io { .. } => "CLIENT_ERROR",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Collects the primary artifact (when it has files) and every secondary artifact into `output`.
pub async fn collect(
    env: &ArtifactEnv<'_>,
    definition: &Artifacts,
    output: &Path,
) -> Result<Vec<ArtifactResult>, ArtifactError> {
    std::fs::create_dir_all(output).map_err(io(output))?;
    let output = output.canonicalize().map_err(io(output))?;
    let mut all: Vec<&Artifacts> = Vec::new();
    if !definition.files.is_empty() {
        all.push(definition);
    }
    all.extend(definition.secondary.iter());
    let mut results = Vec::new();
    for artifact in all {
        results.push(collect_one(env, artifact, &output).await?);
    }
    Ok(results)
}

async fn collect_one(
    env: &ArtifactEnv<'_>,
    artifact: &Artifacts,
    output: &Path,
) -> Result<ArtifactResult, ArtifactError> {
    let staging = tempfile::Builder::new()
        .prefix(&format!(".kiln-staging-{}-", artifact.identifier))
        .tempdir_in(output)
        .map_err(io(output))?;
    let staging_path = staging.path().to_path_buf();
    let mut args = vec![
        "--shell".to_string(),
        env.shell.to_string(),
        "--staging".to_string(),
        staging_path.to_string_lossy().into_owned(),
        "--name".to_string(),
        artifact
            .name
            .clone()
            .unwrap_or_else(|| artifact.identifier.clone()),
    ];
    if let Some(base) = &artifact.base_directory {
        args.extend(["--base-directory".to_string(), base.clone()]);
    }
    if artifact.discard_paths {
        args.push("--discard-paths".to_string());
    }
    if artifact.enable_symlinks {
        args.push("--enable-symlinks".to_string());
    }
    for exclude in &artifact.exclude_paths {
        args.extend(["--exclude".to_string(), exclude.clone()]);
    }
    args.push("--".to_string());
    args.extend(artifact.files.iter().cloned());

    let policy = Policy {
        preopens: vec![
            Preopen {
                path: env.context.source_dir.clone(),
                writable: false,
            },
            Preopen {
                path: staging_path.clone(),
                writable: true,
            },
        ],
        allow_exec: true,
        network: false,
        local_network: false,
        timeout: Some(env.timeout),
        memory_limit: env.memory_limit,
    };
    let log: Arc<dyn crate::sandbox::LogSink> = env.log.clone();
    let outcome = env
        .sandbox
        .run(
            "artifacts",
            &args,
            &env.context,
            &policy,
            Some(env.exec.clone()),
            log,
        )
        .await
        .map_err(|e| ArtifactError::Plugin(e.to_string()))?;
    if outcome.status != 0 {
        return Err(ArtifactError::Plugin(outcome.message.unwrap_or_else(
            || format!("the artifacts step failed with status {}", outcome.status),
        )));
    }
    let name_file = staging_path.join("name");
    let name = std::fs::read_to_string(&name_file).map_err(io(&name_file))?;
    // A folder named after a secret would show it to whoever lists the output folder.
    if env.log.masker().finds(&name) {
        return Err(ArtifactError::Plugin(format!(
            "the name of artifact `{}` would contain a secret's value; name it without the secret",
            artifact.identifier
        )));
    }
    let name = sanitize(name.trim(), &artifact.identifier);
    publish(
        &staging_path.join("files"),
        output,
        &artifact.identifier,
        name,
        env.zip,
    )
}

/// Puts a staged artifact folder in its place as `<output>/<name>` (and `<name>.zip` when `zip`).
pub(crate) fn publish(
    staged: &Path,
    output: &Path,
    identifier: &str,
    name: String,
    zip: bool,
) -> Result<ArtifactResult, ArtifactError> {
    let final_dir = output.join(&name);
    if let Some(parent) = final_dir.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    swap_into_place(staged, &final_dir, output)?;
    let files = list_files(&final_dir);
    let zip = if zip {
        let zip_path = output.join(format!("{name}.zip"));
        write_zip(&final_dir, &zip_path)?;
        Some(zip_path)
    } else {
        None
    };
    Ok(ArtifactResult {
        identifier: identifier.to_string(),
        name,
        path: final_dir,
        zip,
        files,
    })
}

/// An artifact name as a relative path below the output folder. `/` nests, as on CodeBuild
/// (`builds/$CODEBUILD_BUILD_NUMBER/app` lands in `builds/7/app`); empty, `.` and `..` components are
/// dropped, so a name cannot lead outside the output folder.
fn sanitize(name: &str, fallback: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|part| !matches!(*part, "" | "." | ".."))
        .collect();
    if parts.is_empty() {
        fallback.to_string()
    } else {
        parts.join("/").replace('\0', "-")
    }
}

/// Replaces `dest` with `staged` by renames, so `dest` is always either the old or the new folder.
fn swap_into_place(staged: &Path, dest: &Path, output: &Path) -> Result<(), ArtifactError> {
    if dest.exists() {
        let trash = tempfile::Builder::new()
            .prefix(".kiln-old-")
            .tempdir_in(output)
            .map_err(io(output))?;
        let old = trash.path().join("old");
        std::fs::rename(dest, &old).map_err(io(dest))?;
        std::fs::rename(staged, dest).map_err(io(dest))?;
        drop(trash);
    } else {
        std::fs::rename(staged, dest).map_err(io(dest))?;
    }
    Ok(())
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    files
}

/// Zips an artifact folder as a revision is zipped: deterministic bytes, a manifest beside it.
fn write_zip(dir: &Path, dest: &Path) -> Result<(), ArtifactError> {
    let options = crate::revision::PackageOptions {
        format: crate::revision::Format::Zip,
        require_appspec: false,
        timestamp: None,
    };
    crate::revision::package(dir, dest, &options, None)
        .map(|_| ())
        .map_err(|e| ArtifactError::Plugin(e.to_string()))
}
