//! Reading typed values out of a YAML node tree, collecting every error and warning with its place.
//!
//! A `Reader` never stops at the first problem: it records a diagnostic and hands back a harmless
//! default, so a user fixing a file sees all its errors at once.

use std::path::Path;

use super::diagnostic::{Diagnostic, Severity, Span, SpecError};
use super::yaml::{self, Node, NodeKind};

/// What [`read_spec`] gives back: what was read, the YAML root it came from, and the warnings.
pub type Read<T> = (T, Node, Vec<Diagnostic>);

/// Reads a spec file's text: parses the YAML and runs `read` over its root. Returns what was read
/// with the warnings, or every error (then the warnings) at once as one [`SpecError`]; `path` is
/// only used in messages.
pub fn read_spec<T>(
    path: &Path,
    source: &str,
    read: impl FnOnce(&mut Reader, &Node) -> T,
) -> Result<Read<T>, SpecError> {
    let fail = |diagnostics| SpecError {
        path: path.to_path_buf(),
        source: source.to_string(),
        diagnostics,
    };
    let root = yaml::parse(source).map_err(|d| fail(vec![d]))?;
    let mut r = Reader::default();
    let value = read(&mut r, &root);
    let (errors, warnings): (Vec<_>, Vec<_>) = r
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if errors.is_empty() {
        Ok((value, root, warnings))
    } else {
        Err(fail(errors.into_iter().chain(warnings).collect()))
    }
}

/// Collects diagnostics while a spec is read.
#[derive(Default)]
pub struct Reader {
    pub diagnostics: Vec<Diagnostic>,
}

impl Reader {
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    pub fn error_help(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(span, message).with_help(help));
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(span, message));
    }

    /// The entries of a mapping. `what` names it in messages ("phases", "env"). Keys that are not
    /// scalars are reported; a null node reads as an empty mapping.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(&'n str, Span, &'n Node)> {
        match &node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    match key.as_str() {
                        Some(k) => {
                            if out.iter().any(|(seen, _, _)| *seen == k) {
                                self.error(key.span, format!("`{k}` is given twice in {what}"));
                            }
                            out.push((k, key.span, value));
                        }
                        None => self.error(
                            key.span,
                            format!("expected a key in {what}, found {}", key.describe()),
                        ),
                    }
                }
                out
            }
            _ => {
                self.error(
                    node.span,
                    format!("expected a mapping for {what}, found {}", node.describe()),
                );
                Vec::new()
            }
        }
    }

    /// Refuses a key that kiln does not know where a typo would silently drop part of the build (a
    /// misspelt phase runs nothing), pointing at the nearest known key.
    pub fn unknown_key(&mut self, key: &str, span: Span, what: &str, known: &[&str]) {
        self.unknown(
            Diagnostic::error(span, format!("unknown key `{key}` in {what}")),
            key,
            &format!("the keys of {what} are"),
            known,
        );
    }

    /// Refuses a name that is not one of `known` (a phase name): `message` says what it is not.
    pub fn unknown_name(
        &mut self,
        name: &str,
        span: Span,
        message: String,
        list: &str,
        known: &[&str],
    ) {
        self.unknown(Diagnostic::error(span, message), name, list, known);
    }

    /// Warns about a key that kiln does not know where the file may hold more than kiln reads, so an
    /// unknown key is not necessarily a mistake.
    pub fn ignored_key(&mut self, key: &str, span: Span, what: &str, known: &[&str]) {
        self.unknown(
            Diagnostic::warning(
                span,
                format!("unknown key `{key}` in {what}; it is ignored"),
            ),
            key,
            &format!("the keys of {what} are"),
            known,
        );
    }

    fn unknown(&mut self, diagnostic: Diagnostic, name: &str, list: &str, known: &[&str]) {
        let listing = format!("{list}: {}", known.join(", "));
        let help = match nearest(name, known) {
            Some(near) => format!("did you mean `{near}`? {listing}"),
            None => listing,
        };
        self.diagnostics.push(diagnostic.with_help(help));
    }

    /// A scalar as the user wrote it. Numbers and booleans are kept as their text.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.error(
                    node.span,
                    format!("expected a string for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string or nothing: null reads as `None` without complaint.
    pub fn optional_string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.kind {
            NodeKind::Null => None,
            _ => self.string(node, what),
        }
    }

    /// YAML 1.1 booleans as CodeBuild reads them: yes/no, true/false, on/off.
    pub fn boolean(&mut self, node: &Node, what: &str) -> bool {
        let text = node.as_str().map(str::to_ascii_lowercase);
        match text.as_deref() {
            Some("yes" | "true" | "on" | "y") => true,
            Some("no" | "false" | "off" | "n") => false,
            _ => {
                self.error_help(
                    node.span,
                    format!("expected yes or no for {what}, found {}", node.describe()),
                    "write `yes` or `no` (true and false work too)",
                );
                false
            }
        }
    }

    /// A list of strings, or a single string standing for a list of one. Null items are skipped, as
    /// CodeBuild skips them.
    pub fn strings(&mut self, node: &Node, what: &str) -> Vec<(String, Span)> {
        match &node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Scalar { text, .. } => vec![(text.clone(), node.span)],
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|item| match &item.kind {
                    NodeKind::Null => None,
                    NodeKind::Scalar { text, .. } => Some((text.clone(), item.span)),
                    NodeKind::Map(entries) => {
                        let hint = entries
                            .first()
                            .and_then(|(k, _)| k.as_str())
                            .map(|k| {
                                format!(
                                    "YAML reads `{k}: …` as a mapping because of the `: `; \
                                     quote the whole item: - \"{k}: …\""
                                )
                            })
                            .unwrap_or_else(|| "quote the item".into());
                        self.error_help(
                            item.span,
                            format!("expected a string in {what}, found a mapping"),
                            hint,
                        );
                        None
                    }
                    NodeKind::Seq(_) => {
                        self.error(
                            item.span,
                            format!("expected a string in {what}, found a list"),
                        );
                        None
                    }
                })
                .collect(),
            NodeKind::Map(_) => {
                self.error(
                    node.span,
                    format!("expected a list of strings for {what}, found a mapping"),
                );
                Vec::new()
            }
        }
    }

    /// Like [`Reader::strings`], without the places.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Vec<String> {
        self.strings(node, what)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// A mapping of names to scalar values, in the order written (`env.variables` and the like).
    pub fn string_map(&mut self, node: &Node, what: &str) -> Vec<(String, String, Span)> {
        let mut out = Vec::new();
        for (key, span, value) in self.map(node, what) {
            let text = match &value.kind {
                NodeKind::Null => String::new(),
                NodeKind::Scalar { text, .. } => text.clone(),
                _ => {
                    self.error(
                        value.span,
                        format!(
                            "expected a string value for `{key}` in {what}, found {}",
                            value.describe()
                        ),
                    );
                    continue;
                }
            };
            out.push((key.to_string(), text, span));
        }
        out
    }
}

/// The known name `name` is most likely a misspelling of: the nearest by edit distance (a swap of two
/// neighbouring letters counts as one edit, so `biuld` is near `build`), without regard to case, when
/// at most a third of it differs (at least one letter), so that an unrelated word gets no suggestion;
/// else the one it begins (`base-dir` for `base-directory`).
pub fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let name = name.to_lowercase();
    let allowed = (name.chars().count() / 3).max(1);
    let near = known
        .iter()
        .map(|k| (strsim::osa_distance(&name, &k.to_lowercase()), *k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k);
    if near.is_some() || name.chars().count() < 3 {
        return near;
    }
    let mut begun = known.iter().filter(|k| k.to_lowercase().starts_with(&name));
    match (begun.next(), begun.next()) {
        (Some(k), None) => Some(*k),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::nearest;

    const PHASES: &[&str] = &["install", "pre_build", "build", "post_build"];

    #[test]
    fn typos_are_near_the_name_they_miss() {
        assert_eq!(nearest("biuld", PHASES), Some("build"));
        assert_eq!(nearest("bild", PHASES), Some("build"));
        assert_eq!(nearest("prebuild", PHASES), Some("pre_build"));
        assert_eq!(nearest("post-build", PHASES), Some("post_build"));
        assert_eq!(nearest("Install", PHASES), Some("install"));
        assert_eq!(
            nearest("comands", &["commands", "finally"]),
            Some("commands")
        );
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        assert_eq!(nearest("deploy", PHASES), None);
        assert_eq!(nearest("x", PHASES), None);
        assert_eq!(nearest("p", PHASES), None);
        assert_eq!(nearest("pos", &["post_build", "position"]), None);
        assert_eq!(nearest("steps", &["commands", "finally"]), None);
    }
}
