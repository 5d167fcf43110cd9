//! Stopping a run (Ctrl-C / SIGTERM) and what it prints: the first signal lets the uploads in
//! flight finish and takes no new file, the second aborts them; the manifest always gets its
//! summary and the exit status is 130. Also `--progress log` lines and `--quiet`.
//!
//! The in-test server (`mock.rs`) holds answers back on demand, which a real server won't: that
//! is what puts an upload "in flight" at the moment the signal arrives. It also answers a
//! listing or a deletion with a storm of `503`s asking for a minute's wait, which no real server
//! does on demand: a stop request must end that wait at once, with no retry after it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;

use super::mock::{Answer, Mock};
use super::{expected_uploaded, read_manifest};
use crate::serve::fixture::{jwt, now_secs};
use crate::util::{self, tree};

const TOKEN: &str = "mock-token";

fn spawn_against(mock: &Mock, dir: &Path, src: &Path, extra: &[&str]) -> Child {
    spawn_with_token(mock, dir, src, extra, TOKEN)
}

fn spawn_with_token(mock: &Mock, dir: &Path, src: &Path, extra: &[&str], token: &str) -> Child {
    util::hashup(["upload"])
        .arg(src)
        .args(["--url", &mock.api, "--manifest"])
        .arg(dir.join("manifest.jsonl"))
        .args(extra)
        .env("PROMINENCE_TOKEN", token)
        .home(dir)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hashup upload")
}

/// Waits until storage has seen `n` requests (the uploads are then in flight).
fn wait_for_storage(mock: &Mock, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.storage_seen().len() < n {
        assert!(
            Instant::now() < deadline,
            "storage never saw {n} request(s)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with the pid of a child we own and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the exit, at most `limit`; its status code and stderr.
fn finish(child: Child, limit: Duration) -> (i32, String) {
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_first_ctrl_c_lets_the_upload_in_flight_finish_and_starts_no_other() {
    let mock = Mock::start();
    // Whichever file goes first is held for 2 s at storage, then stored.
    for name in ["a.txt", "b.txt"] {
        mock.script_storage(
            name,
            vec![Answer::new(204, "").after(Duration::from_secs(2))],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"first\n"), ("b.txt", b"second\n")]);

    let child = spawn_against(&mock, dir.path(), &src, &["--uploads", "1"]);
    wait_for_storage(&mock, 1);
    signal(&child, libc::SIGINT);
    let (code, stderr) = finish(child, Duration::from_secs(15));

    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains(
            "hashup: interrupted: taking no new files; waiting for the uploads in flight (Ctrl-C again to abort them)\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(", 1 not started in "), "{stderr}");
    let seen = mock.storage_seen();
    assert_eq!(seen.len(), 1, "only the file in flight reached storage");
    let first = seen[0].name.clone();
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0],
        expected_uploaded(&src.join(&first), &first, 204, 1, &records[0])
    );
    assert_eq!(summary["stopped"], "interrupted");
    assert_eq!(summary["uploaded"], 1);
    assert_eq!(summary["not_started"], 1);
}

#[test]
fn sigterm_stops_like_ctrl_c_and_nothing_is_retried_after_it() {
    let mock = Mock::start();
    // Storage answers 503 asking for a 30 s wait: without the stop, the file would be retried.
    mock.script_storage(
        "a.txt",
        vec![
            Answer::new(503, "busy")
                .header("retry-after", "30")
                .after(Duration::from_secs(1)),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"first\n")]);

    let child = spawn_against(&mock, dir.path(), &src, &["--progress", "none"]);
    wait_for_storage(&mock, 1);
    signal(&child, libc::SIGTERM);
    let (code, stderr) = finish(child, Duration::from_secs(15));

    assert_eq!(code, 130, "{stderr}");
    assert_eq!(mock.storage_seen().len(), 1);
    assert_eq!(mock.api_seen().len(), 1);
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(
        records[0]["error"],
        "interrupted before a retry; last attempt: upload failed: HTTP 503: busy"
    );
    assert_eq!(records[0]["http_status"], 503);
    assert_eq!(summary["stopped"], "interrupted");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["not_started"], 0);
}

#[test]
fn a_second_ctrl_c_aborts_the_uploads_in_flight() {
    let mock = Mock::start();
    mock.script_storage("a.txt", vec![Answer::stall()]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"first\n")]);

    let child = spawn_against(&mock, dir.path(), &src, &["--progress", "none"]);
    wait_for_storage(&mock, 1);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let (code, stderr) = finish(child, Duration::from_secs(15));

    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("hashup: interrupted again: aborting the uploads in flight\n"),
        "{stderr}"
    );
    let (records, summary) = read_manifest(&dir.path().join("manifest.jsonl"));
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[0]["error"], "interrupted while uploading: aborted");
    assert_eq!(summary["stopped"], "interrupted");
    assert_eq!(summary["failed"], 1);
}

#[test]
fn log_progress_prints_a_plain_status_line_every_period() {
    let mock = Mock::start();
    mock.script_storage(
        "a.txt",
        vec![Answer::new(204, "").after(Duration::from_millis(2500))],
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);

    let child = spawn_against(
        &mock,
        dir.path(),
        &src,
        &["--progress", "log", "--progress-every", "1"],
    );
    let (code, stderr) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 0, "{stderr}");
    let status: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hashup: 0/1 files"))
        .collect();
    assert!(status.len() >= 2, "{stderr}");
    assert!(
        status[0].starts_with(
            "hashup: 0/1 files (0 uploaded, 0 failed), hashed 6 B, uploaded 0 B (0.0 MB/s), "
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("hashup: 1 files, 1 uploaded (6 B), 0 failed, 0 skipped in "),
        "{stderr}"
    );
}

#[test]
fn quiet_prints_only_errors() {
    let mock = Mock::start();
    mock.script_api("bad.txt", vec![Answer::new(400, r#"{"error":"no"}"#)]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("good.txt", b"hello\n"), ("bad.txt", b"nope\n")]);

    let child = spawn_against(&mock, dir.path(), &src, &["--quiet"]);
    let (code, stderr) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "hashup: {}: presign refused: HTTP 400: no\n",
            src.join("bad.txt").display()
        )
    );
}

#[test]
fn a_token_that_expires_before_hashing_can_finish_is_warned_about() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // 1.1 TB (sparse): no 2-core machine hashes that in the token's two minutes.
    std::fs::File::create(src.join("big.sif"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let token = jwt("alice", now_secs() + 120);

    let mut child = spawn_with_token(&mock, dir.path(), &src, &["--progress", "none"], &token);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut warning = String::new();
    stderr.read_line(&mut warning).unwrap();
    // The run is hashing the big file now; two Ctrl-C end it without waiting for that.
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let (code, _) = finish(child, Duration::from_secs(15));

    assert!(
        warning.starts_with("hashup: warning: the token expires in 1 min 5") // 1 min 59 s or so
            || warning.starts_with("hashup: warning: the token expires in 2 min 0 s"),
        "{warning}"
    );
    assert!(
        warning.contains(", but hashing 1.10 TB takes at least ")
            && warning.ends_with(
                "; files presigned after that will not be uploaded: get a fresh token first\n"
            ),
        "{warning}"
    );
    assert_eq!(code, 130);
    assert!(mock.api_seen().is_empty());
}

/// A `GET /data` answer listing `objects` (name, size) as the user's own uploads.
fn listing(objects: &[(&str, usize)]) -> Answer {
    let objects: Vec<serde_json::Value> = objects
        .iter()
        .map(|(name, size)| {
            serde_json::json!({
                "name": name, "size": size, "lastModified": "Tue, 25 Nov 2025 22:05:32 GMT",
            })
        })
        .collect();
    Answer::new(200, &serde_json::Value::from(objects).to_string())
        .header("content-type", "application/json")
}

/// A 503 asking for a minute's wait: the storm only an in-test server produces on demand.
fn busy_for_a_minute() -> Answer {
    Answer::new(503, r#"{"error":"busy"}"#).header("retry-after", "60")
}

/// Every request that reached the mock, as `METHOD /path`.
fn requests(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect()
}

/// Waits until `method path` has reached the mock (killing `child` if it never does).
fn wait_for_request(mock: &Mock, child: &mut Child, method: Method, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.count(method.clone(), path) == 0 {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{method} {path} never arrived: {:?}", mock.requests());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the exit (killing it and failing after [`util::DEADLINE`]); its status code and
/// stderr, and how long it took.
fn finish_bounded(mut child: Child) -> (i32, String, Duration) {
    let started = Instant::now();
    let stdout = util::drain(child.stdout.take().unwrap());
    let stderr = util::drain(child.stderr.take().unwrap());
    let status = util::wait_with_deadline(&mut child, "hashup upload");
    let _ = stdout.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    (status.code().unwrap_or(-1), stderr, started.elapsed())
}

/// `--delete`'s deletion is refused with `503` and `Retry-After: 60`; a Ctrl-C while it waits
/// to try again ends the wait at once, no retry is sent, and the manifest says the deletion
/// failed.
#[test]
fn ctrl_c_stops_a_deletion_waiting_to_retry() {
    let mock = Mock::start();
    mock.answer_listings(listing(&[("a.sif", 6), ("old.sif", 3)]));
    mock.answer_deletions(busy_for_a_minute());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"first\n")]);

    let mut child = spawn_against(&mock, dir.path(), &src, &["--progress", "none", "--delete"]);
    wait_for_request(
        &mock,
        &mut child,
        Method::DELETE,
        "/prominence/v1/data/old.sif",
    );
    signal(&child, libc::SIGINT);
    let (code, stderr, took) = finish_bounded(child);

    assert_eq!(
        requests(&mock),
        [
            "POST /prominence/v1/data/upload",
            "POST /storage/a.sif",
            "GET /prominence/v1/data",
            "DELETE /prominence/v1/data/old.sif",
        ],
        "one DELETE, not retried after the stop: {stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    let deleted: Vec<serde_json::Value> =
        super::read_manifest_lines(&dir.path().join("manifest.jsonl"))
            .into_iter()
            .filter_map(|line| line.get("deleted").cloned())
            .collect();
    assert_eq!(
        deleted.len(),
        2,
        "journalled before the request, then its failure: {deleted:?}"
    );
    assert_eq!(
        (&deleted[0]["name"], deleted[0].get("error")),
        (&serde_json::json!("old.sif"), None)
    );
    assert_eq!(deleted[1]["name"], "old.sif");
    assert_eq!(
        deleted[1]["error"],
        "interrupted before a retry; last attempt: HTTP 503: busy"
    );
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains(
            "hashup: old.sif: not deleted: interrupted before a retry; last attempt: HTTP 503: \
             busy\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hashup: --delete: interrupted: 0 of 1 objects deleted\n"),
        "{stderr}"
    );
    let summary = super::read_manifest_lines(&dir.path().join("manifest.jsonl"))
        .into_iter()
        .find_map(|line| line.get("summary").cloned())
        .expect("a summary line");
    assert_eq!(
        summary["delete"]["stopped"],
        "interrupted: 0 of 1 objects deleted"
    );
}

/// `--skip-existing`'s listing is answered `503` with `Retry-After: 60`; a Ctrl-C while it
/// waits to try again ends the run at once: no retry, no presign request, exit 130.
#[test]
fn ctrl_c_stops_a_listing_waiting_to_retry() {
    let mock = Mock::start();
    mock.answer_listings(busy_for_a_minute());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"first\n")]);

    let mut child = spawn_against(
        &mock,
        dir.path(),
        &src,
        &["--progress", "none", "--skip-existing"],
    );
    wait_for_request(&mock, &mut child, Method::GET, "/prominence/v1/data");
    signal(&child, libc::SIGINT);
    let (code, stderr, took) = finish_bounded(child);

    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        requests(&mock),
        ["GET /prominence/v1/data"],
        "one GET, not retried; nothing presigned"
    );
    assert!(mock.api_seen().is_empty());
    assert_eq!(
        stderr,
        "hashup: interrupted while listing what is stored (--skip-existing); last attempt: \
         cannot list your uploads: HTTP 503: busy\n"
    );
    let records = super::read_manifest_lines(&dir.path().join("manifest.jsonl"));
    assert!(
        records.iter().all(|line| line.get("name").is_none()),
        "no file was taken up: {records:?}"
    );
    // The manifest still says how the run ended.
    let summary = records
        .iter()
        .find_map(|line| line.get("summary"))
        .expect("a summary line");
    assert_eq!(
        (
            &summary["stopped"],
            &summary["not_started"],
            &summary["files"]
        ),
        (
            &serde_json::json!("interrupted"),
            &serde_json::json!(1),
            &serde_json::json!(0)
        )
    );
}
