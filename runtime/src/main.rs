//! The `kiln` binary: parse the arguments, hand them to their command in [`cli`], exit with its code.
//! Nothing else lives here.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cli::{Cli, Command, exit};

fn main() -> ExitCode {
    // The in-sandbox launcher is this same program, started by a build: it must not parse
    // arguments, start a runtime or spawn a thread.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__launcher")
    {
        kiln::sandbox::os::launcher::main();
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(cli.global.log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tracing::debug!(
        "kiln {}: cache dir {}, state dir {}",
        cli::version(),
        cli.global
            .cache_dir()
            .map_or_else(|| "-".to_string(), |d| d.display().to_string()),
        cli.global.state_dir().display()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start kiln's runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let stopping = cli.command.stopping();
    let code = if cli.command.handles_signals() {
        runtime.block_on(run(cli))
    } else {
        runtime.block_on(async {
        tokio::select! {
            code = run(cli) => code,
            (code, why) = stopped() => {
                kiln::revision::extract::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
                match stopping {
                    Some(what) => eprintln!("kiln: {why}; {what}"),
                    None => eprintln!("kiln: {why}"),
                }
                code
            }
        }
        })
    };
    // Dropping the runtime drops the build, whose guards kill what it started.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

/// Waits for a signal that stops kiln as Ctrl-C does: SIGINT, SIGTERM (`timeout`, systemd, a CI's
/// cancel button), SIGHUP (the terminal went away). Its exit code (128 + the signal, as a shell
/// reports it) and what to say.
async fn stopped() -> (u8, &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    async fn next(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        () = next(SignalKind::interrupt()) => (exit::INTERRUPTED, "interrupted"),
        () = next(SignalKind::terminate()) => (exit::TERMINATED, "terminated (SIGTERM)"),
        () = next(SignalKind::hangup()) => (exit::HUNG_UP, "hung up (SIGHUP)"),
    }
}

/// Runs the command; its exit code.
async fn run(Cli { global, command }: Cli) -> u8 {
    let global = &global;
    match &command {
        Command::Build(args) => cli::build::run(global, args).await,
        Command::Init(args) => cli::init::run(args),
        Command::Builds(args) => cli::builds::run(global, args),
        Command::Logs(args) => cli::logs::run(global, args).await,
        Command::Validate(args) => cli::validate::run(args),
        Command::Config(args) => cli::config::run(args),
        Command::Plugin(command) => cli::plugin::dispatch(global, command).await,
        Command::Cache(command) => cli::cache::run(global, command),
        Command::Package(args) => cli::package::run(global, args),
        Command::Push(args) => cli::push::run(args).await,
        Command::Pull(args) => cli::pull::run(args).await,
        Command::Ls(args) => cli::ls::run(args).await,
        Command::Queue(command) => cli::queue::run(command).await,
        Command::Jobs(args) => cli::jobs::run(args).await,
        Command::Cancel(args) => cli::cancel::run(args).await,
        Command::Retry(args) => cli::retry::run(args).await,
        Command::Pipeline(command) => cli::pipeline::run(global, command).await,
        Command::Deploy(args) => cli::deploy::run(global, args).await,
        Command::Agent(args) => cli::agent::run(global, args).await,
        Command::Rollback(args) => cli::rollback::run(global, args).await,
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Deployments(args) => cli::deployments::run(global, args),
        Command::Serve(args) => cli::serve::run(global, args).await,
        Command::HashFiles(args) => cli::hash_files::run(args),
        Command::Completions(args) => cli::completions::run(args),
        Command::Man(args) => cli::man::run(args),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every command and flag (unique names, valid defaults...), which it
    /// otherwise makes only when that command is parsed.
    #[test]
    fn every_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
