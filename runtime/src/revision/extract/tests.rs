//! The extractor's tests: its rules one at a time, then bundles generated and mutated at random
//! (proptest), none of which may make kiln write outside the target, leave anything beside it, or
//! panic.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// One entry of a bundle built for a test.
#[derive(Debug, Clone)]
enum Item {
    File(String, Vec<u8>, u32),
    Folder(String),
    Link(String, String),
    /// A tar hard link (written as a plain file in a zip, which has none).
    HardLink(String, String),
    /// A FIFO (a tar entry type; a zip entry whose mode says FIFO).
    Fifo(String),
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Zip,
    Tgz,
}

/// A zip written byte by byte (stored, Unix modes), so that a test can put anything in it:
/// duplicate names, `..`, device modes.
fn zip_bytes(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let u16le = |v: &mut Vec<u8>, n: usize| v.extend_from_slice(&(n as u16).to_le_bytes());
    let u32le = |v: &mut Vec<u8>, n: u32| v.extend_from_slice(&n.to_le_bytes());
    for item in items {
        let (name, data, mode): (String, &[u8], u32) = match item {
            Item::File(name, data, mode) => (name.clone(), data, 0o100000 | (mode & 0o7777)),
            Item::Folder(name) => (format!("{}/", name.trim_end_matches('/')), b"", 0o040755),
            Item::Link(name, target) => (name.clone(), target.as_bytes(), 0o120777),
            Item::HardLink(name, target) => (name.clone(), target.as_bytes(), 0o100644),
            Item::Fifo(name) => (name.clone(), b"", 0o010644),
        };
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        u32le(&mut out, 0x0403_4b50);
        for n in [20, 0, 0, 0, 0x21] {
            u16le(&mut out, n);
        }
        u32le(&mut out, crc.sum());
        u32le(&mut out, data.len() as u32);
        u32le(&mut out, data.len() as u32);
        u16le(&mut out, name.len());
        u16le(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        u32le(&mut central, 0x0201_4b50);
        for n in [(3 << 8) | 20, 20, 0, 0, 0, 0x21] {
            u16le(&mut central, n);
        }
        u32le(&mut central, crc.sum());
        u32le(&mut central, data.len() as u32);
        u32le(&mut central, data.len() as u32);
        for n in [name.len(), 0, 0, 0, 0] {
            u16le(&mut central, n);
        }
        u32le(&mut central, mode << 16);
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    for n in [0, 0, items.len(), items.len()] {
        u16le(&mut out, n);
    }
    u32le(&mut out, central.len() as u32);
    u32le(&mut out, central_offset);
    u16le(&mut out, 0);
    out
}

/// An uncompressed tar with the names and link targets written as they are (no checks).
fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (name, data, link): (&str, &[u8], Option<&str>) = match item {
            Item::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (name, data, None)
            }
            Item::Folder(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (name, b"", None)
            }
            Item::Link(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                (name, b"", Some(target))
            }
            Item::HardLink(name, target) => {
                header.set_entry_type(tar::EntryType::Link);
                (name, b"", Some(target))
            }
            Item::Fifo(name) => {
                header.set_entry_type(tar::EntryType::Fifo);
                (name, b"", None)
            }
        };
        let raw = header.as_old_mut();
        let n = name.len().min(raw.name.len());
        raw.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        if let Some(link) = link {
            let n = link.len().min(raw.linkname.len());
            raw.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
        }
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

fn bundle(format: Format, items: &[Item]) -> Vec<u8> {
    match format {
        Format::Zip => zip_bytes(items),
        Format::Tgz => gzip(&tar_bytes(items)),
    }
}

/// A place to extract into: `outside/keep` (the sentinel a bundle aims at), `work/` (which holds
/// the target and its staging folder), and the bundle.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outside/sub")).unwrap();
        std::fs::write(dir.path().join("outside/keep"), "keep").unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Site { dir }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("work/dest")
    }

    /// `@OUT` in names and link targets stands for the absolute path of `outside`.
    fn outside(&self) -> String {
        self.dir.path().join("outside").display().to_string()
    }

    fn extract(&self, bytes: &[u8], limits: Limits) -> Result<usize, ExtractError> {
        let path = self.dir.path().join("bundle");
        std::fs::write(&path, bytes).unwrap();
        extract(&path, &self.dest(), limits)
    }
}

/// Every path below `dir` (links not followed): a folder, a file's bytes, or a link's target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let entry = entry.unwrap();
        let path = entry.path();
        let what = if entry.path_is_symlink() {
            format!("link {:?}", std::fs::read_link(path).unwrap())
        } else if entry.file_type().is_dir() {
            "folder".into()
        } else {
            format!("file {:?}", std::fs::read(path).unwrap())
        };
        out.insert(path.to_path_buf(), what);
    }
    out
}

/// Where a path leads once every link that exists is followed (the missing rest taken as it
/// reads), found without kiln's own code.
fn leads_to(path: &Path) -> PathBuf {
    let parts: Vec<Component> = path.components().collect();
    for known in (1..=parts.len()).rev() {
        let Ok(mut out) = std::fs::canonicalize(parts[..known].iter().collect::<PathBuf>()) else {
            continue;
        };
        for part in &parts[known..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(p) => out.push(p),
                _ => {}
            }
        }
        return out;
    }
    path.to_path_buf()
}

/// What must hold whatever the bundle: nothing outside the target changed, nothing left beside
/// it, and a target that exists holds only files, folders and links that lead inside it.
fn check_contained(
    site: &Site,
    before: &BTreeMap<PathBuf, String>,
    result: &Result<usize, ExtractError>,
) {
    let outside = site.dir.path().join("outside");
    assert_eq!(&snapshot(&outside), before, "outside changed: {result:?}");
    let beside: Vec<_> = std::fs::read_dir(site.dir.path().join("work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let dest = site.dest();
    match result {
        Ok(_) => assert_eq!(beside, ["dest"], "left beside the target"),
        Err(_) => assert!(
            beside.is_empty(),
            "left beside the target: {beside:?} ({result:?})"
        ),
    }
    if !dest.exists() {
        return;
    }
    let real_dest = std::fs::canonicalize(&dest).unwrap();
    for entry in walkdir::WalkDir::new(&dest)
        .follow_links(false)
        .min_depth(1)
    {
        let entry = entry.unwrap();
        let kind = entry.file_type();
        assert!(
            kind.is_file() || kind.is_dir() || kind.is_symlink(),
            "{} is neither a file, a folder nor a link",
            entry.path().display()
        );
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            let lands = leads_to(&entry.path().parent().unwrap().join(target));
            assert!(
                lands.starts_with(&real_dest),
                "{} leads to {}",
                entry.path().display(),
                lands.display()
            );
        }
    }
}

fn file(name: &str) -> Item {
    Item::File(name.into(), b"pwned".to_vec(), 0o644)
}

fn link(name: &str, target: &str) -> Item {
    Item::Link(name.into(), target.into())
}

/// `l -> .`, `l/e1 -> ..`, `e1/e2 -> ..`… up to `e<depth>`, then a file below the last.
fn chain(depth: usize, file_name: &str) -> Vec<Item> {
    let mut items = vec![link("l", "."), link("l/e1", "..")];
    let mut path = "e1".to_string();
    for i in 2..=depth {
        path = format!("{path}/e{i}");
        items.push(link(&path, ".."));
    }
    items.push(file(&format!("{path}/{file_name}")));
    items
}

fn refusal(result: Result<usize, ExtractError>) -> String {
    match result {
        Ok(n) => panic!("extracted {n} files"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tarballs_of_tar_and_git_archive_extract() {
    // `tar czf x.tgz -C dir .` names the folder itself `./`; `git archive` starts with a pax global
    // header. Both are ordinary bundles.
    let site = Site::new();
    let src = site.dir.path().join("src");
    std::fs::create_dir_all(src.join("app")).unwrap();
    std::fs::write(src.join("app/index.html"), "hi").unwrap();
    std::fs::write(src.join("appspec.yml"), "version: 0.0\n").unwrap();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("the tool runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let tar = site.dir.path().join("dot.tgz");
    run(std::process::Command::new("tar")
        .arg("czf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("."));
    assert_eq!(
        site.extract(&std::fs::read(&tar).unwrap(), Limits::default())
            .unwrap(),
        2
    );
    assert_eq!(
        std::fs::read_to_string(site.dest().join("app/index.html")).unwrap(),
        "hi"
    );

    let git = |args: &[&str]| {
        run(std::process::Command::new("git")
            .args(["-c", "user.name=k", "-c", "user.email=k@k", "-C"])
            .arg(&src)
            .args(args))
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    let archive = git(&["archive", "--format=tar.gz", "HEAD"]);
    let again = Site::new();
    assert_eq!(again.extract(&archive, Limits::default()).unwrap(), 2);
    assert_eq!(
        std::fs::read_to_string(again.dest().join("appspec.yml")).unwrap(),
        "version: 0.0\n"
    );
    // A `./` file (not a folder) is still refused.
    let bad = gzip(&tar_bytes(&[file(".")]));
    assert!(Site::new().extract(&bad, Limits::default()).is_err());
}

#[test]
fn paths_that_leave_are_refused() {
    assert!(safe_path("../x").is_err());
    assert!(safe_path("/etc/passwd").is_err());
    assert!(safe_path("a/../../x").is_err());
    assert_eq!(safe_path("./a/b").unwrap(), PathBuf::from("a/b"));
}

#[test]
fn links_that_leave_are_refused() {
    let none = HashMap::new();
    assert!(link_stays_inside(Path::new("a/link"), "../b", &none));
    assert!(!link_stays_inside(Path::new("link"), "../b", &none));
    assert!(!link_stays_inside(Path::new("a/link"), "/etc", &none));
    assert!(!link_stays_inside(Path::new("a/link"), "../../x", &none));
}

#[test]
fn links_that_leave_through_other_links_are_refused() {
    let links: HashMap<&Path, &str> = [(Path::new("d/up"), ".."), (Path::new("l"), ".")].into();
    // `d/up` is the target itself: `d/up/..` is the parent of the target.
    assert!(!link_stays_inside(Path::new("x"), "d/up/..", &links));
    assert!(!link_stays_inside(Path::new("x"), "l/..", &links));
    assert!(link_stays_inside(Path::new("x"), "d/up", &links));
    assert!(link_stays_inside(Path::new("x"), "l/d", &links));
    // A loop of links is refused, not followed forever.
    let looping: HashMap<&Path, &str> = [(Path::new("a"), "a/b")].into();
    assert!(!link_stays_inside(Path::new("x"), "a/c", &looping));
}

#[test]
fn an_entry_below_a_link_of_the_bundle_is_refused() {
    for format in [Format::Zip, Format::Tgz] {
        let site = Site::new();
        let before = snapshot(&site.dir.path().join("outside"));
        let result = site.extract(
            &bundle(format, &chain(2, "outside/pwned")),
            Limits::default(),
        );
        check_contained(&site, &before, &result);
        let err = refusal(result);
        assert!(
            err.contains("refused entry `l/e1`: it lies below `l`, a symlink of this bundle"),
            "{format:?}: {err}"
        );
        // Even a harmless link inside is never extracted through.
        let site = Site::new();
        let items = [Item::Folder("sub".into()), link("in", "sub"), file("in/x")];
        let err = refusal(site.extract(&bundle(format, &items), Limits::default()));
        assert!(
            err.contains("refused entry `in/x`: it lies below `in`"),
            "{format:?}: {err}"
        );
    }
}

#[test]
fn a_link_that_leaves_through_a_later_link_is_refused() {
    for format in [Format::Zip, Format::Tgz] {
        let site = Site::new();
        let items = [
            Item::Folder("d".into()),
            link("x", "d/up/../outside"),
            link("d/up", ".."),
        ];
        let err = refusal(site.extract(&bundle(format, &items), Limits::default()));
        assert!(
            err.contains("refused entry `x`: a symlink to `d/up/../outside` leads outside the target through other links"),
            "{format:?}: {err}"
        );
    }
}

#[test]
fn two_entries_of_one_name_are_refused_but_a_folder_may_be_named_twice() {
    for format in [Format::Zip, Format::Tgz] {
        let site = Site::new();
        let items = [
            Item::Folder("a".into()),
            file("a/x"),
            Item::Folder("a".into()),
        ];
        assert_eq!(
            site.extract(&bundle(format, &items), Limits::default())
                .unwrap(),
            1
        );
        let mut cases = vec![
            vec![file("a/x"), file("a")],
            vec![file("a"), file("a/x")],
            vec![link("a", "b"), Item::Folder("a".into())],
        ];
        // A zip is read by name, one entry per name, so only a tar can name a file twice.
        if let Format::Tgz = format {
            cases.push(vec![file("x"), file("x")]);
            cases.push(vec![file("x"), link("x", "y")]);
        }
        for items in cases {
            let site = Site::new();
            let err = refusal(site.extract(&bundle(format, &items), Limits::default()));
            assert!(
                err.contains("refused entry `"),
                "{format:?} {items:?}: {err}"
            );
        }
    }
}

#[test]
fn hard_links_and_fifos_are_refused() {
    for format in [Format::Zip, Format::Tgz] {
        let fifo = vec![Item::Fifo("f".into())];
        let hard_link = vec![file("a"), Item::HardLink("h".into(), "a".into())];
        for items in [fifo, hard_link] {
            let site = Site::new();
            let before = snapshot(&site.dir.path().join("outside"));
            let result = site.extract(&bundle(format, &items), Limits::default());
            check_contained(&site, &before, &result);
            // A zip has no hard links: the test writes one as a plain file.
            if let (Format::Zip, [_, Item::HardLink(..)]) = (format, items.as_slice()) {
                assert!(result.is_ok(), "{result:?}");
                continue;
            }
            let err = refusal(result);
            assert!(
                err.contains("a device file, FIFO"),
                "{format:?} {items:?}: {err}"
            );
        }
    }
}

#[test]
fn the_kernel_refuses_a_path_through_a_link_the_checks_did_not_see() {
    let site = Site::new();
    let staging_dir = site.dir.path().join("work/staging");
    std::fs::create_dir(&staging_dir).unwrap();
    std::os::unix::fs::symlink(site.outside(), staging_dir.join("l")).unwrap();
    std::os::unix::fs::symlink("..", staging_dir.join("up")).unwrap();
    let staging = Staging::open(&staging_dir, 100).unwrap();
    for rel in ["l/x", "up/x", "l"] {
        let err = staging.create_file(rel, Path::new(rel), 0o644).unwrap_err();
        assert!(matches!(err, ExtractError::Refused { .. }), "{rel}: {err}");
        let err = staging.make_folder(rel, Path::new(rel)).unwrap_err();
        assert!(matches!(err, ExtractError::Refused { .. }), "{rel}: {err}");
    }
    assert!(!site.dir.path().join("outside/x").exists());
    assert!(!site.dir.path().join("work/x").exists());
}

#[test]
fn the_entry_limit_counts_files_folders_and_links() {
    // `a/b/c` makes three things: `a`, `a/b` and the file.
    let items = [file("a/b/c"), link("d", "a")];
    for format in [Format::Zip, Format::Tgz] {
        let limits = |max_entries| Limits {
            max_entries,
            ..Default::default()
        };
        let site = Site::new();
        assert!(site.extract(&bundle(format, &items), limits(4)).is_ok());
        let site = Site::new();
        let err = refusal(site.extract(&bundle(format, &items), limits(3)));
        assert!(
            err.contains("more than 3 files, folders and links") && err.contains("--max-entries"),
            "{format:?}: {err}"
        );
        assert!(!site.dest().exists());
    }
}

#[test]
fn a_zip_with_more_entries_than_the_limit_is_refused_before_anything_is_made() {
    let items: Vec<Item> = (0..10).map(|i| file(&i.to_string())).collect();
    let site = Site::new();
    let limits = Limits {
        max_entries: 9,
        ..Default::default()
    };
    let err = refusal(site.extract(&zip_bytes(&items), limits));
    assert!(err.contains("more than 9"), "{err}");
}

#[test]
fn odd_links_are_refused() {
    let long = "a/".repeat(3000);
    for (items, why) in [
        (
            vec![link("x", &long)],
            "a symlink target longer than 4096 bytes",
        ),
        (vec![link("x", "")], "a symlink with an empty target"),
    ] {
        let site = Site::new();
        let err = refusal(site.extract(&zip_bytes(&items), Limits::default()));
        assert!(err.contains(why), "{err}");
    }
}

/// Small limits, so that a generated bundle meets each of them now and then.
fn fuzz_limits() -> Limits {
    Limits {
        max_size: 64 << 10,
        max_ratio: 1000,
        max_entries: 24,
    }
}

/// A path component: mostly a few names, so that entries collide, climb and chain; now and then
/// a `..` or an odd name (rare enough that most bundles get past them to the rest).
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b", "l", "e1", "e2", "outside", "x"]).prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => "[a-z\\\\ .~-]{1,4}",
    ]
}

fn entry_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(component(), 1..5),
        prop::sample::select(vec!["", "", "", "", "", "", "", "/", "./", "@OUT/"]),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(parts, lead, trailing)| {
            let mut name = format!("{lead}{}", parts.join("/"));
            if trailing {
                name.push('/');
            }
            name
        })
}

fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => entry_name(),
        1 => prop::sample::select(vec![".", "..", "../..", "../../outside", "@OUT", "/"])
            .prop_map(String::from),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (entry_name(), prop::collection::vec(any::<u8>(), 0..64), prop::sample::select(vec![0o644u32, 0o755, 0o4777, 0]))
            .prop_map(|(name, data, mode)| Item::File(name, data, mode)),
        2 => entry_name().prop_map(Item::Folder),
        3 => (entry_name(), link_target()).prop_map(|(name, target)| Item::Link(name, target)),
        1 => (entry_name(), link_target()).prop_map(|(name, target)| Item::HardLink(name, target)),
        1 => entry_name().prop_map(Item::Fifo),
    ]
}

/// Random entries, with now and then a known attack (a chain of links and a file below it)
/// spread among them in its order.
fn items() -> impl Strategy<Value = Vec<Item>> {
    (
        prop::collection::vec(item(), 0..10),
        prop::option::weighted(
            0.3,
            (
                1usize..4,
                prop::sample::select(vec!["outside/pwned", "pwned", "x/pwned"]),
            ),
        ),
        prop::collection::vec(any::<prop::sample::Index>(), 6),
    )
        .prop_map(|(mut items, attack, at)| {
            if let Some((depth, name)) = attack {
                let mut from = 0;
                for (item, at) in chain(depth, name).into_iter().zip(at.iter().cycle()) {
                    from += at.index(items.len() - from + 1);
                    items.insert(from, item);
                    from += 1;
                }
            }
            items
        })
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Zip), Just(Format::Tgz)]
}

/// Replaces `@OUT` with the absolute path of the site's outside folder.
fn placed(site: &Site, items: &[Item]) -> Vec<Item> {
    let out = site.outside();
    let at = |s: &String| s.replace("@OUT", &out);
    items
        .iter()
        .map(|item| match item {
            Item::File(n, d, m) => Item::File(at(n), d.clone(), *m),
            Item::Folder(n) => Item::Folder(at(n)),
            Item::Link(n, t) => Item::Link(at(n), at(t)),
            Item::HardLink(n, t) => Item::HardLink(at(n), at(t)),
            Item::Fifo(n) => Item::Fifo(at(n)),
        })
        .collect()
}

/// A change to a bundle's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if bytes.is_empty() {
            return;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len()), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Generated bundles: refused or extracted, never outside the target.
    #[test]
    fn generated_bundles_stay_inside(format in format(), items in items()) {
        let site = Site::new();
        let before = snapshot(&site.dir.path().join("outside"));
        let result = site.extract(&bundle(format, &placed(&site, &items)), fuzz_limits());
        check_contained(&site, &before, &result);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Generated bundles with their bytes changed (a tar before it is compressed, most of the
    /// time, so that the changes reach the entries).
    #[test]
    fn mutated_bundles_stay_inside(
        format in format(),
        items in items(),
        mutations in prop::collection::vec(mutation(), 1..6),
        before_gzip in prop::bool::weighted(0.8),
    ) {
        let site = Site::new();
        let before = snapshot(&site.dir.path().join("outside"));
        let items = placed(&site, &items);
        let bytes = match format {
            Format::Tgz if before_gzip => {
                let mut tar = tar_bytes(&items);
                mutate(&mut tar, &mutations);
                gzip(&tar)
            }
            _ => {
                let mut bytes = bundle(format, &items);
                mutate(&mut bytes, &mutations);
                bytes
            }
        };
        let result = site.extract(&bytes, fuzz_limits());
        check_contained(&site, &before, &result);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Random bytes behind a zip's or a gzip's first bytes.
    #[test]
    fn random_bytes_are_refused_cleanly(
        magic in prop::sample::select(vec![&b"PK\x03\x04"[..], &b"PK\x05\x06"[..], &b"\x1f\x8b\x08\x00"[..]]),
        rest in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let site = Site::new();
        let before = snapshot(&site.dir.path().join("outside"));
        let mut bytes = magic.to_vec();
        bytes.extend(rest);
        let result = site.extract(&bytes, fuzz_limits());
        check_contained(&site, &before, &result);
    }
}
