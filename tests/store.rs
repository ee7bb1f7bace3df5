//! Pushing and pulling revisions (file:// stores): digests verified, safe extraction, clear errors.

use std::io::Write;
use std::path::Path;

use crate::support::kiln;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = kiln().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn app_revision(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("scripts")).unwrap();
    std::fs::write(src.join("appspec.yml"), "version: 0.0\nos: linux\n").unwrap();
    std::fs::write(src.join("scripts/start.sh"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.join("scripts/start.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let rev = dir.join("app.zip");
    let (code, _, err) = run(&[
        "package",
        src.to_str().unwrap(),
        "-o",
        rev.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    rev
}

#[test]
fn push_pull_and_list_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let reference = format!("file://{}/store/app/v1.zip", dir.path().display());
    let (code, out, err) = run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(pushed["uploaded"].as_u64().unwrap() > 0);
    assert_eq!(
        std::fs::read(dir.path().join("store/app/v1.zip")).unwrap(),
        std::fs::read(&rev).unwrap()
    );
    // Pushing the same revision again uploads nothing.
    let (_, out, _) = run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["uploaded"], 0);

    let dest = dir.path().join("pulled");
    let (code, _, err) = run(&["pull", &reference, "-o", dest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read_to_string(dest.join("appspec.yml")).unwrap(),
        "version: 0.0\nos: linux\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("scripts/start.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);

    let (code, out, _) = run(&["ls", &format!("file://{}/store", dir.path().display())]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&reference), "{out}");
}

#[test]
fn a_tampered_revision_is_refused_before_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let stored = dir.path().join("store/app.zip");
    let reference = format!("file://{}", stored.display());
    assert_eq!(run(&["push", rev.to_str().unwrap(), &reference]).0, Some(0));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let dest = dir.path().join("pulled");
    let (code, _, err) = run(&["pull", &reference, "-o", dest.to_str().unwrap()]);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("does not match its manifest"), "{err}");
    assert!(!dest.exists(), "a refused revision left a folder");
}

/// Writes a zip with the given entries (name, content, unix mode incl. file type) and pushes it.
fn push_zip(dir: &Path, entries: &[(&str, &[u8], u32)]) -> String {
    let path = dir.join("evil.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, content, mode) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        if mode & 0o170000 == 0o120000 {
            zip.add_symlink(*name, std::str::from_utf8(content).unwrap(), options)
                .unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
    }
    zip.finish().unwrap();
    let reference = format!("file://{}/store/evil.zip", dir.display());
    assert_eq!(
        run(&["push", path.to_str().unwrap(), &reference]).0,
        Some(0)
    );
    reference
}

fn refused(entries: &[(&str, &[u8], u32)], why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let reference = push_zip(dir.path(), entries);
    let dest = dir.path().join("target/app");
    let (code, _, err) = run(&[
        "pull",
        &reference,
        "-o",
        dest.to_str().unwrap(),
        "--max-size",
        "1M",
    ]);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(!dest.exists(), "a refused bundle left {}", dest.display());
    assert!(!dir.path().join("target/escaped").exists());
    assert!(!dir.path().join("escaped").exists());
}

#[test]
fn bundles_that_would_escape_or_explode_are_refused_naming_the_entry() {
    refused(
        &[("../escaped", b"x", 0o100644)],
        "refused entry `../escaped`",
    );
    refused(
        &[("a/../../escaped", b"x", 0o100644)],
        "refused entry `a/../../escaped`",
    );
    refused(
        &[
            ("link", b"../../escaped", 0o120777),
            ("ok.txt", b"x", 0o100644),
        ],
        "refused entry `link`: a symlink to `../../escaped` leads outside",
    );
    refused(
        &[("abs", b"/etc", 0o120777)],
        "a symlink to `/etc` leads outside",
    );
    let big = vec![0u8; 3 << 20];
    refused(&[("bomb.bin", &big, 0o100644)], "expands past");
}

#[test]
fn an_absolute_entry_is_refused() {
    // The zip writer keeps names as given; an absolute one must not be written outside the target.
    refused(
        &[("/tmp/kiln-escaped-abs", b"x", 0o100644)],
        "refused entry `/tmp/kiln-escaped-abs`",
    );
    assert!(!Path::new("/tmp/kiln-escaped-abs").exists());
}

#[test]
fn store_errors_have_their_own_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file://{}/none.zip", dir.path().display());
    let (code, _, err) = run(&[
        "pull",
        &missing,
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4), "{err}");
    let (code, _, err) = run(&["pull", "s3://bucket/app.zip", "-o", "x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("S3"), "{err}");
    let (code, _, _) = run(&["pull", "ftp://x", "-o", "x"]);
    assert_eq!(code, Some(2));
}
