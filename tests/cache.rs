//! The action cache: an unchanged build is restored, not re-run; every key input invalidates it;
//! the store survives corruption, crashes and pruning.

use std::path::Path;

use crate::support::{Build, Run, kiln};

/// A build that leaves a trace outside its workspace each time a command really runs, and an
/// artifact.
fn traced() -> (Build, tempfile::TempDir) {
    let trace = tempfile::tempdir().unwrap();
    let b = Build::new()
        .write("src/app.txt", "payload-v1")
        .buildspec(
            "version: 0.2\nenv:\n  exported-variables: [VERSION]\nphases:\n  build:\n    commands:\n      - echo ran >> $TRACE/trace\n      - mkdir -p dist && cp src/app.txt dist/\n      - export VERSION=7\nartifacts:\n  base-directory: dist\n  files: ['**/*']\n",
        )
        .args([
            "--writable",
            trace.path().to_str().unwrap(),
            "--env",
            &format!("TRACE={}", trace.path().display()),
        ]);
    (b, trace)
}

fn runs(trace: &Path) -> usize {
    std::fs::read_to_string(trace.join("trace"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_unchanged_build_is_restored_and_runs_no_command() {
    let (b, trace) = traced();
    let first = b.run();
    first.success();
    assert_eq!(first.json["cache"]["hit"], false);
    assert_eq!(first.json["cache"]["saved"], true);
    assert_eq!(runs(trace.path()), 1);

    std::fs::remove_dir_all(&first.output).unwrap();
    let second = b.run();
    second
        .success()
        .log_has("from the cache: no command runs")
        .log_has("Running command echo ran >> $TRACE/trace")
        .log_has("End of the restored log")
        .log_has("Cache hit: the artifacts (primary) and exported variables are build 1's")
        .log_has("CODEBUILD_BUILD_NUMBER");
    assert_eq!(runs(trace.path()), 1, "a command ran on a cache hit");
    assert_eq!(second.json["cache"]["hit"], true);
    assert_eq!(
        second.json["cache"]["restored_from"],
        first.json["build_id"]
    );
    assert_eq!(second.json["exported_variables"]["VERSION"], "7");
    assert_eq!(second.artifact_files("primary"), ["app.txt"]);
    assert_eq!(
        std::fs::read_to_string(second.output.join("primary/app.txt")).unwrap(),
        "payload-v1"
    );
}

#[test]
fn changing_the_source_misses_and_says_why() {
    let (b, trace) = traced();
    b.run().success();
    std::fs::write(b.path().join("src/app.txt"), "payload-v2").unwrap();
    std::fs::write(b.path().join("src/new.txt"), "new").unwrap();
    let run = b.run_with(&["--explain-cache"]);
    run.success().log_has(
        "Cache miss: since the last build of this project, the source files changed: src/app.txt, src/new.txt (added)",
    );
    assert_eq!(runs(trace.path()), 2);
    assert_eq!(
        std::fs::read_to_string(run.output.join("primary/app.txt")).unwrap(),
        "payload-v2"
    );
}

#[test]
fn changing_the_buildspec_misses_but_comments_and_layout_do_not() {
    let (b, trace) = traced();
    b.run().success();
    let path = b.path().join("buildspec.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "# a comment\n{}",
            text.replace("[VERSION]", "\n    - VERSION")
        ),
    )
    .unwrap();
    b.run_with(&["--explain-cache"])
        .success()
        .log_has("Cache hit: nothing changed");
    assert_eq!(runs(trace.path()), 1);
    std::fs::write(&path, text.replace("export VERSION=7", "export VERSION=8")).unwrap();
    b.run_with(&["--explain-cache"])
        .success()
        .log_has("the buildspec changed");
    assert_eq!(runs(trace.path()), 2);
}

#[test]
fn changing_a_variable_misses() {
    let (b, trace) = traced();
    b.run_with(&["--env", "STAGE=a"]).success();
    b.run_with(&["--env", "STAGE=a"]).success();
    assert_eq!(runs(trace.path()), 1);
    b.run_with(&["--env", "STAGE=b", "--explain-cache"])
        .success()
        .log_has("variable STAGE changed");
    assert_eq!(runs(trace.path()), 2);
}

#[test]
fn changing_a_secret_misses_and_the_key_holds_no_secret() {
    let (b, trace) = traced();
    let b = b.write("secrets.env", "/db/pw=first-secret-value\n");
    let spec = b.path().join("buildspec.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("env:\n", "env:\n  parameter-store:\n    PW: /db/pw\n"),
    )
    .unwrap();
    let secrets = b.path().join("secrets.env");
    let secrets_arg = secrets.to_str().unwrap().to_string();
    b.run_with(&["--secrets", &secrets_arg]).success();
    b.run_with(&["--secrets", &secrets_arg]).success();
    assert_eq!(runs(trace.path()), 1);
    std::fs::write(&secrets, "/db/pw=second-secret-value\n").unwrap();
    b.run_with(&["--secrets", &secrets_arg, "--explain-cache"])
        .success()
        .log_has("variable PW changed");
    assert_eq!(runs(trace.path()), 2);
    for file in crate::support::walkdir(&b.cache_dir().join("cas")) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("first-secret-value"),
            "{} holds a secret",
            file.display()
        );
        assert!(
            !text.contains("second-secret-value"),
            "{} holds a secret",
            file.display()
        );
    }
}

#[test]
fn changing_a_plugin_misses() {
    let (b, trace) = traced();
    let probe = format!("tool={}", crate::support::probe_plugin());
    let other = format!("tool={}", crate::support::example_plugin().display());
    b.run_with(&["--plugin", &probe]).success();
    b.run_with(&["--plugin", &probe]).success();
    assert_eq!(runs(trace.path()), 1);
    b.run_with(&["--plugin", &other, "--explain-cache"])
        .success()
        .log_has("plugin tool changed");
    assert_eq!(runs(trace.path()), 2);
}

#[test]
fn what_is_not_an_input_does_not_miss() {
    let (b, trace) = traced();
    b.run().success();
    // Touching files, another project name, the previous outputs inside the project: the same build.
    let f = std::fs::File::options()
        .append(true)
        .open(b.path().join("src/app.txt"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH).unwrap();
    let run = b.run_with(&["--project", "renamed"]);
    run.success();
    assert_eq!(run.json["cache"]["hit"], true);
    assert!(run.output.join("primary/app.txt").exists());
    assert_eq!(runs(trace.path()), 1);
}

#[test]
fn failed_builds_are_not_cached() {
    let (b, trace) = traced();
    let spec = b.path().join("buildspec.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("export VERSION=7", "false")).unwrap();
    b.run().failure();
    let second = b.run();
    second.failure();
    assert_eq!(second.json["cache"]["hit"], false);
    assert_eq!(runs(trace.path()), 2);
}

#[test]
fn no_cache_builds_again_and_saves() {
    let (b, trace) = traced();
    b.run().success();
    let run = b.run_with(&["--no-cache"]);
    run.success();
    assert_eq!(run.json["cache"]["hit"], false);
    assert_eq!(run.json["cache"]["saved"], true);
    assert_eq!(runs(trace.path()), 2);
}

#[test]
fn builds_with_network_are_cached_like_any_other() {
    // Their key is their inputs (as Turborepo and Nx do); --no-cache forces a run.
    let (b, trace) = traced();
    b.run_with(&["--network", "internet"])
        .success()
        .log_lacks("Not cached");
    b.run_with(&["--network", "internet"]).success();
    assert_eq!(runs(trace.path()), 1);
    b.run_with(&["--network", "internet", "--no-cache"])
        .success();
    assert_eq!(runs(trace.path()), 2);
}

fn blob_of(b: &Build, content: &[u8]) -> std::path::PathBuf {
    let hex = blake3::hash(content).to_hex().to_string();
    b.cache_dir()
        .join("cas/blobs")
        .join(&hex[..2])
        .join(&hex[2..])
}

#[test]
fn a_corrupt_blob_is_detected_and_the_build_runs_again() {
    let (b, trace) = traced();
    b.run().success();
    let blob = blob_of(&b, b"payload-v1");
    assert!(blob.exists(), "the artifact's blob should be in the store");
    std::fs::write(&blob, b"tampered!!").unwrap();
    let run = b.run();
    run.success().log_has("corrupt").log_has("building");
    assert_eq!(runs(trace.path()), 2);
    assert_eq!(
        std::fs::read_to_string(run.output.join("primary/app.txt")).unwrap(),
        "payload-v1"
    );
    // The rebuild stored the good blob again: the next build is a hit.
    let third = b.run();
    assert_eq!(third.json["cache"]["hit"], true);
    assert_eq!(std::fs::read(&blob).unwrap(), b"payload-v1");
}

fn cache_cmd(b: &Build, args: &[&str]) -> (Option<i32>, String) {
    let out = b.kiln().arg("cache").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_finds_and_removes_corrupt_blobs() {
    let (b, _trace) = traced();
    b.run().success();
    assert_eq!(cache_cmd(&b, &["verify"]).0, Some(0));
    let blob = blob_of(&b, b"payload-v1");
    std::fs::write(&blob, b"bit rot").unwrap();
    let (code, out) = cache_cmd(&b, &["verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("corrupt blob"), "{out}");
    assert!(!blob.exists());
    assert_eq!(cache_cmd(&b, &["verify"]).0, Some(0));
}

#[test]
fn verify_removes_malformed_action_entries() {
    let (b, _trace) = traced();
    b.run().success();
    let entries: Vec<_> = std::fs::read_dir(b.cache_dir().join("cas/ac"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], br#"{"result": "not an entry"}"#).unwrap();
    let (code, out) = cache_cmd(&b, &["verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("1 broken entries removed"), "{out}");
    assert!(!entries[0].exists());
    assert_eq!(cache_cmd(&b, &["verify"]).0, Some(0));
    // The next build is a miss that rebuilds, not a restore of what the entry said.
    assert_eq!(b.run().json["cache"]["hit"], false);
}

#[test]
fn prune_keeps_the_store_usable() {
    let (b, trace) = traced();
    b.run().success();
    let (_, stats) = cache_cmd(&b, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["blobs"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["entries"], 1);
    let (code, out) = cache_cmd(&b, &["prune", "--max-size", "0"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, stats) = cache_cmd(&b, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["blobs"], 0);
    assert_eq!(stats["entries"], 0);
    // A pruned result is a miss, and the build refills the store.
    let run = b.run();
    run.success();
    assert_eq!(run.json["cache"]["hit"], false);
    assert_eq!(runs(trace.path()), 2);
    assert_eq!(b.run().json["cache"]["hit"], true);
}

#[test]
fn prune_removes_compiled_plugins_this_kiln_cannot_load_or_no_build_loaded() {
    let (b, _trace) = traced();
    b.run().success();
    let components = b.cache_dir().join("components");
    let ours: Vec<std::path::PathBuf> = std::fs::read_dir(&components)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(!ours.is_empty(), "the build compiled no plugin");
    let suffix = ours[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .rsplit_once('-')
        .unwrap()
        .1
        .to_string();
    // One compiled by another kiln (another suffix), one of this kiln's that no build loaded for
    // 40 days, and one of this kiln's loaded today: only the last stays.
    let name = |n: u128| format!("{:064x}", std::process::id() as u128 * 1000 + n);
    let foreign = components.join(format!("{}-0123456789abcdef.cwasm", name(1)));
    let idle = components.join(format!("{}-{suffix}", name(2)));
    let fresh = components.join(format!("{}-{suffix}", name(3)));
    for f in [&foreign, &idle, &fresh] {
        std::fs::write(f, b"compiled").unwrap();
    }
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&idle)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (code, out) = cache_cmd(&b, &["prune", "--max-size", "10G"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("compiled plugins"), "{out}");
    assert!(!foreign.exists(), "another kiln's compiled plugin was kept");
    assert!(!idle.exists(), "a plugin unused for 40 days was kept");
    assert!(fresh.exists(), "a plugin loaded today was removed");
    std::fs::remove_file(&fresh).unwrap();
    // The plugins the build loaded stay, and the next build loads them.
    assert!(ours.iter().all(|p| p.exists()));
    b.run().success();
}

#[test]
fn stats_count_recent_hits() {
    let (b, _trace) = traced();
    b.run().success();
    b.run().success();
    let (_, stats) = cache_cmd(&b, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["recent_builds"], 2, "{stats}");
    assert_eq!(stats["recent_hits"], 1, "{stats}");
}

#[test]
fn a_build_killed_while_writing_the_cache_leaves_it_consistent() {
    // A large artifact makes the cache write take a while; kill -9 lands somewhere in it (or after:
    // either way the store must be whole).
    let b = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p dist && head -c 400000000 /dev/urandom > dist/big.bin\nartifacts:\n  base-directory: dist\n  files: ['**/*']\n",
        );
    let mut child = kiln()
        .arg("--cache-dir")
        .arg(b.cache_dir())
        .arg("--state-dir")
        .arg(b.state_dir())
        .arg("build")
        .arg(b.path())
        .arg("-q")
        .spawn()
        .unwrap();
    let blobs = b.cache_dir().join("cas/blobs");
    let started = std::time::Instant::now();
    loop {
        // A blob being written is a `.tmp…` file beside its final place.
        let writing = std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|shard| {
                std::fs::read_dir(shard.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|f| f.file_name().to_string_lossy().starts_with(".tmp"))
            });
        if writing || started.elapsed().as_secs() > 60 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (code, out) = cache_cmd(&b, &["verify"]);
    assert_eq!(
        code,
        Some(0),
        "the store has corrupt blobs after a crash: {out}"
    );
    // Whatever the crash left, the next build succeeds, and the one after it is a hit.
    let run: Run = b.run();
    run.success();
    assert_eq!(b.run().json["cache"]["hit"], true);
}

/// A project whose build "installs dependencies" into deps/ (logging whether they were already
/// there) under a key derived from its lock file.
fn with_deps(cache: &str) -> Build {
    Build::new().write("deps.lock", "left-pad 1.0\n").buildspec(&format!(
        "version: 0.2\nphases:\n  install:\n    commands:\n      - if [ -f deps/left-pad ]; then echo deps-restored; else mkdir -p deps && cp deps.lock deps/left-pad && echo deps-installed; fi\n{cache}"
    ))
}

#[test]
fn cache_paths_are_saved_and_restored_by_key() {
    let b = with_deps(
        "cache:\n  key: deps-$(codebuild-hash-files deps.lock)\n  paths:\n    - deps/**/*\n",
    );
    b.run()
        .success()
        .log_has("deps-installed")
        .log_has("No cache found for key deps-");
    // --no-cache skips the action cache only: the cache: section still restores.
    b.run_with(&["--no-cache"])
        .success()
        .log_has("deps-restored")
        .log_has("Restored cache deps-");
    // A new lock file is a new key: nothing to restore.
    std::fs::write(b.path().join("deps.lock"), "left-pad 2.0\n").unwrap();
    b.run().success().log_has("deps-installed");
}

#[test]
fn fallback_keys_match_by_prefix() {
    let b = with_deps("cache:\n  key: deps-one\n  paths: [deps/**/*]\n");
    b.run().success().log_has("deps-installed");
    let spec = b.path().join("buildspec.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "key: deps-one",
            "key: deps-two\n  fallback-keys: [nomatch-, deps-]",
        ),
    )
    .unwrap();
    b.run()
        .success()
        .log_has("deps-restored")
        .log_has("Restored cache deps-one (1 files) for key deps-two");
}

#[test]
fn cache_entries_belong_to_their_project_unless_shared() {
    // Project A's `deps-v1` (here: a script planted in deps/) is no entry of project B's, even
    // through B's fallback keys; with --cache-scope shared on both, it is.
    let a = with_deps("cache:\n  key: deps-v1\n  paths: [deps/**/*]\n");
    let planted = "cache:\n  key: deps-v1\n  paths: [deps/**/*]\n";
    let a = a.buildspec(&format!(
        "version: 0.2\nphases:\n  install:\n    commands:\n      - mkdir -p deps && echo 'echo RAN-PROJECT-A-SCRIPT' > deps/post.sh && echo > deps/left-pad\n{planted}"
    ));
    a.run().success().log_has("Saved cache for key deps-v1");
    let b_spec = "version: 0.2\nphases:\n  install:\n    commands:\n      - if [ -f deps/post.sh ]; then sh deps/post.sh; else echo clean-install; fi\ncache:\n  key: deps-v2\n  fallback-keys: [deps-]\n  paths: [deps/**/*]\n";
    let b = Build::new().sharing_cache_with(&a).buildspec(b_spec);
    b.run()
        .success()
        .log_has("clean-install")
        .log_lacks("RAN-PROJECT-A-SCRIPT")
        .log_has("No cache found for key deps-v2");
    // Shared on purpose: both ask for it.
    a.run_with(&["--no-cache", "--cache-scope", "shared"])
        .success()
        .log_has("Saved cache for key deps-v1");
    b.run_with(&["--no-cache", "--cache-scope", "shared"])
        .success()
        .log_has("Restored cache deps-v1")
        .log_has("RAN-PROJECT-A-SCRIPT");
}

#[test]
fn a_cache_path_that_climbs_out_with_dot_dot_is_refused() {
    let outside = crate::support::host_visible_dir("kiln-cache-climb-");
    std::fs::write(outside.path().join("host-file"), "host").unwrap();
    let climb = format!("{}/../{}", "a/b", "../".repeat(12));
    let pattern = format!(
        "{climb}{}/**/*",
        outside.path().display().to_string().trim_start_matches('/')
    );
    let b = Build::new().buildspec(&format!(
        "version: 0.2\ncache:\n  key: climb\n  paths: ['{pattern}']\nphases:\n  build:\n    commands:\n      - echo ran\n"
    ));
    b.run()
        .success()
        .log_has("climbs out of its folder with `..`")
        .log_lacks("Saved cache for key climb (");
    // Nothing of the host folder went into the store.
    let stored = crate::support::walkdir(b.cache_dir());
    for path in stored.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(path).unwrap_or_default();
        assert!(
            bytes != b"host",
            "the host file was cached as {}",
            path.display()
        );
    }
}

#[test]
fn without_the_namespace_sandbox_only_workspace_cache_paths_are_cached() {
    // With --no-confine (as under Landlock alone) a path outside the workspace is the host's own:
    // kiln neither saves it nor restores into it.
    let outside = crate::support::host_visible_dir("kiln-cache-host-");
    let target = outside.path().join("ssh-like");
    let b = Build::new().buildspec(&format!(
        "version: 0.2\ncache:\n  key: host\n  paths: ['{dir}/**/*', 'deps/**/*']\nphases:\n  build:\n    commands:\n      - mkdir -p deps && echo d > deps/d\n",
        dir = target.display()
    ));
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("authorized_keys"), "mine").unwrap();
    b.run_with(&["--no-confine"])
        .success()
        .log_has("without the namespace sandbox only paths in the workspace are");
    std::fs::remove_file(target.join("authorized_keys")).unwrap();
    b.run_with(&["--no-confine", "--no-cache"])
        .success()
        .log_has("Restored cache host (1 files)");
    assert!(
        !target.join("authorized_keys").exists(),
        "kiln restored into a host folder"
    );
}

#[test]
fn a_keyed_cache_entry_is_written_once() {
    let b = with_deps("cache:\n  key: fixed\n  paths: [deps/**/*]\n");
    b.run().success();
    std::fs::write(b.path().join("deps.lock"), "changed\n").unwrap();
    b.run_with(&["--no-cache"])
        .success()
        .log_has("Cache for key fixed exists; not updated");
}

#[test]
fn without_a_key_the_project_cache_is_updated_each_build() {
    let b = with_deps("cache:\n  paths: [deps/**/*]\n");
    b.run()
        .success()
        .log_has("deps-installed")
        .log_has("Saved cache for key project/");
    b.run_with(&["--no-cache"])
        .success()
        .log_has("deps-restored")
        .log_has("Saved cache for key project/");
}

#[test]
fn action_restore_only_restores_and_save_only_saves() {
    let save_only = with_deps("cache:\n  key: k\n  action: save\n  paths: [deps/**/*]\n");
    save_only.run().success().log_has("Saved cache for key k");
    save_only
        .run_with(&["--no-cache"])
        .success()
        .log_has("deps-installed")
        .log_lacks("Restored cache");
    let restore_only = with_deps("cache:\n  key: k\n  action: restore\n  paths: [deps/**/*]\n");
    restore_only
        .run()
        .success()
        .log_has("No cache found for key k")
        .log_lacks("Saved cache");
}

#[test]
fn hash_files_changes_exactly_when_the_files_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.lock"), "1").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let hash = || {
        let out = kiln()
            .args(["hash-files", "*.lock"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first = hash();
    assert_eq!(first.len(), 64);
    std::fs::write(dir.path().join("notes.txt"), "y").unwrap();
    assert_eq!(hash(), first);
    std::fs::write(dir.path().join("a.lock"), "2").unwrap();
    assert_ne!(hash(), first);
}

#[test]
fn a_dependency_folder_that_changed_by_one_file_stores_one_new_blob() {
    let b = Build::new()
        .sh("mkdir -p deps && for i in $(seq 1 50); do echo $i > deps/f$i; done")
        .buildspec("version: 0.2\ncache:\n  paths: ['deps/**/*']\nphases:\n  build:\n    commands: [true]\n");
    b.run().success();
    let blobs = |b: &Build| crate::support::walkdir(&b.cache_dir().join("cas/blobs")).len();
    let before = blobs(&b);
    std::fs::write(b.path().join("deps/f7"), "changed").unwrap();
    b.run().success();
    // One new file blob, one new tree, a new log, and the new source tree's action entry blobs:
    // the 49 unchanged files are not stored again.
    let added = blobs(&b) - before;
    assert!(added <= 4, "{added} new blobs");
}

#[test]
fn cache_paths_in_home_are_restored_into_the_build_and_never_reach_the_host() {
    // `/root/...` and `~/...` are the build's own HOME (as on CodeBuild, where builds run as root):
    // saved from it and restored into it, never into the host's.
    let name = format!(
        ".kiln-test-m2-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let b = Build::new().buildspec(&format!(
        "version: 0.2\ncache:\n  key: m2\n  paths: ['/root/{name}/**/*', '~/{name}-npm/**/*']\nphases:\n  install:\n    commands:\n      - if [ -f /root/{name}/lib.jar ] && [ -f ~/{name}-npm/pkg ]; then echo jar-restored; else mkdir -p /root/{name} ~/{name}-npm && echo jar > /root/{name}/lib.jar && echo pkg > ~/{name}-npm/pkg && echo jar-downloaded; fi\n"
    ));
    b.run().success().log_has("jar-downloaded");
    b.run_with(&["--no-cache"])
        .success()
        .log_has("jar-restored");
    for host in [format!("/root/{name}"), format!("/root/{name}-npm")] {
        assert!(
            !std::path::Path::new(&host).exists(),
            "{host} must not be created on the host"
        );
    }
}

#[test]
fn a_cache_path_outside_home_tmp_and_the_workspace_makes_nothing_writable() {
    // A `cache:` path is never a way to write the host: outside the build's own places it is
    // refused with a warning, and the build's writes there stay in its private layer. (Not below
    // /tmp, which is the build's own.)
    let outside = crate::support::host_visible_dir("kiln-cache-");
    let target = outside.path().join("etc-like");
    std::fs::create_dir(&target).unwrap();
    let b = Build::new().buildspec(&format!(
        "version: 0.2\ncache:\n  key: x\n  paths: ['{dir}/**/*']\nphases:\n  install:\n    commands:\n      - echo planted > {dir}/authorized_keys && cat {dir}/authorized_keys\n",
        dir = target.display()
    ));
    b.run()
        .success()
        .log_has("is not cached: in the sandbox only the workspace")
        .log_has("planted");
    assert!(!target.join("authorized_keys").exists());
    // Nor does a restore write there.
    b.run_with(&["--no-cache"]).success();
    assert!(!target.join("authorized_keys").exists());
}

#[test]
fn a_cache_path_the_build_turned_into_a_link_is_not_saved() {
    // The build writes its HOME: a link there, read by kiln on the host, would lead to the host's
    // files (here /etc, with its shadow file) and put them in the cache for the next build.
    let name = format!(".kiln-test-link-{}", std::process::id());
    let b = Build::new().buildspec(&format!(
        "version: 0.2\ncache:\n  key: linked-{name}\n  paths: ['/root/{name}/**/*']\nphases:\n  install:\n    commands:\n      - if [ -e /root/{name}/passwd ]; then echo RESTORED-HOST-FILES; fi\n      - rm -rf /root/{name} && ln -s /etc /root/{name}\n"
    ));
    b.run().success().log_has(&format!(
        "cache path /root/{name}/**/* is not saved: it leads through a link"
    ));
    b.run_with(&["--no-cache"])
        .success()
        .log_lacks("RESTORED-HOST-FILES\n");
}

#[test]
fn a_daemon_swapping_a_cache_path_for_a_link_cannot_lead_the_restore_out() {
    // The key's expansion leaves a process behind that keeps replacing the cache folder with a
    // link to a host folder while kiln restores into it: kiln must never write through the link.
    let outside = crate::support::host_visible_dir("kiln-cache-race-");
    let name = format!("race-{}", std::process::id());
    let swap = format!(
        "$(setsid sh -c 'i=0; while [ $i -lt 20000 ]; do rm -rf /root/{name}; ln -sfn {out} /root/{name}; i=$((i+1)); done' >/dev/null 2>&1 &)",
        out = outside.path().display()
    );
    let spec = |key: &str| {
        format!(
            "version: 0.2\ncache:\n  key: \"{key}\"\n  paths: ['/root/{name}/**/*']\nphases:\n  install:\n    commands:\n      - mkdir -p /root/{name}/d && seq 1 400 | while read i; do echo x > /root/{name}/d/f$i; done\n"
        )
    };
    let b = Build::new().buildspec(&spec("k"));
    b.run().success().log_has("Saved cache for key k");
    for _ in 0..5 {
        std::fs::write(b.path().join("buildspec.yml"), spec(&format!("k{swap}"))).unwrap();
        b.run_with(&["--no-cache"]);
        let leaked = crate::support::walkdir(outside.path());
        assert!(
            leaked.is_empty(),
            "kiln restored through the link: {leaked:?}"
        );
    }
}

#[test]
fn folders_below_a_cached_path_are_restored_into_a_fresh_workspace() {
    // `node_modules/**/*` as aws-samples/aws-codebuild-samples caches it: files two folders down
    // and a link in `.bin`, restored before install into a workspace that has no node_modules.
    let b = Build::new().buildspec(
        "version: 0.2\nphases:\n  install:\n    commands:\n      - test -f node_modules/m/lib/index.js && echo from-cache || { mkdir -p node_modules/m/lib node_modules/.bin && echo m > node_modules/m/lib/index.js && ln -s ../m/lib/index.js node_modules/.bin/m; }\n      - cat node_modules/.bin/m\ncache:\n  paths:\n    - 'node_modules/**/*'\n",
    );
    b.run().success().log_has("Saved cache for key");
    let second = b.run_with(&["--no-cache"]);
    second
        .success()
        .log_has("Restored cache")
        .log_lacks("could not be restored");
    assert_eq!(second.output_lines(), ["from-cache", "m"]);
}
