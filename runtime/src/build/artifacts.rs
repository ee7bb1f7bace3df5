//! Collecting artifacts: the `artifacts` plugin copies what the definition selects into a staging
//! folder beside the output (seeing only the workspace, read-only, and that folder), then kiln swaps
//! the staging folder into place, so an output folder is never half-written.
//!
//! Where artifacts land is decided by [`Output::locate`]; every folder kiln makes, renames or
//! removes there is reached through [`crate::beneath`], never through a link, and kiln replaces
//! only what it published itself (a record of each is kept in `<output>/.kiln-published/`).
//!
//! As on CodeBuild, the paths of `files`, `base-directory` and `exclude-paths` may name the build's
//! variables (`$OUT/**/*`, `${artifact}`), those the commands exported included, and may be absolute
//! inside the source directory (`$CODEBUILD_SRC_DIR/dist/app.zip`): kiln expands them from the
//! session's variables and makes such paths relative to the source directory before the plugin
//! matches them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::log::BuildLog;
use super::result::ArtifactResult;
use crate::beneath::{self, BeneathError, Entry};
use crate::sandbox::{ExecEnv, Policy, Preopen, Sandbox, StepContext};
use crate::spec::buildspec::Artifacts;

/// The folder below the output where kiln records what it published (one empty file each).
const PUBLISHED: &str = ".kiln-published";

/// What collecting artifacts needs from the build.
pub struct ArtifactEnv<'a> {
    pub sandbox: &'a Sandbox,
    pub log: Arc<BuildLog>,
    pub exec: ExecEnv,
    pub context: StepContext,
    pub shell: &'static str,
    pub zip: bool,
    pub memory_limit: usize,
    pub timeout: Duration,
}

/// Why artifacts could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    Plugin(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the output: {0}")]
    Place(#[from] BeneathError),
    #[error(
        "{} is in the way of an artifact and kiln did not publish it (there is no {}): kiln \
         replaces only what it published; move it away, or choose another --output or artifact name",
        path.display(),
        record.display()
    )]
    NotPublished { path: PathBuf, record: PathBuf },
}

impl ArtifactError {
    /// CodeBuild's phase context code for this failure.
    pub fn status_code(&self) -> &'static str {
        match self {
            ArtifactError::Plugin(_) => "CLIENT_ERROR",
            ArtifactError::Io { .. } => "CLIENT_ERROR",
            ArtifactError::Place(_) | ArtifactError::NotPublished { .. } => "CLIENT_ERROR",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a build's artifacts go: a root kiln trusts, and a path below it that kiln resolves without
/// following links.
///
/// The rule. The user's own `--output` path is theirs, links and all (`/home -> /data/home` is
/// normal): the part of it that exists is resolved once, with `canonicalize`, and becomes the
/// root. The project is not trusted: from the first part of the path that resolves into the
/// project, the project's folder is the root and nothing below it is followed, so a `.kiln/out`
/// or `out` link the project ships is refused rather than written through. Artifact names are
/// always resolved below the output without following links.
#[derive(Debug, Clone)]
pub struct Output {
    root: PathBuf,
    below: PathBuf,
}

impl Output {
    /// The output of a build of the project `source` (canonical): `given` (`--output`), else
    /// `<source>/.kiln/out`.
    pub fn locate(source: &Path, given: Option<&Path>) -> Result<Output, ArtifactError> {
        let Some(given) = given else {
            return Ok(Output {
                root: source.to_path_buf(),
                below: PathBuf::from(".kiln/out"),
            });
        };
        let given = if given.is_absolute() {
            given.to_path_buf()
        } else {
            std::env::current_dir().map_err(io(given))?.join(given)
        };
        let components: Vec<_> = given.components().collect();
        let mut root = PathBuf::from("/");
        for (i, _) in components.iter().enumerate() {
            let prefix: PathBuf = components[..=i].iter().collect();
            let Ok(real) = prefix.canonicalize() else {
                // Missing from here on: made below the root, without following links.
                let below = components[i..].iter().collect();
                return Ok(Output { root, below });
            };
            if let Ok(inside) = real.strip_prefix(source) {
                let below = inside.join(components[i + 1..].iter().collect::<PathBuf>());
                return Ok(Output {
                    root: source.to_path_buf(),
                    below,
                });
            }
            root = real;
        }
        Ok(Output {
            root,
            below: PathBuf::new(),
        })
    }

    /// The output folder's path.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.below)
    }

    /// Refuses, before the build, an output that goes through a link or is not a folder.
    pub fn check(&self) -> Result<(), ArtifactError> {
        let root = beneath::Dir::open(&self.root)?;
        let mut prefix = PathBuf::new();
        for name in self.below.iter() {
            prefix.push(name);
            match root.entry(&prefix)? {
                None => break,
                Some(Entry::Dir) => {}
                Some(Entry::Symlink(target)) => {
                    return Err(BeneathError::Link {
                        path: self.root.join(&prefix),
                        target,
                    }
                    .into());
                }
                Some(_) => {
                    return Err(ArtifactError::Io {
                        path: self.root.join(&prefix),
                        source: std::io::Error::other("not a folder; the output must be one"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Opens the output folder, making what is missing of it. A `.kiln` folder kiln makes on the
    /// way (the default output is `.kiln/out`) gets a `.gitignore` of `*`, as Python's virtual
    /// environments and pytest's cache do, so that nothing kiln writes there shows as a change of
    /// the project. A `.kiln` folder that is already there is left as it is.
    pub fn open(&self) -> Result<beneath::Dir, ArtifactError> {
        let root = beneath::Dir::open(&self.root)?;
        let kiln = Path::new(super::workspace::KILN_DIR);
        if self.below.starts_with(kiln) && root.entry(kiln)?.is_none() {
            root.create_dir(kiln, 0o777)?;
            let ignore = kiln.join(".gitignore");
            let path = self.root.join(&ignore);
            let mut file = root.create_file(&ignore)?;
            std::io::Write::write_all(&mut file, b"*\n").map_err(io(&path))?;
        }
        Ok(root.create_dir_all(&self.below)?)
    }
}

/// A staging folder kiln made below the output; removed, with what was moved into it, when
/// dropped.
pub(crate) struct Staging<'a> {
    output: &'a beneath::Dir,
    name: OsString,
    pub dir: beneath::Dir,
}

impl<'a> Staging<'a> {
    pub(crate) fn new(output: &'a beneath::Dir, prefix: &str) -> Result<Self, ArtifactError> {
        let (name, dir) = output.create_temp_dir(prefix)?;
        Ok(Staging { output, name, dir })
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let _ = self.output.remove_tree(Path::new(&self.name));
    }
}

/// Collects the primary artifact (when it has files) and every secondary artifact into `output`.
pub async fn collect(
    env: &ArtifactEnv<'_>,
    definition: &Artifacts,
    output: &Output,
) -> Result<Vec<ArtifactResult>, ArtifactError> {
    let output = output.open()?;
    let mut all: Vec<&Artifacts> = Vec::new();
    if !definition.files.is_empty() {
        all.push(definition);
    }
    all.extend(definition.secondary.iter());
    let mut results = Vec::new();
    for artifact in all {
        results.push(collect_one(env, artifact, &output).await?);
    }
    Ok(results)
}

async fn collect_one(
    env: &ArtifactEnv<'_>,
    artifact: &Artifacts,
    output: &beneath::Dir,
) -> Result<ArtifactResult, ArtifactError> {
    let prefix = format!(".kiln-staging-{}-", artifact.identifier.replace('/', "-"));
    let staging = Staging::new(output, &prefix)?;
    let staging_path = staging.dir.path().to_path_buf();
    let vars = super::env::Vars::from_pairs(env.context.env.clone());
    let path = |pattern: &str| in_source(&super::expand(pattern, &vars), &env.context.source_dir);
    let mut args = vec![
        "--shell".to_string(),
        env.shell.to_string(),
        "--staging".to_string(),
        staging_path.to_string_lossy().into_owned(),
        "--name".to_string(),
        artifact
            .name
            .clone()
            .unwrap_or_else(|| artifact.identifier.clone()),
    ];
    if let Some(base) = &artifact.base_directory {
        args.extend(["--base-directory".to_string(), path(base)]);
    }
    if artifact.discard_paths {
        args.push("--discard-paths".to_string());
    }
    if artifact.enable_symlinks {
        args.push("--enable-symlinks".to_string());
    }
    for exclude in &artifact.exclude_paths {
        args.extend(["--exclude".to_string(), path(exclude)]);
    }
    // A workspace's `.git` borrows the project's objects: a copy of it elsewhere is a broken
    // repository naming a path of this host. No `.git`, the project's or a submodule's, is
    // collected.
    for exclude in ["**/.git", "**/.git/**"] {
        args.extend(["--exclude".to_string(), exclude.to_string()]);
    }
    args.push("--".to_string());
    args.extend(artifact.files.iter().map(|f| path(f)));

    let policy = Policy {
        preopens: vec![
            Preopen {
                path: env.context.source_dir.clone(),
                writable: false,
            },
            Preopen {
                path: staging_path.clone(),
                writable: true,
            },
        ],
        allow_exec: true,
        network: false,
        local_network: false,
        timeout: Some(env.timeout),
        memory_limit: env.memory_limit,
        scripted_exec: None,
    };
    let log: Arc<dyn crate::sandbox::LogSink> = env.log.clone();
    let outcome = env
        .sandbox
        .run(
            "artifacts",
            &args,
            &env.context,
            &policy,
            Some(env.exec.clone()),
            log,
        )
        .await
        .map_err(|e| ArtifactError::Plugin(e.to_string()))?;
    if outcome.status != 0 {
        return Err(ArtifactError::Plugin(outcome.message.unwrap_or_else(
            || format!("the artifacts step failed with status {}", outcome.status),
        )));
    }
    let name_file = staging_path.join("name");
    let name = std::fs::read_to_string(&name_file).map_err(io(&name_file))?;
    // A folder named after a secret would show it to whoever lists the output folder.
    if env.log.masker().finds(&name) {
        return Err(ArtifactError::Plugin(format!(
            "the name of artifact `{}` would contain a secret's value; name it without the secret",
            artifact.identifier
        )));
    }
    let name = sanitize(name.trim(), &artifact.identifier);
    publish(output, &staging, &artifact.identifier, name, env.zip)
}

/// An artifact path made relative to the source directory when it is absolute inside it (an
/// absolute path elsewhere is left as it is, and matches nothing: the plugin sees only the source).
fn in_source(pattern: &str, source_dir: &Path) -> String {
    match Path::new(pattern).strip_prefix(source_dir) {
        Ok(rest) if Path::new(pattern).is_absolute() => {
            let rest = rest.to_string_lossy();
            if rest.is_empty() {
                ".".to_string()
            } else {
                rest.into_owned()
            }
        }
        _ => pattern.to_string(),
    }
}

/// Puts a staged artifact folder (`files` in `staging`) in its place as `<output>/<name>` (and
/// `<name>.zip` when `zip`).
pub(crate) fn publish(
    output: &beneath::Dir,
    staging: &Staging<'_>,
    identifier: &str,
    name: String,
    zip: bool,
) -> Result<ArtifactResult, ArtifactError> {
    let rel = PathBuf::from(&name);
    if let Some(parent) = rel.parent() {
        output.create_dir_all(parent)?;
    }
    let published = output.create_dir_all(Path::new(PUBLISHED))?;
    swap_into_place(output, &rel, &published, staging, "files")?;
    let final_dir = output.path().join(&rel);
    let files = list_files(&final_dir);
    let zip = if zip {
        let zip_name = format!("{name}.zip");
        write_zip(&final_dir, &staging.dir.path().join("artifact.zip"))?;
        swap_into_place(
            output,
            Path::new(&zip_name),
            &published,
            staging,
            "artifact.zip",
        )?;
        Some(output.path().join(zip_name))
    } else {
        None
    };
    Ok(ArtifactResult {
        identifier: identifier.to_string(),
        name,
        path: final_dir,
        zip,
        files,
    })
}

/// An artifact name as a relative path below the output folder. `/` nests, as on CodeBuild
/// (`builds/$CODEBUILD_BUILD_NUMBER/app` lands in `builds/7/app`); empty, `.` and `..` components are
/// dropped, so a name cannot lead outside the output folder.
fn sanitize(name: &str, fallback: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|part| !matches!(*part, "" | "." | ".."))
        .collect();
    if parts.is_empty() {
        fallback.to_string()
    } else {
        parts.join("/").replace('\0', "-")
    }
}

/// Puts `staged` (in the staging folder) at `dest` below the output by an exchange of the two, so
/// `dest` is always either the old or the new one; the old one then goes with the staging folder.
/// Something at `dest` that kiln did not publish is left alone and refused, as is a link there.
fn swap_into_place(
    output: &beneath::Dir,
    dest: &Path,
    published: &beneath::Dir,
    staging: &Staging<'_>,
    staged: &str,
) -> Result<(), ArtifactError> {
    let record = PathBuf::from(record_name(dest));
    match output.entry(dest)? {
        None => staging.dir.rename(Path::new(staged), output, dest)?,
        Some(Entry::Symlink(target)) => {
            return Err(BeneathError::Link {
                path: output.path().join(dest),
                target,
            }
            .into());
        }
        Some(_) if published.entry(&record)?.is_none() => {
            return Err(ArtifactError::NotPublished {
                path: output.path().join(dest),
                record: published.path().join(&record),
            });
        }
        Some(_) => match staging.dir.exchange(Path::new(staged), output, dest) {
            // A file system without RENAME_EXCHANGE: the old one aside first, then the new one in.
            Err(BeneathError::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                output.rename(dest, &staging.dir, Path::new(&format!("old-{staged}")))?;
                staging.dir.rename(Path::new(staged), output, dest)?;
            }
            other => other?,
        },
    }
    if published.entry(&record)?.is_none() {
        published.create_file(&record)?;
    }
    Ok(())
}

/// The name of the record that says kiln published `dest`: its path with `%` and `/` escaped.
fn record_name(dest: &Path) -> String {
    dest.to_string_lossy()
        .replace('%', "%25")
        .replace('/', "%2F")
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    files
}

/// Zips an artifact folder as a revision is zipped: deterministic bytes, a manifest beside it.
fn write_zip(dir: &Path, dest: &Path) -> Result<(), ArtifactError> {
    let options = crate::revision::PackageOptions {
        format: crate::revision::Format::Zip,
        require_appspec: false,
        timestamp: None,
    };
    crate::revision::package(dir, dest, &options, None)
        .map(|_| ())
        .map_err(|e| ArtifactError::Plugin(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_in_the_source_become_relative_to_it() {
        let src = Path::new("/w/src");
        assert_eq!(in_source("/w/src/dist/**/*", src), "dist/**/*");
        assert_eq!(in_source("/w/src", src), ".");
        assert_eq!(in_source("/w/srcx/a", src), "/w/srcx/a");
        assert_eq!(in_source("/etc/passwd", src), "/etc/passwd");
        assert_eq!(in_source("dist/*", src), "dist/*");
    }
}
