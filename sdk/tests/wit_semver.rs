//! The WIT contract stays compatible within 0.1: the `step` world of this version accepts every
//! plugin built for the frozen 0.1.0 (`sdk/wit-0.1.0/`), as `wasm-tools component semver-check`
//! would say. CI runs it as `cargo test -p kiln-sdk --test wit_semver`.

use std::path::Path;

use wit_parser::{Resolve, WorldId};

/// The `world` of the package in `dir` (relative to this crate), in `resolve`.
fn world(resolve: &mut Resolve, dir: &str, world: &str) -> WorldId {
    let (package, _) = resolve
        .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap();
    resolve.select_world(&[package], Some(world)).unwrap()
}

#[test]
fn wit_0_1_x_step_world_is_semver_compatible_with_0_1_0() {
    let mut resolve = Resolve::default();
    let old = world(&mut resolve, "wit-0.1.0", "step");
    let new = world(&mut resolve, "wit", "step");
    wit_component::semver_check(resolve, old, new)
        .expect("sdk/wit's step world must accept what sdk/wit-0.1.0's did");
}

#[test]
fn a_wit_that_drops_a_function_fails_the_semver_check() {
    // The check can fail: a copy of the current WIT without `files.copy` is not compatible.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("wit/plugin.wit"))
            .unwrap();
    let broken = text.replace(
        "copy: func(source: string, destination: string) -> result<u64, string>;",
        "",
    );
    assert_ne!(broken, text, "the WIT has `files.copy`");
    let dir = tempfile_dir();
    std::fs::write(dir.join("plugin.wit"), broken).unwrap();
    let mut resolve = Resolve::default();
    let old = world(&mut resolve, "wit-0.1.0", "step");
    let (package, _) = resolve.push_dir(&dir).unwrap();
    let new = resolve.select_world(&[package], Some("step")).unwrap();
    let error = wit_component::semver_check(resolve, old, new)
        .expect_err("a WIT without `files.copy` is not compatible with 0.1.0");
    assert!(format!("{error:?}").contains("copy"), "{error:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the target's temp dir (no tempfile dependency for one test).
fn tempfile_dir() -> std::path::PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("wit-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
