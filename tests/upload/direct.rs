//! Direct S3 mode (`--s3`) on a real SeaweedFS: objects arrive with their bytes, their
//! `prominence_sha256` metadata and a stored SHA-256 checksum; the manifest says so; wrong
//! credentials stop the run at once; nothing leaks the secret; and the store itself refuses a
//! body whose SHA-256 is not the one signed, down to a file rewritten while it uploads. And
//! `--skip-existing`, which here lists the bucket under the run's prefix.

use std::ffi::OsStr;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hashup::http::{Refusal, Timeouts};
use hashup::presign::Target;
use hashup::presign::s3::{DirectS3, S3Location};
use hashup::sign;
use hashup::transfer::{Storage, TransferError};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{expected_uploaded, read_manifest};
use crate::serve::fixture::{WEED_KEY, WEED_SECRET, Weed, http, sha256_hex, weed};
use crate::util::{self, Run, pattern, tree};

/// The AWS variables of SeaweedFS's identity, with `secret` as the secret key.
fn aws_env(secret: &str) -> [(&'static str, &str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", WEED_KEY),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ]
}

/// `hashup upload ARGS` on a blocking thread (the tests' runtime keeps serving).
async fn run(args: Vec<&OsStr>, env: Vec<(&'static str, String)>, home: &Path) -> Run {
    let command = util::hashup(["upload"]).args(args).envs(env).home(home);
    tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap()
}

fn owned(env: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    env.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// HEAD an object asking for its checksum: (status, `x-amz-checksum-sha256`). SeaweedFS wants
/// the `x-amz-checksum-mode` header signed.
pub(super) async fn stored_checksum(weed: &Weed, bucket: &str, key: &str) -> (u16, Option<String>) {
    let url = sign::presign_url(
        &weed.credentials(),
        &sign::UrlRequest {
            method: "HEAD",
            url: &format!("{}/{bucket}/{}", weed.endpoint, sign::uri_encode_path(key)),
            region: "us-east-1",
            service: "s3",
            now: std::time::SystemTime::now(),
            expires_in: Duration::from_secs(300),
            signed_headers: &[("x-amz-checksum-mode", "ENABLED")],
        },
    )
    .unwrap();
    let r = http()
        .head(url)
        .header("x-amz-checksum-mode", "ENABLED")
        .send()
        .await
        .unwrap();
    let checksum = r
        .headers()
        .get("x-amz-checksum-sha256")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), checksum)
}

fn base64_sha256(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// Object `key` holds `data`, with `prominence_sha256` and the stored checksum both its SHA-256.
async fn assert_object(weed: &Weed, bucket: &str, key: &str, data: &[u8]) {
    let (status, meta, body) = weed.get(bucket, key).await;
    assert_eq!(status, 200, "{key}");
    assert!(
        body == data,
        "{key}: other bytes ({} of {})",
        body.len(),
        data.len()
    );
    assert_eq!(meta.as_deref(), Some(sha256_hex(data).as_str()), "{key}");
    assert_eq!(
        stored_checksum(weed, bucket, key).await,
        (200, Some(base64_sha256(data))),
        "{key}"
    );
}

#[tokio::test]
async fn a_tree_lands_with_its_bytes_metadata_and_checksums() {
    let weed = weed();
    let bucket = weed.fresh_bucket("direct").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = pattern((5 << 20) + 7);
    let files: Vec<(&str, &[u8])> = vec![
        ("a.txt", b"hello\n"),
        ("empty", b""),
        ("nested/deeper/big.bin", &big),
        ("nested/spaced name+ü.txt", b"awkward\n"),
    ];
    tree(&src, &files);
    let manifest = dir.path().join("manifest.jsonl");
    let location = format!("s3://{bucket}/runs/1/");

    let r = run(
        vec![
            src.as_os_str(),
            "--s3".as_ref(),
            location.as_ref(),
            "--endpoint".as_ref(),
            weed.endpoint.as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ],
        owned(&aws_env(WEED_SECRET)),
        dir.path(),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "");
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "only the summary: {}",
        r.stderr
    );

    // Keys are PREFIX/name, with no double slash from the trailing one of --s3.
    for (name, data) in &files {
        assert_object(weed, &bucket, &format!("runs/1/{name}"), data).await;
    }
    let (records, summary) = read_manifest(&manifest);
    assert_eq!(records.len(), files.len());
    for (record, (name, _)) in records.iter().zip(&files) {
        assert_eq!(
            record,
            &expected_uploaded(&src.join(name), name, 200, 1, record)
        );
    }
    assert_eq!(summary["uploaded"], files.len());
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        summary["bytes"],
        files.iter().map(|(_, d)| d.len()).sum::<usize>()
    );
    assert_eq!(summary["stopped"], Value::Null);

    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(!text.contains(WEED_SECRET) && !r.stderr.contains(WEED_SECRET));
}

#[tokio::test]
async fn a_wrong_secret_stops_the_run_with_one_message() {
    let weed = weed();
    let bucket = weed.fresh_bucket("wrong").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
    tree(&src, &files);
    let manifest = dir.path().join("manifest.jsonl");
    let location = format!("s3://{bucket}/p");
    let wrong = "not-the-weed-secret";
    // Endpoint and region from the environment this time.
    let mut env = owned(&aws_env(wrong));
    env.push(("AWS_ENDPOINT_URL", weed.endpoint.clone()));
    env.push(("AWS_REGION", "us-east-1".into()));

    let r = run(
        vec![
            src.as_os_str(),
            "--s3".as_ref(),
            location.as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ],
        env,
        dir.path(),
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the summary and why it stopped: {}",
        r.stderr
    );
    assert!(lines[0].starts_with("hashup: "), "{}", r.stderr);
    assert_eq!(
        lines[1],
        "hashup: stopped: S3 refused the credentials (HTTP 403: SignatureDoesNotMatch: The request \
         signature we calculated does not match the signature you provided. Check your key and \
         signing method.)"
    );

    // Every file taken up failed; nothing was stored.
    let (records, summary) = read_manifest(&manifest);
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["status"] == "failed"),
        "{records:?}"
    );
    assert_eq!(summary["uploaded"], 0);
    assert!(
        summary["stopped"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    for name in &names {
        assert_eq!(weed.get(&bucket, &format!("p/{name}")).await.0, 404);
    }
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(!text.contains(wrong) && !r.stderr.contains(wrong));
}

/// A bucket name S3 refuses (too short) dooms every file alike: one message, exit 2, instead
/// of a failure line per file.
#[tokio::test]
async fn an_invalid_bucket_name_stops_the_run_with_one_message() {
    let weed = weed();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
    tree(&src, &files);
    let r = run(
        vec![
            src.as_os_str(),
            "--s3".as_ref(),
            "s3://ab/p".as_ref(),
            "--endpoint".as_ref(),
            weed.endpoint.as_ref(),
            "--progress".as_ref(),
            "none".as_ref(),
        ],
        owned(&aws_env(WEED_SECRET)),
        dir.path(),
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the summary and why it stopped: {}",
        r.stderr
    );
    assert!(
        lines[1].starts_with(
            "hashup: stopped: S3 refused the upload to s3://ab/p (HTTP 400: InvalidBucketName"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn no_credentials_or_a_bad_location_stop_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1")]);
    let manifest = dir.path().join("manifest.jsonl");
    let args = |location: &str| -> Vec<std::ffi::OsString> {
        vec![
            src.clone().into(),
            "--s3".into(),
            location.into(),
            "--manifest".into(),
            manifest.clone().into(),
        ]
    };

    let r = util::hashup(["upload"])
        .args(args("s3://b/p"))
        .home(dir.path())
        .run();
    assert_eq!(r.code, 2);
    let aws = dir.path().join(".aws");
    assert_eq!(
        r.stderr,
        format!(
            "hashup: no AWS credentials found; tried: environment (AWS_ACCESS_KEY_ID is not set); \
             profile \"default\" (in neither {} nor {}); web identity \
             (AWS_WEB_IDENTITY_TOKEN_FILE is not set); container credentials \
             (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set); EC2 instance \
             metadata (disabled by AWS_EC2_METADATA_DISABLED)\n",
            aws.join("credentials").display(),
            aws.join("config").display()
        )
    );
    assert!(!manifest.exists(), "nothing was started");

    let r = util::hashup(["upload"])
        .args(args("b/p"))
        .envs(aws_env(WEED_SECRET))
        .home(dir.path())
        .run();
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: invalid value 'b/p' for '--s3 <s3://BUCKET[/PREFIX]>': expected \
         s3://BUCKET[/PREFIX]\n\nFor more information, try '--help'.\n"
    );

    let mut bad_endpoint = args("s3://b");
    bad_endpoint.extend(["--endpoint".into(), "127.0.0.1:8333".into()]);
    let r = util::hashup(["upload"])
        .args(&bad_endpoint)
        .envs(aws_env(WEED_SECRET))
        .home(dir.path())
        .run();
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "hashup: the S3 endpoint \"127.0.0.1:8333\" (from --endpoint) is not an \
         http(s)://HOST[:PORT] URL\n"
    );
    assert!(!manifest.exists());

    let mut with_url = args("s3://b");
    with_url.extend(["--url".into(), "http://127.0.0.1:9/prominence/v1".into()]);
    let r = util::hashup(["upload"])
        .args(&with_url)
        .envs(aws_env(WEED_SECRET))
        .home(dir.path())
        .run();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: the argument '--s3 <s3://BUCKET[/PREFIX]>' cannot be used with '--url <URL>'"
        ),
        "{}",
        r.stderr
    );
}

/// A connection error's message names no URL: the presigned URL's query holds the signature and
/// the session token.
#[test]
fn errors_show_neither_the_secret_nor_the_session_token() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a", b"1")]);
    let manifest = dir.path().join("manifest.jsonl");
    let (secret, token) = ("SeCrEt-1234567890", "SeSsIoN-tOkEn-0987654321");
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let r = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--s3".as_ref(),
            "s3://b/p".as_ref(),
            "--endpoint".as_ref(),
            "http://127.0.0.1:9".as_ref(),
            "--retries".as_ref(),
            "0".as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDLEAKTEST")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token)
        .home(dir.path())
        .run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let src_a = src.join("a");
    assert!(
        r.stderr.starts_with(&format!(
            "hashup: {}: upload failed: error sending request",
            src_a.display()
        )),
        "{}",
        r.stderr
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    for leak in [secret, token, "X-Amz-Signature", "X-Amz-Credential"] {
        assert!(!r.stderr.contains(leak), "{leak} in stderr: {}", r.stderr);
        assert!(!text.contains(leak), "{leak} in the manifest: {text}");
    }
}

/// What SeaweedFS enforces, at library level: a target signed for content X refuses content Y
/// of the same size with 400 BadDigest and stores nothing, and takes X.
#[tokio::test]
async fn storage_refuses_a_body_whose_sha256_is_not_the_signed_one() {
    let weed = weed();
    let bucket = weed.fresh_bucket("digest").await;
    let s3 = DirectS3::new(
        format!("s3://{bucket}/lib").parse::<S3Location>().unwrap(),
        Some(&weed.endpoint),
        "us-east-1",
        weed.credentials(),
    )
    .unwrap();
    let x = pattern(300_000);
    let mut y = x.clone();
    y[150_000] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let (path_x, path_y) = (dir.path().join("x"), dir.path().join("y"));
    std::fs::write(&path_x, &x).unwrap();
    std::fs::write(&path_y, &y).unwrap();
    let storage = Storage::new(Timeouts {
        connect: Duration::from_secs(10),
        stall: Duration::from_secs(60),
    })
    .unwrap();
    let target = s3
        .target("x.bin", &sha256_hex(&x), std::time::SystemTime::now())
        .unwrap();
    assert!(matches!(target, Target::Put { .. }));

    let err = storage
        .send(&target, &path_y, "x.bin", y.len() as u64)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Refused(Refusal { status: 400, .. })),
        "{err}"
    );
    assert_eq!(err.s3_code(), Some("BadDigest"), "{err}");
    assert_eq!(
        weed.get(&bucket, "lib/x.bin").await.0,
        404,
        "nothing stored"
    );

    // The same target with the bytes it was signed for.
    let sent = storage
        .send(&target, &path_x, "x.bin", x.len() as u64)
        .await
        .unwrap();
    assert_eq!(sent.status, 200);
    // S3's ETag of a single PUT: the MD5 of its body in hex, quoted.
    let etag = sent.etag.unwrap();
    let hex = etag.trim_matches('"');
    assert!(
        etag.len() == 34 && hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{etag}"
    );
    assert_object(weed, &bucket, "lib/x.bin", &x).await;
}

/// The read position of the descriptor `pid` has open on `path`, if any.
fn read_position(pid: u32, path: &Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() == Some(path) {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                    .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|p| p.trim().parse().ok());
        }
    }
    None
}

/// A file rewritten in place (same size) while it uploads must end either uploaded with bytes
/// that match the sha256 its manifest record and metadata give, or failed; never as an object
/// whose bytes differ from its metadata.
#[tokio::test]
async fn a_file_rewritten_while_it_uploads_never_lands_with_other_bytes() {
    const SIZE: usize = 128 << 20;
    let weed = weed();
    let bucket = weed.fresh_bucket("rewrite").await;
    weed.enable_versioning(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let path = src.join("big.bin");
    let block = pattern(1 << 20);
    let old = block.repeat(SIZE >> 20);
    let new: Vec<u8> = block
        .iter()
        .map(|b| !b)
        .collect::<Vec<u8>>()
        .repeat(SIZE >> 20);
    std::fs::write(&path, &old).unwrap();
    let path = path.canonicalize().unwrap();
    let manifest = dir.path().join("manifest.jsonl");
    let location = format!("s3://{bucket}/p");

    let env = aws_env(WEED_SECRET);
    let child = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--s3".as_ref(),
            location.as_ref(),
            "--endpoint".as_ref(),
            weed.endpoint.as_ref(),
            "--uploads".as_ref(),
            "1".as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ])
        .envs(env)
        .home(dir.path())
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Hashing maps the file; the only descriptor reading it is the upload's. Once that is past
    // the first 8 MiB and far from the end, rewrite the whole file in one write.
    let pid = child.id();
    let (path2, new2) = (path.clone(), new.clone());
    let rewritten_at = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(pos) = read_position(pid, &path2).filter(|p| *p >= 8 << 20) {
                if pos < (SIZE as u64) / 2 {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path2)
                        .unwrap();
                    f.write_all_at(&new2, 0).unwrap();
                    return Some(pos);
                }
                return None; // too late to be mid-upload
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    })
    .await
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pos = rewritten_at.unwrap_or_else(|| panic!("never saw the upload mid-way: {stderr}"));

    let (records, summary) = read_manifest(&manifest);
    assert_eq!(records.len(), 1, "{stderr}");
    let record = &records[0];
    let (status, meta, body) = weed.get(&bucket, "p/big.bin").await;
    if let Some(meta) = &meta {
        // The invariant: whatever is stored has the bytes its metadata and checksum say.
        assert_eq!(
            &sha256_hex(&body),
            meta,
            "stored bytes differ from their sha256"
        );
        assert_eq!(
            stored_checksum(weed, &bucket, "p/big.bin").await.1,
            Some(base64_sha256(&body))
        );
    }
    // Versioning keeps whatever was ever stored: a body that mixed old and new bytes would be
    // a version of its own. The store refused it (400 BadDigest), so at most one exists.
    let stored = weed.versions(&bucket, "p/big.bin").await;
    match record["status"].as_str() {
        Some("uploaded") => {
            assert_eq!(
                stored, 1,
                "only the upload that matched its checksum was stored"
            );
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            assert_eq!(status, 200);
            assert_eq!(meta.as_deref(), record["sha256"].as_str());
            assert!(
                body == new,
                "the upload after the rewrite carries the new bytes"
            );
            eprintln!(
                "rewritten at byte {pos}: uploaded after {} attempts",
                record["attempts"]
            );
        }
        Some("failed") => {
            assert_eq!(stored, 0, "nothing was stored");
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert_eq!(summary["uploaded"], 0);
            eprintln!("rewritten at byte {pos}: failed: {}", record["error"]);
        }
        other => panic!("unexpected status {other:?}: {record}"),
    }
}

/// `hashup upload SRC --s3 LOCATION` on SeaweedFS with `extra` arguments, home in `home`.
async fn s3_run(weed: &Weed, src: &Path, location: &str, extra: &[&OsStr], home: &Path) -> Run {
    let mut args: Vec<&OsStr> = vec![
        src.as_os_str(),
        "--s3".as_ref(),
        location.as_ref(),
        "--endpoint".as_ref(),
        weed.endpoint.as_ref(),
        "--progress".as_ref(),
        "none".as_ref(),
    ];
    args.extend(extra);
    run(args, owned(&aws_env(WEED_SECRET)), home).await
}

/// [`s3_run`] with `--skip-existing --manifest MANIFEST` and `extra`: the run, and the
/// manifest's records and summary.
async fn upload_skipping_existing(
    weed: &Weed,
    src: &Path,
    location: &str,
    manifest: &Path,
    extra: &[&OsStr],
) -> (Run, Vec<Value>, Value) {
    let mut args: Vec<&OsStr> = vec![
        "--skip-existing".as_ref(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
    ];
    args.extend(extra);
    let r = s3_run(weed, src, location, &args, manifest.parent().unwrap()).await;
    let (records, summary) = read_manifest(manifest);
    (r, records, summary)
}

/// Why a file the listing vouches for is skipped.
const LISTED: &str = "already stored with this size (listed by the destination)";

/// The record of a file skipped because the listing has an object of its name and size.
fn expected_listed(path: &Path, name: &str) -> (String, String, Value, Value, Value) {
    let data = std::fs::read(path).unwrap();
    (
        name.to_string(),
        "skipped".to_string(),
        Value::from(LISTED),
        Value::from(data.len()),
        Value::from(sha256_hex(&data)),
    )
}

/// A record's (name, status, error, size, sha256).
fn outcome(record: &Value) -> (String, String, Value, Value, Value) {
    (
        record["name"].as_str().unwrap().to_string(),
        record["status"].as_str().unwrap().to_string(),
        record["error"].clone(),
        record["size"].clone(),
        record["sha256"].clone(),
    )
}

/// `--skip-existing` in direct S3 mode lists the bucket (ListObjectsV2) instead of trusting a
/// manifest: files stored with the same name and size are not sent, a file whose size changed
/// and a new one are. The skip trusts the size alone, as documented: an object overwritten
/// with other bytes of the same size stays as it is, which also shows that the file was not
/// sent.
#[tokio::test]
async fn skip_existing_in_s3_mode_trusts_the_bucket_listing_for_name_and_size() {
    let weed = weed();
    let bucket = weed.fresh_bucket("skip-existing").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.sif", b"aaaa"),
            ("b.sif", b"bbbb"),
            ("sub/c.sif", b"cccc"),
        ],
    );
    let location = format!("s3://{bucket}");
    let first = s3_run(weed, &src, &location, &[], dir.path()).await;
    assert_eq!(first.code, 0, "{first:?}");
    // Another writer replaced a.sif and sub/c.sif with other bytes of the same size.
    weed.put(&bucket, "a.sif", b"AAAA").await;
    weed.put(&bucket, "sub/c.sif", b"CCCC").await;
    // Locally b.sif grew and d.sif is new.
    std::fs::write(src.join("b.sif"), b"bbbbb").unwrap();
    std::fs::write(src.join("d.sif"), b"dddd").unwrap();

    let manifest = dir.path().join("new.jsonl");
    let (r, records, summary) =
        upload_skipping_existing(weed, &src, &location, &manifest, &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "only the summary: {r:?}");
    assert!(
        r.stderr
            .starts_with("hashup: 4 files, 2 uploaded (9 B), 0 failed, 2 skipped in "),
        "{r:?}"
    );
    assert_eq!(records.len(), 4, "{records:?}");
    assert_eq!(
        records[0..1]
            .iter()
            .chain(&records[3..4])
            .map(outcome)
            .collect::<Vec<_>>(),
        [
            expected_listed(&src.join("a.sif"), "a.sif"),
            expected_listed(&src.join("sub/c.sif"), "sub/c.sif"),
        ]
    );
    for (record, name) in [(&records[1], "b.sif"), (&records[2], "d.sif")] {
        assert_eq!(
            record,
            &expected_uploaded(&src.join(name), name, 200, 1, record)
        );
    }
    let counts = run_counts(&summary);
    assert_eq!(counts, [4, 2, 0, 2, 2, 9].map(Some), "{summary}");
    assert_eq!(
        weed.objects(&bucket).await,
        [
            ("a.sif".to_string(), 4),
            ("b.sif".to_string(), 5),
            ("d.sif".to_string(), 4),
            ("sub/c.sif".to_string(), 4),
        ]
    );
    // The skipped files were not sent: the other writer's bytes are still there.
    assert_eq!(weed.get(&bucket, "a.sif").await.2, b"AAAA");
    assert_eq!(weed.get(&bucket, "sub/c.sif").await.2, b"CCCC");
    assert_object(weed, &bucket, "b.sif", b"bbbbb").await;
    assert_object(weed, &bucket, "d.sif", b"dddd").await;
}

/// A summary's files, uploaded, failed, skipped, already_stored and bytes.
fn run_counts(summary: &Value) -> [Option<u64>; 6] {
    [
        "files",
        "uploaded",
        "failed",
        "skipped",
        "already_stored",
        "bytes",
    ]
    .map(|field| summary[field].as_u64())
}

/// With `--s3 s3://bucket/prefix` and `--prefix p` the listing covers `prefix/p/` only: objects
/// elsewhere whose names would match a file's name, and size, are not taken as stored.
#[tokio::test]
async fn skip_existing_in_s3_mode_lists_only_the_runs_prefix() {
    let weed = weed();
    let bucket = weed.fresh_bucket("skip-existing-prefix").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"aaaa"), ("b.sif", b"bbbb")]);
    let location = format!("s3://{bucket}/prefix");
    let under_p: [&OsStr; 2] = ["--prefix".as_ref(), "p".as_ref()];
    let first = s3_run(weed, &src, &location, &under_p, dir.path()).await;
    assert_eq!(first.code, 0, "{first:?}");
    // Objects of d.sif's size outside prefix/p/: at the bucket's root, in the --s3 prefix but
    // not below p/, under another prefix, and under a prefix that starts alike.
    let decoys = [
        "p/d.sif",
        "prefix/d.sif",
        "other/p/d.sif",
        "prefixes/p/d.sif",
    ];
    for key in decoys {
        weed.put(&bucket, key, b"DDDD").await;
    }
    std::fs::write(src.join("b.sif"), b"bbbbb").unwrap();
    std::fs::write(src.join("d.sif"), b"dddd").unwrap();

    let manifest = dir.path().join("new.jsonl");
    let (r, records, summary) =
        upload_skipping_existing(weed, &src, &location, &manifest, &under_p).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "only the summary: {r:?}");
    assert!(
        r.stderr
            .starts_with("hashup: 3 files, 2 uploaded (9 B), 0 failed, 1 skipped in "),
        "{r:?}"
    );
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        outcome(&records[0]),
        expected_listed(&src.join("a.sif"), "p/a.sif")
    );
    for (record, file) in [(&records[1], "b.sif"), (&records[2], "d.sif")] {
        let name = format!("p/{file}");
        assert_eq!(
            record,
            &expected_uploaded(&src.join(file), &name, 200, 1, record)
        );
    }
    let counts = run_counts(&summary);
    assert_eq!(counts, [3, 2, 0, 1, 1, 9].map(Some), "{summary}");
    let mut expected: Vec<(String, u64)> = decoys.iter().map(|k| (k.to_string(), 4)).collect();
    expected.extend([
        ("prefix/p/a.sif".to_string(), 4),
        ("prefix/p/b.sif".to_string(), 5),
        ("prefix/p/d.sif".to_string(), 4),
    ]);
    expected.sort();
    assert_eq!(weed.objects(&bucket).await, expected);
    assert_object(weed, &bucket, "prefix/p/d.sif", b"dddd").await;
    for key in decoys {
        assert_eq!(weed.get(&bucket, key).await.2, b"DDDD", "{key} untouched");
    }
}
