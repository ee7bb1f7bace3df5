//! The environment a build's commands see, assembled in CodeBuild's order of precedence.
//!
//! From lowest to highest: the host variables kiln passes through (`PATH`, `HOME`, locale, terminal,
//! user, and any `--pass-env`), the buildspec's `env.variables`, the resolved `parameter-store` and
//! `secrets-manager` values, `--env K=V` from the command line, and last CodeBuild's built-in
//! `CODEBUILD_*` variables, which nothing overrides.

use crate::spec::Secrets;
use crate::spec::buildspec::Env;

/// Host variables every build sees, when the host has them.
const PASSTHROUGH: &[&str] = &[
    "PATH", "HOME", "LANG", "LANGUAGE", "TERM", "USER", "LOGNAME", "TZ",
];

/// Variables whose values are masked in the log wherever they appear, as CodeBuild masks AWS keys.
const SENSITIVE: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
];

/// An environment as an ordered list of unique names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    /// Sets a variable, replacing its value where it is already set.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut vars = Self::default();
        for (k, v) in pairs {
            vars.set(&k, v);
        }
        vars
    }
}

/// A secret that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error(
    "{kind} `{reference}` for variable {variable} has no value: add `{reference}=…` to the file given with --secrets, or set it in kiln's environment"
)]
pub struct MissingSecret {
    pub kind: &'static str,
    pub variable: String,
    pub reference: String,
}

/// The environment before the built-ins, and the values to mask.
pub struct Resolved {
    pub vars: Vars,
    pub masked: Vec<String>,
}

/// Assembles the environment from the host, the buildspec, the secrets and the overrides.
pub fn resolve(
    spec: &Env,
    secrets: &Secrets,
    pass_env: &[String],
    overrides: &[(String, String)],
) -> Result<Resolved, MissingSecret> {
    let mut vars = Vars::default();
    let mut masked = Vec::new();
    for name in PASSTHROUGH
        .iter()
        .copied()
        .chain(pass_env.iter().map(String::as_str))
    {
        if let Ok(value) = std::env::var(name) {
            vars.set(name, value);
        }
    }
    for (key, value) in std::env::vars() {
        if key.starts_with("LC_") {
            vars.set(&key, value);
        }
    }
    for (name, value) in &spec.variables {
        vars.set(name, value.clone());
    }
    for (kind, list) in [
        ("parameter", &spec.parameter_store),
        ("secret", &spec.secrets_manager),
    ] {
        for (name, reference) in list {
            let value = secrets.get(reference).ok_or_else(|| MissingSecret {
                kind,
                variable: name.clone(),
                reference: reference.clone(),
            })?;
            masked.push(value.clone());
            vars.set(name, value);
        }
    }
    for (name, value) in overrides {
        vars.set(name, value.clone());
    }
    for name in SENSITIVE {
        if let Some(value) = vars.get(name) {
            masked.push(value.to_string());
        }
    }
    // A value of the secrets file the buildspec does not name can still reach the log (a build that
    // prints what it fetched itself): masked all the same.
    masked.extend(secrets.values().cloned());
    Ok(Resolved { vars, masked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_beat_the_buildspec() {
        let spec = Env {
            variables: vec![("A".into(), "spec".into()), ("B".into(), "spec".into())],
            ..Env::default()
        };
        let r = resolve(
            &spec,
            &Secrets::default(),
            &[],
            &[("A".into(), "cli".into())],
        )
        .unwrap();
        assert_eq!(r.vars.get("A"), Some("cli"));
        assert_eq!(r.vars.get("B"), Some("spec"));
    }

    #[test]
    fn a_missing_secret_names_variable_and_reference() {
        let spec = Env {
            secrets_manager: vec![("PW".into(), "kiln-test/none:pw".into())],
            ..Env::default()
        };
        let e = resolve(&spec, &Secrets::default(), &[], &[]).err().unwrap();
        let text = e.to_string();
        assert!(
            text.contains("PW") && text.contains("kiln-test/none:pw"),
            "{text}"
        );
    }
}
