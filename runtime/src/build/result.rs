//! What a build reports: its status, its phases, its exported variables and artifacts. Printed as
//! JSON with `--json` and kept beside the build's log.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A build's or a phase's status, in CodeBuild's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Succeeded,
    Failed,
    TimedOut,
    Stopped,
    /// A phase that did not run because it was not selected (`--phases`, `--until`).
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Stopped => "STOPPED",
            Status::Skipped => "SKIPPED",
        }
    }
}

/// One phase as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// `INSTALL`, `PRE_BUILD`, `BUILD`, `POST_BUILD`, `UPLOAD_ARTIFACTS`…
    pub name: String,
    pub status: Status,
    pub duration_ms: u64,
    /// CodeBuild's phase context: `COMMAND_EXECUTION_ERROR`, `CLIENT_ERROR`, or empty.
    pub status_code: String,
    pub message: String,
    /// How many times the phase ran (more than one with `on-failure: RETRY…`).
    pub attempts: u32,
}

impl PhaseResult {
    /// A phase that did not run, and why.
    pub fn skipped(name: &str, why: &str) -> Self {
        PhaseResult {
            name: name.to_string(),
            status: Status::Skipped,
            duration_ms: 0,
            status_code: String::new(),
            message: why.to_string(),
            attempts: 0,
        }
    }
}

/// One artifact as collected.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactResult {
    /// `primary`, or the key of a secondary artifact.
    pub identifier: String,
    /// The artifact's name: `name` expanded, or the identifier.
    pub name: String,
    /// The folder holding its files.
    pub path: PathBuf,
    /// The zip of the folder, with `--zip`.
    pub zip: Option<PathBuf>,
    /// The files in it, relative to `path`, sorted.
    pub files: Vec<String>,
}

/// A finished build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    pub build_id: String,
    pub build_number: u64,
    pub project: String,
    pub status: Status,
    pub source_version: Option<String>,
    /// Milliseconds since the Unix epoch, as `CODEBUILD_START_TIME`.
    pub start_time: u64,
    pub duration_ms: u64,
    pub phases: Vec<PhaseResult>,
    pub exported_variables: BTreeMap<String, String>,
    pub artifacts: Vec<ArtifactResult>,
    pub log_file: Option<PathBuf>,
    /// Whether host programs ran under Landlock.
    pub confined: bool,
    /// The sandbox the build's commands ran in: `namespaces` (the build's own namespaces and
    /// filesystem), `landlock` (Landlock alone, where the kernel refused namespaces) or `none`.
    pub sandbox: String,
    /// How the action cache took part.
    pub cache: super::cache::CacheInfo,
}

impl BuildResult {
    /// The result with every secret masked in its text: what kiln keeps and prints of a build (the
    /// record, `--json`, the cache entry, a package's manifest) shows no more than the log does.
    pub fn masked(mut self, masker: &super::mask::Masker) -> Self {
        let text = |s: &mut String| masker.mask_in_place(s);
        let path = |p: &mut PathBuf| {
            if let Some(s) = p.to_str()
                && masker.finds(s)
            {
                *p = PathBuf::from(masker.mask(s).into_owned());
            }
        };
        text(&mut self.build_id);
        text(&mut self.project);
        for phase in &mut self.phases {
            text(&mut phase.message);
        }
        self.exported_variables = std::mem::take(&mut self.exported_variables)
            .into_iter()
            .map(|(mut k, mut v)| {
                text(&mut k);
                text(&mut v);
                (k, v)
            })
            .collect();
        for artifact in &mut self.artifacts {
            text(&mut artifact.name);
            path(&mut artifact.path);
            if let Some(zip) = &mut artifact.zip {
                path(zip);
            }
            artifact.files.iter_mut().for_each(text);
        }
        if let Some(log) = &mut self.log_file {
            path(log);
        }
        self
    }
}
