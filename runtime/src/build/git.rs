//! kiln's use of git: running it on a project so that nothing of the project can make it run a
//! program, reading which repository a project folder is checked out from, and giving a build's
//! workspace a `.git` of its own, as CodeBuild's git sources are clones.
//!
//! The workspace's `.git` is a new repository that borrows the project's objects
//! (`objects/info/alternates`, which is what `git clone --shared` sets up) and holds HEAD's
//! commit (on HEAD's branch when it is on one), the project's tags, and an index of HEAD refreshed
//! against the workspace, so `git status` shows the uncommitted changes the workspace was copied
//! with. Borrowing costs the same few tens of milliseconds whatever the size of the history; copying
//! it does not: `git clone --no-local` (a pack made by upload-pack) took 0.37 s for ripgrep's 2,300
//! commits and 4.7 s for cargo's 23,000, on every build, and a file copy of the objects
//! (`--no-hardlinks`) is 106 MB of disk per build for cargo. Hard links (git's default for a local
//! clone) would let the build write into the project's own object files. The build sees the
//! project's objects read-only and writes what it makes (a `git commit`, a `git tag`) into its own
//! `.git`, which goes with the workspace.
//!
//! A project's `.git` may be hostile (a downloaded tree, a colleague's branch): a link, a `gitdir:`
//! file naming another repository of the user's, a `commondir`, an objects folder that is a link,
//! alternates into other repositories. kiln lends a build only the objects of a repository that is
//! the folder's own (see [`work_tree`]); anything else gets no `.git`, and the log says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Settings given to every git kiln runs on a project, over the project's own `.git/config`:
/// each switches off something that would run a program the project names (a project's
/// configuration is its author's, and kiln runs git unconfined, on the host). The commands kiln
/// runs on a project (`rev-parse`, `ls-files`, `for-each-ref`) trigger few of them; the rest are
/// off in case a later git or a later call does. Filter drivers (`filter.<name>.clean`) cannot be
/// switched off by name in advance: kiln runs nothing on a project that reads file contents
/// through them. `safe.directory` is left as the user set it, so git still refuses a repository
/// owned by someone else.
const SAFE_CONFIG: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.askPass=",
    "credential.helper=",
    "diff.external=",
    "core.attributesFile=/dev/null",
    "protocol.allow=never",
    "submodule.recurse=false",
];

/// `git <args>` for the project folder `dir`, with nothing in the project able to run a program
/// (see [`SAFE_CONFIG`]) and nothing in kiln's environment able to point git elsewhere: every
/// `GIT_*` variable (`GIT_DIR`, `GIT_CONFIG_PARAMETERS`, `GIT_EXEC_PATH`...) is cleared. Optional
/// locks are off, so git does not rewrite the project's index while kiln reads it.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .arg("--no-pager");
    for setting in SAFE_CONFIG {
        cmd.arg("-c").arg(setting);
    }
    cmd.arg("-C").arg(dir).args(args);
    cmd
}

/// `git <args>` in a workspace's own repository, which kiln made: as [`command`], and without the
/// user's and the system's configuration either (a global `init.templateDir`, hooks or filter
/// drivers are not the build's).
fn workspace_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = command(dir, args);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd
}

/// What `git -C dir <args>` prints, when git is there and succeeds.
fn output(dir: &Path, args: &[&str]) -> Option<String> {
    let out = command(dir, args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A folder inside a git work tree.
#[derive(Debug)]
pub struct WorkTree {
    /// The work tree's root (canonical): the folder itself, or one above it.
    pub root: Option<PathBuf>,
    /// HEAD's commit, when the repository has one.
    pub head: Option<String>,
    /// The repository the folder is the root of, when kiln can lend its history to a build; or
    /// why not.
    pub repository: Result<Repository, String>,
}

/// A repository checked out in a project folder and verified to be that folder's own: its history
/// can be lent to a build.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The folder it is checked out in (its work tree's root), on the host.
    pub work_tree: PathBuf,
    /// HEAD's commit.
    pub head: String,
    /// The branch HEAD is on (without `refs/heads/`), when it is on one.
    pub branch: Option<String>,
    /// Its object database, which a workspace's `.git` borrows (a real folder, canonical).
    pub objects: PathBuf,
}

/// Why a workspace could not be given a `.git`.
#[derive(Debug, thiserror::Error)]
#[error("git {step}: {message}")]
pub struct GitError {
    step: &'static str,
    message: String,
}

/// Whether `dir` (canonical) is inside a git work tree and, when it is, its commit and whether its
/// repository is its own. One git process, as for any build: each costs milliseconds, which a
/// cached build notices.
///
/// A repository is the folder's own when the folder is its work tree's root and its `.git` is:
/// a folder (not a link) that is both the repository and its common folder (no `commondir` leading
/// elsewhere); or a `gitdir:` file naming a linked worktree of a repository (`<common>/worktrees/
/// <name>`) whose `gitdir` file names this `.git` back; or one naming a submodule's repository whose
/// `core.worktree` is this folder. The back references live in the repository named, which a
/// hostile project cannot write. Its objects folder must be a real folder without alternates (which
/// would lend objects of further repositories).
pub fn work_tree(dir: &Path) -> Option<WorkTree> {
    let out = command(
        dir,
        &[
            "rev-parse",
            "--is-inside-work-tree",
            "--show-toplevel",
            "--absolute-git-dir",
            "--git-common-dir",
            "HEAD",
            "--symbolic-full-name",
            "HEAD",
        ],
    )
    .output()
    .ok()?;
    // An unborn HEAD makes rev-parse fail after it printed the rest: the lines are read either way.
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"true") {
        return None;
    }
    let head = lines
        .get(4)
        .filter(|h| is_object_id(h))
        .map(|h| h.to_string());
    let root = lines
        .get(1)
        .and_then(|top| Path::new(top).canonicalize().ok());
    let repository = match (&root, lines.get(2), lines.get(3), &head) {
        (_, _, _, None) => Err("the repository has no commit yet".to_string()),
        (Some(root), Some(git_dir), Some(common), Some(head)) => {
            own_objects(dir, root, Path::new(git_dir), &dir.join(common)).map(|objects| {
                Repository {
                    work_tree: dir.to_path_buf(),
                    head: head.clone(),
                    branch: lines
                        .get(5)
                        .and_then(|r| r.strip_prefix("refs/heads/"))
                        .filter(|b| plain_ref(b))
                        .map(str::to_string),
                    objects,
                }
            })
        }
        _ => Err("git did not say where its repository is".to_string()),
    };
    Some(WorkTree {
        root,
        head,
        repository,
    })
}

/// The objects folder of the repository checked out in `dir`, whose work tree's root is `top`
/// (canonical), when that repository is `dir`'s own (see [`work_tree`]); else why not.
fn own_objects(dir: &Path, top: &Path, git_dir: &Path, common: &Path) -> Result<PathBuf, String> {
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if top != dir {
        return Err(format!(
            "the project is a folder of the repository at {}; a build of that folder (its buildspec named with -b) gets one",
            top.display()
        ));
    }
    let dot_git = dir.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).map_err(|e| format!(".git: {e}"))?;
    let git_dir = canonical(git_dir)?;
    let common = canonical(common)?;
    let own = if meta.is_dir() {
        git_dir == dot_git && common == dot_git
    } else if meta.is_file() {
        linked_worktree(&git_dir, &common, &dot_git) || submodule(dir, &git_dir, &common)
    } else {
        return Err("its .git is a link".to_string());
    };
    if !own {
        return Err(format!(
            "its .git leads to {}, a repository that does not name this folder as its work tree",
            git_dir.display()
        ));
    }
    let objects = common.join("objects");
    if !std::fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "{} is not a folder (a link, or missing)",
            objects.display()
        ));
    }
    if std::fs::symlink_metadata(objects.join("info/alternates")).is_ok() {
        return Err(format!(
            "its objects are partly in other repositories ({}/info/alternates)",
            objects.display()
        ));
    }
    Ok(objects)
}

/// Whether `git_dir` is a linked worktree of `common` whose `gitdir` file names `dot_git`.
fn linked_worktree(git_dir: &Path, common: &Path, dot_git: &Path) -> bool {
    if git_dir.parent() != Some(&common.join("worktrees")) {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(git_dir.join("gitdir")) else {
        return false;
    };
    // Relative since git 2.48's `worktree.useRelativePaths`, to the worktree's folder.
    let named = git_dir.join(text.trim_end_matches(['\n', '\r']));
    named.canonicalize().is_ok_and(|n| n == dot_git)
}

/// Whether `git_dir` is a submodule's repository (its own common folder) whose `core.worktree` is
/// `dir`. Read from that file alone: `git config --file` follows no `include`.
fn submodule(dir: &Path, git_dir: &Path, common: &Path) -> bool {
    if git_dir != common {
        return false;
    }
    let config = git_dir.join("config");
    let Some(config) = config.to_str() else {
        return false;
    };
    let Some(worktree) = output(dir, &["config", "--file", config, "--get", "core.worktree"])
    else {
        return false;
    };
    git_dir
        .join(worktree)
        .canonicalize()
        .is_ok_and(|w| w == dir)
}

/// A commit or object name: 40 hex digits (SHA-1) or 64 (SHA-256).
fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A ref name kiln writes into a workspace's refs as it is: no space, no control character.
fn plain_ref(name: &str) -> bool {
    !name.is_empty() && !name.bytes().any(|b| b <= b' ' || b == 0x7f)
}

impl Repository {
    /// Gives `work_tree` (a copy of this repository's work tree, in a workspace) a `.git` of its
    /// own: HEAD's commit on HEAD's branch, every tag, the project's objects borrowed, and an index
    /// of HEAD refreshed against the copy. Returns how many tags it holds. On failure nothing is
    /// left behind.
    pub fn lend(&self, work_tree: &Path) -> Result<usize, GitError> {
        let result = self.lend_inner(work_tree);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(work_tree.join(".git"));
        }
        result
    }

    fn lend_inner(&self, work_tree: &Path) -> Result<usize, GitError> {
        let objects = self
            .objects
            .to_str()
            .filter(|o| !o.contains('\n'))
            .ok_or(GitError {
                step: "alternates",
                message: format!(
                    "{} is not a path git can borrow from",
                    self.objects.display()
                ),
            })?;
        let format = if self.head.len() == 64 {
            "--object-format=sha256"
        } else {
            "--object-format=sha1"
        };
        run(
            workspace_command(
                work_tree,
                &[
                    "-c",
                    "init.defaultBranch=main",
                    "init",
                    "-q",
                    "--template=",
                    format,
                ],
            ),
            "init",
        )?;
        let git = work_tree.join(".git");
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text).map_err(|e| GitError {
                step: "init",
                message: format!("{}: {e}", path.display()),
            })
        };
        write(git.join("objects/info/alternates"), format!("{objects}\n"))?;
        // Its submodules are checked out (each is given a `.git` of its own), as `git submodule
        // update --init` would leave them: active, so `git submodule status` and `foreach` see them.
        if work_tree.join(".gitmodules").is_file() {
            let config = git.join("config");
            let mut text = std::fs::read_to_string(&config).map_err(|e| GitError {
                step: "init",
                message: format!("{}: {e}", config.display()),
            })?;
            text.push_str("[submodule]\n\tactive = .\n");
            write(config, text)?;
        }

        // Every tag, as a clone of the project would get the ones in its history: `describe` and
        // semantic-release only count those reachable from HEAD anyway, and listing only those
        // (`--merged HEAD`) walks the history (0.27 s for cargo's) where this reads the refs.
        let listed = run(
            command(
                &self.work_tree,
                &[
                    "for-each-ref",
                    "--format=%(objectname) %(refname)",
                    "refs/tags",
                ],
            ),
            "for-each-ref",
        )?;
        // Written as a packed-refs file: `update-ref` makes a loose ref and a lock file per tag
        // (0.25 s for ripgrep's 272). Without a header git reads it as unsorted and unpeeled.
        let mut refs = Vec::new();
        for line in String::from_utf8_lossy(&listed).lines() {
            if let Some((id, name)) = line.split_once(' ')
                && is_object_id(id)
                && name.starts_with("refs/tags/")
                && plain_ref(name)
            {
                refs.push(format!("{id} {name}\n"));
            }
        }
        let tags = refs.len();
        let head_ref = match &self.branch {
            Some(branch) => {
                refs.push(format!("{} refs/heads/{branch}\n", self.head));
                format!("ref: refs/heads/{branch}\n")
            }
            None => format!("{}\n", self.head),
        };
        write(git.join("packed-refs"), refs.concat())?;
        write(git.join("HEAD"), head_ref)?;
        run(
            workspace_command(work_tree, &["read-tree", "HEAD"]),
            "read-tree",
        )?;
        // The index git would have after `reset`: without it, `diff-index` (and tools that ask it
        // whether the tree is dirty) would see every file as changed. It exits 1 when files differ.
        workspace_command(work_tree, &["update-index", "-q", "--refresh"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| GitError {
                step: "update-index",
                message: e.to_string(),
            })?;
        Ok(tags)
    }
}

/// Runs a git command to its end; its output, or what it said when it failed.
fn run(mut cmd: Command, step: &'static str) -> Result<Vec<u8>, GitError> {
    let err = |message: String| GitError { step, message };
    let out = cmd.output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_sha1_or_sha256_hex() {
        assert!(is_object_id(&"a".repeat(40)));
        assert!(is_object_id(&"0".repeat(64)));
        assert!(!is_object_id("HEAD"));
        assert!(!is_object_id(&"g".repeat(40)));
    }

    #[test]
    fn ref_names_with_spaces_are_not_passed_on() {
        assert!(plain_ref("refs/tags/v1.0"));
        assert!(!plain_ref("refs/tags/a b"));
        assert!(!plain_ref("refs/tags/a\nb"));
    }
}

/// A commit of the project's repository named by `--source-version`: a branch, a tag or a commit.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The commit it names.
    pub commit: String,
    /// The branch it names (without `refs/heads/`), when it names one.
    pub branch: Option<String>,
}

/// Resolves `name` (a branch, tag or commit) in the repository checked out at `dir`. A name git
/// would read as an option is refused.
pub fn resolve(dir: &Path, name: &str) -> Result<Revision, String> {
    if name.is_empty() || name.starts_with('-') || name.contains(['\n', '\0']) {
        return Err(format!("`{name}` is not a branch, tag or commit name"));
    }
    let commit = output(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{name}^{{commit}}"),
        ],
    )
    .filter(|c| is_object_id(c))
    .ok_or_else(|| {
        format!(
            "`{name}` names no commit of the repository at {}",
            dir.display()
        )
    })?;
    let branch = output(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("refs/heads/{name}"),
        ],
    )
    .filter(|c| *c == commit && plain_ref(&format!("refs/heads/{name}")))
    .map(|_| name.to_string());
    Ok(Revision { commit, branch })
}

/// One entry of a commit's tree, as `git ls-tree` lists it.
pub struct TreeEntry {
    /// Its path, checked: relative, no `.`, `..` or `.git` part.
    pub path: PathBuf,
    /// `100644`, `100755`, `120000` (a link) or `160000` (a submodule's commit).
    pub mode: String,
    pub id: String,
}

/// Every entry of `commit`'s tree, read from the repository at `dir`. A path git itself would
/// refuse to check out (`..`, `.git`, absolute) is an error: the repository may be hostile.
pub fn tree_of(dir: &Path, commit: &str) -> Result<Vec<TreeEntry>, String> {
    let out = command(dir, &["ls-tree", "-r", "-z", "--full-tree", commit])
        .output()
        .map_err(|e| format!("git ls-tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git ls-tree: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut entries = Vec::new();
    for record in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text = std::str::from_utf8(record)
            .map_err(|_| "a path of the commit is not UTF-8".to_string())?;
        let (meta, path) = text
            .split_once('\t')
            .ok_or_else(|| format!("git ls-tree printed `{text}`"))?;
        let mut fields = meta.split(' ');
        let (Some(mode), Some(_kind), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("git ls-tree printed `{text}`"));
        };
        let path = PathBuf::from(path);
        let safe = path.components().all(|c| match c {
            std::path::Component::Normal(part) => !part.eq_ignore_ascii_case(".git"),
            _ => false,
        });
        if !safe || !is_object_id(id) {
            return Err(format!(
                "the commit holds a path git would not check out: {}",
                path.display()
            ));
        }
        entries.push(TreeEntry {
            path,
            mode: mode.to_string(),
            id: id.to_string(),
        });
    }
    Ok(entries)
}

/// Streams the contents of `ids` (blobs) from the repository at `dir`, in order: `each` is given
/// the index and a reader of exactly that blob (never held whole in memory).
pub fn read_blobs(
    dir: &Path,
    ids: &[&str],
    mut each: impl FnMut(usize, &mut dyn std::io::Read) -> Result<(), String>,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = command(dir, &["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("git cat-file: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("git cat-file has no stdin")?;
    let list: String = ids.iter().map(|id| format!("{id}\n")).collect();
    // Written from a thread: git answers while it reads, and both pipes would fill.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(list.as_bytes());
    });
    let mut out = BufReader::new(child.stdout.take().ok_or("git cat-file has no stdout")?);
    let mut read_one = |i: usize, id: &str| -> Result<(), String> {
        let mut header = String::new();
        if out.read_line(&mut header).map_err(|e| e.to_string())? == 0 {
            return Err(format!("git cat-file ended before {id}"));
        }
        let size: u64 = match header.trim_end().split(' ').collect::<Vec<_>>().as_slice() {
            [got, "blob", size] if got == &id => size
                .parse()
                .map_err(|_| format!("git cat-file: {}", header.trim_end()))?,
            _ => return Err(format!("git cat-file: {}", header.trim_end())),
        };
        let mut body = (&mut out).take(size);
        each(i, &mut body)?;
        // What `each` left of the blob, then the newline after it.
        std::io::copy(&mut body, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let mut newline = [0u8; 1];
        out.read_exact(&mut newline).map_err(|e| e.to_string())
    };
    let mut result = Ok(());
    for (i, id) in ids.iter().enumerate() {
        result = read_one(i, id);
        if result.is_err() {
            break;
        }
    }
    drop(out);
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();
    result
}

/// The content of `rel` (a file, at most 1 MiB) in `commit` of the repository at `dir`.
pub fn file_at(dir: &Path, commit: &str, rel: &Path) -> Result<String, String> {
    let rel = rel.to_str().ok_or("the path is not UTF-8")?;
    let out = command(dir, &["cat-file", "blob", &format!("{commit}:{rel}")])
        .output()
        .map_err(|e| format!("git cat-file: {e}"))?;
    if !out.status.success() {
        return Err(format!("{commit} has no file {rel}"));
    }
    if out.stdout.len() > 1 << 20 {
        return Err(format!("{rel} in {commit} is larger than 1 MiB"));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{rel} in {commit} is not UTF-8"))
}
