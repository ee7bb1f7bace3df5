//! A `kiln serve` started by a test, over a state dir the test made, on a free port: the address
//! and token it printed, raw HTTP requests to it, and the process stopped when dropped.
//!
//! ```ignore
//! let serve = Serve::start(state.path());
//! browser.open(&serve.token_url());            // the browser now holds the token cookie
//! browser.open(&serve.url("/pipelines/web"));
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};

/// A running `kiln serve`.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token it printed.
    pub token: String,
}

impl Serve {
    /// Starts `kiln serve --addr 127.0.0.1:0` over `state` (its deployment root is the state dir's
    /// `deployment-root`) and reads the address it prints.
    pub fn start(state: &Path) -> Serve {
        Self::start_with(
            state,
            &[
                "--deployment-root",
                &state.join("deployment-root").to_string_lossy(),
            ],
        )
    }

    /// Like [`Serve::start`], with `args` after `kiln serve --addr 127.0.0.1:0 --state-dir STATE`.
    pub fn start_with(state: &Path, args: &[&str]) -> Serve {
        let mut child = super::kiln()
            .args(["serve", "--addr", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kiln serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("kiln serve prints its address");
        let Some((base, token)) = line
            .trim()
            .strip_prefix("kiln serve: ")
            .and_then(|url| url.split_once("/?token="))
        else {
            let _ = child.kill();
            panic!("kiln serve's first line is not its address: {line:?}");
        };
        Serve {
            base: base.to_string(),
            token: token.to_string(),
            child,
        }
    }

    /// The address it printed, token included: opening it gives a browser the token cookie.
    pub fn token_url(&self) -> String {
        format!("{}/?token={}", self.base, self.token)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends one raw HTTP/1.1 request and gives the whole response.
    pub fn raw(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(self.addr()).expect("connect to kiln serve");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    }

    /// GET `path` with `host` as the Host header (default: the address served).
    pub fn get(&self, path: &str, host: Option<&str>) -> String {
        self.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host.unwrap_or(self.addr())
        ))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
