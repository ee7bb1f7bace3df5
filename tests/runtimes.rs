//! `runtime-versions`: the toolchain a buildspec asks for, found in the host's version managers
//! (here fake pyenv and nvm trees in a temp `HOME` of kiln's process), first on the build's PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::Build;

/// Writes `home/rel/bin/program`, a script that prints `says`.
fn fake_program(home: &Path, rel: &str, program: &str, says: &str) {
    let bin = home.join(rel).join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let path = bin.join(program);
    std::fs::write(&path, format!("#!/bin/sh\necho '{says}'\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A HOME holding pyenv's 3.11.9, 3.12.0 and 3.12.1 and nvm's Node 20 and 22.
fn home_with_managers() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    for v in ["3.11.9", "3.12.0", "3.12.1"] {
        fake_program(
            home.path(),
            &format!(".pyenv/versions/{v}"),
            "python3",
            &format!("pyenv python {v}"),
        );
    }
    for v in ["v20.11.0", "v22.3.0"] {
        fake_program(
            home.path(),
            &format!(".nvm/versions/node/{v}"),
            "node",
            &format!("nvm node {v}"),
        );
    }
    home
}

fn build_in(home: &Path, spec: &str) -> Build {
    let mut build = Build::new()
        .buildspec(spec)
        .env("HOME", &home.to_string_lossy());
    // The managers' own variables would move their roots away from this HOME.
    for name in [
        "PYENV_ROOT",
        "NVM_DIR",
        "N_PREFIX",
        "MISE_DATA_DIR",
        "ASDF_DATA_DIR",
    ] {
        build = build.env(name, "");
    }
    build
}

#[test]
fn runtime_versions_put_the_highest_matching_version_first_on_path() {
    let home = home_with_managers();
    let run = build_in(
        home.path(),
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.12\n      nodejs: 22\n    commands:\n      - python3\n      - node\n",
    )
    .run();
    run.success().phase("INSTALL", "SUCCEEDED");
    assert_eq!(
        run.output_lines(),
        ["pyenv python 3.12.1", "nvm node v22.3.0"]
    );
    let pyenv = home.path().join(".pyenv/versions/3.12.1");
    run.log_has(&format!(
        "runtime-versions: python 3.12 \u{2192} {}",
        pyenv.display()
    ))
    .log_lacks("are not installed by kiln");
}

#[test]
fn runtime_versions_latest_and_major_x_take_the_highest() {
    let home = home_with_managers();
    let run = build_in(
        home.path(),
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.x\n      nodejs: latest\n  build:\n    commands:\n      - python3\n      - node\n",
    )
    .run();
    run.success();
    assert_eq!(
        run.output_lines(),
        ["pyenv python 3.12.1", "nvm node v22.3.0"]
    );
}

#[test]
fn runtime_version_the_host_lacks_fails_install_naming_what_it_has() {
    let home = home_with_managers();
    // What kiln's PATH has instead: a python3 of its own.
    fake_program(home.path(), "system", "python3", "Python 3.11.2");
    let path = format!(
        "{}:{}",
        home.path().join("system/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = build_in(
        home.path(),
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.99\n    commands:\n      - echo install-ran\n  build:\n    commands:\n      - echo build-ran\n",
    )
    .env("PATH", &path)
    .run();
    run.failure().phase("INSTALL", "FAILED").no_phase("BUILD");
    let message = run
        .find_phase("INSTALL")
        .map(|p| p["message"].to_string())
        .unwrap_or_default();
    for part in [
        "Unknown runtime version named '3.99' of python",
        "3.12.1 (",
        ".pyenv/versions/3.12.1",
        "on PATH: Python 3.11.2",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    run.log_has("YAML_FILE_ERROR")
        .log_lacks("install-ran")
        .log_lacks("build-ran");
}

#[test]
fn the_program_on_path_serves_when_no_manager_holds_a_match() {
    // A host with one system Node and no version manager, and `nodejs: latest` or the major that
    // Node is (aws-samples/aws-cicd-bluegreen asks for a Node by `runtime-versions`).
    let home = tempfile::tempdir().expect("temp dir");
    fake_program(home.path(), "system", "node", "v20.20.2");
    fake_program(home.path(), "system", "python3", "Python 3.11.2");
    let path = format!(
        "{}:{}",
        home.path().join("system/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = build_in(
        home.path(),
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      nodejs: latest\n      python: 3.11\n    commands:\n      - node\n      - python3\n",
    )
    .env("PATH", &path)
    .run();
    run.success().log_has("v20.20.2").log_has("Python 3.11.2");
    // A version it is not still fails, naming it.
    let run = build_in(
        home.path(),
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      nodejs: 22\n",
    )
    .env("PATH", &path)
    .run();
    run.failure().phase("INSTALL", "FAILED");
    let message = run
        .find_phase("INSTALL")
        .map(|p| p["message"].to_string())
        .unwrap_or_default();
    assert!(message.contains("on PATH: v20.20.2"), "{message}");
}
