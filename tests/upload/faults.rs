//! Faults from the in-test server (see `mock.rs` for why it exists): what reaches storage, 503 +
//! Retry-After, a 401 from the API, garbage JSON.

use std::path::Path;

use reqwest::Method;

use super::mock::{Answer, Mock};
use super::{expected_uploaded, pattern, read_manifest, tree, upload};
use crate::serve::fixture::{multipart, sha256_hex};

const TOKEN: &str = "mock-token";

fn run_against(mock: &Mock, dir: &Path, src: &Path, extra: &[&str]) -> super::Run {
    let manifest = dir.join("manifest.jsonl");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        src.as_os_str(),
        "--url".as_ref(),
        mock.api.as_ref(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
        "--progress".as_ref(),
        "none".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    upload(&args, &[("PROMINENCE_TOKEN", TOKEN)], dir)
}

#[test]
fn authorization_never_reaches_storage_and_the_form_is_exact() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data = pattern(700_000);
    tree(&src, &[("img \"1\".sif", &data)]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let api = mock.api_seen();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].headers["authorization"], format!("Bearer {TOKEN}"));
    let sent: serde_json::Value = serde_json::from_slice(&api[0].body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"filename": "img \"1\".sif", "checksum": crate::serve::fixture::sha256_hex(&data)})
    );

    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    let seen = &storage[0];
    assert_eq!(seen.method, Method::POST);
    assert!(
        !seen.headers.contains_key("authorization"),
        "{:?}",
        seen.headers
    );
    assert!(
        !seen.headers.contains_key("transfer-encoding"),
        "{:?}",
        seen.headers
    );
    let content_type = seen.headers["content-type"].to_str().unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    // Fields in the order received, then the file part, named by the object, no Content-Type.
    let fields: Vec<(String, String)> = [
        ("key", "uploads/img \"1\".sif"),
        ("AWSAccessKeyId", "AK"),
        ("policy", "cG9saWN5"),
        ("signature", "c2ln"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (fixture_type, body) = multipart(&fields, "img %221%22.sif", &data);
    let fixture_boundary = fixture_type.split("boundary=").nth(1).unwrap();
    let body = String::from_utf8_lossy(&body).replace(fixture_boundary, boundary);
    assert_eq!(String::from_utf8_lossy(&seen.body), body);
    assert_eq!(
        seen.headers["content-length"].to_str().unwrap(),
        seen.body.len().to_string()
    );
}

#[test]
fn put_targets_get_content_length_and_no_content_type_or_authorization() {
    let mock = Mock::start();
    mock.use_put();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data = pattern(300_001);
    tree(&src, &[("a.bin", &data)]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    let seen = &storage[0];
    assert_eq!(seen.method, Method::PUT);
    assert!(!seen.headers.contains_key("authorization"));
    assert!(!seen.headers.contains_key("content-type"));
    assert_eq!(seen.headers["content-length"], data.len().to_string());
    assert_eq!(&seen.body[..], &data[..]);
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records[0]["http_status"], 200);
}

#[test]
fn a_503_with_retry_after_is_retried_and_uploads_once() {
    let mock = Mock::start();
    mock.script_api(
        "a.txt",
        vec![Answer::new(503, "<html>busy</html>").header("retry-after", "0")],
    );
    mock.script_storage(
        "a.txt",
        vec![Answer::new(503, "<Error><Code>SlowDown</Code></Error>").header("retry-after", "1")],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // API: 503, then a target, then (after storage's 503) a fresh target.
    assert_eq!(mock.api_seen().len(), 3);
    // Storage: the 503, then the one upload that succeeded.
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 2);
    assert!(
        storage
            .iter()
            .all(|s| &s.body[..] == b"hello\n" || s.body.len() > 6)
    );
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    let record = &records[0];
    assert_eq!(
        record,
        &expected_uploaded(&src.join("a.txt"), "a.txt", 204, 3, record)
    );
    assert!(
        record["duration_ms"].as_u64().unwrap() >= 1000,
        "Retry-After: 1 was not honoured: {record}"
    );
    assert_eq!(summary["uploaded"], 1);
}

#[test]
fn a_401_from_the_api_stops_the_run() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    for name in ["a", "b", "c"] {
        mock.script_api(
            name,
            vec![Answer::new(401, r#"{"error": "Authentication failure"}"#)],
        );
    }

    let run = run_against(&mock, dir.path(), &src, &["--uploads", "1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // One request, no retry, nothing sent to storage, one message about it.
    assert_eq!(mock.api_seen().len(), 1);
    assert_eq!(mock.storage_seen().len(), 0);
    let about: Vec<&str> = run.stderr.lines().filter(|l| l.contains("401")).collect();
    assert_eq!(
        about,
        [
            "hashup: stopped: the PROMINENCE API refused the token (HTTP 401: Authentication failure)"
        ],
        "{}",
        run.stderr
    );
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[0]["http_status"], 401);
    assert_eq!(
        summary["stopped"],
        "the PROMINENCE API refused the token (HTTP 401: Authentication failure)"
    );
}

#[test]
fn garbage_json_fails_that_file_only() {
    let mock = Mock::start();
    mock.script_api("bad", vec![Answer::new(201, "<html>not json</html>")]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("bad", b"1"), ("good", b"2")]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let bad_path = src.join("bad");
    assert!(
        run.stderr.starts_with(&format!(
            "hashup: {}: presign answer unusable: not the expected JSON",
            bad_path.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        mock.api_seen().iter().filter(|s| s.name == "bad").count(),
        1
    );
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    assert_eq!(storage[0].name, "good");
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records[0]["name"], "bad");
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[0]["http_status"], 201);
    assert_eq!(records[0]["attempts"], 1);
    assert_eq!(records[1]["status"], "uploaded");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["uploaded"], 1);
}

#[test]
fn a_file_changed_after_hashing_is_hashed_and_presigned_again() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"old\n")]);
    let path = src.join("a.txt");
    let changed = path.clone();
    mock.on_presign("a.txt", move || {
        std::fs::write(changed, b"new bytes\n").unwrap()
    });

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The first target (for the old checksum) is never used; the new bytes go once, with theirs.
    let sums: Vec<serde_json::Value> = mock
        .api_seen()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["checksum"].clone())
        .collect();
    assert_eq!(sums, [sha256_hex(b"old\n"), sha256_hex(b"new bytes\n")]);
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    assert!(storage[0].body.windows(10).any(|w| w == b"new bytes\n"));
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(
        records[0],
        expected_uploaded(&path, "a.txt", 204, 2, &records[0])
    );
}

#[test]
fn an_api_that_cannot_be_reached_stops_the_run() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1"), ("b", b"2")]);
    let url = format!("http://127.0.0.1:{port}/prominence/v1");
    let run = upload(
        &[
            src.as_os_str(),
            "--url".as_ref(),
            url.as_ref(),
            "--retries".as_ref(),
            "1".as_ref(),
            "--progress".as_ref(),
            "none".as_ref(),
        ],
        &[("PROMINENCE_TOKEN", TOKEN)],
        dir.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let stopped: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("hashup: stopped: cannot reach the PROMINENCE API: "))
        .collect();
    assert_eq!(stopped.len(), 1, "{}", run.stderr);
}
