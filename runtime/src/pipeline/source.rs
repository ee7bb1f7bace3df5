//! A git source action (CodeCommit, CodeStarSourceConnection, GitHub v1) run on a repository of
//! this host: the commit a branch points at, its tree written out as the action's output
//! artifact, the files a push changed (for trigger filters), the tags and branches there are (for
//! polling), a mirror of a remote repository, and the git hooks that make a commit start a watch.
//!
//! The repository is treated as hostile: it may be a downloaded tree or a colleague's branch, and
//! kiln runs git unconfined, on the host. Every git kiln runs on it goes through
//! [`crate::build::git::command`] (no hook, fsmonitor, pager, ssh command, or `GIT_*` variable of
//! kiln's environment), without the system configuration either; names that come from a
//! pipeline file or a repository are checked before they reach git and passed where git cannot
//! read them as options. A commit's tree is written out from its objects as they are (read with
//! `git cat-file --batch`), never through a checkout: a checkout applies the repository's
//! `.gitattributes`, whose filter drivers (`filter.<name>.smudge`) are programs the repository's
//! configuration names, and which no setting can switch off by name in advance.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::build::git;

/// Why a source action could not read or write what it needed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{0}` is not a branch name git accepts")]
    BranchName(String),
    #[error("`{0}` is not a commit name kiln passes to git")]
    CommitName(String),
    #[error("the repository at {repo} has no branch `{branch}`")]
    NoBranch { repo: PathBuf, branch: String },
    #[error("`{name}` names no commit of the repository at {repo}")]
    NoCommit { repo: PathBuf, name: String },
    #[error("git {step} in {repo}: {message}")]
    Git {
        step: &'static str,
        repo: PathBuf,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not an empty folder")]
    NotEmpty(PathBuf),
    #[error("commit {commit} holds {path}, which would be written through a link")]
    ThroughLink { commit: String, path: PathBuf },
    #[error("`{url}` is not a repository URL kiln fetches: {why}")]
    Url { url: String, why: &'static str },
    #[error("{0} is not inside a git repository")]
    NoRepository(PathBuf),
}

/// A commit, with what CodePipeline's source actions say of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Its object id: 40 hex digits (64 in a SHA-256 repository).
    pub id: String,
    /// The branch it was read from.
    pub branch: String,
    /// The whole message.
    pub message: String,
    /// The message's first paragraph, on one line.
    pub subject: String,
    pub author_name: String,
    pub author_email: String,
    /// Strict ISO 8601 (`2026-11-28T01:41:40+00:00`), as CodePipeline's `AuthorDate`.
    pub author_date: String,
    /// Strict ISO 8601, as CodePipeline's `CommitterDate`.
    pub committer_date: String,
}

/// `git <args>` on the repository at `repo`: [`git::command`] without the system configuration.
fn command(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = git::command(repo, args);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1");
    cmd
}

/// Runs `cmd` to its end: its output, or what git said when it failed.
fn run(mut cmd: Command, step: &'static str, repo: &Path) -> Result<Vec<u8>, SourceError> {
    let err = |message: String| SourceError::Git {
        step,
        repo: repo.to_path_buf(),
        message,
    };
    let out = cmd.output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(out.stdout)
}

/// What `git <args>` prints on the repository at `repo`, trimmed.
fn text(repo: &Path, args: &[&str], step: &'static str) -> Result<String, SourceError> {
    let out = run(command(repo, args), step, repo)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// A commit or object name: 40 hex digits (SHA-1) or 64 (SHA-256).
fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks `branch` is a branch name git accepts (`git check-ref-format`), read as nothing else:
/// not an option (`-x`, `--upload-pack=x`), not `@{-1}` (which `--branch` would expand).
fn check_branch(repo: &Path, branch: &str) -> Result<(), SourceError> {
    let refused = || SourceError::BranchName(branch.to_string());
    if branch.is_empty()
        || branch.starts_with('-')
        || branch.contains("@{")
        || branch.bytes().any(|b| b < b' ' || b == 0x7f)
    {
        return Err(refused());
    }
    // check-ref-format takes no `--end-of-options`; a name starting `refs/` is no option anyway.
    let status = command(repo, &["check-ref-format", &format!("refs/heads/{branch}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| SourceError::Git {
            step: "check-ref-format",
            repo: repo.to_path_buf(),
            message: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The full id of the commit `name` (an id, a branch or a tag; never an option) names.
fn resolve_commit(repo: &Path, name: &str) -> Result<String, SourceError> {
    if name.is_empty() || name.starts_with('-') || name.bytes().any(|b| b < b' ') {
        return Err(SourceError::CommitName(name.to_string()));
    }
    let out = command(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{name}^{{commit}}"),
        ],
    )
    .output()
    .map_err(|e| SourceError::Git {
        step: "rev-parse",
        repo: repo.to_path_buf(),
        message: e.to_string(),
    })?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && is_object_id(&id) {
        Ok(id)
    } else {
        Err(SourceError::NoCommit {
            repo: repo.to_path_buf(),
            name: name.to_string(),
        })
    }
}

/// The commit `branch` points at in the repository at `repo` (a work tree, or a bare repository
/// such as a [`mirror`]'s).
pub fn head_of(repo: &Path, branch: &str) -> Result<Commit, SourceError> {
    check_branch(repo, branch)?;
    let id = resolve_commit(repo, &format!("refs/heads/{branch}")).map_err(|_| {
        SourceError::NoBranch {
            repo: repo.to_path_buf(),
            branch: branch.to_string(),
        }
    })?;
    read_commit(repo, id, branch)
}

/// The commit `name` (an id, or a tag) names, as taken from `branch`: a source action given the
/// commit to take (the one `watch` saw, or the one a retry took before).
pub fn commit(repo: &Path, name: &str, branch: &str) -> Result<Commit, SourceError> {
    let id = resolve_commit(repo, name).map_err(|_| SourceError::NoCommit {
        repo: repo.to_path_buf(),
        name: name.to_string(),
    })?;
    read_commit(repo, id, branch)
}

fn read_commit(repo: &Path, id: String, branch: &str) -> Result<Commit, SourceError> {
    // `--no-show-signature`: a repository's `log.showSignature` would run its `gpg.program`.
    let out = run(
        command(
            repo,
            &[
                "log",
                "-1",
                "--no-show-signature",
                "--no-mailmap",
                "--format=%H%x00%an%x00%ae%x00%aI%x00%cI%x00%s%x00%B",
                "--end-of-options",
                &id,
                "--",
            ],
        ),
        "log",
        repo,
    )?;
    let out = String::from_utf8_lossy(&out);
    let fields: Vec<&str> = out.splitn(7, '\0').collect();
    let [
        got,
        author_name,
        author_email,
        author_date,
        committer_date,
        subject,
        message,
    ] = fields.as_slice()
    else {
        return Err(SourceError::Git {
            step: "log",
            repo: repo.to_path_buf(),
            message: format!("unexpected output for {id}"),
        });
    };
    if *got != id {
        return Err(SourceError::Git {
            step: "log",
            repo: repo.to_path_buf(),
            message: format!("asked for {id}, read {got}"),
        });
    }
    Ok(Commit {
        id,
        branch: branch.to_string(),
        message: message.trim_end_matches('\n').to_string(),
        subject: subject.to_string(),
        author_name: author_name.to_string(),
        author_email: author_email.to_string(),
        author_date: author_date.to_string(),
        committer_date: committer_date.to_string(),
    })
}

/// Writes the tree of `commit` into `dest` (an empty folder, made if missing): files with their
/// modes (`100755` executable), links as links, no `.git`. The repository's work tree and index
/// are not touched.
///
/// Blobs are written as the commit holds them: no `.gitattributes` filter, end-of-line conversion
/// or `export-subst` (a checkout's filters are programs the repository names; see the module's
/// documentation), so a Git LFS file is its pointer. Submodules are not checked out: each is an
/// empty folder, as after a `git clone` without `--recurse-submodules`. A path that would be
/// written through a link the tree itself holds (`evil -> /elsewhere` and `evil/file`) fails the
/// export; nothing is written outside `dest`. On failure, what was written stays in `dest`.
pub fn export(repo: &Path, commit: &str, dest: &Path) -> Result<(), SourceError> {
    let id = resolve_commit(repo, commit)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    if std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(SourceError::NotEmpty(dest.to_path_buf()));
    }
    let git_err = |step: &'static str| {
        move |message: String| SourceError::Git {
            step,
            repo: repo.to_path_buf(),
            message,
        }
    };
    let entries = git::tree_of(repo, &id).map_err(git_err("ls-tree"))?;
    let (blobs, submodules): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e.mode != "160000");
    let ids: Vec<&str> = blobs.iter().map(|e| e.id.as_str()).collect();
    // Written in the tree's order, so a link comes before any path beneath its name.
    let mut failed = None;
    let read = git::read_blobs(repo, &ids, |i, body| {
        let entry = blobs[i];
        write_entry(dest, &id, &entry.path, &entry.mode, body).map_err(|e| {
            let message = e.to_string();
            failed = Some(e);
            message
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read.map_err(git_err("cat-file"))?;
    for entry in submodules {
        let target = dest.join(&entry.path);
        folders_beneath(dest, &id, &entry.path)?;
        std::fs::create_dir(&target).map_err(io(&target))?;
    }
    Ok(())
}

/// Makes the folders above `dest/rel`, each checked to be a real folder: one that is a link
/// (which the tree wrote earlier) fails the export.
fn folders_beneath(dest: &Path, commit: &str, rel: &Path) -> Result<(), SourceError> {
    let mut at = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(SourceError::ThroughLink {
                    commit: commit.to_string(),
                    path: rel.to_path_buf(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|source| SourceError::Io {
                    path: at.clone(),
                    source,
                })?;
            }
            Err(source) => return Err(SourceError::Io { path: at, source }),
        }
    }
    Ok(())
}

/// Writes one blob of the tree at `dest/rel`: a link (`120000`), or a file that must not exist yet
/// (`create_new` does not follow a link in its place).
fn write_entry(
    dest: &Path,
    commit: &str,
    rel: &Path,
    mode: &str,
    body: &mut dyn Read,
) -> Result<(), SourceError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let target = dest.join(rel);
    let io = |source| SourceError::Io {
        path: target.clone(),
        source,
    };
    folders_beneath(dest, commit, rel)?;
    if mode == "120000" {
        let mut link = Vec::new();
        body.take(4097).read_to_end(&mut link).map_err(io)?;
        if link.len() > 4096 {
            return Err(io(std::io::Error::other(
                "a link to a path longer than 4096 bytes",
            )));
        }
        return std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&link), &target).map_err(io);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(io)?;
    std::io::copy(body, &mut file).map_err(io)?;
    let bits = if mode == "100755" { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(bits))
        .map_err(io)
}

/// The files changed between `base` and `commit` (added, modified, deleted, both sides of a
/// rename), or every file of `commit` when there is no base: what trigger file-path filters are
/// matched against.
pub fn changed_files(
    repo: &Path,
    base: Option<&str>,
    commit: &str,
) -> Result<Vec<String>, SourceError> {
    let commit = resolve_commit(repo, commit)?;
    let out = match base {
        None => run(
            command(
                repo,
                &[
                    "ls-tree",
                    "-r",
                    "-z",
                    "--name-only",
                    "--full-tree",
                    "--end-of-options",
                    &commit,
                ],
            ),
            "ls-tree",
            repo,
        )?,
        Some(base) => {
            let base = resolve_commit(repo, base)?;
            run(
                command(
                    repo,
                    &[
                        "diff-tree",
                        "-r",
                        "-z",
                        "--name-only",
                        "--no-renames",
                        "--no-ext-diff",
                        "--no-textconv",
                        "--end-of-options",
                        &base,
                        &commit,
                    ],
                ),
                "diff-tree",
                repo,
            )?
        }
    };
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// The tags pointing at `commit` (lightweight, or annotated tags of it), without `refs/tags/`.
pub fn tags_at(repo: &Path, commit: &str) -> Result<Vec<String>, SourceError> {
    let commit = resolve_commit(repo, commit)?;
    let out = text(
        repo,
        &[
            "for-each-ref",
            &format!("--points-at={commit}"),
            "--format=%(refname)",
            "refs/tags/",
        ],
        "for-each-ref",
    )?;
    Ok(out
        .lines()
        .filter_map(|r| r.strip_prefix("refs/tags/"))
        .map(str::to_string)
        .collect())
}

/// The repository's branches (local heads; a mirror's are the remote's) and their commits.
pub fn branches(repo: &Path) -> Result<Vec<(String, String)>, SourceError> {
    let out = text(
        repo,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads/",
        ],
        "for-each-ref",
    )?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let (id, name) = line.split_once(' ')?;
            let name = name.strip_prefix("refs/heads/")?;
            is_object_id(id).then(|| (name.to_string(), id.to_string()))
        })
        .collect())
}

/// The git repository holding `path`: its work tree's top level, or the repository itself when it
/// is bare. Canonical.
pub fn repository_of(path: &Path) -> Option<PathBuf> {
    let out = command(
        path,
        &[
            "rev-parse",
            "--is-bare-repository",
            "--absolute-git-dir",
            "--show-toplevel",
        ],
    )
    .output()
    .ok()?;
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = out.lines();
    let top = match (lines.next(), lines.next(), lines.next()) {
        (Some("true"), Some(git_dir), _) => git_dir,
        (Some("false"), _, Some(top)) => top,
        _ => return None,
    };
    Path::new(top).canonicalize().ok()
}

/// Checks `url` is one kiln fetches from: `https://`, `ssh://`, `file://`, or scp-like
/// `user@host:path`. Everything else is refused, transport helpers (`ext::sh -c ...`, which runs
/// a program) first of all; git is also told to allow only these (`GIT_ALLOW_PROTOCOL`).
fn check_url(url: &str) -> Result<(), SourceError> {
    let refused = |why| {
        Err(SourceError::Url {
            url: url.to_string(),
            why,
        })
    };
    if url.starts_with('-') || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return refused("it would be read as an option, or holds a space or control character");
    }
    if url.contains("::") {
        return refused("transport helpers (`<transport>::<address>`) are not fetched from");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "ssh" | "file") {
            return refused("only https://, ssh://, file:// and user@host:path URLs");
        }
        if rest.is_empty() || rest.starts_with('-') {
            return refused("it names no host or path");
        }
        return Ok(());
    }
    let Some((login, path)) = url.split_once(':') else {
        return refused("only https://, ssh://, file:// and user@host:path URLs");
    };
    let Some((user, host)) = login.split_once('@') else {
        return refused("an scp-like URL names its user: user@host:path");
    };
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !plain(user) || !plain(host) || path.is_empty() || path.starts_with('-') {
        return refused("its user, host or path is not plain");
    }
    Ok(())
}

/// `git <args>` for fetching `url`: as [`command`] (nothing of kiln's environment or the system's
/// configuration), only the transports [`check_url`] allows, and ssh as the user's.
fn fetch_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = command(dir, &[]);
    cmd.env("GIT_ALLOW_PROTOCOL", "file:https:ssh")
        .args(["-c", "core.sshCommand=ssh"])
        .args(args);
    cmd
}

/// A local mirror of the repository at `url`, in `cache`: cloned (`--mirror`, a bare repository
/// with every ref of the remote) the first time, fetched (pruned) after. The mirror's folder is
/// named by a hash of the URL, so one cache serves many repositories.
pub fn mirror(url: &str, cache: &Path) -> Result<PathBuf, SourceError> {
    check_url(url)?;
    let cache = std::fs::create_dir_all(cache)
        .and_then(|()| cache.canonicalize())
        .map_err(|source| SourceError::Io {
            path: cache.to_path_buf(),
            source,
        })?;
    let cache = cache.as_path();
    let hash = Sha256::digest(url.as_bytes());
    let name: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let path = cache.join(format!("{name}.git"));
    if path.join("HEAD").is_file() {
        let origin = text(
            &path,
            &["config", "--local", "--get", "remote.origin.url"],
            "config",
        )?;
        if origin != url {
            return Err(SourceError::Git {
                step: "fetch",
                repo: path,
                message: format!("the mirror is of {origin}, not {url}"),
            });
        }
        run(
            fetch_command(&path, &["fetch", "--quiet", "--prune", "origin"]),
            "fetch",
            &path,
        )?;
        return Ok(path);
    }
    let partial = cache.join(format!("{name}.git.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let Some(partial_str) = partial.to_str() else {
        return Err(SourceError::Url {
            url: url.to_string(),
            why: "the cache folder's path is not UTF-8",
        });
    };
    run(
        fetch_command(
            cache,
            &[
                "clone",
                "--quiet",
                "--mirror",
                "--template=",
                "--",
                url,
                partial_str,
            ],
        ),
        "clone",
        cache,
    )
    .inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&partial);
    })?;
    std::fs::rename(&partial, &path).map_err(|source| SourceError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The line that marks a hook as kiln's.
const MARK: &str = "# kiln pipeline hook:";

/// The hooks kiln installs: a commit (`post-commit`), and any other update of a branch (a merge,
/// a reset, `git branch -f`, a fetch into `refs/heads`: `reference-transaction`).
const HOOKS: [&str; 2] = ["post-commit", "reference-transaction"];

/// The repository's hooks folder, where git looks for them: `core.hooksPath` when the repository
/// (or the user) sets it. Asked of git without kiln's `core.hooksPath=/dev/null`; `rev-parse`
/// runs nothing.
fn hooks_dir(repo: &Path) -> Result<PathBuf, SourceError> {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .args(["-c", "core.fsmonitor=false", "-C"])
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"]);
    let out = run(cmd, "rev-parse", repo)?;
    let dir = String::from_utf8_lossy(&out).trim().to_string();
    if dir.is_empty() {
        return Err(SourceError::NoRepository(repo.to_path_buf()));
    }
    Ok(repo.join(dir))
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script of kiln's hook `name`: runs `command` in the background (the commit does not wait
/// for it, and it does not inherit the hook's `GIT_DIR`), then the hook it replaced, if any, with
/// the same arguments and input, whose exit status it returns.
fn hook_script(name: &str, command: &str, previous: &Path) -> String {
    let previous = shell_quote(&previous.to_string_lossy());
    let mut script = format!(
        "#!/bin/sh\n{MARK} installed by kiln; the hook it replaced, if any, is {name}.kiln-previous\n"
    );
    if name == "reference-transaction" {
        // Once per transaction that moved a branch, after it is committed.
        script.push_str(
            "input=$(cat)\n\
             if [ \"$1\" = committed ] && printf '%s\\n' \"$input\" | grep -q ' refs/heads/'; then\n",
        );
    } else {
        script.push_str("input=\nif true; then\n");
    }
    script.push_str(&format!(
        "\t(\n\
         \t\tunset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX GIT_COMMON_DIR GIT_OBJECT_DIRECTORY\n\
         \t\t{command}\n\
         \t) </dev/null >/dev/null 2>&1 &\n\
         fi\n\
         if [ -x {previous} ]; then\n\
         \tprintf '%s\\n' \"$input\" | {previous} \"$@\"\n\
         \texit $?\n\
         fi\n"
    ));
    script
}

/// Installs git hooks in the repository at `repo` so that a commit, or any other update of a
/// branch, runs `command` (a shell line, e.g. `kiln pipeline watch --once FILE`) in the background,
/// without delaying the commit. A hook already there is kept and run after kiln's (renamed
/// `<hook>.kiln-previous`); installing again replaces kiln's hooks. The hooks folder is where git
/// looks (`core.hooksPath` respected). Returns that folder.
pub fn install_hook(repo: &Path, command: &str) -> Result<PathBuf, SourceError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = hooks_dir(repo)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for name in HOOKS {
        let hook = dir.join(name);
        let previous = dir.join(format!("{name}.kiln-previous"));
        if std::fs::symlink_metadata(&hook).is_ok() && !installed_by_kiln(&hook) {
            std::fs::rename(&hook, &previous).map_err(io(&hook))?;
        }
        let partial = dir.join(format!("{name}.kiln-partial"));
        std::fs::write(&partial, hook_script(name, command, &previous)).map_err(io(&partial))?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&partial))?;
        std::fs::rename(&partial, &hook).map_err(io(&hook))?;
    }
    Ok(dir)
}

/// Whether the hook at `path` is one kiln installed: its second line is kiln's mark.
fn installed_by_kiln(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| {
        String::from_utf8_lossy(&b)
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(MARK))
    })
}

/// Removes the hooks [`install_hook`] installed and puts back the ones they replaced.
pub fn uninstall_hook(repo: &Path) -> Result<(), SourceError> {
    let dir = hooks_dir(repo)?;
    for name in HOOKS {
        let hook = dir.join(name);
        let previous = dir.join(format!("{name}.kiln-previous"));
        if !installed_by_kiln(&hook) {
            continue;
        }
        let io = |source| SourceError::Io {
            path: hook.clone(),
            source,
        };
        if std::fs::symlink_metadata(&previous).is_ok() {
            std::fs::rename(&previous, &hook).map_err(io)?;
        } else {
            std::fs::remove_file(&hook).map_err(io)?;
        }
    }
    Ok(())
}

/// The output variables of a source action of `provider` for `commit`, by CodePipeline's names
/// ("Variables reference": CodeCommit, CodeStarSourceConnection, GitHub). `repository_name` is
/// the `RepositoryName` (or `FullRepositoryId`) of the action's configuration. An unknown provider
/// gets CodeCommit's set.
pub fn variables(
    commit: &Commit,
    repository_name: &str,
    provider: &str,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        vars.insert(k.to_string(), v.to_string());
    };
    set("AuthorDate", &commit.author_date);
    set("BranchName", &commit.branch);
    set("CommitId", &commit.id);
    set("CommitMessage", &commit.message);
    match provider {
        "CodeStarSourceConnection" => {
            // No connection here: the ARN is empty.
            set("ConnectionArn", "");
            set("FullRepositoryName", repository_name);
        }
        "GitHub" => {
            set("CommitterDate", &commit.committer_date);
            set("CommitUrl", "");
            set("RepositoryName", repository_name);
        }
        _ => {
            set("CommitterDate", &commit.committer_date);
            set("RepositoryName", repository_name);
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    /// Plain `git -C dir <args>` as a user runs it (hooks and all), without the user's
    /// configuration; its output, trimmed. Panics when it fails: it makes the fixtures.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = user_git(dir, args).output().expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn user_git(dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05+02:00")
            .env("GIT_COMMITTER_DATE", "2026-01-02T04:05:06+01:00")
            .arg("-C")
            .arg(dir)
            .args(args);
        cmd
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn executable(path: &Path) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A repository on `main` with one commit: a.txt, bin/run.sh (executable), link -> a.txt,
    /// sub/dir/deep.txt.
    fn repo() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        git(dir, &["config", "user.name", "Ada"]);
        git(dir, &["config", "user.email", "ada@example.com"]);
        write(dir, "a.txt", "a\n");
        write(dir, "bin/run.sh", "#!/bin/sh\necho run\n");
        executable(&dir.join("bin/run.sh"));
        std::os::unix::fs::symlink("a.txt", dir.join("link")).expect("symlink");
        write(dir, "sub/dir/deep.txt", "deep\n");
        git(dir, &["add", "-A"]);
        git(
            dir,
            &["commit", "-q", "-m", "First things\n\nThe body, line one."],
        );
        tmp
    }

    fn commit_all(dir: &Path, message: &str) -> String {
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"])
    }

    fn wait_for(path: &Path) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if path.exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn head_of_reads_the_commit_of_main_and_of_a_second_branch() {
        let tmp = repo();
        let dir = tmp.path();
        let main = head_of(dir, "main").expect("main");
        assert_eq!(main.id, git(dir, &["rev-parse", "main"]));
        assert_eq!(main.branch, "main");
        assert_eq!(main.subject, "First things");
        assert_eq!(main.message, "First things\n\nThe body, line one.");
        assert_eq!(main.author_name, "Ada");
        assert_eq!(main.author_email, "ada@example.com");
        assert_eq!(main.author_date, "2026-01-02T03:04:05+02:00");
        assert_eq!(main.committer_date, "2026-01-02T04:05:06+01:00");

        git(dir, &["checkout", "-q", "-b", "feature/x"]);
        write(dir, "b.txt", "b\n");
        let second = commit_all(dir, "Second");
        let feature = head_of(dir, "feature/x").expect("feature/x");
        assert_eq!(feature.id, second);
        assert_eq!(feature.branch, "feature/x");
        assert_eq!(head_of(dir, "main").expect("main").id, main.id);
        assert!(matches!(
            head_of(dir, "nope"),
            Err(SourceError::NoBranch { .. })
        ));
    }

    #[test]
    fn hostile_branch_names_are_refused_before_git_reads_them() {
        let tmp = repo();
        for name in [
            "--upload-pack=touch x",
            "-x",
            "",
            "a..b",
            "@{-1}",
            "a b",
            "a\nb",
            "HEAD^",
            "x.lock",
            "main:refs/heads/x",
        ] {
            assert!(
                matches!(head_of(tmp.path(), name), Err(SourceError::BranchName(_))),
                "{name:?} was not refused"
            );
        }
        assert!(matches!(
            export(tmp.path(), "--output=/tmp/x", tmp.path()),
            Err(SourceError::CommitName(_))
        ));
    }

    #[test]
    fn export_writes_the_tree_with_modes_and_links_and_leaves_the_repository_alone() {
        let tmp = repo();
        let dir = tmp.path();
        // A change not committed, staged and not: the export is of the commit, and leaves both.
        write(dir, "a.txt", "changed\n");
        write(dir, "staged.txt", "staged\n");
        git(dir, &["add", "staged.txt"]);
        let status = git(dir, &["status", "--porcelain"]);
        let index = std::fs::read(dir.join(".git/index")).expect("index");

        let out = tempfile::tempdir().expect("tempdir");
        let dest = out.path().join("artifact");
        export(dir, "main", &dest).expect("export");

        assert_eq!(
            std::fs::read_to_string(dest.join("a.txt")).expect("a"),
            "a\n"
        );
        let mode = |rel: &str| {
            std::fs::symlink_metadata(dest.join(rel))
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a.txt"), 0o644);
        assert_eq!(mode("bin/run.sh"), 0o755);
        assert_eq!(
            std::fs::read_link(dest.join("link")).expect("a link"),
            PathBuf::from("a.txt")
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/dir/deep.txt")).expect("deep"),
            "deep\n"
        );
        assert!(!dest.join(".git").exists());
        assert!(!dest.join("staged.txt").exists());
        let mut names: Vec<String> = std::fs::read_dir(&dest)
            .expect("dest")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "bin", "link", "sub"]);

        assert_eq!(git(dir, &["status", "--porcelain"]), status);
        assert_eq!(std::fs::read(dir.join(".git/index")).expect("index"), index);
        assert_eq!(
            std::fs::read_to_string(dir.join("a.txt")).expect("a"),
            "changed\n"
        );

        assert!(matches!(
            export(dir, "main", &dest),
            Err(SourceError::NotEmpty(_))
        ));
    }

    #[test]
    fn export_of_a_bare_repository() {
        let tmp = repo();
        let bare = tempfile::tempdir().expect("tempdir");
        let bare = bare.path().join("bare.git");
        git(
            tmp.path(),
            &["clone", "-q", "--bare", ".", bare.to_str().expect("utf-8")],
        );
        let commit = head_of(&bare, "main").expect("main");
        let out = tempfile::tempdir().expect("tempdir");
        export(&bare, &commit.id, out.path()).expect("export");
        assert!(out.path().join("sub/dir/deep.txt").is_file());
    }

    #[test]
    fn export_never_writes_through_a_link_the_tree_holds() {
        let tmp = repo();
        let dir = tmp.path();
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().to_str().expect("utf-8");
        // A tree git itself would not make: `evil -> <outside>` and `evil/file`.
        let hash = |text: &str| {
            let path = dir.join("blob.tmp");
            std::fs::write(&path, text).expect("write");
            git(dir, &["hash-object", "-w", "blob.tmp"])
        };
        let link = hash(target);
        let file = hash("written through the link\n");
        let inner = git_stdin(dir, &["mktree"], &format!("100644 blob {file}\tfile\n"));
        let tree = git_stdin(
            dir,
            &["mktree"],
            &format!("120000 blob {link}\tevil\n040000 tree {inner}\tevil\n"),
        );
        let commit = git(dir, &["commit-tree", &tree, "-m", "evil"]);

        let out = tempfile::tempdir().expect("tempdir");
        let err = export(dir, &commit, out.path()).expect_err("refused");
        assert!(matches!(err, SourceError::ThroughLink { .. }), "{err}");
        assert!(!outside.path().join("file").exists());
    }

    /// `git <args>` with `input` on its standard input.
    fn git_stdin(dir: &Path, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("git")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("written");
        let out = child.wait_with_output().expect("git ends");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn a_hostile_repository_configuration_runs_nothing() {
        let tmp = repo();
        let dir = tmp.path();
        let traps = tempfile::tempdir().expect("tempdir");
        let trap = |name: &str| {
            let script = traps.path().join(format!("{name}.sh"));
            let marker = traps.path().join(format!("{name}.ran"));
            std::fs::write(
                &script,
                format!("#!/bin/sh\ntouch '{}'\ncat\n", marker.display()),
            )
            .expect("write");
            executable(&script);
            (script.display().to_string(), marker)
        };
        let (fsmonitor, fsmonitor_ran) = trap("fsmonitor");
        let (smudge, smudge_ran) = trap("smudge");
        let (gpg, gpg_ran) = trap("gpg");
        let (pager, pager_ran) = trap("pager");
        let hooks = traps.path().join("hooks");
        std::fs::create_dir(&hooks).expect("mkdir");
        let mut hook_markers = Vec::new();
        for hook in [
            "post-checkout",
            "reference-transaction",
            "post-index-change",
        ] {
            let (script, marker) = trap(hook);
            std::fs::rename(script, hooks.join(hook)).expect("rename");
            hook_markers.push(marker);
        }
        write(dir, ".gitattributes", "* filter=evil\n");
        commit_all(dir, "Attributes");
        for (key, value) in [
            ("core.fsmonitor", fsmonitor.as_str()),
            ("filter.evil.smudge", smudge.as_str()),
            ("filter.evil.required", "true"),
            ("log.showSignature", "true"),
            ("gpg.program", gpg.as_str()),
            ("core.pager", pager.as_str()),
            ("core.hooksPath", hooks.to_str().expect("utf-8")),
        ] {
            git(dir, &["config", key, value]);
        }

        let commit = head_of(dir, "main").expect("head_of");
        let out = tempfile::tempdir().expect("tempdir");
        export(dir, &commit.id, out.path()).expect("export");
        assert_eq!(
            std::fs::read_to_string(out.path().join("a.txt")).expect("a"),
            "a\n"
        );
        changed_files(dir, None, &commit.id).expect("changed_files");
        tags_at(dir, &commit.id).expect("tags_at");
        branches(dir).expect("branches");
        assert!(repository_of(dir).is_some());
        for marker in [&fsmonitor_ran, &smudge_ran, &gpg_ran, &pager_ran]
            .into_iter()
            .chain(&hook_markers)
        {
            assert!(!marker.exists(), "{} ran", marker.display());
        }

        // The traps are armed: git as a user runs it springs them (whether it then succeeds or not).
        let _ = user_git(dir, &["status", "--porcelain"]).output();
        assert!(fsmonitor_ran.exists());
        let plain = tempfile::tempdir().expect("tempdir");
        let prefix = format!("--prefix={}/", plain.path().display());
        let _ = user_git(dir, &["checkout-index", "-a", &prefix]).output();
        assert!(smudge_ran.exists());
    }

    #[test]
    fn changed_files_between_two_commits_and_of_a_first_push() {
        let tmp = repo();
        let dir = tmp.path();
        let first = git(dir, &["rev-parse", "HEAD"]);
        let mut all = changed_files(dir, None, &first).expect("all");
        all.sort();
        assert_eq!(all, ["a.txt", "bin/run.sh", "link", "sub/dir/deep.txt"]);

        write(dir, "a.txt", "modified\n");
        write(dir, "new/b.txt", "b\n");
        std::fs::remove_file(dir.join("link")).expect("rm");
        git(dir, &["mv", "sub/dir/deep.txt", "moved.txt"]);
        let second = commit_all(dir, "Changes");
        let mut changed = changed_files(dir, Some(&first), &second).expect("changed");
        changed.sort();
        assert_eq!(
            changed,
            [
                "a.txt",
                "link",
                "moved.txt",
                "new/b.txt",
                "sub/dir/deep.txt"
            ]
        );
        assert!(
            changed_files(dir, Some(&second), &second)
                .expect("none")
                .is_empty()
        );
        assert!(matches!(
            changed_files(dir, Some("-p"), &second),
            Err(SourceError::CommitName(_))
        ));
    }

    #[test]
    fn tags_at_lists_lightweight_and_annotated_tags_of_the_commit() {
        let tmp = repo();
        let dir = tmp.path();
        let first = git(dir, &["rev-parse", "HEAD"]);
        git(dir, &["tag", "v1"]);
        git(dir, &["tag", "-a", "-m", "Release", "release-1"]);
        write(dir, "b.txt", "b\n");
        let second = commit_all(dir, "Second");
        git(dir, &["tag", "v2"]);
        let mut tags = tags_at(dir, &first).expect("tags");
        tags.sort();
        assert_eq!(tags, ["release-1", "v1"]);
        assert_eq!(tags_at(dir, &second).expect("tags"), ["v2"]);
    }

    #[test]
    fn branches_and_the_repository_of_a_folder() {
        let tmp = repo();
        let dir = tmp.path();
        let id = git(dir, &["rev-parse", "HEAD"]);
        git(dir, &["branch", "release/1"]);
        assert_eq!(
            branches(dir).expect("branches"),
            [
                ("main".to_string(), id.clone()),
                ("release/1".to_string(), id)
            ]
        );
        let top = dir.canonicalize().expect("canonical");
        assert_eq!(repository_of(&dir.join("sub/dir")), Some(top.clone()));
        assert_eq!(repository_of(dir), Some(top));
        let bare = tempfile::tempdir().expect("tempdir");
        git(bare.path(), &["init", "-q", "--bare"]);
        assert_eq!(
            repository_of(bare.path()),
            Some(bare.path().canonicalize().expect("canonical"))
        );
        let none = tempfile::tempdir().expect("tempdir");
        assert_eq!(repository_of(none.path()), None);
    }

    #[test]
    fn an_installed_hook_runs_the_command_on_a_commit_and_chains_the_previous_hook() {
        let tmp = repo();
        let dir = tmp.path();
        let marks = tempfile::tempdir().expect("tempdir");
        let ran = marks.path().join("kiln ran");
        let previous_ran = marks.path().join("previous ran");
        let hooks = dir.join(".git/hooks");
        std::fs::create_dir_all(&hooks).expect("mkdir");
        let previous = format!("#!/bin/sh\ntouch '{}'\n", previous_ran.display());
        std::fs::write(hooks.join("post-commit"), &previous).expect("write");
        executable(&hooks.join("post-commit"));

        let command = format!("touch {}", shell_quote(&ran.to_string_lossy()));
        let installed = install_hook(dir, &command).expect("install");
        assert_eq!(
            installed.canonicalize().expect("canonical"),
            hooks.canonicalize().expect("canonical")
        );
        // Installed twice: replaced, not stacked, and the previous hook still the user's.
        let first = std::fs::read_to_string(hooks.join("post-commit")).expect("hook");
        install_hook(dir, &command).expect("install again");
        let second = std::fs::read_to_string(hooks.join("post-commit")).expect("hook");
        assert_eq!(first, second);
        assert_eq!(second.matches(MARK).count(), 1);
        assert_eq!(
            std::fs::read_to_string(hooks.join("post-commit.kiln-previous")).expect("previous"),
            previous
        );

        write(dir, "b.txt", "b\n");
        commit_all(dir, "Second");
        assert!(wait_for(&ran), "the command did not run on a commit");
        assert!(wait_for(&previous_ran), "the previous hook did not run");

        // Any other update of a branch runs it too (reference-transaction).
        std::fs::remove_file(&ran).expect("rm");
        git(dir, &["branch", "topic"]);
        assert!(wait_for(&ran), "the command did not run on a branch update");

        uninstall_hook(dir).expect("uninstall");
        assert_eq!(
            std::fs::read_to_string(hooks.join("post-commit")).expect("hook"),
            previous
        );
        assert!(!hooks.join("post-commit.kiln-previous").exists());
        assert!(!hooks.join("reference-transaction").exists());
        std::fs::remove_file(&ran).expect("rm");
        write(dir, "c.txt", "c\n");
        commit_all(dir, "Third");
        std::thread::sleep(Duration::from_millis(300));
        assert!(!ran.exists(), "the command ran after uninstall");
    }

    #[test]
    fn hooks_go_where_core_hooks_path_says() {
        let tmp = repo();
        let dir = tmp.path();
        git(dir, &["config", "core.hooksPath", "my-hooks"]);
        let installed = install_hook(dir, "true").expect("install");
        assert_eq!(
            installed.canonicalize().expect("canonical"),
            dir.join("my-hooks").canonicalize().expect("canonical")
        );
        assert!(dir.join("my-hooks/post-commit").is_file());
        assert!(!dir.join(".git/hooks/post-commit").exists());
    }

    #[test]
    fn a_file_url_is_mirrored_and_fetched_again() {
        let tmp = repo();
        let dir = tmp.path();
        let cache = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.display());
        let path = mirror(&url, cache.path()).expect("mirror");
        assert_eq!(
            head_of(&path, "main").expect("main").id,
            git(dir, &["rev-parse", "main"])
        );
        write(dir, "b.txt", "b\n");
        let second = commit_all(dir, "Second");
        git(dir, &["branch", "topic"]);
        assert_eq!(mirror(&url, cache.path()).expect("again"), path);
        assert_eq!(head_of(&path, "main").expect("main").id, second);
        assert_eq!(branches(&path).expect("branches").len(), 2);
    }

    #[test]
    fn urls_of_other_transports_are_refused() {
        let cache = tempfile::tempdir().expect("tempdir");
        let marker = cache.path().join("ran");
        for url in [
            format!("ext::sh -c touch% {}", marker.display()),
            "ext::sh".to_string(),
            "fd::3".to_string(),
            "http://example.com/repo.git".to_string(),
            "/a/local/path".to_string(),
            "host:path".to_string(),
            "git@-oProxyCommand=x:path".to_string(),
            "--upload-pack=touch x".to_string(),
            "https://".to_string(),
        ] {
            assert!(
                matches!(mirror(&url, cache.path()), Err(SourceError::Url { .. })),
                "{url} was not refused"
            );
        }
        // Should a URL get past the check, git itself allows none but file, https and ssh.
        let helper = format!("ext::sh -c touch% {}", marker.display());
        let out = fetch_command(cache.path(), &["clone", "--mirror", "--", &helper, "m.git"])
            .output()
            .expect("git runs");
        assert!(!out.status.success());
        assert!(!marker.exists());
        for url in [
            "https://example.com/a/b.git",
            "ssh://git@example.com/a/b.git",
            "git@github.com:owner/repo.git",
            "file:///srv/repo.git",
        ] {
            assert!(check_url(url).is_ok(), "{url} was refused");
        }
    }

    #[test]
    fn variables_by_provider_as_codepipeline_names_them() {
        let commit = Commit {
            id: "a".repeat(40),
            branch: "main".to_string(),
            message: "Subject\n\nBody".to_string(),
            subject: "Subject".to_string(),
            author_name: "Ada".to_string(),
            author_email: "ada@example.com".to_string(),
            author_date: "2026-01-02T03:04:05+00:00".to_string(),
            committer_date: "2026-01-02T04:05:06+01:00".to_string(),
        };
        let keys = |provider| {
            variables(&commit, "repo", provider)
                .into_keys()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys("CodeCommit"),
            [
                "AuthorDate",
                "BranchName",
                "CommitId",
                "CommitMessage",
                "CommitterDate",
                "RepositoryName"
            ]
        );
        assert_eq!(
            keys("CodeStarSourceConnection"),
            [
                "AuthorDate",
                "BranchName",
                "CommitId",
                "CommitMessage",
                "ConnectionArn",
                "FullRepositoryName"
            ]
        );
        assert_eq!(
            keys("GitHub"),
            [
                "AuthorDate",
                "BranchName",
                "CommitId",
                "CommitMessage",
                "CommitUrl",
                "CommitterDate",
                "RepositoryName"
            ]
        );
        let vars = variables(&commit, "repo", "CodeCommit");
        assert_eq!(vars["CommitMessage"], "Subject\n\nBody");
        assert_eq!(vars["CommitId"], commit.id);
        assert_eq!(vars["AuthorDate"], commit.author_date);
    }
}
