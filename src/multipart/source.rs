//! The file the engine sends: what the hash pass saw of it, and the check that it still is that
//! file. File system calls run on a blocking thread: on NFS or Lustre they can take long.

use std::io;
use std::path::{Path, PathBuf};

use crate::stamp::FileStamp;

/// A file to send in parts, as it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path to read it by.
    pub path: PathBuf,
    /// The object name (the key is the location's prefix and this).
    pub name: String,
    /// Its stamp when it was hashed; its size is the upload's.
    pub stamp: FileStamp,
    /// Its SHA-256, from the hash pass.
    pub sha256: [u8; 32],
}

impl Source {
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.stamp.size
    }

    /// The SHA-256 as lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Whether the file at its path is still the one hashed (same stamp).
    pub(super) async fn unchanged(&self) -> io::Result<bool> {
        Ok(stamp_now(&self.path).await? == self.stamp)
    }
}

/// The stamp of the file at `path` now.
pub(super) async fn stamp_now(path: &Path) -> io::Result<FileStamp> {
    FileStamp::current(path).await
}

/// Runs `f` on a blocking thread, off the runtime's workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}
