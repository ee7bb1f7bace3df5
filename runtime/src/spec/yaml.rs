//! A YAML document as a tree of nodes that remember where they were written.
//!
//! kiln reads buildspecs and appspecs through this tree rather than through serde, for two reasons a
//! user sees: every error and warning can point at the line and column of the offending node, and a
//! scalar keeps the text the user wrote (`1.10` stays `1.10`, `yes` stays `yes`), which is what
//! CodeBuild passes to the shell. JSON documents parse too, JSON being (for these files) a subset of YAML.
//!
//! A node keeps its tag (`!Ref`, `!Sub`: CloudFormation's short-form intrinsics are tags). The tree
//! is bounded whatever the input: nesting deeper than [`MAX_DEPTH`] is refused, and aliases may
//! not expand the document past [`MAX_NODES`] nodes (an alias copies its anchor's node, so ten
//! levels of ten aliases each would otherwise make ten billion).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::{Diagnostic, Span};

/// How deeply lists and mappings may nest.
pub const MAX_DEPTH: usize = 200;

/// How many nodes a document may hold once its aliases are expanded.
pub const MAX_NODES: usize = 1_000_000;

/// A node of the document and where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// The node's tag as written, resolved against the document's `%TAG` directives: `!Ref`,
    /// `!Sub`; `!!str` reads `tag:yaml.org,2002:str`.
    pub tag: Option<String>,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// `~`, `null` or nothing at all.
    Null,
    /// A scalar as written (after YAML unquoting), with whether it was quoted.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, in the words an error message uses: "a string", "a list", "a mapping".
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing (null)",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The scalar's text, if the node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

impl Node {
    /// The node's content in a canonical form (JSON, mapping keys sorted, scalars as written), so
    /// that comments, layout, quoting style and key order do not change it.
    pub fn canonical(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".into(),
            NodeKind::Scalar { text, .. } => serde_json::Value::String(text.clone()).to_string(),
            NodeKind::Seq(items) => {
                let inner: Vec<String> = items.iter().map(Node::canonical).collect();
                format!("[{}]", inner.join(","))
            }
            NodeKind::Map(entries) => {
                let mut inner: Vec<(String, String)> = entries
                    .iter()
                    .map(|(k, v)| (k.canonical(), v.canonical()))
                    .collect();
                inner.sort();
                let inner: Vec<String> =
                    inner.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", inner.join(","))
            }
        }
    }
}

/// Parses `source` into its first document's root node. An empty document gives a `Null` root.
pub fn parse(source: &str) -> Result<Node, Diagnostic> {
    let lines = LineIndex::new(source);
    let mut builder = Builder {
        lines: &lines,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        error: None,
    };
    // Events are pulled one by one rather than through `Parser::load`, which recurses once per
    // level of nesting: the builder's own limit then stops a deep document before the stack does.
    let mut parser = Parser::new_from_str(source);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) => {
                let span = lines.span(e.marker().line(), e.marker().col(), 1);
                return Err(Diagnostic::error(
                    span,
                    format!("this is not valid YAML: {}", e.info()),
                )
                .with_help("check the indentation and quoting around this place"));
            }
        };
        let end = matches!(event, Event::DocumentEnd | Event::StreamEnd);
        builder.on_event(event, mark);
        if end || builder.error.is_some() {
            break;
        }
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        span: lines.span(1, 0, 0),
        tag: None,
    }))
}

/// Byte offsets of line starts, to turn the parser's (line, char column) into byte spans.
pub struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
    /// Whether each line is ASCII, where a character column is a byte column.
    ascii: Vec<bool>,
    /// The last (line, character column, byte column) found on a line that is not ASCII: places
    /// come in document order, so the next one is found from there, and a long line costs its
    /// length once rather than once per place on it.
    cursor: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = starts
            .iter()
            .enumerate()
            .map(|(i, start)| {
                let end = starts.get(i + 1).copied().unwrap_or(source.len());
                source.as_bytes()[*start..end].is_ascii()
            })
            .collect();
        Self {
            source,
            starts,
            ascii,
            cursor: std::cell::Cell::new((0, 0, 0)),
        }
    }

    /// The span of `len` characters at 1-based `line` and 0-based character `col`.
    pub fn span(&self, line: usize, col: usize, len: usize) -> Span {
        let line = line.clamp(1, self.starts.len());
        let start_of_line = self.starts[line - 1];
        let end_of_line = self
            .starts
            .get(line)
            .map_or(self.source.len(), |next| next - 1);
        let text = &self.source[start_of_line..end_of_line.max(start_of_line)];
        let (byte_col, end_col) = if self.ascii[line - 1] {
            let byte_col = col.min(text.len());
            (byte_col, col.saturating_add(len).min(text.len()))
        } else {
            let byte_col = self.byte_column(line, text, col);
            let end_col = text[byte_col..]
                .char_indices()
                .nth(len)
                .map_or(text.len(), |(i, _)| byte_col + i);
            (byte_col, end_col)
        };
        Span {
            line,
            column: col + 1,
            start: start_of_line + byte_col,
            end: start_of_line + end_col.max(byte_col),
        }
    }

    /// The byte offset of character `col` of `text`, line `line`.
    fn byte_column(&self, line: usize, text: &str, col: usize) -> usize {
        let (cached_line, cached_col, cached_byte) = self.cursor.get();
        let (from_col, from_byte) = if cached_line == line && cached_col <= col {
            (cached_col, cached_byte)
        } else {
            (0, 0)
        };
        let byte = text[from_byte..]
            .char_indices()
            .nth(col - from_col)
            .map_or(text.len(), |(i, _)| from_byte + i);
        if byte < text.len() {
            self.cursor.set((line, col, byte));
        }
        byte
    }
}

/// A list or mapping being read: its place, what it holds so far, its anchor, its tag and how
/// many nodes it holds (itself included), for aliases to count.
enum Open {
    Seq(Span, Vec<Node>, usize, Option<String>, usize),
    Map(
        Option<Span>,
        Vec<(Node, Node)>,
        Option<Node>,
        usize,
        Option<String>,
        usize,
    ),
}

impl Open {
    fn count(&mut self) -> &mut usize {
        match self {
            Open::Seq(.., n) | Open::Map(.., n) => n,
        }
    }
}

struct Builder<'a, 'b> {
    lines: &'b LineIndex<'a>,
    stack: Vec<Open>,
    /// Each anchor's node and how many nodes it holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes made so far, aliases expanded.
    nodes: usize,
    root: Option<Node>,
    error: Option<Diagnostic>,
}

fn tag_text(tag: Option<Tag>) -> Option<String> {
    tag.map(|t| format!("{}{}", t.handle, t.suffix))
}

impl Builder<'_, '_> {
    /// Counts `size` more nodes; false (with the error set) past the limit.
    fn grow(&mut self, size: usize, mark: Marker) -> bool {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            let span = self.lines.span(mark.line(), mark.col(), 1);
            self.error = Some(
                Diagnostic::error(
                    span,
                    format!("this document holds more than {MAX_NODES} values once its aliases are expanded"),
                )
                .with_help("write the values out instead of repeating anchors of anchors"),
            );
            return false;
        }
        true
    }

    fn push(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        if let Some(open) = self.stack.last_mut() {
            *open.count() += size;
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(_, items, ..)) => items.push(node),
            Some(Open::Map(span, entries, pending, ..)) => match pending.take() {
                None => {
                    span.get_or_insert(node.span);
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl Builder<'_, '_> {
    /// Opens a list or mapping; false (with the error set) past the nesting or size limit.
    fn open(&mut self, mark: Marker) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            let span = self.lines.span(mark.line(), mark.col(), 1);
            self.error = Some(
                Diagnostic::error(
                    span,
                    format!("lists and mappings nest deeper than {MAX_DEPTH} levels here"),
                )
                .with_help("no spec kiln reads nests this deeply: check the indentation"),
            );
            return false;
        }
        self.grow(1, mark)
    }
}

impl MarkedEventReceiver for Builder<'_, '_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.grow(1, mark) {
                    return;
                }
                let quoted = style != TScalarStyle::Plain;
                let len = if matches!(style, TScalarStyle::Plain) {
                    text.chars().count()
                } else {
                    1
                };
                let span = self.lines.span(mark.line(), mark.col(), len.max(1));
                let kind =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        NodeKind::Null
                    } else {
                        NodeKind::Scalar { text, quoted }
                    };
                let tag = tag_text(tag);
                self.push(Node { kind, span, tag }, anchor, 1);
            }
            Event::SequenceStart(anchor, tag) => {
                if !self.open(mark) {
                    return;
                }
                let span = self.lines.span(mark.line(), mark.col(), 1);
                self.stack
                    .push(Open::Seq(span, Vec::new(), anchor, tag_text(tag), 1));
            }
            Event::MappingStart(anchor, tag) => {
                if !self.open(mark) {
                    return;
                }
                self.stack
                    .push(Open::Map(None, Vec::new(), None, anchor, tag_text(tag), 1));
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(span, items, anchor, tag, size)) = self.stack.pop() {
                    self.push(
                        Node {
                            kind: NodeKind::Seq(items),
                            span,
                            tag,
                        },
                        anchor,
                        size,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(span, entries, _, anchor, tag, size)) = self.stack.pop() {
                    let span = span.unwrap_or_else(|| self.lines.span(mark.line(), mark.col(), 1));
                    self.push(
                        Node {
                            kind: NodeKind::Map(entries),
                            span,
                            tag,
                        },
                        anchor,
                        size,
                    );
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((node, size)) => {
                    if self.grow(size, mark) {
                        self.push(node, 0, size);
                    }
                }
                None => {
                    let span = self.lines.span(mark.line(), mark.col(), 1);
                    self.error = Some(Diagnostic::error(span, "this alias names no anchor"));
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_the_text_written() {
        let root = parse("a: 1.10\nb: yes\nc: '007'\nd:\n").unwrap();
        let NodeKind::Map(entries) = root.kind else {
            panic!("not a map")
        };
        let texts: Vec<_> = entries.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(texts, [Some("1.10"), Some("yes"), Some("007"), None]);
    }

    #[test]
    fn spans_are_one_based_lines_and_columns() {
        let root = parse("x:\n  - écho a\n  - b\n").unwrap();
        let NodeKind::Map(entries) = root.kind else {
            panic!("not a map")
        };
        let NodeKind::Seq(items) = &entries[0].1.kind else {
            panic!("not a seq")
        };
        assert_eq!((items[1].span.line, items[1].span.column), (3, 5));
        let src = "x:\n  - écho a\n  - b\n";
        assert_eq!(&src[items[0].span.start..items[0].span.end], "écho a");
    }

    #[test]
    fn canonical_ignores_comments_layout_and_order() {
        let a = parse("# c\nb: [1, '2']\na: x\n").unwrap();
        let b = parse("a: \"x\"\nb:\n  - 1\n  - \"2\"\n").unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = parse("a: x\nb: [1, 3]\n").unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }

    #[test]
    fn json_parses_as_yaml() {
        let root =
            parse(r#"{"version": 0.2, "phases": {"build": {"commands": ["make"]}}}"#).unwrap();
        assert!(matches!(root.kind, NodeKind::Map(_)));
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let err = parse("a: [b\n").unwrap_err();
        assert_eq!(err.span.line, 2);
    }

    #[test]
    fn tags_are_kept() {
        let root = parse("a: !Ref Name\nb: !Join [',', [x]]\nc: !!str 3\nd: plain\n").unwrap();
        let NodeKind::Map(entries) = root.kind else {
            panic!("not a map")
        };
        let tags: Vec<_> = entries.iter().map(|(_, v)| v.tag.as_deref()).collect();
        assert_eq!(
            tags,
            [
                Some("!Ref"),
                Some("!Join"),
                Some("tag:yaml.org,2002:str"),
                None
            ]
        );
        assert_eq!(entries[0].1.as_str(), Some("Name"));
    }

    #[test]
    fn an_alias_bomb_is_refused_at_its_place() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&doc).unwrap_err();
        assert!(
            err.message.contains("aliases are expanded"),
            "{}",
            err.message
        );
        assert!(err.span.line > 4, "{}", err.span.line);
    }

    #[test]
    fn a_few_aliases_are_fine() {
        let root = parse("a: &x {k: v}\nb: *x\nc: *x\n").unwrap();
        assert!(
            root.canonical().contains(r#""c":{"k":"v"}"#),
            "{}",
            root.canonical()
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let flow = "[".repeat(250) + &"]".repeat(250);
        let err = parse(&flow).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{}", err.message);
        let block = "- ".repeat(100_000) + "x\n";
        let err = parse(&block).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{}", err.message);
    }
}
