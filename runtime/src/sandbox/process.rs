//! Host programs started through the `exec` import: confined by Landlock, in a process group of their
//! own, killed with all their children when the step runs out of time or the build is cancelled.
//!
//! A program that exits normally may leave background children behind (`dockerd &` in an install
//! phase is a classic): they live on, as they would in CodeBuild's container, and are killed when the
//! build ends ([`Reaper`]).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::{LogSink, Stream};

/// What the operating system lets a host program touch.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Directories the program may write below (the workspace, the build's temp dir…).
    pub writable: Vec<PathBuf>,
    /// Directories the program may read and execute from. `/` means everything.
    pub readable: Vec<PathBuf>,
    /// Whether TCP connections and listening sockets are allowed.
    pub network: bool,
    /// Whether the programs must run confined: without Landlock, refuse to run rather than run free.
    pub required: bool,
    /// Whether to confine at all (hooks of a trusted application run unconfined).
    pub enabled: bool,
}

/// Device files every program needs to write to, whatever its confinement.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// The Landlock ABI version of the running kernel, or `None` where it has no Landlock.
pub fn landlock_abi() -> Option<i64> {
    // SAFETY: landlock_create_ruleset with a null attribute, size 0 and the VERSION flag only
    // queries the ABI version; it touches no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (version > 0).then_some(version)
}

/// A prepared Landlock ruleset, cloned into every program started under it.
pub struct Prepared {
    ruleset: Option<RulesetCreated>,
}

/// Why a program could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(
        "this kernel has no Landlock, so kiln cannot confine build commands, and --require-sandbox was given"
    )]
    Unsupported,
    #[error("kiln could not prepare the Landlock rules for {path}: {message}")]
    Rules { path: String, message: String },
}

impl Confinement {
    /// Builds the ruleset once for many programs.
    pub fn prepare(&self) -> Result<Prepared, ConfineError> {
        if !self.enabled {
            return Ok(Prepared { ruleset: None });
        }
        if landlock_abi().is_none() {
            return if self.required {
                Err(ConfineError::Unsupported)
            } else {
                Ok(Prepared { ruleset: None })
            };
        }
        let abi = ABI::V5;
        let rules_err = |path: &str, e: &dyn std::fmt::Display| ConfineError::Rules {
            path: path.to_string(),
            message: e.to_string(),
        };
        let level = if self.required {
            CompatLevel::SoftRequirement
        } else {
            CompatLevel::BestEffort
        };
        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(abi))
            .map_err(|e| rules_err("/", &e))?;
        if !self.network {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(ABI::V4))
                .map_err(|e| rules_err("network", &e))?;
        }
        let mut created = ruleset.create().map_err(|e| rules_err("/", &e))?;
        let read = AccessFs::from_read(abi);
        let write = AccessFs::from_all(abi);
        let mut add = |path: &std::path::Path, access| -> Result<(), ConfineError> {
            // A missing optional path (no /dev/tty in a container) is simply not granted.
            let Ok(fd) = PathFd::new(path) else {
                return Ok(());
            };
            (&mut created)
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| rules_err(&path.display().to_string(), &e))?;
            Ok(())
        };
        for path in &self.readable {
            add(path, read)?;
        }
        for path in &self.writable {
            add(path, write)?;
        }
        for device in DEVICES {
            add(std::path::Path::new(device), write)?;
        }
        Ok(Prepared {
            ruleset: Some(created),
        })
    }
}

impl Prepared {
    /// Whether programs are confined.
    pub fn is_confined(&self) -> bool {
        self.ruleset.is_some()
    }
}

/// A program to run.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdin: Option<Vec<u8>>,
    pub capture_stdout: bool,
    /// Numeric user and group to switch to (requires root).
    pub run_as: Option<(u32, u32)>,
}

/// How a program ended.
#[derive(Debug, Clone, Default)]
pub struct ProcessExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
}

/// Process groups left running by programs that exited, killed when the build ends.
#[derive(Default, Clone)]
pub struct Reaper {
    groups: Arc<Mutex<Vec<i32>>>,
}

impl Reaper {
    fn keep(&self, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
    }

    /// Kills every process group still alive.
    pub fn kill_all(&self) {
        for pgid in self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            kill_group(pgid);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if Arc::strong_count(&self.groups) == 1 {
            self.kill_all();
        }
    }
}

/// Whether any process of the group is still alive.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the group exists; no signal is sent.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// The executable a program name stands for, searched in `path` as execvp would; `None` leaves the
/// search to the system (and its error to the spawn).
pub(crate) fn resolve_program(program: &str, path: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return None;
    }
    path?.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { cwd } else { Path::new(dir) };
        let candidate = dir.join(program);
        std::fs::metadata(&candidate)
            .ok()
            .filter(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .map(|_| candidate)
    })
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Kills the process group when dropped before the program finished: a timeout, a cancelled build, a
/// dropped future.
struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

/// How long output is still read after the program exited, for what its background children write.
const DRAIN: Duration = Duration::from_millis(200);

/// Runs a program to its end or to `deadline`, streaming its output to `log`.
pub async fn run(
    spec: &ProcessSpec,
    prepared: &Prepared,
    deadline: Option<Instant>,
    log: Arc<dyn LogSink>,
    reaper: &Reaper,
) -> io::Result<ProcessExit> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    // Looked up here rather than by the child trying each PATH entry in turn: one exec, not many.
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let resolved = resolve_program(program, path_var, &spec.cwd);
    let mut cmd = std::process::Command::new(resolved.as_deref().unwrap_or(Path::new(program)));
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut ruleset = match &prepared.ruleset {
        Some(r) => Some(r.try_clone()?),
        None => None,
    };
    let run_as = spec.run_as;
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // (setgroups, setgid, setuid, prctl, landlock_restrict_self) and touches no lock that another
    // thread of the parent could hold.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = run_as
                && (libc::setgroups(1, &gid) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(ruleset) = ruleset.take() {
                ruleset
                    .restrict_self()
                    .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let pgid = child.id().map(|id| id as i32);
    let mut guard = GroupGuard { pgid };

    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), spec.stdin.clone()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let stdout = child.stdout.take().map(|out| {
        let log = log.clone();
        let capture = spec.capture_stdout;
        tokio::spawn(async move { pump(out, Stream::Stdout, log, capture).await })
    });
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, Stream::Stderr, log.clone(), false)));

    let mut timed_out = false;
    let status = match deadline {
        Some(deadline) => tokio::select! {
            status = child.wait() => status?,
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                if let Some(pgid) = guard.pgid.take() {
                    kill_group(pgid);
                }
                child.wait().await?
            }
        },
        None => child.wait().await?,
    };
    // The program is gone; its background children (if any) live on until the build ends.
    if let Some(pgid) = guard.pgid.take()
        && group_alive(pgid)
    {
        reaper.keep(pgid);
    }
    let mut captured = Vec::new();
    if let Some(task) = stdout {
        captured = finish(task).await;
    }
    if let Some(task) = stderr {
        finish(task).await;
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(ProcessExit {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: captured,
    })
}

pub(crate) async fn finish(mut task: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(DRAIN, &mut task).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            task.abort();
            Vec::new()
        }
    }
}

pub(crate) async fn pump(
    reader: impl AsyncRead + Unpin,
    stream: Stream,
    log: Arc<dyn LogSink>,
    capture: bool,
) -> Vec<u8> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut captured = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return captured,
            Ok(_) => {
                if capture {
                    captured.extend_from_slice(&line);
                } else {
                    let text = String::from_utf8_lossy(&line);
                    log.output(stream, text.trim_end_matches(['\n', '\r']));
                }
            }
        }
    }
}
