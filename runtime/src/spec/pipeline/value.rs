//! A pipeline file's content as plain values: strings, lists and mappings with their places, and,
//! in a CloudFormation template, what an intrinsic function could not be resolved to.
//!
//! An unresolvable value is kept, not reported, because it only matters where kiln reads it: a
//! `!GetAtt Role.Arn` in `RoleArn` is normal, the same in a `ProjectName` is an error.

use crate::spec::diagnostic::Span;
use crate::spec::yaml::{Node, NodeKind};

/// One value and where it was written.
#[derive(Debug, Clone)]
pub struct Value {
    pub kind: Kind,
    pub span: Span,
}

/// What a value holds.
#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    Str(String),
    Seq(Vec<Value>),
    /// Entries in the order written, each key with its place.
    Map(Vec<(String, Span, Value)>),
    /// What kiln could not work out (an `Fn::GetAtt`, a parameter without a value), and why.
    Unresolved {
        message: String,
        help: Option<String>,
    },
    /// `AWS::NoValue`: the key or item holding it is dropped.
    NoValue,
}

impl Value {
    pub fn new(kind: Kind, span: Span) -> Value {
        Value { kind, span }
    }

    pub fn str(text: impl Into<String>, span: Span) -> Value {
        Value::new(Kind::Str(text.into()), span)
    }

    pub fn unresolved(span: Span, message: impl Into<String>, help: Option<String>) -> Value {
        Value::new(
            Kind::Unresolved {
                message: message.into(),
                help,
            },
            span,
        )
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entry of a mapping under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// What the value is, in the words an error message uses.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Null | Kind::NoValue => "nothing (null)",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Unresolved { .. } => "a value kiln cannot resolve",
        }
    }

    /// The first unresolved value inside this one, if any.
    pub fn unresolved_part(&self) -> Option<&Value> {
        match &self.kind {
            Kind::Unresolved { .. } => Some(self),
            Kind::Seq(items) => items.iter().find_map(Value::unresolved_part),
            Kind::Map(entries) => entries.iter().find_map(|(_, _, v)| v.unresolved_part()),
            _ => None,
        }
    }

    /// The value as JSON; `None` when part of it is unresolved.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        Some(match &self.kind {
            Kind::Null | Kind::NoValue => serde_json::Value::Null,
            Kind::Str(s) => serde_json::Value::String(s.clone()),
            Kind::Seq(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(Value::to_json)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Kind::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| Some((k.clone(), v.to_json()?)))
                    .collect::<Option<serde_json::Map<_, _>>>()?,
            ),
            Kind::Unresolved { .. } => return None,
        })
    }
}

/// A YAML node as a value, tags ignored (a get-pipeline file has no intrinsics). Keys that are not
/// scalars are left out: the reader of the mapping has no name to look them up by.
pub fn plain(node: &Node) -> Value {
    let kind = match &node.kind {
        NodeKind::Null => Kind::Null,
        NodeKind::Scalar { text, .. } => Kind::Str(text.clone()),
        NodeKind::Seq(items) => Kind::Seq(items.iter().map(plain).collect()),
        NodeKind::Map(entries) => Kind::Map(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), k.span, plain(v))))
                .collect(),
        ),
    };
    Value::new(kind, node.span)
}
