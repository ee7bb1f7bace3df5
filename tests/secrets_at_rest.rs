//! Secrets never leave a build in clear: not in the log, `--json`, the build record, the action-cache
//! entry, a package's manifest or an artifact's name; multi-line secrets are masked line by line; what
//! kiln keeps of a build is readable by kiln's user alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Build, walkdir};

const KEY_LINE: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";

/// Every file under `root` whose bytes contain `needle`.
fn files_holding(root: &Path, needle: &str) -> Vec<String> {
    walkdir(root)
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn exported_and_multi_line_secrets_are_masked_in_everything_kiln_writes() {
    let b = Build::new()
        .write(
            "secrets.env",
            &format!(
                "unused/ref=never-referenced-42\nprod/api:token=\"tok-3f9a1c77e2\"\nprod/tls:key=\"-----BEGIN PRIVATE KEY-----\\n{KEY_LINE}\\n-----END PRIVATE KEY-----\"\n"
            ),
        )
        .write(
            "appspec.yml",
            "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv/app\n",
        )
        .buildspec(
            "version: 0.2\nenv:\n  secrets-manager:\n    TOKEN: prod/api:token\n    TLS_KEY: prod/tls:key\n  exported-variables:\n    - TOKEN\n    - TLS_KEY\nphases:\n  build:\n    commands:\n      - printf '%s\\n' \"$TLS_KEY\"\n      - echo \"token is $TOKEN\"\n      - echo never-referenced-42\n      - echo built > app.txt\nartifacts:\n  files:\n    - app.txt\n    - appspec.yml\n",
        );
    let secrets = b.path().join("secrets.env");
    let run = b.run_with(&["--secrets", secrets.to_str().unwrap(), "--package"]);
    run.success().log_has("token is ***").log_has("***");
    assert_eq!(run.json["exported_variables"]["TOKEN"], "***");
    for secret in ["tok-3f9a1c77e2", KEY_LINE, "never-referenced-42"] {
        assert!(!run.stdout.contains(secret), "--json shows {secret}");
        assert!(!run.stderr.contains(secret), "the console shows {secret}");
        for root in [b.state_dir(), b.cache_dir(), &b.path().join("out")] {
            let found = files_holding(root, secret);
            assert!(found.is_empty(), "{secret} in clear in {found:?}");
        }
    }
    // The package's manifest went through the masked result too.
    let out = walkdir(&b.path().join("out"));
    assert!(
        out.iter()
            .any(|p| p.extension().is_some_and(|e| e == "zip")),
        "no package in {out:?}"
    );
    // A cached rebuild restores the masked result, never the values.
    let again = b.run_with(&["--secrets", secrets.to_str().unwrap()]);
    again.success();
    assert_eq!(again.json["cache"]["hit"], true, "{}", again.stdout);
    assert_eq!(again.json["exported_variables"]["TOKEN"], "***");
}

#[test]
fn an_artifact_named_after_a_secret_is_refused() {
    let b = Build::new()
        .write("secrets.env", "prod/api:token=tok-91be03aa\n")
        .buildspec(
            "version: 0.2\nenv:\n  secrets-manager:\n    TOKEN: prod/api:token\nphases:\n  build:\n    commands:\n      - echo x > f.txt\nartifacts:\n  name: build-$TOKEN\n  files:\n    - f.txt\n",
        );
    let secrets = b.path().join("secrets.env");
    let run = b.run_with(&["--secrets", secrets.to_str().unwrap()]);
    run.failure()
        .phase("UPLOAD_ARTIFACTS", "FAILED")
        .log_has("would contain a secret's value");
    let out = walkdir(&b.path().join("out"));
    assert!(
        out.iter()
            .all(|p| !p.to_string_lossy().contains("tok-91be03aa")),
        "{out:?}"
    );
    assert!(files_holding(b.state_dir(), "tok-91be03aa").is_empty());
}

#[test]
fn records_and_logs_are_private_to_kiln_user() {
    let b =
        Build::new().buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n");
    let run = b.run();
    run.success();
    let log = Path::new(run.json["log_file"].as_str().expect("a log file"));
    let records = log.parent().expect("the records folder");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(records), 0o700, "{}", records.display());
    for entry in std::fs::read_dir(records).expect("records") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn a_killed_build_leaves_folders_that_the_next_build_sweeps() {
    let tmp = crate::support::host_visible_dir("kiln-sweep-");
    let b = Build::new()
        .env("TMPDIR", tmp.path().to_str().expect("utf-8"))
        .buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 30\n");
    let mut child = b
        .command(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln starts");
    let pid = child.id();
    let session = |pid: u32| {
        std::fs::read_dir("/dev/shm")
            .expect("/dev/shm")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("kiln-session-{pid}-")))
            })
            .collect::<Vec<_>>()
    };
    let scratch = |pid: u32| {
        std::fs::read_dir(tmp.path())
            .expect("the temp dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("kiln-build-{pid}-")))
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while session(pid).is_empty() || scratch(pid).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the build did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The session folder is kiln's user's alone.
    let mode = std::fs::metadata(&session(pid)[0])
        .expect("session")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "session folder mode {mode:o}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(session(pid).len(), 1, "SIGKILL leaves the session folder");
    assert_eq!(scratch(pid).len(), 1, "SIGKILL leaves the scratch folder");
    Build::new()
        .env("TMPDIR", tmp.path().to_str().expect("utf-8"))
        .buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - echo next\n")
        .run()
        .success();
    assert!(session(pid).is_empty(), "the next build sweeps the session");
    assert!(scratch(pid).is_empty(), "the next build sweeps the scratch");
}
