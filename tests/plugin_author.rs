//! The plugin author's path: `kiln plugin new` scaffolds a crate that builds on its own and whose
//! tests run the component through kiln; `kiln plugin run` runs one step as a build would and shows
//! its outcome.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{kiln, probe_plugin};

/// The probe plugin under a file name of its own (`probe.wasm`), in `dir`.
fn probe_in(dir: &Path) -> PathBuf {
    let file = dir.join("probe.wasm");
    std::fs::copy(probe_plugin(), &file).unwrap();
    file
}

/// `kiln plugin run PLUGIN --dir DIR OPTIONS -- ARGS`.
fn plugin_run(plugin: &Path, dir: &Path, options: &[&str], args: &[&str]) -> Output {
    kiln()
        .args(["plugin", "run"])
        .arg(plugin)
        .arg("--dir")
        .arg(dir)
        .args(options)
        .arg("--")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn a_scaffolded_plugin_builds_outside_the_repository_offline_and_its_tests_pass() {
    // Outside the repository: the system's temp folder, not CARGO_TARGET_TMPDIR.
    let work = tempfile::Builder::new()
        .prefix("kiln-plugin-new")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    assert!(!work.path().starts_with(env!("CARGO_MANIFEST_DIR")));
    let data = work.path().join("data");
    let out = kiln()
        .current_dir(work.path())
        .env("XDG_DATA_HOME", &data)
        .args(["plugin", "new", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let crate_dir = work.path().join("hello");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/plugin.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&data.join("kiln/sdk").to_string_lossy().into_owned()),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    for step in [
        "kiln plugin run",
        "kiln plugin push",
        "kiln plugin add",
        "cargo test",
    ] {
        assert!(readme.contains(step), "{step}");
    }

    // Host builds of the test are kept between runs; the component is built by the harness into
    // the crate's own target folder.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-author-target");
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(&crate_dir)
        .args(["test", "--offline"])
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_CACHE_DIR", crate::support::shared_cache())
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("test greets_and_sets_greeted ... ok"), "{log}");
    assert!(log.contains("test nobody_fails_the_step ... ok"), "{log}");
    assert!(
        log.contains("test records_the_revision_git_gives ... ok"),
        "{log}"
    );
}

#[test]
fn plugin_new_refuses_bad_names_and_a_folder_in_use() {
    let work = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        kiln()
            .current_dir(work.path())
            .env("XDG_DATA_HOME", work.path().join("data"))
            .args(["plugin", "new"])
            .args(args)
            .output()
            .unwrap()
    };
    for (name, why) in [
        ("Hello", "is not a plugin name"),
        ("a/b", "is not a plugin name"),
        ("echo", "shell builtin"),
        ("cd", "shell builtin"),
        ("shell", "kiln's own"),
        ("artifacts", "kiln's own"),
    ] {
        let out = new(&[name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(why), "{name}: {}", text(&out));
    }
    std::fs::create_dir(work.path().join("used")).unwrap();
    std::fs::write(work.path().join("used/x"), "").unwrap();
    let out = new(&["fine", "--path", "used"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    assert!(!work.path().join("used/Cargo.toml").exists());
}

#[test]
fn plugin_run_names_the_plugin_by_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let out = plugin_run(&probe, dir.path(), &[], &["nonsense"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("probe failed with status 2"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("plugin failed"), "{}", text(&out));
}

#[test]
fn plugin_run_gives_a_builds_basic_environment_and_what_e_adds() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let var = |name: &str, options: &[&str]| {
        let out = kiln()
            .env("KILN_TEST_SECRET", "hunter2")
            .args(["plugin", "run"])
            .arg(&probe)
            .arg("--dir")
            .arg(dir.path())
            .arg("--json")
            .args(options)
            .args(["--", "env", name])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        json(&out)["log"][0]["line"].as_str().unwrap().to_string()
    };
    // kiln's own environment stays out.
    assert_eq!(var("KILN_TEST_SECRET", &[]), "KILN_TEST_SECRET=");
    assert_eq!(
        var("KILN_TEST_SECRET", &["-e", "KILN_TEST_SECRET"]),
        "KILN_TEST_SECRET=hunter2"
    );
    assert_eq!(var("GREETING", &["-e", "GREETING=hi"]), "GREETING=hi");
    assert!(var("PATH", &[]).len() > "PATH=".len());
    let src = dir.path().canonicalize().unwrap();
    assert_eq!(
        var("CODEBUILD_SRC_DIR", &[]),
        format!("CODEBUILD_SRC_DIR={}", src.display())
    );
    assert!(var("CODEBUILD_BUILD_ID", &[]).starts_with("CODEBUILD_BUILD_ID=plugin-run"));
    assert!(var("TMPDIR", &[]).len() > "TMPDIR=".len());
}

#[test]
fn plugin_run_takes_the_phase() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let out = plugin_run(&probe, dir.path(), &["--phase", "post_build"], &["args"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = plugin_run(&probe, dir.path(), &["--phase", "LUNCH"], &["args"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a phase"), "{}", text(&out));
}

#[test]
fn plugin_run_reads_relative_paths_from_the_step_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/note.txt"), "in sub").unwrap();
    let out = plugin_run(
        &probe,
        dir.path(),
        &["--cwd", "sub", "--json"],
        &["read", "note.txt"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["log"][0]["line"], "read note.txt: in sub");
}

#[test]
fn plugin_run_refuses_bad_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let answers = dir.path().join("answers.json");
    std::fs::write(&answers, "{\"argv\": 1}").unwrap();
    for (options, why) in [
        (
            vec!["--cwd", "../.."],
            "is not a directory inside --dir".to_string(),
        ),
        (vec!["--cwd", "missing"], "--cwd missing".to_string()),
        (vec!["-e", "1X=2"], "is not a variable name".to_string()),
        (
            vec!["--exec-answers", answers.to_str().unwrap()],
            "expected a JSON list".to_string(),
        ),
    ] {
        let out = plugin_run(&probe, dir.path(), &options, &["args"]);
        assert_eq!(out.status.code(), Some(2), "{options:?}: {}", text(&out));
        assert!(text(&out).contains(&why), "{options:?}: {}", text(&out));
    }
    let out = kiln()
        .args(["plugin", "run", "no-such-plugin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no plugin named `no-such-plugin`"),
        "{}",
        text(&out)
    );
}

#[test]
fn plugin_run_allows_exec_as_builds_do_unless_no_exec() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let out = plugin_run(&probe, dir.path(), &[], &["exec", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = plugin_run(&probe, dir.path(), &["--no-exec"], &["exec", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not allow running host programs"),
        "{}",
        text(&out)
    );
}

#[test]
fn plugin_run_shows_debug_lines_only_when_verbose() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let staging = dir.path().join("stage");
    std::fs::create_dir(&staging).unwrap();
    let run = |verbose: bool| {
        let mut command = kiln();
        command
            .args(["plugin", "run", "artifacts", "--dir"])
            .arg(dir.path());
        if verbose {
            command.arg("--verbose");
        }
        let _ = std::fs::remove_dir_all(staging.join("files"));
        let out = command
            .args(["--", "--shell", "sh", "--staging"])
            .arg(&staging)
            .args(["--name", "x", "--", "a.txt"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    assert!(!run(false).contains("collected 1 file(s)"));
    assert!(run(true).contains("artifacts: debug: collected 1 file(s)"));
}

#[test]
fn plugin_run_json_is_one_object_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let out = plugin_run(&probe, dir.path(), &["--json"], &["args", "a b", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let value = json(&out);
    assert_eq!(value["plugin"], "probe");
    assert_eq!(value["status"], 0);
    assert_eq!(value["message"], Value::Null);
    assert_eq!(value["env"], serde_json::json!([]));
    assert_eq!(value["cwd"], Value::Null);
    assert_eq!(
        value["log"],
        serde_json::json!([{"level": "info", "line": "args: a b|c"}])
    );
    let out = plugin_run(&probe, dir.path(), &["--json"], &["nonsense"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let value = json(&out);
    assert_eq!(value["status"], 2);
    assert_eq!(value["message"], "probe does not know `nonsense`");
}

#[test]
fn plugin_run_shows_env_changes_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let sub = dir.path().canonicalize().unwrap().join("sub");
    for (args, shown) in [
        (
            vec!["set", "GREETED", "you"],
            "  set GREETED=you".to_string(),
        ),
        (vec!["unset", "HOME"], "  unset HOME".to_string()),
        (vec!["cd", "sub"], format!("  cwd {}", sub.display())),
    ] {
        let out = plugin_run(&probe, dir.path(), &[], &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&shown),
            "{args:?}: {}",
            text(&out)
        );
    }
    let out = plugin_run(&probe, dir.path(), &["--json"], &["set", "K", "v"]);
    assert_eq!(json(&out)["env"], serde_json::json!([{"set": ["K", "v"]}]));
    let out = plugin_run(&probe, dir.path(), &["--json"], &["unset", "K"]);
    assert_eq!(json(&out)["env"], serde_json::json!([{"unset": "K"}]));
    let out = plugin_run(&probe, dir.path(), &["--json"], &["cd", "sub"]);
    assert_eq!(json(&out)["cwd"], sub.to_string_lossy().as_ref());
}

#[test]
fn plugin_run_answers_exec_calls_from_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_in(dir.path());
    let answers = dir.path().join("answers.json");
    std::fs::write(
        &answers,
        r#"[{"argv": ["git", "rev-parse", "HEAD"], "stdout": "abc\n", "stderr": "", "code": 0},
            {"argv": ["false"], "stdout": "", "stderr": "no\n", "code": 3}]"#,
    )
    .unwrap();
    let answers = answers.to_str().unwrap();
    let out = plugin_run(
        &probe,
        dir.path(),
        &["--exec-answers", answers, "--json"],
        &["exec", "git", "rev-parse", "HEAD"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        json(&out)["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "abc"),
        "{}",
        text(&out)
    );
    let out = plugin_run(
        &probe,
        dir.path(),
        &["--exec-answers", answers],
        &["exec", "false"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("status 3"), "{}", text(&out));
}

/// The Python scaffold. componentize-py comes from PyPI, which the tests do not reach: a stand-in
/// takes its place and copies a component kiln-sdk built where it was asked to write one; the rest
/// of build.sh, `kiln plugin declare`, runs for real.
#[test]
fn a_python_scaffold_has_the_wit_a_build_script_and_a_test_and_its_build_declares_git() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("greet");
    let out = kiln()
        .args(["plugin", "new", "greet", "--lang", "python", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("./build.sh && python3 -m unittest"),
        "{}",
        text(&out)
    );
    // The WIT it builds against is the one kiln speaks.
    assert_eq!(
        std::fs::read_to_string(dir.join("wit/plugin.wit")).unwrap(),
        include_str!("../sdk/wit/plugin.wit")
    );
    for file in ["app.py", "test_plugin.py"] {
        let parsed = std::process::Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(parsed.status.success(), "{file}: {}", text(&parsed));
    }
    let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
    assert!(app.contains("class Entry(exports.Entry)"), "{app}");
    let build = dir.join("build.sh");
    assert_eq!(
        std::fs::metadata(&build).unwrap().permissions().mode() & 0o111,
        0o111
    );

    let stand_in = work.path().join("componentize-py");
    let called = work.path().join("called");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\necho \"$*\" > '{}'\nfor last; do :; done\ncp '{}' \"$last\"\n",
            called.display(),
            probe_plugin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&build)
        .env("COMPONENTIZE_PY", &stand_in)
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&called).unwrap().trim(),
        "-d wit -w plugin componentize app -o greet.wasm"
    );
    assert!(text(&out).contains("declares exec: git"), "{}", text(&out));
    // What it declares travels with it: pushed and pulled, it asks for git.
    let store = work.path().join("store");
    let reference = format!("file://{}/greet:0.1.0", store.display());
    let pushed = kiln()
        .args(["plugin", "push"])
        .arg(dir.join("greet.wasm"))
        .arg(&reference)
        .output()
        .unwrap();
    assert_eq!(pushed.status.code(), Some(0), "{}", text(&pushed));
    let pulled = kiln()
        .args(["plugin", "pull", &reference, "--json"])
        .output()
        .unwrap();
    let pulled = json(&pulled);
    assert_eq!(pulled["declared"]["exec"], serde_json::json!(["git"]));
    assert_eq!(
        pulled["annotations"]["org.opencontainers.image.description"],
        "Greets, and records the source's git revision"
    );
}
