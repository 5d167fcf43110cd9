//! What a listing takes from the sidecars: each object's SHA-256, while its sidecar still
//! describes the data file ([`SidecarDigest::sha256_for`]).
//!
//! Opening and reading a sidecar costs several times the `stat` a listing already makes of each
//! object, so [`Digests`] keeps what it read, keyed by object, and trusts it only while a `stat`
//! of the sidecar finds the same file (device, inode, size, modification and change times): a
//! sidecar replaced, deleted or rewritten in place is read again. `docs/design.md` ("Listing
//! SHA-256s") has the measurements.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;

/// What a listing takes from a sidecar: the size and SHA-256 it records, and when the sidecar
/// file was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SidecarDigest {
    pub(super) size: u64,
    pub(super) sha256: [u8; 32],
    pub(super) written: SystemTime,
}

/// A sidecar larger than this is not one the store wrote (its user metadata is bounded by the
/// request's limits): it is not read.
const SIDECAR_MAX: u64 = 1024 * 1024;

/// Objects whose sidecar's digest is remembered (an entry takes about 200 bytes); past this,
/// the others are read at each listing.
const CACHE_MAX: usize = 100_000;

impl SidecarDigest {
    /// The SHA-256, if this sidecar still describes a data file of `size` bytes last modified
    /// at `modified`: the same size, and data not modified after the sidecar was written (a
    /// commit dates both with the same time). An edit behind the store's back makes the data
    /// newer; one that also sets its time back is not seen.
    pub(super) fn sha256_for(&self, size: u64, modified: SystemTime) -> Option<String> {
        (self.size == size && modified <= self.written).then(|| hex::encode(self.sha256))
    }

    /// A sidecar's JSON: `None` unless it has a `size` and a lowercase hex `sha256`.
    fn parse(bytes: &[u8], written: SystemTime) -> Option<SidecarDigest> {
        #[derive(Deserialize)]
        struct Fields {
            size: u64,
            sha256: String,
        }
        let fields: Fields = serde_json::from_slice(bytes).ok()?;
        // hex::decode would take upper case too, which the store never writes.
        let lowercase = fields.sha256.bytes().all(|b| !b.is_ascii_uppercase());
        let mut sha256 = [0; 32];
        hex::decode_to_slice(&fields.sha256, &mut sha256).ok()?;
        lowercase.then_some(SidecarDigest {
            size: fields.size,
            sha256,
            written,
        })
    }
}

/// One version of a file: what replacing it, or rewriting it in place, changes. The change time
/// cannot be set back, so even a rewrite that restores the size and modification time shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    #[cfg(unix)]
    id: (u64, u64, i64, i64, i64, i64),
    #[cfg(not(unix))]
    id: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(md: &Metadata) -> Stamp {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt as _;
            (
                md.dev(),
                md.ino(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
            )
        };
        #[cfg(not(unix))]
        let id = md.modified().ok();
        Stamp { id, len: md.len() }
    }
}

/// The sidecars' digests as last read, by object key, with the stamp of the sidecar read.
#[derive(Debug, Default)]
pub(super) struct Digests {
    cache: Mutex<HashMap<String, (Stamp, Option<SidecarDigest>)>>,
}

impl Digests {
    /// The digest in `key`'s sidecar at `path`; `None` when the sidecar is missing, unreadable,
    /// not a regular file, too large to be one, or not JSON with a `size` and a lowercase hex
    /// `sha256`. Read again only when a `stat` finds another file than last time.
    pub(super) fn get(&self, key: &str, path: &Path) -> Option<SidecarDigest> {
        let md = std::fs::metadata(path).ok()?;
        if !md.is_file() || md.len() > SIDECAR_MAX {
            return None;
        }
        if let Some((stamp, digest)) = self.lock().get(key)
            && *stamp == Stamp::of(&md)
        {
            return digest.clone();
        }
        let (stamp, digest) = read(path)?;
        let mut cache = self.lock();
        if cache.len() < CACHE_MAX || cache.contains_key(key) {
            cache.insert(key.to_string(), (stamp, digest.clone()));
        }
        digest
    }

    /// Drops what is known of `key` (deleted).
    pub(super) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, Option<SidecarDigest>)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(super) fn cached(&self) -> usize {
        self.lock().len()
    }
}

/// Reads the sidecar at `path`: the stamp of the file read, and its digest if it has one.
/// `None` when it cannot be read (nothing to remember).
fn read(path: &Path) -> Option<(Stamp, Option<SidecarDigest>)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A FIFO put in a sidecar's place since the stat would block the open (and the listing).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let mut file = options.open(path).ok()?;
    let md = file.metadata().ok()?;
    let stamp = Stamp::of(&md);
    if !md.is_file() || md.len() > SIDECAR_MAX {
        return Some((stamp, None));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    let digest = md
        .modified()
        .ok()
        .and_then(|written| SidecarDigest::parse(&bytes, written));
    Some((stamp, digest))
}
