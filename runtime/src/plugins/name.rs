//! What a plugin may be called: a command name of a build's shell that no builtin and nothing of
//! kiln's already is (a plugin is a command on the build's PATH, and a builtin would always win).

/// Shell builtins and keywords (POSIX and bash): a plugin of such a name would never run as a
/// command, the shell's own would.
pub const SHELL_BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// Names kiln itself uses in a build: its own plugins and the programs it puts on the build's PATH.
pub const RESERVED: &[&str] = &[
    "shell",
    "artifacts",
    "install",
    "hook",
    "kiln",
    "sudo",
    "codebuild-hash-files",
];

/// Why a plugin's name cannot be a command of a build; `None` when it can.
pub fn refusal(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Some(format!(
            "`{name}` is not a command name (letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`)"
        ));
    }
    if SHELL_BUILTINS.contains(&name) {
        return Some(format!(
            "`{name}` is a shell builtin: a line `{name} …` runs the shell's own, never the plugin; give the plugin another name"
        ));
    }
    if RESERVED.contains(&name) {
        return Some(format!(
            "`{name}` is kiln's own ({}); give the plugin another name",
            if ["kiln", "sudo", "codebuild-hash-files"].contains(&name) {
                "a program on every build's PATH"
            } else {
                "one of its built-in plugins"
            }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_that_would_never_run_are_refused() {
        assert_eq!(refusal("checksum"), None);
        assert_eq!(refusal("git-rev"), None);
        assert!(refusal("echo").unwrap().contains("shell builtin"));
        assert!(refusal("cd").unwrap().contains("shell builtin"));
        assert!(refusal("shell").unwrap().contains("built-in plugins"));
        assert!(refusal("sudo").unwrap().contains("PATH"));
        for bad in ["", "a/b", "-x", "a b", "../x", "a$b"] {
            assert!(
                refusal(bad).unwrap().contains("not a command name"),
                "{bad}"
            );
        }
    }
}
