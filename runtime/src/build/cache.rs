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
) -> Result<(KeyInputs, Tree), CasError> {
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
    Ok((
        KeyInputs {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            buildspec: Digest::of(canonical_buildspec.as_bytes()),
            source,
            env,
            shell: shell.to_string(),
            plugins,
            secondary: BTreeMap::new(),
        },
        tree,
    ))
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

/// The source files of a tree, one `digest path` line each (as b3sum prints them): what the next
/// `--explain-cache` compares with.
fn listing(tree: &Tree) -> String {
    use crate::cas::tree::Entry;
    let mut out = String::new();
    for entry in &tree.entries {
        let what = match entry {
            Entry::File {
                digest, executable, ..
            } => {
                format!("{}{}", digest.hex(), if *executable { "x" } else { "" })
            }
            Entry::Symlink { target, .. } => format!("link:{target}"),
            Entry::Dir { .. } => continue,
        };
        // A path with a newline cannot be told apart in a listing: it is left out of it.
        if !entry.path().contains('\n') {
            out.push_str(&format!("{what} {}\n", entry.path()));
        }
    }
    out
}

/// The files added, removed and changed between two listings, named (at most `max` in all).
fn changed_files(before: &str, now: &str, max: usize) -> String {
    let parse = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(what, path)| (path.to_string(), what.to_string()))
            .collect()
    };
    let (before, now) = (parse(before), parse(now));
    let mut named = Vec::new();
    for (path, what) in &now {
        match before.get(path) {
            None => named.push(format!("{path} (added)")),
            Some(old) if old != what => named.push(path.clone()),
            _ => {}
        }
    }
    named.extend(
        before
            .keys()
            .filter(|p| !now.contains_key(*p))
            .map(|p| format!("{p} (removed)")),
    );
    let total = named.len();
    named.truncate(max);
    let mut text = named.join(", ");
    if total > max {
        text.push_str(&format!(" and {} more", total - max));
    }
    text
}

/// Says, for `--explain-cache`, how this build's inputs differ from the project's last build (the
/// source files by name), and remembers them for the next one.
pub fn explain(records: &Path, inputs: &KeyInputs, tree: &Tree, hit: bool, log: &BuildLog) {
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
            let mut changes = inputs.changes_since(&before);
            if inputs.source != before.source
                && let Ok(old) = std::fs::read_to_string(records.join("last-source.txt"))
            {
                let files = changed_files(&old, &listing(tree), 10);
                for change in changes
                    .iter_mut()
                    .filter(|c| *c == "the source files changed")
                {
                    *change = format!("the source files changed: {files}");
                }
            }
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

/// Remembers a build's inputs, and its source files by digest, for the next `--explain-cache`.
pub fn remember(records: &Path, inputs: &KeyInputs, tree: &Tree) {
    if let Ok(bytes) = serde_json::to_vec_pretty(inputs) {
        let _ = super::write_private(&records.join("last-key-inputs.json"), &bytes);
    }
    let _ = super::write_private(&records.join("last-source.txt"), listing(tree).as_bytes());
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

#[cfg(test)]
mod tests {
    use super::changed_files;

    #[test]
    fn changed_files_are_named_added_removed_and_counted_past_the_limit() {
        let before = "aa a.txt\nbb b.txt\ncc c.txt\n";
        let now = "aa a.txt\nbX b.txt\ndd d.txt\n";
        assert_eq!(
            changed_files(before, now, 10),
            "b.txt, d.txt (added), c.txt (removed)"
        );
        assert_eq!(changed_files(before, now, 1), "b.txt and 2 more");
        assert_eq!(changed_files(now, now, 10), "");
    }
}
