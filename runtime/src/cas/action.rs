//! The action cache: the digest of everything that decides a build's result -> that result.
//!
//! The key's inputs, and nothing else, are listed in [`KeyInputs`] (the README's "What makes a build
//! the same build" says the same in words). An entry is written last, after every blob it names, and
//! a hit whose blobs are gone is a miss: blobs verify themselves, entries are trusted only as far as
//! what they point to is there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tree::Tree;
use super::{CasError, Digest, LocalStore};

/// Everything that decides a build's result. Two builds with equal inputs give the same outputs, so
/// the second is restored rather than run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// kiln's version: a new kiln may build differently.
    pub kiln_version: String,
    /// The buildspec's content, normalised (comments, layout and key order do not count).
    pub buildspec: Digest,
    /// The source tree the build starts from.
    pub source: Digest,
    /// The environment the build sees, each value by digest (secrets are never kept in clear):
    /// passed-through host variables, `env.variables`, resolved secrets, `--env`.
    pub env: BTreeMap<String, Digest>,
    /// The shell commands run in.
    pub shell: String,
    /// The digest of every plugin the build can call, by name.
    pub plugins: BTreeMap<String, Digest>,
    /// Each secondary source's tree (`CODEBUILD_SRC_DIR_<name>`), by name; absent when there is
    /// none, so that a build without them keeps its key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, Digest>,
}

impl KeyInputs {
    /// The action cache key.
    pub fn key(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// What differs from an earlier build's inputs, in words, for `--explain-cache`.
    pub fn changes_since(&self, before: &KeyInputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.kiln_version != before.kiln_version {
            out.push(format!(
                "kiln's version changed ({} -> {})",
                before.kiln_version, self.kiln_version
            ));
        }
        if self.buildspec != before.buildspec {
            out.push("the buildspec changed".into());
        }
        if self.source != before.source {
            out.push("the source files changed".into());
        }
        if self.shell != before.shell {
            out.push(format!(
                "the shell changed ({} -> {})",
                before.shell, self.shell
            ));
        }
        diff_maps(&before.env, &self.env, "variable", &mut out);
        diff_maps(&before.plugins, &self.plugins, "plugin", &mut out);
        diff_maps(
            &before.secondary,
            &self.secondary,
            "secondary source",
            &mut out,
        );
        out
    }
}

fn diff_maps(
    before: &BTreeMap<String, Digest>,
    now: &BTreeMap<String, Digest>,
    what: &str,
    out: &mut Vec<String>,
) {
    for (name, digest) in now {
        match before.get(name) {
            None => out.push(format!("{what} {name} was added")),
            Some(old) if old != digest => out.push(format!("{what} {name} changed")),
            _ => {}
        }
    }
    for name in before.keys().filter(|k| !now.contains_key(*k)) {
        out.push(format!("{what} {name} was removed"));
    }
}

/// An artifact as cached: its folder as a tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedArtifact {
    pub identifier: String,
    pub name: String,
    pub tree: Digest,
}

/// What a successful build left, enough to give it again without running it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionEntry {
    pub inputs: KeyInputs,
    /// The build's result record (its status, phases, exported variables…), as JSON.
    pub result: serde_json::Value,
    pub artifacts: Vec<CachedArtifact>,
    /// The build's log.
    pub log: Digest,
}

impl LocalStore {
    fn entry_path(&self, key: &Digest) -> PathBuf {
        self.root().join("ac").join(format!("{}.json", key.hex()))
    }

    /// Writes an entry. Its blobs must be stored already: the entry is what makes them a hit.
    pub fn put_action(&self, key: &Digest, entry: &ActionEntry) -> Result<(), CasError> {
        self.write_entry(&self.entry_path(key), entry)
    }

    /// The entry for a key, when it is there and everything it names is in the store. An entry that
    /// cannot be read, or whose blobs are gone, is a miss (and a broken entry is removed).
    pub fn get_action(&self, key: &Digest) -> Option<(ActionEntry, Vec<Tree>)> {
        let path = self.entry_path(key);
        let bytes = std::fs::read(&path).ok()?;
        let Ok(entry) = serde_json::from_slice::<ActionEntry>(&bytes) else {
            let _ = std::fs::remove_file(&path);
            return None;
        };
        if !self.has(&entry.log) {
            return None;
        }
        let mut trees = Vec::new();
        for artifact in &entry.artifacts {
            let tree = Tree::load(self, &artifact.tree).ok()?;
            if !tree.complete_in(self) {
                return None;
            }
            trees.push(tree);
        }
        Some((entry, trees))
    }

    /// The number of action cache entries.
    pub fn action_count(&self) -> usize {
        std::fs::read_dir(self.root().join("ac"))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            kiln_version: "1".into(),
            buildspec: Digest::of(b"spec"),
            source: Digest::of(b"src"),
            env: BTreeMap::from([("A".into(), Digest::of(b"1"))]),
            shell: "sh".into(),
            plugins: BTreeMap::from([("shell".into(), Digest::of(b"wasm"))]),
            secondary: BTreeMap::new(),
        }
    }

    #[test]
    fn every_input_changes_the_key_and_is_explained() {
        let base = inputs();
        let mut changed = Vec::new();
        let mut i = base.clone();
        i.kiln_version = "2".into();
        changed.push(i);
        let mut i = base.clone();
        i.buildspec = Digest::of(b"other");
        changed.push(i);
        let mut i = base.clone();
        i.source = Digest::of(b"other");
        changed.push(i);
        let mut i = base.clone();
        i.env.insert("A".into(), Digest::of(b"2"));
        changed.push(i);
        let mut i = base.clone();
        i.shell = "bash".into();
        changed.push(i);
        let mut i = base.clone();
        i.plugins.insert("shell".into(), Digest::of(b"new"));
        changed.push(i);
        let mut i = base.clone();
        i.secondary.insert("assets".into(), Digest::of(b"tree"));
        changed.push(i);
        for i in changed {
            assert_ne!(i.key(), base.key(), "{i:?}");
            assert_eq!(i.changes_since(&base).len(), 1, "{i:?}");
        }
        assert_eq!(base.clone().key(), base.key());
    }

    #[test]
    fn a_build_without_secondary_sources_keeps_the_key_it_had() {
        // The field is left out of the key's bytes when empty, so entries cached before it
        // existed still match.
        let json = serde_json::to_string(&inputs()).unwrap();
        assert!(!json.contains("secondary"), "{json}");
    }
}
