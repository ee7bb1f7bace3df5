//! The session shell: one `sh` per build, started at its first command, that forks a subshell for
//! each command line instead of kiln starting a new `sh` each time.
//!
//! The shell plugin runs each buildspec command as `sh -c SCRIPT` with the session's environment and
//! directory (CodeBuild 0.2's semantics: a fresh shell per command, the session carried over). Most of
//! what a `sh -c` costs is its start: exec, the dynamic loader, libc's and the shell's set-up (about
//! 0.4 ms of the 0.6 ms a `sh -c true` takes on a small machine); a fork of a shell that has already
//! started costs a fraction of that. So the launcher starts dash once, with an empty environment, in
//! `/`, and dash waits: for each command the launcher writes a small program into a memfd the shell
//! holds as descriptor 5 (close the shell's own descriptors, change to the command's directory,
//! export the command's environment, `eval` the script), writes a line on descriptor 3, and the
//! shell runs that program in a subshell and writes its status on descriptor 4.
//!
//! The subshell starts as `sh -c` would: its parent never ran a command, set an option, a trap or a
//! variable but its own loop counter (unset before the script runs), so the script sees dash's
//! start-up state with the command's environment. What differs: `$$` is the session shell's pid (as
//! in any subshell), an error message names `eval` (`sh: 1: eval: x: not found`), and a program that
//! kills the shell's process group (`kill 0`) ends the session shell too, which the next command
//! starts again.
//!
//! Only commands that run exactly so take this way ([`eligible`]): `[sh, -c, script]` where `sh` is
//! dash, with no stdin, whose stdout is not captured nor told from stderr, environment names that are plain shell names other than those dash sets
//! itself at start (`IFS`, `OPTIND`, `PPID`, `LINENO`), and a `PWD`, if any, naming the directory. Any
//! other command starts as its own process, as before.
//!
//! Output: the shell's stdout and stderr are one pipe to the launcher (so a command's lines keep the
//! order it wrote them in: only commands whose log does not tell the streams apart come here), which
//! copies it into the current command's stdout pipe to kiln while it runs. When the status arrives, everything the subshell
//! wrote is in those pipes already (a write completes before its writer exits): the launcher copies
//! it over and closes the command's pipes, so kiln sees their end at once, even when a background
//! process lives on. What such a process writes later goes to the next command's log, as on CodeBuild.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// What the session shell runs: wait for a line on 3, run the program on 5 in a subshell, say its
/// status on 4.
const LOOP: &str =
    "while read -r __kiln_n <&3; do ( . /proc/self/fd/5 ); echo \"$?\" >&4; done; exit 0";

/// Names dash sets at its start whatever the environment says (or reads specially): a command whose
/// environment has one starts as `sh -c`.
const SET_BY_DASH: &[&str] = &["IFS", "OPTIND", "PPID", "LINENO"];

/// The script of `argv` when the command can run in the session shell; `None` for a command that
/// starts as its own process.
pub fn eligible<'a>(argv: &'a [String], env: &[(String, String)], cwd: &Path) -> Option<&'a str> {
    let [_, flag, script] = argv else {
        return None;
    };
    if flag != "-c" || script.contains('\0') {
        return None;
    }
    let cwd = cwd.to_str()?;
    for (name, value) in env {
        if !is_name(name) || SET_BY_DASH.contains(&name.as_str()) || name.starts_with("__kiln_") {
            return None;
        }
        if name == "PWD" && value != cwd {
            return None;
        }
        if value.contains('\0') {
            return None;
        }
    }
    Some(script)
}

/// A shell variable name.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `exe` is dash (`/bin/sh` on Debian and Ubuntu is a link to it).
pub fn is_dash(exe: &Path) -> bool {
    std::fs::canonicalize(exe).is_ok_and(|p| p.file_name().is_some_and(|n| n == "dash"))
}

/// Single-quotes a word for sh.
fn quote(out: &mut Vec<u8>, word: &str) {
    out.push(b'\'');
    for part in word.split('\'').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"'\\''");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'\'');
}

/// The program a subshell runs for one command: it becomes what `sh -c script` started with `env`
/// in `cwd` would be, then runs the script.
pub fn program(env: &[(String, String)], cwd: &Path, script: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(script.len() + env.len() * 64 + 256);
    // The shell's descriptors are not the command's; its loop counter is not the script's.
    out.extend_from_slice(b"exec 3<&- 4>&- 5<&-\nunset __kiln_n\n");
    // `sh -c` keeps a PWD from its environment that names its directory, else takes the physical path.
    let logical = env.iter().any(|(k, _)| k == "PWD");
    out.extend_from_slice(if logical { b"cd -- " } else { b"cd -P -- " });
    quote(&mut out, &cwd.to_string_lossy());
    out.extend_from_slice(b" || exit 2\n");
    // `cd` set OLDPWD to the shell's own directory.
    if !env.iter().any(|(k, _)| k == "OLDPWD") {
        out.extend_from_slice(b"unset OLDPWD\n");
    }
    for (name, value) in env {
        out.extend_from_slice(b"export ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        quote(&mut out, value);
        out.push(b'\n');
    }
    out.extend_from_slice(b"__kiln_c=");
    quote(&mut out, script);
    // The variable is gone before the script runs: `eval` gets its text, expanded. The `exit` (with
    // the script's status) ends the program there: the memfd is rewritten in place, not truncated,
    // so what follows may be the end of a longer earlier one.
    out.extend_from_slice(b"\neval \"unset __kiln_c; $__kiln_c\"\nexit\n");
    out
}

/// How the launcher starts a program with extra descriptors (3, 4, 5…): its pid.
pub type Spawner<'a> = dyn FnMut(&CString, &[RawFd; 2], &[RawFd]) -> io::Result<i32> + 'a;

/// The command the session shell runs now.
struct Current {
    id: u64,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

/// A session shell and the command it runs.
pub struct Shell {
    pub pid: i32,
    /// The program it runs (as found on `PATH`) and as whom: a command for another shell or user
    /// starts as its own process.
    pub exe: PathBuf,
    pub run_as: Option<(u32, u32)>,
    requests: OwnedFd,
    status: OwnedFd,
    program: std::fs::File,
    /// The read end of the shell's stdout and stderr.
    out: OwnedFd,
    line: Vec<u8>,
    /// The status pipe reached its end (the shell is gone, its exit not reaped yet).
    closed: bool,
    current: Option<Current>,
}

/// A pipe ([`super::wire::pipe`]), its read end non-blocking when `nonblocking_read` (the write end
/// stays blocking: it is the shell's).
fn pipe(nonblocking_read: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = super::wire::pipe(0)?;
    if nonblocking_read {
        // SAFETY: sets a flag on a live descriptor.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    Ok((r, w))
}

impl Shell {
    /// Starts dash (`exe`) as a session shell through `spawn`.
    pub fn start(
        exe: &Path,
        run_as: Option<(u32, u32)>,
        spawn: &mut Spawner<'_>,
    ) -> io::Result<Shell> {
        let (requests_r, requests) = pipe(false)?;
        let (status, status_w) = pipe(true)?;
        // stdout and stderr are one pipe: a command's lines come in the order it wrote them (two
        // pipes would lose it whenever both hold something when the launcher wakes).
        let (out, out_w) = pipe(true)?;
        // SAFETY: memfd_create returns a new descriptor, owned from here on.
        let program = unsafe {
            let fd = libc::memfd_create(c"kiln-command".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            std::fs::File::from_raw_fd(fd)
        };
        let exe_c = CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the shell's path")
        })?;
        let pid = spawn(
            &exe_c,
            &[out_w.as_raw_fd(), out_w.as_raw_fd()],
            &[
                requests_r.as_raw_fd(),
                status_w.as_raw_fd(),
                program.as_raw_fd(),
            ],
        )?;
        Ok(Shell {
            pid,
            exe: exe.to_path_buf(),
            run_as,
            requests,
            status,
            program,
            out,
            line: Vec::new(),
            closed: false,
            current: None,
        })
    }

    /// The argv the shell is started with.
    pub fn argv() -> [&'static str; 3] {
        ["sh", "-c", LOOP]
    }

    /// Whether a command runs now.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Runs one command (`program`'s text) with its output going to the first two of `fds`, which
    /// it takes once the shell has the command (on an error they are left for another way).
    pub fn run(&mut self, id: u64, program: &[u8], fds: &mut Vec<OwnedFd>) -> io::Result<()> {
        if self.current.is_some() || self.closed || fds.len() < 2 {
            return Err(io::Error::other("the session shell is not free"));
        }
        use std::os::unix::fs::FileExt;
        self.program.write_all_at(program, 0)?;
        write_all(self.requests.as_raw_fd(), b"\n")?;
        let mut taken = fds.drain(..2);
        let (out, err) = (taken.next(), taken.next());
        self.current = Some(Current { id, out, err });
        Ok(())
    }

    /// The descriptors to wait on: the status always (until it ends), the output while a command runs
    /// (between commands, what background processes write waits in the pipes).
    pub fn poll_fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::with_capacity(3);
        if !self.closed {
            fds.push(self.status.as_raw_fd());
        }
        if self.current.is_some() {
            fds.push(self.out.as_raw_fd());
        }
        fds
    }

    /// Copies what is waiting in the shell's output pipes into the current command's, a bounded
    /// amount at a time (a program that writes without end must not keep the launcher from kiln's
    /// requests).
    pub fn copy_output(&mut self) {
        let Some(current) = &mut self.current else {
            return;
        };
        copy(&self.out, &mut current.out, 256 * 1024);
    }

    /// Reads the status pipe: the finished command's id and exit code, once its line is complete.
    pub fn read_status(&mut self) -> Option<(u64, i32)> {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live buffer.
            let n =
                unsafe { libc::read(self.status.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => {
                    self.closed = true;
                    break;
                }
                n if n < 0 => break,
                n => self.line.extend_from_slice(&buf[..n as usize]),
            }
        }
        let end = self.line.iter().position(|&b| b == b'\n')?;
        let code = std::str::from_utf8(&self.line[..end])
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(1);
        self.line.drain(..=end);
        let id = self.finish()?;
        Some((id, code))
    }

    /// The shell exited (`status` as waitpid gave it): the command it ran, if any, with how it ended.
    pub fn ended(&mut self, status: i32) -> Option<(u64, Option<i32>, Option<i32>)> {
        // A status written before the shell died still counts.
        if let Some((id, code)) = self.read_status() {
            return Some((id, Some(code), None));
        }
        let id = self.finish()?;
        Some(if libc::WIFSIGNALED(status) {
            (id, None, Some(libc::WTERMSIG(status)))
        } else {
            (id, Some(libc::WEXITSTATUS(status)), None)
        })
    }

    /// Ends the current command: what it wrote goes over (what the pipes hold now: a background
    /// process may go on writing), its pipes close.
    fn finish(&mut self) -> Option<u64> {
        let mut current = self.current.take()?;
        copy(&self.out, &mut current.out, available(&self.out));
        // The command's stderr pipe gets nothing (both streams went to its stdout) and closes.
        drop(current.err.take());
        Some(current.id)
    }

    /// The current command's id.
    pub fn current(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.id)
    }
}

/// The bytes a pipe holds.
fn available(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    n.max(0) as usize
}

/// Copies at most `limit` bytes of what `from` (non-blocking) holds into `to`; a `to` whose reader
/// is gone is dropped and what was for it is discarded.
fn copy(from: &OwnedFd, to: &mut Option<OwnedFd>, mut limit: usize) {
    let mut buf = [0u8; 16 * 1024];
    while limit > 0 {
        let want = limit.min(buf.len());
        // SAFETY: reads into a live buffer of at least `want` bytes.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
        if n <= 0 {
            return;
        }
        limit -= n as usize;
        if let Some(fd) = to
            && write_all(fd.as_raw_fd(), &buf[..n as usize]).is_err()
        {
            *to = None;
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writes from a live buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_a_plain_sh_c_with_a_plain_environment_is_eligible() {
        let cwd = Path::new("/tmp");
        let argv = strings(&["sh", "-c", "echo hi"]);
        assert_eq!(eligible(&argv, &env(&[("A_1", "x")]), cwd), Some("echo hi"));
        assert_eq!(
            eligible(&argv, &env(&[("PWD", "/tmp")]), cwd),
            Some("echo hi")
        );
        for other in [
            strings(&["sh", "-e", "echo hi"]),
            strings(&["sh", "-c", "echo hi", "name"]),
            strings(&["sh", "script.sh"]),
            strings(&["sh", "-c", "a\0b"]),
        ] {
            assert_eq!(eligible(&other, &[], cwd), None, "{other:?}");
        }
        for vars in [
            env(&[("IFS", ":")]),
            env(&[("OPTIND", "3")]),
            env(&[("PPID", "1")]),
            env(&[("LINENO", "1")]),
            env(&[("a.b", "1")]),
            env(&[("1A", "1")]),
            env(&[("BASH_FUNC_f%%", "() { :; }")]),
            env(&[("__kiln_c", "x")]),
            env(&[("PWD", "/elsewhere")]),
        ] {
            assert_eq!(eligible(&argv, &vars, cwd), None, "{vars:?}");
        }
    }

    /// What `sh -c script` prints and returns, started with `vars` (and nothing else) in `cwd`.
    fn fresh(vars: &[(String, String)], cwd: &Path, script: &str) -> (String, String, i32) {
        let out = Command::new("sh")
            .args(["-c", script])
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .output()
            .expect("sh runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    /// The same, as the session shell's subshell runs it: [`program`] in a shell started with an
    /// empty environment in `/`.
    fn in_subshell(vars: &[(String, String)], cwd: &Path, script: &str) -> (String, String, i32) {
        let text = String::from_utf8(program(vars, cwd, script)).unwrap();
        let out = Command::new("sh")
            .args(["-c", &format!("( {text}\n)")])
            .env_clear()
            .current_dir("/")
            .output()
            .expect("sh runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    #[test]
    fn the_subshell_starts_as_a_fresh_sh_c_would() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        let nasty = "it's \"quoted\" $(touch pwned) `touch pwned` \\ \n second line\t$HOME";
        let cases: Vec<Vec<(String, String)>> = vec![
            vec![],
            env(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("V", nasty)]),
            env(&[
                ("PATH", "/usr/bin:/bin"),
                ("PWD", cwd.to_str().unwrap()),
                ("OLDPWD", "/usr"),
                ("EMPTY", ""),
                ("PS1", "custom> "),
            ]),
        ];
        // Everything a script can see of its start: variables (exported and not), options, traps,
        // directory, arguments, descriptors, umask.
        let script = "export -p; set | grep -v -e '^PPID=' -e '^_='; echo \"opts=$- args=$# zero=$0\"; \
                      trap; pwd; echo \"PWD=$PWD OLDPWD=${OLDPWD-unset}\"; umask; ls /proc/self/fd | tr '\\n' ' '";
        for vars in &cases {
            let fresh = fresh(vars, &cwd, script);
            assert_eq!(fresh.2, 0, "{fresh:?}");
            assert_eq!(in_subshell(vars, &cwd, script), fresh, "with {vars:?}");
        }
        assert!(!cwd.join("pwned").exists(), "a value was expanded as code");
        // Status, output and the order of both, for a script that exits, fails or has a trap.
        for script in [
            "echo out; echo err >&2; exit 3",
            "false",
            "trap 'echo bye' EXIT; echo hi",
            "set -e; false; echo not-here",
            "printf 'no newline'",
            "cd /usr && pwd",
            "echo $((1 + 2))",
            "x() { echo in-function \"$@\"; }; x a b",
        ] {
            assert_eq!(
                in_subshell(&cases[1], &cwd, script),
                fresh(&cases[1], &cwd, script),
                "{script}"
            );
        }
        // A syntax error fails the same way; its message names `eval`.
        let (out, err, code) = in_subshell(&cases[1], &cwd, "echo first\nif");
        assert_eq!((out.as_str(), code), ("first\n", 2));
        assert!(err.contains("Syntax error"), "{err}");
    }

    /// Starts a session shell with std's process spawning (the launcher clones its own way).
    fn session() -> Shell {
        use std::os::unix::process::CommandExt;
        let mut spawn = |exe: &CString, stdio: &[RawFd; 2], extra: &[RawFd]| {
            let (stdio, extra) = (*stdio, extra.to_vec());
            let mut cmd = Command::new(std::ffi::OsStr::new(exe.to_str().unwrap()));
            cmd.arg0("sh")
                .args(&Shell::argv()[1..])
                .env_clear()
                .current_dir("/");
            // SAFETY: only dup2 and fcntl between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let moved: Vec<i32> = extra
                        .iter()
                        .map(|fd| libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10))
                        .collect();
                    for (i, fd) in moved.iter().enumerate() {
                        libc::dup2(*fd, 3 + i as i32);
                    }
                    libc::dup2(stdio[0], 1);
                    libc::dup2(stdio[1], 2);
                    Ok(())
                });
            }
            let child = cmd.spawn()?;
            Ok(child.id() as i32)
        };
        Shell::start(Path::new("/bin/sh"), None, &mut spawn).expect("session shell")
    }

    /// Runs one command in `shell` until its status comes (or the shell ends): output and status.
    fn run_one(
        shell: &mut Shell,
        id: u64,
        vars: &[(String, String)],
        script: &str,
    ) -> (String, String, Option<i32>) {
        let (out_r, out_w) = pipe(true).unwrap();
        let (err_r, err_w) = pipe(true).unwrap();
        let mut fds = vec![out_w, err_w];
        shell
            .run(id, &program(vars, Path::new("/tmp"), script), &mut fds)
            .unwrap();
        // What reached the command's pipes so far (read as the launcher copies, as kiln does).
        let read = |fd: &OwnedFd, all: &mut Vec<u8>| {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reads into a live buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n as usize]);
            }
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let code = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no status for {script}"
            );
            shell.copy_output();
            read(&out_r, &mut out);
            read(&err_r, &mut err);
            if let Some((done, code)) = shell.read_status() {
                assert_eq!(done, id);
                break Some(code);
            }
            let mut status = 0;
            // SAFETY: reaps the session shell if it ended.
            if unsafe { libc::waitpid(shell.pid, &mut status, libc::WNOHANG) } == shell.pid {
                let (done, code, signal) = shell
                    .ended(status)
                    .expect("the command ends with the shell");
                assert_eq!(done, id);
                break code.or(signal.map(|s| 128 + s));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        read(&out_r, &mut out);
        read(&err_r, &mut err);
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (text(out), text(err), code)
    }

    #[test]
    fn a_session_shell_runs_one_command_after_another_in_fresh_subshells() {
        let mut shell = session();
        let vars = env(&[("PATH", "/usr/bin:/bin"), ("ONE", "1")]);
        let (out, _, code) = run_one(&mut shell, 1, &vars, "X=leak; echo \"one=$ONE\"; exit 4");
        assert_eq!((out.as_str(), code), ("one=1\n", Some(4)));
        // Nothing of the first command is left in the second: not its variable, nor the first's
        // environment (this one has none). stdout and stderr come as one stream, in the order
        // written.
        let (out, err, code) = run_one(
            &mut shell,
            2,
            &[],
            "echo \"x=${X-unset} one=${ONE-unset}\"; echo oops >&2; echo after",
        );
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("x=unset one=unset\noops\nafter\n", "", Some(0))
        );
        // Output written before the status is all there, however much of it.
        let (out, _, code) = run_one(
            &mut shell,
            3,
            &vars,
            "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done",
        );
        assert_eq!(code, Some(0));
        assert_eq!(out.lines().count(), 20000);
        assert_eq!(out.lines().last(), Some("line-19999"));
        // A command that kills its shell ends with it.
        let (_, _, code) = run_one(&mut shell, 4, &vars, "kill -9 $$; sleep 5");
        assert_eq!(code, Some(128 + 9));
    }
}
