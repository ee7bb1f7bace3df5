//! CodeBuild 0.2 execution semantics: phases, transitions, the shell session, the log.

use crate::support::{Build, build_commands};

#[test]
fn phases_run_in_order_and_log_like_codebuild() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  post_build:\n    commands: [echo four]\n  install:\n    commands: [echo one]\n  pre_build:\n    commands: [echo two]\n  build:\n    commands: [echo three]\n",
        )
        .run();
    run.success();
    let lines = run.output_lines();
    assert_eq!(lines, ["one", "two", "three", "four"]);
    run.log_has("Entering phase INSTALL")
        .log_has("Running command echo three")
        .log_has("Phase complete: BUILD State: SUCCEEDED")
        .log_has("Phase context status code:  Message: ");
    let names: Vec<&str> = run.json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "DOWNLOAD_SOURCE",
            "INSTALL",
            "PRE_BUILD",
            "BUILD",
            "POST_BUILD"
        ]
    );
}

#[test]
fn a_failing_command_skips_the_rest_and_finally_still_runs() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo before\n      - exit 3\n      - echo skipped\n    finally:\n      - echo cleanup\n",
        )
        .run();
    run.failure()
        .phase("BUILD", "FAILED")
        .log_has("Command did not exit successfully exit 3 exit status 3")
        .log_has("Phase complete: BUILD State: FAILED")
        .log_has(
            "Phase context status code: COMMAND_EXECUTION_ERROR Message: Error while executing command: exit 3. Reason: exit status 3",
        );
    assert_eq!(run.output_lines(), ["before", "cleanup"]);
}

#[test]
fn a_failing_finally_fails_the_phase() {
    Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands: [echo ok]\n    finally:\n      - false\n      - echo not-reached\n",
        )
        .run()
        .failure()
        .phase("BUILD", "FAILED")
        .log_lacks("\nnot-reached");
}

#[test]
fn install_failure_skips_later_phases_and_artifacts() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  install:\n    commands: [false]\n  pre_build:\n    commands: [echo pre]\n  build:\n    commands: [echo build]\n  post_build:\n    commands: [echo post]\nartifacts:\n  files: ['**/*']\n",
        )
        .run();
    run.failure()
        .phase("INSTALL", "FAILED")
        .no_phase("PRE_BUILD")
        .no_phase("BUILD")
        .no_phase("POST_BUILD")
        .no_phase("UPLOAD_ARTIFACTS");
    assert!(run.output_lines().is_empty(), "{:?}", run.output_lines());
}

#[test]
fn pre_build_failure_skips_build_and_post_build() {
    Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  pre_build:\n    commands: [false]\n  build:\n    commands: [echo build]\n  post_build:\n    commands: [echo post]\n",
        )
        .run()
        .failure()
        .phase("PRE_BUILD", "FAILED")
        .no_phase("BUILD")
        .no_phase("POST_BUILD");
}

#[test]
fn build_failure_still_runs_post_build_and_uploads_artifacts() {
    let run = Build::new()
        .write("a.txt", "a")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands: [false]\n  post_build:\n    commands:\n      - echo succeeding=$CODEBUILD_BUILD_SUCCEEDING\nartifacts:\n  files: [a.txt]\n",
        )
        .run();
    run.failure()
        .phase("BUILD", "FAILED")
        .phase("POST_BUILD", "SUCCEEDED")
        .phase("UPLOAD_ARTIFACTS", "SUCCEEDED")
        .log_has("succeeding=0");
    assert_eq!(run.artifact_files("primary"), ["a.txt"]);
}

#[test]
fn codebuild_build_succeeding_turns_to_zero_once_failing() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  install:\n    commands: [echo install=$CODEBUILD_BUILD_SUCCEEDING]\n  build:\n    commands: [false]\n  post_build:\n    commands: [echo post=$CODEBUILD_BUILD_SUCCEEDING]\n",
        )
        .run();
    run.failure();
    assert_eq!(run.output_lines(), ["install=1", "post=0"]);
}

#[test]
fn on_failure_abort_stops_the_build() {
    Build::new()
        .write("a.txt", "a")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    on-failure: ABORT\n    commands: [false]\n  post_build:\n    commands: [echo post]\nartifacts:\n  files: [a.txt]\n",
        )
        .run()
        .failure()
        .no_phase("POST_BUILD")
        .no_phase("UPLOAD_ARTIFACTS");
}

#[test]
fn on_failure_continue_goes_on_after_install() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  install:\n    on-failure: CONTINUE\n    commands: [false]\n  build:\n    commands: [echo built]\n",
        )
        .run();
    run.failure()
        .phase("INSTALL", "FAILED")
        .phase("BUILD", "SUCCEEDED");
    assert_eq!(run.output_lines(), ["built"]);
}

#[test]
fn on_failure_retry_runs_the_phase_again() {
    // Fails on the first attempt, succeeds on the second: the counter lives outside the session.
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2\n    commands:\n      - echo x >> $CODEBUILD_SRC_DIR/attempts\n      - test $(wc -l < $CODEBUILD_SRC_DIR/attempts) -ge 2\n",
        )
        .run();
    run.success().phase("BUILD", "SUCCEEDED");
    assert_eq!(run.find_phase("BUILD").unwrap()["attempts"], 2);
}

#[test]
fn on_failure_retry_with_a_pattern_that_does_not_match_does_not_retry() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-3-network unreachable\n    commands:\n      - exit 7\n",
        )
        .run();
    run.failure();
    assert_eq!(run.find_phase("BUILD").unwrap()["attempts"], 1);
}

#[test]
fn the_shell_session_carries_cwd_and_variables_across_commands_and_phases() {
    let run = Build::new()
        .write("sub/dir/keep.txt", "")
        .buildspec(
            "version: 0.2\nphases:\n  install:\n    commands:\n      - cd sub\n      - PLAIN=plain; export EXPORTED=exported\n  build:\n    commands:\n      - cd dir\n      - echo \"$(basename $PWD) $PLAIN $EXPORTED\"\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["dir plain exported"]);
}

#[test]
fn values_with_quotes_and_newlines_survive_the_session() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "export TRICKY=\"it's \\\"q\\\" \\$x \\\\ back\nline2\"",
            "printf '%s|' \"$TRICKY\"",
        ]))
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["it's \"q\" $x \\ back", "line2|"]);
}

#[test]
fn bash_sessions_carry_variables_but_not_arrays() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  shell: bash\nphases:\n  build:\n    commands:\n      - ARR=(a b c); V=$'tab\\there'\n      - echo \"len=${#ARR[@]} shell=${BASH_VERSION:+bash} v=$V\"\n",
        )
        .run();
    run.success();
    // Like CodeBuild: the array does not survive the command, plain variables do.
    assert_eq!(run.output_lines(), ["len=0 shell=bash v=tab\there"]);
}

#[test]
fn sh_is_the_default_shell() {
    let run = Build::new()
        .buildspec(&build_commands(&["echo \"bash=${BASH_VERSION:-none}\""]))
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["bash=none"]);
}

#[test]
fn version_0_1_runs_each_command_in_its_own_shell() {
    let run = Build::new()
        .write("sub/x", "")
        .buildspec(
            "version: 0.1\nphases:\n  build:\n    commands:\n      - cd sub; export A=1\n      - echo \"$(basename $PWD) a=$A\"\n",
        )
        .run();
    run.success();
    let name = run.json["project"].as_str().unwrap().to_string();
    let _ = name;
    let line = run.output_lines()[0].to_string();
    assert!(line.ends_with(" a="), "{line}");
    assert!(!line.starts_with("sub "), "{line}");
}

#[test]
fn multi_line_commands_run_as_one_script() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - |\n        for i in 1 2 3; do\n          echo line $i\n        done\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["line 1", "line 2", "line 3"]);
}

#[test]
fn exported_variables_are_reported() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  exported-variables: [VERSION, UNSET]\nphases:\n  build:\n    commands:\n      - export VERSION=1.2.$CODEBUILD_BUILD_NUMBER\n",
        )
        .run();
    run.success().log_has("Exported variable VERSION=1.2.1");
    assert_eq!(run.json["exported_variables"]["VERSION"], "1.2.1");
    assert_eq!(run.json["exported_variables"]["UNSET"], "");
}

#[test]
fn the_log_file_holds_the_same_log() {
    let run = Build::new()
        .buildspec(&build_commands(&["echo logged-line"]))
        .run();
    run.success();
    let file = run.json["log_file"].as_str().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("logged-line"), "{text}");
    assert!(text.contains("Entering phase BUILD"), "{text}");
}

#[test]
fn a_human_run_prints_the_log_on_stdout_and_exits_1_on_failure() {
    let b = Build::new().buildspec(&build_commands(&["echo hello-human", "false"]));
    let out = crate::support::kiln()
        .arg("--state-dir")
        .arg(b.state_dir())
        .arg("build")
        .arg(b.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("hello-human"), "{stdout}");
    assert!(stdout.contains("[Container] "), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn a_long_step_is_stopped_at_the_step_timeout() {
    let started = std::time::Instant::now();
    let run = Build::new()
        .buildspec(&build_commands(&["sleep 30", "echo unreachable"]))
        .args(["--step-timeout", "1s"])
        .run();
    run.failure()
        .phase("BUILD", "TIMED_OUT")
        .log_lacks("\nunreachable");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

/// Four phases, each with a `finally`, and an artifact, for running part of a buildspec.
const FOUR_PHASES: &str = "version: 0.2\nphases:\n  install:\n    commands: [echo one]\n    finally: [echo one-finally]\n  pre_build:\n    commands: [echo two]\n    finally: [echo two-finally]\n  build:\n    commands: [echo three > three.txt, cat three.txt]\n    finally: [echo three-finally]\n  post_build:\n    commands: [echo four]\n    finally: [echo four-finally]\nartifacts:\n  files: [three.txt]\n";

#[test]
fn phases_runs_only_the_phases_named_with_their_finally_blocks() {
    let b = Build::new().buildspec(FOUR_PHASES);
    let run = b.run_with(&["--phases", "install,build"]);
    run.success()
        .phase("INSTALL", "SUCCEEDED")
        .phase("PRE_BUILD", "SKIPPED")
        .phase("BUILD", "SUCCEEDED")
        .phase("POST_BUILD", "SKIPPED")
        .phase("UPLOAD_ARTIFACTS", "SKIPPED")
        .log_has("Skipping phase PRE_BUILD: not selected")
        .log_has("Not cached: a partial build");
    assert_eq!(
        run.output_lines(),
        ["one", "one-finally", "three", "three-finally"]
    );
    // A partial build publishes nothing, and is neither saved to the cache nor found in it.
    assert!(run.artifact_files("primary").is_empty());
    assert_eq!(run.json["cache"]["hit"], false);
    assert_eq!(run.json["cache"]["saved"], false);
    let again = b.run_with(&["--phases", "install,build"]);
    again.success().log_has("Not cached: a partial build");
    assert_eq!(again.json["cache"]["hit"], false);
    // Nor did it leave a cache entry a whole build would take.
    let whole = b.run();
    whole.success().phase("POST_BUILD", "SUCCEEDED");
    assert_eq!(whole.json["cache"]["hit"], false);
    assert_eq!(whole.artifact_files("primary"), ["three.txt"]);
}

#[test]
fn until_runs_the_phases_up_to_the_one_named() {
    let run = Build::new()
        .buildspec(FOUR_PHASES)
        .run_with(&["--until", "pre_build"]);
    run.success()
        .phase("INSTALL", "SUCCEEDED")
        .phase("PRE_BUILD", "SUCCEEDED")
        .phase("BUILD", "SKIPPED")
        .phase("POST_BUILD", "SKIPPED");
    assert_eq!(
        run.output_lines(),
        ["one", "one-finally", "two", "two-finally"]
    );
}

#[test]
fn a_misspelt_phase_is_a_usage_error_naming_the_phase_meant() {
    let b = Build::new().buildspec(FOUR_PHASES);
    for args in [
        &["--phases", "install,biuld"][..],
        &["--until", "post-build"],
    ] {
        let run = b.run_with(args);
        run.code(2);
        assert!(run.stderr.contains("did you mean `"), "{}", run.stderr);
        assert!(!run.stderr.contains("Entering phase"), "{}", run.stderr);
    }
    let run = b.run_with(&["--phases", "install,biuld"]);
    assert!(
        run.stderr.contains("did you mean `build`?"),
        "{}",
        run.stderr
    );
    // Nothing ran, so nothing was recorded.
    assert!(!b.state_dir().join("builds").exists());
}
