//! The project's plugins: kiln.toml's `[plugins]` table and kiln.lock beside it. `kiln plugin list`
//! shows them with what a build would find, `kiln plugin remove` takes one out of both files, and
//! `add` and `update` edit kiln.toml through [`write_toml`], every other byte kept.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::cas::{Digest, LocalStore};
use kiln::plugins::Capabilities;
use kiln::plugins::artifact;
use kiln::plugins::lock::{self, Lock, Locked};
use kiln::spec::config::{self, ProjectConfig};
use serde::Serialize;
use serde_json::json;

use super::super::options::GlobalArgs;
use super::super::{exit, print_json, print_table};

/// `kiln plugin list`.
#[derive(Args)]
pub struct ListArgs {
    /// Print the list as JSON: {builtin: [{name, blake3}], kiln_toml, kiln_lock, plugins: [...]}.
    #[arg(long)]
    json: bool,
}

/// `kiln plugin remove`.
#[derive(Args)]
pub struct RemoveArgs {
    /// The plugin's name under kiln.toml's [plugins] (or an entry left in kiln.lock).
    name: String,
    /// Print what was removed as JSON.
    #[arg(long)]
    json: bool,
}

/// What a build would find for one of the project's plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    /// Pinned and in the cache, its bytes as pinned (or a local file that is a kiln plugin).
    Ready,
    /// Pinned, not in the cache: the next build fetches it by its pinned digest.
    NotCached,
    /// In kiln.toml, not in kiln.lock: builds refuse it.
    NotLocked,
    /// kiln.toml names another reference than the one kiln.lock pinned: builds refuse it.
    Moved,
    /// In the cache with bytes other than the pinned ones: builds refuse it.
    Tampered,
    /// A local file that is missing or not a kiln plugin.
    Broken,
    /// In kiln.lock only: builds ignore it.
    LockOnly,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::NotCached => "not cached",
            State::NotLocked => "not in kiln.lock",
            State::Moved => "moved",
            State::Tampered => "tampered",
            State::Broken => "broken",
            State::LockOnly => "in kiln.lock only",
        }
    }
}

/// One of the project's plugins, as `list` shows it.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// `registry` (a reference pinned by kiln.lock) or `file` (a local component).
    kind: &'static str,
    /// The reference, or the path as kiln.toml gives it.
    source: String,
    state: State,
    /// What to do about the state, when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    /// What the component declares, when kiln could read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    declared: Option<Capabilities>,
    /// What kiln.lock grants; none for a local file, which runs with a build's full policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    granted: Option<Capabilities>,
}

impl Row {
    fn new(name: &str, kind: &'static str, source: &str, state: State) -> Row {
        Row {
            name: name.to_string(),
            kind,
            source: source.to_string(),
            state,
            fix: None,
            manifest: None,
            layer: None,
            api_version: None,
            declared: None,
            granted: None,
        }
    }

    fn fix(mut self, fix: String) -> Row {
        self.fix = Some(fix);
        self
    }

    fn locked(mut self, l: &Locked) -> Row {
        self.manifest = Some(l.manifest.clone());
        self.layer = Some(l.layer.clone());
        self.api_version = Some(l.api_version.clone());
        self.granted = Some(l.granted.clone());
        self
    }
}

/// A registry plugin of kiln.toml, against kiln.lock and the cache.
fn registry_row(name: &str, reference: &str, lock: &Lock, cas: Option<&LocalStore>) -> Row {
    let Some(locked) = lock.get(name) else {
        return Row::new(name, "registry", reference, State::NotLocked)
            .fix(format!("kiln plugin add {name} {reference}"));
    };
    if locked.reference != reference {
        return Row::new(name, "registry", reference, State::Moved)
            .locked(locked)
            .fix(format!(
                "kiln plugin update {name} (kiln.lock pinned {})",
                locked.reference
            ));
    }
    let row = Row::new(name, "registry", reference, State::Ready).locked(locked);
    let blob = Digest::parse(&locked.blake3)
        .and_then(|key| cas.filter(|c| c.has(&key)).map(|c| c.blob_path(&key)));
    let Some(path) = blob else {
        return Row {
            state: State::NotCached,
            ..row
        }
        .fix("the next build fetches it by its pinned digest".into());
    };
    match std::fs::read(&path) {
        Ok(bytes) if artifact::sha256(&bytes) == locked.layer => Row {
            declared: kiln::plugins::inspect(&bytes)
                .ok()
                .map(|i| i.capabilities.unwrap_or_default()),
            ..row
        },
        _ => Row {
            state: State::Tampered,
            ..row
        }
        .fix(format!(
            "delete {}: the next build fetches it again",
            path.display()
        )),
    }
}

/// A local component file of kiln.toml.
fn file_row(config: &ProjectConfig, name: &str, given: &str) -> Row {
    let path = config.resolve(given);
    let dir = config
        .dir()
        .canonicalize()
        .unwrap_or_else(|_| config.dir().to_path_buf());
    if !super::super::settings::within(&dir, &path) {
        return Row::new(name, "file", given, State::Broken).fix(format!(
            "outside {}, which a kiln.toml may not reach by itself: builds refuse it unless given `--plugin {name}={}`",
            dir.display(),
            path.display()
        ));
    }
    match kiln::build::plugins::check_file(&path, None) {
        Ok(found) => Row {
            api_version: found.interface_version().map(str::to_string),
            declared: Some(found.capabilities.unwrap_or_default()),
            ..Row::new(name, "file", given, State::Ready)
        },
        Err(e) => Row::new(name, "file", given, State::Broken).fix(e),
    }
}

/// `kiln plugin list`: kiln's own plugins, then the project's (kiln.toml and kiln.lock) with what
/// a build would find for each.
pub fn list(global: &GlobalArgs, args: &ListArgs) -> u8 {
    let sandbox = match kiln::sandbox::Sandbox::new(global.components_dir()) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::INTERNAL;
        }
    };
    let builtin: Vec<(String, String)> = sandbox
        .names()
        .into_iter()
        .map(|name| {
            let digest = sandbox
                .digest(name)
                .map(|d| d.to_hex().to_string())
                .unwrap_or_default();
            (name.to_string(), digest)
        })
        .collect();
    let Project {
        toml_path,
        lock_path,
        config,
        lock,
    } = match Project::open() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cas = global.cas_dir().and_then(|d| LocalStore::open(&d).ok());
    let mut rows: Vec<Row> = Vec::new();
    if let Some(config) = &config {
        for (name, reference) in config.registry_plugins() {
            rows.push(registry_row(&name, &reference, &lock, cas.as_ref()));
        }
        for (name, given) in config.local_plugins() {
            rows.push(file_row(config, &name, &given.value));
        }
    }
    for locked in &lock.plugins {
        if !rows.iter().any(|r| r.name == locked.name) {
            rows.push(
                Row::new(&locked.name, "registry", &locked.reference, State::LockOnly)
                    .locked(locked)
                    .fix(format!(
                        "kiln plugin remove {} (builds ignore it)",
                        locked.name
                    )),
            );
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));

    if args.json {
        print_json(&json!({
            "builtin": builtin
                .iter()
                .map(|(name, digest)| json!({ "name": name, "blake3": digest }))
                .collect::<Vec<_>>(),
            "kiln_toml": config.as_ref().map(|_| &toml_path),
            "kiln_lock": lock_path.is_file().then_some(&lock_path),
            "plugins": rows,
        }));
        return exit::OK;
    }
    let short = |d: &str| {
        let (algorithm, hex) = d.split_once(':').unwrap_or(("", d));
        format!("{algorithm}:{}", hex.get(..12).unwrap_or(hex))
    };
    let mut table: Vec<[String; 5]> = builtin
        .iter()
        .map(|(name, digest)| {
            [
                name.clone(),
                "kiln".into(),
                "built in".into(),
                short(&format!("blake3:{digest}")),
                "a build's full policy".into(),
            ]
        })
        .collect();
    for r in &rows {
        table.push([
            r.name.clone(),
            r.source.clone(),
            r.state.as_str().into(),
            r.manifest
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            match &r.granted {
                Some(g) => g.summary(),
                None if r.kind == "file" => "a build's full policy".into(),
                None => "-".into(),
            },
        ]);
    }
    print_table(["NAME", "FROM", "STATE", "PINNED", "GRANTED"], &table);
    for r in &rows {
        if let Some(fix) = &r.fix {
            out!("{}: {}: {fix}", r.name, r.state.as_str());
        }
        if let (Some(declared), Some(granted)) = (&r.declared, &r.granted) {
            let wanted = declared.minus(granted);
            if !wanted.is_empty() {
                out!(
                    "{}: asks for {}, not granted (kiln plugin update {} --accept grants it)",
                    r.name,
                    wanted.summary(),
                    r.name
                );
            }
        }
    }
    if config.is_none() {
        out!(
            "no kiln.toml here or above: a project names its plugins there (kiln plugin add NAME REF)"
        );
    }
    exit::OK
}

/// `kiln plugin remove NAME`: out of kiln.toml's [plugins] and out of kiln.lock.
pub fn remove(args: &RemoveArgs) -> u8 {
    let Project {
        toml_path,
        lock_path,
        config,
        mut lock,
    } = match Project::open() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let in_toml = config
        .as_ref()
        .and_then(|c| c.plugin(&args.name))
        .map(|s| s.value.clone());
    let in_lock = lock.remove(&args.name);
    if in_toml.is_none() && in_lock.is_none() {
        eprintln!(
            "error: `{}` is neither in {} nor in {}: `kiln plugin list` shows the project's plugins",
            args.name,
            toml_path.display(),
            lock_path.display()
        );
        return exit::BAD_INPUT;
    }
    // kiln.toml first: a build reading the two files in between finds the name in neither, or in
    // the lock only, which it ignores.
    if in_toml.is_some()
        && let Err(code) = write_toml(&toml_path, &args.name, None)
    {
        return code;
    }
    if in_lock.is_some()
        && let Err(e) = lock.write(&lock_path)
    {
        eprintln!("error: {e}");
        return exit::INTERNAL;
    }
    if args.json {
        print_json(&json!({
            "name": args.name,
            "kiln_toml": in_toml,
            "kiln_lock": in_lock.as_ref().map(|l| &l.manifest),
        }));
    } else {
        let mut from = Vec::new();
        if let Some(value) = &in_toml {
            from.push(format!("{} ({value})", toml_path.display()));
        }
        if let Some(l) = &in_lock {
            from.push(format!("{} ({})", lock_path.display(), l.manifest));
        }
        out!("{}: removed from {}", args.name, from.join(" and "));
    }
    exit::OK
}

/// The project the plugin commands work on: its kiln.toml (found as builds find it, read when
/// there) and kiln.lock beside it (empty when absent). Errors are printed; the exit code returned.
pub(super) struct Project {
    pub toml_path: PathBuf,
    pub lock_path: PathBuf,
    pub config: Option<ProjectConfig>,
    pub lock: Lock,
}

impl Project {
    pub(super) fn open() -> Result<Project, u8> {
        let (toml_path, lock_path) = project_files()?;
        let config = load_config(&toml_path)?;
        let lock = read_lock(&lock_path)?;
        Ok(Project {
            toml_path,
            lock_path,
            config,
            lock,
        })
    }

    /// Only the project's kiln.toml, when there is one.
    pub(super) fn config() -> Result<Option<ProjectConfig>, u8> {
        load_config(&project_files()?.0)
    }
}

/// The project's kiln.toml (found as builds find it), and kiln.lock beside it.
fn project_files() -> Result<(PathBuf, PathBuf), u8> {
    let cwd = std::env::current_dir().map_err(|e| {
        eprintln!("error: the current folder: {e}");
        exit::INTERNAL
    })?;
    let folders = kiln::build::locate::upward_folders(&cwd)
        .map(|(f, _)| f)
        .unwrap_or_else(|_| vec![cwd.clone()]);
    let toml = ProjectConfig::find(&folders).unwrap_or_else(|| cwd.join(config::FILE_NAME));
    let lock = toml
        .parent()
        .unwrap_or(Path::new("."))
        .join(lock::FILE_NAME);
    Ok((toml, lock))
}

fn read_lock(path: &Path) -> Result<Lock, u8> {
    match Lock::read(path) {
        Ok(lock) => Ok(lock.unwrap_or_default()),
        Err(e) => {
            eprintln!("{}", e.render(false));
            Err(exit::BAD_INPUT)
        }
    }
}

fn load_config(path: &Path) -> Result<Option<ProjectConfig>, u8> {
    if !path.is_file() {
        return Ok(None);
    }
    ProjectConfig::load(path).map(Some).map_err(|e| {
        match e {
            config::ConfigError::Invalid(e) => eprintln!("{}", e.render(false)),
            e => eprintln!("error: {e}"),
        }
        exit::BAD_INPUT
    })
}

/// kiln.toml's text with `[plugins] NAME = "REF"` set (`Some`) or taken out (`None`): comments,
/// order and every other value kept. `Err` says why the text cannot be edited (kiln.toml is read
/// and checked before, so only a `plugins` that is not a table gets here).
pub fn edit_plugins(text: &str, name: &str, reference: Option<&str>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    match reference {
        Some(reference) => {
            if !doc.contains_key("plugins") {
                doc["plugins"] = toml_edit::table();
            }
            let table = doc["plugins"]
                .as_table_like_mut()
                .ok_or("`plugins` is not a table")?;
            // A replaced value keeps its comments.
            let mut value = toml_edit::Value::from(reference);
            if let Some(old) = table.get(name).and_then(toml_edit::Item::as_value) {
                *value.decor_mut() = old.decor().clone();
            }
            table.insert(name, toml_edit::Item::Value(value));
        }
        None => {
            if let Some(table) = doc
                .get_mut("plugins")
                .and_then(toml_edit::Item::as_table_like_mut)
            {
                table.remove(name);
            }
        }
    }
    Ok(doc.to_string())
}

/// Writes kiln.toml with the plugin set (or removed), after checking kiln reads it back as meant;
/// atomically, so a failure leaves the file as it was.
pub(super) fn write_toml(path: &Path, name: &str, reference: Option<&str>) -> Result<(), u8> {
    let new = edited_toml(path, name, reference)?;
    persist(path, &new)
}

/// kiln.toml's new text with the plugin set (or removed), checked: kiln reads it back as meant.
pub(super) fn edited_toml(path: &Path, name: &str, reference: Option<&str>) -> Result<String, u8> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Err(exit::INTERNAL);
        }
    };
    let meant = edit_plugins(&text, name, reference).and_then(|new| {
        let config = ProjectConfig::parse(path, &new).map_err(|e| e.to_string())?;
        let now = config.plugin(name).map(|s| s.value.as_str());
        if now == reference {
            Ok(new)
        } else {
            Err("kiln reads the edited file otherwise".into())
        }
    });
    let new = match meant {
        Ok(new) => new,
        Err(why) => {
            let by_hand = match reference {
                Some(r) => format!(
                    "add `{name} = {}` to its [plugins] table by hand",
                    toml_edit::Value::from(r)
                ),
                None => format!("take `{name}` out of its [plugins] table by hand"),
            };
            eprintln!(
                "error: cannot edit {} ({why}): {by_hand}, then run the command again",
                path.display()
            );
            return Err(exit::BAD_INPUT);
        }
    };
    Ok(new)
}

/// Replaces a file with `text`, whole or not at all.
pub(super) fn persist(path: &Path, text: &str) -> Result<(), u8> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = tempfile::NamedTempFile::new_in(dir).and_then(|mut temp| {
        std::io::Write::write_all(&mut temp, text.as_bytes())?;
        temp.persist(path).map(|_| ()).map_err(|e| e.error)
    });
    result.map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        exit::INTERNAL
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_plugins_keeps_every_other_byte() {
        let text = "network = \"none\"  # keep\n\n[plugins]\nlint = \"l.wasm\" # mine\n\n[pipeline.sources]\nx = \".\"\n";
        let out = edit_plugins(text, "checksum", Some("oci://h/a/c:1.0.0")).unwrap();
        assert_eq!(
            out,
            "network = \"none\"  # keep\n\n[plugins]\nlint = \"l.wasm\" # mine\nchecksum = \"oci://h/a/c:1.0.0\"\n\n[pipeline.sources]\nx = \".\"\n"
        );
        // A new version in place, the comment of the value kept.
        let commented = out.replace("c:1.0.0\"\n", "c:1.0.0\" # pinned for the release\n");
        let again = edit_plugins(&commented, "checksum", Some("oci://h/a/c:2.0.0")).unwrap();
        assert_eq!(again, commented.replace("1.0.0", "2.0.0"));
        // Taken out: the file as it was before.
        assert_eq!(edit_plugins(&out, "checksum", None).unwrap(), text);
        assert_eq!(edit_plugins(text, "absent", None).unwrap(), text);
        assert_eq!(
            edit_plugins("", "c", Some("file:///p/c:1.0.0")).unwrap(),
            "[plugins]\nc = \"file:///p/c:1.0.0\"\n"
        );
        assert_eq!(
            edit_plugins("network = \"none\"\n", "c", Some("s3://b/c:1.0.0")).unwrap(),
            "network = \"none\"\n\n[plugins]\nc = \"s3://b/c:1.0.0\"\n"
        );
        // Quotes and backslashes in a reference stay one TOML string.
        let odd = edit_plugins("", "c", Some("oci://h/a\"b\\c:1.0.0")).unwrap();
        let back: toml::Table = toml::from_str(&odd).unwrap();
        assert_eq!(back["plugins"]["c"].as_str(), Some("oci://h/a\"b\\c:1.0.0"));
    }

    #[test]
    fn edit_plugins_refuses_a_plugins_that_is_not_a_table() {
        assert!(edit_plugins("plugins = 3\n", "c", Some("oci://h/c:1.0.0")).is_err());
        assert!(edit_plugins("[plugins\n", "c", Some("oci://h/c:1.0.0")).is_err());
    }
}
