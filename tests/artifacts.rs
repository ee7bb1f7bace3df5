//! Artifacts: CodeBuild's `files`, `base-directory`, `discard-paths`, `exclude-paths`, `name` and
//! `secondary-artifacts`, collected by the artifacts plugin into the output folder.

use std::io::Read;

use crate::support::{Build, build_commands};

/// The tree of the buildspec reference's `base-directory` examples.
fn reference_tree() -> Build {
    Build::new()
        .write("my-build-1/my-file-1.txt", "1")
        .write("my-build-2/my-file-2.txt", "2")
        .write("my-build-2/my-subdirectory/my-file-3.txt", "3")
}

#[test]
fn reference_example_base_directory_keeps_paths_below_it() {
    // artifacts: files '*/my-file-3.txt', base-directory my-build-2
    // -> my-subdirectory/my-file-3.txt
    let run = reference_tree()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n  files:\n    - '*/my-file-3.txt'\n  base-directory: my-build-2\n",
        )
        .run();
    run.success();
    assert_eq!(
        run.artifact_files("primary"),
        ["my-subdirectory/my-file-3.txt"]
    );
}

#[test]
fn reference_example_base_directory_glob_with_discard_paths() {
    // artifacts: files '**/*', base-directory 'my-build*', discard-paths yes
    // -> my-file-1.txt, my-file-2.txt, my-file-3.txt
    let run = reference_tree()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n  files:\n    - '**/*'\n  base-directory: 'my-build*'\n  discard-paths: yes\n",
        )
        .run();
    run.success();
    assert_eq!(
        run.artifact_files("primary"),
        ["my-file-1.txt", "my-file-2.txt", "my-file-3.txt"]
    );
}

#[test]
fn star_stays_in_its_directory_and_double_star_recurses() {
    let b = Build::new()
        .write("sub/a.txt", "a")
        .write("sub/deep/b.txt", "b")
        .write("top.txt", "t");
    let one_level = b
        .buildspec("version: 0.2\nartifacts:\n  files: ['sub/*']\n")
        .run();
    one_level.success();
    assert_eq!(one_level.artifact_files("primary"), ["sub/a.txt"]);

    let recursive = Build::new()
        .write("sub/a.txt", "a")
        .write("sub/deep/b.txt", "b")
        .write("top.txt", "t")
        .buildspec("version: 0.2\nartifacts:\n  files: ['sub/**/*']\n")
        .run();
    recursive.success();
    assert_eq!(
        recursive.artifact_files("primary"),
        ["sub/a.txt", "sub/deep/b.txt"]
    );

    let files_only = Build::new()
        .write("sub/a.txt", "a")
        .write("sub/deep/b.txt", "b")
        .buildspec("version: 0.2\nartifacts:\n  files: ['sub/*.txt']\n")
        .run();
    files_only.success();
    assert_eq!(files_only.artifact_files("primary"), ["sub/a.txt"]);
}

#[test]
fn exclude_paths_are_relative_to_the_base_directory() {
    let run = Build::new()
        .write("dist/app.js", "a")
        .write("dist/app.js.map", "m")
        .write("dist/tmp/scratch.txt", "s")
        .write("dist/lib/util.js", "u")
        .buildspec(
            "version: 0.2\nartifacts:\n  base-directory: dist\n  files: ['**/*']\n  exclude-paths:\n    - '*.map'\n    - tmp/**/*\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["app.js", "lib/util.js"]);
}

#[test]
fn patterns_resolve_against_the_source_directory_not_the_shell_cwd() {
    let run = Build::new()
        .write("target/app.bin", "bin")
        .write("elsewhere/x", "")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - cd elsewhere\nartifacts:\n  files: ['target/app.bin']\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["target/app.bin"]);
}

#[test]
fn files_built_by_the_commands_are_collected() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p target && echo built > target/app.jar\nartifacts:\n  files: target/app.jar\n  discard-paths: yes\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["app.jar"]);
    assert_eq!(
        std::fs::read_to_string(run.output.join("primary/app.jar")).unwrap(),
        "built\n"
    );
}

#[test]
fn the_name_is_expanded_by_the_shell() {
    let run = Build::new()
        .write("a.txt", "a")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - export RELEASE=2.$CODEBUILD_BUILD_NUMBER\nartifacts:\n  name: app-$RELEASE-$(echo x)\n  files: [a.txt]\n",
        )
        .run();
    run.success();
    assert_eq!(run.json["artifacts"][0]["name"], "app-2.1-x");
    assert_eq!(run.artifact_files("app-2.1-x"), ["a.txt"]);
}

#[test]
fn secondary_artifacts_each_get_a_folder() {
    let run = Build::new()
        .write("bin/app", "app")
        .write("docs/guide.md", "g")
        .buildspec(
            "version: 0.2\nartifacts:\n  files: ['bin/*']\n  secondary-artifacts:\n    manual:\n      base-directory: docs\n      files: ['**/*']\n    binaries:\n      name: bins\n      files: ['bin/*']\n      discard-paths: yes\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["bin/app"]);
    assert_eq!(run.artifact_files("manual"), ["guide.md"]);
    assert_eq!(run.artifact_files("bins"), ["app"]);
    let ids: Vec<&str> = run.json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["primary", "manual", "binaries"]);
}

#[test]
fn no_match_fails_upload_artifacts() {
    let run = Build::new()
        .buildspec(&(build_commands(&["true"]) + "artifacts:\n  files: ['missing/**/*']\n"))
        .run();
    run.failure()
        .phase("BUILD", "SUCCEEDED")
        .phase("UPLOAD_ARTIFACTS", "FAILED")
        .log_has(
            "Phase context status code: CLIENT_ERROR Message: no matching artifact paths found",
        );
}

#[test]
fn a_base_directory_that_matches_nothing_fails() {
    Build::new()
        .write("a.txt", "a")
        .buildspec("version: 0.2\nartifacts:\n  base-directory: 'nope*'\n  files: ['**/*']\n")
        .run()
        .failure()
        .log_has("no matching base directory path found for nope*");
}

#[test]
fn the_executable_bit_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let run = Build::new()
        .write("run.sh", "#!/bin/sh\n")
        .write("data.txt", "d")
        .sh("chmod 755 run.sh")
        .buildspec("version: 0.2\nartifacts:\n  files: ['*']\n  exclude-paths: [buildspec.yml]\n")
        .run();
    run.success();
    let mode = |f: &str| {
        std::fs::metadata(run.output.join("primary").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("run.sh") & 0o111, 0o111);
    assert_eq!(mode("data.txt") & 0o111, 0);
}

#[test]
fn zip_writes_each_artifact_as_a_zip_too() {
    let run = Build::new()
        .write("site/index.html", "<h1>hi</h1>")
        .write("site/css/a.css", "a{}")
        .buildspec("version: 0.2\nartifacts:\n  base-directory: site\n  files: ['**/*']\n")
        .args(["--zip"])
        .run();
    run.success();
    let path = run.output.join("primary.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| !n.ends_with('/'))
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(names, ["css/a.css", "index.html"]);
    let mut text = String::new();
    archive
        .by_name("index.html")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "<h1>hi</h1>");
}

#[test]
fn a_rebuild_replaces_the_artifact_folder_whole() {
    let b = Build::new()
        .write("v1.txt", "1")
        .buildspec("version: 0.2\nartifacts:\n  files: ['v*.txt']\n");
    b.run().success();
    std::fs::remove_file(b.path().join("v1.txt")).unwrap();
    std::fs::write(b.path().join("v2.txt"), "2").unwrap();
    let run = b.run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["v2.txt"]);
    let leftovers: Vec<_> = std::fs::read_dir(&run.output)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln") && n != ".kiln-published")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_artifacts_plugin_cannot_write_into_the_workspace() {
    // The workspace is preopened read-only for the artifacts step: the plugin's outputs land only in
    // the output folder, and the source stays as the build left it.
    let b = Build::new()
        .write("a.txt", "a")
        .buildspec("version: 0.2\nartifacts:\n  files: ['a.txt']\n")
        .args(["--in-place"]);
    b.run().success();
    let mut entries: Vec<String> = std::fs::read_dir(b.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["a.txt", "buildspec.yml", "out"]);
}

#[test]
fn a_name_with_slashes_nests_and_cannot_escape_the_output() {
    let run = Build::new()
        .write("a.txt", "a")
        .buildspec(
            "version: 0.2\nartifacts:\n  name: builds/$CODEBUILD_BUILD_NUMBER/../../my-artifacts\n  files: [a.txt]\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("builds/1/my-artifacts"), ["a.txt"]);
}

#[test]
fn paths_name_the_build_variables_and_may_be_absolute_in_the_source() {
    // aws-samples/aws-codebuild-lambda-deploy: `artifact=$CODEBUILD_SRC_DIR/...` in a command,
    // then `files: [$artifact]` with discard-paths.
    let run = Build::new()
        .write("src/fn/handler.py", "print('hi')\n")
        .write("out/skip.txt", "no")
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    DIST: dist\nphases:\n  build:\n    commands:\n      - artifact=$CODEBUILD_SRC_DIR/src/fn/handler.py\n      - mkdir -p dist/a && echo x > dist/a/x.txt && echo y > dist/a/y.log\nartifacts:\n  files:\n    - $artifact\n    - ${DIST}/**/*\n  exclude-paths:\n    - $CODEBUILD_SRC_DIR/dist/**/*.log\n  discard-paths: yes\n",
        )
        .run();
    run.success();
    assert_eq!(run.artifact_files("primary"), ["handler.py", "x.txt"]);
}
