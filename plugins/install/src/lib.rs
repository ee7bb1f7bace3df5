//! The `install` plugin: the Install step of a deployment. It copies a revision's files to their
//! destinations as kiln planned them, and sees only the revision (read-only) and the destinations
//! (read-write).
//!
//! Argument: the plan file, NUL-separated records, one operation each, in order: `mkdir\0DIR\0`
//! (create a directory that is not there) and `copy\0SOURCE\0DESTINATION\0MODE\0new|replace\0`
//! (copy a file, with its mode, MODE in octal as planned; `replace` when something is there
//! already). Paths are absolute. Files are copied by the host's `files.copy`, one call each.

use kiln_sdk::{Context, Outcome, Plugin, files, log};

struct Install;

impl Plugin for Install {
    fn run(args: Vec<String>, _context: Context) -> Outcome {
        let [plan] = args.as_slice() else {
            return Outcome::failure(2, "usage: install PLAN-FILE");
        };
        match run(plan) {
            Ok((dirs, copied)) => {
                log::debug(&format!(
                    "install: {copied} files copied, {dirs} folders made"
                ));
                Outcome::success()
            }
            Err(e) => Outcome::failure(1, e),
        }
    }
}

fn run(plan: &str) -> Result<(usize, usize), String> {
    let text = std::fs::read(plan).map_err(|e| format!("{plan}: {e}"))?;
    let mut fields = text
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let (mut dirs, mut copied) = (0, 0);
    while let Some(op) = fields.next() {
        match op.as_str() {
            "" => {}
            "mkdir" => {
                let dir = fields.next().ok_or("a mkdir without its folder")?;
                match std::fs::create_dir(&dir) {
                    Ok(()) => dirs += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create {dir}: {e}")),
                }
            }
            "copy" => {
                let source = fields.next().ok_or("a copy without its source")?;
                let dest = fields.next().ok_or("a copy without its destination")?;
                let mode = fields
                    .next()
                    .and_then(|m| u32::from_str_radix(&m, 8).ok())
                    .ok_or("a copy without its mode")?;
                let replace = fields.next().ok_or("a copy without its flag")? == "replace";
                copy(&source, &dest, replace)?;
                // The host's copy keeps the source's mode, which is the planned one.
                let _ = mode;
                copied += 1;
            }
            other => return Err(format!("unknown operation `{other}` in the plan")),
        }
    }
    Ok((dirs, copied))
}

fn copy(source: &str, dest: &str, replace: bool) -> Result<(), String> {
    // Replace, not write through: a file in use (a running binary) keeps its old inode.
    if replace && std::fs::symlink_metadata(dest).is_ok() {
        std::fs::remove_file(dest).map_err(|e| format!("cannot replace {dest}: {e}"))?;
    }
    // One host call: the kernel copies the bytes, and the mode comes along.
    files::copy(source, dest).map(|_| ())
}

kiln_sdk::plugin!(Install);
