//! `kiln plugin`: list the plugins, run one plugin once as a build step would, scaffold a
//! new plugin crate.
//!
//! `kiln plugin run` is the plugin author's harness: the step gets what a build's step gets (a
//! build's basic environment, its policy, a source directory and a temp directory), and the outcome
//! (status, message, env changes, cwd) is printed, or given as one JSON object with `--json` for
//! the SDK's test harness.

pub mod new;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kiln::sandbox::{EnvChange, Level, LogSink, ScriptedAnswer, StepOutcome, Stream};

use super::exit;

pub mod declare;
pub mod exec;
pub mod project;
pub mod registry;
use super::options::{GlobalArgs, existing_dir, existing_file, parse_size};

/// `kiln plugin list|run|new`.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// List kiln's own plugins and the project's (kiln.toml, kiln.lock), with what a build would
    /// find for each.
    List(project::ListArgs),
    /// Run a plugin once, as a build step would, in a directory: a test harness for plugin authors.
    Run(PluginRunArgs),
    /// Scaffold a plugin that builds on its own, with a test that runs it through kiln: a Rust
    /// crate on kiln-sdk, or (--lang python) a componentize-py project.
    New(new::NewArgs),
    /// Push a plugin component to a registry (oci://), or a file:// or s3:// image layout, as a
    /// Wasm OCI artifact.
    Push(registry::PushArgs),
    /// Pull a plugin into the build cache and compile it.
    Pull(registry::PullArgs),
    /// Name a registry plugin in kiln.toml and pin it in kiln.lock, granting what it asks for
    /// only with --accept.
    Add(registry::AddArgs),
    /// Pin what kiln.toml's plugin tags name now (all of them: and drop from kiln.lock what kiln.toml
    /// no longer names).
    Update(registry::UpdateArgs),
    /// Take a plugin out of kiln.toml and kiln.lock.
    Remove(project::RemoveArgs),
    /// Write kiln's sections (interface version, capabilities, metadata) into a component another
    /// toolchain built (componentize-py, componentize-js...); kiln-sdk writes them for Rust plugins.
    Declare(declare::DeclareArgs),
    /// Run a build's plugin as a command: what its shim on the build's PATH calls.
    #[command(hide = true)]
    Exec(exec::ExecArgs),
}

/// Runs a `kiln plugin` subcommand.
pub async fn dispatch(global: &GlobalArgs, command: &PluginCommand) -> u8 {
    match command {
        PluginCommand::List(args) => project::list(global, args),
        PluginCommand::Run(args) => run(global, args).await,
        PluginCommand::New(args) => new::run(args),
        PluginCommand::Push(args) => registry::push(global, args).await,
        PluginCommand::Pull(args) => registry::pull(global, args).await,
        PluginCommand::Add(args) => registry::add(global, args).await,
        PluginCommand::Update(args) => registry::update(global, args).await,
        PluginCommand::Remove(args) => project::remove(args),
        PluginCommand::Declare(args) => declare::run(args),
        PluginCommand::Exec(args) => exec::run(args).await,
    }
}

/// `kiln plugin run`.
#[derive(Args)]
pub struct PluginRunArgs {
    /// The plugin: a component file (.wasm) or the name of a built-in plugin.
    #[arg(value_parser = plugin)]
    plugin: String,

    /// The step's arguments.
    #[arg(last = true)]
    args: Vec<String>,

    /// The directory preopened read-write (the step's source directory, CODEBUILD_SRC_DIR).
    #[arg(long, default_value = ".", value_parser = existing_dir)]
    dir: PathBuf,

    /// A variable of the step's environment, on top of a build's basic one (K=V, or K to take K from
    /// kiln's environment, when it has one). Repeatable.
    #[arg(short = 'e', long = "env", value_name = "K[=V]", value_parser = env_var)]
    env: Vec<String>,

    /// The step's current directory, inside --dir (relative: to --dir) [default: --dir]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,

    /// The phase the step runs in (INSTALL, PRE_BUILD, BUILD, POST_BUILD).
    #[arg(long, default_value = "BUILD", value_parser = phase)]
    phase: String,

    /// Deny the plugin host programs (a build lets local plugins run them).
    #[arg(long)]
    no_exec: bool,

    /// Let the plugin use the network.
    #[arg(long)]
    network: bool,

    /// Answer the plugin's exec calls from a JSON list of {argv, stdout, stderr, code}, never
    /// starting a program.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    exec_answers: Option<PathBuf>,

    /// Print one JSON object: {plugin, status, message, env, cwd, log}.
    #[arg(long)]
    json: bool,

    /// Run the step this many more times after the first and report each run's time (benches).
    #[arg(long, hide = true, value_name = "N")]
    repeat: Option<u32>,

    /// The step's time limit.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Memory limit of the instance.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_limit: usize,
}

/// An `--exec-answers` entry, as the file spells it.
#[derive(serde::Deserialize)]
struct Answer {
    argv: Vec<String>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    code: i32,
}

/// A step's log lines: printed as they come (debug lines only with --verbose), kept for --json.
struct RunLog {
    plugin: String,
    json: bool,
    verbose: bool,
    lines: Mutex<Vec<(&'static str, String)>>,
}

impl RunLog {
    /// A line without the plugin's name the sandbox may put before it.
    fn bare<'a>(&self, message: &'a str) -> &'a str {
        message
            .strip_prefix(&self.plugin)
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(message)
    }

    fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl LogSink for RunLog {
    fn output(&self, stream: Stream, line: &str) {
        let level = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        if !self.json {
            match stream {
                Stream::Stdout => out!("{line}"),
                Stream::Stderr => eprintln!("{line}"),
            }
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level, line.to_string()));
    }

    fn plugin(&self, level: Level, message: &str) {
        let line = self.bare(message);
        let level = match level {
            Level::Debug if !self.verbose => return,
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        if !self.json {
            match level {
                "info" => out!("{}: {line}", self.plugin),
                _ => out!("{}: {level}: {line}", self.plugin),
            }
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level, line.to_string()));
    }
}

/// `kiln plugin run`: one step of the plugin, in the given directory.
pub async fn run(global: &GlobalArgs, args: &PluginRunArgs) -> u8 {
    use kiln::sandbox::{Confinement, ExecEnv, Policy, Preopen, Reaper, Sandbox, StepContext};
    let mut sandbox = match Sandbox::new(global.components_dir()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::INTERNAL;
        }
    };
    let path = Path::new(&args.plugin);
    let is_file = args.plugin.ends_with(".wasm") || path.is_file();
    let name = if is_file {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.plugin.clone());
        sandbox.register_file(&stem, path);
        stem
    } else if sandbox.has(&args.plugin) {
        args.plugin.clone()
    } else {
        eprintln!(
            "error: no plugin named `{}`: give a component file (.wasm) or one of {}",
            args.plugin,
            sandbox.names().join(", ")
        );
        return exit::BAD_INPUT;
    };
    let dir = match args.dir.canonicalize() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: {e}", args.dir.display());
            return exit::BAD_INPUT;
        }
    };
    let cwd = match &args.cwd {
        None => dir.clone(),
        Some(cwd) => match dir.join(cwd).canonicalize() {
            Ok(c) if c.starts_with(&dir) && c.is_dir() => c,
            Ok(c) => {
                eprintln!(
                    "error: --cwd {}: {} is not a directory inside --dir {}",
                    cwd.display(),
                    c.display(),
                    dir.display()
                );
                return exit::BAD_INPUT;
            }
            Err(e) => {
                eprintln!("error: --cwd {}: {e}", cwd.display());
                return exit::BAD_INPUT;
            }
        },
    };
    let answers = match &args.exec_answers {
        None => None,
        Some(file) => match read_answers(file) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("error: --exec-answers {}: {e}", file.display());
                return exit::BAD_INPUT;
            }
        },
    };
    let temp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot make a temp dir: {e}");
            return exit::INTERNAL;
        }
    };
    let temp_dir = temp
        .path()
        .canonicalize()
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let allow_exec = !args.no_exec;
    let confinement = Confinement {
        writable: vec![dir.clone(), temp_dir.clone()],
        readable: vec![PathBuf::from("/")],
        network: args.network,
        required: false,
        enabled: true,
    };
    let prepared = match confinement.prepare() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let context = StepContext {
        build_id: BUILD_ID.into(),
        phase: args.phase.clone(),
        source_dir: dir.clone(),
        cwd,
        env: step_env(&dir, &temp_dir, &args.env),
        temp_dir: temp_dir.clone(),
    };
    let policy = Policy {
        preopens: vec![
            Preopen {
                path: dir,
                writable: true,
            },
            Preopen {
                path: temp_dir,
                writable: true,
            },
        ],
        allow_exec,
        network: args.network,
        local_network: args.network,
        timeout: Some(args.timeout),
        memory_limit: args.memory_limit,
        scripted_exec: answers.map(Arc::new),
    };
    let exec = || {
        allow_exec.then(|| ExecEnv {
            prepared: prepared.clone(),
            reaper: Reaper::default(),
            run_as: None,
            os: None,
        })
    };
    let log = Arc::new(RunLog {
        plugin: name.clone(),
        json: args.json,
        verbose: global.verbose > 0,
        lines: Mutex::new(Vec::new()),
    });
    let sink: Arc<dyn LogSink> = log.clone();
    let result = sandbox
        .run(&name, &args.args, &context, &policy, exec(), sink.clone())
        .await;
    let lines = log.take();
    let mut runs = Vec::new();
    if let (Ok(_), Some(n)) = (&result, args.repeat) {
        for _ in 0..n {
            let started = Instant::now();
            let again = sandbox
                .run(&name, &args.args, &context, &policy, exec(), sink.clone())
                .await;
            runs.push(started.elapsed());
            if let Err(e) = again {
                eprintln!("error: {e}");
                return exit::of_step(&e);
            }
            log.take();
        }
    }
    match result {
        Ok(outcome) => {
            if args.json {
                out!("{}", json(&name, &outcome, &lines, &runs));
            } else {
                print_outcome(&name, &outcome);
            }
            if outcome.status == 0 {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            if args.json {
                let log: Vec<_> = lines
                    .iter()
                    .map(|(level, line)| serde_json::json!({"level": level, "line": line}))
                    .collect();
                out!(
                    "{}",
                    serde_json::json!({"plugin": name, "error": e.to_string(), "log": log})
                );
            }
            eprintln!("error: {e}");
            exit::of_step(&e)
        }
    }
}

/// The build id a `kiln plugin run` step sees.
const BUILD_ID: &str = "plugin-run:1";

/// A build's basic environment for a step in `dir`, and the `-e` variables on top.
fn step_env(dir: &Path, temp_dir: &Path, extra: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    };
    set(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    for name in ["HOME", "USER", "LANG", "LC_ALL", "TZ"] {
        if let Ok(value) = std::env::var(name) {
            set(name, value);
        }
    }
    if std::env::var_os("LANG").is_none() {
        set("LANG", "C.UTF-8".into());
    }
    set("TMPDIR", temp_dir.to_string_lossy().into_owned());
    set("CODEBUILD_SRC_DIR", dir.to_string_lossy().into_owned());
    set("CODEBUILD_BUILD_ID", BUILD_ID.into());
    set("CODEBUILD_BUILD_NUMBER", "1".into());
    set("CODEBUILD_CI", "true".into());
    for e in extra {
        match e.split_once('=') {
            Some((k, v)) => set(k, v.to_string()),
            // As docker's `-e K`: nothing when kiln has no K.
            None => {
                if let Ok(value) = std::env::var(e) {
                    set(e, value);
                }
            }
        }
    }
    env
}

/// The answers of an `--exec-answers` file.
fn read_answers(file: &Path) -> Result<Vec<ScriptedAnswer>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let answers: Vec<Answer> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{e} (expected a JSON list of {{\"argv\": [..], \"stdout\", \"stderr\", \"code\"}})"
        )
    })?;
    if let Some(at) = answers.iter().position(|a| a.argv.is_empty()) {
        return Err(format!("answer {} has an empty argv", at + 1));
    }
    Ok(answers
        .into_iter()
        .map(|a| ScriptedAnswer {
            argv: a.argv,
            stdout: a.stdout,
            stderr: a.stderr,
            code: a.code,
        })
        .collect())
}

/// The outcome, for a person.
fn print_outcome(name: &str, outcome: &StepOutcome) {
    if outcome.status == 0 {
        out!("{name} succeeded");
    } else {
        out!("{name} failed with status {}", outcome.status);
    }
    if let Some(message) = &outcome.message {
        out!("  message: {message}");
    }
    for change in &outcome.env {
        match change {
            EnvChange::Set(k, v) => out!("  set {k}={v}"),
            EnvChange::Unset(k) => out!("  unset {k}"),
        }
    }
    if let Some(cwd) = &outcome.cwd {
        out!("  cwd {}", cwd.display());
    }
}

/// The outcome, for a machine: {plugin, status, message, env, cwd, log} (and runs_ns with --repeat).
fn json(
    name: &str,
    outcome: &StepOutcome,
    lines: &[(&'static str, String)],
    runs: &[Duration],
) -> serde_json::Value {
    use serde_json::json;
    let env: Vec<_> = outcome
        .env
        .iter()
        .map(|c| match c {
            EnvChange::Set(k, v) => json!({"set": [k, v]}),
            EnvChange::Unset(k) => json!({"unset": k}),
        })
        .collect();
    let log: Vec<_> = lines
        .iter()
        .map(|(level, line)| json!({"level": level, "line": line}))
        .collect();
    let mut value = json!({
        "plugin": name,
        "status": outcome.status,
        "message": outcome.message,
        "env": env,
        "cwd": outcome.cwd.as_ref().map(|c| c.to_string_lossy()),
        "log": log,
    });
    if !runs.is_empty() {
        value["runs_ns"] = runs.iter().map(|d| d.as_nanos() as u64).collect();
    }
    value
}

/// A plugin to run: a built-in plugin's name, or a component file that is there (a name with a `/`
/// or ending in `.wasm` is a file).
fn plugin(s: &str) -> Result<String, String> {
    if s.contains('/') || s.ends_with(".wasm") {
        existing_file(s)?;
    }
    Ok(s.to_string())
}

/// An `-e` value: `K=V` or `K`, K a variable name.
fn env_var(s: &str) -> Result<String, String> {
    let name = s.split_once('=').map_or(s, |(k, _)| k);
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"
        ))
    }
}

/// A buildspec phase a step can run in, upper-cased.
fn phase(s: &str) -> Result<String, String> {
    const PHASES: &[&str] = &["INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD"];
    let upper = s.to_ascii_uppercase();
    if PHASES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("not a phase: one of {}", PHASES.join(", ")))
    }
}
