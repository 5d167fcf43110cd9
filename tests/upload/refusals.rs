//! What stops a run before anything is uploaded: unusable or duplicate object names, an expired
//! token. Each is checked against the in-test server, which must see no request at all.

use std::os::unix::ffi::OsStrExt as _;

use super::mock::Mock;
use crate::serve::fixture::{jwt, now_secs};
use crate::util::{self, tree};

#[test]
fn bad_and_duplicate_names_are_refused_before_any_upload() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("x/a", b"1"),
            ("x/c\x07d", b"2"),
            ("x/e\x1b[2J\nhashup: 7 files, 7 uploaded", b"6"),
            ("x/ok", b"3"),
            ("y/a", b"4"),
        ],
    );
    std::fs::write(
        src.join("y").join(std::ffi::OsStr::from_bytes(b"\xff")),
        b"5",
    )
    .unwrap();

    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--flatten".as_ref(),
            "--url".as_ref(),
            mock.api.as_ref(),
        ])
        .env("PROMINENCE_TOKEN", "t")
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let s = src.display();
    // Paths are escaped as the names are: no bell rings, no escape sequence runs, and a newline
    // in a name forges no line of hashup's own.
    assert_eq!(
        run.stderr,
        format!(
            "hashup: {s}/x/c\\u{{7}}d: object name \"c\\u{{7}}d\" contains control characters\n\
             hashup: {s}/x/e\\u{{1b}}[2J\\nhashup: 7 files, 7 uploaded: object name \
             \"e\\u{{1b}}[2J\\nhashup: 7 files, 7 uploaded\" contains control characters\n\
             hashup: {s}/y/a: object name \"a\" is also the name of {s}/x/a\n\
             hashup: {s}/y/\u{fffd}: name \"\\xFF\" is not UTF-8\n\
             hashup: 4 unusable object name(s); nothing was uploaded\n"
        )
    );
    assert!(mock.api_seen().is_empty());
    assert!(mock.storage_seen().is_empty());
}

#[test]
fn an_expired_jwt_is_refused_before_any_work() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1")]);
    let expired = jwt("alice", now_secs() - 60);
    let manifest = dir.path().join("manifest.jsonl");

    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--url".as_ref(),
            mock.api.as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
        ])
        .env("PROMINENCE_TOKEN", &expired)
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("hashup: access token has expired (exp "),
        "{}",
        run.stderr
    );
    assert!(mock.api_seen().is_empty());
    assert!(
        !manifest.exists(),
        "no work was done, not even the manifest"
    );
}

/// A file over the 5 GiB one presigned request can carry is refused from its size, unread
/// (a 6 GiB file took 10 s to hash before being refused), and the others still go.
#[test]
fn a_file_over_five_gib_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("small", b"fine")]);
    std::fs::File::create(src.join("huge.sif"))
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    let store = dir.path().join("store");
    let manifest = dir.path().join("m.jsonl");
    let run = util::hashup(["upload"])
        .args([src.as_os_str(), "--embedded".as_ref(), store.as_os_str()])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--no-cache", "--progress", "none"])
        .home(dir.path())
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "hashup: {}: 6442450944 bytes: over the 5 GiB one presigned upload can carry (not read); direct S3 mode (--s3) sends larger files in parts\n",
            src.join("huge.sif").display()
        )),
        "{}",
        run.stderr
    );
    let (records, summary) = super::read_manifest(&manifest);
    assert_eq!(records[0]["name"], "huge.sif");
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[1]["status"], "uploaded");
    assert_eq!(summary["bytes_hashed"], 4, "only the small file was read");
}
