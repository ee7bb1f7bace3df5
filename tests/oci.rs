//! Revisions in an OCI registry (Debian's docker-registry 2.8, started per test): the artifact's
//! shape, digests, no re-upload, credentials, a registry killed mid-push, safe extraction, and
//! interop with plain `curl`.

use std::path::Path;
use std::process::Command;

use crate::store::{Target, app_revision, every_malicious_bundle_is_refused};
use crate::support::services::{Service, wait_for_bytes};

fn target(registry: &Service, repo: &str) -> Target {
    Target {
        prefix: format!("oci://{}/{repo}", registry.address),
        args: Vec::new(),
        // An empty Docker config: tests never read the user's.
        envs: vec![("DOCKER_CONFIG".into(), "/nonexistent-kiln-test".into())],
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Blob uploads the registry has started so far (from its access log).
fn uploads(registry: &Service, repo: &str) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| l.contains(&format!("\"POST /v2/{repo}/blobs/uploads/")))
        .count()
}

#[test]
fn push_pull_an_artifact_with_the_right_shape_and_no_reupload() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = target(&registry, "hello/web");
    let reference = t.reference("v1");
    let (code, out, err) = t.run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let size = std::fs::metadata(&rev).unwrap().len();
    assert!(pushed["uploaded"].as_u64().unwrap() > size);
    assert_eq!(
        uploads(&registry, "hello/web"),
        2,
        "the bundle and the config"
    );

    // The manifest, read with plain curl: an OCI 1.1 artifact of kiln's type.
    let manifest: serde_json::Value = serde_json::from_slice(&crate::support::curl(&[
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}/v2/hello/web/manifests/v1", registry.address),
    ]))
    .unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.kiln.revision.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.kiln.revision.manifest.v1+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(layer["mediaType"], "application/zip");
    assert_eq!(
        layer["annotations"]["org.opencontainers.image.title"],
        "app.zip"
    );
    assert_eq!(layer["digest"], pushed["sha256"]);
    assert_eq!(
        manifest["annotations"]["dev.kiln.revision.blake3"],
        pushed["blake3"]
    );
    assert_eq!(manifest["annotations"]["dev.kiln.revision.files"], "2");

    // The blob, with curl: its sha256 is the layer digest, its bytes the revision's.
    let digest = layer["digest"].as_str().unwrap();
    let blob = crate::support::curl(&[&format!(
        "http://{}/v2/hello/web/blobs/{digest}",
        registry.address
    )]);
    assert_eq!(format!("sha256:{}", sha256_hex(&blob)), digest);
    assert_eq!(blob, std::fs::read(&rev).unwrap());
    // The config blob is the revision manifest.
    let config: serde_json::Value = serde_json::from_slice(&crate::support::curl(&[&format!(
        "http://{}/v2/hello/web/blobs/{}",
        registry.address,
        manifest["config"]["digest"].as_str().unwrap()
    )]))
    .unwrap();
    assert_eq!(config["blake3"], pushed["blake3"]);

    // Pushing again, and to another tag, uploads no blob.
    let (code, out, err) = t.run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["uploaded"],
        0
    );
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("latest")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(uploads(&registry, "hello/web"), 2, "{}", registry.log());

    // Pull by tag and by digest: verified, identical files.
    for r in [
        reference.clone(),
        format!(
            "oci://{}/hello/web@{}",
            registry.address,
            pushed["manifest_digest"].as_str().unwrap()
        ),
    ] {
        let dest = dir.path().join(format!("pulled-{}", r.len()));
        let (code, out, err) = t.run(&["pull", &r, "-o", dest.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(0), "{r}: {err}");
        let pulled: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(pulled["blake3"], pushed["blake3"]);
        assert_eq!(
            std::fs::read(dest.join("appspec.yml")).unwrap(),
            std::fs::read(dir.path().join("src/appspec.yml")).unwrap()
        );
    }

    // --archive keeps the verified revision file itself: the bytes that were pushed.
    let kept = dir.path().join("kept.zip");
    let (code, _, err) = t.run(&["pull", &reference, "--archive", kept.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read(&kept).unwrap(), std::fs::read(&rev).unwrap());

    // ls: both tags, with their digests.
    let (code, out, err) = t.run(&[
        "ls",
        &format!("oci://{}/hello/web", registry.address),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let refs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, [t.reference("latest"), reference.clone()]);
    assert_eq!(listed[0]["blake3"], pushed["blake3"]);

    // A missing tag is "not found" (4); a tag that is not a kiln revision is refused (2).
    let (code, _, err) = t.run(&[
        "pull",
        &t.reference("v9"),
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4), "{err}");
}

#[test]
fn a_tampered_blob_is_refused_before_extraction() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = target(&registry, "tamper");
    let reference = t.reference("v1");
    let (code, out, err) = t.run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Flip the stored blob's bytes behind the registry's back.
    let hex = pushed["sha256"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let data = registry.data().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let dest = dir.path().join("out");
    let (code, _, err) = t.run(&["pull", &reference, "-o", dest.to_str().unwrap()]);
    assert_eq!(code, Some(7), "{err}");
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kiln-pull"))
        .collect();
    assert!(leftovers.is_empty(), "a partial download was left behind");
}

#[test]
fn credentials_come_from_the_docker_config_or_stdin_and_wrong_ones_are_denied() {
    let Some(registry) = Service::registry(Some("alice:s3cret")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = target(&registry, "private");
    let reference = t.reference("v1");
    let rev = rev.to_str().unwrap();

    // No credentials: denied (5), naming the registry and where kiln looked.
    let (code, _, err) = t.run(&["push", rev, &reference]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(&format!("registry {}", registry.address)),
        "{err}"
    );
    assert!(err.contains("/nonexistent-kiln-test/config.json"), "{err}");

    // A wrong password on stdin: denied.
    let push_stdin = |password: &str| {
        let mut child = crate::support::kiln()
            .args([
                "push",
                rev,
                &reference,
                "--username",
                "alice",
                "--password-stdin",
            ])
            .env("DOCKER_CONFIG", "/nonexistent-kiln-test")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = push_stdin("wrong");
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("--username and --password-stdin"), "{err}");
    let (code, err) = push_stdin("s3cret");
    assert_eq!(code, Some(0), "{err}");

    // The Docker config file, as `docker login` writes it.
    let config = tempfile::tempdir().unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let dest = dir.path().join("pulled");
    let out = crate::support::kiln()
        .args(["pull", &reference, "-o", dest.to_str().unwrap()])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.join("appspec.yml").is_file());
}

#[test]
fn plain_http_is_for_this_machine_only_and_unreachable_has_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = Target {
        prefix: "oci://127.0.0.1:1/app".into(),
        args: Vec::new(),
        envs: vec![
            ("DOCKER_CONFIG".into(), "/nonexistent-kiln-test".into()),
            ("KILN_STORE_RETRIES".into(), "2".into()),
        ],
    };
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("v1")]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("could not be reached"), "{err}");
    assert!(
        err.contains("http://127.0.0.1:1/"),
        "localhost is spoken to over HTTP: {err}"
    );
    // Another host is spoken to over HTTPS unless --insecure.
    let t = Target {
        prefix: "oci://192.0.2.1:1/app".into(),
        ..t
    };
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("v1")]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("https://192.0.2.1:1/"), "{err}");
}

#[test]
fn a_registry_killed_mid_push_leaves_no_tag_and_a_retry_completes() {
    let Some(mut registry) = Service::registry(None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = big_revision(dir.path(), 192 << 20);
    let t = target(&registry, "big");
    let reference = t.reference("v1");
    let child = t.spawn(
        &["push", rev.to_str().unwrap(), &reference],
        &[("KILN_STORE_RETRIES", "1")],
    );
    // Kill the registry once part of the bundle has landed in its upload area.
    wait_for_bytes(&registry.data(), 16 << 20, "the upload");
    registry.kill();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the push should have failed");

    registry.restart();
    // No tag points at a missing (or partial) blob.
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/big/manifests/v1", registry.address))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");
    let (code, _, _) = t.run(&[
        "pull",
        &reference,
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4));

    // A retry completes, and what comes back is the revision.
    t.push_and_pull_back(&rev, &reference, dir.path(), 192 << 20);
}

/// A revision of one incompressible file of `size` bytes (without appspec).
pub fn big_revision(dir: &Path, size: usize) -> std::path::PathBuf {
    let src = dir.join("big");
    std::fs::create_dir_all(&src).unwrap();
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(src.join("blob.bin"), data).unwrap();
    let rev = dir.join("big.zip");
    let (code, _, err) = crate::store::run(&[
        "package",
        src.to_str().unwrap(),
        "-o",
        rev.to_str().unwrap(),
        "--no-appspec",
    ]);
    assert_eq!(code, Some(0), "{err}");
    rev
}

#[test]
fn every_malicious_bundle_pulled_from_a_registry_is_refused() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    every_malicious_bundle_is_refused(&target(&registry, "evil"));
}

#[test]
fn an_interrupted_pull_leaves_nothing_behind() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = big_revision(dir.path(), 192 << 20);
    let t = target(&registry, "interrupted");
    let reference = t.reference("v1");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    let parent = dir.path().join("out");
    std::fs::create_dir(&parent).unwrap();
    let child = t.spawn(
        &[
            "pull",
            &reference,
            "-o",
            parent.join("app").to_str().unwrap(),
        ],
        &[],
    );
    // Interrupt once part of the download is on disk.
    wait_for_bytes(&parent, 16 << 20, "the download");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "an interrupted pull left {left:?}");
}
