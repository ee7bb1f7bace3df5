//! `kiln validate` on pipeline declarations: get-pipeline JSON and CloudFormation templates are
//! recognised, checked, and every error is shown at its line and column with what to do.

use std::path::{Path, PathBuf};

use crate::support::kiln;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/pipelines")
        .join(name)
}

/// Runs `kiln validate` with `args`; gives the exit code, stdout and stderr.
fn validate(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = kiln().arg("validate").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fixture with one edit, written to a temp folder under `name`.
fn edited(fixture_name: &str, name: &str, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(fixture(fixture_name)).unwrap();
    assert!(text.contains(from), "{from}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    (dir, path)
}

#[test]
fn a_get_pipeline_json_is_valid_with_a_summary() {
    let path = fixture("hello-web.pipeline.json");
    let (code, stdout, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("valid pipeline hello-web (4 stages, 4 actions, 2 artifacts, 0 warnings)"),
        "{stdout}"
    );
}

#[test]
fn a_template_resolves_its_parameters_and_a_parameter_given_wins() {
    let path = fixture("template.yml");
    let (code, stdout, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    // Name: !Join of two parameters' defaults; RoleArn's !GetAtt is not needed, so not an error.
    assert!(
        stdout.contains("valid pipeline orders-staging (3 stages, 4 actions, 2 artifacts"),
        "{stdout}"
    );
    let (code, stdout, stderr) = validate(&[
        path.as_os_str(),
        "--parameter".as_ref(),
        "Environment=production".as_ref(),
        "--parameter".as_ref(),
        "ServiceName=billing".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("valid pipeline billing-production"),
        "{stdout}"
    );
}

#[test]
fn a_parameter_without_a_value_is_named_with_the_flag_to_give() {
    let (_dir, path) = edited(
        "template.yml",
        "template.yml",
        "  BranchName:\n    Type: String\n    Default: main\n",
        "  BranchName:\n    Type: String\n",
    );
    let (code, _, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the parameter `BranchName` has no value: it has no Default"),
        "{stderr}"
    );
    assert!(
        stderr.contains("give --parameter BranchName=VALUE"),
        "{stderr}"
    );
    // Both places that read it: the trigger's branch filter and the source's BranchName.
    assert!(stderr.contains("template.yml:91:35"), "{stderr}");
    assert!(stderr.contains("template.yml:106:34"), "{stderr}");
    let (code, stdout, stderr) = validate(&[
        path.as_os_str(),
        "--parameter".as_ref(),
        "BranchName=trunk".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid pipeline orders-staging"), "{stdout}");
}

#[test]
fn an_input_artifact_produced_too_late_is_shown_at_its_line_and_column() {
    // The build reads BuildArtifact, which only the build itself produces.
    let (_dir, path) = edited(
        "hello-web.pipeline.json",
        "pipeline.json",
        "\"name\": \"SourceArtifact\"\n                            }\n                        ],\n                        \"region\": \"us-east-1\",\n                        \"namespace\": \"BuildVariables\"",
        "\"name\": \"BuildArtifact\"\n                            }\n                        ],\n                        \"region\": \"us-east-1\",\n                        \"namespace\": \"BuildVariables\"",
    );
    let (code, stdout, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: the input artifact `BuildArtifact` of Build/Build is produced by Build/Build, which does not run before it"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("pipeline.json:62:41"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
    assert!(
        stderr.contains("give Build/Build a runOrder higher"),
        "{stderr}"
    );
    assert!(!stdout.contains("valid pipeline"), "{stdout}");
}

#[test]
fn an_unsupported_provider_is_named_with_what_kiln_runs() {
    let (_dir, path) = edited(
        "hello-web.pipeline.json",
        "pipeline.json",
        "\"provider\": \"CodeDeploy\"",
        "\"provider\": \"CloudFormation\"",
    );
    let (code, _, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "Deploy/Deploy: kiln does not run Deploy actions of provider CloudFormation (owner AWS)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("pipeline.json:99:41"), "{stderr}");
    assert!(stderr.contains("Deploy actions CodeDeploy"), "{stderr}");
}

#[test]
fn a_json_syntax_error_has_its_place() {
    let (_dir, path) = edited(
        "hello-web.pipeline.json",
        "pipeline.json",
        "\"runOrder\": 1,\n",
        "\"runOrder\": 1\n",
    );
    let (code, _, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: this is not valid JSON: expected `,` or `}`"),
        "{stderr}"
    );
    assert!(stderr.contains("pipeline.json:22:25"), "{stderr}");
    assert!(stderr.contains("\"configuration\": {"), "{stderr}");
}

#[test]
fn a_template_with_two_pipelines_validates_both() {
    let path = fixture("two-pipelines.yml");
    let (code, stdout, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("valid pipeline service (2 stages"),
        "{stdout}"
    );
    // No Name: the resource's logical id.
    assert!(
        stdout.contains("valid pipeline ChecksPipeline (2 stages"),
        "{stdout}"
    );
}

#[test]
fn a_pipeline_is_recognised_by_content_whatever_its_name() {
    let (_dir, path) = edited(
        "hello-web.pipeline.json",
        "cicd.json",
        "hello-web",
        "hello-web",
    );
    let (code, stdout, stderr) = validate(&[path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid pipeline hello-web"), "{stdout}");
}

#[test]
fn json_findings_list_each_error_with_its_place() {
    let (_dir, path) = edited(
        "hello-web.pipeline.json",
        "pipeline.json",
        "\"ProjectName\": \"hello-web-build\"",
        "\"ProjectNme\": \"hello-web-build\"",
    );
    let (code, stdout, _) = validate(&[path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 43);
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("a CodeBuild action needs `ProjectName`"),
        "{d}"
    );
    assert!(
        d["help"]
            .as_str()
            .unwrap()
            .contains("is `ProjectNme` meant to be `ProjectName`?"),
        "{d}"
    );
}
