//! The `shell` plugin: runs one buildspec command line in sh or bash with CodeBuild 0.2 semantics.
//!
//! CodeBuild 0.2 keeps one logical shell session for a whole build: the working directory and the
//! variables one command sets are seen by the next command and by later phases. kiln gets there
//! without a long-lived shell (which could not tell one command's exit status and output from the
//! next): each command runs in a fresh shell started in the session's directory with the session's
//! environment, and on its way out that shell dumps its directory and exported variables (`export -p`,
//! a builtin, so no extra process) into a state file. The plugin returns what changed against the
//! context's environment (variables set, changed or removed) and the new directory, which kiln applies to
//! the session for the next command: changes, never a replacement, so kiln's own variables stay.
//! `set -a` makes plain assignments (`FOO=bar`) exported, so they carry over as on CodeBuild; bash
//! arrays and functions do not, as on CodeBuild.
//!
//! PowerShell 7 (`pwsh`, for `env.shell: pwsh`) gets the same treatment in its own language: the
//! command runs in a `try` whose `finally` writes the location and the environment variables into
//! the state file in `export -p`'s form, so one parser reads both; PowerShell variables that are not
//! environment variables (`$x = 1`) do not carry over, as bash arrays do not.
//!
//! Arguments: `<shell> <command> [<state-dir>]`, where `<shell>` is `sh`, `bash` or `pwsh` and `<state-dir>`
//! (the context's temp dir by default) is where the state file goes: kiln puts it in memory (`/dev/shm`)
//! where it can, as writing a file per command to disk costs about as much as the shell itself.

mod export;

use kiln_sdk::{Command, Context, EnvChange, Outcome, Plugin, exec, log};

struct Shell;

/// What goes before a command for PowerShell: its status starts as a failure, for a command that
/// throws.
const PWSH_BEFORE: &str = "$global:LASTEXITCODE = 0\n$__kiln_status = 1\ntry {\n";

/// What goes after it: the command's status (a failed native program's exit code, else 1 for a
/// failed cmdlet), then, whatever happened, the state file (`KILN_STATE`, single-quoted).
const PWSH_AFTER: &str = r#"
$__kiln_status = if ($?) { 0 } elseif ($LASTEXITCODE) { $LASTEXITCODE } else { 1 }
} finally {
$__kiln_out = [System.Text.StringBuilder]::new()
[void]$__kiln_out.Append((Get-Location).ProviderPath).Append([char]0)
foreach ($__kiln_e in [System.Environment]::GetEnvironmentVariables().GetEnumerator()) {
if ($__kiln_e.Key -match '^[A-Za-z_][A-Za-z0-9_]*$') {
[void]$__kiln_out.Append('export ').Append($__kiln_e.Key).Append("='").Append(($__kiln_e.Value -replace "'", "'\''")).Append("'`n")
}
}
[System.IO.File]::WriteAllText('KILN_STATE', $__kiln_out.ToString())
}
exit $__kiln_status
"#;

/// Variables that belong to one shell process, not to the session.
const PRIVATE: &[&str] = &["SHLVL", "_", "__kiln_status"];

impl Plugin for Shell {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let (shell, command, state_dir) = match args.as_slice() {
            [shell, command] => (shell, command, context.temp_dir.as_str()),
            [shell, command, dir] => (shell, command, dir.as_str()),
            _ => {
                return Outcome::failure(
                    2,
                    "the shell plugin takes a shell, a command line and a state dir",
                );
            }
        };
        // A fresh name per command: creating a file is cheaper than truncating one, and two steps
        // never share it.
        let nonce = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let state = format!("{}/state-{nonce:016x}", state_dir.trim_end_matches('/'));
        let run = if shell.rsplit('/').next() == Some("pwsh") {
            let script = format!(
                "{PWSH_BEFORE}{command}{}",
                PWSH_AFTER.replace("KILN_STATE", &state.replace('\'', "''"))
            );
            Command::new(
                [
                    shell.as_str(),
                    "-NoLogo",
                    "-NoProfile",
                    "-NonInteractive",
                    "-Command",
                    script.as_str(),
                ],
                &context,
            )
        } else {
            let script = format!(
                "set -a; trap '__kiln_status=$?; {{ printf \"%s\\0\" \"$PWD\"; export -p; }} > {} 2>/dev/null; exit $__kiln_status' EXIT; {}\n",
                quote(&state),
                command
            );
            Command::new([shell.as_str(), "-c", script.as_str()], &context)
        };
        let exit = match exec::run(&run) {
            Ok(exit) => exit,
            Err(e) => return Outcome::failure(127, e),
        };
        let mut outcome = match (exit.timed_out, exit.code, exit.signal) {
            (true, _, _) => Outcome::failure(124, "the command ran out of time and was stopped"),
            (_, Some(0), _) => Outcome::success(),
            (_, Some(code), _) => Outcome::failure(code, format!("exit status {code}")),
            (_, None, Some(signal)) => {
                Outcome::failure(128 + signal, format!("signal: {}", signal_name(signal)))
            }
            (_, None, None) => Outcome::failure(1, "the command ended without a status"),
        };
        // No state file after `exec` in the command, or a kill: the session stays as it was.
        if let Ok(bytes) = std::fs::read(&state) {
            let _ = std::fs::remove_file(&state);
            match parse_state(&bytes) {
                Ok((cwd, env)) => {
                    outcome.cwd = Some(cwd);
                    outcome.env = changes(&context.env, env);
                }
                Err(e) => log::warn(&format!(
                    "kiln could not read the shell's state after this command ({e}); \
                     the next command starts from the state before it"
                )),
            }
        }
        outcome
    }
}

fn parse_state(bytes: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the environment is not UTF-8".to_string())?;
    let (cwd, exports) = text
        .split_once('\0')
        .ok_or_else(|| "the state file is truncated".to_string())?;
    let env = export::parse(exports)?
        .into_iter()
        .filter(|(k, _)| !PRIVATE.contains(&k.as_str()))
        .collect();
    Ok((cwd.to_string(), env))
}

/// What turns `before` into `after`: a set for each new or changed variable, an unset for each one
/// gone, in `after`'s order then `before`'s.
fn changes(before: &[(String, String)], after: Vec<(String, String)>) -> Vec<EnvChange> {
    let old: std::collections::HashMap<&str, &str> = before
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let kept: std::collections::HashSet<&str> = after.iter().map(|(k, _)| k.as_str()).collect();
    let unsets: Vec<EnvChange> = before
        .iter()
        .filter(|(k, _)| !kept.contains(k.as_str()) && !PRIVATE.contains(&k.as_str()))
        .map(|(k, _)| EnvChange::Unset(k.clone()))
        .collect();
    after
        .into_iter()
        .filter(|(k, v)| old.get(k.as_str()) != Some(&v.as_str()))
        .map(EnvChange::Set)
        .chain(unsets)
        .collect()
}

/// Single-quotes a word for sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        15 => "terminated",
        _ => "signal",
    }
}

kiln_sdk::plugin!(Shell);
