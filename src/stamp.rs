//! A file's identity and version, to tell whether a file is still the one that was hashed: the
//! hash cache's key, the pipeline's check around a send, a multipart upload's (kept in its
//! journal, so a later run knows whether it may resume it).

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The identity and version of a file: if any of these differ between two looks,
/// the content may differ too. (Serialised in the journal of a multipart upload, to tell
/// whether the file is still the one whose parts were sent.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Device the file lives on.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Status change time, seconds and nanoseconds since the epoch.
    pub ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of a file's current metadata.
    pub fn of(meta: &Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of the file at `path` now (following links). Blocking: on a network file
    /// system (NFS, Lustre) this can take long, so async code runs it on a blocking thread.
    pub fn read(path: &Path) -> io::Result<Self> {
        std::fs::metadata(path).map(|meta| FileStamp::of(&meta))
    }

    /// [`FileStamp::read`] on a blocking thread (`tokio::fs`), for async code: a stat on a slow
    /// or hung file system must not hold up a runtime worker and the requests on it.
    pub async fn current(path: &Path) -> io::Result<Self> {
        tokio::fs::metadata(path)
            .await
            .map(|meta| FileStamp::of(&meta))
    }

    /// Modification time as a [`SystemTime`].
    pub fn modified(&self) -> SystemTime {
        let (secs, nanos) = self.mtime;
        let nanos = Duration::from_nanos(nanos.clamp(0, 999_999_999) as u64);
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
        }
    }
}
