//! The `install` plugin: the Install step of a deployment. It copies a revision's files to their
//! destinations as kiln planned them, and sees only the revision (read-only) and the destinations
//! (read-write).
//!
//! Argument: the plan file, NUL-separated records, one operation each, in order:
//! `mkdir\0DIR\0` (create a directory that is not there) and `copy\0SOURCE\0DESTINATION\0` (copy a
//! file, keeping its mode; an existing destination is replaced). Paths are absolute.

use kiln_sdk::{Context, Outcome, Plugin, files, log};

struct Install;

impl Plugin for Install {
    fn run(args: Vec<String>, _context: Context) -> Outcome {
        let [plan] = args.as_slice() else {
            return Outcome::failure(2, "usage: install PLAN-FILE");
        };
        match run(plan) {
            Ok((dirs, copied)) => {
                log::debug(&format!("install: {copied} files copied, {dirs} folders made"));
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
                copy(&source, &dest)?;
                copied += 1;
            }
            other => return Err(format!("unknown operation `{other}` in the plan")),
        }
    }
    Ok((dirs, copied))
}

fn copy(source: &str, dest: &str) -> Result<(), String> {
    // Replace, not write through: a file in use (a running binary) keeps its old inode.
    if std::fs::symlink_metadata(dest).is_ok() {
        std::fs::remove_file(dest).map_err(|e| format!("cannot replace {dest}: {e}"))?;
    }
    std::fs::copy(source, dest).map_err(|e| format!("cannot copy {source} to {dest}: {e}"))?;
    let mode = files::mode(source)?;
    files::set_mode(dest, mode & 0o7777)?;
    Ok(())
}

kiln_sdk::plugin!(Install);
