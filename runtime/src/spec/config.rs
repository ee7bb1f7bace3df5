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
pub const KEYS: [&str; 10] = [
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
];

/// One value of the file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub span: Span,
}

/// The `[plugins]` table: each name with its path.
pub type Plugins = Vec<(String, Setting<String>)>;

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
        Ok(Self {
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
        })
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

/// The key of toml's "unknown field `netwrok`, expected one of …", and ``did you mean `network`?``.
fn unknown_key(message: &str) -> Option<(&str, String)> {
    let name = message.strip_prefix("unknown field `")?.split('`').next()?;
    let help = match nearest(name, &KEYS) {
        Some(key) => format!("did you mean `{key}`?"),
        None => format!("a kiln.toml holds {}", KEYS.join(", ")),
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
}
