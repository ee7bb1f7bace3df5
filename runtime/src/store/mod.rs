//! Where revisions go and come from: one interface, the same verbs for every scheme.
//!
//! - `file:///path/app.zip`: a folder on this machine (the embedded default);
//! - `s3://bucket/key`: S3 or any S3-compatible server, through `object_store`;
//! - `oci://host[:port]/repository:tag` (or `@sha256:…`): an OCI registry, through `oci-client`, as
//!   an OCI 1.1 artifact.
//!
//! Every store keeps a revision's bytes and what describes them (a manifest file, object metadata,
//! or manifest annotations). Push writes the bytes first and the description last, so no description
//! ever names missing bytes, and sends nothing the store already holds. Pull downloads into a temp
//! file beside the target, verifies the bytes against the description, and only then extracts them
//! (staged, then renamed into place).

pub mod credentials;
mod file;
pub(crate) mod oci;
pub(crate) mod s3;
mod sink;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::revision::extract::{self, ExtractError, Limits};

/// A revision's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    File(PathBuf),
    S3 { bucket: String, key: String },
    Oci(String),
}

/// How to reach a store: credentials and transport choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Registry user name (`--username`); otherwise the Docker config file is read.
    pub username: Option<String>,
    /// Registry password (`--password-stdin`).
    pub password: Option<String>,
    /// Plain HTTP to a registry that is not on this machine (`--insecure`).
    pub insecure: bool,
    /// Plain HTTP to an explicit S3 endpoint (`--allow-http`).
    pub allow_http: bool,
}

/// Why a store operation failed; the variants are what scripts tell apart by exit code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "`{0}` is not a revision address: use file:///path, s3://bucket/key or oci://host/repo:tag"
    )]
    BadRef(String),
    #[error("{0}")]
    Usage(String),
    #[error("no revision at {0}")]
    NotFound(String),
    #[error("{target} refused access: {detail}\n  credentials looked for in: {looked}")]
    Denied {
        target: String,
        detail: String,
        looked: String,
    },
    #[error("{target} could not be reached: {detail}")]
    Unreachable { target: String, detail: String },
    #[error(
        "the revision at {reference} does not match its manifest ({what}): refused, nothing was extracted"
    )]
    Mismatch { reference: String, what: String },
    #[error("{target}: {detail}")]
    Remote { target: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error(
        "{reference} holds another revision ({existing}); a pushed revision is not replaced (as a registry with immutable tags does): push it under a new name, or give --force to replace it"
    )]
    Exists { reference: String, existing: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
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
}

/// A revision file about to be pushed: its digests, and the manifest that describes it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub path: PathBuf,
    pub blake3: String,
    /// `sha256:<hex>`.
    pub sha256: String,
    pub size: u64,
    /// The revision manifest (from `<file>.manifest.json` when there is one), with the digests set.
    pub manifest: serde_json::Value,
}

pub(crate) fn manifest_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.json", path.display()))
}

impl Outgoing {
    fn read(revision: &Path) -> Result<Outgoing, StoreError> {
        let (blake3, sha256, size) =
            crate::revision::digests(revision).map_err(io_err(revision))?;
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
        if manifest.get("format").is_none() {
            manifest["format"] = sniff_format(revision).into();
        }
        manifest["blake3"] = blake3.clone().into();
        manifest["sha256"] = sha256.clone().into();
        manifest["size"] = size.into();
        Ok(Outgoing {
            path: revision.to_path_buf(),
            blake3,
            sha256,
            size,
            manifest,
        })
    }

    /// What pushing this revision to `reference` did.
    pub fn pushed(
        &self,
        reference: &str,
        uploaded: u64,
        manifest_digest: Option<String>,
    ) -> Pushed {
        Pushed {
            reference: reference.to_string(),
            blake3: self.blake3.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            uploaded,
            manifest_digest,
        }
    }

    pub fn format(&self) -> &str {
        self.manifest["format"].as_str().unwrap_or("zip")
    }
}

/// `zip` or `tgz`, from a file's first bytes.
fn sniff_format(path: &Path) -> &'static str {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match (read, magic) {
        (Ok(()), [0x1f, 0x8b]) => "tgz",
        _ => "zip",
    }
}

/// What the store says a revision's bytes are; pull checks the download against it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    pub blake3: Option<String>,
    /// `sha256:<hex>`.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub manifest: serde_json::Value,
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
    /// The manifest's digest, for registries: `oci://host/repo@<digest>` names exactly this push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
}

/// What a pull did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pulled {
    pub reference: String,
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
    pub files: usize,
    pub output: PathBuf,
    /// The revision manifest the store keeps beside the bytes (its build, its files…).
    pub manifest: serde_json::Value,
}

/// A revision found by `ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub reference: String,
    pub size: Option<u64>,
    pub blake3: Option<String>,
    pub sha256: Option<String>,
    pub manifest: serde_json::Value,
}

/// Pushes a revision file (with the manifest beside it, or one computed now) to `reference`. A file
/// or S3 key that holds another revision is replaced only with `force`; the same revision again is
/// no change. (An OCI tag moves, as tags do; its manifests are immutable by digest.)
pub async fn push(
    revision: &Path,
    reference: &str,
    access: &Access,
    force: bool,
) -> Result<Pushed, StoreError> {
    let dest = Ref::parse(reference)?;
    let outgoing = {
        let revision = revision.to_path_buf();
        tokio::task::spawn_blocking(move || Outgoing::read(&revision))
            .await
            .map_err(|e| StoreError::Usage(e.to_string()))??
    };
    match dest {
        Ref::File(path) => file::push(&outgoing, &path, reference, force),
        Ref::S3 { bucket, key } => {
            s3::push(&outgoing, &bucket, &key, reference, access, force).await
        }
        Ref::Oci(image) => oci::push(&outgoing, &image, reference, access).await,
    }
}

/// What to do with a pulled revision once it is verified.
#[derive(Debug, Clone)]
pub enum PullInto {
    /// Extract it into this folder, which must not exist.
    Folder(PathBuf, Limits),
    /// Keep the revision file itself, here (written whole, then renamed into place).
    Archive(PathBuf),
}

impl PullInto {
    fn path(&self) -> &Path {
        match self {
            PullInto::Folder(p, _) | PullInto::Archive(p) => p,
        }
    }
}

/// Pulls the revision at `reference` and verifies it, then extracts it into a new folder or keeps
/// the file. Nothing is extracted from bytes that fail verification, and nothing is left behind
/// when the pull fails or is interrupted.
pub async fn pull(reference: &str, into: &PullInto, access: &Access) -> Result<Pulled, StoreError> {
    let dest = into.path();
    if dest.exists() {
        return Err(io_err(dest)(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the folder or file to pull into exists already",
        )));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    // The download lands beside the target and is removed on every way out (drop).
    let local = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    let source = Ref::parse(reference)?;
    let (expected, computed) = match source {
        Ref::File(path) => file::fetch(&path, reference, local.path()).await?,
        Ref::S3 { bucket, key } => {
            s3::fetch(&bucket, &key, reference, local.path(), access).await?
        }
        Ref::Oci(image) => oci::fetch(&image, reference, local.path(), access).await?,
    };
    verify(reference, &expected, &computed)?;
    let pulled = Pulled {
        reference: reference.to_string(),
        blake3: computed.blake3.clone(),
        sha256: computed
            .sha256
            .clone()
            .or(expected.sha256.clone())
            .unwrap_or_default(),
        size: computed.size,
        files: 0,
        output: dest.to_path_buf(),
        manifest: expected.manifest,
    };
    match into.clone() {
        PullInto::Archive(path) => {
            local.persist(&path).map_err(|e| io_err(&path)(e.error))?;
            Ok(pulled)
        }
        PullInto::Folder(path, limits) => tokio::task::spawn_blocking(move || {
            let files = extract::extract(local.path(), &path, limits)?;
            Ok(Pulled { files, ..pulled })
        })
        .await
        .map_err(|e| StoreError::Usage(e.to_string()))?,
    }
}

/// Checks downloaded bytes against what the store said of them: BLAKE3 when the store gives it,
/// else SHA-256 (computed during the download). At least one must be known.
fn verify(
    reference: &str,
    expected: &Expected,
    computed: &sink::Computed,
) -> Result<(), StoreError> {
    let mismatch = |what: String| StoreError::Mismatch {
        reference: reference.to_string(),
        what,
    };
    if let Some(want) = expected.size
        && want != computed.size
    {
        return Err(mismatch(format!(
            "expected {want} bytes, got {}",
            computed.size
        )));
    }
    match (&expected.blake3, &expected.sha256, &computed.sha256) {
        (Some(want), _, _) if *want != computed.blake3 => Err(mismatch(format!(
            "expected blake3:{want}, its bytes hash to blake3:{}",
            computed.blake3
        ))),
        (_, Some(want), Some(got)) if want != got => Err(mismatch(format!(
            "expected {want}, its bytes hash to {got}"
        ))),
        (Some(_), _, _) | (None, Some(_), Some(_)) => Ok(()),
        _ => Err(mismatch(
            "the store has no digest to verify it against".into(),
        )),
    }
}

/// What a store says of the revision at `reference`, without downloading it: its digests. What the
/// deploy agent polls.
pub async fn describe(reference: &str, access: &Access) -> Result<Listed, StoreError> {
    match Ref::parse(reference)? {
        Ref::File(path) => {
            file::describe(&path).ok_or_else(|| StoreError::NotFound(reference.to_string()))
        }
        Ref::S3 { bucket, key } => s3::describe(&bucket, &key, reference, access).await,
        Ref::Oci(image) => oci::describe(&image, reference, access).await,
    }
}

/// The revisions under a prefix: a folder, an S3 prefix, or an OCI repository (its tags).
pub async fn list(prefix: &str, access: &Access) -> Result<Vec<Listed>, StoreError> {
    match Ref::parse(prefix)? {
        Ref::File(dir) => Ok(file::list(&dir)),
        Ref::S3 { bucket, key } => s3::list(&bucket, &key, prefix, access).await,
        Ref::Oci(image) => oci::list(&image, prefix, access).await,
    }
}

/// Runs `op` again after transient failures (a connection reset, a 5xx), waiting 200 ms, 400 ms, …
/// between tries; other errors return at once.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (StoreError, bool)>>,
{
    let tries = retry_count();
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err((error, transient)) if transient && attempt < tries => {
                tracing::warn!("{what}: {error}; trying again in {delay:?} ({attempt}/{tries})");
                eprintln!("kiln: {what}: {error}; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// How many times a store operation is tried: `KILN_STORE_RETRIES`, else 5.
pub(crate) fn retry_count() -> u32 {
    std::env::var("KILN_STORE_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1)
}

/// Whether an error chain holds a connection failure or a timeout.
pub(crate) fn is_connection_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error's message with its causes, on one line.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    out
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
        assert_eq!(
            Ref::parse("s3://b/k/app.zip").unwrap(),
            Ref::S3 {
                bucket: "b".into(),
                key: "k/app.zip".into()
            }
        );
        assert_eq!(
            Ref::parse("oci://127.0.0.1:5000/app:v1").unwrap(),
            Ref::Oci("127.0.0.1:5000/app:v1".into())
        );
        assert!(Ref::parse("file://relative").is_err());
        assert!(Ref::parse("s3:///key").is_err());
        assert!(Ref::parse("ftp://x").is_err());
    }

    #[test]
    fn verification_needs_a_digest_and_a_match() {
        let computed = |b: &str, s: Option<&str>, size| sink::Computed {
            blake3: b.into(),
            sha256: s.map(str::to_string),
            size,
        };
        let none = Expected::default();
        assert!(verify("r", &none, &computed("b", Some("sha256:s"), 1)).is_err());
        let good = Expected {
            blake3: Some("b".into()),
            sha256: Some("sha256:s".into()),
            size: Some(1),
            ..Default::default()
        };
        assert!(verify("r", &good, &computed("b", Some("sha256:s"), 1)).is_ok());
        assert!(verify("r", &good, &computed("b", None, 1)).is_ok());
        assert!(verify("r", &good, &computed("x", Some("sha256:s"), 1)).is_err());
        assert!(verify("r", &good, &computed("b", Some("sha256:x"), 1)).is_err());
        assert!(verify("r", &good, &computed("b", Some("sha256:s"), 2)).is_err());
        let sha_only = Expected {
            sha256: Some("sha256:s".into()),
            ..Default::default()
        };
        assert!(verify("r", &sha_only, &computed("b", Some("sha256:s"), 1)).is_ok());
        assert!(verify("r", &sha_only, &computed("b", None, 1)).is_err());
    }
}
