//! Remote build workers end to end: real `kiln worker` processes on a real PostgreSQL 15 and the
//! S3 server, fed by `kiln build --remote` clients. Many jobs on two workers, each done once; a
//! worker killed mid-job; a worker frozen past its lease; a cancel during the build; a drain; no
//! secret in the database or the store. Leases are short here (3 s) so that losses show quickly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::services::{POSTGRES_BIN, Service};
use crate::support::{host_visible_dir, kiln, own_cache};

const ACCESS: &str = "worker-access";
const SECRET: &str = "worker-secret-key-0123456789";
/// The value of the workers' secret: it must never reach the database or the store.
const TOKEN: &str = "tok-e2e-7f3a9c1d-never-stored";

/// A queue, a store, and the workers and clients that use them.
struct Fleet {
    pg: Service,
    s3: Service,
    dir: tempfile::TempDir,
}

/// A running `kiln worker`.
struct Worker {
    child: Child,
    name: String,
    stderr: PathBuf,
    _cache: tempfile::TempDir,
    _state: tempfile::TempDir,
}

impl Worker {
    /// Its state folder, where its jobs' folders are.
    fn state(&self) -> &Path {
        self._state.path()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// What it said on stderr so far.
    fn said(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for it to exit: its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("worker {} did not exit:\n{}", self.name, self.said());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fleet {
    fn start() -> Option<Fleet> {
        let pg = Service::postgres()?;
        let s3 = Service::s3(ACCESS, SECRET, &["cache"])?;
        let fleet = Fleet {
            pg,
            s3,
            dir: tempfile::tempdir().unwrap(),
        };
        let out = kiln()
            .args(["queue", "migrate"])
            .env("KILN_QUEUE", fleet.url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::write(fleet.secrets(), format!("ci/token={TOKEN}\n")).unwrap();
        Some(fleet)
    }

    fn url(&self) -> &str {
        &self.pg.address
    }

    fn secrets(&self) -> PathBuf {
        self.dir.path().join("worker-secrets.env")
    }

    fn with_s3(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", &self.s3.address)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1");
    }

    /// Starts `kiln worker NAME` with a 3 s lease, a 500 ms heartbeat and a reaper every second.
    fn worker(&self, name: &str, extra: &[&str]) -> Worker {
        let cache = own_cache();
        // Where a build would see it, but for its sandbox hiding it.
        let state = host_visible_dir("kiln-worker-state-");
        let stderr = self.dir.path().join(format!("{name}.stderr"));
        let mut cmd = kiln();
        cmd.arg("--cache-dir")
            .arg(cache.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["worker", "--cache", "s3://cache/kiln", "--allow-http"])
            .args(["--name", name, "--lease", "3s", "--heartbeat", "500ms"])
            .args(["--reap-every", "1s", "--cancel-grace", "2s", "--secrets"])
            .arg(self.secrets())
            .args(extra)
            .env("KILN_QUEUE", self.url())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        self.with_s3(&mut cmd);
        Worker {
            child: cmd.spawn().unwrap(),
            name: name.to_string(),
            stderr,
            _cache: cache,
            _state: state,
        }
    }

    /// `kiln build --remote --json` of `project`, started: its process.
    fn submit(&self, project: &Path, output: &Path, extra: &[&str]) -> Child {
        self.submit_with(project, output, extra, (&self.s3.address, ACCESS, SECRET))
    }

    /// The same, reaching the store at `endpoint` with the credential `access`/`secret`.
    fn submit_with(
        &self,
        project: &Path,
        output: &Path,
        extra: &[&str],
        (endpoint, access, secret): (&str, &str, &str),
    ) -> Child {
        let cache = own_cache();
        let mut cmd = kiln();
        cmd.arg("--cache-dir")
            .arg(cache.path())
            .arg("build")
            .arg(project)
            .args(["--remote", self.url(), "--cache", "s3://cache/kiln"])
            .args(["--allow-http", "--json", "--output"])
            .arg(output)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", access)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1");
        // The client's local store goes with its process; the folder is removed when it ends.
        std::mem::forget(cache);
        cmd.spawn().unwrap()
    }

    /// Runs SQL as the superuser: what psql printed.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new(format!("{POSTGRES_BIN}/psql"))
            .args([self.url(), "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until `sql` prints `want`.
    fn wait_for(&self, sql: &str, want: &str, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            let got = self.sql(sql);
            if got == want {
                return;
            }
            assert!(Instant::now() < until, "{sql}: {got}, not {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Action cache entries in the store.
    fn cache_entries(&self) -> usize {
        std::fs::read_dir(self.s3.data().join("cache/kiln/ac"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// A client's end: its exit code, its `--json` result, its stderr.
fn finish(child: Child) -> (Option<i32>, Value, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON: {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code(), json, stderr)
}

/// A project whose build echoes the workers' secret (masked), then sleeps `sleep` seconds in
/// `build`, and leaves `out/a.txt` as its artifact.
fn project(dir: &Path, tag: &str, sleep: u32) -> PathBuf {
    let project = dir.join(format!("project-{tag}"));
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/input.txt"), format!("input {tag}\n")).unwrap();
    std::fs::write(
        project.join("buildspec.yml"),
        format!(
            "version: 0.2\nenv:\n  secrets-manager:\n    TOKEN: ci/token\nphases:\n  build:\n    commands:\n      - echo \"token $TOKEN\" \"extra ${{EXTRA:-none}}\"\n      - sleep {sleep}\n      - mkdir -p out && sort src/input.txt > out/a.txt && echo built {tag} >> out/a.txt\nartifacts:\n  files:\n    - out/a.txt\n"
        ),
    )
    .unwrap();
    project
}

#[test]
fn two_workers_run_every_job_once_with_a_local_builds_bytes_and_no_secret_is_stored() {
    let Some(fleet) = Fleet::start() else { return };
    let _a = fleet.worker("a", &[]);
    let _b = fleet.worker("b", &[]);
    // The figure: 40 jobs over two workers.
    const N: usize = 40;
    let projects: Vec<PathBuf> = (0..N)
        .map(|i| project(fleet.dir.path(), &i.to_string(), 0))
        .collect();
    let clients: Vec<(Child, PathBuf)> = projects
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let out = fleet.dir.path().join(format!("out-{i}"));
            (fleet.submit(p, &out, &[]), out)
        })
        .collect();
    let mut ids = Vec::new();
    for (child, out) in clients {
        let (code, json, stderr) = finish(child);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(json["status"], "SUCCEEDED", "{json}");
        assert_eq!(json["job"]["attempt"], 1, "{json}");
        assert!(stderr.contains("token ***"), "{stderr}");
        assert!(!stderr.contains(TOKEN));
        assert!(out.join("primary/out/a.txt").is_file(), "{json}");
        ids.push(json["job"]["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);

    // A job whose variable is a secret reference: the job holds the reference, the worker resolves
    // it from its own secrets.
    let client = fleet.submit(
        &projects[0],
        &fleet.dir.path().join("out-secret"),
        &["--secret-ref", "EXTRA=ci/token"],
    );
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("token *** extra ***"), "{stderr}");
    let with_secret = json["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        fleet.sql(&format!(
            "SELECT description->'secrets'->>'EXTRA' FROM kiln.jobs WHERE id = '{with_secret}'"
        )),
        "ci/token"
    );
    let log = fleet.sql(&format!(
        "SELECT convert_from(string_agg(bytes, ''::bytea ORDER BY \"offset\"), 'UTF8') FROM kiln.job_logs WHERE job = '{with_secret}'"
    ));
    assert!(log.contains("token *** extra ***"), "{log}");
    // Every job (and the one with a secret) ran once: one attempt, SUCCEEDED; both workers took
    // some.
    assert_eq!(
        fleet.sql("SELECT count(*) FROM kiln.jobs WHERE state = 'SUCCEEDED' AND attempt = 1"),
        (N + 1).to_string()
    );
    assert_eq!(
        fleet.sql("SELECT count(DISTINCT worker) FROM kiln.jobs"),
        "2",
        "{}",
        fleet.sql("SELECT worker, count(*) FROM kiln.jobs GROUP BY worker")
    );

    // The artifacts are a local build's, byte for byte.
    let local_out = fleet.dir.path().join("local-out");
    let local = kiln()
        .arg("--cache-dir")
        .arg(own_cache().path())
        .arg("build")
        .arg(&projects[3])
        .args(["--secrets"])
        .arg(fleet.secrets())
        .arg("--output")
        .arg(&local_out)
        .output()
        .unwrap();
    assert!(local.status.success(), "{local:?}");
    assert_eq!(
        std::fs::read(local_out.join("primary/out/a.txt")).unwrap(),
        std::fs::read(fleet.dir.path().join("out-3/primary/out/a.txt")).unwrap()
    );

    // The secret is in neither the database (a whole dump) nor the store.
    let dump = Command::new(format!("{POSTGRES_BIN}/pg_dump"))
        .arg(fleet.url())
        .output()
        .unwrap();
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    // Log chunks are bytea, which a dump writes in hex.
    let hex = |text: &str| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(dump.contains(&hex("token ***")), "the logs are in the dump");
    assert!(!dump.contains(TOKEN) && !dump.contains(&hex(TOKEN)));
    let grep = Command::new("grep")
        .args(["-rl", TOKEN])
        .arg(fleet.s3.data())
        .output()
        .unwrap();
    assert!(grep.stdout.is_empty(), "{grep:?}");
    // Only workers wrote the shared action cache: one entry per job, none for the job with a
    // secret reference (its build's own masking did not know the value).
    assert_eq!(fleet.cache_entries(), N);
}

#[test]
fn a_job_of_a_worker_killed_mid_build_completes_on_the_other_as_attempt_2() {
    let Some(fleet) = Fleet::start() else { return };
    let mut a = fleet.worker("a", &[]);
    let p = project(fleet.dir.path(), "crash", 4);
    let out = fleet.dir.path().join("out");
    let client = fleet.submit(&p, &out, &[]);
    fleet.wait_for(
        "SELECT state || ' ' || worker || ' ' || coalesce(phase, '-') FROM kiln.jobs",
        "IN_PROGRESS a BUILD",
        Duration::from_secs(30),
    );
    a.signal(libc::SIGKILL);
    a.wait(Duration::from_secs(5));
    let started = Instant::now();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let _b = fleet.worker("b", &["--metrics-addr", &metrics_addr]);
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["job"]["attempt"], 2, "{json}");
    assert_eq!(json["job"]["worker"], "b");
    assert!(
        stderr.contains("attempt 1 was lost; attempt 2 on b"),
        "{stderr}"
    );
    // Within the lease, a reap and the build itself.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        fleet.sql("SELECT state || ' ' || attempt || ' ' || infra_retries FROM kiln.jobs"),
        "SUCCEEDED 2 1"
    );
    assert!(out.join("primary/out/a.txt").is_file());
    // b's reaper found a's lease expired; b ran the job.
    let metrics = scrape(&metrics_addr);
    assert!(
        metrics.contains("kiln_lease_expired_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_jobs_total{result=\"SUCCEEDED\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("kiln_worker_slots 1\n"), "{metrics}");
    assert!(
        metrics.contains("kiln_job_queue_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_cache_requests_total{kind=\"action\",result=\"miss\"} 1\n"),
        "{metrics}"
    );
}

/// The worker's metrics page.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn a_worker_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let Some(fleet) = Fleet::start() else { return };
    let a = fleet.worker("a", &[]);
    let p = project(fleet.dir.path(), "frozen", 3);
    let out = fleet.dir.path().join("out");
    let client = fleet.submit(&p, &out, &[]);
    fleet.wait_for(
        "SELECT state || ' ' || worker FROM kiln.jobs",
        "IN_PROGRESS a",
        Duration::from_secs(30),
    );
    a.signal(libc::SIGSTOP);
    let b = fleet.worker("b", &[]);
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["job"]["worker"], "b", "{json}");
    assert_eq!(json["job"]["attempt"], 2);
    let logs = "SELECT count(*) || ' ' || coalesce(sum(length(bytes)), 0) FROM kiln.job_logs WHERE attempt = 1";
    let attempt_1_log = fleet.sql(logs);
    // The frozen worker wakes up: its build ended long ago, its first fenced write is refused, and
    // it stops there.
    a.signal(libc::SIGCONT);
    let until = Instant::now() + Duration::from_secs(15);
    while !a.said().contains("lease_lost after") {
        assert!(Instant::now() < until, "{}", a.said());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.said().contains("the lease is lost"), "{}", a.said());
    assert_eq!(
        fleet.sql("SELECT state || ' ' || attempt || ' ' || worker || ' ' || (result->>'worker') FROM kiln.jobs"),
        "SUCCEEDED 2 b b"
    );
    assert_eq!(fleet.sql(logs), attempt_1_log);
    // Its build published nothing either: the one entry is b's.
    assert_eq!(fleet.cache_entries(), 1);
    drop(b);
}

#[test]
fn a_job_cancelled_during_build_ends_stopped_with_no_cache_entry() {
    let Some(fleet) = Fleet::start() else { return };
    let _a = fleet.worker("a", &[]);
    let p = project(fleet.dir.path(), "cancel", 60);
    let out = fleet.dir.path().join("out");
    let client = fleet.submit(&p, &out, &[]);
    fleet.wait_for(
        "SELECT state || ' ' || coalesce(phase, '-') FROM kiln.jobs",
        "IN_PROGRESS BUILD",
        Duration::from_secs(30),
    );
    // The log is in the queue while the build runs, not only at its end.
    fleet.wait_for(
        "SELECT count(*) > 0 FROM kiln.job_logs WHERE convert_from(bytes, 'UTF8') LIKE '%token ***%'",
        "t",
        Duration::from_secs(5),
    );
    let id = fleet.sql("SELECT id FROM kiln.jobs");
    let started = Instant::now();
    let cancel = kiln()
        .args(["cancel", &id])
        .env("KILN_QUEUE", fleet.url())
        .output()
        .unwrap();
    assert!(cancel.status.success(), "{cancel:?}");
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(json["status"], "STOPPED", "{json}");
    // A heartbeat, then SIGTERM (the build stops at once), well before the 60 s sleep ends.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fleet.cache_entries(), 0);
    assert!(!out.join("primary").exists());
}

#[test]
fn a_sigterm_drains_the_worker_a_second_one_gives_the_job_back() {
    let Some(fleet) = Fleet::start() else { return };
    let mut a = fleet.worker("a", &[]);
    let p = project(fleet.dir.path(), "drain", 3);
    let first = fleet.submit(&p, &fleet.dir.path().join("out-1"), &[]);
    fleet.wait_for(
        "SELECT state FROM kiln.jobs",
        "IN_PROGRESS",
        Duration::from_secs(30),
    );
    a.signal(libc::SIGTERM);
    // Drained: the running job finishes, a job queued now is left for another worker.
    let q = project(fleet.dir.path(), "after", 0);
    let second = fleet.submit(&q, &fleet.dir.path().join("out-2"), &[]);
    assert_eq!(a.wait(Duration::from_secs(30)), Some(0), "{}", a.said());
    let (code, json, stderr) = finish(first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["status"], "SUCCEEDED");
    assert_eq!(
        fleet.sql("SELECT state FROM kiln.jobs WHERE attempt = 0"),
        "QUEUED"
    );

    // A second worker takes it; two SIGTERMs stop its build and give the job back, uncharged.
    let mut b = fleet.worker("b", &[]);
    let (code, json, stderr) = finish(second);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["job"]["worker"], "b");
    let r = project(fleet.dir.path(), "stopped", 60);
    let third = fleet.submit(&r, &fleet.dir.path().join("out-3"), &[]);
    fleet.wait_for(
        "SELECT count(*) FROM kiln.jobs WHERE state = 'IN_PROGRESS' AND phase = 'BUILD'",
        "1",
        Duration::from_secs(30),
    );
    let id = fleet.sql("SELECT id FROM kiln.jobs WHERE state = 'IN_PROGRESS'");
    b.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(15)), Some(0), "{}", b.said());
    assert_eq!(
        fleet.sql(&format!(
            "SELECT state || ' ' || attempt || ' ' || infra_retries FROM kiln.jobs WHERE id = '{id}'"
        )),
        "QUEUED 1 0"
    );
    let mut third = third;
    let _ = third.kill();
    let _ = third.wait();
}

#[test]
fn ctrl_c_in_a_remote_build_cancels_its_job() {
    let Some(fleet) = Fleet::start() else { return };
    let _a = fleet.worker("a", &[]);
    let p = project(fleet.dir.path(), "interrupted", 60);
    let client = fleet.submit(&p, &fleet.dir.path().join("out"), &[]);
    fleet.wait_for(
        "SELECT state || ' ' || coalesce(phase, '-') FROM kiln.jobs",
        "IN_PROGRESS BUILD",
        Duration::from_secs(30),
    );
    unsafe {
        libc::kill(client.id() as i32, libc::SIGINT);
    }
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted; cancelling job"), "{stderr}");
    assert_eq!(json["status"], "STOPPED", "{json}");
    assert_eq!(fleet.sql("SELECT state FROM kiln.jobs"), "STOPPED");
}

#[test]
fn an_ephemeral_worker_exits_after_max_jobs_or_when_idle() {
    let Some(fleet) = Fleet::start() else { return };
    let mut one = fleet.worker("one", &["--max-jobs", "1"]);
    let first = fleet.submit(
        &project(fleet.dir.path(), "one", 0),
        &fleet.dir.path().join("out-1"),
        &[],
    );
    assert_eq!(finish(first).0, Some(0));
    assert_eq!(one.wait(Duration::from_secs(15)), Some(0), "{}", one.said());
    assert!(
        one.said().contains("done: 1 claimed, 1 completed"),
        "{}",
        one.said()
    );

    let started = Instant::now();
    let mut idle = fleet.worker("idle", &["--idle-timeout", "1s"]);
    assert_eq!(
        idle.wait(Duration::from_secs(15)),
        Some(0),
        "{}",
        idle.said()
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(idle.said().contains("done: 0 claimed"), "{}", idle.said());
}

#[test]
fn a_build_on_a_worker_sees_nothing_of_the_workers_folder() {
    let Some(fleet) = Fleet::start() else { return };
    let a = fleet.worker("a", &[]);
    let p = fleet.dir.path().join("peek");
    std::fs::create_dir_all(&p).unwrap();
    // The build lists the worker's folder (where its own source, log and secrets are).
    std::fs::write(
        p.join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"seen=$(ls -A \"$WSTATE\" 2>/dev/null | wc -l)\"\n      - test -z \"$(ls -A \"$WSTATE\" 2>/dev/null)\"\n",
    )
    .unwrap();
    let wstate = format!("WSTATE={}", a.state().join("worker/a").display());
    let client = fleet.submit(&p, &fleet.dir.path().join("out"), &["-e", &wstate]);
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("seen=0"), "{stderr}");
    assert_eq!(json["status"], "SUCCEEDED");
    // And the worker keeps no record of it once it ended.
    let left: Vec<_> = walkdir(a.state())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Every file below `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_job_with_labels_waits_for_a_worker_that_has_them() {
    let Some(fleet) = Fleet::start() else { return };
    let _plain = fleet.worker("plain", &[]);
    let p = project(fleet.dir.path(), "gpu", 0);
    let client = fleet.submit(
        &p,
        &fleet.dir.path().join("out"),
        &["--labels", "gpu=yes", "--priority", "5"],
    );
    fleet.wait_for(
        "SELECT state || ' ' || priority || ' ' || array_to_string(labels, ',') FROM kiln.jobs",
        "QUEUED 5 gpu=yes",
        Duration::from_secs(15),
    );
    // The worker without the label leaves it queued; the client says it waits.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(fleet.sql("SELECT state FROM kiln.jobs"), "QUEUED");
    let _gpu = fleet.worker("gpu", &["--labels", "gpu=yes,os=linux"]);
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["job"]["worker"], "gpu", "{json}");
    assert!(
        stderr.contains("is still queued: no worker of the queue `default` with gpu=yes is free"),
        "{stderr}"
    );
}

#[test]
fn a_large_log_goes_to_the_queue_in_chunks_of_at_most_1_mib() {
    let Some(fleet) = Fleet::start() else { return };
    let _a = fleet.worker("a", &[]);
    let p = fleet.dir.path().join("chatty");
    std::fs::create_dir_all(&p).unwrap();
    // 3 MB of 100-byte lines.
    std::fs::write(
        p.join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - head -c 3000000 /dev/zero | tr '\\0' x | fold -w 99\n",
    )
    .unwrap();
    let client = fleet.submit(&p, &fleet.dir.path().join("out"), &[]);
    let (code, json, stderr) = finish(client);
    assert_eq!(
        code,
        Some(0),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    assert_eq!(json["status"], "SUCCEEDED");
    let chunks = fleet.sql(
        "SELECT count(*) || ' ' || max(length(bytes)) || ' ' || sum(length(bytes)) FROM kiln.job_logs",
    );
    let numbers: Vec<u64> = chunks.split(' ').map(|n| n.parse().unwrap()).collect();
    assert!(numbers[0] >= 3, "{chunks}");
    assert!(numbers[1] <= 1 << 20, "{chunks}");
    assert!(numbers[2] > 3_000_000, "{chunks}");
    // The client printed all of it, in order.
    assert!(
        stderr.matches(&"x".repeat(99)).count() >= 3_000_000 / 100,
        "{chunks}"
    );
}

/// A local `kiln build --cache s3://cache/kiln` of a one-command project, with the store at
/// `endpoint` and this credential: its exit code and stderr.
fn local_build_sharing(
    dir: &Path,
    tag: &str,
    (endpoint, access, secret): (&str, &str, &str),
) -> (Option<i32>, String) {
    let project = dir.join(format!("local-{tag}"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("buildspec.yml"),
        format!("version: 0.2\nphases:\n  build:\n    commands:\n      - echo {tag} > made.txt\nartifacts:\n  files:\n    - made.txt\n"),
    )
    .unwrap();
    let cache = own_cache();
    let out = kiln()
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("build")
        .arg(&project)
        .args(["--cache", "s3://cache/kiln", "--allow-http", "--output"])
        .arg(dir.join(format!("local-out-{tag}")))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_submitter_credential_cannot_write_the_action_cache_and_needs_not() {
    let Some(fleet) = Fleet::start() else { return };
    // The submitters' credential, as a bucket policy would have it: it may add blobs (a remote
    // build's source) but not write the action cache's prefix.
    let (sub_access, sub_secret) = ("submitter-access", "submitter-secret-0123456789");
    let Some(restricted) =
        Service::s3_restricted(&fleet.s3, sub_access, sub_secret, "cache/kiln/ac")
    else {
        return;
    };
    let submitter = (restricted.address.as_str(), sub_access, sub_secret);
    let _worker = fleet.worker("a", &[]);

    // A remote build needs no write there: it succeeds with that credential, and the worker (the
    // trusted writer) publishes its entry.
    let before = fleet.cache_entries();
    let project = project(fleet.dir.path(), "submitted", 0);
    let client = fleet.submit_with(&project, &fleet.dir.path().join("out-sub"), &[], submitter);
    let (code, json, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["status"], "SUCCEEDED", "{json}");
    assert_eq!(
        fleet.cache_entries(),
        before + 1,
        "the worker publishes the job's entry"
    );

    // The credential cannot: a local build that would share its result keeps it, and says the
    // store refused it.
    let (code, stderr) = local_build_sharing(fleet.dir.path(), "by-submitter", submitter);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("could not be saved to the remote cache"),
        "{stderr}"
    );
    assert_eq!(
        fleet.cache_entries(),
        before + 1,
        "a submitter wrote the action cache"
    );

    // The same build with the workers' credential does write it: the refusal is the policy's.
    let (code, stderr) = local_build_sharing(
        fleet.dir.path(),
        "by-worker",
        (&fleet.s3.address, ACCESS, SECRET),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fleet.cache_entries(), before + 2, "{stderr}");
}

#[test]
fn a_pipelines_codebuild_action_runs_on_a_worker_which_resolves_its_secret() {
    use crate::pipeline::{Project, action, build, pipeline, source};
    let Some(fleet) = Fleet::start() else {
        return;
    };
    let _worker = fleet.worker("pipe-1", &[]);
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  exported-variables:\n    - LEN\n    - STAGE\nphases:\n  build:\n    commands:\n      - export LEN=${#TOKEN}\n      - 'echo \"token: $TOKEN, stage: $STAGE\"'\n      - mkdir out && echo built > out/result.txt\nartifacts:\n  base-directory: out\n  files:\n    - '**/*'\n",
    );
    let mut b = build("Build", "app", &["Src"], &["Out"], 1);
    b["configuration"]["EnvironmentVariables"] = serde_json::json!(
        "[{\"name\":\"TOKEN\",\"value\":\"ci/token\",\"type\":\"SECRETS_MANAGER\"},{\"name\":\"STAGE\",\"value\":\"beta\",\"type\":\"PLAINTEXT\"}]"
    );
    p.pipeline(&pipeline(
        "remote",
        "SUPERSEDED",
        vec![
            (
                "Source",
                vec![source("Source", "main", "Src", "SourceVariables")],
            ),
            ("Build", vec![b]),
        ],
    ));
    p.commit("built remotely");
    let mut cmd = p.kiln();
    cmd.args([
        "pipeline",
        "run",
        "pipeline.json",
        "--json",
        "--remote",
        fleet.url(),
    ])
    .args(["--cache", "s3://cache/kiln", "--allow-http"]);
    fleet.with_s3(&mut cmd);
    let out = cmd.output().unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let built = action(&e, "Build", "Build");
    let log = std::fs::read_to_string(built["log"].as_str().unwrap_or("-")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}\nthe job's log:\n{log}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        built["buildId"].as_str().unwrap().starts_with("job "),
        "{built}"
    );
    // The worker resolved the secret from its own secrets: the pipeline never had it.
    assert_eq!(built["variables"]["LEN"], TOKEN.len().to_string());
    assert_eq!(built["variables"]["STAGE"], "beta");
    assert!(
        !built["outputArtifacts"][0]["digest"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert!(log.contains("token: ***, stage: beta"), "{log}");
    for entry in walkdir(p.state.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(
            !text.contains(TOKEN),
            "{} holds the secret",
            entry.display()
        );
    }
    assert_eq!(
        fleet.sql("SELECT count(*) FROM kiln.jobs WHERE state = 'SUCCEEDED'"),
        "1"
    );
}
