//! Safe extraction of a revision: nothing lands outside the target, and nothing half-extracted is
//! ever visible.
//!
//! Refused, with the entry named: absolute paths, `..` components, symlinks whose target leaves the
//! target folder (by itself or through other links of the bundle), entries below a symlink of the
//! bundle, two entries of one name (a folder may be named twice), hard links, device files and
//! FIFOs, and bundles that expand past a size limit or a compression ratio (zip bombs) or make more
//! files, folders and links than an entry limit (inode bombs). Entries go into a staging folder
//! beside the target, which is renamed into place only when the whole bundle is out.
//!
//! Extraction never follows a link. Every entry is made relative to the staging folder's handle,
//! its path resolved by the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and the
//! bundle's symlinks are made last, once every file and folder is written. The checks on names
//! and link targets give the clear refusal; the kernel's resolution is what still holds if a
//! check missed a case (a chain of links such as `l -> .`, `l/e1 -> ..` cannot lead a later entry
//! out, because no entry is ever opened through `l`).

use std::collections::HashMap;
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
    /// Files, folders (those the entries' paths imply too) and symlinks the bundle may make.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: 10 << 30,
            max_ratio: 1000,
            max_entries: 1_000_000,
        }
    }
}

/// Why a bundle was not extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("refused entry `{entry}`: {reason}")]
    Refused { entry: String, reason: String },
    #[error("the bundle expands past {limit}: refused (a zip bomb?){hint}")]
    TooLarge { limit: String, hint: &'static str },
    #[error(
        "the bundle makes more than {limit} files, folders and links: refused (an inode bomb?); \
         if it is expected, raise the limit with --max-entries"
    )]
    TooManyEntries { limit: u64 },
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

fn refused(entry: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Refused {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Whether a folder entry names the target itself (`./`, as `tar czf x.tgz .` writes): there is
/// nothing to make for it.
fn names_the_target(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::CurDir))
}

/// The relative path an entry name stands for, or why it is refused.
fn safe_path(name: &str) -> Result<PathBuf, ExtractError> {
    let path = Path::new(name);
    if path.is_absolute() {
        return Err(refused(name, "an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(refused(name, "a `..` leads outside the target"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(name, "an absolute path"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refused(name, "an empty path"));
    }
    Ok(out)
}

/// How many links one resolution may go through before kiln calls it a loop (as the kernel does).
const MAX_HOPS: usize = 40;

/// Whether a symlink at `link` (relative to the target) pointing at `target` stays inside, when
/// every folder on the way that is one of the bundle's `links` is followed as the kernel would.
fn link_stays_inside<'a>(
    link: &'a Path,
    target: &'a str,
    links: &HashMap<&'a Path, &'a str>,
) -> bool {
    /// Queues a target's components (first on top); false for an absolute target.
    fn queue<'a>(pending: &mut Vec<Component<'a>>, target: &'a str) -> bool {
        let target = Path::new(target);
        pending.extend(target.components().rev());
        !target.is_absolute()
    }
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .map(Component::as_os_str)
        .collect();
    let mut pending = Vec::new();
    if !queue(&mut pending, target) {
        return false;
    }
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Component::Normal(part) => {
                at.push(part);
                // A link in the middle of the path is followed; the last one is checked on its own.
                if pending.is_empty() {
                    continue;
                }
                let here: PathBuf = at.iter().collect();
                if let Some(next) = links.get(here.as_path()) {
                    hops += 1;
                    at.pop();
                    if hops > MAX_HOPS || !queue(&mut pending, next) {
                        return false;
                    }
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// How many bytes a bundle may still expand to; shared by the threads that extract it.
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
                hint: "; if it is expected, raise the limit with --max-size",
            });
        }
        if used > ratio_cap.max(1 << 20) {
            return Err(ExtractError::TooLarge {
                limit: format!("{}x its own size", self.limits.max_ratio),
                hint: "; no real revision compresses that well",
            });
        }
        Ok(())
    }
}

/// What an entry of the bundle made in the staging folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    Folder,
    File,
    Link,
}

impl Made {
    fn named(self) -> &'static str {
        match self {
            Made::Folder => "a folder",
            Made::File => "a file",
            Made::Link => "a symlink",
        }
    }
}

/// The staging folder: its handle, what the bundle made in it so far, and the symlinks to make once
/// every file and folder is out.
struct Staging {
    dir: PathBuf,
    root: crate::beneath::Dir,
    made: HashMap<PathBuf, Made>,
    /// Entry name, path and target of each symlink, in the bundle's order.
    links: Vec<(String, PathBuf, String)>,
    max_entries: u64,
}

/// The path and last component of a relative path with at least one component.
fn split(rel: &Path) -> (&Path, &std::ffi::OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(rel.as_os_str()),
    )
}

impl Staging {
    fn open(dir: &Path, max_entries: u64) -> Result<Self, ExtractError> {
        // The staging folder is kiln's own, just made: below it, nothing is followed.
        let root = crate::beneath::Dir::open(dir).map_err(|e| ExtractError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            root,
            made: HashMap::new(),
            links: Vec::new(),
            max_entries,
        })
    }

    /// Checks an entry against what the bundle made before it and counts it, making the folders on
    /// its path. A folder named again is admitted, and nothing is made for it.
    fn admit(&mut self, name: &str, rel: &Path, kind: Made) -> Result<(), ExtractError> {
        let mut parent = PathBuf::new();
        let (above, _) = split(rel);
        for part in above.components() {
            parent.push(part);
            match self.made.get(&parent) {
                Some(Made::Folder) => {}
                Some(other) => {
                    return Err(refused(
                        name,
                        format!(
                            "it lies below `{}`, {} of this bundle: kiln never extracts through a link or into a file",
                            parent.display(),
                            other.named()
                        ),
                    ));
                }
                None => {
                    self.count()?;
                    self.make_folder(name, &parent)?;
                    self.made.insert(parent.clone(), Made::Folder);
                }
            }
        }
        match self.made.get(rel) {
            None => {}
            Some(Made::Folder) if kind == Made::Folder => return Ok(()),
            Some(other) => {
                return Err(refused(
                    name,
                    format!(
                        "the bundle already has {} `{}`",
                        other.named(),
                        rel.display()
                    ),
                ));
            }
        }
        self.count()?;
        if kind == Made::Folder {
            self.make_folder(name, rel)?;
        }
        self.made.insert(rel.to_path_buf(), kind);
        Ok(())
    }

    /// One more thing made: refused past the entry limit, or when the user interrupted.
    fn count(&mut self) -> Result<(), ExtractError> {
        if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ExtractError::Interrupted);
        }
        if self.made.len() as u64 >= self.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: self.max_entries,
            });
        }
        Ok(())
    }

    /// Admits a symlink, refusing one whose target leaves the target folder; it is made by
    /// [`Staging::make_links`], after everything else.
    fn add_link(&mut self, name: &str, rel: PathBuf, target: String) -> Result<(), ExtractError> {
        if target.is_empty() {
            return Err(refused(name, "a symlink with an empty target"));
        }
        if target.len() > MAX_LINK {
            return Err(refused(
                name,
                format!("a symlink target longer than {MAX_LINK} bytes"),
            ));
        }
        if !link_stays_inside(&rel, &target, &HashMap::new()) {
            return Err(refused(
                name,
                format!("a symlink to `{target}` leads outside the target"),
            ));
        }
        self.admit(name, &rel, Made::Link)?;
        self.links.push((name.to_string(), rel, target));
        Ok(())
    }

    fn make_folder(&self, name: &str, rel: &Path) -> Result<(), ExtractError> {
        self.root
            .create_dir(rel, 0o755)
            .map_err(|e| self.failed(name, rel, e))
    }

    /// Creates a new file (never through a link, never over an existing one).
    fn create_file(&self, name: &str, rel: &Path, mode: u32) -> Result<File, ExtractError> {
        self.root
            .create_file_mode(rel, mode)
            .map_err(|e| self.failed(name, rel, e))
    }

    /// Makes the bundle's symlinks, once each is checked again against all the others: a target
    /// may go through a link that came later in the bundle.
    fn make_links(&self) -> Result<(), ExtractError> {
        let all: HashMap<&Path, &str> = self
            .links
            .iter()
            .map(|(_, rel, target)| (rel.as_path(), target.as_str()))
            .collect();
        for (name, rel, target) in &self.links {
            if !link_stays_inside(rel, target, &all) {
                return Err(refused(
                    name,
                    format!(
                        "a symlink to `{target}` leads outside the target through other links of the bundle"
                    ),
                ));
            }
        }
        for (name, rel, target) in &self.links {
            self.root
                .symlink(Path::new(target), rel)
                .map_err(|e| self.failed(name, rel, e))?;
        }
        Ok(())
    }

    /// What a failed call below the staging folder means: the refusals to follow a link or to leave
    /// the folder are the bundle's doing; anything else is an I/O error.
    fn failed(&self, name: &str, rel: &Path, e: crate::beneath::BeneathError) -> ExtractError {
        use crate::beneath::BeneathError;
        match e {
            BeneathError::Link { .. } => refused(name, "its path goes through a symlink"),
            BeneathError::Outside { .. } => refused(name, "its path leads outside the target"),
            BeneathError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ELOOP) => refused(name, "its path goes through a symlink"),
                Some(libc::EXDEV) => refused(name, "its path leads outside the target"),
                Some(libc::ENOTDIR) => {
                    refused(name, "its path goes through something that is not a folder")
                }
                Some(libc::EEXIST) => refused(name, "the bundle already has an entry of that name"),
                _ => io_err(&self.dir.join(rel))(source),
            },
        }
    }
}

/// The longest symlink target kiln makes (the kernel's PATH_MAX).
const MAX_LINK: usize = 4096;

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
    staging: &Staging,
    (name, rel): (&str, &Path),
    mode: u32,
    budget: &Budget,
    buf: &mut [u8],
) -> Result<(), ExtractError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    let mut out = staging.create_file(name, rel, mode)?;
    let to = || staging.dir.join(rel);
    loop {
        let n = from.read(buf).map_err(|e| io_err(&to())(e))?;
        if n == 0 {
            break;
        }
        budget.take(n as u64)?;
        io::Write::write_all(&mut out, &buf[..n]).map_err(|e| io_err(&to())(e))?;
    }
    // Only a umask that takes bits of 0644/0755 away needs a chmod.
    if mode & umask() != 0 {
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(&to())(e))?;
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
    let staging_dir = tempfile::Builder::new()
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
    let mut staging = Staging::open(staging_dir.path(), limits.max_entries)?;
    let count = if magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06" {
        extract_zip(bundle, &mut staging, &budget)?
    } else if magic[..2] == [0x1f, 0x8b] {
        extract_tgz(bundle, &mut staging, &budget)?
    } else {
        return Err(ExtractError::Unknown(bundle.display().to_string()));
    };
    staging.make_links()?;
    drop(staging);
    let staged = staging_dir.keep();
    std::fs::rename(&staged, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        io_err(dest)(e)
    })?;
    Ok(count)
}

/// Zip entries: checked, and their folders made, in one pass; then the files written on every
/// core, each thread reading the bundle through its own handle.
fn extract_zip(
    bundle: &Path,
    staging: &mut Staging,
    budget: &Budget,
) -> Result<usize, ExtractError> {
    use rayon::prelude::*;
    let open = || -> Result<zip::ZipArchive<File>, ExtractError> {
        let file = File::open(bundle).map_err(io_err(bundle))?;
        zip::ZipArchive::new(file)
            .map_err(|e| ExtractError::Unknown(format!("{} ({e})", bundle.display())))
    };
    let mut zip = open()?;
    // The central directory tells the count before anything is made.
    if zip.len() as u64 > staging.max_entries {
        return Err(ExtractError::TooManyEntries {
            limit: staging.max_entries,
        });
    }
    let mut files: Vec<(usize, String, PathBuf, u32)> = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| io_err(bundle)(io::Error::other(e)))?;
        let name = entry.name().to_string();
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = mode & 0o170000;
        let is_dir = entry.is_dir() || kind == 0o040000;
        if is_dir && names_the_target(&name) {
            continue;
        }
        let rel = safe_path(&name)?;
        if is_dir {
            staging.admit(&name, &rel, Made::Folder)?;
            continue;
        }
        match kind {
            0o120000 => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_LINK as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(io_err(bundle))?;
                let target = String::from_utf8(target)
                    .map_err(|_| refused(&name, "a symlink target that is not UTF-8"))?;
                staging.add_link(&name, rel, target)?;
            }
            0 | 0o100000 => {
                staging.admit(&name, &rel, Made::File)?;
                files.push((i, name, rel, mode));
            }
            _ => {
                return Err(refused(&name, "a device file, FIFO or socket"));
            }
        }
    }
    let staging = &*staging;
    let threads = rayon::current_num_threads().max(1);
    let chunk = files.len().div_ceil(threads * 4).max(64);
    files.par_chunks(chunk).try_for_each(|part| {
        let mut zip = open()?;
        let mut buf = vec![0u8; 1 << 16];
        for (i, name, rel, mode) in part {
            let entry = zip
                .by_index(*i)
                .map_err(|e| io_err(bundle)(io::Error::other(e)))?;
            write_entry(entry, staging, (name, rel), *mode, budget, &mut buf)?;
        }
        Ok::<(), ExtractError>(())
    })?;
    Ok(files.len())
}

fn extract_tgz(
    bundle: &Path,
    staging: &mut Staging,
    budget: &Budget,
) -> Result<usize, ExtractError> {
    let file = File::open(bundle).map_err(io_err(bundle))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut count = 0;
    for entry in archive.entries().map_err(io_err(bundle))? {
        let mut entry = entry.map_err(io_err(bundle))?;
        let kind = entry.header().entry_type();
        // A pax global header (`git archive` writes one) is metadata of the archive, not a file.
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        let name = entry
            .path()
            .map_err(io_err(bundle))?
            .to_string_lossy()
            .into_owned();
        if kind.is_dir() && names_the_target(&name) {
            continue;
        }
        let rel = safe_path(&name)?;
        if kind.is_dir() {
            staging.admit(&name, &rel, Made::Folder)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(io_err(bundle))?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            staging.add_link(&name, rel, target)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            staging.admit(&name, &rel, Made::File)?;
            let mode = entry.header().mode().unwrap_or(0o644);
            write_entry(&mut entry, staging, (&name, &rel), mode, budget, &mut buf)?;
            count += 1;
        } else {
            return Err(refused(
                &name,
                "a device file, FIFO, hard link or other special entry",
            ));
        }
    }
    Ok(count)
}
#[cfg(test)]
mod tests;
