//! Artifacts: CodeBuild's `files`, `base-directory`, `discard-paths`, `exclude-paths`, `name` and
//! `secondary-artifacts`, collected by the artifacts plugin into the output folder.

#[allow(unused_imports)]
use crate::support::Build;

#[test]
fn placeholder_until_the_examples_land() {}
