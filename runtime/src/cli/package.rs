//! `kiln package`: a folder, or a recorded build's primary artifact, as a deterministic revision.

use std::path::PathBuf;

use clap::Args;
use kiln::build;

use super::options::{GlobalArgs, existing_dir, parse_project};
use super::{exit, print_invalid};

/// `kiln package`.
#[derive(Args)]
pub struct PackageArgs {
    /// The folder to package.
    #[arg(conflicts_with = "from_build", value_parser = existing_dir)]
    dir: Option<PathBuf>,

    /// Package the primary artifact of this build number of the project instead.
    #[arg(long, value_name = "NUMBER")]
    from_build: Option<u64>,

    /// The project of --from-build [default: the current folder's project, as kiln build names it]
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// The revision file to write [default: revision.zip or revision.tar.gz]
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,

    /// zip (CodeDeploy's default) or tgz.
    #[arg(long, default_value = "zip", value_parser = ["zip", "tgz"])]
    format: String,

    /// Package a folder without an appspec.yml.
    #[arg(long)]
    no_appspec: bool,

    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// Writes the revision and its manifest, prints what it holds, and gives the exit code.
pub fn run(global: &GlobalArgs, args: &PackageArgs) -> u8 {
    use kiln::revision::{Format, PackageOptions};
    let (dir, origin) = match (args.from_build, &args.dir) {
        (Some(number), _) => {
            let project = args.project.clone().unwrap_or_else(|| {
                build::project_of(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
            });
            match build::recorded_artifact(&global.state_dir(), &project, number) {
                Ok((dir, origin)) => (dir, Some(origin)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::BAD_INPUT;
                }
            }
        }
        (None, dir) => (dir.clone().unwrap_or_else(|| PathBuf::from(".")), None),
    };
    let format = if args.format == "tgz" {
        Format::Tgz
    } else {
        Format::Zip
    };
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(match format {
            Format::Zip => "revision.zip",
            Format::Tgz => "revision.tar.gz",
        })
    });
    let options = PackageOptions {
        format,
        require_appspec: !args.no_appspec,
        timestamp: None,
    };
    match kiln::revision::package(&dir, &output, &options, origin) {
        Ok(manifest) => {
            if args.json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&manifest).unwrap_or_default()
                );
            } else {
                out!(
                    "{}: {} files, {} bytes, blake3:{} {}",
                    output.display(),
                    manifest.files,
                    manifest.size,
                    manifest.blake3,
                    manifest.sha256
                );
            }
            exit::OK
        }
        Err(kiln::revision::RevisionError::InvalidAppspec(spec)) => print_invalid(&spec),
        Err(e) => {
            eprintln!("error: {e}");
            exit::of_revision(&e)
        }
    }
}
