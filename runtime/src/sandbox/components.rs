//! Compiled components cached on disk, so a plugin is compiled once per machine and kiln version,
//! not once per build.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::INTERFACE_VERSION;

/// Loads a component, from the on-disk cache when it has it, compiling and caching it otherwise.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let Some(cache_dir) = cache_dir else {
        return Component::new(engine, bytes);
    };
    let file = cache_dir.join(format!(
        "{}-{}.cwasm",
        blake3::hash(bytes).to_hex(),
        suffix(engine)
    ));
    if file.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the name), into kiln's own cache directory, atomically.
        // A file that fails to deserialize is recompiled below.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &file) } {
            // Its time says when a build last loaded it, for `kiln cache prune`.
            if let Ok(f) = std::fs::File::open(&file) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(component);
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    // Caching is an optimisation: a read-only or full cache directory only costs compile time.
    let _ = store(cache_dir, &file, &compiled);
    // SAFETY: these bytes were produced by `precompile_component` of this very engine just above.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// What this kiln and engine configuration name their compiled components with (after the
/// component's digest): what another kiln compiled can never be loaded by this one.
fn suffix(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// What [`prune`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub files: u64,
    pub bytes: u64,
}

/// Removes the compiled components of `dir` that `engine` cannot load (their name has another
/// suffix), those not loaded for `unused`, and temp files of interrupted writes.
pub fn prune(engine: &Engine, dir: &Path, unused: std::time::Duration) -> Pruned {
    let ours = format!("-{}.cwasm", suffix(engine));
    let now = std::time::SystemTime::now();
    let mut pruned = Pruned::default();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let idle = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        // A write in progress (another build compiling) is left to finish.
        let writing = name.starts_with(".tmp") && idle < std::time::Duration::from_secs(3600);
        let stale = !writing && (!name.ends_with(&ours) || idle > unused);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            pruned.files += 1;
            pruned.bytes += meta.len();
        }
    }
    pruned
}

fn store(dir: &Path, file: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(compiled)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// Refuses a component built against another version of kiln's interface, naming both versions.
pub fn check_interface(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("kiln:plugin/") {
            let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("(none)");
            if version != INTERFACE_VERSION {
                return Err(format!(
                    "it was built for kiln's plugin interface {version} (it imports `{name}`), \
                     and this kiln speaks {INTERFACE_VERSION}; rebuild it against kiln-sdk {INTERFACE_VERSION}"
                ));
            }
        }
    }
    if ty.exports(engine).all(|(name, _)| name != "run") {
        return Err(
            "it exports no `run` function: it is not a kiln step plugin (build it with kiln-sdk's `plugin!`)"
                .to_string(),
        );
    }
    Ok(())
}
