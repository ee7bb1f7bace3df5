//! The environment a build's commands see, assembled in CodeBuild's order of precedence.
//!
//! From lowest to highest: what CodeBuild's environment always has (`AWS_REGION` and
//! `AWS_DEFAULT_REGION`), the host variables kiln passes through (`PATH`, `HOME`, locale, terminal,
//! user, the proxy and CA variables when the build has a network, and any `--pass-env`), the
//! buildspec's `env.variables`, the resolved `parameter-store` and `secrets-manager` values,
//! `--env K=V` from the command line, and last CodeBuild's built-in `CODEBUILD_*` variables, which
//! nothing overrides.

use std::path::{Path, PathBuf};

use crate::spec::Secrets;
use crate::spec::buildspec::Env;

/// Host variables every build sees, when the host has them.
const PASSTHROUGH: &[&str] = &[
    "PATH", "HOME", "LANG", "LANGUAGE", "TERM", "USER", "LOGNAME", "TZ",
];

/// Host variables a build with a network sees, when the host has them: where its proxy is, and (with
/// [`CA_FILES`]) which certificate authorities to trust (a company proxy that inspects TLS signs
/// with its own). Without a network they would only point at what the build cannot reach.
const PROXIES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The variables that name a file of certificates, passed through with [`PROXIES`].
const CA_FILES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
];

/// The region of a build when neither kiln's environment nor the AWS config file names one: the
/// AWS CLI's and SDKs' own fallback.
pub const DEFAULT_REGION: &str = "us-east-1";

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

    /// Applies a step's changes in order: each sets or unsets one variable, never replaces the rest.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = crate::sandbox::EnvChange>) {
        for change in changes {
            match change {
                crate::sandbox::EnvChange::Set(k, v) => self.set(&k, v),
                crate::sandbox::EnvChange::Unset(k) => self.0.retain(|(name, _)| *name != k),
            }
        }
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut vars = Self::default();
        for (k, v) in pairs {
            vars.set(&k, v);
        }
        vars
    }
}

/// The secrets a buildspec names that have no value, all of them: a user learns every name in one
/// run, not one per run.
#[derive(Debug, thiserror::Error)]
pub struct MissingSecrets {
    /// In the buildspec's order: `parameter-store` first, then `secrets-manager`.
    pub missing: Vec<MissingSecret>,
}

/// A secret that could not be resolved.
#[derive(Debug)]
pub struct MissingSecret {
    /// `parameter` (`parameter-store`) or `secret` (`secrets-manager`).
    pub kind: &'static str,
    pub variable: String,
    pub reference: String,
}

impl std::fmt::Display for MissingSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.missing.as_slice() {
            [one] => write!(
                f,
                "{} `{}` for variable {} has no value: add `{}=…` to the file given with --secrets, or set it in kiln's environment",
                one.kind, one.reference, one.variable, one.reference
            ),
            all => {
                write!(
                    f,
                    "{} secrets have no value: add `REFERENCE=…` for each to the file given with --secrets, or set them in kiln's environment:",
                    all.len()
                )?;
                for one in all {
                    write!(
                        f,
                        "\n  {} `{}` for variable {}",
                        one.kind, one.reference, one.variable
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The environment before the built-ins, and the values to mask.
pub struct Resolved {
    pub vars: Vars,
    pub masked: Vec<String>,
    /// `--pass-env` names and patterns that matched nothing in kiln's environment.
    pub unmatched: Vec<String>,
}

/// Which of kiln's variables `--pass-env` passes: each entry a name, or a glob (`AWS_*`,
/// `NPM_CONFIG_?`, `[A-Z]*_TOKEN`); the entries that matched none, in their order.
pub fn passed(
    pass_env: &[String],
    kiln_env: impl Iterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let kiln_env: Vec<(String, String)> = kiln_env.collect();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut unmatched = Vec::new();
    for entry in pass_env {
        let glob = entry
            .contains(['*', '?', '['])
            .then(|| {
                globset::GlobBuilder::new(entry)
                    .literal_separator(false)
                    .build()
                    .ok()
                    .map(|g| g.compile_matcher())
            })
            .flatten();
        let mut any = false;
        for (name, value) in &kiln_env {
            let hit = match &glob {
                Some(matcher) => matcher.is_match(name.as_str()),
                None => name == entry,
            };
            if hit {
                any = true;
                if !out.iter().any(|(n, _)| n == name) {
                    out.push((name.clone(), value.clone()));
                }
            }
        }
        if !any {
            unmatched.push(entry.clone());
        }
    }
    (out, unmatched)
}

/// Assembles the environment from the host, the buildspec, the secrets and the overrides; `network`
/// says whether the build has one (its network mode is not `none`).
pub fn resolve(
    spec: &Env,
    secrets: &Secrets,
    pass_env: &[String],
    overrides: &[(String, String)],
    network: bool,
) -> Result<Resolved, MissingSecrets> {
    let mut vars = Vars::default();
    let mut masked = Vec::new();
    let mut missing = Vec::new();
    let region = region(|name| std::env::var(name).ok(), dirs::home_dir().as_deref());
    vars.set("AWS_REGION", region.clone());
    vars.set("AWS_DEFAULT_REGION", region);
    let (proxies, ca_files) = if network {
        (PROXIES, CA_FILES)
    } else {
        (&[][..], &[][..])
    };
    for name in PASSTHROUGH.iter().chain(proxies).chain(ca_files) {
        if let Ok(value) = std::env::var(name) {
            vars.set(name, value);
        }
    }
    // Variables kiln's environment holds as bytes that are not UTF-8 cannot be passed.
    let (pass, unmatched) = passed(
        pass_env,
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    for (name, value) in pass {
        vars.set(&name, value);
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
            match secrets.get(reference) {
                Some(value) => {
                    masked.push(value.clone());
                    vars.set(name, value);
                }
                None => missing.push(MissingSecret {
                    kind,
                    variable: name.clone(),
                    reference: reference.clone(),
                }),
            }
        }
    }
    if !missing.is_empty() {
        return Err(MissingSecrets { missing });
    }
    for (name, value) in overrides {
        vars.set(name, value.clone());
    }
    for name in SENSITIVE {
        if let Some(value) = vars.get(name) {
            masked.push(value.to_string());
        }
    }
    // A proxy's password (`http://user:password@proxy:3128`) is a credential too.
    for name in PROXIES {
        if let Some(password) = vars.get(name).and_then(proxy_password) {
            masked.push(password.to_string());
        }
    }
    // A value of the secrets file the buildspec does not name can still reach the log (a build that
    // prints what it fetched itself): masked all the same.
    masked.extend(secrets.values().cloned());
    Ok(Resolved {
        vars,
        masked,
        unmatched,
    })
}

/// The password of a proxy URL's `user:password@`, when it has one.
fn proxy_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// The region a build runs in, as CodeBuild's environment always has one: kiln's own `AWS_REGION`,
/// else its `AWS_DEFAULT_REGION`, else the region of the AWS config file (`AWS_CONFIG_FILE`, else
/// `~/.aws/config`) for the profile `AWS_PROFILE` names (`default` without it), else
/// [`DEFAULT_REGION`]. `var` reads kiln's environment; `home` is kiln's home folder.
pub fn region(var: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> String {
    let set = |name| var(name).filter(|v| !v.trim().is_empty());
    if let Some(region) = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")) {
        return region;
    }
    let file = set("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".aws/config")));
    // A config file that is missing or unreadable names no region, as for the AWS CLI.
    let text = file.and_then(|f| std::fs::read_to_string(f).ok());
    let profile = set("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    text.and_then(|t| config_region(&t, &profile))
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// The `region` of `profile` in the text of an AWS config file: the section `[default]` (or
/// `[profile default]`) for the default profile, `[profile NAME]` for another. An indented line
/// belongs to a nested setting (`s3 =` and its own keys below it) and is skipped; comments start
/// with `#` or `;`, and a region, which has no spaces, ends at the first one.
fn config_region(text: &str, profile: &str) -> Option<String> {
    let mut in_profile = false;
    let mut region = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let mut words = section.split_whitespace();
            in_profile = match (words.next(), words.next(), words.next()) {
                (Some("default"), None, _) => profile == "default",
                (Some("profile"), Some(name), None) => name == profile,
                _ => false,
            };
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "region"
            && let Some(value) = value.split_whitespace().next()
        {
            region = Some(value.to_string());
        }
    }
    region
}

/// The certificate files that [`CA_FILES`] variables of kiln's environment name, as absolute paths
/// that exist.
pub fn ca_files() -> Vec<PathBuf> {
    CA_FILES
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_password_is_found_in_its_url() {
        assert_eq!(
            proxy_password("http://me:s3cr%40t@proxy:3128"),
            Some("s3cr%40t")
        );
        assert_eq!(proxy_password("me:pw@proxy:3128"), Some("pw"));
        assert_eq!(proxy_password("http://me@proxy:3128"), None);
        assert_eq!(proxy_password("http://proxy:3128/a@b"), None);
        assert_eq!(proxy_password("localhost,.internal"), None);
    }

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
            true,
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
        let e = resolve(&spec, &Secrets::default(), &[], &[], true)
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(
            text.contains("PW") && text.contains("kiln-test/none:pw"),
            "{text}"
        );
    }

    fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_region_comes_from_the_environment_first() {
        let both = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-2"),
        ];
        assert_eq!(region(env(&both), None), "eu-west-1");
        assert_eq!(region(env(&both[1..]), None), "eu-west-2");
        assert_eq!(region(env(&[("AWS_REGION", "")]), None), DEFAULT_REGION);
    }

    #[test]
    fn the_region_comes_from_the_profile_of_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "# mine\n[default]\nregion = ap-south-1 ; note\ns3 =\n  region = wrong\n\n[profile work]\nregion=ca-central-1\n[profile none]\noutput = json\n",
        )
        .unwrap();
        let home = Some(dir.path());
        assert_eq!(region(env(&[]), home), "ap-south-1");
        assert_eq!(
            region(env(&[("AWS_PROFILE", "work")]), home),
            "ca-central-1"
        );
        assert_eq!(
            region(env(&[("AWS_PROFILE", "none")]), home),
            DEFAULT_REGION
        );
        assert_eq!(
            region(env(&[("AWS_PROFILE", "gone")]), home),
            DEFAULT_REGION
        );
        assert_eq!(
            region(env(&[("AWS_REGION", "eu-north-1")]), home),
            "eu-north-1"
        );
    }

    #[test]
    fn a_config_file_named_in_the_environment_is_read_instead() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, "[profile default]\nregion = sa-east-1\n").unwrap();
        let file = file.to_string_lossy().into_owned();
        assert_eq!(
            region(env(&[("AWS_CONFIG_FILE", &file)]), None),
            "sa-east-1"
        );
        assert_eq!(
            region(
                env(&[("AWS_CONFIG_FILE", "/nonexistent/kiln/config")]),
                None
            ),
            DEFAULT_REGION
        );
    }
}
