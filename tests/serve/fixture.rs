//! Fixtures: the Python venv (SeaweedFS, PROMINENCE CLI, boto3), one SeaweedFS per test binary,
//! `hashup serve` processes, tokens, and small HTTP helpers.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hashup::sign::{self, Credentials, UrlRequest};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::util;

pub const ALICE: &str = "alice";
/// The embedded store's access key pair in every test server.
pub const STORE_KEY: &str = "HASHUPTESTKEY";
pub const STORE_SECRET: &str = "hashup-test-secret";
/// SeaweedFS's only identity.
pub const WEED_KEY: &str = "weedtestkey";
pub const WEED_SECRET: &str = "weedtestsecret";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An unsigned JWT (the server trusts its tokens file, not the signature) expiring at `exp`.
pub fn jwt(user: &str, exp: u64) -> String {
    let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(r#"{"alg":"HS256","typ":"JWT"}"#),
        enc(&format!(r#"{{"sub":"{user}","exp":{exp}}}"#))
    )
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The bin directory of the venv that `scripts/seaweedfs.sh install` makes (once per run).
pub fn pyenv_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/seaweedfs.sh"))
            .arg("install")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/seaweedfs.sh install");
        assert!(out.status.success(), "scripts/seaweedfs.sh install failed");
        let venv = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(venv.trim()).join("bin")
    })
}

/// One SeaweedFS (`weed mini`) for the whole test binary; tests use their own buckets.
pub struct Weed {
    pub endpoint: String,
    pid: i32,
    dir: PathBuf,
}

static WEED: OnceLock<Weed> = OnceLock::new();

extern "C" fn stop_weed() {
    if let Some(w) = WEED.get() {
        // SAFETY: plain syscalls on a pid we started.
        unsafe { libc::kill(w.pid, libc::SIGTERM) };
        for _ in 0..50 {
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(w.pid, 0) } != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&w.dir);
    }
}

pub fn weed() -> &'static Weed {
    WEED.get_or_init(|| {
        pyenv_bin();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("seaweedfs-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/seaweedfs.sh"))
            .arg("start")
            .arg(&dir)
            .env("AWS_ACCESS_KEY_ID", WEED_KEY)
            .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET)
            .env("SEAWEEDFS_WATCH_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/seaweedfs.sh start");
        assert!(out.status.success(), "scripts/seaweedfs.sh start failed");
        let out = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {out:?}"))
                .to_string()
        };
        let weed = Weed {
            endpoint: field("endpoint"),
            pid: field("pid").parse().unwrap(),
            dir,
        };
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_weed) };
        weed
    })
}

impl Weed {
    pub fn credentials(&self) -> Credentials {
        Credentials::new(WEED_KEY, WEED_SECRET)
    }

    /// A presigned URL for `method` on `path` (`/bucket/key`, already URI-encoded).
    pub fn presign(&self, method: &str, path_and_query: &str) -> String {
        sign::presign_url(
            &self.credentials(),
            &UrlRequest {
                method,
                url: &format!("{}{path_and_query}", self.endpoint),
                region: "us-east-1",
                service: "s3",
                now: SystemTime::now(),
                expires_in: Duration::from_secs(300),
                signed_headers: &[],
            },
        )
        .unwrap()
    }

    /// Creates a bucket no other test uses.
    pub async fn fresh_bucket(&self, name: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let bucket = format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed));
        let r = http()
            .put(self.presign("PUT", &format!("/{bucket}")))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create bucket {bucket}: {}",
            r.status()
        );
        bucket
    }

    /// GET an object: (status, user metadata `prominence_sha256`, body).
    pub async fn get(&self, bucket: &str, key: &str) -> (u16, Option<String>, Vec<u8>) {
        let url = self.presign("GET", &format!("/{bucket}/{}", sign::uri_encode_path(key)));
        let r = http().get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let meta = r
            .headers()
            .get("x-amz-meta-prominence_sha256")
            .map(|v| v.to_str().unwrap().to_string());
        (status, meta, r.bytes().await.unwrap().to_vec())
    }

    /// PUTs `body` as `key` directly (an object hashup did not write).
    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let url = self.presign("PUT", &format!("/{bucket}/{}", sign::uri_encode_path(key)));
        let r = http().put(url).body(body.to_vec()).send().await.unwrap();
        assert!(r.status().is_success(), "PUT {key}: {}", r.status());
    }

    /// Turns on versioning for `bucket`, so that every object ever stored stays listed.
    pub async fn enable_versioning(&self, bucket: &str) {
        let body = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        let r = http()
            .put(self.presign("PUT", &format!("/{bucket}?versioning")))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// How many versions of `key` were ever stored (ListObjectVersions; delete markers are
    /// not versions).
    pub async fn versions(&self, bucket: &str, key: &str) -> usize {
        let query = format!(
            "versions&prefix={}",
            sign::uri_encode_path(key).replace('/', "%2F")
        );
        let r = http()
            .get(self.presign("GET", &format!("/{bucket}?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap().matches("<Version>").count()
    }

    /// Deletes `key` (another client's DeleteObject).
    pub async fn delete(&self, bucket: &str, key: &str) {
        let url = self.presign(
            "DELETE",
            &format!("/{bucket}/{}", sign::uri_encode_path(key)),
        );
        let r = http().delete(url).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Every object in `bucket`, key and size, sorted by key (one ListObjectsV2 page).
    pub async fn objects(&self, bucket: &str) -> Vec<(String, u64)> {
        let url = self.presign("GET", &format!("/{bucket}?list-type=2"));
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page = hashup::s3xml::ListBucketResult::parse(&r.text().await.unwrap()).unwrap();
        assert_eq!(page.next_page(), None, "one page is enough here");
        let mut objects: Vec<(String, u64)> =
            page.contents.into_iter().map(|c| (c.key, c.size)).collect();
        objects.sort();
        objects
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Which backend a test server uses.
pub enum Backend<'a> {
    Store,
    S3 { bucket: &'a str },
}

/// A running `hashup serve` (killed on drop) with its temp dir, tokens and store.
pub struct Serve {
    child: Child,
    /// `PROMINENCE_URL`.
    pub api: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub dir: tempfile::TempDir,
    /// The embedded store's directory.
    pub store: PathBuf,
    /// alice (groups g1, lab/sub), a JWT expiring in an hour.
    pub alice: String,
    /// bob, a plain (non-JWT) token, no groups.
    pub bob: String,
    /// carol, a JWT that expired a minute ago.
    pub carol: String,
}

impl Serve {
    pub fn start(backend: Backend) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let alice = jwt(ALICE, now_secs() + 3600);
        let carol = jwt("carol", now_secs() - 60);
        let bob = "bob-plain-token".to_string();
        let mut tokens = serde_json::Map::new();
        tokens.insert(
            alice.clone(),
            serde_json::json!({"user": ALICE, "groups": ["g1", "lab/sub"]}),
        );
        tokens.insert(bob.clone(), serde_json::json!({"user": "bob"}));
        tokens.insert(
            carol.clone(),
            serde_json::json!({"user": "carol", "groups": ["g1"]}),
        );
        let tokens_path = dir.path().join("tokens.json");
        std::fs::write(&tokens_path, Value::Object(tokens).to_string()).unwrap();
        let store = dir.path().join("store");
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();

        let mut cmd = util::hashup(["serve", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(&tokens_path)
            .env("HASHUP_STORE_ACCESS_KEY_ID", STORE_KEY)
            .env("HASHUP_STORE_SECRET_ACCESS_KEY", STORE_SECRET)
            .command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        match backend {
            Backend::Store => {
                cmd.arg("--store").arg(&store);
            }
            Backend::S3 { bucket } => {
                cmd.args(["--s3-endpoint", &weed().endpoint, "--bucket", bucket])
                    .env("AWS_ACCESS_KEY_ID", WEED_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET);
            }
        }
        let mut child = cmd.spawn().expect("spawn hashup serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let api = line
            .trim()
            .strip_prefix("hashup serve: listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
                panic!("unexpected first line {line:?}; log: {log}")
            })
            .to_string();
        let base = api.strip_suffix("/prominence/v1").unwrap().to_string();
        Serve {
            child,
            api,
            base,
            dir,
            store,
            alice,
            bob,
            carol,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `POST /data/upload` as `token`: (status, JSON answer).
    pub async fn presign(&self, token: &str, name: &str, checksum: Option<&str>) -> (u16, Value) {
        let r = http()
            .post(format!("{}/data/upload", self.api))
            .bearer_auth(token)
            .json(&serde_json::json!({"filename": name, "checksum": checksum}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// `GET /data[/path]` as alice: the listing, sorted by name.
    pub async fn list(&self, path: &str) -> Vec<Value> {
        let r = http()
            .get(format!("{}/data{path}", self.api))
            .bearer_auth(&self.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut list: Vec<Value> = r.json().await.unwrap();
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        list
    }

    /// `GET /data[/path]` as alice: the answer's body as sent, which must be a 200.
    pub async fn list_text(&self, path: &str) -> String {
        let r = http()
            .get(format!("{}/data{path}", self.api))
            .bearer_auth(&self.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET /data{path}");
        r.text().await.unwrap()
    }

    /// Path of an object's data in the embedded store.
    pub fn object(&self, key: &str) -> PathBuf {
        self.store.join("hashup").join(key)
    }

    /// Path of an object's sidecar in the embedded store.
    pub fn sidecar(&self, key: &str) -> PathBuf {
        self.store.join(".hashup/meta/hashup").join(key)
    }

    /// Files in the store's temporary directory (uploads in flight or leaked).
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.store.join(".hashup/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Runs the PROMINENCE CLI 0.21.0 against this server as `token`, with a temp HOME.
    pub fn prominence(&self, token: &str, args: &[&str]) -> std::process::Output {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Command::new(pyenv_bin().join("prominence"))
            .args(args)
            .env("HOME", &home)
            .env("PROMINENCE_URL", &self.api)
            .env("PROMINENCE_TOKEN", token)
            .current_dir(self.dir.path())
            .output()
            .expect("run prominence")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `multipart/form-data` body: the fields in order, then the `file` part.
pub fn multipart(fields: &[(String, String)], filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hashup-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The `fields` of a presign answer, in order.
/// `fields` with `name` set to `value`: replaced where it is, or appended.
pub fn with_field(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut fields = fields.to_vec();
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some(pair) => pair.1 = value.to_string(),
        None => fields.push((name.to_string(), value.to_string())),
    }
    fields
}

pub fn fields_of(answer: &Value) -> Vec<(String, String)> {
    answer["fields"]
        .as_object()
        .expect("a POST answer")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// POSTs a form to `url`: (status, body text).
pub async fn post_form(url: &str, fields: &[(String, String)], data: &[u8]) -> (u16, String) {
    let (content_type, body) = multipart(fields, "upload.bin", data);
    let r = http()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// PUTs `data` to `url`: (status, body text).
pub async fn put(url: &str, data: Vec<u8>) -> (u16, String) {
    let r = http().put(url).body(data).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The S3 error code of an XML error body.
pub fn s3_code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or("")
}
