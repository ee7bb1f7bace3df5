//! A build's plugins: commands on the build's PATH (after `cd`, in pipes, with the shell's quoting),
//! the session-changing form and its env set/unset semantics, the checks made before
//! DOWNLOAD_SOURCE, a plugin built with SDK 0.1.0, and registry plugins pinned by kiln.lock and
//! confined to what they declare and the lock grants, against the real test registry.

use std::path::{Path, PathBuf};

use crate::support::services::Service;
use crate::support::{Build, build_commands, kiln, probe_plugin};

/// The probe plugin registered under its name.
fn probe() -> String {
    format!("probe={}", probe_plugin())
}

/// The probe built with kiln-sdk 0.1.0 (kept unchanged in the fixtures).
fn probe_010() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plugins/probe-0.1.0.wasm")
}

/// `component` with one more custom section, written to `into`: what a plugin says about itself,
/// rewritten by the test.
fn with_section(component: &Path, name: &str, text: &str, into: &Path) -> PathBuf {
    let bytes = crate::support::with_custom_section(&std::fs::read(component).unwrap(), name, text);
    std::fs::write(into, bytes).unwrap();
    into.to_path_buf()
}

#[test]
fn a_plugin_is_a_command_after_cd_in_a_pipe_and_in_a_list() {
    Build::new()
        .buildspec(&build_commands(&[
            "mkdir sub",
            "cd sub && probe write here.txt written-$((1+1))",
            "cat here.txt && echo",
            "probe print hello plugin world | tr a-z A-Z",
            "probe no-such-thing || echo \"status=$?\"",
            "sh -c 'probe print from a scr\"\"ipt'",
            "probe log info said-once && probe log warn careful",
        ]))
        .args(["--plugin", &probe()])
        .run()
        .success()
        .log_has("written-2")
        .log_has("HELLO PLUGIN WORLD")
        .log_has("status=2")
        .log_has("from a script")
        // A plugin's log lines read as in a step: named once, warnings marked.
        .log_has("\nprobe: said-once")
        .log_has("warning: probe: careful")
        .log_lacks("probe: probe:");
}

/// A dependency's install script must not swap a plugin the build relies on (a checksum, a
/// signature check) for a program that always agrees: the shims and their specs are read-only.
#[test]
fn a_command_cannot_replace_a_plugins_shim_spec_or_component() {
    let at = |file: &str| format!("\"$(dirname \"$(command -v probe)\")/{file}\"");
    Build::new()
        .buildspec(&build_commands(&[
            &format!(
                "cp /bin/true {} && echo shim-replaced || echo shim-kept",
                at("probe")
            ),
            &format!(
                "echo '{{}}' > {} && echo spec-replaced || echo spec-kept",
                at("plugins/probe.json")
            ),
            &format!(
                "ln -sf /bin/true {} && echo component-replaced || echo component-kept",
                at("plugins/probe.wasm")
            ),
            &format!(
                "mv {} /tmp/moved && echo folder-moved || echo folder-kept",
                at("plugins")
            ),
            "probe print still the plugin | cat",
        ]))
        .args(["--plugin", &probe()])
        .run()
        .success()
        .log_has("shim-kept")
        .log_has("spec-kept")
        .log_has("component-kept")
        .log_has("folder-kept")
        .log_lacks("\nshim-replaced")
        .log_lacks("\nspec-replaced")
        .log_lacks("\ncomponent-replaced")
        .log_lacks("\nfolder-moved")
        .log_has("\nstill the plugin");
}

#[test]
fn a_plugin_reads_the_shells_stdin_and_its_status_is_the_shells() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "printf 'line one\\nline two\\n' | probe cat > copied.txt",
            "wc -l < copied.txt",
            "if probe no-such-thing; then echo wr\"\"ong; else echo \"failed as\" expected; fi",
        ]))
        .args(["--plugin", &probe()])
        .run();
    run.success()
        .log_has("failed as expected")
        .log_lacks("wrong");
    assert!(
        run.output_lines().contains(&"2"),
        "{:?}",
        run.output_lines()
    );
}

#[test]
fn the_words_of_a_plugin_line_are_the_shells_quoting_globbing_and_expansion() {
    Build::new()
        .write("a.txt", "")
        .write("b.txt", "")
        .buildspec(&build_commands(&[
            "export WHO=world",
            "probe args '$HOME' \"$WHO\" *.txt $(echo sub) \"two words\" plain",
        ]))
        .args(["--plugin", &probe()])
        .run()
        .success()
        .log_has("args: $HOME|world|a.txt|b.txt|sub|two words|plain");
}

#[test]
fn a_plugin_changes_variables_one_by_one_and_never_replaces_the_session() {
    Build::new()
        .buildspec(&build_commands(&[
            "export KEEP=kept DROP=dropped",
            "probe set ONLY 1",
            "probe unset DROP",
            "probe set CODEBUILD_SRC_DIR /etc",
            "echo \"only=$ONLY keep=$KEEP drop=${DROP-unset} home=${HOME:+set} src=$CODEBUILD_SRC_DIR\"",
        ]))
        .args(["--plugin", &probe()])
        .run()
        .success()
        .log_has("only=1 keep=kept drop=unset home=set src=/")
        .log_lacks("src=/etc")
        .log_has("tried to change CODEBUILD_SRC_DIR");
}

#[test]
fn a_plugin_moves_the_session_only_into_a_directory_of_the_step() {
    Build::new()
        .buildspec(&build_commands(&["mkdir -p d/e", "probe cd d/e", "pwd"]))
        .args(["--plugin", &probe()])
        .run()
        .success()
        .log_has("/d/e");
    Build::new()
        .buildspec(&build_commands(&["probe cd /etc", "echo after-cd"]))
        .args(["--plugin", &probe()])
        .run()
        .failure()
        .log_has("/etc")
        .log_lacks("after-cd");
}

#[test]
fn a_plugin_built_for_another_interface_fails_the_build_before_any_phase() {
    let dir = tempfile::tempdir().unwrap();
    let future = with_section(
        Path::new(probe_plugin()),
        "kiln:api-version",
        "0.2.0",
        &dir.path().join("future.wasm"),
    );
    let build = Build::new()
        .buildspec(&build_commands(&["touch ran", "future args x"]))
        .args(["--plugin", &format!("future={}", future.display())]);
    let run = build.run();
    assert_ne!(run.code, Some(0));
    assert!(!build.path().join("ran").exists());
    let text = &run.stderr;
    assert!(text.contains("future"), "{text}");
    assert!(text.contains("0.2.0"), "{text}");
    assert!(!text.contains("Entering phase DOWNLOAD_SOURCE"), "{text}");
}

#[test]
fn a_plugin_may_not_shadow_a_shell_builtin_or_kilns_own() {
    for (name, why) in [
        ("echo", "shell builtin"),
        ("cd", "shell builtin"),
        ("shell", "kiln's own"),
    ] {
        let build = Build::new()
            .buildspec(&build_commands(&["touch ran"]))
            .args(["--plugin", &format!("{name}={}", probe_plugin())]);
        let run = build.run();
        assert_ne!(run.code, Some(0));
        assert!(run.stderr.contains(why), "{name}: {}", run.stderr);
        assert!(!build.path().join("ran").exists());
    }
}

#[test]
fn a_plugin_built_with_sdk_0_1_0_still_runs_in_both_forms() {
    Build::new()
        .buildspec(&build_commands(&[
            "old args a 'b c'",
            "mkdir sub && cd sub && old env CODEBUILD_SRC_DIR",
        ]))
        .args(["--plugin", &format!("old={}", probe_010().display())])
        .run()
        .success()
        .log_has("args: a|b c")
        .log_has("CODEBUILD_SRC_DIR=/");
}

/// A project whose plugins come from the test registry.
struct Registry {
    service: Service,
    project: Build,
}

impl Registry {
    fn start() -> Option<Self> {
        Some(Self {
            service: Service::registry(None)?,
            project: Build::new().fresh_cache(),
        })
    }

    /// Builds the project with this buildspec.
    fn build(&self, spec: &str) -> crate::support::Run {
        std::fs::write(self.project.path().join("buildspec.yml"), spec).unwrap();
        self.project.run()
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("oci://{}/{repo}:{tag}", self.service.address)
    }

    /// `kiln plugin …` in the project's folder with its cache, no Docker config of the user's.
    fn plugin(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .project
            .kiln()
            .arg("plugin")
            .args(args)
            .current_dir(self.project.path())
            .env("DOCKER_CONFIG", "/nonexistent-kiln-test")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.plugin(args);
        assert_eq!(code, 0, "kiln plugin {args:?}: {out}{err}");
        format!("{out}{err}")
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.project.path().join("kiln.lock")).unwrap_or_default()
    }
}

#[test]
fn a_registry_plugin_is_pushed_added_locked_and_run_by_name_with_nothing_compiled_in_the_build() {
    let Some(r) = Registry::start() else { return };
    let reference = r.reference("acme/probe", "1.0.0");
    r.ok(&["push", probe_plugin(), &reference]);
    r.ok(&["add", "probe", &reference]);
    let toml = std::fs::read_to_string(r.project.path().join("kiln.toml")).unwrap();
    assert!(toml.contains(&reference), "{toml}");
    let lock = r.lock();
    assert!(lock.contains("sha256:"), "{lock}");
    // The project's cache was empty before `add`, which pulled and compiled the plugin: the build
    // compiles nothing.
    let run = r.build(&build_commands(&[
        "probe args by name",
        "mkdir sub && cd sub && probe print from the pa\"\"th",
    ]));
    run.success()
        .log_has("args: by|name")
        .log_has("from the path")
        .log_has("Plugin probe: oci://")
        .log_has("loaded compiled")
        .log_lacks("compiled in");
}

#[test]
fn a_retagged_upstream_changes_nothing_until_update_and_a_tampered_blob_is_refused() {
    let Some(r) = Registry::start() else { return };
    let reference = r.reference("acme/probe", "1.0.0");
    r.ok(&["push", probe_plugin(), &reference]);
    r.ok(&["add", "probe", &reference]);
    let pinned = r.lock();
    // Upstream moves the tag to another component: the lock, and so the build, do not follow.
    r.ok(&["push", probe_010().to_str().unwrap(), &reference]);
    let spec = build_commands(&["probe args still"]);
    let run = r.build(&spec);
    run.success().log_has("args: still");
    assert_eq!(r.lock(), pinned);
    let layer = layer_of(&pinned);
    run.log_has(&layer);
    r.ok(&["update", "probe"]);
    assert_ne!(r.lock(), pinned, "update re-pins the moved tag");
    r.build(&spec).success().log_lacks(&layer);
    // A blob changed in the cache after it was pulled is refused before it is compiled.
    let blake3 = field(&r.lock(), "blake3");
    let blob = r
        .project
        .cache_dir()
        .join("cas/blobs")
        .join(&blake3[..2])
        .join(&blake3[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let run = r.build(&spec);
    run.code(7);
    assert!(run.stderr.contains("kiln.lock pinned"), "{}", run.stderr);
    assert!(run.stderr.contains("not compiled"), "{}", run.stderr);
    assert!(!run.stderr.contains("args: still"), "{}", run.stderr);
}

#[test]
fn a_registry_plugin_gets_only_what_it_declares_and_the_lock_grants_and_a_refusal_names_who() {
    let Some(r) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let declaring = with_section(
        Path::new(probe_plugin()),
        "kiln:capabilities",
        "exec sh\nenv TOKEN\n",
        &dir.path().join("declaring.wasm"),
    );
    let reference = r.reference("acme/declaring", "1.0.0");
    r.ok(&["push", declaring.to_str().unwrap(), &reference]);
    // Added without --accept: the request is printed, nothing is granted.
    let said = r.ok(&["add", "probe", &reference]);
    assert!(said.contains("exec: sh"), "{said}");
    let spec = build_commands(&[
        "export TOKEN=\"t0k\"\"3n\" OTHER=\"oth\"\"er\"",
        "probe exec sh -c 'echo ran-\"sh\"' || echo refused-sh",
        "probe exec ls || echo refused-ls",
        "probe env TOKEN",
        "probe env OTHER",
    ]);
    let run = r.build(&spec);
    run.success()
        .log_has("refused-sh")
        .log_has("may not run `sh`: kiln.lock does not grant it")
        .log_has("may not run `ls`: the plugin does not declare it")
        .log_lacks("TOKEN=t0k3n")
        .log_lacks("OTHER=other")
        .log_lacks("ran-sh");
    // Granted: what it declares, and still nothing more.
    r.ok(&["add", "probe", &reference, "--accept"]);
    let lock = r.lock();
    assert!(lock.contains("\"sh\""), "{lock}");
    r.build(&spec)
        .success()
        .log_has("ran-sh")
        .log_has("refused-ls")
        .log_has("TOKEN=t0k3n")
        .log_lacks("OTHER=other");
}

/// The first `layer = "sha256:…"` of a lock file.
fn layer_of(lock: &str) -> String {
    field(lock, "layer")
}

fn field(lock: &str, key: &str) -> String {
    lock.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in {lock}"))
}

#[test]
fn plugin_list_shows_what_a_build_would_find_and_remove_and_update_clean_up() {
    let Some(r) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let declaring = with_section(
        Path::new(probe_plugin()),
        "kiln:capabilities",
        "exec b3sum\nexec sh\nwrite /etc/acme\n",
        &dir.path().join("declaring.wasm"),
    );
    let reference = r.reference("acme/declaring", "1.0.0");
    r.ok(&["push", declaring.to_str().unwrap(), &reference]);
    // Asking for a shell is asking for every program: `add` says so, for `sh` and not for `git`.
    let (code, _, err) = r.plugin(&["add", "probe", &reference]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "asks to run `sh`, which can run any program it is told to (a grant names a program, not its arguments): `sh` would be granted by --accept"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "asks to write `/etc/acme`, which holds what every build and user here relies on"
        ),
        "{err}"
    );
    assert!(!err.contains("`b3sum`"), "{err}");
    let toml = r.project.path().join("kiln.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    std::fs::copy(probe_plugin(), r.project.path().join("local.wasm")).unwrap();
    text.push_str(
        "local = \"local.wasm\"  # a local build\nghost = \"oci://127.0.0.1:1/x/ghost:1.0.0\"\nfar = \"../far.wasm\"\n",
    );
    std::fs::write(&toml, &text).unwrap();

    let list = |r: &Registry| -> serde_json::Value {
        let (code, out, err) = r.plugin(&["list", "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let row = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    let v = list(&r);
    assert!(
        v["builtin"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "shell"),
        "{v}"
    );
    let probe = row(&v, "probe");
    assert_eq!(probe["state"], "ready", "{probe}");
    assert_eq!(
        probe["declared"]["exec"],
        serde_json::json!(["b3sum", "sh"])
    );
    assert_eq!(probe["granted"]["exec"], serde_json::json!([]));
    assert_eq!(row(&v, "local")["kind"], "file");
    assert_eq!(row(&v, "local")["state"], "ready");
    // A file outside the project is what a build refuses: list says so.
    let far = row(&v, "far");
    assert_eq!(far["state"], "broken", "{far}");
    assert!(
        far["fix"]
            .as_str()
            .unwrap()
            .contains("builds refuse it unless given `--plugin far="),
        "{far}"
    );
    let ghost = row(&v, "ghost");
    assert_eq!(ghost["state"], "not-locked");
    assert!(
        ghost["fix"]
            .as_str()
            .unwrap()
            .contains("kiln plugin add ghost"),
        "{ghost}"
    );
    let table = r.ok(&["list"]);
    assert!(
        table.contains("probe: asks for exec: b3sum, sh; write: /etc/acme, not granted (kiln plugin update probe --accept grants it)"),
        "{table}"
    );

    // A blob changed in the cache shows as tampered, with the file to delete.
    let blake3 = field(&r.lock(), "blake3");
    let blob = r
        .project
        .cache_dir()
        .join("cas/blobs")
        .join(&blake3[..2])
        .join(&blake3[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let tampered = row(&list(&r), "probe");
    assert_eq!(tampered["state"], "tampered", "{tampered}");
    assert!(
        tampered["fix"]
            .as_str()
            .unwrap()
            .contains(blob.to_str().unwrap()),
        "{tampered}"
    );
    std::fs::remove_file(&blob).unwrap();
    assert_eq!(row(&list(&r), "probe")["state"], "not-cached");

    // `remove` takes ghost out of kiln.toml, every other byte kept.
    r.ok(&["remove", "far"]);
    r.ok(&["remove", "ghost"]);
    let after = std::fs::read_to_string(&toml).unwrap();
    assert_eq!(
        after,
        text.replace(
            "ghost = \"oci://127.0.0.1:1/x/ghost:1.0.0\"\nfar = \"../far.wasm\"\n",
            ""
        )
    );
    let (code, _, err) = r.plugin(&["remove", "ghost"]);
    assert_eq!(code, 2);
    assert!(err.contains("`ghost` is neither in"), "{err}");
    // A name taken out of kiln.toml by hand stays in kiln.lock, ignored, until `update` drops it.
    std::fs::write(
        &toml,
        after.replace(&format!("probe = \"{reference}\"\n"), ""),
    )
    .unwrap();
    assert_eq!(row(&list(&r), "probe")["state"], "lock-only");
    let said = r.ok(&["update"]);
    assert!(
        said.contains("probe: no longer in kiln.toml, taken out of kiln.lock"),
        "{said}"
    );
    assert!(!r.lock().contains("[[plugin]]"), "{}", r.lock());
    // And a plugin added then removed leaves neither file naming it.
    r.ok(&["add", "probe", &reference]);
    r.ok(&["remove", "probe"]);
    assert!(!r.lock().contains("[[plugin]]"), "{}", r.lock());
    let last = std::fs::read_to_string(&toml).unwrap();
    assert!(
        !last.contains(&reference) && !last.contains("probe ="),
        "{last}"
    );
    assert!(last.contains("# a local build"), "{last}");
}

/// A component made by another toolchain carries none of kiln's sections: `kiln plugin declare`
/// writes them, and a registry build then grants what it declares.
#[test]
fn plugin_declare_writes_what_a_component_asks_for_and_a_build_grants_it() {
    let Some(r) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let declared = dir.path().join("declared.wasm");
    let (code, out, err) = r.plugin(&[
        "declare",
        probe_plugin(),
        "-o",
        declared.to_str().unwrap(),
        "--exec",
        "sh",
        "--env",
        "TOKEN",
        "--description",
        "declared by kiln",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("interface 0.1.1, declares exec: sh; env: TOKEN"),
        "{out}"
    );
    assert!(
        err.contains("to run `sh`, which can run any program"),
        "{err}"
    );
    let reference = r.reference("acme/declared", "1.0.0");
    r.ok(&["push", declared.to_str().unwrap(), &reference]);
    let (code, pulled, err) = r.plugin(&["pull", &reference, "--json"]);
    assert_eq!(code, 0, "{err}");
    let pulled: serde_json::Value = serde_json::from_str(&pulled).unwrap();
    assert_eq!(pulled["declared"]["exec"], serde_json::json!(["sh"]));
    assert_eq!(
        pulled["annotations"]["org.opencontainers.image.description"],
        "declared by kiln"
    );
    r.ok(&["add", "probe", &reference, "--accept"]);
    r.build(&build_commands(&[
        "export TOKEN=\"t0k\"\"3n\"",
        "probe exec sh -c 'echo ran-\"sh\"'",
        "probe env TOKEN",
    ]))
    .success()
    .log_has("ran-sh")
    .log_has("TOKEN=t0k3n");

    // Declared again with nothing: it asks for nothing, its description stays.
    let again = r.ok(&["declare", declared.to_str().unwrap()]);
    assert!(again.contains("declares nothing"), "{again}");
    assert!(again.contains("description: declared by kiln"), "{again}");
    // What is not a kiln component is refused, and nothing is written.
    let before = std::fs::read(&declared).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &before[..before.len() / 2]).unwrap();
    let into = dir.path().join("never.wasm");
    for (file, said) in [
        (
            truncated.to_str().unwrap(),
            "not a readable WebAssembly component",
        ),
        ("/bin/sh", "not a WebAssembly file"),
    ] {
        let (code, _, err) = r.plugin(&["declare", file, "-o", into.to_str().unwrap()]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains(said), "{file}: {err}");
        assert!(!into.exists());
    }
    let (code, _, err) = r.plugin(&["declare", declared.to_str().unwrap(), "--write", "relative"]);
    assert_eq!(code, 2);
    assert!(err.contains("must be an absolute directory"), "{err}");
    assert_eq!(std::fs::read(&declared).unwrap(), before);
}

/// Grants belong to where they were given: pointing a name at another repository (another
/// publisher, perhaps) and running `update` must not hand them over.
#[test]
fn update_keeps_grants_only_for_the_same_source_and_checks_names() {
    let Some(r) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let declaring = with_section(
        Path::new(probe_plugin()),
        "kiln:capabilities",
        "exec make\nenv AWS_SECRET_ACCESS_KEY\n",
        &dir.path().join("declaring.wasm"),
    );
    let acme = r.reference("acme/deploy", "1.0.0");
    let mallory = r.reference("mallory/deploy", "1.0.0");
    for reference in [&acme, &mallory] {
        r.ok(&["push", declaring.to_str().unwrap(), reference]);
    }
    r.ok(&["add", "deploy", &acme, "--accept"]);
    assert!(r.lock().contains("AWS_SECRET_ACCESS_KEY"), "{}", r.lock());
    // The same repository at a newer tag keeps them.
    let acme_next = r.reference("acme/deploy", "1.1.0");
    r.ok(&["push", declaring.to_str().unwrap(), &acme_next]);
    let toml = r.project.path().join("kiln.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace(&acme, &acme_next)).unwrap();
    r.ok(&["update", "deploy"]);
    assert!(r.lock().contains("AWS_SECRET_ACCESS_KEY"), "{}", r.lock());
    // Another repository starts from nothing, and says so.
    std::fs::write(&toml, text.replace(&acme, &mallory)).unwrap();
    let said = r.ok(&["update", "deploy"]);
    assert!(said.contains("is another source than"), "{said}");
    assert!(said.contains("its grants start from nothing"), "{said}");
    let lock = r.lock();
    assert!(lock.contains(&mallory), "{lock}");
    assert!(
        !lock.contains("AWS_SECRET_ACCESS_KEY") && !lock.contains("\"make\""),
        "{lock}"
    );
    // A name kiln.toml gives that is no plugin name is refused before the lock is written.
    std::fs::write(&toml, format!("{text}\"a b\" = \"{acme}\"\n")).unwrap();
    let (code, _, err) = r.plugin(&["update"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a b"), "{err}");
    assert_eq!(r.lock(), lock);
}

#[test]
fn a_remote_build_refuses_plugins_rather_than_dropping_them() {
    let run = Build::new()
        .buildspec(&build_commands(&["probe args x"]))
        .args(["--plugin", &probe()])
        .run_with(&[
            "--remote",
            "postgres://kiln@127.0.0.1:1/kiln",
            "--cache",
            "s3://bucket/prefix",
        ]);
    run.code(2);
    assert!(
        run.stderr
            .contains("plugin `probe`: builds on the queue's workers do not take plugins"),
        "{}",
        run.stderr
    );
}

#[test]
fn kiln_plugin_exec_refuses_a_spec_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("x.json");
    std::fs::write(&spec, "{not json").unwrap();
    let out = kiln()
        .args(["plugin", "exec"])
        .arg(&spec)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.json"));
}
