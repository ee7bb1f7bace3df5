//! Revisions: deterministic packaging with appspec.yml at the root, and the manifest.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::support::{Build, Run, kiln};

/// Writes a small application revision into `dir`, with `umask` for its files and `mtime` on all.
fn app(dir: &Path, umask: u32, mtime: std::time::SystemTime) {
    use std::os::unix::fs::PermissionsExt;
    let files = [
        (
            "appspec.yml",
            "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv/app\n",
            false,
        ),
        ("scripts/start.sh", "#!/bin/sh\necho start\n", true),
        ("site/index.html", "<h1>hi</h1>\n", false),
        ("site/css/app.css", "h1{}\n", false),
    ];
    for (path, text, exec) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        let mode = if exec { 0o777 } else { 0o666 } & !umask;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&full)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
}

fn package(dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    kiln()
        .arg("package")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

#[test]
fn the_same_files_give_the_same_bytes_whatever_their_mtimes_and_umask() {
    for format in ["zip", "tgz"] {
        let (a, b, out) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        app(a.path(), 0o022, std::time::SystemTime::now());
        app(
            b.path(),
            0o077,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000),
        );
        let (ra, rb) = (out.path().join("a.rev"), out.path().join("b.rev"));
        assert_eq!(
            package(a.path(), &ra, &["--format", format]).status.code(),
            Some(0)
        );
        assert_eq!(
            package(b.path(), &rb, &["--format", format]).status.code(),
            Some(0)
        );
        assert_eq!(
            std::fs::read(&ra).unwrap(),
            std::fs::read(&rb).unwrap(),
            "{format} revisions of the same files differ"
        );
    }
}

#[test]
fn a_zip_revision_has_sorted_entries_normalised_modes_and_a_fixed_time() {
    let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    app(dir.path(), 0o077, std::time::SystemTime::now());
    let rev = out.path().join("app.zip");
    assert_eq!(package(dir.path(), &rev, &[]).status.code(), Some(0));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&rev).unwrap()).unwrap();
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"appspec.yml".to_string()), "{names:?}");
    let mode = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| {
        zip.by_name(name).unwrap().unix_mode().unwrap() & 0o777
    };
    assert_eq!(mode(&mut zip, "scripts/start.sh"), 0o755);
    assert_eq!(mode(&mut zip, "site/index.html"), 0o644);
    let entry = zip.by_name("site/index.html").unwrap();
    let t = entry.last_modified().unwrap();
    assert_eq!((t.year(), t.month(), t.day()), (1980, 1, 1));
}

#[test]
fn source_date_epoch_sets_the_timestamp() {
    let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    app(dir.path(), 0o022, std::time::SystemTime::now());
    let rev = out.path().join("app.tar.gz");
    let status = kiln()
        .args(["package", "--format", "tgz", "--json", "-o"])
        .arg(&rev)
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    let manifest: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(manifest["timestamp"], 1_700_000_000);
    let gz = flate2_read(&rev);
    let mut archive = tar_archive(gz);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
        assert_eq!(entry.header().uid().unwrap(), 0);
        assert_eq!(entry.header().username().unwrap(), Some(""));
    }
}

fn flate2_read(path: &Path) -> Vec<u8> {
    // gunzip with the system tool, so the test checks the bytes as any user would read them.
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn tar_archive(bytes: Vec<u8>) -> TarEntries {
    TarEntries(bytes)
}

/// A minimal reader of ustar/GNU headers: enough to check times, owners and names.
struct TarEntries(Vec<u8>);

impl TarEntries {
    fn entries(&mut self) -> std::io::Result<Vec<std::io::Result<TarEntry>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 512 <= self.0.len() {
            let block = &self.0[pos..pos + 512];
            if block.iter().all(|b| *b == 0) {
                break;
            }
            let size = octal(&block[124..136]);
            out.push(Ok(TarEntry(block.to_vec())));
            pos += 512 + size.div_ceil(512) as usize * 512;
        }
        Ok(out)
    }
}

struct TarEntry(Vec<u8>);

impl TarEntry {
    fn header(&self) -> &Self {
        self
    }
    fn mtime(&self) -> std::io::Result<u64> {
        Ok(octal(&self.0[136..148]))
    }
    fn uid(&self) -> std::io::Result<u64> {
        Ok(octal(&self.0[108..116]))
    }
    fn username(&self) -> std::io::Result<Option<&str>> {
        let raw = &self.0[265..297];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        Ok(std::str::from_utf8(&raw[..end]).ok())
    }
}

fn octal(field: &[u8]) -> u64 {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

#[test]
fn the_manifest_names_the_bytes_by_blake3_and_sha256() {
    let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    app(dir.path(), 0o022, std::time::SystemTime::now());
    let rev = out.path().join("app.zip");
    assert_eq!(package(dir.path(), &rev, &[]).status.code(), Some(0));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("app.zip.manifest.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(&rev).unwrap();
    assert_eq!(
        manifest["blake3"],
        blake3::hash(&bytes).to_hex().to_string()
    );
    let sha = Command::new("sha256sum").arg(&rev).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(
        manifest["sha256"],
        format!("sha256:{}", sha.split_whitespace().next().unwrap())
    );
    assert_eq!(manifest["size"], bytes.len());
    assert_eq!(manifest["files"], 4);
    // The zip opens with a standard tool.
    let list = Command::new("python3")
        .args(["-m", "zipfile", "-l"])
        .arg(&rev)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("scripts/start.sh"));
}

#[test]
fn a_folder_without_an_appspec_is_refused_unless_asked() {
    let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("index.html"), "x").unwrap();
    let rev = out.path().join("app.zip");
    let refused = package(dir.path(), &rev, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no appspec.yml"));
    assert!(!rev.exists(), "a refused revision was written");
    assert_eq!(
        package(dir.path(), &rev, &["--no-appspec"]).status.code(),
        Some(0)
    );
    assert!(rev.exists());
}

#[test]
fn an_invalid_appspec_is_refused_with_its_place() {
    let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("appspec.yml"), "version: 0.0\nfiles: [\n").unwrap();
    let refused = package(dir.path(), &out.path().join("app.zip"), &[]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    // The document is cut short after `[`: its place is that last character.
    assert!(stderr.contains("appspec.yml:2:8\n"), "{stderr}");
    std::fs::write(dir.path().join("appspec.yml"), "version: 0.0\nfiles: []\n").unwrap();
    let refused = package(dir.path(), &out.path().join("app.zip"), &[]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has no `os`"));
}

#[test]
fn a_build_packages_its_primary_artifact() {
    let b = Build::new()
        .write("appspec.yml", "version: 0.0\nos: linux\n")
        .write("app.sh", "#!/bin/sh\n")
        .buildspec("version: 0.2\nphases:\n  build:\n    commands: [export V=3]\nenv:\n  exported-variables: [V]\nartifacts:\n  name: app\n  files: [appspec.yml, app.sh]\n")
        .args(["--package"]);
    let run: Run = b.run();
    run.success();
    let rev = run.output.join("app.zip");
    assert_eq!(run.json["revision"]["path"], rev.display().to_string());
    assert_eq!(
        run.json["revision"]["manifest"]["build"]["exported_variables"]["V"],
        "3"
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&rev).unwrap()).unwrap();
    let mut text = String::new();
    zip.by_name("appspec.yml")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "version: 0.0\nos: linux\n");

    // The same revision again from the build's record.
    let again = b.path().join("again.zip");
    let out = kiln()
        .arg("--state-dir")
        .arg(b.state_dir())
        .args(["package", "--from-build", "1"])
        .arg(format!(
            "--project={}",
            run.json["project"].as_str().unwrap()
        ))
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&rev).unwrap());
}
