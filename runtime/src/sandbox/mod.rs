//! Running one step: a WASI preview-2 plugin component on wasmtime, with only what its [`Policy`]
//! grants.
//!
//! The [`Sandbox`] owns the engine, the plugins known by name, and their compiled forms. Components are
//! compiled once and cached on disk (keyed by the component's BLAKE3 digest and the engine's
//! configuration), then instantiated from an `InstancePre` for each step, so a step costs an
//! instantiation, not a compilation. Each step gets a fresh instance: no state leaks from one step to
//! the next except what the step returns.
//!
//! Versions: kiln speaks the WIT package `kiln:plugin@0.1.1` (`sdk/wit/`). A plugin says what it
//! was built for in its `kiln:api-version` section (or, built with kiln-sdk 0.1.0, through its
//! imports); any `0.1.x` up to kiln's runs, anything else is refused before a step needs it, naming
//! both versions. 0.1.1 plugins export `kiln:plugin/entry` (world `plugin`), 0.1.0 plugins a top-level
//! `run` (world `step`, frozen); one linker serves both, as wasmtime matches semver-compatible imports.
//!
//! Grants: a local plugin file runs under the step's [`Policy`] as it is. A plugin from a registry
//! ([`Grant::Registry`]) gets what it declares (its `kiln:capabilities` section) and its user granted
//! (kiln.lock), both: only those variables of the step (and a few non-secret basics), only those
//! programs through `exec`, only those hosts, and those directories to write.
//!
//! Limits: a wall-clock limit (epoch interruption for code running in the guest, a timer around host
//! calls, the process group killed for host programs), a memory limit per instance, no network unless
//! granted, and host programs confined by Landlock (see [`process`]).

mod components;
pub use components::Pruned;
mod host;
pub mod os;
pub mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use host::Level;
pub use process::{Confinement, Prepared, Reaper};

// Plugins built with kiln-sdk 0.1.1 and later: world `plugin`, whose `entry` interface returns
// changes. The linker holds these imports at 0.1.1 and wasmtime matches a 0.1.0 plugin's imports
// against them (semver-compatible names), so one linker serves both worlds.
wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

/// Plugins built with kiln-sdk 0.1.0: world `step`, frozen, with a top-level `run`.
mod legacy {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "step",
        imports: { default: async },
        exports: { default: async },
        with: {
            "kiln:plugin/types": super::kiln::plugin::types,
            "kiln:plugin/log": super::kiln::plugin::log,
            "kiln:plugin/exec": super::kiln::plugin::exec,
            "kiln:plugin/files": super::kiln::plugin::files,
        },
    });
}

use self::kiln::plugin::types as wit;
use crate::plugins::Capabilities;

/// The interface version kiln speaks (the WIT package `kiln:plugin`). It runs plugins built for any
/// `0.1.x` up to this one.
pub const INTERFACE_VERSION: &str = "0.1.1";

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a step's output and log lines go: the build log.
pub trait LogSink: Send + Sync {
    /// A line a plugin or host program wrote to stdout or stderr.
    fn output(&self, stream: Stream, line: &str);
    /// A line a plugin wrote through the `log` interface.
    fn plugin(&self, level: Level, message: &str);
    /// Whether it tells stdout from stderr. When it does not, a host program's two streams may
    /// come as one, in the order they were written.
    fn separates_streams(&self) -> bool {
        true
    }
}

/// A directory a step can reach, at the same path inside as outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub path: PathBuf,
    pub writable: bool,
}

/// What a step may do.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Directories opened to the plugin through WASI.
    pub preopens: Vec<Preopen>,
    /// Whether the plugin may run host programs (`exec`).
    pub allow_exec: bool,
    /// Whether the plugin may open sockets.
    pub network: bool,
    /// Whether its sockets may reach this host's own addresses (loopback, its interfaces) and the
    /// cloud metadata services: only with `--network host`, as for the build's commands.
    pub local_network: bool,
    /// Wall-clock limit for the whole step, host programs included.
    pub timeout: Option<Duration>,
    /// Linear memory limit of the plugin instance, in bytes.
    pub memory_limit: usize,
    /// Answers for `exec`, in place of running programs (tests and `kiln-sdk`'s harness): a command
    /// gets the first answer with its argv, and one without an answer fails. Never starts a program.
    pub scripted_exec: Option<Arc<Vec<ScriptedAnswer>>>,
}

/// What a scripted `exec` returns for one argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedAnswer {
    pub argv: Vec<String>,
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            preopens: Vec::new(),
            allow_exec: false,
            network: false,
            local_network: false,
            timeout: Some(Duration::from_secs(3600)),
            memory_limit: 512 << 20,
            scripted_exec: None,
        }
    }
}

/// What the host programs a step starts run under.
#[derive(Clone)]
pub struct ExecEnv {
    pub prepared: Arc<Prepared>,
    pub reaper: Reaper,
    /// Numeric user and group for host programs (`run-as`).
    pub run_as: Option<(u32, u32)>,
    /// The build's OS sandbox, where host programs run when there is one (else they run under the
    /// Landlock rules of `prepared`).
    pub os: Option<Arc<os::OsSandbox>>,
}

/// The step's context, as the plugin receives it.
#[derive(Debug, Clone, Default)]
pub struct StepContext {
    pub build_id: String,
    pub phase: String,
    pub source_dir: PathBuf,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub temp_dir: PathBuf,
}

/// One change a step makes to the session's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    Set(String, String),
    Unset(String),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub status: i32,
    pub message: Option<String>,
    /// Changes to the session's environment, in order: never a replacement. A 0.1.0 plugin's
    /// `env: Some(list)` is one `Set` per pair.
    pub env: Vec<EnvChange>,
    /// The session's directory after the step. For plugins other than kiln's shell, an existing
    /// directory inside the step's preopens (checked: else the step fails saying so).
    pub cwd: Option<PathBuf>,
}

/// A plugin's component file and what it is allowed.
#[derive(Debug, Clone)]
pub struct PluginFile {
    pub path: PathBuf,
    /// `sha256:<hex>` of the file, checked before it is compiled (a plugin from kiln.lock).
    pub sha256: Option<String>,
    pub grant: Grant,
}

/// What a plugin's user granted it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Grant {
    /// A local file (`--plugin`): the step's policy as it is.
    Local,
    /// A plugin from a registry, pinned in kiln.lock: the step gets what it declares and the lock
    /// grants, both (env names, exec programs, network hosts, write directories).
    Registry {
        reference: String,
        granted: Capabilities,
    },
}

/// What [`Sandbox::check`] found about a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The kiln interface version it was built for.
    pub interface_version: String,
    /// How long compiling it took, when this process compiled it; `None` when it came from the
    /// compiled cache.
    pub compiled: Option<Duration>,
    /// Its `kiln:capabilities` section, when it has one.
    pub declared: Option<Capabilities>,
    /// `sha256:<hex>` of the component.
    pub sha256: String,
    pub blake3: blake3::Hash,
}

/// Why a step could not run to an outcome.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no plugin named `{0}`")]
    UnknownPlugin(String),
    #[error("plugin `{name}` cannot be loaded: {message}")]
    Load { name: String, message: String },
    #[error("plugin `{name}` ran out of time after {limit:?} and was stopped")]
    Timeout { name: String, limit: Duration },
    #[error("plugin `{name}` went past its memory limit of {limit_mib} MiB and was stopped")]
    Memory { name: String, limit_mib: usize },
    #[error("plugin `{name}` failed: {message}")]
    Trap { name: String, message: String },
    #[error("cannot open {} for the step: {message}", path.display())]
    Preopen { path: PathBuf, message: String },
}

/// Where a plugin's component comes from.
enum Source {
    Embedded(&'static [u8]),
    File(PathBuf),
}

struct Registered {
    source: Source,
    sha256: Option<String>,
    grant: Grant,
    loaded: OnceLock<Result<Arc<Loaded>, String>>,
}

struct Loaded {
    pre: Pre,
    info: PluginInfo,
}

/// A component ready to instantiate, by the world it targets.
enum Pre {
    Entry(PluginPre<host::StepState>),
    Legacy(legacy::StepPre<host::StepState>),
}

/// An instance, by the world it targets.
enum Instance {
    Entry(Plugin),
    Legacy(legacy::Step),
}

/// The engine, the plugins and their compiled forms.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<host::StepState>,
    plugins: HashMap<String, Registered>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<AtomicBool>,
    /// Instances of the `shell` plugin kept for the build's next command ([`Warm`]).
    warm: std::sync::Mutex<Vec<Warm>>,
    /// Whether steps use this process's stdin, stdout and stderr (a plugin run as a command by its
    /// shim) rather than the log.
    inherit_stdio: bool,
}

/// A plugin instance that ran a step and waits for the next one under the same policy, with the same
/// log and host programs' sandbox: instantiating a component, its WASI context and its store for each
/// command of a build costs more than the command's own work in kiln. Only for plugins that take
/// everything of a step from the call's context (its environment and directory are not read from
/// WASI) and keep nothing between calls: kiln's `shell`.
struct Warm {
    key: WarmKey,
    store: Store<host::StepState>,
    instance: Instance,
}

/// What a warm instance was made for.
#[derive(PartialEq)]
struct WarmKey {
    plugin: String,
    preopens: Vec<Preopen>,
    network: bool,
    local_network: bool,
    memory_limit: usize,
    /// The log sink and the build's OS sandbox and confinement, by identity.
    log: *const (),
    os: Option<*const os::OsSandbox>,
    prepared: Option<*const Prepared>,
    run_as: Option<(u32, u32)>,
}

// SAFETY: the raw pointers are only compared, never dereferenced.
unsafe impl Send for WarmKey {}

impl WarmKey {
    fn of(plugin: &str, policy: &Policy, exec: Option<&ExecEnv>, log: &Arc<dyn LogSink>) -> Self {
        Self {
            plugin: plugin.to_string(),
            preopens: policy.preopens.clone(),
            network: policy.network,
            local_network: policy.local_network,
            memory_limit: policy.memory_limit,
            log: Arc::as_ptr(log).cast(),
            os: exec.and_then(|e| e.os.as_ref().map(Arc::as_ptr)),
            prepared: exec.map(|e| Arc::as_ptr(&e.prepared)),
            run_as: exec.and_then(|e| e.run_as),
        }
    }
}

/// The embedded plugins whose instances may serve several steps.
const REUSABLE: &[&str] = &["shell"];

/// How often the epoch advances: the resolution of plugin time limits.
const EPOCH: Duration = Duration::from_millis(10);

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// The engine every sandbox runs plugins on (its configuration is part of a compiled plugin's name).
fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(Engine::new(&config)?)
}

/// A component's bytes, checked before anything compiles them.
pub struct Checked {
    /// What it says about itself.
    pub inspected: crate::plugins::Inspected,
    /// Its digest, `sha256:<hex>`.
    pub sha256: String,
    entry: components::Entry,
}

/// Checks a component's bytes before anything compiles them: against the digest a lock pinned
/// (before anything parses them), then the interface it was built for (see the module's
/// documentation for the rule).
pub fn check_component(bytes: &[u8], pinned: Option<&str>) -> Result<Checked, String> {
    let sha256 = crate::plugins::artifact::sha256(bytes);
    if let Some(expected) = pinned
        && expected != sha256
    {
        return Err(format!(
            "its component is not the one kiln.lock pins: it is {sha256}, the lock says \
             {expected} (a damaged or tampered file; `kiln plugin pull` fetches it again)"
        ));
    }
    let inspected = crate::plugins::inspect(bytes)?;
    let entry = components::check_interface(&inspected)?;
    Ok(Checked {
        inspected,
        sha256,
        entry,
    })
}

/// Removes from `dir` the compiled plugins this kiln can no longer load (another kiln version or
/// engine configuration compiled them) and those no build loaded for `unused` (a load refreshes a
/// file's time).
pub fn prune_compiled(dir: &Path, unused: Duration) -> anyhow::Result<Pruned> {
    Ok(components::prune(&engine()?, dir, unused))
}

impl Sandbox {
    /// A sandbox with kiln's embedded plugins registered (`shell`, `artifacts`). Compiled components are
    /// cached under `cache_dir` when given.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<_, HasSelf<host::StepState>>(&mut linker, |state| state)?;

        let ticker = Arc::new(AtomicBool::new(true));
        {
            let engine = engine.clone();
            let running = ticker.clone();
            std::thread::Builder::new()
                .name("kiln-epoch".into())
                .spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH);
                        engine.increment_epoch();
                    }
                })?;
        }
        let mut sandbox = Self {
            engine,
            linker,
            plugins: HashMap::new(),
            cache_dir,
            ticker,
            warm: std::sync::Mutex::new(Vec::new()),
            inherit_stdio: false,
        };
        for (name, bytes) in embedded::EMBEDDED {
            sandbox.plugins.insert(
                (*name).to_string(),
                Registered {
                    source: Source::Embedded(bytes),
                    sha256: None,
                    grant: Grant::Local,
                    loaded: OnceLock::new(),
                },
            );
        }
        Ok(sandbox)
    }

    /// The BLAKE3 digest of every plugin a sandbox with these extra plugin files would have, by name,
    /// without starting an engine (a build restored from the cache never needs one).
    pub fn plugin_digests(
        extra: &[(String, PathBuf)],
    ) -> Result<Vec<(String, blake3::Hash)>, StepError> {
        let mut digests: HashMap<String, blake3::Hash> = embedded::EMBEDDED
            .iter()
            .map(|(name, bytes)| ((*name).to_string(), blake3::hash(bytes)))
            .collect();
        for (name, path) in extra {
            let bytes = std::fs::read(path).map_err(|e| StepError::Load {
                name: name.clone(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            digests.insert(name.clone(), blake3::hash(&bytes));
        }
        let mut digests: Vec<_> = digests.into_iter().collect();
        digests.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(digests)
    }

    /// Registers a plugin from a local component file under `name` ([`Grant::Local`]), replacing any
    /// plugin of that name.
    pub fn register_file(&mut self, name: &str, path: &Path) {
        self.register(
            name,
            PluginFile {
                path: path.to_path_buf(),
                sha256: None,
                grant: Grant::Local,
            },
        );
    }

    /// Registers a plugin's component file under `name` with what it is granted, replacing any
    /// plugin of that name.
    pub fn register(&mut self, name: &str, file: PluginFile) {
        self.plugins.insert(
            name.to_string(),
            Registered {
                source: Source::File(file.path),
                sha256: file.sha256,
                grant: file.grant,
                loaded: OnceLock::new(),
            },
        );
    }

    /// What a registered plugin is granted.
    pub fn grant(&self, name: &str) -> Option<&Grant> {
        self.plugins.get(name).map(|p| &p.grant)
    }

    /// Checks a plugin before any step needs it: reads it, verifies its digest, reads its interface
    /// version and capabilities, and compiles it (or loads it from the compiled cache).
    pub fn check(&self, name: &str) -> Result<PluginInfo, StepError> {
        self.loaded(name).map(|loaded| loaded.info.clone())
    }

    /// Steps of this sandbox read this process's stdin and write its stdout and stderr, as a
    /// program's would (a plugin run as a command by its shim), instead of the log.
    pub fn inherit_stdio(&mut self) {
        self.inherit_stdio = true;
    }

    /// Where the compiled form of a checked plugin is cached, when it is.
    pub fn compiled_file(&self, name: &str) -> Option<PathBuf> {
        let loaded = self.plugins.get(name)?.loaded.get()?.as_ref().ok()?;
        let file = components::compiled_path(
            &self.engine,
            &loaded.info.blake3,
            self.cache_dir.as_deref()?,
        );
        file.exists().then_some(file)
    }

    /// Whether a plugin of this name is registered.
    pub fn has(&self, name: &str) -> bool {
        self.plugins.contains_key(name)
    }

    /// The names of the registered plugins.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    /// The BLAKE3 digest of a plugin's component (what the action cache keys on).
    pub fn digest(&self, name: &str) -> Result<blake3::Hash, StepError> {
        let plugin = self
            .plugins
            .get(name)
            .ok_or_else(|| StepError::UnknownPlugin(name.to_string()))?;
        Ok(blake3::hash(&self.bytes(name, plugin)?))
    }

    fn bytes(
        &self,
        name: &str,
        plugin: &Registered,
    ) -> Result<std::borrow::Cow<'static, [u8]>, StepError> {
        match &plugin.source {
            Source::Embedded(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
            Source::File(path) => std::fs::read(path)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| StepError::Load {
                    name: name.to_string(),
                    message: format!("cannot read {}: {e}", path.display()),
                }),
        }
    }

    fn loaded(&self, name: &str) -> Result<Arc<Loaded>, StepError> {
        let plugin = self
            .plugins
            .get(name)
            .ok_or_else(|| StepError::UnknownPlugin(name.to_string()))?;
        plugin
            .loaded
            .get_or_init(|| {
                let bytes = match self.bytes(name, plugin) {
                    Ok(bytes) => bytes,
                    Err(StepError::Load { message, .. }) => return Err(message),
                    Err(e) => return Err(e.to_string()),
                };
                let Checked {
                    inspected: found,
                    sha256,
                    entry,
                } = check_component(&bytes, plugin.sha256.as_deref())?;
                let (component, compiled) =
                    components::load(&self.engine, &bytes, self.cache_dir.as_deref())
                        .map_err(|e| format!("{e:#}"))?;
                let pre = self
                    .linker
                    .instantiate_pre(&component)
                    .map_err(|e| format!("{e:#}"))?;
                let pre = match entry {
                    components::Entry::Interface => PluginPre::new(pre).map(Pre::Entry),
                    components::Entry::Legacy => legacy::StepPre::new(pre).map(Pre::Legacy),
                }
                .map_err(|e| format!("{e:#}"))?;
                let info = PluginInfo {
                    interface_version: found.interface_version().unwrap_or_default().to_string(),
                    compiled,
                    declared: found.capabilities.clone(),
                    sha256,
                    blake3: blake3::hash(&bytes),
                };
                Ok(Arc::new(Loaded { pre, info }))
            })
            .clone()
            .map_err(|message| StepError::Load {
                name: name.to_string(),
                message,
            })
    }

    /// Runs one step of plugin `name` with `args`, under `policy` (narrowed to what the plugin
    /// declares and its user grants, for a [`Grant::Registry`] plugin).
    pub async fn run(
        &self,
        name: &str,
        args: &[String],
        context: &StepContext,
        policy: &Policy,
        exec: Option<ExecEnv>,
        log: Arc<dyn LogSink>,
    ) -> Result<StepOutcome, StepError> {
        let loaded = self.loaded(name)?;
        let registered = self
            .plugins
            .get(name)
            .ok_or_else(|| StepError::UnknownPlugin(name.to_string()))?;
        let kilns_own = matches!(registered.source, Source::Embedded(_));
        let narrowed = match &registered.grant {
            Grant::Local => None,
            Grant::Registry { granted, .. } => Some(
                narrow(
                    name,
                    loaded.info.declared.clone().unwrap_or_default(),
                    granted.clone(),
                    context,
                    policy,
                )
                .await,
            ),
        };
        let (context, policy) = match &narrowed {
            Some(n) => (&n.context, &n.policy),
            None => (context, policy),
        };
        let deadline = policy.timeout.map(|t| tokio::time::Instant::now() + t);
        let key = (REUSABLE.contains(&name) && kilns_own && policy.scripted_exec.is_none())
            .then(|| WarmKey::of(name, policy, exec.as_ref(), &log));
        let warm = key.as_ref().and_then(|key| {
            let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            let at = warm.iter().position(|w| w.key == *key)?;
            Some(warm.swap_remove(at))
        });
        let (mut store, instance) = match warm {
            Some(Warm {
                mut store,
                instance,
                ..
            }) => {
                store.data_mut().renew(exec, deadline);
                (store, Some(instance))
            }
            None => {
                let allowed_hosts = narrowed.as_ref().map(|n| n.addresses.clone());
                let wasi = wasi_ctx(
                    context,
                    policy,
                    log.clone(),
                    allowed_hosts,
                    self.inherit_stdio,
                )?;
                let mut state = host::StepState::new(
                    wasi,
                    policy.memory_limit,
                    log,
                    exec,
                    deadline,
                    policy.preopens.clone(),
                );
                state.configure(host::Rules {
                    plugin: name.to_string(),
                    prefix: !kilns_own,
                    exec: narrowed.as_ref().map(|n| n.exec.clone()),
                    scripted: policy
                        .scripted_exec
                        .clone()
                        .map(|answers| (answers, policy.allow_exec)),
                });
                let mut store = Store::new(&self.engine, state);
                store.limiter(|state| &mut state.limits);
                (store, None)
            }
        };
        match policy.timeout {
            Some(limit) => {
                let ticks = (limit.as_millis() / EPOCH.as_millis()).max(1) as u64 + 1;
                store.set_epoch_deadline(ticks);
            }
            None => store.set_epoch_deadline(u64::MAX / 2),
        }
        store.epoch_deadline_trap();

        let ctx = wit::Context {
            build_id: context.build_id.clone(),
            phase: context.phase.clone(),
            source_dir: path_string(&context.source_dir),
            cwd: path_string(&context.cwd),
            env: context.env.clone(),
            temp_dir: path_string(&context.temp_dir),
            preopens: policy
                .preopens
                .iter()
                .map(|p| wit::Preopen {
                    path: path_string(&p.path),
                    writable: p.writable,
                })
                .collect(),
        };
        let call = async {
            let instance = match instance {
                Some(instance) => instance,
                None => match &loaded.pre {
                    Pre::Entry(pre) => Instance::Entry(pre.instantiate_async(&mut store).await?),
                    Pre::Legacy(pre) => Instance::Legacy(pre.instantiate_async(&mut store).await?),
                },
            };
            let outcome = match &instance {
                Instance::Entry(plugin) => {
                    let o = plugin
                        .kiln_plugin_entry()
                        .call_run(&mut store, args, &ctx)
                        .await?;
                    StepOutcome {
                        status: o.status,
                        message: o.message,
                        env: o
                            .env
                            .into_iter()
                            .map(|change| match change {
                                wit::EnvChange::Set((k, v)) => EnvChange::Set(k, v),
                                wit::EnvChange::Unset(k) => EnvChange::Unset(k),
                            })
                            .collect(),
                        cwd: o.cwd.map(PathBuf::from),
                    }
                }
                Instance::Legacy(step) => {
                    let o = step.call_run(&mut store, args, &ctx).await?;
                    StepOutcome {
                        status: o.status,
                        message: o.message,
                        env: legacy_env(o.env),
                        cwd: o.cwd.map(PathBuf::from),
                    }
                }
            };
            anyhow::Ok((instance, outcome))
        };
        let result = match policy.timeout {
            // The epoch stops guest code; this timer stops a step blocked in a host call.
            Some(limit) => match tokio::time::timeout(limit + EPOCH * 5, call).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(StepError::Timeout {
                        name: name.to_string(),
                        limit,
                    });
                }
            },
            None => call.await,
        };
        match result {
            Ok((instance, mut outcome)) => {
                // A step that ended well leaves its instance for the next (one that trapped or ran
                // out of time is dropped with its store).
                if let Some(key) = key {
                    store.data_mut().renew(None, None);
                    self.warm
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Warm {
                            key,
                            store,
                            instance,
                        });
                }
                // kiln's shell follows the shell's own `cd`, wherever it led; any other plugin
                // moves the session only into the step's directories.
                if !(kilns_own && name == "shell")
                    && let Some(cwd) = outcome.cwd.take()
                {
                    match returned_cwd(&cwd, &context.cwd, &policy.preopens) {
                        Ok(cwd) => outcome.cwd = Some(cwd),
                        Err(why) => {
                            outcome.status = 1;
                            outcome.message = Some(why);
                        }
                    }
                }
                if outcome.status != 0
                    && let Some(message) = outcome.message.take()
                {
                    outcome.message = Some(explain_paths(message, &policy.preopens));
                }
                Ok(outcome)
            }
            Err(error) => {
                if store.data().limits.exceeded {
                    return Err(StepError::Memory {
                        name: name.to_string(),
                        limit_mib: policy.memory_limit >> 20,
                    });
                }
                if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
                    return Err(StepError::Timeout {
                        name: name.to_string(),
                        limit: policy.timeout.unwrap_or_default(),
                    });
                }
                let message = match store.data_mut().panic.take() {
                    // The panic line is the reason; the trap and its wasm backtrace go to the log.
                    Some(line) => {
                        store
                            .data()
                            .log_lines(host::Level::Info, &format!("{error:?}"));
                        line
                    }
                    None => format!("{error:#}"),
                };
                Err(StepError::Trap {
                    name: name.to_string(),
                    message: explain_paths(message, &policy.preopens),
                })
            }
        }
    }
}

/// A 0.1.0 plugin's returned environment as changes: one set per pair, never a replacement (so
/// never an unset).
fn legacy_env(env: Option<Vec<(String, String)>>) -> Vec<EnvChange> {
    env.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| EnvChange::Set(k, v))
        .collect()
}

/// A registry plugin's step: its context and policy narrowed to what it declares and is granted.
struct Narrowed {
    context: StepContext,
    policy: Policy,
    exec: host::ExecRule,
    /// The addresses of the hosts it may reach (resolved now), when it may reach any.
    addresses: Arc<Vec<std::net::IpAddr>>,
}

/// Variables every registry plugin sees: none of them is a secret.
fn basic_variable(name: &str) -> bool {
    matches!(name, "PATH" | "HOME" | "LANG" | "TZ" | "TMPDIR" | "USER")
        || name.starts_with("LC_")
        || name.starts_with("CODEBUILD_")
}

async fn narrow(
    name: &str,
    declared: Capabilities,
    granted: Capabilities,
    context: &StepContext,
    policy: &Policy,
) -> Narrowed {
    let allowed = declared.intersect(&granted);
    let mut context = context.clone();
    context
        .env
        .retain(|(k, _)| basic_variable(k) || allowed.env.contains(k));
    let mut policy = policy.clone();
    let mut addresses = Vec::new();
    if policy.network {
        for host in &allowed.network {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => {
                    if let Ok(found) = tokio::net::lookup_host((host.as_str(), 0)).await {
                        addresses.extend(found.map(|a| a.ip()));
                    }
                }
            }
        }
    }
    policy.network = policy.network && !addresses.is_empty();
    for dir in &allowed.write {
        let path = PathBuf::from(dir);
        if path.is_dir() && !policy.preopens.iter().any(|p| p.path == path) {
            policy.preopens.push(Preopen {
                path,
                writable: true,
            });
        }
    }
    Narrowed {
        context,
        policy,
        exec: host::ExecRule {
            plugin: name.to_string(),
            declared,
            granted,
        },
        addresses: Arc::new(addresses),
    }
}

/// The directory a plugin returned, resolved against the step's directory: it must exist and lie
/// inside the step's preopens.
fn returned_cwd(cwd: &Path, base: &Path, preopens: &[Preopen]) -> Result<PathBuf, String> {
    let joined = base.join(cwd);
    let outside = || {
        format!(
            "the plugin moved the session to {}, which is outside the step's directories: {}",
            joined.display(),
            preopen_list(preopens)
        )
    };
    let real = match std::fs::canonicalize(&joined) {
        Ok(real) => real,
        Err(_) if !inside(&joined, preopens) => return Err(outside()),
        Err(e) => {
            return Err(format!(
                "the plugin moved the session to {}, which does not exist: {e}",
                joined.display()
            ));
        }
    };
    if !real.is_dir() {
        return Err(format!(
            "the plugin moved the session to {}, which is not a directory",
            joined.display()
        ));
    }
    let inside_real = preopens.iter().any(|p| {
        let root = std::fs::canonicalize(&p.path).unwrap_or_else(|_| p.path.clone());
        real.starts_with(root)
    });
    if !inside_real {
        return Err(outside());
    }
    Ok(joined)
}

fn inside(path: &Path, preopens: &[Preopen]) -> bool {
    preopens.iter().any(|p| path.starts_with(&p.path))
}

fn preopen_list(preopens: &[Preopen]) -> String {
    if preopens.is_empty() {
        return "none".to_string();
    }
    preopens
        .iter()
        .map(|p| p.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds to a failure's message why a path in it could not be reached: it is outside the step's
/// directories (WASI only says "No such file or directory").
fn explain_paths(message: String, preopens: &[Preopen]) -> String {
    let outside = message
        .split(|c: char| c.is_whitespace() || matches!(c, '`' | '\'' | '"' | '(' | ')' | ','))
        .map(|word| word.trim_end_matches([':', '.', ';']))
        .find(|word| word.len() > 1 && word.starts_with('/') && !inside(Path::new(word), preopens));
    match outside {
        Some(path) => format!(
            "{message} ({path} is outside the step's directories: {})",
            preopen_list(preopens)
        ),
        None => message,
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The addresses of this host's interfaces.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list that freeifaddrs releases below; each node's address,
    // when present, is read as the sockaddr its family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut node = list;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match (*addr).sa_family as i32 {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::from(
                            u32::from_be(v4.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// The step's WASI context. `allowed_hosts`: a registry plugin reaches only these addresses.
fn wasi_ctx(
    context: &StepContext,
    policy: &Policy,
    log: Arc<dyn LogSink>,
    allowed_hosts: Option<Arc<Vec<std::net::IpAddr>>>,
    inherit_stdio: bool,
) -> Result<WasiCtx, StepError> {
    let mut builder = WasiCtxBuilder::new();
    // A step's file operations run on the thread that runs the step rather than hopping to tokio's
    // blocking pool for each one: steps are few and run one at a time, and a command's state file is
    // opened, read and removed in a few microseconds.
    builder
        .allow_blocking_current_thread(true)
        .envs(&context.env);
    if inherit_stdio {
        builder.inherit_stdin().inherit_stdout().inherit_stderr();
    } else {
        builder
            .stdout(host::LogOutput::new(log.clone(), Stream::Stdout))
            .stderr(host::LogOutput::new(log, Stream::Stderr));
    }
    builder
        .allow_tcp(policy.network)
        .allow_udp(policy.network)
        .allow_ip_name_lookup(policy.network);
    if policy.network {
        builder.inherit_network();
        if !policy.local_network || allowed_hosts.is_some() {
            let local = (!policy.local_network).then(|| Arc::new(local_addresses()));
            builder.socket_addr_check(move |addr, addr_use| {
                // wasmtime checks a connect's implicit bind with the wildcard address: a bind to
                // it reaches nothing by itself.
                let wildcard_bind = addr.ip().is_unspecified()
                    && matches!(
                        addr_use,
                        wasmtime_wasi::sockets::SocketAddrUse::TcpBind
                            | wasmtime_wasi::sockets::SocketAddrUse::UdpBind
                    );
                if wildcard_bind {
                    return Box::pin(std::future::ready(true));
                }
                let refused_local = local.as_ref().is_some_and(|local| {
                    addr.ip().is_loopback()
                        || addr.ip().is_unspecified()
                        || local.contains(&addr.ip())
                        || os::launcher::METADATA
                            .iter()
                            .any(|(metadata, _)| *metadata == addr.ip())
                });
                let ungranted = allowed_hosts
                    .as_ref()
                    .is_some_and(|hosts| !hosts.contains(&addr.ip()));
                Box::pin(std::future::ready(!refused_local && !ungranted))
            });
        }
    }
    for preopen in &policy.preopens {
        let perms = if preopen.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(&preopen.path, path_string(&preopen.path), perms)
            .map_err(|e| StepError::Preopen {
                path: preopen.path.clone(),
                message: e.to_string(),
            })?;
    }
    if policy
        .preopens
        .iter()
        .any(|p| context.cwd.starts_with(&p.path))
    {
        builder.initial_cwd(path_string(&context.cwd));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const PROBE: &str = env!("KILN_TEST_PLUGIN_PROBE");
    const NEEDS: &str = env!("KILN_TEST_PLUGIN_NEEDS");
    const PROBE_010: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/plugins/probe-0.1.0.wasm"
    );

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl LogSink for Lines {
        fn output(&self, _: Stream, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
        fn plugin(&self, level: Level, message: &str) {
            self.0.lock().unwrap().push(format!("{level:?} {message}"));
        }
    }

    impl Lines {
        fn has(&self, text: &str) -> bool {
            self.0.lock().unwrap().iter().any(|l| l.contains(text))
        }
        fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    /// A step in a temp directory: the directory is the only preopen.
    struct Step {
        dir: tempfile::TempDir,
        sandbox: Sandbox,
        env: Vec<(String, String)>,
        policy: Policy,
    }

    impl Step {
        fn new(name: &str, path: &str, grant: Grant) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut sandbox = Sandbox::new(None).unwrap();
            sandbox.register(
                name,
                PluginFile {
                    path: PathBuf::from(path),
                    sha256: None,
                    grant,
                },
            );
            let root = dir.path().canonicalize().unwrap();
            let policy = Policy {
                preopens: vec![Preopen {
                    path: root,
                    writable: true,
                }],
                timeout: Some(Duration::from_secs(60)),
                ..Policy::default()
            };
            Self {
                dir,
                sandbox,
                env: Vec::new(),
                policy,
            }
        }

        fn root(&self) -> PathBuf {
            self.policy.preopens[0].path.clone()
        }

        async fn run(&self, name: &str, args: &[&str]) -> (Result<StepOutcome, StepError>, Lines) {
            let root = self.root();
            let context = StepContext {
                build_id: "test".into(),
                phase: "BUILD".into(),
                source_dir: root.clone(),
                cwd: root.clone(),
                env: self.env.clone(),
                temp_dir: root,
            };
            let lines = Arc::new(Lines::default());
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let result = self
                .sandbox
                .run(name, &args, &context, &self.policy, None, lines.clone())
                .await;
            let lines = Arc::try_unwrap(lines).unwrap_or_default();
            (result, lines)
        }
    }

    #[tokio::test]
    async fn a_plugin_built_with_sdk_0_1_0_still_runs() {
        let mut step = Step::new("old", PROBE_010, Grant::Local);
        step.env = vec![("X".into(), "from-the-session".into())];
        let info = step.sandbox.check("old").unwrap();
        assert_eq!(info.interface_version, "0.1.0");
        let (outcome, lines) = step.run("old", &["args", "a", "b"]).await;
        assert_eq!(outcome.unwrap().status, 0);
        assert!(lines.has("args: a|b"), "{:?}", lines.all());
        let (outcome, lines) = step.run("old", &["env", "X"]).await;
        assert_eq!(outcome.unwrap().env, Vec::new());
        assert!(lines.has("X=from-the-session"), "{:?}", lines.all());
    }

    #[tokio::test]
    async fn a_plugin_built_for_another_interface_version_is_refused_naming_both() {
        let bytes = std::fs::read(PROBE).unwrap();
        let section = b"kiln:api-version0.1.1";
        let at = bytes
            .windows(section.len())
            .position(|w| w == section)
            .expect("the probe has its kiln:api-version section");
        let dir = tempfile::tempdir().unwrap();
        for (version, says) in [
            ("0.2.0", "this kiln speaks 0.1.1"),
            ("0.1.9", "upgrade kiln"),
        ] {
            let mut patched = bytes.clone();
            let from = at + section.len() - 5;
            patched[from..from + 5].copy_from_slice(version.as_bytes());
            let path = dir.path().join(format!("probe-{version}.wasm"));
            std::fs::write(&path, &patched).unwrap();
            let mut sandbox = Sandbox::new(None).unwrap();
            sandbox.register_file("p", &path);
            let e = sandbox.check("p").unwrap_err().to_string();
            assert!(e.contains(version) && e.contains(says), "{e}");
        }
    }

    #[tokio::test]
    async fn a_component_that_says_nothing_about_its_interface_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty-component.wasm");
        // The smallest component: its header, no imports, no exports, no sections.
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
        let mut sandbox = Sandbox::new(None).unwrap();
        sandbox.register_file("nothing", &path);
        let e = sandbox.check("nothing").unwrap_err().to_string();
        assert!(e.contains("says nothing about the kiln interface"), "{e}");
    }

    #[tokio::test]
    async fn a_tampered_component_is_refused_before_it_is_compiled() {
        let mut sandbox = Sandbox::new(None).unwrap();
        sandbox.register(
            "p",
            PluginFile {
                path: PathBuf::from(PROBE),
                sha256: Some(format!("sha256:{}", "0".repeat(64))),
                grant: Grant::Local,
            },
        );
        let e = sandbox.check("p").unwrap_err().to_string();
        assert!(e.contains("not the one kiln.lock pins"), "{e}");
        let right = crate::plugins::artifact::sha256(&std::fs::read(PROBE).unwrap());
        sandbox.register(
            "pinned",
            PluginFile {
                path: PathBuf::from(PROBE),
                sha256: Some(right.clone()),
                grant: Grant::Local,
            },
        );
        assert_eq!(sandbox.check("pinned").unwrap().sha256, right);
        sandbox.register_file("q", Path::new(PROBE));
        let info = sandbox.check("q").unwrap();
        assert_eq!(info.interface_version, INTERFACE_VERSION);
        assert!(info.compiled.is_some(), "compiled now, without a cache");
        assert_eq!(info.declared, None);
        assert!(info.sha256.starts_with("sha256:"));
    }

    #[tokio::test]
    async fn a_plugin_returns_env_changes_set_and_unset() {
        let step = Step::new("probe", PROBE, Grant::Local);
        let (outcome, _) = step.run("probe", &["set", "K", "v"]).await;
        assert_eq!(
            outcome.unwrap().env,
            vec![EnvChange::Set("K".into(), "v".into())]
        );
        let (outcome, _) = step.run("probe", &["unset", "K"]).await;
        assert_eq!(outcome.unwrap().env, vec![EnvChange::Unset("K".into())]);
    }

    #[tokio::test]
    async fn a_returned_cwd_must_be_an_existing_directory_inside_the_preopens() {
        let step = Step::new("probe", PROBE, Grant::Local);
        std::fs::create_dir(step.dir.path().join("sub")).unwrap();
        let (outcome, _) = step.run("probe", &["cd", "sub"]).await;
        let outcome = outcome.unwrap();
        assert_eq!(outcome.status, 0, "{:?}", outcome.message);
        assert_eq!(outcome.cwd, Some(step.root().join("sub")));
        let (outcome, _) = step.run("probe", &["cd", "/etc"]).await;
        let outcome = outcome.unwrap();
        assert_eq!(outcome.status, 1);
        assert_eq!(outcome.cwd, None);
        let message = outcome.message.unwrap();
        assert!(
            message.contains("/etc, which is outside the step's directories"),
            "{message}"
        );
        let (outcome, _) = step.run("probe", &["cd", "missing"]).await;
        let message = outcome.unwrap().message.unwrap();
        assert!(message.contains("which does not exist"), "{message}");
    }

    #[tokio::test]
    async fn a_plugin_starts_in_the_context_cwd_and_a_path_outside_the_preopens_is_explained() {
        let step = Step::new("probe", PROBE, Grant::Local);
        let (_, lines) = step.run("probe", &["pwd"]).await;
        assert!(
            lines.has(&format!("pwd: {}", step.root().display())),
            "{:?}",
            lines.all()
        );
        let (outcome, _) = step.run("probe", &["read", "/etc/hostname"]).await;
        let message = outcome.unwrap().message.unwrap();
        assert!(
            message.contains(&format!(
                "(/etc/hostname is outside the step's directories: {})",
                step.root().display()
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_panic_is_one_line_and_its_trap_goes_to_the_log() {
        let step = Step::new("probe", PROBE, Grant::Local);
        let (outcome, lines) = step.run("probe", &["panic", "boom"]).await;
        let Err(StepError::Trap { message, .. }) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(message.starts_with("panicked at "), "{message}");
        assert!(message.ends_with(": boom"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // The wasm trap with its backtrace is in the log, without --verbose.
        assert!(lines.has("Info "), "{:?}", lines.all());
        assert!(lines.has("wasm backtrace"), "{:?}", lines.all());
    }

    #[tokio::test]
    async fn a_file_plugins_log_lines_carry_its_name() {
        let step = Step::new("probe", PROBE, Grant::Local);
        let (_, lines) = step.run("probe", &["log", "warn", "careful"]).await;
        assert!(lines.has("Warn probe: careful"), "{:?}", lines.all());
    }

    fn registry(granted: Capabilities) -> Grant {
        Grant::Registry {
            reference: "oci://registry.test/needs:1.0.0".into(),
            granted,
        }
    }

    fn scripted(step: &mut Step) {
        step.policy.allow_exec = true;
        step.policy.scripted_exec = Some(Arc::new(vec![ScriptedAnswer {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            stdout: "scripted\n".into(),
            stderr: String::new(),
            code: 0,
        }]));
    }

    #[tokio::test]
    async fn a_registry_plugin_runs_only_programs_declared_and_granted_and_refusals_name_who_refused()
     {
        // Declared (exec sh) and granted: scripted answer, no program started.
        let mut step = Step::new(
            "needs",
            NEEDS,
            registry(Capabilities {
                exec: vec!["sh".into(), "curl".into()],
                ..Capabilities::default()
            }),
        );
        scripted(&mut step);
        let info = step.sandbox.check("needs").unwrap();
        assert_eq!(
            info.declared.as_ref().map(|d| d.exec.clone()),
            Some(vec!["sh".to_string()])
        );
        let (outcome, lines) = step.run("needs", &["exec", "sh", "-c", "true"]).await;
        assert_eq!(outcome.unwrap().status, 0);
        assert!(lines.has("stdout: scripted"), "{:?}", lines.all());
        // Granted but not declared: the plugin refuses.
        let (outcome, lines) = step.run("needs", &["exec", "curl", "x"]).await;
        let message = outcome.unwrap().message.unwrap();
        assert!(
            message.contains("plugin `needs` may not run `curl`: the plugin does not declare it"),
            "{message}"
        );
        assert!(
            lines.has("Warn plugin `needs` may not run `curl`"),
            "{:?}",
            lines.all()
        );
        // Declared but not granted: kiln.lock refuses.
        let mut step = Step::new("needs", NEEDS, registry(Capabilities::default()));
        scripted(&mut step);
        let (outcome, _) = step.run("needs", &["exec", "sh", "-c", "true"]).await;
        let message = outcome.unwrap().message.unwrap();
        assert!(
            message.contains("plugin `needs` may not run `sh`: kiln.lock does not grant it"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_registry_plugin_sees_only_declared_and_granted_variables_and_the_basics() {
        let env = vec![
            ("TOKEN".to_string(), "t0k3n".to_string()),
            ("SECRET".to_string(), "s3cr3t".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
        ];
        let granted = Capabilities {
            env: vec!["TOKEN".into(), "SECRET".into()],
            ..Capabilities::default()
        };
        let mut step = Step::new("needs", NEEDS, registry(granted));
        step.env = env.clone();
        for (name, seen) in [("TOKEN", "t0k3n"), ("SECRET", ""), ("PATH", "/usr/bin")] {
            let (_, lines) = step.run("needs", &["env", name]).await;
            assert!(lines.has(&format!("{name}={seen}")), "{:?}", lines.all());
        }
        // Declared but not granted: not seen.
        let mut step = Step::new("needs", NEEDS, registry(Capabilities::default()));
        step.env = env;
        let (_, lines) = step.run("needs", &["env", "TOKEN"]).await;
        assert!(lines.has("TOKEN="), "{:?}", lines.all());
        assert!(!lines.has("t0k3n"), "{:?}", lines.all());
    }

    #[tokio::test]
    async fn a_registry_plugin_reaches_only_hosts_declared_and_granted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepting = std::thread::spawn(move || {
            let _ = listener.accept();
        });
        for (granted, connects) in [(vec!["127.0.0.1".to_string()], true), (Vec::new(), false)] {
            let mut step = Step::new(
                "needs",
                NEEDS,
                registry(Capabilities {
                    network: granted,
                    ..Capabilities::default()
                }),
            );
            step.policy.network = true;
            step.policy.local_network = true;
            let (outcome, lines) = step.run("needs", &["net", &addr]).await;
            let outcome = outcome.unwrap();
            assert_eq!(
                outcome.status == 0,
                connects,
                "{outcome:?} {:?}",
                lines.all()
            );
        }
        // The first connection was accepted; nothing else came.
        accepting.join().unwrap();
    }

    #[tokio::test]
    async fn a_registry_plugins_write_directories_and_network_need_both_sides_and_the_policy() {
        let extra = tempfile::tempdir().unwrap();
        let extra = extra.path().to_string_lossy().into_owned();
        let both = Capabilities {
            network: vec!["127.0.0.1".into()],
            write: vec![extra.clone(), "/no/such/dir".into()],
            ..Capabilities::default()
        };
        let base = Policy::default();
        let writable = |n: &Narrowed| {
            n.policy
                .preopens
                .iter()
                .filter(|p| p.writable)
                .map(|p| p.path.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        // Declared and granted: the existing directory is opened for writing.
        let n = narrow(
            "x",
            both.clone(),
            both.clone(),
            &StepContext::default(),
            &base,
        )
        .await;
        assert_eq!(writable(&n), vec![extra.clone()]);
        // The step's policy has no network: a grant does not add it.
        assert!(!n.policy.network);
        let online = Policy {
            network: true,
            ..Policy::default()
        };
        let n = narrow(
            "x",
            both.clone(),
            both.clone(),
            &StepContext::default(),
            &online,
        )
        .await;
        assert!(n.policy.network);
        assert_eq!(*n.addresses, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
        // One side missing: nothing.
        let n = narrow(
            "x",
            both,
            Capabilities::default(),
            &StepContext::default(),
            &online,
        )
        .await;
        assert!(writable(&n).is_empty());
        assert!(!n.policy.network);
    }

    #[test]
    fn a_0_1_0_plugins_returned_env_is_applied_as_sets_never_a_replacement() {
        assert_eq!(legacy_env(None), Vec::new());
        assert_eq!(
            legacy_env(Some(vec![("ONLY".into(), "1".into())])),
            vec![EnvChange::Set("ONLY".into(), "1".into())]
        );
    }

    #[test]
    fn the_sdk_sections_survive_the_release_build() {
        let probe = crate::plugins::inspect(&std::fs::read(PROBE).unwrap()).unwrap();
        assert_eq!(probe.api_version.as_deref(), Some(INTERFACE_VERSION));
        assert_eq!(
            probe.metadata.get("licenses").map(String::as_str),
            Some("Apache-2.0")
        );
        assert!(
            probe.metadata.contains_key("version"),
            "{:?}",
            probe.metadata
        );
        assert!(
            probe.exports.iter().any(|e| e == "kiln:plugin/entry@0.1.1"),
            "{:?}",
            probe.exports
        );
        // The probe declares nothing; needs declares exec, network and env.
        assert_eq!(
            probe.capabilities.unwrap_or_default(),
            Capabilities::default()
        );
        let needs = crate::plugins::inspect(&std::fs::read(NEEDS).unwrap()).unwrap();
        assert_eq!(
            needs.capabilities,
            Some(Capabilities {
                exec: vec!["sh".into()],
                network: vec!["127.0.0.1".into()],
                env: vec!["TOKEN".into()],
                write: vec!["/var/empty/kiln-needs".into()],
            })
        );
        assert!(
            needs.metadata.contains_key("description"),
            "{:?}",
            needs.metadata
        );
    }

    #[test]
    fn paths_inside_the_preopens_are_not_explained() {
        let preopens = vec![Preopen {
            path: PathBuf::from("/src"),
            writable: true,
        }];
        assert_eq!(
            explain_paths("cannot read /src/a: gone".into(), &preopens),
            "cannot read /src/a: gone"
        );
        assert_eq!(
            explain_paths("cannot read `/etc/x`: gone".into(), &preopens),
            "cannot read `/etc/x`: gone (/etc/x is outside the step's directories: /src)"
        );
    }
}
