//! `kiln deploy`: the CodeDeploy agent's lifecycle on this host, with real hook scripts writing into
//! temp destinations.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::kiln;

/// A test host: a deployment root, a destination, and a trace file the hooks append to.
/// A deployment host in a temp dir of its own: `www` the destination, `root` kiln's root.
pub(crate) struct Host {
    dir: tempfile::TempDir,
    trace: PathBuf,
}

impl Host {
    pub(crate) fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let host = Host { dir, trace };
        std::fs::create_dir_all(host.dest()).unwrap();
        host
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub(crate) fn dest(&self) -> PathBuf {
        self.dir.path().join("www")
    }
    fn trace(&self) -> Vec<String> {
        std::fs::read_to_string(&self.trace)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn clear_trace(&self) {
        let _ = std::fs::remove_file(&self.trace);
    }

    /// Packages a revision `name`: `site/` with `files`, an AppSpec with `extra` appended, and a
    /// script for every hookable event that records `<name> <event> <group>` in the trace (and
    /// runs `hook_body` when given for that event).
    fn revision(
        &self,
        name: &str,
        files: &[(&str, &str)],
        extra: &str,
        hook_body: &[(&str, &str)],
    ) -> PathBuf {
        self.revision_with_links(name, files, &[], extra, hook_body)
    }

    /// [`Host::revision`] with symbolic links in `site/` too: (path, target).
    pub(crate) fn revision_with_links(
        &self,
        name: &str,
        files: &[(&str, &str)],
        links: &[(&str, &str)],
        extra: &str,
        hook_body: &[(&str, &str)],
    ) -> PathBuf {
        let src = self.dir.path().join(format!("src-{name}"));
        std::fs::create_dir_all(src.join("scripts")).unwrap();
        for (path, content) in files {
            let p = src.join("site").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        for (path, target) in links {
            let p = src.join("site").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
        let events = [
            "BeforeBlockTraffic",
            "AfterBlockTraffic",
            "ApplicationStop",
            "BeforeInstall",
            "AfterInstall",
            "ApplicationStart",
            "ValidateService",
            "BeforeAllowTraffic",
            "AfterAllowTraffic",
        ];
        let mut hooks = String::from("hooks:\n");
        for event in events {
            let body = hook_body
                .iter()
                .find(|(e, _)| *e == event)
                .map(|(_, b)| *b)
                .unwrap_or("");
            let script = src.join(format!("scripts/{event}.sh"));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"{name} $LIFECYCLE_EVENT $DEPLOYMENT_GROUP_NAME\" >> '{}'\n{body}\n",
                    self.trace.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            hooks.push_str(&format!(
                "  {event}:\n    - location: scripts/{event}.sh\n      timeout: 60\n"
            ));
        }
        std::fs::write(
            src.join("appspec.yml"),
            format!(
                "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: {}\n{extra}\n{hooks}",
                self.dest().display()
            ),
        )
        .unwrap();
        self.package(name)
    }

    /// Packages `src-<name>` as `<name>.zip` (again, after an edit).
    fn package(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.zip"));
        let run = kiln()
            .args(["package"])
            .arg(self.dir.path().join(format!("src-{name}")))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        out
    }

    /// Replaces `from` with `to` in revision `name`'s AppSpec and packages it again.
    fn edit_appspec(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let path = self.dir.path().join(format!("src-{name}/appspec.yml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} is not in the AppSpec");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        self.package(name)
    }

    /// The content of an installed file, below the destination.
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dest().join(rel))
            .unwrap_or_else(|e| panic!("{rel} is not installed: {e}"))
    }

    pub(crate) fn deploy(
        &self,
        revision: &Path,
        extra: &[&str],
    ) -> (Option<i32>, serde_json::Value, String) {
        let out = kiln()
            .arg("deploy")
            .arg(revision)
            .args(["--group", "web", "--json", "--root"])
            .arg(self.root())
            .args(extra)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn deployments(&self) -> Vec<serde_json::Value> {
        let out = kiln()
            .args(["deployments", "--group", "web", "--json", "--root"])
            .arg(self.root())
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }
}

fn events(trace: &[String], name: &str) -> Vec<String> {
    trace
        .iter()
        .filter(|l| l.starts_with(&format!("{name} ")))
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_lifecycle_runs_in_order_and_stop_comes_from_the_previous_revision() {
    let host = Host::new();
    let v1 = host.revision("v1", &[("index.html", "one"), ("old.txt", "old")], "", &[]);
    let (code, json, err) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(0), "{err}\n{json}");
    // First deployment: no previous revision, so no ApplicationStop nor BlockTraffic scripts.
    assert_eq!(
        events(&host.trace(), "v1"),
        [
            "BeforeInstall",
            "AfterInstall",
            "ApplicationStart",
            "ValidateService",
            "BeforeAllowTraffic",
            "AfterAllowTraffic"
        ]
    );
    assert!(host.trace()[0].ends_with(" web"), "DEPLOYMENT_GROUP_NAME");
    assert_eq!(host.read("index.html"), "one");
    let d = &json["deployment"];
    assert_eq!(d["status"], "Succeeded");
    assert!(d["digest"].as_str().unwrap().len() == 64);
    let id = d["id"].as_str().unwrap();
    assert!(id.starts_with("d-") && id.len() == 11, "{id}");
    // The agent's layout.
    let dir = PathBuf::from(d["dir"].as_str().unwrap());
    assert!(dir.join("bundle.tar").is_file());
    assert!(dir.join("deployment-archive/appspec.yml").is_file());
    let log = std::fs::read_to_string(dir.join("logs/scripts.log")).unwrap();
    assert!(log.contains("LifecycleEvent - ApplicationStart"), "{log}");
    assert!(
        log.contains("Script - scripts/ApplicationStart.sh"),
        "{log}"
    );

    host.clear_trace();
    let v2 = host.revision(
        "v2",
        &[("index.html", "two"), ("new/page.html", "new")],
        "",
        &[],
    );
    let (code, json, err) = host.deploy(&v2, &[]);
    assert_eq!(code, Some(0), "{err}\n{json}");
    let trace = host.trace();
    // The previous revision's stop scripts, then the new revision's.
    assert_eq!(
        events(&trace, "v1"),
        ["BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop"]
    );
    assert!(trace[2].starts_with("v1 ApplicationStop") && trace[3].starts_with("v2 BeforeInstall"));
    // Files of v1 that v2 does not have are gone; v2's are there.
    assert!(!host.dest().join("old.txt").exists());
    assert_eq!(host.read("index.html"), "two");
    assert_eq!(host.read("new/page.html"), "new");

    let list = host.deployments();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|d| d["status"] == "Succeeded"));
    assert_ne!(list[0]["digest"], list[1]["digest"]);
}

#[test]
fn deployments_are_listed_under_a_header_with_their_start_times() {
    let host = Host::new();
    let listed = |extra: &[&str]| {
        kiln()
            .args(["deployments", "--root"])
            .arg(host.root())
            .args(extra)
            .output()
            .unwrap()
    };
    let empty = listed(&[]);
    assert!(empty.status.success());
    assert!(empty.stdout.is_empty(), "no header over nothing");
    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    let (code, first, err) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(0), "{err}");
    let v2 = host.revision("v2", &[("index.html", "two")], "", &[]);
    let (code, second, err) = host.deploy(&v2, &["--file-exists-behavior", "OVERWRITE"]);
    assert_eq!(code, Some(0), "{err}");

    let out = listed(&[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "GROUP", "STATUS", "STARTED", "DURATION", "DIGEST", "REVISION"
        ],
        "{text}"
    );
    for (line, json) in [(lines[1], &first), (lines[2], &second)] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[0],
            json["deployment"]["id"].as_str().unwrap(),
            "{text}"
        );
        assert_eq!(words[1..3], ["web", "Succeeded"], "{text}");
        // STARTED is a date and a time of day, in the local time zone.
        let date = words[3].as_bytes();
        assert!(
            date.len() == 10 && date[4] == b'-' && date[7] == b'-',
            "{text}"
        );
        assert_eq!(words[4].len(), 8, "a time of day: {text}");
        assert!(
            words[4].chars().filter(|c| *c == ':').count() == 2,
            "{text}"
        );
    }
}

#[test]
fn deployments_made_with_another_root_are_listed_through_the_state_dir() {
    let host = Host::new();
    let state = host.dir.path().join("state");
    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    let roots = [
        host.dir.path().join("root-a"),
        host.dir.path().join("root-b"),
    ];
    for (root, group) in roots.iter().zip(["web", "api"]) {
        let out = kiln()
            .arg("deploy")
            .arg(&v1)
            .args(["--group", group, "--file-exists-behavior", "OVERWRITE"])
            .arg("--root")
            .arg(root)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = |extra: &[&std::ffi::OsStr]| {
        let out = kiln()
            .arg("deployments")
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let table = list(&[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].ends_with("ROOT"), "{table}");
    for (line, (root, group)) in lines[1..].iter().zip(roots.iter().zip(["web", "api"])) {
        let root = root.canonicalize().unwrap();
        assert!(line.ends_with(&*root.to_string_lossy()), "{table}");
        assert!(line.contains(&format!(" {group} ")), "{table}");
    }

    let json: Vec<serde_json::Value> = serde_json::from_str(&list(&["--json".as_ref()])).unwrap();
    assert_eq!(json.len(), 2);
    let a = roots[0].canonicalize().unwrap();
    assert_eq!(json[0]["root"], a.to_string_lossy().as_ref());

    // --root restricts the list to one root, without the ROOT column.
    let only = list(&["--root".as_ref(), roots[1].as_os_str()]);
    assert_eq!(only.lines().count(), 2, "{only}");
    assert!(!only.contains("ROOT"), "{only}");
    assert!(only.contains(" api "), "{only}");
}

#[test]
fn file_exists_behavior_disallow_overwrite_retain() {
    let host = Host::new();
    std::fs::write(host.dest().join("index.html"), "theirs").unwrap();
    // DISALLOW (the default): the deployment fails and says where.
    let v1 = host.revision("v1", &[("index.html", "ours")], "", &[]);
    let (code, json, _) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(1), "{json}");
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(error.contains("already exists at this location"), "{error}");
    assert!(error.contains("index.html"), "{error}");
    assert_eq!(host.read("index.html"), "theirs");
    // RETAIN in the AppSpec: theirs stays.
    let retain = host.revision(
        "r",
        &[("index.html", "ours")],
        "file_exists_behavior: RETAIN",
        &[],
    );
    let (code, _, err) = host.deploy(&retain, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(host.read("index.html"), "theirs");
    // OVERWRITE from the command line (the AppSpec says nothing): ours.
    let v2 = host.revision("v2", &[("index.html", "ours")], "", &[]);
    let (code, _, err) = host.deploy(&v2, &["--file-exists-behavior", "OVERWRITE"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(host.read("index.html"), "ours");
}

#[test]
fn permissions_set_modes_and_owners_on_what_was_installed() {
    let host = Host::new();
    let dest = host.dest();
    let root = unsafe { libc::geteuid() } == 0;
    let owner = if root { "    owner: nobody\n" } else { "" };
    let extra = format!(
        "permissions:\n  - object: {d}\n    pattern: \"*.sh\"\n    mode: 0750\n    type:\n      - file\n{owner}  - object: {d}/conf\n    mode: 600\n    type: [file]\n  - object: {d}\n    pattern: conf\n    mode: 0700\n    type: [directory]\n",
        d = dest.display()
    );
    let v1 = host.revision(
        "v1",
        &[
            ("run.sh", "#!/bin/sh\n"),
            ("readme.txt", "hi"),
            ("conf/app.ini", "x=1"),
        ],
        &extra,
        &[],
    );
    let (code, json, err) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(0), "{err}\n{json}");
    let mode = |p: &str| {
        std::fs::metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("run.sh"), 0o750);
    assert_eq!(mode("readme.txt"), 0o644, "not matched: left as packaged");
    assert_eq!(mode("conf/app.ini"), 0o600);
    assert_eq!(mode("conf"), 0o700);
    if root {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(dest.join("run.sh")).unwrap().uid(), 65534);
    }
}

#[test]
fn a_permission_claimed_twice_fails_as_on_codedeploy() {
    let host = Host::new();
    let extra = format!(
        "permissions:\n  - object: {d}\n    mode: 644\n  - object: {d}\n    pattern: \"*.html\"\n    mode: 600\n",
        d = host.dest().display()
    );
    let v1 = host.revision("v1", &[("index.html", "x")], &extra, &[]);
    let (code, json, _) = host.deploy(&v1, &["--no-rollback"]);
    assert_eq!(code, Some(1));
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(error.contains("more than once"), "{error}");
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let host = Host::new();
    let marker = host.dir.path().join("child-alive");
    let body = format!("(sleep 3; touch '{}') &\nsleep 30", marker.display());
    host.revision("v1", &[("a", "a")], "", &[("AfterInstall", &body)]);
    // Shorten AfterInstall's timeout to 1 s.
    let src = host.edit_appspec(
        "v1",
        "  AfterInstall:\n    - location: scripts/AfterInstall.sh\n      timeout: 60",
        "  AfterInstall:\n    - location: scripts/AfterInstall.sh\n      timeout: 1",
    );
    let started = std::time::Instant::now();
    let (code, json, _) = host.deploy(&src, &["--no-rollback"]);
    assert_eq!(code, Some(1));
    assert!(
        started.elapsed().as_secs() < 15,
        "the hook was not stopped at its timeout"
    );
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(
        error.contains("scripts/AfterInstall.sh failed to complete in 1 seconds"),
        "{error}"
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(!marker.exists(), "the hook's child outlived the timeout");
    assert_eq!(
        events(&host.trace(), "v1"),
        ["BeforeInstall", "AfterInstall"]
    );
}

#[test]
fn a_failed_deployment_rolls_back_to_the_last_good_revision() {
    let host = Host::new();
    let v1 = host.revision(
        "v1",
        &[("index.html", "one"), ("only-v1.txt", "1")],
        "",
        &[],
    );
    let (code, _, err) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(0), "{err}");
    host.clear_trace();
    let v2 = host.revision(
        "v2",
        &[("index.html", "two"), ("only-v2.txt", "2")],
        "",
        &[(
            "ValidateService",
            "echo checking health; echo 'health check: bad' >&2; exit 3",
        )],
    );
    let (code, json, _) = host.deploy(&v2, &[]);
    assert_eq!(code, Some(1), "{json}");
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(
        error.contains("scripts/ValidateService.sh failed with exit code 3"),
        "{error}"
    );
    assert!(
        error.contains("health check: bad"),
        "the tail of its output: {error}"
    );
    // The rollback: a new deployment of v1, its files back, its ApplicationStart run.
    let rollback = &json["rollback"];
    assert_eq!(rollback["status"], "Succeeded", "{json}");
    assert_eq!(rollback["rollback_of"], json["deployment"]["id"]);
    assert_eq!(host.read("index.html"), "one");
    assert!(host.dest().join("only-v1.txt").exists());
    assert!(!host.dest().join("only-v2.txt").exists());
    let trace = host.trace();
    let failed_at = trace
        .iter()
        .position(|l| l.starts_with("v2 ValidateService"))
        .unwrap();
    // v2 installed, so the rollback stops v2 first, then starts v1.
    assert!(
        trace[failed_at..]
            .iter()
            .any(|l| l.starts_with("v2 ApplicationStop"))
    );
    assert!(
        trace[failed_at..]
            .iter()
            .any(|l| l.starts_with("v1 ApplicationStart"))
    );
    let list = host.deployments();
    assert_eq!(list.len(), 3);
    assert_eq!(list[1]["status"], "Failed");
    assert_eq!(list[1]["rolled_back_by"], list[2]["id"]);
}

#[test]
fn no_rollback_keeps_the_failed_state() {
    let host = Host::new();
    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    assert_eq!(host.deploy(&v1, &[]).0, Some(0));
    let v2 = host.revision(
        "v2",
        &[("index.html", "two")],
        "",
        &[("ValidateService", "exit 1")],
    );
    let (code, json, _) = host.deploy(&v2, &["--no-rollback"]);
    assert_eq!(code, Some(1));
    assert!(json["rollback"].is_null());
    assert_eq!(host.read("index.html"), "two");
}

#[test]
fn only_max_revisions_deployment_folders_are_kept() {
    let host = Host::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let v = host.revision(
            &format!("v{i}"),
            &[("index.html", &format!("{i}"))],
            "",
            &[],
        );
        let (code, json, err) = host.deploy(&v, &["--max-revisions", "2"]);
        assert_eq!(code, Some(0), "{err}");
        ids.push(json["deployment"]["id"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let group_dir = std::fs::read_dir(host.root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join(&ids[0]).exists() || p.join(&ids[3]).exists())
        .unwrap();
    let mut kept: Vec<String> = std::fs::read_dir(&group_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let mut want = vec![ids[2].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(kept, want);
    // The records stay.
    assert_eq!(host.deployments().len(), 4);
}

/// A revision whose AfterInstall runs as `nobody` and writes its uid to `<host>/uid`.
fn runas_revision(host: &Host) -> PathBuf {
    let out = host.dir.path().join("uid");
    host.revision(
        "v1",
        &[("a", "a")],
        "",
        &[("AfterInstall", &format!("id -u > '{}'", out.display()))],
    );
    host.edit_appspec(
        "v1",
        "scripts/AfterInstall.sh\n      timeout: 60",
        "scripts/AfterInstall.sh\n      timeout: 60\n      runas: nobody",
    )
}

#[test]
fn runas_switches_user_as_root_and_is_refused_clearly_otherwise() {
    let host = Host::new();
    let v1 = runas_revision(&host);
    if unsafe { libc::geteuid() } == 0 {
        // nobody must be able to write the uid file and the trace.
        std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(host.dir.path().join("trace"), "").unwrap();
        std::fs::set_permissions(
            host.dir.path().join("trace"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let (code, json, err) = host.deploy(&v1, &[]);
        assert_eq!(code, Some(0), "{err}\n{json}");
        let uid = std::fs::read_to_string(host.dir.path().join("uid")).unwrap();
        assert_eq!(uid.trim(), "65534");
    } else {
        let (code, json, _) = host.deploy(&v1, &[]);
        assert_eq!(code, Some(1));
        let error = json["deployment"]["error"].as_str().unwrap();
        assert!(
            error.contains("runas: nobody needs kiln to run as root"),
            "{error}"
        );
    }
}

#[test]
fn an_invalid_appspec_fails_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appspec.yml");
    std::fs::write(
        &path,
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: relative/path\nhooks:\n  Install:\n    - location: x.sh\n",
    )
    .unwrap();
    let out = kiln().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("appspec.yml:5:18"), "{err}");
    assert!(err.contains("not an absolute path"), "{err}");
    assert!(err.contains("`Install` cannot run scripts"), "{err}");
    // A Lambda AppSpec is recognised and refused.
    std::fs::write(
        &path,
        "version: 0.0\nResources:\n  - fn:\n      Type: AWS::Lambda::Function\n",
    )
    .unwrap();
    let out = kiln().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Lambda or Amazon ECS"));
}

#[test]
fn a_misspelt_appspec_key_is_refused_by_validate_package_and_deploy_and_nothing_runs() {
    let host = Host::new();
    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    let (code, _, stderr) = host.deploy(&v1, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    host.clear_trace();

    host.revision("v2", &[("index.html", "two")], "", &[]);
    let src = host.dir.path().join("src-v2");
    let appspec = src.join("appspec.yml");
    let text = std::fs::read_to_string(&appspec).unwrap();
    let text = text
        .replace("  ApplicationStart:", "  ApplicationStrat:")
        .replace(
            "    - location: scripts/AfterInstall.sh\n      timeout: 60",
            "    - location: scripts/AfterInstall.sh\n      timout: 60",
        );
    std::fs::write(&appspec, &text).unwrap();
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let out = kiln().arg("validate").arg(&appspec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("appspec.yml:{}:3", line("ApplicationStrat"))),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `ApplicationStart`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("appspec.yml:{}:7", line("timout"))),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `timeout`?"), "{stderr}");

    let bad = host.dir.path().join("bad.zip");
    let out = kiln()
        .arg("package")
        .arg(&src)
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key `timout`"), "{stderr}");
    assert!(!bad.exists());

    // Packaged without the check, it is refused by the deployment before any event runs: not
    // even the previous revision's ApplicationStop, and nothing is recorded.
    let out = kiln()
        .arg("package")
        .arg(&src)
        .arg("--no-appspec")
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (code, _, stderr) = host.deploy(&bad, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown lifecycle event `ApplicationStrat`"),
        "{stderr}"
    );
    assert!(host.trace().is_empty(), "{:?}", host.trace());
    assert_eq!(host.read("index.html"), "one");
    assert_eq!(host.deployments().len(), 1);
}

#[test]
fn a_revision_deploys_from_a_registry() {
    let Some(registry) = crate::support::services::Service::registry(None) else {
        return;
    };
    let host = Host::new();
    let v1 = host.revision("v1", &[("index.html", "from the registry")], "", &[]);
    let reference = format!("oci://{}/web:v1", registry.address);
    let out = kiln()
        .arg("push")
        .arg(&v1)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (code, json, err) = host.deploy(Path::new(&reference), &[]);
    assert_eq!(code, Some(0), "{err}\n{json}");
    assert_eq!(json["deployment"]["revision"], reference);
    assert_eq!(host.read("index.html"), "from the registry");
}

#[test]
fn blue_green_switches_a_symlink_after_validation_and_rolls_back_at_once() {
    let host = Host::new();
    let bg = ["--strategy", "blue-green"];
    let v1 = host.revision(
        "v1",
        &[("index.html", "one")],
        "",
        &[(
            "ValidateService",
            "test -f \"$KILN_RELEASE_DIR/index.html\"",
        )],
    );
    let (code, json, err) = host.deploy(&v1, &bg);
    assert_eq!(code, Some(0), "{err}\n{json}");
    let id1 = json["deployment"]["id"].as_str().unwrap().to_string();
    let dest = host.dest();
    let target = |d: &Path| std::fs::read_link(d).unwrap();
    assert!(target(&dest).ends_with(&id1), "{:?}", target(&dest));
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "one"
    );

    let v2 = host.revision("v2", &[("index.html", "two")], "", &[]);
    let (code, json, err) = host.deploy(&v2, &bg);
    assert_eq!(code, Some(0), "{err}");
    let id2 = json["deployment"]["id"].as_str().unwrap().to_string();
    assert!(target(&dest).ends_with(&id2));
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "two"
    );
    // The old release stays, for an instant rollback.
    let releases = host.dir.path().join(".kiln-releases/www");
    assert!(releases.join(&id1).join("index.html").is_file());

    // A release that fails ValidateService is never switched to: v2 stays current.
    let v3 = host.revision(
        "v3",
        &[("index.html", "three")],
        "",
        &[("ValidateService", "exit 1")],
    );
    let (code, _, _) = host.deploy(&v3, &[&bg[..], &["--no-rollback"]].concat());
    assert_eq!(code, Some(1));
    assert!(target(&dest).ends_with(&id2));
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "two"
    );

    // kiln rollback: back to v1's release, at once, recorded.
    let out = kiln()
        .args(["rollback", "--group", "web", "--json", "--root"])
        .arg(host.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["deployment"]["rollback_of"], id2.as_str());
    assert!(json["deployment"]["duration_ms"].as_u64().unwrap() < 1000);
    assert!(target(&dest).ends_with(&id1));
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "one"
    );
}

#[test]
fn rollback_in_place_deploys_the_previous_revision_again() {
    let host = Host::new();
    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    let v2 = host.revision("v2", &[("index.html", "two")], "", &[]);
    assert_eq!(host.deploy(&v1, &[]).0, Some(0));
    assert_eq!(host.deploy(&v2, &[]).0, Some(0));
    let out = kiln()
        .args(["rollback", "--group", "web", "--root"])
        .arg(host.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(host.read("index.html"), "one");
    let list = host.deployments();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["rollback_of"], list[1]["id"]);
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed().as_secs() < 60, "waited 60 s for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_agent_deploys_each_new_tag_once_and_recovers_from_a_crash() {
    let Some(registry) = crate::support::services::Service::registry(None) else {
        return;
    };
    let host = Host::new();
    let tag = format!("oci://{}/web:live", registry.address);
    let push = |rev: &Path| {
        let out = kiln().arg("push").arg(rev).arg(&tag).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let agent = || {
        kiln()
            .args([
                "agent",
                "--watch",
                &tag,
                "--group",
                "web",
                "--interval",
                "200ms",
                "--root",
            ])
            .arg(host.root())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let index = || std::fs::read_to_string(host.dest().join("index.html")).unwrap_or_default();
    // The agent started again, looking once.
    let agent_once = || {
        let out = kiln()
            .args([
                "agent", "--watch", &tag, "--group", "web", "--once", "--root",
            ])
            .arg(host.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    push(&v1);
    let mut running = agent();
    wait_for("v1", || index() == "one");
    let v2 = host.revision("v2", &[("index.html", "two")], "", &[]);
    push(&v2);
    wait_for("v2", || index() == "two");
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(host.deployments().len(), 2, "each digest is deployed once");
    running.kill().unwrap();
    running.wait().unwrap();

    // Restarted: nothing new, nothing redeployed.
    agent_once();
    assert_eq!(host.deployments().len(), 2);

    // Killed in the middle of a deployment: restarted, it rolls back to the last good revision.
    let started = host.dir.path().join("v3-started");
    let v3 = host.revision(
        "v3",
        &[("index.html", "three")],
        "",
        &[(
            "AfterInstall",
            &format!("touch '{}'; sleep 20", started.display()),
        )],
    );
    push(&v3);
    let mut running = agent();
    wait_for("v3's AfterInstall", || started.exists());
    running.kill().unwrap();
    running.wait().unwrap();
    assert_eq!(index(), "three", "v3 was installed when the agent died");
    let out = agent_once();
    assert_eq!(
        index(),
        "two",
        "{}\n{:#?}",
        String::from_utf8_lossy(&out.stderr),
        host.deployments()
    );
    let list = host.deployments();
    assert_eq!(list.len(), 4, "v1, v2, the interrupted v3 and its rollback");
    let v3_record = list.iter().find(|d| d["status"] == "Failed").unwrap();
    assert!(v3_record["error"].as_str().unwrap().contains("interrupted"));
    assert_eq!(list[3]["rollback_of"], v3_record["id"]);
}

#[test]
fn the_agent_refuses_a_windows_revision_once_and_keeps_watching() {
    let host = Host::new();
    let tag = format!("file://{}/store/live.zip", host.dir.path().display());
    let push = |rev: &Path| {
        let out = kiln()
            .arg("push")
            .arg(rev)
            .arg(&tag)
            .arg("--force")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let src = host.dir.path().join("src-win");
    std::fs::create_dir_all(src.join("site")).unwrap();
    std::fs::write(src.join("site/index.html"), "win").unwrap();
    std::fs::write(
        src.join("appspec.yml"),
        "version: 0.0\nos: windows\nfiles:\n  - source: site\n    destination: C:\\inetpub\\wwwroot\n",
    )
    .unwrap();
    push(&host.package("win"));

    /// The agent, killed when the test ends, whatever way it ends.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = host.dir.path().join("agent.log");
    let mut running = Agent(
        kiln()
            .args([
                "agent",
                "--watch",
                &tag,
                "--group",
                "web",
                "--interval",
                "100ms",
                "--root",
            ])
            .arg(host.root())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the refusal", || said().contains("refused"));
    // Several polls later, it is still running and has not fetched the refused digest again.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(running.0.try_wait().unwrap().is_none(), "{}", said());
    assert_eq!(said().matches("refused").count(), 1, "{}", said());
    assert!(
        said().contains("AppSpec is for Windows hosts"),
        "{}",
        said()
    );
    assert!(host.deployments().is_empty());

    let v1 = host.revision("v1", &[("index.html", "one")], "", &[]);
    push(&v1);
    wait_for("v1", || {
        std::fs::read_to_string(host.dest().join("index.html")).unwrap_or_default() == "one"
    });
    wait_for("v1's record", || {
        host.deployments()
            .first()
            .is_some_and(|d| d["status"] == "Succeeded")
    });
    assert!(running.0.try_wait().unwrap().is_none(), "{}", said());
    drop(running);

    // Looking once at a refused revision is exit 2.
    push(&host.package("win"));
    let out = kiln()
        .args([
            "agent", "--watch", &tag, "--group", "web", "--once", "--root",
        ])
        .arg(host.root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(host.deployments().len(), 1);
}

#[test]
fn a_failing_application_stop_fails_unless_ignored() {
    let host = Host::new();
    let v1 = host.revision(
        "v1",
        &[("index.html", "one")],
        "",
        &[("ApplicationStop", "exit 7")],
    );
    assert_eq!(
        host.deploy(&v1, &[]).0,
        Some(0),
        "ApplicationStop does not run the first time"
    );
    let v2 = host.revision("v2", &[("index.html", "two")], "", &[]);
    let (code, json, _) = host.deploy(&v2, &["--no-rollback"]);
    assert_eq!(code, Some(1));
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(
        error.contains("ApplicationStop.sh failed with exit code 7"),
        "{error}"
    );
    assert_eq!(host.read("index.html"), "one");
    let (code, json, err) = host.deploy(&v2, &["--ignore-application-stop-failures"]);
    assert_eq!(code, Some(0), "{err}\n{json}");
    assert_eq!(host.read("index.html"), "two");
}

#[test]
fn confined_hooks_write_only_where_the_deployment_installs() {
    if !crate::sandbox::require_landlock() {
        return;
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let deploy = |confine: bool| {
        let mut host = Host::new();
        // The trace goes into the destination, where a confined hook may write.
        host.trace = host.dest().join("trace");
        let body = format!(
            "touch '{}/ok' && touch '{}/escaped-{confine}'",
            host.dest().display(),
            elsewhere.path().display()
        );
        let v1 = host.revision(
            "v1",
            &[("index.html", "one")],
            "",
            &[("AfterInstall", &body)],
        );
        let flags: &[&str] = if confine {
            &["--confine-hooks", "--no-rollback"]
        } else {
            &[]
        };
        let (code, json, _) = host.deploy(&v1, flags);
        (host, code, json)
    };
    // Confined: writing into the destination works, anywhere else is denied.
    let (host, code, json) = deploy(true);
    assert_eq!(code, Some(1), "{json}");
    assert!(host.dest().join("ok").exists());
    assert_eq!(
        events(&host.trace(), "v1"),
        ["BeforeInstall", "AfterInstall"]
    );
    assert!(!elsewhere.path().join("escaped-true").exists());
    let error = json["deployment"]["error"].as_str().unwrap();
    assert!(error.contains("AfterInstall.sh failed"), "{error}");
    // Unconfined (the default, as the agent runs them): the owner's scripts write anywhere.
    let (_, code, json) = deploy(false);
    assert_eq!(code, Some(0), "{json}");
    assert!(elsewhere.path().join("escaped-false").exists());
}
