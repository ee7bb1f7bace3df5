//! `kiln man [COMMAND]`: kiln's manual page, or one command's, in roff, generated from kiln's own
//! arguments (clap_mangen), so it never disagrees with `kiln --help`.

use clap::{Args, CommandFactory};

use super::{Cli, exit, print_bytes};

/// `kiln man`.
#[derive(Args)]
pub struct ManArgs {
    /// The command whose page to print (`kiln man plugin run` is kiln-plugin-run(1)) [default:
    /// kiln(1), which lists the commands]
    command: Vec<String>,
}

/// Prints the page on stdout.
pub fn run(args: &ManArgs) -> u8 {
    let mut page = Cli::command().disable_help_subcommand(true);
    // Built, every command knows its full name (kiln-plugin-run) and has the global flags.
    page.build();
    for name in &args.command {
        let Some(sub) = page.find_subcommand(name).cloned() else {
            eprintln!(
                "error: `{}` is not a command of `{}`",
                name,
                page.get_display_name().unwrap_or(page.get_name())
            );
            return exit::BAD_INPUT;
        };
        page = sub;
    }
    let source = format!("kiln {}", page.get_version().unwrap_or_default());
    let mut roff = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).source(source).render(&mut roff) {
        eprintln!("error: cannot render the manual page: {e}");
        return exit::INTERNAL;
    }
    print_bytes(&roff);
    exit::OK
}
