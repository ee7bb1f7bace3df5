//! Where a build's project is when the command line does not name its folder: the nearest folder at
//! or above the current one that holds a buildspec, as cargo finds `Cargo.toml`, stopping at the
//! repository's root (or the filesystem's). Inside a git repository the repository's root is the
//! source and the buildspec is named relative to it, as CodeBuild's `buildspec` override names it
//! (its `CODEBUILD_SRC_DIR` is the repository's root).
//!
//! A file found in a folder above the current one that belongs to another user (neither kiln's user
//! nor root) is not taken, as git refuses a repository another user owns: anyone may write `/tmp`,
//! and a `buildspec.yml` or `kiln.toml` left there must not decide what a build of `/tmp/mine` runs.

use std::path::{Path, PathBuf};

use super::{BuildError, git};

/// The names a project's buildspec may have, in the order they are looked for.
pub const BUILDSPEC_NAMES: [&str; 3] = ["buildspec.yml", "buildspec.yaml", "buildspec.json"];

/// A project found: the folder that is its source, and its buildspec relative to it (`None`: one of
/// [`BUILDSPEC_NAMES`] at the source's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub source: PathBuf,
    pub buildspec: Option<PathBuf>,
}

/// The root of the git work tree holding `dir`, if any.
pub fn repository_root(dir: &Path) -> Option<PathBuf> {
    git::work_tree(dir).and_then(|t| t.root)
}

/// The folders from `start` up to its repository's root, or up to `/` outside a repository; and
/// that last folder.
pub fn upward_folders(start: &Path) -> Result<(Vec<PathBuf>, PathBuf), BuildError> {
    let start = start.canonicalize().map_err(BuildError::io(start))?;
    let root = repository_root(&start).filter(|r| start.starts_with(r));
    let mut folders = Vec::new();
    for dir in start.ancestors() {
        folders.push(dir.to_path_buf());
        if root.as_deref() == Some(dir) {
            break;
        }
    }
    let last = folders.last().cloned().unwrap_or_else(|| start.clone());
    Ok((folders, last))
}

/// The project of the nearest folder at or above `start` holding a buildspec.
pub fn upward(start: &Path) -> Result<Located, BuildError> {
    let (folders, last) = upward_folders(start)?;
    for (i, dir) in folders.iter().enumerate() {
        if let Some(name) = BUILDSPEC_NAMES.iter().find(|n| dir.join(n).is_file()) {
            if i > 0 {
                refuse_foreign(&dir.join(name))?;
            }
            return Ok(in_repository(dir, Path::new(name)));
        }
    }
    Err(BuildError::NoBuildspecAbove {
        start: folders.first().cloned().unwrap_or_default(),
        last,
    })
}

/// An error when `path` belongs to a user other than kiln's own and root (see the module's
/// comment).
pub fn refuse_foreign(path: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path).map_err(BuildError::io(path))?.uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    if uid == own || uid == 0 {
        Ok(())
    } else {
        Err(BuildError::Foreign {
            path: path.to_path_buf(),
            uid,
        })
    }
}

/// The project of a buildspec file named where a folder was expected (`kiln build ci/buildspec.yml`):
/// its folder, or that folder's repository's root.
pub fn from_file(file: &Path) -> Result<Located, BuildError> {
    let file = file.canonicalize().map_err(BuildError::io(file))?;
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Err(BuildError::NoBuildspec(file));
    };
    let mut located = in_repository(dir, Path::new(name));
    if located.buildspec.is_none() {
        located.buildspec = Some(PathBuf::from(name));
    }
    Ok(located)
}

/// `dir/name` as a project: the repository's root with the buildspec's path in it, or `dir` itself.
fn in_repository(dir: &Path, name: &Path) -> Located {
    match repository_root(dir).filter(|r| dir.starts_with(r) && r != dir) {
        Some(root) => Located {
            buildspec: dir.strip_prefix(&root).ok().map(|rel| rel.join(name)),
            source: root,
        },
        None => Located {
            source: dir.to_path_buf(),
            buildspec: None,
        },
    }
}
