//! `kiln validate`: check a buildspec, an AppSpec or a pipeline declaration and report every
//! finding with its place.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use kiln::spec::{buildspec, diagnostic};

use super::options::existing_file;
use super::{exit, print_invalid};

/// `kiln validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// The buildspec, AppSpec or pipeline to check [default: the buildspec `kiln build` would run:
    /// the nearest buildspec.yml at or above the current folder]; a file named appspec.yml (or
    /// .yaml) is checked as an AppSpec; pipeline.json, *.pipeline.yml, template.yaml, or a file
    /// holding a CodePipeline declaration (get-pipeline JSON or a CloudFormation template) as a
    /// pipeline.
    #[arg(value_parser = existing_file)]
    file: Option<PathBuf>,

    /// A CloudFormation template's parameter, over its Default (repeatable).
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parameter)]
    parameters: Vec<(String, String)>,

    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// Checks the file, prints its findings, and gives the exit code: 0 valid, 2 not.
pub fn run(args: &ValidateArgs) -> u8 {
    let path = match &args.file {
        Some(file) => file.clone(),
        None => match nearest_buildspec() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::of_build(&e);
            }
        },
    };
    let color = !args.json && std::io::stderr().is_terminal();
    let is_appspec = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("appspec."));
    if is_appspec {
        return validate_appspec(&path, args.json, color);
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if kiln::spec::pipeline::is_pipeline_file(&path, &text) {
        return validate_pipeline(&path, &args.parameters, args.json, color);
    }
    match buildspec::load(&path) {
        Ok(parsed) => {
            if args.json {
                print_findings(&path, &parsed.warnings, true);
            } else {
                if let Some(w) = parsed.render_warnings(&path, color) {
                    eprintln!("{w}\n");
                }
                let commands: usize = parsed
                    .buildspec
                    .phases
                    .iter()
                    .map(|p| p.commands.len() + p.finally.len())
                    .sum();
                out!(
                    "{}: valid buildspec {} ({} phases, {} commands, {} warnings)",
                    path.display(),
                    serde_json::to_value(parsed.buildspec.version)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    parsed.buildspec.phases.len(),
                    commands,
                    parsed.warnings.len()
                );
            }
            exit::OK
        }
        Err(buildspec::LoadError::Invalid(e)) => report_invalid(&path, &e, args.json),
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

/// The buildspec `kiln build` would find from the current folder, relative to it when below it.
fn nearest_buildspec() -> Result<PathBuf, kiln::build::BuildError> {
    use kiln::build::{find_buildspec, locate};
    let found = locate::upward(std::path::Path::new("."))?;
    let given = found.buildspec.map(|b| found.source.join(b));
    let path = find_buildspec(&found.source, given.as_deref())?;
    let here = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .unwrap_or_default();
    Ok(path.strip_prefix(&here).map(PathBuf::from).unwrap_or(path))
}

/// Checks an AppSpec (`kiln validate appspec.yml`).
fn validate_appspec(path: &std::path::Path, json: bool, color: bool) -> u8 {
    use kiln::spec::appspec;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
    };
    match appspec::parse(path, &text) {
        Ok((spec, warnings)) => {
            if json {
                print_findings(path, &warnings, true);
            } else {
                if !warnings.is_empty() {
                    eprintln!(
                        "{}\n",
                        kiln::spec::diagnostic::render_all(path, &text, &warnings, color)
                    );
                }
                let scripts: usize = spec.hooks.values().map(Vec::len).sum();
                out!(
                    "{}: valid AppSpec 0.0 ({} files entries, {} permissions, {} hook scripts, {} warnings)",
                    path.display(),
                    spec.files.len(),
                    spec.permissions.len(),
                    scripts,
                    warnings.len()
                );
            }
            exit::OK
        }
        Err(e) => report_invalid(path, &e, json),
    }
}

/// `NAME=VALUE`.
fn parameter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, found `{text}`")),
    }
}

/// Checks a pipeline declaration (`kiln validate pipeline.json`): one line per pipeline it holds.
fn validate_pipeline(
    path: &std::path::Path,
    parameters: &[(String, String)],
    json: bool,
    color: bool,
) -> u8 {
    use kiln::spec::pipeline;
    let options = pipeline::LoadOptions {
        parameters: parameters.to_vec(),
        ..pipeline::LoadOptions::default()
    };
    match pipeline::load(path, &options) {
        Ok(loaded) => {
            if json {
                print_findings(path, &loaded.warnings, true);
                return exit::OK;
            }
            if !loaded.warnings.is_empty() {
                eprintln!(
                    "{}\n",
                    diagnostic::render_all(path, &loaded.source, &loaded.warnings, color)
                );
            }
            if loaded.pipelines.is_empty() {
                out!(
                    "{}: holds no pipeline that would be created",
                    path.display()
                );
            }
            for p in &loaded.pipelines {
                let actions: usize = p.stages.iter().map(|s| s.actions.len()).sum();
                let artifacts: usize = p
                    .stages
                    .iter()
                    .flat_map(|s| &s.actions)
                    .map(|a| a.output_artifacts.len())
                    .sum();
                out!(
                    "{}: valid pipeline {} ({} stages, {} actions, {} artifacts, {} warnings)",
                    path.display(),
                    p.name,
                    p.stages.len(),
                    actions,
                    artifacts,
                    loaded.warnings.len()
                );
            }
            exit::OK
        }
        Err(pipeline::LoadError::Invalid(e)) => report_invalid(path, &e, json),
        Err(e) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
    }
}

/// Prints a spec's errors (rendered, or as JSON findings) and gives the bad-input exit code.
fn report_invalid(path: &std::path::Path, e: &kiln::spec::SpecError, json: bool) -> u8 {
    if json {
        print_findings(path, &e.diagnostics, false);
        exit::BAD_INPUT
    } else {
        print_invalid(e)
    }
}

/// Prints the findings as JSON: the file, whether it is valid, and each finding with its place.
fn print_findings(path: &std::path::Path, findings: &[diagnostic::Diagnostic], valid: bool) {
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|d| {
            serde_json::json!({
                "severity": match d.severity {
                    diagnostic::Severity::Error => "error",
                    diagnostic::Severity::Warning => "warning",
                },
                "file": path,
                "line": d.span.line,
                "column": d.span.column,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let out = serde_json::json!({ "file": path, "valid": valid, "diagnostics": list });
    out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
