//! Running one step: a WASI preview-2 plugin component on wasmtime, with only what its [`Policy`]
//! grants.
//!
//! The [`Sandbox`] owns the engine, the plugins known by name, and their compiled forms. Components are
//! compiled once and cached on disk (keyed by the component's BLAKE3 digest and the engine's
//! configuration), then instantiated from an `InstancePre` for each step, so a step costs an
//! instantiation, not a compilation. Each step gets a fresh instance: no state leaks from one step to
//! the next except what the step returns.
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

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "step",
    imports: { default: async },
    exports: { default: async },
});

use self::kiln::plugin::types as wit;

/// The interface version kiln speaks (the WIT package `kiln:plugin`).
pub const INTERFACE_VERSION: &str = "0.1.0";

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

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub status: i32,
    pub message: Option<String>,
    pub env: Option<Vec<(String, String)>>,
    pub cwd: Option<PathBuf>,
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

struct Plugin {
    source: Source,
    loaded: OnceLock<Result<Arc<Loaded>, String>>,
}

struct Loaded {
    pre: StepPre<host::StepState>,
}

/// The engine, the plugins and their compiled forms.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<host::StepState>,
    plugins: HashMap<String, Plugin>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<AtomicBool>,
    /// Instances of the `shell` plugin kept for the build's next command ([`Warm`]).
    warm: std::sync::Mutex<Vec<Warm>>,
}

/// A plugin instance that ran a step and waits for the next one under the same policy, with the same
/// log and host programs' sandbox: instantiating a component, its WASI context and its store for each
/// command of a build costs more than the command's own work in kiln. Only for plugins that take
/// everything of a step from the call's context (its environment and directory are not read from
/// WASI) and keep nothing between calls: kiln's `shell`.
struct Warm {
    key: WarmKey,
    store: Store<host::StepState>,
    instance: Step,
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
        Step::add_to_linker::<_, HasSelf<host::StepState>>(&mut linker, |state| state)?;

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
        };
        for (name, bytes) in embedded::EMBEDDED {
            sandbox.plugins.insert(
                (*name).to_string(),
                Plugin {
                    source: Source::Embedded(bytes),
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

    /// Registers a plugin from a component file under `name`, replacing any plugin of that name.
    pub fn register_file(&mut self, name: &str, path: &Path) {
        self.plugins.insert(
            name.to_string(),
            Plugin {
                source: Source::File(path.to_path_buf()),
                loaded: OnceLock::new(),
            },
        );
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

    /// Compiles (or loads from the cache) a plugin now rather than at its first step.
    pub fn preload(&self, name: &str) -> Result<(), StepError> {
        self.loaded(name).map(|_| ())
    }

    fn bytes(
        &self,
        name: &str,
        plugin: &Plugin,
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
                let bytes = self.bytes(name, plugin).map_err(|e| e.to_string())?;
                let component = components::load(&self.engine, &bytes, self.cache_dir.as_deref())
                    .map_err(|e| format!("{e:#}"))?;
                components::check_interface(&self.engine, &component)?;
                let pre = self
                    .linker
                    .instantiate_pre(&component)
                    .and_then(StepPre::new)
                    .map_err(|e| format!("{e:#}"))?;
                Ok(Arc::new(Loaded { pre }))
            })
            .clone()
            .map_err(|message| StepError::Load {
                name: name.to_string(),
                message,
            })
    }

    /// Runs one step of plugin `name` with `args`, under `policy`.
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
        let deadline = policy.timeout.map(|t| tokio::time::Instant::now() + t);
        let key = REUSABLE
            .contains(&name)
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
                let wasi = wasi_ctx(context, policy, log.clone())?;
                let state = host::StepState::new(
                    wasi,
                    policy.memory_limit,
                    log,
                    exec,
                    deadline,
                    policy.preopens.clone(),
                );
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
                None => loaded.pre.instantiate_async(&mut store).await?,
            };
            let outcome = instance.call_run(&mut store, args, &ctx).await?;
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
            Ok((instance, outcome)) => {
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
                Ok(StepOutcome {
                    status: outcome.status,
                    message: outcome.message,
                    env: outcome.env,
                    cwd: outcome.cwd.map(PathBuf::from),
                })
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
                Err(StepError::Trap {
                    name: name.to_string(),
                    message: format!("{error:#}"),
                })
            }
        }
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

fn wasi_ctx(
    context: &StepContext,
    policy: &Policy,
    log: Arc<dyn LogSink>,
) -> Result<WasiCtx, StepError> {
    let mut builder = WasiCtxBuilder::new();
    // A step's file operations run on the thread that runs the step rather than hopping to tokio's
    // blocking pool for each one: steps are few and run one at a time, and a command's state file is
    // opened, read and removed in a few microseconds.
    builder
        .allow_blocking_current_thread(true)
        .envs(&context.env)
        .stdout(host::LogOutput::new(log.clone(), Stream::Stdout))
        .stderr(host::LogOutput::new(log, Stream::Stderr))
        .allow_tcp(policy.network)
        .allow_udp(policy.network)
        .allow_ip_name_lookup(policy.network);
    if policy.network {
        builder.inherit_network();
        if !policy.local_network {
            let local = Arc::new(local_addresses());
            builder.socket_addr_check(move |addr, _use| {
                let refused = addr.ip().is_loopback()
                    || addr.ip().is_unspecified()
                    || local.contains(&addr.ip())
                    || os::launcher::METADATA
                        .iter()
                        .any(|(metadata, _)| *metadata == addr.ip());
                Box::pin(std::future::ready(!refused))
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
