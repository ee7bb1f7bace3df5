//! The OS sandbox: one per build, the way containers work but with no image and no daemon.
//!
//! A build's host programs run in namespaces of their own (user, mount, pid, ipc, uts, cgroup and, but
//! for `--network host`, network). The build's root is root only in its user namespace: as root, kiln
//! maps the build's ids 0..65535 to an unused range outside and hands the launcher *idmapped* clones of
//! the host's root and of the build's own folders, so the host's files look root-owned inside (an
//! overlay can copy them up, `apt-get install` works) while every write lands on disk as the outside
//! owner the build may write as; rootless, the build's root is the caller's own uid. The filesystem
//! (see [`mounts`]) is the host's root as a read-only image under a private writable layer, thrown away
//! with the build. A launcher ([`launcher`]) lives in the sandbox for the build's duration and starts
//! each command, so a command costs a fork and an exec; every capability is dropped, `no_new_privs` is
//! set and a seccomp filter ([`seccomp`]) is installed before the exec. When the build ends (or kiln
//! dies) the launcher's socket closes and the pid namespace, with every process in it, goes away.

pub mod launcher;
pub mod mounts;
pub mod probe;
pub mod seccomp;
mod shell;
mod wire;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use self::mounts::Layout;
use self::wire::{Reply, Request};
use super::process::{ProcessExit, ProcessSpec};
use super::{LogSink, Stream};

/// What a build's network namespace reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Loopback only.
    None,
    /// Outbound connections through a user-mode network stack (pasta); the host's own loopback
    /// services and interfaces stay out of reach. CodeBuild's builds have network, so this is the
    /// default.
    #[default]
    Internet,
    /// The host's network namespace.
    Host,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "internet" => Ok(Self::Internet),
            "host" => Ok(Self::Host),
            other => Err(format!(
                "unknown network mode `{other}`: expected none, internet or host"
            )),
        }
    }
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Internet => "internet",
            Self::Host => "host",
        }
    }
}

/// What the sandbox of one build holds.
#[derive(Debug, Clone)]
pub struct Config {
    /// The build's private folder: upper layers, the build's HOME and /tmp live here.
    pub scratch: PathBuf,
    /// Read-write at their real paths (the workspace, the shell session's folder, `--writable`).
    pub writable: Vec<PathBuf>,
    /// Read-only at their real paths (`--expose`, kiln's helper programs).
    pub expose: Vec<PathBuf>,
    /// Copy-on-write at their real paths: toolchains in homes (see [`mounts::Layout::toolchains`]).
    pub toolchains: Vec<PathBuf>,
    /// Read-only even inside a read-write folder (the `.git` of an `--in-place` build).
    pub protect: Vec<PathBuf>,
    /// Hidden wherever the host's root would show them (kiln's folders, the secrets file).
    pub hide: Vec<PathBuf>,
    pub network: Network,
    /// `RLIMIT_AS` of every program, when given.
    pub memory: Option<u64>,
    /// `RLIMIT_NPROC` of the build's user in its own user namespace.
    pub pids: u64,
    /// `--disk-limit`: also the most the private layers may hold when they are in memory.
    pub disk_limit: Option<u64>,
}

/// Why a sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("kiln could not set up the build's sandbox: {0}")]
pub struct SandboxError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError(format!("{what}: {e}"))
}

/// Where the build's ids start outside when kiln runs as root: one of 32768 ranges of 65536 ids,
/// drawn at random, above what distributions hand to users, to rootless containers (subordinate
/// ids) and to systemd-nspawn (up to 0x6FFF_FFFF), and below the overflow ids.
fn uid_base(draw: u64) -> u32 {
    0x7000_0000 + ((draw % 0x8000) as u32) * 0x1_0000
}

struct Waiters {
    map: HashMap<u64, oneshot::Sender<Reply>>,
    closed: bool,
}

/// A running sandbox. Dropping it ends every process in it.
pub struct OsSandbox {
    sock: Arc<OwnedFd>,
    send: Mutex<()>,
    waiters: Arc<Mutex<Waiters>>,
    next: AtomicU64,
    launcher: Mutex<Option<std::process::Child>>,
    pasta: Mutex<PastaState>,
    /// What was set up differently than asked (a folder left read-only, no user-mode network).
    pub warnings: Vec<String>,
    /// Whether the build's root is an unprivileged id outside (kiln runs as root).
    pub idmapped: bool,
    /// The network the build got.
    pub network: Network,
    /// The folder of the private layers, as the launcher mounted it (a tmpfs, or the scratch
    /// folder's own disk).
    layer: Option<OwnedFd>,
}

impl OsSandbox {
    /// Starts the launcher and sets the sandbox up.
    pub fn start(config: &Config) -> Result<Self, SandboxError> {
        let started = std::time::Instant::now();
        let lap = |what: &str| tracing::debug!("sandbox: {what} after {:?}", started.elapsed());
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let top = mounts::top_level();
        let points = mounts::mount_points();
        // The build's root owns the host's root-owned files (that is what lets it install packages),
        // so root's private files must not come through the overlay: found while the launcher starts.
        let private = root.then(|| std::thread::spawn(private_files));
        let layer_files =
            prepare_scratch(&config.scratch).map_err(|e| err("preparing its folders", e))?;
        lap("folders prepared");

        let (ours, theirs) = wire::socketpair().map_err(|e| err("socketpair", e))?;
        let child_fd = theirs.as_raw_fd();
        // kiln's own program, through /proc: it runs even after a rebuild replaced the file.
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("__launcher")
            .args((config.network != Network::Host).then_some("net"))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls dup2/fcntl/close_range on
        // descriptors.
        unsafe {
            cmd.pre_exec(move || {
                if child_fd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(child_fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Whatever kiln itself inherited (a CI runner's pipes, log files) stays out.
                libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| err("starting the launcher", e))?;
        lap("launcher spawned");
        drop(theirs);
        let pid = child.id();
        let mut sandbox = Self {
            sock: Arc::new(ours),
            send: Mutex::new(()),
            waiters: Arc::new(Mutex::new(Waiters {
                map: HashMap::new(),
                closed: false,
            })),
            next: AtomicU64::new(1),
            launcher: Mutex::new(Some(child)),
            pasta: Mutex::new(PastaState::None),
            warnings: Vec::new(),
            idmapped: root,
            network: config.network,
            layer: None,
        };
        let sock = sandbox.sock.as_raw_fd();
        match wire::recv::<Reply>(sock) {
            Ok(Some((Reply::UserNs, _))) => {}
            Ok(Some((Reply::Failed { message }, _))) => return Err(SandboxError(message)),
            Ok(_) => return Err(SandboxError("the launcher ended before it started".into())),
            Err(e) => return Err(err("talking to the launcher", e)),
        }
        lap("launcher in its user namespace");
        write_maps(pid, root).map_err(|e| err("mapping the build's user ids", e))?;
        // pasta starts on the network namespace while the launcher sets the filesystem up.
        let pasta =
            (config.network == Network::Internet).then(|| start_pasta(pid, root, &config.scratch));

        let mut writable = config.writable.clone();
        writable.sort();
        writable.dedup();
        let userns = if root {
            Some(
                std::fs::File::open(format!("/proc/{pid}/ns/user"))
                    .map_err(|e| err("opening the build's user namespace", e))?,
            )
        } else {
            None
        };
        let ns = userns.as_ref().map(AsRawFd::as_raw_fd);
        let (expose, mut expose_fds) = readonly_clones(&config.expose, ns)
            .map_err(|e| err("showing a folder read-only", e))?;
        let (toolchains, mut toolchain_fds) =
            readonly_clones(&config.toolchains, ns).map_err(|e| err("showing a toolchain", e))?;
        let private = match private {
            Some(finder) => finder
                .join()
                .map_err(|_| SandboxError("looking for the host's private files failed".into()))?,
            None => Vec::new(),
        };
        lap("private files found");
        let layout = Layout {
            scratch: &config.scratch,
            idmapped: root,
            writable: &writable,
            expose: &expose,
            toolchains: &toolchains,
            protect: &config.protect,
            hide: &config.hide,
            top: &top,
            mount_points: &points,
            own_network: config.network != Network::Host,
            layer_size: config.disk_limit.filter(|bytes| *bytes > 0),
            private: &private,
            layer_files: &layer_files,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Some(userns) = &userns {
            let ns = userns.as_raw_fd();
            fds.push(
                mounts::idmapped_clone(Path::new("/"), ns, true)
                    .map_err(|e| err("idmapping the host's root", e))?,
            );
            fds.push(
                mounts::idmapped_clone(&config.scratch, ns, false)
                    .map_err(|e| err("idmapping the build's folder", e))?,
            );
            for path in layout.attached() {
                fds.push(
                    mounts::idmapped_clone(path, ns, false)
                        .map_err(|e| err("idmapping a writable folder", e))?,
                );
            }
            // After the writable ones, in `expose`'s order, as the plan numbers them.
            fds.append(&mut expose_fds);
            fds.append(&mut toolchain_fds);
        }
        let mut plan = layout.plan();
        plan.hostname = "kiln".into();
        plan.pids = config.pids;
        plan.memory = config.memory;
        // `KILN_SESSION_SHELL=0` starts each command's `sh` anew (to compare, or to rule it out).
        plan.session_shell = std::env::var_os("KILN_SESSION_SHELL").is_none_or(|v| v != "0");
        lap("plan and idmapped mounts ready");
        let raw: Vec<_> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        wire::send(sock, &Request::Setup { plan }, &raw)
            .map_err(|e| err("talking to the launcher", e))?;
        drop(fds);
        match wire::recv::<Reply>(sock) {
            Ok(Some((Reply::Ready { warnings }, fds))) => {
                sandbox.warnings = warnings;
                sandbox.layer = fds.into_iter().next();
            }
            Ok(Some((Reply::Failed { message }, _))) => return Err(SandboxError(message)),
            Ok(_) => return Err(SandboxError("the launcher ended while setting up".into())),
            Err(e) => return Err(err("talking to the launcher", e)),
        }
        lap("filesystem set up");
        // pasta finishes setting itself up on a thread of its own while the build goes on; the first
        // command waits for it (a build that runs none never does).
        if let Some(pasta) = pasta {
            let started = pasta.and_then(|(child, pidfile)| {
                std::thread::Builder::new()
                    .name("kiln-pasta".into())
                    .spawn(move || wait_pasta(child).map(|()| pidfile))
                    .map_err(|e| format!("pasta: {e}"))
            });
            match started {
                Ok(waiting) => {
                    *sandbox.pasta.get_mut().unwrap_or_else(|e| e.into_inner()) =
                        PastaState::Starting(waiting);
                }
                Err(why) => {
                    sandbox.network = Network::None;
                    sandbox.warnings.push(no_network(&why));
                }
            }
        }
        lap("ready");
        sandbox.spawn_reader()?;
        Ok(sandbox)
    }

    /// Reads the launcher's replies on the runtime's own reactor (no thread between a command's
    /// exit and the step waiting for it) and hands each to the command it is about.
    fn spawn_reader(&self) -> Result<(), SandboxError> {
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;
        struct Sock(Arc<OwnedFd>);
        impl AsRawFd for Sock {
            fn as_raw_fd(&self) -> i32 {
                self.0.as_raw_fd()
            }
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SandboxError(
                "the sandbox needs kiln's async runtime to wait for commands".into(),
            ));
        }
        // SAFETY: `Sock` holds the socket open for as long as the AsyncFd lives, and always
        // answers the same descriptor. Reads use MSG_DONTWAIT, so they never block the reactor.
        let afd =
            unsafe { AsyncFd::register_with_interest(Sock(self.sock.clone()), Interest::READABLE) }
                .map_err(|e| err("watching the launcher's socket", e.into_parts().1))?;
        let waiters = self.waiters.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            'read: loop {
                let Ok(mut ready) = afd.readable().await else {
                    break;
                };
                let read = ready.try_io(|sock| {
                    // SAFETY: reads into a live buffer of the given length, without blocking.
                    let n = unsafe {
                        libc::recv(
                            sock.get_ref().as_raw_fd(),
                            chunk.as_mut_ptr().cast(),
                            chunk.len(),
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                });
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    Err(_would_block) => continue,
                }
                let Ok(replies) = wire::take_frames::<Reply>(&mut buf) else {
                    break 'read;
                };
                for reply in replies {
                    let id = match &reply {
                        Reply::Exit { id, .. } | Reply::NotStarted { id, .. } => *id,
                        _ => continue,
                    };
                    let waiter = waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .map
                        .remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(reply);
                    }
                }
            }
            let mut w = waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.closed = true;
            w.map.clear();
        });
        Ok(())
    }

    fn request(&self, request: &Request, fds: &[i32]) -> io::Result<()> {
        let _guard = self.send.lock().unwrap_or_else(|e| e.into_inner());
        wire::send(self.sock.as_raw_fd(), request, fds)
    }

    /// What the private layers hold, in bytes, when they are in memory (on disk, they are files of
    /// the scratch folder and counted with it).
    pub fn layer_usage(&self) -> Option<u64> {
        const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
        let fd = self.layer.as_ref()?;
        // SAFETY: fstatfs fills a statfs struct for a live descriptor.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0
            || st.f_type as libc::c_long != TMPFS_MAGIC
        {
            return None;
        }
        Some((st.f_blocks - st.f_bfree) as u64 * st.f_bsize as u64)
    }

    /// Whether the private layers are in memory (a tmpfs) rather than on the scratch folder's disk.
    pub fn layer_in_memory(&self) -> bool {
        self.layer_usage().is_some()
    }

    /// Kills every process of the build (a step ran out of time, the disk limit was hit).
    pub fn kill_all(&self) {
        let _ = self.request(&Request::KillAll, &[]);
    }

    /// Runs a program in the sandbox to its end or to `deadline`, streaming its output to `log`.
    /// At the deadline, every process of the build is killed (a `setsid` daemon too).
    pub async fn run(
        &self,
        spec: &ProcessSpec,
        deadline: Option<Instant>,
        log: Arc<dyn LogSink>,
    ) -> io::Result<ProcessExit> {
        if let Some(why) = self.network_ready() {
            log.plugin(super::Level::Warn, &no_network(&why));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (out_r, out_w) = wire::pipe(0)?;
        let (err_r, err_w) = wire::pipe(0)?;
        let stdin = match &spec.stdin {
            Some(bytes) => Some((wire::pipe(0)?, bytes.clone())),
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if w.closed {
                return Err(io::Error::other("the build's sandbox has ended"));
            }
            w.map.insert(id, tx);
        }
        let mut fds = vec![out_w.as_raw_fd(), err_w.as_raw_fd()];
        if let Some(((r, _), _)) = &stdin {
            fds.push(r.as_raw_fd());
        }
        self.request(
            &Request::Run {
                id,
                argv: spec.argv.clone(),
                env: spec.env.clone(),
                cwd: spec.cwd.clone(),
                run_as: spec.run_as,
                stdin: stdin.is_some(),
                merge: !spec.capture_stdout && !log.separates_streams(),
            },
            &fds,
        )?;
        drop((out_w, err_w));
        let mut guard = KillGuard {
            sandbox: self,
            armed: true,
        };
        if let Some(((r, w), bytes)) = stdin {
            drop(r);
            let mut sender = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
            tokio::spawn(async move {
                let _ = sender.write_all(&bytes).await;
            });
        }
        let stdout = {
            let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r)?;
            let log = log.clone();
            let capture = spec.capture_stdout;
            tokio::spawn(
                async move { super::process::pump(reader, Stream::Stdout, log, capture).await },
            )
        };
        let stderr = {
            let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r)?;
            tokio::spawn(super::process::pump(reader, Stream::Stderr, log, false))
        };
        let mut timed_out = false;
        let reply = match deadline {
            Some(deadline) => {
                tokio::pin!(rx);
                tokio::select! {
                    reply = &mut rx => reply,
                    _ = tokio::time::sleep_until(deadline) => {
                        timed_out = true;
                        self.kill_all();
                        rx.await
                    }
                }
            }
            None => rx.await,
        };
        guard.armed = false;
        let captured = super::process::finish(stdout).await;
        super::process::finish(stderr).await;
        match reply {
            Ok(Reply::Exit { code, signal, .. }) => Ok(ProcessExit {
                code,
                signal,
                timed_out,
                stdout: captured,
            }),
            Ok(Reply::NotStarted {
                message, not_found, ..
            }) => Err(io::Error::new(
                if not_found {
                    io::ErrorKind::NotFound
                } else {
                    io::ErrorKind::Other
                },
                message,
            )),
            Ok(_) | Err(_) => Err(io::Error::other(
                "the build's sandbox ended while the command ran",
            )),
        }
    }
}

/// Kills the build's processes when a command's future is dropped before it finished (Ctrl-C, a
/// cancelled build).
struct KillGuard<'a> {
    sandbox: &'a OsSandbox,
    armed: bool,
}

impl Drop for KillGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sandbox.kill_all();
        }
    }
}

impl OsSandbox {
    /// Ends every process of the build and waits for the sandbox to be gone (also when dropped;
    /// calling it first makes sure it happens now, whoever else still holds the sandbox).
    pub fn shutdown(&self) {
        let started = std::time::Instant::now();
        // SAFETY: shuts the socket down for both sides; init sees the end of the stream and exits,
        // taking every process of its pid namespace with it.
        unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(mut child) = self
            .launcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = child.wait();
        }
        // The namespace is gone with init: a pasta still setting up fails at once.
        let _ = self.network_ready();
        let running = std::mem::replace(
            &mut *self.pasta.lock().unwrap_or_else(|e| e.into_inner()),
            PastaState::None,
        );
        if let PastaState::Running(pidfile) = running
            && let Ok(text) = std::fs::read_to_string(&pidfile)
            && std::fs::remove_file(&pidfile).is_ok()
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            // SAFETY: signals the pasta process kiln started for this build.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        tracing::debug!("sandbox: ended after {:?}", started.elapsed());
    }
}

impl Drop for OsSandbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// As root (`userns` given), read-only clones kiln opens itself of `paths` (a toolchain in /root,
/// which the launcher's id outside cannot enter), with the paths that are there; rootless, the
/// paths as they are, for the launcher to bind.
fn readonly_clones(
    paths: &[PathBuf],
    userns: Option<RawFd>,
) -> io::Result<(Vec<PathBuf>, Vec<OwnedFd>)> {
    let Some(ns) = userns else {
        return Ok((paths.to_vec(), Vec::new()));
    };
    let (mut shown, mut fds) = (Vec::new(), Vec::new());
    for path in paths {
        match mounts::readonly_clone(path, ns) {
            Ok(fd) => {
                shown.push(path.clone());
                fds.push(fd);
            }
            // What is not there is not shown.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok((shown, fds))
}

/// Writes the launcher's id maps: the build's 0..65535 to an unused range when kiln is root, the
/// build's 0 to kiln's own ids otherwise.
fn write_maps(pid: u32, root: bool) -> io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if root {
        let draw = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(pid);
            h.finish()
        };
        let base = uid_base(draw);
        std::fs::write(proc.join("uid_map"), format!("0 {base} 65536\n"))?;
        std::fs::write(proc.join("gid_map"), format!("0 {base} 65536\n"))?;
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        std::fs::write(proc.join("uid_map"), format!("0 {uid} 1\n"))?;
        std::fs::write(proc.join("setgroups"), "deny")?;
        std::fs::write(proc.join("gid_map"), format!("0 {gid} 1\n"))?;
    }
    Ok(())
}

/// Makes the folders the plan uses (the build's HOME and /tmp, where the host's root and the
/// scratch folder are attached, the folder of the private layers); returns the files the layers
/// start with: password-less copies of the shadow files, and resolv.conf where it links into `/run`.
fn prepare_scratch(scratch: &Path) -> io::Result<Vec<mounts::LayerFile>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for dir in ["root", "home", "tmp", "layers", "mnt/root", "mnt/scratch"] {
        std::fs::create_dir_all(scratch.join(dir))?;
    }
    std::fs::set_permissions(scratch.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::set_permissions(scratch.join("home"), std::fs::Permissions::from_mode(0o700))?;
    let mut files = Vec::new();
    for name in ["shadow", "gshadow", "shadow-", "gshadow-"] {
        let host = Path::new("/etc").join(name);
        if let Ok(meta) = std::fs::symlink_metadata(&host) {
            let text = std::fs::read_to_string(&host).unwrap_or_default();
            files.push(mounts::LayerFile {
                path: host,
                text: without_hashes(&text),
                mode: 0o640,
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
    }
    // A resolv.conf that links into the host's /run (systemd-resolved) would dangle: the build
    // has its own /run. Its contents are copied instead.
    let resolv = Path::new("/etc/resolv.conf");
    if std::fs::symlink_metadata(resolv).is_ok_and(|m| m.file_type().is_symlink())
        && let Ok(text) = std::fs::read_to_string(resolv)
    {
        files.push(mounts::LayerFile {
            path: resolv.to_path_buf(),
            text,
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
    }
    Ok(files)
}

/// Where the host keeps root's private files (keys, credentials, backups of the password files),
/// searched to the given depth.
const PRIVATE_PLACES: &[(&str, usize)] = &[
    ("/etc", 8),
    ("/var", 4),
    ("/usr/local/etc", 4),
    ("/opt", 3),
    ("/srv", 3),
    ("/boot", 2),
    ("/mnt", 3),
    ("/media", 3),
];

/// Finds what only the host's root may read in [`PRIVATE_PLACES`] (this runs while the launcher
/// starts). Private folders are not entered, nor other file systems.
fn private_files() -> Vec<mounts::Private> {
    use rayon::prelude::*;
    use std::os::unix::fs::MetadataExt;
    PRIVATE_PLACES
        .par_iter()
        .flat_map_iter(|(place, depth)| {
            let mut found = Vec::new();
            if let Ok(meta) = std::fs::symlink_metadata(place)
                && meta.is_dir()
            {
                find_private(Path::new(place), meta.dev(), *depth, &mut found);
            }
            found
        })
        .collect()
}

/// [`private_files`] below `dir`, `depth` levels down. Each entry is looked at relative to its
/// folder (no path walk per file): `/var/lib/dpkg/info` holds thousands.
fn find_private(dir: &Path, dev: u64, depth: usize, found: &mut Vec<mounts::Private>) {
    use std::os::unix::fs::MetadataExt;
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
    let look = |entry: &std::fs::DirEntry| -> Vec<mounts::Private> {
        let Ok(meta) = entry.metadata() else {
            return Vec::new();
        };
        if meta.dev() != dev {
            return Vec::new();
        }
        let dir = meta.is_dir();
        // Whoever owns it: the build's root owns what the host's root owns, and a `run-as` user of
        // the build is the host's user of that id.
        let private = if dir {
            meta.mode() & 0o001 == 0
        } else {
            meta.is_file() && meta.mode() & 0o004 == 0
        };
        let path = entry.path();
        if private {
            return vec![mounts::Private {
                path,
                dir,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            }];
        }
        let mut below = Vec::new();
        if dir {
            find_private(&path, dev, depth - 1, &mut below);
        }
        below
    };
    // One core for a folder's entries: spreading a large one over both starved kiln's own thread,
    // which starts the launcher meanwhile, on a 2-core machine (set-up 21 ms against 13-16 ms).
    found.extend(entries.iter().flat_map(look));
}

/// A shadow or gshadow file with every password field replaced by `*` (no login, no hash).
fn without_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.split_once(':') {
            Some((name, rest)) => {
                let rest = rest.split_once(':').map_or("", |(_, r)| r);
                out.push_str(name);
                out.push_str(":*:");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Starts pasta for the launcher's network namespace: outbound connections only (no port
/// forwarding either way, the gateway address not mapped to the host). Returns the process, which
/// exits once pasta is set up and runs on in the background, and its pid file.
///
/// The namespaces are handed over as open descriptors (pasta opens `/proc/self/fd/N`): pasta drops
/// its privileges before it joins them, and could not open another user's `/proc/PID/ns` then.
fn start_pasta(pid: u32, root: bool, scratch: &Path) -> Result<(Pasta, PathBuf), String> {
    let pasta =
        probe::find_on_path("pasta").ok_or("pasta is not installed (Debian's package `passt`)")?;
    let pidfile = scratch.join("pasta.pid");
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(|e| format!("cannot open the build's user namespace: {e}"))?;
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("cannot open the build's network namespace: {e}"))?;
    let (u, n) = (userns.as_raw_fd(), netns.as_raw_fd());
    let mut cmd = std::process::Command::new(pasta);
    cmd.args(["--quiet", "--config-net", "--no-map-gw"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        .args(["--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4"])
        .arg("-P")
        .arg(&pidfile);
    if root {
        cmd.args(["--runas", "0"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only duplicates descriptors.
    unsafe {
        cmd.pre_exec(move || {
            // Through a free number first, so that neither target overwrites the other's source.
            let (u2, n2) = (libc::dup(u), libc::dup(n));
            if u2 < 0 || n2 < 0 || libc::dup2(u2, 3) < 0 || libc::dup2(n2, 4) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("pasta: {e}"))?;
    Ok((Pasta(Some(child)), pidfile))
}

/// Stops the pasta of the build whose scratch folder this is, if it still runs: a kiln killed with
/// SIGKILL cannot stop it, and pasta does not end with the namespace it serves. Only the process that
/// its pid file names and whose command line names that pid file is signalled (a pid may have been
/// reused since).
fn stop_leftover_pasta(scratch: &Path) {
    let Ok(pidfile) = scratch.join("pasta.pid").canonicalize() else {
        return;
    };
    let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
    else {
        return;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == pidfile.as_os_str().as_encoded_bytes());
    if ours {
        // SAFETY: signals the pasta process this build started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Why a build got no network, as a warning.
fn no_network(why: &str) -> String {
    format!("the build has no network: {why} (--network host gives it the host's network)")
}

/// The build's pasta: none, setting itself up (waited for on a thread), or running (its pid file).
enum PastaState {
    None,
    Starting(std::thread::JoinHandle<Result<PathBuf, String>>),
    Running(PathBuf),
}

impl OsSandbox {
    /// Waits for pasta to be set up, if it is still setting up: why the build has no network when it
    /// could not be.
    fn network_ready(&self) -> Option<String> {
        let mut state = self.pasta.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, PastaState::Starting(_)) {
            return None;
        }
        let PastaState::Starting(waiting) = std::mem::replace(&mut *state, PastaState::None) else {
            return None;
        };
        match waiting.join() {
            Ok(Ok(pidfile)) => {
                *state = PastaState::Running(pidfile);
                None
            }
            Ok(Err(why)) => Some(why),
            Err(_) => Some("pasta: waiting for it failed".to_string()),
        }
    }
}

/// pasta while it sets itself up: killed if the sandbox fails before it is waited for.
struct Pasta(Option<std::process::Child>);

impl Drop for Pasta {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for pasta to be set up.
fn wait_pasta(mut pasta: Pasta) -> Result<(), String> {
    let Some(child) = pasta.0.take() else {
        return Ok(());
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("pasta: {e}"))?;
    if !out.status.success() {
        // pasta also says on stderr that it has no syslog: only its own complaint is worth showing.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("to syslog") && !l.trim().is_empty())
            .collect();
        return Err(format!("pasta failed: {}", why.join("; ")));
    }
    Ok(())
}

/// Removes a build's scratch folder, making folders the build left unreadable (an overlay's work
/// folder, `chmod 000` in the workspace) removable first.
pub fn remove_scratch(path: &Path) {
    use rayon::prelude::*;
    stop_leftover_pasta(path);
    // Its folders (workspace, layers, HOME, /tmp) side by side: removing is disk latency.
    let entries: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.par_iter().for_each(|entry| {
        let _ = match std::fs::symlink_metadata(entry) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(entry),
            _ => std::fs::remove_file(entry),
        };
    });
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = std::fs::remove_dir_all(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_copies_keep_users_and_lose_hashes() {
        let text = "root:$y$j9T$abc$def:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n";
        let out = without_hashes(text);
        assert_eq!(out, "root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n");
        assert!(!out.contains('$'));
    }

    #[test]
    fn network_modes_parse() {
        assert_eq!("none".parse::<Network>(), Ok(Network::None));
        assert_eq!("host".parse::<Network>(), Ok(Network::Host));
        assert!(
            "wifi"
                .parse::<Network>()
                .unwrap_err()
                .contains("none, internet or host")
        );
    }

    #[test]
    fn id_ranges_stay_between_nspawn_and_the_overflow_ids() {
        for draw in [0, 1, 0x7fff, 0x8000, u64::MAX] {
            let base = uid_base(draw);
            assert!(base >= 0x7000_0000);
            assert!(base as u64 + 65_536 <= 0xF000_0000);
        }
        assert_ne!(uid_base(1), uid_base(2));
    }
}
