//! Which project a build is of: by its repository's path and its buildspec, not by its folder's
//! name, so two checkouts called `app` have their own build numbers, records and `cache:` entries;
//! `--project NAME` names one on purpose.

use std::path::{Path, PathBuf};

use crate::support::{Run, build_commands, kiln, own_cache};

/// Two folders both called `app`, in two places, and one machine's state and cache.
struct TwoApps {
    _parents: [tempfile::TempDir; 2],
    apps: [PathBuf; 2],
    state: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl TwoApps {
    fn new(buildspec: &str) -> Self {
        let parents = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let apps = [parents[0].path().join("app"), parents[1].path().join("app")];
        for app in &apps {
            std::fs::create_dir(app).unwrap();
            std::fs::write(app.join("buildspec.yml"), buildspec).unwrap();
        }
        Self {
            _parents: parents,
            apps,
            state: tempfile::tempdir().unwrap(),
            cache: own_cache(),
        }
    }

    /// `kiln build DIR --no-cache`: both folders hold the same files, which the action cache
    /// would take for one build.
    fn build(&self, dir: &Path, extra: &[&str]) -> Run {
        let out = dir.join("out");
        let output = kiln()
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("build")
            .arg(dir)
            .args(["--json", "--no-cache", "--output"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        Run::new(output, out)
    }
}

#[test]
fn two_folders_called_app_are_two_projects_with_their_own_build_numbers() {
    let two = TwoApps::new(&build_commands(&["echo number=$CODEBUILD_BUILD_NUMBER"]));
    let first = two.build(&two.apps[0], &[]);
    let second = two.build(&two.apps[1], &[]);
    for run in [&first, &second] {
        run.success();
        assert_eq!(run.json["build_number"], 1);
        assert_eq!(run.output_lines(), ["number=1"]);
    }
    let (a, b) = (
        first.json["project"].as_str().unwrap(),
        second.json["project"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    for id in [a, b] {
        assert!(
            id.starts_with("app-") && id.len() == "app-".len() + 8,
            "{id}"
        );
        assert!(
            two.state
                .path()
                .join("builds")
                .join(id)
                .join("1.json")
                .is_file()
        );
    }
    assert!(
        first.json["build_id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{a}:")))
    );
    // The same folder again is the same project.
    two.build(&two.apps[0], &[]).success();
    assert_eq!(two.build(&two.apps[0], &[]).json["build_number"], 3);
}

#[test]
fn one_project_name_on_both_folders_shares_their_build_numbers() {
    let two = TwoApps::new(&build_commands(&["true"]));
    let first = two.build(&two.apps[0], &["--project", "same"]);
    let second = two.build(&two.apps[1], &["--project", "same"]);
    first.success();
    second.success();
    assert_eq!(first.json["build_number"], 1);
    assert_eq!(second.json["build_number"], 2);
    assert_eq!(second.json["project"], "same");
}

#[test]
fn cache_entries_of_two_folders_called_app_are_their_own() {
    let two = TwoApps::new(
        "version: 0.2\nphases:\n  install:\n    commands:\n      - test -f deps/d && echo from-cache || { mkdir -p deps && echo d > deps/d; }\ncache:\n  key: deps-v1\n  paths: [deps/**/*]\n",
    );
    two.build(&two.apps[0], &[])
        .success()
        .log_has("Saved cache for key deps-v1");
    let second = two.build(&two.apps[1], &[]);
    second.success().log_has("No cache found for key deps-v1");
    assert!(
        second.output_lines().is_empty(),
        "{:?}",
        second.output_lines()
    );
    // Named alike on purpose, they are one project.
    two.build(&two.apps[0], &["--project", "same"]).success();
    let shared = two.build(&two.apps[1], &["--project", "same"]);
    shared.success().log_has("Restored cache deps-v1");
    assert_eq!(shared.output_lines(), ["from-cache"]);
}

#[test]
fn a_folder_of_a_repository_and_its_root_with_b_are_one_project() {
    let two = TwoApps::new(&build_commands(&["true"]));
    let repo = &two.apps[0];
    std::fs::create_dir(repo.join("svc")).unwrap();
    std::fs::rename(repo.join("buildspec.yml"), repo.join("svc/buildspec.yml")).unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(repo)
        .status()
        .expect("git runs: apt-get install git");
    assert!(git.success());
    let by_folder = two.build(&repo.join("svc"), &[]);
    let by_root = two.build(repo, &["-b", "svc/buildspec.yml"]);
    by_folder.success();
    by_root.success();
    assert_eq!(by_folder.json["project"], by_root.json["project"]);
    assert!(
        by_root.json["project"]
            .as_str()
            .is_some_and(|p| p.starts_with("app-svc-")),
        "{}",
        by_root.json["project"]
    );
    assert_eq!(by_root.json["build_number"], 2);
}

#[test]
fn package_from_build_finds_the_build_of_the_folder_it_runs_in() {
    let two = TwoApps::new(
        &(build_commands(&["printf 'version: 0.0\\nos: linux\\n' > appspec.yml"])
            + "artifacts:\n  files: [appspec.yml]\n"),
    );
    two.build(&two.apps[0], &[]).success();
    let out = kiln()
        .current_dir(&two.apps[1])
        .arg("--state-dir")
        .arg(two.state.path())
        .args(["package", "--from-build", "1", "-o", "r.zip"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the other app's build was found"
    );
    let out = kiln()
        .current_dir(&two.apps[0])
        .arg("--state-dir")
        .arg(two.state.path())
        .args(["package", "--from-build", "1", "-o", "r.zip"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(two.apps[0].join("r.zip").is_file());
}
