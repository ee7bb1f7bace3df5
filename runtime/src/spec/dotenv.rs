//! dotenv files, as `docker --env-file`, `act --env-file` and CodeBuild's local agent read them:
//! `NAME=value` lines, blank lines and `#` comment lines, an optional `export ` before the name.
//!
//! ```text
//! # comment
//! export STAGE=prod
//! GREETING="hello\nworld"     # double quotes: \n, \t, \" and \\ escapes
//! PATTERN='$literal \n'       # single quotes: taken as written
//! PLAIN=value # an unquoted value ends at ` #`
//! ```
//!
//! Names run up to the first `=` and are not checked here: a secrets file's names are parameter
//! paths and secret references; [`variables`] checks that they are variable names.

use std::path::Path;

use super::diagnostic::{Diagnostic, SpecError};
use super::yaml::LineIndex;

/// The file's `(name, value)` pairs in the order written (a name written twice appears twice, the
/// later one last), or every bad line with its place; `path` is only used in messages.
pub fn parse(path: &Path, source: &str) -> Result<Vec<(String, String)>, SpecError> {
    let (pairs, diagnostics) = parse_lines(source);
    finish(path, source, pairs, diagnostics)
}

/// [`parse`], and every name must be an environment variable's: a letter or `_`, then letters,
/// digits and `_`.
pub fn variables(path: &Path, source: &str) -> Result<Vec<(String, String)>, SpecError> {
    let (pairs, mut diagnostics) = parse_lines(source);
    let lines = LineIndex::new(source);
    for (n, col, (name, _)) in pairs.iter().filter(|(_, _, (name, _))| !is_variable(name)) {
        diagnostics.push(
            Diagnostic::error(
                lines.span(*n, *col, name.chars().count().max(1)),
                format!("`{name}` is not a variable name"),
            )
            .with_help("a name is a letter or `_`, then letters, digits and `_`"),
        );
    }
    diagnostics.sort_by_key(|d| (d.span.line, d.span.column));
    finish(path, source, pairs, diagnostics)
}

/// Whether `name` is a variable name a shell takes.
fn is_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A parsed line: its number, its name's column (0-based), and the pair.
type Line = (usize, usize, (String, String));

fn parse_lines(source: &str) -> (Vec<Line>, Vec<Diagnostic>) {
    let lines = LineIndex::new(source);
    let mut pairs = Vec::new();
    let mut diagnostics = Vec::new();
    for (n, raw) in source.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let indent = raw.chars().count() - line.chars().count();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let name_col = raw.chars().count() - line.chars().count();
        let Some((key, value)) = line.split_once('=') else {
            diagnostics.push(
                Diagnostic::error(
                    lines.span(n + 1, indent, line.chars().count()),
                    "expected `NAME=value`",
                )
                .with_help("each line is a name, `=`, and its value"),
            );
            continue;
        };
        match unquote(value.trim()) {
            Ok(v) => pairs.push((n + 1, name_col, (key.trim().to_string(), v))),
            Err(message) => {
                let col = indent + raw.trim_start().find('=').unwrap_or(0) + 1;
                diagnostics.push(Diagnostic::error(lines.span(n + 1, col, 1), message));
            }
        }
    }
    (pairs, diagnostics)
}

fn finish(
    path: &Path,
    source: &str,
    pairs: Vec<Line>,
    diagnostics: Vec<Diagnostic>,
) -> Result<Vec<(String, String)>, SpecError> {
    if diagnostics.is_empty() {
        Ok(pairs.into_iter().map(|(_, _, pair)| pair).collect())
    } else {
        Err(SpecError {
            path: path.to_path_buf(),
            source: source.to_string(),
            diagnostics,
        })
    }
}

fn unquote(value: &str) -> Result<String, String> {
    if let Some(inner) = value.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_string)
            .ok_or_else(|| "this single-quoted value has no closing quote".to_string());
    }
    if let Some(inner) = value.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| "this double-quoted value has no closing quote".to_string())?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return Ok(out);
    }
    // An unquoted value ends at a ` #` comment.
    Ok(value
        .split_once(" #")
        .map_or(value, |(v, _)| v)
        .trim_end()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_exports_comments_and_order() {
        let pairs = variables(
            Path::new(".env"),
            "# c\n\nexport A='x \\n y'\nB=\"1\\n2\"\nC=plain # note\nA=again\n",
        )
        .unwrap();
        let expected = [
            ("A", "x \\n y"),
            ("B", "1\n2"),
            ("C", "plain"),
            ("A", "again"),
        ];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_string(), v.to_string())));
    }

    #[test]
    fn a_name_that_is_not_a_variable_is_an_error_with_its_place() {
        let e = variables(Path::new(".env"), "A=1\n  MY VAR=2\n").unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!((d.span.line, d.span.column), (2, 3));
        assert!(d.message.contains("`MY VAR`"), "{}", d.message);
    }
}
