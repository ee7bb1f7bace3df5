//! The launcher: the small process that lives in a build's sandbox for the build's duration and starts
//! each of its commands.
//!
//! kiln starts it as `kiln __launcher` with its end of a socket as descriptor 3. It enters a new user
//! namespace and waits while kiln writes its id maps; then it enters the other namespaces and forks
//! the sandbox's init (pid 1 of the new pid namespace), which puts the filesystem together, pivots into
//! it, installs the seccomp filter (inherited by everything it starts), and serves requests: each
//! `Run` clones a child that drops every capability, takes the limits, and execs the program. When kiln's end of the socket closes (the build ended,
//! or kiln died), init exits, and the kernel kills every process left in the pid namespace.
//!
//! Each command's process is cloned with the launcher's memory shared until it execs (as posix_spawn
//! does): between clone and exec the child makes system calls only, and never allocates.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::mounts::{self, Plan};
use super::seccomp;
use super::shell::{self, Shell};
use super::wire::{self, Reply, Request};

/// The socket to kiln.
const SOCK: RawFd = 3;

/// The launcher's entry point (`kiln __launcher [net]`: `net` for a network namespace of the
/// build's own). Never returns.
pub fn main() -> ! {
    // The socket to kiln came without close-on-exec (to cross kiln's exec); no program the build
    // runs may inherit it.
    // SAFETY: fcntl on a descriptor number; harmless if it is not open.
    unsafe { libc::fcntl(SOCK, libc::F_SETFD, libc::FD_CLOEXEC) };
    let own_network = std::env::args_os().nth(2).is_some_and(|a| a == "net");
    let code = outer(own_network).unwrap_or_else(|e| failed(&e));
    // SAFETY: ends the process without running destructors (nothing to flush).
    unsafe { libc::_exit(code) }
}

/// Tells kiln why the sandbox could not be set up; the exit code that goes with it.
fn failed(e: &io::Error) -> i32 {
    let _ = wire::send(
        SOCK,
        &Reply::Failed {
            message: e.to_string(),
        },
        &[],
    );
    1
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Enters the user namespace (and the network namespace, so kiln can start pasta on it while the
/// filesystem is put together), waits for the maps and the plan, enters the other namespaces and
/// forks init; waits for it.
fn outer(own_network: bool) -> io::Result<i32> {
    let mut first = libc::CLONE_NEWUSER;
    if own_network {
        first |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare affects only this (single-threaded) process.
    if unsafe { libc::unshare(first) } != 0 {
        return Err(os_err("cannot create a user namespace"));
    }
    wire::send(SOCK, &Reply::UserNs, &[])?;
    let Some((Request::Setup { plan }, fds)) = wire::recv::<Request>(SOCK)? else {
        return Ok(0);
    };
    // SAFETY: plain system calls; kiln has mapped 0 in this namespace.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(os_err("cannot become root in the build's user namespace"));
        }
    }
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    // SAFETY: unshare affects only this process (and, for the pid namespace, its children).
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(os_err("cannot create the build's namespaces"));
    }
    // SAFETY: the process is single-threaded; the child runs init and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("cannot start the sandbox's init"));
    }
    if pid == 0 {
        let code = init(plan, fds).map_or_else(|e| failed(&e), |()| 0);
        // SAFETY: ends init; the kernel then kills what is left in its pid namespace.
        unsafe { libc::_exit(code) }
    }
    // Only init speaks to kiln from now on, so kiln sees the end of the stream when init ends.
    // SAFETY: closes this process's copy of the socket.
    unsafe { libc::close(SOCK) };
    drop(fds);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    })
}

/// Pid 1 of the build: sets the filesystem up, then serves requests until kiln goes away.
fn init(plan: Plan, fds: Vec<OwnedFd>) -> io::Result<()> {
    // SAFETY: asks for SIGKILL when the outer launcher (single-threaded) dies.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut warnings = Vec::new();
    mounts::make_private()?;
    for op in &plan.before {
        if let Some(w) = mounts::apply(op, &fds)? {
            warnings.push(w);
        }
    }
    drop(fds);
    // kiln watches what the private layers hold (`--disk-limit`) through this folder.
    let layer = plan.before.iter().find_map(|op| match op {
        mounts::Op::Layer { target, .. } => std::fs::File::open(target).ok(),
        _ => None,
    });
    mounts::pivot(&plan.root)?;
    for op in &plan.after {
        if let Some(w) = mounts::apply(op, &[])? {
            warnings.push(w);
        }
    }
    let name = plan.hostname.as_bytes();
    // SAFETY: sethostname reads `name.len()` bytes from a live buffer.
    unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if plan.own_network {
        loopback_up()?;
        for (address, prefix) in METADATA {
            unreachable_route(address, prefix)?;
        }
    }
    // What every program inherits, set once here rather than in each child: the seccomp filter
    // (init itself needs none of what it refuses from now on), an empty capability bounding set and
    // locked securebits, so that root in the namespace gets no capability back from exec, a setuid
    // file or a uid change. Init keeps its own effective capabilities (to switch users for run-as);
    // each child drops them before exec.
    seccomp::build()
        .map_err(io::Error::other)?
        .install()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot install the seccomp filter: {e}")))?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(40);
    // NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE, each locked.
    const SECBITS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;
    // SAFETY: prctl calls on this process only.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, SECBITS) != 0 {
            return Err(os_err("cannot lock the securebits"));
        }
        for cap in 0..=last_cap {
            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
        }
    }
    let limits = Limits {
        pids: plan.pids,
        memory: plan.memory,
        session_shell: plan.session_shell,
    };
    let layer_fd: Vec<i32> = layer.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    wire::send(SOCK, &Reply::Ready { warnings }, &layer_fd)?;
    drop(layer);
    serve(&limits)
}

/// The cloud instance-metadata services (AWS, GCP, Azure, ECS task credentials): on a cloud
/// machine they hand out the host's credentials to whoever asks from it, so the build's network
/// has no route to them.
pub const METADATA: [(std::net::IpAddr, u8); 3] = [
    (
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)),
        32,
    ),
    (
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 170, 2)),
        32,
    ),
    (
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        128,
    ),
];

/// Adds an `unreachable` route for `address/prefix` to the main table of this network namespace
/// (rtnetlink `RTM_NEWROUTE`), and waits for the kernel's acknowledgement.
fn unreachable_route(address: std::net::IpAddr, prefix: u8) -> io::Result<()> {
    let (family, bytes): (u8, Vec<u8>) = match address {
        std::net::IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let attr_len = 4 + bytes.len();
    let len = 16 + 12 + attr_len;
    let mut msg = Vec::with_capacity(len);
    // struct nlmsghdr
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    msg.extend_from_slice(&[
        family,
        prefix,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_STATIC,
        libc::RT_SCOPE_UNIVERSE,
        libc::RTN_UNREACHABLE,
    ]);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct rtattr RTA_DST
    msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    msg.extend_from_slice(&libc::RTA_DST.to_ne_bytes());
    msg.extend_from_slice(&bytes);
    // SAFETY: a netlink socket, used for one request and closed below.
    let sock = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if sock < 0 {
        return Err(os_err("cannot open a netlink socket"));
    }
    let mut reply = [0u8; 512];
    // SAFETY: sends and receives on the socket above, from and into live buffers.
    let (sent, got) = unsafe {
        let sent = libc::send(sock, msg.as_ptr().cast(), msg.len(), 0);
        let got = libc::recv(sock, reply.as_mut_ptr().cast(), reply.len(), 0);
        libc::close(sock);
        (sent, got)
    };
    if sent < 0 || got < 0 {
        return Err(os_err("cannot add a route"));
    }
    // The acknowledgement is an NLMSG_ERROR whose error is 0.
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    let error = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if got >= 20 && kind == libc::NLMSG_ERROR as u16 && error != 0 {
        let e = io::Error::from_raw_os_error(-error);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot route {address} nowhere: {e}"),
        ));
    }
    Ok(())
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket only to carry the interface ioctls; closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(os_err("cannot open a socket to bring up loopback"));
    }
    // SAFETY: ifreq is plain data; the name is copied in with its NUL.
    let rc = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        libc::close(sock);
        rc
    };
    if rc != 0 {
        return Err(os_err("cannot bring up loopback"));
    }
    Ok(())
}

struct Limits {
    pids: u64,
    memory: Option<u64>,
    session_shell: bool,
}

/// Waits for requests and for children, until kiln closes the socket.
fn serve(limits: &Limits) -> io::Result<()> {
    // SIGCHLD arrives through a descriptor, so one poll waits for both.
    // SAFETY: plain signal-mask calls on this single-threaded process.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        return Err(os_err("cannot wait for children"));
    }
    let mut running: HashMap<i32, u64> = HashMap::new();
    let mut shell: Option<Shell> = None;
    let poll_in = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let mut fds = vec![poll_in(SOCK), poll_in(sfd)];
        if let Some(shell) = &shell {
            fds.extend(shell.poll_fds().into_iter().map(poll_in));
        }
        // SAFETY: polls live descriptors.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os_err("poll"));
        }
        if let Some(sh) = &mut shell
            && fds[2..].iter().any(|f| f.revents != 0)
        {
            sh.copy_output();
            if let Some((id, code)) = sh.read_status() {
                let reply = Reply::Exit {
                    id,
                    code: Some(code),
                    signal: None,
                };
                let _ = wire::send(SOCK, &reply, &[]);
            }
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: drains the signalfd into a live buffer.
            while unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
            reap(&mut running, &mut shell);
        }
        if fds[0].revents != 0 {
            match wire::recv::<Request>(SOCK) {
                Ok(Some((request, fds))) => {
                    handle(request, fds, limits, &mut running, &mut shell);
                }
                // kiln is gone: end the build's every process.
                Ok(None) | Err(_) => {
                    // SAFETY: signals every process in this pid namespace but init.
                    unsafe { libc::kill(-1, libc::SIGKILL) };
                    return Ok(());
                }
            }
        }
    }
}

fn reap(running: &mut HashMap<i32, u64>, shell: &mut Option<Shell>) {
    loop {
        let mut status = 0;
        // SAFETY: reaps any exited child without blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if shell.as_ref().is_some_and(|s| s.pid == pid) {
            // The session shell is gone (killed with its process group, say): the command it ran
            // ends with it; the next one starts a new shell.
            let ended = shell.take().and_then(|mut s| s.ended(status));
            if let Some((id, code, signal)) = ended {
                let _ = wire::send(SOCK, &Reply::Exit { id, code, signal }, &[]);
            }
            continue;
        }
        if let Some(id) = running.remove(&pid) {
            let (code, signal) = if libc::WIFEXITED(status) {
                (Some(libc::WEXITSTATUS(status)), None)
            } else if libc::WIFSIGNALED(status) {
                (None, Some(libc::WTERMSIG(status)))
            } else {
                (None, None)
            };
            let _ = wire::send(SOCK, &Reply::Exit { id, code, signal }, &[]);
        }
    }
}

fn handle(
    request: Request,
    mut fds: Vec<OwnedFd>,
    limits: &Limits,
    running: &mut HashMap<i32, u64>,
    shell: &mut Option<Shell>,
) {
    match request {
        Request::Run {
            id,
            argv,
            env,
            cwd,
            run_as,
            stdin,
            merge,
        } => {
            // The session shell has one pipe for both streams (their order kept), so only a command
            // whose streams may be merged runs in it.
            if limits.session_shell
                && merge
                && !stdin
                && let Some(script) = shell::eligible(&argv, &env, &cwd)
                && in_shell(
                    id, &argv[0], script, &env, &cwd, run_as, &mut fds, limits, shell,
                )
            {
                return;
            }
            let reply = match start(&argv, &env, &cwd, run_as, stdin, &fds, limits) {
                Ok(pid) => {
                    running.insert(pid, id);
                    None
                }
                Err(e) => Some(Reply::NotStarted {
                    id,
                    not_found: e.kind() == io::ErrorKind::NotFound,
                    message: e.to_string(),
                }),
            };
            drop(fds);
            if let Some(reply) = reply {
                let _ = wire::send(SOCK, &reply, &[]);
            }
        }
        Request::Kill { id } => {
            if let Some(sh) = shell.as_ref().filter(|s| s.current() == Some(id)) {
                // SAFETY: signals the session shell's process group, the command's subshell in it.
                unsafe { libc::kill(-sh.pid, libc::SIGKILL) };
            } else if let Some((pid, _)) = running.iter().find(|(_, v)| **v == id) {
                // SAFETY: signals the program's session (its process group).
                unsafe { libc::kill(-*pid, libc::SIGKILL) };
            }
        }
        // SAFETY: signals every process in this pid namespace but init.
        Request::KillAll => unsafe {
            libc::kill(-1, libc::SIGKILL);
        },
        Request::Setup { .. } => {}
    }
}

/// Runs `script` in the session shell (starting it first if there is none): whether it did. It
/// does not when the program is not dash, the shell there is another or busy, or the directory is
/// gone: the command then starts as its own process (which reports such errors as usual).
#[allow(clippy::too_many_arguments)]
fn in_shell(
    id: u64,
    program: &str,
    script: &str,
    env: &[(String, String)],
    cwd: &Path,
    run_as: Option<(u32, u32)>,
    fds: &mut Vec<OwnedFd>,
    limits: &Limits,
    shell: &mut Option<Shell>,
) -> bool {
    let Ok(exe) = resolve(program, env, cwd) else {
        return false;
    };
    if fds.len() < 2 || !cwd.is_dir() {
        return false;
    }
    match shell {
        Some(sh) if sh.exe == exe && sh.run_as == run_as && !sh.busy() => {}
        Some(_) => return false,
        None => {
            if !shell::is_dash(&exe) {
                return false;
            }
            let mut spawn = |exe: &CString, stdio: &[RawFd; 2], extra: &[RawFd]| {
                spawn_shell(exe, stdio, extra, run_as, limits)
            };
            match Shell::start(&exe, run_as, &mut spawn) {
                Ok(sh) => *shell = Some(sh),
                Err(_) => return false,
            }
        }
    }
    let Some(sh) = shell.as_mut() else {
        return false;
    };
    let program = shell::program(env, cwd, script);
    if sh.run(id, &program, fds).is_err() {
        // The shell cannot take it (it is going away): the command starts as its own process,
        // the shell's exit is reaped as any orphan's.
        // SAFETY: signals the session shell's process group.
        unsafe { libc::kill(-sh.pid, libc::SIGKILL) };
        *shell = None;
        return false;
    }
    true
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in an argument"))
}

/// Where `program` is: a path (relative to `cwd`) or a name looked up on the command's `PATH`.
fn resolve(program: &str, env: &[(String, String)], cwd: &Path) -> io::Result<PathBuf> {
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    if program.contains('/') {
        Some(cwd.join(program))
    } else {
        crate::sandbox::process::resolve_program(program, path_var, cwd)
    }
    .ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{program}` was not found"),
        )
    })
}

/// Forks and execs one program; its pid once it has exec'd.
#[allow(clippy::too_many_arguments)]
fn start(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    run_as: Option<(u32, u32)>,
    stdin: bool,
    fds: &[OwnedFd],
    limits: &Limits,
) -> io::Result<i32> {
    let program = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let exe = resolve(program, env, cwd)?;
    let exe = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the program path"))?;
    let args = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<io::Result<Vec<_>>>()?;
    let envs = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect::<io::Result<Vec<_>>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let cwd_c = CString::new(cwd.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the directory"))?;
    let (out, err) = match fds {
        [out, err, ..] => (out.as_raw_fd(), err.as_raw_fd()),
        _ => {
            return Err(io::Error::other(
                "no output descriptors came with the command",
            ));
        }
    };
    let input = if stdin {
        fds.get(2).map(AsRawFd::as_raw_fd)
    } else {
        None
    };
    spawn(
        Spawn {
            exe: &exe,
            argv: &arg_ptrs,
            envp: &env_ptrs,
            cwd: &cwd_c,
            run_as,
            out,
            err,
            input,
            extra: [-1; MAX_EXTRA],
            extra_len: 0,
            limits,
            errno: 0,
        },
        program,
    )
}

/// Starts `exe` as the session shell ([`shell::Shell`]), in `/`, with an empty environment and
/// `extra` as its descriptors 3, 4, 5.
fn spawn_shell(
    exe: &CString,
    stdio: &[RawFd; 2],
    extra: &[RawFd],
    run_as: Option<(u32, u32)>,
    limits: &Limits,
) -> io::Result<i32> {
    let args = shell::Shell::argv()
        .iter()
        .map(|a| cstring(a))
        .collect::<io::Result<Vec<_>>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let env_ptrs = [std::ptr::null()];
    let mut fds = [-1; MAX_EXTRA];
    if extra.len() > MAX_EXTRA {
        return Err(io::Error::other(
            "too many descriptors for the session shell",
        ));
    }
    fds[..extra.len()].copy_from_slice(extra);
    spawn(
        Spawn {
            exe,
            argv: &arg_ptrs,
            envp: &env_ptrs,
            cwd: c"/",
            run_as,
            out: stdio[0],
            err: stdio[1],
            input: None,
            extra: fds,
            extra_len: extra.len(),
            limits,
            errno: 0,
        },
        "sh",
    )
}

/// Clones a child that becomes the program `spawn` describes; its pid once it has exec'd.
fn spawn(mut spawn: Spawn, program: &str) -> io::Result<i32> {
    // The child shares this process's memory until it execs (CLONE_VM | CLONE_VFORK, as
    // posix_spawn does): no page tables are copied and this process is suspended meanwhile, so a
    // command starts without the cost of a fork. The child runs on a stack of its own and writes
    // only `errno` in the shared memory.
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack is live until clone returns (CLONE_VFORK: after the child's exec or exit),
    // its top is 16-byte aligned, and `spawn` outlives the child's use of it.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as usize & !15;
        libc::clone(
            spawned,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut spawn).cast(),
        )
    };
    if pid < 0 {
        return Err(os_err("cannot start a process"));
    }
    if spawn.errno != 0 {
        let mut status = 0;
        // SAFETY: reaps the child that failed to exec.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // kiln's side names the program ("cannot start `x`: ...").
        let e = io::Error::from_raw_os_error(spawn.errno);
        return Err(match e.kind() {
            io::ErrorKind::NotFound => {
                io::Error::new(io::ErrorKind::NotFound, format!("`{program}`: {e}"))
            }
            _ => e,
        });
    }
    Ok(pid)
}

/// The stack of a child between clone and exec: it only makes system calls.
const CHILD_STACK: usize = 64 * 1024;

/// The most descriptors a program gets besides stdin, stdout and stderr.
const MAX_EXTRA: usize = 3;

/// What a child needs to become the program, and where it leaves the errno if it cannot.
struct Spawn<'a> {
    exe: &'a CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    cwd: &'a CStr,
    run_as: Option<(u32, u32)>,
    out: RawFd,
    err: RawFd,
    input: Option<RawFd>,
    /// Descriptors the program gets as 3, 4… (the session shell's).
    extra: [RawFd; MAX_EXTRA],
    extra_len: usize,
    limits: &'a Limits,
    errno: i32,
}

extern "C" fn spawned(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Spawn` that `start` passed to clone, alive while it is suspended.
    let spawn = unsafe { &mut *arg.cast::<Spawn>() };
    spawn.errno = child(spawn);
    // SAFETY: ends the child without running anything of the parent's (shared memory).
    unsafe { libc::_exit(127) }
}

/// In the cloned child: becomes the program. Returns only on failure, with the errno.
fn child(spawn: &Spawn) -> i32 {
    let Spawn {
        exe,
        argv,
        envp,
        cwd,
        run_as,
        out,
        err,
        input,
        extra,
        extra_len,
        limits,
        ..
    } = *spawn;
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: system calls on this process only, between clone and exec; nothing allocates.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        let input = input.unwrap_or(null);
        if libc::dup2(input, 0) < 0 || libc::dup2(out, 1) < 0 || libc::dup2(err, 2) < 0 {
            return errno();
        }
        if null > 2 {
            libc::close(null);
        }
        // Extra descriptors go to 3, 4…: first out of the way (a source may be one of the targets).
        let mut moved = [-1; MAX_EXTRA];
        for i in 0..extra_len {
            moved[i] = libc::fcntl(extra[i], libc::F_DUPFD_CLOEXEC, 3 + MAX_EXTRA as i32);
            if moved[i] < 0 {
                return errno();
            }
        }
        for (i, fd) in moved.iter().enumerate().take(extra_len) {
            if libc::dup2(*fd, 3 + i as i32) < 0 {
                return errno();
            }
        }
        let nproc = libc::rlimit {
            rlim_cur: limits.pids,
            rlim_max: limits.pids,
        };
        libc::setrlimit(libc::RLIMIT_NPROC, &nproc);
        if let Some(bytes) = limits.memory {
            let mem = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_AS, &mem);
        }
        if let Some((uid, gid)) = run_as
            && (libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
        {
            return errno();
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return errno();
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            return errno();
        }
        // Nothing but stdin, stdout, stderr (and the extra descriptors) crosses into the program.
        libc::syscall(libc::SYS_close_range, 3 + extra_len as u32, u32::MAX, 0u32);
        libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    errno()
}
