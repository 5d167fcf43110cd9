//! What the API and the two backends hand each other: where a client should send an object
//! ([`Presigned`]) and what a listing shows ([`ObjectInfo`]).
//!
//! These live apart from [`super::backend`] so that the backends ([`super::s3`],
//! [`super::store`]) and the enum over them import this module, never each other.

use std::time::SystemTime;

/// Where a client is told to send one object.
///
/// This is not the client's `crate::presign::Target`, on purpose: `serve` must not import the
/// client side (the `presign` module reaches into `transfer`), and the two say different things.
/// `Target::Put` carries headers a client must add (Azure's `x-ms-blob-type`); a server that
/// presigns for S3 or for itself never asks for any, and the API's JSON answer (`{"url"}` or
/// `{"url", "fields"}`) has nowhere to put them. Sharing one type would mean moving `Target` to
/// a neutral module both sides import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presigned {
    /// A `multipart/form-data` POST of these fields, in order, then the file.
    Post {
        /// Where to POST.
        url: String,
        /// The form fields, in signing order.
        fields: Vec<(String, String)>,
    },
    /// A `PUT` of the body to this URL.
    Put {
        /// The presigned URL.
        url: String,
    },
}

/// One stored object, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key, `uploads/...`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written.
    pub last_modified: SystemTime,
    /// SHA-256 of the object's bytes, lowercase hex, when the backend knows it without reading
    /// them: the embedded store's sidecar while it still describes the data file. S3's listing
    /// (ListObjectsV2) carries no user metadata, so that backend leaves it `None`.
    pub sha256: Option<String>,
}
