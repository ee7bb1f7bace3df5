//! The local stand-in for Parameter Store and Secrets Manager: a dotenv-format file whose keys are the
//! parameter names and secret references exactly as the buildspec writes them.
//!
//! ```text
//! # parameter-store
//! /app/db/host=db.internal
//! # secrets-manager, with a JSON key
//! prod/db:password="s3cr3t with spaces"
//! ```
//!
//! The file is read as any dotenv file is ([`super::dotenv`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::diagnostic::SpecError;
use super::dotenv;

/// Parameter names and secret references with their values.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// Reads a secrets file.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let source = std::fs::read_to_string(path).map_err(|e| SecretsError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(path, &source).map_err(SecretsError::Invalid)
    }

    /// Parses secrets-file text; `path` is only used in messages.
    pub fn parse(path: &Path, source: &str) -> Result<Self, SpecError> {
        Ok(Self {
            values: dotenv::parse(path, source)?.into_iter().collect(),
        })
    }
    /// Every value the file holds, referenced by the buildspec or not: all of them are masked.
    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.values.values()
    }

    /// The value for a parameter name or secret reference: from the file first, then from kiln's own
    /// environment as [`env_name`] names it. Never from a variable of another name: a buildspec may
    /// be hostile, and `parameter-store: {X: AWS_SECRET_ACCESS_KEY}` must not hand it kiln's own.
    pub fn get(&self, reference: &str) -> Option<String> {
        self.values
            .get(reference)
            .cloned()
            .or_else(|| std::env::var(env_name(reference)).ok())
    }
}

/// The variable of kiln's environment that may hold a parameter or secret (a CI's secrets are often
/// variables): `KILN_SECRET_` and the reference without its leading `/`, each character that is not
/// a letter or digit as `_`, upper-cased: `/app/db/password` is `KILN_SECRET_APP_DB_PASSWORD`,
/// `prod/api:key` is `KILN_SECRET_PROD_API_KEY`.
pub fn env_name(reference: &str) -> String {
    let name: String = reference
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KILN_SECRET_{name}")
}

/// Why a secrets file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_references_as_written() {
        let s = Secrets::parse(
            Path::new("s.env"),
            "# c\n/app/db/host=db.internal\nprod/db:password=\"a \\\"b\\\"\"\nexport K='x y' \n",
        )
        .unwrap();
        assert_eq!(s.get("/app/db/host").as_deref(), Some("db.internal"));
        assert_eq!(s.get("prod/db:password").as_deref(), Some("a \"b\""));
        assert_eq!(s.get("K").as_deref(), Some("x y"));
    }

    #[test]
    fn a_line_without_equals_is_an_error_with_a_place() {
        let e = Secrets::parse(Path::new("s.env"), "A=1\n  oops\n").unwrap_err();
        assert_eq!(
            (e.diagnostics[0].span.line, e.diagnostics[0].span.column),
            (2, 3)
        );
    }
}
