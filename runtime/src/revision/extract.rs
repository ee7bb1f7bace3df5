//! Safe extraction of a revision: nothing lands outside the target, and nothing half-extracted is
//! ever visible.
//!
//! Refused, with the entry named: absolute paths, `..` components, symlinks whose target leaves the
//! target folder, device files and FIFOs, and bundles that expand past a size limit or a compression
//! ratio (zip bombs). Entries go into a staging folder beside the target, which is renamed into place
//! only when the whole bundle is out.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Limits on what a bundle may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of all files.
    pub max_size: u64,
    /// Expanded size over archive size.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: 10 << 30,
            max_ratio: 1000,
        }
    }
}

/// Why a bundle was not extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("refused entry `{entry}`: {reason}")]
    Refused { entry: String, reason: String },
    #[error("the bundle expands past {limit}: refused (a zip bomb?)")]
    TooLarge { limit: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is not a zip or tar.gz revision")]
    Unknown(String),
    #[error("interrupted: nothing was extracted")]
    Interrupted,
}

/// Set when the user interrupts kiln (Ctrl-C): an extraction under way stops at its next block and
/// removes its staging folder, so an interrupted pull leaves nothing behind.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The relative path an entry name stands for, or why it is refused.
fn safe_path(name: &str) -> Result<PathBuf, ExtractError> {
    let refuse = |reason: &str| ExtractError::Refused {
        entry: name.to_string(),
        reason: reason.to_string(),
    };
    let path = Path::new(name);
    if path.is_absolute() {
        return Err(refuse("an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("a `..` leads outside the target")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("an absolute path")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("an empty path"));
    }
    Ok(out)
}

/// Whether a symlink at `link` (relative to the target) pointing at `target` stays inside.
fn link_stays_inside(link: &Path, target: &str) -> bool {
    let target = Path::new(target);
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// How much a bundle may still expand to; shared by the threads that extract it.
struct Budget {
    limits: Limits,
    archive_size: u64,
    used: std::sync::atomic::AtomicU64,
}

impl Budget {
    fn take(&self, n: u64) -> Result<(), ExtractError> {
        use std::sync::atomic::Ordering;
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err(ExtractError::Interrupted);
        }
        let used = self.used.fetch_add(n, Ordering::Relaxed) + n;
        let ratio_cap = self
            .archive_size
            .max(1)
            .saturating_mul(self.limits.max_ratio);
        if used > self.limits.max_size {
            return Err(ExtractError::TooLarge {
                limit: format!("{} bytes", self.limits.max_size),
            });
        }
        if used > ratio_cap.max(1 << 20) {
            return Err(ExtractError::TooLarge {
                limit: format!("{}x its own size", self.limits.max_ratio),
            });
        }
        Ok(())
    }
}

/// The mode bits the umask takes away from new files (read once from /proc).
pub(crate) fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777)
    })
}

/// Writes an entry's bytes to a new file with its normalised mode (0644, or 0755 when executable),
/// counting real bytes against the budget (a zip's declared sizes can lie).
fn write_entry(
    mut from: impl Read,
    to: &Path,
    mode: u32,
    budget: &Budget,
    buf: &mut [u8],
) -> Result<(), ExtractError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .map_err(io_err(to))?;
    loop {
        let n = from.read(buf).map_err(io_err(to))?;
        if n == 0 {
            break;
        }
        budget.take(n as u64)?;
        io::Write::write_all(&mut out, &buf[..n]).map_err(io_err(to))?;
    }
    // Only a umask that takes bits of 0644/0755 away needs a chmod.
    if mode & umask() != 0 {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).map_err(io_err(to))?;
    }
    Ok(())
}

/// Extracts `bundle` (zip or tar.gz, by its first bytes) into `dest`, which must not exist yet.
pub fn extract(bundle: &Path, dest: &Path, limits: Limits) -> Result<usize, ExtractError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-extract-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    let mut magic = [0u8; 4];
    File::open(bundle)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(io_err(bundle))?;
    let archive_size = std::fs::metadata(bundle).map_err(io_err(bundle))?.len();
    let budget = Budget {
        limits,
        archive_size,
        used: 0.into(),
    };
    let count = if magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06" {
        extract_zip(bundle, staging.path(), &budget)?
    } else if magic[..2] == [0x1f, 0x8b] {
        extract_tgz(bundle, staging.path(), &budget)?
    } else {
        return Err(ExtractError::Unknown(bundle.display().to_string()));
    };
    let staged = staging.keep();
    std::fs::rename(&staged, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        io_err(dest)(e)
    })?;
    Ok(count)
}

/// Zip entries: checked and their folders made in one pass, then the files written on every core,
/// each thread reading the bundle through its own handle.
fn extract_zip(bundle: &Path, root: &Path, budget: &Budget) -> Result<usize, ExtractError> {
    use rayon::prelude::*;
    let open = || -> Result<zip::ZipArchive<File>, ExtractError> {
        let file = File::open(bundle).map_err(io_err(bundle))?;
        zip::ZipArchive::new(file)
            .map_err(|e| ExtractError::Unknown(format!("{} ({e})", bundle.display())))
    };
    let mut zip = open()?;
    let mut files: Vec<(usize, PathBuf, u32)> = Vec::new();
    let mut made: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| io_err(bundle)(io::Error::other(e)))?;
        let name = entry.name().to_string();
        let rel = safe_path(&name)?;
        let path = root.join(&rel);
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = mode & 0o170000;
        if entry.is_dir() || kind == 0o040000 {
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
            made.insert(path);
            continue;
        }
        if let Some(p) = path.parent()
            && !made.contains(p)
        {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
            made.insert(p.to_path_buf());
        }
        match kind {
            0o120000 => {
                let mut target = String::new();
                entry.read_to_string(&mut target).map_err(io_err(&path))?;
                if !link_stays_inside(&rel, &target) {
                    return Err(ExtractError::Refused {
                        entry: name,
                        reason: format!("a symlink to `{target}` leads outside the target"),
                    });
                }
                std::os::unix::fs::symlink(&target, &path).map_err(io_err(&path))?;
            }
            0 | 0o100000 => files.push((i, path, mode)),
            _ => {
                return Err(ExtractError::Refused {
                    entry: name,
                    reason: "a device file, FIFO or socket".into(),
                });
            }
        }
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk = files.len().div_ceil(threads * 4).max(64);
    files.par_chunks(chunk).try_for_each(|part| {
        let mut zip = open()?;
        let mut buf = vec![0u8; 1 << 16];
        for (i, path, mode) in part {
            let entry = zip
                .by_index(*i)
                .map_err(|e| io_err(bundle)(io::Error::other(e)))?;
            write_entry(entry, path, *mode, budget, &mut buf)?;
        }
        Ok::<(), ExtractError>(())
    })?;
    Ok(files.len())
}

fn extract_tgz(bundle: &Path, root: &Path, budget: &Budget) -> Result<usize, ExtractError> {
    let file = File::open(bundle).map_err(io_err(bundle))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut count = 0;
    for entry in archive.entries().map_err(io_err(bundle))? {
        let mut entry = entry.map_err(io_err(bundle))?;
        let name = entry
            .path()
            .map_err(io_err(bundle))?
            .to_string_lossy()
            .into_owned();
        let rel = safe_path(&name)?;
        let path = root.join(&rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
            continue;
        }
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
        }
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(io_err(bundle))?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !link_stays_inside(&rel, &target) {
                return Err(ExtractError::Refused {
                    entry: name,
                    reason: format!("a symlink to `{target}` leads outside the target"),
                });
            }
            std::os::unix::fs::symlink(&target, &path).map_err(io_err(&path))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mode = entry.header().mode().unwrap_or(0o644);
            write_entry(&mut entry, &path, mode, budget, &mut buf)?;
            count += 1;
        } else {
            return Err(ExtractError::Refused {
                entry: name,
                reason: "a device file, FIFO, hard link or other special entry".into(),
            });
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_are_refused() {
        assert!(safe_path("../x").is_err());
        assert!(safe_path("/etc/passwd").is_err());
        assert!(safe_path("a/../../x").is_err());
        assert_eq!(safe_path("./a/b").unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn links_that_leave_are_refused() {
        assert!(link_stays_inside(Path::new("a/link"), "../b"));
        assert!(!link_stays_inside(Path::new("link"), "../b"));
        assert!(!link_stays_inside(Path::new("a/link"), "/etc"));
        assert!(!link_stays_inside(Path::new("a/link"), "../../x"));
    }
}
