//! `kiln config`: the settings a build of a project would use, and where each came from: kiln's
//! default, a line of the project's kiln.toml, a flag, or a variable of kiln's environment.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::options::existing;
use super::settings::{self, SettingsArgs};

/// `kiln config`.
#[derive(Args)]
pub struct ConfigArgs {
    /// The project, as `kiln build` takes it [default: the one `kiln build` here would build]
    #[arg(value_parser = existing)]
    dir: Option<PathBuf>,

    /// The flags to apply over the kiln.toml, as `kiln build` would.
    #[command(flatten)]
    settings: SettingsArgs,

    /// Print the settings as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the effective settings; 2 when the kiln.toml is invalid or refused.
pub fn run(args: &ConfigArgs) -> u8 {
    let (source, _) = match super::build::project(args.dir.as_ref(), None) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let settings = match settings::resolve(&args.settings, &source) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if args.json {
        let entries: serde_json::Map<String, serde_json::Value> = settings
            .report
            .iter()
            .map(|(name, value, origin)| {
                (
                    name.to_string(),
                    serde_json::json!({ "value": value, "origin": origin.to_string() }),
                )
            })
            .collect();
        super::print_json(&serde_json::json!({
            "file": settings.file,
            "settings": entries,
        }));
    } else {
        match &settings.file {
            Some(file) => out!("# {}", file.display()),
            None => out!("# no kiln.toml"),
        }
        let shown = |value: &serde_json::Value| match value {
            serde_json::Value::Null => "(none)".to_string(),
            other => other.to_string(),
        };
        let width = settings
            .report
            .iter()
            .map(|(name, value, _)| name.len() + shown(value).len())
            .max()
            .unwrap_or(0);
        for (name, value, origin) in &settings.report {
            let line = format!("{name} = {}", shown(value));
            out!("{line:<w$}  # {origin}", w = width + 3);
        }
    }
    exit::OK
}
