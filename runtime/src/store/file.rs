//! `file:///path/app.zip`: the revision and `app.zip.manifest.json` beside it.

use std::path::Path;

use tokio::io::AsyncReadExt;

use super::sink::{Computed, Sink};
use super::{Expected, Listed, Outgoing, Pushed, StoreError, io_err, manifest_path};

pub(super) fn push(
    outgoing: &Outgoing,
    dest: &Path,
    reference: &str,
    force: bool,
) -> Result<Pushed, StoreError> {
    let existing = std::fs::read(manifest_path(dest))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let there = dest
        .exists()
        .then(|| crate::revision::digests(dest).map(|(b, _, _)| b));
    let already = existing.is_some_and(|m| m["blake3"] == outgoing.blake3.as_str())
        && there
            .as_ref()
            .is_some_and(|d| d.as_ref().is_ok_and(|b| *b == outgoing.blake3));
    if !already
        && !force
        && let Some(digest) = there
    {
        return Err(StoreError::Exists {
            reference: reference.to_string(),
            existing: match digest {
                Ok(b) => format!("blake3:{b}"),
                Err(_) => "a file that is not a revision".to_string(),
            },
        });
    }
    let mut uploaded = 0;
    let parent = dest.parent().unwrap_or(Path::new("/"));
    if !already {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
        std::fs::copy(&outgoing.path, tmp.path()).map_err(io_err(&outgoing.path))?;
        tmp.as_file().sync_all().map_err(io_err(dest))?;
        tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
        uploaded = outgoing.size;
    }
    let mpath = manifest_path(dest);
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
    std::fs::write(
        tmp.path(),
        serde_json::to_vec_pretty(&outgoing.manifest).unwrap_or_default(),
    )
    .map_err(io_err(&mpath))?;
    tmp.persist(&mpath).map_err(|e| io_err(&mpath)(e.error))?;
    Ok(outgoing.pushed(reference, uploaded, None))
}

/// Copies the revision to `into`, hashing it on the way; returns what its manifest says of it.
pub(super) async fn fetch(
    source: &Path,
    reference: &str,
    into: &Path,
) -> Result<(Expected, Computed), StoreError> {
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
    let expected = Expected {
        blake3: manifest["blake3"].as_str().map(str::to_string),
        sha256: manifest["sha256"].as_str().map(str::to_string),
        size: manifest["size"].as_u64(),
        manifest,
    };
    let mut sink = Sink::create(into, expected.blake3.is_none()).map_err(io_err(into))?;
    let mut file = tokio::fs::File::open(source)
        .await
        .map_err(io_err(source))?;
    loop {
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        let n = file.read_buf(&mut buf).await.map_err(io_err(source))?;
        if n == 0 || sink.write(buf.freeze()).await.is_err() {
            break;
        }
    }
    let computed = sink.finish().await.map_err(io_err(into))?;
    Ok((expected, computed))
}

/// The revision file at `path`, by the manifest beside it.
pub(super) fn describe(path: &Path) -> Option<Listed> {
    let mut manifest = path.as_os_str().to_owned();
    manifest.push(".manifest.json");
    let bytes = std::fs::read(&manifest).ok()?;
    let manifest = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    path.is_file().then(|| Listed {
        reference: format!("file://{}", path.to_string_lossy()),
        size: manifest["size"].as_u64(),
        blake3: manifest["blake3"].as_str().map(str::to_string),
        sha256: manifest["sha256"].as_str().map(str::to_string),
        manifest,
    })
}

/// The revisions under a folder: every file with a manifest beside it.
pub(super) fn list(dir: &Path) -> Vec<Listed> {
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
            && let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && Path::new(revision).is_file()
        {
            out.push(Listed {
                reference: format!("file://{revision}"),
                size: manifest["size"].as_u64(),
                blake3: manifest["blake3"].as_str().map(str::to_string),
                sha256: manifest["sha256"].as_str().map(str::to_string),
                manifest,
            });
        }
    }
    out
}
