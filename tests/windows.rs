//! Windows specs are specs: `kiln validate` accepts buildspecs for PowerShell and cmd.exe and
//! `os: windows` AppSpecs; `kiln build` runs `shell: pwsh` with the PowerShell on PATH and refuses
//! what Linux cannot run, as `kiln deploy` refuses a Windows revision, before anything runs or is
//! recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Build, host_visible_dir, kiln};

const BUILD_ECHO: &str = "phases:\n  build:\n    commands:\n      - Write-Output kiln-marker\n";

fn with_shell(shell: &str) -> String {
    format!("version: 0.2\nenv:\n  shell: {shell}\n{BUILD_ECHO}")
}

fn validate(path: &Path) -> (Option<i32>, String) {
    let out = kiln()
        .arg("validate")
        .arg(path)
        .output()
        .expect("kiln runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder holding a fake `pwsh` that prints its arguments, and a PATH with it first.
fn fake_pwsh() -> (tempfile::TempDir, String) {
    let dir = host_visible_dir("kiln-pwsh-");
    let pwsh = dir.path().join("pwsh");
    std::fs::write(&pwsh, "#!/bin/sh\nprintf 'fake-pwsh %s\\n' \"$*\"\n").expect("script");
    std::fs::set_permissions(&pwsh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

#[test]
fn validate_accepts_buildspecs_for_powershell_and_cmd() {
    for shell in ["pwsh", "powershell", "powershell.exe", "cmd.exe"] {
        let b = Build::new().buildspec(&with_shell(shell));
        let (code, stderr) = validate(&b.path().join("buildspec.yml"));
        assert_eq!(code, Some(0), "shell {shell}: {stderr}");
    }
    let b = Build::new().buildspec(&with_shell("fish"));
    let (code, stderr) = validate(&b.path().join("buildspec.yml"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unsupported shell"), "{stderr}");
}

#[test]
fn validate_accepts_a_windows_appspec_with_windows_destinations() {
    let b = Build::new().write(
        "appspec.yml",
        "version: 0.0\nos: windows\nfiles:\n  - source: site\n    destination: C:\\inetpub\\wwwroot\n  - source: conf\n    destination: 'd:/app/conf'\nhooks:\n  AfterInstall:\n    - location: scripts\\after.ps1\n",
    );
    let (code, stderr) = validate(&b.path().join("appspec.yml"));
    assert_eq!(code, Some(0), "{stderr}");
    // A Windows AppSpec's destinations are still absolute, in Windows' way.
    let b = Build::new().write(
        "appspec.yml",
        "version: 0.0\nos: windows\nfiles:\n  - source: site\n    destination: inetpub\\wwwroot\n",
    );
    let (code, stderr) = validate(&b.path().join("appspec.yml"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("appspec.yml:5:18"), "{stderr}");
    assert!(stderr.contains("not an absolute Windows path"), "{stderr}");
}

#[test]
fn shell_pwsh_runs_commands_with_the_pwsh_on_path() {
    let (_dir, path) = fake_pwsh();
    let run = Build::new()
        .buildspec(&with_shell("pwsh"))
        .env("PATH", &path)
        .run();
    run.success().phase("BUILD", "SUCCEEDED");
    let lines = run.output_lines();
    let line = lines
        .iter()
        .find(|l| l.starts_with("fake-pwsh "))
        .unwrap_or_else(|| panic!("pwsh did not run: {lines:?}"));
    assert!(
        line.starts_with("fake-pwsh -NoLogo -NoProfile -NonInteractive -Command "),
        "{line}"
    );
    run.log_has("Write-Output kiln-marker");
}

#[test]
fn shell_pwsh_without_pwsh_on_path_is_refused_before_anything_runs() {
    let b = Build::new()
        .buildspec(&with_shell("pwsh"))
        .env("PATH", "/usr/bin:/bin");
    if Path::new("/usr/bin/pwsh").exists() || Path::new("/bin/pwsh").exists() {
        eprintln!("SKIPPED: this host has a pwsh in /usr/bin");
        return;
    }
    let run = b.run();
    run.code(2);
    assert!(
        run.stderr.contains("there is no `pwsh` on PATH"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Entering phase"), "{}", run.stderr);
    assert!(
        !b.state_dir().join("builds").exists(),
        "a refused build is not recorded"
    );
}

#[test]
fn windows_only_shells_are_refused_on_linux() {
    for shell in ["cmd.exe", "powershell"] {
        let b = Build::new().buildspec(&with_shell(shell));
        let run = b.run();
        run.code(2);
        assert!(
            run.stderr.contains(&format!(
                "with `{shell}` (env.shell), which exists on Windows only"
            )),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("Entering phase"), "{}", run.stderr);
        assert!(!b.state_dir().join("builds").exists());
    }
}

#[test]
fn deploying_a_windows_revision_is_refused_and_not_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("site")).expect("dir");
    std::fs::write(src.join("site/index.html"), "hi").expect("file");
    std::fs::write(
        src.join("appspec.yml"),
        "version: 0.0\nos: windows\nfiles:\n  - source: site\n    destination: C:\\inetpub\\wwwroot\n",
    )
    .expect("appspec");
    let revision = dir.path().join("app.zip");
    let out = kiln()
        .arg("package")
        .arg(&src)
        .arg("-o")
        .arg(&revision)
        .output()
        .expect("kiln runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join("root");
    let out = kiln()
        .arg("deploy")
        .arg(&revision)
        .args(["--group", "web", "--root"])
        .arg(&root)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AppSpec is for Windows hosts"), "{stderr}");
    let out = kiln()
        .args(["deployments", "--group", "web", "--json", "--root"])
        .arg(&root)
        .output()
        .expect("kiln runs");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(list, serde_json::json!([]), "no deployment is recorded");
    let records = std::fs::read_dir(root.join("deployment-records"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|group| {
            std::fs::read_dir(group.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .count();
    assert_eq!(records, 0);
}
