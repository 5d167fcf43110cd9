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
//! Keys are checked before they touch the file system, by [`crate::keys`] (no empty, `.` or `..`
//! segment, no leading `/`, no control character or backslash, at most 1024 bytes and 255 per
//! segment), after being percent-decoded exactly once.
//! Two keys where one is a "directory" of the other (`a` and `a/b`) cannot both exist here,

mod credentials;
mod form;
mod http;
mod receive;

use std::io;
use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

pub(crate) use http::router;

use super::URL_LIFETIME;
use super::storage::{ObjectInfo, Presigned};
use crate::sign::{self, Credentials, PostRequest, SignError, UrlRequest};
use credentials::load_or_create_credentials;
use receive::Received;

/// S3's limit for one upload request.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

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
    /// The client sent nothing for the idle timeout, or sent the body too slowly
    /// ([`crate::serve::Limits`]).
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
}

/// Checks `key` can be stored as a path below the bucket without escaping it: the rules of
/// [`crate::keys`], which also keep every segment short enough to be a file name.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    crate::keys::check_key(key).map_err(|why| StoreError::InvalidKey(format!("{key:?}: {why}")))
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
}
