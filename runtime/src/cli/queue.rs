//! `kiln queue`: look after the job queue's database. `kiln queue migrate` creates or upgrades its
//! schema and its two roles.

use clap::{Args, Subcommand};
use kiln::worker::postgres::PgQueue;

use super::options::QueueArgs;
use super::{exit, print_json};

/// `kiln queue …`.
#[derive(Subcommand)]
pub enum QueueCommand {
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
        QueueCommand::Migrate(args) => migrate(args).await,
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
