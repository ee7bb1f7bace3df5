//! The build log: CodeBuild's line format, secrets masked in every line, written to the terminal (or
//! stderr under `--json`) and to the build's log file, with a status line on terminals.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where the log's lines go besides the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
    /// Nothing on the console (the log file still gets everything).
    Quiet,
}

/// A build's log. Cheap to share: every method takes `&self`.
pub struct BuildLog {
    inner: Mutex<Inner>,
    console: Console,
    progress: Option<ProgressBar>,
    verbose: bool,
}

struct Inner {
    file: Option<File>,
    masker: Arc<Masker>,
}

pub use super::mask::MASK;
use super::mask::Masker;

impl BuildLog {
    /// A log writing to `file` (created) and to `console`; a status line is shown when `progress` is
    /// set and the console is a terminal.
    pub fn create(file: Option<&Path>, console: Console, progress: bool) -> io::Result<Self> {
        // The log is the build's own: other users of the machine do not read it.
        let file = file.map(super::create_private).transpose()?;
        let is_tty = match console {
            Console::Stdout => io::IsTerminal::is_terminal(&io::stdout()),
            Console::Stderr => io::IsTerminal::is_terminal(&io::stderr()),
            Console::Quiet => false,
        };
        let progress = (progress && is_tty).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Ok(Self {
            inner: Mutex::new(Inner {
                file,
                masker: Arc::default(),
            }),
            console,
            progress,
            verbose: false,
        })
    }

    /// Shows plugins' debug lines too.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Masks these values (and each line of a multi-line one) in every line written from now on.
    pub fn mask(&self, secrets: impl IntoIterator<Item = String>) {
        self.lock().masker = Arc::new(Masker::new(secrets));
    }

    /// The build's secrets, to mask what kiln writes elsewhere (records, `--json`, cache entries).
    pub fn masker(&self) -> Arc<Masker> {
        self.lock().masker.clone()
    }

    /// A kiln line in CodeBuild's form: `[Container] 2026/11/23 07:39:35.123456 <message>`.
    pub fn container(&self, message: &str) {
        let stamp = chrono::Utc::now().format("%Y/%m/%d %H:%M:%S%.6f");
        for line in message.split('\n') {
            self.line(&format!("[Container] {stamp} {line}"));
        }
    }

    /// One line of program output, as it came.
    pub fn output(&self, line: &str) {
        self.line(line);
    }

    /// Shows what is running on the terminal's status line.
    pub fn status(&self, message: &str) {
        if let Some(bar) = &self.progress {
            let masked = self.masked(message);
            bar.set_message(masked);
        }
    }

    /// Removes the status line.
    pub fn finish(&self) {
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
    }

    fn masked(&self, line: &str) -> String {
        self.lock().masker.mask(line).into_owned()
    }

    fn line(&self, line: &str) {
        let mut inner = self.lock();
        let Inner { file, masker } = &mut *inner;
        let line = masker.mask(line);
        if let Some(file) = file {
            // One write per line (a reader following the log never sees half of one). A full disk
            // must not stop the build; the console still has the line.
            let mut bytes = Vec::with_capacity(line.len() + 1);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            let _ = file.write_all(&bytes);
        }
        let write = |out: &mut dyn Write| {
            let _ = writeln!(out, "{line}");
        };
        let console = self.console;
        let emit = || match console {
            Console::Stdout => write(&mut io::stdout().lock()),
            Console::Stderr => write(&mut io::stderr().lock()),
            Console::Quiet => {}
        };
        match &self.progress {
            Some(bar) => bar.suspend(emit),
            None => emit(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep logging.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BuildLog {
    fn drop(&mut self) {
        self.finish();
        if let Some(file) = &mut self.lock().file {
            let _ = file.flush();
        }
    }
}

impl crate::sandbox::LogSink for BuildLog {
    fn output(&self, _stream: crate::sandbox::Stream, line: &str) {
        self.output(line);
    }

    fn separates_streams(&self) -> bool {
        false
    }

    fn plugin(&self, level: crate::sandbox::Level, message: &str) {
        if let Some(line) = level.line(message, self.verbose) {
            self.output(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        let log = BuildLog::create(Some(&path), Console::Quiet, false).unwrap();
        log.mask(["hunter22".to_string(), "no".to_string()]);
        log.output("password=hunter22; no change");
        log.container("Running command echo hunter22");
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("password=***; no change"), "{text}");
        assert!(text.contains("Running command echo ***"), "{text}");
        assert!(!text.contains("hunter22"));
    }
}
