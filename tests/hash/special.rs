//! Files that are not plain regular files, and inputs that are not files at all:
//! FIFOs, sockets, devices, symbolic links and their loops, empty and sparse files,
//! standard input, paths that do not exist.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::fixture::{EMPTY_SHA256, Tree, p, sha256_hex};
use super::gnu::{assert_same_as_gnu, sha256sum};
use crate::util;

/// `sha256sum` over `paths`, in that order, run in `tree`'s root.
fn gnu_lines(tree: &Tree, paths: &[&str]) -> String {
    let run = sha256sum(paths).current_dir(tree.root()).run();
    String::from_utf8(run.success().to_vec()).unwrap()
}

const NOT_FOLLOWED: &str = "skipped: symbolic link (use --follow to follow links)";

/// A regular file, a FIFO, a socket, and links to a file, a directory and a device.
fn special_tree() -> Tree {
    let tree = Tree::new();
    tree.file("a", "alpha\n")
        .file("sub/b", "beta\n")
        .fifo("fifo")
        .socket("sock")
        .symlink("link", "a")
        .symlink("dirlink", "sub")
        .symlink("null", "/dev/null");
    tree
}

#[test]
fn special_files_and_links_in_a_tree_are_skipped_with_notices() {
    let tree = special_tree();
    let run = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    assert_eq!(run.stdout_str(), gnu_lines(&tree, &["./a", "./sub/b"]));
    assert_eq!(
        run.stderr,
        format!(
            "hashup: ./dirlink: {NOT_FOLLOWED}\n\
             hashup: ./fifo: skipped: is a FIFO\n\
             hashup: ./link: {NOT_FOLLOWED}\n\
             hashup: ./null: {NOT_FOLLOWED}\n\
             hashup: ./sock: skipped: is a socket\n"
        )
    );
    assert_eq!(run.code, 0, "skips are notices, not failures");
}

#[test]
fn follow_hashes_through_links_but_still_skips_special_files() {
    let tree = special_tree();
    for flag in ["-L", "--follow"] {
        let run = util::hashup(["hash", flag, "."])
            .current_dir(tree.root())
            .run();
        assert_eq!(
            run.stdout_str(),
            gnu_lines(&tree, &["./a", "./dirlink/b", "./link", "./sub/b"])
        );
        assert_eq!(
            run.stderr,
            "hashup: ./fifo: skipped: is a FIFO\n\
             hashup: ./null: skipped: is a device\n\
             hashup: ./sock: skipped: is a socket\n"
        );
        assert_eq!(run.code, 0);
    }
}

#[test]
fn fifo_socket_and_device_named_directly_are_skipped_without_blocking() {
    // Nobody writes to the FIFO: opening it for a blocking read would hang, which the
    // run deadline turns into a failure.
    let tree = special_tree();
    for io in ["auto", "mmap", "read"] {
        let run = util::hashup(["hash", "--io", io, "fifo", "a", "sock", "/dev/null"])
            .current_dir(tree.root())
            .run();
        assert_eq!(run.stdout_str(), gnu_lines(&tree, &["a"]));
        assert_eq!(
            run.stderr,
            "hashup: fifo: skipped: is a FIFO\n\
             hashup: sock: skipped: is a socket\n\
             hashup: /dev/null: skipped: is a device\n"
        );
        assert_eq!(run.code, 0);
    }
}

#[test]
fn symlink_to_a_file_named_as_path_is_followed() {
    let tree = special_tree();
    let run = assert_same_as_gnu(tree.root(), &["link", "a"], b"");
    assert_eq!(run.code, 0);
    // A link to a device is followed too, and then the device is skipped.
    let run = util::hashup(["hash", "null"])
        .current_dir(tree.root())
        .run();
    assert_eq!(
        (run.code, run.stdout_str(), run.stderr.as_str()),
        (0, "", "hashup: null: skipped: is a device\n")
    );
}

#[test]
fn symlink_to_a_directory_named_as_path_is_walked_without_notice() {
    let tree = special_tree();
    let run = util::hashup(["hash", "dirlink"])
        .current_dir(tree.root())
        .run();
    assert_eq!(
        (run.code, run.stdout_str(), run.stderr.as_str()),
        (0, gnu_lines(&tree, &["dirlink/b"]).as_str(), "")
    );
}

#[test]
fn link_loop_with_follow_is_reported_and_the_run_goes_on() {
    let tree = Tree::new();
    tree.file("d/a", "a\n")
        .symlink("d/up", "..")
        .file("z", "z\n");
    let run = util::hashup(["hash", "-L", "."])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.stdout_str(), gnu_lines(&tree, &["./d/a", "./z"]));
    assert_eq!(
        run.stderr,
        "hashup: ./d/up: skipped: symbolic link loop back to .\n"
    );
    assert_eq!(run.code, 0);

    // A link to itself cannot be resolved at all: that is an error, like in sha256sum.
    tree.symlink("self", "self");
    let run = util::hashup(["hash", "-L", "."])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.stdout_str(), gnu_lines(&tree, &["./d/a", "./z"]));
    assert_eq!(
        run.stderr,
        "hashup: ./d/up: skipped: symbolic link loop back to .\n\
         hashup: ./self: Too many levels of symbolic links\n"
    );
    assert_eq!(run.code, 1);
    assert_same_as_gnu(tree.root(), &["self", "z"], b"");
}

#[test]
fn dangling_symlink() {
    let tree = Tree::new();
    tree.file("a", "a\n").symlink("dangling", "nowhere");
    let run = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (0, format!("hashup: ./dangling: {NOT_FOLLOWED}\n").as_str())
    );
    let run = util::hashup(["hash", "-L", "."])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.stdout_str(), gnu_lines(&tree, &["./a"]));
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "hashup: ./dangling: No such file or directory\n")
    );
    assert_same_as_gnu(tree.root(), &["dangling", "a"], b"");
}

#[test]
fn empty_file_hashes_to_the_empty_digest_in_every_io_mode() {
    let tree = Tree::new();
    tree.file("empty", "");
    for flags in [
        &[][..],
        &["--io", "mmap"],
        &["--io", "read"],
        &["--io", "auto", "--mmap-threshold", "0"],
        &["--io", "auto", "--mmap-threshold", "1"],
    ] {
        let run = util::hashup(["hash"])
            .args(flags)
            .arg("empty")
            .current_dir(tree.root())
            .run();
        assert_eq!(
            run.success(),
            format!("{EMPTY_SHA256}  empty\n").as_bytes(),
            "{flags:?}"
        );
    }
}

#[test]
fn sparse_file_hashes_like_sha256sum_in_every_io_mode() {
    // Holes everywhere but at the ends and around the 64 MiB mapping window edge, and
    // a size that is not a multiple of the page size.
    let tree = Tree::new();
    let size = (64 << 20) + 4096 + 100;
    let file = File::create(tree.path("sparse")).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(b"head of the file", 0).unwrap();
    file.write_all_at(b"across the window edge", (64 << 20) - 11)
        .unwrap();
    file.write_all_at(b"tail", size - 4).unwrap();
    drop(file);
    let expected = gnu_lines(&tree, &["sparse"]);
    for flags in [&[][..], &["--io", "mmap"], &["--io", "read"], &["-j", "1"]] {
        let run = util::hashup(["hash"])
            .args(flags)
            .arg("sparse")
            .current_dir(tree.root())
            .run();
        assert_eq!(run.success(), expected.as_bytes(), "{flags:?}");
    }
}

#[test]
fn standard_input_hashes_like_sha256sum() {
    let tree = Tree::new();
    tree.file("a", "a\n");
    for input in [&b"x\n"[..], b"", &[7u8; 300_000]] {
        let run = assert_same_as_gnu(tree.root(), &["-"], input);
        assert_eq!(run.code, 0);
        assert_same_as_gnu(tree.root(), &["a", "-", "a"], input);
    }
    let run = util::hashup(["hash", "-"]).stdin("x\n").run();
    assert_eq!(
        run.success(),
        format!("{}  -\n", sha256_hex(b"x\n")).as_bytes()
    );
}

#[test]
fn nonexistent_path_fails_and_the_rest_is_hashed() {
    let tree = Tree::new();
    tree.file("a", "a\n").file("b", "b\n");
    let run = assert_same_as_gnu(tree.root(), &["a", "nope", "b"], b"");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "hashup: nope: No such file or directory\n")
    );
    let run = util::hashup(["hash", "a", "missing/dir", "b"])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.stdout_str(), gnu_lines(&tree, &["a", "b"]));
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "hashup: missing/dir: No such file or directory\n")
    );
}

#[test]
fn file_names_with_every_awkward_byte_survive() {
    // Bytes 1..=255 but `/`, one name each (NUL cannot be in a name).
    let tree = Tree::new();
    let mut names: Vec<PathBuf> = Vec::new();
    for byte in (1u8..=255).filter(|&b| b != b'/') {
        let name = p(&[b'n', byte, b'x']).to_path_buf();
        tree.file(&name, [byte]);
        names.push(name);
    }
    names.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let run = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    let dotted: Vec<PathBuf> = names.iter().map(|n| PathBuf::from(".").join(n)).collect();
    let gnu = sha256sum(&dotted).current_dir(tree.root()).run();
    assert_eq!(run.success(), gnu.success());
}
