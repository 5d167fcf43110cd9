//! What the engine journals, and the narrow interface it journals through
//! ([`PartsJournal`]): the run's manifest implements it (one JSON line per call, see
//! [`crate::manifest`]); the engine knows nothing else of the run. A later run hands the uploads
//! left open back as [`OpenUpload`]s.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use crate::stamp::FileStamp;

/// Where the engine records its uploads as they go, for a later run to resume them.
pub trait PartsJournal: Send + Sync {
    /// Whether the records outlive the run: only then is an upload stopped half way left open
    /// for a later run (else it is aborted).
    fn resumable(&self) -> bool;
    /// An upload was created.
    fn started(&self, upload: &UploadStarted) -> io::Result<()>;
    /// A part was stored.
    fn part_sent(&self, part: &PartSent) -> io::Result<()>;
    /// An upload was completed or aborted: no later run looks at it again.
    fn ended(&self, upload_id: &str, outcome: Ending) -> io::Result<()>;
}

/// A multipart upload, journalled as `{"multipart": {...}}` once created: what a later run needs
/// to resume it (or to abort it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStarted {
    /// The object name.
    pub name: String,
    /// The local path, absolute (lossy UTF-8).
    pub path: String,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The store's UploadId.
    pub upload_id: String,
    /// The whole file's SHA-256 (lowercase hex), as signed in its metadata.
    pub sha256: String,
    /// The file's size.
    pub size: u64,
    /// Bytes per part (the last part holds the rest).
    pub part_size: u64,
    /// The file's stamp when it was hashed: a file with another is not resumed.
    pub stamp: FileStamp,
    /// When the upload was created, RFC 3339 UTC: an old one is aborted, not resumed.
    pub created: String,
}

/// A part stored, journalled as `{"part": {...}}`. The store's ListParts gives number, size and
/// ETag but not the checksum, which Complete needs: it comes from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSent {
    /// The upload it belongs to.
    pub upload_id: String,
    /// Part number, from 1.
    pub number: u32,
    /// Its size.
    pub size: u64,
    /// Base64 SHA-256 of its bytes, as the store verified it.
    pub checksum_sha256: String,
    /// The ETag the store answered with (quotes included).
    pub etag: String,
}

/// How a multipart upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    /// CompleteMultipartUpload made the object.
    Completed,
    /// AbortMultipartUpload dropped its parts (or the store no longer knew it).
    Aborted,
}

/// A multipart upload with no end line yet: created, and the parts journalled since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// Its `multipart` line.
    pub started: UploadStarted,
    /// Its `part` lines by number (a part sent again: the later line).
    pub parts: BTreeMap<u32, PartSent>,
}
