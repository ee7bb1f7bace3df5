//! `oci://host[:port]/repository:tag` (or `@sha256:…`): a revision as an OCI 1.1 artifact.
//!
//! The manifest has kiln's `artifactType`, the revision manifest (JSON) as its config blob, the
//! bundle as its one layer (`application/zip`, or the OCI tar+gzip layer type for `tgz`) with an
//! `org.opencontainers.image.title` annotation, and the revision's digests and build in its own
//! annotations. Blobs the registry has are not sent again; the manifest goes last, so a tag never
//! points at missing blobs. Registries only take `sha256:` digests: BLAKE3 rides in an annotation.

use std::collections::BTreeMap;
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::BlobResponse;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::DigestError;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::Digest as _;

use super::sink::{Computed, Sink};
use super::{Access, Expected, Listed, Outgoing, Pushed, StoreError, credentials};

/// The artifact type of a kiln revision.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.revision.v1+json";
/// The media type of the config blob: the revision manifest.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.revision.manifest.v1+json";
const ZIP_MEDIA_TYPE: &str = "application/zip";
const TGZ_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TITLE: &str = "org.opencontainers.image.title";

/// A registry connection: the client, the parsed reference, its credentials.
pub(crate) struct Registry {
    pub(crate) client: Client,
    pub(crate) reference: Reference,
    pub(crate) auth: RegistryAuth,
    looked: String,
    pub(crate) name: String,
}

/// Plain HTTP only for this machine, or with `--insecure`.
fn is_local(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

pub(crate) fn connect(image: &str, text: &str, access: &Access) -> Result<Registry, StoreError> {
    let reference: Reference = image
        .parse()
        .map_err(|e| StoreError::Usage(format!("`{text}` is not a registry reference: {e}")))?;
    let name = reference.resolve_registry().to_string();
    let protocol = if access.insecure || is_local(&name) {
        ClientProtocol::HttpsExcept(vec![name.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        use_monolithic_push: true,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        // A registry that stops sending mid-answer (or sends a byte a minute) ends the request
        // instead of holding kiln forever.
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    });
    let found = credentials::for_registry(&name, access);
    let auth = match found.basic {
        Some((user, pass)) => RegistryAuth::Basic(user, pass),
        None => RegistryAuth::Anonymous,
    };
    Ok(Registry {
        client,
        reference,
        auth,
        looked: found.looked,
        name,
    })
}

impl Registry {
    /// An oci-client error, as kiln reports it, and whether trying again may help.
    pub(crate) fn error(&self, e: OciDistributionError, reference: &str) -> (StoreError, bool) {
        let target = format!("registry {}", self.name);
        let denied = |detail: String| StoreError::Denied {
            target: target.clone(),
            detail,
            looked: self.looked.clone(),
        };
        let detail = super::chain(&e);
        match &e {
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => (denied(detail), false),
            OciDistributionError::ImageManifestNotFoundError(_) => {
                (StoreError::NotFound(reference.to_string()), false)
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    (denied(detail), false)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    (StoreError::NotFound(reference.to_string()), false)
                } else {
                    (StoreError::Remote { target, detail }, false)
                }
            }
            OciDistributionError::ServerError { code, .. } => match code {
                401 | 403 => (denied(detail), false),
                404 => (StoreError::NotFound(reference.to_string()), false),
                429 | 500.. => (StoreError::Unreachable { target, detail }, true),
                _ => (StoreError::Remote { target, detail }, false),
            },
            OciDistributionError::RequestError(r) if r.status().is_some() => {
                match r.status().map(|s| s.as_u16()).unwrap_or(0) {
                    401 | 403 => (denied(detail), false),
                    404 => (StoreError::NotFound(reference.to_string()), false),
                    429 | 500.. => (StoreError::Unreachable { target, detail }, true),
                    _ => (StoreError::Remote { target, detail }, false),
                }
            }
            _ if super::is_connection_error(&e) => {
                (StoreError::Unreachable { target, detail }, true)
            }
            _ => (StoreError::Remote { target, detail }, false),
        }
    }

    pub(crate) async fn auth(
        &self,
        operation: RegistryOperation,
        reference: &str,
    ) -> Result<(), StoreError> {
        // With basic auth, oci-client answers 401 to blob_exists until auth() has run.
        super::with_retries(&format!("signing in to {}", self.name), || async {
            self.client
                .auth(&self.reference, &self.auth, operation)
                .await
                .map(|_| ())
                .map_err(|e| self.error(e, reference))
        })
        .await
    }

    pub(crate) async fn blob_exists(
        &self,
        digest: &str,
        reference: &str,
    ) -> Result<bool, StoreError> {
        super::with_retries("checking a blob", || async {
            self.client
                .blob_exists(&self.reference, digest)
                .await
                .map_err(|e| self.error(e, reference))
        })
        .await
    }

    /// The manifest at the reference, its digest, and the config blob (the revision manifest).
    async fn manifest(
        &self,
        reference: &Reference,
        text: &str,
    ) -> Result<(OciImageManifest, String), StoreError> {
        let (bytes, _) = super::with_retries("fetching the manifest", || async {
            self.client
                .pull_manifest_raw(reference, &self.auth, &[OCI_IMAGE_MEDIA_TYPE])
                .await
                .map_err(|e| self.error(e, text))
        })
        .await?;
        let actual = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
        if let Some(want) = reference.digest()
            && want != actual
        {
            return Err(StoreError::Mismatch {
                reference: text.to_string(),
                what: format!("the registry sent a manifest whose digest is {actual}"),
            });
        }
        let manifest: OciImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Remote {
                target: text.to_string(),
                detail: format!("not an OCI image manifest: {e}"),
            })?;
        if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            return Err(StoreError::Usage(format!(
                "{text} is not a kiln revision (its artifactType is {}, expected {ARTIFACT_TYPE})",
                manifest.artifact_type.as_deref().unwrap_or("unset")
            )));
        }
        Ok((manifest, actual))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest annotations: what describes the revision, readable without pulling anything.
fn annotations(outgoing: &Outgoing) -> BTreeMap<String, String> {
    let m = &outgoing.manifest;
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    put(
        "org.opencontainers.image.created",
        m["created"].as_str().map(str::to_string),
    );
    put(
        "org.opencontainers.image.revision",
        m["build"]["source_version"].as_str().map(str::to_string),
    );
    put("dev.kiln.revision.blake3", Some(outgoing.blake3.clone()));
    put("dev.kiln.revision.format", Some(outgoing.format().into()));
    put("dev.kiln.revision.size", Some(outgoing.size.to_string()));
    put(
        "dev.kiln.revision.files",
        m["files"].as_u64().map(|n| n.to_string()),
    );
    put(
        "dev.kiln.build.id",
        m["build"]["build_id"].as_str().map(str::to_string),
    );
    put(
        "dev.kiln.build.number",
        m["build"]["build_number"].as_u64().map(|n| n.to_string()),
    );
    out
}

pub(super) async fn push(
    outgoing: &Outgoing,
    image: &str,
    text: &str,
    access: &Access,
) -> Result<Pushed, StoreError> {
    let registry = connect(image, text, access)?;
    if registry.reference.digest().is_some() {
        return Err(StoreError::Usage(format!(
            "{text}: push to a tag (oci://host/repo:tag); a digest names what a push made"
        )));
    }
    registry.auth(RegistryOperation::Push, text).await?;

    let config = serde_json::to_vec(&outgoing.manifest).unwrap_or_default();
    let config_digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&config)));
    let title = outgoing
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "revision".into());
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: OciDescriptor {
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: if outgoing.format() == "tgz" {
                TGZ_MEDIA_TYPE
            } else {
                ZIP_MEDIA_TYPE
            }
            .to_string(),
            digest: outgoing.sha256.clone(),
            size: outgoing.size as i64,
            annotations: Some(BTreeMap::from([(TITLE.to_string(), title)])),
            ..Default::default()
        }],
        annotations: Some(annotations(outgoing)),
        subject: None,
    };
    let body = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&body)));

    let mut uploaded = 0;
    if !registry.blob_exists(&outgoing.sha256, text).await? {
        super::with_retries("uploading the revision", || async {
            let file = tokio::fs::File::open(&outgoing.path)
                .await
                .map_err(|e| (super::io_err(&outgoing.path)(e), false))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
                .map_err(OciDistributionError::IoError);
            registry
                .client
                .push_blob_stream(
                    &registry.reference,
                    stream,
                    &outgoing.sha256,
                    Some(outgoing.size),
                )
                .await
                .map_err(|e| registry.error(e, text))
        })
        .await?;
        uploaded += outgoing.size;
    }
    if !registry.blob_exists(&config_digest, text).await? {
        super::with_retries("uploading the revision manifest", || async {
            registry
                .client
                .push_blob(&registry.reference, config.clone(), &config_digest)
                .await
                .map_err(|e| registry.error(e, text))
        })
        .await?;
        uploaded += config.len() as u64;
    }
    // The tag moves last, once every blob it names is in the registry.
    let current = registry
        .client
        .fetch_manifest_digest(&registry.reference, &registry.auth)
        .await
        .ok();
    if current.as_deref() != Some(manifest_digest.as_str()) {
        super::with_retries("tagging", || async {
            registry
                .client
                .push_manifest_raw(
                    &registry.reference,
                    body.clone(),
                    OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value"),
                )
                .await
                .map_err(|e| registry.error(e, text))
        })
        .await?;
    }
    Ok(outgoing.pushed(text, uploaded, Some(manifest_digest)))
}

pub(super) async fn fetch(
    image: &str,
    text: &str,
    into: &Path,
    access: &Access,
) -> Result<(Expected, Computed), StoreError> {
    let registry = connect(image, text, access)?;
    registry.auth(RegistryOperation::Pull, text).await?;
    let (manifest, _) = registry.manifest(&registry.reference, text).await?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(StoreError::Remote {
            target: text.to_string(),
            detail: format!(
                "a kiln revision has one layer, this one has {}",
                manifest.layers.len()
            ),
        });
    };
    let annotations = manifest.annotations.clone().unwrap_or_default();
    let blake3 = annotations.get("dev.kiln.revision.blake3").cloned();
    let size = u64::try_from(layer.size).unwrap_or(0);
    // Streamed to disk, hashed on another thread as it arrives. Asked as a range, the registry
    // answers 206 and oci-client leaves the checking to kiln (BLAKE3 when the annotation gives it,
    // else SHA-256), instead of hashing on the receiving thread; a 200 is checked by oci-client too.
    let computed = super::with_retries("downloading the revision", || async {
        let response = registry
            .client
            .pull_blob_stream_partial(&registry.reference, layer, 0, Some(size.max(1)))
            .await
            .map_err(|e| registry.error(e, text))?;
        let mut stream = match response {
            BlobResponse::Full(s) | BlobResponse::Partial(s) => s.stream,
        };
        let mut sink =
            Sink::create(into, blake3.is_none()).map_err(|e| (super::io_err(into)(e), false))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                let transient = super::is_connection_error(&e);
                let error = match e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
                    Some(d) => StoreError::Mismatch {
                        reference: text.to_string(),
                        what: d.to_string(),
                    },
                    None => StoreError::Unreachable {
                        target: format!("registry {}", registry.name),
                        detail: super::chain(&e),
                    },
                };
                (error, transient)
            })?;
            if sink.write(chunk).await.is_err() {
                break;
            }
        }
        sink.finish()
            .await
            .map_err(|e| (super::io_err(into)(e), false))
    })
    .await?;
    let config = super::with_retries("downloading the revision manifest", || async {
        let mut config = Vec::new();
        registry
            .client
            .pull_blob(&registry.reference, &manifest.config, &mut config)
            .await
            .map_err(|e| registry.error(e, text))?;
        Ok(config)
    })
    .await?;
    let expected = Expected {
        blake3,
        sha256: Some(layer.digest.clone()),
        size: Some(size),
        manifest: serde_json::from_slice(&config).unwrap_or_default(),
    };
    Ok((expected, computed))
}

pub(super) async fn describe(
    image: &str,
    text: &str,
    access: &Access,
) -> Result<Listed, StoreError> {
    let registry = connect(image, text, access)?;
    registry.auth(RegistryOperation::Pull, text).await?;
    let (manifest, digest) = registry.manifest(&registry.reference, text).await?;
    let annotations = manifest.annotations.clone().unwrap_or_default();
    let layer = manifest.layers.first();
    Ok(Listed {
        reference: text.to_string(),
        size: layer.and_then(|l| u64::try_from(l.size).ok()),
        blake3: annotations.get("dev.kiln.revision.blake3").cloned(),
        sha256: layer.map(|l| l.digest.clone()),
        manifest: serde_json::json!({ "digest": digest, "annotations": annotations }),
    })
}

pub(super) async fn list(
    image: &str,
    text: &str,
    access: &Access,
) -> Result<Vec<Listed>, StoreError> {
    let registry = connect(image, text, access)?;
    registry.auth(RegistryOperation::Pull, text).await?;
    let tags = super::with_retries("listing tags", || async {
        registry
            .client
            .list_tags(&registry.reference, &registry.auth, None, None)
            .await
            .map_err(|e| registry.error(e, text))
    })
    .await?;
    let mut out = Vec::new();
    let mut names = tags.tags;
    names.sort();
    for tag in names {
        let reference = Reference::with_tag(
            registry.reference.registry().to_string(),
            registry.reference.repository().to_string(),
            tag.clone(),
        );
        let shown = format!(
            "oci://{}/{}:{tag}",
            registry.reference.registry(),
            registry.reference.repository()
        );
        // Tags that are not kiln revisions are left out.
        let Ok((manifest, digest)) = registry.manifest(&reference, &shown).await else {
            continue;
        };
        let annotations = manifest.annotations.clone().unwrap_or_default();
        let layer = manifest.layers.first();
        out.push(Listed {
            reference: shown,
            size: layer.and_then(|l| u64::try_from(l.size).ok()),
            blake3: annotations.get("dev.kiln.revision.blake3").cloned(),
            sha256: layer.map(|l| l.digest.clone()),
            manifest: serde_json::json!({ "digest": digest, "annotations": annotations }),
        });
    }
    Ok(out)
}
