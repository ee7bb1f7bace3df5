//! The examples in `examples/` build as the README says they do.

use std::path::Path;

use crate::support::{Run, kiln};

#[test]
fn the_hello_web_example_builds_with_its_artifacts() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-web");
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = kiln()
        .arg("--state-dir")
        .arg(state.path())
        .arg("build")
        .arg(&example)
        .arg("--json")
        .arg("--output")
        .arg(out.path())
        .output()
        .unwrap();
    let run = Run::new(output, out.path().to_path_buf());
    run.success()
        .phase("UPLOAD_ARTIFACTS", "SUCCEEDED")
        .log_has("checked 2 pages");
    assert_eq!(run.json["exported_variables"]["SITE_VERSION"], "1.0.1");
    assert_eq!(
        run.artifact_files("hello-web-1.0.1"),
        [
            "appspec.yml",
            "scripts/start.sh",
            "scripts/validate.sh",
            "site/VERSION",
            "site/about.html",
            "site/index.html"
        ]
    );
    assert_eq!(run.artifact_files("site"), ["about.html", "index.html"]);
    let index = std::fs::read_to_string(out.path().join("site/index.html")).unwrap();
    assert!(index.contains("<h1>Welcome</h1>"), "{index}");
}
