//! Secret values, and their replacement by `***` wherever kiln writes text: the log, `--json`, build
//! records, action-cache entries and revision manifests.
//!
//! A value is masked whole, and a multi-line value (a private key, a certificate) line by line too,
//! since the log is written a line at a time: a line of it shows up alone. Values and lines too short
//! to be secret (`1`, `no`, `}`) are not masked: they would mangle every line without hiding
//! anything.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};

/// The text secrets are replaced with, as CodeBuild does.
pub const MASK: &str = "***";

/// The shortest value masked whole.
const MIN_VALUE: usize = 3;
/// The shortest line of a multi-line value masked on its own.
const MIN_LINE: usize = 4;

/// The secrets of one build.
#[derive(Default)]
pub struct Masker {
    finder: Option<AhoCorasick>,
}

impl Masker {
    /// A masker for these values (and the lines of each multi-line one).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut patterns = Vec::new();
        for value in values {
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| l.trim().len() >= MIN_LINE)
                        .map(str::to_string),
                );
            }
            if value.len() >= MIN_VALUE {
                patterns.push(value);
            }
        }
        patterns.sort();
        patterns.dedup();
        let finder = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Self { finder }
    }

    /// `text` with every secret in it replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.finder {
            Some(finder) if finder.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                finder.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(MASK);
                    true
                });
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Whether `text` holds a secret.
    pub fn finds(&self, text: &str) -> bool {
        self.finder.as_ref().is_some_and(|f| f.is_match(text))
    }

    /// Masks a string in place.
    pub fn mask_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.mask(text) {
            *text = masked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_whole_and_short_ones_are_left() {
        let m = Masker::new(["hunter22".to_string(), "no".to_string()]);
        assert_eq!(m.mask("pw=hunter22; no"), "pw=***; no");
        assert!(m.finds("xhunter22x"));
        assert!(!m.finds("no"));
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_masked_alone() {
        let key = "-----BEGIN KEY-----\nMIIEabcdef\nghij\n}\n-----END KEY-----\n".to_string();
        let m = Masker::new([key.clone()]);
        assert_eq!(m.mask("MIIEabcdef"), "***");
        assert_eq!(m.mask("line ghij here"), "line *** here");
        // A line shorter than four characters is not a secret of its own.
        assert_eq!(m.mask("}"), "}");
        assert_eq!(m.mask(&format!("[{key}]")), "[***]");
    }
}
