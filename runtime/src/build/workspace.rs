//! The build workspace: a fresh copy of the source, so a build never changes the user's tree (unless
//! `--in-place`), and never sees what git ignores.
//!
//! For a folder of a git work tree (its root or below) the snapshot holds the tracked files and the untracked ones git does not
//! ignore (`git ls-files --cached --others --exclude-standard`), with their working-tree contents; for
//! any other directory, every file and empty directory. Symlinks are copied as symlinks. A `.kiln/`
//! folder (where artifacts go by default), the project's or one in any folder below it, is never
//! part of the source. No `.git` is copied: the repositories found (the project's, its submodules')
//! are listed, for [`git::Repository::lend`] to give the workspace a `.git` of its own once the
//! build is known to run.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::git;

/// The folder where kiln writes in a project: its default output (`.kiln/out`), never source.
pub const KILN_DIR: &str = ".kiln";

/// A source tree copied into a build workspace.
#[derive(Debug)]
pub struct Snapshot {
    /// How many files were copied.
    pub files: usize,
    /// The git commit the source was at, when it is a git checkout.
    pub git_head: Option<String>,
    /// The repositories checked out in the source whose history the workspace can be given, each
    /// with where it is in the workspace (empty: the project itself; else a submodule's path).
    pub repositories: Vec<(PathBuf, git::Repository)>,
    /// For each repository of the source that cannot lend its history, where it is and why.
    pub without_history: Vec<String>,
}

/// Why the source could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot copy {}: {source}", path.display())]
    Copy { path: PathBuf, source: io::Error },
    #[error("--source-version: {0}")]
    Revision(String),
    #[error("git could not list the files of {}: {message}", dir.display())]
    Git { dir: PathBuf, message: String },
}

/// Copies `source` (canonical) into the empty directory `dest`, leaving out the folders in
/// `exclude` (relative to `source`: where kiln writes this project's outputs). `work_tree` is
/// what git says of `source` ([`git::work_tree`]).
pub fn snapshot(
    source: &Path,
    work_tree: Option<git::WorkTree>,
    dest: &Path,
    exclude: &[PathBuf],
) -> Result<Snapshot, SnapshotError> {
    let mut snapshot = Snapshot {
        files: 0,
        git_head: None,
        repositories: Vec::new(),
        without_history: Vec::new(),
    };
    let files = match work_tree {
        Some(tree) => {
            snapshot.git_head = tree.head;
            snapshot.found(source, PathBuf::new(), tree.repository);
            git_files(source)?
        }
        None => walk_files(source)?,
    };
    let excluded = |rel: &Path| in_kiln_dir(rel) || exclude.iter().any(|e| rel.starts_with(e));
    for rel in files.iter().filter(|rel| !excluded(rel)) {
        let from = source.join(rel);
        let to = dest.join(rel);
        let copy_err = |e| SnapshotError::Copy {
            path: from.clone(),
            source: e,
        };
        let meta = match std::fs::symlink_metadata(&from) {
            Ok(m) => m,
            // Listed by git but deleted from the working tree: not part of the snapshot.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(copy_err(e)),
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(copy_err)?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(copy_err)?;
            std::os::unix::fs::symlink(target, &to).map_err(copy_err)?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to).map_err(copy_err)?;
        } else if meta.is_dir() {
            // An empty directory, or a git submodule (or a repository of its own, untracked):
            // copied whole but for its `.git`, and those of the repositories inside it.
            std::fs::create_dir_all(&to).map_err(copy_err)?;
            let (entries, repositories) = walk_repository(&from)?;
            for entry in entries {
                let f = from.join(&entry);
                let t = to.join(&entry);
                if let Some(parent) = t.parent() {
                    std::fs::create_dir_all(parent).map_err(copy_err)?;
                }
                let meta = std::fs::symlink_metadata(&f).map_err(copy_err)?;
                if meta.is_dir() {
                    std::fs::create_dir_all(&t).map_err(copy_err)?;
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&f).map_err(copy_err)?;
                    std::os::unix::fs::symlink(target, &t).map_err(copy_err)?;
                    snapshot.files += 1;
                } else if meta.is_file() {
                    std::fs::copy(&f, &t).map_err(copy_err)?;
                    snapshot.files += 1;
                }
            }
            for inner in repositories {
                let dir = from.join(&inner);
                let found = match dir.canonicalize().ok().and_then(|d| git::work_tree(&d)) {
                    Some(tree) => tree.repository,
                    None => Err("git does not read it as a repository".to_string()),
                };
                let at = if inner.as_os_str().is_empty() {
                    rel.clone()
                } else {
                    rel.join(inner)
                };
                snapshot.found(&dir, at, found);
            }
            continue;
        } else {
            continue;
        }
        snapshot.files += 1;
    }
    Ok(snapshot)
}

/// Writes the tree of `revision` of the repository checked out at `source` into the empty
/// directory `dest`, as git would check it out (files, executables, links; a submodule is an empty
/// folder), without touching the working tree: `--source-version`. Contents come from git's object
/// database as they are (no filter of the repository runs); every path is made below `dest`'s
/// handle, never through a link the tree itself holds. `.kiln/` folders are left out.
pub fn snapshot_at(
    source: &Path,
    work_tree: Option<git::WorkTree>,
    name: &str,
    dest: &Path,
) -> Result<Snapshot, SnapshotError> {
    use std::io::Write;
    let revision_err = SnapshotError::Revision;
    let tree = work_tree
        .ok_or_else(|| revision_err(format!("{} is not in a git repository", source.display())))?;
    if tree.root.as_deref() != Some(source) {
        return Err(revision_err(format!(
            "{} is not the root of its git repository; build the repository's root",
            source.display()
        )));
    }
    let revision = git::resolve(source, name).map_err(revision_err)?;
    let entries = git::tree_of(source, &revision.commit).map_err(revision_err)?;
    let root = crate::beneath::Dir::open(dest).map_err(|e| revision_err(e.to_string()))?;
    let copy_err = |path: &Path, e: String| SnapshotError::Copy {
        path: dest.join(path),
        source: io::Error::other(e),
    };
    // The folder an entry goes in, made below `dest`'s handle.
    let folder_of = |path: &Path| match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => root.create_dir_all(parent),
        None => crate::beneath::Dir::open(dest),
    };
    let kept: Vec<&git::TreeEntry> = entries.iter().filter(|e| !in_kiln_dir(&e.path)).collect();
    let mut files = 0;
    // Folders (submodules) and files first, links last: a link of the tree never leads a later
    // file elsewhere (beneath refuses to go through one anyway).
    for entry in kept.iter().filter(|e| e.mode == "160000") {
        root.create_dir_all(&entry.path)
            .map_err(|e| copy_err(&entry.path, e.to_string()))?;
    }
    let blobs: Vec<&&git::TreeEntry> = kept
        .iter()
        .filter(|e| e.mode == "100644" || e.mode == "100755" || e.mode == "120000")
        .collect();
    let ids: Vec<&str> = blobs.iter().map(|e| e.id.as_str()).collect();
    let mut links = Vec::new();
    git::read_blobs(source, &ids, |i, body| {
        let entry = blobs[i];
        if entry.mode == "120000" {
            let mut target = Vec::new();
            body.take(4096)
                .read_to_end(&mut target)
                .map_err(|e| e.to_string())?;
            links.push((entry.path.clone(), target));
            return Ok(());
        }
        let dir = folder_of(&entry.path).map_err(|e| e.to_string())?;
        let name = entry
            .path
            .file_name()
            .map(Path::new)
            .ok_or("a path without a name")?;
        let mode = if entry.mode == "100755" { 0o755 } else { 0o644 };
        let mut file = dir
            .create_file_mode(name, mode)
            .map_err(|e| e.to_string())?;
        io::copy(body, &mut file).map_err(|e| e.to_string())?;
        file.flush().map_err(|e| e.to_string())?;
        files += 1;
        Ok(())
    })
    .map_err(|e| revision_err(format!("reading {}: {e}", revision.commit)))?;
    for (path, target) in links {
        use std::os::unix::ffi::OsStringExt;
        let target = PathBuf::from(std::ffi::OsString::from_vec(target));
        let dir = folder_of(&path).map_err(|e| copy_err(&path, e.to_string()))?;
        let name = path.file_name().map(Path::new).unwrap_or(Path::new(""));
        dir.symlink(&target, name)
            .map_err(|e| copy_err(&path, e.to_string()))?;
        files += 1;
    }
    let mut snapshot = Snapshot {
        files,
        git_head: Some(revision.commit.clone()),
        repositories: Vec::new(),
        without_history: Vec::new(),
    };
    let repository = tree.repository.map(|r| git::Repository {
        head: revision.commit.clone(),
        branch: revision.branch.clone(),
        ..r
    });
    snapshot.found(source, PathBuf::new(), repository);
    Ok(snapshot)
}

impl Snapshot {
    /// Notes a repository found at `host` (`rel` in the workspace), or why it lends no history.
    fn found(&mut self, host: &Path, rel: PathBuf, repository: Result<git::Repository, String>) {
        match repository {
            Ok(repository) => self.repositories.push((rel, repository)),
            Err(why) => self
                .without_history
                .push(format!("{}: {why}", host.display())),
        }
    }
}

/// The most entries a scratch folder may hold to be removed at once by
/// [`Scratch::remove_in_background`] rather than by a remover of its own.
const SMALL_SCRATCH: usize = 2000;

/// A build's scratch folder: its workspace, temp dir, HOME, private layer and helper programs.
/// Removed when dropped (unreadable folders a build left made removable first).
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(dir: tempfile::TempDir) -> Self {
        Self { dir: Some(dir) }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// Removes it now.
    pub fn remove(mut self) {
        if let Some(dir) = self.dir.take() {
            remove_now(&dir.keep());
        }
    }

    /// Leaves its removal to a process of its own and returns at once, so that a large workspace
    /// costs the user no wait after the build's result. The process is `sh` with `rm` (and `chmod`
    /// for folders a build left unreadable), started in a process group of its own (Ctrl-C at the
    /// terminal does not stop it half-way) and left to init (no zombie, however long kiln runs).
    /// Were it stopped anyway, the folder is named after kiln's process, and the next build
    /// removes it when that process is gone. Where no `sh` can start, it is removed now.
    pub fn remove_in_background(mut self) {
        use std::os::unix::process::CommandExt;
        let Some(dir) = self.dir.take() else {
            return;
        };
        let path = dir.keep();
        // A small folder goes at once: starting the remover costs more (a shell, a few ms) than
        // deleting a few hundred entries.
        let entries = walkdir::WalkDir::new(&path)
            .into_iter()
            .take(SMALL_SCRATCH + 1)
            .count();
        if entries <= SMALL_SCRATCH {
            remove_now(&path);
            return;
        }
        // The inner shell outlives the outer one, which ends at once and is waited for here.
        let started = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "(rm -rf -- \"$1\" 2>/dev/null || { chmod -R u+rwx -- \"$1\"; rm -rf -- \"$1\"; }) </dev/null >/dev/null 2>&1 &",
                "kiln-remove",
            ])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .status();
        if !started.is_ok_and(|s| s.success()) {
            remove_now(&path);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            remove_now(&dir.keep());
        }
    }
}

fn remove_now(path: &Path) {
    let removing = std::time::Instant::now();
    crate::sandbox::os::remove_scratch(path);
    tracing::debug!("build: scratch removed in {:?}", removing.elapsed());
}

/// Whether `rel` is in a `.kiln/` folder: it holds what kiln wrote (artifacts of earlier builds of
/// this project, or of a project in a folder below it, built on its own), not source. git lists what
/// is tracked there, and a project without git has it on disk, so both listings are filtered.
fn in_kiln_dir(rel: &Path) -> bool {
    rel.parent()
        .is_some_and(|folder| folder.iter().any(|name| name == KILN_DIR))
}

fn git_files(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let out = git::command(
        dir,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )
    .output()
    .map_err(|e| SnapshotError::Git {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(SnapshotError::Git {
            dir: dir.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(p)))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk_files(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    walk(dir, false).map(|(files, _)| files)
}

/// The entries of a repository checked out inside the project (a submodule), as [`walk_files`]
/// lists them but for every `.git`, and the folders (relative to `dir`) that had one: `dir` itself,
/// and the repositories inside it.
fn walk_repository(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SnapshotError> {
    walk(dir, true)
}

fn walk(dir: &Path, repositories: bool) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SnapshotError> {
    let mut files = Vec::new();
    let mut found = Vec::new();
    // `.kiln/` folders are not walked: they may hold many artifacts, none of them source.
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() && e.file_name() == KILN_DIR
                    || repositories && e.file_name() == ".git")
        });
    for entry in walk {
        let entry = entry.map_err(|e| SnapshotError::Copy {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk failed")),
        })?;
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        if repositories && entry.file_type().is_dir() {
            if std::fs::symlink_metadata(entry.path().join(".git")).is_ok() {
                found.push(rel.to_path_buf());
            }
            // A folder whose only entry is a `.git` is copied as an empty folder.
            let only_git = std::fs::read_dir(entry.path())
                .is_ok_and(|d| d.flatten().all(|e| e.file_name() == ".git"));
            if only_git && entry.depth() > 0 {
                files.push(rel.to_path_buf());
            }
            continue;
        }
        // Empty directories are part of the source too (git has none to list).
        if entry.file_type().is_dir()
            && std::fs::read_dir(entry.path()).map_or(true, |mut d| d.next().is_some())
        {
            continue;
        }
        files.push(rel.to_path_buf());
    }
    Ok((files, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone_within(path: &Path, seconds: u64) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while std::time::Instant::now() < until {
            if std::fs::symlink_metadata(path).is_err() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// A scratch folder as a build leaves it: a workspace, and a folder it made unreadable.
    fn left_by_a_build(modules: usize) -> (Scratch, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new(tempfile::tempdir().unwrap());
        let path = scratch.path().to_path_buf();
        for i in 0..modules {
            let dir = path.join(format!("src/node_modules/m{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.js"), "x").unwrap();
        }
        let locked = path.join("work/work");
        std::fs::create_dir_all(locked.join("inner")).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        (scratch, path)
    }

    #[test]
    fn a_scratch_folder_removed_in_the_background_goes_whole() {
        // Past SMALL_SCRATCH entries (two per module): the remover of its own takes it.
        let (scratch, path) = left_by_a_build(SMALL_SCRATCH);
        scratch.remove_in_background();
        assert!(gone_within(&path, 20), "{} is still there", path.display());
    }

    #[test]
    fn a_small_scratch_folder_is_removed_before_the_call_returns() {
        let (scratch, path) = left_by_a_build(20);
        scratch.remove_in_background();
        assert!(std::fs::symlink_metadata(&path).is_err());
    }

    #[test]
    fn a_dropped_scratch_folder_is_removed_at_once() {
        let (scratch, path) = left_by_a_build(200);
        drop(scratch);
        assert!(std::fs::symlink_metadata(&path).is_err());
    }
}
