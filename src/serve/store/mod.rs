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
//! A listing gives each object the sidecar's `sha256` while the sidecar still describes the data
//! file (same size, data not modified after the sidecar was written), so an object edited on
//! disk behind the store's back lists none rather than a stale one.
//!
//! Keys are checked before they touch the file system, by [`crate::keys`] (no empty, `.` or `..`
//! segment, no leading `/`, no control character or backslash, at most 1024 bytes and 255 per
//! segment), after being percent-decoded exactly once.
//! Two keys where one is a "directory" of the other (`a` and `a/b`) cannot both exist here,

mod credentials;
mod digests;
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
use digests::Digests;
use receive::Received;

/// S3's limit for one upload request.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// At most this many threads stat a listing's objects and sidecars...
const LISTING_THREADS: usize = 4;
/// ...each with at least this many objects (fewer are not worth a thread).
const LISTING_PER_THREAD: usize = 1000;

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
    /// The sidecars' SHA-256s, as listings last read them.
    digests: Digests,
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
            digests: Digests::default(),
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
    ///
    /// A listing trusts a sidecar only while the data file is not newer than it
    /// (`digests::SidecarDigest::sha256_for`), so the pair is dated with one time taken under the lock,
    /// and the data goes in first: a commit cut short between the two renames leaves data newer
    /// than the sidecar beside it, which then lists no SHA-256 rather than another upload's.
    /// `docs/design.md` ("Listing SHA-256s") has the reasoning.
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
        // Later than the sidecar of any earlier commit, even of an upload received after this one.
        let now = SystemTime::now();
        upload
            .file
            .as_file()
            .set_modified(now)
            .map_err(StoreError::io("dating object"))?;
        meta_tmp
            .as_file()
            .set_modified(now)
            .map_err(StoreError::io("dating sidecar"))?;
        upload
            .file
            .persist(&data_path)
            .map_err(|e| StoreError::io("placing object")(e.error))?;
        if let Err(e) = meta_tmp.persist(&meta_path) {
            // The old sidecar describes other bytes now: no sidecar is better than a wrong one.
            let _ = std::fs::remove_file(&meta_path);
            return Err(StoreError::io("placing sidecar")(e.error));
        }
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
        // The walk reads directories only; the stats (data and sidecar) come after, spread
        // over a few threads for a long listing.
        let mut found = Vec::new();
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
            if key.starts_with(prefix) {
                found.push((key, entry.into_path()));
            }
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(LISTING_THREADS)
            .min(found.len() / LISTING_PER_THREAD)
            .max(1);
        if threads == 1 {
            return self.describe_all(&found);
        }
        // This thread takes the first part, one more thread each of the others.
        let (first, rest) = found.split_at(found.len().div_ceil(threads));
        std::thread::scope(|scope| {
            let rest: Vec<_> = rest
                .chunks(first.len())
                .map(|part| scope.spawn(|| self.describe_all(part)))
                .collect();
            let mut out = self.describe_all(first)?;
            for part in rest {
                out.extend(
                    part.join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                );
            }
            Ok(out)
        })
    }

    /// The listing entries of objects found by the walk, in order; one deleted since is left out.
    fn describe_all(&self, found: &[(String, PathBuf)]) -> Result<Vec<ObjectInfo>, StoreError> {
        let meta_dir = self.root.join(".hashup/meta").join(&self.bucket);
        let mut out = Vec::with_capacity(found.len());
        for (key, path) in found {
            // The sidecar first, then the data's stat: a commit places the data first, so a
            // sidecar read here can only be paired with its own data or with newer data, which
            // its time then refuses.
            let sidecar = self.digests.get(key, &meta_dir.join(key));
            let md = match std::fs::symlink_metadata(path) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(format!("listing {key}"))(e)),
            };
            let last_modified = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(ObjectInfo {
                sha256: sidecar.and_then(|s| s.sha256_for(md.len(), last_modified)),
                key: key.clone(),
                size: md.len(),
                last_modified,
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
        self.digests.forget(key);
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
    use std::path::Path;
    use std::time::Duration;

    use super::digests::SidecarDigest;
    use super::*;

    fn open_store(dir: &Path) -> Store {
        Store::open(
            StoreConfig {
                dir: dir.to_path_buf(),
                bucket: "hashup".into(),
                region: "us-east-1".into(),
                credentials: Some(Credentials::new("KEY", "secret")),
            },
            "http://127.0.0.1:1",
        )
        .unwrap()
    }

    fn sha256_hex(data: &[u8]) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(data))
    }

    /// Receives `data`, not yet committed.
    async fn receive(store: &Store, data: &[u8]) -> Received {
        let mut receiving = store.receive().await.unwrap();
        receiving.write(data, MAX_OBJECT_SIZE).await.unwrap();
        receiving.finish().await.unwrap()
    }

    fn commit(store: &Store, key: &str, received: Received) {
        let meta = ObjectMeta {
            key: key.into(),
            size: received.len,
            sha256: hex::encode(received.sha256),
            metadata: vec![],
        };
        store.commit(received, &meta).unwrap();
    }

    /// Each listed key with its SHA-256, as the listing gives them.
    fn listed(store: &Store) -> Vec<(String, Option<String>)> {
        store
            .list_blocking("uploads/")
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.sha256))
            .collect()
    }

    fn mtime(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    /// Rewrites a file, keeping its modification time `at`.
    fn rewrite(path: &Path, data: &[u8], at: SystemTime) {
        std::fs::write(path, data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn a_sidecar_describes_data_of_its_size_not_newer_than_itself() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let second = Duration::from_secs(1);
        let nano = Duration::from_nanos(1);
        let sidecar = SidecarDigest {
            size: 10,
            sha256: [0xab; 32],
            written: t,
        };
        let sha = |size, modified| sidecar.sha256_for(size, modified);
        assert_eq!(sha(10, t), Some("ab".repeat(32)));
        assert_eq!(sha(10, t - second), Some("ab".repeat(32)));
        assert_eq!(sha(10, t + nano), None);
        assert_eq!(sha(11, t), None);
        assert_eq!(sha(9, t - second), None);
    }

    #[tokio::test]
    async fn listings_carry_the_sha256_only_while_the_sidecar_describes_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let data = b"0123456789".as_slice();
        let keys = [
            "uploads/u/edited",
            "uploads/u/garbage",
            "uploads/u/good",
            "uploads/u/no-sidecar",
            "uploads/u/resized",
            "uploads/u/sidecar-dir",
            "uploads/u/sidecar-fifo",
            "uploads/u/upper-hex",
        ];
        for key in keys {
            commit(&store, key, receive(&store, data).await);
        }
        let good = store.data_path("uploads/u/good").unwrap();
        // commit dates the pair alike.
        assert_eq!(mtime(&good), mtime(&store.meta_path("uploads/u/good")));
        let sum = sha256_hex(data);
        // Once listed, remembered: what follows must be noticed all the same.
        let all: Vec<(String, Option<String>)> = keys
            .iter()
            .map(|k| (k.to_string(), Some(sum.clone())))
            .collect();
        assert_eq!(listed(&store), all);
        assert_eq!(store.digests.cached(), keys.len());

        // Same size, other bytes, written later: as an edit on disk leaves it.
        let edited = store.data_path("uploads/u/edited").unwrap();
        let later = mtime(&edited) + Duration::from_millis(10);
        rewrite(&edited, b"9876543210", later);
        // Other size, time kept.
        let resized = store.data_path("uploads/u/resized").unwrap();
        rewrite(&resized, b"0123456789a", mtime(&resized));
        std::fs::remove_file(store.meta_path("uploads/u/no-sidecar")).unwrap();
        std::fs::write(
            store.meta_path("uploads/u/garbage"),
            b"{\"size\": 10, \"sha",
        )
        .unwrap();
        let sidecar_dir = store.meta_path("uploads/u/sidecar-dir");
        std::fs::remove_file(&sidecar_dir).unwrap();
        std::fs::create_dir(&sidecar_dir).unwrap();
        let fifo = store.meta_path("uploads/u/sidecar-fifo");
        std::fs::remove_file(&fifo).unwrap();
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let upper = store.meta_path("uploads/u/upper-hex");
        let json = std::fs::read_to_string(&upper).unwrap();
        std::fs::write(&upper, json.replace(&sum, &sum.to_uppercase())).unwrap();

        let want: Vec<(String, Option<String>)> = keys
            .iter()
            .map(|k| (k.to_string(), (*k == "uploads/u/good").then(|| sum.clone())))
            .collect();
        assert_eq!(listed(&store), want);
    }

    /// A sidecar rewritten in place with its size and modification time restored is read
    /// again (its change time moved); a deleted object is forgotten.
    #[tokio::test]
    async fn a_remembered_digest_stands_only_while_the_sidecar_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let key = "uploads/u/k";
        commit(&store, key, receive(&store, b"data").await);
        assert_eq!(listed(&store), [(key.into(), Some(sha256_hex(b"data")))]);

        let meta_path = store.meta_path(key);
        let written = mtime(&meta_path);
        let json = std::fs::read_to_string(&meta_path).unwrap();
        let other = "0".repeat(64);
        // Past the file system's clock tick, so the change time moves.
        std::thread::sleep(Duration::from_millis(50));
        rewrite(
            &meta_path,
            json.replace(&sha256_hex(b"data"), &other).as_bytes(),
            written,
        );
        assert_eq!(
            std::fs::metadata(&meta_path).unwrap().len(),
            json.len() as u64
        );
        assert_eq!(listed(&store), [(key.into(), Some(other))]);

        store.delete_blocking(key).unwrap();
        assert_eq!(store.digests.cached(), 0);
        assert_eq!(listed(&store), []);
    }

    /// A listing long enough to be spread over threads comes back whole and in order.
    #[test]
    fn a_long_listing_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let n = 4 * LISTING_PER_THREAD + 7;
        let key = |i: usize| format!("uploads/u/{:x}/{i}", i % 3);
        let mut want = Vec::new();
        for i in 0..n {
            let data = i.to_string();
            let sha256 = sha256_hex(data.as_bytes());
            let meta = ObjectMeta {
                key: key(i),
                size: data.len() as u64,
                sha256: sha256.clone(),
                metadata: vec![],
            };
            for (path, bytes) in [
                (store.data_path(&key(i)).unwrap(), data.into_bytes()),
                (store.meta_path(&key(i)), serde_json::to_vec(&meta).unwrap()),
            ] {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            // One without a sidecar, somewhere in the middle.
            let sha256 = (i != n / 2).then_some(sha256);
            want.push((key(i), sha256));
        }
        std::fs::remove_file(store.meta_path(&key(n / 2))).unwrap();
        want.sort();
        assert_eq!(listed(&store), want);
    }

    /// A commit is dated when it happens, not when its body arrived: an upload received before
    /// another one committed, then committed after it, is newer than that one's sidecar, so if
    /// it were cut short before its own sidecar went in, the older sidecar would not describe it.
    #[tokio::test]
    async fn a_commit_is_newer_than_every_earlier_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let key = "uploads/u/racing";
        let second = receive(&store, b"second upload").await;
        // Let the file system's clock move past the second body's write.
        std::thread::sleep(Duration::from_millis(50));
        commit(&store, key, receive(&store, b"first  upload").await);
        let meta_path = store.meta_path(key);
        let first_sidecar = std::fs::read(&meta_path).unwrap();
        let first_written = mtime(&meta_path);

        commit(&store, key, second);
        assert_eq!(
            listed(&store),
            [(key.into(), Some(sha256_hex(b"second upload")))]
        );
        // What a crash between the two renames leaves: the second data, the first sidecar.
        rewrite(&meta_path, &first_sidecar, first_written);
        assert_eq!(listed(&store), [(key.into(), None)]);
    }

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
