//! `kiln build --dry-run`: the plan of a build (phases and commands, variables with secrets
//! masked, artifacts, cache paths), printed without running, recording or copying anything.

use crate::support::{Build, Run};

const SECRET: &str = "sekrit-value-42";

/// A project with a parameter-store secret, which its commands also name literally.
fn project() -> Build {
    Build::new()
        .write("secrets.env", &format!("/app/token={SECRET}\nprod/db:pw=dbpass-99x\n"))
        .buildspec(&format!(
            "version: 0.2\nenv:\n  variables:\n    STAGE: prod\n  parameter-store:\n    TOKEN: /app/token\n  secrets-manager:\n    DBPW: prod/db:pw\nphases:\n  install:\n    commands: [echo one-install]\n  build:\n    commands:\n      - echo \"token $TOKEN\"\n      - echo {SECRET}\n    finally: [echo build-finally]\n  post_build:\n    commands: [echo four-post]\nartifacts:\n  files: [a.txt]\n  discard-paths: yes\n  base-directory: dist\ncache:\n  key: deps-1\n  paths: ['node_modules/**/*']\n"
        ))
}

/// `kiln build --dry-run` of the project with its secrets file, and more arguments.
fn dry_run(b: &Build, extra: &[&str]) -> Run {
    let output = b
        .kiln()
        .arg("build")
        .arg(b.path())
        .arg("--dry-run")
        .arg("--secrets")
        .arg(b.path().join("secrets.env"))
        .args(extra)
        .current_dir(b.path())
        .output()
        .expect("kiln runs");
    Run::new(output, b.path().join(".kiln/out"))
}

#[test]
fn dry_run_prints_the_plan_with_secrets_masked_and_runs_nothing() {
    let b = project();
    let run = dry_run(&b, &[]);
    run.code(0);
    let text = &run.stdout;
    assert!(
        !text.contains(SECRET) && !run.stderr.contains(SECRET),
        "{text}"
    );
    assert!(!text.contains("dbpass-99x"), "{text}");
    // The commands, in order, finally after its phase's commands.
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("the plan lacks {needle:?}:\n{text}"))
    };
    assert!(
        at("echo one-install") < at("echo \"token $TOKEN\""),
        "{text}"
    );
    assert!(at("echo \"token $TOKEN\"") < at("echo ***"), "{text}");
    assert!(at("echo ***") < at("finally:"), "{text}");
    assert!(at("finally:") < at("echo build-finally"), "{text}");
    assert!(at("echo build-finally") < at("echo four-post"), "{text}");
    for line in [
        "  STAGE=prod",
        "  TOKEN=***",
        "  DBPW=***",
        "files a.txt",
        "base-directory dist, discard-paths yes",
        "node_modules/**/*",
        "key deps-1",
    ] {
        assert!(text.contains(line), "the plan lacks {line:?}:\n{text}");
    }
    // Nothing ran: no command's output, no log, no build number taken, no output folder.
    assert!(!text.lines().any(|l| l.trim() == "one-install"), "{text}");
    assert!(!run.stderr.contains("Entering phase"), "{}", run.stderr);
    assert!(!b.state_dir().join("builds").exists());
    assert!(!b.path().join(".kiln").exists());
    let history = b
        .kiln()
        .args(["builds", "--json"])
        .current_dir(b.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&history.stdout).trim(), "[]");
    // The next real build is build 1.
    let built = b.run_with(&["--secrets", b.path().join("secrets.env").to_str().unwrap()]);
    assert_eq!(built.json["build_number"], 1, "{}", built.stderr);
}

#[test]
fn dry_run_json_is_the_plan_with_secrets_masked() {
    let b = project();
    let run = dry_run(&b, &["--json", "--phases", "install,build"]);
    run.code(0);
    assert!(!run.stdout.contains(SECRET), "{}", run.stdout);
    let plan = &run.json;
    let phases = plan["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD"]);
    assert_eq!(phases[2]["commands"][0], "echo \"token $TOKEN\"");
    assert_eq!(phases[2]["commands"][1], "echo ***");
    assert_eq!(phases[2]["finally"][0], "echo build-finally");
    assert_eq!(phases[3]["selected"], false);
    let token = plan["variables"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "TOKEN"))
        .expect("TOKEN in the plan");
    assert_eq!(token["value"], "***");
    assert_eq!(plan["artifacts"][0]["files"][0], "a.txt");
    assert_eq!(plan["artifacts"][0]["discard_paths"], true);
    assert_eq!(plan["cache"]["paths"][0], "node_modules/**/*");
    assert!(
        plan["uncacheable"]
            .as_str()
            .is_some_and(|u| u.contains("partial")),
        "{plan}"
    );
}

#[test]
fn dry_run_with_a_missing_secret_says_so_like_the_build() {
    let b = project().write("secrets.env", "/app/token=x\n");
    let run = dry_run(&b, &[]);
    run.code(2);
    assert!(run.stderr.contains("prod/db:pw"), "{}", run.stderr);
    assert!(!b.state_dir().join("builds").exists());
}
