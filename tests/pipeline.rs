//! `kiln pipeline`: CodePipeline declarations run as they are, in a temp git repository: sources,
//! builds, approvals, deployments, run order, variables, execution modes, retry, stop, watch.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{kiln, own_cache};

/// A git repository holding a pipeline, with kiln's state and cache of its own.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    cache: tempfile::TempDir,
    children: std::cell::RefCell<Vec<Child>>,
}

impl Drop for Project {
    fn drop(&mut self) {
        for child in self.children.borrow_mut().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Project {
    pub fn new() -> Self {
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            cache: own_cache(),
            children: Default::default(),
        };
        p.git(&["init", "-q", "-b", "main"]);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, text: &str) -> &Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commits everything; the commit's id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn pipeline(&self, value: &Value) -> &Self {
        self.write(
            "pipeline.json",
            &serde_json::to_string_pretty(value).unwrap(),
        )
    }

    pub fn kiln(&self) -> Command {
        let mut cmd = kiln();
        cmd.arg("--state-dir")
            .arg(self.state.path())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.kiln().args(args).output().unwrap()
    }

    /// Starts `kiln ARGS` in the background (killed when the project is dropped); its output goes
    /// to a file of the state dir, returned.
    pub fn spawn(&self, args: &[&str]) -> PathBuf {
        let log = self
            .state
            .path()
            .join(format!("spawned-{}.log", self.children.borrow().len()));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .kiln()
            .args(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.borrow_mut().push(child);
        log
    }

    /// Waits for every spawned process; their exit codes in the order they were spawned.
    pub fn wait_all(&self, limit: Duration) -> Vec<Option<i32>> {
        let deadline = Instant::now() + limit;
        let mut codes = Vec::new();
        for child in self.children.borrow_mut().iter_mut() {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    codes.push(status.code());
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    codes.push(None);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        codes
    }

    /// The pipeline's executions, newest first.
    pub fn executions(&self, pipeline: &str) -> Vec<Value> {
        let out = self.run(&[
            "pipeline",
            "executions",
            pipeline,
            "--json",
            "--limit",
            "100",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }

    /// Waits until the pipeline's executions satisfy `ready`, and gives them; fails with what
    /// the spawned processes said when they do not in time.
    pub fn wait_for(
        &self,
        pipeline: &str,
        what: &str,
        ready: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let all = self.executions(pipeline);
            if ready(&all) {
                return all;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; executions: {}\nspawned output:\n{}",
                    serde_json::to_string_pretty(&all).unwrap(),
                    self.spawned_output()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn spawned_output(&self) -> String {
        let mut out = String::new();
        for i in 0..self.children.borrow().len() {
            let path = self.state.path().join(format!("spawned-{i}.log"));
            out.push_str(&format!(
                "--- {i}\n{}\n",
                std::fs::read_to_string(path).unwrap_or_default()
            ));
        }
        out
    }
}

/// An execution's action record.
pub fn action<'a>(execution: &'a Value, stage: &str, action: &str) -> &'a Value {
    let stage = execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage}"));
    stage["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == action)
        .unwrap_or_else(|| panic!("no action {action}"))
}

/// Whether an execution's action has this status.
pub fn is(execution: &Value, stage: &str, name: &str, status: &str) -> bool {
    action(execution, stage, name)["status"] == status
}

fn type_id(category: &str, provider: &str) -> Value {
    let owner = if provider == "GitHub" {
        "ThirdParty"
    } else {
        "AWS"
    };
    json!({"category": category, "owner": owner, "provider": provider, "version": "1"})
}

fn names(list: &[&str]) -> Value {
    Value::Array(list.iter().map(|n| json!({ "name": n })).collect())
}

pub fn source(name: &str, branch: &str, output: &str, namespace: &str) -> Value {
    json!({
        "name": name,
        "actionTypeId": type_id("Source", "CodeCommit"),
        "runOrder": 1,
        "configuration": {"RepositoryName": "app", "BranchName": branch},
        "outputArtifacts": names(&[output]),
        "inputArtifacts": [],
        "namespace": namespace
    })
}

pub fn build(
    name: &str,
    project: &str,
    inputs: &[&str],
    outputs: &[&str],
    run_order: u32,
) -> Value {
    json!({
        "name": name,
        "actionTypeId": type_id("Build", "CodeBuild"),
        "runOrder": run_order,
        "configuration": {"ProjectName": project},
        "inputArtifacts": names(inputs),
        "outputArtifacts": names(outputs),
        "namespace": format!("{name}NS")
    })
}

pub fn approval(name: &str, custom: &str) -> Value {
    json!({
        "name": name,
        "actionTypeId": type_id("Approval", "Manual"),
        "runOrder": 1,
        "configuration": {"CustomData": custom}
    })
}

pub fn deploy(name: &str, input: &str, group: &str) -> Value {
    json!({
        "name": name,
        "actionTypeId": type_id("Deploy", "CodeDeploy"),
        "runOrder": 1,
        "configuration": {"ApplicationName": "app", "DeploymentGroupName": group},
        "inputArtifacts": names(&[input]),
        "outputArtifacts": []
    })
}

pub fn pipeline(name: &str, mode: &str, stages: Vec<(&str, Vec<Value>)>) -> Value {
    json!({
        "pipeline": {
            "name": name,
            "roleArn": "arn:aws:iam::111122223333:role/pipeline",
            "artifactStore": {"type": "S3", "location": "artifacts-bucket"},
            "stages": stages.into_iter().map(|(n, actions)| json!({"name": n, "actions": actions})).collect::<Vec<_>>(),
            "executionMode": mode,
            "pipelineType": "V2",
            "version": 1
        }
    })
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kiln failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The hello-web example in a repository of its own, its site deployed into `www`.
fn hello_web(www: &Path) -> Project {
    let p = Project::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-web");
    for entry in walk(&example) {
        let rel = entry.strip_prefix(&example).unwrap();
        if rel.starts_with(".kiln") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        p.write(rel.to_str().unwrap(), &text);
    }
    let appspec = std::fs::read_to_string(p.path().join("appspec.yml")).unwrap();
    assert!(appspec.contains("/var/www/hello-web"), "{appspec}");
    p.write(
        "appspec.yml",
        &appspec.replace("/var/www/hello-web", www.to_str().unwrap()),
    );
    p.commit("the first page");
    p
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_hello_web_pipeline_runs_end_to_end_with_its_approval_given_by_the_cli() {
    let www = tempfile::tempdir().unwrap();
    let site = www.path().join("site");
    let p = hello_web(&site);
    let head = p.git(&["rev-parse", "HEAD"]);
    p.spawn(&["pipeline", "run", "pipeline.json", "--json"]);
    let waiting = p.wait_for("hello-web", "the approval", |all| {
        all.first()
            .is_some_and(|e| is(e, "Approve", "Release", "InProgress"))
    });
    let e = &waiting[0];
    // Nothing is deployed before the approval.
    assert!(!site.exists());
    assert!(is(e, "Deploy", "Deploy", "Pending"));
    // The source took the branch's head; its variables reached the build and the approval.
    assert_eq!(e["sourceRevisions"][0]["revisionId"], head.as_str());
    let source = action(e, "Source", "Source");
    assert_eq!(source["variables"]["CommitId"], head.as_str());
    assert_eq!(source["variables"]["BranchName"], "main");
    let build = action(e, "Build", "Build");
    assert_eq!(build["variables"]["SITE_VERSION"], "1.0.1");
    assert_eq!(
        build["inputArtifacts"][0]["digest"],
        source["outputArtifacts"][0]["digest"]
    );
    let custom = action(e, "Approve", "Release")["approval"]["customData"]
        .as_str()
        .unwrap();
    assert_eq!(custom, format!("Release hello-web 1.0.1 (commit {head})?"));
    // The build's log holds the commit, passed as a PLAINTEXT variable.
    let log = std::fs::read_to_string(build["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("Entering phase BUILD"), "{log}");

    let out = p.run(&[
        "pipeline",
        "approve",
        "hello-web",
        "Approve",
        "Release",
        "--comment",
        "ship it",
    ]);
    assert!(ok(&out).contains("approved"));
    let codes = p.wait_all(Duration::from_secs(120));
    assert_eq!(codes, [Some(0)], "{}", p.spawned_output());
    let e = &p.executions("hello-web")[0];
    assert_eq!(e["status"], "Succeeded");
    let release = action(e, "Approve", "Release");
    assert_eq!(release["approval"]["decision"]["approved"], true);
    assert_eq!(release["approval"]["decision"]["comment"], "ship it");
    let deployed = action(e, "Deploy", "Deploy");
    assert_eq!(deployed["status"], "Succeeded");
    assert!(deployed["deploymentId"].as_str().unwrap().starts_with("d-"));
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("<h1>Welcome</h1>"), "{index}");
    assert_eq!(
        std::fs::read_to_string(site.join("VERSION"))
            .unwrap()
            .trim(),
        "1.0.1"
    );
    // The revision went to the pipeline's artifact store, by digest.
    let location = deployed["variables"]["RevisionLocation"].as_str().unwrap();
    assert!(location.starts_with("file://"), "{location}");
    assert!(Path::new(location.trim_start_matches("file://")).is_file());
}

#[test]
fn a_rejected_approval_fails_the_execution_and_nothing_is_deployed() {
    let www = tempfile::tempdir().unwrap();
    let site = www.path().join("site");
    let p = hello_web(&site);
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("hello-web", "the approval", |all| {
        all.first()
            .is_some_and(|e| is(e, "Approve", "Release", "InProgress"))
    });
    ok(&p.run(&[
        "pipeline",
        "approve",
        "hello-web",
        "Approve",
        "Release",
        "--reject",
        "--comment",
        "typo on the page",
    ]));
    assert_eq!(p.wait_all(Duration::from_secs(60)), [Some(1)]);
    let e = &p.executions("hello-web")[0];
    assert_eq!(e["status"], "Failed");
    let release = action(e, "Approve", "Release");
    assert_eq!(release["status"], "Failed");
    assert!(
        release["error"]
            .as_str()
            .unwrap()
            .contains("typo on the page"),
        "{release}"
    );
    assert_eq!(action(e, "Deploy", "Deploy")["status"], "Pending");
    assert!(!site.exists());
    // A second answer is refused: the approval was answered.
    let again = p.run(&["pipeline", "approve", "hello-web", "Approve", "Release"]);
    assert!(!again.status.success());
}

impl Project {
    /// Kills the `i`th spawned process with SIGKILL, as a crash would.
    pub fn kill(&self, i: usize) {
        let mut children = self.children.borrow_mut();
        children[i].kill().unwrap();
        children[i].wait().unwrap();
    }
}

/// A buildspec whose build runs `commands` and publishes the folder `out`.
fn buildspec(commands: &[&str], exported: &[&str]) -> String {
    let mut text = String::from("version: 0.2\n");
    if !exported.is_empty() {
        text.push_str("env:\n  exported-variables:\n");
        for name in exported {
            text.push_str(&format!("    - {name}\n"));
        }
    }
    text.push_str("phases:\n  build:\n    commands:\n");
    for c in commands {
        text.push_str(&format!("      - {}\n", serde_json::to_string(c).unwrap()));
    }
    text.push_str("artifacts:\n  base-directory: out\n  files:\n    - '**/*'\n");
    text
}

fn ms(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a time: {v}"))
}

#[test]
fn actions_of_equal_run_order_run_side_by_side_and_the_next_order_waits_for_them() {
    let p = Project::new();
    p.write(
        "kiln.toml",
        "[pipeline.projects]\nproj-a = \"ci/a.yml\"\nproj-b = \"ci/b.yml\"\nproj-c = \"ci/c.yml\"\n",
    );
    p.write(
        "ci/a.yml",
        &buildspec(&["sleep 2", "mkdir out", "echo alpha > out/a.txt"], &[]),
    );
    p.write(
        "ci/b.yml",
        &buildspec(&["sleep 2", "mkdir out", "echo beta > out/b.txt"], &[]),
    );
    p.write(
        "ci/c.yml",
        &buildspec(
            &[
                "mkdir out",
                "export BOTH=\"$(cat $CODEBUILD_SRC_DIR_OutA/a.txt)+$(cat $CODEBUILD_SRC_DIR_OutB/b.txt)\"",
                "echo \"$BOTH\" > out/both.txt",
            ],
            &["BOTH"],
        ),
    );
    // The buildspec is read from the primary source, as CodeBuild reads it.
    let mut c = build("C", "proj-c", &["OutA", "Src", "OutB"], &["OutC"], 2);
    c["configuration"]["PrimarySource"] = json!("Src");
    p.pipeline(&pipeline(
        "fan",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            (
                "Build",
                vec![
                    build("A", "proj-a", &["Src"], &["OutA"], 1),
                    build("B", "proj-b", &["Src"], &["OutB"], 1),
                    c,
                ],
            ),
        ],
    ));
    p.commit("three builds");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    ok(&out);
    let e = json_of(&out);
    assert_eq!(e["status"], "Succeeded");
    let (a, b, c) = (
        action(&e, "Build", "A"),
        action(&e, "Build", "B"),
        action(&e, "Build", "C"),
    );
    // A and B (run order 1) overlap; C (run order 2) starts once both ended.
    assert!(
        ms(&a["startedMs"]) < ms(&b["endedMs"]) && ms(&b["startedMs"]) < ms(&a["endedMs"]),
        "A and B did not run side by side: {a}\n{b}"
    );
    assert!(ms(&c["startedMs"]) >= ms(&a["endedMs"]).max(ms(&b["endedMs"])));
    assert_eq!(c["variables"]["BOTH"], "alpha+beta");
    assert_eq!(
        c["inputArtifacts"][0]["digest"],
        a["outputArtifacts"][0]["digest"]
    );
    assert_eq!(
        c["inputArtifacts"][2]["digest"],
        b["outputArtifacts"][0]["digest"]
    );
}

#[test]
fn a_failing_action_fails_its_stage_and_the_execution_stops_there() {
    let p = Project::new();
    p.write(
        "kiln.toml",
        "[pipeline.projects]\nbad = \"ci/bad.yml\"\ngood = \"ci/good.yml\"\n",
    );
    p.write(
        "ci/bad.yml",
        &buildspec(&["echo failing on purpose", "exit 3"], &[]),
    );
    p.write(
        "ci/good.yml",
        &buildspec(&["sleep 1", "mkdir out", "echo ok > out/ok"], &[]),
    );
    p.pipeline(&pipeline(
        "stops",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            (
                "Test",
                vec![
                    build("Bad", "bad", &["Src"], &[], 1),
                    build("Good", "good", &["Src"], &["Ok"], 1),
                ],
            ),
            ("Later", vec![build("Never", "good", &["Ok"], &[], 1)]),
        ],
    ));
    p.commit("a failing test");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = json_of(&out);
    assert_eq!(e["status"], "Failed");
    let bad = action(&e, "Test", "Bad");
    assert_eq!(bad["status"], "Failed");
    assert!(
        bad["error"].as_str().unwrap().contains("FAILED in BUILD"),
        "{bad}"
    );
    let log = std::fs::read_to_string(bad["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("failing on purpose"), "{log}");
    // Its sibling of the same run order finished; the next stage never started.
    assert_eq!(action(&e, "Test", "Good")["status"], "Succeeded");
    assert_eq!(e["stages"][1]["status"], "Failed");
    assert_eq!(action(&e, "Later", "Never")["status"], "Pending");
    assert!(e["statusSummary"].as_str().unwrap().contains("Bad"), "{e}");
}

#[test]
fn variables_cross_namespaces_and_pipeline_variables_take_the_values_given() {
    let p = Project::new();
    p.write(
        "kiln.toml",
        "[pipeline.projects]\nversion = \"ci/version.yml\"\nuse = \"ci/use.yml\"\n",
    );
    p.write(
        "ci/version.yml",
        &buildspec(
            &[
                "export VERSION=\"7.$CODEBUILD_BUILD_NUMBER\"",
                "mkdir out",
                "touch out/v",
            ],
            &["VERSION"],
        ),
    );
    p.write(
        "ci/use.yml",
        &buildspec(
            &[
                "export GOT=\"$V|$TARGET|$COMMIT|$EXEC\"",
                "mkdir out",
                "touch out/u",
            ],
            &["GOT"],
        ),
    );
    let mut user = build("Use", "use", &["Src"], &[], 1);
    user["configuration"]["EnvironmentVariables"] =
        json!(serde_json::to_string(&json!([
        {"name": "V", "value": "#{VersionNS.VERSION}", "type": "PLAINTEXT"},
        {"name": "TARGET", "value": "#{variables.target}", "type": "PLAINTEXT"},
        {"name": "COMMIT", "value": "#{SourceVariables.CommitId}", "type": "PLAINTEXT"},
        {"name": "EXEC", "value": "#{codepipeline.PipelineExecutionId}", "type": "PLAINTEXT"}
    ]))
    .unwrap());
    let mut def = pipeline(
        "vars",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            (
                "Version",
                vec![build("Version", "version", &["Src"], &[], 1)],
            ),
            ("Use", vec![user]),
        ],
    );
    def["pipeline"]["variables"] = json!([{"name": "target", "defaultValue": "staging"}]);
    p.pipeline(&def);
    let head = p.commit("variables");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    let e = json_of(&out);
    assert_eq!(e["status"], "Succeeded", "{e}");
    let got = action(&e, "Use", "Use")["variables"]["GOT"]
        .as_str()
        .unwrap()
        .to_string();
    let id = e["id"].as_str().unwrap();
    assert_eq!(got, format!("7.1|staging|{head}|{id}"));
    // A value given at start replaces the default; an undeclared one is refused.
    let out = p.run(&[
        "pipeline",
        "run",
        "pipeline.json",
        "--json",
        "--variable",
        "target=prod",
    ]);
    let e = json_of(&out);
    let got = action(&e, "Use", "Use")["variables"]["GOT"]
        .as_str()
        .unwrap()
        .to_string();
    // The Version build is a cache hit (same source, same buildspec): its exported variables are
    // build 1's, as the cache replays them.
    assert!(got.starts_with("7.1|prod|"), "{got}");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--variable", "nope=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("declares no variable `nope`"));
}

#[test]
fn source_actions_of_several_branches_are_codebuild_secondary_sources() {
    let p = Project::new();
    p.write("ci/site.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p out/main out/extra\n      - cp index.html out/main/\n      - cp \"$CODEBUILD_SRC_DIR_AssetsSrc/logo.txt\" out/extra/\n      - export SEEN=\"$(cat $CODEBUILD_SRC_DIR_AssetsSrc/logo.txt)\"\n      - test ! -e logo.txt\nenv:\n  exported-variables:\n    - SEEN\nartifacts:\n  base-directory: out/main\n  files:\n    - '**/*'\n  secondary-artifacts:\n    Extra:\n      base-directory: out/extra\n      files:\n        - '**/*'\n");
    p.write("kiln.toml", "[pipeline.projects]\nsite = \"ci/site.yml\"\n");
    p.write("index.html", "<h1>main</h1>\n");
    p.commit("main");
    p.git(&["checkout", "-q", "--orphan", "assets"]);
    p.git(&["rm", "-rq", "--cached", "."]);
    for f in ["index.html", "ci/site.yml", "kiln.toml"] {
        std::fs::remove_file(p.path().join(f)).unwrap();
    }
    p.write("logo.txt", "the logo\n");
    let assets = p.commit("assets");
    p.git(&["checkout", "-q", "-f", "main"]);
    p.write("kiln.toml", "[pipeline.projects]\nsite = \"ci/site.yml\"\n");
    let mut b = build(
        "Site",
        "site",
        &["AssetsSrc", "MainSrc"],
        &["Site", "Extra"],
        1,
    );
    b["configuration"]["PrimarySource"] = json!("MainSrc");
    p.pipeline(&pipeline(
        "two-sources",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![
                    source("Main", "main", "MainSrc", "MainNS"),
                    source("Assets", "assets", "AssetsSrc", "AssetsNS"),
                ],
            ),
            ("Build", vec![b]),
        ],
    ));
    let main = p.commit("the pipeline");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    let e = json_of(&out);
    assert_eq!(e["status"], "Succeeded", "{e}");
    let revisions: Vec<(&str, &str)> = e["sourceRevisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actionName"].as_str().unwrap(),
                r["revisionId"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        revisions.contains(&("Main", main.as_str())),
        "{revisions:?}"
    );
    assert!(
        revisions.contains(&("Assets", assets.as_str())),
        "{revisions:?}"
    );
    let site = action(&e, "Build", "Site");
    assert_eq!(site["variables"]["SEEN"], "the logo");
    let outputs = site["outputArtifacts"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[1]["name"], "Extra");
    assert_ne!(outputs[0]["digest"], outputs[1]["digest"]);
}

fn gate(mode: &str) -> Value {
    pipeline(
        "gate",
        mode,
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            (
                "Gate",
                vec![approval("Hold", "hold #{SourceVariables.CommitId}")],
            ),
        ],
    )
}

fn waiting_at_hold(e: &Value) -> bool {
    e["status"] == "InProgress" && is(e, "Gate", "Hold", "InProgress")
}

fn approve(p: &Project, execution: &Value) {
    ok(&p.run(&[
        "pipeline",
        "approve",
        "gate",
        "Gate",
        "Hold",
        "--execution",
        execution["id"].as_str().unwrap(),
    ]));
}

/// The execution started `n`th (1-based), from a list newest first.
fn nth(all: &[Value], n: u64) -> &Value {
    all.iter().find(|e| e["sequence"] == n).unwrap()
}

#[test]
fn in_superseded_mode_a_newer_execution_replaces_one_waiting_to_enter_a_stage() {
    let p = Project::new();
    p.pipeline(&gate("SUPERSEDED"));
    p.commit("gate");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("gate", "the first at the gate", |all| {
        all.len() == 1 && waiting_at_hold(&all[0])
    });
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("gate", "the second waiting to enter", |all| {
        all.len() == 2 && nth(all, 2)["waitingFor"] == "Gate"
    });
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    let all = p.wait_for("gate", "the second superseded", |all| {
        all.len() == 3
            && nth(all, 2)["status"] == "Superseded"
            && nth(all, 3)["waitingFor"] == "Gate"
    });
    // The first still holds the stage; the one superseded never entered it.
    assert!(waiting_at_hold(nth(&all, 1)));
    assert!(is(nth(&all, 2), "Gate", "Hold", "Pending"));
    approve(&p, nth(&all, 1));
    let all = p.wait_for("gate", "the third at the gate", |all| {
        nth(all, 1)["status"] == "Succeeded" && waiting_at_hold(nth(all, 3))
    });
    approve(&p, nth(&all, 3));
    assert_eq!(
        p.wait_all(Duration::from_secs(60)),
        [Some(0), Some(1), Some(0)]
    );
    assert_eq!(nth(&p.executions("gate"), 3)["status"], "Succeeded");
}

#[test]
fn in_queued_mode_executions_enter_a_stage_one_by_one_in_the_order_they_started() {
    let p = Project::new();
    p.pipeline(&gate("QUEUED"));
    p.commit("gate");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("gate", "the first at the gate", |all| {
        all.len() == 1 && waiting_at_hold(&all[0])
    });
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("gate", "the second waiting", |all| {
        all.len() == 2 && nth(all, 2)["waitingFor"] == "Gate"
    });
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    let all = p.wait_for("gate", "the third waiting", |all| {
        all.len() == 3 && nth(all, 3)["waitingFor"] == "Gate"
    });
    assert_eq!(nth(&all, 2)["status"], "InProgress");
    approve(&p, nth(&all, 1));
    let all = p.wait_for("gate", "the second at the gate", |all| {
        waiting_at_hold(nth(all, 2))
    });
    // The third, which started last, still waits: no execution passes another.
    assert_eq!(nth(&all, 3)["waitingFor"], "Gate");
    approve(&p, nth(&all, 2));
    let all = p.wait_for("gate", "the third at the gate", |all| {
        waiting_at_hold(nth(all, 3))
    });
    approve(&p, nth(&all, 3));
    assert_eq!(
        p.wait_all(Duration::from_secs(60)),
        [Some(0), Some(0), Some(0)]
    );
}

#[test]
fn in_parallel_mode_executions_do_not_wait_for_each_other() {
    let p = Project::new();
    p.pipeline(&gate("PARALLEL"));
    p.commit("gate");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    let all = p.wait_for("gate", "both at the gate", |all| {
        all.len() == 2 && all.iter().all(waiting_at_hold)
    });
    approve(&p, &all[0]);
    approve(&p, &all[1]);
    assert_eq!(p.wait_all(Duration::from_secs(60)), [Some(0), Some(0)]);
}

#[test]
fn retry_runs_the_failed_action_again_with_the_same_artifacts_and_secrets_stay_masked() {
    let p = Project::new();
    let secret = "tok-9f8e7d6c5b4a";
    p.write("kiln.toml", "secrets = \"ci.secrets\"\n");
    p.write("ci.secrets", "/other=1\n");
    p.write(
        "buildspec.yml",
        &buildspec(
            &[
                "echo \"token is $TOKEN\"",
                "mkdir out",
                "export LEN=${#TOKEN}",
                "touch out/x",
            ],
            &["LEN"],
        ),
    );
    let mut b = build("Build", "app", &["Src"], &["Out"], 1);
    b["configuration"]["EnvironmentVariables"] =
        json!("[{\"name\":\"TOKEN\",\"value\":\"/ci/token\",\"type\":\"PARAMETER_STORE\"}]");
    p.pipeline(&pipeline(
        "retry",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            ("Build", vec![b]),
        ],
    ));
    let first = p.commit("needs a token");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let failed = json_of(&out);
    let build_rec = action(&failed, "Build", "Build");
    assert!(
        build_rec["error"].as_str().unwrap().contains("/ci/token"),
        "{build_rec}"
    );
    let input = build_rec["inputArtifacts"][0]["digest"].clone();
    // A newer commit must not change what the retry builds.
    p.write("later.txt", "later\n");
    p.commit("a later commit");
    p.write("ci.secrets", &format!("/other=1\n/ci/token={secret}\n"));
    let out = p.run(&["pipeline", "retry", "retry", "Build", "--json"]);
    let e = json_of(&out);
    assert_eq!(e["status"], "Succeeded", "{e}");
    assert_eq!(e["id"], failed["id"]);
    let rec = action(&e, "Build", "Build");
    assert_eq!(rec["attempts"], 2);
    assert_eq!(action(&e, "Source", "Source")["attempts"], 1);
    assert_eq!(rec["inputArtifacts"][0]["digest"], input);
    assert_eq!(e["sourceRevisions"][0]["revisionId"], first.as_str());
    assert_eq!(rec["variables"]["LEN"], secret.len().to_string());
    // The secret is in neither the record nor the build's log.
    let log = std::fs::read_to_string(rec["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("token is ***"), "{log}");
    for entry in walk(p.state.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            entry.display()
        );
    }
    // A succeeded execution cannot be retried.
    let again = p.run(&["pipeline", "retry", "retry", "Build"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn stop_ends_an_execution_at_its_approval_and_abandon_ends_a_running_build() {
    let p = Project::new();
    p.pipeline(&gate("SUPERSEDED"));
    p.commit("gate");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("gate", "the gate", |all| {
        all.len() == 1 && waiting_at_hold(&all[0])
    });
    ok(&p.run(&["pipeline", "stop", "gate", "--reason", "release freeze"]));
    assert_eq!(p.wait_all(Duration::from_secs(30)), [Some(1)]);
    let e = &p.executions("gate")[0];
    assert_eq!(e["status"], "Stopped");
    assert!(
        e["statusSummary"]
            .as_str()
            .unwrap()
            .contains("release freeze")
    );
    assert_eq!(action(e, "Gate", "Hold")["status"], "Abandoned");

    let p = Project::new();
    p.write(
        "buildspec.yml",
        &buildspec(&["echo started", "sleep 60"], &[]),
    );
    p.pipeline(&pipeline(
        "long",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            ("Build", vec![build("Build", "app", &["Src"], &[], 1)]),
        ],
    ));
    p.commit("long build");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("long", "the build", |all| {
        all.len() == 1 && is(&all[0], "Build", "Build", "InProgress")
    });
    let asked = Instant::now();
    ok(&p.run(&["pipeline", "stop", "long", "--abandon"]));
    assert_eq!(p.wait_all(Duration::from_secs(30)), [Some(1)]);
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    let e = &p.executions("long")[0];
    assert_eq!(e["status"], "Stopped");
    assert_eq!(action(e, "Build", "Build")["status"], "Abandoned");
}

#[test]
fn an_execution_whose_kiln_was_killed_is_taken_over_by_stop_and_by_approve() {
    let p = Project::new();
    p.pipeline(&gate("PARALLEL"));
    p.commit("gate");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    let all = p.wait_for("gate", "both at the gate", |all| {
        all.len() == 2 && all.iter().all(waiting_at_hold)
    });
    p.kill(0);
    p.kill(1);
    // `status` tells that no process drives them any more.
    let status = ok(&p.run(&["pipeline", "status", "gate"]));
    assert!(status.contains("no kiln process drives it"), "{status}");
    // Stopping one needs no driver: it is stopped at once.
    let id = nth(&all, 1)["id"].as_str().unwrap();
    let out = ok(&p.run(&["pipeline", "stop", "gate", id]));
    assert!(out.contains("Stopped"), "{out}");
    // Approving the other drives it to its end in the approving process.
    let out = p.run(&["pipeline", "approve", "gate", "Gate", "Hold"]);
    assert!(ok(&out).contains("this one does"));
    let all = p.executions("gate");
    assert_eq!(nth(&all, 1)["status"], "Stopped");
    assert_eq!(nth(&all, 2)["status"], "Succeeded");
}

fn watched(triggers: Option<Value>) -> Value {
    let mut src = json!({
        "name": "Source",
        "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "CodeStarSourceConnection", "version": "1"},
        "runOrder": 1,
        "configuration": {
            "ConnectionArn": "arn:aws:codeconnections:us-east-1:111122223333:connection/abc",
            "FullRepositoryId": "acme/app",
            "BranchName": "main"
        },
        "outputArtifacts": [{"name": "Src"}],
        "namespace": "SourceVariables"
    });
    src["runOrder"] = json!(1);
    let mut def = pipeline(
        "watched",
        "QUEUED",
        vec![
            ("Source", vec![src]),
            ("Build", vec![build("Build", "app", &["Src"], &[], 1)]),
        ],
    );
    if let Some(t) = triggers {
        def["pipeline"]["triggers"] = t;
    }
    def
}

#[test]
fn watch_starts_an_execution_for_a_commit_its_trigger_filters_match_and_none_for_others() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &buildspec(&["mkdir out", "touch out/x"], &[]),
    );
    p.write("src/app.txt", "v1\n");
    p.pipeline(&watched(Some(json!([{
        "providerType": "CodeStarSourceConnection",
        "gitConfiguration": {
            "sourceActionName": "Source",
            "push": [{"branches": {"includes": ["main"]}, "filePaths": {"includes": ["src/**"]}}]
        }
    }]))));
    p.commit("watched");
    p.spawn(&["pipeline", "watch", "pipeline.json", "--interval", "200ms"]);
    let seen = p.state.path().join("pipelines/watched/watch.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.is_file()
        || std::fs::read_to_string(&seen)
            .unwrap_or_default()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "{}", p.spawned_output());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A commit that touches no file under src/ starts nothing.
    p.write("README.md", "docs\n");
    p.commit("docs only");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(p.executions("watched").is_empty(), "{}", p.spawned_output());
    // One that does starts an execution of that very commit.
    p.write("src/app.txt", "v2\n");
    let commit = p.commit("change the app");
    let all = p.wait_for("watched", "the execution of the commit", |all| {
        all.first().is_some_and(|e| e["status"] == "Succeeded")
    });
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["sourceRevisions"][0]["revisionId"], commit.as_str());
    assert_eq!(all[0]["trigger"]["triggerType"], "PollForSourceChanges");
}

#[test]
fn an_installed_hook_starts_an_execution_when_a_commit_lands_on_the_branch() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &buildspec(&["mkdir out", "touch out/x"], &[]),
    );
    p.pipeline(&watched(None));
    p.commit("watched");
    let out = ok(&p.run(&["pipeline", "watch", "pipeline.json", "--install-hook"]));
    assert!(out.contains("installed"), "{out}");
    // A commit on another branch starts nothing (without triggers, only the source's branch does).
    p.git(&["checkout", "-q", "-b", "feature"]);
    p.write("f.txt", "f\n");
    p.commit("feature work");
    p.git(&["checkout", "-q", "main"]);
    let commit = {
        p.write("m.txt", "m\n");
        p.commit("on main")
    };
    let all = p.wait_for("watched", "the hook's execution", |all| {
        all.iter().any(|e| e["status"] == "Succeeded")
    });
    std::thread::sleep(Duration::from_millis(1000));
    let all_now = p.executions("watched");
    assert_eq!(all_now.len(), 1, "{all:?}");
    assert_eq!(
        all_now[0]["sourceRevisions"][0]["revisionId"],
        commit.as_str()
    );
    assert_eq!(all_now[0]["trigger"]["triggerType"], "Webhook");
    ok(&p.run(&["pipeline", "watch", "pipeline.json", "--uninstall-hook"]));
    p.write("n.txt", "n\n");
    p.commit("after uninstall");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.executions("watched").len(), 1);
}

#[test]
fn an_s3_source_reads_a_kiln_store_and_a_deployment_group_can_move_the_ref_agents_follow() {
    let p = Project::new();
    let store = tempfile::tempdir().unwrap();
    let watched = tempfile::tempdir().unwrap();
    let www = tempfile::tempdir().unwrap();
    let here_root = tempfile::tempdir().unwrap();
    // A revision in a store, as a build elsewhere would have pushed it.
    let rev = tempfile::tempdir().unwrap();
    let site = www.path().join("site");
    std::fs::write(
        rev.path().join("appspec.yml"),
        format!(
            "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: {}\n",
            site.display()
        ),
    )
    .unwrap();
    std::fs::create_dir(rev.path().join("site")).unwrap();
    std::fs::write(rev.path().join("site/index.html"), "<h1>released</h1>\n").unwrap();
    let zip = store.path().join("built.zip");
    ok(&p
        .kiln()
        .arg("package")
        .arg(rev.path())
        .arg("-o")
        .arg(&zip)
        .output()
        .unwrap());
    let store_url = format!("file://{}", store.path().display());
    ok(&p.run(&[
        "push",
        zip.to_str().unwrap(),
        &format!("{store_url}/app/rev.zip"),
    ]));
    let watched_ref = format!("file://{}/prod.zip", watched.path().display());
    p.write(
        "kiln.toml",
        &format!(
            "[pipeline.sources]\nreleases = \"{store_url}\"\n\n[pipeline.deployment-groups]\nprod = {{ ref = \"{watched_ref}\" }}\nhere = {{ root = \"{}\" }}\n",
            here_root.path().display()
        ),
    );
    let s3 = json!({
        "name": "Release",
        "actionTypeId": type_id("Source", "S3"),
        "runOrder": 1,
        "configuration": {"S3Bucket": "releases", "S3ObjectKey": "app/rev.zip", "PollForSourceChanges": "false"},
        "outputArtifacts": names(&["Rev"]),
        "namespace": "ReleaseNS"
    });
    let mut prod = deploy("Prod", "Rev", "prod");
    prod["runOrder"] = json!(2);
    p.pipeline(&pipeline(
        "release",
        "SUPERSEDED",
        vec![
            ("Source", vec![s3]),
            ("Deploy", vec![deploy("Here", "Rev", "here"), prod]),
        ],
    ));
    p.commit("release pipeline");
    let out = p.run(&["pipeline", "run", "pipeline.json", "--json"]);
    let e = json_of(&out);
    assert_eq!(e["status"], "Succeeded", "{e}");
    assert_eq!(
        action(&e, "Source", "Release")["variables"]["ObjectKey"],
        "app/rev.zip"
    );
    // `here` deployed on this host, into its mapped root.
    assert_eq!(
        std::fs::read_to_string(site.join("index.html")).unwrap(),
        "<h1>released</h1>\n"
    );
    let here = action(&e, "Deploy", "Here");
    assert!(here["deploymentId"].is_string(), "{here}");
    assert!(
        here["log"]
            .as_str()
            .unwrap()
            .starts_with(here_root.path().to_str().unwrap()),
        "{here}"
    );
    // `prod` only moved the reference its hosts watch: no deployment here.
    let prod = action(&e, "Deploy", "Prod");
    assert!(prod["deploymentId"].is_null(), "{prod}");
    assert_eq!(prod["variables"]["WatchedReference"], watched_ref.as_str());
    // A host's agent then deploys it.
    let agent_root = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(&site).unwrap();
    let out = p
        .kiln()
        .args([
            "agent",
            "--watch",
            &watched_ref,
            "--once",
            "--group",
            "prod",
            "--root",
        ])
        .arg(agent_root.path())
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(site.join("index.html")).unwrap(),
        "<h1>released</h1>\n"
    );
}

#[test]
fn the_hello_web_pipeline_is_approved_through_the_web_page_and_then_deploys() {
    use crate::support::browser::{Browser, screenshot_path};
    use crate::support::serve::Serve;
    let Some(browser) = Browser::start() else {
        return;
    };
    let www = tempfile::tempdir().unwrap();
    let site = www.path().join("site");
    let p = hello_web(&site);
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    let all = p.wait_for("hello-web", "the approval", |all| {
        all.first()
            .is_some_and(|e| is(e, "Approve", "Release", "InProgress"))
    });
    let id = all[0]["id"].as_str().unwrap().to_string();
    let serve = Serve::start(p.state.path());
    let page = serve.url(&format!("/pipelines/hello-web/executions/{id}"));
    browser.open(&serve.token_url());
    browser.open(&page);
    let approval = browser.wait_for_text(".approval", "Release hello-web 1.0.1");
    assert!(approval.contains(&all[0]["sourceRevisions"][0]["revisionId"].as_str().unwrap()[..12]));
    assert!(browser.text_of("[data-stage=Build]").contains("Succeeded"));
    browser.type_into("textarea[name=comment]", "checked on staging");
    browser.click("button.approve");
    // The execution kiln pipeline run drives takes the answer and deploys.
    assert_eq!(
        p.wait_all(Duration::from_secs(120)),
        [Some(0)],
        "{}",
        p.spawned_output()
    );
    let e = &p.executions("hello-web")[0];
    assert_eq!(e["status"], "Succeeded");
    let decision = &action(e, "Approve", "Release")["approval"]["decision"];
    assert_eq!(decision["approved"], true);
    assert_eq!(decision["comment"], "checked on staging");
    assert!(
        decision["by"].as_str().unwrap().starts_with("web"),
        "{decision}"
    );
    assert_eq!(action(e, "Deploy", "Deploy")["status"], "Succeeded");
    assert!(
        std::fs::read_to_string(site.join("index.html"))
            .unwrap()
            .contains("<h1>Welcome</h1>")
    );
    // The page shows it: every stage succeeded.
    browser.open(&page);
    browser.wait_for_text("[data-stage=Deploy]", "Succeeded");
    browser.screenshot(&screenshot_path("pipeline-deployed.png"));
}

#[test]
fn ctrl_c_stops_the_execution_it_drives_and_abandons_the_running_build() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &buildspec(&["echo started", "sleep 60"], &[]),
    );
    p.pipeline(&pipeline(
        "long",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            ("Build", vec![build("Build", "app", &["Src"], &[], 1)]),
        ],
    ));
    p.commit("long build");
    p.spawn(&["pipeline", "run", "pipeline.json"]);
    p.wait_for("long", "the build", |all| {
        all.len() == 1 && is(&all[0], "Build", "Build", "InProgress")
    });
    // While it runs, the status table shows the build's log as it goes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = ok(&p.run(&["pipeline", "status", "long"]));
        if status.contains("sleep 60") {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = p.children.borrow()[0].id() as i32;
    let asked = Instant::now();
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    assert_eq!(
        p.wait_all(Duration::from_secs(30)),
        [Some(130)],
        "{}",
        p.spawned_output()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    let e = &p.executions("long")[0];
    assert_eq!(e["status"], "Stopped");
    assert!(
        e["statusSummary"].as_str().unwrap().contains("interrupted"),
        "{e}"
    );
    assert_eq!(action(e, "Build", "Build")["status"], "Abandoned");
    // Nothing of the build is left running.
    let log = action(e, "Build", "Build")["log"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        crate::support::isolation::processes_with_arg("60")
            .iter()
            .all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| !c.starts_with("sleep\u{0}60"))
                    .unwrap_or(true)
            }),
        "a sleep 60 survived; log: {log}"
    );
}

#[test]
fn a_cloudformation_template_runs_with_its_intrinsics_resolved_and_a_parameter_given() {
    let p = Project::new();
    p.write(
        "template.yml",
        r##"AWSTemplateFormatVersion: "2010-09-09"
Description: The app's pipeline, as the team deploys it with CloudFormation.
Parameters:
  RepoName:
    Type: String
    Default: app
  BranchName:
    Type: String
    Default: main
Resources:
  ArtifactBucket:
    Type: AWS::S3::Bucket
  PipelineRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
  BuildProject:
    Type: AWS::CodeBuild::Project
    Properties:
      Name: !Sub "${AWS::StackName}-build"
      ServiceRole: !GetAtt PipelineRole.Arn
      Source:
        Type: CODEPIPELINE
  Pipeline:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      Name: !Sub "${AWS::StackName}-pipeline"
      RoleArn: !GetAtt PipelineRole.Arn
      ArtifactStore:
        Type: S3
        Location: !Ref ArtifactBucket
      Stages:
        - Name: Source
          Actions:
            - Name: Checkout
              ActionTypeId: {Category: Source, Owner: AWS, Provider: CodeCommit, Version: "1"}
              Configuration:
                RepositoryName: !Ref RepoName
                BranchName: !Ref BranchName
                PollForSourceChanges: false
              OutputArtifacts: [{Name: Src}]
              Namespace: SourceVariables
        - Name: Build
          Actions:
            - Name: Build
              ActionTypeId: {Category: Build, Owner: AWS, Provider: CodeBuild, Version: "1"}
              Configuration:
                ProjectName: !Ref BuildProject
                EnvironmentVariables: !Sub '[{"name":"BRANCH","value":"${BranchName}","type":"PLAINTEXT"},{"name":"COMMIT","value":"#{SourceVariables.CommitId}","type":"PLAINTEXT"}]'
              InputArtifacts: [{Name: Src}]
              OutputArtifacts: [{Name: Out}]
"##,
    );
    p.write(
        "kiln.toml",
        "[pipeline.projects]\ntemplate-build = \"ci/buildspec.yml\"\n",
    );
    p.write(
        "ci/buildspec.yml",
        &buildspec(
            &[
                "export SEEN=\"$BRANCH $(cat which.txt) $COMMIT\"",
                "mkdir out",
                "touch out/x",
            ],
            &["SEEN"],
        ),
    );
    p.write("which.txt", "main\n");
    p.commit("main");
    p.git(&["checkout", "-q", "-b", "release"]);
    p.write("which.txt", "release\n");
    let release = p.commit("release");
    p.git(&["checkout", "-q", "main"]);
    let out = p.run(&[
        "pipeline",
        "run",
        "template.yml",
        "--parameter",
        "BranchName=release",
        "--json",
    ]);
    let e = json_of(&out);
    assert_eq!(e["pipeline"], "template-pipeline", "{e}");
    assert_eq!(e["status"], "Succeeded", "{e}");
    assert_eq!(e["sourceRevisions"][0]["revisionId"], release.as_str());
    assert_eq!(
        action(&e, "Build", "Build")["variables"]["SEEN"],
        format!("release release {release}")
    );
    // The pipeline as read, intrinsics resolved, is in the record.
    let stages = &e["definition"]["stages"];
    assert_eq!(
        stages[1]["actions"][0]["configuration"]["ProjectName"],
        "template-build"
    );
    assert_eq!(
        e["definition"]["artifactStore"]["location"],
        "ArtifactBucket"
    );
}
