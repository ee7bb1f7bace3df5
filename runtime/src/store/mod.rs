//! Where revisions go and come from: one interface, the same verbs for every scheme.
//!
//! `file:///path/...` (the embedded default) is built; `s3://` and `oci://` are recognised and
//! refused with a clear message until their backends land.
//!
//! A stored revision is its bytes and its manifest (`<ref>.manifest.json`). Push writes both
//! atomically (the bytes first, the manifest last, so a manifest never names missing bytes) and skips
//! a revision the store already holds; pull verifies the bytes against the manifest before anything is
//! extracted.

use std::path::{Path, PathBuf};

use crate::revision::extract::{self, ExtractError, Limits};

/// A revision's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    File(PathBuf),
    S3 { bucket: String, key: String },
    Oci(String),
}

/// Why a store operation failed; the variants are what scripts tell apart by exit code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "`{0}` is not a revision address: use file:///path, s3://bucket/key or oci://host/repo:tag"
    )]
    BadRef(String),
    #[error("{0}: this kiln cannot push to or pull from {1} stores yet; use file:// for now")]
    Unsupported(String, &'static str),
    #[error("no revision at {0}")]
    NotFound(String),
    #[error(
        "the revision at {reference} does not match its manifest ({what}): refused, nothing was extracted"
    )]
    Mismatch { reference: String, what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Extract(#[from] ExtractError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Ref {
    /// Parses `file:///…`, `s3://bucket/key`, `oci://host/repo:tag`.
    pub fn parse(text: &str) -> Result<Ref, StoreError> {
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StoreError::BadRef(text.to_string()));
            }
            return Ok(Ref::File(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::BadRef(text.to_string()));
            }
            return Ok(Ref::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("oci://") {
            if rest.is_empty() {
                return Err(StoreError::BadRef(text.to_string()));
            }
            return Ok(Ref::Oci(rest.to_string()));
        }
        Err(StoreError::BadRef(text.to_string()))
    }

    fn file(&self, text: &str) -> Result<&Path, StoreError> {
        match self {
            Ref::File(path) => Ok(path),
            Ref::S3 { .. } => Err(StoreError::Unsupported(text.to_string(), "S3")),
            Ref::Oci(_) => Err(StoreError::Unsupported(text.to_string(), "OCI")),
        }
    }
}

fn manifest_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.json", path.display()))
}

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    pub reference: String,
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
    /// Bytes sent: 0 when the store already held this revision.
    pub uploaded: u64,
}

/// Pushes a revision file (with the manifest beside it, or one computed now) to `reference`.
pub fn push(revision: &Path, reference: &str) -> Result<Pushed, StoreError> {
    let dest = Ref::parse(reference)?;
    let dest = dest.file(reference)?;
    let (blake3, sha256, size) = crate::revision::digests(revision).map_err(io_err(revision))?;
    let sha256 = format!("sha256:{sha256}");
    let mut manifest: serde_json::Value = std::fs::read(manifest_path(revision))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if manifest["blake3"].as_str().is_some_and(|b| b != blake3) {
        return Err(StoreError::Mismatch {
            reference: revision.display().to_string(),
            what: "the local manifest names other bytes".into(),
        });
    }
    manifest["blake3"] = blake3.clone().into();
    manifest["sha256"] = sha256.clone().into();
    manifest["size"] = size.into();
    let existing = std::fs::read(manifest_path(dest))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let already = existing.is_some_and(|m| m["blake3"] == blake3.as_str())
        && crate::revision::digests(dest).is_ok_and(|(b, _, _)| b == blake3);
    let mut uploaded = 0;
    if !already {
        let parent = dest.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
        std::fs::copy(revision, tmp.path()).map_err(io_err(revision))?;
        tmp.as_file().sync_all().map_err(io_err(dest))?;
        tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
        uploaded = size;
    }
    let mpath = manifest_path(dest);
    let parent = mpath.parent().unwrap_or(Path::new("/"));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
    std::fs::write(
        tmp.path(),
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(io_err(&mpath))?;
    tmp.persist(&mpath).map_err(|e| io_err(&mpath)(e.error))?;
    Ok(Pushed {
        reference: reference.to_string(),
        blake3,
        sha256,
        size,
        uploaded,
    })
}

/// Pulls the revision at `reference`, verifies it against its manifest, and extracts it into `dest`
/// (which must not exist). Nothing is extracted from bytes that fail verification.
pub fn pull(reference: &str, dest: &Path, limits: Limits) -> Result<usize, StoreError> {
    let parsed = Ref::parse(reference)?;
    let source = parsed.file(reference)?;
    if !source.is_file() {
        return Err(StoreError::NotFound(reference.to_string()));
    }
    let manifest: serde_json::Value = std::fs::read(manifest_path(source))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| StoreError::Mismatch {
            reference: reference.to_string(),
            what: "it has no manifest to verify it against".into(),
        })?;
    // Copy first, then verify the copy: what is extracted is exactly what was verified.
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let local = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
    std::fs::copy(source, local.path()).map_err(io_err(source))?;
    let (blake3, sha256, _) = crate::revision::digests(local.path()).map_err(io_err(source))?;
    if manifest["blake3"].as_str() != Some(blake3.as_str())
        || manifest["sha256"].as_str() != Some(format!("sha256:{sha256}").as_str())
    {
        return Err(StoreError::Mismatch {
            reference: reference.to_string(),
            what: format!("its bytes hash to blake3:{blake3}"),
        });
    }
    if dest.exists() {
        return Err(io_err(dest)(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the folder to pull into exists already",
        )));
    }
    Ok(extract::extract(local.path(), dest, limits)?)
}

/// The revisions under a `file://` prefix (a folder): their paths and manifests.
pub fn list(prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let parsed = Ref::parse(prefix)?;
    let dir = parsed.file(prefix)?;
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let path = entry.path();
        let name = path.to_string_lossy();
        if let Some(revision) = name.strip_suffix(".manifest.json")
            && let Ok(bytes) = std::fs::read(path)
            && let Ok(manifest) = serde_json::from_slice(&bytes)
            && Path::new(revision).is_file()
        {
            out.push((format!("file://{revision}"), manifest));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(
            Ref::parse("file:///srv/rev/app.zip").unwrap(),
            Ref::File("/srv/rev/app.zip".into())
        );
        assert!(matches!(
            Ref::parse("s3://b/k/app.zip").unwrap(),
            Ref::S3 { .. }
        ));
        assert!(Ref::parse("file://relative").is_err());
        assert!(Ref::parse("ftp://x").is_err());
    }
}
