//! CodeBuild's `buildspec.yml` (versions 0.1 and 0.2): its types and how they are read.

use std::path::Path;

use regex::Regex;
use serde::Serialize;

use super::diagnostic::{Diagnostic, Span, SpecError};
use super::read::Reader;
use super::yaml::{Node, NodeKind};

/// A parsed buildspec.
#[derive(Debug, Clone, Default)]
pub struct Buildspec {
    pub version: Version,
    /// The Linux user every command runs as (`run-as` at the top level).
    pub run_as: Option<String>,
    pub env: Env,
    pub proxy: Proxy,
    /// Whether a `batch` section was given. kiln reads it but runs one build, not a batch.
    pub batch: Option<Span>,
    pub phases: Vec<Phase>,
    /// Report groups by name.
    pub reports: Vec<Report>,
    pub artifacts: Option<Artifacts>,
    pub cache: Option<Cache>,
}

/// The buildspec version: 0.1 runs each command in a shell of its own, 0.2 one session for the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Version {
    #[serde(rename = "0.1")]
    V01,
    #[default]
    #[serde(rename = "0.2")]
    V02,
}

/// The shell that runs commands (`env.shell`): sh or bash on Linux, `powershell.exe` or `cmd.exe`
/// on CodeBuild's Windows images, and PowerShell 7 (`pwsh`), which runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    #[default]
    Sh,
    Bash,
    Pwsh,
    /// Windows PowerShell (`powershell.exe`), which exists on Windows only.
    PowerShell,
    /// `cmd.exe`, Windows only.
    #[serde(rename = "cmd.exe")]
    Cmd,
}

impl Shell {
    /// The program to run.
    pub fn program(self) -> &'static str {
        match self {
            Shell::Sh => "sh",
            Shell::Bash => "bash",
            Shell::Pwsh => "pwsh",
            Shell::PowerShell => "powershell",
            Shell::Cmd => "cmd.exe",
        }
    }

    /// The POSIX shell that expands what kiln expands itself (artifact names, `cache.key`): this
    /// shell, or sh for a PowerShell build.
    pub fn posix(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            _ => "sh",
        }
    }

    /// Whether the shell exists only on Windows, so a Linux host cannot run this buildspec.
    pub fn windows_only(self) -> bool {
        matches!(self, Shell::PowerShell | Shell::Cmd)
    }
}

/// The `env` section.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub shell: Shell,
    /// Plain variables, in the order written.
    pub variables: Vec<(String, String)>,
    /// Variable name -> Systems Manager parameter name (`/app/db/host`).
    pub parameter_store: Vec<(String, String)>,
    /// Variable name -> Secrets Manager reference (`secret-id:json-key:version-stage:version-id`).
    pub secrets_manager: Vec<(String, String)>,
    /// Variables whose final values the build reports.
    pub exported_variables: Vec<String>,
    pub git_credential_helper: bool,
}

/// The `proxy` section (meaningful on CodeBuild's proxy servers; read and kept for completeness).
#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub upload_artifacts: bool,
    pub logs: bool,
}

/// The four build phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];

    /// The phase a buildspec key names (`pre_build`), in any case.
    pub fn from_key(key: &str) -> Option<PhaseName> {
        PhaseName::ALL
            .into_iter()
            .find(|p| p.key().eq_ignore_ascii_case(key))
    }

    /// The key in the buildspec: `pre_build`.
    pub fn key(self) -> &'static str {
        match self {
            PhaseName::Install => "install",
            PhaseName::PreBuild => "pre_build",
            PhaseName::Build => "build",
            PhaseName::PostBuild => "post_build",
        }
    }

    /// The name in CodeBuild's log: `PRE_BUILD`.
    pub fn log_name(self) -> &'static str {
        match self {
            PhaseName::Install => "INSTALL",
            PhaseName::PreBuild => "PRE_BUILD",
            PhaseName::Build => "BUILD",
            PhaseName::PostBuild => "POST_BUILD",
        }
    }
}

/// One phase of `phases`.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: PhaseName,
    pub run_as: Option<String>,
    pub on_failure: Option<OnFailure>,
    /// Runtime name -> version, as CodeBuild's images would install them.
    pub runtime_versions: Vec<(String, String)>,
    pub runtime_versions_span: Option<Span>,
    pub commands: Vec<Command>,
    pub finally: Vec<Command>,
}

/// One command line and where it was written.
#[derive(Debug, Clone)]
pub struct Command {
    pub text: String,
    pub span: Span,
}

/// What to do when a phase fails (`on-failure`).
#[derive(Debug, Clone)]
pub enum OnFailure {
    /// Stop the build: no later phase runs and nothing is uploaded.
    Abort,
    /// Go on to the next phase as if the phase had succeeded (the build still fails).
    Continue,
    /// Run the phase again, up to `count` more times, while its failure message matches `pattern`.
    Retry { count: u32, pattern: Option<Regex> },
}

/// An artifact definition: the primary `artifacts` or one of `secondary-artifacts`.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// The artifact identifier (`primary` for the primary artifact, the key for a secondary one).
    pub identifier: String,
    pub files: Vec<String>,
    pub name: Option<String>,
    pub discard_paths: bool,
    pub base_directory: Option<String>,
    pub exclude_paths: Vec<String>,
    pub enable_symlinks: bool,
    pub s3_prefix: Option<String>,
    pub secondary: Vec<Artifacts>,
    pub span: Span,
}

/// A report group (`reports.<name>`).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub name: String,
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    pub file_format: Option<String>,
}

/// The `cache` section.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub paths: Vec<String>,
    pub key: Option<String>,
    pub fallback_keys: Vec<String>,
    pub action: Option<CacheAction>,
}

/// `cache.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAction {
    Restore,
    Save,
}

/// A buildspec and the warnings found while reading it.
#[derive(Debug)]
pub struct Parsed {
    pub buildspec: Buildspec,
    pub warnings: Vec<Diagnostic>,
    pub source: String,
    /// The buildspec's content in a canonical form: what the action cache keys on.
    pub canonical: String,
}

impl Parsed {
    /// The warnings, rendered against the file.
    pub fn render_warnings(&self, path: &Path, color: bool) -> Option<String> {
        (!self.warnings.is_empty())
            .then(|| super::diagnostic::render_all(path, &self.source, &self.warnings, color))
    }
}

/// The keys CodeBuild reads at the top of a buildspec. It ignores any other top-level key (files
/// keep YAML anchors under such keys), so kiln only warns about one; a key it does not know inside
/// a section is an error, since there a typo silently drops what it names.
const TOP_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];
const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
];
const PHASE_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];
/// The keys of the primary artifact; `secondary-artifacts` last, as a secondary one has all but it.
const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
const SECONDARY_ARTIFACT_KEYS: &[&str] = match ARTIFACT_KEYS.split_last() {
    Some((_, keys)) => keys,
    None => &[],
};
const REPORT_KEYS: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const REPORT_FORMATS: &[&str] = &[
    "CUCUMBERJSON",
    "JUNITXML",
    "NUNITXML",
    "NUNIT3XML",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];
const CACHE_KEYS: &[&str] = &["paths", "key", "fallback-keys", "action"];

/// Reads a buildspec file from disk.
pub fn load(path: &Path) -> Result<Parsed, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse(path, &source).map_err(LoadError::Invalid)
}

/// Why a buildspec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecError),
}

/// Parses buildspec text; `path` is only used in messages.
pub fn parse(path: &Path, source: &str) -> Result<Parsed, SpecError> {
    let (buildspec, root, warnings) = super::read::read_spec(path, source, read_buildspec)?;
    Ok(Parsed {
        buildspec,
        warnings,
        source: source.to_string(),
        canonical: root.canonical(),
    })
}

fn read_buildspec(r: &mut Reader, root: &Node) -> Buildspec {
    let mut spec = Buildspec::default();
    if !matches!(root.kind, NodeKind::Map(_)) {
        r.error_help(
            root.span,
            format!(
                "expected a buildspec (a mapping), found {}",
                root.describe()
            ),
            "a buildspec starts with `version: 0.2` and has a `phases` section",
        );
        return spec;
    }
    let mut version_seen = false;
    let mut phases_seen = false;
    for (key, key_span, value) in r.map(root, "the buildspec") {
        match key {
            "version" => {
                version_seen = true;
                spec.version = match value.as_str() {
                    Some("0.2") => Version::V02,
                    Some("0.1") => Version::V01,
                    _ => {
                        r.error_help(
                            value.span,
                            "unsupported buildspec version",
                            "write `version: 0.2` (or 0.1 for a shell per command)",
                        );
                        Version::V02
                    }
                }
            }
            "run-as" => spec.run_as = r.optional_string(value, "run-as"),
            "env" => spec.env = read_env(r, value),
            "proxy" => {
                for (k, span, v) in r.map(value, "proxy") {
                    match k {
                        "upload-artifacts" => spec.proxy.upload_artifacts = r.boolean(v, k),
                        "logs" => spec.proxy.logs = r.boolean(v, k),
                        _ => r.unknown_key(k, span, "proxy", &["upload-artifacts", "logs"]),
                    }
                }
            }
            "batch" => {
                r.map(value, "batch");
                spec.batch = Some(key_span);
            }
            "phases" => {
                phases_seen = true;
                spec.phases = read_phases(r, value);
            }
            "reports" => {
                spec.reports = read_reports(r, value);
                if !spec.reports.is_empty() {
                    r.warning(
                        key_span,
                        "kiln reads `reports` but makes no test report yet: the report files stay in the workspace (list them under `artifacts` to keep them)",
                    );
                }
            }
            "artifacts" => spec.artifacts = Some(read_artifacts(r, value, "primary", true)),
            "cache" => spec.cache = Some(read_cache(r, value)),
            _ => r.ignored_key(key, key_span, "the buildspec", TOP_KEYS),
        }
    }
    if !version_seen {
        r.error_help(
            root.span,
            "the buildspec has no `version`",
            "add `version: 0.2` as its first line",
        );
    }
    if !phases_seen {
        r.warning(
            root.span,
            "the buildspec has no `phases`; the build will run no command",
        );
    }
    spec
}

fn read_env(r: &mut Reader, node: &Node) -> Env {
    let mut env = Env::default();
    for (key, span, value) in r.map(node, "env") {
        match key {
            "shell" => {
                env.shell = match value.as_str() {
                    Some("sh" | "/bin/sh") => Shell::Sh,
                    Some("bash" | "/bin/bash") => Shell::Bash,
                    Some("pwsh" | "pwsh.exe") => Shell::Pwsh,
                    Some("powershell" | "powershell.exe") => Shell::PowerShell,
                    Some("cmd" | "cmd.exe") => Shell::Cmd,
                    _ => {
                        r.error_help(
                            value.span,
                            "unsupported shell",
                            "write `shell: bash`, `sh` or `pwsh` (or, for Windows images, \
                             `powershell.exe` or `cmd.exe`)",
                        );
                        Shell::Sh
                    }
                }
            }
            "variables" => env.variables = variables(r, value, "env.variables"),
            "parameter-store" => env.parameter_store = variables(r, value, "env.parameter-store"),
            "secrets-manager" => {
                env.secrets_manager = variables(r, value, "env.secrets-manager");
                for (name, reference) in &env.secrets_manager {
                    if reference.is_empty() {
                        r.error_help(
                            value.span,
                            format!("`{name}` names no secret"),
                            "write `secret-id:json-key:version-stage:version-id` (all but the id optional)",
                        );
                    }
                }
            }
            "exported-variables" => {
                env.exported_variables = r.string_list(value, "env.exported-variables")
            }
            "git-credential-helper" => env.git_credential_helper = r.boolean(value, key),
            _ => r.unknown_key(key, span, "env", ENV_KEYS),
        }
    }
    env
}

/// A mapping of environment variable names to values, each name checked where it is written.
fn variables(r: &mut Reader, node: &Node, what: &str) -> Vec<(String, String)> {
    let entries = r.string_map(node, what);
    for (name, _, span) in &entries {
        if !is_variable_name(name) {
            r.error_help(
                *span,
                format!("`{name}` is not a valid environment variable name"),
                "names are letters, digits and `_`, not starting with a digit",
            );
        }
    }
    pairs(entries)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn pairs(entries: Vec<(String, String, Span)>) -> Vec<(String, String)> {
    entries.into_iter().map(|(k, v, _)| (k, v)).collect()
}

fn read_phases(r: &mut Reader, node: &Node) -> Vec<Phase> {
    let mut phases = Vec::new();
    for (key, span, value) in r.map(node, "phases") {
        let Some(name) = PhaseName::ALL.into_iter().find(|p| p.key() == key) else {
            r.unknown_name(
                key,
                span,
                format!("unknown phase `{key}`"),
                "the phases are",
                &PhaseName::ALL.map(PhaseName::key),
            );
            continue;
        };
        phases.push(read_phase(r, name, value));
    }
    phases.sort_by_key(|p| p.name as u8);
    phases
}

fn read_phase(r: &mut Reader, name: PhaseName, node: &Node) -> Phase {
    let mut phase = Phase {
        name,
        run_as: None,
        on_failure: None,
        runtime_versions: Vec::new(),
        runtime_versions_span: None,
        commands: Vec::new(),
        finally: Vec::new(),
    };
    let what = format!("phases.{}", name.key());
    for (key, span, value) in r.map(node, &what) {
        match key {
            "run-as" => phase.run_as = r.optional_string(value, "run-as"),
            "on-failure" => phase.on_failure = read_on_failure(r, value),
            "runtime-versions" => {
                if name != PhaseName::Install {
                    r.warning(
                        span,
                        "runtime-versions belongs to the install phase; CodeBuild ignores it elsewhere",
                    );
                }
                phase.runtime_versions_span = Some(span);
                phase.runtime_versions = pairs(r.string_map(value, "runtime-versions"));
            }
            "commands" => phase.commands = commands(r, value, &format!("{what}.commands")),
            "finally" => phase.finally = commands(r, value, &format!("{what}.finally")),
            _ => r.unknown_key(key, span, &what, PHASE_KEYS),
        }
    }
    phase
}

fn commands(r: &mut Reader, node: &Node, what: &str) -> Vec<Command> {
    if let NodeKind::Scalar { .. } = node.kind {
        r.error_help(
            node.span,
            format!("expected a list of commands for {what}, found a single string"),
            "write each command as a list item: `- make`",
        );
        return Vec::new();
    }
    r.strings(node, what)
        .into_iter()
        .map(|(text, span)| Command { text, span })
        .collect()
}

fn read_on_failure(r: &mut Reader, node: &Node) -> Option<OnFailure> {
    let text = r.string(node, "on-failure")?;
    let help =
        "write ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>";
    // The keyword is read without regard to case (the CodeBuild docs write `Retry-3-…` too); a retry
    // pattern keeps its case.
    let keyword_len = text.find('-').unwrap_or(text.len());
    let text = format!(
        "{}{}",
        text[..keyword_len].to_ascii_uppercase(),
        &text[keyword_len..]
    );
    match text.as_str() {
        "ABORT" => return Some(OnFailure::Abort),
        "CONTINUE" => return Some(OnFailure::Continue),
        "RETRY" => {
            return Some(OnFailure::Retry {
                count: 3,
                pattern: None,
            });
        }
        _ => {}
    }
    let Some(rest) = text.strip_prefix("RETRY-") else {
        r.error_help(node.span, format!("unknown on-failure `{text}`"), help);
        return None;
    };
    let (count, pattern) = match rest.split_once('-') {
        Some((n, re)) if n.parse::<u32>().is_ok() => (n.parse::<u32>().ok(), Some(re)),
        _ if rest.parse::<u32>().is_ok() => (rest.parse::<u32>().ok(), None),
        _ => (None, Some(rest)),
    };
    let count = count.unwrap_or(3);
    if count > 100 {
        r.error_help(
            node.span,
            format!("on-failure retries {count} times; CodeBuild allows at most 100"),
            help,
        );
        return None;
    }
    let pattern = match pattern.map(Regex::new).transpose() {
        Ok(p) => p,
        Err(e) => {
            r.error_help(
                node.span,
                format!("the retry pattern is not a valid regular expression: {e}"),
                help,
            );
            return None;
        }
    };
    Some(OnFailure::Retry { count, pattern })
}

fn read_artifacts(r: &mut Reader, node: &Node, identifier: &str, primary: bool) -> Artifacts {
    let mut artifacts = Artifacts {
        identifier: identifier.to_string(),
        span: node.span,
        ..Artifacts::default()
    };
    let what = if primary {
        "artifacts".to_string()
    } else {
        format!("secondary-artifacts.{identifier}")
    };
    let mut files_seen = false;
    for (key, span, value) in r.map(node, &what) {
        match key {
            "files" => {
                files_seen = true;
                artifacts.files = r.string_list(value, "artifacts.files");
            }
            "name" => artifacts.name = r.optional_string(value, "artifacts.name"),
            "discard-paths" => artifacts.discard_paths = r.boolean(value, key),
            "base-directory" => {
                artifacts.base_directory = r.optional_string(value, "artifacts.base-directory")
            }
            "exclude-paths" => {
                artifacts.exclude_paths = r.string_list(value, "artifacts.exclude-paths")
            }
            "enable-symlinks" => artifacts.enable_symlinks = r.boolean(value, key),
            "s3-prefix" => artifacts.s3_prefix = r.optional_string(value, key),
            // The packaging is the CodeBuild project's setting; buildspecs of AWS's own samples
            // say `type: zip` all the same, and CodeBuild ignores it.
            "type" => r.warning(
                span,
                format!("{what}.type is the CodeBuild project's setting and is ignored here (--zip also writes each artifact as a zip)"),
            ),
            "secondary-artifacts" if primary => {
                for (id, _, def) in r.map(value, "secondary-artifacts") {
                    artifacts.secondary.push(read_artifacts(r, def, id, false));
                }
            }
            _ if primary => r.unknown_key(key, span, &what, ARTIFACT_KEYS),
            _ => r.unknown_key(key, span, &what, SECONDARY_ARTIFACT_KEYS),
        }
    }
    if !files_seen && (!primary || artifacts.secondary.is_empty()) {
        r.error_help(
            node.span,
            format!("{what} has no `files`"),
            "list what to collect, e.g. `files: ['**/*']`",
        );
    }
    artifacts
}

fn read_reports(r: &mut Reader, node: &Node) -> Vec<Report> {
    let mut reports = Vec::new();
    for (name, _, def) in r.map(node, "reports") {
        let mut report = Report {
            name: name.to_string(),
            ..Report::default()
        };
        let what = format!("reports.{name}");
        for (key, span, value) in r.map(def, &what) {
            match key {
                "files" => report.files = r.string_list(value, "reports.files"),
                "base-directory" => report.base_directory = r.optional_string(value, key),
                "discard-paths" => report.discard_paths = r.boolean(value, key),
                "file-format" => {
                    let format = r.string(value, key);
                    // CodeBuild reads the format without regard to case.
                    let format = format.map(|f| f.to_ascii_uppercase());
                    if let Some(f) = &format
                        && !REPORT_FORMATS.contains(&f.as_str())
                    {
                        r.error_help(
                            value.span,
                            format!("unknown report file-format `{f}`"),
                            format!("one of {}", REPORT_FORMATS.join(", ")),
                        );
                    }
                    report.file_format = format;
                }
                _ => r.unknown_key(key, span, &what, REPORT_KEYS),
            }
        }
        reports.push(report);
    }
    reports
}

fn read_cache(r: &mut Reader, node: &Node) -> Cache {
    let mut cache = Cache::default();
    for (key, span, value) in r.map(node, "cache") {
        match key {
            "paths" => cache.paths = r.string_list(value, "cache.paths"),
            "key" => cache.key = r.optional_string(value, "cache.key"),
            "fallback-keys" => cache.fallback_keys = r.string_list(value, "cache.fallback-keys"),
            "action" => {
                cache.action = match value.as_str() {
                    Some("restore") => Some(CacheAction::Restore),
                    Some("save") => Some(CacheAction::Save),
                    _ => {
                        r.error_help(
                            value.span,
                            "unknown cache action",
                            "write `restore` or `save`, or leave it out for both",
                        );
                        None
                    }
                }
            }
            _ => r.unknown_key(key, span, "cache", CACHE_KEYS),
        }
    }
    cache
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Parsed {
        parse(Path::new("buildspec.yml"), src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(src: &str) -> SpecError {
        parse(Path::new("buildspec.yml"), src).unwrap_err()
    }

    #[test]
    fn version_as_number_or_string() {
        assert_eq!(
            ok("version: 0.2\nphases: {}").buildspec.version,
            Version::V02
        );
        assert_eq!(
            ok("version: '0.1'\nphases: {}").buildspec.version,
            Version::V01
        );
        let e = err("version: 0.3\nphases: {}");
        assert_eq!(e.diagnostics[0].span.line, 1);
    }

    #[test]
    fn env_values_keep_their_spelling() {
        let p = ok("version: 0.2\nenv:\n  variables:\n    A: 1.10\n    B: yes\n    C: 010\n");
        assert_eq!(
            p.buildspec.env.variables,
            [
                ("A".into(), "1.10".into()),
                ("B".into(), "yes".into()),
                ("C".into(), "010".into())
            ]
        );
    }

    #[test]
    fn null_command_items_are_skipped() {
        let p = ok(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo a\n      -\n      - echo b\n",
        );
        let texts: Vec<_> = p.buildspec.phases[0]
            .commands
            .iter()
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(texts, ["echo a", "echo b"]);
    }

    #[test]
    fn colon_in_command_is_explained() {
        let e = err("version: 0.2\nphases:\n  build:\n    commands:\n      - echo a: b\n");
        let d = &e.diagnostics[0];
        assert_eq!((d.span.line, d.span.column), (5, 9));
        assert!(d.help.as_deref().unwrap().contains("quote"));
    }

    #[test]
    fn on_failure_forms() {
        let p = ok(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2-timed out\n    commands: [x]\n",
        );
        match &p.buildspec.phases[0].on_failure {
            Some(OnFailure::Retry {
                count: 2,
                pattern: Some(re),
            }) => assert!(re.is_match("it timed out")),
            other => panic!("{other:?}"),
        }
        let p =
            ok("version: 0.2\nphases:\n  build:\n    on-failure: Retry-flaky\n    commands: [x]\n");
        assert!(matches!(
            &p.buildspec.phases[0].on_failure,
            Some(OnFailure::Retry {
                count: 3,
                pattern: Some(_)
            })
        ));
        assert!(
            parse(
                Path::new("b"),
                "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-101\n"
            )
            .is_err()
        );
    }

    #[test]
    fn an_unknown_top_level_key_warns_with_a_place() {
        let p = ok("version: 0.2\nphasez: {}\nphases:\n  build:\n    commands: [x]\n");
        let places: Vec<_> = p
            .warnings
            .iter()
            .map(|w| (w.span.line, w.span.column))
            .collect();
        assert_eq!(places, [(2, 1)]);
        assert!(
            p.warnings[0]
                .help
                .as_deref()
                .unwrap()
                .contains("did you mean `phases`?")
        );
    }

    #[test]
    fn unknown_keys_in_a_section_are_errors_naming_the_nearest_key() {
        let e = err(concat!(
            "version: 0.2\n",
            "env:\n  variable: {A: 1}\n",
            "phases:\n  biuld:\n    commands: [x]\n  install:\n    comands: [x]\n",
            "artifacts:\n  file: [a]\n  secondary-artifacts:\n    docs:\n      files: [b]\n      nmae: d\n",
            "cache:\n  path: [c]\n",
        ));
        let found: Vec<_> = e
            .errors()
            .map(|d| {
                (
                    d.span.line,
                    d.span.column,
                    d.help.clone().unwrap_or_default(),
                )
            })
            .collect();
        let expected = [
            (3, 3, "`variables`"),
            (5, 3, "`build`"),
            (8, 5, "`commands`"),
            (10, 3, "`files`"),
            (14, 7, "`name`"),
            (16, 3, "`paths`"),
        ];
        assert_eq!(found.len(), expected.len(), "{e}");
        for ((line, column, help), (l, c, near)) in found.iter().zip(expected) {
            assert_eq!((*line, *column), (l, c), "{e}");
            assert!(help.contains(&format!("did you mean {near}?")), "{e}");
        }
    }

    #[test]
    fn a_secondary_artifact_does_not_nest() {
        let e = err(
            "version: 0.2\nartifacts:\n  secondary-artifacts:\n    a:\n      files: [x]\n      secondary-artifacts: {}\n",
        );
        let d = e.errors().next().unwrap();
        assert_eq!((d.span.line, d.span.column), (6, 7));
        assert!(!d.help.as_deref().unwrap().contains("did you mean"), "{e}");
    }

    #[test]
    fn invalid_variable_names_are_errors_at_their_key() {
        let e = err("version: 0.2\nenv:\n  variables:\n    OK: 1\n    9BAD: 2\n");
        let d = &e.diagnostics[0];
        assert_eq!((d.span.line, d.span.column), (5, 5));
        assert!(d.message.contains("9BAD"));
    }

    #[test]
    fn files_as_string_or_list() {
        let p = ok("version: 0.2\nartifacts:\n  files: out/app.jar\n");
        assert_eq!(p.buildspec.artifacts.unwrap().files, ["out/app.jar"]);
    }

    #[test]
    fn phases_run_in_codebuild_order() {
        let p = ok(
            "version: 0.2\nphases:\n  post_build: {commands: [c]}\n  install: {commands: [a]}\n  build: {commands: [b]}\n",
        );
        let names: Vec<_> = p.buildspec.phases.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [PhaseName::Install, PhaseName::Build, PhaseName::PostBuild]
        );
    }
}
