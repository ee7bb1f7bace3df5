//! Which project a build is of: what its build numbers, records and logs, and its buildspec
//! `cache:` entries belong to.
//!
//! A project is a buildspec of a repository: its id is derived from the canonical path of the
//! repository's root (the folder built when it is not in a git work tree) and the buildspec's path
//! in it, as a readable name and a short hash (`app-3f9c2a1b`, `monorepo-services-api-0b1c2d3e`).
//! Two checkouts both called `app` are two projects; building a repository's folder, or its root
//! with `-b folder/buildspec.yml`, is one. `--project NAME` names a project instead, and projects
//! built with the same name share everything a project has.

use std::path::{Component, Path};

/// The id of the project whose buildspec is `buildspec` in the repository (or folder) `root`, both
/// canonical.
pub fn id(root: &Path, buildspec: &Path) -> String {
    let inside = buildspec.strip_prefix(root).unwrap_or(buildspec);
    let mut hasher = blake3::Hasher::new();
    hasher.update(root.as_os_str().as_encoded_bytes());
    hasher.update(b"\0");
    hasher.update(inside.as_os_str().as_encoded_bytes());
    let hash = hasher.finalize().to_hex();
    // The root's name, then the folders down to the buildspec, when it is in the root.
    let mut words = vec![name(root)];
    if inside.is_relative()
        && let Some(folder) = inside.parent()
    {
        words.extend(folder.components().filter_map(|c| match c {
            Component::Normal(n) => Some(name(Path::new(n))),
            _ => None,
        }));
    }
    let mut readable = words.join("-");
    if readable.len() > 64 {
        readable.truncate(64);
        readable.truncate(readable.trim_end_matches('-').len());
    }
    format!("{readable}-{}", &hash[..8])
}

/// A folder's name as part of a project id: letters, digits, `-` and `_`; `project` when none is
/// left.
fn name(path: &Path) -> String {
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // A leading `-` would read as a flag wherever the id is passed on (`.hidden` gives `hidden`).
    let name = name.trim_start_matches('-');
    if name.is_empty() {
        "project".into()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_folders_of_one_name_are_two_projects() {
        let a = id(
            Path::new("/home/a/app"),
            Path::new("/home/a/app/buildspec.yml"),
        );
        let b = id(
            Path::new("/home/b/app"),
            Path::new("/home/b/app/buildspec.yml"),
        );
        assert!(a.starts_with("app-") && b.starts_with("app-"), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a.len(), "app-".len() + 8);
    }

    #[test]
    fn each_buildspec_of_a_repository_is_a_project_named_by_its_folder() {
        let root = Path::new("/src/mono");
        let api = id(root, Path::new("/src/mono/services/api/buildspec.yml"));
        let web = id(root, Path::new("/src/mono/web/buildspec.yml"));
        assert!(api.starts_with("mono-services-api-"), "{api}");
        assert!(web.starts_with("mono-web-"), "{web}");
        assert_eq!(
            api,
            id(root, Path::new("/src/mono/services/api/buildspec.yml"))
        );
    }

    #[test]
    fn an_id_is_a_plain_name() {
        let odd = id(Path::new("/x/.my app!"), Path::new("/elsewhere/b.yml"));
        assert!(odd.starts_with("my-app--"), "{odd}");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let long = id(&Path::new("/").join("a".repeat(200)), Path::new("/b.yml"));
        assert!(long.len() <= 64 + 9, "{long}");
    }
}
