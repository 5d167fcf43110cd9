//! What the API needs from object storage, over the two backends: one enum that dispatches to
//! [`super::s3`] or [`super::store`]. Neither backend imports this module.

use std::time::SystemTime;

use super::s3::S3Backend;
use super::storage::{ObjectInfo, Presigned};
use super::store::Store;

/// A storage failure, for the log; the API answers with the contract's generic error.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The S3 endpoint could not be reached or answered garbage.
    #[error(transparent)]
    S3(#[from] super::s3::S3Error),
    /// The embedded store failed.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

/// The storage behind the API.
pub(crate) enum Backend {
    /// An S3-compatible service (AWS, SeaweedFS, ...).
    S3(S3Backend),
    /// The embedded verifying store.
    Store(std::sync::Arc<Store>),
}

impl Backend {
    /// Presigns an upload of `key`: a POST policy binding `checksum` when one is given, else a PUT.
    pub async fn presign_upload(
        &self,
        key: &str,
        checksum: Option<&str>,
    ) -> Result<Presigned, BackendError> {
        let now = SystemTime::now();
        Ok(match self {
            Backend::S3(s3) => s3.presign_upload(key, checksum, now)?,
            Backend::Store(store) => store.presign_upload(key, checksum, now)?,
        })
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        Ok(match self {
            Backend::S3(s3) => s3.list(prefix).await?,
            Backend::Store(store) => store.clone().list(prefix).await?,
        })
    }

    /// Deletes `key`; deleting a missing key succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        match self {
            Backend::S3(s3) => s3.delete(key).await?,
            Backend::Store(store) => store.clone().delete(key).await?,
        }
        Ok(())
    }
}
