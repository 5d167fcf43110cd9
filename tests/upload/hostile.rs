//! A server's text is data (in-test server: these are answers no real server gives on demand).
//! What it says reaches stderr and the manifest cleaned, cut and with secrets redacted, and an
//! endless error body is not read to its end.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::mock::{Answer, HUGE_SENT, Mock};
use super::read_manifest;
use crate::util::{self, Run, tree};

fn run(mock: &Mock, dir: &Path, src: &Path, extra: &[&str]) -> Run {
    let manifest = dir.join("manifest.jsonl");
    util::hashup(["upload".as_ref(), src.as_os_str(), "--url".as_ref()])
        .arg(&mock.api)
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--progress", "none", "--no-cache"])
        .args(extra)
        .env("PROMINENCE_TOKEN", "mock-token")
        .home(dir)
        .run()
}

#[test]
fn storage_error_text_is_cleaned_cut_and_redacted() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello"), ("b.txt", b"world")]);
    // An S3 error whose message forges a summary line and quotes a presigned URL.
    let message = format!(
        "gone\nhashup: 9 files, 9 uploaded (9 B), 0 failed\n\
         see http://s3/b/a.txt?X-Amz-Credential=AKID%2Fx&amp;X-Amz-Signature=5ec7e75ec7e7 {}",
        "y".repeat(5000)
    );
    mock.script_storage(
        "a.txt",
        vec![Answer::new(
            400,
            &format!("<Error><Code>Evil</Code><Message>{message}</Message></Error>"),
        )],
    );
    // Not XML at all: escape sequences that would clear the screen.
    mock.script_storage("b.txt", vec![Answer::new(400, "\x1b[2J\x1b[Hcleared\r\n")]);
    let r = run(&mock, dir.path(), &src, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let manifest = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    for (what, text) in [
        ("stderr", r.stderr.as_str()),
        ("manifest", manifest.as_str()),
    ] {
        assert!(!text.contains('\x1b'), "{what} has an escape: {text:?}");
        assert!(!text.contains("5ec7e75ec7e7"), "{what} has the signature");
        assert!(!text.contains("AKID"), "{what} has the credential");
        assert!(!text.contains(&"y".repeat(400)), "{what} is not cut");
    }
    assert!(
        !r.stderr.lines().any(|l| l.starts_with("hashup: 9 files")),
        "a forged line: {}",
        r.stderr
    );
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    let error = records[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "storage refused the upload: HTTP 400: Evil: gone hashup: 9 files, 9 uploaded (9 B), 0 failed see http://s3/b/a.txt?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED yyy"
        ),
        "{error}"
    );
    assert!(error.ends_with("y…"), "{error}");
    assert_eq!(
        records[1]["error"],
        "storage refused the upload: HTTP 400: [2J [Hcleared"
    );
}

#[test]
fn an_endless_error_body_is_not_read_to_its_end() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello")]);
    // 300 MB of "error" from the API, then from storage: each is read only to its cap.
    mock.script_api("a.txt", vec![Answer::huge(500, 300_000_000)]);
    let before = HUGE_SENT.load(Ordering::SeqCst);
    let r = run(&mock, dir.path(), &src, &["--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let sent = HUGE_SENT.load(Ordering::SeqCst) - before;
    assert!(
        sent < 32 << 20,
        "the client let the server send {sent} bytes"
    );
    assert!(
        r.stderr
            .contains("/a.txt: presign failed: HTTP 500: xxxxxxxxxx"),
        "{}",
        r.stderr
    );
}
