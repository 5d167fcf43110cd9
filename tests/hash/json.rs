//! `hashup hash --json`: one object per line, per file, with checked values, and
//! error records for what has no checksum.

use std::fs::File;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::fixture::{EMPTY_SHA256, Tree, p, sha256_hex};
use crate::util::{self, Run};

/// Each stdout line parsed as one JSON value.
fn records(run: &Run) -> Vec<Value> {
    run.stdout_str()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn set_mtime(tree: &Tree, rel: &str, secs: u64, nanos: u32) {
    let file = File::options().write(true).open(tree.path(rel)).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::new(secs, nanos))
        .unwrap();
}

#[test]
fn one_record_per_file_and_per_skip_in_walk_order() {
    let tree = Tree::new();
    tree.file("a", "hello\n").file("sub/empty", "").fifo("p");
    set_mtime(&tree, "a", 1_500_000_000, 123_456_789);
    set_mtime(&tree, "sub/empty", 86_400, 0);

    let run = util::hashup(["hash", "--json", "."])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.code, 0);
    assert_eq!(run.stderr, "hashup: ./p: skipped: is a FIFO\n");
    assert_eq!(
        records(&run),
        [
            json!({
                "path": "./a",
                "name": "a",
                "size": 6,
                "mtime": 1_500_000_000,
                "mtime_nsec": 123_456_789,
                "sha256": sha256_hex(b"hello\n"),
            }),
            json!({
                "path": "./p",
                "name": "p",
                "error": "skipped: is a FIFO",
                "skipped": true,
            }),
            json!({
                "path": "./sub/empty",
                "name": "sub/empty",
                "size": 0,
                "mtime": 86_400,
                "mtime_nsec": 0,
                "sha256": EMPTY_SHA256,
            }),
        ]
    );
}

#[test]
fn names_are_relative_to_their_root() {
    let tree = Tree::new();
    tree.file("top/dir/f", "f").file("top/g", "g");
    let run = util::hashup(["hash", "--json", "top/dir", "top/g"])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    let pairs: Vec<(Value, Value)> = records(&run)
        .into_iter()
        .map(|r| (r["path"].clone(), r["name"].clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (json!("top/dir/f"), json!("f")),
            (json!("top/g"), json!("g")),
        ]
    );
}

#[test]
fn failures_are_error_records_and_exit_one() {
    let tree = Tree::new();
    tree.file("a", "a");
    let run = util::hashup(["hash", "--json", "a", "nope"])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "hashup: nope: No such file or directory\n");
    let records = records(&run);
    assert_eq!(records.len(), 2, "{run:?}");
    assert_eq!(records[0]["sha256"], json!(sha256_hex(b"a")));
    assert_eq!(records[1]["path"], json!("nope"));
    assert_eq!(records[1]["error"], json!("No such file or directory"));
    assert_eq!(records[1]["skipped"], json!(false));
    assert_eq!(records[1].get("sha256"), None);
}

#[test]
fn non_utf8_path_is_flagged_lossy() {
    let tree = Tree::new();
    tree.file(p(b"caf\xe9"), "x");
    let run = util::hashup(["hash", "--json", "."])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.code, 0);
    let records = records(&run);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["path"], json!("./caf\u{fffd}"));
    assert_eq!(records[0]["path_lossy"], json!(true));
    assert_eq!(records[0]["sha256"], json!(sha256_hex(b"x")));
}
