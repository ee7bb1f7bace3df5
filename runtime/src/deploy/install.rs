//! The Install step, as the CodeDeploy agent does it: remove what the previous deployment installed
//! (from its cleanup list), plan the copies (`files`, with `file_exists_behavior`), run them in the
//! `install` plugin (the revision read-only, the destinations read-write), then apply `permissions`
//! to what this deployment installed.
//!
//! Links: a destination is resolved once, when the copies are planned (the links in and above it
//! are the administrator's, `/srv/app -> /data/app`), and every path below it, in the plan and in
//! the cleanup list, is real. Nothing below a destination is followed afterwards: a link found
//! there was planted by a revision or a hook, and kiln neither installs, removes nor changes
//! permissions through it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::beneath::{self, BeneathError, Entry};
use crate::sandbox::{LogSink, Policy, Preopen, Sandbox, StepContext};
use crate::spec::appspec::{AppSpec, FileExists, ObjectType, Permission};

use super::DeployError;

/// One planned operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir(PathBuf),
    /// Copy a file: source, destination, its mode, and whether something is there to replace.
    Copy(PathBuf, PathBuf, u32, bool),
    Symlink(PathBuf, PathBuf),
}

/// What Install will do, in order.
#[derive(Debug, Default)]
pub struct Plan {
    /// Folders above and at each destination that are not there yet (made by kiln, so that the
    /// plugin can be given the destinations).
    pub roots: Vec<PathBuf>,
    /// The destinations opened to the plugin.
    pub destinations: BTreeSet<PathBuf>,
    pub ops: Vec<Op>,
}

impl Plan {
    fn copy_targets(&self) -> impl Iterator<Item = &PathBuf> {
        self.ops.iter().filter_map(|op| match op {
            Op::Copy(_, d, ..) | Op::Symlink(_, d) => Some(d),
            Op::Mkdir(_) => None,
        })
    }

    fn made_dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.roots
            .iter()
            .chain(self.ops.iter().filter_map(|op| match op {
                Op::Mkdir(d) => Some(d),
                _ => None,
            }))
    }

    /// What the next deployment removes: every file copied and folder made, in order.
    pub fn cleanup_list(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.roots.clone();
        for op in &self.ops {
            match op {
                Op::Mkdir(d) | Op::Copy(_, d, ..) | Op::Symlink(_, d) => out.push(d.clone()),
            }
        }
        out
    }
}

/// Removes what a previous deployment installed, newest first; folders only when empty. Missing
/// paths are skipped, and so are paths that now lead through a link (the list holds real paths:
/// a link on the way was planted since, and what is behind it is not kiln's to remove); a listed
/// link is removed itself. Returns how many were removed.
pub fn remove_previous(cleanup: &Path) -> Result<usize, DeployError> {
    let Ok(text) = std::fs::read_to_string(cleanup) else {
        return Ok(0);
    };
    let root = beneath::Dir::open(Path::new("/")).map_err(install_err)?;
    // As the agent: a last line without its newline was cut short and is not trusted.
    let complete = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
    let mut removed = 0;
    for line in complete.lines().rev().filter(|l| !l.is_empty()) {
        let Ok(rel) = Path::new(line).strip_prefix("/") else {
            continue;
        };
        let entry = match root.entry(rel) {
            Ok(Some(entry)) => entry,
            Ok(None) => continue,
            Err(e @ BeneathError::Link { .. }) => {
                eprintln!("warning: {line} is not removed: {e}");
                continue;
            }
            Err(e) => return Err(install_err(e)),
        };
        match root.remove(rel) {
            Ok(()) => removed += 1,
            Err(_) if entry == Entry::Dir => {} // not empty: someone else's files live there too
            Err(e) => return Err(install_err(e)),
        }
    }
    std::fs::remove_file(cleanup).map_err(|e| DeployError::io(cleanup, e))?;
    Ok(removed)
}

/// Plans the copies for `spec`'s `files` from the revision in `archive`.
pub fn plan(spec: &AppSpec, archive: &Path, behavior: FileExists) -> Result<Plan, DeployError> {
    let mut plan = Plan::default();
    let mut planned_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut copies: HashMap<PathBuf, PathBuf> = HashMap::new();
    for mapping in &spec.files {
        let source = archive.join(mapping.source.trim_start_matches('/'));
        let destination = real_destination(Path::new(&mapping.destination));
        let meta = std::fs::metadata(&source).map_err(|_| {
            DeployError::Install(format!(
                "the files section names `{}`, which is not in the revision",
                mapping.source
            ))
        })?;
        if meta.is_dir() {
            make_roots(&mut plan, &mut planned_dirs, &destination);
            plan.destinations.insert(destination.clone());
            walk(
                &mut plan,
                &mut planned_dirs,
                &mut copies,
                &source,
                &destination,
                behavior,
            )?;
        } else {
            make_roots(&mut plan, &mut planned_dirs, &destination);
            plan.destinations.insert(destination.clone());
            let name = source.file_name().unwrap_or_default();
            add_copy(
                &mut plan,
                &mut copies,
                &source,
                &destination.join(name),
                behavior,
                false,
            )?;
        }
    }
    Ok(plan)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A destination as kiln installs to it: the part of it that exists resolved once (its links are
/// the administrator's), the rest as the AppSpec gives it.
fn real_destination(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut missing = Vec::new();
    let mut existing = path.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return path,
        }
    }
}

fn install_err(e: BeneathError) -> DeployError {
    DeployError::Install(e.to_string())
}

/// Plans the folders from `/` down to `dir` that are not there yet.
fn make_roots(plan: &mut Plan, planned: &mut BTreeSet<PathBuf>, dir: &Path) {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| !a.is_dir() && !planned.contains(*a))
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    for d in missing {
        planned.insert(d.clone());
        plan.roots.push(d);
    }
}

fn walk(
    plan: &mut Plan,
    planned: &mut BTreeSet<PathBuf>,
    copies: &mut HashMap<PathBuf, PathBuf>,
    source: &Path,
    dest: &Path,
    behavior: FileExists,
) -> Result<(), DeployError> {
    let mut entries: Vec<_> = std::fs::read_dir(source)
        .map_err(|e| DeployError::io(source, e))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let ft = entry.file_type().map_err(|e| DeployError::io(&from, e))?;
        if ft.is_dir() {
            let there = std::fs::symlink_metadata(&to).ok();
            if there.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                let target = std::fs::read_link(&to).unwrap_or_default();
                return Err(DeployError::Install(format!(
                    "{} is a symlink (to {}) where the revision has a folder: kiln does not \
                     install through links below a destination; remove the link, or make it a \
                     real folder",
                    to.display(),
                    target.display()
                )));
            }
            if !there.is_some_and(|m| m.is_dir()) && !planned.contains(&to) {
                if copies.contains_key(&to) {
                    return Err(DeployError::Install(format!(
                        "the files section installs a file and a folder at {}",
                        to.display()
                    )));
                }
                planned.insert(to.clone());
                plan.ops.push(Op::Mkdir(to.clone()));
            }
            walk(plan, planned, copies, &from, &to, behavior)?;
        } else {
            if planned.contains(&to) {
                return Err(DeployError::Install(format!(
                    "the files section installs the file {}, but a folder with that name is \
                     installed too",
                    to.display()
                )));
            }
            add_copy(plan, copies, &from, &to, behavior, ft.is_symlink())?;
        }
    }
    Ok(())
}

fn add_copy(
    plan: &mut Plan,
    copies: &mut HashMap<PathBuf, PathBuf>,
    from: &Path,
    to: &Path,
    behavior: FileExists,
    symlink: bool,
) -> Result<(), DeployError> {
    if let Some(other) = copies.get(to) {
        return Err(DeployError::Install(format!(
            "the files section installs both {} and {} at {}; remove one of them",
            other.display(),
            from.display(),
            to.display()
        )));
    }
    let exists = std::fs::symlink_metadata(to).is_ok();
    if exists {
        match behavior {
            FileExists::Disallow => {
                return Err(DeployError::Install(format!(
                    "a specified file already exists at this location: {} (file_exists_behavior \
                     is DISALLOW; set OVERWRITE or RETAIN to deploy over it)",
                    to.display()
                )));
            }
            FileExists::Retain => return Ok(()),
            FileExists::Overwrite => {}
        }
    }
    copies.insert(to.to_path_buf(), from.to_path_buf());
    if symlink {
        let target = std::fs::read_link(from).map_err(|e| DeployError::io(from, e))?;
        plan.ops.push(Op::Symlink(target, to.to_path_buf()));
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(from)
            .map(|m| m.permissions().mode() & 0o7777)
            .map_err(|e| DeployError::io(from, e))?;
        plan.ops
            .push(Op::Copy(from.to_path_buf(), to.to_path_buf(), mode, exists));
    }
    Ok(())
}

fn record(bytes: &mut Vec<u8>, fields: &[&str]) {
    for f in fields {
        bytes.extend_from_slice(f.as_bytes());
        bytes.push(0);
    }
}

/// Writes the plugin's plans (NUL-separated records): the folders first, in one plan, then the
/// copies split in `parts` plans that run side by side; and the agent-style `install.json`.
fn write_plans(
    plan: &Plan,
    dir: &Path,
    parts: usize,
    install_json: &Path,
) -> Result<(PathBuf, Vec<PathBuf>), DeployError> {
    let mut dirs = Vec::new();
    let mut json = Vec::new();
    let copies: Vec<&Op> = plan
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Copy(..)))
        .collect();
    for op in &plan.ops {
        match op {
            Op::Mkdir(d) => {
                record(&mut dirs, &["mkdir", &d.to_string_lossy()]);
                json.push(serde_json::json!({ "type": "mkdir", "directory": d }));
            }
            Op::Copy(s, d, mode, _) => {
                json.push(serde_json::json!({
                    "type": "copy", "source": s, "destination": d, "mode": format!("{mode:o}")
                }));
            }
            Op::Symlink(t, d) => {
                json.push(serde_json::json!({ "type": "symlink", "target": t, "destination": d }));
            }
        }
    }
    let dirs_plan = dir.join("install.plan.dirs");
    std::fs::write(&dirs_plan, dirs).map_err(|e| DeployError::io(&dirs_plan, e))?;
    let per_part = copies.len().div_ceil(parts.max(1)).max(1);
    let mut copy_plans = Vec::new();
    for (n, chunk) in copies.chunks(per_part).enumerate() {
        let mut bytes = Vec::new();
        for op in chunk {
            if let Op::Copy(s, d, mode, replace) = op {
                record(
                    &mut bytes,
                    &[
                        "copy",
                        &s.to_string_lossy(),
                        &d.to_string_lossy(),
                        &format!("{mode:o}"),
                        if *replace { "replace" } else { "new" },
                    ],
                );
            }
        }
        let path = dir.join(format!("install.plan.{n}"));
        std::fs::write(&path, bytes).map_err(|e| DeployError::io(&path, e))?;
        copy_plans.push(path);
    }
    let text =
        serde_json::to_vec_pretty(&serde_json::json!({ "instructions": json })).unwrap_or_default();
    std::fs::write(install_json, text).map_err(|e| DeployError::io(install_json, e))?;
    Ok((dirs_plan, copy_plans))
}

/// Everything Install needs from the deployment.
pub struct InstallStep<'a> {
    pub sandbox: &'a Sandbox,
    pub deployment_dir: &'a Path,
    pub archive: &'a Path,
    pub cleanup: &'a Path,
    pub install_json: &'a Path,
    pub behavior: FileExists,
    pub log: Arc<dyn LogSink>,
}

/// What Install did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Installed {
    pub removed: usize,
    pub files: usize,
    pub folders: usize,
    pub permissions: usize,
}

/// Runs Install.
pub async fn install(spec: &AppSpec, step: &InstallStep<'_>) -> Result<Installed, DeployError> {
    let removed = remove_previous(step.cleanup)?;
    let plan = plan(spec, step.archive, step.behavior)?;
    // Copies run in a few plugin instances side by side: each file costs a handful of host calls,
    // and the cores are otherwise idle.
    let parts = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let (dirs_plan, copy_plans) =
        write_plans(&plan, step.deployment_dir, parts, step.install_json)?;
    // The cleanup list is written before anything is installed: a deployment that fails half-way
    // is still cleaned up by the next one (removal skips what is not there).
    let mut list = String::new();
    for path in plan.cleanup_list() {
        list.push_str(&path.to_string_lossy());
        list.push('\n');
    }
    std::fs::write(step.cleanup, list).map_err(|e| DeployError::io(step.cleanup, e))?;
    for dir in &plan.roots {
        std::fs::create_dir(dir).map_err(|e| DeployError::io(dir, e))?;
    }
    if plan.ops.iter().any(|op| !matches!(op, Op::Symlink(..))) {
        let mut preopens = vec![Preopen {
            path: step.deployment_dir.to_path_buf(),
            writable: false,
        }];
        preopens.extend(plan.destinations.iter().map(|d| Preopen {
            path: d.clone(),
            writable: true,
        }));
        let policy = Policy {
            preopens,
            allow_exec: false,
            network: false,
            local_network: false,
            timeout: Some(std::time::Duration::from_secs(3600)),
            memory_limit: 256 << 20,
            scripted_exec: None,
        };
        let context = StepContext {
            build_id: String::new(),
            phase: "Install".into(),
            source_dir: step.archive.to_path_buf(),
            cwd: step.archive.to_path_buf(),
            env: Vec::new(),
            temp_dir: step.deployment_dir.to_path_buf(),
        };
        let run = |plan: PathBuf| {
            let args = [plan.to_string_lossy().into_owned()];
            let (context, policy, log) = (&context, &policy, step.log.clone());
            async move {
                let outcome = step
                    .sandbox
                    .run("install", &args, context, policy, None, log)
                    .await
                    .map_err(|e| DeployError::Install(e.to_string()))?;
                if outcome.status != 0 {
                    return Err(DeployError::Install(outcome.message.unwrap_or_else(|| {
                        format!("the install step failed ({})", outcome.status)
                    })));
                }
                Ok(())
            }
        };
        run(dirs_plan).await?;
        futures::future::try_join_all(copy_plans.into_iter().map(run)).await?;
    }
    // The revision's links are made by kiln, on the host: beneath `/` without following a link,
    // so none planted below a destination leads them (or the removal of what they replace) out.
    let root = beneath::Dir::open(Path::new("/")).map_err(install_err)?;
    for op in &plan.ops {
        if let Op::Symlink(target, dest) = op {
            let rel = dest.strip_prefix("/").unwrap_or(dest);
            if let Some(Entry::File | Entry::Symlink(_) | Entry::Other) =
                root.entry(rel).map_err(install_err)?
            {
                root.remove(rel).map_err(install_err)?;
            }
            root.symlink(target, rel).map_err(install_err)?;
        }
    }
    let permissions = apply_permissions(spec, &plan)?;
    Ok(Installed {
        removed,
        files: plan.copy_targets().count(),
        folders: plan.made_dirs().count(),
        permissions,
    })
}

/// Whether `name` (one path component) matches an AppSpec glob: `*` is the only wildcard.
fn simple_glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether a permission's `pattern` (and not its `except`) takes in `path`, below `object`: `**`
/// reaches any depth; other patterns, and `except`, only the object's direct children.
pub fn matches(permission: &Permission, path: &Path) -> bool {
    let object = real_destination(Path::new(&permission.object));
    let Ok(rel) = path.strip_prefix(&object) else {
        return false;
    };
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        return false;
    }
    let direct = !rel.contains('/');
    let pattern_ok =
        permission.pattern == "**" || (direct && simple_glob(&permission.pattern, &rel));
    let excepted = direct && permission.except.iter().any(|e| simple_glob(e, &rel));
    pattern_ok && !excepted
}

/// Applies `permissions` to what this deployment installed, in AppSpec order: mode, ACLs, SELinux
/// context, then owner and group. A path claimed by two permissions is an error, as on CodeDeploy.
fn apply_permissions(spec: &AppSpec, plan: &Plan) -> Result<usize, DeployError> {
    let files: Vec<&PathBuf> = plan.copy_targets().collect();
    let dirs: Vec<&PathBuf> = plan.made_dirs().collect();
    let mut claimed: HashMap<PathBuf, usize> = HashMap::new();
    let mut work: Vec<(PathBuf, &Permission)> = Vec::new();
    for (i, p) in spec.permissions.iter().enumerate() {
        let object = real_destination(Path::new(&p.object));
        let mut targets = Vec::new();
        if files.contains(&&object) {
            if !p.types.contains(&ObjectType::File) {
                continue;
            }
            if p.pattern != "**" || !p.except.is_empty() {
                return Err(DeployError::Install(format!(
                    "the permissions section includes an object ({}) with an invalid pattern or \
                     except: the object is a file, so it takes neither",
                    p.object
                )));
            }
            targets.push(object.clone());
        } else if object.is_dir() {
            if p.types.contains(&ObjectType::File) {
                targets.extend(files.iter().filter(|f| matches(p, f)).map(|f| (*f).clone()));
            }
            if p.types.contains(&ObjectType::Directory) {
                targets.extend(dirs.iter().filter(|d| matches(p, d)).map(|d| (*d).clone()));
            }
        }
        for t in targets {
            if let Some(first) = claimed.insert(t.clone(), i) {
                return Err(DeployError::Install(format!(
                    "the permissions for {} are given more than once in the AppSpec (entries {} \
                     and {})",
                    t.display(),
                    first + 1,
                    i + 1
                )));
            }
            work.push((t, p));
        }
    }
    // A link's permissions are its target's: kiln changes none through a link (the revision's own
    // links among them), so that a link cannot hand it a file outside the destinations.
    work.retain(|(path, _)| !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()));
    for (path, p) in &work {
        set_permission(path, p)?;
    }
    Ok(work.len())
}

fn set_permission(path: &Path, p: &Permission) -> Result<(), DeployError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = p.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| DeployError::io(path, e))?;
    }
    if !p.acls.is_empty() {
        run_tool(
            "setfacl",
            &["-m", &p.acls.join(","), &path.to_string_lossy()],
            path,
        )?;
    }
    if let Some(context) = &p.context {
        let mut args = vec!["fcontext".to_string(), "-a".into()];
        if let Some(user) = &context.user {
            args.extend(["-s".into(), user.clone()]);
        }
        args.extend(["-t".into(), context.kind.clone()]);
        if let Some(range) = &context.range {
            args.extend(["-r".into(), range.clone()]);
        }
        args.push(path.to_string_lossy().into_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if run_tool("semanage", &args, path)? {
            run_tool("restorecon", &["-v", &path.to_string_lossy()], path)?;
        }
    }
    if p.owner.is_some() || p.group.is_some() {
        let uid = match &p.owner {
            Some(name) => Some(
                super::hooks::lookup_user(name)
                    .ok_or_else(|| {
                        DeployError::Install(format!("permissions: there is no user `{name}`"))
                    })?
                    .uid,
            ),
            None => None,
        };
        let gid = match &p.group {
            Some(name) => Some(super::hooks::lookup_group(name).ok_or_else(|| {
                DeployError::Install(format!("permissions: there is no group `{name}`"))
            })?),
            None => None,
        };
        std::os::unix::fs::lchown(path, uid, gid).map_err(|e| {
            DeployError::Install(format!(
                "cannot give {} to {}:{}: {e} (changing owners needs kiln to run as root)",
                path.display(),
                p.owner.as_deref().unwrap_or("-"),
                p.group.as_deref().unwrap_or("-")
            ))
        })?;
    }
    Ok(())
}

/// Runs a system tool for a permission; where the tool is not installed (no ACL or SELinux support
/// here), warns and returns false.
fn run_tool(tool: &str, args: &[&str], path: &Path) -> Result<bool, DeployError> {
    match std::process::Command::new(tool).args(args).output() {
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => Err(DeployError::Install(format!(
            "{tool} {} failed for {}: {}",
            args.join(" "),
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(_) => {
            eprintln!(
                "warning: {tool} is not installed: the AppSpec's {} for {} is not applied",
                if tool == "setfacl" { "acls" } else { "context" },
                path.display()
            );
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(object: &str, pattern: &str, except: &[&str]) -> Permission {
        Permission {
            pattern: pattern.into(),
            except: except.iter().map(|s| s.to_string()).collect(),
            ..Permission::new(object)
        }
    }

    // The agent's application_specification_test: "With valid permission object".
    #[test]
    fn patterns_match_direct_children_and_double_star_any_depth() {
        let p = permission("/test", "prefix*", &["*ReadMe", "*.tmp"]);
        assert!(matches(&p, Path::new("/test/prefix")));
        assert!(matches(&p, Path::new("/test/prefix_matches")));
        assert!(!matches(&p, Path::new("/test/prefix/does_not_match")));
        assert!(!matches(&p, Path::new("/testprefix")));
        assert!(!matches(&p, Path::new("/tst/prefix")));
        assert!(!matches(&p, Path::new("/test/not_prefix")));
        // except: direct children only.
        assert!(!matches(&p, Path::new("/test/prefix.tmp")));
        assert!(!matches(&p, Path::new("/test/prefix_ReadMe")));
        let all = permission("/test", "**", &["*.tmp"]);
        assert!(matches(&all, Path::new("/test/a/b/c.tmp")));
        assert!(!matches(&all, Path::new("/test/c.tmp")));
        assert!(!matches(&all, Path::new("/test")), "not the object itself");
    }

    #[test]
    fn globs_have_one_wildcard() {
        assert!(simple_glob("file*", "file1"));
        assert!(!simple_glob("filefile*", "file1"));
        assert!(simple_glob("*target", "file_target"));
        assert!(simple_glob("a*b*c", "aXbYc"));
        assert!(!simple_glob("a*b*c", "aXc"));
        assert!(!simple_glob("?", "a"), "? is literal");
        assert!(simple_glob("*", ""));
    }

    // The agent's installer_test: a file source lands in its destination folder (missing folders
    // are made); a folder source puts its contents there; DISALLOW refuses an existing file,
    // RETAIN skips it, OVERWRITE replaces it; two sources for one destination are refused.
    #[test]
    fn agent_installer_cases() {
        use crate::spec::appspec::FileMapping;
        let archive = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(archive.path().join("dir/sub")).unwrap();
        std::fs::write(archive.path().join("src1"), "1").unwrap();
        std::fs::write(archive.path().join("dir/foo"), "f").unwrap();
        std::fs::write(archive.path().join("dir/sub/bar"), "b").unwrap();
        let d = |p: &str| dest.path().join(p);
        let spec = |files: &[(&str, &str)]| AppSpec {
            files: files
                .iter()
                .map(|(s, t)| FileMapping {
                    source: s.to_string(),
                    destination: d(t).to_string_lossy().into_owned(),
                })
                .collect(),
            ..Default::default()
        };
        let p = plan(
            &spec(&[("src1", "dst1/foo/bar")]),
            archive.path(),
            FileExists::Disallow,
        )
        .unwrap();
        assert_eq!(p.roots, [d("dst1"), d("dst1/foo"), d("dst1/foo/bar")]);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(archive.path().join("src1"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(
            p.ops,
            [Op::Copy(
                archive.path().join("src1"),
                d("dst1/foo/bar/src1"),
                mode,
                false
            )]
        );
        let p = plan(
            &spec(&[("dir", "dst2")]),
            archive.path(),
            FileExists::Disallow,
        )
        .unwrap();
        let targets: Vec<PathBuf> = p.copy_targets().cloned().collect();
        assert_eq!(targets, [d("dst2/foo"), d("dst2/sub/bar")]);
        assert!(p.ops.contains(&Op::Mkdir(d("dst2/sub"))));
        std::fs::create_dir_all(d("dst2")).unwrap();
        std::fs::write(d("dst2/foo"), "theirs").unwrap();
        assert!(
            plan(
                &spec(&[("dir", "dst2")]),
                archive.path(),
                FileExists::Disallow
            )
            .is_err()
        );
        let p = plan(
            &spec(&[("dir", "dst2")]),
            archive.path(),
            FileExists::Retain,
        )
        .unwrap();
        assert!(!p.copy_targets().any(|t| *t == d("dst2/foo")));
        let p = plan(
            &spec(&[("dir", "dst2")]),
            archive.path(),
            FileExists::Overwrite,
        )
        .unwrap();
        assert!(
            p.ops
                .iter()
                .any(|op| matches!(op, Op::Copy(_, t, _, true) if *t == d("dst2/foo")))
        );
        std::fs::write(archive.path().join("foo"), "other").unwrap();
        let e = plan(
            &spec(&[("dir", "dst3"), ("foo", "dst3")]),
            archive.path(),
            FileExists::Disallow,
        );
        assert!(matches!(e, Err(DeployError::Install(m)) if m.contains("installs both")));
    }

    #[test]
    fn a_cut_short_cleanup_list_keeps_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let list = dir.path().join("cleanup");
        std::fs::write(&list, format!("{}\n{}", a.display(), b.display())).unwrap();
        assert_eq!(remove_previous(&list).unwrap(), 1);
        assert!(!a.exists() && b.exists());
    }
}
