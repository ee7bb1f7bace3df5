//! `kiln completions SHELL`: a completion script for the shell, generated from kiln's own arguments
//! (clap_complete), so it never disagrees with `kiln --help`.

use clap::{Args, CommandFactory};

use super::{Cli, exit, print_bytes};

/// `kiln completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Prints the script on stdout.
pub fn run(args: &CompletionsArgs) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kiln", &mut script);
    print_bytes(&script);
    exit::OK
}
