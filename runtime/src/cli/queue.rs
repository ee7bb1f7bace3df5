//! The queue's commands: `kiln queue migrate` creates or upgrades the queue's schema and its two
//! roles; `kiln worker` (see [`super::worker`]) serves it. They are one group of kiln's commands,
//! flattened into the others.

use clap::{Args, Subcommand};
use kiln::worker::postgres::PgQueue;

use super::options::QueueArgs;
use super::{exit, print_json};

/// `kiln queue …` and `kiln worker`.
// Parsed once per run, as kiln's `Command` is: the worker's flags' size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum QueueCommand {
    /// Look after the job queue of remote build workers (a PostgreSQL database).
    #[command(subcommand)]
    Queue(DatabaseCommand),
    /// Claim jobs from the queue and run each as `kiln build --require-sandbox` would, sharing the
    /// build cache through the store; SIGTERM drains (a second one stops and requeues the jobs).
    Worker(super::worker::WorkerArgs),
}

/// `kiln queue …`.
#[derive(Subcommand)]
pub enum DatabaseCommand {
    /// Create the queue's schema in a PostgreSQL database, or upgrade it to this kiln's version, and
    /// the roles kiln_submitter and kiln_worker. Run it as the database's owner with CREATEROLE (or
    /// a superuser); running it again changes nothing.
    Migrate(MigrateArgs),
}

/// `kiln queue migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    queue: QueueArgs,

    /// Print the versions as JSON: {"from": 0, "to": 1}.
    #[arg(long)]
    json: bool,
}

/// Runs the command; its exit code.
pub async fn run(command: &QueueCommand) -> u8 {
    match command {
        QueueCommand::Queue(DatabaseCommand::Migrate(args)) => migrate(args).await,
        QueueCommand::Worker(args) => {
            // kiln's global flags (--cache-dir, --state-dir), parsed again: the dispatch hands the
            // queue's commands none.
            use clap::Parser;
            let global = match super::Cli::try_parse() {
                Ok(cli) => cli.global,
                Err(e) => e.exit(),
            };
            super::worker::run(&global, args).await
        }
    }
}

async fn migrate(args: &MigrateArgs) -> u8 {
    let mut queue = match PgQueue::connect_unchecked(&args.queue.url).await {
        Ok(q) => q,
        Err(e) => return super::queue_error(e),
    };
    let migrated = match queue.migrate().await {
        Ok(m) => m,
        Err(e) => return super::queue_error(e),
    };
    if args.json {
        print_json(&migrated);
    } else if migrated.from == migrated.to {
        out!(
            "the queue at {} is at schema version {}: nothing to do",
            queue.url(),
            migrated.to
        );
    } else if migrated.from == 0 {
        out!(
            "the queue at {} is created at schema version {}, with the roles kiln_submitter and kiln_worker",
            queue.url(),
            migrated.to
        );
    } else {
        out!(
            "the queue at {} is upgraded from schema version {} to {}",
            queue.url(),
            migrated.from,
            migrated.to
        );
    }
    exit::OK
}
