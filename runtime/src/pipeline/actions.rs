//! The actions kiln runs itself: git and store sources, CodeBuild, manual approvals, CodeDeploy;
//! and the seam for providers a plugin claims.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::record::{ApprovalRecord, ArtifactRecord, SourceRevision, Status, now_ms};
use super::run::{POLL, Shared, scope};
use super::{BuildRequest, DeployRequest, GroupTarget};
use crate::cas::Digest;
use crate::cas::tree::Tree;
use crate::spec::pipeline::{self as spec, Action};

/// What an action gave, once it succeeded.
#[derive(Default)]
struct Done {
    outputs: Vec<ArtifactRecord>,
    variables: BTreeMap<String, String>,
}

/// Runs action `ai` of stage `si` and records how it went.
pub(super) async fn run(shared: Shared, si: usize, ai: usize) {
    let (action, scope, artifacts, pipeline) = shared.read(|e| {
        (
            e.definition.stages[si].actions[ai].clone(),
            scope(e),
            e.artifacts(),
            e.pipeline.clone(),
        )
    });
    let stage = shared.read(|e| e.stages[si].name.clone());
    let inputs: Vec<ArtifactRecord> = action
        .input_artifacts
        .iter()
        .map(|a| ArtifactRecord {
            name: a.name.clone(),
            digest: artifacts.get(&a.name).cloned().unwrap_or_default(),
        })
        .collect();
    let started = now_ms();
    shared.update_action(si, ai, |r| {
        r.status = Status::InProgress;
        r.started_ms = Some(started);
        r.ended_ms = None;
        r.attempts += 1;
        r.error = None;
        r.input_artifacts = inputs.clone();
        r.output_artifacts.clear();
        r.variables.clear();
    });
    let id = &action.action_type_id;
    shared.ctx().say(&format!(
        "{pipeline}: {stage}/{} ({}) started",
        action.name, id.provider
    ));
    // An input no earlier action produced: the checks of the file prevent it, a retry of an
    // execution recorded by an older kiln could not.
    let result = match inputs.iter().find(|a| a.digest.is_empty()) {
        Some(missing) => Err(format!(
            "input artifact {} was produced by no action that ran before",
            missing.name
        )),
        None => match scope.resolve_all(&action.configuration) {
            Err(e) => Err(e),
            Ok(configuration) => {
                shared.update_action(si, ai, |r| r.configuration = configuration.clone());
                let call = Call {
                    shared: &shared,
                    si,
                    ai,
                    action: &action,
                    configuration: &configuration,
                    inputs: &inputs,
                };
                call.dispatch().await
            }
        },
    };
    let ended = now_ms();
    let (status, line) = match result {
        Ok(done) => {
            shared.update_action(si, ai, |r| {
                r.status = Status::Succeeded;
                r.output_artifacts = done.outputs;
                r.variables = done.variables;
                r.ended_ms = Some(ended);
            });
            (Status::Succeeded, String::new())
        }
        Err(why) => {
            let status = if why == ABANDONED {
                Status::Abandoned
            } else {
                Status::Failed
            };
            shared.update_action(si, ai, |r| {
                r.status = status;
                r.error = (status == Status::Failed).then(|| why.clone());
                r.ended_ms = Some(ended);
            });
            (status, format!(": {why}"))
        }
    };
    shared.ctx().say(&format!(
        "{pipeline}: {stage}/{} {} in {:.1}s{line}",
        action.name,
        status.as_str(),
        (ended - started) as f64 / 1000.0
    ));
}

/// What an action that stopped because the execution was stopped says.
const ABANDONED: &str = "abandoned: the execution was stopped";

/// One action's run.
struct Call<'a> {
    shared: &'a Shared,
    si: usize,
    ai: usize,
    action: &'a Action,
    configuration: &'a BTreeMap<String, String>,
    inputs: &'a [ArtifactRecord],
}

impl Call<'_> {
    fn config(&self, key: &str) -> Option<&str> {
        self.configuration
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str) -> Result<&str, String> {
        self.config(key)
            .ok_or_else(|| format!("its configuration has no {key}"))
    }

    async fn dispatch(&self) -> Result<Done, String> {
        let id = &self.action.action_type_id;
        match (id.category.as_str(), id.provider.as_str()) {
            ("Source", "CodeCommit" | "CodeStarSourceConnection" | "GitHub") => self.git_source(),
            ("Source", "S3" | "ECR") => self.store_source().await,
            ("Build" | "Test", "CodeBuild") => self.build().await,
            ("Approval", "Manual") => self.approval().await,
            ("Deploy", "CodeDeploy") => self.deploy().await,
            _ => self.provided().await,
        }
    }

    /// A scratch folder for this action's files, removed when the returned guard drops.
    fn scratch(&self) -> Result<tempfile::TempDir, String> {
        tempfile::Builder::new()
            .prefix("kiln-pipeline-")
            .tempdir()
            .map_err(|e| format!("cannot make a scratch folder: {e}"))
    }

    /// Writes each input artifact into its own folder below `scratch`.
    fn restore_inputs(&self, scratch: &Path) -> Result<Vec<(String, PathBuf)>, String> {
        let store = &self.shared.ctx().artifacts;
        self.inputs
            .iter()
            .map(|a| {
                let digest = Digest::parse(&a.digest)
                    .ok_or_else(|| format!("artifact {} has no valid digest", a.name))?;
                let dir = scratch.join("in").join(&a.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
                Tree::load(store, &digest)
                    .and_then(|tree| tree.restore(store, &dir))
                    .map_err(|e| format!("cannot restore artifact {}: {e}", a.name))?;
                Ok((a.name.clone(), dir))
            })
            .collect()
    }

    /// Stores `dir` as output artifact `index` of the action.
    fn store_output(&self, index: usize, dir: &Path) -> Result<ArtifactRecord, String> {
        let name = &self.action.output_artifacts[index].name;
        let (digest, _) = Tree::store_dir(&self.shared.ctx().artifacts, dir)
            .map_err(|e| format!("cannot store artifact {name}: {e}"))?;
        Ok(ArtifactRecord {
            name: name.clone(),
            digest: digest.hex(),
        })
    }

    /// Records the revision this source action took (a retry takes it again).
    fn took_revision(&self, id: &str, summary: &str) {
        self.shared.update(|e| {
            e.source_revisions
                .retain(|r| r.action_name != self.action.name);
            e.source_revisions.push(SourceRevision {
                action_name: self.action.name.clone(),
                revision_id: id.to_string(),
                revision_summary: summary.to_string(),
            });
        });
    }

    /// CodeCommit, CodeStarSourceConnection, GitHub (v1): the tree of the branch's commit.
    fn git_source(&self) -> Result<Done, String> {
        let provider = self.action.action_type_id.provider.as_str();
        let (repository_key, branch_key) =
            git_keys(provider).ok_or_else(|| format!("{provider} is not a git source"))?;
        let (repository, branch) = (self.required(repository_key)?, self.required(branch_key)?);
        let repo = self::repository(self.shared.ctx(), repository)?;
        let chosen = self.shared.read(|e| {
            e.source_revisions
                .iter()
                .find(|r| r.action_name == self.action.name)
                .map(|r| r.revision_id.clone())
                .or_else(|| e.pending_revisions.get(&self.action.name).cloned())
        });
        let commit = match chosen {
            Some(id) => super::source::commit(&repo, &id, branch),
            None => super::source::head_of(&repo, branch),
        }
        .map_err(|e| format!("{repository} ({}): {e}", repo.display()))?;
        let scratch = self.scratch()?;
        let tree = scratch.path().join("tree");
        std::fs::create_dir(&tree).map_err(|e| e.to_string())?;
        super::source::export(&repo, &commit.id, &tree).map_err(|e| e.to_string())?;
        let output = self.store_output(0, &tree)?;
        let variables = super::source::variables(&commit, repository, provider);
        self.took_revision(&commit.id, &commit.subject);
        self.shared.ctx().say(&format!(
            "  {} {} of {repository} ({branch}): {}",
            self.action.name,
            &commit.id[..commit.id.len().min(12)],
            commit.subject
        ));
        Ok(Done {
            outputs: vec![output],
            variables,
        })
    }

    /// S3 and ECR sources: a revision in a kiln store.
    async fn store_source(&self) -> Result<Done, String> {
        let ctx = self.shared.ctx();
        let provider = self.action.action_type_id.provider.as_str();
        let (reference, mut variables) = if provider == "S3" {
            let bucket = self.required("S3Bucket")?;
            let key = self.required("S3ObjectKey")?;
            let base = ctx
                .mapping
                .sources
                .get(bucket)
                .cloned()
                .unwrap_or_else(|| format!("s3://{bucket}"));
            (
                format!("{}/{key}", base.trim_end_matches('/')),
                BTreeMap::from([("ObjectKey".to_string(), key.to_string())]),
            )
        } else {
            let repository = self.required("RepositoryName")?;
            let tag = self.config("ImageTag").unwrap_or("latest");
            let base = ctx.mapping.sources.get(repository).ok_or_else(|| {
                format!(
                    "kiln.toml's [pipeline.sources] does not name the ECR repository `{repository}`: add `{repository} = \"oci://registry/repository\"` there"
                )
            })?;
            (
                format!("{base}:{tag}"),
                BTreeMap::from([
                    ("RepositoryName".to_string(), repository.to_string()),
                    ("ImageTag".to_string(), tag.to_string()),
                    ("ImageURI".to_string(), format!("{base}:{tag}")),
                ]),
            )
        };
        let scratch = self.scratch()?;
        let dir = scratch.path().join("revision");
        let into = crate::store::PullInto::Folder(dir.clone(), Default::default());
        let pulled = crate::store::pull(&reference, &into, &ctx.access)
            .await
            .map_err(|e| format!("{reference}: {e}"))?;
        if provider == "S3" {
            variables.insert("ETag".into(), pulled.blake3.clone());
            variables.insert("VersionId".into(), pulled.blake3.clone());
        } else {
            variables.insert("ImageDigest".into(), pulled.sha256.clone());
        }
        let output = self.store_output(0, &dir)?;
        self.took_revision(&pulled.blake3, &reference);
        Ok(Done {
            outputs: vec![output],
            variables,
        })
    }

    /// CodeBuild: `kiln build` of the primary input, the others as secondary sources.
    async fn build(&self) -> Result<Done, String> {
        let ctx = self.shared.ctx();
        let project = self.required("ProjectName")?;
        let scratch = self.scratch()?;
        let mut sources = self.restore_inputs(scratch.path())?;
        let primary = match self.config("PrimarySource") {
            Some(name) => sources.iter().position(|(n, _)| n == name).ok_or_else(|| {
                format!("PrimarySource {name} is not one of the action's input artifacts")
            })?,
            None => 0,
        };
        let (_, source) = sources.remove(primary);
        let mut env = Vec::new();
        let mut secret_refs = Vec::new();
        if let Some(text) = self.config("EnvironmentVariables") {
            for var in spec::environment_variables(self.configuration)
                .map_err(|e| format!("EnvironmentVariables: {e} ({text})"))?
            {
                match var.kind {
                    spec::EnvKind::Plaintext => env.push((var.name, var.value)),
                    spec::EnvKind::ParameterStore | spec::EnvKind::SecretsManager => {
                        secret_refs.push((var.name, var.value))
                    }
                }
            }
        }
        if let Some(remote) = &ctx.remote {
            return self
                .remote_build(remote, project, source, sources, env, secret_refs)
                .await;
        }
        let mut secret_env = Vec::new();
        for (name, reference) in secret_refs {
            let value = ctx.secrets.get(&reference).ok_or_else(|| {
                format!(
                    "EnvironmentVariables: {name} refers to `{reference}`, which kiln's secrets file does not hold (--secrets, KILN_SECRETS)"
                )
            })?;
            secret_env.push((name, value));
        }
        let pipeline = self.shared.read(|e| e.pipeline.clone());
        let output = scratch.path().join("out");
        let request = BuildRequest {
            buildspec: ctx.mapping.projects.get(project).map(PathBuf::from),
            source,
            secondary_sources: sources,
            env,
            secret_env,
            project: project.to_string(),
            output: output.clone(),
            initiator: format!("codepipeline/{pipeline}"),
        };
        let mut options = (ctx.build)(request);
        // The build's id and log as soon as it has them, so that a running build's log shows.
        let (announce, mut announced) = tokio::sync::mpsc::unbounded_channel();
        options.announce = Some(announce);
        let build = async move {
            let result = crate::build::run_leaving_scratch(&options).await;
            drop(options);
            result
        };
        let show = async {
            while let Some((id, log)) = announced.recv().await {
                self.shared.update_action(self.si, self.ai, |r| {
                    r.build_id = Some(id);
                    r.log = Some(log);
                });
            }
        };
        let (built, ()) = tokio::join!(build, show);
        let (result, workspace) =
            built.map_err(|e| format!("build of {project} could not start: {e}"))?;
        workspace.remove_in_background();
        self.shared.update_action(self.si, self.ai, |r| {
            r.build_id = Some(result.build_id.clone());
            r.log = result.log_file.clone();
        });
        if result.status != crate::build::result::Status::Succeeded {
            let phase = result
                .phases
                .iter()
                .find(|p| p.status != crate::build::result::Status::Succeeded)
                .map(|p| format!(" in {}", p.name))
                .unwrap_or_default();
            return Err(format!(
                "build {} of {project} {}{phase}",
                result.build_number,
                result.status.as_str()
            ));
        }
        let made: Vec<(String, PathBuf)> = result
            .artifacts
            .iter()
            .map(|a| (a.identifier.clone(), a.path.clone()))
            .collect();
        Ok(Done {
            outputs: self.build_outputs(&made)?,
            variables: result.exported_variables,
        })
    }

    /// The action's output artifacts from a build's artifacts (identifier, folder): the primary
    /// one first, then each secondary one of the output's name.
    fn build_outputs(&self, made: &[(String, PathBuf)]) -> Result<Vec<ArtifactRecord>, String> {
        let mut outputs = Vec::new();
        for (i, wanted) in self.action.output_artifacts.iter().enumerate() {
            let found = made
                .iter()
                .find(|(id, _)| (i == 0 && id == "primary") || *id == wanted.name);
            let Some((_, path)) = found else {
                return Err(format!(
                    "the build made no artifact for output {}: {}",
                    wanted.name,
                    if i == 0 {
                        "the buildspec's `artifacts` gave no files".to_string()
                    } else {
                        format!(
                            "a second output needs a secondary artifact of that name (artifacts.secondary-artifacts.{})",
                            wanted.name
                        )
                    }
                ));
            };
            outputs.push(self.store_output(i, path)?);
        }
        Ok(outputs)
    }

    /// CodeBuild on a worker of the build queue: the source goes to the shared store, the job's
    /// log to the action's log file, the artifacts come back. Secret variables go as references,
    /// which the worker resolves from its own secrets.
    async fn remote_build(
        &self,
        remote: &super::RemoteBuilds,
        project: &str,
        source: PathBuf,
        secondary: Vec<(String, PathBuf)>,
        env: Vec<(String, String)>,
        secret_refs: Vec<(String, String)>,
    ) -> Result<Done, String> {
        use crate::worker::queue::{JobDescription, JobState, Queue, SecretRef, Submission};
        use std::io::Write;
        let ctx = self.shared.ctx();
        if let Some((name, _)) = secondary.first() {
            return Err(format!(
                "{name} would be a secondary source, which builds on a remote worker cannot have yet: run the pipeline without --remote"
            ));
        }
        let (digest, _) =
            crate::worker::remote::upload_source(&remote.local, &remote.store, &source, &[])
                .await
                .map_err(|e| format!("cannot send the source to {}: {e}", remote.store.url()))?;
        let mut options = remote.options.clone();
        options.insert("project".into(), project.into());
        let description = JobDescription {
            source: digest.hex(),
            buildspec: ctx
                .mapping
                .projects
                .get(project)
                .cloned()
                .unwrap_or_else(|| "buildspec.yml".into()),
            options,
            env: env.into_iter().collect(),
            secrets: secret_refs
                .into_iter()
                .map(|(name, reference)| (name, SecretRef(reference)))
                .collect(),
        };
        let job = remote
            .queue
            .submit(&Submission::new(description))
            .await
            .map_err(|e| format!("cannot queue the build: {e}"))?;
        let (pipeline, id) = self.shared.read(|e| (e.pipeline.clone(), e.id.clone()));
        let dir = ctx
            .records
            .execution_dir(&pipeline, &id)
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_path = dir.join(format!("{}-{}.log", self.si, self.ai));
        let mut log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        self.shared.update_action(self.si, self.ai, |r| {
            r.build_id = Some(format!("job {job}"));
            r.log = Some(log_path.clone());
        });
        self.shared.remote_jobs(|jobs| jobs.push(job));
        let followed = crate::worker::remote::follow(
            &*remote.queue,
            job,
            |_, bytes| {
                let _ = log.write_all(bytes);
            },
            |_| crate::worker::remote::Follow::Wait,
        )
        .await;
        self.shared.remote_jobs(|jobs| jobs.retain(|j| *j != job));
        let finished = followed
            .map_err(|e| format!("lost the build queue: {e}"))?
            .ok_or("the job was left")?;
        if finished.state != JobState::Succeeded {
            let result = finished.result.clone().unwrap_or_default();
            let phase = result["build"]["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["status"] != "SUCCEEDED" && p["status"] != "SKIPPED")
                .and_then(|p| p["name"].as_str())
                .map(|name| format!(" in {name}"))
                .unwrap_or_default();
            return Err(format!(
                "job {job} {}{phase} (attempt {} on {})",
                finished.state.as_str(),
                finished.attempt,
                finished.worker.as_deref().unwrap_or("no worker")
            ));
        }
        let result = finished.result.clone().unwrap_or_default();
        let scratch = self.scratch()?;
        let fetched = crate::worker::remote::fetch_artifacts(
            &remote.local,
            &remote.store,
            &result,
            scratch.path(),
        )
        .await
        .map_err(|e| format!("cannot fetch the artifacts of job {job}: {e}"))?;
        let made: Vec<(String, PathBuf)> = fetched
            .into_iter()
            .map(|f| (f.identifier, f.path))
            .collect();
        let variables = serde_json::from_value(result["build"]["exported_variables"].clone())
            .unwrap_or_default();
        Ok(Done {
            outputs: self.build_outputs(&made)?,
            variables,
        })
    }

    /// A manual approval: waits for `kiln pipeline approve` (or the web page), a stop, or the
    /// timeout.
    async fn approval(&self) -> Result<Done, String> {
        let ctx = self.shared.ctx();
        let expires_ms = now_ms() + ctx.approval_timeout.as_millis() as u64;
        let (pipeline, id, stage) = self.shared.read(|e| {
            (
                e.pipeline.clone(),
                e.id.clone(),
                e.stages[self.si].name.clone(),
            )
        });
        let custom = self.config("CustomData").map(str::to_string);
        let link = self.config("ExternalEntityLink").map(str::to_string);
        self.shared.update_action(self.si, self.ai, |r| {
            r.approval = Some(ApprovalRecord {
                custom_data: custom.clone(),
                external_entity_link: link.clone(),
                expires_ms,
                decision: None,
            });
        });
        let mut lines = vec![format!(
            "{pipeline}: {stage}/{} waits for approval{}",
            self.action.name,
            custom
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        )];
        if let Some(link) = &link {
            lines.push(format!("  review: {link}"));
        }
        lines.push(format!(
            "  answer: kiln pipeline approve {} {} {} [--reject] [--comment TEXT]",
            shell_words::quote(&pipeline),
            shell_words::quote(&stage),
            shell_words::quote(&self.action.name)
        ));
        ctx.say(&lines.join("\n"));
        loop {
            if let Some(decision) = ctx
                .records
                .approval_answer(&pipeline, &id, self.si, self.ai)
            {
                self.shared.update_action(self.si, self.ai, |r| {
                    if let Some(a) = &mut r.approval {
                        a.decision = Some(decision.clone());
                    }
                });
                return if decision.approved {
                    Ok(Done::default())
                } else {
                    Err(format!(
                        "rejected by {}{}",
                        decision.by,
                        if decision.comment.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", decision.comment)
                        }
                    ))
                };
            }
            if ctx.records.stop_request(&pipeline, &id).is_some() {
                return Err(ABANDONED.into());
            }
            if now_ms() >= expires_ms {
                return Err(format!(
                    "no answer within {}: the approval timed out",
                    humantime::format_duration(ctx.approval_timeout)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// CodeDeploy: the input packaged as a revision, pushed to the artifact store, deployed here
    /// or pushed where agents watch.
    async fn deploy(&self) -> Result<Done, String> {
        let ctx = self.shared.ctx();
        let application = self.required("ApplicationName")?;
        let group = self.required("DeploymentGroupName")?;
        let scratch = self.scratch()?;
        let (_, dir) = self
            .restore_inputs(scratch.path())?
            .into_iter()
            .next()
            .ok_or("CodeDeploy takes one input artifact, and has none")?;
        let (pipeline, id, sequence, store) = self.shared.read(|e| {
            (
                e.pipeline.clone(),
                e.id.clone(),
                e.sequence,
                e.definition.artifact_store.clone(),
            )
        });
        let zip = scratch.path().join("revision.zip");
        let options = crate::revision::PackageOptions {
            format: crate::revision::Format::Zip,
            require_appspec: true,
            timestamp: None,
        };
        let manifest = crate::revision::package(&dir, &zip, &options, None)
            .map_err(|e| format!("cannot package the input as a revision: {e}"))?;
        let base = store
            .as_ref()
            .and_then(|s| ctx.mapping.artifact_stores.get(&s.location).cloned())
            .or_else(|| ctx.mapping.artifact_stores.get("default").cloned())
            .unwrap_or_else(|| {
                format!(
                    "file://{}",
                    ctx.state_dir
                        .join("pipeline-store")
                        .join(&pipeline)
                        .display()
                )
            });
        let reference = if base.starts_with("oci://") {
            format!("{base}:{sequence}-{}", &id[..8])
        } else {
            format!(
                "{}/{id}/{}.zip",
                base.trim_end_matches('/'),
                self.action.name
            )
        };
        crate::store::push(&zip, &reference, &ctx.access, false)
            .await
            .map_err(|e| format!("cannot push the revision to {reference}: {e}"))?;
        let target = ctx
            .mapping
            .deployment_groups
            .get(group)
            .cloned()
            .unwrap_or_default();
        let mut variables = BTreeMap::from([
            ("RevisionLocation".to_string(), reference.clone()),
            ("RevisionDigest".to_string(), manifest.blake3.clone()),
        ]);
        if let Some(watched) = &target.reference {
            crate::store::push(&zip, watched, &ctx.access, true)
                .await
                .map_err(|e| format!("cannot move {watched} to the revision: {e}"))?;
            ctx.say(&format!(
                "  {}: {watched} is now blake3:{} (hosts running `kiln agent --watch {watched}` deploy it)",
                self.action.name, manifest.blake3
            ));
            variables.insert("WatchedReference".into(), watched.clone());
        }
        if deploys_here(&target) {
            let request = DeployRequest {
                revision: reference.clone(),
                group: group.to_string(),
                application: target
                    .application
                    .clone()
                    .unwrap_or_else(|| application.to_string()),
                root: target.root.clone(),
            };
            let options = (ctx.deploy)(request);
            let (deployment, _rollback) = crate::deploy::deploy(&options)
                .await
                .map_err(|e| format!("deployment to {group} could not start: {e}"))?;
            self.shared.update_action(self.si, self.ai, |r| {
                r.deployment_id = Some(deployment.id.clone());
                r.log = Some(deployment.dir.join("logs/scripts.log"));
            });
            variables.insert("DeploymentId".into(), deployment.id.clone());
            if deployment.status != crate::deploy::Status::Succeeded {
                return Err(format!(
                    "deployment {} to {group} failed{}",
                    deployment.id,
                    deployment
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        Ok(Done {
            outputs: Vec::new(),
            variables,
        })
    }

    /// An action type a plugin claims.
    async fn provided(&self) -> Result<Done, String> {
        let ctx = self.shared.ctx();
        let id = &self.action.action_type_id;
        let Some(provider) = ctx.providers.iter().find(|p| p.claims(id)) else {
            return Err(format!(
                "kiln does not run {}/{}/{} actions, and no plugin claims them",
                id.category, id.owner, id.provider
            ));
        };
        let scratch = self.scratch()?;
        let inputs = self.restore_inputs(scratch.path())?;
        let out = provider
            .run(self.configuration, &inputs, scratch.path())
            .await?;
        if out.artifacts.len() != self.action.output_artifacts.len() {
            return Err(format!(
                "the provider gave {} artifacts for {} outputs",
                out.artifacts.len(),
                self.action.output_artifacts.len()
            ));
        }
        let outputs = out
            .artifacts
            .iter()
            .enumerate()
            .map(|(i, dir)| self.store_output(i, dir))
            .collect::<Result<_, _>>()?;
        Ok(Done {
            outputs,
            variables: out.variables,
        })
    }
}

/// The configuration keys naming a git source provider's repository and branch.
pub(super) fn git_keys(provider: &str) -> Option<(&'static str, &'static str)> {
    match provider {
        "CodeCommit" => Some(("RepositoryName", "BranchName")),
        "CodeStarSourceConnection" => Some(("FullRepositoryId", "BranchName")),
        "GitHub" => Some(("Repo", "Branch")),
        _ => None,
    }
}

/// Whether a group's revisions are deployed on this host: when it names a root, or names no
/// watched reference either.
fn deploys_here(target: &GroupTarget) -> bool {
    target.root.is_some() || target.reference.is_none()
}

/// The local repository an AWS repository name stands for: kiln.toml's mapping, else the
/// repository the pipeline file is in.
pub(super) fn repository(ctx: &super::Context, name: &str) -> Result<PathBuf, String> {
    if let Some(to) = ctx.mapping.sources.get(name) {
        if to.contains("://") || to.starts_with("git@") {
            let cache = ctx.state_dir.join("pipeline-sources");
            return super::source::mirror(to, &cache).map_err(|e| format!("{name}: {e}"));
        }
        return Ok(ctx.project_dir.join(to));
    }
    if !ctx.mapping.sources.is_empty() {
        return Err(format!(
            "kiln.toml's [pipeline.sources] does not name the repository `{name}`: add `{name} = \"path/or/url\"` there"
        ));
    }
    let dir = ctx.file.parent().unwrap_or(Path::new("."));
    super::source::repository_of(dir).ok_or_else(|| {
        format!(
            "the pipeline file is not in a git repository, so `{name}` has no default: map it in kiln.toml, [pipeline.sources] {name} = \"path/or/url\""
        )
    })
}
