//! The build's `.git`: a git project's workspace is a repository of the same commit, with the
//! project's tags and its uncommitted changes, that the build can use as a clone and cannot use to
//! change the project's own repository; a hostile `.git` runs nothing and lends nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Build, build_commands};

const COMMIT: &str = "git -c user.email=k@example.com -c user.name=k commit -q";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs: apt-get install git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A project with two commits on `main`, the first tagged `v1.0` (annotated) and the second
/// `v1.1-rc` (lightweight), then a third commit.
fn repository() -> Build {
    Build::new()
        .write("a.txt", "a1")
        .write("gone.txt", "will be deleted")
        .sh(&format!(
            "git init -q -b main . && git add -A && {COMMIT} -m one && git -c user.email=k@example.com -c user.name=k tag -a v1.0 -m 'release 1.0'"
        ))
        .write("a.txt", "a2")
        .sh(&format!("git add -A && {COMMIT} -m two && git tag v1.1-rc"))
        .write("b.txt", "b")
        .sh(&format!("git add -A && {COMMIT} -m three"))
}

/// Every file below `dir` with its contents: what a repository is, to compare before and after.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    crate::support::walkdir(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

#[test]
fn git_rev_parse_head_in_a_build_is_the_projects_head_on_its_branch() {
    let b = repository().buildspec(&build_commands(&[
        "git rev-parse HEAD",
        "git branch --show-current",
    ]));
    let head = git(b.path(), &["rev-parse", "HEAD"]);
    let run = b.run();
    run.success().log_has("Git: main at ");
    assert_eq!(run.output_lines(), [head.as_str(), "main"]);
}

#[test]
fn git_describe_in_a_build_gives_the_projects_tags() {
    let b = repository().buildspec(&build_commands(&[
        "git describe --tags",
        "git describe",
        "git tag --merged HEAD | tr '\\n' ' '; echo",
    ]));
    let head = git(b.path(), &["rev-parse", "--short=7", "HEAD"]);
    let run = b.run();
    run.success();
    assert_eq!(
        run.output_lines(),
        [
            format!("v1.1-rc-1-g{head}"),
            format!("v1.0-2-g{head}"),
            "v1.0 v1.1-rc ".to_string()
        ]
    );
}

#[test]
fn uncommitted_changes_show_in_the_builds_git_status() {
    let b = repository()
        .write("a.txt", "changed, not committed")
        .write("new.txt", "untracked")
        .sh("rm gone.txt")
        .buildspec(&build_commands(&[
            "git status --porcelain | grep -v buildspec.yml",
            // diff-index does not refresh the index: a clean file must already be clean.
            "git diff-index --quiet HEAD -- b.txt && echo b-clean",
            "git diff --quiet -- a.txt || echo a-dirty",
        ]));
    let run = b.run();
    run.success();
    assert_eq!(
        run.output_lines(),
        [
            " M a.txt",
            " D gone.txt",
            "?? new.txt",
            "b-clean",
            "a-dirty"
        ]
    );
}

#[test]
fn commits_and_tags_made_by_a_build_leave_the_projects_repository_unchanged() {
    let b = repository().buildspec(&build_commands(&[
        "echo more >> a.txt",
        &format!("{COMMIT} -am 'made in the build'"),
        "git tag v9.9",
        "git checkout -q -b other && git branch -f main HEAD~2",
        "git gc -q",
        "git describe --tags",
        // The borrowed objects are the project's: the build cannot add to them.
        "! touch \"$(cat .git/objects/info/alternates)/planted\" 2>/dev/null && echo refused",
    ]));
    let refs = git(b.path(), &["for-each-ref"]);
    let objects = git(b.path(), &["count-objects", "-v"]);
    let before = contents(&b.path().join(".git"));
    let run = b.run();
    run.success();
    assert_eq!(run.output_lines(), ["v9.9", "refused"]);
    assert_eq!(git(b.path(), &["for-each-ref"]), refs);
    assert_eq!(git(b.path(), &["count-objects", "-v"]), objects);
    assert!(
        contents(&b.path().join(".git")) == before,
        "the project's .git changed"
    );
}

#[test]
fn a_hostile_repository_config_runs_nothing_on_the_host() {
    let marker = PathBuf::from(format!(
        "/tmp/pwned-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let touch = format!("touch {}", marker.display());
    let b = repository()
        .write(".gitattributes", "* filter=evil diff=evil\n")
        .write("hooks/pre-commit", &format!("#!/bin/sh\n{touch}\n"))
        .sh(&format!("git add -A && {COMMIT} -m attributes"))
        .buildspec(&build_commands(&[
            "git status --porcelain >/dev/null",
            "git diff HEAD~1 >/dev/null",
            &format!("{COMMIT} --allow-empty -m in-build"),
            "git rev-parse HEAD~1",
        ]));
    for hook in [
        "pre-commit",
        "post-checkout",
        "post-index-change",
        "reference-transaction",
        "fsmonitor-watchman",
    ] {
        let path = b.path().join(".git/hooks").join(hook);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{touch}\n")).unwrap();
        let hooks_dir_hook = b.path().join("hooks").join(hook);
        std::fs::write(&hooks_dir_hook, format!("#!/bin/sh\n{touch}\n")).unwrap();
        for p in [&path, &hooks_dir_hook] {
            Command::new("chmod").arg("+x").arg(p).status().unwrap();
        }
    }
    let head = git(b.path(), &["rev-parse", "HEAD"]);
    // Written last: from here on, the test itself runs no git in the project.
    let mut config = std::fs::read_to_string(b.path().join(".git/config")).unwrap();
    config.push_str(&format!(
        "[core]\n\tfsmonitor = {touch}\n\thooksPath = {hooks}\n\tpager = {touch}\n\tsshCommand = {touch}\n\talternateRefsCommand = {touch}\n\teditor = {touch}\n[filter \"evil\"]\n\tclean = {touch}\n\tsmudge = {touch}\n\tprocess = {touch}\n[diff \"evil\"]\n\ttextconv = {touch}\n[diff]\n\texternal = {touch}\n[uploadpack]\n\tpackObjectsHook = {touch}\n[alias]\n\tstatus = !{touch}\n",
        hooks = b.path().join("hooks").display()
    ));
    std::fs::write(b.path().join(".git/config"), config).unwrap();

    let run = b.run();
    let present = marker.exists();
    let _ = std::fs::remove_file(&marker);
    run.success();
    assert!(
        !present,
        "the project's git configuration ran a program on the host"
    );
    assert_eq!(run.output_lines(), [head.as_str()]);
}

#[test]
fn a_gitdir_file_naming_another_repository_lends_nothing() {
    // The user's other repository, which a downloaded project points its `.git` at.
    let secret = Build::new().write("secret.txt", "s").sh(&format!(
        "git init -q -b main . && git add -A && {COMMIT} -m secret"
    ));
    let b = Build::new()
        .write(
            ".git",
            &format!("gitdir: {}/.git\n", secret.path().display()),
        )
        .buildspec(&build_commands(&[
            "test ! -e .git && echo no-git",
            "git log --all --oneline 2>/dev/null | grep -c . || true",
        ]));
    let run = b.run();
    run.success()
        .log_has("No .git for")
        .log_has("does not name this folder as its work tree");
    assert_eq!(run.output_lines(), ["no-git", "0"]);
}

#[test]
fn a_linked_worktree_builds_with_its_own_head() {
    let main = repository();
    let parent = tempfile::tempdir().unwrap();
    let wt = parent.path().join("wt");
    git(
        main.path(),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            wt.to_str().unwrap(),
            "HEAD~1",
        ],
    );
    std::fs::write(
        wt.join("buildspec.yml"),
        build_commands(&[
            "git rev-parse HEAD",
            "git branch --show-current",
            "git describe --tags",
        ]),
    )
    .unwrap();
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let out = tempfile::tempdir().unwrap();
    let output = main
        .kiln()
        .arg("build")
        .arg(&wt)
        .arg("--json")
        .arg("--output")
        .arg(out.path())
        .output()
        .unwrap();
    let run = crate::support::Run::new(output, out.path().to_path_buf());
    run.success();
    assert_eq!(run.output_lines(), [head.as_str(), "feature", "v1.1-rc"]);
}

#[test]
fn a_submodule_gets_a_git_of_its_own() {
    let lib = Build::new().write("lib.txt", "l").sh(&format!(
        "git init -q -b main . && git add -A && {COMMIT} -m lib && git tag lib-1"
    ));
    let b = Build::new()
        .write("app.txt", "a")
        .buildspec(&build_commands(&[
            "git -C lib rev-parse HEAD",
            "git -C lib describe --tags",
            "git submodule status | cut -c1-41",
            "git status --porcelain",
            "cat lib/lib.txt; echo",
        ]));
    let b = b.sh(&format!(
        "git init -q -b main . && git -c protocol.file.allow=always submodule --quiet add {} lib && git add -A && {COMMIT} -m app",
        lib.path().display()
    ));
    let head = git(lib.path(), &["rev-parse", "HEAD"]);
    let run = b.run();
    run.success().log_has("Git in lib: main at ");
    assert_eq!(
        run.output_lines(),
        [head.clone(), "lib-1".into(), format!(" {head}"), "l".into()]
    );
}

#[test]
fn two_commits_of_the_same_tree_are_one_build_for_the_cache() {
    let b = repository()
        .buildspec(&build_commands(&["echo built"]))
        .sh(&format!("git add -A && {COMMIT} -m buildspec"));
    b.run().success();
    // A new HEAD, the same tree: the `.git` is not part of the source's digest.
    let b = b.sh(&format!("{COMMIT} --allow-empty -m 'same tree'"));
    let head = git(b.path(), &["rev-parse", "HEAD"]);
    let run = b.run();
    run.success();
    assert_eq!(run.json["cache"]["hit"], true, "{}", run.stderr);
    assert_eq!(run.json["source_version"], head.as_str());
}

#[test]
fn a_project_that_is_not_a_repository_gets_no_git() {
    let run = Build::new()
        .buildspec(&build_commands(&["test ! -e .git && echo no-git"]))
        .run();
    run.success().log_lacks("No .git for");
    assert_eq!(run.output_lines(), ["no-git"]);
}

#[test]
fn a_folder_below_the_repository_root_gets_no_git_and_says_why() {
    let b = repository()
        .write(
            "app/buildspec.yml",
            &build_commands(&["test ! -e .git && echo no-git"]),
        )
        .sh(&format!("git add -A && {COMMIT} -m app"));
    let out = tempfile::tempdir().unwrap();
    let output = b
        .kiln()
        .arg("build")
        .arg(b.path().join("app"))
        .args(["--json", "--output"])
        .arg(out.path())
        .output()
        .unwrap();
    let run = crate::support::Run::new(output, out.path().to_path_buf());
    run.success().log_has("is a folder of the repository at");
    assert_eq!(run.output_lines(), ["no-git"]);
}

#[test]
fn artifacts_never_collect_a_git_folder() {
    let run = repository()
        .buildspec("version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n  files: ['**/*']\n")
        .run();
    run.success();
    assert_eq!(
        run.artifact_files("primary"),
        ["a.txt", "b.txt", "buildspec.yml", "gone.txt"]
    );
}

#[test]
fn source_version_builds_a_commit_and_its_buildspec_without_touching_the_working_tree() {
    let spec = |lines: &[&str]| {
        let mut s = String::from("version: 0.2\nphases:\n  build:\n    commands:\n");
        for l in lines {
            s.push_str(&format!("      - {l}\n"));
        }
        s
    };
    let b = Build::new()
        .write(
            "buildspec.yml",
            &spec(&["cat a.txt", "git rev-parse HEAD", "git status --porcelain", "echo spec-one"]),
        )
        .write("a.txt", "a1\n")
        .write("tool.sh", "#!/bin/sh\necho tool\n")
        .sh(&format!(
            "chmod +x tool.sh && ln -s a.txt link.txt && git init -q -b main . && git add -A && {COMMIT} -m one && git tag v1.0"
        ))
        .write(
            "buildspec.yml",
            &spec(&["cat a.txt", "git branch --show-current", "./tool.sh", "cat link.txt", "echo spec-two"]),
        )
        .write("a.txt", "a2\n")
        .sh(&format!("git add -A && {COMMIT} -m two"))
        .write("a.txt", "uncommitted\n");
    let v1 = git(b.path(), &["rev-parse", "v1.0^{commit}"]);
    let head = git(b.path(), &["rev-parse", "HEAD"]);

    // A tag: that commit's files and buildspec, a clean `git status`, HEAD at the commit.
    let run = b.run_with(&["--source-version", "v1.0"]);
    run.success();
    assert_eq!(run.output_lines(), ["a1", v1.as_str(), "spec-one"]);
    assert_eq!(run.json["source_version"], v1.as_str());
    // A branch: its tip (not the uncommitted change), on that branch; modes and links kept.
    let run = b.run_with(&["--source-version", "main"]);
    run.success();
    assert_eq!(run.output_lines(), ["a2", "main", "tool", "a2", "spec-two"]);
    // The working tree and the repository are as they were.
    assert_eq!(
        std::fs::read_to_string(b.path().join("a.txt")).unwrap(),
        "uncommitted\n"
    );
    assert_eq!(git(b.path(), &["rev-parse", "HEAD"]), head);
    // A name of no commit, or one git would read as an option: exit 2, nothing runs.
    for bad in ["nope", "--output=/tmp/x"] {
        let run = b.run_with(&[&format!("--source-version={bad}")]);
        run.code(2);
        assert!(run.stderr.contains("--source-version"), "{}", run.stderr);
        assert!(!run.stderr.contains("spec-"), "a command ran");
    }
}

#[test]
fn source_version_refuses_a_commit_holding_paths_git_would_not_check_out() {
    // Trees made with `git mktree` (which checks no names): one holding `.git/…`, one holding `..`.
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .sh(&format!(
            "git init -q -b main . && git add -A && {COMMIT} -m one"
        ));
    let blob = git_stdin(b.path(), &["hash-object", "-w", "--stdin"], "evil\n");
    let inner = git_stdin(
        b.path(),
        &["mktree"],
        &format!("100644 blob {blob}\thooks-post-checkout\n"),
    );
    let spec = git(b.path(), &["rev-parse", "HEAD:buildspec.yml"]);
    for (name, listing) in [
        (
            "dotgit",
            format!("040000 tree {inner}\t.git\n100644 blob {spec}\tbuildspec.yml\n"),
        ),
        (
            "dotdot",
            format!("100644 blob {blob}\t..\n100644 blob {spec}\tbuildspec.yml\n"),
        ),
    ] {
        let tree = git_stdin(b.path(), &["mktree"], &listing);
        let commit = git(
            b.path(),
            &[
                "-c",
                "user.email=k@example.com",
                "-c",
                "user.name=k",
                "commit-tree",
                &tree,
                "-m",
                name,
            ],
        );
        git(b.path(), &["tag", name, &commit]);
        let run = b.run_with(&["--source-version", name]);
        run.code(2);
        assert!(
            run.stderr.contains("a path git would not check out"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("\nran"), "a command ran");
    }
}

fn git_stdin(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
