//! Hook scripts: the application owner's scripts for a lifecycle event, run as the CodeDeploy agent
//! runs them: in order, with the CodeDeploy variables, each in its own process group, killed at its
//! timeout, as its `runas` user when kiln runs as root. Their output goes to the deployment's
//! `logs/scripts.log` in the agent's format.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sandbox::process::{Prepared, Reaper};
use crate::sandbox::{ExecEnv, Level, LogSink, Policy, Sandbox, StepContext, StepError, Stream};
use crate::spec::appspec::AppSpec;

use super::DeployError;

/// How much of a failing script's output its error quotes (the agent keeps about 2 KB).
const TAIL_BYTES: usize = 2048;

/// `logs/scripts.log`, and the tail of what the current script wrote.
pub struct ScriptLog {
    file: Mutex<std::fs::File>,
    tail: Mutex<VecDeque<String>>,
    echo: bool,
}

impl ScriptLog {
    pub fn open(path: &Path, echo: bool) -> std::io::Result<Arc<ScriptLog>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(ScriptLog {
            file: Mutex::new(file),
            tail: Mutex::new(VecDeque::new()),
            echo,
        }))
    }

    /// Writes one line, timestamped as the agent does (and echoes it on the terminal).
    pub fn line(&self, text: &str) {
        self.write(text, self.echo);
    }

    fn write(&self, text: &str, echo: bool) {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{now} {text}");
        }
        if echo {
            eprintln!("{text}");
        }
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.push_back(text.to_string());
        while tail.iter().map(|l| l.len() + 1).sum::<usize>() > TAIL_BYTES && tail.len() > 1 {
            tail.pop_front();
        }
    }

    fn take_tail(&self) -> String {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let text: Vec<String> = tail.drain(..).collect();
        text.join("\n")
    }
}

impl LogSink for ScriptLog {
    fn output(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => self.line(&format!("[stdout]{line}")),
            Stream::Stderr => self.line(&format!("[stderr]{line}")),
        }
    }

    fn plugin(&self, level: Level, message: &str) {
        let echo = self.echo && !matches!(level, Level::Debug);
        self.write(&format!("[{level:?}]{message}"), echo);
    }
}

/// What every script of a deployment runs with.
pub struct HookEnv<'a> {
    pub sandbox: &'a Sandbox,
    pub deployment_id: String,
    /// The CodeDeploy variables and kiln's own environment.
    pub vars: Vec<(String, String)>,
    pub prepared: Arc<Prepared>,
    pub reaper: Reaper,
}

/// Runs the scripts `spec` gives for `event`, from the revision in `archive`. No scripts: nothing.
pub async fn run_event(
    event: &str,
    spec: &AppSpec,
    archive: &Path,
    env: &HookEnv<'_>,
    log: &Arc<ScriptLog>,
) -> Result<usize, DeployError> {
    let Some(scripts) = spec.hooks.get(event).filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    log.line(&format!("LifecycleEvent - {event}"));
    for script in scripts {
        log.line(&format!("Script - {}", script.location));
        log.take_tail();
        let path = archive.join(script.location.trim_start_matches('/'));
        let fail = |message: String, tail: String| DeployError::Hook {
            event: event.to_string(),
            script: script.location.clone(),
            message,
            tail,
        };
        if !path.is_file() {
            return Err(fail(
                format!(
                    "Script does not exist at specified location: {}",
                    path.display()
                ),
                String::new(),
            ));
        }
        make_executable(&path).map_err(|e| {
            fail(
                format!(
                    "Unable to set script at specified location: {} as executable: {e}",
                    script.location
                ),
                String::new(),
            )
        })?;
        let mut vars = env.vars.clone();
        vars.push(("LIFECYCLE_EVENT".into(), event.to_string()));
        let run_as = match &script.runas {
            Some(user) => switch_to(user, &mut vars).map_err(|m| fail(m, String::new()))?,
            None => None,
        };
        // The script runs through the `hook` plugin's exec: the step's environment and directory
        // are the script's, its policy gives the time limit, its ExecEnv the user and confinement.
        let context = StepContext {
            build_id: env.deployment_id.clone(),
            phase: event.to_string(),
            source_dir: archive.to_path_buf(),
            cwd: archive.to_path_buf(),
            env: vars,
            temp_dir: archive.to_path_buf(),
        };
        let policy = Policy {
            preopens: Vec::new(),
            allow_exec: true,
            network: false,
            local_network: false,
            timeout: Some(Duration::from_secs(script.timeout)),
            memory_limit: 64 << 20,
            scripted_exec: None,
        };
        let exec = ExecEnv {
            prepared: env.prepared.clone(),
            reaper: env.reaper.clone(),
            run_as,
            os: None,
        };
        let sink: Arc<dyn LogSink> = log.clone();
        let outcome = env
            .sandbox
            .run(
                "hook",
                &[path.to_string_lossy().into_owned()],
                &context,
                &policy,
                Some(exec),
                sink,
            )
            .await;
        let who = script
            .runas
            .as_ref()
            .map(|u| format!(" run as user {u}"))
            .unwrap_or_default();
        let message = match outcome {
            Ok(o) if o.status == 0 => continue,
            Err(StepError::Timeout { .. }) => None,
            Ok(o) if o.status == 124 => None,
            Ok(o) if o.status == 127 => Some(format!(
                "failed with error {}",
                o.message.unwrap_or_default()
            )),
            Ok(o) if o.status > 128 => Some(format!("was killed by signal {}", o.status - 128)),
            Ok(o) => Some(format!("failed with exit code {}", o.status)),
            Err(e) => Some(format!("failed with error {e}")),
        };
        let message =
            message.unwrap_or_else(|| format!("failed to complete in {} seconds", script.timeout));
        return Err(fail(
            format!(
                "Script at specified location: {}{who} {message}",
                script.location
            ),
            log.take_tail(),
        ));
    }
    Ok(scripts.len())
}

fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o111 == 0o111 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o111))
}

/// The uid and gid of `user`, with its HOME/USER/LOGNAME set; `None` when kiln already runs as it.
/// Switching needs root: otherwise a clear refusal.
fn switch_to(user: &str, vars: &mut Vec<(String, String)>) -> Result<Option<(u32, u32)>, String> {
    let Some(entry) = lookup_user(user) else {
        return Err(format!("runas: there is no user `{user}` on this host"));
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if entry.uid == euid {
        return Ok(None);
    }
    if euid != 0 {
        return Err(format!(
            "runas: {user} needs kiln to run as root (it runs as uid {euid}); run kiln deploy with \
             sudo, or drop `runas` from the hook"
        ));
    }
    vars.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"));
    vars.push(("HOME".into(), entry.home.to_string_lossy().into_owned()));
    vars.push(("USER".into(), user.to_string()));
    vars.push(("LOGNAME".into(), user.to_string()));
    Ok(Some((entry.uid, entry.gid)))
}

pub(crate) struct UserEntry {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks a user up in the system's user database.
pub(crate) fn lookup_user(name: &str) -> Option<UserEntry> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both valid for the sizes given; the strings
    // it points `pwd` at live in `buf`, read before `buf` is dropped.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_dir is a NUL-terminated string inside `buf` (see above).
    let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Some(UserEntry {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: PathBuf::from(home),
    })
}

/// Looks a group up in the system's group database.
pub(crate) fn lookup_group(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as for getpwnam_r above.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}
