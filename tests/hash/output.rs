//! `hashup hash PATH...` prints what GNU `sha256sum` prints, byte for byte, in a
//! deterministic walk order whatever the I/O mode or thread count.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::fixture::{Tree, sample_names, sample_tree};
use super::gnu::{assert_same_as_gnu, sha256sum};
use crate::util;

/// `sha256sum` over `paths` in that order: the expected output for a walk that
/// yields exactly those paths.
fn gnu_lines(dir: &Path, paths: &[PathBuf]) -> Vec<u8> {
    sha256sum(paths).current_dir(dir).run().success().to_vec()
}

#[test]
fn explicit_files_print_like_sha256sum() {
    let tree = sample_tree();
    // Not in walk order, one file twice, and one through `./`: output keeps the order
    // given, and the names as given.
    let mut args: Vec<PathBuf> = sample_names().iter().rev().map(|n| n.into()).collect();
    args.push("one".into());
    args.push("./nested/deep-file".into());
    let run = assert_same_as_gnu(tree.root(), &args, b"");
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.iter().filter(|&&b| b == b'\n').count(),
        args.len()
    );
}

#[test]
fn directory_is_walked_depth_first_in_byte_order() {
    let tree = sample_tree();
    let walked = |root: &Path| -> Vec<PathBuf> {
        sample_names().iter().map(|name| root.join(name)).collect()
    };

    let relative = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    assert_eq!(
        relative.success(),
        gnu_lines(tree.root(), &walked(Path::new("."))),
        "{relative:?}"
    );

    let absolute = util::hashup([OsStr::new("hash"), tree.root().as_os_str()]).run();
    assert_eq!(
        absolute.success(),
        gnu_lines(tree.root(), &walked(tree.root())),
        "{absolute:?}"
    );
}

#[test]
fn several_roots_are_walked_in_the_order_given() {
    let tree = sample_tree();
    let run = util::hashup(["hash", "nested", "one", "a"])
        .current_dir(tree.root())
        .run();
    let expected = gnu_lines(
        tree.root(),
        &[
            "nested/deep/deeper/leaf".into(),
            "nested/deep-file".into(),
            "one".into(),
            "a/x".into(),
        ],
    );
    assert_eq!(run.success(), expected, "{run:?}");
}

#[test]
fn output_is_the_same_for_every_io_mode_and_thread_count() {
    let tree = sample_tree();
    let default = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    let expected = default.success();
    for flags in [
        &["--io", "read"][..],
        &["--io", "mmap"],
        &["--io", "auto", "--mmap-threshold", "1"],
        &["--io", "auto", "--mmap-threshold", "4096"],
        &["-j", "1"],
        &["-j", "4"],
        &["--jobs", "3", "--io", "mmap"],
        &["-j", "1", "--io", "read"],
    ] {
        let run = util::hashup(["hash"])
            .args(flags)
            .arg(".")
            .current_dir(tree.root())
            .run();
        assert_eq!(run.success(), expected, "hashup hash {flags:?} .: {run:?}");
    }
}

#[test]
fn many_small_files_keep_walk_order_on_many_threads() {
    // More files than the engine's channels hold, so results overtake each other.
    let tree = Tree::new();
    let mut names = Vec::new();
    for dir in 0..6 {
        for file in 0..120 {
            let name = format!("d{dir}/f{file:03}");
            tree.file(&name, name.repeat(file % 7));
            names.push(PathBuf::from(name));
        }
    }
    let expected = gnu_lines(tree.root(), &names);
    for jobs in ["1", "4", "16"] {
        let run = util::hashup(["hash", "-j", jobs, "d0", "d1", "d2", "d3", "d4", "d5"])
            .current_dir(tree.root())
            .run();
        assert_eq!(run.success(), expected, "-j {jobs}");
    }
}
