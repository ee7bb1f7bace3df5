//! The EC2/on-premises AppSpec (`appspec.yml`, version 0.0), as the CodeDeploy agent reads it:
//! `os`, `files`, `file_exists_behavior`, `permissions`, `hooks`. Every error is reported at once
//! with its line and column. A key kiln does not know inside a section (a `files` or `permissions`
//! entry, a hook script, a lifecycle event's name) is an error naming the key it misses, as in a
//! buildspec: the agent would skip it and the deployment would succeed without it. An unknown
//! top-level key, which the agent ignores too, is a warning. The AppSpecs of Lambda and ECS
//! deployments (`Resources`) are recognised and refused: they do not deploy to a host.

use std::collections::BTreeMap;
use std::path::Path;

use super::diagnostic::{Diagnostic, SpecError};
use super::read::Reader;
use super::yaml::{Node, NodeKind};

/// The lifecycle events of an in-place deployment, in the agent's order, and whether scripts may
/// hook them. The traffic events are the load balancer's; on one host their scripts run in place,
/// as `codedeploy-local` runs them.
pub const EVENTS: &[(&str, bool)] = &[
    ("BeforeBlockTraffic", true),
    ("AfterBlockTraffic", true),
    ("ApplicationStop", true),
    ("DownloadBundle", false),
    ("BeforeInstall", true),
    ("Install", false),
    ("AfterInstall", true),
    ("ApplicationStart", true),
    ("ValidateService", true),
    ("BeforeAllowTraffic", true),
    ("AfterAllowTraffic", true),
];

/// The longest a script may run, in seconds (CodeDeploy's limit).
pub const MAX_TIMEOUT: u64 = 3600;

/// A parsed AppSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSpec {
    pub os: String,
    pub files: Vec<FileMapping>,
    /// What Install does with files already there: the AppSpec's, when it says (it then wins over
    /// the deployment's setting, as on CodeDeploy).
    pub file_exists_behavior: Option<FileExists>,
    pub permissions: Vec<Permission>,
    /// Scripts by lifecycle event, in the order written.
    pub hooks: BTreeMap<String, Vec<Script>>,
}

/// `files`: copy `source` (relative to the revision; `/` is all of it) to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    pub source: String,
    pub destination: String,
}

/// What Install does with a file that is already at its destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FileExists {
    /// Fail the deployment (CodeDeploy's default).
    #[default]
    Disallow,
    /// Replace it.
    Overwrite,
    /// Keep it; the revision's file is not copied.
    Retain,
}

impl FileExists {
    pub fn parse(text: &str) -> Option<FileExists> {
        match text.to_ascii_uppercase().as_str() {
            "DISALLOW" => Some(FileExists::Disallow),
            "OVERWRITE" => Some(FileExists::Overwrite),
            "RETAIN" => Some(FileExists::Retain),
            _ => None,
        }
    }
}

/// Which kinds of entries a permission applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    File,
    Directory,
}

/// `permissions`: owner, group, mode (and ACLs, SELinux context) for `object` and, when it is a
/// directory, the entries below it that match `pattern` and not `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub object: String,
    pub pattern: String,
    pub except: Vec<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    pub acls: Vec<String>,
    pub context: Option<Context>,
    pub types: Vec<ObjectType>,
}

impl Permission {
    /// A permission for `object` with CodeDeploy's defaults: pattern `**`, files and directories,
    /// nothing set.
    pub fn new(object: impl Into<String>) -> Permission {
        Permission {
            object: object.into(),
            pattern: "**".into(),
            except: Vec::new(),
            owner: None,
            group: None,
            mode: None,
            acls: Vec::new(),
            context: None,
            types: vec![ObjectType::File, ObjectType::Directory],
        }
    }
}

/// An SELinux context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub user: Option<String>,
    pub kind: String,
    pub range: Option<String>,
}

/// A hook script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub location: String,
    /// Seconds; CodeDeploy's default is 3600.
    pub timeout: u64,
    pub runas: Option<String>,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "os",
    "files",
    "file_exists_behavior",
    "permissions",
    "hooks",
];
const PERMISSION_KEYS: &[&str] = &[
    "object", "pattern", "except", "owner", "group", "mode", "acls", "context", "type",
];

/// Parses AppSpec text; `path` is only used in messages. Warnings come back with the spec.
pub fn parse(path: &Path, source: &str) -> Result<(AppSpec, Vec<Diagnostic>), SpecError> {
    let (spec, _, warnings) = super::read::read_spec(path, source, read_appspec)?;
    Ok((spec, warnings))
}

/// Why an AppSpec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "{} has no appspec.yml (or appspec.yaml) at its root; a CodeDeploy revision needs one",
        .0.display()
    )]
    Missing(std::path::PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecError),
}

/// Finds and parses the AppSpec at the root of a revision folder.
pub fn load(revision: &Path) -> Result<(AppSpec, Vec<Diagnostic>, std::path::PathBuf), LoadError> {
    let path = ["appspec.yml", "appspec.yaml"]
        .iter()
        .map(|n| revision.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| LoadError::Missing(revision.to_path_buf()))?;
    let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    let (spec, warnings) = parse(&path, &source).map_err(LoadError::Invalid)?;
    Ok((spec, warnings, path))
}

fn read_appspec(r: &mut Reader, root: &Node) -> AppSpec {
    let mut spec = AppSpec::default();
    let NodeKind::Map(entries) = &root.kind else {
        r.error_help(
            root.span,
            format!("expected an AppSpec mapping, found {}", root.describe()),
            "an EC2/on-premises AppSpec starts with `version: 0.0` and `os: linux`",
        );
        return spec;
    };
    if entries
        .iter()
        .any(|(k, _)| matches!(k.as_str(), Some("Resources" | "resources")))
    {
        r.error_help(
            root.span,
            "this is an AppSpec for an AWS Lambda or Amazon ECS deployment (it has `Resources`)",
            "kiln deploys to hosts: an EC2/on-premises AppSpec has `version: 0.0`, `os`, `files` \
             and `hooks`",
        );
        return spec;
    }
    let mut version = None;
    let mut os = None;
    // Destinations are Windows paths (`C:\inetpub\wwwroot`) in a Windows AppSpec, whatever the
    // order of its keys.
    let windows = entries
        .iter()
        .any(|(k, v)| k.as_str() == Some("os") && v.as_str() == Some("windows"));
    for (key, span, value) in r.map(root, "the AppSpec") {
        match key {
            "version" => {
                version = Some(span);
                match value.as_str() {
                    // YAML reads `0.0` and `0` as the same number; the agent takes both.
                    Some("0.0" | "0") => {}
                    _ => r.error_help(
                        value.span,
                        format!(
                            "unsupported AppSpec version {}",
                            value.as_str().unwrap_or("(not a string)")
                        ),
                        "the EC2/on-premises AppSpec is `version: 0.0`",
                    ),
                }
            }
            "os" => {
                os = Some(span);
                match value.as_str() {
                    Some("linux") => spec.os = "linux".into(),
                    // A valid AppSpec, which `kiln deploy` refuses to deploy on Linux.
                    Some("windows") => spec.os = "windows".into(),
                    _ => r.error_help(
                        value.span,
                        format!("unknown os {}", value.as_str().unwrap_or("(not a string)")),
                        "use `os: linux` (or `windows`)",
                    ),
                }
            }
            "files" => spec.files = read_files(r, value, windows),
            "file_exists_behavior" => {
                if let Some(text) = r.string(value, "file_exists_behavior") {
                    match FileExists::parse(&text) {
                        Some(b) => spec.file_exists_behavior = Some(b),
                        None => r.error_help(
                            value.span,
                            format!("unknown file_exists_behavior `{text}`"),
                            "use DISALLOW (the default), OVERWRITE or RETAIN",
                        ),
                    }
                }
            }
            "permissions" => spec.permissions = read_permissions(r, value),
            "hooks" => spec.hooks = read_hooks(r, value),
            other => r.ignored_key(other, span, "the AppSpec", TOP_KEYS),
        }
    }
    if version.is_none() {
        r.error_help(
            root.span,
            "the AppSpec has no `version`",
            "add `version: 0.0` at the top",
        );
    }
    if os.is_none() {
        r.error_help(root.span, "the AppSpec has no `os`", "add `os: linux`");
    }
    spec
}

fn items<'n>(r: &mut Reader, node: &'n Node, what: &str) -> Vec<&'n Node> {
    match &node.kind {
        NodeKind::Null => Vec::new(),
        NodeKind::Seq(items) => items.iter().collect(),
        _ => {
            r.error(
                node.span,
                format!("expected a list for {what}, found {}", node.describe()),
            );
            Vec::new()
        }
    }
}

/// Whether `path` is an absolute Windows path: a drive (`C:\`, `d:/`) or a share (`\\host\share`).
fn windows_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/'))
        || path.starts_with("\\\\")
}

fn read_files(r: &mut Reader, node: &Node, windows: bool) -> Vec<FileMapping> {
    let mut out = Vec::new();
    for item in items(r, node, "files") {
        let mut source = None;
        let mut destination = None;
        for (key, span, value) in r.map(item, "a files entry") {
            match key {
                "source" => source = r.string(value, "source"),
                "destination" => {
                    destination = r.string(value, "destination");
                    if let Some(d) = &destination {
                        if windows && !windows_absolute(d) {
                            r.error_help(
                                value.span,
                                format!("the destination `{d}` is not an absolute Windows path"),
                                "destinations of an `os: windows` AppSpec are absolute, \
                                 e.g. C:\\inetpub\\wwwroot",
                            );
                        } else if !windows && !d.starts_with('/') {
                            r.error_help(
                                value.span,
                                format!("the destination `{d}` is not an absolute path"),
                                "destinations are absolute, e.g. /var/www/html",
                            );
                        }
                    }
                }
                // Where some versions of AWS's reference show it, and the agent ignores it: real
                // AppSpecs have it here, so it is said and not refused.
                "file_exists_behavior" => r.diagnostics.push(
                    Diagnostic::warning(
                        span,
                        "`file_exists_behavior` in a files entry is ignored, as by CodeDeploy",
                    )
                    .with_help("write it at the top level: it applies to every files entry"),
                ),
                other => r.unknown_key(other, span, "a files entry", &["source", "destination"]),
            }
        }
        match (source, destination) {
            (Some(source), Some(destination)) => {
                if source.split('/').any(|p| p == "..") {
                    r.error(
                        item.span,
                        format!("the source `{source}` leaves the revision"),
                    );
                }
                out.push(FileMapping {
                    source,
                    destination,
                })
            }
            (None, _) => r.error_help(
                item.span,
                "this files entry has no `source`",
                "give the path in the revision to copy (`/` for all of it)",
            ),
            (_, None) => r.error_help(
                item.span,
                "this files entry has no `destination`",
                "give the absolute path to copy it to",
            ),
        }
    }
    out
}

/// Checks one ACL entry as the CodeDeploy agent does (its `AceInfo`): 2 to 4 fields, an optional
/// `d`/`default` first, a type (`u`, `g`, `m`, `o` or their long names), a name (none for mask and
/// other; required otherwise: the base entries come from `mode`), and permissions as one octal
/// digit or `rwx-` letters.
pub fn check_ace(ace: &str) -> Result<(), String> {
    let mut parts: Vec<&str> = ace.split(':').collect();
    parts.reverse();
    if !(2..=4).contains(&parts.len()) {
        return Err("it needs 2 to 4 fields separated by `:`".into());
    }
    let mut default = false;
    if parts.len() == 4 {
        if !matches!(parts[3], "d" | "default") {
            return Err(format!(
                "`{}` where `d` or `default` was expected",
                parts[3]
            ));
        }
        default = true;
    }
    let mut kind = None;
    if parts.len() >= 3 {
        match parts[2] {
            "d" | "default" if !default => default = true,
            "m" | "mask" => kind = Some("mask"),
            "o" | "other" => kind = Some("other"),
            "g" | "group" => kind = Some("group"),
            "u" | "user" => kind = Some("user"),
            other => return Err(format!("unknown entry type `{other}`")),
        }
    }
    let name = parts[1];
    // With two fields, the name field may stand for the type (`m:7`, `o:7`).
    let type_word = parts.len() == 2 && matches!(name, "m" | "mask" | "o" | "other");
    let kind = match (kind, name) {
        (Some(k), _) => k,
        (None, "m" | "mask") if type_word => "mask",
        (None, "o" | "other") if type_word => "other",
        (None, _) => "user",
    };
    let name = if type_word { "" } else { name };
    if matches!(kind, "mask" | "other") && !name.is_empty() {
        return Err(format!("a {kind} entry takes no name"));
    }
    if !default && kind != "mask" && name.is_empty() {
        return Err("use `mode` to set the base entries (user::, group::, other::)".into());
    }
    let perms = parts[0];
    let digit = perms.len() == 1 && perms.chars().all(|c| ('0'..='7').contains(&c));
    if !digit && !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'x' | '-')) {
        return Err(format!("invalid permissions `{perms}`"));
    }
    Ok(())
}

/// An octal mode as the AppSpec writes it: up to four octal digits (`644`, `0755`, `4755`).
pub fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

fn read_permissions(r: &mut Reader, node: &Node) -> Vec<Permission> {
    let mut out = Vec::new();
    for item in items(r, node, "permissions") {
        let mut p = Permission::new(String::new());
        let mut has_object = false;
        for (key, span, value) in r.map(item, "a permissions entry") {
            match key {
                "object" => {
                    if let Some(o) = r.string(value, "object") {
                        if !o.starts_with('/') {
                            r.error_help(
                                value.span,
                                format!("the object `{o}` is not an absolute path"),
                                "objects are installed paths, e.g. /var/www/html",
                            );
                        }
                        p.object = o;
                        has_object = true;
                    }
                }
                "pattern" => {
                    if let Some(s) = r.string(value, "pattern") {
                        p.pattern = s;
                    }
                }
                "except" => p.except = r.string_list(value, "except"),
                "owner" => p.owner = r.string(value, "owner"),
                "group" => p.group = r.string(value, "group"),
                "mode" => {
                    if let Some(text) = r.string(value, "mode") {
                        match parse_mode(&text) {
                            Some(m) => p.mode = Some(m),
                            None => r.error_help(
                                value.span,
                                format!("`{text}` is not a file mode"),
                                "write the mode in octal, up to four digits: 644, 0755, 4750",
                            ),
                        }
                    }
                }
                "acls" => {
                    for (ace, span) in r.strings(value, "acls") {
                        match check_ace(&ace) {
                            Ok(()) => p.acls.push(ace),
                            Err(why) => r.error_help(
                                span,
                                format!("invalid ACL entry `{ace}`: {why}"),
                                "write entries as setfacl does: [d[efault]:][u[ser]|g[roup]|m[ask]|o[ther]]:[name]:perms, e.g. u:bob:rwx or d:g:dev:r-x",
                            ),
                        }
                    }
                }
                "context" => p.context = read_context(r, value),
                "type" => {
                    let mut types = Vec::new();
                    for (t, span) in r.strings(value, "type") {
                        match t.as_str() {
                            "file" => types.push(ObjectType::File),
                            "directory" => types.push(ObjectType::Directory),
                            _ => r.error_help(
                                span,
                                format!("unknown type `{t}`"),
                                "the types are `file` and `directory`",
                            ),
                        }
                    }
                    if types.is_empty() {
                        r.error(value.span, "`type` lists no type");
                    } else {
                        p.types = types;
                    }
                }
                other => r.unknown_key(other, span, "a permissions entry", PERMISSION_KEYS),
            }
        }
        if !has_object {
            r.error_help(
                item.span,
                "this permissions entry has no `object`",
                "give the installed path it applies to",
            );
            continue;
        }
        out.push(p);
    }
    out
}

fn read_context(r: &mut Reader, node: &Node) -> Option<Context> {
    let mut user = None;
    let mut kind = None;
    let mut range = None;
    for (key, span, value) in r.map(node, "context") {
        match key {
            "name" | "user" => user = r.string(value, "context user"),
            "type" => kind = r.string(value, "context type"),
            "range" => range = r.string(value, "context range"),
            other => r.unknown_key(other, span, "context", &["user", "type", "range"]),
        }
    }
    match kind {
        Some(kind) => Some(Context { user, kind, range }),
        None => {
            r.error_help(
                node.span,
                "the SELinux context has no `type`",
                "a context needs at least `type`, e.g. httpd_sys_content_t",
            );
            None
        }
    }
}

fn read_hooks(r: &mut Reader, node: &Node) -> BTreeMap<String, Vec<Script>> {
    let mut out = BTreeMap::new();
    for (event, span, value) in r.map(node, "hooks") {
        match EVENTS.iter().find(|(name, _)| *name == event) {
            Some((_, false)) => {
                r.error_help(
                    span,
                    format!("`{event}` cannot run scripts; kiln (as CodeDeploy) does that step"),
                    "hook ApplicationStop, BeforeInstall, AfterInstall, ApplicationStart, \
                     ValidateService or a traffic event",
                );
                continue;
            }
            None => {
                let known: Vec<&str> = EVENTS.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
                // The agent skips events it does not know, so a misspelt event's scripts would
                // never run and the deployment would succeed: refused, as a misspelt phase is.
                r.unknown_name(
                    event,
                    span,
                    format!("unknown lifecycle event `{event}`: its scripts would never run"),
                    "the events scripts may hook are",
                    &known,
                );
                continue;
            }
            Some((_, true)) => {}
        }
        let mut scripts = Vec::new();
        let mut total = 0;
        for item in items(r, value, event) {
            if let Some(script) = read_script(r, item) {
                total += script.timeout;
                scripts.push(script);
            }
        }
        if total > MAX_TIMEOUT {
            // The agent takes it (each script has its own limit); the service documents one hour
            // per event: said, not refused.
            r.diagnostics.push(
                Diagnostic::warning(
                    value.span,
                    format!(
                        "the scripts of {event} may run {total} s in all, past CodeDeploy's \
                         documented {MAX_TIMEOUT} s per event"
                    ),
                )
                .with_help("lower their timeouts (a script without one counts 3600 s)"),
            );
        }
        out.insert(event.to_string(), scripts);
    }
    out
}

fn read_script(r: &mut Reader, node: &Node) -> Option<Script> {
    let mut location = None;
    let mut timeout = MAX_TIMEOUT;
    let mut runas = None;
    for (key, span, value) in r.map(node, "a hook script") {
        match key {
            "location" => location = r.string(value, "location"),
            "timeout" => {
                let text = r.string(value, "timeout");
                match text.as_deref().map(str::parse::<u64>) {
                    Some(Ok(t)) if (1..=MAX_TIMEOUT).contains(&t) => timeout = t,
                    Some(_) => r.error_help(
                        value.span,
                        format!(
                            "the timeout `{}` is not a number of seconds from 1 to {MAX_TIMEOUT}",
                            text.unwrap_or_default()
                        ),
                        "write whole seconds, e.g. `timeout: 300`",
                    ),
                    None => {}
                }
            }
            "runas" => runas = r.string(value, "runas"),
            "sudo" => {}
            other => r.unknown_key(
                other,
                span,
                "a hook script",
                &["location", "timeout", "runas"],
            ),
        }
    }
    match location {
        Some(location) => Some(Script {
            location,
            timeout,
            runas,
        }),
        None => {
            r.error_help(
                node.span,
                "this hook script has no `location`",
                "give the script's path in the revision, e.g. scripts/start.sh",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> AppSpec {
        parse(Path::new("appspec.yml"), text)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    fn err(text: &str) -> String {
        parse(Path::new("appspec.yml"), text)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn a_full_appspec_reads() {
        let spec = ok("version: 0.0
os: linux
files:
  - source: /
    destination: /var/www/html
file_exists_behavior: OVERWRITE
permissions:
  - object: /var/www/html
    pattern: \"*.sh\"
    except: [/var/www/html/keep.sh]
    owner: www-data
    group: www-data
    mode: 0755
    type:
      - file
hooks:
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 300
      runas: root
");
        assert_eq!(spec.files[0].source, "/");
        assert_eq!(spec.file_exists_behavior, Some(FileExists::Overwrite));
        assert_eq!(spec.permissions[0].mode, Some(0o755));
        assert_eq!(spec.permissions[0].types, [ObjectType::File]);
        assert_eq!(spec.hooks["ApplicationStart"][0].timeout, 300);
    }

    #[test]
    fn defaults_are_codedeploys() {
        let spec = ok(
            "version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    mode: 644\nhooks:\n  AfterInstall:\n    - location: a.sh\n",
        );
        assert_eq!(spec.file_exists_behavior, None);
        assert_eq!(spec.permissions[0].pattern, "**");
        assert_eq!(
            spec.permissions[0].types,
            [ObjectType::File, ObjectType::Directory]
        );
        assert_eq!(spec.hooks["AfterInstall"][0].timeout, 3600);
    }

    #[test]
    fn errors_point_at_their_place() {
        let e = err("version: 0.1\nos: linux\n");
        assert!(e.contains("appspec.yml:1:10"), "{e}");
        assert!(e.contains("unsupported AppSpec version 0.1"), "{e}");
        let e = err("version: 0.0\nos: linux\nfiles:\n  - source: a\n    destination: relative\n");
        assert!(
            e.contains("5:18") && e.contains("not an absolute path"),
            "{e}"
        );
        let e = err("version: 0.0\nos: linux\nhooks:\n  Install:\n    - location: x.sh\n");
        assert!(e.contains("cannot run scripts"), "{e}");
        let e = err("version: 0.0\nos: linux\nhooks:\n  AfterInstal:\n    - location: x.sh\n");
        assert!(e.contains("unknown lifecycle event `AfterInstal`"), "{e}");
        assert!(e.contains("appspec.yml:4:3"), "{e}");
        assert!(e.contains("did you mean `AfterInstall`?"), "{e}");
        let e = err("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    mode: 9\n");
        assert!(e.contains("`9` is not a file mode"), "{e}");
        let e = err(
            "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a\n      timeout: 3601\n",
        );
        assert!(e.contains("from 1 to 3600"), "{e}");
    }

    #[test]
    fn misspelt_keys_below_the_top_level_are_errors_and_top_level_ones_warn() {
        let e = err(
            "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destinaton: /srv\n\
             permissions:\n  - object: /srv\n    onwer: www\n\
             hooks:\n  ApplicationStrat:\n    - location: a.sh\n  AfterInstall:\n    - locaton: a.sh\n      timout: 3\n      runs: root\n",
        );
        for (place, message, near) in [
            (
                "5:5",
                "unknown key `destinaton` in a files entry",
                "destination",
            ),
            ("8:5", "unknown key `onwer` in a permissions entry", "owner"),
            (
                "10:3",
                "unknown lifecycle event `ApplicationStrat`",
                "ApplicationStart",
            ),
            ("13:7", "unknown key `locaton` in a hook script", "location"),
            ("14:7", "unknown key `timout` in a hook script", "timeout"),
            ("15:7", "unknown key `runs` in a hook script", "runas"),
        ] {
            assert!(
                e.contains(&format!("appspec.yml:{place}")),
                "{place} in {e}"
            );
            assert!(e.contains(message), "{message} in {e}");
            assert!(
                e.contains(&format!("did you mean `{near}`?")),
                "{near} in {e}"
            );
        }
        let (_, warnings) = parse(
            Path::new("appspec.yml"),
            "version: 0.0\nos: linux\nx-notes: hi\nfiles:\n  - source: /\n    destination: /srv\n    file_exists_behavior: RETAIN\n",
        )
        .unwrap();
        assert!(warnings[0].message.contains("unknown key `x-notes`"));
        assert!(warnings[1].message.contains("in a files entry is ignored"));
    }

    #[test]
    fn lambda_and_ecs_appspecs_are_refused() {
        let e = err(
            "version: 0.0\nResources:\n  - myLambdaFunction:\n      Type: AWS::Lambda::Function\n",
        );
        assert!(e.contains("Lambda or Amazon ECS"), "{e}");
    }

    // The CodeDeploy agent's test/…/application_specification_test.rb, case by case.
    #[test]
    fn agent_parse_cases() {
        let base = "version: 0.0\nos: linux\n";
        // Empty and whitespace-only AppSpecs, a missing or invalid version or os.
        for text in [
            "",
            " \n",
            "os: linux\n",
            "version: invalid\nos: linux\n",
            "version: 0.0\n",
        ] {
            err(text);
        }
        let e = err("version: 0.0\nos: unsupported\n");
        assert!(e.contains("unknown os unsupported"), "{e}");
        let e = err(&format!("{base}file_exists_behavior: invalid\n"));
        assert!(e.contains("unknown file_exists_behavior `invalid`"), "{e}");
        // No hooks, no files.
        let spec = ok(base);
        assert!(spec.hooks.is_empty() && spec.files.is_empty());
        // A complete hook; two scripts in order; partial scripts take the defaults.
        let spec = ok(&format!(
            "{base}hooks:\n  AfterInstall:\n    - location: test_location_1\n      runas: foo\n      timeout: 30\n    - location: test_location_2\n"
        ));
        let scripts = &spec.hooks["AfterInstall"];
        assert_eq!(scripts[0].location, "test_location_1");
        assert_eq!(scripts[0].runas.as_deref(), Some("foo"));
        assert_eq!(scripts[0].timeout, 30);
        assert_eq!(scripts[1].location, "test_location_2");
        assert_eq!(scripts[1].runas, None);
        assert_eq!(scripts[1].timeout, 3600);
        // An empty hook runs nothing.
        let spec = ok(&format!(
            "{base}hooks:\n  BeforeInstall:\n  AfterInstall:\n    - location: a\n"
        ));
        assert!(spec.hooks.get("BeforeInstall").is_none_or(|s| s.is_empty()));
        // A script without location; a timeout that is not a number.
        err(&format!(
            "{base}hooks:\n  AfterInstall:\n    - timeout: 30\n"
        ));
        err(&format!(
            "{base}hooks:\n  AfterInstall:\n    - location: a\n      timeout: foo\n"
        ));
        // Files: one, several in order, a missing destination, a missing source.
        let spec = ok(&format!(
            "{base}files:\n  - source: test_source\n    destination: /test_destination\n  - source: s2\n    destination: /d2\n"
        ));
        assert_eq!(spec.files.len(), 2);
        assert_eq!(spec.files[0].source, "test_source");
        assert_eq!(spec.files[1].destination, "/d2");
        err(&format!("{base}files:\n  - source: test_source\n"));
        err(&format!(
            "{base}files:\n  - destination: /test_destination\n"
        ));
        // Permissions: without object; pattern `**`; several, in order.
        err(&format!("{base}permissions:\n  - pattern: test\n"));
        let spec = ok(&format!(
            "{base}permissions:\n  - object: /\n    pattern: \"**\"\n  - object: /test\n  - object: /more\n"
        ));
        assert_eq!(spec.permissions[0].pattern, "**");
        let objects: Vec<&str> = spec.permissions.iter().map(|p| p.object.as_str()).collect();
        assert_eq!(objects, ["/", "/test", "/more"]);
        // A type that is not file or directory; a context without type; with `name`.
        err(&format!(
            "{base}permissions:\n  - object: /a\n    type: [socket]\n"
        ));
        err(&format!(
            "{base}permissions:\n  - object: /a\n    context:\n      name: name\n"
        ));
        let spec = ok(&format!(
            "{base}permissions:\n  - object: /a\n    context:\n      name: user_u\n      type: unconfined_t\n      range: s3-s5:c0.c7,c13\n"
        ));
        let context = spec.permissions[0].context.as_ref().unwrap();
        assert_eq!(context.user.as_deref(), Some("user_u"));
        assert_eq!(context.kind, "unconfined_t");
    }

    // The agent's mode cases: 12345 too long, 12 is 012, 12a has a bad character, 7777 and 0000
    // and 777 are fine; and its 6763 in the valid-permission case.
    #[test]
    fn agent_mode_cases() {
        assert_eq!(parse_mode("12345"), None);
        assert_eq!(parse_mode("12"), Some(0o12));
        assert_eq!(parse_mode("12a"), None);
        assert_eq!(parse_mode("7777"), Some(0o7777));
        assert_eq!(parse_mode("0000"), Some(0));
        assert_eq!(parse_mode("777"), Some(0o777));
        assert_eq!(parse_mode("6763"), Some(0o6763));
    }

    // The agent's ACE cases.
    #[test]
    fn agent_acl_cases() {
        for bad in [
            "7",
            "d:u:bob:7:rwx",
            "invalid:u:bob:7:rwx",
            "d:invalid:bob:7:rwx",
            "d:d:bob:7:rwx",
            "mask:name:rwx",
            "d:other:name:rwx",
            "user:bob:rwxd",
            "u::7",
            "g::7",
            "o:7",
        ] {
            assert!(check_ace(bad).is_err(), "{bad} should be refused");
        }
        for good in [
            "u:henry:7",
            "d:g:manager:rw",
            "d:u:bob:rwx",
            "default:g:dev:rw",
            "d:bob:rwx",
            "default::rw",
            "m::7",
            "mask::7",
            "g:dev:7",
            "group:dev:7",
            "u:bob:7",
            "user:bob:7",
            "u:mask:7",
            "u:other:7",
            "bob:0",
            "m:7",
            "mask:",
        ] {
            assert!(
                check_ace(good).is_ok(),
                "{good} should be accepted: {:?}",
                check_ace(good)
            );
        }
        let e =
            err("version: 0.0\nos: linux\npermissions:\n  - object: /a\n    acls:\n      - u::7\n");
        assert!(e.contains("invalid ACL entry `u::7`"), "{e}");
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        assert_eq!(parse_mode("888"), None);
        assert_eq!(parse_mode("07555"), None);
        assert_eq!(parse_mode(""), None);
    }
}
