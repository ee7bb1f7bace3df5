//! `kiln deploy`: a revision's appspec.yml lifecycle on this host, as the CodeDeploy agent runs it.

use clap::Args;

use super::options::{self, DeployArgs, GlobalArgs};
use super::{exit, print_json};

/// `kiln deploy`.
#[derive(Args)]
pub struct DeployCommandArgs {
    /// The revision: a store reference (file:///…, s3://…, oci://…) or a revision file.
    #[arg(value_parser = options::revision)]
    revision: String,
    #[command(flatten)]
    args: DeployArgs,
}

/// Runs `kiln deploy`.
pub async fn run(global: &GlobalArgs, args: &DeployCommandArgs) -> u8 {
    deploy(global, &args.revision, &args.args).await
}

/// Deploys `revision` (or, for `kiln rollback`, the previous good one), prints the result, and
/// gives the exit code.
pub async fn deploy(global: &GlobalArgs, revision: &str, args: &DeployArgs) -> u8 {
    let Some(options) = args.options(global, revision) else {
        return exit::BAD_INPUT;
    };
    let result = if args.rollback_only {
        kiln::deploy::rollback(&options).await
    } else {
        kiln::deploy::deploy(&options).await
    };
    match result {
        Ok((deployment, rollback)) => {
            if args.json {
                print_json(&serde_json::json!({ "deployment": deployment, "rollback": rollback }));
            } else {
                out!(
                    "{} {:?}: {} to {} in {} ms",
                    deployment.id,
                    deployment.status,
                    deployment.revision,
                    deployment.group,
                    deployment.duration_ms
                );
                if let Some(e) = &deployment.error {
                    eprintln!("error: {e}");
                    eprintln!(
                        "see the deployment log at {}",
                        deployment.dir.join("logs/scripts.log").display()
                    );
                }
                if let Some(r) = &rollback {
                    out!("{} {:?}: rolled back to {}", r.id, r.status, r.revision);
                }
            }
            if deployment.status == kiln::deploy::Status::Succeeded {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::of_deploy(&e)
        }
    }
}
