//! The `empty` plugin: succeeds and changes nothing, so a benchmark of it measures what kiln spends
//! to start a step (instantiate, call, return). Not embedded; built for tests and benches.

use kiln_sdk::{Context, Outcome, Plugin};

struct Empty;

impl Plugin for Empty {
    fn run(_args: Vec<String>, _context: Context) -> Outcome {
        Outcome::success()
    }
}

kiln_sdk::plugin!(Empty);
