//! The buildspec's `cache:` section, CodeBuild-style: `paths` saved as trees after a build and
//! restored before `install`.
//!
//! - `key` is expanded by the shell (`npm-$(codebuild-hash-files package-lock.json)`) and matched
//!   exactly; `fallback-keys` are tried in order, each matching the newest entry whose key starts
//!   with it. An entry with a key is written once and never updated.
//! - Without `key`, the project has one entry of its own, updated by every successful build (as
//!   CodeBuild's local cache is).
//! - `action: restore` only restores, `action: save` only saves; neither means both.
//!
//! - Entries belong to a project ([`Scope`]): a key names an entry of the building project only, so
//!   one project's `deps-v1` is never restored into another through its `fallback-keys`. A shared
//!   scope (`--cache-scope shared`) is a choice the user makes for projects that trust each other.
//!
//! Paths are globs relative to the source directory, or absolute, or under `~`. What is saved of a
//! path is the folder before its first glob character, filtered by the rest of the pattern. Blobs are
//! shared with everything else in the store, so a dependency folder that changed by one file costs
//! one new blob.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use globset::GlobBuilder;
use serde::{Deserialize, Serialize};

use crate::cas::tree::{Entry, Tree};
use crate::cas::{CasError, Digest, LocalStore, io_err};
use crate::spec::buildspec::{Cache, CacheAction};

/// One cached path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPath {
    /// The path as the buildspec writes it.
    pub pattern: String,
    /// The folder it was saved from (and is restored to).
    pub root: PathBuf,
    pub tree: Digest,
}

/// Whose entries a build reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The project's own, by its identity (`--project NAME`, or the source folder's path and the
    /// buildspec's path in it).
    Project(String),
    /// Entries shared by every project that asks for the shared scope.
    Shared,
}

impl Scope {
    fn id(&self) -> String {
        match self {
            Scope::Project(identity) => format!("project:{identity}"),
            Scope::Shared => "shared".to_string(),
        }
    }
}

/// A cache entry of the `cache:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathsEntry {
    /// The scope it belongs to (entries of an older kiln have none, and match no scope).
    #[serde(default)]
    pub scope: String,
    pub key: String,
    /// Milliseconds since the epoch, to find the newest of several prefix matches.
    pub created: u64,
    pub paths: Vec<SavedPath>,
}

/// A `paths` pattern split into the folder to save and the filter below it.
#[derive(Debug, Clone)]
pub struct CachePath {
    pub pattern: String,
    pub root: PathBuf,
    /// The folder above `root` that the build cannot change (its workspace, its scratch folder):
    /// the restore makes `root` below it and follows no link on the way.
    pub base: Option<PathBuf>,
    filter: Option<globset::GlobMatcher>,
}

/// Resolves the section's paths against the source directory and the build's home.
pub fn resolve(cache: &Cache, source_dir: &Path, home: Option<&str>) -> Vec<CachePath> {
    cache
        .paths
        .iter()
        .filter_map(|pattern| {
            let expanded = match (pattern.strip_prefix("~/"), home) {
                (Some(rest), Some(home)) => format!("{home}/{rest}"),
                _ => pattern.clone(),
            };
            let glob_at = expanded
                .find(['*', '?', '[', '{'])
                .unwrap_or(expanded.len());
            let (root, rest) = match expanded[..glob_at].rfind('/') {
                Some(slash) if glob_at < expanded.len() => {
                    (&expanded[..slash], &expanded[slash + 1..])
                }
                _ => (expanded.as_str(), ""),
            };
            let root = if Path::new(root).is_absolute() {
                PathBuf::from(root)
            } else {
                source_dir.join(root.trim_start_matches("./"))
            };
            let filter = if rest.is_empty() {
                None
            } else {
                Some(
                    GlobBuilder::new(rest)
                        .literal_separator(true)
                        .build()
                        .ok()?
                        .compile_matcher(),
                )
            };
            Some(CachePath {
                pattern: pattern.clone(),
                root,
                base: None,
                filter,
            })
        })
        .collect()
}

fn entry_path(store: &LocalStore, scope: &Scope, key: &str) -> PathBuf {
    let name = Digest::of(format!("{}\0{key}", scope.id()).as_bytes());
    store
        .root()
        .join("paths")
        .join(format!("{}.json", name.hex()))
}

fn load(path: &Path) -> Option<PathsEntry> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Finds the entry to restore: the exact key, else the newest entry matching each fallback prefix in
/// turn. Entries whose blobs are gone do not count.
pub fn find(
    store: &LocalStore,
    scope: &Scope,
    key: &str,
    fallbacks: &[String],
) -> Option<PathsEntry> {
    let scope_id = scope.id();
    let usable = |e: &PathsEntry| {
        e.paths
            .iter()
            .all(|p| Tree::load(store, &p.tree).is_ok_and(|t| t.complete_in(store)))
    };
    if let Some(entry) = load(&entry_path(store, scope, key))
        .filter(|e| e.scope == scope_id && e.key == key)
        .filter(usable)
    {
        return Some(entry);
    }
    let all: Vec<PathsEntry> = std::fs::read_dir(store.root().join("paths"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| load(&e.path()))
        .filter(|e| e.scope == scope_id)
        .collect();
    fallbacks.iter().find_map(|prefix| {
        all.iter()
            .filter(|e| e.key.starts_with(prefix.as_str()) && usable(e))
            .max_by_key(|e| e.created)
            .cloned()
    })
}

/// Writes an entry's paths back, each into the folder its pattern names in this build (`current`):
/// each tree merged into its folder (existing files are replaced). A saved pattern this build does
/// not name is left out.
pub fn restore(
    store: &LocalStore,
    entry: &PathsEntry,
    current: &[CachePath],
) -> Result<usize, CasError> {
    let mut files = 0;
    for saved in &entry.paths {
        let Some(path) = current.iter().find(|p| p.pattern == saved.pattern) else {
            continue;
        };
        let root = &path.root;
        let tree = Tree::load(store, &saved.tree)?;
        // A tree that puts entries below one of its own links would write through it.
        let links: Vec<&str> = tree
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::Symlink { .. }))
            .map(|e| e.path())
            .collect();
        if let Some(e) = tree.entries.iter().find(|e| {
            links
                .iter()
                .any(|l| Path::new(e.path()).starts_with(l) && e.path() != *l)
        }) {
            return Err(CasError::Io {
                path: root.join(e.path()),
                source: std::io::Error::other("the cached tree puts it below one of its own links"),
            });
        }
        // Everything from the base down is resolved beneath it: a link the build left on the way
        // (or swaps in while kiln restores) is refused, never followed.
        let (base, below) = match &path.base {
            Some(base) => (
                base.as_path(),
                root.strip_prefix(base).unwrap_or(Path::new("")),
            ),
            None => (root.as_path(), Path::new("")),
        };
        if path.base.is_none() {
            std::fs::create_dir_all(root).map_err(io_err(root))?;
        }
        let dir = crate::beneath::Dir::open(base).and_then(|b| b.create_dir_all(below))?;
        // Replacing: a stale file (or link) in the way is removed first.
        for e in tree
            .entries
            .iter()
            .filter(|e| !matches!(e, Entry::Dir { .. }))
        {
            let rel = Path::new(e.path());
            if let Some(found) = dir.entry(rel)?
                && found != crate::beneath::Entry::Dir
            {
                dir.remove(rel)?;
            }
        }
        tree.restore_into(store, &dir)?;
        files += tree
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count();
    }
    Ok(files)
}

/// Saves the paths under `key`. A keyed entry that exists is kept as it is (`Ok(false)`), unless
/// `update` (the per-project entry of a section without a key).
pub fn save(
    store: &LocalStore,
    scope: &Scope,
    key: &str,
    paths: &[CachePath],
    update: bool,
) -> Result<bool, CasError> {
    let dest = entry_path(store, scope, key);
    if !update && dest.exists() {
        return Ok(false);
    }
    let mut saved = Vec::new();
    for path in paths {
        if !path.root.is_dir() {
            continue;
        }
        let mut tree = Tree::scan(&path.root)?;
        if let Some(filter) = &path.filter {
            tree.entries.retain(|e| filter.is_match(e.path()));
        }
        for e in &tree.entries {
            if let Entry::File {
                path: rel, digest, ..
            } = e
            {
                store.put_file(&path.root.join(rel), digest)?;
            }
        }
        let digest = store.put_bytes(&tree.to_bytes())?;
        saved.push(SavedPath {
            pattern: path.pattern.clone(),
            root: path.root.clone(),
            tree: digest,
        });
    }
    let entry = PathsEntry {
        scope: scope.id(),
        key: key.to_string(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        paths: saved,
    };
    store.write_entry(&dest, &entry)?;
    Ok(true)
}

/// Whether the section restores and saves.
pub fn actions(cache: &Cache) -> (bool, bool) {
    match cache.action {
        Some(CacheAction::Restore) => (true, false),
        Some(CacheAction::Save) => (false, true),
        None => (true, true),
    }
}

/// `kiln hash-files`: one digest over the files matching the patterns (sorted, names and contents),
/// for cache keys that change exactly when the files do.
pub fn hash_files(dir: &Path, patterns: &[String]) -> Result<Digest, String> {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        set.add(
            GlobBuilder::new(p.trim_start_matches("./"))
                .literal_separator(true)
                .build()
                .map_err(|e| format!("`{p}` is not a valid pattern: {e}"))?,
        );
    }
    let set = set.build().map_err(|e| e.to_string())?;
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(dir).ok().map(Path::to_path_buf))
        .filter(|rel| set.is_match(rel))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no file matches {}", patterns.join(", ")));
    }
    let mut hasher = blake3::Hasher::new();
    for rel in files {
        let digest = crate::cas::hash_file(&dir.join(&rel)).map_err(|e| e.to_string())?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        hasher.update(&digest.0);
    }
    Ok(hasher.finalize().into())
}
