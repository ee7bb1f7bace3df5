//! Optional cosign signatures of registry plugins, verified offline against a public key the project
//! lists in kiln.toml:
//!
//! ```toml
//! [plugin-keys]
//! "ghcr.io/acme" = "keys/acme.pub"     # an ECDSA P-256 public key (PEM), as `cosign generate-key-pair` writes
//! ```
//!
//! A plugin whose repository is under a listed prefix must carry a signature by that key, found by
//! cosign's tag scheme (`sha256-<hex>.sig` in the same repository): a simple-signing payload naming
//! the manifest digest, signed with ECDSA P-256 over SHA-256. No transparency log is consulted (that
//! would not be offline); the OCI referrers API is not used (cosign's tag scheme is what every
//! registry serves).

use std::path::Path;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use oci_client::RegistryOperation;

use super::artifact::{self, Descriptor};
use super::registry::{Location, PluginRef, RegistryError, canonical_image, oci_blob};
use crate::store::{self, Access, StoreError};

/// cosign's simple-signing layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ECDSA P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding a P-256 key.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err("not a PEM public key (-----BEGIN PUBLIC KEY-----)".into());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("its PEM body is not base64: {e}"))?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(Self {
                point: point.to_vec(),
            }),
            _ => Err("not an ECDSA P-256 public key (cosign generate-key-pair writes one)".into()),
        }
    }

    /// Reads the key file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A name for the key: the BLAKE3 of its point, in hex.
    pub fn fingerprint(&self) -> String {
        blake3::hash(&self.point).to_hex().to_string()
    }

    /// Whether `signature` (DER) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// The key kiln.toml lists for a reference: the longest prefix of its `host/repository` that is a
/// listed registry or namespace.
pub fn key_for<'a, K>(reference: &PluginRef, keys: &'a [(String, K)]) -> Option<&'a K> {
    let Location::Oci(image) = &reference.location else {
        return None;
    };
    // Both sides as the registry client reaches them: `GHCR.IO/acme`, `ghcr.io:443/acme` and
    // `ghcr.io/acme` are one registry (the reference's image is canonical already).
    keys.iter()
        .map(|(prefix, k)| (canonical_image(prefix.trim_end_matches('/')), k))
        .filter(|(prefix, _)| {
            image == prefix
                || image
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, k)| k)
}

/// Checks that the manifest `manifest_digest` of `reference`'s repository carries a cosign
/// signature by `key`.
pub async fn verify(
    reference: &PluginRef,
    manifest_digest: &str,
    key: &PublicKey,
    access: &Access,
) -> Result<(), RegistryError> {
    let refused = |why: String| RegistryError::Refused {
        reference: reference.to_string(),
        why: artifact::ArtifactError(why),
    };
    let Location::Oci(image) = &reference.location else {
        return Err(refused(
            "signatures are checked for oci:// plugins only".into(),
        ));
    };
    artifact::check_digest(manifest_digest).map_err(|e| refused(e.0))?;
    let tag = manifest_digest.replacen(':', "-", 1) + ".sig";
    let text = format!("oci://{image}:{tag}");
    let registry = store::oci::connect(&format!("{image}:{tag}"), &text, access)?;
    registry.auth(RegistryOperation::Pull, &text).await?;
    let body = store::with_retries("fetching the signature", || async {
        registry
            .client
            .pull_manifest_raw(
                &registry.reference,
                &registry.auth,
                &[artifact::MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST],
            )
            .await
            .map(|(b, _)| b)
            .map_err(|e| registry.error(e, &text))
    })
    .await
    .map_err(|e| match e {
        StoreError::NotFound(_) => refused(format!(
            "its manifest {manifest_digest} has no cosign signature ({text}), and kiln.toml's [plugin-keys] requires one"
        )),
        other => other.into(),
    })?;
    if body.len() as u64 > artifact::MANIFEST_LIMIT {
        return Err(refused("its signature manifest is too large".into()));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| refused(format!("its signature manifest is not JSON: {e}")))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers.iter().take(16) {
        if layer["mediaType"] != SIMPLE_SIGNING {
            continue;
        }
        let (Some(digest), Some(size), Some(signature)) = (
            layer["digest"].as_str(),
            layer["size"].as_u64(),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            continue;
        };
        if artifact::check_digest(digest).is_err() || size > artifact::CONFIG_LIMIT {
            continue;
        }
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            continue;
        };
        let descriptor = Descriptor {
            media_type: SIMPLE_SIGNING.to_string(),
            digest: digest.to_string(),
            size,
        };
        let payload = oci_blob(&registry, &descriptor, &text).await?;
        if artifact::check_blob(&payload, &descriptor, "signature payload").is_err() {
            continue;
        }
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        if claims["critical"]["image"]["docker-manifest-digest"] != manifest_digest {
            continue;
        }
        if key.verifies(&payload, &signature) {
            return Ok(());
        }
    }
    Err(refused(format!(
        "no cosign signature of {manifest_digest} by the key kiln.toml's [plugin-keys] lists for it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn pem_of(point: &[u8]) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(point);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn a_pem_key_verifies_its_signatures_and_no_other() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let key = PublicKey::from_pem(&pem_of(pair.public_key().as_ref())).unwrap();
        let signature = pair.sign(&rng, b"payload").unwrap();
        assert!(key.verifies(b"payload", signature.as_ref()));
        assert!(!key.verifies(b"payload!", signature.as_ref()));
        assert!(!key.verifies(b"payload", b"garbage"));
        assert!(PublicKey::from_pem("hello").is_err());
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }

    #[test]
    fn the_longest_listed_prefix_names_the_key() {
        let keys = vec![("ghcr.io".to_string(), 1), ("ghcr.io/acme".to_string(), 2)];
        let r = |t: &str| PluginRef::parse(t).unwrap();
        assert_eq!(key_for(&r("oci://ghcr.io/acme/x:1.0.0"), &keys), Some(&2));
        assert_eq!(key_for(&r("oci://ghcr.io/acmeco/x:1.0.0"), &keys), Some(&1));
        assert_eq!(key_for(&r("oci://quay.io/acme/x:1.0.0"), &keys), None);
        assert_eq!(key_for(&r("file:///ghcr.io/acme/x:1.0.0"), &keys), None);
        // Other spellings of the same registry are the same registry: none skips the key.
        for same in [
            "oci://GHCR.IO/acme/x:1.0.0".to_string(),
            "oci://ghcr.io:443/acme/x:1.0.0".to_string(),
            format!("oci://Ghcr.Io:443/acme/x@sha256:{}", "a".repeat(64)),
        ] {
            assert_eq!(key_for(&r(&same), &keys), Some(&2), "{same}");
        }
        let hub = vec![("docker.io/acme".to_string(), 3)];
        for same in [
            "oci://acme/x:1.0.0",
            "oci://index.docker.io/acme/x:1.0.0",
            "oci://docker.io/acme/x:1.0.0",
        ] {
            assert_eq!(key_for(&r(same), &hub), Some(&3), "{same}");
        }
        let upper = vec![("GHCR.IO:443/acme/".to_string(), 4)];
        assert_eq!(key_for(&r("oci://ghcr.io/acme/x:1.0.0"), &upper), Some(&4));
        // A tag and a digest together are refused: which one would be fetched is not clear.
        let both = format!("oci://ghcr.io/acme/x:1.0.0@sha256:{}", "a".repeat(64));
        assert!(PluginRef::parse(&both).is_err());
        // A registry on a port keeps it; localhost stays a host.
        assert_eq!(
            r("oci://localhost:5000/a/b:1.0.0").to_string(),
            "oci://localhost:5000/a/b:1.0.0"
        );
        assert_eq!(
            r("oci://localhost/a/b:1.0.0").to_string(),
            "oci://localhost/a/b:1.0.0"
        );
    }
}
