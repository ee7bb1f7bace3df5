//! A shared, remote content-addressed store behind the local one: `--cache s3://bucket/prefix`
//! (or `KILN_CACHE`).
//!
//! The remote holds the same things as the local store, under the prefix:
//!
//! ```text
//! blobs/<blake3>    a blob (a file, a tree, a log)
//! ac/<key>.json     an action cache entry, written after every blob it names
//! ```
//!
//! The local store stays in front as a read-through cache: a lookup that misses locally fetches the
//! entry and only the blobs the local store lacks, each verified against its digest before it is
//! taken in; a save sends only the blobs the remote lacks (asked with HEAD), with `PutMode::Create`
//! so that two machines storing the same blob at once do not both write it, then the entry, last.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{Attributes, ObjectStoreExt, PutMode, PutPayload};

use super::action::ActionEntry;
use super::tree::{Entry, Tree};
use super::{Digest, LocalStore};
use crate::store::{Access, StoreError};

/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// A remote store.
#[derive(Debug, Clone)]
pub struct RemoteCache {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    /// Read, never write: for builds of changes that are not trusted to write a shared cache.
    pub read_only: bool,
}

/// What a fetch or an upload moved.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Transfer {
    /// Blobs the entry names.
    pub blobs: usize,
    /// Blobs that had to move (the others were there already).
    pub moved: usize,
    pub bytes: u64,
}

impl RemoteCache {
    /// Opens `s3://bucket/prefix`.
    pub fn open(url: &str, access: &Access) -> Result<Self, StoreError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(StoreError::Usage(format!(
                "`{url}` is not a remote cache: use s3://bucket/prefix"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::BadRef(url.to_string()));
        }
        Ok(Self {
            store: crate::store::s3::client(bucket, access)?,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            read_only: false,
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn key(&self, rest: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rest)
        } else {
            ObjectPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Digest) -> ObjectPath {
        self.key(&format!("blobs/{}", digest.hex()))
    }

    fn action_key(&self, key: &Digest) -> ObjectPath {
        self.key(&format!("ac/{}.json", key.hex()))
    }

    fn error(&self, e: object_store::Error) -> StoreError {
        crate::store::s3::error(e, &self.bucket, &self.url())
    }

    /// Makes the local store hold the remote's entry for `key` and every blob it names, fetching
    /// only what is missing. `None` when the remote has no entry for the key.
    pub async fn fetch_action(
        &self,
        local: &LocalStore,
        key: &Digest,
    ) -> Result<Option<Transfer>, StoreError> {
        let bytes = match self.store.get(&self.action_key(key)).await {
            Ok(result) => result.bytes().await.map_err(|e| self.error(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let Ok(entry) = serde_json::from_slice::<ActionEntry>(&bytes) else {
            tracing::warn!("the remote cache entry {} is not readable; ignored", key);
            return Ok(None);
        };
        let mut transfer = Transfer::default();
        // Trees first (their entries name the other blobs), then everything else at once.
        let trees: Vec<Digest> = entry.artifacts.iter().map(|a| a.tree).collect();
        let mut first: Vec<Digest> = trees.clone();
        first.push(entry.log);
        self.fetch_blobs(local, &first, &mut transfer).await?;
        let mut files = BTreeSet::new();
        for digest in &trees {
            let tree = Tree::load(local, digest).map_err(cas)?;
            for e in &tree.entries {
                if let Entry::File { digest, .. } = e {
                    files.insert(*digest);
                }
            }
        }
        let files: Vec<Digest> = files.into_iter().collect();
        self.fetch_blobs(local, &files, &mut transfer).await?;
        local.put_action(key, &entry).map_err(cas)?;
        Ok(Some(transfer))
    }

    async fn fetch_blobs(
        &self,
        local: &LocalStore,
        digests: &[Digest],
        transfer: &mut Transfer,
    ) -> Result<(), StoreError> {
        transfer.blobs += digests.len();
        let missing: Vec<Digest> = digests.iter().filter(|d| !local.has(d)).copied().collect();
        let sizes: Vec<u64> = futures::stream::iter(missing)
            .map(|digest| async move {
                let tmp = local.temp_file().map_err(cas)?;
                let (size, _) =
                    crate::store::s3::download(&self.store, &self.blob_key(&digest), tmp.path())
                        .await
                        .map_err(|e| self.error(e))?;
                let local = local.clone();
                tokio::task::spawn_blocking(move || local.adopt(tmp, &digest))
                    .await
                    .map_err(|e| StoreError::Usage(e.to_string()))?
                    .map_err(|e| StoreError::Mismatch {
                        reference: format!("the remote cache's blob {digest}"),
                        what: e.to_string(),
                    })?;
                Ok::<u64, StoreError>(size)
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        transfer.moved += sizes.len();
        transfer.bytes += sizes.iter().sum::<u64>();
        Ok(())
    }

    /// Sends the local entry for `key` and the blobs it names that the remote lacks; the entry last.
    pub async fn upload_action(
        &self,
        local: &LocalStore,
        key: &Digest,
    ) -> Result<Transfer, StoreError> {
        let Some((entry, trees)) = local.get_action(key).filter(|_| !self.read_only) else {
            return Ok(Transfer::default());
        };
        let mut digests = BTreeSet::new();
        digests.insert(entry.log);
        for (artifact, tree) in entry.artifacts.iter().zip(&trees) {
            digests.insert(artifact.tree);
            for e in &tree.entries {
                if let Entry::File { digest, .. } = e {
                    digests.insert(*digest);
                }
            }
        }
        let digests: Vec<Digest> = digests.into_iter().collect();
        let transfer = self.upload_blobs(local, &digests).await?;
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        self.store
            .put(&self.action_key(key), PutPayload::from(body))
            .await
            .map_err(|e| self.error(e))?;
        Ok(transfer)
    }

    /// Sends the blobs of the local store the remote lacks (asked with HEAD), each created only if
    /// absent: what moved. Blobs name themselves, so this is for anyone who may write blobs (a
    /// submitter's source, a worker's artifacts), `read_only` or not: it guards the action cache.
    pub async fn upload_blobs(
        &self,
        local: &LocalStore,
        digests: &[Digest],
    ) -> Result<Transfer, StoreError> {
        let mut transfer = Transfer {
            blobs: digests.len(),
            ..Default::default()
        };
        let sent: Vec<u64> = futures::stream::iter(digests.iter().copied())
            .map(|digest| async move {
                let path = self.blob_key(&digest);
                match self.store.head(&path).await {
                    Ok(_) => return Ok(None),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.error(e)),
                }
                let file = local.blob_path(&digest);
                let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                match crate::store::s3::upload_file(
                    &self.store,
                    &path,
                    &file,
                    Attributes::new(),
                    PutMode::Create,
                )
                .await
                {
                    // Another machine stored it meanwhile: the same bytes, by their name.
                    Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(Some(size)),
                    Err(object_store::Error::Precondition { .. }) => Ok(Some(size)),
                    Err(e) => Err(self.error(e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        transfer.moved = sent.len();
        transfer.bytes = sent.iter().sum();
        Ok(transfer)
    }

    /// Makes the local store hold these blobs of the remote, fetching only those it lacks, each
    /// verified against its digest: what moved.
    pub async fn fetch_missing(
        &self,
        local: &LocalStore,
        digests: &[Digest],
    ) -> Result<Transfer, StoreError> {
        let mut transfer = Transfer::default();
        self.fetch_blobs(local, digests, &mut transfer).await?;
        Ok(transfer)
    }

    /// Whether the remote has an action cache entry for `key`.
    pub async fn has_action(&self, key: &Digest) -> Result<bool, StoreError> {
        match self.store.head(&self.action_key(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }
}

fn cas(e: super::CasError) -> StoreError {
    StoreError::Usage(e.to_string())
}
