//! A small builder that drives the real `kiln` binary the way a user does, in a temp project.
//!
//! ```ignore
//! Build::new()
//!     .buildspec("version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n")
//!     .run()
//!     .success()
//!     .phase("BUILD", "SUCCEEDED")
//!     .log_has("hi");
//! ```

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;

use serde_json::Value;

pub mod browser;
pub mod isolation;
pub mod serve;
pub mod services;

/// The kiln binary under test.
pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    // Compiled plugins are shared by every test (writes are atomic); records and logs are per test
    // (`--state-dir`). What a command without one keeps there (the deployment roots it remembers)
    // goes to a state dir of the test run's, never the user's.
    cmd.env("KILN_CACHE_DIR", shared_cache());
    cmd.env(
        "KILN_STATE_DIR",
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-test-state"),
    );
    cmd
}

/// A cache directory shared by all tests of this run, so each plugin is compiled once.
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-test-cache")
}

/// A cache directory of one test's own: an empty build cache, and the shared compiled plugins
/// (writes there are atomic, so tests can share them).
pub fn own_cache() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let components = shared_cache().join("components");
    std::fs::create_dir_all(&components).expect("shared cache");
    std::os::unix::fs::symlink(&components, dir.path().join("components")).expect("symlink");
    dir
}

/// A folder of the host that a sandboxed build sees through its root, wherever the checkout is:
/// not below /tmp, which a build has its own of (a checkout may well be below /tmp).
pub fn host_visible_dir(prefix: &str) -> tempfile::TempDir {
    let parent = ["/var/tmp", env!("CARGO_TARGET_TMPDIR")]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.is_dir() && !p.starts_with("/tmp"))
        .unwrap_or(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .expect("temp dir")
}

/// The probe plugin (see plugins/probe), built by kiln's build script.
pub fn probe_plugin() -> &'static str {
    env!("KILN_TEST_PLUGIN_PROBE")
}

/// The empty plugin (see plugins/empty): succeeds and changes nothing (benches).
pub fn empty_plugin() -> &'static str {
    env!("KILN_TEST_PLUGIN_EMPTY")
}

/// The needs plugin (see plugins/needs): declares `exec sh` and `env TOKEN`, for registry grants.
pub fn needs_plugin() -> &'static str {
    env!("KILN_TEST_PLUGIN_NEEDS")
}

/// The probe plugin as kiln-sdk 0.1.0 built it (world `step`): it must keep running.
pub fn probe_0_1_0_plugin() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/plugins/probe-0.1.0.wasm"
    )
}

/// A project in a temp directory, and how to build it.
pub struct Build {
    pub dir: Rc<tempfile::TempDir>,
    state: Rc<tempfile::TempDir>,
    cache: Rc<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Default for Build {
    fn default() -> Self {
        Self::new()
    }
}

impl Build {
    pub fn new() -> Self {
        Self {
            dir: Rc::new(tempfile::tempdir().expect("temp dir")),
            state: Rc::new(tempfile::tempdir().expect("temp dir")),
            cache: Rc::new(own_cache()),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// An empty cache of its own, compiled plugins too (as on a fresh machine).
    pub fn fresh_cache(mut self) -> Self {
        self.cache = Rc::new(tempfile::tempdir().expect("temp dir"));
        self
    }

    /// Uses the build cache of `other`: two projects of one machine.
    pub fn sharing_cache_with(mut self, other: &Build) -> Self {
        self.cache = other.cache.clone();
        self
    }

    /// Writes `buildspec.yml`.
    pub fn buildspec(self, text: &str) -> Self {
        self.write("buildspec.yml", text)
    }

    /// Writes a file of the project, creating its folders.
    pub fn write(self, path: &str, contents: &str) -> Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    /// Adds arguments to `kiln build`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in kiln's own environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs a command in the project directory (git, chmod…).
    pub fn sh(self, script: &str) -> Self {
        let status = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "setup failed: {script}");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// This project's cache directory (its build cache is its own; compiled plugins are shared).
    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    /// Runs `kiln build <dir> --json --output <dir>/out` with the added arguments.
    pub fn run(&self) -> Run {
        self.run_with(&[])
    }

    /// Like [`Build::run`], with more arguments for this run only.
    pub fn run_with(&self, extra: &[&str]) -> Run {
        self.finish(self.command(extra).output().expect("kiln runs"))
    }

    /// `kiln` with this project's cache and state folders, for any subcommand.
    pub fn kiln(&self) -> Command {
        let mut cmd = kiln();
        cmd.arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--state-dir")
            .arg(self.state.path());
        cmd
    }

    /// The `kiln build` command [`Build::run_with`] runs, to start it in the background.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = self.kiln();
        cmd.arg("build")
            .arg(self.dir.path())
            .arg("--json")
            .arg("--output")
            .arg(self.dir.path().join("out"))
            .args(&self.args)
            .args(extra)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// What a [`Build::command`] did, keeping the project's folders alive while it is looked at.
    pub fn finish(&self, output: Output) -> Run {
        let mut run = Run::new(output, self.dir.path().join("out"));
        run.keep = vec![self.dir.clone(), self.state.clone(), self.cache.clone()];
        run
    }
}

/// What one `kiln` invocation did. It keeps the project's temp dirs alive while it is looked at.
pub struct Run {
    keep: Vec<Rc<tempfile::TempDir>>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub output: PathBuf,
}

impl Run {
    pub fn new(output: Output, out_dir: PathBuf) -> Self {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        Self {
            keep: Vec::new(),
            code: output.status.code(),
            stdout,
            stderr,
            json,
            output: out_dir,
        }
    }

    fn context(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.context());
        self
    }

    /// Exit 0 and status SUCCEEDED.
    pub fn success(&self) -> &Self {
        self.code(0);
        assert_eq!(self.json["status"], "SUCCEEDED", "{}", self.context());
        self
    }

    /// Exit 1 and a failed status.
    pub fn failure(&self) -> &Self {
        self.code(1);
        assert_ne!(self.json["status"], "SUCCEEDED", "{}", self.context());
        self
    }

    /// The phase ran with this status.
    pub fn phase(&self, name: &str, status: &str) -> &Self {
        let phase = self.find_phase(name);
        assert!(
            phase.is_some_and(|p| p["status"] == status),
            "phase {name} should be {status}, phases were {}\n{}",
            self.json["phases"],
            self.context()
        );
        self
    }

    /// The phase did not run at all.
    pub fn no_phase(&self, name: &str) -> &Self {
        assert!(
            self.find_phase(name).is_none(),
            "phase {name} should not have run\n{}",
            self.context()
        );
        self
    }

    pub fn find_phase(&self, name: &str) -> Option<&Value> {
        self.json["phases"]
            .as_array()
            .and_then(|phases| phases.iter().find(|p| p["name"] == name))
    }

    /// The build log (stderr under --json) has this text.
    pub fn log_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "log should contain {text:?}\n{}",
            self.context()
        );
        self
    }

    /// The build log does not have this text.
    pub fn log_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stderr.contains(text),
            "log should not contain {text:?}\n{}",
            self.context()
        );
        self
    }

    /// The lines of output the build's commands printed (not kiln's own `[Container]` lines).
    pub fn output_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("[Container]"))
            .collect()
    }

    /// The files of an artifact folder, relative to it, sorted.
    pub fn artifact_files(&self, name: &str) -> Vec<String> {
        let root = self.output.join(name);
        let mut files: Vec<String> = walkdir(&root)
            .into_iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        files
    }
}

/// Every file below `root`.
pub fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A buildspec with one build phase running these commands.
pub fn build_commands(commands: &[&str]) -> String {
    let mut text = String::from("version: 0.2\nphases:\n  build:\n    commands:\n");
    for c in commands {
        text.push_str(&format!("      - {}\n", serde_json::to_string(c).unwrap()));
    }
    text
}

/// The example plugin `examples/plugin-manifest`, built once per test run with cargo, as its author would.
pub fn example_plugin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/plugin-manifest/Cargo.toml");
            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("example-plugin");
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target);
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") {
                    cmd.env_remove(key);
                }
            }
            let out = cmd.output().expect("cargo runs");
            assert!(
                out.status.success(),
                "building the example plugin failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            target.join("wasm32-wasip2/release/kiln_plugin_manifest.wasm")
        })
        .clone()
}

/// A component with one more custom section at its end, at its top level (where kiln looks for
/// what a plugin says about itself before it looks in its modules).
pub fn with_custom_section(component: &[u8], name: &str, data: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// `curl -sSf ARGS`'s output; the test fails when curl does.
pub fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sSf"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
