//! Which commits start executions: each git source's repository is looked at (by a poll, or by a
//! hook right after a commit), the branches that moved since the last look are matched against
//! the pipeline's V2 trigger filters (or, without triggers, the source's own branch), and each
//! match is an execution to start with that commit.
//!
//! What was seen is kept in `<state>/pipelines/<pipeline>/watch.json`, under an flock, so that
//! hooks firing together and a poller never start one commit twice.

use std::collections::BTreeMap;

use super::Context;
use super::record::Trigger;
use super::run::Start;
use super::source;
use super::trigger::{self, Push};
use crate::spec::pipeline::Pipeline;

/// The heads seen at the last look: repository folder -> branch -> commit.
type Seen = BTreeMap<String, BTreeMap<String, String>>;

/// The git source actions of a pipeline: (action name, repository name, its configured branch).
pub fn git_sources(pipeline: &Pipeline) -> Vec<(String, String, String)> {
    let Some(first) = pipeline.stages.first() else {
        return Vec::new();
    };
    first
        .actions
        .iter()
        .filter_map(|a| {
            let (repo_key, branch_key) = super::actions::git_keys(&a.action_type_id.provider)?;
            let repo = a.configuration.get(repo_key)?;
            let branch = a.configuration.get(branch_key)?;
            Some((a.name.clone(), repo.clone(), branch.clone()))
        })
        .collect()
}

/// Looks at every git source's repository once: the executions the commits since the last look
/// call for (none the first time, which only remembers what is there). `how` names the trigger
/// as CodePipeline would: `PollForSourceChanges` or `Webhook`.
pub fn look(ctx: &Context, pipeline: &Pipeline, how: &str) -> Result<Vec<Start>, String> {
    let dir = ctx
        .records
        .pipeline_dir(&pipeline.name)
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mut file, text) =
        super::record::LockedFile::open(&dir.join("watch.json")).map_err(|e| e.to_string())?;
    let mut seen: Seen = serde_json::from_str(&text).unwrap_or_default();
    let mut starts = Vec::new();
    for (action, repository, branch) in git_sources(pipeline) {
        let repo = super::actions::repository(ctx, &repository)?;
        let key = repo.to_string_lossy().into_owned();
        let heads: BTreeMap<String, String> = source::branches(&repo)
            .map_err(|e| format!("{repository} ({}): {e}", repo.display()))?
            .into_iter()
            .collect();
        let Some(before) = seen.get(&key).cloned() else {
            seen.insert(key, heads);
            continue;
        };
        for (name, commit) in &heads {
            let old = before.get(name);
            if old == Some(commit) {
                continue;
            }
            let tags = source::tags_at(&repo, commit).map_err(|e| e.to_string())?;
            let files = source::changed_files(&repo, old.map(String::as_str), commit)
                .map_err(|e| e.to_string())?;
            let push = Push {
                branch: Some(name),
                tags: &tags,
                files: &files,
            };
            let decision = trigger::starts(&pipeline.triggers, &action, &branch, &push);
            (ctx.say)(&format!(
                "{}: {} of {repository} moved to {}: {}",
                pipeline.name,
                name,
                &commit[..commit.len().min(12)],
                decision.reason
            ));
            if decision.start {
                starts.push(Start {
                    trigger: Trigger {
                        trigger_type: how.to_string(),
                        trigger_detail: format!("{commit} on {name} of {repository}"),
                    },
                    variables: BTreeMap::new(),
                    revisions: BTreeMap::from([(action.clone(), commit.clone())]),
                });
            }
        }
        seen.insert(key, heads);
    }
    let json = serde_json::to_string_pretty(&seen).unwrap_or_default();
    file.replace(&json).map_err(|e| e.to_string())?;
    Ok(starts)
}
