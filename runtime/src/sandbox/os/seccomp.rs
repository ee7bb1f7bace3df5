//! The seccomp filter of build commands: a further layer behind the user namespace, the dropped
//! capabilities and `no_new_privs`, for the kernel interfaces that stay reachable without
//! privileges and have a history of local exploits (io_uring, eBPF, userfaultfd, keyrings…), for
//! the ones a build has no business calling even where the namespaces already refuse them (mounts,
//! modules, clocks, reboot), and for the few that could leave the sandbox (terminal input
//! injection, a nested user namespace).
//!
//! Everything not listed is allowed: the filter refuses what it knows to be dangerous rather than
//! permitting what it knows to be safe, so no toolchain breaks on a system call nobody thought of.
//! A refused call fails with an error code (`EPERM` unless said otherwise), as the kernel itself
//! would refuse an unprivileged caller, so programs take their usual fallback instead of dying.
//!
//! The filter knows the system call numbers of the 64-bit architecture only: a call through
//! another table (a 32-bit program on x86_64 or aarch64, `int 0x80`) kills the process with
//! SIGSYS, and the x32 calls of x86_64 fail with `ENOSYS`, as on kernels built without x32.
//!
//! The filter is compiled once by [`build`] and installed by [`Filter::install`] on the sandbox's
//! init once it has set the sandbox up: every program the build runs inherits it.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// `IPPROTO_MPTCP`, which the libc crate does not define.
const IPPROTO_MPTCP: u64 = 262;

/// When a listed system call is refused, and with which error.
#[derive(Clone, Copy)]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code) // No table there.
)]
enum Refuse {
    /// Always, with `EPERM`.
    Always,
    /// With `EPERM` when the mode (the argument at this index) makes a block or character device.
    /// FIFOs, sockets and regular files are still made.
    DeviceNode(u8),
    /// With `EPERM` when the ioctl request pushes input into a terminal (`TIOCSTI`, `TIOCLINUX`),
    /// the classic way out of a sandbox that shares the caller's terminal.
    TerminalInjection,
    /// With `EPERM` when the flags (the first argument) ask for a new user namespace, in which a
    /// process would get back every capability the sandbox dropped.
    NewUserNamespace,
    /// Always, with `ENOSYS`: `clone3` passes its flags in memory, where a filter cannot read
    /// them, and the C library falls back on `clone` (which the filter can read) on `ENOSYS`.
    Unimplemented,
    /// With `EPROTONOSUPPORT` when an internet socket asks for MPTCP, so that programs fall back
    /// on plain TCP, as they do on kernels without MPTCP.
    Mptcp,
}

/// The refused system calls of the running architecture: name, number and when.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const TABLE: &[(&str, i64, Refuse)] = &[
    // Interfaces reachable without privileges, and common sources of kernel exploits.
    ("keyctl", libc::SYS_keyctl, Refuse::Always),
    ("add_key", libc::SYS_add_key, Refuse::Always),
    ("request_key", libc::SYS_request_key, Refuse::Always),
    ("bpf", libc::SYS_bpf, Refuse::Always),
    ("perf_event_open", libc::SYS_perf_event_open, Refuse::Always),
    ("userfaultfd", libc::SYS_userfaultfd, Refuse::Always),
    ("io_uring_setup", libc::SYS_io_uring_setup, Refuse::Always),
    ("io_uring_enter", libc::SYS_io_uring_enter, Refuse::Always),
    (
        "io_uring_register",
        libc::SYS_io_uring_register,
        Refuse::Always,
    ),
    // The machine's own business: modules, kexec, clocks, power, swap, accounting, quotas, the
    // kernel log, file handles (which open files by inode, around the mount namespace).
    ("init_module", libc::SYS_init_module, Refuse::Always),
    ("finit_module", libc::SYS_finit_module, Refuse::Always),
    ("delete_module", libc::SYS_delete_module, Refuse::Always),
    ("kexec_load", libc::SYS_kexec_load, Refuse::Always),
    // The number of the generic table, which libc does not define for aarch64 with musl.
    #[cfg(target_arch = "aarch64")]
    ("kexec_file_load", 294, Refuse::Always),
    #[cfg(target_arch = "x86_64")]
    ("kexec_file_load", libc::SYS_kexec_file_load, Refuse::Always),
    ("clock_settime", libc::SYS_clock_settime, Refuse::Always),
    ("clock_adjtime", libc::SYS_clock_adjtime, Refuse::Always),
    ("settimeofday", libc::SYS_settimeofday, Refuse::Always),
    ("reboot", libc::SYS_reboot, Refuse::Always),
    ("swapon", libc::SYS_swapon, Refuse::Always),
    ("swapoff", libc::SYS_swapoff, Refuse::Always),
    ("acct", libc::SYS_acct, Refuse::Always),
    ("quotactl", libc::SYS_quotactl, Refuse::Always),
    ("quotactl_fd", libc::SYS_quotactl_fd, Refuse::Always),
    ("lookup_dcookie", libc::SYS_lookup_dcookie, Refuse::Always),
    (
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        Refuse::Always,
    ),
    (
        "name_to_handle_at",
        libc::SYS_name_to_handle_at,
        Refuse::Always,
    ),
    ("nfsservctl", libc::SYS_nfsservctl, Refuse::Always),
    ("syslog", libc::SYS_syslog, Refuse::Always),
    ("vhangup", libc::SYS_vhangup, Refuse::Always),
    // The sandbox's own shape: its mounts and its namespaces are set before the command starts.
    ("pivot_root", libc::SYS_pivot_root, Refuse::Always),
    ("mount", libc::SYS_mount, Refuse::Always),
    ("umount2", libc::SYS_umount2, Refuse::Always),
    ("fsopen", libc::SYS_fsopen, Refuse::Always),
    ("fsconfig", libc::SYS_fsconfig, Refuse::Always),
    ("fsmount", libc::SYS_fsmount, Refuse::Always),
    ("fspick", libc::SYS_fspick, Refuse::Always),
    ("open_tree", libc::SYS_open_tree, Refuse::Always),
    ("move_mount", libc::SYS_move_mount, Refuse::Always),
    ("mount_setattr", libc::SYS_mount_setattr, Refuse::Always),
    ("setns", libc::SYS_setns, Refuse::Always),
    // Refused for some arguments only.
    #[cfg(target_arch = "x86_64")]
    ("mknod", libc::SYS_mknod, Refuse::DeviceNode(1)),
    ("mknodat", libc::SYS_mknodat, Refuse::DeviceNode(2)),
    ("ioctl", libc::SYS_ioctl, Refuse::TerminalInjection),
    ("unshare", libc::SYS_unshare, Refuse::NewUserNamespace),
    // The flags are the first argument of clone on both architectures (the argument order of
    // clone differs between architectures, but not on these two).
    ("clone", libc::SYS_clone, Refuse::NewUserNamespace),
    ("clone3", libc::SYS_clone3, Refuse::Unimplemented),
    ("socket", libc::SYS_socket, Refuse::Mptcp),
];

/// Elsewhere there is no filter, and [`build`] says so.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TABLE: &[(&str, i64, Refuse)] = &[];

/// The names of [`TABLE`], for [`refused`].
static NAMES: [&str; TABLE.len()] = names();

const fn names<const N: usize>() -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = TABLE[i].0;
        i += 1;
    }
    names
}

/// The names of the system calls the filter refuses on the running architecture, for `kiln doctor`
/// and the README.
///
/// Most are refused whatever their arguments; `mknod` and `mknodat` only for block and character
/// devices, `ioctl` only for `TIOCSTI` and `TIOCLINUX`, `unshare` and `clone` only for a new user
/// namespace, `socket` only for MPTCP (with `EPROTONOSUPPORT`), and `clone3` always but with
/// `ENOSYS`, so that the C library falls back on `clone`.
pub fn refused() -> &'static [&'static str] {
    &NAMES
}

/// A compiled filter for build commands.
#[derive(Debug, Clone)]
pub struct Filter {
    /// One BPF program per error code (seccompiler gives a filter a single action on a match),
    /// plus the x32 guard on x86_64. All are installed: for each system call the kernel runs every
    /// program and takes the most restrictive answer, and since each program allows what it does
    /// not refuse, together they refuse exactly what one of them refuses.
    programs: Vec<BpfProgram>,
}

/// Compiles the filter for the running architecture (x86_64 and aarch64).
pub fn build() -> Result<Filter, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        other => {
            return Err(format!(
                "kiln has no seccomp filter for {other}: build commands can be filtered on x86_64 \
                 and aarch64 only"
            ));
        }
    };
    let compile_err =
        |e: &dyn std::fmt::Display| format!("kiln could not compile its seccomp filter: {e}");
    let dword = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| compile_err(&e))
    };
    let rule = |conditions: Vec<SeccompCondition>| {
        SeccompRule::new(conditions).map_err(|e| compile_err(&e))
    };

    let mut eperm = BTreeMap::new();
    let mut enosys = BTreeMap::new();
    let mut eprotonosupport = BTreeMap::new();
    for &(_, number, refuse) in TABLE {
        match refuse {
            // No rule at all means: whatever the arguments.
            Refuse::Always => {
                eperm.insert(number, Vec::new());
            }
            Refuse::Unimplemented => {
                enosys.insert(number, Vec::new());
            }
            // The kernel reads the mode as 16 bits: the file type is `mode & S_IFMT`, and only an
            // exact S_IFCHR or S_IFBLK makes a device (other values are regular files, FIFOs,
            // sockets, or EINVAL).
            Refuse::DeviceNode(arg) => {
                let is = |kind: libc::mode_t| {
                    dword(
                        arg,
                        SeccompCmpOp::MaskedEq(u64::from(libc::S_IFMT)),
                        u64::from(kind),
                    )
                };
                eperm.insert(
                    number,
                    vec![
                        rule(vec![is(libc::S_IFCHR)?])?,
                        rule(vec![is(libc::S_IFBLK)?])?,
                    ],
                );
            }
            // The kernel reads the request as an unsigned int, so a 32-bit comparison
            // (seccompiler's Dword loads only the low half of the argument) is the right one: a
            // request with garbage in its upper half reaches the kernel as the same request, and
            // is caught the same way.
            Refuse::TerminalInjection => {
                let is = |request: u32| dword(1, SeccompCmpOp::Eq, u64::from(request));
                eperm.insert(
                    number,
                    vec![
                        rule(vec![is(libc::TIOCSTI as u32)?])?,
                        rule(vec![is(libc::TIOCLINUX as u32)?])?,
                    ],
                );
            }
            // CLONE_NEWUSER lies in the low half of the flags, whatever else is set.
            Refuse::NewUserNamespace => {
                let newuser = libc::CLONE_NEWUSER as u64;
                eperm.insert(
                    number,
                    vec![rule(vec![dword(
                        0,
                        SeccompCmpOp::MaskedEq(newuser),
                        newuser,
                    )?])?],
                );
            }
            // The domain and the protocol are ints.
            Refuse::Mptcp => {
                let mptcp = |domain: libc::c_int| {
                    rule(vec![
                        dword(0, SeccompCmpOp::Eq, domain as u64)?,
                        dword(2, SeccompCmpOp::Eq, IPPROTO_MPTCP)?,
                    ])
                };
                eprotonosupport.insert(number, vec![mptcp(libc::AF_INET)?, mptcp(libc::AF_INET6)?]);
            }
        }
    }

    let mut programs = Vec::new();
    for (rules, errno) in [
        (eperm, libc::EPERM),
        (enosys, libc::ENOSYS),
        (eprotonosupport, libc::EPROTONOSUPPORT),
    ] {
        if rules.is_empty() {
            continue;
        }
        // Each program starts by checking the architecture of the call and kills the process on
        // any other (a 32-bit program, or `int 0x80` from a 64-bit one): the numbers of a denylist
        // mean nothing in another architecture's table.
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| compile_err(&e))?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| compile_err(&e))?);
    }
    if arch == TargetArch::x86_64 {
        programs.push(x32_guard());
    }
    Ok(Filter { programs })
}

/// On x86_64, the x32 ABI enters the kernel with the 64-bit architecture but with bit 30 set in the
/// system call number, so the numbers of the other programs would not match its calls: this program
/// refuses every x32 call with `ENOSYS`, which is what kernels built without x32 answer anyway.
fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    /// `AUDIT_ARCH_X86_64`, which the libc crate does not define.
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// `__X32_SYSCALL_BIT`.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // The offsets of `nr` and `arch` in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        op(LOAD, ARCH, 0, 0),
        // Other architectures are left to the other programs, which kill them: on to 5.
        op(JEQ, AUDIT_ARCH_X86_64, 0, 3),
        op(LOAD, NR, 0, 0),
        op(JGE, X32_SYSCALL_BIT, 0, 1),
        op(RET, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32, 0, 0),
        op(RET, libc::SECCOMP_RET_ALLOW, 0, 0),
    ]
}

impl Filter {
    /// Installs the filter on the calling thread, after setting `no_new_privs` (which the kernel
    /// requires of an unprivileged caller). Makes only system calls and allocates nothing, so it is
    /// safe between fork and exec.
    ///
    /// After an error the filter may be partly installed: the command must not run.
    pub fn install(&self) -> io::Result<()> {
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for program in &self.programs {
            let fprog = libc::sock_fprog {
                // seccompiler refuses programs longer than the kernel's 4096 instructions.
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads the program through `fprog` (both
            // alive for the call) and copies it; it writes nothing. seccompiler's `sock_filter` is
            // `repr(C)` with the same fields as the kernel's (and libc's) `struct sock_filter`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &fprog as *const libc::sock_fprog,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// How many BPF instructions, all programs together (for `kiln doctor`).
    #[allow(clippy::len_without_is_empty)] // A filter is never empty.
    pub fn len(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::*;

    /// The outcome of a system call as a child's exit code: 0 for success, the errno otherwise.
    fn outcome(rc: libc::c_long) -> i32 {
        if rc >= 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(255)
        }
    }

    /// Runs `probe` in a forked child, under `filter` when one is given, and returns its exit code.
    ///
    /// The test harness is multi-threaded, so the child may only make system calls: `probe` must
    /// not allocate, lock or panic (everything it needs is made before the fork).
    fn in_child(filter: Option<&Filter>, probe: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only installs the filter (system calls only), runs the probe (system
        // calls only) and leaves with _exit, which runs no destructor and no atexit handler.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = match filter.map_or(Ok(()), Filter::install) {
                Ok(()) => probe(),
                Err(_) => 254,
            };
            // SAFETY: ends the child without touching any state it shares with the parent.
            unsafe { libc::_exit(code) }
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` outlives the call.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                break;
            }
            assert_eq!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::Interrupted
            );
        }
        assert!(
            libc::WIFEXITED(status),
            "the child did not exit: {status:#x}"
        );
        libc::WEXITSTATUS(status)
    }

    /// The outcome of `probe` under the filter.
    fn filtered(probe: impl FnOnce() -> i32) -> i32 {
        let filter = build().unwrap();
        in_child(Some(&filter), probe)
    }

    /// Asserts that `probe` fails with `errno` under the filter, and that without it the kernel
    /// answers `kernel`, which shows that the refusal is the filter's. Without the filter the call
    /// may also fail with `errno` already, when the tests run under an outer sandbox that refuses
    /// it too (Docker's default profile refuses clone3 with ENOSYS, for one).
    fn assert_filtered(probe: impl Fn() -> i32, kernel: i32, errno: i32) {
        let unfiltered = in_child(None, &probe);
        assert!(
            unfiltered == kernel || unfiltered == errno,
            "without the filter: {unfiltered}, expected {kernel}"
        );
        assert_eq!(filtered(&probe), errno);
    }

    fn cstring(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    fn mknodat(path: &CString, mode: libc::mode_t, dev: libc::dev_t) -> i32 {
        let (cwd, path) = (libc::AT_FDCWD, path.as_ptr());
        // SAFETY: `path` is a valid C string, alive for the call.
        outcome(unsafe { libc::syscall(libc::SYS_mknodat, cwd, path, mode, dev) })
    }

    #[test]
    fn compiles_for_this_machine() {
        let filter = build().unwrap();
        assert!(filter.len() > 0 && filter.programs.iter().all(|p| p.len() < 4096));
        assert!(refused().contains(&"keyctl") && refused().contains(&"clone3"));
        assert!(!refused().contains(&"ptrace") && !refused().contains(&"personality"));
    }

    #[test]
    fn refuses_device_nodes_but_makes_fifos_and_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let [device, block, fifo, socket] =
            ["null", "loop", "fifo", "socket"].map(|name| cstring(&dir.path().join(name)));
        let (chr, blk) = (libc::S_IFCHR | 0o600, libc::S_IFBLK | 0o600);
        let null = libc::makedev(1, 3);
        assert_eq!(filtered(|| mknodat(&device, chr, null)), libc::EPERM);
        assert_eq!(
            filtered(|| mknodat(&block, blk, libc::makedev(7, 0))),
            libc::EPERM
        );
        // The kernel reads 16 bits of mode: the bits above change nothing.
        assert_eq!(
            filtered(|| mknodat(&device, 0xabc_0000 | chr, null)),
            libc::EPERM
        );
        assert_eq!(filtered(|| mknodat(&fifo, libc::S_IFIFO | 0o600, 0)), 0);
        assert_eq!(filtered(|| mknodat(&socket, libc::S_IFSOCK | 0o600, 0)), 0);
        let exists = |name| dir.path().join(name).exists();
        assert!(!exists("null") && !exists("loop") && exists("fifo") && exists("socket"));

        // The refusal is the filter's, not a missing privilege: in a directory that does not
        // exist, the kernel alone answers ENOENT.
        let missing = cstring(&dir.path().join("missing/null"));
        assert_filtered(|| mknodat(&missing, chr, null), libc::ENOENT, libc::EPERM);
        #[cfg(target_arch = "x86_64")]
        {
            let mknod = || {
                // SAFETY: `missing` is a valid C string, alive for the call.
                outcome(unsafe { libc::syscall(libc::SYS_mknod, missing.as_ptr(), blk, 0) })
            };
            assert_filtered(mknod, libc::ENOENT, libc::EPERM);
        }
    }

    #[test]
    fn refuses_terminal_injection() {
        // fd 0 is /dev/null in the child, whatever the tests run under, so the kernel alone
        // answers ENOTTY and EPERM can only come from the filter.
        let null = std::fs::File::open("/dev/null").unwrap();
        let null = null.as_raw_fd();
        let ioctl = |request: u64| {
            let mut buffer = [b'x'; 64];
            // SAFETY: dup2 only replaces fd 0 of the child; the request reads or writes at most
            // `buffer`, which is larger than a termios.
            unsafe {
                libc::dup2(null, 0);
                outcome(libc::syscall(
                    libc::SYS_ioctl,
                    0,
                    request,
                    buffer.as_mut_ptr(),
                ))
            }
        };
        let [tiocsti, tioclinux, tcgets] =
            [libc::TIOCSTI, libc::TIOCLINUX, libc::TCGETS].map(|r| u64::from(r as u32));
        assert_filtered(|| ioctl(tiocsti), libc::ENOTTY, libc::EPERM);
        assert_filtered(|| ioctl(tioclinux), libc::ENOTTY, libc::EPERM);
        // The kernel reads the request as 32 bits, and so does the filter.
        let garbage = 0xdead_beef_0000_0000 | tiocsti;
        assert_filtered(|| ioctl(garbage), libc::ENOTTY, libc::EPERM);
        // Other requests reach the kernel.
        assert_eq!(filtered(|| ioctl(tcgets)), libc::ENOTTY);
    }

    #[test]
    fn refuses_new_user_namespaces() {
        let unshare = |flags: libc::c_int| {
            // SAFETY: unshare takes integers only; it changes the child alone.
            outcome(unsafe { libc::syscall(libc::SYS_unshare, flags as libc::c_ulong) })
        };
        assert_eq!(filtered(|| unshare(libc::CLONE_NEWUSER)), libc::EPERM);
        let newns = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        assert_eq!(filtered(|| unshare(newns)), libc::EPERM);
        assert_eq!(filtered(|| unshare(0)), 0);
        // Other namespaces are the kernel's to refuse or not (the tests may run as root or not).
        let unfiltered = in_child(None, || unshare(libc::CLONE_NEWUTS));
        assert_eq!(filtered(|| unshare(libc::CLONE_NEWUTS)), unfiltered);

        // CLONE_NEWUSER with CLONE_FS is invalid, so the kernel alone answers EINVAL (and makes
        // no process, should the filter let the call through).
        let clone = || {
            let flags = libc::CLONE_NEWUSER | libc::CLONE_FS | libc::SIGCHLD;
            // SAFETY: clone with a null stack is fork; these flags make it fail before anything.
            outcome(unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0, 0, 0, 0) })
        };
        assert_filtered(clone, libc::EINVAL, libc::EPERM);

        // A plain fork (clone with SIGCHLD) still works.
        let fork = || {
            // SAFETY: clone with a null stack and SIGCHLD is fork; the grandchild leaves at once
            // with _exit, and the child waits for it.
            unsafe {
                let pid =
                    libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid < 0 {
                    return outcome(pid);
                }
                let mut status = 0;
                libc::waitpid(pid as libc::pid_t, &mut status, 0);
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    0
                } else {
                    253
                }
            }
        };
        assert_eq!(filtered(fork), 0);
    }

    #[test]
    fn clone3_is_unimplemented() {
        let clone3 = || {
            // SAFETY: clone3 with a null argument and size 0 fails before reading anything.
            outcome(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) })
        };
        assert_filtered(clone3, libc::EINVAL, libc::ENOSYS);
    }

    #[test]
    fn mptcp_falls_back_on_tcp() {
        let socket = |domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int| {
            // SAFETY: socket takes integers only; the socket is closed before returning.
            unsafe {
                let fd = libc::socket(domain, kind, protocol);
                if fd >= 0 {
                    libc::close(fd);
                }
                outcome(fd.into())
            }
        };
        let (inet, inet6, stream) = (libc::AF_INET, libc::AF_INET6, libc::SOCK_STREAM);
        let mptcp = IPPROTO_MPTCP as libc::c_int;
        assert_eq!(
            filtered(|| socket(inet, stream, mptcp)),
            libc::EPROTONOSUPPORT
        );
        let cloexec = stream | libc::SOCK_CLOEXEC;
        assert_eq!(
            filtered(|| socket(inet6, cloexec, mptcp)),
            libc::EPROTONOSUPPORT
        );
        assert_eq!(filtered(|| socket(inet, stream, 0)), 0);
        assert_eq!(filtered(|| socket(inet, stream, libc::IPPROTO_TCP)), 0);
        assert_eq!(filtered(|| socket(libc::AF_UNIX, stream, 0)), 0);
    }

    #[test]
    fn refuses_the_listed_calls() {
        const KEYCTL_GET_KEYRING_ID: libc::c_ulong = 0;
        const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
        let keyctl = || {
            let (op, id) = (KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING);
            // SAFETY: KEYCTL_GET_KEYRING_ID takes integers only.
            outcome(unsafe { libc::syscall(libc::SYS_keyctl, op, id, 0) })
        };
        assert_eq!(filtered(keyctl), libc::EPERM);
        // An invalid descriptor: the kernel alone answers EBADF.
        // SAFETY: setns takes integers only.
        let setns = || outcome(unsafe { libc::syscall(libc::SYS_setns, -1, 0) });
        assert_filtered(setns, libc::EBADF, libc::EPERM);
        let null = std::ptr::null::<u8>();
        // SAFETY: io_uring_setup with a null parameter block fails before reading it.
        let io_uring = || outcome(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, null) });
        assert_eq!(filtered(io_uring), libc::EPERM);
        // SAFETY: bpf with a null attribute fails before reading it.
        let bpf = || outcome(unsafe { libc::syscall(libc::SYS_bpf, 0, null, 0) });
        assert_eq!(filtered(bpf), libc::EPERM);
    }

    #[test]
    fn allows_debuggers_and_personality() {
        // SAFETY: personality(0xffffffff) only queries the current personality.
        let personality = || outcome(unsafe { libc::syscall(libc::SYS_personality, u32::MAX) });
        assert_eq!(filtered(personality), 0);
        // A pid that cannot exist: the kernel answers ESRCH, not the filter EPERM.
        let ptrace = || {
            let (peek, pid) = (libc::PTRACE_PEEKDATA, i32::MAX);
            // SAFETY: PTRACE_PEEKDATA of a missing process reads nothing.
            outcome(unsafe { libc::syscall(libc::SYS_ptrace, peek, pid, 0, 0) })
        };
        assert_eq!(filtered(ptrace), libc::ESRCH);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn refuses_x32_calls() {
        // Most kernels are built without x32 and answer ENOSYS themselves, so check that the guard
        // is there too.
        assert_eq!(build().unwrap().programs.last(), Some(&x32_guard()));
        // SAFETY: getpid takes no argument, whatever its ABI.
        let getpid = || outcome(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) });
        assert_eq!(filtered(getpid), libc::ENOSYS);
    }
}
