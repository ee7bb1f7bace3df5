//! `kiln plugin new NAME`: a plugin crate that builds on its own, outside this repository and
//! offline, against the SDK kiln carries; or, with `--lang python`, a Python plugin for
//! componentize-py with the WIT beside it.
//!
//! kiln embeds the kiln-sdk crate it was built with (its manifest, sources and WIT) and writes it,
//! when absent or different, to `$XDG_DATA_HOME/kiln/sdk/<version>/`; the scaffold depends on it by
//! path (and by version, so a published kiln-sdk can replace the path). The scaffold has a small real
//! plugin, a test that runs the built component through kiln (the SDK's `testing` feature), a README
//! and a .gitignore.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::exit;

/// `kiln plugin new`.
#[derive(Args)]
pub struct NewArgs {
    /// The plugin's name: the crate's name and the command a buildspec line starts with.
    name: String,

    /// Where to create the crate [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,

    /// The language: rust (a crate on kiln-sdk, with a test through kiln's harness) or python (built
    /// by componentize-py against the WIT, with a unittest through `kiln plugin run`).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

/// What `kiln plugin new` writes a plugin in.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

/// The SDK's files, as this kiln was built with them: (path inside the SDK crate, contents).
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../../sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../../sdk/src/lib.rs")),
    (
        "src/testing.rs",
        include_str!("../../../../sdk/src/testing.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../../sdk/wit/plugin.wit"),
    ),
    ("README.md", include_str!("../../../../sdk/README.md")),
];

/// `kiln plugin new`: writes the SDK where the scaffold finds it, then the scaffold.
pub fn run(args: &NewArgs) -> u8 {
    if let Err(e) = check_name(&args.name) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let target = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    match std::fs::read_dir(&target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                eprintln!(
                    "error: {} exists and is not empty: give a new or empty folder with --path",
                    target.display()
                );
                return exit::BAD_INPUT;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            eprintln!("error: {} exists and is not a folder", target.display());
            return exit::BAD_INPUT;
        }
        Err(e) => {
            eprintln!("error: {}: {e}", target.display());
            return exit::BAD_INPUT;
        }
    }
    if args.lang == Lang::Python {
        if let Err(e) = scaffold_python(&target, &args.name) {
            eprintln!("error: cannot write {}: {e}", target.display());
            return exit::INTERNAL;
        }
        out!(
            "created plugin `{}` in {} (Python, for componentize-py)",
            args.name,
            target.display()
        );
        out!(
            "next: cd {} && ./build.sh && python3 -m unittest   (see its README.md)",
            target.display()
        );
        return exit::OK;
    }
    let Some(data) = dirs::data_dir() else {
        eprintln!("error: no data folder to keep the SDK in: set XDG_DATA_HOME or HOME");
        return exit::INTERNAL;
    };
    let version = sdk_version();
    let sdk_dir = data.join("kiln").join("sdk").join(&version);
    if let Err(e) = write_sdk(&sdk_dir) {
        eprintln!("error: cannot write the SDK to {}: {e}", sdk_dir.display());
        return exit::INTERNAL;
    }
    if let Err(e) = scaffold(&target, &args.name, &sdk_dir, &version) {
        eprintln!("error: cannot write {}: {e}", target.display());
        return exit::INTERNAL;
    }
    out!(
        "created plugin `{}` in {} (kiln-sdk {version} from {})",
        args.name,
        target.display(),
        sdk_dir.display()
    );
    out!(
        "next: cd {} && cargo test   (see its README.md)",
        target.display()
    );
    exit::OK
}

/// A name is a crate's and a command's: lower-case letters, digits, `-` and `_`, starting with a
/// letter; not a shell builtin, not one of kiln's plugins.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a plugin name: lower-case letters, digits, `-` and `_`, starting with a letter (it names the crate and the command)"
        ));
    }
    if let Some(why) = kiln::plugins::name::refusal(name) {
        return Err(why);
    }
    Ok(())
}

/// The SDK's version, from its manifest.
fn sdk_version() -> String {
    manifest_version(SDK[0].1).unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// The `version = "…"` of a manifest's `[package]` (None when inherited from a workspace).
fn manifest_version(manifest: &str) -> Option<String> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "version").then(|| value.trim().trim_matches('"').to_string())
        })
}

/// Writes the SDK's files to `dir`, those absent or different only (each through a temp file and
/// a rename, so a scaffold running beside never sees half a file).
fn write_sdk(dir: &Path) -> std::io::Result<()> {
    for (path, contents) in SDK {
        let file = dir.join(path);
        if std::fs::read_to_string(&file).is_ok_and(|old| old == *contents) {
            continue;
        }
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, contents.as_bytes())?;
        std::fs::rename(&temp, &file)?;
    }
    Ok(())
}

/// The scaffold's plugin: args, context, log, an env change, a declared capability.
const LIB: &str = r#"//! The `{name}` plugin: greets whoever its arguments name, tells the next commands whom, and
//! records the source's git revision when git is there.
//!
//! A buildspec line `{name} world` runs it as a build step (kiln passes `["world"]`).

use kiln_sdk::{Command, Context, Outcome, Plugin, exec};

struct Greeter;

impl Plugin for Greeter {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let who = if args.is_empty() { "world".to_string() } else { args.join(" ") };
        // The `log` facade's lines go to the build log, named after the plugin; debug lines show
        // with --verbose.
        log::info!("hello, {who}, from the {} phase", context.phase);
        log::debug!("source directory: {}", context.source_dir);
        if who == "nobody" {
            return Outcome::failure(1, "nobody to greet");
        }
        // exec needs a capability: `git` is declared below (a registry plugin gets it only when the
        // user grants it at `kiln plugin add`).
        let mut command = Command::new(["git", "rev-parse", "HEAD"], &context);
        command.capture_stdout = true;
        let revision = match exec::run(&command) {
            Ok(exit) if exit.success() => Some(String::from_utf8_lossy(&exit.stdout).trim().to_string()),
            _ => None,
        };
        // Changes to the session's environment: GREETED is set for the next commands, and
        // GREETING_PENDING is unset; every other variable stays.
        let mut outcome = Outcome::success().set("GREETED", &who).unset("GREETING_PENDING");
        if let Some(revision) = revision {
            outcome = outcome.set("GREETED_AT", revision);
        }
        outcome
    }
}

kiln_sdk::plugin!(Greeter, capabilities: { exec: ["git"] });
"#;

/// The scaffold's test: the built component run through kiln.
const TEST: &str = r#"//! The plugin, built for wasm32-wasip2 and run through kiln (`KILN`, else `kiln` on PATH), as a
//! build step would run it.

use kiln_sdk::testing::Step;

#[test]
fn greets_and_sets_greeted() {
    let run = Step::new().arg("plugin authors").run();
    run.assert_success();
    assert!(run.log_has("hello, plugin authors, from the BUILD phase"), "{:?}", run.log);
    assert_eq!(run.var("GREETED"), Some(Some("plugin authors")));
}

#[test]
fn nobody_fails_the_step() {
    let run = Step::new().arg("nobody").run();
    assert_eq!(run.status, 1);
    assert_eq!(run.message.as_deref(), Some("nobody to greet"));
}
"#;

/// The scaffold's test of exec, with a scripted answer (SDK 0.1.1).
const TEST_EXEC: &str = r#"
#[test]
fn records_the_revision_git_gives() {
    let run = Step::new()
        .exec_answer(["git", "rev-parse", "HEAD"], "abc123\n", 0)
        .run();
    run.assert_success();
    assert_eq!(run.var("GREETED_AT"), Some(Some("abc123")));
    assert_eq!(run.var("GREETING_PENDING"), Some(None));
}
"#;

const README: &str = r#"# {name}

A [kiln](https://github.com/kiln-build/kiln) step plugin: a WebAssembly component (WASI preview 2)
that kiln runs as one step of a build, in its sandbox. The SDK's README (kiln-sdk, in
`{sdk}`) says what kiln calls, what a plugin may touch, and how capabilities are granted.

## Build

    rustup target add wasm32-wasip2     # once
    cargo build --release --target wasm32-wasip2

The component is `target/wasm32-wasip2/release/{lib}.wasm`.

## Try it

    kiln plugin run target/wasm32-wasip2/release/{lib}.wasm -- world
    kiln plugin run target/wasm32-wasip2/release/{lib}.wasm --verbose -e GREETING_PENDING=1 --json -- world

`kiln plugin run` runs one step as a build would (a build's basic environment, host programs
allowed; `--no-exec` denies them) and prints the outcome: status, message, env changes, cwd.

## Test

    cargo test

The tests (tests/plugin.rs) build the component once and run it through kiln in a temp folder
(`KILN=/path/to/kiln` to pick a kiln other than the one on PATH), with scripted answers for its
exec calls.

## Use it in a build

    kiln build --plugin {name}=target/wasm32-wasip2/release/{lib}.wasm

and a buildspec line `{name} world`.

## Publish and add

    kiln plugin push target/wasm32-wasip2/release/{lib}.wasm oci://registry.example.com/you/{name}:0.1.0
    kiln plugin add {name} oci://registry.example.com/you/{name}:0.1.0    # in the project using it

`kiln plugin add` shows the capabilities the plugin declares and records what you grant in
kiln.lock.
"#;

const GITIGNORE: &str = "/target\n";

/// Writes the crate.
fn scaffold(dir: &Path, name: &str, sdk_dir: &Path, version: &str) -> std::io::Result<()> {
    let lib = name.replace('-', "_");
    let sdk = sdk_dir.to_string_lossy();
    let fill = |text: &str| {
        text.replace("{name}", name)
            .replace("{lib}", &lib)
            .replace("{sdk}", &sdk)
    };
    let dependency = format!("{{ version = \"{version}\", path = \"{}\" }}", escape(&sdk));
    let testing = format!(
        "{{ version = \"{version}\", path = \"{}\", features = [\"testing\"] }}",
        escape(&sdk)
    );
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
description = "A kiln step plugin"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
kiln-sdk = {dependency}
log = "0.4"

[dev-dependencies]
kiln-sdk = {testing}

[profile.release]
opt-level = "s"
lto = true
strip = true

# A crate of its own, also when created inside another workspace.
[workspace]
"#
    );
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), fill(LIB))?;
    std::fs::write(
        dir.join("tests/plugin.rs"),
        format!("{}{TEST_EXEC}", fill(TEST)),
    )?;
    std::fs::write(dir.join("README.md"), fill(README))?;
    std::fs::write(dir.join(".gitignore"), GITIGNORE)?;
    Ok(())
}

/// The Python plugin: the same greeter as the Rust scaffold's, on componentize-py's bindings.
const APP_PY: &str = r#""""The `{name}` plugin: greets whoever its arguments name, tells the next commands whom, and
records the source's git revision when git is there.

A buildspec line `{name} world` runs it as a build step (kiln passes ["world"]). build.sh makes it a
WebAssembly component with componentize-py, against the WIT in wit/ (world `plugin`).
"""

from wit_world import exports
from wit_world.imports import exec, log, types


class Entry(exports.Entry):
    def run(self, args: list[str], context: types.Context) -> types.StepOutcome:
        who = " ".join(args) or "world"
        # Lines for the build log, named after the plugin; debug lines show with --verbose.
        log.write(log.Level.INFO, f"hello, {who}, from the {context.phase} phase")
        log.write(log.Level.DEBUG, f"source directory: {context.source_dir}")
        if who == "nobody":
            return types.StepOutcome(status=1, message="nobody to greet", env=[], cwd=None)
        # Changes to the session's environment: GREETED is set for the next commands, and
        # GREETING_PENDING is unset; every other variable stays.
        changes = [
            types.EnvChange_Set(("GREETED", who)),
            types.EnvChange_Unset("GREETING_PENDING"),
        ]
        # exec needs a capability: build.sh declares `git` (a registry plugin gets it only when the
        # user grants it at `kiln plugin add`). A refusal comes back as an exception.
        command = exec.Command(
            argv=["git", "rev-parse", "HEAD"],
            env=context.env,
            cwd=context.cwd,
            stdin=None,
            capture_stdout=True,
        )
        try:
            done = exec.run(command)
            if done.code == 0:
                changes.append(types.EnvChange_Set(("GREETED_AT", done.stdout.decode().strip())))
        except Exception as refused:
            log.write(log.Level.DEBUG, f"no revision: {refused}")
        return types.StepOutcome(status=0, message=None, env=changes, cwd=None)
"#;

/// Builds the Python plugin and declares what it asks for.
const BUILD_SH: &str = r#"#!/bin/sh
# Builds {name}.wasm: componentize-py makes the component from app.py and the WIT in wit/, then
# `kiln plugin declare` writes into it what kiln-sdk's plugin! writes for a Rust plugin: the
# interface version, the capabilities it asks for (what a registry user grants), its metadata.
set -eu
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w plugin componentize app -o {name}.wasm
"${KILN:-kiln}" plugin declare {name}.wasm --exec git \
    --description "Greets, and records the source's git revision" --plugin-version 0.1.0
"#;

/// The Python plugin's test: the built component run through `kiln plugin run --json`.
const TEST_PY: &str = r#""""The plugin, built by build.sh, run through kiln (KILN, else kiln on PATH) as a build step
would run it, in a temp folder: python3 -m unittest."""

import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMPONENT = os.path.join(HERE, "{name}.wasm")
KILN = os.environ.get("KILN", "kiln")


def step(*args, answers=None, env=()):
    """Runs one step; `answers` script the plugin's exec calls ([{argv, stdout, code}])."""
    with tempfile.TemporaryDirectory() as folder:
        command = [KILN, "plugin", "run", COMPONENT, "--json", "--dir", folder]
        for variable in env:
            command += ["-e", variable]
        if answers is not None:
            path = os.path.join(folder, ".answers.json")
            with open(path, "w") as f:
                json.dump(answers, f)
            command += ["--exec-answers", path]
        done = subprocess.run(command + ["--"] + list(args), capture_output=True, text=True)
    if not done.stdout.strip():
        raise AssertionError(f"kiln printed no outcome: {done.stderr}")
    return json.loads(done.stdout)


def changes(run):
    """The step's env changes: name -> value, None for an unset."""
    return {
        change["set"][0] if "set" in change else change["unset"]:
            change["set"][1] if "set" in change else None
        for change in run["env"]
    }


class Plugin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        subprocess.run([os.path.join(HERE, "build.sh")], check=True)

    def test_greets_and_sets_greeted(self):
        run = step("plugin", "authors")
        self.assertEqual(run["status"], 0, run)
        lines = [entry["line"] for entry in run["log"]]
        self.assertIn("hello, plugin authors, from the BUILD phase", lines)
        self.assertEqual(changes(run)["GREETED"], "plugin authors")

    def test_nobody_fails_the_step(self):
        run = step("nobody")
        self.assertEqual(run["status"], 1)
        self.assertEqual(run["message"], "nobody to greet")

    def test_records_the_revision_git_gives(self):
        run = step(answers=[{"argv": ["git", "rev-parse", "HEAD"], "stdout": "abc123\n"}])
        self.assertEqual(changes(run)["GREETED_AT"], "abc123")
        self.assertIsNone(changes(run)["GREETING_PENDING"])


if __name__ == "__main__":
    unittest.main()
"#;

const README_PY: &str = r#"# {name}

A [kiln](https://github.com/kiln-build/kiln) step plugin written in Python: app.py, made a
WebAssembly component (WASI preview 2) by [componentize-py](https://github.com/bytecodealliance/componentize-py)
against the WIT in `wit/` (the package `kiln:plugin`, world `plugin`), which kiln runs as one step of a
build, in its sandbox. The component carries CPython: expect about 18 MB, and a few seconds for kiln to
compile it the first time (once; then it is loaded compiled).

## Build

    python3 -m venv .venv && .venv/bin/pip install componentize-py     # once
    COMPONENTIZE_PY=.venv/bin/componentize-py ./build.sh

build.sh writes `{name}.wasm`, then runs `kiln plugin declare` to write what it asks for (`--exec git`)
into it: kiln-sdk does that for Rust plugins; componentize-py does not.
`.venv/bin/componentize-py -d wit -w plugin bindings .` writes the Python bindings (wit_world) for an editor.

## Try it

    kiln plugin run {name}.wasm -- world
    kiln plugin run {name}.wasm --verbose -e GREETING_PENDING=1 --json -- world

## Test

    COMPONENTIZE_PY=.venv/bin/componentize-py python3 -m unittest

test_plugin.py builds the component once and runs it through kiln (`KILN=/path/to/kiln` to pick
another kiln), with scripted answers for its exec calls (`kiln plugin run --exec-answers`).

## Use it in a build, publish it, add it

    kiln build --plugin {name}={name}.wasm
    kiln plugin push {name}.wasm oci://registry.example.com/you/{name}:0.1.0
    kiln plugin add {name} oci://registry.example.com/you/{name}:0.1.0    # in the project using it
"#;

const GITIGNORE_PY: &str = "/{name}.wasm
/.venv
__pycache__/
/wit_world
/componentize_py_*
";

/// Writes the Python plugin: app.py, the WIT it is built against, build.sh, its test, a README.
fn scaffold_python(dir: &Path, name: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fill = |text: &str| text.replace("{name}", name);
    let wit = SDK
        .iter()
        .find(|(path, _)| *path == "wit/plugin.wit")
        .map_or("", |(_, text)| text);
    std::fs::create_dir_all(dir.join("wit"))?;
    std::fs::write(dir.join("wit/plugin.wit"), wit)?;
    std::fs::write(dir.join("app.py"), fill(APP_PY))?;
    std::fs::write(dir.join("test_plugin.py"), fill(TEST_PY))?;
    std::fs::write(dir.join("README.md"), fill(README_PY))?;
    std::fs::write(dir.join(".gitignore"), fill(GITIGNORE_PY))?;
    let build = dir.join("build.sh");
    std::fs::write(&build, fill(BUILD_SH))?;
    std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755))
}

/// A path inside a TOML basic string.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_crates_builtins_or_kilns_are_refused() {
        assert!(check_name("hello").is_ok());
        assert!(check_name("git-rev_2").is_ok());
        for bad in ["", "Hello", "1x", "a b", "a/b", "-x", "héllo"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("cd").unwrap_err().contains("shell builtin"));
        assert!(check_name("shell").unwrap_err().contains("kiln's own"));
    }

    #[test]
    fn every_file_of_the_sdk_is_embedded() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        for sub in ["src", "wit"] {
            for entry in std::fs::read_dir(sdk.join(sub)).unwrap() {
                let path = format!("{sub}/{}", entry.unwrap().file_name().to_string_lossy());
                assert!(
                    SDK.iter().any(|(p, _)| *p == path),
                    "{path} is not embedded"
                );
            }
        }
    }
}
