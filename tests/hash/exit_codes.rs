//! Exit codes: 2 for usage errors, and a quiet 0 when the reader of stdout goes away.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use super::fixture::Tree;
use crate::util::{self, drain, wait_with_deadline};

#[test]
fn usage_errors_exit_two() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["hash"],
        &["hash", "--bogus", "x"],
        &["hash", "--quiet", "x"],
        &["hash", "--status", "x"],
        &["hash", "--strict", "x"],
        &["hash", "--ignore-missing", "x"],
        &["hash", "--json", "-c", "x"],
        &["hash", "-L", "-c", "x"],
        &["hash", "--io", "bogus", "x"],
        &["hash", "-j", "many", "x"],
        &["hash", "--mmap-threshold", "-1", "x"],
    ] {
        let run = util::hashup(args).run();
        assert_eq!((run.code, run.stdout_str()), (2, ""), "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("error: ") || run.stderr.contains("Usage: hashup"),
            "{args:?}: {run:?}"
        );
    }
}

#[test]
fn help_and_version_exit_zero() {
    for args in [&["--help"][..], &["--version"], &["hash", "--help"]] {
        let run = util::hashup(args).run();
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{args:?}");
        assert!(!run.stdout.is_empty());
    }
}

/// A tree whose listing is far larger than hashup's output buffer plus a pipe's.
fn many_files() -> Tree {
    let tree = Tree::new();
    for i in 0..3000 {
        tree.file(format!("file-{i:05}-{}", "x".repeat(60)), "");
    }
    tree
}

/// Runs hashup with `args`, reads the first 10 bytes of its output and closes the
/// pipe, like `hashup ... | head -c 10`; hashup must stop quietly with code 0.
fn assert_quiet_on_closed_pipe(tree: &Tree, args: &[&str]) {
    let mut child = util::hashup(args)
        .current_dir(tree.root())
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let status = wait_with_deadline(&mut child, &format!("hashup {args:?}"));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_eq!(status.signal(), None, "{args:?}: killed; stderr {stderr:?}");
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""), "{args:?}");
}

#[test]
fn closed_stdout_is_a_quiet_success() {
    let tree = many_files();
    assert_quiet_on_closed_pipe(&tree, &["hash", "."]);
    assert_quiet_on_closed_pipe(&tree, &["hash", "--json", "."]);

    let list = util::hashup(["hash", "."]).current_dir(tree.root()).run();
    tree.file("list", list.success());
    assert_quiet_on_closed_pipe(&tree, &["hash", "-c", "list"]);
}
