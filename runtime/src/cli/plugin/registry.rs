//! `kiln plugin push|pull|add|update`: plugins as things people share through a registry (or a
//! `file://` / `s3://` image layout), pinned by `kiln.lock`.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::cas::LocalStore;
use kiln::plugins::artifact::LAYER_LIMIT;
use kiln::plugins::lock::{self, Locked};
use kiln::plugins::registry::{self, PluginRef, RegistryError};
use kiln::plugins::signature::{self, PublicKey};
use kiln::plugins::{Capabilities, inspect};
use kiln::spec::config::ProjectConfig;
use serde_json::json;

use super::super::options::{AccessArgs, GlobalArgs};
use super::super::{exit, print_json};
use super::project::{Project, edited_toml, persist};

/// `kiln plugin push`.
#[derive(Args)]
pub struct PushArgs {
    /// The plugin component (.wasm), built for wasm32-wasip2.
    file: PathBuf,
    /// Where to: oci://host/repo:1.2.0, file:///dir/name:1.2.0 or s3://bucket/prefix/name:1.2.0.
    reference: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// `kiln plugin pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Where from: oci://host/repo:1.2.0 (or @sha256:…), file://…, s3://….
    reference: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// `kiln plugin add`.
#[derive(Args)]
pub struct AddArgs {
    /// The command name the plugin gets in builds.
    name: String,
    /// Where it comes from: oci://host/repo:1.2.0, file:///dir/name:1.2.0 or s3://…:1.2.0.
    reference: String,
    /// Grant what the plugin declares (programs, hosts, variables, directories); without it, nothing.
    #[arg(long)]
    accept: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// `kiln plugin update`.
#[derive(Args)]
pub struct UpdateArgs {
    /// The plugin to update; all of kiln.toml's registry plugins without it.
    name: Option<String>,
    /// Grant what the new versions declare beyond what was granted.
    #[arg(long)]
    accept: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    access: AccessArgs,
}

fn registry_error(e: RegistryError) -> u8 {
    eprintln!("error: {e}");
    match &e {
        RegistryError::Usage(_) => exit::BAD_INPUT,
        RegistryError::Refused { .. } => exit::INTEGRITY,
        RegistryError::Store(s) => exit::of_store(s),
    }
}

fn parse_ref(text: &str) -> Result<PluginRef, u8> {
    PluginRef::parse(text).map_err(registry_error)
}

/// `kiln plugin push FILE REF`: the component as a Wasm OCI artifact.
pub async fn push(_global: &GlobalArgs, args: &PushArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    let reference = match parse_ref(&args.reference) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bytes = match read_bounded(&args.file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    if let Err(e) = inspect(&bytes) {
        eprintln!(
            "error: {} is not a kiln plugin component: {e}",
            args.file.display()
        );
        return exit::BAD_INPUT;
    }
    match registry::push(&bytes, &reference, &access).await {
        Ok(pushed) => {
            if args.json {
                print_json(&json!({
                    "reference": pushed.reference,
                    "manifest": pushed.manifest_digest,
                    "layer": pushed.layer_digest,
                    "size": pushed.size,
                }));
            } else {
                out!("{}: {}", pushed.reference, pushed.manifest_digest);
            }
            exit::OK
        }
        Err(RegistryError::Refused { why, .. }) => {
            eprintln!(
                "error: {} is not a kiln plugin component: {why}",
                args.file.display()
            );
            exit::BAD_INPUT
        }
        Err(e) => registry_error(e),
    }
}

/// A component file given on the command line: a regular file of at most a layer's size, read
/// through one handle (a link to /dev/zero or a FIFO is refused, not read forever).
pub(super) fn read_bounded(path: &Path) -> Result<Vec<u8>, u8> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| {
        eprintln!("error: {}: {e}", path.display());
        exit::BAD_INPUT
    };
    let file = kiln::plugins::registry::open_nonblocking(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        eprintln!("error: {} is not a regular file", path.display());
        return Err(exit::BAD_INPUT);
    }
    let mut bytes = Vec::new();
    file.take(LAYER_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > LAYER_LIMIT {
        eprintln!(
            "error: {} is more than {LAYER_LIMIT} bytes, the most a plugin may be",
            path.display()
        );
        return Err(exit::BAD_INPUT);
    }
    Ok(bytes)
}

/// A pulled, checked plugin, in the CAS and compiled.
struct Fetched {
    pulled: registry::Pulled,
    path: PathBuf,
    blake3: String,
    api_version: String,
    declared: Capabilities,
}

/// Pulls a plugin, checks it is one kiln can run, stores it in the build cache's CAS and compiles
/// it, so the first build that uses it compiles nothing.
async fn fetch(
    global: &GlobalArgs,
    name: &str,
    reference: &PluginRef,
    key: Option<&PublicKey>,
    access: &kiln::store::Access,
) -> Result<Fetched, u8> {
    let pulled = registry::pull(reference, access)
        .await
        .map_err(registry_error)?;
    // Signed by the key the project lists for it, before anything compiles it.
    if let Some(key) = key {
        signature::verify(reference, &pulled.manifest_digest, key, access)
            .await
            .map_err(registry_error)?;
    }
    let found = inspect(&pulled.bytes).map_err(|e| {
        eprintln!("error: {reference} is not a kiln plugin component: {e}");
        exit::INTEGRITY
    })?;
    let Some(api_version) = found.interface_version().map(str::to_string) else {
        eprintln!(
            "error: {reference} says nothing about the kiln interface it was built for: refused"
        );
        return Err(exit::INTEGRITY);
    };
    let Some(cas_dir) = global.cas_dir() else {
        eprintln!("error: no cache folder: give --cache-dir");
        return Err(exit::BAD_INPUT);
    };
    let cas = LocalStore::open(&cas_dir).map_err(|e| {
        eprintln!("error: {e}");
        exit::INTERNAL
    })?;
    let digest = cas.put_bytes(&pulled.bytes).map_err(|e| {
        eprintln!("error: {e}");
        exit::INTERNAL
    })?;
    let path = cas.blob_path(&digest);
    // Checked as a build checks it (the pinned digest, the interface version), and compiled, so that
    // the first build compiles nothing.
    let mut sandbox = kiln::sandbox::Sandbox::new(global.components_dir()).map_err(|e| {
        eprintln!("error: {e:#}");
        exit::INTERNAL
    })?;
    sandbox.register(
        name,
        kiln::sandbox::PluginFile {
            path: path.clone(),
            sha256: Some(pulled.layer_digest.clone()),
            grant: kiln::sandbox::Grant::Local,
        },
    );
    sandbox.check(name).map_err(|e| {
        eprintln!("error: {reference}: {e}");
        exit::of_step(&e)
    })?;
    Ok(Fetched {
        path,
        blake3: digest.hex(),
        api_version,
        declared: found.capabilities.unwrap_or_default(),
        pulled,
    })
}

/// The public key kiln.toml's `[plugin-keys]` lists for a reference, read.
fn key_of(config: Option<&ProjectConfig>, reference: &PluginRef) -> Result<Option<PublicKey>, u8> {
    let Some(config) = config else {
        return Ok(None);
    };
    let keys = config.plugin_key_files();
    let Some(path) = signature::key_for(reference, &keys) else {
        return Ok(None);
    };
    PublicKey::read(path).map(Some).map_err(|e| {
        eprintln!("error: kiln.toml [plugin-keys]: {e}");
        exit::BAD_INPUT
    })
}

/// `kiln plugin pull REF`: into the CAS, compiled.
pub async fn pull(global: &GlobalArgs, args: &PullArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    let reference = match parse_ref(&args.reference) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let name = match &reference.location {
        registry::Location::Oci(image) => image.rsplit('/').next().unwrap_or("plugin"),
        registry::Location::File(dir) => {
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("plugin")
        }
        registry::Location::S3 { prefix, .. } => prefix.rsplit('/').next().unwrap_or("plugin"),
    }
    .to_string();
    // Only kiln.toml's [plugin-keys]: a pull writes nothing of the project's.
    let config = match Project::config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let key = match key_of(config.as_ref(), &reference) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let fetched = match fetch(global, &name, &reference, key.as_ref(), &access).await {
        Ok(f) => f,
        Err(code) => return code,
    };
    if args.json {
        print_json(&json!({
            "reference": fetched.pulled.reference,
            "manifest": fetched.pulled.manifest_digest,
            "layer": fetched.pulled.layer_digest,
            "size": fetched.pulled.size,
            "blake3": fetched.blake3,
            "path": fetched.path,
            "api_version": fetched.api_version,
            "declared": fetched.declared,
            "annotations": fetched.pulled.annotations,
        }));
    } else {
        out!(
            "{}: {} ({} bytes, layer {}) in {}, compiled",
            fetched.pulled.reference,
            fetched.pulled.manifest_digest,
            fetched.pulled.size,
            fetched.pulled.layer_digest,
            fetched.path.display()
        );
        out!("it asks for: {}", fetched.declared.summary());
    }
    exit::OK
}

fn check_name(name: &str) -> Result<(), u8> {
    lock::check_name(name).map_err(|e| {
        eprintln!("error: {e}");
        exit::BAD_INPUT
    })
}

fn report(name: &str, fetched: &Fetched, granted: &Capabilities, accepted: bool) {
    let declared = &fetched.declared;
    if declared.is_empty() {
        out!("{name} asks for nothing beyond its step's directories");
    } else {
        out!("{name} asks for: {}", declared.summary());
    }
    if granted.is_empty() && !declared.is_empty() && !accepted {
        out!("granted: nothing (run again with --accept to grant what it asks for)");
    } else {
        out!("granted: {}", granted.summary());
    }
    warn_open_ended(name, declared, granted);
}

/// A warning for each program a plugin asks to run that can run any other (a shell, an
/// interpreter, `git`...), and for each far-reaching directory it asks to write: granting one of
/// those grants much more than its name says.
fn warn_open_ended(name: &str, declared: &Capabilities, granted: &Capabilities) {
    for line in open_ended_warnings(declared, granted) {
        eprintln!("warning: {name} asks {line}");
    }
}

/// What [`warn_open_ended`] says after "NAME asks ", one line each.
pub(super) fn open_ended_warnings(declared: &Capabilities, granted: &Capabilities) -> Vec<String> {
    let state = |given: bool| {
        if given {
            "is granted"
        } else {
            "would be granted by --accept"
        }
    };
    let mut out: Vec<String> = declared
        .open_ended_exec()
        .into_iter()
        .map(|program| {
            let given = granted.exec.iter().any(|p| p == program);
            format!(
                "to run `{program}`, which can run any program it is told to (a grant names a program, not its arguments): `{program}` {}",
                state(given)
            )
        })
        .collect();
    out.extend(declared.wide_writes().into_iter().map(|dir| {
        let given = granted.write.iter().any(|d| d == dir);
        format!(
            "to write `{dir}`, which holds what every build and user here relies on: `{dir}` {}",
            state(given)
        )
    }));
    out
}

fn locked(name: &str, reference: &str, fetched: &Fetched, granted: Capabilities) -> Locked {
    Locked {
        name: name.to_string(),
        reference: reference.to_string(),
        manifest: fetched.pulled.manifest_digest.clone(),
        layer: fetched.pulled.layer_digest.clone(),
        size: fetched.pulled.size,
        blake3: fetched.blake3.clone(),
        api_version: fetched.api_version.clone(),
        granted,
    }
}

fn locked_json(l: &Locked, declared: &Capabilities) -> serde_json::Value {
    json!({
        "name": l.name,
        "reference": l.reference,
        "manifest": l.manifest,
        "layer": l.layer,
        "size": l.size,
        "blake3": l.blake3,
        "api_version": l.api_version,
        "declared": declared,
        "granted": l.granted,
        // Programs it asks to run that can run any other, and far-reaching directories it asks
        // to write.
        "open_ended_exec": declared.open_ended_exec(),
        "wide_writes": declared.wide_writes(),
    })
}

/// `kiln plugin add NAME REF`: pull, show what it asks for, pin it in kiln.lock, name it in
/// kiln.toml.
pub async fn add(global: &GlobalArgs, args: &AddArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    if let Err(code) = check_name(&args.name) {
        return code;
    }
    let reference = match parse_ref(&args.reference) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Project {
        toml_path,
        lock_path,
        config,
        mut lock,
    } = match Project::open() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let key = match key_of(config.as_ref(), &reference) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let fetched = match fetch(global, &args.name, &reference, key.as_ref(), &access).await {
        Ok(f) => f,
        Err(code) => return code,
    };
    let granted = if args.accept {
        fetched.declared.clone()
    } else {
        Capabilities::default()
    };
    let text = reference.to_string();
    let entry = locked(&args.name, &text, &fetched, granted.clone());
    lock.put(entry.clone());
    // kiln.toml's new text is made and checked before either file is written; if kiln.toml then
    // cannot be written, the lock goes back to what it was.
    let toml_text = match edited_toml(&toml_path, &args.name, Some(&text)) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let old_lock = std::fs::read_to_string(&lock_path).ok();
    if let Err(e) = lock.write(&lock_path) {
        eprintln!("error: {e}");
        return exit::INTERNAL;
    }
    if let Err(code) = persist(&toml_path, &toml_text) {
        let restored = match &old_lock {
            Some(old) => persist(&lock_path, old),
            None => std::fs::remove_file(&lock_path).map_err(|_| code),
        };
        if restored.is_err() {
            eprintln!(
                "error: {} now pins `{}`, which kiln.toml does not name: `kiln plugin remove {}` takes it out",
                lock_path.display(),
                args.name,
                args.name
            );
        }
        return code;
    }
    if args.json {
        let mut v = locked_json(&entry, &fetched.declared);
        v["kiln_toml"] = json!(toml_path);
        v["kiln_lock"] = json!(lock_path);
        print_json(&v);
    } else {
        report(&args.name, &fetched, &granted, args.accept);
        out!(
            "{}: {} pinned to {} in {}",
            args.name,
            text,
            entry.manifest,
            lock_path.display()
        );
    }
    exit::OK
}

/// `kiln plugin update [NAME]`: resolve the tags again and pin what they name now. Grants the new
/// version still declares are kept; a newly declared capability needs `--accept`.
pub async fn update(global: &GlobalArgs, args: &UpdateArgs) -> u8 {
    let Some(access) = args.access.access() else {
        return exit::BAD_INPUT;
    };
    let (lock_path, config, mut lock) = match Project::open() {
        Ok(Project {
            lock_path,
            config: Some(config),
            lock,
            ..
        }) => (lock_path, config, lock),
        Ok(_) => {
            eprintln!(
                "error: no kiln.toml here or above: add a plugin first (kiln plugin add NAME REF)"
            );
            return exit::BAD_INPUT;
        }
        Err(code) => return code,
    };
    let wanted: Vec<(String, String)> = config
        .registry_plugins()
        .into_iter()
        .filter(|(n, _)| args.name.as_deref().is_none_or(|w| w == n))
        .collect();
    if let Some(name) = &args.name
        && wanted.is_empty()
    {
        eprintln!(
            "error: kiln.toml has no registry plugin `{name}`: add it with kiln plugin add {name} REF"
        );
        return exit::BAD_INPUT;
    }
    let mut results = Vec::new();
    for (name, text) in wanted {
        if let Err(code) = check_name(&name) {
            return code;
        }
        let reference = match parse_ref(&text) {
            Ok(r) => r,
            Err(code) => return code,
        };
        let key = match key_of(Some(&config), &reference) {
            Ok(k) => k,
            Err(code) => return code,
        };
        let fetched = match fetch(global, &name, &reference, key.as_ref(), &access).await {
            Ok(f) => f,
            Err(code) => return code,
        };
        let before = lock.get(&name).cloned();
        // Grants stay with the place they were given to: a name pointed at another repository or
        // registry (another publisher, perhaps) starts from nothing.
        let same_source = before.as_ref().is_some_and(|b| {
            PluginRef::parse(&b.reference).is_ok_and(|r| r.location == reference.location)
        });
        let kept = match &before {
            Some(b) if same_source => b.granted.intersect(&fetched.declared),
            _ => Capabilities::default(),
        };
        if let Some(b) = &before
            && !same_source
            && !b.granted.is_empty()
            && !args.json
        {
            out!(
                "{name}: {text} is another source than {} was: its grants start from nothing",
                b.reference
            );
        }
        let granted = if args.accept {
            fetched.declared.clone()
        } else {
            kept
        };
        let entry = locked(&name, &text, &fetched, granted.clone());
        if !args.json {
            let moved = before.as_ref().map(|b| b.manifest.as_str()) != Some(&entry.manifest);
            if moved {
                out!(
                    "{name}: {text} now {} (was {})",
                    entry.manifest,
                    before
                        .as_ref()
                        .map_or("not locked", |b| b.manifest.as_str())
                );
            } else {
                out!("{name}: {text} unchanged ({})", entry.manifest);
            }
            let new = fetched.declared.minus(&granted);
            if !new.is_empty() {
                out!(
                    "{name} asks for {} which is not granted (run again with --accept to grant it)",
                    new.summary()
                );
            }
            out!("granted: {}", granted.summary());
            warn_open_ended(&name, &fetched.declared, &granted);
        }
        results.push(locked_json(&entry, &fetched.declared));
        lock.put(entry);
    }
    // Updating them all also drops what kiln.toml no longer names.
    let mut dropped = Vec::new();
    if args.name.is_none() {
        let named = config.registry_plugins();
        let stale: Vec<String> = lock
            .plugins
            .iter()
            .filter(|l| !named.iter().any(|(n, _)| *n == l.name))
            .map(|l| l.name.clone())
            .collect();
        for name in stale {
            if let Some(l) = lock.remove(&name) {
                if !args.json {
                    out!("{name}: no longer in kiln.toml, taken out of kiln.lock");
                }
                dropped.push(json!({ "name": l.name, "reference": l.reference }));
            }
        }
    }
    if let Err(e) = lock.write(&lock_path) {
        eprintln!("error: {e}");
        return exit::INTERNAL;
    }
    if args.json {
        print_json(&json!({ "plugins": results, "removed": dropped, "kiln_lock": lock_path }));
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_kiln_plugins_are_refused_as_names() {
        for name in ["cd", "shell", "codebuild-hash-files", "sudo", "../x", ""] {
            assert!(check_name(name).is_err(), "{name}");
        }
        assert!(check_name("checksum").is_ok());
    }
}
