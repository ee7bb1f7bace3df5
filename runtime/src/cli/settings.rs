//! The build settings a project's `kiln.toml` may give defaults for, as flags (`kiln build` and
//! `kiln config` take them), and how the two are merged: a flag beats the file, the file beats
//! kiln's default. Each setting remembers where it came from, for `kiln config`.
//!
//! A kiln.toml is written by the project, which may be hostile: it may narrow the sandbox or set
//! limits, but nothing in it may reach beyond the repository by itself. `network = "host"`, a path
//! outside the folder holding the file (writable, output, secrets, plugins), `cache-scope =
//! "shared"` and `pass-env` names that look like credentials are refused, with the flag that would
//! allow them, unless that flag is given (then the flag's value is used and the file's ignored).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kiln::sandbox::os::Network;
use kiln::spec::SpecError;
use kiln::spec::config::{ProjectConfig, Setting};

use super::exit;
use super::options::{existing, existing_file, parse_network, parse_plugin, parse_size};
use super::print_invalid;

/// The flags a kiln.toml gives defaults for.
#[derive(Args, Default)]
pub struct SettingsArgs {
    /// What the build's network reaches: `internet` (outbound only, through pasta: the host's own
    /// services stay out of reach), `none` (loopback only) or `host` (the host's network).
    /// `--network` alone means internet [default: internet]
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "internet",
          value_parser = parse_network)]
    network: Option<Network>,

    /// Let build commands write below this directory of the host too (repeatable).
    #[arg(long, value_name = "DIR", value_parser = existing)]
    writable: Vec<PathBuf>,

    /// Where artifacts go, one folder each [default: <dir>/.kiln/out]
    #[arg(long, short = 'o', value_name = "DIR")]
    output: Option<PathBuf>,

    /// Pass variables of kiln's environment through to the build (repeatable): a name, or a glob
    /// such as 'AWS_*' (quote it from the shell); one that matches nothing is warned about.
    #[arg(long, value_name = "NAME|GLOB")]
    pass_env: Vec<String>,

    /// Whose `cache:` entries (the buildspec's cache section) the build restores and saves: the
    /// project's own (by --project, or the source folder's path and the buildspec's), or entries
    /// shared by every project built with `shared`. Share only between projects that trust each
    /// other: a shared entry's files are restored into the build [default: project]
    #[arg(long, value_enum, value_name = "SCOPE")]
    cache_scope: Option<CacheScope>,

    /// Memory limit of every program the build runs, e.g. 2G [default: none]
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    memory: Option<usize>,

    /// Stop the build when its workspace, /tmp, HOME and private layer grow past this, e.g. 10G.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    disk_limit: Option<usize>,

    /// One command's (step's) time limit, e.g. 10m [default: the build's]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    step_timeout: Option<Duration>,

    /// A dotenv file of parameter-store names and secrets-manager references with their values.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    secrets: Option<PathBuf>,

    /// Register a plugin: commands whose first word is NAME run it (repeatable).
    #[arg(long, value_name = "NAME=PATH.wasm", value_parser = parse_plugin)]
    plugin: Vec<(String, PathBuf)>,

    /// A shared cache behind the local one: s3://bucket/prefix. Builds look there when the local
    /// store misses and send it what they store (only the blobs it lacks).
    #[arg(long = "cache", env = "KILN_CACHE", value_name = "URL")]
    remote_cache: Option<String>,
}

/// Whose `cache:` entries a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CacheScope {
    /// The building project's own.
    #[default]
    Project,
    /// Shared by every project built with `--cache-scope shared`.
    Shared,
}

impl CacheScope {
    fn as_str(self) -> &'static str {
        match self {
            CacheScope::Project => "project",
            CacheScope::Shared => "shared",
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// A line of the kiln.toml.
    File(usize),
    Flag,
    /// A variable of kiln's environment.
    Env(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(line) => write!(f, "kiln.toml:{line}"),
            Origin::Flag => f.write_str("flag"),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// The settings a build uses, each with where it came from.
#[derive(Default)]
pub struct Settings {
    /// The kiln.toml read, if any.
    pub file: Option<PathBuf>,
    pub network: Network,
    pub writable: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    pub pass_env: Vec<String>,
    pub cache_scope: CacheScope,
    pub memory: Option<usize>,
    pub disk_limit: Option<usize>,
    pub step_timeout: Option<Duration>,
    pub secrets: Option<PathBuf>,
    pub plugins: Vec<(String, PathBuf)>,
    /// kiln.toml's registry plugins: name and reference (`oci://…`, `file://…`, `s3://…`), which
    /// builds take only as kiln.lock pins them.
    pub plugin_refs: Vec<(String, String)>,
    /// kiln.toml's `[plugin-keys]`: a registry or namespace and the public key file (absolute)
    /// whose cosign signature its plugins must carry.
    pub plugin_keys: Vec<(String, PathBuf)>,
    pub remote_cache: Option<String>,
    /// kiln.toml's `[pipeline]` tables, as read (for `kiln pipeline`'s mapping).
    pub pipeline: Option<Setting<kiln::spec::config::PipelineConfig>>,
    /// Each setting's name (as in kiln.toml), value (as JSON) and origin, in kiln.toml's order.
    pub report: Vec<(&'static str, serde_json::Value, Origin)>,
}

/// Names that look like credentials: a kiln.toml may not pass them into a build by itself.
fn looks_like_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    // A glob (`*`, `GH_*`) may match any of them: only the command line passes one.
    name.contains(['*', '?', '['])
        || upper.starts_with("AWS_")
        || [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "CREDENTIAL",
            "KEY",
            "AUTH",
        ]
        .iter()
        .any(|w| upper.contains(w))
}

/// Whether `path` is at or below `dir` (already canonical), following the links of the part of it
/// that exists: a link in the repository cannot lead a kiln.toml's path outside.
pub(crate) fn within(dir: &Path, path: &Path) -> bool {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return false,
        }
    }
    let Ok(real) = existing.canonicalize() else {
        return false;
    };
    let plain = rest
        .iter()
        .all(|c| matches!(Path::new(c).components().next(), Some(Component::Normal(_))));
    plain && real.starts_with(dir)
}

/// Resolves the settings of a build of `source`: flags, then the nearest kiln.toml at or above it
/// (up to its repository's root), then defaults. The exit code (after saying why) when the file is
/// invalid or asks for what only a flag may.
pub fn resolve(args: &SettingsArgs, source: &Path) -> Result<Settings, u8> {
    let folders = kiln::build::locate::upward_folders(source)
        .map(|(folders, _)| folders)
        .unwrap_or_default();
    let found = ProjectConfig::find(&folders);
    // A kiln.toml above the folder built must be its user's (or root's), as a buildspec found
    // upward must (see build::locate).
    let above = found
        .as_ref()
        .filter(|p| p.parent() != folders.first().map(|f| f.as_path()));
    if let Some(Err(e)) = above.map(|p| kiln::build::locate::refuse_foreign(p)) {
        eprintln!("error: {e}");
        return Err(exit::of_build(&e));
    }
    let config = match found {
        Some(path) => match ProjectConfig::load(&path) {
            Ok(config) => Some(config),
            Err(kiln::spec::config::ConfigError::Invalid(e)) => return Err(print_invalid(&e)),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(exit::BAD_INPUT);
            }
        },
        None => None,
    };
    let config = config.unwrap_or_default();
    merge(args, &config).map_err(|e| print_invalid(&e))
}

fn merge(args: &SettingsArgs, config: &ProjectConfig) -> Result<Settings, SpecError> {
    use serde_json::json;
    let dir = config
        .dir()
        .canonicalize()
        .unwrap_or_else(|_| config.dir().to_path_buf());
    let from_file = |s: &Setting<String>| Origin::File(s.span.line);
    let outside = |s: &Setting<String>, flag: &str| {
        config.error(
            s.span,
            format!(
                "`{}` is outside {}: a kiln.toml may not reach beyond its repository by itself",
                s.value,
                dir.display()
            ),
            Some(format!(
                "give `{flag} {}` on the command line to allow it",
                config.resolve(&s.value).display()
            )),
        )
    };
    let inside = |s: &Setting<String>, flag: &str| -> Result<PathBuf, SpecError> {
        let path = config.resolve(&s.value);
        if within(&dir, &path) {
            Ok(path)
        } else {
            Err(outside(s, flag))
        }
    };
    let mut out = Settings {
        file: (!config.path.as_os_str().is_empty()).then(|| config.path.clone()),
        pipeline: config.pipeline.clone(),
        ..Default::default()
    };

    let origin;
    (out.network, origin) = match (args.network, &config.network) {
        (Some(n), _) => (n, Origin::Flag),
        (None, Some(s)) => {
            let network: Network = s
                .value
                .parse()
                .map_err(|e: String| config.error(s.span, e, None))?;
            if network == Network::Host {
                return Err(config.error(
                    s.span,
                    "`network = \"host\"` gives the build the host's network: a kiln.toml may not ask for it by itself",
                    Some("give `--network host` on the command line to allow it".into()),
                ));
            }
            (network, from_file(s))
        }
        (None, None) => (Network::Internet, Origin::Default),
    };
    out.report
        .push(("network", json!(out.network.as_str()), origin));

    let origin;
    (out.writable, origin) = match &config.writable {
        Some(list) if args.writable.is_empty() => {
            let mut paths = Vec::new();
            for s in &list.value {
                let path = inside(s, "--writable")?;
                if !path.is_dir() {
                    return Err(config.error(s.span, "no such folder", None));
                }
                paths.push(path);
            }
            (paths, Origin::File(list.span.line))
        }
        _ if !args.writable.is_empty() => (args.writable.clone(), Origin::Flag),
        _ => (Vec::new(), Origin::Default),
    };
    out.report.push(("writable", json!(out.writable), origin));

    let origin;
    (out.output, origin) = match (&args.output, &config.output) {
        (Some(o), _) => (Some(o.clone()), Origin::Flag),
        (None, Some(s)) => (Some(inside(s, "--output")?), from_file(s)),
        (None, None) => (None, Origin::Default),
    };
    out.report.push(("output", json!(out.output), origin));

    let origin;
    (out.pass_env, origin) = match &config.pass_env {
        Some(list) if args.pass_env.is_empty() => {
            if let Some(s) = list.value.iter().find(|s| looks_like_credential(&s.value)) {
                return Err(config.error(
                    s.span,
                    format!(
                        "`{}` looks like a credential, or is a glob that may match one: a kiln.toml may not pass it into the build by itself",
                        s.value
                    ),
                    Some(format!(
                        "give `--pass-env {}` on the command line to allow it",
                        s.value
                    )),
                ));
            }
            (
                list.value.iter().map(|s| s.value.clone()).collect(),
                Origin::File(list.span.line),
            )
        }
        _ if !args.pass_env.is_empty() => (args.pass_env.clone(), Origin::Flag),
        _ => (Vec::new(), Origin::Default),
    };
    out.report.push(("pass-env", json!(out.pass_env), origin));

    let origin;
    (out.cache_scope, origin) = match (args.cache_scope, &config.cache_scope) {
        (Some(c), _) => (c, Origin::Flag),
        (None, Some(s)) => match s.value.as_str() {
            "project" => (CacheScope::Project, from_file(s)),
            "shared" => {
                return Err(config.error(
                    s.span,
                    "`cache-scope = \"shared\"` restores other projects' cache entries into this build: a kiln.toml may not ask for it by itself",
                    Some("give `--cache-scope shared` on the command line to allow it".into()),
                ));
            }
            other => {
                return Err(config.error(
                    s.span,
                    format!("`{other}` is not a cache scope: `project` or `shared`"),
                    None,
                ));
            }
        },
        (None, None) => (CacheScope::Project, Origin::Default),
    };
    out.report
        .push(("cache-scope", json!(out.cache_scope.as_str()), origin));

    let size = |flag: Option<usize>, s: &Option<Setting<String>>| match (flag, s) {
        (Some(n), _) => Ok((Some(n), Origin::Flag)),
        (None, Some(s)) => parse_size(&s.value)
            .map(|n| (Some(n), from_file(s)))
            .map_err(|e| config.error(s.span, e, None)),
        (None, None) => Ok((None, Origin::Default)),
    };
    let origin;
    (out.memory, origin) = size(args.memory, &config.memory)?;
    out.report.push(("memory", json!(out.memory), origin));
    let origin;
    (out.disk_limit, origin) = size(args.disk_limit, &config.disk_limit)?;
    out.report
        .push(("disk-limit", json!(out.disk_limit), origin));

    let origin;
    (out.step_timeout, origin) = match (args.step_timeout, &config.step_timeout) {
        (Some(d), _) => (Some(d), Origin::Flag),
        (None, Some(s)) => (
            Some(
                humantime::parse_duration(&s.value)
                    .map_err(|e| config.error(s.span, e.to_string(), None))?,
            ),
            from_file(s),
        ),
        (None, None) => (None, Origin::Default),
    };
    out.report.push((
        "step-timeout",
        json!(
            out.step_timeout
                .map(|d| humantime::format_duration(d).to_string())
        ),
        origin,
    ));

    let origin;
    (out.secrets, origin) = match (&args.secrets, &config.secrets) {
        (Some(p), _) => (Some(p.clone()), Origin::Flag),
        (None, Some(s)) => {
            let path = inside(s, "--secrets")?;
            if !path.is_file() {
                return Err(config.error(s.span, "no such file", None));
            }
            (Some(path), from_file(s))
        }
        (None, None) => (None, Origin::Default),
    };
    out.report.push(("secrets", json!(out.secrets), origin));

    // kiln.toml's plugins, and --plugin's over them by name.
    let mut origin = Origin::Default;
    if let Some(table) = &config.plugins {
        origin = Origin::File(table.span.line);
        for (name, s) in &table.value {
            if args.plugin.iter().any(|(n, _)| n == name) {
                continue;
            }
            if kiln::plugins::registry::is_reference(&s.value) {
                out.plugin_refs.push((name.clone(), s.value.clone()));
                continue;
            }
            let path = inside(s, "--plugin")?;
            let path = path
                .canonicalize()
                .ok()
                .filter(|p| p.is_file())
                .ok_or_else(|| config.error(s.span, "no such file", None))?;
            out.plugins.push((name.clone(), path));
        }
    }
    if !args.plugin.is_empty() {
        origin = Origin::Flag;
        out.plugins.extend(args.plugin.iter().cloned());
    }
    let table: serde_json::Map<String, serde_json::Value> = out
        .plugins
        .iter()
        .map(|(name, path)| (name.clone(), json!(path)))
        .chain(
            out.plugin_refs
                .iter()
                .map(|(name, reference)| (name.clone(), json!(reference))),
        )
        .collect();
    out.report.push(("plugins", json!(table), origin));
    out.plugin_keys = config.plugin_key_files();

    // Not a kiln.toml key: where a shared cache is decides whose entries a build trusts.
    out.remote_cache = args.remote_cache.clone().filter(|u| !u.is_empty());
    let origin = match &out.remote_cache {
        None => Origin::Default,
        Some(url) if std::env::var("KILN_CACHE").ok().as_ref() == Some(url) => {
            Origin::Env("KILN_CACHE")
        }
        Some(_) => Origin::Flag,
    };
    out.report.push(("cache", json!(out.remote_cache), origin));
    Ok(out)
}

/// kiln.toml's registry plugins as kiln.lock pins them, their components in the CAS (fetched by
/// their pinned digest when missing). Errors are printed; the exit code is returned.
pub async fn locked_plugins(
    global: &super::options::GlobalArgs,
    settings: &Settings,
) -> Result<Vec<kiln::plugins::resolve::Resolved>, u8> {
    if settings.plugin_refs.is_empty() {
        return Ok(Vec::new());
    }
    let Some(project) = settings.file.as_deref().and_then(Path::parent) else {
        return Ok(Vec::new());
    };
    let Some(cas_dir) = global.cas_dir() else {
        eprintln!(
            "error: kiln.toml names registry plugins, which live in kiln's cache: give kiln a cache folder (--cache-dir or XDG_CACHE_HOME)"
        );
        return Err(super::exit::BAD_INPUT);
    };
    let cas = kiln::cas::LocalStore::open(&cas_dir).map_err(|e| {
        eprintln!("error: the cache at {}: {e}", cas_dir.display());
        super::exit::INTERNAL
    })?;
    let mut keys = Vec::new();
    for (prefix, path) in &settings.plugin_keys {
        match kiln::plugins::signature::PublicKey::read(path) {
            Ok(key) => keys.push((prefix.clone(), key)),
            Err(e) => {
                eprintln!("error: kiln.toml [plugin-keys] \"{prefix}\": {e}");
                return Err(super::exit::BAD_INPUT);
            }
        }
    }
    kiln::plugins::resolve::resolve(
        project,
        &settings.plugin_refs,
        &cas,
        &kiln::store::Access::default(),
        &keys,
    )
    .await
    .map_err(|e| {
        use kiln::plugins::registry::RegistryError;
        use kiln::plugins::resolve::ResolveError;
        match &e {
            ResolveError::Lock(lock) => eprintln!("{}", lock.render(false)),
            e => eprintln!("error: {e}"),
        }
        match &e {
            ResolveError::Tampered { .. }
            | ResolveError::Mismatch { .. }
            | ResolveError::Unsigned { .. }
            | ResolveError::Fetch {
                source: RegistryError::Refused { .. },
                ..
            } => super::exit::INTEGRITY,
            ResolveError::Fetch {
                source: RegistryError::Store(s),
                ..
            } => super::exit::of_store(s),
            ResolveError::Cas(_) | ResolveError::Io { .. } => super::exit::INTERNAL,
            _ => super::exit::BAD_INPUT,
        }
    })
}
