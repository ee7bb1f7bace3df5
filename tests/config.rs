//! How a project is configured outside its buildspec: where `kiln build` finds the buildspec when it
//! is not told (upward from the current folder, as cargo finds Cargo.toml), `--env-file`, and the
//! project's kiln.toml (defaults for flags, which may not widen the sandbox by themselves).

use std::path::Path;

use crate::support::{Build, Run, build_commands};

const COMMIT: &str =
    "git init -q . && git add -A && git -c user.email=k@example.com -c user.name=k commit -qm init";

/// `kiln build ARGS --json` run in `cwd`, with `b`'s state and cache, artifacts in `b`'s `out`.
fn build_in(b: &Build, cwd: &Path, args: &[&str]) -> Run {
    let output = b
        .kiln()
        .arg("build")
        .args(args)
        .arg("--json")
        .arg("--output")
        .arg(b.path().join("out"))
        .current_dir(cwd)
        .output()
        .unwrap();
    b.finish(output)
}

#[test]
fn build_in_a_subfolder_finds_the_buildspec_above_and_runs_at_the_repository_root() {
    let b = Build::new()
        .write("top.txt", "t")
        .write(
            "svc/buildspec.yml",
            &build_commands(&[
                "echo files: $(ls | tr '\\n' ' ')",
                "echo src=$CODEBUILD_SRC_DIR pwd=$(pwd)",
            ]),
        )
        .write("svc/src/main.c", "int main;")
        .sh(COMMIT);
    let run = build_in(&b, &b.path().join("svc/src"), &[]);
    run.success();
    let lines = run.output_lines();
    assert_eq!(lines[0], "files: svc top.txt", "{lines:?}");
    let (src, pwd) = lines[1]
        .strip_prefix("src=")
        .and_then(|l| l.split_once(" pwd="))
        .unwrap();
    assert_eq!(
        src, pwd,
        "commands start at CODEBUILD_SRC_DIR, the repository's root"
    );
}

#[test]
fn build_given_a_buildspec_file_builds_its_folder_with_it() {
    let b = Build::new()
        .write("elsewhere.txt", "e")
        .write(
            "ci/buildspec.yml",
            &build_commands(&["echo files: $(ls | tr '\\n' ' ')"]),
        )
        .write("ci/a.txt", "a");
    let run = build_in(&b, b.path(), &["ci/buildspec.yml"]);
    run.success();
    assert_eq!(run.output_lines()[0], "files: a.txt buildspec.yml");
}

#[test]
fn build_given_a_buildspec_file_in_a_repository_builds_the_repository() {
    let b = Build::new()
        .write("top.txt", "t")
        .write(
            "ci/release.yml",
            &build_commands(&["echo files: $(ls | tr '\\n' ' ')"]),
        )
        .sh(COMMIT);
    let run = build_in(&b, b.path(), &["ci/release.yml"]);
    run.success();
    assert_eq!(run.output_lines()[0], "files: ci top.txt");
}

#[test]
fn build_with_no_buildspec_up_to_the_repository_root_is_a_usage_error_naming_where_it_looked() {
    let b = Build::new().write("sub/deeper/a.txt", "a").sh(COMMIT);
    let run = build_in(&b, &b.path().join("sub/deeper"), &[]);
    run.code(2);
    let root = b.path().canonicalize().unwrap();
    assert!(
        run.stderr.contains(&format!(
            "no buildspec.yml (or .yaml, .json) in {}/sub/deeper or any folder above it up to {} (the repository's root)",
            root.display(),
            root.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        !b.state_dir().join("builds").exists(),
        "nothing is recorded"
    );
}

#[test]
fn validate_with_no_argument_checks_the_buildspec_above() {
    let b = Build::new()
        .write(
            "buildspec.yml",
            "version: 0.2\nphases:\n  biuld:\n    commands: [x]\n",
        )
        .write("sub/a.txt", "a");
    let output = b
        .kiln()
        .arg("validate")
        .current_dir(b.path().join("sub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("buildspec.yml:3:3"), "{stderr}");
}

#[test]
fn env_file_values_reach_the_build_and_env_overrides_them() {
    let b = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    STAGE: from-buildspec\nphases:\n  build:\n    commands:\n      - echo \"stage=$STAGE greeting=$GREETING raw=$RAW region=$REGION\"\n",
        )
        .write(
            "vars.env",
            "# settings\n\nexport STAGE=from-file\nGREETING=\"a\\tb\"\nRAW='$HOME'\nREGION=eu-west-1 # comment\n",
        );
    let env_file = b.path().join("vars.env");
    let run = b.run_with(&[
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "REGION=eu-north-1",
    ]);
    run.success();
    assert_eq!(
        run.output_lines()[0],
        "stage=from-file greeting=a\tb raw=$HOME region=eu-north-1"
    );
}

#[test]
fn env_file_with_a_bad_line_is_a_usage_error_naming_the_line() {
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("vars.env", "A=1\n\nthis line has no equals sign\n");
    let env_file = b.path().join("vars.env");
    let run = b.run_with(&["--env-file", env_file.to_str().unwrap()]);
    run.code(2);
    assert!(run.stderr.contains("vars.env:3:1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("expected `NAME=value`"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("ran"));
}

/// `kiln config ARGS --json` in the project's folder: each setting's value and origin.
fn config_json(b: &Build, args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let output = b
        .kiln()
        .arg("config")
        .args(args)
        .arg("--json")
        .current_dir(b.path())
        .env_remove("KILN_CACHE")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn kiln_toml_gives_defaults_that_flags_override() {
    let b = Build::new()
        .buildspec(&build_commands(&[
            "echo from-toml=$FROM_TOML from-flag=$FROM_FLAG",
        ]))
        .write("kiln.toml", "# defaults\npass-env = [\"FROM_TOML\"]\n")
        .env("FROM_TOML", "t")
        .env("FROM_FLAG", "f");
    let run = b.run();
    run.success();
    assert_eq!(run.output_lines()[0], "from-toml=t from-flag=");
    let run = b.run_with(&["--pass-env", "FROM_FLAG", "--no-cache"]);
    run.success();
    assert_eq!(run.output_lines()[0], "from-toml= from-flag=f");
}

#[test]
fn kiln_config_names_where_each_setting_came_from() {
    let b = Build::new()
        .buildspec(&build_commands(&["true"]))
        .write(
            "kiln.toml",
            "# defaults\nnetwork = \"none\"\n\nmemory = \"1G\"\nstep-timeout = \"5m\"\n",
        )
        .write("sub/a.txt", "a");
    let json = config_json(
        &b,
        &["--memory", "2G"],
        &[("KILN_CACHE", "s3://bucket/prefix")],
    );
    let settings = &json["settings"];
    let origin = |name: &str| settings[name]["origin"].as_str().unwrap().to_string();
    assert_eq!(settings["network"]["value"], "none");
    assert_eq!(origin("network"), "kiln.toml:2");
    assert_eq!(origin("step-timeout"), "kiln.toml:5");
    assert_eq!(settings["memory"]["value"], 2u64 << 30);
    assert_eq!(origin("memory"), "flag");
    assert_eq!(origin("cache"), "env KILN_CACHE");
    assert_eq!(origin("cache-scope"), "default");
    assert_eq!(
        json["file"].as_str().unwrap(),
        b.path()
            .canonicalize()
            .unwrap()
            .join("kiln.toml")
            .to_str()
            .unwrap()
    );

    let text = b
        .kiln()
        .arg("config")
        .current_dir(b.path().join("sub"))
        .env_remove("KILN_CACHE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let network = text.lines().find(|l| l.starts_with("network = ")).unwrap();
    assert!(network.ends_with("# kiln.toml:2"), "{text}");
}

#[test]
fn kiln_toml_with_a_misspelt_key_is_a_usage_error_at_its_line_and_column() {
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("kiln.toml", "memory = \"1G\"\n\nnetwrok = \"none\"\n");
    let run = b.run();
    run.code(2);
    assert!(run.stderr.contains("kiln.toml:3:1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown key `netwrok`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `network`?"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("ran"));
}

#[test]
fn kiln_toml_may_not_make_etc_writable_by_itself() {
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("kiln.toml", "writable = [\"/etc\"]\n");
    let run = b.run();
    run.code(2);
    assert!(run.stderr.contains("kiln.toml:1:13"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("a kiln.toml may not reach beyond its repository by itself"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--writable /etc"), "{}", run.stderr);
    assert!(!run.stdout.contains("ran"));
    // The same on the command line is the user's own choice.
    let json = config_json(&b, &["--writable", "/etc"], &[]);
    assert_eq!(json["settings"]["writable"]["value"][0], "/etc");
    assert_eq!(json["settings"]["writable"]["origin"], "flag");
}

#[test]
fn kiln_toml_may_not_pass_kilns_environment_by_a_glob() {
    // `*` would hand the build every variable of kiln's environment, its credentials included.
    for glob in ["*", "GH_*"] {
        let b = Build::new()
            .buildspec(&build_commands(&["echo \"ran=$KILN_GLOB_SECRETISH\""]))
            .write("kiln.toml", &format!("pass-env = [\"{glob}\"]\n"))
            .env("KILN_GLOB_SECRETISH", "glob-leaked-value");
        let run = b.run();
        run.code(2);
        assert!(run.stderr.contains("may match one"), "{}", run.stderr);
        assert!(!run.stdout.contains("glob-leaked-value") && !run.stderr.contains("ran="));
    }
}

#[test]
fn kiln_toml_may_not_ask_for_the_hosts_network_or_a_path_through_a_link_outside() {
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("kiln.toml", "network = \"host\"\n");
    let run = b.run();
    run.code(2);
    assert!(run.stderr.contains("--network host"), "{}", run.stderr);
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("kiln.toml", "output = \"escape/out\"\n")
        .sh("ln -s /var escape");
    let run = b.run_with(&[]);
    // The builder gives --output: the file's own is not used, so nothing is refused.
    run.success();
    let output = b
        .kiln()
        .arg("config")
        .current_dir(b.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`escape/out` is outside"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_buildspec_or_kiln_toml_of_another_user_above_the_current_folder_is_not_taken() {
    if !crate::support::isolation::is_root() {
        eprintln!("SKIPPED: giving a file to another user needs root");
        return;
    }
    let b = Build::new()
        .buildspec(&build_commands(&["echo ran"]))
        .write("mine/a.txt", "a")
        .sh("chown 65534 buildspec.yml");
    let run = build_in(&b, &b.path().join("mine"), &[]);
    run.code(2);
    assert!(
        run.stderr.contains("belongs to another user (uid 65534)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("ran"));

    let b = Build::new()
        .write("kiln.toml", "network = \"none\"\n")
        .write("mine/buildspec.yml", &build_commands(&["echo ran"]))
        .sh("chown 65534 kiln.toml");
    let run = build_in(&b, &b.path().join("mine"), &[]);
    run.code(2);
    assert!(
        run.stderr
            .contains("kiln.toml belongs to another user (uid 65534)"),
        "{}",
        run.stderr
    );
}

#[test]
fn package_from_build_in_a_subfolder_finds_the_build_of_the_buildspec_above() {
    let b = Build::new()
        .write(
            "svc/buildspec.yml",
            &(build_commands(&["printf 'version: 0.0\\nos: linux\\n' > appspec.yml"])
                + "artifacts:\n  files:\n    - appspec.yml\n"),
        )
        .write("svc/src/main.c", "int main;")
        .sh(COMMIT);
    let src = b.path().join("svc/src");
    build_in(&b, &src, &[]).success();
    let output = b
        .kiln()
        .args(["package", "--from-build", "1", "-o"])
        .arg(b.path().join("app.zip"))
        .current_dir(&src)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(b.path().join("app.zip").is_file());
}
