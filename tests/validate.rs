//! `kiln validate` and bad input: errors name the file, line and column, show the line with a caret and
//! say what was expected and, for a misspelt name, the name meant; warnings do not fail.

use crate::support::{Build, kiln};

fn validate(text: &str) -> (Option<i32>, String, String) {
    let b = Build::new().buildspec(text);
    let out = kiln()
        .arg("validate")
        .arg(b.path().join("buildspec.yml"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_type_error_points_at_line_and_column_with_a_caret() {
    let (code, _, stderr) =
        validate("version: 0.2\nphases:\n  build:\n    commands:\n      - make: all\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("buildspec.yml:5:9"), "{stderr}");
    assert!(stderr.contains("- make: all"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
    assert!(stderr.contains("expected a string"), "{stderr}");
    assert!(stderr.contains("quote"), "{stderr}");
}

#[test]
fn a_yaml_syntax_error_has_a_place() {
    let (code, _, stderr) = validate("version: 0.2\nphases:\n  build:\n    commands: [echo a\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    // The document ends cut short: the place is its last character, shown with its line, once.
    assert!(stderr.contains("buildspec.yml:4:21\n"), "{stderr}");
    assert!(stderr.contains("    commands: [echo a"), "{stderr}");
}

#[test]
fn a_place_is_written_once() {
    let (code, _, stderr) =
        validate("version: 0.2\nphases:\n  biuld:\n    commands:\n      - echo hi\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("buildspec.yml:3:3\n"), "{stderr}");
}

#[test]
fn every_error_is_reported_at_once() {
    let (code, _, stderr) = validate(
        "version: 0.2\nenv:\n  shell: fish\nphases:\n  build:\n    on-failure: SOMETIMES\n    commands: make\n",
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("buildspec.yml:3:10"), "{stderr}");
    assert!(stderr.contains("buildspec.yml:6:17"), "{stderr}");
    assert!(stderr.contains("buildspec.yml:7:15"), "{stderr}");
    assert!(stderr.contains("3 errors"), "{stderr}");
}

#[test]
fn a_misspelt_phase_is_an_error_naming_the_phase_it_misses() {
    let (code, stdout, stderr) =
        validate("version: 0.2\nphases:\n  biuld:\n    commands:\n      - make\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("error: unknown phase `biuld`"), "{stderr}");
    assert!(stderr.contains("buildspec.yml:3:3"), "{stderr}");
    assert!(stderr.contains("  biuld:"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
    assert!(stderr.contains("did you mean `build`?"), "{stderr}");
    assert!(!stdout.contains("valid buildspec"), "{stdout}");
}

#[test]
fn a_misspelt_key_in_a_phase_is_an_error_naming_the_key_it_misses() {
    let (code, _, stderr) =
        validate("version: 0.2\nphases:\n  build:\n    comands:\n      - make\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: unknown key `comands` in phases.build"),
        "{stderr}"
    );
    assert!(stderr.contains("buildspec.yml:4:5"), "{stderr}");
    assert!(stderr.contains("did you mean `commands`?"), "{stderr}");
}

#[test]
fn misspelt_keys_in_env_artifacts_and_cache_are_errors() {
    let (code, _, stderr) = validate(
        "version: 0.2\nenv:\n  variabels:\n    A: 1\nphases:\n  build:\n    commands: [make]\n\
         artifacts:\n  files: [a]\n  base-dir: out\n  secondary-artifacts:\n    docs:\n      file: [b]\n\
         cache:\n  path: [c]\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    for (place, near) in [
        ("buildspec.yml:3:3", "`variables`"),
        ("buildspec.yml:10:3", "`base-directory`"),
        ("buildspec.yml:13:7", "`files`"),
        ("buildspec.yml:15:3", "`paths`"),
    ] {
        assert!(stderr.contains(place), "{place} in {stderr}");
        assert!(
            stderr.contains(&format!("did you mean {near}?")),
            "{near} in {stderr}"
        );
    }
    // The secondary artifact's own missing `files` is reported too.
    assert!(stderr.contains("5 errors"), "{stderr}");
}

#[test]
fn an_unknown_top_level_key_only_warns() {
    let (code, stdout, stderr) =
        validate("version: 0.2\nx-defaults: &d [make]\nphases:\n  build:\n    commands: *d\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: unknown key `x-defaults`"),
        "{stderr}"
    );
    assert!(stderr.contains("buildspec.yml:2:1"), "{stderr}");
    assert!(stdout.contains("valid buildspec"), "{stdout}");
}

#[test]
fn an_artifact_type_only_warns_as_codebuild_ignores_it() {
    // aws-samples/aws-cicd-bluegreen: `artifacts: {type: zip, files: [...]}` builds on CodeBuild.
    let (code, stdout, stderr) = validate(
        "version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n  type: zip\n  files: [a]\n  secondary-artifacts:\n    more:\n      type: zip\n      files: [b]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning: artifacts.type is"), "{stderr}");
    assert!(stderr.contains("buildspec.yml:6:3"), "{stderr}");
    assert!(
        stderr.contains("warning: secondary-artifacts.more.type is"),
        "{stderr}"
    );
    assert!(stdout.contains("valid buildspec"), "{stdout}");
}

#[test]
fn an_unsupported_version_is_an_error() {
    let (code, _, stderr) = validate("version: 1.0\nphases: {}\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("buildspec.yml:1:10"), "{stderr}");
    assert!(stderr.contains("version"), "{stderr}");
}

#[test]
fn validate_json_lists_findings() {
    let b = Build::new().buildspec("version: 0.2\nphases:\n  bild:\n    commands: [x]\n");
    let out = kiln()
        .args(["validate", "--json"])
        .arg(b.path().join("buildspec.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["diagnostics"][0]["severity"], "error");
    assert_eq!(json["diagnostics"][0]["line"], 3);
    assert_eq!(json["diagnostics"][0]["column"], 3);
    let help = json["diagnostics"][0]["help"].as_str().unwrap_or_default();
    assert!(help.contains("did you mean `build`?"), "{help}");
}

#[test]
fn every_buildspec_key_is_understood() {
    let (code, stdout, stderr) = validate(
        r#"version: 0.2
run-as: root
env:
  shell: bash
  variables:
    A: "1"
  parameter-store:
    P: /p
  secrets-manager:
    S: s:k:AWSCURRENT
  exported-variables:
    - A
  git-credential-helper: yes
proxy:
  upload-artifacts: yes
  logs: yes
batch:
  fast-fail: false
  build-list: []
phases:
  install:
    run-as: root
    on-failure: ABORT
    runtime-versions:
      nodejs: 18
    commands:
      - echo install
    finally:
      - echo done
  pre_build:
    on-failure: RETRY-2-flaky
    commands: [echo pre]
  build:
    commands: [echo build]
  post_build:
    commands: [echo post]
reports:
  junit:
    files: ['**/*.xml']
    base-directory: reports
    discard-paths: no
    file-format: JUNITXML
artifacts:
  files:
    - '**/*'
  name: app
  discard-paths: no
  base-directory: out
  exclude-paths: ['**/*.tmp']
  enable-symlinks: no
  s3-prefix: builds
  secondary-artifacts:
    docs:
      files: [README.md]
cache:
  key: deps-1
  fallback-keys: [deps-]
  action: restore
  paths:
    - /root/.m2/**/*
"#,
    );
    assert_eq!(code, Some(0), "{stderr}");
    // The one warning: test reports are read but not made yet.
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(stderr.contains("makes no test report yet"), "{stderr}");
    assert!(
        stdout.contains("valid buildspec 0.2 (4 phases, 5 commands, 1 warnings)"),
        "{stdout}"
    );
}

#[test]
fn a_build_with_an_invalid_buildspec_runs_nothing_and_exits_2() {
    let b = Build::new()
        .buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran > ran.txt\n    on-failure: NEVER\n")
        .args(["--in-place"]);
    let run = b.run();
    run.code(2);
    assert!(run.stderr.contains("buildspec.yml:6:17"), "{}", run.stderr);
    assert!(!b.path().join("ran.txt").exists());
}

#[test]
fn a_build_with_a_misspelt_phase_runs_nothing_and_exits_2() {
    let b = Build::new()
        .buildspec("version: 0.2\nphases:\n  install:\n    commands:\n      - echo ran > ran.txt\n  biuld:\n    commands:\n      - make\n")
        .args(["--in-place"]);
    let run = b.run();
    run.code(2);
    assert!(run.stderr.contains("buildspec.yml:6:3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `build`?"),
        "{}",
        run.stderr
    );
    assert!(!b.path().join("ran.txt").exists());
}

#[test]
fn bad_flags_are_usage_errors() {
    let b = Build::new().buildspec("version: 0.2\n");
    let out = kiln()
        .args(["build", "--timeout", "soon"])
        .arg(b.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_project_name_that_is_a_path_is_refused_before_anything_is_written() {
    let b =
        Build::new().buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n");
    for name in ["../../escape", "a/b", ".hidden", ""] {
        let run = b.run_with(&["--project", name]);
        run.code(2);
        assert!(
            run.stderr.contains("is not a project name"),
            "{}",
            run.stderr
        );
    }
    // Nothing was written for them: no records at all, here or above the state folder.
    assert!(
        crate::support::walkdir(b.state_dir())
            .iter()
            .all(|p| !p.is_file())
    );
    assert!(!b.state_dir().join("../escape").exists());
    b.run_with(&["--project", "ok.name-1"]).success();
}

#[test]
fn a_reader_that_went_away_is_no_panic() {
    // `kiln doctor --json | head -c0`: stdout is a pipe whose reader is gone.
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into a live array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closes the read end this test owns.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is this test's own, handed over once.
    let write_end =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let out = kiln()
        .args(["doctor", "--json"])
        .stdout(std::process::Stdio::from(write_end))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn reports_are_warned_about_in_validate_and_at_build_time() {
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\nreports:\n  unit:\n    files:\n      - '**/*.xml'\n    file-format: JUNITXML\n";
    let (code, _, err) = validate(spec);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("makes no test report yet"), "{err}");
    assert!(err.contains(":6:1"), "{err}");
    let run = Build::new().buildspec(spec).run();
    run.success();
    assert!(
        run.stderr.contains("makes no test report yet"),
        "{}",
        run.stderr
    );
}
