//! Hostile bundles: zips and tar.gz revisions built to write outside the folder kiln extracts them
//! into, or to exhaust its inodes. Each is fed to `kiln pull` (from a file:// store) and to
//! `kiln deploy`, and each must be refused with a clear error and a non-zero exit, leaving every
//! folder outside the target exactly as it was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::kiln;

/// One entry of a bundle.
enum Entry {
    File(String),
    Link(String, String),
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Zip,
    Tgz,
}

const FORMATS: [Format; 2] = [Format::Zip, Format::Tgz];

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Tgz => "tar.gz",
        }
    }
}

/// Writes the entries, in order, as a bundle of `format` (files hold `pwned`).
fn write_bundle(path: &Path, format: Format, entries: &[Entry]) {
    let file = std::fs::File::create(path).unwrap();
    match format {
        Format::Zip => {
            let mut zip = zip::ZipWriter::new(file);
            let options = zip::write::SimpleFileOptions::default();
            for entry in entries {
                match entry {
                    Entry::File(name) => {
                        zip.start_file(name.as_str(), options.unix_permissions(0o644))
                            .unwrap();
                        zip.write_all(b"pwned").unwrap();
                    }
                    Entry::Link(name, target) => zip
                        .add_symlink(name.as_str(), target.as_str(), options)
                        .unwrap(),
                }
            }
            zip.finish().unwrap();
        }
        Format::Tgz => {
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for entry in entries {
                let mut header = tar::Header::new_gnu();
                header.set_mode(0o644);
                match entry {
                    Entry::File(name) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_size(5);
                        tar.append_data(&mut header, name, &b"pwned"[..]).unwrap();
                    }
                    Entry::Link(name, target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_size(0);
                        tar.append_link(&mut header, name, target).unwrap();
                    }
                }
            }
            tar.into_inner().unwrap().finish().unwrap();
        }
    }
}

/// `l -> .`, then `l/e1 -> ..`, `e1/e2 -> ..`, `e1/e2/e3 -> ..`…: each link on its own stays
/// inside the folder it is extracted into, but an extractor that follows them climbs one folder
/// per link. Then a file `e1/…/e<depth>/<outside>/pwned`, which such an extractor writes into the
/// folder `<outside>` found `depth` levels above its own.
fn chained_links(depth: usize, outside: &str) -> Vec<Entry> {
    let mut entries = vec![
        Entry::Link("l".into(), ".".into()),
        Entry::Link("l/e1".into(), "..".into()),
    ];
    let mut path = String::from("e1");
    for i in 2..=depth {
        path = format!("{path}/e{i}");
        entries.push(Entry::Link(path.clone(), "..".into()));
    }
    entries.push(Entry::File(format!("{path}/{outside}/pwned")));
    entries
}

/// A link straight to an outside folder (by a relative or an absolute path), and a file written
/// through it.
fn link_out(target: &str) -> Vec<Entry> {
    vec![
        Entry::Link("out".into(), target.into()),
        Entry::File("out/pwned".into()),
    ]
}

/// `count` empty files, as small as a bundle of that many entries gets.
fn inode_bomb(format: Format, path: &Path, count: usize) {
    let file = std::fs::File::create(path).unwrap();
    match format {
        Format::Zip => {
            let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for i in 0..count {
                zip.start_file(format!("{i}"), options).unwrap();
            }
            zip.finish().unwrap();
        }
        Format::Tgz => {
            let gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::fast(),
            );
            let mut tar = tar::Builder::new(gz);
            for i in 0..count {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                tar.append_data(&mut header, format!("{i}"), std::io::empty())
                    .unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap();
        }
    }
}

/// Every path below `dir` (links not followed) with what it is: a folder, a file's bytes, or a
/// link's target. Paths below `skip` are left out.
fn snapshot(dir: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if Some(path.as_path()) == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "folder".to_string()
            } else {
                let bytes = std::fs::read(&path).unwrap();
                format!(
                    "file of {} bytes, blake3 {}",
                    bytes.len(),
                    blake3::hash(&bytes)
                )
            };
            out.insert(path, what);
        }
    }
    out
}

/// Fails, naming what appeared, vanished or changed, when two snapshots differ.
fn assert_unchanged(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    context: &str,
) {
    let mut changes = Vec::new();
    for (path, what) in after {
        match before.get(path) {
            None => changes.push(format!("new: {} ({what})", path.display())),
            Some(was) if was != what => {
                changes.push(format!("changed: {} ({was} -> {what})", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        changes.push(format!("gone: {}", path.display()));
    }
    let shown: Vec<&String> = changes.iter().take(20).collect();
    assert!(
        changes.is_empty(),
        "{} changes outside the target, first {shown:#?}\n{context}",
        changes.len()
    );
}

/// A temp folder with a sentinel folder in it (`sentinel/keep`), the place a hostile bundle aims.
struct Host {
    dir: tempfile::TempDir,
    bundles: std::cell::Cell<usize>,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sentinel")).unwrap();
        std::fs::write(dir.path().join("sentinel/keep"), "keep").unwrap();
        std::fs::create_dir(dir.path().join("target")).unwrap();
        Host {
            dir,
            bundles: Default::default(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new bundle's path, beside the others.
    fn bundle(&self, format: Format) -> PathBuf {
        self.bundles.set(self.bundles.get() + 1);
        self.path().join(format!(
            "bundle{}.{}",
            self.bundles.get(),
            format.extension()
        ))
    }

    /// Writes the bundle, pushes it to a file:// store, and pulls it into `target/app`, with
    /// `extra` arguments. Returns the exit code and stderr.
    fn pull(&self, format: Format, write: impl FnOnce(&Path), extra: &[&str]) -> (i32, String) {
        let bundle = self.bundle(format);
        write(&bundle);
        let reference = format!(
            "file://{}/store/{}",
            self.path().display(),
            bundle.file_name().unwrap().to_string_lossy()
        );
        let push = kiln()
            .arg("push")
            .arg(&bundle)
            .arg(&reference)
            .output()
            .unwrap();
        assert!(
            push.status.success(),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        let before = snapshot(self.path(), None);
        let out = kiln()
            .arg("pull")
            .arg(&reference)
            .arg("-o")
            .arg(self.path().join("target/app"))
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_unchanged(&before, &snapshot(self.path(), None), &stderr);
        (out.status.code().unwrap_or(-1), stderr)
    }

    /// Writes the bundle and deploys it with its deployment root in `root`, with `extra`
    /// arguments. Returns the exit code and stderr.
    fn deploy(&self, format: Format, write: impl FnOnce(&Path), extra: &[&str]) -> (i32, String) {
        let bundle = self.bundle(format);
        write(&bundle);
        let root = self.path().join("root");
        let before = snapshot(self.path(), Some(&root));
        let out = kiln()
            .arg("deploy")
            .arg(&bundle)
            .args(["--group", "web", "--root"])
            .arg(&root)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_unchanged(&before, &snapshot(self.path(), Some(&root)), &stderr);
        // Inside the root, kiln's own records may change, but nothing of the bundle may land.
        for (path, what) in snapshot(&root, None) {
            assert!(
                !path.ends_with("pwned") && !path.ends_with("deployment-archive"),
                "the refused bundle left {} ({what})",
                path.display()
            );
        }
        (out.status.code().unwrap_or(-1), stderr)
    }
}

/// Pulled from a store, the chain stands in `target/.kiln-extract-…`: two links up is the folder
/// that holds `target` and `sentinel`.
#[test]
fn a_chain_of_links_cannot_lead_a_pulled_file_out() {
    for format in FORMATS {
        let host = Host::new();
        let (code, err) = host.pull(
            format,
            |p| write_bundle(p, format, &chained_links(2, "sentinel")),
            &[],
        );
        assert_eq!(code, 7, "{format:?}: {err}");
        assert!(
            err.contains("refused entry `l/e1`: it lies below `l`, a symlink of this bundle"),
            "{format:?}: {err}"
        );
        assert!(!host.path().join("target/app").exists());
    }
}

/// Deployed, the chain stands in `root/<group>/<deployment>/.kiln-extract-…`: four links up is
/// the folder that holds `root` and `sentinel`.
#[test]
fn a_chain_of_links_cannot_lead_a_deployed_file_out() {
    for format in FORMATS {
        let host = Host::new();
        let (code, err) = host.deploy(
            format,
            |p| write_bundle(p, format, &chained_links(4, "sentinel")),
            &[],
        );
        assert_eq!(code, 1, "{format:?}: {err}");
        assert!(
            err.contains("DownloadBundle: refused entry `l/e1`: it lies below `l`"),
            "{format:?}: {err}"
        );
    }
}

#[test]
fn a_link_to_an_outside_folder_cannot_be_pulled_or_written_through() {
    for format in FORMATS {
        let host = Host::new();
        let sentinel = host.path().join("sentinel");
        for target in ["../../sentinel", sentinel.to_str().unwrap()] {
            let (code, err) =
                host.pull(format, |p| write_bundle(p, format, &link_out(target)), &[]);
            assert_eq!(code, 7, "{format:?} {target}: {err}");
            assert!(
                err.contains(&format!(
                    "refused entry `out`: a symlink to `{target}` leads outside the target"
                )),
                "{format:?}: {err}"
            );
        }
    }
}

#[test]
fn a_link_to_an_outside_folder_cannot_be_deployed_or_written_through() {
    for format in FORMATS {
        let host = Host::new();
        let sentinel = host.path().join("sentinel");
        for target in ["../../../../sentinel", sentinel.to_str().unwrap()] {
            let (code, err) =
                host.deploy(format, |p| write_bundle(p, format, &link_out(target)), &[]);
            assert_eq!(code, 1, "{format:?} {target}: {err}");
            assert!(
                err.contains(&format!(
                    "refused entry `out`: a symlink to `{target}` leads outside the target"
                )),
                "{format:?}: {err}"
            );
        }
    }
}

/// Tens of thousands of empty files: a few megabytes of zip, and as many inodes. The limit is
/// lowered so that the test stays quick; the refusal is the same at the default of a million.
const BOMB: usize = 60_000;

#[test]
fn an_inode_bomb_is_refused_on_pull() {
    for format in FORMATS {
        let host = Host::new();
        let (code, err) = host.pull(
            format,
            |p| inode_bomb(format, p, BOMB),
            &["--max-entries", "10000"],
        );
        assert_eq!(code, 7, "{format:?}: {err}");
        assert!(
            err.contains("more than 10000 files, folders and links")
                && err.contains("--max-entries"),
            "{format:?}: {err}"
        );
        assert!(!host.path().join("target/app").exists());
    }
}

#[test]
fn an_inode_bomb_is_refused_on_deploy() {
    for format in FORMATS {
        let host = Host::new();
        let (code, err) = host.deploy(
            format,
            |p| inode_bomb(format, p, BOMB),
            &["--max-entries", "10000"],
        );
        assert_eq!(code, 1, "{format:?}: {err}");
        assert!(
            err.contains("DownloadBundle: the bundle makes more than 10000 files")
                && err.contains("--max-entries"),
            "{format:?}: {err}"
        );
    }
}

#[test]
fn a_bundle_past_max_size_is_refused_on_deploy() {
    // Two files of 600 KiB of one byte: under the ratio cap's 1 MiB floor each, 1.2 MiB in all.
    for format in FORMATS {
        let host = Host::new();
        let (code, err) = host.deploy(
            format,
            |p| {
                let file = std::fs::File::create(p).unwrap();
                let big = vec![b'a'; 600 << 10];
                match format {
                    Format::Zip => {
                        let mut zip = zip::ZipWriter::new(file);
                        for name in ["a", "b"] {
                            zip.start_file(name, zip::write::SimpleFileOptions::default())
                                .unwrap();
                            zip.write_all(&big).unwrap();
                        }
                        zip.finish().unwrap();
                    }
                    Format::Tgz => {
                        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                        let mut tar = tar::Builder::new(gz);
                        for name in ["a", "b"] {
                            let mut header = tar::Header::new_gnu();
                            header.set_mode(0o644);
                            header.set_size(big.len() as u64);
                            tar.append_data(&mut header, name, &big[..]).unwrap();
                        }
                        tar.into_inner().unwrap().finish().unwrap();
                    }
                }
            },
            &["--max-size", "1M"],
        );
        assert_eq!(code, 1, "{format:?}: {err}");
        assert!(
            err.contains("expands past 1048576 bytes") && err.contains("--max-size"),
            "{format:?}: {err}"
        );
    }
}
