//! Plugins through a registry (Debian's docker-registry, started per test) and a file:// image
//! layout: the CNCF Wasm artifact's shape, semver tags, one layer only, `kiln plugin add` writing
//! kiln.toml and kiln.lock, a retagged upstream changing nothing until `kiln plugin update`, tampered
//! layers refused at pull and tampered cache blobs at resolve, capabilities granted only with
//! `--accept`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln::cas::{Digest, LocalStore};
use kiln::plugins::resolve::{ResolveError, resolve};
use kiln::store::Access;

use crate::support::services::Service;
use crate::support::{Build, probe_plugin};

const PROBE_010: &[u8] = include_bytes!("fixtures/plugins/probe-0.1.0.wasm");
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .env("DOCKER_CONFIG", "/nonexistent-kiln-test")
        .output()
        .expect("kiln runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `kiln plugin ARGS` in the project's folder, with its cache.
fn plugin(b: &Build, args: &[&str]) -> (i32, String, String) {
    let mut cmd = b.kiln();
    cmd.arg("plugin").args(args).current_dir(b.path());
    run(cmd)
}

fn write_component(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn manifest_of(registry: &Service, repo: &str, tag: &str) -> serde_json::Value {
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry.address);
    serde_json::from_slice(&crate::support::curl(&[
        "-H",
        &format!("Accept: {MANIFEST}"),
        &url,
    ]))
    .unwrap()
}

fn put_manifest(registry: &Service, repo: &str, tag: &str, manifest: &serde_json::Value) {
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry.address);
    let body = serde_json::to_string(manifest).unwrap();
    crate::support::curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {MANIFEST}"),
        "--data-binary",
        &body,
        &url,
    ]);
}

fn push(b: &Build, file: &Path, reference: &str) -> serde_json::Value {
    let (code, out, err) = plugin(b, &["push", file.to_str().unwrap(), reference, "--json"]);
    assert_eq!(code, 0, "push {reference}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn lock_of(b: &Build) -> kiln::plugins::lock::Lock {
    kiln::plugins::lock::Lock::read(&b.path().join("kiln.lock"))
        .unwrap()
        .expect("a kiln.lock")
}

fn resolve_now(b: &Build, name: &str, reference: &str) -> Result<PathBuf, ResolveError> {
    let cas = LocalStore::open(&b.cache_dir().join("cas")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wanted = [(name.to_string(), reference.to_string())];
    runtime
        .block_on(resolve(b.path(), &wanted, &cas, &Access::default(), &[]))
        .map(|mut r| r.remove(0).path)
}

#[test]
fn push_writes_the_cncf_wasm_artifact_with_metadata_annotations() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let b = Build::new();
    let component = crate::support::with_custom_section(
        &crate::support::with_custom_section(PROBE_010, "description", "Probes the sandbox"),
        "licenses",
        "Apache-2.0",
    );
    let file = write_component(b.path(), "probe.wasm", &component);
    let reference = format!("oci://{}/acme/probe:1.0.0", registry.address);
    let pushed = push(&b, &file, &reference);

    let m = manifest_of(&registry, "acme/probe", "1.0.0");
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], MANIFEST);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let layer = format!("sha256:{}", sha256_hex(&component));
    assert_eq!(layers[0]["digest"], layer.as_str());
    assert_eq!(layers[0]["size"], component.len());
    let a = &m["annotations"];
    assert_eq!(
        a["org.opencontainers.image.description"],
        "Probes the sandbox"
    );
    assert_eq!(a["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(a["org.opencontainers.image.created"].is_string(), "{a}");
    // The digest kiln printed is the registry's.
    let body = crate::support::curl(&[
        "-H",
        &format!("Accept: {MANIFEST}"),
        &format!("http://{}/v2/acme/probe/manifests/1.0.0", registry.address),
    ]);
    assert_eq!(
        pushed["manifest"],
        format!("sha256:{}", sha256_hex(&body)).as_str()
    );

    let config: serde_json::Value = serde_json::from_slice(&crate::support::curl(&[&format!(
        "http://{}/v2/acme/probe/blobs/{}",
        registry.address,
        m["config"]["digest"].as_str().unwrap()
    )]))
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], layer.as_str());
    assert_eq!(config["component"]["target"], "kiln:plugin/step@0.1.0");
    assert!(config["component"]["imports"].as_array().unwrap().len() > 1);

    // And kiln pulls it back, into the cache, compiled.
    let (code, out, err) = plugin(&b, &["pull", &reference, "--json"]);
    assert_eq!(code, 0, "{err}");
    let pulled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pulled["layer"], layer.as_str());
    assert_eq!(
        std::fs::read(pulled["path"].as_str().unwrap()).unwrap(),
        component
    );
}

#[test]
fn tags_that_move_and_files_that_are_not_plugins_are_refused() {
    let b = Build::new();
    let store = tempfile::tempdir().unwrap();
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    for tag in ["latest", "v1"] {
        let reference = format!("file://{}/probe:{tag}", store.path().display());
        let (code, _, err) = plugin(&b, &["push", file.to_str().unwrap(), &reference]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not a semver version"), "{err}");
        let (code, _, err) = plugin(&b, &["add", "probe", &reference]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("1.2.0"), "{err}");
    }
    let not = write_component(b.path(), "not.wasm", b"\0asm\x01\0\0\0");
    let reference = format!("file://{}/probe:1.0.0", store.path().display());
    let (code, _, err) = plugin(&b, &["push", not.to_str().unwrap(), &reference]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a kiln plugin component"), "{err}");
    let (code, _, err) = plugin(&b, &["add", "cd", &reference]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("shell builtin"), "{err}");
}

#[test]
fn a_manifest_with_two_layers_is_refused_at_pull() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let b = Build::new();
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    push(
        &b,
        &file,
        &format!("oci://{}/acme/probe:1.0.0", registry.address),
    );
    let mut m = manifest_of(&registry, "acme/probe", "1.0.0");
    let layer = m["layers"][0].clone();
    m["layers"] = serde_json::json!([layer.clone(), layer]);
    put_manifest(&registry, "acme/probe", "2.0.0", &m);
    let (code, _, err) = plugin(
        &b,
        &[
            "pull",
            &format!("oci://{}/acme/probe:2.0.0", registry.address),
        ],
    );
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("exactly one") && err.contains("has 2"),
        "{err}"
    );
}

#[test]
fn a_tampered_layer_in_the_registry_is_refused_at_pull() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let b = Build::new();
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    let reference = format!("oci://{}/acme/probe:1.0.0", registry.address);
    push(&b, &file, &reference);
    let hex = sha256_hex(PROBE_010);
    let blob = registry
        .data()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = PROBE_010.to_vec();
    bytes[1000] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    let (code, _, err) = plugin(&b, &["pull", &reference]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("refused") && err.contains(&hex), "{err}");

    // A manifest whose layer lies about its size is refused too.
    let mut m = manifest_of(&registry, "acme/probe", "1.0.0");
    m["layers"][0]["size"] = serde_json::json!(PROBE_010.len() - 1);
    put_manifest(&registry, "acme/probe", "1.0.1", &m);
    let (code, _, err) = plugin(
        &b,
        &[
            "pull",
            &format!("oci://{}/acme/probe:1.0.1", registry.address),
        ],
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("bytes"), "{err}");
}

#[test]
fn add_pins_by_digest_and_a_retagged_upstream_changes_nothing_until_update() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let b = Build::new().write("kiln.toml", "network = \"none\"  # mine\n");
    let old = write_component(b.path(), "old.wasm", PROBE_010);
    let new_bytes = std::fs::read(probe_plugin()).unwrap();
    assert_ne!(new_bytes, PROBE_010);
    let new = write_component(b.path(), "new.wasm", &new_bytes);
    let reference = format!("oci://{}/acme/probe:1.0.0", registry.address);
    let first = push(&b, &old, &reference);

    let (code, out, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pinned to"), "{out}");
    let toml = std::fs::read_to_string(b.path().join("kiln.toml")).unwrap();
    assert_eq!(
        toml,
        format!("network = \"none\"  # mine\n\n[plugins]\nprobe = \"{reference}\"\n")
    );
    let lock = lock_of(&b);
    let locked = lock.get("probe").unwrap();
    assert_eq!(locked.manifest, first["manifest"].as_str().unwrap());
    assert_eq!(locked.layer, format!("sha256:{}", sha256_hex(PROBE_010)));
    assert_eq!(locked.api_version, "0.1.0");
    let text = std::fs::read_to_string(b.path().join("kiln.lock")).unwrap();
    assert!(
        text.contains("kiln plugin add") && text.contains("commit it"),
        "{text}"
    );

    // Upstream moves the tag.
    let second = push(&b, &new, &reference);
    assert_ne!(first["manifest"], second["manifest"]);
    let path = resolve_now(&b, "probe", &reference).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), PROBE_010);
    // Even fetched again from the registry, it is the pinned digest, never the tag.
    std::fs::remove_file(&path).unwrap();
    let path = resolve_now(&b, "probe", &reference).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), PROBE_010);

    // update moves it.
    let (code, out, err) = plugin(&b, &["update"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("now"), "{out}");
    assert_eq!(
        lock_of(&b).get("probe").unwrap().manifest,
        second["manifest"].as_str().unwrap()
    );
    let path = resolve_now(&b, "probe", &reference).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), new_bytes);
    // kiln.toml unchanged by update.
    assert_eq!(
        std::fs::read_to_string(b.path().join("kiln.toml")).unwrap(),
        toml
    );
}

#[test]
fn a_tampered_cache_blob_is_refused_at_resolve_and_a_name_not_locked_says_what_to_run() {
    let b = Build::new();
    let store = tempfile::tempdir().unwrap();
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    let reference = format!("file://{}/probe:1.0.0", store.path().display());
    push(&b, &file, &reference);
    let (code, _, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 0, "{err}");
    assert!(store.path().join("probe/index.json").is_file());

    let e = resolve_now(&b, "other", &reference)
        .unwrap_err()
        .to_string();
    assert!(e.contains("kiln plugin add other"), "{e}");

    let cas = LocalStore::open(&b.cache_dir().join("cas")).unwrap();
    let key = Digest::parse(&lock_of(&b).get("probe").unwrap().blake3).unwrap();
    let blob = cas.blob_path(&key);
    let mut bytes = PROBE_010.to_vec();
    bytes[500] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let e = resolve_now(&b, "probe", &reference).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ResolveError::Tampered { .. }), "{text}");
    assert!(text.contains(&blob.display().to_string()), "{text}");
    assert!(text.contains(&sha256_hex(PROBE_010)), "{text}");
    assert!(text.contains(&sha256_hex(&bytes)), "{text}");
}

#[test]
fn add_grants_nothing_without_accept_and_what_is_declared_with_it() {
    let b = Build::new();
    let store = tempfile::tempdir().unwrap();
    let component = crate::support::with_custom_section(
        PROBE_010,
        "kiln:capabilities",
        "exec git\nenv TOKEN\n",
    );
    let file = write_component(b.path(), "probe.wasm", &component);
    let reference = format!("file://{}/probe:1.0.0", store.path().display());
    push(&b, &file, &reference);

    let (code, out, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("asks for: exec: git; env: TOKEN"), "{out}");
    assert!(out.contains("granted: nothing"), "{out}");
    assert!(lock_of(&b).get("probe").unwrap().granted.is_empty());

    let (code, out, err) = plugin(&b, &["add", "probe2", &reference, "--accept", "--json"]);
    assert_eq!(code, 0, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["granted"]["exec"], serde_json::json!(["git"]));
    let lock = lock_of(&b);
    let granted = &lock.get("probe2").unwrap().granted;
    assert_eq!(granted.exec, vec!["git".to_string()]);
    assert_eq!(granted.env, vec!["TOKEN".to_string()]);
    assert!(lock.get("probe").unwrap().granted.is_empty());

    // A plugin that declares nothing asks for nothing.
    let plain = write_component(b.path(), "plain.wasm", PROBE_010);
    let plain_ref = format!("file://{}/plain:1.0.0", store.path().display());
    push(&b, &plain, &plain_ref);
    let (code, out, err) = plugin(&b, &["add", "plain", &plain_ref, "--accept"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("asks for nothing"), "{out}");
}

/// Uploads a blob to the test registry with plain HTTP (as any client would).
fn upload_blob(registry: &Service, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let out = crate::support::curl(&[
        "-si",
        "-X",
        "POST",
        &format!("http://{}/v2/{repo}/blobs/uploads/", registry.address),
    ]);
    let head = String::from_utf8_lossy(&out);
    let location = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .expect("an upload location");
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", registry.address)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    crate::support::curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.path().display()),
        &format!("{url}{sep}digest={digest}"),
    ]);
    digest
}

/// A fresh ECDSA P-256 key pair, and its public key as cosign writes it (PEM).
fn key_pair() -> (aws_lc_rs::signature::EcdsaKeyPair, String) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    (pair, pem)
}

/// Signs `manifest_digest` as `cosign sign --key` does: a simple-signing payload under the tag
/// `sha256-<hex>.sig`, its signature in the layer's annotation.
fn cosign_sign(
    registry: &Service,
    repo: &str,
    manifest_digest: &str,
    pair: &aws_lc_rs::signature::EcdsaKeyPair,
) {
    use base64::Engine;
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": { "docker-reference": format!("{}/{repo}", registry.address) },
            "image": { "docker-manifest-digest": manifest_digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = pair.sign(&rng, &payload).unwrap();
    let layer = upload_blob(registry, repo, &payload);
    let config = b"{}";
    let config_digest = upload_blob(registry, repo, config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": layer,
            "size": payload.len(),
            "annotations": {
                "dev.cosignproject.cosign/signature":
                    base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
            },
        }],
    });
    let tag = manifest_digest.replace(':', "-") + ".sig";
    put_manifest(registry, repo, &tag, &manifest);
}

#[test]
fn a_listed_key_requires_a_cosign_signature_by_that_key() {
    let Some(registry) = Service::registry(None) else {
        return;
    };
    let (pair, pem) = key_pair();
    let (other, _) = key_pair();
    let b = Build::new().write("keys/acme.pub", &pem).write(
        "kiln.toml",
        &format!(
            "[plugin-keys]\n\"{}/acme\" = \"keys/acme.pub\"\n",
            registry.address
        ),
    );
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    let reference = format!("oci://{}/acme/probe:1.0.0", registry.address);
    let pushed = push(&b, &file, &reference);
    let digest = pushed["manifest"].as_str().unwrap();

    let (code, _, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("has no cosign signature"), "{err}");
    assert!(!b.path().join("kiln.lock").exists());

    cosign_sign(&registry, "acme/probe", digest, &other);
    let (code, _, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("no cosign signature of"), "{err}");

    cosign_sign(&registry, "acme/probe", digest, &pair);
    let (code, _, err) = plugin(&b, &["add", "probe", &reference]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lock_of(&b).get("probe").unwrap().manifest, digest);
    // Builds check it too: a signed plugin runs.
    std::fs::write(
        b.path().join("buildspec.yml"),
        crate::support::build_commands(&["probe args sig\"ned\""]),
    )
    .unwrap();
    b.run().success().log_has("args: signed");

    // kiln.lock edited to pin an unsigned artifact of the same repository (its reference
    // unchanged): the build refuses it before it runs anything, as tampering (exit 7).
    let unsigned = format!("oci://{}/acme/probe:1.0.1", registry.address);
    let bytes = std::fs::read(probe_plugin()).unwrap();
    let pushed = push(&b, Path::new(probe_plugin()), &unsigned);
    let lock_path = b.path().join("kiln.lock");
    let signed_lock = std::fs::read_to_string(&lock_path).unwrap();
    let locked = lock_of(&b).get("probe").unwrap().clone();
    let forged = signed_lock
        .replace(&locked.manifest, pushed["manifest"].as_str().unwrap())
        .replace(&locked.layer, &format!("sha256:{}", sha256_hex(&bytes)))
        .replace(&locked.blake3, blake3::hash(&bytes).to_hex().as_str())
        .replace(
            &format!("size = {}", locked.size),
            &format!("size = {}", bytes.len()),
        )
        .replace("api-version = \"0.1.0\"", "api-version = \"0.1.1\"");
    assert_ne!(forged, signed_lock);
    std::fs::write(&lock_path, &forged).unwrap();
    let run = b.run();
    run.code(7);
    assert!(
        run.stderr
            .contains("kiln.toml's [plugin-keys] asks for a signature"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("args: signed"), "{}", run.stderr);
    // Back to the signed lock: it runs, from what the first build checked.
    std::fs::write(&lock_path, &signed_lock).unwrap();
    b.run().success().log_has("args: signed");

    // A repository outside the listed namespace needs no signature.
    let free = format!("oci://{}/other/probe:1.0.0", registry.address);
    push(&b, &file, &free);
    let (code, _, err) = plugin(&b, &["add", "free", &free]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_s3_image_layout_carries_the_same_artifact() {
    let Some(s3) = Service::s3("AKIAKILNTEST", "kiln-test-secret-key", &["plugins"]) else {
        return;
    };
    let envs = [
        ("AWS_ENDPOINT_URL", s3.address.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIAKILNTEST"),
        ("AWS_SECRET_ACCESS_KEY", "kiln-test-secret-key"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let b = Build::new();
    let file = write_component(b.path(), "probe.wasm", PROBE_010);
    let reference = "s3://plugins/acme/probe:1.0.0";
    let s3_plugin = |args: &[&str]| {
        let mut cmd = b.kiln();
        cmd.arg("plugin")
            .args(args)
            .current_dir(b.path())
            .envs(envs);
        run(cmd)
    };
    let (code, out, err) = s3_plugin(&["push", file.to_str().unwrap(), reference, "--json"]);
    assert_eq!(code, 0, "{err}");
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (code, _, err) = s3_plugin(&["add", "probe", reference]);
    assert_eq!(code, 0, "{err}");
    let lock = lock_of(&b);
    let locked = lock.get("probe").unwrap();
    assert_eq!(locked.manifest, pushed["manifest"].as_str().unwrap());
    assert_eq!(locked.layer, format!("sha256:{}", sha256_hex(PROBE_010)));
    let (code, _, err) = s3_plugin(&["pull", "s3://plugins/acme/probe:latest"]);
    assert_eq!(code, 2, "{err}");
}
