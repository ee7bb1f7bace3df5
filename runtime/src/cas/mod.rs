//! The content-addressed store: blobs named by their BLAKE3 digest, trees (a directory as one blob),
//! and the action cache (what a build produced, by the digest of everything that decided it).
//!
//! Layout under the store's root:
//!
//! ```text
//! blobs/ab/cdef…   a blob, named by its digest, sharded by the first two hex digits
//! ac/<key>.json    an action cache entry
//! tmp/             files being written; renamed into place when whole
//! ```
//!
//! Writes go to `tmp/` and are renamed into place, so a reader never sees a partial blob or entry,
//! and a crash leaves at worst an orphan in `tmp/` (entries are fsynced first; a blob the crash cut
//! short fails verification on its first read). Reads verify the digest: a corrupt
//! blob is reported, removed and treated as missing, never served.

pub mod action;
pub mod remote;
pub mod tree;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A BLAKE3 digest, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn parse(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Self(*h.as_bytes()))
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.hex()[..12])
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).ok_or_else(|| serde::de::Error::custom("not a BLAKE3 digest"))
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    #[error(
        "the cache's blob {digest} is corrupt (its content hashes to {actual}); it was removed"
    )]
    Corrupt { digest: Digest, actual: Digest },
    #[error("the cache has no blob {0}")]
    Missing(Digest),
    #[error("cache store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cache entry {}: {message}", path.display())]
    BadEntry { path: PathBuf, message: String },
}

/// A refusal below a folder (a link in the way, a path that leads out) as the store's error, at
/// the path it happened on.
impl From<crate::beneath::BeneathError> for CasError {
    fn from(e: crate::beneath::BeneathError) -> Self {
        use crate::beneath::BeneathError;
        match e {
            BeneathError::Io { path, source } => CasError::Io { path, source },
            BeneathError::Link { ref path, .. } | BeneathError::Outside { ref path, .. } => {
                CasError::Io {
                    path: path.clone(),
                    source: io::Error::other(e.to_string()),
                }
            }
        }
    }
}

/// Wraps an I/O error with the path it happened on.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CasError + '_ {
    move |source| CasError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files larger than this are hashed and copied in chunks, never read whole into memory.
const CHUNK: usize = 1 << 20;

/// The local store: a directory, the embedded default.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating it when needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, CasError> {
        for sub in ["blobs", "ac", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        // The 256 shards exist from the start, so storing a blob needs no mkdir.
        if !root.join("blobs/ff").exists() {
            for shard in 0..=255u8 {
                let dir = root.join("blobs").join(format!("{shard:02x}"));
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the store has a blob (without verifying it).
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    /// A temp file in the store's own filesystem, for an atomic rename later.
    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile, CasError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))
    }

    /// A temp file beside a blob's final place: spread over the 256 shards, parallel writers do not
    /// all queue on one directory (creating files in a single busy directory cost ~250 µs each here).
    /// Its name starts with `.`, which no digest does, so listings skip it.
    fn blob_temp_file(&self, dest: &Path) -> Result<tempfile::NamedTempFile, CasError> {
        let dir = dest.parent().unwrap_or(&self.root);
        tempfile::Builder::new()
            .prefix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err(dir))
    }

    /// Moves a finished temp file to `dest`. Entries are made durable before they are visible;
    /// blobs are not synced one by one (that would cost more than the copy): a blob a crash left
    /// half-written fails verification on its first read and is dropped as corrupt.
    pub(crate) fn commit(&self, tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), CasError> {
        self.commit_with(tmp, dest, false)
    }

    /// [`LocalStore::commit`], with an fsync first when `durable`.
    pub(crate) fn commit_with(
        &self,
        tmp: tempfile::NamedTempFile,
        dest: &Path,
        durable: bool,
    ) -> Result<(), CasError> {
        if durable {
            tmp.as_file().sync_all().map_err(io_err(dest))?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
        }
        tmp.persist(dest).map_err(|e| CasError::Io {
            path: dest.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Writes an entry (JSON) at `dest`: synced, then renamed into place, so it is whole or absent.
    pub(crate) fn write_entry(&self, dest: &Path, entry: &impl Serialize) -> Result<(), CasError> {
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| CasError::BadEntry {
            path: dest.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut tmp = self.temp_file()?;
        tmp.write_all(&bytes).map_err(io_err(dest))?;
        self.commit_with(tmp, dest, true)
    }

    /// Stores bytes; returns their digest. An existing blob is not written again.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, CasError> {
        let digest = Digest::of(bytes);
        let dest = self.blob_path(&digest);
        if dest.exists() {
            touch(&dest);
            return Ok(digest);
        }
        let mut tmp = self.blob_temp_file(&dest)?;
        tmp.write_all(bytes).map_err(io_err(&dest))?;
        self.commit(tmp, &dest)?;
        Ok(digest)
    }

    /// Stores a file whose digest is already known (from hashing it), unless the store has it.
    ///
    /// The copy is the kernel's (`copy_file_range`), without hashing the file a second time: a file
    /// that changed between its hashing and its copy gives a blob that fails verification on its
    /// first read, and is then dropped like any corrupt blob.
    pub fn put_file(&self, path: &Path, digest: &Digest) -> Result<bool, CasError> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            touch(&dest);
            return Ok(false);
        }
        let mut tmp = self.blob_temp_file(&dest)?;
        let mut source = File::open(path).map_err(io_err(path))?;
        // std's File-to-File copy is the kernel's copy_file_range.
        io::copy(&mut source, tmp.as_file_mut()).map_err(io_err(path))?;
        self.commit(tmp, &dest)?;
        Ok(true)
    }

    /// Takes in a file written elsewhere (a download into [`LocalStore::temp_file`]) as the blob
    /// `digest`, after checking that it hashes to it.
    pub(crate) fn adopt(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<(), CasError> {
        let actual = hash_file(tmp.path())?;
        if actual != *digest {
            return Err(CasError::Corrupt {
                digest: *digest,
                actual,
            });
        }
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(());
        }
        self.commit(tmp, &dest)
    }

    /// Reads a whole blob, verified. A corrupt blob is removed and reported.
    pub fn get_bytes(&self, digest: &Digest) -> Result<Vec<u8>, CasError> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CasError::Missing(*digest));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            let _ = std::fs::remove_file(&path);
            return Err(CasError::Corrupt {
                digest: *digest,
                actual,
            });
        }
        touch(&path);
        Ok(bytes)
    }

    /// Writes a blob into `out` (a file the caller created), verifying it on the way. A corrupt
    /// blob is removed from the store; what was written to `out` is the caller's to remove.
    pub fn copy_out_into(&self, digest: &Digest, out: &mut File) -> Result<(), CasError> {
        let path = self.blob_path(digest);
        let actual = match copy_hashing(&path, out) {
            Ok(d) => d,
            Err(CasError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CasError::Missing(*digest));
            }
            Err(e) => return Err(e),
        };
        if actual != *digest {
            let _ = std::fs::remove_file(&path);
            return Err(CasError::Corrupt {
                digest: *digest,
                actual,
            });
        }
        touch(&path);
        Ok(())
    }

    /// Every blob: (digest, path, size, last use).
    pub fn blobs(&self) -> Vec<(Digest, PathBuf, u64, std::time::SystemTime)> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(self.root.join("blobs"))
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            let path = entry.path();
            let (Some(shard), Some(rest)) =
                (path.parent().and_then(|p| p.file_name()), path.file_name())
            else {
                continue;
            };
            let hex = format!("{}{}", shard.to_string_lossy(), rest.to_string_lossy());
            let (Some(digest), Ok(meta)) = (Digest::parse(&hex), entry.metadata()) else {
                continue;
            };
            let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((digest, path.to_path_buf(), meta.len(), used));
        }
        out
    }
}

/// What `kiln cache stats` shows of a store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub blobs: usize,
    pub bytes: u64,
    pub entries: usize,
}

/// What pruning or verifying did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cleanup {
    /// Blobs removed (pruned, or found corrupt).
    pub removed_blobs: usize,
    pub freed_bytes: u64,
    /// Action cache entries removed because something they name is gone.
    pub removed_entries: usize,
    /// Blobs whose content did not match their name (verify only).
    pub corrupt: Vec<Digest>,
}

impl LocalStore {
    /// Counts blobs, bytes and entries.
    pub fn stats(&self) -> Stats {
        let blobs = self.blobs();
        Stats {
            blobs: blobs.len(),
            bytes: blobs.iter().map(|b| b.2).sum(),
            entries: self.action_count(),
        }
    }

    /// Removes the least recently used blobs until the store holds at most `max_bytes`, then the
    /// entries that lost a blob. Safe beside a running build: an entry is written after its blobs and
    /// a hit re-checks them, so the worst a race costs is a miss.
    pub fn prune(&self, max_bytes: u64) -> Cleanup {
        let mut blobs = self.blobs();
        blobs.sort_by_key(|b| b.3);
        let mut total: u64 = blobs.iter().map(|b| b.2).sum();
        let mut report = Cleanup::default();
        for (_, path, size, _) in blobs {
            if total <= max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }
        report.removed_entries = self.drop_broken_entries();
        self.clean_tmp();
        report
    }

    /// Re-hashes every blob, removes the corrupt ones and the entries that named them.
    pub fn verify(&self) -> Cleanup {
        let mut report = Cleanup::default();
        let blobs = self.blobs();
        let bad: Vec<(Digest, PathBuf, u64)> = {
            use rayon::prelude::*;
            blobs
                .par_iter()
                .filter(|(digest, path, _, _)| hash_file(path).map_or(true, |d| d != *digest))
                .map(|(d, p, s, _)| (*d, p.clone(), *s))
                .collect()
        };
        for (digest, path, size) in bad {
            if std::fs::remove_file(&path).is_ok() {
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
            report.corrupt.push(digest);
        }
        report.removed_entries = self.drop_broken_entries();
        self.clean_tmp();
        report
    }

    fn drop_broken_entries(&self) -> usize {
        let dir = self.root().join("ac");
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json").and_then(Digest::parse) else {
                continue;
            };
            // get_action removes a malformed entry itself; one whose blobs are gone goes here.
            if self.get_action(&key).is_none() {
                let _ = std::fs::remove_file(entry.path());
                removed += 1;
            }
        }
        removed
    }

    /// Removes what a crashed writer left in `tmp/` (older than an hour, so never a live write).
    fn clean_tmp(&self) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in std::fs::read_dir(self.root().join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < hour_ago)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Hashes a file while copying it into `out`, in chunks.
pub fn copy_hashing(path: &Path, out: &mut File) -> Result<Digest, CasError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(path))?;
    }
    Ok(hasher.finalize().into())
}

/// Hashes a file: memory-mapped and multithreaded for large files (BLAKE3's own parallelism),
/// streamed otherwise.
pub fn hash_file(path: &Path) -> Result<Digest, CasError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path).map_err(io_err(path))?;
    Ok(hasher.finalize().into())
}

/// Marks a blob as used now, for least-recently-used pruning.
fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_are_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(store.put_bytes(b"hello").unwrap(), d);
        assert_eq!(store.get_bytes(&d).unwrap(), b"hello");
        assert_eq!(store.blobs().len(), 1);
    }

    #[test]
    fn a_corrupt_blob_is_removed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"good").unwrap();
        std::fs::write(store.blob_path(&d), b"evil").unwrap();
        assert!(matches!(store.get_bytes(&d), Err(CasError::Corrupt { .. })));
        assert!(!store.has(&d));
        assert!(matches!(store.get_bytes(&d), Err(CasError::Missing(_))));
    }
}
