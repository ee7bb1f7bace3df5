//! `kiln plugin declare`: writes kiln's sections into a component another toolchain built
//! (componentize-py, componentize-js...), which kiln-sdk's `plugin!` writes for Rust plugins: the interface
//! version, the capabilities it asks for, and its metadata.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::plugins::Capabilities;
use kiln::plugins::inspect::{self, API_VERSION_SECTION, CAPABILITIES_SECTION};
use serde_json::json;

use super::super::{exit, print_json};

/// `kiln plugin declare`.
#[derive(Args)]
pub struct DeclareArgs {
    /// The component (.wasm) to declare for; rewritten in place unless --output is given.
    file: PathBuf,

    /// Where to write the declared component instead.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// A host program it runs, by name or absolute path (repeat for each).
    #[arg(long, value_name = "PROGRAM")]
    exec: Vec<String>,

    /// A host (name or address) it connects to.
    #[arg(long, value_name = "HOST")]
    network: Vec<String>,

    /// An environment variable of the step it reads.
    #[arg(long, value_name = "NAME")]
    env: Vec<String>,

    /// An absolute directory outside the workspace it writes.
    #[arg(long, value_name = "DIR")]
    write: Vec<String>,

    /// Metadata: what it does, in a sentence (org.opencontainers.image.description when pushed).
    #[arg(long)]
    description: Option<String>,

    /// Metadata: its licenses, as an SPDX expression.
    #[arg(long)]
    licenses: Option<String>,

    /// Metadata: where its source lives (a URL).
    #[arg(long)]
    source: Option<String>,

    /// Metadata: its version.
    #[arg(long, value_name = "VERSION")]
    plugin_version: Option<String>,

    /// Metadata: its home page.
    #[arg(long)]
    homepage: Option<String>,

    /// Metadata: its authors.
    #[arg(long)]
    authors: Option<String>,

    /// Print what the component declares now as JSON.
    #[arg(long)]
    json: bool,
}

/// The capabilities the flags give, in the section's text, checked as kiln will read it.
fn capabilities(args: &DeclareArgs) -> Result<Capabilities, String> {
    let mut text = String::new();
    for (kind, values) in [
        ("exec", &args.exec),
        ("network", &args.network),
        ("env", &args.env),
        ("write", &args.write),
    ] {
        for value in values {
            if value.trim().is_empty() || value.contains(['\n', '\r']) {
                return Err(format!(
                    "--{kind} `{value}`: expected one value on one line"
                ));
            }
            text.push_str(&format!("{kind} {}\n", value.trim()));
        }
    }
    Capabilities::parse(&text).map_err(|e| {
        e.split_once(": ")
            .map_or(e.clone(), |(_, why)| why.to_string())
    })
}

/// `kiln plugin declare FILE [--exec P]... [--network H]... [--env N]... [--write D]...`: the
/// capabilities given replace what the component declared; metadata given replaces that item.
pub fn run(args: &DeclareArgs) -> u8 {
    let fail = |code: u8, message: String| {
        eprintln!("error: {message}");
        code
    };
    let declared = match capabilities(args) {
        Ok(c) => c,
        Err(e) => return fail(exit::BAD_INPUT, e),
    };
    let bytes = match super::registry::read_bounded(&args.file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let found = match inspect::inspect(&bytes) {
        Ok(f) => f,
        Err(e) => return fail(exit::BAD_INPUT, format!("{}: {e}", args.file.display())),
    };
    // The version of the kiln:plugin interfaces it was built against: what kiln checks.
    let Some(version) = found.linked_version().map(str::to_string) else {
        return fail(
            exit::BAD_INPUT,
            format!(
                "{}: imports and exports no kiln:plugin interface: build it for the world `kiln:plugin/plugin` of the WIT in kiln-sdk's wit/",
                args.file.display()
            ),
        );
    };
    let capability_text = declared.to_text();
    let mut sections: Vec<(&str, &str)> = vec![
        (API_VERSION_SECTION, version.as_str()),
        (CAPABILITIES_SECTION, capability_text.as_str()),
    ];
    for (name, value) in [
        ("description", &args.description),
        ("licenses", &args.licenses),
        ("source", &args.source),
        ("version", &args.plugin_version),
        ("homepage", &args.homepage),
        ("authors", &args.authors),
    ] {
        if let Some(value) = value {
            sections.push((name, value.as_str()));
        }
    }
    let written = match inspect::with_sections(&bytes, &sections) {
        Ok(w) => w,
        Err(e) => return fail(exit::BAD_INPUT, format!("{}: {e}", args.file.display())),
    };
    // Read back as kiln will read it before anything is written.
    let now = match inspect::inspect(&written) {
        Ok(now) if now.capabilities.as_ref() == Some(&declared) => now,
        Ok(_) => {
            return fail(
                exit::INTERNAL,
                "the declared component reads back otherwise: nothing written".into(),
            );
        }
        Err(e) => return fail(exit::BAD_INPUT, format!("{}: {e}", args.file.display())),
    };
    let target = args.output.as_deref().unwrap_or(&args.file);
    if let Err(e) = write_atomic(target, &written) {
        return fail(exit::INTERNAL, format!("{}: {e}", target.display()));
    }
    if args.json {
        print_json(&json!({
            "file": target,
            "api_version": version,
            "declared": declared,
            "metadata": now.metadata,
            "open_ended_exec": declared.open_ended_exec(),
            "wide_writes": declared.wide_writes(),
        }));
    } else {
        out!(
            "{}: interface {version}, declares {}",
            target.display(),
            declared.summary()
        );
        for (name, value) in &now.metadata {
            out!("  {name}: {value}");
        }
    }
    for line in super::registry::open_ended_warnings(&declared, &Capabilities::default()) {
        eprintln!("warning: it asks {line}");
    }
    exit::OK
}

/// Writes the file whole or not at all, keeping the mode of the file it replaces.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    let permissions = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    temp.as_file().set_permissions(permissions)?;
    temp.persist(path).map(|_| ()).map_err(|e| e.error)
}
