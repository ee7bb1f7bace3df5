//! Which pushes start an execution: CodePipeline V2 trigger filters (branches, tags, file paths)
//! matched as CodePipeline matches them, and the default when a source action has no trigger (a
//! push to its own `BranchName`).
//!
//! Patterns are CodePipeline's globs ("Working with glob patterns in syntax"): `*` is any run of
//! characters within a path segment, `**` any run across segments, `?` one character, `[...]` one
//! of a set, `{a,b}` either sub-pattern (not nested), `\` escapes. They are matched with
//! `globset`, separators literal. One difference is bridged: globset reads a `**` that is not a
//! whole segment (`**.js`, `src**`) as `*`, where CodePipeline's crosses segments; such a `**` is
//! rewritten `{*,*/**/*}` (unless it is inside a `{}` group, which globset cannot nest). Where the
//! two may still differ: `**/README.md` matches a `README.md` at the top as well (globset's
//! reading, and what the documented examples intend).

use globset::{GlobBuilder, GlobMatcher};

use crate::spec::pipeline::{Filter, GitPushFilter, Trigger};

/// A push to a source action's repository: the branch it moved, or the tags it pushed, and the
/// files the pushed commits changed.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The branch pushed to (without `refs/heads/`); `None` for a push of tags alone.
    pub branch: Option<&'a str>,
    /// The tags pushed (without `refs/tags/`).
    pub tags: &'a [String],
    /// The files the push changed, relative to the repository's top.
    pub files: &'a [String],
}

/// Whether a push starts an execution, and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub start: bool,
    pub reason: String,
}

/// A pattern of a trigger filter that is not a glob.
#[derive(Debug, thiserror::Error)]
#[error("trigger of {action}: `{pattern}` is not a glob pattern: {message}")]
pub struct PatternError {
    pub action: String,
    pub pattern: String,
    pub message: String,
}

/// Checks every pattern of `triggers` compiles, for `kiln validate`.
pub fn check(triggers: &[Trigger]) -> Result<(), PatternError> {
    for trigger in triggers {
        let config = &trigger.git_configuration;
        for filter in &config.push {
            for part in [&filter.tags, &filter.branches, &filter.file_paths]
                .into_iter()
                .flatten()
            {
                for pattern in part.includes.iter().chain(&part.excludes) {
                    glob(pattern).map_err(|message| PatternError {
                        action: config.source_action_name.clone(),
                        pattern: pattern.clone(),
                        message,
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Whether `push` to the repository of the source action `action` starts an execution, as
/// CodePipeline decides. With no trigger naming the action, a push to `default_branch` (the
/// action's `BranchName`) does. With triggers, a push does when any push filter of a trigger
/// naming the action matches it: every part the filter gives must match (branches on the branch
/// name; tags on any tag pushed, so a filter with tags matches tag pushes only; file paths on any
/// changed file), and within a part an exclude wins over an include. A part with excludes only
/// includes everything else. A pattern that is not a glob matches nothing (see [`check`]).
pub fn starts(triggers: &[Trigger], action: &str, default_branch: &str, push: &Push) -> Decision {
    let mine: Vec<&Trigger> = triggers
        .iter()
        .filter(|t| t.git_configuration.source_action_name == action)
        .collect();
    if mine.is_empty() {
        return match push.branch {
            Some(branch) if branch == default_branch => Decision {
                start: true,
                reason: format!("a push to {branch}, the branch of {action}"),
            },
            Some(branch) => Decision {
                start: false,
                reason: format!(
                    "{action} has no trigger and follows {default_branch}, not {branch}"
                ),
            },
            None => Decision {
                start: false,
                reason: format!("{action} has no trigger and a push of tags moves no branch"),
            },
        };
    }
    let filters: Vec<&GitPushFilter> = mine
        .iter()
        .flat_map(|t| &t.git_configuration.push)
        .collect();
    if filters.is_empty() {
        return Decision {
            start: false,
            reason: format!("the triggers of {action} have no push filter"),
        };
    }
    let mut why_not = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        match matches(filter, push) {
            Ok(how) => {
                return Decision {
                    start: true,
                    reason: format!("push filter {} of {action} matched: {how}", i + 1),
                };
            }
            Err(why) => why_not.push(format!("filter {}: {why}", i + 1)),
        }
    }
    Decision {
        start: false,
        reason: format!(
            "no push filter of {action} matched ({})",
            why_not.join("; ")
        ),
    }
}

/// How `filter` matches `push`, or why it does not.
fn matches(filter: &GitPushFilter, push: &Push) -> Result<String, String> {
    let mut how = Vec::new();
    if let Some(tags) = &filter.tags {
        if push.tags.is_empty() {
            return Err("it filters tags, and no tag was pushed".to_string());
        }
        let tag = first_match(tags, push.tags.iter().map(String::as_str)).ok_or_else(|| {
            format!(
                "no tag of {} is included and not excluded",
                push.tags.join(", ")
            )
        })?;
        how.push(format!("tag {tag}"));
    } else if push.branch.is_none() {
        return Err("a push of tags, and it filters none".to_string());
    }
    if let Some(branches) = &filter.branches {
        let Some(branch) = push.branch else {
            return Err("it filters branches, and no branch was pushed".to_string());
        };
        first_match(branches, std::iter::once(branch))
            .ok_or_else(|| format!("branch {branch} is not included, or is excluded"))?;
        how.push(format!("branch {branch}"));
    }
    if let Some(paths) = &filter.file_paths {
        let file = first_match(paths, push.files.iter().map(String::as_str))
            .ok_or_else(|| "no changed file is included and not excluded".to_string())?;
        how.push(format!("file {file}"));
    }
    if how.is_empty() {
        how.push("it filters nothing".to_string());
    }
    Ok(how.join(", "))
}

/// The first of `names` that `filter` includes (everything, when it has no includes) and does not
/// exclude.
fn first_match<'n>(filter: &Filter, mut names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    let compile = |patterns: &[String]| -> Vec<GlobMatcher> {
        patterns.iter().filter_map(|p| glob(p).ok()).collect()
    };
    let includes = compile(&filter.includes);
    let excludes = compile(&filter.excludes);
    let everything = filter.includes.is_empty();
    names.find(|name| {
        (everything || includes.iter().any(|g| g.is_match(name)))
            && !excludes.iter().any(|g| g.is_match(name))
    })
}

/// A CodePipeline glob compiled (see the module's documentation).
fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(&recursive(pattern))
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

/// `pattern` with each `**` that is not a whole path segment (and not in a `{}` group, in a
/// `[]` set or escaped) rewritten `{*,*/**/*}`, which globset reads as CodePipeline reads `**`:
/// any run of characters, across segments.
fn recursive(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len());
    let (mut in_set, mut in_group) = (false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                    i += 1;
                }
            }
            '[' if !in_set => {
                in_set = true;
                out.push(c);
                // A `]` (or `!]`) right after the opening bracket is a member, not the end.
                if chars.get(i + 1) == Some(&'!') {
                    out.push('!');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            ']' if in_set => {
                in_set = false;
                out.push(c);
            }
            '{' if !in_set => {
                in_group = true;
                out.push(c);
            }
            '}' if !in_set => {
                in_group = false;
                out.push(c);
            }
            '*' if !in_set && chars.get(i + 1) == Some(&'*') => {
                let mut end = i;
                while chars.get(end) == Some(&'*') {
                    end += 1;
                }
                let whole =
                    (i == 0 || chars[i - 1] == '/') && (end == chars.len() || chars[end] == '/');
                if whole || in_group {
                    out.push_str("**");
                } else {
                    out.push_str("{*,*/**/*}");
                }
                i = end;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::pipeline::GitConfiguration;

    fn filter(includes: &[&str], excludes: &[&str]) -> Option<Filter> {
        Some(Filter {
            includes: includes.iter().map(|s| s.to_string()).collect(),
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn trigger(action: &str, push: Vec<GitPushFilter>) -> Trigger {
        Trigger {
            provider_type: "CodeStarSourceConnection".to_string(),
            git_configuration: GitConfiguration {
                source_action_name: action.to_string(),
                push,
                pull_request: Vec::new(),
            },
        }
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Whether a push of `branch` (or of `tags` alone) changing `files` starts `Source`.
    fn start(triggers: &[Trigger], branch: Option<&str>, tags: &[&str], files: &[&str]) -> bool {
        let (tags, files) = (strings(tags), strings(files));
        let push = Push {
            branch,
            tags: &tags,
            files: &files,
        };
        starts(triggers, "Source", "main", &push).start
    }

    fn glob_matches(pattern: &str, name: &str) -> bool {
        glob(pattern).expect("a valid pattern").is_match(name)
    }

    #[test]
    fn without_a_trigger_a_push_to_the_action_branch_starts() {
        let other = [trigger("Other", vec![GitPushFilter::default()])];
        for triggers in [&[][..], &other[..]] {
            assert!(start(triggers, Some("main"), &[], &["a.txt"]));
            assert!(!start(triggers, Some("feature/x"), &[], &["a.txt"]));
            assert!(!start(triggers, None, &["v1"], &[]));
        }
        let tags = strings(&[]);
        let decision = starts(
            &[],
            "Source",
            "main",
            &Push {
                branch: Some("dev"),
                tags: &tags,
                files: &tags,
            },
        );
        assert!(
            decision.reason.contains("follows main, not dev"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn with_triggers_the_action_branch_is_not_the_default() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["release/**"], &[]),
                ..Default::default()
            }],
        )];
        assert!(!start(&triggers, Some("main"), &[], &["a"]));
        assert!(start(&triggers, Some("release/1.0"), &[], &["a"]));
        assert!(start(&triggers, Some("release/1/hotfix"), &[], &["a"]));
    }

    #[test]
    fn a_trigger_without_push_filters_starts_nothing() {
        let triggers = [trigger("Source", vec![])];
        assert!(!start(&triggers, Some("main"), &[], &["a"]));
    }

    #[test]
    fn branch_globs_star_stays_in_a_segment_double_star_crosses() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["feature/*"], &[]),
                ..Default::default()
            }],
        )];
        assert!(start(&triggers, Some("feature/a"), &[], &[]));
        assert!(!start(&triggers, Some("feature/a/b"), &[], &[]));
        assert!(!start(&triggers, Some("main"), &[], &[]));
    }

    #[test]
    fn an_exclude_wins_over_an_include() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["**"], &["main", "wip/*"]),
                ..Default::default()
            }],
        )];
        assert!(start(&triggers, Some("dev"), &[], &[]));
        assert!(!start(&triggers, Some("main"), &[], &[]));
        assert!(!start(&triggers, Some("wip/x"), &[], &[]));
        let only_excludes = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&[], &["main"]),
                ..Default::default()
            }],
        )];
        assert!(start(&only_excludes, Some("dev"), &[], &[]));
        assert!(!start(&only_excludes, Some("main"), &[], &[]));
    }

    #[test]
    fn a_tag_filter_matches_tag_pushes_only() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                tags: filter(&["release-v*"], &["release-v2"]),
                ..Default::default()
            }],
        )];
        assert!(start(&triggers, None, &["release-v1"], &[]));
        assert!(start(&triggers, None, &["other", "release-v0"], &[]));
        assert!(!start(&triggers, None, &["release-v2"], &[]));
        assert!(!start(&triggers, Some("main"), &[], &["a"]));
        assert!(!start(&triggers, None, &["v1"], &[]));
    }

    #[test]
    fn a_tag_push_does_not_match_a_branch_filter() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["**"], &[]),
                ..Default::default()
            }],
        )];
        assert!(!start(&triggers, None, &["v1"], &[]));
    }

    #[test]
    fn file_paths_match_any_changed_file_not_excluded() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["main"], &[]),
                file_paths: filter(
                    &["projectA/**", "common/**/*.js"],
                    &["**/README.md", "**/LICENSE"],
                ),
                ..Default::default()
            }],
        )];
        assert!(start(
            &triggers,
            Some("main"),
            &[],
            &["projectA/src/deep/a.rs"]
        ));
        assert!(start(&triggers, Some("main"), &[], &["common/x.js"]));
        assert!(start(&triggers, Some("main"), &[], &["common/a/b/x.js"]));
        assert!(!start(&triggers, Some("main"), &[], &["common/x.ts"]));
        assert!(!start(
            &triggers,
            Some("main"),
            &[],
            &["projectA/README.md"]
        ));
        assert!(!start(
            &triggers,
            Some("main"),
            &[],
            &["README.md", "projectB/a"]
        ));
        assert!(start(
            &triggers,
            Some("main"),
            &[],
            &["projectA/README.md", "projectA/b.rs"]
        ));
        // Every part must match: the branch as well as the files.
        assert!(!start(&triggers, Some("dev"), &[], &["projectA/a"]));
        assert!(!start(&triggers, Some("main"), &[], &[]));
    }

    #[test]
    fn any_filter_of_any_trigger_for_the_action_starts() {
        let triggers = [
            trigger(
                "Source",
                vec![GitPushFilter {
                    branches: filter(&["main"], &[]),
                    ..Default::default()
                }],
            ),
            trigger(
                "Source",
                vec![
                    GitPushFilter {
                        tags: filter(&["v*"], &[]),
                        ..Default::default()
                    },
                    GitPushFilter {
                        branches: filter(&["dev"], &[]),
                        ..Default::default()
                    },
                ],
            ),
        ];
        assert!(start(&triggers, Some("main"), &[], &[]));
        assert!(start(&triggers, Some("dev"), &[], &[]));
        assert!(start(&triggers, None, &["v2"], &[]));
        assert!(!start(&triggers, Some("other"), &[], &[]));
        let tags = strings(&[]);
        let decision = starts(
            &triggers,
            "Source",
            "main",
            &Push {
                branch: Some("dev"),
                tags: &tags,
                files: &tags,
            },
        );
        assert_eq!(
            decision.reason,
            "push filter 3 of Source matched: branch dev"
        );
    }

    #[test]
    fn the_documented_glob_examples() {
        // *.java: a file name ending in .java (in the top folder: `*` does not cross a `/`).
        assert!(glob_matches("*.java", "Main.java"));
        assert!(!glob_matches("*.java", "src/Main.java"));
        // *.*: names containing a dot.
        assert!(glob_matches("*.*", "a.b"));
        assert!(!glob_matches("*.*", "Makefile"));
        // *.{java,class}: ending in .java or .class.
        assert!(glob_matches("*.{java,class}", "A.class"));
        assert!(glob_matches("*.{java,class}", "A.java"));
        assert!(!glob_matches("*.{java,class}", "A.jar"));
        // foo.?: foo. and one character.
        assert!(glob_matches("foo.?", "foo.c"));
        assert!(!glob_matches("foo.?", "foo.cc"));
        // ?: one character of a name, never a `/`.
        assert!(!glob_matches("a?b", "a/b"));
        // \ escapes.
        assert!(glob_matches(r"\*x", "*x"));
        assert!(!glob_matches(r"\*x", "ax"));
        // [ ]: one of a set; `*`, `?` and `\` are themselves inside; `-` first is itself; `!` negates.
        assert!(glob_matches("[abc]", "b"));
        assert!(!glob_matches("[abc]", "d"));
        assert!(glob_matches("[*?]", "?"));
        assert!(glob_matches("[-a]", "-"));
        assert!(glob_matches("[!a]", "b"));
        assert!(!glob_matches("[!a]", "a"));
        // my-file.jar: one file at the top; directory/my-file.jar: one in a folder.
        assert!(glob_matches("my-file.jar", "my-file.jar"));
        assert!(!glob_matches("my-file.jar", "lib/my-file.jar"));
        assert!(glob_matches(
            "directory/subdirectory/my-file.jar",
            "directory/subdirectory/my-file.jar"
        ));
        // **: every file.
        assert!(glob_matches("**", "a/b/c.txt"));
        assert!(glob_matches("**", "top.txt"));
        // directory/**: everything in directory, at any depth.
        assert!(glob_matches("directory/**", "directory/a/b"));
        assert!(!glob_matches("directory/**", "other/a"));
        // directory/*: the files of directory, not of its subfolders.
        assert!(glob_matches("directory/*", "directory/a"));
        assert!(!glob_matches("directory/*", "directory/a/b"));
        // { }: any of the sub-patterns, separated by `,`.
        assert!(glob_matches("{src,test}/*.rs", "test/a.rs"));
        assert!(!glob_matches("{src,test}/*.rs", "bench/a.rs"));
    }

    #[test]
    fn a_double_star_inside_a_name_crosses_folders() {
        assert!(glob_matches("**.js", "a.js"));
        assert!(glob_matches("**.js", "a/b/c.js"));
        assert!(glob_matches("src**", "src/a/b"));
        assert!(glob_matches("src**", "srcfoo"));
        assert!(!glob_matches("src**", "lib/src"));
        assert!(glob_matches(r"a\*\*b", "a**b"));
        assert!(!glob_matches(r"a\*\*b", "axb"));
        assert!(glob_matches("[**]x", "*x"));
    }

    #[test]
    fn a_pattern_that_is_not_a_glob_is_named_and_matches_nothing() {
        let triggers = [trigger(
            "Source",
            vec![GitPushFilter {
                branches: filter(&["[main"], &[]),
                ..Default::default()
            }],
        )];
        let err = check(&triggers).expect_err("an unclosed set");
        assert_eq!(err.pattern, "[main");
        assert_eq!(err.action, "Source");
        assert!(!start(&triggers, Some("main"), &[], &[]));
        assert!(!start(&triggers, Some("[main"), &[], &[]));
    }
}
