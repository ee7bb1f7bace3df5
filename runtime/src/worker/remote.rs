//! The submitter's side of a remote build (`kiln build --remote`): the project's source goes to the
//! shared store as a tree (only the blobs it lacks), and a finished job's artifacts come back from it
//! into the output folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

use crate::cas::remote::{RemoteCache, Transfer};
use crate::cas::{Digest, LocalStore};

use super::queue::{Job, Queue, QueueError};
use super::{WorkerError, source};

/// The shortest and longest pause between two looks at a followed job.
const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);

/// What the follower of a job wants, asked each time the job is looked at.
pub enum Follow {
    /// Keep following.
    Wait,
    /// Cancel the job (once), and keep following it to its end.
    Cancel,
    /// Stop following; the job goes on.
    Leave,
}

/// Follows a job to its end, giving `on_log` each attempt's log as the worker writes it (an
/// attempt that starts again starts its log again) and `on_look` the job each time it is looked
/// at: the ended job, or `None` when `on_look` said to leave. Looks often while something happens
/// (a short build ends in a fraction of a second), less and less while nothing does.
pub async fn follow<Q: Queue>(
    queue: &Q,
    job: Uuid,
    mut on_log: impl FnMut(u32, &[u8]),
    mut on_look: impl FnMut(&Job) -> Follow,
) -> Result<Option<Job>, QueueError> {
    let mut attempt = 0;
    let mut offset = 0;
    let mut cancelled = false;
    let mut pause = POLL_MIN;
    loop {
        let record = queue.get(job).await?;
        match on_look(&record) {
            Follow::Wait => {}
            Follow::Leave => return Ok(None),
            Follow::Cancel if !cancelled => {
                cancelled = true;
                queue.cancel(job).await?;
            }
            Follow::Cancel => {}
        }
        if record.attempt != attempt && record.attempt > 0 {
            attempt = record.attempt;
            offset = 0;
        }
        if attempt > 0 {
            loop {
                let read = queue.read_log(job, attempt, offset).await?;
                if read.bytes.is_empty() {
                    break;
                }
                pause = POLL_MIN;
                on_log(attempt, &read.bytes);
                offset = read.next;
            }
        }
        if record.state.is_final() {
            return Ok(Some(record));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(POLL_MAX);
    }
}

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
