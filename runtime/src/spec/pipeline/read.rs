//! Reading a pipeline's values into the model, in either spelling: get-pipeline's camelCase or a
//! CloudFormation resource's PascalCase. Each part read keeps its place, for the checks.

use std::collections::BTreeMap;

use super::value::{Kind, Value};
use super::{
    Action, ActionTypeId, ArtifactName, ArtifactStore, ExecutionMode, Filter, GitConfiguration,
    GitPushFilter, Pipeline, Stage, Trigger, Variable,
};
use crate::spec::diagnostic::Span;
use crate::spec::read::Reader;

/// How the file spells its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// get-pipeline / create-pipeline JSON: `stages`, `actionTypeId`.
    Json,
    /// A CloudFormation resource: `Stages`, `ActionTypeId`.
    Template,
}

/// Where the parts of a pipeline were written (a part not written is at the pipeline itself).
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub span: Span,
    pub name: Span,
    pub execution_mode: Span,
    pub pipeline_type: Span,
    pub variables: Vec<Span>,
    pub triggers: Vec<TriggerPlaces>,
    pub stages: Vec<StagePlaces>,
}

/// Where a trigger's parts were written.
#[derive(Debug, Clone, Default)]
pub struct TriggerPlaces {
    pub provider_type: Span,
    pub source_action_name: Span,
}

/// Where a stage's parts were written.
#[derive(Debug, Clone, Default)]
pub struct StagePlaces {
    pub name: Span,
    pub actions: Vec<ActionPlaces>,
}

/// Where an action's parts were written: the action itself, its name, its provider, its
/// runOrder, each configuration value, each input and output artifact name, its namespace (a part
/// not written is at the action's name).
#[derive(Debug, Clone, Default)]
pub struct ActionPlaces {
    pub span: Span,
    pub name: Span,
    pub provider: Span,
    pub run_order: Span,
    pub configuration: BTreeMap<String, Span>,
    pub inputs: Vec<Span>,
    pub outputs: Vec<Span>,
    pub namespace: Span,
}

/// Configuration keys kiln never reads (credentials and AWS-side wiring): a template may leave
/// them to a parameter without a default (a `NoEcho` token) and still be checked.
const UNUSED_CONFIGURATION: &[&str] = &[
    "OAuthToken",
    "ConnectionArn",
    "NotificationArn",
    "KMSEncryptionKeyARN",
];

/// A mapping's entries under their camelCase names.
struct Fields<'v> {
    span: Span,
    entries: Vec<(String, Span, &'v Value)>,
}

impl<'v> Fields<'v> {
    fn get(&self, camel: &str) -> Option<&'v Value> {
        self.entries
            .iter()
            .find(|(k, _, v)| k == camel && !matches!(v.kind, Kind::NoValue))
            .map(|(_, _, v)| *v)
    }

    fn key_span(&self, camel: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == camel)
            .map(|(_, s, _)| *s)
    }
}

/// Reads values into the model, reporting to a [`Reader`].
pub struct ModelReader<'r> {
    pub r: &'r mut Reader,
    pub style: Style,
}

const PIPELINE_KEYS: &[&str] = &[
    "name",
    "roleArn",
    "artifactStore",
    "artifactStores",
    "stages",
    "version",
    "variables",
    "triggers",
    "executionMode",
    "pipelineType",
    "restartExecutionOnUpdate",
    "disableInboundStageTransitions",
    "tags",
];
const STAGE_KEYS: &[&str] = &[
    "name",
    "actions",
    "blockers",
    "onFailure",
    "onSuccess",
    "beforeEntry",
];
const ACTION_KEYS: &[&str] = &[
    "name",
    "actionTypeId",
    "runOrder",
    "configuration",
    "inputArtifacts",
    "outputArtifacts",
    "namespace",
    "region",
    "roleArn",
    "timeoutInMinutes",
    "commands",
    "outputVariables",
    "environmentVariables",
];

impl ModelReader<'_> {
    /// A camelCase key as this file spells it.
    fn key(&self, camel: &str) -> String {
        match self.style {
            Style::Json => camel.to_string(),
            Style::Template => {
                let mut chars = camel.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        }
    }

    /// Reports a value that is unresolved, or not what was expected; true when it was reported.
    fn unusable(&mut self, v: &Value, what: &str, expected: &str) -> bool {
        match &v.kind {
            Kind::Unresolved { message, help } => {
                let message = format!("{what}: {message}");
                match help {
                    Some(h) => self.r.error_help(v.span, message, h.clone()),
                    None => self.r.error(v.span, message),
                }
            }
            _ => self.r.error(
                v.span,
                format!("expected {expected} for {what}, found {}", v.describe()),
            ),
        }
        true
    }

    /// A mapping's fields: unknown keys are warned about (AWS adds keys; kiln may not know a new
    /// one), and `ignored` keys change what the pipeline does in AWS, so kiln says it ignores them.
    fn fields<'v>(
        &mut self,
        v: &'v Value,
        what: &str,
        known: &[&str],
        ignored: &[(&str, &str)],
    ) -> Option<Fields<'v>> {
        let Kind::Map(entries) = &v.kind else {
            if !matches!(v.kind, Kind::Null) {
                self.unusable(v, what, "a mapping");
            } else {
                self.r.error(
                    v.span,
                    format!("expected a mapping for {what}, found nothing"),
                );
            }
            return None;
        };
        let spelled: Vec<String> = known.iter().map(|k| self.key(k)).collect();
        let mut out = Fields {
            span: v.span,
            entries: Vec::with_capacity(entries.len()),
        };
        let mut seen = std::collections::HashSet::new();
        for (key, span, value) in entries {
            if !seen.insert(key.as_str()) {
                self.r
                    .error(*span, format!("`{key}` is given twice in {what}"));
            }
            match spelled.iter().position(|s| s == key) {
                Some(i) => {
                    let camel = known[i].to_string();
                    if let Some((_, why)) = ignored.iter().find(|(k, _)| *k == known[i]) {
                        self.r.warning(*span, format!("`{key}`: {why}"));
                    }
                    out.entries.push((camel, *span, value));
                }
                None => {
                    let names: Vec<&str> = spelled.iter().map(String::as_str).collect();
                    self.r.ignored_key(key, *span, what, &names);
                }
            }
        }
        Some(out)
    }

    /// A string field.
    fn text(&mut self, v: &Value, what: &str) -> Option<String> {
        match &v.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Null | Kind::NoValue => {
                self.r.error(
                    v.span,
                    format!("expected a string for {what}, found nothing"),
                );
                None
            }
            _ => {
                self.unusable(v, what, "a string");
                None
            }
        }
    }

    /// A required string field of `f`, named `camel`.
    fn required(&mut self, f: &Fields, camel: &str, what: &str) -> (String, Span) {
        match f.get(camel) {
            Some(v) => (self.text(v, what).unwrap_or_default(), v.span),
            None => {
                let key = self.key(camel);
                self.r
                    .error(f.span, format!("{what} is missing: add `{key}`"));
                (String::new(), f.span)
            }
        }
    }

    /// An optional string field of `f`.
    fn optional(&mut self, f: &Fields, camel: &str, what: &str) -> Option<(String, Span)> {
        let v = f.get(camel)?;
        if matches!(v.kind, Kind::Null) {
            return None;
        }
        Some((self.text(v, what)?, v.span))
    }

    /// A list field (absent or null: empty).
    fn list<'v>(&mut self, v: Option<&'v Value>, what: &str) -> &'v [Value] {
        match v.map(|v| (v, &v.kind)) {
            None | Some((_, Kind::Null)) => &[],
            Some((_, Kind::Seq(items))) => items,
            Some((v, _)) => {
                self.unusable(v, what, "a list");
                &[]
            }
        }
    }

    /// A pipeline object (the inside of get-pipeline's `pipeline`, or a resource's
    /// `Properties`); `default_name` is a resource's logical id.
    pub fn pipeline(&mut self, v: &Value, default_name: Option<&str>) -> (Pipeline, Places) {
        let mut places = Places {
            span: v.span,
            name: v.span,
            ..Places::default()
        };
        let mut pipeline = Pipeline {
            name: default_name.unwrap_or_default().to_string(),
            pipeline_type: None,
            execution_mode: ExecutionMode::default(),
            artifact_store: None,
            variables: Vec::new(),
            triggers: Vec::new(),
            stages: Vec::new(),
        };
        let ignored: &[(&str, &str)] = &[(
            "disableInboundStageTransitions",
            "kiln does not disable stage transitions; every stage runs in turn",
        )];
        let Some(f) = self.fields(v, "the pipeline", PIPELINE_KEYS, ignored) else {
            return (pipeline, places);
        };
        match default_name {
            Some(_) => {
                if let Some((name, span)) = self.optional(&f, "name", "the pipeline's name") {
                    (pipeline.name, places.name) = (name, span);
                }
            }
            None => {
                (pipeline.name, places.name) = self.required(&f, "name", "the pipeline's name");
            }
        }
        if let Some((t, span)) = self.optional(&f, "pipelineType", "pipelineType") {
            places.pipeline_type = span;
            if t != "V1" && t != "V2" {
                self.r.error_help(
                    span,
                    format!("unknown pipelineType `{t}`"),
                    "a pipeline is of type V1 or V2",
                );
            }
            pipeline.pipeline_type = Some(t);
        }
        if let Some((mode, span)) = self.optional(&f, "executionMode", "executionMode") {
            places.execution_mode = span;
            pipeline.execution_mode = match mode.as_str() {
                "SUPERSEDED" => ExecutionMode::Superseded,
                "QUEUED" => ExecutionMode::Queued,
                "PARALLEL" => ExecutionMode::Parallel,
                _ => {
                    self.r.error_help(
                        span,
                        format!("unknown executionMode `{mode}`"),
                        "the execution modes are SUPERSEDED (the default), QUEUED and PARALLEL",
                    );
                    ExecutionMode::default()
                }
            };
        }
        pipeline.artifact_store = self.artifact_store(&f);
        for item in self.list(f.get("variables"), "variables") {
            let Some(vf) = self.fields(
                item,
                "a pipeline variable",
                &["name", "defaultValue", "description"],
                &[],
            ) else {
                continue;
            };
            let (name, span) = self.required(&vf, "name", "the variable's name");
            places.variables.push(span);
            pipeline.variables.push(Variable {
                name,
                default_value: self
                    .optional(&vf, "defaultValue", "the variable's defaultValue")
                    .map(|(t, _)| t),
                description: vf
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        for item in self.list(f.get("triggers"), "triggers") {
            if let Some((trigger, tp)) = self.trigger(item) {
                pipeline.triggers.push(trigger);
                places.triggers.push(tp);
            }
        }
        match f.get("stages") {
            Some(stages) => {
                for item in self.list(Some(stages), "stages") {
                    if let Some((stage, sp)) = self.stage(item) {
                        pipeline.stages.push(stage);
                        places.stages.push(sp);
                    }
                }
            }
            None => {
                let key = self.key("stages");
                self.r.error_help(
                    f.span,
                    format!("the pipeline has no `{key}`"),
                    "a pipeline lists its stages, a Source stage first",
                );
            }
        }
        (pipeline, places)
    }

    fn artifact_store(&mut self, f: &Fields) -> Option<ArtifactStore> {
        let single = f.get("artifactStore");
        let many = f.get("artifactStores");
        if let (Some(_), Some(m)) = (single, many) {
            self.r.error_help(
                m.span,
                "the pipeline gives both artifactStore and artifactStores",
                "give artifactStore (one region) or artifactStores (one per region), as AWS requires",
            );
        }
        if let Some(store) = single {
            return self.store(store);
        }
        let many = many?;
        let (region, store) = match (&many.kind, self.style) {
            (Kind::Map(entries), Style::Json) => {
                let (region, _, store) = entries.first()?;
                (region.clone(), store)
            }
            (Kind::Seq(items), _) => {
                let first = items.first()?;
                let ff = self.fields(
                    first,
                    "an artifact store",
                    &["region", "artifactStore"],
                    &[],
                )?;
                let region = ff.get("region").and_then(Value::as_str).unwrap_or("?");
                (region.to_string(), ff.get("artifactStore")?)
            }
            _ => {
                self.unusable(many, "artifactStores", "a list of regions' stores");
                return None;
            }
        };
        self.r.warning(
            many.span,
            format!(
                "kiln keeps a pipeline's artifacts in one store: it uses the one given for {region}"
            ),
        );
        self.store(store)
    }

    fn store(&mut self, v: &Value) -> Option<ArtifactStore> {
        let f = self.fields(
            v,
            "the artifact store",
            &["type", "location", "encryptionKey"],
            &[],
        )?;
        let (kind, span) = self.required(&f, "type", "the artifact store's type");
        if !kind.is_empty() && kind != "S3" {
            self.r.error_help(
                span,
                format!("unknown artifact store type `{kind}`"),
                "CodePipeline keeps artifacts in S3: write `S3`",
            );
        }
        let (location, _) = self.required(&f, "location", "the artifact store's location");
        Some(ArtifactStore { kind, location })
    }

    fn filter(&mut self, v: Option<&Value>, what: &str) -> Option<Filter> {
        let v = v?;
        let f = self.fields(v, what, &["includes", "excludes"], &[])?;
        let strings = |camel: &str, r: &mut Self| -> Vec<String> {
            r.list(f.get(camel), what)
                .iter()
                .filter_map(|p| r.text(p, what))
                .collect()
        };
        Some(Filter {
            includes: strings("includes", self),
            excludes: strings("excludes", self),
        })
    }

    fn trigger(&mut self, v: &Value) -> Option<(Trigger, TriggerPlaces)> {
        let f = self.fields(v, "a trigger", &["providerType", "gitConfiguration"], &[])?;
        let (provider_type, provider_span) =
            self.required(&f, "providerType", "the trigger's providerType");
        let git = match f.get("gitConfiguration") {
            Some(g) => g,
            None => {
                let key = self.key("gitConfiguration");
                self.r
                    .error(f.span, format!("the trigger is missing: add `{key}`"));
                return None;
            }
        };
        let g = self.fields(
            git,
            "the trigger's gitConfiguration",
            &["sourceActionName", "push", "pullRequest"],
            &[(
                "pullRequest",
                "kiln has no pull requests: pull-request filters never start an execution here",
            )],
        )?;
        let (source_action_name, source_span) =
            self.required(&g, "sourceActionName", "the trigger's sourceActionName");
        let mut push = Vec::new();
        for item in self.list(g.get("push"), "push filters") {
            let Some(pf) = self.fields(
                item,
                "a push filter",
                &["branches", "filePaths", "tags"],
                &[],
            ) else {
                continue;
            };
            push.push(GitPushFilter {
                tags: self.filter(pf.get("tags"), "the tags filter"),
                branches: self.filter(pf.get("branches"), "the branches filter"),
                file_paths: self.filter(pf.get("filePaths"), "the filePaths filter"),
            });
        }
        let mut pull_request = Vec::new();
        for item in self.list(g.get("pullRequest"), "pull-request filters") {
            match item.to_json() {
                Some(json) => pull_request.push(camel_keys(json)),
                None => {
                    self.unusable(
                        item.unresolved_part().unwrap_or(item),
                        "a pull-request filter",
                        "a mapping",
                    );
                }
            }
        }
        Some((
            Trigger {
                provider_type,
                git_configuration: GitConfiguration {
                    source_action_name,
                    push,
                    pull_request,
                },
            },
            TriggerPlaces {
                provider_type: provider_span,
                source_action_name: source_span,
            },
        ))
    }

    fn stage(&mut self, v: &Value) -> Option<(Stage, StagePlaces)> {
        let ignored: &[(&str, &str)] = &[
            (
                "blockers",
                "kiln does not read blockers; the stage runs as if it had none",
            ),
            (
                "onFailure",
                "kiln does not roll back or retry a failed stage by itself; the execution stops there (retry with `kiln pipeline retry`)",
            ),
            (
                "onSuccess",
                "kiln does not evaluate stage conditions; the stage succeeds when its actions do",
            ),
            (
                "beforeEntry",
                "kiln does not evaluate stage conditions; the stage is entered when the one before succeeds",
            ),
        ];
        let f = self.fields(v, "a stage", STAGE_KEYS, ignored)?;
        let (name, name_span) = self.required(&f, "name", "the stage's name");
        let mut places = StagePlaces {
            name: name_span,
            actions: Vec::new(),
        };
        let mut actions = Vec::new();
        match f.get("actions") {
            Some(list) => {
                for item in self.list(Some(list), "the stage's actions") {
                    if let Some((action, ap)) = self.action(item) {
                        actions.push(action);
                        places.actions.push(ap);
                    }
                }
            }
            None => {
                let key = self.key("actions");
                self.r.error_help(
                    f.key_span("name").unwrap_or(f.span),
                    format!("the stage `{name}` has no `{key}`"),
                    "a stage holds at least one action",
                );
            }
        }
        Some((Stage { name, actions }, places))
    }

    fn action(&mut self, v: &Value) -> Option<(Action, ActionPlaces)> {
        let f = self.fields(v, "an action", ACTION_KEYS, &[])?;
        let (name, name_span) = self.required(&f, "name", "the action's name");
        let mut places = ActionPlaces {
            span: v.span,
            name: name_span,
            provider: name_span,
            run_order: name_span,
            namespace: name_span,
            ..ActionPlaces::default()
        };
        let mut type_id = ActionTypeId {
            category: String::new(),
            owner: String::new(),
            provider: String::new(),
            version: String::new(),
        };
        match f.get("actionTypeId") {
            Some(t) => {
                if let Some(tf) = self.fields(
                    t,
                    "actionTypeId",
                    &["category", "owner", "provider", "version"],
                    &[],
                ) {
                    type_id.category = self.required(&tf, "category", "the action's category").0;
                    type_id.owner = self.required(&tf, "owner", "the action's owner").0;
                    let provider = self.required(&tf, "provider", "the action's provider");
                    (type_id.provider, places.provider) = provider;
                    type_id.version = self.required(&tf, "version", "the action's version").0;
                }
            }
            None => {
                let key = self.key("actionTypeId");
                self.r.error_help(
                    name_span,
                    format!("the action `{name}` has no `{key}`"),
                    "give its category, owner, provider and version",
                );
            }
        }
        let mut run_order = 1;
        if let Some((text, span)) = self.optional(&f, "runOrder", "runOrder") {
            places.run_order = span;
            match text.parse::<u32>() {
                Ok(n) if (1..=999).contains(&n) => run_order = n,
                _ => self.r.error_help(
                    span,
                    format!("runOrder `{text}` is not a whole number from 1 to 999"),
                    "actions of a stage run by runOrder, lowest first; equal numbers run side by side",
                ),
            }
        }
        let mut configuration = BTreeMap::new();
        if let Some(c) = f
            .get("configuration")
            .filter(|c| !matches!(c.kind, Kind::Null))
            && let Some(cf) = self.fields_any(c, "the action's configuration")
        {
            for (key, value) in cf {
                let text = match &value.kind {
                    Kind::Str(s) => s.clone(),
                    Kind::Null => String::new(),
                    // Kept empty once reported, so that no "needs `{key}`" follows.
                    Kind::Seq(_) | Kind::Map(_) => {
                        self.r.error_help(
                                value.span,
                                format!("the configuration value `{key}` is {}, not a string", value.describe()),
                                "CodePipeline keeps configuration values as strings: write it as a JSON string",
                            );
                        String::new()
                    }
                    Kind::Unresolved { message, .. }
                        if UNUSED_CONFIGURATION.contains(&key.as_str()) =>
                    {
                        self.r.warning(
                            value.span,
                            format!("kiln does not use `{key}`, so it is left empty: {message}"),
                        );
                        String::new()
                    }
                    _ => {
                        self.unusable(
                            value,
                            &format!("the configuration value `{key}`"),
                            "a string",
                        );
                        String::new()
                    }
                };
                places.configuration.insert(key.clone(), value.span);
                configuration.insert(key, text);
            }
        }
        let artifacts = |camel: &str, what: &str, spans: &mut Vec<Span>, r: &mut Self| {
            let mut names = Vec::new();
            for item in r.list(f.get(camel), what) {
                let Some(af) = r.fields(item, what, &["name"], &[]) else {
                    continue;
                };
                let (name, span) = r.required(&af, "name", "the artifact's name");
                spans.push(span);
                names.push(ArtifactName { name });
            }
            names
        };
        let input_artifacts = artifacts(
            "inputArtifacts",
            "an input artifact",
            &mut places.inputs,
            self,
        );
        let output_artifacts = artifacts(
            "outputArtifacts",
            "an output artifact",
            &mut places.outputs,
            self,
        );
        let namespace = self
            .optional(&f, "namespace", "the action's namespace")
            .map(|(ns, span)| {
                places.namespace = span;
                ns
            });
        Some((
            Action {
                name,
                action_type_id: type_id,
                run_order,
                configuration,
                input_artifacts,
                output_artifacts,
                namespace,
            },
            places,
        ))
    }

    /// A mapping with any keys (a configuration).
    fn fields_any<'v>(&mut self, v: &'v Value, what: &str) -> Option<Vec<(String, &'v Value)>> {
        match &v.kind {
            Kind::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(entries.len());
                for (k, span, v) in entries {
                    if seen.insert(k.as_str()) {
                        out.push((k.clone(), v));
                    } else {
                        self.r
                            .error(*span, format!("`{k}` is given twice in {what}"));
                    }
                }
                Some(out)
            }
            _ => {
                self.unusable(v, what, "a mapping");
                None
            }
        }
    }
}

/// A template's PascalCase JSON in get-pipeline's camelCase.
fn camel_keys(json: serde_json::Value) -> serde_json::Value {
    match json {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = chars
                        .next()
                        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
                        .unwrap_or_default();
                    (key, camel_keys(v))
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(camel_keys).collect())
        }
        other => other,
    }
}
