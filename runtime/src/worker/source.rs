//! A job's source and outputs in the shared store: a folder goes up as a tree (only the blobs the
//! store lacks), and comes down again on a worker (only the blobs its local store lacks).
//!
//! The tree is the one the action cache knows ([`crate::cas::tree::Tree`]), so a source uploaded by
//! one submitter is already there for the next, and a worker's artifacts are the blobs a cache hit
//! restores. A `.git` folder (the project's, a submodule's) is never sent: its objects are often borrowed from the repository, and
//! a worker must not run anything of a project's `.git`.

use std::path::Path;

use crate::cas::remote::{RemoteCache, Transfer};
use crate::cas::tree::{Entry, Tree};
use crate::cas::{Digest, LocalStore};

use super::WorkerError;

/// Stores `root` in the local store (without its `.git`) and sends the blobs the remote lacks: the
/// tree's digest and what moved.
pub async fn upload_dir(
    local: &LocalStore,
    remote: &RemoteCache,
    root: &Path,
) -> Result<(Digest, Transfer), WorkerError> {
    let store = local.clone();
    let dir = root.to_path_buf();
    let (digest, tree) = tokio::task::spawn_blocking(move || {
        let (_, mut tree) = Tree::store_dir(&store, &dir)?;
        tree.entries
            .retain(|e| !e.path().split('/').any(|part| part == ".git"));
        let digest = store.put_bytes(&tree.to_bytes())?;
        Ok::<_, crate::cas::CasError>((digest, tree))
    })
    .await
    .map_err(|e| WorkerError::Job(e.to_string()))??;
    let transfer = upload_tree(local, remote, &digest, &tree).await?;
    Ok((digest, transfer))
}

/// Sends a stored tree and its files, those the remote lacks.
pub async fn upload_tree(
    local: &LocalStore,
    remote: &RemoteCache,
    digest: &Digest,
    tree: &Tree,
) -> Result<Transfer, WorkerError> {
    let mut digests = files_of(tree);
    digests.push(*digest);
    Ok(remote.upload_blobs(local, &digests).await?)
}

/// Brings the tree `digest` and every file it names into the local store: the tree.
pub async fn fetch_tree(
    local: &LocalStore,
    remote: &RemoteCache,
    digest: &Digest,
) -> Result<Tree, WorkerError> {
    remote.fetch_missing(local, &[*digest]).await?;
    let tree = Tree::load(local, digest)?;
    remote.fetch_missing(local, &files_of(&tree)).await?;
    Ok(tree)
}

/// Brings the tree `digest` from the remote and writes it out in `dest` (created, empty).
pub async fn download_dir(
    local: &LocalStore,
    remote: &RemoteCache,
    digest: &Digest,
    dest: &Path,
) -> Result<Tree, WorkerError> {
    let tree = fetch_tree(local, remote, digest).await?;
    std::fs::create_dir_all(dest).map_err(|e| WorkerError::io(dest, e))?;
    let store = local.clone();
    let (dir, t) = (dest.to_path_buf(), tree.clone());
    tokio::task::spawn_blocking(move || t.restore(&store, &dir))
        .await
        .map_err(|e| WorkerError::Job(e.to_string()))??;
    Ok(tree)
}

/// The files a tree names, each once.
fn files_of(tree: &Tree) -> Vec<Digest> {
    let mut files: Vec<Digest> = tree
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::File { digest, .. } => Some(*digest),
            _ => None,
        })
        .collect();
    files.sort();
    files.dedup();
    files
}
