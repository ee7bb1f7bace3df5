//! A build's own plugins: named in `kiln.toml` (pinned by `kiln.lock`) or given with `--plugin`.
//!
//! Each is checked before the source is downloaded (its name, its bytes against the lock, the
//! interface it was built for), so a plugin that cannot run fails the build before any phase does.
//! Each is then a command on the build's `PATH`: a small shim runs `kiln plugin exec`, so a plugin
//! works wherever a program does (after `cd x &&`, in a pipe, in a script, with the shell's quoting,
//! globbing and expansion) and its stdin, stdout and exit status are the shell's. A line whose first
//! word is the plugin and which is one simple command keeps the session-changing form: the shell
//! expands the words, the plugin runs as a step, and the variables and directory it returns carry
//! over to the next command.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugins::Inspected;
use crate::sandbox::Grant;

pub use crate::plugins::name::refusal as name_refusal;

/// Reads a plugin's component and checks it as the sandbox will before compiling it: its bytes
/// against the digest the lock pinned, and the interface it was built for. What it returns says
/// what the plugin declares.
pub fn check_file(path: &Path, sha256: Option<&str>) -> Result<Inspected, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::sandbox::check_component(&bytes, sha256).map(|checked| checked.inspected)
}

/// What a plugin's shim tells `kiln plugin exec`: the component, where its compiled form is, and
/// the step's policy. Written by kiln into the build's tools folder, which the build's confined
/// commands see read-only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub name: String,
    pub component: PathBuf,
    /// Where the compiled component was linked (a cache directory of its own).
    pub compiled_dir: PathBuf,
    pub sha256: Option<String>,
    /// What its user granted (for a registry plugin, kiln.lock's grant).
    pub grant: Grant,
    pub build_id: String,
    pub source_dir: PathBuf,
    pub temp_dir: PathBuf,
    /// A file holding the phase that runs (the build rewrites it at each phase).
    pub phase_file: PathBuf,
    pub network: bool,
    pub local_network: bool,
    pub memory_limit: usize,
}

/// Writes `NAME` (the shim) and `plugins/NAME.json` (its spec) into the build's tools folder; the
/// component and its compiled form are linked beside the spec by the caller.
pub fn write_shim(tools: &Path, kiln: &Path, spec: &ShimSpec) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tools.join("plugins");
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join(format!("{}.json", spec.name));
    std::fs::write(&spec_path, serde_json::to_vec_pretty(spec)?)?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let script = tools.join(&spec.name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# kiln plugin `{}`: runs it as a command of this build.\nexec {} plugin exec {} \"$@\"\n",
            spec.name,
            quote(kiln),
            quote(&spec_path)
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
}

/// Links `from` to `to` (a copy where a link cannot be made), replacing nothing.
pub fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        return Ok(());
    }
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

/// When `line` is one simple command whose first word is a plain word, that word and the rest of
/// the line; `None` for anything the shell must run as a whole (a pipe, a list, a redirection, a
/// subshell, several lines).
pub fn simple_command(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    let mut chars = line.char_indices().peekable();
    let (mut single, mut double, mut backtick) = (false, false, false);
    let mut depth = 0usize;
    while let Some((_, c)) = chars.next() {
        if single {
            single = c != '\'';
            continue;
        }
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if !double => single = true,
            '"' => double = !double,
            '`' => backtick = !backtick,
            '$' if chars.peek().is_some_and(|(_, n)| *n == '(') => {
                chars.next();
                depth += 1;
            }
            '(' if depth > 0 => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if double || backtick || depth > 0 => {}
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '\n' | '\r' => return None,
            _ => {}
        }
    }
    if single || double || backtick || depth > 0 {
        return None;
    }
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let first = &line[..end];
    let plain = !first.is_empty()
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    plain.then(|| (first, line[end..].trim_start()))
}

/// Whether the shell would leave these words as they are, split on blanks: no quoting, expansion,
/// globbing or comment to apply.
pub fn plain_words(rest: &str) -> bool {
    !rest.chars().any(|c| {
        matches!(
            c,
            '$' | '`' | '\'' | '"' | '\\' | '*' | '?' | '[' | '~' | '{' | '#'
        )
    })
}

/// Runs a plugin as a command, for its shim: the process's arguments, directory, environment,
/// stdin and stdout are the step's; the outcome's status is the exit status. Variables and a
/// directory the plugin returns cannot reach the shell that ran the command, and are left.
pub async fn run_shim(spec_path: &Path, args: &[String]) -> i32 {
    use crate::sandbox::{
        Confinement, ExecEnv, Level, LogSink, PluginFile, Policy, Preopen, Reaper, Sandbox,
        StepContext, Stream,
    };
    use std::io::Write;
    use std::sync::Arc;

    struct Stdio {
        verbose: bool,
    }
    impl LogSink for Stdio {
        fn output(&self, stream: Stream, line: &str) {
            let _ = match stream {
                Stream::Stdout => writeln!(std::io::stdout(), "{line}"),
                Stream::Stderr => writeln!(std::io::stderr(), "{line}"),
            };
        }
        // As a build's log shows them: the sandbox already names the plugin in its lines.
        fn plugin(&self, level: Level, message: &str) {
            if let Some(line) = level.line(message, self.verbose) {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    let fail = |name: &str, message: &str| {
        let _ = writeln!(std::io::stderr(), "{name}: {message}");
        126
    };
    let spec: ShimSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => return fail("kiln plugin exec", &format!("{}: {e}", spec_path.display())),
    };
    let mut sandbox = match Sandbox::new(Some(spec.compiled_dir.clone())) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                &spec.name,
                &format!("cannot start the WebAssembly engine: {e:#}"),
            );
        }
    };
    sandbox.inherit_stdio();
    sandbox.register(
        &spec.name,
        PluginFile {
            path: spec.component.clone(),
            sha256: spec.sha256.clone(),
            grant: spec.grant.clone(),
        },
    );
    let cwd = std::env::current_dir().unwrap_or_else(|_| spec.source_dir.clone());
    let phase = std::fs::read_to_string(&spec.phase_file)
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|_| "BUILD".to_string());
    // In the build's own namespaces its temp folder is its /tmp (TMPDIR), not the host's path.
    let temp_dir = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(|| spec.temp_dir.clone());
    let writable: Vec<PathBuf> = [spec.source_dir.clone(), temp_dir.clone()]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let context = StepContext {
        build_id: spec.build_id.clone(),
        phase,
        source_dir: spec.source_dir.clone(),
        cwd,
        env: std::env::vars().collect(),
        temp_dir: temp_dir.clone(),
    };
    let confinement = Confinement {
        writable: writable.clone(),
        readable: vec![PathBuf::from("/")],
        network: spec.network,
        required: false,
        enabled: true,
    };
    let exec = match confinement.prepare() {
        Ok(prepared) => ExecEnv {
            prepared: Arc::new(prepared),
            reaper: Reaper::default(),
            run_as: None,
            os: None,
        },
        Err(e) => return fail(&spec.name, &format!("cannot confine its programs: {e}")),
    };
    let policy = Policy {
        preopens: writable
            .into_iter()
            .map(|path| Preopen {
                path,
                writable: true,
            })
            .collect(),
        allow_exec: true,
        network: spec.network,
        local_network: spec.local_network,
        timeout: None,
        memory_limit: spec.memory_limit,
        ..Policy::default()
    };
    let sink: Arc<dyn LogSink> = Arc::new(Stdio {
        verbose: std::env::var_os("KILN_PLUGIN_VERBOSE").is_some(),
    });
    match sandbox
        .run(&spec.name, args, &context, &policy, Some(exec), sink)
        .await
    {
        Ok(outcome) => {
            if outcome.status != 0
                && let Some(message) = &outcome.message
            {
                let _ = writeln!(std::io::stderr(), "{}: {message}", spec.name);
            }
            match outcome.status {
                0 => 0,
                s if (1..=255).contains(&s) => s,
                _ => 1,
            }
        }
        Err(e) => fail(&spec.name, &e.to_string()),
    }
}

/// Compiles (or loads compiled) each of the build's plugins, says so in the log, and makes each a
/// command on the build's PATH (`shims`: the tools folder and the kiln the shims run).
pub(super) fn load(
    sandbox: &crate::sandbox::Sandbox,
    options: &super::BuildOptions,
    log: &super::log::BuildLog,
    shims: Option<(&Path, &Path)>,
    build_id: &str,
    source_dir: &Path,
    temp_dir: &Path,
) -> Result<(), super::BuildError> {
    for (name, path, sha256) in options.user_plugins() {
        let refused = |message: String| super::BuildError::Plugin {
            name: name.to_string(),
            message,
        };
        let info = sandbox.check(name).map_err(|e| refused(e.to_string()))?;
        let locked = options.locked_plugins.iter().find(|l| l.name == name);
        let from = match locked {
            Some(l) => format!("{} ({})", l.reference, l.sha256),
            None => path.display().to_string(),
        };
        let policy = match (locked, &info.declared) {
            (Some(l), declared) => {
                let declared = declared.clone().unwrap_or_default();
                format!(
                    "declares {}; kiln.lock grants {}",
                    declared.summary(),
                    declared.intersect(&l.granted).summary()
                )
            }
            (None, _) => "a build's full policy".to_string(),
        };
        let load = match info.compiled {
            Some(took) => format!("compiled in {} ms", took.as_millis()),
            None => "loaded compiled".to_string(),
        };
        log.container(&format!(
            "Plugin {name}: {from}, interface {}, {policy}, {load}",
            info.interface_version
        ));
        let Some((tools, kiln)) = shims else { continue };
        let dir = tools.join("plugins");
        let compiled_dir = dir.join("compiled");
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&compiled_dir)?;
            let component = dir.join(format!("{name}.wasm"));
            link_or_copy(path, &component)?;
            if let Some(compiled) = sandbox.compiled_file(name)
                && let Some(file) = compiled.file_name()
            {
                link_or_copy(&compiled, &compiled_dir.join(file))?;
            }
            write_shim(
                tools,
                kiln,
                &ShimSpec {
                    name: name.to_string(),
                    component,
                    compiled_dir: compiled_dir.clone(),
                    sha256: sha256.map(str::to_string),
                    grant: sandbox.grant(name).cloned().unwrap_or(Grant::Local),
                    build_id: build_id.to_string(),
                    source_dir: source_dir.to_path_buf(),
                    temp_dir: temp_dir.to_path_buf(),
                    phase_file: dir.join("phase"),
                    network: options.network != super::Network::None,
                    local_network: options.network == super::Network::Host,
                    memory_limit: options.memory_limit,
                },
            )
        })();
        if let Err(e) = written {
            log.container(&format!(
                "warning: plugin `{name}` is not a command on the build's PATH ({e}); lines that start with it still run it"
            ));
        }
    }
    Ok(())
}

/// Variables a plugin other than kiln's shell cannot change: kiln's built-ins.
pub fn is_builtin_var(name: &str) -> bool {
    name.starts_with("CODEBUILD_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_command_is_told_from_what_the_shell_must_run() {
        assert_eq!(
            simple_command("probe args \"$WHO\" 'a b' ${X}s"),
            Some(("probe", "args \"$WHO\" 'a b' ${X}s"))
        );
        assert_eq!(simple_command("probe"), Some(("probe", "")));
        assert_eq!(
            simple_command("probe $(ls | head -1) `a|b`"),
            Some(("probe", "$(ls | head -1) `a|b`"))
        );
        assert_eq!(
            simple_command("probe 'a|b' \"c;d\" e\\&f"),
            Some(("probe", "'a|b' \"c;d\" e\\&f"))
        );
        for shell in [
            "gitrev || true",
            "probe | wc -l",
            "probe > out",
            "probe; echo",
            "probe &",
            "probe\necho",
            "(probe)",
            "probe 'unclosed",
            "probe $(unclosed",
            "X=1 probe",
            "\"probe\" x",
        ] {
            let found = simple_command(shell).filter(|(first, _)| *first == "probe");
            assert_eq!(found, None, "{shell}");
        }
    }

    #[test]
    fn plain_words_need_no_shell() {
        assert!(plain_words("args a b.c d-e"));
        assert!(!plain_words("args $HOME"));
        assert!(!plain_words("args *.txt"));
        assert!(!plain_words("args '$HOME'"));
        assert!(!plain_words("args ~/x"));
    }
}
