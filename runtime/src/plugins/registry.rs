//! Pushing and pulling a plugin's artifact ([`super::artifact`]):
//!
//! - `oci://host[:port]/repository:TAG` (or `@sha256:…`): an OCI registry, through oci-client, with
//!   the credentials and transport rules of [`crate::store`]'s `oci://` (Docker config, plain HTTP
//!   only to this machine or with `--insecure`);
//! - `file:///dir/…/name:TAG` and `s3://bucket/prefix/name:TAG`: an OCI image layout in the folder
//!   (or under the key prefix) `…/name`: `oci-layout`, `index.json` whose manifests carry the tag as
//!   `org.opencontainers.image.ref.name`, and `blobs/sha256/<hex>`. The same bytes as in a registry.
//!
//! Tags are semver versions: a tag that moves (`latest`, `v1`) is refused, because `kiln.lock` pins
//! what a tag meant when it was added, and a tag that says nothing about compatibility invites
//! `kiln plugin update` surprises. Blobs go first, the manifest (or index) last, so a tag never names
//! missing bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use oci_client::errors::DigestError;
use oci_client::manifest::OciDescriptor;
use oci_client::{Reference, RegistryOperation};

use super::artifact::{self, Artifact, ArtifactError, Descriptor, Manifest};
use crate::store::{self, Access, StoreError};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference or tag kiln does not take.
    #[error("{0}")]
    Usage(String),
    /// What the store sent is not a kiln plugin artifact, or does not match its digests.
    #[error("{reference}: refused: {why}")]
    Refused {
        reference: String,
        why: ArtifactError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a plugin's artifact lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `host[:port]/repository`.
    Oci(String),
    /// The image layout's folder.
    File(PathBuf),
    /// The image layout's bucket and key prefix (no trailing slash).
    S3 { bucket: String, prefix: String },
}

/// Which version at that location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A semver tag.
    Tag(String),
    /// A manifest digest, `sha256:<hex>`.
    Digest(String),
}

/// A plugin reference: `oci://…`, `file://…` or `s3://…`, with a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    pub location: Location,
    pub version: Version,
}

/// Whether a `[plugins]` value is a reference (rather than a local path).
pub fn is_reference(value: &str) -> bool {
    value.contains("://")
}

/// Checks a tag: a semver version, as OCI tags can spell it.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let oci_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if oci_ok && semver::Version::parse(tag).is_ok() {
        return Ok(());
    }
    Err(format!(
        "the tag `{}` is not a semver version: plugin tags look like 1.2.0 or 1.2.0-rc.1 (a tag such as `latest` or `v1` moves, and kiln.lock pins versions)",
        tag.escape_debug()
    ))
}

/// Opens a file to read without waiting: a FIFO opens at once (and is then seen not to be a
/// regular file) instead of blocking until something writes to it.
pub fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// `host[:port]/repository` as the registry client reaches it, so that one registry has one
/// spelling (what `[plugin-keys]` prefixes are matched against): the host lower-cased, `:443`
/// dropped, Docker Hub's hosts made `docker.io`, and a first part that is not a host (no `.` or
/// `:`, not `localhost`, lower-case) read as a Docker Hub namespace, as Docker and oci-client read
/// it. A `[plugin-keys]` prefix without a `/` is a host when it looks like one.
pub fn canonical_image(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    let is_host = first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase());
    if !is_host {
        return format!("docker.io/{image}");
    }
    let mut host = first.to_ascii_lowercase();
    if let Some(bare) = host.strip_suffix(":443") {
        host = bare.to_string();
    }
    if matches!(
        host.as_str(),
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    ) {
        host = "docker.io".to_string();
    }
    match rest {
        Some(rest) => format!("{host}/{rest}"),
        None => host,
    }
}

impl PluginRef {
    /// Parses a reference; a tag must be semver.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| {
            RegistryError::Usage(format!(
                "`{}` is not a plugin reference ({why}): use oci://host/repo:1.2.0, file:///dir/name:1.2.0 or s3://bucket/prefix/name:1.2.0",
                text.escape_debug()
            ))
        };
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("it holds spaces or control characters"));
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (path, version) = if let Some((path, digest)) = rest.rsplit_once('@') {
            artifact::check_digest(digest).map_err(|e| RegistryError::Usage(e.0))?;
            let last = &path[path.rfind('/').map_or(0, |i| i + 1)..];
            if last.contains(':') {
                return Err(bad("a tag and a digest: give one"));
            }
            (path, Version::Digest(digest.to_string()))
        } else {
            let last = rest.rfind('/').map_or(0, |i| i + 1);
            let (path, tag) = rest[last..]
                .rsplit_once(':')
                .map(|(name, tag)| (&rest[..last + name.len()], tag))
                .ok_or_else(|| bad("no :TAG"))?;
            check_tag(tag).map_err(RegistryError::Usage)?;
            (path, Version::Tag(tag.to_string()))
        };
        let named = path
            .rsplit('/')
            .next()
            .is_some_and(|n| !n.is_empty() && n != "." && n != "..");
        if !named || path.split('/').any(|s| s == "..") {
            return Err(bad("no name before the tag"));
        }
        let location = match scheme {
            "oci" => {
                if !path.contains('/') {
                    return Err(bad("no repository after the host"));
                }
                Location::Oci(canonical_image(path))
            }
            "file" => {
                if !path.starts_with('/') {
                    return Err(bad("file:// takes an absolute path"));
                }
                Location::File(PathBuf::from(path))
            }
            "s3" => {
                let (bucket, prefix) = path.split_once('/').ok_or_else(|| bad("no key"))?;
                if bucket.is_empty() || prefix.is_empty() {
                    return Err(bad("no bucket or key"));
                }
                Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_end_matches('/').to_string(),
                }
            }
            _ => return Err(bad("unknown scheme")),
        };
        Ok(Self { location, version })
    }

    /// The same location at a manifest digest: what a lock fetches, never the tag.
    pub fn pinned(&self, manifest_digest: &str) -> Self {
        Self {
            location: self.location.clone(),
            version: Version::Digest(manifest_digest.to_string()),
        }
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        match &self.version {
            Version::Tag(t) => Some(t),
            Version::Digest(_) => None,
        }
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Oci(image) => write!(f, "oci://{image}")?,
            Location::File(dir) => write!(f, "file://{}", dir.display())?,
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}")?,
        }
        match &self.version {
            Version::Tag(t) => write!(f, ":{t}"),
            Version::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// What a push made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    pub size: u64,
}

/// What a pull brought, checked against its manifest.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    pub size: u64,
    /// The component.
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
    pub config: serde_json::Value,
}

fn refused(reference: &PluginRef) -> impl Fn(ArtifactError) -> RegistryError + '_ {
    move |why| RegistryError::Refused {
        reference: reference.to_string(),
        why,
    }
}

/// Pushes a component as a plugin artifact. Errs on bytes that are not a kiln plugin.
pub async fn push(
    component: &[u8],
    reference: &PluginRef,
    access: &Access,
) -> Result<Pushed, RegistryError> {
    let artifact = Artifact::build(component).map_err(|why| RegistryError::Refused {
        reference: reference.to_string(),
        why,
    })?;
    if reference.tag().is_none() {
        return Err(RegistryError::Usage(format!(
            "{reference}: push to a tag (…:1.2.0); a digest names what a push made"
        )));
    }
    match &reference.location {
        Location::Oci(image) => push_oci(&artifact, component, image, reference, access).await?,
        Location::File(dir) => {
            push_layout(&Layout::Dir(dir.clone()), &artifact, component, reference).await?
        }
        Location::S3 { bucket, prefix } => {
            let layout = Layout::s3(bucket, prefix, access)?;
            push_layout(&layout, &artifact, component, reference).await?
        }
    }
    Ok(Pushed {
        reference: reference.to_string(),
        manifest_digest: artifact.manifest_digest,
        layer_digest: artifact.layer_descriptor.digest,
        size: artifact.layer_descriptor.size,
    })
}

/// Pulls a plugin artifact: the manifest (checked against the reference's digest when it has one),
/// the config and the layer, each checked against the manifest before anything reads it.
pub async fn pull(reference: &PluginRef, access: &Access) -> Result<Pulled, RegistryError> {
    let refuse = refused(reference);
    let (manifest_bytes, manifest, config, bytes) = match &reference.location {
        Location::Oci(image) => pull_oci(image, reference, access).await?,
        Location::File(dir) => pull_layout(&Layout::Dir(dir.clone()), reference).await?,
        Location::S3 { bucket, prefix } => {
            pull_layout(&Layout::s3(bucket, prefix, access)?, reference).await?
        }
    };
    let manifest_digest = artifact::sha256(&manifest_bytes);
    if let Version::Digest(want) = &reference.version
        && *want != manifest_digest
    {
        return Err(refuse(ArtifactError(format!(
            "the manifest sent has digest {manifest_digest}, not {want}"
        ))));
    }
    artifact::check_layer(&bytes, &manifest).map_err(&refuse)?;
    let config = artifact::check_config(&config, &manifest).map_err(&refuse)?;
    Ok(Pulled {
        reference: reference.to_string(),
        manifest_digest,
        layer_digest: manifest.layer.digest.clone(),
        size: manifest.layer.size,
        bytes,
        annotations: manifest.annotations,
        config,
    })
}

/// The OCI reference (`host/repo:tag` or `host/repo@sha256:…`) oci-client parses.
fn image_of(image: &str, reference: &PluginRef) -> String {
    match &reference.version {
        Version::Tag(t) => format!("{image}:{t}"),
        Version::Digest(d) => format!("{image}@{d}"),
    }
}

async fn push_oci(
    artifact: &Artifact,
    component: &[u8],
    image: &str,
    reference: &PluginRef,
    access: &Access,
) -> Result<(), RegistryError> {
    let text = reference.to_string();
    let registry = store::oci::connect(&image_of(image, reference), &text, access)?;
    registry.auth(RegistryOperation::Push, &text).await?;
    let blobs = [
        (&artifact.layer_descriptor.digest, component),
        (
            &artifact.config_descriptor.digest,
            artifact.config.as_slice(),
        ),
    ];
    for (digest, bytes) in blobs {
        if registry.blob_exists(digest, &text).await? {
            continue;
        }
        store::with_retries("uploading a blob", || async {
            registry
                .client
                .push_blob(&registry.reference, bytes.to_vec(), digest)
                .await
                .map_err(|e| registry.error(e, &text))
        })
        .await?;
    }
    store::with_retries("tagging", || async {
        let content_type = artifact::MANIFEST_MEDIA_TYPE
            .parse()
            .map_err(|_| (StoreError::Usage("bad media type".into()), false))?;
        registry
            .client
            .push_manifest_raw(&registry.reference, artifact.manifest.clone(), content_type)
            .await
            .map_err(|e| registry.error(e, &text))
    })
    .await?;
    Ok(())
}

/// A blob from the registry, read no further than its descriptor's size.
pub(super) async fn oci_blob(
    registry: &store::oci::Registry,
    descriptor: &Descriptor,
    text: &str,
) -> Result<Vec<u8>, RegistryError> {
    let oci = OciDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: i64::try_from(descriptor.size).unwrap_or(i64::MAX),
        ..Default::default()
    };
    let bytes = store::with_retries("downloading a blob", || async {
        let sized = registry
            .client
            .pull_blob_stream(&registry.reference, &oci)
            .await
            .map_err(|e| registry.error(e, text))?;
        let mut stream = sized.stream;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                // oci-client checks a whole blob's digest at its end: a lying blob is refused.
                if let Some(d) = e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
                    return (
                        StoreError::Mismatch {
                            reference: text.to_string(),
                            what: format!("the blob {}: {d}", descriptor.digest),
                        },
                        false,
                    );
                }
                (
                    StoreError::Remote {
                        target: text.to_string(),
                        detail: format!(
                            "the blob {} could not be read: {}",
                            descriptor.digest,
                            store::chain(&e)
                        ),
                    },
                    false,
                )
            })?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > descriptor.size {
                return Err((
                    StoreError::Remote {
                        target: text.to_string(),
                        detail: format!(
                            "the registry sent more than the {} bytes its manifest gives {}",
                            descriptor.size, descriptor.digest
                        ),
                    },
                    false,
                ));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(bytes)
}

type Fetched = (Vec<u8>, Manifest, Vec<u8>, Vec<u8>);

async fn pull_oci(
    image: &str,
    reference: &PluginRef,
    access: &Access,
) -> Result<Fetched, RegistryError> {
    let text = reference.to_string();
    let registry = store::oci::connect(&image_of(image, reference), &text, access)?;
    registry.auth(RegistryOperation::Pull, &text).await?;
    let target: &Reference = &registry.reference;
    let (body, _) = store::with_retries("fetching the manifest", || async {
        registry
            .client
            .pull_manifest_raw(target, &registry.auth, &[artifact::MANIFEST_MEDIA_TYPE])
            .await
            .map_err(|e| registry.error(e, &text))
    })
    .await?;
    let body = body.to_vec();
    let manifest = Manifest::parse(&body).map_err(refused(reference))?;
    let config = oci_blob(&registry, &manifest.config, &text).await?;
    let layer = oci_blob(&registry, &manifest.layer, &text).await?;
    Ok((body, manifest, config, layer))
}

/// An OCI image layout: a folder, or a key prefix in a bucket.
enum Layout {
    Dir(PathBuf),
    S3 {
        store: Arc<AmazonS3>,
        bucket: String,
        prefix: String,
    },
}

impl Layout {
    fn s3(bucket: &str, prefix: &str, access: &Access) -> Result<Self, RegistryError> {
        Ok(Layout::S3 {
            store: store::s3::client(bucket, access)?,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// An object of the layout, `None` when it is not there; more than `limit` bytes is refused.
    async fn get(
        &self,
        key: &str,
        limit: u64,
        reference: &PluginRef,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let too_big = |size: u64| RegistryError::Refused {
            reference: reference.to_string(),
            why: ArtifactError(format!(
                "its {key} is {size} bytes; kiln reads at most {limit}"
            )),
        };
        match self {
            Layout::Dir(dir) => {
                // A regular file, read through one handle and never past the limit: a layout
                // written by someone else may hold a link to /dev/zero or a FIFO.
                use std::io::Read as _;
                let path = dir.join(key);
                let file = match open_nonblocking(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(store::io_err(&path)(e).into()),
                };
                let meta = file.metadata().map_err(store::io_err(&path))?;
                if !meta.is_file() {
                    return Err(RegistryError::Refused {
                        reference: reference.to_string(),
                        why: ArtifactError(format!("its {key} is not a regular file")),
                    });
                }
                if meta.len() > limit {
                    return Err(too_big(meta.len()));
                }
                let mut bytes = Vec::new();
                file.take(limit.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(store::io_err(&path))?;
                if bytes.len() as u64 > limit {
                    return Err(too_big(bytes.len() as u64));
                }
                Ok(Some(bytes))
            }
            Layout::S3 {
                store: s3,
                bucket,
                prefix,
            } => {
                let path = ObjectPath::parse(format!("{prefix}/{key}"))
                    .map_err(|e| RegistryError::Usage(format!("{reference}: {e}")))?;
                let result = match s3.get_opts(&path, GetOptions::default()).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => {
                        return Err(store::s3::error(e, bucket, &reference.to_string()).into());
                    }
                };
                if result.meta.size > limit {
                    return Err(too_big(result.meta.size));
                }
                let mut stream = result.into_stream();
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk =
                        chunk.map_err(|e| store::s3::error(e, bucket, &reference.to_string()))?;
                    out.extend_from_slice(&chunk);
                    if out.len() as u64 > limit {
                        return Err(too_big(out.len() as u64));
                    }
                }
                Ok(Some(out))
            }
        }
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        reference: &PluginRef,
    ) -> Result<(), RegistryError> {
        match self {
            Layout::Dir(dir) => {
                let path = dir.join(key);
                let parent = path.parent().unwrap_or(dir);
                std::fs::create_dir_all(parent).map_err(store::io_err(parent))?;
                let mut temp =
                    tempfile::NamedTempFile::new_in(parent).map_err(store::io_err(parent))?;
                std::io::Write::write_all(&mut temp, &bytes).map_err(store::io_err(&path))?;
                temp.persist(&path)
                    .map_err(|e| store::io_err(&path)(e.error))?;
                Ok(())
            }
            Layout::S3 {
                store: s3,
                bucket,
                prefix,
            } => {
                let path = ObjectPath::parse(format!("{prefix}/{key}"))
                    .map_err(|e| RegistryError::Usage(format!("{reference}: {e}")))?;
                s3.put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| store::s3::error(e, bucket, &reference.to_string()))?;
                Ok(())
            }
        }
    }
}

fn blob_key(digest: &str) -> String {
    format!(
        "blobs/sha256/{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

/// Reads `index.json` (an empty index when there is none), refusing one that is not an index.
async fn read_index(
    layout: &Layout,
    reference: &PluginRef,
) -> Result<serde_json::Value, RegistryError> {
    let Some(bytes) = layout
        .get("index.json", artifact::MANIFEST_LIMIT, reference)
        .await?
    else {
        return Ok(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [],
        }));
    };
    let index: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Refused {
            reference: reference.to_string(),
            why: ArtifactError(format!("its index.json is not JSON: {e}")),
        })?;
    if !index["manifests"].is_array() {
        return Err(RegistryError::Refused {
            reference: reference.to_string(),
            why: ArtifactError("its index.json has no manifests list".into()),
        });
    }
    Ok(index)
}

async fn push_layout(
    layout: &Layout,
    artifact: &Artifact,
    component: &[u8],
    reference: &PluginRef,
) -> Result<(), RegistryError> {
    let tag = reference.tag().unwrap_or_default();
    let mut index = read_index(layout, reference).await?;
    layout
        .put(
            &blob_key(&artifact.layer_descriptor.digest),
            component.to_vec(),
            reference,
        )
        .await?;
    layout
        .put(
            &blob_key(&artifact.config_descriptor.digest),
            artifact.config.clone(),
            reference,
        )
        .await?;
    layout
        .put(
            &blob_key(&artifact.manifest_digest),
            artifact.manifest.clone(),
            reference,
        )
        .await?;
    layout
        .put(
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            reference,
        )
        .await?;
    let entry = serde_json::json!({
        "mediaType": artifact::MANIFEST_MEDIA_TYPE,
        "digest": artifact.manifest_digest,
        "size": artifact.manifest.len(),
        "annotations": { REF_NAME: tag },
    });
    if let Some(list) = index["manifests"].as_array_mut() {
        // The tag moves: its old entry goes (the old blobs stay, a lock may pin them).
        list.retain(|m| m["annotations"][REF_NAME] != tag);
        list.push(entry);
    }
    let body =
        serde_json::to_vec_pretty(&index).map_err(|e| RegistryError::Usage(e.to_string()))?;
    layout.put("index.json", body, reference).await
}

async fn pull_layout(layout: &Layout, reference: &PluginRef) -> Result<Fetched, RegistryError> {
    let refuse = refused(reference);
    let digest = match &reference.version {
        Version::Digest(d) => d.clone(),
        Version::Tag(tag) => {
            let index = read_index(layout, reference).await?;
            let found = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .filter(|m| m["annotations"][REF_NAME] == tag.as_str())
                .find_map(|m| m["digest"].as_str())
                .map(str::to_string);
            found.ok_or_else(|| StoreError::NotFound(reference.to_string()))?
        }
    };
    artifact::check_digest(&digest).map_err(&refuse)?;
    let get = |digest: String, limit: u64| async move {
        layout
            .get(&blob_key(&digest), limit, reference)
            .await?
            .ok_or_else(|| {
                RegistryError::from(StoreError::NotFound(format!("{reference} (blob {digest})")))
            })
    };
    let body = get(digest.clone(), artifact::MANIFEST_LIMIT).await?;
    if artifact::sha256(&body) != digest {
        return Err(refuse(ArtifactError(format!(
            "its manifest blob {digest} holds other bytes ({})",
            artifact::sha256(&body)
        ))));
    }
    let manifest = Manifest::parse(&body).map_err(&refuse)?;
    let config = get(manifest.config.digest.clone(), artifact::CONFIG_LIMIT).await?;
    let layer = get(manifest.layer.digest.clone(), artifact::LAYER_LIMIT).await?;
    Ok((body, manifest, config, layer))
}

/// Where a file:// layout keeps a blob (for tests and `kiln plugin` messages).
pub fn layout_blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join(blob_key(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_010: &[u8] = include_bytes!("../../../tests/fixtures/plugins/probe-0.1.0.wasm");

    #[test]
    fn references_parse_with_semver_tags_or_digests() {
        let r = PluginRef::parse("oci://localhost:5000/acme/checksum:1.2.0").unwrap();
        assert_eq!(
            r.location,
            Location::Oci("localhost:5000/acme/checksum".into())
        );
        assert_eq!(r.version, Version::Tag("1.2.0".into()));
        assert_eq!(r.to_string(), "oci://localhost:5000/acme/checksum:1.2.0");
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = r.pinned(&d);
        assert_eq!(
            pinned.to_string(),
            format!("oci://localhost:5000/acme/checksum@{d}")
        );
        assert_eq!(PluginRef::parse(&pinned.to_string()).unwrap(), pinned);
        let f = PluginRef::parse("file:///srv/plugins/checksum:1.2.0-rc.1").unwrap();
        assert_eq!(f.location, Location::File("/srv/plugins/checksum".into()));
        let s = PluginRef::parse("s3://bucket/plugins/checksum:0.1.0").unwrap();
        assert_eq!(
            s.location,
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "plugins/checksum".into()
            }
        );
    }

    #[test]
    fn moving_or_malformed_tags_and_references_are_refused() {
        for bad in [
            "oci://localhost:5000/acme/checksum:latest",
            "oci://localhost:5000/acme/checksum:v1",
            "oci://localhost:5000/acme/checksum:1",
            "oci://localhost:5000/acme/checksum:1.2.0+build",
        ] {
            let e = PluginRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a semver version"), "{bad}: {e}");
        }
        for bad in [
            "oci://localhost:5000/acme/checksum",
            "oci://host:1.2.0",
            "http://x/y:1.0.0",
            "file://relative/x:1.0.0",
            "file:///srv/../etc/x:1.0.0",
            "s3://bucket:1.0.0",
            "oci://h/r@sha256:short",
            "oci://h/r: 1.0.0",
            "checksum",
        ] {
            assert!(PluginRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_file_layout_round_trips_and_a_retag_keeps_the_old_digest_reachable() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("file://{}/probe:1.0.0", dir.path().display());
        let r = PluginRef::parse(&text).unwrap();
        let pushed = push(PROBE_010, &r, &Access::default()).await.unwrap();
        let root = dir.path().join("probe");
        assert!(root.join("oci-layout").is_file());
        let pulled = pull(&r, &Access::default()).await.unwrap();
        assert_eq!(pulled.bytes, PROBE_010);
        assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
        assert_eq!(pulled.layer_digest, artifact::sha256(PROBE_010));
        // A tampered layer blob is refused.
        let blob = layout_blob(&root, &pulled.layer_digest);
        let mut bytes = PROBE_010.to_vec();
        bytes[100] ^= 1;
        std::fs::write(&blob, &bytes).unwrap();
        let e = pull(&r, &Access::default()).await.unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains("digest"), "{e}");
        // By digest, the manifest itself is checked.
        let wrong = r.pinned(&format!("sha256:{}", "0".repeat(64)));
        assert!(pull(&wrong, &Access::default()).await.is_err());
    }

    /// A layout written by someone else: its blobs may be links to endless devices or FIFOs.
    #[tokio::test]
    async fn a_layout_blob_that_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = PluginRef::parse(&format!("file://{}/probe:1.0.0", dir.path().display())).unwrap();
        let pushed = push(PROBE_010, &r, &Access::default()).await.unwrap();
        let root = dir.path().join("probe");
        let blob = layout_blob(&root, &pushed.layer_digest);
        std::fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
        let e = pull(&r, &Access::default()).await.unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_file(&blob).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&blob)
            .status()
            .unwrap();
        assert!(made.success());
        let e = pull(&r, &Access::default()).await.unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[tokio::test]
    async fn what_is_not_a_plugin_is_not_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let r = PluginRef::parse(&format!("file://{}/x:1.0.0", dir.path().display())).unwrap();
        let e = push(b"not wasm", &r, &Access::default()).await.unwrap_err();
        assert!(matches!(e, RegistryError::Refused { .. }), "{e}");
        assert!(!dir.path().join("x").exists());
    }
}
