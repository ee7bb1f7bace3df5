//! Driving an execution as CodePipeline does: stages in order, one execution in a stage at a time
//! (unless PARALLEL), the actions of a stage by run order (equal numbers side by side), a failed
//! action failing its stage and the execution, approvals waited for, stops honoured.
//!
//! One process drives an execution at a time (it holds the execution's lock); it alone writes the
//! record. Whoever else wants something of it (an approval, a stop) writes a request that the
//! driver picks up within a quarter of a second. A driver that dies leaves a record that `approve`,
//! `retry` and `stop` take over.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;

use super::Context;
use super::actions;
use super::record::{
    ActionRecord, Execution, RecordError, StageRecord, Status, StopRequest, Trigger, now_ms,
};
use super::vars::Scope;
use crate::spec::pipeline::{ExecutionMode, Pipeline};

/// How often a driver looks for requests and for its turn at a stage.
pub const POLL: Duration = Duration::from_millis(200);

/// What starts an execution.
#[derive(Debug, Clone)]
pub struct Start {
    pub trigger: Trigger,
    /// Pipeline variables given at start, over their defaults.
    pub variables: BTreeMap<String, String>,
    /// The commit each source action takes (by action name), where one is chosen (a commit
    /// `watch` saw); the others take their branch's head.
    pub revisions: BTreeMap<String, String>,
}

/// The lock of the process driving an execution; released when dropped.
pub struct Driving(#[allow(dead_code)] File);

/// Records a new execution of `pipeline`, every action pending, and takes its driver's lock.
pub fn create(
    ctx: &Context,
    pipeline: &Pipeline,
    start: Start,
) -> Result<(Execution, Driving), RecordError> {
    let records = &ctx.records;
    let sequence = records.next_sequence(&pipeline.name)?;
    let id = uuid::Uuid::new_v4().to_string();
    let lock = records
        .try_drive(&pipeline.name, &id)?
        .ok_or_else(|| RecordError::Refused(format!("execution {id} is driven already")))?;
    let mut variables: BTreeMap<String, String> = pipeline
        .variables
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.default_value.clone()?)))
        .collect();
    for (name, value) in start.variables {
        if !pipeline.variables.iter().any(|v| v.name == name) {
            return Err(RecordError::Refused(format!(
                "the pipeline declares no variable `{name}` (its variables: {})",
                names(pipeline.variables.iter().map(|v| v.name.as_str()))
            )));
        }
        variables.insert(name, value);
    }
    if let Some(v) = pipeline
        .variables
        .iter()
        .find(|v| !variables.contains_key(&v.name))
    {
        return Err(RecordError::Refused(format!(
            "the pipeline variable `{}` has no default: give --variable {}=VALUE",
            v.name, v.name
        )));
    }
    let execution = Execution {
        id,
        pipeline: pipeline.name.clone(),
        sequence,
        status: Status::InProgress,
        status_summary: None,
        trigger: start.trigger,
        started_ms: now_ms(),
        ended_ms: None,
        file: ctx.file.clone(),
        definition: pipeline.clone(),
        project_dir: ctx.project_dir.clone(),
        variables,
        source_revisions: Vec::new(),
        waiting_for: None,
        pending_revisions: start.revisions,
        stages: pipeline
            .stages
            .iter()
            .map(|s| StageRecord {
                name: s.name.clone(),
                status: Status::Pending,
                actions: s
                    .actions
                    .iter()
                    .map(|a| ActionRecord::pending(&a.name, a.run_order))
                    .collect(),
            })
            .collect(),
    };
    records.save(&execution)?;
    Ok((execution, Driving(lock)))
}

/// Takes over an execution no process drives (its driver ended or died): its lock, or why not.
pub fn take_over(
    ctx: &Context,
    pipeline: &str,
    id: &str,
) -> Result<(Execution, Driving), RecordError> {
    let execution = ctx.records.load(pipeline, id)?;
    match ctx.records.try_drive(pipeline, &execution.id)? {
        Some(lock) => Ok((ctx.records.load(pipeline, &execution.id)?, Driving(lock))),
        None => Err(RecordError::Refused(format!(
            "execution {} is being driven by another kiln process",
            execution.id
        ))),
    }
}

/// The execution shared by the actions running side by side; every change is saved at once.
#[derive(Clone)]
pub(super) struct Shared {
    ctx: Arc<Context>,
    execution: Arc<Mutex<Execution>>,
    /// The remote build jobs in progress: cancelled when the execution is stopped with them.
    jobs: Arc<Mutex<Vec<uuid::Uuid>>>,
}

impl Shared {
    pub(super) fn ctx(&self) -> &Context {
        &self.ctx
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&Execution) -> T) -> T {
        let guard = self.execution.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub(super) fn update<T>(&self, f: impl FnOnce(&mut Execution) -> T) -> T {
        let mut guard = self.execution.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut guard);
        if let Err(e) = self.ctx.records.save(&guard) {
            self.ctx
                .say(&format!("warning: cannot record the execution: {e}"));
        }
        out
    }

    pub(super) fn update_action<T>(
        &self,
        stage: usize,
        action: usize,
        f: impl FnOnce(&mut ActionRecord) -> T,
    ) -> T {
        self.update(|e| f(&mut e.stages[stage].actions[action]))
    }

    pub(super) fn remote_jobs<T>(&self, f: impl FnOnce(&mut Vec<uuid::Uuid>) -> T) -> T {
        let mut guard = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn stop_request(&self) -> Option<StopRequest> {
        let (pipeline, id) = self.read(|e| (e.pipeline.clone(), e.id.clone()));
        self.ctx.records.stop_request(&pipeline, &id)
    }
}

/// How an execution got through a stage.
enum Through {
    Succeeded,
    Failed(String),
    Stopped(StopRequest),
    Superseded,
}

/// Drives the execution from its first stage not yet succeeded to its end, and gives its record.
pub async fn drive(ctx: Arc<Context>, execution: Execution, lock: Driving) -> Execution {
    let shared = Shared {
        ctx: ctx.clone(),
        execution: Arc::new(Mutex::new(execution)),
        jobs: Arc::default(),
    };
    let (name, mode, stages) = shared.read(|e| {
        (
            e.pipeline.clone(),
            e.definition.execution_mode,
            e.definition.stages.len(),
        )
    });
    let mut outcome = Through::Succeeded;
    for si in 0..stages {
        if shared.read(|e| e.stages[si].status == Status::Succeeded) {
            continue;
        }
        // The stage's lock: held while the execution is in the stage.
        let _in_stage = if mode == ExecutionMode::Parallel {
            None
        } else {
            match enter(&shared, si, mode).await {
                Ok(lock) => Some(lock),
                Err(through) => {
                    outcome = through;
                    break;
                }
            }
        };
        shared.update(|e| e.stages[si].status = Status::InProgress);
        let stage_name = shared.read(|e| e.stages[si].name.clone());
        ctx.say(&format!("{name}: stage {stage_name} started"));
        let through = run_stage(&shared, si).await;
        let status = match &through {
            Through::Succeeded => Status::Succeeded,
            Through::Failed(_) => Status::Failed,
            Through::Stopped(_) => Status::Stopped,
            Through::Superseded => Status::Superseded,
        };
        shared.update(|e| e.stages[si].status = status);
        ctx.say(&format!("{name}: stage {stage_name} {}", status.as_str()));
        if !matches!(through, Through::Succeeded) {
            outcome = through;
            break;
        }
    }
    let (status, summary) = match &outcome {
        Through::Succeeded => (Status::Succeeded, None),
        Through::Failed(why) => (Status::Failed, Some(why.clone())),
        Through::Stopped(stop) => (
            Status::Stopped,
            Some(format!(
                "stopped by {}{}",
                stop.by,
                if stop.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", stop.reason)
                }
            )),
        ),
        Through::Superseded => (
            Status::Superseded,
            Some("a newer execution took its place while it waited to enter a stage".into()),
        ),
    };
    let finished = shared.update(|e| {
        e.status = status;
        e.status_summary = summary;
        e.ended_ms = Some(now_ms());
        e.waiting_for = None;
        for stage in &mut e.stages {
            for action in &mut stage.actions {
                if !action.status.is_final() && action.status != Status::Pending {
                    action.status = Status::Abandoned;
                    action.ended_ms = Some(now_ms());
                }
            }
        }
        e.clone()
    });
    if let Through::Stopped(_) = outcome {
        ctx.records.clear_stop(&finished.pipeline, &finished.id);
    }
    // Remote builds the execution abandoned: their jobs are cancelled, as their local builds were
    // stopped.
    let left = shared.remote_jobs(std::mem::take);
    if let Some(remote) = &ctx.remote {
        use crate::worker::queue::Queue;
        for job in left {
            if let Err(e) = remote.queue.cancel(job).await {
                ctx.say(&format!("warning: cannot cancel job {job}: {e}"));
            }
        }
    }
    drop(lock);
    finished
}

/// Waits for the execution's turn at stage `si` and takes the stage's lock; or says why the
/// execution ends instead (a stop, a newer execution superseding it).
async fn enter(shared: &Shared, si: usize, mode: ExecutionMode) -> Result<File, Through> {
    let ctx = shared.ctx.clone();
    let (pipeline, id, sequence, stage) = shared.read(|e| {
        (
            e.pipeline.clone(),
            e.id.clone(),
            e.sequence,
            e.stages[si].name.clone(),
        )
    });
    let mut said = false;
    loop {
        if let Some(stop) = shared.stop_request() {
            return Err(Through::Stopped(stop));
        }
        // The others that wait for this stage, and are still driven by a live process.
        let waiting: Vec<u64> = ctx
            .records
            .executions(&pipeline)
            .into_iter()
            .filter(|e| {
                e.id != id
                    && e.status == Status::InProgress
                    && e.waiting_for.as_deref() == Some(stage.as_str())
                    && ctx.records.is_driven(&pipeline, &e.id)
            })
            .map(|e| e.sequence)
            .collect();
        if mode == ExecutionMode::Superseded && waiting.iter().any(|s| *s > sequence) {
            return Err(Through::Superseded);
        }
        let behind_older = mode == ExecutionMode::Queued && waiting.iter().any(|s| *s < sequence);
        if !behind_older {
            match ctx.records.try_enter(&pipeline, si) {
                Ok(Some(lock)) => {
                    if said {
                        shared.update(|e| e.waiting_for = None);
                    }
                    return Ok(lock);
                }
                Ok(None) => {}
                Err(e) => return Err(Through::Failed(format!("cannot enter stage {stage}: {e}"))),
            }
        }
        if !said {
            said = true;
            shared.update(|e| e.waiting_for = Some(stage.clone()));
            ctx.say(&format!(
                "{pipeline}: waiting to enter stage {stage}: another execution is in it ({} mode)",
                mode.as_str()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs the actions of stage `si` not yet succeeded, by run order.
async fn run_stage(shared: &Shared, si: usize) -> Through {
    let orders: std::collections::BTreeSet<u32> = shared.read(|e| {
        e.definition.stages[si]
            .actions
            .iter()
            .map(|a| a.run_order)
            .collect()
    });
    let mut stopping: Option<StopRequest> = None;
    for order in orders {
        let todo: Vec<usize> = shared.read(|e| {
            e.definition.stages[si]
                .actions
                .iter()
                .enumerate()
                .filter(|(ai, a)| {
                    a.run_order == order && e.stages[si].actions[*ai].status != Status::Succeeded
                })
                .map(|(ai, _)| ai)
                .collect()
        });
        if todo.is_empty() {
            continue;
        }
        if let Some(stop) = stopping.take().or_else(|| shared.stop_request()) {
            return Through::Stopped(stop);
        }
        let all = join_all(todo.iter().map(|ai| actions::run(shared.clone(), si, *ai)));
        tokio::pin!(all);
        loop {
            tokio::select! {
                _ = &mut all => break,
                _ = tokio::time::sleep(POLL) => {
                    if stopping.is_none() && let Some(stop) = shared.stop_request() {
                        if stop.abandon {
                            // The actions' futures are dropped with `all`: their builds and
                            // deployments end with them.
                            return Through::Stopped(stop);
                        }
                        shared.update(|e| e.status = Status::Stopping);
                        shared.ctx.say("stopping: the actions in progress finish first");
                        stopping = Some(stop);
                    }
                }
            }
        }
        let failed: Vec<String> = shared.read(|e| {
            todo.iter()
                .map(|ai| &e.stages[si].actions[*ai])
                .filter(|a| a.status != Status::Succeeded)
                .map(|a| {
                    format!(
                        "{} {}{}",
                        a.name,
                        a.status.as_str(),
                        a.error
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        });
        // A stop asked for while the actions ran ends the stage stopped, even when the actions
        // saw it first (an approval gives up at a stop before this loop's next poll).
        if let Some(stop) = stopping.take().or_else(|| shared.stop_request()) {
            return Through::Stopped(stop);
        }
        if !failed.is_empty() {
            let stage = shared.read(|e| e.stages[si].name.clone());
            return Through::Failed(format!("stage {stage}: {}", failed.join("; ")));
        }
    }
    Through::Succeeded
}

/// What `#{…}` reads for an action of stage `si` (namespaces of every action that succeeded).
pub(super) fn scope(e: &Execution) -> Scope {
    Scope {
        namespaces: e.namespaces(),
        variables: e.variables.clone(),
        execution_id: e.id.clone(),
    }
}

/// Makes a failed (or stopped) execution's stage run again: its actions that did not succeed go
/// back to pending, with the artifacts and variables the execution had. The execution must not be
/// driven by another process; the caller drives it next.
pub fn prepare_retry(
    ctx: &Context,
    pipeline: &str,
    id: &str,
    stage: &str,
) -> Result<(Execution, Driving), RecordError> {
    let (mut e, lock) = take_over(ctx, pipeline, id)?;
    if !matches!(e.status, Status::Failed | Status::Stopped) {
        return Err(RecordError::Refused(format!(
            "execution {} is {}: only a failed or stopped execution can be retried",
            e.id,
            e.status.as_str()
        )));
    }
    let Some(si) = e.stages.iter().position(|s| s.name == stage) else {
        return Err(RecordError::Refused(format!(
            "the pipeline has no stage `{stage}` (its stages: {})",
            names(e.stages.iter().map(|s| s.name.as_str()))
        )));
    };
    if !matches!(e.stages[si].status, Status::Failed | Status::Stopped) {
        return Err(RecordError::Refused(format!(
            "stage {stage} is {}: retry the stage that failed or was stopped{}",
            e.stages[si].status.as_str(),
            e.stages
                .iter()
                .find(|s| matches!(s.status, Status::Failed | Status::Stopped))
                .map(|s| format!(" ({})", s.name))
                .unwrap_or_default()
        )));
    }
    for action in &mut e.stages[si].actions {
        if action.status != Status::Succeeded {
            action.status = Status::Pending;
            action.error = None;
            action.approval = None;
            action.ended_ms = None;
        }
    }
    ctx.records.clear_approvals(pipeline, &e.id, si);
    ctx.records.clear_stop(pipeline, &e.id);
    e.stages[si].status = Status::Pending;
    e.status = Status::InProgress;
    e.status_summary = None;
    e.ended_ms = None;
    ctx.records.save(&e)?;
    Ok((e, lock))
}

/// Ends an execution no process drives (its driver died): stopped now, its in-progress actions
/// abandoned.
pub fn stop_undriven(
    records: &super::record::Records,
    pipeline: &str,
    id: &str,
    stop: &StopRequest,
) -> Result<Option<Execution>, RecordError> {
    let Some(lock) = records.try_drive(pipeline, id)? else {
        return Ok(None);
    };
    let mut e = records.load(pipeline, id)?;
    if e.status.is_final() {
        return Err(RecordError::Refused(format!(
            "execution {} has ended already ({})",
            e.id,
            e.status.as_str()
        )));
    }
    let now = now_ms();
    for stage in &mut e.stages {
        if stage.status == Status::InProgress {
            stage.status = Status::Stopped;
        }
        for a in &mut stage.actions {
            if a.status == Status::InProgress {
                a.status = Status::Abandoned;
                a.ended_ms = Some(now);
            }
        }
    }
    e.status = Status::Stopped;
    e.status_summary = Some(format!("stopped by {}: {}", stop.by, stop.reason));
    e.ended_ms = Some(now);
    e.waiting_for = None;
    records.save(&e)?;
    drop(lock);
    Ok(Some(e))
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = list.collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}
