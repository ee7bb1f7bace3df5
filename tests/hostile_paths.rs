//! kiln's own hands: a project, a revision or a hook that plants links or configuration cannot make
//! kiln write, rename or delete outside the place it was given, nor run the project's programs.
//!
//! Each test builds the attack as its input and keeps a sentinel outside the intended place: a
//! fake home with `.ssh/authorized_keys`, whose bytes are compared before and after.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deploy::Host;
use crate::support::{Build, Run, build_commands};

const USER_KEY: &str = "ssh-ed25519 AAAA the-users-own-key\n";
const ATTACKER_KEY: &str = "ssh-ed25519 AAAA the-attackers-key\n";

/// A fake home folder with `.ssh/authorized_keys`, in a temp dir of its own.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/authorized_keys"), USER_KEY).unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The home is as it was: the same key, nothing added, nothing renamed away.
    fn untouched(&self) {
        let keys = std::fs::read(self.path().join(".ssh/authorized_keys"))
            .expect("authorized_keys is still there");
        assert_eq!(
            String::from_utf8_lossy(&keys),
            USER_KEY,
            "authorized_keys changed"
        );
        let entries = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(entries(self.path()), [".ssh"], "the home gained entries");
        assert_eq!(
            entries(&self.path().join(".ssh")),
            ["authorized_keys"],
            "~/.ssh gained entries"
        );
    }
}

/// A project whose artifact, named by `name`, is an `authorized_keys` file.
fn keys_project(name: &str) -> Build {
    Build::new()
        .write("authorized_keys", ATTACKER_KEY)
        .buildspec(&format!(
            "version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n  name: {name}\n  files: [authorized_keys]\n"
        ))
}

/// `kiln build` of `b` with these arguments instead of the builder's `--output <dir>/out`.
fn build_with(b: &Build, args: &[&Path]) -> Run {
    let out = b
        .kiln()
        .arg("build")
        .arg(b.path())
        .arg("--json")
        .args(args)
        .output()
        .expect("kiln runs");
    b.finish(out)
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn a_kiln_out_link_in_the_project_is_refused_before_the_build() {
    let home = Home::new();
    let b = keys_project(".ssh").sh("mkdir .kiln");
    symlink(home.path(), &b.path().join(".kiln/out"));
    let run = build_with(&b, &[]);
    run.code(2)
        .log_has(&format!(
            "{} is a symlink (to {})",
            b.path().canonicalize().unwrap().join(".kiln/out").display(),
            home.path().display()
        ))
        .no_phase("BUILD");
    home.untouched();
}

#[test]
fn an_output_folder_the_project_made_a_link_is_refused() {
    // The builder's `--output <project>/out`: the user named it, the project made it a link.
    let home = Home::new();
    let b = keys_project(".ssh");
    symlink(home.path(), &b.path().join("out"));
    let run = b.run();
    run.code(2)
        .log_has(&format!("out is a symlink (to {})", home.path().display()));
    home.untouched();
}

#[test]
fn an_artifact_name_through_a_link_in_the_output_is_refused() {
    // The project ships a real output folder with a link inside it; the primary artifact and a
    // secondary one are named through it.
    let home = Home::new();
    for (what, spec) in [
        (
            "primary",
            "artifacts:\n  name: evil/.ssh\n  files: [authorized_keys]\n",
        ),
        (
            "secondary",
            "artifacts:\n  files: [authorized_keys]\n  secondary-artifacts:\n    keys:\n      name: evil/.ssh\n      files: [authorized_keys]\n",
        ),
    ] {
        let b = Build::new()
            .write("authorized_keys", ATTACKER_KEY)
            .buildspec(&format!(
                "version: 0.2\nphases:\n  build:\n    commands: [true]\n{spec}"
            ))
            .sh("mkdir out");
        symlink(home.path(), &b.path().join("out/evil"));
        let run = b.run();
        run.failure()
            .phase("UPLOAD_ARTIFACTS", "FAILED")
            .log_has(&format!(
                "out/evil is a symlink (to {})",
                home.path().display()
            ));
        assert!(
            b.path().join("out/evil").is_symlink(),
            "{what}: the link itself is left alone"
        );
        home.untouched();
    }
}

#[test]
fn a_folder_kiln_did_not_publish_is_never_replaced() {
    // The user points --output at a folder of their own (here, the fake home): an artifact named
    // like one of its folders does not rename it away.
    let home = Home::new();
    let b = keys_project(".ssh");
    let run = build_with(&b, &[Path::new("--output"), home.path()]);
    run.failure()
        .phase("UPLOAD_ARTIFACTS", "FAILED")
        .log_has(&format!(
            "{} is in the way of an artifact and kiln did not publish it",
            home.path().canonicalize().unwrap().join(".ssh").display()
        ));
    let keys = std::fs::read_to_string(home.path().join(".ssh/authorized_keys")).unwrap();
    assert_eq!(keys, USER_KEY);
}

#[test]
fn the_users_own_links_above_the_output_are_followed() {
    // `--output <link>/out`, the link the user's own (as /home -> /data/home): kiln writes below
    // where it leads, and a second build replaces what the first published.
    let b = keys_project("keys");
    let real = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("data");
    symlink(real.path(), &link);
    let output = link.join("out");
    build_with(&b, &[Path::new("--output"), &output]).success();
    std::fs::write(b.path().join("authorized_keys"), "second\n").unwrap();
    build_with(&b, &[Path::new("--output"), &output]).success();
    let published = real.path().join("out/keys/authorized_keys");
    assert_eq!(std::fs::read_to_string(published).unwrap(), "second\n");
}

/// A script outside the project that leaves `<markers>/<name>` when run.
fn marker_script(dir: &Path, markers: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}/{name}'\ncat\n", markers.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn git_runs_none_of_the_programs_a_projects_git_config_names() {
    let tools = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    let script = |name: &str| marker_script(tools.path(), markers.path(), name);
    let hooks = tools.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    for hook in [
        "post-index-change",
        "post-checkout",
        "reference-transaction",
        "pre-commit",
    ] {
        std::fs::rename(script(hook), hooks.join(hook)).unwrap();
    }
    let b = Build::new()
        .write("tracked.txt", "t")
        .buildspec(&build_commands(&["cat tracked.txt; echo"]))
        .sh("git init -q . && git add . && git -c user.email=k@example.com -c user.name=k commit -qm init")
        .write(".gitattributes", "* filter=evil diff=evil\n")
        .write("untracked.txt", "u");
    let config = [
        ("core.fsmonitor", script("fsmonitor")),
        ("core.hooksPath", hooks.clone()),
        ("diff.external", script("diff-external")),
        ("diff.evil.textconv", script("textconv")),
        ("filter.evil.clean", script("filter-clean")),
        ("filter.evil.smudge", script("filter-smudge")),
        ("filter.evil.process", script("filter-process")),
        ("core.pager", script("pager")),
        ("pager.ls-files", script("pager-ls-files")),
    ];
    for (key, value) in &config {
        let status = Command::new("git")
            .arg("-C")
            .arg(b.path())
            .args(["config", key])
            .arg(value)
            .status()
            .unwrap();
        assert!(status.success(), "git config {key}");
    }
    let run = b.run();
    let ran = markers_in(markers.path());
    assert!(ran.is_empty(), "kiln ran the project's programs: {ran:?}");
    run.success();
    assert_eq!(run.output_lines(), ["t"]);
}

/// The names of the markers left in `dir`.
fn markers_in(dir: &Path) -> Vec<String> {
    let mut ran: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ran.sort();
    ran
}

#[test]
fn git_variables_in_kilns_environment_do_not_redirect_it() {
    // GIT_DIR naming another repository, GIT_CONFIG_PARAMETERS naming a program: git reads the
    // project, and runs nothing.
    let tools = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    let fsmonitor = marker_script(tools.path(), markers.path(), "env-fsmonitor");
    let other = tempfile::tempdir().unwrap();
    let commit = "git init -q . && git add . && git -c user.email=k@example.com -c user.name=k commit -qm init";
    let status = Command::new("sh")
        .args(["-c", &format!("echo other > other.txt && {commit}")])
        .current_dir(other.path())
        .status()
        .unwrap();
    assert!(status.success());
    let b = Build::new()
        .write("tracked.txt", "t")
        .buildspec(&build_commands(&["cat tracked.txt; echo"]))
        .sh(commit)
        .env(
            "GIT_CONFIG_PARAMETERS",
            &format!("'core.fsmonitor'='{}'", fsmonitor.display()),
        )
        .env("GIT_DIR", &other.path().join(".git").to_string_lossy());
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(b.path())
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let run = b.run();
    assert_eq!(markers_in(markers.path()), Vec::<String>::new());
    run.success();
    assert_eq!(run.output_lines(), ["t"]);
    assert_eq!(run.json["source_version"], head);
}

#[test]
fn a_link_a_hook_plants_does_not_lead_the_next_cleanup_out() {
    // The first revision installs sub/.ssh/authorized_keys; its AfterInstall hook (writing only in
    // its destination, as a confined hook may) swaps `sub` for a link to the home. The next
    // deployment removes what the first installed: never through that link.
    let home = Home::new();
    let host = Host::new();
    let dest = host.dest();
    let v1 = host.revision_with_links(
        "v1",
        &[("sub/.ssh/authorized_keys", ATTACKER_KEY)],
        &[],
        "",
        &[(
            "AfterInstall",
            &format!(
                "rm -rf '{dest}/sub' && ln -s '{home}' '{dest}/sub'",
                dest = dest.display(),
                home = home.path().display()
            ),
        )],
    );
    let (code, json, _) = host.deploy(&v1, &["--no-rollback"]);
    assert_eq!(code, Some(0), "{json}");
    let v2 = host.revision_with_links("v2", &[("index.html", "two")], &[], "", &[]);
    let (code, json, _) = host.deploy(&v2, &["--no-rollback"]);
    assert_eq!(code, Some(0), "{json}");
    home.untouched();
    assert!(
        !dest.join("sub").exists(),
        "the planted link itself is removed"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "two"
    );
}

#[test]
fn a_link_a_hook_plants_where_the_revision_has_a_folder_is_refused() {
    // BeforeInstall makes `sub` a link to the home's .ssh; the revision installs a link at
    // sub/authorized_keys, which kiln makes itself: with OVERWRITE it would replace the user's key.
    let home = Home::new();
    let host = Host::new();
    let dest = host.dest();
    let v1 = host.revision_with_links(
        "v1",
        &[("index.html", "one")],
        &[("sub/authorized_keys", "../index.html")],
        "",
        &[(
            "BeforeInstall",
            &format!(
                "mkdir -p '{dest}' && ln -s '{home}/.ssh' '{dest}/sub'",
                dest = dest.display(),
                home = home.path().display()
            ),
        )],
    );
    let (code, json, _) = host.deploy(
        &v1,
        &["--no-rollback", "--file-exists-behavior", "OVERWRITE"],
    );
    assert_eq!(code, Some(1), "{json}");
    let error = json["deployment"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{}/sub is a symlink (to {}/.ssh) where the revision has a folder",
            dest.canonicalize().unwrap().display(),
            home.path().display()
        )),
        "{error}"
    );
    home.untouched();
}
