//! A directory as one digest: a canonical, sorted list of entries (path, kind, digest, executable
//! bit, symlink target), itself stored as a blob. Empty directories are entries too.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{CasError, Digest, LocalStore, hash_file, io_err};

/// One entry of a tree; `path` is relative, with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    File {
        path: String,
        digest: Digest,
        size: u64,
        executable: bool,
    },
    Symlink {
        path: String,
        target: String,
    },
    Dir {
        path: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Symlink { path, .. } | Entry::Dir { path } => path,
        }
    }
}

/// A directory's contents, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Reads a directory: files hashed on all cores, symlinks kept as links, empty directories kept.
    pub fn scan(root: &Path) -> Result<Tree, CasError> {
        Self::scan_into(root, None)
    }

    /// [`Tree::scan`], storing each file the store lacks as it is hashed (one read of each file).
    fn scan_into(root: &Path, store: Option<&LocalStore>) -> Result<Tree, CasError> {
        let mut paths = Vec::new();
        for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
            let entry = entry.map_err(|e| CasError::Io {
                path: e.path().unwrap_or(root).to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("cannot walk")),
            })?;
            let rel = entry
                .path()
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ft = entry.file_type();
            if ft.is_dir() {
                let empty = std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    paths.push((rel, Kind::Dir));
                }
            } else if ft.is_symlink() {
                paths.push((rel, Kind::Symlink));
            } else if ft.is_file() {
                paths.push((rel, Kind::File));
            }
        }
        let mut entries = paths
            .into_par_iter()
            .map(|(rel, kind)| {
                let full = root.join(&rel);
                Ok(match kind {
                    Kind::Dir => Entry::Dir { path: rel },
                    Kind::Symlink => Entry::Symlink {
                        target: std::fs::read_link(&full)
                            .map_err(io_err(&full))?
                            .to_string_lossy()
                            .into_owned(),
                        path: rel,
                    },
                    Kind::File => {
                        use std::os::unix::fs::PermissionsExt;
                        let meta = std::fs::metadata(&full).map_err(io_err(&full))?;
                        let digest = match store {
                            // Small files are read once: hashed and, when new, stored from memory.
                            Some(store) if meta.len() <= SMALL => {
                                let bytes = std::fs::read(&full).map_err(io_err(&full))?;
                                store.put_bytes(&bytes)?
                            }
                            Some(store) => {
                                let digest = hash_file(&full)?;
                                store.put_file(&full, &digest)?;
                                digest
                            }
                            None => hash_file(&full)?,
                        };
                        Entry::File {
                            digest,
                            size: meta.len(),
                            executable: meta.permissions().mode() & 0o111 != 0,
                            path: rel,
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>, CasError>>()?;
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(Tree { entries })
    }

    /// The tree's canonical bytes (what its digest is of).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The tree's digest, without storing anything.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// Scans `root` and stores its files (only those the store lacks) and the tree itself.
    pub fn store_dir(store: &LocalStore, root: &Path) -> Result<(Digest, Tree), CasError> {
        let tree = Tree::scan_into(root, Some(store))?;
        let digest = store.put_bytes(&tree.to_bytes())?;
        Ok((digest, tree))
    }

    /// Loads a stored tree.
    pub fn load(store: &LocalStore, digest: &Digest) -> Result<Tree, CasError> {
        let bytes = store.get_bytes(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| CasError::BadEntry {
            path: store.blob_path(digest),
            message: format!("not a tree: {e}"),
        })
    }

    /// Whether every blob the tree names is in the store.
    pub fn complete_in(&self, store: &LocalStore) -> bool {
        self.entries.iter().all(|e| match e {
            Entry::File { digest, .. } => store.has(digest),
            _ => true,
        })
    }

    /// Writes the tree out below `dest` (which must exist and be empty), files in parallel, each
    /// verified as it is copied. Paths that would leave `dest` are refused.
    pub fn restore(&self, store: &LocalStore, dest: &Path) -> Result<(), CasError> {
        // `dest` is the caller's choice; below it nothing is followed.
        let dir = crate::beneath::Dir::open(dest)?;
        self.restore_into(store, &dir)
    }

    /// Writes the tree out below `dir`, never through a link: one already there (a build may leave
    /// links where a cache path is restored) or one of the tree's own.
    pub fn restore_into(
        &self,
        store: &LocalStore,
        dir: &crate::beneath::Dir,
    ) -> Result<(), CasError> {
        for entry in &self.entries {
            let rel = Path::new(entry.path());
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(CasError::BadEntry {
                    path: dir.path().join(rel),
                    message: "a tree entry leads outside its folder".into(),
                });
            }
            let parent = match entry {
                Entry::Dir { .. } => rel,
                _ => rel.parent().unwrap_or(Path::new("")),
            };
            dir.create_dir_all(parent)?;
        }
        self.entries.par_iter().try_for_each(|entry| {
            let rel = Path::new(entry.path());
            match entry {
                Entry::File {
                    digest, executable, ..
                } => {
                    let mode = if *executable { 0o755 } else { 0o644 };
                    let mut out = dir.create_file_mode(rel, mode)?;
                    store.copy_out_into(digest, &mut out).inspect_err(|_| {
                        let _ = dir.remove(rel);
                    })?;
                    if *executable {
                        // The umask may have taken bits the tree says the file has.
                        use std::os::unix::fs::PermissionsExt;
                        out.set_permissions(std::fs::Permissions::from_mode(0o755))
                            .map_err(io_err(&dir.path().join(rel)))?;
                    }
                    Ok(())
                }
                Entry::Symlink { target: link, .. } => {
                    dir.symlink(Path::new(link), rel).map_err(CasError::from)
                }
                Entry::Dir { .. } => Ok(()),
            }
        })
    }
}

/// Files up to this size are read whole rather than mapped and copied by the kernel.
const SMALL: u64 = 1 << 20;

enum Kind {
    File,
    Symlink,
    Dir,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_round_trips_with_modes_links_and_empty_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir_all(root.join("a/empty")).unwrap();
        std::fs::write(root.join("a/f.txt"), "f").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("a/f.txt", root.join("link")).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(store_dir.path()).unwrap();
        let (digest, tree) = Tree::store_dir(&store, root).unwrap();
        assert_eq!(Tree::load(&store, &digest).unwrap(), tree);

        let out = tempfile::tempdir().unwrap();
        tree.restore(&store, out.path()).unwrap();
        assert_eq!(Tree::scan(out.path()).unwrap(), tree);
        assert_eq!(
            std::fs::read_link(out.path().join("link")).unwrap(),
            Path::new("a/f.txt")
        );
    }

    #[test]
    fn the_digest_does_not_depend_on_mtimes() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("x"), "same").unwrap();
        let d1 = Tree::scan(a.path()).unwrap().digest();
        let f = std::fs::File::options()
            .append(true)
            .open(a.path().join("x"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(Tree::scan(a.path()).unwrap().digest(), d1);
    }
}
