//! Plugins as commands: a command whose first word names a registered plugin runs it inside the
//! sandbox; a third-party plugin built with the SDK runs through `kiln build` and `kiln plugin run`.

use std::path::{Path, PathBuf};

use crate::support::{
    Build, build_commands, empty_plugin, example_plugin, kiln, needs_plugin, probe_0_1_0_plugin,
    probe_plugin,
};

#[test]
fn a_command_naming_a_plugin_runs_the_plugin_with_expanded_arguments() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "export WHO=world",
            "probe args hello \"$WHO\" ${WHO}s 'quoted words'",
        ]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run();
    run.success()
        .log_has("args: hello|world|worlds|quoted words");
}

#[test]
fn a_plugin_sees_the_session_environment() {
    Build::new()
        .buildspec(&build_commands(&["export STAGE=blue", "probe env STAGE"]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run()
        .success()
        .log_has("STAGE=blue");
}

#[test]
fn a_plugin_runs_host_programs_through_exec() {
    Build::new()
        .buildspec(&build_commands(&["probe exec sh -c 'echo via-exec'"]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run()
        .success()
        .log_has("via-exec");
}

#[test]
fn a_program_the_sandbox_cannot_start_is_reported_and_the_sandbox_goes_on() {
    // The launcher's child fails before exec (no such program, a file that is not executable): the
    // reason reaches the plugin, and the sandbox still starts the commands after it.
    for (program, reason) in [
        ("./no-such-program", "`./no-such-program` was not found"),
        ("./plain", "cannot start `./plain`: Permission denied"),
    ] {
        let spec = format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - touch plain\n      \
             - probe exec {program}\n  post_build:\n    commands:\n      - echo still-running\n"
        );
        Build::new()
            .buildspec(&spec)
            .args(["--plugin", &format!("probe={}", probe_plugin())])
            .run()
            .failure()
            .log_has(reason)
            .log_has("still-running");
    }
}

#[test]
fn without_the_plugin_registered_the_word_is_a_shell_command() {
    Build::new()
        .buildspec(&build_commands(&["probe args x"]))
        .run()
        .failure()
        .log_has("probe: not found");
}

#[test]
fn a_third_party_plugin_built_with_the_sdk_runs_in_a_build() {
    let plugin = example_plugin();
    let run = Build::new()
        .write("dist/a.txt", "aaa")
        .write("dist/sub/b.txt", "bb")
        .buildspec(&build_commands(&[
            "manifest dist MANIFEST.txt",
            "cat MANIFEST.txt",
        ]))
        .args(["--plugin", &format!("manifest={}", plugin.display())])
        .run();
    run.success()
        .log_has("manifest: 2 files listed in MANIFEST.txt");
    let lines = run.output_lines();
    assert!(lines.contains(&"3 a.txt"), "{lines:?}");
    assert!(lines.contains(&"2 sub/b.txt"), "{lines:?}");
}

#[test]
fn plugin_run_is_a_test_harness_for_plugin_authors() {
    let plugin = example_plugin();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/x"), "12345").unwrap();
    let out = kiln()
        .args(["plugin", "run"])
        .arg(&plugin)
        .arg("--dir")
        .arg(dir.path())
        .args(["--", "d", "out.txt"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "5 x\n"
    );
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, b"\0asm\x01\0\0\0").unwrap();
    let run = Build::new()
        .buildspec(&build_commands(&["fake run"]))
        .args(["--plugin", &format!("fake={}", fake.display())])
        .run();
    // Refused before any phase, as bad input (exit code 2), saying what the file is.
    run.code(2)
        .log_has("plugin `fake`: a core WebAssembly module, not a component");
}

#[test]
fn plugin_list_names_the_embedded_plugins() {
    let out = kiln().args(["plugin", "list"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let built_in = |name: &str| {
        stdout.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.starts_with(&[name, "kiln", "built", "in"])
                && cells.get(4).is_some_and(|d| d.starts_with("blake3:"))
        })
    };
    assert!(built_in("shell") && built_in("artifacts"), "{stdout}");
}

#[test]
fn files_copy_stays_inside_the_step_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a"), "abc").unwrap();
    std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink(outside.path(), d.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("victim"), d.join("dangling")).unwrap();
    let probe = |args: &[String]| {
        let out = kiln()
            .args(["plugin", "run", crate::support::probe_plugin(), "--dir"])
            .arg(d)
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = |s: &Path| s.to_string_lossy().into_owned();
    // Inside: copied, with its mode.
    let (code, err) = probe(&["copy".into(), p(&d.join("a")), p(&d.join("b"))]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("b")).unwrap(), "abc");
    let mode = std::fs::metadata(d.join("b")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750);
    // Never over an existing file.
    let (code, err) = probe(&["copy".into(), p(&d.join("a")), p(&d.join("b"))]);
    assert_eq!(code, Some(1), "{err}");
    // Outside, by path, through a symlinked folder, through a dangling link, from outside: refused.
    for (from, to) in [
        (d.join("a"), outside.path().join("x")),
        (d.join("a"), d.join("out/x")),
        (d.join("a"), d.join("dangling")),
        (PathBuf::from("/etc/hostname"), d.join("y")),
        (d.join("a"), d.join("../escaped")),
    ] {
        let (code, err) = probe(&["copy".into(), p(&from), p(&to)]);
        assert_eq!(
            code,
            Some(1),
            "{} -> {}: {err}",
            from.display(),
            to.display()
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!d.join("y").exists());
}

#[test]
fn a_plugin_sets_and_unsets_session_variables_and_the_rest_stays() {
    Build::new()
        .buildspec(&build_commands(&[
            "export KEEP=kept",
            "export GONE=here",
            "probe set NEW fresh",
            "probe unset GONE",
            "echo \"new=$NEW gone=${GONE-unset} keep=$KEEP home=${HOME:+set}\"",
        ]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run()
        .success()
        .log_has("new=fresh gone=unset keep=kept home=set");
}

#[test]
fn a_shell_command_that_unsets_a_variable_removes_it_from_the_session() {
    Build::new()
        .buildspec(&build_commands(&[
            "export A=1 B=2",
            "unset A",
            "echo \"a=${A-unset} b=$B\"",
        ]))
        .run()
        .success()
        .log_has("a=unset b=2");
}

#[test]
fn a_plugin_built_with_sdk_0_1_0_still_runs_in_a_build() {
    Build::new()
        .buildspec(&build_commands(&[
            "export X=from-the-session",
            "old args a b",
            "old env X",
        ]))
        .args(["--plugin", &format!("old={}", probe_0_1_0_plugin())])
        .run()
        .success()
        .log_has("args: a|b")
        .log_has("X=from-the-session");
}

#[test]
fn a_plugin_moves_the_session_only_into_the_step_directories() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "mkdir -p sub/inner",
            "probe cd sub/inner",
            "echo \"now in $(basename \"$PWD\")\"",
            "probe cd /etc",
        ]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run();
    run.failure()
        .log_has("now in inner")
        .log_has("/etc, which is outside the step's directories");
}

#[test]
fn a_plugin_that_panics_fails_its_phase_with_the_panic_line() {
    Build::new()
        .buildspec(&build_commands(&["probe panic boom-at-step"]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run()
        .failure()
        .log_has("panicked at ")
        .log_has(": boom-at-step");
}

#[test]
fn a_path_outside_the_step_directories_is_explained() {
    Build::new()
        .buildspec(&build_commands(&["probe read /etc/hostname"]))
        .args(["--plugin", &format!("probe={}", probe_plugin())])
        .run()
        .failure()
        .log_has("(/etc/hostname is outside the step's directories: ");
}

#[test]
fn a_local_plugin_keeps_the_steps_policy_whatever_it_declares() {
    // `needs` declares only `env TOKEN` and `exec sh`: as a local `--plugin` file, it still sees
    // the whole session and runs what the build's policy allows.
    Build::new()
        .buildspec(&build_commands(&[
            "export OTHER=visible",
            "needs env OTHER",
            "needs exec echo ran-echo",
            "empty",
        ]))
        .args(["--plugin", &format!("needs={}", needs_plugin())])
        .args(["--plugin", &format!("empty={}", empty_plugin())])
        .run()
        .success()
        .log_has("OTHER=visible")
        .log_has("stdout: ran-echo");
}
