//! What this host lets the OS sandbox use, found by trying it: `kiln doctor` prints it, and the sandbox
//! picks the kind of confinement a build gets from it.
//!
//! Each probe does what the sandbox will do, in miniature, and when it cannot, says why: the kernel
//! setting that refuses (`kernel.unprivileged_userns_clone = 0`...), the missing kernel feature, the
//! program that is not on `PATH`. Probes that need namespaces run in a forked child, so the calling
//! process never changes namespace and is left exactly as it was. The caller may be multi-threaded
//! (the async runtime, the test harness), and another thread may hold the allocator's lock at the
//! moment of the fork, so a child only makes system calls on data prepared before the fork (paths, map
//! lines, buffers) and ends with `_exit`; it reports the step that failed as its exit code and the
//! errno through a pipe.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line of `kiln doctor`: a probe and its outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was probed ("user namespaces", "cgroup v2 delegation"...).
    pub name: &'static str,
    /// Whether the sandbox can use it.
    pub ok: bool,
    /// A version or a path when it works; why not when it does not.
    pub detail: String,
}

/// The cgroup v2 directory a build's cgroup would be created under.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CgroupInfo {
    /// This process's cgroup directory, under the unified (cgroup v2) mount.
    pub path: PathBuf,
    /// The controllers available in it (its `cgroup.controllers`): the ones a child cgroup can get.
    pub controllers: Vec<String>,
    /// Whether this process may create a child cgroup there.
    pub writable: bool,
}

/// Everything `kiln doctor` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The kernel's name and release, from uname.
    pub kernel: String,
    /// Whether kiln runs as root (which gives builds an idmapped root rather than the caller's uid).
    pub root: bool,
    /// One entry per probe, in the order they are printed.
    pub checks: Vec<Check>,
    /// Which sandbox a build gets here, and why not a stronger one.
    pub sandbox: String,
    /// What `--network internet` uses here.
    pub network: String,
}

/// The sandbox a build gets as root when namespaces, overlayfs and idmapped mounts all work.
const SANDBOX_IDMAPPED: &str =
    "namespaces (idmapped root: the build's root is an unprivileged id outside)";
/// The sandbox a build gets without root when namespaces and overlayfs work.
const SANDBOX_ROOTLESS: &str = "namespaces (rootless: the build's root is your own uid)";
/// What internet mode does when no user-mode network stack is installed.
const NETWORK_NONE: &str =
    "none available: internet mode falls back to the host's network namespace";
/// What every network mode amounts to when builds get no namespaces at all.
const NETWORK_NO_NAMESPACES: &str =
    "the host's network (builds get no network namespace without the namespace sandbox)";

/// How long a probe's child may take: probes take milliseconds, this only guards against a hung mount.
const CHILD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a helper program may take to print its version.
const HELPER_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a helper's output that is read for its version line.
const HELPER_OUTPUT_MAX: usize = 4096;

/// The first outside id of the range the idmapped-mount probe maps the build's ids 0..65535 to. Nothing
/// is written through the probe's mount, so the range need not be reserved for kiln.
const PROBE_ID_BASE: u32 = 100_000;
/// How many ids the idmapped-mount probe maps, as the sandbox does.
const PROBE_ID_COUNT: u32 = 65_536;

use super::mounts::{MOUNT_ATTR_IDMAP, MountAttr, OPEN_TREE_CLONE};
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;

/// A step of a probe's child: its exit code when it fails, and what the parent calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    UserNs = 1,
    Setgroups,
    UidMap,
    GidMap,
    MountNs,
    PidNs,
    IpcNs,
    UtsNs,
    NetNs,
    CgroupNs,
    PrivateMounts,
    Tmpfs,
    Chdir,
    Mkdir,
    LowerFile,
    Overlay,
    WriteNew,
    CopyUp,
    Upper,
    UserXattr,
}

/// Every step, to turn an exit code back into its step.
const STEPS: [Step; 20] = [
    Step::UserNs,
    Step::Setgroups,
    Step::UidMap,
    Step::GidMap,
    Step::MountNs,
    Step::PidNs,
    Step::IpcNs,
    Step::UtsNs,
    Step::NetNs,
    Step::CgroupNs,
    Step::PrivateMounts,
    Step::Tmpfs,
    Step::Chdir,
    Step::Mkdir,
    Step::LowerFile,
    Step::Overlay,
    Step::WriteNew,
    Step::CopyUp,
    Step::Upper,
    Step::UserXattr,
];

/// The namespaces the launcher creates inside its user namespace, each with its step.
const NAMESPACES: [(Step, libc::c_int); 6] = [
    (Step::MountNs, libc::CLONE_NEWNS),
    (Step::PidNs, libc::CLONE_NEWPID),
    (Step::IpcNs, libc::CLONE_NEWIPC),
    (Step::UtsNs, libc::CLONE_NEWUTS),
    (Step::NetNs, libc::CLONE_NEWNET),
    (Step::CgroupNs, libc::CLONE_NEWCGROUP),
];

impl Step {
    fn from_code(code: i32) -> Option<Step> {
        STEPS.iter().copied().find(|step| *step as i32 == code)
    }

    /// What the step does, as an error message names it.
    fn describe(self) -> &'static str {
        match self {
            Step::UserNs => "unshare(CLONE_NEWUSER)",
            Step::Setgroups => "writing \"deny\" to /proc/self/setgroups",
            Step::UidMap => "writing /proc/self/uid_map",
            Step::GidMap => "writing /proc/self/gid_map",
            Step::MountNs => "unshare(CLONE_NEWNS)",
            Step::PidNs => "unshare(CLONE_NEWPID)",
            Step::IpcNs => "unshare(CLONE_NEWIPC)",
            Step::UtsNs => "unshare(CLONE_NEWUTS)",
            Step::NetNs => "unshare(CLONE_NEWNET)",
            Step::CgroupNs => "unshare(CLONE_NEWCGROUP)",
            Step::PrivateMounts => "making the mounts private",
            Step::Tmpfs => "mounting a tmpfs",
            Step::Chdir => "entering the tmpfs",
            Step::Mkdir => "creating the overlay's directories",
            Step::LowerFile => "creating a file in the lower directory",
            Step::Overlay => "mounting overlayfs",
            Step::WriteNew => "creating a file through the overlay",
            Step::CopyUp => "writing to a lower file through the overlay (copy-up)",
            Step::Upper => "finding the written files in the upper directory",
            Step::UserXattr => "setting a user.* attribute on a tmpfs",
        }
    }

    /// Whether the step creates a namespace or maps ids into one: where a refusal comes from the
    /// kernel's namespace settings.
    fn sets_up_namespaces(self) -> bool {
        matches!(self, Step::Setgroups | Step::UidMap | Step::GidMap) || self.namespace().is_some()
    }

    /// For a namespace step: the kind of namespace and the sysctl that limits how many there may be.
    fn namespace(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Step::UserNs => ("user", "max_user_namespaces"),
            Step::MountNs => ("mount", "max_mnt_namespaces"),
            Step::PidNs => ("pid", "max_pid_namespaces"),
            Step::IpcNs => ("ipc", "max_ipc_namespaces"),
            Step::UtsNs => ("uts", "max_uts_namespaces"),
            Step::NetNs => ("net", "max_net_namespaces"),
            Step::CgroupNs => ("cgroup", "max_cgroup_namespaces"),
            _ => return None,
        })
    }
}

/// A step of a probe's child that failed, and the errno it failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepFailed {
    step: Step,
    errno: i32,
}

/// The calling thread's errno. Safe in a forked child: it allocates nothing.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Turns the return value of a system call into its errno when it failed.
fn sys(ret: libc::c_int) -> Result<(), i32> {
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// Attributes an errno to a step.
fn at(step: Step) -> impl Fn(i32) -> StepFailed {
    move |errno| StepFailed { step, errno }
}

/// The text of an errno, without the "(os error N)" that io::Error appends.
fn errno_text(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Whether kiln runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Forks a probe's child: 0 in the child, its pid in the parent. The child must do only system
/// calls on data prepared before the fork, and end with `_exit` (each caller says why it does).
fn fork() -> Result<libc::pid_t, String> {
    // SAFETY: fork itself touches no memory; what the child may do is each caller's promise above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "kiln could not fork its probe: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(pid)
}

/// A pipe, both ends close-on-exec, with `flags` added (O_NONBLOCK).
fn pipe(flags: libc::c_int) -> Result<(OwnedFd, OwnedFd), String> {
    super::wire::pipe(flags).map_err(|e| format!("kiln could not create a pipe: {e}"))
}

/// Reads one errno (4 bytes) from a non-blocking pipe, if the other end wrote one.
fn read_errno(fd: &OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    // SAFETY: reads at most 4 bytes into a live array of 4 bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    (n == 4).then(|| i32::from_ne_bytes(bytes))
}

/// Writes an errno (4 bytes) to a pipe. Safe in a forked child: only write(2).
fn write_errno(fd: RawFd, errno: i32) {
    let bytes = errno.to_ne_bytes();
    // SAFETY: writes 4 bytes from a live array; a pipe takes 4 bytes in one write.
    unsafe {
        libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    }
}

/// Kills a forked child and reaps it.
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signals our own child, which has not been reaped yet, so the pid is still ours.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child, writing its status into a live integer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || errno() != libc::EINTR {
            return;
        }
    }
}

/// Waits for a forked child, killing it after `CHILD_TIMEOUT`, and returns its wait status.
fn wait_child(pid: libc::pid_t) -> Result<libc::c_int, String> {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut pause = Duration::from_micros(50);
    loop {
        let mut status = 0;
        // SAFETY: polls our own child, writing its status into a live integer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(format!(
                "kiln could not wait for its probe: {}",
                errno_text(e)
            ));
        }
        if Instant::now() >= deadline {
            kill_and_reap(pid);
            return Err(format!(
                "the probe did not finish within {} s",
                CHILD_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Runs `body` in a forked child and returns the step it failed at, if any.
///
/// `body` runs in a copy of a possibly multi-threaded process, so it must only make system calls on
/// data prepared before the call: no allocation, no lock, no panic. The outer error is about the probe
/// itself (no fork, a child that hung or was killed).
fn run_in_child(
    body: impl FnOnce() -> Result<(), StepFailed>,
) -> Result<Result<(), StepFailed>, String> {
    let (read_end, write_end) = pipe(libc::O_NONBLOCK)?;
    // SAFETY (of the fork): the child only runs `body` (system calls on data prepared before the
    // fork, as its callers promise), writes to the pipe and calls _exit, so it takes no lock another
    // thread of the parent may have held at the fork.
    let pid = fork()?;
    if pid == 0 {
        let code = match body() {
            Ok(()) => 0,
            Err(failed) => {
                write_errno(write_end.as_raw_fd(), failed.errno);
                failed.step as i32
            }
        };
        // SAFETY: ends the child at once, running none of the parent's destructors or exit handlers.
        unsafe { libc::_exit(code) }
    }
    drop(write_end);
    let status = wait_child(pid)?;
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "the probe was killed by signal {}",
            libc::WTERMSIG(status)
        ));
    }
    let code = libc::WEXITSTATUS(status);
    if code == 0 {
        return Ok(Ok(()));
    }
    let step = Step::from_code(code)
        .ok_or_else(|| format!("the probe ended with an unknown status {code}"))?;
    Ok(Err(StepFailed {
        step,
        errno: read_errno(&read_end).unwrap_or(0),
    }))
}

/// Writes `data` to the file at `path` in one write(2), as /proc's map files require. Safe in a forked
/// child: system calls only.
fn write_file(path: &CStr, flags: libc::c_int, data: &[u8]) -> Result<(), i32> {
    // SAFETY: opens a NUL-terminated path; the mode is only used with O_CREAT.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC | flags,
            0o644,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: writes from a live buffer of the given length to the descriptor just opened.
    let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if written < 0 {
        Err(errno())
    } else if written as usize != data.len() {
        Err(libc::EIO)
    } else {
        Ok(())
    };
    // SAFETY: closes the descriptor opened above, used by nothing else.
    unsafe {
        libc::close(fd);
    }
    result
}

/// The map lines that make a new user namespace's root the caller's own ids, as a rootless sandbox
/// does: prepared before a fork so the child only writes them.
struct SelfMap {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl SelfMap {
    fn new() -> SelfMap {
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        SelfMap {
            uid_map: format!("0 {uid} 1").into_bytes(),
            gid_map: format!("0 {gid} 1").into_bytes(),
        }
    }

    /// In a forked child: enters a new user namespace whose root is the caller's own ids.
    fn enter(&self) -> Result<(), StepFailed> {
        // SAFETY: unshare only changes this (child) process's namespaces.
        sys(unsafe { libc::unshare(libc::CLONE_NEWUSER) }).map_err(at(Step::UserNs))?;
        write_file(c"/proc/self/setgroups", 0, b"deny").map_err(at(Step::Setgroups))?;
        write_file(c"/proc/self/uid_map", 0, &self.uid_map).map_err(at(Step::UidMap))?;
        write_file(c"/proc/self/gid_map", 0, &self.gid_map).map_err(at(Step::GidMap))?;
        Ok(())
    }
}

/// Reads a sysctl from /proc/sys (`kernel/unprivileged_userns_clone`), trimmed.
fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(path))
        .ok()
        .map(|value| value.trim().to_string())
}

/// Why the kernel refuses a namespace to this process with EPERM: the settings that do it, by name.
fn refusal_reason(root: bool) -> String {
    let mut reasons = Vec::new();
    if !root {
        // Debian's and older Ubuntu's switch, which only restricts unprivileged callers.
        if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
            reasons.push("kernel.unprivileged_userns_clone = 0".to_string());
        }
        // Ubuntu 23.10 and later: unconfined programs get a user namespace with no capabilities in it.
        if sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
            reasons.push("kernel.apparmor_restrict_unprivileged_userns = 1".to_string());
        }
    }
    if sysctl("user/max_user_namespaces").as_deref() == Some("0") {
        reasons.push("user.max_user_namespaces = 0".to_string());
    }
    if !reasons.is_empty() {
        return reasons.join(" and ");
    }
    let filtered = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Seccomp:").map(|v| v.trim() == "2"))
        })
        .unwrap_or(false);
    if filtered {
        "no kernel setting refuses it; a seccomp filter on this process (Seccomp: 2 in \
         /proc/self/status, as in a container) may"
            .to_string()
    } else {
        "no kernel setting refuses it; a container, a chroot or a security module (SELinux, \
         AppArmor) may"
            .to_string()
    }
}

/// Says why a step of a namespace or overlay probe failed, naming the kernel setting where one is to
/// blame.
fn explain(failed: StepFailed) -> String {
    let what = failed.step.describe();
    let text = errno_text(failed.errno);
    let why = match (failed.errno, failed.step.namespace()) {
        (libc::EPERM | libc::EACCES, _) if failed.step.sets_up_namespaces() => {
            Some(refusal_reason(is_root()))
        }
        (libc::ENOSPC, Some((_, limit))) => Some(match sysctl(&format!("user/{limit}")) {
            Some(value) if value == "0" => format!("user.{limit} = 0"),
            Some(value) => format!("user.{limit} = {value} is reached"),
            None => format!("user.{limit} is reached"),
        }),
        (libc::EINVAL, Some((kind, _))) => {
            Some(format!("this kernel was built without {kind} namespaces"))
        }
        (libc::EUSERS, _) => Some("user namespaces are nested 32 deep already".to_string()),
        (libc::ENODEV, _) if failed.step == Step::Overlay => {
            Some("this kernel has no overlayfs (CONFIG_OVERLAY_FS; modprobe overlay)".to_string())
        }
        (libc::EOPNOTSUPP, _) if failed.step == Step::UserXattr => Some(format!(
            "tmpfs keeps user.* attributes from Linux 6.6 on, and this is {}",
            uname().1
        )),
        (libc::EPERM | libc::EINVAL, _)
            if failed.step == Step::Overlay && kernel_version().is_some_and(|v| v < (5, 11)) =>
        {
            Some(format!(
                "overlayfs can be mounted in a user namespace from Linux 5.11 on, and this is {}",
                uname().1
            ))
        }
        _ => None,
    };
    match why {
        Some(why) => format!("{what}: {text}; {why}"),
        None => format!("{what}: {text}"),
    }
}

/// Whether this process can create a user namespace and, in it, the mount, pid, ipc, uts, net and
/// cgroup namespaces the launcher creates, with its root mapped to the caller's own ids. The error names
/// the step that failed and the kernel setting that refuses it.
pub fn user_namespaces() -> Result<(), String> {
    let map = SelfMap::new();
    let outcome = run_in_child(|| {
        map.enter()?;
        for (step, flag) in NAMESPACES {
            // SAFETY: unshare only changes this (child) process's namespaces.
            sys(unsafe { libc::unshare(flag) }).map_err(at(step))?;
        }
        Ok(())
    })?;
    outcome.map_err(explain)
}

/// Runs `then` in a child with its own user and mount namespaces (root mapped to the caller) on a
/// 1 MiB tmpfs mounted on a new temporary directory, whose NUL-terminated path it is given. Nothing
/// is mounted outside the child.
fn on_a_tmpfs_in_child(
    then: impl FnOnce(&CString) -> Result<(), StepFailed>,
) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".kiln-probe-")
        .tempdir()
        .map_err(|e| format!("kiln could not create a temporary directory: {e}"))?;
    let target = CString::new(dir.path().as_os_str().as_bytes())
        .map_err(|_| format!("the temporary directory {} has a NUL", dir.path().display()))?;
    let map = SelfMap::new();
    let outcome = run_in_child(|| {
        map.enter()?;
        // SAFETY: unshare only changes this (child) process's namespaces.
        sys(unsafe { libc::unshare(libc::CLONE_NEWNS) }).map_err(at(Step::MountNs))?;
        // SAFETY: a propagation change of the child's own mount namespace; the strings are
        // NUL-terminated and the null pointers are allowed for a propagation change.
        sys(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })
        .map_err(at(Step::PrivateMounts))?;
        // SAFETY: mounts a tmpfs in the child's own mount namespace; every string is NUL-terminated.
        sys(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=1m,mode=0755".as_ptr().cast(),
            )
        })
        .map_err(at(Step::Tmpfs))?;
        then(&target)
    })?;
    drop(dir);
    outcome.map_err(explain)
}

/// Whether overlayfs can be mounted, and written through, inside a user namespace, as a rootless
/// sandbox mounts the build's `/`: on a tmpfs of a child's own ([`on_a_tmpfs_in_child`]), a lower
/// directory (with a file in it), an upper and a work directory; the overlay of them gets a new file
/// and an append to the lower file (a copy-up), both of which must land in the upper directory.
pub fn overlay_in_user_namespace() -> Result<(), String> {
    on_a_tmpfs_in_child(|target| {
        // Relative paths from here on: the overlay's options then never need escaping.
        // SAFETY: changes the child's working directory to a NUL-terminated path.
        sys(unsafe { libc::chdir(target.as_ptr()) }).map_err(at(Step::Chdir))?;
        for name in [c"lower", c"upper", c"work", c"merged"] {
            // SAFETY: creates a directory at a NUL-terminated path.
            sys(unsafe { libc::mkdir(name.as_ptr(), 0o755) }).map_err(at(Step::Mkdir))?;
        }
        write_file(c"lower/file", libc::O_CREAT | libc::O_EXCL, b"lower\n")
            .map_err(at(Step::LowerFile))?;
        // SAFETY: mounts overlayfs in the child's own mount namespace; every string is NUL-terminated.
        sys(unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                c"merged".as_ptr(),
                c"overlay".as_ptr(),
                0,
                c"lowerdir=lower,upperdir=upper,workdir=work"
                    .as_ptr()
                    .cast(),
            )
        })
        .map_err(at(Step::Overlay))?;
        write_file(c"merged/new", libc::O_CREAT | libc::O_EXCL, b"new\n")
            .map_err(at(Step::WriteNew))?;
        write_file(c"merged/file", libc::O_APPEND, b"upper\n").map_err(at(Step::CopyUp))?;
        for name in [c"upper/new", c"upper/file"] {
            // SAFETY: checks that a NUL-terminated path exists.
            sys(unsafe { libc::access(name.as_ptr(), libc::F_OK) }).map_err(at(Step::Upper))?;
        }
        Ok(())
    })
}

/// Whether a build's private layers can live in memory: a tmpfs mounted in a user namespace keeps
/// the `user.*` attributes overlay stores its whiteouts and opaque folders in (Linux 6.6 and
/// later). Where it does not, the layers are folders of the build's scratch folder, on its disk.
pub fn layers_in_memory() -> Result<(), String> {
    on_a_tmpfs_in_child(|target| {
        // SAFETY: sets an attribute on a NUL-terminated path from a live 1-byte value.
        sys(unsafe {
            libc::setxattr(
                target.as_ptr(),
                c"user.kiln.probe".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        })
        .map_err(at(Step::UserXattr))
    })
}

/// A child process in a user namespace of its own, waiting to be killed: it keeps the namespace
/// alive until its descriptor is open.
struct NamespaceHolder {
    pid: libc::pid_t,
    /// Closing this lets the child end by itself, should the kill not reach it.
    _release: OwnedFd,
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        kill_and_reap(self.pid);
    }
}

/// Forks a child that creates a user namespace and waits; returns it once the namespace exists.
fn hold_user_namespace() -> Result<NamespaceHolder, String> {
    let (ready_read, ready_write) = pipe(libc::O_NONBLOCK)?;
    let (release_read, release_write) = pipe(0)?;
    // SAFETY (of the fork): the child only makes system calls (prctl, unshare, write, read) and
    // calls _exit, so it takes no lock another thread of the parent may have held at the fork.
    let pid = fork()?;
    if pid == 0 {
        // SAFETY: system calls on descriptors and a byte owned by this child; _exit ends it at once.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            let code = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                0
            } else {
                errno()
            };
            write_errno(ready_write.as_raw_fd(), code);
            if code == 0 {
                // Returns when the parent kills this child or closes its end (it ended).
                let mut byte = 0u8;
                libc::read(release_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            }
            libc::_exit(i32::from(code != 0))
        }
    }
    drop(ready_write);
    drop(release_read);
    let holder = NamespaceHolder {
        pid,
        _release: release_write,
    };
    let mut poll = libc::pollfd {
        fd: ready_read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: polls one live pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, millis) };
        if n > 0 {
            break;
        }
        if n == 0 {
            return Err(format!(
                "the probe did not create its user namespace within {} s",
                CHILD_TIMEOUT.as_secs()
            ));
        }
        if errno() != libc::EINTR {
            return Err(format!(
                "kiln could not wait for its probe: {}",
                io::Error::last_os_error()
            ));
        }
    }
    match read_errno(&ready_read) {
        Some(0) => Ok(holder),
        Some(errno) => Err(explain(StepFailed {
            step: Step::UserNs,
            errno,
        })),
        None => Err("the probe ended before creating its user namespace".to_string()),
    }
}

/// The mounts of this process, from /proc/self/mountinfo: the fields kiln needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    /// The directory of the filesystem this mount shows (`/` unless it is a bind mount or a cgroup
    /// namespace's view).
    root: PathBuf,
    mount_point: PathBuf,
    fstype: String,
}

/// Parses /proc/self/mountinfo, skipping lines it cannot read.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split(' ');
            let root = super::mounts::unescape(fields.nth(3)?);
            let mount_point = super::mounts::unescape(fields.next()?);
            let fstype = right.split(' ').next()?.to_string();
            Some(MountEntry {
                root,
                mount_point,
                fstype,
            })
        })
        .collect()
}

fn mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

/// The filesystem type of the mount at `point` (the topmost one, when several are stacked).
fn fstype_at(point: &str) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == Path::new(point))
        .map(|m| m.fstype)
}

/// The uid map of kiln's own user namespace, on one line, when it is not the host's (the identity map
/// of every id): kiln's root is then root in a container, not on the host.
fn nested_uid_map() -> Option<String> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    let lines: Vec<String> = map
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect();
    (lines != ["0 0 4294967295"]).then(|| lines.join(", "))
}

/// Says why an idmapped clone of `/` is refused.
fn explain_idmap(what: &str, errno: i32) -> String {
    let text = errno_text(errno);
    let why = match errno {
        libc::ENOSYS => Some(
            "this kernel has no open_tree or mount_setattr (idmapped mounts need Linux 5.12 or later)"
                .to_string(),
        ),
        libc::EINVAL => Some(format!(
            "the filesystem of / ({}) cannot be idmapped by this kernel",
            fstype_at("/").unwrap_or_else(|| "of unknown type".to_string())
        )),
        libc::EPERM => Some(match nested_uid_map() {
            Some(map) => format!(
                "kiln's root is itself in a user namespace (uid_map {map}), so it cannot idmap the \
                 host's mounts"
            ),
            None => "a security module or a seccomp filter refuses it".to_string(),
        }),
        _ => None,
    };
    match why {
        Some(why) => format!("{what}: {text}; {why}"),
        None => format!("{what}: {text}"),
    }
}

/// Whether an idmapped clone of the host's `/` can be made, as the sandbox gives one to a build run by
/// root: a child's user namespace maps the build's ids 0..65535 to an unprivileged range outside, and
/// `open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_IDMAP)` with it must succeed. The clone is
/// never attached anywhere and goes away with its descriptor. Only root can do this: the error is
/// "needs root" for anyone else.
pub fn idmapped_mounts() -> Result<(), String> {
    if !is_root() {
        return Err("needs root".to_string());
    }
    let holder = hold_user_namespace()?;
    let map = format!("0 {PROBE_ID_BASE} {PROBE_ID_COUNT}");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{}/{file}", holder.pid);
        std::fs::write(&path, &map).map_err(|e| {
            let text = errno_text(e.raw_os_error().unwrap_or(0));
            match nested_uid_map() {
                Some(own) => format!(
                    "writing {path}: {text}; kiln's root is itself in a user namespace (uid_map \
                     {own}) where the ids {PROBE_ID_BASE}..{} are not mapped",
                    PROBE_ID_BASE + PROBE_ID_COUNT - 1
                ),
                None => format!("writing {path}: {text}"),
            }
        })?;
    }
    let userns_path = format!("/proc/{}/ns/user", holder.pid);
    let userns: OwnedFd = std::fs::File::open(&userns_path)
        .map_err(|e| format!("opening {userns_path}: {e}"))?
        .into();
    drop(holder);

    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if tree < 0 {
        return Err(explain_idmap("open_tree(/, OPEN_TREE_CLONE)", errno()));
    }
    let tree = RawFd::try_from(tree).map_err(|_| "open_tree returned no descriptor".to_string())?;
    // SAFETY: a fresh descriptor from open_tree, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr`, whose size is given, and an empty NUL-terminated path
    // (AT_EMPTY_PATH: the detached mount `tree` itself).
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(explain_idmap("mount_setattr(MOUNT_ATTR_IDMAP)", errno()));
    }
    Ok(())
}

/// This process's cgroups, from the lines of /proc/self/cgroup: the v2 path (`0::/path`) and the
/// controllers cgroup v1 hierarchies hold.
fn parse_proc_cgroup(text: &str) -> (Option<String>, Vec<String>) {
    let mut unified = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            unified = Some(path.to_string());
        } else {
            v1.extend(
                controllers
                    .split(',')
                    .filter(|c| !c.is_empty() && !c.starts_with("name="))
                    .map(str::to_string),
            );
        }
    }
    (unified, v1)
}

/// The directory of cgroup `path` under a cgroup2 mount, if the mount shows it.
fn cgroup_dir(mount: &MountEntry, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path).strip_prefix(&mount.root).ok()?;
    Some(if relative.as_os_str().is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(relative)
    })
}

/// Names a list of controllers: "memory", "memory or pids".
fn controller_list(names: &[&str]) -> String {
    names.join(" or ")
}

/// Whether a build's cgroup can get the memory and pids controllers here: finds the unified (cgroup
/// v2) mount (`/sys/fs/cgroup` when it is one, else another cgroup2 mount such as
/// `/sys/fs/cgroup/unified` on a hybrid host), this process's cgroup in it, whether that directory is
/// writable and which controllers it has. Ok only when memory and pids are there and a child cgroup
/// could be created; the error says what is missing.
pub fn cgroup() -> Result<CgroupInfo, String> {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("kiln could not read /proc/self/cgroup: {e}"))?;
    let (unified, v1) = parse_proc_cgroup(&proc_cgroup);
    let mounts = mounts();
    let cgroup2: Vec<&MountEntry> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    let Some(own) = unified else {
        return Err(if cgroup2.is_empty() {
            "no cgroup v2 here (this host uses cgroup v1 only)".to_string()
        } else {
            "this process has no cgroup v2 entry in /proc/self/cgroup".to_string()
        });
    };
    // The topmost mount at /sys/fs/cgroup is the one paths there reach.
    let top = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
        .filter(|m| m.fstype == "cgroup2");
    let chosen = top
        .and_then(|m| cgroup_dir(m, &own))
        .or_else(|| cgroup2.iter().find_map(|m| cgroup_dir(m, &own)));
    let Some(dir) = chosen else {
        return Err(match cgroup2.first() {
            None => {
                "cgroup v2 is not mounted (no cgroup2 mount in /proc/self/mountinfo)".to_string()
            }
            Some(m) => format!(
                "this process's cgroup {own} is not visible under the cgroup v2 mount at {}",
                m.mount_point.display()
            ),
        });
    };
    let controllers_file = dir.join("cgroup.controllers");
    let controllers: Vec<String> = std::fs::read_to_string(&controllers_file)
        .map_err(|e| format!("kiln could not read {}: {e}", controllers_file.display()))?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let dir_c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("the cgroup path {} has a NUL", dir.display()))?;
    // SAFETY: access reads a NUL-terminated path.
    let writable = unsafe { libc::access(dir_c.as_ptr(), libc::W_OK) } == 0;

    let missing: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| !controllers.iter().any(|have| have == c))
        .collect();
    let (held, absent): (Vec<&str>, Vec<&str>) = missing
        .iter()
        .partition(|c| v1.iter().any(|have| have == *c));
    let mut problems = Vec::new();
    if !held.is_empty() {
        problems.push(format!(
            "cgroup v2 has no {} controller here (cgroup v1 holds {})",
            controller_list(&held),
            if held.len() == 1 { "it" } else { "them" }
        ));
    }
    if !absent.is_empty() {
        let why = match (own == "/", absent.len()) {
            (true, _) => "this kernel has none",
            (false, 1) => "the parent cgroup does not delegate it",
            (false, _) => "the parent cgroup does not delegate them",
        };
        problems.push(format!(
            "cgroup v2 has no {} controller here ({why})",
            controller_list(&absent)
        ));
    }
    if !writable {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        problems.push(format!(
            "{} is not writable by uid {uid} (the host does not delegate this cgroup to kiln)",
            dir.display()
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(CgroupInfo {
        path: dir,
        controllers,
        writable,
    })
}

/// The Landlock ABI version this kernel offers, or why it offers none.
pub fn landlock() -> Result<i64, String> {
    if let Some(version) = crate::sandbox::process::landlock_abi() {
        return Ok(version);
    }
    // landlock_abi makes one system call and nothing after it touches errno on this thread.
    let why = match errno() {
        libc::ENOSYS => {
            "this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, Linux 5.13 or later)"
                .to_string()
        }
        libc::EOPNOTSUPP => {
            let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
                .map(|list| format!(" (it has: {})", list.trim()))
                .unwrap_or_default();
            format!("Landlock is built in but not enabled: add it to the lsm= boot parameter{lsm}")
        }
        errno => format!("Landlock is not available: {}", errno_text(errno)),
    };
    Err(why)
}

/// Whether seccomp filters that return an errno can be installed: the kernel lists the `errno` action
/// in /proc/sys/kernel/seccomp/actions_avail (Linux 4.14 and later) or, on older kernels where that file
/// does not exist, prctl(PR_GET_SECCOMP) works.
pub fn seccomp() -> Result<(), String> {
    if let Ok(actions) = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
        return if actions.split_whitespace().any(|a| a == "errno") {
            Ok(())
        } else {
            Err(format!(
                "seccomp filters cannot return an errno here (kernel.seccomp.actions_avail = {})",
                actions.trim()
            ))
        };
    }
    // SAFETY: PR_GET_SECCOMP only reads this thread's seccomp mode.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP) } >= 0 {
        return Ok(());
    }
    Err(match errno() {
        libc::EINVAL => "this kernel has no seccomp (CONFIG_SECCOMP)".to_string(),
        errno => format!("prctl(PR_GET_SECCOMP): {}", errno_text(errno)),
    })
}

/// Whether `path` is an executable regular file.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable named `name` in the directories of `PATH` (absolute ones only: a relative
/// entry would depend on where kiln was started).
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The first non-empty line `program args` prints to stdout when it succeeds within `timeout`, or an
/// empty string. Stdin is null, stderr is discarded, and a program still running at the deadline is
/// killed with its process group; output left in the pipe by children of its own is not waited for.
fn first_line_of(program: &Path, args: &[&str], timeout: Duration) -> String {
    let Ok(mut child) = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    else {
        return String::new();
    };
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            _ => {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: signals the process group the child leads (process_group(0) above); the
                    // child is not reaped yet, so the group is still its own.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let (Some(status), Some(stdout)) = (status, child.stdout.take()) else {
        return String::new();
    };
    if !status.success() {
        return String::new();
    }
    let fd: OwnedFd = stdout.into();
    // SAFETY: reads and sets the flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return String::new();
        }
    }
    let mut output = vec![0u8; HELPER_OUTPUT_MAX];
    let mut len = 0;
    while len < output.len() {
        let rest = &mut output[len..];
        // SAFETY: reads into the live tail of `output`, at most its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        if n > 0 {
            len += n as usize;
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
    output.truncate(len);
    String::from_utf8_lossy(&output)
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// A program on `PATH` (`pasta`, `slirp4netns`) and the first line `name --version` prints, or an
/// empty string when it prints none within 2 s.
pub fn helper(name: &str) -> Option<(PathBuf, String)> {
    let path = find_on_path(name)?;
    let version = first_line_of(&path, &["--version"], HELPER_TIMEOUT);
    Some((path, version))
}

/// The kernel's name and release, from uname; "unknown" where it fails.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data, for which all zeroes is a valid value.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills a live utsname with NUL-terminated strings.
    if unsafe { libc::uname(&mut names) } != 0 {
        return ("unknown".to_string(), "unknown".to_string());
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&names.sysname), field(&names.release))
}

/// The kernel's major and minor version ("6.18.44-fc" gives (6, 18)).
fn kernel_version() -> Option<(u32, u32)> {
    let release = uname().1;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Which sandbox a build gets from the probes' outcomes, and why not a stronger one.
fn sandbox_summary(
    root: bool,
    user_namespaces: &Result<(), String>,
    overlay: &Result<(), String>,
    idmapped: &Result<(), String>,
    landlock: &Result<i64, String>,
) -> String {
    let why = match (user_namespaces, overlay) {
        (Err(e), _) => format!("user namespaces: {e}"),
        (Ok(()), Err(e)) => format!("overlayfs in a user namespace: {e}"),
        (Ok(()), Ok(())) if !root => return SANDBOX_ROOTLESS.to_string(),
        (Ok(()), Ok(())) => match idmapped {
            Ok(()) => return SANDBOX_IDMAPPED.to_string(),
            Err(e) => format!("as root, idmapped mounts are needed: {e}"),
        },
    };
    match landlock {
        Ok(_) => format!("landlock only (no namespaces: {why})"),
        Err(e) => format!("none ({why}; landlock: {e})"),
    }
}

/// What `--network internet` uses: the first user-mode network stack found, when builds get
/// namespaces at all.
fn network_summary(
    namespaces: bool,
    pasta: Option<&(PathBuf, String)>,
    slirp4netns: Option<&(PathBuf, String)>,
) -> String {
    if !namespaces {
        return NETWORK_NO_NAMESPACES.to_string();
    }
    match (pasta, slirp4netns) {
        (Some((path, _)), _) => format!("pasta ({})", path.display()),
        (None, Some((path, _))) => format!("slirp4netns ({})", path.display()),
        (None, None) => NETWORK_NONE.to_string(),
    }
}

/// A check from a probe's outcome.
fn check(name: &'static str, outcome: Result<String, String>) -> Check {
    match outcome {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

/// A helper's check: its version and path, or that it is not on `PATH`.
fn helper_check(name: &'static str, found: Option<&(PathBuf, String)>) -> Check {
    check(
        name,
        match found {
            Some((path, version)) if version.is_empty() => Ok(path.display().to_string()),
            Some((path, version)) => Ok(format!("{version} ({})", path.display())),
            None => Err("not on PATH".to_string()),
        },
    )
}

/// Runs every probe and says which sandbox and which network a build gets here.
pub fn report() -> Report {
    let (sysname, release) = uname();
    let root = is_root();
    let userns = user_namespaces();
    let overlay = overlay_in_user_namespace();
    let layers = layers_in_memory();
    let idmapped = idmapped_mounts();
    let cgroup = cgroup();
    let landlock = landlock();
    let seccomp = seccomp();
    let pasta = helper("pasta");
    let slirp4netns = helper("slirp4netns");

    let sandbox = sandbox_summary(root, &userns, &overlay, &idmapped, &landlock);
    let namespaces = sandbox == SANDBOX_IDMAPPED || sandbox == SANDBOX_ROOTLESS;
    let network = network_summary(namespaces, pasta.as_ref(), slirp4netns.as_ref());
    let checks = vec![
        check(
            "user namespaces",
            userns.map(|()| "user, mount, pid, ipc, uts, net and cgroup namespaces".to_string()),
        ),
        check(
            "overlayfs in userns",
            overlay.map(|()| "mounted and written through (copy-up included)".to_string()),
        ),
        check(
            "private layers",
            match layers {
                Ok(()) => Ok("in memory (a tmpfs per build, at most --disk-limit)".to_string()),
                Err(e) => Err(format!(
                    "{e} (they go on the build's scratch folder, on disk)"
                )),
            },
        ),
        check(
            "idmapped mounts",
            match idmapped {
                Ok(()) => Ok(format!(
                    "an idmapped clone of / ({})",
                    fstype_at("/").unwrap_or_else(|| "unknown filesystem".to_string())
                )),
                Err(e) if !root => Err(format!("{e} (a rootless sandbox does without)")),
                Err(e) => Err(e),
            },
        ),
        check(
            "cgroup v2 delegation",
            cgroup.map(|info| format!("{} ({})", info.path.display(), info.controllers.join(" "))),
        ),
        check("landlock", landlock.map(|abi| format!("ABI {abi}"))),
        check(
            "seccomp",
            seccomp.map(|()| "filters can return an errno".to_string()),
        ),
        helper_check("pasta", pasta.as_ref()),
        helper_check("slirp4netns", slirp4netns.as_ref()),
    ];
    Report {
        kernel: format!("{sysname} {release}"),
        root,
        checks,
        sandbox,
        network,
    }
}

/// The report for people: the kernel, one line per check ("ok    user namespaces      ..."), then
/// the sandbox and the network a build gets.
pub fn render(report: &Report) -> String {
    let one_line = |text: &str| text.replace(['\n', '\r'], " ");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel: {}{}",
        one_line(&report.kernel),
        if report.root {
            " (running as root)"
        } else {
            ""
        }
    );
    for check in &report.checks {
        let _ = writeln!(
            out,
            "{:<6}{:<21}{}",
            if check.ok { "ok" } else { "no" },
            check.name,
            one_line(&check.detail)
        );
    }
    let _ = writeln!(out, "sandbox: {}", one_line(&report.sandbox));
    let _ = writeln!(out, "network: {}", one_line(&report.network));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a forked child can unshare every namespace the launcher does, in one call, as the
    /// launcher makes it.
    fn unshare_works_independently() -> bool {
        // SAFETY: the child only calls unshare and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: unshare changes only this child's namespaces; _exit ends it at once.
            unsafe {
                let flags = libc::CLONE_NEWUSER
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWPID
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWCGROUP;
                libc::_exit(if libc::unshare(flags) == 0 { 0 } else { 1 })
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child into a live integer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    #[test]
    fn user_namespaces_agree_with_an_independent_unshare() {
        let probed = user_namespaces();
        assert_eq!(
            probed.is_ok(),
            unshare_works_independently(),
            "probe said {probed:?}"
        );
    }

    #[test]
    fn user_namespace_failures_name_the_step_and_the_setting() {
        let limit = explain(StepFailed {
            step: Step::NetNs,
            errno: libc::ENOSPC,
        });
        assert!(limit.starts_with("unshare(CLONE_NEWNET): "), "{limit}");
        assert!(limit.contains("user.max_net_namespaces"), "{limit}");
        let missing = explain(StepFailed {
            step: Step::CgroupNs,
            errno: libc::EINVAL,
        });
        assert!(missing.contains("without cgroup namespaces"), "{missing}");
        let refused = explain(StepFailed {
            step: Step::UserNs,
            errno: libc::EPERM,
        });
        assert!(
            refused.starts_with("unshare(CLONE_NEWUSER): Operation not permitted; "),
            "{refused}"
        );
    }

    #[test]
    fn overlay_needs_user_namespaces_and_works_where_the_kernel_allows_it() {
        let overlay = overlay_in_user_namespace();
        let userns = user_namespaces();
        if userns.is_err() {
            assert!(overlay.is_err());
            return;
        }
        let has_overlay = std::fs::read_to_string("/proc/filesystems").is_ok_and(|list| {
            list.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        if has_overlay && kernel_version().is_some_and(|v| v >= (5, 11)) {
            assert_eq!(overlay, Ok(()));
        }
    }

    #[test]
    fn idmapped_mounts_need_root_and_user_namespaces() {
        let idmapped = idmapped_mounts();
        if !is_root() {
            assert_eq!(idmapped, Err("needs root".to_string()));
        } else if user_namespaces().is_err() || kernel_version().is_some_and(|v| v < (5, 12)) {
            assert!(idmapped.is_err());
        }
    }

    #[test]
    fn cgroup_agrees_with_proc_self_cgroup() {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let unified = text
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(str::to_string);
        let v1_memory = text.lines().any(|line| {
            !line.starts_with("0::")
                && line
                    .split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        });
        let probed = cgroup();
        let Some(own) = unified else {
            assert!(probed.is_err());
            return;
        };
        // Found independently: the cgroup2 mounts of /proc/self/mounts (not mountinfo).
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let dirs: Vec<PathBuf> = mounts
            .lines()
            .filter(|line| line.split(' ').nth(2) == Some("cgroup2"))
            .filter_map(|line| line.split(' ').nth(1))
            .map(|point| Path::new(point).join(own.trim_start_matches('/')))
            .collect();
        match probed {
            Ok(info) => {
                assert!(info.path.is_dir());
                assert!(info.path.ends_with(own.trim_start_matches('/')));
                assert!(info.writable);
                assert!(info.controllers.iter().any(|c| c == "memory"));
                assert!(info.controllers.iter().any(|c| c == "pids"));
                let listed = std::fs::read_to_string(info.path.join("cgroup.controllers")).unwrap();
                assert_eq!(
                    info.controllers,
                    listed.split_whitespace().collect::<Vec<_>>()
                );
            }
            Err(e) => {
                if let Some(dir) = dirs.iter().find(|d| d.is_dir()) {
                    let listed =
                        std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                    for controller in ["memory", "pids"] {
                        if !listed.split_whitespace().any(|c| c == controller) {
                            assert!(e.contains(controller), "{e}");
                        }
                    }
                    if !listed.split_whitespace().any(|c| c == "memory") && v1_memory {
                        assert!(e.contains("cgroup v1 holds"), "{e}");
                    }
                }
            }
        }
    }

    #[test]
    fn mountinfo_is_parsed_with_its_escapes() {
        let text = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    50 23 0:40 /sub /mnt/with\\040space rw shared:1 - ext4 /dev/sda1 rw\n\
                    garbage\n";
        let entries = parse_mountinfo(text);
        assert_eq!(
            entries,
            vec![
                MountEntry {
                    root: PathBuf::from("/"),
                    mount_point: PathBuf::from("/sys/fs/cgroup/unified"),
                    fstype: "cgroup2".to_string(),
                },
                MountEntry {
                    root: PathBuf::from("/sub"),
                    mount_point: PathBuf::from("/mnt/with space"),
                    fstype: "ext4".to_string(),
                },
            ]
        );
        assert_eq!(
            cgroup_dir(&entries[0], "/user.slice/kiln"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/user.slice/kiln"))
        );
        assert_eq!(
            cgroup_dir(&entries[0], "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup_dir(&entries[1], "/other"), None);
    }

    #[test]
    fn proc_cgroup_lines_give_the_unified_path_and_the_v1_controllers() {
        let (unified, v1) =
            parse_proc_cgroup("9:name=systemd:/\n4:memory:/x\n2:cpu,cpuacct:/\n0::/kiln\n");
        assert_eq!(unified.as_deref(), Some("/kiln"));
        assert_eq!(v1, ["memory", "cpu", "cpuacct"]);
    }

    #[test]
    fn landlock_matches_the_abi_the_sandbox_uses() {
        assert_eq!(landlock().ok(), crate::sandbox::process::landlock_abi());
    }

    #[test]
    fn seccomp_is_available_where_the_kernel_lists_errno() {
        if std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
            .is_ok_and(|a| a.split_whitespace().any(|a| a == "errno"))
        {
            assert_eq!(seccomp(), Ok(()));
        }
    }

    #[test]
    fn helper_finds_sh_on_path_as_a_shell_would() {
        let (path, _version) = helper("sh").expect("sh is on PATH");
        let expected = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("sh"))
            .find(|candidate| is_executable(candidate))
            .unwrap();
        assert_eq!(path, expected);
        assert_eq!(path.file_name().unwrap(), "sh");
        if path.starts_with("/bin") || path.starts_with("/usr/bin") {
            assert!(path == Path::new("/bin/sh") || path == Path::new("/usr/bin/sh"));
        }
    }

    #[test]
    fn helper_does_not_find_what_is_not_there() {
        assert_eq!(helper("no-such-program-kiln"), None);
        assert_eq!(helper(""), None);
        assert_eq!(helper("../sh"), None);
    }

    #[test]
    fn version_line_is_the_first_line_of_a_quick_success() {
        let sh = Path::new("/bin/sh");
        let line = first_line_of(
            sh,
            &["-c", "echo; echo '  tool 1.2.3  '; echo more"],
            HELPER_TIMEOUT,
        );
        assert_eq!(line, "tool 1.2.3");
        assert_eq!(
            first_line_of(sh, &["-c", "echo tool 1.2.3; exit 2"], HELPER_TIMEOUT),
            ""
        );
    }

    #[test]
    fn version_line_gives_up_on_a_program_that_hangs() {
        let start = Instant::now();
        let line = first_line_of(
            Path::new("/bin/sh"),
            &["-c", "echo started; sleep 30; echo late"],
            Duration::from_millis(300),
        );
        assert_eq!(line, "");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn sandbox_summary_follows_what_works() {
        let ok = Ok(());
        let no = |why: &str| Err(why.to_string());
        let abi = Ok(6);
        assert_eq!(sandbox_summary(true, &ok, &ok, &ok, &abi), SANDBOX_IDMAPPED);
        assert_eq!(
            sandbox_summary(false, &ok, &ok, &no("needs root"), &abi),
            SANDBOX_ROOTLESS
        );
        assert_eq!(
            sandbox_summary(
                false,
                &no("kernel.unprivileged_userns_clone = 0"),
                &ok,
                &ok,
                &abi
            ),
            "landlock only (no namespaces: user namespaces: kernel.unprivileged_userns_clone = 0)"
        );
        assert_eq!(
            sandbox_summary(true, &ok, &ok, &no("EINVAL"), &abi),
            "landlock only (no namespaces: as root, idmapped mounts are needed: EINVAL)"
        );
        assert_eq!(
            sandbox_summary(false, &ok, &no("ENODEV"), &ok, &Err("no Landlock".into())),
            "none (overlayfs in a user namespace: ENODEV; landlock: no Landlock)"
        );
    }

    #[test]
    fn network_summary_prefers_pasta() {
        let pasta = (PathBuf::from("/usr/bin/pasta"), String::new());
        let slirp = (PathBuf::from("/usr/bin/slirp4netns"), "1.2.0".to_string());
        assert_eq!(
            network_summary(true, Some(&pasta), Some(&slirp)),
            "pasta (/usr/bin/pasta)"
        );
        assert_eq!(
            network_summary(true, None, Some(&slirp)),
            "slirp4netns (/usr/bin/slirp4netns)"
        );
        assert_eq!(network_summary(true, None, None), NETWORK_NONE);
        assert_eq!(
            network_summary(false, Some(&pasta), None),
            NETWORK_NO_NAMESPACES
        );
    }

    #[test]
    fn render_has_a_line_per_check_and_the_verdicts() {
        let report = Report {
            kernel: "Linux 6.18.0".to_string(),
            root: false,
            checks: vec![
                Check {
                    name: "user namespaces",
                    ok: true,
                    detail: "fine".to_string(),
                },
                Check {
                    name: "cgroup v2 delegation",
                    ok: false,
                    detail: "cgroup v2 has no memory controller here\n(cgroup v1 holds it)"
                        .to_string(),
                },
            ],
            sandbox: SANDBOX_ROOTLESS.to_string(),
            network: NETWORK_NONE.to_string(),
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + report.checks.len() + 2, "{text}");
        assert_eq!(lines[0], "kernel: Linux 6.18.0");
        assert_eq!(lines[1], "ok    user namespaces      fine");
        assert_eq!(
            lines[2],
            "no    cgroup v2 delegation cgroup v2 has no memory controller here (cgroup v1 holds it)"
        );
        for check in &report.checks {
            assert!(text.contains(check.name));
        }
        assert_eq!(lines[3], format!("sandbox: {SANDBOX_ROOTLESS}"));
        assert_eq!(lines[4], format!("network: {NETWORK_NONE}"));
    }

    #[test]
    fn report_runs_every_probe() {
        let report = report();
        println!("{}", render(&report));
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "user namespaces",
                "overlayfs in userns",
                "private layers",
                "idmapped mounts",
                "cgroup v2 delegation",
                "landlock",
                "seccomp",
                "pasta",
                "slirp4netns",
            ]
        );
        assert_eq!(report.root, is_root());
        assert!(!report.sandbox.is_empty() && !report.network.is_empty());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"].as_array().map(Vec::len), Some(names.len()));
    }
}
