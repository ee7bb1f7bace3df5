//! The submitter's side of a remote build (`kiln build --remote`): the project's source goes to the
//! shared store as a tree (only the blobs it lacks), and a finished job's artifacts come back from it
//! into the output folder.

use std::path::{Path, PathBuf};

use crate::cas::remote::{RemoteCache, Transfer};
use crate::cas::{Digest, LocalStore};

use super::{WorkerError, source};

/// Copies the project's source as a build would (`git`'s files of a checkout, everything of a
/// plain folder, without `exclude`), stores it and sends what the shared store lacks: the source
/// tree's digest and what moved.
pub async fn upload_source(
    local: &LocalStore,
    remote: &RemoteCache,
    project: &Path,
    exclude: &[PathBuf],
) -> Result<(Digest, Transfer), WorkerError> {
    let copy = tempfile::Builder::new()
        .prefix("kiln-remote-")
        .tempdir()
        .map_err(|e| WorkerError::io(&std::env::temp_dir(), e))?;
    let (project, dest, exclude) = (
        project.to_path_buf(),
        copy.path().to_path_buf(),
        exclude.to_vec(),
    );
    tokio::task::spawn_blocking(move || {
        let tree = crate::build::git::work_tree(&project);
        crate::build::workspace::snapshot(&project, tree, &dest, &exclude)
    })
    .await
    .map_err(|e| WorkerError::Job(e.to_string()))?
    .map_err(|e| WorkerError::Job(e.to_string()))?;
    source::upload_dir(local, remote, copy.path()).await
}

/// One artifact of a finished job, where it was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetched {
    /// `primary`, or a secondary artifact's key.
    pub identifier: String,
    /// Its name, the folder's name in the output folder.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its files, relative to `path`.
    pub files: Vec<String>,
}

/// Writes the artifacts a job's result names into `output`, one folder each (replacing what was
/// there), fetching the blobs the local store lacks.
pub async fn fetch_artifacts(
    local: &LocalStore,
    remote: &RemoteCache,
    result: &serde_json::Value,
    output: &Path,
) -> Result<Vec<Fetched>, WorkerError> {
    let mut fetched = Vec::new();
    for artifact in result["artifacts"].as_array().into_iter().flatten() {
        let (Some(name), Some(tree)) = (
            artifact["name"].as_str(),
            artifact["tree"].as_str().and_then(Digest::parse),
        ) else {
            continue;
        };
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(WorkerError::Job(format!(
                "the artifact name `{name}` is not a folder name"
            )));
        }
        let dest = output.join(rel);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| WorkerError::io(&dest, e))?;
        }
        source::download_dir(local, remote, &tree, &dest).await?;
        fetched.push(Fetched {
            identifier: artifact["identifier"].as_str().unwrap_or(name).to_string(),
            name: name.to_string(),
            path: dest,
            files: serde_json::from_value(artifact["files"].clone()).unwrap_or_default(),
        });
    }
    Ok(fetched)
}
