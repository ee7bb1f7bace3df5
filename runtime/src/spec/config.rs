//! `kiln.toml`, a project's defaults for `kiln build`'s flags, read with the place of every value so
//! that errors (and `kiln config`) can name its line.
//!
//! ```toml
//! network = "none"
//! writable = ["target"]          # paths are relative to the file
//! output = "dist"
//! pass-env = ["CI"]
//! cache-scope = "project"
//! memory = "2G"
//! disk-limit = "10G"
//! step-timeout = "10m"
//! secrets = "local.secrets"
//! [plugins]
//! lint = "tools/lint.wasm"
//! checksum = "oci://ghcr.io/acme/checksum:1.2.0"   # a registry plugin, pinned in kiln.lock
//! [plugin-keys]                             # registry or namespace -> cosign public key (PEM)
//! "ghcr.io/acme" = "keys/acme.pub"
//!
//! # What a CodePipeline declaration's AWS names are here (`kiln pipeline`).
//! [pipeline.sources]                         # repository name -> local path or git URL
//! hello-web = "."
//! [pipeline.projects]                        # CodeBuild project -> buildspec in the primary source
//! hello-web-build = "buildspec.yml"
//! [pipeline.deployment-groups]               # deploy here (root) or move a ref agents watch
//! hello-web-prod = { root = "/srv/kiln", application = "hello-web" }
//! hello-web-fleet = { ref = "s3://releases/hello-web/prod" }
//! [pipeline.artifact-store]                  # artifactStore location -> kiln store
//! codepipeline-us-east-1-111122223333 = "file://.kiln/artifacts"
//! ```
//!
//! This module reads the file and checks its keys and types; what a value means (a size, a network
//! mode) is decided where the same flag is parsed, so that the two are always spelled alike.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Span, SpecError};
use super::read::nearest;
use super::yaml::LineIndex;

/// The file's name.
pub const FILE_NAME: &str = "kiln.toml";

/// Every key a kiln.toml may hold.
pub const KEYS: [&str; 12] = [
    "network",
    "writable",
    "output",
    "pass-env",
    "cache-scope",
    "memory",
    "disk-limit",
    "step-timeout",
    "secrets",
    "plugins",
    "plugin-keys",
    "pipeline",
];

/// Every key of the `[pipeline]` table.
pub const PIPELINE_KEYS: [&str; 5] = [
    "queue",
    "sources",
    "projects",
    "deployment-groups",
    "artifact-store",
];

/// One value of the file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub span: Span,
}

/// The `[plugins]` table: each name with its path.
pub type Plugins = Vec<(String, Setting<String>)>;

/// The `[pipeline]` table: where a CodePipeline declaration's AWS names are here. Each mapping is in
/// the order of its names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineConfig {
    /// A build queue: read so that `kiln pipeline` can refuse it at its place (the queue is the
    /// user's `--remote`, never the project's).
    pub queue: Option<Setting<String>>,
    /// Repository name -> a local path (relative to kiln.toml) or a git URL.
    pub sources: Vec<(String, Setting<String>)>,
    /// CodeBuild project name -> its buildspec, relative to the primary source.
    pub projects: Vec<(String, Setting<String>)>,
    /// CodeDeploy deployment group name -> where its revisions go.
    pub deployment_groups: Vec<(String, Setting<GroupMapping>)>,
    /// The pipeline's artifactStore location -> a kiln store URL (`file://`, `s3://`, `oci://`).
    pub artifact_stores: Vec<(String, Setting<String>)>,
}

/// Where a deployment group's revisions go: deployed on this host, pushed to a ref that `kiln
/// agent --watch` hosts follow, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMapping {
    /// Deploy on this host, into this deployment root.
    pub root: Option<String>,
    /// The key `ref`: the store ref to push the revision to.
    pub reference: Option<String>,
    /// The CodeDeploy application it belongs to, when the group's name alone is ambiguous.
    pub application: Option<String>,
}

/// A project's kiln.toml: each key it sets, with its place.
#[derive(Debug, Clone, Default)]
pub struct ProjectConfig {
    /// The file.
    pub path: PathBuf,
    /// Its text, for errors about its values.
    pub source: String,
    pub network: Option<Setting<String>>,
    pub writable: Option<Setting<Vec<Setting<String>>>>,
    pub output: Option<Setting<String>>,
    pub pass_env: Option<Setting<Vec<Setting<String>>>>,
    pub cache_scope: Option<Setting<String>>,
    pub memory: Option<Setting<String>>,
    pub disk_limit: Option<Setting<String>>,
    pub step_timeout: Option<Setting<String>>,
    pub secrets: Option<Setting<String>>,
    pub plugins: Option<Setting<Plugins>>,
    /// `[plugin-keys]`: a registry or namespace (`ghcr.io/acme`) -> the public key (PEM file,
    /// relative to the file) whose cosign signature its plugins must carry.
    pub plugin_keys: Option<Setting<Plugins>>,
    pub pipeline: Option<Setting<PipelineConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Raw {
    network: Option<Spanned<String>>,
    writable: Option<Spanned<Vec<Spanned<String>>>>,
    output: Option<Spanned<String>>,
    pass_env: Option<Spanned<Vec<Spanned<String>>>>,
    cache_scope: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    disk_limit: Option<Spanned<String>>,
    step_timeout: Option<Spanned<String>>,
    secrets: Option<Spanned<String>>,
    plugins: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    plugin_keys: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pipeline: Option<Spanned<RawPipeline>>,
}

type RawNames = BTreeMap<String, Spanned<String>>;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawPipeline {
    queue: Option<Spanned<String>>,
    sources: Option<RawNames>,
    projects: Option<RawNames>,
    deployment_groups: Option<BTreeMap<String, Spanned<RawGroup>>>,
    artifact_store: Option<RawNames>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    root: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    application: Option<String>,
}

impl ProjectConfig {
    /// The kiln.toml in the nearest of `folders` holding one (they are searched in order).
    pub fn find(folders: &[PathBuf]) -> Option<PathBuf> {
        folders
            .iter()
            .map(|d| d.join(FILE_NAME))
            .find(|p| p.is_file())
    }

    /// Reads a kiln.toml.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(path, &source).map_err(ConfigError::Invalid)
    }

    /// Parses kiln.toml text; `path` is where it lives (its folder is what its paths are relative
    /// to).
    pub fn parse(path: &Path, source: &str) -> Result<Self, SpecError> {
        let lines = LineIndex::new(source);
        let raw: Raw = toml::from_str(source).map_err(|e| {
            let span = span_of(&lines, source, e.span().unwrap_or(0..0));
            let message = e.message().trim().to_string();
            let diagnostic = match unknown_key(&message) {
                Some((name, help)) => {
                    Diagnostic::error(span, format!("unknown key `{name}`")).with_help(help)
                }
                None => Diagnostic::error(span, first_line(&message)),
            };
            SpecError {
                path: path.to_path_buf(),
                source: source.to_string(),
                diagnostics: vec![diagnostic],
            }
        })?;
        let one = |s: Spanned<String>| Setting {
            span: span_of(&lines, source, s.span()),
            value: s.into_inner(),
        };
        let list = |s: Spanned<Vec<Spanned<String>>>| Setting {
            span: span_of(&lines, source, s.span()),
            value: s.into_inner().into_iter().map(one).collect(),
        };
        let names = |table: Option<RawNames>| -> Vec<(String, Setting<String>)> {
            table
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name, one(value)))
                .collect()
        };
        let mut pipeline = None;
        if let Some(raw) = raw.pipeline {
            let span = span_of(&lines, source, raw.span());
            let raw = raw.into_inner();
            let mut deployment_groups = Vec::new();
            for (name, group) in raw.deployment_groups.unwrap_or_default() {
                let group_span = span_of(&lines, source, group.span());
                let group = group.into_inner();
                if group.root.is_none() && group.reference.is_none() {
                    return Err(SpecError {
                        path: path.to_path_buf(),
                        source: source.to_string(),
                        diagnostics: vec![
                            Diagnostic::error(
                                group_span,
                                format!("the deployment group `{name}` says neither where to deploy nor which ref to move"),
                            )
                            .with_help(format!(
                                "give `root` (deploy on this host into that deployment root) or `ref` (push the revision there for `kiln agent --watch` hosts): {name} = {{ root = \"/srv/kiln\" }}"
                            )),
                        ],
                    });
                }
                deployment_groups.push((
                    name,
                    Setting {
                        value: GroupMapping {
                            root: group.root,
                            reference: group.reference,
                            application: group.application,
                        },
                        span: group_span,
                    },
                ));
            }
            pipeline = Some(Setting {
                span,
                value: PipelineConfig {
                    queue: raw.queue.map(one),
                    sources: names(raw.sources),
                    projects: names(raw.projects),
                    deployment_groups,
                    artifact_stores: names(raw.artifact_store),
                },
            });
        }
        let config = Self {
            path: path.to_path_buf(),
            source: source.to_string(),
            network: raw.network.map(one),
            writable: raw.writable.map(list),
            output: raw.output.map(one),
            pass_env: raw.pass_env.map(list),
            cache_scope: raw.cache_scope.map(one),
            memory: raw.memory.map(one),
            disk_limit: raw.disk_limit.map(one),
            step_timeout: raw.step_timeout.map(one),
            secrets: raw.secrets.map(one),
            plugins: raw.plugins.map(|p| Setting {
                span: span_of(&lines, source, p.span()),
                value: p
                    .into_inner()
                    .into_iter()
                    .map(|(name, path)| (name, one(path)))
                    .collect(),
            }),
            plugin_keys: raw.plugin_keys.map(|k| Setting {
                span: span_of(&lines, source, k.span()),
                value: k
                    .into_inner()
                    .into_iter()
                    .map(|(prefix, path)| (prefix, one(path)))
                    .collect(),
            }),
            pipeline,
        };
        // A registry plugin's reference is checked here, at its place: a moving tag (`latest`) or
        // a malformed one is the file's error, not a build's.
        for (name, value) in config.plugins.iter().flat_map(|t| &t.value) {
            if !crate::plugins::registry::is_reference(&value.value) {
                continue;
            }
            if let Err(e) = crate::plugins::registry::PluginRef::parse(&value.value) {
                return Err(config.error(
                    value.span,
                    e.to_string(),
                    Some(format!(
                        "a registry plugin is pinned by a semver tag: {name} = \"oci://ghcr.io/acme/{name}:1.2.0\""
                    )),
                ));
            }
        }
        Ok(config)
    }

    /// The `[plugins]` values that are references (`oci://`, `file://`, `s3://`): name and
    /// reference, in name order. Builds resolve these from kiln.lock.
    pub fn registry_plugins(&self) -> Vec<(String, String)> {
        self.plugins
            .iter()
            .flat_map(|t| &t.value)
            .filter(|(_, v)| crate::plugins::registry::is_reference(&v.value))
            .map(|(name, v)| (name.clone(), v.value.clone()))
            .collect()
    }

    /// The `[plugins]` value of a name, with its place.
    pub fn plugin(&self, name: &str) -> Option<&Setting<String>> {
        self.plugins
            .iter()
            .flat_map(|t| &t.value)
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// `[plugin-keys]`: each registry or namespace with its public key file, made absolute.
    pub fn plugin_key_files(&self) -> Vec<(String, PathBuf)> {
        self.plugin_keys
            .iter()
            .flat_map(|t| &t.value)
            .map(|(prefix, path)| (prefix.clone(), self.resolve(&path.value)))
            .collect()
    }

    /// The `[plugins]` values that are local component files, with their place.
    pub fn local_plugins(&self) -> Vec<(String, Setting<String>)> {
        self.plugins
            .iter()
            .flat_map(|t| &t.value)
            .filter(|(_, v)| !crate::plugins::registry::is_reference(&v.value))
            .cloned()
            .collect()
    }

    /// The folder its relative paths start from.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A path the file names, made absolute against its folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.dir().join(path)
    }

    /// An error about one of its values, at that value's place.
    pub fn error(&self, span: Span, message: impl Into<String>, help: Option<String>) -> SpecError {
        let mut diagnostic = Diagnostic::error(span, message);
        if let Some(help) = help {
            diagnostic = diagnostic.with_help(help);
        }
        SpecError {
            path: self.path.clone(),
            source: self.source.clone(),
            diagnostics: vec![diagnostic],
        }
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_string()
}

/// The key of toml's "unknown field `netwrok`, expected one of …", and ``did you mean `network`?``
/// (among the keys of the table it is in: toml lists them).
fn unknown_key(message: &str) -> Option<(&str, String)> {
    let name = message.strip_prefix("unknown field `")?.split('`').next()?;
    let listed: Vec<&str> = message
        .split_once("expected ")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let (known, table): (&[&str], &str) = if listed.is_empty() || listed.contains(&"network") {
        (&KEYS, "a kiln.toml")
    } else {
        (&listed, "this table")
    };
    let help = match nearest(name, known) {
        Some(key) => format!("did you mean `{key}`?"),
        None => format!("{table} holds {}", known.join(", ")),
    };
    Some((name, help))
}

/// The place of a byte range of the text.
fn span_of(lines: &LineIndex, source: &str, range: Range<usize>) -> Span {
    let start = range.start.min(source.len());
    let before = source.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).unwrap_or_default().chars().count();
    let len = source
        .get(start..range.end.clamp(start, source.len()))
        .unwrap_or_default()
        .chars()
        .count();
    lines.span(line, col, len.max(1))
}

/// Why a kiln.toml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_lines() {
        let c = ProjectConfig::parse(
            Path::new("/p/kiln.toml"),
            "network = \"none\"\nwritable = [\"a\", \"b\"]\n\n[plugins]\nlint = \"l.wasm\"\n",
        )
        .unwrap();
        assert_eq!(c.network.as_ref().map(|n| n.span.line), Some(1));
        assert_eq!(c.dir(), Path::new("/p"));
        let writable = c.writable.unwrap();
        assert_eq!(writable.span.line, 2);
        assert_eq!(writable.value[1].value, "b");
        let plugins = c.plugins.unwrap();
        assert_eq!(plugins.value[0].1.span.line, 5);
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_place_with_a_suggestion() {
        let e = ProjectConfig::parse(
            Path::new("kiln.toml"),
            "memory = \"1G\"\nnetwrok = \"none\"\n",
        )
        .unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!((d.span.line, d.span.column), (2, 1));
        assert_eq!(d.help.as_deref(), Some("did you mean `network`?"));
    }

    const PIPELINE: &str = r#"network = "none"

[pipeline]
queue = "postgres://ci/kiln"

[pipeline.sources]
hello-web = "."
"other-repo" = "https://git.example.com/other.git"

[pipeline.projects]
hello-web-build = "ci/buildspec.yml"

[pipeline.deployment-groups]
hello-web-prod = { root = "/srv/kiln", application = "hello-web" }

[pipeline.deployment-groups.hello-web-fleet]
ref = "s3://releases/hello-web/prod"

[pipeline.artifact-store]
codepipeline-us-east-1-111122223333 = "file://artifacts"
"#;

    #[test]
    fn the_pipeline_table_maps_aws_names_with_their_places() {
        let c = ProjectConfig::parse(Path::new("kiln.toml"), PIPELINE).unwrap();
        let p = c.pipeline.unwrap();
        assert_eq!(p.span.line, 3);
        let p = p.value;
        assert_eq!(
            p.queue.as_ref().map(|q| q.value.as_str()),
            Some("postgres://ci/kiln")
        );
        let sources: Vec<_> = p
            .sources
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_str(), v.span.line))
            .collect();
        assert_eq!(
            sources,
            [
                ("hello-web", ".", 7),
                ("other-repo", "https://git.example.com/other.git", 8)
            ]
        );
        assert_eq!(p.projects[0].0, "hello-web-build");
        assert_eq!(p.projects[0].1.value, "ci/buildspec.yml");
        let groups: Vec<_> = p
            .deployment_groups
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.clone(), v.span.line))
            .collect();
        assert_eq!(groups[0].0, "hello-web-fleet");
        assert_eq!(
            groups[0].1.reference.as_deref(),
            Some("s3://releases/hello-web/prod")
        );
        assert_eq!(groups[0].1.root, None);
        assert_eq!(groups[1].0, "hello-web-prod");
        assert_eq!(groups[1].1.root.as_deref(), Some("/srv/kiln"));
        assert_eq!(groups[1].1.application.as_deref(), Some("hello-web"));
        assert_eq!(groups[1].2, 14);
        assert_eq!(p.artifact_stores[0].1.value, "file://artifacts");
        assert_eq!(p.artifact_stores[0].1.span.line, 20);
    }

    #[test]
    fn a_deployment_group_going_nowhere_is_an_error_at_its_line() {
        let text = PIPELINE.replace(
            "{ root = \"/srv/kiln\", application = \"hello-web\" }",
            "{ application = \"hello-web\" }",
        );
        let e = ProjectConfig::parse(Path::new("kiln.toml"), &text).unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!(d.span.line, 14);
        assert!(
            d.message
                .contains("`hello-web-prod` says neither where to deploy nor which ref to move"),
            "{}",
            d.message
        );
        assert!(
            d.help.as_deref().unwrap_or("").contains("give `root`"),
            "{:?}",
            d.help
        );
    }

    #[test]
    fn an_unknown_key_in_the_pipeline_table_names_the_key_of_that_table() {
        let e =
            ProjectConfig::parse(Path::new("kiln.toml"), "[pipeline]\nsorces = {}\n").unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!(d.span.line, 2);
        assert_eq!(d.message, "unknown key `sorces`");
        assert_eq!(d.help.as_deref(), Some("did you mean `sources`?"));
        let e = ProjectConfig::parse(
            Path::new("kiln.toml"),
            "[pipeline.deployment-groups]\nprod = { root = \"/x\", reff = \"y\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            e.diagnostics[0].help.as_deref(),
            Some("did you mean `ref`?")
        );
    }

    #[test]
    fn plugin_references_stay_references_and_local_paths_stay_paths() {
        let c = ProjectConfig::parse(
            Path::new("/p/kiln.toml"),
            "[plugins]\nlint = \"tools/lint.wasm\"\nchecksum = \"oci://ghcr.io/acme/checksum:1.2.0\"\nlocal = \"file:///srv/p/local:0.1.0\"\n",
        )
        .unwrap();
        assert_eq!(
            c.registry_plugins(),
            vec![
                (
                    "checksum".to_string(),
                    "oci://ghcr.io/acme/checksum:1.2.0".to_string()
                ),
                ("local".to_string(), "file:///srv/p/local:0.1.0".to_string()),
            ]
        );
        let local = c.local_plugins();
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].0, "lint");
        assert_eq!(
            c.resolve(&local[0].1.value),
            Path::new("/p/tools/lint.wasm")
        );
    }

    #[test]
    fn a_plugin_reference_with_a_moving_tag_is_refused_at_its_place() {
        let e = ProjectConfig::parse(
            Path::new("kiln.toml"),
            "[plugins]\nchecksum = \"oci://ghcr.io/acme/checksum:latest\"\n",
        )
        .unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!(d.span.line, 2);
        assert!(d.message.contains("not a semver version"), "{}", d.message);
    }
}
