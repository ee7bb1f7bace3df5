//! The buildspec and AppSpec parsers against random YAML and mutated valid specs (proptest): each
//! input is refused with a diagnostic that renders, or read; never a panic.

use std::path::Path;

use proptest::prelude::*;

use super::{appspec, buildspec};

/// The example project's specs, and a buildspec that uses most of what kiln reads.
const VALID_BUILDSPECS: &[&str] = &[
    include_str!("../../../examples/hello-web/buildspec.yml"),
    "version: 0.2
run-as: root
env:
  shell: bash
  variables:
    A: \"1\"
    B: two
  parameter-store:
    P: /app/param
  secrets-manager:
    S: secret-id:key
  exported-variables: [A]
  git-credential-helper: yes
proxy:
  upload-artifacts: no
phases:
  install:
    runtime-versions:
      python: 3.12
    commands:
      - echo install
  pre_build:
    on-failure: CONTINUE
    commands: [echo pre]
  build:
    commands:
      - |
        echo multi
        echo line
    finally:
      - echo done
  post_build:
    commands: ['echo \"é ✓\"']
reports:
  unit:
    files: ['**/*.xml']
    base-directory: out
    file-format: JUNITXML
artifacts:
  files: ['**/*']
  name: app-$A
  discard-paths: no
  base-directory: out
  exclude-paths: [tmp/*]
  enable-symlinks: yes
  secondary-artifacts:
    site:
      files: ['*.html']
cache:
  key: deps-$A
  fallback-keys: [deps-]
  paths: ['node_modules/**/*']
",
];

const VALID_APPSPECS: &[&str] = &[
    include_str!("../../../examples/hello-web/appspec.yml"),
    "version: 0.0
os: linux
files:
  - source: /
    destination: /srv/app
    file_exists_behavior: OVERWRITE
file_exists_behavior: RETAIN
permissions:
  - object: /srv/app
    pattern: \"*.sh\"
    except: [keep.sh]
    owner: root
    group: root
    mode: 755
    acls: [\"u:www:rwx\"]
    type: [file]
hooks:
  BeforeInstall:
    - location: scripts/a.sh
      timeout: 30
      runas: root
  ApplicationStart:
    - location: scripts/b.sh
",
];

/// Parses as a buildspec and as an AppSpec, rendering whatever comes back.
fn parse_both(text: &str) {
    let path = Path::new("spec.yml");
    match buildspec::parse(path, text) {
        Ok(parsed) => {
            let _ = parsed.render_warnings(path, false);
            let _ = parsed.render_warnings(path, true);
        }
        Err(e) => {
            assert!(e.errors().next().is_some(), "refused without an error");
            let _ = e.to_string();
            let _ = e.render(true);
        }
    }
    match appspec::parse(path, text) {
        Ok((_, warnings)) => {
            let _ = super::diagnostic::render_all(path, text, &warnings, true);
        }
        Err(e) => {
            assert!(e.errors().next().is_some(), "refused without an error");
            let _ = e.to_string();
            let _ = e.render(true);
        }
    }
}

/// A YAML document, as a tree, to write out in block style.
#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "version", "phases", "install", "pre_build", "build", "post_build", "commands",
            "finally", "on-failure", "runtime-versions", "env", "variables", "shell",
            "parameter-store", "secrets-manager", "exported-variables", "git-credential-helper",
            "run-as", "proxy", "batch", "reports", "artifacts", "files", "name", "base-directory",
            "discard-paths", "exclude-paths", "enable-symlinks", "secondary-artifacts", "cache",
            "key", "fallback-keys", "paths", "file-format", "os", "hooks", "source", "destination",
            "file_exists_behavior", "permissions", "object", "pattern", "except", "owner", "group",
            "mode", "acls", "context", "type", "BeforeInstall", "ApplicationStart", "location",
            "timeout", "runas",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z_ -]{0,8}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "0.2", "0.0", "0.1", "linux", "windows", "yes", "no", "true", "~", "null", "''",
            "\"\"", "echo hi", "CONTINUE", "ABORT", "OVERWRITE", "RETAIN", "DISALLOW", "755",
            "0o777", "-1", "99999999999999999999", "1e400", "&anchor x", "*anchor", "!!int 3",
            "!!binary aGk=", "|", ">-", "[a, b", "{a: 1}", "'unterminated", "\"\\u00e9\"", "é✓",
            "$A", "${A}", "**/*", "/", "..", "\t", "# comment", "a: b", "- a",
        ])
        .prop_map(String::from),
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn yaml() -> impl Strategy<Value = Yaml> {
    scalar()
        .prop_map(Yaml::Scalar)
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Yaml::List),
                prop::collection::vec((key(), inner), 0..6).prop_map(Yaml::Map),
            ]
        })
}

fn write(node: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Yaml::Scalar(s) => {
            out.push(' ');
            out.push_str(s);
            out.push('\n');
        }
        Yaml::List(items) if items.is_empty() => out.push_str(" []\n"),
        Yaml::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Yaml::List(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&pad);
                out.push('-');
                write(item, indent + 2, out);
            }
        }
        Yaml::Map(entries) => {
            out.push('\n');
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(key);
                out.push(':');
                write(value, indent + 2, out);
            }
        }
    }
}

/// A document: a mapping at the top most of the time, as a spec is.
fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec((key(), yaml()), 0..8).prop_map(Yaml::Map),
        1 => yaml(),
    ]
    .prop_map(|root| {
        let mut out = String::new();
        write(&root, 0, &mut out);
        out.trim_start_matches('\n').to_string()
    })
}

/// A change to a spec's text, made on characters so that the text stays UTF-8.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, char),
    Insert(prop::sample::Index, String),
    Remove(prop::sample::Index, usize),
    DuplicateLine(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn odd_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            ':', '-', ' ', '\n', '\t', '\'', '"', '[', ']', '{', '}', '&', '*', '!', '|', '>',
            '#', '%', '@', '`', ',', '?', '\r', '\u{0}', '\u{feff}', 'é', '✓', '\u{10ffff}',
        ]),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), odd_char()).prop_map(|(i, c)| Edit::Set(i, c)),
        2 => (any::<prop::sample::Index>(), prop_oneof![
            odd_char().prop_map(String::from),
            scalar(),
            key().prop_map(|k| format!("\n{k}:")),
        ]).prop_map(|(i, s)| Edit::Insert(i, s)),
        2 => (any::<prop::sample::Index>(), 1usize..20).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match edit {
            Edit::Set(i, c) => {
                if let Some(at) = chars.get_mut(i.index(len)) {
                    *at = *c;
                }
            }
            Edit::Insert(i, s) => {
                let at = i.index(chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Remove(i, n) => {
                let at = i.index(len).min(chars.len());
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::DuplicateLine(i) => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let at = i.index(lines.len());
                    lines.insert(at, lines[at]);
                }
                chars = lines.concat().chars().collect();
            }
            Edit::Truncate(i) => chars.truncate(i.index(len)),
        }
    }
    chars.into_iter().collect()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_specs_mutated_are_valid_to_start_with() {
    for text in VALID_BUILDSPECS {
        let parsed = buildspec::parse(Path::new("buildspec.yml"), text);
        assert!(
            parsed.is_ok(),
            "{}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    for text in VALID_APPSPECS {
        let parsed = appspec::parse(Path::new("appspec.yml"), text);
        assert!(
            parsed.is_ok(),
            "{}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn random_yaml_never_panics(text in document()) {
        parse_both(&text);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        parse_both(&text);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn mutated_buildspecs_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let text = VALID_BUILDSPECS[which.index(VALID_BUILDSPECS.len())];
        parse_both(&apply(text, &edits));
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn mutated_appspecs_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let text = VALID_APPSPECS[which.index(VALID_APPSPECS.len())];
        parse_both(&apply(text, &edits));
    }
}
