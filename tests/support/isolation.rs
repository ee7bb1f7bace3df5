//! Helpers for the tests that attack the OS sandbox (tests/isolation.rs): what the machine allows,
//! unique markers, probes of the host (listeners, files, processes) and the unprivileged mode.

use std::ffi::CString;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Build, Run, shared_cache};

/// The uid and gid of `nobody`, the user of the unprivileged mode.
pub const NOBODY: u32 = 65534;

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Says loudly that a test did not run, or fails it in CI when `ci_must` is set.
fn skip(reason: &str, ci_must: bool) -> bool {
    assert!(
        !(ci_must && in_ci()),
        "CI must be able to run this: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
    false
}

/// Whether a child (switched to `uid` first, when given) may make the namespaces a build's sandbox
/// is made of: user, mount, pid, ipc, uts, network.
pub fn namespaces_allowed(uid: Option<u32>) -> bool {
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    // SAFETY: the child only makes raw system calls (async-signal-safe) and leaves with _exit.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if let Some(uid) = uid {
                let none: [libc::gid_t; 0] = [];
                if libc::syscall(libc::SYS_setgroups, 0, none.as_ptr()) != 0
                    || libc::syscall(libc::SYS_setgid, uid) != 0
                    || libc::syscall(libc::SYS_setuid, uid) != 0
                {
                    libc::_exit(2);
                }
            }
            libc::_exit(if libc::unshare(flags) == 0 { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// Tests of the sandbox need user namespaces. CI's kernel has them; elsewhere say so loudly.
pub fn require_namespaces() -> bool {
    if namespaces_allowed(None) {
        return true;
    }
    skip(
        "this machine refuses user namespaces; kiln cannot sandbox builds here",
        true,
    )
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A program of the host, found on PATH or in the sbin folders. Missing in CI fails the test;
/// elsewhere the test is skipped loudly.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(&format!("`{name}` is not installed"), true);
    }
    found
}

/// The system's python3: one of the host's root, not a shim in a home folder (a build does not see
/// the host's homes). Missing in CI fails the test; elsewhere it is skipped loudly.
pub fn python3() -> Option<PathBuf> {
    let found = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        skip("no system python3 (/usr/bin/python3)", true);
    }
    found
}

/// A marker no other test (or earlier run) uses.
pub fn marker(tag: &str) -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}{}x{}x{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A decimal fraction no other test uses: `sleep 30.<this>` marks a test's processes on the host.
pub fn unique_digits() -> String {
    marker("").replace('x', "")
}

/// A temp dir of the host that a build sees through its overlay root (not under `/tmp`, which is the
/// build's own), so an attack on it is a real attack.
pub fn host_dir() -> tempfile::TempDir {
    super::host_visible_dir("kiln-host-")
}

/// The identity of one of this process's namespaces (`net:[4026531840]`).
pub fn namespace(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("namespace link")
        .to_string_lossy()
        .into_owned()
}

/// The host's network interfaces.
pub fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether a process is alive (a zombie is dead for our purposes).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The live processes of the host with this exact argument.
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Waits up to `limit` for no live process to have `arg`; kills and returns the ones left.
pub fn survivors(arg: &str, limit: Duration) -> Vec<i32> {
    let started = Instant::now();
    loop {
        let left = processes_with_arg(arg);
        if left.is_empty() {
            return left;
        }
        if started.elapsed() > limit {
            for pid in &left {
                // SAFETY: killing a process this test's build started (it carries the test's marker).
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A socket of the host a build must not reach, and whether anything reached it.
pub enum HostListener {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

impl HostListener {
    /// A TCP listener on the host's 127.0.0.1.
    pub fn tcp() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("tcp listener");
        l.set_nonblocking(true).unwrap();
        Self::Tcp(l)
    }

    /// A UDP socket on the host's 127.0.0.1.
    pub fn udp() -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        s.set_nonblocking(true).unwrap();
        Self::Udp(s)
    }

    /// A unix socket bound at `path`.
    pub fn unix(path: &Path) -> Self {
        let l = UnixListener::bind(path).expect("unix listener");
        l.set_nonblocking(true).unwrap();
        Self::Unix(l)
    }

    /// A unix socket bound in the host network namespace's abstract namespace (`\0name`).
    pub fn abstract_unix(name: &str) -> Self {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixListener::bind_addr(&addr).expect("abstract unix listener");
        l.set_nonblocking(true).unwrap();
        Self::Unix(l)
    }

    pub fn port(&self) -> u16 {
        match self {
            Self::Tcp(l) => l.local_addr().unwrap().port(),
            Self::Udp(s) => s.local_addr().unwrap().port(),
            Self::Unix(_) => panic!("a unix socket has no port"),
        }
    }

    /// Whether a connection (even one closed since) or a datagram arrived. Each call takes what it
    /// reports, so a listener can be checked again after another build.
    pub fn arrived(&self) -> bool {
        // What was sent before the build ended is in flight for a moment at most.
        std::thread::sleep(Duration::from_millis(200));
        let got = match self {
            Self::Tcp(l) => l.accept().map(|_| ()),
            Self::Udp(s) => s.recv_from(&mut [0u8; 64]).map(|_| ()),
            Self::Unix(l) => l.accept().map(|_| ()),
        };
        match got {
            Ok(()) => {
                while self.drain() {}
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("listener: {e}"),
        }
    }

    fn drain(&self) -> bool {
        match self {
            Self::Tcp(l) => l.accept().is_ok(),
            Self::Udp(s) => s.recv_from(&mut [0u8; 64]).is_ok(),
            Self::Unix(l) => l.accept().is_ok(),
        }
    }
}

/// What a build must not change about a file of the host.
#[derive(Debug, PartialEq, Eq)]
pub struct FileState {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub contents: Vec<u8>,
    pub xattrs: Vec<String>,
    /// The inode flags (`chattr`), where the file system has them.
    pub flags: Option<u32>,
}

#[cfg(target_pointer_width = "64")]
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
#[cfg(target_pointer_width = "64")]
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
#[cfg(target_pointer_width = "32")]
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8004_6601;
#[cfg(target_pointer_width = "32")]
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4004_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;
const FS_APPEND_FL: libc::c_long = 0x20;

fn inode_flags(path: &Path) -> Option<libc::c_long> {
    let file = std::fs::File::open(path).ok()?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            FS_IOC_GETFLAGS as _,
            &mut flags,
        )
    };
    (rc == 0).then_some(flags)
}

/// Takes away `chattr +i`/`+a` if a build managed to set them, so the test can clean up.
pub fn clear_immutable(path: &Path) {
    let Some(flags) = inode_flags(path) else {
        return;
    };
    if flags & (FS_IMMUTABLE_FL | FS_APPEND_FL) == 0 {
        return;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let cleared: libc::c_long = flags & !(FS_IMMUTABLE_FL | FS_APPEND_FL);
    // SAFETY: FS_IOC_SETFLAGS reads one long from `cleared`.
    unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            FS_IOC_SETFLAGS as _,
            &cleared,
        );
    }
}

fn xattr_names(path: &Path) -> Vec<String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: listxattr writes at most buf.len() bytes into buf.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut names: Vec<String> = buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    names
}

impl FileState {
    pub fn of(path: &Path) -> Self {
        let meta = std::fs::symlink_metadata(path).expect("the host file exists");
        Self {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            contents: std::fs::read(path).unwrap_or_default(),
            xattrs: xattr_names(path),
            flags: inode_flags(path).map(|f| f as u32),
        }
    }
}

/// Changes the owner of `path` and everything below it (links themselves, not their targets).
pub fn chown_tree(path: &Path, uid: u32) {
    let meta = std::fs::symlink_metadata(path).expect("path exists");
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&entry.path(), uid);
        }
    }
}

/// Who runs `kiln`: the test's own user (root in CI), or `nobody`, so the same attacks are tried
/// against the rootless sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Caller,
    Nobody,
}

impl Mode {
    /// Whether this machine can run the tests in this mode; says loudly why not.
    pub fn ready(self) -> bool {
        match self {
            Mode::Caller => require_namespaces(),
            Mode::Nobody => {
                if !is_root() {
                    return skip(
                        "the unprivileged mode needs the tests to run as root, to become nobody",
                        false,
                    );
                }
                if !nobody_runs_kiln() {
                    return skip(
                        &format!(
                            "nobody cannot run {} (a folder on its path is not searchable by others)",
                            env!("CARGO_BIN_EXE_kiln")
                        ),
                        false,
                    );
                }
                if !namespaces_allowed(Some(NOBODY)) {
                    return skip(
                        "this machine refuses user namespaces to unprivileged users",
                        false,
                    );
                }
                true
            }
        }
    }

    /// Whether the build's root is the host's root mapped to an unprivileged range (kiln runs as
    /// root), so the host's root files look root-owned inside and an install can copy them up.
    pub fn root_mapped(self) -> bool {
        self == Mode::Caller && is_root()
    }

    /// Hands a folder or file the test made to the user kiln runs as (a no-op for the caller).
    pub fn give(self, path: &Path) {
        if self == Mode::Nobody {
            chown_tree(path, NOBODY);
        }
    }

    /// A host program run as the user kiln runs as.
    pub fn command(self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if self == Mode::Nobody {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd
    }

    /// Runs `kiln build` of `b` as this mode's user, like [`Build::run_with`].
    pub fn run(self, b: &Build, extra: &[&str]) -> Run {
        match self {
            Mode::Caller => b.run_with(extra),
            Mode::Nobody => {
                // kiln's folders and the project belong to nobody; the compiled plugins come from a
                // cache of nobody's own, shared by the tests that run as nobody.
                let components = b.cache.path().join("components");
                let _ = std::fs::remove_file(&components);
                std::os::unix::fs::symlink(nobody_components(), &components).unwrap();
                for dir in [b.dir.path(), b.state.path(), b.cache.path()] {
                    chown_tree(dir, NOBODY);
                }
                let home = Rc::new(tempfile::tempdir().expect("temp dir"));
                chown_tree(home.path(), NOBODY);
                let build = b.command(extra);
                let mut cmd = Command::new(nobody_kiln());
                cmd.args(build.get_args());
                for (key, value) in build.get_envs() {
                    match value {
                        Some(value) => cmd.env(key, value),
                        None => cmd.env_remove(key),
                    };
                }
                cmd.uid(NOBODY)
                    .gid(NOBODY)
                    .current_dir(b.dir.path())
                    .env("HOME", home.path())
                    .env("TMPDIR", "/tmp")
                    .env("KILN_STATE_DIR", b.state.path())
                    .env("KILN_CACHE_DIR", b.cache.path())
                    .envs(b.envs.iter().map(|(k, v)| (k, v)));
                let mut run = b.finish(cmd.output().expect("kiln runs"));
                run.keep.push(home);
                run
            }
        }
    }
}

/// Where nobody's copy of the kiln binary and its compiled plugins live: a folder nobody can
/// reach wherever the checkout is (CI may clone below a home that others cannot enter).
/// One per checkout (named by the binary's path), reused by later runs.
fn nobody_place() -> PathBuf {
    let checkout = blake3::hash(env!("CARGO_BIN_EXE_kiln").as_bytes()).to_hex();
    PathBuf::from("/tmp").join(format!("kiln-test-nobody-{}", &checkout[..16]))
}

/// The kiln binary under test, where nobody can run it: a hard link (or a copy) in
/// [`nobody_place`].
fn nobody_kiln() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let place = nobody_place();
        std::fs::create_dir_all(&place).expect("nobody's place");
        std::fs::set_permissions(&place, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Linked (or copied) under a temporary name and renamed, so a run never sees half a binary.
        let exe = place.join("kiln");
        let fresh = place.join(format!("kiln.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        if std::fs::hard_link(env!("CARGO_BIN_EXE_kiln"), &fresh).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &fresh).expect("a copy of kiln");
        }
        std::fs::rename(&fresh, &exe).expect("nobody's kiln");
        exe
    })
    .clone()
}

/// Whether `nobody` may execute the kiln binary under test.
fn nobody_runs_kiln() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new(nobody_kiln())
            .arg("--version")
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The compiled plugins of the tests that run as nobody (written by nobody, once).
fn nobody_components() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = nobody_place().join("cache");
        let dir = root.join("components");
        std::fs::create_dir_all(&dir).expect("nobody's cache");
        chown_tree(&root, NOBODY);
        dir
    })
    .clone()
}

impl Build {
    /// A project whose folder, state and cache directories are not under `/tmp` (which a sandboxed
    /// build has its own of), so that hiding them is the sandbox's doing.
    pub fn outside_tmp() -> Self {
        let dir = || super::host_visible_dir("kiln-outside-");
        let cache = dir();
        let components = shared_cache().join("components");
        std::fs::create_dir_all(&components).expect("shared cache");
        std::os::unix::fs::symlink(&components, cache.path().join("components")).expect("symlink");
        Self {
            dir: Rc::new(dir()),
            state: Rc::new(dir()),
            cache: Rc::new(cache),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }
}

impl Run {
    /// The build's programs ran in kiln's namespace sandbox.
    pub fn sandboxed(&self) -> &Self {
        assert_eq!(
            self.json["sandbox"],
            "namespaces",
            "the build should run in the namespace sandbox\n{}",
            self.context()
        );
        self
    }

    /// A line the build's programs printed (not kiln's `[Container]` lines, which echo each
    /// command's text) contains this.
    pub fn said(&self, text: &str) -> &Self {
        assert!(
            self.output_lines().iter().any(|l| l.contains(text)),
            "the build's output should contain {text:?}\n{}",
            self.context()
        );
        self
    }

    /// No line the build's programs printed contains this.
    pub fn never_said(&self, text: &str) -> &Self {
        assert!(
            !self.output_lines().iter().any(|l| l.contains(text)),
            "the build's output should not contain {text:?}\n{}",
            self.context()
        );
        self
    }

    /// What the build printed after `prefix` on each line that starts with it.
    pub fn values(&self, prefix: &str) -> Vec<String> {
        self.output_lines()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .collect()
    }

    /// kiln ended the build with a proper result: exit 0 or 1 and a recorded status and phases.
    pub fn proper_result(&self) -> &Self {
        assert!(
            matches!(self.code, Some(0 | 1)),
            "kiln should end the build itself\n{}",
            self.context()
        );
        assert!(
            matches!(self.json["status"].as_str(), Some("SUCCEEDED" | "FAILED")),
            "{}",
            self.context()
        );
        assert!(self.find_phase("BUILD").is_some(), "{}", self.context());
        self
    }
}
