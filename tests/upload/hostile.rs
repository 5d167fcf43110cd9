//! A server's text is data (in-test server: these are answers no real server gives on demand).
//! What it says reaches stderr and the manifest cleaned, cut and with secrets redacted, and an
//! endless error body is not read to its end.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::mock::{Answer, HUGE_SENT, Mock};
use super::read_manifest;
use crate::util::{self, Run, tree};

/// A run against the mock, as the fault tests make it, without the hash cache.
fn run(mock: &Mock, dir: &Path, src: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--no-cache"];
    args.extend(extra);
    super::faults::run_against(mock, dir, src, &args)
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

/// An API answering a byte every 200 ms never lets the stall timeout fire; the request's
/// deadline (connect + stall + its bytes at 64 KiB/s) ends it.
#[test]
fn a_trickling_api_meets_the_request_deadline() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello")]);
    mock.script_api("a.txt", vec![Answer::trickle(201)]);
    let started = Instant::now();
    let r = run(
        &mock,
        dir.path(),
        &src,
        &[
            "--retries",
            "0",
            "--stall-timeout",
            "1",
            "--connect-timeout",
            "1",
        ],
    );
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("/a.txt: presign failed: "),
        "{}",
        r.stderr
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

/// A stop request's drain ends in bounded time: storage that never answers holds an upload,
/// and after --drain-timeout the run aborts it as a second Ctrl-C would.
#[test]
fn a_drain_that_runs_too_long_aborts() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello")]);
    mock.script_storage("a.txt", vec![Answer::stall()]);
    let manifest = dir.path().join("manifest.jsonl");
    let mut child = util::hashup(["upload".as_ref(), src.as_os_str(), "--url".as_ref()])
        .arg(&mock.api)
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--progress", "none", "--no-cache", "--stall-timeout", "600"])
        .args(["--drain-timeout", "1"])
        .env("PROMINENCE_TOKEN", "mock-token")
        .home(dir.path())
        .command()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = util::drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.storage_seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the upload never reached storage"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = util::wait_with_deadline(&mut child, "hashup upload");
    let took = stopped.elapsed();
    let stderr = String::from_utf8(stderr.join().unwrap()).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(8), "{took:?}: {stderr}");
    assert!(
        stderr.contains("hashup: the uploads in flight did not finish within 1 s: aborting them"),
        "{stderr}"
    );
    let (records, summary) = read_manifest(&manifest);
    assert_eq!(records[0]["error"], "interrupted while uploading: aborted");
    assert_eq!(summary["stopped"], "interrupted");
}
