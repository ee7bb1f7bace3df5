//! The session shell: in the namespace sandbox, each `sh` command line runs in a subshell forked from
//! one shell started per build, instead of a `sh` started per command. A build must not be able to
//! tell, but for `$$` and the wording of a syntax error: each test runs the same buildspec with the
//! session shell and with `KILN_SESSION_SHELL=0` (a `sh` per command) and compares what the build saw.

use crate::support::isolation::require_namespaces;
use crate::support::{Build, Run, build_commands};

/// The build's output lines, with what differs from one build to the next (its id, number, start
/// time, folders) and between the two ways (`PPID`, the wording of a syntax error) taken out.
fn seen(run: &Run) -> Vec<String> {
    let folders =
        regex::Regex::new(r"kiln-(build|session)-[0-9]+-[A-Za-z0-9]+|state-[0-9a-f]{16}").unwrap();
    let per_build = regex::Regex::new(
        r"CODEBUILD_(BUILD_ID|BUILD_ARN|BUILD_NUMBER|START_TIME|LOG_PATH|BUILD_URL|PUBLIC_BUILD_URL)",
    )
    .unwrap();
    run.output_lines()
        .iter()
        .filter(|l| !l.starts_with("PPID=") && !l.starts_with("pid=") && !per_build.is_match(l))
        .map(|l| folders.replace_all(l, "X").replace(": eval: ", ": "))
        .collect()
}

/// Runs `b` with the session shell and with a `sh` per command: both runs.
fn both(b: &Build) -> (Run, Run) {
    let session = b.run_with(&["--no-cache"]);
    let fresh = {
        let mut cmd = b.command(&["--no-cache"]);
        cmd.env("KILN_SESSION_SHELL", "0");
        b.finish(cmd.output().expect("kiln runs"))
    };
    (session, fresh)
}

#[test]
fn each_command_starts_as_a_fresh_sh_would() {
    if !require_namespaces() {
        return;
    }
    let b = Build::new()
        .buildspec(&build_commands(&[
            // What a command leaves for the next: exported and plain variables, the directory.
            "export A='x y'; B=2; mkdir -p sub/deeper; cd sub",
            "echo \"A=$A B=$B pwd=$(pwd) PWD=$PWD OLDPWD=${OLDPWD-unset}\"",
            // What a command must not leave: options, traps, functions, unexported shell state.
            "set -e -u; trap 'echo trapped' INT; f() { echo f; }; alias ll=ls 2>/dev/null || true; umask 077",
            "echo \"opts=$- zero=$0 args=$#\"; trap; type f 2>&1 | head -n 1; umask",
            // Everything the shell holds, exported or not (PPID excepted: the parent differs).
            "set | grep -v -e '^_=' -e '^__kiln_status='",
            "export -p",
            // The descriptors a program gets: 0, 1, 2 and its own.
            "ls /proc/self/fd | tr '\\n' ' '; echo",
            "printf 'no newline at the end'",
            "echo after",
            "cd deeper && cd .. && pwd",
            // `$$` names the session shell: the same in each command (not so with a sh each).
            "echo \"pid=$$\"",
            "echo \"pid=$$\"",
        ]))
        .write("sub/.keep", "");
    let (session, fresh) = both(&b);
    session.success().phase("BUILD", "SUCCEEDED");
    fresh.success();
    session.said("A=x y B=2");
    let pids = |run: &Run| run.values("pid=");
    assert!(
        matches!(pids(&session).as_slice(), [a, b] if a == b),
        "the commands should have run in one session shell: {:?}",
        pids(&session)
    );
    assert!(
        matches!(pids(&fresh).as_slice(), [a, b] if a != b),
        "KILN_SESSION_SHELL=0 should start a sh per command: {:?}",
        pids(&fresh)
    );
    let (a, b) = (seen(&session), seen(&fresh));
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|l| !y.contains(l)).cloned().collect()
    };
    assert_eq!(
        a,
        b,
        "what the commands saw differs: only with the session shell {:?}, only with sh per command {:?}",
        only(&a, &b),
        only(&b, &a)
    );
}

#[test]
fn failures_end_the_same_way() {
    if !require_namespaces() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo before\n      - sh -c 'exit 7'; exit $?\n      - echo never\n  post_build:\n    commands:\n      - echo post\n      - if\n      - echo still\n";
    let b = Build::new().buildspec(spec);
    let (session, fresh) = both(&b);
    for run in [&session, &fresh] {
        run.failure()
            .phase("BUILD", "FAILED")
            .log_has("exit status 7")
            .log_lacks("never");
    }
    assert_eq!(seen(&session), seen(&fresh));
    // The syntax error fails its phase with sh's status 2 either way.
    for run in [&session, &fresh] {
        run.phase("POST_BUILD", "FAILED").log_has("exit status 2");
    }
}

#[test]
fn a_command_that_kills_its_shell_fails_and_the_next_one_runs() {
    if !require_namespaces() {
        return;
    }
    // `kill -9 $$` ends the session shell itself (its process group too with `kill 0`); the command
    // fails as a killed sh would, and the next command gets a new session shell with the session
    // as it was.
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - export KEPT=yes\n      - kill -9 $$\n  post_build:\n    commands:\n      - echo \"kept=$KEPT\"\n      - kill 0\n    finally:\n      - echo next-ran\n";
    let b = Build::new().buildspec(spec);
    let (session, fresh) = both(&b);
    for run in [&session, &fresh] {
        run.failure().phase("BUILD", "FAILED");
        run.said("kept=yes").said("next-ran");
    }
}

#[test]
fn a_background_processs_late_output_reaches_the_log() {
    if !require_namespaces() {
        return;
    }
    // A background process keeps the command's output open: the command still ends at once, and
    // what the process writes later is in the log (in a later command's part).
    // However slowly the next command starts, the late line lands between `started` and `done`.
    let b = Build::new().buildspec(&build_commands(&[
        "(sleep 1; echo LATE-LINE) & echo started",
        "sleep 3",
        "echo done",
    ]));
    let run = b.run_with(&["--no-cache"]);
    run.success();
    let lines = run.output_lines();
    let at = |text: &str| lines.iter().position(|l| *l == text);
    let (started, late, done) = (at("started"), at("LATE-LINE"), at("done"));
    assert!(
        started.is_some() && late.is_some() && started < late && late < done,
        "order of started, LATE-LINE, done: {started:?} {late:?} {done:?}\n{}",
        run.stderr
    );
}

#[test]
fn a_commands_stdout_and_stderr_keep_their_order() {
    if !require_namespaces() {
        return;
    }
    // The session shell's two streams are one pipe: lines come in the order they were written,
    // however fast they alternate and however late the launcher wakes.
    let b = Build::new().buildspec(&build_commands(&[
        "i=0; while [ $i -lt 200 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done",
    ]));
    let run = b.run_with(&["--no-cache"]);
    run.success();
    let want: Vec<String> = (0..200)
        .flat_map(|i| [format!("out-{i}"), format!("err-{i}")])
        .collect();
    assert_eq!(run.output_lines(), want);
}
