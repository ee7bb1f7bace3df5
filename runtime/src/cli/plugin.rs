//! `kiln plugin`: list the built-in plugins, run one plugin once as a build step would.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use kiln::build::{self, log::Console};

use super::exit;

pub mod exec;
pub mod registry;
use super::options::{GlobalArgs, existing_dir, existing_file, parse_size};

/// `kiln plugin list|run`.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// List the plugins built into kiln.
    List,
    /// Run a plugin once, as a build step would, in the current directory: a test harness for plugin
    /// authors.
    Run(PluginRunArgs),
    /// Push a plugin component to a registry (oci://), or a file:// or s3:// image layout, as a
    /// Wasm OCI artifact.
    Push(registry::PushArgs),
    /// Pull a plugin into the build cache and compile it.
    Pull(registry::PullArgs),
    /// Name a registry plugin in kiln.toml and pin it in kiln.lock, granting what it asks for
    /// only with --accept.
    Add(registry::AddArgs),
    /// Pin what kiln.toml's plugin tags name now.
    Update(registry::UpdateArgs),
    /// Run a build's plugin as a command: what its shim on the build's PATH calls.
    #[command(hide = true)]
    Exec(exec::ExecArgs),
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

    /// The directory preopened read-write (the step's source directory).
    #[arg(long, default_value = ".", value_parser = existing_dir)]
    dir: PathBuf,

    /// Let the plugin run host programs.
    #[arg(long)]
    allow_exec: bool,

    /// Let the plugin use the network.
    #[arg(long)]
    network: bool,

    /// The step's time limit.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Memory limit of the instance.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_limit: usize,
}

/// `kiln plugin list`: the embedded plugins and their digests.
pub fn list(global: &GlobalArgs) -> u8 {
    match kiln::sandbox::Sandbox::new(global.components_dir()) {
        Ok(sandbox) => {
            for name in sandbox.names() {
                let digest = sandbox
                    .digest(name)
                    .map(|d| d.to_hex().to_string())
                    .unwrap_or_default();
                out!("{name}\tblake3:{digest}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INTERNAL
        }
    }
}

/// `kiln plugin run`: one step of the plugin, in the given directory.
pub async fn run(global: &GlobalArgs, args: &PluginRunArgs) -> u8 {
    use kiln::sandbox::{
        Confinement, ExecEnv, LogSink, Policy, Preopen, Reaper, Sandbox, StepContext,
    };
    use std::sync::Arc;
    let mut sandbox = match Sandbox::new(global.components_dir()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::INTERNAL;
        }
    };
    let name = if args.plugin.ends_with(".wasm") || std::path::Path::new(&args.plugin).is_file() {
        sandbox.register_file("plugin", std::path::Path::new(&args.plugin));
        "plugin".to_string()
    } else {
        args.plugin.clone()
    };
    let dir = match args.dir.canonicalize() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: {e}", args.dir.display());
            return exit::BAD_INPUT;
        }
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
    let log = match build::log::BuildLog::create(None, Console::Stdout, false) {
        Ok(l) => Arc::new(l.verbose(true)),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let confinement = Confinement {
        writable: vec![dir.clone(), temp_dir.clone()],
        readable: vec![PathBuf::from("/")],
        network: args.network,
        required: false,
        enabled: true,
    };
    let prepared = match confinement.prepare() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let context = StepContext {
        build_id: "plugin-run".into(),
        phase: "BUILD".into(),
        source_dir: dir.clone(),
        cwd: dir.clone(),
        env: std::env::vars().collect(),
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
        allow_exec: args.allow_exec,
        network: args.network,
        local_network: args.network,
        timeout: Some(args.timeout),
        memory_limit: args.memory_limit,
        scripted_exec: None,
    };
    let exec = args.allow_exec.then(|| ExecEnv {
        prepared: Arc::new(prepared),
        reaper: Reaper::default(),
        run_as: None,
        os: None,
    });
    let sink: Arc<dyn LogSink> = log;
    match sandbox
        .run(&name, &args.args, &context, &policy, exec, sink)
        .await
    {
        Ok(outcome) => {
            if outcome.status == 0 {
                eprintln!("plugin succeeded");
                exit::OK
            } else {
                eprintln!(
                    "plugin failed with status {}: {}",
                    outcome.status,
                    outcome.message.unwrap_or_default()
                );
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::of_step(&e)
        }
    }
}

/// A plugin to run: a built-in plugin's name, or a component file that is there (a name with a `/`
/// or ending in `.wasm` is a file).
fn plugin(s: &str) -> Result<String, String> {
    if s.contains('/') || s.ends_with(".wasm") {
        existing_file(s)?;
    }
    Ok(s.to_string())
}
