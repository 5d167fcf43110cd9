//! The embedded store: it verifies what S3 verifies, and the body's SHA-256, while streaming;
//! only complete, verified objects become visible; keys never leave the store's directory.

use std::time::{Duration, SystemTime};

use hashup::sign::{self, Credentials, PostRequest, UrlRequest};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::fixture::{
    Backend, STORE_KEY, STORE_SECRET, Serve, fields_of, multipart, post_form, put, s3_code,
    sha256_hex, with_field,
};

fn store_creds() -> Credentials {
    Credentials::new(STORE_KEY, STORE_SECRET)
}

/// A POST policy signed with the store's own key, for cases the API would never hand out.
fn crafted_post(serve: &Serve, key: &str, now: SystemTime, sum: &str) -> Vec<(String, String)> {
    let digest: [u8; 32] = hex::decode(sum).unwrap().try_into().unwrap();
    sign::presign_post(
        &store_creds(),
        &PostRequest {
            url: &format!("{}/store/hashup", serve.base),
            bucket: "hashup",
            key,
            region: "us-east-1",
            now,
            expires_in: Duration::from_secs(60),
            meta_sha256: Some(sum),
            checksum_sha256: Some(digest),
            content_length_range: None,
        },
    )
    .fields
}

/// A presigned PUT URL signed with the store's own key for a raw (already encoded) path.
fn crafted_put(serve: &Serve, raw_path: &str, now: SystemTime) -> String {
    sign::presign_url(
        &store_creds(),
        &UrlRequest {
            method: "PUT",
            url: &format!("{}{raw_path}", serve.base),
            region: "us-east-1",
            service: "s3",
            now,
            expires_in: Duration::from_secs(60),
            signed_headers: &[],
        },
    )
    .unwrap()
}

#[tokio::test]
async fn verified_uploads_land_with_a_sidecar() {
    let serve = Serve::start(Backend::Store);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sum = sha256_hex(&data);

    let (_, answer) = serve.presign(&serve.alice, "x.sif", Some(&sum)).await;
    let (status, body) =
        post_form(answer["url"].as_str().unwrap(), &fields_of(&answer), &data).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(
        std::fs::read(serve.object("uploads/alice/x.sif")).unwrap(),
        data
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(serve.sidecar("uploads/alice/x.sif")).unwrap())
            .unwrap();
    assert_eq!(meta["sha256"], sum);
    assert_eq!(meta["size"], data.len());
    assert_eq!(
        meta["metadata"][0],
        serde_json::json!(["prominence_sha256", sum])
    );

    // PUT without checksum, and an empty object.
    let (_, answer) = serve.presign(&serve.alice, "y.sif", None).await;
    assert_eq!(
        put(answer["url"].as_str().unwrap(), data.clone()).await.0,
        200
    );
    assert_eq!(
        std::fs::read(serve.object("uploads/alice/y.sif")).unwrap(),
        data
    );
    let empty = sha256_hex(b"");
    let (_, answer) = serve.presign(&serve.alice, "empty", Some(&empty)).await;
    assert_eq!(
        post_form(answer["url"].as_str().unwrap(), &fields_of(&answer), b"")
            .await
            .0,
        204
    );
    assert_eq!(
        std::fs::read(serve.object("uploads/alice/empty")).unwrap(),
        b""
    );

    // A key with spaces and non-ASCII round-trips through the PUT URL's encoding.
    let (_, answer) = serve.presign(&serve.alice, "ünï cödé+%2e.sif", None).await;
    assert_eq!(
        put(answer["url"].as_str().unwrap(), data.clone()).await.0,
        200
    );
    assert!(serve.object("uploads/alice/ünï cödé+%2e.sif").is_file());
    assert_eq!(serve.temp_files(), 0);
}

/// One entry of a listing exactly as the API writes it, from the object's data file: the
/// contract's fields, then `sha256` when `sha256` is given.
fn listed(serve: &Serve, name: &str, key: &str, sha256: Option<&str>) -> String {
    let md = std::fs::metadata(serve.object(key)).unwrap();
    let date = httpdate::fmt_http_date(md.modified().unwrap());
    let sha256 = sha256.map_or(String::new(), |s| format!(r#","sha256":"{s}""#));
    format!(
        r#"{{"name":"{name}","size":{},"lastModified":"{date}"{sha256}}}"#,
        md.len()
    )
}

/// The API's extension on this store: each object lists the SHA-256 the store computed of its
/// bytes, after the contract's fields, until its data or sidecar changes behind the store's back;
/// then it lists none, and the listing still answers.
#[tokio::test]
async fn listings_give_each_objects_sha256_while_its_sidecar_holds() {
    let serve = Serve::start(Backend::Store);
    let objects: [(&str, &[u8]); 6] = [
        ("a.sif", b"first object\n"),
        ("b.sif", b"the second object\n"),
        ("c.sif", b"third\n"),
        ("d.sif", b"and a fourth one\n"),
        ("g1/shared.sif", b"a group's object\n"),
        ("lab/sub/deep.sif", b"deeper in a group\n"),
    ];
    for (name, data) in objects {
        let (status, answer) = serve
            .presign(&serve.alice, name, Some(&sha256_hex(data)))
            .await;
        assert_eq!(status, 201, "{name}");
        let (status, body) =
            post_form(answer["url"].as_str().unwrap(), &fields_of(&answer), data).await;
        assert_eq!(status, 204, "{name}: {body}");
    }
    // Without a checksum the store hashes what it receives all the same.
    let (_, answer) = serve.presign(&serve.alice, "e.sif", None).await;
    let (status, _) = put(
        answer["url"].as_str().unwrap(),
        b"put, no checksum".to_vec(),
    )
    .await;
    assert_eq!(status, 200);

    let sum = |i: usize| sha256_hex(objects[i].1);
    let own = |key: &str| format!("uploads/alice/{key}");
    let entry = |name: &str, sha256: Option<&str>| listed(&serve, name, &own(name), sha256);
    assert_eq!(
        serve.list_text("").await,
        format!(
            "[{},{},{},{},{}]",
            entry("a.sif", Some(&sum(0))),
            entry("b.sif", Some(&sum(1))),
            entry("c.sif", Some(&sum(2))),
            entry("d.sif", Some(&sum(3))),
            entry("e.sif", Some(&sha256_hex(b"put, no checksum"))),
        )
    );
    let group =
        |name: &str, sha256: &str| listed(&serve, name, &format!("uploads/{name}"), Some(sha256));
    assert_eq!(
        serve.list_text("/g1").await,
        format!("[{}]", group("g1/shared.sif", &sum(4)))
    );
    assert_eq!(
        serve.list_text("/lab/sub").await,
        format!("[{}]", group("lab/sub/deep.sif", &sum(5)))
    );

    // b.sif rewritten on disk: same size, other bytes, a later time (as an editor leaves it).
    let b = serve.object(&own("b.sif"));
    let later = std::fs::metadata(&b).unwrap().modified().unwrap() + Duration::from_secs(2);
    std::fs::write(&b, b"THE SECOND OBJECT\n").unwrap();
    let file = std::fs::File::options().write(true).open(&b).unwrap();
    file.set_modified(later).unwrap();
    // c.sif loses its sidecar, d.sif's is garbage.
    std::fs::remove_file(serve.sidecar(&own("c.sif"))).unwrap();
    std::fs::write(serve.sidecar(&own("d.sif")), b"\x00not json{").unwrap();
    assert_eq!(
        serve.list_text("").await,
        format!(
            "[{},{},{},{},{}]",
            entry("a.sif", Some(&sum(0))),
            entry("b.sif", None),
            entry("c.sif", None),
            entry("d.sif", None),
            entry("e.sif", Some(&sha256_hex(b"put, no checksum"))),
        )
    );

    // A new upload brings the SHA-256 back.
    let (_, answer) = serve.presign(&serve.alice, "d.sif", Some(&sum(3))).await;
    let (status, _) = post_form(
        answer["url"].as_str().unwrap(),
        &fields_of(&answer),
        objects[3].1,
    )
    .await;
    assert_eq!(status, 204);
    let listing: Vec<serde_json::Value> = serde_json::from_str(&serve.list_text("").await).unwrap();
    assert_eq!(listing[3]["name"], "d.sif");
    assert_eq!(listing[3]["sha256"], sum(3));
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    let serve = Serve::start(Backend::Store);
    let data = b"the real content\n".to_vec();
    let sum = sha256_hex(&data);
    let (_, answer) = serve.presign(&serve.alice, "r.sif", Some(&sum)).await;
    let url = answer["url"].as_str().unwrap().to_string();
    let fields = fields_of(&answer);
    let with = |name: &str, value: &str| with_field(&fields, name, value);

    let credential = &fields
        .iter()
        .find(|(n, _)| n == "x-amz-credential")
        .unwrap()
        .1;
    let unknown_credential = format!("NOPE{}", &credential[credential.find('/').unwrap()..]);
    // (what, form fields, body, expected status, expected S3 code)
    type Case<'a> = (&'a str, Vec<(String, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong body",
            fields.clone(),
            b"other content\n".to_vec(),
            400,
            "BadDigest",
        ),
        (
            "truncated body",
            fields.clone(),
            data[..5].to_vec(),
            400,
            "BadDigest",
        ),
        (
            "tampered meta",
            with("x-amz-meta-prominence_sha256", &"0".repeat(64)),
            data.clone(),
            403,
            "AccessDenied",
        ),
        (
            "tampered key",
            with("key", "uploads/bob/r.sif"),
            data.clone(),
            403,
            "AccessDenied",
        ),
        (
            "extra field",
            with("x-amz-meta-extra", "1"),
            data.clone(),
            403,
            "AccessDenied",
        ),
        (
            "bad signature",
            with("x-amz-signature", &"0".repeat(64)),
            data.clone(),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "unknown key id",
            with("x-amz-credential", &unknown_credential),
            data.clone(),
            403,
            "InvalidAccessKeyId",
        ),
        (
            "no policy",
            fields
                .iter()
                .filter(|(n, _)| n != "policy")
                .cloned()
                .collect(),
            data.clone(),
            400,
            "InvalidArgument",
        ),
    ];
    for (what, fields, body, status, code) in cases {
        let (got, text) = post_form(&url, &fields, &body).await;
        assert_eq!((got, s3_code(&text)), (status, code), "{what}: {text}");
        assert!(text.starts_with("<?xml"), "{what}");
    }

    // Expired: a policy signed an hour ago for 60 s.
    let old = SystemTime::now() - Duration::from_secs(3600);
    let (got, text) = post_form(
        &url,
        &crafted_post(&serve, "uploads/alice/r.sif", old, &sum),
        &data,
    )
    .await;
    assert_eq!((got, s3_code(&text)), (403, "AccessDenied"), "{text}");
    let (got, text) = put(
        &crafted_put(&serve, "/store/hashup/uploads/alice/r.sif", old),
        data.clone(),
    )
    .await;
    assert_eq!((got, s3_code(&text)), (403, "AccessDenied"), "{text}");

    // Another bucket, and a PUT URL used for another key.
    let (got, text) = post_form(&format!("{}/store/other", serve.base), &fields, &data).await;
    assert_eq!((got, s3_code(&text)), (404, "NoSuchBucket"));
    let (_, answer) = serve.presign(&serve.alice, "p.sif", None).await;
    let moved = answer["url"]
        .as_str()
        .unwrap()
        .replace("/p.sif?", "/q.sif?");
    let (got, text) = put(&moved, data.clone()).await;
    assert_eq!((got, s3_code(&text)), (403, "SignatureDoesNotMatch"));

    assert!(serve.list("").await.is_empty());
    assert!(!serve.object("uploads/alice/r.sif").exists());
    assert_eq!(serve.temp_files(), 0);
}

#[tokio::test]
async fn keys_never_escape_the_store() {
    let serve = Serve::start(Backend::Store);
    let data = b"escape attempt\n".to_vec();
    let sum = sha256_hex(&data);
    let now = SystemTime::now();
    let url = format!("{}/store/hashup", serve.base);

    // Validly signed policies with hostile keys.
    for key in [
        "../escaped",
        "uploads/../../escaped",
        "/tmp/escaped",
        "uploads/a\0b",
        "uploads//x",
        "uploads/./x",
    ] {
        let (status, text) = post_form(&url, &crafted_post(&serve, key, now, &sum), &data).await;
        assert_eq!(
            (status, s3_code(&text)),
            (400, "InvalidArgument"),
            "{key:?}: {text}"
        );
    }
    // Validly signed PUT URLs with hostile paths: dots (raw and encoded), encoded slashes, NUL,
    // backslashes. HTTP clients normalise dot segments away, so these go out verbatim.
    let host = serve.base.trim_start_matches("http://");
    for path in [
        "/store/hashup/uploads/%2e%2e/%2E%2E/escaped",
        "/store/hashup/uploads/../../escaped",
        "/store/hashup/%2e%2e%2fescaped",
        "/store/hashup/uploads/..%5c..%5cescaped",
        "/store/hashup/uploads/a%00b",
        "/store/hashup/%2Fetc%2Fescaped",
    ] {
        let signed = crafted_put(&serve, path, now);
        let query = signed.split_once('?').unwrap().1;
        let head = format!(
            "PUT {path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        );
        let answer = raw_request(&serve, &head, &data, false).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            answer.contains("<Code>InvalidArgument</Code>"),
            "{path}: {answer}"
        );
    }

    // A file system cannot hold both `a` and `a/b`: refused, and `a` is kept.
    let (status, _) = put(
        &crafted_put(&serve, "/store/hashup/uploads/alice/a", now),
        data.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, text) = put(
        &crafted_put(&serve, "/store/hashup/uploads/alice/a/b", now),
        data.clone(),
    )
    .await;
    assert_eq!((status, s3_code(&text)), (409, "KeyConflict"), "{text}");
    let (status, text) = put(
        &crafted_put(&serve, "/store/hashup/uploads/alice", now),
        data.clone(),
    )
    .await;
    assert_eq!((status, s3_code(&text)), (409, "KeyConflict"), "{text}");
    assert_eq!(
        std::fs::read(serve.object("uploads/alice/a")).unwrap(),
        data
    );

    // A double-encoded name is a harmless literal one.
    let (status, _) = put(
        &crafted_put(&serve, "/store/hashup/uploads/%252e%252e", now),
        data.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(serve.object("uploads/%2e%2e").is_file());

    let outside = serve.store.parent().unwrap();
    for p in ["escaped", "store/escaped", "store/hashup/escaped"] {
        assert!(!outside.join(p).exists(), "{p}");
    }
    assert!(!std::path::Path::new("/tmp/escaped").exists());
}

/// Sends `head` then `body` on a raw connection, optionally closing early; returns the answer.
async fn raw_request(serve: &Serve, head: &str, body: &[u8], then_close: bool) -> String {
    let mut sock = tokio::net::TcpStream::connect(serve.base.trim_start_matches("http://"))
        .await
        .unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    if then_close {
        sock.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn truncated_and_abandoned_uploads_leave_nothing() {
    let serve = Serve::start(Backend::Store);
    let data = vec![b'z'; 1 << 20];
    let sum = sha256_hex(&data);
    let host = serve.base.trim_start_matches("http://").to_string();

    // A multipart body whose closing boundary never comes (Content-Length agrees with it).
    let (_, answer) = serve.presign(&serve.alice, "t.sif", Some(&sum)).await;
    let (content_type, body) = multipart(&fields_of(&answer), "t.sif", &data);
    let cut = &body[..body.len() - 40];
    let head = format!(
        "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        cut.len()
    );
    let answer_text = raw_request(&serve, &head, cut, false).await;
    assert!(answer_text.starts_with("HTTP/1.1 400"), "{answer_text}");
    assert!(
        answer_text.contains("<Code>MalformedPOSTRequest</Code>"),
        "{answer_text}"
    );

    // The same body declared whole, cut, then the client goes away.
    let head = format!(
        "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    raw_request(&serve, &head, &body[..body.len() / 2], true).await;

    // A PUT that promises 8 MiB, sends 1 MiB and disconnects.
    let (_, answer) = serve.presign(&serve.alice, "d.sif", None).await;
    let url = answer["url"].as_str().unwrap();
    let path = &url[serve.base.len()..];
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    );
    {
        let mut sock = tokio::net::TcpStream::connect(&host).await.unwrap();
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&data).await.unwrap();
        // Dropped here: the connection is reset mid-body.
    }
    // A PUT whose body is shorter than its Content-Length, closed cleanly.
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        data.len() + 1
    );
    raw_request(&serve, &head, &data, true).await;

    // Give the server a moment to notice; then nothing may be visible, and no temp file left.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while serve.temp_files() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serve.temp_files(), 0);
    assert!(serve.list("").await.is_empty());
    assert!(!serve.object("uploads/alice/t.sif").exists());
    assert!(!serve.object("uploads/alice/d.sif").exists());
}

/// A PUT whose body the test feeds piece by piece.
struct SlowPut {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    done: tokio::task::JoinHandle<u16>,
}

fn slow_put(url: String, len: usize) -> SlowPut {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let done = tokio::spawn(async move {
        let r = super::fixture::http()
            .put(url)
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    SlowPut { tx, done }
}

#[tokio::test]
async fn concurrent_uploads_of_one_key_never_mix() {
    let serve = Serve::start(Backend::Store);
    let key = "uploads/alice/same.sif";
    let half = 2 << 20;
    let body = |b: u8| vec![b; 2 * half];
    let url = || async {
        serve.presign(&serve.alice, "same.sif", None).await.1["url"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A starts first and finishes last: while A is in flight, B is what is visible; then A.
    let a = slow_put(url().await, 2 * half);
    a.tx.send(bytes::Bytes::from(body(b'A')[..half].to_vec()))
        .await
        .unwrap();
    let b = slow_put(url().await, 2 * half);
    b.tx.send(bytes::Bytes::from(body(b'B'))).await.unwrap();
    drop(b.tx);
    assert_eq!(b.done.await.unwrap(), 200);
    assert_eq!(std::fs::read(serve.object(key)).unwrap(), body(b'B'));
    a.tx.send(bytes::Bytes::from(body(b'A')[half..].to_vec()))
        .await
        .unwrap();
    drop(a.tx);
    assert_eq!(a.done.await.unwrap(), 200);
    assert_eq!(std::fs::read(serve.object(key)).unwrap(), body(b'A'));

    // Eight at once, with checksums: the object is one of them whole, its sidecar agrees.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let data = body(b'a' + i);
        let sum = sha256_hex(&data);
        let (_, answer) = serve.presign(&serve.alice, "same.sif", Some(&sum)).await;
        tasks.push(tokio::spawn(async move {
            post_form(answer["url"].as_str().unwrap(), &fields_of(&answer), &data)
                .await
                .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    let stored = std::fs::read(serve.object(key)).unwrap();
    assert!(stored.iter().all(|&c| c == stored[0]) && stored.len() == 2 * half);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(serve.sidecar(key)).unwrap()).unwrap();
    assert_eq!(meta["sha256"], sha256_hex(&stored));
    assert_eq!(meta["metadata"][0][1], sha256_hex(&stored));
    assert_eq!(serve.temp_files(), 0);
}

/// Peak resident memory of a process, from /proc.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn memory_stays_flat_for_a_large_upload() {
    const SIZE: usize = 64 << 20;
    const CHUNK: usize = 1 << 20;
    let serve = Serve::start(Backend::Store);
    let chunk = bytes::Bytes::from((0..CHUNK).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let mut hasher = Sha256::new();
    for _ in 0..SIZE / CHUNK {
        hasher.update(&chunk);
    }
    let sum = hex::encode(hasher.finalize());

    // Through the POST path (multipart parsing, policy, streaming hash) with a streamed body.
    let (_, answer) = serve.presign(&serve.alice, "big.sif", Some(&sum)).await;
    let (content_type, framing) = multipart(&fields_of(&answer), "big.sif", b"");
    let split = framing.len() - "\r\n--hashup-test-boundary-7MA4YWxkTrZu0gW--\r\n".len();
    let (head, tail) = (
        bytes::Bytes::from(framing[..split].to_vec()),
        bytes::Bytes::from(framing[split..].to_vec()),
    );
    let total = head.len() + SIZE + tail.len();
    let parts = std::iter::once(head)
        .chain(std::iter::repeat_n(chunk, SIZE / CHUNK))
        .chain(std::iter::once(tail))
        .map(Ok::<_, std::io::Error>);
    let before = vm_hwm_kib(serve.pid());
    let r = super::fixture::http()
        .post(answer["url"].as_str().unwrap())
        .header("content-type", content_type)
        .header("content-length", total)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let after = vm_hwm_kib(serve.pid());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(serve.sidecar("uploads/alice/big.sif")).unwrap())
            .unwrap();
    assert_eq!(meta["sha256"], sum);
    assert_eq!(meta["size"], SIZE);
    eprintln!(
        "serve peak RSS: {before} KiB before, {after} KiB after a {} MiB upload",
        SIZE >> 20
    );
    assert!(
        after < before + 24 * 1024,
        "peak RSS grew from {before} to {after} KiB"
    );
}
