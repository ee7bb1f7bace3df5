//! The command line itself: one `error:` per error, exit codes scripts can trust, and nothing
//! recorded for a command that names a file or folder that is not there.

use std::path::Path;
use std::process::Output;

use crate::support::{Build, kiln, walkdir};

/// What a finished `kiln` said and how it exited.
struct Said {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Said {
    fn of(out: Output) -> Said {
        Said {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Exit `code`, and `error:` exactly once on stderr, at the start of a line.
    fn one_error(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.stderr);
        assert_eq!(
            self.stderr.matches("error:").count(),
            1,
            "one `error:` expected:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error: ")),
            "{}",
            self.stderr
        );
        self
    }

    /// Exit 2 with one error that says the path is not there.
    fn no_such_file(&self, path: &Path) -> &Self {
        self.one_error(2);
        assert!(self.stderr.contains("no such file"), "{}", self.stderr);
        assert!(
            self.stderr.contains(&path.display().to_string()),
            "the message should name {}:\n{}",
            path.display(),
            self.stderr
        );
        self
    }
}

/// Everything kiln wrote in the project's state folder (build records, deployments).
fn recorded(b: &Build) -> Vec<std::path::PathBuf> {
    walkdir(b.state_dir())
}

const BUILDSPEC: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n";

#[test]
fn building_a_missing_folder_is_exit_2_and_records_nothing() {
    let b = Build::new();
    let missing = b.path().join("nope");
    let out = b.kiln().arg("build").arg(&missing).output().unwrap();
    Said::of(out).no_such_file(&missing);
    assert_eq!(recorded(&b), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_missing_secrets_file_is_exit_2_and_records_nothing() {
    let b = Build::new().buildspec(BUILDSPEC);
    let missing = b.path().join("nope.env");
    let out = b
        .kiln()
        .arg("build")
        .arg(b.path())
        .arg("--secrets")
        .arg(&missing)
        .output()
        .unwrap();
    Said::of(out).no_such_file(&missing);
    assert_eq!(recorded(&b), Vec::<std::path::PathBuf>::new());
}

#[test]
fn deploying_a_missing_revision_file_is_exit_2_and_records_no_deployment() {
    let b = Build::new();
    let missing = b.path().join("nope.zip");
    let out = b
        .kiln()
        .arg("deploy")
        .arg(&missing)
        .args(["--group", "web"])
        .output()
        .unwrap();
    Said::of(out).no_such_file(&missing);
    assert_eq!(recorded(&b), Vec::<std::path::PathBuf>::new());
    let listed = b.kiln().args(["deployments", "--json"]).output().unwrap();
    assert_eq!(Said::of(listed).stdout.trim(), "[]");
}

#[test]
fn validating_a_missing_file_is_exit_2() {
    let b = Build::new();
    let missing = b.path().join("nope.yml");
    let out = b.kiln().arg("validate").arg(&missing).output().unwrap();
    Said::of(out).no_such_file(&missing);
}

#[test]
fn packaging_a_missing_folder_is_exit_2_and_writes_nothing() {
    let b = Build::new();
    let missing = b.path().join("nope");
    let revision = b.path().join("app.zip");
    let out = b
        .kiln()
        .arg("package")
        .arg(&missing)
        .arg("-o")
        .arg(&revision)
        .output()
        .unwrap();
    Said::of(out).no_such_file(&missing);
    assert!(!revision.exists());
}

#[test]
fn pushing_a_missing_revision_file_is_exit_2() {
    let b = Build::new();
    let missing = b.path().join("nope.zip");
    let store = format!("file://{}/store/app.zip", b.path().display());
    let out = b
        .kiln()
        .arg("push")
        .arg(&missing)
        .arg(&store)
        .output()
        .unwrap();
    Said::of(out).no_such_file(&missing);
    assert!(!b.path().join("store").exists());
}

#[test]
fn an_invalid_appspec_to_package_has_one_error_prefix() {
    let b = Build::new().write("app/appspec.yml", "version: 0.0\nos: [linux\n");
    let out = b
        .kiln()
        .arg("package")
        .arg(b.path().join("app"))
        .arg("-o")
        .arg(b.path().join("app.zip"))
        .output()
        .unwrap();
    let said = Said::of(out);
    said.one_error(2);
    assert!(said.stderr.contains("appspec.yml:2:10"), "{}", said.stderr);
    assert!(said.stderr.contains("not valid YAML"), "{}", said.stderr);
}

#[test]
fn an_invalid_buildspec_to_build_has_one_error_prefix() {
    let b = Build::new().buildspec("version: 0.2\nphases:\n  build:\n    commands: [echo a\n");
    let out = b.kiln().arg("build").arg(b.path()).output().unwrap();
    let said = Said::of(out);
    said.one_error(2);
    assert!(
        said.stderr.contains("buildspec.yml:4:21"),
        "{}",
        said.stderr
    );
    assert!(
        said.stderr.contains("    commands: [echo a"),
        "{}",
        said.stderr
    );
    assert_eq!(recorded(&b), Vec::<std::path::PathBuf>::new());
}

#[test]
fn an_invalid_appspec_in_a_deployed_revision_has_no_doubled_prefix() {
    let b = Build::new().write("app/appspec.yml", "version: 0.0\nos: [linux\n");
    let revision = b.path().join("app.zip");
    let packaged = b
        .kiln()
        .arg("package")
        .arg(b.path().join("app"))
        .arg("--no-appspec")
        .arg("-o")
        .arg(&revision)
        .output()
        .unwrap();
    assert!(packaged.status.success());
    let out = b
        .kiln()
        .arg("deploy")
        .arg(&revision)
        .args(["--group", "web"])
        .output()
        .unwrap();
    let said = Said::of(out);
    // Refused before any event, as bad input.
    assert_eq!(said.code, Some(2), "{}", said.stderr);
    assert!(said.stderr.contains("not valid YAML"), "{}", said.stderr);
    for line in said.stderr.lines() {
        assert!(
            line.matches("error:").count() <= 1 && !line.contains(": error:"),
            "a doubled prefix: {line}\n{}",
            said.stderr
        );
    }
}

#[test]
fn rolling_back_with_nothing_to_go_back_to_is_bad_usage() {
    let b = Build::new();
    let out = b
        .kiln()
        .args(["rollback", "--group", "web"])
        .output()
        .unwrap();
    let said = Said::of(out);
    said.one_error(2);
    assert!(said.stderr.contains("no earlier successful deployment"));
}

/// `kiln ARGS` with this project's folders and no KILN_LOG of the caller's.
fn said(b: &Build, args: &[&str]) -> Said {
    Said::of(b.kiln().args(args).env_remove("KILN_LOG").output().unwrap())
}

#[test]
fn verbose_logs_debug_lines_before_or_after_any_command() {
    let b = Build::new().buildspec(BUILDSPEC);
    let spec = b.path().join("buildspec.yml");
    let spec = spec.to_str().unwrap();
    for args in [
        &["-v", "validate", spec][..],
        &["validate", spec, "--verbose"],
        &["deployments", "-v"],
        &["-v", "cache", "stats"],
        &["plugin", "list", "-v"],
    ] {
        let out = said(&b, args);
        assert_eq!(out.code, Some(0), "kiln {args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("DEBUG") && out.stderr.contains("state dir"),
            "kiln {args:?} should log debug lines:\n{}",
            out.stderr
        );
    }
    let quiet = said(&b, &["validate", spec]);
    assert!(!quiet.stderr.contains("DEBUG"), "{}", quiet.stderr);
}

#[test]
fn verbose_builds_show_the_plugins_debug_lines() {
    let b = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi > a.txt\nartifacts:\n  files:\n    - a.txt\n",
        )
        .env("KILN_LOG", "");
    let plain = b.run_with(&["--no-cache"]);
    plain.success().log_lacks("collected 1 file");
    let verbose = b.run_with(&["--no-cache", "-v"]);
    verbose
        .success()
        .log_has("collected 1 file")
        .log_has("DEBUG");
}

/// What bash's completion offers for the words typed so far, with kiln's script loaded.
fn bash_completes(script: &Path, words: &[&str]) -> String {
    let line = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _kiln kiln '{}' '{}'; echo \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &line])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn bash_completion_is_valid_bash_and_completes_commands_and_flags() {
    let b = Build::new();
    let out = said(&b, &["completions", "bash"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for command in [
        "build",
        "deploy",
        "package",
        "validate",
        "completions",
        "man",
    ] {
        assert!(
            out.stdout.contains(&format!(" {command} ")),
            "the script should offer `{command}`"
        );
    }
    let script = b.path().join("kiln.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "bash -n refused the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(
        bash_completes(&script, &["kiln", "dep"]),
        "deploy deployments"
    );
    assert_eq!(
        bash_completes(&script, &["kiln", "build", "--explain"]),
        "--explain-cache"
    );
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    let b = Build::new();
    let zsh = said(&b, &["completions", "zsh"]);
    assert_eq!(zsh.code, Some(0), "{}", zsh.stderr);
    assert!(zsh.stdout.starts_with("#compdef kiln"), "{}", zsh.stdout);
    let fish = said(&b, &["completions", "fish"]);
    assert_eq!(fish.code, Some(0), "{}", fish.stderr);
    for command in ["build", "deploy", "rollback"] {
        assert!(
            zsh.stdout.contains(&format!("'{command}:")),
            "zsh: {command}"
        );
        assert!(
            fish.stdout.contains(&format!("-a \"{command}\"")),
            "fish: {command}"
        );
    }
    let unknown = said(&b, &["completions", "tcsh"]);
    assert_eq!(unknown.code, Some(2));
}

/// The page without roff's preamble (the `.ie`/`.el` lines that define the apostrophe string).
fn man_page(b: &Build, args: &[&str]) -> String {
    let out = said(b, &[&["man"][..], args].concat());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
        .lines()
        .skip_while(|l| l.starts_with(".ie ") || l.starts_with(".el "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_man_page_is_roff_and_names_every_command() {
    let b = Build::new();
    let page = man_page(&b, &[]);
    assert!(page.starts_with(".TH kiln 1 "), "{page}");
    for command in [
        "build",
        "deploy",
        "package",
        "push",
        "pull",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("kiln\\-{command}(1)")),
            "kiln(1) should name kiln-{command}(1)"
        );
    }
    assert!(page.contains("Exit codes"));
    let build = man_page(&b, &["build"]);
    assert!(build.starts_with(".TH kiln-build 1 "), "{build}");
    assert!(build.contains("\\-\\-explain\\-cache"), "{build}");
    assert!(
        build.contains("\\-\\-state\\-dir"),
        "the global flags: {build}"
    );
    let unknown = said(&b, &["man", "nope"]);
    assert_eq!(unknown.code, Some(2));
    // Where groff is installed, it reads the page without a warning.
    let groff = std::process::Command::new("groff")
        .args(["-man", "-Tascii", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    if let Ok(mut groff) = groff {
        use std::io::Write;
        groff
            .stdin
            .take()
            .unwrap()
            .write_all(said(&b, &["man"]).stdout.as_bytes())
            .unwrap();
        let out = groff.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {out:?}"
        );
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let head = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(head) = head else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds kiln from a git checkout"
        );
        eprintln!("SKIPPED version_names_the_commit_it_was_built_from: not a git checkout");
        return;
    };
    let out = said(&Build::new(), &["--version"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let version = out.stdout.trim();
    let commit = version
        .strip_prefix(&format!("kiln {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{version}` is not `kiln VERSION (COMMIT)`"));
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(
        hash.len() >= 7 && head.starts_with(hash),
        "`{version}` should name HEAD, {head}"
    );
}

#[test]
fn a_size_too_large_is_refused_not_wrapped() {
    let b = Build::new();
    // 2^34 G is 2^64 bytes: shifted, it would wrap to 0 and prune the whole cache.
    let out = said(&b, &["cache", "prune", "--max-size", "17179869184G"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("too large"), "{}", out.stderr);
    assert!(!out.stdout.contains("removed"), "{}", out.stdout);
}

#[test]
fn init_writes_a_buildspec_for_the_project_it_finds_and_keeps_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name":"web","scripts":{"build":"mkdir -p dist && echo built > dist/index.html"}}"#,
    )
    .unwrap();
    let init = |extra: &[&str]| {
        kiln()
            .arg("init")
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&["--deploy"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("an npm project"));
    let spec = std::fs::read_to_string(dir.path().join("buildspec.yml")).unwrap();
    assert!(
        spec.contains("npm install") && spec.contains("base-directory: dist"),
        "{spec}"
    );
    // What it wrote is valid for kiln (and for CodeBuild's schema kiln checks).
    for file in ["buildspec.yml", "appspec.yml"] {
        let v = kiln()
            .arg("validate")
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        assert_eq!(
            v.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let start = std::fs::metadata(dir.path().join("scripts/start.sh")).unwrap();
    assert_eq!(start.permissions().mode() & 0o111, 0o111);
    // A buildspec that exists is left alone unless --force.
    std::fs::write(dir.path().join("buildspec.yml"), "mine\n").unwrap();
    let again = init(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("buildspec.yml")).unwrap(),
        "mine\n"
    );
    // With a lock file, `npm ci` installs exactly it.
    std::fs::write(dir.path().join("package-lock.json"), "{}").unwrap();
    assert_eq!(init(&["--force"]).status.code(), Some(0));
    assert!(
        std::fs::read_to_string(dir.path().join("buildspec.yml"))
            .unwrap()
            .contains("npm ci")
    );
}
