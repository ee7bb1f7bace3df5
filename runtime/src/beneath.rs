//! Paths beneath a directory handle, never through a link: how kiln writes, renames and deletes
//! where a project, a revision or a hook may have planted symlinks.
//!
//! A [`Dir`] is a directory kiln opened (its own path is the caller's choice, links and all). Every
//! relative path given to it afterwards is resolved with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`: it cannot climb out with `..` or an absolute path, and a symlink anywhere
//! along it, the last component included, is refused with [`BeneathError::Link`] naming the link
//! and where it points. Renames and removals act on the entry itself (`renameat`, `unlinkat`
//! relative to the resolved parent), so a link in the way is moved or removed, never followed.
//!
//! Where the kernel has no `openat2` (before Linux 5.6, or a seccomp profile that refuses it), the
//! same resolution is done one component at a time with `O_NOFOLLOW`.
//!
//! What this module does not decide: which directory is trusted as the root. Callers open that
//! with [`Dir::open`] and say in a comment why its own links are acceptable.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path beneath a directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error(
        "{} is a symlink (to {}): kiln does not write, rename or delete through links here; \
         replace the link with a real folder, or choose another place",
        path.display(),
        target.display()
    )]
    Link { path: PathBuf, target: PathBuf },
    #[error(
        "{}: not a path below {} (it is absolute or climbs out with `..`)",
        path.display(),
        root.display()
    )]
    Outside { path: PathBuf, root: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What is at a path, looked at without following a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File,
    Symlink(PathBuf),
    Other,
}

/// A directory kiln opened; paths below it are resolved beneath it without following links.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS);
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Opens `path` as a root. Links in `path` itself are followed: it is the caller's trusted
    /// place (a folder the user named, a destination the administrator chose).
    pub fn open(path: &Path) -> Result<Dir, BeneathError> {
        let fd = rfs::open(path, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(path, e))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this directory was reached by (for messages and for tools that take paths).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory at `rel` below this one.
    pub fn open_dir(&self, rel: &Path) -> Result<Dir, BeneathError> {
        let fd = self.resolve(rel, DIR_FLAGS, Mode::empty())?;
        Ok(Dir {
            fd,
            path: self.path.join(rel),
        })
    }

    /// Opens the directory at `rel`, making the folders of it that are missing.
    pub fn create_dir_all(&self, rel: &Path) -> Result<Dir, BeneathError> {
        let mut dir = self.open_dir(Path::new(""))?;
        for name in self.names(rel)? {
            match rfs::mkdirat(&dir.fd, name, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err(&dir.path.join(name), e)),
            }
            dir = dir.open_dir(Path::new(name))?;
        }
        Ok(dir)
    }

    /// Makes a new folder `<prefix><random>` (mode 0700) and returns its name and handle.
    pub fn create_temp_dir(&self, prefix: &str) -> Result<(OsString, Dir), BeneathError> {
        let mut last = Errno::EXIST;
        for _ in 0..16 {
            let simple = uuid::Uuid::new_v4().simple().to_string();
            let name = OsString::from(format!("{prefix}{}", &simple[..12]));
            match rfs::mkdirat(&self.fd, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let dir = self.open_dir(Path::new(&name))?;
                    return Ok((name, dir));
                }
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(io_err(&self.path.join(prefix), last))
    }

    /// Creates the file `rel` (it must not exist yet) for writing.
    pub fn create_file(&self, rel: &Path) -> Result<std::fs::File, BeneathError> {
        self.create_file_mode(rel, 0o666)
    }

    /// Creates the file `rel` (it must not exist yet) for writing, with `mode` (less the umask).
    pub fn create_file_mode(&self, rel: &Path, mode: u32) -> Result<std::fs::File, BeneathError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = self.resolve(rel, flags, Mode::from_raw_mode(mode))?;
        Ok(std::fs::File::from(fd))
    }

    /// Makes the folder `rel` (it must not exist yet; its parent must).
    pub fn create_dir(&self, rel: &Path, mode: u32) -> Result<(), BeneathError> {
        let (parent, name) = self.split(rel)?;
        rfs::mkdirat(&parent.fd, &name, Mode::from_raw_mode(mode))
            .map_err(|e| io_err(&self.path.join(rel), e))
    }

    /// What is at `rel`, without following a link there; `None` when nothing is.
    pub fn entry(&self, rel: &Path) -> Result<Option<Entry>, BeneathError> {
        let (parent, name) = match self.split(rel) {
            Ok(split) => split,
            // A folder on the way is missing: nothing is there either.
            Err(BeneathError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let stat = match rfs::statat(&parent.fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err(&self.path.join(rel), e)),
        };
        Ok(Some(match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Entry::Dir,
            FileType::RegularFile => Entry::File,
            FileType::Symlink => Entry::Symlink(parent.link_target(&name)),
            _ => Entry::Other,
        }))
    }

    /// Renames `from` (below this directory) to `to` (below `to_dir`), replacing what `to` names
    /// as `rename(2)` does. Neither is followed if it is a link: the entry itself moves.
    pub fn rename(&self, from: &Path, to_dir: &Dir, to: &Path) -> Result<(), BeneathError> {
        let (from_parent, from_name) = self.split(from)?;
        let (to_parent, to_name) = to_dir.split(to)?;
        rfs::renameat(&from_parent.fd, &from_name, &to_parent.fd, &to_name)
            .map_err(|e| io_err(&to_dir.path.join(to), e))
    }

    /// Swaps `from` (below this directory) and `to` (below `to_dir`) in one step, so that whoever
    /// looks at either sees the old or the new entry, never none. Neither is followed.
    pub fn exchange(&self, from: &Path, to_dir: &Dir, to: &Path) -> Result<(), BeneathError> {
        let (from_parent, from_name) = self.split(from)?;
        let (to_parent, to_name) = to_dir.split(to)?;
        rfs::renameat_with(
            &from_parent.fd,
            &from_name,
            &to_parent.fd,
            &to_name,
            rfs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_err(&to_dir.path.join(to), e))
    }

    /// Makes the symlink `rel` pointing at `target` (which is stored, not resolved).
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<(), BeneathError> {
        let (parent, name) = self.split(rel)?;
        rfs::symlinkat(target, &parent.fd, &name).map_err(|e| io_err(&self.path.join(rel), e))
    }

    /// Removes the file, link or empty folder at `rel`; a link is removed, not what it points at.
    pub fn remove(&self, rel: &Path) -> Result<(), BeneathError> {
        let (parent, name) = self.split(rel)?;
        let flags = match rfs::statat(&parent.fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                AtFlags::REMOVEDIR
            }
            _ => AtFlags::empty(),
        };
        rfs::unlinkat(&parent.fd, &name, flags).map_err(|e| io_err(&self.path.join(rel), e))
    }

    /// Removes `rel` and everything below it, never following a link: links inside are removed
    /// as links. For trees kiln made itself (staging folders, old copies it moved aside).
    pub fn remove_tree(&self, rel: &Path) -> Result<(), BeneathError> {
        let (parent, name) = self.split(rel)?;
        parent.remove_entry(&name)
    }

    fn remove_entry(&self, name: &OsStr) -> Result<(), BeneathError> {
        let path = self.path.join(name);
        let stat = match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_err(&path, e)),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| io_err(&path, e));
        }
        let fd = rfs::openat(&self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| io_err(&path, e))?;
        let child = Dir { fd, path };
        let mut names = Vec::new();
        for entry in rfs::Dir::read_from(&child.fd).map_err(|e| io_err(&child.path, e))? {
            let entry = entry.map_err(|e| io_err(&child.path, e))?;
            let bytes = entry.file_name().to_bytes();
            if bytes != b"." && bytes != b".." {
                names.push(OsStr::from_bytes(bytes).to_os_string());
            }
        }
        for n in &names {
            child.remove_entry(n)?;
        }
        rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(|e| io_err(&child.path, e))
    }

    /// The parent directory of `rel` (opened beneath) and its last component.
    fn split(&self, rel: &Path) -> Result<(Dir, OsString), BeneathError> {
        let names = self.names(rel)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(self.outside(rel));
        };
        let parent: PathBuf = parents.iter().collect();
        Ok((self.open_dir(&parent)?, last.to_os_string()))
    }

    /// The components of `rel`, each a plain name; anything else would lead out.
    fn names<'a>(&self, rel: &'a Path) -> Result<Vec<&'a OsStr>, BeneathError> {
        rel.components()
            .map(|c| match c {
                Component::Normal(name) => Ok(name),
                _ => Err(self.outside(rel)),
            })
            .collect()
    }

    fn outside(&self, rel: &Path) -> BeneathError {
        BeneathError::Outside {
            path: rel.to_path_buf(),
            root: self.path.clone(),
        }
    }

    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, BeneathError> {
        let names = self.names(rel)?;
        let rel_or_dot = if names.is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let opened = match rfs::openat2(&self.fd, rel_or_dot, flags, mode, RESOLVE) {
            Err(Errno::NOSYS | Errno::PERM) => self.resolve_by_component(&names, flags, mode),
            other => other,
        };
        opened.map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => self
                .find_link(&names)
                .unwrap_or_else(|| io_err(&self.path.join(rel), e)),
            e => io_err(&self.path.join(rel), e),
        })
    }

    /// `resolve` without `openat2`: one `O_NOFOLLOW` step at a time.
    fn resolve_by_component(
        &self,
        names: &[&OsStr],
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        let Some((last, parents)) = names.split_last() else {
            return rfs::openat(&self.fd, ".", flags, mode);
        };
        let mut dir: Option<OwnedFd> = None;
        for name in parents {
            let at = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
            dir = Some(rfs::openat(
                at,
                *name,
                DIR_FLAGS | OFlags::NOFOLLOW,
                Mode::empty(),
            )?);
        }
        let at = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
        rfs::openat(at, *last, flags | OFlags::NOFOLLOW, mode)
    }

    /// The first link along `names`, as the error that names it.
    fn find_link(&self, names: &[&OsStr]) -> Option<BeneathError> {
        let mut at = Dir {
            fd: rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty()).ok()?,
            path: self.path.clone(),
        };
        for name in names {
            let stat = rfs::statat(&at.fd, *name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                return Some(BeneathError::Link {
                    path: at.path.join(name),
                    target: at.link_target(name),
                });
            }
            let fd =
                rfs::openat(&at.fd, *name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()).ok()?;
            at = Dir {
                fd,
                path: at.path.join(name),
            };
        }
        None
    }

    fn link_target(&self, name: &OsStr) -> PathBuf {
        rfs::readlinkat(&self.fd, name, Vec::new())
            .map(|t| PathBuf::from(OsStr::from_bytes(t.as_bytes())))
            .unwrap_or_else(|_| PathBuf::from("?"))
    }
}

fn io_err(path: &Path, e: Errno) -> BeneathError {
    BeneathError::Io {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_link_anywhere_along_the_path_is_refused_and_named() {
        let (tmp, dir) = root();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("a/link")).unwrap();
        for rel in ["a/link", "a/link/deeper"] {
            match dir.create_dir_all(Path::new(rel)) {
                Err(BeneathError::Link { path, target }) => {
                    assert_eq!(path, tmp.path().join("a/link"));
                    assert_eq!(target, elsewhere.path());
                }
                other => panic!("{rel}: expected the link to be refused, got {other:?}"),
            }
        }
        assert!(matches!(
            dir.create_file(Path::new("a/link/file")),
            Err(BeneathError::Link { .. })
        ));
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        let (_tmp, dir) = root();
        for rel in ["../x", "/etc", "a/../../x"] {
            assert!(
                matches!(
                    dir.create_dir_all(Path::new(rel)),
                    Err(BeneathError::Outside { .. })
                ),
                "{rel}"
            );
        }
    }

    #[test]
    fn nothing_is_below_a_missing_folder() {
        let (tmp, dir) = root();
        assert_eq!(dir.entry(Path::new("missing/deeper/file")).unwrap(), None);
        std::fs::write(tmp.path().join("file"), "").unwrap();
        assert_eq!(dir.entry(Path::new("file")).unwrap(), Some(Entry::File));
    }

    #[test]
    fn a_tree_is_removed_without_following_its_links() {
        let (tmp, dir) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "keep").unwrap();
        std::fs::create_dir_all(tmp.path().join("t/sub")).unwrap();
        std::fs::write(tmp.path().join("t/sub/f"), "f").unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("t/sub/out")).unwrap();
        dir.remove_tree(Path::new("t")).unwrap();
        assert!(!tmp.path().join("t").exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn renames_move_links_themselves() {
        let (tmp, dir) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("l")).unwrap();
        assert_eq!(
            dir.entry(Path::new("l")).unwrap(),
            Some(Entry::Symlink(outside.path().to_path_buf()))
        );
        dir.rename(Path::new("l"), &dir, Path::new("m")).unwrap();
        assert!(
            std::fs::symlink_metadata(tmp.path().join("m"))
                .unwrap()
                .is_symlink()
        );
        assert!(outside.path().is_dir());
    }
}
