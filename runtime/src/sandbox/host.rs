//! The host side of a step: its store state, the `log` and `exec` imports, the memory limiter, and
//! the plugin's stdout/stderr wired into the build log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kiln::plugin::{exec, files, log, types};
use super::process::{self, ProcessSpec};
use super::{ExecEnv, LogSink, Preopen, ScriptedAnswer, Stream};
use crate::plugins::Capabilities;

/// A line's level in the build log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// A plugin's line as a build's log shows it: debug lines only when `verbose`, warnings and
    /// errors marked.
    pub fn line(self, message: &str, verbose: bool) -> Option<String> {
        match self {
            Level::Debug if !verbose => None,
            Level::Debug | Level::Info => Some(message.to_string()),
            Level::Warn => Some(format!("warning: {message}")),
            Level::Error => Some(format!("error: {message}")),
        }
    }
}

/// What a step's store holds.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MemoryLimiter,
    log: Arc<dyn LogSink>,
    exec: Option<ExecEnv>,
    deadline: Option<Instant>,
    preopens: Vec<Preopen>,
    /// Directory handles of the preopens, opened on first use by `files.copy`.
    preopen_fds: std::collections::HashMap<std::path::PathBuf, std::fs::File>,
    rules: Rules,
    /// The line the plugin's panic hook wrote (`panicked at …`), when it panicked.
    pub(super) panic: Option<String>,
}

/// What a step's host calls check beyond its policy.
#[derive(Default)]
pub struct Rules {
    /// The plugin's name, for its log lines and refusals.
    pub plugin: String,
    /// Whether its log lines are prefixed with its name (plugins that are not kiln's own).
    pub prefix: bool,
    /// The programs a registry plugin may run; `None`: the policy's `allow_exec` decides alone.
    pub exec: Option<ExecRule>,
    /// Scripted answers for `exec`, and whether the policy allows exec at all.
    pub scripted: Option<(Arc<Vec<ScriptedAnswer>>, bool)>,
}

/// A registry plugin's programs: those it declares and its user grants.
#[derive(Debug, Clone)]
pub struct ExecRule {
    pub plugin: String,
    pub declared: Capabilities,
    pub granted: Capabilities,
}

impl ExecRule {
    /// Why `program` may not run, when it may not: it must be named (by name or path, as given) in
    /// both lists.
    fn refusal(&self, program: &str) -> Option<String> {
        let refuser = self.declared.refuser(&self.granted, "exec", program)?;
        Some(format!(
            "plugin `{}` may not run `{program}`: {refuser}",
            self.plugin
        ))
    }
}

impl StepState {
    /// Readies a kept instance's state for another step: its host programs' sandbox and deadline
    /// (none while it waits, so it holds no build's sandbox alive on its own).
    pub fn renew(&mut self, exec: Option<ExecEnv>, deadline: Option<Instant>) {
        self.exec = exec;
        self.deadline = deadline;
        self.limits.exceeded = false;
    }

    pub fn new(
        wasi: WasiCtx,
        memory_limit: usize,
        log: Arc<dyn LogSink>,
        exec: Option<ExecEnv>,
        deadline: Option<Instant>,
        preopens: Vec<Preopen>,
    ) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryLimiter {
                limit: memory_limit,
                exceeded: false,
            },
            log,
            exec,
            deadline,
            preopens,
            preopen_fds: std::collections::HashMap::new(),
            rules: Rules::default(),
            panic: None,
        }
    }

    /// Sets what the host calls check beyond the policy.
    pub fn configure(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// A debug line in the step's log (the trap behind a panic, with its wasm backtrace).
    pub fn log_lines(&self, level: Level, text: &str) {
        for line in text.lines() {
            self.log.plugin(level, line);
        }
    }

    /// Answers a command from the scripted answers.
    fn scripted(
        &self,
        answers: &[ScriptedAnswer],
        command: &exec::Command,
    ) -> Result<exec::Exit, String> {
        let Some(answer) = answers.iter().find(|a| a.argv == command.argv) else {
            return Err(format!(
                "no scripted answer for `{}`",
                command.argv.join(" ")
            ));
        };
        for line in answer.stderr.lines() {
            self.log.output(Stream::Stderr, line);
        }
        let stdout = if command.capture_stdout {
            answer.stdout.as_bytes().to_vec()
        } else {
            for line in answer.stdout.lines() {
                self.log.output(Stream::Stdout, line);
            }
            Vec::new()
        };
        Ok(exec::Exit {
            code: Some(answer.code),
            signal: None,
            timed_out: false,
            stdout,
        })
    }

    /// Opens `path` below the preopen that holds it (writable when `create` is given), with the
    /// kernel refusing any resolution that leaves that directory (`openat2`, `RESOLVE_BENEATH`):
    /// one system call, where canonicalizing every path costs one per component.
    fn open_beneath(&mut self, path: &str, create: Option<u32>) -> Result<std::fs::File, String> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let write = create.is_some();
        let path_ref = std::path::Path::new(path);
        if path_ref
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("{path}: `..` is not allowed"));
        }
        let Some(preopen) = self
            .preopens
            .iter()
            .filter(|p| (p.writable || !write) && path_ref.starts_with(&p.path))
            .max_by_key(|p| p.path.as_os_str().len())
            .map(|p| p.path.clone())
        else {
            return Err(format!(
                "{path} is outside the directories this step may {}",
                if write { "write" } else { "read" }
            ));
        };
        let rel = path_ref.strip_prefix(&preopen).unwrap_or(path_ref);
        if !self.preopen_fds.contains_key(&preopen) {
            let dir = std::fs::File::open(&preopen).map_err(|e| format!("{path}: {e}"))?;
            self.preopen_fds.insert(preopen.clone(), dir);
        }
        let dirfd = self.preopen_fds[&preopen].as_raw_fd();
        let rel = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{path}: a NUL in the path"))?;
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = match create {
            Some(_) => (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC) as u64,
            None => (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        };
        how.mode = create.unwrap_or(0) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 reads `rel` (NUL-terminated) and `how` (its size given); the fd it returns
        // is owned by the File made from it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                rel.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EXDEV) {
                format!("{path} leads outside the directories this step may use")
            } else {
                format!("{path}: {e}")
            });
        }
        // SAFETY: a fresh descriptor from openat2, owned by nothing else.
        Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the limit, and remembers that it did, so the failure that follows in the
/// guest (an allocation error, then a trap) is reported as what it is.
pub struct MemoryLimiter {
    limit: usize,
    pub(super) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for StepState {}

impl log::Host for StepState {
    async fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        if level == Level::Error && message.starts_with("panicked at ") && self.panic.is_none() {
            self.panic = Some(message.lines().next().unwrap_or_default().to_string());
        }
        for line in message.lines() {
            if self.rules.prefix {
                self.log
                    .plugin(level, &format!("{}: {line}", self.rules.plugin));
            } else {
                self.log.plugin(level, line);
            }
        }
    }
}

impl exec::Host for StepState {
    async fn run(&mut self, command: exec::Command) -> Result<exec::Exit, String> {
        let program = command.argv.first().cloned().unwrap_or_default();
        if let Some(rule) = &self.rules.exec
            && let Some(refusal) = rule.refusal(&program)
        {
            self.log.plugin(Level::Warn, &refusal);
            return Err(refusal);
        }
        if let Some((answers, allowed)) = &self.rules.scripted {
            if !allowed {
                return Err("this step's policy does not allow running host programs".to_string());
            }
            return self.scripted(answers, &command);
        }
        let Some(env) = &self.exec else {
            return Err("this step's policy does not allow running host programs".to_string());
        };
        let spec = ProcessSpec {
            argv: command.argv,
            env: command.env,
            cwd: command.cwd.into(),
            stdin: command.stdin,
            capture_stdout: command.capture_stdout,
            run_as: env.run_as,
        };
        let result = match &env.os {
            Some(os) => os.run(&spec, self.deadline, self.log.clone()).await,
            None => {
                process::run(
                    &spec,
                    &env.prepared,
                    self.deadline,
                    self.log.clone(),
                    &env.reaper,
                )
                .await
            }
        };
        match result {
            Ok(exit) => Ok(exec::Exit {
                code: exit.code,
                signal: exit.signal,
                timed_out: exit.timed_out,
                stdout: exit.stdout,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "`{program}` was not found (in PATH, or as the working directory {})",
                spec.cwd.display()
            )),
            Err(e) => Err(format!("cannot start `{program}`: {e}")),
        }
    }
}

impl StepState {
    /// The real path of `path` when it lies inside a preopened directory (a writable one when
    /// `write`): symlinks are resolved first, so a link cannot lead outside.
    fn inside_preopens(&self, path: &str, write: bool) -> Result<std::path::PathBuf, String> {
        let real = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
        let allowed = self
            .preopens
            .iter()
            .filter(|p| p.writable || !write)
            .any(|p| real.starts_with(&p.path));
        if allowed {
            Ok(real)
        } else {
            Err(format!(
                "{path} is outside the directories this step may {}",
                if write { "write" } else { "read" }
            ))
        }
    }
}

impl files::Host for StepState {
    async fn mode(&mut self, path: String) -> Result<u32, String> {
        use std::os::unix::fs::PermissionsExt;
        let real = self.inside_preopens(&path, false)?;
        std::fs::metadata(&real)
            .map(|m| m.permissions().mode() & 0o7777)
            .map_err(|e| format!("{path}: {e}"))
    }

    async fn copy(&mut self, source: String, destination: String) -> Result<u64, String> {
        use std::os::unix::fs::PermissionsExt;
        let mut from = self.open_beneath(&source, None)?;
        let meta = from.metadata().map_err(|e| format!("{source}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{source}: not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        // O_EXCL: never through an existing file or symlink.
        let mut to = self.open_beneath(&destination, Some(mode))?;
        let n = std::io::copy(&mut from, &mut to).map_err(|e| format!("{destination}: {e}"))?;
        // The umask may have taken bits away at creation: put them back.
        if mode & (crate::revision::extract::umask() | 0o7000) != 0 {
            to.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{destination}: {e}"))?;
        }
        Ok(n)
    }

    async fn set_mode(&mut self, path: String, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let real = self.inside_preopens(&path, true)?;
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("{path}: {e}"))
    }
}

/// A plugin's stdout or stderr, line by line into the build log.
pub struct LogOutput {
    log: Arc<dyn LogSink>,
    stream: Stream,
}

impl LogOutput {
    pub fn new(log: Arc<dyn LogSink>, stream: Stream) -> Self {
        Self { log, stream }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.log.clone(),
            stream: self.stream,
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    log: Arc<dyn LogSink>,
    stream: Stream,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit_lines(&mut self) {
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            self.log.output(self.stream, text.trim_end_matches('\r'));
        }
    }

    fn emit_rest(&mut self) {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.log.output(self.stream, &text);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        self.emit_lines();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit_rest();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit_rest();
    }
}
