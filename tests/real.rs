//! Real public buildspecs (tests/fixtures/real/, one folder per upstream project, its sources and
//! licence in tests/fixtures/real/README.md) built with kiln's default flags: no `--writable`, no
//! `--network`, no `--pass-env`. Each build must succeed and its artifacts be what the buildspec
//! declares. `-e NAME=VALUE` stands for the variables the upstream CodeBuild project sets.
//!
//! They need the build sandbox (user namespaces) and, most of them, the registries (npm, PyPI):
//! without either a test says `SKIPPED` loudly, except under `CI`, where it fails.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::isolation::require_namespaces;
use crate::support::{Build, Run, walkdir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/real")
}

/// A temp project holding a copy of the fixture `name` (modes kept).
fn fixture(name: &str) -> Build {
    let from = fixtures().join(name);
    assert!(from.is_dir(), "no fixture {}", from.display());
    let build = Build::new();
    for file in walkdir(&from) {
        let to = build.path().join(file.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
    build
}

/// Whether this machine reaches `host:443`; when it does not, the test says so loudly and
/// returns false, or fails under CI, which has the registries.
fn reaches(host: &str) -> bool {
    let proxied = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let direct = (host, 443)
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    if proxied || direct {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must reach {host} to build the real fixtures"
    );
    eprintln!("\n*** SKIPPED: {host} is unreachable; this real project needs its registry ***\n");
    false
}

/// Runs the build and says how long it took (the suite's cost in CI).
fn timed(name: &str, build: &Build, extra: &[&str]) -> Run {
    let start = Instant::now();
    let run = build.run_with(extra);
    eprintln!("real fixture {name}: {:.1?}", start.elapsed());
    run
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// aws-samples/aws-codebuild-samples: `npm install`, `npm test` (mocha under nyc), `files: '**/*'`.
#[test]
fn aws_codebuild_samples_npm_test_with_everything_as_artifact() {
    if !require_namespaces() || !reaches("registry.npmjs.org") {
        return;
    }
    let b = fixture("aws-codebuild-samples");
    let run = timed("aws-codebuild-samples", &b, &[]);
    run.success()
        .phase("INSTALL", "SUCCEEDED")
        .phase("BUILD", "SUCCEEDED")
        .phase("UPLOAD_ARTIFACTS", "SUCCEEDED")
        .log_has("8 passing");
    let out = run.output.join("primary");
    // '**/*': every file of the source, as it is...
    let source = fixtures().join("aws-codebuild-samples");
    for file in walkdir(&source) {
        let rel = file.strip_prefix(&source).unwrap();
        assert_eq!(
            std::fs::read(out.join(rel)).ok(),
            std::fs::read(&file).ok(),
            "{} in the artifact",
            rel.display()
        );
    }
    // ...and what the build made: the coverage report and the pinned dependencies.
    assert!(read(&out.join("coverage/lcov.info")).contains("calculator.js"));
    assert!(read(&out.join("node_modules/mocha/package.json")).contains("\"version\": \"4.0.1\""));
}

/// The same project's `buildspecs/build-test-suite-1.yml` and `-2.yml`: one test suite each
/// (`npm test -- --grep 'Calculator Tests'`, then `--invert`).
#[test]
fn aws_codebuild_samples_test_suites_split_by_grep() {
    if !require_namespaces() || !reaches("registry.npmjs.org") {
        return;
    }
    let b = fixture("aws-codebuild-samples");
    let one = timed(
        "aws-codebuild-samples suite 1",
        &b,
        &["-b", "buildspecs/build-test-suite-1.yml"],
    );
    one.success()
        .log_has("6 passing")
        .log_lacks("it should add two numbers");
    assert!(one.output.join("primary/calculator.js").is_file());
    let two = timed(
        "aws-codebuild-samples suite 2",
        &b,
        &["-b", "buildspecs/build-test-suite-2.yml"],
    );
    two.success()
        .log_has("2 passing")
        .log_has("it should add two numbers")
        .log_lacks("returns 1 + 1 = 2");
    assert!(
        two.output
            .join("primary/node_modules/chai-http/package.json")
            .is_file()
    );
}

/// The same project's `buildspecs/build-with-cache.yml`: `cache: paths: ['node_modules/**/*']`,
/// saved by the first build and restored into the second.
#[test]
fn aws_codebuild_samples_node_modules_cache_is_restored() {
    if !require_namespaces() || !reaches("registry.npmjs.org") {
        return;
    }
    let b = fixture("aws-codebuild-samples");
    let spec = ["-b", "buildspecs/build-with-cache.yml"];
    let first = timed("aws-codebuild-samples cache, first", &b, &spec);
    first
        .success()
        .log_has("No cache found for key")
        .log_has("Saved cache for key")
        .log_has("8 passing");
    // --no-cache: run it again rather than restore the whole build from the action cache.
    let second = timed(
        "aws-codebuild-samples cache, second",
        &b,
        &[spec[0], spec[1], "--no-cache"],
    );
    second
        .success()
        .log_has("Restored cache")
        .log_has("8 passing");
    assert!(
        second
            .output
            .join("primary/node_modules/mocha/package.json")
            .is_file()
    );
}

/// aws-samples/aws-codebuild-multiple-buildspec's `buildspec-deb.yml`: `apt-get install gcc make`,
/// `make`, `dpkg-deb --build`, `files: cbsample-*.deb`.
#[test]
fn aws_codebuild_multiple_buildspec_builds_a_deb() {
    if !require_namespaces() {
        return;
    }
    let b = fixture("aws-codebuild-multiple-buildspec");
    let run = timed(
        "aws-codebuild-multiple-buildspec",
        &b,
        &["-b", "buildspec-deb.yml"],
    );
    run.success()
        .phase("INSTALL", "SUCCEEDED")
        .log_has("dpkg-deb: building package 'cbsample' in './cbsample-0.1.deb'");
    assert_eq!(run.artifact_files("primary"), ["cbsample-0.1.deb"]);
    let deb = std::fs::read(run.output.join("primary/cbsample-0.1.deb")).unwrap();
    assert!(deb.starts_with(b"!<arch>\ndebian-binary"), "not a .deb");
    // The build ran in a copy: the project folder holds none of what it made.
    assert!(!b.path().join("libcbsamplelib.so").exists());
}

/// aws-samples/aws-codebuild-lambda-deploy's `src/lambda/buildspec.yml`: `runtime-versions: python
/// 3.9`, `pip install --upgrade pip`, and `files: [$artifact]` where a command set
/// `artifact=$CODEBUILD_SRC_DIR/...` (`SourceFolder` is the CodeBuild project's variable).
#[test]
fn aws_codebuild_lambda_deploy_collects_the_handler_named_by_a_variable() {
    if !require_namespaces() || !reaches("pypi.org") {
        return;
    }
    let b = fixture("aws-codebuild-lambda-deploy");
    let run = timed(
        "aws-codebuild-lambda-deploy",
        &b,
        &[
            "-b",
            "src/lambda/buildspec.yml",
            "-e",
            "SourceFolder=lambda-function",
        ],
    );
    run.success()
        .log_has("runtime-versions: python 3.9")
        .log_has("lambda-function packaging to be done");
    assert_eq!(run.artifact_files("primary"), ["handler.py"]);
    assert_eq!(
        read(&run.output.join("primary/handler.py")),
        read(&fixtures().join("aws-codebuild-lambda-deploy/src/lambda/lambda-function/handler.py"))
    );
}

/// aws-samples/aws-codepipeline-multi-branch-strategy's `buildspec/CIAction.yaml` and
/// `CDAction.yaml`: `runtime-versions: python 3.7` and the pipeline's variables; no artifacts.
#[test]
fn aws_codepipeline_multi_branch_strategy_ci_and_cd_actions() {
    if !require_namespaces() {
        return;
    }
    let b = fixture("aws-codepipeline-multi-branch-strategy");
    let ci = timed(
        "aws-codepipeline-multi-branch-strategy CI",
        &b,
        &["-b", "buildspec/CIAction.yaml", "-e", "BranchName=develop"],
    );
    ci.success()
        .phase("INSTALL", "SUCCEEDED")
        .log_has("runtime-versions: python 3.7");
    assert_eq!(ci.output_lines(), ["CI Stage", "develop"]);
    let cd = timed(
        "aws-codepipeline-multi-branch-strategy CD",
        &b,
        &[
            "-b",
            "buildspec/CDAction.yaml",
            "-e",
            "BranchName=develop",
            "-e",
            "pipeline_environment=dev",
        ],
    );
    cd.success();
    assert_eq!(cd.output_lines(), ["Running CD Stage...", "dev", "develop"]);
    assert!(cd.json["artifacts"].as_array().is_none_or(Vec::is_empty));
}
