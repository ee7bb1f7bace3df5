//! `runtime-versions` (install phase): the toolchain a buildspec asks for, found in the version
//! managers of the host, as CodeBuild's images select among the versions they hold.
//!
//! CodeBuild names a runtime (`python`, `nodejs`, `java`...) and a version in one of three forms:
//! a specific one (`3.12`, `22`, `corretto17`), a major with its latest minor (`3.x`,
//! `corretto17.x`), or `latest`. kiln looks for installed versions in the folders where pyenv, nvm,
//! n, SDKMAN, mise, asdf, rbenv, goenv and rustup keep them (below the `HOME` of kiln's process, or
//! where their own variables say: `PYENV_ROOT`, `NVM_DIR`...), takes the highest version that
//! matches, and the build puts its `bin` folder first on `PATH`. kiln installs nothing: a version
//! the host lacks fails the install phase, as an unknown version does on CodeBuild, with what
//! the host has instead. Java is matched by its major version whatever its vendor (`corretto17`
//! takes an OpenJDK 17 too): what a build needs of a JDK is its language level.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One runtime the build gets: the version chosen and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// The runtime's name as the buildspec writes it (`python`).
    pub runtime: String,
    /// The version as the buildspec writes it (`3.12`).
    pub asked: String,
    /// The installed version's folder (`~/.pyenv/versions/3.12.1`), or the program on kiln's `PATH`
    /// that matched (`/usr/bin/node`).
    pub root: PathBuf,
    /// The folder that goes first on the build's `PATH` (`root/bin`, or `root` when it has none);
    /// `None` for the program on `PATH`, which stays as it is (putting `/usr/bin` first would hide
    /// other managers' programs, such as pyenv's `pip`, behind the system's).
    pub bin: Option<PathBuf>,
}

/// A runtime the host has no matching version of: what was asked, what was found and where, and
/// what the host's `PATH` holds instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    pub runtime: String,
    pub asked: String,
    /// Installed versions of this runtime: (version, folder).
    pub found: Vec<(String, PathBuf)>,
    /// The folders searched (whether or not they exist).
    pub searched: Vec<PathBuf>,
    /// What the runtime's program on kiln's `PATH` says of its version, if there is one.
    pub on_path: Option<String>,
}

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Unknown runtime version named '{}' of {}.",
            self.asked, self.runtime
        )?;
        if self.searched.is_empty() {
            write!(f, " kiln knows no version manager for {}", self.runtime)?;
        } else if self.found.is_empty() {
            let searched: Vec<String> = self
                .searched
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            write!(f, " No version installed in {}", searched.join(", "))?;
        } else {
            let found: Vec<String> = self
                .found
                .iter()
                .map(|(v, p)| format!("{v} ({})", p.display()))
                .collect();
            write!(f, " This host has: {}", found.join(", "))?;
        }
        match &self.on_path {
            Some(version) => write!(f, "; on PATH: {version}"),
            None => write!(f, "; none on PATH"),
        }
    }
}

/// A runtime CodeBuild names, where version managers keep its versions, and the program that
/// says which version `PATH` has.
struct Runtime {
    /// CodeBuild's name (`nodejs`).
    name: &'static str,
    /// Its own version managers' folders: the variable that moves a manager's root, the versions'
    /// folder below that root, and the folder used when the variable is not set (below `HOME`, or
    /// absolute).
    own: &'static [(&'static str, &'static str, &'static str)],
    /// The tool's name for mise and for asdf (`node` and `nodejs`).
    mise: &'static str,
    asdf: &'static str,
    /// The program and its argument that print the version on `PATH`.
    program: [&'static str; 2],
}

const RUNTIMES: &[Runtime] = &[
    Runtime {
        name: "python",
        own: &[("PYENV_ROOT", "versions", ".pyenv/versions")],
        mise: "python",
        asdf: "python",
        program: ["python3", "--version"],
    },
    Runtime {
        name: "nodejs",
        own: &[
            ("NVM_DIR", "versions/node", ".nvm/versions/node"),
            ("N_PREFIX", "n/versions/node", "/usr/local/n/versions/node"),
        ],
        mise: "node",
        asdf: "nodejs",
        program: ["node", "--version"],
    },
    Runtime {
        name: "java",
        own: &[("SDKMAN_DIR", "candidates/java", ".sdkman/candidates/java")],
        mise: "java",
        asdf: "java",
        program: ["java", "-version"],
    },
    Runtime {
        name: "golang",
        own: &[("GOENV_ROOT", "versions", ".goenv/versions")],
        mise: "go",
        asdf: "golang",
        program: ["go", "version"],
    },
    Runtime {
        name: "ruby",
        own: &[("RBENV_ROOT", "versions", ".rbenv/versions")],
        mise: "ruby",
        asdf: "ruby",
        program: ["ruby", "--version"],
    },
    Runtime {
        name: "php",
        own: &[],
        mise: "php",
        asdf: "php",
        program: ["php", "--version"],
    },
    Runtime {
        name: "dotnet",
        own: &[],
        mise: "dotnet",
        asdf: "dotnet-core",
        program: ["dotnet", "--version"],
    },
    // Not a CodeBuild runtime: kiln's own, for rustup's toolchains.
    Runtime {
        name: "rust",
        own: &[("RUSTUP_HOME", "toolchains", ".rustup/toolchains")],
        mise: "rust",
        asdf: "rust",
        program: ["rustc", "--version"],
    },
];

/// The folders to search for `runtime`: each manager's versions folder, from its variable in
/// `var` or below `home`.
fn roots(
    runtime: &Runtime,
    home: Option<&Path>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    let mise = (
        "MISE_DATA_DIR",
        format!("installs/{}", runtime.mise),
        format!(".local/share/mise/installs/{}", runtime.mise),
    );
    let asdf = (
        "ASDF_DATA_DIR",
        format!("installs/{}", runtime.asdf),
        format!(".asdf/installs/{}", runtime.asdf),
    );
    runtime
        .own
        .iter()
        .map(|(name, below, default)| (*name, below.to_string(), default.to_string()))
        .chain([mise, asdf])
        .filter_map(|(name, below, default)| {
            if let Some(root) = var(name).filter(|v| Path::new(v).is_absolute()) {
                return Some(Path::new(&root).join(below));
            }
            let default = Path::new(&default);
            if default.is_absolute() {
                Some(default.to_path_buf())
            } else {
                home.map(|h| h.join(default))
            }
        })
        .collect()
}

/// The numbers of an installed version's folder name: `3.12.1` and `v22.3.0` as themselves,
/// a vendor before a dash (`corretto-17.0.9`, `openjdk-21`) and a suffix (`17.0.9-amzn`,
/// `1.80.0-x86_64-unknown-linux-gnu`) left out; `None` for what is no plain version
/// (`pypy3.10-7.3`, `stable-x86_64-…`, `system`).
fn installed_numbers(name: &str) -> Option<Vec<u64>> {
    let name = name.strip_prefix('v').unwrap_or(name);
    let name = match name.split_once('-') {
        Some((vendor, rest)) if vendor.chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => name,
    };
    numbers(name)
}

/// The leading dotted numbers of `text` (`3.12.1rc1` gives 3, 12, 1); `None` unless it starts
/// with a digit.
fn numbers(text: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if digits.len() != part.len() {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What the buildspec asks for: `None` for `latest`, else the leading version numbers an
/// installed version must have (`3.12` and `3.12.x` give 3, 12; `3.x` gives 3; `corretto17` 17).
fn wanted(runtime: &str, asked: &str) -> Result<Option<Vec<u64>>, ()> {
    let asked = asked.trim();
    if asked == "latest" {
        return Ok(None);
    }
    let asked = asked.strip_suffix(".x").unwrap_or(asked);
    let asked = if runtime == "java" {
        asked
            .strip_prefix("corretto")
            .or_else(|| asked.strip_prefix("openjdk"))
            .unwrap_or(asked)
    } else {
        asked
    };
    match numbers(asked) {
        Some(n)
            if n.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(".")
                == asked =>
        {
            Ok(Some(n))
        }
        _ => Err(()),
    }
}

/// Java 8 is `1.8` in some folder names.
fn java_major(runtime: &str, mut numbers: Vec<u64>) -> Vec<u64> {
    if runtime == "java" && numbers.first() == Some(&1) && numbers.len() > 1 {
        numbers.remove(0);
    }
    numbers
}

/// Selects every runtime of `asked` (the install phase's `runtime-versions`), searching below
/// `home` and where `var` (kiln's environment) moves a manager; the first runtime without a
/// matching version is the error.
pub fn select(
    asked: &[(String, String)],
    home: Option<&Path>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Toolchain>, Unmatched> {
    asked
        .iter()
        .map(|(runtime, version)| select_one(runtime, version, home, var))
        .collect()
}

fn select_one(
    runtime: &str,
    asked: &str,
    home: Option<&Path>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Toolchain, Unmatched> {
    let known = RUNTIMES.iter().find(|r| r.name == runtime);
    let searched = known.map(|r| roots(r, home, var)).unwrap_or_default();
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = Vec::new();
    for root in &searched {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = installed_numbers(&name) {
                found.push((java_major(runtime, n), name, path));
            }
        }
    }
    found.sort();
    let want = wanted(runtime, asked);
    let best = match &want {
        Ok(None) => found.last(),
        Ok(Some(prefix)) => found.iter().rev().find(|(n, _, _)| n.starts_with(prefix)),
        Err(()) => None,
    };
    // No version manager holds one: the program on kiln's PATH does when its version matches
    // (a host with one system Node and `nodejs: latest`, or `22` when that Node is a 22).
    let program = known
        .filter(|_| best.is_none())
        .and_then(|r| on_path_found(r.program, var));
    if let Some((text, path)) = &program
        && let (Ok(want), Some(have)) = (&want, version_in(text))
        && want
            .as_ref()
            .is_none_or(|prefix| java_major(runtime, have).starts_with(prefix))
    {
        return Ok(Toolchain {
            runtime: runtime.to_string(),
            asked: asked.to_string(),
            root: path.clone(),
            bin: None,
        });
    }
    match best {
        Some((_, _, root)) => {
            let bin = root.join("bin");
            Ok(Toolchain {
                runtime: runtime.to_string(),
                asked: asked.to_string(),
                bin: Some(if bin.is_dir() { bin } else { root.clone() }),
                root: root.clone(),
            })
        }
        None => Err(Unmatched {
            runtime: runtime.to_string(),
            asked: asked.to_string(),
            found: found.into_iter().map(|(_, v, p)| (v, p)).collect(),
            searched,
            on_path: program.map(|(text, path)| format!("{text} ({})", path.display())),
        }),
    }
}

/// The first version-like word of what a program says of its version: `v22.3.0`, `Python 3.11.2`,
/// `openjdk version "17.0.9" 2023-10-17`, `rustc 1.80.0 (…)`.
fn version_in(text: &str) -> Option<Vec<u64>> {
    text.split_whitespace()
        .map(|word| word.trim_matches('"'))
        .find_map(|word| numbers(word.strip_prefix('v').unwrap_or(word)))
}

/// What `program --version` on kiln's `PATH` prints first (or `java -version`, which prints on
/// stderr), given two seconds, and where the program is: `Python 3.11.2`, `/usr/bin/python3`.
fn on_path_found(
    program: [&str; 2],
    var: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, PathBuf)> {
    let [name, arg] = program;
    let path = var("PATH")?;
    // Absolute folders only: `.` in PATH must not make kiln run a program of the project.
    let found = path
        .split(':')
        .filter(|d| Path::new(d).is_absolute())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())?;
    let mut child = std::process::Command::new(&found)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some((format!("{name}, which did not say its version"), found));
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    let text = [output.stdout, output.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .find(|t| !t.trim().is_empty())
        .unwrap_or_default();
    let first = text.lines().next().unwrap_or("").trim();
    Some((first.to_string(), found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dirs: &[&str]) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("temp dir");
        for d in dirs {
            std::fs::create_dir_all(home.path().join(d).join("bin")).expect("dir");
        }
        home
    }

    fn pick(home: &Path, runtime: &str, version: &str) -> Result<PathBuf, Unmatched> {
        let asked = vec![(runtime.to_string(), version.to_string())];
        select(&asked, Some(home), &|_| None).map(|t| t[0].root.clone())
    }

    #[test]
    fn the_highest_matching_patch_is_chosen() {
        let home = tree(&[
            ".pyenv/versions/3.11.9",
            ".pyenv/versions/3.12.1",
            ".pyenv/versions/3.12.10",
            ".pyenv/versions/pypy3.12-7.3",
            ".local/share/mise/installs/python/3.12.3",
        ]);
        let h = home.path();
        assert_eq!(
            pick(h, "python", "3.12").ok(),
            Some(h.join(".pyenv/versions/3.12.10"))
        );
        assert_eq!(
            pick(h, "python", "3.x").ok(),
            Some(h.join(".pyenv/versions/3.12.10"))
        );
        assert_eq!(
            pick(h, "python", "latest").ok(),
            Some(h.join(".pyenv/versions/3.12.10"))
        );
        assert_eq!(
            pick(h, "python", "3.11").ok(),
            Some(h.join(".pyenv/versions/3.11.9"))
        );
        assert!(pick(h, "python", "3.1").is_err());
    }

    #[test]
    fn node_java_and_rust_folder_names_are_read() {
        let home = tree(&[
            ".nvm/versions/node/v20.11.0",
            ".nvm/versions/node/v22.3.0",
            ".sdkman/candidates/java/17.0.9-amzn",
            ".sdkman/candidates/java/21.0.1-tem",
            ".asdf/installs/java/corretto-8.392.08.1",
            ".rustup/toolchains/1.80.0-x86_64-unknown-linux-gnu",
            ".rustup/toolchains/stable-x86_64-unknown-linux-gnu",
        ]);
        let h = home.path();
        assert_eq!(
            pick(h, "nodejs", "22").ok(),
            Some(h.join(".nvm/versions/node/v22.3.0"))
        );
        assert_eq!(
            pick(h, "nodejs", "20.x").ok(),
            Some(h.join(".nvm/versions/node/v20.11.0"))
        );
        let java17 = Some(h.join(".sdkman/candidates/java/17.0.9-amzn"));
        assert_eq!(pick(h, "java", "corretto17").ok(), java17);
        assert_eq!(pick(h, "java", "corretto17.x").ok(), java17);
        assert_eq!(
            pick(h, "java", "corretto8").ok(),
            Some(h.join(".asdf/installs/java/corretto-8.392.08.1"))
        );
        assert_eq!(
            pick(h, "rust", "1.80").ok(),
            Some(h.join(".rustup/toolchains/1.80.0-x86_64-unknown-linux-gnu"))
        );
    }

    #[test]
    fn a_version_is_read_from_what_a_program_says() {
        assert_eq!(version_in("v22.3.0"), Some(vec![22, 3, 0]));
        assert_eq!(version_in("Python 3.11.2"), Some(vec![3, 11, 2]));
        assert_eq!(
            version_in("openjdk version \"17.0.9\" 2023-10-17"),
            Some(vec![17, 0, 9])
        );
        assert_eq!(version_in("node, which did not say its version"), None);
    }

    #[test]
    fn a_missing_version_names_what_was_found() {
        let home = tree(&[".pyenv/versions/3.12.1"]);
        let Err(e) = pick(home.path(), "python", "3.99") else {
            panic!("3.99 is not installed");
        };
        let text = e.to_string();
        assert!(
            text.contains("Unknown runtime version named '3.99' of python"),
            "{text}"
        );
        assert!(text.contains("3.12.1 ("), "{text}");
        let Err(e) = pick(home.path(), "android", "29") else {
            panic!("no manager for android");
        };
        assert!(
            e.to_string().contains("no version manager for android"),
            "{e}"
        );
        assert!(pick(home.path(), "python", "three").is_err());
    }

    #[test]
    fn a_manager_variable_moves_its_root() {
        let home = tree(&["elsewhere/versions/3.12.2"]);
        let root = home.path().join("elsewhere").to_string_lossy().into_owned();
        let asked = vec![("python".to_string(), "3.12".to_string())];
        let got = select(&asked, None, &|name| {
            (name == "PYENV_ROOT").then(|| root.clone())
        });
        assert_eq!(
            got.ok().and_then(|t| t[0].bin.clone()),
            Some(home.path().join("elsewhere/versions/3.12.2/bin"))
        );
    }
}
