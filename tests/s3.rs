//! Revisions and the shared build cache in S3 (s3s-fs, a real S3 server checking SigV4, started
//! per test): metadata digests, no re-upload, 403 on a wrong secret, conditional puts, a server
//! killed mid-upload, safe extraction, interop with boto3, and two machines sharing one cache.

use std::path::Path;
use std::process::Command;

use crate::oci::big_revision;
use crate::store::{
    Target, another_revision_needs_force, app_revision, every_malicious_bundle_is_refused,
};
use crate::support::services::{Service, wait_for_bytes};
use crate::support::{Run, kiln, own_cache};

const ACCESS: &str = "AKIAKILNTEST";
const SECRET: &str = "kiln-test-secret-key";

fn target(s3: &Service, prefix: &str) -> Target {
    Target {
        prefix: format!("s3://{prefix}"),
        args: vec!["--allow-http".into()],
        envs: envs(s3, SECRET),
    }
}

fn envs(s3: &Service, secret: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), s3.address.clone()),
        ("AWS_ACCESS_KEY_ID".into(), ACCESS.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// A Python interpreter with boto3: Debian's (CI installs python3-boto3), or the first on PATH.
fn python_with_boto3() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import boto3"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn a_pushed_revision_is_not_replaced_without_force() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    another_revision_needs_force(&target(&s3, "revisions/imm/"), dir.path(), |name| {
        std::fs::read(s3.data().join("revisions/imm").join(name)).unwrap()
    });
}

#[test]
fn push_pull_with_metadata_digests_no_reupload_and_boto3_reads_it() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = target(&s3, "revisions/app/");
    let reference = t.reference("v1.zip");
    let (code, out, err) = t.run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stored = s3.data().join("revisions/app/v1.zip");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&rev).unwrap()
    );
    let written = std::fs::metadata(&stored).unwrap().modified().unwrap();

    // Again: nothing uploaded, the object untouched.
    let (code, out, err) = t.run(&["push", rev.to_str().unwrap(), &reference, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["uploaded"],
        0
    );
    assert_eq!(
        std::fs::metadata(&stored).unwrap().modified().unwrap(),
        written
    );

    let dest = dir.path().join("pulled");
    let (code, out, err) = t.run(&["pull", &reference, "-o", dest.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let pulled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pulled["blake3"], pushed["blake3"]);
    assert_eq!(pulled["manifest"]["files"], 2);
    assert!(dest.join("scripts/start.sh").is_file());

    let (code, out, err) = t.run(&["ls", "s3://revisions/app/", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["reference"], reference);
    assert_eq!(listed[0]["blake3"], pushed["blake3"]);

    let (code, _, err) = t.run(&[
        "pull",
        &t.reference("none.zip"),
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4), "{err}");

    // A standard S3 client reads the same bytes, and the digests kiln put in the metadata.
    let Some(python) = python_with_boto3() else {
        if std::env::var_os("CI").is_some() {
            panic!("boto3 is not installed: run tests/services/install.sh");
        }
        eprintln!("\n*** SKIPPED the boto3 interop check: apt-get install python3-boto3 ***\n");
        return;
    };
    let copy = dir.path().join("boto3.zip");
    let script = format!(
        r#"
import boto3, json, sys
c = boto3.client("s3", endpoint_url="{}", aws_access_key_id="{ACCESS}",
                 aws_secret_access_key="{SECRET}", region_name="us-east-1")
c.download_file("revisions", "app/v1.zip", "{}")
print(json.dumps(c.head_object(Bucket="revisions", Key="app/v1.zip")["Metadata"]))
"#,
        s3.address,
        copy.display()
    );
    let out = Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(metadata["kiln-blake3"], pushed["blake3"]);
    assert_eq!(metadata["kiln-sha256"], pushed["sha256"]);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&rev).unwrap());
}

#[test]
fn a_wrong_secret_is_a_403_and_exit_code_5() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let mut t = target(&s3, "revisions/");
    t.envs = envs(&s3, "not-the-secret");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("app.zip")]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("bucket s3://revisions refused access"),
        "{err}"
    );
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY (set)"), "{err}");
    assert!(!s3.data().join("revisions/app.zip").exists());
}

#[test]
fn the_server_refuses_a_create_over_an_existing_object() {
    // kiln's shared cache stores blobs with PutMode::Create; this is the server behaviour it relies on.
    let Some(s3) = Service::s3(ACCESS, SECRET, &["cache"]) else {
        return;
    };
    use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3.address)
        .with_allow_http(true)
        .with_bucket_name("cache")
        .with_region("us-east-1")
        .with_access_key_id(ACCESS)
        .with_secret_access_key(SECRET)
        .build()
        .unwrap();
    let path = object_store::path::Path::from("blobs/x");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        store
            .put_opts(&path, PutPayload::from_static(b"one"), create())
            .await
            .unwrap();
        let again = store
            .put_opts(&path, PutPayload::from_static(b"two"), create())
            .await;
        assert!(
            matches!(
                again,
                Err(object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. })
            ),
            "{again:?}"
        );
    });
    assert_eq!(
        std::fs::read(s3.data().join("cache/blobs/x")).unwrap(),
        b"one"
    );
}

#[test]
fn tampered_bytes_are_refused_before_extraction() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = target(&s3, "revisions/");
    let reference = t.reference("app.zip");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    let stored = s3.data().join("revisions/app.zip");
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let dest = dir.path().join("out");
    let (code, _, err) = t.run(&["pull", &reference, "-o", dest.to_str().unwrap()]);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn a_server_killed_mid_upload_leaves_no_manifest_and_a_retry_completes() {
    let Some(mut s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = big_revision(dir.path(), 192 << 20);
    let t = target(&s3, "revisions/");
    let reference = t.reference("big.zip");
    let child = t.spawn(
        &["push", rev.to_str().unwrap(), &reference],
        &[("KILN_STORE_RETRIES", "1")],
    );
    wait_for_bytes(&s3.data(), 16 << 20, "the upload");
    s3.kill();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the push should have failed");

    s3.restart();
    // No manifest, and no object that claims to be the revision.
    assert!(!s3.data().join("revisions/big.zip.manifest.json").exists());
    let (code, _, _) = t.run(&[
        "pull",
        &reference,
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_ne!(code, Some(0));

    t.push_and_pull_back(&rev, &reference, dir.path(), 192 << 20);
}

#[test]
fn every_malicious_bundle_pulled_from_s3_is_refused() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    every_malicious_bundle_is_refused(&target(&s3, "revisions/evil/"));
}

/// Builds the hello-web example as a machine of its own (its own local store and records) with
/// the shared cache.
fn build_on_a_machine(s3: &Service, extra: &[&str]) -> Run {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-web");
    let cache = own_cache();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = kiln();
    cmd.arg("--cache-dir")
        .arg(cache.path())
        .arg("--state-dir")
        .arg(state.path())
        .arg("build")
        .arg(&example)
        .args(["--json", "--allow-http", "--output"])
        .arg(out.path())
        .args(extra);
    for (k, v) in envs(s3, SECRET) {
        cmd.env(k, v);
    }
    cmd.env("KILN_CACHE", "s3://cache/kiln");
    let run = Run::new(cmd.output().unwrap(), out.path().to_path_buf());
    // The temp dirs go with this function; what the test needs is in `run`.
    let files = run.artifact_files("site");
    assert_eq!(files, ["about.html", "index.html"], "{}", run.stderr);
    run
}

#[test]
fn two_machines_share_one_s3_cache() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["cache"]) else {
        return;
    };
    // A build not trusted to write the shared cache reads it and leaves it as it was.
    let untrusted = build_on_a_machine(&s3, &["--cache-read-only"]);
    untrusted.success();
    assert!(untrusted.json["cache"]["uploaded"].is_null());
    assert!(!s3.data().join("cache/kiln").exists());

    let first = build_on_a_machine(&s3, &[]);
    first.success();
    assert_eq!(first.json["cache"]["hit"], false);
    let sent = &first.json["cache"]["uploaded"];
    assert!(sent["moved"].as_u64().unwrap() > 0, "{sent}");
    assert_eq!(sent["moved"], sent["blobs"]);
    assert!(s3.data().join("cache/kiln/ac").is_dir());

    // Another machine (empty local store): a hit, nothing runs, artifacts restored.
    let second = build_on_a_machine(&s3, &[]);
    second
        .success()
        .log_has("Cache: found in s3://cache/kiln")
        .log_has("no command runs");
    assert_eq!(second.json["cache"]["hit"], true);

    // A third rebuilds (--no-cache) the same thing: the remote has every artifact blob; only this
    // build's own log is new.
    let third = build_on_a_machine(&s3, &["--no-cache"]);
    third.success().log_has("checked 2 pages");
    let sent = &third.json["cache"]["uploaded"];
    assert_eq!(sent["blobs"], first.json["cache"]["uploaded"]["blobs"]);
    assert_eq!(sent["moved"], 1, "{sent}");
}

/// The warning kiln prints for a plain HTTP endpoint nobody said was meant.
const HTTP_WARNING: &str = "is plain HTTP: traffic to it is not encrypted";

/// This server with only the AWS CLI's variables (no `--allow-http`), plus `extra`.
fn as_the_aws_cli(s3: &Service, prefix: &str, extra: &[(&str, &str)]) -> Target {
    let mut envs = envs(s3, SECRET);
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Target {
        prefix: format!("s3://{prefix}"),
        args: Vec::new(),
        envs,
    }
}

#[test]
fn an_http_endpoint_works_as_with_the_aws_cli_and_warns_once() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    assert!(s3.address.starts_with("http://"), "{}", s3.address);
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = as_the_aws_cli(&s3, "revisions/app/", &[]);
    let reference = t.reference("v1.zip");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.matches(HTTP_WARNING).count(), 1, "{err}");
    assert!(
        err.contains(&format!("warning: the S3 endpoint {}", s3.address)),
        "{err}"
    );
    let dest = dir.path().join("pulled");
    let (code, _, err) = t.run(&["pull", &reference, "-o", dest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.matches(HTTP_WARNING).count(), 1, "{err}");
    assert!(dest.join("scripts/start.sh").is_file());
}

#[test]
fn aws_allow_http_and_its_alias_mean_plain_http_is_meant() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    // object_store's own variable, with the endpoint in AWS_ENDPOINT_URL_S3 (the S3-only one).
    let mut t = as_the_aws_cli(&s3, "revisions/app/", &[("AWS_ALLOW_HTTP", "true")]);
    t.envs.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    t.envs
        .push(("AWS_ENDPOINT_URL_S3".into(), s3.address.clone()));
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("v1.zip")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains(HTTP_WARNING), "{err}");
    // `--allow-http`, as before.
    let t = target(&s3, "revisions/app/");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &t.reference("v2.zip")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains(HTTP_WARNING), "{err}");
    assert!(s3.data().join("revisions/app/v2.zip").is_file());
}

#[test]
fn agent_and_rollback_take_the_store_options_of_deploy() {
    let Some(s3) = Service::s3(ACCESS, SECRET, &["revisions"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rev = app_revision(dir.path());
    let t = as_the_aws_cli(&s3, "revisions/app/", &[]);
    let reference = t.reference("v1.zip");
    let (code, _, err) = t.run(&["push", rev.to_str().unwrap(), &reference]);
    assert_eq!(code, Some(0), "{err}");
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    // The agent reads the S3 endpoint as deploy does: plain HTTP with a warning...
    let (code, _, err) = t.run(&[
        "agent", "--watch", &reference, "--group", "web", "--once", "--root", root,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.matches(HTTP_WARNING).count(), 1, "{err}");
    // ... and takes deploy's store flags, as rollback does now.
    for command in ["agent", "rollback"] {
        let mut args = vec![command, "--group", "web", "--root", root];
        if command == "agent" {
            args.extend(["--watch", &reference, "--once"]);
        }
        args.extend(["--allow-http", "--insecure"]);
        let (code, _, err) = t.run(&args);
        assert!(!err.contains("unexpected argument"), "{command}: {err}");
        assert!(!err.contains(HTTP_WARNING), "{command}: {err}");
        // The agent has nothing new; rollback has no earlier revision to go back to (exit 2).
        let expected = if command == "agent" { 0 } else { 2 };
        assert_eq!(code, Some(expected), "{command}: {err}");
    }
}
