//! What kiln remembers of pipeline executions, in the state dir, and the requests (approvals,
//! stops) that reach a running execution through it.
//!
//! ```text
//! <state>/pipelines/<pipeline>/
//!   sequence                      executions counted, under an flock
//!   executions/<id>.json          the execution: written whole, atomically, by its driver only
//!   executions/<id>.lock          flock held by the process driving the execution
//!   executions/<id>/              its actions' logs; approval-<s>-<a>.json, stop.json: requests
//!   stages/<stage>.lock           flock held by the execution inside the stage (not PARALLEL)
//! ```
//!
//! An execution's record is written by the one process driving it; everyone else (the CLI's
//! `approve` and `stop`, `kiln serve`) writes a request file beside it, which the driver reads,
//! acts on and records. So no two writers ever race on one file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::pipeline::Pipeline;

/// The state of an execution, a stage or an action, in CodePipeline's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not started (an action of a stage not reached yet).
    Pending,
    InProgress,
    Succeeded,
    Failed,
    /// `kiln pipeline stop`: the execution ended by request.
    Stopped,
    /// Ending by request: in-progress actions finish (or are abandoned).
    Stopping,
    /// A newer execution replaced this one while it waited to enter a stage (SUPERSEDED mode).
    Superseded,
    /// An action the execution did not run because it ended first.
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::InProgress => "InProgress",
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
            Status::Stopped => "Stopped",
            Status::Stopping => "Stopping",
            Status::Superseded => "Superseded",
            Status::Abandoned => "Abandoned",
        }
    }

    /// Whether nothing more happens to what has this status.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Pending | Status::InProgress | Status::Stopping
        )
    }
}

/// What started an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `StartPipelineExecution` (kiln pipeline run), `PollForSourceChanges` (watch polling),
    /// `Webhook` (the git hook), as CodePipeline names them.
    pub trigger_type: String,
    /// Who or what: the user, or the commit and branch that started it.
    pub trigger_detail: String,
}

/// The revision a source action took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevision {
    pub action_name: String,
    /// The commit (git) or digest (stores).
    pub revision_id: String,
    /// The commit's subject, or the store reference.
    #[serde(default)]
    pub revision_summary: String,
}

/// An artifact an action took or gave: its name and the digest of its tree in the CAS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    /// BLAKE3 of the artifact's tree (`kiln::cas::tree`), in the pipeline's artifact CAS.
    pub digest: String,
}

/// A manual approval's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_entity_link: Option<String>,
    /// When it fails by itself, in milliseconds since the epoch.
    pub expires_ms: u64,
    /// The answer, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// An answer to an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub approved: bool,
    /// Who: the user name, or `web` with where the request came from.
    pub by: String,
    #[serde(default)]
    pub comment: String,
    pub at_ms: u64,
}

/// One action of one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub run_order: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// How many times it ran (a retry runs it again).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_artifacts: Vec<ArtifactRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_artifacts: Vec<ArtifactRecord>,
    /// The variables it set in its namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// The configuration it ran with, its `#{...}` resolved (secrets as their references).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configuration: BTreeMap<String, String>,
    /// The build it ran: `project:uuid`, and its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// The deployment it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Its log: the build's log file, the deployment's script log, or the action's own. Always
    /// an absolute path below `<state>/builds`, `<state>/pipelines` or a deployment root: `kiln
    /// serve` shows no log from anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ActionRecord {
    pub fn pending(name: &str, run_order: u32) -> Self {
        ActionRecord {
            name: name.to_string(),
            status: Status::Pending,
            run_order,
            started_ms: None,
            ended_ms: None,
            attempts: 0,
            input_artifacts: Vec::new(),
            output_artifacts: Vec::new(),
            variables: BTreeMap::new(),
            configuration: BTreeMap::new(),
            build_id: None,
            deployment_id: None,
            log: None,
            approval: None,
            error: None,
        }
    }
}

/// One stage of one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    pub name: String,
    pub status: Status,
    pub actions: Vec<ActionRecord>,
}

/// One execution of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// A UUID, as CodePipeline's execution ids.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// Its number among the pipeline's executions on this machine: the order they started in.
    pub sequence: u64,
    pub status: Status,
    /// Why it ended as it did, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_summary: Option<String>,
    pub trigger: Trigger,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The pipeline file, and the pipeline as read when the execution started (retry and resume
    /// run that, not the file as it is now).
    pub file: PathBuf,
    pub definition: Pipeline,
    /// The folder mappings were resolved against (kiln.toml's, or the pipeline file's).
    pub project_dir: PathBuf,
    /// `--parameter`s and pipeline variables given at start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_revisions: Vec<SourceRevision>,
    /// The commit chosen for each source action at start (by action name), where one was (the
    /// commit `watch` saw); the others take their branch's head when they run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_revisions: BTreeMap<String, String>,
    /// The stage it waits to enter (another execution is in it), if it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    pub stages: Vec<StageRecord>,
}

impl Execution {
    /// Every artifact produced so far, by name.
    pub fn artifacts(&self) -> BTreeMap<String, String> {
        self.stages
            .iter()
            .flat_map(|s| &s.actions)
            .flat_map(|a| &a.output_artifacts)
            .map(|a| (a.name.clone(), a.digest.clone()))
            .collect()
    }

    /// Every action's output variables, by namespace.
    pub fn namespaces(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (stage, record) in self.definition.stages.iter().zip(&self.stages) {
            for (action, r) in stage.actions.iter().zip(&record.actions) {
                if let Some(ns) = &action.namespace {
                    out.insert(ns.clone(), r.variables.clone());
                }
            }
        }
        out
    }
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not an execution record kiln can read: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("no execution {0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `name` can name a folder of the state dir: CodePipeline's names
/// (`[A-Za-z0-9.@_-]{1,100}`), but neither `.` nor `..`.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// The pipelines folder of a state dir.
#[derive(Debug, Clone)]
pub struct Records {
    root: PathBuf,
}

impl Records {
    pub fn new(state_dir: &Path) -> Self {
        Records {
            root: state_dir.join("pipelines"),
        }
    }

    /// The folder of one pipeline; refuses names that could leave it.
    pub fn pipeline_dir(&self, pipeline: &str) -> Result<PathBuf, RecordError> {
        if !safe_name(pipeline) {
            return Err(RecordError::Refused(format!(
                "`{pipeline}` cannot be a pipeline name: use letters, digits, `.`, `@`, `-` and `_`"
            )));
        }
        Ok(self.root.join(pipeline))
    }

    fn executions_dir(&self, pipeline: &str) -> Result<PathBuf, RecordError> {
        Ok(self.pipeline_dir(pipeline)?.join("executions"))
    }

    /// An execution's own folder (logs, requests).
    pub fn execution_dir(&self, pipeline: &str, id: &str) -> Result<PathBuf, RecordError> {
        check_id(id)?;
        Ok(self.executions_dir(pipeline)?.join(id))
    }

    /// The pipelines that have executions, by name.
    pub fn pipelines(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| safe_name(n))
            .collect();
        names.sort();
        names
    }

    /// The pipeline's executions, newest first. Records that cannot be read are left out.
    pub fn executions(&self, pipeline: &str) -> Vec<Execution> {
        let Ok(dir) = self.executions_dir(pipeline) else {
            return Vec::new();
        };
        let mut all: Vec<Execution> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| read(&e.path()).ok())
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        all
    }

    /// One execution: by its id, or by a unique prefix of it.
    pub fn load(&self, pipeline: &str, id: &str) -> Result<Execution, RecordError> {
        if check_id(id).is_ok() {
            let path = self.executions_dir(pipeline)?.join(format!("{id}.json"));
            if path.is_file() {
                return read(&path);
            }
        }
        let mut found: Vec<Execution> = self
            .executions(pipeline)
            .into_iter()
            .filter(|e| e.id.starts_with(id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(RecordError::NotFound(format!("{pipeline} {id}"))),
            n => Err(RecordError::Refused(format!(
                "{n} executions of {pipeline} start with {id}: give more of the id"
            ))),
        }
    }

    /// Writes an execution's record whole, atomically.
    pub fn save(&self, execution: &Execution) -> Result<(), RecordError> {
        let dir = self.executions_dir(&execution.pipeline)?;
        check_id(&execution.id)?;
        private_dir(&dir)?;
        let path = dir.join(format!("{}.json", execution.id));
        let bytes = serde_json::to_vec_pretty(execution).map_err(|e| RecordError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// The next execution number of a pipeline.
    pub fn next_sequence(&self, pipeline: &str) -> Result<u64, RecordError> {
        let dir = self.pipeline_dir(pipeline)?;
        private_dir(&dir)?;
        let (mut counter, text) = LockedFile::open(&dir.join("sequence"))?;
        let next = text.trim().parse::<u64>().unwrap_or(0) + 1;
        counter.replace(&next.to_string())?;
        Ok(next)
    }

    /// Tries to take the lock of the process driving an execution; `None` when another holds it.
    pub fn try_drive(&self, pipeline: &str, id: &str) -> Result<Option<File>, RecordError> {
        let dir = self.executions_dir(pipeline)?;
        check_id(id)?;
        private_dir(&dir)?;
        try_lock(&dir.join(format!("{id}.lock")))
    }

    /// Whether a process drives the execution now. Creates nothing: an execution whose lock file
    /// is missing has no driver (its driver takes the lock before the record is first written).
    pub fn is_driven(&self, pipeline: &str, id: &str) -> bool {
        let Ok(dir) = self.executions_dir(pipeline) else {
            return false;
        };
        if check_id(id).is_err() {
            return false;
        }
        let Ok(file) = std::fs::File::open(dir.join(format!("{id}.lock"))) else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; a shared lock is refused while the driver holds
        // its exclusive one, and released when the file is closed.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }

    /// Tries to take a stage's lock (an execution enters the stage); `None` when another
    /// execution is in it.
    pub fn try_enter(
        &self,
        pipeline: &str,
        stage_index: usize,
    ) -> Result<Option<File>, RecordError> {
        let dir = self.pipeline_dir(pipeline)?.join("stages");
        private_dir(&dir)?;
        try_lock(&dir.join(format!("{stage_index}.lock")))
    }

    fn request_path(&self, pipeline: &str, id: &str, name: &str) -> Result<PathBuf, RecordError> {
        Ok(self.execution_dir(pipeline, id)?.join(name))
    }

    /// Records the answer to the approval at `stage`/`action` of an execution, for its driver to
    /// act on. The indices are the positions in the record's `stages[stage].actions[action]` (the
    /// pipeline's own order), which is what the CLI and the web page name. The first answer
    /// stands: a second is refused.
    pub fn request_approval(
        &self,
        pipeline: &str,
        id: &str,
        stage: usize,
        action: usize,
        decision: &Decision,
    ) -> Result<(), RecordError> {
        let path = self.request_path(pipeline, id, &format!("approval-{stage}-{action}.json"))?;
        if let Some(parent) = path.parent() {
            private_dir(parent)?;
        }
        let bytes = serde_json::to_vec_pretty(decision).unwrap_or_default();
        // The first answer wins: a second one is refused rather than replacing it.
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RecordError::Refused(
                    "this approval has been answered already".into(),
                ));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        io::Write::write_all(&mut file, &bytes).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))
    }

    /// The answer given to an approval, if any.
    pub fn approval_answer(
        &self,
        pipeline: &str,
        id: &str,
        stage: usize,
        action: usize,
    ) -> Option<Decision> {
        let path = self
            .request_path(pipeline, id, &format!("approval-{stage}-{action}.json"))
            .ok()?;
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Forgets the answers of a stage's approvals (a retry of the stage asks again).
    pub fn clear_approvals(&self, pipeline: &str, id: &str, stage: usize) {
        if let Ok(dir) = self.execution_dir(pipeline, id) {
            let prefix = format!("approval-{stage}-");
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Asks the execution's driver to stop it.
    pub fn request_stop(
        &self,
        pipeline: &str,
        id: &str,
        stop: &StopRequest,
    ) -> Result<(), RecordError> {
        let path = self.request_path(pipeline, id, "stop.json")?;
        if let Some(parent) = path.parent() {
            private_dir(parent)?;
        }
        write_atomic(&path, &serde_json::to_vec_pretty(stop).unwrap_or_default())
    }

    /// The stop asked for, if any.
    pub fn stop_request(&self, pipeline: &str, id: &str) -> Option<StopRequest> {
        let path = self.request_path(pipeline, id, "stop.json").ok()?;
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Forgets a stop request (once acted on, before a retry).
    pub fn clear_stop(&self, pipeline: &str, id: &str) {
        if let Ok(path) = self.request_path(pipeline, id, "stop.json") {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `kiln pipeline stop`: how to end an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopRequest {
    /// Abandon in-progress actions (stop them now) rather than let them finish.
    pub abandon: bool,
    #[serde(default)]
    pub reason: String,
    pub by: String,
}

fn check_id(id: &str) -> Result<(), RecordError> {
    let ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RecordError::NotFound(id.to_string()))
    }
}

/// Reads a record: a regular file, opened so that a FIFO or a device put in its place cannot
/// hold the reader.
fn read(path: &Path) -> Result<Execution, RecordError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(RecordError::Corrupt {
            path: path.to_path_buf(),
            message: "not a regular file".into(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RecordError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn private_dir(path: &Path) -> Result<(), RecordError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
    io::Write::write_all(&mut tmp, bytes).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// A small state file (the execution counter, what `watch` saw) held under an exclusive flock
/// from the moment it is read until it is rewritten and dropped.
pub(crate) struct LockedFile {
    file: File,
    path: PathBuf,
}

impl LockedFile {
    /// Opens (or creates) `path`, waits for its lock, and reads it.
    pub(crate) fn open(path: &Path) -> Result<(LockedFile, String), RecordError> {
        use std::io::Read;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        lock_exclusive(&file, path)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err(path))?;
        let locked = LockedFile {
            file,
            path: path.to_path_buf(),
        };
        Ok((locked, text))
    }

    /// Replaces the file's content, still under the lock.
    pub(crate) fn replace(&mut self, text: &str) -> Result<(), RecordError> {
        use std::io::{Seek, Write};
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.file
            .seek(io::SeekFrom::Start(0))
            .map_err(io_err(&self.path))?;
        self.file
            .write_all(text.as_bytes())
            .map_err(io_err(&self.path))
    }
}

/// Waits for `file`'s flock; it lasts until the file is closed.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), RecordError> {
    // SAFETY: flock on a descriptor the caller owns; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Opens `path` and takes its flock without waiting: the open file (the lock lasts as long as it),
/// or `None` when another holds it.
fn try_lock(path: &Path) -> Result<Option<File>, RecordError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(io_err(path)(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(records: &Records, id: &str, sequence: u64) -> Execution {
        let definition: Pipeline = serde_json::from_value(serde_json::json!({
            "name": "p",
            "stages": [{"name": "S", "actions": [{"name": "A", "actionTypeId":
                {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}}]}]
        }))
        .unwrap();
        let e = Execution {
            id: id.into(),
            pipeline: "p".into(),
            sequence,
            status: Status::InProgress,
            status_summary: None,
            trigger: Trigger {
                trigger_type: "StartPipelineExecution".into(),
                trigger_detail: "test".into(),
            },
            started_ms: now_ms(),
            ended_ms: None,
            file: PathBuf::from("/p.json"),
            definition,
            project_dir: PathBuf::from("/"),
            variables: BTreeMap::new(),
            source_revisions: Vec::new(),
            pending_revisions: BTreeMap::new(),
            waiting_for: None,
            stages: vec![StageRecord {
                name: "S".into(),
                status: Status::Pending,
                actions: vec![ActionRecord::pending("A", 1)],
            }],
        };
        records.save(&e).unwrap();
        e
    }

    #[test]
    fn an_execution_is_driven_while_its_driver_holds_the_lock_and_looking_creates_nothing() {
        let state = tempfile::tempdir().unwrap();
        let records = Records::new(state.path());
        let id = "0e5b1c9a-0000-4000-8000-000000000001";
        execution(&records, id, 1);
        assert!(!records.is_driven("p", id));
        assert!(
            !state
                .path()
                .join(format!("pipelines/p/executions/{id}.lock"))
                .exists()
        );
        let lock = records.try_drive("p", id).unwrap().expect("free");
        assert!(records.is_driven("p", id));
        assert!(records.try_drive("p", id).unwrap().is_none());
        drop(lock);
        assert!(!records.is_driven("p", id));
    }

    #[test]
    fn a_fifo_among_the_records_is_skipped_not_waited_on() {
        let state = tempfile::tempdir().unwrap();
        let records = Records::new(state.path());
        execution(&records, "0e5b1c9a-0000-4000-8000-000000000002", 2);
        let fifo = state
            .path()
            .join("pipelines/p/executions/0e5b1c9a-0000-4000-8000-000000000003.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns (rather than blocking on the FIFO), with the one real record.
        assert_eq!(records.executions("p").len(), 1);
        assert!(
            records
                .load("p", "0e5b1c9a-0000-4000-8000-000000000003")
                .is_err()
        );
    }

    #[test]
    fn the_first_answer_to_an_approval_stands() {
        let state = tempfile::tempdir().unwrap();
        let records = Records::new(state.path());
        let id = "0e5b1c9a-0000-4000-8000-000000000004";
        execution(&records, id, 1);
        let yes = Decision {
            approved: true,
            by: "a".into(),
            comment: "ok".into(),
            at_ms: 1,
        };
        records.request_approval("p", id, 0, 0, &yes).unwrap();
        let no = Decision {
            approved: false,
            ..yes.clone()
        };
        assert!(records.request_approval("p", id, 0, 0, &no).is_err());
        assert_eq!(records.approval_answer("p", id, 0, 0), Some(yes));
        records.clear_approvals("p", id, 0);
        assert_eq!(records.approval_answer("p", id, 0, 0), None);
    }

    #[test]
    fn names_and_ids_that_could_leave_the_state_dir_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let records = Records::new(state.path());
        for name in ["..", ".", "a/b", "", "x\0y", &"n".repeat(101)] {
            assert!(records.pipeline_dir(name).is_err(), "{name:?}");
        }
        for id in ["../x", "a/b", "", "e1.json"] {
            assert!(records.execution_dir("p", id).is_err(), "{id:?}");
        }
        assert!(records.pipeline_dir("my-pipeline_1.0@x").is_ok());
    }

    #[test]
    fn an_execution_is_found_by_a_unique_prefix_of_its_id() {
        let state = tempfile::tempdir().unwrap();
        let records = Records::new(state.path());
        execution(&records, "aaaa1111-0000-4000-8000-000000000001", 1);
        execution(&records, "aaaa2222-0000-4000-8000-000000000002", 2);
        assert_eq!(records.load("p", "aaaa1").unwrap().sequence, 1);
        assert!(matches!(
            records.load("p", "aaaa"),
            Err(RecordError::Refused(_))
        ));
        assert!(matches!(
            records.load("p", "bbbb"),
            Err(RecordError::NotFound(_))
        ));
        // Newest first.
        let all = records.executions("p");
        assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 1]);
    }
}
