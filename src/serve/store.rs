//! The embedded verifying store: `hashup serve --store DIR`.
//!
//! It speaks the two upload shapes of S3 that the API hands out, under `/store/<bucket>`:
//!
//! - `POST /store/<bucket>`: a `multipart/form-data` upload with a SigV4 POST policy;
//! - `PUT /store/<bucket>/<key>`: a SigV4 presigned URL (query-string auth).
//!
//! Both check, as S3 does, the signature, expiry, bucket, key and every policy condition *before*
//! the body is read, then stream the body into a temporary file under `DIR/.hashup/tmp` while
//! hashing it. The object is renamed into place only when the whole body arrived and its SHA-256
//! matches the `x-amz-checksum-sha256` it was bound to (and, unlike S3, the
//! `x-amz-meta-prominence_sha256` too when that is a SHA-256): a refused, truncated or abandoned
//! upload leaves nothing visible. Memory use does not depend on the object size.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/<bucket>/<key>                  the objects, as plain files
//! DIR/.hashup/meta/<bucket>/<key>     JSON sidecar per object: size, sha256, user metadata
//! DIR/.hashup/tmp/                    uploads in flight (emptied at start)
//! DIR/.hashup/credentials.json        generated access key pair (when none is configured)
//! ```
//!
//! Keys are checked before they touch the file system: no empty, `.` or `..` segment, no leading
//! `/`, no NUL, control character or backslash, at most 1024 bytes, percent-decoded exactly once.
//! Two keys where one is a "directory" of the other (`a` and `a/b`) cannot both exist here,
//! unlike S3: the second gets a `409 KeyConflict`.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use base64::Engine as _;
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::URL_LIFETIME;
use super::backend::{ObjectInfo, Presigned};
use crate::sign::{self, Credentials, PostRequest, SignError, UrlRequest};

/// S3's limit for one upload request.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Form fields before the file part may add up to this much (S3 allows a 20 KB policy).
const MAX_FORM_PREFIX: usize = 64 * 1024;

/// Parts after the file part are ignored, as S3 does, up to this much.
const MAX_FORM_SUFFIX: usize = 64 * 1024;

/// Write buffer per upload; the only per-upload memory that grows with throughput.
const WRITE_BUFFER: usize = 256 * 1024;

/// An upload that sends nothing for this long is dropped with its temporary file (S3 does the
/// same with `RequestTimeout`), so a stalled client cannot pin disk space forever.
/// How long a client may send nothing before its upload is abandoned.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where and how the embedded store keeps objects.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The store's directory.
    pub dir: PathBuf,
    /// The one bucket it serves.
    pub bucket: String,
    /// Region of the credential scope it signs with and accepts.
    pub region: String,
    /// The access key pair it signs with and accepts; `None` generates one on first start and
    /// keeps it in `DIR/.hashup/credentials.json`.
    pub credentials: Option<Credentials>,
}

/// Why the store refused or failed a request; each maps to an S3 error code and status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Signature, expiry or policy refused.
    #[error("{0}")]
    Sign(#[from] SignError),
    /// The bucket in the URL is not the store's.
    #[error("the specified bucket does not exist")]
    NoSuchBucket,
    /// A key that could escape the store or is not a valid S3 key.
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    /// `a` and `a/b` cannot both exist in a file system.
    #[error("the key conflicts with an existing object or prefix")]
    KeyConflict,
    /// The body's SHA-256 is not the one the upload was bound to.
    #[error("the {0} you specified did not match the calculated checksum")]
    BadDigest(&'static str),
    /// The body is larger than allowed.
    #[error("your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
    /// The body is smaller than the policy's minimum.
    #[error("your proposed upload is smaller than the minimum allowed size")]
    EntityTooSmall,
    /// The client sent nothing for the idle timeout (60 s).
    #[error(
        "your socket connection to the server was not read from or written to within the timeout period"
    )]
    RequestTimeout,
    /// The body ended before `Content-Length` bytes.
    #[error("you did not provide the number of bytes specified by the Content-Length header")]
    IncompleteBody,
    /// A PUT without `Content-Length`.
    #[error("you must provide the Content-Length HTTP header")]
    MissingContentLength,
    /// Not well-formed `multipart/form-data`, or truncated.
    #[error("the body of your POST request is not well-formed multipart/form-data: {0}")]
    MalformedPost(String),
    /// An argument the store cannot use (bad checksum header, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// Disk trouble.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// What the OS said.
        source: io::Error,
    },
}

impl StoreError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }

    /// S3's status and code for this error.
    pub fn s3_status_code(&self) -> (StatusCode, &'static str) {
        match self {
            StoreError::Sign(e) => (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN),
                e.s3_code(),
            ),
            StoreError::NoSuchBucket => (StatusCode::NOT_FOUND, "NoSuchBucket"),
            StoreError::InvalidKey(_) => (StatusCode::BAD_REQUEST, "InvalidArgument"),
            StoreError::KeyConflict => (StatusCode::CONFLICT, "KeyConflict"),
            StoreError::BadDigest(_) => (StatusCode::BAD_REQUEST, "BadDigest"),
            StoreError::EntityTooLarge => (StatusCode::BAD_REQUEST, "EntityTooLarge"),
            StoreError::EntityTooSmall => (StatusCode::BAD_REQUEST, "EntityTooSmall"),
            StoreError::IncompleteBody => (StatusCode::BAD_REQUEST, "IncompleteBody"),
            StoreError::RequestTimeout => (StatusCode::BAD_REQUEST, "RequestTimeout"),
            StoreError::MissingContentLength => {
                (StatusCode::LENGTH_REQUIRED, "MissingContentLength")
            }
            StoreError::MalformedPost(_) => (StatusCode::BAD_REQUEST, "MalformedPOSTRequest"),
            StoreError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "InvalidArgument"),
            StoreError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

/// The sidecar kept beside each object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex, computed while receiving them.
    pub sha256: String,
    /// User metadata (`x-amz-meta-<name>` as `<name>`, lowercase), in the order received.
    pub metadata: Vec<(String, String)>,
}

/// The embedded store.
pub struct Store {
    root: PathBuf,
    bucket: String,
    region: String,
    credentials: Credentials,
    base_url: String,
    /// Held while an object and its sidecar are swapped in or removed, so that the pair always
    /// belongs to the same upload (the last one to finish).
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

impl Store {
    /// Opens (creating) the store in `config.dir`, handing out URLs under `base_url`
    /// (`http://host:port`, no trailing slash).
    pub fn open(config: StoreConfig, base_url: &str) -> Result<Store, StoreError> {
        if !is_valid_bucket(&config.bucket) {
            return Err(StoreError::InvalidArgument(format!(
                "bucket name {:?} is not a valid S3 bucket name",
                config.bucket
            )));
        }
        let root = config.dir;
        let tmp = root.join(".hashup/tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(StoreError::io(format!("creating {}", tmp.display())))?;
        std::fs::create_dir_all(root.join(&config.bucket))
            .map_err(StoreError::io(format!("creating {}", root.display())))?;
        // Leftovers of uploads cut short by a crash: never visible, now gone.
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let credentials = match config.credentials {
            Some(c) => c,
            None => load_or_create_credentials(&root.join(".hashup/credentials.json"))?,
        };
        Ok(Store {
            root,
            bucket: config.bucket,
            region: config.region,
            credentials,
            base_url: base_url.trim_end_matches('/').to_string(),
            commit_lock: Mutex::new(()),
        })
    }

    /// The access key pair this store signs with and accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `{base}/store/{bucket}`: where POST uploads go; the S3 "endpoint" is `{base}/store`.
    pub fn bucket_url(&self) -> String {
        format!("{}/store/{}", self.base_url, self.bucket)
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<Credentials> + '_ {
        |id| (id == self.credentials.access_key_id).then(|| self.credentials.clone())
    }

    /// Same answer shapes as the S3 backend, pointing at this store.
    pub fn presign_upload(
        &self,
        key: &str,
        checksum: Option<&str>,
        now: SystemTime,
    ) -> Result<Presigned, StoreError> {
        validate_key(key)?;
        match checksum {
            None => {
                let url = format!("{}/{}", self.bucket_url(), sign::uri_encode_path(key));
                let url = sign::presign_url(
                    &self.credentials,
                    &UrlRequest {
                        method: "PUT",
                        url: &url,
                        region: &self.region,
                        service: "s3",
                        now,
                        expires_in: URL_LIFETIME,
                        signed_headers: &[],
                    },
                )?;
                Ok(Presigned::Put { url })
            }
            Some(sum) => {
                let digest: [u8; 32] = hex::decode(sum)
                    .ok()
                    .and_then(|d| d.try_into().ok())
                    .ok_or_else(|| StoreError::InvalidArgument(format!("bad checksum {sum:?}")))?;
                let post = sign::presign_post(
                    &self.credentials,
                    &PostRequest {
                        url: &self.bucket_url(),
                        bucket: &self.bucket,
                        key,
                        region: &self.region,
                        now,
                        expires_in: URL_LIFETIME,
                        meta_sha256: Some(sum),
                        checksum_sha256: Some(digest),
                        content_length_range: Some((0, MAX_OBJECT_SIZE)),
                    },
                );
                Ok(Presigned::Post {
                    url: post.url,
                    fields: post.fields,
                })
            }
        }
    }

    fn object_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        let path = self.root.join(&self.bucket).join(key);
        // Belt and braces: what validate_key allowed must be plain names below the bucket.
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| StoreError::InvalidKey(key.into()))?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::InvalidKey(key.into()));
        }
        Ok(path)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join(".hashup/meta").join(&self.bucket).join(key)
    }

    /// Reads an object's sidecar.
    pub fn metadata(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.object_path(key)?;
        match std::fs::read(self.meta_path(key)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::io("reading sidecar")(io::Error::other(e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading sidecar")(e)),
        }
    }

    /// The path of a stored object's data (for tests and people poking around).
    pub fn data_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.object_path(key)
    }

    /// Swaps a fully received, verified object and its sidecar into place.
    fn commit(&self, upload: Received, meta: &ObjectMeta) -> Result<(), StoreError> {
        let data_path = self.object_path(&meta.key)?;
        let meta_path = self.meta_path(&meta.key);
        let meta_json = serde_json::to_vec_pretty(meta).expect("sidecar serialises");
        let mut meta_tmp = tempfile::NamedTempFile::new_in(self.root.join(".hashup/tmp"))
            .map_err(StoreError::io("creating sidecar"))?;
        io::Write::write_all(&mut meta_tmp, &meta_json)
            .map_err(StoreError::io("writing sidecar"))?;

        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        for path in [&data_path, &meta_path] {
            let parent = path.parent().expect("object paths have a parent");
            std::fs::create_dir_all(parent).map_err(|e| match e.kind() {
                io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                    StoreError::KeyConflict
                }
                _ => StoreError::io(format!("creating {}", parent.display()))(e),
            })?;
        }
        if data_path.is_dir() {
            return Err(StoreError::KeyConflict);
        }
        meta_tmp
            .persist(&meta_path)
            .map_err(|e| StoreError::io("placing sidecar")(e.error))?;
        upload
            .file
            .persist(&data_path)
            .map_err(|e| StoreError::io("placing object")(e.error))?;
        Ok(())
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(self: Arc<Self>, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || self.list_blocking(&prefix))
            .await
            .map_err(|e| StoreError::io("listing")(io::Error::other(e)))?
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let bucket_dir = self.root.join(&self.bucket);
        // Walk only the directory part of the prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        if !dir_part.is_empty() {
            validate_key(dir_part)?;
        }
        let start = bucket_dir.join(dir_part);
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&start).sort_by_file_name() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) => return Err(StoreError::io("listing")(io::Error::other(e))),
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&bucket_dir) else {
                continue;
            };
            let Some(key) = rel
                .to_str()
                .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
            else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            let md = entry
                .metadata()
                .map_err(|e| StoreError::io("listing")(io::Error::other(e)))?;
            out.push(ObjectInfo {
                key,
                size: md.len(),
                last_modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    /// Removes an object and its sidecar; a missing key is fine.
    pub async fn delete(self: Arc<Self>, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        tokio::task::spawn_blocking(move || self.delete_blocking(&key))
            .await
            .map_err(|e| StoreError::io("deleting")(io::Error::other(e)))?
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let data = self.object_path(key)?;
        let meta = self.meta_path(key);
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if data.is_dir() {
            return Ok(());
        }
        for (path, top) in [
            (data, self.root.join(&self.bucket)),
            (meta, self.root.join(".hashup/meta").join(&self.bucket)),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("deleting {key}"))(e)),
            }
            // Drop directories the key emptied, so a later `a` can replace a deleted `a/b`.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == top || std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
    }

    /// Starts receiving a body into a temporary file.
    async fn receive(&self) -> Result<Receiving, StoreError> {
        let file = tempfile::NamedTempFile::new_in(self.root.join(".hashup/tmp"))
            .map_err(StoreError::io("creating temporary file"))?;
        let handle = file
            .reopen()
            .map_err(StoreError::io("opening temporary file"))?;
        Ok(Receiving {
            file,
            writer: tokio::io::BufWriter::with_capacity(
                WRITE_BUFFER,
                tokio::fs::File::from_std(handle),
            ),
            hasher: Sha256::new(),
            len: 0,
        })
    }
}

/// A body being written to a temporary file; dropping it (a refused or abandoned upload)
/// deletes the file.
struct Receiving {
    file: tempfile::NamedTempFile,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    len: u64,
}

/// A body fully on disk (and synced), with its digest.
struct Received {
    file: tempfile::NamedTempFile,
    sha256: [u8; 32],
    len: u64,
}

impl Receiving {
    /// Streams `body` in, refusing it as soon as it passes `max` bytes.
    async fn take<E: std::fmt::Display>(
        &mut self,
        mut body: impl Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        max: u64,
        on_error: impl Fn(String) -> StoreError,
    ) -> Result<(), StoreError> {
        loop {
            let next = tokio::time::timeout(IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| StoreError::RequestTimeout)?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| on_error(e.to_string()))?;
            self.len += chunk.len() as u64;
            if self.len > max {
                return Err(StoreError::EntityTooLarge);
            }
            self.hasher.update(&chunk);
            self.writer
                .write_all(&chunk)
                .await
                .map_err(StoreError::io("writing temporary file"))?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Received, StoreError> {
        self.writer
            .flush()
            .await
            .map_err(StoreError::io("writing temporary file"))?;
        let file = self.writer.into_inner();
        file.sync_data()
            .await
            .map_err(StoreError::io("syncing temporary file"))?;
        drop(file);
        Ok(Received {
            file: self.file,
            sha256: self.hasher.finalize().into(),
            len: self.len,
        })
    }
}

/// Checks `key` can be stored as a path below the bucket without escaping it.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidKey(format!("{key:?}: {why}")));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("NUL, control character or backslash");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, . or .. segment");
    }
    Ok(())
}

/// S3's bucket naming rules, simplified: 3-63 of `a-z0-9.-`, starting and ending alphanumeric.
fn is_valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
}

fn load_or_create_credentials(path: &Path) -> Result<Credentials, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let f: CredentialsFile = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::io(format!("reading {}", path.display()))(io::Error::other(e))
            })?;
            return Ok(Credentials::new(f.access_key_id, f.secret_access_key));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()))(e)),
    }
    let access: [u8; 10] = rand::random();
    let secret: [u8; 30] = rand::random();
    let f = CredentialsFile {
        access_key_id: format!("HASHUP{}", hex::encode_upper(access)),
        secret_access_key: base64::engine::general_purpose::STANDARD.encode(secret),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().expect("has a parent"))
        .map_err(StoreError::io("creating credentials"))?; // created 0600
    io::Write::write_all(
        &mut tmp,
        &serde_json::to_vec_pretty(&f).expect("serialises"),
    )
    .map_err(StoreError::io("writing credentials"))?;
    // Two servers starting on one fresh DIR: the first one's pair wins, both use it.
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(Credentials::new(f.access_key_id, f.secret_access_key)),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            load_or_create_credentials(path)
        }
        Err(e) => Err(StoreError::io("placing credentials")(e.error)),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The store's routes, under `/store/`.
pub(crate) fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/store/{bucket}", post(post_object))
        .route("/store/{bucket}/", post(post_object))
        .route("/store/{bucket}/{*key}", put(put_object))
        .with_state(store)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An S3-style XML error answer.
fn s3_error(err: &StoreError, resource: &str) -> Response {
    let (status, code) = err.s3_status_code();
    if status.is_server_error() {
        super::log_error(&format!("store: {resource}"), err);
    }
    let message = err.to_string();
    let mut message = message.as_str().to_string();
    if let Some(first) = message.get(0..1) {
        message = first.to_uppercase() + &message[1..];
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource></Error>",
        xml_escape(&message),
        xml_escape(resource)
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Splits `/store/<bucket>[/<key>]` (raw, still percent-encoded).
fn split_store_path(raw: &str) -> Option<(&str, Option<&str>)> {
    let rest = raw.strip_prefix("/store/")?;
    match rest.split_once('/') {
        None => Some((rest, None)),
        Some((bucket, "")) => Some((bucket, None)),
        Some((bucket, key)) => Some((bucket, Some(key))),
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Checks the received digest against what the upload was bound to.
fn check_digests(
    received: &Received,
    checksum_sha256: Option<[u8; 32]>,
    metadata: &[(String, String)],
) -> Result<(), StoreError> {
    if let Some(expected) = checksum_sha256
        && expected != received.sha256
    {
        return Err(StoreError::BadDigest("x-amz-checksum-sha256"));
    }
    // Beyond S3: PROMINENCE's own checksum metadata must be true here as well.
    let meta_sum = metadata
        .iter()
        .find(|(n, _)| n == "prominence_sha256")
        .map(|(_, v)| v.as_str());
    if let Some(sum) = meta_sum
        && let Ok(bytes) = hex::decode(sum)
        && bytes.len() == 32
        && bytes[..] != received.sha256[..]
    {
        return Err(StoreError::BadDigest("x-amz-meta-prominence_sha256"));
    }
    Ok(())
}

async fn finish_and_commit(
    store: &Arc<Store>,
    receiving: Receiving,
    key: String,
    checksum_sha256: Option<[u8; 32]>,
    metadata: Vec<(String, String)>,
    min_len: u64,
) -> Result<(), StoreError> {
    let received = receiving.finish().await?;
    if received.len < min_len {
        return Err(StoreError::EntityTooSmall);
    }
    check_digests(&received, checksum_sha256, &metadata)?;
    let meta = ObjectMeta {
        key,
        size: received.len,
        sha256: hex::encode(received.sha256),
        metadata,
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.commit(received, &meta))
        .await
        .map_err(|e| StoreError::io("committing")(io::Error::other(e)))?
}

/// `PUT /store/<bucket>/<key>` with a presigned URL.
async fn put_object(State(store): State<Arc<Store>>, request: Request) -> Response {
    let resource = request.uri().path().to_string();
    match put_inner(&store, request).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => s3_error(&e, &resource),
    }
}

async fn put_inner(store: &Arc<Store>, request: Request) -> Result<(), StoreError> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let (bucket, raw_key) = split_store_path(raw_path).ok_or(StoreError::NoSuchBucket)?;
    if bucket != store.bucket {
        return Err(StoreError::NoSuchBucket);
    }
    let raw_key = raw_key.ok_or_else(|| StoreError::InvalidKey("empty".into()))?;
    let key = percent_encoding::percent_decode_str(raw_key)
        .decode_utf8()
        .map_err(|_| StoreError::InvalidKey("not UTF-8".into()))?
        .into_owned();
    validate_key(&key)?;

    let headers = header_pairs(&parts.headers);
    let verified = sign::verify_presigned_url(
        store.lookup(),
        parts.method.as_str(),
        raw_path,
        parts.uri.query().unwrap_or(""),
        &headers,
        SystemTime::now(),
    )?;

    let length: u64 = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .ok_or(StoreError::MissingContentLength)?
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::InvalidArgument("bad Content-Length".into()))?;
    if length > MAX_OBJECT_SIZE {
        return Err(StoreError::EntityTooLarge);
    }
    // S3 checks a checksum header whether or not it was signed.
    let checksum = match (
        verified.checksum_sha256,
        parts.headers.get("x-amz-checksum-sha256"),
    ) {
        (Some(signed), _) => Some(signed),
        (None, Some(v)) => Some(
            v.to_str()
                .ok()
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    StoreError::InvalidArgument(
                        "x-amz-checksum-sha256 is not a base64 SHA-256".into(),
                    )
                })?,
        ),
        (None, None) => None,
    };
    let metadata: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| {
            let n = n.to_ascii_lowercase();
            Some((n.strip_prefix("x-amz-meta-")?.to_string(), v.clone()))
        })
        .collect();

    let mut receiving = store.receive().await?;
    receiving
        .take(body.into_data_stream(), length, |_| {
            StoreError::IncompleteBody
        })
        .await?;
    if receiving.len != length {
        return Err(StoreError::IncompleteBody);
    }
    finish_and_commit(store, receiving, key, checksum, metadata, 0).await
}

/// `POST /store/<bucket>`: browser-style upload with a POST policy.
async fn post_object(State(store): State<Arc<Store>>, request: Request) -> Response {
    let resource = request.uri().path().trim_end_matches('/').to_string();
    match post_inner(&store, request).await {
        Ok((status, key)) => {
            let location = format!("{}/{}", store.bucket_url(), sign::uri_encode_path(&key));
            if status == 201 {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key></PostResponse>",
                    xml_escape(&location),
                    xml_escape(&store.bucket),
                    xml_escape(&key)
                );
                (
                    StatusCode::CREATED,
                    [
                        (header::CONTENT_TYPE, "application/xml".to_string()),
                        (header::LOCATION, location),
                    ],
                    body,
                )
                    .into_response()
            } else {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
                (status, [(header::LOCATION, location)]).into_response()
            }
        }
        Err(e) => s3_error(&e, &resource),
    }
}

async fn post_inner(store: &Arc<Store>, request: Request) -> Result<(u16, String), StoreError> {
    let (parts, body) = request.into_parts();
    let (bucket, _) = split_store_path(parts.uri.path()).ok_or(StoreError::NoSuchBucket)?;
    if bucket != store.bucket {
        return Err(StoreError::NoSuchBucket);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| StoreError::MalformedPost(e.to_string()))?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let malformed = |e: multer::Error| StoreError::MalformedPost(e.to_string());

    // The fields before the file, bounded in size.
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut prefix_len = 0usize;
    let mut file = loop {
        let Some(mut field) = form.next_field().await.map_err(malformed)? else {
            return Err(StoreError::InvalidArgument(
                "POST requires exactly one file upload per request".into(),
            ));
        };
        let name = field
            .name()
            .ok_or_else(|| StoreError::MalformedPost("a part without a name".into()))?
            .to_string();
        if name.eq_ignore_ascii_case("file") {
            break field;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            prefix_len += chunk.len() + name.len();
            if prefix_len > MAX_FORM_PREFIX {
                return Err(StoreError::InvalidArgument(
                    "form fields before the file exceed the allowed size".into(),
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| StoreError::MalformedPost(format!("field {name} is not UTF-8")))?;
        fields.push((name, value));
    };

    // Everything about the request is known before a byte of the file is read.
    let verified = sign::verify_post(store.lookup(), &store.bucket, &fields, SystemTime::now())?;
    validate_key(&verified.key)?;
    let (min_len, max_len) = verified
        .content_length_range
        .unwrap_or((0, MAX_OBJECT_SIZE));
    let max_len = max_len.min(MAX_OBJECT_SIZE);

    let mut receiving = store.receive().await?;
    receiving
        .take(&mut file, max_len, StoreError::MalformedPost)
        .await?;
    drop(file);
    // S3 ignores parts after the file, but the body must still end with the closing boundary:
    // this is what tells a complete upload from a truncated one.
    let mut suffix = 0usize;
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            suffix += chunk.len();
            if suffix > MAX_FORM_SUFFIX {
                return Err(StoreError::MalformedPost(
                    "too much data after the file".into(),
                ));
            }
        }
    }
    let status = verified.success_action_status.unwrap_or(204);
    let key = verified.key.clone();
    let metadata = verified
        .metadata
        .into_iter()
        .map(|(n, v)| {
            (
                n.strip_prefix("x-amz-meta-")
                    .map_or(n.clone(), str::to_string),
                v,
            )
        })
        .collect();
    finish_and_commit(
        store,
        receiving,
        verified.key,
        verified.checksum_sha256,
        metadata,
        min_len,
    )
    .await?;
    Ok((status, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for good in [
            "uploads/alice/a.sif",
            "a",
            "a b/c%2e%2e",
            "ünï/cödé",
            "a..b/..c",
        ] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(1025);
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "a/../../etc",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\..\\b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bucket_names() {
        assert!(is_valid_bucket("hashup"));
        assert!(is_valid_bucket("my-bucket.1"));
        for bad in ["ab", "Hashup", "-x-", "a..b", ".hashup", "a/b"] {
            assert!(!is_valid_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn store_paths() {
        assert_eq!(split_store_path("/store/b"), Some(("b", None)));
        assert_eq!(split_store_path("/store/b/"), Some(("b", None)));
        assert_eq!(
            split_store_path("/store/b/k/x%2F"),
            Some(("b", Some("k/x%2F")))
        );
        assert_eq!(split_store_path("/other/b"), None);
    }

    #[test]
    fn credentials_are_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let a = load_or_create_credentials(&path).unwrap();
        let b = load_or_create_credentials(&path).unwrap();
        assert_eq!(a, b);
        assert!(a.access_key_id.starts_with("HASHUP"));
    }
}
