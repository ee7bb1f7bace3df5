//! Testing a plugin the way kiln runs it (feature `testing`, host only).
//!
//! [`Step`] builds the plugin crate's component once per test process (`cargo build --release
//! --target wasm32-wasip2 --target-dir <crate>/target/kiln-plugin`) and runs it through the real
//! kiln (`KILN`, else `kiln` on PATH) with `kiln plugin run --json`, in a temp folder of its own: the
//! real sandbox and policy, a build's basic environment, scripted answers for `exec`. The [`Run`]
//! holds the outcome, the log lines and the folder.
//!
//! ```ignore
//! use kiln_sdk::testing::Step;
//!
//! #[test]
//! fn tags_the_revision() {
//!     let run = Step::new()
//!         .arg("v1")
//!         .file("VERSION", "1.2.0\n")
//!         .exec_answer(["git", "rev-parse", "HEAD"], "abc\n", 0)
//!         .run();
//!     run.assert_success();
//!     assert_eq!(run.var("TAG"), Some(Some("v1-abc")));
//! }
//! ```
//!
//! It depends on nothing but serde_json, so a plugin's tests build offline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// One step to run: the plugin's arguments, environment, files and exec answers.
#[derive(Debug, Default, Clone)]
pub struct Step {
    component: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    files: Vec<(PathBuf, Vec<u8>)>,
    answers: Vec<Value>,
    cwd: Option<PathBuf>,
    phase: Option<String>,
    no_exec: bool,
}

impl Step {
    /// A step of this crate's plugin, with no arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs this component file instead of the crate's own.
    pub fn component(mut self, path: impl Into<PathBuf>) -> Self {
        self.component = Some(path.into());
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A variable of the step's environment (on top of a build's basic one).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// A file in the step's source directory (`path` relative to it), written before the run.
    pub fn file(mut self, path: impl Into<PathBuf>, contents: impl AsRef<[u8]>) -> Self {
        self.files.push((path.into(), contents.as_ref().to_vec()));
        self
    }

    /// The step's current directory, relative to its source directory (created if absent).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The phase the step runs in (BUILD unless told).
    pub fn phase(mut self, phase: impl Into<String>) -> Self {
        self.phase = Some(phase.into());
        self
    }

    /// Denies the plugin host programs.
    pub fn no_exec(mut self) -> Self {
        self.no_exec = true;
        self
    }

    /// Answers the plugin's exec call of exactly `argv` with this stdout and exit code (no
    /// program is started). Once any answer is given, every exec call is answered from the list.
    pub fn exec_answer(
        self,
        argv: impl IntoIterator<Item = impl Into<String>>,
        stdout: impl Into<String>,
        code: i32,
    ) -> Self {
        self.exec_answer_full(argv, stdout, "", code)
    }

    /// Like [`Step::exec_answer`], with stderr.
    pub fn exec_answer_full(
        mut self,
        argv: impl IntoIterator<Item = impl Into<String>>,
        stdout: impl Into<String>,
        stderr: impl Into<String>,
        code: i32,
    ) -> Self {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        self.answers.push(json!({
            "argv": argv,
            "stdout": stdout.into(),
            "stderr": stderr.into(),
            "code": code,
        }));
        self
    }

    /// Runs the step through kiln; panics (a test failure) when kiln cannot run it at all.
    pub fn run(&self) -> Run {
        let component = match &self.component {
            Some(path) => path.clone(),
            None => match built_component() {
                Ok(path) => path.clone(),
                Err(e) => panic!("{e}"),
            },
        };
        let temp = TempDir::new().unwrap_or_else(|e| panic!("cannot make a temp folder: {e}"));
        let dir = temp.path().join("src");
        let fail = |what: &str, e: std::io::Error| -> ! { panic!("{what}: {e}") };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail("cannot make the step's folder", e));
        for (path, contents) in &self.files {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| fail(&parent.display().to_string(), e));
            }
            std::fs::write(&file, contents)
                .unwrap_or_else(|e| fail(&file.display().to_string(), e));
        }
        let mut command = Command::new(kiln());
        command
            .args(["plugin", "run"])
            .arg(&component)
            .arg("--dir")
            .arg(&dir)
            .arg("--json");
        for (k, v) in &self.env {
            command.arg("-e").arg(format!("{k}={v}"));
        }
        if let Some(cwd) = &self.cwd {
            std::fs::create_dir_all(dir.join(cwd))
                .unwrap_or_else(|e| fail(&cwd.display().to_string(), e));
            command.arg("--cwd").arg(cwd);
        }
        if let Some(phase) = &self.phase {
            command.args(["--phase", phase]);
        }
        if self.no_exec {
            command.arg("--no-exec");
        }
        if !self.answers.is_empty() {
            let file = temp.path().join("exec-answers.json");
            std::fs::write(&file, Value::from(self.answers.clone()).to_string())
                .unwrap_or_else(|e| fail("cannot write the exec answers", e));
            command.arg("--exec-answers").arg(file);
        }
        command.arg("--").args(&self.args);
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{}` (set KILN to kiln's path): {e}", kiln()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let Ok(value) = serde_json::from_str::<Value>(stdout.trim()) else {
            panic!(
                "kiln plugin run failed ({}):\n{stderr}{stdout}",
                output.status
            );
        };
        Run::of(&value, output.status.code(), temp)
    }
}

/// How a step ended, what it logged, and its folder (removed when the `Run` is dropped).
#[derive(Debug)]
pub struct Run {
    /// The step's status: 0 for success. When kiln could not run the plugin to an outcome (it
    /// trapped, ran out of time or memory, could not be loaded), kiln's exit code.
    pub status: i32,
    /// The outcome's message, or why kiln could not run the plugin.
    pub message: Option<String>,
    /// The env changes, in order: `(name, Some(value))` set, `(name, None)` unset.
    pub env: Vec<(String, Option<String>)>,
    /// The current directory the step left for the next command.
    pub cwd: Option<String>,
    /// The log lines, in order: the plugin's log calls (debug ones too) and its stdout and stderr.
    pub log: Vec<String>,
    /// The temp folder; the step's source directory is `dir.path().join("src")`.
    pub dir: TempDir,
}

impl Run {
    fn of(value: &Value, code: Option<i32>, dir: TempDir) -> Self {
        let log = value["log"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["line"].as_str().map(str::to_string))
            .collect();
        if let Some(error) = value["error"].as_str() {
            return Self {
                status: code.unwrap_or(-1),
                message: Some(error.to_string()),
                env: Vec::new(),
                cwd: None,
                log,
                dir,
            };
        }
        let env = value["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|change| {
                if let Some([k, v]) = change["set"].as_array().map(Vec::as_slice) {
                    Some((k.as_str()?.to_string(), Some(v.as_str()?.to_string())))
                } else {
                    Some((change["unset"].as_str()?.to_string(), None))
                }
            })
            .collect();
        Self {
            status: value["status"].as_i64().unwrap_or(-1) as i32,
            message: value["message"].as_str().map(str::to_string),
            env,
            cwd: value["cwd"].as_str().map(str::to_string),
            log,
            dir,
        }
    }

    /// Panics unless the step succeeded, showing its message and log.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.status,
            0,
            "the step failed: {:?}\nlog:\n{}",
            self.message,
            self.log.join("\n")
        );
        self
    }

    /// Whether a log line contains `text`.
    pub fn log_has(&self, text: &str) -> bool {
        self.log.iter().any(|line| line.contains(text))
    }

    /// The last change to `name`: `Some(Some(value))` set, `Some(None)` unset, `None` untouched.
    pub fn var(&self, name: &str) -> Option<Option<&str>> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
    }

    /// The step's source directory (CODEBUILD_SRC_DIR).
    pub fn source_dir(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// A file of the source directory, as text (panics when it cannot be read).
    pub fn read(&self, path: impl AsRef<Path>) -> String {
        let file = self.source_dir().join(path);
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }
}

/// A folder under the system's temp folder, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new, empty folder with a name no other test (or process) has.
    pub fn new() -> std::io::Result<Self> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "kiln-test-{}-{}-{nanos}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)?;
        // The step sees canonical paths (a temp folder may sit behind a symlink).
        let path = path.canonicalize()?;
        Ok(Self { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The kiln to run: `KILN`, else `kiln` on PATH.
fn kiln() -> String {
    std::env::var("KILN").unwrap_or_else(|_| "kiln".into())
}

/// The crate's component, built once per test process.
fn built_component() -> Result<&'static PathBuf, &'static String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref()
}

/// Builds the crate under test (the one `cargo test` runs in) for wasm32-wasip2.
fn build() -> Result<PathBuf, String> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .ok_or("no CARGO_MANIFEST_DIR: run the tests with cargo test")?;
    let name = std::env::var("CARGO_PKG_NAME")
        .map_err(|_| "no CARGO_PKG_NAME: run the tests with cargo test")?;
    let target_dir = manifest_dir.join("target").join("kiln-plugin");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&manifest_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    if std::env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true") {
        command.arg("--offline");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo to build the plugin: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the plugin for wasm32-wasip2 failed (rustup target add wasm32-wasip2?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let file = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!(
            "cargo built no {} (is the crate a cdylib?)",
            file.display()
        ))
    }
}
