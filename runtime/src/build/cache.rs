//! The build's use of the action cache: the key's inputs, restoring a hit, saving a success, and
//! explaining a miss.

use std::collections::BTreeMap;
use std::path::Path;

use super::artifacts;
use super::env::Vars;
use super::log::BuildLog;
use super::result::{ArtifactResult, BuildResult};
use crate::cas::action::{ActionEntry, CachedArtifact, KeyInputs};
use crate::cas::tree::Tree;
use crate::cas::{CasError, Digest, LocalStore};

/// How the cache took part in a build, for `--json` and the log.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CacheInfo {
    /// The action cache key (absent when the build was not cacheable).
    pub key: Option<String>,
    /// Whether the result was restored rather than built.
    pub hit: bool,
    /// The build whose outputs were restored.
    pub restored_from: Option<String>,
    /// Why the build was neither looked up nor saved, when it was not.
    pub uncacheable: Option<String>,
    /// Whether the result was saved to the cache.
    pub saved: bool,
    /// What the save sent to the remote cache, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<crate::cas::remote::Transfer>,
}

/// The inputs of the action cache key for a build about to run. The buildspec file itself is left out
/// of the source tree: it counts through its normalised content, so a comment does not miss.
pub fn key_inputs(
    canonical_buildspec: &str,
    buildspec_in_source: Option<&Path>,
    source_dir: &Path,
    vars: &Vars,
    shell: &str,
    plugins: &[(String, blake3::Hash)],
) -> Result<KeyInputs, CasError> {
    let mut tree = Tree::scan(source_dir)?;
    if let Some(rel) = buildspec_in_source {
        tree.entries.retain(|e| Path::new(e.path()) != rel);
    }
    let source = tree.digest();
    let env = vars
        .as_slice()
        .iter()
        .map(|(k, v)| (k.clone(), Digest::of(v.as_bytes())))
        .collect();
    let plugins: BTreeMap<String, Digest> = plugins
        .iter()
        .map(|(name, digest)| (name.clone(), Digest::from(*digest)))
        .collect();
    Ok(KeyInputs {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        buildspec: Digest::of(canonical_buildspec.as_bytes()),
        source,
        env,
        shell: shell.to_string(),
        plugins,
    })
}

/// Puts a cached build's artifacts back in the output folder and its log on the console.
pub fn restore(
    store: &LocalStore,
    entry: &ActionEntry,
    trees: &[Tree],
    output: &artifacts::Output,
    zip: bool,
    log: &BuildLog,
) -> Result<Vec<ArtifactResult>, artifacts::ArtifactError> {
    let cas = |e: CasError| artifacts::ArtifactError::Plugin(e.to_string());
    let output = output.open()?;
    let original = store.get_bytes(&entry.log).map_err(cas)?;
    let original_id = entry.result["build_id"]
        .as_str()
        .unwrap_or("an earlier build");
    log.container(&format!(
        "Restoring {original_id} from the cache: no command runs. Its log follows."
    ));
    for line in String::from_utf8_lossy(&original).lines() {
        log.output(line);
    }
    log.container(&format!("End of the restored log of {original_id}"));
    let mut results = Vec::new();
    for (artifact, tree) in entry.artifacts.iter().zip(trees) {
        let staging = artifacts::Staging::new(&output, ".kiln-staging-")?;
        let files_dir = staging.dir.create_dir_all(Path::new("files"))?;
        tree.restore(store, files_dir.path()).map_err(cas)?;
        let result = artifacts::publish(
            &output,
            &staging,
            &artifact.identifier,
            artifact.name.clone(),
            zip,
        )?;
        log.container(&format!(
            "Artifact {}: {} file(s) restored in {}",
            result.name,
            result.files.len(),
            result.path.display()
        ));
        results.push(result);
    }
    Ok(results)
}

/// Saves a successful build: its artifact folders as trees and its log, then the entry, last.
pub fn save(
    store: &LocalStore,
    key: &Digest,
    inputs: &KeyInputs,
    result: &BuildResult,
    log_file: &Path,
) -> Result<(), CasError> {
    let mut artifacts = Vec::new();
    for artifact in &result.artifacts {
        let (tree, _) = Tree::store_dir(store, &artifact.path)?;
        artifacts.push(CachedArtifact {
            identifier: artifact.identifier.clone(),
            name: artifact.name.clone(),
            tree,
        });
    }
    let log_bytes = std::fs::read(log_file).map_err(crate::cas::io_err(log_file))?;
    let log = store.put_bytes(&log_bytes)?;
    let entry = ActionEntry {
        inputs: inputs.clone(),
        result: serde_json::to_value(result).unwrap_or_default(),
        artifacts,
        log,
    };
    store.put_action(key, &entry)
}

/// Says, for `--explain-cache`, how this build's inputs differ from the project's last build, and
/// remembers them for the next one.
pub fn explain(records: &Path, inputs: &KeyInputs, hit: bool, log: &BuildLog) {
    let path = records.join("last-key-inputs.json");
    let before: Option<KeyInputs> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let verdict = if hit { "hit" } else { "miss" };
    match before {
        None => log.container(&format!(
            "Cache {verdict}: no earlier build of this project to compare with"
        )),
        Some(before) => {
            let changes = inputs.changes_since(&before);
            if changes.is_empty() {
                log.container(&format!(
                    "Cache {verdict}: nothing changed since the last build of this project"
                ));
            } else {
                log.container(&format!(
                    "Cache {verdict}: since the last build of this project, {}",
                    changes.join("; ")
                ));
            }
        }
    }
}

/// Remembers a build's inputs for the next `--explain-cache`.
pub fn remember(records: &Path, inputs: &KeyInputs) {
    if let Ok(bytes) = serde_json::to_vec_pretty(inputs) {
        let _ = super::write_private(&records.join("last-key-inputs.json"), &bytes);
    }
}

/// Of the most recent `n` builds recorded under `state_dir`, how many were cache hits.
pub fn hit_rate(state_dir: &Path, n: usize) -> (usize, usize) {
    let mut records: Vec<(std::time::SystemTime, std::path::PathBuf)> = Vec::new();
    for project in std::fs::read_dir(state_dir.join("builds"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "json")
                && path
                    .file_stem()
                    .is_some_and(|s| s.to_string_lossy().parse::<u64>().is_ok())
            {
                let when = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                records.push((when, path));
            }
        }
    }
    records.sort();
    let recent = &records[records.len().saturating_sub(n)..];
    let hits = recent
        .iter()
        .filter(|(_, path)| {
            std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["cache"]["hit"] == true)
        })
        .count();
    (hits, recent.len())
}
