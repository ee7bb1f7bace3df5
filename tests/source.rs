//! The build workspace: what of the source a build sees, and that the source is left alone.

use crate::support::{Build, build_commands};

fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_git_source_is_snapshotted_without_ignored_files() {
    if !git_available() {
        panic!("git is needed for this test: apt-get install git");
    }
    let b = Build::new()
        .write(".gitignore", "ignored.txt\nbuild/\n")
        .write("tracked.txt", "t")
        .write("ignored.txt", "i")
        .write("build/old.o", "o")
        .sh("git init -q . && git add .gitignore tracked.txt && git -c user.email=k@example.com -c user.name=k commit -qm init")
        .write("untracked.txt", "u")
        .buildspec(&build_commands(&[
            "ls -A | grep -v '^\\.git$' | sort | tr '\\n' ' '; echo",
            "echo version=$CODEBUILD_RESOLVED_SOURCE_VERSION",
            "echo made > made-by-build.txt",
        ]));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(b.path())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let run = b.run();
    run.success();
    let lines = run.output_lines();
    assert_eq!(
        lines[0],
        ".gitignore buildspec.yml tracked.txt untracked.txt "
    );
    assert_eq!(lines[1], format!("version={head}"));
    assert_eq!(run.json["source_version"], head);
    assert!(
        !b.path().join("made-by-build.txt").exists(),
        "the build wrote into the source"
    );
}

#[test]
fn a_plain_directory_is_copied_whole_with_empty_dirs() {
    let run = Build::new()
        .write("a/b.txt", "b")
        .sh("mkdir -p empty/inner")
        .buildspec(&build_commands(&[
            "test -d empty/inner && cat a/b.txt && echo",
        ]))
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["b"]);
}

#[test]
fn in_place_builds_in_the_directory_itself() {
    let b = Build::new()
        .buildspec(&build_commands(&["echo made > made.txt"]))
        .args(["--in-place"]);
    b.run().success();
    assert!(b.path().join("made.txt").exists());
}

#[test]
fn a_buildspec_can_be_named() {
    let run = Build::new()
        .write("ci/other.yml", &build_commands(&["echo from-other"]))
        .args(["--buildspec", "ci/other.yml"])
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["from-other"]);
}

#[test]
fn a_json_buildspec_runs() {
    let run = Build::new()
        .write(
            "buildspec.json",
            r#"{"version": 0.2, "phases": {"build": {"commands": ["echo from-json"]}}}"#,
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["from-json"]);
}

#[test]
fn no_buildspec_is_a_usage_error() {
    let run = Build::new().run();
    run.code(2);
    assert!(run.stderr.contains("no buildspec found"), "{}", run.stderr);
}

#[test]
fn a_folder_inside_a_git_repository_follows_its_ignore_rules() {
    let b = Build::new()
        .write(".gitignore", "*.log\n")
        .write("app/main.txt", "m")
        .write("app/debug.log", "d")
        .sh("git init -q . && git add -A && git -c user.email=k@example.com -c user.name=k commit -qm init")
        .write("app/buildspec.yml", &build_commands(&["ls | sort | tr '\\n' ' '; echo"]));
    let out = tempfile::tempdir().unwrap();
    let output = crate::support::kiln()
        .arg("--state-dir")
        .arg(b.state_dir())
        .arg("build")
        .arg(b.path().join("app"))
        .args(["--json", "--output"])
        .arg(out.path())
        .output()
        .unwrap();
    let run = crate::support::Run::new(output, out.path().to_path_buf());
    run.success();
    assert_eq!(run.output_lines(), ["buildspec.yml main.txt "]);
    assert!(
        run.json["source_version"]
            .as_str()
            .is_some_and(|v| v.len() == 40)
    );
}

#[test]
fn an_output_folder_inside_the_project_is_not_part_of_its_source() {
    let run = Build::new()
        .write("keep.txt", "k")
        .write("out/stale/old.txt", "from an earlier build")
        .buildspec(&build_commands(&["ls | sort | tr '\\n' ' '; echo"]))
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["buildspec.yml keep.txt "]);
}

/// A build of `b` with the default output, `.kiln/out` in the project.
fn run_with_default_output(b: &Build) -> crate::support::Run {
    let output = b
        .kiln()
        .arg("build")
        .arg(b.path())
        .arg("--json")
        .output()
        .unwrap();
    crate::support::Run::new(output, b.path().join(".kiln/out"))
}

fn git_status(b: &Build) -> String {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(b.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project holding `.kiln/` folders at its top and below, as a git checkout or a plain folder:
/// the build's copy holds none of them, and the rest of the source.
fn kiln_folders_stay_out(git: bool) {
    let mut b = Build::new().write("keep.txt", "k");
    if git {
        b = b.sh("git init -q .");
    }
    let run = b
        .write(".kiln/out/old/a.txt", "from an earlier build")
        .write("sub/.kiln/x", "from a build of sub")
        .write("sub/src.txt", "s")
        .buildspec(&build_commands(&[
            "test ! -e sub/.kiln/x",
            "test ! -e sub/.kiln",
            "test ! -e .kiln",
            "test -e sub/src.txt",
            "echo clean",
        ]))
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["clean"]);
}

#[test]
fn kiln_folders_at_any_depth_of_a_git_project_are_not_its_source() {
    if !git_available() {
        panic!("git is needed for this test: apt-get install git");
    }
    kiln_folders_stay_out(true);
}

#[test]
fn kiln_folders_at_any_depth_of_a_plain_project_are_not_its_source() {
    kiln_folders_stay_out(false);
}

#[test]
fn the_default_output_folder_ignores_itself_for_git() {
    if !git_available() {
        panic!("git is needed for this test: apt-get install git");
    }
    let b = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo a > a.txt\nartifacts:\n  files: [a.txt]\n  name: app\n",
        )
        .sh("git init -q . && git add -A && git -c user.email=k@example.com -c user.name=k commit -qm init");
    for _ in 0..2 {
        let run = run_with_default_output(&b);
        run.success();
        assert_eq!(run.artifact_files("app"), ["a.txt"]);
        let ignore = std::fs::read_to_string(b.path().join(".kiln/.gitignore")).unwrap();
        assert_eq!(ignore, "*\n");
        assert_eq!(
            git_status(&b),
            "",
            "the build shows as a change of the project"
        );
    }
}

#[test]
fn a_kiln_folder_the_user_made_is_left_as_it_is() {
    let b = Build::new()
        .write(".kiln/notes.txt", "mine")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo a > a.txt\nartifacts:\n  files: [a.txt]\n  name: app\n",
        );
    let run = run_with_default_output(&b);
    run.success();
    assert_eq!(run.artifact_files("app"), ["a.txt"]);
    assert!(!b.path().join(".kiln/.gitignore").exists());
}

#[test]
fn the_workspace_is_gone_once_kiln_has_exited() {
    let run = Build::new()
        .write("node_modules/m/index.js", "x")
        .buildspec(&build_commands(&["mkdir -p big && touch big/a big/b"]))
        .run();
    run.success();
    let workspace = run
        .stderr
        .lines()
        .find_map(|l| l.split_once(" into ").map(|(_, dir)| dir.trim()))
        .map(std::path::PathBuf::from)
        .expect("the log names the workspace");
    let scratch = workspace.parent().unwrap().to_path_buf();
    // Removed before kiln returns, or by the process kiln leaves it to: either way, soon.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scratch.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!scratch.exists(), "{} was left behind", scratch.display());
}
