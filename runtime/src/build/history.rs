//! A project's build history, as kiln keeps it under its state folder: `builds/<project>/N.log` is
//! created when build N starts and `N.json` (the masked [`BuildResult`]) is written when it ends,
//! so a log without a record is a build still running (or one killed before it could finish).
//!
//! This module only reads what [`super::run`] writes; `kiln builds` and `kiln logs` print it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::result::Status;

/// What `kiln builds` shows of one build.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub project: String,
    pub build_number: u64,
    /// `None` while the build runs (the id is written with its record).
    pub build_id: Option<String>,
    /// CodeBuild's words; `IN_PROGRESS` for a build with a log and no record yet.
    pub status: String,
    /// Milliseconds since the Unix epoch; for a running build, when its log was created.
    pub start_time: u64,
    /// `None` while the build runs.
    pub duration_ms: Option<u64>,
    /// Whether the result was restored from the build cache.
    pub cache_hit: bool,
    /// The git commit the source was at, when it was a repository.
    pub source_version: Option<String>,
    pub log_file: PathBuf,
}

/// The part of a build record the history reads (records of older kilns may lack fields).
#[derive(Deserialize)]
struct Record {
    build_id: String,
    status: Status,
    #[serde(default)]
    source_version: Option<String>,
    #[serde(default)]
    start_time: u64,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    cache: CacheRecord,
}

#[derive(Deserialize, Default)]
struct CacheRecord {
    #[serde(default)]
    hit: bool,
}

/// Why a build asked for could not be found.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("project {project} has no builds (kiln keeps them in {})", dir.display())]
    NoBuilds { project: String, dir: PathBuf },
    #[error("project {project} has no build {number}")]
    NoNumber { project: String, number: u64 },
    #[error("no build has the id {0}")]
    NoId(String),
    #[error(
        "`{0}` is not a build: give its number (7) or its id (project:uuid, as CODEBUILD_BUILD_ID)"
    )]
    NotABuild(String),
}

/// Which build `kiln logs` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The project's newest build.
    Latest,
    /// A build number of the project.
    Number(u64),
    /// A build id, `project:uuid`: it names its project itself.
    Id(String),
}

impl Which {
    /// A build number or a build id, as the user wrote it. The project part of an id names a
    /// folder of kiln's state, so it must be a plain project name.
    pub fn parse(text: &str) -> Result<Self, HistoryError> {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Which::Number(n));
        }
        match text.split_once(':') {
            Some((project, rest)) if plain_name(project) && !rest.is_empty() => {
                Ok(Which::Id(text.to_string()))
            }
            _ => Err(HistoryError::NotABuild(text.to_string())),
        }
    }
}

/// Whether `name` can be a project's folder: one plain path component.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The folder of a project's records.
pub fn records_dir(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join("builds").join(project)
}

/// Every project with records, sorted by name.
pub fn projects(state_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state_dir.join("builds"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| plain_name(n))
        .collect();
    out.sort();
    out
}

/// The numbers of a project's builds that have a log or a record, in no order.
fn numbers(records: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(records)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name
                .strip_suffix(".log")
                .or_else(|| name.strip_suffix(".json"))?;
            stem.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A project's builds, newest first.
pub fn list(state_dir: &Path, project: &str) -> Vec<Summary> {
    let records = records_dir(state_dir, project);
    numbers(&records)
        .into_iter()
        .rev()
        .filter_map(|n| summary(&records, project, n))
        .collect()
}

/// Every project's builds, newest (by start time) first.
pub fn list_all(state_dir: &Path) -> Vec<Summary> {
    let mut out: Vec<Summary> = projects(state_dir)
        .iter()
        .flat_map(|p| list(state_dir, p))
        .collect();
    out.sort_by(|a, b| {
        b.start_time
            .cmp(&a.start_time)
            .then(b.build_number.cmp(&a.build_number))
    });
    out
}

/// One build's summary: from its record, or from its log alone while it runs.
fn summary(records: &Path, project: &str, number: u64) -> Option<Summary> {
    let log_file = records.join(format!("{number}.log"));
    if let Some(record) = read_record(records, number) {
        return Some(Summary {
            project: project.to_string(),
            build_number: number,
            build_id: Some(record.build_id),
            status: record.status.as_str().to_string(),
            start_time: record.start_time,
            duration_ms: Some(record.duration_ms),
            cache_hit: record.cache.hit,
            source_version: record.source_version,
            log_file,
        });
    }
    let meta = std::fs::metadata(&log_file).ok()?;
    let created = meta.created().or_else(|_| meta.modified()).ok();
    let start_time = created
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    Some(Summary {
        project: project.to_string(),
        build_number: number,
        build_id: None,
        status: "IN_PROGRESS".to_string(),
        start_time,
        duration_ms: None,
        cache_hit: false,
        source_version: None,
        log_file,
    })
}

fn read_record(records: &Path, number: u64) -> Option<Record> {
    let bytes = std::fs::read(records.join(format!("{number}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether build `number` of the project has ended (its record is written last).
pub fn finished(records: &Path, number: u64) -> bool {
    records.join(format!("{number}.json")).is_file()
}

/// The build `which` names: its project's records folder and its number. `project` is the
/// project of a number or of the latest build (an id names its own).
pub fn find(
    state_dir: &Path,
    project: &str,
    which: &Which,
) -> Result<(PathBuf, u64), HistoryError> {
    match which {
        Which::Latest => {
            let records = records_dir(state_dir, project);
            match numbers(&records).last() {
                Some(n) => Ok((records, *n)),
                None => Err(HistoryError::NoBuilds {
                    project: project.to_string(),
                    dir: records,
                }),
            }
        }
        Which::Number(n) => {
            let records = records_dir(state_dir, project);
            if numbers(&records).contains(n) {
                Ok((records, *n))
            } else {
                Err(HistoryError::NoNumber {
                    project: project.to_string(),
                    number: *n,
                })
            }
        }
        Which::Id(id) => {
            let project = id.split_once(':').map_or(id.as_str(), |(p, _)| p);
            let records = records_dir(state_dir, project);
            numbers(&records)
                .into_iter()
                .rev()
                .find(|n| read_record(&records, *n).is_some_and(|r| &r.build_id == id))
                .map(|n| (records.clone(), n))
                .ok_or_else(|| HistoryError::NoId(id.clone()))
        }
    }
}

/// Whether a log line is the last one a build writes: `[Container] <date> <time> Build <id>:
/// <STATUS>` (a command's own words come after `Running command`, so they never match).
pub fn is_final_line(line: &str, build_id: Option<&str>) -> bool {
    let Some(rest) = line
        .strip_prefix("[Container] ")
        .and_then(|l| l.splitn(3, ' ').nth(2))
        .and_then(|l| l.strip_prefix("Build "))
    else {
        return false;
    };
    let Some((id, status)) = rest.rsplit_once(": ") else {
        return false;
    };
    let status = status.trim_end_matches(" (restored from the cache)");
    build_id.is_none_or(|b| b == id)
        && ["SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"].contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_a_number_or_an_id_naming_a_plain_project() {
        assert_eq!(Which::parse("7").unwrap(), Which::Number(7));
        assert_eq!(
            Which::parse("app-1234abcd:5f0e").unwrap(),
            Which::Id("app-1234abcd:5f0e".into())
        );
        for bad in ["../../etc:x", "latest", "app:", ":x", "a/b:c"] {
            assert!(Which::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_final_line_is_recognised_and_nothing_else() {
        let line = "[Container] 2026/11/27 20:00:00.000000 Build app-1:uuid: SUCCEEDED";
        assert!(is_final_line(line, Some("app-1:uuid")));
        assert!(is_final_line(line, None));
        assert!(!is_final_line(line, Some("app-1:other")));
        assert!(is_final_line(
            "[Container] 2026/11/27 20:00:00.000000 Build a:b: SUCCEEDED (restored from the cache)",
            None
        ));
        assert!(!is_final_line("Build a:b: SUCCEEDED", None));
        assert!(!is_final_line(
            "[Container] 2026/11/27 20:00:00.000000 Running command echo Build x: FAILED",
            None
        ));
    }
}
