//! Real servers for the end-to-end tests, started through the project's scripts in
//! `tests/services/`: each test gets its own, on a free 127.0.0.1 port with its data in a temp dir,
//! stopped when the test ends.
//!
//! When a server is not installed, the test is skipped with a loud message, except in CI (`CI` set),
//! where that is a failure: CI installs every server (`tests/services/install.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's PostgreSQL 15 programs (others may come first on PATH).
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/services")
        .join(name)
}

/// Whether a program is installed (on PATH, or where `cargo install` puts it).
fn installed(program: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path || cargo_home.is_some_and(|c| c.join("bin").join(program).is_file())
}

fn missing(what: &str, install: &str) -> Option<Service> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed, and CI must run every test: run {install}");
    }
    eprintln!("\n*** SKIPPED: {what} is not installed; run `{install}` to run this test ***\n");
    None
}

/// A running server.
pub struct Service {
    pub dir: tempfile::TempDir,
    script: &'static str,
    /// `127.0.0.1:PORT` for the registry, `http://127.0.0.1:PORT` for S3, a postgres:// URL for
    /// PostgreSQL.
    pub address: String,
    start_args: Vec<String>,
}

impl Service {
    /// The OCI registry, with htpasswd basic auth when `user` is `Some("name:password")`.
    pub fn registry(user: Option<&str>) -> Option<Service> {
        if !installed("docker-registry") || !installed("htpasswd") {
            return missing("docker-registry", "tests/services/registry.sh install");
        }
        Some(Self::start(
            "registry.sh",
            user.map(|u| vec![u.to_string()]).unwrap_or_default(),
        ))
    }

    /// The S3 server, with these credentials and buckets.
    pub fn s3(access: &str, secret: &str, buckets: &[&str]) -> Option<Service> {
        if !installed("s3s-fs") {
            return missing("s3s-fs", "tests/services/s3.sh install");
        }
        let mut args = vec![access.to_string(), secret.to_string()];
        args.extend(buckets.iter().map(|b| b.to_string()));
        Some(Self::start("s3.sh", args))
    }

    /// A second S3 server over `over`'s objects, with its own credentials, that cannot write below
    /// `read_only` (`bucket/prefix/...`): a submitter's bucket policy (tests/services/s3-restricted.sh).
    pub fn s3_restricted(
        over: &Service,
        access: &str,
        secret: &str,
        read_only: &str,
    ) -> Option<Service> {
        if !installed("s3s-fs") {
            return missing("s3s-fs", "tests/services/s3.sh install");
        }
        let data = over.dir.path().join("data");
        Some(Self::start(
            "s3-restricted.sh",
            vec![
                data.to_string_lossy().into_owned(),
                access.to_string(),
                secret.to_string(),
                read_only.to_string(),
            ],
        ))
    }

    /// PostgreSQL 15 with a database `kiln`; `address` is the superuser's URL
    /// (postgres://kiln:PASSWORD@127.0.0.1:PORT/kiln).
    pub fn postgres() -> Option<Service> {
        if !Path::new(POSTGRES_BIN).join("postgres").is_file() {
            return missing("PostgreSQL 15", "tests/services/postgres.sh install");
        }
        Some(Self::start("postgres.sh", Vec::new()))
    }

    fn start(script_name: &'static str, args: Vec<String>) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = Service {
            dir,
            script: script_name,
            address: String::new(),
            start_args: args,
        };
        service.restart();
        service
    }

    /// Starts the server (again), on the same port and data.
    pub fn restart(&mut self) {
        let out = Command::new("bash")
            .arg(script(self.script))
            .arg("start")
            .arg(self.dir.path())
            .args(&self.start_args)
            .output()
            .expect("run the service script");
        assert!(
            out.status.success(),
            "{} start failed: {}",
            self.script,
            String::from_utf8_lossy(&out.stderr)
        );
        self.address = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            for _ in 0..400 {
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = std::fs::remove_file(self.dir.path().join("pid"));
        }
    }

    /// Where the server keeps its data.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script(self.script))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Total bytes of the files below `dir`.
pub fn bytes_below(dir: &Path) -> u64 {
    walkdir_sizes(dir)
}

fn walkdir_sizes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walkdir_sizes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Waits until the files below `dir` hold at least `bytes` (a transfer under way); fails after 60 s.
pub fn wait_for_bytes(dir: &Path, bytes: u64, what: &str) {
    let start = std::time::Instant::now();
    while bytes_below(dir) < bytes {
        assert!(start.elapsed().as_secs() < 60, "{what} never started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
