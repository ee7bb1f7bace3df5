//! What a component says about itself, read without compiling it: its imports and exports, the
//! interface version it was built for (`kiln:api-version`), the capabilities it asks for
//! (`kiln:capabilities`), and its metadata (`description`, `licenses`, `source`, `version`,
//! `homepage`, `authors`, `revision`: the custom sections wasm-metadata writes and kiln-sdk's
//! `plugin!` embeds from the crate's Cargo.toml).
//!
//! Custom sections are looked for at the component's top level first, then in its nested core
//! modules, where a section written by the guest's linker ends up.

use std::collections::BTreeMap;

use wasmparser::{Encoding, Parser, Payload};

use super::Capabilities;

/// The custom section holding the interface version a plugin was built for.
pub const API_VERSION_SECTION: &str = "kiln:api-version";
/// The custom section holding what a plugin asks for.
pub const CAPABILITIES_SECTION: &str = "kiln:capabilities";
/// Metadata sections, by their name (wasm-metadata's), which map onto `org.opencontainers.image.*`.
pub const METADATA_SECTIONS: &[&str] = &[
    "description",
    "licenses",
    "source",
    "version",
    "homepage",
    "authors",
    "revision",
];

/// The largest custom section kiln reads (a plugin's own text, not its code).
const SECTION_LIMIT: usize = 64 * 1024;

/// What [`inspect`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspected {
    /// `kiln:api-version`, when the component has it.
    pub api_version: Option<String>,
    /// `kiln:capabilities`, when the component has it (`None`: it asks for nothing it could say).
    pub capabilities: Option<Capabilities>,
    /// Metadata sections with non-empty text, by name.
    pub metadata: BTreeMap<String, String>,
    /// The component's top-level import names (`kiln:plugin/log@0.1.0`, `wasi:cli/environment@0.2.6`).
    pub imports: Vec<String>,
    /// The component's top-level export names (`run`, `kiln:plugin/entry@0.1.1`).
    pub exports: Vec<String>,
}

impl Inspected {
    /// The kiln interface version the component was built for: its `kiln:api-version` section, else
    /// the version of the `kiln:plugin` interfaces it imports or exports. `None`: it says nothing.
    pub fn interface_version(&self) -> Option<&str> {
        self.api_version
            .as_deref()
            .or_else(|| self.linked_version())
    }

    /// The version of the `kiln:plugin` interfaces the component imports or exports.
    pub fn linked_version(&self) -> Option<&str> {
        self.imports
            .iter()
            .chain(&self.exports)
            .filter_map(|name| name.strip_prefix("kiln:plugin/"))
            .find_map(|rest| rest.split_once('@').map(|(_, v)| v))
    }
}

/// Reads a component's imports, exports and kiln's custom sections. Errs on a file that is not a
/// WebAssembly component (a core module, another file, a truncated component).
pub fn inspect(bytes: &[u8]) -> Result<Inspected, String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly file (it does not start with `\\0asm`)".to_string());
    }
    let mut out = Inspected::default();
    // Sections found in nested modules, used when the top level has none of that name.
    let mut nested: BTreeMap<String, String> = BTreeMap::new();
    let mut top: BTreeMap<String, String> = BTreeMap::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a readable WebAssembly component: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                return Err(
                    "a core WebAssembly module, not a component: build it for wasm32-wasip2 (kiln-sdk does)"
                        .to_string(),
                );
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| format!("unreadable import: {e}"))?;
                    out.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| format!("unreadable export: {e}"))?;
                    out.exports.push(export.name.name.to_string());
                }
            }
            Payload::CustomSection(reader) => {
                let name = reader.name();
                let wanted = name == API_VERSION_SECTION
                    || name == CAPABILITIES_SECTION
                    || METADATA_SECTIONS.contains(&name);
                if !wanted {
                    continue;
                }
                if reader.data().len() > SECTION_LIMIT {
                    return Err(format!(
                        "its `{name}` section is {} bytes; kiln reads at most {SECTION_LIMIT}",
                        reader.data().len()
                    ));
                }
                let text = std::str::from_utf8(reader.data())
                    .map_err(|_| format!("its `{name}` section is not UTF-8 text"))?;
                let into = if depth == 0 { &mut top } else { &mut nested };
                // A linker concatenates same-named sections of several objects: the first wins.
                into.entry(name.to_string())
                    .or_insert_with(|| text.to_string());
            }
            _ => {}
        }
    }
    for (name, text) in nested {
        top.entry(name).or_insert(text);
    }
    if let Some(v) = top.remove(API_VERSION_SECTION) {
        let v = v.trim();
        if semver::Version::parse(v).is_err() {
            return Err(format!(
                "its `{API_VERSION_SECTION}` section says `{v}`, which is not a version"
            ));
        }
        out.api_version = Some(v.to_string());
    }
    if let Some(text) = top.remove(CAPABILITIES_SECTION) {
        out.capabilities = Some(Capabilities::parse(&text)?);
    }
    out.metadata = top
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect();
    Ok(out)
}

/// The component with these custom sections (name, text) at its top level, where they win over
/// any the guest's linker left in nested modules; top-level sections of those names are replaced,
/// every other byte kept. For components made by toolchains that do not write kiln's sections
/// (componentize-py, componentize-js): what `kiln plugin declare` writes.
pub fn with_sections(bytes: &[u8], sections: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    const HEADER: usize = 8;
    if bytes.len() < HEADER || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file".to_string());
    }
    // A component's layer field (bytes 6..8) is 1; a core module's is 0.
    if bytes[6..8] != [1, 0] {
        return Err(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2".to_string(),
        );
    }
    let mut out = bytes[..HEADER].to_vec();
    let mut at = HEADER;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let past_end = || format!("a section at byte {start} runs past the end of the file");
        let size = read_leb_u32(bytes, &mut at).ok_or_else(past_end)?;
        let content = at;
        let end = content
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(past_end)?;
        let replaced = id == 0 && {
            let mut name_at = content;
            read_leb_u32(&bytes[..end], &mut name_at)
                .and_then(|len| bytes[..end].get(name_at..name_at.checked_add(len)?))
                .is_some_and(|name| sections.iter().any(|(n, _)| n.as_bytes() == name))
        };
        if !replaced {
            out.extend_from_slice(&bytes[start..end]);
        }
        at = end;
    }
    for (name, text) in sections {
        let mut payload = Vec::new();
        leb128(&mut payload, name.len());
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(text.as_bytes());
        out.push(0);
        leb128(&mut out, payload.len());
        out.extend_from_slice(&payload);
    }
    Ok(out)
}

/// Reads an unsigned LEB128 number of at most 32 bits at `*at`, moving past it.
fn read_leb_u32(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(n).ok().map(|n| n as usize);
        }
    }
    None
}

/// Appends `n` as an unsigned LEB128 number.
fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_written_at_the_top_level_win_and_replace_their_namesakes() {
        let caps = "exec git\nenv TOKEN\n";
        let once = with_sections(
            PROBE_010,
            &[
                (CAPABILITIES_SECTION, caps),
                (API_VERSION_SECTION, "0.1.0"),
                ("description", "probe, declared"),
            ],
        )
        .unwrap();
        let found = inspect(&once).unwrap();
        assert_eq!(found.api_version.as_deref(), Some("0.1.0"));
        assert_eq!(found.capabilities, Some(Capabilities::parse(caps).unwrap()));
        assert_eq!(found.metadata["description"], "probe, declared");
        // Written again: replaced, not added beside (the file grows by nothing).
        let twice = with_sections(
            &once,
            &[
                (CAPABILITIES_SECTION, caps),
                (API_VERSION_SECTION, "0.1.0"),
                ("description", "probe, declared"),
            ],
        )
        .unwrap();
        assert_eq!(twice, once);
        let other = with_sections(&once, &[(CAPABILITIES_SECTION, "exec make\n")]).unwrap();
        let found = inspect(&other).unwrap();
        assert_eq!(found.capabilities.unwrap().exec, ["make"]);
        assert_eq!(found.metadata["description"], "probe, declared");
        // What it was given is kept byte for byte: without the sections, the original.
        assert_eq!(with_sections(PROBE_010, &[]).unwrap(), PROBE_010);
        // A core module, another file, and every truncation are errors, never panics.
        assert!(
            with_sections(b"\0asm\x01\0\0\0", &[])
                .unwrap_err()
                .contains("core")
        );
        assert!(with_sections(b"ELF", &[]).is_err());
        for len in (9..PROBE_010.len()).step_by(1013) {
            assert!(with_sections(&PROBE_010[..len], &[]).is_err(), "{len}");
        }
    }

    const PROBE_010: &[u8] = include_bytes!("../../../tests/fixtures/plugins/probe-0.1.0.wasm");

    #[test]
    fn a_plugin_built_with_sdk_0_1_0_says_its_version_through_its_imports() {
        let found = inspect(PROBE_010).unwrap();
        assert_eq!(found.api_version, None);
        assert_eq!(found.interface_version(), Some("0.1.0"));
        assert!(
            found.exports.iter().any(|e| e == "run"),
            "{:?}",
            found.exports
        );
        assert!(
            found
                .imports
                .iter()
                .any(|i| i.starts_with("kiln:plugin/log@")),
            "{:?}",
            found.imports
        );
        assert_eq!(found.capabilities, None);
    }

    #[test]
    fn what_is_not_a_component_is_refused_and_hostile_bytes_never_panic() {
        assert!(
            inspect(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(inspect(b"not wasm at all").is_err());
        // Every truncation of a real component is an error or a result, never a panic.
        for len in (0..PROBE_010.len()).step_by(997) {
            let _ = inspect(&PROBE_010[..len]);
        }
        // And so is every single-byte change near the front, where the sections are.
        let mut bytes = PROBE_010.to_vec();
        for i in 8..bytes.len().min(4096) {
            let old = bytes[i];
            bytes[i] = old.wrapping_add(0x5b);
            let _ = inspect(&bytes);
            bytes[i] = old;
        }
    }
}
