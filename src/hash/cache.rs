//! The hash cache: a file's [`FileStamp`] (device, inode, size, mtime, ctime) -> its SHA-256,
//! so a nightly run never reads a file that has not changed.
//!
//! On disk it is one append-only file of fixed-size records, each carrying its own check (the
//! first 8 bytes of the SHA-256 of the record), after a header with a magic, a format version
//! and the record size. Loading reads it whole and checks every record:
//! - a wrong magic, version or record size (an older hashup, another file) -> start empty and
//!   rewrite it: never guess at a format;
//! - a torn last record (a crash mid-append) -> dropped, the rest kept;
//! - any full record failing its check -> the whole file is ignored and rebuilt, with a
//!   warning: a cache that lies would publish wrong checksums, so it is never trusted in part.
//!
//! New entries are appended at the end of a run under an exclusive `flock` (several runs may
//! share a cache), and the file is compacted (rewritten through a temporary file and a rename)
//! when it holds more than twice the records it needs.
//!
//! A plain file, not an embedded database: the only query is a point lookup of a whole stamp,
//! and 50,000 entries (4.8 MB) load with every record checked in 14.4 ms and are all looked up
//! in 7.2 ms (`cargo bench --bench cache`, 2-core VM) — against 0.5 s for the whole rerun of such
//! a tree, so a database could only win back a few per cent.
//!
//! A stamp is cached only when the file's ctime and mtime lie at least [`RACY_MARGIN`] before
//! the moment its read started: a write within the same timestamp tick as the read could
//! otherwise leave the stamp unchanged with new content (git's "racily clean" problem).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use super::FileStamp;

/// The cache file's name inside the state directory.
pub const FILE_NAME: &str = "hash-cache.bin";

/// How long before a read a file's times must lie for its hash to be cached.
pub const RACY_MARGIN: Duration = Duration::from_millis(100);

const MAGIC: &[u8; 8] = b"HASHUPHC";
const VERSION: u32 = 1;
const HEADER: usize = 16;
/// dev, ino, size, mtime s, mtime ns, ctime s, ctime ns (7 x 8) + SHA-256 (32) + check (8).
const RECORD: usize = 56 + 32 + 8;

/// What loading found, for the user (a warning) and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No cache file yet.
    New,
    /// Every record checked out.
    Clean,
    /// A partial record at the end (a crash while appending) was dropped.
    TornTail,
    /// Another format or version: ignored, rebuilt.
    OtherFormat,
    /// A record failed its check: the whole file was ignored and is rebuilt.
    Corrupt {
        /// The first bad record (0-based).
        record: usize,
    },
}

/// A loaded cache plus what this run adds.
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    /// Sorted by stamp, one entry per stamp (88 bytes each; see [`Known`]).
    known: Known,
    fresh: Mutex<Vec<(FileStamp, [u8; 32])>>,
    /// Full records in the file (as loaded, then as saved).
    records_on_disk: AtomicUsize,
    /// Entries this process has saved so far.
    saved: AtomicUsize,
    /// The file must be rewritten whole (unusable, or torn) before anything is appended.
    rewrite: AtomicBool,
    loaded: Loaded,
}

impl HashCache {
    /// Loads `dir/hash-cache.bin` (creating `dir` if needed).
    pub fn open(dir: &Path) -> std::io::Result<HashCache> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Ok(HashCache::empty(path, Loaded::New, true));
            }
            Err(err) => return Err(err),
        };
        HashCache::load(path, file)
    }

    fn empty(path: PathBuf, loaded: Loaded, rewrite: bool) -> HashCache {
        HashCache {
            path,
            known: Known::default(),
            fresh: Mutex::new(Vec::new()),
            records_on_disk: AtomicUsize::new(0),
            saved: AtomicUsize::new(0),
            rewrite: AtomicBool::new(rewrite),
            loaded,
        }
    }

    /// Reads the file a block at a time, checking each record, into the sorted entries: the
    /// file is never held whole.
    fn load(path: PathBuf, mut file: File) -> std::io::Result<HashCache> {
        let len = file.metadata()?.len() as usize;
        let mut header_bytes = [0u8; HEADER];
        if len < HEADER || file.read_exact(&mut header_bytes).is_err() || header_bytes != header() {
            return Ok(HashCache::empty(path, Loaded::OtherFormat, true));
        }
        let body = len - HEADER;
        let mut entries = Vec::with_capacity(body / RECORD);
        let mut block = vec![0u8; RECORD * 1024];
        let mut filled = 0;
        let mut index = 0;
        loop {
            let n = file.read(&mut block[filled..])?;
            filled += n;
            let whole = filled - filled % RECORD;
            for record in block[..whole].chunks_exact(RECORD) {
                match decode(record) {
                    Some(entry) => entries.push(entry),
                    None => {
                        return Ok(HashCache::empty(
                            path,
                            Loaded::Corrupt { record: index },
                            true,
                        ));
                    }
                }
                index += 1;
            }
            block.copy_within(whole..filled, 0);
            filled -= whole;
            if n == 0 {
                break;
            }
        }
        // Whatever is left is a torn record (a crash mid-append).
        let torn = filled > 0;
        Ok(HashCache {
            path,
            known: Known::from(entries),
            fresh: Mutex::new(Vec::new()),
            records_on_disk: AtomicUsize::new(index),
            saved: AtomicUsize::new(0),
            // Appending after a torn record would misalign everything after it.
            rewrite: AtomicBool::new(torn),
            loaded: if torn {
                Loaded::TornTail
            } else {
                Loaded::Clean
            },
        })
    }

    /// What loading found.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// The file it lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries known from the file.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether the file held no entry.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The SHA-256 of a file with exactly this stamp, if known.
    pub fn get(&self, stamp: &FileStamp) -> Option<[u8; 32]> {
        self.known.get(stamp)
    }

    /// Remembers a hash taken by a read that started at `read_started`, unless the file's
    /// times are too close to that moment to be trusted.
    pub fn put(&self, stamp: FileStamp, sha256: [u8; 32], read_started: SystemTime) {
        let limit = read_started
            .checked_sub(RACY_MARGIN)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            });
        if stamp.mtime >= limit || stamp.ctime >= limit {
            return;
        }
        if self.known.get(&stamp) == Some(sha256) {
            return;
        }
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stamp, sha256));
    }

    /// Writes what this run learnt since the last save: appended (and fsynced) under an
    /// exclusive lock, or the whole file rewritten when it was unusable or has grown to over
    /// twice what it needs. Called every few seconds during a run and at its end, so a killed
    /// run loses at most a few seconds of hashing.
    pub fn save(&self) -> std::io::Result<()> {
        let fresh = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()));
        let rewrite = self.rewrite.load(Ordering::Relaxed);
        if fresh.is_empty() && !rewrite {
            return Ok(());
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let live = self.known.len() + self.saved.load(Ordering::Relaxed) + fresh.len();
        let on_disk = self.records_on_disk.load(Ordering::Relaxed);
        if rewrite || on_disk + fresh.len() > 2 * live.max(1024) {
            // Another run may have appended since we loaded: keep its valid records.
            let mut merged = match File::open(&self.path) {
                Ok(file) => HashCache::load(self.path.clone(), file).map(|c| c.known.0),
                Err(_) => Ok(Vec::new()),
            }
            .unwrap_or_default();
            merged.extend_from_slice(&self.known.0);
            let added = fresh.len();
            merged.extend(fresh);
            let merged = Known::from(merged).0;
            let tmp = self.path.with_extension("tmp");
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            out.write_all(&header())?;
            for (stamp, sha) in &merged {
                out.write_all(&encode(stamp, sha))?;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            self.rewrite.store(false, Ordering::Relaxed);
            self.records_on_disk.store(merged.len(), Ordering::Relaxed);
            self.saved.fetch_add(added, Ordering::Relaxed);
        } else {
            let mut file = OpenOptions::new().append(true).open(&self.path)?;
            let mut bytes = Vec::with_capacity(fresh.len() * RECORD);
            for (stamp, sha) in &fresh {
                bytes.extend_from_slice(&encode(stamp, sha));
            }
            file.write_all(&bytes)?;
            file.sync_data()?;
            self.records_on_disk
                .fetch_add(fresh.len(), Ordering::Relaxed);
            self.saved.fetch_add(fresh.len(), Ordering::Relaxed);
        }
        Ok(())
    }
}

fn header() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(RECORD as u32).to_le_bytes());
    h
}

fn encode(stamp: &FileStamp, sha: &[u8; 32]) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    let fields = [
        stamp.dev,
        stamp.ino,
        stamp.size,
        stamp.mtime.0 as u64,
        stamp.mtime.1 as u64,
        stamp.ctime.0 as u64,
        stamp.ctime.1 as u64,
    ];
    for (i, v) in fields.iter().enumerate() {
        r[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    r[56..88].copy_from_slice(sha);
    let check = Sha256::digest(&r[..88]);
    r[88..].copy_from_slice(&check[..8]);
    r
}

/// The cache's entries, sorted by stamp with one entry per stamp, looked up by binary search:
/// 88 bytes an entry, against about twice that in a hash map (its spare capacity, and the file
/// read whole to fill it).
#[derive(Debug, Default)]
struct Known(Vec<(FileStamp, [u8; 32])>);

impl Known {
    fn get(&self, stamp: &FileStamp) -> Option<[u8; 32]> {
        self.0
            .binary_search_by(|(s, _)| order(s).cmp(&order(stamp)))
            .ok()
            .map(|i| self.0[i].1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(FileStamp, [u8; 32])>> for Known {
    /// Sorts and dedups `entries` (as read: a stamp saved twice by two runs sharing the cache
    /// appears twice). A stamp given two different SHA-256s is dropped, not guessed at: the file
    /// is read again.
    fn from(mut entries: Vec<(FileStamp, [u8; 32])>) -> Known {
        entries.sort_unstable_by(|a, b| order(&a.0).cmp(&order(&b.0)).then(a.1.cmp(&b.1)));
        let mut kept = 0;
        let mut i = 0;
        while i < entries.len() {
            let stamp = order(&entries[i].0);
            let end = i + entries[i..]
                .iter()
                .position(|(s, _)| order(s) != stamp)
                .unwrap_or(entries.len() - i);
            // Sorted by SHA-256 within a stamp: one value iff the first and last agree.
            if entries[i].1 == entries[end - 1].1 {
                entries[kept] = entries[i];
                kept += 1;
            }
            i = end;
        }
        entries.truncate(kept);
        entries.shrink_to_fit();
        Known(entries)
    }
}

/// A stamp's sort key.
fn order(s: &FileStamp) -> (u64, u64, u64, (i64, i64), (i64, i64)) {
    (s.dev, s.ino, s.size, s.mtime, s.ctime)
}

fn decode(r: &[u8]) -> Option<(FileStamp, [u8; 32])> {
    let check = Sha256::digest(&r[..88]);
    if r[88..RECORD] != check[..8] {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let stamp = FileStamp {
        dev: u(0),
        ino: u(1),
        size: u(2),
        mtime: (u(3) as i64, u(4) as i64),
        ctime: (u(5) as i64, u(6) as i64),
    };
    Some((stamp, r[56..88].try_into().expect("32 bytes")))
}

/// The hash cache's directory: `state_dir` (`--state DIR`), else `$XDG_CACHE_HOME/hashup`, else
/// `$HOME/.cache/hashup`; `None` when not `use_cache` (`--no-cache`) or when neither variable
/// is set. One cache for every command, so `hashup verify` after an upload reads no file.
pub fn dir(
    use_cache: bool,
    state_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if !use_cache {
        return None;
    }
    if let Some(dir) = state_dir {
        return Some(dir.to_path_buf());
    }
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("hashup"))
}

/// The hash cache in `dir` ([`dir`]); problems are warnings on stderr (the run reads every
/// file instead), never errors.
pub fn open_or_warn(dir: Option<PathBuf>) -> Option<std::sync::Arc<HashCache>> {
    let dir = dir?;
    match HashCache::open(&dir) {
        Ok(cache) => {
            match cache.loaded() {
                Loaded::Corrupt { record } => eprintln!(
                    "hashup: warning: hash cache {} is damaged (record {record} fails its check): \
                     not trusting any of it; this run rebuilds it",
                    cache.path().display()
                ),
                Loaded::OtherFormat => eprintln!(
                    "hashup: warning: hash cache {} has another format or version: this run rebuilds it",
                    cache.path().display()
                ),
                Loaded::New | Loaded::Clean | Loaded::TornTail => {}
            }
            Some(std::sync::Arc::new(cache))
        }
        Err(err) => {
            eprintln!(
                "hashup: warning: cannot use the hash cache in {}: {}; reading every file",
                dir.display(),
                crate::message::plain_io_message(&err)
            );
            None
        }
    }
}

/// Saves the hash cache, if there is one; a failure is a warning on stderr.
pub fn save_or_warn(cache: Option<&HashCache>) {
    if let Some(cache) = cache
        && let Err(err) = cache.save()
    {
        eprintln!(
            "hashup: warning: cannot update the hash cache {}: {}",
            cache.path().display(),
            crate::message::plain_io_message(&err)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: n,
            size: n * 10,
            mtime: (1_600_000_000, 5),
            ctime: (1_600_000_000, 7),
        }
    }

    fn long_ago() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn entries_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        assert_eq!(cache.loaded(), &Loaded::New);
        cache.put(stamp(1), [1; 32], long_ago());
        cache.put(stamp(2), [2; 32], long_ago());
        cache.save().unwrap();

        let again = HashCache::open(dir.path()).unwrap();
        assert_eq!(again.loaded(), &Loaded::Clean);
        assert_eq!(again.get(&stamp(1)), Some([1; 32]));
        assert_eq!(again.get(&stamp(2)), Some([2; 32]));
        assert_eq!(again.get(&stamp(3)), None);
        let mut other = stamp(1);
        other.ctime.1 += 1;
        assert_eq!(
            again.get(&other),
            None,
            "any field of the stamp differs: a miss"
        );
    }

    #[test]
    fn saving_again_appends_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        cache.put(stamp(1), [1; 32], long_ago());
        cache.save().unwrap();
        cache.save().unwrap();
        cache.put(stamp(2), [2; 32], long_ago());
        cache.save().unwrap();
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(bytes.len(), HEADER + 2 * RECORD);
        assert_eq!(HashCache::open(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn racy_stamps_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        let read_started =
            UNIX_EPOCH + Duration::from_secs(1_600_000_000) + Duration::from_millis(50);
        cache.put(stamp(1), [1; 32], read_started);
        cache.save().unwrap();
        assert!(HashCache::open(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_torn_tail_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        cache.put(stamp(1), [1; 32], long_ago());
        cache.save().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&encode(&stamp(2), &[2; 32])[..40]);
        std::fs::write(&path, &bytes).unwrap();

        let again = HashCache::open(dir.path()).unwrap();
        assert_eq!(again.loaded(), &Loaded::TornTail);
        assert_eq!(again.get(&stamp(1)), Some([1; 32]));
        again.put(stamp(3), [3; 32], long_ago());
        again.save().unwrap();
        let third = HashCache::open(dir.path()).unwrap();
        assert_eq!(third.loaded(), &Loaded::Clean);
        assert_eq!(third.len(), 2);
    }

    #[test]
    fn one_flipped_bit_discards_the_whole_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        for n in 1..=3 {
            cache.put(stamp(n), [n as u8; 32], long_ago());
        }
        cache.save().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + RECORD + 60] ^= 1; // the second record's SHA-256
        std::fs::write(&path, &bytes).unwrap();

        let again = HashCache::open(dir.path()).unwrap();
        assert_eq!(again.loaded(), &Loaded::Corrupt { record: 1 });
        assert!(again.is_empty());
        again.save().unwrap();
        assert_eq!(
            HashCache::open(dir.path()).unwrap().loaded(),
            &Loaded::Clean
        );
    }

    #[test]
    fn another_format_is_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = header().to_vec();
        bytes[8] = 99; // a future version
        bytes.extend_from_slice(&encode(&stamp(1), &[1; 32]));
        std::fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
        let cache = HashCache::open(dir.path()).unwrap();
        assert_eq!(cache.loaded(), &Loaded::OtherFormat);
        assert_eq!(cache.get(&stamp(1)), None);
    }

    #[test]
    fn the_cache_lives_in_state_then_xdg_then_home() {
        let one = |name: &'static str, value: &'static str| {
            move |n: &str| (n == name).then(|| value.to_string())
        };
        assert_eq!(
            dir(true, None, &one("XDG_CACHE_HOME", "/x")),
            Some(PathBuf::from("/x/hashup"))
        );
        assert_eq!(
            dir(true, None, &one("HOME", "/h")),
            Some(PathBuf::from("/h/.cache/hashup"))
        );
        assert_eq!(dir(true, None, &|_: &str| None), None);
        assert_eq!(
            dir(true, Some(Path::new("/s")), &one("HOME", "/h")),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(dir(false, Some(Path::new("/s")), &one("HOME", "/h")), None);
    }
}
