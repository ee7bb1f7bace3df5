//! The environment a build sees: buildspec variables, --env, built-ins, secrets and masking.

use crate::support::{Build, build_commands};

#[test]
fn variables_keep_the_spelling_yaml_would_change() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    RELEASE: 1.10\n    FLAG: yes\n    OCTAL: 010\n    EMPTY:\nphases:\n  build:\n    commands:\n      - echo \"$RELEASE $FLAG $OCTAL [$EMPTY]\"\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["1.10 yes 010 []"]);
}

#[test]
fn env_flag_overrides_the_buildspec() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    STAGE: dev\n    KEEP: kept\nphases:\n  build:\n    commands:\n      - echo $STAGE $KEEP $EXTRA\n",
        )
        .args(["--env", "STAGE=prod", "-e", "EXTRA=x=y"])
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["prod kept x=y"]);
}

#[test]
fn builtin_variables_are_set() {
    let b = Build::new().buildspec(&build_commands(&[
        "test \"$CODEBUILD_SRC_DIR\" = \"$PWD\" && echo src-is-cwd",
        "echo id=$CODEBUILD_BUILD_ID",
        "echo number=$CODEBUILD_BUILD_NUMBER",
        "case $CODEBUILD_START_TIME in *[!0-9]*|'') echo bad-time;; *) echo time-ok;; esac",
        "echo initiator=$CODEBUILD_INITIATOR",
        "test -n \"$HOME\" && echo home-set",
    ]));
    let first = b.run();
    first.success();
    let lines = first.output_lines();
    assert_eq!(lines[0], "src-is-cwd");
    let project = first.json["project"].as_str().unwrap();
    assert!(
        lines[1].starts_with(&format!("id={project}:")),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[1],
        format!("id={}", first.json["build_id"].as_str().unwrap())
    );
    assert_eq!(lines[2], "number=1");
    assert_eq!(lines[3], "time-ok");
    assert!(lines[4].starts_with("initiator=kiln/"), "{}", lines[4]);
    assert_eq!(lines[5], "home-set");
    // The build number counts this project's builds on this machine.
    let second = b.run_with(&["--no-cache"]);
    assert_eq!(second.output_lines()[2], "number=2");
    assert_eq!(second.json["build_number"], 2);
}

#[test]
fn builtins_cannot_be_overridden() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    CODEBUILD_BUILD_NUMBER: 999\nphases:\n  build:\n    commands:\n      - echo $CODEBUILD_BUILD_NUMBER\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["1"]);
}

#[test]
fn secrets_resolve_from_the_secrets_file_and_are_masked() {
    let b = Build::new()
        .write(
            "secrets.env",
            "/app/db/host=db.internal.example\nprod/db:password=\"p4ss w0rd!\"\n",
        )
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    DB_HOST: /app/db/host\n  secrets-manager:\n    DB_PASSWORD: prod/db:password\nphases:\n  build:\n    commands:\n      - test \"$DB_PASSWORD\" = 'p4ss w0rd!' && echo password-matches\n      - echo \"host=$DB_HOST pw=$DB_PASSWORD\"\n",
        );
    let secrets = b.path().join("secrets.env");
    let run = b.args(["--secrets", secrets.to_str().unwrap()]).run();
    run.success()
        .log_has("password-matches")
        .log_has("host=*** pw=***")
        .log_lacks("p4ss w0rd!")
        .log_lacks("db.internal.example");
    let log = std::fs::read_to_string(run.json["log_file"].as_str().unwrap()).unwrap();
    assert!(!log.contains("p4ss w0rd!"), "{log}");
}

#[test]
fn secrets_resolve_from_kiln_environment_too() {
    Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /ci/token\nphases:\n  build:\n    commands:\n      - echo token=$TOKEN\n",
        )
        .env("/ci/token", "from-the-environment")
        .run()
        .success()
        .log_has("token=***")
        .log_lacks("from-the-environment");
}

#[test]
fn a_missing_secret_is_an_error_naming_variable_and_reference() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  secrets-manager:\n    API_KEY: prod/api:key\nphases:\n  build:\n    commands:\n      - echo never\n",
        )
        .run();
    run.code(2);
    assert!(run.stderr.contains("API_KEY"), "{}", run.stderr);
    assert!(run.stderr.contains("prod/api:key"), "{}", run.stderr);
    assert!(!run.stderr.contains("never"));
}

#[test]
fn aws_secret_keys_are_masked() {
    Build::new()
        .buildspec(&build_commands(&["echo key=$AWS_SECRET_ACCESS_KEY"]))
        .args([
            "--env",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY",
        ])
        .run()
        .success()
        .log_has("key=***")
        .log_lacks("wJalrXUtnFEMIK7MDENG");
}

#[test]
fn the_host_environment_does_not_leak_in_unless_passed() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "echo \"[$KILN_TEST_SECRETISH] [$KILN_TEST_PASSED]\"",
        ]))
        .env("KILN_TEST_SECRETISH", "leaked")
        .env("KILN_TEST_PASSED", "passed")
        .args(["--pass-env", "KILN_TEST_PASSED"])
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["[] [passed]"]);
}
