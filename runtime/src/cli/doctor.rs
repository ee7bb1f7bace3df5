//! `kiln doctor`: what this host supports for sandboxing builds, and which sandbox a build gets.

use clap::Args;

use super::{exit, print_json};

/// `kiln doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the report; exit 0 when builds get the namespace sandbox, 1 otherwise.
pub fn run(args: &DoctorArgs) -> u8 {
    let report = kiln::sandbox::os::probe::report();
    if args.json {
        print_json(&report);
    } else {
        out!(
            "{}",
            kiln::sandbox::os::probe::render(&report).trim_end_matches('\n')
        );
    }
    if report.sandbox.starts_with("namespaces") {
        exit::OK
    } else {
        exit::FAILED
    }
}
