//! Option groups more than one command takes (kiln's folders, store access, deployment options) and
//! the parsers of flag values (sizes, `NAME=VALUE`, project names), so every command spells them alike.

use std::path::PathBuf;

use clap::Args;

/// The folders every command may use: they are global flags, accepted before or after the command.
#[derive(Args)]
pub struct GlobalArgs {
    /// Where compiled plugins (and other caches) live [default: $XDG_CACHE_HOME/kiln]
    #[arg(long, env = "KILN_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where build numbers, records and logs live [default: $XDG_STATE_HOME/kiln]
    #[arg(long, env = "KILN_STATE_DIR", global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Log more: debug lines, as KILN_LOG=debug (-vv: trace); a build also shows its plugins' debug
    /// lines. KILN_LOG, when set, decides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// kiln's cache folder: `--cache-dir`, else the user's cache dir; `None` when there is neither.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| dirs::cache_dir().map(|d| d.join("kiln")))
    }

    /// Where compiled plugins are cached.
    pub fn components_dir(&self) -> Option<PathBuf> {
        self.cache_dir().map(|d| d.join("components"))
    }

    /// The build cache (content-addressed store).
    pub fn cas_dir(&self) -> Option<PathBuf> {
        self.cache_dir().map(|d| d.join("cas"))
    }

    /// kiln's state folder: `--state-dir`, else the user's state dir, else a folder of the temp dir.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| dirs::state_dir().map(|d| d.join("kiln")))
            .or_else(|| dirs::home_dir().map(|d| d.join(".local/state/kiln")))
            .unwrap_or_else(|| std::env::temp_dir().join("kiln-state"))
    }

    /// The default deployment root.
    pub fn deploy_root(&self) -> PathBuf {
        self.state_dir().join("deployment-root")
    }

    /// What kiln logs on stderr: what KILN_LOG says when it is set, else errors, debug lines
    /// with -v, everything with -vv.
    pub fn log_filter(&self) -> tracing_subscriber::EnvFilter {
        use tracing_subscriber::EnvFilter;
        if std::env::var_os("KILN_LOG").is_some_and(|v| !v.is_empty()) {
            return EnvFilter::from_env("KILN_LOG");
        }
        match self.verbose {
            0 => EnvFilter::new("error"),
            1 => EnvFilter::new("debug"),
            _ => EnvFilter::new("trace"),
        }
    }
}

/// How to reach a store.
#[derive(Args, Clone, Default)]
pub struct AccessArgs {
    /// Registry user name; the password is read from standard input (--password-stdin).
    /// Without it, credentials come from the Docker config file ($DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Allow plain HTTP to a registry that is not on this machine (localhost always may).
    #[arg(long)]
    insecure: bool,
    /// Plain HTTP to the S3 endpoint in AWS_ENDPOINT_URL is meant: no warning (as AWS_ALLOW_HTTP=true).
    #[arg(long)]
    allow_http: bool,
}

impl AccessArgs {
    /// The access the flags ask for; `None` (after saying why) when the password cannot be read.
    pub fn access(&self) -> Option<kiln::store::Access> {
        let password = if self.password_stdin {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("error: cannot read the password from standard input: {e}");
                return None;
            }
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        } else {
            None
        };
        Some(kiln::store::Access {
            username: self.username.clone(),
            password,
            insecure: self.insecure,
            allow_http: self.allow_http,
        })
    }
}

/// How a revision is deployed: `kiln deploy` and `kiln agent` take these.
#[derive(Args)]
pub struct DeployArgs {
    /// The deployment group.
    #[arg(long)]
    pub group: String,
    /// The application's name (APPLICATION_NAME for the hooks) [default: the group's name]
    #[arg(long)]
    pub application: Option<String>,
    /// The deployment root [default: $XDG_STATE_HOME/kiln/deployment-root]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// What Install does with files already at their destination when the AppSpec does not say:
    /// DISALLOW (fail), OVERWRITE or RETAIN.
    #[arg(long, default_value = "DISALLOW", value_parser = parse_file_exists)]
    pub file_exists_behavior: kiln::spec::appspec::FileExists,
    /// Go on when the previous revision's ApplicationStop (or BlockTraffic) scripts fail.
    #[arg(long)]
    pub ignore_application_stop_failures: bool,
    /// Keep a failed deployment as it is instead of redeploying the last successful revision.
    #[arg(long)]
    pub no_rollback: bool,
    /// How many deployment folders of the group to keep.
    #[arg(long, default_value_t = 5)]
    pub max_revisions: usize,
    /// Confine hook scripts (Landlock): they may write only the destinations, the deployment's
    /// folder and the temp dir. By default they run unconfined, as the agent runs them.
    #[arg(long)]
    pub confine_hooks: bool,
    /// in-place (as the CodeDeploy agent) or blue-green: each revision in a release folder of its
    /// own, every destination a symlink switched to it atomically once ValidateService passed.
    #[arg(long, value_enum, default_value = "in-place")]
    pub strategy: StrategyArg,
    /// Refuse revisions that make more than this many files, folders and links (inode bombs).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_entries: u64,
    /// Refuse revisions that expand past this size, e.g. 10G (zip bombs).
    #[arg(long, default_value = "10G", value_parser = parse_size, value_name = "SIZE")]
    pub max_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Set by `kiln rollback`: go back to the previous successful revision instead of deploying one.
    #[arg(skip)]
    pub rollback_only: bool,
}

impl DeployArgs {
    /// The library's options for deploying `revision`; `None` (after saying why) when the store
    /// password cannot be read.
    pub fn options(
        &self,
        global: &GlobalArgs,
        revision: &str,
    ) -> Option<kiln::deploy::DeployOptions> {
        let access = self.access.access()?;
        Some(kiln::deploy::DeployOptions {
            revision: revision.to_string(),
            group: self.group.clone(),
            application: self
                .application
                .clone()
                .unwrap_or_else(|| self.group.clone()),
            root: self.root.clone().unwrap_or_else(|| global.deploy_root()),
            remember_root_in: self.root.as_ref().map(|_| global.state_dir()),
            ignore_application_stop_failures: self.ignore_application_stop_failures,
            rollback: !self.no_rollback,
            max_revisions: self.max_revisions,
            confine_hooks: self.confine_hooks,
            file_exists_behavior: self.file_exists_behavior,
            access,
            cache_dir: global.components_dir(),
            echo: !self.json,
            strategy: self.strategy.into(),
            limits: kiln::revision::extract::Limits {
                max_entries: self.max_entries,
                max_size: self.max_size as u64,
                ..Default::default()
            },
        })
    }
}

/// `--strategy`: the flag's spelling of [`kiln::deploy::Strategy`].
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StrategyArg {
    InPlace,
    BlueGreen,
}

impl From<StrategyArg> for kiln::deploy::Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::InPlace => kiln::deploy::Strategy::InPlace,
            StrategyArg::BlueGreen => kiln::deploy::Strategy::BlueGreen,
        }
    }
}

fn parse_file_exists(s: &str) -> Result<kiln::spec::appspec::FileExists, String> {
    kiln::spec::appspec::FileExists::parse(s)
        .ok_or_else(|| format!("`{s}` is not DISALLOW, OVERWRITE or RETAIN"))
}

/// The remote build queue a command talks to.
#[derive(Args)]
pub struct QueueArgs {
    /// The queue's database: postgres://user:password@host:port/database. Its password is never
    /// printed.
    #[arg(
        long = "queue",
        env = "KILN_QUEUE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: String,
}

/// A job state by its CodeBuild name (any case, `-` for `_`), or `running`.
pub fn parse_job_state(s: &str) -> Result<kiln::worker::queue::JobState, String> {
    kiln::worker::queue::JobState::parse(s).ok_or_else(|| {
        format!(
            "unknown job state `{s}`: use queued, running, succeeded, failed, fault, stopped or timed-out"
        )
    })
}

/// `NAME=VALUE`, with a name that is not empty.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, found `{s}`"))
}

/// `NAME=PATH.wasm`: a plugin to register, its path made absolute.
pub fn parse_plugin(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) =
        parse_key_value(s).map_err(|_| format!("expected NAME=PATH.wasm, found `{s}`"))?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let path = path.canonicalize().map_err(|e| e.to_string())?;
    Ok((name, path))
}

/// A size in bytes: digits and an optional unit (K, M, G, with or without B or iB), e.g. 512M.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("expected a size like 512M, found `{s}`"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("unknown size unit `{unit}`: use K, M or G")),
    };
    // checked_shl only refuses a shift past the width: the bits shifted out must be checked too.
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// A project name: it names a folder of kiln's state, so it is one plain path component.
pub fn parse_project(s: &str) -> Result<String, String> {
    let plain = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a project name: use letters, digits, `.`, `-` and `_` (not first), up to 128"
        ))
    }
}

/// A buildspec phase by its key (`pre_build`), for `--phases` and `--until`; a misspelt one is
/// a usage error naming the phase it most likely means.
pub fn parse_phase(s: &str) -> Result<kiln::spec::PhaseName, String> {
    use kiln::spec::PhaseName;
    let s = s.trim();
    PhaseName::from_key(s).ok_or_else(|| {
        let keys = PhaseName::ALL.map(PhaseName::key);
        let near = kiln::spec::read::nearest(s, &keys)
            .map(|k| format!("did you mean `{k}`? "))
            .unwrap_or_default();
        format!(
            "unknown phase `{s}`: {near}(the phases are {})",
            keys.join(", ")
        )
    })
}

/// `--network MODE` of a build.
pub fn parse_network(s: &str) -> Result<kiln::sandbox::os::Network, String> {
    s.parse()
}

/// A file or folder the user names as input. It must be there: a missing one is a usage error
/// (exit 2, `no such file or directory`), found before anything runs or is recorded.
pub fn existing(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("no such file or directory".to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// An input file that is there (see [`existing`]).
pub fn existing_file(s: &str) -> Result<PathBuf, String> {
    let path = existing(s)?;
    if path.is_dir() {
        return Err("is a folder, not a file".to_string());
    }
    Ok(path)
}

/// An input folder that is there (see [`existing`]).
pub fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let path = existing(s)?;
    if !path.is_dir() {
        return Err("is not a folder".to_string());
    }
    Ok(path)
}

/// A revision to deploy: a store reference, or a revision file that is there (see [`existing`]).
pub fn revision(s: &str) -> Result<String, String> {
    if s.contains("://") {
        kiln::store::Ref::parse(s).map_err(|e| e.to_string())?;
    } else {
        existing_file(s)?;
    }
    Ok(s.to_string())
}
