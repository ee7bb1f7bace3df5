//! What a plugin may do beyond its step's directories: the programs it runs, the hosts it reaches,
//! the variables it reads, the directories it writes outside the workspace.
//!
//! A plugin declares what it needs in its `kiln:capabilities` custom section (kiln-sdk's `plugin!`
//! writes it); the user grants at `kiln plugin add`, and `kiln.lock` records the grant. A step gets
//! the intersection of the two. The section's text is one capability per line, `KIND VALUE`:
//!
//! ```text
//! exec git
//! network api.github.com
//! env GITHUB_TOKEN
//! write /var/cache/acme
//! ```

use serde::{Deserialize, Serialize};

/// Capabilities, declared by a plugin or granted by its user. Each list is sorted and without
/// duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Host programs it may run, by name (`git`) or absolute path.
    pub exec: Vec<String>,
    /// Hosts (names or addresses) it may connect to.
    pub network: Vec<String>,
    /// Environment variables of the step it may read.
    pub env: Vec<String>,
    /// Absolute directories outside the workspace it may write.
    pub write: Vec<String>,
}

/// Which of the two sides refused a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuser {
    /// The plugin did not declare it in its `kiln:capabilities` section.
    Plugin,
    /// The user did not grant it (`kiln.lock`).
    Lock,
}

impl Capabilities {
    /// Reads a `kiln:capabilities` section. Unknown kinds and malformed lines are errors, with their
    /// line: a plugin whose request kiln cannot read gets nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| {
                    format!("kiln:capabilities line {}: `{line}` has no value", i + 1)
                })?;
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(format!(
                    "kiln:capabilities line {}: `{line}` has no usable value",
                    i + 1
                ));
            }
            let list = match kind {
                "exec" => &mut out.exec,
                "network" => &mut out.network,
                "env" => &mut out.env,
                "write" => {
                    let trimmed = if value == "/" {
                        value
                    } else {
                        value.strip_suffix('/').unwrap_or(value)
                    };
                    let plain = trimmed == "/"
                        || trimmed
                            .split('/')
                            .skip(1)
                            .all(|part| !part.is_empty() && part != "." && part != "..");
                    if !trimmed.starts_with('/') || !plain {
                        return Err(format!(
                            "kiln:capabilities line {}: `write {value}` must be an absolute directory, without `.`, `..` or `//`",
                            i + 1
                        ));
                    }
                    out.write.push(trimmed.to_string());
                    continue;
                }
                other => {
                    return Err(format!(
                        "kiln:capabilities line {}: unknown capability `{other}` (expected exec, network, env or write)",
                        i + 1
                    ));
                }
            };
            list.push(value.to_string());
        }
        out.normalize();
        Ok(out)
    }

    /// The section's text for these capabilities (what [`Capabilities::parse`] reads).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (kind, list) in self.lists() {
            for value in list {
                out.push_str(kind);
                out.push(' ');
                out.push_str(value);
                out.push('\n');
            }
        }
        out
    }

    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, l)| l.is_empty())
    }

    /// What both allow.
    pub fn intersect(&self, other: &Self) -> Self {
        let both = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|x| b.contains(x)).cloned().collect()
        };
        Self {
            exec: both(&self.exec, &other.exec),
            network: both(&self.network, &other.network),
            env: both(&self.env, &other.env),
            write: both(&self.write, &other.write),
        }
    }

    /// What `self` allows and `other` does not.
    pub fn minus(&self, other: &Self) -> Self {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|x| !b.contains(x)).cloned().collect()
        };
        Self {
            exec: only(&self.exec, &other.exec),
            network: only(&self.network, &other.network),
            env: only(&self.env, &other.env),
            write: only(&self.write, &other.write),
        }
    }

    /// The programs among `exec` that run whatever they are given (shells, interpreters,
    /// launchers): granting one grants every program the build can run.
    pub fn open_ended_exec(&self) -> Vec<&str> {
        self.exec
            .iter()
            .map(String::as_str)
            .filter(|p| runs_anything(p))
            .collect()
    }

    /// The directories among `write` that reach far (the root, a system folder, a home): granting
    /// one lets the plugin change what every build and user of the machine relies on.
    pub fn wide_writes(&self) -> Vec<&str> {
        self.write
            .iter()
            .map(String::as_str)
            .filter(|dir| {
                let depth = dir.split('/').filter(|p| !p.is_empty()).count();
                let under = |top: &str| *dir == top || dir.starts_with(&format!("{top}/"));
                depth <= 1
                    || (dir.starts_with("/home/") && depth <= 2)
                    || [
                        "/etc", "/root", "/usr", "/bin", "/sbin", "/lib", "/boot", "/opt",
                    ]
                    .iter()
                    .any(|top| under(top))
            })
            .collect()
    }

    /// Who refuses `value` of `kind` (`"exec"`, `"network"`, `"env"`, `"write"`) when `self` is what
    /// the plugin declared and `granted` what the lock grants; `None` when both allow it.
    pub fn refuser(&self, granted: &Self, kind: &str, value: &str) -> Option<Refuser> {
        let has = |c: &Self| {
            c.lists()
                .iter()
                .find(|(k, _)| *k == kind)
                .is_some_and(|(_, l)| l.iter().any(|v| v == value))
        };
        if !has(self) {
            Some(Refuser::Plugin)
        } else if !has(granted) {
            Some(Refuser::Lock)
        } else {
            None
        }
    }

    /// A one-line summary: `exec: git; env: GITHUB_TOKEN` (or `nothing`).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .lists()
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(k, l)| format!("{k}: {}", l.join(", ")))
            .collect();
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join("; ")
        }
    }

    fn lists(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("exec", &self.exec),
            ("network", &self.network),
            ("env", &self.env),
            ("write", &self.write),
        ]
    }

    fn normalize(&mut self) {
        for list in [
            &mut self.exec,
            &mut self.network,
            &mut self.env,
            &mut self.write,
        ] {
            list.sort();
            list.dedup();
        }
    }
}

impl std::fmt::Display for Refuser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refuser::Plugin => "the plugin does not declare it (its kiln:capabilities section)",
            Refuser::Lock => "kiln.lock does not grant it (kiln plugin add NAME REF --accept grants what a plugin declares)",
        })
    }
}

/// Whether a program (by name or path) can run what its arguments or input say: a shell, an
/// interpreter, a launcher of other programs, or a tool whose options run one (`git -c
/// alias.x='!sh …'`, `tar --to-command`, `sed e`, `rsync -e`). A grant names a program, never the
/// arguments it is given.
pub fn runs_anything(program: &str) -> bool {
    const PROGRAMS: &[&str] = &[
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "fish",
        "csh",
        "tcsh",
        "busybox",
        "env",
        "xargs",
        "sudo",
        "su",
        "doas",
        "nohup",
        "nice",
        "timeout",
        "time",
        "setsid",
        "stdbuf",
        "chroot",
        "unshare",
        "nsenter",
        "strace",
        "ssh",
        "script",
        "expect",
        "make",
        "awk",
        "gawk",
        "mawk",
        "find",
        "python",
        "perl",
        "ruby",
        "node",
        "nodejs",
        "deno",
        "bun",
        "php",
        "lua",
        "tclsh",
        "wish",
        "java",
        "osascript",
        "pwsh",
        "powershell",
        "git",
        "tar",
        "sed",
        "gsed",
        "rsync",
        "cargo",
        "npm",
        "npx",
        "yarn",
        "pnpm",
        "pip",
        "pip3",
        "docker",
        "podman",
        "kubectl",
        "vim",
        "vi",
        "nvim",
        "emacs",
        "less",
        "more",
        "man",
        "gdb",
        "parallel",
        "watch",
        "flock",
        "ionice",
        "taskset",
        "chrt",
        "systemd-run",
    ];
    let name = program.rsplit('/').next().unwrap_or(program);
    // python3, python3.11, perl5.36, lua5.4...
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    PROGRAMS.contains(&name) || PROGRAMS.contains(&stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_a_plain_absolute_directory_and_a_wide_one_is_named() {
        for bad in [
            "relative",
            "/var/cache/../../home",
            "/a/./b",
            "/a//b",
            "/..",
        ] {
            let e = Capabilities::parse(&format!("write {bad}\n")).unwrap_err();
            assert!(e.contains("directory"), "{bad}: {e}");
        }
        let c = Capabilities::parse(
            "write /var/cache/acme/\nwrite /\nwrite /home/ci\nwrite /etc/acme\nwrite /home/ci/.cache/acme\n",
        )
        .unwrap();
        assert_eq!(
            c.write,
            [
                "/",
                "/etc/acme",
                "/home/ci",
                "/home/ci/.cache/acme",
                "/var/cache/acme"
            ]
        );
        assert_eq!(c.wide_writes(), ["/", "/etc/acme", "/home/ci"]);
    }

    #[test]
    fn shells_interpreters_and_launchers_are_open_ended() {
        for p in [
            "sh",
            "/bin/bash",
            "python3",
            "python3.11",
            "env",
            "xargs",
            "node",
            "lua5.4",
        ] {
            assert!(runs_anything(p), "{p}");
        }
        for p in ["git", "/usr/bin/tar", "/usr/bin/rsync", "cargo"] {
            assert!(runs_anything(p), "{p}");
        }
        for p in [
            "b3sum",
            "shellcheck",
            "envsubst",
            "g++",
            "x264",
            "gzip",
            "curl",
        ] {
            assert!(!runs_anything(p), "{p}");
        }
        let c = Capabilities {
            exec: vec!["b3sum".into(), "sh".into()],
            ..Capabilities::default()
        };
        assert_eq!(c.open_ended_exec(), ["sh"]);
    }

    #[test]
    fn the_section_text_round_trips_and_rejects_what_it_cannot_read() {
        let c =
            Capabilities::parse("exec git\n\nnetwork  api.github.com\nenv B\nenv A\nexec git\n")
                .unwrap();
        assert_eq!(c.exec, ["git"]);
        assert_eq!(c.env, ["A", "B"]);
        assert_eq!(Capabilities::parse(&c.to_text()).unwrap(), c);
        assert!(Capabilities::parse("exec").unwrap_err().contains("line 1"));
        assert!(
            Capabilities::parse("root yes")
                .unwrap_err()
                .contains("unknown capability `root`")
        );
        assert!(Capabilities::parse("write relative/dir").is_err());
        assert!(Capabilities::parse("env A\u{7}B").is_err());
    }

    #[test]
    fn a_step_gets_what_both_allow_and_a_refusal_names_who_refused() {
        let declared = Capabilities::parse("exec git\nexec curl\nenv TOKEN").unwrap();
        let granted = Capabilities::parse("exec git\nenv TOKEN\nenv OTHER").unwrap();
        let both = declared.intersect(&granted);
        assert_eq!(both.exec, ["git"]);
        assert_eq!(both.env, ["TOKEN"]);
        assert_eq!(declared.refuser(&granted, "exec", "git"), None);
        assert_eq!(
            declared.refuser(&granted, "exec", "curl"),
            Some(Refuser::Lock)
        );
        assert_eq!(
            declared.refuser(&granted, "env", "OTHER"),
            Some(Refuser::Plugin)
        );
        assert_eq!(both.summary(), "exec: git; env: TOKEN");
        assert_eq!(Capabilities::default().summary(), "nothing");
    }
}
