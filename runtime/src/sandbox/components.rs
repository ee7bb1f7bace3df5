//! Compiled components cached on disk, so a plugin is compiled once per machine and kiln version,
//! not once per build.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::INTERFACE_VERSION;
use crate::plugins::Inspected;

/// Loads a component, from the on-disk cache when it has it, compiling and caching it otherwise; with
/// how long compiling took when it compiled now.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, Option<Duration>)> {
    let started = Instant::now();
    let Some(cache_dir) = cache_dir else {
        let component = Component::new(engine, bytes)?;
        return Ok((component, Some(started.elapsed())));
    };
    let file = compiled_path(engine, &blake3::hash(bytes), cache_dir);
    if file.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the name), into kiln's own cache directory, atomically.
        // A file that fails to deserialize is recompiled below.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &file) } {
            // Its time says when a build last loaded it, for `kiln cache prune`.
            if let Ok(f) = std::fs::File::open(&file) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok((component, None));
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    let took = started.elapsed();
    // Caching is an optimisation: a read-only or full cache directory only costs compile time.
    let _ = store(cache_dir, &file, &compiled);
    // SAFETY: these bytes were produced by `precompile_component` of this very engine just above.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, Some(took)))
}

/// Where `load` caches the compiled form of the component of this digest.
pub fn compiled_path(
    engine: &Engine,
    digest: &blake3::Hash,
    cache_dir: &Path,
) -> std::path::PathBuf {
    cache_dir.join(format!("{}-{}.cwasm", digest.to_hex(), suffix(engine)))
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

/// Which entry point a component has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `kiln:plugin/entry@0.1.x`'s `run` (kiln-sdk 0.1.1 and later, world `plugin`).
    Interface,
    /// A top-level `run` (kiln-sdk 0.1.0, world `step`).
    Legacy,
}

/// The packages a plugin may import from: WASI's that wasmtime-wasi links (any 0.2.x) and kiln's.
const LINKED: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "kiln:plugin/",
];

/// Decides whether this kiln runs a component, from what it says about itself: the interface
/// version it was built for must be a `0.1.x` no newer than kiln's, and it must import
/// only what kiln links and export an entry point.
/// The message names both versions when they do not match.
pub fn check_interface(found: &Inspected) -> Result<Entry, String> {
    let Some(version) = found.interface_version() else {
        return Err(
            "it says nothing about the kiln interface it was built for (no `kiln:api-version` section \
             and no `kiln:plugin` imports or exports): build it with kiln-sdk's `plugin!`"
                .to_string(),
        );
    };
    let ours = semver::Version::parse(INTERFACE_VERSION).unwrap_or(semver::Version::new(0, 1, 1));
    let theirs = semver::Version::parse(version).map_err(|_| {
        format!(
            "it says it was built for kiln's plugin interface `{version}`, which is not a version"
        )
    })?;
    if theirs.major != ours.major || theirs.minor != ours.minor {
        return Err(format!(
            "it was built for kiln's plugin interface {theirs}, and this kiln speaks {INTERFACE_VERSION} \
             (it runs plugins built for any 0.1.x up to {INTERFACE_VERSION}); rebuild it against kiln-sdk \
             {INTERFACE_VERSION}, or use a kiln that speaks {theirs}"
        ));
    }
    if theirs > ours {
        return Err(format!(
            "it was built for kiln's plugin interface {theirs}, newer than this kiln's {INTERFACE_VERSION}: \
             upgrade kiln"
        ));
    }
    if let Some(other) = found
        .imports
        .iter()
        // Interfaces of packages (`ns:pkg/name@v`); a plain name is a type the world uses.
        .filter(|i| i.contains(':'))
        .find(|i| !LINKED.iter().any(|p| i.starts_with(p)))
    {
        let hint = if other.starts_with("wasi:http/") {
            " (componentize-js: `-d http fetch-event`)"
        } else {
            ""
        };
        return Err(format!(
            "it imports `{other}`, which kiln does not give plugins (they get WASI's cli, clocks, \
             filesystem, io, random and sockets, and kiln:plugin): build it without it{hint}"
        ));
    }
    if found
        .exports
        .iter()
        .any(|e| e.starts_with("kiln:plugin/entry@"))
    {
        Ok(Entry::Interface)
    } else if found.exports.iter().any(|e| e == "run") {
        Ok(Entry::Legacy)
    } else {
        Err(
            "it exports neither `kiln:plugin/entry` nor `run`: it is not a kiln step plugin (build it \
             with kiln-sdk's `plugin!`)"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(version: Option<&str>, exports: &[&str]) -> Inspected {
        Inspected {
            api_version: version.map(str::to_string),
            exports: exports.iter().map(|e| e.to_string()).collect(),
            ..Inspected::default()
        }
    }

    #[test]
    fn the_interface_check_runs_any_0_1_x_up_to_ours_and_names_both_versions_otherwise() {
        assert_eq!(
            check_interface(&said(Some("0.1.1"), &["kiln:plugin/entry@0.1.1"])),
            Ok(Entry::Interface)
        );
        assert_eq!(
            check_interface(&said(Some("0.1.0"), &["run"])),
            Ok(Entry::Legacy)
        );
        let e = check_interface(&said(Some("0.2.0"), &["kiln:plugin/entry@0.2.0"])).unwrap_err();
        assert!(e.contains("0.2.0") && e.contains(INTERFACE_VERSION), "{e}");
        let e = check_interface(&said(Some("0.1.9"), &["kiln:plugin/entry@0.1.9"])).unwrap_err();
        assert!(e.contains("0.1.9") && e.contains("upgrade kiln"), "{e}");
        let e = check_interface(&said(None, &["run"])).unwrap_err();
        assert!(e.contains("says nothing about the kiln interface"), "{e}");
        let e = check_interface(&said(Some("0.1.1"), &["hello"])).unwrap_err();
        assert!(e.contains("not a kiln step plugin"), "{e}");
    }

    #[test]
    fn an_import_kiln_does_not_link_is_refused_before_compiling_naming_it() {
        let with = |imports: &[&str]| Inspected {
            imports: imports.iter().map(|i| i.to_string()).collect(),
            ..said(Some("0.1.1"), &["kiln:plugin/entry@0.1.1"])
        };
        let linked = [
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.10",
            "kiln:plugin/log@0.1.1",
            "context",
        ];
        assert_eq!(check_interface(&with(&linked)), Ok(Entry::Interface));
        let e = check_interface(&with(&["wasi:cli/stdout@0.2.3", "wasi:http/types@0.2.10"]))
            .unwrap_err();
        assert!(
            e.contains("`wasi:http/types@0.2.10`") && e.contains("-d http fetch-event"),
            "{e}"
        );
        let e = check_interface(&with(&["acme:secrets/vault@1.0.0"])).unwrap_err();
        assert!(
            e.contains("`acme:secrets/vault@1.0.0`, which kiln does not give"),
            "{e}"
        );
    }
}
