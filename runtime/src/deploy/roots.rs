//! The deployment roots kiln has deployed to, remembered in its state dir, so that `kiln
//! deployments` finds deployments made with another `--root` without being told where.
//!
//! The list is one file, `deployment-roots`, one absolute path a line, rewritten whole (a temp file
//! renamed over it) each time a root is added. Roots that no longer exist are dropped then and skipped
//! when read. Two deployments adding roots at the same moment may lose one of the two lines; the next
//! deployment to that root adds it again. A root whose path holds a line break is not remembered.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::DeployError;

/// The file of remembered roots in a state dir.
fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("deployment-roots")
}

/// The remembered roots that exist, in the order they were first used, each once.
pub fn known(state_dir: &Path) -> Vec<PathBuf> {
    let bytes = std::fs::read(file(state_dir)).unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let root = PathBuf::from(std::ffi::OsString::from_vec(line.to_vec()));
        if root.is_dir() && !out.contains(&root) {
            out.push(root);
        }
    }
    out
}

/// Remembers `root` (made absolute; it should exist, as after a deployment) in the state dir.
pub fn remember(state_dir: &Path, root: &Path) -> Result<(), DeployError> {
    let root = root
        .canonicalize()
        .or_else(|_| std::path::absolute(root))
        .map_err(|e| DeployError::io(root, e))?;
    if root.as_os_str().as_bytes().contains(&b'\n') {
        return Ok(());
    }
    let mut roots = known(state_dir);
    if roots.contains(&root) {
        return Ok(());
    }
    roots.push(root);
    let mut bytes = Vec::new();
    for r in &roots {
        bytes.extend_from_slice(r.as_os_str().as_bytes());
        bytes.push(b'\n');
    }
    super::write_atomic(&file(state_dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_remembered_once_and_gone_ones_dropped() {
        let state = tempfile::tempdir().expect("temp dir");
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        assert!(known(state.path()).is_empty());
        remember(state.path(), a.path()).expect("remembered");
        remember(state.path(), b.path()).expect("remembered");
        remember(state.path(), a.path()).expect("remembered");
        let canonical = |d: &tempfile::TempDir| d.path().canonicalize().expect("exists");
        assert_eq!(known(state.path()), [canonical(&a), canonical(&b)]);
        let b_path = canonical(&b);
        drop(b);
        assert_eq!(known(state.path()), [canonical(&a)]);
        let c = tempfile::tempdir().expect("temp dir");
        remember(state.path(), c.path()).expect("remembered");
        let text = std::fs::read_to_string(file(state.path())).expect("written");
        assert!(!text.contains(&*b_path.to_string_lossy()), "{text}");
    }
}
