//! The build workspace: a fresh copy of the source, so a build never changes the user's tree (unless
//! `--in-place`), and never sees what git ignores.
//!
//! For a folder of a git work tree (its root or below) the snapshot holds the tracked files and the untracked ones git does not
//! ignore (`git ls-files --cached --others --exclude-standard`), with their working-tree contents; for
//! any other directory, every file and empty directory. Symlinks are copied as symlinks. A `.kiln/`
//! folder (where artifacts go by default), the project's or one in any folder below it, is never
//! part of the source.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder where kiln writes in a project: its default output (`.kiln/out`), never source.
pub const KILN_DIR: &str = ".kiln";

/// A source tree copied into a build workspace.
#[derive(Debug)]
pub struct Snapshot {
    /// How many files were copied.
    pub files: usize,
    /// The git commit the source was at, when it is a git checkout.
    pub git_head: Option<String>,
}

/// Why the source could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot copy {}: {source}", path.display())]
    Copy { path: PathBuf, source: io::Error },
    #[error("git could not list the files of {}: {message}", dir.display())]
    Git { dir: PathBuf, message: String },
}

/// Copies `source` into the empty directory `dest`, leaving out the folders in `exclude` (relative
/// to `source`: where kiln writes this project's outputs).
pub fn snapshot(
    source: &Path,
    dest: &Path,
    exclude: &[PathBuf],
) -> Result<Snapshot, SnapshotError> {
    let (in_git, head) = git_work_tree(source);
    let files = if in_git {
        git_files(source)?
    } else {
        walk_files(source)?
    };
    let mut count = 0;
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
            // An empty directory, or a git submodule (copied whole).
            std::fs::create_dir_all(&to).map_err(copy_err)?;
            for entry in walk_files(&from)? {
                let f = from.join(&entry);
                let t = to.join(&entry);
                if let Some(parent) = t.parent() {
                    std::fs::create_dir_all(parent).map_err(copy_err)?;
                }
                if std::fs::symlink_metadata(&f).is_ok_and(|m| m.is_dir()) {
                    std::fs::create_dir_all(&t).map_err(copy_err)?;
                } else {
                    std::fs::copy(&f, &t).map_err(copy_err)?;
                    count += 1;
                }
            }
            continue;
        } else {
            continue;
        }
        count += 1;
    }
    Ok(Snapshot {
        files: count,
        git_head: head,
    })
}

/// Whether `rel` is in a `.kiln/` folder: it holds what kiln wrote (artifacts of earlier builds of
/// this project, or of a project in a folder below it, built on its own), not source. git lists what
/// is tracked there, and a project without git has it on disk, so both listings are filtered.
fn in_kiln_dir(rel: &Path) -> bool {
    rel.parent()
        .is_some_and(|folder| folder.iter().any(|name| name == KILN_DIR))
}

/// Settings given to every git kiln runs on a project, over the project's own `.git/config`:
/// each switches off something that would run a program the project names (a project's
/// configuration is its author's, and kiln runs git unconfined, on the host). `ls-files` and
/// `rev-parse` trigger few of them; the rest are off in case a later git or a later call does.
/// Filter drivers (`filter.<name>.clean`) cannot be switched off by name in advance: kiln only
/// runs commands that do not read file contents through them. `safe.directory` is left as the
/// user set it, so git still refuses a repository owned by someone else.
const GIT_SAFE_CONFIG: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.askPass=",
    "credential.helper=",
    "diff.external=",
    "core.attributesFile=/dev/null",
    "protocol.allow=never",
    "submodule.recurse=false",
];

/// `git <args>` for the project folder `dir`, with nothing in the project able to run a program
/// (see [`GIT_SAFE_CONFIG`]) and nothing in kiln's environment able to point git elsewhere: every
/// `GIT_*` variable (`GIT_DIR`, `GIT_CONFIG_PARAMETERS`, `GIT_EXEC_PATH`...) is cleared. Optional
/// locks are off, so git does not rewrite the project's index while kiln reads it.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .arg("--no-pager");
    for setting in GIT_SAFE_CONFIG {
        cmd.arg("-c").arg(setting);
    }
    cmd.arg("-C").arg(dir).args(args);
    cmd
}

/// What `git -C dir <args>` prints, when git is there and succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = git_command(dir, args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `dir` is inside a git work tree (its root or any folder below it), and its commit when it
/// has one. One git process for both: each costs milliseconds, which a cached build notices.
fn git_work_tree(dir: &Path) -> (bool, Option<String>) {
    let out = git_command(
        dir,
        &[
            "rev-parse",
            "--is-inside-work-tree",
            "--verify",
            "-q",
            "HEAD",
        ],
    )
    .output();
    let Ok(out) = out else {
        return (false, None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let inside = lines.next() == Some("true");
    let head = lines
        .next()
        .filter(|h| h.len() == 40 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string);
    (inside, head)
}

/// The commit checked out in `dir`, when it is a git checkout with at least one commit.
pub fn git_head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "HEAD"])
}

fn git_files(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let out = git_command(
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
    let mut files = Vec::new();
    // `.kiln/` folders are not walked: they may hold many artifacts, none of them source.
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !(e.file_type().is_dir() && e.file_name() == KILN_DIR));
    for entry in walk {
        let entry = entry.map_err(|e| SnapshotError::Copy {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk failed")),
        })?;
        // Empty directories are part of the source too (git has none to list).
        if entry.file_type().is_dir()
            && std::fs::read_dir(entry.path()).map_or(true, |mut d| d.next().is_some())
        {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(dir) {
            files.push(rel.to_path_buf());
        }
    }
    Ok(files)
}
