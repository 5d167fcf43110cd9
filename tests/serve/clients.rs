//! Clients nobody here wrote, unmodified: the PROMINENCE CLI 0.21.0 on both backends, and
//! boto3's presigned POST and PUT against the embedded store.

use std::process::Command;

use serde_json::Value;

use super::fixture::{Backend, STORE_KEY, STORE_SECRET, Serve, pyenv_bin, sha256_hex, weed};

fn prominence_upload(
    serve: &Serve,
    token: &str,
    file: &str,
    name: &str,
    checksum: Option<&str>,
) -> (bool, String) {
    let mut args = vec!["upload", "--filename", file, "--name", name];
    if let Some(c) = checksum {
        args.extend(["--checksum", c]);
    }
    let out = serve.prominence(token, &args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `prominence ls -l`'s lines for a listing: name, size and date in columns as wide as their
/// widest (its `command_ls`), in the server's order. Only the contract's fields show.
fn ls_long(listing: &[Value]) -> String {
    let width = |f: &dyn Fn(&Value) -> String| listing.iter().map(|o| f(o).len()).max().unwrap();
    let name = |o: &Value| o["name"].as_str().unwrap().to_string();
    let size = |o: &Value| o["size"].as_u64().unwrap().to_string();
    let date = |o: &Value| o["lastModified"].as_str().unwrap().to_string();
    let (w_name, w_size, w_date) = (width(&name), width(&size), width(&date));
    listing
        .iter()
        .map(|o| {
            format!(
                "{:<w_name$}   {:>w_size$}   {:>w_date$}\n",
                name(o),
                size(o),
                date(o)
            )
        })
        .collect()
}

/// Uploads with and without `--checksum` (the CLI then hashes itself), a group upload, and a
/// wrong checksum, which our stores refuse where PROMINENCE would have stored it. Then the
/// CLI's listings, which must read the same whether or not the server adds each object's
/// `sha256` (`sha256_listed`: the embedded store does, S3 does not).
async fn prominence_cli_round(
    serve: &Serve,
    sha256_listed: bool,
    read_back: impl AsyncFn(&str) -> Option<Vec<u8>>,
) {
    let data: Vec<u8> = (0..500_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let file = serve.dir.path().join("image.sif");
    std::fs::write(&file, &data).unwrap();
    let file = file.to_str().unwrap();
    let sum = sha256_hex(&data);
    let small_file = serve.dir.path().join("notes.txt");
    std::fs::write(&small_file, b"notes\n").unwrap();

    let (ok, out) = prominence_upload(serve, &serve.alice, file, "plain.sif", None);
    assert!(ok && out.trim() == "Success", "{out}");
    let small = small_file.to_str().unwrap();
    let (ok, out) = prominence_upload(serve, &serve.alice, small, "a-note", None);
    assert!(ok && out.trim() == "Success", "{out}");
    let (ok, out) = prominence_upload(serve, &serve.alice, file, "g1/given.sif", Some(&sum));
    assert!(ok && out.trim() == "Success", "{out}");
    assert_eq!(
        read_back("uploads/alice/plain.sif").await.as_deref(),
        Some(&data[..])
    );
    assert_eq!(
        read_back("uploads/g1/given.sif").await.as_deref(),
        Some(&data[..])
    );

    let wrong = sha256_hex(b"something else");
    let (ok, out) = prominence_upload(serve, &serve.alice, file, "wrong.sif", Some(&wrong));
    assert!(!ok, "{out}");
    assert!(out.contains("Got status code', 400"), "{out}");
    assert_eq!(read_back("uploads/alice/wrong.sif").await, None);

    let (ok, out) = prominence_upload(serve, &serve.alice, file, "g2/x.sif", None);
    assert!(
        !ok && out.contains("Not authorized to access upload with this path"),
        "{out}"
    );
    let (ok, out) = prominence_upload(serve, "not-a-jwt", file, "x.sif", None);
    assert!(!ok, "{out}");
    let (ok, out) = prominence_upload(serve, &serve.carol, file, "x.sif", None);
    assert!(!ok && out.contains("access token has expired"), "{out}");

    // What the server lists, in its order; on the embedded store each object carries the
    // SHA-256 of what it holds.
    let raw = async |path: &str| -> Vec<Value> {
        serde_json::from_str(&serve.list_text(path).await).unwrap()
    };
    let (own, g1) = (raw("").await, raw("/g1").await);
    let names = |listing: &[Value]| -> Vec<String> {
        listing
            .iter()
            .map(|o| o["name"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(names(&own), ["a-note", "plain.sif"]);
    assert_eq!(names(&g1), ["g1/given.sif"]);
    let listed_sums: Vec<Option<&str>> = own
        .iter()
        .chain(&g1)
        .map(|o| o["sha256"].as_str())
        .collect();
    let want_sums = [sha256_hex(b"notes\n"), sum.clone(), sum.clone()];
    let want_sums: Vec<Option<&str>> = want_sums
        .iter()
        .map(|s| sha256_listed.then_some(s.as_str()))
        .collect();
    assert_eq!(listed_sums, want_sums);
    assert_eq!(own[1]["size"], 500_000);

    // The CLI's own listing and delete read that JSON and our status codes: the lines are the
    // contract's fields, exactly, the extension ignored.
    let ls = |args: &[&str]| {
        let out = serve.prominence(&serve.alice, args);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(ls(&["ls", "-l"]), ls_long(&own));
    assert_eq!(ls(&["ls"]), "a-note\nplain.sif\n");
    assert_eq!(ls(&["ls", "-l", "g1"]), ls_long(&g1));
    assert_eq!(ls(&["ls", "g1"]), "g1/given.sif\n");
    assert_eq!(ls(&["rm", "plain.sif"]), "Success\n");
    assert_eq!(ls(&["ls"]), "a-note\n");
    assert_eq!(read_back("uploads/alice/plain.sif").await, None);
}

#[tokio::test]
async fn prominence_cli_uploads_to_the_embedded_store() {
    let serve = Serve::start(Backend::Store);
    let root = serve.store.join("hashup");
    prominence_cli_round(&serve, true, async |key| std::fs::read(root.join(key)).ok()).await;
    assert_eq!(serve.temp_files(), 0);
}

#[tokio::test]
async fn prominence_cli_uploads_to_seaweedfs() {
    let weed = weed();
    let bucket = weed.fresh_bucket("cli").await;
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    prominence_cli_round(&serve, false, async |key| {
        let (status, meta, body) = weed.get(&bucket, key).await;
        (status == 200).then(|| {
            assert_eq!(meta.as_deref(), Some(sha256_hex(&body).as_str()), "{key}");
            body
        })
    })
    .await;
}

const BOTO3_SCRIPT: &str = r#"
import hashlib, json, sys
import boto3, requests
from botocore.config import Config

endpoint, bucket, access_key, secret_key = sys.argv[1:5]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
    region_name="us-east-1",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
data = b"uploaded by boto3\n" * 1000
sha = hashlib.sha256(data).hexdigest()
out = {}
post = s3.generate_presigned_post(
    bucket, "uploads/alice/boto3-post.bin",
    Fields={"x-amz-meta-prominence_sha256": sha, "success_action_status": "201"},
    Conditions=[{"x-amz-meta-prominence_sha256": sha}, {"success_action_status": "201"},
                ["content-length-range", 1, 1 << 20]],
    ExpiresIn=600,
)
out["post_url"] = post["url"]
r = requests.post(post["url"], data=post["fields"], files={"file": ("boto3-post.bin", data)})
out["post"] = [r.status_code, r.text]
r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"x" * ((1 << 20) + 1))})
out["post_too_big"] = [r.status_code, r.text]
url = s3.generate_presigned_url(
    "put_object", Params={"Bucket": bucket, "Key": "uploads/alice/boto3 put.bin"}, ExpiresIn=600)
r = requests.put(url, data=data)
out["put"] = [r.status_code, r.text]
url = s3.generate_presigned_url(
    "put_object", Params={"Bucket": bucket, "Key": "uploads/alice/boto3-put.bin"}, ExpiresIn=600,
    HttpMethod="PUT")
r = requests.put(url, data=data, headers={"x-amz-checksum-sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
out["put_bad_checksum"] = [r.status_code, r.text]
out["sha256"] = sha
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_presigned_requests_are_accepted_by_the_embedded_store() {
    let serve = Serve::start(Backend::Store);
    let script = serve.dir.path().join("boto3_client.py");
    std::fs::write(&script, BOTO3_SCRIPT).unwrap();
    let out = Command::new(pyenv_bin().join("python"))
        .arg(&script)
        .args([
            &format!("{}/store", serve.base),
            "hashup",
            STORE_KEY,
            STORE_SECRET,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(answer["post_url"], format!("{}/store/hashup", serve.base));
    assert_eq!(answer["post"][0], 201, "{answer}");
    assert!(
        answer["post"][1]
            .as_str()
            .unwrap()
            .contains("<Key>uploads/alice/boto3-post.bin</Key>")
    );
    assert_eq!(answer["post_too_big"][0], 400, "{answer}");
    assert!(
        answer["post_too_big"][1]
            .as_str()
            .unwrap()
            .contains("EntityTooLarge")
    );
    assert_eq!(answer["put"][0], 200, "{answer}");
    assert_eq!(answer["put_bad_checksum"][0], 400, "{answer}");

    let sha = answer["sha256"].as_str().unwrap();
    let stored = std::fs::read(serve.object("uploads/alice/boto3-post.bin")).unwrap();
    assert_eq!(sha256_hex(&stored), sha);
    assert_eq!(
        sha256_hex(&std::fs::read(serve.object("uploads/alice/boto3 put.bin")).unwrap()),
        sha
    );
    assert!(!serve.object("uploads/alice/boto3-put.bin").exists());
    let names: Vec<String> = serve
        .list("")
        .await
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["boto3 put.bin", "boto3-post.bin"]);
}
