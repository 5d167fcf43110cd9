//! `hashup verify --s3` on a real SeaweedFS, after `hashup upload --s3`: every object `OK` with
//! no file read (the hash cache); a deleted object `MISSING`; an object replaced with other bytes
//! `DIFFERS`, whether its metadata tells the truth about them or not; a local file changed since
//! `DIFFERS`; wrong credentials or a missing bucket stop the run with one message; a multipart
//! object is checked by its metadata alone, or by its composite checksum with `--manifest`.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hashup::sign::{self, CHECKSUM_SHA256, META_SHA256};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::json_lines;
use crate::serve::fixture::{WEED_KEY, WEED_SECRET, Weed, http, sha256_hex, weed};
use crate::util::settle;
use crate::util::{self, Run, TestCommand, pattern, tree};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `hashup SUBCOMMAND SRC --s3 s3://BUCKET/p --endpoint WEED`, SeaweedFS's key pair, HOME in
/// `home` (so both commands share the hash cache below it).
fn hashup(subcommand: &str, src: &Path, bucket: &str, home: &Path) -> TestCommand {
    util::hashup([subcommand.as_ref(), src.as_os_str()])
        .args([
            "--s3",
            &format!("s3://{bucket}/p"),
            "--endpoint",
            &weed().endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", WEED_KEY)
        .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET)
        .home(home)
}

fn upload(src: &Path, bucket: &str, home: &Path, extra: &[&str]) -> TestCommand {
    hashup("upload", src, bucket, home)
        .args(["--progress", "none"])
        .args(extra)
}

/// Runs on a blocking thread (the tests' runtime keeps serving).
async fn run(command: TestCommand) -> Run {
    tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap()
}

/// `PUT key` with `data`, its own stored checksum, and `meta` as `prominence_sha256`.
async fn put_object(weed: &Weed, bucket: &str, key: &str, data: &[u8], meta: &str) {
    let checksum = b64(&Sha256::digest(data));
    let url = sign::presign_url(
        &weed.credentials(),
        &sign::UrlRequest {
            method: "PUT",
            url: &format!("{}/{bucket}/{}", weed.endpoint, sign::uri_encode_path(key)),
            region: "us-east-1",
            service: "s3",
            now: SystemTime::now(),
            expires_in: Duration::from_secs(300),
            signed_headers: &[(CHECKSUM_SHA256, &checksum), (META_SHA256, meta)],
        },
    )
    .unwrap();
    let r = http()
        .put(url)
        .header(CHECKSUM_SHA256, &checksum)
        .header(META_SHA256, meta)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn delete_object(weed: &Weed, bucket: &str, key: &str) {
    let url = weed.presign(
        "DELETE",
        &format!("/{bucket}/{}", sign::uri_encode_path(key)),
    );
    let r = http().delete(url).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

/// `1a2b3c4d..`: how verify shortens a SHA-256.
fn short(sha256_hex: &str) -> String {
    format!("{}..", &sha256_hex[..8])
}

#[tokio::test]
async fn after_an_upload_every_object_is_ok_and_no_file_is_read() {
    let weed = weed();
    let bucket = weed.fresh_bucket("verify-ok").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = pattern(100_000);
    let files: Vec<(&str, &[u8])> = vec![
        ("a.txt", b"hello\n"),
        ("c.bin", &big),
        ("sp ace+\u{fc}.txt", b"awkward\n"),
        ("sub/b.txt", b"world\n"),
    ];
    tree(&src, &files);
    settle(&src);
    let up = run(upload(&src, &bucket, dir.path(), &[])).await;
    assert_eq!(up.code, 0, "{}", up.stderr);

    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.txt: OK\nc.bin: OK\nsp ace+\u{fc}.txt: OK\nsub/b.txt: OK\n"
    );
    assert_eq!(
        r.stderr,
        "hashup: 4 OK\nhashup: hashed 0 B (0 files read, 4 from the hash cache)\n"
    );

    // The same as JSON: what was compared, and proof that no file was read.
    let r = run(hashup("verify", &src, &bucket, dir.path()).arg("--json")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (lines, summary) = json_lines(r.stdout_str());
    let expected: Vec<Value> = files
        .iter()
        .map(|(name, data)| {
            json!({
                "name": name,
                "key": format!("p/{name}"),
                "path": src.join(name).to_str().unwrap(),
                "status": "ok",
                "size_local": data.len(),
                "size_stored": data.len(),
                "sha256_local": sha256_hex(data),
                "sha256_stored": sha256_hex(data),
                "checksum_stored": b64(&Sha256::digest(data)),
                "evidence": "checksum",
                "detail": null,
            })
        })
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(
        summary,
        json!({
            "ok": 4, "missing": 0, "differs": 0, "failed": 0, "skipped": 0,
            "evidence": {"checksum": 4, "composite": 0, "prominence_sha256": 0, "size": 0},
            "files_read": 0, "bytes_hashed": 0, "cached": 4, "not_checked": 0,
        })
    );

    // Without the cache every file is read again, with the same verdicts.
    let r = run(hashup("verify", &src, &bucket, dir.path()).arg("--no-cache")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(
        r.stderr,
        format!(
            "hashup: 4 OK\nhashup: hashed {} (4 files read, 0 from the hash cache)\n",
            hashup::progress::human_bytes(bytes as u64)
        )
    );
}

#[tokio::test]
async fn missing_replaced_and_changed_objects_are_each_named() {
    let weed = weed();
    let bucket = weed.fresh_bucket("verify-bad").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.txt", b"alpha\n"),
            ("b.txt", b"bravo\n"),
            ("c.txt", b"charl\n"),
            ("d.txt", b"delta\n"),
            ("e.txt", b"echo!\n"),
        ],
    );
    settle(&src);
    let up = run(upload(&src, &bucket, dir.path(), &[])).await;
    assert_eq!(up.code, 0, "{}", up.stderr);

    delete_object(weed, &bucket, "p/a.txt").await;
    // Other bytes of the same size, with metadata that tells the truth about them ...
    put_object(
        weed,
        &bucket,
        "p/b.txt",
        b"BRAVO\n",
        &sha256_hex(b"BRAVO\n"),
    )
    .await;
    // ... and with the old file's metadata: only the store's own checksum gives them away.
    put_object(
        weed,
        &bucket,
        "p/c.txt",
        b"CHARL\n",
        &sha256_hex(b"charl\n"),
    )
    .await;
    // A local file changed after the upload.
    std::fs::write(src.join("d.txt"), b"delta-2\n").unwrap();

    let problems = format!(
        "a.txt: MISSING\n\
         b.txt: DIFFERS (sha256 {} ≠ {})\n\
         c.txt: DIFFERS (checksum {} ≠ {})\n\
         d.txt: DIFFERS (size 8 ≠ 6)\n",
        short(&sha256_hex(b"bravo\n")),
        short(&sha256_hex(b"BRAVO\n")),
        short(&sha256_hex(b"charl\n")),
        short(&sha256_hex(b"CHARL\n")),
    );
    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stdout_str(), format!("{problems}e.txt: OK\n"));
    assert_eq!(
        r.stderr,
        "hashup: 1 OK, 1 MISSING, 3 DIFFERS\n\
         hashup: hashed 8 B (1 file read, 4 from the hash cache)\n\
         hashup: the upload command with --check-remote added sends what is missing or differs \
         again\n"
    );

    // --quiet: the problems, nothing else.
    let r = run(hashup("verify", &src, &bucket, dir.path()).arg("--quiet")).await;
    assert_eq!(
        (r.code, r.stdout_str(), r.stderr.as_str()),
        (1, problems.as_str(), "")
    );

    // --json --quiet: the problems as objects, with what was stored.
    let r = run(hashup("verify", &src, &bucket, dir.path()).args(["--json", "--quiet"])).await;
    assert_eq!((r.code, r.stderr.as_str()), (1, ""));
    let lines: Vec<Value> = r
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let view: Vec<(&str, &str, &Value, &Value)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["status"].as_str().unwrap(),
                &l["size_stored"],
                &l["sha256_stored"],
            )
        })
        .collect();
    let (bravo, charl) = (json!(sha256_hex(b"BRAVO\n")), json!(sha256_hex(b"charl\n")));
    assert_eq!(
        view,
        [
            ("a.txt", "missing", &Value::Null, &Value::Null),
            ("b.txt", "differs", &json!(6), &bravo),
            ("c.txt", "differs", &json!(6), &charl),
            (
                "d.txt",
                "differs",
                &json!(6),
                &json!(sha256_hex(b"delta\n"))
            ),
        ]
    );
    assert_eq!(
        lines[2]["checksum_stored"],
        b64(&Sha256::digest(b"CHARL\n"))
    );
    assert_eq!(lines[3]["detail"], "size 8 ≠ 6");

    // A local file that cannot be read fails on its own line, and the run goes on.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let r = run(hashup("verify", &src, &bucket, dir.path()).arg(&dangling)).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        format!("{problems}e.txt: OK\ndangling: FAILED open or read\n")
    );
    let stderr: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        stderr[..2],
        [
            format!("hashup: {}: No such file or directory", dangling.display()).as_str(),
            "hashup: 1 OK, 1 MISSING, 3 DIFFERS, 1 FAILED",
        ]
    );
}

#[tokio::test]
async fn wrong_credentials_or_no_bucket_stop_the_run_with_one_message() {
    let weed = weed();
    let bucket = weed.fresh_bucket("verify-creds").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
    tree(&src, &files);
    let up = run(upload(&src, &bucket, dir.path(), &[])).await;
    assert_eq!(up.code, 0, "{}", up.stderr);

    let wrong = "not-the-weed-secret";
    let r =
        run(hashup("verify", &src, &bucket, dir.path()).env("AWS_SECRET_ACCESS_KEY", wrong)).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "");
    assert_eq!(
        r.stderr,
        "hashup: S3 refused the credentials (HTTP 403: SignatureDoesNotMatch: The request \
         signature we calculated does not match the signature you provided. Check your key and \
         signing method.)\n"
    );
    assert!(!r.stderr.contains(wrong));

    let r = run(hashup("verify", &src, "no-such-bucket", dir.path())).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "");
    assert_eq!(
        r.stderr,
        "hashup: S3 has no bucket no-such-bucket (HTTP 404: NoSuchBucket: The specified bucket \
         does not exist)\n"
    );
}

/// S3's composite checksum of `data` cut in `part` bytes, computed here, independently of
/// hashup: base64 SHA-256 of the parts' SHA-256s, `-N`.
fn composite(data: &[u8], part: usize) -> String {
    let digests: Vec<u8> = data.chunks(part).flat_map(Sha256::digest).collect();
    format!(
        "{}-{}",
        b64(&Sha256::digest(&digests)),
        data.len().div_ceil(part)
    )
}

#[tokio::test]
async fn a_multipart_object_verifies_by_metadata_or_by_the_manifests_composite() {
    const MIB: usize = 1 << 20;
    let weed = weed();
    let bucket = weed.fresh_bucket("verify-parts").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = pattern(11 * MIB);
    tree(&src, &[("big.bin", &big), ("small.txt", b"small\n")]);
    settle(&src);
    let manifest = dir.path().join("up.jsonl");
    let m: &OsStr = manifest.as_os_str();
    // The smallest parts the flags accept: 5 MiB, from 5 MiB.
    let up = run(upload(&src, &bucket, dir.path(), &[])
        .args([
            "--multipart-threshold",
            "5MiB",
            "--part-size",
            "5MiB",
            "--manifest",
        ])
        .arg(m))
    .await;
    assert_eq!(up.code, 0, "{}", up.stderr);
    let stored_composite = composite(&big, 5 * MIB);
    assert!(stored_composite.ends_with("-3"));

    // Without a manifest the composite cannot be compared: prominence_sha256 decides, and the
    // output says so.
    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "big.bin: OK (prominence_sha256 only)\nsmall.txt: OK\n"
    );
    assert_eq!(
        r.stderr,
        "hashup: 2 OK\n\
         hashup: hashed 0 B (0 files read, 2 from the hash cache)\n\
         hashup: note: 1 checked by prominence_sha256 only: multipart objects cut in parts \
         other than hashup's default size (--manifest gives the upload's composite checksum)\n"
    );

    // With the upload's manifest: the composite it recorded is the one stored.
    let r = run(hashup("verify", &src, &bucket, dir.path())
        .args(["--json", "--manifest"])
        .arg(m))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (lines, _) = json_lines(r.stdout_str());
    assert_eq!(lines[0]["name"], "big.bin");
    assert_eq!(lines[0]["evidence"], "composite");
    assert_eq!(lines[0]["checksum_stored"], stored_composite.as_str());
    assert_eq!(lines[0]["sha256_stored"], sha256_hex(&big));
    assert_eq!(lines[1]["evidence"], "checksum");

    // The manifest alone, with the local files gone: nothing local is read.
    std::fs::rename(&src, dir.path().join("gone")).unwrap();
    let alone = || {
        util::hashup(["verify", "--s3", &format!("s3://{bucket}/p")])
            .args(["--endpoint", &weed.endpoint, "--manifest"])
            .arg(m)
            .env("AWS_ACCESS_KEY_ID", WEED_KEY)
            .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET)
            .home(dir.path())
    };
    let r = run(alone()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "big.bin: OK\nsmall.txt: OK\n");
    assert_eq!(r.stderr, "hashup: 2 OK\n");

    // A manifest whose composite is not the store's: DIFFERS.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let other = composite(&pattern(11 * MIB + 1)[1..], 5 * MIB);
    assert!(text.contains(&stored_composite));
    std::fs::write(&manifest, text.replace(&stored_composite, &other)).unwrap();
    let r = run(alone()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let hex = |c: &str| {
        let digest = base64::engine::general_purpose::STANDARD
            .decode(c.split('-').next().unwrap())
            .unwrap();
        hex::encode(digest)[..8].to_string()
    };
    assert_eq!(
        r.stdout_str(),
        format!(
            "big.bin: DIFFERS (composite {}..-3 ≠ {}..-3)\nsmall.txt: OK\n",
            hex(&other),
            hex(&stored_composite)
        )
    );
}

/// Another client deletes one object, truncates a second and rewrites a third with bytes of
/// the same size (a plain PUT: no `prominence_sha256`): verify names all three; the nightly
/// command plus `--check-remote` sends exactly those three again (versions counted in the
/// bucket), nothing else; verify then passes, and the next `--check-remote` sends nothing.
#[tokio::test]
async fn check_remote_heals_exactly_what_another_client_broke() {
    let weed = weed();
    let bucket = weed.fresh_bucket("heal").await;
    weed.enable_versioning(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: [(&str, &[u8]); 5] = [
        ("a.txt", b"alpha\n"),
        ("b.txt", b"bravo\n"),
        ("c.txt", b"charl\n"),
        ("d.txt", b"delta\n"),
        ("sub/e.txt", b"echo!\n"),
    ];
    tree(&src, &files);
    settle(&src);
    let manifest = dir.path().join("nightly.jsonl");
    let nightly = |extra: &[&str]| {
        upload(&src, &bucket, dir.path(), extra)
            .arg("--manifest")
            .arg(&manifest)
    };
    let up = run(nightly(&[])).await;
    assert_eq!(up.code, 0, "{}", up.stderr);

    delete_object(weed, &bucket, "p/a.txt").await;
    weed.put(&bucket, "p/b.txt", b"bra").await;
    weed.put(&bucket, "p/c.txt", b"CHARL\n").await;

    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.txt: MISSING\n\
         b.txt: DIFFERS (size 6 ≠ 3)\n\
         c.txt: DIFFERS (no prominence_sha256: not written by hashup)\n\
         d.txt: OK\n\
         sub/e.txt: OK\n"
    );

    // The journal alone believes every file stored: the nightly command sends nothing.
    let r = run(nightly(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("nothing to do: all 5 files are unchanged since they were uploaded"),
        "{}",
        r.stderr
    );
    let versions = || async {
        let mut counts = Vec::new();
        for (name, _) in files {
            counts.push(weed.versions(&bucket, &format!("p/{name}")).await);
        }
        counts
    };
    assert_eq!(versions().await, [1, 2, 2, 1, 1]);

    let r = run(nightly(&["--check-remote"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        versions().await,
        [2, 3, 3, 1, 1],
        "a, b and c sent once more, nothing else: {}",
        r.stderr
    );
    let (records, summary) = crate::upload::read_manifest(&manifest);
    let resent: Vec<(&str, &str)> = records
        .iter()
        .filter_map(|r| Some((r["name"].as_str()?, r["resent"].as_str()?)))
        .collect();
    assert_eq!(resent.len(), 3, "{resent:?}");
    assert_eq!(resent[0], ("a.txt", "missing from the destination"));
    assert_eq!(resent[1], ("b.txt", "the destination holds 3 bytes, not 6"));
    // Same size, no listed checksum: the ETag S3 answered hashup's upload with gives it away.
    assert_eq!(resent[2].0, "c.txt");
    assert!(
        resent[2]
            .1
            .starts_with("rewritten since it was uploaded (ETag \""),
        "{resent:?}"
    );
    assert_eq!(
        (&summary["resent"], &summary["confirmed"]),
        (&json!(3), &json!(2))
    );

    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout_str(), r.stderr);
    let r = run(nightly(&["--check-remote"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with(
            "hashup: nothing to do: all 5 files are stored (the destination's listing agrees)\n"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(versions().await, [2, 3, 3, 1, 1]);
}

/// A multipart upload by another client, its parts checksummed with SHA-256 and
/// `prominence_sha256` copied from what it replaced: only the composite can tell.
async fn multipart_put(weed: &Weed, bucket: &str, key: &str, data: &[u8], part: usize, meta: &str) {
    let path = format!("/{bucket}/{}", sign::uri_encode_path(key));
    let signed = |method: &'static str, query: &str, headers: &[(&str, &str)]| {
        sign::presign_url(
            &weed.credentials(),
            &sign::UrlRequest {
                method,
                url: &format!("{}{path}?{query}", weed.endpoint),
                region: "us-east-1",
                service: "s3",
                now: SystemTime::now(),
                expires_in: Duration::from_secs(300),
                signed_headers: headers,
            },
        )
        .unwrap()
    };
    let created = [("x-amz-checksum-algorithm", "SHA256"), (META_SHA256, meta)];
    let mut request = http().post(signed("POST", "uploads", &created));
    for (name, value) in created {
        request = request.header(name, value);
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    let id = text
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let mut body = String::from("<CompleteMultipartUpload>");
    for (i, chunk) in data.chunks(part).enumerate() {
        let number = i + 1;
        let checksum = b64(&Sha256::digest(chunk));
        let query = format!("partNumber={number}&uploadId={id}");
        let r = http()
            .put(signed("PUT", &query, &[(CHECKSUM_SHA256, &checksum)]))
            .header(CHECKSUM_SHA256, &checksum)
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        body += &format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag>\
             <ChecksumSHA256>{checksum}</ChecksumSHA256></Part>"
        );
    }
    body += "</CompleteMultipartUpload>";
    let r = http()
        .post(signed("POST", &format!("uploadId={id}"), &[]))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status == 200 && !text.contains("<Error>"), "{text}");
}

/// One-part and many-part multipart objects whose bytes another client replaced (metadata
/// copied) fail verify, with and without the upload's manifest; untouched ones pass.
#[tokio::test]
async fn replaced_multipart_objects_fail_verify_with_and_without_a_manifest() {
    const MIB: usize = 1 << 20;
    let weed = weed();
    let bucket = weed.fresh_bucket("verify-replaced").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // hashup's default 16 MiB parts: 6 MiB is one part, 17 MiB two.
    let (one, many) = (pattern(6 * MIB), pattern(17 * MIB));
    tree(
        &src,
        &[
            ("one.bin", &one),
            ("one-kept.bin", &one[1..]),
            ("many.bin", &many),
            ("many-kept.bin", &many[1..]),
        ],
    );
    settle(&src);
    let manifest = dir.path().join("up.jsonl");
    let up = run(upload(
        &src,
        &bucket,
        dir.path(),
        &["--multipart-threshold", "5MiB"],
    )
    .arg("--manifest")
    .arg(&manifest))
    .await;
    assert_eq!(up.code, 0, "{}", up.stderr);

    let other = |data: &[u8]| data.iter().map(|b| !b).collect::<Vec<u8>>();
    multipart_put(
        weed,
        &bucket,
        "p/one.bin",
        &other(&one),
        16 * MIB,
        &sha256_hex(&one),
    )
    .await;
    multipart_put(
        weed,
        &bucket,
        "p/many.bin",
        &other(&many),
        16 * MIB,
        &sha256_hex(&many),
    )
    .await;

    let expect = |stdout: &str| {
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{stdout}");
        assert!(lines[0].starts_with("many-kept.bin: OK"), "{stdout}");
        assert!(
            lines[1].starts_with("many.bin: DIFFERS (composite "),
            "{stdout}"
        );
        assert!(lines[1].ends_with("-2)"), "{stdout}");
        assert!(lines[2].starts_with("one-kept.bin: OK"), "{stdout}");
        assert!(
            lines[3].starts_with("one.bin: DIFFERS (composite "),
            "{stdout}"
        );
        assert!(lines[3].ends_with("-1)"), "{stdout}");
    };
    // Without a manifest: composites computed from the files (one part from the SHA-256 alone).
    let r = run(hashup("verify", &src, &bucket, dir.path())).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    expect(r.stdout_str());
    assert_eq!(
        r.stdout_str()
            .lines()
            .filter(|l| l.ends_with(": OK"))
            .count(),
        2,
        "the kept ones pass on their composite, not on metadata: {}",
        r.stdout_str()
    );
    // With it: the composites it recorded.
    let r = run(hashup("verify", &src, &bucket, dir.path())
        .arg("--manifest")
        .arg(&manifest))
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    expect(r.stdout_str());
}
