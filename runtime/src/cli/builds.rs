//! `kiln builds`: a project's build history, newest first.

use clap::Args;
use kiln::build::history::{self, Summary};

use super::options::{GlobalArgs, parse_project};
use super::{exit, local_time, print_json};

/// `kiln builds`.
#[derive(Args)]
pub struct BuildsArgs {
    /// The project [default: the current folder's project, as kiln build names it]
    #[arg(long, value_parser = parse_project)]
    project: Option<String>,

    /// Every project's builds, newest first.
    #[arg(long, conflicts_with = "project")]
    all: bool,

    /// Show at most this many builds.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    limit: usize,

    /// Print an array of records as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the history and gives the exit code.
pub fn run(global: &GlobalArgs, args: &BuildsArgs) -> u8 {
    let state = global.state_dir();
    let (mut list, project) = if args.all {
        (history::list_all(&state), None)
    } else {
        let project = args.project.clone().unwrap_or_else(current_project);
        (history::list(&state, &project), Some(project))
    };
    list.truncate(args.limit);
    if args.json {
        print_json(&list);
        return exit::OK;
    }
    if list.is_empty() {
        match project {
            Some(p) => eprintln!("kiln: project {p} has no builds yet"),
            None => eprintln!("kiln: no builds yet"),
        }
        return exit::OK;
    }
    print_table(&list, args.all);
    exit::OK
}

/// The current folder's project, as `kiln build` with no arguments names it.
pub fn current_project() -> String {
    kiln::build::project_of(&std::env::current_dir().unwrap_or_else(|_| ".".into()))
}

fn print_table(list: &[Summary], with_project: bool) {
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|b| {
            [
                b.project.clone(),
                b.build_number.to_string(),
                b.status.clone(),
                local_time(b.start_time as i64),
                b.duration_ms
                    .map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                if b.status == "IN_PROGRESS" {
                    "-".into()
                } else if b.cache_hit {
                    "hit".into()
                } else {
                    "miss".into()
                },
                b.source_version
                    .as_deref()
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| "-".into(), |v| v.get(..12).unwrap_or(v).to_string()),
            ]
        })
        .collect();
    let header = [
        "PROJECT",
        "BUILD",
        "STATUS",
        "STARTED",
        "DURATION",
        "CACHE",
        "SOURCE VERSION",
    ];
    if with_project {
        super::print_table(header, &rows);
    } else {
        let rows: Vec<[String; 6]> = rows
            .into_iter()
            .map(|[_, a, b, c, d, e, f]| [a, b, c, d, e, f])
            .collect();
        let [_, header @ ..] = header;
        super::print_table(header, &rows);
    }
}
