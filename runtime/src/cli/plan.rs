//! `kiln build --dry-run`: prints a build's plan (see `kiln::build::plan`) as text or JSON.

use kiln::build::plan::Plan;

use super::{exit, print_json};

/// Prints the plan; the exit code (a plan is always a success).
pub fn print(plan: &Plan, json: bool) -> u8 {
    if json {
        print_json(plan);
        return exit::OK;
    }
    out!(
        "Plan of a build of project {} ({}, shell {}); nothing runs, nothing is recorded.",
        plan.project,
        plan.buildspec.display(),
        plan.shell
    );
    match plan.uncacheable {
        Some(why) => out!("Build cache: not used: {why}"),
        None => out!("Build cache: looked up by the build's inputs before it runs"),
    }
    out!("");
    out!("Phases:");
    for phase in &plan.phases {
        if let Some(why) = phase.skipped() {
            out!("  {}: skipped, {why}", phase.name);
            continue;
        }
        let mut notes = Vec::new();
        if let Some(user) = &phase.run_as {
            notes.push(format!("run-as {user}"));
        }
        if let Some(f) = &phase.on_failure {
            notes.push(format!("on-failure {f}"));
        }
        if phase.commands.is_empty() && phase.finally.is_empty() {
            notes.push("no commands".into());
        }
        match notes.is_empty() {
            true => out!("  {}", phase.name),
            false => out!("  {} ({})", phase.name, notes.join(", ")),
        }
        for (title, lines) in [("commands", &phase.commands), ("finally", &phase.finally)] {
            if !lines.is_empty() {
                out!("    {title}:");
                for line in lines.iter() {
                    out!("      - {}", line.replace('\n', "\n        "));
                }
            }
        }
    }
    out!("");
    out!("Environment (then the CODEBUILD_* built-ins, set when the build starts):");
    for v in &plan.variables {
        out!("  {}={}", v.name, v.value);
    }
    out!("");
    if plan.artifacts.is_empty() {
        out!("Artifacts: none");
    } else {
        out!("Artifacts (into {}):", plan.output.display());
        for a in &plan.artifacts {
            out!(
                "  {}{}: files {}",
                a.identifier,
                a.name
                    .as_deref()
                    .map(|n| format!(" (name {n})"))
                    .unwrap_or_default(),
                a.files.join(", ")
            );
            out!(
                "    base-directory {}, discard-paths {}{}",
                a.base_directory.as_deref().unwrap_or("-"),
                if a.discard_paths { "yes" } else { "no" },
                if a.exclude_paths.is_empty() {
                    String::new()
                } else {
                    format!(", exclude-paths {}", a.exclude_paths.join(", "))
                }
            );
        }
    }
    match &plan.cache {
        None => out!("Cache paths: none"),
        Some(c) => {
            out!("Cache paths ({}): {}", c.action, c.paths.join(", "));
            if let Some(key) = &c.key {
                out!("  key {key}");
            }
            if !c.fallback_keys.is_empty() {
                out!("  fallback-keys {}", c.fallback_keys.join(", "));
            }
        }
    }
    exit::OK
}
