//! The `artifacts` plugin: collects a buildspec artifact's files, CodeBuild-style, into a staging
//! folder. It sees only the workspace (read-only) and the staging folder (read-write).
//!
//! Arguments:
//! `--shell SH --staging DIR --name NAME [--base-directory GLOB] [--discard-paths] [--enable-symlinks]
//! [--exclude GLOB]… -- FILE-GLOB…`
//!
//! It writes the files under `DIR/files/` and the artifact's name, expanded by the shell, to
//! `DIR/name`. Globs are resolved against the source directory (`CODEBUILD_SRC_DIR`), not the shell's
//! current one; `base-directory` may itself be a glob, and the files' paths are kept relative to it.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use kiln_sdk::{Command, Context, Outcome, Plugin, exec, files, log};

struct Artifacts;

#[derive(Default)]
struct Request {
    shell: String,
    staging: PathBuf,
    name: String,
    base_directory: Option<String>,
    discard_paths: bool,
    enable_symlinks: bool,
    exclude: Vec<String>,
    files: Vec<String>,
}

impl Plugin for Artifacts {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let request = match parse_args(args) {
            Ok(r) => r,
            Err(e) => return Outcome::failure(2, e),
        };
        match collect(&request, &context) {
            Ok(()) => Outcome::success(),
            Err(e) => Outcome::failure(1, e),
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<Request, String> {
    let mut r = Request::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--shell" => r.shell = value("--shell")?,
            "--staging" => r.staging = PathBuf::from(value("--staging")?),
            "--name" => r.name = value("--name")?,
            "--base-directory" => r.base_directory = Some(value("--base-directory")?),
            "--discard-paths" => r.discard_paths = true,
            "--enable-symlinks" => r.enable_symlinks = true,
            "--exclude" => r.exclude.push(value("--exclude")?),
            "--" => {
                r.files = it.collect();
                break;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if r.staging.as_os_str().is_empty() || r.shell.is_empty() {
        return Err("--shell and --staging are required".into());
    }
    Ok(r)
}

/// A glob as CodeBuild reads it: `*` stays within a path segment, `**` crosses them, a leading `./` is
/// the base itself.
fn glob(pattern: &str) -> Result<Glob, String> {
    let pattern = pattern.trim_start_matches("./");
    let pattern = pattern.trim_end_matches('/');
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{pattern}` is not a valid pattern: {e}"))
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(glob(p)?);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Every path below `root` (files, links and directories), relative to it, sorted.
fn walk(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out: Vec<(PathBuf, bool)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_path_buf();
            Some((rel, e.file_type().is_dir()))
        })
        .collect();
    out.sort();
    out
}

fn collect(r: &Request, context: &Context) -> Result<(), String> {
    let source = PathBuf::from(&context.source_dir);
    let bases: Vec<PathBuf> = match &r.base_directory {
        None => vec![source.clone()],
        Some(pattern) => {
            let matcher = glob(pattern)?.compile_matcher();
            let bases: Vec<PathBuf> = walk(&source)
                .into_iter()
                .filter(|(rel, is_dir)| *is_dir && matcher.is_match(rel))
                .map(|(rel, _)| source.join(rel))
                .collect();
            if bases.is_empty() {
                return Err(format!(
                    "no matching base directory path found for {pattern}"
                ));
            }
            bases
        }
    };
    let include = glob_set(&r.files)?;
    let exclude = glob_set(&r.exclude)?;
    let out_root = r.staging.join("files");
    std::fs::create_dir_all(&out_root).map_err(|e| format!("{}: {e}", out_root.display()))?;

    let mut copied = 0usize;
    let mut seen = std::collections::BTreeMap::<PathBuf, PathBuf>::new();
    for base in &bases {
        for (rel, is_dir) in walk(base) {
            // Patterns select files, as on CodeBuild: `dir/*` is the files directly in `dir`, and
            // `dir/**/*` everything below it.
            if is_dir || !include.is_match(&rel) || exclude.is_match(&rel) {
                continue;
            }
            let dest_rel = if r.discard_paths {
                PathBuf::from(rel.file_name().unwrap_or_default())
            } else {
                rel.clone()
            };
            let from = base.join(&rel);
            if let Some(previous) = seen.insert(dest_rel.clone(), from.clone()) {
                log::warn(&format!(
                    "{} and {} both go to {} in the artifact; the last one wins",
                    previous.display(),
                    from.display(),
                    dest_rel.display()
                ));
            }
            let to = out_root.join(&dest_rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
            // WASI carries no modes: keep the executable bit through the host.
            let path = from.to_string_lossy();
            if files::mode(&path).is_ok_and(|mode| mode & 0o111 != 0) {
                let _ = files::set_mode(&to.to_string_lossy(), 0o755);
            }
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(format!(
            "no matching artifact paths found for {}",
            r.files.join(", ")
        ));
    }
    if r.enable_symlinks {
        log::warn("enable-symlinks: kiln copies what links point to; links are not kept as links");
    }
    let name = expand_name(r, context)?;
    let name_file = r.staging.join("name");
    std::fs::write(&name_file, name).map_err(|e| format!("{}: {e}", name_file.display()))?;
    log::debug(&format!("collected {copied} file(s)"));
    Ok(())
}

/// `name` may use the shell (`$CODEBUILD_BUILD_NUMBER`, `$(date +%Y)`), as on CodeBuild.
fn expand_name(r: &Request, context: &Context) -> Result<String, String> {
    if !r.name.contains(['$', '`']) {
        return Ok(r.name.clone());
    }
    let escaped = r.name.replace('\\', "\\\\").replace('"', "\\\"");
    let script = format!("printf '%s' \"{escaped}\"");
    let mut command = Command::new([r.shell.as_str(), "-c", script.as_str()], context);
    command.cwd = context.source_dir.clone();
    command.capture_stdout = true;
    let exit = exec::run(&command)?;
    if !exit.success() {
        return Err(format!(
            "the shell could not expand the artifact name `{}`",
            r.name
        ));
    }
    String::from_utf8(exit.stdout).map_err(|_| "the artifact name is not UTF-8".to_string())
}

kiln_sdk::plugin!(Artifacts);
