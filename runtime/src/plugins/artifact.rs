//! A plugin as the CNCF Wasm OCI artifact (tag-runtime.cncf.io, "Wasm OCI Artifact layout"): an OCI
//! image manifest whose config is `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`. Registries, `file://` and `s3://` image layouts all hold these
//! same bytes.
//!
//! Building is [`Artifact::build`]; reading what a registry sent is [`Manifest::parse`],
//! [`check_config`] and [`check_layer`], which treat every byte as hostile: bounded sizes, exact
//! media types, one layer, `sha256:` digests checked before anything else reads the bytes.
//! oci-client's `WASM_*` constants name an older, pre-CNCF layout and are not used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::inspect;

/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The Wasm config media type (CNCF Wasm OCI artifact).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The largest manifest kiln reads.
pub const MANIFEST_LIMIT: u64 = 1 << 20;
/// The largest config blob kiln reads.
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// The largest component kiln reads.
pub const LAYER_LIMIT: u64 = 256 << 20;

/// Metadata section (wasm-metadata's name) -> its OCI annotation.
const ANNOTATIONS: &[(&str, &str)] = &[
    ("description", "org.opencontainers.image.description"),
    ("licenses", "org.opencontainers.image.licenses"),
    ("source", "org.opencontainers.image.source"),
    ("version", "org.opencontainers.image.version"),
    ("homepage", "org.opencontainers.image.url"),
    ("authors", "org.opencontainers.image.authors"),
    ("revision", "org.opencontainers.image.revision"),
];
const CREATED: &str = "org.opencontainers.image.created";

/// Why an artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArtifactError(pub String);

fn refuse(message: impl Into<String>) -> ArtifactError {
    ArtifactError(message.into())
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks a digest's shape: `sha256:` and 64 lowercase hex digits (registries take no other).
pub fn check_digest(digest: &str) -> Result<(), ArtifactError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(refuse(format!(
            "`{}` is not a sha256 digest (sha256: and 64 lowercase hex digits)",
            digest.escape_debug()
        )))
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The manifest as written, in the order OCI's examples use.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: [&'a Descriptor; 1],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// A plugin's artifact, ready to push: three blobs and their digests.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest's bytes (what its digest is computed over).
    pub manifest: Vec<u8>,
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// The config blob.
    pub config: Vec<u8>,
    pub config_descriptor: Descriptor,
    pub layer_descriptor: Descriptor,
    pub annotations: BTreeMap<String, String>,
}

/// When the artifact was made: `SOURCE_DATE_EPOCH` when set (reproducible pushes), else now.
fn created() -> String {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The WIT world a kiln plugin targets, from what it exports.
fn target(found: &inspect::Inspected) -> Option<String> {
    if let Some(version) = found
        .exports
        .iter()
        .find_map(|e| e.strip_prefix("kiln:plugin/entry@"))
    {
        return Some(format!("kiln:plugin/plugin@{version}"));
    }
    if found.exports.iter().any(|e| e == "run") {
        return found
            .interface_version()
            .map(|v| format!("kiln:plugin/step@{v}"));
    }
    None
}

impl Artifact {
    /// The artifact for a kiln plugin component. Errs on bytes that are not a kiln plugin (no
    /// `run` or `kiln:plugin/entry` export).
    pub fn build(component: &[u8]) -> Result<Self, ArtifactError> {
        if component.len() as u64 > LAYER_LIMIT {
            return Err(refuse(format!(
                "the component is {} bytes; kiln takes at most {LAYER_LIMIT}",
                component.len()
            )));
        }
        let found = inspect::inspect(component).map_err(refuse)?;
        let target = target(&found).ok_or_else(|| {
            refuse(
                "not a kiln plugin: it exports neither `run` nor `kiln:plugin/entry` (build it with kiln-sdk)",
            )
        })?;
        let layer = Descriptor {
            media_type: LAYER_MEDIA_TYPE.to_string(),
            digest: sha256(component),
            size: component.len() as u64,
        };
        let created = created();
        let config = serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.digest],
            "component": {
                "exports": found.exports,
                "imports": found.imports,
                "target": target,
            },
        });
        let config = serde_json::to_vec(&config).map_err(|e| refuse(e.to_string()))?;
        let config_descriptor = Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            digest: sha256(&config),
            size: config.len() as u64,
        };
        let mut annotations = BTreeMap::from([(CREATED.to_string(), created)]);
        for (section, key) in ANNOTATIONS {
            if let Some(v) = found.metadata.get(*section) {
                annotations.insert(key.to_string(), v.clone());
            }
        }
        let manifest = serde_json::to_vec(&ManifestOut {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE,
            config: &config_descriptor,
            layers: [&layer],
            annotations: &annotations,
        })
        .map_err(|e| refuse(e.to_string()))?;
        Ok(Self {
            manifest_digest: sha256(&manifest),
            manifest,
            config,
            config_descriptor,
            layer_descriptor: layer,
            annotations,
        })
    }
}

/// A manifest as read from a store, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub config: Descriptor,
    pub layer: Descriptor,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: serde_json::Value,
    media_type: Option<String>,
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: serde_json::Value,
}

impl RawDescriptor {
    fn check(self, what: &str, media_type: &str, limit: u64) -> Result<Descriptor, ArtifactError> {
        if self.media_type != media_type {
            return Err(refuse(format!(
                "its {what} is `{}`, expected `{media_type}`",
                self.media_type.escape_debug()
            )));
        }
        check_digest(&self.digest).map_err(|e| refuse(format!("its {what}'s digest: {e}")))?;
        let size = self
            .size
            .as_u64()
            .ok_or_else(|| refuse(format!("its {what}'s size `{}` is not a size", self.size)))?;
        if size > limit {
            return Err(refuse(format!(
                "its {what} is {size} bytes; kiln reads at most {limit}"
            )));
        }
        Ok(Descriptor {
            media_type: self.media_type,
            digest: self.digest,
            size,
        })
    }
}

impl Manifest {
    /// Reads a manifest a store sent: an OCI image manifest with the Wasm config and exactly one
    /// `application/wasm` layer.
    pub fn parse(bytes: &[u8]) -> Result<Self, ArtifactError> {
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(refuse(format!(
                "the manifest is {} bytes; kiln reads at most {MANIFEST_LIMIT}",
                bytes.len()
            )));
        }
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|e| refuse(format!("not an OCI image manifest: {e}")))?;
        if raw.schema_version.as_u64() != Some(2) {
            return Err(refuse(format!(
                "its schemaVersion is {}, expected 2",
                raw.schema_version
            )));
        }
        if let Some(t) = &raw.media_type
            && t != MANIFEST_MEDIA_TYPE
        {
            return Err(refuse(format!(
                "its mediaType is `{}`, expected `{MANIFEST_MEDIA_TYPE}`",
                t.escape_debug()
            )));
        }
        let config = raw
            .config
            .check("config", CONFIG_MEDIA_TYPE, CONFIG_LIMIT)?;
        let count = raw.layers.len();
        let Ok([layer]) = <[RawDescriptor; 1]>::try_from(raw.layers) else {
            return Err(refuse(format!(
                "a kiln plugin has exactly one application/wasm layer; this manifest has {count}"
            )));
        };
        let layer = layer.check("layer", LAYER_MEDIA_TYPE, LAYER_LIMIT)?;
        Ok(Self {
            config,
            layer,
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

/// Checks bytes against the descriptor that named them: size first, then digest.
pub fn check_blob(bytes: &[u8], descriptor: &Descriptor, what: &str) -> Result<(), ArtifactError> {
    if bytes.len() as u64 != descriptor.size {
        return Err(refuse(format!(
            "the {what} is {} bytes, its manifest says {}",
            bytes.len(),
            descriptor.size
        )));
    }
    let actual = sha256(bytes);
    if actual != descriptor.digest {
        return Err(refuse(format!(
            "the {what}'s digest is {actual}, its manifest says {}",
            descriptor.digest
        )));
    }
    Ok(())
}

/// Checks a config blob against its descriptor and reads it: the Wasm config, naming the layer.
pub fn check_config(bytes: &[u8], manifest: &Manifest) -> Result<serde_json::Value, ArtifactError> {
    check_blob(bytes, &manifest.config, "config")?;
    let config: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| refuse(format!("the config is not JSON: {e}")))?;
    if !config.is_object() {
        return Err(refuse("the config is not a JSON object"));
    }
    if let Some(arch) = config.get("architecture")
        && arch != "wasm"
    {
        return Err(refuse(format!(
            "the config's architecture is {arch}, expected \"wasm\""
        )));
    }
    if let Some(digests) = config.get("layerDigests") {
        let named = digests
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == manifest.layer.digest.as_str()));
        if !named {
            return Err(refuse(format!(
                "the config's layerDigests do not name the layer {}",
                manifest.layer.digest
            )));
        }
    }
    Ok(config)
}

/// Checks the layer's bytes against the manifest, before anything else reads them.
pub fn check_layer(bytes: &[u8], manifest: &Manifest) -> Result<(), ArtifactError> {
    check_blob(bytes, &manifest.layer, "layer")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_010: &[u8] = include_bytes!("../../../tests/fixtures/plugins/probe-0.1.0.wasm");

    fn built() -> Artifact {
        Artifact::build(PROBE_010).unwrap()
    }

    fn manifest_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&built().manifest).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn builds_the_cncf_layout_with_one_wasm_layer() {
        let a = built();
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
        assert_eq!(m["layers"][0]["digest"], sha256(PROBE_010));
        assert_eq!(a.manifest_digest, sha256(&a.manifest));
        let c: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["architecture"], "wasm");
        assert_eq!(c["os"], "wasip2");
        assert_eq!(c["layerDigests"][0], sha256(PROBE_010));
        assert_eq!(c["component"]["target"], "kiln:plugin/step@0.1.0");
        assert!(
            c["component"]["exports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "run")
        );
        assert!(m["annotations"]["org.opencontainers.image.created"].is_string());
        // What it builds, it reads back.
        let parsed = Manifest::parse(&a.manifest).unwrap();
        check_config(&a.config, &parsed).unwrap();
        check_layer(PROBE_010, &parsed).unwrap();
    }

    #[test]
    fn source_date_epoch_makes_a_push_reproducible() {
        // Safety of set_var: this is the only test touching SOURCE_DATE_EPOCH.
        unsafe { std::env::set_var("SOURCE_DATE_EPOCH", "1700000000") };
        let (a, b) = (built(), built());
        unsafe { std::env::remove_var("SOURCE_DATE_EPOCH") };
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(
            a.annotations[CREATED], "2023-11-14T22:13:20Z",
            "{:?}",
            a.annotations
        );
    }

    #[test]
    fn what_is_not_a_kiln_plugin_is_not_built() {
        assert!(Artifact::build(b"\0asm\x01\0\0\0").is_err());
        assert!(Artifact::build(b"hello").is_err());
    }

    #[test]
    fn two_layers_are_refused_naming_the_count() {
        let bytes = manifest_with(|m| {
            let layer = m["layers"][0].clone();
            m["layers"] = serde_json::json!([layer.clone(), layer]);
        });
        let e = Manifest::parse(&bytes).unwrap_err().0;
        assert!(e.contains("exactly one") && e.contains("has 2"), "{e}");
        let none = manifest_with(|m| m["layers"] = serde_json::json!([]));
        assert!(Manifest::parse(&none).unwrap_err().0.contains("has 0"));
    }

    #[test]
    fn wrong_media_types_are_refused() {
        let e = Manifest::parse(&manifest_with(|m| {
            m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into()
        }))
        .unwrap_err()
        .0;
        assert!(e.contains("mediaType"), "{e}");
        let e = Manifest::parse(&manifest_with(|m| {
            m["config"]["mediaType"] = "application/vnd.wasm.config.v1+json".into()
        }))
        .unwrap_err()
        .0;
        assert!(e.contains("config") && e.contains(CONFIG_MEDIA_TYPE), "{e}");
        let e = Manifest::parse(&manifest_with(|m| {
            m["layers"][0]["mediaType"] = "application/vnd.wasm.content.layer.v1+wasm".into()
        }))
        .unwrap_err()
        .0;
        assert!(e.contains("application/wasm"), "{e}");
        let e = Manifest::parse(&manifest_with(|m| m["schemaVersion"] = 1.into()))
            .unwrap_err()
            .0;
        assert!(e.contains("schemaVersion"), "{e}");
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            "sha256:abc",
            "sha512:00",
            "md5:0123",
            &format!("sha256:{}", "G".repeat(64)),
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/../x", "a".repeat(64)),
        ] {
            let bytes = manifest_with(|m| m["layers"][0]["digest"] = bad.into());
            let e = Manifest::parse(&bytes).unwrap_err().0;
            assert!(e.contains("not a sha256 digest"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_beyond_the_limits_are_refused() {
        let e = Manifest::parse(&manifest_with(|m| {
            m["layers"][0]["size"] = (LAYER_LIMIT + 1).into()
        }))
        .unwrap_err()
        .0;
        assert!(e.contains("at most"), "{e}");
        let e = Manifest::parse(&manifest_with(|m| {
            m["config"]["size"] = (CONFIG_LIMIT + 1).into()
        }))
        .unwrap_err()
        .0;
        assert!(e.contains("at most"), "{e}");
        let e = Manifest::parse(&manifest_with(|m| m["layers"][0]["size"] = (-1).into()))
            .unwrap_err()
            .0;
        assert!(e.contains("not a size"), "{e}");
        let huge = vec![b' '; MANIFEST_LIMIT as usize + 1];
        assert!(Manifest::parse(&huge).unwrap_err().0.contains("at most"));
        assert!(Manifest::parse(b"{not json").is_err());
        assert!(Manifest::parse(b"[]").is_err());
    }

    #[test]
    fn a_layer_or_config_that_lies_about_its_digest_or_size_is_refused() {
        let a = built();
        let m = Manifest::parse(&a.manifest).unwrap();
        let mut tampered = PROBE_010.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let e = check_layer(&tampered, &m).unwrap_err().0;
        assert!(
            e.contains("digest is sha256:") && e.contains(&m.layer.digest),
            "{e}"
        );
        let e = check_layer(&PROBE_010[1..], &m).unwrap_err().0;
        assert!(e.contains("bytes"), "{e}");
        let mut config = a.config.clone();
        config[0] = b' ';
        assert!(check_config(&config, &m).is_err());
    }

    #[test]
    fn a_config_that_does_not_name_the_layer_is_refused() {
        let a = built();
        let mut m = Manifest::parse(&a.manifest).unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm", "os": "wasip2", "layerDigests": [sha256(b"other")]
        }))
        .unwrap();
        m.config.digest = sha256(&config);
        m.config.size = config.len() as u64;
        let e = check_config(&config, &m).unwrap_err().0;
        assert!(e.contains("layerDigests"), "{e}");
    }
}
