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
use super::{ExecEnv, LogSink, Preopen, Stream};

/// A line's level in the build log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
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
}

impl StepState {
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
        }
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
        for line in message.lines() {
            self.log.plugin(level, line);
        }
    }
}

impl exec::Host for StepState {
    async fn run(&mut self, command: exec::Command) -> Result<exec::Exit, String> {
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
        let program = spec.argv.first().cloned().unwrap_or_default();
        match process::run(
            &spec,
            &env.prepared,
            self.deadline,
            self.log.clone(),
            &env.reaper,
        )
        .await
        {
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
