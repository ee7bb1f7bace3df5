//! Logs on a page: the file a record names, read only when it is a regular file inside the folders
//! kiln writes logs to (its state dir's `builds/` and `pipelines/`, and the deployment roots).
//!
//! A record is data anyone with write access to the state dir can forge, so its `log` path is not
//! trusted: the file is opened first (not following it into a FIFO or a device), and the path the
//! kernel says the open file has (`/proc/self/fd/N`) must lie inside one of those folders. Checking
//! the opened file rather than the name leaves no window for a link swapped in between.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::html::{esc, page};

/// How much of the end of a log a page shows.
const SHOWN: u64 = 512 * 1024;

/// The one script of kiln's pages: it keeps a running log's newest lines in view across reloads.
/// The Content-Security-Policy allows it by its hash, and no other script.
pub const FOLLOW_SCRIPT: &str = "window.scrollTo(0,document.body.scrollHeight)";

/// Why a log is not shown.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("there is no log at {0}")]
    Missing(PathBuf),
    #[error("{0} is not a log kiln wrote: it is outside kiln's state dir and deployment roots")]
    Outside(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens `path` for reading when it is a regular file inside one of `roots`.
pub fn open_confined(path: &Path, roots: &[PathBuf]) -> Result<File, LogError> {
    if !path.is_absolute() {
        return Err(LogError::Outside(path.to_path_buf()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LogError::Missing(path.to_path_buf()),
            _ => LogError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| LogError::Outside(path.to_path_buf()))?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| real.starts_with(&root) && real != root);
    if !inside {
        return Err(LogError::Outside(path.to_path_buf()));
    }
    let meta = file.metadata().map_err(|e| LogError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(LogError::Outside(path.to_path_buf()));
    }
    Ok(file)
}

/// The end of a log: at most [`SHOWN`] bytes, cut at a line start, and how many bytes were left
/// out before them.
pub fn read_tail(mut file: File, path: &Path) -> Result<(String, u64), LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(SHOWN);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(SHOWN).read_to_end(&mut bytes).map_err(io)?;
    let mut skipped = start;
    if start > 0
        && let Some(nl) = bytes.iter().position(|b| *b == b'\n')
    {
        bytes.drain(..=nl);
        skipped += nl as u64 + 1;
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), skipped))
}

/// How often a followed log is looked at again.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// A log as plain text (`?format=text`): what the file holds and then, while `running` says the
/// work goes on, what is added to it, as `tail -f` does, until the work ends. `running` reads
/// records, so it runs on a blocking thread.
pub fn follow(file: File, running: impl Fn() -> bool + Send + Sync + 'static) -> Response {
    use tokio::io::AsyncReadExt as _;
    let running = Arc::new(running);
    let stream = futures::stream::unfold(Some(tokio::fs::File::from_std(file)), move |state| {
        let running = running.clone();
        async move {
            let mut file = state?;
            loop {
                // Looked at before reading: what the work wrote before it ended is then read
                // below, so the stream ends with all of it.
                let check = running.clone();
                let still = tokio::task::spawn_blocking(move || check())
                    .await
                    .unwrap_or(false);
                let mut chunk = vec![0u8; 64 * 1024];
                match file.read(&mut chunk).await {
                    Ok(0) if still => tokio::time::sleep(POLL).await,
                    Ok(0) => return None,
                    Ok(n) => {
                        chunk.truncate(n);
                        return Some((Ok(Bytes::from(chunk)), Some(file)));
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `?format=text`: the log, followed while `running`; or the page that says why not.
pub fn text(
    path: &Path,
    roots: &[PathBuf],
    running: impl Fn() -> bool + Send + Sync + 'static,
) -> Response {
    use axum::http::StatusCode;
    match open_confined(path, roots) {
        Ok(file) => follow(file, running),
        Err(e @ LogError::Missing(_)) => super::error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ LogError::Outside(_)) => super::error(StatusCode::FORBIDDEN, &e.to_string()),
        Err(e) => super::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A log's page: `title`, a line of context (already HTML), and the log; it reloads itself every
/// 2 s while `running`.
pub fn log_page(
    title: &str,
    context: &str,
    path: &Path,
    roots: &[PathBuf],
    running: bool,
) -> String {
    let mut body = format!("<h1>{}</h1>{context}", esc(title));
    match open_confined(path, roots).and_then(|f| read_tail(f, path)) {
        Ok((text, skipped)) => {
            if skipped > 0 {
                body.push_str(&format!(
                    "<p class=\"note\">The first {skipped} bytes are left out; the file is <code>{}</code>.</p>",
                    esc(&path.display().to_string())
                ));
            }
            body.push_str(if running {
                "<p class=\"note\">Still running: this page reloads itself every 2 seconds; \
                 <a href=\"?format=text\">plain text</a> follows the log as it grows.</p>"
            } else {
                "<p class=\"note\"><a href=\"?format=text\">Plain text</a></p>"
            });
            body.push_str(&format!(
                "<pre class=\"log\" id=\"log\">{}</pre>",
                esc(&text)
            ));
            if running {
                // Keeps the newest lines in view across reloads; the page works without it.
                body.push_str(&format!("<script>{FOLLOW_SCRIPT}</script>"));
            }
        }
        Err(LogError::Missing(_)) if running => {
            body.push_str(
                "<p class=\"note\">No output yet: this page reloads itself every 2 seconds.</p>",
            );
        }
        Err(e) => body.push_str(&format!("<p class=\"note\">{}</p>", esc(&e.to_string()))),
    }
    page(title, running, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_inside_the_roots_is_read() {
        let state = tempfile::tempdir().expect("temp dir");
        let log = state.path().join("builds/app/1.log");
        std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
        std::fs::write(&log, "line 1\nline 2\n").expect("write");
        let file = open_confined(&log, &[state.path().join("builds")]).expect("inside");
        let (text, skipped) = read_tail(file, &log).expect("read");
        assert_eq!(text, "line 1\nline 2\n");
        assert_eq!(skipped, 0);
    }

    #[test]
    fn a_file_outside_the_roots_is_refused() {
        let state = tempfile::tempdir().expect("temp dir");
        let outside = tempfile::tempdir().expect("temp dir");
        let secret = outside.path().join("shadow");
        std::fs::write(&secret, "root:x:0").expect("write");
        let roots = [state.path().to_path_buf()];
        assert!(matches!(
            open_confined(&secret, &roots),
            Err(LogError::Outside(_))
        ));
        assert!(matches!(
            open_confined(Path::new("/etc/passwd"), &roots),
            Err(LogError::Outside(_))
        ));
        // Through `..` and through a link inside the root: still outside.
        let dotdot = state.path().join("..").join(
            outside
                .path()
                .strip_prefix(state.path().parent().expect("parent"))
                .unwrap_or(outside.path()),
        );
        assert!(matches!(
            open_confined(&dotdot.join("shadow"), &roots),
            Err(LogError::Outside(_))
        ));
        let link = state.path().join("link.log");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        assert!(matches!(
            open_confined(&link, &roots),
            Err(LogError::Outside(_))
        ));
        assert!(matches!(
            open_confined(Path::new("relative.log"), &roots),
            Err(LogError::Outside(_))
        ));
    }

    #[test]
    fn a_fifo_inside_the_roots_is_not_read() {
        let state = tempfile::tempdir().expect("temp dir");
        let fifo = state.path().join("fifo.log");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a plain mkfifo of a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_confined(&fifo, &[state.path().to_path_buf()]).is_err());
    }

    #[test]
    fn a_long_log_shows_its_end_from_a_line_start() {
        let state = tempfile::tempdir().expect("temp dir");
        let log = state.path().join("big.log");
        let line = "x".repeat(99) + "\n";
        std::fs::write(&log, line.repeat(10_000) + "last\n").expect("write");
        let file = open_confined(&log, &[state.path().to_path_buf()]).expect("inside");
        let (text, skipped) = read_tail(file, &log).expect("read");
        assert!(skipped > 0);
        assert!(text.starts_with('x'));
        assert!(text.ends_with("last\n"));
        assert_eq!(skipped as usize + text.len(), 1_000_005);
    }
}
