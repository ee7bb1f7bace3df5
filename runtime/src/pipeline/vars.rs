//! CodePipeline's variables in action configurations: `#{Namespace.Name}` (an earlier action's
//! output), `#{variables.name}` (the pipeline's own) and `#{codepipeline.PipelineExecutionId}`.

use std::collections::BTreeMap;

/// What `#{…}` can read while one action's configuration is resolved.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// Each namespace's variables, of the actions that ran before.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The pipeline's variables: defaults under the values given at start.
    pub variables: BTreeMap<String, String>,
    pub execution_id: String,
}

impl Scope {
    fn lookup(&self, namespace: &str, name: &str) -> Option<&str> {
        match namespace {
            "variables" => self.variables.get(name).map(String::as_str),
            "codepipeline" if name == "PipelineExecutionId" => Some(&self.execution_id),
            _ => self
                .namespaces
                .get(namespace)?
                .get(name)
                .map(String::as_str),
        }
    }

    /// `text` with every `#{Namespace.Name}` replaced; the references that name nothing, in a
    /// sentence, when any does. A `#{` that does not close, or holds no `.`, is left as written,
    /// as CodePipeline leaves text that is not a reference.
    pub fn resolve(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut missing = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("#{") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[at..]);
                rest = "";
                break;
            };
            let inner = &after[..end];
            match inner.split_once('.') {
                Some((ns, name)) if is_name(ns) && !name.is_empty() => {
                    match self.lookup(ns, name) {
                        Some(value) => out.push_str(value),
                        None => missing.push(format!("#{{{inner}}}")),
                    }
                }
                _ => out.push_str(&rest[at..at + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "{} names no variable of an action that ran before this one, nor a pipeline variable",
                missing.join(", ")
            ))
        }
    }

    /// A configuration with each value resolved.
    pub fn resolve_all(
        &self,
        configuration: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        configuration
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.resolve(v).map_err(|e| format!("{k}: {e}"))?)))
            .collect()
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope {
            execution_id: "e-1".into(),
            ..Default::default()
        };
        s.namespaces.insert(
            "SourceVariables".into(),
            [("CommitId".to_string(), "abc123".to_string())].into(),
        );
        s.variables.insert("stage".into(), "prod".into());
        s
    }

    #[test]
    fn references_to_namespaces_pipeline_variables_and_the_execution_are_replaced() {
        let s = scope();
        assert_eq!(
            s.resolve("v-#{SourceVariables.CommitId}/#{variables.stage}/#{codepipeline.PipelineExecutionId}")
                .unwrap(),
            "v-abc123/prod/e-1"
        );
    }

    #[test]
    fn a_reference_to_nothing_is_an_error_naming_it() {
        let e = scope()
            .resolve("#{BuildVariables.Version} #{SourceVariables.Nope}")
            .unwrap_err();
        assert!(e.contains("#{BuildVariables.Version}"), "{e}");
        assert!(e.contains("#{SourceVariables.Nope}"), "{e}");
    }

    #[test]
    fn text_that_is_not_a_reference_stays_as_written() {
        let s = scope();
        assert_eq!(s.resolve("#{unclosed").unwrap(), "#{unclosed");
        assert_eq!(s.resolve("a #{nodot} b").unwrap(), "a #{nodot} b");
        assert_eq!(s.resolve("${shell} #").unwrap(), "${shell} #");
        // A value is never resolved again: what an action outputs cannot inject references.
        let mut s = scope();
        s.variables
            .insert("x".into(), "#{SourceVariables.CommitId}".into());
        assert_eq!(
            s.resolve("#{variables.x}").unwrap(),
            "#{SourceVariables.CommitId}"
        );
    }
}
