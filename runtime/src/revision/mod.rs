//! Revisions: a folder packaged deterministically as CodeDeploy expects it (a zip, or a tar.gz, with
//! `appspec.yml` at its root), and the manifest that describes it.
//!
//! The same files always give the same bytes: entries sorted by path, one fixed timestamp
//! (`SOURCE_DATE_EPOCH` when set, else 1980-01-01, the zip format's first day), modes normalised to
//! 0644/0755 by the executable bit, directories 0755, no owner or group names, no extra fields.

pub mod extract;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::Digest as _;

/// The archive format of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Zip,
    Tgz,
}

/// Why a revision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(
        "{} has no appspec.yml (or appspec.yaml) at its root, which CodeDeploy needs; add one, or pass --no-appspec for a bundle without",
        .0.display()
    )]
    NoAppspec(PathBuf),
    #[error("{0}")]
    InvalidAppspec(crate::spec::SpecError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RevisionError + '_ {
    move |source| RevisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a revision came from, when a build made it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Origin {
    pub build_id: String,
    pub build_number: u64,
    pub source_version: Option<String>,
    pub exported_variables: std::collections::BTreeMap<String, String>,
}

/// What describes a revision: written beside it as `<file>.manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub format: Format,
    /// BLAKE3 of the archive's bytes: kiln's own name for it.
    pub blake3: String,
    /// SHA-256 of the archive's bytes, `sha256:<hex>`: what registries and S3 checksums use.
    pub sha256: String,
    pub size: u64,
    pub files: usize,
    /// The timestamp every entry carries (seconds since the epoch).
    pub timestamp: u64,
    /// When the manifest was made (RFC 3339).
    pub created: String,
    pub build: Option<Origin>,
}

/// How to package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub format: Format,
    /// Refuse a folder without a valid appspec at its root.
    pub require_appspec: bool,
    /// The entries' timestamp; `SOURCE_DATE_EPOCH` or 1980-01-01 by default.
    pub timestamp: Option<u64>,
}

/// 1980-01-01T00:00:00Z, the earliest time a zip entry can carry.
const ZIP_EPOCH: u64 = 315_532_800;

/// The timestamp revisions get when none is asked for: `SOURCE_DATE_EPOCH`, else 1980-01-01.
pub fn default_timestamp() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(ZIP_EPOCH)
}

enum Item {
    Dir(String),
    File(String, PathBuf, bool),
    Symlink(String, String),
}

/// Packages `dir` into `out` (written whole, then renamed into place) and returns its manifest.
pub fn package(
    dir: &Path,
    out: &Path,
    options: &PackageOptions,
    origin: Option<Origin>,
) -> Result<Manifest, RevisionError> {
    if options.require_appspec {
        check_appspec(dir)?;
    }
    let items = list(dir)?;
    let files = items.iter().filter(|i| matches!(i, Item::File(..))).count();
    let timestamp = options.timestamp.unwrap_or_else(default_timestamp);
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
    let file = tmp.reopen().map_err(io_err(out))?;
    match options.format {
        Format::Zip => write_zip(file, &items, timestamp).map_err(io_err(out))?,
        Format::Tgz => write_tgz(file, &items, timestamp).map_err(io_err(out))?,
    }
    let (blake3, sha256, size) = digests(tmp.path()).map_err(io_err(out))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(out))?;
    }
    tmp.persist(out).map_err(|e| io_err(out)(e.error))?;
    let manifest = Manifest {
        format: options.format,
        blake3,
        sha256: format!("sha256:{sha256}"),
        size,
        files,
        timestamp,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        build: origin,
    };
    let manifest_path = PathBuf::from(format!("{}.manifest.json", out.display()));
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    std::fs::write(&manifest_path, json).map_err(io_err(&manifest_path))?;
    Ok(manifest)
}

/// The BLAKE3 and SHA-256 (hex) and size of a file, read once.
pub fn digests(path: &Path) -> io::Result<(String, String, u64)> {
    let mut file = File::open(path)?;
    let mut b3 = blake3::Hasher::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        b3.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    let sha_hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((b3.finalize().to_hex().to_string(), sha_hex, size))
}

/// Refuses a folder without an appspec at its root, or with one that is not a valid EC2/on-premises
/// AppSpec (errors with their places).
pub fn check_appspec(dir: &Path) -> Result<(), RevisionError> {
    let Some(path) = ["appspec.yml", "appspec.yaml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    else {
        return Err(RevisionError::NoAppspec(dir.to_path_buf()));
    };
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let invalid = |d: crate::spec::Diagnostic| {
        RevisionError::InvalidAppspec(crate::spec::SpecError {
            path: path.clone(),
            source: text.clone(),
            diagnostics: vec![d],
        })
    };
    let root = crate::spec::yaml::parse(&text).map_err(invalid)?;
    let crate::spec::yaml::NodeKind::Map(entries) = &root.kind else {
        return Err(invalid(crate::spec::Diagnostic::error(
            root.span,
            "expected an AppSpec (a mapping with `version: 0.0` and `os`)",
        )));
    };
    for key in ["version", "os"] {
        if !entries.iter().any(|(k, _)| k.as_str() == Some(key)) {
            return Err(invalid(
                crate::spec::Diagnostic::error(root.span, format!("the AppSpec has no `{key}`"))
                    .with_help(
                        "an EC2/on-premises AppSpec starts with `version: 0.0` and `os: linux`",
                    ),
            ));
        }
    }
    // An EC2/on-premises AppSpec is read as a deployment reads it, so a typo fails here and not
    // on the host. (A Lambda or ECS AppSpec has `Resources` and no `os`: refused above.)
    crate::spec::appspec::parse(&path, &text).map_err(RevisionError::InvalidAppspec)?;
    Ok(())
}

/// Every entry below `dir`, sorted by path: directories, files (with their executable bit), links.
fn list(dir: &Path) -> Result<Vec<Item>, RevisionError> {
    use std::os::unix::fs::PermissionsExt;
    let mut items = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| RevisionError::Io {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("cannot walk")),
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ft = entry.file_type();
        if ft.is_dir() {
            items.push(Item::Dir(rel));
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io_err(entry.path()))?;
            items.push(Item::Symlink(rel, target.to_string_lossy().into_owned()));
        } else if ft.is_file() {
            let mode = entry
                .metadata()
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            items.push(Item::File(
                rel,
                entry.path().to_path_buf(),
                mode & 0o111 != 0,
            ));
        }
    }
    items.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(items)
}

fn path_of(item: &Item) -> &str {
    match item {
        Item::Dir(p) | Item::File(p, _, _) | Item::Symlink(p, _) => p,
    }
}

fn zip_time(timestamp: u64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp(timestamp.max(ZIP_EPOCH) as i64, 0)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                t.year() as u16,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Files up to this size are compressed in parallel, each in memory; larger ones are streamed.
const PARALLEL_FILE: u64 = 16 << 20;
/// How much a batch of files compressed in parallel may hold in memory at once.
const BATCH_BYTES: u64 = 64 << 20;

fn write_zip(file: File, items: &[Item], timestamp: u64) -> io::Result<()> {
    use rayon::prelude::*;
    let mut writer = zip::ZipWriter::new(io::BufWriter::new(file));
    let time = zip_time(timestamp);
    let options = |mode: u32| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(time)
            .unix_permissions(mode)
            .large_file(false)
    };
    let file_mode = |executable: bool| if executable { 0o755 } else { 0o644 };
    // Small files are deflated on every core, each into a one-entry zip in memory, then copied
    // into the revision in order, compressed bytes as they are (so the output does not depend on
    // the number of cores).
    let mut batch: Vec<(&str, &Path, bool)> = Vec::new();
    let mut batch_bytes = 0u64;
    let flush = |batch: &mut Vec<(&str, &Path, bool)>,
                 writer: &mut zip::ZipWriter<io::BufWriter<File>>|
     -> io::Result<()> {
        let compressed: Vec<io::Result<Vec<u8>>> = batch
            .par_iter()
            .map(|(path, source, executable)| {
                let mut one = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
                one.start_file(*path, options(file_mode(*executable)))
                    .map_err(io::Error::other)?;
                io::copy(&mut File::open(source)?, &mut one)?;
                Ok(one.finish().map_err(io::Error::other)?.into_inner())
            })
            .collect();
        for bytes in compressed {
            let mut archive =
                zip::ZipArchive::new(io::Cursor::new(bytes?)).map_err(io::Error::other)?;
            let entry = archive.by_index_raw(0).map_err(io::Error::other)?;
            writer.raw_copy_file(entry).map_err(io::Error::other)?;
        }
        batch.clear();
        Ok(())
    };
    for item in items {
        if let Item::File(path, source, executable) = item {
            let size = std::fs::metadata(source)?.len();
            if size <= PARALLEL_FILE {
                batch.push((path, source, *executable));
                batch_bytes += size;
                if batch_bytes >= BATCH_BYTES || batch.len() >= 1024 {
                    flush(&mut batch, &mut writer)?;
                    batch_bytes = 0;
                }
                continue;
            }
        }
        flush(&mut batch, &mut writer)?;
        batch_bytes = 0;
        match item {
            Item::Dir(path) => writer
                .add_directory(path, options(0o755))
                .map_err(io::Error::other)?,
            Item::Symlink(path, target) => writer
                .add_symlink(path, target, options(0o777))
                .map_err(io::Error::other)?,
            Item::File(path, source, executable) => {
                let size = std::fs::metadata(source)?.len();
                writer
                    .start_file(
                        path,
                        options(file_mode(*executable)).large_file(size >= u32::MAX as u64),
                    )
                    .map_err(io::Error::other)?;
                io::copy(&mut File::open(source)?, &mut writer)?;
            }
        }
    }
    flush(&mut batch, &mut writer)?;
    let mut out = writer.finish().map_err(io::Error::other)?;
    out.flush()
}

fn write_tgz(file: File, items: &[Item], timestamp: u64) -> io::Result<()> {
    let gz = flate2::GzBuilder::new()
        .mtime(timestamp as u32)
        .write(io::BufWriter::new(file), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(timestamp);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        h
    };
    for item in items {
        match item {
            Item::Dir(path) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, format!("{path}/"), io::empty())?;
            }
            Item::Symlink(path, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, path, target)?;
            }
            Item::File(path, source, executable) => {
                let size = std::fs::metadata(source)?.len();
                let mode = if *executable { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, size);
                tar.append_data(&mut h, path, File::open(source)?)?;
            }
        }
    }
    let gz = tar.into_inner()?;
    let mut out = gz.finish()?;
    out.flush()
}
