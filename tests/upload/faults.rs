//! Faults from the in-test server (see `mock.rs` for why it exists: these are faults a real
//! server won't produce on demand): what reaches storage, 503 and 429 with Retry-After, dropped
//! connections, stalls, HTML 500 pages, unusable presign answers, 401 mid-run, expired URLs,
//! refusals. Each test ends with every file uploaded exactly once or recorded as failed.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;

use super::mock::{Answer, Mock};
use super::{expected_uploaded, read_manifest};
use crate::serve::fixture::{multipart, sha256_hex};
use crate::util::{self, Run, pattern, tree};

const TOKEN: &str = "mock-token";

pub(super) fn run_against(mock: &Mock, dir: &Path, src: &Path, extra: &[&str]) -> Run {
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
    util::hashup(["upload"])
        .args(&args)
        .env("PROMINENCE_TOKEN", TOKEN)
        .home(dir)
        .run()
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
    assert_uploaded_after_waiting(dir.path(), &src, 3);
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
    // With one upload slot, two files are taken up at once (the second's URL is asked for
    // ahead): one or two requests, no retry, nothing sent to storage, one message about it.
    let asked = mock.api_seen().len();
    assert!((1..=2).contains(&asked), "{asked} presign requests");
    assert_eq!(mock.storage_seen().len(), 0);
    assert_one_401_message(&run.stderr);
    // Each file asked about is recorded with its own refusal; the third was never taken up.
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records.len(), asked);
    for record in &records {
        assert_eq!(record["status"], "failed");
        assert_eq!(record["http_status"], 401);
    }
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
    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--url".as_ref(),
            url.as_ref(),
            "--retries".as_ref(),
            "1".as_ref(),
            "--progress".as_ref(),
            "none".as_ref(),
        ])
        .env("PROMINENCE_TOKEN", TOKEN)
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let stopped: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("hashup: stopped: cannot reach the PROMINENCE API: "))
        .collect();
    assert_eq!(stopped.len(), 1, "{}", run.stderr);
}

/// How many requests in `seen` were for `name`.
/// The manifest holds one record, `a.txt` uploaded after `attempts` presigns, that
/// took at least the 1 s a `Retry-After: 1` asked for.
fn assert_uploaded_after_waiting(dir: &Path, src: &Path, attempts: u32) {
    let (records, summary) = read_manifest(&dir.join("manifest.jsonl"));
    let record = &records[0];
    assert_eq!(
        record,
        &expected_uploaded(&src.join("a.txt"), "a.txt", 204, attempts, record)
    );
    assert!(
        record["duration_ms"].as_u64().unwrap() >= 1000,
        "Retry-After: 1 was not honoured: {record}"
    );
    assert_eq!(summary["uploaded"], 1);
}

/// Stderr says exactly once, and nowhere else mentions, that the API refused the token.
fn assert_one_401_message(stderr: &str) {
    let about: Vec<&str> = stderr.lines().filter(|l| l.contains("401")).collect();
    assert_eq!(
        about,
        [
            "hashup: stopped: the PROMINENCE API refused the token (HTTP 401: Authentication failure)"
        ],
        "{stderr}"
    );
}

fn count(seen: &[super::mock::Seen], name: &str) -> usize {
    seen.iter().filter(|s| s.name == name).count()
}

#[test]
fn a_429_with_retry_after_from_the_api_is_honoured_then_uploads_once() {
    let mock = Mock::start();
    mock.script_api(
        "a.txt",
        vec![Answer::new(429, r#"{"error": "Too many requests"}"#).header("retry-after", "1")],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.api_seen().len(), 2);
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    assert!(storage[0].body.windows(6).any(|w| w == b"hello\n"));
    assert_uploaded_after_waiting(dir.path(), &src, 2);
}

#[test]
fn dropped_connections_on_the_api_and_on_storage_are_retried() {
    let mock = Mock::start();
    mock.script_api("a.bin", vec![Answer::drop_connection()]);
    mock.script_storage("a.bin", vec![Answer::drop_connection()]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data = pattern(100_000);
    tree(&src, &[("a.bin", &data)]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // API: dropped, then a target, then (after storage dropped) a fresh target.
    assert_eq!(mock.api_seen().len(), 3);
    // Storage: the dropped upload, then the one that succeeded.
    assert_eq!(mock.storage_seen().len(), 2);
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(
        records[0],
        expected_uploaded(&src.join("a.bin"), "a.bin", 204, 3, &records[0])
    );
    assert_eq!(summary["uploaded"], 1);
}

#[test]
fn storage_that_always_drops_fails_the_file_after_the_retries() {
    let mock = Mock::start();
    // --retries 2: three tries, each presigned again, each dropped.
    mock.script_storage("bad", vec![Answer::drop_connection(); 3]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("bad", b"1"), ("good", b"2")]);

    let run = run_against(&mock, dir.path(), &src, &["--retries", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (api, storage) = (mock.api_seen(), mock.storage_seen());
    assert_eq!((count(&api, "bad"), count(&storage, "bad")), (3, 3));
    assert_eq!((count(&api, "good"), count(&storage, "good")), (1, 1));
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    let bad = &records[0];
    assert_eq!(bad["name"], "bad");
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["http_status"], serde_json::Value::Null);
    assert_eq!(bad["attempts"], 3);
    let error = bad["error"].as_str().unwrap();
    // Closed without an answer, as hyper words it.
    assert!(
        error.starts_with("upload failed: ") && error.contains("connection closed"),
        "{error}"
    );
    assert!(
        run.stderr
            .contains(&format!("hashup: {}: {error}", src.join("bad").display())),
        "{}",
        run.stderr
    );
    assert_eq!(records[1]["status"], "uploaded");
    assert_eq!(
        (summary["failed"].clone(), summary["uploaded"].clone()),
        (1.into(), 1.into())
    );
}

#[test]
fn an_api_that_always_drops_before_ever_answering_stops_the_run() {
    let mock = Mock::start();
    mock.script_api("a", vec![Answer::drop_connection(); 3]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1")]);

    let run = run_against(&mock, dir.path(), &src, &["--retries", "2"]);
    // The API has never answered: as designed (pipeline.rs), that dooms the run, exit 2.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(mock.api_seen().len(), 3);
    assert_eq!(mock.storage_seen().len(), 0);
    let stopped: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("hashup: stopped: cannot reach the PROMINENCE API: "))
        .collect();
    assert_eq!(stopped.len(), 1, "{}", run.stderr);
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[0]["attempts"], 3);
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot reach the PROMINENCE API: "),
        "{}",
        records[0]
    );
    assert!(summary["stopped"].is_string(), "{summary}");
}

#[test]
fn stalled_answers_time_out_and_are_retried() {
    let mock = Mock::start();
    // The API sends its headers, then never the body; storage takes the upload and never answers.
    mock.script_api("a.txt", vec![Answer::stall_body(201)]);
    mock.script_storage("a.txt", vec![Answer::stall()]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);

    let started = Instant::now();
    let run = run_against(&mock, dir.path(), &src, &["--stall-timeout", "1"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(mock.api_seen().len(), 3);
    assert_eq!(mock.storage_seen().len(), 2);
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    let record = &records[0];
    assert_eq!(
        record,
        &expected_uploaded(&src.join("a.txt"), "a.txt", 204, 3, record)
    );
    // Two stalls of at least the stall timeout each.
    assert!(record["duration_ms"].as_u64().unwrap() >= 2000, "{record}");
}

/// What Flask answers when a view crashes.
const FLASK_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n\
    <h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to \
    complete your request. Either the server is overloaded or there is an error in the application.</p>\n";

#[test]
fn an_html_500_from_the_api_is_retried_then_fails_the_file_clearly() {
    let mock = Mock::start();
    let html_500 =
        || Answer::new(500, FLASK_500).header("content-type", "text/html; charset=utf-8");
    mock.script_api("flaky", vec![html_500()]);
    mock.script_api("crash", vec![html_500(); 3]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("crash", b"1"), ("flaky", b"2")]);

    let run = run_against(&mock, dir.path(), &src, &["--retries", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (api, storage) = (mock.api_seen(), mock.storage_seen());
    assert_eq!((count(&api, "crash"), count(&storage, "crash")), (3, 0));
    assert_eq!((count(&api, "flaky"), count(&storage, "flaky")), (2, 1));
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    let crash = &records[0];
    assert_eq!(crash["status"], "failed");
    assert_eq!(crash["http_status"], 500);
    assert_eq!(crash["attempts"], 3);
    assert_eq!(
        crash["error"],
        "presign failed: HTTP 500: 500 Internal Server Error"
    );
    assert_eq!(
        records[1],
        expected_uploaded(&src.join("flaky"), "flaky", 204, 2, &records[1])
    );
    assert_eq!(
        (summary["failed"].clone(), summary["uploaded"].clone()),
        (1.into(), 1.into())
    );
}

#[test]
fn a_201_without_url_or_with_fields_not_an_object_fails_that_file_without_sending() {
    let mock = Mock::start();
    let json = |body: &str| Answer::new(201, body).header("content-type", "application/json");
    mock.script_api(
        "no-url",
        vec![json(
            r#"{"fields": {"key": "uploads/u/no-url", "policy": "cA=="}}"#,
        )],
    );
    let url = mock.storage_url("bad-fields");
    mock.script_api(
        "bad-fields",
        vec![json(&format!(
            r#"{{"url": "{url}", "fields": "key=uploads/u/bad-fields"}}"#
        ))],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[("bad-fields", b"1"), ("good", b"2"), ("no-url", b"3")],
    );

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (api, storage) = (mock.api_seen(), mock.storage_seen());
    assert_eq!(api.len(), 3, "an unusable answer is not asked again");
    assert_eq!(storage.len(), 1);
    assert_eq!(storage[0].name, "good");
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    let expect_failed = |record: &serde_json::Value, error: &str| {
        assert_eq!(record["status"], "failed", "{record}");
        assert_eq!(record["http_status"], 201, "{record}");
        assert_eq!(record["attempts"], 1, "{record}");
        assert!(
            record["error"].as_str().unwrap().starts_with(error),
            "{record}"
        );
    };
    expect_failed(
        &records[0],
        "presign answer unusable: not the expected JSON (invalid type: string",
    );
    assert_eq!(records[1]["status"], "uploaded");
    expect_failed(
        &records[2],
        "presign answer unusable: no http(s) `url` in the answer",
    );
    assert_eq!(
        (summary["failed"].clone(), summary["uploaded"].clone()),
        (2.into(), 1.into())
    );
}

/// A file's URL is asked for while other files upload, so an upload slot never waits on the
/// API: with one slot and a store that answers each upload 500 ms late, the second file's
/// presign arrives before the first upload is answered. (When the slot was taken before the
/// presign, it arrived after.)
#[test]
fn presigns_run_ahead_of_the_upload_slot() {
    let mock = Mock::start();
    let delay = Duration::from_millis(500);
    mock.storage_delay(delay);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1"), ("b", b"2"), ("c", b"3")]);

    let run = run_against(&mock, dir.path(), &src, &["--uploads", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (api, storage) = (mock.api_seen(), mock.storage_seen());
    assert_eq!((api.len(), storage.len()), (3, 3));
    // One upload at a time, as asked: each began after the one before was answered.
    for pair in storage.windows(2) {
        assert!(pair[1].at >= pair[0].at + delay, "uploads overlapped");
    }
    let presign_of = |upload: &super::mock::Seen| {
        api.iter()
            .find(|p| upload.name.ends_with(&p.name))
            .unwrap_or_else(|| panic!("no presign for {}", upload.name))
            .at
    };
    for upload in &storage {
        assert!(presign_of(upload) <= upload.at);
    }
    assert!(
        presign_of(&storage[1]) < storage[0].at + delay,
        "the second file's URL was asked for only after the first upload was answered"
    );
}

#[test]
fn a_401_mid_run_stops_at_once_and_keeps_what_finished() {
    let mock = Mock::start();
    // The first two presign requests succeed, whichever files they are for; then the token is
    // refused.
    mock.api_after(
        2,
        Answer::new(401, r#"{"error": "Authentication failure"}"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a", b"1"),
            ("b", b"2"),
            ("c", b"3"),
            ("d", b"4"),
            ("e", b"5"),
        ],
    );

    // Uploads slow enough that the third file's URL (asked for ahead, while the second
    // uploads) is refused before the second upload ends and a fourth file could be taken up.
    mock.storage_delay(Duration::from_millis(300));
    let run = run_against(&mock, dir.path(), &src, &["--uploads", "1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Three API calls and none after the 401: no retry of it, no call for any other file.
    assert_eq!(mock.api_seen().len(), 3);
    assert_eq!(mock.storage_seen().len(), 2);
    assert_one_401_message(&run.stderr);
    // The two uploaded files and the refused one are in the manifest. Files not yet started
    // (hashed or not) get no record: the run stopped before taking them up, and the summary's
    // `stopped` and exit 2 say so; nothing of them reached the API or storage.
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records.len(), 3);
    let statuses: Vec<(&str, u64, u64)> = records
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["http_status"].as_u64().unwrap(),
                r["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("failed", 401, 1),
            ("uploaded", 204, 1),
            ("uploaded", 204, 1)
        ]
    );
    let uploaded: Vec<&str> = records
        .iter()
        .filter(|r| r["status"] == "uploaded")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let mut stored: Vec<String> = mock.storage_seen().iter().map(|s| s.name.clone()).collect();
    stored.sort();
    assert_eq!(stored, uploaded);
    assert_eq!(
        (summary["uploaded"].clone(), summary["failed"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(
        summary["stopped"],
        "the PROMINENCE API refused the token (HTTP 401: Authentication failure)"
    );
}

#[test]
fn a_403_from_storage_presigns_again_and_uploads_once() {
    let mock = Mock::start();
    mock.script_storage(
        "a.txt",
        vec![Answer::new(
            403,
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.api_seen().len(), 2);
    assert_eq!(mock.storage_seen().len(), 2);
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(
        records[0],
        expected_uploaded(&src.join("a.txt"), "a.txt", 204, 2, &records[0])
    );
}

#[test]
fn sigv2_fields_like_real_prominence_go_in_order_then_the_file() {
    let mock = Mock::start();
    let data = pattern(50_000);
    let sum = sha256_hex(&data);
    // boto3's generate_presigned_post with a SigV2 signer, as PROMINENCE sends it.
    let fields: Vec<(String, String)> = [
        ("key", "uploads/alice/c.sif"),
        ("AWSAccessKeyId", "AKIAIOSFODNN7EXAMPLE"),
        (
            "policy",
            "eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjVUMDA6MTA6MDBaIn0=",
        ),
        ("signature", "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        ("x-amz-meta-prominence_sha256", &sum),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let object: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let body = format!(
        r#"{{"url": {}, "fields": {{{object}}}}}"#,
        serde_json::to_string(&mock.storage_url("c.sif")).unwrap()
    );
    mock.script_api(
        "c.sif",
        vec![Answer::new(201, &body).header("content-type", "application/json")],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("c.sif", &data)]);

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.api_seen().len(), 1);
    let storage = mock.storage_seen();
    assert_eq!(storage.len(), 1);
    let seen = &storage[0];
    assert_eq!(seen.method, Method::POST);
    assert!(!seen.headers.contains_key("authorization"));
    let boundary = seen.headers["content-type"]
        .to_str()
        .unwrap()
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap()
        .to_string();
    let (fixture_type, expected) = multipart(&fields, "c.sif", &data);
    let fixture_boundary = fixture_type.split("boundary=").nth(1).unwrap();
    let expected = String::from_utf8_lossy(&expected).replace(fixture_boundary, &boundary);
    assert_eq!(String::from_utf8_lossy(&seen.body), expected);
    let (records, _) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(
        records[0],
        expected_uploaded(&src.join("c.sif"), "c.sif", 204, 1, &records[0])
    );
}

#[test]
fn a_400_403_or_413_from_the_api_fails_that_file_without_retry() {
    let mock = Mock::start();
    let json = |status, error: &str| {
        Answer::new(status, &serde_json::json!({ "error": error }).to_string())
            .header("content-type", "application/json")
    };
    mock.script_api("f400", vec![json(400, "An object name must be specified")]);
    mock.script_api(
        "f403",
        vec![json(403, "Not authorized to access upload with this path")],
    );
    // Werkzeug's own page for a body over MAX_CONTENT_LENGTH.
    mock.script_api(
        "f413",
        vec![Answer::new(
            413,
            "<!doctype html>\n<html lang=en>\n<title>413 Request Entity Too Large</title>\n\
             <h1>Request Entity Too Large</h1>\n<p>The data value transmitted exceeds the capacity limit.</p>\n",
        )
        .header("content-type", "text/html; charset=utf-8")],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[("f400", b"1"), ("f403", b"2"), ("f413", b"3"), ("ok", b"4")],
    );

    let run = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (api, storage) = (mock.api_seen(), mock.storage_seen());
    for name in ["f400", "f403", "f413", "ok"] {
        assert_eq!(count(&api, name), 1, "{name}");
    }
    assert_eq!(storage.len(), 1);
    assert_eq!(storage[0].name, "ok");
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    let failed: Vec<(&str, u64, u64, &str)> = records[..3]
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "failed", "{r}");
            (
                r["name"].as_str().unwrap(),
                r["http_status"].as_u64().unwrap(),
                r["attempts"].as_u64().unwrap(),
                r["error"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            (
                "f400",
                400,
                1,
                "presign refused: HTTP 400: An object name must be specified"
            ),
            (
                "f403",
                403,
                1,
                "presign refused: HTTP 403: Not authorized to access upload with this path"
            ),
            (
                "f413",
                413,
                1,
                "presign refused: HTTP 413: 413 Request Entity Too Large"
            ),
        ]
    );
    assert_eq!(
        records[3],
        expected_uploaded(&src.join("ok"), "ok", 204, 1, &records[3])
    );
    assert_eq!(
        (summary["failed"].clone(), summary["uploaded"].clone()),
        (3.into(), 1.into())
    );
}
