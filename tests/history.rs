//! The build history: `kiln builds` lists a project's builds, newest first, and `kiln logs` prints
//! one's log (masked as it was written), or follows a running build's log until the build ends.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Build, Run, build_commands, kiln};

/// `kiln ARGS` in the project's folder, with its state and cache folders.
fn kiln_in(b: &Build, args: &[&str]) -> Run {
    let output = b
        .kiln()
        .args(args)
        .current_dir(b.path())
        .output()
        .expect("kiln runs");
    Run::new(output, b.path().join("out"))
}

#[test]
fn builds_lists_a_projects_builds_newest_first_under_a_header() {
    let b = Build::new().buildspec(&build_commands(&["test -z \"$FAIL\""]));
    b.run().success();
    b.run().success();
    b.run_with(&["-e", "FAIL=1"]).failure();
    let run = kiln_in(&b, &["builds"]);
    run.code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for column in [
        "BUILD",
        "STATUS",
        "STARTED",
        "DURATION",
        "CACHE",
        "SOURCE VERSION",
    ] {
        assert!(lines[0].contains(column), "{}", run.stdout);
    }
    let words = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(words(1)[..2], ["3", "FAILED"], "{}", run.stdout);
    assert_eq!(words(2)[..2], ["2", "SUCCEEDED"], "{}", run.stdout);
    assert_eq!(words(3)[..2], ["1", "SUCCEEDED"], "{}", run.stdout);
    // The second build was the first one's, restored from the cache.
    assert!(words(2).contains(&"hit"), "{}", run.stdout);
    assert!(words(3).contains(&"miss"), "{}", run.stdout);

    let limited = kiln_in(&b, &["builds", "-n", "1"]);
    assert_eq!(limited.stdout.lines().count(), 2, "{}", limited.stdout);
}

#[test]
fn builds_json_is_an_array_of_records() {
    let b = Build::new().buildspec(&build_commands(&["echo hi"]));
    let first = b.run();
    first.success();
    b.run_with(&["--no-cache"]).success();
    let run = kiln_in(&b, &["builds", "--json"]);
    run.code(0);
    let list = run.json.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{}", run.stdout);
    assert_eq!(list[0]["build_number"], 2);
    assert_eq!(list[1]["build_number"], 1);
    assert_eq!(list[1]["status"], "SUCCEEDED");
    assert_eq!(list[1]["build_id"], first.json["build_id"]);
    assert_eq!(list[1]["project"], first.json["project"]);
    assert!(list[1]["start_time"].as_u64().is_some_and(|t| t > 0));
    assert!(list[1]["duration_ms"].is_u64());

    // Another folder's project is named with --project, every project's builds with --all.
    let project = first.json["project"].as_str().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let in_elsewhere = |args: &[&str]| {
        let output = kiln()
            .arg("--state-dir")
            .arg(b.state_dir())
            .args(args)
            .current_dir(elsewhere.path())
            .output()
            .unwrap();
        Run::new(output, elsewhere.path().join("out"))
    };
    let by_name = in_elsewhere(&["builds", "--json", "--project", project]);
    assert_eq!(
        by_name.json.as_array().map(Vec::len),
        Some(2),
        "{}",
        by_name.stdout
    );
    let own = in_elsewhere(&["builds", "--json"]);
    assert_eq!(own.json.as_array().map(Vec::len), Some(0), "{}", own.stdout);
    let all = in_elsewhere(&["builds", "--all"]);
    assert!(
        all.stdout
            .lines()
            .next()
            .is_some_and(|h| h.contains("PROJECT")),
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains(project), "{}", all.stdout);
}

#[test]
fn logs_prints_the_latest_log_or_the_one_named_by_number_or_id() {
    let b = Build::new().buildspec(&build_commands(&["echo said-$WORD"]));
    let first = b.run_with(&["-e", "WORD=one"]);
    first.success();
    b.run_with(&["-e", "WORD=two"]).success();

    let latest = kiln_in(&b, &["logs"]);
    latest.code(0);
    assert!(latest.stdout.contains("said-two"), "{}", latest.stdout);
    assert!(!latest.stdout.contains("said-one"), "{}", latest.stdout);
    assert!(latest.stdout.contains("Build "), "{}", latest.stdout);

    let one = kiln_in(&b, &["logs", "1"]);
    one.code(0);
    assert!(one.stdout.contains("said-one"), "{}", one.stdout);
    assert!(!one.stdout.contains("said-two"), "{}", one.stdout);

    let id = first.json["build_id"].as_str().unwrap();
    let by_id = kiln_in(&b, &["logs", id]);
    by_id.code(0);
    assert!(by_id.stdout.contains("said-one"), "{}", by_id.stdout);
}

#[test]
fn logs_of_an_unknown_build_is_a_usage_error() {
    let b = Build::new().buildspec(&build_commands(&["echo hi"]));
    let none_yet = kiln_in(&b, &["logs"]);
    none_yet.code(2);
    assert!(
        none_yet.stderr.contains("has no builds"),
        "{}",
        none_yet.stderr
    );
    b.run().success();
    let missing = kiln_in(&b, &["logs", "9"]);
    missing.code(2);
    assert!(
        missing.stderr.contains("has no build 9"),
        "{}",
        missing.stderr
    );
    let odd = kiln_in(&b, &["logs", "../../etc:passwd"]);
    odd.code(2);
    assert!(odd.stderr.contains("is not a build"), "{}", odd.stderr);
    let unknown_id = kiln_in(&b, &["logs", "app-00000000:0000"]);
    unknown_id.code(2);
    assert!(
        unknown_id.stderr.contains("no build has the id"),
        "{}",
        unknown_id.stderr
    );
}

#[test]
fn logs_shows_secrets_masked_as_the_build_did() {
    let b = Build::new()
        .write("secrets.env", "/app/token=tok-5ec2e7-hist\n")
        .buildspec("version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /app/token\nphases:\n  build:\n    commands:\n      - echo \"token=$TOKEN\"\n");
    let secrets = b.path().join("secrets.env");
    b.run_with(&["--secrets", secrets.to_str().unwrap()])
        .success();
    let run = kiln_in(&b, &["logs"]);
    run.code(0);
    assert!(run.stdout.contains("token=***"), "{}", run.stdout);
    assert!(!run.stdout.contains("tok-5ec2e7-hist"), "{}", run.stdout);
}

#[test]
fn logs_follow_prints_a_running_builds_later_lines_and_ends_with_it() {
    let b = Build::new().buildspec(&build_commands(&["sleep 2", "echo later-line"]));
    let mut build = b
        .command(&["--no-cache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kiln starts");
    // Wait for the build's log to exist, then follow it while the build sleeps.
    let started = Instant::now();
    let log = loop {
        let found = std::fs::read_dir(b.state_dir().join("builds"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("1.log"))
            .find(|p| p.is_file());
        if let Some(log) = found {
            break log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no log appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    // A build with a log and no record yet is listed as running.
    let listed = kiln_in(&b, &["builds", "--json"]);
    assert_eq!(listed.json[0]["status"], "IN_PROGRESS", "{}", listed.stdout);
    assert!(listed.json[0]["duration_ms"].is_null(), "{}", listed.stdout);
    let follow = kiln_in(&b, &["logs", "-f"]);
    let status = build.wait().expect("the build ends");
    assert!(status.success());
    assert!(
        !before.contains("later-line"),
        "the build was over before following began:\n{before}"
    );
    follow.code(0);
    assert!(follow.stdout.contains("later-line"), "{}", follow.stdout);
    assert!(follow.stdout.contains(": SUCCEEDED"), "{}", follow.stdout);
}

#[test]
fn logs_follow_interrupted_says_so_and_leaves_the_build_running() {
    let b = Build::new().buildspec(&build_commands(&["sleep 30"]));
    let mut build = b
        .command(&["--no-cache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kiln starts");
    let started = Instant::now();
    while !std::fs::read_dir(b.state_dir().join("builds"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("1.log").is_file())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no log appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = b.path().join("follow.out");
    let follow = b
        .kiln()
        .args(["logs", "-f"])
        .current_dir(b.path())
        .stdout(std::fs::File::create(&out).expect("file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln starts");
    // Following: the log's first lines are out.
    while std::fs::read_to_string(&out).unwrap_or_default().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kiln logs -f printed nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signals the kiln processes this test started.
    unsafe {
        libc::kill(follow.id() as i32, libc::SIGINT);
    }
    let followed = follow.wait_with_output().expect("kiln logs ends");
    let stderr = String::from_utf8_lossy(&followed.stderr);
    assert_eq!(followed.status.code(), Some(130), "{stderr}");
    assert_eq!(stderr, "kiln: interrupted\n");
    assert!(
        build.try_wait().expect("the build").is_none(),
        "interrupting kiln logs stopped the build"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(build.id() as i32, libc::SIGINT);
    }
    let _ = build.wait();
}
