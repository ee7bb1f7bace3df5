//! Which component a build runs for each registry plugin of kiln.toml: the one kiln.lock pinned,
//! and nothing else.
//!
//! A tag that moved upstream changes nothing until `kiln plugin update`. The component lives in the
//! CAS under the lock's BLAKE3; one missing from the CAS is fetched by the pinned manifest digest
//! (never the tag) and checked against the lock; every component's SHA-256 is checked against the
//! lock before it is handed over, so a blob changed in the cache is refused before it is compiled.

use std::path::{Path, PathBuf};

use super::Capabilities;
use super::artifact;
use super::lock::{self, Lock, LockError, Locked};
use super::registry::{self, PluginRef, RegistryError};
use super::signature::{self, PublicKey};
use crate::cas::{CasError, Digest, LocalStore};
use crate::store::Access;

/// A plugin ready to register with the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub reference: String,
    /// The component: its blob in the CAS.
    pub path: PathBuf,
    /// `sha256:<hex>` the component was checked against (the lock's layer digest).
    pub sha256: String,
    /// What kiln.lock says the user granted.
    pub granted: Capabilities,
}

/// Why a project's registry plugins could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "the plugin `{name}` ({reference}) is in kiln.toml but not in kiln.lock: run `kiln plugin add {name} {reference}` to pin it"
    )]
    NotLocked { name: String, reference: String },
    #[error(
        "kiln.toml says `{name}` is {wanted}, kiln.lock pinned {locked}: run `kiln plugin update {name}` to pin the new reference"
    )]
    Moved {
        name: String,
        wanted: String,
        locked: String,
    },
    #[error("the plugin `{name}`: {source}")]
    Fetch {
        name: String,
        #[source]
        source: RegistryError,
    },
    #[error(
        "the plugin `{name}` fetched by its pinned manifest ({reference}) is not what kiln.lock pinned: {what}"
    )]
    Mismatch {
        name: String,
        reference: String,
        what: String,
    },
    #[error(
        "the plugin `{name}`'s component {} has digest {actual}, kiln.lock pinned {expected}: refused, not compiled (delete the file to fetch it again)",
        path.display()
    )]
    Tampered {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("the plugin `{name}`: kiln.toml's [plugin-keys] asks for a signature: {source}")]
    Unsigned {
        name: String,
        #[source]
        source: RegistryError,
    },
    #[error(transparent)]
    Cas(#[from] CasError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The path of the lock beside a project's kiln.toml.
pub fn lock_path(project_dir: &Path) -> PathBuf {
    project_dir.join(lock::FILE_NAME)
}

/// Resolves the registry plugins kiln.toml names (`wanted`: name and reference) from the project's
/// kiln.lock. A name the lock does not have, or whose reference changed, is an error that says which
/// command to run. A plugin under one of `keys` (kiln.toml's `[plugin-keys]`) must carry a cosign
/// signature by it of the manifest the lock pins, bound to the lock's layer.
pub async fn resolve(
    project_dir: &Path,
    wanted: &[(String, String)],
    cas: &LocalStore,
    access: &Access,
    keys: &[(String, PublicKey)],
) -> Result<Vec<Resolved>, ResolveError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let lock = Lock::read(&lock_path(project_dir))?.unwrap_or_default();
    let mut out = Vec::new();
    for (name, reference) in wanted {
        let locked = lock.get(name).ok_or_else(|| ResolveError::NotLocked {
            name: name.clone(),
            reference: reference.clone(),
        })?;
        if locked.reference != *reference {
            return Err(ResolveError::Moved {
                name: name.clone(),
                wanted: reference.clone(),
                locked: locked.reference.clone(),
            });
        }
        out.push(resolve_one(locked, cas, access, keys).await?);
    }
    Ok(out)
}

/// One locked plugin: its component in the CAS (fetched by digest when missing), checked.
pub async fn resolve_one(
    locked: &Locked,
    cas: &LocalStore,
    access: &Access,
    keys: &[(String, PublicKey)],
) -> Result<Resolved, ResolveError> {
    let name = &locked.name;
    // A signed plugin: the signature of the pinned manifest is checked once per (manifest, layer,
    // key), then the component is fetched by that manifest, which binds it to the lock's layer; a
    // marker in the cache remembers both, so later builds stay offline. A lock edited to pin
    // another manifest, or another layer, meets no marker and is checked again.
    let reference = PluginRef::parse(&locked.reference).map_err(|source| ResolveError::Fetch {
        name: name.clone(),
        source,
    })?;
    let marker = signature::key_for(&reference, keys).map(|key| {
        let id = blake3::hash(
            format!(
                "{}\n{}\n{}",
                locked.manifest,
                locked.layer,
                key.fingerprint()
            )
            .as_bytes(),
        );
        (
            key,
            cas.root()
                .join("plugin-signatures")
                .join(id.to_hex().as_str()),
        )
    });
    let unverified = marker.as_ref().filter(|(_, file)| !file.exists());
    if let Some((key, _)) = unverified {
        signature::verify(&reference, &locked.manifest, key, access)
            .await
            .map_err(|source| ResolveError::Unsigned {
                name: name.clone(),
                source,
            })?;
    }
    // The lock was checked when read: its blake3 is 64 hex digits.
    let key = Digest::parse(&locked.blake3).ok_or_else(|| ResolveError::Mismatch {
        name: name.clone(),
        reference: locked.reference.clone(),
        what: format!("`{}` is not a BLAKE3 digest", locked.blake3),
    })?;
    let path = cas.blob_path(&key);
    if !cas.has(&key) || unverified.is_some() {
        fetch(locked, &reference, cas, access).await?;
    }
    let bytes = std::fs::read(&path).map_err(|source| ResolveError::Io {
        path: path.clone(),
        source,
    })?;
    let actual = artifact::sha256(&bytes);
    if actual != locked.layer {
        return Err(ResolveError::Tampered {
            name: name.clone(),
            path,
            expected: locked.layer.clone(),
            actual,
        });
    }
    if let Some((_, file)) = unverified {
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(file, &locked.manifest));
        written.map_err(|source| ResolveError::Io {
            path: file.clone(),
            source,
        })?;
    }
    Ok(Resolved {
        name: name.clone(),
        reference: locked.reference.clone(),
        path,
        sha256: locked.layer.clone(),
        granted: locked.granted.clone(),
    })
}

/// Fetches a locked plugin by its manifest digest into the CAS, after checking it against the lock.
async fn fetch(
    locked: &Locked,
    reference: &PluginRef,
    cas: &LocalStore,
    access: &Access,
) -> Result<(), ResolveError> {
    let name = &locked.name;
    let fetch_err = |source| ResolveError::Fetch {
        name: name.clone(),
        source,
    };
    let pinned = reference.pinned(&locked.manifest);
    let pulled = registry::pull(&pinned, access).await.map_err(fetch_err)?;
    let mismatch = |what: String| ResolveError::Mismatch {
        name: name.clone(),
        reference: pinned.to_string(),
        what,
    };
    if pulled.layer_digest != locked.layer {
        return Err(mismatch(format!(
            "its layer is {}, kiln.lock says {}",
            pulled.layer_digest, locked.layer
        )));
    }
    let blake3 = blake3::hash(&pulled.bytes).to_hex().to_string();
    if blake3 != locked.blake3 {
        return Err(mismatch(format!(
            "its BLAKE3 is {blake3}, kiln.lock says {}",
            locked.blake3
        )));
    }
    debug_assert_eq!(artifact::sha256(&pulled.bytes), locked.layer);
    cas.put_bytes(&pulled.bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_010: &[u8] = include_bytes!("../../../tests/fixtures/plugins/probe-0.1.0.wasm");

    struct Project {
        _dirs: [tempfile::TempDir; 3],
        project: PathBuf,
        cas: LocalStore,
        reference: String,
        locked: Locked,
    }

    async fn project() -> Project {
        let dirs = [
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        ];
        let reference = format!("file://{}/probe:1.0.0", dirs[0].path().display());
        let pushed = registry::push(
            PROBE_010,
            &PluginRef::parse(&reference).unwrap(),
            &Access::default(),
        )
        .await
        .unwrap();
        let locked = Locked {
            name: "probe".into(),
            reference: reference.clone(),
            manifest: pushed.manifest_digest,
            layer: pushed.layer_digest,
            size: pushed.size,
            blake3: blake3::hash(PROBE_010).to_hex().to_string(),
            api_version: "0.1.0".into(),
            granted: Capabilities::default(),
        };
        let project = dirs[1].path().to_path_buf();
        Lock {
            plugins: vec![locked.clone()],
        }
        .write(&lock_path(&project))
        .unwrap();
        let cas = LocalStore::open(dirs[2].path()).unwrap();
        Project {
            _dirs: dirs,
            project,
            cas,
            reference,
            locked,
        }
    }

    #[tokio::test]
    async fn a_locked_plugin_is_fetched_by_digest_into_the_cas_and_checked() {
        let p = project().await;
        let wanted = [("probe".to_string(), p.reference.clone())];
        let got = resolve(&p.project, &wanted, &p.cas, &Access::default(), &[])
            .await
            .unwrap();
        assert_eq!(got[0].sha256, p.locked.layer);
        assert_eq!(std::fs::read(&got[0].path).unwrap(), PROBE_010);
        // A second resolve reads the CAS.
        let again = resolve(&p.project, &wanted, &p.cas, &Access::default(), &[])
            .await
            .unwrap();
        assert_eq!(again, got);
    }

    #[tokio::test]
    async fn names_missing_from_the_lock_or_moved_say_which_command_to_run() {
        let p = project().await;
        let e = resolve(
            &p.project,
            &[("other".into(), p.reference.clone())],
            &p.cas,
            &Access::default(),
            &[],
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("kiln plugin add other"), "{e}");
        let moved = p.reference.replace(":1.0.0", ":1.1.0");
        let e = resolve(
            &p.project,
            &[("probe".into(), moved)],
            &p.cas,
            &Access::default(),
            &[],
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("kiln plugin update probe"), "{e}");
    }

    #[tokio::test]
    async fn a_tampered_cas_blob_is_refused_naming_the_file_and_both_digests() {
        let p = project().await;
        let key = Digest::parse(&p.locked.blake3).unwrap();
        let path = p.cas.blob_path(&key);
        let mut bytes = PROBE_010.to_vec();
        bytes[200] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = resolve(
            &p.project,
            &[("probe".into(), p.reference.clone())],
            &p.cas,
            &Access::default(),
            &[],
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ResolveError::Tampered { .. }), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(&p.locked.layer), "{text}");
        assert!(text.contains(&artifact::sha256(&bytes)), "{text}");
    }

    #[tokio::test]
    async fn a_lock_that_lies_about_the_layer_is_refused_at_fetch() {
        let mut p = project().await;
        p.locked.layer = format!("sha256:{}", "0".repeat(64));
        Lock {
            plugins: vec![p.locked.clone()],
        }
        .write(&lock_path(&p.project))
        .unwrap();
        let e = resolve(
            &p.project,
            &[("probe".into(), p.reference.clone())],
            &p.cas,
            &Access::default(),
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ResolveError::Mismatch { .. }), "{e}");
    }
}
