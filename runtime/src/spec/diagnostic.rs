//! Errors and warnings that point into a spec file: `buildspec.yml:12:7`, the line, a caret, what was
//! expected and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

use annotate_snippets::{Level, Renderer, Snippet};

/// A place in a file: 1-based line and column, and the byte range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub start: usize,
    pub end: usize,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a spec file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(span, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic against the file's text, as a compiler would.
    pub fn render(&self, path: &Path, source: &str, color: bool) -> String {
        let level = match self.severity {
            Severity::Error => Level::Error,
            Severity::Warning => Level::Warning,
        };
        // annotate-snippets adds the annotation's line:column to the origin itself.
        let origin = path.display().to_string();
        let end = self.span.end.clamp(self.span.start, source.len());
        let mut start = self.span.start.min(end);
        // A place at the very end of the file (a document cut short) is shown on its last
        // character: past the end, the renderer would place it at 1:1.
        let mut end = end;
        if start == source.len() && !source.is_empty() {
            let trimmed = source.trim_end();
            let last = trimmed.chars().next_back().map_or(0, char::len_utf8);
            start = trimmed.len().saturating_sub(last);
            end = trimmed.len();
        }
        let mut message = level.title(&self.message).snippet(
            Snippet::source(source)
                .line_start(1)
                .origin(&origin)
                .fold(true)
                .annotation(level.span(start..end.max(start))),
        );
        if let Some(help) = &self.help {
            message = message.footer(Level::Help.title(help));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        renderer.render(message).to_string()
    }
}

/// A spec file that could not be read: every error found, and the warnings, ready to print.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub path: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    /// The errors (not the warnings).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// Renders every diagnostic, errors and warnings, in file order.
    pub fn render(&self, color: bool) -> String {
        render_all(&self.path, &self.source, &self.diagnostics, color)
    }
}

/// Renders diagnostics in file order, separated by blank lines.
pub fn render_all(path: &Path, source: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|d| (d.span.start, d.severity == Severity::Warning));
    sorted
        .iter()
        .map(|d| d.render(path, source, color))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One line that says which file is wrong and how many errors it has, then the rendered diagnostics
/// (each with its own `error:` or `warning:`) on lines of their own: a message that puts its own
/// prefix in front (`error: DownloadBundle: …`) never makes `error: error:`.
impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors().count();
        write!(
            f,
            "{} is not a valid spec: {} error{}\n\n{}",
            self.path.display(),
            count,
            if count == 1 { "" } else { "s" },
            self.render(false)
        )
    }
}

impl std::error::Error for SpecError {}
