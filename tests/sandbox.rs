//! The sandbox's boundaries, each proven from the outside: what a plugin can read, what a command can
//! write, time and memory limits, the network, and that a command's children die with it.

use crate::support::isolation::{host_dir, processes_with_arg, unique_digits};
use crate::support::{Build, build_commands, probe_plugin};

fn landlock() -> bool {
    // SAFETY: landlock_create_ruleset with the VERSION flag only queries the ABI; it touches no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    version > 0
}

/// Tests of OS confinement need a kernel with Landlock. CI's has it; elsewhere say so loudly.
pub fn require_landlock() -> bool {
    if landlock() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run on a kernel with Landlock"
    );
    eprintln!("SKIPPED: this kernel has no Landlock; kiln cannot confine commands here");
    false
}

fn probe(b: Build) -> Build {
    b.args(["--plugin", &format!("probe={}", probe_plugin())])
}

#[test]
fn a_plugin_reads_its_workspace_but_nothing_outside_its_preopens() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let run = probe(
        Build::new()
            .write("inside.txt", "inside-content")
            .buildspec(&build_commands(&[
                "probe read $CODEBUILD_SRC_DIR/inside.txt",
                &format!("probe read {}", secret.display()),
            ])),
    )
    .run();
    run.failure()
        .log_has("read ")
        .log_has("inside-content")
        .log_lacks("top secret")
        .log_has(&format!("cannot read {}", secret.display()));
}

#[test]
fn a_plugin_cannot_read_system_files() {
    probe(Build::new().buildspec(&build_commands(&["probe read /etc/passwd"])))
        .run()
        .failure()
        .log_lacks("root:x:0")
        .log_has("cannot read /etc/passwd");
}

#[test]
fn a_build_command_cannot_write_outside_the_workspace() {
    if !require_landlock() {
        return;
    }
    // A folder of the host the build sees through its root (its /tmp is its own): the write may
    // succeed in the build's private layer, it never reaches the host.
    let outside = host_dir();
    let target = outside.path().join("escaped.txt");
    let run = Build::new()
        .buildspec(&build_commands(&[
            "echo ok > inside.txt && echo wrote-inside",
            "echo x > $TMPDIR/tmp-ok && echo wrote-tmp",
            &format!("echo x > {}", target.display()),
        ]))
        .run();
    // `said`, not `log_has`: kiln's `Running command …` line echoes the command's text.
    run.said("wrote-inside").said("wrote-tmp");
    assert!(!target.exists(), "a command wrote outside the workspace");
    assert_eq!(run.json["confined"], true);
}

#[test]
fn writable_grants_one_more_directory() {
    if !require_landlock() {
        return;
    }
    let extra = tempfile::tempdir().unwrap();
    let target = extra.path().join("granted.txt");
    Build::new()
        .buildspec(&build_commands(&[&format!(
            "echo x > {}",
            target.display()
        )]))
        .args(["--writable", extra.path().to_str().unwrap()])
        .run()
        .success();
    assert!(target.exists());
}

#[test]
fn commands_have_no_network_unless_granted() {
    if !require_landlock() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            drop(stream);
        }
    });
    let spec = format!(
        "version: 0.2\nenv:\n  shell: bash\nphases:\n  build:\n    commands:\n      - exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected\n"
    );
    Build::new()
        .buildspec(&spec)
        .args(["--network", "none"])
        .run()
        .failure()
        .log_lacks("\nconnected");
    // The default network (internet) keeps the host's loopback out of reach; the host's reaches it.
    Build::new()
        .buildspec(&spec)
        .args(["--network", "host"])
        .run()
        .success()
        .said("connected");
}

#[test]
fn a_looping_plugin_is_stopped_at_its_time_limit() {
    let started = std::time::Instant::now();
    let run = probe(Build::new().buildspec(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - probe spin\n  post_build:\n    commands:\n      - echo post-ran\n",
    ))
    .args(["--step-timeout", "1s"])
    .run();
    run.failure()
        .phase("BUILD", "TIMED_OUT")
        .log_has("ran out of time")
        .log_has("post-ran");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn a_looping_command_is_stopped_at_its_time_limit() {
    let started = std::time::Instant::now();
    Build::new()
        .buildspec(&build_commands(&["while :; do :; done"]))
        .args(["--step-timeout", "1s"])
        .run()
        .failure()
        .phase("BUILD", "TIMED_OUT");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn a_plugin_past_its_memory_limit_is_stopped_and_on_failure_applies() {
    let run = probe(Build::new().buildspec(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - probe alloc 64\n  post_build:\n    commands:\n      - echo post-ran\n",
    ))
    .args(["--memory-limit", "16M"])
    .run();
    run.failure()
        .phase("BUILD", "FAILED")
        .log_has("went past its memory limit of 16 MiB")
        .log_has("post-ran");
    // The same plugin within its limit succeeds.
    probe(Build::new().buildspec(&build_commands(&["probe alloc 4"])))
        .args(["--memory-limit", "64M"])
        .run()
        .success()
        .log_has("allocated 4 MiB");
}

#[test]
fn background_children_are_killed_when_the_step_times_out() {
    // The child is found on the host by its argument: the pid the build sees is its own namespace's.
    let arg = format!("300.{}", unique_digits());
    let b = Build::new()
        .buildspec(&build_commands(&[&format!(
            "sleep {arg} & echo $! > child.pid; wait"
        )]))
        .args(["--step-timeout", "1s", "--in-place"]);
    b.run().failure().phase("BUILD", "TIMED_OUT");
    assert!(
        b.path().join("child.pid").exists(),
        "the child never started"
    );
    let left = processes_with_arg(&arg);
    assert!(
        left.is_empty(),
        "the background child {left:?} outlived its command"
    );
}

#[test]
fn background_children_left_running_are_killed_when_the_build_ends() {
    let arg = format!("300.{}", unique_digits());
    let b = Build::new()
        .buildspec(&build_commands(&[
            &format!("(sleep {arg} > /dev/null 2>&1 & echo $! > daemon.pid)"),
            "echo next-command",
        ]))
        .args(["--in-place"]);
    b.run().success().said("next-command");
    assert!(
        b.path().join("daemon.pid").exists(),
        "the daemon never started"
    );
    let left = processes_with_arg(&arg);
    assert!(left.is_empty(), "the daemon {left:?} outlived the build");
}

#[test]
fn require_sandbox_runs_where_landlock_exists() {
    if !require_landlock() {
        return;
    }
    Build::new()
        .buildspec(&build_commands(&["echo confined"]))
        .args(["--require-sandbox"])
        .run()
        .success()
        .log_has("confined");
}

#[test]
fn ctrl_c_stops_the_build_and_kills_its_commands() {
    stopped_by(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_the_build_as_ctrl_c_does() {
    // What `timeout`, systemd and a CI's cancel button send.
    stopped_by(libc::SIGTERM, 143);
}

#[test]
fn sighup_stops_the_build_as_ctrl_c_does() {
    // The terminal kiln ran in was closed.
    stopped_by(libc::SIGHUP, 129);
}

/// Starts a build whose command runs a long `sleep`, sends kiln `signal` once it runs, and checks
/// the exit code, that no process of the build is left, that no later command ran, and that kiln's
/// scratch and session folders are gone.
fn stopped_by(signal: i32, code: i32) {
    let arg = format!("300.{}", unique_digits());
    let b = Build::new().buildspec(&build_commands(&[
        &format!("sleep {arg} & echo $! > child.pid; wait"),
        "echo never > never.txt",
    ]));
    let mut kiln = crate::support::kiln()
        .arg("--state-dir")
        .arg(b.state_dir())
        .arg("build")
        .arg(b.path())
        .arg("--in-place")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = b.path().join("child.pid");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_none()
    {
        assert!(
            started.elapsed().as_secs() < 30,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals the kiln process this test started.
    unsafe {
        libc::kill(kiln.id() as i32, signal);
    }
    let status = kiln.wait().unwrap();
    assert_eq!(status.code(), Some(code));
    let left = processes_with_arg(&arg);
    assert!(
        left.is_empty(),
        "the command's child {left:?} outlived signal {signal}"
    );
    assert!(!b.path().join("never.txt").exists());
    let own = |dir: &std::path::Path, prefix: &str| -> Vec<std::path::PathBuf> {
        let prefix = format!("{prefix}{}-", kiln.id());
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    let left = [
        own(&std::env::temp_dir(), "kiln-build-"),
        own(std::path::Path::new("/dev/shm"), "kiln-session-"),
    ]
    .concat();
    assert!(left.is_empty(), "kiln left {left:?} behind");
}

#[test]
fn plugins_have_no_network_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            drop(stream);
        }
    });
    let spec = build_commands(&[&format!("probe connect {addr}")]);
    probe(Build::new().buildspec(&spec))
        .args(["--network", "none"])
        .run()
        .failure()
        .log_has(&format!("cannot connect to {addr}"));
    // Internet: the plugin has sockets, but this host's own addresses are out of reach, as they are
    // for commands behind pasta.
    probe(Build::new().buildspec(&spec))
        .args(["--network"])
        .run()
        .failure()
        .log_has(&format!("cannot connect to {addr}"));
    probe(Build::new().buildspec(&spec))
        .args(["--network", "host"])
        .run()
        .success()
        .log_has(&format!("connected to {addr}"));
}
