//! The `hook` plugin: one AppSpec hook script, run through the host's `exec` (the deployment gives
//! it the CodeDeploy variables as the step's environment, the revision as its directory, and its
//! time limit, user and confinement through the step's policy).
//!
//! Argument: the script's absolute path. The outcome's status is the script's exit code, 128 plus
//! the signal that killed it, or 124 when it ran out of time.

use kiln_sdk::{Command, Context, Outcome, Plugin, exec};

struct Hook;

impl Plugin for Hook {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let [script] = args.as_slice() else {
            return Outcome::failure(2, "usage: hook SCRIPT");
        };
        match exec::run(&Command::new([script.as_str()], &context)) {
            Ok(exit) if exit.timed_out => Outcome::failure(124, "ran out of time"),
            Ok(exit) if exit.success() => Outcome::success(),
            Ok(exit) => match (exit.code, exit.signal) {
                (Some(code), _) => Outcome::failure(code, format!("exit code {code}")),
                (None, Some(signal)) => {
                    Outcome::failure(128 + signal, format!("killed by signal {signal}"))
                }
                (None, None) => Outcome::failure(1, "ended without an exit code"),
            },
            Err(e) => Outcome::failure(127, e),
        }
    }
}

kiln_sdk::plugin!(Hook);
