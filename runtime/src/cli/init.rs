//! `kiln init`: a starter buildspec.yml (and, with --deploy, appspec.yml and its start script) for
//! the kind of project the folder holds.

use std::path::{Path, PathBuf};

use clap::Args;

use super::exit;
use super::options::existing_dir;

/// `kiln init`.
#[derive(Args)]
pub struct InitArgs {
    /// The project folder [default: .].
    #[arg(value_parser = existing_dir)]
    dir: Option<PathBuf>,
    /// Also write appspec.yml and scripts/start.sh, to deploy the build's artifact with kiln deploy.
    #[arg(long)]
    deploy: bool,
    /// Replace files that exist already.
    #[arg(long)]
    force: bool,
}

/// A kind of project, found by the file that marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cargo,
    Npm,
    Python,
    Go,
    Maven,
    Gradle,
    Other,
}

impl Kind {
    /// The kind of the project in `dir`: the first marker found, in this order.
    fn of(dir: &Path) -> Kind {
        let has = |name: &str| dir.join(name).is_file();
        if has("Cargo.toml") {
            Kind::Cargo
        } else if has("package.json") {
            Kind::Npm
        } else if has("pyproject.toml") || has("requirements.txt") || has("setup.py") {
            Kind::Python
        } else if has("go.mod") {
            Kind::Go
        } else if has("pom.xml") {
            Kind::Maven
        } else if has("build.gradle") || has("build.gradle.kts") {
            Kind::Gradle
        } else {
            Kind::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Cargo => "a Cargo project",
            Kind::Npm => "an npm project",
            Kind::Python => "a Python project",
            Kind::Go => "a Go module",
            Kind::Maven => "a Maven project",
            Kind::Gradle => "a Gradle project",
            Kind::Other => "no known kind of project",
        }
    }
}

/// The buildspec for a project of `kind` in `dir`.
fn buildspec(kind: Kind, dir: &Path) -> String {
    let head = "version: 0.2\n\nphases:\n";
    let body = match kind {
        Kind::Cargo => {
            let bin = cargo_package_name(dir).unwrap_or_else(|| "app".to_string());
            format!(
                "  build:\n    commands:\n      - cargo build --release --locked\n      - cargo test --release --locked\n\n\
                 artifacts:\n  files:\n    - target/release/{bin}\n  discard-paths: yes\n\n\
                 cache:\n  paths:\n    - /root/.cargo/registry/**/*\n    - target/**/*\n"
            )
        }
        Kind::Npm => {
            // `npm ci` installs exactly the lock file; without one, `npm install` makes it.
            let install = if dir.join("package-lock.json").is_file() {
                "npm ci"
            } else {
                "npm install"
            };
            format!(
                "  install:\n    commands:\n      - {install}\n  build:\n    commands:\n      - npm run build --if-present\n      - npm test --if-present\n\n\
                 artifacts:\n  files:\n    - '**/*'\n  base-directory: dist\n\n\
                 cache:\n  paths:\n    - /root/.npm/**/*\n"
            )
        }
        Kind::Python => {
            let install = if dir.join("requirements.txt").is_file() {
                "pip install -r requirements.txt"
            } else {
                "pip install ."
            };
            // pytest where the project has tests; otherwise each module is at least compiled.
            let test = if dir.join("tests").is_dir() || dir.join("test").is_dir() {
                "python3 -m pytest"
            } else {
                "python3 -m compileall -q ."
            };
            format!(
                "  install:\n    commands:\n      - {install}\n  build:\n    commands:\n      - {test}\n\n\
                 artifacts:\n  files:\n    - '**/*'\n  exclude-paths:\n    - '**/__pycache__/**/*'\n\n\
                 cache:\n  paths:\n    - /root/.cache/pip/**/*\n"
            )
        }
        Kind::Go => "  build:\n    commands:\n      - go build -o bin/ ./...\n      - go test ./...\n\n\
                     artifacts:\n  files:\n    - bin/*\n  discard-paths: yes\n\n\
                     cache:\n  paths:\n    - /root/go/pkg/mod/**/*\n    - /root/.cache/go-build/**/*\n"
            .to_string(),
        Kind::Maven => "  build:\n    commands:\n      - mvn -B package\n\n\
                        artifacts:\n  files:\n    - target/*.jar\n  discard-paths: yes\n\n\
                        cache:\n  paths:\n    - /root/.m2/**/*\n"
            .to_string(),
        Kind::Gradle => {
            let gradle = if dir.join("gradlew").is_file() {
                "./gradlew"
            } else {
                "gradle"
            };
            format!(
                "  build:\n    commands:\n      - {gradle} build --no-daemon\n\n\
                 artifacts:\n  files:\n    - build/libs/*.jar\n  discard-paths: yes\n\n\
                 cache:\n  paths:\n    - /root/.gradle/caches/**/*\n"
            )
        }
        Kind::Other => "  build:\n    commands:\n      - echo \"Build started on $(date)\"\n      # - make\n\n\
                        artifacts:\n  files:\n    - '**/*'\n"
            .to_string(),
    };
    format!("{head}{body}")
}

/// `name` of the `[package]` table of `dir/Cargo.toml`, read line by line (the binary's name).
fn cargo_package_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .trim_matches('"');
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            return plain.then(|| value.to_string());
        }
    }
    None
}

const APPSPEC: &str = "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /opt/app\nhooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n      timeout: 60\n";

const START: &str = "#!/bin/sh\n# Runs after the revision's files are in /opt/app (kiln deploy, ApplicationStart).\nset -e\necho \"started $(date)\"\n";

/// Writes the files, refusing to replace any that exists unless --force; the exit code.
pub fn run(args: &InitArgs) -> u8 {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let kind = Kind::of(&dir);
    let mut files = vec![(dir.join("buildspec.yml"), buildspec(kind, &dir), 0o644)];
    if args.deploy {
        files.push((dir.join("appspec.yml"), APPSPEC.to_string(), 0o644));
        files.push((dir.join("scripts/start.sh"), START.to_string(), 0o755));
    }
    if !args.force
        && let Some((path, _, _)) = files.iter().find(|(p, _, _)| p.exists())
    {
        eprintln!(
            "error: {} exists already; kiln init leaves it as it is (--force replaces it)",
            path.display()
        );
        return exit::BAD_INPUT;
    }
    for (path, text, mode) in &files {
        if let Err(e) = write(path, text, *mode) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return exit::INTERNAL;
        }
        out!("wrote {}", path.display());
    }
    out!(
        "{} found ({}): check the commands, then run `kiln build`",
        kind.name(),
        dir.display()
    );
    exit::OK
}

fn write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_starter_buildspec_is_valid() {
        for kind in [
            Kind::Cargo,
            Kind::Npm,
            Kind::Python,
            Kind::Go,
            Kind::Maven,
            Kind::Gradle,
            Kind::Other,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("buildspec.yml");
            std::fs::write(&path, buildspec(kind, dir.path())).unwrap();
            let parsed =
                kiln::spec::buildspec::load(&path).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(
                parsed
                    .buildspec
                    .phases
                    .iter()
                    .any(|p| p.name == kiln::spec::buildspec::PhaseName::Build),
                "{kind:?} has no build phase"
            );
            assert!(
                parsed.warnings.is_empty(),
                "{kind:?}: {:?}",
                parsed.warnings
            );
        }
    }

    #[test]
    fn the_binary_is_named_after_the_cargo_package() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nname = \"no\"\n\n[package]\nname = \"hello-web\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        assert_eq!(cargo_package_name(dir.path()).as_deref(), Some("hello-web"));
        assert!(buildspec(Kind::Cargo, dir.path()).contains("target/release/hello-web"));
    }
}
