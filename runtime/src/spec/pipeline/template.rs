//! CloudFormation templates: the `AWS::CodePipeline::Pipeline` resources, with their intrinsic
//! functions resolved as CloudFormation would at stack creation, as far as can be known without
//! AWS.
//!
//! Parameters take `--parameter` values, else their `Default`; pseudo parameters take local
//! stand-ins (the region from `AWS_REGION`, the account `000000000000`, the stack named after the
//! file); a `Ref` to another resource gives its physical name (its literal `Name`, `ProjectName`…
//! property, else its logical id, as CloudFormation names resources it is not told to name).
//! `Fn::GetAtt`, `Fn::ImportValue` and the like stay unresolved, which is an error only where kiln
//! reads the value.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;

use super::value::{Kind, Value};
use crate::spec::diagnostic::Span;
use crate::spec::read::Reader;
use crate::spec::yaml::{Node, NodeKind};

/// How deeply intrinsic functions may nest (and conditions refer to conditions).
const MAX_DEPTH: usize = 64;

/// The resource type of a pipeline.
pub const PIPELINE_TYPE: &str = "AWS::CodePipeline::Pipeline";

/// The property that holds a resource's physical name, by resource type, when the template gives
/// one: what `Ref` returns for these types.
const NAME_PROPERTY: &[(&str, &str)] = &[
    ("AWS::CodeBuild::Project", "Name"),
    ("AWS::CodeCommit::Repository", "RepositoryName"),
    ("AWS::CodeDeploy::Application", "ApplicationName"),
    ("AWS::CodeDeploy::DeploymentGroup", "DeploymentGroupName"),
    ("AWS::CodePipeline::Pipeline", "Name"),
    ("AWS::ECR::Repository", "RepositoryName"),
    ("AWS::S3::Bucket", "BucketName"),
    ("AWS::IAM::Role", "RoleName"),
];

/// For other types, the first of these properties the resource has.
const NAME_PROPERTIES: &[&str] = &[
    "Name",
    "ProjectName",
    "BucketName",
    "RepositoryName",
    "DeploymentGroupName",
    "ApplicationName",
];

/// Whether the root of a document is a CloudFormation template holding a pipeline.
pub fn holds_pipeline(root: &Node) -> bool {
    let Some(resources) = entry(root, "Resources") else {
        return false;
    };
    let NodeKind::Map(entries) = &resources.kind else {
        return false;
    };
    entries
        .iter()
        .any(|(_, r)| entry(r, "Type").and_then(Node::as_str) == Some(PIPELINE_TYPE))
}

/// The value under `key` of a mapping node.
pub fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// One pipeline resource of a template: its logical id and its properties, resolved.
pub struct PipelineResource {
    pub logical_id: String,
    pub properties: Value,
}

/// A template being resolved.
pub struct Template<'a> {
    given: &'a [(String, String)],
    mappings: Option<&'a Node>,
    conditions: Option<&'a Node>,
    resources: Vec<(&'a str, Span, &'a Node)>,
    /// Parameters and resources by name (a template may hold many).
    parameter_index: HashMap<&'a str, &'a Node>,
    resource_index: HashMap<&'a str, &'a Node>,
    /// Resources' physical names worked out so far.
    physical_names: HashMap<String, Value>,
    stack_name: String,
    region: String,
    /// Conditions worked out so far.
    decided: BTreeMap<String, Result<bool, Value>>,
    /// Conditions and resources being worked out, to stop at a cycle.
    underway: Vec<String>,
}

impl<'a> Template<'a> {
    /// Reads the template's sections; `stack_name` stands for `AWS::StackName`.
    pub fn new(
        r: &mut Reader,
        root: &'a Node,
        given: &'a [(String, String)],
        stack_name: String,
    ) -> Template<'a> {
        // Read here rather than with `Reader::map`, whose check for a key given twice compares
        // each key with every other: a template may hold thousands of resources.
        let section = |r: &mut Reader, name: &str| -> Vec<(&'a str, Span, &'a Node)> {
            let Some(node) = entry(root, name) else {
                return Vec::new();
            };
            let NodeKind::Map(entries) = &node.kind else {
                if !matches!(node.kind, NodeKind::Null) {
                    r.error(
                        node.span,
                        format!("expected a mapping for {name}, found {}", node.describe()),
                    );
                }
                return Vec::new();
            };
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                match key.as_str() {
                    Some(k) if seen.insert(k) => out.push((k, key.span, value)),
                    Some(k) => r.error(key.span, format!("`{k}` is given twice in {name}")),
                    None => r.error(
                        key.span,
                        format!("expected a name in {name}, found {}", key.describe()),
                    ),
                }
            }
            out
        };
        let parameters = section(r, "Parameters");
        let resources = section(r, "Resources");
        for (name, _) in given {
            if !parameters.iter().any(|(p, _, _)| p == name) {
                let span = entry(root, "Parameters").map_or(root.span, |p| p.span);
                r.warning(
                    span,
                    format!("`--parameter {name}` is given but the template declares no parameter `{name}`; it is not used"),
                );
            }
        }
        if let Some(transform) = entry(root, "Transform") {
            r.warning(
                transform.span,
                "kiln does not apply transforms (macros); the template is read as written",
            );
        }
        Template {
            parameter_index: parameters.iter().map(|(k, _, n)| (*k, *n)).collect(),
            resource_index: resources.iter().map(|(k, _, n)| (*k, *n)).collect(),
            physical_names: HashMap::new(),
            given,
            mappings: entry(root, "Mappings"),
            conditions: entry(root, "Conditions"),
            resources,
            stack_name,
            region: region(),
            decided: BTreeMap::new(),
            underway: Vec::new(),
        }
    }

    /// The pipeline resources, their properties resolved. A resource whose `Condition` is false is
    /// left out, as CloudFormation would not create it.
    pub fn pipelines(&mut self, r: &mut Reader) -> Vec<PipelineResource> {
        let mut out = Vec::new();
        let mut left_out = false;
        let resources = self.resources.clone();
        for (id, span, resource) in resources {
            if entry(resource, "Type").and_then(Node::as_str) != Some(PIPELINE_TYPE) {
                continue;
            }
            if let Some(condition) = entry(resource, "Condition")
                && let Some(name) = condition.as_str()
            {
                match self.condition(name, condition.span, 0) {
                        Ok(false) => {
                            left_out = true;
                            r.warning(
                                condition.span,
                                format!("the condition `{name}` is false, so the pipeline `{id}` is not created"),
                            );
                            continue;
                        }
                        Ok(true) => {}
                        Err(_) => r.warning(
                            condition.span,
                            format!("the condition `{name}` cannot be worked out here; the pipeline `{id}` is read as if it held"),
                        ),
                    }
            }
            let properties = match entry(resource, "Properties") {
                Some(p) => self.resolve(p, 0),
                None => {
                    r.error_help(
                        span,
                        format!("the pipeline resource `{id}` has no Properties"),
                        "give it `Properties:` with `Stages` (and `RoleArn`), as AWS::CodePipeline::Pipeline requires",
                    );
                    continue;
                }
            };
            out.push(PipelineResource {
                logical_id: id.to_string(),
                properties,
            });
        }
        if out.is_empty() && !left_out {
            let span = self
                .resources
                .first()
                .map(|(_, s, _)| *s)
                .unwrap_or_default();
            r.error_help(
                span,
                format!("this template has no {PIPELINE_TYPE} resource"),
                "kiln reads the pipelines of a template; give `kiln validate` the file that declares one",
            );
        }
        out
    }

    /// A node with its intrinsic functions resolved.
    pub fn resolve(&mut self, node: &Node, depth: usize) -> Value {
        self.resolve_as(node, node.tag.as_deref(), depth)
    }

    fn resolve_as(&mut self, node: &Node, tag: Option<&str>, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::unresolved(
                node.span,
                format!("intrinsic functions nest deeper than {MAX_DEPTH} levels here"),
                None,
            );
        }
        if let Some(name) = tag.and_then(short_form) {
            return self.call(&name, node, None, node.span, depth + 1);
        }
        match &node.kind {
            NodeKind::Null => Value::new(Kind::Null, node.span),
            NodeKind::Scalar { text, .. } => Value::str(text.clone(), node.span),
            NodeKind::Seq(items) => {
                let items = items
                    .iter()
                    .map(|i| self.resolve(i, depth + 1))
                    .filter(|v| !matches!(v.kind, Kind::NoValue))
                    .collect();
                Value::new(Kind::Seq(items), node.span)
            }
            NodeKind::Map(entries) => {
                if let [(key, arg)] = entries.as_slice()
                    && let Some(name) = key.as_str().filter(|k| is_long_form(k))
                {
                    return self.call(name, arg, arg.tag.as_deref(), key.span, depth + 1);
                }
                let entries = entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let value = self.resolve(v, depth + 1);
                        if matches!(value.kind, Kind::NoValue) {
                            return None;
                        }
                        Some((k.as_str()?.to_string(), k.span, value))
                    })
                    .collect();
                Value::new(Kind::Map(entries), node.span)
            }
        }
    }

    /// Calls the intrinsic `name` on `arg` (read with the tag `tag`: a short form's own tag is
    /// not the argument's), written at `span`.
    fn call(
        &mut self,
        name: &str,
        arg: &Node,
        tag: Option<&str>,
        span: Span,
        depth: usize,
    ) -> Value {
        match name {
            "Fn::If" => return self.if_(arg, tag, span, depth),
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" | "Condition" => {
                return match self.boolean_call(name, arg, tag, span, depth) {
                    Ok(b) => Value::str(b.to_string(), span),
                    Err(e) => e,
                };
            }
            _ => {}
        }
        let value = self.resolve_as(arg, tag, depth + 1);
        let bad = |what: &str| {
            Value::unresolved(
                span,
                format!("`{name}` takes {what}, found {}", value.describe()),
                None,
            )
        };
        if let Some(part) = value.unresolved_part()
            && name != "Fn::Sub"
        {
            return part.clone();
        }
        match name {
            "Ref" => match value.as_str() {
                Some(target) => self.reference(target, span, depth),
                None => bad("a name"),
            },
            "Fn::Sub" => match &value.kind {
                Kind::Str(text) => self.sub(text, &[], span, depth),
                Kind::Seq(items) => match items.as_slice() {
                    [text, vars] => match (&text.kind, &vars.kind) {
                        (Kind::Str(text), Kind::Map(vars)) => self.sub(text, vars, span, depth),
                        _ => bad("a string or [string, {variables}]"),
                    },
                    [text] => match &text.kind {
                        Kind::Str(text) => self.sub(text, &[], span, depth),
                        _ => bad("a string or [string, {variables}]"),
                    },
                    _ => bad("a string or [string, {variables}]"),
                },
                _ => bad("a string or [string, {variables}]"),
            },
            "Fn::Join" => match &value.kind {
                Kind::Seq(items) => match items.as_slice() {
                    [delimiter, list] => match (&delimiter.kind, &list.kind) {
                        (Kind::Str(d), Kind::Seq(parts)) => {
                            let mut texts = Vec::with_capacity(parts.len());
                            for p in parts {
                                match &p.kind {
                                    Kind::Str(s) => texts.push(s.as_str()),
                                    _ => return bad("[delimiter, [strings]]"),
                                }
                            }
                            Value::str(texts.join(d), span)
                        }
                        _ => bad("[delimiter, [strings]]"),
                    },
                    _ => bad("[delimiter, [strings]]"),
                },
                _ => bad("[delimiter, [strings]]"),
            },
            "Fn::Select" => match &value.kind {
                Kind::Seq(items) => match items.as_slice() {
                    [index, list] => match (index.as_str().map(str::parse::<usize>), &list.kind) {
                        (Some(Ok(i)), Kind::Seq(parts)) => match parts.get(i) {
                            Some(v) => Value::new(v.kind.clone(), span),
                            None => Value::unresolved(
                                span,
                                format!(
                                    "`Fn::Select` index {i} is past the end of a list of {}",
                                    parts.len()
                                ),
                                None,
                            ),
                        },
                        _ => bad("[index, list]"),
                    },
                    _ => bad("[index, list]"),
                },
                _ => bad("[index, list]"),
            },
            "Fn::Split" => match &value.kind {
                Kind::Seq(items) => match items.as_slice() {
                    [delimiter, text] => match (delimiter.as_str(), text.as_str()) {
                        (Some(d), Some(t)) if !d.is_empty() => Value::new(
                            Kind::Seq(t.split(d).map(|s| Value::str(s, span)).collect()),
                            span,
                        ),
                        _ => bad("[delimiter, string]"),
                    },
                    _ => bad("[delimiter, string]"),
                },
                _ => bad("[delimiter, string]"),
            },
            "Fn::FindInMap" => self.find_in_map(&value, span, depth),
            "Fn::Base64" => match value.as_str() {
                Some(text) => {
                    Value::str(base64::engine::general_purpose::STANDARD.encode(text), span)
                }
                None => bad("a string"),
            },
            "Fn::ToJsonString" => match value.to_json() {
                Some(json) => Value::str(json.to_string(), span),
                None => bad("a value"),
            },
            "Fn::Length" => match &value.kind {
                Kind::Seq(items) => Value::str(items.len().to_string(), span),
                _ => bad("a list"),
            },
            "Fn::GetAtt" => {
                let target = match &value.kind {
                    Kind::Str(s) => s.clone(),
                    Kind::Seq(parts) => parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("."),
                    _ => String::new(),
                };
                self.attribute(&target, span, depth)
            }
            "Fn::ImportValue" => Value::unresolved(
                span,
                format!(
                    "`Fn::ImportValue {}` reads another stack's export, which kiln cannot see",
                    value.as_str().unwrap_or("…")
                ),
                Some("write the value itself here".into()),
            ),
            _ => Value::unresolved(
                span,
                format!("kiln cannot resolve `{name}`"),
                Some("write the value itself here".into()),
            ),
        }
    }

    /// `Ref`: a parameter, a pseudo parameter or a resource.
    fn reference(&mut self, target: &str, span: Span, depth: usize) -> Value {
        match target {
            "AWS::Region" => return Value::str(self.region.clone(), span),
            "AWS::AccountId" => return Value::str("000000000000", span),
            "AWS::StackName" => return Value::str(self.stack_name.clone(), span),
            "AWS::StackId" => {
                return Value::str(
                    format!(
                        "arn:aws:cloudformation:{}:000000000000:stack/{}/00000000-0000-0000-0000-000000000000",
                        self.region, self.stack_name
                    ),
                    span,
                );
            }
            "AWS::Partition" => return Value::str("aws", span),
            "AWS::URLSuffix" => return Value::str("amazonaws.com", span),
            "AWS::NoValue" => return Value::new(Kind::NoValue, span),
            "AWS::NotificationARNs" => return Value::new(Kind::Seq(Vec::new()), span),
            _ => {}
        }
        if let Some(parameter) = self.parameter_index.get(target).copied() {
            let given = self
                .given
                .iter()
                .rev()
                .find(|(k, _)| k == target)
                .map(|(_, v)| Value::str(v.clone(), span));
            let value = match given {
                Some(v) => v,
                None => match entry(parameter, "Default") {
                    Some(default) => {
                        let v = self.resolve(default, depth + 1);
                        Value::new(v.kind, span)
                    }
                    None => {
                        return Value::unresolved(
                            span,
                            format!("the parameter `{target}` has no value: it has no Default"),
                            Some(format!("give --parameter {target}=VALUE")),
                        );
                    }
                },
            };
            let list = entry(parameter, "Type")
                .and_then(Node::as_str)
                .is_some_and(|t| t == "CommaDelimitedList" || t.starts_with("List<"));
            return match (&value.kind, list) {
                (Kind::Str(s), true) => Value::new(
                    Kind::Seq(s.split(',').map(|p| Value::str(p.trim(), span)).collect()),
                    span,
                ),
                _ => value,
            };
        }
        if let Some(resource) = self.resource_index.get(target).copied() {
            if let Some(known) = self.physical_names.get(target) {
                return Value::new(known.kind.clone(), span);
            }
            let kind = entry(resource, "Type").and_then(Node::as_str).unwrap_or("");
            let named = entry(resource, "Properties").and_then(|p| {
                match NAME_PROPERTY.iter().find(|(t, _)| *t == kind) {
                    Some((_, property)) => entry(p, property),
                    None => NAME_PROPERTIES.iter().find_map(|n| entry(p, n)),
                }
            });
            let Some(name) = named else {
                return Value::str(target, span);
            };
            if self.underway.iter().any(|u| u == target) {
                return Value::unresolved(
                    span,
                    format!("the name of the resource `{target}` refers back to itself"),
                    None,
                );
            }
            self.underway.push(target.to_string());
            let value = self.resolve(name, depth + 1);
            self.underway.pop();
            let value = match value.kind {
                Kind::Str(s) => Value::str(s, span),
                Kind::NoValue => Value::str(target, span),
                _ => value,
            };
            self.physical_names
                .insert(target.to_string(), value.clone());
            return value;
        }
        Value::unresolved(
            span,
            format!(
                "`Ref {target}` names neither a parameter, a pseudo parameter nor a resource of this template"
            ),
            Some(format!(
                "declare `{target}` under Parameters, or give its value here"
            )),
        )
    }

    /// `Fn::GetAtt Resource.Attribute`: a resource's `Name` is its physical name, as `Ref` gives
    /// it (a CodeCommit repository's, a CodeBuild project's); any other attribute is only known
    /// once AWS has created the resource.
    fn attribute(&mut self, target: &str, span: Span, depth: usize) -> Value {
        if let Some((resource, "Name")) = target.split_once('.')
            && self.resource_index.contains_key(resource)
        {
            return self.reference(resource, span, depth + 1);
        }
        Value::unresolved(
            span,
            format!("`Fn::GetAtt {target}` is only known once AWS has created the resource"),
            Some("write the value itself here".into()),
        )
    }

    /// `Fn::Sub`: `${Name}`, `${Resource.Attribute}`, `${!Literal}`.
    fn sub(
        &mut self,
        text: &str,
        vars: &[(String, Span, Value)],
        span: Span,
        depth: usize,
    ) -> Value {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let Some(close) = after.find('}') else {
                return Value::unresolved(
                    span,
                    "`Fn::Sub` has a `${` that is never closed",
                    Some("close it with `}`, or write `${!` for a literal `${`".into()),
                );
            };
            let name = after[..close].trim();
            rest = &after[close + 1..];
            let value = match vars.iter().find(|(k, _, _)| k == name) {
                Some((_, _, v)) => v.clone(),
                None if name.contains('.') && !name.starts_with("AWS::") => {
                    self.attribute(name, span, depth + 1)
                }
                None => self.reference(name, span, depth + 1),
            };
            match value.kind {
                Kind::Str(s) => out.push_str(&s),
                Kind::Unresolved { .. } => return value,
                _ => {
                    return Value::unresolved(
                        span,
                        format!(
                            "`${{{name}}}` in `Fn::Sub` is {}, not a string",
                            value.describe()
                        ),
                        None,
                    );
                }
            }
        }
        out.push_str(rest);
        Value::str(out, span)
    }

    /// `Fn::FindInMap [map, top-level key, second-level key]`, with the language extensions'
    /// optional `{DefaultValue: …}`.
    fn find_in_map(&mut self, args: &Value, span: Span, depth: usize) -> Value {
        let Kind::Seq(items) = &args.kind else {
            return Value::unresolved(span, "`Fn::FindInMap` takes [map, key, key]", None);
        };
        let keys: Vec<&str> = items.iter().take(3).filter_map(Value::as_str).collect();
        let [map, top, second] = keys.as_slice() else {
            return Value::unresolved(span, "`Fn::FindInMap` takes [map, key, key]", None);
        };
        let found = self
            .mappings
            .and_then(|m| entry(m, map))
            .and_then(|m| entry(m, top))
            .and_then(|m| entry(m, second));
        match found {
            Some(node) => {
                let v = self.resolve(node, depth + 1);
                Value::new(v.kind, span)
            }
            None => match items.get(3).and_then(|d| d.get("DefaultValue")) {
                Some(default) => Value::new(default.kind.clone(), span),
                None => Value::unresolved(
                    span,
                    format!("the Mappings have no `{map}` › `{top}` › `{second}`"),
                    Some("add it under Mappings".into()),
                ),
            },
        }
    }

    /// `Fn::If [condition, then, else]`: only the branch taken is resolved.
    fn if_(&mut self, arg: &Node, tag: Option<&str>, span: Span, depth: usize) -> Value {
        let items = match (&arg.kind, tag) {
            (NodeKind::Seq(items), None) if items.len() == 3 => items,
            _ => {
                return Value::unresolved(span, "`Fn::If` takes [condition, value, value]", None);
            }
        };
        let Some(name) = items[0].as_str() else {
            return Value::unresolved(items[0].span, "`Fn::If` names a condition first", None);
        };
        match self.condition(name, items[0].span, depth + 1) {
            Ok(true) => self.resolve(&items[1], depth + 1),
            Ok(false) => self.resolve(&items[2], depth + 1),
            Err(e) => e,
        }
    }

    /// The named condition of the `Conditions` section.
    fn condition(&mut self, name: &str, span: Span, depth: usize) -> Result<bool, Value> {
        if let Some(known) = self.decided.get(name) {
            return known.clone();
        }
        let Some(node) = self.conditions.and_then(|c| entry(c, name)) else {
            return Err(Value::unresolved(
                span,
                format!("there is no condition `{name}` under Conditions"),
                None,
            ));
        };
        let key = format!("condition {name}");
        if self.underway.contains(&key) {
            return Err(Value::unresolved(
                span,
                format!("the condition `{name}` depends on itself"),
                None,
            ));
        }
        self.underway.push(key);
        let result = self.boolean(node, depth + 1);
        self.underway.pop();
        self.decided.insert(name.to_string(), result.clone());
        result
    }

    /// A condition expression.
    fn boolean(&mut self, node: &Node, depth: usize) -> Result<bool, Value> {
        if depth > MAX_DEPTH {
            return Err(Value::unresolved(
                node.span,
                format!("conditions nest deeper than {MAX_DEPTH} levels here"),
                None,
            ));
        }
        if let Some(name) = node.tag.as_deref().and_then(short_form) {
            return self.boolean_call(&name, node, None, node.span, depth + 1);
        }
        if let NodeKind::Map(entries) = &node.kind
            && let [(key, arg)] = entries.as_slice()
            && let Some(name) = key
                .as_str()
                .filter(|k| is_long_form(k) || *k == "Condition")
        {
            return self.boolean_call(name, arg, arg.tag.as_deref(), key.span, depth + 1);
        }
        let value = self.resolve(node, depth + 1);
        truth(&value)
    }

    fn boolean_call(
        &mut self,
        name: &str,
        arg: &Node,
        tag: Option<&str>,
        span: Span,
        depth: usize,
    ) -> Result<bool, Value> {
        let operands = |n: usize| -> Result<&Vec<Node>, Value> {
            match (&arg.kind, tag) {
                (NodeKind::Seq(items), None) if n == 0 || items.len() == n => Ok(items),
                _ => Err(Value::unresolved(
                    span,
                    format!(
                        "`{name}` takes a list of {}",
                        if n == 0 {
                            "conditions".to_string()
                        } else {
                            n.to_string()
                        }
                    ),
                    None,
                )),
            }
        };
        match name {
            "Fn::Equals" => {
                let items = operands(2)?;
                let a = self.resolve(&items[0], depth + 1);
                let b = self.resolve(&items[1], depth + 1);
                if let Some(u) = a.unresolved_part().or(b.unresolved_part()) {
                    return Err(u.clone());
                }
                Ok(a.to_json() == b.to_json())
            }
            "Fn::Not" => {
                let items = operands(1)?;
                Ok(!self.boolean(&items[0], depth + 1)?)
            }
            "Fn::And" | "Fn::Or" => {
                let items = operands(0)?;
                let mut results = Vec::with_capacity(items.len());
                for item in items {
                    results.push(self.boolean(item, depth + 1)?);
                }
                Ok(if name == "Fn::And" {
                    results.iter().all(|b| *b)
                } else {
                    results.iter().any(|b| *b)
                })
            }
            "Condition" => match arg.as_str() {
                Some(c) => self.condition(c, arg.span, depth + 1),
                None => Err(Value::unresolved(
                    span,
                    "`Condition` names a condition",
                    None,
                )),
            },
            _ => {
                let value = self.call(name, arg, tag, span, depth + 1);
                truth(&value)
            }
        }
    }
}

/// A resolved value read as a condition.
fn truth(value: &Value) -> Result<bool, Value> {
    match &value.kind {
        Kind::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Kind::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Kind::Unresolved { .. } => Err(value.clone()),
        _ => Err(Value::unresolved(
            value.span,
            format!(
                "a condition must be true or false, found {}",
                value.describe()
            ),
            None,
        )),
    }
}

/// The long-form name of a short-form tag: `!Ref` is `Ref`, `!Sub` is `Fn::Sub`.
fn short_form(tag: &str) -> Option<String> {
    let name = tag.strip_prefix('!')?;
    if name.is_empty() || name.contains('!') {
        return None;
    }
    Some(match name {
        "Ref" | "Condition" => name.to_string(),
        _ => format!("Fn::{name}"),
    })
}

fn is_long_form(key: &str) -> bool {
    key == "Ref" || key.starts_with("Fn::")
}

/// `AWS::Region` here: the region the AWS tools would use, else us-east-1.
fn region() -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".into())
}

/// `AWS::Region` as a template resolves it.
#[cfg(test)]
pub fn local_region() -> String {
    region()
}
