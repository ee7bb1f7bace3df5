//! The rules CodePipeline applies when a pipeline is created, and the ones kiln adds because it
//! keeps stages and actions in folders named after them: names, stage layout, artifact flow,
//! artifact counts per provider, required configuration, namespaces and variable references,
//! execution modes and triggers.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::read::Places;
use super::{Action, ExecutionMode, LoadOptions, Pipeline, SUPPORTED, environment_variables};
use crate::spec::diagnostic::Span;
use crate::spec::read::{Reader, nearest};

/// What kiln runs, for messages.
const WHAT_KILN_RUNS: &str = "kiln runs Source actions CodeCommit, CodeStarSourceConnection, GitHub (ThirdParty, version 1), S3 and ECR; Build and Test actions CodeBuild; Deploy actions CodeDeploy; Approval actions Manual";

/// Where an action runs: its stage's index, then its runOrder.
type When = (usize, u32);

/// Checks one pipeline, reporting to `r`.
pub fn check(r: &mut Reader, p: &Pipeline, places: &Places, options: &LoadOptions) {
    name(r, &p.name, places.name, "pipeline", NAME_CHARS);
    let v2 = p.pipeline_type.as_deref() == Some("V2");
    if !v2 {
        let kind = p.pipeline_type.as_deref().unwrap_or("V1 (the default)");
        if p.execution_mode != ExecutionMode::Superseded {
            r.error_help(
                places.execution_mode,
                format!(
                    "executionMode {} needs pipelineType V2; this pipeline is {kind}",
                    p.execution_mode.as_str()
                ),
                "add pipelineType V2, or leave executionMode SUPERSEDED",
            );
        }
        if let Some(first) = places.triggers.first() {
            r.error_help(
                first.provider_type,
                format!("triggers need pipelineType V2; this pipeline is {kind}"),
                "add pipelineType V2",
            );
        }
        if let Some(first) = places.variables.first() {
            r.error_help(
                *first,
                format!("pipeline variables need pipelineType V2; this pipeline is {kind}"),
                "add pipelineType V2",
            );
        }
    }
    let mut variables: HashMap<&str, Span> = HashMap::new();
    for (v, span) in p.variables.iter().zip(&places.variables) {
        if v.name.is_empty() {
            continue;
        }
        if variables.insert(&v.name, *span).is_some() {
            r.error(
                *span,
                format!("the pipeline variable `{}` is declared twice", v.name),
            );
        }
        if !(1..=128).contains(&v.name.len())
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@_-".contains(c))
        {
            r.error_help(
                *span,
                format!("`{}` is not a valid variable name", v.name),
                "variable names use letters, digits, @, - and _ (at most 128 characters)",
            );
        }
    }

    if p.stages.len() < 2 {
        r.error_help(
            places.stages.first().map_or(places.span, |s| s.name),
            format!(
                "the pipeline has {} stage{}; CodePipeline needs at least two",
                p.stages.len(),
                if p.stages.len() == 1 { "" } else { "s" }
            ),
            "a pipeline has a Source stage and at least one stage that does something with it",
        );
    }

    let mut stage_names: HashSet<&str> = HashSet::new();
    let mut producers: HashMap<&str, (When, String)> = HashMap::new();
    let mut namespaces: HashMap<&str, (When, String)> = HashMap::new();
    for (si, (stage, sp)) in p.stages.iter().zip(&places.stages).enumerate() {
        name(r, &stage.name, sp.name, "stage", NAME_CHARS);
        if !stage.name.is_empty() && !stage_names.insert(&stage.name) {
            r.error(
                sp.name,
                format!("there are two stages named `{}`", stage.name),
            );
        }
        if stage.actions.is_empty() {
            r.error_help(
                sp.name,
                format!("the stage `{}` has no actions", stage.name),
                "a stage holds at least one action",
            );
        }
        let mut action_names: HashSet<&str> = HashSet::new();
        for (action, ap) in stage.actions.iter().zip(&sp.actions) {
            let place = format!("{}/{}", stage.name, action.name);
            name(r, &action.name, ap.name, "action", NAME_CHARS);
            if !action.name.is_empty() && !action_names.insert(&action.name) {
                r.error(
                    ap.name,
                    format!(
                        "the stage `{}` has two actions named `{}`",
                        stage.name, action.name
                    ),
                );
            }
            let id = &action.action_type_id;
            let source = id.category == "Source";
            if si == 0 && !source && !id.category.is_empty() {
                r.error_help(
                    ap.provider,
                    format!(
                        "the first stage holds only Source actions; `{}` is a {} action",
                        action.name, id.category
                    ),
                    "move it to a later stage",
                );
            }
            if si > 0 && source {
                r.error_help(
                    ap.provider,
                    format!(
                        "`{}` is a Source action, and Source actions belong in the first stage only",
                        action.name
                    ),
                    "move it to the first stage",
                );
            }
            provider(r, action, &place, ap, options);
            for (out, span) in action.output_artifacts.iter().zip(&ap.outputs) {
                artifact_name(r, &out.name, *span);
                if out.name.is_empty() {
                    continue;
                }
                match producers.get(out.name.as_str()) {
                    Some((_, by)) => r.error_help(
                        *span,
                        format!(
                            "the output artifact `{}` is already produced by {by}",
                            out.name
                        ),
                        "output artifact names are unique across the pipeline: rename one",
                    ),
                    None => {
                        producers.insert(&out.name, ((si, action.run_order), place.clone()));
                    }
                }
            }
            if let Some(ns) = &action.namespace {
                if ns.is_empty()
                    || ns.len() > 100
                    || !ns
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "@_-".contains(c))
                {
                    r.error_help(
                        ap.namespace,
                        format!("`{ns}` is not a valid namespace"),
                        "namespaces use letters, digits, @, - and _ (at most 100 characters)",
                    );
                }
                match namespaces.get(ns.as_str()) {
                    Some((_, by)) => r.error(
                        ap.namespace,
                        format!("the namespace `{ns}` is already the namespace of {by}"),
                    ),
                    None => {
                        namespaces.insert(ns, ((si, action.run_order), place.clone()));
                    }
                }
            }
        }
    }

    // Inputs and references are checked once every producer is known, so that one produced too
    // late is told apart from one never produced.
    for (si, (stage, sp)) in p.stages.iter().zip(&places.stages).enumerate() {
        for (action, ap) in stage.actions.iter().zip(&sp.actions) {
            let here = (si, action.run_order);
            let place = format!("{}/{}", stage.name, action.name);
            let mut seen: HashSet<&str> = HashSet::new();
            for (input, span) in action.input_artifacts.iter().zip(&ap.inputs) {
                if input.name.is_empty() {
                    continue;
                }
                if !seen.insert(&input.name) {
                    r.error(
                        *span,
                        format!("`{}` is an input of {place} twice", input.name),
                    );
                    continue;
                }
                match producers.get(input.name.as_str()) {
                    None => r.error_help(
                        *span,
                        format!("no action produces the input artifact `{}` of {place}", input.name),
                        format!(
                            "add `{}` to the output artifacts of an action of an earlier stage (or of this stage with a lower runOrder){}",
                            input.name,
                            nearest_hint(&input.name, producers.keys().copied())
                        ),
                    ),
                    Some((when, by)) if !before(*when, here) => r.error_help(
                        *span,
                        format!(
                            "the input artifact `{}` of {place} is produced by {by}, which does not run before it",
                            input.name
                        ),
                        if when.0 == si {
                            format!(
                                "give {place} a runOrder higher than {by}'s ({}), or move {by} to an earlier stage",
                                when.1
                            )
                        } else {
                            format!("move {by} to a stage before `{}`", stage.name)
                        },
                    ),
                    Some(_) => {}
                }
            }
            for (key, value) in &action.configuration {
                let span = ap.configuration.get(key).copied().unwrap_or(ap.span);
                references(r, value, key, span, here, &place, &namespaces, &variables);
            }
        }
    }

    let first: Vec<&Action> = p
        .stages
        .first()
        .map(|s| s.actions.iter().collect())
        .unwrap_or_default();
    for (trigger, tp) in p.triggers.iter().zip(&places.triggers) {
        if trigger.provider_type != "CodeStarSourceConnection" && !trigger.provider_type.is_empty()
        {
            r.error_help(
                tp.provider_type,
                format!("unknown trigger providerType `{}`", trigger.provider_type),
                "triggers start executions of CodeStarSourceConnection sources: write CodeStarSourceConnection",
            );
        }
        let wanted = &trigger.git_configuration.source_action_name;
        let found = first
            .iter()
            .any(|a| &a.name == wanted && a.action_type_id.category == "Source");
        if !found && !wanted.is_empty() {
            let names: Vec<&str> = first
                .iter()
                .filter(|a| a.action_type_id.category == "Source")
                .map(|a| a.name.as_str())
                .collect();
            r.error_help(
                tp.source_action_name,
                format!("the trigger names the source action `{wanted}`, which is not a Source action of the first stage"),
                format!("the Source actions are: {}", names.join(", ")),
            );
        }
    }
}

/// Whether something at `a` has finished before an action at `b` starts.
fn before(a: When, b: When) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

fn nearest_hint<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> String {
    let known: Vec<&str> = known.collect();
    match nearest(name, &known) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => String::new(),
    }
}

const NAME_CHARS: &str = ".@_-";

/// A pipeline, stage or action name: CodePipeline's characters, and never `.` or `..` (kiln makes
/// folders of these names).
fn name(r: &mut Reader, name: &str, span: Span, what: &str, extra: &str) {
    if name.is_empty() {
        return;
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)));
    if let Some(c) = bad {
        r.error_help(
            span,
            format!("the {what} name `{name}` holds `{c}`, which CodePipeline does not allow"),
            "names use letters, digits, ., @, - and _ (at most 100 characters)",
        );
    } else if name.len() > 100 {
        r.error(
            span,
            format!(
                "the {what} name is {} characters long; at most 100",
                name.len()
            ),
        );
    } else if name == "." || name == ".." {
        r.error_help(
            span,
            format!("the {what} name `{name}` is not a name"),
            "kiln keeps each name as a folder: give a name with a letter or digit",
        );
    }
}

fn artifact_name(r: &mut Reader, name: &str, span: Span) {
    if name.is_empty() {
        return;
    }
    if name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        r.error_help(
            span,
            format!("`{name}` is not a valid artifact name"),
            "artifact names use letters, digits, - and _ (at most 100 characters)",
        );
    }
}

/// The provider's rules: supported, its artifact counts, its required configuration.
fn provider(
    r: &mut Reader,
    action: &Action,
    place: &str,
    ap: &super::read::ActionPlaces,
    options: &LoadOptions,
) {
    let id = &action.action_type_id;
    if id.category.is_empty() || id.provider.is_empty() {
        return;
    }
    const CATEGORIES: &[&str] = &[
        "Source", "Build", "Test", "Deploy", "Approval", "Invoke", "Compute",
    ];
    if !CATEGORIES.contains(&id.category.as_str()) {
        r.error_help(
            ap.provider,
            format!("`{}` is not an action category", id.category),
            format!("the categories are {}", CATEGORIES.join(", ")),
        );
        return;
    }
    let claimed = options
        .claimed
        .iter()
        .any(|(c, o, p)| *c == id.category && *o == id.owner && *p == id.provider);
    if claimed {
        return;
    }
    if !super::supported(id) {
        let near: Vec<&str> = SUPPORTED
            .iter()
            .chain(&[("Approval", "AWS", "Manual")])
            .filter(|(c, _, _)| *c == id.category)
            .map(|(_, _, p)| *p)
            .collect();
        let hint = match nearest(&id.provider, &near) {
            Some(n) if n != id.provider => format!(" (did you mean `{n}`?)"),
            _ => String::new(),
        };
        r.error_help(
            ap.provider,
            format!(
                "{place}: kiln does not run {} actions of provider {} (owner {}){hint}",
                id.category, id.provider, id.owner
            ),
            format!("{WHAT_KILN_RUNS}; a plugin may claim other providers"),
        );
        return;
    }
    let (inputs, outputs, required): ((usize, usize), (usize, usize), &[&str]) =
        match (id.category.as_str(), id.provider.as_str()) {
            ("Source", "CodeCommit") => ((0, 0), (1, 1), &["RepositoryName", "BranchName"]),
            ("Source", "CodeStarSourceConnection") => {
                ((0, 0), (1, 1), &["FullRepositoryId", "BranchName"])
            }
            ("Source", "GitHub") => ((0, 0), (1, 1), &["Owner", "Repo", "Branch"]),
            ("Source", "S3") => ((0, 0), (1, 1), &["S3Bucket", "S3ObjectKey"]),
            ("Source", "ECR") => ((0, 0), (1, 1), &["RepositoryName"]),
            ("Build" | "Test", "CodeBuild") => ((1, 5), (0, 5), &["ProjectName"]),
            ("Deploy", "CodeDeploy") => {
                ((1, 1), (0, 0), &["ApplicationName", "DeploymentGroupName"])
            }
            _ => ((0, 0), (0, 0), &[]),
        };
    if id.provider == "GitHub" && id.version != "1" {
        r.error_help(
            ap.provider,
            format!(
                "{place}: kiln runs GitHub source actions of version 1, not `{}`",
                id.version
            ),
            "GitHub version 2 is the CodeStarSourceConnection provider",
        );
    }
    count(
        r,
        action.input_artifacts.len(),
        inputs,
        "input",
        place,
        id,
        ap.name,
    );
    count(
        r,
        action.output_artifacts.len(),
        outputs,
        "output",
        place,
        id,
        ap.name,
    );
    for key in required {
        if action.configuration.contains_key(*key) {
            continue;
        }
        let present: Vec<&str> = action.configuration.keys().map(String::as_str).collect();
        let hint = match nearest(key, &present) {
            Some(n) => format!("; is `{n}` meant to be `{key}`?"),
            None => String::new(),
        };
        r.error_help(
            ap.name,
            format!(
                "{place}: a {} action needs `{key}` in its configuration",
                id.provider
            ),
            format!("add `{key}` to the action's configuration{hint}"),
        );
    }
    if id.provider == "CodeBuild"
        && let Some(text) = action.configuration.get("EnvironmentVariables")
    {
        let mut map = BTreeMap::new();
        map.insert("EnvironmentVariables".to_string(), text.clone());
        if let Err(e) = environment_variables(&map) {
            let span = ap
                .configuration
                .get("EnvironmentVariables")
                .copied()
                .unwrap_or(ap.span);
            r.error_help(
                    span,
                    format!("{place}: {e}"),
                    r#"write a JSON list: [{"name":"STAGE","value":"prod","type":"PLAINTEXT"}] (type PLAINTEXT, PARAMETER_STORE or SECRETS_MANAGER)"#,
                );
        }
    }
}

fn count(
    r: &mut Reader,
    n: usize,
    (min, max): (usize, usize),
    what: &str,
    place: &str,
    id: &super::ActionTypeId,
    span: Span,
) {
    if (min..=max).contains(&n) {
        return;
    }
    let allowed = match (min, max) {
        (0, 0) => "none".to_string(),
        (a, b) if a == b => format!("exactly {a}"),
        (0, b) => format!("at most {b}"),
        (a, b) => format!("{a} to {b}"),
    };
    r.error_help(
        span,
        format!(
            "{place} has {n} {what} artifact{}; a {} {} action takes {allowed}",
            if n == 1 { "" } else { "s" },
            id.category,
            id.provider
        ),
        format!("change its {what}Artifacts"),
    );
}

/// `#{Namespace.Variable}` and `#{variables.name}` in a configuration value.
#[allow(clippy::too_many_arguments)]
fn references(
    r: &mut Reader,
    value: &str,
    key: &str,
    span: Span,
    here: When,
    place: &str,
    namespaces: &HashMap<&str, (When, String)>,
    variables: &HashMap<&str, Span>,
) {
    let mut rest = value;
    while let Some(at) = rest.find("#{") {
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else { break };
        let reference = &after[..close];
        rest = &after[close + 1..];
        let Some((ns, var)) = reference.split_once('.') else {
            r.error_help(
                span,
                format!("`#{{{reference}}}` in `{key}` of {place} names no namespace"),
                "write #{Namespace.Variable}, #{variables.name} or #{codepipeline.PipelineExecutionId}",
            );
            continue;
        };
        match ns {
            "variables" => {
                if !variables.contains_key(var) {
                    let known: Vec<&str> = variables.keys().copied().collect();
                    r.error_help(
                        span,
                        format!("`#{{{reference}}}` in `{key}` of {place} names no pipeline variable"),
                        if known.is_empty() {
                            format!("declare `{var}` in the pipeline's variables")
                        } else {
                            format!("the pipeline variables are {}", sorted(known))
                        },
                    );
                }
            }
            "codepipeline" => {
                if var != "PipelineExecutionId" {
                    r.error_help(
                        span,
                        format!("`#{{{reference}}}` in `{key}` of {place}: the codepipeline namespace has no `{var}`"),
                        "it offers #{codepipeline.PipelineExecutionId}",
                    );
                }
            }
            _ => match namespaces.get(ns) {
                None => {
                    let known: Vec<&str> = namespaces.keys().copied().collect();
                    r.error_help(
                        span,
                        format!("`#{{{reference}}}` in `{key}` of {place} names the namespace `{ns}`, which no action has"),
                        format!(
                            "give the action that sets `{var}` the namespace `{ns}`{}",
                            nearest_hint(ns, known.into_iter())
                        ),
                    );
                }
                Some((when, by)) if !before(*when, here) => r.error_help(
                    span,
                    format!("`#{{{reference}}}` in `{key}` of {place} reads the namespace of {by}, which does not run before it"),
                    "an action reads the variables of actions that have finished: an earlier stage, or a lower runOrder",
                ),
                Some(_) => {}
            },
        }
    }
}

fn sorted(mut names: Vec<&str>) -> String {
    names.sort_unstable();
    names.join(", ")
}
