//! Attacks on the OS sandbox a build's host programs run in, each proven from both sides: the build
//! tries it and prints what happened, and the test checks that nothing changed on the host.
//!
//! What a build's programs print is checked with `said`/`never_said`, which skip kiln's
//! `[Container] Running command …` lines (they echo each command's text). Secrets are counted inside
//! the build (`grep -c`) rather than printed, so kiln's masking cannot hide a leak from the test.
//! The attacks marked `in_both_modes!` run twice: as the test's user (root in CI, so the build's root
//! is mapped to an unprivileged range) and as `nobody` (the rootless sandbox).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::isolation::{
    FileState, HostListener, Mode, alive, clear_immutable, host_dir, host_interfaces, is_root,
    marker, namespace, python3, require_namespaces, require_tool, survivors, unique_digits,
};
use crate::support::{Build, Run, build_commands};

/// Runs an attack as the caller and as `nobody`: `isolation::<name>::as_caller` and
/// `isolation::<name>::unprivileged`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::support::isolation::Mode;

            #[test]
            fn as_caller() {
                super::$name(Mode::Caller);
            }

            #[test]
            fn unprivileged() {
                super::$name(Mode::Nobody);
            }
        }
    )*};
}

in_both_modes!(
    device_nodes_cannot_be_made,
    netlink_cannot_change_the_hosts_interfaces,
    host_files_keep_their_metadata,
    host_processes_cannot_be_signalled,
    proc_shows_only_the_build,
    kiln_folders_are_hidden,
    daemons_die_with_the_build,
    installs_stay_in_the_build,
);

/// A project with these build commands, never restored from the action cache.
fn project(commands: &[&str]) -> Build {
    Build::new()
        .buildspec(&build_commands(commands))
        .args(["--no-cache"])
}

/// A buildspec with one phase running these commands.
fn phase_spec(phase: &str, commands: &[&str]) -> String {
    build_commands(commands).replace("  build:\n", &format!("  {phase}:\n"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `NAME=value` for `--env`.
fn env_arg(name: &str, value: impl AsRef<str>) -> String {
    format!("{name}={}", value.as_ref())
}

/// The namespaces, and python3 for the attacks written in it.
fn ready_with_python() -> Option<String> {
    if !require_namespaces() {
        return None;
    }
    python3().map(|p| p.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------------------------------------
// Devices, terminals, kernel interfaces

fn device_nodes_cannot_be_made(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let out = host_dir();
    mode.give(out.path());
    let b = project(&[
        "mknod ./blk b 7 0 && echo BLK-MADE || echo BLK-REFUSED",
        "mknod ./chr c 1 3 && echo CHR-MADE || echo CHR-REFUSED",
        "mknod \"$OUT/blk\" b 7 0 && echo OUT-BLK-MADE || echo OUT-BLK-REFUSED",
        "mknod \"$OUT/chr\" c 1 3 && echo OUT-CHR-MADE || echo OUT-CHR-REFUSED",
        // A FIFO is no device: builds may make them.
        "mkfifo ./fifo && echo FIFO-MADE",
    ])
    .args(["--writable", path_str(out.path())])
    .args(["--env", &env_arg("OUT", path_str(out.path()))]);
    let run = mode.run(&b, &[]);
    run.success()
        .sandboxed()
        .said("BLK-REFUSED")
        .said("CHR-REFUSED")
        .said("OUT-BLK-REFUSED")
        .said("OUT-CHR-REFUSED")
        .said("FIFO-MADE");
    for made in ["BLK-MADE", "CHR-MADE"] {
        run.never_said(made);
    }
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "device nodes reached the host: {left:?}");
}

/// A python program that pushes a byte into its own controlling terminal's input (TIOCSTI).
const TIOCSTI_PY: &str = r#"
import errno, fcntl, os, termios
try:
    os.setsid()
except OSError:
    pass
master, slave = os.openpty()
try:
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
except OSError as e:
    print("SCTTY-FAILED errno=%d" % e.errno)
try:
    fcntl.ioctl(slave, termios.TIOCSTI, b"x")
    print("TIOCSTI-ALLOWED")
except OSError as e:
    print("TIOCSTI-EPERM" if e.errno == errno.EPERM else "TIOCSTI-ERRNO-%d" % e.errno)
"#;

#[test]
fn tiocsti_is_refused() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let b = project(&[&format!("{py} tiocsti.py")]).write("tiocsti.py", TIOCSTI_PY);
    b.run()
        .success()
        .sandboxed()
        .said("TIOCSTI-EPERM")
        .never_said("TIOCSTI-ALLOWED");
}

#[test]
fn dev_is_minimal() {
    if !require_namespaces() {
        return;
    }
    let run = project(&[
        "ls -A /dev | sed 's/^/DEV=/'",
        "echo x > /dev/null && echo DEVNULL-WRITTEN",
        "echo URANDOM=$(head -c 8 /dev/urandom | wc -c)",
        "ls -A /dev/pts | sed 's/^/PTS=/'",
    ])
    .run();
    run.success()
        .sandboxed()
        .said("DEVNULL-WRITTEN")
        .said("URANDOM=8")
        .said("PTS=ptmx");
    let allowed = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin",
        "stdout", "stderr", "core", "mqueue",
    ];
    let seen = run.values("DEV=");
    for must_not in [
        "sda", "vda", "nvme0", "kmsg", "mem", "kmem", "port", "loop0",
    ] {
        assert!(
            !seen.iter().any(|d| d == must_not),
            "/dev/{must_not} is in the build: {seen:?}"
        );
    }
    let extra: Vec<_> = seen
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "/dev has more than the minimal set: {extra:?}"
    );
    for must in ["null", "zero", "urandom", "tty", "pts", "ptmx"] {
        assert!(
            seen.iter().any(|d| d == must),
            "/dev/{must} is missing: {seen:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The network

/// Network attacks, each printing `<KIND>@<target>-DONE` or `-FAILED errno=N`. Targets: the
/// build's 127.0.0.1 and its default gateways (where a user-mode stack may map the host's loopback).
const NET_PY: &str = r#"
import socket, sys

def gateways():
    found = []
    try:
        with open("/proc/net/route") as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
                    found.append(socket.inet_ntoa(bytes.fromhex(fields[2])[::-1]))
    except OSError:
        pass
    return found

def attempt(label, action):
    try:
        action()
        print(label + "-DONE")
    except OSError as e:
        print("%s-FAILED errno=%s" % (label, e.errno))

def tcp(host, port, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.settimeout(5)
    s.connect((host, port))
    s.close()

def tfo(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.sendto(b"x", socket.MSG_FASTOPEN, (host, port))
    s.close()

def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(b"x", (host, port))

def unix(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(address)

def raw_icmp():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", ("127.0.0.1", 0))

kind = sys.argv[1]
if kind == "mptcp":
    attempt("MPTCP-SOCKET", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close())
if kind in ("tcp", "mptcp", "tfo", "udp"):
    port = int(sys.argv[2])
    for host in ["127.0.0.1"] + gateways():
        label = "%s@%s" % (kind.upper(), host)
        if kind == "tcp":
            attempt(label, lambda: tcp(host, port))
        elif kind == "mptcp":
            attempt(label, lambda: tcp(host, port, 262))
        elif kind == "tfo":
            attempt(label, lambda: tfo(host, port))
        else:
            attempt(label, lambda: udp(host, port))
elif kind == "unix":
    attempt("UNIX", lambda: unix(sys.argv[2]))
elif kind == "abstract":
    attempt("ABSTRACT", lambda: unix("\0" + sys.argv[2]))
elif kind == "raw":
    attempt("RAW", raw_icmp)
"#;

/// Runs `net.py <args>` in a build with this `--network` mode (None: the default).
fn net_build(py: &str, args: &str, network: Option<&str>) -> Run {
    let mut b = project(&[&format!("{py} net.py {args}")]).write("net.py", NET_PY);
    if let Some(network) = network {
        b = b.args(["--network", network]);
    }
    b.run()
}

/// Whether the host's kernel makes MPTCP sockets at all (so a refusal inside is the sandbox's).
fn host_has_mptcp() -> bool {
    // SAFETY: socket() and close() on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 262);
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    }
}

#[test]
fn tcp_to_the_hosts_loopback_arrives_only_with_host_network() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let listener = HostListener::tcp();
    let args = format!("tcp {}", listener.port());
    for network in [None, Some("none")] {
        net_build(&py, &args, network)
            .success()
            .sandboxed()
            .said("TCP@127.0.0.1-FAILED");
        assert!(
            !listener.arrived(),
            "a build with network {network:?} reached the host's 127.0.0.1"
        );
    }
    // The probe works: with the host's network, it arrives.
    net_build(&py, &args, Some("host"))
        .success()
        .sandboxed()
        .said("TCP@127.0.0.1-DONE");
    assert!(listener.arrived(), "--network host should reach the host");
}

#[test]
fn udp_to_the_hosts_loopback_arrives_only_with_host_network() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let socket = HostListener::udp();
    let args = format!("udp {}", socket.port());
    for network in [None, Some("none")] {
        net_build(&py, &args, network)
            .success()
            .sandboxed()
            .said("UDP@127.0.0.1-");
        assert!(
            !socket.arrived(),
            "a datagram from a build with network {network:?} reached the host's 127.0.0.1"
        );
    }
    net_build(&py, &args, Some("host"))
        .success()
        .sandboxed()
        .said("UDP@127.0.0.1-DONE");
    assert!(socket.arrived(), "--network host should reach the host");
}

#[test]
fn mptcp_sockets_are_refused() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let listener = HostListener::tcp();
    let args = format!("mptcp {}", listener.port());
    let host_mptcp = host_has_mptcp();
    if !host_mptcp {
        eprintln!("NOTE: this kernel has no MPTCP; only the listener is checked");
    }
    // Refused by seccomp even with the host's network, where TCP itself arrives.
    for network in [None, Some("host")] {
        let run = net_build(&py, &args, network);
        run.success()
            .sandboxed()
            .said("MPTCP@127.0.0.1-")
            .never_said("MPTCP@127.0.0.1-DONE");
        if host_mptcp {
            run.said("MPTCP-SOCKET-FAILED");
        }
        assert!(
            !listener.arrived(),
            "an MPTCP connection from a build with network {network:?} reached the host"
        );
    }
}

#[test]
fn tcp_fast_open_does_not_reach_the_host() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let listener = HostListener::tcp();
    let args = format!("tfo {}", listener.port());
    for network in [None, Some("none")] {
        net_build(&py, &args, network)
            .success()
            .sandboxed()
            .said("TFO@127.0.0.1-FAILED");
        assert!(
            !listener.arrived(),
            "TCP Fast Open from a build with network {network:?} reached the host"
        );
    }
}

#[test]
fn unix_sockets_of_the_host_are_out_of_reach() {
    let Some(py) = ready_with_python() else {
        return;
    };
    // The socket's folder is one the build sees through its root (not under its own /tmp); the
    // build may write another folder.
    let dir = host_dir();
    let mut path = dir.path().join("s.sock");
    if path.as_os_str().len() > 100 {
        let short = tempfile::tempdir().unwrap().keep();
        path = short.join("s.sock");
    }
    let by_path = HostListener::unix(&path);
    let name = marker("kiln-test-");
    let by_name = HostListener::abstract_unix(&name);
    let other = host_dir();
    let run = project(&[
        &format!("{py} net.py unix {}", path.display()),
        &format!("{py} net.py abstract {name}"),
    ])
    .write("net.py", NET_PY)
    .args(["--writable", path_str(other.path())])
    .run();
    run.success()
        .sandboxed()
        .said("UNIX-FAILED")
        .said("ABSTRACT-FAILED");
    assert!(
        !by_path.arrived(),
        "the build connected to {}",
        path.display()
    );
    assert!(!by_name.arrived(), "the build connected to @{name}");
}

#[test]
fn the_hosts_interfaces_are_not_the_builds() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let host_netns = namespace("net");
    let host_names = host_interfaces();
    let commands = [
        "echo NETNS=$(readlink /proc/self/ns/net)",
        "for i in /sys/class/net/*; do [ -e \"$i\" ] && echo SYS=${i##*/}; done; true",
        "tail -n +3 /proc/net/dev | cut -d: -f1 | sed 's/^ */DEV=/'",
        &format!("{py} net.py raw"),
    ];
    let run_with = |network: Option<&str>| {
        let mut b = project(&commands).write("net.py", NET_PY);
        if let Some(network) = network {
            b = b.args(["--network", network]);
        }
        let run = b.run();
        run.success().sandboxed();
        run
    };
    let non_lo =
        |names: Vec<String>| -> Vec<String> { names.into_iter().filter(|n| n != "lo").collect() };

    let none = run_with(Some("none"));
    assert_ne!(none.values("NETNS="), [host_netns.as_str()]);
    assert_eq!(
        none.values("DEV="),
        ["lo"],
        "host interfaces: {host_names:?}"
    );
    let sys = non_lo(none.values("SYS="));
    assert!(sys.is_empty(), "/sys shows {sys:?} (host: {host_names:?})");

    // Internet: lo and the user-mode stack's one device, never the host's namespace.
    let internet = run_with(None);
    assert_ne!(internet.values("NETNS="), [host_netns.as_str()]);
    for key in ["DEV=", "SYS="] {
        let seen = non_lo(internet.values(key));
        assert!(
            seen.len() <= 1,
            "{key} the build sees the host's interfaces {seen:?} (host: {host_names:?})"
        );
    }
    internet.said("RAW-FAILED");

    // The probe works: with the host's network, the build is in the host's namespace.
    let host = run_with(Some("host"));
    assert_eq!(host.values("NETNS="), [host_netns.as_str()]);
}

fn netlink_cannot_change_the_hosts_interfaces(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let Some(ip) = require_tool("ip") else {
        return;
    };
    let host_lo = || {
        let out = Command::new(&ip)
            .args(["-o", "addr", "show", "dev", "lo"])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let digits: u64 = unique_digits().parse().unwrap_or(0);
    for (i, network) in ["none", "host"].into_iter().enumerate() {
        let n = digits.wrapping_add(i as u64);
        let addr = format!(
            "127.{}.{}.{}",
            100 + n % 100,
            (n / 100) % 250,
            1 + (n / 25_000) % 250
        );
        assert!(!host_lo().contains(&format!(" {addr}/")));
        let b = project(&[
            &format!("ip addr add {addr}/8 dev lo && echo ADDR-ADDED || echo ADDR-REFUSED"),
            "ip -o addr show dev lo | sed 's/^/LO: /'",
        ])
        .args(["--network", network]);
        let run = mode.run(&b, &[]);
        let reached = host_lo().contains(&format!(" {addr}/"));
        if reached {
            let _ = Command::new(&ip)
                .args(["addr", "del", &format!("{addr}/8"), "dev", "lo"])
                .status();
        }
        run.success().sandboxed();
        assert!(
            !reached,
            "a build with network {network} added {addr} to the host's lo"
        );
        if network == "host" {
            run.said("ADDR-REFUSED");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files of the host

fn host_files_keep_their_metadata(mode: Mode) {
    if !mode.ready() {
        return;
    }
    // One file the build sees through its root, one in a folder exposed read-only.
    let dir = host_dir();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "original\n").unwrap();
    let exposed = host_dir();
    let exposed_victim = exposed.path().join("victim.txt");
    std::fs::write(&exposed_victim, "exposed original\n").unwrap();
    mode.give(dir.path());
    mode.give(exposed.path());
    let before = [FileState::of(&victim), FileState::of(&exposed_victim)];

    let setxattr = match python3() {
        Some(py) => format!(
            "{} -c 'import os,sys; os.setxattr(sys.argv[1], \"user.kiln\", b\"x\")' \"$F\" && echo SETXATTR-DONE-$N",
            py.display()
        ),
        None => "true".into(),
    };
    let attack = format!(
        "N=0; for F in \"$VICTIM\" \"$EXPOSED_VICTIM\"; do N=$((N+1)); \
         chmod 777 \"$F\" || true; chown 1234:1234 \"$F\" || true; \
         touch -d 2001-01-01 \"$F\" || true; {setxattr} || true; chattr +i \"$F\" || true; \
         echo appended >> \"$F\" || true; rm -f \"$F\" || true; done"
    );
    let b = project(&[
        "test -e \"$VICTIM\" && echo SEES-VICTIM",
        "cat \"$EXPOSED_VICTIM\" && echo EXPOSED-READ",
        &attack,
        "touch \"$EXPOSED/new.txt\" && echo EXPOSED-WRITTEN || echo EXPOSED-READ-ONLY",
    ])
    .args(["--expose", path_str(exposed.path())])
    .args(["--env", &env_arg("VICTIM", path_str(&victim))])
    .args([
        "--env",
        &env_arg("EXPOSED_VICTIM", path_str(&exposed_victim)),
    ])
    .args(["--env", &env_arg("EXPOSED", path_str(exposed.path()))]);
    let run = mode.run(&b, &[]);
    for path in [&victim, &exposed_victim] {
        if path.exists() {
            clear_immutable(path);
        }
    }
    run.success()
        .sandboxed()
        .said("SEES-VICTIM")
        .said("exposed original")
        .said("EXPOSED-READ-ONLY");
    assert!(victim.exists(), "the build deleted a file of the host");
    assert!(exposed_victim.exists(), "the build deleted an exposed file");
    assert!(!exposed.path().join("new.txt").exists());
    let after = [FileState::of(&victim), FileState::of(&exposed_victim)];
    assert_eq!(before, after, "the build changed files of the host");
}

#[test]
fn the_workspace_is_writable_and_artifacts_come_out() {
    if !require_namespaces() {
        return;
    }
    let run = Build::new()
        .write("src.txt", "source")
        .buildspec(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi > out.txt\n      - mkdir -p deep/er && cp src.txt deep/er/copy.txt\nartifacts:\n  files:\n    - out.txt\n    - deep/**/*\n",
        )
        .args(["--no-cache"])
        .run();
    run.success().sandboxed();
    assert_eq!(
        run.artifact_files("primary"),
        ["deep/er/copy.txt", "out.txt"]
    );
    assert_eq!(
        std::fs::read_to_string(run.output.join("primary/out.txt")).unwrap(),
        "hi\n"
    );
}

fn installs_stay_in_the_build(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let name = marker("kiln-test-");
    let paths = [
        format!("/usr/local/bin/{name}"),
        format!("/etc/{name}"),
        format!("/root/.cache/{name}"),
        format!("/tmp/{name}"),
    ];
    let writes: Vec<String> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "mkdir -p \"$(dirname {p})\" && echo x > {p} && echo WROTE-{i} || echo REFUSED-{i}"
            )
        })
        .collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    let b = Build::new()
        .buildspec(&phase_spec("install", &writes))
        .args(["--no-cache"]);
    let run = mode.run(&b, &[]);
    let leaked: Vec<&String> = paths.iter().filter(|p| Path::new(p).exists()).collect();
    for p in &leaked {
        let _ = std::fs::remove_file(p);
    }
    run.success().sandboxed().said("WROTE-2").said("WROTE-3");
    if mode.root_mapped() {
        run.said("WROTE-0").said("WROTE-1");
    }
    assert!(leaked.is_empty(), "writes reached the host: {leaked:?}");

    // Another project's build sees none of them.
    let checks: Vec<String> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| format!("test -e {p} && echo PRESENT-{i} || echo ABSENT-{i}"))
        .collect();
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    let next = mode.run(&project(&checks), &[]);
    next.success().sandboxed().never_said("PRESENT-");
    for i in 0..paths.len() {
        next.said(&format!("ABSENT-{i}"));
    }
}

#[test]
fn dpkg_installs_stay_in_the_build() {
    if !require_namespaces() {
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: installing a package in the build needs kiln to run as root");
        return;
    }
    let (Some(dpkg_deb), Some(dpkg)) = (require_tool("dpkg-deb"), require_tool("dpkg")) else {
        return;
    };
    let hello = marker("HELLO-");
    let pkg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pkg.path().join("DEBIAN")).unwrap();
    for dir in [pkg.path().to_path_buf(), pkg.path().join("DEBIAN")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        pkg.path().join("DEBIAN/control"),
        "Package: kiln-test-pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@x>\nDescription: x\n",
    )
    .unwrap();
    let share = pkg.path().join("usr/share/kiln-test-pkg");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), format!("{hello}\n")).unwrap();
    let b = project(&[
        "dpkg -i pkg.deb",
        "dpkg -s kiln-test-pkg | sed 's/^/DPKG: /'",
        "cat /usr/share/kiln-test-pkg/hello",
    ]);
    let built = Command::new(&dpkg_deb)
        .args(["--root-owner-group", "--build"])
        .arg(pkg.path())
        .arg(b.path().join("pkg.deb"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(built.success(), "dpkg-deb --build failed");
    let status_file = Path::new("/var/lib/dpkg/status");
    let status_before = FileState::of(status_file);
    let host_has_it = || {
        Command::new(&dpkg)
            .args(["-s", "kiln-test-pkg"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(
        !host_has_it(),
        "kiln-test-pkg is installed on the host already"
    );

    let run = b.run();
    let leaked = host_has_it();
    if leaked {
        let _ = Command::new(&dpkg)
            .args(["--purge", "kiln-test-pkg"])
            .status();
    }
    run.success()
        .sandboxed()
        .said("DPKG: Status: install ok installed")
        .said(&hello);
    assert!(!leaked, "the package was installed on the host");
    assert!(!Path::new("/usr/share/kiln-test-pkg").exists());
    assert_eq!(FileState::of(status_file), status_before);
}

// ---------------------------------------------------------------------------------------------
// Processes

fn host_processes_cannot_be_signalled(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let host_pidns = namespace("pid");
    // `kill -9 -1` and `pkill kiln` are only sent from a pid namespace of the build's own: from the
    // host's, they would kill the machine's processes.
    let guarded = |attack: &str| {
        format!(
            "if [ \"$(readlink /proc/self/ns/pid)\" = \"$HOST_PIDNS\" ]; then echo SAME-PID-NAMESPACE; else {attack}; fi"
        )
    };
    let mut victim = mode
        .command("sleep")
        .arg("300")
        .spawn()
        .expect("sleep starts");
    let victim_pid = victim.id() as i32;
    let b = project(&[
        "kill -9 \"$VICTIM_PID\" && echo KILLED-VICTIM || echo KILL-VICTIM-FAILED",
        &guarded("kill -9 -1; echo KILL-ALL-SENT"),
    ])
    .args(["--env", &env_arg("VICTIM_PID", victim_pid.to_string())])
    .args(["--env", &env_arg("HOST_PIDNS", &host_pidns)]);
    let run = mode.run(&b, &[]);
    let survived = alive(victim_pid);
    let _ = victim.kill();
    let _ = victim.wait();
    run.proper_result()
        .sandboxed()
        .never_said("SAME-PID-NAMESPACE")
        .never_said("KILLED-VICTIM");
    assert!(survived, "the build killed a process of the host");

    // Killing what runs the build (its parent, anything named kiln) does not keep kiln from ending
    // the build with a result.
    let b = project(&[
        "kill -9 $PPID; echo PARENT-KILL-SENT",
        &guarded("pkill -9 kiln; echo PKILL-SENT"),
        "echo AFTER-KILLS",
    ])
    .args(["--env", &env_arg("HOST_PIDNS", &host_pidns)]);
    let started = Instant::now();
    mode.run(&b, &[])
        .proper_result()
        .sandboxed()
        .never_said("SAME-PID-NAMESPACE");
    assert!(started.elapsed() < Duration::from_secs(60));
}

fn proc_shows_only_the_build(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let dir = host_dir();
    let secrets = dir.path().join(format!("{}.env", marker("kiln-secrets-")));
    std::fs::write(&secrets, "/kiln/test=value\n").unwrap();
    mode.give(dir.path());
    let key = marker("SECRET_MARKER_");
    let b = project(&[
        // Patterns that do not match their own text, so grep does not find itself.
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c 'SECRET_MARKE[R]' | sed 's/^/ENVIRON-HITS=/'",
        "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c 'kiln-secret[s]-' | sed 's/^/CMDLINE-HITS=/'",
        "echo PIDS=$(ls /proc | grep -c '^[0-9][0-9]*$')",
    ])
    .args(["--secrets", path_str(&secrets)])
    .env("AWS_SECRET_ACCESS_KEY", &key);
    let run = mode.run(&b, &[]);
    run.success()
        .sandboxed()
        .said("ENVIRON-HITS=0")
        .said("CMDLINE-HITS=0");
    assert!(!run.stderr.contains(&key));
    let pids: Vec<usize> = run
        .values("PIDS=")
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        matches!(pids.as_slice(), [n] if (1..=20).contains(n)),
        "the build should see only its own few processes, it saw {pids:?}"
    );
}

fn daemons_die_with_the_build(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let dir = host_dir();
    mode.give(dir.path());
    let marks = [dir.path().join("setsid.txt"), dir.path().join("nohup.txt")];
    let stop = dir.path().join("stop");
    // Each daemon stops by itself after a minute, or when the test says so, should it outlive the build.
    let daemon = |mark: &str| {
        format!(
            "sh -c 'i=0; while [ $i -lt 300 ] && [ ! -e \"$STOP\" ]; do echo x >> \"{mark}\"; sleep 0.2; i=$((i+1)); done' > /dev/null 2>&1 &"
        )
    };
    let b = project(&[
        &format!("setsid {}", daemon("$MARK_SETSID")),
        &format!("nohup {}", daemon("$MARK_NOHUP")),
        "sleep 1; echo DAEMONS-STARTED",
    ])
    .args(["--writable", path_str(dir.path())])
    .args(["--env", &env_arg("MARK_SETSID", path_str(&marks[0]))])
    .args(["--env", &env_arg("MARK_NOHUP", path_str(&marks[1]))])
    .args(["--env", &env_arg("STOP", path_str(&stop))]);
    let run = mode.run(&b, &[]);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let first: Vec<u64> = marks.iter().map(|m| size(m)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let second: Vec<u64> = marks.iter().map(|m| size(m)).collect();
    std::fs::write(&stop, "").unwrap();
    run.success().sandboxed().said("DAEMONS-STARTED");
    assert!(
        first.iter().all(|s| *s > 0),
        "the daemons never ran: {first:?}"
    );
    assert_eq!(first, second, "[setsid, nohup] daemons outlived the build");
}

#[test]
fn the_process_limit_holds_and_ends_with_the_build() {
    if !require_namespaces() {
        return;
    }
    let arg = format!("30.{}", unique_digits());
    let run = project(&[&format!(
        "i=0; while [ $i -lt 200 ]; do sleep {arg} & i=$((i+1)); done; echo FORKED-ALL-$i"
    )])
    .args(["--pids-limit", "50"])
    .run();
    let left = survivors(&arg, Duration::from_secs(5));
    run.proper_result().sandboxed();
    let fork_failed = run.output_lines().iter().any(|l| {
        let l = l.to_lowercase();
        !l.starts_with("forked-all")
            && (l.contains("fork") || l.contains("resource temporarily unavailable"))
    });
    assert!(
        run.json["status"] != "SUCCEEDED" || fork_failed,
        "200 processes started under --pids-limit 50\n{}",
        run.stderr
    );
    assert!(left.is_empty(), "processes outlived the build: {left:?}");
}

#[test]
fn the_memory_limit_holds() {
    let Some(py) = ready_with_python() else {
        return;
    };
    let alloc = |mib: usize, word: &str| {
        format!("{py} -c 'b = bytearray({mib}*1024*1024); print(\"{word}\")'")
    };
    project(&[&alloc(512, "ALLOCATED")])
        .args(["--memory", "64M"])
        .run()
        .failure()
        .sandboxed()
        .phase("BUILD", "FAILED")
        .log_has("may use at most 64 MiB of memory: --memory")
        .never_said("ALLOCATED");
    // Within the limit, the same program runs.
    project(&[&alloc(16, "SMALL-ALLOCATED")])
        .args(["--memory", "256M"])
        .run()
        .success()
        .sandboxed()
        .said("SMALL-ALLOCATED");
}

#[test]
fn the_disk_limit_stops_the_build_and_names_it() {
    disk_limit_holds("/tmp/big");
}

#[test]
fn the_disk_limit_holds_the_private_layer_too() {
    // The host's folders are written in the build's private layer (in memory where the kernel
    // allows): it counts against the same limit as the workspace, HOME and /tmp.
    disk_limit_holds("/usr/local/big");
}

fn disk_limit_holds(file: &str) {
    if !require_namespaces() {
        return;
    }
    // 200 MB into the build's `file`, past a 32 MiB limit: every process is killed, the build fails
    // naming the limit, and no later phase runs.
    let spec = |mib: usize| {
        format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - dd if=/dev/zero of={file} bs=1M count={mib} status=none; sleep 3; echo WROTE-ALL\n  post_build:\n    commands:\n      - echo POST-BUILD-RAN\n"
        )
    };
    Build::new()
        .buildspec(&spec(200))
        .args(["--no-cache", "--disk-limit", "32M"])
        .run()
        .failure()
        .sandboxed()
        .phase("BUILD", "FAILED")
        .log_has("went past its disk limit of 32 MiB (--disk-limit)")
        .never_said("WROTE-ALL")
        .never_said("POST-BUILD-RAN");
    // Under the limit, the same build runs to its end.
    Build::new()
        .buildspec(&spec(8))
        .args(["--no-cache", "--disk-limit", "64M"])
        .run()
        .success()
        .said("WROTE-ALL")
        .said("POST-BUILD-RAN");
}

#[test]
fn an_in_place_build_cannot_plant_git_hooks() {
    if !require_namespaces() {
        return;
    }
    // The user's own .git (hooks, config) would run on the host with their next git command: an
    // in-place build sees it read-only, while the rest of the tree stays writable.
    let b = Build::new()
        .buildspec(&build_commands(&[
            "echo 'touch /tmp/pwned' > .git/hooks/pre-commit && echo HOOK-PLANTED || echo HOOK-REFUSED",
            "git config core.fsmonitor 'touch /tmp/pwned' && echo CONFIG-CHANGED || echo CONFIG-REFUSED",
            "echo built > out.txt",
        ]))
        .args(["--in-place", "--no-cache"]);
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(b.path())
        .status()
        .expect("git");
    assert!(git.success());
    let config = std::fs::read_to_string(b.path().join(".git/config")).unwrap();
    let run = b.run();
    run.success()
        .sandboxed()
        .said("HOOK-REFUSED")
        .said("CONFIG-REFUSED")
        .never_said("HOOK-PLANTED");
    assert!(!b.path().join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read_to_string(b.path().join(".git/config")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read_to_string(b.path().join("out.txt")).unwrap(),
        "built\n"
    );
}

#[test]
fn doctor_says_which_sandbox_builds_get() {
    let out = crate::support::kiln()
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in [
        "user namespaces",
        "overlayfs in userns",
        "private layers",
        "idmapped mounts",
        "cgroup v2 delegation",
        "landlock",
        "seccomp",
        "pasta",
    ] {
        assert!(names.contains(&name), "doctor checks no {name}: {names:?}");
    }
    let human = crate::support::kiln().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("sandbox: "), "{text}");
    if !require_namespaces() {
        return;
    }
    // Where builds get namespaces, doctor says so and exits 0, and a build agrees.
    assert!(
        report["sandbox"]
            .as_str()
            .unwrap()
            .starts_with("namespaces"),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(0));
    project(&["true"]).run().success().sandboxed();
}

#[test]
fn a_timed_out_step_kills_every_process_of_the_build() {
    if !require_namespaces() {
        return;
    }
    let digits = unique_digits();
    let arg = format!("300.{digits}");
    let count = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c \"^sleep 300\\.$DIGITS \" | sed 's/^/SURVIVORS=/'";
    let run = Build::new()
        .buildspec(&format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - {}\n      - sleep 300\n  post_build:\n    commands:\n      - {}\n",
            serde_json::to_string(&format!("setsid sleep {arg} > /dev/null 2>&1 & sleep 0.5; echo STARTED")).unwrap(),
            serde_json::to_string(count).unwrap(),
        ))
        .args(["--no-cache", "--step-timeout", "2s"])
        .args(["--env", &env_arg("DIGITS", &digits)])
        .run();
    let left = survivors(&arg, Duration::from_secs(5));
    run.failure()
        .sandboxed()
        .phase("BUILD", "TIMED_OUT")
        .said("STARTED")
        .said("SURVIVORS=0");
    assert!(left.is_empty(), "processes outlived the build: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// Secrets of the host and of kiln

fn kiln_folders_are_hidden(mode: Mode) {
    if !mode.ready() {
        return;
    }
    let mark = marker("STATE_MARKER_");
    let b = Build::outside_tmp()
        .buildspec(&build_commands(&[&format!("echo {mark}")]))
        .args(["--no-cache"]);
    mode.run(&b, &[]).success().sandboxed().said(&mark);
    // The first build's log is in kiln's state folder.
    let logged = crate::support::walkdir(b.state_dir())
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(&mark)));
    assert!(logged, "the state folder should hold the first build's log");

    let state = env_arg("STATE", path_str(b.state_dir()));
    let cache = env_arg("CACHE", path_str(b.cache_dir()));
    let b = b
        .buildspec(&build_commands(&[
            "grep -rl 'STATE_MARKE[R]' \"$STATE\" \"$CACHE\" 2>/dev/null | sed 's/^/LEAK=/'",
            "echo STATE-ENTRIES=$(ls -A \"$STATE\" 2>/dev/null | wc -l)",
            "echo CACHE-ENTRIES=$(ls -A \"$CACHE\" 2>/dev/null | wc -l)",
        ]))
        .args(["--env", &state, "--env", &cache]);
    let run = mode.run(&b, &[]);
    run.success()
        .sandboxed()
        .said("STATE-ENTRIES=0")
        .said("CACHE-ENTRIES=0");
    assert_eq!(run.values("LEAK="), Vec::<String>::new());
}

#[test]
fn the_secrets_file_is_hidden() {
    if !require_namespaces() {
        return;
    }
    let dir = host_dir();
    let secrets = dir.path().join("secrets.env");
    let used = marker("ALPHA_");
    let unused = marker("OMEGA_");
    std::fs::write(
        &secrets,
        format!("/app/used={used}\nprod/unused:key={unused}\n"),
    )
    .unwrap();
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    USED: /app/used\nphases:\n  build:\n    commands:\n      - test -n \"$USED\" && echo USED-RESOLVED\n      - echo ALPHA-HITS=$(cat \"$SECRETS_FILE\" 2>/dev/null | grep -c ALPHA_)\n      - echo OMEGA-HITS=$(cat \"$SECRETS_FILE\" 2>/dev/null | grep -c OMEGA_)\n      - echo DIR-HITS=$(grep -rl OMEGA_ \"$(dirname \"$SECRETS_FILE\")\" 2>/dev/null | wc -l)\n",
        )
        .args(["--no-cache", "--secrets", path_str(&secrets)])
        .args(["--env", &env_arg("SECRETS_FILE", path_str(&secrets))])
        .run();
    run.success()
        .sandboxed()
        .said("USED-RESOLVED")
        .said("ALPHA-HITS=0")
        .said("OMEGA-HITS=0")
        .said("DIR-HITS=0");
    assert!(!run.stderr.contains(&unused));
}

/// Whether `name`, an entry of `parent`, holds a toolchain: a folder on kiln's PATH, or rustup's
/// toolchains (which the rustup proxies on PATH need).
fn on_path(parent: &str, name: &str) -> bool {
    if name == ".rustup" {
        return true;
    }
    let prefix = Path::new(parent).join(name);
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).starts_with(&prefix))
}

#[test]
fn credentials_and_password_hashes_are_hidden() {
    if !require_namespaces() {
        return;
    }
    // kiln's own HOME and a credentials file its environment names, where the build would see them
    // through its root (not under /tmp).
    let home = host_dir();
    let mark = marker("CRED_MARKER_");
    for (file, text) in [
        (
            ".aws/credentials",
            format!("[default]\naws_secret_access_key = {mark}\n"),
        ),
        (".ssh/id_rsa", format!("-----BEGIN {mark}-----\n")),
        (
            ".docker/config.json",
            format!("{{\"auths\": {{\"x\": \"{mark}\"}}}}\n"),
        ),
    ] {
        let path = home.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let other = host_dir();
    let creds = other.path().join("credentials");
    std::fs::write(&creds, format!("[ci]\naws_secret_access_key = {mark}\n")).unwrap();
    let count = |label: &str, files: &str| {
        format!("echo {label}-HITS=$(cat {files} 2>/dev/null | grep -c 'CRED_MARKE[R]')")
    };
    let run = project(&[
        &count("HOME", "~/.aws/credentials ~/.ssh/id_rsa ~/.docker/config.json"),
        &count(
            "ORIG",
            "\"$ORIG_HOME/.aws/credentials\" \"$ORIG_HOME/.ssh/id_rsa\" \"$ORIG_HOME/.docker/config.json\"",
        ),
        &count("CREDS", "\"$CREDS_FILE\""),
        "echo BUILD-HOME=$HOME",
        "ls -A /root | sed 's/^/ROOT=/'",
        "for d in /home/*; do [ -d \"$d\" ] && echo \"HOMEDIR=${d#/home/} $(ls -A \"$d\" 2>/dev/null | wc -l)\"; done; true",
        "awk -F: '{print \"SHADOW=\" $1 \" \" substr($2, 1, 1)}' /etc/shadow",
        "awk -F: '{print \"GSHADOW=\" $1 \" \" substr($2, 1, 1)}' /etc/gshadow 2>/dev/null; true",
    ])
    .env("HOME", path_str(home.path()))
    .env("AWS_SHARED_CREDENTIALS_FILE", path_str(&creds))
    .args(["--env", &env_arg("ORIG_HOME", path_str(home.path()))])
    .args(["--env", &env_arg("CREDS_FILE", path_str(&creds))])
    .run();
    run.success()
        .sandboxed()
        .said("HOME-HITS=0")
        .said("ORIG-HITS=0")
        .said("CREDS-HITS=0")
        .said("BUILD-HOME=/root");
    assert!(!run.stderr.contains(&mark));

    // /root and /home/* show nothing of the host's but toolchains on PATH.
    let host_root: BTreeSet<String> = std::fs::read_dir("/root")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let shown: Vec<String> = run
        .values("ROOT=")
        .into_iter()
        .filter(|e| host_root.contains(e) && !on_path("/root", e))
        .collect();
    assert!(
        shown.is_empty(),
        "the build sees the host's /root: {shown:?}"
    );
    for entry in run.values("HOMEDIR=") {
        let (user, count) = entry.rsplit_once(' ').unwrap();
        assert!(
            count == "0" || on_path("/home", user),
            "the build sees /home/{user} ({count} entries)"
        );
    }

    // Shadow files are readable, without a password hash.
    let shadow = run.values("SHADOW=");
    let gshadow = run.values("GSHADOW=");
    assert!(
        shadow.iter().any(|l| l.starts_with("root ")),
        "the build should read a shadow file: {shadow:?}"
    );
    let hashed: Vec<&String> = shadow
        .iter()
        .chain(gshadow.iter())
        .filter(|l| l.ends_with('$'))
        .collect();
    assert!(
        hashed.is_empty(),
        "password hashes in the build: {hashed:?}"
    );
}

#[test]
fn builds_do_not_see_each_other() {
    if !require_namespaces() {
        return;
    }
    let sync = host_dir();
    let a_mark = marker("A-MARK-");
    let sync_path = path_str(sync.path());
    let a = project(&[
        "echo \"$CODEBUILD_SRC_DIR\" > \"$SYNC/a-src\"",
        "echo x > \"$A_MARK\"; echo x > \"/tmp/$A_MARK\"; echo x > \"/dev/shm/$A_MARK\"; true",
        "touch \"$SYNC/a-ready\"",
        "i=0; while [ ! -e \"$SYNC/b-done\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done",
    ])
    .args(["--writable", sync_path])
    .args(["--env", &env_arg("SYNC", sync_path)])
    .args(["--env", &env_arg("A_MARK", &a_mark)]);
    let mut a_kiln = a
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a_pid = a_kiln.id();
    let started = Instant::now();
    while !sync.path().join("a-ready").exists() {
        if started.elapsed() > Duration::from_secs(60) || a_kiln.try_wait().unwrap().is_some() {
            let _ = a_kiln.kill();
            let out = a.finish(a_kiln.wait_with_output().unwrap());
            panic!("build A never got ready\n{}", out.stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let a_src = std::fs::read_to_string(sync.path().join("a-src"))
        .unwrap()
        .trim()
        .to_string();

    let b = project(&[
        "ls -A /tmp | sed 's/^/TMP=/'",
        "ls -A /dev/shm | sed 's/^/SHM=/'",
        "ls -A \"$A_SRC\" > /dev/null 2>&1 && echo SEES-A-WORKSPACE || echo A-WORKSPACE-HIDDEN",
        "find /tmp /dev/shm /root /var/tmp -name \"$A_MARK\" 2>/dev/null | sed 's/^/FOUND=/'",
        "echo \"B-SRC=$CODEBUILD_SRC_DIR\"",
    ])
    .args(["--env", &env_arg("A_SRC", &a_src)])
    .args(["--env", &env_arg("A_MARK", &a_mark)]);
    let b_kiln = b
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b_pid = b_kiln.id();
    let b_run = b.finish(b_kiln.wait_with_output().unwrap());
    // What the host's /tmp and /dev/shm hold now, while A runs and B is gone.
    let listing = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let host_tmp = listing("/tmp");
    let host_shm = listing("/dev/shm");
    std::fs::write(sync.path().join("b-done"), "").unwrap();
    let a_run = a.finish(a_kiln.wait_with_output().unwrap());

    a_run.success().sandboxed();
    b_run
        .success()
        .sandboxed()
        .said("A-WORKSPACE-HIDDEN")
        .never_said("SEES-A-WORKSPACE");
    assert_eq!(b_run.values("FOUND="), Vec::<String>::new());
    // B's own folders under /tmp may show (its workspace is at its real path); nothing else of the
    // host's /tmp may.
    let first_under_tmp = |p: &str| {
        Path::new(p)
            .strip_prefix("/tmp")
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    };
    let own: BTreeSet<String> = b_run
        .values("B-SRC=")
        .iter()
        .map(String::as_str)
        .chain([
            path_str(b.path()),
            path_str(b.state_dir()),
            path_str(b.cache_dir()),
        ])
        .filter_map(first_under_tmp)
        .collect();
    let seen_tmp: Vec<String> = b_run
        .values("TMP=")
        .into_iter()
        .filter(|n| host_tmp.contains(n) && !own.contains(n))
        .collect();
    assert!(seen_tmp.is_empty(), "B sees the host's /tmp: {seen_tmp:?}");
    let b_session = format!("kiln-session-{b_pid}-");
    let seen_shm: Vec<String> = b_run
        .values("SHM=")
        .into_iter()
        .filter(|n| host_shm.contains(n) && !n.starts_with(&b_session))
        .collect();
    assert!(
        seen_shm.is_empty(),
        "B sees the host's /dev/shm: {seen_shm:?}"
    );
    // The test is meaningful: A's workspace was on the host's /tmp while B looked.
    if let Some(a_top) = first_under_tmp(&a_src) {
        assert!(
            host_tmp.contains(&a_top),
            "A's workspace {a_src} was not on the host"
        );
    }
    if !host_shm
        .iter()
        .any(|n| n.starts_with(&format!("kiln-session-{a_pid}-")))
    {
        eprintln!("NOTE: build A kept no session folder in the host's /dev/shm");
    }
}

// ---------------------------------------------------------------------------------------------
// Switches

#[test]
fn require_sandbox_runs_in_namespaces() {
    if !require_namespaces() {
        return;
    }
    project(&["echo IN-SANDBOX"])
        .args(["--require-sandbox"])
        .run()
        .success()
        .sandboxed()
        .said("IN-SANDBOX");
}

#[test]
fn no_confine_turns_the_sandbox_off() {
    // The control for the attacks above: unconfined, a write to a host folder does reach it.
    let dir = host_dir();
    let target = dir.path().join("written.txt");
    let run = project(&[&format!("echo x > {}", target.display())])
        .args(["--no-confine"])
        .run();
    run.success();
    assert_eq!(run.json["sandbox"], "none", "{}", run.stdout);
    assert!(target.exists(), "--no-confine should run on the host");
}

// ---------------------------------------------------------------------------------------------
// What kiln itself hands the build, or reads and writes for it

#[test]
fn no_descriptor_of_kiln_reaches_a_build() {
    if !require_namespaces() {
        return;
    }
    // kiln's socket to the sandbox, and a descriptor kiln itself inherited (a CI runner's log
    // file, say), are not open in the build's programs.
    let dir = host_dir();
    let inherited = dir.path().join("kiln-fd-marker");
    let file = std::fs::File::create(&inherited).unwrap();
    let b =
        project(&["ls -l /proc/$$/fd | grep -c 'socket:\\|kiln-fd-marker' | sed 's/^/LEAKS=/'"]);
    let mut cmd = b.command(&[]);
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = file.as_raw_fd();
        // SAFETY: dup2 between fork and exec, on a descriptor the test owns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let run = b.finish(cmd.output().unwrap());
    run.success().sandboxed().said("LEAKS=0");
}

#[test]
fn a_cache_key_cannot_make_kiln_read_a_host_file() {
    if !require_namespaces() {
        return;
    }
    // The key is expanded by the build's shell into a file of its session folder, which kiln then
    // reads: a link put there must not lead kiln to a file of the host.
    let dir = host_dir();
    let secret = dir.path().join("secret");
    let mark = marker("KEYLEAK_");
    std::fs::write(&secret, &mark).unwrap();
    let run = Build::new()
        .buildspec(&format!(
            "version: 0.2\ncache:\n  key: \"k-$(ln -sf {} /dev/shm/kiln-session-*/expanded; echo x)\"\n  paths: ['/root/.k/**/*']\nphases:\n  build:\n    commands:\n      - echo ran\n",
            secret.display()
        ))
        .args(["--no-cache"])
        .run();
    run.success().sandboxed().log_lacks(&mark);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), mark);
}

#[test]
fn setuid_files_left_in_host_folders_lose_their_bits() {
    if !require_namespaces() || !is_root() {
        return;
    }
    // The build's root writes an in-place workspace as the host's root: a setuid program left
    // there would run as root on the host.
    let b = Build::new()
        .buildspec(&build_commands(&[
            "cp /bin/true suid-true && chmod 4755 suid-true && cp /bin/true sgid-true && chmod 2755 sgid-true && echo PLANTED",
        ]))
        .args(["--in-place", "--no-cache"]);
    let run = b.run();
    run.success()
        .sandboxed()
        .said("PLANTED")
        .log_has("setuid or setgid file(s) in folders of the host");
    for name in ["suid-true", "sgid-true"] {
        let mode = std::fs::metadata(b.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o6000, 0, "{name} kept mode {mode:o}");
        assert_eq!(mode & 0o777, 0o755);
    }
}

#[test]
fn a_credentials_path_through_a_link_is_hidden_where_it_leads() {
    if !require_namespaces() {
        return;
    }
    let dir = host_dir();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let mark = marker("LINKCRED_");
    std::fs::write(real.join("credentials"), format!("secret = {mark}\n")).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("credlink")).unwrap();
    let run = project(&[
        "echo HITS=$(cat \"$REAL/credentials\" \"$LINKED\" 2>/dev/null | grep -c LINKCRE[D])",
    ])
    .env(
        "AWS_SHARED_CREDENTIALS_FILE",
        path_str(&dir.path().join("credlink/credentials")),
    )
    .args(["--env", &env_arg("REAL", path_str(&real))])
    .args([
        "--env",
        &env_arg("LINKED", path_str(&dir.path().join("credlink/credentials"))),
    ])
    .run();
    run.success().sandboxed().said("HITS=0");
}

#[test]
fn a_secrets_file_inside_the_project_is_not_copied_into_the_workspace() {
    if !require_namespaces() {
        return;
    }
    let mark = marker("INPROJECT_");
    let b = Build::new()
        .write("secrets.env", &format!("/app/x={mark}\n"))
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    X: /app/x\nphases:\n  build:\n    commands:\n      - test -n \"$X\" && echo X-RESOLVED\n      - echo HITS=$(cat secrets.env \"$CODEBUILD_SRC_DIR/secrets.env\" 2>/dev/null | grep -c INPROJEC[T])\n",
        );
    let secrets = b.path().join("secrets.env");
    let run = b
        .args(["--no-cache", "--secrets", path_str(&secrets)])
        .run();
    run.success().sandboxed().said("X-RESOLVED").said("HITS=0");
}

#[test]
fn a_cache_entry_is_never_restored_through_a_link_of_the_project() {
    if !require_namespaces() {
        return;
    }
    // Keys are shared: project A saves vendor/evil; project B holds `vendor -> <host folder>` and
    // uses the same key. Restoring into B must not write into that host folder.
    let key = marker("restore-key-");
    let spec = format!(
        "version: 0.2\ncache:\n  key: {key}\n  paths: ['vendor/**/*']\nphases:\n  build:\n    commands:\n      - mkdir -p vendor && echo evil > vendor/evil || true\n"
    );
    let shared = crate::support::own_cache();
    let a = Build::new().buildspec(&spec).args(["--no-cache"]);
    a.run_with(&["--cache-dir", path_str(shared.path())])
        .success();
    let victim = host_dir();
    let b = Build::new().buildspec(&spec).args(["--no-cache"]);
    std::os::unix::fs::symlink(victim.path(), b.path().join("vendor")).unwrap();
    b.run_with(&["--cache-dir", path_str(shared.path())])
        .log_has("is not restored: it leads through a link");
    assert!(
        !victim.path().join("evil").exists(),
        "the restore wrote through the project's link"
    );
}

#[test]
fn files_only_their_owner_may_read_are_hidden() {
    if !require_namespaces() || !is_root() {
        return;
    }
    // The build's root owns what the host's root owns: a private file of the host's root must not
    // come through the overlay, wherever in /var it is.
    let dir = tempfile::Builder::new()
        .prefix("kiln-private-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let secret = dir.path().join("secret");
    let mark = marker("PRIVATE_");
    std::fs::write(&secret, &mark).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = project(&["echo HITS=$(cat \"$SECRET\" 2>/dev/null | grep -c PRIVAT[E])"])
        .args(["--env", &env_arg("SECRET", path_str(&secret))])
        .run();
    run.success().sandboxed().said("HITS=0");
}

#[test]
fn the_cloud_metadata_service_is_unreachable() {
    let Some(py) = ready_with_python() else {
        return;
    };
    // On a cloud machine it hands out the host's credentials to whoever asks from the host.
    let probe = format!(
        "{py} -c \"import socket\ns = socket.socket(); s.settimeout(3)\ntry:\n    s.connect(('169.254.169.254', 80)); print('METADATA-CONNECTED')\nexcept OSError as e:\n    print('METADATA-ERRNO', e.errno)\""
    );
    for mode in ["internet", "none"] {
        let run = project(&[&probe]).args(["--network", mode]).run();
        run.success().sandboxed().never_said("METADATA-CONNECTED");
        let errno = run.values("METADATA-ERRNO ");
        // No route: EHOSTUNREACH or ENETUNREACH, at once (not a timeout).
        assert!(errno == ["113"] || errno == ["101"], "{mode}: {errno:?}");
    }
}

#[test]
fn a_run_as_phase_keeps_the_shell_session() {
    if !require_namespaces() || !is_root() {
        return;
    }
    // The phase's shell runs as another user of the build, and still carries the session's
    // variables in and out.
    let run = Build::new()
        .buildspec(
            "version: 0.2\nphases:\n  install:\n    commands:\n      - export FROM_ROOT=1\n  build:\n    run-as: nobody\n    commands:\n      - echo AS=$(id -u) FROM_ROOT=$FROM_ROOT\n      - export FROM_NOBODY=2\n  post_build:\n    commands:\n      - echo AFTER=$(id -u) FROM_NOBODY=$FROM_NOBODY\n",
        )
        .args(["--no-cache"])
        .run();
    run.success()
        .sandboxed()
        .said("AS=65534 FROM_ROOT=1")
        .said("AFTER=0 FROM_NOBODY=2");
}

#[test]
fn a_toolchain_on_path_in_a_home_is_usable() {
    if !require_namespaces() {
        return;
    }
    // A home only its owner may enter (/root is 0700): as root, the launcher's id outside could not
    // reach into it, so kiln opens what the build is shown itself.
    // SAFETY: geteuid has no preconditions.
    let home = if unsafe { libc::geteuid() } == 0 {
        std::path::PathBuf::from("/root")
    } else {
        std::path::PathBuf::from(std::env::var("HOME").expect("HOME"))
    };
    let tool = tempfile::Builder::new()
        .prefix(".kiln-test-tool-")
        .tempdir_in(&home)
        .expect("a folder in the home");
    std::fs::set_permissions(tool.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let bin = tool.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("hello-tool"), "#!/bin/sh\necho TOOL-RAN-$1\n").unwrap();
    std::fs::set_permissions(
        bin.join("hello-tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Copy-on-write, as on CodeBuild's images (`pyenv rehash` writes its shims, `pip install`
    // its Python's site-packages): the build writes there and reads it back, the host's folder
    // never changes.
    Build::new()
        .buildspec(&build_commands(&[
            "hello-tool ok",
            &format!(
                "echo planted > {0}/planted && cat {0}/planted && rm {0}/hello-tool && test ! -e {0}/hello-tool && echo REMOVED-IN-BUILD",
                bin.display()
            ),
        ]))
        .env("PATH", &path)
        .run()
        .success()
        .sandboxed()
        .said("TOOL-RAN-ok")
        .said("planted")
        .said("REMOVED-IN-BUILD");
    assert!(
        !bin.join("planted").exists(),
        "the build wrote the host's toolchain"
    );
    assert!(
        bin.join("hello-tool").exists(),
        "the build removed a host file"
    );
}

#[test]
fn sudo_works_for_the_builds_root_and_names_what_it_cannot_do() {
    if !require_namespaces() {
        return;
    }
    // Buildspecs written for CodeBuild's images say `sudo apt-get ...`: the build is root in its
    // sandbox, so sudo runs the command as it is.
    let run = Build::new()
        .buildspec(&build_commands(&[
            "sudo id -u",
            "sudo -E MARK=sudo-env sh -c 'echo $MARK'",
            "sudo -u nobody id -u || echo other-user-refused",
        ]))
        .args(["--no-cache"])
        .run();
    run.success().sandboxed();
    assert_eq!(
        run.output_lines(),
        [
            "0",
            "sudo-env",
            "sudo: kiln's sandbox runs sudo as root only; for user nobody, use run-as in the buildspec",
            "other-user-refused"
        ]
    );
}

#[test]
fn a_build_whose_network_cannot_be_set_up_runs_without_and_says_why() {
    if !require_namespaces() {
        return;
    }
    // pasta sets itself up while the build goes on; the first command waits for it. When it fails
    // (here a pasta that cannot), the build runs without network and the log says why, once.
    let fake = host_dir();
    let pasta = fake.path().join("pasta");
    std::fs::write(
        &pasta,
        "#!/bin/sh\necho 'no tap device for you' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&pasta, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Build::new()
        .buildspec(&build_commands(&["echo first", "echo second"]))
        .args(["--no-cache", "--network", "internet"])
        .env("PATH", &path)
        .run();
    run.success().sandboxed().said("first").said("second");
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("the build has no network: pasta failed: no tap device for you"))
        .count();
    assert_eq!(warnings, 1, "{}", run.stderr);
}

/// Live pasta processes whose pid file lies in a scratch folder of the kiln with this pid.
fn pastas_of(kiln: u32) -> Vec<i32> {
    let needle = format!("kiln-build-{kiln}-");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.iter().any(|a| a.ends_with(b"pasta.pid"))
                    && args
                        .iter()
                        .any(|a| String::from_utf8_lossy(a).contains(&needle))
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

#[test]
fn the_pasta_of_a_killed_build_is_stopped_by_the_next_build() {
    if !require_namespaces() || require_tool("pasta").is_none() {
        return;
    }
    // kiln killed with SIGKILL cannot stop its build's pasta, which does not end with the
    // namespace it serves; the next build, sweeping the dead build's folders, stops it.
    let b = project(&["echo STARTED", "sleep 60"]).args(["--network", "internet"]);
    let log = host_dir();
    let stderr = log.path().join("stderr");
    let mut kiln = b
        .command(&[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("kiln starts");
    // The first command ran: pasta is set up (the first command waits for it).
    let said = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let started = Instant::now();
    while !said().lines().any(|l| l == "STARTED") && started.elapsed() < Duration::from_secs(120) {
        assert!(
            kiln.try_wait().unwrap().is_none(),
            "the build ended early:\n{}",
            said()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = pastas_of(kiln.id());
    kiln.kill().unwrap();
    kiln.wait().unwrap();
    assert!(
        !left.is_empty(),
        "the build's pasta never started:\n{}",
        said()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !pastas_of(kiln.id()).is_empty(),
        "pasta ended by itself with its kiln (this test would then be moot)"
    );
    project(&["true"])
        .args(["--network", "none"])
        .run()
        .success();
    let started = Instant::now();
    while !pastas_of(kiln.id()).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = pastas_of(kiln.id());
    for pid in &still {
        // SAFETY: the test's own leftover pasta.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(still.is_empty(), "pasta {still:?} outlived the sweep");
}
