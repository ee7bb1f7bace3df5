//! `manifest DIR OUT`: writes OUT, one line per file below DIR (`<size> <path>`, sorted), the kind of
//! inventory a release wants beside its artifacts. Paths are relative to the build's source directory.
//!
//! It needs nothing from kiln but what every plugin gets: the build's source directory, preopened.

use std::path::{Path, PathBuf};

use kiln_sdk::{Context, Outcome, Plugin, log};

struct Manifest;

impl Plugin for Manifest {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let [dir, out] = args.as_slice() else {
            return Outcome::failure(2, "usage: manifest DIR OUT");
        };
        let base = PathBuf::from(&context.cwd);
        let dir = base.join(dir);
        let mut files = Vec::new();
        if let Err(e) = walk(&dir, &dir, &mut files) {
            return Outcome::failure(1, format!("cannot list {}: {e}", dir.display()));
        }
        files.sort();
        let text: String = files
            .iter()
            .map(|(path, size)| format!("{size} {path}\n"))
            .collect();
        if let Err(e) = std::fs::write(base.join(out), text) {
            return Outcome::failure(1, format!("cannot write {out}: {e}"));
        }
        log::info(&format!("manifest: {} files listed in {out}", files.len()));
        Outcome::success()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((rel.to_string_lossy().into_owned(), meta.len()));
        }
    }
    Ok(())
}

kiln_sdk::plugin!(Manifest);
