//! `kiln.lock`: what each registry plugin of a project is pinned to, and what its user granted.
//!
//! ```toml
//! version = 1
//!
//! [[plugin]]
//! name = "checksum"
//! reference = "oci://ghcr.io/acme/checksum:1.2.0"
//! manifest = "sha256:…"          # the manifest the tag named when it was added or updated
//! layer = "sha256:…"             # the component
//! size = 81234
//! blake3 = "…"                   # the component's key in kiln's CAS
//! api-version = "0.1.1"
//!
//! [plugin.granted]
//! exec = ["git"]
//! ```
//!
//! Written by `kiln plugin add` and `kiln plugin update` only (atomically, in a stable order), read
//! by builds, which resolve plugins from it and nothing else. It is hostile input like any file a
//! repository carries: every error names its place (`kiln.lock:7:10`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Capabilities;
use super::artifact::check_digest;
use super::registry::PluginRef;
use crate::spec::diagnostic::{Diagnostic, Span};

/// The file's name, beside kiln.toml.
pub const FILE_NAME: &str = "kiln.lock";

const HEADER: &str = "# kiln.lock: the registry plugins of this project, pinned by digest, with what each was granted.\n# Written by `kiln plugin add` and `kiln plugin update`; commit it. Builds resolve plugins from it only.\n";

/// A project's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub plugins: Vec<Locked>,
}

/// One pinned plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The command name (kiln.toml's `[plugins]` key).
    pub name: String,
    /// The reference as kiln.toml gives it (with its tag).
    pub reference: String,
    /// The manifest digest the tag named, `sha256:<hex>`.
    pub manifest: String,
    /// The component's digest, `sha256:<hex>`.
    pub layer: String,
    pub size: u64,
    /// The component's BLAKE3 (hex): its key in the CAS.
    pub blake3: String,
    /// The kiln interface version the component was built for.
    pub api_version: String,
    /// What the user granted.
    pub granted: Capabilities,
}

/// Why a kiln.lock could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{}:{}: {message}", path.display(), span.line, span.column)]
    Invalid {
        path: PathBuf,
        source_text: String,
        span: Span,
        message: String,
    },
}

impl LockError {
    /// The error as a compiler shows it: the place, the line, a caret.
    pub fn render(&self, color: bool) -> String {
        match self {
            LockError::Invalid {
                path,
                source_text,
                span,
                message,
            } => Diagnostic::error(*span, message.clone())
                .with_help("kiln.lock is written by `kiln plugin add` and `kiln plugin update`: run one of them rather than editing it")
                .render(path, source_text, color),
            other => other.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: Spanned<i64>,
    #[serde(default)]
    plugin: Vec<Spanned<RawLocked>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLocked {
    name: Spanned<String>,
    reference: Spanned<String>,
    manifest: Spanned<String>,
    layer: Spanned<String>,
    size: Spanned<i64>,
    blake3: Spanned<String>,
    api_version: Spanned<String>,
    #[serde(default)]
    granted: Option<Spanned<Capabilities>>,
}

fn span_at(source: &str, range: std::ops::Range<usize>) -> Span {
    let start = range.start.min(source.len());
    let end = range.end.clamp(start, source.len());
    let before = source.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    Span {
        line,
        column,
        start,
        end: end.max(start + usize::from(start < source.len())),
    }
}

/// A name kiln can put on a command line and in a file name, and that a build's shell would run.
pub fn check_name(name: &str) -> Result<(), String> {
    match super::name::refusal(name) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

impl Lock {
    /// Reads a kiln.lock; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Lock>, LockError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let text = String::from_utf8(text).map_err(|e| LockError::Invalid {
            path: path.to_path_buf(),
            source_text: String::new(),
            span: Span::default(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        Self::parse(path, &text).map(Some)
    }

    /// Parses kiln.lock text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Lock, LockError> {
        let invalid = |range: std::ops::Range<usize>, message: String| LockError::Invalid {
            path: path.to_path_buf(),
            source_text: text.to_string(),
            span: span_at(text, range),
            message,
        };
        let raw: RawLock = toml::from_str(text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        if *raw.version.get_ref() != 1 {
            return Err(invalid(
                raw.version.span(),
                format!(
                    "version {} of kiln.lock is not one this kiln reads (it reads version 1): upgrade kiln",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut plugins: Vec<Locked> = Vec::new();
        for entry in raw.plugin {
            let entry = entry.into_inner();
            let string = |s: Spanned<String>,
                          check: &dyn Fn(&str) -> Result<(), String>|
             -> Result<String, LockError> {
                check(s.get_ref()).map_err(|m| invalid(s.span(), m))?;
                Ok(s.into_inner())
            };
            let name_span = entry.name.span();
            let name = string(entry.name, &check_name)?;
            if plugins.iter().any(|p| p.name == name) {
                return Err(invalid(
                    name_span,
                    format!("the plugin `{name}` is locked twice"),
                ));
            }
            let reference = string(entry.reference, &|r| {
                PluginRef::parse(r).map(|_| ()).map_err(|e| e.to_string())
            })?;
            let digest = |d: &str| check_digest(d).map_err(|e| e.0);
            let manifest = string(entry.manifest, &digest)?;
            let layer = string(entry.layer, &digest)?;
            let blake3 = string(entry.blake3, &|h| {
                if h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "`{}` is not a BLAKE3 digest (64 lowercase hex digits)",
                        h.escape_debug()
                    ))
                }
            })?;
            let api_version = string(entry.api_version, &|v| {
                semver::Version::parse(v)
                    .map(|_| ())
                    .map_err(|_| format!("`{}` is not a version", v.escape_debug()))
            })?;
            let size = u64::try_from(*entry.size.get_ref())
                .map_err(|_| invalid(entry.size.span(), "a size is not negative".into()))?;
            let granted = match entry.granted {
                Some(g) => {
                    let span = g.span();
                    let g = g.into_inner();
                    // One value per line in the section's text: a value holding a line break
                    // would read as more grants than the file shows.
                    if let Some(bad) = [&g.exec, &g.network, &g.env, &g.write]
                        .into_iter()
                        .flatten()
                        .find(|v| v.chars().any(char::is_control))
                    {
                        return Err(invalid(
                            span,
                            format!(
                                "the granted value `{}` holds a control character",
                                bad.escape_debug()
                            ),
                        ));
                    }
                    // Round-tripped through the section's parser: the same checks, sorted lists.
                    Capabilities::parse(&g.to_text()).map_err(|m| invalid(span, m))?
                }
                None => Capabilities::default(),
            };
            plugins.push(Locked {
                name,
                reference,
                manifest,
                layer,
                size,
                blake3,
                api_version,
                granted,
            });
        }
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Lock { plugins })
    }

    /// The entry for a name.
    pub fn get(&self, name: &str) -> Option<&Locked> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// Adds or replaces the entry of `locked.name`.
    pub fn put(&mut self, locked: Locked) {
        self.plugins.retain(|p| p.name != locked.name);
        self.plugins.push(locked);
        self.plugins.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Takes out the entry of a name, and gives it.
    pub fn remove(&mut self, name: &str) -> Option<Locked> {
        let at = self.plugins.iter().position(|p| p.name == name)?;
        Some(self.plugins.remove(at))
    }

    /// The file's text: a header, `version = 1`, the plugins by name.
    pub fn to_text(&self) -> String {
        let mut out = String::from(HEADER);
        out.push_str("\nversion = 1\n");
        let mut plugins: Vec<&Locked> = self.plugins.iter().collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        for p in plugins {
            out.push_str("\n[[plugin]]\n");
            for (key, value) in [
                ("name", &p.name),
                ("reference", &p.reference),
                ("manifest", &p.manifest),
                ("layer", &p.layer),
            ] {
                out.push_str(&format!("{key} = {}\n", quote(value)));
            }
            out.push_str(&format!("size = {}\n", p.size));
            out.push_str(&format!("blake3 = {}\n", quote(&p.blake3)));
            out.push_str(&format!("api-version = {}\n", quote(&p.api_version)));
            out.push_str("\n[plugin.granted]\n");
            for (key, list) in [
                ("exec", &p.granted.exec),
                ("network", &p.granted.network),
                ("env", &p.granted.env),
                ("write", &p.granted.write),
            ] {
                let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
                out.push_str(&format!("{key} = [{}]\n", items.join(", ")));
            }
        }
        out
    }

    /// Writes the lock atomically: a temp file in the same folder, renamed over the old one.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut temp, self.to_text().as_bytes()).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            plugins: vec![
                Locked {
                    name: "zeta".into(),
                    reference: "oci://localhost:5000/acme/zeta:1.0.0".into(),
                    manifest: format!("sha256:{}", "1".repeat(64)),
                    layer: format!("sha256:{}", "2".repeat(64)),
                    size: 42,
                    blake3: "3".repeat(64),
                    api_version: "0.1.0".into(),
                    granted: Capabilities::default(),
                },
                Locked {
                    name: "alpha".into(),
                    reference: "file:///srv/plugins/alpha:0.2.0-rc.1".into(),
                    manifest: format!("sha256:{}", "a".repeat(64)),
                    layer: format!("sha256:{}", "b".repeat(64)),
                    size: 7,
                    blake3: "c".repeat(64),
                    api_version: "0.1.1".into(),
                    granted: Capabilities::parse("exec git\nenv TOKEN \"quoted\"\n").unwrap(),
                },
            ],
        }
    }

    #[test]
    fn written_then_read_is_the_same_lock_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        sample().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# kiln.lock"), "{text}");
        assert!(text.contains("commit it"), "{text}");
        assert!(text.find("alpha").unwrap() < text.find("zeta").unwrap());
        let read = Lock::read(&path).unwrap().unwrap();
        let mut want = sample();
        want.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read, want);
        assert_eq!(read.get("zeta").unwrap().size, 42);
        // Writing again changes nothing.
        read.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(Lock::read(&dir.path().join("none.lock")).unwrap().is_none());
    }

    fn error_of(text: &str) -> String {
        Lock::parse(Path::new("kiln.lock"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let good = sample().to_text();
        let bad = good.replacen(&format!("sha256:{}", "1".repeat(64)), "sha256:nothex", 1);
        let e = error_of(&bad);
        let line = bad
            .lines()
            .position(|l| l.contains("sha256:nothex"))
            .unwrap()
            + 1;
        assert!(
            e.starts_with(&format!("kiln.lock:{line}:12: ")),
            "{e}\n{bad}"
        );
        assert!(e.contains("not a sha256 digest"), "{e}");
        let e = error_of("version = 2\n");
        assert!(
            e.starts_with("kiln.lock:1:11:") && e.contains("upgrade kiln"),
            "{e}"
        );
        let e = error_of("version = 1\n[[plugin]]\nname = \"x\"\n");
        assert!(e.starts_with("kiln.lock:"), "{e}");
        let e = error_of("version = 1\nsurprise = true\n");
        assert!(e.contains("surprise"), "{e}");
        let e = error_of(&good.replace("size = 42", "size = -1"));
        assert!(e.contains("negative"), "{e}");
        let e = error_of(&good.replace("name = \"zeta\"", "name = \"../zeta\""));
        assert!(e.contains("not a command name"), "{e}");
        let e = error_of(&good.replace(":1.0.0\"", ":latest\""));
        assert!(e.contains("semver"), "{e}");
        let e = error_of(&good.replace("exec = [\"git\"]", "exec = [\"git\"]\nsudo = [\"x\"]"));
        assert!(e.contains("sudo"), "{e}");
        let e = error_of(&good.replace("name = \"zeta\"", "name = \"alpha\""));
        assert!(e.contains("locked twice"), "{e}");
        // Garbage never panics.
        for text in [
            "",
            "\u{0}",
            "[[plugin]]",
            "version = \"1\"",
            "version = 1\nplugin = 3",
        ] {
            let _ = Lock::parse(Path::new("kiln.lock"), text);
        }
    }
}
