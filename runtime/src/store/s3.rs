//! `s3://bucket/key`: the revision as one object (multipart above 8 MiB) carrying its digests as
//! object metadata (`x-amz-meta-kiln-blake3`, `-kiln-sha256`), and its manifest beside it as
//! `<key>.manifest.json`, written last.
//!
//! Configuration is the AWS SDKs': `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) for S3-compatible
//! servers. An explicit `http://` endpoint is used as the AWS CLI uses it, with one warning per
//! process that the traffic is not encrypted, unless object_store's `AWS_ALLOW_HTTP=true` (or its
//! alias `--allow-http`) says plain HTTP is meant.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sink::{Computed, Sink};
use super::{Access, Expected, Listed, Outgoing, Pushed, StoreError};

/// Objects larger than this go up in parts of this size.
pub(crate) const PART: usize = 8 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

const META_BLAKE3: &str = "kiln-blake3";
const META_SHA256: &str = "kiln-sha256";
const META_FORMAT: &str = "kiln-format";

/// An S3 client for `bucket`, configured from `AWS_*` variables and the command line.
pub(crate) fn client(bucket: &str, access: &Access) -> Result<Arc<AmazonS3>, StoreError> {
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let allowed = access.allow_http
        || std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let http = endpoint.as_deref().is_some_and(|url| {
        url.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
    });
    if let Some(url) = &endpoint {
        if http && !allowed {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: the S3 endpoint {url} is plain HTTP: traffic to it is not \
                     encrypted (AWS_ALLOW_HTTP=true says that is meant)"
                );
            });
        }
        builder = builder.with_endpoint(url);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    let retries = super::retry_count().saturating_sub(1) as usize;
    builder = builder
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: retries,
            retry_timeout: Duration::from_secs(120),
        })
        .with_client_options(
            // allow_http lives in the client options (where `from_env` put AWS_ALLOW_HTTP): set
            // here, or these would reset it. Only an explicit endpoint can be plain HTTP.
            ClientOptions::new()
                .with_allow_http(http)
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(600)),
        );
    builder.build().map(Arc::new).map_err(|e| {
        StoreError::Usage(format!(
            "cannot set up S3 for bucket {bucket}: {}",
            super::chain(&e)
        ))
    })
}

/// Where kiln looked for AWS credentials, for a "denied" error.
fn credentials_looked() -> String {
    let set = |k: &str| {
        if std::env::var(k).is_ok_and(|v| !v.is_empty()) {
            format!("{k} (set)")
        } else {
            format!("{k} (not set)")
        }
    };
    format!(
        "{}, {}, {}, then the instance metadata service",
        set("AWS_ACCESS_KEY_ID"),
        set("AWS_SECRET_ACCESS_KEY"),
        set("AWS_SESSION_TOKEN")
    )
}

/// Maps an object_store error to what scripts tell apart.
pub(crate) fn error(e: object_store::Error, bucket: &str, reference: &str) -> StoreError {
    let target = format!("s3://{bucket}");
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(reference.to_string()),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => StoreError::Denied {
            target: format!("bucket {target}"),
            detail: super::chain(&e),
            looked: credentials_looked(),
        },
        other => {
            let detail = super::chain(&other);
            if super::is_connection_error(&other) || detail.contains("Server returned error") {
                StoreError::Unreachable { target, detail }
            } else {
                StoreError::Remote { target, detail }
            }
        }
    }
}

fn object_path(key: &str, reference: &str) -> Result<ObjectPath, StoreError> {
    if key.is_empty() || key.ends_with('/') {
        return Err(StoreError::Usage(format!(
            "{reference} names no object: add the key, e.g. s3://bucket/app/app.zip"
        )));
    }
    ObjectPath::parse(key).map_err(|e| StoreError::Usage(format!("{reference}: {e}")))
}

/// The metadata a HEAD returns for an object, or None when it does not exist.
async fn head(
    store: &AmazonS3,
    path: &ObjectPath,
) -> Result<Option<(u64, Attributes)>, object_store::Error> {
    let options = GetOptions {
        head: true,
        ..Default::default()
    };
    match store.get_opts(path, options).await {
        Ok(result) => Ok(Some((result.meta.size, result.attributes))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn metadata<'a>(attributes: &'a Attributes, key: &'static str) -> Option<&'a str> {
    attributes
        .get(&Attribute::Metadata(key.into()))
        .map(|v| v.as_ref())
}

/// Uploads a file to `path`: one PUT below [`PART`], else a multipart upload of [`PART`]-sized
/// parts, a few in flight. The file is streamed, never read whole.
pub(crate) async fn upload_file(
    store: &AmazonS3,
    path: &ObjectPath,
    file: &Path,
    attributes: Attributes,
    mode: PutMode,
) -> Result<(), object_store::Error> {
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| generic(file, e))?
        .len();
    if size < PART as u64 {
        let bytes = tokio::fs::read(file).await.map_err(|e| generic(file, e))?;
        let options = PutOptions {
            mode,
            attributes,
            ..Default::default()
        };
        store
            .put_opts(path, PutPayload::from(bytes), options)
            .await?;
        return Ok(());
    }
    let options = PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    let upload = store.put_multipart_opts(path, options).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| generic(file, e))?;
    let mut buf = vec![0u8; PART];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = match source.read(&mut buf[filled..]).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(generic(file, e));
                }
            };
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.write(&buf[..filled]);
        if filled < buf.len() {
            break;
        }
    }
    writer.finish().await?;
    Ok(())
}

fn generic(path: &Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "local file",
        source: format!("{}: {e}", path.display()).into(),
    }
}

/// Streams an object into `into`; returns its attributes.
pub(crate) async fn download(
    store: &AmazonS3,
    path: &ObjectPath,
    into: &Path,
) -> Result<(u64, Attributes), object_store::Error> {
    let result = store.get_opts(path, GetOptions::default()).await?;
    let size = result.meta.size;
    let attributes = result.attributes.clone();
    let mut out = tokio::fs::File::create(into)
        .await
        .map_err(|e| generic(into, e))?;
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).await.map_err(|e| generic(into, e))?;
    }
    out.flush().await.map_err(|e| generic(into, e))?;
    Ok((size, attributes))
}

pub(super) async fn push(
    outgoing: &Outgoing,
    bucket: &str,
    key: &str,
    reference: &str,
    access: &Access,
    force: bool,
) -> Result<Pushed, StoreError> {
    let store = client(bucket, access)?;
    let path = object_path(key, reference)?;
    let manifest_path = ObjectPath::from(format!("{key}.manifest.json"));
    let err = |e| error(e, bucket, reference);
    let existing = head(&store, &path).await.map_err(err)?;
    let same = existing.as_ref().is_some_and(|(size, attrs)| {
        *size == outgoing.size && metadata(attrs, META_BLAKE3) == Some(outgoing.blake3.as_str())
    });
    if !same
        && !force
        && let Some((_, attrs)) = &existing
    {
        return Err(StoreError::Exists {
            reference: reference.to_string(),
            existing: match metadata(attrs, META_BLAKE3) {
                Some(b) => format!("blake3:{b}"),
                None => "an object kiln did not push".to_string(),
            },
        });
    }
    let manifest_there = head(&store, &manifest_path).await.map_err(err)?.is_some();
    let mut uploaded = 0;
    if !same {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(META_BLAKE3.into()),
            outgoing.blake3.clone().into(),
        );
        attributes.insert(
            Attribute::Metadata(META_SHA256.into()),
            outgoing.sha256.clone().into(),
        );
        attributes.insert(
            Attribute::Metadata(META_FORMAT.into()),
            outgoing.format().to_string().into(),
        );
        let content_type = if outgoing.format() == "tgz" {
            "application/gzip"
        } else {
            "application/zip"
        };
        attributes.insert(Attribute::ContentType, content_type.into());
        upload_file(
            &store,
            &path,
            &outgoing.path,
            attributes,
            PutMode::Overwrite,
        )
        .await
        .map_err(err)?;
        uploaded = outgoing.size;
    }
    if !same || !manifest_there {
        let body = serde_json::to_vec_pretty(&outgoing.manifest).unwrap_or_default();
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/json".into());
        let options = PutOptions {
            attributes,
            ..Default::default()
        };
        store
            .put_opts(&manifest_path, PutPayload::from(body), options)
            .await
            .map_err(err)?;
    }
    Ok(outgoing.pushed(reference, uploaded, None))
}

pub(super) async fn fetch(
    bucket: &str,
    key: &str,
    reference: &str,
    into: &Path,
    access: &Access,
) -> Result<(Expected, Computed), StoreError> {
    let store = client(bucket, access)?;
    let path = object_path(key, reference)?;
    let err = |e| error(e, bucket, reference);
    let result = store
        .get_opts(&path, GetOptions::default())
        .await
        .map_err(err)?;
    // The object's own metadata is what the bytes are checked against.
    let expected = Expected {
        blake3: metadata(&result.attributes, META_BLAKE3).map(str::to_string),
        sha256: metadata(&result.attributes, META_SHA256).map(str::to_string),
        size: Some(result.meta.size),
        manifest: serde_json::Value::Null,
    };
    let mut sink = Sink::create(into, expected.blake3.is_none()).map_err(super::io_err(into))?;
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        if sink.write(chunk.map_err(err)?).await.is_err() {
            break;
        }
    }
    let computed = sink.finish().await.map_err(super::io_err(into))?;
    let manifest = match store
        .get(&ObjectPath::from(format!("{key}.manifest.json")))
        .await
    {
        Ok(result) => {
            let bytes = result.bytes().await.map_err(err)?;
            serde_json::from_slice(&bytes).unwrap_or_default()
        }
        Err(object_store::Error::NotFound { .. }) => serde_json::Value::Null,
        Err(e) => return Err(err(e)),
    };
    Ok((
        Expected {
            manifest,
            ..expected
        },
        computed,
    ))
}

pub(super) async fn describe(
    bucket: &str,
    key: &str,
    reference: &str,
    access: &Access,
) -> Result<Listed, StoreError> {
    let store = client(bucket, access)?;
    let path = object_path(key, reference)?;
    match head(&store, &path)
        .await
        .map_err(|e| error(e, bucket, reference))?
    {
        Some((size, attributes)) => Ok(Listed {
            reference: reference.to_string(),
            size: Some(size),
            blake3: metadata(&attributes, META_BLAKE3).map(str::to_string),
            sha256: metadata(&attributes, META_SHA256).map(str::to_string),
            manifest: serde_json::Value::Null,
        }),
        None => Err(StoreError::NotFound(reference.to_string())),
    }
}

pub(super) async fn list(
    bucket: &str,
    prefix: &str,
    reference: &str,
    access: &Access,
) -> Result<Vec<Listed>, StoreError> {
    let store = client(bucket, access)?;
    let err = |e| error(e, bucket, reference);
    let prefix_path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
    let mut objects = Vec::new();
    let mut listing = store.list(prefix_path.as_ref());
    while let Some(meta) = listing.next().await {
        objects.push(meta.map_err(err)?);
    }
    objects.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    let names: std::collections::HashSet<String> =
        objects.iter().map(|m| m.location.to_string()).collect();
    let mut out = Vec::new();
    for meta in &objects {
        let name = meta.location.to_string();
        let Some(revision) = name.strip_suffix(".manifest.json") else {
            continue;
        };
        if !names.contains(revision) {
            continue;
        }
        let manifest: serde_json::Value = match store.get(&meta.location).await {
            Ok(result) => {
                serde_json::from_slice(&result.bytes().await.map_err(err)?).unwrap_or_default()
            }
            Err(e) => return Err(err(e)),
        };
        out.push(Listed {
            reference: format!("s3://{bucket}/{revision}"),
            size: manifest["size"].as_u64(),
            blake3: manifest["blake3"].as_str().map(str::to_string),
            sha256: manifest["sha256"].as_str().map(str::to_string),
            manifest,
        });
    }
    Ok(out)
}
