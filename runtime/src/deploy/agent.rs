//! `kiln agent --watch`: polls a store for the revision at a reference (an OCI tag, an S3 key, a
//! file), as the CodeDeploy agent polls its service, and deploys each new digest once.
//!
//! State lives in the deployment records, so a restarted agent neither deploys a digest again nor
//! loses a deployment that was under way: one left `InProgress` by a crash is marked failed and
//! rolled back to the last successful revision before polling starts.
//!
//! A revision kiln refuses (an invalid AppSpec, `os: windows`) is not a deployment and leaves no
//! record: the agent says so, keeps its digest in memory so as not to fetch it again every poll, and
//! goes on watching for the next one. A restarted agent fetches it once more, and refuses it again.

use std::collections::HashSet;
use std::time::Duration;

use super::{DeployError, DeployOptions, Deployment, Status};

/// What the agent did in one poll.
#[derive(Debug)]
pub enum Poll {
    Unchanged(String),
    Deployed(Box<Deployment>),
    Unavailable(String),
    /// The digest at the reference is refused: `error` says why when it was refused in this poll
    /// (`None`: in an earlier one).
    Refused {
        digest: String,
        error: Option<DeployError>,
    },
}

/// Marks deployments a crash left in progress as failed and rolls back to the last good revision.
pub async fn recover(options: &DeployOptions) -> Result<Vec<Deployment>, DeployError> {
    let all = super::list(&options.root, Some(&options.group));
    let mut rolled = Vec::new();
    for mut d in all
        .iter()
        .filter(|d| d.status == Status::InProgress)
        .cloned()
    {
        let last = d
            .events
            .last()
            .map(|e| e.name.clone())
            .unwrap_or_else(|| "its start".into());
        d.status = Status::Failed;
        d.error = Some(format!(
            "interrupted: kiln stopped during {last}; rolled back when the agent started again"
        ));
        let layout = super::Layout {
            root: options.root.clone(),
            group_id: super::group_id(&options.group),
        };
        let good = all
            .iter()
            .rev()
            .find(|g| g.status == Status::Succeeded && g.id != d.id);
        if let Some(good) = good {
            let sandbox = crate::sandbox::Sandbox::new(options.cache_dir.clone())
                .map_err(|e| DeployError::Engine(format!("cannot start the plugin engine: {e}")))?;
            let bundle = good.dir.join("bundle.tar");
            let r = super::run(
                options,
                &layout,
                &sandbox,
                &bundle.to_string_lossy(),
                Some((&d.id, good)),
            )
            .await?;
            d.rolled_back_by = Some(r.id.clone());
            rolled.push(r);
        }
        super::save(&layout, &d)?;
    }
    Ok(rolled)
}

/// One poll: deploys the revision at `options.revision` when its digest has not been deployed to
/// the group yet (whatever became of that deployment: a failing digest is not retried forever)
/// and is not in `refused`. A revision refused now is added to `refused`.
pub async fn poll(
    options: &DeployOptions,
    refused: &mut HashSet<String>,
) -> Result<Poll, DeployError> {
    let listed = match crate::store::describe(&options.revision, &options.access).await {
        Ok(l) => l,
        Err(e) => return Ok(Poll::Unavailable(e.to_string())),
    };
    let Some(digest) = listed.blake3 else {
        return Ok(Poll::Unavailable(format!(
            "{} has no BLAKE3 digest: push it with kiln",
            options.revision
        )));
    };
    let seen = super::list(&options.root, Some(&options.group))
        .iter()
        .any(|d| d.digest.as_deref() == Some(digest.as_str()) && d.rollback_of.is_none());
    if seen {
        return Ok(Poll::Unchanged(digest));
    }
    if refused.contains(&digest) {
        return Ok(Poll::Refused {
            digest,
            error: None,
        });
    }
    match super::deploy(options).await {
        Ok((d, _)) => Ok(Poll::Deployed(Box::new(d))),
        Err(e @ (DeployError::Unsupported(_) | DeployError::AppSpec(_))) => {
            refused.insert(digest.clone());
            Ok(Poll::Refused {
                digest,
                error: Some(e),
            })
        }
        Err(e) => Err(e),
    }
}

/// Polls every `interval` until stopped (Ctrl-C), or once with `once` (then a revision refused is
/// the error).
pub async fn watch(
    options: &DeployOptions,
    interval: Duration,
    once: bool,
) -> Result<(), DeployError> {
    for r in recover(options).await? {
        eprintln!(
            "agent: an interrupted deployment was rolled back: {} {:?}",
            r.id, r.status
        );
    }
    let mut refused = HashSet::new();
    loop {
        match poll(options, &mut refused).await? {
            Poll::Unchanged(digest) => tracing::info!(
                "agent: {} is blake3:{} (deployed already)",
                options.revision,
                digest
            ),
            Poll::Deployed(d) => eprintln!(
                "agent: deployed {} ({}): {} {:?}",
                options.revision,
                d.digest.as_deref().unwrap_or("-"),
                d.id,
                d.status
            ),
            Poll::Unavailable(why) => eprintln!("agent: {why}; trying again in {interval:?}"),
            Poll::Refused {
                digest,
                error: None,
            } => tracing::info!(
                "agent: {} is blake3:{digest} (refused already)",
                options.revision
            ),
            Poll::Refused { error: Some(e), .. } if once => return Err(e),
            Poll::Refused {
                digest,
                error: Some(e),
            } => eprintln!(
                "agent: refused {} (blake3:{digest}); watching for another revision: {e}",
                options.revision
            ),
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}
