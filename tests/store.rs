//! Pushing and pulling revisions (file:// stores): digests verified, safe extraction, clear errors.

use std::io::Write;
use std::path::Path;

use crate::support::kiln;

pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    run_env(args, &[])
}

/// Runs kiln with extra environment variables.
pub fn run_env(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = kiln();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn app_revision(dir: &Path) -> std::path::PathBuf {
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

#[test]
fn a_pushed_revision_is_not_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    another_revision_needs_force(&Target::file(dir.path()), dir.path(), |name| {
        std::fs::read(dir.path().join("store").join(name)).unwrap()
    });
}

/// Pushes a revision, then a different one to the same name: refused (exit 2, the stored bytes
/// unchanged) until `--force`; the same revision again is no change.
pub fn another_revision_needs_force(target: &Target, dir: &Path, stored: impl Fn(&str) -> Vec<u8>) {
    let v1 = app_revision(dir);
    std::fs::write(dir.join("src/VERSION"), "2\n").unwrap();
    let v2 = dir.join("app-v2.zip");
    let (code, _, err) = run(&[
        "package",
        dir.join("src").to_str().unwrap(),
        "-o",
        v2.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let reference = target.reference("immutable.zip");
    let (code, _, err) = target.run(&["push", v1.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = target.run(&["push", v1.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "the same revision again: {err}");
    let (code, _, err) = target.run(&["push", v2.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("holds another revision") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(stored("immutable.zip"), std::fs::read(&v1).unwrap());
    let (code, _, err) = target.run(&["push", v2.to_str().unwrap(), &reference, "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stored("immutable.zip"), std::fs::read(&v2).unwrap());
}

/// Where a test pushes: a reference for a name, and the flags and environment the store needs.
pub struct Target {
    pub prefix: String,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

impl Target {
    pub fn file(dir: &Path) -> Target {
        Target {
            prefix: format!("file://{}/store/", dir.display()),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// The reference of a revision called `name` (a tag for registries).
    pub fn reference(&self, name: &str) -> String {
        if self.prefix.starts_with("oci://") {
            format!(
                "{}:{}",
                self.prefix.trim_end_matches('/'),
                name.replace('.', "-")
            )
        } else {
            format!("{}{name}", self.prefix)
        }
    }

    /// Starts kiln with `args`, this store's flags and environment, and `envs`; stderr piped.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = kiln();
        cmd.args(args)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .envs(envs.iter().copied())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    }

    /// Pushes `rev` to `reference`, pulls it back into a new folder below `dir`, and checks that
    /// the files came back whole.
    pub fn push_and_pull_back(&self, rev: &Path, reference: &str, dir: &Path, bytes: u64) {
        let (code, _, err) = self.run(&["push", rev.to_str().unwrap(), reference]);
        assert_eq!(code, Some(0), "{err}");
        let dest = dir.join("pulled-back");
        let (code, _, err) = self.run(&["pull", reference, "-o", dest.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(crate::support::services::bytes_below(&dest), bytes);
    }

    /// Runs kiln with `args` and this store's flags and environment.
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.args.iter().map(String::as_str));
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_env(&all, &envs)
    }
}

/// Writes a zip with the given entries (name, content, unix mode incl. file type) and pushes it.
fn push_zip(dir: &Path, entries: &[(&str, &[u8], u32)], target: &Target) -> String {
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
    // A name of its own: pushed revisions are immutable, and a store may hold earlier ones.
    let reference = target.reference(&format!(
        "evil{}-{}.zip",
        entries.len(),
        crate::support::isolation::unique_digits()
    ));
    let (code, _, err) = target.run(&["push", path.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    reference
}

fn refused(entries: &[(&str, &[u8], u32)], why: &str) {
    let dir = tempfile::tempdir().unwrap();
    refused_from(entries, why, &Target::file(dir.path()), dir.path());
}

/// Pushes a malicious bundle to `target` and checks that pulling it is refused, naming the entry,
/// with nothing written in or beside the target folder.
pub fn refused_from(entries: &[(&str, &[u8], u32)], why: &str, target: &Target, dir: &Path) {
    let reference = push_zip(dir, entries, target);
    let dest = dir.join("target/app");
    let (code, _, err) = target.run(&[
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
    assert!(!dir.join("target/escaped").exists());
    assert!(!dir.join("escaped").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("target"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "left beside the target: {leftovers:?}"
    );
}

/// A zip's entries: name, content, unix mode (with the file type).
type Entries = Vec<(&'static str, Vec<u8>, u32)>;

/// Every malicious bundle kiln must refuse, and what the refusal says.
pub fn malicious_bundles() -> Vec<(Entries, &'static str)> {
    vec![
        (
            vec![("../escaped", b"x".to_vec(), 0o100644)],
            "refused entry `../escaped`",
        ),
        (
            vec![("a/../../escaped", b"x".to_vec(), 0o100644)],
            "refused entry `a/../../escaped`",
        ),
        (
            vec![
                ("link", b"../../escaped".to_vec(), 0o120777),
                ("ok.txt", b"x".to_vec(), 0o100644),
            ],
            "refused entry `link`: a symlink to `../../escaped` leads outside",
        ),
        (
            vec![("abs", b"/etc".to_vec(), 0o120777)],
            "a symlink to `/etc` leads outside",
        ),
        (
            vec![("/tmp/kiln-escaped-abs", b"x".to_vec(), 0o100644)],
            "refused entry `/tmp/kiln-escaped-abs`",
        ),
        (
            vec![("bomb.bin", vec![0u8; 3 << 20], 0o100644)],
            "expands past",
        ),
    ]
}

/// Pushes every malicious bundle to `target` and checks each is refused on pull.
pub fn every_malicious_bundle_is_refused(target: &Target) {
    for (i, (entries, why)) in malicious_bundles().into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(&str, &[u8], u32)> = entries
            .iter()
            .map(|(n, c, m)| (*n, c.as_slice(), *m))
            .collect();
        let mut named = entries.clone();
        // A distinct revision name per bundle.
        let pad = format!("pad{i}");
        named.push((pad.as_str(), b"", 0o100644));
        refused_from(&named, why, target, dir.path());
    }
    assert!(!Path::new("/tmp/kiln-escaped-abs").exists());
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
    // A plain HTTP endpoint is used, as the AWS CLI uses it: nothing listens there.
    let (code, _, err) = run_env(
        &["pull", "s3://bucket/app.zip", "-o", "x"],
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ACCESS_KEY_ID", "AKIAKILNTEST"),
            ("AWS_SECRET_ACCESS_KEY", "kiln-test-secret-key"),
            ("KILN_STORE_RETRIES", "1"),
        ],
    );
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("is plain HTTP"), "{err}");
    let (code, _, _) = run(&["pull", "ftp://x", "-o", "x"]);
    assert_eq!(code, Some(2));
}
