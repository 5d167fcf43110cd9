//! Files and directories the user may not read: reported, counted as failures, and
//! everything else still hashed.
//!
//! Root reads anything whatever its mode, so as root (CI) hashup runs as an
//! unprivileged user on a tree that user can traverse.

use super::fixture::{Tree, sha256_hex};
use super::gnu::{Unprivileged, assert_same_as_gnu_as};
use crate::util;

/// The user to run as in `tree`: `Some(None)` runs directly (not root), `None`
/// means the case cannot be tested here (after printing why).
fn user(tree: &Tree) -> Option<Option<&'static Unprivileged>> {
    let user = match Unprivileged::get() {
        Ok(user) => user,
        Err(why) => {
            eprintln!("note: permission tests skipped: {why}");
            return None;
        }
    };
    // The temp dir's parents must let that user in, too.
    let probe = util::hashup(["hash", "ok"])
        .via(Unprivileged::wrapper(user))
        .current_dir(tree.root())
        .command()
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!(
            "note: permission tests skipped: an unprivileged user cannot reach {}",
            tree.root().display()
        );
        return None;
    }
    Some(user)
}

fn tree_with_unreadable_parts() -> Tree {
    let tree = Tree::new();
    tree.file("locked/inside", "inside\n")
        .file("ok", "ok\n")
        .file("secret", "secret\n")
        .file("sub/x", "x\n")
        .chmod("secret", 0o000)
        .chmod("locked", 0o000);
    tree
}

#[test]
fn unreadable_file_and_directory_fail_and_the_rest_is_hashed() {
    let tree = tree_with_unreadable_parts();
    let Some(user) = user(&tree) else { return };
    let run = util::hashup(["hash", "."])
        .via(Unprivileged::wrapper(user))
        .current_dir(tree.root())
        .run();
    assert_eq!(
        run.stdout_str(),
        format!(
            "{}  ./ok\n{}  ./sub/x\n",
            sha256_hex(b"ok\n"),
            sha256_hex(b"x\n")
        )
    );
    assert_eq!(
        run.stderr,
        "hashup: ./locked: Permission denied\nhashup: ./secret: Permission denied\n"
    );
    assert_eq!(run.code, 1);

    for io in ["mmap", "read"] {
        let run = util::hashup(["hash", "--io", io, "secret", "ok"])
            .via(Unprivileged::wrapper(user))
            .current_dir(tree.root())
            .run();
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (1, "hashup: secret: Permission denied\n"),
            "--io {io}"
        );
    }
}

#[test]
fn unreadable_files_are_reported_like_sha256sum() {
    let tree = tree_with_unreadable_parts();
    let Some(user) = user(&tree) else { return };
    let run = assert_same_as_gnu_as(user, tree.root(), &["ok", "secret", "sub/x"], b"");
    assert_eq!(run.code, 1);

    tree.file(
        "list",
        format!(
            "{}  ok\n{}  secret\n{}  locked/inside\n",
            sha256_hex(b"ok\n"),
            sha256_hex(b"secret\n"),
            sha256_hex(b"inside\n")
        ),
    );
    for flags in [&["-c"][..], &["-c", "--quiet"], &["-c", "--ignore-missing"]] {
        let mut args = flags.to_vec();
        args.push("list");
        let run = assert_same_as_gnu_as(user, tree.root(), &args, b"");
        assert_eq!(run.code, 1);
    }
    let run = util::hashup(["hash", "-c", "list"])
        .via(Unprivileged::wrapper(user))
        .current_dir(tree.root())
        .run();
    assert_eq!(
        run.stdout_str(),
        "ok: OK\nsecret: FAILED open or read\nlocked/inside: FAILED open or read\n"
    );
}
